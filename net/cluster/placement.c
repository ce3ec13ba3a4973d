/* Weighted rendezvous placement of CIDs on nodes, spread over zones; the
 * design notes are in net/cluster/placement.h. */
#include "net/cluster/placement.h"

#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* Inline XXH3: a call per node and CID would cost as much as the hash. */
#define XXH_INLINE_ALL
#include <xxhash.h>

/* The logarithm below relies on every double operation being rounded once,
 * to double: true with SSE2 or any 64-bit target, false with the x87.
 * (16: as 0, with _Float16 evaluated as float; GCC with AVX512-FP16.) */
#if !defined(FLT_EVAL_METHOD) || (FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != 16)
#error "placement needs FLT_EVAL_METHOD 0 (on 32-bit x86: -msse2 -mfpmath=sse)"
#endif

struct pl_entry {
	uint64_t name_hash;
	double inv_weight;  /* 1 / weight */
	uint32_t index;	    /* into the caller's array */
	uint32_t zone;	    /* 0 .. nzones-1 */
	uint32_t name_rank; /* position of the name in bytewise order */
};

struct pl_map {
	unsigned npos;		/* positive-weight nodes */
	unsigned nzones;	/* zones among them */
	struct pl_entry *nodes; /* the positive-weight nodes, [npos] */
};

/* One node's key for one CID (-ln(u) / weight: the smaller the better),
 * in the per-call scratch array. */
struct pl_scored {
	double key;
	uint32_t node; /* into map->nodes */
	uint32_t pad;
};

/* ---- hashing and the portable logarithm ---- */

/* One 64-bit store: byte stores followed by XXH3's 64-bit loads would
 * stall store forwarding, doubling the cost of a placement. */
static inline void put_le64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, sizeof(v));
}

/* The 64-bit hash of (node, CID): XXH3 of the 16 bytes
 * LE64(name hash) || LE64(XXH3 of the digest). */
static inline uint64_t pair_hash(uint64_t name_hash, uint64_t cid_hash)
{
	uint8_t buf[16];

	put_le64(buf, name_hash);
	put_le64(buf + 8, cid_hash);
	return XXH3_64bits(buf, sizeof(buf));
}

/* -ln(u) for u = (2 * (h >> 12) + 1) / 2^53, which lies in [2^-53, 1 - 2^-53],
 * so the result is in (0, 37). Only +, -, *, / on doubles and exact integer
 * conversions and scalings, so the result is the same on every IEEE-754
 * platform (see the design notes). Relative error below 1e-13. */
static inline double neg_ln_unit(uint64_t h)
{
	uint64_t y = ((h >> 12) << 1) | 1; /* odd, < 2^53: exact as a double */
	double d = (double)y, m, s, s2, s4, p;
	uint64_t bits;
	int k;

	/* y = 2^k * m, 1 <= m < 2: split the double's bits (IEEE binary64). */
	memcpy(&bits, &d, sizeof(bits));
	k = (int)(bits >> 52) - 1023;
	bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
	memcpy(&m, &bits, sizeof(m));
	/* Bring m into [sqrt(1/2), sqrt(2)]. */
	if (m > 1.41421356237309504880) {
		m *= 0.5;
		k++;
	}
	/* ln(m) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), |s| <= 0.1716;
	 * terms up to s^15 leave a relative error below 1e-13, which matters
	 * nothing to placement (only that every node computes the same). The
	 * polynomial in s^2 is evaluated in Estrin's form: shorter chains. */
	s = (m - 1.0) / (m + 1.0); /* m - 1 is exact (Sterbenz) */
	s2 = s * s;
	s4 = s2 * s2;
	p = ((1.0 / 3 + s2 * (1.0 / 5)) + s4 * (1.0 / 7 + s2 * (1.0 / 9))) +
	    (s4 * s4) * ((1.0 / 11 + s2 * (1.0 / 13)) + s4 * (1.0 / 15));
	/* -ln(u) = (53 - k) ln 2 - ln(m); ln 2 split so (53 - k) * LN2_HI is
	 * exact and the sum keeps its precision for k near 53. */
	/* fdlibm's split: 0x3fe62e42fee00000 and 0x3dea39ef35793c76. */
	const double ln2_hi = 6.93147180369123816490e-01;
	const double ln2_lo = 1.90821492927058770002e-10;
	double e = 53 - k;

	return (e * ln2_hi - 2.0 * (s + s * s2 * p)) + e * ln2_lo;
}

double pl_neg_ln_unit(uint64_t h)
{
	return neg_ln_unit(h);
}

/* ---- building the map ---- */

struct str_ref {
	const char *s;
	unsigned i;
};

static int cmp_str_ref(const void *a, const void *b)
{
	const struct str_ref *x = a, *y = b;
	int c = strcmp(x->s, y->s);

	if (c)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* The number of nodes with a positive weight, or -EINVAL for a node
 * without a name or with a weight out of range. */
static int count_placed(const struct pl_node *nodes, unsigned n)
{
	int npos = 0;

	for (unsigned i = 0; i < n; i++) {
		double w = nodes[i].weight;

		if (!nodes[i].name || !nodes[i].name[0])
			return -EINVAL;
		/* Keys stay finite and far from ties; NaN fails too. */
		if (w != 0 && !(w >= PL_MIN_WEIGHT && w <= PL_MAX_WEIGHT))
			return -EINVAL;
		if (w > 0)
			npos++;
	}
	return npos;
}

/* Names: refuse duplicates (among all nodes), rank the placed ones.
 * @refs has room for @n; pos_of maps a caller index to its entry. */
static int rank_names(struct pl_map *m, const struct pl_node *nodes, unsigned n,
		      const uint32_t *pos_of, struct str_ref *refs)
{
	for (unsigned i = 0; i < n; i++)
		refs[i] = (struct str_ref){nodes[i].name, i};
	qsort(refs, n, sizeof(*refs), cmp_str_ref);
	for (unsigned i = 0; i < n; i++) {
		if (i > 0 && strcmp(refs[i - 1].s, refs[i].s) == 0)
			return -EINVAL;
		if (pos_of[refs[i].i] != UINT32_MAX)
			m->nodes[pos_of[refs[i].i]].name_rank = i;
	}
	return 0;
}

/* Zones of the placed nodes, numbered from 0; no zone is a zone of its
 * own. */
static void number_zones(struct pl_map *m, const struct pl_node *nodes,
			 unsigned n, const uint32_t *pos_of,
			 struct str_ref *refs)
{
	unsigned nz = 0, nref = 0;

	for (unsigned i = 0; i < n; i++) {
		const char *z = nodes[i].zone;

		if (pos_of[i] == UINT32_MAX)
			continue;
		if (z && z[0])
			refs[nref++] = (struct str_ref){z, i};
		else
			m->nodes[pos_of[i]].zone = nz++;
	}
	qsort(refs, nref, sizeof(*refs), cmp_str_ref);
	for (unsigned i = 0; i < nref; i++) {
		if (i > 0 && strcmp(refs[i - 1].s, refs[i].s) != 0)
			nz++;
		m->nodes[pos_of[refs[i].i]].zone = nz;
	}
	if (nref)
		nz++;
	m->nzones = nz;
}

int pl_map_new(const struct pl_node *nodes, unsigned n, struct pl_map **out)
{
	struct str_ref *refs = NULL;
	uint32_t *pos_of = NULL; /* caller index -> entry, or UINT32_MAX */
	struct pl_map *m = NULL;
	int r, npos;

	if (!nodes || !out || n == 0 || n > PL_MAX_NODES)
		return -EINVAL;
	if ((npos = count_placed(nodes, n)) < 0)
		return npos;

	r = -ENOMEM;
	m = calloc(1, sizeof(*m));
	refs = calloc(n, sizeof(*refs));
	pos_of = calloc(n, sizeof(*pos_of));
	if (!m || !refs || !pos_of)
		goto fail;
	m->nodes = calloc(npos ? (size_t)npos : 1, sizeof(*m->nodes));
	if (!m->nodes)
		goto fail;

	for (unsigned i = 0; i < n; i++) {
		pos_of[i] = UINT32_MAX;
		if (nodes[i].weight > 0) {
			struct pl_entry *e = &m->nodes[m->npos];

			pos_of[i] = m->npos++;
			e->name_hash =
			    XXH3_64bits(nodes[i].name, strlen(nodes[i].name));
			e->inv_weight = 1.0 / nodes[i].weight;
			e->index = i;
		}
	}
	if ((r = rank_names(m, nodes, n, pos_of, refs)))
		goto fail;
	number_zones(m, nodes, n, pos_of, refs);

	free(refs);
	free(pos_of);
	*out = m;
	return 0;

fail:
	free(refs);
	free(pos_of);
	pl_map_free(m);
	return r;
}

void pl_map_free(struct pl_map *m)
{
	if (!m)
		return;
	free(m->nodes);
	free(m);
}

unsigned pl_map_nodes(const struct pl_map *m)
{
	return m->npos;
}

unsigned pl_map_zones(const struct pl_map *m)
{
	return m->nzones;
}

/* ---- ordering ---- */

/* True if @a goes before @b: smaller key (higher score), then the smaller
 * name. */
static bool better(const struct pl_map *m, const struct pl_scored *a,
		   const struct pl_scored *b)
{
	if (a->key != b->key)
		return a->key < b->key;
	return m->nodes[a->node].name_rank < m->nodes[b->node].name_rank;
}

static void swap_scored(struct pl_scored *a, struct pl_scored *b)
{
	struct pl_scored t = *a;

	*a = *b;
	*b = t;
}

/* Put the best @k of @e[0..@n) first, in order (k <= n). Insertion based:
 * O(n k) at worst, about O(n + k^2) for random scores, the usual case of a
 * placement (k = K+M) over a large cluster. */
static void select_best(const struct pl_map *m, struct pl_scored *e, unsigned n,
			unsigned k)
{
	unsigned i, j;

	if (k == 0)
		return;
	for (i = 1; i < k; i++)
		for (j = i; j > 0 && better(m, &e[j], &e[j - 1]); j--)
			swap_scored(&e[j], &e[j - 1]);
	for (i = k; i < n; i++) {
		if (!better(m, &e[i], &e[k - 1]))
			continue;
		swap_scored(&e[i], &e[k - 1]);
		for (j = k - 1; j > 0 && better(m, &e[j], &e[j - 1]); j--)
			swap_scored(&e[j], &e[j - 1]);
	}
}

/* For glibc's qsort_r: a strict order, since names are unique. */
static int cmp_scored_r(const void *a, const void *b, void *ctx)
{
	const struct pl_scored *x = a, *y = b;

	if (x->node == y->node)
		return 0;
	return better(ctx, x, y) ? -1 : 1;
}

static void sort_best(const struct pl_map *m, struct pl_scored *e, unsigned n,
		      unsigned k)
{
	if (k < 32 || (uint64_t)k * k < n)
		select_best(m, e, n, k);
	else
		qsort_r(e, n, sizeof(*e), cmp_scored_r, (void *)m);
}

/* The first @want entries of the order (design note 2) into @out, using
 * @e (npos entries) and @best (nzones entries) as scratch. Returns the
 * count written and sets *@collision. */
static unsigned order(const struct pl_map *m, const struct blk_cid *cid,
		      unsigned want, unsigned *out, bool *collision,
		      struct pl_scored *e, uint32_t *best)
{
	const unsigned n = m->npos;
	uint64_t cid_hash = XXH3_64bits(cid->digest, sizeof(cid->digest));
	unsigned i, lo = 0, picked = 0, round = 0;

	*collision = false;
	if (want > n)
		want = n;
	for (i = 0; i < n; i++) {
		const struct pl_entry *node = &m->nodes[i];
		double l = neg_ln_unit(pair_hash(node->name_hash, cid_hash));

		e[i] = (struct pl_scored){l * node->inv_weight, i, 0};
	}
	if (m->nzones == n) { /* every node in a zone of its own */
		sort_best(m, e, n, want);
		for (i = 0; i < want; i++)
			out[i] = m->nodes[e[i].node].index;
		return want;
	}

	/* Round r takes the best remaining node of every zone that has one,
	 * in score order: the nodes of zone rank r. */
	while (picked < want) {
		unsigned c, k, take;

		for (i = 0; i < m->nzones; i++)
			best[i] = UINT32_MAX;
		for (i = lo; i < n; i++) {
			uint32_t *b = &best[m->nodes[e[i].node].zone];

			if (*b == UINT32_MAX || better(m, &e[i], &e[*b]))
				*b = i;
		}
		/* Move the round's candidates to e[lo..lo+c): a partition in
		 * which e[i] is still unmoved when it is visited. */
		c = lo;
		for (i = lo; i < n; i++)
			if (best[m->nodes[e[i].node].zone] == i)
				swap_scored(&e[i], &e[c++]);
		c -= lo;
		k = want - picked;
		if (c == 1) {
			/* One zone left: the rest is in score order. */
			take = k;
			sort_best(m, e + lo, n - lo, take);
			if (round > 0 || take > 1)
				*collision = true;
		} else {
			take = k < c ? k : c;
			sort_best(m, e + lo, c, take);
			if (round > 0)
				*collision = true;
		}
		for (i = 0; i < take; i++)
			out[picked++] = m->nodes[e[lo + i].node].index;
		lo += c;
		round++;
	}
	return picked;
}

static int order_alloc(const struct pl_map *m, const struct blk_cid *cid,
		       unsigned want, unsigned *out, bool *collision)
{
	struct pl_scored e_stack[PL_STACK_NODES];
	uint32_t best_stack[PL_STACK_NODES];
	struct pl_scored *e = e_stack;
	uint32_t *best = best_stack;
	bool coll;
	unsigned r;

	if (m->npos > PL_STACK_NODES) {
		e = malloc(m->npos * sizeof(*e));
		best = malloc(m->nzones * sizeof(*best));
		if (!e || !best) {
			free(e);
			free(best);
			return -ENOMEM;
		}
	}
	r = order(m, cid, want, out, &coll, e, best);
	if (collision)
		*collision = coll;
	if (e != e_stack) {
		free(e);
		free(best);
	}
	return (int)r;
}

int pl_rank(const struct pl_map *m, const struct blk_cid *cid, unsigned *out,
	    unsigned cap)
{
	return order_alloc(m, cid, cap, out, NULL);
}

int pl_place(const struct pl_map *m, const struct blk_cid *cid, unsigned want,
	     unsigned *out, bool *zone_collision)
{
	return order_alloc(m, cid, want, out, zone_collision);
}
