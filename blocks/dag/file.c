/* The balanced UnixFS file layout, built leaf by leaf: the nodes that
 * ipfs-unixfs-importer's balanced builder makes for the same leaves. */

/*
 * The importer's rule (layout/balanced.ts with dag-builder/file.ts): cut the
 * list of leaves into consecutive groups of 174, make one node of each
 * group, and repeat on the list of nodes until one entry is left: the root.
 * A list of one entry is never wrapped, so a one-leaf file is its leaf, and
 * a group of one (the last group of a level) does get a node of one link.
 * Each node is a dag-pb PBNode whose Data is a UnixFS FILE with blocksizes
 * = each child's file bytes, and whose links have Name "" and Tsize = the
 * child's dag size (raw leaf: its bytes; node: its block bytes plus its
 * links' Tsizes). Children of 0 file bytes get no link and no blocksize.
 * Every node carries the file's mode and mtime (the importer builds each
 * from the same UnixFS options); a one-leaf file with mode or mtime is a
 * node with the leaf's bytes inline as UnixFS Data and no links.
 *
 * Streaming: level k holds the entries of level k not yet grouped; the
 * 174th entry closes a group at once, whose node becomes the next entry of
 * level k + 1. The groups are the same as the importer's, level by level,
 * so the nodes are too; only the order of emission differs (children still
 * before parents).
 * Invariants:
 *  1. levels[k].n < BLK_DAG_FILE_FANOUT between calls.
 *  2. Memory is the levels in use (at most BLK_DAG_FILE_MAX_DEPTH + 1 of
 *     174 entries) and one node buffer, whatever the file size.
 *  3. After an error or finish, only blk_dag_file_free is allowed.
 */
#include "blocks/dag/file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"

#define NSEC_MAX 999999999u

/* A child: a raw leaf or a node. */
struct entry {
	struct blk_cid cid;
	uint64_t file_size; /* file bytes below it (its blocksize) */
	uint64_t dag_size;  /* the Tsize of a link to it */
};

struct level {
	struct entry e[BLK_DAG_FILE_FANOUT];
	size_t n;	 /* entries not yet grouped */
	uint64_t groups; /* groups made of this level */
};

struct blk_dag_file {
	struct blk_dag_file_meta meta;
	blk_dag_emit_fn emit;
	blk_dag_read_fn read;
	void *ctx;
	enum blk_hash hash;
	struct level *levels[BLK_DAG_FILE_MAX_DEPTH + 1];
	uint64_t file_size;
	bool done; /* finished or failed */
	uint8_t *buf;
	size_t buf_cap;
	struct blk_pb_link links[BLK_DAG_FILE_FANOUT];
	uint64_t bs[BLK_DAG_FILE_FANOUT];
	/* blk_dag_file_add_zeros: zero[k] is the subtree of 174^k zero
	 * leaves of zero_piece bytes (made when first needed). */
	uint64_t zero_piece;
	size_t nzero;
	struct entry zero[BLK_DAG_FILE_MAX_DEPTH + 1];
};

int blk_dag_file_new(struct blk_dag_file **out,
		     const struct blk_dag_file_meta *meta, blk_dag_emit_fn emit,
		     blk_dag_read_fn read, void *ctx)
{
	struct blk_dag_file *f;

	*out = NULL;
	if (meta && meta->has_mtime && meta->mtime_nsec > NSEC_MAX)
		return -EINVAL;
	if (meta && (meta->has_mode || meta->has_mtime) && !read)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (meta) {
		f->meta = *meta;
		f->meta.mode &= 07777;
	}
	f->emit = emit;
	f->read = read;
	f->ctx = ctx;
	f->hash = BLK_HASH_DEFAULT;
	*out = f;
	return 0;
}

int blk_dag_file_set_hash(struct blk_dag_file *f, enum blk_hash hash)
{
	if (f->done || f->levels[0] ||
	    (hash != BLK_HASH_SHA2_256 && hash != BLK_HASH_BLAKE2B_256))
		return -EINVAL;
	f->hash = hash;
	return 0;
}

void blk_dag_file_free(struct blk_dag_file **fp)
{
	struct blk_dag_file *f = *fp;

	if (!f)
		return;
	for (size_t k = 0; k <= BLK_DAG_FILE_MAX_DEPTH; k++)
		free(f->levels[k]);
	free(f->buf);
	free(f);
	*fp = NULL;
}

static bool has_meta(const struct blk_dag_file *f)
{
	return f->meta.has_mode || f->meta.has_mtime;
}

/* The UnixFS FILE message of a node, with the file's metadata. */
static void file_unixfs(const struct blk_dag_file *f, struct blk_unixfs *u)
{
	memset(u, 0, sizeof(*u));
	u->type = BLK_UNIXFS_FILE;
	u->has_mode = f->meta.has_mode;
	u->mode = f->meta.mode;
	u->has_mtime = f->meta.has_mtime;
	u->mtime_sec = f->meta.mtime_sec;
	u->mtime_nsec = f->meta.mtime_nsec;
}

static int reserve(struct blk_dag_file *f, size_t n)
{
	uint8_t *p;

	if (n <= f->buf_cap)
		return 0;
	p = realloc(f->buf, n);
	if (!p)
		return -ENOMEM;
	f->buf = p;
	f->buf_cap = n;
	return 0;
}

/* Encode the UnixFS message @u and a PBNode of it with @n links into f->buf,
 * hash and emit it. *@len gets the block's size. */
static int emit_node(struct blk_dag_file *f, const struct blk_unixfs *u,
		     size_t n, struct blk_cid *cid, size_t *len)
{
	struct blk_pb_node node = {.links = f->links, .n_links = n};
	size_t ulen = blk_unixfs_encoded_size(u), plen;
	uint8_t *ubuf;
	int rc;

	/* The UnixFS bytes go at the buffer's end, the block at its start:
	 * the block ends with them, so they never overlap before copying. */
	node.has_data = true;
	node.data_len = ulen;
	plen = blk_pb_encoded_size(&node);
	if (plen > BLK_PB_MAX_BLOCK)
		return -EFBIG;
	rc = reserve(f, plen + ulen);
	if (rc < 0)
		return rc;
	ubuf = f->buf + plen;
	rc = blk_unixfs_encode(u, ubuf, ulen, &ulen);
	if (rc < 0)
		return rc;
	node.data = ubuf;
	rc = blk_pb_encode(&node, f->buf, plen, &plen);
	if (rc < 0)
		return rc;
	blk_cid_compute_hash(cid, f->hash, BLK_CODEC_DAG_PB, f->buf, plen);
	*len = plen;
	return f->emit ? f->emit(f->ctx, cid, f->buf, plen) : 0;
}

/* Make the node of the @n entries at @e into *@out. */
static int make_node(struct blk_dag_file *f, const struct entry *e, size_t n,
		     struct entry *out)
{
	struct blk_unixfs u;
	uint64_t tsizes = 0, data = 0;
	size_t nl = 0, len;
	int rc;

	for (size_t i = 0; i < n; i++) {
		struct blk_pb_link *l = &f->links[nl];

		if (e[i].file_size == 0)
			continue; /* the importer links no empty child */
		memset(l, 0, sizeof(*l));
		l->cid = e[i].cid;
		l->has_name = true; /* Name "" */
		l->has_tsize = true;
		l->tsize = e[i].dag_size;
		f->bs[nl] = e[i].file_size;
		tsizes += e[i].dag_size;
		data += e[i].file_size;
		nl++;
	}
	file_unixfs(f, &u);
	u.blocksizes = f->bs;
	u.n_blocksizes = nl;
	rc = emit_node(f, &u, nl, &out->cid, &len);
	if (rc < 0)
		return rc;
	out->file_size = data;
	out->dag_size = tsizes + len;
	return out->dag_size > BLK_PB_MAX_TSIZE ? -EFBIG : 0;
}

/* Append @e to level @k, closing its group when it is full. */
static int push(struct blk_dag_file *f, size_t k, const struct entry *e)
{
	struct level *lv;
	struct entry node;
	int rc;

	if (k > BLK_DAG_FILE_MAX_DEPTH)
		return -EFBIG;
	if (!f->levels[k]) {
		f->levels[k] = calloc(1, sizeof(*f->levels[k]));
		if (!f->levels[k])
			return -ENOMEM;
	}
	lv = f->levels[k];
	lv->e[lv->n++] = *e;
	if (lv->n < BLK_DAG_FILE_FANOUT)
		return 0;
	rc = make_node(f, lv->e, lv->n, &node);
	if (rc < 0)
		return rc;
	lv->n = 0;
	lv->groups++;
	return push(f, k + 1, &node);
}

int blk_dag_file_add_leaf(struct blk_dag_file *f, const struct blk_cid *cid,
			  uint64_t size)
{
	struct entry e = {.cid = *cid, .file_size = size, .dag_size = size};
	int rc;

	if (f->done || cid->codec != BLK_CODEC_RAW || size > BLK_PB_MAX_BLOCK ||
	    size > BLK_PB_MAX_TSIZE - f->file_size)
		return -EINVAL;
	rc = push(f, 0, &e);
	if (rc < 0) {
		f->done = true;
		return rc;
	}
	f->file_size += size;
	return 0;
}

/* The subtree of 174^@k zero leaves of @piece bytes: zero[k], made (and
 * emitted, once per builder) from zero[k - 1]. */
static int zero_subtree(struct blk_dag_file *f, size_t k, uint64_t piece,
			const struct blk_cid *leaf)
{
	if (f->zero_piece != piece) {
		f->zero_piece = piece;
		f->nzero = 1;
		f->zero[0] = (struct entry){
		    .cid = *leaf, .file_size = piece, .dag_size = piece};
	}
	while (f->nzero <= k) {
		struct entry group[BLK_DAG_FILE_FANOUT];
		int rc;

		for (size_t i = 0; i < BLK_DAG_FILE_FANOUT; i++)
			group[i] = f->zero[f->nzero - 1];
		rc = make_node(f, group, BLK_DAG_FILE_FANOUT,
			       &f->zero[f->nzero]);
		if (rc < 0)
			return rc;
		f->nzero++;
	}
	return 0;
}

int blk_dag_file_add_zeros(struct blk_dag_file *f, const struct blk_cid *leaf,
			   uint64_t piece, uint64_t count)
{
	int rc = 0;

	if (f->done || leaf->codec != BLK_CODEC_RAW || !piece ||
	    piece > BLK_PB_MAX_BLOCK ||
	    count > (BLK_PB_MAX_TSIZE - f->file_size) / piece)
		return -EINVAL;
	while (count > 0 && rc == 0) {
		uint64_t span = 1;
		size_t k = 0;

		/* The highest level whose lower levels are all empty and
		 * whose whole zero subtree still fits: there it goes in as
		 * one entry, the node the leaves one by one would make. */
		while (k < BLK_DAG_FILE_MAX_DEPTH &&
		       (!f->levels[k] || f->levels[k]->n == 0) &&
		       count / BLK_DAG_FILE_FANOUT >= span) {
			span *= BLK_DAG_FILE_FANOUT;
			k++;
		}
		rc = zero_subtree(f, k, piece, leaf);
		for (size_t j = 0; rc == 0 && j < k; j++) {
			/* levels below had their groups: the root rule of
			 * close_levels must not stop there */
			if (!f->levels[j] &&
			    !(f->levels[j] = calloc(1, sizeof(*f->levels[j]))))
				rc = -ENOMEM;
			else
				f->levels[j]->groups++;
		}
		if (rc == 0)
			rc = push(f, k, &f->zero[k]);
		if (rc == 0) {
			f->file_size += span * piece;
			count -= span;
		}
	}
	if (rc < 0)
		f->done = true;
	return rc;
}

/* The root of a file of one leaf @e: the leaf, or with metadata a node with
 * the leaf's bytes inline. */
static int single_leaf(struct blk_dag_file *f, struct entry *e)
{
	struct blk_unixfs u;
	uint8_t *data = NULL;
	size_t len;
	int rc;

	if (!has_meta(f))
		return 0;
	if (e->file_size) {
		data = malloc(e->file_size);
		if (!data)
			return -ENOMEM;
		rc = f->read(f->ctx, &e->cid, data, e->file_size);
		if (rc < 0)
			goto out;
	}
	file_unixfs(f, &u);
	u.data = data;
	u.data_len = e->file_size;
	rc = emit_node(f, &u, 0, &e->cid, &len);
	if (rc == 0)
		e->dag_size = len;
out:
	free(data);
	return rc;
}

/* Close the levels bottom-up; *@root gets the one entry left. */
static int close_levels(struct blk_dag_file *f, struct entry *root)
{
	for (size_t k = 0; k <= BLK_DAG_FILE_MAX_DEPTH; k++) {
		struct level *lv = f->levels[k];
		struct entry node;
		int rc;

		if (lv->groups == 0 && lv->n == 1) {
			*root = lv->e[0];
			return k == 0 ? single_leaf(f, root) : 0;
		}
		if (lv->n == 0)
			continue; /* its last group closed: level k+1 has it */
		rc = make_node(f, lv->e, lv->n, &node);
		if (rc < 0)
			return rc;
		lv->n = 0;
		lv->groups++;
		rc = push(f, k + 1, &node);
		if (rc < 0)
			return rc;
	}
	return -EFBIG;
}

int blk_dag_file_finish(struct blk_dag_file *f, struct blk_cid *root,
			uint64_t *file_size, uint64_t *dag_size)
{
	struct entry r;
	int rc;

	if (f->done)
		return -EINVAL;
	f->done = true;
	if (!f->levels[0]) {
		/* No leaves: the importer's chunker gives one empty chunk. */
		struct blk_cid empty;

		blk_cid_compute_hash(&empty, f->hash, BLK_CODEC_RAW, "", 0);
		rc = push(f, 0, &(struct entry){.cid = empty});
		if (rc < 0)
			return rc;
	}
	rc = close_levels(f, &r);
	if (rc < 0)
		return rc;
	*root = r.cid;
	*file_size = f->file_size;
	*dag_size = r.dag_size;
	return 0;
}
