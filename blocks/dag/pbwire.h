/* Protobuf wire primitives shared by the dag-pb and UnixFS codecs: varints
 * (minimal only) and length-delimited fields, read within bounds. */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* Protobuf wire types and the longest varint (a 64-bit value). */
#define PBW_VARINT 0
#define PBW_FIXED64 1
#define PBW_BYTES 2
#define PBW_FIXED32 5
#define PBW_VARINT_MAX 10

/* The one-byte key of field @num (1..15) with wire type @wt. */
#define PBW_KEY(num, wt) ((uint8_t)(((num) << 3) | (wt)))

static inline size_t pbw_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline size_t pbw_put_varint(uint8_t *buf, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		buf[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	buf[n++] = (uint8_t)v;
	return n;
}

/* Read a varint at *@pos of @buf (@len bytes), advancing *@pos. Only the
 * minimal encoding of a value that fits 64 bits is accepted. Returns 0 or
 * -EBADMSG (truncated, overlong, not minimal). */
static inline int pbw_get_varint(const uint8_t *buf, size_t len, size_t *pos,
				 uint64_t *v)
{
	uint64_t value = 0;
	size_t i, p = *pos;

	for (i = 0; i < PBW_VARINT_MAX && p + i < len; i++) {
		uint8_t b = buf[p + i];

		/* The tenth byte holds bit 63 only. */
		if (i == PBW_VARINT_MAX - 1 && b > 1)
			return -EBADMSG;
		value |= (uint64_t)(b & 0x7f) << (7 * i);
		if (b & 0x80)
			continue;
		if (b == 0 && i > 0)
			return -EBADMSG; /* a zero last byte: not minimal */
		*pos = p + i + 1;
		*v = value;
		return 0;
	}
	return -EBADMSG;
}

/* Read a length-delimited field's length and body at *@pos, advancing *@pos
 * past it; *@out views @buf. Returns 0 or -EBADMSG (length past the end). */
static inline int pbw_get_bytes(const uint8_t *buf, size_t len, size_t *pos,
				const uint8_t **out, size_t *n)
{
	uint64_t l;

	if (pbw_get_varint(buf, len, pos, &l) < 0)
		return -EBADMSG;
	if (l > len - *pos)
		return -EBADMSG;
	*out = buf + *pos;
	*n = (size_t)l;
	*pos += (size_t)l;
	return 0;
}

/* Size of a length-delimited field with a one-byte key and @n bytes. */
static inline size_t pbw_bytes_field_len(size_t n)
{
	return 1 + pbw_varint_len(n) + n;
}
