/* The block store as a block source (source.h). */

#include "blocks/store/source.h"
#include "blocks/store/store-int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

struct store_source {
	struct blk_source base; /* first: the ops */
	struct blk_store *st;
};

static struct blk_store *store_of(struct blk_source *s)
{
	return ((struct store_source *)s)->st;
}

/* blk_store_get gives -EBADMSG only with verify_on_read: the source
 * checks every block it hands out, as its contract says. */
static int store_get(struct blk_source *s, const struct blk_cid *cid,
		     void **data, size_t *len)
{
	int rc = blk_store_get(store_of(s), cid, data, len);

	if (rc == 0 && !blk_cid_verify(cid, *data, *len)) {
		free(*data);
		*data = NULL;
		rc = -EBADMSG;
	}
	return rc;
}

static int store_has(struct blk_source *s, const struct blk_cid *cid)
{
	uint64_t refs;
	uint32_t len;
	bool local = false;
	int rc = blk_store_info(store_of(s), cid, &refs, &len, &local);

	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc == -EUCLEAN ? -EIO : rc;
	return local ? 1 : 0;
}

static int store_put(struct blk_source *s, const struct blk_cid *cid,
		     const void *data, size_t len)
{
	struct blk_txn *t;
	int rc;

	if (len > UINT32_MAX)
		return -EINVAL;
	if (!blk_cid_verify(cid, data, len))
		return -EBADMSG;
	t = blk_txn_new(store_of(s));
	if (!t)
		return -ENOMEM;
	rc = blk_txn_ref(t, cid, data, len);
	if (rc == 0)
		rc = blk_txn_commit(t, false);
	blk_txn_free(t);
	return rc == -EUCLEAN ? -EIO : rc;
}

/* "refs" keys that are CIDs (store.c), skipping evicted blocks. */
struct each_ctx {
	blk_source_each_fn fn;
	void *arg;
};

/* One "refs" record: a block held here unless evicted or unparsable. */
static int each_ref(void *arg, const uint8_t *k, size_t klen, const uint8_t *v,
		    size_t vlen)
{
	const struct each_ctx *c = arg;
	struct blk_cid cid;
	uint64_t refs;
	uint32_t len;
	uint8_t flags;

	if (blk_cid_from_bytes(&cid, k, klen) ||
	    store_parse_refs(v, vlen, &refs, &len, &flags) < 0 ||
	    (flags & REFS_EVICTED))
		return 0;
	return c->fn(c->arg, &cid, len);
}

static int store_each(struct blk_source *s, blk_source_each_fn fn, void *arg)
{
	static const uint8_t prefix = REFS_CID_PREFIX;
	struct blk_store *st = store_of(s);
	struct each_ctx c = {fn, arg};
	const struct blk_walk w = {
	    .prefix = &prefix, .plen = 1, .fn = each_ref, .arg = &c};

	return blk_db_walk(st->db, st->cf_refs, &w);
}

static void store_free(struct blk_source *s)
{
	free(s);
}

static const struct blk_source_ops store_ops = {
    .name = "store",
    .get = store_get,
    .has = store_has,
    .put = store_put,
    .each = store_each,
    .free = store_free,
};

int blk_source_store_new(struct blk_store *st, struct blk_source **out)
{
	struct store_source *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->base.ops = &store_ops;
	s->st = st;
	*out = &s->base;
	return 0;
}
