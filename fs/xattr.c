/* Extended attributes: stored ones in the xattrs column family, among them
 * the POSIX ACLs, kept in step with the mode (fs/acl.h), and the read-only
 * virtual ones (BFS_XATTR_*).
 *
 * Names are sorted into namespaces as the kernel's own filesystems (ext4,
 * tmpfs) do: user., trusted. and security. with a non-empty suffix, and of
 * system. only the two ACLs; anything else is EOPNOTSUPP. The kernel
 * checks the caller's right to trusted.* before asking (getxattr ENODATA,
 * setxattr EPERM) but passes listxattr on: the caller's credentials say
 * whether its names are listed.
 *
 * An ACL and the mode it agrees with change in one transaction with the
 * inode record, so a crash never leaves a mode that disagrees with the
 * stored access ACL. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "blocks/base/log.h"
#include "fs/acl.h"

enum xattr_ns { NS_PLAIN, NS_TRUSTED, NS_ACL_ACCESS, NS_ACL_DEFAULT, NS_VIRT };

/* The namespace of @name: an enum xattr_ns, -EOPNOTSUPP for a name in no
 * namespace the kernel's filesystems know, -EINVAL for a known prefix
 * alone ("user."), as xattr_resolve_name. */
static int name_ns(const char *name)
{
	static const struct {
		const char *prefix;
		size_t len;
		int ns;
	} known[] = {
	    {"user.", 5, NS_PLAIN},
	    {"security.", 9, NS_PLAIN},
	    {"trusted.", 8, NS_TRUSTED},
	};

	if (!strcmp(name, BFS_ACL_ACCESS))
		return NS_ACL_ACCESS;
	if (!strcmp(name, BFS_ACL_DEFAULT))
		return NS_ACL_DEFAULT;
	if (!strncmp(name, BFS_XATTR_PREFIX, strlen(BFS_XATTR_PREFIX)))
		return NS_VIRT;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strncmp(name, known[i].prefix, known[i].len))
			return name[known[i].len] ? known[i].ns : -EINVAL;
	return -EOPNOTSUPP;
}

/* Set attribute @name of @ip to @value, or with @remove delete it (it
 * must exist), and the inode's ctime, in one transaction. @flags:
 * XATTR_CREATE / XATTR_REPLACE. */
static int xattr_change(struct bfs *fs, struct bfs_inode *ip, const char *name,
			const void *value, size_t size, int flags, bool remove)
{
	uint8_t key[8 + 256], probe;
	size_t nlen = strlen(name);

	if (nlen > 255)
		return remove ? -ENODATA : -ERANGE;
	if (!remove && size > XATTR_VALUE_MAX)
		return -E2BIG;
	if (remove)
		flags = XATTR_REPLACE;
	size_t klen = bfs_xattr_key(key, ip->ino, name, nlen);
	struct blk_txn *t = blk_txn_new(fs->store);
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
		bfs_txn_put_inode(fs, t, ip);
		ret = blk_txn_commit(t, false);
	}
	pthread_mutex_unlock(&ip->lock);
	blk_txn_free(t);
	return ret;
}

/* Whether setting an access ACL keeps the set-group-ID bit: the caller
 * is in the file's group or has CAP_FSETID (posix_acl_update_mode). The
 * kernel would say so with FUSE_SETXATTR_ACL_KILL_SGID, which needs
 * FUSE_SETXATTR_EXT, which this libfuse lacks. */
static bool keeps_sgid(const struct bfs_cred *cr, gid_t gid)
{
	return !cr || cr->fsetid || bfs_cred_in_group(cr, gid);
}

/* Delete ACL @ns of @ip, if it has one (0 if not, as ext4 and tmpfs:
 * removing an ACL that is not there is no error). */
static int acl_remove(struct bfs *fs, struct bfs_inode *ip, int ns)
{
	const char *name =
	    ns == NS_ACL_ACCESS ? BFS_ACL_ACCESS : BFS_ACL_DEFAULT;
	int ret = xattr_change(fs, ip, name, NULL, 0, 0, true);

	return ret == -ENODATA ? 0 : ret;
}

/* Store ACL @ns of @ip from the xattr value @value. An access ACL sets the
 * mode's permission bits (and may clear set-group-ID, keeps_sgid) and is
 * not stored when the mode says all of it, as posix_acl_update_mode. */
static int acl_set(struct bfs *fs, struct bfs_inode *ip, int ns,
		   const void *value, size_t size, const struct bfs_cred *cr)
{
	struct bfs_acl acl;
	uint8_t key[8 + 256], buf[BFS_ACL_XATTR_LEN(BFS_ACL_MAX_ENTRIES)];
	const char *name =
	    ns == NS_ACL_ACCESS ? BFS_ACL_ACCESS : BFS_ACL_DEFAULT;
	int ret = bfs_acl_decode(value, size, &acl);

	if (ret)
		return ret;
	if (S_ISLNK(ip->rec.mode)) /* the type never changes */
		return -EOPNOTSUPP;
	if (ns == NS_ACL_DEFAULT && !S_ISDIR(ip->rec.mode))
		return acl.n ? -EACCES : 0;
	if (!acl.n) /* no entries: the kernel's way to say no ACL */
		return acl_remove(fs, ip, ns);
	size_t len = bfs_acl_encode(&acl, buf);
	size_t klen = bfs_xattr_key(key, ip->ino, name, strlen(name));
	struct blk_txn *t = blk_txn_new(fs->store);
	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&ip->lock);
	struct bfs_inode_rec saved = ip->rec;
	bool was_dirty = ip->attr_dirty, store = true;
	if (ns == NS_ACL_ACCESS) {
		mode_t mode = ip->rec.mode;
		store = bfs_acl_equiv_mode(&acl, &mode) > 0;
		if (!keeps_sgid(cr, ip->rec.gid))
			mode &= ~(mode_t)S_ISGID;
		ip->rec.mode = mode;
	}
	if (store)
		blk_txn_put(t, BFS_CF_XATTRS, key, klen, buf, len);
	else
		blk_txn_delete(t, BFS_CF_XATTRS, key, klen);
	bfs_now(&ip->rec.ctime);
	bfs_txn_put_inode(fs, t, ip);
	ret = blk_txn_commit(t, false);
	if (ret) { /* nothing changed: neither the mode nor the ACL */
		ip->rec = saved;
		ip->attr_dirty = was_dirty;
	}
	pthread_mutex_unlock(&ip->lock);
	blk_txn_free(t);
	return ret;
}

/* The namespace of @name for a change (set or remove): NS_* or -errno
 * (a bad name, a read-only virtual attribute, a read-only mount). */
static int change_ns(struct bfs *fs, const char *name)
{
	int ns = name_ns(name);

	if (ns < 0)
		return ns;
	if (ns == NS_VIRT)
		return -EPERM;
	return fs->cfg.read_only ? -EROFS : ns;
}

int bfs_setxattr(struct bfs *fs, struct bfs_inode *ip, const char *name,
		 const void *value, size_t size, int flags,
		 const struct bfs_cred *cr)
{
	int ns = change_ns(fs, name);

	if (ns < 0)
		return ns;
	/* The kernel sets ACLs with flags 0 (fs/fuse/acl.c). */
	if (ns == NS_ACL_ACCESS || ns == NS_ACL_DEFAULT)
		return acl_set(fs, ip, ns, value, size, cr);
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
	n = cl_engine_describe(fs->peers, buf, sizeof(buf));
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
	int ns = name_ns(name);

	if (ns < 0)
		return ns;
	if (ns == NS_VIRT)
		return virtual_xattr(fs, ip, name, value, size);
	if (nlen > 255)
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

struct list_walk {
	char *list;
	size_t size;
	const struct bfs_cred *cr;
	bool *hidden;
	size_t total;
};

/* One record of bfs_listxattr's walk. */
static int list_one(void *arg, const uint8_t *k, size_t klen, const uint8_t *v,
		    size_t vlen)
{
	struct list_walk *l = arg;
	size_t nlen = klen - 8;
	char name[256];

	(void)v;
	(void)vlen;
	memcpy(name, k + 8, nlen);
	name[nlen] = 0;
	/* Names stored before namespaces were checked, in none that get
	 * and remove accept, stay out of the list. */
	int ns = name_ns(name);
	if (ns < 0)
		return 0;
	if (ns == NS_TRUSTED && l->cr && !l->cr->sys_admin) {
		if (l->hidden)
			*l->hidden = true;
		return 0;
	}
	if (l->size && l->total + nlen + 1 <= l->size)
		memcpy(l->list + l->total, name, nlen + 1);
	l->total += nlen + 1;
	return 0;
}

int64_t bfs_listxattr(struct bfs *fs, struct bfs_inode *ip, char *list,
		      size_t size, const struct bfs_cred *cr, bool *hidden)
{
	uint8_t prefix[8];
	struct list_walk l = {list, size, cr, hidden, 0};
	const struct blk_walk w = {
	    .prefix = prefix,
	    .plen = 8,
	    .klen_max = 8 + 255, /* a name */
	    .fn = list_one,
	    .arg = &l,
	};
	size_t total;

	if (hidden)
		*hidden = false;
	bfs_ino_key(prefix, ip->ino);
	int ret = blk_db_walk(fs->db, BFS_CF_XATTRS, &w);
	if (ret)
		return ret;
	total = l.total;
	if (size && total > size)
		return -ERANGE;
	return (int64_t)total;
}

int bfs_removexattr(struct bfs *fs, struct bfs_inode *ip, const char *name)
{
	int ns = change_ns(fs, name);

	if (ns < 0)
		return ns;
	if (ns == NS_ACL_ACCESS || ns == NS_ACL_DEFAULT)
		return acl_remove(fs, ip, ns);
	return xattr_change(fs, ip, name, NULL, 0, 0, true);
}

/* The stored ACL @name of inode @ino into @acl: 1, 0 if there is none,
 * or -errno (-EUCLEAN for a stored value that does not decode). */
static int acl_load(struct bfs *fs, uint64_t ino, const char *name,
		    struct bfs_acl *acl)
{
	uint8_t key[8 + 256], buf[BFS_ACL_XATTR_LEN(BFS_ACL_MAX_ENTRIES)];
	int64_t r = blk_db_get_into(fs->db, BFS_CF_XATTRS, key,
				    bfs_xattr_key(key, ino, name, strlen(name)),
				    buf, sizeof(buf));

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return (int)r;
	if ((size_t)r > sizeof(buf) || bfs_acl_decode(buf, (size_t)r, acl) ||
	    !acl->n) {
		blk_log_err("inode %llu: stored %s does not decode",
			    (unsigned long long)ino, name);
		return -EUCLEAN;
	}
	return 1;
}

/* Put ACL @name of @ino in @t. */
static void acl_put(struct blk_txn *t, uint64_t ino, const char *name,
		    const struct bfs_acl *acl)
{
	uint8_t key[8 + 256], buf[BFS_ACL_XATTR_LEN(BFS_ACL_MAX_ENTRIES)];
	size_t len = bfs_acl_encode(acl, buf);

	blk_txn_put(t, BFS_CF_XATTRS, key,
		    bfs_xattr_key(key, ino, name, strlen(name)), buf, len);
}

int bfs_acl_chmod_txn(struct bfs *fs, struct bfs_inode *ip, mode_t mode,
		      struct blk_txn *t)
{
	struct bfs_acl acl;

	if (S_ISLNK(ip->rec.mode))
		return 0;
	int ret = acl_load(fs, ip->ino, BFS_ACL_ACCESS, &acl);
	if (ret <= 0)
		return ret;
	ret = bfs_acl_chmod(&acl, mode);
	if (ret)
		return ret;
	acl_put(t, ip->ino, BFS_ACL_ACCESS, &acl);
	return 0;
}

int bfs_acl_inherit(struct bfs *fs, const struct bfs_inode *dp, uint64_t ino,
		    mode_t *mode, mode_t umask, struct blk_txn *t)
{
	struct bfs_acl acl;

	if (S_ISLNK(*mode))
		return 0;
	int ret = acl_load(fs, dp->ino, BFS_ACL_DEFAULT, &acl);
	if (ret < 0)
		return ret;
	if (ret == 0) {
		*mode &= ~(umask & 0777);
		return 0;
	}
	if (S_ISDIR(*mode))
		acl_put(t, ino, BFS_ACL_DEFAULT, &acl);
	ret = bfs_acl_create_masq(&acl, mode);
	if (ret > 0)
		acl_put(t, ino, BFS_ACL_ACCESS, &acl);
	return ret < 0 ? ret : 0;
}
