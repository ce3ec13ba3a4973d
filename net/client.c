/* The pipelined client: ops, the I/O thread and its per-peer queues,
 * batches and synchronous helpers; see client.h for the contract. */

/*
 * Design notes.
 *
 *  1. Ownership. An op belongs to its creator until submitted, then to the
 *     I/O thread until it completes, then to its callback (or its batch).
 *     Only the I/O thread touches the sockets, the peer lists and an op's
 *     fields while the op is in flight. c->mu protects the submission
 *     queue, c->stopping and every batch's counters; an op's `done` flag
 *     is set (release) after its result is written, so readers that see
 *     it done (acquire) see the result.
 *
 *  2. An op waiting in the I/O thread is on exactly one list of its peer:
 *     `queue` (to send, FIFO), `retry` (waiting out a backoff) or
 *     `inflight` (sent; at most `window` of them). Replies are matched by
 *     request id among `inflight` and the peer's heartbeat PING.
 *
 *  3. PUT bytes are shared, not copied: a refcounted `payload` holds them;
 *     the op holds one reference until it is done, and every ZeroMQ message
 *     built on them with zmq_msg_init_data holds one until ZeroMQ frees it
 *     (on a ZeroMQ thread, perhaps after the op is done). The caller's
 *     release runs when the last reference goes.
 *
 *  4. Liveness: peer->last_rx is the time of the last message of any kind
 *     from the peer. UP -> DOWN when it is older than down_after; every
 *     reply makes the peer UP. The public copies (up, latency) are atomics
 *     so net_client_peer_state needs no lock.
 *
 *  5. A local peer (net_client_set_local: the node the client runs on)
 *     gets its ops executed by a function call on one of LOCAL_THREADS
 *     threads of ours instead of a round trip through ZeroMQ: no
 *     encryption to ourselves (CURVE costs ~1.8 s of CPU per GB moved
 *     across loopback here, both ends together) and no copies. Its
 *     socket stays connected and pinged, so its liveness is still real.
 *     Local ops are on c->localq (under mu) until a local thread takes
 *     them; they complete like any other, on that thread.
 */
#include "net/client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "blocks/clock.h"
#include "net/keys.h"
#include "net/zmsg.h"

#define MAX_POLL_MS 100
#define LOCAL_THREADS 2
#define BUSY_BACKOFF_MAX_MS 1000

struct payload {
	atomic_int refs;
	const void *data;
	size_t len;
	void (*release)(void *);
	void *arg;
};

struct net_op {
	/* request */
	struct net_req req;
	uint8_t frag_raw[EC_FRAG_HDR_LEN];
	uint8_t *refs; /* HAVE/DELETE: packed frefs, owned */
	struct payload *pl;

	/* where it is */
	struct net_client *c;
	unsigned peer;
	bool submitted;
	unsigned attempts;
	unsigned busy; /* attempts answered -EBUSY */
	uint64_t sent_us, deadline_us, retry_at_us;
	struct net_op *next, *prev; /* on one peer list, or the submit queue */

	/* completion */
	net_done_fn done_fn;
	void *done_arg;
	struct net_batch *batch;
	bool orphan; /* its batch was freed; under c->mu */
	atomic_bool done;

	/* result, and the reply frames it points into */
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

struct peer {
	void *sock;
	char *endpoint;
	char server_key[NET_KEY_Z85_LEN + 1];
	struct op_list queue, retry, inflight;
	bool up;
	uint64_t last_rx_us;
	uint64_t next_ping_us;
	uint64_t ping_id, ping_sent_us; /* 0: no PING outstanding */
	uint64_t latency_us;
	atomic_bool pub_up;
	atomic_uint_fast64_t pub_latency_us;
	/* set for a local peer (note 5) */
	net_local_fn local_exec;
	net_local_release_fn local_release;
	void *local_arg;
};

struct net_batch {
	struct net_client *c;
	struct net_op **ops;
	size_t n, cap;
	size_t ndone;	     /* under c->mu */
	pthread_cond_t cond; /* signalled under c->mu when ndone grows */
};

struct net_client {
	void *ctx;
	bool own_ctx;
	struct peer *peers;
	unsigned npeers;
	unsigned window, timeout_ms, max_attempts, backoff_ms, heartbeat_ms,
	    down_after_ms;
	bool no_verify;

	int efd; /* eventfd: wakes the I/O thread */
	pthread_t thread;
	bool thread_started;
	atomic_uint_fast64_t next_id;

	pthread_mutex_t mu;
	struct op_list submitq; /* under mu */
	bool stopping;		/* under mu */

	/* note 5 */
	struct op_list localq; /* under mu */
	pthread_cond_t local_cond;
	pthread_t local_threads[LOCAL_THREADS];
	unsigned nlocal_threads;
};

/* ---- small helpers ---- */

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void list_push(struct op_list *l, struct net_op *op)
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

static void list_push_front(struct op_list *l, struct net_op *op)
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

static void list_del(struct op_list *l, struct net_op *op)
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

static void pl_unref(struct payload *pl)
{
	if (pl && atomic_fetch_sub(&pl->refs, 1) == 1) {
		if (pl->release)
			pl->release(pl->arg);
		free(pl);
	}
}

static void pl_zmq_free(void *data, void *hint)
{
	pl_unref(hint);
}

static void wake(struct net_client *c)
{
	uint64_t one = 1;

	if (write(c->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the thread is awake anyway */
	}
}

/* ---- ops ---- */

static struct net_op *op_new(uint8_t code)
{
	struct net_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->req.hdr.op = code;
	op->res.op = code;
	atomic_init(&op->done, false);
	return op;
}

struct net_op *net_op_new_ping(void)
{
	return op_new(NET_OP_PING);
}

struct net_op *net_op_new_status(void)
{
	return op_new(NET_OP_STATUS);
}

struct net_op *net_op_new_sync(void)
{
	return op_new(NET_OP_SYNC);
}

struct net_op *net_op_new_put(const uint8_t frag_raw[EC_FRAG_HDR_LEN],
			      const void *data, size_t len,
			      void (*release)(void *arg), void *release_arg)
{
	struct net_op *op;

	if (!frag_raw || !data || len == 0 || len > EC_MAX_BLOCK)
		return NULL;
	op = op_new(NET_OP_PUT);
	if (!op)
		return NULL;
	op->pl = calloc(1, sizeof(*op->pl));
	if (!op->pl) {
		free(op);
		return NULL;
	}
	atomic_init(&op->pl->refs, 1);
	op->pl->data = data;
	op->pl->len = len;
	op->pl->release = release;
	op->pl->arg = release_arg;
	memcpy(op->frag_raw, frag_raw, EC_FRAG_HDR_LEN);
	op->req.frag_raw = op->frag_raw;
	op->req.data = data;
	op->req.len = len;
	return op;
}

struct net_op *net_op_new_get(const struct net_fref *ref)
{
	struct net_op *op;

	if (!ref || ref->index >= EC_MAX_FRAGS)
		return NULL;
	op = op_new(NET_OP_GET);
	if (op)
		op->req.ref = *ref;
	return op;
}

static struct net_op *new_batched(uint8_t code, const struct net_fref *refs,
				  uint32_t n)
{
	struct net_op *op;

	if (!refs || n < 1 || n > NET_MAX_REFS)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		if (refs[i].index >= EC_MAX_FRAGS)
			return NULL;
	op = op_new(code);
	if (!op)
		return NULL;
	op->refs = malloc((size_t)n * NET_FREF_LEN);
	if (!op->refs) {
		free(op);
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++)
		net_fref_encode(&refs[i], op->refs + (size_t)i * NET_FREF_LEN);
	op->req.refs = op->refs;
	op->req.hdr.count = n;
	return op;
}

struct net_op *net_op_new_have(const struct net_fref *refs, uint32_t n)
{
	return new_batched(NET_OP_HAVE, refs, n);
}

struct net_op *net_op_new_delete(const struct net_fref *refs, uint32_t n)
{
	return new_batched(NET_OP_DELETE, refs, n);
}

struct net_op *net_op_new_list(const struct net_fref *cursor, uint32_t limit)
{
	struct net_op *op;

	if (limit < 1 || limit > NET_MAX_LIST ||
	    (cursor && cursor->index >= EC_MAX_FRAGS))
		return NULL;
	op = op_new(NET_OP_LIST);
	if (!op)
		return NULL;
	op->req.hdr.count = limit;
	if (cursor) {
		op->req.has_cursor = true;
		op->req.ref = *cursor;
	}
	return op;
}

static void op_drop_reply(struct net_op *op)
{
	for (int i = 0; i < op->nrmsg; i++)
		zmq_msg_close(&op->rmsg[i]);
	op->nrmsg = 0;
	if (op->local_hold && op->local_release)
		op->local_release(op->local_hold);
	op->local_hold = NULL;
}

void net_op_free(struct net_op *op)
{
	if (!op)
		return;
	op_drop_reply(op);
	pl_unref(op->pl);
	free(op->refs);
	free(op);
}

const struct net_op_result *net_op_result(const struct net_op *op)
{
	if (!atomic_load_explicit(&((struct net_op *)op)->done,
				  memory_order_acquire))
		return NULL;
	return &op->res;
}

/* ---- completion (I/O thread, or a submitter for ops never queued) ---- */

static void complete(struct net_client *c, struct net_op *op, int status)
{
	bool free_it = false;

	op->res.status = status;
	op->res.peer = op->peer;
	op->res.attempts = op->attempts;
	if (status < 0)
		op_drop_reply(op);
	/* The bytes are no longer needed by us (ZeroMQ may still hold them). */
	pl_unref(op->pl);
	op->pl = NULL;

	if (op->batch) {
		pthread_mutex_lock(&c->mu);
		atomic_store_explicit(&op->done, true, memory_order_release);
		if (op->orphan) {
			free_it = true;
		} else {
			op->batch->ndone++;
			pthread_cond_broadcast(&op->batch->cond);
		}
		pthread_mutex_unlock(&c->mu);
		if (free_it)
			net_op_free(op);
		return;
	}
	atomic_store_explicit(&op->done, true, memory_order_release);
	if (op->done_fn)
		op->done_fn(op, op->done_arg);
	else
		net_op_free(op);
}

static void fail_list(struct net_client *c, struct op_list *l, int status)
{
	struct net_op *op;

	while ((op = l->head)) {
		list_del(l, op);
		complete(c, op, status);
	}
}

/* ---- the I/O thread ---- */

static void set_up(struct peer *p, bool up)
{
	p->up = up;
	atomic_store(&p->pub_up, up);
}

/* Send one attempt of @op. 0, -EAGAIN (not connected, or the socket is
 * full: try later), or another -errno. */
static int send_op(struct net_client *c, struct peer *p, struct net_op *op)
{
	uint8_t scratch[NET_ENC_SCRATCH];
	struct net_frame f[NET_MAX_FRAMES];
	int n, rc;

	n = net_req_encode(&op->req, scratch, f);
	if (n < 0)
		return n;
	rc = zmq_send(p->sock, f[0].data, f[0].len,
		      ZMQ_DONTWAIT | (n > 1 ? ZMQ_SNDMORE : 0));
	if (rc < 0)
		return errno == EAGAIN ? -EAGAIN : -errno;
	/* The rest of a multipart message is accepted once its first part
	 * was. */
	for (int i = 1; i < n; i++) {
		int more = i + 1 < n ? ZMQ_SNDMORE : 0;

		if (op->pl && f[i].data == op->pl->data) {
			zmq_msg_t m;

			atomic_fetch_add(&op->pl->refs, 1);
			zmq_msg_init_data(&m, (void *)f[i].data, f[i].len,
					  pl_zmq_free, op->pl);
			if (zmq_msg_send(&m, p->sock, more) < 0)
				zmq_msg_close(&m);
		} else {
			zmq_send(p->sock, f[i].data, f[i].len, more);
		}
	}
	return 0;
}

#define DOWN_PING_MS 200 /* ping interval for a peer that is down */

static void send_ping(struct net_client *c, struct peer *p, uint64_t now)
{
	uint8_t h[NET_HDR_LEN];
	struct net_hdr hdr = {.op = NET_OP_PING,
			      .id = atomic_fetch_add(&c->next_id, 1),
			      .arg = now};

	net_hdr_encode(&hdr, h);
	if (zmq_send(p->sock, h, sizeof(h), ZMQ_DONTWAIT) == sizeof(h)) {
		p->ping_id = hdr.id;
		p->ping_sent_us = now;
	}
}

/* Check and attach a decoded reply to its op; returns the op's status. */
static int accept_reply(struct net_client *c, struct net_op *op,
			const struct net_rep *r)
{
	if (r->hdr.op != op->req.hdr.op)
		return -EPROTO;
	if (r->hdr.status < 0)
		return r->hdr.status;
	switch (r->hdr.op) {
	case NET_OP_GET:
		if (!c->no_verify &&
		    (ec_frag_verify(&r->frag, r->data, r->len) < 0 ||
		     !blk_cid_equal(&r->frag.cid, &op->req.ref.cid) ||
		     r->frag.index != op->req.ref.index))
			return -EBADMSG;
		op->res.frag = r->frag;
		op->res.frag_raw = r->frag_raw;
		op->res.data = r->data;
		op->res.len = r->len;
		return 0;
	case NET_OP_HAVE:
	case NET_OP_DELETE:
		if (r->hdr.count != op->req.hdr.count)
			return -EPROTO;
		op->res.bitmap = r->bitmap;
		op->res.count = r->hdr.count;
		return 0;
	case NET_OP_LIST:
		if (r->hdr.count > op->req.hdr.count)
			return -EPROTO;
		op->res.items = r->items;
		op->res.count = r->hdr.count;
		op->res.more = r->hdr.flags & NET_F_MORE;
		return 0;
	case NET_OP_STATUS:
		op->res.st = r->st;
		return 0;
	default:
		return 0;
	}
}

/* Read every message waiting on @p's socket. */
static void recv_replies(struct net_client *c, struct peer *p, uint64_t now)
{
	for (;;) {
		zmq_msg_t m[NET_MAX_FRAMES];
		struct net_frame f[NET_MAX_FRAMES];
		struct net_hdr h;
		struct net_rep r;
		struct net_op *op;
		size_t n;
		bool too_many;
		int rc;

		net_zmsg_recv(p->sock, m, NET_MAX_FRAMES, ZMQ_DONTWAIT, &n,
			      &too_many);
		if (n == 0)
			return;
		for (size_t i = 0; i < n; i++)
			f[i] = (struct net_frame){zmq_msg_data(&m[i]),
						  zmq_msg_size(&m[i])};
		rc = net_hdr_decode(f[0].data, f[0].len, &h);
		if (rc == 0 && (h.flags & NET_F_REPLY)) {
			/* Something that speaks our protocol answered. */
			p->last_rx_us = now;
			if (!p->up)
				set_up(p, true);
		}
		op = NULL;
		if (rc == 0 && h.id != 0 && h.id == p->ping_id) {
			uint64_t rtt = now - p->ping_sent_us;

			p->latency_us =
			    p->latency_us ? (7 * p->latency_us + rtt) / 8 : rtt;
			atomic_store(&p->pub_latency_us, p->latency_us);
			p->ping_id = 0;
		} else if (rc == 0) {
			for (op = p->inflight.head; op; op = op->next)
				if (op->req.hdr.id == h.id)
					break;
		}
		if (!op) {
			for (size_t i = 0; i < n; i++)
				zmq_msg_close(&m[i]);
			continue; /* late, duplicate, or garbage */
		}
		list_del(&p->inflight, op);
		op->res.rtt_us = now - op->sent_us;
		rc = too_many ? -EPROTO : net_rep_decode(f, n, &r);
		if (rc < 0)
			rc = -EPROTO;
		else
			rc = accept_reply(c, op, &r);
		if (rc == -EBUSY && op->busy < NET_CLIENT_BUSY_RETRIES) {
			/* The node has too much of ours in flight: send it
			 * again after a backoff; it does not count as lost. */
			unsigned sh = op->busy < 5 ? op->busy : 5;
			uint64_t wait = (uint64_t)c->backoff_ms << sh;

			if (wait > BUSY_BACKOFF_MAX_MS)
				wait = BUSY_BACKOFF_MAX_MS;
			op->busy++;
			op->retry_at_us = now + wait * 1000u;
			list_push(&p->retry, op);
			for (size_t i = 0; i < n; i++)
				zmq_msg_close(&m[i]);
			continue;
		}
		/* Keep the frames: the result points into them. */
		op_drop_reply(op);
		for (size_t i = 0; i < n; i++)
			op->rmsg[i] = m[i];
		op->nrmsg = (int)n;
		complete(c, op, rc);
	}
}

/* Move what was submitted onto the peers' queues. */
static bool take_submitted(struct net_client *c)
{
	struct op_list got;
	struct net_op *op;
	bool stopping;

	pthread_mutex_lock(&c->mu);
	got = c->submitq;
	c->submitq = (struct op_list){0};
	stopping = c->stopping;
	pthread_mutex_unlock(&c->mu);

	while ((op = got.head)) {
		struct peer *p = &c->peers[op->peer];

		list_del(&got, op);
		if (stopping)
			complete(c, op, -ECANCELED);
		else if (!p->up)
			complete(c, op, -EHOSTDOWN);
		else
			list_push(&p->queue, op);
	}
	return stopping;
}

/* Everything time-driven for @p; returns the next time it needs a look. */
static uint64_t service_peer(struct net_client *c, struct peer *p, uint64_t now,
			     bool *want_out)
{
	uint64_t next = now + MAX_POLL_MS * 1000u;
	struct net_op *op, *nx;

	/* Liveness. */
	if (p->up && now - p->last_rx_us > c->down_after_ms * 1000ull) {
		set_up(p, false);
		fail_list(c, &p->queue, -EHOSTDOWN);
		fail_list(c, &p->retry, -EHOSTDOWN);
		fail_list(c, &p->inflight, -EHOSTDOWN);
	}
	/* A peer that is down is pinged more often, and a ping to it is
	 * given up sooner: when it comes back, the first reply marks it up,
	 * and reads should not have to wait a whole heartbeat for that. */
	uint64_t ivl_ms =
	    p->up ? c->heartbeat_ms
		  : (c->heartbeat_ms < DOWN_PING_MS ? c->heartbeat_ms
						    : DOWN_PING_MS);
	uint64_t lost_ms = p->up ? c->down_after_ms : ivl_ms;
	if (p->ping_id && now - p->ping_sent_us > lost_ms * 1000ull)
		p->ping_id = 0; /* lost; allow another */
	if (!p->up && p->next_ping_us > now + ivl_ms * 1000ull)
		p->next_ping_us = now + ivl_ms * 1000ull;
	if (now >= p->next_ping_us && !p->ping_id) {
		send_ping(c, p, now);
		p->next_ping_us = now + ivl_ms * 1000ull;
	}
	if (p->next_ping_us < next)
		next = p->next_ping_us;
	if (p->up && p->last_rx_us + c->down_after_ms * 1000ull + 1 < next)
		next = p->last_rx_us + c->down_after_ms * 1000ull + 1;

	/* Attempts that got no answer in time. */
	for (op = p->inflight.head; op; op = nx) {
		nx = op->next;
		if (op->deadline_us > now) {
			if (op->deadline_us < next)
				next = op->deadline_us;
			continue;
		}
		list_del(&p->inflight, op);
		if (op->attempts - op->busy >= c->max_attempts) {
			complete(c, op, -ETIMEDOUT);
		} else {
			unsigned lost = op->attempts - op->busy;
			uint64_t wait = (uint64_t)c->backoff_ms * 1000u
					<< (lost - 1 < 10 ? lost - 1 : 10);

			op->retry_at_us = now + wait;
			list_push(&p->retry, op);
		}
	}
	/* Backoffs that are over go first in the queue, oldest first. */
	for (op = p->retry.tail; op; op = nx) {
		nx = op->prev;
		if (op->retry_at_us > now) {
			if (op->retry_at_us < next)
				next = op->retry_at_us;
			continue;
		}
		list_del(&p->retry, op);
		list_push_front(&p->queue, op);
	}
	/* Fill the window. */
	*want_out = false;
	while ((op = p->queue.head) && p->inflight.n < c->window) {
		int rc = send_op(c, p, op);

		if (rc == -EAGAIN) {
			*want_out = true;
			break;
		}
		list_del(&p->queue, op);
		if (rc < 0) {
			complete(c, op, rc);
			continue;
		}
		op->attempts++;
		op->sent_us = now;
		op->deadline_us = now + c->timeout_ms * 1000ull;
		if (op->deadline_us < next)
			next = op->deadline_us;
		list_push(&p->inflight, op);
	}
	return next;
}

static void *io_main(void *arg)
{
	struct net_client *c = arg;
	zmq_pollitem_t *pi = calloc(c->npeers + 1, sizeof(*pi));
	bool stopping = false;

	if (!pi)
		abort(); /* cannot run at all; the constructor checked memory */
	for (unsigned i = 0; i < c->npeers; i++)
		c->peers[i].last_rx_us = now_us();

	while (!stopping) {
		uint64_t now = now_us(), next = now + MAX_POLL_MS * 1000u;
		long timeout;

		stopping = take_submitted(c);
		if (stopping)
			break;
		for (unsigned i = 0; i < c->npeers; i++) {
			bool want_out;
			uint64_t t =
			    service_peer(c, &c->peers[i], now, &want_out);

			if (t < next)
				next = t;
			pi[i] = (zmq_pollitem_t){
			    .socket = c->peers[i].sock,
			    .events = (short)(ZMQ_POLLIN |
					      (want_out ? ZMQ_POLLOUT : 0))};
		}
		pi[c->npeers] =
		    (zmq_pollitem_t){.fd = c->efd, .events = ZMQ_POLLIN};
		now = now_us();
		timeout = next > now ? (long)((next - now + 999) / 1000) : 0;
		if (zmq_poll(pi, (int)c->npeers + 1, timeout) < 0 &&
		    errno != EINTR)
			break; /* context terminated under us */
		if (pi[c->npeers].revents & ZMQ_POLLIN) {
			uint64_t v;

			if (read(c->efd, &v, sizeof(v)) < 0) {
				/* nothing to read after all */
			}
		}
		now = now_us();
		for (unsigned i = 0; i < c->npeers; i++)
			if (pi[i].revents & ZMQ_POLLIN)
				recv_replies(c, &c->peers[i], now);
	}

	/* Stop: nothing more will be sent; everything pending is cancelled. */
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_mutex_unlock(&c->mu);
	take_submitted(c);
	for (unsigned i = 0; i < c->npeers; i++) {
		fail_list(c, &c->peers[i].queue, -ECANCELED);
		fail_list(c, &c->peers[i].retry, -ECANCELED);
		fail_list(c, &c->peers[i].inflight, -ECANCELED);
	}
	free(pi);
	return NULL;
}

/* ---- local peer (note 5) ---- */

static void run_local(struct net_client *c, struct net_op *op)
{
	const struct peer *p = &c->peers[op->peer];
	struct net_rep rep = {.hdr = {.op = op->req.hdr.op}};
	uint64_t t0 = now_us();
	int rc = 0;

	op->attempts = 1;
	if (op->req.hdr.op == NET_OP_PUT)
		rc = ec_frag_hdr_parse(op->req.frag_raw, EC_FRAG_HDR_LEN,
				       &op->req.frag);
	if (rc == 0)
		rc = p->local_exec(p->local_arg, &op->req, &rep,
				   &op->local_hold);
	op->local_release = p->local_release;
	if (rc == 0) {
		rep.hdr.op = op->req.hdr.op;
		rep.hdr.status = 0;
		rc = accept_reply(c, op, &rep);
	}
	op->res.rtt_us = now_us() - t0 + 1; /* never 0: 0 means none */
	complete(c, op, rc);
}

static void *local_main(void *arg)
{
	struct net_client *c = arg;
	struct op_list left = {0};
	struct net_op *op;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		op = c->localq.head;
		if (!op) {
			if (c->stopping)
				break;
			pthread_cond_wait(&c->local_cond, &c->mu);
			continue;
		}
		list_del(&c->localq, op);
		if (c->stopping) {
			list_push(&left, op);
			continue;
		}
		pthread_mutex_unlock(&c->mu);
		run_local(c, op);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	fail_list(c, &left, -ECANCELED);
	return NULL;
}

int net_client_set_local(struct net_client *c, unsigned peer, net_local_fn exec,
			 net_local_release_fn release, void *arg)
{
	if (peer >= c->npeers || !exec || c->peers[peer].local_exec)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	c->peers[peer].local_release = release;
	c->peers[peer].local_arg = arg;
	c->peers[peer].local_exec = exec;
	pthread_mutex_unlock(&c->mu);
	while (c->nlocal_threads < LOCAL_THREADS) {
		if (pthread_create(&c->local_threads[c->nlocal_threads], NULL,
				   local_main, c) != 0)
			return c->nlocal_threads ? 0 : -EAGAIN;
		c->nlocal_threads++;
	}
	return 0;
}

/* ---- lifecycle ---- */

unsigned net_client_npeers(const struct net_client *c)
{
	return c->npeers;
}

int net_client_peer_state(struct net_client *c, unsigned i, bool *up,
			  uint64_t *latency_us)
{
	if (i >= c->npeers)
		return -EINVAL;
	if (up)
		*up = atomic_load(&c->peers[i].pub_up);
	if (latency_us)
		*latency_us = c->peers[i].local_exec
				  ? NET_LOCAL_LATENCY_US
				  : atomic_load(&c->peers[i].pub_latency_us);
	return 0;
}

static int open_peer(struct net_client *c, struct peer *p,
		     const struct net_client_config *cfg)
{
	int zero = 0, one = 1, ivl = 100, ivl_max = 1000;
	int hb = (int)c->heartbeat_ms, hb_timeout = (int)c->down_after_ms;
	int64_t maxmsg = (int64_t)EC_MAX_BLOCK + 65536;

	p->sock = zmq_socket(c->ctx, ZMQ_DEALER);
	if (!p->sock)
		return -errno;
	zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof(zero));
	/* Queue nothing for a peer we are not connected to: an op waits in
	 * our queue (and fails if the peer is DOWN) instead. */
	zmq_setsockopt(p->sock, ZMQ_IMMEDIATE, &one, sizeof(one));
	zmq_setsockopt(p->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
	zmq_setsockopt(p->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max,
		       sizeof(ivl_max));
	/* ZMTP heartbeats drop a dead TCP connection so it is redialled. */
	zmq_setsockopt(p->sock, ZMQ_HEARTBEAT_IVL, &hb, sizeof(hb));
	zmq_setsockopt(p->sock, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout,
		       sizeof(hb_timeout));
	zmq_setsockopt(p->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	if (zmq_setsockopt(p->sock, ZMQ_CURVE_SERVERKEY, p->server_key,
			   NET_KEY_Z85_LEN) < 0 ||
	    zmq_setsockopt(p->sock, ZMQ_CURVE_PUBLICKEY, cfg->public_key,
			   NET_KEY_Z85_LEN) < 0 ||
	    zmq_setsockopt(p->sock, ZMQ_CURVE_SECRETKEY, cfg->secret_key,
			   NET_KEY_Z85_LEN) < 0)
		return -EINVAL;
	if (zmq_connect(p->sock, p->endpoint) < 0)
		return -EINVAL;
	return 0;
}

int net_client_new(const struct net_client_config *cfg, struct net_client **out)
{
	struct net_client *c;
	int rc;

	*out = NULL;
	if (!cfg || !net_key_valid(cfg->public_key) ||
	    !net_key_valid(cfg->secret_key) || (cfg->npeers && !cfg->peers))
		return -EINVAL;
	for (unsigned i = 0; i < cfg->npeers; i++)
		if (!cfg->peers[i].endpoint ||
		    !net_key_valid(cfg->peers[i].server_key))
			return -EINVAL;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	blk_cond_init(&c->local_cond);
	atomic_init(&c->next_id, 1);
	c->efd = -1;
	c->window = cfg->window ? cfg->window : NET_CLIENT_DEFAULT_WINDOW;
	c->timeout_ms =
	    cfg->timeout_ms ? cfg->timeout_ms : NET_CLIENT_DEFAULT_TIMEOUT_MS;
	c->max_attempts =
	    cfg->max_attempts ? cfg->max_attempts : NET_CLIENT_DEFAULT_ATTEMPTS;
	c->backoff_ms =
	    cfg->backoff_ms ? cfg->backoff_ms : NET_CLIENT_DEFAULT_BACKOFF_MS;
	c->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms
					    : NET_CLIENT_DEFAULT_HEARTBEAT_MS;
	c->down_after_ms = cfg->down_after_ms
			       ? cfg->down_after_ms
			       : NET_CLIENT_DEFAULT_DOWN_AFTER_MS;
	c->no_verify = cfg->no_verify;

	c->ctx = cfg->zmq_ctx;
	if (!c->ctx) {
		c->ctx = net_ctx_new();
		c->own_ctx = true;
		if (!c->ctx) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0) {
		rc = -errno;
		goto fail;
	}
	c->peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*c->peers));
	if (!c->peers) {
		rc = -ENOMEM;
		goto fail;
	}
	c->npeers = cfg->npeers;
	for (unsigned i = 0; i < c->npeers; i++) {
		struct peer *p = &c->peers[i];

		p->endpoint = strdup(cfg->peers[i].endpoint);
		if (!p->endpoint) {
			rc = -ENOMEM;
			goto fail;
		}
		memcpy(p->server_key, cfg->peers[i].server_key,
		       NET_KEY_Z85_LEN + 1);
		set_up(p, true);
		atomic_init(&p->pub_latency_us, 0);
		rc = open_peer(c, p, cfg);
		if (rc < 0)
			goto fail;
	}
	if (pthread_create(&c->thread, NULL, io_main, c) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	c->thread_started = true;
	*out = c;
	return 0;

fail:
	net_client_free(c);
	return rc;
}

void net_client_free(struct net_client *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->local_cond);
	pthread_mutex_unlock(&c->mu);
	for (unsigned i = 0; i < c->nlocal_threads; i++)
		pthread_join(c->local_threads[i], NULL);
	if (c->thread_started) {
		wake(c);
		pthread_join(c->thread, NULL);
	}
	for (unsigned i = 0; i < c->npeers; i++) {
		if (c->peers[i].sock)
			zmq_close(c->peers[i].sock);
		free(c->peers[i].endpoint);
	}
	free(c->peers);
	/* Terminating the context waits until ZeroMQ has let go of every
	 * PUT payload (LINGER is 0: unsent ones are dropped). */
	if (c->own_ctx && c->ctx)
		zmq_ctx_term(c->ctx);
	if (c->efd >= 0)
		close(c->efd);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->local_cond);
	free(c);
}

/* ---- submission ---- */

static int enqueue(struct net_client *c, unsigned peer, struct net_op *op)
{
	pthread_mutex_lock(&c->mu);
	if (c->stopping) {
		pthread_mutex_unlock(&c->mu);
		return -ESHUTDOWN;
	}
	if (c->peers[peer].local_exec) {
		list_push(&c->localq, op);
		pthread_cond_signal(&c->local_cond);
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	list_push(&c->submitq, op);
	pthread_mutex_unlock(&c->mu);
	wake(c);
	return 0;
}

static int prepare(struct net_client *c, unsigned peer, struct net_op *op)
{
	if (!op || op->submitted || peer >= c->npeers)
		return -EINVAL;
	op->submitted = true;
	op->c = c;
	op->peer = peer;
	op->req.hdr.id = atomic_fetch_add(&c->next_id, 1);
	return 0;
}

int net_client_submit(struct net_client *c, unsigned peer, struct net_op *op,
		      net_done_fn done, void *arg)
{
	int rc = prepare(c, peer, op);

	if (rc < 0)
		return rc;
	op->done_fn = done;
	op->done_arg = arg;
	rc = enqueue(c, peer, op);
	if (rc < 0)
		op->submitted = false;
	return rc;
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool done;
};

static void wake_waiter(struct net_op *op, void *arg)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

int net_client_call(struct net_client *c, unsigned peer, struct net_op *op)
{
	struct waiter w = {.done = false};
	int rc;

	pthread_mutex_init(&w.mu, NULL);
	blk_cond_init(&w.cond);
	rc = net_client_submit(c, peer, op, wake_waiter, &w);
	if (rc == 0) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cond, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = op->res.status;
	}
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

/* ---- batches ---- */

struct net_batch *net_batch_new(struct net_client *c)
{
	struct net_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->c = c;
	if (blk_cond_init(&b->cond) < 0) {
		free(b);
		return NULL;
	}
	return b;
}

int net_batch_submit(struct net_batch *b, unsigned peer, struct net_op *op)
{
	struct net_client *c = b->c;
	int rc;

	if (!op)
		return -EINVAL;
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		struct net_op **ops = realloc(b->ops, cap * sizeof(*ops));

		if (!ops) {
			net_op_free(op);
			return -ENOMEM;
		}
		b->ops = ops;
		b->cap = cap;
	}
	rc = prepare(c, peer, op);
	if (rc < 0) {
		if (op->submitted) /* someone else's op: not ours to touch */
			return rc;
		op->peer = peer < c->npeers ? peer : 0;
	}
	op->batch = b;
	b->ops[b->n++] = op;
	if (rc == 0)
		rc = enqueue(c, peer, op);
	if (rc < 0)
		complete(c, op, rc);
	return rc;
}

int net_batch_wait(struct net_batch *b, int timeout_ms)
{
	struct net_client *c = b->c;
	struct timespec until;
	int rc = 0;

	if (timeout_ms >= 0)
		blk_deadline(&until, (uint64_t)timeout_ms);
	pthread_mutex_lock(&c->mu);
	while (b->ndone < b->n) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&b->cond, &c->mu);
		} else if (pthread_cond_timedwait(&b->cond, &c->mu, &until) ==
			   ETIMEDOUT) {
			rc = b->ndone < b->n ? -ETIMEDOUT : 0;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

size_t net_batch_count(const struct net_batch *b)
{
	return b->n;
}

size_t net_batch_done(struct net_batch *b)
{
	size_t n;

	pthread_mutex_lock(&b->c->mu);
	n = b->ndone;
	pthread_mutex_unlock(&b->c->mu);
	return n;
}

struct net_op *net_batch_op(const struct net_batch *b, size_t i)
{
	return i < b->n ? b->ops[i] : NULL;
}

void net_batch_free(struct net_batch *b)
{
	size_t kept = 0;

	if (!b)
		return;
	pthread_mutex_lock(&b->c->mu);
	for (size_t i = 0; i < b->n; i++) {
		struct net_op *op = b->ops[i];

		if (atomic_load(&op->done))
			b->ops[kept++] = op; /* ours to free */
		else
			op->orphan = true; /* the I/O thread frees it */
	}
	pthread_mutex_unlock(&b->c->mu);
	for (size_t i = 0; i < kept; i++)
		net_op_free(b->ops[i]);
	pthread_cond_destroy(&b->cond);
	free(b->ops);
	free(b);
}

/* ---- synchronous helpers ---- */

static int call_new(struct net_client *c, unsigned peer, struct net_op *op,
		    struct net_op **out)
{
	int rc;

	*out = op;
	if (!op)
		return -ENOMEM;
	rc = net_client_call(c, peer, op);
	if (rc == -EINVAL || rc == -ESHUTDOWN) {
		if (!atomic_load(&op->done)) {
			net_op_free(op);
			*out = NULL;
		}
	}
	return rc;
}

int net_client_ping(struct net_client *c, unsigned peer, uint64_t *rtt_us)
{
	struct net_op *op;
	int rc = call_new(c, peer, net_op_new_ping(), &op);

	if (rc == 0 && rtt_us)
		*rtt_us = op->res.rtt_us;
	net_op_free(op);
	return rc;
}

int net_client_status(struct net_client *c, unsigned peer,
		      struct net_status *st)
{
	struct net_op *op;
	int rc = call_new(c, peer, net_op_new_status(), &op);

	if (rc == 0)
		*st = op->res.st;
	net_op_free(op);
	return rc;
}

int net_client_sync(struct net_client *c, unsigned peer)
{
	struct net_op *op;
	int rc = call_new(c, peer, net_op_new_sync(), &op);

	net_op_free(op);
	return rc;
}

int net_client_have(struct net_client *c, unsigned peer,
		    const struct net_fref *refs, uint32_t n, uint8_t *bitmap)
{
	struct net_op *op;
	int rc;

	if (n < 1 || n > NET_MAX_REFS)
		return -EINVAL;
	rc = call_new(c, peer, net_op_new_have(refs, n), &op);
	if (rc == 0)
		memcpy(bitmap, op->res.bitmap, net_bitmap_len(n));
	net_op_free(op);
	return rc;
}

int net_client_list(struct net_client *c, unsigned peer,
		    const struct net_fref *cursor, uint32_t limit,
		    struct net_list_item *items, uint32_t *n, bool *more)
{
	struct net_op *op;
	int rc;

	if (limit < 1 || limit > NET_MAX_LIST)
		return -EINVAL;
	rc = call_new(c, peer, net_op_new_list(cursor, limit), &op);
	if (rc == 0) {
		for (uint32_t i = 0; i < op->res.count; i++) {
			if (net_list_item_decode(
				op->res.items + (size_t)i * NET_LIST_ITEM_LEN,
				&items[i]) < 0) {
				rc = -EPROTO;
				break;
			}
		}
		*n = rc == 0 ? op->res.count : 0;
		*more = rc == 0 && op->res.more;
	}
	net_op_free(op);
	return rc;
}
