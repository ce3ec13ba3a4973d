/* Fetch plans and decode choices; see plan.h. */
#include "net/cluster/plan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ec/fragment.h"
#include "net/client/client.h"

/* K = 1: which copy to ask first. The mount's own node (latency
 * NET_LOCAL_LATENCY_US: a function call) first; then the live copies that
 * are about as near as the nearest remote one, in placement order; then
 * live ones further away, nearest first; then the ones that are down.
 * Placement order among the near ones spreads the reads: each copy's node
 * is first for its share of the blocks, where sorting by latency alone
 * would send every remote read of a mount to whichever node answers its
 * heartbeats a few microseconds faster. "About as near": within twice the
 * nearest latency or NEAR_SLACK_US of it, whichever is more, so loopback and
 * LAN jitter do not count while a node across a WAN link, or one whose
 * heartbeats are slow because it is busy, does. */
#define NEAR_SLACK_US 1000

enum tier { TIER_LOCAL, TIER_NEAR, TIER_FAR, TIER_DOWN };

struct ranked {
	struct cl_cand c;
	enum tier tier;
};

static int ranked_cmp(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	if (x->tier != TIER_NEAR && x->c.latency != y->c.latency)
		return x->c.latency < y->c.latency ? -1 : 1;
	return x->c.index < y->c.index ? -1 : x->c.index > y->c.index;
}

static void order_copies(struct cl_cand *cand, unsigned nc)
{
	struct ranked r[EC_MAX_FRAGS];
	uint64_t best = UINT64_MAX, near;

	for (unsigned i = 0; i < nc; i++)
		if (cand[i].up && cand[i].latency > NET_LOCAL_LATENCY_US &&
		    cand[i].latency < best)
			best = cand[i].latency;
	near = best == UINT64_MAX     ? 0
	       : best > NEAR_SLACK_US ? 2 * best
				      : best + NEAR_SLACK_US;
	for (unsigned i = 0; i < nc; i++) {
		r[i].c = cand[i];
		if (!cand[i].up)
			r[i].tier = TIER_DOWN;
		else if (cand[i].latency == NET_LOCAL_LATENCY_US)
			r[i].tier = TIER_LOCAL;
		else if (cand[i].latency <= near)
			r[i].tier = TIER_NEAR;
		else
			r[i].tier = TIER_FAR;
	}
	qsort(r, nc, sizeof(r[0]), ranked_cmp);
	for (unsigned i = 0; i < nc; i++)
		cand[i] = r[i].c;
}

unsigned cl_plan_fetch(const unsigned *rank, unsigned nrank, unsigned k,
		       unsigned m, const bool *up, const uint64_t *latency,
		       struct cl_cand *cand, unsigned max)
{
	const unsigned want = k + m;
	unsigned nc = 0;

	if (want > EC_MAX_FRAGS)
		return 0;
	for (unsigned i = 0; i < nrank && i < want && nc < max; i++)
		cand[nc++] =
		    (struct cl_cand){rank[i], i, up[rank[i]], latency[rank[i]]};
	if (k == 1) {
		order_copies(cand, nc);
	} else {
		struct cl_cand tmp[EC_MAX_FRAGS];
		unsigned n = 0;

		for (int pass = 0; pass < 2; pass++)
			for (unsigned i = 0; i < nc; i++)
				if ((pass == 0) == cand[i].up)
					tmp[n++] = cand[i];
		memcpy(cand, tmp, nc * sizeof(*cand));
	}
	for (unsigned i = want; i < nrank && nc + want <= max; i++)
		for (unsigned x = 0; x < want; x++)
			cand[nc++] = (struct cl_cand){rank[i], x, up[rank[i]],
						      latency[rank[i]]};
	/* Last, the homes for the other indices (plan.h): asked only when
	 * all the above fall short. */
	for (unsigned i = 0; i < nrank && i < want; i++)
		for (unsigned x = 0; x < want && nc < max; x++)
			if (x != i)
				cand[nc++] = (struct cl_cand){
				    rank[i], x, up[rank[i]], latency[rank[i]]};
	return nc;
}

void cl_first_choice(unsigned *pick, unsigned k)
{
	for (unsigned i = 0; i < k; i++)
		pick[i] = i;
}

bool cl_next_choice(unsigned *pick, unsigned k, unsigned n)
{
	int i = (int)k - 1;

	while (i >= 0 && pick[i] == n - k + (unsigned)i)
		i--;
	if (i < 0)
		return false;
	pick[i]++;
	for (unsigned j = (unsigned)i + 1; j < k; j++)
		pick[j] = pick[j - 1] + 1;
	return true;
}
