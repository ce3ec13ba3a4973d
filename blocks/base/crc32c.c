/* CRC32C (Castagnoli) with the CPU's crc32 instruction, and the same
 * function supplied to RocksDB in place of its table-driven one.
 *
 * Why. Debian builds librocksdb portable (without -msse4.2), so its
 * crc32c::Extend runs a slicing-by-4 table loop, several times slower
 * than the instruction. RocksDB checksums every byte it writes to the WAL
 * and to blob files, and every blob it reads back, so that loop is a large
 * share of a mount's CPU and each storage node pays it twice per byte
 * received (WAL, then blob file). Measure the two with test-crc32c (it
 * prints both rates), their share with `perf record` of a copy into a
 * cluster.
 *
 * How. librocksdb calls rocksdb::crc32c::Extend(uint32_t, const char *,
 * size_t) through its PLT at every call site (objdump -d of
 * librocksdb.so shows it), so a definition of that symbol exported by the
 * executable takes its place for the whole process (ELF symbol
 * interposition; the build exports it with --export-dynamic-symbol). It is
 * the same function — CRC32C with the usual inversions, chainable — so
 * files written either way read back either way; test-crc32c checks it
 * against RocksDB's own implementation, found with dlsym(RTLD_NEXT), over
 * random lengths, alignments and chained calls. A CPU without SSE 4.2 gets
 * RocksDB's own code. No Debian package provides a CRC32C library in C
 * (bookworm has none), hence these lines.
 */
#include "blocks/base/crc32c.h"

#include <dlfcn.h>
#include <nmmintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#define ROCKSDB_EXTEND "_ZN7rocksdb6crc32c6ExtendEjPKcm"

/* Three chains. The crc32 instruction has a latency of 3 cycles and a
 * throughput of 1 per cycle, so one chain of it runs at a third of what the
 * CPU can do (6.9 GB/s here, and it was 5% of all the cycles a replicas:3
 * cluster spent on a write: every byte is checksummed in the WAL and in a
 * blob file on each node). Long buffers are cut into three adjacent
 * stretches whose CRCs run interleaved and are then combined:
 * crc(A || B) = shift(crc(A), |B|) ^ crc0(B), where crc0 starts from 0 and
 * shift appends |B| zero bytes, a linear map over GF(2) applied with four
 * 256-entry tables (Mark Adler's construction, as in zlib's crc32_combine).
 * Stretches of LONG, then SHORT bytes; the rest runs in one chain. */
#define CRC_POLY 0x82f63b78u
#define CRC_LONG 8192
#define CRC_SHORT 256

static uint32_t shift_long[4][256], shift_short[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	for (; vec; vec >>= 1, mat++)
		if (vec & 1)
			sum ^= *mat;
	return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/* The operator that appends @len zero bytes (len > 0) to a CRC register. */
static void zeros_op(uint32_t *even, size_t len)
{
	uint32_t odd[32], row = 1;

	odd[0] = CRC_POLY; /* one zero bit */
	for (int n = 1; n < 32; n++) {
		odd[n] = row;
		row <<= 1;
	}
	gf2_square(even, odd); /* two zero bits */
	gf2_square(odd, even); /* four */
	/* Each square doubles it: 8 bits (one byte) after the first below,
	 * and so on; the loop applies the squares where @len has a bit. */
	for (;;) {
		gf2_square(even, odd);
		len >>= 1;
		if (!len)
			return;
		gf2_square(odd, even);
		len >>= 1;
		if (!len) {
			memcpy(even, odd, sizeof(odd));
			return;
		}
	}
}

static void zeros_table(uint32_t table[4][256], size_t len)
{
	uint32_t op[32];

	zeros_op(op, len);
	for (uint32_t n = 0; n < 256; n++) {
		table[0][n] = gf2_times(op, n);
		table[1][n] = gf2_times(op, n << 8);
		table[2][n] = gf2_times(op, n << 16);
		table[3][n] = gf2_times(op, n << 24);
	}
}

static void shift_init(void)
{
	zeros_table(shift_long, CRC_LONG);
	zeros_table(shift_short, CRC_SHORT);
}

static inline uint64_t shift(const uint32_t table[4][256], uint64_t crc)
{
	return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^
	       table[2][(crc >> 16) & 0xff] ^ table[3][(crc >> 24) & 0xff];
}

__attribute__((target("sse4.2"))) static inline uint64_t
crc_word(uint64_t c, const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return _mm_crc32_u64(c, w);
}

__attribute__((target("sse4.2"))) static uint64_t
crc3(uint64_t c0, const uint8_t *p, size_t stretch, const uint32_t t[4][256])
{
	uint64_t c1 = 0, c2 = 0;
	const uint8_t *end = p + stretch;

	do {
		c0 = crc_word(c0, p);
		c1 = crc_word(c1, p + stretch);
		c2 = crc_word(c2, p + 2 * stretch);
		p += 8;
	} while (p < end);
	c0 = shift(t, c0) ^ c1;
	return shift(t, c0) ^ c2;
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = (uint32_t)~crc;

	while (n && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		n--;
	}
	if (n >= 3 * CRC_SHORT)
		pthread_once(&shift_once, shift_init);
	while (n >= 3 * CRC_LONG) {
		c = crc3(c, p, CRC_LONG, shift_long);
		p += 3 * CRC_LONG;
		n -= 3 * CRC_LONG;
	}
	while (n >= 3 * CRC_SHORT) {
		c = crc3(c, p, CRC_SHORT, shift_short);
		p += 3 * CRC_SHORT;
		n -= 3 * CRC_SHORT;
	}
	while (n >= 8) {
		c = crc_word(c, p);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

/* Bitwise CRC32C, for a CPU without SSE 4.2 when RocksDB's own function
 * cannot be found either (a static link). Slow, and only a last resort. */
static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

typedef uint32_t (*extend_fn)(uint32_t, const char *, size_t);

static bool have_hw(void)
{
	static atomic_int state; /* 0 unknown, 1 yes, 2 no */
	int s = atomic_load_explicit(&state, memory_order_relaxed);

	if (!s) {
		__builtin_cpu_init();
		s = __builtin_cpu_supports("sse4.2") ? 1 : 2;
		atomic_store_explicit(&state, s, memory_order_relaxed);
	}
	return s == 1;
}

static extend_fn rocksdb_own(void)
{
	static _Atomic(extend_fn) fn;
	extend_fn f = atomic_load_explicit(&fn, memory_order_acquire);

	if (!f) {
		void *sym = dlsym(RTLD_NEXT, ROCKSDB_EXTEND);

		memcpy(&f, &sym, sizeof(f));
		atomic_store_explicit(&fn, f, memory_order_release);
	}
	return f;
}

uint32_t blk_crc32c_extend(uint32_t crc, const void *data, size_t len)
{
	if (have_hw())
		return crc32c_hw(crc, data, len);
	return crc32c_sw(crc, data, len);
}

bool blk_crc32c_hw(void)
{
	return have_hw();
}

/* rocksdb::crc32c::Extend, interposed (see the top of this file). */
uint32_t blk_crc32c_rocksdb_extend(uint32_t crc, const char *data,
				   size_t len) __asm__(ROCKSDB_EXTEND)
    __attribute__((visibility("default"), used));

uint32_t blk_crc32c_rocksdb_extend(uint32_t crc, const char *data, size_t len)
{
	extend_fn own;

	if (have_hw())
		return crc32c_hw(crc, (const uint8_t *)data, len);
	own = rocksdb_own();
	if (own)
		return own(crc, data, len);
	return crc32c_sw(crc, (const uint8_t *)data, len);
}
