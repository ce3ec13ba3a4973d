/* The UnixFS directory builder (a plain node or a HAMT, as the importer
 * decides: rules in dir.h) and the directory reader's front, which reads
 * plain directories itself and HAMTs through hamt.c. */
#include "blocks/dag/dir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/hamt.h"
#include "blocks/dag/murmur3.h"
#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"

/* More than a plain directory's Data field takes beyond its links (UnixFS
 * { Type, mode, mtime } and the field's header): rule 5 uses this bound
 * whatever the metadata, so that blk_dag_dir_will_shard needs none. */
#define DIR_DATA_MAX 64

/*
 * Invariants of the builder:
 * 1. ents[0 .. n) are the entries added since new or reset; each name is
 *    names[name_off .. name_off + name_len) and valid.
 * 2. estimate is the importer's final estimate (dir.h rule 2): the sum of
 *    name + CID bytes over entries added without a SUBDIR flag.
 * 3. peak is the greatest estimate the importer saw while adding them in
 *    this order: max over adds of the estimate after the add, a
 *    BLK_DAG_DIR_SUBDIR entry counted at its own add.
 * 4. links_bytes is the size of the links of the plain node (PBNode field
 *    2 headers included), whatever their order.
 */
struct dir_ent {
	size_t name_off;
	size_t name_len;
	struct blk_cid cid;
	uint64_t tsize;
};

struct blk_dag_dir {
	struct dir_ent *ents;
	size_t n, cap;
	uint8_t *names;
	size_t names_len, names_cap;
	uint64_t estimate;
	uint64_t peak;
	uint64_t links_bytes;
	enum blk_hash hash;
	struct blk_hamt_ent *hents; /* scratch of finish, kept for reuse */
	size_t hents_cap;
};

bool blk_dag_name_valid(const uint8_t *name, size_t len)
{
	if (len == 0 || len > BLK_DAG_NAME_MAX)
		return false;
	if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
		return false;
	return !memchr(name, '/', len) && !memchr(name, '\0', len);
}

int blk_dag_dir_new(struct blk_dag_dir **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->hash = BLK_HASH_DEFAULT;
	return 0;
}

int blk_dag_dir_set_hash(struct blk_dag_dir *d, enum blk_hash hash)
{
	if (hash != BLK_HASH_SHA2_256 && hash != BLK_HASH_BLAKE2B_256)
		return -EINVAL;
	d->hash = hash;
	return 0;
}

void blk_dag_dir_free(struct blk_dag_dir **d)
{
	if (!*d)
		return;
	free((*d)->ents);
	free((*d)->names);
	free((*d)->hents);
	free(*d);
	*d = NULL;
}

void blk_dag_dir_reset(struct blk_dag_dir *d)
{
	d->n = 0;
	d->names_len = 0;
	d->estimate = 0;
	d->peak = 0;
	d->links_bytes = 0;
}

size_t blk_dag_dir_count(const struct blk_dag_dir *d)
{
	return d->n;
}

static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Bytes the link (Hash, Name, Tsize) takes in a PBNode, its own field
 * header included. */
static uint64_t link_bytes(size_t cid_len, size_t name_len, uint64_t tsize)
{
	uint64_t l = 1 + varint_len(cid_len) + cid_len + 1 +
		     varint_len(name_len) + name_len + 1 + varint_len(tsize);

	return 1 + varint_len(l) + l;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t ncap = *cap ? *cap : 16;
	void *np;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	np = realloc(*p, ncap * size);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

uint64_t blk_dag_dir_entry_estimate(size_t name_len, const struct blk_cid *cid)
{
	uint8_t b[BLK_CID_MAX_BYTES];

	return name_len + blk_cid_to_bytes(cid, b);
}

int blk_dag_dir_add(struct blk_dag_dir *d, const void *name, size_t len,
		    const struct blk_cid *cid, uint64_t tsize, unsigned flags)
{
	const unsigned subdir =
	    BLK_DAG_DIR_SUBDIR | BLK_DAG_DIR_SUBDIR_IMPLICIT;
	uint8_t cid_bytes[BLK_CID_MAX_BYTES];
	size_t cid_len;
	uint64_t est, now;
	struct dir_ent *e;

	if (!blk_dag_name_valid(name, len) || tsize > BLK_PB_MAX_TSIZE ||
	    (flags & ~subdir) || flags == subdir)
		return -EINVAL;
	if (d->n >= UINT32_MAX)
		return -EOVERFLOW;
	if (grow((void **)&d->ents, &d->cap, d->n + 1, sizeof(*d->ents)) ||
	    grow((void **)&d->names, &d->names_cap, d->names_len + len, 1))
		return -ENOMEM;

	e = &d->ents[d->n++];
	e->name_off = d->names_len;
	e->name_len = len;
	e->cid = *cid;
	e->tsize = tsize;
	memcpy(d->names + d->names_len, name, len);
	d->names_len += len;

	cid_len = blk_cid_to_bytes(cid, cid_bytes);
	est = blk_dag_dir_entry_estimate(len, cid);
	if (!(flags & subdir))
		d->estimate += est;
	now = d->estimate + (flags & BLK_DAG_DIR_SUBDIR ? est : 0);
	if (now > d->peak)
		d->peak = now;
	d->links_bytes += link_bytes(cid_len, len, tsize);
	return 0;
}

bool blk_dag_dir_will_shard(const struct blk_dag_dir *d)
{
	return d->peak > BLK_DAG_DIR_SHARD_THRESHOLD ||
	       d->links_bytes + DIR_DATA_MAX > BLK_PB_MAX_BLOCK;
}

static int finish_hamt(struct blk_dag_dir *d,
		       const struct blk_dag_file_meta *meta,
		       blk_dag_emit_fn emit, void *ctx, struct blk_cid *root,
		       uint64_t *tsize)
{
	int rc;

	if (grow((void **)&d->hents, &d->hents_cap, d->n, sizeof(*d->hents)))
		return -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		const struct dir_ent *e = &d->ents[i];
		struct blk_hamt_ent *h = &d->hents[i];

		h->name = d->names + e->name_off;
		h->name_len = e->name_len;
		h->hash = blk_murmur3_x64_64(h->name, e->name_len);
		h->cid = &e->cid;
		h->tsize = e->tsize;
	}
	rc = blk_hamt_sort(d->hents, d->n);
	if (rc == 0)
		rc = blk_hamt_build(d->hents, d->n, meta, d->hash, emit, ctx,
				    root, tsize);
	return rc;
}

/* Encode the plain node over @links (sorted), emit it, give CID and Tsize. */
static int emit_plain(const struct blk_pb_link *links, size_t n,
		      const struct blk_dag_file_meta *meta, enum blk_hash hash,
		      blk_dag_emit_fn emit, void *ctx, struct blk_cid *root,
		      uint64_t *tsize)
{
	struct blk_unixfs u = {.type = BLK_UNIXFS_DIRECTORY};
	struct blk_pb_node node = {.links = links, .n_links = n};
	uint8_t data[DIR_DATA_MAX], *buf;
	uint64_t sum = 0;
	size_t dlen, len;
	int rc;

	if (meta) {
		u.has_mode = meta->has_mode;
		u.mode = meta->mode & 07777;
		u.has_mtime = meta->has_mtime;
		u.mtime_sec = meta->mtime_sec;
		u.mtime_nsec = meta->mtime_nsec;
	}
	rc = blk_unixfs_encode(&u, data, sizeof(data), &dlen);
	if (rc)
		return rc == -ENOBUFS ? -EINVAL : rc;
	node.data = data;
	node.data_len = dlen;
	node.has_data = true;

	len = blk_pb_encoded_size(&node);
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	rc = blk_pb_encode(&node, buf, len, &len);
	for (size_t i = 0; rc == 0 && i < n; i++)
		sum += links[i].tsize;
	if (rc == 0 && sum > BLK_PB_MAX_TSIZE - len)
		rc = -EOVERFLOW;
	if (rc == 0) {
		blk_cid_compute_hash(root, hash, BLK_CODEC_DAG_PB, buf, len);
		*tsize = len + sum;
		rc = emit ? emit(ctx, root, buf, len) : 0;
	}
	free(buf);
	return rc;
}

static int finish_plain(struct blk_dag_dir *d,
			const struct blk_dag_file_meta *meta,
			blk_dag_emit_fn emit, void *ctx, struct blk_cid *root,
			uint64_t *tsize)
{
	struct blk_pb_link *links = calloc(d->n ? d->n : 1, sizeof(*links));
	int rc = 0;

	if (!links)
		return -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		const struct dir_ent *e = &d->ents[i];

		links[i].cid = e->cid;
		links[i].name = d->names + e->name_off;
		links[i].name_len = e->name_len;
		links[i].has_name = true;
		links[i].tsize = e->tsize;
		links[i].has_tsize = true;
	}
	blk_pb_sort_links(links, d->n);
	for (size_t i = 1; i < d->n; i++)
		if (blk_pb_link_cmp(&links[i - 1], &links[i]) == 0)
			rc = -EEXIST;
	if (rc == 0)
		rc = emit_plain(links, d->n, meta, d->hash, emit, ctx, root,
				tsize);
	free(links);
	return rc;
}

int blk_dag_dir_finish(struct blk_dag_dir *d,
		       const struct blk_dag_file_meta *meta,
		       blk_dag_emit_fn emit, void *ctx, struct blk_cid *root,
		       uint64_t *tsize)
{
	if (meta && meta->has_mtime && meta->mtime_nsec > 999999999)
		return -EINVAL;
	if (blk_dag_dir_will_shard(d))
		return finish_hamt(d, meta, emit, ctx, root, tsize);
	return finish_plain(d, meta, emit, ctx, root, tsize);
}

/* --- Reading --- */

/* Check a plain directory's links (dir.h rule 1): every link named with a
 * valid name, no name twice (the strict decoder has checked the order). */
static int check_plain(const uint8_t *block, size_t len)
{
	struct blk_pb_link l, prev;
	struct blk_pb_iter it;
	bool first = true;

	if (blk_pb_iter_init(&it, block, len, NULL))
		return -EBADMSG;
	while (blk_pb_iter_next(&it, &l) == 1) {
		if (!l.has_name || !blk_dag_name_valid(l.name, l.name_len))
			return -EBADMSG;
		if (!first && blk_pb_link_cmp(&prev, &l) >= 0)
			return -EBADMSG;
		prev = l;
		first = false;
	}
	return 0;
}

int blk_dag_dir_decode(const uint8_t *block, size_t len,
		       struct blk_dag_dir_info *info)
{
	struct blk_pb_node node;
	struct blk_pb_iter it;
	struct blk_unixfs u;
	int rc;

	memset(info, 0, sizeof(*info));
	if (blk_pb_iter_init(&it, block, len, &node) || !node.has_data ||
	    blk_unixfs_decode(node.data, node.data_len, &u, NULL, 0))
		return -EBADMSG;
	if (u.type == BLK_UNIXFS_HAMT_SHARD) {
		info->sharded = true;
		return blk_hamt_check_root(block, len, &info->meta);
	}
	if (u.type != BLK_UNIXFS_DIRECTORY)
		return -ENOTDIR;
	if (u.data_len || u.n_blocksizes || u.has_fanout || u.has_hash_type)
		return -EBADMSG;
	rc = check_plain(block, len);
	if (rc)
		return rc;
	info->meta.has_mode = u.has_mode;
	info->meta.mode = u.mode;
	info->meta.has_mtime = u.has_mtime;
	info->meta.mtime_sec = u.mtime_sec;
	info->meta.mtime_nsec = u.mtime_nsec;
	return 0;
}

/* Fetch, check and visit the root node of directory @dir: *@block is
 * malloc'd (the caller frees it) on success, NULL on failure. */
static int open_root(const struct blk_dag_dir_reader *r,
		     const struct blk_cid *dir, void **block, size_t *len,
		     struct blk_dag_dir_info *info)
{
	int rc;

	*block = NULL;
	if (dir->codec != BLK_CODEC_DAG_PB)
		return -ENOTDIR;
	rc = r->fetch(r->ctx, dir, block, len);
	if (rc == 0)
		rc = blk_dag_dir_decode(*block, *len, info);
	if (rc == 0 && r->visit)
		rc = r->visit(r->ctx, dir, *block, *len);
	if (rc) {
		free(*block);
		*block = NULL;
	}
	return rc;
}

static int each_plain(const uint8_t *block, size_t len, blk_dag_dirent_fn fn,
		      void *arg)
{
	struct blk_pb_iter it;
	struct blk_pb_link l;
	int rc = 0;

	if (blk_pb_iter_init(&it, block, len, NULL))
		return -EBADMSG;
	while (rc == 0 && blk_pb_iter_next(&it, &l) == 1) {
		struct blk_dag_dirent e = {
		    .name = l.name,
		    .name_len = l.name_len,
		    .cid = l.cid,
		    .has_tsize = l.has_tsize,
		    .tsize = l.tsize,
		};

		rc = fn(arg, &e);
	}
	return rc;
}

int blk_dag_dir_each(const struct blk_dag_dir_reader *r,
		     const struct blk_cid *dir, blk_dag_dirent_fn fn, void *arg)
{
	struct blk_dag_dir_info info;
	void *block;
	size_t len;
	int rc = open_root(r, dir, &block, &len, &info);

	if (rc)
		return rc;
	if (info.sharded)
		rc = blk_hamt_each(r, block, len, fn, arg);
	else
		rc = each_plain(block, len, fn, arg);
	free(block);
	return rc;
}

static int lookup_plain(const uint8_t *block, size_t len, const uint8_t *name,
			size_t name_len, struct blk_dag_dirent *out)
{
	struct blk_pb_link want = {
	    .name = name, .name_len = name_len, .has_name = true};
	struct blk_pb_iter it;
	struct blk_pb_link l;

	if (blk_pb_iter_init(&it, block, len, NULL))
		return -EBADMSG;
	while (blk_pb_iter_next(&it, &l) == 1) {
		int c = blk_pb_link_cmp(&l, &want);

		if (c > 0)
			break;
		if (c == 0) {
			out->name = name;
			out->name_len = name_len;
			out->cid = l.cid;
			out->has_tsize = l.has_tsize;
			out->tsize = l.tsize;
			return 0;
		}
	}
	return -ENOENT;
}

int blk_dag_dir_lookup(const struct blk_dag_dir_reader *r,
		       const struct blk_cid *dir, const void *name, size_t len,
		       struct blk_dag_dirent *out)
{
	struct blk_dag_dir_info info;
	void *block;
	size_t block_len;
	int rc;

	if (!blk_dag_name_valid(name, len))
		return -EINVAL;
	rc = open_root(r, dir, &block, &block_len, &info);
	if (rc)
		return rc;
	if (info.sharded)
		rc = blk_hamt_lookup(r, block, block_len, name, len, out);
	else
		rc = lookup_plain(block, block_len, name, len, out);
	free(block);
	return rc;
}
