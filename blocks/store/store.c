/* The reference-counted block store: the "refs" records and statistics,
 * block reads, and the reference changes a transaction commits. */

/*
 * "refs" maps a binary CID (38 bytes for the CIDs blockfs writes, first byte
 * REFS_CID_PREFIX, the CID version) to a 12- or 13-byte value: reference
 * count (u64 LE), block length (u32 LE), then optional flags (REFS_EVICTED).
 * It also holds one record that is not a CID: the 1-byte key STATS_KEY
 * (0x00) with the store's totals (blocks, bytes, ref_bytes, remote_bytes as
 * u64 LE; the older 24-byte record has no remote_bytes: it reads as 0).
 * Whoever iterates "refs" for CIDs uses the prefix REFS_CID_PREFIX, as
 * blk_store_evict_upto does; callers outside blocks/ never do.
 *
 * Invariants (those of store.h, and):
 *  S1. store_commit_refs is the only writer of "refs" and "blocks" besides
 *      eviction and the journal's replay (callers may write them through
 *      blk_db_put/blk_txn_put, which the corruption tests do on purpose,
 *      but then the invariants are theirs to keep). It reads the current
 *      counts, computes the new ones and writes the batch while holding
 *      db->ref_lock, so concurrent commits see each other's results and
 *      counts stay exact. Commits are therefore serialised, including their
 *      WAL append (and fsync, for a sync commit); durability is a separate
 *      barrier (blk_db_sync). Transactions that change only records do not
 *      take the lock (txn.c T2).
 *  S2. db->stats mirrors the stats record, under ref_lock. It is loaded at
 *      open and replaced only after a successful write (store_delta_publish),
 *      so it never shows a state that is not on disk (in the WAL).
 */

#include "blocks/store/store-int.h"

#include "blocks/base/bytes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STATS_VALUE_OLD 24
#define STATS_VALUE_LEN 32
static const char STATS_KEY[1] = {0x00};

/* Load db->stats from the stats record (none: all zero). 0, -EUCLEAN for
 * a record of the wrong size, or an error of blk_db_get_into. */
int store_load_stats(struct blk_db *db)
{
	int64_t n;
	uint8_t v[STATS_VALUE_LEN];

	memset(&db->stats, 0, sizeof(db->stats));
	n = blk_db_get_into(db, BLK_CF_REFS, STATS_KEY, sizeof(STATS_KEY), v,
			    sizeof(v));
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	if (n != STATS_VALUE_LEN && n != STATS_VALUE_OLD)
		return -EUCLEAN;
	db->stats.blocks = blk_get_le64(v);
	db->stats.bytes = blk_get_le64(v + 8);
	db->stats.ref_bytes = blk_get_le64(v + 16);
	if (n == STATS_VALUE_LEN)
		db->stats.remote_bytes = blk_get_le64(v + 24);
	return 0;
}

/* Add the stats record for @st to @wb. */
void store_put_stats(struct blk_db *db, rocksdb_writebatch_t *wb,
		     const struct blk_store_stats *st)
{
	uint8_t v[STATS_VALUE_LEN];

	blk_put_le64(v, st->blocks);
	blk_put_le64(v + 8, st->bytes);
	blk_put_le64(v + 16, st->ref_bytes);
	blk_put_le64(v + 24, st->remote_bytes);
	rocksdb_writebatch_put_cf(wb, db->cf[BLK_CF_REFS], STATS_KEY,
				  sizeof(STATS_KEY), (const char *)v,
				  sizeof(v));
}

/* Decode a refs value: 0, or -EUCLEAN for a wrong size or unknown flags. */
int store_parse_refs(const uint8_t *v, size_t n, uint64_t *refs, uint32_t *len,
		     uint8_t *flags)
{
	if (n != REFS_VALUE_LEN && n != REFS_VALUE_MAX)
		return -EUCLEAN;
	*refs = blk_get_le64(v);
	*len = blk_get_le32(v + 8);
	*flags = n == REFS_VALUE_MAX ? v[12] : 0;
	if (*flags & ~REFS_FLAGS_KNOWN)
		return -EUCLEAN;
	return 0;
}

/* Encode a refs value into @v (REFS_VALUE_MAX bytes); returns its length
 * (the flags byte only when there are flags). */
size_t store_encode_refs(uint8_t *v, uint64_t refs, uint32_t len, uint8_t flags)
{
	blk_put_le64(v, refs);
	blk_put_le32(v + 8, len);
	if (!flags)
		return REFS_VALUE_LEN;
	v[12] = flags;
	return REFS_VALUE_MAX;
}

/* Look the refs record of @cid up: 1 (filled in), 0 (absent), -EIO, or
 * -EUCLEAN for a corrupt record. */
int store_read_refs(struct blk_db *db, const struct blk_cid *cid,
		    uint64_t *refs, uint32_t *len, uint8_t *flags)
{
	uint8_t key[BLK_CID_MAX_BYTES], v[REFS_VALUE_MAX];
	size_t klen = blk_cid_to_bytes(cid, key);
	int64_t n;

	n = blk_db_get_into(db, BLK_CF_REFS, key, klen, v, sizeof(v));
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	if (n > (int64_t)sizeof(v) ||
	    store_parse_refs(v, (size_t)n, refs, len, flags) < 0)
		return -EUCLEAN;
	return 1;
}

/* Start a change of reference records: called with ref_lock held. */
void store_delta_begin(struct blk_db *db, struct store_delta *d)
{
	d->st = db->stats;
	d->jseq = db->journal_seq;
	d->jbytes = 0;
	d->nseq = db->newlog_seq;
}

/* Publish @d once its batches are written (S2): still under ref_lock. */
void store_delta_publish(struct blk_db *db, const struct store_delta *d)
{
	db->stats = d->st;
	db->journal_seq = d->jseq;
	db->journal_bytes += d->jbytes;
	db->newlog_seq = d->nseq;
}

/* By store.h invariant 1 "refs" answers for "blocks" without reading a
 * blob. */
int blk_store_has(struct blk_db *db, const struct blk_cid *cid)
{
	uint64_t refs;
	uint32_t len;
	uint8_t flags;

	return store_read_refs(db, cid, &refs, &len, &flags);
}

int blk_store_refs(struct blk_db *db, const struct blk_cid *cid, uint64_t *refs,
		   uint32_t *len)
{
	uint8_t flags;
	int rc = store_read_refs(db, cid, refs, len, &flags);

	return rc == 0 ? -ENOENT : rc < 0 ? rc : 0;
}

int blk_store_info(struct blk_db *db, const struct blk_cid *cid, uint64_t *refs,
		   uint32_t *len, bool *local)
{
	uint8_t flags = 0;
	int rc = store_read_refs(db, cid, refs, len, &flags);

	if (rc == 0)
		return -ENOENT;
	if (rc < 0)
		return rc;
	*local = !(flags & REFS_EVICTED);
	return 0;
}

int blk_store_stats(struct blk_db *db, struct blk_store_stats *st)
{
	pthread_mutex_lock(&db->ref_lock);
	*st = db->stats;
	pthread_mutex_unlock(&db->ref_lock);
	return 0;
}

/* Pinned block bytes, verified against @cid when the database was opened
 * with verify_on_read: 0, -ENOENT, -EIO, -EBADMSG. */
static int get_block(struct blk_db *db, const struct blk_cid *cid,
		     rocksdb_pinnableslice_t **ps, const char **v, size_t *n)
{
	uint8_t key[BLK_CID_MAX_BYTES];
	size_t klen = blk_cid_to_bytes(cid, key);
	int rc;

	rc = blk_db_pinned(db, BLK_CF_BLOCKS, key, klen, ps);
	if (rc < 0)
		return rc;
	*v = rocksdb_pinnableslice_value(*ps, n);
	if (db->verify && !blk_cid_verify(cid, *v, *n)) {
		rocksdb_pinnableslice_destroy(*ps);
		return -EBADMSG;
	}
	return 0;
}

int blk_store_get(struct blk_db *db, const struct blk_cid *cid, void **data,
		  size_t *len)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc = get_block(db, cid, &ps, &v, &n);

	return rc < 0 ? rc : blk_slice_dup(ps, data, len);
}

/* Under ref_lock, so that no commit deletes the block in between and has
 * this write bring its bytes back (invariant 1). */
int blk_store_rewrite(struct blk_db *db, const struct blk_cid *cid,
		      const void *data, size_t len)
{
	uint8_t key[BLK_CID_MAX_BYTES], flags;
	size_t klen = blk_cid_to_bytes(cid, key);
	uint64_t refs;
	uint32_t blen;
	char *rerr = NULL;
	int rc;

	if (db->read_only)
		return -EROFS;
	if (!blk_cid_verify(cid, data, len))
		return -EBADMSG;
	pthread_mutex_lock(&db->ref_lock);
	rc = store_read_refs(db, cid, &refs, &blen, &flags);
	if (rc == 1 && (flags & REFS_EVICTED)) {
		pthread_mutex_unlock(&db->ref_lock);
		return blk_store_fill(db, cid, data, len);
	}
	if (rc == 1 && blen != len)
		rc = -EINVAL;
	else if (rc == 1)
		rocksdb_put_cf(db->rdb, db->wopts, db->cf[BLK_CF_BLOCKS],
			       (const char *)key, klen, data, len, &rerr);
	pthread_mutex_unlock(&db->ref_lock);
	if (rerr)
		return blk_rdb_errno(rerr);
	return rc == 1 ? 0 : rc == 0 ? -ENOENT : rc;
}

/* The value is read pinned (from the block cache, the memtable or the blob
 * file's read buffer) and only [off, off+len) is copied. */
int64_t blk_store_read(struct blk_db *db, const struct blk_cid *cid,
		       uint64_t off, void *dst, size_t len)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc;

	rc = get_block(db, cid, &ps, &v, &n);
	if (rc < 0)
		return rc;
	if (off >= n)
		len = 0;
	else if (len > n - off)
		len = n - off;
	if (len)
		memcpy(dst, v + off, len);
	rocksdb_pinnableslice_destroy(ps);
	return (int64_t)len;
}

static int add_ref(struct blk_txn *t, const struct blk_cid *cid, int64_t delta,
		   const void *data, size_t len)
{
	struct txn_ref *r =
	    blk_grow(t->refs, &t->cap, t->nrefs, sizeof(*r), 16);

	if (!r)
		return -ENOMEM;
	t->refs = r;
	r = &t->refs[t->nrefs++];
	r->klen = (uint8_t)blk_cid_to_bytes(cid, r->key);
	r->delta = delta;
	r->data = data;
	r->len = len;
	r->logged = false;
	return 0;
}

int blk_txn_ref(struct blk_txn *t, const struct blk_cid *cid, const void *data,
		size_t len)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	return add_ref(t, cid, 1, data, len);
}

int blk_txn_unref(struct blk_txn *t, const struct blk_cid *cid)
{
	return add_ref(t, cid, -1, NULL, 0);
}

static int ref_cmp(const void *a, const void *b)
{
	const struct txn_ref *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);

	return c ? c : (int)x->klen - (int)y->klen;
}

/* Sort by CID and fold equal CIDs into one entry (summed delta, the first
 * bytes supplied); drop entries whose changes cancel. Returns the count. */
static size_t aggregate_refs(struct txn_ref *r, size_t n)
{
	size_t out = 0;

	if (n == 0)
		return 0;
	qsort(r, n, sizeof(*r), ref_cmp);
	for (size_t i = 0; i < n;) {
		struct txn_ref acc = r[i];

		for (i++; i < n && !ref_cmp(&acc, &r[i]); i++) {
			acc.delta += r[i].delta;
			if (!acc.data && r[i].data) {
				acc.data = r[i].data;
				acc.len = r[i].len;
			}
		}
		if (acc.delta != 0)
			r[out++] = acc;
	}
	return out;
}

/* The current refs records of a commit's CIDs, read in one multi-get. */
struct refs_get {
	const rocksdb_column_family_handle_t **cfs;
	const char **keys;
	size_t *klens, *vlens;
	char **vals, **errs;
	size_t n;
};

static void refs_get_free(struct refs_get *g)
{
	for (size_t i = 0; g->vals && g->errs && i < g->n; i++) {
		if (g->vals[i])
			rocksdb_free(g->vals[i]);
		if (g->errs[i])
			rocksdb_free(g->errs[i]);
	}
	free(g->cfs);
	free(g->keys);
	free(g->klens);
	free(g->vlens);
	free(g->vals);
	free(g->errs);
}

static int refs_get_alloc(struct refs_get *g, size_t n)
{
	memset(g, 0, sizeof(*g));
	g->cfs = calloc(n, sizeof(*g->cfs));
	g->keys = calloc(n, sizeof(*g->keys));
	g->klens = calloc(n, sizeof(*g->klens));
	g->vlens = calloc(n, sizeof(*g->vlens));
	g->vals = calloc(n, sizeof(*g->vals));
	g->errs = calloc(n, sizeof(*g->errs));
	if (!g->cfs || !g->keys || !g->klens || !g->vlens || !g->vals ||
	    !g->errs) {
		refs_get_free(g);
		return -ENOMEM;
	}
	g->n = n;
	return 0;
}

/* Read the refs records of @t's @g->n aggregated CIDs. */
static void refs_get_read(struct blk_txn *t, struct refs_get *g)
{
	struct blk_db *db = t->db;

	for (size_t i = 0; i < g->n; i++) {
		g->keys[i] = (const char *)t->refs[i].key;
		g->klens[i] = t->refs[i].klen;
		g->cfs[i] = db->cf[BLK_CF_REFS];
	}
	rocksdb_multi_get_cf(db->rdb, db->ropts, g->cfs, g->n, g->keys,
			     g->klens, g->vals, g->vlens, g->errs);
}

/* n -> 0: the block goes, its bytes and its refs record. */
static void drop_block(struct blk_txn *t, const struct txn_ref *r, uint64_t cur,
		       uint32_t len, uint8_t flags, struct store_delta *d)
{
	struct blk_db *db = t->db;
	const char *key = (const char *)r->key;

	rocksdb_writebatch_delete_cf(t->wb, db->cf[BLK_CF_BLOCKS], key,
				     r->klen);
	rocksdb_writebatch_delete_cf(t->wb, db->cf[BLK_CF_REFS], key, r->klen);
	d->st.blocks--;
	d->st.bytes -= len;
	d->st.ref_bytes -= cur * len;
	if (flags & REFS_EVICTED)
		d->st.remote_bytes -= len;
}

/*
 * Apply one aggregated reference change @r, whose current refs record is
 * @val (@vlen bytes; NULL: none), to @t's batches and to @d. @wal: the
 * commit drops a reference, so every byte it stores goes through the WAL
 * (journal.c J2). 0, or -EUCLEAN (count below zero, new block without
 * bytes, corrupt refs record).
 */
static int apply_ref(struct blk_txn *t, struct txn_ref *r, const char *val,
		     size_t vlen, bool wal, struct store_delta *d)
{
	struct blk_db *db = t->db;
	const char *key = (const char *)r->key;
	uint64_t cur = 0;
	uint32_t len = 0;
	uint8_t flags = 0, v[REFS_VALUE_MAX];

	if (val && store_parse_refs((const uint8_t *)val, vlen, &cur, &len,
				    &flags) < 0)
		return -EUCLEAN;
	if (r->delta < 0 && (uint64_t)-r->delta > cur)
		return -EUCLEAN;
	if (cur == 0) {
		/* 0 -> n: a new block (delta > 0 here) */
		if (!r->data)
			return -EUCLEAN;
		len = (uint32_t)r->len;
		journal_put_bytes(t, key, r->klen, r->data, r->len, wal, d);
		r->logged = newlog_append(t, key, r->klen, d);
		d->st.blocks++;
		d->st.bytes += len;
	} else if (cur + (uint64_t)r->delta == 0) {
		drop_block(t, r, cur, len, flags, d);
		return 0;
	} else if ((flags & REFS_EVICTED) && r->data && r->len == len) {
		/* Written again while only peers hold it: keep the bytes at
		 * hand. */
		journal_put_bytes(t, key, r->klen, r->data, r->len, wal, d);
		flags &= (uint8_t)~REFS_EVICTED;
		d->st.remote_bytes -= len;
	} else if (wal && r->delta > 0 && r->data && r->len == len &&
		   len >= JOURNAL_NOWAL_MIN) {
		/* Stored already, but perhaps only in a memtable (journaled,
		 * not synced): the new reference must not rest on bytes a
		 * crash can take (journal.c J2). */
		journal_put_bytes(t, key, r->klen, r->data, r->len, true, d);
	}
	/* unsigned wrap-around adds a negative delta correctly */
	rocksdb_writebatch_put_cf(
	    t->wb, db->cf[BLK_CF_REFS], key, r->klen, (const char *)v,
	    store_encode_refs(v, cur + (uint64_t)r->delta, len, flags));
	d->st.ref_bytes += (uint64_t)r->delta * len;
	return 0;
}

/* With ref_lock held: read the counts of @t's @n aggregated CIDs, append
 * the block, refs and stats changes to the batch and compute the new
 * totals in @d. 0, -EIO, or -EUCLEAN. */
static int apply_refs(struct blk_txn *t, struct refs_get *g,
		      struct store_delta *d)
{
	bool wal = false;
	int rc = 0;

	refs_get_read(t, g);
	for (size_t i = 0; i < g->n; i++)
		wal |= t->refs[i].delta < 0;
	for (size_t i = 0; i < g->n && rc == 0; i++) {
		if (g->errs[i])
			rc = -EIO;
		else
			rc = apply_ref(t, &t->refs[i], g->vals[i], g->vlens[i],
				       wal, d);
	}
	if (rc == 0)
		store_put_stats(t->db, t->wb, &d->st);
	return rc;
}

/* Commit a transaction with reference changes or deletions of new-block
 * log records (S1, newlog.c N3): 0, -ENOMEM, or an error of apply_refs,
 * newlog_commit_prepare or blk_txn_write, nothing applied. Spends @t's
 * reference changes and deletions. */
int store_commit_refs(struct blk_txn *t, bool sync)
{
	struct blk_db *db = t->db;
	struct store_delta d;
	struct refs_get g = {0};
	size_t n = aggregate_refs(t->refs, t->nrefs);
	int rc = 0;

	t->nrefs = 0; /* the transaction is spent */
	if (n == 0 && t->nretire == 0)
		return rocksdb_writebatch_count(t->wb) > 0
			   ? blk_txn_write(t, sync)
			   : 0;
	if (n)
		rc = refs_get_alloc(&g, n);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&db->ref_lock);
	store_delta_begin(db, &d);
	if (n)
		rc = apply_refs(t, &g, &d);
	if (rc == 0)
		rc = newlog_commit_prepare(t, n);
	if (rc == 0)
		rc = blk_txn_write(t, sync);
	if (rc == 0) {
		store_delta_publish(db, &d);
		newlog_commit_publish(t, n);
	}
	pthread_mutex_unlock(&db->ref_lock);
	t->nretire = 0;
	refs_get_free(&g);
	return rc;
}
