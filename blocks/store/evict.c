/* Eviction: dropping the bytes of blocks that peers hold while keeping
 * their references, and filling them in again. */

/*
 * An evicted block keeps its refs record with the REFS_EVICTED flag and
 * loses its "blocks" record; stats.remote_bytes counts its length. Both
 * changes, and their undoing in blk_store_fill, are one batch written
 * under ref_lock, as a commit's are (store.c S1). Under the same lock it
 * refuses a block that a record of the new-block log names (newlog.c N3):
 * that block's upload is pending, and its bytes are nowhere else yet.
 */

#include "blocks/store/store-int.h"

#include <errno.h>

int blk_store_evict(struct blk_store *s, const struct blk_cid *cid)
{
	uint8_t key[BLK_CID_MAX_BYTES], v[REFS_VALUE_MAX], flags;
	size_t klen = blk_cid_to_bytes(cid, key);
	rocksdb_writebatch_t *wb;
	struct store_delta d;
	uint64_t refs;
	uint32_t len;
	char *rerr = NULL;
	int rc;

	if (s->read_only)
		return -EROFS;
	pthread_mutex_lock(&s->ref_lock);
	rc = store_read_refs(s, cid, &refs, &len, &flags);
	if (rc <= 0 || (flags & REFS_EVICTED)) {
		pthread_mutex_unlock(&s->ref_lock);
		return rc < 0 ? rc : rc == 0 ? -ENOENT : 0;
	}
	if (newlog_pending_has(s, key, klen)) {
		pthread_mutex_unlock(&s->ref_lock);
		return -EBUSY; /* not uploaded yet (store.h invariant 4) */
	}
	store_delta_begin(s, &d);
	d.st.remote_bytes += len;
	wb = rocksdb_writebatch_create();
	rocksdb_writebatch_delete_cf(wb, s->blocks, (const char *)key, klen);
	rocksdb_writebatch_put_cf(
	    wb, s->refs, (const char *)key, klen, (const char *)v,
	    store_encode_refs(v, refs, len, flags | REFS_EVICTED));
	store_put_stats(s, wb, &d.st);
	rocksdb_write(s->db->rdb, s->db->wopts, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr) {
		rc = blk_rdb_errno(rerr);
	} else {
		store_delta_publish(s, &d);
		rc = (int)len;
	}
	pthread_mutex_unlock(&s->ref_lock);
	return rc;
}

/* The walk sees the snapshot of "refs" taken when it starts; each block
 * is evicted under ref_lock on its own, so commits go on in between. */
int blk_store_evict_upto(struct blk_store *s, uint64_t goal, uint64_t *freed,
			 uint64_t *count)
{
	static const uint8_t prefix = REFS_CID_PREFIX;
	struct blk_iter *it;
	int rc = 0;

	*freed = *count = 0;
	if (s->read_only)
		return -EROFS;
	it = blk_iter_new(s->db, s->cf_refs, &prefix, 1, NULL, 0);
	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it) && *freed < goal; blk_iter_next(it)) {
		size_t klen;
		const uint8_t *k = blk_iter_key(it, &klen);
		struct blk_cid cid;
		int r;

		if (blk_cid_from_bytes(&cid, k, klen))
			continue;
		r = blk_store_evict(s, &cid);
		if (r > 0) {
			*freed += (uint64_t)r;
			(*count)++;
		} else if (r < 0 && r != -ENOENT && r != -EBUSY && rc == 0) {
			rc = r;
		}
	}
	if (rc == 0)
		rc = blk_iter_status(it);
	blk_iter_free(it);
	return rc;
}

int blk_store_fill(struct blk_store *s, const struct blk_cid *cid,
		   const void *data, size_t len)
{
	uint8_t key[BLK_CID_MAX_BYTES], v[REFS_VALUE_MAX], flags;
	size_t klen = blk_cid_to_bytes(cid, key);
	struct blk_txn *t;
	struct store_delta d;
	uint64_t refs;
	uint32_t blen;
	int rc;

	if (s->read_only)
		return -EROFS;
	if (!blk_cid_verify(cid, data, len))
		return -EBADMSG;
	t = blk_txn_new(s);
	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&s->ref_lock);
	rc = store_read_refs(s, cid, &refs, &blen, &flags);
	if (rc <= 0 || !(flags & REFS_EVICTED) || blen != len) {
		pthread_mutex_unlock(&s->ref_lock);
		blk_txn_free(t);
		return rc < 0 ? rc : rc == 0 ? -ENOENT : 0;
	}
	store_delta_begin(s, &d);
	d.st.remote_bytes -= len;
	journal_put_bytes(t, (const char *)key, klen, data, len, false, &d);
	rocksdb_writebatch_put_cf(
	    t->wb, s->refs, (const char *)key, klen, (const char *)v,
	    store_encode_refs(v, refs, blen, flags & ~REFS_EVICTED));
	store_put_stats(s, t->wb, &d.st);
	rc = blk_txn_write(t, false);
	if (rc == 0)
		store_delta_publish(s, &d);
	pthread_mutex_unlock(&s->ref_lock);
	blk_txn_free(t);
	return rc;
}
