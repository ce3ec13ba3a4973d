/* The FUSE low-level adapter: each callback calls the core (bfs.c), which
 * returns 0 or -errno, and turns that into exactly one reply. No lock is
 * held across a fuse_reply_*. */
#define FUSE_USE_VERSION 312
#include "fs/fuse.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "blocks/base/log.h"
#include "fs/acl.h"

struct bfs_fuse {
	struct bfs *fs;
	struct fuse_session *se; /* set before the session runs */
	double timeout;
	bool read_only;
	bool no_acl; /* mount option noacl */
	bool acl;    /* op_init: the kernel keeps and enforces POSIX ACLs */
	unsigned launders; /* atomic: op_lseek callers in launder */
};

static struct bfs_fuse *ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct bfs *FS(fuse_req_t req)
{
	return ctx(req)->fs;
}

static void fill_entry(fuse_req_t req, struct bfs_inode *ip,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = bfs_inode_ino(ip);
	e->generation = 1;
	e->attr_timeout = ctx(req)->timeout;
	e->entry_timeout = ctx(req)->timeout;
	bfs_stat(ip, &e->attr);
}

/* Reply with a new entry: one kernel lookup is counted first. */
static void reply_entry(fuse_req_t req, struct bfs_inode *ip)
{
	struct fuse_entry_param e;

	fill_entry(req, ip, &e);
	bfs_ref_lookup(FS(req), ip);
	bfs_iput(FS(req), ip);
	fuse_reply_entry(req, &e);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct bfs_fuse *bf = userdata;

	conn->max_write = 1u << 20;
	/* The kernel keeps min(its bdi read-ahead, this): the bdi value was
	 * raised before INIT (set_read_ahead), so ask for as much here. */
	conn->max_readahead = 64u << 20;
	if (!bf->read_only && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	/* open(O_TRUNC) arrives as one request (op_open truncates) rather
	 * than a setattr before the open. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* BFS_IOC_SYNC on the root directory */
	if (conn->capable & FUSE_CAP_IOCTL_DIR)
		conn->want |= FUSE_CAP_IOCTL_DIR;
	/* POSIX ACLs: the kernel caches and enforces them, we store them and
	 * keep them in step with the mode (fs/xattr.c). The kernel then
	 * leaves the umask to us too (DONT_MASK): a default ACL replaces it,
	 * and it must see the mode the caller asked for. */
	if (!bf->no_acl && (conn->capable & FUSE_CAP_POSIX_ACL) &&
	    (conn->capable & FUSE_CAP_DONT_MASK)) {
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
		bf->acl = true;
	}
	/* POSIX and flock locks are kept by the kernel: every opener of
	 * this filesystem goes through this one mount. */
	conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	conn->time_gran = 1;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct bfs_inode *ip;
	int ret = bfs_lookup(FS(req), parent, name, &ip);

	if (ret == -ENOENT) {
		struct fuse_entry_param e = {.entry_timeout =
						 ctx(req)->timeout};
		fuse_reply_entry(req, &e); /* cached negative entry */
		return;
	}
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, ip);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	bfs_forget(FS(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		bfs_forget(FS(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct bfs_inode *ip;
	struct stat st;
	int ret = bfs_iget(FS(req), ino, &ip);

	(void)fi;
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	bfs_stat(ip, &st);
	bfs_iput(FS(req), ip);
	fuse_reply_attr(req, &st, ctx(req)->timeout);
}

/* The caller of @req as the core sees it (fs/cred.h). */
static void caller_cred(fuse_req_t req, struct bfs_cred *cr)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);

	bfs_cred_read(c->pid, c->uid, c->gid, cr);
}

/* BFS_SET_KILL_* for a write or truncate of @ip by the caller of @req
 * (bfs_killpriv); its credentials are read only for a file that has
 * setuid or setgid. */
static unsigned killpriv(fuse_req_t req, struct bfs_inode *ip)
{
	struct bfs_cred cred;
	struct stat st;

	bfs_stat(ip, &st);
	if (!(st.st_mode & (S_ISUID | S_ISGID)))
		return 0;
	caller_cred(req, &cred);
	return bfs_killpriv(ip, &cred);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	static const struct {
		int fuse;
		unsigned ours;
	} map[] = {
	    {FUSE_SET_ATTR_MODE, BFS_SET_MODE},
	    {FUSE_SET_ATTR_UID, BFS_SET_UID},
	    {FUSE_SET_ATTR_GID, BFS_SET_GID},
	    {FUSE_SET_ATTR_SIZE, BFS_SET_SIZE},
	    {FUSE_SET_ATTR_ATIME, BFS_SET_ATIME},
	    {FUSE_SET_ATTR_MTIME, BFS_SET_MTIME},
	    {FUSE_SET_ATTR_ATIME_NOW, BFS_SET_ATIME_NOW},
	    {FUSE_SET_ATTR_MTIME_NOW, BFS_SET_MTIME_NOW},
	    {FUSE_SET_ATTR_CTIME, BFS_SET_CTIME},
	};
	struct bfs_inode *ip;
	unsigned valid = 0;
	struct stat st;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			valid |= map[i].ours;
	/* With the writeback cache the kernel keeps mtime and ctime of its
	 * cached writes and reports them at close and writeback with the
	 * writer's handle (fuse_flush_times); utimensat(2) and futimens(2)
	 * never carry a handle. */
	if (fi && !(to_set & ~(FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME)))
		valid |= BFS_SET_LAZY;
	int ret = bfs_iget(FS(req), ino, &ip);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* A setattr of nothing is the kernel asking, before a write, to
	 * clear setuid/setgid by its current rule, which its FUSE client
	 * no longer passes on (only its older rule arrives, as a mode); a
	 * truncate must clear them too. */
	if (!valid || (valid & BFS_SET_SIZE))
		valid |= killpriv(req, ip);
	ret = valid ? bfs_setattr(FS(req), ip, attr, valid) : 0;
	if (ret) {
		bfs_iput(FS(req), ip);
		fuse_reply_err(req, -ret);
		return;
	}
	bfs_stat(ip, &st);
	bfs_iput(FS(req), ip);
	fuse_reply_attr(req, &st, ctx(req)->timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct bfs_inode *ip;
	char buf[BFS_SYMLINK_MAX + 1];
	int ret = bfs_iget(FS(req), ino, &ip);

	if (!ret) {
		ret = bfs_readlink(FS(req), ip, buf, sizeof(buf));
		bfs_iput(FS(req), ip);
	}
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_readlink(req, buf);
}

static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev, const char *target)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct bfs_inode *ip;
	int ret = bfs_mknod(FS(req), parent, name, mode, c->umask, rdev, c->uid,
			    c->gid, target, &ip);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		reply_entry(req, ip);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	make_node(req, parent, name, mode, rdev, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	make_node(req, parent, name, S_IFLNK | 0777, 0, link);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -bfs_unlink(FS(req), parent, name, false));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -bfs_unlink(FS(req), parent, name, true));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	fuse_reply_err(
	    req, -bfs_rename(FS(req), parent, name, newparent, newname, flags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct bfs_inode *ip;
	int ret = bfs_link(FS(req), ino, newparent, newname, &ip);

	if (ret)
		fuse_reply_err(req, -ret);
	else
		reply_entry(req, ip);
}

static void set_file_flags(struct fuse_file_info *fi)
{
	/* Every change goes through this mount, so cached pages stay valid
	 * across opens. */
	fi->keep_cache = 1;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bfs_inode *ip;
	struct bfs_file *f;
	int ret = bfs_iget(FS(req), ino, &ip);

	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	if (ctx(req)->read_only &&
	    ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)))
		ret = -EROFS;
	/* The kernel hands O_TRUNC to open (FUSE_CAP_ATOMIC_O_TRUNC) instead
	 * of a setattr before it: the truncation is ours to do. */
	if (!ret && (fi->flags & O_TRUNC) && S_ISREG(bfs_inode_mode(ip))) {
		struct stat st = {.st_size = 0};
		ret = bfs_setattr(FS(req), ip, &st,
				  BFS_SET_SIZE | killpriv(req, ip));
	}
	if (!ret)
		ret = bfs_open_file(FS(req), ip,
				    (fi->flags & O_ACCMODE) != O_RDONLY, &f);
	bfs_iput(FS(req), ip);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)f;
	set_file_flags(fi);
	if (fuse_reply_open(req, fi) == -ENOENT)
		bfs_release_file(FS(req), f); /* the opener went away */
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct bfs_inode *ip;
	struct bfs_file *f;
	struct fuse_entry_param e;

	int ret = bfs_mknod(FS(req), parent, name, S_IFREG | (mode & 07777),
			    c->umask, 0, c->uid, c->gid, NULL, &ip);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	ret = bfs_open_file(FS(req), ip, true, &f);
	if (ret) {
		bfs_iput(FS(req), ip);
		fuse_reply_err(req, -ret);
		return;
	}
	fill_entry(req, ip, &e);
	bfs_ref_lookup(FS(req), ip);
	bfs_iput(FS(req), ip);
	fi->fh = (uint64_t)(uintptr_t)f;
	set_file_flags(fi);
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		bfs_release_file(FS(req), f);
}

static struct bfs_file *FH(struct fuse_file_info *fi)
{
	return (struct bfs_file *)(uintptr_t)fi->fh;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	char *buf = malloc(size ? size : 1);

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	struct bfs_file *f = FH(fi);
	int64_t n = bfs_read(FS(req), f, (uint64_t)off, buf, size);
	/* The kernel drops its cached atime after a read it sent us. */
	if (n >= 0)
		bfs_file_access(FS(req), f, false);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	int64_t n = bfs_write(FS(req), bfs_file_inode(FH(fi)), (uint64_t)off,
			      buf, size);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* close(2): the kernel has written this file's cached pages back
	 * to us; chunk what is left into the local store so the data is
	 * accounted and any error reaches close(). This is local work
	 * bounded by the write buffer; it never waits for the network and
	 * does not sync the disk (fsync does). */
	bfs_read_done(FS(req), FH(fi));
	/* The kernel's cached atime is stale if the close counted as a
	 * read: drop it before close(2) returns. */
	if (bfs_file_access(FS(req), FH(fi), true))
		fuse_lowlevel_notify_inval_inode(ctx(req)->se, ino, -1, 0);
	fuse_reply_err(req, -bfs_close_flush(FS(req), bfs_file_inode(FH(fi)),
					     bfs_file_writer(FH(fi))));
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)ino;
	bfs_release_file(FS(req), FH(fi));
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct bfs_inode *ip;
	int ret;

	(void)datasync;
	if (fi && fi->fh) {
		ret = bfs_fsync(FS(req), bfs_file_inode(FH(fi)), true);
	} else {
		ret = bfs_iget(FS(req), ino, &ip);
		if (!ret) {
			ret = bfs_fsync(FS(req), ip, true);
			bfs_iput(FS(req), ip);
		}
	}
	fuse_reply_err(req, -ret);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct bfs_dir *d = calloc(1, sizeof(*d));

	(void)ino;
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		free(d);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct bfs_dir *d = (struct bfs_dir *)(uintptr_t)fi->fh;
	struct bfs *fs = FS(req);
	struct bfs_inode *dp;
	char *buf, *p;
	size_t rem = size;
	int ret = bfs_iget(fs, ino, &dp);

	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	if (off == 0 || !d->loaded)
		ret = bfs_dir_load(fs, dp, d);
	if (!ret && off == 0)
		bfs_access(fs, dp);
	buf = p = malloc(size);
	if (!ret && !buf)
		ret = -ENOMEM;
	if (ret) {
		bfs_iput(fs, dp);
		free(buf);
		fuse_reply_err(req, -ret);
		return;
	}
	for (size_t i = (size_t)off; i < d->n + 2; i++) {
		const char *name;
		struct fuse_entry_param e = {0};
		struct bfs_inode *ip = NULL;
		size_t n;

		if (i < 2) {
			name = i == 0 ? "." : "..";
			e.attr.st_ino = ino;
			e.attr.st_mode = S_IFDIR;
		} else {
			const struct bfs_dirent *de = &d->ents[i - 2];
			name = de->name;
			e.attr.st_ino = de->ino;
			e.attr.st_mode = (mode_t)de->dtype << 12;
			if (plus) {
				if (bfs_iget(fs, de->ino, &ip))
					continue; /* gone since the listing */
				fill_entry(req, ip, &e);
			}
		}
		if (plus)
			n = fuse_add_direntry_plus(req, p, rem, name, &e,
						   (off_t)i + 1);
		else
			n = fuse_add_direntry(req, p, rem, name, &e.attr,
					      (off_t)i + 1);
		if (n > rem) {
			bfs_iput(fs, ip);
			break;
		}
		if (ip) {
			bfs_ref_lookup(fs, ip);
			bfs_iput(fs, ip);
		}
		p += n;
		rem -= n;
	}
	bfs_iput(fs, dp);
	fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct bfs_dir *d = (struct bfs_dir *)(uintptr_t)fi->fh;

	(void)ino;
	bfs_dir_free(d);
	free(d);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	/* Directory changes are committed as they happen: make them durable. */
	fuse_reply_err(req, -bfs_fsync_meta(FS(req)));
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int ret = bfs_statfs(FS(req), &st);

	(void)ino;
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_statfs(req, &st);
}

static bool is_acl_name(const char *name)
{
	return !strcmp(name, BFS_ACL_ACCESS) || !strcmp(name, BFS_ACL_DEFAULT);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct bfs_cred cr = {0};
	struct bfs_inode *ip;
	bool access_acl = !strcmp(name, BFS_ACL_ACCESS);
	int ret = bfs_iget(FS(req), ino, &ip);

	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* Without FUSE_CAP_POSIX_ACL nothing would enforce an ACL: refused,
	 * so that cp -a and tar fall back to chmod. */
	if (is_acl_name(name) && !ctx(req)->acl) {
		ret = -EOPNOTSUPP;
	} else {
		/* only an access ACL looks at the caller (set-group-ID) */
		if (access_acl)
			caller_cred(req, &cr);
		ret = bfs_setxattr(FS(req), ip, name, value, size, flags,
				   access_acl ? &cr : NULL);
	}
	bfs_iput(FS(req), ip);
	fuse_reply_err(req, -ret);
}

/* getxattr and listxattr: size 0 asks for the length, else the bytes.
 * @name NULL means list, of what the caller may see. */
static void xattr_query(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct bfs_inode *ip;
	struct bfs_cred cr = {0};
	char *buf = size ? malloc(size) : NULL;
	int64_t n;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (name && is_acl_name(name) && !ctx(req)->acl) {
		free(buf);
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	n = bfs_iget(FS(req), ino, &ip);
	if (!n && name) {
		n = bfs_getxattr(FS(req), ip, name, buf, size);
		bfs_iput(FS(req), ip);
	} else if (!n) {
		/* The caller's capabilities cost a read of /proc: looked
		 * at only when it matters. */
		bool hidden;
		n = bfs_listxattr(FS(req), ip, buf, size, &cr, &hidden);
		if (hidden) {
			caller_cred(req, &cr);
			n = bfs_listxattr(FS(req), ip, buf, size, &cr, NULL);
		}
		bfs_iput(FS(req), ip);
	}
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	xattr_query(req, ino, name, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	xattr_query(req, ino, NULL, size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct bfs_inode *ip;
	int ret = bfs_iget(FS(req), ino, &ip);

	if (!ret) {
		ret = is_acl_name(name) && !ctx(req)->acl
			  ? -EOPNOTSUPP
			  : bfs_removexattr(FS(req), ip, name);
		bfs_iput(FS(req), ip);
	}
	fuse_reply_err(req, -ret);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			 off_t length, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req,
		       -bfs_fallocate(FS(req), bfs_file_inode(FH(fi)), mode,
				      (uint64_t)offset, (uint64_t)length));
}

/* Workers of op_lseek that may wait at once in launder(), of the 16
 * (bfs_fuse_run): each waits on WRITE requests that others serve. */
#define LAUNDER_MAX 4

/* With the writeback cache, the kernel may hold pages of @ino written
 * but not yet sent to us, and it does not write them back before
 * FUSE_LSEEK (fs/fuse/file.c fuse_lseek, kernel 6.18): SEEK_DATA would
 * call them a hole, and cp --sparse would copy zeros. Invalidating
 * [off, end of file) in the kernel's cache writes such pages back first
 * (invalidate_inode_pages2_range launders dirty folios through
 * fuse_launder_folio, which waits for their WRITE), so the core sees
 * them; the seek's answer depends on nothing before @off. Past
 * LAUNDER_MAX callers at once, or on a read-only mount (no writeback
 * cache), nothing is done. */
static void launder(fuse_req_t req, fuse_ino_t ino, off_t off)
{
	struct bfs_fuse *bf = ctx(req);

	if (bf->read_only || !bf->se)
		return;
	if (__atomic_add_fetch(&bf->launders, 1, __ATOMIC_RELAXED) <=
	    LAUNDER_MAX) {
		int r = fuse_lowlevel_notify_inval_inode(bf->se, ino, off, 0);
		if (r && r != -ENOENT)
			blk_log_warn("inode %llu: cannot have the kernel "
				     "write back its cached pages before a "
				     "seek: %s",
				     (unsigned long long)ino, strerror(-r));
	}
	__atomic_sub_fetch(&bf->launders, 1, __ATOMIC_RELAXED);
}

/* SEEK_DATA and SEEK_HOLE; the kernel answers SEEK_SET, SEEK_CUR and
 * SEEK_END itself. */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	if (off >= 0)
		launder(req, ino, off);
	int64_t r = off < 0
			? -ENXIO
			: bfs_seek_data_hole(FS(req), bfs_file_inode(FH(fi)),
					     (uint64_t)off, whence);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_lseek(req, (off_t)r);
}

/* BFS_IOC_SYNC (fs/fuse.h): what syncfs(2) would do if this libfuse
 * passed it on; BFS_IOC_COMMIT: a commit now. Any other command is not
 * ours. */
static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
		     void *arg, struct fuse_file_info *fi, unsigned flags,
		     const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	(void)ino;
	(void)arg;
	(void)fi;
	(void)in_buf;
	(void)in_bufsz;
	if ((cmd != BFS_IOC_SYNC && cmd != BFS_IOC_COMMIT) ||
	    (flags & FUSE_IOCTL_UNRESTRICTED)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	struct bfs_commit_info info = {0};
	int ret;
	if (cmd == BFS_IOC_COMMIT)
		ret = out_bufsz < sizeof(info)
			  ? -EINVAL
			  : bfs_commit_request(FS(req), &info);
	else /* read-only: nothing was written that could wait */
		ret = ctx(req)->read_only ? 0 : bfs_sync_all(FS(req));
	if (ret)
		fuse_reply_err(req, -ret);
	else if (cmd == BFS_IOC_COMMIT)
		fuse_reply_ioctl(req, 0, &info, sizeof(info));
	else
		fuse_reply_ioctl(req, 0, NULL, 0);
}

/* The kernel offers FUSE mounts its default read-ahead (128 KiB) and a
 * daemon may only lower it; sequential reads want ~1 MiB. Set the mount's
 * bdi read_ahead_kb (root only). The device number comes from mountinfo:
 * stat(2) on our own mountpoint would wait for this very daemon. */
static void set_read_ahead(const char *mnt, unsigned kb)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192], path[128];
	unsigned maj = 0, min = 0;
	bool found = false;

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char mp[4096];
		unsigned a, b;
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, mp) == 3 &&
		    !strcmp(mp, mnt) && strstr(line, " fuse.blockfs ")) {
			maj = a;
			min = b;
			found = true; /* the last match is the newest mount */
		}
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj,
		 min);
	f = fopen(path, "w");
	if (!f || fprintf(f, "%u\n", kb) < 0)
		blk_log_warn("cannot set read-ahead to %u KiB (%s): %s", kb,
			     path, strerror(errno));
	if (f)
		fclose(f);
}

static const struct fuse_lowlevel_ops bfs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .fallocate = op_fallocate,
    .ioctl = op_ioctl,
    .lseek = op_lseek,
};

int bfs_fuse_run(struct bfs *fs, const struct bfs_mount_opts *opts,
		 bfs_ready_fn ready, void *arg, char *err, size_t errlen)
{
	struct bfs_fuse bf = {
	    .fs = fs,
	    .timeout = opts->timeout > 0 ? opts->timeout : 1.0,
	    .read_only = opts->read_only,
	    .no_acl = opts->no_acl,
	};
	char o[4096];
	int ret = -EIO;

	snprintf(o, sizeof(o),
		 "fsname=%s,subtype=blockfs,default_permissions%s%s%s%s",
		 opts->fsname, opts->read_only ? ",ro" : "",
		 opts->allow_other ? ",allow_other" : "",
		 opts->extra && *opts->extra ? "," : "",
		 opts->extra ? opts->extra : "");
	char *argv[] = {"blockfs", "-o", o, opts->debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(opts->debug ? 4 : 3, argv);

	/* No destroy callback: the caller flushes and syncs once the
	 * session is over (bfs_sync_all, bfs_close), within its own bound. */
	struct fuse_session *se =
	    fuse_session_new(&args, &bfs_ops, sizeof(bfs_ops), &bf);
	if (!se) {
		snprintf(err, errlen,
			 "cannot set up the FUSE session "
			 "(bad mount options?)");
		return -EINVAL;
	}
	bf.se = se;
	if (fuse_set_signal_handlers(se)) {
		snprintf(err, errlen, "cannot install signal handlers");
		goto out_destroy;
	}
	if (fuse_session_mount(se, opts->mountpoint)) {
		snprintf(err, errlen,
			 "cannot mount on %s (is /dev/fuse usable and "
			 "fusermount3 installed?)",
			 opts->mountpoint);
		goto out_signals;
	}
	if (opts->read_ahead_kb)
		set_read_ahead(opts->mountpoint, opts->read_ahead_kb);
	if (ready)
		ready(arg);
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	if (!lc) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out_unmount;
	}
	/* Keep the workers: libfuse retires idle ones beyond the idle
	 * limit, and each new worker faults in a fresh stack and a fresh
	 * 1 MiB request buffer, so a low limit makes a long copy create
	 * and fault in threads over and over. */
	fuse_loop_cfg_set_max_threads(lc, 16);
	fuse_loop_cfg_set_idle_threads(lc, 16);
	/* The stop signals reach this thread only (see bfs_fuse_run): the
	 * handler's EINTR ends the loop's wait. libfuse's workers block
	 * them; a signal that came early is taken here, at once. */
	sigset_t stop, mask;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &stop, &mask);
	ret = fuse_session_loop_mt(se, lc);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	fuse_loop_cfg_destroy(lc);
	if (ret > 0)
		ret = 0; /* ended by a signal: a clean shutdown */
	else if (ret < 0)
		snprintf(err, errlen, "the FUSE session failed: %s",
			 strerror(-ret));
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	return ret;
}
