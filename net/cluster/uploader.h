/* The uploader: consumes the store's new-block log, sends every new
 * block's fragments to its placement, and holds the durability barrier
 * over what it sent.
 *
 * Uploads. The store's new-block log (blocks/store/store.h) is the queue: every
 * commit that stores a block not stored before adds a record in the same
 * atomic batch, so nothing committed is ever forgotten, across crashes
 * too. One uploader thread reads the log in order, encodes each block into
 * K+M fragments (for replicas:N, N full copies, K = 1; under ec:K+M a block
 * shorter than ec_min goes as M+1 copies, K = 1), and sends fragment i to
 * the i-th node of the block's placement (weighted rendezvous, distinct
 * zones first). A node that is down or refuses is replaced by the next one
 * in rendezvous order past the homes (a spare), and the block is recorded
 * as needing repair. A block is done when all K+M fragments are
 * acknowledged; its log record is then deleted. The watermark is the
 * lowest sequence number not done.
 *
 * Barrier (fsync, syncfs). Everything committed before the call must be
 * done (the watermark passes the log's head as it was), then every node
 * that took fragments since the last barrier gets a SYNC (one WAL sync per
 * node, as NFS COMMIT). Fails with -EIO after the configured time.
 *
 * The uploader reaches the nodes only through struct cl_node_ops: the
 * engine (net/cluster/engine.c) implements it with net/client/client.h, the
 * unit tests with a fake. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ec/fragment.h"
#include "net/cluster/layout.h"
#include "net/wire/buf.h"

struct cl_uploader;

/* One fragment send in flight: the uploader embeds it in its own record
 * and the node functions hand it back. */
struct cl_send {
	/* Runs exactly once per send that cl_node_ops.send accepted, on a
	 * thread other than the sender's and never inside the send call;
	 * must not block. @status: 0 (the node acknowledged: the fragment
	 * is in its WAL), -ENOSPC (the node is full), or another negative
	 * errno (no answer, refused, down). */
	void (*done)(struct cl_send *s, int status);
};

/* cl_node_ops.sync's status for a node that gave no answer in time. */
#define CL_SYNC_NO_ANSWER 1

/* What the uploader needs of the nodes. Every function is thread-safe
 * and none waits on the network, except sync, which waits at most its
 * timeout. */
struct cl_node_ops {
	/* Send fragment @hdr (its sealed header) with its @len bytes at
	 * @data, which lie in @buf's, to node @node. The implementation
	 * holds its own reference on @buf (net/wire/buf.h) for as long as it
	 * needs the bytes, whatever the outcome. 0: @s->done follows.
	 * -ENOMEM: nothing sent (the uploader tries again later); another
	 * negative errno: this node cannot take it now (the uploader tries
	 * the next one). Called with the uploader's lock held. */
	int (*send)(void *arg, unsigned node,
		    const uint8_t hdr[EC_FRAG_HDR_LEN], struct net_buf *buf,
		    const void *data, size_t len, struct cl_send *s);
	/* SYNC every node i < @n with @nodes[i] set, all at once, waiting at
	 * most @timeout_ms. Sets @status[i] for the nodes that answered: 0
	 * (synced) or a negative errno; leaves it alone for those that did
	 * not. 0, or -ENOMEM when some could not be asked. Called with no
	 * uploader lock held. */
	int (*sync)(void *arg, const bool *nodes, unsigned n,
		    unsigned timeout_ms, int *status);
	/* Whether node @node is up as last seen; never waits. */
	bool (*up)(void *arg, unsigned node);
	void *arg;
};

/* Progress of a long job (the unmount's upload): @done of @total blocks
 * so far, the job named by @what ("uploading"); called about once a
 * second from the thread doing it. Returns whether it showed it: when it
 * did not (stderr is no terminal now), the job logs the step instead.
 * After a step it showed, one more call at the end with @what NULL (the
 * job is over, done or not; the result is ignored). The command draws it
 * (fs/cmd/progress.h): library code never writes to the terminal. */
typedef bool (*cl_progress_fn)(void *arg, uint64_t done, uint64_t total,
			       const char *what);

struct cl_uploader_config {
	struct cl_layout lay;	  /* its db opened with newlog = true */
	unsigned repair_cf;	  /* binary CID -> reason: blocks to repair */
	unsigned window;	  /* blocks being uploaded at once (0: 32) */
	uint64_t backlog_max;	  /* blocks queued before writers wait (0:
				   * 1024) */
	unsigned sync_timeout_ms; /* barrier deadline (0: 60 s) */
	unsigned retry_ms;	  /* a stalled block is tried again (0: 1 s) */
	struct cl_node_ops ops;
	/* A block whose local copy is damaged (reading it failed RocksDB's
	 * checksum, -EIO, or its CID, -EBADMSG): fetch it from the nodes,
	 * verified, and write it back over the damaged copy. 0 when healed,
	 * else a negative errno (the job waits and tries again later, as
	 * for bytes that are not here). May wait on the network; called on
	 * the uploader's thread without its lock. NULL: no healing. */
	int (*heal)(void *arg, const struct blk_cid *cid);
	void *heal_arg;
	/* The unmount's upload progress (NULL: logged). */
	cl_progress_fn progress;
	void *progress_arg;
};

/* Upload counters. */
struct cl_upload_stats {
	uint64_t blocks, bytes;
	uint64_t misplaced; /* blocks with a fragment off its home */
	uint64_t failures;  /* fragment sends that failed */
};

/* Start the uploader thread on the log from its first record (records
 * below it are done). @cfg's pointers must outlive the uploader. 0,
 * -ENOMEM, or the -errno of pthread_create. */
int cl_uploader_new(const struct cl_uploader_config *cfg,
		    struct cl_uploader **out);

/* New records are in the log: wake the thread. Any thread. */
void cl_uploader_kick(struct cl_uploader *u);

/* Blocks queued for upload: the log's head minus the watermark. Any
 * thread; never waits. */
uint64_t cl_uploader_backlog(struct cl_uploader *u);

/* Writers: wait at most one second while the backlog is over its
 * maximum. Any thread. */
void cl_uploader_throttle(struct cl_uploader *u);

/* The barrier: 0 once everything committed before the call is done and
 * every node that took fragments since the last barrier has synced;
 * -EIO after the sync timeout (the nodes not synced stay marked and are
 * asked again by the next barrier). Any thread, several at once. Waits
 * holding no lock of the uploader's. */
int cl_uploader_barrier(struct cl_uploader *u);

/* Unmount begins (no more writes come). From now on a barrier waits for
 * the whole upload queue, telling its progress to cfg.progress (or, with
 * none, the log), and every barrier shares one deadline: the sync
 * timeout, restarted whenever blocks go out. */
void cl_uploader_closing(struct cl_uploader *u);

/* Stop the thread (barriers still waiting return -EIO). What is queued
 * stays in the log. Call once, before cl_uploader_free. */
void cl_uploader_stop(struct cl_uploader *u);

/* Free the uploader: after cl_uploader_stop, and once no @done of a
 * send can run any more (the node functions are gone). NULL is fine. */
void cl_uploader_free(struct cl_uploader *u);

void cl_uploader_stats(struct cl_uploader *u, struct cl_upload_stats *st);
