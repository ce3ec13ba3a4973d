/* libFuzzer target: the CAR v1 reader on any input, through short reads
 * whose size the input's length picks. An archive read to its end is
 * written again block by block and must give the input's bytes. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/car.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct source {
	const uint8_t *p;
	size_t len, pos, step;
};

static ssize_t source_read(void *arg, void *buf, size_t len)
{
	struct source *s = arg;
	size_t n = s->len - s->pos;

	if (n > len)
		n = len;
	if (n > s->step)
		n = s->step;
	memcpy(buf, s->p + s->pos, n);
	s->pos += n;
	return (ssize_t)n;
}

/* The rewritten archive is compared as it is written. */
struct cmp {
	const uint8_t *p;
	size_t len, pos;
};

static int cmp_write(void *arg, const void *buf, size_t len)
{
	struct cmp *c = arg;

	assert(len <= c->len - c->pos);
	assert(memcmp(c->p + c->pos, buf, len) == 0);
	c->pos += len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t steps[] = {1, 3, 64, 4096, SIZE_MAX};
	struct source s = {data, size, 0, steps[size % 5]};
	struct cmp c = {data, size, 0};
	struct blk_car_reader r;
	struct blk_car_writer w;
	struct blk_cid cid;
	const uint8_t *block;
	size_t len;
	int ret;

	ret = blk_car_reader_open(&r, source_read, &s);
	assert(ret == 0 || ret == -EBADMSG || ret == -EPROTONOSUPPORT);
	if (ret < 0)
		return 0;
	assert(blk_car_writer_start(&w, cmp_write, &c, r.roots, r.nroots) == 0);
	while ((ret = blk_car_reader_next(&r, &cid, &block, &len)) == 1) {
		assert(blk_cid_verify(&cid, block, len));
		assert(blk_car_write_block(&w, &cid, block, len) == 0);
	}
	assert(ret == 0 || ret == -EBADMSG);
	if (ret == 0)
		assert(c.pos == size && r.offset == size);
	blk_car_reader_close(&r);
	return 0;
}
