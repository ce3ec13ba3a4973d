/* Fetch plans and decode choices; see plan.h. */
#include "fs/plan.h"

#include <stdlib.h>
#include <string.h>

#include "ec/fragment.h"

static int cand_cmp(const void *a, const void *b)
{
	const struct bfs_cand *x = a, *y = b;

	if (x->up != y->up)
		return x->up ? -1 : 1;
	if (x->latency != y->latency)
		return x->latency < y->latency ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

unsigned bfs_plan_fetch(const unsigned *rank, unsigned nrank, unsigned k,
			unsigned m, const bool *up, const uint64_t *latency,
			struct bfs_cand *cand, unsigned max)
{
	const unsigned want = k + m;
	unsigned nc = 0;

	if (want > EC_MAX_FRAGS)
		return 0;
	for (unsigned i = 0; i < nrank && i < want && nc < max; i++)
		cand[nc++] = (struct bfs_cand){rank[i], i, up[rank[i]],
					       latency[rank[i]]};
	if (k == 1) {
		qsort(cand, nc, sizeof(*cand), cand_cmp);
	} else {
		struct bfs_cand tmp[EC_MAX_FRAGS];
		unsigned n = 0;

		for (int pass = 0; pass < 2; pass++)
			for (unsigned i = 0; i < nc; i++)
				if ((pass == 0) == cand[i].up)
					tmp[n++] = cand[i];
		memcpy(cand, tmp, nc * sizeof(*cand));
	}
	for (unsigned i = want; i < nrank && nc + want <= max; i++)
		for (unsigned x = 0; x < want; x++)
			cand[nc++] = (struct bfs_cand){rank[i], x, up[rank[i]],
						       latency[rank[i]]};
	return nc;
}

void bfs_first_choice(unsigned *pick, unsigned k)
{
	for (unsigned i = 0; i < k; i++)
		pick[i] = i;
}

bool bfs_next_choice(unsigned *pick, unsigned k, unsigned n)
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
