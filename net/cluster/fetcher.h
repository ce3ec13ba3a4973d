/* The fetcher: brings a block missing from the local store from its
 * placement, checked against its CID.
 *
 * K fragments are asked at once from the live nodes (for K = 1 the
 * fastest copy; for K > 1 the data fragments first; net/cluster/plan.h), one
 * more whenever they are slow or one fails (hedging). How a block is coded is
 * guessed from its length (the local store remembers it) and the policy,
 * and learnt from the first fragment that arrives: fragment headers carry
 * K, M and the block length, so blocks written as replicas, as K+M, or
 * under another policy all read back. Every answer is checked against the
 * CID: a wrong or hostile node cannot make a fetch return wrong bytes
 * (fetcher.c says how up to M liars are outvoted). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "net/client/client.h"
#include "net/cluster/layout.h"

struct cl_fetcher;

struct cl_fetcher_config {
	struct cl_layout lay;
	struct net_client *cl; /* peer i is node i */
};

/* Fetch counters. */
struct cl_fetch_stats {
	uint64_t blocks, bytes;
	uint64_t failures; /* fetches that gave up */
	uint64_t rejects;  /* wrong answers seen */
	uint64_t hedges;   /* fragment requests sent because others were slow */
};

/* @cfg's pointers must outlive the fetcher. 0 or -ENOMEM. */
int cl_fetcher_new(const struct cl_fetcher_config *cfg,
		   struct cl_fetcher **out);

/* Free; no fetch may be running. NULL is fine. */
void cl_fetcher_free(struct cl_fetcher *fe);

/* Fetch block @cid into a malloc'd *@data of *@len bytes, hashing to
 * @cid. Any thread, any number at once; waits on the network (at most
 * about 20 s), holding no lock but its own fetch's. 0, -EIO (no node
 * gave the right bytes in time, logged), or -ENOMEM. */
int cl_fetcher_fetch(struct cl_fetcher *fe, const struct blk_cid *cid,
		     void **data, size_t *len);

void cl_fetcher_stats(struct cl_fetcher *fe, struct cl_fetch_stats *st);

/* Fragment requests sent to node @node so far. */
uint64_t cl_fetcher_gets_sent(struct cl_fetcher *fe, unsigned node);
