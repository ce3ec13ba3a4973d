/* libFuzzer target for the UnixFS Data decoder (blocks/dag/unixfs.c): what
 * decodes must re-encode to the same bytes. An input that is a dag-pb node
 * also has its Data decoded, so seeds can be whole UnixFS blocks. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/pb.h"
#include "blocks/dag/unixfs.h"

/* Not assert(): it must hold in every build type. */
#define REQUIRE(c)                                                             \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size)
{
	size_t max = size / 2 + 1, len = 0;
	struct blk_unixfs u, counted;
	uint64_t *bs;
	uint8_t *again;
	int rc;

	rc = blk_unixfs_decode(data, size, &counted, NULL, 0);
	bs = malloc(max * sizeof(*bs));
	if (!bs)
		return;
	REQUIRE(blk_unixfs_decode(data, size, &u, bs, max) == rc);
	if (rc < 0) {
		REQUIRE(rc == -EBADMSG);
		free(bs);
		return;
	}
	REQUIRE(u.n_blocksizes == counted.n_blocksizes &&
		u.n_blocksizes <= max);
	REQUIRE(u.type <= BLK_UNIXFS_HAMT_SHARD);
	REQUIRE(!u.has_mtime || u.mtime_nsec <= 999999999);
	again = malloc(size + 1);
	REQUIRE(again);
	rc = blk_unixfs_encode(&u, again, size + 1, &len);
	REQUIRE(rc == 0 && len == size);
	REQUIRE(memcmp(again, data, size) == 0);
	free(again);
	free(bs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blk_pb_node node;

	check(data, size);
	if (blk_pb_decode(data, size, &node, NULL, 0) == 0 && node.has_data)
		check(node.data, node.data_len);
	return 0;
}
