/* Unit tests for the cluster file and policy parsing (net/cluster/config.c):
 * the redundancy policies, ec_min, and which blocks are stored as replicas. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	test_cluster_file_refused();
	printf("test-config: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
