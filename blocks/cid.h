/* CIDv1 content identifiers with a sha2-256 (or, for blocks written before
 * sha2-256 was the default, blake2b-256) multihash: computing, binary and
 * base32 multibase text forms (as IPFS prints them), and the fixed-size
 * type word the wire and the fragment store carry. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Multicodecs used by blockfs (https://github.com/multiformats/multicodec). */
#define BLK_CODEC_RAW 0x55	/* leaves: raw file data */
#define BLK_CODEC_DAG_PB 0x70	/* UnixFS files and directories */
#define BLK_CODEC_DAG_CBOR 0x71 /* attributes and heads */

/* Multihash function codes. */
#define BLK_MH_SHA2_256 0x12
#define BLK_MH_BLAKE2B_256 0xb220
#define BLK_DIGEST_LEN 32

/* The hash functions a CID may name. The values are blockfs's own (they go
 * into the type word, below); 0 is blake2b-256 because every CID stored
 * before there was a choice was one. */
enum blk_hash {
	BLK_HASH_BLAKE2B_256 = 0,
	BLK_HASH_SHA2_256 = 1,
};
#define BLK_HASH_DEFAULT BLK_HASH_SHA2_256

/* Binary CIDv1: varint(1) varint(codec) varint(mh code) varint(32) digest.
 * With the codecs above this is 36 bytes (sha2-256) or 38 (blake2b-256). */
#define BLK_CID_MAX_BYTES 48
/* Text: 'b' + lower-case RFC 4648 base32 without padding of the binary form,
 * plus the terminating NUL. */
#define BLK_CID_STR_MAX 80

struct blk_cid {
	uint64_t codec;
	enum blk_hash hash;
	uint8_t digest[BLK_DIGEST_LEN];
};

/* Hash @len bytes at @data with sha2-256 (OpenSSL's libcrypto, which uses
 * the CPU's SHA extensions) and fill @out with @codec. Never fails. */
void blk_cid_compute(struct blk_cid *out, uint64_t codec, const void *data,
		     size_t len);

/* The same with the hash function @hash. */
void blk_cid_compute_hash(struct blk_cid *out, enum blk_hash hash,
			  uint64_t codec, const void *data, size_t len);

/* True if @data hashes to @cid's digest with @cid's hash function. */
bool blk_cid_verify(const struct blk_cid *cid, const void *data, size_t len);

bool blk_cid_equal(const struct blk_cid *a, const struct blk_cid *b);

/* Write the binary form into @buf (at least BLK_CID_MAX_BYTES).
 * Returns the number of bytes written. */
size_t blk_cid_to_bytes(const struct blk_cid *cid, uint8_t *buf);

/* Parse a binary CID of exactly @len bytes. Returns 0, or -EINVAL when it is
 * not a CIDv1 with a 32-byte sha2-256 or blake2b-256 multihash (trailing
 * bytes, truncated varints and overlong varints included). */
int blk_cid_from_bytes(struct blk_cid *out, const uint8_t *buf, size_t len);

/* The type word: the fixed-size form of everything in a CID but its digest,
 * as the wire's fragment reference (net/wire/proto.h), the fragment header
 * (ec/fragment.h) and the fragment store's keys carry it. Bits 0-15: the
 * multicodec; bits 16-31: enum blk_hash. A word with 0 in bits 16-31 is
 * what every node wrote before sha2-256 (a multicodec alone, blake2b-256),
 * so stored fragments keep their names. */
uint32_t blk_cid_type(const struct blk_cid *cid);

/* Set @cid's codec and hash from a type word: 0, or -EINVAL when the hash
 * bits name no known function (the codec is the caller's to check). */
int blk_cid_set_type(struct blk_cid *cid, uint32_t type);

/* Name of a hash function as cluster files write it ("sha2-256",
 * "blake2b-256"), and back: 0 or -EINVAL. */
const char *blk_hash_name(enum blk_hash hash);
int blk_hash_from_name(const char *name, enum blk_hash *out);

/* Format as NUL-terminated base32 multibase text ("bafkrei…") into @buf
 * (at least BLK_CID_STR_MAX). Returns the string length. */
size_t blk_cid_to_string(const struct blk_cid *cid, char *buf);

/* Parse base32 multibase text. Returns 0 or -EINVAL. */
int blk_cid_from_string(struct blk_cid *out, const char *str);

/* Unsigned LEB128 varints as multiformats use them (at most 9 bytes).
 * blk_varint_put returns the bytes written; blk_varint_get returns the bytes
 * consumed, or -EINVAL on truncation, overlong or non-minimal encoding. */
size_t blk_varint_put(uint8_t *buf, uint64_t v);
int blk_varint_get(const uint8_t *buf, size_t len, uint64_t *v);
