/* Unit tests for blocks/dag/file.c: the root CIDs and dag sizes that
 * ipfs-unixfs-importer gives files of known bytes with the fixed chunker
 * (vectors/unixfs/vectors.h), the blocks emitted, and the errors. */

#include "blocks/dag/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"
#include "tests/unit/check.h"
#include "tests/unit/vectors/unixfs/vectors.h"

/* Byte @i of every test file; keep in sync with gen-vectors.mjs. */
static uint8_t content_byte(uint64_t i)
{
	return (uint8_t)((((uint32_t)i * 0x9e3779b1u) >> 24) ^ 7);
}

struct run {
	const uint8_t *content;
	struct blk_cid first_leaf;
	unsigned emitted, reads;
	int fail_at; /* emit fails on this block (1-based), 0 never */
	struct blk_cid last;
};

static int emit(void *ctx, const struct blk_cid *cid, const uint8_t *block,
		size_t len)
{
	struct run *r = ctx;
	struct blk_pb_link links[BLK_DAG_FILE_FANOUT];
	uint64_t bs[BLK_DAG_FILE_FANOUT], sum = 0;
	struct blk_pb_node node;
	struct blk_unixfs u;

	r->emitted++;
	if (r->fail_at && r->emitted == (unsigned)r->fail_at)
		return -EIO;
	CHECK(cid->codec == BLK_CODEC_DAG_PB);
	CHECK(blk_cid_verify(cid, block, len));
	/* Every node decodes as a UnixFS file whose sizes add up. */
	CHECK(blk_pb_decode(block, len, &node, links, BLK_DAG_FILE_FANOUT) ==
	      0);
	CHECK(node.n_links <= BLK_DAG_FILE_FANOUT && node.has_data);
	CHECK(blk_unixfs_decode(node.data, node.data_len, &u, bs,
				BLK_DAG_FILE_FANOUT) == 0);
	CHECK(u.type == BLK_UNIXFS_FILE);
	CHECK(u.n_blocksizes == node.n_links);
	for (size_t i = 0; i < u.n_blocksizes && i < node.n_links; i++) {
		sum += bs[i];
		CHECK(links[i].has_name && links[i].name_len == 0);
		CHECK(links[i].has_tsize && links[i].tsize >= bs[i]);
	}
	CHECK(u.filesize == sum + u.data_len);
	r->last = *cid;
	return 0;
}

static int read_leaf(void *ctx, const struct blk_cid *cid, uint8_t *buf,
		     size_t len)
{
	struct run *r = ctx;

	r->reads++;
	CHECK(blk_cid_equal(cid, &r->first_leaf));
	memcpy(buf, r->content, len);
	return 0;
}

static void meta_of(const char *name, struct blk_dag_file_meta *m)
{
	memset(m, 0, sizeof(*m));
	if (strcmp(name, "meta") == 0) {
		m->has_mode = true;
		m->mode = 0600;
		m->has_mtime = true;
		m->mtime_sec = 1700000000;
		m->mtime_nsec = 123456789;
	} else if (strcmp(name, "mode644") == 0) {
		m->has_mode = true;
		m->mode = 0100644; /* the file type bits are dropped */
	} else if (strcmp(name, "mtime_neg") == 0) {
		m->has_mtime = true;
		m->mtime_sec = -1;
	} else {
		REQUIRE(strcmp(name, "none") == 0);
	}
}

static void test_vectors(const uint8_t *content)
{
	for (size_t i = 0; i < sizeof(file_vectors) / sizeof(file_vectors[0]);
	     i++) {
		const struct file_vector *v = &file_vectors[i];
		struct run r = {.content = content};
		struct blk_dag_file_meta m;
		struct blk_dag_file *f;
		struct blk_cid leaf, root;
		uint64_t off, fsize = 0, dsize = 0;
		unsigned leaves = 0;
		char str[BLK_CID_STR_MAX];

		meta_of(v->meta, &m);
		REQUIRE(blk_dag_file_new(&f, &m, emit, read_leaf, &r) == 0);
		for (off = 0; off < v->size; off += v->chunk) {
			uint64_t n =
			    v->size - off < v->chunk ? v->size - off : v->chunk;

			blk_cid_compute(&leaf, BLK_CODEC_RAW, content + off, n);
			if (off == 0)
				r.first_leaf = leaf;
			CHECK(blk_dag_file_add_leaf(f, &leaf, n) == 0);
			leaves++;
		}
		CHECK(blk_dag_file_finish(f, &root, &fsize, &dsize) == 0);
		blk_dag_file_free(&f);
		CHECK(f == NULL);

		blk_cid_to_string(&root, str);
		CHECK(strcmp(str, v->cid) == 0);
		if (strcmp(str, v->cid) != 0)
			fprintf(stderr, "size %llu %s: got %s want %s\n",
				(unsigned long long)v->size, v->meta, str,
				v->cid);
		CHECK(fsize == v->size);
		CHECK(dsize == v->dag_size);
		/* The importer stores the empty chunk of an empty file. */
		CHECK((leaves ? leaves : 1) + r.emitted == v->blocks);
		if (r.emitted)
			CHECK(blk_cid_equal(&r.last, &root));
		/* The leaf's bytes are read only for a one-leaf file with
		 * metadata that has bytes. */
		CHECK(r.reads == (leaves == 1 && v->size > 0 &&
				  strcmp(v->meta, "none") != 0));
	}
}

/* An empty file given as one empty leaf is the same as no leaves. */
static void test_empty_leaf(void)
{
	struct blk_dag_file *f;
	struct blk_cid leaf, a, b;
	uint64_t fs, ds;

	blk_cid_compute(&leaf, BLK_CODEC_RAW, "", 0);
	REQUIRE(blk_dag_file_new(&f, NULL, NULL, NULL, NULL) == 0);
	CHECK(blk_dag_file_finish(f, &a, &fs, &ds) == 0);
	blk_dag_file_free(&f);
	REQUIRE(blk_dag_file_new(&f, NULL, NULL, NULL, NULL) == 0);
	CHECK(blk_dag_file_add_leaf(f, &leaf, 0) == 0);
	CHECK(blk_dag_file_finish(f, &b, &fs, &ds) == 0);
	blk_dag_file_free(&f);
	CHECK(blk_cid_equal(&a, &b) && blk_cid_equal(&a, &leaf));
	CHECK(fs == 0 && ds == 0);
}

static void test_errors(const uint8_t *content)
{
	struct blk_dag_file_meta m = {.has_mtime = true,
				      .mtime_nsec = 1000000000};
	struct blk_dag_file *f = (void *)1;
	struct blk_cid leaf, pb, root;
	struct run r = {.content = content, .fail_at = 2};
	uint64_t fs, ds;

	CHECK(blk_dag_file_new(&f, &m, emit, read_leaf, &r) == -EINVAL);
	CHECK(f == NULL);
	m.mtime_nsec = 0;
	CHECK(blk_dag_file_new(&f, &m, emit, NULL, &r) == -EINVAL);
	blk_dag_file_free(&f);

	blk_cid_compute(&leaf, BLK_CODEC_RAW, content, 1);
	blk_cid_compute(&pb, BLK_CODEC_DAG_PB, content, 1);
	REQUIRE(blk_dag_file_new(&f, NULL, emit, NULL, &r) == 0);
	CHECK(blk_dag_file_add_leaf(f, &pb, 1) == -EINVAL);
	CHECK(blk_dag_file_add_leaf(f, &leaf, BLK_PB_MAX_BLOCK + 1) == -EINVAL);
	/* The emit error comes back from the call that made the node. */
	for (unsigned i = 0; i < 174 * 2; i++)
		CHECK(blk_dag_file_add_leaf(f, &leaf, 1) ==
		      (i == 347 ? -EIO : 0));
	CHECK(blk_dag_file_add_leaf(f, &leaf, 1) == -EINVAL);
	CHECK(blk_dag_file_finish(f, &root, &fs, &ds) == -EINVAL);
	blk_dag_file_free(&f);

	REQUIRE(blk_dag_file_new(&f, NULL, emit, NULL, &r) == 0);
	CHECK(blk_dag_file_add_leaf(f, &leaf, 1) == 0);
	CHECK(blk_dag_file_finish(f, &root, &fs, &ds) == 0);
	CHECK(blk_cid_equal(&root, &leaf));
	CHECK(blk_dag_file_finish(f, &root, &fs, &ds) == -EINVAL);
	CHECK(blk_dag_file_add_leaf(f, &leaf, 1) == -EINVAL);
	blk_dag_file_free(&f);
	blk_dag_file_free(&f);
}

/* Another hash names the nodes with it; the shape stays the same. */
static void test_hash(const uint8_t *content)
{
	struct run r = {.content = content};
	struct blk_dag_file *f;
	struct blk_cid leaf, root;
	uint64_t fs, ds, ds_sha;

	blk_cid_compute_hash(&leaf, BLK_HASH_BLAKE2B_256, BLK_CODEC_RAW,
			     content, 100);
	for (int pass = 0; pass < 2; pass++) {
		REQUIRE(blk_dag_file_new(&f, NULL, emit, NULL, &r) == 0);
		if (pass == 1)
			CHECK(blk_dag_file_set_hash(f, BLK_HASH_BLAKE2B_256) ==
			      0);
		for (int i = 0; i < 200; i++)
			CHECK(blk_dag_file_add_leaf(f, &leaf, 100) == 0);
		CHECK(blk_dag_file_set_hash(f, BLK_HASH_SHA2_256) == -EINVAL);
		CHECK(blk_dag_file_finish(f, &root, &fs, &ds) == 0);
		blk_dag_file_free(&f);
		CHECK(root.hash ==
		      (pass ? BLK_HASH_BLAKE2B_256 : BLK_HASH_SHA2_256));
		if (pass == 0)
			ds_sha = ds;
		else
			CHECK(ds ==
			      ds_sha + 2 * 2); /* the root links 2 nodes */
	}
	REQUIRE(blk_dag_file_new(&f, NULL, NULL, NULL, NULL) == 0);
	CHECK(blk_dag_file_set_hash(f, (enum blk_hash)7) == -EINVAL);
	CHECK(blk_dag_file_set_hash(f, BLK_HASH_BLAKE2B_256) == 0);
	CHECK(blk_dag_file_finish(f, &root, &fs, &ds) == 0);
	CHECK(root.hash == BLK_HASH_BLAKE2B_256 && root.codec == BLK_CODEC_RAW);
	blk_dag_file_free(&f);
}

/* Zeros added as runs (blk_dag_file_add_zeros) give the file that the
 * same leaves added one by one give, with data leaves before, between and
 * after; a run of 174^3 leaves costs a handful of blocks. */
static uint64_t zeros_root(const struct blk_dag_file_meta *m,
			   const uint64_t *runs, size_t n, bool one_by_one,
			   struct blk_cid *root, unsigned *emitted)
{
	static const uint8_t zero[1024], data[100] = {1, 2, 3};
	struct run r = {.content = data};
	struct blk_dag_file *f;
	struct blk_cid z, d;
	uint64_t fs, ds;

	blk_cid_compute(&z, BLK_CODEC_RAW, zero, sizeof(zero));
	blk_cid_compute(&d, BLK_CODEC_RAW, data, sizeof(data));
	r.first_leaf = d;
	if (n >= 2 && runs[0] == 0 && runs[1] == 1 &&
	    (n < 3 || runs[2] == 0)) { /* one zero leaf: read inline */
		r.first_leaf = z;
		r.content = zero;
	}
	REQUIRE(blk_dag_file_new(&f, m, emit, read_leaf, &r) == 0);
	for (size_t i = 0; i < n; i++) {
		/* even runs: data leaves; odd runs: zero leaves */
		for (uint64_t k = 0; i % 2 == 0 && k < runs[i]; k++)
			CHECK(blk_dag_file_add_leaf(f, &d, sizeof(data)) == 0);
		if (i % 2 == 1 && !one_by_one)
			CHECK(blk_dag_file_add_zeros(f, &z, sizeof(zero),
						     runs[i]) == 0);
		for (uint64_t k = 0; i % 2 == 1 && one_by_one && k < runs[i];
		     k++)
			CHECK(blk_dag_file_add_leaf(f, &z, sizeof(zero)) == 0);
	}
	CHECK(blk_dag_file_finish(f, root, &fs, &ds) == 0);
	blk_dag_file_free(&f);
	*emitted = r.emitted;
	return fs;
}

static void test_zeros(void)
{
	static const uint64_t cases[][5] = {
	    {0, 1},
	    {0, 174},
	    {0, 175},
	    {3, 174, 2},
	    {173, 1, 0},
	    {0, 174 * 174 + 5, 1},
	    {5, 30000, 7},
	    {0, 174 * 174, 0},
	    {1, 174 * 174 * 2 + 173, 3},
	    {0, 0, 4, 500, 1},
	};
	struct blk_dag_file_meta m = {.has_mode = true, .mode = 0640};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct blk_cid a, b;
		unsigned ea, eb;
		uint64_t fa = zeros_root(&m, cases[c], 5, true, &a, &ea);
		uint64_t fb = zeros_root(&m, cases[c], 5, false, &b, &eb);

		CHECK(fa == fb && blk_cid_equal(&a, &b));
		CHECK(eb <= ea);
	}
	/* 174^3 zero leaves: a few nodes, not 174^2 + 174 + 1 */
	{
		uint64_t run[2] = {0, 174ull * 174 * 174};
		struct blk_cid r;
		unsigned e;

		CHECK(zeros_root(NULL, run, 2, false, &r, &e) ==
		      174ull * 174 * 174 * 1024);
		CHECK(e <= 4);
	}
}

int main(void)
{
	uint64_t max = 0;
	uint8_t *content;

	for (size_t i = 0; i < sizeof(file_vectors) / sizeof(file_vectors[0]);
	     i++)
		if (file_vectors[i].size > max)
			max = file_vectors[i].size;
	content = xmalloc(max);
	for (uint64_t i = 0; i < max; i++)
		content[i] = content_byte(i);
	test_vectors(content);
	test_empty_leaf();
	test_errors(content);
	test_hash(content);
	test_zeros();
	free(content);
	printf("dagfile: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
