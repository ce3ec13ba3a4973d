/* 'blockfs mount': check the node and the mountpoint, detach (unless -f),
 * open the filesystem and, in a cluster, the peers, and serve the mount
 * until it is unmounted. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_opt.h>

#include "fs/bfs.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/daemon.h"
#include "fs/cmd/mount-opts.h"
#include "fs/cmd/mount-run.h"
#include "fs/cmd/node.h"
#include "fs/cmd/progress.h"
#include "fs/fuse.h"
#include "net/cluster/engine.h"
#include "net/server/server.h"

static const char mount_usage_head[] =
    "Usage: blockfs mount NODE_DIR MOUNTPOINT [-o OPTIONS] [-f] [-d]\n"
    "\n"
    "Mount the filesystem kept by the node in NODE_DIR. Without -f the\n"
    "daemon detaches once the mount is live and logs to NODE_DIR/blockfs.log;\n"
    "unmount with 'fusermount3 -u MOUNTPOINT' or 'umount MOUNTPOINT'.\n"
    "\n"
    "Options:\n"
    "  -o OPTIONS      comma-separated mount options (below)\n"
    "  -f, --foreground  stay in the foreground, log to stderr\n"
    "  -d, --debug     foreground with FUSE request tracing\n"
    "      --ready-fd=N  with -f: once the mount is live, write one byte to\n"
    "                  file descriptor N and close it (N closes without\n"
    "                  the byte if the mount fails)\n"
    "      --fstab-options  print the fstab-only options, one shell\n"
    "                  pattern a line (mount.blockfs drops them)\n"
    "  -h, --help      show this help\n"
    "\n"
    "Mount options:\n";

static const char mount_usage_tail[] =
    "\n"
    "A flag takes no value (ro=0 is an error: leave ro out). 'blockfs sync\n"
    "MOUNTPOINT' waits for the cluster, as fsync does for one file.\n"
    "\n"
    "Exit status: 0 mounted (or, with -f, cleanly unmounted), 1 failed,\n"
    "2 usage error.\n";

/* The mount options' --help after mount_usage_head. */
static void mount_usage_more(FILE *f)
{
	mount_opts_usage(f);
	mount_fstab_usage(f);
	fputs(mount_usage_tail, f);
}

enum { OPT_READY_FD = 256, OPT_FSTAB_OPTIONS };

static const struct option mount_longopts[] = {
    {"foreground", no_argument, NULL, 'f'},
    {"debug", no_argument, NULL, 'd'},
    {"options", required_argument, NULL, 'o'},
    {"ready-fd", required_argument, NULL, OPT_READY_FD},
    {"fstab-options", no_argument, NULL, OPT_FSTAB_OPTIONS},
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec mount_cmd = {
    .name = "mount",
    .shortopts = "fdo:hs",
    .longopts = mount_longopts,
    .usage = mount_usage_head,
    .usage_more = mount_usage_more,
    .operands = 2,
    .operands_err = "mount needs NODE_DIR and MOUNTPOINT",
};

/* The command line of a mount. */
struct mount_args {
	bool fg, debug;
	char *opts;   /* every -o joined with ',' (fuse_opt_add_opt) */
	int ready_fd; /* --ready-fd, else -1 */
};

/* @arg as an open file descriptor for --ready-fd, made close-on-exec. */
static int parse_ready_fd(const char *arg, int *fd)
{
	char *end;
	long v = strtol(arg, &end, 10);
	int flags;

	if (*end || end == arg || v < 0 || v > INT_MAX ||
	    (flags = fcntl((int)v, F_GETFD)) < 0)
		return -EINVAL;
	fcntl((int)v, F_SETFD, flags | FD_CLOEXEC);
	*fd = (int)v;
	return 0;
}

static int mount_opt(void *ctx, int c, const char *arg)
{
	struct mount_args *a = ctx;

	switch (c) {
	case 'd':
		a->debug = true;
		/* fall through */
	case 'f':
		a->fg = true;
		break;
	case 'o':
		if (fuse_opt_add_opt(&a->opts, arg)) {
			cmd_err("out of memory");
			return 1;
		}
		break;
	case OPT_READY_FD:
		if (parse_ready_fd(arg, &a->ready_fd))
			return cmd_usage_error(mount_cmd.name,
					       "invalid --ready-fd '%s' (an "
					       "open file descriptor)",
					       arg);
		break;
	case OPT_FSTAB_OPTIONS:
		mount_fstab_print(stdout);
		return 0;
	case 's':
		break; /* mount(8) "sloppy": ignore */
	}
	return CMD_CONTINUE;
}

/* Everything one mount holds, from the command line to the unmount. */

/* @mnt can take the mount: a directory, not a mountpoint already,
 * writable, and empty unless @nonempty. 0, or -errno with a message in
 * @err. */
static int check_mountpoint(const char *mnt, bool nonempty, char *err,
			    size_t errlen)
{
	struct stat st, pst;
	char parent[PATH_MAX + 4];

	if (stat(mnt, &st)) {
		snprintf(err, errlen, "mountpoint %s: %s", mnt,
			 errno == ENOTCONN ? "a dead FUSE mount is there (run "
					     "'fusermount3 -u' on it)"
					   : strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "mountpoint %s is not a directory", mnt);
		return -ENOTDIR;
	}
	snprintf(parent, sizeof(parent), "%s/..", mnt);
	if (stat(parent, &pst) == 0 &&
	    (pst.st_dev != st.st_dev || pst.st_ino == st.st_ino) &&
	    strcmp(mnt, "/")) {
		snprintf(err, errlen, "%s is already a mountpoint", mnt);
		return -EBUSY;
	}
	if (access(mnt, W_OK) && errno == EACCES) {
		snprintf(err, errlen, "mountpoint %s: permission denied", mnt);
		return -EACCES;
	}
	if (!nonempty) {
		DIR *d = opendir(mnt);
		struct dirent *de;
		bool empty = true;
		if (!d) {
			snprintf(err, errlen, "mountpoint %s: %s", mnt,
				 strerror(errno));
			return -errno;
		}
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") &&
			    strcmp(de->d_name, "..")) {
				empty = false;
				break;
			}
		}
		closedir(d);
		if (!empty) {
			snprintf(err, errlen,
				 "mountpoint %s is not empty (use -o nonempty "
				 "to mount over its contents)",
				 mnt);
			return -ENOTEMPTY;
		}
	}
	return 0;
}

/* The redundancy must be one the cluster can meet: K+M nodes that take
 * fragments (weight above 0). 0, or -EINVAL after saying why. */
static int mount_check_policy(const struct mount_cfg *mc,
			      const struct cl_cluster *cl, const char *node_dir)
{
	unsigned rk = mc->k, rm = mc->m, storing = 0;

	if (!mc->redundancy_set &&
	    cl_parse_redundancy(cl->redundancy, &rk, &rm)) {
		rk = 1;
		rm = 0;
	}
	for (unsigned i = 0; i < cl->nnodes; i++)
		storing += cl->nodes[i].weight > 0;
	if (cl->nnodes == 1)
		storing = 1; /* a single node stores its own blocks */
	if (rk + rm <= storing)
		return 0;
	if (mc->redundancy_set)
		cmd_err("invalid mount option 'redundancy=%s': it needs %u "
			"nodes that store blocks, and %s/cluster.conf has %u "
			"(use a policy that needs at most %u, or add nodes)",
			mc->redundancy, rk + rm, node_dir, storing, storing);
	else
		cmd_err("%s/cluster.conf asks for redundancy %s, which needs "
			"%u nodes that store blocks; it has %u (fix the "
			"cluster file, or mount with -o redundancy=POLICY)",
			node_dir, cl->redundancy, rk + rm, storing);
	return -EINVAL;
}

/* The node and its settings: real paths, name, cluster file, the mount
 * options over them. CMD_CONTINUE, or the exit status after saying why. */
static int mount_load(struct mount_run *r, const struct mount_args *a,
		      const char *node_arg, const char *mnt_arg)
{
	if (!realpath(node_arg, r->node_dir)) {
		cmd_err("node directory %s: %s", node_arg, strerror(errno));
		return 1;
	}
	snprintf(r->db_path, sizeof(r->db_path), "%s/db", r->node_dir);
	if (!realpath(mnt_arg, r->mnt)) {
		cmd_err("mountpoint %s: %s", mnt_arg,
			errno == ENOTCONN ? "a dead FUSE mount is there (run "
					    "'fusermount3 -u' on it)"
					  : strerror(errno));
		return 1;
	}
	if (cl_node_name(r->node_dir, r->name, sizeof(r->name), r->err,
			 sizeof(r->err))) {
		cmd_err("%s", r->err);
		return 1;
	}
	r->cl = node_cluster(r->node_dir, r->err, sizeof(r->err));
	if (!r->cl) {
		cmd_err("%s", r->err);
		return 1;
	}
	mount_cfg_init(&r->mc, r->cl, r->node_dir, a->debug);
	if (a->opts && mount_cfg_parse(&r->mc, a->opts))
		return cmd_usage_error(mount_cmd.name, "%s", r->mc.opt_err);
	mount_cfg_finish(&r->mc, r->mnt);
	if (r->mc.snapshot[0] && (r->mc.recover || r->mc.takeover))
		return cmd_usage_error(mount_cmd.name,
				       "-o snapshot mounts read-only: not "
				       "with %s",
				       r->mc.recover ? "recover" : "takeover");
	char plain[sizeof(r->mc.fsname)];
	snprintf(plain, sizeof(plain), "blockfs:%s", r->node_dir);
	if (r->mc.snapshot[0] && !strcmp(r->mc.fsname, plain))
		snprintf(r->mc.fsname, sizeof(r->mc.fsname), "blockfs:%s@%s",
			 r->node_dir, r->mc.snapshot);
	if (a->ready_fd >= 0 && !a->fg && !r->mc.mo.debug)
		return cmd_usage_error(mount_cmd.name,
				       "--ready-fd goes with -f (without it, "
				       "blockfs mount returns once the mount "
				       "is live)");
	return CMD_CONTINUE;
}

/* What must hold before the mount: the node's keys and its place in the
 * cluster file, a policy the cluster can meet, nobody holding the node,
 * a mountpoint that can take it. CMD_CONTINUE, or 1 after saying why. */
static int mount_check(struct mount_run *r)
{
	struct node_holder holder;

	if (node_keys(r->node_dir, r->pub, r->sec, r->err, sizeof(r->err)) ||
	    (r->self_index = node_self(r->node_dir, r->cl, r->name, r->pub,
				       r->err, sizeof(r->err))) < 0) {
		cmd_err("%s", r->err);
		return 1;
	}
	if (mount_check_policy(&r->mc, r->cl, r->node_dir))
		return 1;
	if (!r->mc.snapshot[0] && node_holder_read(r->node_dir, &holder)) {
		node_print_in_use("mount", r->node_dir, &holder);
		return 1;
	}
	if (check_mountpoint(r->mnt, r->mc.nonempty == 1, r->err,
			     sizeof(r->err))) {
		cmd_err("%s", r->err);
		return 1;
	}
	return CMD_CONTINUE;
}

/* Keep large allocations in the heap: write buffers and RocksDB memtable
 * arenas allocate megabytes at a time, and memory served by mmap would
 * be faulted in and zeroed afresh for each; memory stays bounded by
 * dirty_max and the memtable limits. One arena, so that emptied heaps
 * are not unmapped and faulted in again. */
static void mount_tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_ARENA_MAX, 1);
}

/* The mount is live (bfs_fuse_run's ready callback): take the node's
 * lock, label it, tell whoever waits. */
static void mount_on_ready(void *arg)
{
	struct mount_run *r = arg;

	if (r->mc.snapshot[0]) { /* beside the live mount: no lock */
		daemon_ready(&r->ready);
		return;
	}
	/* The mount took the node's database, which RocksDB locks too: the
	 * node's lock cannot be held by another process now. */
	r->lock_fd = node_lock(r->node_dir);
	if (r->lock_fd < 0 || node_label(r->lock_fd, "mount", r->mnt))
		cmd_err("warning: cannot write %s/blockfs.pid: %s", r->node_dir,
			strerror(r->lock_fd < 0 ? -r->lock_fd : errno));
	daemon_ready(&r->ready);
}

/* Open the filesystem and, with more than one node, the peers (blocks go
 * to their placement, net/cluster/engine.h). 0, or -errno with a message in
 * r->err; r->fs and r->peers are set as far as they were opened. */
static int mount_open(struct mount_run *r)
{
	struct mount_cfg *mc = &r->mc;
	bool clustered = r->cl->nnodes > 1;

	if (!mc->k && cl_parse_redundancy(r->cl->redundancy, &mc->k, &mc->m)) {
		mc->k = 1;
		mc->m = 0;
	}
	if (!mc->ec_min_set)
		mc->ec_min = r->cl->ec_min;
	mc->fs.newlog = clustered && !mc->fs.read_only;
	/* A writer of a filesystem with heads may have to rebuild its
	 * metadata from the cluster before it makes a new one. */
	mc->fs.defer_mkfs = !mc->fs.read_only && r->cl->has_fs;
	int rc = mount_recover_prepare(r);
	if (rc)
		return rc;
	if (!clustered)
		mc->fs.local_max = 0;

	int ret = bfs_open(&mc->fs, &r->fs, r->err, sizeof(r->err));
	if (ret)
		return ret;
	if (bfs_read_only(r->fs))
		mc->fs.read_only = mc->mo.read_only = true; /* a full disk */
	if (!clustered)
		return 0;
	struct cl_engine_config pc = {
	    .cluster = r->cl,
	    .self = r->name,
	    .public_key = r->pub,
	    .secret_key = r->sec,
	    .db = bfs_db(r->fs),
	    .store = bfs_store(r->fs),
	    .frags_cf = bfs_cf_frags(r->fs),
	    .repair_cf = bfs_cf_repair(r->fs),
	    .k = mc->k,
	    .m = mc->m,
	    .ec_min = mc->ec_min,
	    .capacity = node_capacity(r->node_dir),
	    .data_dir = r->db_path,
	    .sync_timeout_ms = mc->sync_timeout_ms,
	    .serve = true,
	    .progress = cmd_progress_draw,
#ifdef BFS_FAULT_INJECTION
	    .fault_corrupt_get =
		net_fault_parse(getenv("BLOCKFS_FAULT_CORRUPT_GET")),
#endif
	};
	ret = cl_engine_open(&pc, &r->peers, r->err, sizeof(r->err));
	if (ret)
		return ret;
	bfs_set_engine(r->fs, r->peers);
	return 0;
}

/* Everything written goes to its placement before the database closes,
 * within one sync_timeout once nothing moves; what cannot go stays
 * queued for the next mount. 0 or -EIO. */
static int mount_drain_peers(struct mount_run *r)
{
	int ret = 0;

	cl_engine_closing(r->peers);
	if (!r->mc.fs.read_only) {
		int s = bfs_sync_all(r->fs);
		/* -EIO: the drain below says what is left */
		if (s && s != -EIO)
			cmd_err("flushing at unmount: %s", strerror(-s));
	}
	bfs_set_engine(r->fs, NULL);
	if (cl_engine_close(r->peers))
		ret = -EIO;
	r->peers = NULL;
	return ret;
}

/* Mount and serve until unmounted, then drain and close. 0, or -errno
 * after saying why (to the parent of a detached daemon not yet ready). */
static int mount_serve(struct mount_run *r)
{
	int ret = r->mc.snapshot[0] ? mount_snapshot_open(r) : mount_open(r);

	if (!ret)
		ret = mount_commit_start(r);
	if (!ret)
		ret = bfs_fuse_run(r->fs, &r->mc.mo, mount_on_ready, r, r->err,
				   sizeof(r->err));
	if (r->lock_fd >= 0)
		node_label(r->lock_fd, "unmounting", NULL);
	if (r->fs) {
		int c = mount_commit_stop(r);
		ret = ret ? ret : c;
	}
	if (r->peers) {
		int d = mount_drain_peers(r);
		ret = ret ? ret : d;
	}
	if (ret)
		daemon_failed(&r->ready, r->err);
	/* Close whenever it was opened, also when mounting failed. */
	if (r->fs) {
		int c = bfs_close(r->fs);
		if (c)
			cmd_err("error while closing the filesystem: %s",
				strerror(-c));
		ret = ret ? ret : c;
	}
	mount_snapshot_close(r);
	node_unlock(r->node_dir, r->lock_fd);
	return ret;
}

int cmd_mount(int argc, char **argv)
{
	struct mount_args a = {.ready_fd = -1};
	struct mount_run *r = NULL;
	int st = cmd_parse(&mount_cmd, argc, argv, mount_opt, &a);

	if (st != CMD_CONTINUE)
		goto out;
	r = calloc(1, sizeof(*r));
	if (!r) {
		cmd_err("out of memory");
		st = 1;
		goto out;
	}
	r->lock_fd = -1;
	r->ready.fd = -1;
	st = mount_load(r, &a, argv[optind], argv[optind + 1]);
	if (st != CMD_CONTINUE)
		goto out;
	st = mount_check(r);
	if (st != CMD_CONTINUE)
		goto out;
	daemon_ready_init(&r->ready, r->node_dir, a.ready_fd);
	a.ready_fd = -1; /* r->ready has it */
	mount_tune_malloc();
	if (!a.fg && !r->mc.mo.debug) {
		st = daemon_detach(&r->ready);
		if (st != CMD_CONTINUE)
			goto out;
	}
	/* No thread yet (the detached daemon's parent keeps its signals):
	 * the stop signals go to the FUSE loop only (bfs_fuse_run). */
	sigset_t stop;
	daemon_block_stop_signals(&stop);
	st = mount_serve(r) ? 1 : 0;
out:
	if (r) {
		daemon_ready_close(&r->ready);
		free(r->cl);
		free(r);
	}
	if (a.ready_fd >= 0)
		close(a.ready_fd);
	free(a.opts);
	return st;
}
