/* The commits of a mounted filesystem: every few seconds, on demand and at
 * unmount, the metadata changed since the last commit becomes DAG blocks
 * (encode.h), durable on their placement, named by a signed head that
 * every node keeps; between commits, heads renew the writer's lease. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/dag/head.h"
#include "fs/bfs.h"
#include "net/cluster/config.h"

struct cl_engine;
struct net_heads;

struct bfs_commit_config {
	struct bfs *fs;
	/* The cluster's engine (a mount of a cluster of more than one
	 * node), or NULL: one node, whose heads are @heads. */
	struct cl_engine *engine;
	struct net_heads *heads;
	const struct cl_cluster *cluster; /* [filesystem]: id, key, hash */
	unsigned self;			  /* this node's index in @cluster */
	const uint8_t *fs_sk;		  /* Ed25519 secret key (64 bytes) */
	const uint8_t *writer;		  /* this node's CURVE key (32 raw) */
	unsigned interval_ms; /* between commits (0: on demand only) */
	unsigned lease_ms;    /* a head's lease; renewed at half of it */
	bool verbose;	      /* log every commit (the mount's -d) */
};

/* What the cluster holds for the filesystem, and what this node holds,
 * as the mount decides whether it may write (bfs_commit_check). */
struct bfs_commit_state {
	bool nodes_have;	/* a valid head was found on the nodes */
	struct blk_head latest; /* the highest valid one (nodes_have) */
	uint8_t latest_rec[BLK_HEAD_MAX_BYTES]; /* its bytes */
	size_t latest_len;
	bool local_have;       /* this node's database names a head */
	struct blk_head local; /* the one it names */
	bool same;	       /* both, and the same head */
};

/* Read the latest head of the nodes and the local one (both verified
 * with the filesystem's key). Nodes down are skipped (bounded waits); an
 * invalid head from a node is logged and ignored. 0 or -errno (-EIO: no
 * node answered at all). */
int bfs_commit_check(const struct bfs_commit_config *cfg,
		     struct bfs_commit_state *st);

struct bfs_commit;

/* Start committing: a thread that commits every cfg->interval_ms (0: only
 * on demand) and renews the lease at half of it. The state must
 * be one the mount may write on (bfs_commit_check): the next head extends
 * st->latest (or is the first). 0, -ENOMEM, -EINVAL. */
int bfs_commit_open(const struct bfs_commit_config *cfg,
		    const struct bfs_commit_state *st, struct bfs_commit **out);

/* Commit now and publish the head; returns once a majority of the nodes
 * hold it (every node with one node). 0; -EIO (blocks not durable in
 * time, or too few nodes took the head: the next commit tries again);
 * -EACCES (another writer holds the filesystem: this mount can no longer
 * publish, and says so in the log); -errno of the encoding. */
int bfs_commit_now(struct bfs_commit *c);

/* The last published head (false: none yet). */
bool bfs_commit_head(struct bfs_commit *c, struct blk_head *out);

/* What the last commit encoded (0s when it found nothing changed). */
void bfs_commit_last_stats(struct bfs_commit *c, uint64_t *inodes,
			   uint64_t *blocks, uint64_t *bytes);

/* The last published head's sequence number (0: none yet). */
uint64_t bfs_commit_seq(struct bfs_commit *c);

/* Stop the thread (no commit: the caller commits first if it wants one)
 * and free; NULL is fine. */
void bfs_commit_close(struct bfs_commit *c);
