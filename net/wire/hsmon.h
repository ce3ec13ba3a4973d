/* A socket's handshake monitor: ZeroMQ's monitor events of one socket
 * (zmq_socket_monitor to an inproc PAIR), reduced to how its ZMTP/CURVE
 * handshakes end, so that a node can log who failed to get in and a
 * client which peer will not let it in.
 *
 * Thread safety: none. net_hsmon_new runs on the thread that owns the
 * monitored socket (before any other uses it); the PAIR is then read by
 * one thread at a time (net_hsmon_socket to poll it, net_hsmon_next);
 * net_hsmon_free runs once nobody reads it, before the monitored socket
 * closes. */
#pragma once

#include <stdint.h>

struct net_hsmon;

/* How a handshake ended. */
enum net_hs {
	NET_HS_OK,	 /* the handshake succeeded */
	NET_HS_AUTH,	 /* the server's ZAP refused the client's key;
			    value: its status code (e.g. 400) */
	NET_HS_NO_CURVE, /* the peer does not use CURVE (mechanism
			    mismatch) */
	NET_HS_CRYPTO,	 /* a CURVE message did not decrypt: the client
			    expects another server key */
	NET_HS_FAILED,	 /* another protocol error (value: ZeroMQ's
			    ZMQ_PROTOCOL_ERROR_*), or the connection closed
			    mid-handshake (value: errno) */
};

/* Monitor the handshakes of @sock, a socket of @ctx, from now on. 0,
 * -ENOMEM, or another -errno from ZeroMQ. */
int net_hsmon_new(void *ctx, void *sock, struct net_hsmon **out);

/* Stop monitoring and close the PAIR. NULL is fine. */
void net_hsmon_free(struct net_hsmon *m);

/* The PAIR socket, to poll for ZMQ_POLLIN. */
void *net_hsmon_socket(struct net_hsmon *m);

/* The next handshake outcome, without waiting: 1 with *@hs and *@value
 * set, 0 when there is none now. Other events are skipped. */
int net_hsmon_next(struct net_hsmon *m, enum net_hs *hs, uint32_t *value);
