/* Content-defined chunking (FastCDC 2020, normalized, gear hash) and a
 * fixed-size chunker behind one streaming interface. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CDC_DEFAULT_MIN (64u * 1024)
#define CDC_DEFAULT_AVG (256u * 1024)
#define CDC_DEFAULT_MAX (1024u * 1024)

/* Returned by cdc_chunker_scan() when no cut point lies in the bytes given. */
#define CDC_NEED_MORE SIZE_MAX

enum cdc_kind {
	CDC_FASTCDC = 0,
	CDC_FIXED = 1,
};

/* A plain struct, initialised by cdc_chunker_init(); no resources held, so
 * there is no free. Copy it to fork the stream state. */
struct cdc_chunker {
	enum cdc_kind kind;
	uint32_t min, avg, max;
	uint64_t mask_s, mask_l; /* FastCDC normalized masks (level 2) */
	uint64_t hash;		 /* rolling gear hash */
	size_t pos;		 /* bytes since the last cut */
};

/* Set up a chunker. For CDC_FIXED, @avg is the chunk size and @min/@max are
 * ignored. Returns 0, or -EINVAL unless 64 <= min <= avg <= max <= 64 MiB
 * (FASTCDC) and avg is a power of two (FASTCDC). */
int cdc_chunker_init(struct cdc_chunker *c, enum cdc_kind kind, uint32_t min,
		     uint32_t avg, uint32_t max);

/* The minimum and maximum chunk sizes that go with average @avg (a
 * cluster's chunk_avg, or the chunk_size mount option): avg / 4 but at
 * least 64, and avg * 4. */
void cdc_sizes_for_avg(uint32_t avg, uint32_t *min, uint32_t *max);

/* Feed @n bytes that continue the stream. Returns the number of bytes of @p
 * that complete the current chunk (a cut after p[ret-1]; 1 <= ret <= n) and
 * resets the state for the next chunk, or CDC_NEED_MORE when all of @p
 * belongs to the current chunk. The caller feeds the rest of @p again after
 * a cut. The end of the stream is always a cut (the caller's business).
 *
 * Chunk boundaries depend only on the content, never on how the stream was
 * split into calls. */
size_t cdc_chunker_scan(struct cdc_chunker *c, const void *p, size_t n);

/* Forget the current chunk (as after a cut). */
void cdc_chunker_reset(struct cdc_chunker *c);
