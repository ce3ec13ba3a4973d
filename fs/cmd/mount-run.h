/* What one run of 'blockfs mount' holds, shared by the files of the
 * mount command (mount.c, mount-commit.c). */
#pragma once

#include <limits.h>
#include <stdint.h>

#include "fs/bfs.h"
#include "fs/cmd/daemon.h"
#include "fs/cmd/mount-opts.h"
#include "fs/commit/commit.h"
#include "net/cluster/config.h"

struct net_heads;
struct cmd_remote;

struct mount_run {
	char node_dir[PATH_MAX], mnt[PATH_MAX], name[64], pub[64], sec[64];
	char db_path[PATH_MAX + 16]; /* NODE_DIR/db */
	char err[1024];
	struct cl_cluster *cl;
	struct mount_cfg mc;
	struct daemon_ready ready;
	int lock_fd; /* the node's lock once mounted, else -1 */
	struct bfs *fs;
	struct cl_engine *peers;
	int self_index; /* this node's index in @cl (node_self) */
	/* Commits (mount-commit.c); NULL/unset on a read-only mount. */
	struct bfs_commit *commit;
	struct bfs_commit_config commit_cfg;
	struct net_heads *heads; /* a single node's own heads */
	uint8_t fs_sk[CL_FS_SK_LEN];
	uint8_t writer[32]; /* this node's CURVE public key, raw */
	/* -o snapshot (mount-snapshot.c): the cluster's read-only view,
	 * whose engine the filesystem reads through, and the snapshot's
	 * directory, NODE_DIR/snapshots/SEQ. */
	struct cmd_remote *remote;
	char snap_dir[PATH_MAX + 48];
};

/* -o recover: move NODE_DIR/db aside before the filesystem opens, so
 * that it opens empty and is rebuilt from the cluster. 0 or -errno
 * (r->err). */
int mount_recover_prepare(struct mount_run *r);

/* bfs_rebuild_ops.progress for the mount's rebuilds: the entries so far
 * on the terminal, labelled by @arg (a const char *). */
struct bfs_rebuild_stats;
int mount_rebuild_progress(void *arg, const struct bfs_rebuild_stats *st);

/* Start committing, once the filesystem and the engine are open: 0, or
 * -errno with the reason and what to do in r->err. Nothing on a
 * read-only mount. */
int mount_commit_start(struct mount_run *r);

/* The last commit (after flushing every file) and the end of commits,
 * before the engine closes. 0 or -errno (said). */
int mount_commit_stop(struct mount_run *r);

/* -o snapshot: find the head, rebuild the snapshot's metadata unless it
 * is there, open it read-only with the cluster's engine behind it (in
 * place of mount_open). 0 or -errno (r->err). */
int mount_snapshot_open(struct mount_run *r);

/* After bfs_close: the engine and the node's read-only view. */
void mount_snapshot_close(struct mount_run *r);
