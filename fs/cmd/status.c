/* 'blockfs status': what a node stores and, in a cluster, how every
 * node is, as text or as JSON (jansson). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "blocks/store/store.h"
#include "fs/bfs.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/node.h"
#include "net/client/client.h"
#include "net/cluster/cluster-net.h"
#include "net/cluster/engine.h"

/* One node as this node sees it. */
struct node_view {
	char name[64], address[128], zone[64];
	bool up;
	uint64_t latency_us;
	struct net_status st;
};

/* The node's own room: whether writes to it fail with ENOSPC now, and
 * the last compaction's error (empty: none). */
struct space_view {
	bool full;
	char compact_err[256];
};

/* The cluster as this node sees it. */
struct cluster_view {
	char redundancy[32];
	uint64_t pending; /* blocks in the new-block log */
	uint64_t repair;  /* records in "repair" */
	struct node_view *nodes;
	unsigned n;
};

/* How many records column family @cf of @db holds. */
static uint64_t count_records(struct blk_db *db, unsigned cf)
{
	struct blk_iter *it = blk_iter_new(db, cf, NULL, 0, NULL, 0);
	uint64_t n = 0;

	for (; it && blk_iter_valid(it); blk_iter_next(it))
		n++;
	blk_iter_free(it);
	return n;
}

/* Every node's state as this node sees it: PING + STATUS to each, 2.5 s
 * at most. 0 or -errno. */
static int cluster_view(const char *node_dir, const struct cl_cluster *cl,
			struct cluster_view *cv)
{
	char err[512], pub[64], sec[64];
	struct net_client *c = NULL;
	int ret;

	snprintf(cv->redundancy, sizeof(cv->redundancy), "%s", cl->redundancy);
	cv->nodes = calloc(cl->nnodes, sizeof(*cv->nodes));
	if (!cv->nodes)
		return -ENOMEM;
	cv->n = cl->nnodes;
	for (unsigned i = 0; i < cl->nnodes; i++) {
		struct node_view *v = &cv->nodes[i];
		snprintf(v->name, sizeof(v->name), "%s", cl->nodes[i].name);
		snprintf(v->address, sizeof(v->address), "%s",
			 cl->nodes[i].address);
		snprintf(v->zone, sizeof(v->zone), "%s", cl->nodes[i].zone);
	}
	ret = node_keys(node_dir, pub, sec, err, sizeof(err));
	if (!ret) {
		struct net_client_config cc = {
		    .public_key = pub,
		    .secret_key = sec,
		    .timeout_ms = 2000,
		    .max_attempts = 1,
		};
		ret = cl_cluster_client_new(cl, &cc, &c);
	}
	if (ret)
		return ret;
	struct net_batch *b = net_batch_new(c);
	for (unsigned i = 0; b && i < cl->nnodes; i++) {
		net_batch_submit(b, i, net_op_new_ping());
		net_batch_submit(b, i, net_op_new_status());
	}
	if (b)
		net_batch_wait(b, 2500);
	for (size_t i = 0; b && i < net_batch_count(b); i++) {
		const struct net_op_result *r =
		    net_op_result(net_batch_op(b, i));
		if (!r || r->status < 0)
			continue;
		struct node_view *v = &cv->nodes[r->peer];
		v->up = true;
		if (r->op == NET_OP_PING)
			v->latency_us = r->rtt_us;
		else if (r->op == NET_OP_STATUS)
			v->st = r->st;
	}
	net_batch_free(b);
	net_client_free(c);
	return 0;
}

/* `status --json`: one object, built with jansson so that names and
 * paths are escaped whatever they hold. 0 or -ENOMEM. */
static int print_status_json(const char *name, const char *state,
			     const struct node_holder *h,
			     const struct blk_store_stats *st, double ratio,
			     uint64_t disk, const struct space_view *sv,
			     const struct cluster_view *cv)
{
	json_t *o = json_pack(
	    "{s:s, s:s, s:b, s:b, s:i, s:s?, s:I, s:I, s:I, s:I, s:I, s:f, "
	    "s:I}",
	    "node", name, "state", state, "mounted",
	    h->pid && !strcmp(h->role, "mount"), "served",
	    h->pid && !strcmp(h->role, "serve"), "pid", (int)h->pid,
	    "mountpoint", h->pid && h->mnt[0] ? h->mnt : NULL, "blocks",
	    (json_int_t)st->blocks, "stored_bytes", (json_int_t)st->bytes,
	    "local_bytes", (json_int_t)(st->bytes - st->remote_bytes),
	    "dag_bytes", (json_int_t)st->dag_bytes, "logical_bytes",
	    (json_int_t)st->ref_bytes, "dedup_ratio", ratio, "disk_bytes",
	    (json_int_t)disk);
	int ret = o ? 0 : -ENOMEM;

	if (o && (json_object_set_new(o, "full", json_boolean(sv->full)) ||
		  json_object_set_new(o, "compaction_error",
				      sv->compact_err[0]
					  ? json_string(sv->compact_err)
					  : json_null())))
		ret = -ENOMEM;
	if (!ret && cv) {
		json_t *nodes = json_array();
		ret = json_object_set_new(o, "redundancy",
					  json_string(cv->redundancy)) ||
			      json_object_set_new(
				  o, "pending_uploads",
				  json_integer((json_int_t)cv->pending)) ||
			      json_object_set_new(
				  o, "below_redundancy",
				  json_integer((json_int_t)cv->repair)) ||
			      json_object_set_new(o, "nodes", nodes)
			  ? -ENOMEM
			  : 0;
		for (unsigned i = 0; !ret && i < cv->n; i++) {
			const struct node_view *v = &cv->nodes[i];
			json_t *n =
			    json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:I, "
				      "s:I, s:I, s:b}",
				      "name", v->name, "address", v->address,
				      "zone", v->zone, "up", v->up,
				      "latency_us", (json_int_t)v->latency_us,
				      "capacity", (json_int_t)v->st.capacity,
				      "used", (json_int_t)v->st.used,
				      "fragments", (json_int_t)v->st.fragments,
				      "lost_fragments", (json_int_t)v->st.lost,
				      "full", v->up && v->st.full);
			if (!n || json_array_append_new(nodes, n))
				ret = -ENOMEM;
		}
	}
	if (!ret && (json_dumpf(o, stdout, JSON_REAL_PRECISION(6)) ||
		     putchar('\n') == EOF))
		ret = -EIO;
	json_decref(o);
	if (ret)
		cmd_err("cannot print the status as JSON: %s", strerror(-ret));
	return ret;
}

static const char status_usage_text[] =
    "Usage: blockfs status NODE_DIR [--json]\n"
    "\n"
    "Show what the node stores: blocks, unique bytes, logical bytes\n"
    "referenced by files, the deduplication ratio and the space the node\n"
    "database takes on disk, whether it is full (writes fail with ENOSPC)\n"
    "and whether its last compaction failed. Works while the node is\n"
    "mounted. In a cluster of several nodes, also the blocks waiting for\n"
    "upload, the blocks below their redundancy, and every node: up, down\n"
    "or full (refusing fragments), latency, capacity, bytes and fragments\n"
    "stored, and fragments it stored and lost (a damaged database: their\n"
    "blocks need uploading again).\n"
    "\n"
    "Options:\n"
    "  -j, --json   machine-readable output\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 ok, 1 failed, 2 usage error.\n";

static const struct option status_longopts[] = {
    {"json", no_argument, NULL, 'j'},
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec status_cmd =
    CMD_SPEC("status", "jh", status_longopts, status_usage_text, 1,
	     "status needs NODE_DIR");

static int status_opt(void *ctx, int c, const char *arg)
{
	(void)arg;
	if (c == 'j')
		*(bool *)ctx = true;
	return CMD_CONTINUE;
}

/* The node's store statistics, its disk use and its queues into @st,
 * @disk and @cv, from NODE_DIR/db opened read-only (nothing if there is
 * none yet). 0, or -errno after saying why. */
static int status_read_db(const char *node_dir, struct blk_store_stats *st,
			  uint64_t *disk, struct cluster_view *cv)
{
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .read_only = true};
	char path[PATH_MAX], err[1024] = "";
	struct blk_db *db = NULL;
	struct blk_store *bs = NULL;
	struct stat sb;
	int ret = 0, repair;

	blk_store_register(&reg, NULL);
	repair = cl_engine_register(&reg);
	snprintf(path, sizeof(path), "%s/db", node_dir);
	if (stat(path, &sb))
		return 0;
	/* A live writer may be compacting: retry a few times. */
	for (int i = 0; i < 5; i++) {
		ret = blk_db_open(path, &o, &db, err, sizeof(err));
		if (!ret)
			break;
		usleep(200000);
	}
	if (ret) {
		cmd_err("%s", err);
		return ret;
	}
	/* A node only ever served has no block store: nothing stored. */
	ret = blk_store_open(db, NULL, &bs, err, sizeof(err));
	if (!ret) {
		blk_store_stats(bs, st);
		cv->pending = count_records(db, blk_store_newlog_cf(bs));
	} else if (ret == -ENOENT) {
		memset(st, 0, sizeof(*st));
		ret = 0;
	}
	if (!ret)
		ret = blk_db_disk_usage(db, disk);
	cv->repair = count_records(db, (unsigned)repair);
	blk_store_close(bs);
	blk_db_close(db);
	if (ret)
		cmd_err("cannot read the node's statistics: %s",
			strerror(-ret));
	return ret;
}

/* The cluster part of the text status: queues and one line a node. */
static void print_cluster_text(const struct cluster_view *cv)
{
	printf("redundancy:    %s\n", cv->redundancy);
	printf("pending uploads:  %llu blocks\n",
	       (unsigned long long)cv->pending);
	printf("below redundancy: %llu blocks\n",
	       (unsigned long long)cv->repair);
	printf("\n%-12s %-24s %-8s %-5s %10s %14s %14s %10s %6s\n", "NODE",
	       "ADDRESS", "ZONE", "STATE", "LATENCY", "CAPACITY", "USED",
	       "FRAGMENTS", "LOST");
	for (unsigned i = 0; i < cv->n; i++) {
		const struct node_view *v = &cv->nodes[i];
		char lat[32] = "-";
		if (v->up)
			snprintf(lat, sizeof(lat), "%.1f ms",
				 (double)v->latency_us / 1000);
		printf(
		    "%-12s %-24s %-8s %-5s %10s %14llu %14llu %10llu %6llu\n",
		    v->name, v->address, v->zone,
		    !v->up	 ? "DOWN"
		    : v->st.full ? "FULL"
				 : "up",
		    lat, (unsigned long long)v->st.capacity,
		    (unsigned long long)v->st.used,
		    (unsigned long long)v->st.fragments,
		    (unsigned long long)v->st.lost);
	}
	for (unsigned i = 0; i < cv->n; i++)
		if (cv->nodes[i].st.lost)
			printf("\nnode %s lost %llu fragments it had stored (a "
			       "damaged database): their blocks are below "
			       "redundancy until uploaded again\n",
			       cv->nodes[i].name,
			       (unsigned long long)cv->nodes[i].st.lost);
}

/* The text status; @cv NULL for a node alone. */
static void print_status_text(const char *name, const char *node_dir,
			      const char *state, const struct node_holder *h,
			      const struct blk_store_stats *st, double ratio,
			      uint64_t disk, const struct space_view *sv,
			      const struct cluster_view *cv)
{
	printf("node:          %s (%s)\n", name, node_dir);
	if (h->pid && !strcmp(h->role, "mount"))
		printf("mounted:       yes, on %s (pid %d)\n", h->mnt,
		       (int)h->pid);
	else if (h->pid && !strcmp(h->role, "serve"))
		printf("mounted:       no; served by 'blockfs serve' "
		       "(pid %d)\n",
		       (int)h->pid);
	else if (h->pid)
		printf("mounted:       no; %s (pid %d)\n", state, (int)h->pid);
	else
		printf("mounted:       no\n");
	printf("blocks:        %llu\n", (unsigned long long)st->blocks);
	printf("stored bytes:  %llu (%llu held locally)\n",
	       (unsigned long long)st->bytes,
	       (unsigned long long)(st->bytes - st->remote_bytes));
	printf("commit blocks: %llu bytes of the stored bytes (the "
	       "snapshots' directories, file nodes and attributes)\n",
	       (unsigned long long)st->dag_bytes);
	printf("logical bytes: %llu\n", (unsigned long long)st->ref_bytes);
	printf("dedup ratio:   %.2f\n", ratio);
	printf("disk bytes:    %llu\n", (unsigned long long)disk);
	if (sv->full)
		printf("full:          yes, writes fail with ENOSPC; delete "
		       "files to make room\n");
	if (sv->compact_err[0])
		printf("compaction:    FAILED: %s; deleted space may not come "
		       "back (see the node's log and db/LOG)\n",
		       sv->compact_err);
	if (cv)
		print_cluster_text(cv);
}

/* What the node's holder does, in a word for the status. */
static const char *holder_state(const struct node_holder *h)
{
	if (!h->pid)
		return "stopped";
	if (!strcmp(h->role, "mount"))
		return "mounted";
	if (!strcmp(h->role, "serve"))
		return "served";
	return h->role[0] ? h->role : "in use";
}

int cmd_status(int argc, char **argv)
{
	bool json = false;
	int st = cmd_parse(&status_cmd, argc, argv, status_opt, &json);

	if (st != CMD_CONTINUE)
		return st;
	const char *node_dir = argv[optind];
	char name[64], err[1024] = "";
	if (cl_node_name(node_dir, name, sizeof(name), err, sizeof(err))) {
		cmd_err("%s", err);
		return 1;
	}
	struct node_holder holder;
	node_holder_read(node_dir, &holder);
	const char *state = holder_state(&holder);

	struct blk_store_stats stats = {0};
	struct cluster_view cv = {0};
	uint64_t disk = 0;
	if (status_read_db(node_dir, &stats, &disk, &cv))
		return 1;
	double ratio =
	    stats.bytes ? (double)stats.ref_bytes / (double)stats.bytes : 1.0;
	/* In a cluster of several nodes: every node's state too. */
	struct cl_cluster *cl = node_cluster(node_dir, err, sizeof(err));
	int cret =
	    cl && cl->nnodes > 1 ? cluster_view(node_dir, cl, &cv) : -ENOENT;
	free(cl);
	struct space_view sv = {.full = bfs_node_full(node_dir)};
	bfs_node_compaction_error(node_dir, sv.compact_err,
				  sizeof(sv.compact_err));
	st = 0;
	if (json)
		st = print_status_json(name, state, &holder, &stats, ratio,
				       disk, &sv, cret == 0 ? &cv : NULL)
			 ? 1
			 : 0;
	else
		print_status_text(name, node_dir, state, &holder, &stats, ratio,
				  disk, &sv, cret == 0 ? &cv : NULL);
	free(cv.nodes);
	return st;
}
