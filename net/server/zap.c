/* The storage node's ZAP handler: one thread and its REP socket; see
 * zap.h. */
#include "net/server/zap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "net/wire/zmsg.h"

#define POLL_MS 100

struct net_zap {
	/* Set at new, read-only after; the socket is the thread's alone. */
	void *sock;
	uint8_t (*allowed)[32];
	size_t nallowed;
	struct net_refusals *refusals;
	pthread_t thread;
	bool started;
	atomic_bool stop; /* lock-free: set by net_zap_free */
};

/* The slot of @key among the allowed keys, or -1. */
static int key_slot(const struct net_zap *z, const void *key)
{
	for (size_t i = 0; i < z->nallowed; i++)
		if (!memcmp(z->allowed[i], key, 32))
			return (int)i;
	return -1;
}

/* The slot a ZAP request of @n frames admits, or -1 (logged). */
static int admit(struct net_zap *z, zmq_msg_t *m, size_t n)
{
	/* version, request id, domain, address, identity, mechanism,
	 * credentials (CURVE: the client's 32-byte public key) */
	bool curve = n == 7 && zmq_msg_size(&m[0]) == 3 &&
		     !memcmp(zmq_msg_data(&m[0]), "1.0", 3) &&
		     zmq_msg_size(&m[5]) == 5 &&
		     !memcmp(zmq_msg_data(&m[5]), "CURVE", 5) &&
		     zmq_msg_size(&m[6]) == 32;
	int slot = curve ? key_slot(z, zmq_msg_data(&m[6])) : -1;
	char addr[64] = "?";
	size_t al = n >= 4 ? zmq_msg_size(&m[3]) : 0;

	if (slot >= 0)
		return slot;
	if (al > 0 && al < sizeof(addr)) {
		memcpy(addr, zmq_msg_data(&m[3]), al);
		addr[al] = 0;
	}
	net_refusals_key(z->refusals, curve ? zmq_msg_data(&m[6]) : NULL,
			 "the key is not in the cluster (from %s)", addr);
	return -1;
}

/* Answer the request @m (@n frames) for @slot (-1: refused). */
static void answer(struct net_zap *z, zmq_msg_t *m, size_t n, int slot)
{
	char uid[16] = "";

	if (slot >= 0)
		snprintf(uid, sizeof(uid), "%d", slot);
	zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE);
	if (n >= 2)
		zmq_send(z->sock, zmq_msg_data(&m[1]), zmq_msg_size(&m[1]),
			 ZMQ_SNDMORE);
	else
		zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
	zmq_send(z->sock, slot >= 0 ? "200" : "400", 3, ZMQ_SNDMORE);
	zmq_send(z->sock, slot >= 0 ? "OK" : "key not in the cluster",
		 slot >= 0 ? 2 : 22, ZMQ_SNDMORE);
	zmq_send(z->sock, uid, strlen(uid), ZMQ_SNDMORE); /* user id */
	zmq_send(z->sock, "", 0, 0);			  /* metadata */
}

static void *zap_main(void *arg)
{
	struct net_zap *z = arg;

	while (!atomic_load(&z->stop)) {
		zmq_pollitem_t pi = {.socket = z->sock, .events = ZMQ_POLLIN};
		zmq_msg_t m[8];
		size_t n;

		if (zmq_poll(&pi, 1, POLL_MS) <= 0 ||
		    !(pi.revents & ZMQ_POLLIN))
			continue;
		net_zmsg_recv(z->sock, m, 8, 0, &n, NULL);
		answer(z, m, n, admit(z, m, n));
		net_zmsg_close(m, n);
	}
	return NULL;
}

int net_zap_new(void *ctx, const char *const *keys, size_t nallowed,
		struct net_refusals *refusals, struct net_zap **out)
{
	struct net_zap *z = calloc(1, sizeof(*z));
	int zero = 0, rc;

	*out = NULL;
	if (!z)
		return -ENOMEM;
	atomic_init(&z->stop, false);
	z->refusals = refusals;
	z->nallowed = nallowed;
	z->allowed = calloc(nallowed ? nallowed : 1, 32);
	if (!z->allowed) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < nallowed; i++)
		zmq_z85_decode(z->allowed[i], keys[i]);
	z->sock = zmq_socket(ctx, ZMQ_REP);
	if (!z->sock) {
		rc = errno ? -errno : -EIO;
		goto fail;
	}
	zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_bind(z->sock, "inproc://zeromq.zap.01") < 0) {
		rc = errno ? -errno : -EIO;
		goto fail;
	}
	if (pthread_create(&z->thread, NULL, zap_main, z) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	z->started = true;
	*out = z;
	return 0;

fail:
	net_zap_free(z);
	return rc;
}

void net_zap_free(struct net_zap *z)
{
	if (!z)
		return;
	atomic_store(&z->stop, true);
	if (z->started)
		pthread_join(z->thread, NULL);
	if (z->sock)
		zmq_close(z->sock);
	free(z->allowed);
	free(z);
}
