/* Fragment framing: the header every fragment carries on the wire and on a
 * node's disk (DESIGN.md §3).
 *
 * A block coded as K+M gives K+M fragments; for replicas:N (K=1, M=N-1)
 * every fragment is a full copy of the block. Each fragment travels and is
 * stored as a 64-byte header followed by frag_len bytes.
 *
 * Header layout, little-endian, version 1:
 *   off len field
 *     0   4 magic "BFRG"
 *     4   1 version (1)
 *     5   1 k          (1..32)
 *     6   1 m          (0..32, k+m <= 64)
 *     7   1 index      (0..k+m-1)
 *     8   4 block_len  (length of the whole block, 1..BLK_MAX)
 *    12   4 frag_len   (bytes that follow the header)
 *    16   4 type       (blk_cid_type: multicodec,
 *                       hash function << 16)
 *    20   4 flags      (0; readers reject unknown bits)
 *    24  32 digest     (the CID's digest)
 *    56   8 checksum   XXH3-64 of the fragment bytes, seeded with
 *                      XXH3-64 of header bytes [0, 56)
 *
 * The checksum is a fast one that catches bit rot and torn writes at the
 * node (nodes check it on put and on get); the cryptographic check is the
 * CID of the decoded block, which every reader verifies. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"

#define EC_FRAG_HDR_LEN 64
#define EC_FRAG_VERSION 1
#define EC_MAX_K 32
#define EC_MAX_M 32
#define EC_MAX_FRAGS 64
#define EC_MAX_BLOCK (64u << 20) /* largest block a fragment may describe */

struct ec_frag_hdr {
	uint8_t k, m, index;
	uint32_t block_len;
	uint32_t frag_len;
	struct blk_cid cid;
	uint64_t checksum;
};

/* Fill in h->checksum over @data (h->frag_len bytes) and write the 64-byte
 * header into @out. */
void ec_frag_hdr_seal(struct ec_frag_hdr *h, const void *data,
		      uint8_t out[EC_FRAG_HDR_LEN]);

/* Parse and validate a header: magic, version, flags, k/m/index ranges,
 * lengths. Returns 0 or -EPROTO (not a fragment header, or an unknown
 * version) / -EINVAL (fields out of range). Does not check the checksum. */
int ec_frag_hdr_parse(const uint8_t *buf, size_t len, struct ec_frag_hdr *h);

/* Check the bytes against a parsed header: length and checksum.
 * 0 or -EBADMSG. */
int ec_frag_verify(const struct ec_frag_hdr *h, const void *data, size_t len);
