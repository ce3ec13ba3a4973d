/* Unit tests of the DAG walker (blocks/dag/walk.h) on DAGs built in
 * memory with dir.h and file.h: every block once, parents first, hole
 * leaves made not fetched, HAMT directories, sub paths, dedup, and
 * failures (a missing block, a malformed one). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/dir.h"
#include "blocks/dag/file.h"
#include "blocks/dag/walk.h"
#include "tests/unit/check.h"
#include "tests/unit/memblocks.h"

static struct memblocks mem;

/* What the walk saw, in order. */
#define MAXSEEN 8192
static struct blk_cid seen[MAXSEEN];
static size_t nseen;

static int record(void *ctx, const struct blk_cid *cid, const uint8_t *data,
		  size_t len)
{
	(void)ctx;
	REQUIRE(nseen < MAXSEEN);
	CHECK(blk_cid_verify(cid, data, len));
	seen[nseen++] = *cid;
	return 0;
}

static long seen_at(const struct blk_cid *cid)
{
	for (size_t i = 0; i < nseen; i++)
		if (blk_cid_equal(&seen[i], cid))
			return (long)i;
	return -1;
}

/* A raw leaf of @len bytes from @seed (0: zeros, not stored). */
static struct blk_cid leaf(size_t len, uint64_t seed, bool store)
{
	uint8_t *b = xmalloc(len);
	struct blk_cid c;

	if (seed)
		fill_random(b, len, seed);
	blk_cid_compute(&c, BLK_CODEC_RAW, b, len);
	if (store)
		REQUIRE(memblocks_put(&mem, &c, b, len) == 0);
	free(b);
	return c;
}

/* A file of the given leaves; its root and dag size. */
static struct blk_cid file(const struct blk_cid *leaves, const size_t *lens,
			   size_t n, uint64_t *tsize)
{
	struct blk_dag_file *f;
	struct blk_cid root;
	uint64_t size;

	REQUIRE(blk_dag_file_new(&f, NULL, memblocks_put, NULL, &mem) == 0);
	for (size_t i = 0; i < n; i++)
		REQUIRE(blk_dag_file_add_leaf(f, &leaves[i], lens[i]) == 0);
	REQUIRE(blk_dag_file_finish(f, &root, &size, tsize) == 0);
	blk_dag_file_free(&f);
	return root;
}

static size_t prefetched, prefetch_calls;

static void count_prefetch(void *ctx, const struct blk_cid *cids, size_t n)
{
	(void)ctx, (void)cids;
	prefetch_calls++;
	prefetched += n;
}

static struct blk_walk_config cfg = {.fetch = memblocks_get,
				     .visit = record,
				     .prefetch = count_prefetch,
				     .ctx = &mem};

/* A tree: /a (file of 3 leaves, one a hole), /b (the same file: dedup),
 * /d/e (one-leaf file), /d/big (a HAMT of 4000 entries, each a one-leaf
 * file, 50 of them the same leaf), /s/t (a symlink). */
static void test_tree(void)
{
	struct blk_cid lv[3], a, e, big, d, root, s, sym;
	size_t lens[3] = {1000, BLK_WALK_ZERO_MAX, 500};
	uint64_t ta, te, tbig, td, troot, tsym;
	struct blk_dag_dir *dir;
	struct blk_walk_stats st;

	lv[0] = leaf(1000, 1, true);
	lv[1] = leaf(BLK_WALK_ZERO_MAX, 0, false); /* a hole: never stored */
	lv[2] = leaf(500, 2, true);
	a = file(lv, lens, 3, &ta);
	e = leaf(10, 3, true);
	te = 10;

	/* a symlink node, by hand: dag-pb Data = UnixFS Symlink */
	static const uint8_t symblk[] = {0x0a, 0x05, 0x08, 0x04,
					 0x12, 0x01, 'x'};
	blk_cid_compute(&sym, BLK_CODEC_DAG_PB, symblk, sizeof(symblk));
	REQUIRE(memblocks_put(&mem, &sym, symblk, sizeof(symblk)) == 0);
	tsym = sizeof(symblk);

	REQUIRE(blk_dag_dir_new(&dir) == 0);
	for (int i = 0; i < 4000; i++) {
		char name[64];
		int n = snprintf(name, sizeof(name),
				 "a-rather-long-name-to-shard-the-dir-%06d", i);
		struct blk_cid c =
		    leaf(8, i < 50 ? 99 : (uint64_t)i + 1000, true);
		REQUIRE(blk_dag_dir_add(dir, name, (size_t)n, &c, 8, 0) == 0);
	}
	/* 4000 * (42 + 36) bytes: past the threshold, so sharded */
	REQUIRE(blk_dag_dir_will_shard(dir));
	REQUIRE(blk_dag_dir_finish(dir, NULL, memblocks_put, &mem, &big,
				   &tbig) == 0);
	blk_dag_dir_reset(dir);
	REQUIRE(blk_dag_dir_add(dir, "e", 1, &e, te, 0) == 0);
	REQUIRE(blk_dag_dir_add(dir, "big", 3, &big, tbig,
				BLK_DAG_DIR_SUBDIR_IMPLICIT) == 0);
	REQUIRE(blk_dag_dir_finish(dir, NULL, memblocks_put, &mem, &d, &td) ==
		0);
	blk_dag_dir_reset(dir);
	REQUIRE(blk_dag_dir_add(dir, "t", 1, &sym, tsym, 0) == 0);
	uint64_t ts;
	REQUIRE(blk_dag_dir_finish(dir, NULL, memblocks_put, &mem, &s, &ts) ==
		0);
	blk_dag_dir_reset(dir);
	REQUIRE(blk_dag_dir_add(dir, "a", 1, &a, ta, 0) == 0);
	REQUIRE(blk_dag_dir_add(dir, "b", 1, &a, ta, 0) == 0);
	REQUIRE(blk_dag_dir_add(dir, "d", 1, &d, td,
				BLK_DAG_DIR_SUBDIR_IMPLICIT) == 0);
	REQUIRE(blk_dag_dir_add(dir, "s", 1, &s, ts,
				BLK_DAG_DIR_SUBDIR_IMPLICIT) == 0);
	REQUIRE(blk_dag_dir_finish(dir, NULL, memblocks_put, &mem, &root,
				   &troot) == 0);
	blk_dag_dir_free(&dir);

	/* Every block stored is reached once; the hole is made. */
	nseen = 0;
	mem.fetches = 0;
	CHECK(blk_dag_walk(&cfg, &root, &st) == 0);
	/* one file node: its 2 stored leaves asked ahead, not the hole */
	CHECK(prefetch_calls == 1 && prefetched == 2);
	CHECK(st.blocks == nseen && st.zeros == 1);
	CHECK(nseen == mem.n + 1);
	CHECK(seen_at(&lv[1]) >= 0);
	for (size_t i = 0; i < mem.cap; i++)
		if (mem.slots[i].data)
			CHECK(seen_at(&mem.slots[i].cid) >= 0);
	size_t dups = 0;
	for (size_t i = 0; i < nseen; i++)
		for (size_t j = i + 1; j < nseen; j++)
			dups += blk_cid_equal(&seen[i], &seen[j]);
	CHECK(dups == 0);
	/* each block fetched once (the hole never) */
	CHECK(st.fetches == mem.n && mem.fetches == mem.n);
	/* parents first */
	CHECK(seen_at(&root) == 0);
	CHECK(seen_at(&a) > 0 && seen_at(&a) < seen_at(&lv[0]) &&
	      seen_at(&lv[0]) < seen_at(&lv[1]) &&
	      seen_at(&lv[1]) < seen_at(&lv[2]));
	CHECK(seen_at(&d) < seen_at(&big) && seen_at(&d) < seen_at(&e));
	CHECK(seen_at(&s) < seen_at(&sym));
	/* the blocks' sum is the root's Tsize less what Tsizes count twice:
	 * /b (the same file as /a) and 49 repeated 8-byte leaves */
	CHECK(st.bytes == troot - ta - 49 * 8);

	/* Sub paths: /d/big alone; "/" and "" the root; errors. */
	struct blk_cid sub;
	CHECK(blk_dag_walk_resolve(memblocks_get, &mem, &root, "/d//big/",
				   &sub) == 0 &&
	      blk_cid_equal(&sub, &big));
	CHECK(blk_dag_walk_resolve(memblocks_get, &mem, &root, "/", &sub) ==
		  0 &&
	      blk_cid_equal(&sub, &root));
	CHECK(blk_dag_walk_resolve(memblocks_get, &mem, &root, "", &sub) == 0 &&
	      blk_cid_equal(&sub, &root));
	CHECK(blk_dag_walk_resolve(memblocks_get, &mem, &root, "/d/nope",
				   &sub) == -ENOENT);
	CHECK(blk_dag_walk_resolve(memblocks_get, &mem, &root, "/d/e/x",
				   &sub) == -ENOTDIR);
	CHECK(blk_dag_walk_resolve(memblocks_get, &mem, &root, "/a/x", &sub) ==
	      -ENOTDIR);
	CHECK(blk_dag_walk_resolve(memblocks_get, &mem, &root,
				   "/d/big/a-rather-long-name-to-shard-the-"
				   "dir-000007",
				   &sub) == 0 &&
	      sub.codec == BLK_CODEC_RAW);
	nseen = 0;
	CHECK(blk_dag_walk(&cfg, &big, &st) == 0);
	CHECK(seen_at(&big) == 0 && st.bytes == tbig - 49 * 8);
	/* 4000 entries, 50 sharing a leaf: 3951 leaves and the shards */
	CHECK(nseen > 3951 && seen_at(&e) < 0);

	/* A file or a leaf as the root. */
	nseen = 0;
	CHECK(blk_dag_walk(&cfg, &a, &st) == 0 && nseen == 4 && st.bytes == ta);
	nseen = 0;
	CHECK(blk_dag_walk(&cfg, &e, &st) == 0 && nseen == 1);

	/* A block missing: the walk stops with the fetch's error and says
	 * which block. */
	struct memblock *m = memblocks_slot(&mem, &lv[2]);
	uint8_t *keep = m->data;
	m->data = NULL;
	/* (the slot looks empty to memblocks_get: -ENOENT) */
	nseen = 0;
	int ret = blk_dag_walk(&cfg, &root, &st);
	m->data = keep;
	CHECK(ret == -ENOENT);
	CHECK(st.has_failed && blk_cid_equal(&st.failed, &lv[2]));

	/* No visit callback: a count only. */
	struct blk_walk_config stop = cfg;
	stop.visit = NULL;
	CHECK(blk_dag_walk(&stop, &root, &st) == 0 && st.blocks == mem.n + 1);
}

static int fail_visit(void *ctx, const struct blk_cid *cid, const uint8_t *data,
		      size_t len)
{
	(void)ctx, (void)cid, (void)data, (void)len;
	return -EPIPE;
}

static void test_errors(void)
{
	struct blk_walk_stats st;
	struct blk_cid bad, c;

	/* not UnixFS: a dag-pb node without Data */
	static const uint8_t empty_pb[] = {0};
	blk_cid_compute(&bad, BLK_CODEC_DAG_PB, empty_pb, 0);
	REQUIRE(memblocks_put(&mem, &bad, empty_pb, 0) == 0);
	CHECK(blk_dag_walk(&cfg, &bad, &st) == -EBADMSG && st.has_failed &&
	      blk_cid_equal(&st.failed, &bad));
	/* a dag-cbor CID is not UnixFS */
	blk_cid_compute(&c, BLK_CODEC_DAG_CBOR, "x", 1);
	CHECK(blk_dag_walk(&cfg, &c, &st) == -EBADMSG);
	/* a visit error is returned */
	struct blk_walk_config v = {
	    .fetch = memblocks_get, .visit = fail_visit, .ctx = &mem};
	c = leaf(10, 77, true);
	CHECK(blk_dag_walk(&v, &c, &st) == -EPIPE);
	CHECK(blk_dag_walk(NULL, &c, &st) == -EINVAL);
	/* zero leaves: of every size up to the bound, not beyond */
	c = leaf(4096, 0, false);
	CHECK(blk_walk_is_zero_leaf(&c, 4096));
	CHECK(!blk_walk_is_zero_leaf(&c, 4095));
	c = leaf(BLK_WALK_ZERO_MAX + 1, 0, false);
	CHECK(!blk_walk_is_zero_leaf(&c, BLK_WALK_ZERO_MAX + 1));
	c = leaf(0, 0, false);
	CHECK(blk_walk_is_zero_leaf(&c, 0));
	/* with the other hash too (a cluster made with blake2b-256) */
	uint8_t *z = xmalloc(8192);
	blk_cid_compute_hash(&c, BLK_HASH_BLAKE2B_256, BLK_CODEC_RAW, z, 8192);
	CHECK(blk_walk_is_zero_leaf(&c, 8192));
	free(z);
}

/* Directories nested @levels deep, one leaf at the bottom. */
static struct blk_cid nest(unsigned levels)
{
	struct blk_dag_dir *d;
	struct blk_cid c = leaf(5, 4242, true);
	uint64_t ts = 5;

	REQUIRE(blk_dag_dir_new(&d) == 0);
	for (unsigned i = 0; i < levels; i++) {
		blk_dag_dir_reset(d);
		REQUIRE(blk_dag_dir_add(d, "d", 1, &c, ts,
					i ? BLK_DAG_DIR_SUBDIR_IMPLICIT : 0) ==
			0);
		REQUIRE(blk_dag_dir_finish(d, NULL, memblocks_put, &mem, &c,
					   &ts) == 0);
	}
	blk_dag_dir_free(&d);
	return c;
}

/* Depth: as deep as a path can go walks; deeper is -ELOOP. */
static void test_depth(void)
{
	struct blk_walk_config plain = {.fetch = memblocks_get, .ctx = &mem};
	struct blk_walk_stats st;
	struct blk_cid c = nest(BLK_WALK_MAX_DEPTH);

	CHECK(blk_dag_walk(&plain, &c, &st) == 0 &&
	      st.blocks == BLK_WALK_MAX_DEPTH + 1);
	c = nest(BLK_WALK_MAX_DEPTH + 1);
	CHECK(blk_dag_walk(&plain, &c, &st) == -ELOOP && st.has_failed);
}

int main(void)
{
	test_tree();
	test_errors();
	test_depth();
	memblocks_clear(&mem);
	printf("test-walk: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
