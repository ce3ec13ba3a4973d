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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "ec/fragment.h"
#include "net/cluster/layout.h"

struct cl_fetcher;

/* A node's answer to one fragment GET, handed to the fetcher by the
 * completion of cl_fetch_ops.get. The fetcher reads it, keeps it as long
 * as it needs the bytes, and gives it back with @release (once, from any
 * thread). */
struct cl_frag_reply {
	/* 0, or a negative errno: -ENOENT (the node has no such fragment),
	 * -EBADMSG (the answer failed the checks below), -EHOSTDOWN,
	 * -ETIMEDOUT, ... */
	int status;
	unsigned node; /* who answered: the node asked */
	/* Status 0: the fragment's header, checked against the @len bytes
	 * at @data (its checksum), naming the CID and index asked for. The
	 * bytes may still lie: the fetcher checks them against the CID. */
	struct ec_frag_hdr frag;
	const void *data;
	size_t len;
	void (*release)(struct cl_frag_reply *r);
};

/* Runs once per GET that cl_fetch_ops.get accepted, on a thread other
 * than the caller's and never inside the get call; must not block. */
typedef void (*cl_get_done_fn)(struct cl_frag_reply *r, void *arg);

/* What the fetcher needs of the nodes. Every function is thread-safe and
 * none waits on the network. The engine (net/cluster/engine.c)
 * implements them with net/client/client.h, test-fetcher.c with fakes. */
struct cl_fetch_ops {
	/* Ask node @node for fragment @index of block @cid. 0: @done(reply,
	 * @done_arg) follows; -ENOMEM: nothing asked (the fetch gives up
	 * asking); another negative errno: nothing asked (the fetcher asks
	 * the next candidate). Called with no lock of the fetcher's held. */
	int (*get)(void *arg, unsigned node, const struct blk_cid *cid,
		   unsigned index, cl_get_done_fn done, void *done_arg);
	/* Whether node @node is up as last seen. */
	bool (*up)(void *arg, unsigned node);
	/* Node @node's smoothed round trip in microseconds (0: not known
	 * yet; NET_LOCAL_LATENCY_US for the mount's own node). */
	uint64_t (*latency_us)(void *arg, unsigned node);
	void *arg;
};

struct cl_fetcher_config {
	struct cl_layout lay; /* lay.store may be NULL: no length to guess by */
	struct cl_fetch_ops ops;
	unsigned hedge_ms;    /* ask one more after this long (0: 300) */
	unsigned deadline_ms; /* a fetch gives up after this (0: 20 s) */
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
 * the deadline, 20 s), holding no lock but its own fetch's. 0, -EIO (no node
 * gave the right bytes in time, logged), or -ENOMEM. */
int cl_fetcher_fetch(struct cl_fetcher *fe, const struct blk_cid *cid,
		     void **data, size_t *len);

void cl_fetcher_stats(struct cl_fetcher *fe, struct cl_fetch_stats *st);

/* Fragment requests sent to node @node so far. */
uint64_t cl_fetcher_gets_sent(struct cl_fetcher *fe, unsigned node);
