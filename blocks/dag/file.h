/* The UnixFS file layout of ipfs-unixfs-importer's balanced builder (raw
 * leaves, CIDv1, at most 174 links per node): a streaming builder that turns
 * a file's leaf CIDs, in order, into its dag-pb nodes and root CID. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"

/* Links per file node (the importer's maxChildrenPerNode). */
#define BLK_DAG_FILE_FANOUT 174

/* Levels of nodes above the leaves: 174^12 leaves is far past any file. */
#define BLK_DAG_FILE_MAX_DEPTH 12

/* Optional UnixFS 1.5 metadata, written on every node of the file as the
 * importer does (it builds each node from the same mode and mtime). Only
 * the permission bits (mode & 07777) are kept, as the importer keeps them. */
struct blk_dag_file_meta {
	bool has_mode;
	uint32_t mode;
	bool has_mtime;
	int64_t mtime_sec;
	uint32_t mtime_nsec; /* 0..999999999; 0 is not written */
};

/* Called for every dag-pb block the builder makes, children before their
 * parents, the root last. @block is valid only during the call. Returns 0,
 * or a negative errno that the builder returns from the call that made the
 * block. */
typedef int (*blk_dag_emit_fn)(void *ctx, const struct blk_cid *cid,
			       const uint8_t *block, size_t len);

/* Called only when the file is exactly one non-empty leaf and has mode or
 * mtime: the importer then writes the leaf's bytes inline in a dag-pb node.
 * Fill @buf with the @len bytes of the raw block @cid. Returns 0 or a
 * negative errno, which blk_dag_file_finish returns. */
typedef int (*blk_dag_read_fn)(void *ctx, const struct blk_cid *cid,
			       uint8_t *buf, size_t len);

struct blk_dag_file;

/* A builder for one file. @meta may be NULL (no mode, no mtime); @read may be
 * NULL when @meta has neither. Returns 0, -EINVAL (mtime_nsec out of range,
 * metadata without @read) or -ENOMEM. */
int blk_dag_file_new(struct blk_dag_file **out,
		     const struct blk_dag_file_meta *meta, blk_dag_emit_fn emit,
		     blk_dag_read_fn read, void *ctx);

/* Hash the nodes (and an empty file's leaf) with @hash instead of
 * BLK_HASH_DEFAULT, for filesystems made with another hash. Only before the
 * first leaf. Returns 0 or -EINVAL (after a leaf, or an unknown hash). */
int blk_dag_file_set_hash(struct blk_dag_file *f, enum blk_hash hash);

/* Append the next leaf: a raw block (codec BLK_CODEC_RAW) of @size bytes
 * (at most BLK_PB_MAX_BLOCK). Leaves of 0 bytes are skipped as the importer
 * skips them, but count in the grouping (only an empty file has one).
 * Emits the nodes this completes. Returns 0, -EINVAL (not raw, too large,
 * the file past 2^53 - 1 bytes, or after finish), -EFBIG (more leaves than
 * BLK_DAG_FILE_MAX_DEPTH levels hold), or what @emit returned. */
int blk_dag_file_add_leaf(struct blk_dag_file *f, const struct blk_cid *cid,
			  uint64_t size);

/* Append @count leaves of @piece zero bytes, @leaf being their CID (a
 * hole), with the same result as @count calls of blk_dag_file_add_leaf,
 * in time and memory logarithmic in @count: a run of 174^k of them at a
 * place where the balanced layout makes one subtree of them goes in as
 * that subtree, made once per builder (emitted then). Returns 0, -EINVAL
 * (@leaf not raw, @piece 0 or too large, the file past 2^53 - 1 bytes, or
 * after finish), -EFBIG, -ENOMEM, or what @emit returned. */
int blk_dag_file_add_zeros(struct blk_dag_file *f, const struct blk_cid *leaf,
			   uint64_t piece, uint64_t count);

/* Finish the file: emit the remaining nodes and give the root CID, the file
 * size (sum of the leaves) and the dag size (the root's block bytes plus
 * its links' Tsizes: the Tsize a directory gives its link to the file).
 * A file of one leaf without metadata is the leaf itself (nothing emitted);
 * an empty file (no leaves) is the empty raw block's CID, or with metadata a
 * dag-pb node without data. Returns 0, -EINVAL (called twice), or an error
 * from @emit or @read; the builder can then only be freed. */
int blk_dag_file_finish(struct blk_dag_file *f, struct blk_cid *root,
			uint64_t *file_size, uint64_t *dag_size);

/* Free the builder (NULL is fine) and set *@f to NULL. */
void blk_dag_file_free(struct blk_dag_file **f);
