/* A socket's handshake monitor: the PAIR that reads its monitor events;
 * see hsmon.h. */
#include "net/wire/hsmon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define HS_EVENTS                                                              \
	(ZMQ_EVENT_HANDSHAKE_SUCCEEDED |                                       \
	 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |                                \
	 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                                 \
	 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

static atomic_uint_fast64_t hsmon_seq; /* lock-free */

struct net_hsmon {
	/* Set at new, read-only after. */
	void *sock; /* the monitored socket */
	void *pair; /* the reader's (see hsmon.h) */
};

int net_hsmon_new(void *ctx, void *sock, struct net_hsmon **out)
{
	struct net_hsmon *m = calloc(1, sizeof(*m));
	char ep[64];
	int zero = 0, rc;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->sock = sock;
	/* A name never used before in this process: an endpoint of a
	 * monitor stopped a moment ago may not be released yet. */
	snprintf(ep, sizeof(ep), "inproc://blockfs-hsmon-%" PRIuFAST64,
		 atomic_fetch_add(&hsmon_seq, 1));
	if (zmq_socket_monitor(sock, ep, HS_EVENTS) < 0) {
		rc = errno ? -errno : -EIO;
		free(m);
		return rc;
	}
	m->pair = zmq_socket(ctx, ZMQ_PAIR);
	if (!m->pair || zmq_connect(m->pair, ep) < 0) {
		rc = errno ? -errno : -EIO;
		net_hsmon_free(m);
		return rc;
	}
	zmq_setsockopt(m->pair, ZMQ_LINGER, &zero, sizeof(zero));
	*out = m;
	return 0;
}

void net_hsmon_free(struct net_hsmon *m)
{
	if (!m)
		return;
	zmq_socket_monitor(m->sock, NULL, 0);
	if (m->pair)
		zmq_close(m->pair);
	free(m);
}

void *net_hsmon_socket(struct net_hsmon *m)
{
	return m->pair;
}

/* One monitor event: a frame of 6 bytes (event: u16, value: u32, host
 * order), then one with the endpoint. -EAGAIN when none is waiting. */
static int read_event(void *pair, uint16_t *event, uint32_t *value)
{
	uint8_t head[6];
	int more = 0;
	size_t len = sizeof(more);
	int n = zmq_recv(pair, head, sizeof(head), ZMQ_DONTWAIT);

	if (n < 0)
		return -EAGAIN;
	/* Drop the rest of the message (the endpoint). */
	while (zmq_getsockopt(pair, ZMQ_RCVMORE, &more, &len) == 0 && more) {
		char skip[8];
		if (zmq_recv(pair, skip, sizeof(skip), 0) < 0)
			break;
	}
	if (n != (int)sizeof(head))
		return 0; /* not an event we know: skipped */
	memcpy(event, head, 2);
	memcpy(value, head + 2, 4);
	return 1;
}

int net_hsmon_next(struct net_hsmon *m, enum net_hs *hs, uint32_t *value)
{
	uint16_t ev = 0;
	int rc;

	while ((rc = read_event(m->pair, &ev, value)) >= 0) {
		if (rc == 0)
			continue;
		switch (ev) {
		case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
			*hs = NET_HS_OK;
			return 1;
		case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
			*hs = NET_HS_AUTH;
			return 1;
		case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
			*hs =
			    *value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
				? NET_HS_NO_CURVE
			    : *value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
				? NET_HS_CRYPTO
				: NET_HS_FAILED;
			return 1;
		case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
			*hs = NET_HS_FAILED;
			return 1;
		default:
			break;
		}
	}
	return 0;
}
