/* How blocks lie on the cluster: the nodes, the placement, the policy and
 * its codec, as the uploader and the fetcher both see them. */
#pragma once

#include <stdint.h>

#include "blocks/store/store.h"
#include "ec/codec.h"
#include "net/cluster/config.h"
#include "net/cluster/placement.h"

/* Set up by the engine; read-only, and every pointer outlives the users. */
struct cl_layout {
	/* The local block store (block lengths, the new-block log). */
	struct blk_store *store;
	const struct pl_map *pl;  /* placement over the @n nodes */
	struct ec_codec *codec;	  /* the policy's K+M codec when K > 1 */
	const char *const *names; /* node names, for messages */
	unsigned n;		  /* nodes */
	unsigned k, m;		  /* the policy: K data + M parity */
	uint32_t ec_min;	  /* K > 1: shorter blocks are M+1 copies */
};

/* How a block of @len bytes is coded under @l's policy
 * (cl_block_coding). */
static inline void cl_layout_coding(const struct cl_layout *l, uint64_t len,
				    unsigned *k, unsigned *m)
{
	cl_block_coding(l->k, l->m, l->ec_min, len, k, m);
}
