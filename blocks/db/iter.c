/* Record store iterators: a bounded, snapshot walk over the keys of one
 * column family that share a prefix, and blk_db_walk, the loop over one
 * with its key length checks. */

#include "blocks/db/db-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct blk_iter {
	rocksdb_iterator_t *it; /* NULL: an empty iteration */
	rocksdb_readoptions_t *ro;
	/* lower bound (the prefix) then upper bound; must outlive @it. */
	char bounds[];
};

/*
 * The iterator is bounded below by @prefix and above by the prefix
 * "incremented" (last byte that is not 0xff plus one, the 0xff bytes after
 * it dropped; a prefix of only 0xff bytes has no upper bound), so RocksDB
 * stops at the end of the prefix without comparing every key. It sees the
 * implicit snapshot RocksDB takes when it is created.
 */
struct blk_iter *blk_iter_new_at(struct blk_db *db,
				 const rocksdb_snapshot_t *snap, unsigned cf,
				 const void *prefix, size_t plen,
				 const void *start, size_t slen)
{
	struct blk_iter *it;
	size_t ulen = plen;
	char *upper;

	if (cf >= db->ncf)
		return NULL;
	it = calloc(1, sizeof(*it) + 2 * plen + 1);
	if (!it)
		return NULL;
	if (!db->cf[cf])
		return it;

	upper = it->bounds + plen;
	if (plen > 0) {
		memcpy(it->bounds, prefix, plen);
		memcpy(upper, prefix, plen);
	}
	while (ulen > 0 && (uint8_t)upper[ulen - 1] == 0xff)
		ulen--;
	if (ulen > 0)
		upper[ulen - 1] = (char)((uint8_t)upper[ulen - 1] + 1);

	it->ro = rocksdb_readoptions_create();
	if (snap)
		rocksdb_readoptions_set_snapshot(it->ro, snap);
	if (plen > 0)
		rocksdb_readoptions_set_iterate_lower_bound(it->ro, it->bounds,
							    plen);
	if (ulen > 0)
		rocksdb_readoptions_set_iterate_upper_bound(it->ro, upper,
							    ulen);
	it->it = rocksdb_create_iterator_cf(db->rdb, it->ro, db->cf[cf]);

	/* Start at the later of @prefix and @start. */
	if (start && blk_key_cmp(start, slen, prefix, plen) > 0)
		rocksdb_iter_seek(it->it, start, slen);
	else if (plen > 0)
		rocksdb_iter_seek(it->it, prefix, plen);
	else
		rocksdb_iter_seek_to_first(it->it);
	return it;
}

struct blk_iter *blk_iter_new(struct blk_db *db, unsigned cf,
			      const void *prefix, size_t plen,
			      const void *start, size_t slen)
{
	return blk_iter_new_at(db, NULL, cf, prefix, plen, start, slen);
}

bool blk_iter_valid(struct blk_iter *it)
{
	return it->it && rocksdb_iter_valid(it->it);
}

void blk_iter_next(struct blk_iter *it)
{
	rocksdb_iter_next(it->it);
}

const void *blk_iter_key(struct blk_iter *it, size_t *len)
{
	return rocksdb_iter_key(it->it, len);
}

const void *blk_iter_value(struct blk_iter *it, size_t *len)
{
	return rocksdb_iter_value(it->it, len);
}

int blk_iter_status(struct blk_iter *it)
{
	char *rerr = NULL;

	if (!it->it)
		return 0;
	rocksdb_iter_get_error(it->it, &rerr);
	if (rerr)
		return blk_rdb_errno(rerr);
	return 0;
}

void blk_iter_free(struct blk_iter *it)
{
	if (!it)
		return;
	if (it->it)
		rocksdb_iter_destroy(it->it);
	if (it->ro)
		rocksdb_readoptions_destroy(it->ro);
	free(it);
}

int blk_db_walk_at(struct blk_db *db, const rocksdb_snapshot_t *snap,
		   unsigned cf, const struct blk_walk *w)
{
	struct blk_iter *it;
	int rc = 0;

	if (cf >= db->ncf)
		return -EINVAL;
	it = blk_iter_new_at(db, snap, cf, w->prefix, w->plen, w->start,
			     w->slen);
	if (!it)
		return -ENOMEM;
	for (; rc == 0 && blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = blk_iter_key(it, &klen);
		const uint8_t *v = blk_iter_value(it, &vlen);

		if (klen < w->klen_min || (w->klen_max && klen > w->klen_max))
			rc = w->klen_err;
		else
			rc = w->fn(w->arg, k, klen, v, vlen);
	}
	if (rc == 0)
		rc = blk_iter_status(it);
	blk_iter_free(it);
	return rc;
}

int blk_db_walk(struct blk_db *db, unsigned cf, const struct blk_walk *w)
{
	return blk_db_walk_at(db, NULL, cf, w);
}
