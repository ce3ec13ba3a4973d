/* Erasure-coding codec: one object per K+M that splits a block into K data
 * fragments and M parity fragments, and rebuilds the block from any K of them
 * (DESIGN.md §1, §3). K = 1 is replication: every fragment is a plain copy.
 *
 * A codec is built once per (K, M) and reused. It holds no per-call state:
 * one object may be used from any number of threads at once (decoding
 * schedules are cached per erasure pattern under the object's own lock).
 * Every call returns 0 or a negative errno. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "ec/fragment.h"

struct ec_codec;

/* Build the codec for @k data and @m parity fragments,
 * 1 <= k <= EC_MAX_K, 0 <= m <= EC_MAX_M. Returns 0 and sets *out, or
 * -EINVAL (k or m out of range) / -ENOMEM. */
int ec_codec_new(unsigned k, unsigned m, struct ec_codec **out);

/* Free a codec; NULL is ignored. No call may be running on it. */
void ec_codec_free(struct ec_codec *c);

unsigned ec_codec_k(const struct ec_codec *c);
unsigned ec_codec_m(const struct ec_codec *c);

/* Bytes in each fragment of a block of @block_len bytes. Depends on k and
 * @block_len only (never on the machine or the library version), since
 * nodes and readers recompute it:
 *   k == 1: block_len (replicas are plain copies);
 *   k > 1:  ceil(block_len / k) rounded up to a multiple of
 *           EC_FRAG_ALIGN, i.e. at most 127 bytes of padding per fragment.
 * 0 for a block_len of 0. */
size_t ec_frag_size(const struct ec_codec *c, size_t block_len);

/* Granularity of fragment sizes for k > 1: w (8) packets of 16 bytes. */
#define EC_FRAG_ALIGN 128

/* Encode @block_len bytes at @block into k + m fragments: @frags[i]
 * (i < k + m) are the caller's buffers of ec_frag_size() bytes each, at any
 * alignment, not overlapping @block or each other. Data fragments
 * (i < k) are the block split in order, the last ones zero-padded; parity
 * fragments follow. Returns 0, or -EINVAL when @block_len is 0 or larger
 * than EC_MAX_BLOCK or a fragment pointer is NULL. */
int ec_encode(struct ec_codec *c, const void *block, size_t block_len,
	      uint8_t *const frags[]);

/* Rebuild the block of @block_len bytes into @block from the fragments at
 * hand: @frags[i] (i < k + m) holds fragment i (ec_frag_size() bytes) or is
 * NULL when it is missing. Any k fragments suffice; when all k data
 * fragments are present the block is just copied out of them. Fragments are
 * only read, never written. The decoded bytes are right only if the
 * fragments are: check each with ec_frag_verify() first, and the block
 * against its CID after. Returns 0, -EIO (fewer than k fragments),
 * -EINVAL (@block_len 0 or larger than EC_MAX_BLOCK) or -ENOMEM. */
int ec_decode(struct ec_codec *c, uint8_t *const frags[], size_t block_len,
	      void *block);

/* Encode a block named @cid (the caller computed it over @block) and seal
 * every fragment's header (ec/fragment.h): @frags[i] receives fragment i's
 * ec_frag_size() bytes and @hdrs[i] its EC_FRAG_HDR_LEN header bytes, for
 * i < k + m. Returns 0 or what ec_encode() returns; -EINVAL also when
 * @cid's codec is not one a fragment header accepts. */
int ec_encode_frags(struct ec_codec *c, const struct blk_cid *cid,
		    const void *block, size_t block_len, uint8_t *const frags[],
		    uint8_t (*hdrs)[EC_FRAG_HDR_LEN]);
