/* The client's view of one storage node: its DEALER socket, its liveness
 * (UP/DOWN, see client.h), its heartbeat PING with the latency it
 * measures, and the report of its failed handshakes; opened by
 * net_client_new, closed by net_client_free, driven by the I/O thread in
 * between. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/client/client-impl.h"

#define DOWN_PING_MS 200 /* ping interval for a peer that is down */
/* How long one TCP connect may wait for the peer's SYN-ACK before ZeroMQ
 * gives it up and dials again (after RECONNECT_IVL_MS..RECONNECT_MAX_MS).
 * Without it a connect to a peer cut off by a partition sits in SYN-SENT
 * while the kernel backs off (SYNs 1, 2, 4, 8, 16, 32 s apart), and a
 * healed peer was only seen again at the next retransmission: up to a
 * minute later, a fsync waiting on it all that time. With it, a new SYN
 * goes out at least every CONNECT_TIMEOUT_MS + RECONNECT_MAX_MS. One
 * second is far above a SYN-ACK's round trip on any network the cluster
 * runs on, and equal to the kernel's first retransmission. */
#define CONNECT_TIMEOUT_MS 1000
#define RECONNECT_IVL_MS 100
#define RECONNECT_MAX_MS 1000
/* A peer whose handshakes keep failing is reported at most this often. */
#define HS_REPORT_US (60 * 1000000ull)

static void set_up(struct net_peer *p, bool up)
{
	p->up = up;
	atomic_store(&p->pub_up, up);
}

int net_peer_open(struct net_client *c, struct net_peer *p,
		  const struct net_client_config *cfg)
{
	int zero = 0, one = 1, ivl = RECONNECT_IVL_MS,
	    ivl_max = RECONNECT_MAX_MS;
	int connect_ms = CONNECT_TIMEOUT_MS;
	int hb = (int)c->heartbeat_ms, hb_timeout = (int)c->down_after_ms;
	int64_t maxmsg = (int64_t)EC_MAX_BLOCK + 65536;

	set_up(p, true);
	atomic_init(&p->pub_latency_us, 0);
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
	zmq_setsockopt(p->sock, ZMQ_CONNECT_TIMEOUT, &connect_ms,
		       sizeof(connect_ms));
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
	/* Watched from before the first connection: its handshake too. */
	int rc = net_hsmon_new(c->ctx, p->sock, &p->hs);
	if (rc < 0)
		return rc;
	if (zmq_connect(p->sock, p->endpoint) < 0)
		return -EINVAL;
	return 0;
}

void net_peer_close(struct net_peer *p)
{
	net_hsmon_free(p->hs);
	p->hs = NULL;
	if (p->sock)
		zmq_close(p->sock);
	p->sock = NULL;
	free(p->endpoint);
	p->endpoint = NULL;
	free(p->name);
	p->name = NULL;
}

/* Why a handshake with a peer failed, for the log. */
static const char *hs_why(enum net_hs hs)
{
	switch (hs) {
	case NET_HS_AUTH:
		return "refuses our key (another cluster?): our public key "
		       "is not in its cluster file";
	case NET_HS_NO_CURVE:
		return "does not speak CURVE: it is not a blockfs node";
	default:
		return "ends our CURVE handshakes: it does not hold the secret "
		       "key of the public_key the cluster file gives it "
		       "(another cluster's node?), or is not a blockfs node";
	}
}

void net_peer_handshakes(struct net_client *c, struct net_peer *p, uint64_t now)
{
	enum net_hs hs;
	uint32_t value;

	while (net_hsmon_next(p->hs, &hs, &value) == 1) {
		char msg[512], more[96] = "";

		if (hs == NET_HS_OK) {
			/* Let a new failure be reported at once. */
			p->hs_failed = p->hs_failed_logged = 0;
			p->hs_logged_us = 0;
			continue;
		}
		p->hs_failed++;
		if (!c->log ||
		    (p->hs_logged_us && now - p->hs_logged_us < HS_REPORT_US))
			continue;
		if (p->hs_failed > p->hs_failed_logged + 1)
			snprintf(more, sizeof(more),
				 " (%" PRIu64 " failed handshakes since the "
				 "last report)",
				 p->hs_failed - p->hs_failed_logged - 1);
		snprintf(msg, sizeof(msg), "node %s (%s) %s%s", p->name,
			 p->endpoint, hs_why(hs), more);
		p->hs_failed_logged = p->hs_failed;
		p->hs_logged_us = now ? now : 1;
		c->log(c->log_arg, msg);
	}
}

static void send_ping(struct net_client *c, struct net_peer *p, uint64_t now)
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

uint64_t net_peer_heartbeat(struct net_client *c, struct net_peer *p,
			    uint64_t now)
{
	uint64_t next = UINT64_MAX, ivl_ms, lost_ms;

	if (p->up && now - p->last_rx_us > c->down_after_ms * 1000ull) {
		set_up(p, false);
		net_op_fail_list(c, &p->queue, -EHOSTDOWN);
		net_op_fail_list(c, &p->retry, -EHOSTDOWN);
		net_op_fail_list(c, &p->inflight, -EHOSTDOWN);
	}
	/* A peer that is down is pinged more often, and a ping to it is
	 * given up sooner: when it comes back, the first reply marks it up,
	 * and reads should not have to wait a whole heartbeat for that. */
	ivl_ms = p->up ? c->heartbeat_ms
		       : (c->heartbeat_ms < DOWN_PING_MS ? c->heartbeat_ms
							 : DOWN_PING_MS);
	lost_ms = p->up ? c->down_after_ms : ivl_ms;
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
	return next;
}

bool net_peer_rx(struct net_peer *p, const struct net_hdr *h, int hdr_rc,
		 uint64_t now)
{
	uint64_t rtt;

	if (hdr_rc == 0 && (h->flags & NET_F_REPLY)) {
		/* Something that speaks our protocol answered. */
		p->last_rx_us = now;
		if (!p->up)
			set_up(p, true);
	}
	if (hdr_rc != 0 || h->id == 0 || h->id != p->ping_id)
		return false;
	rtt = now - p->ping_sent_us;
	p->latency_us = p->latency_us ? (7 * p->latency_us + rtt) / 8 : rtt;
	atomic_store(&p->pub_latency_us, p->latency_us);
	p->ping_id = 0;
	return true;
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
