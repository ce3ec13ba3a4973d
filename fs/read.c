/* The read path: open file handles, blocks read locally or fetched from
 * the cluster, extents overlaid with the buffers, read-ahead. */
#include "fs/bfs-int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/log.h"
#include "fs/extent.h"

/* ---- blocks, local or fetched ------------------------------------------ */

/* Debug builds count the extent-map locks the read path holds on this
 * thread, and fetch_block checks that a read holds none: the read path
 * never waits on the network under a lock (fs/bfs-int.h, lock order). */
#ifndef NDEBUG
static __thread unsigned read_ext_locked;
#define READ_EXT_LOCKED(d) (read_ext_locked += (unsigned)(d))
#else
#define READ_EXT_LOCKED(d) ((void)0)
#endif

static void ext_rdlock(struct bfs_inode *ip)
{
	pthread_rwlock_rdlock(&ip->ext_lock);
	READ_EXT_LOCKED(1);
}

static void ext_unlock(struct bfs_inode *ip)
{
	READ_EXT_LOCKED(-1);
	pthread_rwlock_unlock(&ip->ext_lock);
}

/* Whether @err, from a read of the local store, says the local copy of the
 * block is damaged: RocksDB's checksum (-EIO: blob files carry a CRC32C
 * of each value, checked on every read, which costs next to nothing) or,
 * with the verify option, the CID (-EBADMSG). */
static bool local_damaged(int64_t err)
{
	return err == -EIO || err == -EBADMSG;
}

/* A block that is not in the local store any more (evicted once peers held
 * it, or lost with a disk) comes from the cluster; it is put back in the
 * store as a cache entry while the cache has room. A block whose local
 * copy is damaged (@damage, of local_damaged; 0: a miss) comes from the
 * cluster too, the fetch verifying it against its CID, and is written
 * back over the damaged copy (healed); @ino names the file for the log. */
static int fetch_block(struct bfs *fs, const struct blk_cid *cid, void **data,
		       size_t *len, int damage, uint64_t ino)
{
	int ret;

	if (!fs->peers)
		return -EIO;
	assert(read_ext_locked == 0);
	ret = cl_engine_fetch(fs->peers, cid, data, len);
	if (ret)
		return ret;
	if (damage) {
		int r = fs->cfg.read_only
			    ? -EROFS
			    : blk_store_rewrite(fs->store, cid, *data, *len);
		bfs_damage_healed(fs, ino, cid, damage, r);
		return 0;
	}
	struct blk_store_stats st;
	bool room = !fs->cfg.local_max ||
		    (blk_store_stats(fs->store, &st) == 0 &&
		     st.bytes - st.remote_bytes + *len <= fs->cfg.local_max);
	if (!fs->cfg.read_only && room) {
		int r = blk_store_fill(fs->store, cid, *data, *len);
		if (r && r != -ENOENT)
			blk_log_warn("cannot keep a fetched block: %s",
				     strerror(-r));
	}
	return 0;
}

bool bfs_block_evicted(struct bfs *fs, const struct blk_cid *cid)
{
	uint64_t refs;
	uint32_t blen;
	bool local = true;

	return blk_store_info(fs->store, cid, &refs, &blen, &local) == 0 &&
	       !local;
}

/* bfs_block_read, for a block of inode @ino (0: not known). */
static int64_t block_read(struct bfs *fs, uint64_t ino,
			  const struct blk_cid *cid, uint64_t off, void *dst,
			  size_t len)
{
	int64_t got = blk_store_read(fs->store, cid, off, dst, len);
	void *data;
	size_t dlen;

	if ((got != -ENOENT && !local_damaged(got)) || !fs->peers)
		return got;
	int ret = fetch_block(fs, cid, &data, &dlen,
			      got == -ENOENT ? 0 : (int)got, ino);
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

int64_t bfs_block_read(struct bfs *fs, const struct blk_cid *cid, uint64_t off,
		       void *dst, size_t len)
{
	return block_read(fs, 0, cid, off, dst, len);
}

/* ---- the read path ----------------------------------------------------- */

int bfs_open_file(struct bfs *fs, struct bfs_inode *ip, bool writer,
		  struct bfs_file **out)
{
	struct bfs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->lock, NULL);
	f->ip = ip;
	f->writer = writer;
	f->reader = !writer;
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

struct bfs_inode *bfs_file_inode(const struct bfs_file *f)
{
	return f->ip;
}

bool bfs_file_writer(const struct bfs_file *f)
{
	return f->writer;
}

void bfs_read_done(struct bfs *fs, struct bfs_file *f)
{
	pthread_mutex_lock(&f->lock);
	bool reader = f->next_off != 0;
	pthread_mutex_unlock(&f->lock);
	if (reader && fs->peers)
		cl_engine_drop_taken(fs->peers);
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

/* A piece of a read whose block is not in the local store, or whose local
 * copy is damaged: fetched with no lock held (read_fetch), then copied to
 * buf + at. */
struct missing {
	struct blk_cid cid;
	uint64_t boff; /* where the piece starts in the block */
	size_t len;
	size_t at;
	bool part;  /* part of the block: keep it in the handle's cache */
	int damage; /* 0, or the local read's error: heal the local copy */
};

/* A block a read fetched, kept until the read ends so that a later pass
 * of the same read takes it from here instead of the cluster. */
struct fetched {
	struct blk_cid cid;
	void *data;
	size_t len;
};

/* One read's pieces that wait for the cluster (the last pass's), and the
 * blocks it fetched so far (every pass's). */
struct missing_list {
	struct missing *v;
	size_t n, cap;
	struct fetched *got;
	size_t ngot, capgot;
};

static int missing_add(struct missing_list *ml, const struct blk_cid *cid,
		       uint64_t boff, size_t len, size_t at, bool part,
		       int64_t got)
{
	if (ml->n == ml->cap) {
		size_t cap = ml->cap ? 2 * ml->cap : 8;
		struct missing *v = realloc(ml->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ml->v = v;
		ml->cap = cap;
	}
	ml->v[ml->n++] = (struct missing){
	    *cid, boff, len, at, part, got == -ENOENT ? 0 : (int)got};
	return 0;
}

/* The block @cid if this read fetched it already, else NULL. */
static const struct fetched *fetched_find(const struct missing_list *ml,
					  const struct blk_cid *cid)
{
	for (size_t i = 0; i < ml->ngot; i++)
		if (blk_cid_equal(&ml->got[i].cid, cid))
			return &ml->got[i];
	return NULL;
}

/* Keep block @cid (@data, @len bytes, taken) for the rest of the read. */
static int fetched_add(struct missing_list *ml, const struct blk_cid *cid,
		       void *data, size_t len)
{
	if (ml->ngot == ml->capgot) {
		size_t cap = ml->capgot ? 2 * ml->capgot : 4;
		struct fetched *v = realloc(ml->got, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ml->got = v;
		ml->capgot = cap;
	}
	ml->got[ml->ngot++] = (struct fetched){*cid, data, len};
	return 0;
}

static void missing_list_free(struct missing_list *ml)
{
	for (size_t i = 0; i < ml->ngot; i++)
		free(ml->got[i].data);
	free(ml->got);
	free(ml->v);
}

/* Keep a copy of block @cid (@data, @len bytes) as the handle's cached
 * block. f->lock held. */
static void file_cache_set(struct bfs_file *f, const struct blk_cid *cid,
			   const void *data, size_t len)
{
	void *copy = malloc(len ? len : 1);

	if (!copy)
		return; /* only a cache */
	memcpy(copy, data, len);
	free(f->data);
	f->data = copy;
	f->len = len;
	f->cid = *cid;
	f->cached = true;
}

/* Copy [off, off+len) of extent @e into @dst: from a block this read
 * fetched already, through the handle's block cache when the read wants
 * part of the block, or from the local store. Called with ext_lock held
 * shared, so it never fetches: a piece whose block is not local (or whose
 * local copy is damaged) goes on @ml, for read_fetch with no lock held. */
static int read_extent(struct bfs *fs, struct bfs_file *f,
		       const struct bfs_extent *e, uint64_t off, uint8_t *dst,
		       size_t len, size_t at, struct missing_list *ml)
{
	const struct fetched *fe = fetched_find(ml, &e->cid);
	bool part = off != e->off || len != e->len;
	int ret = 0;

	if (fe) {
		if (off - e->off + len > fe->len)
			return -EIO;
		memcpy(dst, (uint8_t *)fe->data + (off - e->off), len);
		return 0;
	}
	if (!part) {
		int64_t got = blk_store_read(fs->store, &e->cid, 0, dst, len);
		if ((got == -ENOENT || local_damaged(got)) && fs->peers)
			return missing_add(ml, &e->cid, 0, len, at, false, got);
		if (got < 0)
			return (int)got;
		return (size_t)got == len ? 0 : -EIO;
	}
	pthread_mutex_lock(&f->lock);
	if (!f->cached || !blk_cid_equal(&f->cid, &e->cid)) {
		void *data;
		size_t dlen;

		ret = blk_store_get(fs->store, &e->cid, &data, &dlen);
		if (ret) {
			pthread_mutex_unlock(&f->lock);
			if ((ret == -ENOENT || local_damaged(ret)) && fs->peers)
				return missing_add(ml, &e->cid, off - e->off,
						   len, at, true, ret);
			return ret;
		}
		free(f->data);
		f->data = data;
		f->len = dlen;
		f->cid = e->cid;
		f->cached = true;
	}
	if (off - e->off + len > f->len)
		ret = -EIO;
	else
		memcpy(dst, (uint8_t *)f->data + (off - e->off), len);
	pthread_mutex_unlock(&f->lock);
	return ret;
}

/* Fetch the blocks of @ml from the cluster, holding no lock, and copy
 * their pieces into @buf (the read's bytes from file offset @off). Each
 * block is fetched once per read and kept in @ml for later passes; a
 * block read in part also goes to the handle's cache. 0 or -errno. */
static int read_fetch(struct bfs *fs, struct bfs_file *f,
		      struct missing_list *ml, uint64_t off, uint8_t *buf)
{
	for (size_t i = 0; i < ml->n; i++) {
		const struct missing *m = &ml->v[i];
		const struct fetched *fe = fetched_find(ml, &m->cid);

		if (!fe) {
			void *data;
			size_t dlen;
			int ret = fetch_block(fs, &m->cid, &data, &dlen,
					      m->damage, f->ip->ino);
			if (ret) {
				bfs_damage_unreadable(fs, f->ip->ino,
						      off + m->at - m->boff,
						      &m->cid, ret);
				return ret;
			}
			ret = fetched_add(ml, &m->cid, data, dlen);
			if (ret) {
				free(data);
				return ret;
			}
			fe = &ml->got[ml->ngot - 1];
		}
		if (m->boff + m->len > fe->len)
			return -EIO;
		memcpy(buf + m->at, (uint8_t *)fe->data + m->boff, m->len);
		if (m->part) {
			pthread_mutex_lock(&f->lock);
			file_cache_set(f, &m->cid, fe->data, fe->len);
			pthread_mutex_unlock(&f->lock);
		}
	}
	return 0;
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
		if (exts.v[k].off < from)
			continue; /* asked already, or being read */
		if (bfs_block_evicted(fs, &exts.v[k].cid))
			cids[n++] = exts.v[k].cid;
	}
	bfs_extent_list_free(&exts);
	if (n)
		cl_engine_prefetch(fs->peers, cids, n);
}

/* Fill @buf with [off, off+len) of the extent map (holes as zeros), the
 * extents in @exts. ext_lock held shared. 0 or -errno. */
static int read_extents(struct bfs *fs, struct bfs_file *f,
			const struct bfs_extent_list *exts, uint64_t off,
			uint8_t *buf, size_t len, struct missing_list *ml)
{
	uint64_t pos = off;
	int ret = 0;

	for (size_t k = 0; !ret && k < exts->n; k++) {
		const struct bfs_extent *e = &exts->v[k];
		uint64_t a = e->off > off ? e->off : off;
		uint64_t b =
		    e->off + e->len < off + len ? e->off + e->len : off + len;
		if (a > pos)
			memset(buf + (pos - off), 0, a - pos);
		ret = read_extent(fs, f, e, a, buf + (a - off), b - a, a - off,
				  ml);
		if (ret)
			bfs_damage_unreadable(fs, f->ip->ino, e->off, &e->cid,
					      ret);
		pos = b;
	}
	if (!ret && pos < off + len)
		memset(buf + (pos - off), 0, off + len - pos);
	return ret;
}

/*
 * A read: the extent map, then ip->flushing and ip->dirty over it
 * (invariant 1 of write.c), all under ext_lock held shared. No lock is
 * held while a block comes from the cluster: a pass that meets a block
 * that is not local notes its pieces, drops the lock, fetches them
 * (read_fetch), and takes the lock again. If the extent map did not
 * change meanwhile (ip->ext_gen), the bytes read stand and only the
 * buffers are laid over them. Otherwise the read starts again, taking
 * the blocks it fetched already from its own list (blocks are named by
 * their content, so a block fetched for the old map is right for the
 * new one wherever the new map names it). So a pass that does not end
 * the read fetched a block that no earlier pass of it had; the blocks a
 * pass meets that are neither local nor fetched must have been written
 * by a flush, uploaded and evicted while the pass before fetched.
 */
int64_t bfs_read(struct bfs *fs, struct bfs_file *f, uint64_t off, void *buf,
		 size_t len)
{
	struct bfs_inode *ip = f->ip;
	struct missing_list ml = {0};
	int ret = 0;

	for (unsigned pass = 0;; pass++) {
		struct bfs_extent_list exts = {0};

		ext_rdlock(ip);
		pthread_mutex_lock(&ip->lock);
		uint64_t size = ip->rec.size;
		pthread_mutex_unlock(&ip->lock);
		if (off >= size) {
			ext_unlock(ip);
			len = 0;
			break;
		}
		if (len > size - off)
			len = size - off;
		if (fs->peers && pass == 0)
			prefetch(fs, f, off, len);
		uint64_t gen = ip->ext_gen;
		ml.n = 0;
		ret = bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino, off,
				     off + len, fs->max_extent, &exts);
		if (!ret)
			ret = read_extents(fs, f, &exts, off, buf, len, &ml);
		bfs_extent_list_free(&exts);
		if (!ret && ml.n) {
			ext_unlock(ip);
			ret = read_fetch(fs, f, &ml, off, buf);
			ext_rdlock(ip);
			if (!ret && ip->ext_gen != gen) {
				ext_unlock(ip);
				continue; /* the map changed: read again */
			}
		}
		if (!ret) {
			pthread_mutex_lock(&ip->lock);
			wbuf_overlay(&ip->flushing, off, buf, len);
			wbuf_overlay(&ip->dirty, off, buf, len);
			pthread_mutex_unlock(&ip->lock);
		}
		ext_unlock(ip);
		break;
	}
	missing_list_free(&ml);
	if (ret)
		return ret == -ENOENT || ret == -EBADMSG || ret == -EUCLEAN
			   ? -EIO
			   : ret;
	return (int64_t)len;
}
