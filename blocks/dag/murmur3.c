/* MurmurHash3 x64 128, written from the reference's public-domain
 * description, and the HAMT's 64-bit hash. */
#include "blocks/dag/murmur3.h"

static uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* The finalization mix: forces all bits of a hash block to avalanche. */
static uint64_t fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= UINT64_C(0xff51afd7ed558ccd);
	k ^= k >> 33;
	k *= UINT64_C(0xc4ceb9fe1a85ec53);
	k ^= k >> 33;
	return k;
}

/* @n bytes (at most 8) at @p as a little-endian integer. */
static uint64_t load_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = (v << 8) | p[n];
	return v;
}

void blk_murmur3_x64_128(const void *data, size_t len, uint32_t seed,
			 uint64_t out[2])
{
	const uint64_t c1 = UINT64_C(0x87c37b91114253d5);
	const uint64_t c2 = UINT64_C(0x4cf5ad432745937f);
	const uint8_t *p = data;
	size_t nblocks = len / 16, tail = len % 16;
	uint64_t h1 = seed, h2 = seed, k1, k2;

	for (size_t i = 0; i < nblocks; i++, p += 16) {
		k1 = load_le(p, 8);
		k2 = load_le(p + 8, 8);

		k1 *= c1;
		k1 = rotl64(k1, 31);
		k1 *= c2;
		h1 ^= k1;
		h1 = rotl64(h1, 27);
		h1 += h2;
		h1 = h1 * 5 + 0x52dce729;

		k2 *= c2;
		k2 = rotl64(k2, 33);
		k2 *= c1;
		h2 ^= k2;
		h2 = rotl64(h2, 31);
		h2 += h1;
		h2 = h2 * 5 + 0x38495ab5;
	}

	if (tail > 8) {
		k2 = load_le(p + 8, tail - 8);
		k2 *= c2;
		k2 = rotl64(k2, 33);
		k2 *= c1;
		h2 ^= k2;
	}
	if (tail > 0) {
		k1 = load_le(p, tail > 8 ? 8 : tail);
		k1 *= c1;
		k1 = rotl64(k1, 31);
		k1 *= c2;
		h1 ^= k1;
	}

	h1 ^= (uint64_t)len;
	h2 ^= (uint64_t)len;
	h1 += h2;
	h2 += h1;
	h1 = fmix64(h1);
	h2 = fmix64(h2);
	h1 += h2;
	h2 += h1;
	out[0] = h1;
	out[1] = h2;
}

uint64_t blk_murmur3_x64_64(const void *data, size_t len)
{
	uint64_t h[2];

	blk_murmur3_x64_128(data, len, 0, h);
	return h[0];
}
