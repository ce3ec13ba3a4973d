/* libFuzzer target for the dag-pb decoder (blocks/dag/pb.c): whatever
 * decodes must re-encode to the same bytes, the iterator must walk the
 * same links, and nothing may read past the input. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/pb.h"

/* Not assert(): it must hold in every build type. */
#define REQUIRE(c)                                                             \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blk_pb_link *links, one;
	struct blk_pb_node node, counted;
	struct blk_pb_iter it;
	uint8_t *again;
	size_t max = size / 2 + 1, len = 0, k = 0;
	int rc;

	/* Validation alone agrees with the full decode. */
	rc = blk_pb_decode(data, size, &counted, NULL, 0);
	links = malloc(max * sizeof(*links));
	if (!links)
		return 0;
	REQUIRE(blk_pb_decode(data, size, &node, links, max) == rc);
	if (rc < 0) {
		REQUIRE(rc == -EBADMSG);
		REQUIRE(blk_pb_iter_init(&it, data, size, NULL) == rc);
		free(links);
		return 0;
	}
	REQUIRE(node.n_links == counted.n_links && node.n_links <= max);

	again = malloc(size + 1);
	REQUIRE(again);
	rc = blk_pb_encode(&node, again, size + 1, &len);
	REQUIRE(rc == 0 && len == size);
	REQUIRE(memcmp(again, data, size) == 0);
	REQUIRE(blk_pb_encoded_size(&node) == size);

	REQUIRE(blk_pb_iter_init(&it, data, size, NULL) == 0);
	while (blk_pb_iter_next(&it, &one) == 1) {
		REQUIRE(k < node.n_links);
		REQUIRE(blk_cid_equal(&one.cid, &links[k].cid));
		REQUIRE(one.name == links[k].name);
		REQUIRE(one.tsize == links[k].tsize);
		k++;
	}
	REQUIRE(k == node.n_links);
	free(again);
	free(links);
	return 0;
}
