/* Tests of the HAMT shards (blocks/dag/hamt.h) and their hash
 * (blocks/dag/murmur3.h): murmur3 against @multiformats/murmur3 and
 * hamt-sharding, the shard layout, and a reader that refuses malformed
 * shards. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "blocks/dag/dir.h"
#include "blocks/dag/hamt.h"
#include "blocks/dag/murmur3.h"
#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"
#include "check.h"
#include "memblocks.h"

static struct memblocks mem;
static const struct blk_dag_file_meta meta_700_root = {
    .has_mode = true, .mode = 0700, .has_mtime = true, .mtime_sec = 7};
static const struct blk_dag_dir_reader reader = {.fetch = memblocks_get,
						 .ctx = &mem};

/* @multiformats/murmur3 2.2.8 murmur3128 (16 bytes: h1 then h2, each
 * big-endian), and the first 8 bucket indices hamt-sharding 3.0.8 takes
 * from the importer's hash (tests/unit/vectors/dir/gen-murmur3.mjs). */
static const struct {
	const char *in, *h128, *slots;
} mm_vectors[] = {
    {"", "00000000000000000000000000000000", "0000000000000000"},
    {"a", "85555565f6597889e6b53a48510e895a", "85555565f6597889"},
    {"ab", "938b11ea16ed1b2ee65ea7019b52d4ad", "938b11ea16ed1b2e"},
    {"abc", "b4963f3f3fad78673ba2744126ca2d52", "b4963f3f3fad7867"},
    {"hello", "cbd8a7b341bd9b025b1e906a48ae1d19", "cbd8a7b341bd9b02"},
    {"0123456", "13eb9fb82606f7a6b4ebef492fdef34e", "13eb9fb82606f7a6"},
    {"01234567", "8236039b7387354dc3369387d8964920", "8236039b7387354d"},
    {"012345678", "4c1e87519fe738ba72a17af899d597f1", "4c1e87519fe738ba"},
    {"0123456789abcde", "a62dd5f6c0bf23514fccf50c7c544cf0", "a62dd5f6c0bf2351"},
    {"0123456789abcdef", "4be06d94cf4ad1a787c35b5c63a708da",
     "4be06d94cf4ad1a7"},
    {"0123456789abcdef0", "eb24ae8785a5c07573fb68b3313128ca",
     "eb24ae8785a5c075"},
    {"0123456789abcdef0123456789abcdef0123", "a7861836fe39b33191e6819f154944f7",
     "a7861836fe39b331"},
    {"file-00000", "150c58e9e6f17e9243edfe5b5f6afb01", "150c58e9e6f17e92"},
    {"file-19999", "c419536784e79f7af0289c2f9fdf3693", "c419536784e79f7a"},
    {"\xc3\xa9t\xc3\xa9", "53bf5f6c9b9d9a143633690985418128",
     "53bf5f6c9b9d9a14"},
};

static void test_murmur3(void)
{
	for (size_t i = 0; i < sizeof(mm_vectors) / sizeof(mm_vectors[0]);
	     i++) {
		const char *in = mm_vectors[i].in;
		uint64_t h[2], h64 = blk_murmur3_x64_64(in, strlen(in));
		char hex[33], slots[17];

		blk_murmur3_x64_128(in, strlen(in), 0, h);
		snprintf(hex, sizeof(hex), "%016llx%016llx",
			 (unsigned long long)h[0], (unsigned long long)h[1]);
		CHECK(strcmp(hex, mm_vectors[i].h128) == 0);
		/* The slot at depth d is byte d of h1, big-endian. */
		for (unsigned d = 0; d < 8; d++)
			snprintf(slots + 2 * d, 3, "%02x",
				 (unsigned)(h64 >> (56 - 8 * d)) & 0xff);
		CHECK(strcmp(slots, mm_vectors[i].slots) == 0);
	}
}

/* An entry with a made-up hash (blk_hamt_build trusts it). */
static struct blk_hamt_ent ent(const char *name, uint64_t hash)
{
	static struct blk_cid cid;
	struct blk_hamt_ent e = {
	    .hash = hash,
	    .name = (const uint8_t *)name,
	    .name_len = strlen(name),
	    .cid = &cid,
	    .tsize = 1,
	};

	blk_cid_compute(&cid, BLK_CODEC_RAW, "leaf", 4);
	return e;
}

/* Decode block @cid from mem into @node/@u with up to 8 links. */
static int decode(const struct blk_cid *cid, struct blk_pb_node *node,
		  struct blk_pb_link links[8], struct blk_unixfs *u,
		  void **block)
{
	size_t len;

	if (memblocks_get(&mem, cid, block, &len))
		return -ENOENT;
	if (blk_pb_decode(*block, len, node, links, 8) || !node->has_data)
		return -EBADMSG;
	return blk_unixfs_decode(node->data, node->data_len, u, NULL, 0);
}

static bool name_is(const struct blk_pb_link *l, const char *s)
{
	return l->name_len == strlen(s) && !memcmp(l->name, s, l->name_len);
}

/* hamt.h rules 2-4 on made-up hashes: slots, names, sub-shards, the
 * bitfield, metadata on the root only. */
static void test_layout(void)
{
	const struct blk_dag_file_meta meta = {.has_mode = true, .mode = 0700};
	struct blk_hamt_ent e[4] = {
	    ent("a", UINT64_C(0x0100000000000000)),
	    ent("b", UINT64_C(0x0a01000000000000)),
	    ent("c", UINT64_C(0x0a02000000000000)),
	    ent("d", UINT64_C(0xff00000000000000)),
	};
	struct blk_pb_link links[8];
	struct blk_pb_node node;
	struct blk_unixfs u;
	struct blk_cid root;
	uint64_t tsize;
	void *block;

	blk_hamt_sort(e, 4);
	REQUIRE(blk_hamt_build(e, 4, &meta, BLK_HASH_SHA2_256, memblocks_put,
			       &mem, &root, &tsize) == 0);
	CHECK(mem.n == 2);
	REQUIRE(decode(&root, &node, links, &u, &block) == 0);
	CHECK(u.type == BLK_UNIXFS_HAMT_SHARD);
	CHECK(u.has_fanout && u.fanout == 256);
	CHECK(u.has_hash_type && u.hash_type == 0x22);
	CHECK(u.has_mode && u.mode == 0700);
	/* Bits 1, 10 and 255: 32 bytes, big-endian. */
	CHECK(u.data_len == 32);
	CHECK(u.data_len == 32 && u.data[0] == 0x80 && u.data[30] == 0x04 &&
	      u.data[31] == 0x02);
	CHECK(node.n_links == 3);
	CHECK(name_is(&links[0], "01a"));
	CHECK(name_is(&links[1], "0A"));
	CHECK(name_is(&links[2], "FFd"));
	CHECK(links[0].tsize == 1);
	{
		struct blk_pb_link sub_links[8];
		struct blk_pb_node sub;
		struct blk_unixfs su;
		void *sub_block;
		size_t len;

		REQUIRE(decode(&links[1].cid, &sub, sub_links, &su,
			       &sub_block) == 0);
		CHECK(sub.n_links == 2);
		CHECK(name_is(&sub_links[0], "01b"));
		CHECK(name_is(&sub_links[1], "02c"));
		CHECK(!su.has_mode && !su.has_mtime);
		CHECK(su.data_len == 1 && su.data[0] == 0x06);
		free(sub_block);
		REQUIRE(memblocks_get(&mem, &links[1].cid, &sub_block, &len) ==
			0);
		CHECK(links[1].tsize == len + 2);
		free(sub_block);
	}
	{
		/* The root's Tsize: its block, a leaf, the sub-shard, a
		 * leaf. */
		size_t len;
		void *again;

		REQUIRE(memblocks_get(&mem, &root, &again, &len) == 0);
		CHECK(tsize == len + 1 + links[1].tsize + 1);
		free(again);
	}
	free(block);
	memblocks_clear(&mem);
}

/* The empty HAMT, equal hashes, the deepest chain. */
static void test_layout_edges(void)
{
	struct blk_hamt_ent e[2];
	struct blk_pb_link links[8];
	struct blk_pb_node node;
	struct blk_unixfs u;
	struct blk_cid root;
	uint64_t tsize;
	void *block;

	/* An empty HAMT: a root without links or bitfield. */
	REQUIRE(blk_hamt_build(NULL, 0, NULL, BLK_HASH_SHA2_256, memblocks_put,
			       &mem, &root, &tsize) == 0);
	REQUIRE(decode(&root, &node, links, &u, &block) == 0);
	CHECK(node.n_links == 0 && u.data_len == 0);
	free(block);
	memblocks_clear(&mem);

	/* Same hash: the same name, or two names 64 bits cannot part. */
	e[0] = ent("x", 5);
	e[1] = ent("x", 5);
	CHECK(blk_hamt_build(e, 2, NULL, BLK_HASH_SHA2_256, NULL, NULL, &root,
			     &tsize) == -EEXIST);
	e[1] = ent("y", 5);
	blk_hamt_sort(e, 2);
	CHECK(blk_hamt_build(e, 2, NULL, BLK_HASH_SHA2_256, NULL, NULL, &root,
			     &tsize) == -EOVERFLOW);
	/* Seven equal bytes: a chain down to depth 7, which is fine. */
	e[0] = ent("x", UINT64_C(0x0102030405060708));
	e[1] = ent("y", UINT64_C(0x0102030405060709));
	CHECK(blk_hamt_build(e, 2, NULL, BLK_HASH_SHA2_256, memblocks_put, &mem,
			     &root, &tsize) == 0);
	CHECK(mem.n == 8);
	memblocks_clear(&mem);
}

/* --- Hand-made shards for the reader --- */

struct shard_spec {
	enum blk_unixfs_type type;
	uint64_t fanout, hash_type;
	const uint8_t *bitfield;
	size_t bitfield_len;
	size_t n;
	struct blk_pb_link links[4];
};

/* Encode @s, store it in mem, give its CID. */
static struct blk_cid put_shard(const struct shard_spec *s)
{
	struct blk_unixfs u = {
	    .type = s->type,
	    .data = s->bitfield,
	    .data_len = s->bitfield_len,
	    .has_fanout = s->fanout != 0,
	    .fanout = s->fanout,
	    .has_hash_type = s->hash_type != 0,
	    .hash_type = s->hash_type,
	};
	struct blk_pb_node node = {.links = s->links, .n_links = s->n};
	uint8_t data[128], block[4096];
	struct blk_cid cid;
	size_t dlen, len;

	REQUIRE(blk_unixfs_encode(&u, data, sizeof(data), &dlen) == 0);
	node.data = data;
	node.data_len = dlen;
	node.has_data = true;
	REQUIRE(blk_pb_encode(&node, block, sizeof(block), &len) == 0);
	blk_cid_compute(&cid, BLK_CODEC_DAG_PB, block, len);
	REQUIRE(memblocks_put(&mem, &cid, block, len) == 0);
	return cid;
}

static struct blk_pb_link link_to(const char *name, const struct blk_cid *cid)
{
	struct blk_pb_link l = {
	    .cid = *cid,
	    .name = (const uint8_t *)name,
	    .name_len = strlen(name),
	    .has_name = true,
	    .has_tsize = true,
	    .tsize = 1,
	};

	return l;
}

/* A one-bit bitfield for @slot: the minimal big-endian bytes. */
static size_t one_bit(unsigned slot, uint8_t out[32])
{
	size_t len = slot / 8 + 1;

	memset(out, 0, 32);
	out[0] = (uint8_t)(1u << (slot % 8));
	return len;
}

static int count_fn(void *arg, const struct blk_dag_dirent *e)
{
	(void)e;
	++*(size_t *)arg;
	return 0;
}

/* Walk and look "a" up in @root: the walk's result, with the lookup's
 * checked to agree (0 and found, or the same error). */
static int read_dir(const struct blk_cid *root, size_t *count)
{
	struct blk_dag_dirent e;
	int each, look;

	*count = 0;
	each = blk_dag_dir_each(&reader, root, count_fn, count);
	look = blk_dag_dir_lookup(&reader, root, "a", 1, &e);
	CHECK(look == each || (each == 0 && look == -ENOENT));
	return each;
}

/* "a" hashes to 85 55 55 65 f6 59 78 89: a chain of shards, one per level,
 * leading to it at depth @leaf_depth (at most 7); with @too_deep, the
 * shard at @leaf_depth holds a sub-shard link instead of "a". */
static struct blk_cid chain_to_a(unsigned leaf_depth, bool too_deep)
{
	static const unsigned path[8] = {0x85, 0x55, 0x55, 0x65,
					 0xf6, 0x59, 0x78, 0x89};
	static const char *names[8] = {"85", "55", "55", "65",
				       "F6", "59", "78", "89"};
	static const char *leaves[8] = {"85a", "55a", "55a", "65a",
					"F6a", "59a", "78a", "89a"};
	uint8_t bf[32];
	struct blk_cid cid;
	struct shard_spec s = {.type = BLK_UNIXFS_HAMT_SHARD,
			       .fanout = 256,
			       .hash_type = 0x22,
			       .n = 1,
			       .bitfield = bf};

	blk_cid_compute(&cid, too_deep ? BLK_CODEC_DAG_PB : BLK_CODEC_RAW,
			"leaf", 4);
	s.bitfield_len = one_bit(path[leaf_depth], bf);
	s.links[0] =
	    link_to(too_deep ? names[leaf_depth] : leaves[leaf_depth], &cid);
	cid = put_shard(&s);
	for (unsigned d = leaf_depth; d-- > 0;) {
		s.bitfield_len = one_bit(path[d], bf);
		s.links[0] = link_to(names[d], &cid);
		cid = put_shard(&s);
	}
	return cid;
}

/* A root shard over "a" (slot 0x85), with what @s sets instead. */
static struct blk_cid root_with_a(const struct shard_spec *s)
{
	struct shard_spec r = *s;
	uint8_t bf[32];
	struct blk_cid leaf;

	blk_cid_compute(&leaf, BLK_CODEC_RAW, "leaf", 4);
	if (!r.bitfield) {
		r.bitfield_len = one_bit(0x85, bf);
		r.bitfield = bf;
	}
	if (!r.type)
		r.type = BLK_UNIXFS_HAMT_SHARD;
	if (!r.n) {
		r.n = 1;
		r.links[0] = link_to("85a", &leaf);
	}
	return put_shard(&r);
}

/* Shards down to depth 7 read; a sub-shard below it does not. */
static void test_reader_depth(void)
{
	struct blk_cid root;
	struct shard_spec s;
	size_t n;

	/* The well-formed ones first: every depth down to 7. */
	for (unsigned d = 0; d < 8; d++) {
		root = chain_to_a(d, false);
		CHECK(read_dir(&root, &n) == 0 && n == 1);
	}
	s = (struct shard_spec){.fanout = 256, .hash_type = 0x22};
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == 0 && n == 1);

	/* A sub-shard below depth 7: more than 64 bits of hash. */
	root = chain_to_a(7, true);
	CHECK(read_dir(&root, &n) == -EBADMSG);

	memblocks_clear(&mem);
}

/* The bitfield must name exactly the links' slots. */
static void test_reader_bitfield(void)
{
	struct blk_cid leaf, root;
	struct shard_spec s;
	uint8_t bf[32];
	size_t n;

	blk_cid_compute(&leaf, BLK_CODEC_RAW, "leaf", 4);

	/* Bitfield and links disagree: slot 0x85 (byte 15 of 32, bit 5) and
	 * slot 0xf8 (byte 0, bit 0) set, one link. */
	memset(bf, 0, sizeof(bf));
	bf[15] = 0x20;
	bf[0] = 0x01;
	s = (struct shard_spec){.fanout = 256,
				.hash_type = 0x22,
				.bitfield = bf,
				.bitfield_len = 32};
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	bf[0] = 0; /* a leading zero byte: tolerated */
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == 0 && n == 1);
	bf[15] = 0x40; /* slot 0x86 instead */
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	/* A bitfield longer than 256 bits. */
	memset(bf, 0, sizeof(bf));
	{
		uint8_t big[33] = {0};

		big[32 - 16] = 0x20;
		s = (struct shard_spec){.fanout = 256,
					.hash_type = 0x22,
					.bitfield = big,
					.bitfield_len = 33};
		root = root_with_a(&s);
		CHECK(read_dir(&root, &n) == -EBADMSG);
	}

	memblocks_clear(&mem);
}

/* Link names: two upper-case hex digits of the slot the name hashes to,
 * then a valid name; one link per slot. */
static void test_reader_names(void)
{
	struct blk_cid leaf, root;
	struct shard_spec s;
	uint8_t bf[32];
	size_t n;

	blk_cid_compute(&leaf, BLK_CODEC_RAW, "leaf", 4);

	/* Names: lower-case hex, the wrong slot, a bad entry name, no
	 * name at all. */
	s = (struct shard_spec){.fanout = 256, .hash_type = 0x22, .n = 1};
	s.links[0] = link_to("85a", &leaf);
	s.links[0].name = (const uint8_t *)"8fa";
	s.bitfield = bf;
	s.bitfield_len = one_bit(0x8f, bf);
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG); /* "a" is not in 0x8f */
	s = (struct shard_spec){.fanout = 256, .hash_type = 0x22, .n = 1};
	s.links[0] = link_to("0ab", &leaf);
	s.bitfield = bf;
	s.bitfield_len = one_bit(0x0a, bf);
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s = (struct shard_spec){.fanout = 256, .hash_type = 0x22, .n = 1};
	s.links[0] = link_to("85.", &leaf);
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s = (struct shard_spec){.fanout = 256, .hash_type = 0x22, .n = 1};
	s.links[0] = link_to("", &leaf);
	s.links[0].has_name = false;
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	/* Two links in one slot. */
	s = (struct shard_spec){.fanout = 256, .hash_type = 0x22, .n = 2};
	s.links[0] = link_to("85a", &leaf);
	s.links[1] = link_to("85b", &leaf);
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);

	memblocks_clear(&mem);
}

/* Fanout, hash function, sub-shards that are not shards, files. */
static void test_reader_fields(void)
{
	struct blk_cid leaf, root, sub;
	struct shard_spec s;
	size_t n;

	blk_cid_compute(&leaf, BLK_CODEC_RAW, "leaf", 4);

	/* Fanout and hash. */
	s = (struct shard_spec){.fanout = 16, .hash_type = 0x22};
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s = (struct shard_spec){.hash_type = 0x22};
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s = (struct shard_spec){.fanout = 256, .hash_type = 0x23};
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);

	/* Sub-shards: empty, raw, a plain directory, missing. */
	s = (struct shard_spec){
	    .type = BLK_UNIXFS_HAMT_SHARD, .fanout = 256, .hash_type = 0x22};
	sub = put_shard(&s);
	s.n = 1;
	s.links[0] = link_to("85", &sub);
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s.links[0] = link_to("85", &leaf);
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s = (struct shard_spec){.type = BLK_UNIXFS_DIRECTORY};
	sub = put_shard(&s);
	s = (struct shard_spec){.fanout = 256, .hash_type = 0x22, .n = 1};
	s.links[0] = link_to("85", &sub);
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	blk_cid_compute(&sub, BLK_CODEC_DAG_PB, "absent", 6);
	s.links[0] = link_to("85", &sub);
	root = root_with_a(&s);
	CHECK(read_dir(&root, &n) == -ENOENT);

	/* A file is not a directory. */
	s = (struct shard_spec){.type = BLK_UNIXFS_FILE};
	root = put_shard(&s);
	CHECK(read_dir(&root, &n) == -ENOTDIR);
	memblocks_clear(&mem);
}

/* Plain directories: unnamed links, names twice, bad names, HAMT fields. */
static void test_plain_refuses(void)
{
	struct blk_cid leaf, root;
	struct shard_spec s;
	size_t n;

	blk_cid_compute(&leaf, BLK_CODEC_RAW, "leaf", 4);
	s = (struct shard_spec){.type = BLK_UNIXFS_DIRECTORY, .n = 2};
	s.links[0] = link_to("a", &leaf);
	s.links[1] = link_to("b", &leaf);
	root = put_shard(&s);
	CHECK(read_dir(&root, &n) == 0 && n == 2);
	s.links[1] = link_to("a", &leaf);
	root = put_shard(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s.links[1] = link_to("a/b", &leaf);
	root = put_shard(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s.links[0] = link_to("", &leaf);
	s.links[0].has_name = false;
	s.links[1] = link_to("b", &leaf);
	root = put_shard(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	s = (struct shard_spec){
	    .type = BLK_UNIXFS_DIRECTORY, .fanout = 256, .n = 1};
	s.links[0] = link_to("a", &leaf);
	root = put_shard(&s);
	CHECK(read_dir(&root, &n) == -EBADMSG);
	memblocks_clear(&mem);
}

/* Lookups fetch only the shards on the name's path. */
static void test_lookup_path(void)
{
	struct blk_dag_dir *d;
	struct blk_dag_dirent e;
	struct blk_cid cid, root;
	uint64_t tsize;
	char name[32];

	REQUIRE(blk_dag_dir_new(&d) == 0);
	for (unsigned i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "entry-%u", i);
		blk_cid_compute(&cid, BLK_CODEC_RAW, name, strlen(name));
		REQUIRE(blk_dag_dir_add(d, name, strlen(name), &cid, 1, 0) ==
			0);
	}
	REQUIRE(blk_dag_dir_finish(d, NULL, memblocks_put, &mem, &root,
				   &tsize) == 0);
	mem.fetches = 0;
	CHECK(blk_dag_dir_lookup(&reader, &root, "entry-77777", 11, &e) == 0);
	CHECK(mem.fetches >= 2 && mem.fetches <= 4);
	blk_dag_dir_free(&d);
	memblocks_clear(&mem);
}

/* --- blk_hamt_update against a rebuild from scratch --- */

#define UPD_NAMES 2002

struct upd_state {
	char names[UPD_NAMES][16];
	bool present[UPD_NAMES];
	struct blk_cid cid[UPD_NAMES];
	uint64_t tsize[UPD_NAMES];
};

/* The HAMT of the present names, built from scratch (nothing emitted). */
static void upd_rebuild(const struct upd_state *st,
			const struct blk_dag_file_meta *meta,
			struct blk_cid *root, uint64_t *tsize, bool keep)
{
	static struct blk_hamt_ent e[UPD_NAMES];
	size_t n = 0;

	for (size_t i = 0; i < UPD_NAMES; i++) {
		if (!st->present[i])
			continue;
		e[n].name = (const uint8_t *)st->names[i];
		e[n].name_len = strlen(st->names[i]);
		e[n].hash = blk_murmur3_x64_64(e[n].name, e[n].name_len);
		e[n].cid = &st->cid[i];
		e[n].tsize = st->tsize[i];
		n++;
	}
	blk_hamt_sort(e, n);
	REQUIRE(blk_hamt_build(e, n, meta, BLK_HASH_SHA2_256,
			       keep ? memblocks_put : NULL, &mem, root,
			       tsize) == 0);
}

/* Apply one change to @st and to the HAMT @root incrementally; check the
 * result against a rebuild and count the blocks it emitted. */
static bool upd_step(struct upd_state *st, size_t i, bool set, uint32_t ver,
		     const struct blk_dag_file_meta *meta, struct blk_cid *root,
		     uint64_t *tsize, size_t *max_emitted)
{
	struct blk_cid want;
	uint64_t want_tsize;
	size_t before = mem.n;
	int rc;

	if (set) {
		blk_cid_compute(&st->cid[i], BLK_CODEC_RAW, &ver, sizeof(ver));
		st->tsize[i] = ver;
	}
	rc = blk_hamt_update(&reader, root, (const uint8_t *)st->names[i],
			     strlen(st->names[i]), set ? &st->cid[i] : NULL,
			     st->tsize[i], meta, BLK_HASH_SHA2_256,
			     memblocks_put, &mem, root, tsize);
	if (rc == -ENOENT && !set && !st->present[i])
		return true;
	if (rc)
		return false;
	st->present[i] = set;
	if (mem.n - before > *max_emitted)
		*max_emitted = mem.n - before;
	upd_rebuild(st, meta, &want, &want_tsize, false);
	return blk_cid_equal(&want, root) && want_tsize == *tsize;
}

static void test_update(void)
{
	static struct upd_state st;
	struct blk_cid root, other;
	uint64_t tsize, seed = 42;
	size_t ok = 0, steps = 0, max_emitted = 0;

	for (size_t i = 0; i < UPD_NAMES - 2; i++)
		snprintf(st.names[i], sizeof(st.names[i]), "u%zu", i);
	/* n2733 and n6206 share their first 3 hash bytes: sub-shards down
	 * to depth 3 appear and collapse. */
	strcpy(st.names[UPD_NAMES - 2], "n2733");
	strcpy(st.names[UPD_NAMES - 1], "n6206");
	for (size_t i = 0; i < UPD_NAMES; i += 2) {
		st.present[i] = true;
		blk_cid_compute(&st.cid[i], BLK_CODEC_RAW, &i, sizeof(i));
		st.tsize[i] = i;
	}
	upd_rebuild(&st, &meta_700_root, &root, &tsize, true);

	/* Random sets and removals. */
	for (uint32_t v = 1; v <= 400; v++, steps++) {
		size_t i = xorshift64(&seed) % UPD_NAMES;
		bool set = !st.present[i] || xorshift64(&seed) % 3 == 0;

		ok += upd_step(&st, i, set, v, &meta_700_root, &root, &tsize,
			       &max_emitted);
	}
	/* The chain pair in, then everything else out, then one of the
	 * pair: the chain collapses into a leaf of the root. */
	ok += upd_step(&st, UPD_NAMES - 2, true, 1000, NULL, &root, &tsize,
		       &max_emitted);
	ok += upd_step(&st, UPD_NAMES - 1, true, 1001, NULL, &root, &tsize,
		       &max_emitted);
	steps += 2;
	for (size_t i = 0; i < UPD_NAMES - 2; i++) {
		if (!st.present[i])
			continue;
		ok += upd_step(&st, i, false, 0, NULL, &root, &tsize,
			       &max_emitted);
		steps++;
	}
	ok += upd_step(&st, UPD_NAMES - 2, false, 0, NULL, &root, &tsize,
		       &max_emitted);
	steps++;
	CHECK(ok == steps);
	/* At most a path of shards and a split's chain per change. */
	CHECK(max_emitted <= 2 * BLK_HAMT_MAX_DEPTH);
	{
		struct blk_pb_link links[8];
		struct blk_pb_node node;
		struct blk_unixfs u;
		void *block;

		char want[8];

		snprintf(want, sizeof(want), "%02Xn6206",
			 (unsigned)(blk_murmur3_x64_64("n6206", 5) >> 56));
		REQUIRE(decode(&root, &node, links, &u, &block) == 0);
		CHECK(node.n_links == 1 && name_is(&links[0], want));
		free(block);
	}
	/* Removing what is not there; updating what is not a HAMT. */
	CHECK(blk_hamt_update(&reader, &root, (const uint8_t *)"zz", 2, NULL, 0,
			      NULL, BLK_HASH_SHA2_256, memblocks_put, &mem,
			      &other, &tsize) == -ENOENT);
	blk_cid_compute(&other, BLK_CODEC_RAW, "x", 1);
	CHECK(blk_hamt_update(&reader, &other, (const uint8_t *)"zz", 2, &other,
			      1, NULL, BLK_HASH_SHA2_256, memblocks_put, &mem,
			      &root, &tsize) == -ENOTDIR);
	memblocks_clear(&mem);
}

int main(void)
{
	test_murmur3();
	test_layout();
	test_layout_edges();
	test_reader_depth();
	test_reader_bitfield();
	test_reader_names();
	test_reader_fields();
	test_plain_refuses();
	test_lookup_path();
	test_update();
	printf("test-hamt: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
