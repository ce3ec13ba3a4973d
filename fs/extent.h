/* A file's extent map in the node database: which block holds which
 * range of the file, looked up by range. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/store/store.h"

struct bfs_extent {
	uint64_t off;
	uint32_t len;
	bool forced; /* its end is not a content-defined cut */
	struct blk_cid cid;
};

struct bfs_extent_list {
	struct bfs_extent *v;
	size_t n, cap;
};

/* Longest extent any chunker configuration may produce (cdc.h's bound);
 * lookups look back this far for an extent that covers their start. */
#define BFS_EXTENT_MAX (64u << 20)

/* Append to @out the extents of @ino overlapping [start, end), in offset
 * order. @lookback bounds how far before @start an overlapping extent may
 * begin (the longest extent the file can hold). 0, -ENOMEM, -EIO or
 * -EUCLEAN (undecodable record). */
int bfs_extents_in(struct blk_db *db, unsigned cf, uint64_t ino, uint64_t start,
		   uint64_t end, uint64_t lookback,
		   struct bfs_extent_list *out);

/* A walk over a file's extents in offset order, one at a time, for
 * searches that must not collect a whole range (SEEK_DATA / SEEK_HOLE on
 * a file of millions of extents). Holds a store iterator: a snapshot. */
struct bfs_extent_cursor {
	struct blk_iter *it;
	bool valid;	     /* e holds the current extent */
	struct bfs_extent e; /* valid: the current extent */
};

/* Open @c on the first extent of @ino that ends after @from, looking
 * back @lookback bytes for one that covers @from. 0 (c->valid false:
 * none), -ENOMEM, -EIO or -EUCLEAN; bfs_extent_cursor_close in every
 * case. */
int bfs_extent_cursor_open(struct bfs_extent_cursor *c, struct blk_db *db,
			   unsigned cf, uint64_t ino, uint64_t from,
			   uint64_t lookback);
/* Move to the next extent: 0 (c->valid false at the end), -EIO or
 * -EUCLEAN. */
int bfs_extent_cursor_next(struct bfs_extent_cursor *c);
void bfs_extent_cursor_close(struct bfs_extent_cursor *c);

void bfs_extent_list_free(struct bfs_extent_list *l);
int bfs_extent_list_push(struct bfs_extent_list *l, const struct bfs_extent *e);
