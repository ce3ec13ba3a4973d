/* FastCDC 2020 content-defined chunking and fixed-size chunking: one
 * streaming chunker whose cut points depend only on the bytes. */

/*
 * Design notes
 *
 * Chunk format (changing any of this changes every CID; version it):
 *
 *  - Bytes are numbered k = 0, 1, ... from the start of the current chunk.
 *    Bytes with k < min are never hashed (cut-point skipping). For k >= min
 *    the gear hash is h = (h << 1) + GEAR[byte], starting from h = 0 at
 *    k = min, and the chunk is cut after byte k (length k + 1) when
 *    (h & mask) == 0, with mask = mask_s while k < avg and mask = mask_l
 *    from k = avg on (normalized chunking, level 2). A chunk that reaches
 *    max bytes is cut there. So content-defined chunks are min + 1 .. max
 *    bytes long; only the end of the stream makes a shorter one.
 *  - mask_s has log2(avg) + 2 one-bits and mask_l has log2(avg) - 2, spread
 *    evenly over bits 15..62 by mask_spread(). Bit 63 is never used, and no
 *    mask bit sits below 15, so each decision depends on the last 16..63
 *    bytes, never on fewer.
 *  - GEAR is the constant table below.
 *
 * Split invariance: the only state carried between calls is pos (bytes of
 * the chunk seen so far) and h, and both are updated byte by byte exactly as
 * a one-shot pass would, so the caller may cut the stream anywhere.
 *
 * Speed: the per-byte dependency h -> (h << 1) + g is a shift-and-add, a
 * scaled lea of more than one cycle of latency, so a naive loop is bound
 * by that chain. gear_find() takes three bytes per step (gear_step3()) and
 * re-associates the hash as h3 = (h << 3) + ((g0 << 2) + (g1 << 1) + g2), so
 * the chain through h is one shift-and-add per three bytes; the two
 * intermediate hashes, (h << 1) + g0 and (h << 2) + ((g0 << 1) + g1), are off
 * the chain. Three, not four, because scale 8 is the largest a single lea can
 * do. Every byte keeps its own test-and-branch (one fused uop): or-ing the
 * tests together, as a four-byte step did before, costs more than it saves.
 * The loop is then near the issue width (two loads, under two lea and one
 * test-and-branch per byte); going further needs SIMD. It computes the
 * very same hashes, so boundaries are unchanged; tests/unit/test-cdc.c
 * checks this against a byte-by-byte reference. Measure with
 * tests/unit/cdc-bench.c (its output recalls the figures behind this).
 */

#include "blocks/cdc.h"

#include <errno.h>

#define CDC_LIMIT (64u * 1024 * 1024)
#define CDC_NORMAL_LEVEL 2

#define unlikely(x) __builtin_expect(!!(x), 0)

/*
 * The gear table: the first 256 outputs of splitmix64 (Steele, Lea, Flood
 * 2014; the generator of java.util.SplittableRandom) seeded with
 * 0x626c6f636b667321, the ASCII bytes of "blockfs!":
 *
 *	state += 0x9e3779b97f4a7c15;
 *	z = state;
 *	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
 *	z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
 *	GEAR[i] = z ^ (z >> 31);
 *
 * tests/unit/test-cdc.c regenerates it this way. Part of the chunk format.
 */
/* clang-format off */
static const uint64_t GEAR[256] = {
	0x6130142bfd19a0a2, 0x6f481fe75bbb339a, 0xb1439438f1240a50, 0x173e7414515a2108,
	0x30a3f743ac5223cc, 0x177052def4d12204, 0x9d4c75bdd1bd5f09, 0x289f12aca48d1cfe,
	0xb4760d396bd8714f, 0x593ed994268d0c4f, 0xbae3d0ead6fc4374, 0xfb717d44e621ad18,
	0x70f456ae8519b295, 0x862da5778444c46f, 0xc2033278e83260ad, 0xe3659fafbc73d5c9,
	0x5ffd52e5342889ad, 0x96c5c6f8a9912440, 0xf38f5090ec554bb9, 0xa65159fa8e2f4c50,
	0x80f5c889bb3ef866, 0x6b5406eed756b6ef, 0xf8d8b1dcaec2c76f, 0xd116ad254d5c326c,
	0x06dc60d9275cf2cd, 0x25d3c886e9791dc5, 0x70d96fb5a910bc95, 0x057201f707e0e0e1,
	0xd55ad4d12f4e2d60, 0xd56882278db04ad9, 0x78e4abc2ba6d6f53, 0xf34b1992e6fe88ef,
	0x1de244a7b749c5b5, 0xe319f47e80988328, 0x69d7c0472ec9518d, 0xcb2f60f647e771ed,
	0xb97474fb6f626b39, 0x0a746625f4ec72e1, 0x5266fb1a88e1c6cd, 0x1b7e580606547a97,
	0xb29b86f68121079f, 0xbb59e8b013f7f3b0, 0x5cfea490c88ec40c, 0x103d2951e5e351d4,
	0x146d7b6ce28eb6ec, 0xf21d57918b7f57a2, 0x57ae55d08b5584c1, 0x047612fb17382712,
	0x2f70e0795da37a56, 0xb3e4b6caf57d520e, 0xc4c8221e8b1c070a, 0xd994730c5f9741b6,
	0x48d2268f1a456e1e, 0xa6f57ad06664b7f5, 0xa965c9782ed7ad14, 0xa6dc0e1f44626ecd,
	0xb38f8a8527495408, 0x385354213962f156, 0xcac19722c132b245, 0x82410444ec6a9a88,
	0x9d0861f118dd2748, 0x19ad8cf3f5b9911b, 0xec8c62d268567b6b, 0xddd190d663be5b60,
	0xda60458feb1daac4, 0xbc2798f9f6b09674, 0x974c4e4639904775, 0xb2fe117e75848316,
	0x851345d1cc766779, 0x6c88c0d280fa80c0, 0x13c1d11f09244026, 0x65dbeb0d57595fb8,
	0xbc1bbd16cb2e3e2f, 0xa96d8b98ae93dc7f, 0xd6e62c8aa3aca075, 0x1ab6431014516507,
	0x3d323d97e7daa9ac, 0x4600fc48dc44ce1c, 0x06b4b8f31769c8c6, 0x6ba35a2d08090fc0,
	0xe5e2602de7b53174, 0xcc5832e848606919, 0xd9517ea174e86f22, 0x338ad823385ba3d9,
	0xb9774bd550565ac9, 0x1863f237afabbb6a, 0xe6590847b274974e, 0x859ff42190b6d8fb,
	0x5d51f752b30920af, 0xf6e2967500fb2622, 0xb092b67bda031b4e, 0x68944697d50015cf,
	0x1babfd7c3e609f9a, 0x0fe88af4dab0b3c9, 0xd49cd108e498a188, 0xedc5d6f18b8b2919,
	0xaf1b9788be6aa359, 0x43d9562ab59f8b59, 0xf438b8bed420c40d, 0x054f8293075c2764,
	0x85867564bfd8524a, 0x7f604b600fdc1a4f, 0xc01611b4a265eacd, 0xd463154786c08dfc,
	0x0f3504172f065e11, 0xd646cef3e34c215d, 0x6685d2fabc378f7e, 0xfe6168b8a1c3913f,
	0x77abc366b72eabd3, 0x7c4c177372b66202, 0x98cc7bcd60a01c0a, 0xacc85391d4315d1f,
	0xf3ce68adc784be63, 0x8f19cad44113d9f0, 0x066831b8e855791b, 0xd8b99b3a1ff91896,
	0x4a4f8f4f01c8d9d1, 0xd958e10d458f6106, 0x585180ef7c373bfc, 0x2c363cca13671f8e,
	0x7d9744dfc36e2045, 0x87d5fc3723967dfc, 0x1c7fa30e91dad25a, 0xfb4c67d52527bc3e,
	0xd576e22291ff36ad, 0x609aa61975d74459, 0x62ec9f1c6056dace, 0x299eef8c05bb9d96,
	0x98a5a5c12c28e58f, 0x6d6720d000e921f5, 0xc7746b5e69e16782, 0x24e6b346be0e0bee,
	0x051d3a181223b5b2, 0x4549b66157205d56, 0x5acc4f693a06f605, 0xa207b79b8302e798,
	0xb7d82af79eea35dc, 0x64a51bf5d8626507, 0x337385c105498323, 0x9fe215c9470b72ff,
	0xcf28d476615179ec, 0xd1956c4fc9403638, 0x7c87b5e8b32f1591, 0xf8cf3c05a62afc87,
	0x1379fe2634f90154, 0x02ad8812a9930a75, 0xd05a7b5179de9c23, 0xd1580f922f61309b,
	0x545f9b646125596a, 0xd60f6a7596512201, 0x7272f06298362cd1, 0x67ad62550a046c54,
	0xa944e91dc020d215, 0x52ccf3fb2f88bb71, 0x356a51e6483fafa0, 0x414fb4831f8beae6,
	0x1e0b18e949782977, 0xc15dfdd94fd5f4de, 0x31b32de209ce9825, 0xa5df9e782d620ec8,
	0x3284807d4e8f03f1, 0x236c91317737eced, 0x73505a7556144801, 0x9305f38615e8cb30,
	0x2cdb59206144cf73, 0x74a21dd04fd8c912, 0x0e51d6f12897bacc, 0x5d75f61473aaec81,
	0x1b021b514d09d7e3, 0xda294ea23d4e8bb5, 0xddd5b0222ee87f53, 0x629210d7643fce70,
	0x4cf05464513292b5, 0x447a14198efb86ac, 0xda6bf070bf3e5944, 0x34cd3db075946981,
	0xbe5d617308be3b6f, 0x1348c79450251b21, 0xb69302ffb1db3e4b, 0xd933909346a1b981,
	0x326edb8f980c8dc6, 0x16013aa33d5ee6d2, 0x63a4966e8825613f, 0x19873e94d37645a1,
	0xe7bbb024ee1b7424, 0x5955e7753ad8870c, 0xff5cdf0b43a63367, 0xa41d697a20a20605,
	0x7706a4fa4adc9145, 0x82c5a838b4b83f01, 0x61c2223a1ad41454, 0x17518a4c93a477e9,
	0x9ed3083640a320ec, 0xd41288bc5f33bc57, 0xaa77336d5331eee8, 0x89c056058d4cb7b2,
	0x817e92612c324528, 0x60b4e27862829dbf, 0x77553da182fd2ed8, 0x6e75f29dfe327bbd,
	0x70d388cdef3ac335, 0x0164747c29c3b192, 0x9ca2e058c95267e3, 0xddbda979ae84a4cd,
	0x7fcac7a376fdfebf, 0x0b5bf57ae1133ebd, 0x9edcddfb84a1e3e5, 0xd52f538543d273c0,
	0xc697de614a0c68dc, 0x76b297f0228ec5e5, 0x218d803da194b8d3, 0xa0d29981b1f65f80,
	0xd4d00ee7b746ff5a, 0xf883f18630877038, 0xb1ef756e701f79fd, 0xea3cc4188bd6760a,
	0x231b0546b6dffd67, 0xb7701f9ac318f5c6, 0x11f497cb892fd87d, 0x913da9fea5652566,
	0xd48aa4f64c469562, 0xcfcdca2294eebfc5, 0x717d337d3d8ec567, 0xc38e26e0590f7a21,
	0x7219abc84b5a5c16, 0x74867c6a75ed0628, 0x5f206309ee1e6f65, 0xe01e7a5eeed423f5,
	0x96fbb3adbeda25d0, 0xb6c2a81a4937a295, 0x3e48e434ff409eac, 0xcfb142010f2519e7,
	0x52bb078363a97169, 0x3105691236ebd1bd, 0xc5bb670fef59dfa2, 0xb8d5f92673ad7b46,
	0x374788d83f41216f, 0xd8ca084b708faa28, 0xd4038a819c1bd87b, 0x30e5a7857556857e,
	0x4e9b367a31b8c67e, 0x1a4d54b870cdd3d3, 0xb941fd18ae37d030, 0xddb10626df6e295a,
	0x9a23197c64d40eac, 0x1e43df1bef0f88af, 0x4a3e1536bef8a27e, 0xc2d816149a7b214d,
	0x2583b6141854c9fd, 0xd770cde1a3e316e7, 0x25e0733f27866908, 0x214b62b469002fd5,
	0x79d421c9cf258f7f, 0x72132398d57e8c1b, 0xb8ed7d5e3e9daf59, 0x91042778afd18157
};
/* clang-format on */

/* A mask with @bits one-bits (1 <= bits <= 48) spread evenly over bits
 * 62 down to 15: bit 62 - floor(j * 47 / (bits - 1)) for j < bits. */
static uint64_t mask_spread(unsigned int bits)
{
	uint64_t m = 0;
	unsigned int j;

	if (bits == 1)
		return 1ull << 62;
	for (j = 0; j < bits; j++)
		m |= 1ull << (62 - j * 47 / (bits - 1));
	return m;
}

void cdc_sizes_for_avg(uint32_t avg, uint32_t *min, uint32_t *max)
{
	*min = avg / 4 < 64 ? 64 : avg / 4;
	*max = avg > UINT32_MAX / 4 ? UINT32_MAX : avg * 4;
}

int cdc_chunker_init(struct cdc_chunker *c, enum cdc_kind kind, uint32_t min,
		     uint32_t avg, uint32_t max)
{
	unsigned int bits;

	switch (kind) {
	case CDC_FIXED:
		if (avg == 0)
			return -EINVAL;
		*c = (struct cdc_chunker){
		    .kind = kind, .min = avg, .avg = avg, .max = avg};
		return 0;
	case CDC_FASTCDC:
		if (min < 64 || min > avg || avg > max || max > CDC_LIMIT)
			return -EINVAL;
		if (avg & (avg - 1))
			return -EINVAL;
		bits = (unsigned int)__builtin_ctz(avg);
		*c = (struct cdc_chunker){
		    .kind = kind,
		    .min = min,
		    .avg = avg,
		    .max = max,
		    .mask_s = mask_spread(bits + CDC_NORMAL_LEVEL),
		    .mask_l = mask_spread(bits - CDC_NORMAL_LEVEL),
		};
		return 0;
	}
	return -EINVAL;
}

void cdc_chunker_reset(struct cdc_chunker *c)
{
	c->hash = 0;
	c->pos = 0;
}

/* One byte of gear hash, then the cut test. */
static inline int gear_step(uint64_t *h, uint8_t b, uint64_t m)
{
	*h = (*h << 1) + GEAR[b];
	return (*h & m) == 0;
}

/*
 * Keep the optimiser from re-associating arithmetic through @v (the
 * kernel's OPTIMIZER_HIDE_VAR); it emits no instruction.
 */
#define hide_var(v) __asm__("" : "+r"(v))

/*
 * Three bytes of gear hash, p[i..i+2], each with its cut test. Returns the
 * index just past the first of them that is a cut, with *hp the hash at that
 * byte, or 0 when none is, with *hp the hash after p[i+2].
 *
 * The hash after p[i+2] is taken straight from the one before p[i], as
 * (h << 3) + a2 with a2 = (g0 << 2) + (g1 << 1) + g2, so the chain from one
 * call to the next is one shift-and-add (a single lea on x86-64) per three
 * bytes; the two hashes in between hang off it and only feed their tests.
 * a2 is hidden from the optimiser because GCC otherwise folds it back into
 * the chain as ((h << 3) + g2) + (a1 << 1), two steps instead of one.
 */
static inline size_t gear_step3(const uint8_t *p, size_t i, uint64_t *hp,
				uint64_t m)
{
	uint64_t h = *hp;
	uint64_t g0 = GEAR[p[i]], g1 = GEAR[p[i + 1]], g2 = GEAR[p[i + 2]];
	uint64_t a1 = (g0 << 1) + g1;
	uint64_t a2 = (a1 << 1) + g2;
	uint64_t h0, h1, h2;

	hide_var(a2);
	h0 = (h << 1) + g0;
	h1 = (h << 2) + a1;
	h2 = (h << 3) + a2;
	if (unlikely(!(h0 & m))) {
		*hp = h0;
		return i + 1;
	}
	if (unlikely(!(h1 & m))) {
		*hp = h1;
		return i + 2;
	}
	*hp = h2;
	return unlikely(!(h2 & m)) ? i + 3 : 0;
}

/*
 * Hash p[i..end) into *hp under mask @m. Returns the index just past the
 * first byte whose hash has no bit of @m set (the hash in *hp is then the
 * one at that byte), or SIZE_MAX when there is none (*hp is then the hash
 * after p[end-1]).
 */
static size_t gear_find(const uint8_t *p, size_t i, size_t end, uint64_t *hp,
			uint64_t m)
{
	uint64_t h = *hp;
	size_t r;

	/* Twelve bytes a pass, unrolled by hand: a loop over the four
	 * gear_step3() calls is not unrolled at -O2 and costs ~20%. */
	for (; end - i >= 12; i += 12) {
		if (unlikely((r = gear_step3(p, i, &h, m)) != 0) ||
		    unlikely((r = gear_step3(p, i + 3, &h, m)) != 0) ||
		    unlikely((r = gear_step3(p, i + 6, &h, m)) != 0) ||
		    unlikely((r = gear_step3(p, i + 9, &h, m)) != 0)) {
			*hp = h;
			return r;
		}
	}
	for (; i < end; i++) {
		if (unlikely(gear_step(&h, p[i], m))) {
			*hp = h;
			return i + 1;
		}
	}
	*hp = h;
	return SIZE_MAX;
}

static size_t fixed_scan(struct cdc_chunker *c, size_t n)
{
	size_t need = c->avg - c->pos;

	if (n >= need) {
		cdc_chunker_reset(c);
		return need;
	}
	c->pos += n;
	return CDC_NEED_MORE;
}

size_t cdc_chunker_scan(struct cdc_chunker *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i = 0, end, r;

	if (n == 0)
		return CDC_NEED_MORE;
	if (c->kind == CDC_FIXED)
		return fixed_scan(c, n);

	/* Skip, without hashing, up to byte min of the chunk. */
	if (c->pos < c->min) {
		size_t skip = c->min - c->pos;

		if (n < skip) {
			c->pos += n;
			return CDC_NEED_MORE;
		}
		i = skip;
		c->pos = c->min;
	}

	/* Small mask while the chunk is shorter than avg; b[i] is byte pos. */
	if (c->pos < c->avg && i < n) {
		end = i + (n - i < c->avg - c->pos ? n - i : c->avg - c->pos);
		r = gear_find(b, i, end, &c->hash, c->mask_s);
		if (r != SIZE_MAX)
			goto cut;
		c->pos += end - i;
		i = end;
	}

	/* Large mask up to max. */
	if (c->pos < c->max && i < n) {
		end = i + (n - i < c->max - c->pos ? n - i : c->max - c->pos);
		r = gear_find(b, i, end, &c->hash, c->mask_l);
		if (r != SIZE_MAX)
			goto cut;
		c->pos += end - i;
		i = end;
	}

	if (c->pos == c->max) {
		r = i;
		goto cut;
	}
	return CDC_NEED_MORE;

cut:
	cdc_chunker_reset(c);
	return r;
}
