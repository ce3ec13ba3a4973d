/* Unit tests for blocks/dag/unixfs.c: known answers from ipfs-unixfs's
 * marshal (vectors/unixfs/vectors.h) and the strict decoder's refusals. */

#include "blocks/dag/unixfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "tests/unit/vectors/unixfs/vectors.h"

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

static void set_data(struct blk_unixfs *u, const char *s)
{
	u->data = (const uint8_t *)s;
	u->data_len = strlen(s);
}

static void set_mtime(struct blk_unixfs *u, int64_t sec, uint32_t nsec)
{
	u->has_mtime = true;
	u->mtime_sec = sec;
	u->mtime_nsec = nsec;
}

static void set_mode(struct blk_unixfs *u, uint32_t mode)
{
	u->has_mode = true;
	u->mode = mode;
}

/* The messages of gen-vectors.mjs's ufsCases. */
static void ufs_case(const char *n, struct blk_unixfs *u)
{
	static const uint64_t bs[] = {262144, 262144, 5}, bs3[] = {3};
	static const uint8_t bitfield[] = {1, 2};

	memset(u, 0, sizeof(*u));
	u->type = BLK_UNIXFS_FILE;
	if (strcmp(n, "file_data") == 0) {
		set_data(u, "hello");
	} else if (strcmp(n, "file_bs") == 0) {
		u->blocksizes = bs;
		u->n_blocksizes = 3;
	} else if (strcmp(n, "file_bs_data") == 0) {
		set_data(u, "ab");
		u->blocksizes = bs3;
		u->n_blocksizes = 1;
	} else if (strcmp(n, "raw_data") == 0) {
		u->type = BLK_UNIXFS_RAW;
		set_data(u, "abc");
	} else if (strcmp(n, "dir") == 0) {
		u->type = BLK_UNIXFS_DIRECTORY;
	} else if (strcmp(n, "dir_755") == 0) {
		u->type = BLK_UNIXFS_DIRECTORY;
		set_mode(u, 0755);
	} else if (strcmp(n, "dir_700_mtime") == 0) {
		u->type = BLK_UNIXFS_DIRECTORY;
		set_mode(u, 0700);
		set_mtime(u, 1700000000, 5);
	} else if (strcmp(n, "file_644") == 0) {
		set_mode(u, 0644);
	} else if (strcmp(n, "file_4755") == 0) {
		set_mode(u, 04755);
	} else if (strcmp(n, "symlink") == 0) {
		u->type = BLK_UNIXFS_SYMLINK;
		set_data(u, "../target");
	} else if (strcmp(n, "symlink_777") == 0) {
		u->type = BLK_UNIXFS_SYMLINK;
		set_data(u, "t");
		set_mode(u, 0777);
	} else if (strcmp(n, "hamt") == 0) {
		u->type = BLK_UNIXFS_HAMT_SHARD;
		u->data = bitfield;
		u->data_len = 2;
		u->has_hash_type = true;
		u->hash_type = BLK_UNIXFS_HASH_MURMUR3;
		u->has_fanout = true;
		u->fanout = 256;
	} else if (strcmp(n, "mtime_neg") == 0) {
		set_mtime(u, -5, 0);
	} else if (strcmp(n, "mtime_zero") == 0) {
		set_mtime(u, 0, 0);
	} else if (strcmp(n, "mtime_max_ns") == 0) {
		set_mtime(u, 1, 999999999);
	} else if (strcmp(n, "metadata") == 0) {
		u->type = BLK_UNIXFS_METADATA;
		set_data(u, "text/plain");
	} else {
		REQUIRE(strcmp(n, "file_empty") == 0);
	}
}

/* The mode a decoded message shows: a default one is not in the bytes. */
static bool same_mode(const struct blk_unixfs *a, const struct blk_unixfs *b)
{
	uint32_t def = blk_unixfs_is_dir(a->type) ? 0755 : 0644;
	uint32_t ma = a->has_mode ? a->mode : def,
		 mb = b->has_mode ? b->mode : def;

	return ma == mb;
}

static void test_known_answers(void)
{
	for (size_t i = 0; i < sizeof(ufs_vectors) / sizeof(ufs_vectors[0]);
	     i++) {
		const struct ufs_vector *v = &ufs_vectors[i];
		struct blk_unixfs u, d;
		uint8_t buf[256], want[256], again[256];
		uint64_t bs[4];
		char hex[513];
		size_t len, wlen, alen;

		ufs_case(v->name, &u);
		CHECK(blk_unixfs_encode(&u, buf, sizeof(buf), &len) == 0);
		CHECK(len == blk_unixfs_encoded_size(&u));
		tohex(buf, len, hex);
		CHECK(strcmp(hex, v->hex) == 0);
		if (strcmp(hex, v->hex) != 0)
			fprintf(stderr, "%s:\n got  %s\n want %s\n", v->name,
				hex, v->hex);

		wlen = unhex(v->hex, want, sizeof(want));
		CHECK(blk_unixfs_decode(want, wlen, &d, bs, 4) == 0);
		CHECK(d.type == u.type);
		CHECK(d.data_len == u.data_len);
		CHECK(d.n_blocksizes == u.n_blocksizes);
		for (size_t j = 0; j < d.n_blocksizes; j++)
			CHECK(bs[j] == u.blocksizes[j]);
		CHECK(d.has_hash_type == u.has_hash_type);
		CHECK(d.hash_type == u.hash_type);
		CHECK(d.has_fanout == u.has_fanout && d.fanout == u.fanout);
		CHECK(same_mode(&d, &u));
		CHECK(d.has_mtime == u.has_mtime);
		CHECK(d.mtime_sec == u.mtime_sec);
		CHECK(d.mtime_nsec == u.mtime_nsec);
		CHECK(blk_unixfs_encode(&d, again, sizeof(again), &alen) == 0);
		CHECK(alen == wlen && memcmp(again, want, wlen) == 0);
	}
}

static void test_decoded_values(void)
{
	static const uint8_t file_bs[] = {0x08, 0x02, 0x18, 0x85, 0x80, 0x20,
					  0x20, 0x80, 0x80, 0x10, 0x20, 0x80,
					  0x80, 0x10, 0x20, 0x05};
	struct blk_unixfs u;
	uint64_t bs[2];

	/* Fewer slots than blocksizes: all counted, the first stored. */
	CHECK(blk_unixfs_decode(file_bs, sizeof(file_bs), &u, bs, 2) == 0);
	CHECK(u.n_blocksizes == 3 && u.blocksizes == bs);
	CHECK(bs[0] == 262144 && bs[1] == 262144);
	CHECK(u.filesize == 524293);
	CHECK(blk_unixfs_decode(file_bs, sizeof(file_bs), &u, NULL, 0) == 0);
	CHECK(u.n_blocksizes == 3 && u.blocksizes == NULL);
}

static void test_encode_errors(void)
{
	struct blk_unixfs u;
	uint8_t buf[64];
	size_t len = 0;

	ufs_case("dir_700_mtime", &u);
	CHECK(blk_unixfs_encode(&u, buf, 3, &len) == -ENOBUFS);
	CHECK(len == blk_unixfs_encoded_size(&u));
	u.mtime_nsec = 1000000000;
	CHECK(blk_unixfs_encode(&u, buf, sizeof(buf), &len) == -EINVAL);
	ufs_case("file_empty", &u);
	u.type = (enum blk_unixfs_type)6;
	CHECK(blk_unixfs_encode(&u, buf, sizeof(buf), &len) == -EINVAL);
	{
		static const uint64_t huge[] = {UINT64_MAX, 1};

		ufs_case("file_empty", &u);
		u.blocksizes = huge;
		u.n_blocksizes = 2;
		CHECK(blk_unixfs_encode(&u, buf, sizeof(buf), &len) == -EINVAL);
	}
}

static const struct {
	const char *why, *hex;
} bad[] = {
    {"empty", ""},
    {"no type", "1800"},
    {"type 6", "08061800"},
    {"type overlong", "08801800"},
    {"type as bytes", "0a00"},
    {"empty data", "080212001800"},
    {"file without filesize", "0802"},
    {"raw without filesize", "0800120161"},
    {"wrong filesize", "08021801"},
    {"filesize short of data", "0802120161 1800"},
    {"filesize on a directory", "08011800"},
    {"filesize on a symlink", "0804120174 1801"},
    {"filesize twice", "080218001800"},
    {"fields out of order", "0802180012016 1"},
    {"blocksizes apart", "0802180220012801200 1"},
    {"packed blocksizes", "08021802220201 01"},
    {"type twice", "08020802 1800"},
    {"mode default file", "0802180038a403"},
    {"mode default dir", "080138ed03"},
    {"mode default symlink", "080412017438a403"},
    {"mode past uint32", "08021800388080808010"},
    {"mode as bytes", "080218003a00"},
    {"mtime empty", "080218004200"},
    {"mtime without seconds", "0802180042051500000001"},
    {"mtime nanos 0", "08021800420708011500000000"},
    {"mtime nanos 1e9", "0802180042070801150 0ca9a3b"},
    {"mtime nanos truncated", "080218004205080115ff00"},
    {"mtime nanos as varint", "08021800420408011001"},
    {"mtime unknown field", "080218004204080118 01"},
    {"mtime seconds twice", "08021800420408010801"},
    {"mtime past the end", "080218004209080115"},
    {"mtime seconds overlong", "080218004203088000"},
    {"mtime as varint", "080218004000"},
    {"unknown field 9", "080218004800"},
    {"unknown field 15", "080218007800"},
    {"two-byte key", "08021800 8001 00"},
    {"data past the end", "0802120568"},
    {"truncated varint", "080218"},
    {"blocksize overflow", "0802 18ffffffffffffffffff01"
			   "20ffffffffffffffffff01 2001"},
};

/* Strip the blanks that group the bytes above. */
static size_t unhex_spaced(const char *s, uint8_t *buf, size_t cap)
{
	char t[256];
	size_t k = 0;

	for (; *s; s++)
		if (*s != ' ') {
			REQUIRE(k + 1 < sizeof(t));
			t[k++] = *s;
		}
	t[k] = 0;
	REQUIRE(k % 2 == 0);
	return unhex(t, buf, cap);
}

static void test_refusals(void)
{
	struct blk_unixfs u;
	uint64_t bs[4];
	uint8_t buf[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = unhex_spaced(bad[i].hex, buf, sizeof(buf));
		int rc = blk_unixfs_decode(buf, n, &u, bs, 4);

		CHECK(rc == -EBADMSG);
		if (rc != -EBADMSG)
			fprintf(stderr, "accepted: %s\n", bad[i].why);
	}
}

/* Prefixes and single-byte changes of every vector: refused or canonical. */
static void test_mutations(void)
{
	for (size_t i = 0; i < sizeof(ufs_vectors) / sizeof(ufs_vectors[0]);
	     i++) {
		uint8_t buf[256], *cp, again[256];
		size_t n = unhex(ufs_vectors[i].hex, buf, sizeof(buf)), alen;
		struct blk_unixfs u;
		uint64_t bs[4];

		for (size_t len = 0; len <= n; len++)
			for (size_t at = 0; at <= len; at++)
				for (unsigned b = 0; b < 256; b += 5) {
					cp = xmalloc(len);
					memcpy(cp, buf, len);
					if (at < len)
						cp[at] = (uint8_t)b;
					if (blk_unixfs_decode(cp, len, &u, bs,
							      4) == 0 &&
					    u.n_blocksizes <= 4) {
						CHECK(blk_unixfs_encode(
							  &u, again,
							  sizeof(again),
							  &alen) == 0);
						CHECK(alen == len &&
						      memcmp(again, cp, len) ==
							  0);
					}
					free(cp);
					if (at == len)
						break;
				}
	}
}

int main(void)
{
	test_known_answers();
	test_decoded_values();
	test_encode_errors();
	test_refusals();
	test_mutations();
	printf("unixfs: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
