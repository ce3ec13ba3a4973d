/* The head record: the signed DAG-CBOR block naming a filesystem's root,
 * attribute tree, predecessor and writer lease at one sequence number. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"

/* Encoded form of a head record (keys in DAG-CBOR order):
 *   "v"      1
 *   "fs"     bytes(16)   filesystem id
 *   "seq"    uint        1, 2, ... (the first head of a filesystem is 1)
 *   "sig"    bytes(64)   Ed25519 over BLK_HEAD_SIG_DOMAIN || the encoding
 *                        of the same map without "sig"
 *   "root"   CID         UnixFS directory: the filesystem's root
 *   "time"   uint        unix time of the commit, nanoseconds
 *   "attrs"  CID         root of the attribute tree (DAG-CBOR)
 *   "lease"  uint        unix time (ns) until which the writer holds the lease
 *   "parent" CID | null  CID of the previous head block (null for seq 1)
 *   "writer" bytes(32)   the writing node's CURVE public key
 * The head's CID is the dag-cbor CID of the whole encoding (with "sig"). */
#define BLK_HEAD_MAX_BYTES 1024
#define BLK_HEAD_VERSION 1
/* The signature's domain separator: 16 bytes including the final NUL. */
#define BLK_HEAD_SIG_DOMAIN "blockfs-head-v1"
#define BLK_HEAD_SIG_DOMAIN_LEN 16

struct blk_head {
	uint8_t fs[16];
	uint64_t seq;
	uint64_t time_ns;
	struct blk_cid root, attrs;
	bool has_parent;
	struct blk_cid parent;
	uint8_t writer[32];
	uint64_t lease_ns;
	uint8_t sig[64];
};

/* Sign @h with the Ed25519 secret key @sk (libsodium's 64-byte form) and
 * store the signature in h->sig. Returns 0, -EINVAL if @h breaks the chain
 * rule (seq >= 1; a parent exactly when seq > 1), or -EIO if libsodium
 * cannot be initialised. */
int blk_head_sign(struct blk_head *h, const uint8_t sk[64]);

/* Encode @h with its signature into @buf (@cap bytes); the length in *@len.
 * Returns 0, -ENOBUFS when @cap is too small (BLK_HEAD_MAX_BYTES always
 * suffices), or -EINVAL if @h breaks the chain rule (see blk_head_sign). */
int blk_head_encode(const struct blk_head *h, uint8_t *buf, size_t cap,
		    size_t *len);

/* Decode @len bytes at @buf strictly into @h. Returns 0; -ENOKEY when the
 * record is well-formed but has no "sig" (unsigned: h->sig is zeroed);
 * -EBADMSG for anything malformed: unknown or missing keys, wrong types or
 * lengths, non-canonical encoding, trailing bytes, v != 1, seq 0, a
 * parent on seq 1 or none on a later seq. */
int blk_head_decode(struct blk_head *h, const uint8_t *buf, size_t len);

/* Check h->sig against the Ed25519 public key @pk. Returns 0, or -EBADMSG
 * when the signature does not verify. */
int blk_head_verify(const struct blk_head *h, const uint8_t pk[32]);

/* The CID (dag-cbor, sha2-256) of an encoded head record. */
void blk_head_cid(const uint8_t *buf, size_t len, struct blk_cid *out);
