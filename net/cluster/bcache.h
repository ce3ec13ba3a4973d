/* The block cache: blocks fetched ahead of their reads by a few worker
 * threads (sequential readers), and blocks fetched lately, held in memory
 * (a few dozen) for the reads that want them. The kernel reads a block in
 * several pieces (128 KiB each, and a block straddles two reads): without
 * a copy here every piece would fetch the whole block again. */
#pragma once

#include <stddef.h>

#include "blocks/cid.h"

struct cl_bcache;

/* How the workers fetch a block: 0 with a malloc'd *@data of *@len bytes
 * that hash to @cid, or a negative errno. Called from the workers, with no
 * lock of the cache held. */
typedef int (*cl_bcache_fetch_fn)(void *arg, const struct blk_cid *cid,
				  void **data, size_t *len);

/* Start the workers (fewer if some cannot start). 0 or -ENOMEM. */
int cl_bcache_new(cl_bcache_fetch_fn fetch, void *arg, struct cl_bcache **out);

/* Stop the workers: fetches in flight end first (within their own
 * deadline). Prefetch asks nothing after this. Call before
 * cl_bcache_free; NULL is fine. */
void cl_bcache_stop(struct cl_bcache *c);

/* Stop and free, with every block held. NULL is fine. */
void cl_bcache_free(struct cl_bcache *c);

/* Queue blocks @cids[0..@n) for the workers, newest first; blocks held
 * or queued already are skipped, and so are blocks for which no room can
 * be made (blocks fetched ahead wait for their reader). Any thread; never
 * waits on the network. */
void cl_bcache_prefetch(struct cl_bcache *c, const struct blk_cid *cids,
			size_t n);

/* A malloc'd copy of block @cid in *@data, *@len: 0, -ENOENT (not held,
 * not started yet, or its prefetch failed: fetch it the normal way), or
 * -ENOMEM. Waits (holding no lock) for a fetch of it in flight. The block
 * stays held, as the most recently read. Any thread. */
int cl_bcache_take(struct cl_bcache *c, const struct blk_cid *cid, void **data,
		   size_t *len);

/* Hold a copy of block @cid (@len bytes at @data, checked already) just
 * fetched, as read once. Nothing if it is held already or no room can be
 * made. Any thread. */
void cl_bcache_keep(struct cl_bcache *c, const struct blk_cid *cid,
		    const void *data, size_t len);

/* Drop the blocks held because they were read (a reader closed its
 * file); blocks fetched ahead and not read yet stay. Any thread. */
void cl_bcache_drop_taken(struct cl_bcache *c);
