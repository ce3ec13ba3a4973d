/* The UnixFS v1 Data message (carried in a dag-pb node's Data): encoding
 * exactly as ipfs-unixfs (npm) marshals it, and a strict decoder. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum blk_unixfs_type {
	BLK_UNIXFS_RAW = 0,
	BLK_UNIXFS_DIRECTORY = 1,
	BLK_UNIXFS_FILE = 2,
	BLK_UNIXFS_METADATA = 3,
	BLK_UNIXFS_SYMLINK = 4,
	BLK_UNIXFS_HAMT_SHARD = 5,
};

/* The modes ipfs-unixfs omits: a mode equal to its type's default is not
 * written (directories and HAMT shards 0755, every other type 0644). */
#define BLK_UNIXFS_DEFAULT_FILE_MODE 0644u
#define BLK_UNIXFS_DEFAULT_DIR_MODE 0755u

/* The hash a HAMT shard names in hashType: murmur3-x64-64. */
#define BLK_UNIXFS_HASH_MURMUR3 0x22u

/* A decoded message never has more blocksizes than this (each takes at
 * least 2 bytes of a dag-pb block). */
#define BLK_UNIXFS_MAX_BLOCKSIZES (1u << 19)

/*
 * One UnixFS Data message. Written, in field order:
 *   1 Type       always
 *   2 Data       when data_len > 0 (empty data is never written)
 *   3 filesize   for FILE and RAW only, always (even 0): the encoder
 *                computes it as data_len + sum(blocksizes), as
 *                ipfs-unixfs does; the decoder requires exactly that
 *   4 blocksizes one varint field each (not packed), in order
 *   5 hashType   when has_hash_type
 *   6 fanout     when has_fanout
 *   7 mode       when has_mode and mode is not the type's default
 *   8 mtime      when has_mtime: UnixTime { 1 seconds (int64, always),
 *                2 nanoseconds (fixed32, only when not 0) }
 * mode is the full uint32 (UnixFS 1.5 keeps permission bits in the low 12
 * bits; higher bits are carried as they are). mtime_nsec is 0..999999999.
 */
struct blk_unixfs {
	enum blk_unixfs_type type;
	const uint8_t *data;
	size_t data_len;
	uint64_t filesize; /* decode: the field (FILE/RAW), else 0 */
	const uint64_t *blocksizes;
	size_t n_blocksizes;
	bool has_hash_type;
	uint64_t hash_type;
	bool has_fanout;
	uint64_t fanout;
	bool has_mode;
	uint32_t mode;
	bool has_mtime;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
};

/* Size of the encoding of @u (valid or not). */
size_t blk_unixfs_encoded_size(const struct blk_unixfs *u);

/* Encode @u into @buf of @cap bytes; *@len gets the size of the encoding on
 * success and on -ENOBUFS. Returns 0, -ENOBUFS (@cap too small), or -EINVAL
 * (type past HAMT_SHARD, mtime_nsec past 999999999, filesize overflow). */
int blk_unixfs_encode(const struct blk_unixfs *u, uint8_t *buf, size_t cap,
		      size_t *len);

/* Decode @len bytes at @buf strictly: only what blk_unixfs_encode writes is
 * accepted (so it re-encodes to the same bytes). Refused (-EBADMSG): unknown
 * fields, wrong wire types, fields out of order or repeated (blocksizes
 * excepted, which must be consecutive), a missing Type or one past
 * HAMT_SHARD, an empty Data field, filesize absent for FILE/RAW, present for
 * other types, or not data_len + sum(blocksizes), a mode equal to the type's
 * default or past UINT32_MAX, an mtime without seconds, with nanoseconds 0
 * or past 999999999, or with unknown fields, varints truncated, overlong or
 * not minimal, lengths past the end, input past BLK_PB_MAX_BLOCK.
 * On success fills @u: data views @buf, n_blocksizes is the number in the
 * message, the first min(n_blocksizes, @max_blocksizes) are stored in
 * @blocksizes (may be NULL when @max_blocksizes is 0), u->blocksizes =
 * @blocksizes. Returns 0 or -EBADMSG. */
int blk_unixfs_decode(const uint8_t *buf, size_t len, struct blk_unixfs *u,
		      uint64_t *blocksizes, size_t max_blocksizes);

/* True for DIRECTORY and HAMT_SHARD. */
bool blk_unixfs_is_dir(enum blk_unixfs_type type);
