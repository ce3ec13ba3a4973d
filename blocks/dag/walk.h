/* A walker over a filesystem's UnixFS DAG: every block reachable from a
 * root CID, each once, parents before children, through a fetch callback
 * (what 'blockfs export' writes into a CAR, and what a GC will mark).
 *
 * What it follows (FORMAT.md §2):
 *   - directories, plain or HAMT (dir.h's reader, which checks every
 *     node): the directory's blocks, then each entry's DAG;
 *   - dag-pb file nodes: the node, then its links in order;
 *   - raw leaves; symlink nodes (no links).
 * Invariants:
 *  1. Every block is handed to @visit at most once (a set of the CIDs
 *     seen), a parent before any of its children.
 *  2. A raw leaf whose link says it is N <= BLK_WALK_ZERO_MAX bytes and
 *     whose CID is the CID of N zero bytes (with the leaf's hash) is not
 *     fetched: holes are never stored, the walker makes its bytes.
 *  3. Memory apart from the visited set is bounded by the depth: one
 *     block per file level, one per HAMT level of each directory on the
 *     path, and directories deeper than BLK_WALK_MAX_DEPTH are refused
 *     (-ELOOP).
 *  4. Every block fetched is checked before it is used (the fetch
 *     callback verifies it against its CID, as blk_dag_fetch_fn says);
 *     anything malformed stops the walk with -EBADMSG. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/dag/dir.h"
#include "blocks/dag/file.h"

/* Largest hole leaf (holes are cut at multiples of 256 KiB of a file). */
#define BLK_WALK_ZERO_MAX (256u << 10)
/* Nesting of directories and file levels the walker follows: a path of
 * PATH_MAX bytes holds at most 2048 one-byte names. */
#define BLK_WALK_MAX_DEPTH 2048

struct blk_walk_stats {
	uint64_t blocks;  /* visited */
	uint64_t bytes;	  /* of the blocks visited */
	uint64_t zeros;	  /* zero leaves made, not fetched */
	uint64_t fetches; /* fetch calls */
	/* Set when the walk fails on a block: which one. */
	bool has_failed;
	struct blk_cid failed;
};

struct blk_walk_config {
	blk_dag_fetch_fn fetch;
	/* Called with every block, once (may be NULL). A non-zero return
	 * stops the walk, which returns it. */
	blk_dag_emit_fn visit;
	/* Called (may be NULL) with the children of a file node about to be
	 * fetched, those not seen yet and not hole leaves, at most
	 * BLK_DAG_FILE_FANOUT: a fetch over the network asks for them
	 * ahead. */
	void (*prefetch)(void *ctx, const struct blk_cid *cids, size_t n);
	void *ctx; /* of all three */
};

/* Walk the DAG under @root (a directory, a file node, a raw leaf or a
 * symlink) as the invariants say, counting into @st (may be NULL;
 * zeroed first). Returns 0, -EBADMSG (a malformed block, or a directory
 * entry that is neither raw nor dag-pb), -ELOOP (too deep), -ENOMEM, or
 * what @fetch or @visit returned. */
int blk_dag_walk(const struct blk_walk_config *cfg, const struct blk_cid *root,
		 struct blk_walk_stats *st);

/* The CID of what @path ("/a/b"; "" or "/" is @root itself; repeated
 * slashes are fine) names under directory @root into @out, fetching only
 * the nodes on the way. Returns 0, -ENOENT, -ENOTDIR (a component under
 * a file), -EINVAL (a component that is not a valid name: "..", too
 * long), -EBADMSG, -ENOMEM, or what @fetch returned. */
int blk_dag_walk_resolve(blk_dag_fetch_fn fetch, void *ctx,
			 const struct blk_cid *root, const char *path,
			 struct blk_cid *out);

/* Whether @cid names @len zero bytes (raw, with @cid's hash). */
bool blk_walk_is_zero_leaf(const struct blk_cid *cid, uint64_t len);
