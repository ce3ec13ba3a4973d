/* Unit tests for the cluster file and policy parsing (net/cluster/config.c):
 * the redundancy policies, ec_min, which blocks are stored as replicas,
 * and the [filesystem] section. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/cluster/config.h"

#include "tests/unit/check.h"

static void test_redundancy(void)
{
	unsigned k = 0, m = 0;

	CHECK(cl_parse_redundancy("ec:4+2", &k, &m) == 0 && k == 4 && m == 2);
	CHECK(cl_parse_redundancy("replicas:3", &k, &m) == 0 && k == 1 &&
	      m == 2);
	CHECK(cl_parse_redundancy("ec:4+2x", &k, &m) == -EINVAL);
	CHECK(cl_parse_redundancy("ec:0+2", &k, &m) == -EINVAL);
	CHECK(cl_parse_redundancy("replicas:0", &k, &m) == -EINVAL);
}

static void test_ec_min(void)
{
	uint32_t v = 1;

	CHECK(cl_parse_ec_min("64K", &v) == 0 && v == 65536);
	CHECK(cl_parse_ec_min("0", &v) == 0 && v == 0);
	CHECK(cl_parse_ec_min("64M", &v) == 0 && v == CL_EC_MIN_MAX);
	CHECK(cl_parse_ec_min("65M", &v) == -EINVAL);
	CHECK(cl_parse_ec_min("-1", &v) == -EINVAL);
	CHECK(cl_parse_ec_min("big", &v) == -EINVAL);
}

/* Every block survives the loss of any M nodes, whichever way it is
 * stored: short blocks as M+1 replicas, the others as K+M. */
static void test_block_coding(void)
{
	static const unsigned kms[][2] = {{1, 0}, {1, 2}, {2, 1},
					  {4, 2}, {8, 3}, {10, 4}};
	static const uint64_t lens[] = {0,     1,     4095,    65535,
					65536, 65537, 1u << 20};
	static const uint32_t mins[] = {0, 1, 4096, 65536, 1u << 20};

	for (size_t a = 0; a < sizeof(kms) / sizeof(kms[0]); a++)
		for (size_t b = 0; b < sizeof(lens) / sizeof(lens[0]); b++)
			for (size_t c = 0; c < sizeof(mins) / sizeof(mins[0]);
			     c++) {
				unsigned k = kms[a][0], m = kms[a][1], bk, bm;
				bool replicate = k > 1 && lens[b] < mins[c];

				cl_block_coding(k, m, mins[c], lens[b], &bk,
						&bm);
				CHECK(bm == m);
				CHECK(bk == (replicate ? 1 : k));
			}
}

#define NODE1                                                                  \
	"[node n1]\naddress = tcp://127.0.0.1:7401\n"                          \
	"public_key = 0123456789012345678901234567890123456789\n"
#define NODE2                                                                  \
	"[node n2]\naddress = tcp://127.0.0.1:7402\n"                          \
	"public_key = abcdefghijabcdefghijabcdefghijabcdefghij\n"

/* Load @body as a cluster file: the result, the message in @err. */
static int load(const char *body, struct cl_cluster *c, char *err,
		size_t errlen)
{
	char path[] = "/tmp/test-config-XXXXXX";
	int fd = mkstemp(path);

	REQUIRE(fd >= 0);
	REQUIRE(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
	close(fd);
	int ret = cl_cluster_load(path, c, err, errlen);
	unlink(path);
	return ret;
}

/* A cluster file: ec_min defaults to CL_EC_MIN_DEFAULT, is read when
 * given, and a bad one is refused naming the line. */
static void test_cluster_file(void)
{
	struct cl_cluster *c = xmalloc(sizeof(*c));
	char err[512];

	CHECK(load("[cluster]\nid = x\nredundancy = ec:4+2\n" NODE1, c, err,
		   sizeof(err)) == 0 &&
	      c->ec_min == CL_EC_MIN_DEFAULT &&
	      !strcmp(c->redundancy, "ec:4+2") && c->nnodes == 1);
	CHECK(
	    load("[cluster]\nid = x\nredundancy = ec:4+2\nec_min = 16K\n" NODE1
		     NODE2,
		 c, err, sizeof(err)) == 0 &&
	    c->ec_min == 16384 && c->nnodes == 2);
	CHECK(
	    load(
		"[cluster]\nid = x\nredundancy = ec:4+2\nec_min = lots\n" NODE1,
		c, err, sizeof(err)) == -EINVAL &&
	    strstr(err, ":4: invalid ec_min 'lots'"));
	free(c);
}

#define FS_ID "00112233445566778899aabbccddeeff"
#define FS_PK                                                                  \
	"000102030405060708090a0b0c0d0e0f"                                     \
	"F0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF"

/* [filesystem]: read when there, its absence said by has_fs; the hash
 * defaults to sha2-256. */
static void test_filesystem(void)
{
	struct cl_cluster *c = xmalloc(sizeof(*c));
	char err[512];

	CHECK(load("[cluster]\nid = x\n" NODE1, c, err, sizeof(err)) == 0 &&
	      !c->has_fs && c->hash == BLK_HASH_SHA2_256);
	CHECK(load("[cluster]\nid = x\n[filesystem]\nid = " FS_ID
		   "\npublic_key = " FS_PK "\n" NODE1,
		   c, err, sizeof(err)) == 0 &&
	      c->has_fs && c->hash == BLK_HASH_SHA2_256 && c->nnodes == 1);
	CHECK(c->fs_id[0] == 0x00 && c->fs_id[1] == 0x11 &&
	      c->fs_id[15] == 0xff);
	CHECK(c->fs_public_key[0] == 0 && c->fs_public_key[15] == 0x0f &&
	      c->fs_public_key[16] == 0xf0 && c->fs_public_key[31] == 0xff);
	CHECK(load(NODE1 "[filesystem]\nhash = blake2b-256\npublic_key "
			 "= " FS_PK "\nid = " FS_ID "\n[cluster]\nid = x\n",
		   c, err, sizeof(err)) == 0 &&
	      c->has_fs && c->hash == BLK_HASH_BLAKE2B_256);
	CHECK(load("[cluster]\nid = x\n[filesystem]\nid = " FS_ID
		   "\npublic_key = " FS_PK "\nhash = sha2-256\n" NODE1,
		   c, err, sizeof(err)) == 0 &&
	      c->hash == BLK_HASH_SHA2_256);
	free(c);
}

/* Write @text to a new file of mode @mode; its path in @path. */
static void key_file(char path[32], const char *text, mode_t mode)
{
	strcpy(path, "/tmp/test-config-XXXXXX");
	int fd = mkstemp(path);

	REQUIRE(fd >= 0);
	REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	REQUIRE(fchmod(fd, mode) == 0);
	close(fd);
}

/* The filesystem key: loaded when it is the cluster file's, refused when
 * it is another's, not a key, or readable by others. */
static void test_fs_key(void)
{
	struct cl_cluster *c = xmalloc(sizeof(*c));
	uint8_t pk[32], sk[64], got[64], pk2[32], sk2[64];
	char hex[129], text[200], path[32], err[512];

	REQUIRE(sodium_init() >= 0);
	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(pk2, sk2);
	c->has_fs = true;
	memcpy(c->fs_public_key, pk, 32);
	sodium_bin2hex(hex, sizeof(hex), sk, sizeof(sk));

	snprintf(text, sizeof(text), "%s\n", hex);
	key_file(path, text, 0600);
	CHECK(cl_fs_key_load(path, c, got, err, sizeof(err)) == 0 &&
	      memcmp(got, sk, 64) == 0);
	chmod(path, 0640);
	CHECK(cl_fs_key_load(path, c, got, err, sizeof(err)) == -EPERM &&
	      strstr(err, "chmod 600"));
	unlink(path);
	/* without the newline, and upper case */
	for (char *p = hex; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	key_file(path, hex, 0400);
	CHECK(cl_fs_key_load(path, c, got, err, sizeof(err)) == 0 &&
	      memcmp(got, sk, 64) == 0);
	unlink(path);
	/* another filesystem's key; no [filesystem] to check against */
	memcpy(c->fs_public_key, pk2, 32);
	key_file(path, text, 0600);
	CHECK(cl_fs_key_load(path, c, got, err, sizeof(err)) == -EINVAL &&
	      strstr(err, "another filesystem"));
	c->has_fs = false;
	CHECK(cl_fs_key_load(path, c, got, err, sizeof(err)) == -EINVAL &&
	      strstr(err, "[filesystem]"));
	unlink(path);
	/* not a key: short, not hex, a seed that is not its public key's */
	c->has_fs = true;
	memcpy(c->fs_public_key, pk, 32);
	key_file(path, "00ff\n", 0600);
	CHECK(cl_fs_key_load(path, c, got, err, sizeof(err)) == -EINVAL &&
	      strstr(err, "128 hex digits"));
	unlink(path);
	snprintf(text, sizeof(text), "%.126sxx\n", hex);
	key_file(path, text, 0600);
	CHECK(cl_fs_key_load(path, c, got, err, sizeof(err)) == -EINVAL);
	unlink(path);
	snprintf(text, sizeof(text), "%s", hex);
	text[0] = text[0] == '0' ? '1' : '0'; /* another seed */
	key_file(path, text, 0600);
	CHECK(cl_fs_key_load(path, c, got, err, sizeof(err)) == -EINVAL &&
	      strstr(err, "damaged"));
	unlink(path);
	CHECK(cl_fs_key_load("/nonexistent/filesystem.key", c, got, err,
			     sizeof(err)) == -ENOENT);
	free(c);
}

/* A file that is empty, truncated, duplicated or malformed is refused,
 * naming the line and what is wrong; none is taken as a smaller cluster. */
static void test_cluster_file_refused(void)
{
	static const struct {
		const char *body, *want;
	} cases[] = {
	    {"", "no [cluster] id"},
	    {"# nothing\n\n", "no [cluster] id"},
	    {"[cluster]\nid = x\n", "no [node NAME] section"},
	    {"[cluster]\nid = x\n[node n1]\naddress = tcp://h:1\n",
	     ":3: [node n1] has no public_key"},
	    {"[cluster]\nid = x\nnodes = 2\n" NODE1, "nodes = 2, but"},
	    {"[cluster]\nid = x\n" NODE1 "[cluster]\nid = x\n" NODE1,
	     ":7: 'id' of [cluster] set again (first on line 2)"},
	    {"[cluster]\nid = x\n" NODE1 NODE2 "[node n1]\n"
	     "address = tcp://h:1\n",
	     ":9: node 'n1' is listed twice (first on line 3)"},
	    {"[cluster]\nid = x\nredundancy = replicas:x\n" NODE1,
	     ":3: invalid redundancy 'replicas:x'"},
	    {"[cluster]\nid = x\nfoo = 1\n" NODE1,
	     ":3: unknown setting 'foo' in [cluster]"},
	    {"[clutser]\nid = x\n" NODE1, ":2: unknown section [clutser]"},
	    {"[cluster]\nid = x\njunk\n" NODE1, ":3: not 'name = value'"},
	    {"[cluster]\nid = x\n" NODE1 "weight = -1\n",
	     ":6: invalid weight '-1'"},
	    {"[cluster]\nid = x\n" NODE1 "[node n2]\naddress = tcp://h:2\n"
	     "public_key = 0123456789012345678901234567890123456789\n",
	     "has the public_key of [node n1]"},
	    {"[cluster]\nid = x\n[filesystem]\nid = " FS_ID "\n" NODE1,
	     ":3: [filesystem] has no public_key"},
	    {"[cluster]\nid = x\n[filesystem]\npublic_key = " FS_PK "\n" NODE1,
	     ":3: [filesystem] has no id"},
	    {"[cluster]\nid = x\n[filesystem]\nhash = sha2-256\n" NODE1,
	     ":3: [filesystem] has no id"},
	    {"[cluster]\nid = x\n[filesystem]\nid = 0011\n" NODE1,
	     ":4: invalid filesystem id '0011'"},
	    {"[cluster]\nid = x\n[filesystem]\nid = " FS_ID "0\n" NODE1,
	     ":4: invalid filesystem id"},
	    {"[cluster]\nid = x\n[filesystem]\nid = "
	     "0011223344556677889900aabbccddgg\n" NODE1,
	     ":4: invalid filesystem id"},
	    {"[cluster]\nid = x\n[filesystem]\nid = " FS_ID
	     "\npublic_key = 00\n" NODE1,
	     ":5: invalid filesystem public_key '00'"},
	    {"[cluster]\nid = x\n[filesystem]\nid = " FS_ID
	     "\npublic_key = " FS_PK "\nhash = md5\n" NODE1,
	     ":6: invalid hash 'md5'"},
	    {"[cluster]\nid = x\n[filesystem]\nid = " FS_ID
	     "\npublic_key = " FS_PK "\nkey = 1\n" NODE1,
	     ":6: unknown setting 'key' in [filesystem]"},
	    {"[cluster]\nid = x\n[filesystem]\nid = " FS_ID
	     "\npublic_key = " FS_PK "\n[filesystem]\nid = " FS_ID "\n" NODE1,
	     ":7: 'id' of [filesystem] set again (first on line 4)"},
	};
	struct cl_cluster *c = xmalloc(sizeof(*c));
	char err[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = 0;
		int ret = load(cases[i].body, c, err, sizeof(err));
		CHECK(ret == -EINVAL);
		CHECK(strstr(err, cases[i].want) != NULL);
		if (!strstr(err, cases[i].want))
			fprintf(stderr, "case %zu: %s\n", i, err);
	}
	CHECK(cl_cluster_load("/nonexistent/cluster.conf", c, err,
			      sizeof(err)) == -ENOENT &&
	      strstr(err, "/nonexistent/cluster.conf"));
	free(c);
}

int main(void)
{
	test_redundancy();
	test_ec_min();
	test_block_coding();
	test_cluster_file();
	test_filesystem();
	test_fs_key();
	test_cluster_file_refused();
	printf("test-config: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
