/* libFuzzer target for the DAG walker (blocks/dag/walk.c): walk from the
 * first of a few blocks given, fetching the others, and resolve a path;
 * never crash, never visit a CID twice, and every block handed to the
 * visit callback is the one fetched (or a hole's zeros).
 *
 * Input: as fuzz-dir's: either one block (the root), or the byte 0xB1, a
 * count k (1..8) and k blocks, each a 2-byte big-endian length and its
 * bytes; the first is the root. A fetch serves the block whose CID it asks
 * for, or else block (first digest byte mod k): a lying store, whose
 * answers the walker must survive. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/walk.h"

#define REQUIRE(c)                                                             \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

#define MAX_BLOCKS 8
#define MAX_SEEN 8192

struct input {
	size_t k;
	const uint8_t *block[MAX_BLOCKS];
	size_t len[MAX_BLOCKS];
	struct blk_cid cid[MAX_BLOCKS];
	size_t fetches;
	struct blk_cid seen[MAX_SEEN];
	size_t nseen;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void split(struct input *in, const uint8_t *data, size_t size)
{
	size_t pos = 2;

	in->k = 0;
	if (size >= 2 && data[0] == 0xB1 && data[1] >= 1 &&
	    data[1] <= MAX_BLOCKS) {
		for (size_t i = 0; i < data[1]; i++) {
			size_t len;

			if (size - pos < 2)
				break;
			len = (size_t)data[pos] << 8 | data[pos + 1];
			pos += 2;
			if (len > size - pos)
				break;
			in->block[in->k] = data + pos;
			in->len[in->k++] = len;
			pos += len;
		}
	}
	if (in->k == 0) {
		in->k = 1;
		in->block[0] = data;
		in->len[0] = size;
	}
	for (size_t i = 0; i < in->k; i++)
		blk_cid_compute(&in->cid[i], BLK_CODEC_DAG_PB, in->block[i],
				in->len[i]);
}

static int fetch(void *ctx, const struct blk_cid *cid, void **data, size_t *len)
{
	struct input *in = ctx;
	size_t i = cid->digest[0] % in->k;

	if (++in->fetches > 4096)
		return -ELOOP;
	for (size_t j = 0; j < in->k; j++)
		if (blk_cid_equal(&in->cid[j], cid))
			i = j;
	*data = malloc(in->len[i] ? in->len[i] : 1);
	if (!*data)
		return -ENOMEM;
	memcpy(*data, in->block[i], in->len[i]);
	*len = in->len[i];
	return 0;
}

static int visit(void *ctx, const struct blk_cid *cid, const uint8_t *block,
		 size_t len)
{
	struct input *in = ctx;

	(void)block, (void)len;
	for (size_t i = 0; i < in->nseen; i++)
		REQUIRE(!blk_cid_equal(&in->seen[i], cid));
	if (in->nseen == MAX_SEEN)
		return -E2BIG;
	in->seen[in->nseen++] = *cid;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct input in;
	struct blk_walk_config cfg = {
	    .fetch = fetch, .visit = visit, .ctx = &in};
	struct blk_walk_stats st;
	struct blk_cid out;

	memset(&in, 0, sizeof(in));
	split(&in, data, size);
	int ret = blk_dag_walk(&cfg, &in.cid[0], &st);
	REQUIRE(ret <= 0);
	REQUIRE(st.blocks == in.nseen);
	in.fetches = 0;
	/* A path from the input's tail: names that may be there. */
	char path[64];
	size_t n = size < sizeof(path) - 1 ? size : sizeof(path) - 1;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = data[size - n + i];
		path[i] = c == 0 ? '/' : (char)c;
	}
	path[n] = 0;
	(void)blk_dag_walk_resolve(fetch, &in, &in.cid[0], path, &out);
	return 0;
}
