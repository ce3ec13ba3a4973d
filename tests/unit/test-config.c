/* Unit tests for the cluster file and policy parsing (fs/config.c): the
 * redundancy policies, ec_min, and which blocks are stored as replicas. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/config.h"

#include "tests/unit/check.h"

static void test_redundancy(void)
{
	unsigned k = 0, m = 0;

	CHECK(bfs_parse_redundancy("ec:4+2", &k, &m) == 0 && k == 4 && m == 2);
	CHECK(bfs_parse_redundancy("replicas:3", &k, &m) == 0 && k == 1 &&
	      m == 2);
	CHECK(bfs_parse_redundancy("ec:4+2x", &k, &m) == -EINVAL);
	CHECK(bfs_parse_redundancy("ec:0+2", &k, &m) == -EINVAL);
	CHECK(bfs_parse_redundancy("replicas:0", &k, &m) == -EINVAL);
}

static void test_ec_min(void)
{
	uint32_t v = 1;

	CHECK(bfs_parse_ec_min("64K", &v) == 0 && v == 65536);
	CHECK(bfs_parse_ec_min("0", &v) == 0 && v == 0);
	CHECK(bfs_parse_ec_min("64M", &v) == 0 && v == BFS_EC_MIN_MAX);
	CHECK(bfs_parse_ec_min("65M", &v) == -EINVAL);
	CHECK(bfs_parse_ec_min("-1", &v) == -EINVAL);
	CHECK(bfs_parse_ec_min("big", &v) == -EINVAL);
}

/* Every block survives the loss of any M nodes, whichever way it is
 * stored: short blocks as M+1 replicas, the others as K+M. */
static void test_block_coding(void)
{
	static const unsigned kms[][2] = {{1, 0}, {1, 2}, {2, 1}, {4, 2},
					  {8, 3}, {10, 4}};
	static const uint64_t lens[] = {0, 1, 4095, 65535, 65536, 65537,
					1u << 20};
	static const uint32_t mins[] = {0, 1, 4096, 65536, 1u << 20};

	for (size_t a = 0; a < sizeof(kms) / sizeof(kms[0]); a++)
		for (size_t b = 0; b < sizeof(lens) / sizeof(lens[0]); b++)
			for (size_t c = 0; c < sizeof(mins) / sizeof(mins[0]);
			     c++) {
				unsigned k = kms[a][0], m = kms[a][1], bk, bm;
				bool replicate = k > 1 && lens[b] < mins[c];

				bfs_block_coding(k, m, mins[c], lens[b], &bk,
						 &bm);
				CHECK(bm == m);
				CHECK(bk == (replicate ? 1 : k));
			}
}

/* A cluster file: ec_min defaults to BFS_EC_MIN_DEFAULT, is read when
 * given, and a bad one is refused naming the line. */
static void test_cluster_file(void)
{
	static const char *const bodies[] = {
		"[cluster]\nredundancy = ec:4+2\n",
		"[cluster]\nredundancy = ec:4+2\nec_min = 16K\n",
		"[cluster]\nredundancy = ec:4+2\nec_min = lots\n",
	};
	struct bfs_cluster *c = xmalloc(sizeof(*c));
	char path[] = "/tmp/test-config-XXXXXX", err[256];

	for (int i = 0; i < 3; i++) {
		int fd = mkstemp(path);
		REQUIRE(fd >= 0);
		REQUIRE(write(fd, bodies[i], strlen(bodies[i])) ==
			(ssize_t)strlen(bodies[i]));
		close(fd);
		int ret = bfs_cluster_load(path, c, err, sizeof(err));
		unlink(path);
		strcpy(path, "/tmp/test-config-XXXXXX");
		if (i == 0)
			CHECK(ret == 0 && c->ec_min == BFS_EC_MIN_DEFAULT &&
			      !strcmp(c->redundancy, "ec:4+2"));
		else if (i == 1)
			CHECK(ret == 0 && c->ec_min == 16384);
		else
			CHECK(ret == -EINVAL && strstr(err, ":3:"));
	}
	free(c);
}

int main(void)
{
	test_redundancy();
	test_ec_min();
	test_block_coding();
	test_cluster_file();
	printf("test-config: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
