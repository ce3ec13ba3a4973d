/* Record store batches: record changes collected in one WriteBatch and
 * committed atomically. */

#include "blocks/db/db-int.h"

#include <errno.h>
#include <stdlib.h>

struct blk_batch *blk_batch_new(struct blk_db *db)
{
	struct blk_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->db = db;
	b->wb = rocksdb_writebatch_create();
	return b;
}

void blk_batch_free(struct blk_batch *b)
{
	if (!b)
		return;
	rocksdb_writebatch_destroy(b->wb);
	free(b);
}

void blk_batch_fail(struct blk_batch *b, int err)
{
	if (!b->err)
		b->err = err;
}

/* @cf's handle for a batch; a bad @cf is remembered and makes the commit
 * fail with -EINVAL. */
static rocksdb_column_family_handle_t *batch_cf(struct blk_batch *b,
						unsigned cf)
{
	rocksdb_column_family_handle_t *h = blk_db_cf(b->db, cf);

	if (!h)
		blk_batch_fail(b, -EINVAL);
	return h;
}

void blk_batch_put(struct blk_batch *b, unsigned cf, const void *key,
		   size_t klen, const void *val, size_t vlen)
{
	rocksdb_column_family_handle_t *h = batch_cf(b, cf);

	if (h)
		rocksdb_writebatch_put_cf(b->wb, h, key, klen, val, vlen);
}

void blk_batch_put2(struct blk_batch *b, unsigned cf, const void *key,
		    size_t klen, const void *v0, size_t l0, const void *v1,
		    size_t l1)
{
	rocksdb_column_family_handle_t *h = batch_cf(b, cf);
	const char *kl[1] = {key}, *vl[2] = {v0, v1};
	size_t ks[1] = {klen}, vs[2] = {l0, l1};

	if (h)
		rocksdb_writebatch_putv_cf(b->wb, h, 1, kl, ks, 2, vl, vs);
}

void blk_batch_delete(struct blk_batch *b, unsigned cf, const void *key,
		      size_t klen)
{
	rocksdb_column_family_handle_t *h = batch_cf(b, cf);

	if (h)
		rocksdb_writebatch_delete_cf(b->wb, h, key, klen);
}

size_t blk_batch_count(const struct blk_batch *b)
{
	return (size_t)rocksdb_writebatch_count(b->wb);
}

int blk_batch_commit(struct blk_batch *b, unsigned flags)
{
	struct blk_db *db = b->db;
	const rocksdb_writeoptions_t *wo = db->wopts;
	char *rerr = NULL;
	int rc = b->err;

	if (db->read_only)
		rc = -EROFS;
	if (flags & BLK_WRITE_NO_WAL)
		wo = db->wopts_nowal;
	else if (flags & BLK_WRITE_SYNC)
		wo = db->wopts_sync;
	if (rc == 0 && rocksdb_writebatch_count(b->wb) > 0) {
		rocksdb_write(db->rdb, wo, b->wb, &rerr);
		if (rerr)
			rc = blk_rdb_errno(rerr);
	}
	rocksdb_writebatch_clear(b->wb);
	return rc;
}
