/* Room on the node directory's file system: what writes may still add,
 * the ENOSPC admission of writes, and statfs. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "fs/log.h"

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

/* The room left by the last look (space_lock held), looking at the file
 * system again when that look is old or little was left. */
static uint64_t room_locked(struct bfs *fs, bool fresh)
{
	uint64_t t = mono_ns();
	uint64_t dirty = bfs_dirty_bytes(fs);

	if (fresh || t - fs->space_at >= SPACE_LOOK_NS ||
	    fs->space_avail < fs->space_pending + dirty + SPACE_NEAR) {
		struct blk_db_space sp;

		if (blk_db_space(fs->db, &sp) == 0) {
			uint64_t r = space_reserve(sp.total);
			fs->space_total = sp.total;
			fs->space_avail = sp.avail > r ? sp.avail - r : 0;
			fs->space_pending = sp.pending;
			fs->space_at = t;
		}
	}
	uint64_t used = fs->space_pending + dirty;
	return fs->space_avail > used ? fs->space_avail - used : 0;
}

uint64_t bfs_space_room(struct bfs *fs, bool fresh, uint64_t *total)
{
	pthread_mutex_lock(&fs->space_lock);
	uint64_t room = room_locked(fs, fresh);
	if (total)
		*total = fs->space_total;
	pthread_mutex_unlock(&fs->space_lock);
	return room;
}

void bfs_space_forget(struct bfs *fs)
{
	pthread_mutex_lock(&fs->space_lock);
	fs->space_at = 0;
	pthread_mutex_unlock(&fs->space_lock);
}

/* 0 if @len more bytes fit, else -ENOSPC (logged once a minute). */
int bfs_space_admit(struct bfs *fs, uint64_t len)
{
	pthread_mutex_lock(&fs->space_lock);
	uint64_t room = room_locked(fs, false);
	int ret = room >= len ? 0 : -ENOSPC;
	uint64_t t = mono_ns();
	bool warn =
	    ret && (!fs->space_warned || t - fs->space_warned >= SPACE_WARN_NS);
	if (warn)
		fs->space_warned = t;
	uint64_t total = fs->space_total;
	pthread_mutex_unlock(&fs->space_lock);
	if (warn)
		bfs_log_err("%s is full: writes fail with ENOSPC (%llu bytes "
			    "left, %llu of %llu kept in reserve); delete files "
			    "to make room",
			    fs->node_dir, (unsigned long long)room,
			    (unsigned long long)space_reserve(total),
			    (unsigned long long)total);
	return ret;
}

int bfs_statfs(struct bfs *fs, struct statvfs *st)
{
	if (statvfs(fs->node_dir, st))
		return -errno;
	/* Free is what writes may still add: the reserve, memtables and
	 * dirty bytes show as used. */
	if (!fs->cfg.read_only && st->f_frsize) {
		uint64_t room = bfs_space_room(fs, true, NULL);
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
