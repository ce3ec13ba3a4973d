/* Format upgrades in place: a filesystem of an older format version made
 * current at open, in batches, restartable. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "blocks/base/log.h"

/* Records per batch: bounded memory, and progress that a crash keeps
 * (a batch is whole or absent; the format record goes last). */
#define UPGRADE_BATCH 8192

struct upgrade {
	struct bfs *fs;
	struct blk_txn *t;
	size_t n;
	uint64_t total;
	int err;
};

static int batch_step(struct upgrade *u)
{
	if (++u->n < UPGRADE_BATCH)
		return 0;
	int ret = bfs_txn_commit(u->t, false);

	u->n = 0;
	u->t = ret ? NULL : blk_txn_new(u->fs->store);
	if (!ret && !u->t)
		ret = -ENOMEM;
	return ret;
}

/* dirents: parent(be64) name -> ino: the parents record of each. */
static int add_parent(void *arg, const uint8_t *key, size_t klen,
		      const uint8_t *val, size_t vlen)
{
	struct upgrade *u = arg;
	uint8_t pkey[BFS_PARENT_KEY_MAX];
	uint64_t ino;
	uint8_t dtype;
	int ret = bfs_dirent_decode(val, vlen, &ino, &dtype);

	if (ret)
		return ret;
	blk_txn_put(u->t, BFS_CF_PARENTS, pkey,
		    bfs_parent_key(pkey, ino, blk_get_be64(key),
				   (const char *)key + 8, klen - 8),
		    "", 0);
	u->total++;
	return batch_step(u);
}

/* inodes: every one changed, so that the first commit writes them all. */
static int mark_inode(void *arg, const uint8_t *key, size_t klen,
		      const uint8_t *val, size_t vlen)
{
	struct upgrade *u = arg;

	bfs_txn_mark_changed(u->fs, u->t, blk_get_be64(key));
	u->total++;
	return batch_step(u);
}

/* Version 1 -> 2: the parents index from the directory entries, and a
 * change mark on every inode. Rerunning it after a crash half-way is
 * harmless: puts of the same parents records, and more marks. */
int bfs_upgrade_v1(struct bfs *fs)
{
	struct upgrade u = {.fs = fs, .t = blk_txn_new(fs->store)};
	uint8_t v[8];
	int ret;

	if (!u.t)
		return -ENOMEM;
	ret = blk_db_walk(fs->db, BFS_CF_DIRENTS,
			  &(struct blk_walk){.klen_min = 9,
					     .klen_max = 8 + BFS_NAME_MAX,
					     .klen_err = -EUCLEAN,
					     .fn = add_parent,
					     .arg = &u});
	if (!ret)
		ret = blk_db_walk(fs->db, BFS_CF_INODES,
				  &(struct blk_walk){.klen_min = 8,
						     .klen_max = 8,
						     .klen_err = -EUCLEAN,
						     .fn = mark_inode,
						     .arg = &u});
	if (ret) {
		blk_txn_free(u.t);
		return ret;
	}
	blk_put_le64(v, BFS_FORMAT_VERSION);
	blk_txn_put(u.t, BFS_CF_META, "format", 6, v, 8);
	ret = bfs_txn_commit(u.t, true);
	if (!ret)
		blk_log_info("filesystem upgraded to format %d: %llu records "
			     "indexed for commits",
			     BFS_FORMAT_VERSION, (unsigned long long)u.total);
	return ret;
}

/* The next change mark: one past the last on disk (marks are deleted by
 * the commits that read them, so the family holds only the uncommitted
 * ones), or 1. */
int bfs_load_change_seq(struct bfs *fs)
{
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_CHANGES, NULL, 0, NULL, 0);
	uint64_t last = 0;
	int ret;

	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen;
		const uint8_t *k = blk_iter_key(it, &klen);

		if (klen == 8)
			last = blk_get_be64(k);
	}
	ret = blk_iter_status(it);
	blk_iter_free(it);
	atomic_store(&fs->change_seq, last + 1);
	return ret;
}
