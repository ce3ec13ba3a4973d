/* dag-pb (multicodec 0x70) PBNode/PBLink: the canonical protobuf encoder and
 * a strict decoder that returns views into the decoded block. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"

/* Largest dag-pb block blockfs encodes or decodes: the most IPFS moves in
 * one block (2 MiB). It holds a one-chunk file with its data inline (FastCDC
 * chunks are at most 1 MiB); a UnixFS directory shards well before it
 * (DESIGN §3); a file node of 174 links is about 8 KiB. */
#define BLK_PB_MAX_BLOCK (2u << 20)

/* Every link takes at least 2 bytes of its node (tag, length): a decoded
 * node never has more links than this. */
#define BLK_PB_MAX_LINKS (BLK_PB_MAX_BLOCK / 2)

/* Largest Tsize: the reference (JavaScript) codec keeps Tsize in a double,
 * exact up to 2^53 - 1. */
#define BLK_PB_MAX_TSIZE ((UINT64_C(1) << 53) - 1)

/* One PBLink. The Hash is required and must be a CID that blk_cid_from_bytes
 * parses (CIDv1; CIDv0 links are refused: blockfs never writes them). Name
 * and Tsize are optional, and "absent" differs from "empty"/"0" in the bytes
 * (the reference encoder writes Name "" and Tsize 0). @name is bytes, not
 * checked for UTF-8: when decoding, a view into the decoded block; when
 * encoding, the caller's bytes. */
struct blk_pb_link {
	struct blk_cid cid;
	const uint8_t *name;
	size_t name_len;
	bool has_name;
	bool has_tsize;
	uint64_t tsize;
};

/* One PBNode: the links, then the optional Data (absent differs from empty:
 * the reference encoder writes an empty Data as a zero-length field). */
struct blk_pb_node {
	const struct blk_pb_link *links;
	size_t n_links;
	const uint8_t *data;
	size_t data_len;
	bool has_data;
};

/* Order of links in a node, as @ipld/dag-pb's linkComparator: by Name bytes
 * (an absent Name sorts as ""), a proper prefix first. Returns <0, 0, >0. */
int blk_pb_link_cmp(const struct blk_pb_link *a, const struct blk_pb_link *b);

/* Sort @links in place by blk_pb_link_cmp, stably (links with equal names
 * keep their order, as JavaScript's Array.prototype.sort). Never fails. */
void blk_pb_sort_links(struct blk_pb_link *links, size_t n);

/* Size of the canonical encoding of @node (whether or not it is valid). */
size_t blk_pb_encoded_size(const struct blk_pb_node *node);

/* Write the canonical encoding of @node into @buf of @cap bytes: each link
 * (Hash, Name, Tsize) in the given order, then Data. Sets *@len to the size
 * of the encoding on success and on -ENOBUFS.
 * Returns 0; -ENOBUFS when @cap is too small (nothing useful in @buf);
 * -EINVAL when the links are not sorted (blk_pb_sort_links), a Tsize is past
 * BLK_PB_MAX_TSIZE, or the encoding is larger than BLK_PB_MAX_BLOCK. */
int blk_pb_encode(const struct blk_pb_node *node, uint8_t *buf, size_t cap,
		  size_t *len);

/* Decode the dag-pb block @buf of @len bytes strictly: only the canonical
 * encoding is accepted, so a block that decodes re-encodes to the same bytes.
 * Refused (-EBADMSG): a block past BLK_PB_MAX_BLOCK, unknown field numbers,
 * wrong wire types, Data before or between links, a second Data, link fields
 * out of order (Hash, Name, Tsize) or repeated, a missing Hash, a Hash that
 * is not a CID blockfs parses, a Tsize past BLK_PB_MAX_TSIZE, links not
 * sorted by name, varints truncated, overlong or not minimal, lengths past
 * the end. On success fills @node: data views @buf, n_links is the number of
 * links in the block, and the first min(n_links, @max_links) links are
 * stored in @links (names view @buf), node->links = @links. @links may be
 * NULL when @max_links is 0 (validation only, or counting).
 * Returns 0 or -EBADMSG. */
int blk_pb_decode(const uint8_t *buf, size_t len, struct blk_pb_node *node,
		  struct blk_pb_link *links, size_t max_links);

/* Walks the links of a block one at a time, for nodes with more links than
 * the caller wants to hold. */
struct blk_pb_iter {
	const uint8_t *buf;
	size_t len;
	size_t pos;
};

/* Validate the whole block as blk_pb_decode does (so the walk cannot fail
 * half-way) and start at its first link. Fills @node (node->links NULL) when
 * it is not NULL. Returns 0 or -EBADMSG. */
int blk_pb_iter_init(struct blk_pb_iter *it, const uint8_t *buf, size_t len,
		     struct blk_pb_node *node);

/* The next link into @link. Returns 1, or 0 after the last link. */
int blk_pb_iter_next(struct blk_pb_iter *it, struct blk_pb_link *link);
