/* MurmurHash3 x64 128 (Austin Appleby's public-domain reference) and the
 * 64-bit hash UnixFS HAMT shards place names with (multicodec 0x22). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* MurmurHash3_x64_128 of @len bytes at @data with @seed: out[0] is h1 and
 * out[1] is h2 of the reference implementation. The reference writes them
 * to memory as h1 then h2, each in host order; @multiformats/murmur3 (npm)
 * returns them as 16 bytes, h1 big-endian then h2 big-endian. */
void blk_murmur3_x64_128(const void *data, size_t len, uint32_t seed,
			 uint64_t out[2]);

/*
 * The HAMT hash of a name: h1 of MurmurHash3_x64_128 with seed 0.
 *
 * How ipfs-unixfs-importer gets it (dir-sharded.ts hamtHashFn, and
 * hamt-sharding's ConsumableBuffer): it takes the first 8 of the 16 bytes
 * @multiformats/murmur3 returns (h1 big-endian), reverses them (h1
 * little-endian, "because that's how the Go implementation does it"), and
 * consumes bits from the last byte of that array, most significant bit
 * first. So the first bits consumed are the top bits of h1: the bucket
 * index at depth d (0 = the root shard) of a 256-way HAMT is
 *   (h1 >> (56 - 8 * d)) & 0xff,   d = 0 .. 7,
 * and 64 bits allow at most 8 levels of shards.
 */
uint64_t blk_murmur3_x64_64(const void *data, size_t len);
