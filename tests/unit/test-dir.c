/* Tests of the UnixFS directory builder and reader (blocks/dag/dir.h):
 * root CIDs and Tsizes against ipfs-unixfs-importer's (vectors from
 * tests/unit/vectors/dir/gen-dir-vectors.mjs), every block read back,
 * the errors, and the time of 20,000- and 200,000-entry directories. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "blocks/dag/dir.h"
#include "blocks/dag/pb.h"
#include "check.h"
#include "memblocks.h"

enum kind { PLAIN, HAMT };

/* Where emitted blocks go, and how a reader gets them back. */
static struct memblocks mem;
static const struct blk_dag_dir_reader reader = {.fetch = memblocks_get,
						 .ctx = &mem};

static const struct blk_dag_file_meta meta_700 = {
    .has_mode = true,
    .mode = 0700,
    .has_mtime = true,
    .mtime_sec = 1700000000,
    .mtime_nsec = 123456789,
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int add_str(struct blk_dag_dir *d, const char *name,
		   const struct blk_cid *cid, uint64_t tsize, unsigned flags)
{
	return blk_dag_dir_add(d, name, strlen(name), cid, tsize, flags);
}

/* A file holding @content: one raw leaf (the importer's single-chunk file
 * without metadata). */
static int add_file(struct blk_dag_dir *d, const char *name,
		    const char *content)
{
	struct blk_cid cid;

	blk_cid_compute(&cid, BLK_CODEC_RAW, content, strlen(content));
	return add_str(d, name, &cid, strlen(content), 0);
}

/* The generator's files(): entry i is @prefix%05d, holding its name and a
 * newline. */
static void add_files(struct blk_dag_dir *d, size_t n, const char *prefix)
{
	char name[64], content[80];

	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%05u", prefix, (unsigned)i);
		snprintf(content, sizeof(content), "%s\n", name);
		REQUIRE(add_file(d, name, content) == 0);
	}
}

/* Build @d with @meta into mem; the root's CID and Tsize. */
static int build(struct blk_dag_dir *d, const struct blk_dag_file_meta *meta,
		 struct blk_cid *cid, uint64_t *tsize)
{
	return blk_dag_dir_finish(d, meta, memblocks_put, &mem, cid, tsize);
}

/* The generator's subdirs(): dir-%05d holding f = "x", each given with
 * @flags (BLK_DAG_DIR_SUBDIR when the importer saw it listed). */
static void add_subdirs(struct blk_dag_dir *d, size_t n, unsigned flags)
{
	struct blk_dag_dir *s;
	struct blk_cid cid;
	uint64_t tsize;
	char name[32];

	REQUIRE(blk_dag_dir_new(&s) == 0);
	for (size_t i = 0; i < n; i++) {
		blk_dag_dir_reset(s);
		REQUIRE(add_file(s, "f", "x") == 0);
		REQUIRE(build(s, NULL, &cid, &tsize) == 0);
		snprintf(name, sizeof(name), "dir-%05u", (unsigned)i);
		REQUIRE(add_str(d, name, &cid, tsize, flags) == 0);
	}
	blk_dag_dir_free(&s);
}

/* The generator's emptydirs(): dir-%05d, each an empty directory. */
static void add_emptydirs(struct blk_dag_dir *d, size_t n)
{
	struct blk_dag_dir *s;
	struct blk_cid cid;
	uint64_t tsize;
	char name[32];

	REQUIRE(blk_dag_dir_new(&s) == 0);
	REQUIRE(build(s, NULL, &cid, &tsize) == 0);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "dir-%05u", (unsigned)i);
		REQUIRE(add_str(d, name, &cid, tsize, 0) == 0);
	}
	blk_dag_dir_free(&s);
}

static void feed_nested(struct blk_dag_dir *d)
{
	const struct blk_dag_file_meta m711 = {.has_mode = true, .mode = 0711};
	const struct blk_dag_file_meta m700 = {
	    .has_mode = true, .mode = 0700, .has_mtime = true, .mtime_sec = 5};
	struct blk_dag_dir *s;
	struct blk_cid cid;
	uint64_t tsize;

	REQUIRE(blk_dag_dir_new(&s) == 0);
	REQUIRE(add_file(d, "a.txt", "a\n") == 0);
	add_files(s, 3, "file-");
	REQUIRE(build(s, &m711, &cid, &tsize) == 0);
	REQUIRE(add_str(d, "sub", &cid, tsize, BLK_DAG_DIR_SUBDIR) == 0);
	blk_dag_dir_reset(s);
	REQUIRE(build(s, &m700, &cid, &tsize) == 0);
	REQUIRE(add_str(d, "empty", &cid, tsize, 0) == 0);
	REQUIRE(add_file(d, "z", "") == 0);
	blk_dag_dir_free(&s);
}

struct vector {
	const char *name;
	const char *cid;
	uint64_t tsize;
	enum kind kind;
};

/* Output of gen-dir-vectors.mjs (ipfs-unixfs-importer 17.1.1). */
static const struct vector vectors[] = {
    {"flat0", "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354", 4,
     PLAIN},
    {"flat1", "bafybeicikjhnzx4gmu3kcimjw6rya4t7x4gtifdaskt4myomokk5ndiwni", 69,
     PLAIN},
    {"flat10", "bafybeifquymvv36lulxgqygb3hgv45ah3kwostywtzadgetd7gkpwiavgy",
     654, PLAIN},
    {"flat5000", "bafybeidwtgys4hsupftlbzd5ci56vu4jhn5ooxutlmxkhqldur3hxap2lu",
     325004, PLAIN},
    {"flat5698", "bafybeihxz2txaecjbs7k6dyrf2aqdftldyd5klllmqfkhvgxkkxhz3y3k4",
     370374, PLAIN},
    {"flat5699", "bafybeidzxmlne6i7ibfvlgigdib33hpkinjr3l6wlg4v5jjycueekctdtu",
     423236, HAMT},
    {"flat20000", "bafybeifxtyeveytulyuhocwgferhyyzydvbl2ewby2sj6eupv5sy6ez2oe",
     1563845, HAMT},
    {"flat200000",
     "bafybeihgn7e7xr3zhbszdm25nrhj2dicny4n42bultawgme5n4y2ws5ec4", 18121331,
     HAMT},
    {"flat10_meta",
     "bafybeiftddfsg26di2iigj2n7mcnykr7bk3akbmzurqjvcdqoz7neilyky", 670, PLAIN},
    {"flat10_mode755_mtime_s",
     "bafybeiexb6jc52jgmym4dbs2vfd3k24lzpd5oyr2zdtwkigcknw3h4iwfu", 662, PLAIN},
    {"flat0_meta",
     "bafybeiehzp4sd42pi2wefqtg24crhtxhtwzcgno324fwalekxejfvbbzxa", 20, PLAIN},
    {"hamt20000_meta",
     "bafybeicepul2juu3hwghakuiglaiprdwnwuvwlxyn2funln36jocgmqamm", 1563861,
     HAMT},
    {"nested", "bafybeiewm5ri54kzgihzmaom3pjb3qvpl2h2fgxylmh2belr44cfb6xeja",
     410, PLAIN},
    {"subdirs6000",
     "bafybeicdz2fndf5lczk5q3k24zokdfuukaf6nlm3k3nxagflkobshulbya", 618004,
     PLAIN},
    {"emptydirs6000",
     "bafybeihzhcevxgvccd7ihupcmwrfkx4bvdnp2tgltr6fv6wm633fnn5v7m", 396832,
     HAMT},
    {"near_listed_subdir_last",
     "bafybeiez2cyyyeawxo432fkalljgo7xscrpgsldxzcgrubbkeu37gw52m4", 423274,
     HAMT},
    {"near_implicit_subdir_last",
     "bafybeiaayzgjhllt54dvoo43wkbrt3qe5myviedzkobowjjskbgonq4f2q", 370477,
     PLAIN},
    {"near_listed_subdir_first",
     "bafybeiaayzgjhllt54dvoo43wkbrt3qe5myviedzkobowjjskbgonq4f2q", 370477,
     PLAIN},
    {"utf8_5000", "bafybeiabsdl7334aove7d4d5r2tedgxfcssd76othlg3qr7ea6fitagn5a",
     441368, HAMT},
    {"random2000_meta",
     "bafybeidvgcblj6t4fvaljivqlb2mb56weqx5hhq5mj7aexwxzwxsrikmle", 188336,
     PLAIN},
    {"random6000",
     "bafybeie557kqnqsmjeahjuyj53almxeqhakosqeyxeuf22k5qbfefcv32q", 615998,
     HAMT},
};

/* The generator's randomFiles(): @n distinct pseudo-random names (an LCG,
 * lengths 1..40 letters of an alphabet with two 2-byte UTF-8 ones, "."
 * and ".." skipped), each a file holding its name and a newline. */
static void add_random_files(struct blk_dag_dir *d, size_t n, uint32_t seed)
{
	static const char *alphabet[] = {
	    "a", "b", "c", "d", "e", "f", "g",	      "h", "i", "j",
	    "k", "l", "m", "n", "o", "p", "q",	      "r", "s", "t",
	    "u", "v", "w", "x", "y", "z", "\xc3\xa9", "-", ".", "\xce\xa9"};
	const size_t n_alpha = sizeof(alphabet) / sizeof(alphabet[0]);
	char(*names)[128] = xmalloc(n * sizeof(*names));
	uint32_t x = seed;
	size_t have = 0;

	while (have < n) {
		char *name = names[have], content[130];
		size_t len, dup = 0;

		x = (x * 1103515245u + 12345u) & 0x7fffffff;
		len = 1 + x % 40;
		name[0] = 0;
		for (size_t i = 0; i < len; i++) {
			x = (x * 1103515245u + 12345u) & 0x7fffffff;
			strcat(name, alphabet[x % n_alpha]);
		}
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		for (size_t i = 0; i < have && !dup; i++)
			dup = !strcmp(names[i], name);
		if (dup)
			continue;
		snprintf(content, sizeof(content), "%s\n", name);
		REQUIRE(add_file(d, name, content) == 0);
		have++;
	}
	free(names);
}

/* Feed @d the entries of case @name in the generator's order; *@meta gets
 * the directory's own metadata. */
static void feed(struct blk_dag_dir *d, const char *name,
		 const struct blk_dag_file_meta **meta)
{
	static const struct blk_dag_file_meta m755 = {.has_mode = true,
						      .mode = 0755,
						      .has_mtime = true,
						      .mtime_sec = 1700000000};
	static const struct blk_dag_file_meta m1777 = {.has_mode = true,
						       .mode = 01777,
						       .has_mtime = true,
						       .mtime_sec = 1700000000,
						       .mtime_nsec = 123456789};
	static const struct blk_dag_file_meta m750 = {.has_mode = true,
						      .mode = 0750,
						      .has_mtime = true,
						      .mtime_sec = 1700000000,
						      .mtime_nsec = 123456789};
	static const struct blk_dag_file_meta m4755 = {.has_mode = true,
						       .mode = 04755,
						       .has_mtime = true,
						       .mtime_sec = 1,
						       .mtime_nsec = 1};
	unsigned n;

	*meta = NULL;
	if (sscanf(name, "flat%u", &n) == 1 && !strchr(name, '_')) {
		add_files(d, n, "file-");
	} else if (!strcmp(name, "flat10_meta")) {
		add_files(d, 10, "file-");
		*meta = &meta_700;
	} else if (!strcmp(name, "flat10_mode755_mtime_s")) {
		add_files(d, 10, "file-");
		*meta = &m755;
	} else if (!strcmp(name, "flat0_meta")) {
		*meta = &m1777;
	} else if (!strcmp(name, "hamt20000_meta")) {
		add_files(d, 20000, "file-");
		*meta = &m750;
	} else if (!strcmp(name, "nested")) {
		feed_nested(d);
	} else if (!strcmp(name, "subdirs6000")) {
		add_subdirs(d, 6000, BLK_DAG_DIR_SUBDIR);
	} else if (!strcmp(name, "emptydirs6000")) {
		add_emptydirs(d, 6000);
	} else if (!strcmp(name, "near_listed_subdir_last")) {
		add_files(d, 5698, "file-");
		add_subdirs(d, 1, BLK_DAG_DIR_SUBDIR);
	} else if (!strcmp(name, "near_implicit_subdir_last")) {
		add_files(d, 5698, "file-");
		add_subdirs(d, 1, BLK_DAG_DIR_SUBDIR_IMPLICIT);
	} else if (!strcmp(name, "near_listed_subdir_first")) {
		add_subdirs(d, 1, BLK_DAG_DIR_SUBDIR);
		add_files(d, 5698, "file-");
	} else if (!strcmp(name, "utf8_5000")) {
		add_files(d, 5000,
			  "\xc3\xbcn\xc3\xaf"
			  "c\xc3\xb6"
			  "d\xc3\xa9-");
	} else if (!strcmp(name, "random2000_meta")) {
		add_random_files(d, 2000, 1);
		*meta = &m4755;
	} else if (!strcmp(name, "random6000")) {
		add_random_files(d, 6000, 2);
	} else {
		REQUIRE(!"a vector without its feed");
	}
}

struct listing {
	size_t n;
	bool sorted_by_name;
	uint8_t last[BLK_DAG_NAME_MAX];
	size_t last_len;
	uint64_t tsize_sum;
};

static int count_entry(void *arg, const struct blk_dag_dirent *e)
{
	struct listing *l = arg;
	size_t n = e->name_len < l->last_len ? e->name_len : l->last_len;
	int c = memcmp(l->last, e->name, n);

	if (l->n && (c > 0 || (c == 0 && l->last_len >= e->name_len)))
		l->sorted_by_name = false;
	memcpy(l->last, e->name, e->name_len);
	l->last_len = e->name_len;
	l->n++;
	l->tsize_sum += e->tsize;
	return 0;
}

/* Build each vector, compare with the importer's CID and Tsize, and read
 * the directory back: every entry listed once, in name order when plain;
 * lookups of the first and last names and of a missing one. */
static void test_vectors(void)
{
	struct blk_dag_dir *d;

	REQUIRE(blk_dag_dir_new(&d) == 0);
	for (size_t v = 0; v < sizeof(vectors) / sizeof(vectors[0]); v++) {
		const struct vector *vec = &vectors[v];
		const struct blk_dag_file_meta *meta;
		struct blk_dag_dir_info info;
		struct listing l = {.sorted_by_name = true};
		struct blk_dag_dirent e;
		char got[BLK_CID_STR_MAX];
		struct blk_cid cid;
		uint64_t tsize = 0;
		void *block;
		size_t len;
		int rc;

		memblocks_clear(&mem);
		blk_dag_dir_reset(d);
		feed(d, vec->name, &meta);
		CHECK(blk_dag_dir_will_shard(d) == (vec->kind == HAMT));
		rc = build(d, meta, &cid, &tsize);
		CHECK(rc == 0);
		blk_cid_to_string(&cid, got);
		if (strcmp(got, vec->cid) || tsize != vec->tsize)
			fprintf(stderr, "%s: got %s %llu, want %s %llu\n",
				vec->name, got, (unsigned long long)tsize,
				vec->cid, (unsigned long long)vec->tsize);
		CHECK(strcmp(got, vec->cid) == 0);
		CHECK(tsize == vec->tsize);

		REQUIRE(memblocks_get(&mem, &cid, &block, &len) == 0);
		CHECK(blk_dag_dir_decode(block, len, &info) == 0);
		CHECK(info.sharded == (vec->kind == HAMT));
		CHECK(info.meta.has_mode ==
		      (meta && meta->has_mode && meta->mode != 0755));
		CHECK(info.meta.has_mtime == (meta && meta->has_mtime));
		free(block);

		CHECK(blk_dag_dir_each(&reader, &cid, count_entry, &l) == 0);
		CHECK(l.n == blk_dag_dir_count(d));
		CHECK(l.sorted_by_name == (vec->kind == PLAIN || l.n < 2));
		if (l.n) {
			CHECK(blk_dag_dir_lookup(&reader, &cid, l.last,
						 l.last_len, &e) == 0);
			CHECK(e.name_len == l.last_len);
		}
		CHECK(blk_dag_dir_lookup(&reader, &cid, "no-such-name", 12,
					 &e) == -ENOENT);
		if (l.n > 1) {
			CHECK(blk_dag_dir_lookup(&reader, &cid, "file-00000",
						 10, &e) == 0 ||
			      strncmp(vec->name, "flat", 4) != 0);
		}
	}
	blk_dag_dir_free(&d);
	memblocks_clear(&mem);
}

/* Every one of 20,000 names is found, with its own CID. */
static void test_lookup_all(void)
{
	struct blk_dag_dir *d;
	struct blk_cid root, want;
	uint64_t tsize;
	char name[32], content[40];
	size_t found = 0;

	REQUIRE(blk_dag_dir_new(&d) == 0);
	add_files(d, 20000, "file-");
	REQUIRE(build(d, NULL, &root, &tsize) == 0);
	for (unsigned i = 0; i < 20000; i++) {
		struct blk_dag_dirent e;

		snprintf(name, sizeof(name), "file-%05u", i);
		snprintf(content, sizeof(content), "%s\n", name);
		blk_cid_compute(&want, BLK_CODEC_RAW, content, strlen(content));
		if (blk_dag_dir_lookup(&reader, &root, name, strlen(name),
				       &e) == 0 &&
		    blk_cid_equal(&e.cid, &want) && e.tsize == strlen(content))
			found++;
	}
	CHECK(found == 20000);
	blk_dag_dir_free(&d);
	memblocks_clear(&mem);
}

static void test_errors(void)
{
	struct blk_dag_dir *d;
	struct blk_dag_dirent e;
	struct blk_cid cid, root;
	uint64_t tsize;
	const struct blk_dag_file_meta bad = {.has_mtime = true,
					      .mtime_nsec = 1000000000};

	REQUIRE(blk_dag_dir_new(&d) == 0);
	blk_cid_compute(&cid, BLK_CODEC_RAW, "x", 1);
	CHECK(add_str(d, "", &cid, 1, 0) == -EINVAL);
	CHECK(add_str(d, ".", &cid, 1, 0) == -EINVAL);
	CHECK(add_str(d, "..", &cid, 1, 0) == -EINVAL);
	CHECK(add_str(d, "a/b", &cid, 1, 0) == -EINVAL);
	CHECK(blk_dag_dir_add(d, "a\0b", 3, &cid, 1, 0) == -EINVAL);
	CHECK(add_str(d, "x", &cid, BLK_PB_MAX_TSIZE + 1, 0) == -EINVAL);
	CHECK(add_str(d, "x", &cid, 1, 1u << 7) == -EINVAL);
	CHECK(add_str(d, "x", &cid, 1,
		      BLK_DAG_DIR_SUBDIR | BLK_DAG_DIR_SUBDIR_IMPLICIT) ==
	      -EINVAL);
	{
		char longname[BLK_DAG_NAME_MAX + 2];

		memset(longname, 'n', sizeof(longname));
		CHECK(blk_dag_dir_add(d, longname, BLK_DAG_NAME_MAX, &cid, 1,
				      0) == 0);
		CHECK(blk_dag_dir_add(d, longname, BLK_DAG_NAME_MAX + 1, &cid,
				      1, 0) == -EINVAL);
	}
	CHECK(add_str(d, "...", &cid, 1, 0) == 0);
	CHECK(blk_dag_dir_count(d) == 2);
	CHECK(blk_dag_dir_entry_estimate(3, &cid) == 3 + 36);
	CHECK(build(d, &bad, &root, &tsize) == -EINVAL);

	/* A name twice: plain and sharded. */
	CHECK(add_str(d, "...", &cid, 1, 0) == 0);
	CHECK(build(d, NULL, &root, &tsize) == -EEXIST);
	blk_dag_dir_reset(d);
	add_files(d, 6000, "file-");
	CHECK(blk_dag_dir_will_shard(d));
	CHECK(add_str(d, "file-03000", &cid, 1, 0) == 0);
	CHECK(build(d, NULL, &root, &tsize) == -EEXIST);

	/* Reading what is not a directory. */
	blk_dag_dir_reset(d);
	CHECK(build(d, NULL, &root, &tsize) == 0);
	CHECK(blk_dag_dir_lookup(&reader, &cid, "x", 1, &e) == -ENOTDIR);
	CHECK(blk_dag_dir_lookup(&reader, &root, "a/b", 3, &e) == -EINVAL);
	blk_cid_compute(&cid, BLK_CODEC_DAG_PB, "nothing", 7);
	CHECK(blk_dag_dir_lookup(&reader, &cid, "x", 1, &e) == -ENOENT);
	blk_dag_dir_free(&d);
	memblocks_clear(&mem);
}

/* Another hash: every block named with it, and read back. */
static void test_blake2b(void)
{
	struct blk_dag_dir *d;
	struct blk_cid root;
	struct listing l = {.sorted_by_name = true};
	uint64_t tsize;

	REQUIRE(blk_dag_dir_new(&d) == 0);
	CHECK(blk_dag_dir_set_hash(d, (enum blk_hash)7) == -EINVAL);
	CHECK(blk_dag_dir_set_hash(d, BLK_HASH_BLAKE2B_256) == 0);
	add_files(d, 10, "file-");
	CHECK(build(d, NULL, &root, &tsize) == 0);
	CHECK(root.hash == BLK_HASH_BLAKE2B_256 && mem.n == 1);
	blk_dag_dir_reset(d);
	add_files(d, 6000, "file-");
	memblocks_clear(&mem);
	CHECK(build(d, NULL, &root, &tsize) == 0);
	CHECK(root.hash == BLK_HASH_BLAKE2B_256);
	for (size_t i = 0; i < mem.cap; i++)
		if (mem.slots[i].data)
			CHECK(mem.slots[i].cid.hash == BLK_HASH_BLAKE2B_256);
	CHECK(blk_dag_dir_each(&reader, &root, count_entry, &l) == 0);
	CHECK(l.n == 6000);
	blk_dag_dir_free(&d);
	memblocks_clear(&mem);
}

/* Rule 5: a plain node past BLK_PB_MAX_BLOCK (only sub-directories, which
 * do not count in the estimate) is sharded instead, and reads back. */
static void test_too_big_for_one_block(void)
{
	struct blk_dag_dir *d;
	struct blk_cid cid, root;
	struct listing l = {.sorted_by_name = true};
	uint64_t tsize;
	char name[BLK_DAG_NAME_MAX + 1];

	REQUIRE(blk_dag_dir_new(&d) == 0);
	blk_cid_compute(&cid, BLK_CODEC_DAG_PB, "a directory", 11);
	memset(name, 'd', 200);
	for (unsigned i = 0; i < 10000; i++) {
		snprintf(name + 200, sizeof(name) - 200, "%05u", i);
		REQUIRE(add_str(d, name, &cid, 1000, BLK_DAG_DIR_SUBDIR) == 0);
	}
	CHECK(blk_dag_dir_will_shard(d));
	CHECK(build(d, NULL, &root, &tsize) == 0);
	CHECK(blk_dag_dir_each(&reader, &root, count_entry, &l) == 0);
	CHECK(l.n == 10000);
	CHECK(l.tsize_sum == 10000u * 1000u);
	blk_dag_dir_free(&d);
	memblocks_clear(&mem);
}

/* No quadratic behaviour: 20,000 and 200,000 entries (leaf CIDs made
 * beforehand) build in well under a second of CPU each (CPU time: the
 * machine may be shared), blocks hashed. */
static void test_time(void)
{
	struct blk_dag_dir *d;
	struct blk_cid *cids, root;
	uint64_t tsize;
	char name[32];
	const size_t sizes[] = {20000, 200000};

	cids = xmalloc(200000 * sizeof(*cids));
	for (size_t i = 0; i < 200000; i++)
		blk_cid_compute(&cids[i], BLK_CODEC_RAW, &i, sizeof(i));
	REQUIRE(blk_dag_dir_new(&d) == 0);
	for (size_t s = 0; s < 2; s++) {
		double t0 = now_s(), t;

		blk_dag_dir_reset(d);
		for (size_t i = 0; i < sizes[s]; i++) {
			snprintf(name, sizeof(name), "file-%06u", (unsigned)i);
			REQUIRE(add_str(d, name, &cids[i], 8, 0) == 0);
		}
		CHECK(blk_dag_dir_finish(d, NULL, NULL, NULL, &root, &tsize) ==
		      0);
		t = now_s() - t0;
		printf("dir of %zu entries: %.3f s of CPU\n", sizes[s], t);
		CHECK(t < 1.0);
	}
	blk_dag_dir_free(&d);
	free(cids);
}

int main(void)
{
	test_vectors();
	test_lookup_all();
	test_errors();
	test_too_big_for_one_block();
	test_blake2b();
	test_time();
	printf("test-dir: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
