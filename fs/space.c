/* Room on the node directory's file system (struct bfs_space): what
 * writes may still add, the ENOSPC admission of writes, and statfs. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "blocks/base/log.h"

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

/* The room left by the last look (space.lock held), looking at the file
 * system again when that look is old or little was left. */
static uint64_t room_locked(struct bfs *fs, bool fresh)
{
	uint64_t t = mono_ns();
	/* dirty bytes and room set aside by fallocate */
	uint64_t held = bfs_dirty_bytes(fs) +
			__atomic_load_n(&fs->space.claimed, __ATOMIC_RELAXED);

	if (fresh || t - fs->space.at >= SPACE_LOOK_NS ||
	    fs->space.avail < fs->space.pending + held + SPACE_NEAR) {
		struct blk_db_space sp;

		if (blk_db_space(fs->db, &sp) == 0) {
			uint64_t r = space_reserve(sp.total);
			fs->space.total = sp.total;
			fs->space.avail = sp.avail > r ? sp.avail - r : 0;
			fs->space.pending = sp.pending;
			fs->space.at = t;
		}
	}
	uint64_t used = fs->space.pending + held;
	return fs->space.avail > used ? fs->space.avail - used : 0;
}

void bfs_space_init(struct bfs_space *sp)
{
	pthread_mutex_init(&sp->lock, NULL);
}

void bfs_space_destroy(struct bfs_space *sp)
{
	pthread_mutex_destroy(&sp->lock);
}

uint64_t bfs_space_room(struct bfs *fs, bool fresh, uint64_t *total)
{
	pthread_mutex_lock(&fs->space.lock);
	uint64_t room = room_locked(fs, fresh);
	if (total)
		*total = fs->space.total;
	pthread_mutex_unlock(&fs->space.lock);
	return room;
}

void bfs_space_forget(struct bfs *fs)
{
	pthread_mutex_lock(&fs->space.lock);
	fs->space.at = 0;
	pthread_mutex_unlock(&fs->space.lock);
}

/* Whether the room is short by no more than what memtables hold, and no
 * writer flushed them in the last SPACE_FLUSH_NS (then this one will):
 * space.lock held. Memtables count as used until their flush writes them
 * out, and a memtable whose blocks went through the WAL too (fsync of a
 * few blocks) holds their bytes twice until then; with writes refused it
 * would never fill, and the flush that frees its WAL would never come. */
static bool flush_helps(struct bfs *fs, uint64_t room, uint64_t len, uint64_t t)
{
	if (!fs->space.pending || room + fs->space.pending < len ||
	    (fs->space.flushed && t - fs->space.flushed < SPACE_FLUSH_NS))
		return false;
	fs->space.flushed = t;
	return true;
}

/* 0 if @len more bytes fit, else -ENOSPC; with @claim the bytes are
 * set aside (fs->space.claimed) in the same look, and a refusal is not
 * logged. */
static int space_admit(struct bfs *fs, uint64_t len, bool claim)
{
	pthread_mutex_lock(&fs->space.lock);
	uint64_t room = room_locked(fs, false);
	uint64_t t = mono_ns();
	if (room < len && flush_helps(fs, room, len, t)) {
		pthread_mutex_unlock(&fs->space.lock);
		int r = blk_db_flush(fs->db);
		if (r)
			blk_log_err(
			    "flushing memtables to make room failed: %s",
			    strerror(-r));
		pthread_mutex_lock(&fs->space.lock);
		room = room_locked(fs, true);
	}
	/* Deleted blocks may hold the room until the next compaction: have
	 * it now rather than refuse. */
	if (room < len) {
		pthread_mutex_unlock(&fs->space.lock);
		bool ran = bfs_maint_reclaim(fs);
		pthread_mutex_lock(&fs->space.lock);
		if (ran)
			room = room_locked(fs, true);
	}
	int ret = room >= len ? 0 : -ENOSPC;
	if (!ret && claim)
		__atomic_add_fetch(&fs->space.claimed, len, __ATOMIC_RELAXED);
	bool warn =
	    ret && !claim &&
	    (!fs->space.warned || t - fs->space.warned >= SPACE_WARN_NS);
	if (warn)
		fs->space.warned = t;
	uint64_t total = fs->space.total;
	pthread_mutex_unlock(&fs->space.lock);
	if (warn)
		blk_log_err("%s is full: writes fail with ENOSPC (%llu bytes "
			    "left, %llu of %llu kept in reserve); delete files "
			    "to make room",
			    fs->node_dir, (unsigned long long)room,
			    (unsigned long long)space_reserve(total),
			    (unsigned long long)total);
	return ret;
}

int bfs_space_admit(struct bfs *fs, uint64_t len)
{
	return space_admit(fs, len, false);
}

int bfs_space_claim(struct bfs *fs, uint64_t len)
{
	return len ? space_admit(fs, len, true) : 0;
}

void bfs_space_unclaim(struct bfs *fs, uint64_t len)
{
	__atomic_sub_fetch(&fs->space.claimed, len, __ATOMIC_RELAXED);
}

int bfs_statfs(struct bfs *fs, struct statvfs *st)
{
	uint64_t room = 0;

	if (statvfs(fs->node_dir, st))
		return -errno;
	/* Free is what writes may still add: the reserve, memtables and
	 * dirty bytes show as used. */
	if (!fs->cfg.read_only && st->f_frsize) {
		room = bfs_space_room(fs, true, NULL);
		fsblkcnt_t b = (fsblkcnt_t)(room / st->f_frsize);
		if (b < st->f_bavail)
			st->f_bavail = b;
		if (st->f_bavail < st->f_bfree)
			st->f_bfree = st->f_bavail;
	}
	/* Files: the filesystem's own inodes, not the node directory's.
	 * There is no inode table to run out of; what bounds the files
	 * still possible is room, at about BFS_INODE_BYTES each. */
	pthread_mutex_lock(&fs->count_lock);
	uint64_t used = fs->n_inodes;
	pthread_mutex_unlock(&fs->count_lock);
	st->f_ffree = st->f_favail = (fsfilcnt_t)(room / BFS_INODE_BYTES);
	st->f_files = (fsfilcnt_t)used + st->f_ffree;
	st->f_namemax = BFS_NAME_MAX;
	st->f_flag = fs->cfg.read_only ? ST_RDONLY : 0;
	return 0;
}

uint64_t bfs_space_reserve(struct bfs *fs)
{
	uint64_t total;

	(void)bfs_space_room(fs, false, &total);
	return space_reserve(total);
}

void bfs_space_compacted(struct bfs *fs, int err)
{
	char path[PATH_MAX], line[128];
	struct tm tm;
	time_t now = time(NULL);

	if (snprintf(path, sizeof(path), "%s/%s", fs->node_dir,
		     BFS_COMPACT_ERR_FILE) >= (int)sizeof(path))
		return;
	if (!err) {
		(void)unlink(path);
		return;
	}
	gmtime_r(&now, &tm);
	int n = snprintf(line, sizeof(line),
			 "%s (at %04d-%02d-%02d %02d:%02d:%02d UTC)\n",
			 strerror(-err), tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	/* A few bytes: the reserve has room for them. */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) != n)
		blk_log_err("cannot record the compaction error in %s: %s",
			    path, strerror(errno));
	close(fd);
}

bool bfs_node_full(const char *node_dir)
{
	struct statvfs v;

	if (statvfs(node_dir, &v))
		return false;
	uint64_t total = (uint64_t)v.f_blocks * v.f_frsize;
	uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
	return avail < space_reserve(total) + SPACE_FULL_MARGIN;
}

void bfs_node_compaction_error(const char *node_dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	FILE *f;

	err[0] = 0;
	if (snprintf(path, sizeof(path), "%s/%s", node_dir,
		     BFS_COMPACT_ERR_FILE) >= (int)sizeof(path))
		return;
	f = fopen(path, "re");
	if (!f)
		return;
	if (!fgets(err, (int)errlen, f))
		err[0] = 0;
	fclose(f);
	err[strcspn(err, "\n")] = 0;
}
