/* Rebuild the core's metadata (fs/meta.h) from a head: the inverse of a
 * commit, for a node that recovers a filesystem from the cluster. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "blocks/dag/dir.h"
#include "blocks/db/db.h"
#include "blocks/store/store.h"

/* What the rebuild has done so far (and, at the end, in all). */
struct bfs_rebuild_stats {
	uint64_t dirs;	  /* directories whose attribute blocks were read */
	uint64_t entries; /* directory entries written */
	uint64_t files;	  /* regular files whose UnixFS nodes were walked */
	uint64_t inodes;  /* distinct inodes written */
	uint64_t extents; /* extents written */
	uint64_t holes;	  /* leaves found to be holes (no extent) */
	uint64_t blocks;  /* blocks fetched */
};

struct bfs_rebuild_ops {
	/* A verified block from the cluster (cl_engine_fetch wrapped, or a
	 * test's in-memory source). Called from up to @threads threads at
	 * once: it must be thread-safe. */
	blk_dag_fetch_fn fetch;
	void *ctx;
	/* Called (from the rebuilding thread only) after each directory,
	 * with the counts so far; may be NULL. A non-zero return stops the
	 * rebuild, which returns it. */
	int (*progress)(void *arg, const struct bfs_rebuild_stats *st);
	void *arg;
	/* Threads that fetch the file nodes of one directory in parallel:
	 * 0 or 1 fetch them on the calling thread. */
	unsigned threads;
};

/*
 * Rebuild into @db the metadata of the filesystem whose head record is
 * the @head_len bytes at @head (blocks/dag/head.h; the caller has decoded
 * and verified it already: it is decoded again here, strictly).
 *
 * @db is a node database opened with the core's column families first
 * (bfs_meta_register) and the block store's (blk_store_register); @store
 * is the block store open on it. Its core families (BFS_CF_INODES ..
 * BFS_CF_DAG) must be empty: else -EEXIST, nothing written.
 *
 * The walk: breadth-first over the attribute tree from the head's
 * "attrs" (FORMAT.md §3), one directory at a time, so memory is bounded
 * by the queue of directories still to read, not by the tree. For each
 * directory it writes, in blk_txn batches:
 *  - each entry's dirent and parents records;
 *  - at an inode's first entry (hard links: entries sharing "ino" are
 *    one inode): its inode record (the attrs, a symlink's target), its
 *    xattrs, its dag cache record ('C', fs/commit/cache.h: node CID and
 *    Tsize from the entry; for a directory also its attribute block's
 *    CID), and for a regular file its extents, from its UnixFS node:
 *    the raw leaves of its dag-pb nodes in order, each an extent, except
 *    leaves that are N zero bytes (holes: no extent). A one-chunk file
 *    whose node holds its bytes inline gets the raw block of those bytes
 *    as its extent, stored here (its bytes are at hand). Every other
 *    extent's block is referenced in the store without its bytes
 *    (blk_txn_ref_remote: marked evicted, as a block peers hold), so the
 *    read path fetches it from the cluster (fs/read.c fetch_block) and
 *    keeps it (blk_store_fill). Extents are written unforced (a
 *    content-defined end, BFS_EXTENT_FORCED clear): the DAG does not
 *    say which ends were forced.
 * The root block's "self" becomes inode BFS_ROOT_INO; an entry with that
 * ino is refused.
 * Last, in one batch: the meta records ("next_ino" = the largest ino + 1,
 * "inodes", "max_extent" = the longest extent), the head ('H',
 * bfs_dag_head_put), and the "format" record (BFS_FORMAT_VERSION). The
 * format record is written last: a rebuild that stops half-way (a crash,
 * an error) leaves a database without it, which the caller must empty
 * (or remove) and rebuild again; never bfs_open it (it would mkfs over
 * the half-written records).
 *
 * Every block comes through @ops->fetch (which verifies it against its
 * CID); every decode is strict. Returns 0, or a negative errno with a
 * message in @err naming the path where it failed:
 *   -EEXIST   the core families are not empty
 *   -EBADMSG  a malformed head, attribute block, part or UnixFS node, a
 *             tree that does not hold together (an entry's type against
 *             its node, an ino shared by entries of different types, a
 *             directory reached twice, an inode number 0 or past 2^63)
 *   -ENOMEM, -EIO, -ENOSPC, or what @ops->fetch or @ops->progress
 *   returned
 * @st (may be NULL) gets the counts, also on error.
 */
int bfs_rebuild(struct blk_db *db, struct blk_store *store, const uint8_t *head,
		size_t head_len, const struct bfs_rebuild_ops *ops,
		struct bfs_rebuild_stats *st, char *err, size_t errlen);
