/* The storage node's refusal log: what it refused, counted per kind, and
 * logged at most once per peer and kind per interval, with the count of
 * those not logged since.
 *
 * Peers are named by slot: slots 0..nallowed-1 are the cluster's keys,
 * NET_REFUSALS_SLOT_UNKNOWN(nallowed) a connection without a user id (none
 * should exist) and NET_REFUSALS_SLOT_LOCAL(nallowed) the client in this
 * process. Connections refused at the handshake have no slot: they are
 * logged by key, the last UNKNOWN_KEYS keys each rate-limited alone.
 *
 * Thread safety: every call may run on any thread; the log callback runs
 * under the object's lock, so never twice at once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/server/server.h"

#define NET_REFUSALS_SLOT_UNKNOWN(nallowed) ((unsigned)(nallowed))
#define NET_REFUSALS_SLOT_LOCAL(nallowed) ((unsigned)(nallowed) + 1)

struct net_refusals;

/* @keys: the @nallowed cluster keys (Z85), @names their names (NULL, or
 * NULL entries: the key is the name). @log and @log_arg as in
 * net_server_config (NULL: blk_log_warn); @interval_ms > 0. 0 or -ENOMEM. */
int net_refusals_new(const char *const *keys, const char *const *names,
		     size_t nallowed, void (*log)(void *arg, const char *msg),
		     void *log_arg, uint64_t interval_ms,
		     struct net_refusals **out);

/* NULL is fine. */
void net_refusals_free(struct net_refusals *r);

/* Count a refusal of @kind of a request from the peer in @slot, and log
 * "node: refused <what> from <peer>: <why>" if its rate allows. */
void net_refusals_peer(struct net_refusals *r, unsigned slot,
		       enum net_refusal kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Count and log a connection refused to @key (32 bytes; NULL: no CURVE
 * key at all), as NET_REFUSED_KEY. */
void net_refusals_key(struct net_refusals *r, const uint8_t *key,
		      const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Count and log, as NET_REFUSED_KEY, a connection whose handshake failed
 * before its key was known: @curve false for a peer that does not speak
 * CURVE, true for one whose CURVE handshake failed (it expects another
 * key for this node). Each of the two is rate-limited alone. */
void net_refusals_handshake(struct net_refusals *r, bool curve, const char *fmt,
			    ...) __attribute__((format(printf, 3, 4)));

/* Refusals of @kind so far. */
uint64_t net_refusals_count(struct net_refusals *r, enum net_refusal kind);
