/* CRC32C (Castagnoli) with the CPU's crc32 instruction, and the same
 * function supplied to RocksDB in place of its table-driven one.
 *
 * Why. Debian builds librocksdb portable (without -msse4.2), so its
 * crc32c::Extend runs a slicing-by-4 table loop at about 0.77 GB/s on this
 * machine. RocksDB checksums every byte it writes to the WAL and to blob
 * files, and every blob it reads back: `perf record` of the mount while it
 * copied 1 GiB into a replicas:3 cluster put 25% of its cycles in that loop
 * (BlobLogWriter::ConstructBlobHeader alone 17.5%), and each storage node
 * pays it twice per byte received (WAL, then blob file).
 *
 * How. librocksdb calls rocksdb::crc32c::Extend(uint32_t, const char *,
 * size_t) through its PLT at all 37 call sites (objdump of
 * librocksdb.so.7.8.3), so a definition of that symbol exported by the
 * executable takes its place for the whole process (ELF symbol
 * interposition; the build exports it with --export-dynamic-symbol). It is
 * the same function — CRC32C with the usual inversions, chainable — so
 * files written either way read back either way; test-crc32c checks it
 * against RocksDB's own implementation, found with dlsym(RTLD_NEXT), over
 * random lengths, alignments and chained calls. A CPU without SSE 4.2 gets
 * RocksDB's own code. No Debian package provides a CRC32C library in C
 * (bookworm has none), hence these few lines.
 */
#include "blocks/crc32c.h"

#include <dlfcn.h>
#include <nmmintrin.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#define ROCKSDB_EXTEND "_ZN7rocksdb6crc32c6ExtendEjPKcm"

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = (uint32_t)~crc;

	while (n && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		n--;
	}
	/* Three independent chains would hide the instruction's latency;
	 * one already runs at several GB/s, far beyond what calls it. */
	while (n >= 32) {
		uint64_t w[4];

		memcpy(w, p, sizeof(w));
		c = _mm_crc32_u64(c, w[0]);
		c = _mm_crc32_u64(c, w[1]);
		c = _mm_crc32_u64(c, w[2]);
		c = _mm_crc32_u64(c, w[3]);
		p += 32;
		n -= 32;
	}
	while (n >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c = _mm_crc32_u64(c, w);
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
uint32_t blk_crc32c_rocksdb_extend(uint32_t crc, const char *data, size_t len)
    __asm__(ROCKSDB_EXTEND) __attribute__((visibility("default"), used));

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
