/* The rebuild of the metadata from a head: a small tree's DAG made in
 * memory with the codecs (files empty, inline, of several chunks, with a
 * hole; a symlink, a FIFO, a device node; hard links; xattrs; a directory
 * in parts), rebuilt into a fresh database, every record checked, then
 * read through the core; malformed trees refused with their path; and a
 * filesystem made through the core, encoded as a commit does
 * (fs/commit/encode.h), rebuilt into the very records it came from. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blocks/base/bytes.h"
#include "blocks/dag/attrs.h"
#include "blocks/dag/dir.h"
#include "blocks/dag/file.h"
#include "blocks/dag/head.h"
#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"
#include "fs/bfs.h"
#include "fs/commit/cache.h"
#include "fs/commit/encode.h"
#include "fs/commit/rebuild.h"
#include "fs/cred.h"
#include "fs/meta.h"
#include "tests/unit/check.h"
#include "tests/unit/memblocks.h"

#define T1 1765100000123456789LL
#define NMANY 5000
#define HOLE (256 * 1024)

/* The cluster: DAG blocks (what the rebuild fetches) and file leaves
 * (what it must not fetch: only the read path does). */
static struct memblocks dag, leaves;
static pthread_mutex_t dag_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t sk[64], pk[32];

static int dag_fetch(void *ctx, const struct blk_cid *cid, void **data,
		     size_t *len)
{
	int ret;

	(void)ctx;
	pthread_mutex_lock(&dag_lock);
	ret = memblocks_get(&dag, cid, data, len);
	pthread_mutex_unlock(&dag_lock);
	return ret;
}

static int leaf_read(void *ctx, const struct blk_cid *cid, uint8_t *buf,
		     size_t len)
{
	struct memblock *m = memblocks_slot(&leaves, cid);

	(void)ctx;
	if (!m->data || m->len != len)
		return -ENOENT;
	memcpy(buf, m->data, len);
	return 0;
}

static uint8_t big[3000], holey[1500];

/* A file of @n leaves (each @lens[i] bytes at @data[i]; NULL: zeros, not
 * stored), with mode and mtime when @meta. */
static void make_file(const uint8_t *const *data, const size_t *lens, size_t n,
		      bool meta, struct blk_cid *node, uint64_t *tsize)
{
	struct blk_dag_file_meta m = {.has_mode = true,
				      .mode = 0644,
				      .has_mtime = true,
				      .mtime_sec = T1 / 1000000000,
				      .mtime_nsec = T1 % 1000000000};
	struct blk_dag_file *f;
	uint64_t fsize;

	REQUIRE(!blk_dag_file_new(&f, meta ? &m : NULL, memblocks_put,
				  leaf_read, &dag));
	for (size_t i = 0; i < n; i++) {
		struct blk_cid c;
		if (data[i]) {
			blk_cid_compute(&c, BLK_CODEC_RAW, data[i], lens[i]);
			REQUIRE(!memblocks_put(&leaves, &c, data[i], lens[i]));
		} else {
			uint8_t *z = xmalloc(lens[i]);
			blk_cid_compute(&c, BLK_CODEC_RAW, z, lens[i]);
			free(z);
		}
		REQUIRE(!blk_dag_file_add_leaf(f, &c, lens[i]));
	}
	REQUIRE(!blk_dag_file_finish(f, node, &fsize, tsize));
	blk_dag_file_free(&f);
}

static void make_symlink(const char *target, struct blk_cid *cid,
			 uint64_t *tsize)
{
	struct blk_unixfs u = {.type = BLK_UNIXFS_SYMLINK,
			       .data = (const uint8_t *)target,
			       .data_len = strlen(target)};
	uint8_t ub[256], pb[300];
	size_t ul, pl;

	REQUIRE(!blk_unixfs_encode(&u, ub, sizeof(ub), &ul));
	struct blk_pb_node n = {.data = ub, .data_len = ul, .has_data = true};
	REQUIRE(!blk_pb_encode(&n, pb, sizeof(pb), &pl));
	blk_cid_compute(cid, BLK_CODEC_DAG_PB, pb, pl);
	REQUIRE(!memblocks_put(&dag, cid, pb, pl));
	*tsize = pl;
}

static struct blk_attrs attrs_of(uint32_t mode, uint64_t size, uint32_t nlink)
{
	return (struct blk_attrs){.mode = mode,
				  .uid = 1000,
				  .gid = 100,
				  .nlink = nlink,
				  .size = size,
				  .atime = T1,
				  .mtime = T1 + 1,
				  .ctime = -T1, /* before the epoch */
				  .btime = 42};
}

/* How to break the tree. */
enum variant {
	GOOD,
	BAD_SIZE,      /* "big" says one byte more than its DAG */
	BAD_NODE,      /* "big"'s node is an attribute block */
	DIR_TWICE,     /* "sub2" is "sub" again (a hard link to a dir) */
	ROOT_INO,      /* an entry with inode 1 */
	MISSING_ATTRS, /* "sub"'s attribute block is not there */
	TYPE_MISMATCH, /* "h1" links "big" but is a FIFO */
};

static const struct blk_xattr xa[] = {
    {(const uint8_t *)"user.a", 6, (const uint8_t *)"1", 1},
    {(const uint8_t *)"user.b", 6, (const uint8_t *)"two", 3},
};

struct tree {
	struct blk_cid root, attrs, big_node, sub_attrs;
	uint8_t head[BLK_HEAD_MAX_BYTES];
	size_t head_len;
};

/* Names of "many": "m00000" ... ("many" holds FIFOs and files). */
static void many_name(size_t i, char *buf)
{
	snprintf(buf, 8, "m%05zu", i);
}

static void add_ent(struct blk_attrs_dir *ad, struct blk_dag_dir *ud,
		    struct blk_attr_entry *e)
{
	REQUIRE(!blk_attrs_dir_add(ad, e));
	if (ud && (e->dir || S_ISREG(e->attrs.mode) || S_ISLNK(e->attrs.mode)))
		REQUIRE(!blk_dag_dir_add(ud, e->name, e->name_len, &e->node,
					 e->tsize, 0));
}

static void name_of(struct blk_attr_entry *e, const char *n)
{
	e->name = (const uint8_t *)n;
	e->name_len = strlen(n);
}

static void finish_dir(struct blk_attrs_dir *ad, struct blk_dag_dir *ud,
		       struct blk_attrs *self, struct blk_cid *attrs,
		       struct blk_cid *node, uint64_t *tsize, bool keep)
{
	struct memblocks junk = {0};

	REQUIRE(!blk_attrs_dir_finish(ad, self, memblocks_put,
				      keep ? &dag : &junk, attrs));
	REQUIRE(
	    !blk_dag_dir_finish(ud, NULL, memblocks_put, &dag, node, tsize));
	memblocks_clear(&junk);
}

static void build(enum variant v, struct tree *t)
{
	struct blk_attrs_dir *ad;
	struct blk_dag_dir *ud;
	struct blk_attr_entry e;
	struct blk_attrs self;
	struct blk_cid sub_node, many_node, many_attrs, empty_node, small_node,
	    hole_node, link_node, one_node;
	uint64_t sub_ts, many_ts, empty_ts, small_ts, big_ts, hole_ts, link_ts,
	    one_ts, root_ts;

	REQUIRE(!blk_attrs_dir_new(&ad));
	REQUIRE(!blk_dag_dir_new(&ud));

	/* files */
	make_file(NULL, NULL, 0, true, &empty_node, &empty_ts);
	const uint8_t *sd[] = {(const uint8_t *)"hello"};
	size_t sl[] = {5};
	make_file(sd, sl, 1, true, &small_node, &small_ts);
	const uint8_t *bd[] = {big, big + 1000, big + 2000};
	size_t bl[] = {1000, 1000, 1000};
	make_file(bd, bl, 3, false, &t->big_node, &big_ts);
	const uint8_t *hd[] = {holey, NULL, holey + 1000};
	size_t hl[] = {1000, HOLE, 500};
	make_file(hd, hl, 3, true, &hole_node, &hole_ts);
	const uint8_t *od[] = {(const uint8_t *)"one leaf"};
	size_t ol[] = {8};
	make_file(od, ol, 1, false, &one_node, &one_ts); /* a raw root */
	make_symlink("big", &link_node, &link_ts);

	/* /many: NMANY entries, in parts */
	for (size_t i = 0; i < NMANY; i++) {
		char n[8];
		many_name(i, n);
		memset(&e, 0, sizeof(e));
		e.name = (const uint8_t *)n;
		e.name_len = 6;
		e.ino = 1000 + i;
		if (i % 10 == 0) {
			e.attrs = attrs_of(S_IFREG | 0644, 8, 1);
			e.node = one_node;
			e.tsize = one_ts;
		} else {
			e.attrs = attrs_of(S_IFIFO | 0600, 0, 1);
		}
		add_ent(ad, ud, &e);
	}
	self = attrs_of(S_IFDIR | 0755, 0, 2);
	finish_dir(ad, ud, &self, &many_attrs, &many_node, &many_ts, true);
	blk_attrs_dir_reset(ad);
	blk_dag_dir_reset(ud);

	/* /sub: h2 (a link to big) */
	memset(&e, 0, sizeof(e));
	name_of(&e, "h2");
	e.ino = 4;
	e.attrs = attrs_of(S_IFREG | 0600, v == BAD_SIZE ? 3001 : 3000, 3);
	e.node = t->big_node;
	e.tsize = big_ts;
	add_ent(ad, ud, &e);
	self = attrs_of(S_IFDIR | 0750, 0, v == MISSING_ATTRS ? 3 : 2);
	self.xattrs = xa;
	self.nxattrs = 2;
	finish_dir(ad, ud, &self, &t->sub_attrs, &sub_node, &sub_ts,
		   v != MISSING_ATTRS);
	blk_attrs_dir_reset(ad);
	blk_dag_dir_reset(ud);

	/* / */
	memset(&e, 0, sizeof(e));
	name_of(&e, "big");
	e.ino = 4;
	e.attrs = attrs_of(S_IFREG | 0600, v == BAD_SIZE ? 3001 : 3000, 3);
	e.attrs.xattrs = xa;
	e.attrs.nxattrs = 2;
	e.node = t->big_node;
	if (v == BAD_NODE)
		e.node = many_attrs;
	e.tsize = big_ts;
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "dev");
	e.ino = 8;
	e.attrs = attrs_of(S_IFCHR | 0660, 0, 1);
	e.attrs.rdev = makedev(1, 3);
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "empty");
	e.ino = v == ROOT_INO ? 1 : 2;
	e.attrs = attrs_of(S_IFREG | 0644, 0, 1);
	e.node = empty_node;
	e.tsize = empty_ts;
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "fifo");
	e.ino = 7;
	e.attrs = attrs_of(S_IFIFO | 0644, 0, 1);
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "h1");
	e.ino = 4;
	e.attrs = attrs_of(v == TYPE_MISMATCH ? S_IFIFO | 0600 : S_IFREG | 0600,
			   v == BAD_SIZE ? 3001 : 3000, 3);
	if (v != TYPE_MISMATCH) {
		e.node = t->big_node;
		e.tsize = big_ts;
	} else {
		e.attrs.size = 0;
	}
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "hole");
	e.ino = 5;
	e.attrs = attrs_of(S_IFREG | 0644, 1000 + HOLE + 500, 1);
	e.node = hole_node;
	e.tsize = hole_ts;
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "link");
	e.ino = 6;
	e.attrs = attrs_of(S_IFLNK | 0777, 3, 1);
	e.node = link_node;
	e.tsize = link_ts;
	e.target = (const uint8_t *)"big";
	e.target_len = 3;
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "many");
	e.dir = true;
	e.ino = 10;
	e.node = many_node;
	e.tsize = many_ts;
	e.attrs_cid = many_attrs;
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "small");
	e.ino = 3;
	e.attrs = attrs_of(S_IFREG | 0644, 5, 1);
	e.node = small_node;
	e.tsize = small_ts;
	add_ent(ad, ud, &e);
	memset(&e, 0, sizeof(e));
	name_of(&e, "sub");
	e.dir = true;
	e.ino = 9;
	e.node = sub_node;
	e.tsize = sub_ts;
	e.attrs_cid = t->sub_attrs;
	add_ent(ad, ud, &e);
	if (v == DIR_TWICE) {
		name_of(&e, "sub2");
		add_ent(ad, ud, &e);
	}
	self = attrs_of(S_IFDIR | 0755, 0, 5);
	finish_dir(ad, ud, &self, &t->attrs, &t->root, &root_ts, true);
	blk_attrs_dir_free(&ad);
	blk_dag_dir_free(&ud);

	struct blk_head h = {.seq = 1,
			     .time_ns = (uint64_t)T1,
			     .root = t->root,
			     .attrs = t->attrs,
			     .lease_ns = (uint64_t)T1};
	memset(h.fs, 0xf5, sizeof(h.fs));
	REQUIRE(!blk_head_sign(&h, sk));
	REQUIRE(!blk_head_encode(&h, t->head, sizeof(t->head), &t->head_len));
}

/* A fresh node database in @dir/db with the core's and the store's
 * families, as fs/bfs.c opens it. */
static void open_db(const char *dir, struct blk_db **db,
		    struct blk_store **store)
{
	struct blk_cf_registry reg = {0};
	struct blk_store_options so = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};
	char path[512], err[256];

	bfs_meta_register(&reg);
	blk_store_register(&reg, &so);
	snprintf(path, sizeof(path), "%s/db", dir);
	REQUIRE(!blk_db_open(path, &o, db, err, sizeof(err)));
	REQUIRE(!blk_store_open(*db, &so, store, err, sizeof(err)));
}

static void close_db(struct blk_db *db, struct blk_store *store)
{
	blk_store_close(store);
	blk_db_close(db);
}

static uint64_t meta_u64(struct blk_db *db, const char *key)
{
	uint8_t v[8];

	if (blk_db_get_into(db, BFS_CF_META, key, strlen(key), v, 8) != 8)
		return UINT64_MAX;
	return blk_get_le64(v);
}

static int get_inode(struct blk_db *db, uint64_t ino, struct bfs_inode_rec *r,
		     char *target)
{
	uint8_t key[8], val[BFS_INODE_REC_LEN + BFS_SYMLINK_MAX];
	const char *t;
	size_t tl;
	int64_t n = blk_db_get_into(db, BFS_CF_INODES, key,
				    bfs_ino_key(key, ino), val, sizeof(val));

	if (n < 0)
		return (int)n;
	if (bfs_inode_decode(val, (size_t)n, r, &t, &tl))
		return -EUCLEAN;
	if (target) {
		memcpy(target, t, tl);
		target[tl] = 0;
	}
	return 0;
}

static bool has_rec(struct blk_db *db, unsigned cf, const uint8_t *key,
		    size_t klen)
{
	uint8_t v[64];

	return blk_db_get_into(db, cf, key, klen, v, sizeof(v)) >= 0;
}

static uint64_t count_prefix(struct blk_db *db, unsigned cf,
			     const uint8_t *prefix, size_t plen)
{
	struct blk_iter *it = blk_iter_new(db, cf, prefix, plen, NULL, 0);
	uint64_t n = 0;

	for (; blk_iter_valid(it); blk_iter_next(it))
		n++;
	blk_iter_free(it);
	return n;
}

static int progress_calls;
static int progress(void *arg, const struct bfs_rebuild_stats *st)
{
	(void)arg;
	(void)st;
	progress_calls++;
	return 0;
}

static void check_records(struct blk_db *db, struct blk_store *store,
			  const struct tree *t)
{
	struct bfs_inode_rec r;
	char target[BFS_SYMLINK_MAX + 1];
	uint8_t key[BFS_PARENT_KEY_MAX], val[BFS_EXTENT_VAL_MAX];

	CHECK(meta_u64(db, "format") == BFS_FORMAT_VERSION);
	CHECK(meta_u64(db, "next_ino") == 1000 + NMANY);
	/* 1 root, 2 empty, 3 small, 4 big, 5 hole, 6 link, 7 fifo, 8 dev,
	 * 9 sub, 10 many, and many's entries */
	CHECK(meta_u64(db, BFS_META_INODES) == 10 + NMANY);
	CHECK(meta_u64(db, "max_extent") == 1000);

	REQUIRE(!get_inode(db, 1, &r, NULL));
	CHECK(r.mode == (S_IFDIR | 0755) && r.nlink == 5 && r.uid == 1000);
	CHECK(r.atime.tv_sec == T1 / 1000000000 &&
	      r.atime.tv_nsec == T1 % 1000000000);
	CHECK(r.ctime.tv_sec == -T1 / 1000000000 - 1 &&
	      r.ctime.tv_nsec == 1000000000 - T1 % 1000000000);
	CHECK(r.btime.tv_sec == 0 && r.btime.tv_nsec == 42);
	REQUIRE(!get_inode(db, 4, &r, NULL));
	CHECK(r.mode == (S_IFREG | 0600) && r.nlink == 3 && r.size == 3000 &&
	      r.stored == 3000);
	REQUIRE(!get_inode(db, 5, &r, NULL));
	CHECK(r.size == 1000 + HOLE + 500 && r.stored == 1500);
	REQUIRE(!get_inode(db, 6, &r, target));
	CHECK(S_ISLNK(r.mode) && !strcmp(target, "big"));
	REQUIRE(!get_inode(db, 8, &r, NULL));
	CHECK(S_ISCHR(r.mode) && r.rdev == makedev(1, 3));
	REQUIRE(!get_inode(db, 2, &r, NULL));
	CHECK(r.size == 0 && r.stored == 0);
	REQUIRE(!get_inode(db, 1000 + NMANY - 1, &r, NULL));
	CHECK(S_ISFIFO(r.mode));
	REQUIRE(!get_inode(db, 1000 + 10, &r, NULL));
	CHECK(S_ISREG(r.mode) && r.stored == 8);

	/* dirents and parents: big's three names */
	uint64_t ino;
	uint8_t dt;
	int64_t n =
	    blk_db_get_into(db, BFS_CF_DIRENTS, key,
			    bfs_dirent_key(key, 1, "h1", 2), val, sizeof(val));
	CHECK(n == BFS_DIRENT_VAL_LEN &&
	      !bfs_dirent_decode(val, 9, &ino, &dt) && ino == 4 &&
	      dt == DT_REG);
	n = blk_db_get_into(db, BFS_CF_DIRENTS, key,
			    bfs_dirent_key(key, 9, "h2", 2), val, sizeof(val));
	CHECK(n == BFS_DIRENT_VAL_LEN &&
	      !bfs_dirent_decode(val, 9, &ino, &dt) && ino == 4);
	n = blk_db_get_into(db, BFS_CF_DIRENTS, key,
			    bfs_dirent_key(key, 1, "many", 4), val,
			    sizeof(val));
	CHECK(n == BFS_DIRENT_VAL_LEN &&
	      !bfs_dirent_decode(val, 9, &ino, &dt) && ino == 10 &&
	      dt == DT_DIR);
	uint8_t pfx[8];
	blk_put_be64(pfx, 4);
	CHECK(count_prefix(db, BFS_CF_PARENTS, pfx, 8) == 3);
	CHECK(has_rec(db, BFS_CF_PARENTS, key,
		      bfs_parent_key(key, 4, 9, "h2", 2)));
	CHECK(has_rec(db, BFS_CF_PARENTS, key,
		      bfs_parent_key(key, 10, 1, "many", 4)));
	blk_put_be64(pfx, 10);
	CHECK(count_prefix(db, BFS_CF_DIRENTS, pfx, 8) == NMANY);
	blk_put_be64(pfx, 1);
	CHECK(count_prefix(db, BFS_CF_DIRENTS, pfx, 8) == 10);
	CHECK(count_prefix(db, BFS_CF_CHANGES, NULL, 0) == 0);

	/* xattrs: big's (one inode for three names) and sub's */
	n = blk_db_get_into(db, BFS_CF_XATTRS, key,
			    bfs_xattr_key(key, 4, "user.b", 6), val,
			    sizeof(val));
	CHECK(n == 3 && !memcmp(val, "two", 3));
	CHECK(has_rec(db, BFS_CF_XATTRS, key,
		      bfs_xattr_key(key, 9, "user.a", 6)));
	blk_put_be64(pfx, 4);
	CHECK(count_prefix(db, BFS_CF_XATTRS, pfx, 8) == 2);

	/* extents: big's three blocks, remote; hole's two; small's inline
	 * block, here */
	blk_put_be64(pfx, 4);
	CHECK(count_prefix(db, BFS_CF_EXTENTS, pfx, 8) == 3);
	blk_put_be64(pfx, 5);
	CHECK(count_prefix(db, BFS_CF_EXTENTS, pfx, 8) == 2);
	uint32_t len;
	bool forced, local;
	struct blk_cid cid;
	uint64_t refs;
	uint32_t blen;
	n = blk_db_get_into(db, BFS_CF_EXTENTS, key,
			    bfs_extent_key(key, 5, 1000 + HOLE), val,
			    sizeof(val));
	CHECK(n > 0 &&
	      !bfs_extent_decode(val, (size_t)n, &len, &forced, &cid) &&
	      len == 500);
	CHECK(!blk_store_info(store, &cid, &refs, &blen, &local) && refs == 1 &&
	      blen == 500 && !local);
	n = blk_db_get_into(db, BFS_CF_EXTENTS, key, bfs_extent_key(key, 3, 0),
			    val, sizeof(val));
	CHECK(n > 0 &&
	      !bfs_extent_decode(val, (size_t)n, &len, &forced, &cid) &&
	      len == 5 && cid.codec == BLK_CODEC_RAW);
	CHECK(!blk_store_info(store, &cid, &refs, &blen, &local) && local);
	/* the one-leaf file of many: 500 extents of one block */
	blk_cid_compute(&cid, BLK_CODEC_RAW, "one leaf", 8);
	CHECK(!blk_store_info(store, &cid, &refs, &blen, &local) &&
	      refs == NMANY / 10 && !local);

	/* the dag family: nodes, attribute blocks, the head */
	struct bfs_dag_rec d;
	CHECK(!bfs_dag_get(db, NULL, 1, &d) && d.has_node && d.has_attrs &&
	      blk_cid_equal(&d.node, &t->root) &&
	      blk_cid_equal(&d.attrs, &t->attrs) && d.nonempty);
	CHECK(!bfs_dag_get(db, NULL, 9, &d) &&
	      blk_cid_equal(&d.attrs, &t->sub_attrs));
	CHECK(!bfs_dag_get(db, NULL, 4, &d) && d.has_node &&
	      blk_cid_equal(&d.node, &t->big_node) && !d.has_attrs);
	CHECK(!bfs_dag_get(db, NULL, 7, &d) && !d.has_node);
	uint8_t hb[BLK_HEAD_MAX_BYTES];
	size_t hl;
	CHECK(!bfs_dag_head_get(db, hb, sizeof(hb), &hl) && hl == t->head_len &&
	      !memcmp(hb, t->head, hl));
}

/* The core reads what the rebuild wrote: the blocks that only peers hold
 * are filled first (as the read path does after a fetch). */
static void check_core(const char *dir)
{
	struct bfs_config cfg = {
	    .node_dir = dir,
	    .chunker = CDC_FIXED,
	    .hash = BLK_HASH_DEFAULT,
	    .chunk_min = 1024,
	    .chunk_avg = 4096,
	    .chunk_max = 4096,
	    .cache_bytes = 8u << 20,
	    .dirty_max = 64u << 20,
	    .flush_at = 8u << 20,
	    .flushers = 1,
	};
	struct bfs *fs;
	struct bfs_inode *ip;
	struct bfs_file *f;
	struct stat st;
	char err[256], buf[HOLE + 4096];

	int ret = bfs_open(&cfg, &fs, err, sizeof(err));
	if (ret)
		fprintf(stderr, "bfs_open: %s\n", err);
	REQUIRE(ret == 0);
	REQUIRE(!bfs_lookup(fs, BFS_ROOT_INO, "h1", &ip));
	bfs_stat(ip, &st);
	CHECK(st.st_ino == 4 && st.st_size == 3000 && st.st_nlink == 3 &&
	      st.st_uid == 1000 && st.st_mode == (S_IFREG | 0600));
	REQUIRE(!bfs_open_file(fs, ip, false, &f));
	CHECK(bfs_read(fs, f, 0, buf, sizeof(buf)) == 3000);
	CHECK(!memcmp(buf, big, 3000));
	CHECK(bfs_getxattr(fs, ip, "user.a", buf, sizeof(buf)) == 1);
	bfs_release_file(fs, f);
	bfs_iput(fs, ip);

	REQUIRE(!bfs_lookup(fs, BFS_ROOT_INO, "hole", &ip));
	REQUIRE(!bfs_open_file(fs, ip, false, &f));
	CHECK(bfs_read(fs, f, 0, buf, sizeof(buf)) == 1000 + HOLE + 500);
	CHECK(!memcmp(buf, holey, 1000) &&
	      !memcmp(buf + 1000 + HOLE, holey + 1000, 500));
	bool zero = true;
	for (size_t i = 1000; i < 1000 + HOLE; i++)
		zero &= buf[i] == 0;
	CHECK(zero);
	bfs_release_file(fs, f);
	bfs_iput(fs, ip);

	REQUIRE(!bfs_lookup(fs, BFS_ROOT_INO, "small", &ip));
	REQUIRE(!bfs_open_file(fs, ip, false, &f));
	CHECK(bfs_read(fs, f, 0, buf, sizeof(buf)) == 5 &&
	      !memcmp(buf, "hello", 5));
	bfs_release_file(fs, f);
	bfs_iput(fs, ip);

	REQUIRE(!bfs_lookup(fs, BFS_ROOT_INO, "link", &ip));
	CHECK(bfs_readlink(fs, ip, buf, sizeof(buf)) >= 0 &&
	      !strncmp(buf, "big", 3));
	bfs_iput(fs, ip);
	REQUIRE(!bfs_lookup(fs, BFS_ROOT_INO, "dev", &ip));
	bfs_stat(ip, &st);
	CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
	bfs_iput(fs, ip);
	REQUIRE(!bfs_lookup(fs, 9, "h2", &ip));
	CHECK(bfs_inode_ino(ip) == 4);
	bfs_iput(fs, ip);
	REQUIRE(!bfs_lookup(fs, 10, "m04999", &ip));
	CHECK(S_ISFIFO(bfs_inode_mode(ip)));
	bfs_iput(fs, ip);

	/* a new inode takes the next number */
	REQUIRE(!bfs_mknod(fs, BFS_ROOT_INO, "new", S_IFREG | 0644, 0, 0,
			   getuid(), getgid(), NULL, &ip));
	CHECK(bfs_inode_ino(ip) == 1000 + NMANY);
	bfs_iput(fs, ip);
	CHECK(bfs_close(fs) == 0);
}

static void fill_leaves(struct blk_store *store)
{
	for (size_t i = 0; i < leaves.cap; i++)
		if (leaves.slots[i].data)
			blk_store_fill(store, &leaves.slots[i].cid,
				       leaves.slots[i].data,
				       leaves.slots[i].len);
}

static void rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

static void test_good(unsigned threads)
{
	char dir[] = "/tmp/test-rebuild-XXXXXX";
	struct tree t;
	struct blk_db *db;
	struct blk_store *store;
	struct bfs_rebuild_stats st;
	struct bfs_rebuild_ops ops = {
	    .fetch = dag_fetch, .progress = progress, .threads = threads};
	char err[512];

	REQUIRE(mkdtemp(dir));
	build(GOOD, &t);
	open_db(dir, &db, &store);
	progress_calls = 0;
	int ret = bfs_rebuild(db, store, t.head, t.head_len, &ops, &st, err,
			      sizeof(err));
	if (ret)
		fprintf(stderr, "rebuild: %s\n", err);
	CHECK(ret == 0);
	CHECK(st.dirs == 3 && progress_calls == 3);
	CHECK(st.entries == 10 + 1 + NMANY);
	CHECK(st.inodes == 10 + NMANY && st.files == 4 + NMANY / 10);
	CHECK(st.extents == 3 + 2 + 1 + NMANY / 10 && st.holes == 1);
	printf("threads %u: %llu blocks fetched\n", threads,
	       (unsigned long long)st.blocks);
	check_records(db, store, &t);
	/* again into the same database: refused, nothing written */
	CHECK(bfs_rebuild(db, store, t.head, t.head_len, &ops, NULL, err,
			  sizeof(err)) == -EEXIST);
	fill_leaves(store);
	close_db(db, store);
	check_core(dir);
	rm_rf(dir);
}

/* A malformed tree: refused with @want, naming @path; no format record. */
static void test_bad(enum variant v, int want, const char *path)
{
	char dir[] = "/tmp/test-rebuild-XXXXXX";
	struct tree t;
	struct blk_db *db;
	struct blk_store *store;
	struct bfs_rebuild_ops ops = {.fetch = dag_fetch, .threads = 2};
	char err[512] = "";

	REQUIRE(mkdtemp(dir));
	build(v, &t);
	open_db(dir, &db, &store);
	int ret = bfs_rebuild(db, store, t.head, t.head_len, &ops, NULL, err,
			      sizeof(err));
	CHECK(ret == want);
	if (!strstr(err, path))
		fprintf(stderr, "variant %d: \"%s\" names not %s\n", v, err,
			path);
	CHECK(strstr(err, path) != NULL);
	CHECK(meta_u64(db, "format") == UINT64_MAX);
	close_db(db, store);
	rm_rf(dir);
}

static void test_bad_head(void)
{
	char dir[] = "/tmp/test-rebuild-XXXXXX";
	struct tree t;
	struct blk_db *db;
	struct blk_store *store;
	struct bfs_rebuild_ops ops = {.fetch = dag_fetch};
	char err[512];

	REQUIRE(mkdtemp(dir));
	build(GOOD, &t);
	open_db(dir, &db, &store);
	t.head[2] ^= 0x40; /* the key "v" -> "6": malformed */
	CHECK(bfs_rebuild(db, store, t.head, t.head_len, &ops, NULL, err,
			  sizeof(err)) == -EBADMSG);
	CHECK(bfs_rebuild(db, store, t.head, 10, &ops, NULL, err,
			  sizeof(err)) == -EBADMSG);
	close_db(db, store);
	rm_rf(dir);
}

/* --- A commit's DAG rebuilt: the records the core wrote, again --- */

static struct blk_store *src_store;

static int store_fetch(void *ctx, const struct blk_cid *cid, void **data,
		       size_t *len)
{
	(void)ctx;
	return blk_store_get(src_store, cid, data, len);
}

/* Every record of @cf in @a and @b, compared by @same (NULL: bytes). */
static void same_family(struct blk_db *a, struct blk_db *b, unsigned cf,
			bool (*same)(const uint8_t *, size_t, const uint8_t *,
				     size_t))
{
	struct blk_iter *x = blk_iter_new(a, cf, NULL, 0, NULL, 0);
	struct blk_iter *y = blk_iter_new(b, cf, NULL, 0, NULL, 0);
	size_t n = 0, bad = 0;

	for (; blk_iter_valid(x) && blk_iter_valid(y);
	     blk_iter_next(x), blk_iter_next(y), n++) {
		size_t kx, ky, vx, vy;
		const uint8_t *k1 = blk_iter_key(x, &kx);
		const uint8_t *k2 = blk_iter_key(y, &ky);
		const uint8_t *v1 = blk_iter_value(x, &vx);
		const uint8_t *v2 = blk_iter_value(y, &vy);
		if (kx != ky || memcmp(k1, k2, kx) ||
		    (same ? !same(v1, vx, v2, vy)
			  : vx != vy || memcmp(v1, v2, vx))) {
			if (bad++ < 3)
				fprintf(stderr,
					"family %u: record %zu differs\n", cf,
					n);
		}
	}
	if (blk_iter_valid(x) || blk_iter_valid(y))
		fprintf(stderr, "family %u: %s has more records\n", cf,
			blk_iter_valid(x) ? "the source" : "the rebuild");
	CHECK(!blk_iter_valid(x) && !blk_iter_valid(y));
	CHECK(bad == 0);
	CHECK(n > 0);
	blk_iter_free(x);
	blk_iter_free(y);
}

static bool same_extent(const uint8_t *a, size_t al, const uint8_t *b,
			size_t bl)
{
	uint32_t l1, l2;
	bool f1, f2;
	struct blk_cid c1, c2;

	return !bfs_extent_decode(a, al, &l1, &f1, &c1) &&
	       !bfs_extent_decode(b, bl, &l2, &f2, &c2) && l1 == l2 &&
	       blk_cid_equal(&c1, &c2);
}

static bool same_inode(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	struct bfs_inode_rec x, y;
	const char *t1, *t2;
	size_t l1, l2;

	if (bfs_inode_decode(a, al, &x, &t1, &l1) ||
	    bfs_inode_decode(b, bl, &y, &t2, &l2))
		return false;
	return x.mode == y.mode && x.uid == y.uid && x.gid == y.gid &&
	       x.nlink == y.nlink && x.size == y.size && x.rdev == y.rdev &&
	       x.stored == y.stored && x.atime.tv_sec == y.atime.tv_sec &&
	       x.atime.tv_nsec == y.atime.tv_nsec &&
	       x.mtime.tv_sec == y.mtime.tv_sec &&
	       x.mtime.tv_nsec == y.mtime.tv_nsec &&
	       x.ctime.tv_sec == y.ctime.tv_sec &&
	       x.ctime.tv_nsec == y.ctime.tv_nsec &&
	       x.btime.tv_sec == y.btime.tv_sec &&
	       x.btime.tv_nsec == y.btime.tv_nsec && l1 == l2 &&
	       !memcmp(t1, t2, l1);
}

static void put_file(struct bfs *fs, uint64_t parent, const char *name,
		     const uint8_t *data, uint64_t off, size_t len,
		     struct bfs_inode **out)
{
	struct bfs_inode *ip;

	REQUIRE(!bfs_mknod(fs, parent, name, S_IFREG | 0640, 0, 0, 1000, 100,
			   NULL, &ip));
	if (len)
		REQUIRE(bfs_write(fs, ip, off, data, len) == (int64_t)len);
	REQUIRE(!bfs_fsync(fs, ip, false));
	*out = ip;
}

static void test_commit_roundtrip(void)
{
	char a[] = "/tmp/test-rebuild-XXXXXX", b[] = "/tmp/test-rebuild-XXXXXX";
	struct bfs_config cfg = {
	    .chunker = CDC_FIXED,
	    .hash = BLK_HASH_DEFAULT,
	    .chunk_min = 1024,
	    .chunk_avg = 4096,
	    .chunk_max = 4096,
	    .cache_bytes = 8u << 20,
	    .dirty_max = 64u << 20,
	    .flush_at = 8u << 20,
	    .flushers = 1,
	};
	struct bfs_cred cr = {.uid = 0, .gid = 0, .sys_admin = true};
	struct bfs *fs;
	struct bfs_inode *ip, *d;
	char err[512];
	static uint8_t data[100000];

	REQUIRE(mkdtemp(a) && mkdtemp(b));
	cfg.node_dir = a;
	fill_random(data, sizeof(data), 3);
	REQUIRE(!bfs_open(&cfg, &fs, err, sizeof(err)));
	put_file(fs, BFS_ROOT_INO, "f", data, 0, sizeof(data), &ip);
	CHECK(!bfs_setxattr(fs, ip, "user.k", "v", 1, 0, &cr));
	bfs_iput(fs, ip);
	REQUIRE(!bfs_link(fs, 2, BFS_ROOT_INO, "f2", &ip));
	bfs_iput(fs, ip);
	put_file(fs, BFS_ROOT_INO, "one", data, 0, 100, &ip);
	bfs_iput(fs, ip);
	put_file(fs, BFS_ROOT_INO, "empty", data, 0, 0, &ip);
	bfs_iput(fs, ip);
	put_file(fs, BFS_ROOT_INO, "sparse", data, 0, 10, &ip);
	REQUIRE(bfs_write(fs, ip, 600000, data, 10) == 10);
	REQUIRE(!bfs_fsync(fs, ip, false));
	bfs_iput(fs, ip);
	REQUIRE(!bfs_mknod(fs, BFS_ROOT_INO, "l", S_IFLNK | 0777, 0, 0, 1000,
			   100, "f", &ip));
	bfs_iput(fs, ip);
	REQUIRE(!bfs_mknod(fs, BFS_ROOT_INO, "p", S_IFIFO | 0600, 0, 0, 1000,
			   100, NULL, &ip));
	bfs_iput(fs, ip);
	REQUIRE(!bfs_mknod(fs, BFS_ROOT_INO, "d", S_IFDIR | 0700, 0, 0, 1000,
			   100, NULL, &d));
	CHECK(!bfs_setxattr(fs, d, "user.dir", "x", 1, 0, &cr));
	put_file(fs, bfs_inode_ino(d), "x", data + 7, 0, 5000, &ip);
	bfs_iput(fs, ip);
	REQUIRE(!bfs_link(fs, 2, bfs_inode_ino(d), "f3", &ip));
	bfs_iput(fs, ip);
	REQUIRE(!bfs_mknod(fs, bfs_inode_ino(d), "e", S_IFDIR | 0755, 0, 0,
			   1000, 100, NULL, &ip));
	bfs_iput(fs, ip);
	bfs_iput(fs, d);
	REQUIRE(!bfs_fsync_meta(fs));

	/* the commit's encoding, as fs/commit/commit.c runs it */
	struct bfs_encode_config ec = {
	    .db = bfs_db(fs), .store = bfs_store(fs), .hash = BLK_HASH_DEFAULT};
	struct bfs_encode_result res;
	struct blk_snap *snap = blk_snap_new(ec.db);
	struct blk_txn *t = blk_txn_new(ec.store);
	REQUIRE(snap && t);
	REQUIRE(!bfs_encode_run(&ec, snap, t, &res));
	blk_snap_free(snap);
	REQUIRE(!blk_txn_commit(t, false));
	blk_txn_free(t);
	REQUIRE(res.changed);
	struct blk_head h = {.seq = 1, .root = res.root, .attrs = res.attrs};
	uint8_t head[BLK_HEAD_MAX_BYTES];
	size_t hlen;
	REQUIRE(!blk_head_sign(&h, sk));
	REQUIRE(!blk_head_encode(&h, head, sizeof(head), &hlen));
	t = blk_txn_new(ec.store); /* as the commit keeps its head */
	bfs_dag_head_put(t, head, hlen);
	REQUIRE(!blk_txn_commit(t, false));
	blk_txn_free(t);

	/* rebuilt from the blocks alone */
	struct blk_db *db;
	struct blk_store *store;
	struct bfs_rebuild_ops ops = {.fetch = store_fetch, .threads = 2};
	struct bfs_rebuild_stats st;
	src_store = bfs_store(fs);
	open_db(b, &db, &store);
	int ret =
	    bfs_rebuild(db, store, head, hlen, &ops, &st, err, sizeof(err));
	if (ret)
		fprintf(stderr, "rebuild: %s\n", err);
	CHECK(ret == 0);
	CHECK(st.holes >= 1);
	same_family(bfs_db(fs), db, BFS_CF_INODES, same_inode);
	same_family(bfs_db(fs), db, BFS_CF_DIRENTS, NULL);
	same_family(bfs_db(fs), db, BFS_CF_PARENTS, NULL);
	same_family(bfs_db(fs), db, BFS_CF_XATTRS, NULL);
	same_family(bfs_db(fs), db, BFS_CF_EXTENTS, same_extent);
	same_family(bfs_db(fs), db, BFS_CF_DAG, NULL);
	CHECK(meta_u64(db, BFS_META_INODES) ==
	      meta_u64(bfs_db(fs), BFS_META_INODES));
	close_db(db, store);
	CHECK(bfs_close(fs) == 0);
	rm_rf(a);
	rm_rf(b);
}

int main(void)
{
	uint8_t seed[32] = {7};

	REQUIRE(sodium_init() >= 0);
	crypto_sign_seed_keypair(pk, sk, seed);
	fill_random(big, sizeof(big), 1);
	fill_random(holey, sizeof(holey), 2);
	test_good(1);
	test_good(4);
	test_bad(BAD_SIZE, -EBADMSG, "/big");
	test_bad(BAD_NODE, -EBADMSG, "/big");
	test_bad(DIR_TWICE, -EBADMSG, "/sub");
	test_bad(ROOT_INO, -EBADMSG, "/empty");
	test_bad(MISSING_ATTRS, -ENOENT, "/sub");
	test_bad(TYPE_MISMATCH, -EBADMSG, "/h1");
	test_bad_head();
	test_commit_roundtrip();
	memblocks_clear(&dag);
	memblocks_clear(&leaves);
	printf("rebuild: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
