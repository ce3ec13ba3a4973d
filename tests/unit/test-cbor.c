/* DAG-CBOR encoder and strict decoder: known answers from @ipld/dag-cbor
 * (tests/unit/vectors/gen-dag-cbor-vectors.mjs) and every strictness
 * rule refused. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blocks/dag/cbor.h"
#include "tests/unit/check.h"

/* Known answers (@ipld/dag-cbor 10.0.2, multiformats 14.0.5). */
#define CID_ROOT                                                               \
	"017012204813494d137e1631bba301d5acab6e7bb7aa74ce1185d456565ef51d7376" \
	"7"                                                                    \
	"7b2"
#define CID_ATTRS                                                              \
	"01711220118ec0153d297ea017326655839ddffd10d2a83e7dbd18b5f07edd4c77c0" \
	"b"                                                                    \
	"622"
#define CID_PARENT                                                             \
	"01711220e47125968b3b71049fbc4802d1e40a71ea1359decfabacf70b34588037d4" \
	"f"                                                                    \
	"f0c"
/* [[], [1, [2, [3]]], {a: [null, true, false]}, {}] */
#define V_NESTED "8480820182028103a1616183f6f5f4a0"
/* [-1, -24, -25, -256, -257, -65536, -65537, -2^32, -2^32-1, -2^63,
 *  -2^64] */
#define V_NEGINTS                                                              \
	"8b2037381838ff39010039ffff3a000100003affffffff3b00000001000000003b7f" \
	"f"                                                                    \
	"fffffffffffff3bffffffffffffffff"
/* [0, 23, 24, 255, 256, 65535, 65536, 2^32-1, 2^32, 2^64-1] */
#define V_UINTS                                                                \
	"8a0017181818ff19010019ffff1a000100001affffffff1b00000001000000001bff" \
	"f"                                                                    \
	"fffffffffffff"
/* {z: 1, aa: 2, a: 3, "": 4, b: 5, ab: 6, bb: 7, aaa: 8, "é": 9} */
#define V_KEYS                                                                 \
	"a96004616103616205617a0162616102626162066262620762c3a9096361616108"
/* ["héllo ✓ 𝄞", "", bytes(0)] */
#define V_TEXT "836f68c3a96c6c6f20e29c9320f09d849e6040"
/* {l: [root, attrs], p: parent, n: null} */
#define V_CIDS                                                                 \
	"a3616c82d82a582500017012204813494d137e1631bba301d5acab6e7bb7aa74ce11" \
	"85d456565ef51d737677b2d82a58250001711220118ec0153d297ea017326655839d" \
	"dffd10d2a83e7dbd18b5f07edd4c77c0b622616ef66170d82a58250001711220e471" \
	"25968b3b71049fbc4802d1e40a71ea1359decfabacf70b34588037d4ff0c"

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s) / 2;

	REQUIRE(n <= cap && strlen(s) % 2 == 0);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		REQUIRE(sscanf(s + 2 * i, "%2x", &v) == 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void cid_of(const char *hex, struct blk_cid *cid)
{
	uint8_t b[64];
	size_t n = unhex(hex, b, sizeof(b));

	REQUIRE(blk_cid_from_bytes(cid, b, n) == 0);
}

/* @e's finished bytes equal @hex. */
static bool enc_is(struct blk_cbor_enc *e, const char *hex)
{
	uint8_t want[512];
	size_t n = unhex(hex, want, sizeof(want)), len;

	if (blk_cbor_enc_finish(e, &len) != 0)
		return false;
	return len == n && memcmp(e->buf, want, n) == 0;
}

static void test_encode_vectors(void)
{
	static const uint64_t uints[] = {
	    0,	   23,	  24,	      255,	  256,
	    65535, 65536, 4294967295, 4294967296, UINT64_MAX};
	static const int64_t negs[] = {
	    -1,	    -24,    -25,	 -256,	      -257,
	    -65536, -65537, -4294967296, -4294967297, INT64_MIN};
	static const char *keys[] = {"",   "a",	 "b", "z",  "aa",
				     "ab", "bb", "é", "aaa"};
	static const int key_vals[] = {4, 3, 5, 1, 2, 6, 7, 9, 8};
	struct blk_cid root, attrs, parent;
	struct blk_cbor_enc e;

	blk_cbor_enc_init(&e, NULL, 0);
	blk_cbor_put_array(&e, 4);
	blk_cbor_put_array(&e, 0);
	blk_cbor_put_array(&e, 2);
	blk_cbor_put_uint(&e, 1);
	blk_cbor_put_array(&e, 2);
	blk_cbor_put_uint(&e, 2);
	blk_cbor_put_array(&e, 1);
	blk_cbor_put_uint(&e, 3);
	blk_cbor_put_map(&e, 1);
	blk_cbor_put_key(&e, "a");
	blk_cbor_put_array(&e, 3);
	blk_cbor_put_null(&e);
	blk_cbor_put_bool(&e, true);
	blk_cbor_put_bool(&e, false);
	blk_cbor_put_map(&e, 0);
	CHECK(enc_is(&e, V_NESTED));

	blk_cbor_enc_reset(&e);
	blk_cbor_put_array(&e, 11);
	for (size_t i = 0; i < sizeof(negs) / sizeof(negs[0]); i++)
		blk_cbor_put_int(&e, negs[i]);
	blk_cbor_put_negint(&e, UINT64_MAX);
	CHECK(enc_is(&e, V_NEGINTS));

	blk_cbor_enc_reset(&e);
	blk_cbor_put_array(&e, 10);
	for (size_t i = 0; i < sizeof(uints) / sizeof(uints[0]); i++)
		blk_cbor_put_uint(&e, uints[i]);
	CHECK(enc_is(&e, V_UINTS));

	blk_cbor_enc_reset(&e);
	blk_cbor_put_map(&e, 9);
	for (size_t i = 0; i < 9; i++) {
		blk_cbor_put_key(&e, keys[i]);
		blk_cbor_put_uint(&e, (uint64_t)key_vals[i]);
	}
	CHECK(enc_is(&e, V_KEYS));

	blk_cbor_enc_reset(&e);
	blk_cbor_put_array(&e, 3);
	blk_cbor_put_text(&e, "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9d\x84\x9e", 15);
	blk_cbor_put_text(&e, "", 0);
	blk_cbor_put_bytes(&e, "", 0);
	CHECK(enc_is(&e, V_TEXT));

	cid_of(CID_ROOT, &root);
	cid_of(CID_ATTRS, &attrs);
	cid_of(CID_PARENT, &parent);
	blk_cbor_enc_reset(&e);
	blk_cbor_put_map(&e, 3);
	blk_cbor_put_key(&e, "l");
	blk_cbor_put_array(&e, 2);
	blk_cbor_put_cid(&e, &root);
	blk_cbor_put_cid(&e, &attrs);
	blk_cbor_put_key(&e, "n");
	blk_cbor_put_null(&e);
	blk_cbor_put_key(&e, "p");
	blk_cbor_put_cid(&e, &parent);
	CHECK(enc_is(&e, V_CIDS));
	blk_cbor_enc_release(&e);
}

/* Decode @hex whole with blk_cbor_copy; true if it decodes and
 * re-encodes to the same bytes. */
static int roundtrip(const uint8_t *b, size_t n)
{
	struct blk_cbor_dec d;
	struct blk_cbor_enc e;
	size_t len;
	int ret;

	blk_cbor_dec_init(&d, b, n);
	blk_cbor_enc_init(&e, NULL, 0);
	ret = blk_cbor_copy(&d, &e);
	if (ret == 0)
		ret = blk_cbor_dec_finish(&d);
	if (ret == 0) {
		REQUIRE(blk_cbor_enc_finish(&e, &len) == 0);
		CHECK(len == n && memcmp(e.buf, b, n) == 0);
	}
	blk_cbor_enc_release(&e);
	return ret;
}

static int roundtrip_hex(const char *hex)
{
	uint8_t b[512];

	return roundtrip(b, unhex(hex, b, sizeof(b)));
}

static void test_decode_vectors(void)
{
	static const char *ok[] = {V_NESTED, V_NEGINTS, V_UINTS, V_KEYS,
				   V_TEXT,   V_CIDS,	"00",	 "f6",
				   "a0",     "80",	"40",	 "60"};
	struct blk_cbor_dec d;
	uint8_t b[512];
	size_t n = unhex(V_CIDS, b, sizeof(b)), cnt;
	struct blk_cid cid, want;
	enum blk_cbor_type t;
	const char *k;
	size_t klen;
	int64_t iv;
	uint64_t uv;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		CHECK(roundtrip_hex(ok[i]) == 0);

	/* Typed reading of {l: [root, attrs], n: null, p: parent}. */
	blk_cbor_dec_init(&d, b, n);
	CHECK(blk_cbor_get_map(&d, &cnt) == 0 && cnt == 3);
	CHECK(blk_cbor_expect_key(&d, "l") == 0);
	CHECK(blk_cbor_get_array(&d, &cnt) == 0 && cnt == 2);
	CHECK(blk_cbor_peek(&d, &t) == 0 && t == BLK_CBOR_CID);
	cid_of(CID_ROOT, &want);
	CHECK(blk_cbor_get_cid(&d, &cid) == 0 && blk_cid_equal(&cid, &want));
	CHECK(blk_cbor_skip(&d) == 0);
	CHECK(blk_cbor_get_key(&d, &k, &klen) == 0 && klen == 1 && *k == 'n');
	CHECK(blk_cbor_peek(&d, &t) == 0 && t == BLK_CBOR_NULL);
	CHECK(blk_cbor_get_null(&d) == 0);
	CHECK(blk_cbor_expect_key(&d, "p") == 0);
	cid_of(CID_PARENT, &want);
	CHECK(blk_cbor_get_cid(&d, &cid) == 0 && blk_cid_equal(&cid, &want));
	CHECK(blk_cbor_dec_finish(&d) == 0);

	/* Integers through every accessor. */
	n = unhex(V_NEGINTS, b, sizeof(b));
	blk_cbor_dec_init(&d, b, n);
	CHECK(blk_cbor_get_array(&d, &cnt) == 0 && cnt == 11);
	CHECK(blk_cbor_get_int(&d, &iv) == 0 && iv == -1);
	for (int i = 0; i < 8; i++)
		CHECK(blk_cbor_skip(&d) == 0);
	CHECK(blk_cbor_get_int(&d, &iv) == 0 && iv == INT64_MIN);
	CHECK(blk_cbor_get_negint(&d, &uv) == 0 && uv == UINT64_MAX);
	CHECK(blk_cbor_dec_finish(&d) == 0);
	n = unhex(V_UINTS, b, sizeof(b));
	blk_cbor_dec_init(&d, b, n);
	CHECK(blk_cbor_get_array(&d, &cnt) == 0 && cnt == 10);
	for (int i = 0; i < 9; i++)
		CHECK(blk_cbor_skip(&d) == 0);
	CHECK(blk_cbor_peek(&d, &t) == 0 && t == BLK_CBOR_UINT);
	/* 2^64-1 does not fit int64_t: refused, and the error sticks. */
	CHECK(blk_cbor_get_int(&d, &iv) == -EBADMSG);
	CHECK(blk_cbor_get_uint(&d, &uv) == -EBADMSG);
	CHECK(blk_cbor_dec_finish(&d) == -EBADMSG);
}

/* Each breaks one rule of cbor.h. */
static const char *const bad[] = {
    "",			    /* nothing */
    "0000",		    /* rule 7: two top-level items */
    "1817",		    /* rule 1: 23 in two bytes */
    "190017",		    /* rule 1 */
    "1900ff",		    /* rule 1: 255 in three bytes */
    "1a0000ffff",	    /* rule 1 */
    "1b00000000ffffffff",   /* rule 1 */
    "3817",		    /* rule 1: negative */
    "580100",		    /* rule 1: a length */
    "780161",		    /* rule 1: a text length */
    "980100",		    /* rule 1: a count */
    "b801616100",	    /* rule 1: a map count */
    "1c",		    /* reserved additional information */
    "5fff",		    /* rule 1: indefinite byte string */
    "7fff",		    /* rule 1: indefinite text */
    "9fff",		    /* rule 1: indefinite array */
    "bfff",		    /* rule 1: indefinite map */
    "ff",		    /* a break */
    "1900",		    /* truncated argument */
    "5a00010000",	    /* a length past the end */
    "9a00010000",	    /* a count past the end */
    "8301",		    /* too few items */
    "a16161",		    /* a key without a value */
    "a10102",		    /* rule 2: an integer key */
    "a1410102",		    /* rule 2: a byte string key */
    "a2616201616102",	    /* rule 2: keys out of order */
    "a26261610161610a",	    /* rule 2: longer key first */
    "a2616101616102",	    /* rule 2: a repeated key */
    "c100",		    /* rule 3: another tag */
    "d82b40",		    /* rule 3: another tag */
    "d9002a4100",	    /* rule 3: tag 42 not in its shortest form */
    "d82a6100",		    /* rule 3: tag 42 over text */
    "d82a40",		    /* rule 3: empty CID */
    "d82a4100",		    /* rule 3: only the prefix */
    "d82a5824" CID_ATTRS,   /* rule 3: no 0x00 prefix */
    "d82a582501" CID_ATTRS, /* rule 3: wrong prefix */
    "d82a58260001711220118ec0153d297ea017326655839ddffd10d2a83e7dbd18b5f07"
    "edd4c77c0b62200", /* rule 3: a byte after the CID */
    "d82a582300122020118ec0153d297ea017326655839ddffd10d2a83e7dbd18b5f07ed"
    "d4c77c0b622",	  /* rule 3: a CIDv0 */
    "d82a",		  /* rule 3: a tag on nothing */
    "f7",		  /* rule 4: undefined */
    "f0",		  /* rule 4: simple value 16 */
    "f820",		  /* rule 4: simple value 32 */
    "f818",		  /* rule 4: simple value 24 */
    "f90000",		  /* rule 4: half float */
    "fa00000000",	  /* rule 4: single float */
    "fb3ff0000000000000", /* rule 4: double float */
    "61ff",		  /* rule 5: not UTF-8 */
    "62c080",		  /* rule 5: overlong */
    "63eda080",		  /* rule 5: a surrogate */
    "64f4900000",	  /* rule 5: past 10FFFF */
    "62e282",		  /* rule 5: truncated sequence */
    "a162c0800a",	  /* rule 5: a bad key */
};

static void test_strict(void)
{
	uint8_t deep[BLK_CBOR_MAX_DEPTH + 2];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = roundtrip_hex(bad[i]);

		if (ret != -EBADMSG)
			fprintf(stderr, "accepted: %s (%d)\n", bad[i], ret);
		CHECK(ret == -EBADMSG);
	}
	/* Rule 6: BLK_CBOR_MAX_DEPTH nested arrays, then one more. */
	memset(deep, 0x81, sizeof(deep));
	deep[BLK_CBOR_MAX_DEPTH] = 0x00;
	CHECK(roundtrip(deep, BLK_CBOR_MAX_DEPTH + 1) == 0);
	deep[BLK_CBOR_MAX_DEPTH] = 0x81;
	deep[BLK_CBOR_MAX_DEPTH + 1] = 0x00;
	CHECK(roundtrip(deep, BLK_CBOR_MAX_DEPTH + 2) == -EBADMSG);
	/* Empty containers do not count as depth. */
	memset(deep, 0x81, sizeof(deep));
	deep[BLK_CBOR_MAX_DEPTH] = 0x80;
	CHECK(roundtrip(deep, BLK_CBOR_MAX_DEPTH + 1) == 0);
}

static void test_accessors(void)
{
	struct blk_cbor_dec d;
	const uint8_t *p;
	size_t n;
	uint64_t v;
	bool bv;

	/* A type mismatch is malformed input, and sticks. */
	blk_cbor_dec_init(&d, "\x61\x61", 2);
	CHECK(blk_cbor_get_bytes(&d, &p, &n) == -EBADMSG);
	CHECK(blk_cbor_get_uint(&d, &v) == -EBADMSG);
	/* A value where a key is due and a key where a value is. */
	blk_cbor_dec_init(&d, "\xa1\x61\x61\x01", 4);
	CHECK(blk_cbor_get_map(&d, &n) == 0 && n == 1);
	CHECK(blk_cbor_get_text(&d, (const char **)&p, &n) == -EBADMSG);
	blk_cbor_dec_init(&d, "\xa1\x61\x61\x61\x61", 5);
	CHECK(blk_cbor_get_map(&d, &n) == 0);
	CHECK(blk_cbor_expect_key(&d, "a") == 0);
	CHECK(blk_cbor_expect_key(&d, "a") == -EBADMSG);
	blk_cbor_dec_init(&d, "\xa1\x61\x61\x01", 4);
	CHECK(blk_cbor_get_map(&d, &n) == 0);
	CHECK(blk_cbor_expect_key(&d, "b") == -EBADMSG);
	/* Not finished: an open container. */
	blk_cbor_dec_init(&d, "\x82\xf5\xf4", 3);
	CHECK(blk_cbor_get_array(&d, &n) == 0 && n == 2);
	CHECK(blk_cbor_get_bool(&d, &bv) == 0 && bv);
	CHECK(blk_cbor_dec_finish(&d) == -EBADMSG);
	/* A nul keeps its place in a byte string. */
	blk_cbor_dec_init(&d, "\x43\x00\x01\x00", 4);
	CHECK(blk_cbor_get_bytes(&d, &p, &n) == 0 && n == 3 && p[1] == 1);
	CHECK(blk_cbor_dec_finish(&d) == 0);
}

static void test_encoder_buffers(void)
{
	uint8_t want[512], buf[512];
	size_t n = unhex(V_KEYS, want, sizeof(want)), len;
	struct blk_cbor_enc e;
	struct blk_cbor_dec d;
	uint8_t *big = xmalloc(1 << 20);

	/* A fixed buffer: -ENOBUFS for every size short of the item. */
	for (size_t cap = 0; cap <= n; cap++) {
		blk_cbor_enc_init(&e, buf, cap);
		blk_cbor_dec_init(&d, want, n);
		blk_cbor_copy(&d, &e);
		CHECK(blk_cbor_enc_finish(&e, &len) ==
		      (cap < n ? -ENOBUFS : 0));
	}
	CHECK(len == n && memcmp(buf, want, n) == 0);

	/* A growable one past its first sizes. */
	fill_random(big, 1 << 20, 7);
	blk_cbor_enc_init(&e, NULL, 0);
	blk_cbor_put_array(&e, 2);
	blk_cbor_put_bytes(&e, big, 1 << 20);
	blk_cbor_put_uint(&e, 5);
	CHECK(blk_cbor_enc_finish(&e, &len) == 0 &&
	      len == 1 + 5 + (1 << 20) + 1);
	CHECK(memcmp(e.buf + 6, big, 1 << 20) == 0);
	CHECK(roundtrip(e.buf, len) == 0);
	blk_cbor_enc_release(&e);
	free(big);
}

/* Run @fn in a child: misuse aborts in debug builds (assert) and returns
 * -EINVAL otherwise. */
static void expect_misuse(int (*fn)(struct blk_cbor_enc *))
{
	int status;
	pid_t pid = fork();

	REQUIRE(pid >= 0);
	if (pid == 0) {
		struct blk_cbor_enc e;
		int ret;

		signal(SIGABRT, SIG_DFL);
		/* The assert's message is expected: keep it off the log. */
		REQUIRE(freopen("/dev/null", "w", stderr));
		blk_cbor_enc_init(&e, NULL, 0);
		ret = fn(&e);
		blk_cbor_enc_release(&e);
		_exit(ret == -EINVAL ? 0 : 1);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
#ifdef NDEBUG
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#else
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
#endif
}

static int misuse_order(struct blk_cbor_enc *e)
{
	blk_cbor_put_map(e, 2);
	blk_cbor_put_key(e, "bb");
	blk_cbor_put_uint(e, 1);
	return blk_cbor_put_key(e, "a");
}

static int misuse_repeat(struct blk_cbor_enc *e)
{
	blk_cbor_put_map(e, 2);
	blk_cbor_put_key(e, "a");
	blk_cbor_put_uint(e, 1);
	return blk_cbor_put_key(e, "a");
}

static int misuse_value_as_key(struct blk_cbor_enc *e)
{
	blk_cbor_put_map(e, 1);
	return blk_cbor_put_uint(e, 1);
}

static int misuse_short(struct blk_cbor_enc *e)
{
	size_t len;

	blk_cbor_put_array(e, 2);
	blk_cbor_put_uint(e, 1);
	return blk_cbor_enc_finish(e, &len);
}

static int misuse_two_items(struct blk_cbor_enc *e)
{
	blk_cbor_put_uint(e, 1);
	return blk_cbor_put_uint(e, 2);
}

static int misuse_deep(struct blk_cbor_enc *e)
{
	for (int i = 0; i < BLK_CBOR_MAX_DEPTH; i++)
		blk_cbor_put_array(e, 1);
	return blk_cbor_put_array(e, 1);
}

static void test_misuse(void)
{
	expect_misuse(misuse_order);
	expect_misuse(misuse_repeat);
	expect_misuse(misuse_value_as_key);
	expect_misuse(misuse_short);
	expect_misuse(misuse_two_items);
	expect_misuse(misuse_deep);
}

int main(void)
{
	test_encode_vectors();
	test_decode_vectors();
	test_strict();
	test_accessors();
	test_encoder_buffers();
	test_misuse();
	printf("cbor: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
