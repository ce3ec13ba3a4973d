/* net-bench: what moving bytes between two ZeroMQ peers on loopback costs
 * in CPU, with and without CURVE, next to the raw speed of the primitives
 * the data path pays per byte (crypto_box as CURVE uses it, BLAKE2b for
 * CIDs, memcpy).
 *
 *   net-bench [--size-mb N] [--msg-kib N] [--window N]
 *
 * The transfer test runs both ends in this process, each with its own
 * context and one I/O thread, as a mount and a node would have: a DEALER
 * sends messages of --msg-kib (zero-copy from one buffer) to a ROUTER on
 * 127.0.0.1, which acknowledges each with a small reply; at most --window
 * are unacknowledged. CPU seconds are this process's user + system time
 * (getrusage), so they cover both ends and both I/O threads, and are given
 * per GiB moved. Figures are for telling how far a design is from the
 * floor on a given machine; they are not assertions.
 *
 * Exit status: 0 measured, 1 a step failed, 2 usage. */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "blocks/base/bench.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)

static size_t size_mb = 1024;
static size_t msg_kib = 256;
static unsigned window = 32;

static void report(const char *what, size_t bytes, struct bench_clock a,
		   struct bench_clock b)
{
	double mbps, cpu;

	bench_rates(bytes, a, b, &mbps, &cpu);
	printf("%-28s %8.1f MB/s %7.2f CPU-s/GiB\n", what, mbps, cpu);
}

struct server_arg {
	void *sock;
	size_t nmsg;
	int rc;
};

static void *server_main(void *p)
{
	struct server_arg *a = p;
	size_t got = 0;

	a->rc = 0;
	while (got < a->nmsg) {
		zmq_msg_t id, body;
		int more;
		size_t ml = sizeof(more);

		zmq_msg_init(&id);
		zmq_msg_init(&body);
		if (zmq_msg_recv(&id, a->sock, 0) < 0 ||
		    zmq_getsockopt(a->sock, ZMQ_RCVMORE, &more, &ml) != 0 ||
		    !more || zmq_msg_recv(&body, a->sock, 0) < 0) {
			fprintf(stderr, "net-bench: server recv: %s\n",
				zmq_strerror(errno));
			a->rc = 1;
			zmq_msg_close(&id);
			zmq_msg_close(&body);
			return NULL;
		}
		zmq_msg_close(&body);
		if (zmq_msg_send(&id, a->sock, ZMQ_SNDMORE) < 0 ||
		    zmq_send(a->sock, "k", 1, 0) < 0) {
			fprintf(stderr, "net-bench: server send: %s\n",
				zmq_strerror(errno));
			a->rc = 1;
			zmq_msg_close(&id);
			return NULL;
		}
		got++;
	}
	return NULL;
}

static void no_free(void *data, void *hint)
{
	(void)data;
	(void)hint;
}

static int set_timeouts(void *s)
{
	int ms = 10000, zero = 0;

	return zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof(ms)) ||
	       zmq_setsockopt(s, ZMQ_SNDTIMEO, &ms, sizeof(ms)) ||
	       zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
}

static int transfer(bool curve, const uint8_t *buf)
{
	char spub[41], ssec[41], cpub[41], csec[41], ep[64];
	void *sctx = zmq_ctx_new(), *cctx = zmq_ctx_new();
	void *router = NULL, *dealer = NULL;
	size_t len = msg_kib * KiB, nmsg = size_mb * MiB / len, sent = 0,
	       acked = 0;
	struct server_arg sa;
	struct bench_clock a, b;
	pthread_t th;
	int one = 1, rc = 1;
	size_t eplen = sizeof(ep);

	if (!sctx || !cctx)
		goto out;
	router = zmq_socket(sctx, ZMQ_ROUTER);
	dealer = zmq_socket(cctx, ZMQ_DEALER);
	if (!router || !dealer || set_timeouts(router) || set_timeouts(dealer))
		goto out;
	if (curve) {
		if (zmq_curve_keypair(spub, ssec) ||
		    zmq_curve_keypair(cpub, csec))
			goto out;
		if (zmq_setsockopt(router, ZMQ_CURVE_SERVER, &one,
				   sizeof(one)) ||
		    zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, ssec, 40) ||
		    zmq_setsockopt(dealer, ZMQ_CURVE_SERVERKEY, spub, 40) ||
		    zmq_setsockopt(dealer, ZMQ_CURVE_PUBLICKEY, cpub, 40) ||
		    zmq_setsockopt(dealer, ZMQ_CURVE_SECRETKEY, csec, 40))
			goto out;
	}
	if (zmq_bind(router, "tcp://127.0.0.1:*") ||
	    zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &eplen) ||
	    zmq_connect(dealer, ep))
		goto out;

	sa.sock = router;
	sa.nmsg = nmsg;
	if (pthread_create(&th, NULL, server_main, &sa))
		goto out;
	a = bench_clock_now();
	while (acked < nmsg) {
		char ack[8];

		if (sent < nmsg && sent - acked < window) {
			zmq_msg_t m;

			zmq_msg_init_data(&m, (void *)buf, len, no_free, NULL);
			if (zmq_msg_send(&m, dealer, 0) < 0) {
				zmq_msg_close(&m);
				break;
			}
			sent++;
			continue;
		}
		if (zmq_recv(dealer, ack, sizeof(ack), 0) < 0)
			break;
		acked++;
	}
	b = bench_clock_now();
	pthread_join(th, NULL);
	if (acked < nmsg || sa.rc) {
		fprintf(stderr,
			"net-bench: transfer stopped after %zu of %zu: %s\n",
			acked, nmsg, zmq_strerror(errno));
		goto out;
	}
	report(curve ? "zmq transfer, CURVE" : "zmq transfer, plain",
	       nmsg * len, a, b);
	rc = 0;
out:
	if (dealer)
		zmq_close(dealer);
	if (router)
		zmq_close(router);
	if (cctx)
		zmq_ctx_term(cctx);
	if (sctx)
		zmq_ctx_term(sctx);
	return rc;
}

/* The primitives, one thread, on a buffer of msg_kib (so cache-resident
 * like a block in flight). */
static void primitives(uint8_t *buf, uint8_t *out)
{
	size_t len = msg_kib * KiB, n = size_mb * MiB / len, i;
	uint8_t key[crypto_box_BEFORENMBYTES], nonce[crypto_box_NONCEBYTES];
	uint8_t h[32];
	struct bench_clock a, b;

	randombytes_buf(key, sizeof(key));
	randombytes_buf(nonce, sizeof(nonce));
	/* crypto_box_afternm wants ZEROBYTES of zeros in front, as libzmq's
	 * CURVE lays out every message. */
	memset(buf, 0, crypto_box_ZEROBYTES);
	a = bench_clock_now();
	for (i = 0; i < n; i++)
		crypto_box_afternm(out, buf, len, nonce, key);
	b = bench_clock_now();
	report("crypto_box_afternm", n * len, a, b);
	a = bench_clock_now();
	for (i = 0; i < n; i++)
		crypto_generichash(h, sizeof(h), buf, len, NULL, 0);
	b = bench_clock_now();
	report("BLAKE2b-256", n * len, a, b);
	a = bench_clock_now();
	for (i = 0; i < n; i++) {
		memcpy(out, buf, len);
		__asm__ volatile("" : : "r"(out) : "memory");
	}
	b = bench_clock_now();
	report("memcpy", n * len, a, b);
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: net-bench [--size-mb N] [--msg-kib N] [--window N]\n"
	    "  --size-mb   bytes moved per test, MiB (default 1024)\n"
	    "  --msg-kib   message size, KiB (default 256, the average chunk)\n"
	    "  --window    messages in flight (default 32)\n"
	    "Prints MB/s and CPU seconds per GiB of: a DEALER->ROUTER "
	    "transfer\n"
	    "on 127.0.0.1 with CURVE and without (both ends in this process),\n"
	    "crypto_box_afternm, BLAKE2b-256 and memcpy.\n"
	    "exit status: 0 measured, 1 a step failed, 2 usage.\n");
}

int main(int argc, char **argv)
{
	uint8_t *buf, *out;
	int i, rc = 0;

	for (i = 1; i < argc; i += 2) {
		unsigned long v;

		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc ||
		    !bench_parse_count(argv[i + 1], 1000000, &v)) {
			usage(stderr);
			return 2;
		}
		if (!strcmp(argv[i], "--size-mb"))
			size_mb = v;
		else if (!strcmp(argv[i], "--msg-kib"))
			msg_kib = v;
		else if (!strcmp(argv[i], "--window"))
			window = (unsigned)v;
		else {
			usage(stderr);
			return 2;
		}
	}
	if (msg_kib > size_mb * 1024) {
		fprintf(stderr,
			"net-bench: --msg-kib is larger than --size-mb\n");
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "net-bench: sodium_init failed\n");
		return 1;
	}
	buf = aligned_alloc(64, msg_kib * KiB);
	out = aligned_alloc(64, msg_kib * KiB);
	if (!buf || !out) {
		fprintf(stderr, "net-bench: out of memory\n");
		return 1;
	}
	randombytes_buf(buf, msg_kib * KiB);
	rc |= transfer(false, buf);
	rc |= transfer(true, buf);
	primitives(buf, out);
	free(buf);
	free(out);
	return rc;
}
