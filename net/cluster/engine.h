/* The cluster engine: the mount's side of the cluster. It owns this
 * node's server, the client to every node, and three objects, each in its
 * own file with its own lock:
 *
 *   net/cluster/uploader.h  the new-block log's consumer and the sync barrier
 *   net/cluster/fetcher.h   fetches of blocks missing from the local store
 *   net/cluster/bcache.h    blocks fetched ahead of their reads, and lately
 *
 * The engine itself holds no lock: its fields are set by cl_engine_open
 * and only read until cl_engine_close. Each call below says what it
 * guarantees, how it fails and from which threads it may come, as
 * libfuse's fuse_lowlevel.h does for its operations. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/store/store.h"
#include "net/cluster/config.h"
#include "net/cluster/uploader.h" /* cl_progress_fn */

struct cl_engine;
struct net_client;

struct cl_engine_config {
	const struct cl_cluster *cluster; /* must outlive the engine */
	const char *self;	/* this node's name in the cluster file */
	const char *public_key; /* its CURVE key pair, Z85 */
	const char *secret_key;
	struct blk_db *db; /* the node's database */
	/* The block store on @db, opened with newlog = true. Client only
	 * (the export's, 'blockfs snapshot'): @db and @store NULL and
	 * @serve false: no uploader, no server; fetch works, barriers
	 * return 0 at once. */
	struct blk_store *store;
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
	/* Test only: its server's net_server_config.fault_corrupt_get. */
	unsigned fault_corrupt_get;
	/* The unmount's upload progress (uploader.h; NULL: logged). */
	cl_progress_fn progress;
	void *progress_arg;
};

/* Add the engine's column family, "repair" (binary CID -> reason: blocks
 * to repair), to @r: its handle, for repair_cf, or the error of
 * blk_cf_register. */
int cl_engine_register(struct blk_cf_registry *r);

/* Start the server (if asked and this node is in the cluster file), the
 * client, the uploader (which resumes the new-block log where it stands)
 * and the prefetch workers. 0, or -EINVAL (the redundancy needs more
 * nodes than the cluster has, a bad node list), -ENOMEM, or the -errno of
 * the server, the client or a thread, with a message in @err. On failure
 * *@out is NULL and nothing is left running. */
int cl_engine_open(const struct cl_engine_config *cfg, struct cl_engine **out,
		   char *err, size_t errlen);

/* Unmount begins (no more writes come). From now on a barrier waits for
 * the whole upload queue, telling its progress to cfg.progress (or, with
 * none, the log), and every barrier and the drain of
 * cl_engine_close share one deadline: the sync timeout, restarted
 * whenever blocks go out. So with every node down the whole unmount waits
 * one sync timeout. Any thread; NULL is fine. */
void cl_engine_closing(struct cl_engine *p);

/* Upload what is queued (as cl_engine_closing says), then stop
 * everything and free @p. No other call may be running or follow. NULL is
 * fine. Returns 0, or -EIO if blocks were left queued (they stay in the
 * new-block log and go at the next mount). */
int cl_engine_close(struct cl_engine *p);

/* New blocks were committed to the store (their log records with them):
 * wake the uploader. Any thread; never waits. */
void cl_engine_kick(struct cl_engine *p);

/* The durability barrier: returns 0 once every block committed before the
 * call is acknowledged by all K+M nodes of its placement (or their
 * spares) and every node that took fragments since the last barrier has
 * synced its WAL; -EIO after the sync timeout (logged; the nodes not
 * synced are asked again by the next barrier). Any thread, several at
 * once; waits on the network holding no lock. */
int cl_engine_barrier(struct cl_engine *p);

/* Writers call this: waits (at most one second) while the upload backlog
 * is full. Any thread. */
void cl_engine_throttle(struct cl_engine *p);

/* Fetch block @cid from the cache or the cluster into a malloc'd buffer
 * that hashes to @cid: 0, -EIO (no node could give the right bytes in
 * time, logged), -ENOMEM. Waits on the network (up to about 20 s) holding
 * no lock of the caller's; callers should hold none either. Any thread,
 * any number at once. */
int cl_engine_fetch(struct cl_engine *p, const struct blk_cid *cid, void **data,
		    size_t *len);

/* Ask for blocks ahead of their reads (sequential readers): they are held
 * in memory, checked, for the cl_engine_fetch that will want them. Any
 * thread; never waits on the network. */
void cl_engine_prefetch(struct cl_engine *p, const struct blk_cid *cids,
			size_t n);

/* Drop the blocks kept in memory because they were read lately (a block
 * is read in several pieces); blocks fetched ahead and not read yet stay.
 * Called when a reader closes its file, so that what was read is fetched
 * again next time, as the kernel's dropped caches would suggest. Any
 * thread. */
void cl_engine_drop_taken(struct cl_engine *p);

/* Blocks queued for upload: how far the watermark lags the log's head.
 * Any thread; never waits. */
uint64_t cl_engine_backlog(struct cl_engine *p);

/* The engine's client: one connection per node of the cluster file, peer
 * i being node i (heads: net_client_head_get/_cas). Valid until
 * cl_engine_close. */
struct net_client *cl_engine_client(struct cl_engine *p);

/* Log counters (uploads, fetches, failures) with blk_log_info. Any
 * thread. */
void cl_engine_log_counters(struct cl_engine *p);

/* How many fragment puts each node says it lost (its STATUS reply,
 * blocks/store/fragstore.h 'L' record): @lost[i] for node i of the cluster file
 * (its name in @names[i]), UINT64_MAX for a node seen down or that did not
 * answer within 2 s; *@n nodes. Waits on the network: call it with no lock
 * held. 0 or -ENOMEM. */
int cl_engine_lost(struct cl_engine *p, uint64_t *lost, const char **names,
		   unsigned *n);

/* The client's view of every node, one line each: "NAME up|down
 * LATENCY_US\n" (fs/bfs.h, BFS_XATTR_NODES). Writes at most @size bytes
 * (NUL-terminated when they fit) and returns the length of the whole text,
 * as snprintf does, or -EIO. Any thread. */
int64_t cl_engine_describe(struct cl_engine *p, char *buf, size_t size);
