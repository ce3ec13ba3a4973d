/* SEEK_DATA and SEEK_HOLE: where a file's next data or next hole lies,
 * from its extent map and its write buffers.
 *
 * Data is every byte an extent, ip->flushing or ip->dirty holds
 * (invariant 1 of write.c); everything else below the size is a hole,
 * and there is always a hole at the end of the file. Buffered zeros count
 * as data until a flush leaves them out of the map (all-zero chunks stay
 * holes, write.c put_chunks), so a data region may start and end at a
 * chunk's edges rather than at the first and last non-zero byte: saying
 * "data" of zeros is always safe, "hole" of data never happens.
 *
 * Both searches walk extents with a cursor (extent.h), never byte ranges:
 * SEEK_DATA looks at one extent and the buffers, SEEK_HOLE at each extent
 * of the data region it starts in. They hold ext_lock shared, so neither
 * the map nor ip->flushing changes under them, and look at both buffers
 * in one hold of ip->lock, so a byte moving from ip->dirty to
 * ip->flushing (flush_take) is seen in one or the other. A long walk lets
 * ext_lock go every SEEK_STEP extents, so flushes of the file go on. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <unistd.h>

#include "fs/extent.h"

#define SEEK_STEP 4096

int bfs_data_next(struct bfs *fs, struct bfs_inode *ip, uint64_t pos,
		  uint64_t *at)
{
	struct bfs_extent_cursor c;
	uint64_t best = UINT64_MAX, x;

	pthread_mutex_lock(&ip->lock);
	if (wbuf_next_data(&ip->dirty, pos, &x))
		best = x;
	if (wbuf_next_data(&ip->flushing, pos, &x) && x < best)
		best = x;
	pthread_mutex_unlock(&ip->lock);
	int ret = 0;
	if (best > pos) {
		ret = bfs_extent_cursor_open(&c, fs->db, BFS_CF_EXTENTS,
					     ip->ino, pos, fs->max_extent);
		if (!ret && c.valid) {
			x = c.e.off > pos ? c.e.off : pos;
			if (x < best)
				best = x;
		}
		bfs_extent_cursor_close(&c);
	}
	*at = best;
	return ret;
}

static int64_t seek_data(struct bfs *fs, struct bfs_inode *ip, uint64_t off)
{
	uint64_t at = UINT64_MAX;

	pthread_rwlock_rdlock(&ip->ext_lock);
	pthread_mutex_lock(&ip->lock);
	uint64_t size = ip->rec.size;
	pthread_mutex_unlock(&ip->lock);
	int ret = off < size ? bfs_data_next(fs, ip, off, &at) : 0;
	pthread_rwlock_unlock(&ip->ext_lock);
	if (ret)
		return ret;
	return off < size && at < size ? (int64_t)at : -ENXIO;
}

/* The end of the data that runs on from @pos without a gap, in the
 * buffers and from the cursor's extent on (moving it past what it
 * passes), at most @steps extents. ext_lock held shared. */
static int data_run_end(struct bfs_inode *ip, struct bfs_extent_cursor *c,
			uint64_t *pos, unsigned steps)
{
	int ret = 0;

	while (steps--) {
		uint64_t end = *pos, e;

		while (!ret && c->valid && c->e.off + c->e.len <= *pos)
			ret = bfs_extent_cursor_next(c);
		if (ret)
			return ret;
		if (c->valid && c->e.off <= *pos)
			end = c->e.off + c->e.len;
		pthread_mutex_lock(&ip->lock);
		e = wbuf_data_end(&ip->dirty, *pos);
		end = e > end ? e : end;
		e = wbuf_data_end(&ip->flushing, *pos);
		end = e > end ? e : end;
		pthread_mutex_unlock(&ip->lock);
		if (end == *pos)
			return 1; /* a hole at *pos */
		*pos = end;
	}
	return 0;
}

int bfs_data_end(struct bfs *fs, struct bfs_inode *ip, uint64_t pos,
		 uint64_t *end)
{
	struct bfs_extent_cursor c;
	int ret = bfs_extent_cursor_open(&c, fs->db, BFS_CF_EXTENTS, ip->ino,
					 pos, fs->max_extent);

	while (!ret)
		ret = data_run_end(ip, &c, &pos, SEEK_STEP);
	bfs_extent_cursor_close(&c);
	*end = pos;
	return ret < 0 ? ret : 0;
}

static int64_t seek_hole(struct bfs *fs, struct bfs_inode *ip, uint64_t off)
{
	uint64_t pos = off;

	for (;;) {
		struct bfs_extent_cursor c;

		pthread_rwlock_rdlock(&ip->ext_lock);
		pthread_mutex_lock(&ip->lock);
		uint64_t size = ip->rec.size;
		pthread_mutex_unlock(&ip->lock);
		if (off >= size || pos >= size) {
			pthread_rwlock_unlock(&ip->ext_lock);
			return off < size ? (int64_t)size : -ENXIO;
		}
		int ret = bfs_extent_cursor_open(&c, fs->db, BFS_CF_EXTENTS,
						 ip->ino, pos, fs->max_extent);
		if (!ret)
			ret = data_run_end(ip, &c, &pos, SEEK_STEP);
		bfs_extent_cursor_close(&c);
		pthread_rwlock_unlock(&ip->ext_lock);
		if (ret < 0)
			return ret;
		if (ret > 0)
			return pos < size ? (int64_t)pos : (int64_t)size;
	}
}

int64_t bfs_seek_data_hole(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
			   int whence)
{
	if (!S_ISREG(ip->rec.mode))
		return -EINVAL;
	if (whence == SEEK_DATA)
		return seek_data(fs, ip, off);
	if (whence == SEEK_HOLE)
		return seek_hole(fs, ip, off);
	return -EINVAL;
}
