/* Deterministic DAG-CBOR: the encoder on libcbor's low-level writers and
 * the strict cursor decoder (rules 1-7 in cbor.h).
 *
 * The decoder is a hand-written cursor rather than libcbor's
 * cbor_stream_decode: callers pull typed items (a schema reads "a map of
 * n, key "fs", bytes(16) ..."), which a push parser would turn into a
 * state machine per schema, and every strictness rule needs the raw
 * initial byte and argument anyway (libcbor's stream decoder accepts
 * indefinite lengths, floats, undefined and any tag).
 *
 * Both sides keep a stack of open arrays and maps (struct blk_cbor_level):
 *  1. An item at the top of an open container decrements its @left; an
 *     array or map with items pushes a level; levels with nothing left pop.
 *  2. In a map, @left even means a key comes next.
 *  3. @key_len is SIZE_MAX before a map's first key; a later key must be
 *     longer, or as long and bytewise greater. */
#include "blocks/dag/cbor.h"

#include <assert.h>
#include <cbor/encoding.h> /* not <cbor.h>: this folder has its own */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CID_TAG 42
#define HEAD_MAX 9 /* initial byte + 8-byte argument */

/* ---- shared ---- */

/* RFC 3629 UTF-8: no overlong forms, no surrogates, nothing past 10FFFF. */
static bool utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		size_t n;
		uint8_t lo = 0x80, hi = 0xbf;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t k = 2; k <= n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		i += n + 1;
	}
	return true;
}

/* True if key @b (@blen) may follow key @a (@alen) in a map. */
static bool key_after(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen == SIZE_MAX)
		return true;
	if (blen != alen)
		return blen > alen;
	return memcmp(a, b, alen) < 0;
}

static bool at_key(const struct blk_cbor_level *lv, unsigned depth)
{
	return depth > 0 && lv[depth - 1].map && lv[depth - 1].left % 2 == 0;
}

/* ---- encoder ---- */

void blk_cbor_enc_init(struct blk_cbor_enc *e, uint8_t *buf, size_t cap)
{
	memset(e, 0, offsetof(struct blk_cbor_enc, lv));
	e->buf = buf;
	e->cap = buf ? cap : 0;
	e->owned = !buf;
}

void blk_cbor_enc_reset(struct blk_cbor_enc *e)
{
	e->len = 0;
	e->err = 0;
	e->done = false;
	e->depth = 0;
}

void blk_cbor_enc_release(struct blk_cbor_enc *e)
{
	if (e->owned)
		free(e->buf);
	e->buf = NULL;
	e->len = e->cap = 0;
}

static int enc_fail(struct blk_cbor_enc *e, int err)
{
	if (!e->err)
		e->err = err;
	return e->err;
}

/* Misuse by the caller: a bug, so assert in debug builds. */
static int enc_misuse(struct blk_cbor_enc *e)
{
	assert(!"DAG-CBOR encoder misuse");
	return enc_fail(e, -EINVAL);
}

/* Make room for @n more bytes: 0, -ENOBUFS (fixed) or -ENOMEM. */
static int enc_room(struct blk_cbor_enc *e, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (e->cap - e->len >= n)
		return 0;
	if (!e->owned)
		return enc_fail(e, -ENOBUFS);
	if (n > SIZE_MAX / 2 - e->len)
		return enc_fail(e, -ENOMEM);
	cap = e->cap ? e->cap : 256;
	while (cap - e->len < n)
		cap *= 2;
	p = realloc(e->buf, cap);
	if (!p)
		return enc_fail(e, -ENOMEM);
	e->buf = p;
	e->cap = cap;
	return 0;
}

/* Account for one item about to be written (rule 1): a key where a key is
 * due and only there. */
static int enc_item(struct blk_cbor_enc *e, bool is_key)
{
	if (e->err)
		return e->err;
	if (e->depth == 0 && e->done)
		return enc_misuse(e);
	if (at_key(e->lv, e->depth) != is_key)
		return enc_misuse(e);
	if (e->depth == 0)
		e->done = true;
	else
		e->lv[e->depth - 1].left--;
	return 0;
}

/* Pop every level with nothing left (rule 1). */
static void enc_pop(struct blk_cbor_enc *e)
{
	while (e->depth > 0 && e->lv[e->depth - 1].left == 0)
		e->depth--;
}

/* Write an initial byte and argument with libcbor writer @fn. */
static int enc_head(struct blk_cbor_enc *e,
		    size_t (*fn)(uint64_t, unsigned char *, size_t), uint64_t v)
{
	size_t n;

	if (e->owned && enc_room(e, HEAD_MAX) < 0)
		return e->err;
	n = fn(v, e->buf + e->len, e->cap - e->len);
	if (n == 0)
		return enc_fail(e, -ENOBUFS);
	e->len += n;
	return 0;
}

/* libcbor's writers take size_t lengths; adapt them to uint64_t. */
static size_t w_bytes(uint64_t v, unsigned char *b, size_t n)
{
	return cbor_encode_bytestring_start((size_t)v, b, n);
}

static size_t w_text(uint64_t v, unsigned char *b, size_t n)
{
	return cbor_encode_string_start((size_t)v, b, n);
}

static size_t w_array(uint64_t v, unsigned char *b, size_t n)
{
	return cbor_encode_array_start((size_t)v, b, n);
}

static size_t w_map(uint64_t v, unsigned char *b, size_t n)
{
	return cbor_encode_map_start((size_t)v, b, n);
}

static int enc_raw(struct blk_cbor_enc *e, const void *p, size_t len)
{
	if (enc_room(e, len) < 0)
		return e->err;
	if (len)
		memcpy(e->buf + e->len, p, len);
	e->len += len;
	return 0;
}

static int enc_scalar(struct blk_cbor_enc *e,
		      size_t (*fn)(uint64_t, unsigned char *, size_t),
		      uint64_t v)
{
	if (enc_item(e, false) < 0)
		return e->err;
	enc_head(e, fn, v);
	enc_pop(e);
	return e->err;
}

int blk_cbor_enc_finish(struct blk_cbor_enc *e, size_t *len)
{
	*len = 0;
	if (e->err)
		return e->err;
	if (!e->done || e->depth > 0)
		return enc_misuse(e);
	*len = e->len;
	return 0;
}

int blk_cbor_put_uint(struct blk_cbor_enc *e, uint64_t v)
{
	return enc_scalar(e, cbor_encode_uint, v);
}

int blk_cbor_put_negint(struct blk_cbor_enc *e, uint64_t n)
{
	return enc_scalar(e, cbor_encode_negint, n);
}

int blk_cbor_put_int(struct blk_cbor_enc *e, int64_t v)
{
	if (v >= 0)
		return blk_cbor_put_uint(e, (uint64_t)v);
	return blk_cbor_put_negint(e, (uint64_t)(-(v + 1)));
}

static int enc_string(struct blk_cbor_enc *e,
		      size_t (*fn)(uint64_t, unsigned char *, size_t),
		      const void *p, size_t len, bool is_key)
{
	if (enc_item(e, is_key) < 0)
		return e->err;
	if (enc_head(e, fn, len) == 0)
		enc_raw(e, p, len);
	enc_pop(e);
	return e->err;
}

int blk_cbor_put_bytes(struct blk_cbor_enc *e, const void *p, size_t len)
{
	return enc_string(e, w_bytes, p, len, false);
}

int blk_cbor_put_text(struct blk_cbor_enc *e, const char *p, size_t len)
{
	assert(utf8_valid((const uint8_t *)p, len));
	return enc_string(e, w_text, p, len, false);
}

int blk_cbor_put_key_len(struct blk_cbor_enc *e, const char *key, size_t len)
{
	struct blk_cbor_level *lv;
	size_t off;

	assert(utf8_valid((const uint8_t *)key, len));
	if (e->err)
		return e->err;
	if (!at_key(e->lv, e->depth))
		return enc_misuse(e);
	lv = &e->lv[e->depth - 1];
	if (!key_after(e->buf + lv->key_off, lv->key_len, key, len))
		return enc_misuse(e);
	if (enc_string(e, w_text, key, len, true) < 0)
		return e->err;
	/* The map stays open: a value follows its key. */
	off = e->len - len;
	lv->key_off = off;
	lv->key_len = len;
	return 0;
}

int blk_cbor_put_key(struct blk_cbor_enc *e, const char *key)
{
	return blk_cbor_put_key_len(e, key, strlen(key));
}

int blk_cbor_put_cid(struct blk_cbor_enc *e, const struct blk_cid *cid)
{
	uint8_t b[1 + BLK_CID_MAX_BYTES];
	size_t n;

	if (enc_item(e, false) < 0)
		return e->err;
	b[0] = 0x00; /* the multibase identity prefix (rule 3) */
	n = 1 + blk_cid_to_bytes(cid, b + 1);
	if (enc_head(e, cbor_encode_tag, CID_TAG) == 0 &&
	    enc_head(e, w_bytes, n) == 0)
		enc_raw(e, b, n);
	enc_pop(e);
	return e->err;
}

static size_t w_null(uint64_t v, unsigned char *b, size_t n)
{
	return cbor_encode_null(b, n);
}

static size_t w_bool(uint64_t v, unsigned char *b, size_t n)
{
	return cbor_encode_bool(v != 0, b, n);
}

int blk_cbor_put_null(struct blk_cbor_enc *e)
{
	return enc_scalar(e, w_null, 0);
}

int blk_cbor_put_bool(struct blk_cbor_enc *e, bool v)
{
	return enc_scalar(e, w_bool, v);
}

static int enc_container(struct blk_cbor_enc *e, size_t n, bool map)
{
	struct blk_cbor_level *lv;

	if (enc_item(e, false) < 0)
		return e->err;
	if (map && n > SIZE_MAX / 2)
		return enc_misuse(e);
	if (enc_head(e, map ? w_map : w_array, n) < 0)
		return e->err;
	if (n == 0) {
		enc_pop(e);
		return 0;
	}
	if (e->depth == BLK_CBOR_MAX_DEPTH)
		return enc_misuse(e);
	lv = &e->lv[e->depth++];
	lv->left = map ? 2 * (uint64_t)n : n;
	lv->map = map;
	lv->key_off = 0;
	lv->key = NULL;
	lv->key_len = SIZE_MAX;
	return 0;
}

int blk_cbor_put_array(struct blk_cbor_enc *e, size_t n)
{
	return enc_container(e, n, false);
}

int blk_cbor_put_map(struct blk_cbor_enc *e, size_t n)
{
	return enc_container(e, n, true);
}

/* ---- decoder ---- */

/* One item's head as read (a tag 42 item is read with its byte string). */
struct item {
	enum blk_cbor_type type;
	uint64_t arg;	    /* value, length or count */
	const uint8_t *ptr; /* bytes or text */
	struct blk_cid cid;
};

void blk_cbor_dec_init(struct blk_cbor_dec *d, const void *buf, size_t len)
{
	memset(d, 0, offsetof(struct blk_cbor_dec, lv));
	d->p = buf;
	d->end = d->p + len;
}

static int dec_fail(struct blk_cbor_dec *d)
{
	if (!d->err)
		d->err = -EBADMSG;
	return d->err;
}

/* Read an initial byte and its argument at @p (shortest form, definite:
 * rule 1); *@major and *@arg are set and the bytes used returned, or 0. */
static size_t read_head(const uint8_t *p, const uint8_t *end, unsigned *major,
			uint64_t *arg)
{
	static const uint64_t min[4] = {24, 0x100, 0x10000, 0x100000000};
	unsigned info, n;
	uint64_t v = 0;

	if (p == end)
		return 0;
	*major = p[0] >> 5;
	info = p[0] & 0x1f;
	if (info < 24) {
		*arg = info;
		return 1;
	}
	if (info > 27)
		return 0; /* reserved, or indefinite length / break */
	n = 1u << (info - 24);
	if ((size_t)(end - p - 1) < n)
		return 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[1 + i];
	if (v < min[info - 24])
		return 0;
	*arg = v;
	return 1 + n;
}

/* Parse a tag 42 body at d->p (after the tag): bytes 0x00 || CID. */
static int read_cid(struct blk_cbor_dec *d, struct item *it)
{
	unsigned major;
	uint64_t len;
	size_t h = read_head(d->p, d->end, &major, &len);

	if (!h || major != 2 || len < 1 || len > (uint64_t)(d->end - d->p - h))
		return dec_fail(d);
	if (d->p[h] != 0x00 ||
	    blk_cid_from_bytes(&it->cid, d->p + h + 1, (size_t)len - 1) < 0)
		return dec_fail(d);
	d->p += h + len;
	return 0;
}

/* Read the next item's head, or a whole scalar (strings, CIDs), checking
 * rules 1-6; *@it describes it. Does not touch the level stack. */
static int read_item(struct blk_cbor_dec *d, struct item *it)
{
	unsigned major;
	uint64_t arg, rest;
	size_t h = read_head(d->p, d->end, &major, &arg);

	if (!h)
		return dec_fail(d);
	d->p += h;
	rest = (uint64_t)(d->end - d->p);
	it->arg = arg;
	switch (major) {
	case 0:
		it->type = BLK_CBOR_UINT;
		return 0;
	case 1:
		it->type = BLK_CBOR_NEGINT;
		return 0;
	case 2:
	case 3:
		if (arg > rest)
			return dec_fail(d);
		it->type = major == 2 ? BLK_CBOR_BYTES : BLK_CBOR_TEXT;
		it->ptr = d->p;
		d->p += arg;
		if (major == 3 && !utf8_valid(it->ptr, (size_t)arg))
			return dec_fail(d);
		return 0;
	case 4:
		/* Each item takes at least one byte. */
		if (arg > rest)
			return dec_fail(d);
		it->type = BLK_CBOR_ARRAY;
		return 0;
	case 5:
		if (arg > rest / 2)
			return dec_fail(d);
		it->type = BLK_CBOR_MAP;
		return 0;
	case 6:
		if (arg != CID_TAG)
			return dec_fail(d);
		it->type = BLK_CBOR_CID;
		return read_cid(d, it);
	default:
		/* Major 7: false (20), true (21), null (22) only (rule 4). */
		if (h != 1 || arg < 20 || arg > 22)
			return dec_fail(d);
		it->type = arg == 22 ? BLK_CBOR_NULL : BLK_CBOR_BOOL;
		it->arg = arg == 21;
		return 0;
	}
}

/* Consume the next item, which must be of type @want (0: any), as a key
 * when @is_key; push or pop levels (rule 1) and check keys (rules 2, 3). */
static int dec_next(struct blk_cbor_dec *d, struct item *it,
		    enum blk_cbor_type want, bool is_key)
{
	struct blk_cbor_level *lv = d->depth ? &d->lv[d->depth - 1] : NULL;
	bool key = at_key(d->lv, d->depth);

	if (d->err)
		return d->err;
	if ((d->depth == 0 && d->done) || key != is_key)
		return dec_fail(d);
	if (read_item(d, it) < 0)
		return d->err;
	if (want && it->type != want)
		return dec_fail(d);
	if (key) {
		if (it->type != BLK_CBOR_TEXT ||
		    !key_after(lv->key, lv->key_len, it->ptr, (size_t)it->arg))
			return dec_fail(d);
		lv->key = it->ptr;
		lv->key_len = (size_t)it->arg;
	}
	if (lv)
		lv->left--;
	else
		d->done = true;
	if ((it->type == BLK_CBOR_ARRAY || it->type == BLK_CBOR_MAP) &&
	    it->arg > 0) {
		if (d->depth == BLK_CBOR_MAX_DEPTH)
			return dec_fail(d);
		lv = &d->lv[d->depth++];
		lv->map = it->type == BLK_CBOR_MAP;
		lv->left = lv->map ? 2 * it->arg : it->arg;
		lv->key = NULL;
		lv->key_len = SIZE_MAX;
	}
	while (d->depth > 0 && d->lv[d->depth - 1].left == 0)
		d->depth--;
	return 0;
}

int blk_cbor_dec_finish(struct blk_cbor_dec *d)
{
	if (d->err)
		return d->err;
	if (!d->done || d->depth > 0 || d->p != d->end)
		return dec_fail(d);
	return 0;
}

int blk_cbor_peek(struct blk_cbor_dec *d, enum blk_cbor_type *type)
{
	struct blk_cbor_dec copy;
	struct item it;

	if (d->err)
		return d->err;
	/* The level stack is not touched by read_item: copy the cursor. */
	copy.p = d->p;
	copy.end = d->end;
	copy.err = 0;
	if (read_item(&copy, &it) < 0)
		return dec_fail(d);
	*type = it.type;
	return 0;
}

int blk_cbor_get_uint(struct blk_cbor_dec *d, uint64_t *v)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_UINT, false) < 0)
		return d->err;
	*v = it.arg;
	return 0;
}

int blk_cbor_get_negint(struct blk_cbor_dec *d, uint64_t *n)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_NEGINT, false) < 0)
		return d->err;
	*n = it.arg;
	return 0;
}

int blk_cbor_get_int(struct blk_cbor_dec *d, int64_t *v)
{
	struct item it;

	if (dec_next(d, &it, 0, false) < 0)
		return d->err;
	if ((it.type != BLK_CBOR_UINT && it.type != BLK_CBOR_NEGINT) ||
	    it.arg > INT64_MAX)
		return dec_fail(d);
	*v = it.type == BLK_CBOR_UINT ? (int64_t)it.arg : -1 - (int64_t)it.arg;
	return 0;
}

int blk_cbor_get_bytes(struct blk_cbor_dec *d, const uint8_t **p, size_t *len)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_BYTES, false) < 0)
		return d->err;
	*p = it.ptr;
	*len = (size_t)it.arg;
	return 0;
}

int blk_cbor_get_text(struct blk_cbor_dec *d, const char **p, size_t *len)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_TEXT, false) < 0)
		return d->err;
	*p = (const char *)it.ptr;
	*len = (size_t)it.arg;
	return 0;
}

int blk_cbor_get_cid(struct blk_cbor_dec *d, struct blk_cid *cid)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_CID, false) < 0)
		return d->err;
	*cid = it.cid;
	return 0;
}

int blk_cbor_get_null(struct blk_cbor_dec *d)
{
	struct item it;

	return dec_next(d, &it, BLK_CBOR_NULL, false);
}

int blk_cbor_get_bool(struct blk_cbor_dec *d, bool *v)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_BOOL, false) < 0)
		return d->err;
	*v = it.arg != 0;
	return 0;
}

int blk_cbor_get_array(struct blk_cbor_dec *d, size_t *n)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_ARRAY, false) < 0)
		return d->err;
	*n = (size_t)it.arg;
	return 0;
}

int blk_cbor_get_map(struct blk_cbor_dec *d, size_t *n)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_MAP, false) < 0)
		return d->err;
	*n = (size_t)it.arg;
	return 0;
}

int blk_cbor_get_key(struct blk_cbor_dec *d, const char **key, size_t *len)
{
	struct item it;

	if (dec_next(d, &it, BLK_CBOR_TEXT, true) < 0)
		return d->err;
	*key = (const char *)it.ptr;
	*len = (size_t)it.arg;
	return 0;
}

int blk_cbor_expect_key(struct blk_cbor_dec *d, const char *key)
{
	const char *k;
	size_t len;

	if (blk_cbor_get_key(d, &k, &len) < 0)
		return d->err;
	if (len != strlen(key) || memcmp(k, key, len) != 0)
		return dec_fail(d);
	return 0;
}

int blk_cbor_fail(struct blk_cbor_dec *d)
{
	return dec_fail(d);
}

int blk_cbor_skip(struct blk_cbor_dec *d)
{
	unsigned depth = d->depth;
	struct item it;

	/* The item itself, then everything until its levels are popped. */
	if (dec_next(d, &it, 0, false) < 0)
		return d->err;
	while (d->depth > depth)
		if (dec_next(d, &it, 0, at_key(d->lv, d->depth)) < 0)
			return d->err;
	return 0;
}

/* Write item @it, as read by dec_next, to @e. */
static int copy_item(struct blk_cbor_enc *e, const struct item *it, bool key)
{
	switch (it->type) {
	case BLK_CBOR_UINT:
		return blk_cbor_put_uint(e, it->arg);
	case BLK_CBOR_NEGINT:
		return blk_cbor_put_negint(e, it->arg);
	case BLK_CBOR_BYTES:
		return blk_cbor_put_bytes(e, it->ptr, (size_t)it->arg);
	case BLK_CBOR_TEXT:
		if (key)
			return blk_cbor_put_key_len(e, (const char *)it->ptr,
						    (size_t)it->arg);
		return blk_cbor_put_text(e, (const char *)it->ptr,
					 (size_t)it->arg);
	case BLK_CBOR_ARRAY:
		return blk_cbor_put_array(e, (size_t)it->arg);
	case BLK_CBOR_MAP:
		return blk_cbor_put_map(e, (size_t)it->arg);
	case BLK_CBOR_CID:
		return blk_cbor_put_cid(e, &it->cid);
	case BLK_CBOR_BOOL:
		return blk_cbor_put_bool(e, it->arg != 0);
	case BLK_CBOR_NULL:
		return blk_cbor_put_null(e);
	}
	return -EINVAL;
}

int blk_cbor_copy(struct blk_cbor_dec *d, struct blk_cbor_enc *e)
{
	unsigned depth = d->depth;
	struct item it;
	bool key = false;
	int ret;

	/* The item itself, then everything until its levels are popped. */
	do {
		if (dec_next(d, &it, 0, key) < 0)
			return d->err;
		ret = copy_item(e, &it, key);
		if (ret < 0)
			return ret;
		key = at_key(d->lv, d->depth);
	} while (d->depth > depth);
	return 0;
}
