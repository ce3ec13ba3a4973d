/* CIDv1 content identifiers with a sha2-256 or blake2b-256 multihash:
 * hashing, varints, the type word, and the binary and base32 multibase
 * text forms. */

/*
 * Invariants:
 *  1. Every form has exactly one accepted encoding: parsers accept only what
 *     the formatters produce (minimal varints, lower-case base32 with zero
 *     trailing bits, no padding, no trailing bytes), so
 *     to_bytes(from_bytes(b)) == b and to_string(from_string(s)) == s.
 *  2. Parsers read only within the bounds they are given, and write @out only
 *     on success.
 *  3. Varints follow the multiformats unsigned-varint spec: at most 9 bytes,
 *     so values up to 2^63 - 1. Encoding a larger value is a caller bug.
 */

#include "blocks/cid.h"

#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define VARINT_MAX_BYTES 9
#define VARINT_MAX_VALUE (UINT64_MAX >> 1)

#define MULTIBASE_BASE32 'b'

/* Longest base32 text (without prefix) that can decode to a binary CID. */
#define BASE32_MAX_CHARS ((BLK_CID_MAX_BYTES * 8 + 4) / 5)

static const char base32_alphabet[32] = "abcdefghijklmnopqrstuvwxyz234567";

static pthread_once_t hash_once = PTHREAD_ONCE_INIT;
/* OpenSSL's sha2-256, fetched once: EVP_Digest with an implicit fetch per
 * call costs a provider lookup per block. */
static EVP_MD *sha256_md;

static void hash_init_once(void)
{
	/* sodium_init failing (-1) leaves libsodium on its portable code;
	 * crypto_generichash works either way. */
	if (sodium_init() < 0) {
		/* nothing to do */
	}
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void sha2_256(uint8_t out[BLK_DIGEST_LEN], const void *data, size_t len)
{
	unsigned int n = BLK_DIGEST_LEN;

	/* The default provider's sha2-256 cannot fail for a fetched digest
	 * and a 32-byte output: failing here is a broken libcrypto. */
	if (!sha256_md || !EVP_Digest(data, len, out, &n, sha256_md, NULL) ||
	    n != BLK_DIGEST_LEN)
		abort();
}

void blk_cid_compute_hash(struct blk_cid *out, enum blk_hash hash,
			  uint64_t codec, const void *data, size_t len)
{
	pthread_once(&hash_once, hash_init_once);
	out->codec = codec;
	out->hash = hash;
	if (hash == BLK_HASH_SHA2_256) {
		sha2_256(out->digest, data, len);
		return;
	}
	assert(hash == BLK_HASH_BLAKE2B_256);
	/* Cannot fail: the output length is valid and there is no key. */
	crypto_generichash(out->digest, sizeof(out->digest), data, len, NULL,
			   0);
}

void blk_cid_compute(struct blk_cid *out, uint64_t codec, const void *data,
		     size_t len)
{
	blk_cid_compute_hash(out, BLK_HASH_DEFAULT, codec, data, len);
}

bool blk_cid_verify(const struct blk_cid *cid, const void *data, size_t len)
{
	struct blk_cid got;

	if (cid->hash != BLK_HASH_SHA2_256 && cid->hash != BLK_HASH_BLAKE2B_256)
		return false;
	blk_cid_compute_hash(&got, cid->hash, cid->codec, data, len);
	return sodium_memcmp(got.digest, cid->digest, BLK_DIGEST_LEN) == 0;
}

bool blk_cid_equal(const struct blk_cid *a, const struct blk_cid *b)
{
	return a->codec == b->codec && a->hash == b->hash &&
	       memcmp(a->digest, b->digest, BLK_DIGEST_LEN) == 0;
}

uint32_t blk_cid_type(const struct blk_cid *cid)
{
	return (uint32_t)(cid->codec & 0xffff) | (uint32_t)cid->hash << 16;
}

int blk_cid_set_type(struct blk_cid *cid, uint32_t type)
{
	uint32_t hash = type >> 16;

	if (hash != BLK_HASH_BLAKE2B_256 && hash != BLK_HASH_SHA2_256)
		return -EINVAL;
	cid->codec = type & 0xffff;
	cid->hash = (enum blk_hash)hash;
	return 0;
}

const char *blk_hash_name(enum blk_hash hash)
{
	return hash == BLK_HASH_SHA2_256 ? "sha2-256" : "blake2b-256";
}

int blk_hash_from_name(const char *name, enum blk_hash *out)
{
	if (strcmp(name, "sha2-256") == 0)
		*out = BLK_HASH_SHA2_256;
	else if (strcmp(name, "blake2b-256") == 0)
		*out = BLK_HASH_BLAKE2B_256;
	else
		return -EINVAL;
	return 0;
}

/* The multihash code of a hash function. */
static uint64_t mh_code(enum blk_hash hash)
{
	return hash == BLK_HASH_SHA2_256 ? BLK_MH_SHA2_256 : BLK_MH_BLAKE2B_256;
}

size_t blk_varint_put(uint8_t *buf, uint64_t v)
{
	size_t n = 0;

	assert(v <= VARINT_MAX_VALUE);
	while (v >= 0x80) {
		buf[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	buf[n++] = (uint8_t)v;
	return n;
}

int blk_varint_get(const uint8_t *buf, size_t len, uint64_t *v)
{
	uint64_t value = 0;
	size_t i;

	for (i = 0; i < len && i < VARINT_MAX_BYTES; i++) {
		uint8_t b = buf[i];

		value |= (uint64_t)(b & 0x7f) << (7 * i);
		if (b & 0x80)
			continue;
		/* A zero final byte after the first is a non-minimal
		 * encoding of a shorter varint. */
		if (b == 0 && i > 0)
			return -EINVAL;
		*v = value;
		return (int)(i + 1);
	}
	/* Truncated, or a continuation bit on the ninth byte. */
	return -EINVAL;
}

/* Read one varint at *@pos, advancing it. Returns 0 or -EINVAL. */
static int read_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *v)
{
	int n = blk_varint_get(buf + *pos, len - *pos, v);

	if (n < 0)
		return n;
	*pos += (size_t)n;
	return 0;
}

size_t blk_cid_to_bytes(const struct blk_cid *cid, uint8_t *buf)
{
	size_t n = 0;

	n += blk_varint_put(buf + n, 1);
	n += blk_varint_put(buf + n, cid->codec);
	n += blk_varint_put(buf + n, mh_code(cid->hash));
	n += blk_varint_put(buf + n, BLK_DIGEST_LEN);
	memcpy(buf + n, cid->digest, BLK_DIGEST_LEN);
	return n + BLK_DIGEST_LEN;
}

int blk_cid_from_bytes(struct blk_cid *out, const uint8_t *buf, size_t len)
{
	uint64_t version, codec, mh, mh_len;
	size_t pos = 0;

	if (read_varint(buf, len, &pos, &version) < 0 || version != 1)
		return -EINVAL;
	if (read_varint(buf, len, &pos, &codec) < 0)
		return -EINVAL;
	if (read_varint(buf, len, &pos, &mh) < 0 ||
	    (mh != BLK_MH_SHA2_256 && mh != BLK_MH_BLAKE2B_256))
		return -EINVAL;
	if (read_varint(buf, len, &pos, &mh_len) < 0 ||
	    mh_len != BLK_DIGEST_LEN)
		return -EINVAL;
	if (len - pos != BLK_DIGEST_LEN)
		return -EINVAL;

	out->codec = codec;
	out->hash =
	    mh == BLK_MH_SHA2_256 ? BLK_HASH_SHA2_256 : BLK_HASH_BLAKE2B_256;
	memcpy(out->digest, buf + pos, BLK_DIGEST_LEN);
	return 0;
}

size_t blk_cid_to_string(const struct blk_cid *cid, char *buf)
{
	uint8_t bin[BLK_CID_MAX_BYTES];
	size_t len = blk_cid_to_bytes(cid, bin);
	size_t i, n = 0;
	unsigned int bits = 0;
	uint32_t acc = 0;

	buf[n++] = MULTIBASE_BASE32;
	for (i = 0; i < len; i++) {
		acc = (acc << 8) | bin[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			buf[n++] = base32_alphabet[(acc >> bits) & 31];
		}
	}
	if (bits > 0)
		buf[n++] = base32_alphabet[(acc << (5 - bits)) & 31];
	buf[n] = '\0';
	return n;
}

/* The value of one lower-case RFC 4648 base32 character, or -1. */
static int base32_value(char c)
{
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

int blk_cid_from_string(struct blk_cid *out, const char *str)
{
	uint8_t bin[BLK_CID_MAX_BYTES];
	size_t i, n, len = 0;
	unsigned int bits = 0;
	uint32_t acc = 0;

	if (str[0] != MULTIBASE_BASE32)
		return -EINVAL;
	str++;
	n = strnlen(str, BASE32_MAX_CHARS + 1);
	if (n > BASE32_MAX_CHARS)
		return -EINVAL;

	for (i = 0; i < n; i++) {
		int v = base32_value(str[i]);

		if (v < 0)
			return -EINVAL;
		acc = (acc << 5) | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			bin[len++] = (uint8_t)(acc >> bits);
		}
	}
	/* Unpadded base32 ends with fewer than 5 spare bits, all zero;
	 * anything else is not what an encoder writes. */
	if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0)
		return -EINVAL;

	return blk_cid_from_bytes(out, bin, len);
}
