/* The new-block log (the upload queue): a record for every block new to
 * the store, added in the commit that stores it, for a consumer that hands
 * new blocks on and deletes each record once done. */

/*
 * "newlog" maps a u64 BE sequence number to a binary CID. It exists only
 * when blk_store_options.newlog asked for it (or an earlier open created it).
 *
 * Invariants:
 *  N1. newlog_append takes its sequence number from the store_delta of a
 *      commit under ref_lock, and s->newlog_seq advances only once that
 *      commit is written (store_delta_publish): every number below
 *      blk_store_newlog_head() belongs to a committed record, and numbers
 *      follow commit order.
 *  N2. A block's record is present until the consumer deletes it: at open,
 *      a journaled block without one had been handed on (journal.c J3).
 *  N3. Whenever ref_lock is free, s->pending counts exactly, per CID, the
 *      records that name it. It is loaded with the log at open; a commit
 *      adds the CIDs of its records once its batch is written
 *      (newlog_commit_publish, room made before the write); a transaction
 *      that deletes records (blk_txn_delete on "newlog": the consumer
 *      retiring them) commits under ref_lock, reads the CIDs they name
 *      before its batch and drops them once it is written. Eviction
 *      refuses a CID in the table under the same lock (store.h invariant
 *      4), so a block is never evicted before it is handed on. A hash
 *      lookup keeps that check cheap for eviction's walk over every block;
 *      a flag in the refs record would make the retirement rewrite refs
 *      records and could not tell a block stored, deleted and stored again
 *      (two records) from one stored once. Records deleted another way
 *      (blk_db_delete) stay counted until the next open: their blocks are
 *      kept, never lost.
 */

#include "blocks/store/store-int.h"

#include "blocks/base/bytes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Add a record for a new block to @t's main batch, if the log is kept:
 * whether it did (the caller marks the reference "logged" for N3). */
bool newlog_append(struct blk_txn *t, const char *key, size_t klen,
		   struct store_delta *d)
{
	struct blk_store *s = t->s;
	uint8_t seq[8];

	if (!s->newlog)
		return false;
	blk_put_be64(seq, d->nseq++);
	rocksdb_writebatch_put_cf(t->wb, s->newlog, (const char *)seq,
				  sizeof(seq), key, klen);
	return true;
}

unsigned blk_store_newlog_cf(struct blk_store *s)
{
	return s->cf_newlog;
}

uint64_t blk_store_newlog_head(struct blk_store *s)
{
	uint64_t v;

	pthread_mutex_lock(&s->ref_lock);
	v = s->newlog_seq;
	pthread_mutex_unlock(&s->ref_lock);
	return v;
}

/* ---- the table of pending CIDs (N3) ------------------------------------ */

#define PENDING_MIN 64 /* slots of a table first made, and never fewer */

static uint64_t pending_hash(const void *cid, size_t clen)
{
	const uint8_t *p = cid;
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < clen; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* The slot of @cid, or the empty slot where it would go. cap > 0. */
static struct pending_slot *pending_slot(const struct newlog_pending *p,
					 const void *cid, size_t clen)
{
	size_t mask = p->cap - 1, i = pending_hash(cid, clen) & mask;

	while (p->v[i].n &&
	       (p->v[i].clen != clen || memcmp(p->v[i].cid, cid, clen)))
		i = (i + 1) & mask;
	return &p->v[i];
}

/* Move every entry to a table of @cap slots. 0 or -ENOMEM (unchanged). */
static int pending_rehash(struct newlog_pending *p, size_t cap)
{
	struct newlog_pending np = {.cap = cap, .used = p->used};

	np.v = calloc(cap, sizeof(*np.v));
	if (!np.v)
		return -ENOMEM;
	for (size_t i = 0; i < p->cap; i++) {
		const struct pending_slot *e = &p->v[i];

		if (e->n)
			*pending_slot(&np, e->cid, e->clen) = *e;
	}
	free(p->v);
	*p = np;
	return 0;
}

/* Make room for @more new CIDs, keeping the load at most one half, so
 * that pending_add cannot fail. 0 or -ENOMEM. */
static int pending_reserve(struct newlog_pending *p, size_t more)
{
	size_t cap = p->cap ? p->cap : PENDING_MIN;

	while ((p->used + more) * 2 > cap)
		cap *= 2;
	return cap == p->cap ? 0 : pending_rehash(p, cap);
}

/* Count one more record of @cid; room was reserved. */
static void pending_add(struct newlog_pending *p, const void *cid, size_t clen)
{
	struct pending_slot *s = pending_slot(p, cid, clen);

	if (!s->n) {
		memcpy(s->cid, cid, clen);
		s->clen = (uint8_t)clen;
		p->used++;
	}
	s->n++;
}

/* Count one record of @cid less; the last one empties its slot, and
 * the entries after it in its probe run move back so none is lost
 * behind the hole. A table left at most one eighth full halves. */
static void pending_del(struct newlog_pending *p, const void *cid, size_t clen)
{
	struct pending_slot *s;
	size_t mask, i, j;

	if (!p->cap || clen > BLK_CID_MAX_BYTES)
		return;
	s = pending_slot(p, cid, clen);
	if (!s->n || --s->n)
		return;
	mask = p->cap - 1;
	i = (size_t)(s - p->v);
	for (j = (i + 1) & mask; p->v[j].n; j = (j + 1) & mask) {
		size_t k = pending_hash(p->v[j].cid, p->v[j].clen) & mask;

		/* Stays unless its home k is outside the run (i, j]. */
		if (i <= j ? (k > i && k <= j) : (k > i || k <= j))
			continue;
		p->v[i] = p->v[j];
		i = j;
	}
	p->v[i].n = 0;
	p->used--;
	if (p->cap > PENDING_MIN && p->used * 8 <= p->cap)
		(void)pending_rehash(p, p->cap / 2); /* else stays larger */
}

/* Whether a record of the log names @cid: its upload is pending. Under
 * ref_lock. */
bool newlog_pending_has(const struct blk_store *s, const void *cid, size_t clen)
{
	const struct newlog_pending *p = &s->pending;

	return p->cap && clen <= BLK_CID_MAX_BYTES &&
	       pending_slot(p, cid, clen)->n > 0;
}

void newlog_pending_free(struct blk_store *s)
{
	free(s->pending.v);
	memset(&s->pending, 0, sizeof(s->pending));
}

/* Note that @t deletes the record @seq (8 bytes, big-endian). 0 or
 * -ENOMEM. */
int newlog_txn_retire(struct blk_txn *t, const void *seq)
{
	struct txn_retire *r =
	    blk_grow(t->retire, &t->retire_cap, t->nretire, sizeof(*r), 16);

	if (!r)
		return -ENOMEM;
	t->retire = r;
	memcpy(t->retire[t->nretire++].seq, seq, 8);
	return 0;
}

static int retire_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 8);
}

/* Under ref_lock, before @t's batch is written: read the CIDs of the
 * records @t deletes (each once), and make room in s->pending for the
 * records its first @nrefs reference changes add. 0, -ENOMEM, -EIO;
 * nothing is changed then. */
int newlog_commit_prepare(struct blk_txn *t, size_t nrefs)
{
	struct blk_store *s = t->s;
	size_t n = 0, more = 0;

	if (t->nretire > 1)
		qsort(t->retire, t->nretire, sizeof(*t->retire), retire_cmp);
	for (size_t i = 0; i < t->nretire; i++) {
		struct txn_retire *r = &t->retire[i];
		int64_t len;

		if (n && !retire_cmp(r->seq, t->retire[n - 1].seq))
			continue; /* deleted twice: one record */
		t->retire[n] = *r;
		r = &t->retire[n++];
		len = blk_db_get_into(s->db, s->cf_newlog, r->seq, 8, r->cid,
				      sizeof(r->cid));
		if (len < 0 && len != -ENOENT)
			return -EIO;
		r->clen = len > 0 && len <= (int64_t)sizeof(r->cid)
			      ? (uint8_t)len
			      : 0;
	}
	t->nretire = n;
	for (size_t i = 0; i < nrefs; i++)
		more += t->refs[i].logged;
	return more ? pending_reserve(&s->pending, more) : 0;
}

/* Under ref_lock, once @t's batch is written: s->pending follows it. */
void newlog_commit_publish(struct blk_txn *t, size_t nrefs)
{
	struct blk_store *s = t->s;

	for (size_t i = 0; i < nrefs; i++)
		if (t->refs[i].logged)
			pending_add(&s->pending, t->refs[i].key,
				    t->refs[i].klen);
	for (size_t i = 0; i < t->nretire; i++)
		if (t->retire[i].clen)
			pending_del(&s->pending, t->retire[i].cid,
				    t->retire[i].clen);
}

/* ---- the log by CID, for recovery ---------------------------------------- */

struct newlog_ent {
	uint8_t cid[BLK_CID_MAX_BYTES]; /* zero-padded */
	uint8_t seq[8];
};

/* The log's records sorted by CID, for journal_recover. */
struct newlog_index {
	struct newlog_ent *v;
	size_t n, cap;
};

static int newlog_ent_cmp(const void *a, const void *b)
{
	return memcmp(a, b, BLK_CID_MAX_BYTES);
}

static int index_add(struct newlog_index *ix, const uint8_t *key,
		     const uint8_t *cid, size_t clen)
{
	struct newlog_ent *p =
	    blk_grow(ix->v, &ix->cap, ix->n, sizeof(*p), 256);

	if (!p)
		return -ENOMEM;
	ix->v = p;
	memset(ix->v[ix->n].cid, 0, sizeof(ix->v[ix->n].cid));
	memcpy(ix->v[ix->n].cid, cid, clen);
	memcpy(ix->v[ix->n].seq, key, 8);
	ix->n++;
	return 0;
}

/* Load the log into *@out (NULL when it is not kept: an empty index) and
 * into s->pending (N3), and set s->newlog_seq past its last record. At
 * open, before @s is shared. 0, -ENOMEM, -EIO. */
int newlog_index_load(struct blk_store *s, struct newlog_index **out)
{
	struct newlog_index *ix;
	struct blk_iter *it;
	int rc = 0;

	*out = NULL;
	if (!s->newlog)
		return 0;
	ix = calloc(1, sizeof(*ix));
	it = ix ? blk_iter_new(s->db, s->cf_newlog, NULL, 0, NULL, 0) : NULL;
	if (!it) {
		free(ix);
		return -ENOMEM;
	}
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, clen;
		const uint8_t *key = blk_iter_key(it, &klen);
		const uint8_t *cid = blk_iter_value(it, &clen);

		if (klen != 8 || clen > BLK_CID_MAX_BYTES)
			continue;
		rc = index_add(ix, key, cid, clen);
		if (rc == 0 && clen)
			rc = pending_reserve(&s->pending, 1);
		if (rc < 0)
			break;
		if (clen)
			pending_add(&s->pending, cid, clen);
		s->newlog_seq = blk_get_be64(key) + 1;
	}
	if (rc == 0)
		rc = blk_iter_status(it);
	blk_iter_free(it);
	if (rc < 0) {
		newlog_index_free(ix);
		return rc;
	}
	if (ix->n)
		qsort(ix->v, ix->n, sizeof(*ix->v), newlog_ent_cmp);
	*out = ix;
	return 0;
}

/* One of the records of @cid, or NULL. */
static const struct newlog_ent *index_find(const struct newlog_index *ix,
					   const void *cid, size_t clen)
{
	uint8_t ck[BLK_CID_MAX_BYTES] = {0};

	if (!ix || !ix->n || clen > sizeof(ck))
		return NULL;
	memcpy(ck, cid, clen);
	return bsearch(ck, ix->v, ix->n, sizeof(*ix->v), newlog_ent_cmp);
}

/* Whether the log holds a record of @cid (not handed on yet). */
bool newlog_index_has(const struct newlog_index *ix, const void *cid,
		      size_t clen)
{
	return index_find(ix, cid, clen) != NULL;
}

/* Add the deletion of every record of @cid to @wb: neighbours in the
 * sorted index may hold the same CID (stored, deleted, stored again).
 * s->pending drops them at once: @wb is written before @s is shared,
 * or the open fails. */
void newlog_index_drop(const struct newlog_index *ix, struct blk_store *s,
		       rocksdb_writebatch_t *wb, const void *cid, size_t clen)
{
	const struct newlog_ent *e = index_find(ix, cid, clen);
	size_t lo, hi;

	if (!e)
		return;
	lo = hi = (size_t)(e - ix->v);
	while (lo > 0 && !newlog_ent_cmp(&ix->v[lo - 1], e))
		lo--;
	while (hi + 1 < ix->n && !newlog_ent_cmp(&ix->v[hi + 1], e))
		hi++;
	for (size_t i = lo; i <= hi; i++) {
		rocksdb_writebatch_delete_cf(wb, s->newlog,
					     (const char *)ix->v[i].seq, 8);
		pending_del(&s->pending, cid, clen);
	}
}

void newlog_index_free(struct newlog_index *ix)
{
	if (!ix)
		return;
	free(ix->v);
	free(ix);
}

/* Blocks added to the log per commit by blk_store_newlog_requeue. */
#define REQUEUE_BATCH 1024

/* Append a record for each of the @n binary CIDs in @keys (@klen bytes
 * each at most, lengths in @lens), in one commit under ref_lock (N1). */
static int requeue_commit(struct blk_store *s, const uint8_t *keys,
			  const size_t *lens, size_t n)
{
	struct blk_txn *t = blk_txn_new(s);
	struct store_delta d;
	int rc;

	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&s->ref_lock);
	store_delta_begin(s, &d);
	for (size_t i = 0; i < n; i++)
		newlog_append(t, (const char *)keys + i * BLK_CID_MAX_BYTES,
			      lens[i], &d);
	rc = blk_txn_write(t, false);
	if (rc == 0)
		store_delta_publish(s, &d);
	pthread_mutex_unlock(&s->ref_lock);
	blk_txn_free(t);
	return rc;
}

/* The walk over "refs" reads a snapshot: a block deleted meanwhile gets a
 * record all the same, which the consumer finds deleted (N2 allows it). */
int blk_store_newlog_requeue(struct blk_store *s, uint64_t *queued)
{
	const uint8_t prefix = REFS_CID_PREFIX;
	uint8_t *keys = malloc((size_t)REQUEUE_BATCH * BLK_CID_MAX_BYTES);
	size_t *lens = malloc(REQUEUE_BATCH * sizeof(*lens)), n = 0;
	struct blk_iter *it = NULL;
	int rc = 0;

	*queued = 0;
	if (s->read_only || !s->newlog)
		rc = s->read_only ? -EROFS : -ENOENT;
	else if (!keys || !lens ||
		 !(it = blk_iter_new(s->db, s->cf_refs, &prefix, 1, NULL, 0)))
		rc = -ENOMEM;
	for (; rc == 0 && it && blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = blk_iter_key(it, &klen);
		const uint8_t *v = blk_iter_value(it, &vlen);
		uint64_t refs;
		uint32_t len;
		uint8_t flags;

		if (klen > BLK_CID_MAX_BYTES ||
		    store_parse_refs(v, vlen, &refs, &len, &flags) < 0 ||
		    !refs || (flags & REFS_EVICTED))
			continue; /* not held here: nothing to upload */
		memcpy(keys + n * BLK_CID_MAX_BYTES, k, klen);
		lens[n++] = klen;
		if (n == REQUEUE_BATCH) {
			rc = requeue_commit(s, keys, lens, n);
			*queued += rc == 0 ? n : 0;
			n = 0;
		}
	}
	if (rc == 0 && it)
		rc = blk_iter_status(it);
	if (rc == 0 && n) {
		rc = requeue_commit(s, keys, lens, n);
		*queued += rc == 0 ? n : 0;
	}
	blk_iter_free(it);
	free(keys);
	free(lens);
	return rc;
}
