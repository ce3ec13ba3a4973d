/* The maintenance thread (struct bfs_maint): deferred attributes, eviction
 * of blocks peers hold, the periodic store sync, and compaction. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blocks/base/clock.h"
#include "blocks/base/log.h"

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Keep the local store within cfg.local_max once peers hold everything:
 * evict blocks (their references stay; reads fetch them back). The order
 * is the CIDs', i.e. arbitrary, which is what a cache of content-addressed
 * blocks without access times can do cheaply. The store itself refuses a
 * block not uploaded yet (blocks/store/store.h invariant 4); the backlog check
 * only saves a walk while uploads are queued. */
static void evict_blocks(struct bfs *fs)
{
	struct blk_store_stats st;
	uint64_t local, goal, freed = 0, n = 0;

	if (!fs->cfg.local_max || !fs->peers || blk_store_stats(fs->store, &st))
		return;
	local = st.bytes - st.remote_bytes;
	if (local <= fs->cfg.local_max || cl_engine_backlog(fs->peers))
		return;
	goal = local - fs->cfg.local_max + fs->cfg.local_max / 10;
	(void)blk_store_evict_upto(fs->store, goal, &freed, &n);
	if (n)
		blk_log_info("evicted %llu blocks (%llu MiB) held by peers",
			     (unsigned long long)n,
			     (unsigned long long)(freed >> 20));
}

/* Periods between two looks at what the nodes lost (check_lost). */
#define LOST_PERIODS 5

/*
 * A node that lost fragments it had acknowledged (a damaged write-ahead
 * log: blocks/db/db.c) says how many in its STATUS, a count that only grows.
 * This writer still holds most blocks it wrote: when a node's count is
 * above what the "lostseen:NAME" meta record says was dealt with, every
 * block held here goes back on the upload queue (the nodes holding their
 * fragments answer "same"; the node that lost some gets them again), and
 * the record takes the new count. Blocks evicted from here are left to a
 * repair from the other nodes, which does not exist yet.
 */
static void check_lost(struct bfs *fs)
{
	uint64_t lost[CL_MAX_NODES], seen[CL_MAX_NODES], queued = 0;
	const char *names[CL_MAX_NODES];
	char key[96];
	unsigned n;
	bool more = false;

	if (fs->cfg.read_only || cl_engine_lost(fs->peers, lost, names, &n))
		return;
	for (unsigned i = 0; i < n; i++) {
		uint8_t v[8];
		int r = snprintf(key, sizeof(key), "lostseen:%s", names[i]);
		int64_t got = blk_db_get_into(fs->db, BFS_CF_META, key,
					      (size_t)r, v, sizeof(v));

		seen[i] = got == 8 ? blk_get_le64(v) : 0;
		if (lost[i] != UINT64_MAX && lost[i] > seen[i])
			more = true;
	}
	if (!more)
		return;
	int ret = blk_store_newlog_requeue(fs->store, &queued);
	for (unsigned i = 0; i < n; i++) {
		if (lost[i] == UINT64_MAX || lost[i] <= seen[i])
			continue;
		blk_log_err("node %s lost %llu fragments it had stored (%llu "
			    "since last seen): %s %llu blocks held here%s%s",
			    names[i], (unsigned long long)lost[i],
			    (unsigned long long)(lost[i] - seen[i]),
			    ret ? "could not queue the" : "uploading the",
			    (unsigned long long)queued,
			    ret ? " again: " : " again",
			    ret ? strerror(-ret) : "");
		if (ret)
			continue;
		uint8_t v[8];
		int r = snprintf(key, sizeof(key), "lostseen:%s", names[i]);
		blk_put_le64(v, lost[i]);
		if (blk_db_put(fs->db, BFS_CF_META, key, (size_t)r, v,
			       sizeof(v)))
			blk_log_warn("cannot record the loss of node %s as "
				     "dealt with",
				     names[i]);
	}
	if (!ret)
		cl_engine_kick(fs->peers);
}

/* Whether to compact now that the store holds @cur bytes (it held @prev
 * at the last look, fs->mt.freed were freed since the last compaction): when
 * enough is garbage and the store is quiet; on a small or nearly full
 * file system, sooner. */
static bool compact_due(struct bfs *fs, uint64_t prev, uint64_t cur)
{
	uint64_t total, after = COMPACT_AFTER, disk;
	uint64_t room = bfs_space_room(fs, false, &total);

	if (total && total / 8 < after)
		after = total / 8;
	bool short_room = room < after;
	if (fs->mt.freed && short_room)
		after = 0;
	if (fs->mt.freed > 0 && fs->mt.freed >= after && cur <= prev)
		return true;
	/* Room is short and the disk holds garbage the sampling of stored
	 * bytes missed (blocks stored and deleted between two looks):
	 * compact too, once more garbage than the overhead the last
	 * compaction left has piled up. */
	return short_room && blk_db_disk_usage(fs->db, &disk) == 0 &&
	       disk > cur + fs->mt.overhead + SPACE_GARBAGE;
}

static void compact(struct bfs *fs)
{
	struct blk_store_stats st;
	uint64_t disk, freed = fs->mt.freed;

	struct blk_db_compact_stats cs;

	fs->mt.freed = 0;
	int ret = blk_store_compact(fs->store, bfs_space_reserve(fs), &cs);
	bfs_space_compacted(fs, ret);
	if (ret)
		blk_log_err("compaction failed: %s (the node database's LOG "
			    "says more)",
			    strerror(-ret));
	else
		blk_log_info("compacted after %llu MiB were freed: blob files "
			     "%llu -> %llu MiB, %llu MiB garbage left, %u GC "
			     "passes",
			     (unsigned long long)(freed >> 20),
			     (unsigned long long)(cs.blob_bytes_before >> 20),
			     (unsigned long long)(cs.blob_bytes_after >> 20),
			     (unsigned long long)(cs.garbage_after >> 20),
			     cs.gc_passes);
	fs->mt.overhead = 0;
	if (blk_db_disk_usage(fs->db, &disk) == 0 &&
	    blk_store_stats(fs->store, &st) == 0 && disk > st.bytes)
		fs->mt.overhead = disk - st.bytes;
	bfs_space_forget(fs); /* look at the room again */
}

/* One period's work; no lock is held. */
static void maint_period(struct bfs *fs, unsigned period)
{
	struct blk_store_stats st;
	uint64_t prev = fs->mt.prev, cur = prev;

	bfs_write_attrs(fs);
	if (fs->peers && (period == 1 || period % LOST_PERIODS == 0))
		check_lost(fs);
	evict_blocks(fs);
	/* Bound what a crash can take of unsynced data, as a local
	 * filesystem's periodic commit does (blocks/store/journal.c J1). */
	if (period % SYNC_PERIODS == 0) {
		int r = blk_store_sync(fs->store);
		if (r)
			blk_log_err("periodic sync failed: %s", strerror(-r));
	}
	if (blk_store_stats(fs->store, &st) == 0)
		cur = st.bytes;
	if (cur < prev)
		fs->mt.freed += prev - cur;
	fs->mt.prev = cur;
	if (compact_due(fs, prev, cur))
		compact(fs);
}

/* A writer found no room (bfs_maint_reclaim): compact now if blocks were
 * deleted since the last compaction, then tell the writers waiting. On a
 * disk full of live data nothing was: the writers get ENOSPC at once. */
static void reclaim_now(struct bfs *fs)
{
	struct blk_store_stats st;
	uint64_t cur = fs->mt.prev;
	bool did = false;

	if (blk_store_stats(fs->store, &st) == 0)
		cur = st.bytes;
	if (cur < fs->mt.prev)
		fs->mt.freed += fs->mt.prev - cur;
	fs->mt.prev = cur;
	if (fs->mt.freed) {
		compact(fs);
		did = true;
	}
	pthread_mutex_lock(&fs->mt.lock);
	fs->mt.gen++;
	fs->mt.reclaimed = did;
	/* What it could give back is back: writers that still find no
	 * room do not wait for another round at once. */
	fs->mt.idle_at = mono_ms();
	pthread_cond_broadcast(&fs->mt.cond);
	pthread_mutex_unlock(&fs->mt.lock);
}

static void *maint_main(void *arg)
{
	struct bfs *fs = arg;

	for (unsigned period = 1;; period++) {
		struct timespec ts;
		int rc = 0;

		blk_deadline(&ts, MAINT_PERIOD_S * 1000);
		pthread_mutex_lock(&fs->mt.lock);
		/* Until the deadline (rc ETIMEDOUT) or a writer's call, past
		 * spurious wakeups. */
		while (!fs->mt.stop && !fs->mt.kick && rc == 0)
			rc = pthread_cond_timedwait(&fs->mt.cond, &fs->mt.lock,
						    &ts);
		bool stop = fs->mt.stop, kick = fs->mt.kick;
		fs->mt.kick = false;
		pthread_mutex_unlock(&fs->mt.lock);
		if (stop)
			break;
		if (kick)
			reclaim_now(fs);
		else
			maint_period(fs, period);
	}
	return NULL;
}

bool bfs_maint_reclaim(struct bfs *fs)
{
	struct timespec ts;
	int rc = 0;

	if (!fs->mt.started)
		return false;
	pthread_mutex_lock(&fs->mt.lock);
	uint64_t gen = fs->mt.gen;
	/* A round just ended: do not ask again at once (every write on a
	 * full disk would). */
	if (fs->mt.idle_at && mono_ms() - fs->mt.idle_at < RECLAIM_IDLE_MS) {
		pthread_mutex_unlock(&fs->mt.lock);
		return false;
	}
	fs->mt.kick = true;
	pthread_cond_broadcast(&fs->mt.cond);
	blk_deadline(&ts, RECLAIM_WAIT_MS);
	while (!fs->mt.stop && fs->mt.gen == gen && rc == 0)
		rc = pthread_cond_timedwait(&fs->mt.cond, &fs->mt.lock, &ts);
	bool ran = fs->mt.gen != gen && fs->mt.reclaimed;
	pthread_mutex_unlock(&fs->mt.lock);
	return ran;
}

int bfs_maint_start(struct bfs *fs)
{
	struct blk_store_stats st;

	if (blk_store_stats(fs->store, &st) == 0)
		fs->mt.prev = st.bytes;
	int ret = -pthread_create(&fs->mt.thread, NULL, maint_main, fs);
	if (!ret)
		fs->mt.started = true;
	return ret;
}

void bfs_maint_init(struct bfs_maint *mt)
{
	pthread_mutex_init(&mt->lock, NULL);
	blk_cond_init(&mt->cond);
}

void bfs_maint_stop(struct bfs *fs)
{
	pthread_mutex_lock(&fs->mt.lock);
	fs->mt.stop = true;
	pthread_cond_broadcast(&fs->mt.cond);
	pthread_mutex_unlock(&fs->mt.lock);
	if (fs->mt.started)
		pthread_join(fs->mt.thread, NULL);
	fs->mt.started = false;
}

void bfs_maint_destroy(struct bfs_maint *mt)
{
	pthread_cond_destroy(&mt->cond);
	pthread_mutex_destroy(&mt->lock);
}

int bfs_maint_final(struct bfs *fs)
{
	int ret = blk_store_sync(fs->store);
	/* Give back the space of whatever was deleted since the last
	 * compaction (including files freed just now). */
	struct blk_store_stats st = {0};
	blk_store_stats(fs->store, &st);
	if (fs->mt.freed || st.bytes < fs->mt.prev) {
		int r =
		    blk_store_compact(fs->store, bfs_space_reserve(fs), NULL);
		bfs_space_compacted(fs, r);
		if (r)
			blk_log_err("compaction at unmount failed: %s",
				    strerror(-r));
	}
	return ret;
}
