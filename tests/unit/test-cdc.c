/* Unit tests for blocks/cdc: known-answer boundaries, agreement with a plain
 * reference FastCDC (over many stream lengths and hand-set masks), split
 * invariance, size bounds, shift resistance, the fixed chunker and parameter
 * validation; CDC_BENCH=1 adds a throughput run. */

#include "blocks/cdc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/unit/check.h"

#define KiB (1024u)
#define MiB (1024u * 1024)

/* ---- reference FastCDC: the paper's pseudo-code, byte by byte ---- */

struct ref {
	uint64_t gear[256];
	uint64_t mask_s, mask_l;
	size_t min, avg, max;
};

/* The documented gear table: splitmix64 from the seed "blockfs!". */
static void ref_gear(uint64_t gear[256])
{
	uint64_t state = 0x626c6f636b667321ull;
	int i;

	for (i = 0; i < 256; i++) {
		uint64_t z = (state += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		gear[i] = z ^ (z >> 31);
	}
}

/* The documented masks: @bits ones at 62 - floor(j * 47 / (bits - 1)). */
static uint64_t ref_mask(unsigned int bits)
{
	uint64_t m = 0;
	unsigned int j;

	for (j = 0; j < bits; j++)
		m |= 1ull << (62 - (bits == 1 ? 0 : j * 47 / (bits - 1)));
	return m;
}

static void ref_init(struct ref *r, size_t min, size_t avg, size_t max)
{
	unsigned int bits = 0;

	while ((1ul << bits) < avg)
		bits++;
	ref_gear(r->gear);
	r->mask_s = ref_mask(bits + 2);
	r->mask_l = ref_mask(bits - 2);
	r->min = min;
	r->avg = avg;
	r->max = max;
}

/* Length of the chunk starting at @p, @n bytes left in the stream. */
static size_t ref_cut(const struct ref *r, const uint8_t *p, size_t n)
{
	size_t k, end = n < r->max ? n : r->max;
	uint64_t h = 0;

	if (n <= r->min)
		return n;
	for (k = r->min; k < end; k++) {
		h = (h << 1) + r->gear[p[k]];
		if (!(h & (k < r->avg ? r->mask_s : r->mask_l)))
			return k + 1;
	}
	return end;
}

/* ---- chunk lists ---- */

struct cuts {
	size_t *end; /* end offset of each chunk; the last is the stream end */
	size_t n, cap;
};

static void cuts_add(struct cuts *c, size_t end)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 256;
		c->end = realloc(c->end, c->cap * sizeof(*c->end));
		if (!c->end) {
			fprintf(stderr, "out of memory\n");
			exit(99);
		}
	}
	c->end[c->n++] = end;
}

static void cuts_free(struct cuts *c)
{
	free(c->end);
	*c = (struct cuts){0};
}

/* Empty lists have no array: memcmp() must not see their NULL. */
static int cuts_equal(const struct cuts *a, const struct cuts *b)
{
	return a->n == b->n &&
	       (!a->n || !memcmp(a->end, b->end, a->n * sizeof(*a->end)));
}

static struct cuts ref_chunk(const struct ref *r, const uint8_t *p, size_t n)
{
	struct cuts c = {0};
	size_t off = 0;

	while (off < n) {
		off += ref_cut(r, p + off, n - off);
		cuts_add(&c, off);
	}
	return c;
}

/*
 * Chunk @p with @proto's parameters, feeding it in pieces: all at once when
 * @seed is 0, else in sizes drawn log-uniformly from 1 byte to 300 KiB.
 */
static struct cuts stream_chunk(const struct cdc_chunker *proto,
				const uint8_t *p, size_t n, uint64_t seed)
{
	struct cdc_chunker c = *proto;
	struct cuts out = {0};
	uint64_t s = seed;
	size_t off = 0, start = 0;

	cdc_chunker_reset(&c);
	while (off < n) {
		size_t piece = n - off;

		if (seed) {
			uint64_t x = xorshift64(&s);
			size_t lim = (size_t)1 << (x % 19); /* 1 .. 256 KiB */

			piece =
			    1 + (x >> 8) % (lim < 300 * KiB ? lim : 300 * KiB);
			if (x % 7 == 0)
				piece = 1 + (x >> 20) % (300 * KiB);
			if (piece > n - off)
				piece = n - off;
		}
		/* Feed the piece, then its remainder after each cut. */
		while (piece) {
			size_t r = cdc_chunker_scan(&c, p + off, piece);

			if (r == CDC_NEED_MORE) {
				off += piece;
				break;
			}
			if (r < 1 || r > piece) {
				fprintf(stderr, "scan returned %zu of %zu\n", r,
					piece);
				exit(99);
			}
			off += r;
			piece -= r;
			cuts_add(&out, off);
			start = off;
		}
	}
	if (start < n)
		cuts_add(&out, n); /* the end of the stream is a cut */
	return out;
}

static struct cdc_chunker make(enum cdc_kind kind, uint32_t min, uint32_t avg,
			       uint32_t max)
{
	struct cdc_chunker c;

	if (cdc_chunker_init(&c, kind, min, avg, max)) {
		fprintf(stderr, "init %u/%u/%u failed\n", min, avg, max);
		exit(99);
	}
	return c;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- tests ---- */

/*
 * Known answers: the first cut offsets of 8 MiB of xorshift64 data (seed
 * 0x0123456789abcdef) with the defaults and with 256/1024/4096. They pin the
 * chunk format: if they change, every CID changes.
 */
/* clang-format off */
static const size_t KA_DEFAULT[] = {
	278160, 451013, 542262, 927219, 1426468,
	1755499, 2074953, 2266175, 2531056, 2602384,
	2871762, 3150818, 3414362, 3707596, 3934137,
	4273292, 4396004, 4683957, 4782480, 5063957,
};
static const size_t KA_SMALL[] = {
	1477, 2081, 3130, 4312, 5534,
	7595, 8063, 9223, 11082, 12926,
	14182, 15519, 16570, 17644, 19083,
	20221, 21333, 23135, 24563, 26060,
};
/* clang-format on */

static void print_cuts(const char *name, const struct cuts *c, size_t n)
{
	size_t i;

	printf("%s:", name);
	for (i = 0; i < n && i < c->n; i++)
		printf(" %zu,", c->end[i]);
	printf("\n");
}

static void test_known_answers(void)
{
	size_t n = 8 * MiB, i;
	uint8_t *p = xmalloc(n);
	struct cdc_chunker d = make(CDC_FASTCDC, CDC_DEFAULT_MIN,
				    CDC_DEFAULT_AVG, CDC_DEFAULT_MAX);
	struct cdc_chunker s = make(CDC_FASTCDC, 256, 1024, 4096);
	struct cuts cd, cs;
	int ok;

	fill_random(p, n, 0x0123456789abcdefull);
	cd = stream_chunk(&d, p, n, 0);
	cs = stream_chunk(&s, p, n, 0);
	if (getenv("CDC_PRINT_KA")) {
		print_cuts("default", &cd, 20);
		print_cuts("small", &cs, 20);
	}
	ok = cd.n >= sizeof(KA_DEFAULT) / sizeof(KA_DEFAULT[0]);
	for (i = 0; ok && i < sizeof(KA_DEFAULT) / sizeof(KA_DEFAULT[0]); i++)
		ok = cd.end[i] == KA_DEFAULT[i];
	CHECK(ok);
	ok = cs.n >= sizeof(KA_SMALL) / sizeof(KA_SMALL[0]);
	for (i = 0; ok && i < sizeof(KA_SMALL) / sizeof(KA_SMALL[0]); i++)
		ok = cs.end[i] == KA_SMALL[i];
	CHECK(ok);
	/* The masks have the documented weights: log2(avg) +/- 2. */
	CHECK(__builtin_popcountll(d.mask_s) == 20);
	CHECK(__builtin_popcountll(d.mask_l) == 16);
	CHECK(__builtin_popcountll(s.mask_s) == 12);
	CHECK(__builtin_popcountll(s.mask_l) == 8);
	cuts_free(&cd);
	cuts_free(&cs);
	free(p);
}

/* Parameter sets used by several tests: {min, avg, max}. */
static const uint32_t PARAMS[][3] = {
    {CDC_DEFAULT_MIN, CDC_DEFAULT_AVG, CDC_DEFAULT_MAX},
    {64, 64, 64},
    {64, 256, 1024},
    {100, 1024, 3000},
    {2048, 8192, 65536},
    {4096, 4096, 16384},
    {16 * KiB, 64 * KiB, 64 * KiB},
    {256 * KiB, 1 * MiB, 4 * MiB},
};
#define NPARAMS (sizeof(PARAMS) / sizeof(PARAMS[0]))

/* Inputs: random, zeros, a short repeating pattern, and text-like bytes. */
static void fill_input(uint8_t *p, size_t n, int kind, uint64_t seed)
{
	size_t i;

	switch (kind) {
	case 0:
		fill_random(p, n, seed);
		break;
	case 1:
		memset(p, 0, n);
		break;
	case 2:
		for (i = 0; i < n; i++)
			p[i] = (uint8_t)("blockfs "[i % 8]);
		break;
	default:
		fill_random(p, n, seed);
		for (i = 0; i < n; i++)
			p[i] = (uint8_t)("etaoin shrdlu\n"[p[i] % 14]);
		break;
	}
}

static void test_reference(void)
{
	size_t n = 6 * MiB + 12345;
	uint8_t *p = xmalloc(n);
	unsigned int k, pi;

	for (k = 0; k < 4; k++) {
		fill_input(p, n, k, 0x5eed0000u + k);
		for (pi = 0; pi < NPARAMS; pi++) {
			struct ref r;
			struct cdc_chunker c =
			    make(CDC_FASTCDC, PARAMS[pi][0], PARAMS[pi][1],
				 PARAMS[pi][2]);
			struct cuts a, b;

			ref_init(&r, PARAMS[pi][0], PARAMS[pi][1],
				 PARAMS[pi][2]);
			CHECK(c.mask_s == r.mask_s && c.mask_l == r.mask_l);
			a = ref_chunk(&r, p, n);
			b = stream_chunk(&c, p, n, 0);
			if (!cuts_equal(&a, &b))
				fprintf(stderr,
					"reference mismatch: input %u params "
					"%u/%u/%u (%zu vs %zu chunks)\n",
					k, PARAMS[pi][0], PARAMS[pi][1],
					PARAMS[pi][2], a.n, b.n);
			CHECK(cuts_equal(&a, &b));
			cuts_free(&a);
			cuts_free(&b);
		}
	}
	free(p);
}

/* Compare the chunker with the reference on p[0..n): in one piece and in
 * random pieces. Returns 1 when both agree with it. */
static int agrees(const struct cdc_chunker *c, const struct ref *r,
		  const uint8_t *p, size_t n, uint64_t split)
{
	struct cuts a = ref_chunk(r, p, n);
	struct cuts b = stream_chunk(c, p, n, 0);
	struct cuts s = stream_chunk(c, p, n, split);
	int ok = cuts_equal(&a, &b) && cuts_equal(&a, &s);

	if (!ok)
		fprintf(stderr,
			"reference mismatch: %zu bytes, params %zu/%zu/%zu, "
			"masks %016llx/%016llx (%zu vs %zu/%zu chunks)\n",
			n, r->min, r->avg, r->max,
			(unsigned long long)r->mask_s,
			(unsigned long long)r->mask_l, a.n, b.n, s.n);
	cuts_free(&a);
	cuts_free(&b);
	cuts_free(&s);
	return ok;
}

/*
 * Stream lengths around each parameter (below min, at min, around avg and
 * max, past max) and around gear_find()'s 12-byte passes, for several seeds,
 * against the reference; then 64 MiB.
 */
static void test_lengths(void)
{
	static const uint64_t SEEDS[] = {1, 0x5eedu, 0xdeadbeefcafeull,
					 0x9e3779b97f4a7c15ull};
	size_t big = 64 * MiB, pi, si, li;
	uint8_t *p = xmalloc(big);
	int ok = 1;

	for (si = 0; si < sizeof(SEEDS) / sizeof(SEEDS[0]); si++) {
		fill_random(p, big, SEEDS[si]);
		for (pi = 0; pi < NPARAMS; pi++) {
			size_t min = PARAMS[pi][0], avg = PARAMS[pi][1];
			size_t max = PARAMS[pi][2];
			size_t len[] = {
			    0,
			    1,
			    63,
			    min - 1,
			    min,
			    min + 1,
			    min + 2,
			    min + 3,
			    min + 11,
			    min + 12,
			    min + 13,
			    min + 25,
			    avg - 1,
			    avg,
			    avg + 1,
			    avg + 12,
			    max - 1,
			    max,
			    max + 1,
			    max + min,
			    max + min + 1,
			    2 * max + 5,
			    3 * max + 777,
			};
			struct cdc_chunker c =
			    make(CDC_FASTCDC, PARAMS[pi][0], PARAMS[pi][1],
				 PARAMS[pi][2]);
			struct ref r;

			ref_init(&r, min, avg, max);
			for (li = 0; li < sizeof(len) / sizeof(len[0]); li++)
				ok &=
				    agrees(&c, &r, p, len[li], SEEDS[si] + li);
		}
	}
	CHECK(ok);

	/* 64 MiB with the defaults, and with 64/32 MiB/64 MiB, whose masks
	 * (27 and 23 bits) are the largest that are both used. */
	{
		struct cdc_chunker c = make(CDC_FASTCDC, CDC_DEFAULT_MIN,
					    CDC_DEFAULT_AVG, CDC_DEFAULT_MAX);
		struct ref r;

		ref_init(&r, CDC_DEFAULT_MIN, CDC_DEFAULT_AVG, CDC_DEFAULT_MAX);
		CHECK(agrees(&c, &r, p, big, 64));
		c = make(CDC_FASTCDC, 64, 32 * MiB, 64 * MiB);
		ref_init(&r, 64, 32 * MiB, 64 * MiB);
		CHECK(agrees(&c, &r, p, big, 65));
	}
	free(p);
}

/*
 * Masks set by hand (white box: both structs are plain), so that cuts come
 * at every density: none but max, at every byte past min, at most bytes,
 * and the extremes init can make. Then check that the sweep does reach
 * the edges it is meant to: chunks of min + 1 (a cut at the first hashed
 * byte), avg (the last byte under mask_s), avg + 1 (the first under
 * mask_l) and max, and cuts at every position of a 12-byte pass.
 */
static void test_masks(void)
{
	static const uint64_t MASKS[][2] = {
	    {0, 0},
	    {~0ull, ~0ull},
	    {0, ~0ull},
	    {~0ull, 0},
	    {1, 1},
	    {1ull << 15, 1ull << 15},
	    {1ull << 62, 1ull << 63},
	    {0x8000000000000001ull, 0x0000000000018000ull},
	    {0x7fffffffffff8000ull, 0x4000000000008000ull},
	};
	static const uint32_t P[][3] = {
	    {64, 64, 64},     {64, 64, 4096},	    {64, 128, 256},
	    {100, 256, 1000}, {4096, 16384, 65536},
	};
	size_t n = 2 * MiB + 17, mi, pi, i, prev;
	uint8_t *p = xmalloc(n);
	int ok = 1, seen_min1 = 0, seen_avg = 0, seen_avg1 = 0, seen_max = 0;
	unsigned int pos = 0;

	fill_random(p, n, 0x3a5c);
	for (pi = 0; pi < sizeof(P) / sizeof(P[0]); pi++) {
		struct cdc_chunker c =
		    make(CDC_FASTCDC, P[pi][0], P[pi][1], P[pi][2]);
		struct ref r;

		ref_init(&r, P[pi][0], P[pi][1], P[pi][2]);
		/* The masks init makes, then the hand-made ones. */
		ok &= agrees(&c, &r, p, n, 100 + pi);
		for (mi = 0; mi < sizeof(MASKS) / sizeof(MASKS[0]); mi++) {
			c.mask_s = r.mask_s = MASKS[mi][0];
			c.mask_l = r.mask_l = MASKS[mi][1];
			ok &= agrees(&c, &r, p, n, 200 + mi);
		}
	}
	CHECK(ok);

	/*
	 * The edges are reached with 64/128/256: its own masks (9 and 5 bits)
	 * give every length but min + 1, which needs a GEAR entry with no bit
	 * of mask_s set (there is none for 9 bits); one bit gives that.
	 */
	for (mi = 0; mi < 2; mi++) {
		struct cdc_chunker c = make(CDC_FASTCDC, 64, 128, 256);
		struct cuts cs;

		if (mi == 1)
			c.mask_s = c.mask_l = 1ull << 15;
		cs = stream_chunk(&c, p, n, 0);
		for (i = 0, prev = 0; i + 1 < cs.n; i++) {
			size_t len = cs.end[i] - prev;

			seen_min1 |= len == 65;
			seen_avg |= len == 128;
			seen_avg1 |= len == 129;
			seen_max |= len == 256;
			/* gear_find() starts at byte min, or avg. */
			if (len <= 128)
				pos |= 1u << ((len - 65) % 12);
			else if (len < 256)
				pos |= 1u << ((len - 129) % 12);
			prev = cs.end[i];
		}
		cuts_free(&cs);
	}
	CHECK(seen_min1 && seen_avg && seen_avg1 && seen_max);
	CHECK(pos == 0xfff);
	free(p);
}

static void test_streaming(void)
{
	size_t n = 8 * MiB + 777;
	uint8_t *p = xmalloc(n);
	unsigned int seed, pi;

	fill_random(p, n, 42);
	for (pi = 0; pi < NPARAMS; pi++) {
		struct cdc_chunker c = make(CDC_FASTCDC, PARAMS[pi][0],
					    PARAMS[pi][1], PARAMS[pi][2]);
		struct cuts whole = stream_chunk(&c, p, n, 0);
		int ok = 1;

		for (seed = 1; seed <= 12; seed++) {
			struct cuts s =
			    stream_chunk(&c, p, n, seed * 0x9e3779b9u + pi);

			ok &= cuts_equal(&whole, &s);
			cuts_free(&s);
		}
		CHECK(ok);
		cuts_free(&whole);
	}
	/* Byte by byte, once, on a smaller input with small chunks. */
	{
		struct cdc_chunker c = make(CDC_FASTCDC, 64, 256, 1024);
		struct cdc_chunker b = c;
		struct cuts whole = stream_chunk(&c, p, 256 * KiB, 0);
		struct cuts one = {0};
		size_t i;

		for (i = 0; i < 256 * KiB; i++)
			if (cdc_chunker_scan(&b, p + i, 1) == 1)
				cuts_add(&one, i + 1);
		if (one.n == 0 || one.end[one.n - 1] != 256 * KiB)
			cuts_add(&one, 256 * KiB);
		CHECK(cuts_equal(&whole, &one));
		cuts_free(&whole);
		cuts_free(&one);
	}
	/* A zero-length scan changes nothing. */
	{
		struct cdc_chunker c = make(CDC_FASTCDC, 64, 256, 1024);

		CHECK(cdc_chunker_scan(&c, p, 0) == CDC_NEED_MORE);
		CHECK(c.pos == 0 && c.hash == 0);
	}
	free(p);
}

static void test_bounds(const uint8_t *p, size_t n)
{
	struct cdc_chunker c = make(CDC_FASTCDC, CDC_DEFAULT_MIN,
				    CDC_DEFAULT_AVG, CDC_DEFAULT_MAX);
	struct cuts cs;
	size_t i, prev = 0, small = SIZE_MAX, big = 0;
	double t, mean;
	int ok = 1;

	t = now();
	cs = stream_chunk(&c, p, n, 0);
	t = now() - t;
	for (i = 0; i < cs.n; i++) {
		size_t len = cs.end[i] - prev;

		if (i + 1 < cs.n) {
			ok &= len >= CDC_DEFAULT_MIN && len <= CDC_DEFAULT_MAX;
			small = len < small ? len : small;
			big = len > big ? len : big;
		}
		prev = cs.end[i];
	}
	CHECK(ok);
	CHECK(cs.n > 1);
	mean = (double)n / (double)cs.n;
	printf("cdc: 64 MiB random, defaults: %zu chunks, mean %.1f KiB "
	       "(%.2f x avg), min %zu, max %zu, %.0f MB/s\n",
	       cs.n, mean / KiB, mean / CDC_DEFAULT_AVG, small, big,
	       (double)n / t / 1e6);
	CHECK(mean >= 0.6 * CDC_DEFAULT_AVG && mean <= 1.6 * CDC_DEFAULT_AVG);
	cuts_free(&cs);

	/* Small parameters, many chunks. */
	c = make(CDC_FASTCDC, 1024, 4096, 16384);
	cs = stream_chunk(&c, p, 16 * MiB, 7);
	ok = 1;
	for (i = 0, prev = 0; i + 1 < cs.n; i++) {
		size_t len = cs.end[i] - prev;

		ok &= len >= 1024 && len <= 16384;
		prev = cs.end[i];
	}
	CHECK(ok);
	mean = (double)(16 * MiB) / (double)cs.n;
	printf("cdc: 16 MiB random, 1/4/16 KiB: %zu chunks, mean %.0f B\n",
	       cs.n, mean);
	CHECK(mean >= 0.6 * 4096 && mean <= 1.6 * 4096);
	cuts_free(&cs);

	/* Zeros never match a mask: every chunk is exactly max. */
	{
		size_t z = 5 * MiB + 3;
		uint8_t *q = xmalloc(z);

		memset(q, 0, z);
		c = make(CDC_FASTCDC, CDC_DEFAULT_MIN, CDC_DEFAULT_AVG,
			 CDC_DEFAULT_MAX);
		cs = stream_chunk(&c, q, z, 3);
		ok = cs.n == 6;
		for (i = 0; ok && i < 5; i++)
			ok = cs.end[i] == (i + 1) * MiB;
		CHECK(ok);
		cuts_free(&cs);
		free(q);
	}
}

/* A 64-bit hash of a chunk's bytes and length (FNV-1a, then a finaliser). */
static uint64_t chunk_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ n;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	return h ^ (h >> 33);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t *chunk_hashes(const uint8_t *p, const struct cuts *cs)
{
	uint64_t *h = malloc((cs->n ? cs->n : 1) * sizeof(*h));
	size_t i, prev = 0;

	if (!h) {
		fprintf(stderr, "out of memory\n");
		exit(99);
	}
	for (i = 0; i < cs->n; i++) {
		h[i] = chunk_hash(p + prev, cs->end[i] - prev);
		prev = cs->end[i];
	}
	return h;
}

/* Insert @ins random bytes at @at; the share of old chunks still present. */
static double shifted_share(const struct cdc_chunker *c, const uint8_t *p,
			    size_t n, const struct cuts *orig,
			    const uint64_t *orig_h, size_t at, size_t ins)
{
	uint8_t *q = xmalloc(n + ins);
	struct cuts cs;
	uint64_t *h;
	size_t i, found = 0;

	memcpy(q, p, at);
	fill_random(q + at, ins, 0xabcdef + ins + at);
	memcpy(q + at + ins, p + at, n - at);
	cs = stream_chunk(c, q, n + ins, 0x77 + ins);
	h = chunk_hashes(q, &cs);
	qsort(h, cs.n, sizeof(*h), cmp_u64);
	for (i = 0; i < orig->n; i++)
		found +=
		    bsearch(&orig_h[i], h, cs.n, sizeof(*h), cmp_u64) != NULL;
	free(h);
	cuts_free(&cs);
	free(q);
	return (double)found / (double)orig->n;
}

static void test_shift(const uint8_t *p, size_t n)
{
	static const size_t INS[] = {1, 100, 4096};
	struct cdc_chunker c = make(CDC_FASTCDC, CDC_DEFAULT_MIN,
				    CDC_DEFAULT_AVG, CDC_DEFAULT_MAX);
	struct cuts orig = stream_chunk(&c, p, n, 0);
	uint64_t *orig_h = chunk_hashes(p, &orig);
	unsigned int i;

	for (i = 0; i < 3; i++) {
		double front =
		    shifted_share(&c, p, n, &orig, orig_h, 0, INS[i]);
		double mid = shifted_share(&c, p, n, &orig, orig_h,
					   n / 2 + 12345, INS[i]);

		printf("cdc: insert %zu B: %.1f%% of %zu chunks kept at the "
		       "start, %.1f%% in the middle\n",
		       INS[i], 100 * front, orig.n, 100 * mid);
		CHECK(front >= 0.95);
		CHECK(mid >= 0.95);
	}
	free(orig_h);
	cuts_free(&orig);
}

static void test_fixed(void)
{
	size_t n = 10000, i;
	uint8_t *p = xmalloc(3 * MiB);
	struct cdc_chunker c = make(CDC_FIXED, 0, 4096, 0);
	struct cuts cs;
	int ok = 1;

	fill_random(p, 3 * MiB, 9);
	cs = stream_chunk(&c, p, n, 0);
	CHECK(cs.n == 3 && cs.end[0] == 4096 && cs.end[1] == 8192 &&
	      cs.end[2] == 10000);
	cuts_free(&cs);

	/* Any split, any size: cuts at every multiple of avg. */
	c = make(CDC_FIXED, 1, 1000, 1);
	cs = stream_chunk(&c, p, 3 * MiB, 5);
	for (i = 0; i < cs.n; i++)
		ok &= cs.end[i] == (i + 1 < cs.n ? (i + 1) * 1000 : 3 * MiB);
	CHECK(ok);
	CHECK(cs.n == (3 * MiB + 999) / 1000);
	cuts_free(&cs);

	/* Exact multiple: no short tail. */
	c = make(CDC_FIXED, 0, 256 * KiB, 0);
	cs = stream_chunk(&c, p, 3 * MiB, 11);
	ok = cs.n == 12;
	for (i = 0; ok && i < cs.n; i++)
		ok = cs.end[i] == (i + 1) * 256 * KiB;
	CHECK(ok);
	cuts_free(&cs);

	/* Size 1: every byte is a chunk. */
	c = make(CDC_FIXED, 0, 1, 0);
	CHECK(cdc_chunker_scan(&c, p, 10) == 1);
	CHECK(cdc_chunker_scan(&c, p, 0) == CDC_NEED_MORE);
	free(p);
}

static void test_invalid(void)
{
	struct cdc_chunker c;

	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 63, 64, 64) == -EINVAL);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 0, 0, 0) == -EINVAL);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 512, 256, 1024) == -EINVAL);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 64, 256, 128) == -EINVAL);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 64, 3000, 8192) == -EINVAL);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 64, 256 * KiB + 1, MiB) ==
	      -EINVAL);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 64, 1024, 64 * MiB + 1) ==
	      -EINVAL);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 64 * MiB, 64 * MiB,
			       UINT32_MAX) == -EINVAL);
	CHECK(cdc_chunker_init(&c, CDC_FIXED, 0, 0, 0) == -EINVAL);
	CHECK(cdc_chunker_init(&c, (enum cdc_kind)7, 64, 256, 1024) == -EINVAL);

	/* The edges of the valid range. */
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 64, 64, 64) == 0);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 64 * MiB, 64 * MiB, 64 * MiB) ==
	      0);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, 64, 64 * MiB, 64 * MiB) == 0);
	CHECK(cdc_chunker_init(&c, CDC_FASTCDC, CDC_DEFAULT_MIN,
			       CDC_DEFAULT_AVG, CDC_DEFAULT_MAX) == 0);
	CHECK(c.pos == 0 && c.hash == 0);
	CHECK(cdc_chunker_init(&c, CDC_FIXED, 0, 12345, 0) == 0);
}

static void bench(void)
{
	size_t n = 256 * MiB;
	uint8_t *p = xmalloc(n);
	struct cdc_chunker c = make(CDC_FASTCDC, CDC_DEFAULT_MIN,
				    CDC_DEFAULT_AVG, CDC_DEFAULT_MAX);
	double best = 0;
	int round;

	fill_random(p, n, 2020);
	for (round = 0; round < 5; round++) {
		size_t off = 0, chunks = 0;
		double t = now();

		cdc_chunker_reset(&c);
		while (off < n) {
			size_t piece =
			    n - off < 128 * KiB ? n - off : 128 * KiB;
			size_t r = cdc_chunker_scan(&c, p + off, piece);

			if (r == CDC_NEED_MORE) {
				off += piece;
			} else {
				off += r;
				chunks++;
			}
		}
		t = now() - t;
		if ((double)n / t > best)
			best = (double)n / t;
		printf("cdc bench: 256 MiB in 128 KiB pieces: %.0f MB/s, "
		       "%zu cuts\n",
		       (double)n / t / 1e6, chunks);
	}
	printf("cdc bench: best %.0f MB/s\n", best / 1e6);
	free(p);
}

int main(void)
{
	size_t n = 64 * MiB;
	uint8_t *p = xmalloc(n);

	fill_random(p, n, 0xfa57cdcu);
	test_invalid();
	test_known_answers();
	test_reference();
	test_lengths();
	test_masks();
	test_streaming();
	test_fixed();
	test_bounds(p, n);
	test_shift(p, n);
	free(p);
	if (getenv("CDC_BENCH") && strcmp(getenv("CDC_BENCH"), "1") == 0)
		bench();
	printf("cdc: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
