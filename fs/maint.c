/* The maintenance thread: deferred attributes, eviction of blocks peers
 * hold, the periodic store sync, and compaction. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/clock.h"
#include "fs/log.h"

/* Keep the local store within cfg.local_max once peers hold everything:
 * evict blocks (their references stay; reads fetch them back). The order
 * is the CIDs', i.e. arbitrary, which is what a cache of content-addressed
 * blocks without access times can do cheaply. */
static void evict_blocks(struct bfs *fs)
{
	struct blk_store_stats st;
	uint64_t local, goal, freed = 0, n = 0;

	if (!fs->cfg.local_max || !fs->peers || blk_store_stats(fs->db, &st))
		return;
	local = st.bytes - st.remote_bytes;
	if (local <= fs->cfg.local_max || bfs_peers_backlog(fs->peers))
		return;
	goal = local - fs->cfg.local_max + fs->cfg.local_max / 10;
	(void)blk_store_evict_upto(fs->db, goal, &freed, &n);
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
		bfs_write_attrs(fs);
		evict_blocks(fs);
		/* Bound what a crash can take of unsynced data, as a local
		 * filesystem's periodic commit does (blocks/journal.c J1). */
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
		bool short_room = bfs_space_room_locked(fs, false) < after;
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

int bfs_maint_start(struct bfs *fs)
{
	struct blk_store_stats st;

	if (blk_store_stats(fs->db, &st) == 0)
		fs->maint_prev = st.bytes;
	int ret = -pthread_create(&fs->maint, NULL, maint_main, fs);
	if (!ret)
		fs->maint_started = true;
	return ret;
}

int bfs_maint_final(struct bfs *fs)
{
	int ret = blk_db_sync(fs->db);
	/* Give back the space of whatever was deleted since the last
	 * compaction (including files freed just now). */
	struct blk_store_stats st = {0};
	blk_store_stats(fs->db, &st);
	if (fs->freed || st.bytes < fs->maint_prev) {
		int r = blk_db_compact(fs->db);
		if (r)
			bfs_log_err("compaction at unmount failed: %s",
				    strerror(-r));
	}
	return ret;
}
