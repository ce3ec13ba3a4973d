/* ec-bench: encode and decode throughput of the ec codec (and, with
 * --jerasure, of the Jerasure methods it was chosen from).
 *
 *   ec-bench [--jerasure] [K M [BLOCK_BYTES]]     (default 4 2 1048576)
 *
 * MB/s are block bytes (1 MB = 10^6 B) per second, best of 5 runs of about
 * 0.2 s each, one thread, buffers reused (so a 1 MiB block stays in cache). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cauchy.h>
#include <jerasure.h>
#include <reed_sol.h>

#include "ec/codec.h"

#define RUNS 5
#define RUN_SECONDS 0.2

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *xalloc(size_t n)
{
	void *p = aligned_alloc(64, (n + 63) / 64 * 64);

	if (!p) {
		fprintf(stderr, "ec-bench: out of memory\n");
		exit(1);
	}
	return p;
}

static void fill(uint8_t *p, size_t n, uint64_t s)
{
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		p[i] = (uint8_t)s;
	}
}

/* Best rate in MB/s of @fn over @bytes per call. */
typedef void bench_fn(void *arg);

static double best_rate(bench_fn *fn, void *arg, size_t bytes)
{
	double best = 0;

	for (int r = 0; r < RUNS; r++) {
		double t0 = now(), t;
		unsigned long n = 0;

		do {
			fn(arg);
			n++;
			t = now() - t0;
		} while (t < RUN_SECONDS);
		if ((double)bytes * (double)n / t / 1e6 > best)
			best = (double)bytes * (double)n / t / 1e6;
	}
	return best;
}

/* ---- the codec ---- */

struct codec_arg {
	struct ec_codec *c;
	uint8_t *block, *out;
	size_t len;
	uint8_t **frags; /* all k + m */
	uint8_t **have;	 /* with some set to NULL */
};

static void codec_encode(void *p)
{
	struct codec_arg *a = p;

	if (ec_encode(a->c, a->block, a->len, a->frags) != 0)
		abort();
}

static void codec_decode(void *p)
{
	struct codec_arg *a = p;

	if (ec_decode(a->c, a->have, a->len, a->out) != 0)
		abort();
}

static int bench_codec(unsigned k, unsigned m, size_t len)
{
	struct codec_arg a = {.len = len};
	unsigned n = k + m, lost = m < k ? m : k;
	size_t fs;
	int r;

	r = ec_codec_new(k, m, &a.c);
	if (r < 0) {
		fprintf(stderr, "ec-bench: ec_codec_new(%u, %u): %s\n", k, m,
			strerror(-r));
		return 1;
	}
	fs = ec_frag_size(a.c, len);
	a.block = xalloc(len);
	a.out = xalloc(len);
	a.frags = calloc(n, sizeof(*a.frags));
	a.have = calloc(n, sizeof(*a.have));
	if (!a.frags || !a.have)
		return 1;
	fill(a.block, len, 42);
	for (unsigned i = 0; i < n; i++)
		a.frags[i] = a.have[i] = xalloc(fs);

	printf("codec %u+%u, block %zu B, fragment %zu B (padding %zu B)\n", k,
	       m, len, fs, fs * k - len);
	printf("  encode                      %8.0f MB/s\n",
	       best_rate(codec_encode, &a, len));
	printf("  decode, all data present    %8.0f MB/s\n",
	       best_rate(codec_decode, &a, len));
	for (unsigned i = 0; i < lost; i++)
		a.have[i] = NULL;
	printf("  decode, %u data fragment%s lost %6.0f MB/s\n", lost,
	       lost == 1 ? " " : "s", best_rate(codec_decode, &a, len));
	if (memcmp(a.block, a.out, len) != 0) {
		fprintf(stderr, "ec-bench: decoded block differs\n");
		return 1;
	}
	for (unsigned i = 0; i < n; i++)
		free(a.frags[i]);
	free(a.frags);
	free(a.have);
	free(a.block);
	free(a.out);
	ec_codec_free(a.c);
	return 0;
}

/* ---- Jerasure's own calls ---- */

enum method { VANDERMONDE, R6, CAUCHY };

struct jer_arg {
	enum method method;
	int k, m, size, packet;
	int *matrix, *bitmatrix, **schedule;
	char **data, **coding;
	int erasures[EC_MAX_FRAGS + 1];
};

static void jer_encode(void *p)
{
	struct jer_arg *a = p;

	switch (a->method) {
	case VANDERMONDE:
		jerasure_matrix_encode(a->k, a->m, 8, a->matrix, a->data,
				       a->coding, a->size);
		break;
	case R6:
		reed_sol_r6_encode(a->k, 8, a->data, a->coding, a->size);
		break;
	case CAUCHY:
		jerasure_schedule_encode(a->k, a->m, 8, a->schedule, a->data,
					 a->coding, a->size, a->packet);
		break;
	}
}

static void jer_decode(void *p)
{
	struct jer_arg *a = p;

	if (a->method == CAUCHY)
		jerasure_schedule_decode_lazy(a->k, a->m, 8, a->bitmatrix,
					      a->erasures, a->data, a->coding,
					      a->size, a->packet, 1);
	else
		jerasure_matrix_decode(a->k, a->m, 8, a->matrix, 1, a->erasures,
				       a->data, a->coding, a->size);
}

static void jer_run(struct jer_arg *a, const char *name, size_t len)
{
	double enc = best_rate(jer_encode, a, len);
	double dec = best_rate(jer_decode, a, len);

	printf("  %-34s %8.0f %8.0f\n", name, enc, dec);
}

static int bench_jerasure(unsigned k, unsigned m, size_t len)
{
	static const int packets[] = {1024, 2048, 4096, 8192, 16384, 32768};
	struct jer_arg a = {.k = (int)k, .m = (int)m};
	unsigned lost = m < k ? m : k;
	int *cauchy;

	if (k < 2 || m < 1) {
		fprintf(stderr, "ec-bench: --jerasure needs K >= 2, M >= 1\n");
		return 1;
	}
	/* Fragments a multiple of 8 * 32 KiB, so that every packet size
	 * divides them (Jerasure's schedule encoder needs it). */
	a.size = (int)((len / k + 262143) / 262144 * 262144);
	len = (size_t)a.size * k;
	a.data = calloc(k, sizeof(char *));
	a.coding = calloc(m, sizeof(char *));
	if (!a.data || !a.coding)
		return 1;
	for (unsigned i = 0; i < k; i++) {
		a.data[i] = xalloc((size_t)a.size);
		fill((uint8_t *)a.data[i], (size_t)a.size, i + 1);
	}
	for (unsigned i = 0; i < m; i++)
		a.coding[i] = xalloc((size_t)a.size);
	for (unsigned i = 0; i < lost; i++)
		a.erasures[i] = (int)i;
	a.erasures[lost] = -1;

	printf("Jerasure %u+%u, %zu B blocks (decode: %u data fragments "
	       "lost)\n  %-34s %8s %8s\n",
	       k, m, len, lost, "method (MB/s)", "encode", "decode");
	a.method = VANDERMONDE;
	a.matrix = reed_sol_vandermonde_coding_matrix(a.k, a.m, 8);
	jer_run(&a, "Vandermonde RS w=8", len);
	free(a.matrix);
	if (m == 2) {
		a.method = R6;
		a.matrix = reed_sol_r6_coding_matrix(a.k, 8);
		jer_run(&a, "reed_sol_r6 w=8", len);
		free(a.matrix);
	}
	a.method = CAUCHY;
	cauchy = cauchy_good_general_coding_matrix(a.k, a.m, 8);
	a.bitmatrix = jerasure_matrix_to_bitmatrix(a.k, a.m, 8, cauchy);
	a.schedule =
	    jerasure_smart_bitmatrix_to_schedule(a.k, a.m, 8, a.bitmatrix);
	for (size_t i = 0; i < sizeof(packets) / sizeof(packets[0]); i++) {
		char name[64];

		a.packet = packets[i];
		snprintf(name, sizeof(name),
			 "Cauchy smart schedule w=8, %2d KiB", a.packet / 1024);
		jer_run(&a, name, len);
	}
	printf("  (this codec, ec/codec.c: %s)\n",
	       m <= 2 ? "Cauchy smart schedule, 16 KiB packets"
		      : "Vandermonde RS");
	jerasure_free_schedule(a.schedule);
	free(a.bitmatrix);
	free(cauchy);
	for (unsigned i = 0; i < k; i++)
		free(a.data[i]);
	for (unsigned i = 0; i < m; i++)
		free(a.coding[i]);
	free(a.data);
	free(a.coding);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long k = 4, m = 2, len = 1u << 20;
	int jer = 0, i = 1;

	if (argc > 1 && strcmp(argv[1], "--jerasure") == 0) {
		jer = 1;
		i++;
	}
	if (argc > i && strcmp(argv[i], "--help") == 0) {
		printf("usage: ec-bench [--jerasure] [K M [BLOCK_BYTES]]\n");
		return 0;
	}
	if (argc > i + 1) {
		k = strtoul(argv[i], NULL, 10);
		m = strtoul(argv[i + 1], NULL, 10);
	}
	if (argc > i + 2)
		len = strtoul(argv[i + 2], NULL, 10);
	if (k < 1 || k > EC_MAX_K || m > EC_MAX_M || len < 1 ||
	    len > EC_MAX_BLOCK) {
		fprintf(stderr,
			"ec-bench: need 1 <= K <= %d, M <= %d, "
			"1 <= BLOCK_BYTES <= %u\n",
			EC_MAX_K, EC_MAX_M, EC_MAX_BLOCK);
		return 2;
	}
	if (jer)
		return bench_jerasure((unsigned)k, (unsigned)m, len);
	return bench_codec((unsigned)k, (unsigned)m, len);
}
