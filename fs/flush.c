/* The flush queue (struct bfs_flushq): the inodes waiting for a background
 * flush, the flusher threads, the count of dirty memory, and the writers
 * it holds back. */
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
	pthread_mutex_lock(&fs->fq.lock);
	__atomic_fetch_add(&fs->fq.dirty_bytes, (uint64_t)delta,
			   __ATOMIC_RELAXED);
	if (delta < 0)
		pthread_cond_broadcast(&fs->fq.drain);
	pthread_mutex_unlock(&fs->fq.lock);
}

uint64_t bfs_dirty_bytes(struct bfs *fs)
{
	return __atomic_load_n(&fs->fq.dirty_bytes, __ATOMIC_RELAXED);
}

/* Queue @ip for a background flush; the caller set ip->queued. */
void bfs_enqueue(struct bfs *fs, struct bfs_inode *ip)
{
	bfs_inode_ref(fs, ip);
	pthread_mutex_lock(&fs->fq.lock);
	ip->qnext = NULL;
	if (fs->fq.tail)
		fs->fq.tail->qnext = ip;
	else
		fs->fq.head = ip;
	fs->fq.tail = ip;
	pthread_cond_signal(&fs->fq.cond);
	pthread_mutex_unlock(&fs->fq.lock);
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
		pthread_mutex_lock(&fs->fq.lock);
		while (!fs->fq.head && !fs->fq.stop)
			pthread_cond_wait(&fs->fq.cond, &fs->fq.lock);
		struct bfs_inode *ip = fs->fq.head;
		if (!ip) {
			pthread_mutex_unlock(&fs->fq.lock);
			break;
		}
		fs->fq.head = ip->qnext;
		if (!fs->fq.head)
			fs->fq.tail = NULL;
		bool stopping = fs->fq.stop; /* read under fq.lock */
		pthread_mutex_unlock(&fs->fq.lock);

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

void bfs_flushq_init(struct bfs_flushq *fq)
{
	pthread_mutex_init(&fq->lock, NULL);
	blk_cond_init(&fq->cond);
	blk_cond_init(&fq->drain);
}

int bfs_flushq_start(struct bfs *fs)
{
	unsigned n = fs->cfg.flushers ? fs->cfg.flushers : 2;

	fs->fq.threads = calloc(n, sizeof(pthread_t));
	if (!fs->fq.threads)
		return -ENOMEM;
	for (fs->fq.nthreads = 0; fs->fq.nthreads < n; fs->fq.nthreads++) {
		int ret = -pthread_create(&fs->fq.threads[fs->fq.nthreads],
					  NULL, flusher_main, fs);
		if (ret)
			return ret;
	}
	return 0;
}

void bfs_flushq_stop(struct bfs *fs)
{
	if (!fs->fq.threads)
		return;
	pthread_mutex_lock(&fs->fq.lock);
	fs->fq.stop = true;
	pthread_cond_broadcast(&fs->fq.cond);
	pthread_mutex_unlock(&fs->fq.lock);
	for (unsigned i = 0; i < fs->fq.nthreads; i++)
		pthread_join(fs->fq.threads[i], NULL);
	free(fs->fq.threads);
	fs->fq.threads = NULL;
	fs->fq.nthreads = 0;
}

void bfs_flushq_destroy(struct bfs_flushq *fq)
{
	pthread_cond_destroy(&fq->drain);
	pthread_cond_destroy(&fq->cond);
	pthread_mutex_destroy(&fq->lock);
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
	pthread_mutex_lock(&fs->fq.lock);
	for (int waited = 0; bfs_dirty_bytes(fs) > fs->cfg.dirty_max &&
			     waited < THROTTLE_WAIT_MS;
	     waited += 100) {
		struct timespec ts;
		blk_deadline(&ts, 100);
		pthread_cond_timedwait(&fs->fq.drain, &fs->fq.lock, &ts);
	}
	pthread_mutex_unlock(&fs->fq.lock);
	bool over = bfs_dirty_bytes(fs) > fs->cfg.dirty_max;
	if (over)
		ret = bfs_flush_inode(fs, ip, true, NULL);
	return ret;
}
