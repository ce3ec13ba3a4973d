/* Which node a fetch asks for which fragment, in what order, and which
 * choices of K fragments a decode tries: pure functions, unit-tested. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct cl_cand {
	unsigned node;	/* index in the cluster file */
	unsigned index; /* fragment index asked of it */
	bool up;
	uint64_t latency; /* microseconds; 1 for the mount's own node */
};

/* The order in which a fetch asks for the fragments of a block coded @k +
 * @m whose placement is @rank[0..@nrank) (rendezvous order; fragment i's
 * home is rank[i]); @up and @latency are indexed by node. First the homes:
 * with K = 1 any copy will do, so the mount's own node (latency
 * NET_LOCAL_LATENCY_US), then the live copies about as near as the nearest
 * remote one in placement order (that spreads the reads), then the further
 * live ones nearest first, then the ones that are down (plan.c says what
 * "about as near" is); with K > 1 the data fragments first (no decoding),
 * then parity, live before down, index order otherwise. Then every further
 * node of the order (a spare) for every index: fragments written while their
 * home was down went there. Last, each home for every other index: the
 * earlier placement put a fragment whose home was down on the next free
 * home, and stores written then still hold such fragments. Writes at most
 * @max candidates; returns how many. */
unsigned cl_plan_fetch(const unsigned *rank, unsigned nrank, unsigned k,
		       unsigned m, const bool *up, const uint64_t *latency,
		       struct cl_cand *cand, unsigned max);

/* Choices of @k out of @n in lexicographic order: start with
 * pick = {0, 1, ..., k-1}; cl_next_choice moves to the next one and
 * returns false after the last. */
void cl_first_choice(unsigned *pick, unsigned k);
bool cl_next_choice(unsigned *pick, unsigned k, unsigned n);
