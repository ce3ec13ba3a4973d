/* The erasure-coding codec: Reed-Solomon over GF(2^8) from Jerasure, as a
 * Cauchy bit-matrix run as a "smart" XOR schedule for M <= 2 and as a
 * Vandermonde matrix with gf-complete's region multiply for M >= 3; K = 1 is
 * plain replication and M = 0 a plain split.
 *
 * Method rule: M <= 2 Cauchy bit-matrix with a smart schedule and 16 KiB
 * packets, M >= 3 Vandermonde RS; a function of (K, M) only. Cauchy with
 * 16 KiB packets was the fastest method for 2+1, 3+2, 4+2 and 8+2; it
 * loses from M = 3 on, since its XOR count grows with M * w. Measure with
 * build/ec/ec-bench: `ec-bench --jerasure K M [BLOCK_BYTES]` prints every
 * method and packet size on Jerasure's own calls, `ec-bench K M
 * [BLOCK_BYTES]` what this codec does (the figures that decided are in the
 * commit that moved them out of this comment).
 *
 * Fragment size for K > 1: fs = ceil(block_len / K) rounded up to
 * EC_FRAG_ALIGN = W * 16 = 128 bytes, whatever the method. With Cauchy each
 * fragment is coded in stripes: floor(fs / STRIPE) full stripes of W packets
 * of PACKET bytes, then, when fs is not a multiple of STRIPE, one tail
 * stripe of W packets of (fs % STRIPE) / W bytes (a multiple of 16). So
 * large blocks run at the fast packet size while small blocks pay at most
 * 127 bytes of padding per fragment.
 *
 * Invariants:
 *  1. The parity bytes depend on the method rule, the coding matrices
 *     (cauchy_good_general_coding_matrix, reed_sol_vandermonde_coding_matrix,
 *     W = 8), PACKET and the stripe rule. They are part of the fragment
 *     format: changing any of them needs a new EC_FRAG_VERSION.
 *     tests/unit/test-ec.c pins known answers.
 *  2. Jerasure's jerasure_schedule_encode() assumes the size is a multiple
 *     of W * packetsize and silently writes past the end of a fragment
 *     otherwise; we run schedules ourselves (run_schedule), stripe by stripe,
 *     with a packet size that always divides the stripe exactly.
 *  3. gf-complete's region multiply aborts the process when source and
 *     destination differ in alignment modulo 16: the RS path only hands it
 *     16-byte aligned buffers (caller buffers that are not are copied to
 *     aligned scratch). Schedules only copy and XOR (galois_region_xor takes
 *     any alignment).
 *  4. Jerasure keeps lazily initialised process-wide tables (the galois
 *     fields in gfp_array, cauchy_n_ones' tables) that are not thread-safe:
 *     every Jerasure call that builds matrices runs under jerasure_lock, and
 *     the fields are initialised there before any codec exists. Afterwards
 *     encode and decode only read them. Jerasure's own encode and decode
 *     loops also update unlocked statistics counters, another reason we run
 *     schedules and dot products ourselves.
 *  5. A codec is immutable after ec_codec_new() except for the decoding
 *     cache, which only grows (entries are never changed or freed before
 *     ec_codec_free()), under c->lock. */
#include "ec/codec.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cauchy.h>
#include <galois.h>
#include <jerasure.h>
#include <reed_sol.h>

#define W 8		   /* GF(2^8): K + M <= 256 */
#define PACKET (16u << 10) /* packet size of full stripes */
#define STRIPE (W * PACKET)
#define DCACHE_MAX 64 /* cached decoding patterns per codec */
#define ALIGN 64      /* of scratch buffers; gf-complete needs 16 */

_Static_assert(EC_FRAG_ALIGN == W * 16, "fragments hold W packets of 16 B");
_Static_assert(EC_MAX_K + EC_MAX_M <= 256, "GF(2^8) Cauchy limit");
_Static_assert(EC_MAX_BLOCK <= INT_MAX, "Jerasure sizes are int");

enum method {
	REPLICATE, /* k == 1: copies */
	SPLIT,	   /* m == 0: the data fragments alone */
	CAUCHY,	   /* m <= 2 */
	VANDERMONDE,
};

/* How to decode one erasure pattern. */
struct dsched {
	uint64_t used;	       /* the k fragments read: bit i = fragment i */
	unsigned ndst;	       /* data fragments rebuilt */
	uint8_t src[EC_MAX_K]; /* device j < k reads fragment src[j] */
	uint8_t dst[EC_MAX_K]; /* device k + j is data fragment dst[j] */
	int **sched;	       /* CAUCHY: schedule, ends with op[0] < 0 */
	int *rows;	       /* VANDERMONDE: ndst x k decoding matrix */
};

struct ec_codec {
	unsigned k, m;
	enum method method;
	int *matrix;	      /* VANDERMONDE: m x k coding matrix */
	int *bitmatrix;	      /* CAUCHY: m*W rows x k*W columns */
	int **enc;	      /* CAUCHY: encoding schedule */
	pthread_mutex_t lock; /* protects ncache and cache[] */
	unsigned ncache;
	struct dsched *cache[DCACHE_MAX];
};

static pthread_mutex_t jerasure_lock = PTHREAD_MUTEX_INITIALIZER;

/* Called with jerasure_lock held. */
static int jerasure_init_locked(void)
{
	/* W for the coding matrix, 32 for galois_region_xor(). */
	if (!galois_get_field_ptr(W) && galois_init_default_field(W) != 0)
		return -ENOMEM;
	if (!galois_get_field_ptr(32) && galois_init_default_field(32) != 0)
		return -ENOMEM;
	return 0;
}

int ec_codec_new(unsigned k, unsigned m, struct ec_codec **out)
{
	struct ec_codec *c;
	int *matrix = NULL;
	int r = 0;

	if (!out || k < 1 || k > EC_MAX_K || m > EC_MAX_M)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->k = k;
	c->m = m;
	c->method = k == 1   ? REPLICATE
		    : m == 0 ? SPLIT
		    : m <= 2 ? CAUCHY
			     : VANDERMONDE;
	if (pthread_mutex_init(&c->lock, NULL) != 0) {
		free(c);
		return -ENOMEM;
	}
	if (c->method == CAUCHY || c->method == VANDERMONDE) {
		pthread_mutex_lock(&jerasure_lock);
		r = jerasure_init_locked();
		if (r == 0 && c->method == VANDERMONDE)
			c->matrix = reed_sol_vandermonde_coding_matrix(
			    (int)k, (int)m, W);
		if (r == 0 && c->method == CAUCHY)
			matrix = cauchy_good_general_coding_matrix((int)k,
								   (int)m, W);
		if (matrix)
			c->bitmatrix = jerasure_matrix_to_bitmatrix(
			    (int)k, (int)m, W, matrix);
		if (c->bitmatrix)
			c->enc = jerasure_smart_bitmatrix_to_schedule(
			    (int)k, (int)m, W, c->bitmatrix);
		pthread_mutex_unlock(&jerasure_lock);
		free(matrix);
		if (!c->enc && !c->matrix) {
			ec_codec_free(c);
			return r ? r : -ENOMEM;
		}
	}
	*out = c;
	return 0;
}

static void dsched_free(struct dsched *d)
{
	if (!d)
		return;
	if (d->sched)
		jerasure_free_schedule(d->sched);
	free(d->rows);
	free(d);
}

void ec_codec_free(struct ec_codec *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->ncache; i++)
		dsched_free(c->cache[i]);
	if (c->enc)
		jerasure_free_schedule(c->enc);
	free(c->bitmatrix);
	free(c->matrix);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

unsigned ec_codec_k(const struct ec_codec *c)
{
	return c->k;
}

unsigned ec_codec_m(const struct ec_codec *c)
{
	return c->m;
}

size_t ec_frag_size(const struct ec_codec *c, size_t block_len)
{
	size_t share;

	if (c->k == 1)
		return block_len;
	share = block_len / c->k + (block_len % c->k != 0);
	return (share + EC_FRAG_ALIGN - 1) / EC_FRAG_ALIGN * EC_FRAG_ALIGN;
}

/* Run @sched over fragments of @len bytes (a multiple of EC_FRAG_ALIGN):
 * schedule device d is the buffer @dev[d]. See the layout at the top. */
static void run_schedule(int **sched, char *const dev[], size_t len)
{
	size_t off = 0;

	assert(len % EC_FRAG_ALIGN == 0);
	while (off < len) {
		size_t ps = len - off >= STRIPE ? PACKET : (len - off) / W;

		for (int **op = sched; (*op)[0] >= 0; op++) {
			/* {source device, packet, destination device,
			 * packet, xor (else copy)}; jerasure.h's comment
			 * gives another order, its code this one. */
			const int *o = *op;
			char *s = dev[o[0]] + off + (size_t)o[1] * ps;
			char *d = dev[o[2]] + off + (size_t)o[3] * ps;

			if (o[4])
				galois_region_xor(s, d, (int)ps);
			else
				memcpy(d, s, ps);
		}
		off += ps * W;
	}
}

/* dst = the sum over j < n of coef[j] * src[j] in GF(2^8), over @len
 * bytes. All pointers 16-byte aligned (invariant 3). */
static void dotprod(const int *coef, char *const src[], unsigned n, char *dst,
		    size_t len)
{
	bool first = true;

	for (unsigned j = 0; j < n; j++) {
		if (coef[j] == 0)
			continue;
		if (coef[j] == 1 && first)
			memcpy(dst, src[j], len);
		else if (coef[j] == 1)
			galois_region_xor(src[j], dst, (int)len);
		else
			galois_w08_region_multiply(src[j], coef[j], (int)len,
						   dst, !first);
		first = false;
	}
	if (first)
		memset(dst, 0, len);
}

static bool aligned16(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

static bool block_len_ok(size_t block_len)
{
	return block_len >= 1 && block_len <= EC_MAX_BLOCK;
}

/* Bytes of the block that data fragment @i holds (the rest is padding). */
static size_t data_bytes(size_t fs, size_t block_len, unsigned i)
{
	size_t off = (size_t)i * fs;

	if (off >= block_len)
		return 0;
	return block_len - off < fs ? block_len - off : fs;
}

/* Scratch for @n fragments of @fs bytes (a multiple of EC_FRAG_ALIGN),
 * ALIGN-aligned. NULL when out of memory; a NULL return for n == 0 is
 * fine. */
static char *scratch_alloc(unsigned n, size_t fs)
{
	return n ? aligned_alloc(ALIGN, (size_t)n * fs) : NULL;
}

int ec_encode(struct ec_codec *c, const void *block, size_t block_len,
	      uint8_t *const frags[])
{
	unsigned n = c->k + c->m, nscratch = 0;
	char *dev[EC_MAX_FRAGS], *scratch;
	size_t fs;

	if (!block || !frags || !block_len_ok(block_len))
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (!frags[i])
			return -EINVAL;
	if (c->method == REPLICATE) {
		for (unsigned i = 0; i < n; i++)
			memcpy(frags[i], block, block_len);
		return 0;
	}
	fs = ec_frag_size(c, block_len);
	for (unsigned i = 0; i < c->k; i++) {
		size_t b = data_bytes(fs, block_len, i);

		memcpy(frags[i], (const uint8_t *)block + (size_t)i * fs, b);
		memset(frags[i] + b, 0, fs - b);
	}
	if (c->method == SPLIT)
		return 0;
	if (c->method == CAUCHY) {
		for (unsigned i = 0; i < n; i++)
			dev[i] = (char *)frags[i];
		run_schedule(c->enc, dev, fs);
		return 0;
	}

	/* VANDERMONDE: work on aligned copies of unaligned fragments. */
	for (unsigned i = 0; i < n; i++)
		nscratch += !aligned16(frags[i]);
	scratch = scratch_alloc(nscratch, fs);
	if (nscratch && !scratch)
		return -ENOMEM;
	for (unsigned i = 0, j = 0; i < n; i++) {
		if (aligned16(frags[i])) {
			dev[i] = (char *)frags[i];
			continue;
		}
		dev[i] = scratch + (size_t)j++ * fs;
		if (i < c->k)
			memcpy(dev[i], frags[i], fs);
	}
	for (unsigned p = 0; p < c->m; p++)
		dotprod(c->matrix + p * c->k, dev, c->k, dev[c->k + p], fs);
	for (unsigned i = c->k; i < n; i++)
		if (dev[i] != (char *)frags[i])
			memcpy(frags[i], dev[i], fs);
	free(scratch);
	return 0;
}

/* CAUCHY: the decoding schedule for d's pattern. 0 or -ENOMEM. */
static int dsched_build_cauchy(const struct ec_codec *c, struct dsched *d)
{
	size_t kw = (size_t)c->k * W;
	int *mat = calloc(kw * kw, sizeof(int));
	int *inv = malloc(kw * kw * sizeof(int));
	int *rows = malloc((size_t)d->ndst * W * kw * sizeof(int));
	int r = -ENOMEM;

	if (!mat || !inv || !rows)
		goto out;
	/* The rows that give the fragments read from the data: identity
	 * blocks for data fragments, the coding bit-matrix for parity. */
	for (unsigned j = 0; j < c->k; j++) {
		int *row = mat + (size_t)j * W * kw;

		if (d->src[j] < c->k) {
			for (unsigned b = 0; b < W; b++)
				row[b * kw + d->src[j] * W + b] = 1;
		} else {
			memcpy(row,
			       c->bitmatrix +
				   (size_t)(d->src[j] - c->k) * W * kw,
			       W * kw * sizeof(int));
		}
	}
	/* Any k fragments of an MDS code determine the data. */
	if (jerasure_invert_bitmatrix(mat, inv, (int)kw) != 0) {
		assert(!"Cauchy bit-matrix not invertible");
		r = -EIO;
		goto out;
	}
	for (unsigned j = 0; j < d->ndst; j++)
		memcpy(rows + (size_t)j * W * kw,
		       inv + (size_t)d->dst[j] * W * kw, W * kw * sizeof(int));
	d->sched = jerasure_smart_bitmatrix_to_schedule((int)c->k, (int)d->ndst,
							W, rows);
	r = d->sched ? 0 : -ENOMEM;
out:
	free(rows);
	free(inv);
	free(mat);
	return r;
}

/* VANDERMONDE: the decoding matrix rows for d's pattern. 0 or -ENOMEM. */
static int dsched_build_rs(const struct ec_codec *c, struct dsched *d)
{
	size_t k = c->k;
	int *mat = calloc(k * k, sizeof(int));
	int *inv = malloc(k * k * sizeof(int));
	int r = -ENOMEM;

	d->rows = malloc((size_t)d->ndst * k * sizeof(int));
	if (!mat || !inv || !d->rows)
		goto out;
	for (unsigned j = 0; j < k; j++) {
		if (d->src[j] < k)
			mat[j * k + d->src[j]] = 1;
		else
			memcpy(mat + j * k,
			       c->matrix + (size_t)(d->src[j] - k) * k,
			       k * sizeof(int));
	}
	if (jerasure_invert_matrix(mat, inv, (int)k, W) != 0) {
		assert(!"Vandermonde matrix not invertible");
		r = -EIO;
		goto out;
	}
	for (unsigned j = 0; j < d->ndst; j++)
		memcpy(d->rows + j * k, inv + d->dst[j] * k, k * sizeof(int));
	r = 0;
out:
	free(inv);
	free(mat);
	return r;
}

/* How to read the k fragments in @used and rebuild the data fragments not
 * in it. NULL when out of memory. */
static struct dsched *dsched_build(const struct ec_codec *c, uint64_t used)
{
	struct dsched *d = calloc(1, sizeof(*d));
	unsigned ns = 0;
	int r;

	if (!d)
		return NULL;
	d->used = used;
	for (unsigned i = 0; i < c->k + c->m; i++) {
		if (used & (UINT64_C(1) << i))
			d->src[ns++] = (uint8_t)i;
		else if (i < c->k)
			d->dst[d->ndst++] = (uint8_t)i;
	}
	assert(ns == c->k && d->ndst > 0);
	if (c->method == CAUCHY)
		r = dsched_build_cauchy(c, d);
	else
		r = dsched_build_rs(c, d);
	if (r < 0) {
		dsched_free(d);
		return NULL;
	}
	return d;
}

static struct dsched *dsched_find_locked(struct ec_codec *c, uint64_t used)
{
	for (unsigned i = 0; i < c->ncache; i++)
		if (c->cache[i]->used == used)
			return c->cache[i];
	return NULL;
}

/* How to decode @used: cached, or built and cached. When the cache is full
 * it is built for this call only: *owned is set and the caller frees it.
 * NULL when out of memory. */
static struct dsched *dsched_get(struct ec_codec *c, uint64_t used, bool *owned)
{
	struct dsched *d, *found;

	*owned = false;
	pthread_mutex_lock(&c->lock);
	d = dsched_find_locked(c, used);
	pthread_mutex_unlock(&c->lock);
	if (d)
		return d;
	/* Build without the lock: it can take milliseconds for large k. */
	d = dsched_build(c, used);
	if (!d)
		return NULL;
	pthread_mutex_lock(&c->lock);
	found = dsched_find_locked(c, used);
	if (!found && c->ncache < DCACHE_MAX)
		c->cache[c->ncache++] = d;
	else if (!found)
		*owned = true;
	pthread_mutex_unlock(&c->lock);
	if (found) {
		dsched_free(d);
		return found;
	}
	return d;
}

/* Rebuild the data fragments missing from @frags (those of the sources
 * @used name are present) straight into @out, except those that reach
 * into the padding (and, for RS, all of them when the block is not
 * aligned): those go to scratch first. RS also reads aligned copies of
 * unaligned fragments. 0 or -ENOMEM. */
static int rebuild_data(struct ec_codec *c, uint8_t *const frags[],
			size_t block_len, size_t fs, uint64_t used,
			uint8_t *out)
{
	bool rs = c->method == VANDERMONDE, owned;
	char *dev[2 * EC_MAX_K], *scratch = NULL;
	unsigned nscratch = 0;
	struct dsched *d = dsched_get(c, used, &owned);

	if (!d)
		return -ENOMEM;
	for (unsigned j = 0; j < c->k; j++)
		nscratch += rs && !aligned16(frags[d->src[j]]);
	for (unsigned j = 0; j < d->ndst; j++)
		nscratch += data_bytes(fs, block_len, d->dst[j]) < fs ||
			    (rs && !aligned16(out));
	scratch = scratch_alloc(nscratch, fs);
	if (nscratch && !scratch) {
		if (owned)
			dsched_free(d);
		return -ENOMEM;
	}
	nscratch = 0;
	for (unsigned j = 0; j < c->k; j++) {
		dev[j] = (char *)frags[d->src[j]];
		if (rs && !aligned16(dev[j])) {
			dev[j] = scratch + (size_t)nscratch++ * fs;
			memcpy(dev[j], frags[d->src[j]], fs);
		}
	}
	for (unsigned j = 0; j < d->ndst; j++) {
		if (data_bytes(fs, block_len, d->dst[j]) < fs ||
		    (rs && !aligned16(out)))
			dev[c->k + j] = scratch + (size_t)nscratch++ * fs;
		else
			dev[c->k + j] = (char *)out + (size_t)d->dst[j] * fs;
	}
	if (rs)
		for (unsigned j = 0; j < d->ndst; j++)
			dotprod(d->rows + j * c->k, dev, c->k, dev[c->k + j],
				fs);
	else
		run_schedule(d->sched, dev, fs);
	for (unsigned j = 0; j < d->ndst; j++) {
		uint8_t *to = out + (size_t)d->dst[j] * fs;

		if (dev[c->k + j] != (char *)to)
			memcpy(to, dev[c->k + j],
			       data_bytes(fs, block_len, d->dst[j]));
	}
	free(scratch);
	if (owned)
		dsched_free(d);
	return 0;
}

int ec_decode(struct ec_codec *c, uint8_t *const frags[], size_t block_len,
	      void *block)
{
	unsigned n = c->k + c->m, have = 0, data_missing = 0;
	uint8_t *out = block;
	uint64_t used = 0;
	size_t fs;

	if (!frags || !block || !block_len_ok(block_len))
		return -EINVAL;
	/* Read the data fragments at hand, then parity in index order. */
	for (unsigned i = 0; i < n && have < c->k; i++) {
		if (frags[i]) {
			used |= UINT64_C(1) << i;
			have++;
		} else if (i < c->k) {
			data_missing++;
		}
	}
	if (have < c->k)
		return -EIO;
	if (c->method == REPLICATE) {
		for (unsigned i = 0; i < n; i++)
			if (frags[i]) {
				memcpy(block, frags[i], block_len);
				break;
			}
		return 0;
	}
	fs = ec_frag_size(c, block_len);
	for (unsigned i = 0; i < c->k; i++)
		if (frags[i])
			memcpy(out + (size_t)i * fs, frags[i],
			       data_bytes(fs, block_len, i));
	if (data_missing == 0)
		return 0;

	return rebuild_data(c, frags, block_len, fs, used, out);
}

int ec_encode_frags(struct ec_codec *c, const struct blk_cid *cid,
		    const void *block, size_t block_len, uint8_t *const frags[],
		    uint8_t (*hdrs)[EC_FRAG_HDR_LEN])
{
	size_t fs;
	int r;

	if (!cid || !hdrs)
		return -EINVAL;
	if (cid->codec != BLK_CODEC_RAW && cid->codec != BLK_CODEC_DAG_PB &&
	    cid->codec != BLK_CODEC_DAG_CBOR)
		return -EINVAL;
	r = ec_encode(c, block, block_len, frags);
	if (r < 0)
		return r;
	fs = ec_frag_size(c, block_len);
	for (unsigned i = 0; i < c->k + c->m; i++) {
		struct ec_frag_hdr h = {
		    .k = (uint8_t)c->k,
		    .m = (uint8_t)c->m,
		    .index = (uint8_t)i,
		    .block_len = (uint32_t)block_len,
		    .frag_len = (uint32_t)fs,
		    .cid = *cid,
		};

		ec_frag_hdr_seal(&h, frags[i], hdrs[i]);
	}
	return 0;
}
