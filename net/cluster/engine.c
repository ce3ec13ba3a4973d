/* The cluster engine: owns the server, the client, the uploader, the
 * fetcher and the block cache, and wires them together; see engine.h.
 *
 * Locks: none here. Every field of struct cl_engine is set by
 * cl_engine_open and read-only until cl_engine_close. The objects it owns
 * each have their own lock, and no call of the engine holds two of them:
 * the uploader calls the node functions below (net_client_submit and
 * net_client_peer_state, which take the client's queue lock) with its
 * lock held, the fetcher with none, and the client runs completions
 * holding none of its own. */
#include "net/cluster/engine.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/log.h"
#include "ec/codec.h"
#include "net/client/client.h"
#include "net/cluster/bcache.h"
#include "net/cluster/cluster-net.h"
#include "net/cluster/fetcher.h"
#include "net/cluster/placement.h"
#include "net/cluster/uploader.h"
#include "net/server/heads.h"
#include "net/server/server.h"

struct cl_engine {
	struct cl_engine_config cfg;
	const char *names[CL_MAX_NODES]; /* node i's name */
	unsigned n;
	int self; /* this node's index, -1 if not in the cluster file */
	struct pl_map *pl;
	struct ec_codec *codec; /* K > 1 */
	struct net_server *srv; /* when serving */
	struct net_client *cl;
	struct cl_uploader *up;
	struct cl_fetcher *fe;
	struct cl_bcache *cache;
};

/* ---- the uploader's node functions (net/cluster/uploader.h) ------- */

static void put_done(struct net_op *op, void *arg)
{
	struct cl_send *s = arg;
	const struct net_op_result *r = net_op_result(op);
	int status = r ? r->status : -EIO;

	net_op_free(op);
	s->done(s, status);
}

static int node_send(void *arg, unsigned node,
		     const uint8_t hdr[EC_FRAG_HDR_LEN], struct net_buf *buf,
		     const void *data, size_t len, struct cl_send *s)
{
	struct cl_engine *p = arg;
	struct net_op *op = net_op_new_put(hdr, buf, data, len);
	int ret;

	if (!op)
		return -ENOMEM;
	ret = net_client_submit(p->cl, node, op, put_done, s);
	if (ret < 0)
		net_op_free(op); /* still ours; releases the bytes */
	return ret;
}

static int node_sync(void *arg, const bool *nodes, unsigned n,
		     unsigned timeout_ms, int *status)
{
	struct cl_engine *p = arg;
	struct net_batch *b = net_batch_new(p->cl);
	int ret = 0;

	if (!b)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct net_op *op;

		if (!nodes[i])
			continue;
		op = net_op_new_sync();
		if (!op || net_batch_submit(b, i, op) < 0)
			ret = -ENOMEM;
	}
	net_batch_wait(b, timeout_ms < INT_MAX ? (int)timeout_ms : INT_MAX);
	for (size_t i = 0; i < net_batch_count(b); i++) {
		const struct net_op_result *r =
		    net_op_result(net_batch_op(b, i));

		if (r)
			status[r->peer] = r->status;
	}
	net_batch_free(b);
	return ret;
}

static bool node_up(void *arg, unsigned node)
{
	struct cl_engine *p = arg;
	bool up = false;

	net_client_peer_state(p->cl, node, &up, NULL);
	return up;
}

/* ---- the fetcher's node functions (net/cluster/fetcher.h) --------- */

/* One GET: the reply the fetcher sees, and the op that owns its bytes. */
struct node_get {
	struct cl_frag_reply r;
	struct net_op *op;
	cl_get_done_fn done;
	void *done_arg;
};

static void node_get_release(struct cl_frag_reply *r)
{
	struct node_get *g = (struct node_get *)r; /* r is its first field */

	net_op_free(g->op);
	free(g);
}

static void node_get_done(struct net_op *op, void *arg)
{
	struct node_get *g = arg;
	const struct net_op_result *res = net_op_result(op);

	g->r.status = res ? res->status : -EIO;
	if (res && res->status == 0) {
		g->r.frag = res->frag;
		g->r.data = res->data;
		g->r.len = res->len;
	}
	g->done(&g->r, g->done_arg);
}

static int node_get(void *arg, unsigned node, const struct blk_cid *cid,
		    unsigned index, cl_get_done_fn done, void *done_arg)
{
	struct cl_engine *p = arg;
	struct net_fref ref = {.cid = *cid, .index = (uint8_t)index};
	struct node_get *g = calloc(1, sizeof(*g));
	int ret;

	if (!g)
		return -ENOMEM;
	g->op = net_op_new_get(&ref);
	if (!g->op) {
		free(g);
		return -ENOMEM;
	}
	g->r.node = node;
	g->r.release = node_get_release;
	g->done = done;
	g->done_arg = done_arg;
	ret = net_client_submit(p->cl, node, g->op, node_get_done, g);
	if (ret < 0)
		node_get_release(&g->r); /* the op is still ours */
	return ret == -ENOMEM ? -EIO : ret;
}

static uint64_t node_latency(void *arg, unsigned node)
{
	struct cl_engine *p = arg;
	uint64_t lat = 0;

	net_client_peer_state(p->cl, node, NULL, &lat);
	return lat;
}

/* ---- calls -------------------------------------------------------------- */

void cl_engine_kick(struct cl_engine *p)
{
	if (p->up)
		cl_uploader_kick(p->up);
}

uint64_t cl_engine_backlog(struct cl_engine *p)
{
	return p->up ? cl_uploader_backlog(p->up) : 0;
}

void cl_engine_throttle(struct cl_engine *p)
{
	if (p->up)
		cl_uploader_throttle(p->up);
}

struct net_client *cl_engine_client(struct cl_engine *p)
{
	return p->cl;
}

int cl_engine_barrier(struct cl_engine *p)
{
	return p->up ? cl_uploader_barrier(p->up) : 0;
}

void cl_engine_closing(struct cl_engine *p)
{
	if (p && p->up)
		cl_uploader_closing(p->up);
}

static int cache_fetch(void *arg, const struct blk_cid *cid, void **data,
		       size_t *len)
{
	struct cl_engine *p = arg;

	return cl_fetcher_fetch(p->fe, cid, data, len);
}

/* cl_uploader_config.heal: a block to upload whose local copy is damaged
 * comes back from the nodes (the fetch verifies it against its CID) and
 * is written over the damaged copy. */
static int heal_block(void *arg, const struct blk_cid *cid)
{
	struct cl_engine *p = arg;
	char name[BLK_CID_STR_MAX];
	void *data;
	size_t len;
	int ret = cl_fetcher_fetch(p->fe, cid, &data, &len);

	if (!ret) {
		ret = blk_store_rewrite(p->cfg.store, cid, data, len);
		free(data);
	}
	if (ret)
		return ret; /* the uploader says so, once */
	blk_cid_to_string(cid, name);
	blk_log_warn("upload: block %s: the local copy was damaged; healed "
		     "from the cluster",
		     name);
	return 0;
}

int cl_engine_fetch(struct cl_engine *p, const struct blk_cid *cid, void **data,
		    size_t *len)
{
	int ret = cl_bcache_take(p->cache, cid, data, len);

	if (ret != -ENOENT)
		return ret;
	ret = cl_fetcher_fetch(p->fe, cid, data, len);
	if (ret == 0)
		cl_bcache_keep(p->cache, cid, *data, *len);
	return ret;
}

void cl_engine_prefetch(struct cl_engine *p, const struct blk_cid *cids,
			size_t n)
{
	cl_bcache_prefetch(p->cache, cids, n);
}

void cl_engine_drop_taken(struct cl_engine *p)
{
	cl_bcache_drop_taken(p->cache);
}

int cl_engine_lost(struct cl_engine *p, uint64_t *lost, const char **names,
		   unsigned *n)
{
	struct net_batch *b = net_batch_new(p->cl);

	if (!b)
		return -ENOMEM;
	*n = p->n;
	for (unsigned i = 0; i < p->n; i++) {
		bool up = false;
		uint64_t lat;

		lost[i] = UINT64_MAX;
		names[i] = p->names[i];
		net_client_peer_state(p->cl, i, &up, &lat);
		if (up) /* a node seen down is not waited for */
			net_batch_submit(b, i, net_op_new_status());
	}
	net_batch_wait(b, 2000);
	for (size_t i = 0; i < net_batch_count(b); i++) {
		const struct net_op_result *r =
		    net_op_result(net_batch_op(b, i));
		if (r && r->status == 0 && r->op == NET_OP_STATUS &&
		    r->peer < p->n)
			lost[r->peer] = r->st.lost;
	}
	net_batch_free(b);
	return 0;
}

int64_t cl_engine_describe(struct cl_engine *p, char *buf, size_t size)
{
	size_t len = 0;

	for (unsigned i = 0; i < p->n; i++) {
		bool up = false;
		uint64_t lat = 0;
		int n;

		net_client_peer_state(p->cl, i, &up, &lat);
		n = snprintf(len < size ? buf + len : NULL,
			     len < size ? size - len : 0, "%s %s %llu\n",
			     p->names[i], up ? "up" : "down",
			     (unsigned long long)lat);
		if (n < 0)
			return -EIO;
		len += (size_t)n;
	}
	if (size && len < size)
		buf[len] = 0;
	return (int64_t)len;
}

void cl_engine_log_counters(struct cl_engine *p)
{
	struct cl_upload_stats us = {0};
	struct cl_fetch_stats fs = {0};
	char buf[1024];
	size_t off = 0;

	if (p->up)
		cl_uploader_stats(p->up, &us);
	if (p->fe)
		cl_fetcher_stats(p->fe, &fs);
	blk_log_info(
	    "peers: uploaded %llu blocks (%llu MiB, %llu off their "
	    "placement), %llu failed sends; fetched %llu blocks "
	    "(%llu MiB), %llu fetch failures, %llu wrong answers "
	    "rejected",
	    (unsigned long long)us.blocks, (unsigned long long)(us.bytes >> 20),
	    (unsigned long long)us.misplaced, (unsigned long long)us.failures,
	    (unsigned long long)fs.blocks, (unsigned long long)(fs.bytes >> 20),
	    (unsigned long long)fs.failures, (unsigned long long)fs.rejects);
	buf[0] = 0;
	for (unsigned i = 0; i < p->n && off < sizeof(buf) - 64; i++)
		off += (size_t)snprintf(
		    buf + off, sizeof(buf) - off, " %s:%llu", p->names[i],
		    (unsigned long long)(p->fe ? cl_fetcher_gets_sent(p->fe, i)
					       : 0));
	blk_log_info("peers: fragment requests sent per node:%s; %llu of them "
		     "because others were slow",
		     buf, (unsigned long long)fs.hedges);
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The node names, this node's index, the placement map and the codec. */
static int open_maps(struct cl_engine *p, char *err, size_t errlen)
{
	const struct cl_cluster *cl = p->cfg.cluster;
	struct pl_node nodes[CL_MAX_NODES];
	int ret;

	for (unsigned i = 0; i < cl->nnodes; i++) {
		nodes[i] = (struct pl_node){
		    cl->nodes[i].name, cl->nodes[i].zone, cl->nodes[i].weight};
		p->names[i] = cl->nodes[i].name;
		if (!strcmp(cl->nodes[i].name, p->cfg.self))
			p->self = (int)i;
	}
	ret = pl_map_new(nodes, cl->nnodes, &p->pl);
	if (ret < 0) {
		snprintf(err, errlen, "bad node list in the cluster file: %s",
			 strerror(-ret));
		return ret;
	}
	if (p->cfg.k > 1) {
		ret = ec_codec_new(p->cfg.k, p->cfg.m, &p->codec);
		if (ret < 0) {
			snprintf(err, errlen,
				 "cannot build the %u+%u codec: %s", p->cfg.k,
				 p->cfg.m, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* This node's server, when asked for and this node is in the file. */
static int open_server(struct cl_engine *p, char *err, size_t errlen)
{
	const struct cl_cluster *cl = p->cfg.cluster;
	int ret;

	if (!p->cfg.serve || p->self < 0)
		return 0;
	/* Heads, in their family when the database has it (the mount's
	 * registry adds it: net_heads_register). */
	int heads = blk_db_cf_find(p->cfg.db, NET_HEADS_CF);
	bool has_heads =
	    heads >= 0 && blk_db_cf_open(p->cfg.db, (unsigned)heads);
	struct net_server_config sc = {
	    .public_key = p->cfg.public_key,
	    .secret_key = p->cfg.secret_key,
	    .db = p->cfg.db,
	    .cf = p->cfg.frags_cf,
	    .has_heads = has_heads,
	    .heads_cf = has_heads ? (unsigned)heads : 0,
	    .data_dir = p->cfg.data_dir,
	    .capacity = p->cfg.capacity,
	    .fault_corrupt_get = p->cfg.fault_corrupt_get,
	};
	ret = cl_cluster_server_new(cl, (unsigned)p->self, &sc, &p->srv);
	if (ret < 0) {
		snprintf(err, errlen, "cannot serve %s on %s: %s", p->cfg.self,
			 cl->nodes[p->self].address, strerror(-ret));
		return ret;
	}
	struct net_status st;
	net_server_status(p->srv, &st);
	if (st.lost)
		blk_log_err("node %s has lost %llu fragments it had stored "
			    "(its database's write-ahead log was damaged); "
			    "'blockfs status' counts them",
			    p->cfg.self, (unsigned long long)st.lost);
	return 0;
}

/* The client's reports (a node that will not let us in) go to the log. */
static void client_log(void *arg, const char *msg)
{
	(void)arg;
	blk_log_warn("peers: %s", msg);
}

/* The client to every node; our own node's fragments through a function
 * call, not a round trip through CURVE to ourselves. */
static int open_client(struct cl_engine *p, char *err, size_t errlen)
{
	struct net_client_config cc = {
	    .public_key = p->cfg.public_key,
	    .secret_key = p->cfg.secret_key,
	    .log = client_log,
	};
	int ret = cl_cluster_client_new(p->cfg.cluster, &cc, &p->cl);
	if (ret < 0) {
		snprintf(err, errlen, "cannot start the cluster client: %s",
			 strerror(-ret));
		return ret;
	}
	if (!p->srv)
		return 0;
	ret = net_client_set_local(p->cl, (unsigned)p->self, net_server_exec,
				   net_server_release, p->srv);
	if (ret < 0)
		snprintf(err, errlen,
			 "cannot start the local fragment threads: %s",
			 strerror(-ret));
	return ret;
}

int cl_engine_register(struct blk_cf_registry *r)
{
	return blk_cf_register(r, "repair", 0);
}

/* The fetcher, the block cache and the uploader. */
static int open_engine(struct cl_engine *p, char *err, size_t errlen)
{
	const struct cl_engine_config *c = &p->cfg;
	const struct cl_layout lay = {
	    .store = c->store,
	    .pl = p->pl,
	    .codec = p->codec,
	    .names = p->names,
	    .n = p->n,
	    .k = c->k,
	    .m = c->m,
	    .ec_min = c->ec_min,
	};
	struct cl_fetcher_config fc = {
	    .lay = lay,
	    .ops = {node_get, node_up, node_latency, p},
	};
	struct cl_uploader_config uc = {
	    .lay = lay,
	    .repair_cf = c->repair_cf,
	    .window = c->window,
	    .backlog_max = c->backlog_max,
	    .sync_timeout_ms = c->sync_timeout_ms,
	    .ops = {node_send, node_sync, node_up, p},
	    .heal = heal_block,
	    .heal_arg = p,
	    .progress = c->progress,
	    .progress_arg = c->progress_arg,
	};
	int ret;

	ret = cl_fetcher_new(&fc, &p->fe);
	if (!ret)
		ret = cl_bcache_new(cache_fetch, p, &p->cache);
	if (ret < 0) {
		snprintf(err, errlen, "cannot start the fetcher: %s",
			 strerror(-ret));
		return ret;
	}
	if (!c->store) /* client only: nothing to upload */
		return 0;
	ret = cl_uploader_new(&uc, &p->up);
	if (ret < 0)
		snprintf(err, errlen, "cannot start the uploader: %s",
			 strerror(-ret));
	return ret;
}

int cl_engine_open(const struct cl_engine_config *cfg, struct cl_engine **out,
		   char *err, size_t errlen)
{
	const struct cl_cluster *cl = cfg->cluster;
	struct cl_engine *p;
	int ret;

	*out = NULL;
	if (cfg->k < 1 || cfg->k + cfg->m > EC_MAX_FRAGS ||
	    cfg->k + cfg->m > cl->nnodes) {
		snprintf(err, errlen,
			 "redundancy %u+%u needs %u nodes; the cluster has %u",
			 cfg->k, cfg->m, cfg->k + cfg->m, cl->nnodes);
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	p->n = cl->nnodes;
	p->self = -1;
	ret = open_maps(p, err, errlen);
	if (!ret)
		ret = open_server(p, err, errlen);
	if (!ret)
		ret = open_client(p, err, errlen);
	if (!ret)
		ret = open_engine(p, err, errlen);
	if (ret < 0) {
		cl_engine_close(p);
		return ret;
	}
	*out = p;
	return 0;
}

int cl_engine_close(struct cl_engine *p)
{
	int ret = 0;

	if (!p)
		return 0;
	if (p->up) {
		/* A barrier while closing is the drain, then the SYNCs. */
		cl_uploader_closing(p->up);
		if (cl_uploader_barrier(p->up) < 0)
			ret = -EIO;
		cl_uploader_stop(p->up);
	}
	/* Prefetches in flight end within the fetch deadline. */
	cl_bcache_stop(p->cache);
	if (p->up) /* a client only (a command) reports for itself */
		cl_engine_log_counters(p);
	/* The client completes whatever is in flight (callbacks included)
	 * before it goes; only then can the uploader's jobs go. */
	net_client_free(p->cl);
	cl_uploader_free(p->up);
	cl_bcache_free(p->cache);
	cl_fetcher_free(p->fe);
	net_server_free(p->srv);
	ec_codec_free(p->codec);
	pl_map_free(p->pl);
	free(p);
	return ret;
}
