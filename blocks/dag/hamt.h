/* UnixFS HAMT-sharded directories as ipfs-unixfs-importer writes them
 * (dir-sharded.ts over hamt-sharding): building a HAMT from a directory's
 * entries, and reading one shard by shard. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/dag/dir.h"

/*
 * The layout (hamt-sharding 3.0 Bucket, importer 17.1 flush()):
 *
 * 1. Every entry's name is hashed once: h = blk_murmur3_x64_64(name). The
 *    shard at depth d (the root shard is depth 0) puts an entry in slot
 *      (h >> (56 - 8 * d)) & 0xff,
 *    so 64 bits give at most BLK_HAMT_MAX_DEPTH (8) levels of shards.
 * 2. A slot holds one entry or one sub-shard. Inserting into a slot held by
 *    another entry makes a sub-shard at depth d + 1 holding both (again,
 *    recursively, while their next bytes are equal). So, with inserts only
 *    (the importer never deletes), the HAMT does not depend on the order:
 *    an entry sits in the shallowest shard where no other entry shares its
 *    slot path, and a sub-shard exists exactly where two or more entries
 *    share the path to it (a sub-shard may then hold a single sub-shard).
 * 3. Links of a shard, one per used slot, in slot order (which is also
 *    their name order, as dag-pb wants):
 *      entry:     Name = XX + the entry's name, Hash = its CID, Tsize = its
 *                 Tsize;
 *      sub-shard: Name = XX, Hash = the sub-shard's CID, Tsize = its Tsize;
 *    XX is the slot in two upper-case hex digits (padded to the digits of
 *    fanout - 1: 2 for 256).
 * 4. Data = UnixFS { Type HAMTShard, Data = bitfield, hashType 0x22,
 *    fanout 256, mode and mtime on the root shard only }. The bitfield has
 *    bit s set for every used slot s: it is the 256-bit integer
 *    sum(2^s) written big-endian in as few bytes as it takes (no leading
 *    zero byte): sparse-array's bitField() bytes, least significant
 *    first without trailing zeros, which the importer reverses.
 * 5. A shard's Tsize is its block's bytes plus its links' Tsizes.
 *
 * The reader checks every shard it decodes: dag-pb and UnixFS strictly
 * (pb.h, unixfs.h), Type HAMTShard, fanout 256, hashType 0x22, a bitfield
 * of at most 32 bytes (leading zero bytes tolerated, though the importer
 * writes none) with as many bits set as there are links, each link's
 * name two upper-case hex digits of a set slot (in increasing order, one
 * link per slot) plus, for an entry, a valid name (blk_dag_name_valid)
 * whose hash puts it in this very shard and slot; a sub-shard link (name
 * of exactly two digits) must be dag-pb and not below depth 7; a sub-shard
 * must have at least one link. mode and mtime are read from the root shard
 * only.
 */

#define BLK_HAMT_FANOUT 256
#define BLK_HAMT_MAX_DEPTH 8

/* One entry to place in a HAMT. @name and @cid view the caller's. */
struct blk_hamt_ent {
	uint64_t hash; /* blk_murmur3_x64_64(name) */
	const uint8_t *name;
	size_t name_len;
	const struct blk_cid *cid;
	uint64_t tsize;
};

/* Sort @ents by hash, then name: the order blk_hamt_build wants.
 * Returns 0 or -ENOMEM (@ents unchanged). */
int blk_hamt_sort(struct blk_hamt_ent *ents, size_t n);

/* Build the HAMT of the @n entries @ents (sorted by blk_hamt_sort, @n may
 * be 0: an empty root shard), @meta on the root shard (NULL for none),
 * the shards' CIDs hashed with @hash, emitting every shard bottom-up
 * (@emit may be NULL), the root last, and give the root's CID
 * and Tsize. Returns 0, -EEXIST (two entries with the same name),
 * -EOVERFLOW (two names with the same 64-bit hash), -EINVAL (@meta's
 * mtime_nsec), -ENOMEM, or what @emit returned. */
int blk_hamt_build(const struct blk_hamt_ent *ents, size_t n,
		   const struct blk_dag_file_meta *meta, enum blk_hash hash,
		   blk_dag_emit_fn emit, void *ctx, struct blk_cid *root,
		   uint64_t *tsize);

/* The entries of the HAMT whose root shard is @block (@len bytes, already
 * decoded as a HAMT root by the caller or not), fetching sub-shards with
 * @r, depth first in slot order. As blk_dag_dir_each. */
int blk_hamt_each(const struct blk_dag_dir_reader *r, const uint8_t *block,
		  size_t len, blk_dag_dirent_fn fn, void *arg);

/* Look @name up in the HAMT whose root shard is @block. As
 * blk_dag_dir_lookup. */
int blk_hamt_lookup(const struct blk_dag_dir_reader *r, const uint8_t *block,
		    size_t len, const uint8_t *name, size_t name_len,
		    struct blk_dag_dirent *out);

/* Set (@cid not NULL) or remove (@cid NULL) the entry @name (@len bytes)
 * -> @cid, @tsize in the HAMT whose root shard is @root, fetching with @r
 * only the shards on the name's path, and emit only those shards again
 * (and the sub-shards a split makes), bottom-up, with @meta on the root
 * and CIDs hashed with @hash; give the new root's CID and Tsize. The
 * result is the HAMT blk_hamt_build makes from the updated entries (rule
 * 2: a slot taken by another name becomes a sub-shard; a shard below the
 * root left with one entry is replaced by it). The caller decides whether
 * the directory should still be a HAMT (dir.h rule 2). Returns 0, -ENOENT
 * (removing a name that is not there), -ENOTDIR (@root is not a HAMT),
 * -EBADMSG (a malformed shard on the path), -EOVERFLOW (the 64-bit hash of
 * @name equals another name's), -EINVAL (a bad name, Tsize, hash or
 * mtime), -ENOMEM, or what @r->fetch or @emit returned. */
int blk_hamt_update(const struct blk_dag_dir_reader *r,
		    const struct blk_cid *root, const uint8_t *name, size_t len,
		    const struct blk_cid *cid, uint64_t tsize,
		    const struct blk_dag_file_meta *meta, enum blk_hash hash,
		    blk_dag_emit_fn emit, void *ctx, struct blk_cid *new_root,
		    uint64_t *new_tsize);

/* Check the root shard @block (@len bytes) as the reader does, not its
 * sub-shards, and fill @meta (may be NULL) with its mode and mtime.
 * Returns 0, -ENOTDIR (a valid UnixFS node, not a shard), or -EBADMSG. */
int blk_hamt_check_root(const uint8_t *block, size_t len,
			struct blk_dag_file_meta *meta);
