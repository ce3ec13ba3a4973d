/* libFuzzer target: the attribute block reader on any input. A directory
 * block whose entries it holds and that reads whole re-encodes, through
 * the builder, to the same bytes. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/attrs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct same {
	const uint8_t *data;
	size_t size;
	bool seen;
};

static int check_same(void *ctx, const struct blk_cid *cid,
		      const uint8_t *block, size_t len)
{
	struct same *s = ctx;

	(void)cid;
	assert(len == s->size && memcmp(block, s->data, len) == 0);
	s->seen = true;
	return 0;
}

static int no_parts(void *ctx, const struct blk_cid *cid, void **data,
		    size_t *len)
{
	(void)ctx;
	(void)cid;
	(void)data;
	(void)len;
	return -ENOENT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blk_attrs_rd *rd;
	struct blk_attrs_dir *d;
	struct blk_attr_entry e;
	struct blk_cid cid;
	int ret = blk_attrs_rd_open(&rd, data, size);

	assert(ret == 0 || ret == -EBADMSG || ret == -ENOMEM);
	if (ret)
		return 0;
	assert(blk_attrs_dir_new(&d) == 0);
	while ((ret = blk_attrs_rd_next(rd, no_parts, NULL, &e)) == 1)
		assert(blk_attrs_dir_add(d, &e) == 0);
	assert(ret == 0 || ret == -EBADMSG || ret == -ENOMEM ||
	       (ret == -ENOENT && blk_attrs_rd_nparts(rd)));
	if (ret == 0 && !blk_attrs_rd_nparts(rd)) {
		struct same s = {data, size, false};
		assert(blk_attrs_dir_finish(d, blk_attrs_rd_self(rd),
					    check_same, &s, &cid) == 0);
		assert(s.seen);
	}
	blk_attrs_dir_free(&d);
	blk_attrs_rd_free(&rd);
	return 0;
}
