/* Blocks in memory for the DAG codec tests: an emit callback that keeps
 * every block it is given, and a fetch callback that hands copies back. */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/cid.h"

struct memblock {
	struct blk_cid cid;
	uint8_t *data;
	size_t len;
};

/* Open addressing on the digest; cap is a power of two. */
struct memblocks {
	struct memblock *slots;
	size_t cap, n;
	size_t fetches; /* fetch calls, for tests that count them */
};

static inline void memblocks_clear(struct memblocks *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slots[i].data);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

static inline struct memblock *memblocks_slot(struct memblocks *m,
					      const struct blk_cid *cid)
{
	uint64_t h;
	size_t i;

	memcpy(&h, cid->digest, sizeof(h));
	for (i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1))
		if (!m->slots[i].data || blk_cid_equal(&m->slots[i].cid, cid))
			return &m->slots[i];
}

/* blk_dag_emit_fn: keep a copy (once per CID). */
static inline int memblocks_put(void *ctx, const struct blk_cid *cid,
				const uint8_t *data, size_t len)
{
	struct memblocks *m = ctx;
	struct memblock *s;

	if (2 * (m->n + 1) > m->cap) {
		struct memblocks big = {0};

		big.cap = m->cap ? 2 * m->cap : 64;
		big.slots = calloc(big.cap, sizeof(*big.slots));
		if (!big.slots)
			return -ENOMEM;
		for (size_t i = 0; i < m->cap; i++)
			if (m->slots[i].data)
				*memblocks_slot(&big, &m->slots[i].cid) =
				    m->slots[i];
		big.n = m->n;
		big.fetches = m->fetches;
		free(m->slots);
		*m = big;
	}
	s = memblocks_slot(m, cid);
	if (s->data)
		return 0;
	s->data = malloc(len ? len : 1);
	if (!s->data)
		return -ENOMEM;
	memcpy(s->data, data, len);
	s->len = len;
	s->cid = *cid;
	m->n++;
	return 0;
}

/* blk_dag_fetch_fn: a malloc'd copy, or -ENOENT. */
static inline int memblocks_get(void *ctx, const struct blk_cid *cid,
				void **data, size_t *len)
{
	struct memblocks *m = ctx;
	struct memblock *s;

	m->fetches++;
	if (!m->cap)
		return -ENOENT;
	s = memblocks_slot(m, cid);
	if (!s->data)
		return -ENOENT;
	*data = malloc(s->len ? s->len : 1);
	if (!*data)
		return -ENOMEM;
	memcpy(*data, s->data, s->len);
	*len = s->len;
	return 0;
}
