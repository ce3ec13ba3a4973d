/* The namespace: directory entries and the operations that change them
 * (create, link, unlink, rename), inode numbers, directory listings. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blocks/base/log.h"

static int dir_lookup(struct bfs *fs, uint64_t parent, const char *name,
		      uint64_t *ino, uint8_t *dtype)
{
	uint8_t key[8 + BFS_NAME_MAX], val[BFS_DIRENT_VAL_LEN + 1];
	size_t nlen = strlen(name);

	if (nlen > BFS_NAME_MAX)
		return -ENAMETOOLONG;
	int64_t r = blk_db_get_into(fs->db, BFS_CF_DIRENTS, key,
				    bfs_dirent_key(key, parent, name, nlen),
				    val, sizeof(val));
	if (r < 0)
		return (int)r;
	return bfs_dirent_decode(val, (size_t)r, ino, dtype);
}

/* The parents record of @ino's entry @parent/@name: put, or deleted. */
static void txn_parent(struct blk_txn *t, uint64_t ino, uint64_t parent,
		       const char *name, bool put)
{
	uint8_t key[BFS_PARENT_KEY_MAX];
	size_t klen = bfs_parent_key(key, ino, parent, name, strlen(name));

	if (put)
		blk_txn_put(t, BFS_CF_PARENTS, key, klen, "", 0);
	else
		blk_txn_delete(t, BFS_CF_PARENTS, key, klen);
}

/* Put the entry @parent/@name -> @ip, and its parents record. An entry
 * it replaces is the caller's to unparent (txn_parent). */
static void txn_put_dirent(struct blk_txn *t, uint64_t parent, const char *name,
			   struct bfs_inode *ip)
{
	uint8_t key[8 + BFS_NAME_MAX], val[BFS_DIRENT_VAL_LEN];

	bfs_dirent_encode(val, ip->ino, bfs_mode_dtype(ip->rec.mode));
	blk_txn_put(t, BFS_CF_DIRENTS, key,
		    bfs_dirent_key(key, parent, name, strlen(name)), val,
		    sizeof(val));
	txn_parent(t, ip->ino, parent, name, true);
}

/* Delete the entry @parent/@name, which names @ino, and its parents
 * record. */
static void txn_del_dirent(struct blk_txn *t, uint64_t parent, const char *name,
			   uint64_t ino)
{
	uint8_t key[8 + BFS_NAME_MAX];

	blk_txn_delete(t, BFS_CF_DIRENTS, key,
		       bfs_dirent_key(key, parent, name, strlen(name)));
	txn_parent(t, ino, parent, name, false);
}

int bfs_lookup(struct bfs *fs, uint64_t parent, const char *name,
	       struct bfs_inode **out)
{
	uint64_t ino;
	uint8_t dtype;
	int ret = dir_lookup(fs, parent, name, &ino, &dtype);
	if (ret)
		return ret;
	return bfs_iget(fs, ino, out);
}

static int alloc_ino(struct bfs *fs, uint64_t *ino)
{
	if (fs->next_ino >= fs->ino_reserved) {
		uint8_t v[8];
		blk_put_le64(v, fs->ino_reserved + INO_RESERVE);
		/* Reserve durably on its own so a crash never reuses numbers.
		 */
		int ret = blk_db_put(fs->db, BFS_CF_META, "next_ino", 8, v, 8);
		if (ret)
			return ret;
		fs->ino_reserved += INO_RESERVE;
	}
	*ino = fs->next_ino++;
	return 0;
}

static int get_dir(struct bfs *fs, uint64_t ino, struct bfs_inode **out)
{
	int ret = bfs_iget(fs, ino, out);
	if (ret)
		return ret;
	if (!S_ISDIR((*out)->rec.mode)) {
		bfs_iput(fs, *out);
		return -ENOTDIR;
	}
	if ((*out)->rec.nlink == 0) {
		bfs_iput(fs, *out);
		return -ENOENT;
	}
	return 0;
}

static void touch_dir(struct bfs_inode *dp, const struct timespec *ts)
{
	dp->rec.mtime = *ts;
	dp->rec.ctime = *ts;
}

/* 0 if @parent has no entry @name, -EEXIST if it has, or the error. */
static int name_free(struct bfs *fs, uint64_t parent, const char *name)
{
	uint64_t ino;
	uint8_t dtype;
	int ret = dir_lookup(fs, parent, name, &ino, &dtype);

	return ret == -ENOENT ? 0 : ret ? ret : -EEXIST;
}

/* The prologue of a namespace operation once its checks passed (ns_lock
 * held): a new transaction in *t and the operation's time in *ts. */
static int ns_txn(struct bfs *fs, struct blk_txn **t, struct timespec *ts)
{
	*t = blk_txn_new(fs->store);
	if (!*t)
		return -ENOMEM;
	bfs_now(ts);
	return 0;
}

/* Fill the record of @ip, new in directory @dp (dp->lock held): a
 * set-group-ID directory gives its group, and its set-group-ID bit to
 * new directories. 0 or -ENOMEM. */
static int init_inode(struct bfs_inode *ip, const struct bfs_inode *dp,
		      mode_t mode, dev_t rdev, uid_t uid, gid_t gid,
		      const char *target, const struct timespec *ts)
{
	if (dp->rec.mode & S_ISGID) {
		gid = dp->rec.gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	ip->rec = (struct bfs_inode_rec){
	    .mode = mode,
	    .uid = uid,
	    .gid = gid,
	    .nlink = S_ISDIR(mode) ? 2 : 1,
	    .rdev = rdev,
	    .atime = *ts,
	    .mtime = *ts,
	    .ctime = *ts,
	    .btime = *ts,
	};
	if (target) {
		ip->target = strdup(target);
		ip->rec.size = strlen(target);
		if (!ip->target)
			return -ENOMEM;
	}
	return 0;
}

int bfs_mknod(struct bfs *fs, uint64_t parent, const char *name, mode_t mode,
	      mode_t umask, dev_t rdev, uid_t uid, gid_t gid,
	      const char *target, struct bfs_inode **out)
{
	struct bfs_inode *dp = NULL, *ip = NULL;
	struct blk_txn *t = NULL;
	struct timespec ts;
	uint64_t ino;
	int ret;

	if (fs->cfg.read_only)
		return -EROFS;
	if (strlen(name) > BFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (target && strlen(target) > BFS_SYMLINK_MAX)
		return -ENAMETOOLONG;

	pthread_mutex_lock(&fs->ns_lock);
	ret = get_dir(fs, parent, &dp);
	if (!ret)
		ret = name_free(fs, parent, name);
	if (!ret)
		ret = ns_txn(fs, &t, &ts);
	if (!ret)
		ret = alloc_ino(fs, &ino);
	if (!ret && !(ip = bfs_inode_alloc(ino)))
		ret = -ENOMEM;
	if (ret)
		goto out;
	pthread_mutex_lock(&dp->lock);
	/* The inherited ACLs go in the transaction that creates the inode. */
	ret = bfs_acl_inherit(fs, dp, ino, &mode, umask, t);
	if (!ret)
		ret = init_inode(ip, dp, mode, rdev, uid, gid, target, &ts);
	if (ret) {
		pthread_mutex_unlock(&dp->lock);
		goto out;
	}
	bfs_txn_put_inode(fs, t, ip);
	txn_put_dirent(t, parent, name, ip);
	touch_dir(dp, &ts);
	if (S_ISDIR(ip->rec.mode))
		dp->rec.nlink++;
	bfs_txn_put_inode(fs, t, dp);
	ret = bfs_txn_commit_counted(fs, t, 1);
	t = NULL;
	if (ret && S_ISDIR(ip->rec.mode))
		dp->rec.nlink--;
	pthread_mutex_unlock(&dp->lock);
	if (!ret) {
		*out = bfs_itab_insert(fs, ip);
		ip = NULL;
	}
out:
	pthread_mutex_unlock(&fs->ns_lock);
	blk_txn_free(t);
	if (ip)
		bfs_inode_free(ip);
	bfs_iput(fs, dp);
	return ret;
}

/* May @ip take one more name? 0, -EPERM (a directory), -ENOENT
 * (unlinked) or -EMLINK. */
static int can_link(const struct bfs_inode *ip)
{
	if (S_ISDIR(ip->rec.mode))
		return -EPERM;
	if (ip->rec.nlink == 0)
		return -ENOENT;
	if (ip->rec.nlink >= UINT32_MAX - 1)
		return -EMLINK;
	return 0;
}

int bfs_link(struct bfs *fs, uint64_t ino, uint64_t parent, const char *name,
	     struct bfs_inode **out)
{
	struct bfs_inode *dp = NULL, *ip = NULL;
	struct blk_txn *t;
	struct timespec ts;
	int ret;

	if (fs->cfg.read_only)
		return -EROFS;
	if (strlen(name) > BFS_NAME_MAX)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&fs->ns_lock);
	ret = get_dir(fs, parent, &dp);
	if (!ret)
		ret = bfs_iget(fs, ino, &ip);
	if (!ret)
		ret = can_link(ip);
	if (!ret)
		ret = name_free(fs, parent, name);
	if (!ret)
		ret = ns_txn(fs, &t, &ts);
	if (ret)
		goto out;
	txn_put_dirent(t, parent, name, ip);
	pthread_mutex_lock(&dp->lock);
	touch_dir(dp, &ts);
	bfs_txn_put_inode(fs, t, dp);
	pthread_mutex_lock(&ip->lock);
	ip->rec.nlink++;
	ip->rec.ctime = ts;
	bfs_txn_put_inode(fs, t, ip);
	ret = bfs_txn_commit(t, false);
	if (ret)
		ip->rec.nlink--;
	pthread_mutex_unlock(&ip->lock);
	pthread_mutex_unlock(&dp->lock);
	if (!ret) {
		*out = ip;
		ip = NULL;
	}
out:
	pthread_mutex_unlock(&fs->ns_lock);
	bfs_iput(fs, ip);
	bfs_iput(fs, dp);
	return ret;
}

static int dir_is_empty(struct bfs *fs, uint64_t ino)
{
	uint8_t prefix[8];

	bfs_ino_key(prefix, ino);
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_DIRENTS, prefix, 8, NULL, 0);
	if (!it)
		return -ENOMEM;
	int ret = blk_iter_valid(it) ? -ENOTEMPTY : blk_iter_status(it);
	blk_iter_free(it);
	return ret;
}

/* May @ip lose a name by rmdir (@dir) or unlink (!@dir)? 0, -ENOTDIR,
 * -EISDIR or -ENOTEMPTY. */
static int can_remove(struct bfs *fs, struct bfs_inode *ip, bool dir)
{
	if (dir && !S_ISDIR(ip->rec.mode))
		return -ENOTDIR;
	if (!dir && S_ISDIR(ip->rec.mode))
		return -EISDIR;
	return dir ? dir_is_empty(fs, ip->ino) : 0;
}

/* Drop one name of @ip in @t (the caller holds ns_lock and ip->lock). */
static void txn_drop_link(struct bfs *fs, struct blk_txn *t,
			  struct bfs_inode *ip, const struct timespec *ts)
{
	if (S_ISDIR(ip->rec.mode))
		ip->rec.nlink = 0;
	else if (ip->rec.nlink)
		ip->rec.nlink--;
	ip->rec.ctime = *ts;
	bfs_txn_put_inode(fs, t, ip);
	if (ip->rec.nlink == 0) {
		char key[32];
		bfs_orphan_key(key, ip->ino);
		blk_txn_put(t, BFS_CF_META, key, strlen(key), "", 0);
	}
}

int bfs_unlink(struct bfs *fs, uint64_t parent, const char *name, bool dir)
{
	struct bfs_inode *dp = NULL, *ip = NULL;
	struct blk_txn *t;
	struct timespec ts;
	uint64_t ino;
	uint8_t dtype;
	int ret;

	if (fs->cfg.read_only)
		return -EROFS;
	pthread_mutex_lock(&fs->ns_lock);
	ret = get_dir(fs, parent, &dp);
	if (!ret)
		ret = dir_lookup(fs, parent, name, &ino, &dtype);
	if (!ret)
		ret = bfs_iget(fs, ino, &ip);
	if (ret)
		goto out;
	if ((ret = can_remove(fs, ip, dir)) || (ret = ns_txn(fs, &t, &ts)))
		goto out;
	txn_del_dirent(t, parent, name, ip->ino);
	pthread_mutex_lock(&dp->lock);
	touch_dir(dp, &ts);
	if (dir)
		dp->rec.nlink--;
	bfs_txn_put_inode(fs, t, dp);
	pthread_mutex_lock(&ip->lock);
	struct bfs_inode_rec saved = ip->rec;
	txn_drop_link(fs, t, ip, &ts);
	ret = bfs_txn_commit(t, false);
	if (ret) {
		ip->rec = saved;
		if (dir)
			dp->rec.nlink++;
	}
	pthread_mutex_unlock(&ip->lock);
	pthread_mutex_unlock(&dp->lock);
out:
	pthread_mutex_unlock(&fs->ns_lock);
	bfs_iput(fs, ip);
	bfs_iput(fs, dp);
	return ret;
}

/* The inodes of a rename: source and destination directories, the source
 * and the inode the destination name points at (NULL: none). */
struct rename_set {
	struct bfs_inode *sdp, *ddp, *sip, *dip;
	struct bfs_inode *locked[4]; /* distinct ones, locked */
	struct bfs_inode_rec saved[4];
};

static int rename_check(const char *newname, unsigned flags)
{
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	if (strlen(newname) > BFS_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* Look up the inodes of a rename (ns_lock held) and check @flags against
 * them. 0, 1 when both names already point at the same inode (nothing to
 * do), or -errno. */
static int rename_get(struct bfs *fs, struct rename_set *rs, uint64_t parent,
		      const char *name, uint64_t newparent, const char *newname,
		      unsigned flags)
{
	uint64_t sino, dino = 0;
	uint8_t dtype;
	int ret = get_dir(fs, parent, &rs->sdp);

	if (!ret)
		ret = get_dir(fs, newparent, &rs->ddp);
	if (!ret)
		ret = dir_lookup(fs, parent, name, &sino, &dtype);
	if (!ret)
		ret = bfs_iget(fs, sino, &rs->sip);
	if (ret)
		return ret;
	ret = dir_lookup(fs, newparent, newname, &dino, &dtype);
	if (ret == -ENOENT) {
		dino = 0;
		ret = 0;
	}
	if (ret)
		return ret;
	if (dino && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (!dino && (flags & RENAME_EXCHANGE))
		return -ENOENT;
	if (dino == sino)
		return 1;
	if (dino && (ret = bfs_iget(fs, dino, &rs->dip)))
		return ret;
	/* Replacing a name removes what it named: same rules as unlink. */
	if (rs->dip && !(flags & RENAME_EXCHANGE))
		return can_remove(fs, rs->dip, S_ISDIR(rs->sip->rec.mode));
	return 0;
}

/* Lock every inode of @rs (distinct ones once, ns_lock held) and save
 * their records, so that the records written match memory and a failed
 * commit can restore them. */
static void rename_lock(struct rename_set *rs)
{
	struct bfs_inode *all[4] = {rs->sdp, rs->ddp, rs->sip, rs->dip};

	for (int i = 0; i < 4; i++) {
		bool dup = !all[i];
		for (int j = 0; j < i && !dup; j++)
			dup = all[j] == all[i];
		rs->locked[i] = dup ? NULL : all[i];
		if (dup)
			continue;
		pthread_mutex_lock(&all[i]->lock);
		rs->saved[i] = all[i]->rec;
	}
}

/* Unlock @rs in reverse order, restoring the records after a failure. */
static void rename_unlock(struct rename_set *rs, int ret)
{
	for (int i = 3; i >= 0; i--) {
		if (!rs->locked[i])
			continue;
		if (ret)
			rs->locked[i]->rec = rs->saved[i];
		pthread_mutex_unlock(&rs->locked[i]->lock);
	}
}

/* The changes of a rename in @t, its inodes locked. */
static void rename_txn(struct bfs *fs, struct blk_txn *t, struct rename_set *rs,
		       uint64_t parent, const char *name, uint64_t newparent,
		       const char *newname, unsigned flags,
		       const struct timespec *ts)
{
	struct bfs_inode *sdp = rs->sdp, *ddp = rs->ddp, *sip = rs->sip,
			 *dip = rs->dip;
	bool sdir = S_ISDIR(sip->rec.mode);
	bool ddir = dip && S_ISDIR(dip->rec.mode);

	if (flags & RENAME_EXCHANGE) {
		txn_parent(t, sip->ino, parent, name, false);
		txn_parent(t, dip->ino, newparent, newname, false);
		txn_put_dirent(t, parent, name, dip);
		txn_put_dirent(t, newparent, newname, sip);
		if (sdp != ddp && sdir != ddir) {
			struct bfs_inode *from = sdir ? sdp : ddp;
			struct bfs_inode *to = sdir ? ddp : sdp;
			from->rec.nlink--;
			to->rec.nlink++;
		}
		dip->rec.ctime = *ts;
		bfs_txn_put_inode(fs, t, dip);
	} else {
		txn_del_dirent(t, parent, name, sip->ino);
		if (dip)
			txn_parent(t, dip->ino, newparent, newname, false);
		txn_put_dirent(t, newparent, newname, sip);
		if (dip) {
			if (ddir)
				ddp->rec.nlink--;
			txn_drop_link(fs, t, dip, ts);
		}
		if (sdir && sdp != ddp) {
			sdp->rec.nlink--;
			ddp->rec.nlink++;
		}
	}
	sip->rec.ctime = *ts;
	bfs_txn_put_inode(fs, t, sip);
	touch_dir(sdp, ts);
	bfs_txn_put_inode(fs, t, sdp);
	if (ddp != sdp) {
		touch_dir(ddp, ts);
		bfs_txn_put_inode(fs, t, ddp);
	}
}

/* Flush regular file @ino and order its blocks before every later
 * commit (blk_store_settle). 0 or -errno. */
static int settle_file(struct bfs *fs, uint64_t ino)
{
	struct bfs_inode *ip;
	int ret = bfs_iget(fs, ino, &ip);

	if (ret)
		return ret == -ENOENT ? 0 : ret;
	ret = bfs_flush_inode(fs, ip, true, NULL);
	bfs_iput(fs, ip);
	return ret ? ret : blk_store_settle(fs->store);
}

/* Before a rename that replaces a regular file (ext4's auto_da_alloc):
 * the data of the file that takes the name (both, for an exchange) is
 * flushed and ordered before the rename's commit, so that after a crash
 * the name holds the old content or the new one, whole — not a new file
 * whose blocks did not survive. A rename to a free name (rsync's and
 * tar's temporary files) pays nothing. No lock held: what changes
 * meanwhile is rename_get's to find. 0 or -errno (of the flush: the
 * rename then does not happen). */
static int rename_settle(struct bfs *fs, uint64_t parent, const char *name,
			 uint64_t newparent, const char *newname,
			 unsigned flags)
{
	const uint8_t reg = bfs_mode_dtype(S_IFREG);
	uint64_t sino, dino;
	uint8_t stype, dtype;
	int ret;

	if (dir_lookup(fs, newparent, newname, &dino, &dtype) ||
	    dir_lookup(fs, parent, name, &sino, &stype) || sino == dino)
		return 0; /* nothing replaced, or rename_get's error */
	if (stype == reg && (ret = settle_file(fs, sino)))
		return ret;
	if ((flags & RENAME_EXCHANGE) && dtype == reg)
		return settle_file(fs, dino);
	return 0;
}

int bfs_rename(struct bfs *fs, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, unsigned flags)
{
	struct rename_set rs = {0};
	struct blk_txn *t;
	struct timespec ts;
	int ret;

	if (fs->cfg.read_only)
		return -EROFS;
	if ((ret = rename_check(newname, flags)))
		return ret;
	if ((ret = rename_settle(fs, parent, name, newparent, newname, flags)))
		return ret;

	pthread_mutex_lock(&fs->ns_lock);
	ret = rename_get(fs, &rs, parent, name, newparent, newname, flags);
	if (ret > 0)
		ret = 0; /* the same file under both names: nothing to do */
	else if (!ret && !(ret = ns_txn(fs, &t, &ts))) {
		rename_lock(&rs);
		rename_txn(fs, t, &rs, parent, name, newparent, newname, flags,
			   &ts);
		ret = bfs_txn_commit(t, false);
		rename_unlock(&rs, ret);
	}
	pthread_mutex_unlock(&fs->ns_lock);
	bfs_iput(fs, rs.dip);
	bfs_iput(fs, rs.sip);
	bfs_iput(fs, rs.ddp);
	bfs_iput(fs, rs.sdp);
	return ret;
}

int bfs_readlink(struct bfs *fs, struct bfs_inode *ip, char *buf, size_t size)
{
	(void)fs;
	if (!S_ISLNK(ip->rec.mode) || !ip->target)
		return -EINVAL;
	snprintf(buf, size, "%s", ip->target);
	return 0;
}

/* ---- directories ------------------------------------------------------- */

void bfs_dir_free(struct bfs_dir *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	free(d->ents);
	d->ents = NULL;
	d->n = 0;
	d->loaded = false;
}

struct dir_load {
	struct bfs_dir *d;
	size_t cap;
};

/* One record of bfs_dir_load's walk. */
static int dir_load_one(void *arg, const uint8_t *k, size_t klen,
			const uint8_t *v, size_t vlen)
{
	struct dir_load *l = arg;
	struct bfs_dir *d = l->d;
	struct bfs_dirent e;

	if (bfs_dirent_decode(v, vlen, &e.ino, &e.dtype))
		return 0; /* fsck's business; skip the bad entry */
	e.name = strndup((const char *)k + 8, klen - 8);
	if (!e.name)
		return -ENOMEM;
	if (d->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct bfs_dirent *ne = realloc(d->ents, cap * sizeof(*ne));
		if (!ne) {
			free(e.name);
			return -ENOMEM;
		}
		d->ents = ne;
		l->cap = cap;
	}
	d->ents[d->n++] = e;
	return 0;
}

int bfs_dir_load(struct bfs *fs, struct bfs_inode *dp, struct bfs_dir *d)
{
	uint8_t prefix[8];
	struct dir_load l = {d, 0};
	const struct blk_walk w = {
	    .prefix = prefix,
	    .plen = 8,
	    .klen_min = 9, /* a name */
	    .fn = dir_load_one,
	    .arg = &l,
	};

	bfs_dir_free(d);
	bfs_ino_key(prefix, dp->ino);
	int ret = blk_db_walk(fs->db, BFS_CF_DIRENTS, &w);
	if (ret)
		bfs_dir_free(d);
	else
		d->loaded = true;
	return ret;
}
