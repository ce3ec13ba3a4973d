/* The mount's side of the cluster: this node's server, the client to every
 * node, the upload queue that hands each new block to its placement, and
 * the fetch of blocks missing from the local store.
 *
 * Uploads. The store's new-block log (blocks/store.h) is the queue: every
 * commit that stores a block not stored before adds a record in the same
 * atomic batch, so nothing committed is ever forgotten, across crashes
 * too. One uploader thread reads the log in order, encodes each block into
 * K+M fragments (for replicas:N, N full copies, K = 1; under ec:K+M a block
 * shorter than ec_min goes as M+1 copies, K = 1), and sends fragment
 * i to the i-th node of the block's placement (weighted rendezvous, distinct
 * zones first). A node that is down or refuses is replaced by the next one
 * in rendezvous order, and the block is recorded as needing repair. A block
 * is done when all K+M fragments are acknowledged; its log record is then
 * deleted. The watermark is the lowest sequence number not done.
 *
 * Barrier (fsync, syncfs). Everything committed before the call must be
 * done (the watermark passes the log's head as it was), then every node
 * that took fragments since the last barrier gets a SYNC (one WAL sync per
 * node, as NFS COMMIT). Fails with -EIO after the configured time.
 *
 * Fetch. A block missing from the local store comes from its placement:
 * K fragments asked at once from the live nodes (for K = 1 the fastest
 * copy; for K > 1 the data fragments first), one more asked whenever they
 * are slow or one fails. How a block is coded is guessed from its length
 * (the local store remembers it) and the policy, and learnt from the
 * first fragment that arrives: fragment headers carry K, M and the block
 * length, so blocks written as replicas, as K+M, or under another policy
 * all read back. Every answer is checked against the CID (a wrong or
 * hostile peer cannot make a read return wrong bytes).
 *
 * Prefetch. Blocks a sequential reader will want are fetched ahead by a
 * few worker threads, the same way; they and the blocks fetched lately
 * are held in memory (a few dozen) for the reads that want them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/store.h"
#include "fs/config.h"

struct bfs_peers;

struct bfs_peers_config {
	const struct bfs_cluster *cluster;
	const char *self;	/* this node's name in the cluster file */
	const char *public_key; /* its CURVE key pair, Z85 */
	const char *secret_key;
	struct blk_db *db;    /* opened with newlog = true */
	unsigned frags_cf;    /* where this node's server keeps fragments */
	unsigned repair_cf;   /* binary CID -> reason: blocks to repair */
	unsigned k, m;	      /* redundancy: K data + M parity fragments */
	uint32_t ec_min;      /* K > 1: shorter blocks go as M+1 replicas */
	uint64_t capacity;    /* this node's server: bytes it accepts */
	unsigned window;      /* blocks being uploaded at once (0: 32) */
	uint64_t backlog_max; /* blocks queued before writers wait (0: 1024) */
	unsigned sync_timeout_ms; /* barrier deadline (0: 60 s) */
	bool serve;		  /* run this node's server in this process */
};

/* Start the server (if asked), the client and the uploader. 0 or -errno
 * with a message in @err. */
int bfs_peers_open(const struct bfs_peers_config *cfg, struct bfs_peers **out,
		   char *err, size_t errlen);

/* Unmount begins (no more writes come). From now on a barrier waits for
 * the whole upload queue, showing progress on stderr when it is a
 * terminal and logging it otherwise, and every barrier and the drain of
 * bfs_peers_close share one deadline: the sync timeout, restarted
 * whenever blocks go out. So with every node down the whole unmount waits
 * one sync timeout. NULL is fine. */
void bfs_peers_closing(struct bfs_peers *p);

/* Upload what is queued (as bfs_peers_closing says), then stop
 * everything. NULL is fine. Returns 0, or -EIO if blocks were left queued
 * (they stay in the new-block log and go at the next mount). */
int bfs_peers_close(struct bfs_peers *p);

/* New blocks were committed: wake the uploader. */
void bfs_peers_kick(struct bfs_peers *p);

/* The durability barrier above: 0 or -EIO. */
int bfs_peers_barrier(struct bfs_peers *p);

/* Writers call this: waits (a bounded time) while the upload backlog is
 * full. */
void bfs_peers_throttle(struct bfs_peers *p);

/* Fetch block @cid from the cluster into a malloc'd buffer: 0, -EIO (no
 * node could give the right bytes in time), -ENOMEM. */
int bfs_peers_fetch(struct bfs_peers *p, const struct blk_cid *cid, void **data,
		    size_t *len);

/* Ask for blocks ahead of their reads (sequential readers): they are held
 * in memory, checked, for the bfs_peers_fetch that will want them. */
void bfs_peers_prefetch(struct bfs_peers *p, const struct blk_cid *cids,
			size_t n);

/* Drop the blocks kept in memory because they were read lately (a block
 * is read in several pieces); blocks fetched ahead and not read yet stay.
 * Called when a reader closes its file, so that what was read is fetched
 * again next time, as the kernel's dropped caches would suggest. */
void bfs_peers_drop_taken(struct bfs_peers *p);

/* Blocks queued for upload (the backlog) and the watermark's lag. */
uint64_t bfs_peers_backlog(struct bfs_peers *p);

/* Log counters (uploads, fetches, failures). */
void bfs_peers_log_counters(struct bfs_peers *p);

/* The client's view of every node, one line each: "NAME up|down
 * LATENCY_US\n" (fs/bfs.h, BFS_XATTR_NODES). Writes at most @size bytes
 * (NUL-terminated when they fit) and returns the length of the whole text,
 * as snprintf does. */
int64_t bfs_peers_describe(struct bfs_peers *p, char *buf, size_t size);
