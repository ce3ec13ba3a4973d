/* Unit tests for ec/: codec round trips over every erasure pattern of up to
 * M lost fragments, known answers checked against Jerasure's own encoders,
 * odd alignments, argument errors, fragment framing (seal, parse, verify,
 * malformed headers, bit flips), corruption caught by the fragment checksum
 * or the CID, and one codec shared by 4 threads. */

#include "ec/codec.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include <cauchy.h>
#include <jerasure.h>
#include <reed_sol.h>

#include "ec/fragment.h"
#include "tests/unit/check.h"

#define KiB (1024u)
#define MiB (1024u * 1024)

static struct ec_codec *codec(unsigned k, unsigned m)
{
	struct ec_codec *c = NULL;

	if (ec_codec_new(k, m, &c) != 0) {
		fprintf(stderr, "ec_codec_new(%u, %u) failed\n", k, m);
		exit(99);
	}
	return c;
}

/* k + m fragment buffers of exactly @fs bytes each (so ASan sees any write
 * past the end), at byte offset @skew[i] (0 when NULL) from malloc's. */
struct frags {
	unsigned n;
	uint8_t *base[EC_MAX_FRAGS];
	uint8_t *p[EC_MAX_FRAGS];
};

static void frags_alloc(struct frags *f, unsigned n, size_t fs,
			const unsigned *skew)
{
	f->n = n;
	for (unsigned i = 0; i < n; i++) {
		unsigned s = skew ? skew[i] : 0;

		f->base[i] = xmalloc(fs + s);
		f->p[i] = f->base[i] + s;
	}
}

static void frags_free(struct frags *f)
{
	for (unsigned i = 0; i < f->n; i++)
		free(f->base[i]);
}

/* ---- parameters ---- */

static void test_params(void)
{
	struct ec_codec *c = NULL;
	static const size_t lens[] = {0,    1,	  127, 128,	129,
				      4096, 4097, MiB, MiB + 1, 64 * MiB};

	CHECK(ec_codec_new(0, 1, &c) == -EINVAL);
	CHECK(ec_codec_new(EC_MAX_K + 1, 1, &c) == -EINVAL);
	CHECK(ec_codec_new(4, EC_MAX_M + 1, &c) == -EINVAL);
	CHECK(ec_codec_new(4, 2, NULL) == -EINVAL);
	CHECK(c == NULL);
	ec_codec_free(NULL);

	for (unsigned k = 1; k <= EC_MAX_K; k += (k < 4 ? 1 : 7)) {
		for (unsigned m = 0; m <= EC_MAX_M; m += (m < 4 ? 1 : 9)) {
			c = codec(k, m);
			CHECK(ec_codec_k(c) == k && ec_codec_m(c) == m);
			for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]);
			     i++) {
				size_t L = lens[i], fs = ec_frag_size(c, L);
				size_t share = (L + k - 1) / k;

				if (k == 1) {
					CHECK(fs == L);
				} else {
					CHECK(fs % EC_FRAG_ALIGN == 0);
					CHECK(fs >= share);
					CHECK(fs < share + EC_FRAG_ALIGN);
				}
			}
			ec_codec_free(c);
		}
	}
	/* The largest code exists and round-trips. */
	c = codec(EC_MAX_K, EC_MAX_M);
	{
		size_t L = 100000, fs = ec_frag_size(c, L);
		uint8_t *b = xmalloc(L), *o = xmalloc(L);
		struct frags f;

		fill_random(b, L, 5);
		frags_alloc(&f, EC_MAX_FRAGS, fs, NULL);
		CHECK(ec_encode(c, b, L, f.p) == 0);
		for (unsigned i = 0; i < EC_MAX_M; i++)
			f.p[i * 2] = NULL; /* every other data fragment */
		CHECK(ec_decode(c, f.p, L, o) == 0);
		CHECK(memcmp(b, o, L) == 0);
		for (unsigned i = 0; i < EC_MAX_M; i++)
			f.p[i * 2] = f.base[i * 2];
		frags_free(&f);
		free(b);
		free(o);
	}
	ec_codec_free(c);
}

/* ---- argument errors ---- */

static void test_errors(void)
{
	struct ec_codec *c = codec(4, 2);
	size_t L = 1000, fs = ec_frag_size(c, L);
	uint8_t *b = xmalloc(L), *o = xmalloc(L);
	struct frags f;
	uint8_t *save;

	fill_random(b, L, 9);
	frags_alloc(&f, 6, fs, NULL);
	CHECK(ec_encode(c, b, 0, f.p) == -EINVAL);
	CHECK(ec_encode(c, b, (size_t)EC_MAX_BLOCK + 1, f.p) == -EINVAL);
	CHECK(ec_encode(c, NULL, L, f.p) == -EINVAL);
	CHECK(ec_encode(c, b, L, NULL) == -EINVAL);
	save = f.p[5];
	f.p[5] = NULL;
	CHECK(ec_encode(c, b, L, f.p) == -EINVAL);
	f.p[5] = save;
	CHECK(ec_encode(c, b, L, f.p) == 0);
	CHECK(ec_decode(c, f.p, 0, o) == -EINVAL);
	CHECK(ec_decode(c, f.p, (size_t)EC_MAX_BLOCK + 1, o) == -EINVAL);
	CHECK(ec_decode(c, NULL, L, o) == -EINVAL);
	CHECK(ec_decode(c, f.p, L, NULL) == -EINVAL);
	frags_free(&f);
	free(b);
	free(o);
	ec_codec_free(c);
}

/* ---- round trips over every erasure pattern ---- */

static unsigned popcount64(uint64_t x)
{
	return (unsigned)__builtin_popcountll(x);
}

/* Encode a block of @L bytes with @c and decode it after losing each set
 * of fragments in turn: every set of at most m must give the block back,
 * and (a sample of) the sets of m + 1 must give -EIO. Returns the number of
 * failures (CHECKed by the caller, so a failing length is named). */
static unsigned roundtrip(struct ec_codec *c, size_t L, uint64_t seed,
			  const unsigned *skew, size_t block_skew)
{
	unsigned k = ec_codec_k(c), m = ec_codec_m(c), n = k + m, bad = 0;
	size_t fs = ec_frag_size(c, L);
	uint8_t *bbase = xmalloc(L + block_skew), *b = bbase + block_skew;
	uint8_t *obase = xmalloc(L + block_skew), *o = obase + block_skew;
	uint8_t *have[EC_MAX_FRAGS];
	uint64_t sum_before = 0, sum_after = 0;
	unsigned eio_tested = 0;
	struct frags f;

	fill_random(b, L, seed);
	frags_alloc(&f, n, fs, skew);
	if (ec_encode(c, b, L, f.p) != 0)
		bad++;
	/* Data fragments are the block split in order, zero-padded. */
	for (unsigned i = 0; i < k; i++) {
		size_t off = k == 1 ? 0 : (size_t)i * fs;
		size_t nb = off >= L ? 0 : (L - off < fs ? L - off : fs);

		if (memcmp(f.p[i], b + off, nb) != 0)
			bad++;
		for (size_t j = nb; j < fs; j++)
			if (f.p[i][j] != 0) {
				bad++;
				break;
			}
	}
	/* Replicas are copies. */
	if (k == 1)
		for (unsigned i = 1; i < n; i++)
			if (memcmp(f.p[i], b, L) != 0)
				bad++;
	for (unsigned i = 0; i < n; i++)
		sum_before ^= XXH3_64bits(f.p[i], fs) + i;

	for (uint64_t lost = 0; lost < (UINT64_C(1) << n); lost++) {
		unsigned nl = popcount64(lost);
		int r;

		if (nl > m + 1)
			continue;
		/* Sets of m + 1: all for small codes, else every 7th. */
		if (nl == m + 1 && n > 8 && (eio_tested++ % 7) != 0)
			continue;
		for (unsigned i = 0; i < n; i++)
			have[i] = (lost >> i) & 1 ? NULL : f.p[i];
		memset(o, 0xa5, L);
		r = ec_decode(c, have, L, o);
		if (nl <= m) {
			if (r != 0 || memcmp(o, b, L) != 0) {
				fprintf(stderr,
					"%u+%u len %zu lost %#llx: r=%d\n", k,
					m, L, (unsigned long long)lost, r);
				bad++;
			}
		} else if (r != -EIO) {
			fprintf(stderr,
				"%u+%u len %zu lost %#llx: r=%d, "
				"not -EIO\n",
				k, m, L, (unsigned long long)lost, r);
			bad++;
		}
	}
	/* Decoding never writes to the fragments. */
	for (unsigned i = 0; i < n; i++)
		sum_after ^= XXH3_64bits(f.p[i], fs) + i;
	if (sum_before != sum_after)
		bad++;
	frags_free(&f);
	free(bbase);
	free(obase);
	return bad;
}

static void test_roundtrips(void)
{
	static const size_t lens[] = {1,    2,	  3,	7,     15,  16,	    17,
				      4095, 4096, 4097, 65539, MiB, MiB + 1};
	static const struct {
		unsigned k, m;
		size_t max_len; /* all patterns up to this length */
	} codes[] = {
	    {2, 1, MiB + 1}, {4, 2, MiB + 1}, {8, 3, MiB + 1}, {10, 4, MiB + 1},
	    {1, 2, MiB + 1}, {3, 0, MiB + 1}, {6, 3, 65539},   {5, 1, 65539},
	};

	for (size_t ci = 0; ci < sizeof(codes) / sizeof(codes[0]); ci++) {
		struct ec_codec *c = codec(codes[ci].k, codes[ci].m);

		for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
			size_t L = lens[li];
			unsigned bad;

			if (L > codes[ci].max_len)
				continue;
			bad = roundtrip(c, L, L * 31 + ci, NULL, 0);
			CHECK(bad == 0);
			if (bad)
				fprintf(stderr, "  code %u+%u, length %zu\n",
					codes[ci].k, codes[ci].m, L);
		}
		ec_codec_free(c);
	}
}

/* ---- odd alignments ---- */

static void test_alignment(void)
{
	static const unsigned codes[][2] = {{4, 2}, {8, 3}, {1, 3}, {3, 0}};
	static const size_t lens[] = {1, 17, 4097, 200001};
	unsigned skew[EC_MAX_FRAGS];

	for (unsigned i = 0; i < EC_MAX_FRAGS; i++)
		skew[i] = (i * 5 + 1) % 16; /* 1, 6, 11, 0, 5, ... */
	for (size_t ci = 0; ci < sizeof(codes) / sizeof(codes[0]); ci++) {
		struct ec_codec *c = codec(codes[ci][0], codes[ci][1]);

		for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
			CHECK(roundtrip(c, lens[li], 3 + li, skew, 3) == 0);
			CHECK(roundtrip(c, lens[li], 4 + li, NULL, 1) == 0);
		}
		ec_codec_free(c);
	}
	/* Same bytes whatever the alignment. */
	{
		struct ec_codec *c = codec(8, 3);
		size_t L = 300001, fs = ec_frag_size(c, L);
		uint8_t *b = xmalloc(L + 1);
		struct frags a, u;
		bool same = true;

		fill_random(b, L + 1, 8);
		frags_alloc(&a, 11, fs, NULL);
		frags_alloc(&u, 11, fs, skew);
		CHECK(ec_encode(c, b, L, a.p) == 0);
		CHECK(ec_encode(c, b + 1, L, u.p) == 0);  /* block unaligned */
		CHECK(memcmp(a.p[10], u.p[10], fs) != 0); /* other bytes */
		memmove(b + 1, b, L);
		CHECK(ec_encode(c, b + 1, L, u.p) == 0);
		for (unsigned i = 0; i < 11; i++)
			same = same && memcmp(a.p[i], u.p[i], fs) == 0;
		CHECK(same);
		frags_free(&a);
		frags_free(&u);
		free(b);
		ec_codec_free(c);
	}
}

/* ---- known answers, and agreement with Jerasure's own encoders ---- */

/* XXH3-64 of all fragments of a known block, in order. */
static uint64_t frags_digest(unsigned k, unsigned m, size_t L)
{
	struct ec_codec *c = codec(k, m);
	size_t fs = ec_frag_size(c, L);
	uint8_t *b = xmalloc(L);
	XXH3_state_t *st = XXH3_createState();
	struct frags f;
	uint64_t h;

	fill_random(b, L, 2024);
	frags_alloc(&f, k + m, fs, NULL);
	CHECK(ec_encode(c, b, L, f.p) == 0);
	XXH3_64bits_reset(st);
	for (unsigned i = 0; i < k + m; i++)
		XXH3_64bits_update(st, f.p[i], fs);
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	frags_free(&f);
	free(b);
	ec_codec_free(c);
	return h;
}

/* Parity as Jerasure's own calls compute it on aligned copies of our data
 * fragments: Cauchy stripes of 8 x 16 KiB packets then one tail stripe,
 * or the Vandermonde matrix. */
static bool jerasure_agrees(unsigned k, unsigned m, size_t L)
{
	struct ec_codec *c = codec(k, m);
	size_t fs = ec_frag_size(c, L);
	uint8_t *b = xmalloc(L);
	char *data[EC_MAX_K], *coding[EC_MAX_M];
	struct frags f;
	bool ok = true;

	fill_random(b, L, 99);
	frags_alloc(&f, k + m, fs, NULL);
	CHECK(ec_encode(c, b, L, f.p) == 0);
	for (unsigned i = 0; i < k; i++) {
		data[i] = aligned_alloc(64, fs);
		memcpy(data[i], f.p[i], fs);
	}
	for (unsigned i = 0; i < m; i++)
		coding[i] = aligned_alloc(64, fs);
	if (m <= 2) {
		int *mat = cauchy_good_general_coding_matrix((int)k, (int)m, 8);
		int *bm = jerasure_matrix_to_bitmatrix((int)k, (int)m, 8, mat);
		int **sch =
		    jerasure_smart_bitmatrix_to_schedule((int)k, (int)m, 8, bm);
		size_t full = fs / (128 * KiB) * (128 * KiB);
		char *d2[EC_MAX_K], *c2[EC_MAX_M];

		if (full)
			jerasure_schedule_encode((int)k, (int)m, 8, sch, data,
						 coding, (int)full, 16 * KiB);
		if (fs > full) {
			for (unsigned i = 0; i < k; i++)
				d2[i] = data[i] + full;
			for (unsigned i = 0; i < m; i++)
				c2[i] = coding[i] + full;
			jerasure_schedule_encode((int)k, (int)m, 8, sch, d2, c2,
						 (int)(fs - full),
						 (int)((fs - full) / 8));
		}
		jerasure_free_schedule(sch);
		free(bm);
		free(mat);
	} else {
		int *mat =
		    reed_sol_vandermonde_coding_matrix((int)k, (int)m, 8);

		jerasure_matrix_encode((int)k, (int)m, 8, mat, data, coding,
				       (int)fs);
		free(mat);
	}
	for (unsigned i = 0; i < m; i++)
		ok = ok && memcmp(coding[i], f.p[k + i], fs) == 0;
	for (unsigned i = 0; i < k; i++)
		free(data[i]);
	for (unsigned i = 0; i < m; i++)
		free(coding[i]);
	frags_free(&f);
	free(b);
	ec_codec_free(c);
	return ok;
}

static void test_known_answers(void)
{
	/* Pinned: a change here changes the fragment format (codec.c,
	 * invariant 1) and needs a new EC_FRAG_VERSION. */
	static const struct {
		unsigned k, m;
		size_t len;
		uint64_t digest;
	} kat[] = {
	    {4, 2, MiB + 1, 0x099cc0fae7e217eaull},
	    {4, 2, 4097, 0x9a53e4922eb09905ull},
	    {2, 1, 7, 0x5c06d5a020a51e73ull},
	    {10, 4, 65539, 0xcf6df7b222ba2f0full},
	    {8, 3, 300000, 0xc64862433326fe26ull},
	    {1, 2, 1000, 0xd5a2e505329f6140ull},
	};

	CHECK(jerasure_agrees(4, 2, MiB));     /* full stripes only */
	CHECK(jerasure_agrees(4, 2, MiB + 1)); /* and a tail stripe */
	CHECK(jerasure_agrees(2, 1, 4097));    /* tail stripe only */
	CHECK(jerasure_agrees(3, 2, 1000));
	CHECK(jerasure_agrees(10, 4, MiB + 1));
	CHECK(jerasure_agrees(8, 3, 12345));
	for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
		uint64_t h = frags_digest(kat[i].k, kat[i].m, kat[i].len);

		CHECK(h == kat[i].digest);
		if (h != kat[i].digest)
			fprintf(stderr, "  %u+%u len %zu: digest %#018llx\n",
				kat[i].k, kat[i].m, kat[i].len,
				(unsigned long long)h);
	}
}

/* ---- framing ---- */

struct sealed {
	struct ec_codec *c;
	size_t len, fs;
	uint8_t *block;
	struct blk_cid cid;
	struct frags f;
	uint8_t (*hdrs)[EC_FRAG_HDR_LEN];
};

static void seal_block(struct sealed *s, unsigned k, unsigned m, size_t len,
		       uint64_t codec_id)
{
	s->c = codec(k, m);
	s->len = len;
	s->fs = ec_frag_size(s->c, len);
	s->block = xmalloc(len);
	fill_random(s->block, len, len + k);
	blk_cid_compute(&s->cid, codec_id, s->block, len);
	frags_alloc(&s->f, k + m, s->fs, NULL);
	s->hdrs = xmalloc((k + m) * sizeof(*s->hdrs));
	CHECK(ec_encode_frags(s->c, &s->cid, s->block, len, s->f.p, s->hdrs) ==
	      0);
}

static void sealed_free(struct sealed *s)
{
	frags_free(&s->f);
	free(s->hdrs);
	free(s->block);
	ec_codec_free(s->c);
}

static void test_framing_roundtrip(void)
{
	static const unsigned codes[][2] = {{4, 2}, {1, 3}, {10, 4}, {2, 0}};

	for (size_t ci = 0; ci < sizeof(codes) / sizeof(codes[0]); ci++) {
		unsigned k = codes[ci][0], m = codes[ci][1];
		struct sealed s;
		bool ok = true;

		seal_block(&s, k, m, 70000 + ci, BLK_CODEC_RAW);
		for (unsigned i = 0; i < k + m; i++) {
			struct ec_frag_hdr h;

			ok = ok &&
			     ec_frag_hdr_parse(s.hdrs[i], EC_FRAG_HDR_LEN,
					       &h) == 0 &&
			     h.k == k && h.m == m && h.index == i &&
			     h.block_len == s.len && h.frag_len == s.fs &&
			     blk_cid_equal(&h.cid, &s.cid) &&
			     ec_frag_verify(&h, s.f.p[i], s.fs) == 0 &&
			     ec_frag_verify(&h, s.f.p[i], s.fs - 1) == -EBADMSG;
		}
		CHECK(ok);
		sealed_free(&s);
	}
	/* DAG codecs too; an unknown codec is refused. */
	{
		struct sealed s;
		struct ec_frag_hdr h;
		struct blk_cid bad;

		seal_block(&s, 4, 2, 999, BLK_CODEC_DAG_CBOR);
		CHECK(ec_frag_hdr_parse(s.hdrs[5], EC_FRAG_HDR_LEN, &h) == 0);
		CHECK(h.cid.codec == BLK_CODEC_DAG_CBOR);
		bad = s.cid;
		bad.codec = 0x12;
		CHECK(ec_encode_frags(s.c, &bad, s.block, s.len, s.f.p,
				      s.hdrs) == -EINVAL);
		CHECK(ec_encode_frags(s.c, NULL, s.block, s.len, s.f.p,
				      s.hdrs) == -EINVAL);
		CHECK(ec_encode_frags(s.c, &s.cid, s.block, s.len, s.f.p,
				      NULL) == -EINVAL);
		sealed_free(&s);
	}
}

/* Every single-bit flip in a header or in the bytes is caught. */
static void test_framing_bitflips(void)
{
	struct sealed s;
	unsigned undetected = 0, tried = 0;

	seal_block(&s, 4, 2, 5000, BLK_CODEC_RAW);
	for (unsigned i = 0; i < 6; i++) {
		uint8_t hdr[EC_FRAG_HDR_LEN];
		struct ec_frag_hdr h;

		for (unsigned bit = 0; bit < EC_FRAG_HDR_LEN * 8; bit++) {
			memcpy(hdr, s.hdrs[i], EC_FRAG_HDR_LEN);
			hdr[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			tried++;
			if (ec_frag_hdr_parse(hdr, EC_FRAG_HDR_LEN, &h) == 0 &&
			    ec_frag_verify(&h, s.f.p[i], s.fs) == 0 &&
			    h.frag_len == s.fs)
				undetected++;
		}
		CHECK(ec_frag_hdr_parse(s.hdrs[i], EC_FRAG_HDR_LEN, &h) == 0);
		for (size_t pos = 0; pos < s.fs; pos += 37) {
			s.f.p[i][pos] ^= 0x10;
			tried++;
			if (ec_frag_verify(&h, s.f.p[i], s.fs) != -EBADMSG)
				undetected++;
			s.f.p[i][pos] ^= 0x10;
		}
		CHECK(ec_frag_verify(&h, s.f.p[i], s.fs) == 0);
	}
	CHECK(tried > 6 * 512);
	CHECK(undetected == 0);
	sealed_free(&s);
}

/* Each malformed header is refused by ec_frag_hdr_parse. */
static void test_framing_malformed(void)
{
	struct sealed s, r;
	struct ec_frag_hdr h, good;
	uint8_t hdr[EC_FRAG_HDR_LEN];

	seal_block(&s, 4, 2, 5000, BLK_CODEC_RAW);
	seal_block(&r, 1, 2, 5000, BLK_CODEC_RAW);
	CHECK(ec_frag_hdr_parse(s.hdrs[2], EC_FRAG_HDR_LEN, &good) == 0);

#define MUTATE(src, stmt, expect)                                              \
	do {                                                                   \
		memcpy(hdr, (src), EC_FRAG_HDR_LEN);                           \
		stmt;                                                          \
		CHECK(ec_frag_hdr_parse(hdr, EC_FRAG_HDR_LEN, &h) == expect);  \
	} while (0)
#define PUT32(off, v)                                                          \
	do {                                                                   \
		uint32_t v_ = (v);                                             \
		for (int b_ = 0; b_ < 4; b_++)                                 \
			hdr[(off) + b_] = (uint8_t)(v_ >> (8 * b_));           \
	} while (0)

	MUTATE(s.hdrs[2], (void)0, 0);
	MUTATE(s.hdrs[2], hdr[0] = 'X', -EPROTO);	    /* magic */
	MUTATE(s.hdrs[2], memcpy(hdr, "BFRH", 4), -EPROTO); /* magic */
	MUTATE(s.hdrs[2], hdr[4] = 0, -EPROTO);		    /* version */
	MUTATE(s.hdrs[2], hdr[4] = 2, -EPROTO);		    /* version */
	MUTATE(s.hdrs[2], PUT32(20, 1), -EPROTO);	    /* flags */
	MUTATE(s.hdrs[2], PUT32(20, 0x80000000u), -EPROTO);
	MUTATE(s.hdrs[2], hdr[5] = 0, -EINVAL); /* k = 0 */
	MUTATE(s.hdrs[2], hdr[5] = EC_MAX_K + 1, -EINVAL);
	MUTATE(s.hdrs[2], hdr[6] = EC_MAX_M + 1, -EINVAL);
	MUTATE(s.hdrs[2], hdr[7] = 6, -EINVAL); /* index = k + m */
	MUTATE(s.hdrs[2], hdr[7] = 255, -EINVAL);
	MUTATE(s.hdrs[2], PUT32(8, 0), -EINVAL); /* block_len 0 */
	MUTATE(s.hdrs[2], PUT32(8, EC_MAX_BLOCK + 1), -EINVAL);
	MUTATE(s.hdrs[2], PUT32(12, 0), -EINVAL); /* frag_len 0 */
	MUTATE(s.hdrs[2], PUT32(12, EC_MAX_BLOCK + 1), -EINVAL);
	/* frag_len * k < block_len */
	MUTATE(s.hdrs[2], PUT32(12, 1249), -EINVAL);
	MUTATE(s.hdrs[2], PUT32(12, 1250), 0);
	MUTATE(s.hdrs[2], PUT32(16, 0x12), -EINVAL); /* codec */
	/* k = 1 needs frag_len == block_len */
	MUTATE(r.hdrs[1], (void)0, 0);
	MUTATE(r.hdrs[1], PUT32(12, 5001), -EINVAL);
	MUTATE(r.hdrs[1], PUT32(12, 4999), -EINVAL);
	/* Wrong lengths of header. */
	CHECK(ec_frag_hdr_parse(s.hdrs[2], EC_FRAG_HDR_LEN - 1, &h) == -EPROTO);
	CHECK(ec_frag_hdr_parse(s.hdrs[2], EC_FRAG_HDR_LEN + 1, &h) == -EPROTO);
#undef MUTATE
#undef PUT32
	sealed_free(&s);
	sealed_free(&r);
}

/* A corrupted fragment is caught by its checksum before decoding; decoded
 * anyway, it gives a block whose CID no longer matches. */
static void test_corruption(void)
{
	static const unsigned codes[][2] = {{4, 2}, {8, 3}, {1, 2}};

	for (size_t ci = 0; ci < sizeof(codes) / sizeof(codes[0]); ci++) {
		unsigned k = codes[ci][0], m = codes[ci][1], n = k + m;
		struct sealed s;
		uint8_t *have[EC_MAX_FRAGS];
		uint8_t *o;
		struct ec_frag_hdr h;
		unsigned bad = k; /* a parity fragment (a replica for k=1) */

		seal_block(&s, k, m, 100003, BLK_CODEC_RAW);
		o = xmalloc(s.len);
		s.f.p[bad][s.fs / 3] ^= 0x01;

		/* The checksum catches it. */
		CHECK(ec_frag_hdr_parse(s.hdrs[bad], EC_FRAG_HDR_LEN, &h) == 0);
		CHECK(ec_frag_verify(&h, s.f.p[bad], s.fs) == -EBADMSG);

		/* Decoding with it (data fragment 0 lost) gives wrong
		 * bytes that the CID check rejects. */
		for (unsigned i = 0; i < n; i++)
			have[i] = s.f.p[i];
		have[0] = NULL;
		CHECK(ec_decode(s.c, have, s.len, o) == 0);
		CHECK(!blk_cid_verify(&s.cid, o, s.len));

		/* A caller that verifies first drops it and decodes right. */
		for (unsigned i = 0; i < n; i++) {
			CHECK(ec_frag_hdr_parse(s.hdrs[i], EC_FRAG_HDR_LEN,
						&h) == 0);
			if (have[i] && ec_frag_verify(&h, have[i], s.fs) != 0)
				have[i] = NULL;
		}
		CHECK(have[bad] == NULL);
		CHECK(ec_decode(s.c, have, s.len, o) == 0);
		CHECK(blk_cid_verify(&s.cid, o, s.len));
		CHECK(memcmp(o, s.block, s.len) == 0);
		free(o);
		sealed_free(&s);
	}
}

/* ---- threads ---- */

struct worker {
	struct ec_codec *c;
	unsigned id;
	unsigned rounds, bad;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	unsigned k = ec_codec_k(w->c), m = ec_codec_m(w->c), n = k + m;
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (w->id + 1);

	for (unsigned r = 0; r < w->rounds; r++) {
		size_t L = 1 + xorshift64(&rnd) % (300 * KiB);
		size_t fs = ec_frag_size(w->c, L);
		uint8_t *b = xmalloc(L), *o = xmalloc(L);
		uint8_t *have[EC_MAX_FRAGS];
		struct frags f;
		unsigned lost = 0;

		fill_random(b, L, rnd);
		frags_alloc(&f, n, fs, NULL);
		if (ec_encode(w->c, b, L, f.p) != 0)
			w->bad++;
		for (unsigned i = 0; i < n; i++)
			have[i] = f.p[i];
		while (lost < m) {
			unsigned i = (unsigned)(xorshift64(&rnd) % n);

			if (have[i]) {
				have[i] = NULL;
				lost++;
			}
		}
		if (ec_decode(w->c, have, L, o) != 0 || memcmp(o, b, L) != 0)
			w->bad++;
		frags_free(&f);
		free(b);
		free(o);
	}
	return NULL;
}

/* Also builds codecs concurrently (Jerasure's global tables). */
static void *maker_run(void *arg)
{
	unsigned *bad = arg;

	for (unsigned i = 0; i < 20; i++) {
		struct ec_codec *c = NULL;

		if (ec_codec_new(2 + i % 9, 1 + i % 5, &c) != 0)
			(*bad)++;
		ec_codec_free(c);
	}
	return NULL;
}

static void test_threads(void)
{
	static const unsigned codes[][2] = {{4, 2}, {10, 4}};

	for (size_t ci = 0; ci < sizeof(codes) / sizeof(codes[0]); ci++) {
		struct ec_codec *c = codec(codes[ci][0], codes[ci][1]);
		struct worker w[4];
		pthread_t t[4], mk;
		unsigned mbad = 0, bad = 0, rounds = 0;

		for (unsigned i = 0; i < 4; i++) {
			w[i] = (struct worker){.c = c, .id = i, .rounds = 60};
			CHECK(pthread_create(&t[i], NULL, worker_run, &w[i]) ==
			      0);
		}
		CHECK(pthread_create(&mk, NULL, maker_run, &mbad) == 0);
		for (unsigned i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			bad += w[i].bad;
			rounds += w[i].rounds;
		}
		pthread_join(mk, NULL);
		CHECK(bad == 0);
		CHECK(mbad == 0);
		CHECK(rounds == 240);
		ec_codec_free(c);
	}
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define RUN(fn)                                                                \
	do {                                                                   \
		double t0_ = now();                                            \
		fn();                                                          \
		printf("ec: %-24s %6.2f s\n", #fn, now() - t0_);               \
	} while (0)

int main(void)
{
	RUN(test_params);
	RUN(test_errors);
	RUN(test_known_answers);
	RUN(test_roundtrips);
	RUN(test_alignment);
	RUN(test_framing_roundtrip);
	RUN(test_framing_bitflips);
	RUN(test_framing_malformed);
	RUN(test_corruption);
	RUN(test_threads);
	printf("ec: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
