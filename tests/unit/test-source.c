/* Tests of the block-source interface (blocks/store/source.h): one
 * contract, run against every backend — the block store and the
 * in-memory source. */

#include "blocks/store/source.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/store/store.h"
#include "tests/unit/check.h"

#define NBLOCKS 12
#define NTHREADS 4
#define PER_THREAD 16

struct block {
	struct blk_cid cid;
	uint8_t *data;
	size_t len;
};

/* Block @i: sizes from empty to past the store's WAL-less threshold,
 * raw leaves and one DAG codec. */
static void block_make(struct block *b, unsigned i, uint64_t seed)
{
	static const size_t sizes[] = {0, 1, 100, 4096, 70 * 1024, 300 * 1024};

	b->len = sizes[i % 6] + (i / 6);
	b->data = xmalloc(b->len ? b->len : 1);
	fill_random(b->data, b->len, seed * 1000 + i);
	blk_cid_compute(&b->cid,
			i % 5 == 4 ? BLK_CODEC_DAG_CBOR : BLK_CODEC_RAW,
			b->data, b->len);
}

struct tally {
	struct block *b;
	size_t n;
	unsigned seen[NBLOCKS];
	unsigned other, wrong_len, stop_at, calls;
	struct blk_source *src; /* each's callback reads through it */
};

static int tally_one(void *arg, const struct blk_cid *cid, size_t len)
{
	struct tally *t = arg;
	size_t i = 0;

	t->calls++;
	while (i < t->n && !blk_cid_equal(&t->b[i].cid, cid))
		i++;
	if (i == t->n) {
		t->other++;
	} else {
		t->seen[i]++;
		t->wrong_len += len != t->b[i].len;
		if (t->src) { /* a get from inside the walk */
			void *d = NULL;
			size_t dl = 0;

			t->wrong_len +=
			    blk_source_get(t->src, cid, &d, &dl) || dl != len;
			free(d);
		}
	}
	return t->stop_at && t->calls == t->stop_at ? 7 : 0;
}

struct putter {
	struct blk_source *src;
	unsigned id;
	int bad;
};

static void *put_thread(void *arg)
{
	struct putter *p = arg;

	for (unsigned i = 0; i < PER_THREAD; i++) {
		struct block b;

		block_make(&b, i, 100 + p->id);
		p->bad |= blk_source_put(p->src, &b.cid, b.data, b.len) != 0;
		p->bad |= blk_source_has(p->src, &b.cid) != 1;
		free(b.data);
	}
	return NULL;
}

/* How many distinct blocks the test puts (the empty block, for one, is
 * the same whatever its seed). */
static unsigned distinct_blocks(void)
{
	struct blk_cid all[NBLOCKS + 2 * PER_THREAD];
	unsigned n = 0, distinct = 0;

	for (unsigned seed = 1; seed <= 101; seed++) {
		if (seed > 1 && seed < 100)
			continue;
		for (unsigned i = 0; i < (seed == 1 ? NBLOCKS : PER_THREAD);
		     i++) {
			struct block b;

			block_make(&b, i, seed);
			all[n++] = b.cid;
			free(b.data);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		unsigned j = 0;

		while (j < i && !blk_cid_equal(&all[j], &all[i]))
			j++;
		distinct += j == i;
	}
	return distinct;
}

/* The contract of source.h, on an empty source @src. */
static void check_contract(struct blk_source *src)
{
	struct block b[NBLOCKS];
	struct tally t = {.b = b, .n = NBLOCKS};
	void *data;
	size_t len;

	printf("  backend %s\n", src->ops->name);
	for (unsigned i = 0; i < NBLOCKS; i++)
		block_make(&b[i], i, 1);

	/* Empty. */
	CHECK(blk_source_has(src, &b[0].cid) == 0);
	data = (void *)&t;
	CHECK(blk_source_get(src, &b[0].cid, &data, &len) == -ENOENT);
	CHECK(blk_source_each(src, tally_one, &t) == 0 && t.calls == 0);

	/* A put under a name the bytes do not hash to stores nothing. */
	CHECK(blk_source_put(src, &b[0].cid, b[1].data, b[1].len) == -EBADMSG);
	CHECK(blk_source_has(src, &b[0].cid) == 0);
	CHECK(blk_source_put(src, &b[0].cid, b[0].data,
			     (size_t)UINT32_MAX + 1) == -EINVAL);

	/* Puts, each block twice: held once, bytes as put. */
	for (unsigned r = 0; r < 2; r++)
		for (unsigned i = 0; i < NBLOCKS; i++)
			CHECK(blk_source_put(src, &b[i].cid, b[i].data,
					     b[i].len) == 0);
	for (unsigned i = 0; i < NBLOCKS; i++) {
		data = NULL;
		len = 12345;
		CHECK(blk_source_has(src, &b[i].cid) == 1);
		CHECK(blk_source_get(src, &b[i].cid, &data, &len) == 0);
		CHECK(data && len == b[i].len &&
		      (!len || !memcmp(data, b[i].data, len)));
		free(data);
	}

	/* each: every block once, with its length; reads from inside. */
	t.src = src;
	CHECK(blk_source_each(src, tally_one, &t) == 0);
	CHECK(t.calls == NBLOCKS && t.other == 0 && t.wrong_len == 0);
	for (unsigned i = 0; i < NBLOCKS; i++)
		CHECK(t.seen[i] == 1);
	/* ... and stops at the callback's non-zero return. */
	memset(&t, 0, sizeof(t));
	t.b = b;
	t.n = NBLOCKS;
	t.stop_at = 3;
	CHECK(blk_source_each(src, tally_one, &t) == 7 && t.calls == 3);

	/* Threads putting at once (blocks of their own, some shared). */
	{
		pthread_t th[NTHREADS];
		struct putter p[NTHREADS];
		int bad = 0;

		for (unsigned i = 0; i < NTHREADS; i++) {
			p[i] = (struct putter){.src = src, .id = i % 2};
			REQUIRE(pthread_create(&th[i], NULL, put_thread,
					       &p[i]) == 0);
		}
		for (unsigned i = 0; i < NTHREADS; i++) {
			pthread_join(th[i], NULL);
			bad |= p[i].bad;
		}
		CHECK(!bad);
		memset(&t, 0, sizeof(t));
		t.b = b;
		t.n = NBLOCKS;
		CHECK(blk_source_each(src, tally_one, &t) == 0);
		CHECK(t.calls == distinct_blocks());
	}
	for (unsigned i = 0; i < NBLOCKS; i++)
		free(b[i].data);
}

static void test_mem(void)
{
	struct blk_source *src = NULL;

	REQUIRE(blk_source_mem_new(&src) == 0 && src);
	check_contract(src);
	blk_source_free(src);
	blk_source_free(NULL);
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void test_store(void)
{
	char dir[] = "/tmp/test-source.XXXXXX";
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};
	struct blk_db *db = NULL;
	struct blk_store *st = NULL;
	struct blk_source *src = NULL;
	char err[256] = "";

	REQUIRE(mkdtemp(dir));
	REQUIRE(blk_store_register(&reg, NULL) == 0);
	REQUIRE(blk_db_open(dir, &o, &db, err, sizeof(err)) == 0);
	REQUIRE(blk_store_open(db, NULL, &st, err, sizeof(err)) == 0);
	REQUIRE(blk_source_store_new(st, &src) == 0 && src);
	check_contract(src);
	blk_source_free(src);
	blk_store_close(st);
	blk_db_close(db);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	test_mem();
	test_store();
	printf("source: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
