/* The filesystem's records in the node database: inodes, directory
 * entries, extent maps and xattrs, their keys and their versioned binary
 * encodings.
 *
 * Column families (the core's own; the node's database holds others'):
 *
 *   inodes   ino(be64)
 *            -> struct bfs_inode_rec (+ symlink target)
 *   dirents  parent(be64) name
 *            -> ino(le64) type(u8)
 *   extents  ino(be64) offset(be64)
 *            -> len(le32) cid(binary)
 *   xattrs   ino(be64) name
 *            -> value
 *   meta     ascii key
 *            -> value (format, next inode, orphans)
 *   parents  ino(be64) parent(be64) name
 *            -> "" : each directory entry seen from its inode, so that
 *               a commit finds the directories above a changed inode
 *   changes  seq(be64)
 *            -> ino(le64): the inode changed since the last commit,
 *               written in the batch of the change (bfs_txn_put_inode)
 *   dag      records of fs/commit (fs/commit/cache.h): what the last
 *            commit made of each inode, and the last head
 *
 * Big-endian numbers in keys keep RocksDB's byte order equal to numeric
 * order, so a prefix scan lists a directory or walks a file's extents in
 * offset order. Every extent covers one whole block: [offset,
 * offset+len).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "blocks/base/bytes.h"
#include "blocks/cid.h"
#include "blocks/store/store.h"

/* The core's column families, by handle: bfs_meta_register adds them
 * first to a registry, so that their handles are these constants. */
enum {
	BFS_CF_INODES,
	BFS_CF_DIRENTS,
	BFS_CF_EXTENTS,
	BFS_CF_XATTRS,
	BFS_CF_META,
	BFS_CF_PARENTS,
	BFS_CF_CHANGES,
	BFS_CF_DAG,
	BFS_CF_COUNT,
};

/* Add the core's column families to @r, which must be empty (else
 * -EINVAL, also kept in @r->err): 0 or the error of blk_cf_register. */
int bfs_meta_register(struct blk_cf_registry *r);

/* 2: the parents, changes and dag families (issue 23); a version 1
 * filesystem is upgraded in place at open (fs/bfs.c). */
#define BFS_FORMAT_VERSION 2
#define BFS_ROOT_INO 1
#define BFS_NAME_MAX 255
/* meta key: how many inode records there are (le64), written with every
 * commit that adds or deletes one */
#define BFS_META_INODES "inodes"
#define BFS_SYMLINK_MAX 4095

struct bfs_inode_rec {
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint64_t size;
	uint64_t rdev;
	uint64_t stored; /* bytes held in extents (for st_blocks) */
	struct timespec atime, mtime, ctime, btime;
};

#define BFS_INODE_REC_LEN 96 /* encoded fixed part */
#define BFS_EXTENT_VAL_MAX (4 + BLK_CID_MAX_BYTES)

/* Inode record: fixed part, then the symlink target (no NUL) for links.
 * bfs_inode_encode writes into @buf (BFS_INODE_REC_LEN + tlen bytes) and
 * returns the length. bfs_inode_decode returns 0 or -EUCLEAN (unknown
 * version, short record); @target and @tlen then point into @buf. */
size_t bfs_inode_encode(const struct bfs_inode_rec *r, const char *target,
			size_t tlen, uint8_t *buf);
int bfs_inode_decode(const uint8_t *buf, size_t len, struct bfs_inode_rec *r,
		     const char **target, size_t *tlen);

/* Keys. Return the key length. */
size_t bfs_ino_key(uint8_t *key, uint64_t ino);
size_t bfs_dirent_key(uint8_t *key, uint64_t parent, const char *name,
		      size_t nlen); /* key: 8 + BFS_NAME_MAX bytes */
size_t bfs_extent_key(uint8_t *key, uint64_t ino, uint64_t off);
size_t bfs_xattr_key(uint8_t *key, uint64_t ino, const char *name,
		     size_t nlen); /* key: 8 + 256 bytes */
size_t bfs_parent_key(uint8_t *key, uint64_t ino, uint64_t parent,
		      const char *name, size_t nlen); /* 16 + BFS_NAME_MAX */
#define BFS_PARENT_KEY_MAX (16 + BFS_NAME_MAX)
/* The dag family's per-inode record key ('C' ino(be64)); its value is
 * fs/commit's (cache.h). The core only deletes it with the inode. */
#define BFS_DAG_KEY_LEN 9
size_t bfs_dag_key(uint8_t *key, uint64_t ino);

/* Directory entry value: ino + d_type. */
#define BFS_DIRENT_VAL_LEN 9
void bfs_dirent_encode(uint8_t *val, uint64_t ino, uint8_t dtype);
int bfs_dirent_decode(const uint8_t *val, size_t len, uint64_t *ino,
		      uint8_t *dtype);

/* Extent value: length + binary CID. The length's top bit says the
 * block's end was forced (end of the data at a flush, a truncate), not a
 * content-defined cut: the next write after it re-chunks the block. */
#define BFS_EXTENT_FORCED (1u << 31)
size_t bfs_extent_encode(uint8_t *val, uint32_t len, bool forced,
			 const struct blk_cid *cid);
int bfs_extent_decode(const uint8_t *val, size_t vlen, uint32_t *len,
		      bool *forced, struct blk_cid *cid);

static inline uint8_t bfs_mode_dtype(uint32_t mode)
{
	return (uint8_t)((mode & S_IFMT) >> 12);
}
