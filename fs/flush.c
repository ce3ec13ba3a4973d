/* Background flushing: dirty-memory accounting, the flush queue and its
 * threads, writer throttling, and the hash helper thread. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/clock.h"
#include "blocks/base/log.h"

void bfs_dirty_account(struct bfs *fs, int64_t delta)
{
	if (!delta)
		return;
	pthread_mutex_lock(&fs->q_lock);
	__atomic_fetch_add(&fs->dirty_bytes, (uint64_t)delta, __ATOMIC_RELAXED);
	if (delta < 0)
		pthread_cond_broadcast(&fs->q_drain);
	pthread_mutex_unlock(&fs->q_lock);
}

uint64_t bfs_dirty_bytes(struct bfs *fs)
{
	return __atomic_load_n(&fs->dirty_bytes, __ATOMIC_RELAXED);
}

/* Queue @ip for a background flush; the caller set ip->queued. */
void bfs_enqueue(struct bfs *fs, struct bfs_inode *ip)
{
	bfs_inode_ref(fs, ip);
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
		bfs_enqueue(fs, ip);
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
		bool stopping = fs->q_stop; /* read under q_lock */
		pthread_mutex_unlock(&fs->q_lock);

		pthread_mutex_lock(&ip->lock);
		ip->queued = false;
		bool final = ip->nopen == 0 || stopping;
		pthread_mutex_unlock(&ip->lock);

		int ret = bfs_flush_inode(fs, ip, final, NULL);
		if (ret)
			blk_log_err("inode %llu: flush failed: %s",
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
			bfs_enqueue(fs, ip);
		bfs_iput(fs, ip);
	}
	return NULL;
}

int bfs_flushers_start(struct bfs *fs)
{
	unsigned n = fs->cfg.flushers ? fs->cfg.flushers : 2;

	fs->flushers = calloc(n, sizeof(pthread_t));
	if (!fs->flushers)
		return -ENOMEM;
	for (fs->nflushers = 0; fs->nflushers < n; fs->nflushers++) {
		int ret = -pthread_create(&fs->flushers[fs->nflushers], NULL,
					  flusher_main, fs);
		if (ret)
			return ret;
	}
	return 0;
}

static void hash_items(struct hash_job *j)
{
	for (;;) {
		size_t k = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (k >= j->n)
			break;
		const uint8_t *p = j->base + (j->ch[k].off - j->base_off);
		j->zero[k] = bfs_all_zero(p, j->ch[k].len);
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

bool bfs_hash_helper_start(struct bfs *fs)
{
	fs->hp_started =
	    pthread_create(&fs->hp_thread, NULL, hash_helper_main, fs) == 0;
	return fs->hp_started;
}

void bfs_hash_helper_stop(struct bfs *fs)
{
	if (!fs->hp_started)
		return;
	pthread_mutex_lock(&fs->hp_lock);
	fs->hp_stop = true;
	pthread_cond_broadcast(&fs->hp_cond);
	pthread_mutex_unlock(&fs->hp_lock);
	pthread_join(fs->hp_thread, NULL);
}

void bfs_hash_chunks(struct bfs *fs, struct hash_job *j)
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

/* Over the memory bound, a writer first chunks its own file (a flush that
 * keeps chunk boundaries where they belong), then waits for the flushers;
 * only if nothing moves for THROTTLE_WAIT_MS does it force out its own
 * file whole. Returns 0 or the error of that flush. */
#define THROTTLE_WAIT_MS 2000
int bfs_throttle(struct bfs *fs, struct bfs_inode *ip)
{
	if (bfs_dirty_bytes(fs) <= fs->cfg.dirty_max)
		return 0;
	__atomic_fetch_add(&fs->n_sync_flushes, 1, __ATOMIC_RELAXED);
	int ret = bfs_flush_inode(fs, ip, false, NULL);
	if (ret)
		return ret;
	pthread_mutex_lock(&fs->q_lock);
	for (int waited = 0; bfs_dirty_bytes(fs) > fs->cfg.dirty_max &&
			     waited < THROTTLE_WAIT_MS;
	     waited += 100) {
		struct timespec ts;
		blk_deadline(&ts, 100);
		pthread_cond_timedwait(&fs->q_drain, &fs->q_lock, &ts);
	}
	pthread_mutex_unlock(&fs->q_lock);
	bool over = bfs_dirty_bytes(fs) > fs->cfg.dirty_max;
	if (over)
		ret = bfs_flush_inode(fs, ip, true, NULL);
	return ret;
}
