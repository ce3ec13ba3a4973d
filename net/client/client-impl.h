/* The pipelined client's private types, shared by its files: ops and
 * their lists (op.c), per-peer state and liveness (peer.c), the local
 * peer's executor (local.c), batches (batch.c) and the client with its
 * I/O thread (client.c). Nothing outside net/ includes this.
 *
 * Locks. One mutex, c->mu, guards the submission queue, the local queue,
 * c->stopping, every batch's ndone and every op's orphan flag; it is
 * never held while sending, polling, or running a local exec or a
 * completion callback. Everything else an op or a peer holds while the op
 * is in flight belongs to one thread: the I/O thread, or for a local op
 * the local thread running it. An op's `done` flag is set (release) after
 * its result is written, so a reader that sees it done (acquire) sees the
 * result. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "net/client/client.h"
#include "net/wire/hsmon.h"
#include "net/wire/keys.h"

#define LOCAL_THREADS 2

struct net_op {
	/* request: written by its creator and at submission, then read-only */
	struct net_req req;
	uint8_t frag_raw[EC_FRAG_HDR_LEN];
	uint8_t *refs;		    /* HAVE/DELETE: packed frefs, owned */
	uint8_t *head;		    /* HEAD_CAS: the record, owned */
	uint8_t fsid[NET_FSID_LEN]; /* HEAD_GET */
	struct net_buf *buf; /* PUT: holds req.data's bytes (net/wire/buf.h) */

	/* where it is: the owner's (see client-impl.h's top) */
	struct net_client *c;
	unsigned peer;
	bool submitted;
	unsigned attempts;
	unsigned busy; /* attempts answered -EBUSY */
	uint64_t sent_us, deadline_us, retry_at_us;
	struct net_op *next, *prev; /* on one list (c->mu for the queues) */

	/* completion */
	net_done_fn done_fn;
	void *done_arg;
	struct net_batch *batch;
	bool orphan;	  /* its batch was freed; under c->mu */
	atomic_bool done; /* lock-free: release after the result */

	/* result, and the reply frames it points into: the owner's until
	 * done, read-only after */
	struct net_op_result res;
	zmq_msg_t rmsg[NET_MAX_FRAMES];
	int nrmsg;
	/* or, from a local peer, what the reply points into */
	void *local_hold;
	net_local_release_fn local_release;
};

struct op_list {
	struct net_op *head, *tail;
	size_t n;
};

static inline void op_list_push(struct op_list *l, struct net_op *op)
{
	op->next = NULL;
	op->prev = l->tail;
	if (l->tail)
		l->tail->next = op;
	else
		l->head = op;
	l->tail = op;
	l->n++;
}

static inline void op_list_push_front(struct op_list *l, struct net_op *op)
{
	op->prev = NULL;
	op->next = l->head;
	if (l->head)
		l->head->prev = op;
	else
		l->tail = op;
	l->head = op;
	l->n++;
}

static inline void op_list_del(struct op_list *l, struct net_op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		l->head = op->next;
	if (op->next)
		op->next->prev = op->prev;
	else
		l->tail = op->prev;
	op->next = op->prev = NULL;
	l->n--;
}

/* One storage node as the client sees it (peer.c). */
struct net_peer {
	/* set at open, read-only after */
	void *sock;	      /* used by the I/O thread alone */
	struct net_hsmon *hs; /* sock's handshakes; the I/O thread's */
	char *endpoint;
	char *name; /* for the log */
	char server_key[NET_KEY_Z85_LEN + 1];

	/* I/O thread: an op waiting there is on exactly one of these:
	 * queue (to send, FIFO), retry (waiting out a backoff) or inflight
	 * (sent; at most window of them) */
	struct op_list queue, retry, inflight;
	bool up;			/* I/O thread */
	uint64_t last_rx_us;		/* I/O thread: last reply of any kind */
	uint64_t next_ping_us;		/* I/O thread */
	uint64_t ping_id, ping_sent_us; /* I/O thread; 0: none outstanding */
	uint64_t latency_us;		/* I/O thread */
	/* I/O thread: handshakes failed since the last one that succeeded,
	 * and when the last report of them was made (0: none since) */
	uint64_t hs_failed, hs_failed_logged, hs_logged_us;
	atomic_bool pub_up;		     /* lock-free copy of up */
	atomic_uint_fast64_t pub_latency_us; /* lock-free copy */

	/* a local peer (local.c): set once under c->mu before any op is
	 * submitted to it, read-only after */
	net_local_fn local_exec;
	net_local_release_fn local_release;
	void *local_arg;
};

struct net_batch {
	struct net_client *c;
	struct net_op **ops; /* the batch's thread */
	size_t n, cap;	     /* the batch's thread */
	size_t ndone;	     /* under c->mu */
	pthread_cond_t cond; /* signalled under c->mu when ndone grows */
};

struct net_client {
	/* set by net_client_new, read-only after */
	void *ctx;
	bool own_ctx;
	struct net_peer *peers;
	unsigned npeers;
	unsigned window, timeout_ms, max_attempts, backoff_ms, heartbeat_ms,
	    down_after_ms;
	bool no_verify;
	void (*log)(void *arg, const char *msg); /* NULL: no log */
	void *log_arg;
	int efd; /* eventfd: wakes the I/O thread */
	pthread_t thread;
	bool thread_started;

	atomic_uint_fast64_t next_id; /* lock-free */

	pthread_mutex_t mu;
	struct op_list submitq; /* under mu */
	bool stopping;		/* under mu */

	/* the local peer's executor (local.c) */
	struct op_list localq;			/* under mu */
	pthread_cond_t local_cond;		/* signalled under mu */
	pthread_t local_threads[LOCAL_THREADS]; /* set_local's caller */
	unsigned nlocal_threads;		/* set_local's caller */
};

/* Monotonic microseconds. */
uint64_t net_now_us(void);

/* ---- op.c ---- */

/* Drop what the result points into (reply frames, local hold). */
void net_op_drop_reply(struct net_op *op);
/* Finish @op with @status: result written, done set, then its batch told
 * (under c->mu), its callback run, or the op freed. The caller owns @op
 * (it is on no list) and holds no lock. */
void net_op_complete(struct net_client *c, struct net_op *op, int status);
/* Complete every op of @l with @status. */
void net_op_fail_list(struct net_client *c, struct op_list *l, int status);
/* Check and attach a decoded reply to its op; returns the op's status. */
int net_op_accept_reply(struct net_client *c, struct net_op *op,
			const struct net_rep *r);
/* A ZeroMQ message of @op's PUT bytes that holds a reference on them. */
void net_op_payload_msg(struct net_op *op, zmq_msg_t *m);

/* ---- peer.c ---- */

/* Connect @p's socket (p->endpoint, p->server_key) with @cfg's keys. */
int net_peer_open(struct net_client *c, struct net_peer *p,
		  const struct net_client_config *cfg);
void net_peer_close(struct net_peer *p);
/* Liveness and heartbeat of @p at @now (I/O thread): a peer silent for
 * down_after_ms goes DOWN and every op on its lists fails with
 * -EHOSTDOWN; a PING goes out when due. Returns the next time @p needs a
 * look for them. */
uint64_t net_peer_heartbeat(struct net_client *c, struct net_peer *p,
			    uint64_t now);
/* A message with header @h came from @p at @now (I/O thread): a reply
 * marks it UP. true when it answered the heartbeat PING (the latency is
 * updated; the message is no op's). */
bool net_peer_rx(struct net_peer *p, const struct net_hdr *h, int hdr_rc,
		 uint64_t now);
/* Read the handshake outcomes of @p's socket (I/O thread, when its
 * monitor is readable), reporting failures as net_client_config's log
 * describes. */
void net_peer_handshakes(struct net_client *c, struct net_peer *p,
			 uint64_t now);

/* ---- local.c ---- */

/* Queue @op for the local threads; called with c->mu held. */
void net_local_push(struct net_client *c, struct net_op *op);
/* Join the local threads (c->stopping is set); ops left fail -ECANCELED. */
void net_local_stop(struct net_client *c);

/* ---- client.c ---- */

/* Give @op its id and peer: 0, or -EINVAL (no such peer, or submitted). */
int net_client_prepare(struct net_client *c, unsigned peer, struct net_op *op);
/* Hand a prepared @op to the I/O thread or the local threads: 0 or
 * -ESHUTDOWN. */
int net_client_enqueue(struct net_client *c, unsigned peer, struct net_op *op);
