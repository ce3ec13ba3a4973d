/* The storage node's front end: the CURVE ROUTER socket the peers talk
 * to, the admission of their requests against per-peer and node-wide
 * bounds, and the inproc DEALER backend that hands admitted requests to
 * the workers and takes their replies back, all driven by one thread.
 *
 * A worker connects a DEALER to net_proxy_backend() and receives
 * [routing id][ticket][request frames]; it answers [routing id][ticket]
 * [reply frames] with the ticket unchanged. The ticket (NET_PROXY_TICKET_LEN
 * bytes) names the peer's slot (net_proxy_ticket_slot) and the bytes
 * admitted; the proxy settles it when the reply comes back.
 *
 * Admission (what the node holds for requests is at most max_bytes plus
 * one message per peer, whatever the peers send):
 *   - a message of more than NET_MAX_FRAMES frames or NET_MAX_MSG_BYTES
 *     bytes is answered -EMSGSIZE, each frame freed as it is taken off
 *     the socket (only the header frame is kept, for the reply's id);
 *   - a peer may have peer_max_reqs requests and peer_max_bytes bytes
 *     with the workers, all peers together max_bytes; beyond that the
 *     request is answered -EBUSY. A peer with nothing in flight always
 *     gets one request in, and so does any request when nothing at all is
 *     in flight.
 * Both refusals are counted and logged through the net_refusals.
 *
 * Lifecycle: net_proxy_new binds the backend; the workers connect to it;
 * net_proxy_start binds the ROUTER and starts the thread; net_proxy_stop
 * ends the thread (requests in flight may get no reply), after which the
 * workers may be stopped; net_proxy_free closes the sockets. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "net/server/refusals.h"

#define NET_PROXY_TICKET_LEN 12 /* u32 LE peer slot, u64 LE bytes admitted */

struct net_proxy;

struct net_proxy_config {
	void *ctx;		 /* the ZeroMQ context, kept by the caller */
	size_t nallowed;	 /* peers' slots: see refusals.h */
	unsigned peer_max_reqs;	 /* > 0 */
	uint64_t peer_max_bytes; /* > 0 */
	uint64_t max_bytes;	 /* > 0 */
	struct net_refusals *refusals; /* outlives the proxy */
};

/* Create the proxy and bind its backend. 0, -ENOMEM or -errno of ZeroMQ. */
int net_proxy_new(const struct net_proxy_config *cfg, struct net_proxy **out);

/* The backend's inproc endpoint, for the workers. */
const char *net_proxy_backend(const struct net_proxy *p);

/* Bind the ROUTER on @endpoint as a CURVE server with @secret_key (Z85),
 * and start the thread. 0, -EADDRINUSE, -EAGAIN (no thread), or another
 * -errno of ZeroMQ. */
int net_proxy_start(struct net_proxy *p, const char *endpoint,
		    const char *secret_key);

/* The endpoint bound, with the port resolved. */
const char *net_proxy_endpoint(const struct net_proxy *p);

/* Request bytes with the workers now, and the most there ever were. */
void net_proxy_held(struct net_proxy *p, uint64_t *held, uint64_t *peak);

/* The peer slot a ticket names. */
unsigned net_proxy_ticket_slot(const void *ticket);

/* End the thread; the sockets stay open. Idempotent; NULL is fine. */
void net_proxy_stop(struct net_proxy *p);

/* Stop, give the port back and close the sockets. NULL is fine. */
void net_proxy_free(struct net_proxy *p);
