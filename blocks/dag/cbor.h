/* Deterministic DAG-CBOR: an encoder over libcbor's low-level writers and a
 * strict pull decoder with typed accessors, both without a DOM.
 *
 * What DAG-CBOR (https://ipld.io/specs/codecs/dag-cbor/spec/) allows, and so
 * what the encoder writes and the decoder accepts:
 *  1. Integers (major 0 and 1) and every length or count in the shortest
 *     form; lengths and counts definite (no indefinite items, no breaks).
 *  2. Map keys are text strings, unique, in the order length-first then
 *     bytewise (the order of their encodings).
 *  3. The only tag is 42 (a CID): a byte string 0x00 || binary CID; the
 *     decoder accepts only CIDs blk_cid_from_bytes() parses.
 *  4. Simple values only false, true and null: no undefined, no other
 *     simple values, and no floats at all (blockfs writes none).
 *  5. Text strings are valid UTF-8 (RFC 3629: no overlong forms, no
 *     surrogates).
 *  6. Nesting is at most BLK_CBOR_MAX_DEPTH open arrays and maps.
 *  7. One top-level item; a buffer holds exactly that item.
 * Bytes that decode are therefore the one encoding of what they mean: the
 * encoder writing what the decoder read gives the same bytes back.
 *
 * Errors are sticky: after the first, every call returns it again and does
 * nothing, so a caller may check once at the end (blk_cbor_enc_finish,
 * blk_cbor_dec_finish) or after each call. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"

#define BLK_CBOR_MAX_DEPTH 32

/* One open array or map (private to cbor.c). */
struct blk_cbor_level {
	uint64_t left;	 /* items still to come; a map counts keys too */
	bool map;	 /* keys at even @left */
	size_t key_off;	 /* the last key: offset (encoder) ... */
	const void *key; /* ... or pointer (decoder) to its bytes */
	size_t key_len;	 /* its length; SIZE_MAX before the first key */
};

/* The encoder. A fixed buffer (blk_cbor_enc_init with a buffer) fails with
 * -ENOBUFS when full; a growable one (NULL, 0) reallocates and fails with
 * -ENOMEM; misuse (a key out of order, a count not matched, too deep, two
 * top-level items) fails with -EINVAL after an assert in debug builds. */
struct blk_cbor_enc {
	uint8_t *buf;
	size_t len, cap;
	bool owned; /* buf is ours (growable) */
	int err;
	bool done; /* the top-level item is complete */
	unsigned depth;
	struct blk_cbor_level lv[BLK_CBOR_MAX_DEPTH];
};

/* Write into @buf (@cap bytes), or into a growable buffer when @buf is NULL
 * (then blk_cbor_enc_release frees it). */
void blk_cbor_enc_init(struct blk_cbor_enc *e, uint8_t *buf, size_t cap);
/* Start over on the same buffer. */
void blk_cbor_enc_reset(struct blk_cbor_enc *e);
/* Free a growable buffer (a no-op for a fixed one). */
void blk_cbor_enc_release(struct blk_cbor_enc *e);

/* Check that exactly one complete item was written; its length in *@len
 * (the bytes are e->buf). Returns 0 or the sticky error. */
int blk_cbor_enc_finish(struct blk_cbor_enc *e, size_t *len);

/* Each writes one item and returns 0 or the sticky error. */
int blk_cbor_put_uint(struct blk_cbor_enc *e, uint64_t v);
/* The negative integer -1 - @n (CBOR major type 1). */
int blk_cbor_put_negint(struct blk_cbor_enc *e, uint64_t n);
int blk_cbor_put_int(struct blk_cbor_enc *e, int64_t v);
int blk_cbor_put_bytes(struct blk_cbor_enc *e, const void *p, size_t len);
/* @p must be valid UTF-8 (checked by an assert in debug builds only). */
int blk_cbor_put_text(struct blk_cbor_enc *e, const char *p, size_t len);
int blk_cbor_put_cid(struct blk_cbor_enc *e, const struct blk_cid *cid);
int blk_cbor_put_null(struct blk_cbor_enc *e);
int blk_cbor_put_bool(struct blk_cbor_enc *e, bool v);
/* Open an array of @n items or a map of @n entries; the next @n items (2 *
 * @n for a map: key, value, key, value ...) fill it. */
int blk_cbor_put_array(struct blk_cbor_enc *e, size_t n);
int blk_cbor_put_map(struct blk_cbor_enc *e, size_t n);
/* A map key: the caller gives keys in DAG-CBOR order (length-first, then
 * bytewise); a key out of order or repeated is -EINVAL. */
int blk_cbor_put_key_len(struct blk_cbor_enc *e, const char *key, size_t len);
int blk_cbor_put_key(struct blk_cbor_enc *e, const char *key);

/* What the next item is. */
enum blk_cbor_type {
	BLK_CBOR_UINT = 1,
	BLK_CBOR_NEGINT, /* -1 - n */
	BLK_CBOR_BYTES,
	BLK_CBOR_TEXT,
	BLK_CBOR_ARRAY,
	BLK_CBOR_MAP,
	BLK_CBOR_CID,
	BLK_CBOR_BOOL,
	BLK_CBOR_NULL,
};

/* The decoder: a cursor over one buffer. Every failure is -EBADMSG:
 * malformed or non-canonical bytes, or an item of another type than the
 * accessor called (a schema mismatch reads as malformed input). */
struct blk_cbor_dec {
	const uint8_t *p, *end;
	int err;
	bool done;
	unsigned depth;
	struct blk_cbor_level lv[BLK_CBOR_MAX_DEPTH];
};

void blk_cbor_dec_init(struct blk_cbor_dec *d, const void *buf, size_t len);
/* 0 when one complete top-level item used every byte, else -EBADMSG (or
 * the sticky error). */
int blk_cbor_dec_finish(struct blk_cbor_dec *d);

/* The type of the next item, without consuming it. 0 or -EBADMSG. */
int blk_cbor_peek(struct blk_cbor_dec *d, enum blk_cbor_type *type);

/* Each consumes one item of its type; 0 or -EBADMSG. Byte and text strings
 * point into the buffer (text is not NUL-terminated). */
int blk_cbor_get_uint(struct blk_cbor_dec *d, uint64_t *v);
int blk_cbor_get_negint(struct blk_cbor_dec *d, uint64_t *n);
/* A major 0 or 1 integer that fits int64_t. */
int blk_cbor_get_int(struct blk_cbor_dec *d, int64_t *v);
int blk_cbor_get_bytes(struct blk_cbor_dec *d, const uint8_t **p, size_t *len);
int blk_cbor_get_text(struct blk_cbor_dec *d, const char **p, size_t *len);
int blk_cbor_get_cid(struct blk_cbor_dec *d, struct blk_cid *cid);
int blk_cbor_get_null(struct blk_cbor_dec *d);
int blk_cbor_get_bool(struct blk_cbor_dec *d, bool *v);
/* Open an array or map; its @n items (keys and values for a map) follow.
 * @n is at most the bytes remaining. */
int blk_cbor_get_array(struct blk_cbor_dec *d, size_t *n);
int blk_cbor_get_map(struct blk_cbor_dec *d, size_t *n);
/* The next map key (order and uniqueness checked). */
int blk_cbor_get_key(struct blk_cbor_dec *d, const char **key, size_t *len);
/* The next map key, which must be @key. */
int blk_cbor_expect_key(struct blk_cbor_dec *d, const char *key);
/* Mark the input malformed (a check of the caller's schema failed), so that
 * the error sticks as the decoder's own. Returns -EBADMSG. */
int blk_cbor_fail(struct blk_cbor_dec *d);
/* Consume the next item whole (an array or map with everything in it),
 * checking it as strictly as the accessors do. */
int blk_cbor_skip(struct blk_cbor_dec *d);

/* Transcode the next item whole from @d to @e (keys included). As both
 * sides are canonical, the bytes written equal the bytes read. Returns 0,
 * the decoder's -EBADMSG or the encoder's error. */
int blk_cbor_copy(struct blk_cbor_dec *d, struct blk_cbor_enc *e);
