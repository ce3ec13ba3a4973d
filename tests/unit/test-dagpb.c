/* Unit tests for blocks/dag/pb.c: known answers from @ipld/dag-pb
 * (vectors/unixfs/vectors.h), the strict decoder's refusals, the link order
 * and the iterator. */

#include "blocks/dag/pb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/unixfs.h"
#include "tests/unit/check.h"
#include "tests/unit/vectors/unixfs/vectors.h"

/* Decode hex @s into @buf (of @cap bytes); returns the length. */
static size_t unhex(const char *s, uint8_t *buf, size_t cap)
{
	size_t n = strlen(s) / 2;

	REQUIRE(n <= cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		REQUIRE(sscanf(s + 2 * i, "%2x", &v) == 1);
		buf[i] = (uint8_t)v;
	}
	return n;
}

static void tohex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = 0;
}

static const struct pb_vector *pb_vector(const char *name)
{
	for (size_t i = 0; i < sizeof(pb_vectors) / sizeof(pb_vectors[0]); i++)
		if (strcmp(pb_vectors[i].name, name) == 0)
			return &pb_vectors[i];
	REQUIRE(!"no such vector");
	return NULL;
}

static void raw_cid(struct blk_cid *cid, const char *s)
{
	blk_cid_compute(cid, BLK_CODEC_RAW, s, strlen(s));
}

static struct blk_pb_link mklink(const char *hash_of, const char *name,
				 long long tsize)
{
	struct blk_pb_link l = {0};

	raw_cid(&l.cid, hash_of);
	if (name) {
		l.has_name = true;
		l.name = (const uint8_t *)name;
		l.name_len = strlen(name);
	}
	if (tsize >= 0) {
		l.has_tsize = true;
		l.tsize = (uint64_t)tsize;
	}
	return l;
}

/* The nodes of gen-vectors.mjs's pbCases, in the same order. */
static size_t pb_case(const char *name, struct blk_pb_node *node,
		      struct blk_pb_link *links, uint8_t *dirdata)
{
	memset(node, 0, sizeof(*node));
	node->links = links;
	if (strcmp(name, "data_empty") == 0) {
		node->has_data = true;
		node->data = (const uint8_t *)"";
	} else if (strcmp(name, "data") == 0) {
		node->has_data = true;
		node->data = (const uint8_t *)"hello";
		node->data_len = 5;
	} else if (strcmp(name, "one_link") == 0) {
		links[0] = mklink("1", "", 7);
		node->n_links = 1;
	} else if (strcmp(name, "sorted") == 0) {
		struct blk_unixfs u = {.type = BLK_UNIXFS_DIRECTORY};
		size_t dl;

		links[0] = mklink("1", "zeta", 1);
		links[1] = mklink("2", "alpha", 300);
		links[2] = mklink("3", NULL, -1);
		links[3] = mklink("4", "alp", 0);
		links[4] = mklink("5", "", 1LL << 40);
		links[5] = mklink("6", "\xc3\xa9\xe6\x96\x87", -1);
		node->n_links = 6;
		REQUIRE(blk_unixfs_encode(&u, dirdata, 16, &dl) == 0);
		node->has_data = true;
		node->data = dirdata;
		node->data_len = dl;
	}
	return node->n_links;
}

static void test_known_answers(void)
{
	for (size_t i = 0; i < sizeof(pb_vectors) / sizeof(pb_vectors[0]);
	     i++) {
		const struct pb_vector *v = &pb_vectors[i];
		struct blk_pb_link links[8], got[8];
		struct blk_pb_node node, dec;
		uint8_t dirdata[16], buf[1024], want[1024], again[1024];
		char hex[2049], str[BLK_CID_STR_MAX];
		struct blk_cid cid;
		size_t len, wlen, alen;
		int rc;

		pb_case(v->name, &node, links, dirdata);
		blk_pb_sort_links(links, node.n_links);
		rc = blk_pb_encode(&node, buf, sizeof(buf), &len);
		CHECK(rc == 0);
		CHECK(len == blk_pb_encoded_size(&node));
		tohex(buf, len, hex);
		CHECK(strcmp(hex, v->hex) == 0);
		if (strcmp(hex, v->hex) != 0)
			fprintf(stderr, "%s:\n got  %s\n want %s\n", v->name,
				hex, v->hex);
		blk_cid_compute(&cid, BLK_CODEC_DAG_PB, buf, len);
		blk_cid_to_string(&cid, str);
		CHECK(strcmp(str, v->cid) == 0);

		/* Decodes, to the same node, and re-encodes to the bytes. */
		wlen = unhex(v->hex, want, sizeof(want));
		rc = blk_pb_decode(want, wlen, &dec, got, 8);
		CHECK(rc == 0);
		if (rc)
			continue;
		CHECK(dec.n_links == node.n_links);
		CHECK(dec.has_data == node.has_data);
		CHECK(dec.data_len == node.data_len);
		for (size_t j = 0; j < dec.n_links && j < node.n_links; j++) {
			CHECK(blk_cid_equal(&got[j].cid, &links[j].cid));
			CHECK(got[j].has_name == links[j].has_name);
			CHECK(got[j].name_len == links[j].name_len);
			CHECK(got[j].has_tsize == links[j].has_tsize);
			CHECK(got[j].tsize == links[j].tsize);
		}
		CHECK(blk_pb_encode(&dec, again, sizeof(again), &alen) == 0);
		CHECK(alen == wlen && memcmp(again, want, wlen) == 0);
	}
}

static void test_encode_errors(void)
{
	struct blk_pb_link links[8];
	struct blk_pb_node node;
	uint8_t dirdata[16], buf[1024];
	size_t len = 0;

	pb_case("sorted", &node, links, dirdata);
	/* Unsorted as given. */
	CHECK(blk_pb_encode(&node, buf, sizeof(buf), &len) == -EINVAL);
	blk_pb_sort_links(links, node.n_links);
	CHECK(blk_pb_encode(&node, buf, 10, &len) == -ENOBUFS);
	CHECK(len == blk_pb_encoded_size(&node));
	CHECK(blk_pb_encode(&node, buf, len, &len) == 0);
	links[0].tsize = BLK_PB_MAX_TSIZE + 1;
	links[0].has_tsize = true;
	CHECK(blk_pb_encode(&node, buf, sizeof(buf), &len) == -EINVAL);
	links[0].tsize = BLK_PB_MAX_TSIZE;
	CHECK(blk_pb_encode(&node, buf, sizeof(buf), &len) == 0);
}

/* Malformed blocks, each refused. "L" stands for a valid link body's field
 * (0x12 len 0x0a 0x24 CID), spliced in by the test. */
static const struct {
	const char *why, *hex;
} bad[] = {
    {"data before links", "0a00"
			  "L"},
    {"two data", "0a000a00"},
    {"data then garbage", "0a0001"},
    {"unknown node field", "1a00"},
    {"node field 1 as varint", "0800"},
    {"node field 2 as varint", "1000"},
    {"truncated length", "0a"},
    {"truncated varint", "0a80"},
    {"length past the end", "0a05616263"},
    {"non-minimal length", "0a8000"},
    {"non-minimal key", "8a0000"},
    {"empty link", "1200"},
    {"link without hash", "12020800"},
    {"link name first", "1202"
			"1200"},
    {"hash not a CID", "12040a020102"},
    {"CIDv0 hash",
     "12240a22"
     "1220"
     "0000000000000000000000000000000000000000000000000000000000000000"},
    {"link field 4", "L"
		     "2000"},
    {"name twice", "L"
		   "12001200"},
    {"tsize before name", "L"
			  "18011200"},
    {"tsize twice", "L"
		    "18011801"},
    {"tsize as bytes", "L"
		       "1a00"},
    {"tsize past 2^53", "L"
			"188080808080808010"},
    {"tsize overlong", "L"
		       "18ffffffffffffffffff7f"},
    {"tsize truncated", "L"
			"1880"},
};

/* Build a block from a template: "L" becomes the field of a link to
 * raw("x") (the body, for templates that start "L", and the link field
 * otherwise) with the rest of the template appended to its body. */
static size_t build_bad(const char *tpl, uint8_t *buf)
{
	uint8_t cid[BLK_CID_MAX_BYTES], rest[256];
	struct blk_cid c;
	const char *l = strchr(tpl, 'L');
	size_t cl, n = 0, rn;

	raw_cid(&c, "x");
	cl = blk_cid_to_bytes(&c, cid);
	if (!l)
		return unhex(tpl, buf, 512);
	if (l == tpl) {
		/* A link whose body continues with the rest. */
		rn = unhex(tpl + 1, rest, sizeof(rest));
		buf[n++] = 0x12;
		buf[n++] = (uint8_t)(2 + cl + rn);
		buf[n++] = 0x0a;
		buf[n++] = (uint8_t)cl;
		memcpy(buf + n, cid, cl);
		n += cl;
		memcpy(buf + n, rest, rn);
		return n + rn;
	}
	/* Something, then a whole link. */
	{
		char head[64];

		memcpy(head, tpl, (size_t)(l - tpl));
		head[l - tpl] = 0;
		n = unhex(head, buf, 64);
	}
	buf[n++] = 0x12;
	buf[n++] = (uint8_t)(2 + cl);
	buf[n++] = 0x0a;
	buf[n++] = (uint8_t)cl;
	memcpy(buf + n, cid, cl);
	return n + cl;
}

static void test_refusals(void)
{
	struct blk_pb_node node;
	struct blk_pb_link links[4];
	uint8_t buf[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = build_bad(bad[i].hex, buf);
		int rc = blk_pb_decode(buf, n, &node, links, 4);

		CHECK(rc == -EBADMSG);
		if (rc != -EBADMSG)
			fprintf(stderr, "accepted: %s\n", bad[i].why);
	}
	/* The link template itself is fine. */
	{
		size_t n = build_bad("L", buf);

		CHECK(blk_pb_decode(buf, n, &node, links, 4) == 0);
		CHECK(node.n_links == 1 && !links[0].has_name);
	}
	/* Past the largest block. */
	{
		uint8_t *big = xmalloc(BLK_PB_MAX_BLOCK + 8);
		size_t n = BLK_PB_MAX_BLOCK + 5;

		big[0] = 0x0a;
		blk_varint_put(big + 1, BLK_PB_MAX_BLOCK + 1);
		CHECK(blk_pb_decode(big, n, &node, NULL, 0) == -EBADMSG);
		free(big);
	}
}

/* Links with equal names keep their order; names compare bytewise, a
 * proper prefix first, an absent name as "". */
static void test_sort(void)
{
	enum { N = 300 };
	struct blk_pb_link *l = xmalloc(N * sizeof(*l));
	static const char *names[] = {"b", "a", "", NULL, "ab", "\xff", "a"};
	size_t nn = sizeof(names) / sizeof(names[0]);

	for (size_t i = 0; i < N; i++) {
		l[i] = mklink("x", names[i % nn], (long long)i);
	}
	blk_pb_sort_links(l, N);
	for (size_t i = 1; i < N; i++) {
		int c = blk_pb_link_cmp(&l[i - 1], &l[i]);

		CHECK(c <= 0);
		if (c == 0)
			CHECK(l[i - 1].tsize < l[i].tsize); /* stable */
	}
	/* Small arrays (insertion sort) the same. */
	for (size_t i = 0; i < nn; i++)
		l[i] = mklink("x", names[i], (long long)i);
	blk_pb_sort_links(l, nn);
	CHECK(l[0].tsize == 2 && l[1].tsize == 3); /* "", absent */
	CHECK(l[2].tsize == 1 && l[3].tsize == 6); /* "a", "a" */
	CHECK(l[4].tsize == 4 && l[5].tsize == 0 && l[6].tsize == 5);
	free(l);
}

static void test_iter_and_bounds(void)
{
	const struct pb_vector *v = pb_vector("sorted");
	struct blk_pb_link links[8], few[2], one;
	struct blk_pb_node node;
	struct blk_pb_iter it;
	uint8_t buf[1024];
	size_t n = unhex(v->hex, buf, sizeof(buf)), k = 0;

	REQUIRE(blk_pb_decode(buf, n, &node, links, 8) == 0);
	/* Fewer slots than links: the count is still all of them. */
	CHECK(blk_pb_decode(buf, n, &node, few, 2) == 0);
	CHECK(node.n_links == 6 && node.links == few);
	CHECK(blk_cid_equal(&few[1].cid, &links[1].cid));
	CHECK(blk_pb_decode(buf, n, &node, NULL, 0) == 0);
	CHECK(node.n_links == 6 && node.links == NULL && node.has_data);

	CHECK(blk_pb_iter_init(&it, buf, n, &node) == 0);
	while (blk_pb_iter_next(&it, &one) == 1) {
		REQUIRE(k < 6);
		CHECK(blk_cid_equal(&one.cid, &links[k].cid));
		CHECK(one.tsize == links[k].tsize);
		CHECK(one.name_len == links[k].name_len);
		k++;
	}
	CHECK(k == 6);
	CHECK(blk_pb_iter_next(&it, &one) == 0);
	/* A bad block does not start a walk. */
	buf[n - 1] ^= 0xff;
	CHECK(blk_pb_iter_init(&it, buf, n - 2, &node) == -EBADMSG);
}

/* Every prefix and every single-byte change of a valid block decodes or is
 * refused, never read past; what decodes re-encodes to itself. */
static void test_mutations(void)
{
	const struct pb_vector *v = pb_vector("sorted");
	struct blk_pb_link links[8];
	struct blk_pb_node node;
	uint8_t buf[1024], *cp, again[1024];
	size_t n = unhex(v->hex, buf, sizeof(buf)), alen;

	for (size_t len = 0; len < n; len++) {
		cp = xmalloc(len);
		memcpy(cp, buf, len);
		if (blk_pb_decode(cp, len, &node, links, 8) == 0) {
			CHECK(blk_pb_encode(&node, again, sizeof(again),
					    &alen) == 0);
			CHECK(alen == len && memcmp(again, cp, len) == 0);
		}
		free(cp);
	}
	for (size_t i = 0; i < n; i++)
		for (unsigned b = 0; b < 256; b += 7) {
			cp = xmalloc(n);
			memcpy(cp, buf, n);
			cp[i] = (uint8_t)b;
			if (blk_pb_decode(cp, n, &node, links, 8) == 0) {
				CHECK(blk_pb_encode(&node, again, sizeof(again),
						    &alen) == 0);
				CHECK(alen == n && memcmp(again, cp, n) == 0);
			}
			free(cp);
		}
}

int main(void)
{
	test_known_answers();
	test_encode_errors();
	test_refusals();
	test_sort();
	test_iter_and_bounds();
	test_mutations();
	printf("dagpb: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
