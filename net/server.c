/* The storage-node server: ROUTER + proxy + worker pool + ZAP handler;
 * see server.h for the contract and the records it keeps. */

/*
 * Design notes.
 *
 *  1. Sockets and threads. The ROUTER (frontend) and the inproc DEALER
 *     (backend) are created by net_server_new, then used only by the proxy
 *     thread (zmq_proxy_steerable) until it returns on TERMINATE; only then
 *     does net_server_free close them. Each worker owns one DEALER connected
 *     to the backend and receives [routing id][header][payload...]; it
 *     answers [routing id][reply frames], which the proxy routes back. The
 *     ZAP thread owns its REP socket. Workers and the ZAP thread poll with a
 *     short timeout and leave when s->stop is set.
 *
 *  2. Usage (s->used, s->frags) mirrors the 'S' record and is changed only
 *     under s->mu, by PUT and DELETE, in the same transaction that changes
 *     the fragments; so the check against the capacity and the write are
 *     atomic with respect to each other. Readers (GET, HAVE, LIST) take no
 *     lock: RocksDB gives them a consistent view per key.
 *
 *  3. GET replies are zero-copy: the value RocksDB read (a pinned slice,
 *     not copied out) is handed to ZeroMQ with zmq_msg_init_data and
 *     released by it once sent. GET skips RocksDB's checksum: the
 *     fragment's own XXH3 checksum is verified instead. PUT hands RocksDB
 *     the header and the received bytes as two slices (no copy of ours).
 */
#include "net/server.h"

#include "blocks/bytes.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "net/keys.h"

#define POLL_MS 100
#define MAX_IN_FRAMES 8 /* routing id + NET_MAX_FRAMES, with room to spare */
#define MAX_MSG_BYTES ((int64_t)EC_MAX_BLOCK + 65536)
#define STATS_LEN 16

static const uint8_t STATS_KEY[1] = {'S'};
enum { TAG_FRAG = 'F', TAG_INDEX = 'I' };

struct net_server {
	void *ctx;
	bool own_ctx;
	void *router, *backend, *ctl_in, *ctl_out, *zap;
	char endpoint[256];
	char backend_ep[64], ctl_ep[64];

	pthread_t proxy_thread, zap_thread;
	pthread_t *workers;
	unsigned nworkers;
	bool proxy_started, zap_started;
	atomic_bool stop;

	uint8_t (*allowed)[32];
	size_t nallowed;

	struct blk_db *db;
	unsigned cf;
	uint64_t capacity;
	unsigned fault_corrupt_get; /* enum net_fault */

	pthread_mutex_t mu; /* protects used, frags and their record */
	uint64_t used, frags;
};

void net_server_frag_key(const struct net_fref *ref,
			 uint8_t out[NET_SERVER_KEY_LEN])
{
	out[0] = TAG_FRAG;
	net_fref_encode(ref, out + 1);
}

static void index_key(const uint8_t *fref, uint8_t out[NET_SERVER_KEY_LEN])
{
	out[0] = TAG_INDEX;
	memcpy(out + 1, fref, NET_FREF_LEN);
}

const char *net_server_endpoint(const struct net_server *s)
{
	return s->endpoint;
}

void net_server_status(struct net_server *s, struct net_status *st)
{
	pthread_mutex_lock(&s->mu);
	st->capacity = s->capacity;
	st->used = s->used;
	st->fragments = s->frags;
	pthread_mutex_unlock(&s->mu);
}

/* ---- usage record ---- */

static void stats_encode(const struct net_server *s, uint8_t out[STATS_LEN])
{
	blk_put_le64(out, s->used);
	blk_put_le64(out + 8, s->frags);
}

/* Load the 'S' record, or recount the index entries when there is none
 * (a column family filled by something else, or an old one). */
static int load_usage(struct net_server *s)
{
	uint8_t v[STATS_LEN];
	int64_t n;
	struct blk_iter *it;
	const uint8_t tag = TAG_INDEX;
	int rc;

	n = blk_db_get_into(s->db, s->cf, STATS_KEY, sizeof(STATS_KEY), v,
			    sizeof(v));
	if (n == STATS_LEN) {
		s->used = blk_get_le64(v);
		s->frags = blk_get_le64(v + 8);
		return 0;
	}
	if (n >= 0)
		return -EIO; /* a record we did not write */
	if (n != -ENOENT)
		return (int)n;
	s->used = s->frags = 0;
	it = blk_iter_new(s->db, s->cf, &tag, 1, NULL, 0);
	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t vlen;
		const uint8_t *val = blk_iter_value(it, &vlen);

		if (vlen != 4)
			continue;
		s->used += EC_FRAG_HDR_LEN + (uint64_t)blk_get_le32(val);
		s->frags++;
	}
	rc = blk_iter_status(it);
	blk_iter_free(it);
	return rc;
}

/* ---- request handlers: each fills @rep (status and payload) ---- */

struct reply {
	struct net_rep rep;
	void *own;	      /* freed after sending */
	struct blk_val *zc_val; /* GET: value whose bytes go zero-copy */
};

static int do_put(struct net_server *s, const struct net_req *q)
{
	uint8_t fref[NET_FREF_LEN], fkey[NET_SERVER_KEY_LEN],
	    ikey[NET_SERVER_KEY_LEN], ival[4], stats[STATS_LEN];
	struct net_fref ref = {.cid = q->frag.cid, .index = q->frag.index};
	uint64_t vlen = EC_FRAG_HDR_LEN + (uint64_t)q->len, oldlen = 0;
	struct blk_txn *t;
	int64_t n;
	int rc;

	if (ec_frag_verify(&q->frag, q->data, q->len) < 0)
		return -EBADMSG;
	net_fref_encode(&ref, fref);
	net_server_frag_key(&ref, fkey);
	index_key(fref, ikey);
	blk_put_le32(ival, (uint32_t)q->len);

	t = blk_txn_new(s->db);
	if (!t)
		return -ENOMEM;
	/* The bytes are copied into the batch outside the lock; only the
	 * usage record depends on the state it guards. */
	blk_txn_put2(t, s->cf, fkey, sizeof(fkey), q->frag_raw,
		     EC_FRAG_HDR_LEN, q->data, q->len);
	blk_txn_put(t, s->cf, ikey, sizeof(ikey), ival, sizeof(ival));

	pthread_mutex_lock(&s->mu);
	{
		uint8_t old[4];

		n = blk_db_get_into(s->db, s->cf, ikey, sizeof(ikey), old, 4);
		if (n == 4) {
			oldlen = EC_FRAG_HDR_LEN + (uint64_t)blk_get_le32(old);
		} else if (n != -ENOENT) {
			rc = n < 0 ? (int)n : -EIO;
			goto out;
		}
	}
	if (vlen > oldlen && s->used - oldlen + vlen > s->capacity) {
		rc = -ENOSPC;
		goto out;
	}
	{
		uint64_t used = s->used - oldlen + vlen;
		uint64_t frags = s->frags + (oldlen ? 0 : 1);
		struct net_server tmp = {.used = used, .frags = frags};

		stats_encode(&tmp, stats);
		blk_txn_put(t, s->cf, STATS_KEY, sizeof(STATS_KEY), stats,
			    sizeof(stats));
		rc = blk_txn_commit(t, false);
		if (rc == 0) {
			s->used = used;
			s->frags = frags;
		}
	}
out:
	pthread_mutex_unlock(&s->mu);
	blk_txn_free(t);
	return rc;
}

static int do_get(struct net_server *s, const struct net_req *q,
		  struct reply *r)
{
	uint8_t key[NET_SERVER_KEY_LEN];
	struct ec_frag_hdr h;
	struct blk_val *v;
	const uint8_t *val;
	size_t vlen;
	int rc;

	/* RocksDB's own checksum is skipped: the fragment's XXH3 checksum,
	 * checked below, covers the same bytes end to end and costs a tenth
	 * of a software CRC32C. */
	net_server_frag_key(&q->ref, key);
	rc = blk_db_get_val(s->db, s->cf, key, sizeof(key), BLK_GET_NO_CRC,
			    &v);
	if (rc < 0)
		return rc;
	val = blk_val_data(v, &vlen);
	if (vlen <= EC_FRAG_HDR_LEN ||
	    ec_frag_hdr_parse(val, EC_FRAG_HDR_LEN, &h) < 0 ||
	    !blk_cid_equal(&h.cid, &q->ref.cid) || h.index != q->ref.index ||
	    ec_frag_verify(&h, val + EC_FRAG_HDR_LEN, vlen - EC_FRAG_HDR_LEN) <
		0) {
		blk_val_free(v);
		return -EBADMSG;
	}
	if (s->fault_corrupt_get) {
		/* the pinned value may be shared: damage a copy */
		uint8_t *b = malloc(vlen);

		if (!b) {
			blk_val_free(v);
			return -ENOMEM;
		}
		memcpy(b, val, vlen);
		blk_val_free(v);
		if (s->fault_corrupt_get != NET_FAULT_LIE)
			b[EC_FRAG_HDR_LEN + (vlen - EC_FRAG_HDR_LEN) / 2] ^=
			    0x40;
		if (s->fault_corrupt_get == NET_FAULT_LIE && h.block_len > 1)
			h.block_len--;
		if (s->fault_corrupt_get != NET_FAULT_FLIP)
			ec_frag_hdr_seal(&h, b + EC_FRAG_HDR_LEN, b);
		r->own = b;
		val = b;
	} else {
		r->zc_val = v;
	}
	r->rep.frag_raw = val;
	r->rep.frag = h;
	r->rep.data = val + EC_FRAG_HDR_LEN;
	r->rep.len = vlen - EC_FRAG_HDR_LEN;
	return 0;
}

static int do_have(struct net_server *s, const struct net_req *q,
		   struct reply *r)
{
	uint8_t *map = calloc(1, net_bitmap_len(q->hdr.count));
	uint8_t key[NET_SERVER_KEY_LEN];

	if (!map)
		return -ENOMEM;
	for (uint32_t i = 0; i < q->hdr.count; i++) {
		int64_t n;

		index_key(q->refs + (size_t)i * NET_FREF_LEN, key);
		n = blk_db_get_into(s->db, s->cf, key, sizeof(key), NULL, 0);
		if (n >= 0) {
			net_bitmap_set(map, i);
		} else if (n != -ENOENT) {
			free(map);
			return (int)n;
		}
	}
	r->own = map;
	r->rep.bitmap = map;
	r->rep.hdr.count = q->hdr.count;
	return 0;
}

static int fref_cmp(const void *a, const void *b, void *base)
{
	const uint8_t *refs = base;

	return memcmp(refs + (size_t)*(const uint32_t *)a * NET_FREF_LEN,
		      refs + (size_t)*(const uint32_t *)b * NET_FREF_LEN,
		      NET_FREF_LEN);
}

/* Delete the fragments named; bit i of the reply says fref i was there
 * (and is now gone). */
static int do_delete(struct net_server *s, const struct net_req *q,
		     struct reply *r)
{
	uint32_t n = q->hdr.count;
	uint8_t *map = calloc(1, net_bitmap_len(n));
	uint32_t *order = malloc(n * sizeof(*order));
	uint8_t key[NET_SERVER_KEY_LEN], stats[STATS_LEN];
	struct net_server tmp;
	struct blk_txn *t = blk_txn_new(s->db);
	bool prev_found = false;
	int rc = 0;

	if (!map || !order || !t) {
		free(map);
		free(order);
		blk_txn_free(t);
		return -ENOMEM;
	}
	/* Sorted, so a fref named twice is counted once. */
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), fref_cmp, (void *)q->refs);

	pthread_mutex_lock(&s->mu);
	tmp.used = s->used;
	tmp.frags = s->frags;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t v[4];
		int64_t got;

		if (i > 0 &&
		    fref_cmp(&order[i], &order[i - 1], (void *)q->refs) == 0) {
			if (prev_found)
				net_bitmap_set(map, order[i]);
			continue;
		}
		prev_found = false;
		index_key(q->refs + (size_t)order[i] * NET_FREF_LEN, key);
		got = blk_db_get_into(s->db, s->cf, key, sizeof(key), v, 4);
		if (got == -ENOENT)
			continue;
		if (got != 4) {
			rc = got < 0 ? (int)got : -EIO;
			break;
		}
		blk_txn_delete(t, s->cf, key, sizeof(key));
		key[0] = TAG_FRAG;
		blk_txn_delete(t, s->cf, key, sizeof(key));
		tmp.used -= EC_FRAG_HDR_LEN + (uint64_t)blk_get_le32(v);
		tmp.frags--;
		prev_found = true;
		net_bitmap_set(map, order[i]);
	}
	if (rc == 0) {
		stats_encode(&tmp, stats);
		blk_txn_put(t, s->cf, STATS_KEY, sizeof(STATS_KEY), stats,
			    sizeof(stats));
		rc = blk_txn_commit(t, false);
		if (rc == 0) {
			s->used = tmp.used;
			s->frags = tmp.frags;
		}
	}
	pthread_mutex_unlock(&s->mu);
	blk_txn_free(t);
	free(order);
	if (rc < 0) {
		free(map);
		return rc;
	}
	r->own = map;
	r->rep.bitmap = map;
	r->rep.hdr.count = n;
	return 0;
}

static int do_list(struct net_server *s, const struct net_req *q,
		   struct reply *r)
{
	const uint8_t tag = TAG_INDEX;
	uint8_t start[NET_SERVER_KEY_LEN];
	uint8_t *items = malloc((size_t)q->hdr.count * NET_LIST_ITEM_LEN);
	struct blk_iter *it;
	uint32_t n = 0;
	bool more = false;
	int rc;

	if (!items)
		return -ENOMEM;
	start[0] = TAG_INDEX;
	if (q->has_cursor)
		net_fref_encode(&q->ref, start + 1);
	it = blk_iter_new(s->db, s->cf, &tag, 1, q->has_cursor ? start : NULL,
			  q->has_cursor ? sizeof(start) : 0);
	if (!it) {
		free(items);
		return -ENOMEM;
	}
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = blk_iter_key(it, &klen);
		const uint8_t *v = blk_iter_value(it, &vlen);
		uint8_t *out;

		if (klen != NET_SERVER_KEY_LEN || vlen != 4)
			continue;
		if (q->has_cursor && memcmp(k, start, klen) == 0)
			continue; /* the cursor itself: listed before */
		if (n == q->hdr.count) {
			more = true;
			break;
		}
		out = items + (size_t)n * NET_LIST_ITEM_LEN;
		memcpy(out, k + 1, NET_FREF_LEN);
		memcpy(out + NET_FREF_LEN, v, 4);
		if (out[NET_FREF_LEN - 1] >= EC_MAX_FRAGS)
			continue; /* not ours; cannot go on the wire */
		n++;
	}
	rc = blk_iter_status(it);
	blk_iter_free(it);
	if (rc < 0) {
		free(items);
		return rc;
	}
	r->own = items;
	r->rep.items = items;
	r->rep.hdr.count = n;
	r->rep.hdr.flags = more ? NET_F_MORE : 0;
	return 0;
}

static int handle(struct net_server *s, const struct net_req *q,
		  struct reply *r)
{
	switch (q->hdr.op) {
	case NET_OP_PING:
		r->rep.hdr.arg = q->hdr.arg;
		return 0;
	case NET_OP_PUT:
		return do_put(s, q);
	case NET_OP_GET:
		return do_get(s, q, r);
	case NET_OP_HAVE:
		return do_have(s, q, r);
	case NET_OP_DELETE:
		return do_delete(s, q, r);
	case NET_OP_LIST:
		return do_list(s, q, r);
	case NET_OP_STATUS:
		net_server_status(s, &r->rep.st);
		return 0;
	case NET_OP_SYNC:
		return blk_db_sync(s->db);
	default:
		return -EOPNOTSUPP;
	}
}

/* See server.h. */
int net_server_exec(void *arg, const struct net_req *q, struct net_rep *rep,
		    void **hold)
{
	struct net_server *s = arg;
	struct reply *r = calloc(1, sizeof(*r));
	int rc;

	*hold = NULL;
	if (!r)
		return -ENOMEM;
	r->rep.hdr.op = q->hdr.op;
	r->rep.hdr.id = q->hdr.id;
	rc = handle(s, q, r);
	r->rep.hdr.status = rc;
	*rep = r->rep;
	*hold = r;
	return rc;
}

void net_server_release(void *hold)
{
	struct reply *r = hold;

	if (!r)
		return;
	blk_val_free(r->zc_val);
	free(r->own);
	free(r);
}

/* ---- workers ---- */

static void free_value(void *data, void *hint)
{
	blk_val_free(hint);
}

/* Send @rid then the reply's frames; the GET bytes go zero-copy. */
static void send_reply(void *sock, zmq_msg_t *rid, struct reply *r)
{
	uint8_t scratch[NET_ENC_SCRATCH];
	struct net_frame f[NET_MAX_FRAMES];
	int n = net_rep_encode(&r->rep, scratch, f);

	if (n < 0) { /* our bug: answer something the client can read */
		r->rep.hdr.status = -EIO;
		n = net_rep_encode(&r->rep, scratch, f);
	}
	if (zmq_msg_send(rid, sock, ZMQ_SNDMORE) < 0)
		return;
	for (int i = 0; i < n; i++) {
		int more = i + 1 < n ? ZMQ_SNDMORE : 0;

		if (r->zc_val && f[i].data == r->rep.data && i == 2) {
			zmq_msg_t m;

			/* ZeroMQ owns the value from here and frees it. */
			zmq_msg_init_data(&m, (void *)f[i].data, f[i].len,
					  free_value, r->zc_val);
			r->zc_val = NULL;
			if (zmq_msg_send(&m, sock, more) < 0)
				zmq_msg_close(&m);
		} else {
			zmq_send(sock, f[i].data, f[i].len, more);
		}
	}
}

static void *worker_main(void *arg)
{
	struct net_server *s = arg;
	void *sock = zmq_socket(s->ctx, ZMQ_DEALER);
	int zero = 0;

	if (!sock)
		return NULL;
	zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_connect(sock, s->backend_ep) < 0) {
		zmq_close(sock);
		return NULL;
	}
	while (!atomic_load(&s->stop)) {
		zmq_pollitem_t pi = {.socket = sock, .events = ZMQ_POLLIN};
		zmq_msg_t m[MAX_IN_FRAMES];
		struct net_frame f[MAX_IN_FRAMES];
		struct net_req q;
		struct reply r;
		size_t n = 0;
		bool too_many = false;
		int more = 1, rc;

		if (zmq_poll(&pi, 1, POLL_MS) <= 0 ||
		    !(pi.revents & ZMQ_POLLIN))
			continue;
		/* The whole message: routing id, then ours. */
		while (more) {
			zmq_msg_t extra, *dst = n < MAX_IN_FRAMES ? &m[n] : &extra;

			zmq_msg_init(dst);
			if (zmq_msg_recv(dst, sock, 0) < 0) {
				zmq_msg_close(dst);
				break;
			}
			more = zmq_msg_more(dst);
			if (dst == &extra) {
				zmq_msg_close(&extra);
				too_many = true;
			} else {
				n++;
			}
		}
		if (n < 1)
			continue;
		for (size_t i = 1; i < n; i++)
			f[i - 1] = (struct net_frame){zmq_msg_data(&m[i]),
						      zmq_msg_size(&m[i])};

		memset(&r, 0, sizeof(r));
		rc = net_req_decode(f, n - 1, &q);
		if (rc == 0 && too_many)
			rc = -EINVAL;
		r.rep.hdr.op = q.hdr.op;
		r.rep.hdr.id = q.hdr.id;
		if (rc == 0)
			rc = handle(s, &q, &r);
		r.rep.hdr.status = rc;
		if (rc < 0) {
			blk_val_free(r.zc_val);
			r.zc_val = NULL;
		}
		send_reply(sock, &m[0], &r);
		blk_val_free(r.zc_val);
		free(r.own);
		for (size_t i = 0; i < n; i++)
			zmq_msg_close(&m[i]);
	}
	zmq_close(sock);
	return NULL;
}

/* ---- ZAP (RFC 27) ---- */

static bool key_allowed(const struct net_server *s, const void *key)
{
	for (size_t i = 0; i < s->nallowed; i++)
		if (!memcmp(s->allowed[i], key, 32))
			return true;
	return false;
}

static void *zap_main(void *arg)
{
	struct net_server *s = arg;

	while (!atomic_load(&s->stop)) {
		zmq_pollitem_t pi = {.socket = s->zap, .events = ZMQ_POLLIN};
		zmq_msg_t m[8];
		size_t n = 0;
		int more = 1;
		bool ok;
		const char *code;

		if (zmq_poll(&pi, 1, POLL_MS) <= 0 ||
		    !(pi.revents & ZMQ_POLLIN))
			continue;
		while (more) {
			zmq_msg_t extra, *dst = n < 8 ? &m[n] : &extra;

			zmq_msg_init(dst);
			if (zmq_msg_recv(dst, s->zap, 0) < 0) {
				zmq_msg_close(dst);
				break;
			}
			more = zmq_msg_more(dst);
			if (dst == &extra)
				zmq_msg_close(&extra);
			else
				n++;
		}
		/* version, request id, domain, address, identity, mechanism,
		 * credentials (CURVE: the client's 32-byte public key) */
		ok = n == 7 && zmq_msg_size(&m[0]) == 3 &&
		     !memcmp(zmq_msg_data(&m[0]), "1.0", 3) &&
		     zmq_msg_size(&m[5]) == 5 &&
		     !memcmp(zmq_msg_data(&m[5]), "CURVE", 5) &&
		     zmq_msg_size(&m[6]) == 32 &&
		     key_allowed(s, zmq_msg_data(&m[6]));
		code = ok ? "200" : "400";
		zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
		if (n >= 2)
			zmq_send(s->zap, zmq_msg_data(&m[1]),
				 zmq_msg_size(&m[1]), ZMQ_SNDMORE);
		else
			zmq_send(s->zap, "", 0, ZMQ_SNDMORE);
		zmq_send(s->zap, code, 3, ZMQ_SNDMORE);
		zmq_send(s->zap, ok ? "OK" : "key not in the cluster",
			 ok ? 2 : 22, ZMQ_SNDMORE);
		zmq_send(s->zap, "", 0, ZMQ_SNDMORE); /* user id */
		zmq_send(s->zap, "", 0, 0);	       /* metadata */
		for (size_t i = 0; i < n; i++)
			zmq_msg_close(&m[i]);
	}
	return NULL;
}

/* ---- proxy ---- */

static void *proxy_main(void *arg)
{
	struct net_server *s = arg;

	zmq_proxy_steerable(s->router, s->backend, NULL, s->ctl_in);
	return NULL;
}

/* ---- lifecycle ---- */

static int zerr(void)
{
	return errno ? -errno : -EIO;
}

int net_server_new(const struct net_server_config *cfg,
		   struct net_server **out)
{
	struct net_server *s;
	const char *env = getenv("BLOCKFS_FAULT_CORRUPT_GET");
	int zero = 0, one = 1, hwm = 10000, rc;
	int64_t maxmsg = MAX_MSG_BYTES;
	size_t len;

	*out = NULL;
	if (!cfg || !cfg->endpoint || !cfg->db || cfg->cf < BLK_CF_USER ||
	    !net_key_valid(cfg->public_key) || !net_key_valid(cfg->secret_key) ||
	    (cfg->nallowed && !cfg->allowed_keys) ||
	    cfg->workers > NET_SERVER_MAX_WORKERS)
		return -EINVAL;
	for (size_t i = 0; i < cfg->nallowed; i++)
		if (!net_key_valid(cfg->allowed_keys[i]))
			return -EINVAL;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->stop, false);
	s->db = cfg->db;
	s->cf = cfg->cf;
	s->capacity = cfg->capacity;
	s->fault_corrupt_get = cfg->fault_corrupt_get;
	if (env && (!strcmp(env, "1") || !strcmp(env, "flip")))
		s->fault_corrupt_get = NET_FAULT_FLIP;
	else if (env && !strcmp(env, "forge"))
		s->fault_corrupt_get = NET_FAULT_FORGE;
	else if (env && !strcmp(env, "lie"))
		s->fault_corrupt_get = NET_FAULT_LIE;
	s->nworkers = cfg->workers ? cfg->workers : NET_SERVER_DEFAULT_WORKERS;
	s->nallowed = cfg->nallowed;
	s->allowed = calloc(cfg->nallowed ? cfg->nallowed : 1, 32);
	s->workers = calloc(s->nworkers, sizeof(*s->workers));
	if (!s->allowed || !s->workers) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < cfg->nallowed; i++)
		zmq_z85_decode(s->allowed[i], cfg->allowed_keys[i]);

	rc = load_usage(s);
	if (rc < 0)
		goto fail;

	s->ctx = cfg->zmq_ctx;
	if (!s->ctx) {
		s->ctx = net_ctx_new();
		s->own_ctx = true;
		if (!s->ctx) {
			rc = zerr();
			goto fail;
		}
	}
	snprintf(s->backend_ep, sizeof(s->backend_ep),
		 "inproc://blockfs-server-backend-%p", (void *)s);
	snprintf(s->ctl_ep, sizeof(s->ctl_ep), "inproc://blockfs-server-ctl-%p",
		 (void *)s);

	/* ZAP first: a CURVE server with no handler would admit anyone. */
	s->zap = zmq_socket(s->ctx, ZMQ_REP);
	if (!s->zap) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(s->zap, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_bind(s->zap, "inproc://zeromq.zap.01") < 0) {
		rc = zerr();
		goto fail;
	}
	if (pthread_create(&s->zap_thread, NULL, zap_main, s) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	s->zap_started = true;

	s->backend = zmq_socket(s->ctx, ZMQ_DEALER);
	if (!s->backend) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(s->backend, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_bind(s->backend, s->backend_ep) < 0) {
		rc = zerr();
		goto fail;
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
			s->nworkers = i;
			rc = -EAGAIN;
			goto fail;
		}
	}

	s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
	if (!s->router) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(s->router, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s->router, ZMQ_CURVE_SERVER, &one, sizeof(one));
	zmq_setsockopt(s->router, ZMQ_CURVE_SECRETKEY, cfg->secret_key,
		       NET_KEY_Z85_LEN);
	zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, "blockfs", 7);
	zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	zmq_setsockopt(s->router, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(s->router, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	if (zmq_bind(s->router, cfg->endpoint) < 0) {
		rc = zerr();
		goto fail;
	}
	len = sizeof(s->endpoint);
	if (zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, s->endpoint, &len) < 0)
		snprintf(s->endpoint, sizeof(s->endpoint), "%s", cfg->endpoint);

	s->ctl_in = zmq_socket(s->ctx, ZMQ_PAIR);
	s->ctl_out = zmq_socket(s->ctx, ZMQ_PAIR);
	if (!s->ctl_in || !s->ctl_out || zmq_bind(s->ctl_in, s->ctl_ep) < 0 ||
	    zmq_connect(s->ctl_out, s->ctl_ep) < 0) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(s->ctl_in, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s->ctl_out, ZMQ_LINGER, &zero, sizeof(zero));
	if (pthread_create(&s->proxy_thread, NULL, proxy_main, s) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	s->proxy_started = true;
	*out = s;
	return 0;

fail:
	net_server_free(s);
	return rc;
}

void net_server_free(struct net_server *s)
{
	if (!s)
		return;
	if (s->proxy_started) {
		zmq_send(s->ctl_out, "TERMINATE", 9, 0);
		pthread_join(s->proxy_thread, NULL);
	}
	atomic_store(&s->stop, true);
	for (unsigned i = 0; i < s->nworkers; i++)
		if (s->workers && s->workers[i])
			pthread_join(s->workers[i], NULL);
	if (s->zap_started)
		pthread_join(s->zap_thread, NULL);
	if (s->router) {
		/* Give the port back now, not when the context is reaped. */
		zmq_unbind(s->router, s->endpoint);
		zmq_close(s->router);
	}
	if (s->backend)
		zmq_close(s->backend);
	if (s->ctl_in)
		zmq_close(s->ctl_in);
	if (s->ctl_out)
		zmq_close(s->ctl_out);
	if (s->zap)
		zmq_close(s->zap);
	if (s->own_ctx && s->ctx)
		zmq_ctx_term(s->ctx);
	pthread_mutex_destroy(&s->mu);
	free(s->allowed);
	free(s->workers);
	free(s);
}
