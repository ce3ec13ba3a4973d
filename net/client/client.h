/* The pipelined client: one CURVE DEALER per storage node, driven by one
 * I/O thread, with request ids, a window of requests in flight per peer,
 * timeouts, retries, heartbeats and peer liveness.
 *
 * Any thread builds an op (net_op_new_*) and submits it, either with a
 * completion callback (net_client_submit) or into a batch it then waits on
 * (net_batch_*). The I/O thread owns every socket; submitters hand ops over
 * through a locked queue and an eventfd.
 *
 * Peer states, kept by the I/O thread:
 *
 *     UP --(no reply of any kind for down_after_ms)--> DOWN
 *     DOWN --(any reply, e.g. to the heartbeat PING)--> UP
 *
 * A PING goes to every peer each heartbeat_ms (its round trip gives the
 * latency). Peers start UP. Going DOWN fails every op queued or in flight
 * to that peer with -EHOSTDOWN; ops submitted to a DOWN peer fail at once
 * with -EHOSTDOWN (callers move on to the next replica). ZeroMQ reconnects
 * on its own (every 100 ms..1 s), giving up a TCP connect that has no
 * answer after 1 s (net/client/peer.c), so a node restarted on the same
 * endpoint, or cut off by a partition that heals, is UP again within about a
 * heartbeat of its return (2 s after a heal, measured).
 *
 * Every op here but HEAD_CAS is idempotent, so an attempt with no reply
 * within timeout_ms is sent again after a backoff (backoff_ms, doubling),
 * up to max_attempts; then the op fails with -ETIMEDOUT. HEAD_CAS is sent
 * again too: an attempt the node applied and whose reply was lost makes the
 * next one -ESTALE (see net_op_new_head_cas). A node that answers
 * -EBUSY (too much of this client's in flight there) gets the op again
 * after a backoff (backoff_ms, doubling, at most 1 s), up to
 * NET_CLIENT_BUSY_RETRIES times, without counting against max_attempts;
 * then the op fails with -EBUSY. Other server errors (-ENOENT, -ENOSPC:
 * put it on another node, -EEXIST: other bytes are stored under that
 * fragment, -EPERM, -EBADMSG, ...) are final. A GET reply is checked before it
 * is accepted: a fragment header, bytes matching its checksum, and the CID and
 * index asked for; otherwise -EBADMSG (a broken or hostile peer). A reply
 * that does not decode fails the op with -EPROTO. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/wire/buf.h"
#include "net/wire/proto.h"

struct net_client;
struct net_op;
struct net_batch;

#define NET_CLIENT_DEFAULT_WINDOW 64
#define NET_CLIENT_DEFAULT_TIMEOUT_MS 5000
#define NET_CLIENT_DEFAULT_ATTEMPTS 3
#define NET_CLIENT_DEFAULT_BACKOFF_MS 50
#define NET_CLIENT_DEFAULT_HEARTBEAT_MS 1000
#define NET_CLIENT_DEFAULT_DOWN_AFTER_MS 3000
#define NET_CLIENT_BUSY_RETRIES 16

struct net_peer_config {
	const char *endpoint;	/* "tcp://host:port" */
	const char *server_key; /* the node's CURVE public key, Z85 */
	const char *name;	/* for the log (NULL: the endpoint) */
};

struct net_client_config {
	void *zmq_ctx; /* NULL: the client creates and owns one */
	/* This client's CURVE key pair (Z85); servers admit it only if the
	 * public key is in their allowed list. */
	const char *public_key;
	const char *secret_key;
	const struct net_peer_config *peers; /* peer i is peers[i] */
	unsigned npeers;
	/* 0 selects the NET_CLIENT_DEFAULT_* value. */
	unsigned window;	/* requests in flight per peer */
	unsigned timeout_ms;	/* per attempt */
	unsigned max_attempts;	/* 1 = no retries */
	unsigned backoff_ms;	/* before the first retry; doubles */
	unsigned heartbeat_ms;	/* PING interval per peer */
	unsigned down_after_ms; /* silence after which a peer is DOWN */
	/* Test only: hand GET replies over without checking them. */
	bool no_verify;
	/* A peer whose handshakes fail (it refuses our key, or is not the
	 * node the server key names: another cluster's?) is reported here,
	 * on the I/O thread: at once, then at most once a minute with a
	 * count while it goes on, and again at once after a handshake that
	 * succeeded. NULL: not reported. */
	void (*log)(void *arg, const char *msg);
	void *log_arg;
};

/* Start the I/O thread and connect to every peer (connections complete in
 * the background). 0, -EINVAL (missing or malformed keys or endpoints),
 * -ENOMEM, or another -errno. */
int net_client_new(const struct net_client_config *cfg,
		   struct net_client **out);

/* Stop: every op not completed yet completes with -ECANCELED (callbacks
 * run, batches see them done), the sockets close, the thread is joined.
 * Free all batches first. NULL is fine. */
void net_client_free(struct net_client *c);

unsigned net_client_npeers(const struct net_client *c);

/* A local peer: the storage node in this process. Its ops run as a call
 * of @exec(@arg, request, reply, &hold) on a thread of the client instead
 * of crossing ZeroMQ (the socket to it stays open for liveness). @exec
 * fills the reply as the node would send it and returns its status; the
 * reply's pointers stay valid until @release(hold) (NULL: nothing to
 * release), which runs when the op is freed. Call once per peer, before
 * submitting anything to it. 0, -EINVAL or -EAGAIN (no thread). */
typedef int (*net_local_fn)(void *arg, const struct net_req *q,
			    struct net_rep *rep, void **hold);
typedef void (*net_local_release_fn)(void *hold);
int net_client_set_local(struct net_client *c, unsigned peer, net_local_fn exec,
			 net_local_release_fn release, void *arg);

/* The latency reported for the local peer: it answers in a function call,
 * nearest of all. */
#define NET_LOCAL_LATENCY_US 1

/* Liveness of peer @i as the I/O thread last saw it; @latency_us is the
 * smoothed PING round trip (0 before the first reply; NET_LOCAL_LATENCY_US
 * for the local peer). Either pointer may be NULL. 0 or -EINVAL. */
int net_client_peer_state(struct net_client *c, unsigned i, bool *up,
			  uint64_t *latency_us);

/* ---- ops ---- */

/* Results; read them only once the op is done (see net_op_result). The
 * pointers stay valid until net_op_free. */
struct net_op_result {
	int status; /* 0, the server's -errno, or -ETIMEDOUT,
		       -EHOSTDOWN, -EBADMSG, -EPROTO, -ECANCELED */
	uint8_t op; /* NET_OP_* */
	unsigned peer;
	unsigned attempts; /* sends it took */
	uint64_t rtt_us;   /* of the attempt answered */
	/* GET: the fragment (header already verified against the bytes) */
	struct ec_frag_hdr frag;
	const uint8_t *frag_raw; /* 64 bytes */
	/* GET: the fragment bytes; HEAD_GET: the head record, as the node
	 * sent it (1..NET_HEAD_MAX_BYTES bytes, not checked) */
	const void *data;
	size_t len;
	/* HAVE and DELETE: bit i for fref i (net_bitmap_get) */
	const uint8_t *bitmap;
	/* HAVE, DELETE: bits; LIST: items */
	uint32_t count;
	/* LIST: count packed items (net_list_item_decode), and whether more
	 * may follow (next cursor: the last item's fref) */
	const uint8_t *items;
	bool more;
	/* STATUS */
	struct net_status st;
	/* PING: the round trip is rtt_us */
};

/* Constructors return NULL on ENOMEM or bad arguments. */
struct net_op *net_op_new_ping(void);
struct net_op *net_op_new_status(void);
struct net_op *net_op_new_sync(void);
/* PUT one fragment: @frag_raw is its sealed 64-byte header (copied);
 * @data its frag_len bytes, which lie in @buf's and are sent without
 * copying. The op holds a reference on @buf (net/wire/buf.h), and so do the
 * ZeroMQ messages made of the bytes, until neither the client nor ZeroMQ
 * needs them (at the latest at net_op_free or net_client_free, possibly a
 * little after the completion); the caller keeps its own. @buf may be
 * NULL when @data outlives the client. */
struct net_op *net_op_new_put(const uint8_t frag_raw[EC_FRAG_HDR_LEN],
			      struct net_buf *buf, const void *data,
			      size_t len);
struct net_op *net_op_new_get(const struct net_fref *ref);
/* HAVE / DELETE of @n (1..NET_MAX_REFS) fragments; @refs is copied. */
struct net_op *net_op_new_have(const struct net_fref *refs, uint32_t n);
struct net_op *net_op_new_delete(const struct net_fref *refs, uint32_t n);
/* LIST up to @limit (1..NET_MAX_LIST) fragments after @cursor (NULL: from
 * the start). */
struct net_op *net_op_new_list(const struct net_fref *cursor, uint32_t limit);

/* Heads (the node side: net/server/heads.h). Both constructors return
 * NULL on ENOMEM or bad arguments, like the others.
 *
 * HEAD_GET: the head @seq (0: the node's latest) of filesystem @fsid
 * (NET_FSID_LEN bytes, copied). Its result's data and len are the record
 * as the node holds it, unchecked here: a node is not trusted, so decode
 * and verify it (blk_head_decode, blk_head_verify with the filesystem's
 * key, and the fs and seq asked for) before using it. Status -ENOENT: the
 * node holds no such head (none at all, for seq 0).
 *
 * HEAD_CAS: ask the node to make the signed head record @rec (@len bytes,
 * 1..NET_HEAD_MAX_BYTES, copied) its current head, @expect being the seq
 * the writer believes current there (0: none yet). 0 means stored and
 * synced on that node. The node's refusals are final (never retried):
 *   -ESTALE      @expect is not the node's current seq, or the head's seq
 *                is not @expect + 1. After a retry (result's attempts >
 *                1) it may be an earlier attempt that was applied: read
 *                the node's head (HEAD_GET, seq of the head) and compare
 *                bytes. A node behind (it missed heads while down) is
 *                brought forward by CASing the heads it lacks in order.
 *   -EINVAL      its parent is not the CID of the node's current head
 *   -EACCES      the node's current head is another writer's and its
 *                lease has not expired by the node's clock
 *   -EBADMSG     malformed, unsigned, or not signed by the filesystem key
 *   -ENOENT      the head names another filesystem than the node's
 *   -EOPNOTSUPP  the node's cluster file has no [filesystem] section, or
 *                it keeps no heads (a node from before heads)
 * and, as for every op, -ETIMEDOUT, -EHOSTDOWN, -EPROTO, -ECANCELED, or
 * -EIO/-ENOSPC from the node's store. Publishing a head is the writer's
 * loop over the nodes (fs/commit/); each node decides alone. */
struct net_op *net_op_new_head_get(const uint8_t fsid[NET_FSID_LEN],
				   uint64_t seq);
struct net_op *net_op_new_head_cas(uint64_t expect, const void *rec,
				   size_t len);

/* Free an op that is done or was never submitted. NULL is fine. */
void net_op_free(struct net_op *op);

/* The result once the op is done, else NULL. */
const struct net_op_result *net_op_result(const struct net_op *op);

/* Called on the I/O thread when @op is done. The callback owns @op from
 * then on (free it with net_op_free, now or later, from any thread). It
 * must not block: the I/O thread waits for it. */
typedef void (*net_done_fn)(struct net_op *op, void *arg);

/* Hand @op to the client for peer @peer; @done(op, arg) runs when it
 * completes (whatever the outcome). Thread-safe. 0, or -EINVAL (no such
 * peer, or @op already submitted) / -ESHUTDOWN, in which case @op is still
 * the caller's. */
int net_client_submit(struct net_client *c, unsigned peer, struct net_op *op,
		      net_done_fn done, void *arg);

/* Submit @op and wait for it (ops always complete: at worst by their
 * timeouts). Returns its result's status; @op stays the caller's, with its
 * result readable. */
int net_client_call(struct net_client *c, unsigned peer, struct net_op *op);

/* ---- batches: wait for a set of ops with a deadline ---- */

/* A batch belongs to one thread at a time. NULL on ENOMEM. */
struct net_batch *net_batch_new(struct net_client *c);

/* Submit @op to @peer as part of @b, which owns @op from now on (also when
 * this fails: then @op is done with the error returned). 0 or -EINVAL /
 * -ESHUTDOWN / -ENOMEM. */
int net_batch_submit(struct net_batch *b, unsigned peer, struct net_op *op);

/* Wait until every op submitted is done, or for @timeout_ms (< 0: no
 * limit). 0 when all are done, else -ETIMEDOUT. */
int net_batch_wait(struct net_batch *b, int timeout_ms);

/* Ops in submission order, and how many are done. */
size_t net_batch_count(const struct net_batch *b);
size_t net_batch_done(struct net_batch *b);
struct net_op *net_batch_op(const struct net_batch *b, size_t i);

/* Free the batch and its ops; ops still in flight are abandoned and freed
 * by the client when they complete. NULL is fine. */
void net_batch_free(struct net_batch *b);

/* ---- synchronous helpers for tools ---- */

int net_client_ping(struct net_client *c, unsigned peer, uint64_t *rtt_us);
int net_client_status(struct net_client *c, unsigned peer,
		      struct net_status *st);
int net_client_sync(struct net_client *c, unsigned peer);
/* @bitmap receives net_bitmap_len(n) bytes. */
int net_client_have(struct net_client *c, unsigned peer,
		    const struct net_fref *refs, uint32_t n, uint8_t *bitmap);
/* HEAD_GET into @buf (NET_HEAD_MAX_BYTES bytes), its length in *@len (0
 * unless it returns 0); and HEAD_CAS. The ops' statuses (above). */
int net_client_head_get(struct net_client *c, unsigned peer,
			const uint8_t fsid[NET_FSID_LEN], uint64_t seq,
			uint8_t *buf, size_t *len);
int net_client_head_cas(struct net_client *c, unsigned peer, uint64_t expect,
			const void *rec, size_t len);
/* @items receives up to @limit entries, *@n how many, *@more whether the
 * listing goes on after the last one. */
int net_client_list(struct net_client *c, unsigned peer,
		    const struct net_fref *cursor, uint32_t limit,
		    struct net_list_item *items, uint32_t *n, bool *more);
