/* The mount's commits: the filesystem key, the check of the cluster's
 * heads against this node's metadata and the writer lease, the commit
 * object (fs/commit/commit.h) while the mount serves, and the last
 * commit at unmount. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "blocks/base/log.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/mount-run.h"
#include "fs/cmd/progress.h"
#include "fs/commit/rebuild.h"
#include "net/cluster/engine.h"
#include "net/server/heads.h"

#define COMMIT_INTERVAL_DEFAULT_S 5
#define LEASE_DEFAULT_S 60

/* The key's file: -o fs_key, else NODE_DIR/filesystem.key, else the one
 * beside NODE_DIR (where 'blockfs cluster create' leaves it). */
static void key_path(struct mount_run *r, char *path, size_t len)
{
	char dir[PATH_MAX];

	if (r->mc.fs_key[0]) {
		snprintf(path, len, "%s", r->mc.fs_key);
		return;
	}
	snprintf(path, len, "%s/filesystem.key", r->node_dir);
	if (access(path, F_OK) == 0)
		return;
	snprintf(dir, sizeof(dir), "%s", r->node_dir);
	snprintf(path, len, "%s/filesystem.key", dirname(dir));
}

static void say_time(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* The writer lease: 0 when this mount may write (no head yet, its own
 * lease, or with -o takeover another node's that has expired), else
 * -EACCES with the reason and what to do in r->err. */
static int check_lease(struct mount_run *r, const struct bfs_commit_state *st)
{
	uint64_t now = (uint64_t)time(NULL) * 1000000000u;
	char when[64];

	if (!st->nodes_have || !memcmp(st->latest.writer, r->writer, 32))
		return 0;
	say_time(st->latest.lease_ns, when, sizeof(when));
	if (now < st->latest.lease_ns) {
		snprintf(r->err, sizeof(r->err),
			 "another node holds this filesystem's writer lease "
			 "until %s: mount it read-only (-o ro), or wait and "
			 "mount with -o takeover",
			 when);
		return -EACCES;
	}
	if (!r->mc.takeover) {
		snprintf(r->err, sizeof(r->err),
			 "another node wrote this filesystem last (its lease "
			 "ended %s): mount with -o takeover to become its "
			 "writer",
			 when);
		return -EACCES;
	}
	blk_log_info("taking over the filesystem from the writer whose lease "
		     "ended %s",
		     when);
	return 0;
}

/* This node's metadata against the cluster's latest head: 0 when the
 * next commit may extend it, else -ESTALE with what to do in r->err. */
static int check_local(struct mount_run *r, const struct bfs_commit_state *st)
{
	if (!st->nodes_have || st->same)
		return 0;
	if (!st->local_have || st->latest.seq > st->local.seq) {
		snprintf(r->err, sizeof(r->err),
			 "the cluster holds this filesystem up to head %llu, "
			 "but %s holds %s: mount with -o recover to rebuild it "
			 "from the cluster",
			 (unsigned long long)st->latest.seq, r->node_dir,
			 st->local_have ? "an older head (another node wrote "
					  "since)"
					: "none of its metadata");
		return -ESTALE;
	}
	return 0; /* ahead of the nodes: its next head tells them */
}

static int rebuild_fetch(void *ctx, const struct blk_cid *cid, void **data,
			 size_t *len)
{
	return cl_engine_fetch(ctx, cid, data, len);
}

int mount_rebuild_progress(void *arg, const struct bfs_rebuild_stats *st)
{
	cmd_progress_draw(NULL, st->entries, 0, arg);
	return 0;
}

/* A database with no filesystem: rebuilt from the cluster's latest head
 * when there is one (a new machine, -o recover), else a new filesystem.
 * Then the rest of the open. 0 or -errno (r->err). */
static int settle_pending(struct mount_run *r, struct bfs_commit_state *st)
{
	struct bfs_rebuild_stats rs = {0};
	struct bfs_rebuild_ops ops = {
	    .fetch = rebuild_fetch,
	    .ctx = r->peers,
	    .progress = mount_rebuild_progress,
	    .arg = (void *)"rebuilding the metadata",
	    .threads = 8,
	};
	int ret;

	if (!st->nodes_have || !r->peers) {
		if (r->mc.recover) {
			snprintf(
			    r->err, sizeof(r->err),
			    "no node of the cluster holds a head of this "
			    "filesystem: there is nothing to recover from");
			return -ENOENT;
		}
		return bfs_open_finish(r->fs, r->err, sizeof(r->err));
	}
	blk_log_info("rebuilding the metadata of %s from head %llu of the "
		     "cluster",
		     r->node_dir, (unsigned long long)st->latest.seq);
	ret = bfs_rebuild(bfs_db(r->fs), bfs_store(r->fs), st->latest_rec,
			  st->latest_len, &ops, &rs, r->err, sizeof(r->err));
	cmd_progress_draw(NULL, 0, 0, NULL);
	if (ret)
		return ret;
	blk_log_info(
	    "rebuilt %llu directories, %llu entries, %llu files "
	    "(%llu blocks fetched); file data comes from the "
	    "cluster as it is read",
	    (unsigned long long)rs.dirs, (unsigned long long)rs.entries,
	    (unsigned long long)rs.files, (unsigned long long)rs.blocks);
	ret = bfs_open_finish(r->fs, r->err, sizeof(r->err));
	if (!ret) {
		st->local_have = st->same = true;
		st->local = st->latest;
	}
	return ret;
}

int mount_recover_prepare(struct mount_run *r)
{
	char db[PATH_MAX + 8], aside[PATH_MAX + 64], stamp[32];
	time_t now = time(NULL);
	struct tm tm;

	if (!r->mc.recover)
		return 0;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(db, sizeof(db), "%s/db", r->node_dir);
	snprintf(aside, sizeof(aside), "%s/db.replaced-%s", r->node_dir, stamp);
	if (rename(db, aside)) {
		if (errno == ENOENT)
			return 0;
		snprintf(r->err, sizeof(r->err),
			 "-o recover: cannot move %s "
			 "aside: %s",
			 db, strerror(errno));
		return -errno;
	}
	blk_log_info("-o recover: the old database is kept as %s", aside);
	return 0;
}

static int commit_hook(void *arg, struct bfs_commit_info *out)
{
	struct blk_head h;
	int ret = bfs_commit_now(arg);

	if (!ret && out && bfs_commit_head(arg, &h)) {
		bfs_commit_last_stats(arg, &out->inodes, &out->blocks,
				      &out->bytes);
		out->seq = h.seq;
		blk_cid_to_string(&h.root, out->root);
		blk_cid_to_string(&h.attrs, out->attrs);
	}
	return ret;
}

int mount_commit_start(struct mount_run *r)
{
	struct bfs_commit_config *cc = &r->commit_cfg;
	struct bfs_commit_state st;
	char path[PATH_MAX + 32];
	int ret;

	if (r->mc.fs.read_only)
		return 0;
	if (!r->cl->has_fs) {
		blk_log_warn("the cluster file has no [filesystem] section (a "
			     "cluster made before signed heads): this mount "
			     "makes no commits, so the filesystem cannot be "
			     "recovered from the cluster; stop the cluster "
			     "and run 'blockfs cluster upgrade DIR' on the "
			     "directory of its cluster file");
		return 0;
	}
	key_path(r, path, sizeof(path));
	ret = cl_fs_key_load(path, r->cl, r->fs_sk, r->err, sizeof(r->err));
	if (ret) {
		size_t n = strlen(r->err);
		snprintf(r->err + n, sizeof(r->err) - n,
			 " (a writer signs its commits with it: give it with "
			 "-o fs_key=FILE, or mount read-only)");
		return ret;
	}
	if (!zmq_z85_decode(r->writer, r->pub)) {
		snprintf(r->err, sizeof(r->err), "bad node key in %s",
			 r->node_dir);
		return -EINVAL;
	}
	if (!r->peers) {
		int cf = blk_db_cf_find(bfs_db(r->fs), NET_HEADS_CF);

		ret = cf < 0 ? cf
			     : net_heads_open(bfs_db(r->fs), (unsigned)cf,
					      r->cl->fs_id,
					      r->cl->fs_public_key, &r->heads);
		if (ret) {
			snprintf(r->err, sizeof(r->err),
				 "cannot open the node's heads: %s",
				 strerror(-ret));
			return ret;
		}
	}
	*cc = (struct bfs_commit_config){
	    .fs = r->fs,
	    .engine = r->peers,
	    .heads = r->heads,
	    .cluster = r->cl,
	    .self = r->self_index,
	    .fs_sk = r->fs_sk,
	    .writer = r->writer,
	    .interval_ms = (unsigned)(r->mc.commit_interval_s < 0
					  ? COMMIT_INTERVAL_DEFAULT_S
					  : r->mc.commit_interval_s) *
			   1000u,
	    .lease_ms =
		(r->mc.lease_s ? r->mc.lease_s : LEASE_DEFAULT_S) * 1000u,
	    .verbose = r->mc.mo.debug || getenv("BLOCKFS_COMMIT_LOG"),
	};
	ret = bfs_commit_check(cc, &st);
	if (ret == -EIO) {
		snprintf(r->err, sizeof(r->err),
			 "no node of the cluster answered for the "
			 "filesystem's heads: a writer needs them (start the "
			 "nodes, or mount read-only)");
		return ret;
	}
	if (!ret)
		ret = check_lease(r, &st);
	if (!ret && bfs_open_pending(r->fs))
		ret = settle_pending(r, &st);
	else if (!ret)
		ret = check_local(r, &st);
	if (!ret)
		ret = bfs_commit_open(cc, &st, &r->commit);
	if (ret) {
		if (!r->err[0])
			snprintf(r->err, sizeof(r->err),
				 "cannot start commits: %s", strerror(-ret));
		return ret;
	}
	bfs_set_commit_hook(r->fs, commit_hook, r->commit);
	return 0;
}

int mount_commit_stop(struct mount_run *r)
{
	int ret = 0;

	if (r->commit) {
		bfs_set_commit_hook(r->fs, NULL, NULL);
		ret = bfs_sync_all(r->fs);
		if (!ret)
			ret = bfs_commit_now(r->commit);
		if (ret)
			cmd_err("the last commit at unmount failed (%s): what "
				"changed since head %llu is on this node only",
				strerror(-ret),
				(unsigned long long)bfs_commit_seq(r->commit));
		bfs_commit_close(r->commit);
		r->commit = NULL;
	}
	net_heads_close(r->heads);
	r->heads = NULL;
	return ret;
}
