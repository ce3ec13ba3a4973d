/* HAMT-sharded UnixFS directories: building the shards of a directory
 * bottom-up, and checking, walking and searching them (layout in hamt.h). */
#include "blocks/dag/hamt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/murmur3.h"
#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"

#define BITFIELD_BYTES (BLK_HAMT_FANOUT / 8)
/* A shard's UnixFS Data: type, a 32-byte bitfield, hashType, fanout, mode
 * and mtime take well under this. */
#define SHARD_DATA_MAX 128

static const char hex_upper[] = "0123456789ABCDEF";

/* The slot of @hash in a shard at @depth (hamt.h rule 1). */
static unsigned slot_at(uint64_t hash, unsigned depth)
{
	return (unsigned)(hash >> (56 - 8 * depth)) & 0xff;
}

static int name_cmp(const uint8_t *a, size_t alen, const uint8_t *b,
		    size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c)
		return c;
	return (alen > blen) - (alen < blen);
}

static int ent_cmp(const void *pa, const void *pb)
{
	const struct blk_hamt_ent *a = pa, *b = pb;

	if (a->hash != b->hash)
		return a->hash < b->hash ? -1 : 1;
	return name_cmp(a->name, a->name_len, b->name, b->name_len);
}

int blk_hamt_sort(struct blk_hamt_ent *ents, size_t n)
{
	if (n > 1)
		qsort(ents, n, sizeof(*ents), ent_cmp);
	return 0;
}

/* --- Building --- */

struct hamt_build {
	const struct blk_hamt_ent *ents;
	const struct blk_dag_file_meta *meta;
	enum blk_hash hash;
	blk_dag_emit_fn emit;
	void *ctx;
	/* One table of links and of link names per level: a level's links
	 * stay while the sub-shards below it are built. */
	struct blk_pb_link (*links)[BLK_HAMT_FANOUT];
	uint8_t (*names)[BLK_HAMT_FANOUT][2 + BLK_DAG_NAME_MAX];
	uint8_t *buf;
	size_t cap;
};

/* Write the 256-bit bitfield @bits (bit s = slot s, bits[s / 8] bit s % 8)
 * big-endian without leading zero bytes into @out; returns its length. */
static size_t bitfield_bytes(const uint8_t bits[BITFIELD_BYTES], uint8_t *out)
{
	size_t n = 0;
	int i = BITFIELD_BYTES - 1;

	while (i >= 0 && bits[i] == 0)
		i--;
	for (; i >= 0; i--)
		out[n++] = bits[i];
	return n;
}

static int link_slot(const struct blk_pb_link *l);

/* Encode the shard of the @n links @links (sorted, one per slot) at
 * @depth, emit it and give its CID and Tsize. The bitfield comes from the
 * links' names; the metadata goes on the root only. */
static int shard_finish(struct hamt_build *b, unsigned depth,
			const struct blk_pb_link *links, size_t n,
			struct blk_cid *cid, uint64_t *tsize)
{
	uint8_t bits[BITFIELD_BYTES] = {0}, bf[BITFIELD_BYTES];
	uint8_t data[SHARD_DATA_MAX];
	struct blk_unixfs u = {
	    .type = BLK_UNIXFS_HAMT_SHARD,
	    .data = bf,
	    .has_hash_type = true,
	    .hash_type = BLK_UNIXFS_HASH_MURMUR3,
	    .has_fanout = true,
	    .fanout = BLK_HAMT_FANOUT,
	};
	struct blk_pb_node node = {.links = links, .n_links = n};
	uint64_t sum = 0;
	size_t dlen, len;
	int rc;

	for (size_t i = 0; i < n; i++) {
		int slot = link_slot(&links[i]);

		bits[slot / 8] |= (uint8_t)(1u << (slot % 8));
	}
	u.data_len = bitfield_bytes(bits, bf);
	if (depth == 0 && b->meta) {
		u.has_mode = b->meta->has_mode;
		u.mode = b->meta->mode & 07777;
		u.has_mtime = b->meta->has_mtime;
		u.mtime_sec = b->meta->mtime_sec;
		u.mtime_nsec = b->meta->mtime_nsec;
	}
	rc = blk_unixfs_encode(&u, data, sizeof(data), &dlen);
	if (rc)
		return rc == -ENOBUFS ? -EINVAL : rc;
	node.data = data;
	node.data_len = dlen;
	node.has_data = true;

	len = blk_pb_encoded_size(&node);
	if (len > b->cap) {
		uint8_t *nb = realloc(b->buf, len);

		if (!nb)
			return -ENOMEM;
		b->buf = nb;
		b->cap = len;
	}
	rc = blk_pb_encode(&node, b->buf, b->cap, &len);
	if (rc)
		return rc == -EINVAL ? -EOVERFLOW : rc;
	for (size_t i = 0; i < n; i++)
		sum += links[i].tsize;
	if (sum > BLK_PB_MAX_TSIZE - len)
		return -EOVERFLOW;
	blk_cid_compute_hash(cid, b->hash, BLK_CODEC_DAG_PB, b->buf, len);
	*tsize = len + sum;
	return b->emit ? b->emit(b->ctx, cid, b->buf, len) : 0;
}

/* Build the shard at @depth over ents[@lo, @hi), which share their first
 * @depth hash bytes (hamt.h rules 2-5). Entries have distinct hashes, so a
 * slot shared at depth 7 cannot happen. */
static int build_level(struct hamt_build *b, size_t lo, size_t hi,
		       unsigned depth, struct blk_cid *cid, uint64_t *tsize)
{
	size_t n = 0;
	int rc;

	for (size_t i = lo, j; i < hi; i = j) {
		const struct blk_hamt_ent *e = &b->ents[i];
		unsigned slot = slot_at(e->hash, depth);
		struct blk_pb_link *l = &b->links[depth][n];
		uint8_t *name = b->names[depth][n];

		for (j = i + 1; j < hi; j++)
			if (slot_at(b->ents[j].hash, depth) != slot)
				break;
		memset(l, 0, sizeof(*l));
		name[0] = (uint8_t)hex_upper[slot >> 4];
		name[1] = (uint8_t)hex_upper[slot & 15];
		l->name = name;
		l->has_name = true;
		l->has_tsize = true;
		if (j - i == 1) {
			memcpy(name + 2, e->name, e->name_len);
			l->name_len = 2 + e->name_len;
			l->cid = *e->cid;
			l->tsize = e->tsize;
		} else {
			if (depth + 1 >= BLK_HAMT_MAX_DEPTH)
				return -EOVERFLOW;
			l->name_len = 2;
			rc =
			    build_level(b, i, j, depth + 1, &l->cid, &l->tsize);
			if (rc)
				return rc;
		}
		n++;
	}
	return shard_finish(b, depth, b->links[depth], n, cid, tsize);
}

int blk_hamt_build(const struct blk_hamt_ent *ents, size_t n,
		   const struct blk_dag_file_meta *meta, enum blk_hash hash,
		   blk_dag_emit_fn emit, void *ctx, struct blk_cid *root,
		   uint64_t *tsize)
{
	struct hamt_build b = {
	    .ents = ents,
	    .meta = meta,
	    .hash = hash,
	    .emit = emit,
	    .ctx = ctx,
	};
	int rc = 0;

	if (hash != BLK_HASH_SHA2_256 && hash != BLK_HASH_BLAKE2B_256)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (ents[i].name_len == 0 ||
		    ents[i].name_len > BLK_DAG_NAME_MAX)
			return -EINVAL;
		if (i == 0 || ents[i].hash != ents[i - 1].hash)
			continue;
		if (ents[i].name_len == ents[i - 1].name_len &&
		    !memcmp(ents[i].name, ents[i - 1].name, ents[i].name_len))
			return -EEXIST;
		rc = -EOVERFLOW; /* an -EEXIST later wins: it says more */
	}
	if (rc)
		return rc;

	b.links = calloc(BLK_HAMT_MAX_DEPTH, sizeof(*b.links));
	b.names = malloc(BLK_HAMT_MAX_DEPTH * sizeof(*b.names));
	if (!b.links || !b.names) {
		rc = -ENOMEM;
		goto out;
	}
	rc = build_level(&b, 0, n, 0, root, tsize);
out:
	free(b.links);
	free(b.names);
	free(b.buf);
	return rc;
}

/* --- Reading --- */

static int hex_digit(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The slot a link name starts with, or -1. */
static int link_slot(const struct blk_pb_link *l)
{
	int hi, lo;

	if (!l->has_name || l->name_len < 2)
		return -1;
	hi = hex_digit(l->name[0]);
	lo = hex_digit(l->name[1]);
	return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Check the shard @block at @depth whose ancestors' slots are the top
 * @depth bytes of @prefix (hamt.h, "The reader checks"). Leaves @it at the
 * first link for the caller's walk and @bits with the bitfield. */
static int check_shard(const uint8_t *block, size_t len, unsigned depth,
		       uint64_t prefix, struct blk_dag_file_meta *meta,
		       struct blk_pb_iter *it, uint8_t bits[BITFIELD_BYTES])
{
	struct blk_pb_node node;
	struct blk_pb_link l;
	struct blk_unixfs u;
	size_t count = 0, k;
	int prev = -1, slot;
	struct blk_pb_iter walk;

	if (blk_pb_iter_init(it, block, len, &node) || !node.has_data ||
	    blk_unixfs_decode(node.data, node.data_len, &u, NULL, 0))
		return -EBADMSG;
	if (u.type != BLK_UNIXFS_HAMT_SHARD)
		return depth == 0 ? -ENOTDIR : -EBADMSG;
	if (!u.has_fanout || u.fanout != BLK_HAMT_FANOUT || !u.has_hash_type ||
	    u.hash_type != BLK_UNIXFS_HASH_MURMUR3 || u.n_blocksizes != 0 ||
	    u.data_len > BITFIELD_BYTES)
		return -EBADMSG;
	memset(bits, 0, BITFIELD_BYTES);
	for (k = 0; k < u.data_len; k++) {
		uint8_t byte = u.data[u.data_len - 1 - k];

		bits[k] = byte;
		count += (size_t)__builtin_popcount(byte);
	}
	if (count != node.n_links || (depth > 0 && count == 0))
		return -EBADMSG;

	walk = *it;
	while (blk_pb_iter_next(&walk, &l) == 1) {
		slot = link_slot(&l);
		if (slot <= prev || !(bits[slot / 8] & (1u << (slot % 8))))
			return -EBADMSG;
		prev = slot;
		if (l.name_len == 2) {
			if (l.cid.codec != BLK_CODEC_DAG_PB ||
			    depth + 1 >= BLK_HAMT_MAX_DEPTH)
				return -EBADMSG;
		} else {
			unsigned shift = 56 - 8 * depth;
			uint64_t want = (prefix >> shift << shift) |
					((uint64_t)slot << shift);
			uint64_t h;

			if (!blk_dag_name_valid(l.name + 2, l.name_len - 2))
				return -EBADMSG;
			h = blk_murmur3_x64_64(l.name + 2, l.name_len - 2);
			if (h >> shift << shift != want)
				return -EBADMSG;
		}
	}

	if (meta) {
		memset(meta, 0, sizeof(*meta));
		meta->has_mode = u.has_mode;
		meta->mode = u.mode;
		meta->has_mtime = u.has_mtime;
		meta->mtime_sec = u.mtime_sec;
		meta->mtime_nsec = u.mtime_nsec;
	}
	return 0;
}

int blk_hamt_check_root(const uint8_t *block, size_t len,
			struct blk_dag_file_meta *meta)
{
	struct blk_pb_iter it;
	uint8_t bits[BITFIELD_BYTES];

	return check_shard(block, len, 0, 0, meta, &it, bits);
}

/* Fetch the sub-shard @cid into *@data (NULL on failure). */
static int fetch_shard(const struct blk_dag_dir_reader *r,
		       const struct blk_cid *cid, void **data, size_t *len)
{
	int rc;

	*data = NULL;
	rc = r->fetch(r->ctx, cid, data, len);
	if (rc) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

struct hamt_walk {
	const struct blk_dag_dir_reader *r;
	blk_dag_dirent_fn fn;
	void *arg;
};

static int walk_shard(struct hamt_walk *w, const uint8_t *block, size_t len,
		      unsigned depth, uint64_t prefix)
{
	uint8_t bits[BITFIELD_BYTES];
	struct blk_pb_iter it;
	struct blk_pb_link l;
	int rc = check_shard(block, len, depth, prefix, NULL, &it, bits);

	if (rc)
		return rc == -ENOTDIR ? -EBADMSG : rc;
	while (rc == 0 && blk_pb_iter_next(&it, &l) == 1) {
		unsigned shift = 56 - 8 * depth;
		uint64_t slot = (uint64_t)link_slot(&l);

		if (l.name_len > 2) {
			struct blk_dag_dirent e = {
			    .name = l.name + 2,
			    .name_len = l.name_len - 2,
			    .cid = l.cid,
			    .has_tsize = l.has_tsize,
			    .tsize = l.tsize,
			};

			rc = w->fn(w->arg, &e);
		} else {
			void *sub;
			size_t sub_len;

			rc = fetch_shard(w->r, &l.cid, &sub, &sub_len);
			if (rc)
				break;
			if (w->r->visit)
				rc = w->r->visit(w->r->ctx, &l.cid, sub,
						 sub_len);
			if (rc == 0)
				rc = walk_shard(w, sub, sub_len, depth + 1,
						prefix | slot << shift);
			free(sub);
		}
	}
	return rc;
}

int blk_hamt_each(const struct blk_dag_dir_reader *r, const uint8_t *block,
		  size_t len, blk_dag_dirent_fn fn, void *arg)
{
	struct hamt_walk w = {.r = r, .fn = fn, .arg = arg};
	uint8_t bits[BITFIELD_BYTES];
	struct blk_pb_iter it;
	int rc = check_shard(block, len, 0, 0, NULL, &it, bits);

	if (rc)
		return rc;
	return walk_shard(&w, block, len, 0, 0);
}

int blk_hamt_lookup(const struct blk_dag_dir_reader *r, const uint8_t *block,
		    size_t len, const uint8_t *name, size_t name_len,
		    struct blk_dag_dirent *out)
{
	uint64_t h, prefix = 0;
	void *held = NULL;
	int rc = 0;

	if (!blk_dag_name_valid(name, name_len))
		return -EINVAL;
	h = blk_murmur3_x64_64(name, name_len);
	for (unsigned depth = 0;; depth++) {
		uint8_t bits[BITFIELD_BYTES];
		unsigned slot = slot_at(h, depth);
		struct blk_pb_iter it;
		struct blk_pb_link l = {0};
		void *sub;
		size_t sub_len;

		rc = check_shard(block, len, depth, prefix, NULL, &it, bits);
		if (rc) {
			rc = rc == -ENOTDIR && depth > 0 ? -EBADMSG : rc;
			break;
		}
		rc = -ENOENT;
		if (!(bits[slot / 8] & (1u << (slot % 8))))
			break;
		while (blk_pb_iter_next(&it, &l) == 1)
			if (link_slot(&l) == (int)slot)
				break;
		if (l.name_len > 2) {
			if (l.name_len - 2 == name_len &&
			    !memcmp(l.name + 2, name, name_len)) {
				out->name = name;
				out->name_len = name_len;
				out->cid = l.cid;
				out->has_tsize = l.has_tsize;
				out->tsize = l.tsize;
				rc = 0;
			}
			break;
		}
		rc = fetch_shard(r, &l.cid, &sub, &sub_len);
		if (rc == 0 && r->visit)
			rc = r->visit(r->ctx, &l.cid, sub, sub_len);
		free(held);
		held = sub;
		if (rc)
			break;
		block = sub;
		len = sub_len;
		prefix |= (uint64_t)slot << (56 - 8 * depth);
	}
	free(held);
	return rc;
}

/* --- Updating one entry --- */

/* One shard on the updated name's path, with room for one more link. */
struct path_level {
	void *block;
	struct blk_pb_link links[BLK_HAMT_FANOUT + 1];
	size_t n;
	size_t pos; /* where the name's slot is, or would be inserted */
	bool used;  /* the slot holds a link */
};

/* Fetch and decode the shards from the root down the path of hash @h in
 * @lv, stopping at the shard whose slot is empty or holds a leaf; its
 * depth in *@depth. */
static int load_path(const struct blk_dag_dir_reader *r,
		     const struct blk_cid *root, uint64_t h,
		     struct path_level *lv, unsigned *depth)
{
	struct blk_cid at = *root;
	uint64_t prefix = 0;

	for (unsigned d = 0; d < BLK_HAMT_MAX_DEPTH; d++) {
		struct path_level *p = &lv[d];
		unsigned slot = slot_at(h, d);
		uint8_t bits[BITFIELD_BYTES];
		struct blk_pb_node node;
		struct blk_pb_iter it;
		size_t len;
		int rc;

		if (d == 0 && at.codec != BLK_CODEC_DAG_PB)
			return -ENOTDIR;
		rc = fetch_shard(r, &at, &p->block, &len);
		if (rc == 0)
			rc = check_shard(p->block, len, d, prefix, NULL, &it,
					 bits);
		if (rc == 0 && blk_pb_decode(p->block, len, &node, p->links,
					     BLK_HAMT_FANOUT))
			rc = -EBADMSG;
		if (rc)
			return rc == -ENOTDIR && d > 0 ? -EBADMSG : rc;
		p->n = node.n_links;
		for (p->pos = 0; p->pos < p->n; p->pos++)
			if (link_slot(&p->links[p->pos]) >= (int)slot)
				break;
		p->used =
		    p->pos < p->n && link_slot(&p->links[p->pos]) == (int)slot;
		*depth = d;
		if (!p->used || p->links[p->pos].name_len > 2)
			return 0;
		at = p->links[p->pos].cid;
		prefix |= (uint64_t)slot << (56 - 8 * d);
	}
	return -EBADMSG; /* check_shard refuses sub-shards at depth 7 */
}

/* Put a sub-shard holding the leaf at lv[@depth].links[pos] and the new
 * entry @e (their hashes differ, and agree on the first @depth + 1 bytes)
 * in that leaf's place. */
static int split_leaf(struct hamt_build *b, struct path_level *p,
		      unsigned depth, const struct blk_hamt_ent *e)
{
	struct blk_pb_link *l = &p->links[p->pos];
	struct blk_hamt_ent two[2] = {*e};
	int rc;

	two[1].name = l->name + 2;
	two[1].name_len = l->name_len - 2;
	two[1].hash = blk_murmur3_x64_64(two[1].name, two[1].name_len);
	two[1].cid = &l->cid;
	two[1].tsize = l->tsize;
	if (two[1].hash == e->hash)
		return -EOVERFLOW;
	blk_hamt_sort(two, 2);
	b->links = calloc(BLK_HAMT_MAX_DEPTH, sizeof(*b->links));
	b->names = malloc(BLK_HAMT_MAX_DEPTH * sizeof(*b->names));
	if (!b->links || !b->names)
		return -ENOMEM;
	b->ents = two;
	rc = build_level(b, 0, 2, depth + 1, &l->cid, &l->tsize);
	l->name_len = 2;
	return rc;
}

/* Encode the path's shards again from @depth up, the last changed link of
 * each in place; a shard below the root left with a single leaf is
 * replaced by that leaf in its parent (hamt.h rule 2). */
static int store_path(struct hamt_build *b, struct path_level *lv,
		      unsigned depth, uint64_t h, struct blk_cid *root,
		      uint64_t *tsize)
{
	uint8_t carry[2 + BLK_DAG_NAME_MAX];
	struct blk_pb_link up = {0};
	bool carrying = false;
	int rc;

	for (unsigned d = depth + 1; d-- > 0;) {
		struct path_level *p = &lv[d];
		unsigned slot = slot_at(h, d);

		if (carrying) {
			p->links[p->pos] = up;
			carrying = false;
		} else if (d < depth) {
			p->links[p->pos].cid = up.cid;
			p->links[p->pos].tsize = up.tsize;
		}
		if (d > 0 && p->n == 1 && p->links[0].name_len > 2) {
			/* The leaf's name, prefixed with the parent's slot
			 * (it may already sit in @carry). */
			up = p->links[0];
			memmove(carry + 2, up.name + 2, up.name_len - 2);
			slot = slot_at(h, d - 1);
			carry[0] = (uint8_t)hex_upper[slot >> 4];
			carry[1] = (uint8_t)hex_upper[slot & 15];
			up.name = carry;
			carrying = true;
			continue;
		}
		rc = shard_finish(b, d, p->links, p->n, &up.cid, &up.tsize);
		if (rc)
			return rc;
	}
	*root = up.cid;
	*tsize = up.tsize;
	return 0;
}

int blk_hamt_update(const struct blk_dag_dir_reader *r,
		    const struct blk_cid *root, const uint8_t *name,
		    size_t name_len, const struct blk_cid *cid, uint64_t tsize,
		    const struct blk_dag_file_meta *meta, enum blk_hash hash,
		    blk_dag_emit_fn emit, void *ctx, struct blk_cid *new_root,
		    uint64_t *new_tsize)
{
	struct hamt_build b = {
	    .meta = meta, .hash = hash, .emit = emit, .ctx = ctx};
	struct blk_hamt_ent e = {
	    .name = name, .name_len = name_len, .cid = cid, .tsize = tsize};
	uint8_t leaf_name[2 + BLK_DAG_NAME_MAX];
	struct path_level *lv, *p;
	unsigned depth = 0, slot;
	bool same;
	int rc;

	if (!blk_dag_name_valid(name, name_len) || tsize > BLK_PB_MAX_TSIZE ||
	    (hash != BLK_HASH_SHA2_256 && hash != BLK_HASH_BLAKE2B_256) ||
	    (meta && meta->has_mtime && meta->mtime_nsec > 999999999))
		return -EINVAL;
	lv = calloc(BLK_HAMT_MAX_DEPTH, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	e.hash = blk_murmur3_x64_64(name, name_len);
	rc = load_path(r, root, e.hash, lv, &depth);
	if (rc)
		goto out;

	p = &lv[depth];
	slot = slot_at(e.hash, depth);
	same = p->used && p->links[p->pos].name_len == 2 + name_len &&
	       !memcmp(p->links[p->pos].name + 2, name, name_len);
	if (!cid) {
		rc = -ENOENT;
		if (!same)
			goto out;
		memmove(&p->links[p->pos], &p->links[p->pos + 1],
			(p->n - p->pos - 1) * sizeof(p->links[0]));
		p->n--;
	} else if (p->used && !same) {
		rc = split_leaf(&b, p, depth, &e);
		if (rc)
			goto out;
	} else {
		struct blk_pb_link l = {
		    .cid = *cid,
		    .name = leaf_name,
		    .name_len = 2 + name_len,
		    .has_name = true,
		    .has_tsize = true,
		    .tsize = tsize,
		};

		leaf_name[0] = (uint8_t)hex_upper[slot >> 4];
		leaf_name[1] = (uint8_t)hex_upper[slot & 15];
		memcpy(leaf_name + 2, name, name_len);
		if (!p->used) {
			memmove(&p->links[p->pos + 1], &p->links[p->pos],
				(p->n - p->pos) * sizeof(p->links[0]));
			p->n++;
		}
		p->links[p->pos] = l;
	}
	rc = store_path(&b, lv, depth, e.hash, new_root, new_tsize);
out:
	for (unsigned d = 0; d < BLK_HAMT_MAX_DEPTH; d++)
		free(lv[d].block);
	free(lv);
	free(b.links);
	free(b.names);
	free(b.buf);
	return rc;
}
