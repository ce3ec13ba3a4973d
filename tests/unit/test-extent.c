/* Unit tests for a file's write buffer (fs/wbuf.c) and extent-map range
 * lookups (fs/extent.c), checked against a plain byte-array model. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blocks/store/store.h"
#include "fs/extent.h"
#include "fs/meta.h"
#include "fs/wbuf.h"

#include "tests/unit/check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* The buffer's segments are sorted and disjoint (they may touch), and
 * their lengths add up to w->bytes. */
static int well_formed(const struct wbuf *w)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < w->n; i++) {
		if (w->segs[i].len == 0 || w->segs[i].len > w->segs[i].cap)
			return 0;
		if (i &&
		    w->segs[i - 1].off + w->segs[i - 1].len > w->segs[i].off)
			return 0;
		sum += w->segs[i].len;
	}
	return sum == w->bytes;
}

/* wbuf_next_data and wbuf_data_end at a few offsets against the
 * coverage model of @limit bytes. */
static void check_data_search(const struct wbuf *w, const uint8_t *covered,
			      uint64_t limit)
{
	for (int k = 0; k < 8; k++) {
		uint64_t off = rnd() % (limit + 10), at = 0, want = off;
		while (want < limit && !covered[want])
			want++;
		bool found = wbuf_next_data(w, off, &at);
		CHECK(found == (want < limit));
		if (found)
			CHECK(at == want);
		uint64_t end = off;
		while (end < limit && covered[end])
			end++;
		CHECK(wbuf_data_end(w, off) == end);
	}
}

/* Random writes, under-writes, punches and truncates against a model: bytes and
 * coverage must match exactly. */
static void test_wbuf_model(void)
{
	enum { SPACE = 1 << 16 };
	static uint8_t model[SPACE], covered[SPACE], got[SPACE], buf[4096];

	for (int round = 0; round < 20; round++) {
		struct wbuf w = WBUF_INIT;
		uint64_t limit = SPACE;
		memset(model, 0, sizeof(model));
		memset(covered, 0, sizeof(covered));
		for (int op = 0; op < 400; op++) {
			uint64_t off = rnd() % limit;
			size_t len = 1 + rnd() % sizeof(buf);
			if (off + len > limit)
				len = limit - off;
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rnd();
			int kind = (int)(rnd() % 12);
			if (kind >= 10) {
				/* a punch: sometimes inside one segment */
				CHECK(wbuf_punch(&w, off, len) == 0);
				memset(model + off, 0, len);
				memset(covered + off, 0, len);
			} else if (kind < 6) {
				CHECK(wbuf_write(&w, off, buf, len) == 0);
				memcpy(model + off, buf, len);
				memset(covered + off, 1, len);
			} else if (kind < 9) {
				CHECK(wbuf_write_under(&w, off, buf, len) == 0);
				for (size_t i = 0; i < len; i++) {
					if (!covered[off + i]) {
						model[off + i] = buf[i];
						covered[off + i] = 1;
					}
				}
			} else {
				wbuf_truncate(&w, off);
				memset(model + off, 0, limit - off);
				memset(covered + off, 0, limit - off);
			}
			CHECK(well_formed(&w));
			check_data_search(&w, covered, limit);
		}
		memset(got, 0, sizeof(got));
		uint64_t n = wbuf_overlay(&w, 0, got, SPACE);
		uint64_t want = 0;
		for (size_t i = 0; i < SPACE; i++)
			want += covered[i];
		CHECK(n == want);
		CHECK(memcmp(got, model, SPACE) == 0);
		/* A window in the middle sees the same bytes. */
		memset(got, 0xee, sizeof(got));
		wbuf_overlay(&w, 1000, got, 3000);
		int same = 1;
		for (size_t i = 0; i < 3000; i++)
			if (covered[1000 + i] && got[i] != model[1000 + i])
				same = 0;
		CHECK(same);
		uint64_t end = 0;
		for (size_t i = 0; i < SPACE; i++)
			if (covered[i])
				end = i + 1;
		CHECK(wbuf_end(&w) == end);
		wbuf_clear(&w);
		CHECK(w.n == 0 && w.bytes == 0);
	}
}

/* Appends grow a segment in place up to WBUF_SEG_MAX, then start the
 * next one; a flush takes a bounded prefix; a tail put back in front of
 * the next segment lands in its headroom. */
static void test_wbuf_append(void)
{
	struct wbuf w = WBUF_INIT, f = WBUF_INIT;
	static uint8_t chunk[131072];
	const uint64_t total = 256ull * sizeof(chunk); /* 32 MiB */

	for (int i = 0; i < 256; i++) {
		memset(chunk, i, sizeof(chunk));
		CHECK(wbuf_write(&w, (uint64_t)i * sizeof(chunk), chunk,
				 sizeof(chunk)) == 0);
	}
	CHECK(w.n == total / WBUF_SEG_MAX);
	CHECK(w.bytes == total);
	for (size_t i = 0; i < w.n; i++)
		CHECK(w.segs[i].len == WBUF_SEG_MAX);
	CHECK(w.segs[1].head == WBUF_HEADROOM);
	CHECK(w.segs[3].data[WBUF_SEG_MAX - 1] == 255);

	/* Take one segment's worth; the rest stays. */
	CHECK(wbuf_take_prefix(&w, 1, &f) == 0);
	CHECK(f.n == 1 && f.bytes == WBUF_SEG_MAX && f.segs[0].off == 0);
	CHECK(w.n == 3 && w.bytes == total - WBUF_SEG_MAX);
	/* Its last 300000 bytes go back: into the next segment's headroom. */
	uint8_t *next_data = w.segs[0].data;
	CHECK(wbuf_write_under(&w, WBUF_SEG_MAX - 300000,
			       f.segs[0].data + WBUF_SEG_MAX - 300000,
			       300000) == 0);
	CHECK(w.n == 3 && w.segs[0].off == WBUF_SEG_MAX - 300000);
	CHECK(w.segs[0].data == next_data - 300000);
	CHECK(w.segs[0].len == WBUF_SEG_MAX + 300000);
	CHECK(w.segs[0].data[0] == 61 && w.segs[0].data[300000] == 64);
	wbuf_clear(&f);
	CHECK(wbuf_take_prefix(&w, UINT64_MAX, &f) == 0);
	CHECK(w.n == 0 && f.n == 3);

	/* Touching writes join the left neighbour; overlaps merge. */
	struct wbuf v = WBUF_INIT;
	CHECK(wbuf_write(&v, 0, "aaaa", 4) == 0);
	CHECK(wbuf_write(&v, 8, "cccc", 4) == 0);
	CHECK(v.n == 2);
	CHECK(wbuf_write(&v, 4, "bbbb", 4) == 0);
	CHECK(v.n == 2 && v.bytes == 12);
	CHECK(memcmp(v.segs[0].data, "aaaabbbb", 8) == 0);
	CHECK(wbuf_write(&v, 6, "BBBB", 4) == 0);
	CHECK(v.n == 1 && v.bytes == 12);
	CHECK(memcmp(v.segs[0].data, "aaaabbBBBBcc", 12) == 0);
	/* Older data slides under: only the gap is filled. */
	CHECK(wbuf_write(&v, 20, "zz", 2) == 0);
	CHECK(wbuf_write_under(&v, 10, "XXXXXXXXXXXX", 12) == 0);
	CHECK(v.bytes == 22);
	uint8_t all[22];
	CHECK(wbuf_overlay(&v, 0, all, 22) == 22);
	CHECK(memcmp(all, "aaaabbBBBBccXXXXXXXXzz", 22) == 0);
	wbuf_truncate(&v, 5);
	CHECK(v.n == 1 && v.bytes == 5);
	wbuf_truncate(&v, 0);
	CHECK(v.n == 0 && v.bytes == 0);
	wbuf_clear(&w);
	wbuf_clear(&f);
	wbuf_clear(&v);
}

static void put_extent(struct blk_db *db, uint64_t ino, uint64_t off,
		       uint32_t len)
{
	uint8_t key[16], val[BFS_EXTENT_VAL_MAX];
	struct blk_cid cid;
	uint8_t data[8];

	memcpy(data, &off, sizeof(off));
	blk_cid_compute(&cid, BLK_CODEC_RAW, data, sizeof(data));
	CHECK(blk_db_put(db, BFS_CF_EXTENTS, key, bfs_extent_key(key, ino, off),
			 val, bfs_extent_encode(val, len, false, &cid)) == 0);
}

static size_t query(struct blk_db *db, uint64_t ino, uint64_t a, uint64_t b,
		    uint64_t *first)
{
	struct bfs_extent_list l = {0};
	CHECK(bfs_extents_in(db, BFS_CF_EXTENTS, ino, a, b, 1 << 20, &l) == 0);
	size_t n = l.n;
	if (first)
		*first = n ? l.v[0].off : UINT64_MAX;
	for (size_t i = 1; i < l.n; i++)
		CHECK(l.v[i - 1].off + l.v[i - 1].len <= l.v[i].off);
	bfs_extent_list_free(&l);
	return n;
}

static void test_extents(void)
{
	char dir[] = "/tmp/test-extent.XXXXXX";
	struct blk_db *db;
	char err[256], cmd[300];

	CHECK(mkdtemp(dir) != NULL);
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};
	CHECK(bfs_meta_register(&reg) == 0);
	CHECK(blk_db_open(dir, &o, &db, err, sizeof(err)) == 0);

	/* ino 7: [0,100) [100,300) hole [500,600) [600,1000); ino 8 next
	 * door must never leak into ino 7's answers, nor ino 6. */
	put_extent(db, 7, 0, 100);
	put_extent(db, 7, 100, 200);
	put_extent(db, 7, 500, 100);
	put_extent(db, 7, 600, 400);
	put_extent(db, 8, 0, 50);
	put_extent(db, 6, 900, 4000);

	uint64_t first;
	CHECK(query(db, 7, 0, 1, &first) == 1 && first == 0);
	CHECK(query(db, 7, 99, 101, &first) == 2 && first == 0);
	CHECK(query(db, 7, 100, 101, &first) == 1 && first == 100);
	CHECK(query(db, 7, 300, 500, NULL) == 0); /* the hole */
	CHECK(query(db, 7, 299, 500, &first) == 1 && first == 100);
	CHECK(query(db, 7, 300, 501, &first) == 1 && first == 500);
	CHECK(query(db, 7, 999, 5000, &first) == 1 && first == 600);
	CHECK(query(db, 7, 1000, 5000, NULL) == 0); /* past EOF */
	CHECK(query(db, 7, 0, UINT64_MAX, NULL) == 4);
	CHECK(query(db, 7, 50, 50, NULL) == 0); /* empty range */
	CHECK(query(db, 8, 0, 1000, NULL) == 1);
	CHECK(query(db, 9, 0, 1000, NULL) == 0);
	/* An extent starting before the look-back window is not found: the
	 * caller's bound on extent length is part of the contract. */
	struct bfs_extent_list l = {0};
	CHECK(bfs_extents_in(db, BFS_CF_EXTENTS, 6, 4000, 4001, 100, &l) == 0);
	CHECK(l.n == 0);
	CHECK(bfs_extents_in(db, BFS_CF_EXTENTS, 6, 4000, 4001, 4000, &l) == 0);
	CHECK(l.n == 1);
	bfs_extent_list_free(&l);

	/* The cursor: the first extent ending after its start, then each
	 * in order, never another inode's. */
	struct bfs_extent_cursor c;
	const uint64_t starts[][2] = {{0, 0},	  {99, 0},    {100, 100},
				      {300, 500}, {450, 500}, {999, 600},
				      {1000, 1},  {5000, 1}};
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		CHECK(bfs_extent_cursor_open(&c, db, BFS_CF_EXTENTS, 7,
					     starts[i][0], 1 << 20) == 0);
		if (starts[i][1] == 1)
			CHECK(!c.valid);
		else
			CHECK(c.valid && c.e.off == starts[i][1]);
		bfs_extent_cursor_close(&c);
	}
	CHECK(bfs_extent_cursor_open(&c, db, BFS_CF_EXTENTS, 7, 0, 0) == 0);
	uint64_t offs[4], n = 0;
	while (c.valid && n < 4) {
		offs[n++] = c.e.off;
		CHECK(bfs_extent_cursor_next(&c) == 0);
	}
	CHECK(n == 4 && !c.valid && offs[0] == 0 && offs[1] == 100 &&
	      offs[2] == 500 && offs[3] == 600);
	bfs_extent_cursor_close(&c);
	CHECK(bfs_extent_cursor_open(&c, db, BFS_CF_EXTENTS, 9, 0, 0) == 0);
	CHECK(!c.valid);
	bfs_extent_cursor_close(&c);

	/* A corrupt extent value is reported, not skipped. */
	uint8_t key[16];
	CHECK(blk_db_put(db, BFS_CF_EXTENTS, key, bfs_extent_key(key, 7, 2000),
			 "\x05\0\0\0garbage", 11) == 0);
	struct bfs_extent_list bad = {0};
	CHECK(bfs_extents_in(db, BFS_CF_EXTENTS, 7, 0, 5000, 1 << 20, &bad) ==
	      -EUCLEAN);
	bfs_extent_list_free(&bad);

	blk_db_close(db);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

/* Inode and extent records round-trip and reject garbage. */
static void test_records(void)
{
	struct bfs_inode_rec r =
				 {
				     .mode = 0100644,
				     .uid = 1000,
				     .gid = 100,
				     .nlink = 3,
				     .size = 1ull << 40,
				     .stored = 12345,
				     .mtime = {.tv_sec = -5,
					       .tv_nsec = 999999999},
				 },
			     back;
	uint8_t buf[BFS_INODE_REC_LEN + 16];
	const char *t;
	size_t tl;

	size_t n = bfs_inode_encode(&r, "target", 6, buf);
	CHECK(n == BFS_INODE_REC_LEN + 6);
	CHECK(bfs_inode_decode(buf, n, &back, &t, &tl) == 0);
	CHECK(back.mode == r.mode && back.uid == r.uid && back.size == r.size &&
	      back.nlink == 3 && back.stored == 12345);
	CHECK(back.mtime.tv_sec == -5 && back.mtime.tv_nsec == 999999999);
	CHECK(tl == 6 && memcmp(t, "target", 6) == 0);
	CHECK(bfs_inode_decode(buf, BFS_INODE_REC_LEN - 1, &back, &t, &tl) ==
	      -EUCLEAN);
	buf[0] = 99;
	CHECK(bfs_inode_decode(buf, n, &back, &t, &tl) == -EUCLEAN);

	uint8_t v[BFS_EXTENT_VAL_MAX];
	struct blk_cid cid, cid2;
	uint32_t len;
	blk_cid_compute(&cid, BLK_CODEC_RAW, "x", 1);
	bool forced;
	size_t vl = bfs_extent_encode(v, 4096, false, &cid);
	CHECK(bfs_extent_decode(v, vl, &len, &forced, &cid2) == 0);
	CHECK(len == 4096 && !forced && blk_cid_equal(&cid, &cid2));
	vl = bfs_extent_encode(v, 4096, true, &cid);
	CHECK(bfs_extent_decode(v, vl, &len, &forced, &cid2) == 0);
	CHECK(len == 4096 && forced);
	CHECK(bfs_extent_decode(v, vl - 1, &len, NULL, &cid2) == -EUCLEAN);
	CHECK(bfs_extent_decode(v, 3, &len, NULL, &cid2) == -EUCLEAN);
	blk_put_le32(v, 0);
	CHECK(bfs_extent_decode(v, vl, &len, NULL, &cid2) == -EUCLEAN);

	uint8_t k1[16], k2[16];
	bfs_extent_key(k1, 1, 0xff);
	bfs_extent_key(k2, 1, 0x100);
	CHECK(memcmp(k1, k2, 16) < 0); /* byte order is offset order */
}

int main(void)
{
	test_records();
	test_wbuf_append();
	test_wbuf_model();
	test_extents();
	printf("extent: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
