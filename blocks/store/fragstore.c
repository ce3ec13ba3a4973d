/* The node's fragment store: 'F', 'I', 'S' and 'L' records in one column
 * family of the record store; see fragstore.h for the contract and
 * invariants. */
#include "blocks/store/fragstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "blocks/base/bytes.h"

#define STATS_LEN 16
#define INDEX_LEN 4
#define LOST_LEN 16

enum { TAG_FRAG = 'F', TAG_INDEX = 'I' };
static const uint8_t STATS_KEY[1] = {'S'};
static const uint8_t LOST_KEY[1] = {'L'};

struct blk_fragstore {
	/* Set at open, read-only after. */
	struct blk_db *db;
	unsigned cf;
	size_t head_len;
	uint64_t capacity;
	char *data_dir;
	uint64_t disk_reserve;
	blk_frag_check_fn check;
	void *check_arg;

	/* mu guards used and count, and is held from the read of what put or
	 * delete replaces to the commit of the 'S' record (invariants 2, 3). */
	pthread_mutex_t mu;
	uint64_t used;	/* under mu */
	uint64_t count; /* under mu */

	/* The 'L' record and what this open added to it: set by open,
	 * read-only after. */
	uint64_t lost, lost_now;
};

static void make_key(uint8_t tag, const uint8_t *name,
		     uint8_t out[BLK_FRAGSTORE_KEY_LEN])
{
	out[0] = tag;
	memcpy(out + 1, name, BLK_FRAG_NAME_LEN);
}

void blk_fragstore_frag_key(const uint8_t name[BLK_FRAG_NAME_LEN],
			    uint8_t out[BLK_FRAGSTORE_KEY_LEN])
{
	make_key(TAG_FRAG, name, out);
}

static void stats_put(struct blk_fragstore *fs, struct blk_batch *t,
		      uint64_t used, uint64_t count)
{
	uint8_t v[STATS_LEN];

	blk_put_le64(v, used);
	blk_put_le64(v + 8, count);
	blk_batch_put(t, fs->cf, STATS_KEY, sizeof(STATS_KEY), v, sizeof(v));
}

/* Count the index entries into fs->used and fs->count. */
static int recount(struct blk_fragstore *fs)
{
	const uint8_t tag = TAG_INDEX;
	struct blk_iter *it;
	int rc;

	fs->used = fs->count = 0;
	it = blk_iter_new(fs->db, fs->cf, &tag, 1, NULL, 0);
	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t vlen;
		const uint8_t *val = blk_iter_value(it, &vlen);

		if (vlen != INDEX_LEN)
			continue;
		fs->used += fs->head_len + (uint64_t)blk_get_le32(val);
		fs->count++;
	}
	rc = blk_iter_status(it);
	blk_iter_free(it);
	return rc;
}

/* Load the 'L' record, and add to it the records that the database's
 * open dropped from a damaged write-ahead log (invariant 5), in a synced
 * commit. A read-only database keeps the addition in memory only. */
static int load_lost(struct blk_fragstore *fs)
{
	uint8_t v[LOST_LEN];
	struct blk_wal_damage wd;
	struct blk_batch *t;
	int64_t n;
	int rc;

	n = blk_db_get_into(fs->db, fs->cf, LOST_KEY, sizeof(LOST_KEY), v,
			    sizeof(v));
	if (n >= 0 && n != LOST_LEN)
		return -EIO; /* a record we did not write */
	if (n < 0 && n != -ENOENT)
		return (int)n;
	if (n == LOST_LEN)
		fs->lost = blk_get_le64(v);
	blk_db_wal_damage(fs->db, &wd);
	if (!wd.records)
		return 0;
	fs->lost_now = wd.records;
	fs->lost += wd.records;
	t = blk_batch_new(fs->db);
	if (!t)
		return -ENOMEM;
	blk_put_le64(v, fs->lost);
	blk_put_le64(v + 8, 0); /* reserved */
	blk_batch_put(t, fs->cf, LOST_KEY, sizeof(LOST_KEY), v, sizeof(v));
	rc = blk_batch_commit(t, BLK_WRITE_SYNC);
	blk_batch_free(t);
	return rc == -EROFS ? 0 : rc;
}

/* Load the 'S' record, or recount the index entries when there is none
 * (a column family filled by something else); then the 'L' record. */
static int load_usage(struct blk_fragstore *fs)
{
	uint8_t v[STATS_LEN];
	int64_t n;
	int rc;

	n = blk_db_get_into(fs->db, fs->cf, STATS_KEY, sizeof(STATS_KEY), v,
			    sizeof(v));
	if (n == STATS_LEN) {
		fs->used = blk_get_le64(v);
		fs->count = blk_get_le64(v + 8);
	} else if (n >= 0) {
		return -EIO; /* a record we did not write */
	} else if (n != -ENOENT) {
		return (int)n;
	} else if ((rc = recount(fs)) < 0) {
		return rc;
	}
	return load_lost(fs);
}

int blk_fragstore_register(struct blk_cf_registry *r)
{
	return blk_cf_register(r, "frags", BLK_CF_LARGE);
}

int blk_fragstore_open(struct blk_db *db, const struct blk_fragstore_options *o,
		       struct blk_fragstore **out)
{
	struct blk_fragstore *fs;
	int rc;

	*out = NULL;
	if (!db || !o || !blk_db_cf_open(db, o->cf) || o->head_len == 0)
		return -EINVAL;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->db = db;
	fs->cf = o->cf;
	fs->head_len = o->head_len;
	fs->capacity = o->capacity;
	fs->disk_reserve = o->disk_reserve ? o->disk_reserve
					   : BLK_FRAGSTORE_DEFAULT_DISK_RESERVE;
	fs->check = o->check;
	fs->check_arg = o->check_arg;
	pthread_mutex_init(&fs->mu, NULL);
	fs->data_dir = o->data_dir ? strdup(o->data_dir) : NULL;
	if (o->data_dir && !fs->data_dir) {
		blk_fragstore_close(fs);
		return -ENOMEM;
	}
	rc = load_usage(fs);
	if (rc < 0) {
		blk_fragstore_close(fs);
		return rc;
	}
	*out = fs;
	return 0;
}

void blk_fragstore_close(struct blk_fragstore *fs)
{
	if (!fs)
		return;
	pthread_mutex_destroy(&fs->mu);
	free(fs->data_dir);
	free(fs);
}

static bool disk_short(const struct blk_fragstore *fs, uint64_t need);

void blk_fragstore_usage(struct blk_fragstore *fs,
			 struct blk_fragstore_usage *u)
{
	pthread_mutex_lock(&fs->mu);
	u->capacity = fs->capacity;
	u->used = fs->used;
	u->count = fs->count;
	u->lost = fs->lost;
	u->lost_at_open = fs->lost_now;
	pthread_mutex_unlock(&fs->mu);
	u->full = u->used + BLK_FRAG_FULL_LEN > u->capacity ||
		  disk_short(fs, BLK_FRAG_FULL_LEN);
}

bool blk_fragstore_damaged(struct blk_fragstore *fs)
{
	return blk_db_background_errors(fs->db) > 0;
}

int blk_fragstore_sync(struct blk_fragstore *fs)
{
	return blk_db_sync(fs->db);
}

/* ---- put ---- */

/* Whether the file system under data_dir has less than @need bytes free
 * beyond the reserve. */
static bool disk_short(const struct blk_fragstore *fs, uint64_t need)
{
	struct statvfs v;

	if (!fs->data_dir || statvfs(fs->data_dir, &v) < 0)
		return false;
	return (uint64_t)v.f_bavail * v.f_frsize < need + fs->disk_reserve;
}

/* Length of the value stored under @name (0: none), from its index entry.
 * 0 or -EIO. Called with mu held. */
static int stored_len(struct blk_fragstore *fs, const uint8_t *name,
		      uint64_t *vlen)
{
	uint8_t ikey[BLK_FRAGSTORE_KEY_LEN], v[INDEX_LEN];
	int64_t n;

	make_key(TAG_INDEX, name, ikey);
	n = blk_db_get_into(fs->db, fs->cf, ikey, sizeof(ikey), v, sizeof(v));
	*vlen = 0;
	if (n == INDEX_LEN)
		*vlen = fs->head_len + (uint64_t)blk_get_le32(v);
	else if (n != -ENOENT)
		return n < 0 ? (int)n : -EIO;
	return 0;
}

/* What is stored under @name, against the bytes @data put: 1 the same
 * bytes, 0 no sound fragment there (missing, failing the check, or a
 * record RocksDB cannot read back -- its table or blob file damaged: -EIO:
 * replace it), -EEXIST another sound fragment, or -errno of the read. */
static int compare_stored(struct blk_fragstore *fs, const uint8_t *name,
			  const void *data, uint32_t len)
{
	uint8_t fkey[BLK_FRAGSTORE_KEY_LEN];
	struct blk_val *v;
	const uint8_t *val;
	size_t vlen;
	int rc;

	make_key(TAG_FRAG, name, fkey);
	rc = blk_db_get_val(fs->db, fs->cf, fkey, sizeof(fkey), &v);
	/* Every read checks RocksDB's checksums, so -EIO is a record that
	 * fails them: it is no sound fragment (invariant 3 keeps only those),
	 * and refusing the put would keep its block below redundancy. */
	if (rc == -ENOENT || rc == -EIO)
		return 0;
	if (rc < 0)
		return rc;
	val = blk_val_data(v, &vlen);
	if (vlen < fs->head_len ||
	    (fs->check && fs->check(fs->check_arg, name, val, vlen) < 0))
		rc = 0;
	else if (vlen - fs->head_len == len &&
		 !memcmp(val + fs->head_len, data, len))
		rc = 1;
	else
		rc = -EEXIST;
	blk_val_free(v);
	return rc;
}

/* The checks and the commit of put, with mu held (invariants 2-4): @t
 * holds the fragment's records; adds the 'S' record and commits it. */
static int put_locked(struct blk_fragstore *fs, struct blk_batch *t,
		      const uint8_t *name, const void *data, uint32_t len,
		      struct blk_frag_put_result *res)
{
	uint64_t vlen = fs->head_len + (uint64_t)len, oldlen, used, count;
	int rc;

	rc = stored_len(fs, name, &oldlen);
	/* An index record that fails RocksDB's checksums (a damaged table
	 * block) says nothing of what is stored: the fragment record decides
	 * (compare_stored), and the put rewrites both unless another sound
	 * fragment is there. Refusing it would keep the block below
	 * redundancy for good, and fsync failing while every node is up
	 * (the crash soak's seed 3851262544). The old length is unknown:
	 * counted as none, so usage may count that fragment twice. */
	bool bad_index = rc == -EIO;

	if (rc < 0 && !bad_index)
		return rc;
	res->outcome = BLK_FRAG_STORED;
	if (oldlen || bad_index) {
		rc = compare_stored(fs, name, data, len);
		if (rc < 0 || (rc == 1 && !bad_index)) {
			res->outcome = BLK_FRAG_SAME;
			return rc < 0 ? rc : 0;
		}
		res->outcome = BLK_FRAG_REPLACED;
	}
	res->used = fs->used;
	if (vlen > oldlen && (fs->used - oldlen + vlen > fs->capacity ||
			      disk_short(fs, vlen - oldlen)))
		return -ENOSPC;
	used = fs->used - oldlen + vlen;
	count = fs->count + (oldlen ? 0 : 1);
	stats_put(fs, t, used, count);
	rc = blk_batch_commit(t, 0);
	if (rc == 0) {
		fs->used = used;
		fs->count = count;
	} else if (rc == -EIO && disk_short(fs, vlen)) {
		rc = -ENOSPC; /* the write failed for want of room */
	}
	return rc;
}

int blk_fragstore_put(struct blk_fragstore *fs,
		      const uint8_t name[BLK_FRAG_NAME_LEN], const void *head,
		      const void *data, uint32_t len,
		      struct blk_frag_put_result *res)
{
	uint8_t fkey[BLK_FRAGSTORE_KEY_LEN], ikey[BLK_FRAGSTORE_KEY_LEN],
	    ival[INDEX_LEN];
	struct blk_batch *t;
	int rc;

	*res = (struct blk_frag_put_result){0};
	make_key(TAG_FRAG, name, fkey);
	make_key(TAG_INDEX, name, ikey);
	blk_put_le32(ival, len);
	t = blk_batch_new(fs->db);
	if (!t)
		return -ENOMEM;
	/* The bytes are copied into the batch outside the lock; only the
	 * check of what is stored and the usage record need it. */
	blk_batch_put2(t, fs->cf, fkey, sizeof(fkey), head, fs->head_len, data,
		       len);
	blk_batch_put(t, fs->cf, ikey, sizeof(ikey), ival, sizeof(ival));
	pthread_mutex_lock(&fs->mu);
	rc = put_locked(fs, t, name, data, len, res);
	pthread_mutex_unlock(&fs->mu);
	blk_batch_free(t);
	if (rc == -ENOSPC)
		res->disk_short = disk_short(fs, fs->head_len + (uint64_t)len);
	return rc;
}

/* ---- readers ---- */

int blk_fragstore_get(struct blk_fragstore *fs,
		      const uint8_t name[BLK_FRAG_NAME_LEN],
		      struct blk_val **out)
{
	uint8_t key[BLK_FRAGSTORE_KEY_LEN];

	make_key(TAG_FRAG, name, key);
	return blk_db_get_val(fs->db, fs->cf, key, sizeof(key), out);
}

int blk_fragstore_has(struct blk_fragstore *fs,
		      const uint8_t name[BLK_FRAG_NAME_LEN])
{
	uint8_t key[BLK_FRAGSTORE_KEY_LEN];
	int64_t n;

	make_key(TAG_INDEX, name, key);
	n = blk_db_get_into(fs->db, fs->cf, key, sizeof(key), NULL, 0);
	if (n >= 0)
		return 1;
	return n == -ENOENT ? 0 : (int)n;
}

struct scan {
	const uint8_t *after; /* its 'I' key, or NULL */
	blk_frag_scan_fn fn;
	void *arg;
};

/* One 'I' record of blk_fragstore_scan's walk. */
static int scan_one(void *arg, const uint8_t *k, size_t klen, const uint8_t *v,
		    size_t vlen)
{
	const struct scan *sc = arg;

	if (vlen != INDEX_LEN)
		return 0;
	if (sc->after && memcmp(k, sc->after, klen) == 0)
		return 0; /* @after itself */
	return sc->fn(sc->arg, k + 1, blk_get_le32(v));
}

int blk_fragstore_scan(struct blk_fragstore *fs,
		       const uint8_t after[BLK_FRAG_NAME_LEN],
		       blk_frag_scan_fn fn, void *arg)
{
	const uint8_t tag = TAG_INDEX;
	uint8_t start[BLK_FRAGSTORE_KEY_LEN];
	struct scan sc = {after ? start : NULL, fn, arg};
	const struct blk_walk w = {
	    .prefix = &tag,
	    .plen = 1,
	    .start = sc.after,
	    .slen = after ? sizeof(start) : 0,
	    .klen_min = BLK_FRAGSTORE_KEY_LEN,
	    .klen_max = BLK_FRAGSTORE_KEY_LEN,
	    .fn = scan_one,
	    .arg = &sc,
	};

	if (after)
		make_key(TAG_INDEX, after, start);
	return blk_db_walk(fs->db, fs->cf, &w);
}

/* ---- delete ---- */

static int name_cmp(const void *a, const void *b, void *base)
{
	const uint8_t *names = base;

	return memcmp(
	    names + (size_t) * (const uint32_t *)a * BLK_FRAG_NAME_LEN,
	    names + (size_t) * (const uint32_t *)b * BLK_FRAG_NAME_LEN,
	    BLK_FRAG_NAME_LEN);
}

/* Add to @t the deletion of the names in @order (sorted, so a name given
 * twice is counted once), with mu held, then the 'S' record, and commit. */
static int delete_locked(struct blk_fragstore *fs, struct blk_batch *t,
			 const uint8_t *names, const uint32_t *order,
			 uint32_t n, uint8_t *gone)
{
	uint64_t used = fs->used, count = fs->count;
	bool prev_found = false;
	int rc;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *name =
		    names + (size_t)order[i] * BLK_FRAG_NAME_LEN;
		uint8_t key[BLK_FRAGSTORE_KEY_LEN];
		uint64_t vlen;

		if (i > 0 &&
		    name_cmp(&order[i], &order[i - 1], (void *)names) == 0) {
			if (prev_found)
				gone[order[i] / 8] |=
				    (uint8_t)(1u << order[i] % 8);
			continue;
		}
		rc = stored_len(fs, name, &vlen);
		if (rc < 0)
			return rc;
		prev_found = vlen != 0;
		if (!vlen)
			continue;
		make_key(TAG_INDEX, name, key);
		blk_batch_delete(t, fs->cf, key, sizeof(key));
		key[0] = TAG_FRAG;
		blk_batch_delete(t, fs->cf, key, sizeof(key));
		used -= vlen;
		count--;
		gone[order[i] / 8] |= (uint8_t)(1u << order[i] % 8);
	}
	stats_put(fs, t, used, count);
	rc = blk_batch_commit(t, 0);
	if (rc == 0) {
		fs->used = used;
		fs->count = count;
	}
	return rc;
}

int blk_fragstore_delete(struct blk_fragstore *fs, const uint8_t *names,
			 uint32_t n, uint8_t *gone)
{
	uint32_t *order = malloc((n ? n : 1) * sizeof(*order));
	struct blk_batch *t = blk_batch_new(fs->db);
	int rc;

	if (!order || !t) {
		free(order);
		blk_batch_free(t);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), name_cmp, (void *)names);
	pthread_mutex_lock(&fs->mu);
	rc = delete_locked(fs, t, names, order, n, gone);
	pthread_mutex_unlock(&fs->mu);
	blk_batch_free(t);
	free(order);
	return rc;
}
