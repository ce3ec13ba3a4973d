/* The new-block log (the upload queue): a record for every block new to
 * the store, added in the commit that stores it, for a consumer that hands
 * new blocks on and deletes each record once done. */

/*
 * "newlog" maps a u64 BE sequence number to a binary CID. It exists only
 * when blk_db_options.newlog asked for it (or an earlier open created it).
 *
 * Invariants:
 *  N1. newlog_append takes its sequence number from the store_delta of a
 *      commit under ref_lock, and db->newlog_seq advances only once that
 *      commit is written (store_delta_publish): every number below
 *      blk_db_newlog_head() belongs to a committed record, and numbers
 *      follow commit order.
 *  N2. A block's record is present until the consumer deletes it: at open,
 *      a journaled block without one had been handed on (journal.c J3).
 */

#include "blocks/store-int.h"

#include "blocks/bytes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Add a record for a new block to @t's main batch, if the log is kept. */
void newlog_append(struct blk_txn *t, const char *key, size_t klen,
		   struct store_delta *d)
{
	struct blk_db *db = t->db;
	uint8_t seq[8];

	if (!db->cf[BLK_CF_NEWLOG])
		return;
	blk_put_be64(seq, d->nseq++);
	rocksdb_writebatch_put_cf(t->wb, db->cf[BLK_CF_NEWLOG],
				  (const char *)seq, sizeof(seq), key, klen);
}

uint64_t blk_db_newlog_head(struct blk_db *db)
{
	uint64_t v;

	pthread_mutex_lock(&db->ref_lock);
	v = db->newlog_seq;
	pthread_mutex_unlock(&db->ref_lock);
	return v;
}

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
 * set db->newlog_seq past its last record. At open, before @db is shared.
 * 0, -ENOMEM, -EIO. */
int newlog_index_load(struct blk_db *db, struct newlog_index **out)
{
	struct newlog_index *ix;
	struct blk_iter *it;
	int rc = 0;

	*out = NULL;
	if (!db->cf[BLK_CF_NEWLOG])
		return 0;
	ix = calloc(1, sizeof(*ix));
	it = ix ? blk_iter_new(db, BLK_CF_NEWLOG, NULL, 0, NULL, 0) : NULL;
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
		if (rc < 0)
			break;
		db->newlog_seq = blk_get_be64(key) + 1;
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
 * sorted index may hold the same CID (stored, deleted, stored again). */
void newlog_index_drop(const struct newlog_index *ix, struct blk_db *db,
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
	for (size_t i = lo; i <= hi; i++)
		rocksdb_writebatch_delete_cf(wb, db->cf[BLK_CF_NEWLOG],
					     (const char *)ix->v[i].seq, 8);
}

void newlog_index_free(struct newlog_index *ix)
{
	if (!ix)
		return;
	free(ix->v);
	free(ix);
}

/* Blocks added to the log per commit by blk_newlog_requeue. */
#define REQUEUE_BATCH 1024

/* Append a record for each of the @n binary CIDs in @keys (@klen bytes
 * each at most, lengths in @lens), in one commit under ref_lock (N1). */
static int requeue_commit(struct blk_db *db, const uint8_t *keys,
			  const size_t *lens, size_t n)
{
	struct blk_txn *t = blk_txn_new(db);
	struct store_delta d;
	int rc;

	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&db->ref_lock);
	store_delta_begin(db, &d);
	for (size_t i = 0; i < n; i++)
		newlog_append(t, (const char *)keys + i * BLK_CID_MAX_BYTES,
			      lens[i], &d);
	rc = blk_txn_write(t, false);
	if (rc == 0)
		store_delta_publish(db, &d);
	pthread_mutex_unlock(&db->ref_lock);
	blk_txn_free(t);
	return rc;
}

/* The walk over "refs" reads a snapshot: a block deleted meanwhile gets a
 * record all the same, which the consumer finds deleted (N2 allows it). */
int blk_newlog_requeue(struct blk_db *db, uint64_t *queued)
{
	const uint8_t prefix = REFS_CID_PREFIX;
	uint8_t *keys = malloc((size_t)REQUEUE_BATCH * BLK_CID_MAX_BYTES);
	size_t *lens = malloc(REQUEUE_BATCH * sizeof(*lens)), n = 0;
	struct blk_iter *it = NULL;
	int rc = 0;

	*queued = 0;
	if (db->read_only || !db->cf[BLK_CF_NEWLOG])
		rc = db->read_only ? -EROFS : -ENOENT;
	else if (!keys || !lens ||
		 !(it = blk_iter_new(db, BLK_CF_REFS, &prefix, 1, NULL, 0)))
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
			rc = requeue_commit(db, keys, lens, n);
			*queued += rc == 0 ? n : 0;
			n = 0;
		}
	}
	if (rc == 0 && it)
		rc = blk_iter_status(it);
	if (rc == 0 && n) {
		rc = requeue_commit(db, keys, lens, n);
		*queued += rc == 0 ? n : 0;
	}
	blk_iter_free(it);
	free(keys);
	free(lens);
	return rc;
}
