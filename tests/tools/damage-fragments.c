/* damage-fragments: flip one byte in every fragment a stopped node keeps
 * on disk, for the integration tests (a disk that rots under a node).
 *
 * Usage: damage-fragments NODE_DIR
 * Rewrites each 'F' record of the node's fragment column family (see
 * net/server/server.h) with one byte of the fragment bytes inverted, headers
 * left alone, and prints the number of fragments damaged. Exit status 0, or 1
 * on error (the node must not be running). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/store/fragstore.h"
#include "ec/fragment.h"

int main(int argc, char **argv)
{
	/* The fragment store's family only: the node's others are opened
	 * and kept untouched. */
	struct blk_cf_registry reg = {0};
	int frags = blk_fragstore_register(&reg);
	struct blk_db_options o = {.cfs = &reg};
	const uint8_t tag = 'F';
	struct blk_db *db = NULL;
	struct blk_iter *it;
	char path[4096], err[512];
	unsigned long n = 0;
	int ret = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: damage-fragments NODE_DIR\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/db", argv[1]);
	if (blk_db_open(path, &o, &db, err, sizeof(err))) {
		fprintf(stderr, "damage-fragments: %s\n", err);
		return 1;
	}
	it = blk_iter_new(db, (unsigned)frags, &tag, 1, NULL, 0);
	for (; it && blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, vlen;
		const void *key = blk_iter_key(it, &klen);
		const uint8_t *val = blk_iter_value(it, &vlen);
		uint8_t *copy;

		if (vlen <= EC_FRAG_HDR_LEN)
			continue;
		copy = malloc(vlen);
		if (!copy) {
			ret = -1;
			break;
		}
		memcpy(copy, val, vlen);
		copy[EC_FRAG_HDR_LEN + (vlen - EC_FRAG_HDR_LEN) / 2] ^= 0xff;
		ret = blk_db_put(db, (unsigned)frags, key, klen, copy, vlen);
		free(copy);
		if (ret)
			break;
		n++;
	}
	if (!it || blk_iter_status(it) < 0)
		ret = -1;
	blk_iter_free(it);
	if (!ret)
		ret = blk_db_sync(db);
	blk_db_close(db);
	if (ret) {
		fprintf(stderr,
			"damage-fragments: failed after %lu fragments\n", n);
		return 1;
	}
	printf("%lu\n", n);
	return 0;
}
