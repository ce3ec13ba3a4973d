/* The node's heads: storage and compare-and-swap; see heads.h for the
 * records and the invariants. */
#include "net/server/heads.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "blocks/base/bytes.h"
#include "blocks/dag/head.h"

_Static_assert(NET_HEAD_MAX_BYTES == BLK_HEAD_MAX_BYTES,
	       "the wire carries any head record");
_Static_assert(NET_FSID_LEN == sizeof(((struct blk_head *)0)->fs),
	       "a filesystem id on the wire is the head's");

#define KEY_LEN (NET_FSID_LEN + 8)

struct net_heads {
	/* Set at open, read-only after. */
	struct blk_db *db;
	unsigned cf;
	bool has_fs;
	uint8_t fs_id[NET_FSID_LEN];
	uint8_t fs_pk[32];

	pthread_mutex_t mu; /* serialises CAS (invariant 4) */
};

int net_heads_register(struct blk_cf_registry *r)
{
	return blk_cf_register(r, NET_HEADS_CF, BLK_CF_RAW);
}

int net_heads_open(struct blk_db *db, unsigned cf, const uint8_t *fs_id,
		   const uint8_t *fs_pk, struct net_heads **out)
{
	struct net_heads *h;

	*out = NULL;
	if (!db || !blk_db_cf_open(db, cf) || !fs_id != !fs_pk)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->db = db;
	h->cf = cf;
	if (fs_id) {
		h->has_fs = true;
		memcpy(h->fs_id, fs_id, NET_FSID_LEN);
		memcpy(h->fs_pk, fs_pk, sizeof(h->fs_pk));
	}
	pthread_mutex_init(&h->mu, NULL);
	*out = h;
	return 0;
}

void net_heads_close(struct net_heads *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h);
}

bool net_heads_has_fs(const struct net_heads *h)
{
	return h->has_fs;
}

static void head_key(const uint8_t fsid[NET_FSID_LEN], uint64_t seq,
		     uint8_t key[KEY_LEN])
{
	memcpy(key, fsid, NET_FSID_LEN);
	blk_put_be64(key + NET_FSID_LEN, seq);
}

/* The current seq of @fsid into *@seq (0: none). 0 or -EIO. */
static int current_seq(struct net_heads *h, const uint8_t fsid[NET_FSID_LEN],
		       uint64_t *seq)
{
	uint8_t v[8];
	int64_t n =
	    blk_db_get_into(h->db, h->cf, fsid, NET_FSID_LEN, v, sizeof(v));

	*seq = 0;
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	if (n != sizeof(v) || blk_get_be64(v) == 0)
		return -EIO; /* not a record we write */
	*seq = blk_get_be64(v);
	return 0;
}

int net_heads_get(struct net_heads *h, const uint8_t fsid[NET_FSID_LEN],
		  uint64_t seq, uint8_t *buf, size_t *len)
{
	uint8_t key[KEY_LEN];
	int64_t n;
	int rc;

	*len = 0;
	if (seq == 0) {
		rc = current_seq(h, fsid, &seq);
		if (rc < 0)
			return rc;
		if (seq == 0)
			return -ENOENT;
	}
	head_key(fsid, seq, key);
	n = blk_db_get_into(h->db, h->cf, key, sizeof(key), buf,
			    NET_HEAD_MAX_BYTES);
	if (n < 0)
		return (int)n;
	if (n == 0 || n > NET_HEAD_MAX_BYTES)
		return -EIO;
	*len = (size_t)n;
	return 0;
}

/* The node's clock, unix ns. */
static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *z85(const uint8_t key[32], char out[41])
{
	if (!zmq_z85_encode(out, key, 32))
		snprintf(out, 41, "?");
	return out;
}

static const char *hex16(const uint8_t id[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
	return out;
}

/* The checks of the head alone (invariant 2's first four): decoded into
 * @n. 0, or -errno with @why. */
static int check_alone(const struct net_heads *h, const uint8_t *rec,
		       size_t len, struct blk_head *n, char *why, size_t wl)
{
	char id[33];
	int rc = blk_head_decode(n, rec, len);

	if (rc == -ENOKEY) {
		snprintf(why, wl, "unsigned head (seq %" PRIu64 ")", n->seq);
		return -EBADMSG;
	}
	if (rc < 0) {
		snprintf(why, wl, "malformed head (%zu bytes)", len);
		return -EBADMSG;
	}
	if (memcmp(n->fs, h->fs_id, NET_FSID_LEN) != 0) {
		snprintf(why, wl, "head of another filesystem (%s)",
			 hex16(n->fs, id));
		return -ENOENT;
	}
	if (blk_head_verify(n, h->fs_pk) < 0) {
		snprintf(why, wl,
			 "forged head (seq %" PRIu64 "): its signature does "
			 "not verify with the filesystem's key",
			 n->seq);
		return -EBADMSG;
	}
	return 0;
}

/* The checks against the current head @cur (@cur_seq, its bytes @cb of
 * @cl; none when @cur_seq is 0) of the new one @n, which @expect should
 * name. 0, or -errno with @why. */
static int check_follows(uint64_t expect, const struct blk_head *n,
			 uint64_t cur_seq, const struct blk_head *cur,
			 const uint8_t *cb, size_t cl, char *why, size_t wl)
{
	struct blk_cid pcid;
	uint64_t now = now_ns();
	char w[41];

	if (expect != cur_seq) {
		snprintf(why, wl,
			 "stale head: seq %" PRIu64 " written against seq "
			 "%" PRIu64 ", the node is at %" PRIu64,
			 n->seq, expect, cur_seq);
		return -ESTALE;
	}
	if (n->seq != cur_seq + 1) {
		snprintf(why, wl,
			 "%s head: seq %" PRIu64 ", the node is at %" PRIu64,
			 n->seq <= cur_seq ? "replayed" : "skipped", n->seq,
			 cur_seq);
		return -ESTALE;
	}
	if (cur_seq == 0) {
		if (!n->has_parent)
			return 0;
		snprintf(why, wl, "wrong parent: seq 1 has a parent");
		return -EINVAL;
	}
	blk_head_cid(cb, cl, &pcid);
	if (!n->has_parent || !blk_cid_equal(&n->parent, &pcid)) {
		snprintf(why, wl,
			 "wrong parent: seq %" PRIu64 " does not follow the "
			 "node's seq %" PRIu64,
			 n->seq, cur_seq);
		return -EINVAL;
	}
	if (memcmp(n->writer, cur->writer, sizeof(n->writer)) != 0 &&
	    cur->lease_ns > now) {
		snprintf(why, wl,
			 "lease held by %s for %" PRIu64 " s more (seq "
			 "%" PRIu64 ")",
			 z85(cur->writer, w),
			 (cur->lease_ns - now) / 1000000000u + 1, cur_seq);
		return -EACCES;
	}
	return 0;
}

/* The current head of the configured filesystem: *@seq (0: none), its
 * bytes in @cb (*@cl of them) and decoded in @cur. 0, or -EIO with @why. */
static int load_current(struct net_heads *h, uint64_t *seq, uint8_t *cb,
			size_t *cl, struct blk_head *cur, char *why, size_t wl)
{
	int rc = current_seq(h, h->fs_id, seq);

	if (rc == 0 && *seq)
		rc = net_heads_get(h, h->fs_id, *seq, cb, cl);
	if (rc == -ENOENT)
		rc = -EIO; /* the seq names no head: invariant 1 broken */
	/* What was stored was checked: a record that no longer decodes is
	 * damage, not a refusal. */
	if (rc == 0 && *seq && blk_head_decode(cur, cb, *cl) < 0)
		rc = -EIO;
	if (rc < 0)
		snprintf(why, wl, "cannot read the current head: %s",
			 strerror(-rc));
	return rc;
}

/* Write head @n (@rec, @len bytes) and the new current seq, synced. */
static int store(struct net_heads *h, const struct blk_head *n,
		 const uint8_t *rec, size_t len, char *why, size_t wl)
{
	uint8_t key[KEY_LEN], v[8];
	struct blk_batch *b = blk_batch_new(h->db);
	int rc;

	if (!b) {
		snprintf(why, wl, "out of memory");
		return -ENOMEM;
	}
	head_key(h->fs_id, n->seq, key);
	blk_put_be64(v, n->seq);
	blk_batch_put(b, h->cf, key, sizeof(key), rec, len);
	blk_batch_put(b, h->cf, h->fs_id, NET_FSID_LEN, v, sizeof(v));
	rc = blk_batch_commit(b, BLK_WRITE_SYNC);
	blk_batch_free(b);
	if (rc < 0)
		snprintf(why, wl, "cannot store head seq %" PRIu64 ": %s",
			 n->seq, strerror(-rc));
	return rc;
}

int net_heads_cas(struct net_heads *h, uint64_t expect, const uint8_t *rec,
		  size_t len, char *why, size_t whylen)
{
	struct blk_head n, cur;
	uint8_t cb[NET_HEAD_MAX_BYTES];
	size_t cl = 0;
	uint64_t cur_seq;
	int rc;

	why[0] = 0;
	if (!h->has_fs) {
		snprintf(why, whylen,
			 "the cluster file has no [filesystem] section");
		return -EOPNOTSUPP;
	}
	if (!rec || len == 0 || len > NET_HEAD_MAX_BYTES) {
		snprintf(why, whylen, "malformed head (%zu bytes)", len);
		return -EBADMSG;
	}
	rc = check_alone(h, rec, len, &n, why, whylen);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&h->mu);
	rc = load_current(h, &cur_seq, cb, &cl, &cur, why, whylen);
	if (rc == 0)
		rc = check_follows(expect, &n, cur_seq, &cur, cb, cl, why,
				   whylen);
	if (rc == 0)
		rc = store(h, &n, rec, len, why, whylen);
	pthread_mutex_unlock(&h->mu);
	return rc;
}
