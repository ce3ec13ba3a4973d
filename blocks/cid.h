/* CIDv1 content identifiers with a blake2b-256 multihash: computing,
 * binary and base32 multibase text forms (as IPFS prints them). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Multicodecs used by blockfs (https://github.com/multiformats/multicodec). */
#define BLK_CODEC_RAW 0x55	/* leaves: raw file data */
#define BLK_CODEC_DAG_PB 0x70	/* UnixFS file nodes */
#define BLK_CODEC_DAG_CBOR 0x71 /* directories and heads */

#define BLK_MH_BLAKE2B_256 0xb220
#define BLK_DIGEST_LEN 32

/* Binary CIDv1: varint(1) varint(codec) varint(0xb220) varint(32) digest.
 * With the codecs above this is exactly 38 bytes. */
#define BLK_CID_MAX_BYTES 48
/* Text: 'b' + lower-case RFC 4648 base32 without padding of the binary form,
 * plus the terminating NUL. */
#define BLK_CID_STR_MAX 80

struct blk_cid {
	uint64_t codec;
	uint8_t digest[BLK_DIGEST_LEN];
};

/* Hash @len bytes at @data with BLAKE2b-256 and fill @out with @codec.
 * Never fails. */
void blk_cid_compute(struct blk_cid *out, uint64_t codec, const void *data,
		     size_t len);

/* True if @data hashes to @cid's digest. */
bool blk_cid_verify(const struct blk_cid *cid, const void *data, size_t len);

bool blk_cid_equal(const struct blk_cid *a, const struct blk_cid *b);

/* Write the binary form into @buf (at least BLK_CID_MAX_BYTES).
 * Returns the number of bytes written. */
size_t blk_cid_to_bytes(const struct blk_cid *cid, uint8_t *buf);

/* Parse a binary CID of exactly @len bytes. Returns 0, or -EINVAL when it is
 * not a CIDv1 with a 32-byte blake2b-256 multihash (trailing bytes, truncated
 * varints and overlong varints included). */
int blk_cid_from_bytes(struct blk_cid *out, const uint8_t *buf, size_t len);

/* Format as NUL-terminated base32 multibase text ("bafk2bz…") into @buf
 * (at least BLK_CID_STR_MAX). Returns the string length. */
size_t blk_cid_to_string(const struct blk_cid *cid, char *buf);

/* Parse base32 multibase text. Returns 0 or -EINVAL. */
int blk_cid_from_string(struct blk_cid *out, const char *str);

/* Unsigned LEB128 varints as multiformats use them (at most 9 bytes).
 * blk_varint_put returns the bytes written; blk_varint_get returns the bytes
 * consumed, or -EINVAL on truncation, overlong or non-minimal encoding. */
size_t blk_varint_put(uint8_t *buf, uint64_t v);
int blk_varint_get(const uint8_t *buf, size_t len, uint64_t *v);
