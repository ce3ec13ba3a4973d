/* Unit tests for net/placement: argument checks, the portable logarithm,
 * pinned known answers, agreement with a plain reference implementation,
 * independence from input order, zone spreading, and simulations of weight
 * balance and of movement when a node joins or leaves (figures printed). */

#include "net/cluster/placement.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "tests/unit/check.h"

/* Deterministic test data: splitmix64. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void random_cid(struct blk_cid *cid, uint64_t *s)
{
	cid->codec = BLK_CODEC_RAW;
	for (int i = 0; i < BLK_DIGEST_LEN; i += 8) {
		uint64_t x = rnd(s);

		memcpy(cid->digest + i, &x, 8);
	}
}

/* A cluster of test nodes, names "node<i>" kept in one buffer. */
struct cluster {
	struct pl_node *nodes;
	char (*names)[16];
	char (*zones)[16];
	unsigned n;
};

/* @zones 0: no zones; otherwise node i is in zone "z<i % zones>".
 * Weights cycle through @weights[0..nw). */
static void cluster_init(struct cluster *c, unsigned n, unsigned zones,
			 const double *weights, unsigned nw)
{
	c->n = n;
	c->nodes = xmalloc(n * sizeof(*c->nodes));
	c->names = xmalloc(n * sizeof(*c->names));
	c->zones = xmalloc(n * sizeof(*c->zones));
	for (unsigned i = 0; i < n; i++) {
		snprintf(c->names[i], sizeof(c->names[i]), "node%u", i);
		snprintf(c->zones[i], sizeof(c->zones[i]), "z%u",
			 zones ? i % zones : 0);
		c->nodes[i] = (struct pl_node){
		    c->names[i], zones ? c->zones[i] : NULL, weights[i % nw]};
	}
}

static void cluster_free(struct cluster *c)
{
	free(c->nodes);
	free(c->names);
	free(c->zones);
}

static struct pl_map *map_new(const struct pl_node *nodes, unsigned n)
{
	struct pl_map *m = NULL;
	int r = pl_map_new(nodes, n, &m);

	CHECK(r == 0);
	if (r) {
		fprintf(stderr, "pl_map_new: %s\n", strerror(-r));
		exit(1);
	}
	return m;
}

/* ---- argument checks ---- */

static void test_invalid(void)
{
	struct pl_node ok[2] = {{"a", NULL, 1}, {"b", NULL, 1}};
	struct pl_node bad[2];
	struct pl_map *m = (struct pl_map *)&m; /* must stay untouched */
	const double weights[] = {-1,	-0.0 - 1e-300, NAN,   INFINITY,
				  2e15, 1e-7,	       5e-324};

	CHECK(pl_map_new(ok, 0, &m) == -EINVAL);
	CHECK(pl_map_new(NULL, 2, &m) == -EINVAL);
	CHECK(pl_map_new(ok, PL_MAX_NODES + 1, &m) == -EINVAL);
	memcpy(bad, ok, sizeof(bad));
	bad[1].name = "a";
	CHECK(pl_map_new(bad, 2, &m) == -EINVAL);
	bad[1].name = "";
	CHECK(pl_map_new(bad, 2, &m) == -EINVAL);
	bad[1].name = NULL;
	CHECK(pl_map_new(bad, 2, &m) == -EINVAL);
	for (unsigned i = 0; i < sizeof(weights) / sizeof(weights[0]); i++) {
		memcpy(bad, ok, sizeof(bad));
		bad[1].weight = weights[i];
		CHECK(pl_map_new(bad, 2, &m) == -EINVAL);
	}
	memcpy(bad, ok, sizeof(bad));
	bad[0].weight = PL_MIN_WEIGHT;
	bad[1].weight = PL_MAX_WEIGHT;
	CHECK(pl_map_new(bad, 2, &m) == 0);
	pl_map_free(m);
	m = (struct pl_map *)&m;
	/* Duplicates are refused also among weight-0 nodes. */
	memcpy(bad, ok, sizeof(bad));
	bad[1].name = "a";
	bad[1].weight = 0;
	CHECK(pl_map_new(bad, 2, &m) == -EINVAL);
	CHECK(m == (struct pl_map *)&m);

	/* Only clients: a valid map that places nothing. */
	struct pl_node clients[2] = {{"a", "x", 0}, {"b", "y", 0}};
	struct blk_cid cid;
	uint64_t s = 1;
	unsigned out[2];
	bool coll = true;

	random_cid(&cid, &s);
	m = map_new(clients, 2);
	CHECK(pl_map_nodes(m) == 0);
	CHECK(pl_map_zones(m) == 0);
	CHECK(pl_place(m, &cid, 2, out, &coll) == 0);
	CHECK(!coll);
	CHECK(pl_rank(m, &cid, out, 2) == 0);
	pl_map_free(m);
	pl_map_free(NULL);
}

/* ---- the logarithm ---- */

static void test_ln(void)
{
	/* Ends of the range, around the reduction at m = sqrt(2) (u near
	 * sqrt(1/2)), then random hashes. */
	const uint64_t edges[] = {0,
				  1,
				  4095,
				  4096,
				  1ull << 63,
				  0xb504f333f9de6000ull,
				  0xb504f333f9de7000ull,
				  ~0ull};
	double worst = 0;
	uint64_t s = 42;

	for (unsigned i = 0; i < 1000000 + 8; i++) {
		uint64_t h = i < 8 ? edges[i] : rnd(&s);
		double u = ((double)(h >> 12) * 2 + 1) / 9007199254740992.0;
		double want = -log(u), got = pl_neg_ln_unit(h);
		double err = fabs(got - want) / want;

		if (!(got > 0 && got < 37))
			CHECK(got > 0 && got < 37);
		if (err > worst)
			worst = err;
	}
	CHECK(pl_neg_ln_unit(~0ull) > 0);

	/* Bit-exact pins: a compiler that fuses multiply-adds, or a platform
	 * that rounds differently, would place blocks elsewhere. */
	static const struct {
		uint64_t h;
		double v;
	} pins[] = {
	    {0x0000000000000000ull, 0x1.25e4f7b2737fap+5},
	    {0x8000000000000000ull, 0x1.62e42fefa39edp-1},
	    {0x0123456789abcdefull, 0x1.5aa16394d4834p+2},
	    {0xfedcba9876543210ull, 0x1.23eb991354e4bp-8},
	    {0xffffffffffffffffull, 0x1p-53},
	};
	uint64_t acc = 0;

	for (unsigned i = 0; i < sizeof(pins) / sizeof(pins[0]); i++)
		CHECK(pl_neg_ln_unit(pins[i].h) == pins[i].v);
	s = 1;
	for (unsigned i = 0; i < 1000000; i++) {
		double v = pl_neg_ln_unit(rnd(&s));
		uint64_t bits;
		uint8_t le[8];

		memcpy(&bits, &v, sizeof(bits));
		for (unsigned j = 0; j < 8; j++)
			le[j] = (uint8_t)(bits >> (8 * j));
		acc = XXH3_64bits_withSeed(le, 8, acc);
	}
	printf("ln: digest of 1000000 results %016" PRIx64 "\n", acc);
	CHECK(acc == 0xc6154ae00314cb6bull);
	CHECK(pl_neg_ln_unit(0) == pl_neg_ln_unit(4095));
	printf("ln: largest relative error against libm %.2e\n", worst);
	CHECK(worst < 1e-13);
}

/* ---- known answers ---- */

/* Pinned orders: changing them moves every stored block (see the design
 * notes), so a change here must be deliberate. */
static void test_known_answers(void)
{
	static const struct pl_node nodes[] = {
	    {"node0", "a", 1}, {"node1", "a", 2}, {"node2", "b", 1},
	    {"node3", "b", 4}, {"node4", "c", 1}, {"node5", NULL, 1},
	    {"node6", "c", 0},
	};
	static const unsigned want[4][6] = {
	    {1, 3, 4, 5, 2, 0},
	    {4, 3, 1, 5, 2, 0},
	    {2, 1, 4, 5, 3, 0},
	    {1, 2, 4, 5, 3, 0},
	};
	struct pl_map *m = map_new(nodes, 7);
	uint8_t pattern = 0;

	for (unsigned t = 0; t < 4; t++) {
		struct blk_cid cid = {.codec = BLK_CODEC_RAW};
		unsigned out[8];
		int r;

		for (unsigned i = 0; i < BLK_DIGEST_LEN; i++)
			cid.digest[i] = pattern++;
		r = pl_rank(m, &cid, out, 8);
		CHECK(r == 6);
		printf("known answer %u:", t);
		for (int i = 0; i < r; i++)
			printf(" %u", out[i]);
		printf("\n");
		CHECK(r == 6 && memcmp(out, want[t], sizeof(want[t])) == 0);
	}
	pl_map_free(m);
}

/* ---- reference implementation ---- */

struct ref_entry {
	double key;
	unsigned index, zrank;
	const char *name;
};

static int ref_cmp(const void *a, const void *b)
{
	const struct ref_entry *x = a, *y = b;

	if (x->zrank != y->zrank)
		return x->zrank < y->zrank ? -1 : 1;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return strcmp(x->name, y->name);
}

static bool same_zone(const struct pl_node *a, const struct pl_node *b)
{
	return a->zone && a->zone[0] && b->zone && !strcmp(a->zone, b->zone);
}

/* The order of design note 2, computed the slow and obvious way. */
static unsigned ref_rank(const struct pl_node *nodes, unsigned n,
			 const struct blk_cid *cid, unsigned *out)
{
	struct ref_entry *e = xmalloc(n * sizeof(*e));
	uint64_t ch = XXH3_64bits(cid->digest, BLK_DIGEST_LEN);
	unsigned i, j, np = 0;

	for (i = 0; i < n; i++) {
		uint64_t nh = XXH3_64bits(nodes[i].name, strlen(nodes[i].name));
		uint8_t buf[16];

		if (nodes[i].weight <= 0)
			continue;
		for (j = 0; j < 8; j++) {
			buf[j] = (uint8_t)(nh >> (8 * j));
			buf[8 + j] = (uint8_t)(ch >> (8 * j));
		}
		e[np++] =
		    (struct ref_entry){pl_neg_ln_unit(XXH3_64bits(buf, 16)) *
					   (1.0 / nodes[i].weight),
				       i, 0, nodes[i].name};
	}
	for (i = 0; i < np; i++)
		for (j = 0; j < np; j++)
			if (j != i &&
			    same_zone(&nodes[e[i].index], &nodes[e[j].index]) &&
			    (e[j].key < e[i].key ||
			     (e[j].key == e[i].key &&
			      strcmp(e[j].name, e[i].name) < 0)))
				e[i].zrank++;
	qsort(e, np, sizeof(*e), ref_cmp);
	for (i = 0; i < np; i++)
		out[i] = e[i].index;
	free(e);
	return np;
}

/* pl_rank and every pl_place prefix agree with the reference on clusters
 * of several shapes, including ones above PL_STACK_NODES. */
static void test_reference(void)
{
	static const struct {
		unsigned n, zones, cids;
	} shapes[] = {
	    {1, 0, 50},	  {2, 1, 50},	 {5, 0, 200},  {6, 3, 200},
	    {13, 4, 200}, {16, 16, 100}, {40, 7, 100}, {300, 0, 10},
	    {300, 1, 10}, {300, 6, 10},
	};
	static const double weights[] = {1, 2, 0, 4, 1, 0.5, 3};
	unsigned *out = xmalloc(300 * sizeof(*out));
	unsigned *ref = xmalloc(300 * sizeof(*ref));
	unsigned *pre = xmalloc(300 * sizeof(*pre));
	uint64_t s = 7;
	unsigned mismatches = 0;

	for (unsigned t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
		struct cluster c;
		struct pl_map *m;

		cluster_init(&c, shapes[t].n, shapes[t].zones, weights, 7);
		/* Mix in nodes without a zone, except in single-zone ones. */
		for (unsigned i = 0; shapes[t].zones != 1 && i < c.n; i += 5)
			c.nodes[i].zone = i % 10 ? "" : NULL;
		m = map_new(c.nodes, c.n);
		for (unsigned k = 0; k < shapes[t].cids; k++) {
			struct blk_cid cid;
			unsigned nr, i;
			int r;

			random_cid(&cid, &s);
			nr = ref_rank(c.nodes, c.n, &cid, ref);
			r = pl_rank(m, &cid, out, c.n);
			CHECK(r == (int)nr && r == (int)pl_map_nodes(m));
			if (r != (int)nr || memcmp(out, ref, nr * sizeof(*out)))
				mismatches++;
			/* Every prefix length; large clusters only a few. */
			for (unsigned want = 0; want <= nr + 1;
			     want += nr > 20 ? 7 : 1) {
				bool coll = false, ref_coll = false;

				r = pl_place(m, &cid, want, pre, &coll);
				CHECK(r == (int)(want < nr ? want : nr));
				if (r < 0)
					continue;
				if (memcmp(pre, ref, (size_t)r * sizeof(*pre)))
					mismatches++;
				for (i = 0; i < (unsigned)r; i++)
					for (unsigned j = 0; j < i; j++)
						if (same_zone(&c.nodes[ref[i]],
							      &c.nodes[ref[j]]))
							ref_coll = true;
				CHECK(coll == ref_coll);
			}
		}
		pl_map_free(m);
		cluster_free(&c);
	}
	CHECK(mismatches == 0);
	free(out);
	free(ref);
	free(pre);
}

/* ---- order independence, distinctness, weight 0 ---- */

static void test_shuffle(void)
{
	static const double weights[] = {1, 0, 2, 4, 1, 3};
	struct cluster c;
	struct pl_node *shuffled;
	unsigned *perm, out_a[24], out_b[24];
	uint64_t s = 99;

	cluster_init(&c, 24, 5, weights, 6);
	shuffled = xmalloc(c.n * sizeof(*shuffled));
	perm = xmalloc(c.n * sizeof(*perm));
	for (unsigned trial = 0; trial < 20; trial++) {
		struct pl_map *a, *b;

		for (unsigned i = 0; i < c.n; i++)
			perm[i] = i;
		for (unsigned i = c.n - 1; i > 0; i--) {
			unsigned j = rnd(&s) % (i + 1), t = perm[i];

			perm[i] = perm[j];
			perm[j] = t;
		}
		for (unsigned i = 0; i < c.n; i++)
			shuffled[i] = c.nodes[perm[i]];
		a = map_new(c.nodes, c.n);
		b = map_new(shuffled, c.n);
		CHECK(pl_map_zones(a) == 5 && pl_map_zones(b) == 5);
		for (unsigned k = 0; k < 500; k++) {
			struct blk_cid cid;
			int ra, rb;
			bool ok = true, seen[24] = {0};

			random_cid(&cid, &s);
			ra = pl_rank(a, &cid, out_a, 24);
			rb = pl_rank(b, &cid, out_b, 24);
			CHECK(ra == 20 && rb == 20); /* 4 of weight 0 */
			for (int i = 0; i < ra && i < rb; i++) {
				if (perm[out_b[i]] != out_a[i])
					ok = false;
				if (out_a[i] >= c.n || seen[out_a[i]] ||
				    c.nodes[out_a[i]].weight <= 0)
					ok = false;
				else
					seen[out_a[i]] = true;
			}
			CHECK(ok);
		}
		pl_map_free(a);
		pl_map_free(b);
	}
	free(shuffled);
	free(perm);
	cluster_free(&c);
}

/* ---- zones ---- */

static unsigned zone_of(const struct cluster *c, unsigned i)
{
	return (unsigned)atoi(c->nodes[i].zone + 1);
}

static void test_zones(void)
{
	static const double weights[] = {1, 3, 1, 2, 5, 1};
	struct cluster c;
	struct pl_map *m;
	uint64_t s = 5;
	unsigned bad3 = 0, bad4 = 0, bad6 = 0, bad_uneven = 0;

	/* 6 nodes in 3 zones. */
	cluster_init(&c, 6, 3, weights, 6);
	m = map_new(c.nodes, c.n);
	CHECK(pl_map_zones(m) == 3);
	for (unsigned k = 0; k < 20000; k++) {
		struct blk_cid cid;
		unsigned out[6], per[3] = {0};
		bool coll = true;

		random_cid(&cid, &s);
		if (pl_place(m, &cid, 3, out, &coll) != 3 || coll)
			bad3++;
		for (unsigned i = 0; i < 3; i++)
			per[zone_of(&c, out[i])]++;
		if (per[0] != 1 || per[1] != 1 || per[2] != 1)
			bad3++;
		coll = false;
		if (pl_place(m, &cid, 4, out, &coll) != 4 || !coll)
			bad4++;
		coll = false;
		memset(per, 0, sizeof(per));
		if (pl_place(m, &cid, 6, out, &coll) != 6 || !coll)
			bad6++;
		for (unsigned i = 0; i < 6; i++)
			per[zone_of(&c, out[i])]++;
		if (per[0] != 2 || per[1] != 2 || per[2] != 2)
			bad6++;
	}
	CHECK(bad3 == 0);
	CHECK(bad4 == 0);
	CHECK(bad6 == 0);
	pl_map_free(m);
	cluster_free(&c);

	/* Uneven zones: z0 has 5 nodes, z1 and z2 one each, ec:4+2 must put
	 * exactly 4 in z0 (1 + 1 + 4 would be the least even: never more). */
	static const char *uz[] = {"z0", "z0", "z0", "z1", "z0", "z2", "z0"};
	struct pl_node un[7];
	char names[7][8];

	for (unsigned i = 0; i < 7; i++) {
		snprintf(names[i], sizeof(names[i]), "n%u", i);
		un[i] = (struct pl_node){names[i], uz[i], i == 3 ? 0.1 : 1};
	}
	m = map_new(un, 7);
	CHECK(pl_map_zones(m) == 3);
	for (unsigned k = 0; k < 5000; k++) {
		struct blk_cid cid;
		unsigned out[6], in_z0 = 0;
		bool coll = false;

		random_cid(&cid, &s);
		/* The low-weight z1 node is always in a 3-node placement. */
		pl_place(m, &cid, 3, out, &coll);
		if (coll || (out[0] != 3 && out[1] != 3 && out[2] != 3))
			bad_uneven++;
		pl_place(m, &cid, 6, out, &coll);
		for (unsigned i = 0; i < 6; i++)
			in_z0 += !strcmp(un[out[i]].zone, "z0");
		if (!coll || in_z0 != 4)
			bad_uneven++;
	}
	CHECK(bad_uneven == 0);
	pl_map_free(m);

	/* One zone: a second pick is a collision, a first is not. */
	cluster_init(&c, 5, 1, weights, 6);
	m = map_new(c.nodes, c.n);
	CHECK(pl_map_zones(m) == 1);
	bad3 = 0;
	for (unsigned k = 0; k < 1000; k++) {
		struct blk_cid cid;
		unsigned out[6];
		bool coll = true;

		random_cid(&cid, &s);
		if (pl_place(m, &cid, 1, out, &coll) != 1 || coll)
			bad3++;
		if (pl_place(m, &cid, 2, out, &coll) != 2 || !coll)
			bad3++;
	}
	CHECK(bad3 == 0);
	pl_map_free(m);
	cluster_free(&c);

	/* 3 zones of 4 nodes, ec:4+2: two per zone, never 4+1+1. */
	cluster_init(&c, 12, 3, weights, 6);
	m = map_new(c.nodes, c.n);
	bad6 = 0;
	for (unsigned k = 0; k < 5000; k++) {
		struct blk_cid cid;
		unsigned out[6], per[3] = {0};

		random_cid(&cid, &s);
		pl_place(m, &cid, 6, out, NULL);
		for (unsigned i = 0; i < 6; i++)
			per[zone_of(&c, out[i])]++;
		if (per[0] != 2 || per[1] != 2 || per[2] != 2)
			bad6++;
	}
	CHECK(bad6 == 0);
	pl_map_free(m);
	cluster_free(&c);
}

/* ---- balance ---- */

/* Place @ncids random CIDs with @want fragments on a zone-less cluster and
 * compare the share of first choices and of all picks per weight class
 * with the class's share of the total weight. Returns the largest relative
 * deviation of first choices; *@all_dev receives that of all picks. */
static double balance(unsigned n, const double *weights, unsigned nw,
		      unsigned ncids, unsigned want, double *all_dev)
{
	struct cluster c;
	struct pl_map *m;
	double total = 0, worst = 0, worst_all = 0;
	double class_w[8] = {0};
	unsigned long first[8] = {0}, all[8] = {0};
	unsigned long *per_node;
	unsigned out[32];
	uint64_t s = 1234 + n;

	cluster_init(&c, n, 0, weights, nw);
	m = map_new(c.nodes, c.n);
	per_node = xmalloc(n * sizeof(*per_node));
	for (unsigned i = 0; i < n; i++) {
		total += c.nodes[i].weight;
		class_w[i % nw] += c.nodes[i].weight;
	}
	for (unsigned k = 0; k < ncids; k++) {
		struct blk_cid cid;
		int r;

		random_cid(&cid, &s);
		r = pl_place(m, &cid, want, out, NULL);
		if (r != (int)want) {
			CHECK(r == (int)want);
			break;
		}
		first[out[0] % nw]++;
		per_node[out[0]]++;
		for (unsigned i = 0; i < want; i++)
			all[out[i] % nw]++;
	}
	printf("balance: %u nodes, %u CIDs, %u picks each\n", n, ncids, want);
	printf("  weight  weight share  first choices  all picks\n");
	for (unsigned w = 0; w < nw; w++) {
		double ws = class_w[w] / total;
		double fs = (double)first[w] / ncids;
		double as = (double)all[w] / ((double)ncids * want);

		printf("  %6g  %11.2f%%  %12.2f%%  %8.2f%%\n", weights[w],
		       100 * ws, 100 * fs, 100 * as);
		if (fabs(fs / ws - 1) > worst)
			worst = fabs(fs / ws - 1);
		if (fabs(as / ws - 1) > worst_all)
			worst_all = fabs(as / ws - 1);
	}
	/* Per node: first choices against expectation (Poisson noise). */
	double lo = 1e9, hi = 0;

	for (unsigned i = 0; i < n; i++) {
		double e = ncids * c.nodes[i].weight / total;
		double r = per_node[i] / e;

		lo = r < lo ? r : lo;
		hi = r > hi ? r : hi;
	}
	printf("  per node first choices / expected: min %.2f max %.2f "
	       "(expected per weight-1 node %.1f)\n",
	       lo, hi, ncids / total);
	printf("  largest deviation from weight share: first %.2f%%, "
	       "all picks %.2f%%\n",
	       100 * worst, 100 * worst_all);
	free(per_node);
	pl_map_free(m);
	cluster_free(&c);
	*all_dev = worst_all;
	return worst;
}

static void test_balance(void)
{
	static const double w124[] = {1, 2, 4};
	static const double small[] = {1, 1, 2, 2, 4, 4, 1, 2};
	double all_dev, dev;

	dev = balance(1000, w124, 3, 200000, 6, &all_dev);
	CHECK(dev < 0.03);
	CHECK(all_dev < 0.03);

	/* A small cluster, for the record: with 6 of 8 nodes per block,
	 * heavy nodes cannot hold more than one fragment of a block, so all
	 * picks flatten towards equal shares; first choices stay exact. */
	dev = balance(8, small, 8, 200000, 6, &all_dev);
	CHECK(dev < 0.03);
}

/* ---- movement ---- */

struct moves {
	unsigned long first, first_bad, set, pos, total;
};

/* Compare placements of @want on maps @a and @b (b = a plus or minus the
 * node @changed) for the same CIDs. first: CIDs whose first choice changed;
 * first_bad: those where neither choice is @changed (HRW forbids it);
 * set: (CID, slot) pairs whose node left the set; pos: (CID, i) pairs with
 * a different node at position i. */
static void movement(const struct pl_map *a, const struct pl_map *b,
		     const char *changed, const struct pl_node *na,
		     const struct pl_node *nb, unsigned ncids, unsigned want,
		     struct moves *mv)
{
	unsigned oa[16], ob[16];
	uint64_t s = 777;

	memset(mv, 0, sizeof(*mv));
	for (unsigned k = 0; k < ncids; k++) {
		struct blk_cid cid;

		random_cid(&cid, &s);
		pl_place(a, &cid, want, oa, NULL);
		pl_place(b, &cid, want, ob, NULL);
		if (strcmp(na[oa[0]].name, nb[ob[0]].name)) {
			mv->first++;
			if (strcmp(na[oa[0]].name, changed) &&
			    strcmp(nb[ob[0]].name, changed))
				mv->first_bad++;
		}
		for (unsigned i = 0; i < want; i++) {
			bool kept = false;

			for (unsigned j = 0; j < want; j++)
				if (!strcmp(na[oa[i]].name, nb[ob[j]].name))
					kept = true;
			mv->set += !kept;
			mv->pos += !!strcmp(na[oa[i]].name, nb[ob[i]].name);
		}
	}
	mv->total = ncids;
}

static void report_moves(const char *what, const struct moves *mv,
			 unsigned want, double ideal, bool strict)
{
	double first = (double)mv->first / mv->total;
	double set = (double)mv->set / ((double)mv->total * want);
	double pos = (double)mv->pos / ((double)mv->total * want);

	printf("  %-24s ideal %.3f%%  first choice %.3f%% (%.2fx)  "
	       "%u-set %.3f%% (%.2fx)  by position %.3f%% (%.2fx)\n",
	       what, 100 * ideal, 100 * first, first / ideal, want, 100 * set,
	       set / ideal, 100 * pos, pos / ideal);
	CHECK(mv->first_bad == 0);
	CHECK(first <= 1.2 * ideal && first >= 0.8 * ideal);
	if (strict)
		CHECK(set <= 1.2 * ideal && set >= 0.8 * ideal);
}

/* Clusters of @n nodes in @zones zones (0: none), weights cycling through
 * @weights; node @victim leaves, and a new node of weight @new_w joins
 * (in zone z0). The set bound is checked only without zones. */
static void test_movement_case(unsigned n, unsigned zones,
			       const double *weights, unsigned nw,
			       unsigned victim, double new_w)
{
	const unsigned ncids = 200000, want = 6;
	struct cluster c;
	struct pl_node *less, *more;
	struct pl_map *m, *m_less, *m_more;
	struct moves mv;
	double total = 0;

	cluster_init(&c, n, zones, weights, nw);
	for (unsigned i = 0; i < n; i++)
		total += c.nodes[i].weight;
	less = xmalloc(n * sizeof(*less));
	more = xmalloc((n + 1) * sizeof(*more));
	memcpy(less, c.nodes, n * sizeof(*less));
	less[victim] = less[n - 1]; /* order changes too: it must not matter */
	memcpy(more, c.nodes, n * sizeof(*more));
	more[n] = (struct pl_node){"newcomer", zones ? "z0" : NULL, new_w};
	m = map_new(c.nodes, n);
	m_less = map_new(less, n - 1);
	m_more = map_new(more, n + 1);

	printf("movement: %u nodes, %u zones (0: none; weights", n, zones);
	for (unsigned i = 0; i < nw; i++)
		printf(" %g", weights[i]);
	printf("), %u CIDs, %u picks; ideal = the changed node's weight "
	       "share\n",
	       ncids, want);
	char what[64];

	movement(m, m_less, c.nodes[victim].name, c.nodes, less, ncids, want,
		 &mv);
	snprintf(what, sizeof(what),
		 "leave (weight %g):", c.nodes[victim].weight);
	report_moves(what, &mv, want, c.nodes[victim].weight / total,
		     zones == 0);
	movement(m, m_more, "newcomer", c.nodes, more, ncids, want, &mv);
	snprintf(what, sizeof(what), "join (weight %g):", new_w);
	report_moves(what, &mv, want, new_w / (total + new_w), zones == 0);
	pl_map_free(m);
	pl_map_free(m_less);
	pl_map_free(m_more);
	free(less);
	free(more);
	cluster_free(&c);
}

int main(void)
{
	test_invalid();
	test_ln();
	test_known_answers();
	test_reference();
	test_shuffle();
	test_zones();
	test_balance();
	test_movement_case(100, 0, (const double[]){1}, 1, 17, 1);
	test_movement_case(60, 0, (const double[]){1, 2, 4}, 3, 17, 4);
	test_movement_case(60, 4, (const double[]){1, 2, 4}, 3, 17, 4);
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
