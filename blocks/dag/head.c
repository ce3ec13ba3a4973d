/* The head record: encoding, strict decoding, signing and verifying.
 *
 * Invariants:
 *  1. The keys are written and read in one fixed order, the DAG-CBOR
 *     order of head.h; decoding accepts exactly that key sequence, with
 *     "sig" the only key that may be missing (an unsigned head).
 *  2. seq >= 1, and "parent" is null exactly when seq == 1: the first head
 *     of a filesystem has no parent and every later one has.
 *  3. The signature covers BLK_HEAD_SIG_DOMAIN (with its NUL) followed by
 *     the encoding of the map without "sig"; a decoded head re-encodes to
 *     the bytes it came from, so signer and verifier sign the same bytes. */
#include "blocks/dag/head.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "blocks/dag/cbor.h"

#define HEAD_KEYS 10
/* The signed message: the domain and the unsigned encoding. */
#define SIGNED_MAX (BLK_HEAD_SIG_DOMAIN_LEN + BLK_HEAD_MAX_BYTES)

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_status;

static void sodium_start(void)
{
	sodium_status = sodium_init() < 0 ? -EIO : 0;
}

static int sodium_ready(void)
{
	pthread_once(&sodium_once, sodium_start);
	return sodium_status;
}

/* Invariant 2. */
static bool head_chain_ok(const struct blk_head *h)
{
	return h->seq >= 1 && h->has_parent == (h->seq > 1);
}

/* Write @h into @e, with "sig" when @with_sig (invariant 1). */
static int head_write(struct blk_cbor_enc *e, const struct blk_head *h,
		      bool with_sig)
{
	blk_cbor_put_map(e, with_sig ? HEAD_KEYS : HEAD_KEYS - 1);
	blk_cbor_put_key(e, "v");
	blk_cbor_put_uint(e, BLK_HEAD_VERSION);
	blk_cbor_put_key(e, "fs");
	blk_cbor_put_bytes(e, h->fs, sizeof(h->fs));
	blk_cbor_put_key(e, "seq");
	blk_cbor_put_uint(e, h->seq);
	if (with_sig) {
		blk_cbor_put_key(e, "sig");
		blk_cbor_put_bytes(e, h->sig, sizeof(h->sig));
	}
	blk_cbor_put_key(e, "root");
	blk_cbor_put_cid(e, &h->root);
	blk_cbor_put_key(e, "time");
	blk_cbor_put_uint(e, h->time_ns);
	blk_cbor_put_key(e, "attrs");
	blk_cbor_put_cid(e, &h->attrs);
	blk_cbor_put_key(e, "lease");
	blk_cbor_put_uint(e, h->lease_ns);
	blk_cbor_put_key(e, "parent");
	if (h->has_parent)
		blk_cbor_put_cid(e, &h->parent);
	else
		blk_cbor_put_null(e);
	blk_cbor_put_key(e, "writer");
	return blk_cbor_put_bytes(e, h->writer, sizeof(h->writer));
}

/* The signed message of @h into @msg (SIGNED_MAX bytes). */
static int head_message(const struct blk_head *h, uint8_t *msg, size_t *len)
{
	struct blk_cbor_enc e;
	size_t n;
	int ret;

	memcpy(msg, BLK_HEAD_SIG_DOMAIN, BLK_HEAD_SIG_DOMAIN_LEN);
	blk_cbor_enc_init(&e, msg + BLK_HEAD_SIG_DOMAIN_LEN,
			  SIGNED_MAX - BLK_HEAD_SIG_DOMAIN_LEN);
	head_write(&e, h, false);
	ret = blk_cbor_enc_finish(&e, &n);
	*len = BLK_HEAD_SIG_DOMAIN_LEN + n;
	return ret;
}

int blk_head_sign(struct blk_head *h, const uint8_t sk[64])
{
	uint8_t msg[SIGNED_MAX];
	size_t len;
	int ret = sodium_ready();

	if (ret < 0)
		return ret;
	if (!head_chain_ok(h))
		return -EINVAL;
	ret = head_message(h, msg, &len);
	if (ret < 0)
		return -EINVAL;
	crypto_sign_detached(h->sig, NULL, msg, len, sk);
	return 0;
}

int blk_head_encode(const struct blk_head *h, uint8_t *buf, size_t cap,
		    size_t *len)
{
	struct blk_cbor_enc e;

	*len = 0;
	if (!head_chain_ok(h))
		return -EINVAL;
	blk_cbor_enc_init(&e, buf, cap);
	head_write(&e, h, true);
	return blk_cbor_enc_finish(&e, len);
}

/* Read a byte string of exactly @len bytes into @out. */
static int get_fixed(struct blk_cbor_dec *d, void *out, size_t len)
{
	const uint8_t *p;
	size_t n;

	if (blk_cbor_get_bytes(d, &p, &n) < 0)
		return -EBADMSG;
	if (n != len)
		return blk_cbor_fail(d);
	memcpy(out, p, len);
	return 0;
}

/* Read the value of key "parent": a CID or null. */
static int get_parent(struct blk_cbor_dec *d, struct blk_head *h)
{
	enum blk_cbor_type t;

	if (blk_cbor_peek(d, &t) < 0)
		return -EBADMSG;
	h->has_parent = t == BLK_CBOR_CID;
	if (h->has_parent)
		return blk_cbor_get_cid(d, &h->parent);
	return blk_cbor_get_null(d);
}

int blk_head_decode(struct blk_head *h, const uint8_t *buf, size_t len)
{
	struct blk_cbor_dec d;
	uint64_t v = 0;
	size_t n = 0;
	bool has_sig;

	memset(h, 0, sizeof(*h));
	blk_cbor_dec_init(&d, buf, len);
	if (len > BLK_HEAD_MAX_BYTES || blk_cbor_get_map(&d, &n) < 0)
		return -EBADMSG;
	if (n != HEAD_KEYS && n != HEAD_KEYS - 1)
		return -EBADMSG;
	has_sig = n == HEAD_KEYS;
	/* The decoder's error is sticky: check once, after the last key. */
	blk_cbor_expect_key(&d, "v");
	blk_cbor_get_uint(&d, &v);
	blk_cbor_expect_key(&d, "fs");
	get_fixed(&d, h->fs, sizeof(h->fs));
	blk_cbor_expect_key(&d, "seq");
	blk_cbor_get_uint(&d, &h->seq);
	if (has_sig) {
		blk_cbor_expect_key(&d, "sig");
		get_fixed(&d, h->sig, sizeof(h->sig));
	}
	blk_cbor_expect_key(&d, "root");
	blk_cbor_get_cid(&d, &h->root);
	blk_cbor_expect_key(&d, "time");
	blk_cbor_get_uint(&d, &h->time_ns);
	blk_cbor_expect_key(&d, "attrs");
	blk_cbor_get_cid(&d, &h->attrs);
	blk_cbor_expect_key(&d, "lease");
	blk_cbor_get_uint(&d, &h->lease_ns);
	blk_cbor_expect_key(&d, "parent");
	get_parent(&d, h);
	blk_cbor_expect_key(&d, "writer");
	if (get_fixed(&d, h->writer, sizeof(h->writer)) < 0 ||
	    blk_cbor_dec_finish(&d) < 0 || v != BLK_HEAD_VERSION ||
	    !head_chain_ok(h)) {
		memset(h, 0, sizeof(*h));
		return -EBADMSG;
	}
	return has_sig ? 0 : -ENOKEY;
}

int blk_head_verify(const struct blk_head *h, const uint8_t pk[32])
{
	uint8_t msg[SIGNED_MAX];
	size_t len;

	if (sodium_ready() < 0 || head_message(h, msg, &len) < 0)
		return -EBADMSG;
	if (crypto_sign_verify_detached(h->sig, msg, len, pk) != 0)
		return -EBADMSG;
	return 0;
}

void blk_head_cid(const uint8_t *buf, size_t len, struct blk_cid *out)
{
	blk_cid_compute(out, BLK_CODEC_DAG_CBOR, buf, len);
}
