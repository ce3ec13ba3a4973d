/* The attribute blocks of FORMAT.md §3 (DAG-CBOR): a builder that turns a
 * directory's own attributes and its entries into its directory block and
 * Part blocks, and a strict streaming reader of them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/dag/dir.h"
#include "blocks/dag/file.h"

/*
 * What must hold (the builder writes only this, the reader accepts only
 * this, so what reads re-encodes to the same bytes):
 *  1. Maps hold exactly the keys of their kind, in DAG-CBOR order:
 *     directory block {v, ents, self} or {v, self, parts}; part {ents};
 *     self: the Attrs keys; an entry: the Attrs keys plus ino, name and
 *     by type node + tsize (files, symlinks), target (symlinks), rdev
 *     (device nodes); a directory's entry exactly {ino, name, node,
 *     attrs, tsize}. "xattrs" is left out when there are none.
 *  2. mode, uid, gid and nlink fit 32 bits; mode has only S_IFMT and
 *     07777 bits and a known file type (self: a directory); ino >= 1.
 *  3. Names (entries) are 1..255 bytes, no '/' or NUL, not "." or "..";
 *     entries strictly increase by name bytes (memcmp, a proper prefix
 *     first), across parts too. Xattr names 1..255 bytes without NUL,
 *     strictly increasing likewise; values at most BLK_ATTRS_XATTR_MAX
 *     bytes. A symlink target is 1..BLK_ATTRS_TARGET_MAX bytes, no NUL.
 *  4. Parts (§3.4): only for more than BLK_ATTRS_PART_MAX entries. The
 *     entries are cut after every entry whose name's murmur3-x64-64 is 0
 *     mod BLK_ATTRS_CUT_MOD, and after BLK_ATTRS_PART_MAX entries since
 *     the last cut; no part is empty.
 */

#define BLK_ATTRS_VERSION 1
#define BLK_ATTRS_PART_MAX 4096
#define BLK_ATTRS_CUT_MOD 512
#define BLK_ATTRS_TARGET_MAX 4095
#define BLK_ATTRS_XNAME_MAX 255
#define BLK_ATTRS_XATTR_MAX 65536

/* One extended attribute: views of the caller's (encoding) or of the
 * block's (decoding) bytes. */
struct blk_xattr {
	const uint8_t *name;
	size_t name_len;
	const uint8_t *value;
	size_t value_len;
};

/* Attrs (§3.2). Times are nanoseconds since the epoch. @rdev is an
 * entry's (device nodes only), never self's. */
struct blk_attrs {
	uint32_t mode, uid, gid, nlink;
	uint64_t size;
	uint64_t rdev;
	int64_t atime, mtime, ctime, btime;
	const struct blk_xattr *xattrs; /* any order when encoding */
	size_t nxattrs;
};

/* One directory entry (§3.2). @dir: a directory's entry, which uses only
 * name, ino, node, tsize and @attrs_cid (its @attrs are unused when
 * encoding and zeroed, mode S_IFDIR, when decoding). Otherwise @attrs
 * hold the entry's attributes and its type (attrs.mode); @node and
 * @tsize belong to files and symlinks, @target to symlinks. */
struct blk_attr_entry {
	const uint8_t *name;
	size_t name_len;
	uint64_t ino;
	bool dir;
	struct blk_attrs attrs;
	struct blk_cid node;
	uint64_t tsize;
	struct blk_cid attrs_cid;
	const uint8_t *target;
	size_t target_len;
	/* A regular file whose data is not in the DAG: larger than UnixFS
	 * describes (past 2^53 - 1 bytes); its entry has no "node" and no
	 * "tsize" (FORMAT.md §3.2). */
	bool no_node;
};

/* --- Building --- */

struct blk_attrs_dir;

/* A builder with no entries: 0 or -ENOMEM. */
int blk_attrs_dir_new(struct blk_attrs_dir **out);
/* Free it (NULL is fine) and set *@d to NULL. */
void blk_attrs_dir_free(struct blk_attrs_dir **d);
/* Hash blocks with @hash instead of BLK_HASH_DEFAULT: 0 or -EINVAL. */
int blk_attrs_dir_set_hash(struct blk_attrs_dir *d, enum blk_hash hash);
/* Forget the entries (keeping memory and hash) for another directory. */
void blk_attrs_dir_reset(struct blk_attrs_dir *d);

/* Append entry @e, encoded at once (its views need live only during the
 * call). Entries come in name order (3). Returns 0, -EINVAL (breaks 1-3:
 * a bad name or one not after the previous, a bad mode or type, a missing
 * or surplus field, two xattrs of one name), -ENOMEM. */
int blk_attrs_dir_add(struct blk_attrs_dir *d, const struct blk_attr_entry *e);

/* Number of entries added since new or reset. */
size_t blk_attrs_dir_count(const struct blk_attrs_dir *d);

/* Emit the Part blocks (if any, in order) and the directory block, with
 * @self as its own attributes (a directory's mode), through @emit
 * (codec dag-cbor); give the directory block's CID in *@cid. The entries
 * stay (finish may be called again). Returns 0, -EINVAL (@self), -ENOMEM,
 * or what @emit returned. */
int blk_attrs_dir_finish(struct blk_attrs_dir *d, const struct blk_attrs *self,
			 blk_dag_emit_fn emit, void *ctx, struct blk_cid *cid);

/* --- Reading --- */

struct blk_attrs_rd;

/* Decode the directory block of @len bytes at @block (which must outlive
 * the reader): its "v", "self" and the form of its entries, checking the
 * block whole as DAG-CBOR and "self" as Attrs. Returns 0 with *@out set,
 * -EBADMSG (malformed), -ENOMEM. */
int blk_attrs_rd_open(struct blk_attrs_rd **out, const uint8_t *block,
		      size_t len);
/* Free the reader (NULL is fine) and set *@rd to NULL. */
void blk_attrs_rd_free(struct blk_attrs_rd **rd);

/* The directory's own attributes (views of the block). */
const struct blk_attrs *blk_attrs_rd_self(const struct blk_attrs_rd *rd);
/* 0 when the entries are in the block, else the number of parts. */
size_t blk_attrs_rd_nparts(const struct blk_attrs_rd *rd);
/* The CID of part @i (< nparts): 0 or -EINVAL. */
int blk_attrs_rd_part(const struct blk_attrs_rd *rd, size_t i,
		      struct blk_cid *cid);

/* The next entry into *@e, fetching the next part through @fetch when a
 * part ends (@fetch may be NULL for a block without parts). @e's views
 * are valid until the next call. Returns 1 (an entry), 0 (no more: the
 * whole directory has been checked), -EBADMSG (a malformed entry or part,
 * an entry out of order, cuts not where 4 puts them), -ENOMEM, or what
 * @fetch returned. After an error every call returns it again. */
int blk_attrs_rd_next(struct blk_attrs_rd *rd, blk_dag_fetch_fn fetch,
		      void *ctx, struct blk_attr_entry *e);

/* The hash the builder cuts by: true when an entry named @name ends a
 * part (before the BLK_ATTRS_PART_MAX rule). */
bool blk_attrs_is_cut(const uint8_t *name, size_t len);
