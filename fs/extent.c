/* Range lookups in a file's extent map (see extent.h). */
#include "fs/extent.h"

#include <errno.h>
#include <stdlib.h>

#include "fs/meta.h"

void bfs_extent_list_free(struct bfs_extent_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

int bfs_extent_list_push(struct bfs_extent_list *l, const struct bfs_extent *e)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct bfs_extent *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *e;
	return 0;
}

struct extents_in {
	uint64_t start, end;
	struct bfs_extent_list *out;
};

#define EXTENTS_PAST_END 1

/* One record of bfs_extents_in's walk. */
static int extent_in(void *arg, const uint8_t *k, size_t klen, const uint8_t *v,
		     size_t vlen)
{
	struct extents_in *x = arg;
	struct bfs_extent e;

	e.off = blk_get_be64(k + 8);
	if (e.off >= x->end)
		return EXTENTS_PAST_END;
	if (bfs_extent_decode(v, vlen, &e.len, &e.forced, &e.cid))
		return -EUCLEAN;
	if (e.off + e.len <= x->start)
		return 0;
	return bfs_extent_list_push(x->out, &e);
}

int bfs_extents_in(struct blk_db *db, unsigned cf, uint64_t ino, uint64_t start,
		   uint64_t end, uint64_t lookback, struct bfs_extent_list *out)
{
	uint8_t prefix[8], from[16];
	struct extents_in x = {start, end, out};
	const struct blk_walk w = {
	    .prefix = prefix,
	    .plen = 8,
	    .start = from,
	    .slen = 16,
	    .klen_min = 16,
	    .klen_max = 16,
	    .klen_err = -EUCLEAN,
	    .fn = extent_in,
	    .arg = &x,
	};

	if (start >= end)
		return 0;
	bfs_ino_key(prefix, ino);
	bfs_extent_key(from, ino, start > lookback ? start - lookback : 0);
	int ret = blk_db_walk(db, cf, &w);
	return ret == EXTENTS_PAST_END ? 0 : ret;
}

/* Decode the iterator's record into c->e; c->valid false at the end. */
static int cursor_load(struct bfs_extent_cursor *c)
{
	size_t klen, vlen;

	c->valid = false;
	if (!blk_iter_valid(c->it))
		return blk_iter_status(c->it);
	const uint8_t *k = blk_iter_key(c->it, &klen);
	const uint8_t *v = blk_iter_value(c->it, &vlen);
	if (klen != 16 ||
	    bfs_extent_decode(v, vlen, &c->e.len, &c->e.forced, &c->e.cid))
		return -EUCLEAN;
	c->e.off = blk_get_be64(k + 8);
	c->valid = true;
	return 0;
}

int bfs_extent_cursor_open(struct bfs_extent_cursor *c, struct blk_db *db,
			   unsigned cf, uint64_t ino, uint64_t from,
			   uint64_t lookback)
{
	uint8_t prefix[8], start[16];

	c->valid = false;
	bfs_ino_key(prefix, ino);
	bfs_extent_key(start, ino, from > lookback ? from - lookback : 0);
	c->it = blk_iter_new(db, cf, prefix, 8, start, 16);
	if (!c->it)
		return -ENOMEM;
	int ret = cursor_load(c);
	while (!ret && c->valid && c->e.off + c->e.len <= from)
		ret = bfs_extent_cursor_next(c);
	return ret;
}

int bfs_extent_cursor_next(struct bfs_extent_cursor *c)
{
	blk_iter_next(c->it);
	return cursor_load(c);
}

void bfs_extent_cursor_close(struct bfs_extent_cursor *c)
{
	blk_iter_free(c->it);
	c->it = NULL;
	c->valid = false;
}
