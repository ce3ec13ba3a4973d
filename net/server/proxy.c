/* The storage node's front end: ROUTER, admission and backend, driven by
 * the proxy thread; see proxy.h. */

/*
 * Design notes.
 *
 *  1. Sockets and threads. The ROUTER, the backend and the control pair
 *     are used only by the proxy thread (proxy_main) from net_proxy_start
 *     until it reads TERMINATE on the control socket; only then does
 *     net_proxy_free close them. The backend has no high-water mark: what
 *     it holds is bounded by the admission, and the proxy must not block
 *     on it.
 *
 *  2. Admission state (every slot's reqs and bytes, held) belongs to the
 *     proxy thread alone: it goes up when a request is handed to the
 *     workers and down when the reply for its ticket comes back. The
 *     public copies (held_pub, held_peak) are atomics.
 */
#include "net/server/proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "blocks/base/bytes.h"
#include "net/wire/hsmon.h"
#include "net/wire/keys.h"
#include "net/wire/proto.h"

#define PROXY_BATCH 64 /* messages taken from one side before the other */
#define ROUTER_HWM 10000

/* What one peer has with the workers (note 2). */
struct admitted {
	uint32_t reqs;	/* proxy thread */
	uint64_t bytes; /* proxy thread */
};

struct net_proxy {
	/* Set at new/start, read-only after. */
	void *ctx;
	size_t nallowed;
	unsigned peer_max_reqs;
	uint64_t peer_max_bytes, max_bytes;
	struct net_refusals *refusals;
	char endpoint[256];
	char backend_ep[64], ctl_ep[64];

	/* Sockets: the proxy thread's while it runs (note 1), and the
	 * ROUTER's handshake monitor with them. */
	void *router, *backend, *ctl_in, *ctl_out;
	struct net_hsmon *hs;
	pthread_t thread;
	bool started; /* caller's thread */

	struct admitted *peers; /* nallowed + 2; proxy thread (note 2) */
	uint64_t held;		/* proxy thread: bytes with the workers */
	atomic_uint_fast64_t held_pub, held_peak; /* lock-free */
};

/* A message taken off the ROUTER: its routing id and the frames kept. */
struct incoming {
	zmq_msg_t rid, f[NET_MAX_FRAMES];
	size_t n;      /* frames kept in f */
	size_t frames; /* frames received after the routing id */
	uint64_t bytes;
	unsigned slot;
	bool too_big;
};

static int zerr(void)
{
	return errno ? -errno : -EIO;
}

unsigned net_proxy_ticket_slot(const void *ticket)
{
	return blk_get_le32(ticket);
}

const char *net_proxy_backend(const struct net_proxy *p)
{
	return p->backend_ep;
}

const char *net_proxy_endpoint(const struct net_proxy *p)
{
	return p->endpoint;
}

void net_proxy_held(struct net_proxy *p, uint64_t *held, uint64_t *peak)
{
	*held = atomic_load(&p->held_pub);
	*peak = atomic_load(&p->held_peak);
}

/* The peer slot a frame from the ROUTER comes from. */
static unsigned frame_slot(const struct net_proxy *p, zmq_msg_t *m)
{
	const char *uid = zmq_msg_gets(m, "User-Id");
	char *end;
	unsigned long v;

	if (!uid || !*uid)
		return NET_REFUSALS_SLOT_UNKNOWN(p->nallowed);
	v = strtoul(uid, &end, 10);
	return *end || v >= p->nallowed ? NET_REFUSALS_SLOT_UNKNOWN(p->nallowed)
					: (unsigned)v;
}

/* Answer the request whose header frame is @hdr (NULL: none readable)
 * with @status alone. */
static void proxy_answer(struct net_proxy *p, zmq_msg_t *rid, zmq_msg_t *hdr,
			 int status)
{
	struct net_hdr h = {0};
	uint8_t out[NET_HDR_LEN];

	if (hdr)
		net_hdr_decode(zmq_msg_data(hdr), zmq_msg_size(hdr), &h);
	h = (struct net_hdr){
	    .op = h.op, .id = h.id, .status = status, .flags = NET_F_REPLY};
	net_hdr_encode(&h, out);
	/* ROUTER drops what it cannot route or queue: never blocks. */
	if (zmq_msg_send(rid, p->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		return;
	zmq_send(p->router, out, sizeof(out), ZMQ_DONTWAIT);
}

static void set_held(struct net_proxy *p, uint64_t held)
{
	p->held = held;
	atomic_store(&p->held_pub, held);
	if (held > atomic_load(&p->held_peak))
		atomic_store(&p->held_peak, held);
}

/* Take the frames after the routing id off the ROUTER, keeping at most
 * NET_MAX_FRAMES of them and NET_MAX_MSG_BYTES bytes; past that, only the
 * header frame stays and every other frame is closed as it is read. */
static void take_frames(struct net_proxy *p, struct incoming *in)
{
	int more = zmq_msg_more(&in->rid);

	while (more) {
		zmq_msg_t m;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, p->router, 0) < 0) {
			zmq_msg_close(&m);
			break;
		}
		more = zmq_msg_more(&m);
		if (in->frames == 0)
			in->slot = frame_slot(p, &m);
		in->frames++;
		in->bytes += zmq_msg_size(&m);
		if (!in->too_big && (in->frames > NET_MAX_FRAMES ||
				     in->bytes > NET_MAX_MSG_BYTES)) {
			/* Keep the header frame, for the reply's id. */
			in->too_big = true;
			for (size_t i = 1; i < in->n; i++)
				zmq_msg_close(&in->f[i]);
			in->n = in->n ? 1 : 0;
		}
		if (!in->too_big ||
		    (in->frames == 1 && zmq_msg_size(&m) == NET_HDR_LEN))
			in->f[in->n++] = m;
		else
			zmq_msg_close(&m);
	}
}

/* Hand an admitted request to the workers with its ticket; false when the
 * backend would not take it (only when the context is going away). */
static bool forward(struct net_proxy *p, struct incoming *in)
{
	uint8_t ticket[NET_PROXY_TICKET_LEN];
	struct admitted *a = &p->peers[in->slot];

	blk_put_le32(ticket, in->slot);
	blk_put_le64(ticket + 4, in->bytes);
	if (zmq_msg_send(&in->rid, p->backend, ZMQ_SNDMORE) < 0 ||
	    zmq_send(p->backend, ticket, sizeof(ticket), ZMQ_SNDMORE) < 0)
		return false;
	for (size_t i = 0; i < in->n; i++)
		if (zmq_msg_send(&in->f[i], p->backend,
				 i + 1 < in->n ? ZMQ_SNDMORE : 0) < 0)
			zmq_msg_close(&in->f[i]);
	in->n = 0;
	a->reqs++;
	a->bytes += in->bytes;
	set_held(p, p->held + in->bytes);
	return true;
}

/* Admit, refuse or answer one message taken off the ROUTER. */
static void admit(struct net_proxy *p, struct incoming *in)
{
	struct admitted *a = &p->peers[in->slot];

	if (in->too_big) {
		net_refusals_peer(
		    p->refusals, in->slot, NET_REFUSED_TOO_BIG,
		    "%zu frames, %" PRIu64 " bytes (the most is %d frames, "
		    "%" PRIu64 " bytes)",
		    in->frames, in->bytes, NET_MAX_FRAMES, NET_MAX_MSG_BYTES);
		proxy_answer(p, &in->rid, in->n ? &in->f[0] : NULL, -EMSGSIZE);
	} else if (a->reqs >= p->peer_max_reqs ||
		   (a->reqs && a->bytes + in->bytes > p->peer_max_bytes) ||
		   (p->held && p->held + in->bytes > p->max_bytes)) {
		net_refusals_peer(p->refusals, in->slot, NET_REFUSED_BUSY,
				  "busy: %u requests, %" PRIu64
				  " bytes in flight from "
				  "it, %" PRIu64 " from all",
				  a->reqs, a->bytes, p->held);
		proxy_answer(p, &in->rid, &in->f[0], -EBUSY);
	} else {
		forward(p, in);
	}
}

/* Take one request off the ROUTER and admit, refuse or answer it. false
 * when there was none. */
static bool proxy_request(struct net_proxy *p)
{
	struct incoming in = {.slot = NET_REFUSALS_SLOT_UNKNOWN(p->nallowed)};

	zmq_msg_init(&in.rid);
	if (zmq_msg_recv(&in.rid, p->router, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&in.rid);
		return false;
	}
	take_frames(p, &in);
	if (in.frames > 0)
		admit(p, &in);
	for (size_t i = 0; i < in.n; i++)
		zmq_msg_close(&in.f[i]);
	zmq_msg_close(&in.rid);
	return true;
}

/* Settle the ticket @m of a worker's reply. */
static void settle(struct net_proxy *p, zmq_msg_t *m)
{
	const uint8_t *t = zmq_msg_data(m);
	uint32_t slot;
	uint64_t bytes;

	if (zmq_msg_size(m) != NET_PROXY_TICKET_LEN)
		return;
	slot = blk_get_le32(t);
	bytes = blk_get_le64(t + 4);
	if (slot < p->nallowed + 1) {
		p->peers[slot].reqs--;
		p->peers[slot].bytes -= bytes;
		set_held(p, p->held - bytes);
	}
}

/* Pass one worker reply on to the ROUTER, settling its ticket. false when
 * there was none. */
static bool proxy_reply(struct net_proxy *p)
{
	zmq_msg_t m;
	int more, i = 0;

	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, p->backend, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&m);
		return false;
	}
	for (;;) {
		more = zmq_msg_more(&m);
		if (i == 1) {
			settle(p, &m);
			zmq_msg_close(&m);
		} else if (zmq_msg_send(&m, p->router,
					(more ? ZMQ_SNDMORE : 0) |
					    ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
		}
		if (!more)
			break;
		i++;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, p->backend, 0) < 0) {
			zmq_msg_close(&m);
			break;
		}
	}
	return true;
}

/* Log the ROUTER's failed handshakes that the ZAP handler never saw: a
 * peer without CURVE, or one whose CURVE does not decrypt (it has
 * another key for this node). Refused keys are the ZAP handler's. */
static void proxy_handshakes(struct net_proxy *p)
{
	enum net_hs hs;
	uint32_t value;

	while (net_hsmon_next(p->hs, &hs, &value) == 1) {
		if (hs == NET_HS_NO_CURVE)
			net_refusals_handshake(
			    p->refusals, false,
			    "it does not use CURVE (plain ZeroMQ: not a node "
			    "of this cluster)");
		else if (hs == NET_HS_CRYPTO)
			net_refusals_handshake(
			    p->refusals, true,
			    "it expects another key for this node (its "
			    "cluster file is another cluster's?)");
		else if (hs == NET_HS_FAILED && value >= 0x10000000u)
			net_refusals_handshake(
			    p->refusals, true,
			    "ZMTP protocol error 0x%08x in its handshake",
			    (unsigned)value);
	}
}

static void *proxy_main(void *arg)
{
	struct net_proxy *p = arg;

	for (;;) {
		zmq_pollitem_t pi[4] = {
		    {.socket = p->ctl_in, .events = ZMQ_POLLIN},
		    {.socket = p->backend, .events = ZMQ_POLLIN},
		    {.socket = p->router, .events = ZMQ_POLLIN},
		    {.socket = net_hsmon_socket(p->hs), .events = ZMQ_POLLIN},
		};

		if (zmq_poll(pi, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			break; /* context terminated */
		}
		if (pi[0].revents & ZMQ_POLLIN)
			break; /* TERMINATE */
		if (pi[3].revents & ZMQ_POLLIN)
			proxy_handshakes(p);
		/* Replies first: they free room for requests. */
		for (int i = 0; i < PROXY_BATCH && proxy_reply(p); i++)
			;
		for (int i = 0; i < PROXY_BATCH && proxy_request(p); i++)
			;
	}
	return NULL;
}

/* ---- lifecycle ---- */

int net_proxy_new(const struct net_proxy_config *cfg, struct net_proxy **out)
{
	struct net_proxy *p = calloc(1, sizeof(*p));
	int zero = 0, rc;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->ctx = cfg->ctx;
	p->nallowed = cfg->nallowed;
	p->peer_max_reqs = cfg->peer_max_reqs;
	p->peer_max_bytes = cfg->peer_max_bytes;
	p->max_bytes = cfg->max_bytes;
	p->refusals = cfg->refusals;
	atomic_init(&p->held_pub, 0);
	atomic_init(&p->held_peak, 0);
	snprintf(p->backend_ep, sizeof(p->backend_ep),
		 "inproc://blockfs-server-backend-%p", (void *)p);
	snprintf(p->ctl_ep, sizeof(p->ctl_ep), "inproc://blockfs-server-ctl-%p",
		 (void *)p);
	p->peers = calloc(cfg->nallowed + 2, sizeof(*p->peers));
	if (!p->peers) {
		rc = -ENOMEM;
		goto fail;
	}
	p->backend = zmq_socket(p->ctx, ZMQ_DEALER);
	if (!p->backend) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(p->backend, ZMQ_LINGER, &zero, sizeof(zero));
	/* Unbounded here: the admission bounds it (note 1). */
	zmq_setsockopt(p->backend, ZMQ_SNDHWM, &zero, sizeof(zero));
	zmq_setsockopt(p->backend, ZMQ_RCVHWM, &zero, sizeof(zero));
	if (zmq_bind(p->backend, p->backend_ep) < 0) {
		rc = zerr();
		goto fail;
	}
	*out = p;
	return 0;

fail:
	net_proxy_free(p);
	return rc;
}

static int bind_router(struct net_proxy *p, const char *endpoint,
		       const char *secret_key)
{
	int zero = 0, one = 1, hwm = ROUTER_HWM;
	int64_t maxmsg = NET_MAX_FRAME_BYTES;
	size_t len;

	p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
	if (!p->router)
		return zerr();
	zmq_setsockopt(p->router, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(p->router, ZMQ_CURVE_SERVER, &one, sizeof(one));
	zmq_setsockopt(p->router, ZMQ_CURVE_SECRETKEY, secret_key,
		       NET_KEY_Z85_LEN);
	zmq_setsockopt(p->router, ZMQ_ZAP_DOMAIN, "blockfs", 7);
	/* ZeroMQ bounds each frame alone: here by the largest valid one. */
	zmq_setsockopt(p->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	zmq_setsockopt(p->router, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(p->router, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	int rc = net_hsmon_new(p->ctx, p->router, &p->hs);
	if (rc < 0)
		return rc;
	if (zmq_bind(p->router, endpoint) < 0)
		return zerr();
	len = sizeof(p->endpoint);
	if (zmq_getsockopt(p->router, ZMQ_LAST_ENDPOINT, p->endpoint, &len) < 0)
		snprintf(p->endpoint, sizeof(p->endpoint), "%s", endpoint);
	return 0;
}

int net_proxy_start(struct net_proxy *p, const char *endpoint,
		    const char *secret_key)
{
	int zero = 0, rc;

	rc = bind_router(p, endpoint, secret_key);
	if (rc < 0)
		return rc;
	p->ctl_in = zmq_socket(p->ctx, ZMQ_PAIR);
	p->ctl_out = zmq_socket(p->ctx, ZMQ_PAIR);
	if (!p->ctl_in || !p->ctl_out || zmq_bind(p->ctl_in, p->ctl_ep) < 0 ||
	    zmq_connect(p->ctl_out, p->ctl_ep) < 0)
		return zerr();
	zmq_setsockopt(p->ctl_in, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(p->ctl_out, ZMQ_LINGER, &zero, sizeof(zero));
	if (pthread_create(&p->thread, NULL, proxy_main, p) != 0)
		return -EAGAIN;
	p->started = true;
	return 0;
}

void net_proxy_stop(struct net_proxy *p)
{
	if (!p || !p->started)
		return;
	zmq_send(p->ctl_out, "TERMINATE", 9, 0);
	pthread_join(p->thread, NULL);
	p->started = false;
}

void net_proxy_free(struct net_proxy *p)
{
	if (!p)
		return;
	net_proxy_stop(p);
	net_hsmon_free(p->hs);
	if (p->router) {
		/* Give the port back now, not when the context is reaped. */
		zmq_unbind(p->router, p->endpoint);
		zmq_close(p->router);
	}
	if (p->backend)
		zmq_close(p->backend);
	if (p->ctl_in)
		zmq_close(p->ctl_in);
	if (p->ctl_out)
		zmq_close(p->ctl_out);
	free(p->peers);
	free(p);
}
