/* libFuzzer target for the retention policy (net/cluster/retention.c):
 * parse the input as a policy; what parses formats to a canonical text
 * that parses to the same rules and formats to itself; and the keep
 * function on heads made of the input's bytes never crashes and always
 * keeps the head of the highest seq (rule 1). */

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/cluster/retention.h"

#define REQUIRE(c)                                                             \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[CL_RETENTION_MAX_LEN + 8], canon[512], again[512], err[256];
	struct cl_retention p, q;
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;

	memcpy(text, data, n);
	text[n] = 0;
	if (cl_retention_parse(text, &p, err, sizeof(err)))
		return 0;
	cl_retention_format(&p, canon, sizeof(canon));
	REQUIRE(cl_retention_parse(canon, &q, err, sizeof(err)) == 0);
	REQUIRE(q.n == p.n &&
		!memcmp(q.rules, p.rules, p.n * sizeof(p.rules[0])));
	cl_retention_format(&q, again, sizeof(again));
	REQUIRE(!strcmp(canon, again));

	/* Heads: 16 bytes each (seq, time) from the input, seqs made
	 * distinct. */
	struct cl_retention_head h[64];
	bool keep[64];
	size_t m = 0, top = 0;
	for (size_t i = 0; i + 16 <= size && m < 64; i += 16, m++) {
		memcpy(&h[m].time_ns, data + i + 8, 8);
		h[m].seq = ((uint64_t)data[i] << 8 | m) + 1;
		if (h[m].seq > h[top].seq)
			top = m;
	}
	uint64_t now = 1796644800ull * 1000000000ull;
	if (size >= 8)
		memcpy(&now, data, 8);
	REQUIRE(cl_retention_keep(&p, h, m, now, keep) == 0);
	REQUIRE(!m || keep[top]);
	return 0;
}
