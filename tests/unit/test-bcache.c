/* Tests of the block cache (net/cluster/bcache.c) with a fake fetch
 * function: prefetch, take, keep, drop_taken, the bound on blocks held,
 * and stop while every worker is busy.
 *
 * Deterministic: the blocks are seeded; a fetch the test wants in flight
 * waits at a gate the test opens; the tests wait on what the fake has
 * seen, never on time. */

#include "net/cluster/bcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/clock.h"
#include "tests/unit/check.h"

#define NBLOCKS 300
#define BLEN 1024
#define HELD_MAX 128 /* bcache.c's PF_MAX */
#define WORKERS 8    /* bcache.c's PF_WORKERS */

static struct blk_cid cids[NBLOCKS];
static uint8_t blocks[NBLOCKS][BLEN];

/* The fake fetch. fk.lock guards every field. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* lock: anything below changed */
	bool gate_shut;	     /* fetches wait while set */
	bool fail[NBLOCKS];  /* these fetches fail with -EIO */
	unsigned calls[NBLOCKS];
	unsigned ncalls;    /* fetches started */
	unsigned nreturned; /* fetches returned */
	unsigned active;    /* fetches started, not returned */
} fk;

static int block_index(const struct blk_cid *cid)
{
	for (int i = 0; i < NBLOCKS; i++)
		if (blk_cid_equal(&cids[i], cid))
			return i;
	return -1;
}

static int fake_fetch(void *arg, const struct blk_cid *cid, void **data,
		      size_t *len)
{
	int i = block_index(cid), ret = 0;

	(void)arg;
	REQUIRE(i >= 0);
	pthread_mutex_lock(&fk.lock);
	fk.calls[i]++;
	fk.ncalls++;
	fk.active++;
	pthread_cond_broadcast(&fk.cond);
	while (fk.gate_shut)
		pthread_cond_wait(&fk.cond, &fk.lock);
	if (fk.fail[i]) {
		ret = -EIO;
	} else {
		*data = xmalloc(BLEN);
		memcpy(*data, blocks[i], BLEN);
		*len = BLEN;
	}
	fk.active--;
	fk.nreturned++;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
	return ret;
}

static void fake_reset(void)
{
	pthread_mutex_lock(&fk.lock);
	fk.gate_shut = false;
	memset(fk.fail, 0, sizeof(fk.fail));
	memset(fk.calls, 0, sizeof(fk.calls));
	fk.ncalls = fk.nreturned = fk.active = 0;
	pthread_mutex_unlock(&fk.lock);
}

static void gate(bool shut)
{
	pthread_mutex_lock(&fk.lock);
	fk.gate_shut = shut;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
}

/* Wait until *@counter (a field of fk) is @n: 0, or -ETIMEDOUT after
 * 10 s (a bound for a broken cache, not a timing assumption). */
static int wait_count(const unsigned *counter, unsigned n)
{
	struct timespec deadline;

	blk_deadline(&deadline, 10000);
	pthread_mutex_lock(&fk.lock);
	while (*counter != n &&
	       pthread_cond_timedwait(&fk.cond, &fk.lock, &deadline) == 0)
		;
	int ret = *counter == n ? 0 : -ETIMEDOUT;
	pthread_mutex_unlock(&fk.lock);
	return ret;
}

static unsigned calls(unsigned i)
{
	pthread_mutex_lock(&fk.lock);
	unsigned n = fk.calls[i];
	pthread_mutex_unlock(&fk.lock);
	return n;
}

static unsigned ncalls(void)
{
	pthread_mutex_lock(&fk.lock);
	unsigned n = fk.ncalls;
	pthread_mutex_unlock(&fk.lock);
	return n;
}

/* take block @i: its result, and whether the bytes are right. */
static int take(struct cl_bcache *c, unsigned i, bool *right)
{
	void *data = NULL;
	size_t len = 0;
	int ret = cl_bcache_take(c, &cids[i], &data, &len);

	*right = ret == 0 && len == BLEN && !memcmp(data, blocks[i], BLEN);
	free(data);
	return ret;
}

static struct cl_bcache *cache_new(void)
{
	struct cl_bcache *c;

	fake_reset();
	REQUIRE(cl_bcache_new(fake_fetch, NULL, &c) == 0);
	return c;
}

/* ---- tests -------------------------------------------------------------- */

/* Blocks fetched ahead are taken without fetching again, as often as the
 * reader wants them; blocks never asked for are not held. */
static void test_prefetch_take(void)
{
	struct cl_bcache *c = cache_new();
	bool right;

	cl_bcache_prefetch(c, cids, 4);
	/* asked twice: once only */
	cl_bcache_prefetch(c, cids, 4);
	CHECK(wait_count(&fk.nreturned, 4) == 0);
	for (unsigned i = 0; i < 4; i++) {
		CHECK(take(c, i, &right) == 0 && right);
		CHECK(take(c, i, &right) == 0 && right);
		CHECK(calls(i) == 1);
	}
	CHECK(take(c, 10, &right) == -ENOENT);
	CHECK(ncalls() == 4);
	cl_bcache_free(c);
}

/* A take of a block being fetched waits for that fetch, and gets its
 * bytes. */
static void *bg_take(void *arg)
{
	struct cl_bcache *c = arg;
	bool right;
	intptr_t ok = take(c, 0, &right) == 0 && right;

	return (void *)ok;
}

static void test_take_waits_inflight(void)
{
	struct cl_bcache *c = cache_new();
	pthread_t t;
	void *ok;

	gate(true);
	cl_bcache_prefetch(c, cids, 1);
	CHECK(wait_count(&fk.active, 1) == 0); /* in flight */
	REQUIRE(pthread_create(&t, NULL, bg_take, c) == 0);
	gate(false);
	pthread_join(t, &ok);
	CHECK(ok == (void *)1);
	CHECK(calls(0) == 1);
	cl_bcache_free(c);
}

/* A failed fetch ahead: take says -ENOENT (fetch it the normal way) and
 * forgets it. */
static void test_failed(void)
{
	struct cl_bcache *c = cache_new();
	bool right;

	fk.fail[0] = true;
	cl_bcache_prefetch(c, cids, 2);
	CHECK(wait_count(&fk.nreturned, 2) == 0);
	CHECK(take(c, 0, &right) == -ENOENT);
	CHECK(take(c, 0, &right) == -ENOENT);
	CHECK(take(c, 1, &right) == 0 && right);
	CHECK(calls(0) == 1);
	cl_bcache_free(c);
}

/* keep holds a copy of a block fetched elsewhere, once. */
static void test_keep(void)
{
	struct cl_bcache *c = cache_new();
	uint8_t copy[BLEN];
	bool right;

	memcpy(copy, blocks[5], BLEN);
	cl_bcache_keep(c, &cids[5], copy, BLEN);
	memset(copy, 0, BLEN); /* the cache has its own copy */
	cl_bcache_keep(c, &cids[5], copy, BLEN); /* held already: nothing */
	CHECK(take(c, 5, &right) == 0 && right);
	/* and a prefetch of it asks nothing */
	cl_bcache_prefetch(c, &cids[5], 1);
	CHECK(take(c, 5, &right) == 0 && right);
	CHECK(ncalls() == 0);
	cl_bcache_free(c);
}

/* drop_taken forgets what was read (taken or kept), and keeps what was
 * fetched ahead and not read yet. */
static void test_drop_taken(void)
{
	struct cl_bcache *c = cache_new();
	bool right;

	cl_bcache_prefetch(c, cids, 3);
	CHECK(wait_count(&fk.nreturned, 3) == 0);
	CHECK(take(c, 0, &right) == 0 && right);
	cl_bcache_keep(c, &cids[7], blocks[7], BLEN);
	cl_bcache_drop_taken(c);
	CHECK(take(c, 0, &right) == -ENOENT);
	CHECK(take(c, 7, &right) == -ENOENT);
	CHECK(take(c, 1, &right) == 0 && right);
	CHECK(take(c, 2, &right) == 0 && right);
	CHECK(ncalls() == 3);
	cl_bcache_free(c);
}

/* At most HELD_MAX blocks: blocks read go first, least recently read
 * first; blocks fetched ahead and not read wait for their reader, so a
 * prefetch beyond the bound is skipped. */
static void test_bound(void)
{
	struct cl_bcache *c = cache_new();
	unsigned held = 0;
	bool right;

	for (unsigned i = 0; i < 200; i++)
		cl_bcache_keep(c, &cids[i], blocks[i], BLEN);
	/* the newest HELD_MAX stay (take adds nothing) */
	for (unsigned i = 200; i-- > 0;) {
		int r = take(c, i, &right);

		CHECK(r == (i >= 200 - HELD_MAX ? 0 : -ENOENT));
		held += r == 0;
	}
	CHECK(held == HELD_MAX);
	cl_bcache_free(c);

	/* Fetched ahead, not read: nothing may go to make room. */
	c = cache_new();
	gate(true);
	cl_bcache_prefetch(c, cids, 200);
	gate(false);
	CHECK(wait_count(&fk.nreturned, HELD_MAX) == 0);
	for (unsigned i = 0; i < 200; i++)
		CHECK(take(c, i, &right) == (i < HELD_MAX ? 0 : -ENOENT));
	/* once read, they make room for the next ones */
	cl_bcache_prefetch(c, &cids[HELD_MAX], 10);
	CHECK(wait_count(&fk.nreturned, HELD_MAX + 10) == 0);
	for (unsigned i = HELD_MAX; i < HELD_MAX + 10; i++)
		CHECK(take(c, i, &right) == 0 && right);
	CHECK(ncalls() == HELD_MAX + 10);
	cl_bcache_free(c);
}

/* Stop with every worker in a fetch and more queued: it returns only once
 * no fetch is in flight any more, and a prefetch after it asks nothing.
 * (Whether a worker starts a queued fetch between the stop's call and its
 * flag is a race the test cannot see; either is right.) */
static void *bg_stop(void *arg)
{
	cl_bcache_stop(arg);
	return NULL;
}

static void test_stop_busy(void)
{
	struct cl_bcache *c = cache_new();
	unsigned n;
	pthread_t t;
	bool right;

	gate(true);
	cl_bcache_prefetch(c, cids, WORKERS + 5);
	CHECK(wait_count(&fk.active, WORKERS) == 0);
	REQUIRE(pthread_create(&t, NULL, bg_stop, c) == 0);
	gate(false);
	pthread_join(t, NULL);
	pthread_mutex_lock(&fk.lock);
	CHECK(fk.active == 0 && fk.nreturned == fk.ncalls);
	CHECK(fk.ncalls >= WORKERS && fk.ncalls <= WORKERS + 5);
	n = fk.ncalls;
	pthread_mutex_unlock(&fk.lock);
	cl_bcache_prefetch(c, &cids[50], 3);
	CHECK(take(c, 50, &right) == -ENOENT);
	CHECK(ncalls() == n);
	cl_bcache_free(c);
}

int main(void)
{
	pthread_mutex_init(&fk.lock, NULL);
	blk_cond_init(&fk.cond);
	for (unsigned i = 0; i < NBLOCKS; i++) {
		fill_random(blocks[i], BLEN, i + 1);
		blk_cid_compute(&cids[i], BLK_CODEC_RAW, blocks[i], BLEN);
	}
	test_prefetch_take();
	test_take_waits_inflight();
	test_failed();
	test_keep();
	test_drop_taken();
	test_bound();
	test_stop_busy();
	printf("test-bcache: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
