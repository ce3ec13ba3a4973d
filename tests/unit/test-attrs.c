/* The attribute blocks: FORMAT.md §3.3's example against @ipld/dag-cbor's
 * bytes, round trips of every entry type, every refusal of the reader, and
 * a 20,000-entry directory in parts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blocks/dag/attrs.h"
#include "blocks/dag/cbor.h"
#include "blocks/dag/file.h"
#include "tests/unit/check.h"
#include "tests/unit/memblocks.h"

/* FORMAT.md §3.3, as @ipld/dag-cbor 10.0.2 encodes it
 * (tests/unit/vectors/gen-attrs-example.mjs). */
#define EX_NODE "bafybeihkdgxqaw4fkcyu7kvfd5bxdcpecqgud3epgfmok245mqfsb2jen4"
#define EX_HEX                                                                 \
	"a361760164656e747381ae636769641903e863696e6f07637569641903e8646d"     \
	"6f64651981a0646e616d654161646e6f6465d82a58250001701220ea19af005b"     \
	"8550b14faaa51f437189e4140d41ec8f3158e56b9d640b20e9246f6473697a65"     \
	"03656174696d651b187ee51924668d15656274696d651b187e8a260c90800065"     \
	"6374696d651b187ee51924668d15656d74696d651b187ee51924668d15656e6c"     \
	"696e6b01657473697a65181b66786174747273818246757365722e6b41766473"     \
	"656c66a9636769641903e8637569641903e8646d6f64651941ed6473697a6500"     \
	"656174696d651b187ee5191d0ac000656274696d651b187e8a260c9080006563"     \
	"74696d651b187ee5191d0ac000656d74696d651b187ee5191d0ac000656e6c69"     \
	"6e6b02"
#define EX_CID "bafyreifusdb3zcobwf2glehvrmnfs5coutfqiboxzwzc7rcbrgjb6awlmm"

#define T1 1765100000123456789LL
#define T0 1765100000000000000LL
#define TB 1765000000000000000LL

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* With ATTRS_CORPUS=DIR, write @block as a fuzz seed DIR/NAME. */
static void dump(const char *name, const uint8_t *block, size_t len)
{
	const char *dir = getenv("ATTRS_CORPUS");
	char path[4096];
	FILE *f;

	if (!dir)
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb"))) {
		fwrite(block, 1, len, f);
		fclose(f);
	}
}

static int read_abc(void *ctx, const struct blk_cid *cid, uint8_t *buf,
		    size_t len)
{
	(void)ctx;
	(void)cid;
	if (len != 3)
		return -EINVAL;
	memcpy(buf, "abc", 3);
	return 0;
}

static struct blk_attrs dir_self(void)
{
	return (struct blk_attrs){
	    .mode = S_IFDIR | 0755,
	    .uid = 1000,
	    .gid = 1000,
	    .nlink = 2,
	    .atime = T0,
	    .mtime = T0,
	    .ctime = T0,
	    .btime = TB,
	};
}

static void test_example(void)
{
	struct blk_dag_file_meta meta = {.has_mode = true,
					 .mode = 0640,
					 .has_mtime = true,
					 .mtime_sec = T1 / 1000000000,
					 .mtime_nsec = T1 % 1000000000};
	struct memblocks mb = {0};
	struct blk_dag_file *f;
	struct blk_cid leaf, node, cid;
	uint64_t fsize, dsize;
	char s[BLK_CID_STR_MAX];

	blk_cid_compute(&leaf, BLK_CODEC_RAW, "abc", 3);
	REQUIRE(!blk_dag_file_new(&f, &meta, memblocks_put, read_abc, &mb));
	REQUIRE(!blk_dag_file_add_leaf(f, &leaf, 3));
	REQUIRE(!blk_dag_file_finish(f, &node, &fsize, &dsize));
	blk_dag_file_free(&f);

	struct blk_xattr x = {(const uint8_t *)"user.k", 6,
			      (const uint8_t *)"v", 1};
	struct blk_attr_entry e = {
	    .name = (const uint8_t *)"a",
	    .name_len = 1,
	    .ino = 7,
	    .attrs = {.mode = S_IFREG | 0640,
		      .uid = 1000,
		      .gid = 1000,
		      .nlink = 1,
		      .size = 3,
		      .atime = T1,
		      .mtime = T1,
		      .ctime = T1,
		      .btime = TB,
		      .xattrs = &x,
		      .nxattrs = 1},
	    .node = node,
	    .tsize = dsize,
	};
	struct blk_attrs self = dir_self();
	struct blk_attrs_dir *d;
	struct memblocks out = {0};

	REQUIRE(!blk_attrs_dir_new(&d));
	REQUIRE(!blk_attrs_dir_add(d, &e));
	REQUIRE(!blk_attrs_dir_finish(d, &self, memblocks_put, &out, &cid));
	blk_attrs_dir_free(&d);
	REQUIRE(out.n == 1);
	struct memblock *b = memblocks_slot(&out, &cid);
	char *h = malloc(2 * b->len + 1);
	hex(b->data, b->len, h);
	blk_cid_to_string(&node, s);
	if (getenv("ATTRS_PRINT"))
		printf("node %s tsize %llu\nblock %s\n", s,
		       (unsigned long long)dsize, h);
	CHECK(!strcmp(s, EX_NODE));
	CHECK(!strcmp(h, EX_HEX));
	blk_cid_to_string(&cid, s);
	if (getenv("ATTRS_PRINT"))
		printf("cid %s\n", s);
	CHECK(!strcmp(s, EX_CID));
	free(h);
	memblocks_clear(&mb);
	memblocks_clear(&out);
}

/* Entries of every type; @xs unsorted xattrs. */
static struct blk_xattr xs[3] = {
    {(const uint8_t *)"user.z", 6, (const uint8_t *)"1", 1},
    {(const uint8_t *)"user.a", 6, (const uint8_t *)"", 0},
    {(const uint8_t *)"security.x", 10, (const uint8_t *)"\0\1", 2},
};

static void fill(struct blk_attr_entry *e, const char *name, uint32_t mode,
		 uint64_t ino)
{
	memset(e, 0, sizeof(*e));
	e->name = (const uint8_t *)name;
	e->name_len = strlen(name);
	e->ino = ino;
	e->attrs = (struct blk_attrs){.mode = mode,
				      .uid = 1,
				      .gid = 2,
				      .nlink = 1,
				      .size = ino * 100,
				      .atime = -5,
				      .mtime = T1,
				      .ctime = (int64_t)ino,
				      .btime = 0};
	blk_cid_compute(&e->node, BLK_CODEC_RAW, name, e->name_len);
	e->tsize = e->name_len;
	if (S_ISLNK(mode)) {
		e->target = (const uint8_t *)"../x/y";
		e->target_len = 6;
	}
	if (S_ISCHR(mode) || S_ISBLK(mode))
		e->attrs.rdev = 0x0801;
	if (S_ISDIR(mode)) {
		e->dir = true;
		memset(&e->attrs, 0, sizeof(e->attrs));
		blk_cid_compute(&e->attrs_cid, BLK_CODEC_DAG_CBOR, name,
				e->name_len);
	}
}

static bool same_entry(const struct blk_attr_entry *a,
		       const struct blk_attr_entry *b)
{
	const struct blk_attrs *x = &a->attrs, *y = &b->attrs;

	if (a->name_len != b->name_len ||
	    memcmp(a->name, b->name, a->name_len) || a->ino != b->ino ||
	    a->dir != b->dir)
		return false;
	if (a->dir)
		return blk_cid_equal(&a->node, &b->node) &&
		       a->tsize == b->tsize &&
		       blk_cid_equal(&a->attrs_cid, &b->attrs_cid);
	if (x->mode != y->mode || x->uid != y->uid || x->gid != y->gid ||
	    x->nlink != y->nlink || x->size != y->size || x->rdev != y->rdev ||
	    x->atime != y->atime || x->mtime != y->mtime ||
	    x->ctime != y->ctime || x->btime != y->btime ||
	    x->nxattrs != y->nxattrs || a->target_len != b->target_len ||
	    (a->target_len && memcmp(a->target, b->target, a->target_len)))
		return false;
	if (S_ISREG(x->mode) || S_ISLNK(x->mode))
		return blk_cid_equal(&a->node, &b->node) &&
		       a->tsize == b->tsize;
	return true;
}

static void test_roundtrip(void)
{
	static const struct {
		const char *name;
		uint32_t mode;
	} ts[] = {
	    {"blk", S_IFBLK | 0600},   {"chr", S_IFCHR | 0620},
	    {"d", S_IFDIR | 0755},     {"fifo", S_IFIFO | 0644},
	    {"file", S_IFREG | 04755}, {"link", S_IFLNK | 0777},
	    {"sock", S_IFSOCK | 0755},
	};
	enum { N = sizeof(ts) / sizeof(ts[0]) };
	struct blk_attr_entry e[N], got;
	struct blk_attrs self = dir_self();
	struct blk_attrs_dir *d;
	struct blk_attrs_rd *rd;
	struct memblocks mb = {0};
	struct blk_cid cid;

	self.xattrs = xs;
	self.nxattrs = 3;
	REQUIRE(!blk_attrs_dir_new(&d));
	for (size_t i = 0; i < N; i++) {
		fill(&e[i], ts[i].name, ts[i].mode, 10 + i);
		if (i == 4) {
			e[i].attrs.xattrs = xs;
			e[i].attrs.nxattrs = 3;
		}
		CHECK(blk_attrs_dir_add(d, &e[i]) == 0);
	}
	CHECK(blk_attrs_dir_count(d) == N);
	REQUIRE(!blk_attrs_dir_finish(d, &self, memblocks_put, &mb, &cid));
	struct memblock *b = memblocks_slot(&mb, &cid);
	REQUIRE(b->data);
	dump("types", b->data, b->len);
	REQUIRE(blk_attrs_rd_open(&rd, b->data, b->len) == 0);
	const struct blk_attrs *s = blk_attrs_rd_self(rd);
	CHECK(s->mode == self.mode && s->uid == 1000 && s->btime == TB);
	CHECK(s->nxattrs == 3);
	CHECK(s->xattrs[0].name_len == 10 && s->xattrs[2].value_len == 1);
	CHECK(blk_attrs_rd_nparts(rd) == 0);
	for (size_t i = 0; i < N; i++) {
		CHECK(blk_attrs_rd_next(rd, NULL, NULL, &got) == 1);
		CHECK(same_entry(&e[i], &got));
		if (i == 4)
			CHECK(got.attrs.nxattrs == 3 &&
			      !memcmp(got.attrs.xattrs[1].name, "user.a", 6));
	}
	CHECK(blk_attrs_rd_next(rd, NULL, NULL, &got) == 0);
	blk_attrs_rd_free(&rd);

	/* the builder refuses what the reader would */
	struct blk_attr_entry bad;
	fill(&bad, "zz", S_IFREG | 0644, 99);
	bad.ino = 0;
	CHECK(blk_attrs_dir_add(d, &bad) == -EINVAL);
	fill(&bad, "sock", S_IFREG | 0644, 99); /* not after "sock" */
	CHECK(blk_attrs_dir_add(d, &bad) == -EINVAL);
	fill(&bad, "zz", 0644, 99); /* no type */
	CHECK(blk_attrs_dir_add(d, &bad) == -EINVAL);
	fill(&bad, "z/z", S_IFREG | 0644, 99);
	CHECK(blk_attrs_dir_add(d, &bad) == -EINVAL);
	fill(&bad, "zz", S_IFLNK | 0777, 99);
	bad.target_len = 0;
	CHECK(blk_attrs_dir_add(d, &bad) == -EINVAL);
	struct blk_xattr dup[2] = {xs[0], xs[0]};
	fill(&bad, "zz", S_IFREG | 0644, 99);
	bad.attrs.xattrs = dup;
	bad.attrs.nxattrs = 2;
	CHECK(blk_attrs_dir_add(d, &bad) == -EINVAL);
	self.mode = S_IFREG | 0644;
	CHECK(blk_attrs_dir_finish(d, &self, NULL, NULL, &cid) == -EINVAL);
	blk_attrs_dir_free(&d);

	/* an empty directory */
	self = dir_self();
	REQUIRE(!blk_attrs_dir_new(&d));
	REQUIRE(!blk_attrs_dir_finish(d, &self, memblocks_put, &mb, &cid));
	b = memblocks_slot(&mb, &cid);
	dump("empty", b->data, b->len);
	REQUIRE(blk_attrs_rd_open(&rd, b->data, b->len) == 0);
	CHECK(blk_attrs_rd_next(rd, NULL, NULL, &got) == 0);
	blk_attrs_rd_free(&rd);
	blk_attrs_dir_free(&d);
	memblocks_clear(&mb);
}

/* --- Refusals: blocks written field by field --- */

enum { F_U, F_I, F_B, F_C, F_XA, F_XA_EMPTY, F_XA_UNSORTED };
struct field {
	const char *k;
	int kind;
	uint64_t u;
	const char *b;
	size_t bl;
};

static size_t nfields;
static struct field fields[24];

static int key_cmp(const void *a, const void *b)
{
	const struct field *x = a, *y = b;
	size_t xl = strlen(x->k), yl = strlen(y->k);

	return xl != yl ? (int)xl - (int)yl : strcmp(x->k, y->k);
}

static void f_set(const char *k, int kind, uint64_t u, const char *b, size_t bl)
{
	for (size_t i = 0; i < nfields; i++)
		if (!strcmp(fields[i].k, k)) {
			fields[i] = (struct field){k, kind, u, b, bl};
			return;
		}
	fields[nfields++] = (struct field){k, kind, u, b, bl};
}

static void f_del(const char *k)
{
	for (size_t i = 0; i < nfields; i++)
		if (!strcmp(fields[i].k, k))
			fields[i] = fields[--nfields];
}

static void f_file(const char *name)
{
	nfields = 0;
	f_set("gid", F_U, 1, NULL, 0);
	f_set("uid", F_U, 1, NULL, 0);
	f_set("mode", F_U, S_IFREG | 0644, NULL, 0);
	f_set("size", F_U, 1, NULL, 0);
	f_set("atime", F_I, 1, NULL, 0);
	f_set("btime", F_I, 1, NULL, 0);
	f_set("ctime", F_I, 1, NULL, 0);
	f_set("mtime", F_I, 1, NULL, 0);
	f_set("nlink", F_U, 1, NULL, 0);
	f_set("ino", F_U, 5, NULL, 0);
	f_set("name", F_B, 0, name, strlen(name));
	f_set("node", F_C, 0, NULL, 0);
	f_set("tsize", F_U, 1, NULL, 0);
}

static void put_fields(struct blk_cbor_enc *e)
{
	struct blk_cid cid;

	blk_cid_compute(&cid, BLK_CODEC_RAW, "x", 1);
	qsort(fields, nfields, sizeof(*fields), key_cmp);
	blk_cbor_put_map(e, nfields);
	for (size_t i = 0; i < nfields; i++) {
		const struct field *f = &fields[i];
		blk_cbor_put_key(e, f->k);
		switch (f->kind) {
		case F_U:
			blk_cbor_put_uint(e, f->u);
			break;
		case F_I:
			blk_cbor_put_int(e, (int64_t)f->u);
			break;
		case F_B:
			blk_cbor_put_bytes(e, f->b, f->bl);
			break;
		case F_C:
			blk_cbor_put_cid(e, &cid);
			break;
		case F_XA:
		case F_XA_UNSORTED:
			blk_cbor_put_array(e, 2);
			blk_cbor_put_array(e, 2);
			blk_cbor_put_bytes(e, f->kind == F_XA ? "a" : "b", 1);
			blk_cbor_put_bytes(e, "", 0);
			blk_cbor_put_array(e, 2);
			blk_cbor_put_bytes(e, f->kind == F_XA ? "b" : "a", 1);
			blk_cbor_put_bytes(e, f->b, f->bl);
			break;
		case F_XA_EMPTY:
			blk_cbor_put_array(e, 0);
			break;
		}
	}
}

static void put_self(struct blk_cbor_enc *e, uint64_t mode)
{
	struct field save[24];
	size_t ns = nfields;

	memcpy(save, fields, sizeof(save));
	nfields = 0;
	f_set("gid", F_U, 1, NULL, 0);
	f_set("uid", F_U, 1, NULL, 0);
	f_set("mode", F_U, mode, NULL, 0);
	f_set("size", F_U, 0, NULL, 0);
	f_set("atime", F_I, 1, NULL, 0);
	f_set("btime", F_I, 1, NULL, 0);
	f_set("ctime", F_I, 1, NULL, 0);
	f_set("mtime", F_I, 1, NULL, 0);
	f_set("nlink", F_U, 2, NULL, 0);
	put_fields(e);
	memcpy(fields, save, sizeof(save));
	nfields = ns;
}

/* Decode a block {v, ents: [the fields' entry, then "zz"'s], self}: the
 * reader's result over every entry (1 for "all fine"). */
static int try_block(uint64_t v, uint64_t self_mode, int twice)
{
	struct blk_cbor_enc e;
	struct blk_attrs_rd *rd;
	struct blk_attr_entry got;
	size_t len;
	int ret;

	blk_cbor_enc_init(&e, NULL, 0);
	blk_cbor_put_map(&e, 3);
	blk_cbor_put_key(&e, "v");
	blk_cbor_put_uint(&e, v);
	blk_cbor_put_key(&e, "ents");
	blk_cbor_put_array(&e, (size_t)twice);
	for (int i = 0; i < twice; i++)
		put_fields(&e);
	blk_cbor_put_key(&e, "self");
	put_self(&e, self_mode);
	REQUIRE(!blk_cbor_enc_finish(&e, &len));
	ret = blk_attrs_rd_open(&rd, e.buf, len);
	if (!ret) {
		while ((ret = blk_attrs_rd_next(rd, NULL, NULL, &got)) == 1)
			;
		if (!ret)
			ret = 1;
	}
	blk_attrs_rd_free(&rd);
	blk_cbor_enc_release(&e);
	return ret;
}

static void test_refusals(void)
{
	char longname[256];

	memset(longname, 'n', sizeof(longname));
	f_file("a");
	CHECK(try_block(1, S_IFDIR | 0755, 1) == 1);
	CHECK(try_block(2, S_IFDIR | 0755, 1) == -EBADMSG);
	CHECK(try_block(1, S_IFREG | 0644, 1) == -EBADMSG);
	CHECK(try_block(1, S_IFDIR | 0755, 2) == -EBADMSG); /* duplicate */
	f_set("foo", F_U, 1, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG); /* unknown */
	f_file("a");
	f_del("nlink");
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG); /* missing */
	f_file("a");
	f_set("rdev", F_U, 1, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG); /* not a device */
	f_file("a");
	f_set("target", F_B, 0, "t", 1);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG); /* not a link */
	f_set("mode", F_U, S_IFLNK | 0777, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == 1);
	f_set("target", F_B, 0, "t\0", 2);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_del("target");
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_file("a");
	f_set("mode", F_U, S_IFIFO | 0644, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG); /* node */
	f_del("node");
	f_del("tsize");
	CHECK(try_block(1, S_IFDIR | 0755, 1) == 1);
	f_set("mode", F_U, S_IFCHR | 0644, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG); /* no rdev */
	f_set("rdev", F_U, 0x801, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == 1);
	f_set("mode", F_U, 0644, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG); /* no type */
	f_set("mode", F_U, S_IFDIR | 0755, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_set("mode", F_U, S_IFCHR | 0644 | 0200000, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG); /* bits */

	/* a directory's entry: exactly ino name node attrs tsize */
	nfields = 0;
	f_set("ino", F_U, 3, NULL, 0);
	f_set("name", F_B, 0, "d", 1);
	f_set("node", F_C, 0, NULL, 0);
	f_set("attrs", F_C, 0, NULL, 0);
	f_set("tsize", F_U, 9, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == 1);
	f_set("mode", F_U, S_IFDIR | 0755, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_del("mode");
	f_del("tsize");
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);

	/* names, numbers, xattrs */
	static const struct {
		const char *n;
		size_t len;
	} names[] = {{"", 0}, {"a/b", 3}, {"a\0b", 3}, {".", 1}, {"..", 2}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		f_file("a");
		f_set("name", F_B, 0, names[i].n, names[i].len);
		CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	}
	f_file("a");
	f_set("name", F_B, 0, longname, 255);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == 1);
	f_set("name", F_B, 0, longname, 256);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_file("a");
	f_set("uid", F_U, 1ull << 32, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_file("a");
	f_set("ino", F_U, 0, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_file("a");
	f_set("atime", F_B, 0, "1", 1); /* wrong type */
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_file("a");
	f_set("xattrs", F_XA, 0, "v", 1);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == 1);
	f_set("xattrs", F_XA_UNSORTED, 0, "v", 1);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);
	f_set("xattrs", F_XA_EMPTY, 0, NULL, 0);
	CHECK(try_block(1, S_IFDIR | 0755, 1) == -EBADMSG);

	/* entries out of order, counts past the bytes, trailing bytes */
	struct blk_attrs_dir *d;
	struct blk_attr_entry a, b;
	struct memblocks mb = {0};
	struct blk_cid cid;
	struct blk_attrs self = dir_self();
	struct blk_attrs_rd *rd;
	REQUIRE(!blk_attrs_dir_new(&d));
	fill(&a, "a", S_IFREG | 0644, 2);
	fill(&b, "b", S_IFREG | 0644, 3);
	REQUIRE(!blk_attrs_dir_add(d, &a));
	REQUIRE(!blk_attrs_dir_add(d, &b));
	REQUIRE(!blk_attrs_dir_finish(d, &self, memblocks_put, &mb, &cid));
	struct memblock *m = memblocks_slot(&mb, &cid);
	uint8_t *buf = malloc(m->len + 1);
	memcpy(buf, m->data, m->len);
	/* swap the names "a" and "b": h'61' ... h'62' */
	uint8_t *pa = memmem(buf, m->len, "\x64name\x41\x61", 7);
	uint8_t *pb = memmem(buf, m->len, "\x64name\x41\x62", 7);
	REQUIRE(pa && pb);
	pa[6] = 'b';
	pb[6] = 'a';
	struct blk_attr_entry got;
	REQUIRE(!blk_attrs_rd_open(&rd, buf, m->len));
	CHECK(blk_attrs_rd_next(rd, NULL, NULL, &got) == 1);
	CHECK(blk_attrs_rd_next(rd, NULL, NULL, &got) == -EBADMSG);
	CHECK(blk_attrs_rd_next(rd, NULL, NULL, &got) == -EBADMSG);
	blk_attrs_rd_free(&rd);
	memcpy(buf, m->data, m->len);
	/* the ents count: 2 -> 0x19 0xff 0xff would need bytes; 0x97 (23) */
	uint8_t *pc = memmem(buf, m->len,
			     "\x64"
			     "ents\x82",
			     6);
	REQUIRE(pc);
	pc[5] = 0x97;
	CHECK(blk_attrs_rd_open(&rd, buf, m->len) == -EBADMSG);
	memcpy(buf, m->data, m->len);
	buf[m->len] = 0;
	CHECK(blk_attrs_rd_open(&rd, buf, m->len + 1) == -EBADMSG);
	for (size_t n = 0; n < m->len; n++)
		CHECK(blk_attrs_rd_open(&rd, buf, n) == -EBADMSG);
	free(buf);
	blk_attrs_dir_free(&d);
	memblocks_clear(&mb);
}

/* --- Parts --- */

static char names20k[20000][8];

static void build_big(struct memblocks *mb, struct blk_cid *cid,
		      uint64_t size_of_9999, struct blk_cid *parts,
		      size_t *nparts)
{
	struct blk_attrs_dir *d;
	struct blk_attrs self = dir_self();
	struct blk_attrs_rd *rd;

	REQUIRE(!blk_attrs_dir_new(&d));
	for (size_t i = 0; i < 20000; i++) {
		struct blk_attr_entry e;
		snprintf(names20k[i], sizeof(names20k[i]), "f%05zu", i);
		fill(&e, names20k[i], S_IFREG | 0644, 2 + i);
		if (i == 9999)
			e.attrs.size = size_of_9999;
		REQUIRE(!blk_attrs_dir_add(d, &e));
	}
	REQUIRE(!blk_attrs_dir_finish(d, &self, memblocks_put, mb, cid));
	blk_attrs_dir_free(&d);
	struct memblock *m = memblocks_slot(mb, cid);
	REQUIRE(!blk_attrs_rd_open(&rd, m->data, m->len));
	*nparts = blk_attrs_rd_nparts(rd);
	REQUIRE(*nparts >= 2 && *nparts < 100);
	for (size_t i = 0; i < *nparts; i++)
		REQUIRE(!blk_attrs_rd_part(rd, i, &parts[i]));
	blk_attrs_rd_free(&rd);
}

static void test_parts(void)
{
	struct memblocks mb = {0};
	struct blk_cid c1, c2, p1[100], p2[100];
	size_t n1, n2, nparts_seen = 0, i = 0;
	struct blk_attrs_rd *rd;
	struct blk_attr_entry got;
	int ret;

	build_big(&mb, &c1, 999900, p1, &n1);
	build_big(&mb, &c2, 1, p2, &n2);
	CHECK(!blk_cid_equal(&c1, &c2));
	CHECK(n1 == n2);
	for (size_t k = 0; k < n1 && k < n2; k++)
		nparts_seen += !blk_cid_equal(&p1[k], &p2[k]);
	CHECK(nparts_seen == 1);
	printf("20000 entries: %zu parts\n", n1);

	/* read back whole through the parts */
	struct memblock *m = memblocks_slot(&mb, &c2);
	dump("parts", m->data, m->len);
	REQUIRE(!blk_attrs_rd_open(&rd, m->data, m->len));
	while ((ret = blk_attrs_rd_next(rd, memblocks_get, &mb, &got)) == 1) {
		CHECK(got.name_len == 6 && !memcmp(got.name, names20k[i], 6));
		CHECK(got.attrs.size == (i == 9999 ? 1 : (2 + i) * 100));
		i++;
	}
	CHECK(ret == 0 && i == 20000);
	CHECK(blk_attrs_rd_next(rd, memblocks_get, &mb, &got) == 0);
	blk_attrs_rd_free(&rd);

	/* the parts in another order, or one twice: refused */
	struct blk_cbor_enc e;
	size_t len;
	for (int t = 0; t < 2; t++) {
		blk_cbor_enc_init(&e, NULL, 0);
		blk_cbor_put_map(&e, 3);
		blk_cbor_put_key(&e, "v");
		blk_cbor_put_uint(&e, 1);
		blk_cbor_put_key(&e, "self");
		put_self(&e, S_IFDIR | 0755);
		blk_cbor_put_key(&e, "parts");
		blk_cbor_put_array(&e, n1);
		for (size_t k = 0; k < n1; k++)
			blk_cbor_put_cid(
			    &e, &p1[t == 0 ? n1 - 1 - k : (k == 1 ? 0 : k)]);
		REQUIRE(!blk_cbor_enc_finish(&e, &len));
		REQUIRE(!blk_attrs_rd_open(&rd, e.buf, len));
		while ((ret = blk_attrs_rd_next(rd, memblocks_get, &mb,
						&got)) == 1)
			;
		CHECK(ret == -EBADMSG);
		blk_attrs_rd_free(&rd);
		blk_cbor_enc_release(&e);
	}
	/* a part that is not there: the fetch's error */
	struct memblocks none = {0};
	m = memblocks_slot(&mb, &c2);
	REQUIRE(!blk_attrs_rd_open(&rd, m->data, m->len));
	CHECK(blk_attrs_rd_next(rd, memblocks_get, &none, &got) == -ENOENT);
	blk_attrs_rd_free(&rd);
	memblocks_clear(&mb);
}

int main(void)
{
	test_example();
	test_roundtrip();
	test_refusals();
	test_parts();
	printf("attrs: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
