/* The inode table: in-memory inodes, their records, references and
 * eviction, and the deferred attribute changes written in batches. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/clock.h"
#include "blocks/base/log.h"

void bfs_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* ---- records ---------------------------------------------------------- */

void bfs_txn_mark_changed(struct bfs *fs, struct blk_txn *t, uint64_t ino)
{
	uint8_t key[8], val[8];

	blk_put_be64(key, atomic_fetch_add(&fs->change_seq, 1));
	blk_put_le64(val, ino);
	blk_txn_put(t, BFS_CF_CHANGES, key, 8, val, 8);
}

/* Put @ip's whole record in @t (the caller holds ip->lock): any deferred
 * attribute change goes with it. Every change of an inode's records
 * (extents, xattrs, entries of a directory) rewrites its record (times),
 * so this is where a change is marked for the next commit. */
void bfs_txn_put_inode_quiet(struct blk_txn *t, struct bfs_inode *ip)
{
	uint8_t key[8], val[BFS_INODE_REC_LEN + BFS_SYMLINK_MAX];
	size_t tlen = ip->target ? strlen(ip->target) : 0;

	ip->attr_dirty = false;
	ip->attr_commit = false;
	bfs_ino_key(key, ip->ino);
	blk_txn_put(t, BFS_CF_INODES, key, 8, val,
		    bfs_inode_encode(&ip->rec, ip->target, tlen, val));
}

void bfs_txn_put_inode(struct bfs *fs, struct blk_txn *t, struct bfs_inode *ip)
{
	bfs_txn_put_inode_quiet(t, ip);
	bfs_txn_mark_changed(fs, t, ip->ino);
}

void bfs_orphan_key(char *key, uint64_t ino)
{
	snprintf(key, 32, "orphan:%016llx", (unsigned long long)ino);
}

static int load_inode(struct bfs *fs, uint64_t ino, struct bfs_inode *ip)
{
	uint8_t key[8];
	void *val;
	size_t vlen;
	const char *target;
	size_t tlen;

	bfs_ino_key(key, ino);
	int ret = blk_db_get(fs->db, BFS_CF_INODES, key, 8, &val, &vlen);
	if (ret)
		return ret;
	ret = bfs_inode_decode(val, vlen, &ip->rec, &target, &tlen);
	if (!ret && S_ISLNK(ip->rec.mode)) {
		ip->target = strndup(target, tlen);
		if (!ip->target)
			ret = -ENOMEM;
	}
	free(val);
	if (ret == -EUCLEAN)
		blk_log_err("inode %llu: undecodable record",
			    (unsigned long long)ino);
	return ret;
}

int bfs_txn_commit(struct blk_txn *t, bool sync)
{
	int ret = blk_txn_commit(t, sync);
	blk_txn_free(t);
	if (ret)
		blk_log_err("metadata commit failed: %s", strerror(-ret));
	return ret;
}

int bfs_txn_commit_counted(struct bfs *fs, struct blk_txn *t, int delta)
{
	uint8_t v[8];

	pthread_mutex_lock(&fs->count_lock);
	uint64_t n = fs->n_inodes + (uint64_t)(int64_t)delta;
	blk_put_le64(v, n);
	blk_txn_put(t, BFS_CF_META, BFS_META_INODES, strlen(BFS_META_INODES), v,
		    8);
	int ret = bfs_txn_commit(t, false);
	if (!ret)
		fs->n_inodes = n;
	pthread_mutex_unlock(&fs->count_lock);
	return ret;
}

/* ---- inode table ------------------------------------------------------ */

static struct bfs_inode **bucket(struct bfs *fs, uint64_t ino)
{
	return &fs->itab[(ino * 0x9e3779b97f4a7c15ull) >> 50];
}

struct bfs_inode *bfs_inode_alloc(uint64_t ino)
{
	struct bfs_inode *ip = calloc(1, sizeof(*ip));
	if (!ip)
		return NULL;
	ip->ino = ino;
	pthread_rwlock_init(&ip->ext_lock, NULL);
	pthread_mutex_init(&ip->lock, NULL);
	blk_cond_init(&ip->cond);
	return ip;
}

void bfs_inode_free(struct bfs_inode *ip)
{
	wbuf_clear(&ip->dirty);
	wbuf_clear(&ip->flushing);
	free(ip->resv);
	free(ip->target);
	pthread_rwlock_destroy(&ip->ext_lock);
	pthread_mutex_destroy(&ip->lock);
	pthread_cond_destroy(&ip->cond);
	free(ip);
}

/* Insert a new in-memory inode (refs 1), or return the one already there. */
struct bfs_inode *bfs_itab_insert(struct bfs *fs, struct bfs_inode *ip)
{
	pthread_mutex_lock(&fs->itab_lock);
	struct bfs_inode **b = bucket(fs, ip->ino);
	for (struct bfs_inode *p = *b; p; p = p->hnext) {
		if (p->ino == ip->ino) {
			p->refs++;
			pthread_mutex_unlock(&fs->itab_lock);
			bfs_inode_free(ip);
			return p;
		}
	}
	ip->refs = 1;
	ip->hnext = *b;
	*b = ip;
	pthread_mutex_unlock(&fs->itab_lock);
	return ip;
}

int bfs_iget(struct bfs *fs, uint64_t ino, struct bfs_inode **out)
{
	pthread_mutex_lock(&fs->itab_lock);
	for (struct bfs_inode *p = *bucket(fs, ino); p; p = p->hnext) {
		if (p->ino == ino) {
			p->refs++;
			pthread_mutex_unlock(&fs->itab_lock);
			*out = p;
			return 0;
		}
	}
	pthread_mutex_unlock(&fs->itab_lock);

	struct bfs_inode *ip = bfs_inode_alloc(ino);
	if (!ip)
		return -ENOMEM;
	int ret = load_inode(fs, ino, ip);
	if (ret) {
		bfs_inode_free(ip);
		return ret == -ENOENT ? -ESTALE : ret;
	}
	*out = bfs_itab_insert(fs, ip);
	return 0;
}

void bfs_inode_ref(struct bfs *fs, struct bfs_inode *ip)
{
	pthread_mutex_lock(&fs->itab_lock);
	ip->refs++;
	pthread_mutex_unlock(&fs->itab_lock);
}

void bfs_ref_lookup(struct bfs *fs, struct bfs_inode *ip)
{
	pthread_mutex_lock(&fs->itab_lock);
	ip->nlookup++;
	pthread_mutex_unlock(&fs->itab_lock);
}

/* Take @ip off the deferred-attributes list (itab_lock held). */
static void attr_unlist(struct bfs *fs, struct bfs_inode *ip)
{
	if (!ip->attr_listed)
		return;
	if (ip->aprev)
		ip->aprev->anext = ip->anext;
	else
		fs->attr_dirty = ip->anext;
	if (ip->anext)
		ip->anext->aprev = ip->aprev;
	ip->attr_listed = false;
}

/* Called with itab_lock held: unhash @ip if nothing refers to it. */
static bool evictable(struct bfs *fs, struct bfs_inode *ip)
{
	if (ip->refs || ip->nlookup || ip->ino == BFS_ROOT_INO)
		return false;
	struct bfs_inode **pp = bucket(fs, ip->ino);
	while (*pp != ip)
		pp = &(*pp)->hnext;
	*pp = ip->hnext;
	attr_unlist(fs, ip);
	return true;
}

static void evict(struct bfs *fs, struct bfs_inode *ip)
{
	/* Room fallocate reserved lives with the inode in memory; it goes
	 * first, so that once a purge is visible nothing holds it. */
	pthread_mutex_lock(&ip->lock);
	bfs_resv_drop(fs, ip, 0, UINT64_MAX);
	pthread_mutex_unlock(&ip->lock);
	if (ip->rec.nlink && ip->attr_dirty && !fs->cfg.read_only) {
		struct blk_txn *t = blk_txn_new(fs->store);
		int ret = t ? 0 : -ENOMEM;
		if (t) {
			/* an atime alone is no change to commit (as in
			 * bfs_write_attrs) */
			if (ip->attr_commit)
				bfs_txn_put_inode(fs, t, ip);
			else
				bfs_txn_put_inode_quiet(t, ip);
			ret = bfs_txn_commit(t, false);
		}
		if (ret) {
			char path[1024];
			bfs_ino_describe(fs, ip->ino, path, sizeof(path));
			blk_log_err("file %s (inode %llu): attribute change "
				    "lost: %s",
				    path, (unsigned long long)ip->ino,
				    strerror(-ret));
		}
	}
	if (ip->rec.nlink == 0) {
		/* Its unflushed bytes go first, so that once the purge is
		 * visible the dirty-memory count no longer holds them. */
		bfs_dirty_account(
		    fs, -(int64_t)(ip->dirty.bytes + ip->flushing.bytes));
		wbuf_clear(&ip->dirty);
		wbuf_clear(&ip->flushing);
		bfs_purge_inode(fs, ip);
	} else if (ip->dirty.n) {
		/* A flush failed earlier; one last try before the data goes. */
		int ret = bfs_flush_inode(fs, ip, true, NULL);
		if (ret) {
			char path[1024];
			bfs_ino_describe(fs, ip->ino, path, sizeof(path));
			blk_log_err("file %s (inode %llu): %llu bytes of "
				    "unflushed data lost: %s",
				    path, (unsigned long long)ip->ino,
				    (unsigned long long)ip->dirty.bytes,
				    strerror(-ret));
		}
	}
	/* Bytes a failed last flush left go with the inode: they leave the
	 * dirty-memory count too. */
	bfs_dirty_account(fs, -(int64_t)(ip->dirty.bytes + ip->flushing.bytes));
	bfs_inode_free(ip);
}

void bfs_iput(struct bfs *fs, struct bfs_inode *ip)
{
	if (!ip)
		return;
	pthread_mutex_lock(&fs->itab_lock);
	ip->refs--;
	bool gone = evictable(fs, ip);
	pthread_mutex_unlock(&fs->itab_lock);
	if (gone)
		evict(fs, ip);
}

void bfs_forget(struct bfs *fs, uint64_t ino, uint64_t n)
{
	struct bfs_inode *ip = NULL;
	bool gone = false;

	pthread_mutex_lock(&fs->itab_lock);
	for (struct bfs_inode *p = *bucket(fs, ino); p; p = p->hnext) {
		if (p->ino == ino) {
			ip = p;
			break;
		}
	}
	if (ip) {
		ip->nlookup = ip->nlookup > n ? ip->nlookup - n : 0;
		gone = evictable(fs, ip);
	}
	pthread_mutex_unlock(&fs->itab_lock);
	if (gone)
		evict(fs, ip);
}

uint64_t bfs_inode_ino(const struct bfs_inode *ip)
{
	return ip->ino;
}

mode_t bfs_inode_mode(struct bfs_inode *ip)
{
	pthread_mutex_lock(&ip->lock);
	mode_t mode = ip->rec.mode;
	pthread_mutex_unlock(&ip->lock);
	return mode;
}

void bfs_stat(struct bfs_inode *ip, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&ip->lock);
	st->st_ino = ip->ino;
	st->st_mode = ip->rec.mode;
	st->st_nlink = ip->rec.nlink;
	st->st_uid = ip->rec.uid;
	st->st_gid = ip->rec.gid;
	st->st_rdev = ip->rec.rdev;
	st->st_size = (off_t)ip->rec.size;
	st->st_blksize = 128 * 1024;
	/* and room fallocate reserved, as ext4 counts preallocated blocks */
	uint64_t used = ip->rec.stored + ip->dirty.bytes + ip->flushing.bytes +
			ip->resv_bytes;
	if (S_ISLNK(ip->rec.mode) || S_ISDIR(ip->rec.mode))
		used = 4096;
	st->st_blocks = (blkcnt_t)((used + 511) / 512);
	st->st_atim = ip->rec.atime;
	st->st_mtim = ip->rec.mtime;
	st->st_ctim = ip->rec.ctime;
	pthread_mutex_unlock(&ip->lock);
}

static int ts_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	if (a->tv_nsec != b->tv_nsec)
		return a->tv_nsec < b->tv_nsec ? -1 : 1;
	return 0;
}

#define RELATIME_MAX_S (24 * 3600)

bool bfs_access(struct bfs *fs, struct bfs_inode *ip)
{
	struct timespec now;
	bool update;

	if (fs->cfg.read_only || fs->cfg.atime == BFS_ATIME_NOATIME)
		return false;
	bfs_now(&now);
	pthread_mutex_lock(&ip->lock);
	const struct bfs_inode_rec *r = &ip->rec;
	if (S_ISDIR(r->mode) && fs->cfg.nodiratime)
		update = false;
	else if (fs->cfg.atime == BFS_ATIME_STRICT)
		update = ts_cmp(&r->atime, &now) != 0;
	else /* the kernel's relatime_need_update */
		update = ts_cmp(&r->mtime, &r->atime) >= 0 ||
			 ts_cmp(&r->ctime, &r->atime) >= 0 ||
			 now.tv_sec - r->atime.tv_sec >= RELATIME_MAX_S;
	update = update && r->nlink;
	if (update) {
		bool commit = ip->attr_commit;

		ip->rec.atime = now;
		bfs_mark_attr_dirty(fs, ip);
		ip->attr_commit = commit; /* an atime alone is not one */
	}
	pthread_mutex_unlock(&ip->lock);
	return update;
}

bool bfs_file_access(struct bfs *fs, struct bfs_file *f, bool closing)
{
	if (closing && !f->reader)
		return false;
	if (__atomic_exchange_n(&f->accessed, true, __ATOMIC_RELAXED) &&
	    (closing || fs->cfg.atime != BFS_ATIME_STRICT))
		return false;
	return bfs_access(fs, f->ip);
}

/* After a failed batch: keep the change pending (ip->lock held). */
static void mark_attr_dirty_retry(struct bfs *fs, struct bfs_inode *ip,
				  bool commit)
{
	ip->attr_dirty = false;
	bfs_mark_attr_dirty(fs, ip);
	ip->attr_commit = commit;
}

/* Note that @ip's record changed in memory only (the caller holds
 * ip->lock); bfs_write_attrs() writes it. */
void bfs_mark_attr_dirty(struct bfs *fs, struct bfs_inode *ip)
{
	ip->attr_commit = true;
	if (ip->attr_dirty)
		return;
	ip->attr_dirty = true;
	pthread_mutex_lock(&fs->itab_lock);
	if (!ip->attr_listed) {
		ip->attr_listed = true;
		ip->aprev = NULL;
		ip->anext = fs->attr_dirty;
		if (ip->anext)
			ip->anext->aprev = ip;
		fs->attr_dirty = ip;
	}
	pthread_mutex_unlock(&fs->itab_lock);
}

/* Write every deferred attribute change, in batches of one transaction.
 * The namespace lock keeps rename and link (the only other holders of
 * several inode locks) out while a batch holds its inodes' locks. */
int bfs_write_attrs(struct bfs *fs)
{
	int first = 0;

	for (;;) {
		struct bfs_inode *batch[256];
		size_t n = 0;

		pthread_mutex_lock(&fs->itab_lock);
		while (fs->attr_dirty && n < 256) {
			struct bfs_inode *ip = fs->attr_dirty;
			attr_unlist(fs, ip);
			ip->refs++;
			batch[n++] = ip;
		}
		pthread_mutex_unlock(&fs->itab_lock);
		if (!n)
			break;
		struct blk_txn *t = blk_txn_new(fs->store);
		int ret = t ? 0 : -ENOMEM;
		pthread_mutex_lock(&fs->ns_lock);
		bool commit[256];
		for (size_t i = 0; i < n; i++) {
			pthread_mutex_lock(&batch[i]->lock);
			commit[i] = batch[i]->attr_commit;
			if (t && batch[i]->attr_dirty && commit[i])
				bfs_txn_put_inode(fs, t, batch[i]);
			else if (t && batch[i]->attr_dirty)
				bfs_txn_put_inode_quiet(t, batch[i]);
		}
		if (t)
			ret = blk_txn_commit(t, false);
		for (size_t i = 0; i < n; i++) {
			if (ret)
				mark_attr_dirty_retry(fs, batch[i], commit[i]);
			pthread_mutex_unlock(&batch[i]->lock);
		}
		pthread_mutex_unlock(&fs->ns_lock);
		blk_txn_free(t);
		for (size_t i = 0; i < n; i++)
			bfs_iput(fs, batch[i]);
		if (ret) {
			blk_log_err("writing inode attributes failed: %s",
				    strerror(-ret));
			first = first ? first : ret;
			break;
		}
	}
	return first;
}

void bfs_edit_lock(struct bfs_inode *ip)
{
	pthread_rwlock_wrlock(&ip->ext_lock);
	pthread_mutex_lock(&ip->lock);
	while (ip->editing) {
		pthread_mutex_unlock(&ip->lock);
		pthread_rwlock_unlock(&ip->ext_lock);
		pthread_mutex_lock(&ip->lock);
		while (ip->editing)
			pthread_cond_wait(&ip->cond, &ip->lock);
		pthread_mutex_unlock(&ip->lock);
		pthread_rwlock_wrlock(&ip->ext_lock);
		pthread_mutex_lock(&ip->lock);
	}
	ip->ext_gen++;
}

int bfs_setattr(struct bfs *fs, struct bfs_inode *ip, const struct stat *st,
		unsigned valid)
{
	void *keep = NULL;
	struct timespec ts;
	bool sized = valid & BFS_SET_SIZE;
	struct bfs_tail tail = {0};
	int ret;

	if (fs->cfg.read_only)
		return -EROFS;
	if (sized && S_ISDIR(ip->rec.mode))
		return -EISDIR;
	if (sized && !S_ISREG(ip->rec.mode))
		return -EINVAL;

	struct blk_txn *t = blk_txn_new(fs->store);
	if (!t)
		return -ENOMEM;
	bool lazy = (valid & BFS_SET_LAZY) && !sized;
	if (sized) {
		/* no lock is held across a fetch from the cluster */
		bfs_truncate_fetch(fs, ip, (uint64_t)st->st_size, &tail);
		bfs_edit_lock(ip);
		ret = bfs_truncate(fs, ip, (uint64_t)st->st_size, &tail, t,
				   &keep);
		if (ret)
			goto out;
	} else {
		pthread_mutex_lock(&ip->lock);
	}
	if (sized && st->st_size == 0)
		ip->da_close = true;
	struct bfs_inode_rec saved = ip->rec;
	bool was_dirty = ip->attr_dirty;
	bfs_now(&ts);
	if (valid & BFS_SET_MODE) {
		ip->rec.mode = (ip->rec.mode & S_IFMT) | (st->st_mode & 07777);
		/* the access ACL follows the mode, in the same commit */
		ret = bfs_acl_chmod_txn(fs, ip, ip->rec.mode, t);
		if (ret) {
			ip->rec = saved;
			goto out;
		}
	}
	if (valid & BFS_SET_UID)
		ip->rec.uid = st->st_uid;
	if (valid & BFS_SET_GID)
		ip->rec.gid = st->st_gid;
	if (valid & BFS_SET_KILL_SUID)
		ip->rec.mode &= ~(mode_t)S_ISUID;
	if (valid & BFS_SET_KILL_SGID)
		ip->rec.mode &= ~(mode_t)S_ISGID;
	if (valid & BFS_SET_ATIME_NOW)
		ip->rec.atime = ts;
	else if (valid & BFS_SET_ATIME)
		ip->rec.atime = st->st_atim;
	if (valid & BFS_SET_MTIME_NOW)
		ip->rec.mtime = ts;
	else if (valid & BFS_SET_MTIME)
		ip->rec.mtime = st->st_mtim;
	else if (sized)
		ip->rec.mtime = ts;
	ip->rec.ctime = (valid & BFS_SET_CTIME) ? st->st_ctim : ts;
	if (lazy) {
		bfs_mark_attr_dirty(fs, ip);
		ret = 0;
	} else {
		/* Acknowledged means committed: no later operation can
		 * reach the store before this one (see BFS_SET_LAZY). */
		bfs_txn_put_inode(fs, t, ip);
		ret = blk_txn_commit(t, false);
		if (ret && !sized) {
			ip->rec = saved;
			ip->attr_dirty = was_dirty;
		}
	}
out:
	pthread_mutex_unlock(&ip->lock);
	if (sized)
		pthread_rwlock_unlock(&ip->ext_lock);
	blk_txn_free(t);
	free(keep);
	free(tail.data);
	return ret;
}

unsigned bfs_killpriv(struct bfs_inode *ip, const struct bfs_cred *c)
{
	unsigned kill = 0;

	if (c->fsetid)
		return 0;
	pthread_mutex_lock(&ip->lock);
	mode_t mode = ip->rec.mode;
	if (S_ISREG(mode) && (mode & S_ISUID))
		kill |= BFS_SET_KILL_SUID;
	if (S_ISREG(mode) && (mode & S_ISGID) &&
	    ((mode & S_IXGRP) || !bfs_cred_in_group(c, ip->rec.gid)))
		kill |= BFS_SET_KILL_SGID;
	pthread_mutex_unlock(&ip->lock);
	return kill;
}

/* Free an unlinked inode's data and records (it is out of the table). */
int bfs_purge_inode(struct bfs *fs, struct bfs_inode *ip)
{
	uint8_t prefix[8], key[8], dkey[BFS_DAG_KEY_LEN];
	char okey[32];
	int ret = 0;

	if (fs->cfg.read_only)
		return 0;
	struct blk_txn *t = blk_txn_new(fs->store);
	if (!t)
		return -ENOMEM;
	bfs_ino_key(prefix, ip->ino);
	for (unsigned cf = BFS_CF_EXTENTS; !ret && cf <= BFS_CF_XATTRS; cf++) {
		struct blk_iter *it =
		    blk_iter_new(fs->db, cf, prefix, 8, NULL, 0);
		if (!it) {
			ret = -ENOMEM;
			break;
		}
		for (; !ret && blk_iter_valid(it); blk_iter_next(it)) {
			size_t klen, vlen;
			const void *k = blk_iter_key(it, &klen);
			blk_txn_delete(t, cf, k, klen);
			if (cf != BFS_CF_EXTENTS)
				continue;
			const uint8_t *v = blk_iter_value(it, &vlen);
			uint32_t len;
			struct blk_cid cid;
			ret = bfs_extent_decode(v, vlen, &len, NULL, &cid);
			if (!ret)
				ret = blk_txn_unref(t, &cid);
		}
		if (!ret)
			ret = blk_iter_status(it);
		blk_iter_free(it);
	}
	size_t klen = bfs_ino_key(key, ip->ino);
	uint8_t probe;
	int64_t had =
	    blk_db_get_into(fs->db, BFS_CF_INODES, key, klen, &probe, 0);
	if (had < 0 && had != -ENOENT && !ret)
		ret = (int)had;
	blk_txn_delete(t, BFS_CF_INODES, key, klen);
	blk_txn_delete(t, BFS_CF_DAG, dkey, bfs_dag_key(dkey, ip->ino));
	bfs_orphan_key(okey, ip->ino);
	blk_txn_delete(t, BFS_CF_META, okey, strlen(okey));
	if (ret) {
		blk_txn_free(t);
		blk_log_err("inode %llu: cannot free its data: %s",
			    (unsigned long long)ip->ino, strerror(-ret));
		return ret;
	}
	/* A record purged already (never, but the count must not drift)
	 * leaves the count alone. */
	return bfs_txn_commit_counted(fs, t, had >= 0 ? -1 : 0);
}
