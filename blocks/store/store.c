/* The reference-counted block store: the "refs" records and statistics,
 * block reads, and the reference changes a transaction commits. */

/*
 * "refs" maps a binary CID (38 bytes for the CIDs blockfs writes, first byte
 * REFS_CID_PREFIX, the CID version) to a 12- or 13-byte value: reference
 * count (u64 LE), block length (u32 LE), then optional flags (REFS_EVICTED).
 * It also holds one record that is not a CID: the 1-byte key STATS_KEY
 * (0x00) with the store's totals (blocks, bytes, ref_bytes, remote_bytes,
 * dag_bytes as u64 LE; older records of 24 and 32 bytes end before
 * remote_bytes and dag_bytes: those read as 0, which they were, since the
 * stores that wrote them held no DAG blocks).
 * Whoever iterates "refs" for CIDs uses the prefix REFS_CID_PREFIX, as
 * blk_store_evict_upto does; callers outside blocks/ never do.
 *
 * Invariants (those of store.h, and):
 *  S1. store_commit_refs is the only writer of "refs" and "blocks" besides
 *      eviction and the journal's replay (callers may write them through
 *      blk_db_put/blk_txn_put, which the corruption tests do on purpose,
 *      but then the invariants are theirs to keep). It reads the current
 *      counts, computes the new ones and writes the batch while holding
 *      s->ref_lock, so concurrent commits see each other's results and
 *      counts stay exact. Commits are therefore serialised, including their
 *      WAL append (and fsync, for a sync commit); durability is a separate
 *      barrier (blk_store_sync). Transactions that change only records do not
 *      take the lock (txn.c T2).
 *  S2. s->stats mirrors the stats record, under ref_lock. It is loaded at
 *      open and replaced only after a successful write (store_delta_publish),
 *      so it never shows a state that is not on disk (in the WAL).
 */

#include "blocks/store/store-int.h"

#include "blocks/base/bytes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_VALUE_OLD 24
#define STATS_VALUE_OLD2 32
#define STATS_VALUE_LEN 40
static const char STATS_KEY[1] = {0x00};

/* Load s->stats from the stats record (none: all zero). 0, -EUCLEAN for
 * a record of the wrong size, or an error of blk_db_get_into. */
int store_load_stats(struct blk_store *s)
{
	int64_t n;
	uint8_t v[STATS_VALUE_LEN];

	memset(&s->stats, 0, sizeof(s->stats));
	n = blk_db_get_into(s->db, s->cf_refs, STATS_KEY, sizeof(STATS_KEY), v,
			    sizeof(v));
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	if (n != STATS_VALUE_LEN && n != STATS_VALUE_OLD2 &&
	    n != STATS_VALUE_OLD)
		return -EUCLEAN;
	s->stats.blocks = blk_get_le64(v);
	s->stats.bytes = blk_get_le64(v + 8);
	s->stats.ref_bytes = blk_get_le64(v + 16);
	if (n >= STATS_VALUE_OLD2)
		s->stats.remote_bytes = blk_get_le64(v + 24);
	if (n >= STATS_VALUE_LEN)
		s->stats.dag_bytes = blk_get_le64(v + 32);
	return 0;
}

int blk_store_register(struct blk_cf_registry *r,
		       const struct blk_store_options *o)
{
	int rc[4];

	rc[0] = blk_cf_register(r, "blocks", BLK_CF_LARGE);
	rc[1] = blk_cf_register(r, "refs", BLK_CF_RAW);
	rc[2] = blk_cf_register(r, "journal", 0);
	/* Only when asked for, or found on disk (store.h). */
	rc[3] = blk_cf_register(r, "newlog",
				o && o->newlog ? 0 : BLK_CF_IF_PRESENT);
	for (int i = 0; i < 4; i++)
		if (rc[i] < 0)
			return rc[i];
	return 0;
}

/* The store's handles in @s->db: 0 or -ENOENT (not registered). */
static int find_families(struct blk_store *s)
{
	int h[4] = {
	    blk_db_cf_find(s->db, "blocks"),
	    blk_db_cf_find(s->db, "refs"),
	    blk_db_cf_find(s->db, "journal"),
	    blk_db_cf_find(s->db, "newlog"),
	};

	for (int i = 0; i < 4; i++)
		if (h[i] < 0)
			return -ENOENT;
	s->cf_blocks = (unsigned)h[0];
	s->cf_refs = (unsigned)h[1];
	s->cf_journal = (unsigned)h[2];
	s->cf_newlog = (unsigned)h[3];
	s->blocks = blk_db_cf(s->db, s->cf_blocks);
	s->refs = blk_db_cf(s->db, s->cf_refs);
	s->journal = blk_db_cf(s->db, s->cf_journal);
	s->newlog = blk_db_cf(s->db, s->cf_newlog);
	return s->blocks && s->refs ? 0 : -ENOENT;
}

int blk_store_open(struct blk_db *db, const struct blk_store_options *o,
		   struct blk_store **out, char *err, size_t errlen)
{
	struct blk_store *s = calloc(1, sizeof(*s));
	const char *path = db->path;
	int rc;

	*out = NULL;
	if (!s) {
		blk_set_err(err, errlen,
			    "out of memory opening node database %s", path);
		return -ENOMEM;
	}
	s->db = db;
	s->read_only = db->read_only;
	s->verify = o && o->verify_on_read;
	pthread_mutex_init(&s->sync_lock, NULL);
	pthread_mutex_init(&s->ref_lock, NULL);
	rc = find_families(s);
	if (rc < 0) {
		blk_set_err(
		    err, errlen,
		    "no node database in %s (column family 'blocks' or 'refs' "
		    "missing)",
		    path);
		goto fail;
	}
	rc = store_load_stats(s);
	if (rc < 0) {
		blk_set_err(err, errlen,
			    "cannot read block statistics of node database %s",
			    path);
		goto fail;
	}
	if (!s->read_only) {
		rc = journal_recover(s);
		if (rc < 0) {
			blk_set_err(err, errlen,
				    "cannot replay the block journal of node "
				    "database %s: %s",
				    path, strerror(-rc));
			goto fail;
		}
	}
	*out = s;
	return 0;
fail:
	blk_store_close(s);
	return rc;
}

void blk_store_close(struct blk_store *s)
{
	if (!s)
		return;
	if (!s->read_only && s->blocks)
		blk_store_sync(s);
	pthread_mutex_destroy(&s->ref_lock);
	pthread_mutex_destroy(&s->sync_lock);
	free(s->lost);
	newlog_pending_free(s);
	free(s);
}

struct blk_db *blk_store_db(struct blk_store *s)
{
	return s->db;
}

/* The journal's bytes first (journal.c), then one WAL fsync. */
int blk_store_sync(struct blk_store *s)
{
	int rc;

	if (s->read_only)
		return 0;
	pthread_mutex_lock(&s->sync_lock);
	rc = journal_sync(s);
	if (rc == 0)
		rc = blk_db_sync(s->db);
	pthread_mutex_unlock(&s->sync_lock);
	return rc;
}

/* The journal's bytes (journal.c), without the WAL fsync: the WAL is
 * written in commit order, so whatever a crash keeps of it is a prefix,
 * and every commit made after this returns is kept only with these
 * blocks. */
int blk_store_settle(struct blk_store *s)
{
	int rc;

	if (s->read_only)
		return 0;
	pthread_mutex_lock(&s->sync_lock);
	rc = journal_sync(s);
	pthread_mutex_unlock(&s->sync_lock);
	return rc;
}

int blk_store_compact(struct blk_store *s, uint64_t reserve,
		      struct blk_db_compact_stats *cs)
{
	const unsigned cfs[2] = {s->cf_blocks, s->cf_refs};

	return blk_db_compact(s->db, cfs, 2, reserve, cs);
}

/* Add the stats record for @st to @wb. */
void store_put_stats(struct blk_store *s, rocksdb_writebatch_t *wb,
		     const struct blk_store_stats *st)
{
	uint8_t v[STATS_VALUE_LEN];

	blk_put_le64(v, st->blocks);
	blk_put_le64(v + 8, st->bytes);
	blk_put_le64(v + 16, st->ref_bytes);
	blk_put_le64(v + 24, st->remote_bytes);
	blk_put_le64(v + 32, st->dag_bytes);
	rocksdb_writebatch_put_cf(wb, s->refs, STATS_KEY, sizeof(STATS_KEY),
				  (const char *)v, sizeof(v));
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
int store_read_refs(struct blk_store *s, const struct blk_cid *cid,
		    uint64_t *refs, uint32_t *len, uint8_t *flags)
{
	uint8_t key[BLK_CID_MAX_BYTES], v[REFS_VALUE_MAX];
	size_t klen = blk_cid_to_bytes(cid, key);
	int64_t n;

	n = blk_db_get_into(s->db, s->cf_refs, key, klen, v, sizeof(v));
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
void store_delta_begin(struct blk_store *s, struct store_delta *d)
{
	d->st = s->stats;
	d->jseq = s->journal_seq;
	d->jbytes = 0;
	d->nseq = s->newlog_seq;
}

/* Publish @d once its batches are written (S2): still under ref_lock. */
void store_delta_publish(struct blk_store *s, const struct store_delta *d)
{
	s->stats = d->st;
	s->journal_seq = d->jseq;
	s->journal_bytes += d->jbytes;
	s->newlog_seq = d->nseq;
}

/* By store.h invariant 1 "refs" answers for "blocks" without reading a
 * blob. */
int blk_store_has(struct blk_store *s, const struct blk_cid *cid)
{
	uint64_t refs;
	uint32_t len;
	uint8_t flags;

	return store_read_refs(s, cid, &refs, &len, &flags);
}

int blk_store_refs(struct blk_store *s, const struct blk_cid *cid,
		   uint64_t *refs, uint32_t *len)
{
	uint8_t flags;
	int rc = store_read_refs(s, cid, refs, len, &flags);

	return rc == 0 ? -ENOENT : rc < 0 ? rc : 0;
}

int blk_store_info(struct blk_store *s, const struct blk_cid *cid,
		   uint64_t *refs, uint32_t *len, bool *local)
{
	uint8_t flags = 0;
	int rc = store_read_refs(s, cid, refs, len, &flags);

	if (rc == 0)
		return -ENOENT;
	if (rc < 0)
		return rc;
	*local = !(flags & REFS_EVICTED);
	return 0;
}

int blk_store_stats(struct blk_store *s, struct blk_store_stats *st)
{
	pthread_mutex_lock(&s->ref_lock);
	*st = s->stats;
	pthread_mutex_unlock(&s->ref_lock);
	return 0;
}

/* Pinned block bytes, verified against @cid when the database was opened
 * with verify_on_read: 0, -ENOENT, -EIO, -EBADMSG. */
static int get_block(struct blk_store *s, const struct blk_cid *cid,
		     rocksdb_pinnableslice_t **ps, const char **v, size_t *n)
{
	uint8_t key[BLK_CID_MAX_BYTES];
	size_t klen = blk_cid_to_bytes(cid, key);
	int rc;

	rc = blk_db_pinned(s->db, s->cf_blocks, key, klen, ps);
	if (rc < 0)
		return rc;
	*v = rocksdb_pinnableslice_value(*ps, n);
	if (s->verify && !blk_cid_verify(cid, *v, *n)) {
		rocksdb_pinnableslice_destroy(*ps);
		return -EBADMSG;
	}
	return 0;
}

int blk_store_get(struct blk_store *s, const struct blk_cid *cid, void **data,
		  size_t *len)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc = get_block(s, cid, &ps, &v, &n);

	return rc < 0 ? rc : blk_slice_dup(ps, data, len);
}

/* Under ref_lock, so that no commit deletes the block in between and has
 * this write bring its bytes back (invariant 1). */
int blk_store_rewrite(struct blk_store *s, const struct blk_cid *cid,
		      const void *data, size_t len)
{
	uint8_t key[BLK_CID_MAX_BYTES], flags;
	size_t klen = blk_cid_to_bytes(cid, key);
	uint64_t refs;
	uint32_t blen;
	char *rerr = NULL;
	int rc;

	if (s->read_only)
		return -EROFS;
	if (!blk_cid_verify(cid, data, len))
		return -EBADMSG;
	pthread_mutex_lock(&s->ref_lock);
	rc = store_read_refs(s, cid, &refs, &blen, &flags);
	if (rc == 1 && (flags & REFS_EVICTED)) {
		pthread_mutex_unlock(&s->ref_lock);
		return blk_store_fill(s, cid, data, len);
	}
	if (rc == 1 && blen != len)
		rc = -EINVAL;
	else if (rc == 1)
		rocksdb_put_cf(s->db->rdb, s->db->wopts, s->blocks,
			       (const char *)key, klen, data, len, &rerr);
	pthread_mutex_unlock(&s->ref_lock);
	if (rerr)
		return blk_rdb_errno(rerr);
	return rc == 1 ? 0 : rc == 0 ? -ENOENT : rc;
}

/* The value is read pinned (from the block cache, the memtable or the blob
 * file's read buffer) and only [off, off+len) is copied. */
int64_t blk_store_read(struct blk_store *s, const struct blk_cid *cid,
		       uint64_t off, void *dst, size_t len)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc;

	rc = get_block(s, cid, &ps, &v, &n);
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
	r->remote = false;
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

int blk_txn_ref_remote(struct blk_txn *t, const struct blk_cid *cid, size_t len)
{
	int ret;

	if (len > UINT32_MAX)
		return -EINVAL;
	ret = add_ref(t, cid, 1, NULL, len);
	if (!ret)
		t->refs[t->nrefs - 1].remote = true;
	return ret;
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
			if (!acc.data && !acc.remote && r[i].remote) {
				acc.remote = true;
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
	struct blk_store *s = t->s;

	for (size_t i = 0; i < g->n; i++) {
		g->keys[i] = (const char *)t->refs[i].key;
		g->klens[i] = t->refs[i].klen;
		g->cfs[i] = s->refs;
	}
	rocksdb_multi_get_cf(s->db->rdb, s->db->ropts, g->cfs, g->n, g->keys,
			     g->klens, g->vals, g->vlens, g->errs);
}

/* n -> 0: the block goes, its bytes and its refs record. */
static void drop_block(struct blk_txn *t, const struct txn_ref *r, uint64_t cur,
		       uint32_t len, uint8_t flags, struct store_delta *d)
{
	struct blk_store *s = t->s;
	const char *key = (const char *)r->key;

	rocksdb_writebatch_delete_cf(t->wb, s->blocks, key, r->klen);
	rocksdb_writebatch_delete_cf(t->wb, s->refs, key, r->klen);
	d->st.blocks--;
	d->st.bytes -= len;
	d->st.dag_bytes -= store_dag_len(key, r->klen, len);
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
	struct blk_store *s = t->s;
	const char *key = (const char *)r->key;
	uint64_t cur = 0;
	uint32_t len = 0;
	uint8_t flags = 0, v[REFS_VALUE_MAX];

	if (val && store_parse_refs((const uint8_t *)val, vlen, &cur, &len,
				    &flags) < 0)
		return -EUCLEAN;
	if (r->delta < 0 && (uint64_t)-r->delta > cur)
		return -EUCLEAN;
	if (cur == 0 && !r->data && r->remote && r->delta > 0) {
		/* 0 -> n, the bytes only on peers: stored evicted */
		len = (uint32_t)r->len;
		flags = REFS_EVICTED;
		d->st.blocks++;
		d->st.bytes += len;
		d->st.dag_bytes += store_dag_len(key, r->klen, len);
		d->st.remote_bytes += len;
	} else if (cur == 0) {
		/* 0 -> n: a new block (delta > 0 here) */
		if (!r->data)
			return -EUCLEAN;
		len = (uint32_t)r->len;
		journal_put_bytes(t, key, r->klen, r->data, r->len, wal, d);
		r->logged = newlog_append(t, key, r->klen, d);
		d->st.blocks++;
		d->st.bytes += len;
		d->st.dag_bytes += store_dag_len(key, r->klen, len);
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
	    t->wb, s->refs, key, r->klen, (const char *)v,
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
		store_put_stats(t->s, t->wb, &d->st);
	return rc;
}

/* Commit a transaction with reference changes or deletions of new-block
 * log records (S1, newlog.c N3): 0, -ENOMEM, or an error of apply_refs,
 * newlog_commit_prepare or blk_txn_write, nothing applied. Spends @t's
 * reference changes and deletions. */
int store_commit_refs(struct blk_txn *t, bool sync)
{
	struct blk_store *s = t->s;
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
	pthread_mutex_lock(&s->ref_lock);
	store_delta_begin(s, &d);
	if (n)
		rc = apply_refs(t, &g, &d);
	if (rc == 0)
		rc = newlog_commit_prepare(t, n);
	if (rc == 0)
		rc = blk_txn_write(t, sync);
	if (rc == 0) {
		store_delta_publish(s, &d);
		newlog_commit_publish(t, n);
	}
	pthread_mutex_unlock(&s->ref_lock);
	t->nretire = 0;
	refs_get_free(&g);
	return rc;
}
