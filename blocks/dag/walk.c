/* The DAG walker: the visited set, the descent through directories, file
 * nodes and leaves, and the zero leaves of holes; see walk.h. */
#include "blocks/dag/walk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"

/* Read-only zeros for hashing hole leaves (bss: never written). */
static uint8_t zeros[BLK_WALK_ZERO_MAX];

bool blk_walk_is_zero_leaf(const struct blk_cid *cid, uint64_t len)
{
	struct blk_cid z;

	if (cid->codec != BLK_CODEC_RAW || len > BLK_WALK_ZERO_MAX)
		return false;
	blk_cid_compute_hash(&z, cid->hash, BLK_CODEC_RAW, zeros, (size_t)len);
	return blk_cid_equal(&z, cid);
}

/* The zero leaves met lately: hashing 256 KiB per hole leaf is what the
 * cache saves. */
#define ZCACHE 8
struct zslot {
	bool used;
	uint64_t len;
	struct blk_cid cid;
};

struct walk {
	const struct blk_walk_config *cfg;
	struct blk_walk_stats *st;
	/* The visited set: open addressing on the digest, cap a power of
	 * two, at most half full. */
	struct blk_cid *set;
	uint8_t *used;
	size_t cap, n;
	struct zslot zc[ZCACHE];
	unsigned znext;
	/* A block fetched to learn its type, handed to dir.h's reader when
	 * it asks for it next (so a directory is fetched once). */
	struct blk_cid pend_cid;
	void *pend;
	size_t pend_len;
	unsigned depth;
};

static size_t slot_of(const struct walk *w, const struct blk_cid *cid)
{
	uint64_t h;

	memcpy(&h, cid->digest, sizeof(h));
	h ^= cid->codec * 0x9e3779b97f4a7c15ull;
	for (size_t i = h & (w->cap - 1);; i = (i + 1) & (w->cap - 1))
		if (!w->used[i] || blk_cid_equal(&w->set[i], cid))
			return i;
}

/* Add @cid to the set: 1 if it was new, 0 if seen, -ENOMEM. */
static int mark(struct walk *w, const struct blk_cid *cid)
{
	if (2 * (w->n + 1) > w->cap) {
		struct walk big = {.cap = w->cap ? 2 * w->cap : 1024};

		big.set = malloc(big.cap * sizeof(*big.set));
		big.used = calloc(big.cap, 1);
		if (!big.set || !big.used) {
			free(big.set);
			free(big.used);
			return -ENOMEM;
		}
		for (size_t i = 0; i < w->cap; i++)
			if (w->used[i]) {
				size_t j = slot_of(&big, &w->set[i]);
				big.set[j] = w->set[i];
				big.used[j] = 1;
			}
		free(w->set);
		free(w->used);
		w->set = big.set;
		w->used = big.used;
		w->cap = big.cap;
	}
	size_t i = slot_of(w, cid);
	if (w->used[i])
		return 0;
	w->set[i] = *cid;
	w->used[i] = 1;
	w->n++;
	return 1;
}

static bool zero_leaf(struct walk *w, const struct blk_cid *cid, uint64_t len)
{
	for (unsigned i = 0; i < ZCACHE; i++)
		if (w->zc[i].used && w->zc[i].len == len &&
		    blk_cid_equal(&w->zc[i].cid, cid))
			return true;
	if (!blk_walk_is_zero_leaf(cid, len))
		return false;
	w->zc[w->znext] = (struct zslot){true, len, *cid};
	w->znext = (w->znext + 1) % ZCACHE;
	return true;
}

static int fail(struct walk *w, const struct blk_cid *cid, int err)
{
	if (w->st && !w->st->has_failed) {
		w->st->has_failed = true;
		w->st->failed = *cid;
	}
	return err;
}

static int wfetch(struct walk *w, const struct blk_cid *cid, void **data,
		  size_t *len)
{
	if (w->pend && blk_cid_equal(&w->pend_cid, cid)) {
		*data = w->pend;
		*len = w->pend_len;
		w->pend = NULL;
		return 0;
	}
	w->st->fetches++;
	int ret = w->cfg->fetch(w->cfg->ctx, cid, data, len);
	return ret ? fail(w, cid, ret) : 0;
}

static int wvisit(struct walk *w, const struct blk_cid *cid,
		  const uint8_t *data, size_t len)
{
	w->st->blocks++;
	w->st->bytes += len;
	return w->cfg->visit ? w->cfg->visit(w->cfg->ctx, cid, data, len) : 0;
}

/* dir.h's fetch: the pending block, or the caller's fetch. */
static int dir_fetch(void *ctx, const struct blk_cid *cid, void **data,
		     size_t *len)
{
	return wfetch(ctx, cid, data, len);
}

/* dir.h's visit: directory and shard blocks, once each. */
static int dir_visit(void *ctx, const struct blk_cid *cid, const uint8_t *block,
		     size_t len)
{
	struct walk *w = ctx;
	int ret = mark(w, cid);

	if (ret <= 0)
		return ret;
	return wvisit(w, cid, block, len);
}

static int walk_node(struct walk *w, const struct blk_cid *cid, bool has_len,
		     uint64_t len);

static int dir_entry(void *arg, const struct blk_dag_dirent *e)
{
	return walk_node(arg, &e->cid, e->has_tsize, e->tsize);
}

/* The links of file node @data (already visited), in order. */
static int walk_file_links(struct walk *w, const uint8_t *data, size_t len)
{
	struct blk_pb_iter it;
	struct blk_pb_link l;
	int ret = blk_pb_iter_init(&it, data, len, NULL);

	if (!ret && w->cfg->prefetch) {
		struct blk_cid ahead[BLK_DAG_FILE_FANOUT];
		size_t n = 0;

		while (n < BLK_DAG_FILE_FANOUT &&
		       blk_pb_iter_next(&it, &l) == 1)
			if (!(w->n && w->used[slot_of(w, &l.cid)]) &&
			    !(l.has_tsize && zero_leaf(w, &l.cid, l.tsize)))
				ahead[n++] = l.cid;
		if (n)
			w->cfg->prefetch(w->cfg->ctx, ahead, n);
		ret = blk_pb_iter_init(&it, data, len, NULL);
	}
	while (!ret && blk_pb_iter_next(&it, &l) == 1)
		ret = walk_node(w, &l.cid, l.has_tsize, l.tsize);
	return ret;
}

/* A dag-pb block @cid, not seen before: a directory goes to dir.h's
 * reader (which visits its blocks), anything else is visited here, and a
 * file's links followed. */
static int walk_pb(struct walk *w, const struct blk_cid *cid)
{
	struct blk_pb_node node;
	struct blk_unixfs u;
	void *data;
	size_t len;
	int ret = wfetch(w, cid, &data, &len);

	if (ret)
		return ret;
	if (blk_pb_decode(data, len, &node, NULL, 0) || !node.has_data ||
	    blk_unixfs_decode(node.data, node.data_len, &u, NULL, 0)) {
		free(data);
		return fail(w, cid, -EBADMSG);
	}
	if (blk_unixfs_is_dir(u.type)) {
		struct blk_dag_dir_reader r = {dir_fetch, dir_visit, w};

		/* The reader marks and visits it, fetching it from here. */
		w->pend_cid = *cid;
		w->pend = data;
		w->pend_len = len;
		ret = blk_dag_dir_each(&r, cid, dir_entry, w);
		free(w->pend);
		w->pend = NULL;
		return ret == -EBADMSG ? fail(w, cid, ret) : ret;
	}
	ret = mark(w, cid);
	if (ret == 1)
		ret = wvisit(w, cid, data, len);
	if (!ret && u.type == BLK_UNIXFS_FILE)
		ret = walk_file_links(w, data, len);
	else if (!ret && node.n_links)
		ret = fail(w, cid, -EBADMSG); /* a symlink or raw with links */
	free(data);
	return ret;
}

/* Any node: skip it if seen, else visit it and what is under it. */
static int walk_node(struct walk *w, const struct blk_cid *cid, bool has_len,
		     uint64_t len)
{
	int ret;

	if (cid->codec == BLK_CODEC_DAG_PB) {
		if (w->n && w->used[slot_of(w, cid)])
			return 0;
		if (w->depth >= BLK_WALK_MAX_DEPTH)
			return fail(w, cid, -ELOOP);
		w->depth++;
		ret = walk_pb(w, cid);
		w->depth--;
		return ret;
	}
	if (cid->codec != BLK_CODEC_RAW)
		return fail(w, cid, -EBADMSG);
	ret = mark(w, cid);
	if (ret <= 0)
		return ret;
	if (has_len && zero_leaf(w, cid, len)) {
		w->st->zeros++;
		return wvisit(w, cid, zeros, (size_t)len);
	}
	void *data;
	size_t n;
	ret = wfetch(w, cid, &data, &n);
	if (ret)
		return ret;
	ret = wvisit(w, cid, data, n);
	free(data);
	return ret;
}

int blk_dag_walk(const struct blk_walk_config *cfg, const struct blk_cid *root,
		 struct blk_walk_stats *st)
{
	struct blk_walk_stats dummy;
	struct walk w = {.cfg = cfg, .st = st ? st : &dummy};
	int ret;

	memset(w.st, 0, sizeof(*w.st));
	if (!cfg || !cfg->fetch || !root)
		return -EINVAL;
	ret = walk_node(&w, root, false, 0);
	free(w.pend);
	free(w.set);
	free(w.used);
	return ret;
}

int blk_dag_walk_resolve(blk_dag_fetch_fn fetch, void *ctx,
			 const struct blk_cid *root, const char *path,
			 struct blk_cid *out)
{
	struct blk_dag_dir_reader r = {fetch, NULL, ctx};
	struct blk_cid cur = *root;

	for (const char *p = path ? path : ""; *p;) {
		struct blk_dag_dirent e;
		size_t n;
		int ret;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (!n)
			break;
		if (cur.codec != BLK_CODEC_DAG_PB)
			return -ENOTDIR;
		ret = blk_dag_dir_lookup(&r, &cur, p, n, &e);
		if (ret)
			return ret;
		cur = e.cid;
		p += n;
	}
	*out = cur;
	return 0;
}
