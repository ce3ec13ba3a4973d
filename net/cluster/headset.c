/* Reading heads from the nodes; see headset.h. */
#include "net/cluster/headset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/log.h"

int cl_head_check(const struct cl_cluster *cl, const uint8_t *rec, size_t len,
		  uint64_t seq, struct blk_head *out, char *why, size_t whylen)
{
	int ret = blk_head_decode(out, rec, len);

	if (ret == -ENOKEY) {
		snprintf(why, whylen, "an unsigned head");
		return -EBADMSG;
	}
	if (ret) {
		snprintf(why, whylen, "a malformed head");
		return -EBADMSG;
	}
	if (memcmp(out->fs, cl->fs_id, CL_FS_ID_LEN)) {
		snprintf(why, whylen, "a head of another filesystem");
		return -EBADMSG;
	}
	if (blk_head_verify(out, cl->fs_public_key)) {
		snprintf(why, whylen,
			 "a forged head (seq %llu: its signature does not "
			 "verify with the filesystem's key)",
			 (unsigned long long)out->seq);
		return -EBADMSG;
	}
	if (seq && out->seq != seq) {
		snprintf(why, whylen, "head %llu when asked for %llu",
			 (unsigned long long)out->seq, (unsigned long long)seq);
		return -EBADMSG;
	}
	return 0;
}

/* Check one HEAD_GET result: 0 with @out filled, -ENOENT (the node has
 * none), or another error (logged when the node lied). */
static int take(const struct cl_cluster *cl, const struct net_op_result *r,
		uint64_t seq, struct cl_head_info *out)
{
	char why[160];

	if (!r)
		return -ETIMEDOUT;
	if (r->status)
		return r->status;
	if (cl_head_check(cl, r->data, r->len, seq, &out->head, why,
			  sizeof(why))) {
		blk_log_warn(
		    "heads: node %s answered %s; ignored",
		    r->peer < cl->nnodes ? cl->nodes[r->peer].name : "?", why);
		return -EBADMSG;
	}
	blk_head_cid(r->data, r->len, &out->cid);
	out->node = r->peer;
	return 0;
}

/* Ask every node for head @seq (0: its latest) and keep the valid answer
 * of the highest seq. */
static int ask_all(struct net_client *c, const struct cl_cluster *cl,
		   uint64_t seq, unsigned timeout_ms, struct cl_head_info *out,
		   uint8_t *rec, size_t *len)
{
	struct net_batch *b;
	int ret = -EHOSTDOWN;
	bool found = false;

	if (!cl->has_fs)
		return -EOPNOTSUPP;
	b = net_batch_new(c);
	if (!b)
		return -ENOMEM;
	for (unsigned i = 0; i < cl->nnodes; i++) {
		struct net_op *op = net_op_new_head_get(cl->fs_id, seq);

		if (!op || net_batch_submit(b, i, op) < 0) {
			net_batch_free(b);
			return -ENOMEM;
		}
	}
	net_batch_wait(b, (int)(timeout_ms ? timeout_ms : CL_HEADS_TIMEOUT_MS));
	for (size_t i = 0; i < net_batch_count(b); i++) {
		const struct net_op_result *r =
		    net_op_result(net_batch_op(b, i));
		struct cl_head_info h;
		int st = take(cl, r, seq, &h);

		if (st == 0 && (!found || h.head.seq > out->head.seq)) {
			found = true;
			*out = h;
			if (rec)
				memcpy(rec, r->data, r->len);
			if (len)
				*len = r->len;
		} else if (st && st != -ETIMEDOUT && st != -EHOSTDOWN &&
			   st != -ECANCELED && ret == -EHOSTDOWN) {
			ret = -ENOENT; /* someone answered */
		}
	}
	net_batch_free(b);
	return found ? 0 : ret;
}

int cl_heads_latest(struct net_client *c, const struct cl_cluster *cl,
		    unsigned timeout_ms, struct cl_head_info *out, uint8_t *rec,
		    size_t *len)
{
	return ask_all(c, cl, 0, timeout_ms, out, rec, len);
}

int cl_heads_get(struct net_client *c, const struct cl_cluster *cl,
		 uint64_t seq, unsigned timeout_ms, struct cl_head_info *out,
		 uint8_t *rec, size_t *len)
{
	if (!seq)
		return -EINVAL;
	return ask_all(c, cl, seq, timeout_ms, out, rec, len);
}

/* Ask node @node for every seq in [lo, hi] not found yet (got[seq - lo]
 * false), CL_HEADS_LIST_WINDOW at a time, filling out[hi - seq]. */
static int list_from(struct net_client *c, const struct cl_cluster *cl,
		     unsigned node, uint64_t lo, uint64_t hi,
		     unsigned timeout_ms, struct cl_head_info *out, bool *got)
{
	uint64_t s = hi;

	while (s >= lo) {
		struct net_batch *b = net_batch_new(c);
		unsigned k = 0;

		if (!b)
			return -ENOMEM;
		for (; s >= lo && k < CL_HEADS_LIST_WINDOW; s--) {
			if (got[s - lo])
				continue;
			struct net_op *op = net_op_new_head_get(cl->fs_id, s);
			if (!op || net_batch_submit(b, node, op) < 0) {
				net_batch_free(b);
				return -ENOMEM;
			}
			k++;
		}
		net_batch_wait(b, (int)timeout_ms);
		for (size_t i = 0; i < net_batch_count(b); i++) {
			struct net_op *op = net_batch_op(b, i);
			const struct net_op_result *r = net_op_result(op);
			struct cl_head_info h;

			if (r && !r->status && r->len &&
			    take(cl, r, 0, &h) == 0 && h.head.seq >= lo &&
			    h.head.seq <= hi && !got[h.head.seq - lo]) {
				got[h.head.seq - lo] = true;
				out[hi - h.head.seq] = h;
			}
		}
		bool up = false;
		net_client_peer_state(c, node, &up, NULL);
		net_batch_free(b);
		if (!up) /* down: the other nodes are asked for the rest */
			return 0;
	}
	return 0;
}

int cl_heads_list(struct net_client *c, const struct cl_cluster *cl,
		  unsigned timeout_ms, struct cl_head_info **out, size_t *n,
		  size_t *missing)
{
	struct cl_head_info latest, *all;
	uint64_t top;
	bool *got;
	int ret;

	*out = NULL;
	*n = 0;
	if (missing)
		*missing = 0;
	if (!timeout_ms)
		timeout_ms = CL_HEADS_TIMEOUT_MS;
	ret = cl_heads_latest(c, cl, timeout_ms, &latest, NULL, NULL);
	if (ret == -ENOENT)
		return 0;
	if (ret)
		return ret;
	top = latest.head.seq;
	if (top > SIZE_MAX / sizeof(*all))
		return -ENOMEM;
	all = calloc((size_t)top, sizeof(*all));
	got = calloc((size_t)top, sizeof(*got));
	if (!all || !got) {
		free(all);
		free(got);
		return -ENOMEM;
	}
	all[0] = latest;
	got[top - 1] = true;
	/* The node with the latest first: it has every head before it. */
	ret = list_from(c, cl, latest.node, 1, top, timeout_ms, all, got);
	for (unsigned i = 0; !ret && i < cl->nnodes; i++) {
		size_t left = 0;
		for (uint64_t s = 0; s < top; s++)
			left += !got[s];
		if (!left)
			break;
		if (i != latest.node)
			ret = list_from(c, cl, i, 1, top, timeout_ms, all, got);
	}
	if (ret) {
		free(all);
		free(got);
		return ret;
	}
	/* Pack: newest first, without the seqs no node gave. */
	size_t m = 0;
	for (uint64_t s = top; s >= 1; s--) {
		if (got[s - 1])
			all[m++] = all[top - s];
		else if (missing)
			(*missing)++;
	}
	free(got);
	*out = all;
	*n = m;
	return 0;
}
