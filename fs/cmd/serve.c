/* 'blockfs serve': run a storage node in the foreground, its fragment
 * server on the node's database, until SIGTERM, SIGINT or SIGHUP. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/store/fragstore.h"
#include "blocks/store/store.h"
#include "fs/bfs.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/daemon.h"
#include "fs/cmd/node.h"
#include "net/cluster/cluster-net.h"
#include "net/server/heads.h"
#include "net/server/server.h"

static const char serve_usage_text[] =
    "Usage: blockfs serve NODE_DIR [OPTIONS]\n"
    "\n"
    "Run the storage node in NODE_DIR: listen on its address from the\n"
    "cluster file (CURVE: only the cluster's keys get in) and keep the\n"
    "fragments other nodes send it. Runs in the foreground, logs to stderr,\n"
    "stops cleanly on SIGTERM or SIGINT. A mounted node serves from its\n"
    "mount; this is for nodes that only store.\n"
    "\n"
    "Options:\n"
    "  -c, --capacity SIZE  bytes this node accepts (default: node.conf's\n"
    "                       capacity, else 95% of its file system)\n"
    "  -w, --workers N      request threads (default 4)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 stopped cleanly, 1 failed, 2 usage error.\n";

static const struct option serve_longopts[] = {
    {"capacity", required_argument, NULL, 'c'},
    {"workers", required_argument, NULL, 'w'},
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec serve_cmd =
    CMD_SPEC("serve", "c:w:h", serve_longopts, serve_usage_text, 1,
	     "serve needs NODE_DIR");

/* The node served and what it is served with. */
struct serve_run {
	uint64_t capacity; /* 0: node_capacity() */
	long workers;	   /* 0: the server's default */
	char node_dir[PATH_MAX], err[1024], name[64], pub[64], sec[64];
	char db_path[PATH_MAX + 16];
	struct cl_cluster *cl;
	int self; /* this node's index in cl */
};

static int serve_opt(void *ctx, int c, const char *arg)
{
	struct serve_run *s = ctx;
	char *end;

	switch (c) {
	case 'c':
		if (cl_parse_size(arg, &s->capacity) || !s->capacity)
			return cmd_usage_error(serve_cmd.name,
					       "invalid capacity '%s'", arg);
		break;
	case 'w':
		s->workers = strtol(arg, &end, 10);
		if (*end || s->workers < 1 || s->workers > 64)
			return cmd_usage_error(
			    serve_cmd.name, "invalid workers '%s' (1-64)", arg);
		break;
	}
	return CMD_CONTINUE;
}

/* The node: real path, name, keys, cluster file, its place there, and
 * nobody holding it. 0, or -errno after saying why. */
static int serve_load(struct serve_run *s, const char *node_arg)
{
	struct node_holder holder;

	if (!realpath(node_arg, s->node_dir)) {
		int e = -errno;
		cmd_err("node directory %s: %s", node_arg, strerror(errno));
		return e;
	}
	if (cl_node_name(s->node_dir, s->name, sizeof(s->name), s->err,
			 sizeof(s->err)) ||
	    node_keys(s->node_dir, s->pub, s->sec, s->err, sizeof(s->err)))
		goto fail;
	s->cl = node_cluster(s->node_dir, s->err, sizeof(s->err));
	if (!s->cl)
		goto fail;
	s->self = node_self(s->node_dir, s->cl, s->name, s->pub, s->err,
			    sizeof(s->err));
	if (s->self < 0)
		goto fail;
	if (node_holder_read(s->node_dir, &holder)) {
		node_print_in_use("serve", s->node_dir, &holder);
		return -EBUSY;
	}
	snprintf(s->db_path, sizeof(s->db_path), "%s/db", s->node_dir);
	return 0;
fail:
	cmd_err("%s", s->err);
	return -EINVAL;
}

/* The server on @db (fragments in family @cf, heads in @heads_cf) for
 * the node, admitting the cluster's keys. 0, or -errno after saying why. */
static int serve_start(const struct serve_run *s, struct blk_db *db,
		       unsigned cf, unsigned heads_cf, struct net_server **srv)
{
	struct net_server_config sc = {
	    .public_key = s->pub,
	    .secret_key = s->sec,
	    .db = db,
	    .cf = cf,
	    .has_heads = true,
	    .heads_cf = heads_cf,
	    .data_dir = s->db_path,
	    .capacity = s->capacity ? s->capacity : node_capacity(s->node_dir),
	    .workers = (unsigned)s->workers,
#ifdef BFS_FAULT_INJECTION
	    .fault_corrupt_get =
		net_fault_parse(getenv("BLOCKFS_FAULT_CORRUPT_GET")),
#endif
	};
	int ret = cl_cluster_server_new(s->cl, (unsigned)s->self, &sc, srv);
	if (ret == -EIO)
		cmd_err("cannot serve node %s: its database %s is damaged "
			"(%s; %s/LOG says which file): to bring the node back "
			"empty, move %s aside and start it again; the blocks "
			"it held stay below redundancy until they are uploaded "
			"again",
			s->name, s->db_path, strerror(-ret), s->db_path,
			s->db_path);
	else if (ret)
		cmd_err("cannot serve node %s on %s: %s", s->name,
			s->cl->nodes[s->self].address,
			ret == -EADDRINUSE ? "address in use (another process "
					     "serves it?)"
					   : strerror(-ret));
	return ret;
}

/* Serve until a signal in @set arrives, then stop the server. */
static void serve_until_signal(const struct serve_run *s,
			       struct net_server *srv, const sigset_t *set)
{
	struct net_status st;

	net_server_status(srv, &st);
	fprintf(stderr,
		"blockfs: serving node %s on %s: %llu fragments, %llu of "
		"%llu bytes used\n",
		s->name, net_server_endpoint(srv),
		(unsigned long long)st.fragments, (unsigned long long)st.used,
		(unsigned long long)st.capacity);
	if (st.lost)
		fprintf(stderr,
			"blockfs: error: node %s has lost %llu fragments it "
			"had stored (its database's write-ahead log was "
			"damaged); 'blockfs status' counts them, and their "
			"blocks are below redundancy until they are uploaded "
			"again\n",
			s->name, (unsigned long long)st.lost);
	int sig = 0;
	sigwait(set, &sig);
	fprintf(stderr, "blockfs: node %s stopping (signal %d)\n", s->name,
		sig);
	net_server_free(srv);
}

/* Open the node's database with the fragment store's and the heads'
 * column families (the others a mount of this node added are opened and
 * kept untouched, so that a node can be served and mounted in turn),
 * serve, close. Stopping
 * flushes the memtables, so the write-ahead log holds nothing after a
 * clean stop. 0, or -errno after saying why. */
static int serve_run(struct serve_run *s)
{
	struct blk_cf_registry reg = {0};
	int frags = blk_fragstore_register(&reg);
	int heads = net_heads_register(&reg);
	struct blk_db_options o = {.cfs = &reg, .create = true};
	struct blk_db *db = NULL;
	struct net_server *srv = NULL;
	sigset_t set;
	int lock_fd;

	/* Signals are taken synchronously by this thread only (sigwait):
	 * blocked before RocksDB starts its threads. */
	daemon_block_stop_signals(&set);
	int ret = blk_db_open(s->db_path, &o, &db, s->err, sizeof(s->err));
	if (ret) {
		cmd_err("%s", s->err);
		return ret;
	}
	struct blk_wal_damage wd;
	blk_db_wal_damage(db, &wd);
	if (wd.records)
		fprintf(stderr,
			"blockfs: error: node %s: the write-ahead log %s/%s is "
			"damaged at byte %llu: the last %llu fragment puts it "
			"had acknowledged were dropped, from there on\n",
			s->name, s->db_path, wd.file,
			(unsigned long long)wd.offset,
			(unsigned long long)wd.records);
	ret = serve_start(s, db, (unsigned)frags, (unsigned)heads, &srv);
	if (ret)
		goto out_db;
	/* The database is ours (RocksDB locks it): so is the node's lock,
	 * let go only once the database is closed. */
	lock_fd = node_lock(s->node_dir);
	if (lock_fd < 0 || node_label(lock_fd, "serve", NULL))
		cmd_err("warning: cannot write %s/blockfs.pid: %s", s->node_dir,
			strerror(lock_fd < 0 ? -lock_fd : errno));
	serve_until_signal(s, srv, &set);
	ret = blk_db_sync(db);
	if (!ret)
		ret = blk_db_flush(db);
	if (ret)
		cmd_err("cannot flush node %s's database: %s", s->name,
			strerror(-ret));
	blk_db_close(db);
	node_unlock(s->node_dir, lock_fd);
	return ret;
out_db:
	blk_db_close(db);
	return ret;
}

int cmd_serve(int argc, char **argv)
{
	struct serve_run *s = calloc(1, sizeof(*s));
	int st = 1;

	if (!s) {
		cmd_err("out of memory");
		return 1;
	}
	st = cmd_parse(&serve_cmd, argc, argv, serve_opt, s);
	if (st != CMD_CONTINUE)
		goto out;
	st = serve_load(s, argv[optind]) || serve_run(s) ? 1 : 0;
out:
	free(s->cl);
	free(s);
	return st;
}
