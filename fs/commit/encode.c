/* One commit's encoding: changed inodes, read from one snapshot, into
 * UnixFS and attribute blocks bottom-up (see encode.h). */
#include "fs/commit/encode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blocks/base/bytes.h"
#include "blocks/base/log.h"
#include "blocks/dag/attrs.h"
#include "blocks/dag/dir.h"
#include "blocks/dag/file.h"
#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"
#include "fs/commit/cache.h"
#include "fs/meta.h"

/*
 * A run, in four steps on one snapshot:
 *  1. marks: every change mark; each names an inode (many may name one).
 *  2. closure: each marked inode that still exists, and every directory
 *     above it up to the root (the parents family: a file with hard links
 *     has several), with each directory's depth.
 *  3. files and symlinks: their UnixFS nodes (files over their existing
 *     chunk CIDs; holes as zero leaves, never stored).
 *  4. directories, deepest first: each one's UnixFS directory and
 *     attribute block from its entries, taking each child's node from
 *     this run or, unchanged, from its dag record.
 * Invariants:
 *  1. A directory is encoded after every changed directory below it (its
 *     depth is larger), so the child records it reads are this run's.
 *  2. Every block a record names is referenced in the store by a batch
 *     committed before bfs_encode_run returns (blocks_flush); the records
 *     and the marks' deletion are in the caller's @t, committed after.
 *  3. Marks are deleted by key, exactly those read from the snapshot: a
 *     change committed after the snapshot keeps its mark.
 */

/* Hole pieces are cut at multiples of this many bytes of the file. */
#define HOLE_PIECE (256u << 10)
/* Buffered block bytes before the block batch is committed. */
#define BLOCKS_FLUSH_BYTES (32u << 20)

enum slot_state { S_EMPTY, S_MARKED, S_DIR, S_DONE, S_GONE };

struct slot {
	uint64_t ino;
	uint8_t state;
	bool is_dir;
	bool queued;	 /* on the marked list */
	uint32_t depth;	 /* directories: 0 for the root */
	uint64_t parent; /* directories: the one directory above */
	struct bfs_dag_rec rec;
};

struct run {
	const struct bfs_encode_config *cfg;
	struct blk_snap *snap;
	struct blk_txn *t;
	struct bfs_encode_result *res;
	struct slot *slots; /* open addressing by ino */
	size_t cap, used;
	uint64_t *todo; /* marked inodes, then directories */
	size_t ntodo, captodo;
	/* Block references not yet committed, and their bytes. */
	struct blk_txn *bt;
	void **bufs;
	size_t nbufs, capbufs, buf_bytes;
};

static const uint8_t zeros[HOLE_PIECE];

/* ---- the inode map ---------------------------------------------------- */

static struct slot *slot_find(struct run *r, uint64_t ino, bool add)
{
	if (add && (r->used + 1) * 2 > r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 1024;
		struct slot *n = calloc(ncap, sizeof(*n));

		if (!n)
			return NULL;
		for (size_t i = 0; i < r->cap; i++) {
			if (r->slots[i].state == S_EMPTY)
				continue;
			size_t j = (r->slots[i].ino * 0x9e3779b97f4a7c15ull) &
				   (ncap - 1);
			while (n[j].state != S_EMPTY)
				j = (j + 1) & (ncap - 1);
			n[j] = r->slots[i];
		}
		free(r->slots);
		r->slots = n;
		r->cap = ncap;
	}
	if (!r->cap)
		return NULL;
	size_t j = (ino * 0x9e3779b97f4a7c15ull) & (r->cap - 1);
	while (r->slots[j].state != S_EMPTY) {
		if (r->slots[j].ino == ino)
			return &r->slots[j];
		j = (j + 1) & (r->cap - 1);
	}
	if (!add)
		return NULL;
	r->slots[j].ino = ino;
	r->slots[j].state = S_MARKED;
	r->used++;
	return &r->slots[j];
}

static int todo_push(struct run *r, uint64_t ino)
{
	if (r->ntodo == r->captodo) {
		size_t n = r->captodo ? r->captodo * 2 : 256;
		uint64_t *v = realloc(r->todo, n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->todo = v;
		r->captodo = n;
	}
	r->todo[r->ntodo++] = ino;
	return 0;
}

/* ---- blocks ----------------------------------------------------------- */

static int blocks_flush(struct run *r)
{
	int ret = 0;

	if (r->bt) {
		ret = blk_txn_commit(r->bt, false);
		blk_txn_free(r->bt);
		r->bt = NULL;
	}
	for (size_t i = 0; i < r->nbufs; i++)
		free(r->bufs[i]);
	r->nbufs = 0;
	r->buf_bytes = 0;
	return ret;
}

/* blk_dag_emit_fn: reference the block in the store (a copy of its bytes
 * lives until the batch commits). */
static int emit_block(void *ctx, const struct blk_cid *cid,
		      const uint8_t *block, size_t len)
{
	struct run *r = ctx;
	void *copy;
	int ret;

	if (r->buf_bytes >= BLOCKS_FLUSH_BYTES && (ret = blocks_flush(r)))
		return ret;
	if (!r->bt && !(r->bt = blk_txn_new(r->cfg->store)))
		return -ENOMEM;
	if (r->nbufs == r->capbufs) {
		size_t n = r->capbufs ? r->capbufs * 2 : 64;
		void **v = realloc(r->bufs, n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->bufs = v;
		r->capbufs = n;
	}
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, block, len);
	r->bufs[r->nbufs++] = copy;
	r->buf_bytes += len;
	r->res->blocks++;
	r->res->block_bytes += len;
	return blk_txn_ref(r->bt, cid, copy, len);
}

/* The CID of @len zero bytes (a hole's leaf). */
static void zero_cid(struct run *r, size_t len, struct blk_cid *out)
{
	blk_cid_compute_hash(out, r->cfg->hash, BLK_CODEC_RAW, zeros, len);
}

/* blk_dag_read_fn: a one-chunk file's bytes, for its inline node. */
static int read_leaf(void *ctx, const struct blk_cid *cid, uint8_t *buf,
		     size_t len)
{
	struct run *r = ctx;
	struct blk_cid z;
	void *data = NULL;
	size_t n = 0;
	int ret = blk_store_get(r->cfg->store, cid, &data, &n);

	/* Not stored here: a hole's leaf (never stored anywhere: made, not
	 * fetched), else the cluster's. Hashing zeros only then keeps the
	 * commit of many small files from hashing each file's size of
	 * zeros. */
	if (ret == -ENOENT && len <= HOLE_PIECE) {
		zero_cid(r, len, &z);
		if (blk_cid_equal(&z, cid)) {
			memset(buf, 0, len);
			return 0;
		}
	}
	if (ret == -ENOENT && r->cfg->fetch)
		ret = r->cfg->fetch(r->cfg->fetch_arg, cid, &data, &n);
	if (!ret && n != len)
		ret = -EUCLEAN;
	if (!ret)
		memcpy(buf, data, len);
	free(data);
	return ret;
}

/* ---- records from the snapshot ---------------------------------------- */

static int get_inode(struct run *r, uint64_t ino, struct bfs_inode_rec *ir,
		     char *target, size_t tcap)
{
	uint8_t key[8], val[BFS_INODE_REC_LEN + BFS_SYMLINK_MAX];
	const char *tp;
	size_t tlen;
	int64_t n = blk_snap_get_into(r->snap, BFS_CF_INODES, key,
				      bfs_ino_key(key, ino), val, sizeof(val));

	if (n < 0)
		return (int)n;
	if ((size_t)n > sizeof(val) ||
	    bfs_inode_decode(val, (size_t)n, ir, &tp, &tlen))
		return -EUCLEAN;
	if (target) {
		if (tlen >= tcap)
			return -EUCLEAN;
		memcpy(target, tp, tlen);
		target[tlen] = '\0';
	}
	return 0;
}

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static struct blk_dag_file_meta unixfs_meta(const struct bfs_inode_rec *ir)
{
	return (struct blk_dag_file_meta){
	    .has_mode = true,
	    .mode = ir->mode & 07777,
	    .has_mtime = true,
	    .mtime_sec = (int64_t)ir->mtime.tv_sec,
	    .mtime_nsec = (uint32_t)ir->mtime.tv_nsec,
	};
}

/* ---- files and symlinks ----------------------------------------------- */

struct file_walk {
	struct run *r;
	struct blk_dag_file *f;
	uint64_t pos, size;
};

/* Zero leaves over [fw->pos, @to), cut at multiples of HOLE_PIECE: a
 * partial piece up to the first multiple, whole pieces as one run (a
 * terabyte hole is a few subtrees, blk_dag_file_add_zeros), a partial
 * piece after the last. */
static int add_hole(struct file_walk *fw, uint64_t to)
{
	uint64_t whole;
	struct blk_cid z;
	int ret;

	if (fw->pos >= to)
		return 0;
	if (fw->pos % HOLE_PIECE) {
		uint64_t next = (fw->pos / HOLE_PIECE + 1) * HOLE_PIECE;

		if (next > to)
			next = to;
		zero_cid(fw->r, (size_t)(next - fw->pos), &z);
		if ((ret = blk_dag_file_add_leaf(fw->f, &z, next - fw->pos)))
			return ret;
		fw->pos = next;
	}
	whole = (to - fw->pos) / HOLE_PIECE;
	if (whole) {
		zero_cid(fw->r, HOLE_PIECE, &z);
		if ((ret =
			 blk_dag_file_add_zeros(fw->f, &z, HOLE_PIECE, whole)))
			return ret;
		fw->pos += whole * HOLE_PIECE;
	}
	if (fw->pos < to) {
		zero_cid(fw->r, (size_t)(to - fw->pos), &z);
		if ((ret = blk_dag_file_add_leaf(fw->f, &z, to - fw->pos)))
			return ret;
		fw->pos = to;
	}
	return 0;
}

static int add_extent(void *arg, const uint8_t *key, size_t klen,
		      const uint8_t *val, size_t vlen)
{
	struct file_walk *fw = arg;
	uint64_t off = blk_get_be64(key + 8);
	struct blk_cid cid;
	uint32_t len;
	int ret = bfs_extent_decode(val, vlen, &len, NULL, &cid);

	if (ret)
		return -EUCLEAN;
	/* Extents cover whole blocks inside the size, in offset order. */
	if (off < fw->pos || off + len > fw->size)
		return -EUCLEAN;
	if ((ret = add_hole(fw, off)) ||
	    (ret = blk_dag_file_add_leaf(fw->f, &cid, len)))
		return ret;
	fw->pos = off + len;
	return 0;
}

static int encode_file(struct run *r, uint64_t ino,
		       const struct bfs_inode_rec *ir, struct bfs_dag_rec *out)
{
	struct blk_dag_file_meta meta = unixfs_meta(ir);
	struct file_walk fw = {.r = r, .size = ir->size};
	uint8_t prefix[8];
	uint64_t fsize;
	int ret;

	ret = blk_dag_file_new(&fw.f, &meta, emit_block, read_leaf, r);
	if (ret)
		return ret;
	ret = blk_dag_file_set_hash(fw.f, r->cfg->hash);
	if (!ret)
		ret = blk_snap_walk(r->snap, BFS_CF_EXTENTS,
				    &(struct blk_walk){
					.prefix = prefix,
					.plen = bfs_ino_key(prefix, ino),
					.klen_min = 16,
					.klen_max = 16,
					.klen_err = -EUCLEAN,
					.fn = add_extent,
					.arg = &fw,
				    });
	if (!ret)
		ret = add_hole(&fw, ir->size);
	if (!ret)
		ret =
		    blk_dag_file_finish(fw.f, &out->node, &fsize, &out->tsize);
	blk_dag_file_free(&fw.f);
	out->has_node = !ret;
	return ret;
}

static int encode_symlink(struct run *r, const struct bfs_inode_rec *ir,
			  const char *target, struct bfs_dag_rec *out)
{
	struct blk_dag_file_meta m = unixfs_meta(ir);
	struct blk_unixfs u = {
	    .type = BLK_UNIXFS_SYMLINK,
	    .data = (const uint8_t *)target,
	    .data_len = strlen(target),
	    .has_mode = true,
	    .mode = m.mode,
	    .has_mtime = true,
	    .mtime_sec = m.mtime_sec,
	    .mtime_nsec = m.mtime_nsec,
	};
	uint8_t ubuf[BFS_SYMLINK_MAX + 64], block[BFS_SYMLINK_MAX + 128];
	struct blk_pb_node node = {.has_data = true, .data = ubuf};
	size_t len;
	int ret = blk_unixfs_encode(&u, ubuf, sizeof(ubuf), &node.data_len);

	if (!ret)
		ret = blk_pb_encode(&node, block, sizeof(block), &len);
	if (ret)
		return ret;
	blk_cid_compute_hash(&out->node, r->cfg->hash, BLK_CODEC_DAG_PB, block,
			     len);
	out->has_node = true;
	out->tsize = len;
	return emit_block(r, &out->node, block, len);
}

/* The node of a file or symlink (none for other types). */
static int encode_leaf_inode(struct run *r, uint64_t ino,
			     const struct bfs_inode_rec *ir,
			     struct bfs_dag_rec *out)
{
	char target[BFS_SYMLINK_MAX + 1];
	struct bfs_inode_rec tmp;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (S_ISREG(ir->mode) && ir->size > BLK_PB_MAX_TSIZE)
		/* UnixFS (and the JavaScript tools) stop at 2^53 - 1 bytes:
		 * the entry keeps the file's attributes, not its data. */
		blk_log_err("inode %llu: %llu bytes, more than UnixFS "
			    "describes: the commit holds its attributes, not "
			    "its data",
			    (unsigned long long)ino,
			    (unsigned long long)ir->size);
	else if (S_ISREG(ir->mode))
		ret = encode_file(r, ino, ir, out);
	else if (S_ISLNK(ir->mode) &&
		 !(ret = get_inode(r, ino, &tmp, target, sizeof(target))))
		ret = encode_symlink(r, ir, target, out);
	return ret;
}

/* ---- attributes ------------------------------------------------------- */

/* An inode's xattrs, copied out of the snapshot. */
struct xattr_set {
	struct blk_xattr *v;
	size_t n, cap;
	uint8_t *arena;
	size_t used, size;
};

static void xattrs_clear(struct xattr_set *x)
{
	x->n = 0;
	x->used = 0;
}

static void xattrs_free(struct xattr_set *x)
{
	free(x->v);
	free(x->arena);
	memset(x, 0, sizeof(*x));
}

/* Make room for one more pair of @bytes (the arena moves: views are set
 * once all pairs are in, by xattrs_views). */
static int add_xattr(void *arg, const uint8_t *key, size_t klen,
		     const uint8_t *val, size_t vlen)
{
	struct xattr_set *x = arg;
	size_t nlen = klen - 8, need = x->used + nlen + vlen;

	if (x->n == x->cap) {
		size_t c = x->cap ? x->cap * 2 : 8;
		struct blk_xattr *v = realloc(x->v, c * sizeof(*v));

		if (!v)
			return -ENOMEM;
		x->v = v;
		x->cap = c;
	}
	if (need > x->size) {
		size_t sz = x->size ? x->size : 4096;
		uint8_t *a;

		while (sz < need)
			sz *= 2;
		if (!(a = realloc(x->arena, sz)))
			return -ENOMEM;
		x->arena = a;
		x->size = sz;
	}
	/* Offsets for now: xattrs_views turns them into pointers. */
	x->v[x->n] = (struct blk_xattr){
	    .name = (const uint8_t *)(uintptr_t)x->used,
	    .name_len = nlen,
	    .value = (const uint8_t *)(uintptr_t)(x->used + nlen),
	    .value_len = vlen,
	};
	memcpy(x->arena + x->used, key + 8, nlen);
	memcpy(x->arena + x->used + nlen, val, vlen);
	x->used = need;
	x->n++;
	return 0;
}

static int get_xattrs(struct run *r, uint64_t ino, struct xattr_set *x)
{
	uint8_t prefix[8];
	int ret;

	xattrs_clear(x);
	ret = blk_snap_walk(r->snap, BFS_CF_XATTRS,
			    &(struct blk_walk){
				.prefix = prefix,
				.plen = bfs_ino_key(prefix, ino),
				.klen_min = 9,
				.klen_max = 8 + 255,
				.klen_err = -EUCLEAN,
				.fn = add_xattr,
				.arg = x,
			    });
	for (size_t i = 0; !ret && i < x->n; i++) {
		x->v[i].name = x->arena + (uintptr_t)x->v[i].name;
		x->v[i].value = x->arena + (uintptr_t)x->v[i].value;
	}
	return ret;
}

static void attrs_of(const struct bfs_inode_rec *ir, const struct xattr_set *x,
		     struct blk_attrs *a)
{
	*a = (struct blk_attrs){
	    .mode = ir->mode,
	    .uid = ir->uid,
	    .gid = ir->gid,
	    .nlink = ir->nlink,
	    .size = ir->size,
	    .rdev = (S_ISCHR(ir->mode) || S_ISBLK(ir->mode)) ? ir->rdev : 0,
	    .atime = ts_ns(&ir->atime),
	    .mtime = ts_ns(&ir->mtime),
	    .ctime = ts_ns(&ir->ctime),
	    .btime = ts_ns(&ir->btime),
	    .xattrs = x->v,
	    .nxattrs = x->n,
	};
}

/* ---- directories ------------------------------------------------------ */

static int encode_dir(struct run *r, uint64_t ino, struct bfs_dag_rec *out);

struct dir_walk {
	struct run *r;
	struct blk_dag_dir *dir;
	struct blk_attrs_dir *adir;
	struct xattr_set x;
	bool nonempty;
};

/* The dag record of child @ino: this run's, the last commit's, or made
 * now (a child no commit has seen: not possible after format 2's
 * upgrade, but cheap to be robust to). */
static int child_rec(struct run *r, uint64_t ino, bool is_dir,
		     const struct bfs_inode_rec *ir, struct bfs_dag_rec *rec)
{
	struct slot *s = slot_find(r, ino, false);
	int ret;

	if (s && s->state == S_DONE) {
		*rec = s->rec;
		return 0;
	}
	if (s && s->state == S_DIR) /* below in the map: deeper, so done */
		return -EUCLEAN;
	ret = bfs_dag_get(NULL, r->snap, ino, rec);
	if (ret != -ENOENT)
		return ret;
	if (is_dir)
		return encode_dir(r, ino, rec);
	return encode_leaf_inode(r, ino, ir, rec);
}

static int add_entry(void *arg, const uint8_t *key, size_t klen,
		     const uint8_t *val, size_t vlen)
{
	struct dir_walk *w = arg;
	struct run *r = w->r;
	char target[BFS_SYMLINK_MAX + 1];
	struct blk_attr_entry e = {.name = key + 8, .name_len = klen - 8};
	struct bfs_inode_rec ir;
	struct bfs_dag_rec rec;
	uint8_t dtype;
	bool is_dir;
	int ret;

	if (bfs_dirent_decode(val, vlen, &e.ino, &dtype))
		return -EUCLEAN;
	is_dir = dtype == bfs_mode_dtype(S_IFDIR);
	ret = get_inode(r, e.ino, &ir, target, sizeof(target));
	if (ret == -ENOENT)
		ret = -EUCLEAN; /* an entry without its inode */
	if (!ret)
		ret = child_rec(r, e.ino, is_dir, &ir, &rec);
	if (ret)
		return ret;
	if (rec.has_node) {
		unsigned flags =
		    is_dir && rec.nonempty ? BLK_DAG_DIR_SUBDIR_IMPLICIT : 0;

		ret = blk_dag_dir_add(w->dir, e.name, e.name_len, &rec.node,
				      rec.tsize, flags);
		if (ret)
			return ret;
		w->nonempty = true;
	}
	e.dir = is_dir;
	e.node = rec.node;
	e.tsize = rec.tsize;
	e.no_node = !is_dir && S_ISREG(ir.mode) && !rec.has_node;
	if (is_dir) {
		e.attrs_cid = rec.attrs;
	} else {
		if ((ret = get_xattrs(r, e.ino, &w->x)))
			return ret;
		attrs_of(&ir, &w->x, &e.attrs);
		if (S_ISLNK(ir.mode)) {
			e.target = (const uint8_t *)target;
			e.target_len = strlen(target);
		}
	}
	return blk_attrs_dir_add(w->adir, &e);
}

static int encode_dir(struct run *r, uint64_t ino, struct bfs_dag_rec *out)
{
	struct dir_walk w = {.r = r};
	struct bfs_inode_rec ir;
	struct blk_dag_file_meta meta;
	struct blk_attrs self;
	uint8_t prefix[8];
	int ret;

	memset(out, 0, sizeof(*out));
	ret = get_inode(r, ino, &ir, NULL, 0);
	if (!ret && !S_ISDIR(ir.mode))
		ret = -EUCLEAN;
	if (!ret)
		ret = blk_dag_dir_new(&w.dir);
	if (!ret)
		ret = blk_attrs_dir_new(&w.adir);
	if (!ret)
		ret = blk_dag_dir_set_hash(w.dir, r->cfg->hash);
	if (!ret)
		ret = blk_attrs_dir_set_hash(w.adir, r->cfg->hash);
	if (!ret)
		ret = blk_snap_walk(r->snap, BFS_CF_DIRENTS,
				    &(struct blk_walk){
					.prefix = prefix,
					.plen = bfs_ino_key(prefix, ino),
					.klen_min = 9,
					.klen_max = 8 + BFS_NAME_MAX,
					.klen_err = -EUCLEAN,
					.fn = add_entry,
					.arg = &w,
				    });
	meta = unixfs_meta(&ir);
	if (!ret)
		ret = blk_dag_dir_finish(w.dir, &meta, emit_block, r,
					 &out->node, &out->tsize);
	if (!ret)
		ret = get_xattrs(r, ino, &w.x);
	if (!ret) {
		attrs_of(&ir, &w.x, &self);
		ret = blk_attrs_dir_finish(w.adir, &self, emit_block, r,
					   &out->attrs);
	}
	out->has_node = out->has_attrs = !ret;
	out->nonempty = w.nonempty;
	blk_dag_dir_free(&w.dir);
	blk_attrs_dir_free(&w.adir);
	xattrs_free(&w.x);
	r->res->inodes++;
	return ret;
}

/* ---- the run ---------------------------------------------------------- */

static int read_mark(void *arg, const uint8_t *key, size_t klen,
		     const uint8_t *val, size_t vlen)
{
	struct run *r = arg;
	struct slot *s;

	blk_txn_delete(r->t, BFS_CF_CHANGES, key, klen);
	r->res->marks++;
	if (vlen != 8)
		return 0; /* not ours: dropped with the mark */
	s = slot_find(r, blk_get_le64(val), true);
	if (!s)
		return -ENOMEM;
	if (s->queued)
		return 0;
	s->queued = true;
	return todo_push(r, s->ino);
}

/* A walk over @ino's parents records: each directory above it marked
 * (add_ancestors), the first one kept (a directory has exactly one; 0
 * for the root or an unlinked inode). */
struct parents_walk {
	struct run *r;
	uint64_t first;
};

static int add_ancestors(struct run *r, uint64_t ino);

static int on_parent(void *arg, const uint8_t *key, size_t klen,
		     const uint8_t *val, size_t vlen)
{
	struct parents_walk *pw = arg;
	uint64_t parent = blk_get_be64(key + 8);

	if (!pw->first)
		pw->first = parent;
	return add_ancestors(pw->r, parent);
}

static int walk_parents(struct run *r, uint64_t ino, uint64_t *first)
{
	struct parents_walk pw = {.r = r};
	uint8_t prefix[8];
	int ret = blk_snap_walk(r->snap, BFS_CF_PARENTS,
				&(struct blk_walk){
				    .prefix = prefix,
				    .plen = bfs_ino_key(prefix, ino),
				    .klen_min = 17,
				    .klen_max = 16 + BFS_NAME_MAX,
				    .klen_err = -EUCLEAN,
				    .fn = on_parent,
				    .arg = &pw,
				});

	*first = pw.first;
	return ret;
}

/* Mark directory @ino and those above it, once each. */
static int add_ancestors(struct run *r, uint64_t ino)
{
	struct slot *s = slot_find(r, ino, true);
	uint64_t parent;
	int ret;

	if (!s)
		return -ENOMEM;
	if (s->is_dir)
		return 0; /* done already, with those above */
	s->is_dir = true;
	s->state = S_DIR;
	if (ino == BFS_ROOT_INO)
		return 0;
	ret = walk_parents(r, ino, &parent);
	s = slot_find(r, ino, false); /* the map may have moved */
	s->parent = parent;
	return ret;
}

static uint32_t depth_of(struct run *r, uint64_t ino)
{
	uint32_t d = 0;

	for (struct slot *s = slot_find(r, ino, false);
	     s && s->ino != BFS_ROOT_INO && s->parent && d < UINT32_MAX - 1;
	     s = slot_find(r, s->parent, false))
		d++;
	return d;
}

/* Step 2 and 3 for one marked inode. */
static int visit_marked(struct run *r, uint64_t ino)
{
	struct bfs_inode_rec ir;
	struct slot *s;
	uint64_t parent;
	int ret = get_inode(r, ino, &ir, NULL, 0);

	if (ret == -ENOENT) { /* gone: so is what the last commit made */
		bfs_dag_del(r->t, ino);
		slot_find(r, ino, false)->state = S_GONE;
		return 0;
	}
	if (ret)
		return ret;
	if (S_ISDIR(ir.mode))
		return add_ancestors(r, ino);
	if (ir.nlink == 0)
		return 0; /* open but unlinked: in no directory */
	ret = walk_parents(r, ino, &parent);
	if (ret)
		return ret;
	s = slot_find(r, ino, false);
	ret = encode_leaf_inode(r, ino, &ir, &s->rec);
	if (ret)
		return ret;
	s = slot_find(r, ino, false);
	s->state = S_DONE;
	r->res->inodes++;
	bfs_dag_put(r->t, ino, &s->rec);
	return 0;
}

static int cmp_depth_desc(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	/* (depth << 32 | index) packed by run_dirs: deepest first */
	return *x < *y ? 1 : *x > *y ? -1 : 0;
}

/* Step 4: the directories in the map, deepest first. */
static int run_dirs(struct run *r)
{
	size_t n = 0;
	uint64_t *order;
	uint64_t *inos;
	int ret = 0;

	for (size_t i = 0; i < r->cap; i++)
		n += r->slots[i].is_dir && r->slots[i].state == S_DIR;
	order = calloc(n ? n : 1, sizeof(*order));
	inos = calloc(n ? n : 1, sizeof(*inos));
	if (!order || !inos) {
		free(order);
		free(inos);
		return -ENOMEM;
	}
	n = 0;
	for (size_t i = 0; i < r->cap; i++) {
		if (!r->slots[i].is_dir || r->slots[i].state != S_DIR)
			continue;
		inos[n] = r->slots[i].ino;
		order[n] = (uint64_t)depth_of(r, inos[n]) << 32 | n;
		n++;
	}
	qsort(order, n, sizeof(*order), cmp_depth_desc);
	for (size_t i = 0; !ret && i < n; i++) {
		uint64_t ino = inos[order[i] & 0xffffffffu];
		struct bfs_dag_rec rec;
		struct slot *s;

		ret = encode_dir(r, ino, &rec);
		if (ret == -ENOENT) { /* removed: its parent's change says so */
			ret = 0;
			continue;
		}
		s = slot_find(r, ino, false);
		s->rec = rec;
		s->state = S_DONE;
		if (!ret)
			bfs_dag_put(r->t, ino, &rec);
	}
	free(order);
	free(inos);
	return ret;
}

int bfs_encode_run(const struct bfs_encode_config *cfg, struct blk_snap *snap,
		   struct blk_txn *t, struct bfs_encode_result *res)
{
	struct run r = {.cfg = cfg, .snap = snap, .t = t, .res = res};
	struct slot *root;
	int ret;

	memset(res, 0, sizeof(*res));
	ret = blk_snap_walk(snap, BFS_CF_CHANGES,
			    &(struct blk_walk){.klen_min = 8,
					       .klen_max = 8,
					       .klen_err = -EUCLEAN,
					       .fn = read_mark,
					       .arg = &r});
	size_t nmarked = r.ntodo;
	for (size_t i = 0; !ret && i < nmarked; i++)
		ret = visit_marked(&r, r.todo[i]);
	if (!ret)
		ret = run_dirs(&r);
	root = ret ? NULL : slot_find(&r, BFS_ROOT_INO, false);
	if (root && root->state == S_DONE) {
		res->changed = true;
		res->root = root->rec.node;
		res->root_tsize = root->rec.tsize;
		res->attrs = root->rec.attrs;
	}
	int fret = blocks_flush(&r);
	if (!ret)
		ret = fret;
	free(r.slots);
	free(r.todo);
	free(r.bufs);
	return ret;
}
