/* The pipelined client: its lifecycle, the I/O thread that pipelines
 * every peer's requests (window, timeouts, retries, replies matched by
 * id), submission and the synchronous helpers; see client.h for the
 * contract and client-impl.h for its types and locks. */

/*
 * Design notes.
 *
 *  1. Ownership. An op belongs to its creator until submitted, then to the
 *     I/O thread (or a local thread) until it completes, then to its
 *     callback (or its batch). Only the I/O thread touches the sockets,
 *     the peer lists and an op's fields while the op is in flight.
 *
 *  2. An op waiting in the I/O thread is on exactly one list of its peer:
 *     `queue` (to send, FIFO), `retry` (waiting out a backoff) or
 *     `inflight` (sent; at most `window` of them). Replies are matched by
 *     request id among `inflight` and the peer's heartbeat PING.
 *
 *  3. PUT bytes are shared, not copied (struct net_buf, buf.c): every
 *     ZeroMQ message built on them holds a reference until ZeroMQ frees
 *     it, perhaps after the op is done.
 *
 *  4. The I/O thread takes c->mu only to take the submission queue; it
 *     holds no lock while it polls, sends or completes ops.
 */
#include "net/client/client.h"

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

#include "blocks/base/clock.h"
#include "net/client/client-impl.h"
#include "net/wire/keys.h"
#include "net/wire/zmsg.h"

#define MAX_POLL_MS 100
#define BUSY_BACKOFF_MAX_MS 1000

uint64_t net_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void wake(struct net_client *c)
{
	uint64_t one = 1;

	if (write(c->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the thread is awake anyway */
	}
}

/* ---- the I/O thread ---- */

/* Send one attempt of @op. 0, -EAGAIN (not connected, or the socket is
 * full: try later), or another -errno. */
static int send_op(struct net_client *c, struct net_peer *p, struct net_op *op)
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

		if (op->req.hdr.op == NET_OP_PUT && f[i].data == op->req.data) {
			zmq_msg_t m;

			net_op_payload_msg(op, &m);
			if (zmq_msg_send(&m, p->sock, more) < 0)
				zmq_msg_close(&m);
		} else {
			zmq_send(p->sock, f[i].data, f[i].len, more);
		}
	}
	return 0;
}

/* Settle the reply @m (@n frames, @f their views) to @op, just taken off
 * @p's inflight list: a busy node gets the op again after a backoff,
 * anything else completes it. */
static void settle_reply(struct net_client *c, struct net_peer *p,
			 struct net_op *op, zmq_msg_t *m, struct net_frame *f,
			 size_t n, bool too_many, uint64_t now)
{
	struct net_rep r;
	int rc;

	op->res.rtt_us = now - op->sent_us;
	rc = too_many ? -EPROTO : net_rep_decode(f, n, &r);
	if (rc < 0)
		rc = -EPROTO;
	else
		rc = net_op_accept_reply(c, op, &r);
	if (rc == -EBUSY && op->busy < NET_CLIENT_BUSY_RETRIES) {
		/* The node has too much of ours in flight: send it again
		 * after a backoff; it does not count as lost. */
		unsigned sh = op->busy < 5 ? op->busy : 5;
		uint64_t wait = (uint64_t)c->backoff_ms << sh;

		if (wait > BUSY_BACKOFF_MAX_MS)
			wait = BUSY_BACKOFF_MAX_MS;
		op->busy++;
		op->retry_at_us = now + wait * 1000u;
		op_list_push(&p->retry, op);
		net_zmsg_close(m, n);
		return;
	}
	/* Keep the frames: the result points into them. */
	net_op_drop_reply(op);
	for (size_t i = 0; i < n; i++)
		op->rmsg[i] = m[i];
	op->nrmsg = (int)n;
	net_op_complete(c, op, rc);
}

/* Read every message waiting on @p's socket. */
static void recv_replies(struct net_client *c, struct net_peer *p, uint64_t now)
{
	for (;;) {
		zmq_msg_t m[NET_MAX_FRAMES];
		struct net_frame f[NET_MAX_FRAMES];
		struct net_hdr h;
		struct net_op *op = NULL;
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
		if (!net_peer_rx(p, &h, rc, now) && rc == 0) {
			for (op = p->inflight.head; op; op = op->next)
				if (op->req.hdr.id == h.id)
					break;
		}
		if (!op) {
			net_zmsg_close(m, n);
			continue; /* late, duplicate, garbage, or the PING */
		}
		op_list_del(&p->inflight, op);
		settle_reply(c, p, op, m, f, n, too_many, now);
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
		struct net_peer *p = &c->peers[op->peer];

		op_list_del(&got, op);
		if (stopping)
			net_op_complete(c, op, -ECANCELED);
		else if (!p->up)
			net_op_complete(c, op, -EHOSTDOWN);
		else
			op_list_push(&p->queue, op);
	}
	return stopping;
}
/* Attempts of @p's that got no answer in time: retried after a backoff,
 * or failed once max_attempts were lost. Lowers *@next to the next
 * deadline. */
static void expire_inflight(struct net_client *c, struct net_peer *p,
			    uint64_t now, uint64_t *next)
{
	struct net_op *op, *nx;

	for (op = p->inflight.head; op; op = nx) {
		nx = op->next;
		if (op->deadline_us > now) {
			if (op->deadline_us < *next)
				*next = op->deadline_us;
			continue;
		}
		op_list_del(&p->inflight, op);
		if (op->attempts - op->busy >= c->max_attempts) {
			net_op_complete(c, op, -ETIMEDOUT);
		} else {
			unsigned lost = op->attempts - op->busy;
			uint64_t wait = (uint64_t)c->backoff_ms * 1000u
					<< (lost - 1 < 10 ? lost - 1 : 10);

			op->retry_at_us = now + wait;
			op_list_push(&p->retry, op);
		}
	}
}

/* Backoffs that are over go first in the queue, oldest first. */
static void requeue_retries(struct net_peer *p, uint64_t now, uint64_t *next)
{
	struct net_op *op, *nx;

	for (op = p->retry.tail; op; op = nx) {
		nx = op->prev;
		if (op->retry_at_us > now) {
			if (op->retry_at_us < *next)
				*next = op->retry_at_us;
			continue;
		}
		op_list_del(&p->retry, op);
		op_list_push_front(&p->queue, op);
	}
}

/* Send from @p's queue until the window is full; true when the socket
 * would not take more (poll it for room). */
static bool fill_window(struct net_client *c, struct net_peer *p, uint64_t now,
			uint64_t *next)
{
	struct net_op *op;

	while ((op = p->queue.head) && p->inflight.n < c->window) {
		int rc = send_op(c, p, op);

		if (rc == -EAGAIN)
			return true;
		op_list_del(&p->queue, op);
		if (rc < 0) {
			net_op_complete(c, op, rc);
			continue;
		}
		op->attempts++;
		op->sent_us = now;
		op->deadline_us = now + c->timeout_ms * 1000ull;
		if (op->deadline_us < *next)
			*next = op->deadline_us;
		op_list_push(&p->inflight, op);
	}
	return false;
}

/* Everything time-driven for @p; returns the next time it needs a look. */
static uint64_t service_peer(struct net_client *c, struct net_peer *p,
			     uint64_t now, bool *want_out)
{
	uint64_t next = now + MAX_POLL_MS * 1000u;
	uint64_t t = net_peer_heartbeat(c, p, now);

	if (t < next)
		next = t;
	expire_inflight(c, p, now, &next);
	requeue_retries(p, now, &next);
	*want_out = fill_window(c, p, now, &next);
	return next;
}

/* One round of the I/O thread: service every peer, poll, read replies
 * and handshake outcomes. @pi has room for 2 * npeers + 1 items: the
 * peers' sockets, the eventfd, the peers' handshake monitors. false when
 * the context is terminated under it. */
static bool io_round(struct net_client *c, zmq_pollitem_t *pi)
{
	uint64_t now = net_now_us(), next = now + MAX_POLL_MS * 1000u;
	long timeout;

	for (unsigned i = 0; i < c->npeers; i++) {
		bool want_out;
		uint64_t t = service_peer(c, &c->peers[i], now, &want_out);

		if (t < next)
			next = t;
		pi[i] = (zmq_pollitem_t){
		    .socket = c->peers[i].sock,
		    .events =
			(short)(ZMQ_POLLIN | (want_out ? ZMQ_POLLOUT : 0))};
	}
	pi[c->npeers] = (zmq_pollitem_t){.fd = c->efd, .events = ZMQ_POLLIN};
	for (unsigned i = 0; i < c->npeers; i++)
		pi[c->npeers + 1 + i] =
		    (zmq_pollitem_t){.socket = net_hsmon_socket(c->peers[i].hs),
				     .events = ZMQ_POLLIN};
	now = net_now_us();
	timeout = next > now ? (long)((next - now + 999) / 1000) : 0;
	if (zmq_poll(pi, 2 * (int)c->npeers + 1, timeout) < 0 && errno != EINTR)
		return false;
	if (pi[c->npeers].revents & ZMQ_POLLIN) {
		uint64_t v;

		if (read(c->efd, &v, sizeof(v)) < 0) {
			/* nothing to read after all */
		}
	}
	now = net_now_us();
	for (unsigned i = 0; i < c->npeers; i++) {
		if (pi[i].revents & ZMQ_POLLIN)
			recv_replies(c, &c->peers[i], now);
		if (pi[c->npeers + 1 + i].revents & ZMQ_POLLIN)
			net_peer_handshakes(c, &c->peers[i], now);
	}
	return true;
}

static void *io_main(void *arg)
{
	struct net_client *c = arg;
	zmq_pollitem_t *pi = calloc(2 * (size_t)c->npeers + 1, sizeof(*pi));

	if (!pi)
		abort(); /* cannot run at all; the constructor checked memory */
	for (unsigned i = 0; i < c->npeers; i++)
		c->peers[i].last_rx_us = net_now_us();
	while (!take_submitted(c) && io_round(c, pi))
		;

	/* Stop: nothing more will be sent; everything pending is cancelled. */
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_mutex_unlock(&c->mu);
	take_submitted(c);
	for (unsigned i = 0; i < c->npeers; i++) {
		net_op_fail_list(c, &c->peers[i].queue, -ECANCELED);
		net_op_fail_list(c, &c->peers[i].retry, -ECANCELED);
		net_op_fail_list(c, &c->peers[i].inflight, -ECANCELED);
	}
	free(pi);
	return NULL;
}

/* ---- lifecycle ---- */

unsigned net_client_npeers(const struct net_client *c)
{
	return c->npeers;
}

static int check_config(const struct net_client_config *cfg)
{
	if (!cfg || !net_key_valid(cfg->public_key) ||
	    !net_key_valid(cfg->secret_key) || (cfg->npeers && !cfg->peers))
		return -EINVAL;
	for (unsigned i = 0; i < cfg->npeers; i++)
		if (!cfg->peers[i].endpoint ||
		    !net_key_valid(cfg->peers[i].server_key))
			return -EINVAL;
	return 0;
}

static void set_params(struct net_client *c,
		       const struct net_client_config *cfg)
{
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
	c->log = cfg->log;
	c->log_arg = cfg->log_arg;
}

/* The context, the eventfd and a connected socket per peer. */
static int open_sockets(struct net_client *c,
			const struct net_client_config *cfg)
{
	int rc;

	c->ctx = cfg->zmq_ctx;
	if (!c->ctx) {
		c->ctx = net_ctx_new();
		c->own_ctx = true;
		if (!c->ctx)
			return -ENOMEM;
	}
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0)
		return -errno;
	c->peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*c->peers));
	if (!c->peers)
		return -ENOMEM;
	c->npeers = cfg->npeers;
	for (unsigned i = 0; i < c->npeers; i++) {
		struct net_peer *p = &c->peers[i];

		p->endpoint = strdup(cfg->peers[i].endpoint);
		p->name = strdup(cfg->peers[i].name ? cfg->peers[i].name
						    : cfg->peers[i].endpoint);
		if (!p->endpoint || !p->name)
			return -ENOMEM;
		memcpy(p->server_key, cfg->peers[i].server_key,
		       NET_KEY_Z85_LEN + 1);
		rc = net_peer_open(c, p, cfg);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int net_client_new(const struct net_client_config *cfg, struct net_client **out)
{
	struct net_client *c;
	int rc;

	*out = NULL;
	rc = check_config(cfg);
	if (rc < 0)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	blk_cond_init(&c->local_cond);
	atomic_init(&c->next_id, 1);
	c->efd = -1;
	set_params(c, cfg);
	rc = open_sockets(c, cfg);
	if (rc == 0 && pthread_create(&c->thread, NULL, io_main, c) != 0)
		rc = -EAGAIN;
	if (rc < 0) {
		net_client_free(c);
		return rc;
	}
	c->thread_started = true;
	*out = c;
	return 0;
}

void net_client_free(struct net_client *c)
{
	if (!c)
		return;
	net_local_stop(c);
	if (c->thread_started) {
		wake(c);
		pthread_join(c->thread, NULL);
	}
	for (unsigned i = 0; i < c->npeers; i++)
		net_peer_close(&c->peers[i]);
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

int net_client_enqueue(struct net_client *c, unsigned peer, struct net_op *op)
{
	pthread_mutex_lock(&c->mu);
	if (c->stopping) {
		pthread_mutex_unlock(&c->mu);
		return -ESHUTDOWN;
	}
	if (c->peers[peer].local_exec) {
		net_local_push(c, op);
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	op_list_push(&c->submitq, op);
	pthread_mutex_unlock(&c->mu);
	wake(c);
	return 0;
}

int net_client_prepare(struct net_client *c, unsigned peer, struct net_op *op)
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
	int rc = net_client_prepare(c, peer, op);

	if (rc < 0)
		return rc;
	op->done_fn = done;
	op->done_arg = arg;
	rc = net_client_enqueue(c, peer, op);
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

int net_client_head_get(struct net_client *c, unsigned peer,
			const uint8_t fsid[NET_FSID_LEN], uint64_t seq,
			uint8_t *buf, size_t *len)
{
	struct net_op *op;
	int rc;

	*len = 0;
	if (!fsid || !buf)
		return -EINVAL;
	rc = call_new(c, peer, net_op_new_head_get(fsid, seq), &op);
	if (rc == 0) {
		memcpy(buf, op->res.data, op->res.len);
		*len = op->res.len;
	}
	net_op_free(op);
	return rc;
}

int net_client_head_cas(struct net_client *c, unsigned peer, uint64_t expect,
			const void *rec, size_t len)
{
	struct net_op *op;
	int rc;

	if (!rec || len == 0 || len > NET_HEAD_MAX_BYTES)
		return -EINVAL;
	rc = call_new(c, peer, net_op_new_head_cas(expect, rec, len), &op);
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
