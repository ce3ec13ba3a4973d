/* UnixFS directories as ipfs-unixfs-importer builds them: a builder that
 * turns a directory's entries into one dag-pb node or a HAMT of shards, and
 * a reader that looks names up and lists entries in either form. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/dag/file.h"

/*
 * The rules, as ipfs-unixfs-importer 17.1 (npm; src/dir-flat.ts,
 * dir-sharded.ts, flat-to-shard.ts, tree-builder.ts) and hamt-sharding 3.0
 * apply them with their defaults:
 *
 * 1. A plain directory is one dag-pb node: Data = UnixFS { Type Directory,
 *    mode, mtime } (mode left out when 0755, see unixfs.h), one link per
 *    entry { Hash, Name = the entry's name, Tsize = the entry's Tsize },
 *    links sorted by name bytes (a proper prefix first). Its Tsize is its
 *    block's bytes plus the sum of its links' Tsizes.
 *
 * 2. When to shard (shardSplitStrategy "links-bytes", the default without
 *    a CID profile): the importer keeps an estimate, the sum over entries
 *    of (UTF-8 bytes of the name + bytes of the binary CID), and makes the
 *    directory a HAMT when the estimate is strictly greater than 262144
 *    (shardSplitThresholdBytes). It never turns a HAMT back into a plain
 *    directory. Only entries that have a CID when the importer looks count:
 *    files, symlinks and empty directories. A directory with entries is
 *    still being built in memory, has no CID yet and counts 0 — but when it
 *    was given as an entry of its own (it has mode or mtime) before its
 *    contents, it first counts as the empty directory it is at that moment,
 *    and the importer checks right then. So the decision depends on the
 *    order of the importer's input: it shards if, at any entry added in
 *    that order, the sum of the counted entries so far plus that entry
 *    passes 262144. blk_dag_dir_add takes entries in the same order and
 *    flags (BLK_DAG_DIR_SUBDIR) to reproduce it: add them in the order of
 *    the walk the importer was given (a depth-first walk visits a parent's
 *    entries in its own order). tests/interop's walk gives a directory's
 *    non-empty subdirectories first: then none of them ever counts (at
 *    its add the estimate is its own bytes alone), the decision is "the
 *    final estimate passes 262144" whatever the order of adds, and
 *    BLK_DAG_DIR_SUBDIR_IMPLICIT gives it. "Non-empty" is the importer's:
 *    with at least one entry it imports (a directory holding only what
 *    UnixFS cannot hold is an empty one to it).
 *    Names are bytes here; the importer's are JavaScript strings, so a name
 *    that is not valid UTF-8 has no importer equivalent. Before 16.1.2 the
 *    importer counted UTF-16 code units, not UTF-8 bytes (same for ASCII).
 *
 * 3. A HAMT (fanout 256, hash murmur3-x64-64, see murmur3.h for the bits):
 *    see hamt.h for the shard layout, link names and bitfield.
 *
 * 4. Commits that change a few entries of a large sharded directory need
 *    not rebuild it: blk_hamt_update (hamt.h) sets or removes one entry,
 *    re-encoding only the shards on its path, with the same result as a
 *    rebuild. Whether the directory stays sharded is the caller's to
 *    decide (rule 2: keep the estimate with the entries).
 *
 * 5. Where blockfs departs: a plain directory whose block would be larger
 *    than BLK_PB_MAX_BLOCK (only possible with many subdirectories, which
 *    do not count in the estimate) is sharded instead: the importer would
 *    write a block IPFS cannot move. Two names whose 64-bit hashes are
 *    equal cannot be placed in 8 levels: -EOVERFLOW. (The importer
 *    would go on with the hash of the name and a depth byte, which our
 *    reader refuses; for two names crafted to collide inside murmur3 that
 *    hash collides again, at every depth.)
 */

/* Longest name (bytes) of a directory entry: NAME_MAX. */
#define BLK_DAG_NAME_MAX 255

/* The importer's shardSplitThresholdBytes: a directory whose estimate is
 * greater than this is sharded. */
#define BLK_DAG_DIR_SHARD_THRESHOLD 262144

/* Flags of blk_dag_dir_add. */
enum {
	/* The entry is a directory with entries, given to the importer as a
	 * directory entry (for its mode and mtime) before its contents: it
	 * counts in the estimate only at its own add (rule 2). */
	BLK_DAG_DIR_SUBDIR = 1 << 0,
	/* The entry is a directory with entries the importer made itself
	 * from its contents' paths (no entry of its own): it never counts. */
	BLK_DAG_DIR_SUBDIR_IMPLICIT = 1 << 1,
};

struct blk_dag_dir;

/* A builder with no entries. Returns 0 or -ENOMEM. */
int blk_dag_dir_new(struct blk_dag_dir **out);

/* Free the builder (NULL is fine) and set *@d to NULL. */
void blk_dag_dir_free(struct blk_dag_dir **d);

/* Hash the directory's blocks with @hash instead of BLK_HASH_DEFAULT, for
 * filesystems made with another hash. Returns 0 or -EINVAL (unknown). */
int blk_dag_dir_set_hash(struct blk_dag_dir *d, enum blk_hash hash);

/* Forget every entry (keeping the memory and the hash) to build another
 * directory. */
void blk_dag_dir_reset(struct blk_dag_dir *d);

/* Add the entry @name (@len bytes) -> @cid, whose DAG is @tsize bytes (the
 * Tsize of its link: a raw leaf's length, a node's block plus its links'
 * Tsizes), with @flags (BLK_DAG_DIR_*; 0 for files, symlinks and empty
 * directories). The name is copied. Duplicates are found by finish.
 * Returns 0, -EINVAL (an empty name, one longer than BLK_DAG_NAME_MAX,
 * with '/' or NUL, "." or "..", a Tsize past BLK_PB_MAX_TSIZE, unknown
 * flags), -EOVERFLOW (more than UINT32_MAX entries), or -ENOMEM. */
int blk_dag_dir_add(struct blk_dag_dir *d, const void *name, size_t len,
		    const struct blk_cid *cid, uint64_t tsize, unsigned flags);

/* Number of entries added since new or reset. */
size_t blk_dag_dir_count(const struct blk_dag_dir *d);

/* What an entry named with @name_len bytes -> @cid adds to the importer's
 * estimate when it counts (rule 2): for a caller that keeps a directory's
 * estimate between commits, to know whether blk_hamt_update still
 * applies. */
uint64_t blk_dag_dir_entry_estimate(size_t name_len, const struct blk_cid *cid);

/* True if finish would shard (rules 2 and 5). */
bool blk_dag_dir_will_shard(const struct blk_dag_dir *d);

/* Build the directory with @meta (NULL: no mode, no mtime; mode & 07777 is
 * kept), calling @emit (may be NULL) for every block, children before
 * parents, the root last; give the root's CID and Tsize. The entries stay
 * (finish may be called again, e.g. with other metadata). Returns 0, -EEXIST (a
 * name added twice), -EOVERFLOW (rule 5), -EINVAL (@meta's mtime_nsec past
 * 999999999), -ENOMEM, or what @emit returned. */
int blk_dag_dir_finish(struct blk_dag_dir *d,
		       const struct blk_dag_file_meta *meta,
		       blk_dag_emit_fn emit, void *ctx, struct blk_cid *root,
		       uint64_t *tsize);

/* --- Reading --- */

/* Fetch the bytes of block @cid as a malloc'd copy in *@data (the reader
 * frees it; an empty block may be a 1-byte allocation with *@len 0), as
 * blk_source_get does: the bytes must be verified against @cid. Returns 0 or
 * a negative errno, which the reader returns. */
typedef int (*blk_dag_fetch_fn)(void *ctx, const struct blk_cid *cid,
				void **data, size_t *len);

/* How a reader gets blocks: @fetch, and @visit (may be NULL), called with
 * every directory or shard block the reader decodes, before its entries
 * (a CAR export writes them). */
struct blk_dag_dir_reader {
	blk_dag_fetch_fn fetch;
	blk_dag_emit_fn visit;
	void *ctx;
};

/* One entry of a directory. @name views a block: valid only during the
 * callback (or, from lookup, the caller's name). */
struct blk_dag_dirent {
	const uint8_t *name;
	size_t name_len;
	struct blk_cid cid;
	bool has_tsize;
	uint64_t tsize;
};

/* Called for each entry; a non-zero return stops the walk, and
 * blk_dag_dir_each returns it. */
typedef int (*blk_dag_dirent_fn)(void *arg, const struct blk_dag_dirent *e);

/* What the root node of a directory says of it. */
struct blk_dag_dir_info {
	bool sharded;
	struct blk_dag_file_meta meta;
};

/* Decode @len bytes at @block as a directory's root node (plain or HAMT
 * root shard), checking it as the reader does (not its sub-shards), and
 * fill @info. Returns 0, -ENOTDIR (a valid UnixFS node of another type), or
 * -EBADMSG (not dag-pb, not UnixFS, or a malformed directory). */
int blk_dag_dir_decode(const uint8_t *block, size_t len,
		       struct blk_dag_dir_info *info);

/* Call @fn for every entry of directory @dir: in name order for a plain
 * directory, in hash order (the HAMT's) for a sharded one. Holds at most
 * one block per level of the HAMT. Every node is checked (rule 1, hamt.h):
 * -EBADMSG for a malformed node, a bad or duplicate name, a bitfield that
 * does not match the links, a shard deeper than 8 levels, a leaf not where
 * its name's hash puts it. Returns 0, -ENOTDIR, -EBADMSG, -ENOMEM, or what
 * @fetch, @visit or @fn returned. */
int blk_dag_dir_each(const struct blk_dag_dir_reader *r,
		     const struct blk_cid *dir, blk_dag_dirent_fn fn,
		     void *arg);

/* Look @name (@len bytes) up in directory @dir, fetching only the nodes on
 * its path, and fill @out (out->name = @name). Returns 0, -ENOENT,
 * -ENOTDIR, -EBADMSG (as blk_dag_dir_each, for the nodes on the path),
 * -EINVAL (@name is not a valid name), -ENOMEM, or what @fetch or @visit
 * returned. */
int blk_dag_dir_lookup(const struct blk_dag_dir_reader *r,
		       const struct blk_cid *dir, const void *name, size_t len,
		       struct blk_dag_dirent *out);

/* True if @name (@len bytes) is a valid entry name (blk_dag_dir_add). */
bool blk_dag_name_valid(const uint8_t *name, size_t len);
