/* Tests of the wire protocol's codecs (net/wire/proto.c): a round trip of every
 * op, every malformed case we can name, and a loop of random and mutated
 * frames that must decode to an error or to something self-consistent,
 * never crash (run it under ASan). */

#include "net/wire/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static void fill(void *p, size_t n)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rnd();
}

static struct net_fref some_ref(unsigned i)
{
	struct net_fref r = {0};

	r.cid.codec = BLK_CODEC_RAW;
	r.cid.hash = i % 2 ? BLK_HASH_SHA2_256 : BLK_HASH_BLAKE2B_256;
	fill(r.cid.digest, sizeof(r.cid.digest));
	r.index = (uint8_t)(i % EC_MAX_FRAGS);
	return r;
}

static bool ref_eq(const struct net_fref *a, const struct net_fref *b)
{
	return blk_cid_equal(&a->cid, &b->cid) && a->index == b->index;
}

/* A sealed fragment of @len random bytes in @data, header in @raw. */
static void make_frag(uint8_t raw[EC_FRAG_HDR_LEN], uint8_t *data, size_t len)
{
	struct ec_frag_hdr h = {.k = 1,
				.m = 2,
				.index = 1,
				.block_len = (uint32_t)len,
				.frag_len = (uint32_t)len};

	fill(data, len);
	blk_cid_compute(&h.cid, BLK_CODEC_RAW, data, len);
	ec_frag_hdr_seal(&h, data, raw);
}

/* Copy frames into one contiguous owned set, as a socket would deliver. */
struct msg {
	size_t n;
	struct net_frame f[8];
	uint8_t *buf[8];
};

static void msg_from(struct msg *m, const struct net_frame *f, int n)
{
	m->n = (size_t)n;
	for (int i = 0; i < n; i++) {
		m->buf[i] = malloc(f[i].len ? f[i].len : 1);
		if (f[i].len)
			memcpy(m->buf[i], f[i].data, f[i].len);
		m->f[i] = (struct net_frame){m->buf[i], f[i].len};
	}
}

static void msg_free(struct msg *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->buf[i]);
	m->n = 0;
}

static void test_header(void)
{
	struct net_hdr h = {.op = NET_OP_LIST,
			    .flags = NET_F_REPLY | NET_F_MORE,
			    .id = 0x0102030405060708ull,
			    .status = -ENOSPC,
			    .count = 77,
			    .arg = 0xfffffffffull},
		       g;
	uint8_t b[NET_HDR_LEN + 1];

	net_hdr_encode(&h, b);
	CHECK(memcmp(b, "BFNP", 4) == 0 && b[4] == NET_PROTO_VERSION);
	CHECK(b[8] == 0x08 && b[15] == 0x01); /* little-endian id */
	CHECK(net_hdr_decode(b, NET_HDR_LEN, &g) == 0);
	CHECK(g.op == h.op && g.flags == h.flags && g.id == h.id &&
	      g.status == h.status && g.count == h.count && g.arg == h.arg);
	CHECK(net_hdr_decode(b, NET_HDR_LEN - 1, &g) == -EPROTO);
	CHECK(net_hdr_decode(b, NET_HDR_LEN + 1, &g) == -EPROTO);
	CHECK(net_hdr_decode(b, 0, &g) == -EPROTO);
	b[0] = 'X';
	CHECK(net_hdr_decode(b, NET_HDR_LEN, &g) == -EPROTO);
	net_hdr_encode(&h, b);
	b[4] = 2; /* unknown version */
	CHECK(net_hdr_decode(b, NET_HDR_LEN, &g) == -EPROTO);
	net_hdr_encode(&h, b);
	b[6] = 0x80; /* unknown flag */
	CHECK(net_hdr_decode(b, NET_HDR_LEN, &g) == -EPROTO);
	CHECK(strcmp(net_op_name(NET_OP_PUT), "put") == 0);
	CHECK(strcmp(net_op_name(0), "?") == 0 &&
	      strcmp(net_op_name(200), "?") == 0);
}

/* Encode @r, copy the frames, decode them, and check the result. */
static int req_roundtrip(const struct net_req *r, struct net_req *out,
			 struct msg *m)
{
	uint8_t scratch[NET_ENC_SCRATCH];
	struct net_frame f[NET_MAX_FRAMES];
	int n = net_req_encode(r, scratch, f);

	if (n < 0)
		return n;
	msg_from(m, f, n);
	return net_req_decode(m->f, m->n, out);
}

static int rep_roundtrip(const struct net_rep *r, struct net_rep *out,
			 struct msg *m)
{
	uint8_t scratch[NET_ENC_SCRATCH];
	struct net_frame f[NET_MAX_FRAMES];
	int n = net_rep_encode(r, scratch, f);

	if (n < 0)
		return n;
	msg_from(m, f, n);
	return net_rep_decode(m->f, m->n, out);
}

static void test_requests(void)
{
	static uint8_t data[100000];
	uint8_t raw[EC_FRAG_HDR_LEN];
	struct net_req r, d;
	struct msg m;

	/* PING echoes arg; STATUS and SYNC are bare. */
	r = (struct net_req){.hdr = {.op = NET_OP_PING, .id = 1, .arg = 99}};
	CHECK(req_roundtrip(&r, &d, &m) == 0);
	CHECK(m.n == 1 && d.hdr.op == NET_OP_PING && d.hdr.id == 1 &&
	      d.hdr.arg == 99 && d.hdr.flags == 0);
	msg_free(&m);
	for (unsigned op = NET_OP_STATUS; op <= NET_OP_SYNC; op++) {
		r = (struct net_req){.hdr = {.op = (uint8_t)op, .id = op}};
		CHECK(req_roundtrip(&r, &d, &m) == 0);
		CHECK(m.n == 1 && d.hdr.op == op && d.hdr.id == op);
		msg_free(&m);
	}

	/* PUT */
	make_frag(raw, data, sizeof(data));
	r = (struct net_req){.hdr = {.op = NET_OP_PUT, .id = 7},
			     .frag_raw = raw,
			     .data = data,
			     .len = sizeof(data)};
	CHECK(req_roundtrip(&r, &d, &m) == 0);
	CHECK(m.n == 3 && d.len == sizeof(data) &&
	      memcmp(d.data, data, sizeof(data)) == 0 &&
	      memcmp(d.frag_raw, raw, EC_FRAG_HDR_LEN) == 0 &&
	      d.frag.frag_len == sizeof(data) && d.frag.index == 1);
	CHECK(ec_frag_verify(&d.frag, d.data, d.len) == 0);
	msg_free(&m);
	/* PUT whose bytes do not match the header's length */
	r.len = sizeof(data) - 1;
	CHECK(req_roundtrip(&r, &d, &m) == -EMSGSIZE);
	msg_free(&m);
	/* PUT with a header that is not one */
	{
		uint8_t bad[EC_FRAG_HDR_LEN];

		memcpy(bad, raw, sizeof(bad));
		bad[0] = 'X';
		r = (struct net_req){.hdr = {.op = NET_OP_PUT},
				     .frag_raw = bad,
				     .data = data,
				     .len = sizeof(data)};
		CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
		msg_free(&m);
	}

	/* GET */
	r = (struct net_req){.hdr = {.op = NET_OP_GET, .id = 8},
			     .ref = some_ref(5)};
	CHECK(req_roundtrip(&r, &d, &m) == 0);
	CHECK(m.n == 2 && ref_eq(&d.ref, &r.ref));
	msg_free(&m);
	r.ref.index = EC_MAX_FRAGS;
	CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
	msg_free(&m);

	/* HAVE and DELETE, with a big batch */
	for (unsigned op = NET_OP_HAVE; op <= NET_OP_DELETE; op++) {
		uint32_t n = 5000;
		uint8_t *refs = malloc((size_t)n * NET_FREF_LEN);
		struct net_fref want[3];

		for (uint32_t i = 0; i < n; i++) {
			struct net_fref x = some_ref(i);

			if (i < 3)
				want[i] = x;
			net_fref_encode(&x, refs + (size_t)i * NET_FREF_LEN);
		}
		r = (struct net_req){.hdr = {.op = (uint8_t)op, .count = n},
				     .refs = refs};
		CHECK(req_roundtrip(&r, &d, &m) == 0);
		CHECK(m.n == 2 && d.hdr.count == n);
		for (int i = 0; i < 3; i++) {
			struct net_fref x;

			CHECK(net_fref_decode(d.refs + i * NET_FREF_LEN, &x) ==
			      0);
			CHECK(ref_eq(&x, &want[i]));
		}
		msg_free(&m);
		r.hdr.count = 0;
		CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
		r.hdr.count = NET_MAX_REFS + 1;
		CHECK(req_roundtrip(&r, &d, &m) ==
		      -EINVAL); /* encoder refuses */
		/* a bad index in the middle of a batch */
		refs[1234 * NET_FREF_LEN + 36] = 200;
		r.hdr.count = n;
		CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
		msg_free(&m);
		free(refs);
	}

	/* LIST from the start and from a cursor */
	r = (struct net_req){.hdr = {.op = NET_OP_LIST, .count = 100}};
	CHECK(req_roundtrip(&r, &d, &m) == 0);
	CHECK(m.n == 2 && !d.has_cursor && d.hdr.count == 100);
	msg_free(&m);
	r.has_cursor = true;
	r.ref = some_ref(3);
	CHECK(req_roundtrip(&r, &d, &m) == 0);
	CHECK(d.has_cursor && ref_eq(&d.ref, &r.ref));
	msg_free(&m);
	r.hdr.count = NET_MAX_LIST + 1;
	CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);

	/* unknown ops cannot be encoded */
	r = (struct net_req){.hdr = {.op = 0}};
	CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
	r.hdr.op = 200;
	CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
}

/* HEAD_GET and HEAD_CAS: requests and replies both ways, and what the
 * encoders refuse. */
static void test_heads(void)
{
	uint8_t fsid[NET_FSID_LEN], head[NET_HEAD_MAX_BYTES + 1];
	struct net_req r, d;
	struct net_rep p, e;
	struct msg m;

	fill(fsid, sizeof(fsid));
	fill(head, sizeof(head));
	/* HEAD_GET: the fsid and the seq wanted (0: the latest) */
	for (uint64_t seq = 0; seq < 3; seq++) {
		uint64_t arg = seq == 2 ? UINT64_MAX : seq;

		r = (struct net_req){
		    .hdr = {.op = NET_OP_HEAD_GET, .id = 11, .arg = arg},
		    .fsid = fsid};
		CHECK(req_roundtrip(&r, &d, &m) == 0);
		CHECK(m.n == 2 && d.hdr.op == NET_OP_HEAD_GET &&
		      d.hdr.id == 11 && d.hdr.arg == arg && d.fsid &&
		      memcmp(d.fsid, fsid, NET_FSID_LEN) == 0 &&
		      m.f[1].len == NET_FSID_LEN);
		msg_free(&m);
	}
	r = (struct net_req){.hdr = {.op = NET_OP_HEAD_GET}}; /* no fsid */
	CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
	/* HEAD_CAS: the expected seq and the record, 1..max bytes */
	for (size_t len = 1; len <= NET_HEAD_MAX_BYTES; len += 341) {
		size_t l = len > 1000 ? NET_HEAD_MAX_BYTES : len;

		r = (struct net_req){
		    .hdr = {.op = NET_OP_HEAD_CAS, .id = 12, .arg = 41},
		    .data = head,
		    .len = l};
		CHECK(req_roundtrip(&r, &d, &m) == 0);
		CHECK(m.n == 2 && d.hdr.arg == 41 && d.len == l &&
		      memcmp(d.data, head, l) == 0 && !d.fsid);
		msg_free(&m);
	}
	r.len = NET_HEAD_MAX_BYTES + 1;
	CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
	r.len = 0;
	CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);
	r.len = 10;
	r.data = NULL;
	CHECK(req_roundtrip(&r, &d, &m) == -EINVAL);

	/* HEAD_GET reply: the record; arg is not carried */
	p = (struct net_rep){.hdr = {.op = NET_OP_HEAD_GET, .id = 13, .arg = 9},
			     .data = head,
			     .len = 700};
	CHECK(rep_roundtrip(&p, &e, &m) == 0);
	CHECK(m.n == 2 && e.hdr.id == 13 && e.hdr.arg == 0 && e.len == 700 &&
	      memcmp(e.data, head, 700) == 0);
	msg_free(&m);
	p.len = NET_HEAD_MAX_BYTES + 1;
	CHECK(rep_roundtrip(&p, &e, &m) == -EINVAL);
	/* HEAD_CAS reply: status only */
	p = (struct net_rep){.hdr = {.op = NET_OP_HEAD_CAS, .id = 14}};
	CHECK(rep_roundtrip(&p, &e, &m) == 0);
	CHECK(m.n == 1 && e.hdr.status == 0 && e.hdr.id == 14);
	msg_free(&m);
	/* refusals: the header alone, whatever else is set */
	static const int refusals[] = {-EBADMSG, -ENOENT, -ESTALE,
				       -EINVAL,	 -EACCES, -EOPNOTSUPP};
	for (size_t i = 0; i < sizeof(refusals) / sizeof(*refusals); i++) {
		p = (struct net_rep){
		    .hdr = {.op = NET_OP_HEAD_CAS, .status = refusals[i]},
		    .data = head,
		    .len = 5};
		CHECK(rep_roundtrip(&p, &e, &m) == 0);
		CHECK(m.n == 1 && e.hdr.status == refusals[i]);
		msg_free(&m);
	}
	p = (struct net_rep){.hdr = {.op = NET_OP_HEAD_GET, .status = -ENOENT}};
	CHECK(rep_roundtrip(&p, &e, &m) == 0);
	CHECK(m.n == 1 && e.hdr.status == -ENOENT && e.len == 0);
	msg_free(&m);
}

static void test_replies(void)
{
	static uint8_t data[4096];
	uint8_t raw[EC_FRAG_HDR_LEN], bitmap[1000],
	    items[10 * NET_LIST_ITEM_LEN];
	struct net_rep r, d;
	struct msg m;

	for (unsigned op = NET_OP_PING; op <= NET_OP_SYNC; op++) {
		/* error replies are one frame for every op */
		r = (struct net_rep){.hdr = {.op = (uint8_t)op,
					     .id = 3,
					     .status = -ENOSPC,
					     .count = 9}};
		CHECK(rep_roundtrip(&r, &d, &m) == 0);
		CHECK(m.n == 1 && d.hdr.status == -ENOSPC && d.hdr.id == 3 &&
		      d.hdr.count == 0 && (d.hdr.flags & NET_F_REPLY));
		msg_free(&m);
	}
	r = (struct net_rep){.hdr = {.op = NET_OP_PING, .id = 4, .arg = 5}};
	CHECK(rep_roundtrip(&r, &d, &m) == 0 && d.hdr.arg == 5);
	msg_free(&m);
	r = (struct net_rep){.hdr = {.op = NET_OP_PUT, .id = 4}};
	CHECK(rep_roundtrip(&r, &d, &m) == 0 && m.n == 1);
	msg_free(&m);

	make_frag(raw, data, sizeof(data));
	r = (struct net_rep){.hdr = {.op = NET_OP_GET},
			     .frag_raw = raw,
			     .data = data,
			     .len = sizeof(data)};
	CHECK(rep_roundtrip(&r, &d, &m) == 0);
	CHECK(m.n == 3 && d.len == sizeof(data) &&
	      memcmp(d.data, data, sizeof(data)) == 0 &&
	      ec_frag_verify(&d.frag, d.data, d.len) == 0);
	msg_free(&m);

	r = (struct net_rep){
	    .hdr = {.op = NET_OP_STATUS},
	    .st = {.capacity = 1ull << 40, .used = 12345, .fragments = 6}};
	CHECK(rep_roundtrip(&r, &d, &m) == 0);
	CHECK(d.st.capacity == 1ull << 40 && d.st.used == 12345 &&
	      d.st.fragments == 6);
	msg_free(&m);

	memset(bitmap, 0, sizeof(bitmap));
	net_bitmap_set(bitmap, 0);
	net_bitmap_set(bitmap, 7990);
	r = (struct net_rep){.hdr = {.op = NET_OP_HAVE, .count = 7991},
			     .bitmap = bitmap};
	CHECK(rep_roundtrip(&r, &d, &m) == 0);
	CHECK(net_bitmap_get(d.bitmap, 0) && net_bitmap_get(d.bitmap, 7990) &&
	      !net_bitmap_get(d.bitmap, 1) && d.hdr.count == 7991);
	msg_free(&m);

	for (int i = 0; i < 10; i++) {
		struct net_list_item it = {.ref = some_ref((unsigned)i),
					   .frag_len = 1000u + (unsigned)i};

		net_list_item_encode(&it, items + i * NET_LIST_ITEM_LEN);
	}
	r = (struct net_rep){
	    .hdr = {.op = NET_OP_LIST, .count = 10, .flags = NET_F_MORE},
	    .items = items};
	CHECK(rep_roundtrip(&r, &d, &m) == 0);
	CHECK(d.hdr.count == 10 && (d.hdr.flags & NET_F_MORE));
	{
		struct net_list_item it;

		CHECK(net_list_item_decode(d.items + 9 * NET_LIST_ITEM_LEN,
					   &it) == 0 &&
		      it.frag_len == 1009);
	}
	msg_free(&m);
	r = (struct net_rep){.hdr = {.op = NET_OP_LIST, .count = 0}};
	CHECK(rep_roundtrip(&r, &d, &m) == 0 && d.hdr.count == 0 &&
	      !(d.hdr.flags & NET_F_MORE));
	msg_free(&m);
}

/* Hand-made malformed messages. */
static void test_malformed(void)
{
	uint8_t h[NET_HDR_LEN], big[NET_HDR_LEN + 8], raw[EC_FRAG_HDR_LEN];
	uint8_t data[64], ref[NET_FREF_LEN] = {0};
	struct net_req d;
	struct net_rep e;
	struct net_frame f[5];

	make_frag(raw, data, sizeof(data));

#define HDR(...)                                                               \
	net_hdr_encode(&(struct net_hdr){__VA_ARGS__}, h),                     \
	    f[0] = (struct net_frame){h, NET_HDR_LEN}

	CHECK(net_req_decode(f, 0, &d) == -EPROTO);
	/* short, long, garbage header frames */
	HDR(.op = NET_OP_PING, .id = 5);
	f[0].len = 10;
	CHECK(net_req_decode(f, 1, &d) == -EPROTO);
	memcpy(big, h, NET_HDR_LEN);
	f[0] = (struct net_frame){big, sizeof(big)};
	CHECK(net_req_decode(f, 1, &d) == -EPROTO);
	/* a reply where a request belongs, and the other way round */
	HDR(.op = NET_OP_PING, .flags = NET_F_REPLY);
	CHECK(net_req_decode(f, 1, &d) == -EPROTO);
	HDR(.op = NET_OP_PING);
	CHECK(net_rep_decode(f, 1, &e) == -EPROTO);
	/* unknown and reserved ops; the id survives for the error reply */
	HDR(.op = 0, .id = 42);
	CHECK(net_req_decode(f, 1, &d) == -EOPNOTSUPP && d.hdr.id == 42);
	HDR(.op = 200);
	CHECK(net_req_decode(f, 1, &d) == -EOPNOTSUPP);
	/* wrong frame counts */
	HDR(.op = NET_OP_PING);
	f[1] = (struct net_frame){ref, sizeof(ref)};
	CHECK(net_req_decode(f, 2, &d) == -EINVAL);
	HDR(.op = NET_OP_GET);
	CHECK(net_req_decode(f, 1, &d) == -EINVAL);
	CHECK(net_req_decode(f, 3, &d) == -EINVAL);
	HDR(.op = NET_OP_PUT);
	f[1] = (struct net_frame){raw, sizeof(raw)};
	f[2] = (struct net_frame){data, sizeof(data)};
	CHECK(net_req_decode(f, 3, &d) == 0);
	CHECK(net_req_decode(f, 2, &d) == -EINVAL);
	f[3] = f[2];
	CHECK(net_req_decode(f, 4, &d) == -EINVAL);
	/* PUT: short fragment header, short bytes */
	f[1].len = EC_FRAG_HDR_LEN - 1;
	CHECK(net_req_decode(f, 3, &d) == -EMSGSIZE);
	f[1].len = EC_FRAG_HDR_LEN;
	f[2].len = sizeof(data) - 1;
	CHECK(net_req_decode(f, 3, &d) == -EMSGSIZE);
	f[2].len = 0;
	CHECK(net_req_decode(f, 3, &d) == -EMSGSIZE);
	/* GET with a short fref */
	HDR(.op = NET_OP_GET);
	f[1] = (struct net_frame){ref, NET_FREF_LEN - 1};
	CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
	/* non-zero status or count where none belongs */
	HDR(.op = NET_OP_SYNC, .status = 1);
	CHECK(net_req_decode(f, 1, &d) == -EINVAL);
	HDR(.op = NET_OP_SYNC, .count = 1);
	CHECK(net_req_decode(f, 1, &d) == -EINVAL);
	/* truncated and oversized batches */
	{
		uint8_t *refs = calloc(100, NET_FREF_LEN);

		HDR(.op = NET_OP_HAVE, .count = 100);
		f[1] = (struct net_frame){refs, 99 * NET_FREF_LEN};
		CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
		f[1].len = 100 * NET_FREF_LEN + 1;
		CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
		f[1].len = 100 * NET_FREF_LEN;
		CHECK(net_req_decode(f, 2, &d) == 0);
		HDR(.op = NET_OP_DELETE, .count = 0xffffffffu);
		CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
		HDR(.op = NET_OP_DELETE, .count = NET_MAX_REFS + 1);
		CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
		HDR(.op = NET_OP_LIST, .count = NET_MAX_LIST + 1);
		f[1].len = 0;
		CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
		HDR(.op = NET_OP_LIST, .count = 0);
		CHECK(net_req_decode(f, 2, &d) == -EINVAL);
		HDR(.op = NET_OP_LIST, .count = 5);
		f[1].len = 5;
		CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
		free(refs);
	}
	/* replies: wrong frame counts, lengths and counts */
	HDR(.op = NET_OP_GET, .flags = NET_F_REPLY);
	CHECK(net_rep_decode(f, 1, &e) == -EINVAL);
	HDR(.op = NET_OP_GET, .flags = NET_F_REPLY, .status = -EBADMSG);
	CHECK(net_rep_decode(f, 1, &e) == 0 && e.hdr.status == -EBADMSG);
	f[1] = (struct net_frame){raw, sizeof(raw)};
	CHECK(net_rep_decode(f, 2, &e) == -EINVAL);
	HDR(.op = NET_OP_GET, .flags = NET_F_REPLY, .status = 5);
	CHECK(net_rep_decode(f, 1, &e) == -EINVAL);
	HDR(.op = NET_OP_PUT, .flags = NET_F_REPLY | NET_F_MORE);
	CHECK(net_rep_decode(f, 1, &e) == -EINVAL);
	HDR(.op = NET_OP_HAVE, .flags = NET_F_REPLY, .count = 17);
	f[1] = (struct net_frame){ref, 2};
	CHECK(net_rep_decode(f, 2, &e) == -EMSGSIZE);
	f[1].len = 3;
	CHECK(net_rep_decode(f, 2, &e) == 0);
	HDR(.op = NET_OP_STATUS, .flags = NET_F_REPLY);
	f[1].len = NET_STATUS_LEN - 1;
	CHECK(net_rep_decode(f, 2, &e) == -EMSGSIZE);
	HDR(.op = NET_OP_LIST, .flags = NET_F_REPLY, .count = 1);
	f[1].len = NET_LIST_ITEM_LEN - 1;
	CHECK(net_rep_decode(f, 2, &e) == -EMSGSIZE);
	HDR(.op = NET_OP_LIST, .flags = NET_F_REPLY, .count = NET_MAX_LIST + 1);
	CHECK(net_rep_decode(f, 2, &e) == -EMSGSIZE);
	/* an error reply to an op the server did not know */
	HDR(.op = 99, .flags = NET_F_REPLY, .status = -EOPNOTSUPP);
	CHECK(net_rep_decode(f, 1, &e) == 0);
	HDR(.op = 99, .flags = NET_F_REPLY);
	CHECK(net_rep_decode(f, 1, &e) == -EOPNOTSUPP);
#undef HDR
}

/* Hand-made malformed HEAD_GET and HEAD_CAS messages. */
static void test_heads_malformed(void)
{
	uint8_t h[NET_HDR_LEN], body[NET_HEAD_MAX_BYTES + 2] = {0};
	struct net_req d;
	struct net_rep e;
	struct net_frame f[4];

#define HDR(...)                                                               \
	net_hdr_encode(&(struct net_hdr){__VA_ARGS__}, h),                     \
	    f[0] = (struct net_frame){h, NET_HDR_LEN}

	/* HEAD_GET: no fsid frame, one too many, fsids of the wrong length */
	HDR(.op = NET_OP_HEAD_GET, .id = 6, .arg = 3);
	f[1] = (struct net_frame){body, NET_FSID_LEN};
	f[2] = f[1];
	CHECK(net_req_decode(f, 2, &d) == 0 && d.hdr.arg == 3 &&
	      d.fsid == body);
	CHECK(net_req_decode(f, 1, &d) == -EINVAL && d.hdr.id == 6);
	CHECK(net_req_decode(f, 3, &d) == -EINVAL);
	f[1].len = NET_FSID_LEN - 1;
	CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
	f[1].len = NET_FSID_LEN + 1;
	CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
	f[1].len = 0;
	CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
	/* HEAD_GET with a count or a status */
	f[1].len = NET_FSID_LEN;
	HDR(.op = NET_OP_HEAD_GET, .count = 1);
	CHECK(net_req_decode(f, 2, &d) == -EINVAL);
	HDR(.op = NET_OP_HEAD_GET, .status = -1);
	CHECK(net_req_decode(f, 2, &d) == -EINVAL);
	/* HEAD_CAS: empty, oversized, missing, doubled record */
	HDR(.op = NET_OP_HEAD_CAS, .arg = 7);
	f[1] = (struct net_frame){body, NET_HEAD_MAX_BYTES};
	CHECK(net_req_decode(f, 2, &d) == 0 && d.hdr.arg == 7 &&
	      d.len == NET_HEAD_MAX_BYTES);
	f[1].len = NET_HEAD_MAX_BYTES + 1;
	CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
	f[1].len = 0;
	CHECK(net_req_decode(f, 2, &d) == -EMSGSIZE);
	CHECK(net_req_decode(f, 1, &d) == -EINVAL);
	f[1].len = 1;
	f[2] = f[1];
	CHECK(net_req_decode(f, 3, &d) == -EINVAL);
	HDR(.op = NET_OP_HEAD_CAS, .count = 2);
	CHECK(net_req_decode(f, 2, &d) == -EINVAL);
	/* replies: HEAD_GET without its record, with an arg, oversized;
	 * HEAD_CAS with a body or an arg; an error reply with a body */
	HDR(.op = NET_OP_HEAD_GET, .flags = NET_F_REPLY);
	CHECK(net_rep_decode(f, 1, &e) == -EINVAL);
	f[1] = (struct net_frame){body, 100};
	CHECK(net_rep_decode(f, 2, &e) == 0 && e.len == 100);
	f[1].len = NET_HEAD_MAX_BYTES + 1;
	CHECK(net_rep_decode(f, 2, &e) == -EMSGSIZE);
	f[1].len = 0;
	CHECK(net_rep_decode(f, 2, &e) == -EMSGSIZE);
	f[1].len = 100;
	HDR(.op = NET_OP_HEAD_GET, .flags = NET_F_REPLY, .arg = 1);
	CHECK(net_rep_decode(f, 2, &e) == -EINVAL);
	HDR(.op = NET_OP_HEAD_GET, .flags = NET_F_REPLY | NET_F_MORE);
	CHECK(net_rep_decode(f, 2, &e) == -EINVAL);
	HDR(.op = NET_OP_HEAD_CAS, .flags = NET_F_REPLY);
	CHECK(net_rep_decode(f, 1, &e) == 0);
	CHECK(net_rep_decode(f, 2, &e) == -EINVAL);
	HDR(.op = NET_OP_HEAD_CAS, .flags = NET_F_REPLY, .arg = 5);
	CHECK(net_rep_decode(f, 1, &e) == -EINVAL);
	HDR(.op = NET_OP_HEAD_CAS, .flags = NET_F_REPLY, .status = -ESTALE);
	CHECK(net_rep_decode(f, 1, &e) == 0 && e.hdr.status == -ESTALE);
	CHECK(net_rep_decode(f, 2, &e) == -EINVAL);
#undef HDR
}

/* Is a decoded request consistent with its frames? (What the server then
 * relies on.) */
static void check_req_sane(const struct net_frame *f, size_t n,
			   const struct net_req *d)
{
	switch (d->hdr.op) {
	case NET_OP_PUT:
		CHECK(n == 3 && d->len == d->frag.frag_len &&
		      d->len == f[2].len);
		break;
	case NET_OP_HAVE:
	case NET_OP_DELETE:
		CHECK(n == 2 && d->hdr.count >= 1 &&
		      d->hdr.count <= NET_MAX_REFS &&
		      f[1].len == (size_t)d->hdr.count * NET_FREF_LEN);
		break;
	case NET_OP_LIST:
		CHECK(d->hdr.count >= 1 && d->hdr.count <= NET_MAX_LIST);
		break;
	case NET_OP_HEAD_GET:
		CHECK(n == 2 && d->fsid == f[1].data &&
		      f[1].len == NET_FSID_LEN);
		break;
	case NET_OP_HEAD_CAS:
		CHECK(n == 2 && d->data == f[1].data && d->len == f[1].len &&
		      d->len >= 1 && d->len <= NET_HEAD_MAX_BYTES);
		break;
	default:
		CHECK(d->hdr.op >= NET_OP_PING && d->hdr.op <= NET_OP_SYNC);
	}
}

static void check_rep_sane(const struct net_frame *f, size_t n,
			   const struct net_rep *d)
{
	if (d->hdr.status < 0) {
		CHECK(n == 1);
		return;
	}
	switch (d->hdr.op) {
	case NET_OP_GET:
		CHECK(n == 3 && d->len == d->frag.frag_len);
		break;
	case NET_OP_HAVE:
	case NET_OP_DELETE:
		CHECK(f[1].len == net_bitmap_len(d->hdr.count));
		break;
	case NET_OP_LIST:
		CHECK(f[1].len == (size_t)d->hdr.count * NET_LIST_ITEM_LEN);
		break;
	case NET_OP_HEAD_GET:
		CHECK(n == 2 && d->len == f[1].len && d->len >= 1 &&
		      d->len <= NET_HEAD_MAX_BYTES);
		break;
	case NET_OP_HEAD_CAS:
		CHECK(n == 1);
		break;
	default:
		break;
	}
}

/* Thousands of random and mutated messages: valid ones mutated at one
 * byte, truncated, extended, with frames dropped or repeated, and plain
 * noise. The decoders must return an error or a consistent result. */
static void test_fuzz(void)
{
	static uint8_t data[3000];
	uint8_t raw[EC_FRAG_HDR_LEN], refs[40 * NET_FREF_LEN];
	uint8_t bitmap[5], items[3 * NET_LIST_ITEM_LEN];
	unsigned errors = 0, oks = 0;

	make_frag(raw, data, sizeof(data));
	for (int i = 0; i < 40; i++) {
		struct net_fref x = some_ref((unsigned)i);

		net_fref_encode(&x, refs + i * NET_FREF_LEN);
	}
	memset(bitmap, 0xa5, sizeof(bitmap));
	for (int i = 0; i < 3; i++) {
		struct net_list_item it = {.ref = some_ref((unsigned)i),
					   .frag_len = 77};

		net_list_item_encode(&it, items + i * NET_LIST_ITEM_LEN);
	}

	for (int iter = 0; iter < 40000; iter++) {
		uint8_t scratch[NET_ENC_SCRATCH];
		struct net_frame f[NET_MAX_FRAMES];
		struct msg m;
		bool reply = rnd() & 1;
		unsigned op = 1 + (unsigned)(rnd() % NET_OP_MAX);
		bool head = op == NET_OP_HEAD_GET || op == NET_OP_HEAD_CAS;
		int n;

		if (!reply) {
			struct net_req r = {
			    .hdr = {.op = (uint8_t)op,
				    .id = rnd(),
				    .count = op == NET_OP_LIST ? 10 : 40},
			    .frag_raw = raw,
			    .data = data,
			    .len = head ? 1 + rnd() % NET_HEAD_MAX_BYTES
					: sizeof(data),
			    .fsid = data,
			    .ref = some_ref(1),
			    .has_cursor = rnd() & 1,
			    .refs = refs};

			n = net_req_encode(&r, scratch, f);
		} else {
			struct net_rep r = {
			    .hdr = {.op = (uint8_t)op,
				    .id = rnd(),
				    .count = op == NET_OP_LIST ? 3 : 40,
				    .status = rnd() % 8 ? 0 : -EIO},
			    .frag_raw = raw,
			    .data = data,
			    .len = head ? 1 + rnd() % NET_HEAD_MAX_BYTES
					: sizeof(data),
			    .bitmap = bitmap,
			    .items = items};

			n = net_rep_encode(&r, scratch, f);
		}
		CHECK(n >= 1);
		if (n < 1)
			continue;
		msg_from(&m, f, n);

		/* mutate */
		switch (rnd() % 6) {
		case 0: { /* flip a byte of some frame */
			size_t k = rnd() % m.n;

			if (m.f[k].len)
				m.buf[k][rnd() % m.f[k].len] ^=
				    (uint8_t)(1 + rnd() % 255);
			break;
		}
		case 1: /* truncate a frame */ {
			size_t k = rnd() % m.n;

			if (m.f[k].len)
				m.f[k].len = rnd() % m.f[k].len;
			break;
		}
		case 2: /* drop the last frame */
			if (m.n > 1) {
				free(m.buf[--m.n]);
			} else {
				m.f[0].len = 0;
			}
			break;
		case 3: /* repeat a frame */
			if (m.n < 8) {
				size_t k = rnd() % m.n;

				m.buf[m.n] = malloc(m.f[k].len + 1);
				memcpy(m.buf[m.n], m.buf[k], m.f[k].len);
				m.f[m.n] =
				    (struct net_frame){m.buf[m.n], m.f[k].len};
				m.n++;
			}
			break;
		case 4: /* header fields: random op/flags/count bytes */
			if (m.f[0].len == NET_HDR_LEN)
				m.buf[0][5 + rnd() % 19] = (uint8_t)rnd();
			break;
		default: /* noise of random length in every frame */
			for (size_t k = 0; k < m.n; k++) {
				size_t len = rnd() % 80;

				free(m.buf[k]);
				m.buf[k] = malloc(len + 1);
				fill(m.buf[k], len);
				if (k == 0 && len >= 5 && rnd() % 2) {
					memcpy(m.buf[k], "BFNP\1", 5);
				}
				m.f[k] = (struct net_frame){m.buf[k], len};
			}
		}

		{
			struct net_req d;
			struct net_rep e;
			int rc1 = net_req_decode(m.f, m.n, &d);
			int rc2 = net_rep_decode(m.f, m.n, &e);

			CHECK(rc1 <= 0 && rc2 <= 0);
			CHECK(rc1 == 0 || rc1 == -EPROTO || rc1 == -EINVAL ||
			      rc1 == -EMSGSIZE || rc1 == -EOPNOTSUPP);
			CHECK(rc2 == 0 || rc2 == -EPROTO || rc2 == -EINVAL ||
			      rc2 == -EMSGSIZE || rc2 == -EOPNOTSUPP);
			if (rc1 == 0)
				check_req_sane(m.f, m.n, &d);
			if (rc2 == 0)
				check_rep_sane(m.f, m.n, &e);
			CHECK(rc1 != 0 || rc2 != 0); /* never both */
			if (rc1 == 0 || rc2 == 0)
				oks++;
			else
				errors++;
		}
		msg_free(&m);
	}
	/* the loop exercised both outcomes */
	CHECK(errors > 10000 && oks > 1000);
	printf("fuzz: %u rejected, %u accepted\n", errors, oks);
}

int main(void)
{
	test_header();
	test_requests();
	test_replies();
	test_malformed();
	test_heads();
	test_heads_malformed();
	test_fuzz();
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
