/* The UnixFS v1 Data message: encoding exactly as ipfs-unixfs marshals it,
 * and a strict decoder that accepts only that encoding. */

/*
 * Invariants:
 *  1. blk_unixfs_encode writes what ipfs-unixfs's marshal() writes for the
 *     same values (field order 1..8, one-byte keys, blocksizes unpacked,
 *     the omissions listed in unixfs.h), so a node blockfs builds has the
 *     CID the reference importer gives it.
 *  2. blk_unixfs_decode accepts exactly the outputs of blk_unixfs_encode:
 *     what decodes re-encodes to the same bytes.
 *  3. The decoder reads only within [buf, buf + len) and allocates nothing;
 *     blocksizes go to the caller's array, bounded by the caller.
 */
#include "blocks/dag/unixfs.h"

#include <errno.h>
#include <string.h>

#include "blocks/dag/pb.h"
#include "blocks/dag/pbwire.h"

#define F_TYPE 1
#define F_DATA 2
#define F_FILESIZE 3
#define F_BLOCKSIZE 4
#define F_HASHTYPE 5
#define F_FANOUT 6
#define F_MODE 7
#define F_MTIME 8

#define KEY_TIME_SECONDS PBW_KEY(1, PBW_VARINT)
#define KEY_TIME_NANOS PBW_KEY(2, PBW_FIXED32)

#define NSEC_MAX 999999999u

bool blk_unixfs_is_dir(enum blk_unixfs_type type)
{
	return type == BLK_UNIXFS_DIRECTORY || type == BLK_UNIXFS_HAMT_SHARD;
}

static bool has_filesize(enum blk_unixfs_type type)
{
	return type == BLK_UNIXFS_FILE || type == BLK_UNIXFS_RAW;
}

static uint32_t default_mode(enum blk_unixfs_type type)
{
	return blk_unixfs_is_dir(type) ? BLK_UNIXFS_DEFAULT_DIR_MODE
				       : BLK_UNIXFS_DEFAULT_FILE_MODE;
}

static bool writes_mode(const struct blk_unixfs *u)
{
	return u->has_mode && u->mode != default_mode(u->type);
}

/* The UnixTime body's size. */
static size_t mtime_len(const struct blk_unixfs *u)
{
	size_t n = 1 + pbw_varint_len((uint64_t)u->mtime_sec);

	if (u->mtime_nsec)
		n += 1 + 4;
	return n;
}

/* data_len + sum(blocksizes) into *@out; false on overflow. */
static bool file_size(const struct blk_unixfs *u, uint64_t *out)
{
	uint64_t s = u->data_len;

	for (size_t i = 0; i < u->n_blocksizes; i++) {
		if (u->blocksizes[i] > UINT64_MAX - s)
			return false;
		s += u->blocksizes[i];
	}
	*out = s;
	return true;
}

size_t blk_unixfs_encoded_size(const struct blk_unixfs *u)
{
	size_t n = 1 + pbw_varint_len((uint64_t)u->type);
	uint64_t fs;

	if (u->data_len)
		n += pbw_bytes_field_len(u->data_len);
	if (has_filesize(u->type))
		n += 1 + pbw_varint_len(file_size(u, &fs) ? fs : 0);
	for (size_t i = 0; i < u->n_blocksizes; i++)
		n += 1 + pbw_varint_len(u->blocksizes[i]);
	if (u->has_hash_type)
		n += 1 + pbw_varint_len(u->hash_type);
	if (u->has_fanout)
		n += 1 + pbw_varint_len(u->fanout);
	if (writes_mode(u))
		n += 1 + pbw_varint_len(u->mode);
	if (u->has_mtime)
		n += pbw_bytes_field_len(mtime_len(u));
	return n;
}

static size_t put_key_varint(uint8_t *p, int field, uint64_t v)
{
	p[0] = PBW_KEY(field, PBW_VARINT);
	return 1 + pbw_put_varint(p + 1, v);
}

int blk_unixfs_encode(const struct blk_unixfs *u, uint8_t *buf, size_t cap,
		      size_t *len)
{
	size_t need, pos = 0;
	uint64_t fs;

	if ((unsigned)u->type > BLK_UNIXFS_HAMT_SHARD)
		return -EINVAL;
	if (u->has_mtime && u->mtime_nsec > NSEC_MAX)
		return -EINVAL;
	if (!file_size(u, &fs))
		return -EINVAL;
	need = blk_unixfs_encoded_size(u);
	*len = need;
	if (cap < need)
		return -ENOBUFS;

	pos += put_key_varint(buf + pos, F_TYPE, (uint64_t)u->type);
	if (u->data_len) {
		buf[pos++] = PBW_KEY(F_DATA, PBW_BYTES);
		pos += pbw_put_varint(buf + pos, u->data_len);
		memcpy(buf + pos, u->data, u->data_len);
		pos += u->data_len;
	}
	if (has_filesize(u->type))
		pos += put_key_varint(buf + pos, F_FILESIZE, fs);
	for (size_t i = 0; i < u->n_blocksizes; i++)
		pos += put_key_varint(buf + pos, F_BLOCKSIZE, u->blocksizes[i]);
	if (u->has_hash_type)
		pos += put_key_varint(buf + pos, F_HASHTYPE, u->hash_type);
	if (u->has_fanout)
		pos += put_key_varint(buf + pos, F_FANOUT, u->fanout);
	if (writes_mode(u))
		pos += put_key_varint(buf + pos, F_MODE, u->mode);
	if (u->has_mtime) {
		buf[pos++] = PBW_KEY(F_MTIME, PBW_BYTES);
		pos += pbw_put_varint(buf + pos, mtime_len(u));
		pos += put_key_varint(buf + pos, 1, (uint64_t)u->mtime_sec);
		if (u->mtime_nsec) {
			buf[pos++] = KEY_TIME_NANOS;
			buf[pos++] = (uint8_t)u->mtime_nsec;
			buf[pos++] = (uint8_t)(u->mtime_nsec >> 8);
			buf[pos++] = (uint8_t)(u->mtime_nsec >> 16);
			buf[pos++] = (uint8_t)(u->mtime_nsec >> 24);
		}
	}
	return 0;
}

/* Decode the UnixTime body @b of @len bytes into @u. */
static int decode_mtime(const uint8_t *b, size_t len, struct blk_unixfs *u)
{
	size_t pos = 0;
	uint64_t sec;
	uint32_t ns;

	if (pos == len || b[pos++] != KEY_TIME_SECONDS)
		return -EBADMSG;
	if (pbw_get_varint(b, len, &pos, &sec) < 0)
		return -EBADMSG;
	u->has_mtime = true;
	u->mtime_sec = (int64_t)sec;
	u->mtime_nsec = 0;
	if (pos == len)
		return 0;
	if (b[pos++] != KEY_TIME_NANOS || len - pos != 4)
		return -EBADMSG;
	ns = (uint32_t)b[pos] | (uint32_t)b[pos + 1] << 8 |
	     (uint32_t)b[pos + 2] << 16 | (uint32_t)b[pos + 3] << 24;
	/* 0 is written by omission; past a second is no fraction. */
	if (ns == 0 || ns > NSEC_MAX)
		return -EBADMSG;
	u->mtime_nsec = ns;
	return 0;
}

/* The wire type each field must have. */
static int field_wire_type(int field)
{
	return field == F_DATA || field == F_MTIME ? PBW_BYTES : PBW_VARINT;
}

/* Decode the field @field at *@pos (key consumed) into @u. @fs gets the
 * filesize field, @sum the running sum of the blocksizes. */
static int decode_field(const uint8_t *buf, size_t len, size_t *pos, int field,
			struct blk_unixfs *u, uint64_t *bs, size_t max_bs,
			uint64_t *fs, uint64_t *sum)
{
	const uint8_t *b;
	size_t n;
	uint64_t v;

	if (field == F_DATA || field == F_MTIME) {
		if (pbw_get_bytes(buf, len, pos, &b, &n) < 0)
			return -EBADMSG;
		if (field == F_MTIME)
			return decode_mtime(b, n, u);
		if (n == 0)
			return -EBADMSG; /* empty Data is never written */
		u->data = b;
		u->data_len = n;
		return 0;
	}
	if (pbw_get_varint(buf, len, pos, &v) < 0)
		return -EBADMSG;
	switch (field) {
	case F_TYPE:
		if (v > BLK_UNIXFS_HAMT_SHARD)
			return -EBADMSG;
		u->type = (enum blk_unixfs_type)v;
		return 0;
	case F_FILESIZE:
		if (!has_filesize(u->type))
			return -EBADMSG;
		*fs = v;
		return 0;
	case F_BLOCKSIZE:
		if (v > UINT64_MAX - *sum)
			return -EBADMSG;
		*sum += v;
		if (u->n_blocksizes < max_bs)
			bs[u->n_blocksizes] = v;
		u->n_blocksizes++;
		return 0;
	case F_HASHTYPE:
		u->has_hash_type = true;
		u->hash_type = v;
		return 0;
	case F_FANOUT:
		u->has_fanout = true;
		u->fanout = v;
		return 0;
	case F_MODE:
		if (v > UINT32_MAX || v == default_mode(u->type))
			return -EBADMSG;
		u->has_mode = true;
		u->mode = (uint32_t)v;
		return 0;
	}
	return -EBADMSG;
}

int blk_unixfs_decode(const uint8_t *buf, size_t len, struct blk_unixfs *u,
		      uint64_t *blocksizes, size_t max_blocksizes)
{
	struct blk_unixfs t;
	uint64_t fs = 0, sum = 0;
	bool seen_fs = false;
	size_t pos = 0;
	int last = 0;

	if (len > BLK_PB_MAX_BLOCK)
		return -EBADMSG;
	memset(&t, 0, sizeof(t));
	while (pos < len) {
		uint8_t key = buf[pos++];
		int field = key >> 3;

		/* Every known key is one byte: fields 1..8. */
		if ((key & 0x80) || field < F_TYPE || field > F_MTIME)
			return -EBADMSG;
		if ((key & 7) != field_wire_type(field))
			return -EBADMSG;
		/* In order, each once; blocksizes may repeat, together. */
		if (field < last || (field == last && field != F_BLOCKSIZE))
			return -EBADMSG;
		if (last == 0 && field != F_TYPE)
			return -EBADMSG; /* Type is always written */
		if (decode_field(buf, len, &pos, field, &t, blocksizes,
				 max_blocksizes, &fs, &sum) < 0)
			return -EBADMSG;
		seen_fs |= field == F_FILESIZE;
		last = field;
	}
	if (last == 0)
		return -EBADMSG;
	if (has_filesize(t.type)) {
		if (!seen_fs || sum > UINT64_MAX - t.data_len ||
		    fs != sum + t.data_len)
			return -EBADMSG;
		t.filesize = fs;
	}
	t.blocksizes = max_blocksizes ? blocksizes : NULL;
	*u = t;
	return 0;
}
