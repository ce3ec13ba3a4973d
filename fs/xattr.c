/* Extended attributes: stored ones in the xattrs column family and the
 * read-only virtual ones (BFS_XATTR_*). */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

/* POSIX ACLs are not supported yet: refusing them makes cp -a and tar
 * fall back to chmod instead of storing an ACL nobody enforces. */
static bool is_acl(const char *name)
{
	return !strncmp(name, "system.posix_acl_", 17);
}

static bool is_virtual(const char *name)
{
	return !strncmp(name, BFS_XATTR_PREFIX, strlen(BFS_XATTR_PREFIX));
}

/* Set attribute @name of @ip to @value, or with @remove delete it (it
 * must exist), and the inode's ctime, in one transaction. @flags:
 * XATTR_CREATE / XATTR_REPLACE. */
static int xattr_change(struct bfs *fs, struct bfs_inode *ip, const char *name,
			const void *value, size_t size, int flags, bool remove)
{
	uint8_t key[8 + 256], probe;
	size_t nlen = strlen(name);

	if (is_acl(name))
		return -EOPNOTSUPP;
	if (is_virtual(name))
		return -EPERM;
	if (fs->cfg.read_only)
		return -EROFS;
	if (nlen == 0 || nlen > 255)
		return remove ? -ENODATA : -ERANGE;
	if (!remove && size > XATTR_VALUE_MAX)
		return -E2BIG;
	if (remove)
		flags = XATTR_REPLACE;
	size_t klen = bfs_xattr_key(key, ip->ino, name, nlen);
	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&ip->lock);
	int64_t r =
	    blk_db_get_into(fs->db, BFS_CF_XATTRS, key, klen, &probe, 0);
	int ret = r < 0 && r != -ENOENT ? (int)r : 0;
	if (!ret && (flags & XATTR_CREATE) && r >= 0)
		ret = -EEXIST;
	if (!ret && (flags & XATTR_REPLACE) && r == -ENOENT)
		ret = -ENODATA;
	if (!ret) {
		if (remove)
			blk_txn_delete(t, BFS_CF_XATTRS, key, klen);
		else
			blk_txn_put(t, BFS_CF_XATTRS, key, klen, value, size);
		bfs_now(&ip->rec.ctime);
		bfs_txn_put_inode(t, ip);
		ret = blk_txn_commit(t, false);
	}
	pthread_mutex_unlock(&ip->lock);
	blk_txn_free(t);
	return ret;
}

int bfs_setxattr(struct bfs *fs, struct bfs_inode *ip, const char *name,
		 const void *value, size_t size, int flags)
{
	return xattr_change(fs, ip, name, value, size, flags, false);
}

/* The virtual attributes (BFS_XATTR_*); -ENODATA for any other name. */
static int64_t virtual_xattr(struct bfs *fs, struct bfs_inode *ip,
			     const char *name, void *value, size_t size)
{
	char buf[4096];
	int64_t n;

	if (ip->ino != BFS_ROOT_INO || strcmp(name, BFS_XATTR_NODES) ||
	    !fs->peers)
		return -ENODATA;
	n = bfs_peers_describe(fs->peers, buf, sizeof(buf));
	if (n < 0)
		return n;
	if ((size_t)n >= sizeof(buf))
		return -E2BIG;
	if (size && (size_t)n > size)
		return -ERANGE;
	if (size)
		memcpy(value, buf, (size_t)n);
	return n;
}

int64_t bfs_getxattr(struct bfs *fs, struct bfs_inode *ip, const char *name,
		     void *value, size_t size)
{
	uint8_t key[8 + 256];
	size_t nlen = strlen(name);

	if (is_acl(name))
		return -EOPNOTSUPP;
	if (is_virtual(name))
		return virtual_xattr(fs, ip, name, value, size);
	if (nlen == 0 || nlen > 255)
		return -ENODATA;
	int64_t r = blk_db_get_into(fs->db, BFS_CF_XATTRS, key,
				    bfs_xattr_key(key, ip->ino, name, nlen),
				    value, size);
	if (r == -ENOENT)
		return -ENODATA;
	if (r >= 0 && size && (size_t)r > size)
		return -ERANGE;
	return r;
}

int64_t bfs_listxattr(struct bfs *fs, struct bfs_inode *ip, char *list,
		      size_t size)
{
	uint8_t prefix[8];
	size_t total = 0;

	bfs_ino_key(prefix, ip->ino);
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_XATTRS, prefix, 8, NULL, 0);
	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen;
		const char *k = blk_iter_key(it, &klen);
		size_t nlen = klen - 8;
		if (size && total + nlen + 1 <= size) {
			memcpy(list + total, k + 8, nlen);
			list[total + nlen] = 0;
		}
		total += nlen + 1;
	}
	int ret = blk_iter_status(it);
	blk_iter_free(it);
	if (ret)
		return ret;
	if (size && total > size)
		return -ERANGE;
	return (int64_t)total;
}

int bfs_removexattr(struct bfs *fs, struct bfs_inode *ip, const char *name)
{
	return xattr_change(fs, ip, name, NULL, 0, 0, true);
}
