/* The filesystem object: open (mkfs on first use), close, sync of
 * everything, and the wiring of the cluster layer. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "blocks/base/clock.h"
#include "blocks/base/log.h"
#include "blocks/store/fragstore.h"
#include "net/server/heads.h"

bool bfs_read_only(const struct bfs *fs)
{
	return fs->cfg.read_only;
}

struct blk_db *bfs_db(struct bfs *fs)
{
	return fs->db;
}

struct blk_store *bfs_store(struct bfs *fs)
{
	return fs->store;
}

unsigned bfs_cf_frags(struct bfs *fs)
{
	return fs->cf_frags;
}

unsigned bfs_cf_repair(struct bfs *fs)
{
	return fs->cf_repair;
}

void bfs_set_engine(struct bfs *fs, struct cl_engine *peers)
{
	fs->peers = peers;
}

void bfs_set_commit_hook(struct bfs *fs,
			 int (*fn)(void *arg, struct bfs_commit_info *out),
			 void *arg)
{
	fs->commit_fn = fn;
	fs->commit_arg = arg;
}

int bfs_commit_request(struct bfs *fs, struct bfs_commit_info *out)
{
	return fs->commit_fn ? fs->commit_fn(fs->commit_arg, out) : -EOPNOTSUPP;
}

/* Create the root directory and format record of a new filesystem. */
static int mkfs(struct bfs *fs)
{
	struct bfs_inode *root = bfs_inode_alloc(BFS_ROOT_INO);
	uint8_t v[8];
	struct timespec ts;

	if (!root)
		return -ENOMEM;
	bfs_now(&ts);
	root->rec = (struct bfs_inode_rec){
	    .mode = S_IFDIR | 0755,
	    .uid = getuid(),
	    .gid = getgid(),
	    .nlink = 2,
	    .atime = ts,
	    .mtime = ts,
	    .ctime = ts,
	    .btime = ts,
	};
	struct blk_txn *t = blk_txn_new(fs->store);
	if (!t) {
		bfs_inode_free(root);
		return -ENOMEM;
	}
	/* no change mark: a filesystem nobody changed needs no commit */
	bfs_txn_put_inode_quiet(t, root);
	blk_put_le64(v, BFS_ROOT_INO + 1);
	blk_txn_put(t, BFS_CF_META, "next_ino", 8, v, 8);
	blk_put_le64(v, BFS_FORMAT_VERSION);
	blk_txn_put(t, BFS_CF_META, "format", 6, v, 8);
	blk_put_le64(v, 1);
	blk_txn_put(t, BFS_CF_META, BFS_META_INODES, strlen(BFS_META_INODES), v,
		    8);
	bfs_inode_free(root);
	return bfs_txn_commit(t, true);
}

static int load_meta_u64(struct bfs *fs, const char *key, uint64_t *v)
{
	uint8_t buf[8];
	int64_t r = blk_db_get_into(fs->db, BFS_CF_META, key, strlen(key), buf,
				    sizeof(buf));
	if (r < 0)
		return (int)r;
	if (r != 8)
		return -EUCLEAN;
	*v = blk_get_le64(buf);
	return 0;
}

static void init_locks(struct bfs *fs)
{
	pthread_mutex_init(&fs->ns_lock, NULL);
	pthread_mutex_init(&fs->count_lock, NULL);
	pthread_mutex_init(&fs->itab_lock, NULL);
	bfs_flushq_init(&fs->fq);
	bfs_space_init(&fs->space);
	bfs_maint_init(&fs->mt);
	bfs_hasher_init(&fs->hasher);
	bfs_damage_init(&fs->damage);
}

static void destroy_locks(struct bfs *fs)
{
	bfs_damage_destroy(&fs->damage);
	bfs_hasher_destroy(&fs->hasher);
	bfs_maint_destroy(&fs->mt);
	bfs_space_destroy(&fs->space);
	bfs_flushq_destroy(&fs->fq);
	pthread_mutex_destroy(&fs->itab_lock);
	pthread_mutex_destroy(&fs->count_lock);
	pthread_mutex_destroy(&fs->ns_lock);
}

/* RocksDB cannot open for writing on a full file system (it writes a
 * manifest and a log first): such a mount opens read-only. Returns
 * whether it must, with the free bytes in *avail. */
static bool check_room(struct bfs *fs, uint64_t *avail)
{
	struct statvfs vfs;

	if (fs->cfg.read_only || statvfs(fs->cfg.node_dir, &vfs))
		return false;
	*avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (*avail >= SPACE_OPEN_MIN)
		return false;
	fs->cfg.read_only = true;
	return true;
}

/* Say what a damaged write-ahead log cost at the open of @path: RocksDB
 * itself drops it silently (blocks/db/db.c). */
static void say_wal_damage(struct bfs *fs, const char *path)
{
	struct blk_wal_damage wd;

	blk_db_wal_damage(fs->db, &wd);
	if (wd.records)
		blk_log_err("the write-ahead log %s/%s is damaged at byte "
			    "%llu: the last %llu transactions written before "
			    "the daemon stopped were dropped, from there on; "
			    "what they wrote is lost",
			    path, wd.file, (unsigned long long)wd.offset,
			    (unsigned long long)wd.records);
}

/* Open the database in @path and the block store on it. */
static int open_store(struct bfs *fs, const char *path,
		      const struct blk_db_options *o,
		      const struct blk_store_options *so, char *err,
		      size_t errlen)
{
	int ret = blk_db_open(path, o, &fs->db, err, errlen);

	if (!ret)
		ret = blk_store_open(fs->db, so, &fs->store, err, errlen);
	if (ret) {
		blk_db_close(fs->db);
		fs->db = NULL;
	}
	return ret;
}

/* Open the database in @path (cfg.node_dir/db) as a mounted node has it:
 * the filesystem's column families (first: their handles are the BFS_CF_*
 * constants), the block store's, the fragment store's (the node's server)
 * and the cluster engine's. A read-only open of a node never mounted
 * creates its empty filesystem first. */
static int open_db(struct bfs *fs, const char *path, bool full, char *err,
		   size_t errlen)
{
	const struct bfs_config *cfg = &fs->cfg;
	struct blk_cf_registry reg = {0};
	struct blk_store_options so = {
	    .newlog = cfg->newlog,
	    .verify_on_read = cfg->verify_reads,
	};
	struct blk_db_options o = {
	    .cfs = &reg,
	    .cache_bytes = cfg->cache_bytes,
	    .create = !cfg->read_only,
	    .read_only = cfg->read_only,
	};
	int frags, repair;

	/* A failed registration is kept in reg.err: the open fails. */
	bfs_meta_register(&reg);
	blk_store_register(&reg, &so);
	frags = blk_fragstore_register(&reg);
	repair = cl_engine_register(&reg);
	net_heads_register(&reg); /* the node service's (engine.c) */
	fs->cf_frags = frags < 0 ? 0 : (unsigned)frags;
	fs->cf_repair = repair < 0 ? 0 : (unsigned)repair;
	int ret = open_store(fs, path, &o, &so, err, errlen);
	if (ret == -ENOENT && full) {
		snprintf(
		    err, errlen,
		    "%s is full and holds no filesystem yet: free space on "
		    "it to make one",
		    cfg->node_dir);
		return -ENOSPC;
	}
	if (ret == -ENOENT && cfg->read_only) {
		struct bfs_config rw = *cfg;
		struct bfs *tmp;
		rw.read_only = false;
		err[0] = 0;
		ret = bfs_open(&rw, &tmp, err, errlen);
		if (!ret)
			ret = bfs_close(tmp);
		if (!ret)
			ret = open_store(fs, path, &o, &so, err, errlen);
	}
	if (!ret)
		say_wal_damage(fs, path);
	return ret;
}

/* Check the format record (making a new filesystem in an empty database)
 * and load the inode counter. */
static int load_format(struct bfs *fs, const char *path, char *err,
		       size_t errlen)
{
	uint64_t format = 0;
	int ret = bfs_load_change_seq(fs);

	if (!ret)
		ret = load_meta_u64(fs, "format", &format);
	if (ret == -ENOENT && !fs->cfg.read_only) {
		ret = mkfs(fs);
		format = BFS_FORMAT_VERSION;
	}
	/* Format 1 (before issue 23) lacks what commits need: added in
	 * place; a read-only mount reads it as it is. */
	if (!ret && format == 1) {
		if (!fs->cfg.read_only)
			ret = bfs_upgrade_v1(fs);
		if (!ret)
			format = BFS_FORMAT_VERSION;
	}
	if (ret || format != BFS_FORMAT_VERSION) {
		snprintf(
		    err, errlen,
		    ret ? "cannot read the filesystem in %s: %s"
			: "%s holds filesystem format %s, not ours",
		    path,
		    ret ? strerror(-ret)
			: (format > BFS_FORMAT_VERSION ? "newer" : "older"));
		return ret ? ret : -EPROTO;
	}
	ret = load_meta_u64(fs, "next_ino", &fs->next_ino);
	if (ret) {
		snprintf(err, errlen, "cannot read the inode counter: %s",
			 strerror(-ret));
		return ret;
	}
	fs->ino_reserved = fs->next_ino;
	return 0;
}

/* The inode count (statfs's used files): as stored, or counted once on a
 * filesystem made before it was kept (and stored when writable). */
static int load_inode_count(struct bfs *fs)
{
	int ret = load_meta_u64(fs, BFS_META_INODES, &fs->n_inodes);

	if (ret != -ENOENT)
		return ret;
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_INODES, NULL, 0, NULL, 0);
	if (!it)
		return -ENOMEM;
	uint64_t n = 0;
	for (; blk_iter_valid(it); blk_iter_next(it))
		n++;
	ret = blk_iter_status(it);
	blk_iter_free(it);
	if (ret)
		return ret;
	fs->n_inodes = n;
	if (fs->cfg.read_only)
		return 0;
	uint8_t v[8];
	blk_put_le64(v, n);
	return blk_db_put(fs->db, BFS_CF_META, BFS_META_INODES,
			  strlen(BFS_META_INODES), v, 8);
}

/* The longest extent lookups must look back for: the largest any mount
 * wrote (extents written with a larger chunk maximum stay readable), or
 * this mount's largest chunk, recorded if it is the larger. */
static int load_max_extent(struct bfs *fs)
{
	const struct bfs_config *cfg = &fs->cfg;
	uint64_t max_extent = 0;

	load_meta_u64(fs, "max_extent", &max_extent);
	uint64_t mine =
	    cfg->chunker == CDC_FIXED ? cfg->chunk_avg : cfg->chunk_max;
	fs->max_extent = max_extent > mine ? max_extent : mine;
	if (!cfg->read_only && fs->max_extent != max_extent) {
		uint8_t v[8];
		blk_put_le64(v, fs->max_extent);
		return blk_db_put(fs->db, BFS_CF_META, "max_extent", 10, v, 8);
	}
	return 0;
}

/* What a crash or an unclean stop left (recover.c); writable mounts only. */
static int recover(struct bfs *fs, char *err, size_t errlen)
{
	int ret;

	if (fs->cfg.read_only)
		return 0;
	if ((ret = bfs_drop_lost_extents(fs))) {
		snprintf(err, errlen,
			 "cannot drop extents of blocks lost in a crash: %s",
			 strerror(-ret));
		return ret;
	}
	if ((ret = bfs_purge_orphans(fs))) {
		snprintf(err, errlen, "cannot free deleted files: %s",
			 strerror(-ret));
		return ret;
	}
	return 0;
}

static int start_threads(struct bfs *fs)
{
	int ret = bfs_flushq_start(fs);

	if (ret || fs->cfg.read_only)
		return ret;
	bfs_hasher_start(&fs->hasher);
	return bfs_maint_start(fs);
}

/* What bfs_open does once the database is open: the format (made on an
 * empty database), the counters, the recovery of a crash, the threads. */
static int open_rest(struct bfs *fs, const char *path, char *err, size_t errlen)
{
	int ret = load_format(fs, path, err, errlen);

	if (!ret)
		ret = load_max_extent(fs);
	if (!ret && (ret = load_inode_count(fs)))
		snprintf(err, errlen, "cannot read the inode count: %s",
			 strerror(-ret));
	if (!ret)
		ret = recover(fs, err, errlen);
	if (!ret)
		ret = start_threads(fs);
	return ret;
}

bool bfs_open_pending(const struct bfs *fs)
{
	return fs->pending;
}

int bfs_open_finish(struct bfs *fs, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int ret;

	if (!fs->pending)
		return 0;
	snprintf(path, sizeof(path), "%s/db", fs->cfg.node_dir);
	ret = open_rest(fs, path, err, errlen);
	if (!ret)
		fs->pending = false;
	else if (err && !err[0])
		snprintf(err, errlen, "%s", strerror(-ret));
	return ret;
}

int bfs_open(const struct bfs_config *cfg, struct bfs **out, char *err,
	     size_t errlen)
{
	struct bfs *fs = calloc(1, sizeof(*fs));
	char path[PATH_MAX];
	int ret;

	if (!fs)
		return -ENOMEM;
	fs->cfg = *cfg;
	init_locks(fs);
	fs->node_dir = strdup(cfg->node_dir);
	fs->itab = calloc(ITAB_BUCKETS, sizeof(*fs->itab));
	if (!fs->node_dir || !fs->itab) {
		ret = -ENOMEM;
		goto fail;
	}
	uint64_t avail = 0;
	bool full = check_room(fs, &avail);
	snprintf(path, sizeof(path), "%s/db", fs->cfg.node_dir);
	ret = open_db(fs, path, full, err, errlen);
	if (!ret && full)
		blk_log_err("%s is full (%llu bytes free): mounting read-only; "
			    "free space on it and mount again to write",
			    fs->cfg.node_dir, (unsigned long long)avail);
	if (!ret && cfg->defer_mkfs && !cfg->read_only) {
		uint64_t format;

		if (load_meta_u64(fs, "format", &format) == -ENOENT) {
			fs->pending = true; /* bfs_open_finish does the rest */
			*out = fs;
			return 0;
		}
	}
	if (!ret)
		ret = open_rest(fs, path, err, errlen);
	if (ret)
		goto fail;
	*out = fs;
	return 0;
fail:
	if (err && !err[0])
		snprintf(err, errlen, "%s", strerror(-ret));
	bfs_close(fs);
	return ret;
}

int bfs_sync_all(struct bfs *fs)
{
	int first = bfs_write_attrs(fs);

	for (uint32_t b = 0; b < ITAB_BUCKETS; b++) {
		for (;;) {
			/* Find a dirty inode in this bucket, take a ref. */
			struct bfs_inode *ip = NULL;
			pthread_mutex_lock(&fs->itab_lock);
			for (struct bfs_inode *p = fs->itab[b]; p;
			     p = p->hnext) {
				if (p->dirty.n && !p->flush_err) {
					ip = p;
					ip->refs++;
					break;
				}
			}
			pthread_mutex_unlock(&fs->itab_lock);
			if (!ip)
				break;
			int ret = bfs_flush_inode(fs, ip, true, NULL);
			if (ret && !first)
				first = ret;
			if (ret) {
				pthread_mutex_lock(&ip->lock);
				ip->flush_err = ret;
				pthread_mutex_unlock(&ip->lock);
			}
			bfs_iput(fs, ip);
		}
	}
	int ret = blk_store_sync(fs->store);
	if (!ret && fs->peers && !fs->cfg.read_only)
		ret = cl_engine_barrier(fs->peers);
	return first ? first : ret;
}

/* Stop the maintenance thread and the flushers (which empty their
 * queue first), then the hash helper. */
static void stop_threads(struct bfs *fs)
{
	bfs_maint_stop(fs);
	bfs_flushq_stop(fs);
	bfs_hasher_stop(&fs->hasher);
}

int bfs_close(struct bfs *fs)
{
	int ret = 0;

	if (!fs)
		return 0;
	/* Handles the kernel never released (the session ended first). */
	while (fs->files)
		bfs_release_file(fs, fs->files);
	if (fs->db && fs->fq.threads)
		ret = bfs_sync_all(fs);
	if (fs->n_flushes)
		blk_log_info("%llu flushes (%llu by writers over the memory "
			     "bound), %llu MiB committed, %llu MiB hashed",
			     (unsigned long long)fs->n_flushes,
			     (unsigned long long)fs->n_sync_flushes,
			     (unsigned long long)(fs->n_committed >> 20),
			     (unsigned long long)(fs->n_hashed >> 20));
	stop_threads(fs);
	if (fs->itab) {
		for (uint32_t b = 0; b < ITAB_BUCKETS; b++) {
			struct bfs_inode *ip = fs->itab[b];
			while (ip) {
				struct bfs_inode *next = ip->hnext;
				if (ip->rec.nlink == 0)
					bfs_purge_inode(fs, ip);
				bfs_inode_free(ip);
				ip = next;
			}
		}
		free(fs->itab);
	}
	if (fs->db && !fs->cfg.read_only && !fs->pending) {
		int r = bfs_maint_final(fs);
		ret = ret ? ret : r;
	}
	blk_store_close(fs->store);
	blk_db_close(fs->db);
	destroy_locks(fs);
	free(fs->node_dir);
	free(fs);
	return ret;
}
