/* An in-memory block source (source.h), for tests: a sorted array of
 * copies under one lock. */

#include "blocks/store/source.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct mem_block {
	uint8_t key[BLK_CID_MAX_BYTES]; /* binary CID: the sort key */
	uint8_t klen;
	struct blk_cid cid;
	void *data;
	size_t len;
};

struct mem_source {
	struct blk_source base; /* first: the ops */
	pthread_mutex_t lock;
	/* lock: sorted by key (byte order, a proper prefix first) */
	struct mem_block *v;
	size_t n, cap;
};

static struct mem_source *mem_of(struct blk_source *s)
{
	return (struct mem_source *)s;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/* The index of @cid's block, or of where it would go (*@found false).
 * Under m->lock. */
static size_t find(const struct mem_source *m, const struct blk_cid *cid,
		   bool *found)
{
	uint8_t key[BLK_CID_MAX_BYTES];
	size_t klen = blk_cid_to_bytes(cid, key), lo = 0, hi = m->n;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(m->v[mid].key, m->v[mid].klen, key, klen);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int mem_get(struct blk_source *s, const struct blk_cid *cid, void **data,
		   size_t *len)
{
	struct mem_source *m = mem_of(s);
	bool found;
	int rc = -ENOENT;

	*data = NULL;
	pthread_mutex_lock(&m->lock);
	size_t i = find(m, cid, &found);
	if (found) {
		const struct mem_block *b = &m->v[i];
		void *p = malloc(b->len ? b->len : 1);

		rc = -ENOMEM;
		if (p) {
			if (b->len)
				memcpy(p, b->data, b->len);
			*data = p;
			*len = b->len;
			rc = 0;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static int mem_has(struct blk_source *s, const struct blk_cid *cid)
{
	struct mem_source *m = mem_of(s);
	bool found;

	pthread_mutex_lock(&m->lock);
	find(m, cid, &found);
	pthread_mutex_unlock(&m->lock);
	return found ? 1 : 0;
}

static int mem_put(struct blk_source *s, const struct blk_cid *cid,
		   const void *data, size_t len)
{
	struct mem_source *m = mem_of(s);
	struct mem_block b = {.cid = *cid, .len = len};
	bool found;
	int rc = 0;

	if (len > UINT32_MAX)
		return -EINVAL;
	if (!blk_cid_verify(cid, data, len))
		return -EBADMSG;
	b.klen = (uint8_t)blk_cid_to_bytes(cid, b.key);
	b.data = malloc(len ? len : 1);
	if (!b.data)
		return -ENOMEM;
	if (len)
		memcpy(b.data, data, len);
	pthread_mutex_lock(&m->lock);
	size_t i = find(m, cid, &found);
	if (!found && m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 16;
		struct mem_block *v = realloc(m->v, cap * sizeof(*v));

		if (v) {
			m->v = v;
			m->cap = cap;
		} else {
			rc = -ENOMEM;
		}
	}
	if (!found && rc == 0) {
		memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof(*m->v));
		m->v[i] = b;
		m->n++;
		b.data = NULL;
	}
	pthread_mutex_unlock(&m->lock);
	free(b.data); /* held already, or no room */
	return rc;
}

/* On a copy of the list of CIDs, so that @fn may call into the source. */
static int mem_each(struct blk_source *s, blk_source_each_fn fn, void *arg)
{
	struct mem_source *m = mem_of(s);
	struct mem_block *snap;
	size_t n;
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	n = m->n;
	snap = malloc((n ? n : 1) * sizeof(*snap));
	if (snap && n)
		memcpy(snap, m->v, n * sizeof(*snap));
	pthread_mutex_unlock(&m->lock);
	if (!snap)
		return -ENOMEM;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = fn(arg, &snap[i].cid, snap[i].len);
	free(snap);
	return rc;
}

static void mem_free(struct blk_source *s)
{
	struct mem_source *m = mem_of(s);

	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].data);
	free(m->v);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static const struct blk_source_ops mem_ops = {
    .name = "mem",
    .get = mem_get,
    .has = mem_has,
    .put = mem_put,
    .each = mem_each,
    .free = mem_free,
};

int blk_source_mem_new(struct blk_source **out)
{
	struct mem_source *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->base.ops = &mem_ops;
	pthread_mutex_init(&m->lock, NULL);
	*out = &m->base;
	return 0;
}
