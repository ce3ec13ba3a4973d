/* Encodings of the filesystem's records in the node database (see meta.h). */
#include "fs/meta.h"

#include <errno.h>
#include <string.h>

int bfs_meta_register(struct blk_cf_registry *r)
{
	static const char *const names[BFS_CF_COUNT] = {
	    [BFS_CF_INODES] = "inodes",	  [BFS_CF_DIRENTS] = "dirents",
	    [BFS_CF_EXTENTS] = "extents", [BFS_CF_XATTRS] = "xattrs",
	    [BFS_CF_META] = "meta",	  [BFS_CF_PARENTS] = "parents",
	    [BFS_CF_CHANGES] = "changes", [BFS_CF_DAG] = "dag",
	};

	if (r->n) {
		if (!r->err)
			r->err = -EINVAL;
		return -EINVAL;
	}
	for (unsigned i = 0; i < BFS_CF_COUNT; i++) {
		int h = blk_cf_register(r, names[i], 0);

		if (h < 0)
			return h;
	}
	return 0;
}

#define INODE_REC_VERSION 1

static void put_ts(uint8_t *p, const struct timespec *ts)
{
	blk_put_le64(p, (uint64_t)ts->tv_sec);
	blk_put_le32(p + 8, (uint32_t)ts->tv_nsec);
}

static void get_ts(const uint8_t *p, struct timespec *ts)
{
	ts->tv_sec = (time_t)blk_get_le64(p);
	ts->tv_nsec = blk_get_le32(p + 8);
	if (ts->tv_nsec >= 1000000000L)
		ts->tv_nsec = 999999999L;
}

/* Layout (little-endian): version u8, pad[3], mode, uid, gid, nlink (u32),
 * size, rdev, stored (u64), atime, mtime, ctime, btime (u64 s + u32 ns). */
size_t bfs_inode_encode(const struct bfs_inode_rec *r, const char *target,
			size_t tlen, uint8_t *buf)
{
	memset(buf, 0, BFS_INODE_REC_LEN);
	buf[0] = INODE_REC_VERSION;
	blk_put_le32(buf + 4, r->mode);
	blk_put_le32(buf + 8, r->uid);
	blk_put_le32(buf + 12, r->gid);
	blk_put_le32(buf + 16, r->nlink);
	blk_put_le64(buf + 20, r->size);
	blk_put_le64(buf + 28, r->rdev);
	blk_put_le64(buf + 36, r->stored);
	put_ts(buf + 44, &r->atime);
	put_ts(buf + 56, &r->mtime);
	put_ts(buf + 68, &r->ctime);
	put_ts(buf + 80, &r->btime);
	if (tlen)
		memcpy(buf + BFS_INODE_REC_LEN, target, tlen);
	return BFS_INODE_REC_LEN + tlen;
}

int bfs_inode_decode(const uint8_t *buf, size_t len, struct bfs_inode_rec *r,
		     const char **target, size_t *tlen)
{
	if (len < BFS_INODE_REC_LEN || buf[0] != INODE_REC_VERSION)
		return -EUCLEAN;
	r->mode = blk_get_le32(buf + 4);
	r->uid = blk_get_le32(buf + 8);
	r->gid = blk_get_le32(buf + 12);
	r->nlink = blk_get_le32(buf + 16);
	r->size = blk_get_le64(buf + 20);
	r->rdev = blk_get_le64(buf + 28);
	r->stored = blk_get_le64(buf + 36);
	get_ts(buf + 44, &r->atime);
	get_ts(buf + 56, &r->mtime);
	get_ts(buf + 68, &r->ctime);
	get_ts(buf + 80, &r->btime);
	if (len - BFS_INODE_REC_LEN > BFS_SYMLINK_MAX)
		return -EUCLEAN;
	if (target)
		*target = (const char *)buf + BFS_INODE_REC_LEN;
	if (tlen)
		*tlen = len - BFS_INODE_REC_LEN;
	return 0;
}

size_t bfs_ino_key(uint8_t *key, uint64_t ino)
{
	blk_put_be64(key, ino);
	return 8;
}

size_t bfs_dirent_key(uint8_t *key, uint64_t parent, const char *name,
		      size_t nlen)
{
	blk_put_be64(key, parent);
	memcpy(key + 8, name, nlen);
	return 8 + nlen;
}

size_t bfs_extent_key(uint8_t *key, uint64_t ino, uint64_t off)
{
	blk_put_be64(key, ino);
	blk_put_be64(key + 8, off);
	return 16;
}

size_t bfs_xattr_key(uint8_t *key, uint64_t ino, const char *name, size_t nlen)
{
	blk_put_be64(key, ino);
	memcpy(key + 8, name, nlen);
	return 8 + nlen;
}

size_t bfs_parent_key(uint8_t *key, uint64_t ino, uint64_t parent,
		      const char *name, size_t nlen)
{
	blk_put_be64(key, ino);
	blk_put_be64(key + 8, parent);
	memcpy(key + 16, name, nlen);
	return 16 + nlen;
}

size_t bfs_dag_key(uint8_t *key, uint64_t ino)
{
	key[0] = 'C';
	blk_put_be64(key + 1, ino);
	return BFS_DAG_KEY_LEN;
}

void bfs_dirent_encode(uint8_t *val, uint64_t ino, uint8_t dtype)
{
	blk_put_le64(val, ino);
	val[8] = dtype;
}

int bfs_dirent_decode(const uint8_t *val, size_t len, uint64_t *ino,
		      uint8_t *dtype)
{
	if (len != BFS_DIRENT_VAL_LEN)
		return -EUCLEAN;
	*ino = blk_get_le64(val);
	*dtype = val[8];
	return *ino ? 0 : -EUCLEAN;
}

size_t bfs_extent_encode(uint8_t *val, uint32_t len, bool forced,
			 const struct blk_cid *cid)
{
	blk_put_le32(val, len | (forced ? BFS_EXTENT_FORCED : 0));
	return 4 + blk_cid_to_bytes(cid, val + 4);
}

int bfs_extent_decode(const uint8_t *val, size_t vlen, uint32_t *len,
		      bool *forced, struct blk_cid *cid)
{
	if (vlen < 5)
		return -EUCLEAN;
	*len = blk_get_le32(val) & ~BFS_EXTENT_FORCED;
	if (forced)
		*forced = blk_get_le32(val) & BFS_EXTENT_FORCED;
	if (*len == 0)
		return -EUCLEAN;
	return blk_cid_from_bytes(cid, val + 4, vlen - 4) ? -EUCLEAN : 0;
}
