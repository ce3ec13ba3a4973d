/* libFuzzer target for net/wire/proto.c: any message decodes as a request
 * and as a reply without reading past its frames, and a message that
 * decodes is encoded back to the same frames (the wire form is canonical,
 * but for the fields a decoder ignores: see same_frames).
 *
 * Input: one byte, the number of frames (modulo NET_MAX_FRAMES + 2), then
 * for each frame a little-endian u16 length and that many bytes (cut
 * short by the end of the input). */

#include "net/wire/proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_IN (NET_MAX_FRAMES + 1)

/* Each frame in its own allocation, so that ASan sees a read past one. */
struct msg {
	struct net_frame f[MAX_IN];
	uint8_t *buf[MAX_IN];
	size_t n;
};

static void split(const uint8_t *data, size_t size, struct msg *m)
{
	size_t want, at = 1;

	m->n = 0;
	if (size == 0)
		return;
	want = data[0] % (MAX_IN + 1);
	while (m->n < want) {
		size_t len = 0;

		if (at + 2 <= size)
			len = (size_t)data[at] | (size_t)data[at + 1] << 8;
		at = at + 2 <= size ? at + 2 : size;
		if (len > size - at)
			len = size - at;
		m->buf[m->n] = malloc(len ? len : 1);
		if (!m->buf[m->n])
			abort();
		memcpy(m->buf[m->n], data + at, len);
		m->f[m->n] = (struct net_frame){m->buf[m->n], len};
		m->n++;
		at += len;
	}
}

/* @out (@n frames) equals @in, the header's arg field (bytes 24..31)
 * excepted when @skip_arg (an error reply's arg is not checked on
 * decoding and encoded as 0). */
static void same_frames(const struct net_frame *out, int n,
			const struct msg *in, bool skip_arg)
{
	if ((size_t)n != in->n)
		abort();
	for (int i = 0; i < n; i++) {
		if (out[i].len != in->f[i].len)
			abort();
		if (i == 0 && skip_arg) {
			if (memcmp(out[0].data, in->f[0].data, 24) != 0)
				abort();
			continue;
		}
		if (out[i].len &&
		    memcmp(out[i].data, in->f[i].data, out[i].len) != 0)
			abort();
	}
}

static void check_request(const struct msg *m)
{
	uint8_t scratch[NET_ENC_SCRATCH];
	struct net_frame out[NET_MAX_FRAMES];
	struct net_req q;
	int n;

	if (net_req_decode(m->f, m->n, &q) != 0)
		return;
	n = net_req_encode(&q, scratch, out);
	if (n < 0)
		abort(); /* what decodes must encode */
	same_frames(out, n, m, false);
}

static void check_reply(const struct msg *m)
{
	uint8_t scratch[NET_ENC_SCRATCH];
	struct net_frame out[NET_MAX_FRAMES];
	struct net_rep r;
	int n;

	if (net_rep_decode(m->f, m->n, &r) != 0)
		return;
	/* An error reply to an op the node did not know is taken whatever
	 * its other fields. A STATUS record is read leniently: the older,
	 * shorter length, and the bits of its flags word other than "full"
	 * ignored (reserved for later nodes). */
	if (r.hdr.op == 0 || r.hdr.op > NET_OP_MAX)
		return;
	if (r.hdr.status == 0 && r.hdr.op == NET_OP_STATUS)
		return;
	n = net_rep_encode(&r, scratch, out);
	if (n < 0)
		abort();
	same_frames(out, n, m, r.hdr.status < 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg m;

	split(data, size, &m);
	check_request(&m);
	check_reply(&m);
	for (size_t i = 0; i < m.n; i++)
		free(m.buf[i]);
	return 0;
}
