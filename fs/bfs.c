/* The filesystem core: inode table, namespace, attributes, xattrs and the
 * file write path (buffer -> FastCDC chunks -> blocks + extents in one
 * transaction). See bfs.h for the lock order and the write-path invariants. */
#include "fs/bfs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "blocks/clock.h"
#include "fs/extent.h"
#include "fs/log.h"

#define ITAB_BUCKETS (1u << 14)
#define INO_RESERVE 4096
/* The largest file size: the kernel's for a FUSE mount (MAX_LFS_FILESIZE,
 * the largest off_t), so that a write the kernel accepted and buffered is
 * never refused at writeback, where its error could only reach close().
 * Offsets are 64-bit all the way down (extent keys, the write buffer), and
 * an offset plus an extent length stays far below 2^64. */
#define BFS_FILE_MAX ((uint64_t)INT64_MAX)
#define XATTR_VALUE_MAX 65536

struct bfs {
	struct bfs_config cfg;
	char *node_dir;
	struct blk_db *db;
	struct bfs_remote remote; /* fetch == NULL: a single node */
	uint64_t max_extent; /* longest extent any mount of this fs wrote */

	pthread_mutex_t ns_lock;
	uint64_t next_ino;     /* ns_lock */
	uint64_t ino_reserved; /* ns_lock: next_ino < ino_reserved */

	pthread_mutex_t itab_lock;
	struct bfs_inode **itab;
	struct bfs_file *files; /* open handles, for shutdown */
	/* Inodes whose record has attribute changes not yet written:
	 * chown, chmod and utimens come in threes per file from tar and
	 * cp -a, and are written in batches. No reference is held: eviction
	 * unlinks an inode and writes its record itself. */
	struct bfs_inode *attr_dirty; /* itab_lock, linked by anext/aprev */

	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	pthread_cond_t q_drain; /* dirty_bytes went down */
	struct bfs_inode *q_head, *q_tail;
	bool q_stop;
	uint64_t dirty_bytes; /* q_lock: all dirty + flushing bytes */
	pthread_t *flushers;
	unsigned nflushers;

	/* Space reclamation: deleted blocks leave garbage in blob files
	 * until a compaction; the maintenance thread runs one once enough
	 * was freed and writes have paused, and bfs_close runs a last one. */
	pthread_t maint;
	bool maint_started;
	pthread_cond_t maint_cond; /* q_lock */
	uint64_t freed;		   /* q_lock: bytes freed since compaction */
	uint64_t maint_prev;	   /* q_lock: stored bytes at the last look */
	uint64_t overhead;	   /* q_lock: disk bytes past stored bytes
				    * that the last compaction left */

	/* A helper thread that hashes chunks beside the flusher: BLAKE2b is
	 * the largest cost of a flush (~800 MB/s per core). */
	pthread_mutex_t hp_lock;
	pthread_cond_t hp_cond, hp_done;
	struct hash_job *hp_job; /* hp_lock: the job helpers may join */
	pthread_t hp_thread;
	bool hp_started, hp_stop;

	/* Room on the node directory's file system (space_room): the last
	 * look at it, taken again every SPACE_LOOK_NS or on every write
	 * once little is left. */
	uint64_t space_avail;	/* q_lock: free bytes, less the reserve */
	uint64_t space_pending; /* q_lock: memtable bytes not yet written */
	uint64_t space_total;	/* q_lock */
	uint64_t space_at;	/* q_lock: CLOCK_MONOTONIC ns of the look */
	uint64_t space_warned;	/* q_lock: when ENOSPC was last logged */

	/* Counters for the log at unmount (relaxed atomics). */
	uint64_t n_flushes, n_hashed, n_committed, n_sync_flushes;
};

/* Space. Writes are refused with ENOSPC while less than their length is
 * left of the file system's free bytes, less what RocksDB holds in
 * memtables (their flush writes it), less the dirty bytes (their flush
 * stores them), less a reserve: room for metadata, deletes, flushes and
 * the compaction that gives deleted space back, so that RocksDB itself
 * never meets a full disk through our writes. statfs reports the same
 * room as free. A file system with less than SPACE_OPEN_MIN free is
 * mounted read-only: RocksDB cannot open for writing there. */
#define SPACE_RESERVE_MIN (8ull << 20)
#define SPACE_RESERVE_MAX (1ull << 30)
#define SPACE_RESERVE_SHIFT 5 /* 1/32 of the file system */
#define SPACE_OPEN_MIN (4ull << 20)
#define SPACE_LOOK_NS (10 * 1000000ull)
#define SPACE_NEAR (256ull << 20) /* look on every write below this */
#define SPACE_WARN_NS (60 * 1000000000ull)
#define SPACE_GARBAGE (4ull << 20) /* worth a compaction when room is short */

#define COMPACT_AFTER (128ull << 20)
#define MAINT_PERIOD_S 2
#define SYNC_PERIODS 3 /* the store is synced every 6 s */

bool bfs_read_only(const struct bfs *fs)
{
	return fs->cfg.read_only;
}

struct blk_db *bfs_db(struct bfs *fs)
{
	return fs->db;
}

static void now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* ---- records ---------------------------------------------------------- */

/* Put @ip's whole record in @t (the caller holds ip->lock): any deferred
 * attribute change goes with it. */
static void txn_put_inode(struct blk_txn *t, struct bfs_inode *ip)
{
	uint8_t key[8], val[BFS_INODE_REC_LEN + BFS_SYMLINK_MAX];
	size_t tlen = ip->target ? strlen(ip->target) : 0;

	ip->attr_dirty = false;
	bfs_ino_key(key, ip->ino);
	blk_txn_put(t, BFS_CF_INODES, key, 8, val,
		    bfs_inode_encode(&ip->rec, ip->target, tlen, val));
}

static void orphan_key(char *key, uint64_t ino)
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
		bfs_log_err("inode %llu: undecodable record",
			    (unsigned long long)ino);
	return ret;
}

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

static void txn_put_dirent(struct blk_txn *t, uint64_t parent, const char *name,
			   struct bfs_inode *ip)
{
	uint8_t key[8 + BFS_NAME_MAX], val[BFS_DIRENT_VAL_LEN];

	bfs_dirent_encode(val, ip->ino, bfs_mode_dtype(ip->rec.mode));
	blk_txn_put(t, BFS_CF_DIRENTS, key,
		    bfs_dirent_key(key, parent, name, strlen(name)), val,
		    sizeof(val));
}

static void txn_del_dirent(struct blk_txn *t, uint64_t parent, const char *name)
{
	uint8_t key[8 + BFS_NAME_MAX];

	blk_txn_delete(t, BFS_CF_DIRENTS, key,
		       bfs_dirent_key(key, parent, name, strlen(name)));
}

static int txn_commit(struct blk_txn *t, bool sync)
{
	int ret = blk_txn_commit(t, sync);
	blk_txn_free(t);
	if (ret)
		bfs_log_err("metadata commit failed: %s", strerror(-ret));
	return ret;
}

/* ---- blocks, local or fetched ------------------------------------------ */

/* A block that is not in the local store any more (evicted once peers held
 * it, or lost with a disk) comes from the cluster; it is put back in the
 * store as a cache entry while the cache has room. */
static int fetch_block(struct bfs *fs, const struct blk_cid *cid, void **data,
		       size_t *len)
{
	int ret;

	if (!fs->remote.fetch)
		return -EIO;
	ret = fs->remote.fetch(fs->remote.arg, cid, data, len);
	if (ret)
		return ret;
	struct blk_store_stats st;
	bool room = !fs->cfg.local_max ||
		    (blk_store_stats(fs->db, &st) == 0 &&
		     st.bytes - st.remote_bytes + *len <= fs->cfg.local_max);
	if (!fs->cfg.read_only && room) {
		int r = blk_store_fill(fs->db, cid, *data, *len);
		if (r && r != -ENOENT)
			bfs_log_warn("cannot keep a fetched block: %s",
				     strerror(-r));
	}
	return 0;
}

static int64_t block_read(struct bfs *fs, const struct blk_cid *cid,
			  uint64_t off, void *dst, size_t len)
{
	int64_t got = blk_store_read(fs->db, cid, off, dst, len);
	void *data;
	size_t dlen;

	if (got != -ENOENT || !fs->remote.fetch)
		return got;
	int ret = fetch_block(fs, cid, &data, &dlen);
	if (ret)
		return ret;
	if (off >= dlen) {
		got = 0;
	} else {
		got = (int64_t)(dlen - off < len ? dlen - off : len);
		memcpy(dst, (uint8_t *)data + off, (size_t)got);
	}
	free(data);
	return got;
}

static int block_get(struct bfs *fs, const struct blk_cid *cid, void **data,
		     size_t *len)
{
	int ret = blk_store_get(fs->db, cid, data, len);

	if (ret != -ENOENT || !fs->remote.fetch)
		return ret;
	return fetch_block(fs, cid, data, len);
}

void bfs_set_remote(struct bfs *fs, const struct bfs_remote *r)
{
	if (r)
		fs->remote = *r;
	else
		memset(&fs->remote, 0, sizeof(fs->remote));
}

/* ---- inode table ------------------------------------------------------ */

static struct bfs_inode **bucket(struct bfs *fs, uint64_t ino)
{
	return &fs->itab[(ino * 0x9e3779b97f4a7c15ull) >> 50];
}

static struct bfs_inode *inode_alloc(uint64_t ino)
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

static void inode_free(struct bfs_inode *ip)
{
	wbuf_clear(&ip->dirty);
	wbuf_clear(&ip->flushing);
	free(ip->target);
	pthread_rwlock_destroy(&ip->ext_lock);
	pthread_mutex_destroy(&ip->lock);
	pthread_cond_destroy(&ip->cond);
	free(ip);
}

/* Insert a new in-memory inode (refs 1), or return the one already there. */
static struct bfs_inode *itab_insert(struct bfs *fs, struct bfs_inode *ip)
{
	pthread_mutex_lock(&fs->itab_lock);
	struct bfs_inode **b = bucket(fs, ip->ino);
	for (struct bfs_inode *p = *b; p; p = p->hnext) {
		if (p->ino == ip->ino) {
			p->refs++;
			pthread_mutex_unlock(&fs->itab_lock);
			inode_free(ip);
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

	struct bfs_inode *ip = inode_alloc(ino);
	if (!ip)
		return -ENOMEM;
	int ret = load_inode(fs, ino, ip);
	if (ret) {
		inode_free(ip);
		return ret == -ENOENT ? -ESTALE : ret;
	}
	*out = itab_insert(fs, ip);
	return 0;
}

static void inode_ref(struct bfs *fs, struct bfs_inode *ip)
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

static int purge_inode(struct bfs *fs, struct bfs_inode *ip);
static int write_attrs(struct bfs *fs);
static int flush_inode(struct bfs *fs, struct bfs_inode *ip, bool final,
		       uint64_t *committed);

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
	if (ip->rec.nlink && ip->attr_dirty && !fs->cfg.read_only) {
		struct blk_txn *t = blk_txn_new(fs->db);
		int ret = t ? 0 : -ENOMEM;
		if (t) {
			txn_put_inode(t, ip);
			ret = txn_commit(t, false);
		}
		if (ret)
			bfs_log_err("inode %llu: attribute change lost: %s",
				    (unsigned long long)ip->ino,
				    strerror(-ret));
	}
	if (ip->rec.nlink == 0) {
		purge_inode(fs, ip);
	} else if (ip->dirty.n) {
		/* A flush failed earlier; one last try before the data goes. */
		int ret = flush_inode(fs, ip, true, NULL);
		if (ret)
			bfs_log_err("inode %llu: unflushed data lost: %s",
				    (unsigned long long)ip->ino,
				    strerror(-ret));
	}
	inode_free(ip);
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
	uint64_t used = ip->rec.stored + ip->dirty.bytes + ip->flushing.bytes;
	if (S_ISLNK(ip->rec.mode) || S_ISDIR(ip->rec.mode))
		used = 4096;
	st->st_blocks = (blkcnt_t)((used + 511) / 512);
	st->st_atim = ip->rec.atime;
	st->st_mtim = ip->rec.mtime;
	st->st_ctim = ip->rec.ctime;
	pthread_mutex_unlock(&ip->lock);
}

/* ---- dirty memory and the flush queue ---------------------------------- */

static void dirty_account(struct bfs *fs, int64_t delta)
{
	if (!delta)
		return;
	pthread_mutex_lock(&fs->q_lock);
	fs->dirty_bytes += (uint64_t)delta;
	if (delta < 0)
		pthread_cond_broadcast(&fs->q_drain);
	pthread_mutex_unlock(&fs->q_lock);
}

/* Queue @ip for a background flush; the caller set ip->queued. */
static void enqueue(struct bfs *fs, struct bfs_inode *ip)
{
	inode_ref(fs, ip);
	pthread_mutex_lock(&fs->q_lock);
	ip->qnext = NULL;
	if (fs->q_tail)
		fs->q_tail->qnext = ip;
	else
		fs->q_head = ip;
	fs->q_tail = ip;
	pthread_cond_signal(&fs->q_cond);
	pthread_mutex_unlock(&fs->q_lock);
}

void bfs_flush_async(struct bfs *fs, struct bfs_inode *ip)
{
	pthread_mutex_lock(&ip->lock);
	bool go = !ip->queued && ip->dirty.n;
	if (go)
		ip->queued = true;
	pthread_mutex_unlock(&ip->lock);
	if (go)
		enqueue(fs, ip);
}

static void *flusher_main(void *arg)
{
	struct bfs *fs = arg;

	for (;;) {
		pthread_mutex_lock(&fs->q_lock);
		while (!fs->q_head && !fs->q_stop)
			pthread_cond_wait(&fs->q_cond, &fs->q_lock);
		struct bfs_inode *ip = fs->q_head;
		if (!ip) {
			pthread_mutex_unlock(&fs->q_lock);
			break;
		}
		fs->q_head = ip->qnext;
		if (!fs->q_head)
			fs->q_tail = NULL;
		pthread_mutex_unlock(&fs->q_lock);

		pthread_mutex_lock(&ip->lock);
		ip->queued = false;
		bool final = ip->nopen == 0 || fs->q_stop;
		pthread_mutex_unlock(&ip->lock);

		int ret = flush_inode(fs, ip, final, NULL);
		if (ret)
			bfs_log_err("inode %llu: flush failed: %s",
				    (unsigned long long)ip->ino,
				    strerror(-ret));
		pthread_mutex_lock(&ip->lock);
		bool again =
		    !ret && !ip->queued &&
		    (ip->dirty.bytes >= ip->flush_floor + fs->cfg.flush_at ||
		     (ip->nopen == 0 && ip->dirty.n));
		if (again)
			ip->queued = true;
		pthread_mutex_unlock(&ip->lock);
		if (again)
			enqueue(fs, ip);
		bfs_iput(fs, ip);
	}
	return NULL;
}

/* ---- the write path ---------------------------------------------------- */

struct chunk {
	uint64_t off; /* file offset */
	uint32_t len;
	bool natural; /* a content-defined cut, not the end of the data */
};

struct run {
	uint64_t ea, eb;   /* file range re-chunked */
	size_t ext0, next; /* its old extents in the extent list */
	uint8_t *buf;	   /* new content of [ea, eb) */
	bool borrowed;	   /* buf is a flushing segment's, not ours */
	/* Boundaries: the run starts where an old block started (or at 0),
	 * and ends where an old block ends or the next one begins. Only
	 * then are its first and last cuts where one-shot chunking of the
	 * whole file would put them. */
	bool start_anchored, end_anchored;
	uint64_t keep; /* [keep, eb) goes back to the buffer */
};

static bool all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t zero[4096];
	while (n >= sizeof(zero)) {
		if (memcmp(p, zero, sizeof(zero)))
			return false;
		p += sizeof(zero);
		n -= sizeof(zero);
	}
	return memcmp(p, zero, n) == 0;
}

/* Group the flushing segments into runs: each segment widened to the old
 * extents it touches (the one it starts in or right after, the one it ends
 * in), overlapping or touching runs merged. */
static int plan_runs(struct bfs *fs, struct bfs_inode *ip,
		     struct bfs_extent_list *exts, struct run **runs_out,
		     size_t *nruns_out)
{
	const struct wbuf *w = &ip->flushing;
	struct run *runs = calloc(w->n ? w->n : 1, sizeof(*runs));
	size_t nruns = 0;
	struct bfs_extent_list tmp = {0};
	int ret = 0;

	if (!runs)
		return -ENOMEM;
	/* A file without extents (new files, the common case) needs no
	 * look-ups; ip->rec.stored counts the bytes its extents hold. */
	pthread_mutex_lock(&ip->lock);
	bool no_extents = ip->rec.stored == 0;
	pthread_mutex_unlock(&ip->lock);
	for (size_t i = 0; i < w->n; i++) {
		uint64_t a = w->segs[i].off, b = a + w->segs[i].len;
		tmp.n = 0;
		if (!no_extents)
			ret = bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino,
					     a ? a - 1 : 0, b + 1,
					     fs->max_extent, &tmp);
		if (ret)
			break;
		bool next_at_b = false, prev_at_a = a == 0;
		while (tmp.n && tmp.v[tmp.n - 1].off >= b) {
			next_at_b |= tmp.v[tmp.n - 1].off == b;
			tmp.n--;
		}
		/* A block ending right where the data starts needs
		 * re-chunking only if its end was forced. */
		if (tmp.n && tmp.v[0].off + tmp.v[0].len == a) {
			prev_at_a = true;
			if (!tmp.v[0].forced) {
				memmove(tmp.v, tmp.v + 1,
					--tmp.n * sizeof(tmp.v[0]));
			}
		}
		uint64_t ea = a, eb = b;
		if (tmp.n) {
			if (tmp.v[0].off < ea)
				ea = tmp.v[0].off;
			uint64_t end =
			    tmp.v[tmp.n - 1].off + tmp.v[tmp.n - 1].len;
			if (end > eb)
				eb = end;
		}
		struct run *r = nruns ? &runs[nruns - 1] : NULL;
		bool end_anchored = eb > b || next_at_b;
		if (r && ea <= r->eb) {
			if (eb >= r->eb) {
				r->eb = eb;
				r->end_anchored = end_anchored;
			}
		} else {
			r = &runs[nruns++];
			r->ea = ea;
			r->eb = eb;
			r->ext0 = exts->n;
			r->next = 0;
			r->end_anchored = end_anchored;
			r->start_anchored =
			    prev_at_a || (tmp.n && tmp.v[0].off == ea);
		}
		for (size_t k = 0; k < tmp.n; k++) {
			if (r->next && tmp.v[k].off <= exts->v[exts->n - 1].off)
				continue;
			ret = bfs_extent_list_push(exts, &tmp.v[k]);
			if (ret)
				goto out;
			r->next++;
		}
	}
out:
	bfs_extent_list_free(&tmp);
	if (ret) {
		free(runs);
		return ret;
	}
	*runs_out = runs;
	*nruns_out = nruns;
	return 0;
}

static int fill_run(struct bfs *fs, struct bfs_inode *ip, struct run *r,
		    const struct bfs_extent_list *exts)
{
	uint64_t len = r->eb - r->ea;

	/* New data that replaces nothing (appends): chunk it where it lies. */
	if (r->next == 0) {
		for (size_t i = 0; i < ip->flushing.n; i++) {
			struct wb_seg *s = &ip->flushing.segs[i];
			if (s->off == r->ea && s->len == len) {
				r->buf = s->data;
				r->borrowed = true;
				return 0;
			}
		}
	}
	r->buf = malloc(len ? len : 1);
	if (!r->buf)
		return -ENOMEM;
	/* Whatever neither an old extent nor the buffer covers is a hole. */
	uint64_t covered = 0;
	for (size_t k = r->ext0; k < r->ext0 + r->next; k++)
		covered += exts->v[k].len;
	if (covered + ip->flushing.bytes < len)
		memset(r->buf, 0, len);
	for (size_t k = r->ext0; k < r->ext0 + r->next; k++) {
		const struct bfs_extent *e = &exts->v[k];
		int64_t got = block_read(fs, &e->cid, 0,
					 r->buf + (e->off - r->ea), e->len);
		if (got < 0) {
			bfs_log_err("inode %llu: cannot read block at offset "
				    "%llu: %s",
				    (unsigned long long)ip->ino,
				    (unsigned long long)e->off,
				    strerror((int)-got));
			return (int)got;
		}
		if ((uint64_t)got != e->len)
			return -EUCLEAN;
	}
	wbuf_overlay(&ip->flushing, r->ea, r->buf, len);
	return 0;
}

/* One run's chunks to hash: items are claimed with an atomic counter by
 * the flusher and the helper thread alike. */
struct hash_job {
	const uint8_t *base;
	uint64_t base_off;
	const struct chunk *ch;
	size_t n;
	struct blk_cid *cids;
	bool *zero;
	size_t next;	/* atomic: next item to claim */
	unsigned users; /* hp_lock: helpers inside */
};

static void hash_items(struct hash_job *j)
{
	for (;;) {
		size_t k = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (k >= j->n)
			break;
		const uint8_t *p = j->base + (j->ch[k].off - j->base_off);
		j->zero[k] = all_zero(p, j->ch[k].len);
		if (!j->zero[k])
			blk_cid_compute(&j->cids[k], BLK_CODEC_RAW, p,
					j->ch[k].len);
	}
}

static void *hash_helper_main(void *arg)
{
	struct bfs *fs = arg;

	pthread_mutex_lock(&fs->hp_lock);
	for (;;) {
		while (!fs->hp_stop &&
		       (!fs->hp_job ||
			__atomic_load_n(&fs->hp_job->next, __ATOMIC_RELAXED) >=
			    fs->hp_job->n))
			pthread_cond_wait(&fs->hp_cond, &fs->hp_lock);
		if (fs->hp_stop)
			break;
		struct hash_job *j = fs->hp_job;
		j->users++;
		pthread_mutex_unlock(&fs->hp_lock);
		hash_items(j);
		pthread_mutex_lock(&fs->hp_lock);
		j->users--;
		pthread_cond_broadcast(&fs->hp_done);
	}
	pthread_mutex_unlock(&fs->hp_lock);
	return NULL;
}

/* Hash every chunk of @j, with the helper thread if it is free. */
static void hash_chunks(struct bfs *fs, struct hash_job *j)
{
	bool posted = false;

	if (fs->hp_started && j->n > 1) {
		pthread_mutex_lock(&fs->hp_lock);
		if (!fs->hp_job) {
			fs->hp_job = j;
			posted = true;
			pthread_cond_signal(&fs->hp_cond);
		}
		pthread_mutex_unlock(&fs->hp_lock);
	}
	hash_items(j);
	if (posted) {
		pthread_mutex_lock(&fs->hp_lock);
		fs->hp_job = NULL;
		while (j->users)
			pthread_cond_wait(&fs->hp_done, &fs->hp_lock);
		pthread_mutex_unlock(&fs->hp_lock);
	}
}

static int chunk_run(struct bfs *fs, const struct run *r, struct chunk **out,
		     size_t *nout)
{
	struct cdc_chunker c;
	size_t cap = 16, n = 0;
	struct chunk *v = malloc(cap * sizeof(*v));
	uint64_t pos = 0, len = r->eb - r->ea;

	if (!v)
		return -ENOMEM;
	int ret = cdc_chunker_init(&c, fs->cfg.chunker, fs->cfg.chunk_min,
				   fs->cfg.chunk_avg, fs->cfg.chunk_max);
	if (ret) {
		free(v);
		return ret;
	}
	while (pos < len) {
		size_t cut = cdc_chunker_scan(&c, r->buf + pos, len - pos);
		bool natural = cut != CDC_NEED_MORE;
		if (!natural)
			cut = len - pos;
		if (n == cap) {
			cap *= 2;
			struct chunk *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (struct chunk){r->ea + pos, (uint32_t)cut, natural};
		pos += cut;
	}
	*out = v;
	*nout = n;
	return 0;
}

/* Turn the runs into new extents in @t. For the last run, when it reaches
 * EOF and this is not a final flush, stop at the last content-defined cut
 * past every old extent it replaces and hand the rest back in *tail_off:
 * more data is likely to follow. Returns the bytes committed or -errno. */
static int64_t build_txn(struct bfs *fs, struct bfs_inode *ip,
			 struct blk_txn *t, struct run *runs, size_t nruns,
			 const struct bfs_extent_list *exts, bool final,
			 int64_t *stored_delta)
{
	int64_t committed = 0;

	*stored_delta = 0;
	for (size_t i = 0; i < nruns; i++) {
		struct run *r = &runs[i];
		struct chunk *ch;
		size_t nch;
		uint64_t end = r->eb;

		r->keep = UINT64_MAX;
		/* Data that follows a gap (writeback out of order, a hole
		 * being filled) waits for what comes before it, unless this
		 * flush must commit everything. */
		if (!final && !r->start_anchored) {
			r->keep = r->ea;
			continue;
		}
		int ret = chunk_run(fs, r, &ch, &nch);
		if (ret)
			return ret;
		/* A run not followed by stable data (the end of a file being
		 * appended to, or a gap) commits up to its last
		 * content-defined cut; the rest waits for what follows. */
		if (!final && !r->end_anchored) {
			uint64_t old_end = r->ea;
			for (size_t k = r->ext0; k < r->ext0 + r->next; k++)
				old_end = exts->v[k].off + exts->v[k].len;
			end = r->ea;
			for (size_t k = 0; k < nch; k++) {
				uint64_t ce = ch[k].off + ch[k].len;
				if (ch[k].natural && ce >= old_end)
					end = ce;
			}
			if (end < r->eb)
				r->keep = end;
			if (end == r->ea) {
				free(ch);
				continue; /* nothing to commit yet */
			}
		}
		for (size_t k = r->ext0; k < r->ext0 + r->next; k++) {
			uint8_t key[16];
			blk_txn_delete(
			    t, BFS_CF_EXTENTS, key,
			    bfs_extent_key(key, ip->ino, exts->v[k].off));
			ret = blk_txn_unref(t, &exts->v[k].cid);
			if (ret) {
				free(ch);
				return ret;
			}
			*stored_delta -= exts->v[k].len;
		}
		size_t ncommit = 0;
		while (ncommit < nch && ch[ncommit].off < end)
			ncommit++;
		struct blk_cid *cids = malloc((ncommit + 1) * sizeof(*cids));
		bool *zero = malloc(ncommit + 1);
		if (!cids || !zero) {
			free(cids);
			free(zero);
			free(ch);
			return -ENOMEM;
		}
		struct hash_job job = {
		    .base = r->buf,
		    .base_off = r->ea,
		    .ch = ch,
		    .n = ncommit,
		    .cids = cids,
		    .zero = zero,
		};
		hash_chunks(fs, &job);
		for (size_t k = 0; !ret && k < ncommit; k++) {
			const uint8_t *p = r->buf + (ch[k].off - r->ea);
			uint8_t key[16], val[BFS_EXTENT_VAL_MAX];

			if (zero[k])
				continue; /* stays a hole */
			__atomic_fetch_add(&fs->n_hashed, ch[k].len,
					   __ATOMIC_RELAXED);
			blk_txn_put(
			    t, BFS_CF_EXTENTS, key,
			    bfs_extent_key(key, ip->ino, ch[k].off), val,
			    bfs_extent_encode(val, ch[k].len, !ch[k].natural,
					      &cids[k]));
			ret = blk_txn_ref(t, &cids[k], p, ch[k].len);
			*stored_delta += ch[k].len;
		}
		free(cids);
		free(zero);
		if (ret) {
			free(ch);
			return ret;
		}
		committed += (int64_t)(end - r->ea);
		free(ch);
	}
	return committed;
}

/* One flush pass: take at least @limit dirty bytes (whole segments) of
 * @ip and turn them into blocks and extents. With @final, and when nothing
 * is left behind them, everything taken is committed; otherwise ends that
 * are not followed by stable data keep their tail in the buffer.
 * *committed gets the bytes committed, *more whether dirty bytes remain.
 * Returns 0 or -errno (the data then stays buffered, flush_err set). */
static int flush_pass(struct bfs *fs, struct bfs_inode *ip, bool final,
		      uint64_t limit, uint64_t *committed, bool *more)
{
	struct bfs_extent_list exts = {0};
	struct run *runs = NULL;
	size_t nruns = 0;
	int64_t stored_delta = 0, done = 0;
	struct blk_txn *t = NULL;
	int ret;

	*committed = 0;
	*more = false;
	pthread_mutex_lock(&ip->lock);
	while (ip->editing)
		pthread_cond_wait(&ip->cond, &ip->lock);
	if (!ip->dirty.n || fs->cfg.read_only) {
		ret = ip->flush_err;
		ip->flush_err = 0;
		pthread_mutex_unlock(&ip->lock);
		return ret;
	}
	ret = wbuf_take_prefix(&ip->dirty, limit, &ip->flushing);
	if (ret) {
		pthread_mutex_unlock(&ip->lock);
		return ret;
	}
	ip->editing = true;
	/* Data still buffered behind what was taken: not the last word. */
	if (ip->dirty.n)
		final = false;
	pthread_mutex_unlock(&ip->lock);

	ret = plan_runs(fs, ip, &exts, &runs, &nruns);
	for (size_t i = 0; !ret && i < nruns; i++)
		ret = fill_run(fs, ip, &runs[i], &exts);
	if (!ret) {
		t = blk_txn_new(fs->db);
		if (!t)
			ret = -ENOMEM;
	}
	if (!ret) {
		done = build_txn(fs, ip, t, runs, nruns, &exts, final,
				 &stored_delta);
		if (done < 0)
			ret = (int)done;
	}

	pthread_rwlock_wrlock(&ip->ext_lock);
	pthread_mutex_lock(&ip->lock);
	uint64_t before = ip->dirty.bytes + ip->flushing.bytes;
	if (!ret) {
		ip->rec.stored =
		    (uint64_t)((int64_t)ip->rec.stored + stored_delta);
		txn_put_inode(t, ip);
		ret = blk_txn_commit(t, false);
		if (!ret && fs->remote.committed)
			fs->remote.committed(fs->remote.arg);
	}
	/* What was not committed goes back under newer writes. */
	for (size_t i = 0; !ret && i < nruns; i++) {
		struct run *r = &runs[i];
		if (r->keep == UINT64_MAX)
			continue;
		ret = wbuf_write_under(&ip->dirty, r->keep,
				       r->buf + (r->keep - r->ea),
				       r->eb - r->keep);
	}
	if (ret) {
		for (size_t i = 0; i < ip->flushing.n; i++) {
			struct wb_seg *s = &ip->flushing.segs[i];
			if (wbuf_write_under(&ip->dirty, s->off, s->data,
					     s->len))
				bfs_log_err("inode %llu: out of memory putting "
					    "back unflushed data",
					    (unsigned long long)ip->ino);
		}
		ip->flush_err = ret;
	}
	wbuf_clear(&ip->flushing);
	uint64_t after = ip->dirty.bytes;
	/* Left-over bytes wait for a flush_at more before the next try. */
	ip->flush_floor = final || ret ? 0 : after;
	ip->editing = false;
	pthread_cond_broadcast(&ip->cond);
	pthread_mutex_unlock(&ip->lock);
	pthread_rwlock_unlock(&ip->ext_lock);
	dirty_account(fs, (int64_t)after - (int64_t)before);

	blk_txn_free(t);
	for (size_t i = 0; i < nruns; i++)
		if (!runs[i].borrowed)
			free(runs[i].buf);
	free(runs);
	bfs_extent_list_free(&exts);
	if (!ret)
		*committed = (uint64_t)done;
	*more = after > 0;
	__atomic_fetch_add(&fs->n_flushes, 1, __ATOMIC_RELAXED);
	if (!ret)
		__atomic_fetch_add(&fs->n_committed, (uint64_t)done,
				   __ATOMIC_RELAXED);
	return ret;
}

/* Flush @ip: one pass of about flush_at bytes, or with @final passes until
 * nothing is buffered (each pass that commits nothing takes twice as much
 * the next time, so this ends). *committed (optional) gets the bytes
 * committed. */
static int flush_inode(struct bfs *fs, struct bfs_inode *ip, bool final,
		       uint64_t *committed)
{
	uint64_t limit = fs->cfg.flush_at, total = 0, done;
	bool more;
	int ret;

	/* A writer that keeps appending must not keep fsync here forever:
	 * after as many passes as the buffer held at the start (and some),
	 * one pass takes everything. */
	pthread_mutex_lock(&ip->lock);
	uint64_t passes = ip->dirty.bytes / fs->cfg.flush_at + 8;
	pthread_mutex_unlock(&ip->lock);
	do {
		if (!--passes)
			limit = UINT64_MAX;
		ret = flush_pass(fs, ip, final, limit, &done, &more);
		total += done;
		if (!done && limit < (UINT64_MAX >> 1))
			limit *= 2;
	} while (final && !ret && more && passes);
	if (committed)
		*committed = total;
	return ret;
}

/* Over the memory bound, a writer first chunks its own file (a flush that
 * keeps chunk boundaries where they belong), then waits for the flushers;
 * only if nothing moves for THROTTLE_WAIT_MS does it force out its own
 * file whole. Returns 0 or the error of that flush. */
#define THROTTLE_WAIT_MS 2000
static int throttle(struct bfs *fs, struct bfs_inode *ip)
{
	pthread_mutex_lock(&fs->q_lock);
	bool over = fs->dirty_bytes > fs->cfg.dirty_max;
	pthread_mutex_unlock(&fs->q_lock);
	if (!over)
		return 0;
	__atomic_fetch_add(&fs->n_sync_flushes, 1, __ATOMIC_RELAXED);
	int ret = flush_inode(fs, ip, false, NULL);
	if (ret)
		return ret;
	pthread_mutex_lock(&fs->q_lock);
	for (int waited = 0;
	     fs->dirty_bytes > fs->cfg.dirty_max && waited < THROTTLE_WAIT_MS;
	     waited += 100) {
		struct timespec ts;
		blk_deadline(&ts, 100);
		pthread_cond_timedwait(&fs->q_drain, &fs->q_lock, &ts);
	}
	over = fs->dirty_bytes > fs->cfg.dirty_max;
	pthread_mutex_unlock(&fs->q_lock);
	if (over)
		ret = flush_inode(fs, ip, true, NULL);
	return ret;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t space_reserve(uint64_t total)
{
	uint64_t r = total >> SPACE_RESERVE_SHIFT;
	return r < SPACE_RESERVE_MIN   ? SPACE_RESERVE_MIN
	       : r > SPACE_RESERVE_MAX ? SPACE_RESERVE_MAX
				       : r;
}

/* Bytes writes may still add (see "Space" above), looking at the file
 * system again when the last look is old or little was left. Called
 * with q_lock held. */
static uint64_t space_room_locked(struct bfs *fs, bool fresh)
{
	uint64_t t = mono_ns();

	if (fresh || t - fs->space_at >= SPACE_LOOK_NS ||
	    fs->space_avail <
		fs->space_pending + fs->dirty_bytes + SPACE_NEAR) {
		struct blk_db_space sp;

		if (blk_db_space(fs->db, &sp) == 0) {
			uint64_t r = space_reserve(sp.total);
			fs->space_total = sp.total;
			fs->space_avail = sp.avail > r ? sp.avail - r : 0;
			fs->space_pending = sp.pending;
			fs->space_at = t;
		}
	}
	uint64_t used = fs->space_pending + fs->dirty_bytes;
	return fs->space_avail > used ? fs->space_avail - used : 0;
}

/* 0 if @len more bytes fit, else -ENOSPC (logged once a minute). */
static int space_admit(struct bfs *fs, uint64_t len)
{
	pthread_mutex_lock(&fs->q_lock);
	uint64_t room = space_room_locked(fs, false);
	int ret = room >= len ? 0 : -ENOSPC;
	uint64_t t = mono_ns();
	bool warn =
	    ret && (!fs->space_warned || t - fs->space_warned >= SPACE_WARN_NS);
	if (warn)
		fs->space_warned = t;
	uint64_t total = fs->space_total;
	pthread_mutex_unlock(&fs->q_lock);
	if (warn)
		bfs_log_err("%s is full: writes fail with ENOSPC (%llu bytes "
			    "left, %llu of %llu kept in reserve); delete files "
			    "to make room",
			    fs->node_dir, (unsigned long long)room,
			    (unsigned long long)space_reserve(total),
			    (unsigned long long)total);
	return ret;
}

int64_t bfs_write(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
		  const void *buf, size_t len)
{
	if (fs->cfg.read_only)
		return -EROFS;
	if (off >= BFS_FILE_MAX || len > BFS_FILE_MAX - off)
		return -EFBIG;
	int err = space_admit(fs, len);
	if (err)
		return err;

	pthread_mutex_lock(&ip->lock);
	uint64_t before = ip->dirty.bytes;
	int ret = wbuf_write(&ip->dirty, off, buf, len);
	if (ret) {
		pthread_mutex_unlock(&ip->lock);
		return ret;
	}
	if (off + len > ip->rec.size)
		ip->rec.size = off + len;
	now(&ip->rec.mtime);
	ip->rec.ctime = ip->rec.mtime;
	bool queue = !ip->queued &&
		     ip->dirty.bytes >= ip->flush_floor + fs->cfg.flush_at;
	if (queue)
		ip->queued = true;
	int64_t delta = (int64_t)ip->dirty.bytes - (int64_t)before;
	pthread_mutex_unlock(&ip->lock);

	if (queue)
		enqueue(fs, ip);
	dirty_account(fs, delta);
	ret = throttle(fs, ip);
	if (!ret && fs->remote.throttle)
		fs->remote.throttle(fs->remote.arg);
	return ret ? ret : (int64_t)len;
}

int bfs_fsync(struct bfs *fs, struct bfs_inode *ip, bool durable)
{
	int ret = flush_inode(fs, ip, true, NULL);
	if (!ret && durable)
		ret = bfs_fsync_meta(fs);
	return ret;
}

int bfs_fsync_meta(struct bfs *fs)
{
	int ret = write_attrs(fs);
	if (!ret)
		ret = blk_db_sync(fs->db);
	/* The promise of fsync: on the placement at full redundancy. */
	if (!ret && fs->remote.barrier)
		ret = fs->remote.barrier(fs->remote.arg);
	return ret;
}

/* Cut the file's extent map at @size (the caller owns ip->editing). */
static int truncate_extents(struct bfs *fs, struct bfs_inode *ip, uint64_t size,
			    struct blk_txn *t, int64_t *stored_delta,
			    void **keep)
{
	struct bfs_extent_list exts = {0};
	int ret = bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino, size,
				 UINT64_MAX, fs->max_extent, &exts);
	for (size_t k = 0; !ret && k < exts.n; k++) {
		const struct bfs_extent *e = &exts.v[k];
		uint8_t key[16];

		blk_txn_delete(t, BFS_CF_EXTENTS, key,
			       bfs_extent_key(key, ip->ino, e->off));
		ret = blk_txn_unref(t, &e->cid);
		*stored_delta -= e->len;
		if (ret || e->off >= size)
			continue;
		/* The extent straddling the new end keeps its head. */
		uint32_t head = (uint32_t)(size - e->off);
		uint8_t *p = malloc(head);
		if (!p) {
			ret = -ENOMEM;
			break;
		}
		int64_t got = block_read(fs, &e->cid, 0, p, head);
		if (got != head) {
			free(p);
			ret = got < 0 ? (int)got : -EUCLEAN;
			break;
		}
		*keep = p;
		if (all_zero(p, head))
			continue;
		struct blk_cid cid;
		uint8_t val[BFS_EXTENT_VAL_MAX];
		blk_cid_compute(&cid, BLK_CODEC_RAW, p, head);
		blk_txn_put(t, BFS_CF_EXTENTS, key, 16, val,
			    bfs_extent_encode(val, head, true, &cid));
		ret = blk_txn_ref(t, &cid, p, head);
		*stored_delta += head;
	}
	bfs_extent_list_free(&exts);
	return ret;
}

static int do_truncate(struct bfs *fs, struct bfs_inode *ip, uint64_t size,
		       struct blk_txn *t, void **keep)
{
	int64_t stored_delta = 0;
	int ret = 0;

	if (size > BFS_FILE_MAX)
		return -EFBIG;
	if (size < ip->rec.size) {
		ret = truncate_extents(fs, ip, size, t, &stored_delta, keep);
		if (ret)
			return ret;
	}
	uint64_t before = ip->dirty.bytes;
	wbuf_truncate(&ip->dirty, size);
	dirty_account(fs, (int64_t)ip->dirty.bytes - (int64_t)before);
	ip->rec.size = size;
	ip->rec.stored = (uint64_t)((int64_t)ip->rec.stored + stored_delta);
	return 0;
}

static void mark_attr_dirty(struct bfs *fs, struct bfs_inode *ip);

/* After a failed batch: keep the change pending (ip->lock held). */
static void mark_attr_dirty_locked_retry(struct bfs *fs, struct bfs_inode *ip)
{
	ip->attr_dirty = false;
	mark_attr_dirty(fs, ip);
}

/* Note that @ip's record changed in memory only (the caller holds
 * ip->lock); write_attrs() writes it. */
static void mark_attr_dirty(struct bfs *fs, struct bfs_inode *ip)
{
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
static int write_attrs(struct bfs *fs)
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
		struct blk_txn *t = blk_txn_new(fs->db);
		int ret = t ? 0 : -ENOMEM;
		pthread_mutex_lock(&fs->ns_lock);
		for (size_t i = 0; i < n; i++) {
			pthread_mutex_lock(&batch[i]->lock);
			if (t && batch[i]->attr_dirty)
				txn_put_inode(t, batch[i]);
		}
		if (t)
			ret = blk_txn_commit(t, false);
		for (size_t i = 0; i < n; i++) {
			if (ret)
				mark_attr_dirty_locked_retry(fs, batch[i]);
			pthread_mutex_unlock(&batch[i]->lock);
		}
		pthread_mutex_unlock(&fs->ns_lock);
		blk_txn_free(t);
		for (size_t i = 0; i < n; i++)
			bfs_iput(fs, batch[i]);
		if (ret) {
			bfs_log_err("writing inode attributes failed: %s",
				    strerror(-ret));
			first = first ? first : ret;
			break;
		}
	}
	return first;
}

int bfs_setattr(struct bfs *fs, struct bfs_inode *ip, const struct stat *st,
		unsigned valid)
{
	void *keep = NULL;
	struct timespec ts;
	bool sized = valid & BFS_SET_SIZE;
	int ret;

	if (fs->cfg.read_only)
		return -EROFS;
	if (sized && S_ISDIR(ip->rec.mode))
		return -EISDIR;
	if (sized && !S_ISREG(ip->rec.mode))
		return -EINVAL;

	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t)
		return -ENOMEM;
	if (sized)
		pthread_rwlock_wrlock(&ip->ext_lock);
	pthread_mutex_lock(&ip->lock);
	if (sized) {
		/* Own the extent map: no flush may run meanwhile. */
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
		ret = do_truncate(fs, ip, (uint64_t)st->st_size, t, &keep);
		if (ret)
			goto out;
	}
	now(&ts);
	if (valid & BFS_SET_MODE)
		ip->rec.mode = (ip->rec.mode & S_IFMT) | (st->st_mode & 07777);
	if (valid & BFS_SET_UID)
		ip->rec.uid = st->st_uid;
	if (valid & BFS_SET_GID)
		ip->rec.gid = st->st_gid;
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
	if (sized) {
		txn_put_inode(t, ip);
		ret = blk_txn_commit(t, false);
	} else {
		mark_attr_dirty(fs, ip);
		ret = 0;
	}
out:
	pthread_mutex_unlock(&ip->lock);
	if (sized)
		pthread_rwlock_unlock(&ip->ext_lock);
	blk_txn_free(t);
	free(keep);
	return ret;
}

int bfs_fallocate(struct bfs *fs, struct bfs_inode *ip, int mode, uint64_t off,
		  uint64_t len)
{
	if (fs->cfg.read_only)
		return -EROFS;
	/* Blocks are content-addressed: there is nothing to preallocate.
	 * Plain allocation only extends the size. */
	if (mode & ~1) /* FALLOC_FL_KEEP_SIZE is 1 */
		return -EOPNOTSUPP;
	if (mode & 1)
		return 0;
	pthread_mutex_lock(&ip->lock);
	uint64_t size = ip->rec.size;
	pthread_mutex_unlock(&ip->lock);
	if (off + len <= size)
		return 0;
	struct stat st = {.st_size = (off_t)(off + len)};
	return bfs_setattr(fs, ip, &st, BFS_SET_SIZE);
}

/* ---- the read path ----------------------------------------------------- */

int bfs_open_file(struct bfs *fs, struct bfs_inode *ip, struct bfs_file **out)
{
	struct bfs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->lock, NULL);
	f->ip = ip;
	pthread_mutex_lock(&fs->itab_lock);
	ip->refs++;
	f->next = fs->files;
	if (fs->files)
		fs->files->prev = f;
	fs->files = f;
	pthread_mutex_unlock(&fs->itab_lock);
	pthread_mutex_lock(&ip->lock);
	ip->nopen++;
	pthread_mutex_unlock(&ip->lock);
	*out = f;
	return 0;
}

void bfs_read_done(struct bfs *fs, struct bfs_file *f)
{
	pthread_mutex_lock(&f->lock);
	bool reader = f->next_off != 0;
	pthread_mutex_unlock(&f->lock);
	if (reader && fs->remote.read_done)
		fs->remote.read_done(fs->remote.arg);
}

int bfs_release_file(struct bfs *fs, struct bfs_file *f)
{
	struct bfs_inode *ip = f->ip;

	pthread_mutex_lock(&fs->itab_lock);
	if (f->prev)
		f->prev->next = f->next;
	else
		fs->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&fs->itab_lock);
	pthread_mutex_lock(&ip->lock);
	ip->nopen--;
	int ret = ip->flush_err;
	pthread_mutex_unlock(&ip->lock);
	bfs_flush_async(fs, ip);
	free(f->data);
	pthread_mutex_destroy(&f->lock);
	free(f);
	bfs_iput(fs, ip);
	return ret;
}

/* Copy [off, off+len) of extent @e into @dst, through the handle's block
 * cache when the read wants part of the block. */
static int read_extent(struct bfs *fs, struct bfs_file *f,
		       const struct bfs_extent *e, uint64_t off, uint8_t *dst,
		       size_t len)
{
	if (off == e->off && len == e->len) {
		int64_t got = block_read(fs, &e->cid, 0, dst, len);
		if (got < 0)
			return (int)got;
		return (size_t)got == len ? 0 : -EIO;
	}
	pthread_mutex_lock(&f->lock);
	if (!f->cached || !blk_cid_equal(&f->cid, &e->cid)) {
		void *data;
		size_t dlen;
		int ret = block_get(fs, &e->cid, &data, &dlen);
		if (ret) {
			pthread_mutex_unlock(&f->lock);
			return ret;
		}
		free(f->data);
		f->data = data;
		f->len = dlen;
		f->cid = e->cid;
		f->cached = true;
	}
	int ret = 0;
	if (off - e->off + len > f->len)
		ret = -EIO;
	else
		memcpy(dst, (uint8_t *)f->data + (off - e->off), len);
	pthread_mutex_unlock(&f->lock);
	return ret;
}

#define PREFETCH_BYTES (16u << 20)
#define SEQ_SLACK (2u << 20)

/* A sequential reader of blocks that are not local: ask the cluster for
 * the blocks of the next PREFETCH_BYTES, once each. Called with ext_lock
 * held shared. */
static void prefetch(struct bfs *fs, struct bfs_file *f, uint64_t off,
		     size_t len)
{
	struct bfs_inode *ip = f->ip;
	uint64_t from, to;

	pthread_mutex_lock(&f->lock);
	/* Sequential give or take the kernel's readahead, whose requests
	 * reach our worker threads slightly out of order. */
	bool seq = off <= f->next_off + SEQ_SLACK &&
		   off + len + SEQ_SLACK >= f->next_off;
	if (!seq || off + len > f->next_off)
		f->next_off = off + len;
	from = f->ahead > off + len ? f->ahead : off + len;
	to = off + len + PREFETCH_BYTES;
	/* ask in steps of a quarter of the window, not at every read */
	bool go = seq && to >= from + PREFETCH_BYTES / 4;
	if (go)
		f->ahead = to;
	pthread_mutex_unlock(&f->lock);
	if (!go)
		return;

	struct bfs_extent_list exts = {0};
	struct blk_cid cids[64];
	size_t n = 0;
	if (bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino, from, to,
			   fs->max_extent, &exts))
		return;
	for (size_t k = 0; k < exts.n && n < 64; k++) {
		uint64_t refs;
		uint32_t blen;
		bool local = true;
		if (exts.v[k].off < from)
			continue; /* asked already, or being read */
		if (blk_store_info(fs->db, &exts.v[k].cid, &refs, &blen,
				   &local) == 0 &&
		    !local)
			cids[n++] = exts.v[k].cid;
	}
	bfs_extent_list_free(&exts);
	if (n)
		fs->remote.prefetch(fs->remote.arg, cids, n);
}

int64_t bfs_read(struct bfs *fs, struct bfs_file *f, uint64_t off, void *buf,
		 size_t len)
{
	struct bfs_inode *ip = f->ip;
	struct bfs_extent_list exts = {0};
	int ret;

	pthread_rwlock_rdlock(&ip->ext_lock);
	pthread_mutex_lock(&ip->lock);
	uint64_t size = ip->rec.size;
	pthread_mutex_unlock(&ip->lock);
	if (off >= size) {
		pthread_rwlock_unlock(&ip->ext_lock);
		return 0;
	}
	if (len > size - off)
		len = size - off;

	if (fs->remote.prefetch)
		prefetch(fs, f, off, len);
	ret = bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino, off, off + len,
			     fs->max_extent, &exts);
	uint64_t pos = off;
	for (size_t k = 0; !ret && k < exts.n; k++) {
		const struct bfs_extent *e = &exts.v[k];
		uint64_t a = e->off > off ? e->off : off;
		uint64_t b =
		    e->off + e->len < off + len ? e->off + e->len : off + len;
		if (a > pos)
			memset((uint8_t *)buf + (pos - off), 0, a - pos);
		ret =
		    read_extent(fs, f, e, a, (uint8_t *)buf + (a - off), b - a);
		if (ret)
			bfs_log_err("inode %llu: read of block at offset %llu "
				    "failed: %s",
				    (unsigned long long)ip->ino,
				    (unsigned long long)e->off, strerror(-ret));
		pos = b;
	}
	if (!ret && pos < off + len)
		memset((uint8_t *)buf + (pos - off), 0, off + len - pos);
	if (!ret) {
		pthread_mutex_lock(&ip->lock);
		wbuf_overlay(&ip->flushing, off, buf, len);
		wbuf_overlay(&ip->dirty, off, buf, len);
		pthread_mutex_unlock(&ip->lock);
	}
	pthread_rwlock_unlock(&ip->ext_lock);
	bfs_extent_list_free(&exts);
	if (ret)
		return ret == -ENOENT || ret == -EBADMSG || ret == -EUCLEAN
			   ? -EIO
			   : ret;
	return (int64_t)len;
}

/* ---- namespace --------------------------------------------------------- */

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

int bfs_mknod(struct bfs *fs, uint64_t parent, const char *name, mode_t mode,
	      dev_t rdev, uid_t uid, gid_t gid, const char *target,
	      struct bfs_inode **out)
{
	struct bfs_inode *dp = NULL, *ip = NULL;
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
	if (ret)
		goto out;
	if ((ret = name_free(fs, parent, name)))
		goto out;
	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t) {
		ret = -ENOMEM;
		goto out;
	}
	ret = alloc_ino(fs, &ino);
	if (ret || !(ip = inode_alloc(ino))) {
		blk_txn_free(t);
		ret = ret ? ret : -ENOMEM;
		goto out;
	}
	now(&ts);
	pthread_mutex_lock(&dp->lock);
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
	    .atime = ts,
	    .mtime = ts,
	    .ctime = ts,
	    .btime = ts,
	};
	if (target) {
		ip->target = strdup(target);
		ip->rec.size = strlen(target);
		if (!ip->target) {
			pthread_mutex_unlock(&dp->lock);
			blk_txn_free(t);
			ret = -ENOMEM;
			goto out;
		}
	}
	txn_put_inode(t, ip);
	txn_put_dirent(t, parent, name, ip);
	touch_dir(dp, &ts);
	if (S_ISDIR(mode))
		dp->rec.nlink++;
	txn_put_inode(t, dp);
	ret = txn_commit(t, false);
	if (ret && S_ISDIR(mode))
		dp->rec.nlink--;
	pthread_mutex_unlock(&dp->lock);
	if (!ret) {
		*out = itab_insert(fs, ip);
		ip = NULL;
	}
out:
	pthread_mutex_unlock(&fs->ns_lock);
	if (ip)
		inode_free(ip);
	bfs_iput(fs, dp);
	return ret;
}

int bfs_link(struct bfs *fs, uint64_t ino, uint64_t parent, const char *name,
	     struct bfs_inode **out)
{
	struct bfs_inode *dp = NULL, *ip = NULL;
	struct timespec ts;
	int ret;

	if (fs->cfg.read_only)
		return -EROFS;
	if (strlen(name) > BFS_NAME_MAX)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&fs->ns_lock);
	ret = get_dir(fs, parent, &dp);
	if (ret)
		goto out;
	ret = bfs_iget(fs, ino, &ip);
	if (ret)
		goto out;
	if (S_ISDIR(ip->rec.mode)) {
		ret = -EPERM;
		goto out;
	}
	if (ip->rec.nlink == 0) {
		ret = -ENOENT;
		goto out;
	}
	if (ip->rec.nlink >= UINT32_MAX - 1) {
		ret = -EMLINK;
		goto out;
	}
	if ((ret = name_free(fs, parent, name)))
		goto out;
	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t) {
		ret = -ENOMEM;
		goto out;
	}
	now(&ts);
	txn_put_dirent(t, parent, name, ip);
	pthread_mutex_lock(&dp->lock);
	touch_dir(dp, &ts);
	txn_put_inode(t, dp);
	pthread_mutex_lock(&ip->lock);
	ip->rec.nlink++;
	ip->rec.ctime = ts;
	txn_put_inode(t, ip);
	ret = txn_commit(t, false);
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
static void txn_drop_link(struct blk_txn *t, struct bfs_inode *ip,
			  const struct timespec *ts)
{
	if (S_ISDIR(ip->rec.mode))
		ip->rec.nlink = 0;
	else if (ip->rec.nlink)
		ip->rec.nlink--;
	ip->rec.ctime = *ts;
	txn_put_inode(t, ip);
	if (ip->rec.nlink == 0) {
		char key[32];
		orphan_key(key, ip->ino);
		blk_txn_put(t, BFS_CF_META, key, strlen(key), "", 0);
	}
}

int bfs_unlink(struct bfs *fs, uint64_t parent, const char *name, bool dir)
{
	struct bfs_inode *dp = NULL, *ip = NULL;
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
	if ((ret = can_remove(fs, ip, dir)))
		goto out;
	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t) {
		ret = -ENOMEM;
		goto out;
	}
	now(&ts);
	txn_del_dirent(t, parent, name);
	pthread_mutex_lock(&dp->lock);
	touch_dir(dp, &ts);
	if (dir)
		dp->rec.nlink--;
	txn_put_inode(t, dp);
	pthread_mutex_lock(&ip->lock);
	struct bfs_inode_rec saved = ip->rec;
	txn_drop_link(t, ip, &ts);
	ret = txn_commit(t, false);
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

int bfs_rename(struct bfs *fs, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, unsigned flags)
{
	struct bfs_inode *sdp = NULL, *ddp = NULL, *sip = NULL, *dip = NULL;
	uint64_t sino, dino = 0;
	uint8_t dtype;
	struct timespec ts;
	int ret;

	if (fs->cfg.read_only)
		return -EROFS;
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	if (strlen(newname) > BFS_NAME_MAX)
		return -ENAMETOOLONG;

	pthread_mutex_lock(&fs->ns_lock);
	ret = get_dir(fs, parent, &sdp);
	if (!ret)
		ret = get_dir(fs, newparent, &ddp);
	if (!ret)
		ret = dir_lookup(fs, parent, name, &sino, &dtype);
	if (!ret)
		ret = bfs_iget(fs, sino, &sip);
	if (ret)
		goto out;
	ret = dir_lookup(fs, newparent, newname, &dino, &dtype);
	if (ret == -ENOENT) {
		dino = 0;
		ret = 0;
	}
	if (ret)
		goto out;
	if (dino && (flags & RENAME_NOREPLACE)) {
		ret = -EEXIST;
		goto out;
	}
	if (!dino && (flags & RENAME_EXCHANGE)) {
		ret = -ENOENT;
		goto out;
	}
	if (dino == sino)
		goto out; /* the same file under both names: nothing to do */
	if (dino && (ret = bfs_iget(fs, dino, &dip)))
		goto out;

	bool sdir = S_ISDIR(sip->rec.mode);
	bool ddir = dip && S_ISDIR(dip->rec.mode);
	/* Replacing a name removes what it named: same rules as unlink. */
	if (dip && !(flags & RENAME_EXCHANGE) &&
	    (ret = can_remove(fs, dip, sdir)))
		goto out;

	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t) {
		ret = -ENOMEM;
		goto out;
	}
	now(&ts);
	/* Every inode involved is locked (distinct ones once) so the records
	 * written match memory; restore on failure. */
	struct bfs_inode *locked[4] = {sdp, ddp, sip, dip};
	struct bfs_inode_rec saved[4];
	for (int i = 0; i < 4; i++) {
		bool dup = !locked[i];
		for (int j = 0; j < i && !dup; j++)
			dup = locked[j] == locked[i];
		if (dup) {
			locked[i] = NULL;
			continue;
		}
		pthread_mutex_lock(&locked[i]->lock);
		saved[i] = locked[i]->rec;
	}

	if (flags & RENAME_EXCHANGE) {
		txn_put_dirent(t, parent, name, dip);
		txn_put_dirent(t, newparent, newname, sip);
		if (sdp != ddp && sdir != ddir) {
			struct bfs_inode *from = sdir ? sdp : ddp;
			struct bfs_inode *to = sdir ? ddp : sdp;
			from->rec.nlink--;
			to->rec.nlink++;
		}
		dip->rec.ctime = ts;
		txn_put_inode(t, dip);
	} else {
		txn_del_dirent(t, parent, name);
		txn_put_dirent(t, newparent, newname, sip);
		if (dip) {
			if (ddir)
				ddp->rec.nlink--;
			txn_drop_link(t, dip, &ts);
		}
		if (sdir && sdp != ddp) {
			sdp->rec.nlink--;
			ddp->rec.nlink++;
		}
	}
	sip->rec.ctime = ts;
	txn_put_inode(t, sip);
	touch_dir(sdp, &ts);
	txn_put_inode(t, sdp);
	if (ddp != sdp) {
		touch_dir(ddp, &ts);
		txn_put_inode(t, ddp);
	}
	ret = txn_commit(t, false);
	for (int i = 3; i >= 0; i--) {
		if (!locked[i])
			continue;
		if (ret)
			locked[i]->rec = saved[i];
		pthread_mutex_unlock(&locked[i]->lock);
	}
out:
	pthread_mutex_unlock(&fs->ns_lock);
	bfs_iput(fs, dip);
	bfs_iput(fs, sip);
	bfs_iput(fs, ddp);
	bfs_iput(fs, sdp);
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

/* Free an unlinked inode's data and records (it is out of the table). */
static int purge_inode(struct bfs *fs, struct bfs_inode *ip)
{
	uint8_t prefix[8], key[8];
	char okey[32];
	int ret = 0;

	if (fs->cfg.read_only)
		return 0;
	struct blk_txn *t = blk_txn_new(fs->db);
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
	blk_txn_delete(t, BFS_CF_INODES, key, bfs_ino_key(key, ip->ino));
	orphan_key(okey, ip->ino);
	blk_txn_delete(t, BFS_CF_META, okey, strlen(okey));
	if (ret) {
		blk_txn_free(t);
		bfs_log_err("inode %llu: cannot free its data: %s",
			    (unsigned long long)ip->ino, strerror(-ret));
		return ret;
	}
	return txn_commit(t, false);
}

/* Free inodes that were unlinked while open when the daemon last stopped. */
static int purge_orphans(struct bfs *fs)
{
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_META, "orphan:", 7, NULL, 0);
	uint64_t n = 0;
	int ret = 0;

	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen;
		const char *k = blk_iter_key(it, &klen);
		char hex[17];
		if (klen != 7 + 16)
			continue;
		memcpy(hex, k + 7, 16);
		hex[16] = 0;
		struct bfs_inode *ip = inode_alloc(strtoull(hex, NULL, 16));
		if (!ip) {
			ret = -ENOMEM;
			break;
		}
		ret = purge_inode(fs, ip);
		inode_free(ip);
		if (ret)
			break;
		n++;
	}
	if (!ret)
		ret = blk_iter_status(it);
	blk_iter_free(it);
	if (n)
		bfs_log_info("freed %llu files deleted while open",
			     (unsigned long long)n);
	return ret;
}

static int cid_bytes_cmp(const void *a, const void *b)
{
	return memcmp(a, b, BLK_CID_MAX_BYTES);
}

/*
 * After a crash, the store drops blocks whose bytes never reached the disk
 * (they were written but not fsync'd; blocks/store.c note 6). Every extent
 * that points at one goes too, so the range reads as a hole instead of
 * failing: the same outcome as unsynced data after a power cut on a local
 * filesystem, and never metadata pointing at a missing block. Runs at
 * mount, before anything else touches the extent maps; scans them all,
 * which is the price of a crash, not of a normal mount.
 */
static int drop_lost_extents(struct bfs *fs)
{
	const struct blk_cid *lost;
	size_t nlost = blk_db_lost_blocks(fs->db, &lost);
	uint8_t(*keys)[BLK_CID_MAX_BYTES];
	struct blk_iter *it;
	uint64_t dropped = 0, last_ino = 0, last_bytes = 0;
	int ret = 0;

	if (!nlost)
		return 0;
	keys = calloc(nlost, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < nlost; i++)
		blk_cid_to_bytes(&lost[i], keys[i]);
	qsort(keys, nlost, sizeof(*keys), cid_bytes_cmp);

	it = blk_iter_new(fs->db, BFS_CF_EXTENTS, NULL, 0, NULL, 0);
	if (!it) {
		free(keys);
		return -ENOMEM;
	}
	/* Extents come in inode order: fix each inode's stored bytes once its
	 * extents are done. */
	for (bool more = true; more;) {
		size_t klen = 0, vlen;
		const uint8_t *k = NULL, *v;
		uint64_t ino = 0;
		uint8_t c[BLK_CID_MAX_BYTES] = {0};
		struct blk_cid cid;
		uint32_t len;
		bool forced;

		more = blk_iter_valid(it);
		if (more) {
			k = blk_iter_key(it, &klen);
			v = blk_iter_value(it, &vlen);
			if (klen != 16 ||
			    bfs_extent_decode(v, vlen, &len, &forced, &cid)) {
				blk_iter_next(it);
				continue;
			}
			ino = blk_get_be64(k);
		}
		if (last_bytes && (!more || ino != last_ino)) {
			uint8_t ikey[8], *val = NULL;
			size_t ivlen;
			struct bfs_inode_rec r;
			const char *tgt;
			size_t tlen;

			bfs_ino_key(ikey, last_ino);
			ret = blk_db_get(fs->db, BFS_CF_INODES, ikey, 8,
					 (void **)&val, &ivlen);
			if (ret == 0 && bfs_inode_decode(val, ivlen, &r, &tgt,
							 &tlen) == 0) {
				uint8_t
				    enc[BFS_INODE_REC_LEN + BFS_SYMLINK_MAX];

				r.stored = r.stored > last_bytes
					       ? r.stored - last_bytes
					       : 0;
				size_t n = bfs_inode_encode(&r, tgt, tlen, enc);
				ret = blk_db_put(fs->db, BFS_CF_INODES, ikey, 8,
						 enc, n);
			}
			free(val);
			if (ret == -ENOENT)
				ret = 0;
			if (ret)
				break;
			bfs_log_warn(
			    "inode %llu: %llu bytes written before the "
			    "crash were never synced and read as "
			    "zeros",
			    (unsigned long long)last_ino,
			    (unsigned long long)last_bytes);
			last_bytes = 0;
		}
		if (!more)
			break;
		blk_cid_to_bytes(&cid, c);
		if (bsearch(c, keys, nlost, sizeof(*keys), cid_bytes_cmp)) {
			struct blk_txn *t = blk_txn_new(fs->db);
			if (!t) {
				ret = -ENOMEM;
				break;
			}
			blk_txn_delete(t, BFS_CF_EXTENTS, k, klen);
			ret = blk_txn_commit(t, false);
			blk_txn_free(t);
			if (ret)
				break;
			last_ino = ino;
			last_bytes += len;
			dropped++;
		}
		blk_iter_next(it);
	}
	if (!ret)
		ret = blk_iter_status(it);
	blk_iter_free(it);
	free(keys);
	if (!ret) {
		bfs_log_warn("%zu blocks written before a crash were lost; "
			     "dropped %llu extents pointing at them",
			     nlost, (unsigned long long)dropped);
		blk_db_forget_lost(fs->db);
		ret = blk_db_sync(fs->db);
	}
	return ret;
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

int bfs_dir_load(struct bfs *fs, struct bfs_inode *dp, struct bfs_dir *d)
{
	uint8_t prefix[8];
	size_t cap = 0;
	int ret = 0;

	bfs_dir_free(d);
	bfs_ino_key(prefix, dp->ino);
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_DIRENTS, prefix, 8, NULL, 0);
	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, vlen;
		const char *k = blk_iter_key(it, &klen);
		const uint8_t *v = blk_iter_value(it, &vlen);
		struct bfs_dirent e;

		if (klen <= 8 || bfs_dirent_decode(v, vlen, &e.ino, &e.dtype))
			continue; /* fsck's business; skip the bad entry */
		e.name = strndup(k + 8, klen - 8);
		if (!e.name) {
			ret = -ENOMEM;
			break;
		}
		if (d->n == cap) {
			cap = cap ? cap * 2 : 32;
			struct bfs_dirent *ne =
			    realloc(d->ents, cap * sizeof(*ne));
			if (!ne) {
				free(e.name);
				ret = -ENOMEM;
				break;
			}
			d->ents = ne;
		}
		d->ents[d->n++] = e;
	}
	if (!ret)
		ret = blk_iter_status(it);
	blk_iter_free(it);
	if (ret)
		bfs_dir_free(d);
	else
		d->loaded = true;
	return ret;
}

/* ---- extended attributes ----------------------------------------------- */

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

int bfs_setxattr(struct bfs *fs, struct bfs_inode *ip, const char *name,
		 const void *value, size_t size, int flags)
{
	uint8_t key[8 + 256];
	size_t nlen = strlen(name);

	if (is_acl(name))
		return -EOPNOTSUPP;
	if (is_virtual(name))
		return -EPERM;
	if (fs->cfg.read_only)
		return -EROFS;
	if (nlen == 0 || nlen > 255)
		return -ERANGE;
	if (size > XATTR_VALUE_MAX)
		return -E2BIG;
	size_t klen = bfs_xattr_key(key, ip->ino, name, nlen);
	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&ip->lock);
	uint8_t probe;
	int64_t r =
	    blk_db_get_into(fs->db, BFS_CF_XATTRS, key, klen, &probe, 0);
	int ret = r < 0 && r != -ENOENT ? (int)r : 0;
	if (!ret && (flags & XATTR_CREATE) && r >= 0)
		ret = -EEXIST;
	if (!ret && (flags & XATTR_REPLACE) && r == -ENOENT)
		ret = -ENODATA;
	if (!ret) {
		blk_txn_put(t, BFS_CF_XATTRS, key, klen, value, size);
		now(&ip->rec.ctime);
		txn_put_inode(t, ip);
		ret = blk_txn_commit(t, false);
	}
	pthread_mutex_unlock(&ip->lock);
	blk_txn_free(t);
	return ret;
}

/* The virtual attributes (BFS_XATTR_*); -ENODATA for any other name. */
static int64_t virtual_xattr(struct bfs *fs, struct bfs_inode *ip,
			     const char *name, void *value, size_t size)
{
	char buf[4096];
	int64_t n;

	if (ip->ino != BFS_ROOT_INO || strcmp(name, BFS_XATTR_NODES) ||
	    !fs->remote.describe)
		return -ENODATA;
	n = fs->remote.describe(fs->remote.arg, buf, sizeof(buf));
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
	uint8_t key[8 + 256], probe;
	size_t nlen = strlen(name);

	if (is_acl(name))
		return -EOPNOTSUPP;
	if (is_virtual(name))
		return -EPERM;
	if (fs->cfg.read_only)
		return -EROFS;
	if (nlen == 0 || nlen > 255)
		return -ENODATA;
	size_t klen = bfs_xattr_key(key, ip->ino, name, nlen);
	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&ip->lock);
	int64_t r =
	    blk_db_get_into(fs->db, BFS_CF_XATTRS, key, klen, &probe, 0);
	int ret = r == -ENOENT ? -ENODATA : r < 0 ? (int)r : 0;
	if (!ret) {
		blk_txn_delete(t, BFS_CF_XATTRS, key, klen);
		now(&ip->rec.ctime);
		txn_put_inode(t, ip);
		ret = blk_txn_commit(t, false);
	}
	pthread_mutex_unlock(&ip->lock);
	blk_txn_free(t);
	return ret;
}

/* ---- the filesystem ---------------------------------------------------- */

int bfs_statfs(struct bfs *fs, struct statvfs *st)
{
	if (statvfs(fs->node_dir, st))
		return -errno;
	/* Free is what writes may still add: the reserve, memtables and
	 * dirty bytes show as used. */
	if (!fs->cfg.read_only && st->f_frsize) {
		pthread_mutex_lock(&fs->q_lock);
		uint64_t room = space_room_locked(fs, true);
		pthread_mutex_unlock(&fs->q_lock);
		fsblkcnt_t b = (fsblkcnt_t)(room / st->f_frsize);
		if (b < st->f_bavail)
			st->f_bavail = b;
		if (st->f_bavail < st->f_bfree)
			st->f_bfree = st->f_bavail;
	}
	st->f_namemax = BFS_NAME_MAX;
	st->f_flag = fs->cfg.read_only ? ST_RDONLY : 0;
	return 0;
}

/* Create the root directory and format record of a new filesystem. */
static int mkfs(struct bfs *fs)
{
	struct bfs_inode *root = inode_alloc(BFS_ROOT_INO);
	uint8_t v[8];
	struct timespec ts;

	if (!root)
		return -ENOMEM;
	now(&ts);
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
	struct blk_txn *t = blk_txn_new(fs->db);
	if (!t) {
		inode_free(root);
		return -ENOMEM;
	}
	txn_put_inode(t, root);
	blk_put_le64(v, BFS_ROOT_INO + 1);
	blk_txn_put(t, BFS_CF_META, "next_ino", 8, v, 8);
	blk_put_le64(v, BFS_FORMAT_VERSION);
	blk_txn_put(t, BFS_CF_META, "format", 6, v, 8);
	inode_free(root);
	return txn_commit(t, true);
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

/* Keep the local store within cfg.local_max once peers hold everything:
 * evict blocks (their references stay; reads fetch them back). The order
 * is the CIDs', i.e. arbitrary, which is what a cache of content-addressed
 * blocks without access times can do cheaply. */
static void evict_blocks(struct bfs *fs)
{
	struct blk_store_stats st;
	uint64_t local, goal, freed = 0, n = 0;
	static const uint8_t prefix = 0x01; /* CIDv1 keys in "refs" */

	if (!fs->cfg.local_max || !fs->remote.backlog ||
	    blk_store_stats(fs->db, &st))
		return;
	local = st.bytes - st.remote_bytes;
	if (local <= fs->cfg.local_max || fs->remote.backlog(fs->remote.arg))
		return;
	goal = local - fs->cfg.local_max + fs->cfg.local_max / 10;
	struct blk_iter *it =
	    blk_iter_new(fs->db, BLK_CF_REFS, &prefix, 1, NULL, 0);
	for (; it && blk_iter_valid(it) && freed < goal; blk_iter_next(it)) {
		size_t klen;
		const uint8_t *k = blk_iter_key(it, &klen);
		struct blk_cid cid;
		if (blk_cid_from_bytes(&cid, k, klen))
			continue;
		int r = blk_store_evict(fs->db, &cid);
		if (r > 0) {
			freed += (uint64_t)r;
			n++;
		}
	}
	blk_iter_free(it);
	if (n)
		bfs_log_info("evicted %llu blocks (%llu MiB) held by peers",
			     (unsigned long long)n,
			     (unsigned long long)(freed >> 20));
}

static void *maint_main(void *arg)
{
	struct bfs *fs = arg;
	struct blk_store_stats st;
	unsigned periods = 0;

	pthread_mutex_lock(&fs->q_lock);
	while (!fs->q_stop) {
		struct timespec ts;
		blk_deadline(&ts, MAINT_PERIOD_S * 1000);
		pthread_cond_timedwait(&fs->maint_cond, &fs->q_lock, &ts);
		if (fs->q_stop)
			break;
		uint64_t prev = fs->maint_prev, cur = prev;
		pthread_mutex_unlock(&fs->q_lock);
		write_attrs(fs);
		evict_blocks(fs);
		/* Bound what a crash can take of unsynced data, as a local
		 * filesystem's periodic commit does (blocks/store.c note 6). */
		if (++periods % SYNC_PERIODS == 0) {
			int r = blk_db_sync(fs->db);
			if (r)
				bfs_log_err("periodic sync failed: %s",
					    strerror(-r));
		}
		if (blk_store_stats(fs->db, &st) == 0)
			cur = st.bytes;
		pthread_mutex_lock(&fs->q_lock);
		if (cur < prev)
			fs->freed += prev - cur;
		fs->maint_prev = cur;
		/* Compact when enough is garbage and the store is quiet; on
		 * a small or nearly full file system, sooner. */
		uint64_t after = COMPACT_AFTER;
		if (fs->space_total && fs->space_total / 8 < after)
			after = fs->space_total / 8;
		bool short_room = space_room_locked(fs, false) < after;
		if (fs->freed && short_room)
			after = 0;
		bool go = fs->freed > 0 && fs->freed >= after && cur <= prev;
		/* Room is short and the disk holds garbage the sampling of
		 * stored bytes missed (blocks stored and deleted between two
		 * looks): compact too, once more garbage than the overhead
		 * the last compaction left has piled up. */
		uint64_t disk = 0;
		if (!go && short_room) {
			pthread_mutex_unlock(&fs->q_lock);
			int dr = blk_db_disk_usage(fs->db, &disk);
			pthread_mutex_lock(&fs->q_lock);
			go = dr == 0 &&
			     disk > cur + fs->overhead + SPACE_GARBAGE;
		}
		if (!go)
			continue;
		uint64_t freed = fs->freed;
		fs->freed = 0;
		pthread_mutex_unlock(&fs->q_lock);
		int ret = blk_db_compact(fs->db);
		if (ret)
			bfs_log_err("compaction failed: %s", strerror(-ret));
		else
			bfs_log_info("compacted after %llu MiB were freed",
				     (unsigned long long)(freed >> 20));
		uint64_t overhead = 0;
		if (blk_db_disk_usage(fs->db, &disk) == 0 &&
		    blk_store_stats(fs->db, &st) == 0 && disk > st.bytes)
			overhead = disk - st.bytes;
		pthread_mutex_lock(&fs->q_lock);
		fs->overhead = overhead;
		fs->space_at = 0; /* look at the room again */
	}
	pthread_mutex_unlock(&fs->q_lock);
	return NULL;
}

int bfs_open(const struct bfs_config *cfg, struct bfs **out, char *err,
	     size_t errlen)
{
	struct bfs *fs = calloc(1, sizeof(*fs));
	char path[PATH_MAX];
	uint64_t format = 0;
	int ret;

	if (!fs)
		return -ENOMEM;
	fs->cfg = *cfg;
	fs->node_dir = strdup(cfg->node_dir);
	fs->itab = calloc(ITAB_BUCKETS, sizeof(*fs->itab));
	if (!fs->node_dir || !fs->itab) {
		ret = -ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&fs->ns_lock, NULL);
	pthread_mutex_init(&fs->itab_lock, NULL);
	pthread_mutex_init(&fs->q_lock, NULL);
	blk_cond_init(&fs->q_cond);
	blk_cond_init(&fs->maint_cond);
	blk_cond_init(&fs->q_drain);
	pthread_mutex_init(&fs->hp_lock, NULL);
	blk_cond_init(&fs->hp_cond);
	blk_cond_init(&fs->hp_done);

	/* RocksDB cannot open for writing on a full file system (it writes
	 * a manifest and a log first): mount read-only and say why. */
	struct statvfs vfs;
	if (!cfg->read_only && statvfs(cfg->node_dir, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < SPACE_OPEN_MIN) {
		bfs_log_err("%s is full (%llu bytes free): mounting read-only; "
			    "free space on it and mount again to write",
			    cfg->node_dir,
			    (unsigned long long)vfs.f_bavail * vfs.f_frsize);
		fs->cfg.read_only = true;
		cfg = &fs->cfg;
	}

	snprintf(path, sizeof(path), "%s/db", cfg->node_dir);
	struct blk_db_options o = {
	    .extra_cfs = bfs_cf_names,
	    .large_cfs = bfs_large_cf_names,
	    .newlog = cfg->newlog,
	    .cache_bytes = cfg->cache_bytes,
	    .verify_on_read = cfg->verify_reads,
	    .create = !cfg->read_only,
	    .read_only = cfg->read_only,
	};
	ret = blk_db_open(path, &o, &fs->db, err, errlen);
	if (ret == -ENOENT && cfg->read_only) {
		/* A node never mounted yet: create its empty filesystem, then
		 * serve it read-only. */
		struct bfs_config rw = *cfg;
		struct bfs *tmp;
		rw.read_only = false;
		err[0] = 0;
		ret = bfs_open(&rw, &tmp, err, errlen);
		if (!ret)
			ret = bfs_close(tmp);
		if (!ret)
			ret = blk_db_open(path, &o, &fs->db, err, errlen);
	}
	if (ret)
		goto fail;

	ret = load_meta_u64(fs, "format", &format);
	if (ret == -ENOENT && !cfg->read_only) {
		ret = mkfs(fs);
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
		ret = ret ? ret : -EPROTO;
		goto fail;
	}
	ret = load_meta_u64(fs, "next_ino", &fs->next_ino);
	if (ret) {
		snprintf(err, errlen, "cannot read the inode counter: %s",
			 strerror(-ret));
		goto fail;
	}
	fs->ino_reserved = fs->next_ino;

	/* Extents written with a larger chunk maximum stay readable. */
	uint64_t max_extent = 0;
	load_meta_u64(fs, "max_extent", &max_extent);
	uint64_t mine =
	    cfg->chunker == CDC_FIXED ? cfg->chunk_avg : cfg->chunk_max;
	fs->max_extent = max_extent > mine ? max_extent : mine;
	if (!cfg->read_only && fs->max_extent != max_extent) {
		uint8_t v[8];
		blk_put_le64(v, fs->max_extent);
		ret = blk_db_put(fs->db, BFS_CF_META, "max_extent", 10, v, 8);
		if (ret)
			goto fail;
	}
	if (!cfg->read_only && (ret = drop_lost_extents(fs))) {
		snprintf(err, errlen,
			 "cannot drop extents of blocks lost in a crash: %s",
			 strerror(-ret));
		goto fail;
	}
	if (!cfg->read_only && (ret = purge_orphans(fs))) {
		snprintf(err, errlen, "cannot free deleted files: %s",
			 strerror(-ret));
		goto fail;
	}

	fs->nflushers = cfg->flushers ? cfg->flushers : 2;
	fs->flushers = calloc(fs->nflushers, sizeof(pthread_t));
	if (!fs->flushers) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < fs->nflushers; i++) {
		ret = -pthread_create(&fs->flushers[i], NULL, flusher_main, fs);
		if (ret) {
			fs->nflushers = i;
			goto fail;
		}
	}
	if (!cfg->read_only &&
	    pthread_create(&fs->hp_thread, NULL, hash_helper_main, fs) == 0)
		fs->hp_started = true;
	if (!cfg->read_only) {
		struct blk_store_stats st;
		if (blk_store_stats(fs->db, &st) == 0)
			fs->maint_prev = st.bytes;
		ret = -pthread_create(&fs->maint, NULL, maint_main, fs);
		if (ret)
			goto fail;
		fs->maint_started = true;
	}
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
	int first = write_attrs(fs);

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
			int ret = flush_inode(fs, ip, true, NULL);
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
	int ret = blk_db_sync(fs->db);
	if (!ret && fs->remote.barrier)
		ret = fs->remote.barrier(fs->remote.arg);
	return first ? first : ret;
}

int bfs_close(struct bfs *fs)
{
	int ret = 0;

	if (!fs)
		return 0;
	/* Handles the kernel never released (the session ended first). */
	while (fs->files)
		bfs_release_file(fs, fs->files);
	if (fs->db && fs->flushers)
		ret = bfs_sync_all(fs);
	if (fs->n_flushes)
		bfs_log_info("%llu flushes (%llu by writers over the memory "
			     "bound), %llu MiB committed, %llu MiB hashed",
			     (unsigned long long)fs->n_flushes,
			     (unsigned long long)fs->n_sync_flushes,
			     (unsigned long long)(fs->n_committed >> 20),
			     (unsigned long long)(fs->n_hashed >> 20));
	if (fs->flushers) {
		pthread_mutex_lock(&fs->q_lock);
		fs->q_stop = true;
		pthread_cond_broadcast(&fs->q_cond);
		pthread_cond_broadcast(&fs->maint_cond);
		pthread_mutex_unlock(&fs->q_lock);
		if (fs->maint_started)
			pthread_join(fs->maint, NULL);
		for (unsigned i = 0; i < fs->nflushers; i++)
			pthread_join(fs->flushers[i], NULL);
		free(fs->flushers);
	}
	if (fs->hp_started) {
		pthread_mutex_lock(&fs->hp_lock);
		fs->hp_stop = true;
		pthread_cond_broadcast(&fs->hp_cond);
		pthread_mutex_unlock(&fs->hp_lock);
		pthread_join(fs->hp_thread, NULL);
	}
	if (fs->itab) {
		for (uint32_t b = 0; b < ITAB_BUCKETS; b++) {
			struct bfs_inode *ip = fs->itab[b];
			while (ip) {
				struct bfs_inode *next = ip->hnext;
				if (ip->rec.nlink == 0)
					purge_inode(fs, ip);
				inode_free(ip);
				ip = next;
			}
		}
		free(fs->itab);
	}
	if (fs->db && !fs->cfg.read_only) {
		int r = blk_db_sync(fs->db);
		ret = ret ? ret : r;
		/* Give back the space of whatever was deleted since the last
		 * compaction (including files freed just now). */
		struct blk_store_stats st = {0};
		blk_store_stats(fs->db, &st);
		if (fs->freed || st.bytes < fs->maint_prev) {
			r = blk_db_compact(fs->db);
			if (r)
				bfs_log_err("compaction at unmount failed: %s",
					    strerror(-r));
		}
	}
	blk_db_close(fs->db);
	free(fs->node_dir);
	free(fs);
	return ret;
}
