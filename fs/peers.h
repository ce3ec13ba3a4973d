/* The cluster engine: the mount's side of the cluster. It owns this
 * node's server, the client to every node, and three objects, each in its
 * own file with its own lock:
 *
 *   fs/uploader.h  the new-block log's consumer and the sync barrier
 *   fs/fetcher.h   fetches of blocks missing from the local store
 *   fs/bcache.h    blocks fetched ahead of their reads, and lately
 *
 * The engine itself holds no lock: its fields are set by bfs_peers_open
 * and only read until bfs_peers_close. Each call below says what it
 * guarantees, how it fails and from which threads it may come, as
 * libfuse's fuse_lowlevel.h does for its operations. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/store.h"
#include "fs/config.h"

struct bfs_peers;

struct bfs_peers_config {
	const struct bfs_cluster *cluster; /* must outlive the engine */
	const char *self;	/* this node's name in the cluster file */
	const char *public_key; /* its CURVE key pair, Z85 */
	const char *secret_key;
	struct blk_db *db;    /* opened with newlog = true */
	unsigned frags_cf;    /* where this node's server keeps fragments */
	unsigned repair_cf;   /* binary CID -> reason: blocks to repair */
	unsigned k, m;	      /* redundancy: K data + M parity fragments */
	uint32_t ec_min;      /* K > 1: shorter blocks go as M+1 replicas */
	uint64_t capacity;    /* this node's server: bytes it accepts */
	const char *data_dir; /* its database's directory (the disk reserve) */
	unsigned window;      /* blocks being uploaded at once (0: 32) */
	uint64_t backlog_max; /* blocks queued before writers wait (0: 1024) */
	unsigned sync_timeout_ms; /* barrier deadline (0: 60 s) */
	bool serve;		  /* run this node's server in this process */
};

/* Start the server (if asked and this node is in the cluster file), the
 * client, the uploader (which resumes the new-block log where it stands)
 * and the prefetch workers. 0, or -EINVAL (the redundancy needs more
 * nodes than the cluster has, a bad node list), -ENOMEM, or the -errno of
 * the server, the client or a thread, with a message in @err. On failure
 * *@out is NULL and nothing is left running. */
int bfs_peers_open(const struct bfs_peers_config *cfg, struct bfs_peers **out,
		   char *err, size_t errlen);

/* Unmount begins (no more writes come). From now on a barrier waits for
 * the whole upload queue, showing progress on stderr when it is a
 * terminal and logging it otherwise, and every barrier and the drain of
 * bfs_peers_close share one deadline: the sync timeout, restarted
 * whenever blocks go out. So with every node down the whole unmount waits
 * one sync timeout. Any thread; NULL is fine. */
void bfs_peers_closing(struct bfs_peers *p);

/* Upload what is queued (as bfs_peers_closing says), then stop
 * everything and free @p. No other call may be running or follow. NULL is
 * fine. Returns 0, or -EIO if blocks were left queued (they stay in the
 * new-block log and go at the next mount). */
int bfs_peers_close(struct bfs_peers *p);

/* New blocks were committed to the store (their log records with them):
 * wake the uploader. Any thread; never waits. */
void bfs_peers_kick(struct bfs_peers *p);

/* The durability barrier: returns 0 once every block committed before the
 * call is acknowledged by all K+M nodes of its placement (or their
 * spares) and every node that took fragments since the last barrier has
 * synced its WAL; -EIO after the sync timeout (logged; the nodes not
 * synced are asked again by the next barrier). Any thread, several at
 * once; waits on the network holding no lock. */
int bfs_peers_barrier(struct bfs_peers *p);

/* Writers call this: waits (at most one second) while the upload backlog
 * is full. Any thread. */
void bfs_peers_throttle(struct bfs_peers *p);

/* Fetch block @cid from the cache or the cluster into a malloc'd buffer
 * that hashes to @cid: 0, -EIO (no node could give the right bytes in
 * time, logged), -ENOMEM. Waits on the network (up to about 20 s) holding
 * no lock of the caller's; callers should hold none either. Any thread,
 * any number at once. */
int bfs_peers_fetch(struct bfs_peers *p, const struct blk_cid *cid, void **data,
		    size_t *len);

/* Ask for blocks ahead of their reads (sequential readers): they are held
 * in memory, checked, for the bfs_peers_fetch that will want them. Any
 * thread; never waits on the network. */
void bfs_peers_prefetch(struct bfs_peers *p, const struct blk_cid *cids,
			size_t n);

/* Drop the blocks kept in memory because they were read lately (a block
 * is read in several pieces); blocks fetched ahead and not read yet stay.
 * Called when a reader closes its file, so that what was read is fetched
 * again next time, as the kernel's dropped caches would suggest. Any
 * thread. */
void bfs_peers_drop_taken(struct bfs_peers *p);

/* Blocks queued for upload: how far the watermark lags the log's head.
 * Any thread; never waits. */
uint64_t bfs_peers_backlog(struct bfs_peers *p);

/* Log counters (uploads, fetches, failures) with bfs_log_info. Any
 * thread. */
void bfs_peers_log_counters(struct bfs_peers *p);

/* How many fragment puts each node says it lost (its STATUS reply,
 * blocks/fragstore.h 'L' record): @lost[i] for node i of the cluster file
 * (its name in @names[i]), UINT64_MAX for a node seen down or that did not
 * answer within 2 s; *@n nodes. Waits on the network: call it with no lock
 * held. 0 or -ENOMEM. */
int bfs_peers_lost(struct bfs_peers *p, uint64_t *lost, const char **names,
		   unsigned *n);

/* The client's view of every node, one line each: "NAME up|down
 * LATENCY_US\n" (fs/bfs.h, BFS_XATTR_NODES). Writes at most @size bytes
 * (NUL-terminated when they fit) and returns the length of the whole text,
 * as snprintf does, or -EIO. Any thread. */
int64_t bfs_peers_describe(struct bfs_peers *p, char *buf, size_t size);
