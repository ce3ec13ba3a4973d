/* A block source: where blocks are read and written by CID, whatever
 * holds them. A backend is a table of functions, each with its contract
 * written here (git's odb/source.h is the model); the Merkle-DAG code
 * (codecs, CAR) reads blocks through it. Two backends: the block store
 * (blk_source_store_new) and an in-memory one for tests
 * (blk_source_mem_new); tests/unit/test-source.c runs both against the
 * same contract.
 *
 * Every call returns 0 (or a count, or 1 for yes) on success and a
 * negative errno on failure. A source may be used from any number of
 * threads at once. */
#pragma once

#include <stddef.h>

#include "blocks/cid.h"

struct blk_source;
struct blk_store;

/* Called by each for every block held, with its length. A non-zero
 * return stops the walk, and each returns it. */
typedef int (*blk_source_each_fn)(void *arg, const struct blk_cid *cid,
				  size_t len);

struct blk_source_ops {
	const char *name; /* for messages: "store", "mem" */

	/* The bytes of block @cid as a malloc'd copy in *@data (free() it;
	 * an empty block is a 1-byte allocation with *@len 0). 0, -ENOENT
	 * (the bytes are not here), -EBADMSG (the bytes held do not hash
	 * to @cid: damage the backend found), -ENOMEM, -EIO. */
	int (*get)(struct blk_source *s, const struct blk_cid *cid, void **data,
		   size_t *len);

	/* 1 if get would find the bytes of @cid, 0 if not, or -EIO. */
	int (*has)(struct blk_source *s, const struct blk_cid *cid);

	/* Hold @len bytes at @data as block @cid. The bytes must hash to
	 * @cid: -EBADMSG (nothing stored) if they do not, so no source holds
	 * a block under a name that is not its own. 0 once get finds it
	 * (also when it was held already); durability is the backend's
	 * (the block store's: its next sync). A backend may count puts: the
	 * block store adds one reference per put. -EINVAL (@len past
	 * UINT32_MAX), -ENOMEM, -ENOSPC, -EROFS, -EIO. */
	int (*put)(struct blk_source *s, const struct blk_cid *cid,
		   const void *data, size_t len);

	/* Call @fn for every block whose bytes are held, once each, in no
	 * promised order, on a snapshot taken when it starts (puts made
	 * meanwhile may or may not be seen). 0, @fn's non-zero return,
	 * -ENOMEM, -EIO. */
	int (*each)(struct blk_source *s, blk_source_each_fn fn, void *arg);

	/* Free the source (not what it reads from). Never called with
	 * NULL. */
	void (*free)(struct blk_source *s);
};

/* Every backend's object starts with this. */
struct blk_source {
	const struct blk_source_ops *ops;
};

static inline int blk_source_get(struct blk_source *s,
				 const struct blk_cid *cid, void **data,
				 size_t *len)
{
	return s->ops->get(s, cid, data, len);
}

static inline int blk_source_has(struct blk_source *s,
				 const struct blk_cid *cid)
{
	return s->ops->has(s, cid);
}

static inline int blk_source_put(struct blk_source *s,
				 const struct blk_cid *cid, const void *data,
				 size_t len)
{
	return s->ops->put(s, cid, data, len);
}

static inline int blk_source_each(struct blk_source *s, blk_source_each_fn fn,
				  void *arg)
{
	return s->ops->each(s, fn, arg);
}

/* NULL is fine. */
static inline void blk_source_free(struct blk_source *s)
{
	if (s)
		s->ops->free(s);
}

/* A source over block store @st, which must outlive it: get and has see
 * the blocks whose bytes are here (not evicted ones), put adds one
 * reference in a commit of its own, each walks "refs". 0 or -ENOMEM. */
int blk_source_store_new(struct blk_store *st, struct blk_source **out);

/* An empty source in memory, for tests: puts are copied and kept until
 * it is freed; each goes in CID byte order. 0 or -ENOMEM. */
int blk_source_mem_new(struct blk_source **out);
