/* The hash helper (fs/hash.h): its thread, its one job slot and the
 * hashing both it and the flusher do. */
#include "fs/hash.h"

#include "blocks/base/clock.h"
#include "fs/bfs-int.h"

static void hash_items(struct hash_job *j)
{
	for (;;) {
		size_t k = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (k >= j->n)
			break;
		const uint8_t *p = j->base + (j->ch[k].off - j->base_off);
		j->zero[k] = bfs_all_zero(p, j->ch[k].len);
		if (!j->zero[k])
			blk_cid_compute_hash(&j->cids[k], j->hash,
					     BLK_CODEC_RAW, p, j->ch[k].len);
	}
}

static void *hash_helper_main(void *arg)
{
	struct bfs_hasher *h = arg;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (!h->stop &&
		       (!h->job ||
			__atomic_load_n(&h->job->next, __ATOMIC_RELAXED) >=
			    h->job->n))
			pthread_cond_wait(&h->cond, &h->lock);
		if (h->stop)
			break;
		struct hash_job *j = h->job;
		j->users++;
		pthread_mutex_unlock(&h->lock);
		hash_items(j);
		pthread_mutex_lock(&h->lock);
		j->users--;
		pthread_cond_broadcast(&h->done);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

void bfs_hasher_init(struct bfs_hasher *h)
{
	pthread_mutex_init(&h->lock, NULL);
	blk_cond_init(&h->cond);
	blk_cond_init(&h->done);
}

bool bfs_hasher_start(struct bfs_hasher *h)
{
	h->started = pthread_create(&h->thread, NULL, hash_helper_main, h) == 0;
	return h->started;
}

void bfs_hasher_stop(struct bfs_hasher *h)
{
	if (!h->started)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	h->started = false;
}

void bfs_hasher_destroy(struct bfs_hasher *h)
{
	pthread_cond_destroy(&h->done);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
}

void bfs_hash_chunks(struct bfs_hasher *h, struct hash_job *j)
{
	bool posted = false;

	if (h->started && j->n > 1) {
		pthread_mutex_lock(&h->lock);
		if (!h->job) {
			h->job = j;
			posted = true;
			pthread_cond_signal(&h->cond);
		}
		pthread_mutex_unlock(&h->lock);
	}
	hash_items(j);
	if (posted) {
		pthread_mutex_lock(&h->lock);
		h->job = NULL;
		while (j->users)
			pthread_cond_wait(&h->done, &h->lock);
		pthread_mutex_unlock(&h->lock);
	}
}
