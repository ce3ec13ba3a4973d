/* Unit tests for net/cluster/plan.c: the order in which a fetch asks nodes for
 * fragments, and the choices of K fragments a decode tries. */

#include "net/cluster/plan.h"

#include <stdio.h>
#include <string.h>

#include "tests/unit/check.h"

#define NODES 12
#define MAXC 256

static bool up[NODES];
static uint64_t lat[NODES];

static void all_up(void)
{
	for (unsigned i = 0; i < NODES; i++) {
		up[i] = true;
		lat[i] = 500 + 10 * i;
	}
}

/* K = 1: the copies' homes: the mount's own node (it answers in a
 * function call: latency 1), live copies about as near as the nearest in
 * placement order, further live ones nearest first, then down ones; then
 * every further node of the order for each index. */
static void test_replicas(void)
{
	const unsigned rank[] = {7, 2, 9, 4, 0, 11};
	struct cl_cand c[MAXC];
	unsigned n;

	all_up();
	lat[9] = 1;    /* the mount's own node */
	up[7] = false; /* first home down */
	n = cl_plan_fetch(rank, 6, 1, 2, up, lat, c, MAXC);
	CHECK(n == 3 + 3 * 3 + 3 * 2);
	CHECK(c[0].node == 9 && c[0].index == 2);
	CHECK(c[1].node == 2 && c[1].index == 1);
	CHECK(c[2].node == 7 && c[2].index == 0 && !c[2].up);
	/* then node 4, 0, 11, each for indexes 0, 1, 2 */
	for (unsigned i = 0; i < 3; i++)
		for (unsigned x = 0; x < 3; x++) {
			const struct cl_cand *e = &c[3 + 3 * i + x];

			CHECK(e->node == rank[3 + i] && e->index == x);
		}
	/* no further node: just the homes */
	n = cl_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC);
	CHECK(n == 9);
	/* live homes about as near as the nearest (500..610 us here) keep
	 * the placement order, whatever their latencies within that band */
	all_up();
	n = cl_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC);
	CHECK(n == 9 && c[0].node == 7 && c[1].node == 2 && c[2].node == 9);
	lat[7] = 1400; /* still within 500 + 1000 us */
	n = cl_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC);
	CHECK(n == 9 && c[0].node == 7 && c[1].node == 2 && c[2].node == 9);
	/* a far one goes after the near ones, the further the later */
	lat[7] = 9000;
	lat[2] = 4000;
	n = cl_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC);
	CHECK(n == 9 && c[0].node == 9 && c[1].node == 2 && c[2].node == 7);
	/* beyond a millisecond the band is twice the nearest */
	lat[9] = 3000;
	lat[2] = 5900;
	lat[7] = 6100;
	n = cl_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC);
	CHECK(n == 9 && c[0].node == 2 && c[1].node == 9 && c[2].node == 7);
	/* the mount's own copy first, then the near ones in placement order */
	all_up();
	lat[9] = 1;
	lat[2] = 480;
	n = cl_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC);
	CHECK(n == 9 && c[0].node == 9 && c[1].node == 7 && c[2].node == 2);
}

/* Over many blocks, placement order within the near band spreads the
 * first choice of a mount with no copy of its own over the nodes, while
 * strictly nearest-first would send it all to one node. */
static void test_replicas_spread(void)
{
	unsigned first[NODES] = {0};
	uint64_t s = 88172645463325252ull;
	const unsigned blocks = 12000;

	all_up();
	for (unsigned b = 0; b < blocks; b++) {
		unsigned rank[3], n = 0;
		struct cl_cand c[MAXC];

		/* three distinct pseudo-random homes, as rendezvous gives */
		while (n < 3) {
			unsigned x;
			bool dup = false;

			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			x = (unsigned)(s % NODES);
			for (unsigned i = 0; i < n; i++)
				dup |= rank[i] == x;
			if (!dup)
				rank[n++] = x;
		}
		CHECK(cl_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC) == 9);
		first[c[0].node]++;
	}
	for (unsigned i = 0; i < NODES; i++)
		CHECK(first[i] > blocks / NODES * 8 / 10 &&
		      first[i] < blocks / NODES * 12 / 10);
}

/* K > 1: data fragments first in index order (no decode), then parity;
 * live before down; latency does not reorder them. */
static void test_coded(void)
{
	const unsigned rank[] = {3, 8, 1, 10, 5, 6, 0, 2};
	struct cl_cand c[MAXC];
	unsigned n;

	all_up();
	lat[3] = 1;
	lat[6] = 1;
	n = cl_plan_fetch(rank, 8, 4, 2, up, lat, c, MAXC);
	CHECK(n == 6 + 2 * 6 + 6 * 5);
	for (unsigned i = 0; i < 6; i++)
		CHECK(c[i].node == rank[i] && c[i].index == i);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned x = 0; x < 6; x++)
			CHECK(c[6 + 6 * i + x].node == rank[6 + i] &&
			      c[6 + 6 * i + x].index == x);
	/* last, each home for every other index, once each */
	for (unsigned i = 0; i < 6; i++) {
		unsigned seen = 0;

		for (unsigned x = 18; x < n; x++)
			if (c[x].node == rank[i]) {
				CHECK(c[x].index != i);
				seen |= 1u << c[x].index;
			}
		CHECK(seen == (0x3fu & ~(1u << i)));
	}

	/* two data homes down: the live data homes, then parity, then the
	 * dead ones */
	up[8] = false;
	up[10] = false;
	n = cl_plan_fetch(rank, 6, 4, 2, up, lat, c, MAXC);
	CHECK(n == 6 + 6 * 5);
	const unsigned want_node[] = {3, 1, 5, 6, 8, 10};
	const unsigned want_index[] = {0, 2, 4, 5, 1, 3};
	for (unsigned i = 0; i < 6; i++)
		CHECK(c[i].node == want_node[i] && c[i].index == want_index[i]);
}

/* The output is bounded, and an impossible coding plans nothing. */
static void test_bounds(void)
{
	unsigned rank[NODES];
	struct cl_cand c[MAXC];
	unsigned n;

	all_up();
	for (unsigned i = 0; i < NODES; i++)
		rank[i] = i;
	n = cl_plan_fetch(rank, NODES, 4, 2, up, lat, c, 20);
	CHECK(n <= 20 && n >= 6);
	n = cl_plan_fetch(rank, NODES, 4, 2, up, lat, c, 3);
	CHECK(n <= 3);
	n = cl_plan_fetch(rank, NODES, 60, 10, up, lat, c, MAXC);
	CHECK(n == 0);
}

static unsigned binom(unsigned n, unsigned k)
{
	unsigned long long r = 1;

	for (unsigned i = 1; i <= k; i++)
		r = r * (n - k + i) / i;
	return (unsigned)r;
}

/* Every choice of k out of n exactly once, in lexicographic order. */
static void test_choices(void)
{
	for (unsigned n = 1; n <= 14; n++) {
		for (unsigned k = 1; k <= n; k++) {
			unsigned pick[16], prev[16], count = 0;
			bool ordered = true, valid = true;

			cl_first_choice(pick, k);
			do {
				for (unsigned i = 0; i < k; i++)
					if (pick[i] >= n ||
					    (i && pick[i] <= pick[i - 1]))
						valid = false;
				if (count) {
					unsigned j = 0;

					while (j < k && prev[j] == pick[j])
						j++;
					if (j == k || prev[j] > pick[j])
						ordered = false;
				}
				memcpy(prev, pick, k * sizeof(*pick));
				count++;
			} while (cl_next_choice(pick, k, n) && count < 5000);
			CHECK(valid);
			CHECK(ordered);
			CHECK(count == binom(n, k));
		}
	}
}

int main(void)
{
	test_replicas();
	test_replicas_spread();
	test_coded();
	test_bounds();
	test_choices();
	printf("plan: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
