/* CRC32C (Castagnoli), with the CPU's crc32 instruction when it has one;
 * also supplies RocksDB's crc32c::Extend (see crc32c.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CRC32C of @len bytes at @data, continuing @crc (0 to start): the value
 * RocksDB's crc32c::Extend and RFC 3720 give (init and final inversion),
 * so blk_crc32c_extend(blk_crc32c_extend(0, a, n), b, m) is the CRC of a
 * followed by b. */
uint32_t blk_crc32c_extend(uint32_t crc, const void *data, size_t len);

/* Whether the hardware instruction is used (SSE 4.2). */
bool blk_crc32c_hw(void);
