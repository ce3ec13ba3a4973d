/* The UnixFS v1 Data message: encoding as ipfs-unixfs does, strict decoding. */
#include "blocks/dag/unixfs.h"

#include <errno.h>

size_t blk_unixfs_encoded_size(const struct blk_unixfs *u)
{
	return 0;
}

int blk_unixfs_encode(const struct blk_unixfs *u, uint8_t *buf, size_t cap,
		      size_t *len)
{
	return -ENOSYS;
}

int blk_unixfs_decode(const uint8_t *buf, size_t len, struct blk_unixfs *u,
		      uint64_t *blocksizes, size_t max_blocksizes)
{
	return -ENOSYS;
}

bool blk_unixfs_is_dir(enum blk_unixfs_type type)
{
	return type == BLK_UNIXFS_DIRECTORY || type == BLK_UNIXFS_HAMT_SHARD;
}
