/* CAR v1: the streaming writer and the strict streaming reader.
 *
 * The reader keeps one read-ahead buffer:
 *  1. Unread bytes lie at buf[start, end); a section is parsed only once
 *     all its bytes are there, and stays valid until the next call.
 *  2. The buffer grows only when it is full of bytes actually read, to at
 *     most twice its size and never past what the section needs: a length
 *     that claims more than arrives costs no more memory than what came. */
#include "blocks/dag/car.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/cbor.h"

#define VARINT_MAX 10	    /* bytes a length varint may take */
#define READ_MIN (64 << 10) /* the smallest read-ahead buffer */
#define CAR_VERSION 1

/* ---- writer ---- */

static int emit(struct blk_car_writer *w, const void *buf, size_t len)
{
	int ret = w->write(w->arg, buf, len);

	if (ret < 0)
		return ret;
	w->bytes += len;
	return 0;
}

int blk_car_writer_start(struct blk_car_writer *w, blk_car_write_fn write,
			 void *arg, const struct blk_cid *roots, size_t nroots)
{
	uint8_t hdr[BLK_CAR_MAX_HEADER], pre[VARINT_MAX];
	struct blk_cbor_enc e;
	size_t len;
	int ret;

	memset(w, 0, sizeof(*w));
	w->write = write;
	w->arg = arg;
	if (nroots > BLK_CAR_MAX_ROOTS)
		return -EINVAL;
	/* {"roots": [...], "version": 1}: "roots" is the shorter key. */
	blk_cbor_enc_init(&e, hdr, sizeof(hdr));
	blk_cbor_put_map(&e, 2);
	blk_cbor_put_key(&e, "roots");
	blk_cbor_put_array(&e, nroots);
	for (size_t i = 0; i < nroots; i++)
		blk_cbor_put_cid(&e, &roots[i]);
	blk_cbor_put_key(&e, "version");
	blk_cbor_put_uint(&e, CAR_VERSION);
	if (blk_cbor_enc_finish(&e, &len) < 0)
		return -EINVAL;
	ret = emit(w, pre, blk_varint_put(pre, len));
	return ret < 0 ? ret : emit(w, hdr, len);
}

int blk_car_write_block(struct blk_car_writer *w, const struct blk_cid *cid,
			const void *data, size_t len)
{
	uint8_t pre[VARINT_MAX + BLK_CID_MAX_BYTES], c[BLK_CID_MAX_BYTES];
	size_t clen, n;
	int ret;

	if (len > BLK_CAR_MAX_BLOCK)
		return -EINVAL;
	clen = blk_cid_to_bytes(cid, c);
	n = blk_varint_put(pre, clen + len);
	memcpy(pre + n, c, clen);
	ret = emit(w, pre, n + clen);
	if (ret == 0 && len > 0)
		ret = emit(w, data, len);
	if (ret == 0)
		w->blocks++;
	return ret;
}

/* ---- reader ---- */

/* Make @n unread bytes available (invariant 2). Returns 0, 1 when the
 * stream ends first, -ENOMEM or the read callback's error. */
static int fill(struct blk_car_reader *r, size_t n)
{
	while (r->end - r->start < n) {
		ssize_t got;

		if (r->eof)
			return 1;
		if (r->start > 0) {
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		}
		if (r->end == r->cap) {
			size_t cap = r->cap ? 2 * r->cap : READ_MIN;
			uint8_t *p;

			if (cap > n && n > READ_MIN)
				cap = n;
			if (cap < READ_MIN)
				cap = READ_MIN;
			p = realloc(r->buf, cap);
			if (!p)
				return -ENOMEM;
			r->buf = p;
			r->cap = cap;
		}
		got = r->read(r->arg, r->buf + r->end, r->cap - r->end);
		if (got < 0)
			return (int)got;
		if (got == 0)
			r->eof = true;
		r->end += (size_t)got;
	}
	return 0;
}

static void consume(struct blk_car_reader *r, size_t n)
{
	r->start += n;
	r->offset += n;
}

/* Read a section length: 0, 1 at a clean end of the stream, or an error. */
static int read_length(struct blk_car_reader *r, uint64_t *v)
{
	int ret = fill(r, 1), n;

	if (ret != 0)
		return ret < 0 ? ret : 1;
	ret = fill(r, VARINT_MAX);
	if (ret < 0)
		return ret;
	n = blk_varint_get(r->buf + r->start, r->end - r->start, v);
	if (n < 0)
		return -EBADMSG;
	consume(r, (size_t)n);
	return 0;
}

/* Parse the header's DAG-CBOR (@len bytes at @p) into @r's roots. */
static int parse_header(struct blk_car_reader *r, const uint8_t *p, size_t len)
{
	struct blk_cbor_dec d;
	uint64_t version = 0;
	size_t n = 0;

	blk_cbor_dec_init(&d, p, len);
	if (blk_cbor_get_map(&d, &n) < 0 || (n != 1 && n != 2))
		return -EBADMSG;
	if (n == 2) {
		blk_cbor_expect_key(&d, "roots");
		if (blk_cbor_get_array(&d, &r->nroots) < 0 ||
		    r->nroots > BLK_CAR_MAX_ROOTS)
			return -EBADMSG;
		for (size_t i = 0; i < r->nroots; i++)
			blk_cbor_get_cid(&d, &r->roots[i]);
	}
	blk_cbor_expect_key(&d, "version");
	blk_cbor_get_uint(&d, &version);
	if (blk_cbor_dec_finish(&d) < 0)
		return -EBADMSG;
	/* A CARv2 pragma is {"version": 2}, without roots. */
	if (version != CAR_VERSION)
		return -EPROTONOSUPPORT;
	return n == 2 ? 0 : -EBADMSG;
}

int blk_car_reader_open(struct blk_car_reader *r, blk_car_read_fn read,
			void *arg)
{
	uint64_t len;
	int ret;

	memset(r, 0, sizeof(*r));
	r->read = read;
	r->arg = arg;
	ret = read_length(r, &len);
	if (ret == 0 && (len == 0 || len > BLK_CAR_MAX_HEADER))
		ret = -EBADMSG;
	if (ret == 0)
		ret = fill(r, (size_t)len);
	if (ret == 0) {
		ret = parse_header(r, r->buf + r->start, (size_t)len);
		consume(r, (size_t)len);
	}
	if (ret != 0) {
		blk_car_reader_close(r);
		return ret < 0 ? ret : -EBADMSG;
	}
	return 0;
}

/* The length of the binary CID at the start of @p (@len bytes), or 0. */
static size_t cid_length(const uint8_t *p, size_t len)
{
	size_t pos = 0;
	uint64_t v = 0;

	/* version, codec, multihash code, digest length; then the digest. */
	for (int i = 0; i < 4; i++) {
		int n = blk_varint_get(p + pos, len - pos, &v);

		if (n < 0)
			return 0;
		pos += (size_t)n;
	}
	return v <= len - pos ? pos + (size_t)v : 0;
}

int blk_car_reader_next(struct blk_car_reader *r, struct blk_cid *cid,
			const uint8_t **data, size_t *len)
{
	const uint8_t *p;
	uint64_t n;
	size_t clen;
	int ret = read_length(r, &n);

	if (ret != 0)
		return ret < 0 ? ret : 0;
	if (n == 0 || n > BLK_CAR_MAX_SECTION)
		return -EBADMSG;
	ret = fill(r, (size_t)n);
	if (ret != 0)
		return ret < 0 ? ret : -EBADMSG;
	p = r->buf + r->start;
	clen = cid_length(p, (size_t)n);
	if (clen == 0 || blk_cid_from_bytes(cid, p, clen) < 0 ||
	    !blk_cid_verify(cid, p + clen, (size_t)n - clen))
		return -EBADMSG;
	consume(r, (size_t)n);
	*data = p + clen;
	*len = (size_t)n - clen;
	return 1;
}

void blk_car_reader_close(struct blk_car_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = r->start = r->end = 0;
}
