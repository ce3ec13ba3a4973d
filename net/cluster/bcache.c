/* The block cache: prefetch workers and the blocks held for reads; see
 * bcache.h.
 *
 * An entry's states:
 *
 *   QUEUED   --cache_worker takes it-----------> INFLIGHT
 *   INFLIGHT --the fetch succeeds--------------> READY
 *   INFLIGHT --the fetch fails-----------------> FAILED
 *   READY    --cl_bcache_take (taken = true)--> READY, at the front
 *   FAILED   --cl_bcache_take-----------------> gone
 *   READY, FAILED --make_room, drop_taken------> gone
 *
 * Invariants (under c->lock):
 *  1. The list is most recent first; npf counts its entries; at most one
 *     entry per CID.
 *  2. An INFLIGHT entry stays on the list, untouched by anyone but its
 *     worker, until the worker marks it READY or FAILED.
 *  3. data is set (malloc'd, hashing to cid) exactly when state is READY.
 *
 * Locks: c->lock guards every field so marked and every entry. The
 * workers drop it around their fetch. */
#include "net/cluster/bcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blocks/base/clock.h"

/* Blocks held: 32 MiB at 256 KiB, twice the read path's 16 MiB read-ahead
 * window, so blocks fetched ahead are not dropped before the reader takes
 * them. */
#define PF_MAX 128
#define PF_WORKERS 8	  /* blocks fetched ahead at once */
#define PF_STALE_MS 10000 /* a block fetched ahead and not read by then */

enum { PF_QUEUED, PF_INFLIGHT, PF_READY, PF_FAILED };

struct pf_ent {
	struct pf_ent *next;
	struct blk_cid cid;
	void *data; /* malloc'd, checked against cid, once READY */
	size_t len;
	int state;  /* PF_* */
	bool taken; /* read once: the first to go when room is needed */
	struct timespec done_at; /* READY or FAILED since (monotonic) */
};

struct cl_bcache {
	cl_bcache_fetch_fn fetch; /* read-only */
	void *arg;		  /* read-only */
	pthread_t thread[PF_WORKERS];
	unsigned nthreads; /* set at new, cleared at stop */

	pthread_mutex_t lock;
	pthread_cond_t ready; /* lock: an entry left INFLIGHT */
	pthread_cond_t work;  /* lock: an entry is queued, or stop */
	struct pf_ent *pf;    /* lock: most recent first */
	unsigned npf;	      /* lock */
	bool stop;	      /* lock */
};

/* Workers: each takes the oldest queued entry and fetches it exactly as a
 * read would, so that PF_WORKERS blocks of a sequential reader are on
 * their way at once. */
static void *cache_worker(void *arg)
{
	struct cl_bcache *c = arg;

	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		struct pf_ent *e = NULL;
		struct blk_cid cid;
		void *data = NULL;
		size_t len = 0;

		for (struct pf_ent *x = c->pf; x; x = x->next)
			if (x->state == PF_QUEUED)
				e = x; /* the list is newest first */
		if (!e) {
			pthread_cond_wait(&c->work, &c->lock);
			continue;
		}
		e->state = PF_INFLIGHT;
		cid = e->cid;
		pthread_mutex_unlock(&c->lock);
		int r = c->fetch(c->arg, &cid, &data, &len);
		pthread_mutex_lock(&c->lock);
		e->data = r == 0 ? data : NULL;
		e->len = len;
		e->state = r == 0 ? PF_READY : PF_FAILED;
		clock_gettime(CLOCK_MONOTONIC, &e->done_at);
		pthread_cond_broadcast(&c->ready);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* The entry for @cid, and in *@link (may be NULL) the pointer to it.
 * c->lock held. */
static struct pf_ent *find(struct cl_bcache *c, const struct blk_cid *cid,
			   struct pf_ent ***link)
{
	for (struct pf_ent **l = &c->pf; *l; l = &(*l)->next) {
		if (blk_cid_equal(&(*l)->cid, cid)) {
			if (link)
				*link = l;
			return *l;
		}
	}
	return NULL;
}

/* Take the entry at @link off the list and free it. c->lock held. */
static void unlink_ent(struct cl_bcache *c, struct pf_ent **link)
{
	struct pf_ent *e = *link;

	*link = e->next;
	free(e->data);
	free(e);
	c->npf--;
}

/* Drop an entry to make room: the least recently read, else the oldest
 * failure, else the oldest block fetched ahead that nobody read for
 * PF_STALE_MS (the reader went elsewhere). False if none may go: blocks
 * fetched ahead wait for their reader. c->lock held. */
static bool make_room(struct cl_bcache *c)
{
	struct pf_ent **taken = NULL, **failed = NULL, **stale = NULL, **victim;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	/* the list is most recent first */
	for (struct pf_ent **l = &c->pf; *l; l = &(*l)->next) {
		struct pf_ent *e = *l;

		if (e->state == PF_READY && e->taken)
			taken = l;
		else if (e->state == PF_FAILED)
			failed = l;
		else if (e->state == PF_READY &&
			 (now.tv_sec - e->done_at.tv_sec) * 1000 +
				 (now.tv_nsec - e->done_at.tv_nsec) / 1000000 >
			     PF_STALE_MS)
			stale = l;
	}
	victim = taken ? taken : failed ? failed : stale;
	if (!victim)
		return false;
	unlink_ent(c, victim);
	return true;
}

/* Whether an entry for @cid may be added: none is there, and there is
 * room or some can be made. c->lock held. */
static bool may_add(struct cl_bcache *c, const struct blk_cid *cid)
{
	return !find(c, cid, NULL) && (c->npf < PF_MAX || make_room(c));
}

/* Put @e at the front. c->lock held. */
static void push_front(struct cl_bcache *c, struct pf_ent *e)
{
	e->next = c->pf;
	c->pf = e;
	c->npf++;
}

void cl_bcache_prefetch(struct cl_bcache *c, const struct blk_cid *cids,
			size_t n)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < n && !c->stop; i++) {
		struct pf_ent *e;

		if (!may_add(c, &cids[i]))
			continue;
		e = calloc(1, sizeof(*e));
		if (!e)
			break;
		e->cid = cids[i];
		e->state = PF_QUEUED;
		push_front(c, e);
		pthread_cond_signal(&c->work);
	}
	pthread_mutex_unlock(&c->lock);
}

int cl_bcache_take(struct cl_bcache *c, const struct blk_cid *cid, void **data,
		   size_t *len)
{
	struct pf_ent **link, *e;
	int ret = -ENOENT;

	pthread_mutex_lock(&c->lock);
	while ((e = find(c, cid, &link)) && e->state == PF_INFLIGHT)
		pthread_cond_wait(&c->ready, &c->lock);
	if (e && e->state == PF_READY) {
		*link = e->next;
		e->next = c->pf;
		c->pf = e;
		e->taken = true;
		*data = malloc(e->len);
		ret = *data ? 0 : -ENOMEM;
		if (*data) {
			memcpy(*data, e->data, e->len);
			*len = e->len;
		}
	} else if (e) {
		unlink_ent(c, link);
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

void cl_bcache_drop_taken(struct cl_bcache *c)
{
	pthread_mutex_lock(&c->lock);
	for (struct pf_ent **l = &c->pf; *l;) {
		struct pf_ent *e = *l;

		if (e->state == PF_READY && e->taken)
			unlink_ent(c, l);
		else
			l = &e->next;
	}
	pthread_mutex_unlock(&c->lock);
}

void cl_bcache_keep(struct cl_bcache *c, const struct blk_cid *cid,
		    const void *data, size_t len)
{
	struct pf_ent *e = calloc(1, sizeof(*e));
	void *copy = e ? malloc(len) : NULL;

	if (!copy) {
		free(e);
		return;
	}
	memcpy(copy, data, len);
	e->cid = *cid;
	e->data = copy;
	e->len = len;
	e->state = PF_READY;
	e->taken = true;
	clock_gettime(CLOCK_MONOTONIC, &e->done_at);
	pthread_mutex_lock(&c->lock);
	if (!may_add(c, cid)) {
		pthread_mutex_unlock(&c->lock);
		free(copy);
		free(e);
		return;
	}
	push_front(c, e);
	pthread_mutex_unlock(&c->lock);
}

int cl_bcache_new(cl_bcache_fetch_fn fetch, void *arg, struct cl_bcache **out)
{
	struct cl_bcache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->fetch = fetch;
	c->arg = arg;
	pthread_mutex_init(&c->lock, NULL);
	blk_cond_init(&c->ready);
	blk_cond_init(&c->work);
	for (unsigned i = 0; i < PF_WORKERS; i++) {
		if (pthread_create(&c->thread[i], NULL, cache_worker, c))
			break; /* fewer workers will do */
		c->nthreads++;
	}
	*out = c;
	return 0;
}

void cl_bcache_stop(struct cl_bcache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->work);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < c->nthreads; i++)
		pthread_join(c->thread[i], NULL);
	c->nthreads = 0;
}

void cl_bcache_free(struct cl_bcache *c)
{
	if (!c)
		return;
	cl_bcache_stop(c);
	while (c->pf) {
		struct pf_ent *e = c->pf;
		c->pf = e->next;
		free(e->data);
		free(e);
	}
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->ready);
	pthread_cond_destroy(&c->work);
	free(c);
}
