/* libFuzzer target: the strict DAG-CBOR decoder on any input. What decodes
 * must re-encode to the same bytes, both through blk_cbor_copy and through
 * a walk of the typed accessors. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/cbor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Copy one item from @d to @e with peek and the typed accessors. */
static int walk(struct blk_cbor_dec *d, struct blk_cbor_enc *e)
{
	enum blk_cbor_type t;
	const uint8_t *p;
	const char *s;
	struct blk_cid cid;
	uint64_t v;
	size_t n;
	bool b;

	if (blk_cbor_peek(d, &t) < 0)
		return -1;
	switch (t) {
	case BLK_CBOR_UINT:
		if (blk_cbor_get_uint(d, &v) < 0)
			return -1;
		return blk_cbor_put_uint(e, v);
	case BLK_CBOR_NEGINT:
		if (blk_cbor_get_negint(d, &v) < 0)
			return -1;
		return blk_cbor_put_negint(e, v);
	case BLK_CBOR_BYTES:
		if (blk_cbor_get_bytes(d, &p, &n) < 0)
			return -1;
		return blk_cbor_put_bytes(e, p, n);
	case BLK_CBOR_TEXT:
		if (blk_cbor_get_text(d, &s, &n) < 0)
			return -1;
		return blk_cbor_put_text(e, s, n);
	case BLK_CBOR_CID:
		if (blk_cbor_get_cid(d, &cid) < 0)
			return -1;
		return blk_cbor_put_cid(e, &cid);
	case BLK_CBOR_BOOL:
		if (blk_cbor_get_bool(d, &b) < 0)
			return -1;
		return blk_cbor_put_bool(e, b);
	case BLK_CBOR_NULL:
		if (blk_cbor_get_null(d) < 0)
			return -1;
		return blk_cbor_put_null(e);
	case BLK_CBOR_ARRAY:
		if (blk_cbor_get_array(d, &n) < 0 || blk_cbor_put_array(e, n))
			return -1;
		for (size_t i = 0; i < n; i++)
			if (walk(d, e) < 0)
				return -1;
		return 0;
	case BLK_CBOR_MAP:
		if (blk_cbor_get_map(d, &n) < 0 || blk_cbor_put_map(e, n))
			return -1;
		for (size_t i = 0; i < n; i++) {
			size_t klen;

			if (blk_cbor_get_key(d, &s, &klen) < 0 ||
			    blk_cbor_put_key_len(e, s, klen) < 0 ||
			    walk(d, e) < 0)
				return -1;
		}
		return 0;
	}
	return -1;
}

/* Decode @data whole with blk_cbor_copy (@walk false) or walk(); on
 * success the encoding must equal the input. Returns the decoder's
 * verdict. */
static int check(const uint8_t *data, size_t size, bool by_walk)
{
	struct blk_cbor_dec d;
	struct blk_cbor_enc e;
	size_t len;
	int ret;

	blk_cbor_dec_init(&d, data, size);
	blk_cbor_enc_init(&e, NULL, 0);
	ret = by_walk ? walk(&d, &e) : blk_cbor_copy(&d, &e);
	if (ret == 0)
		ret = blk_cbor_dec_finish(&d);
	if (ret == 0) {
		assert(blk_cbor_enc_finish(&e, &len) == 0);
		assert(len == size && memcmp(e.buf, data, size) == 0);
	}
	blk_cbor_enc_release(&e);
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blk_cbor_dec d;
	int a = check(data, size, false);
	int b = check(data, size, true);

	/* Both readings agree on what is well-formed. */
	assert((a == 0) == (b == 0));
	/* Skipping reads the same way. */
	blk_cbor_dec_init(&d, data, size);
	if (blk_cbor_skip(&d) == 0 && blk_cbor_dec_finish(&d) == 0)
		assert(a == 0);
	else
		assert(a != 0);
	return 0;
}
