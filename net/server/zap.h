/* The storage node's ZAP handler (ZeroMQ RFC 27): a thread answering the
 * CURVE handshakes of one ZeroMQ context, admitting only the cluster's
 * client keys and giving each connection the user id of its key's slot
 * (its index among the allowed keys, in decimal), so that every frame
 * from it names its peer. Refused connections are counted and logged
 * through a net_refusals.
 *
 * Lifecycle: net_zap_new binds inproc://zeromq.zap.01 on the context and
 * starts the thread; from then on every CURVE server socket of the
 * context is guarded by it, so create it before any of them binds.
 * net_zap_free stops the thread and closes its socket. */
#pragma once

#include <stddef.h>

#include "net/server/refusals.h"

struct net_zap;

/* @keys: the @nallowed cluster keys (Z85, valid); @refusals outlives the
 * handler. 0, -EADDRINUSE (the context has a ZAP handler already),
 * -ENOMEM, -EAGAIN (no thread), or another -errno from ZeroMQ. */
int net_zap_new(void *ctx, const char *const *keys, size_t nallowed,
		struct net_refusals *refusals, struct net_zap **out);

/* NULL is fine. */
void net_zap_free(struct net_zap *z);
