/* Block store transactions: a record batch (db.h) with the reference
 * changes (store.c) and the WAL-less block bytes (journal.c) beside it,
 * committed together. */

/*
 * Invariants:
 *  T1. Nothing in a transaction reaches RocksDB before commit: records go
 *      into t->wb as they are added, reference changes into t->refs, which
 *      store_commit_refs turns into batch entries. Any error found during
 *      commit discards the whole batch.
 *  T2. A transaction that changes only records does not take ref_lock, so
 *      it keeps RocksDB's group commit; one that deletes new-block log
 *      records does (newlog.c N3).
 *  T3. t->bb is written before t->wb (blk_txn_write): no reference record
 *      is ever visible before its block.
 */

#include "blocks/store/store-int.h"

#include <errno.h>
#include <stdlib.h>

struct blk_txn *blk_txn_new(struct blk_store *s)
{
	struct blk_txn *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->s = s;
	t->rec = blk_batch_new(s->db);
	if (!t->rec) {
		free(t);
		return NULL;
	}
	t->wb = t->rec->wb;
	t->bb = rocksdb_writebatch_create();
	return t;
}

void blk_txn_free(struct blk_txn *t)
{
	if (!t)
		return;
	blk_batch_free(t->rec);
	rocksdb_writebatch_destroy(t->bb);
	free(t->refs);
	free(t->retire);
	free(t);
}

void blk_txn_put(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		 const void *val, size_t vlen)
{
	blk_batch_put(t->rec, cf, key, klen, val, vlen);
}

void blk_txn_put2(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		  const void *v0, size_t l0, const void *v1, size_t l1)
{
	blk_batch_put2(t->rec, cf, key, klen, v0, l0, v1, l1);
}

void blk_txn_delete(struct blk_txn *t, unsigned cf, const void *key,
		    size_t klen)
{
	if (t->s->newlog && cf == t->s->cf_newlog && klen == 8 &&
	    newlog_txn_retire(t, key) < 0) {
		blk_batch_fail(t->rec, -ENOMEM);
		return;
	}
	blk_batch_delete(t->rec, cf, key, klen);
}

/* Should the second write fail, the first leaves bytes without a
 * reference: space, not a wrong answer. */
int blk_txn_write(struct blk_txn *t, bool sync)
{
	struct blk_db *db = t->s->db;
	char *rerr = NULL;

	if (rocksdb_writebatch_count(t->bb) > 0)
		rocksdb_write(db->rdb, db->wopts_nowal, t->bb, &rerr);
	if (!rerr)
		rocksdb_write(db->rdb, sync ? db->wopts_sync : db->wopts, t->wb,
			      &rerr);
	if (rerr)
		return blk_rdb_errno(rerr);
	return 0;
}

int blk_txn_commit(struct blk_txn *t, bool sync)
{
	int rc = 0;

	if (t->s->read_only)
		return -EROFS;
	if (t->err)
		return t->err;
	if (t->rec->err)
		return t->rec->err;
	if (t->nrefs > 0 || t->nretire > 0)
		rc = store_commit_refs(t, sync); /* T2 */
	else if (rocksdb_writebatch_count(t->wb) > 0)
		rc = blk_txn_write(t, sync);
	rocksdb_writebatch_clear(t->wb);
	rocksdb_writebatch_clear(t->bb);
	return rc;
}
