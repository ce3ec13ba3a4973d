/* Reading a filesystem's heads from the cluster's nodes: the latest valid
 * head among what every node answers, a head by seq from any node that
 * has it, and every head, newest first. What export, 'snapshot list', the
 * mount and the commit use to learn where the filesystem stands.
 *
 * A node is not trusted: every record it answers is decoded
 * (blk_head_decode), must be signed, name the cluster's filesystem
 * ([filesystem] id), verify with its public key and carry the seq asked
 * for; anything else is ignored and logged (blk_log_warn) with the node's
 * name. Nodes that lag (an older head, or none) are fine; nodes down or
 * silent are skipped when the deadline passes. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/dag/head.h"
#include "net/client/client.h"
#include "net/cluster/config.h"

/* The deadline of one round of HEAD_GETs when the caller gives 0. */
#define CL_HEADS_TIMEOUT_MS 3000
/* HEAD_GETs in flight at once while listing. */
#define CL_HEADS_LIST_WINDOW 256

/* A head, checked, and where it came from. */
struct cl_head_info {
	struct blk_head head;
	struct blk_cid cid; /* of its record (blk_head_cid) */
	unsigned node;	    /* the node (index in the cluster file) it came
			       from */
};

/* Check @len bytes at @rec as a head of @cl's filesystem (seq @seq, or
 * any for 0) into @out. 0, or -EBADMSG with what is wrong in @why. */
int cl_head_check(const struct cl_cluster *cl, const uint8_t *rec, size_t len,
		  uint64_t seq, struct blk_head *out, char *why, size_t whylen);

/* The valid head of highest seq that any node of @cl (peer i of @c is
 * node i) answers within @timeout_ms (0: CL_HEADS_TIMEOUT_MS) into @out,
 * and its record into @rec (BLK_HEAD_MAX_BYTES; may be NULL) and *@len.
 * 0; -ENOENT: no node holds a valid head (the filesystem has none yet);
 * -EHOSTDOWN: no node answered at all; -EOPNOTSUPP: @cl has no
 * [filesystem]; -ENOMEM. */
int cl_heads_latest(struct net_client *c, const struct cl_cluster *cl,
		    unsigned timeout_ms, struct cl_head_info *out, uint8_t *rec,
		    size_t *len);

/* The head @seq (>= 1) from any node that has it (all are asked at
 * once; the first valid answer wins), as cl_heads_latest. -ENOENT: none
 * has it validly. */
int cl_heads_get(struct net_client *c, const struct cl_cluster *cl,
		 uint64_t seq, unsigned timeout_ms, struct cl_head_info *out,
		 uint8_t *rec, size_t *len);

/* Every head from the latest down to seq 1, newest first, into a
 * malloc'd array *@out of *@n (free it). Each seq is asked of the node
 * that gave the latest head first, then of the others; a seq no node
 * gives validly within the deadline is left out and counted in
 * *@missing (may be NULL). 0 (also with no heads: *@n 0), or the errors
 * of cl_heads_latest but -ENOENT. */
int cl_heads_list(struct net_client *c, const struct cl_cluster *cl,
		  unsigned timeout_ms, struct cl_head_info **out, size_t *n,
		  size_t *missing);
