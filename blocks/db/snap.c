/* Read views: a RocksDB snapshot of the whole database, every column
 * family at one point in time, read by point lookups, iterators and
 * walks. */

#include "blocks/db/db-int.h"

#include <errno.h>
#include <stdlib.h>

/*
 * Invariants:
 *  1. @snap is released and @ro destroyed only by blk_snap_free; every
 *     iterator made from the view must be freed before it.
 *  2. Reads through the view never see a write committed after
 *     blk_snap_new returned, and see every write committed before it.
 */
struct blk_snap {
	struct blk_db *db;
	const rocksdb_snapshot_t *snap;
	rocksdb_readoptions_t *ro;
};

struct blk_snap *blk_snap_new(struct blk_db *db)
{
	struct blk_snap *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->db = db;
	s->snap = rocksdb_create_snapshot(db->rdb);
	s->ro = rocksdb_readoptions_create();
	if (!s->snap || !s->ro) {
		blk_snap_free(s);
		return NULL;
	}
	rocksdb_readoptions_set_snapshot(s->ro, s->snap);
	return s;
}

void blk_snap_free(struct blk_snap *s)
{
	if (!s)
		return;
	if (s->ro)
		rocksdb_readoptions_destroy(s->ro);
	if (s->snap)
		rocksdb_release_snapshot(s->db->rdb, s->snap);
	free(s);
}

int blk_snap_get(struct blk_snap *s, unsigned cf, const void *key, size_t klen,
		 void **val, size_t *vlen)
{
	rocksdb_pinnableslice_t *ps;
	int rc = blk_db_pinned_ro(s->db, s->ro, cf, key, klen, &ps);

	return rc < 0 ? rc : blk_slice_dup(ps, val, vlen);
}

int64_t blk_snap_get_into(struct blk_snap *s, unsigned cf, const void *key,
			  size_t klen, void *buf, size_t cap)
{
	return blk_db_get_into_ro(s->db, s->ro, cf, key, klen, buf, cap);
}

struct blk_iter *blk_snap_iter_new(struct blk_snap *s, unsigned cf,
				   const void *prefix, size_t plen,
				   const void *start, size_t slen)
{
	return blk_iter_new_at(s->db, s->snap, cf, prefix, plen, start, slen);
}

int blk_snap_walk(struct blk_snap *s, unsigned cf, const struct blk_walk *w)
{
	return blk_db_walk_at(s->db, s->snap, cf, w);
}
