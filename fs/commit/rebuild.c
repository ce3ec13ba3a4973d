/* The rebuild of the core's metadata from a head (rebuild.h): the walk of
 * the attribute tree, the records of each directory, and the file walkers
 * that turn UnixFS file nodes into extents on their own threads. */
#include "fs/commit/rebuild.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blocks/base/bytes.h"
#include "blocks/base/log.h"
#include "blocks/dag/attrs.h"
#include "blocks/dag/file.h"
#include "blocks/dag/head.h"
#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"
#include "fs/commit/cache.h"
#include "fs/meta.h"

/*
 * Invariants:
 *  1. The format record is written last, in the final batch: a database
 *     without it holds no finished rebuild.
 *  2. Records are committed at every flush (each BATCH_INOS new inodes and
 *     at the end of each directory), after the file walkers of the batch
 *     are done: an inode written in an earlier batch is found in the
 *     database, one of this batch in @batch. So the first entry of an
 *     inode (hard links: the others) is known without a set of every
 *     inode of the tree.
 *  3. A directory's inode record is written when its block is read (it
 *     leaves the queue); one found already then was reached twice.
 */

#define BATCH_INOS 1024
#define BATCH_RECORDS 8192 /* dirents of a batch, hard links included */
#define EXTENTS_PER_TXN 4096
#define ZERO_NODES 16
#define ZERO_CACHE 4
#define PATH_MAX_LEN 4096

struct rb;

/* A directory to read. */
struct qdir {
	uint64_t ino;
	struct blk_cid attrs, node;
	uint64_t tsize;
	char *path;
	struct qdir *next;
};

/* A regular file's first entry: its walk writes its extents and inode
 * record, in @t (which holds its xattrs and dag record already). */
struct job {
	uint64_t ino;
	struct bfs_inode_rec rec;
	struct blk_cid node;
	uint64_t tsize;
	struct blk_txn *t;
	char *path;
};

/* What the current batch made: ino -> mode (open addressing). */
struct batch {
	uint64_t ino[2 * BATCH_INOS];
	uint32_t mode[2 * BATCH_INOS];
	size_t n;
};

struct rb {
	struct blk_db *db;
	struct blk_store *store;
	const struct bfs_rebuild_ops *ops;
	struct bfs_rebuild_stats st;
	struct blk_txn *t;
	struct batch batch;
	size_t pending; /* entries in @t */
	struct job *jobs;
	size_t njobs;
	struct qdir *head, *tail;
	uint64_t max_ino;
	/* shared with the walkers */
	pthread_mutex_t lock;
	atomic_size_t next_job;
	atomic_uint_fast64_t blocks, extents, holes, max_ext;
	atomic_int err; /* the first error (its message in @msg) */
	char *msg;
	size_t msglen;
};

static int fail(struct rb *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct rb *r, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	if (!r->err) {
		r->err = err;
		va_start(ap, fmt);
		vsnprintf(r->msg, r->msglen, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
	return err;
}

static int fetch(struct rb *r, const struct blk_cid *cid, void **data,
		 size_t *len)
{
	atomic_fetch_add(&r->blocks, 1);
	*data = NULL;
	return r->ops->fetch(r->ops->ctx, cid, data, len);
}

static void batch_put(struct batch *b, uint64_t ino, uint32_t mode)
{
	size_t i = (size_t)(ino * 0x9e3779b97f4a7c15ull) % (2 * BATCH_INOS);

	while (b->ino[i] && b->ino[i] != ino)
		i = (i + 1) % (2 * BATCH_INOS);
	b->n += !b->ino[i];
	b->ino[i] = ino;
	b->mode[i] = mode;
}

/* The mode of inode @ino if written already (1), 0 if not, or an error. */
static int known(struct rb *r, uint64_t ino, uint32_t *mode)
{
	size_t i = (size_t)(ino * 0x9e3779b97f4a7c15ull) % (2 * BATCH_INOS);
	uint8_t key[8], val[BFS_INODE_REC_LEN + BFS_SYMLINK_MAX];
	struct bfs_inode_rec rec;
	const char *target;
	size_t tlen;

	for (; r->batch.ino[i]; i = (i + 1) % (2 * BATCH_INOS))
		if (r->batch.ino[i] == ino) {
			*mode = r->batch.mode[i];
			return 1;
		}
	int64_t n = blk_db_get_into(r->db, BFS_CF_INODES, key,
				    bfs_ino_key(key, ino), val, sizeof(val));
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	if ((size_t)n > sizeof(val) ||
	    bfs_inode_decode(val, (size_t)n, &rec, &target, &tlen))
		return -EUCLEAN;
	*mode = rec.mode;
	return 1;
}

static void ns_to_ts(int64_t ns, struct timespec *ts)
{
	int64_t s = ns / 1000000000, rem = ns % 1000000000;

	if (rem < 0) {
		rem += 1000000000;
		s--;
	}
	ts->tv_sec = (time_t)s;
	ts->tv_nsec = (long)rem;
}

static void attrs_to_rec(const struct blk_attrs *a, struct bfs_inode_rec *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->mode = a->mode;
	rec->uid = a->uid;
	rec->gid = a->gid;
	rec->nlink = a->nlink;
	rec->size = a->size;
	rec->rdev = a->rdev;
	ns_to_ts(a->atime, &rec->atime);
	ns_to_ts(a->mtime, &rec->mtime);
	ns_to_ts(a->ctime, &rec->ctime);
	ns_to_ts(a->btime, &rec->btime);
}

static void put_inode(struct blk_txn *t, uint64_t ino,
		      const struct bfs_inode_rec *rec, const uint8_t *target,
		      size_t tlen)
{
	uint8_t key[8], val[BFS_INODE_REC_LEN + BFS_SYMLINK_MAX];

	blk_txn_put(t, BFS_CF_INODES, key, bfs_ino_key(key, ino), val,
		    bfs_inode_encode(rec, (const char *)target, tlen, val));
}

static void put_xattrs(struct blk_txn *t, uint64_t ino,
		       const struct blk_attrs *a)
{
	uint8_t key[8 + 256];

	for (size_t i = 0; i < a->nxattrs; i++) {
		const struct blk_xattr *x = &a->xattrs[i];
		blk_txn_put(
		    t, BFS_CF_XATTRS, key,
		    bfs_xattr_key(key, ino, (const char *)x->name, x->name_len),
		    x->value, x->value_len);
	}
}

/* --- File walkers --- */

struct walker {
	struct rb *r;
	struct job *j;
	uint8_t *zeros; /* BLK_PB_MAX_BLOCK zero bytes */
	struct {
		uint64_t len;
		enum blk_hash hash;
		struct blk_cid cid;
	} zc[ZERO_CACHE];
	size_t zn;
	/* File nodes found to hold only zero leaves (a hole's subtrees, one
	 * per level: blk_dag_file_add_zeros), so that a terabyte hole costs
	 * a few fetches, not one walk per 174 leaves. */
	struct {
		struct blk_cid cid;
		uint64_t size;
	} zn_cache[ZERO_NODES];
	size_t zn_n;
	uint64_t n_extents; /* extents this walker wrote */
	uint64_t off, n_in_txn;
	void *inl; /* inline bytes the open txn refers to */
};

static bool is_zero_leaf(struct walker *w, const struct blk_cid *cid,
			 uint64_t len)
{
	size_t i;

	for (i = 0; i < ZERO_CACHE; i++)
		if (w->zc[i].len == len && w->zc[i].hash == cid->hash &&
		    i < w->zn)
			return blk_cid_equal(&w->zc[i].cid, cid);
	i = w->zn++ % ZERO_CACHE;
	w->zc[i].len = len;
	w->zc[i].hash = cid->hash;
	blk_cid_compute_hash(&w->zc[i].cid, cid->hash, BLK_CODEC_RAW, w->zeros,
			     len);
	return blk_cid_equal(&w->zc[i].cid, cid);
}

static int walker_commit(struct walker *w)
{
	int ret = blk_txn_commit(w->j->t, false);

	blk_txn_free(w->j->t);
	w->j->t = NULL;
	free(w->inl);
	w->inl = NULL;
	w->n_in_txn = 0;
	return ret;
}

/* One extent of @len bytes, block @cid; @data: its bytes when at hand. */
static int extent(struct walker *w, const struct blk_cid *cid, uint64_t len,
		  void *data)
{
	struct job *j = w->j;
	uint8_t key[16], val[BFS_EXTENT_VAL_MAX];
	int ret;

	if (len == 0)
		return 0;
	if (!data && is_zero_leaf(w, cid, len)) {
		atomic_fetch_add(&w->r->holes, 1);
		w->off += len;
		return 0;
	}
	if (!j->t && !(j->t = blk_txn_new(w->r->store)))
		return -ENOMEM;
	blk_txn_put(j->t, BFS_CF_EXTENTS, key,
		    bfs_extent_key(key, j->ino, w->off), val,
		    bfs_extent_encode(val, (uint32_t)len, false, cid));
	ret = data ? blk_txn_ref(j->t, cid, data, len)
		   : blk_txn_ref_remote(j->t, cid, len);
	if (ret)
		return ret;
	j->rec.stored += len;
	w->off += len;
	w->n_extents++;
	atomic_fetch_add(&w->r->extents, 1);
	uint64_t m = atomic_load(&w->r->max_ext);
	while (len > m &&
	       !atomic_compare_exchange_weak(&w->r->max_ext, &m, len))
		;
	if (++w->n_in_txn >= EXTENTS_PER_TXN)
		return walker_commit(w);
	return 0;
}

/* Walk the file node @cid whose data is @expect bytes, @depth levels under
 * the file's root. */
static int walk_node(struct walker *w, const struct blk_cid *cid,
		     uint64_t expect, unsigned depth)
{
	struct blk_pb_link links[BLK_DAG_FILE_FANOUT];
	uint64_t bs[BLK_DAG_FILE_FANOUT];
	struct blk_pb_node node;
	struct blk_unixfs u;
	void *data;
	size_t len;
	int ret;

	if (cid->codec == BLK_CODEC_RAW)
		return expect > BLK_PB_MAX_BLOCK ? -EBADMSG
						 : extent(w, cid, expect, NULL);
	if (cid->codec != BLK_CODEC_DAG_PB || depth > BLK_DAG_FILE_MAX_DEPTH)
		return -EBADMSG;
	for (size_t i = 0; i < w->zn_n && i < ZERO_NODES; i++)
		if (w->zn_cache[i].size == expect &&
		    blk_cid_equal(&w->zn_cache[i].cid, cid)) {
			w->off += expect;
			atomic_fetch_add(&w->r->holes, 1);
			return 0;
		}
	uint64_t extents_before = w->n_extents;
	if ((ret = fetch(w->r, cid, &data, &len)))
		return ret;
	ret = -EBADMSG;
	if (blk_pb_decode(data, len, &node, links, BLK_DAG_FILE_FANOUT) ||
	    node.n_links > BLK_DAG_FILE_FANOUT || !node.has_data ||
	    blk_unixfs_decode(node.data, node.data_len, &u, bs,
			      BLK_DAG_FILE_FANOUT) ||
	    u.type != BLK_UNIXFS_FILE || u.n_blocksizes != node.n_links ||
	    u.filesize != expect || (u.data_len && (node.n_links || depth)))
		goto out;
	if (u.data_len) {
		/* one chunk inline (the root only): its raw block */
		struct blk_cid raw;
		void *copy = malloc(u.data_len);
		if (!copy) {
			ret = -ENOMEM;
			goto out;
		}
		memcpy(copy, u.data, u.data_len);
		free(w->inl);
		w->inl = copy;
		blk_cid_compute_hash(&raw, cid->hash, BLK_CODEC_RAW, copy,
				     u.data_len);
		ret = extent(w, &raw, u.data_len, copy);
		goto out;
	}
	ret = 0;
	for (size_t i = 0; i < node.n_links && !ret; i++) {
		const struct blk_pb_link *l = &links[i];
		if (l->cid.codec == BLK_CODEC_RAW &&
		    (bs[i] > BLK_PB_MAX_BLOCK || !l->has_tsize ||
		     l->tsize != bs[i]))
			ret = -EBADMSG;
		else
			ret = walk_node(w, &l->cid, bs[i], depth + 1);
	}
	if (!ret && w->n_extents == extents_before && node.n_links) {
		size_t k = w->zn_n++ % ZERO_NODES;

		w->zn_cache[k].cid = *cid;
		w->zn_cache[k].size = expect;
	}
out:
	free(data);
	return ret;
}

static int walk_file(struct walker *w, struct job *j)
{
	int ret;

	w->j = j;
	w->off = 0;
	w->n_in_txn = 0;
	if (j->node.codec == BLK_CODEC_RAW && j->tsize != j->rec.size)
		ret = -EBADMSG;
	else
		ret = walk_node(w, &j->node, j->rec.size, 0);
	if (!ret && w->off != j->rec.size)
		ret = -EBADMSG;
	if (!ret && !j->t && !(j->t = blk_txn_new(w->r->store)))
		ret = -ENOMEM;
	if (!ret) {
		put_inode(j->t, j->ino, &j->rec, NULL, 0);
		ret = walker_commit(w);
	}
	free(w->inl);
	w->inl = NULL;
	if (ret)
		fail(w->r, ret, "%s: %s", j->path,
		     ret == -EBADMSG ? "malformed UnixFS file"
				     : strerror(-ret));
	return ret;
}

static void *walker_main(void *arg)
{
	struct rb *r = arg;
	struct walker w = {.r = r};

	w.zeros = calloc(1, BLK_PB_MAX_BLOCK);
	if (!w.zeros) {
		fail(r, -ENOMEM, "out of memory");
		return NULL;
	}
	for (;;) {
		size_t i = atomic_fetch_add(&r->next_job, 1);
		if (i >= r->njobs || r->err)
			break;
		walk_file(&w, &r->jobs[i]);
	}
	free(w.zeros);
	return NULL;
}

/* Run the batch's file walkers and wait for them. */
static void run_jobs(struct rb *r)
{
	unsigned n = r->ops->threads > 1 ? r->ops->threads : 1;
	pthread_t th[64];
	unsigned started = 0;

	if (n > 64)
		n = 64;
	if (n > r->njobs)
		n = (unsigned)r->njobs;
	atomic_store(&r->next_job, 0);
	for (unsigned i = 1; i < n; i++)
		if (!pthread_create(&th[started], NULL, walker_main, r))
			started++;
	if (r->njobs)
		walker_main(r);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < r->njobs; i++) {
		blk_txn_free(r->jobs[i].t);
		free(r->jobs[i].path);
	}
	r->st.files += r->njobs;
	r->njobs = 0;
}

/* Invariant 2: walkers done, records committed, the batch forgotten. */
static int flush(struct rb *r)
{
	int ret;

	run_jobs(r);
	if (r->err)
		return r->err;
	ret = blk_txn_commit(r->t, false);
	blk_txn_free(r->t);
	r->t = blk_txn_new(r->store);
	if (!ret && !r->t)
		ret = -ENOMEM;
	if (ret)
		return fail(r, ret, "cannot write the records: %s",
			    strerror(-ret));
	memset(&r->batch, 0, sizeof(r->batch));
	r->pending = 0;
	return 0;
}

/* --- Directories --- */

static char *join(const char *dir, const uint8_t *name, size_t len)
{
	size_t dl = strlen(dir);
	char *p = malloc(dl + 1 + len + 1);

	if (!p)
		return NULL;
	memcpy(p, dir, dl);
	p[dl] = '/';
	memcpy(p + dl + 1, name, len);
	p[dl + 1 + len] = 0;
	if (dl == 1)
		memmove(p + 1, p + 2, len + 1); /* "/" + name */
	return p;
}

static int push_dir(struct rb *r, uint64_t ino, const struct blk_cid *attrs,
		    const struct blk_cid *node, uint64_t tsize, char *path)
{
	struct qdir *q = calloc(1, sizeof(*q));

	if (!q) {
		free(path);
		return fail(r, -ENOMEM, "out of memory");
	}
	q->ino = ino;
	q->attrs = *attrs;
	q->node = *node;
	q->tsize = tsize;
	q->path = path;
	if (r->tail)
		r->tail->next = q;
	else
		r->head = q;
	r->tail = q;
	return 0;
}

/* A regular file's first entry: queue its walk. */
static int add_job(struct rb *r, const struct blk_attr_entry *e, char *path)
{
	struct job *j;
	struct bfs_dag_rec dr = {
	    .has_node = true, .node = e->node, .tsize = e->tsize};

	if (!r->jobs && !(r->jobs = calloc(BATCH_INOS, sizeof(*r->jobs)))) {
		free(path);
		return fail(r, -ENOMEM, "out of memory");
	}
	j = &r->jobs[r->njobs];
	memset(j, 0, sizeof(*j));
	j->ino = e->ino;
	attrs_to_rec(&e->attrs, &j->rec);
	j->node = e->node;
	j->tsize = e->tsize;
	j->path = path;
	if (!(j->t = blk_txn_new(r->store))) {
		free(path);
		return fail(r, -ENOMEM, "out of memory");
	}
	r->njobs++;
	put_xattrs(j->t, e->ino, &e->attrs);
	bfs_dag_put(j->t, e->ino, &dr);
	return 0;
}

/* The first entry of a non-directory inode other than a regular file. */
static void add_special(struct rb *r, const struct blk_attr_entry *e)
{
	struct bfs_inode_rec rec;
	struct bfs_dag_rec dr = {0};

	attrs_to_rec(&e->attrs, &rec);
	put_inode(r->t, e->ino, &rec, e->target, e->target_len);
	put_xattrs(r->t, e->ino, &e->attrs);
	if (S_ISLNK(e->attrs.mode)) {
		dr.has_node = true;
		dr.node = e->node;
		dr.tsize = e->tsize;
	}
	bfs_dag_put(r->t, e->ino, &dr);
}

static int add_entry(struct rb *r, uint64_t parent, const char *dpath,
		     const struct blk_attr_entry *e, bool *unixfs)
{
	uint8_t key[BFS_PARENT_KEY_MAX], val[BFS_DIRENT_VAL_LEN];
	uint32_t mode = e->dir ? S_IFDIR : e->attrs.mode, seen;
	char *path = join(dpath, e->name, e->name_len);
	int ret;

	if (!path)
		return fail(r, -ENOMEM, "out of memory");
	if (e->ino == BFS_ROOT_INO || e->ino > INT64_MAX) {
		ret = fail(r, -EBADMSG, "%s: inode number %llu", path,
			   (unsigned long long)e->ino);
		free(path);
		return ret;
	}
	*unixfs |= e->dir || (S_ISREG(mode) && !e->no_node) || S_ISLNK(mode);
	bfs_dirent_encode(val, e->ino, bfs_mode_dtype(mode));
	blk_txn_put(
	    r->t, BFS_CF_DIRENTS, key,
	    bfs_dirent_key(key, parent, (const char *)e->name, e->name_len),
	    val, BFS_DIRENT_VAL_LEN);
	blk_txn_put(r->t, BFS_CF_PARENTS, key,
		    bfs_parent_key(key, e->ino, parent, (const char *)e->name,
				   e->name_len),
		    "", 0);
	r->st.entries++;
	r->pending++;
	ret = known(r, e->ino, &seen);
	if (ret < 0) {
		fail(r, ret, "%s: cannot read inode %llu: %s", path,
		     (unsigned long long)e->ino, strerror(-ret));
		free(path);
		return ret;
	}
	if (ret) {
		/* a hard link: the same type, never a directory */
		ret = 0;
		if (e->dir || S_ISDIR(seen) ||
		    (seen & S_IFMT) != (mode & S_IFMT))
			ret = fail(r, -EBADMSG,
				   "%s: inode %llu reached twice (%s)", path,
				   (unsigned long long)e->ino,
				   e->dir || S_ISDIR(seen)
				       ? "a directory"
				       : "entries of different types");
		free(path);
		return ret;
	}
	if (e->ino > r->max_ino)
		r->max_ino = e->ino;
	if (e->dir) {
		/* its inode is written when its block is read (3) */
		return push_dir(r, e->ino, &e->attrs_cid, &e->node, e->tsize,
				path);
	}
	batch_put(&r->batch, e->ino, mode);
	r->st.inodes++;
	if (S_ISREG(mode) && !e->no_node)
		return add_job(r, e, path);
	if (S_ISREG(mode)) /* its data was never in the DAG */
		blk_log_warn("%s: %llu bytes, more than UnixFS describes: its "
			     "data was not in the commits; it comes back as a "
			     "hole",
			     path, (unsigned long long)e->attrs.size);
	add_special(r, e);
	free(path);
	return 0;
}

/* blk_dag_fetch_fn for the parts of attribute blocks, counted. */
static int part_fetch(void *ctx, const struct blk_cid *cid, void **data,
		      size_t *len)
{
	return fetch(ctx, cid, data, len);
}

/* Read directory @q: its inode, its entries, its dag record. */
static int read_dir(struct rb *r, struct qdir *q)
{
	struct blk_attrs_rd *rd = NULL;
	struct blk_attr_entry e;
	struct bfs_inode_rec rec;
	void *block;
	size_t len;
	uint32_t seen;
	bool unixfs = false;
	int ret;

	if (q->attrs.codec != BLK_CODEC_DAG_CBOR)
		return fail(r, -EBADMSG, "%s: attributes not DAG-CBOR",
			    q->path);
	if ((ret = fetch(r, &q->attrs, &block, &len)))
		return fail(r, ret, "%s: cannot fetch its attributes: %s",
			    q->path, strerror(-ret));
	ret = blk_attrs_rd_open(&rd, block, len);
	if (ret) {
		free(block);
		return fail(r, ret, "%s: %s", q->path,
			    ret == -EBADMSG ? "malformed attribute block"
					    : strerror(-ret));
	}
	ret = known(r, q->ino, &seen);
	if (ret) {
		ret = fail(r, ret < 0 ? ret : -EBADMSG,
			   "%s: directory inode %llu reached twice", q->path,
			   (unsigned long long)q->ino);
		goto out;
	}
	const struct blk_attrs *self = blk_attrs_rd_self(rd);
	attrs_to_rec(self, &rec);
	put_inode(r->t, q->ino, &rec, NULL, 0);
	put_xattrs(r->t, q->ino, self);
	batch_put(&r->batch, q->ino, rec.mode);
	r->st.inodes++;
	while ((ret = blk_attrs_rd_next(rd, part_fetch, r, &e)) == 1) {
		if ((ret = add_entry(r, q->ino, q->path, &e, &unixfs)))
			goto out;
		if ((r->batch.n + r->njobs >= BATCH_INOS ||
		     r->pending >= BATCH_RECORDS) &&
		    (ret = flush(r)))
			goto out;
	}
	if (ret) {
		ret = fail(r, ret, "%s: %s", q->path,
			   ret == -EBADMSG ? "malformed attribute entries"
					   : strerror(-ret));
		goto out;
	}
	struct bfs_dag_rec dr = {.has_node = true,
				 .node = q->node,
				 .tsize = q->tsize,
				 .has_attrs = true,
				 .attrs = q->attrs,
				 .nonempty = unixfs};
	bfs_dag_put(r->t, q->ino, &dr);
	ret = flush(r);
	r->st.dirs++;
out:
	blk_attrs_rd_free(&rd);
	free(block);
	return ret;
}

/* The Tsize of the UnixFS root directory @cid. */
static int root_tsize(struct rb *r, const struct blk_cid *cid, uint64_t *tsize)
{
	struct blk_dag_dir_info info;
	struct blk_pb_iter it;
	struct blk_pb_link l;
	void *data;
	size_t len;
	int ret = fetch(r, cid, &data, &len);

	if (ret)
		return fail(r, ret, "/: cannot fetch the root directory: %s",
			    strerror(-ret));
	if (cid->codec != BLK_CODEC_DAG_PB ||
	    blk_dag_dir_decode(data, len, &info) ||
	    blk_pb_iter_init(&it, data, len, NULL)) {
		free(data);
		return fail(r, -EBADMSG, "/: the root is not a directory");
	}
	*tsize = len;
	while (blk_pb_iter_next(&it, &l) == 1)
		*tsize += l.tsize;
	free(data);
	return 0;
}

static int check_empty(struct rb *r)
{
	for (unsigned cf = BFS_CF_INODES; cf < BFS_CF_COUNT; cf++) {
		struct blk_iter *it = blk_iter_new(r->db, cf, NULL, 0, NULL, 0);
		if (!it)
			return fail(r, -ENOMEM, "out of memory");
		bool any = blk_iter_valid(it);
		int ret = blk_iter_status(it);
		blk_iter_free(it);
		if (ret)
			return fail(r, ret, "cannot read the database: %s",
				    strerror(-ret));
		if (any)
			return fail(r, -EEXIST,
				    "the database holds a filesystem already");
	}
	return 0;
}

/* The final batch (invariant 1). */
static int finish(struct rb *r, const uint8_t *head, size_t head_len)
{
	struct blk_txn *t = blk_txn_new(r->store);
	uint8_t v[8];

	if (!t)
		return fail(r, -ENOMEM, "out of memory");
	blk_put_le64(v, r->max_ino + 1);
	blk_txn_put(t, BFS_CF_META, "next_ino", 8, v, 8);
	blk_put_le64(v, r->st.inodes);
	blk_txn_put(t, BFS_CF_META, BFS_META_INODES, strlen(BFS_META_INODES), v,
		    8);
	blk_put_le64(v, atomic_load(&r->max_ext));
	if (atomic_load(&r->max_ext))
		blk_txn_put(t, BFS_CF_META, "max_extent", 10, v, 8);
	bfs_dag_head_put(t, head, head_len);
	blk_put_le64(v, BFS_FORMAT_VERSION);
	blk_txn_put(t, BFS_CF_META, "format", 6, v, 8);
	int ret = blk_txn_commit(t, true);
	blk_txn_free(t);
	if (!ret)
		ret = blk_store_sync(r->store);
	if (ret)
		return fail(r, ret, "cannot write the records: %s",
			    strerror(-ret));
	return 0;
}

static int run(struct rb *r, const uint8_t *head, size_t head_len)
{
	struct blk_head h;
	uint64_t tsize = 0;
	int ret;

	if (blk_head_decode(&h, head, head_len))
		return fail(r, -EBADMSG, "malformed or unsigned head");
	if ((ret = check_empty(r)) || (ret = root_tsize(r, &h.root, &tsize)))
		return ret;
	char *root = strdup("/");
	if (!root)
		return fail(r, -ENOMEM, "out of memory");
	if ((ret = push_dir(r, BFS_ROOT_INO, &h.attrs, &h.root, tsize, root)))
		return ret;
	r->max_ino = BFS_ROOT_INO;
	while (r->head) {
		struct qdir *q = r->head;
		r->head = q->next;
		if (!r->head)
			r->tail = NULL;
		ret = read_dir(r, q);
		free(q->path);
		free(q);
		if (ret)
			return ret;
		if (r->ops->progress) {
			r->st.blocks = atomic_load(&r->blocks);
			r->st.extents = atomic_load(&r->extents);
			r->st.holes = atomic_load(&r->holes);
			ret = r->ops->progress(r->ops->arg, &r->st);
			if (ret)
				return fail(r, ret, "stopped");
		}
	}
	return finish(r, head, head_len);
}

int bfs_rebuild(struct blk_db *db, struct blk_store *store, const uint8_t *head,
		size_t head_len, const struct bfs_rebuild_ops *ops,
		struct bfs_rebuild_stats *st, char *err, size_t errlen)
{
	struct rb *r = calloc(1, sizeof(*r));
	char dummy[1];
	int ret;

	if (!r)
		return -ENOMEM;
	r->db = db;
	r->store = store;
	r->ops = ops;
	r->msg = errlen ? err : dummy;
	r->msglen = errlen ? errlen : sizeof(dummy);
	r->msg[0] = 0;
	pthread_mutex_init(&r->lock, NULL);
	r->t = blk_txn_new(store);
	ret = r->t ? run(r, head, head_len) : -ENOMEM;
	if (ret && !r->err)
		fail(r, ret, "%s", strerror(-ret));
	run_jobs(r); /* frees what an error left */
	blk_txn_free(r->t);
	while (r->head) {
		struct qdir *q = r->head;
		r->head = q->next;
		free(q->path);
		free(q);
	}
	r->st.blocks = atomic_load(&r->blocks);
	r->st.extents = atomic_load(&r->extents);
	r->st.holes = atomic_load(&r->holes);
	if (st)
		*st = r->st;
	ret = r->err ? r->err : ret;
	free(r->jobs);
	pthread_mutex_destroy(&r->lock);
	free(r);
	return ret;
}
