/* Placement: which nodes hold a block's fragments — weighted rendezvous
 * (HRW) hashing of the CID over the cluster's nodes, spread over zones. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "blocks/cid.h"

/* Design notes
 *
 * 1. Scores. Every node of positive weight w gets, for a CID, the score
 *    w / -ln(u), u in (0, 1) drawn from a 64-bit hash of (the node's name,
 *    the CID's digest): the logarithmic method of weighted rendezvous
 *    hashing (Schindelhauer and Schomaker 2005; Ceph's straw2). The best
 *    score of all nodes falls on a node with probability w / sum(w).
 *    Precisely: h = XXH3-64(LE64(XXH3-64(name)) || LE64(XXH3-64(digest))),
 *    u = (2 (h >> 12) + 1) / 2^53, and nodes compare by the key
 *    pl_neg_ln_unit(h) * (1 / w), the smallest key being the best score.
 *    Nodes are identified only by their name: the order of the array given
 *    to pl_map_new, addresses and keys do not matter. The codec of the CID
 *    is not hashed: a block's bytes decide its place.
 *
 * 2. Order. Within each zone, nodes are ranked by score (zone rank 0 is the
 *    best node of its zone). The placement order sorts the positive-weight
 *    nodes by (zone rank ascending, score descending); exact ties, which
 *    are rare, go to the lexicographically (bytewise) smaller name.
 *    So the order starts with the best node of each zone, best first, then
 *    the second best of each zone that has two, and so on. Consequences:
 *    - the first choice is the node of best score overall (zones do not
 *      skew first choices away from the weights);
 *    - the first min(want, Z) picks are in distinct zones, Z being the number
 *      of zones with a positive-weight node: two fragments share a zone only
 *      when there are fewer zones than fragments;
 *    - beyond that, picks spread as evenly as zone sizes allow: the largest
 *      number of picks in one zone is the smallest possible (with 3 zones of
 *      4 nodes and ec:4+2, two per zone, never 4+1+1).
 *    A node with a NULL or empty zone is a zone of its own (the node is the
 *    failure domain), so a cluster without zones is plain weighted HRW.
 *    Nodes of weight 0 are never placed (pure clients).
 *
 * 3. Stability. Without zones, a node joining or leaving changes a
 *    placement only where it enters or leaves the chosen set (the HRW
 *    minimum), and the nodes that stay keep their relative order. With
 *    zones, a node leaving also changes the zone ranks in its zone, so when
 *    zones are fewer than picks a pick can move between zones, and more
 *    than the minimum may move (test-placement prints how much: with 4
 *    zones of 15 nodes and 6 picks, no more than without zones).
 *    Positions after a node that left shift up by one, so callers must not
 *    assume fragment i lives on the i-th node after membership changed:
 *    fragments carry their index, and repair moves only the fragments whose
 *    node left the set.
 *
 * 4. Determinism. Every node must compute the same placement: hashes read
 *    bytes in a fixed order (XXH3, little-endian input), and the logarithm
 *    is computed with basic IEEE-754 double operations only (no libm, no
 *    fused multiply-add: net/ is built with -ffp-contract=off), which round
 *    identically on every platform with FLT_EVAL_METHOD 0 (placement.c
 *    refuses to build otherwise). The order is part of the on-disk format:
 *    changing it moves every block.
 *
 * 5. Cost. pl_map is read-only after pl_map_new and may be shared between
 *    threads. A placement costs one hash and one logarithm per positive-weight
 *    node, plus O(n) per zone round; it allocates nothing for up to
 *    PL_STACK_NODES positive-weight nodes.
 */

/* Node counts. CL_MAX_NODES is the one bound on a cluster: the cluster
 * file refuses more nodes (config.c), and the engine's per-node arrays
 * (engine, uploader, fetcher, fs/maint.c) are this long. Placement
 * computes without allocating for up to that many positive-weight nodes
 * (PL_STACK_NODES), so a cluster's placement never allocates. pl_map_new
 * itself takes maps of up to PL_MAX_NODES, a limit of this code only
 * (tests and tools; above PL_STACK_NODES a placement allocates). */
#define CL_MAX_NODES 256
#define PL_STACK_NODES ((unsigned)CL_MAX_NODES)
#define PL_MAX_NODES 65536u
#define PL_MIN_WEIGHT 1e-6 /* positive weights must lie in [MIN, MAX] */
#define PL_MAX_WEIGHT 1e15

struct pl_node {
	const char *name; /* unique, non-empty; the node's identity */
	const char *zone; /* failure domain; NULL or "" for a zone of its own */
	double weight;	  /* 0 for nodes that never hold fragments */
};

struct pl_map;

/* Build a map of @n nodes. Copies what it needs; @nodes may be freed after.
 * Indexes returned by pl_rank and pl_place refer to @nodes' order.
 * Returns 0 and sets *@out, or -EINVAL when @n is 0 or above PL_MAX_NODES,
 * a name is NULL, empty or given twice, or a weight is neither 0 nor in
 * [PL_MIN_WEIGHT, PL_MAX_WEIGHT] (NaN included); -ENOMEM when out of
 * memory. */
int pl_map_new(const struct pl_node *nodes, unsigned n, struct pl_map **out);

/* Free @m (NULL is fine). */
void pl_map_free(struct pl_map *m);

/* The number of positive-weight nodes: the most pl_rank can return. */
unsigned pl_map_nodes(const struct pl_map *m);

/* The number of zones with a positive-weight node (nodes without a zone
 * count as one each): placements of more nodes than this share zones. */
unsigned pl_map_zones(const struct pl_map *m);

/* Write the placement order for @cid (design note 2) into @out, as indexes
 * into the array given to pl_map_new, best first: all positive-weight nodes,
 * or the first @cap of them. A writer whose choice is down continues down
 * this list. Returns the number written, or -ENOMEM (only for maps of more
 * than PL_STACK_NODES positive-weight nodes). */
int pl_rank(const struct pl_map *m, const struct blk_cid *cid, unsigned *out,
	    unsigned cap);

/* The first @want entries of pl_rank: the nodes for a block's @want
 * fragments. Returns the number placed, fewer than @want when the cluster
 * has fewer positive-weight nodes, or -ENOMEM as pl_rank. Sets
 * *@zone_collision (may be NULL) to whether two of the placed nodes share a
 * zone — which happens only when the cluster has too few zones, and which
 * callers should report loudly. */
int pl_place(const struct pl_map *m, const struct blk_cid *cid, unsigned want,
	     unsigned *out, bool *zone_collision);

/* -ln(u) for the uniform u in (0, 1) that placement draws from the 64-bit
 * hash @h; platform-independent (design note 4). For the unit tests. */
double pl_neg_ln_unit(uint64_t h);
