/* CAR v1: the writer's bytes equal @ipld/car's
 * (tests/unit/vectors/gen-car-vectors.mjs), the reader reads them back
 * through short reads, and truncated and malformed archives are refused
 * without allocations sized by what they claim. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "blocks/dag/car.h"
#include "blocks/dag/cbor.h"
#include "tests/unit/check.h"

/* @ipld/car 5.4.7: roots [block 0]; blocks 0-3 of make_blocks() in order. */
#define CAR_VECTOR                                                             \
	"3aa265726f6f747381d82a58250001711220750d90a6c2959f6bb1eba8c98725"     \
	"5d52747f781232455140a99a83095db9f9336776657273696f6e015601711220"     \
	"750d90a6c2959f6bb1eba8c987255d52747f781232455140a99a83095db9f933"     \
	"a26161830102d82a5825000155122031886889dbc39f9ce80423a6dacf19553a"     \
	"49238e579b07321892f8865750f0f86162f6320155122031886889dbc39f9ce8"     \
	"0423a6dacf19553a49238e579b07321892f8865750f0f868656c6c6f20626c6f"     \
	"636b66730a2401551220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b"     \
	"934ca495991b7852b855ec010155122044cae5223d431caed4a9e32271d6abf1"     \
	"7c3f2f4abac45fcdb48a99fcc6072a090726456483a2c1e0ff1e3d5c7b9ab9d8"     \
	"f71635547392b1d0ef0e2d4c6b8aa9c8e70625446382a1c0dffe1d3c5b7a99b8"     \
	"d7f61534537291b0cfee0d2c4b6a89a8c7e60524436281a0bfdefd1c3b5a7998"     \
	"b7d6f51433527190afceed0c2b4a6988a7c6e504234261809fbeddfc1b3a5978"     \
	"97b6d5f4133251708faecdec0b2a496887a6c5e4032241607f9ebddcfb1a3958"     \
	"7796b5d4f31231506f8eadcceb0a29486786a5c4e30221405f7e9dbcdbfa1938"     \
	"577695b4d3f211304f6e8daccbea0928476685a4c3e20120"
#define ROOT_STR "bafyreidvbwiknquvt5v3d25izgdskxksor7xqersiviubkm2qmev3opzgm"

#define NBLOCKS 4

struct block {
	struct blk_cid cid;
	uint8_t *data;
	size_t len;
};

static struct block blocks[NBLOCKS];

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s) / 2;

	REQUIRE(n <= cap && strlen(s) % 2 == 0);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		REQUIRE(sscanf(s + 2 * i, "%2x", &v) == 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void set_block(struct block *b, uint64_t codec, const void *p,
		      size_t len)
{
	b->data = xmalloc(len);
	memcpy(b->data, p, len);
	b->len = len;
	blk_cid_compute(&b->cid, codec, p, len);
}

/* The blocks of the vector: {a: [1, 2, CID 1], b: null} (dag-cbor), "hello
 * blockfs\n", the empty block and 200 bytes of (i * 31 + 7). */
static void make_blocks(void)
{
	struct blk_cbor_enc e;
	uint8_t pattern[200], cbor[128];
	size_t len;

	for (int i = 0; i < 200; i++)
		pattern[i] = (uint8_t)(i * 31 + 7);
	set_block(&blocks[1], BLK_CODEC_RAW, "hello blockfs\n", 14);
	set_block(&blocks[2], BLK_CODEC_RAW, "", 0);
	set_block(&blocks[3], BLK_CODEC_RAW, pattern, sizeof(pattern));
	blk_cbor_enc_init(&e, cbor, sizeof(cbor));
	blk_cbor_put_map(&e, 2);
	blk_cbor_put_key(&e, "a");
	blk_cbor_put_array(&e, 3);
	blk_cbor_put_uint(&e, 1);
	blk_cbor_put_uint(&e, 2);
	blk_cbor_put_cid(&e, &blocks[1].cid);
	blk_cbor_put_key(&e, "b");
	blk_cbor_put_null(&e);
	REQUIRE(blk_cbor_enc_finish(&e, &len) == 0);
	set_block(&blocks[0], BLK_CODEC_DAG_CBOR, cbor, len);
}

/* A growable memory sink, which can fail after @fail_after bytes. */
struct sink {
	uint8_t *buf;
	size_t len, cap;
	size_t fail_after;
};

static int sink_write(void *arg, const void *p, size_t len)
{
	struct sink *s = arg;

	if (s->len + len > s->fail_after)
		return -ENOSPC;
	if (s->len + len > s->cap) {
		s->cap = 2 * (s->len + len);
		s->buf = realloc(s->buf, s->cap);
		REQUIRE(s->buf);
	}
	memcpy(s->buf + s->len, p, len);
	s->len += len;
	return 0;
}

/* A memory source handing out at most @step bytes a call; it fails with
 * -EIO at @fail_at. */
struct source {
	const uint8_t *p;
	size_t len, pos, step, fail_at;
	size_t calls;
};

static ssize_t source_read(void *arg, void *buf, size_t len)
{
	struct source *s = arg;
	size_t n = s->len - s->pos;

	s->calls++;
	if (s->pos >= s->fail_at)
		return -EIO;
	if (n > len)
		n = len;
	if (n > s->step)
		n = s->step;
	memcpy(buf, s->p + s->pos, n);
	s->pos += n;
	return (ssize_t)n;
}

static struct source source_of(const uint8_t *p, size_t len, size_t step)
{
	return (struct source){p, len, 0, step, SIZE_MAX, 0};
}

/* Read a whole archive: the blocks read, or a negative errno. */
static int read_all(const uint8_t *p, size_t len, size_t step,
		    struct blk_car_reader *r, bool check)
{
	struct source s = source_of(p, len, step);
	struct blk_cid cid;
	const uint8_t *data;
	size_t dlen;
	int n = 0, ret = blk_car_reader_open(r, source_read, &s);

	if (ret < 0)
		return ret;
	while ((ret = blk_car_reader_next(r, &cid, &data, &dlen)) == 1) {
		if (check) {
			CHECK(n < NBLOCKS);
			if (n < NBLOCKS) {
				CHECK(blk_cid_equal(&cid, &blocks[n].cid));
				CHECK(dlen == blocks[n].len &&
				      memcmp(data, blocks[n].data, dlen) == 0);
			}
		}
		n++;
	}
	if (ret == 0)
		CHECK(r->offset == len);
	blk_car_reader_close(r);
	return ret < 0 ? ret : n;
}

static size_t bounds[NBLOCKS + 1]; /* the archive's length after each part */

static void test_writer(uint8_t *car, size_t *car_len)
{
	struct blk_car_writer w;
	struct sink s = {NULL, 0, 0, SIZE_MAX};
	struct blk_cid roots[BLK_CAR_MAX_ROOTS + 1];
	char str[BLK_CID_STR_MAX];
	uint8_t want[1024];
	size_t n = unhex(CAR_VECTOR, want, sizeof(want));

	blk_cid_to_string(&blocks[0].cid, str);
	CHECK(strcmp(str, ROOT_STR) == 0);
	CHECK(blk_car_writer_start(&w, sink_write, &s, &blocks[0].cid, 1) == 0);
	bounds[0] = (size_t)w.bytes;
	for (int i = 0; i < NBLOCKS; i++) {
		CHECK(blk_car_write_block(&w, &blocks[i].cid, blocks[i].data,
					  blocks[i].len) == 0);
		bounds[i + 1] = (size_t)w.bytes;
	}
	CHECK(w.blocks == NBLOCKS && w.bytes == s.len);
	CHECK(s.len == n && memcmp(s.buf, want, n) == 0);
	memcpy(car, want, n);
	*car_len = n;

	/* Errors: the callback's, too many roots, too large a block. */
	for (size_t at = 0; at < n; at += 13) {
		int ret;

		s.len = 0;
		s.fail_after = at;
		ret =
		    blk_car_writer_start(&w, sink_write, &s, &blocks[0].cid, 1);
		for (int i = 0; ret == 0 && i < NBLOCKS; i++)
			ret = blk_car_write_block(
			    &w, &blocks[i].cid, blocks[i].data, blocks[i].len);
		CHECK(ret == -ENOSPC);
	}
	s.fail_after = SIZE_MAX;
	for (int i = 0; i <= BLK_CAR_MAX_ROOTS; i++)
		roots[i] = blocks[0].cid;
	CHECK(blk_car_writer_start(&w, sink_write, &s, roots,
				   BLK_CAR_MAX_ROOTS + 1) == -EINVAL);
	CHECK(blk_car_writer_start(&w, sink_write, &s, roots,
				   BLK_CAR_MAX_ROOTS) == 0);
	CHECK(blk_car_write_block(&w, &blocks[1].cid, blocks[1].data,
				  (size_t)BLK_CAR_MAX_BLOCK + 1) == -EINVAL);
	free(s.buf);
}

static void test_reader(const uint8_t *car, size_t len)
{
	static const size_t steps[] = {1, 2, 7, 64, 4096, SIZE_MAX};
	struct blk_car_reader r;

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		CHECK(read_all(car, len, steps[i], &r, true) == NBLOCKS);
		CHECK(r.nroots == 1 &&
		      blk_cid_equal(&r.roots[0], &blocks[0].cid));
	}
	/* The read callback's error comes back as it is. */
	for (size_t at = 0; at < len; at += 17) {
		struct source s = source_of(car, len, 5);
		struct blk_cid cid;
		const uint8_t *data;
		size_t dlen;
		int ret;

		s.fail_at = at;
		ret = blk_car_reader_open(&r, source_read, &s);
		if (ret == 0)
			while ((ret = blk_car_reader_next(&r, &cid, &data,
							  &dlen)) == 1)
				;
		CHECK(ret == -EIO);
		blk_car_reader_close(&r);
	}
}

/* Every prefix: a shorter archive at a section boundary, else refused. */
static void test_truncated(const uint8_t *car, size_t len)
{
	struct blk_car_reader r;

	for (size_t cut = 0; cut < len; cut++) {
		int want = -EBADMSG;

		for (int i = 0; i <= NBLOCKS; i++)
			if (cut == bounds[i])
				want = i;
		CHECK(read_all(car, cut, 3, &r, true) == want);
	}
}

/* Build a CAR from hex parts: the header, then raw sections. */
static size_t car_of(uint8_t *buf, size_t cap, const char *hex)
{
	return unhex(hex, buf, cap);
}

static void test_malformed(const uint8_t *car, size_t len)
{
	static const struct {
		const char *hex;
		int want;
	} headers[] = {
	    /* nothing */
	    {"", -EBADMSG},
	    /* an empty header */
	    {"00", -EBADMSG},
	    /* a truncated varint */
	    {"80", -EBADMSG},
	    /* a non-minimal varint */
	    {"8000", -EBADMSG},
	    /* a non-minimal header length */
	    {"9100a265726f6f7473806776657273696f6e01", -EBADMSG},
	    /* a header past BLK_CAR_MAX_HEADER */
	    {"818001", -EBADMSG},
	    /* a CARv2 pragma */
	    {"0aa16776657273696f6e02", -EPROTONOSUPPORT},
	    /* version 1 without roots */
	    {"0aa16776657273696f6e01", -EBADMSG},
	    /* version 2 with roots */
	    {"11a265726f6f7473806776657273696f6e02", -EPROTONOSUPPORT},
	    /* keys out of order */
	    {"11a26776657273696f6e0165726f6f747380", -EBADMSG},
	    /* the version missing */
	    {"10a265726f6f7473806776657273696f6e", -EBADMSG},
	    /* a root that is not a CID */
	    {"11a265726f6f7473816776657273696f6e01", -EBADMSG},
	    /* roots a map */
	    {"11a265726f6f7473a06776657273696f6e01", -EBADMSG},
	    /* a non-canonical version */
	    {"12a265726f6f7473806776657273696f6e1801", -EBADMSG},
	    /* an unknown key */
	    {"14a361780165726f6f7473806776657273696f6e01", -EBADMSG},
	    /* a byte after the header map */
	    {"12a265726f6f7473806776657273696f6e0100", -EBADMSG},
	    /* not a map */
	    {"01f6", -EBADMSG},
	    /* no roots: well-formed */
	    {"11a265726f6f7473806776657273696f6e01", 0},
	};
	struct blk_car_reader r;
	uint8_t buf[2048];
	size_t n;

	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		int ret;

		n = car_of(buf, sizeof(buf), headers[i].hex);
		ret = read_all(buf, n, 64, &r, false);
		if (ret != headers[i].want)
			fprintf(stderr, "header %zu: %d\n", i, ret);
		CHECK(ret == headers[i].want);
	}

	/* 17 roots. */
	n = 0;
	buf[n++] = 0; /* the length, below */
	buf[n++] = 0;
	{
		struct blk_cbor_enc e;
		size_t hl;

		blk_cbor_enc_init(&e, buf + 2, sizeof(buf) - 2);
		blk_cbor_put_map(&e, 2);
		blk_cbor_put_key(&e, "roots");
		blk_cbor_put_array(&e, BLK_CAR_MAX_ROOTS + 1);
		for (int i = 0; i <= BLK_CAR_MAX_ROOTS; i++)
			blk_cbor_put_cid(&e, &blocks[0].cid);
		blk_cbor_put_key(&e, "version");
		blk_cbor_put_uint(&e, 1);
		REQUIRE(blk_cbor_enc_finish(&e, &hl) == 0 && hl < 16384);
		buf[0] = (uint8_t)(0x80 | (hl & 0x7f));
		buf[1] = (uint8_t)(hl >> 7);
		CHECK(read_all(buf, 2 + hl, 64, &r, false) == -EBADMSG);
	}

	/* Sections: empty, too long, a byte of data or CID flipped. */
	memcpy(buf, car, bounds[0]);
	n = bounds[0];
	buf[n] = 0x00;
	CHECK(read_all(buf, n + 1, 64, &r, false) == -EBADMSG);
	n = bounds[0] +
	    blk_varint_put(buf + bounds[0], BLK_CAR_MAX_SECTION + 1);
	CHECK(read_all(buf, n, 64, &r, false) == -EBADMSG);
	/* A length that claims 60 MiB: refused at the end, with a buffer
	 * the size of what came. */
	n = bounds[0] + blk_varint_put(buf + bounds[0], 60u << 20);
	memcpy(buf + n, car + bounds[0] + 1, 100);
	{
		struct source s = source_of(buf, n + 100, SIZE_MAX);
		struct blk_cid cid;
		const uint8_t *data;
		size_t dlen;

		REQUIRE(blk_car_reader_open(&r, source_read, &s) == 0);
		CHECK(blk_car_reader_next(&r, &cid, &data, &dlen) == -EBADMSG);
		CHECK(r.cap <= 128 * 1024);
		blk_car_reader_close(&r);
	}
	/* Every bit flipped in a section is refused, but in a CID's codec:
	 * the digest covers the data only, so another codec is another
	 * valid CID of the same bytes. */
	memcpy(buf, car, len);
	for (size_t at = bounds[0]; at < len; at++) {
		bool codec = false;

		for (int i = 0; i < NBLOCKS; i++) {
			uint64_t v;
			int vl = blk_varint_get(car + bounds[i], 9, &v);

			codec |= at == bounds[i] + (size_t)vl + 1;
		}
		for (int bit = 0; bit < 8; bit++) {
			int ret;

			buf[at] ^= (uint8_t)(1 << bit);
			ret = read_all(buf, len, 64, &r, false);
			buf[at] ^= (uint8_t)(1 << bit);
			if (ret != -EBADMSG && !codec)
				fprintf(stderr, "flip at %zu: %d\n", at, ret);
			CHECK(ret == -EBADMSG || codec);
		}
	}
	/* A CIDv0 section (sha2-256 multihash alone). */
	n = bounds[0];
	buf[n++] = 34 + 1;
	buf[n++] = 0x12;
	buf[n++] = 0x20;
	memcpy(buf + n, blocks[1].cid.digest, 32);
	n += 32;
	buf[n++] = 'x';
	CHECK(read_all(buf, n, 64, &r, false) == -EBADMSG);
}

/* A CAR through a file descriptor, with a block of 1 MiB. */
static ssize_t fd_read(void *arg, void *buf, size_t len)
{
	ssize_t n = read(*(int *)arg, buf, len);

	return n < 0 ? -errno : n;
}

static int fd_write(void *arg, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(*(int *)arg, p, len);

		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void test_file(const char *keep)
{
	char path[] = "/tmp/test-car-XXXXXX";
	int fd =
	    keep ? open(keep, O_RDWR | O_CREAT | O_TRUNC, 0644) : mkstemp(path);
	struct blk_car_writer w;
	struct blk_car_reader r;
	struct block big;
	struct blk_cid cid;
	const uint8_t *data;
	size_t dlen, big_len = 1 << 20;
	uint8_t *p = xmalloc(big_len);
	int n = 0, ret;

	REQUIRE(fd >= 0);
	fill_random(p, big_len, 23);
	set_block(&big, BLK_CODEC_RAW, p, big_len);
	CHECK(blk_car_writer_start(&w, fd_write, &fd, &big.cid, 1) == 0);
	for (int i = 0; i < NBLOCKS; i++)
		CHECK(blk_car_write_block(&w, &blocks[i].cid, blocks[i].data,
					  blocks[i].len) == 0);
	CHECK(blk_car_write_block(&w, &big.cid, big.data, big.len) == 0);
	REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
	REQUIRE(blk_car_reader_open(&r, fd_read, &fd) == 0);
	CHECK(r.nroots == 1 && blk_cid_equal(&r.roots[0], &big.cid));
	while ((ret = blk_car_reader_next(&r, &cid, &data, &dlen)) == 1) {
		const struct block *b = n < NBLOCKS ? &blocks[n] : &big;

		CHECK(blk_cid_equal(&cid, &b->cid) && dlen == b->len &&
		      memcmp(data, b->data, dlen) == 0);
		n++;
	}
	CHECK(ret == 0 && n == NBLOCKS + 1);
	CHECK(r.offset == w.bytes);
	blk_car_reader_close(&r);
	close(fd);
	if (!keep)
		unlink(path);
	free(big.data);
	free(p);
}

/* With an argument, the archive of test_file() is kept at that path (for
 * gen-car-vectors.mjs to read). */
int main(int argc, char **argv)
{
	uint8_t car[1024];
	size_t len;

	make_blocks();
	test_writer(car, &len);
	test_reader(car, len);
	test_truncated(car, len);
	test_malformed(car, len);
	test_file(argc > 1 ? argv[1] : NULL);
	for (int i = 0; i < NBLOCKS; i++)
		free(blocks[i].data);
	printf("car: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
