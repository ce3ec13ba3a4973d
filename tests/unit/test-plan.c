/* Unit tests for fs/plan.c: the order in which a fetch asks nodes for
 * fragments, and the choices of K fragments a decode tries. */

#include "fs/plan.h"

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

/* K = 1: the copies' homes, live before down, nearest first (the mount's
 * own node answers in a function call: latency 1); then every further
 * node of the order for each index. */
static void test_replicas(void)
{
	const unsigned rank[] = {7, 2, 9, 4, 0, 11};
	struct bfs_cand c[MAXC];
	unsigned n;

	all_up();
	lat[9] = 1;   /* the mount's own node */
	up[7] = false; /* first home down */
	n = bfs_plan_fetch(rank, 6, 1, 2, up, lat, c, MAXC);
	CHECK(n == 3 + 3 * 3);
	CHECK(c[0].node == 9 && c[0].index == 2);
	CHECK(c[1].node == 2 && c[1].index == 1);
	CHECK(c[2].node == 7 && c[2].index == 0 && !c[2].up);
	/* then node 4, 0, 11, each for indexes 0, 1, 2 */
	for (unsigned i = 0; i < 3; i++)
		for (unsigned x = 0; x < 3; x++) {
			const struct bfs_cand *e = &c[3 + 3 * i + x];

			CHECK(e->node == rank[3 + i] && e->index == x);
		}
	/* no further node: just the homes */
	n = bfs_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC);
	CHECK(n == 3);
	/* the latency order decides among live homes */
	all_up();
	lat[2] = 5;
	n = bfs_plan_fetch(rank, 3, 1, 2, up, lat, c, MAXC);
	CHECK(n == 3 && c[0].node == 2 && c[1].node == 7 && c[2].node == 9);
}

/* K > 1: data fragments first in index order (no decode), then parity;
 * live before down; latency does not reorder them. */
static void test_coded(void)
{
	const unsigned rank[] = {3, 8, 1, 10, 5, 6, 0, 2};
	struct bfs_cand c[MAXC];
	unsigned n;

	all_up();
	lat[3] = 1;
	lat[6] = 1;
	n = bfs_plan_fetch(rank, 8, 4, 2, up, lat, c, MAXC);
	CHECK(n == 6 + 2 * 6);
	for (unsigned i = 0; i < 6; i++)
		CHECK(c[i].node == rank[i] && c[i].index == i);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned x = 0; x < 6; x++)
			CHECK(c[6 + 6 * i + x].node == rank[6 + i] &&
			      c[6 + 6 * i + x].index == x);

	/* two data homes down: the live data homes, then parity, then the
	 * dead ones */
	up[8] = false;
	up[10] = false;
	n = bfs_plan_fetch(rank, 6, 4, 2, up, lat, c, MAXC);
	CHECK(n == 6);
	const unsigned want_node[] = {3, 1, 5, 6, 8, 10};
	const unsigned want_index[] = {0, 2, 4, 5, 1, 3};
	for (unsigned i = 0; i < 6; i++)
		CHECK(c[i].node == want_node[i] && c[i].index == want_index[i]);
}

/* The output is bounded, and an impossible coding plans nothing. */
static void test_bounds(void)
{
	unsigned rank[NODES];
	struct bfs_cand c[MAXC];
	unsigned n;

	all_up();
	for (unsigned i = 0; i < NODES; i++)
		rank[i] = i;
	n = bfs_plan_fetch(rank, NODES, 4, 2, up, lat, c, 20);
	CHECK(n <= 20 && n >= 6);
	n = bfs_plan_fetch(rank, NODES, 4, 2, up, lat, c, 3);
	CHECK(n <= 3);
	n = bfs_plan_fetch(rank, NODES, 60, 10, up, lat, c, MAXC);
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

			bfs_first_choice(pick, k);
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
			} while (bfs_next_choice(pick, k, n) && count < 5000);
			CHECK(valid);
			CHECK(ordered);
			CHECK(count == binom(n, k));
		}
	}
}

int main(void)
{
	test_replicas();
	test_coded();
	test_bounds();
	test_choices();
	printf("plan: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
