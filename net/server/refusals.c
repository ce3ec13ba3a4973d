/* The storage node's refusal log: counters and rate-limited messages per
 * peer and kind; see refusals.h. */
#include "net/server/refusals.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "blocks/base/log.h"
#include "net/wire/keys.h"

#define UNKNOWN_KEYS 16 /* unknown keys whose refusals are rate-limited */

static const char *const REFUSAL_NAMES[NET_REFUSED_KINDS] = {
    [NET_REFUSED_KEY] = "connection",
    [NET_REFUSED_MALFORMED] = "malformed request",
    [NET_REFUSED_TOO_BIG] = "oversized message",
    [NET_REFUSED_BUSY] = "request",
    [NET_REFUSED_PUT] = "put",
    [NET_REFUSED_OVERWRITE] = "put",
    [NET_REFUSED_DELETE] = "delete",
    [NET_REFUSED_FULL] = "put",
    [NET_REFUSED_HEAD] = "head",
};

struct ratelog {
	uint64_t last_ms; /* 0: never logged */
	uint64_t suppressed;
};

struct slot {
	char name[64];			       /* set at new, read-only */
	struct ratelog log[NET_REFUSED_KINDS]; /* under mu */
};

struct unknown_key {
	uint8_t key[32];
	struct ratelog log;
};

struct net_refusals {
	/* Set at new, read-only after. */
	void (*log)(void *arg, const char *msg);
	void *log_arg;
	uint64_t interval_ms;
	struct slot *slots; /* nallowed + 2 */

	/* mu guards every ratelog and the table of unknown keys; messages are
	 * formatted and emitted under it. */
	pthread_mutex_t mu;
	struct unknown_key unknown[UNKNOWN_KEYS]; /* under mu */
	unsigned nunknown;			  /* under mu */

	atomic_uint_fast64_t count[NET_REFUSED_KINDS]; /* lock-free */
};

int net_refusals_new(const char *const *keys, const char *const *names,
		     size_t nallowed, void (*log)(void *arg, const char *msg),
		     void *log_arg, uint64_t interval_ms,
		     struct net_refusals **out)
{
	struct net_refusals *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->slots = calloc(nallowed + 2, sizeof(*r->slots));
	if (!r->slots) {
		free(r);
		return -ENOMEM;
	}
	pthread_mutex_init(&r->mu, NULL);
	for (unsigned i = 0; i < NET_REFUSED_KINDS; i++)
		atomic_init(&r->count[i], 0);
	r->log = log;
	r->log_arg = log_arg;
	r->interval_ms = interval_ms;
	for (size_t i = 0; i < nallowed; i++) {
		const char *name = names ? names[i] : NULL;
		struct slot *sl = &r->slots[i];

		if (name)
			snprintf(sl->name, sizeof(sl->name), "node %s", name);
		else
			snprintf(sl->name, sizeof(sl->name), "key %.40s",
				 keys[i]);
	}
	snprintf(r->slots[NET_REFUSALS_SLOT_UNKNOWN(nallowed)].name,
		 sizeof(r->slots[0].name), "a peer without a user id");
	snprintf(r->slots[NET_REFUSALS_SLOT_LOCAL(nallowed)].name,
		 sizeof(r->slots[0].name), "the local client");
	*out = r;
	return 0;
}

void net_refusals_free(struct net_refusals *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->slots);
	free(r);
}

uint64_t net_refusals_count(struct net_refusals *r, enum net_refusal kind)
{
	return atomic_load(&r->count[kind]);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void refusal_logv(struct net_refusals *r, struct ratelog *rl,
			 enum net_refusal kind, const char *who,
			 const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* Log a refusal if @rl allows: "refused <what> from <who>: <why>".
 * Called with mu held. */
static void refusal_logv(struct net_refusals *r, struct ratelog *rl,
			 enum net_refusal kind, const char *who,
			 const char *fmt, va_list ap)
{
	uint64_t now = mono_ms();
	char why[256], msg[512];

	if (rl->last_ms && now - rl->last_ms < r->interval_ms) {
		rl->suppressed++;
		return;
	}
	vsnprintf(why, sizeof(why), fmt, ap);
	if (rl->suppressed)
		snprintf(msg, sizeof(msg),
			 "node: refused %s from %s: %s (and %" PRIu64
			 " more refusals of this kind from it since the last "
			 "report)",
			 REFUSAL_NAMES[kind], who, why, rl->suppressed);
	else
		snprintf(msg, sizeof(msg), "node: refused %s from %s: %s",
			 REFUSAL_NAMES[kind], who, why);
	rl->last_ms = now ? now : 1;
	rl->suppressed = 0;
	if (r->log)
		r->log(r->log_arg, msg);
	else
		blk_log_warn("%s", msg);
}

void net_refusals_peer(struct net_refusals *r, unsigned slot,
		       enum net_refusal kind, const char *fmt, ...)
{
	struct slot *sl = &r->slots[slot];
	va_list ap;

	atomic_fetch_add(&r->count[kind], 1);
	pthread_mutex_lock(&r->mu);
	va_start(ap, fmt);
	refusal_logv(r, &sl->log[kind], kind, sl->name, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&r->mu);
}

/* The rate-limit entry of @key, made if new: when the table is full, the
 * least recently logged key makes room. Called with mu held. */
static struct unknown_key *unknown_entry(struct net_refusals *r,
					 const uint8_t *key)
{
	struct unknown_key *u;
	unsigned i;

	for (i = 0; i < r->nunknown; i++)
		if (!memcmp(r->unknown[i].key, key, 32))
			return &r->unknown[i];
	i = r->nunknown < UNKNOWN_KEYS ? r->nunknown++ : 0;
	for (unsigned j = 0; r->nunknown == UNKNOWN_KEYS && j < UNKNOWN_KEYS;
	     j++)
		if (r->unknown[j].log.last_ms < r->unknown[i].log.last_ms)
			i = j;
	u = &r->unknown[i];
	memcpy(u->key, key, 32);
	u->log = (struct ratelog){0};
	return u;
}

/* Stand-ins for the key of a connection that has none: their rate-limit
 * entries among the unknown keys. */
static const uint8_t KEY_NONE[32];
static const uint8_t KEY_BROKEN[32] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void refuse_keyv(struct net_refusals *r, const uint8_t *key,
			const char *who, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* Count a refused connection and log it under @key's rate limit. */
static void refuse_keyv(struct net_refusals *r, const uint8_t *key,
			const char *who, const char *fmt, va_list ap)
{
	atomic_fetch_add(&r->count[NET_REFUSED_KEY], 1);
	pthread_mutex_lock(&r->mu);
	refusal_logv(r, &unknown_entry(r, key)->log, NET_REFUSED_KEY, who, fmt,
		     ap);
	pthread_mutex_unlock(&r->mu);
}

void net_refusals_key(struct net_refusals *r, const uint8_t *key,
		      const char *fmt, ...)
{
	char z85[NET_KEY_Z85_LEN + 1], who[96];
	va_list ap;

	if (!key)
		key = KEY_NONE;
	if (key == KEY_NONE)
		snprintf(who, sizeof(who), "a peer without a CURVE key");
	else if (zmq_z85_encode(z85, key, 32))
		snprintf(who, sizeof(who), "key %s", z85);
	else
		snprintf(who, sizeof(who), "an unreadable key");
	va_start(ap, fmt);
	refuse_keyv(r, key, who, fmt, ap);
	va_end(ap);
}

void net_refusals_handshake(struct net_refusals *r, bool curve, const char *fmt,
			    ...)
{
	va_list ap;

	va_start(ap, fmt);
	refuse_keyv(r, curve ? KEY_BROKEN : KEY_NONE,
		    curve ? "a peer whose CURVE handshake failed"
			  : "a peer without CURVE",
		    fmt, ap);
	va_end(ap);
}
