/* The head record: known answers from @ipld/dag-cbor and Node's Ed25519
 * (tests/unit/vectors/gen-dag-cbor-vectors.mjs), signing and verifying,
 * every field tampered, unsigned and malformed records. */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>

#include "blocks/dag/cbor.h"
#include "blocks/dag/head.h"
#include "tests/unit/check.h"

/* The Ed25519 public key of the seed a0 a1 ... bf. */
#define PK "4fd099ccd47d7893dfe9ec24414ecb0d9b5420232aad30d91c465be33cbe65c4"
/* The head of make_head(), signed with that key. */
#define HEAD_SIGNED                                                            \
	"aa61760162667350000102030405060708090a0b0c0d0e0f6373657102637369"     \
	"67584092d997d4f41ed05bde5b1999b0e0963ab3e8e7cc29241d8c5f98bed586"     \
	"995706e27dc4093ae9face8c5fa7fd58f8816b8f2c80eada9a16795db24570ee"     \
	"1bdb0164726f6f74d82a582500017012204813494d137e1631bba301d5acab6e"     \
	"7bb7aa74ce1185d456565ef51d737677b26474696d651b17979cfe3d85cd1565"     \
	"6174747273d82a58250001711220118ec0153d297ea017326655839ddffd10d2"     \
	"a83e7dbd18b5f07edd4c77c0b622656c656173651b17979d0539a97915667061"     \
	"72656e74d82a58250001711220e47125968b3b71049fbc4802d1e40a71ea1359"     \
	"decfabacf70b34588037d4ff0c66777269746572582020212223242526272829"     \
	"2a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
#define HEAD_CID "bafyreibz5bwvzbpitedqb3urocz36vwlre62bt4g7ag6u37l32ik463rse"
/* The same without "sig". */
#define HEAD_UNSIGNED                                                          \
	"a961760162667350000102030405060708090a0b0c0d0e0f637365710264726f"     \
	"6f74d82a582500017012204813494d137e1631bba301d5acab6e7bb7aa74ce11"     \
	"85d456565ef51d737677b26474696d651b17979cfe3d85cd15656174747273d8"     \
	"2a58250001711220118ec0153d297ea017326655839ddffd10d2a83e7dbd18b5"     \
	"f07edd4c77c0b622656c656173651b17979d0539a9791566706172656e74d82a"     \
	"58250001711220e47125968b3b71049fbc4802d1e40a71ea1359decfabacf70b"     \
	"34588037d4ff0c667772697465725820202122232425262728292a2b2c2d2e2f"     \
	"303132333435363738393a3b3c3d3e3f"
/* The first head (seq 1, parent null), unsigned. */
#define HEAD1_UNSIGNED                                                         \
	"a961760162667350000102030405060708090a0b0c0d0e0f637365710164726f"     \
	"6f74d82a582500017012204813494d137e1631bba301d5acab6e7bb7aa74ce11"     \
	"85d456565ef51d737677b26474696d651b17979cfe3d85cd15656174747273d8"     \
	"2a58250001711220118ec0153d297ea017326655839ddffd10d2a83e7dbd18b5"     \
	"f07edd4c77c0b622656c656173651b17979d0539a9791566706172656e74f666"     \
	"7772697465725820202122232425262728292a2b2c2d2e2f3031323334353637"     \
	"38393a3b3c3d3e3f"

static uint8_t pk[32], sk[64];

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

static void make_keys(void)
{
	uint8_t seed[32], want[32];

	REQUIRE(sodium_init() >= 0);
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(0xa0 + i);
	crypto_sign_seed_keypair(pk, sk, seed);
	unhex(PK, want, sizeof(want));
	CHECK(memcmp(pk, want, 32) == 0);
}

/* The fields of the vectors (seq 2). */
static void make_head(struct blk_head *h)
{
	memset(h, 0, sizeof(*h));
	for (int i = 0; i < 16; i++)
		h->fs[i] = (uint8_t)i;
	h->seq = 2;
	h->time_ns = 1700000000123456789ull;
	blk_cid_compute(&h->root, BLK_CODEC_DAG_PB, "root", 4);
	blk_cid_compute(&h->attrs, BLK_CODEC_DAG_CBOR, "attrs", 5);
	h->has_parent = true;
	blk_cid_compute(&h->parent, BLK_CODEC_DAG_CBOR, "parent", 6);
	for (int i = 0; i < 32; i++)
		h->writer[i] = (uint8_t)(0x20 + i);
	h->lease_ns = 1700000030123456789ull;
}

static bool head_equal(const struct blk_head *a, const struct blk_head *b)
{
	return memcmp(a->fs, b->fs, 16) == 0 && a->seq == b->seq &&
	       a->time_ns == b->time_ns && blk_cid_equal(&a->root, &b->root) &&
	       a->root.hash == b->root.hash &&
	       blk_cid_equal(&a->attrs, &b->attrs) &&
	       a->has_parent == b->has_parent &&
	       (!a->has_parent || blk_cid_equal(&a->parent, &b->parent)) &&
	       memcmp(a->writer, b->writer, 32) == 0 &&
	       a->lease_ns == b->lease_ns && memcmp(a->sig, b->sig, 64) == 0;
}

static void test_vectors(void)
{
	uint8_t want[BLK_HEAD_MAX_BYTES], buf[BLK_HEAD_MAX_BYTES];
	size_t n = unhex(HEAD_SIGNED, want, sizeof(want)), len;
	struct blk_head h, got;
	struct blk_cid cid;
	char str[BLK_CID_STR_MAX];

	make_head(&h);
	CHECK(blk_head_sign(&h, sk) == 0);
	CHECK(blk_head_encode(&h, buf, sizeof(buf), &len) == 0);
	CHECK(len == n && memcmp(buf, want, n) == 0);
	blk_head_cid(buf, len, &cid);
	blk_cid_to_string(&cid, str);
	CHECK(strcmp(str, HEAD_CID) == 0);
	CHECK(cid.hash == BLK_HASH_SHA2_256 && cid.codec == BLK_CODEC_DAG_CBOR);

	CHECK(blk_head_decode(&got, want, n) == 0);
	CHECK(head_equal(&got, &h));
	CHECK(blk_head_verify(&got, pk) == 0);

	/* Unsigned: decoded, sig zeroed, -ENOKEY; it does not verify. */
	n = unhex(HEAD_UNSIGNED, want, sizeof(want));
	CHECK(blk_head_decode(&got, want, n) == -ENOKEY);
	memset(h.sig, 0, sizeof(h.sig));
	CHECK(head_equal(&got, &h));
	CHECK(blk_head_verify(&got, pk) == -EBADMSG);

	/* The first head: parent null. */
	n = unhex(HEAD1_UNSIGNED, want, sizeof(want));
	CHECK(blk_head_decode(&got, want, n) == -ENOKEY);
	CHECK(got.seq == 1 && !got.has_parent);
	CHECK(blk_head_sign(&got, sk) == 0);
	CHECK(blk_head_verify(&got, pk) == 0);
	CHECK(blk_head_encode(&got, buf, sizeof(buf), &len) == 0);
	CHECK(blk_head_decode(&h, buf, len) == 0 && head_equal(&got, &h));
}

/* Each change of one field breaks the signature. */
static void test_tamper_fields(void)
{
	struct blk_head h, t;
	uint8_t pk2[32], sk2[64];

	make_head(&h);
	REQUIRE(blk_head_sign(&h, sk) == 0);
	CHECK(blk_head_verify(&h, pk) == 0);
	crypto_sign_keypair(pk2, sk2);
	CHECK(blk_head_verify(&h, pk2) == -EBADMSG);

	for (int field = 0; field < 14; field++) {
		t = h;
		switch (field) {
		case 0:
			t.fs[15] ^= 1;
			break;
		case 1:
			t.seq++;
			break;
		case 2:
			t.time_ns++;
			break;
		case 3:
			t.root.digest[0] ^= 1;
			break;
		case 4:
			t.root.codec = BLK_CODEC_RAW;
			break;
		case 5:
			t.root.hash = BLK_HASH_BLAKE2B_256;
			break;
		case 6:
			t.attrs.digest[31] ^= 0x80;
			break;
		case 7:
			t.parent.digest[7] ^= 4;
			break;
		case 8:
			t.has_parent = false;
			break;
		case 9:
			t.writer[0] ^= 1;
			break;
		case 10:
			t.lease_ns--;
			break;
		case 11:
			t.sig[0] ^= 1;
			break;
		case 12:
			t.sig[63] ^= 0x80;
			break;
		default:
			t.parent = t.attrs;
			break;
		}
		if (blk_head_verify(&t, pk) != -EBADMSG)
			fprintf(stderr, "field %d: tampered head verifies\n",
				field);
		CHECK(blk_head_verify(&t, pk) == -EBADMSG);
	}
}

/* Every bit of the encoding flipped: refused or not verified. */
static void test_tamper_bytes(void)
{
	uint8_t buf[BLK_HEAD_MAX_BYTES];
	struct blk_head h;
	size_t n = unhex(HEAD_SIGNED, buf, sizeof(buf));
	unsigned accepted = 0;

	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			int ret;

			buf[i] ^= (uint8_t)(1 << bit);
			ret = blk_head_decode(&h, buf, n);
			if (ret == 0 && blk_head_verify(&h, pk) == 0)
				accepted++;
			CHECK(ret == 0 || ret == -EBADMSG || ret == -ENOKEY);
			buf[i] ^= (uint8_t)(1 << bit);
		}
	}
	CHECK(accepted == 0);
	/* Every truncation and a trailing byte are malformed. */
	for (size_t len = 0; len < n; len++)
		CHECK(blk_head_decode(&h, buf, len) == -EBADMSG);
	buf[n] = 0;
	CHECK(blk_head_decode(&h, buf, n + 1) == -EBADMSG);
	CHECK(blk_head_decode(&h, buf, n) == 0);
}

/* One entry of a hand-built head map. */
enum kind { K_UINT, K_NEG, K_BYTES, K_TEXT, K_CID, K_NULL };
struct entry {
	const char *key;
	enum kind kind;
	uint64_t u;
	const void *p;
	size_t len;
};

/* Encode @n entries (given in DAG-CBOR key order) as a map. */
static size_t build(const struct entry *en, size_t n, uint8_t *buf)
{
	struct blk_cbor_enc e;
	size_t len;

	blk_cbor_enc_init(&e, buf, BLK_HEAD_MAX_BYTES);
	blk_cbor_put_map(&e, n);
	for (size_t i = 0; i < n; i++) {
		blk_cbor_put_key(&e, en[i].key);
		switch (en[i].kind) {
		case K_UINT:
			blk_cbor_put_uint(&e, en[i].u);
			break;
		case K_NEG:
			blk_cbor_put_negint(&e, en[i].u);
			break;
		case K_BYTES:
			blk_cbor_put_bytes(&e, en[i].p, en[i].len);
			break;
		case K_TEXT:
			blk_cbor_put_text(&e, en[i].p, en[i].len);
			break;
		case K_CID:
			blk_cbor_put_cid(&e, en[i].p);
			break;
		case K_NULL:
			blk_cbor_put_null(&e);
			break;
		}
	}
	REQUIRE(blk_cbor_enc_finish(&e, &len) == 0);
	return len;
}

static void test_malformed(void)
{
	static const uint8_t zero[64];
	struct blk_head h, got;
	struct entry base[10], en[11];
	uint8_t buf[BLK_HEAD_MAX_BYTES], ref[BLK_HEAD_MAX_BYTES];
	size_t len, rlen;

	make_head(&h);
	REQUIRE(blk_head_sign(&h, sk) == 0);
	base[0] = (struct entry){"v", K_UINT, 1, NULL, 0};
	base[1] = (struct entry){"fs", K_BYTES, 0, h.fs, 16};
	base[2] = (struct entry){"seq", K_UINT, h.seq, NULL, 0};
	base[3] = (struct entry){"sig", K_BYTES, 0, h.sig, 64};
	base[4] = (struct entry){"root", K_CID, 0, &h.root, 0};
	base[5] = (struct entry){"time", K_UINT, h.time_ns, NULL, 0};
	base[6] = (struct entry){"attrs", K_CID, 0, &h.attrs, 0};
	base[7] = (struct entry){"lease", K_UINT, h.lease_ns, NULL, 0};
	base[8] = (struct entry){"parent", K_CID, 0, &h.parent, 0};
	base[9] = (struct entry){"writer", K_BYTES, 0, h.writer, 32};

	/* The builder makes the real thing. */
	len = build(base, 10, buf);
	REQUIRE(blk_head_encode(&h, ref, sizeof(ref), &rlen) == 0);
	CHECK(len == rlen && memcmp(buf, ref, len) == 0);

	/* Each key missing: malformed, but for "sig" (unsigned). */
	for (size_t drop = 0; drop < 10; drop++) {
		size_t k = 0;

		for (size_t i = 0; i < 10; i++)
			if (i != drop)
				en[k++] = base[i];
		len = build(en, 9, buf);
		CHECK(blk_head_decode(&got, buf, len) ==
		      (drop == 3 ? -ENOKEY : -EBADMSG));
	}

	/* Each value of a wrong type or length, or out of range. */
	for (int bad = 0; bad < 22; bad++) {
		memcpy(en, base, sizeof(base));
		switch (bad) {
		case 0:
			en[0].u = 2; /* v */
			break;
		case 1:
			en[0].u = 0;
			break;
		case 2:
			en[0] = (struct entry){"v", K_TEXT, 0, "1", 1};
			break;
		case 3:
			en[1].len = 15; /* fs */
			break;
		case 4:
			en[1].len = 17;
			break;
		case 5:
			en[1].kind = K_TEXT; /* fs as text */
			break;
		case 6:
			en[2].u = 0; /* seq 0 */
			break;
		case 7:
			en[2].kind = K_NEG;
			break;
		case 8:
			en[2].u = 1; /* seq 1 with a parent */
			break;
		case 9:
			en[8].kind = K_NULL; /* seq 2 without one */
			break;
		case 10:
			en[3].len = 63; /* sig */
			break;
		case 11:
			en[3].p = zero;
			en[3].len = 0;
			break;
		case 12:
			en[4] = (struct entry){"root", K_BYTES, 0, zero, 36};
			break;
		case 13:
			en[4].kind = K_NULL; /* root null */
			break;
		case 14:
			en[5].kind = K_NEG; /* time */
			break;
		case 15:
			en[6].kind = K_UINT; /* attrs */
			break;
		case 16:
			en[6].kind = K_NULL;
			break;
		case 17:
			en[7].kind = K_BYTES; /* lease */
			en[7].p = zero;
			en[7].len = 8;
			break;
		case 18:
			en[8].kind = K_UINT; /* parent */
			break;
		case 19:
			en[9].len = 31; /* writer */
			break;
		case 20:
			en[9].len = 33;
			break;
		default:
			en[5].kind = K_TEXT; /* time */
			en[5].p = "now";
			en[5].len = 3;
			break;
		}
		len = build(en, 10, buf);
		if (blk_head_decode(&got, buf, len) != -EBADMSG)
			fprintf(stderr, "malformed %d accepted\n", bad);
		CHECK(blk_head_decode(&got, buf, len) == -EBADMSG);
	}

	/* Unknown keys, signed or not, anywhere in the order. */
	memcpy(en, base, sizeof(base));
	en[10] = (struct entry){"zzzzzzz", K_UINT, 0, NULL, 0};
	CHECK(blk_head_decode(&got, buf, build(en, 11, buf)) == -EBADMSG);
	memcpy(en + 1, base, sizeof(base));
	en[0] = en[1];
	en[1] = (struct entry){"x", K_UINT, 0, NULL, 0};
	CHECK(blk_head_decode(&got, buf, build(en, 11, buf)) == -EBADMSG);
	memcpy(en, base, sizeof(base));
	en[3] = (struct entry){"sih", K_BYTES, 0, h.sig, 64};
	CHECK(blk_head_decode(&got, buf, build(en, 10, buf)) == -EBADMSG);
	/* Not a map; empty map; a non-canonical byte (seq as 0x18 0x02). */
	CHECK(blk_head_decode(&got, (const uint8_t *)"\x80", 1) == -EBADMSG);
	CHECK(blk_head_decode(&got, (const uint8_t *)"\xa0", 1) == -EBADMSG);
	len = unhex(HEAD_SIGNED, buf + 1, sizeof(buf) - 1);
	memmove(buf, buf + 1, 28); /* up to "seq" and its key */
	REQUIRE(buf[29] == 0x02);
	buf[28] = 0x18;
	CHECK(blk_head_decode(&got, buf, len + 1) == -EBADMSG);
	CHECK(blk_head_decode(&got, NULL, 0) == -EBADMSG);
}

static void test_encode_limits(void)
{
	uint8_t buf[BLK_HEAD_MAX_BYTES];
	struct blk_head h, got;
	size_t full, len;

	make_head(&h);
	h.seq = h.time_ns = h.lease_ns = UINT64_MAX;
	h.root.hash = BLK_HASH_BLAKE2B_256; /* the longer CID form */
	h.attrs.hash = h.parent.hash = BLK_HASH_BLAKE2B_256;
	REQUIRE(blk_head_sign(&h, sk) == 0);
	CHECK(blk_head_encode(&h, buf, sizeof(buf), &full) == 0);
	CHECK(full < BLK_HEAD_MAX_BYTES);
	printf("largest head: %zu bytes\n", full);
	for (size_t cap = 0; cap < full; cap++)
		CHECK(blk_head_encode(&h, buf, cap, &len) == -ENOBUFS &&
		      len == 0);
	CHECK(blk_head_decode(&got, buf, full) == 0 && head_equal(&got, &h));
	CHECK(blk_head_verify(&got, pk) == 0);

	/* The chain rule on the writing side. */
	h.seq = 1;
	CHECK(blk_head_sign(&h, sk) == -EINVAL);
	CHECK(blk_head_encode(&h, buf, sizeof(buf), &len) == -EINVAL);
	h.seq = 0;
	h.has_parent = false;
	CHECK(blk_head_sign(&h, sk) == -EINVAL);
	h.seq = 3;
	CHECK(blk_head_encode(&h, buf, sizeof(buf), &len) == -EINVAL);
}

static void *sign_many(void *arg)
{
	struct blk_head h;
	intptr_t bad = 0;

	make_head(&h);
	for (int i = 0; i < 50; i++) {
		h.seq = 2 + (uint64_t)i;
		if (blk_head_sign(&h, sk) != 0 || blk_head_verify(&h, pk) != 0)
			bad++;
	}
	return (void *)bad;
}

static void test_threads(void)
{
	pthread_t t[4];

	for (int i = 0; i < 4; i++)
		REQUIRE(pthread_create(&t[i], NULL, sign_many, NULL) == 0);
	for (int i = 0; i < 4; i++) {
		void *bad;

		REQUIRE(pthread_join(t[i], &bad) == 0);
		CHECK(bad == NULL);
	}
}

int main(void)
{
	make_keys();
	test_vectors();
	test_tamper_fields();
	test_tamper_bytes();
	test_malformed();
	test_encode_limits();
	test_threads();
	printf("head: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
