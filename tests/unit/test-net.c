/* Tests of the storage-node server and the pipelined client (net/server.c,
 * net/client.c) over TCP loopback with CURVE: every op, checksums on put and
 * get, capacity, authentication, garbage from an authenticated peer, many
 * concurrent PUTs, a node going down and coming back, and the GET fault
 * switch. NET_BENCH=1 adds a PUT throughput measurement (1 GiB in 1 MiB
 * fragments; NET_BENCH_MIB overrides the size; NET_BENCH=only runs it
 * alone) that asserts nothing. */

#include "net/client.h"
#include "net/server.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "net/keys.h"
#include "tests/unit/check.h"

#define KiB 1024
#define MiB (1024 * 1024)

static const char *const extra_cfs[] = {"frags", NULL};
enum { CF_FRAGS = BLK_CF_USER };

struct keypair {
	char pub[NET_KEY_Z85_LEN + 1], sec[NET_KEY_Z85_LEN + 1];
};
static struct keypair node_key, client_key, stranger_key;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ---- fixtures ---- */

struct env {
	char dir[64];
	struct blk_db *db;
	struct net_server *srv;
	char endpoint[256];
};

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void db_open(struct env *e)
{
	char path[96], err[256] = "";
	struct blk_db_options o = {.extra_cfs = extra_cfs, .create = true};

	snprintf(path, sizeof(path), "%s/db", e->dir);
	REQUIRE(blk_db_open(path, &o, &e->db, err, sizeof(err)) == 0);
}

static int server_start(struct env *e, const char *endpoint,
			uint64_t capacity, bool fault)
{
	const char *allowed[] = {client_key.pub, node_key.pub};
	struct net_server_config cfg = {
	    .endpoint = endpoint,
	    .public_key = node_key.pub,
	    .secret_key = node_key.sec,
	    .allowed_keys = allowed,
	    .nallowed = 2,
	    .db = e->db,
	    .cf = CF_FRAGS,
	    .capacity = capacity,
	    .workers = 3,
	    .fault_corrupt_get = fault,
	};
	int rc = net_server_new(&cfg, &e->srv);

	if (rc == 0)
		snprintf(e->endpoint, sizeof(e->endpoint), "%s",
			 net_server_endpoint(e->srv));
	return rc;
}

/* Set: clients made by client_new reach this server as their local peer
 * (net_client_set_local), by function call instead of over ZeroMQ. */
static struct net_server *local_srv;

static bool local_mode;

static void env_up(struct env *e, uint64_t capacity, bool fault)
{
	memset(e, 0, sizeof(*e));
	strcpy(e->dir, "/tmp/test-net.XXXXXX");
	REQUIRE(mkdtemp(e->dir));
	db_open(e);
	REQUIRE(server_start(e, "tcp://127.0.0.1:*", capacity, fault) == 0);
	local_srv = local_mode ? e->srv : NULL;
}

static void env_down(struct env *e)
{
	net_server_free(e->srv);
	blk_db_close(e->db);
	nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

struct client_opts {
	const struct keypair *key;
	unsigned timeout_ms, attempts, heartbeat_ms, down_after_ms;
	bool no_verify;
};

static struct net_client *client_new(const char *endpoint,
				     const struct client_opts *o)
{
	static const struct client_opts defaults = {0};
	struct net_peer_config peer = {.endpoint = endpoint,
				       .server_key = node_key.pub};
	struct net_client_config cfg;
	struct net_client *c = NULL;

	if (!o)
		o = &defaults;
	cfg = (struct net_client_config){
	    .public_key = o->key ? o->key->pub : client_key.pub,
	    .secret_key = o->key ? o->key->sec : client_key.sec,
	    .peers = &peer,
	    .npeers = 1,
	    .timeout_ms = o->timeout_ms,
	    .max_attempts = o->attempts,
	    .heartbeat_ms = o->heartbeat_ms,
	    .down_after_ms = o->down_after_ms,
	    .no_verify = o->no_verify,
	};
	REQUIRE(net_client_new(&cfg, &c) == 0);
	if (local_srv)
		REQUIRE(net_client_set_local(c, 0, net_server_exec,
					     net_server_release,
					     local_srv) == 0);
	return c;
}

/* ---- fragments ---- */

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

struct frag {
	uint8_t raw[EC_FRAG_HDR_LEN];
	uint8_t *data;
	size_t len;
	struct net_fref ref;
};

/* A replica fragment (k=1, m=2) of a random block of @len bytes. */
static void frag_make(struct frag *f, size_t len, uint8_t index)
{
	struct ec_frag_hdr h = {.k = 1, .m = 2, .index = index,
				.block_len = (uint32_t)len,
				.frag_len = (uint32_t)len};

	f->data = malloc(len);
	REQUIRE(f->data);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd();

		memcpy(f->data + i, &v, len - i < 8 ? len - i : 8);
	}
	f->len = len;
	blk_cid_compute(&h.cid, BLK_CODEC_RAW, f->data, len);
	ec_frag_hdr_seal(&h, f->data, f->raw);
	f->ref = (struct net_fref){.cid = h.cid, .index = index};
}

static void frag_free(struct frag *f)
{
	free(f->data);
	f->data = NULL;
}

static atomic_int released;

static void count_release(void *arg)
{
	atomic_fetch_add(&released, 1);
}

static int put_sync(struct net_client *c, const struct frag *f)
{
	struct net_op *op = net_op_new_put(f->raw, f->data, f->len,
					   count_release, NULL);
	int rc;

	REQUIRE(op);
	rc = net_client_call(c, 0, op);
	net_op_free(op);
	return rc;
}

/* GET @ref; 0 with a malloc'd copy of the bytes in *data, or the error. */
static int get_sync(struct net_client *c, const struct net_fref *ref,
		    uint8_t **data, size_t *len)
{
	struct net_op *op = net_op_new_get(ref);
	int rc;

	REQUIRE(op);
	rc = net_client_call(c, 0, op);
	if (rc == 0) {
		const struct net_op_result *r = net_op_result(op);

		*data = malloc(r->len);
		memcpy(*data, r->data, r->len);
		*len = r->len;
	}
	net_op_free(op);
	return rc;
}

/* ---- tests ---- */

static void test_ops(void)
{
	struct env e;
	struct net_client *c;
	struct net_batch *b;
	struct frag f[10];
	struct net_status st;
	uint64_t rtt = 0, used = 0;
	int rel0;

	env_up(&e, 1ull << 30, false);
	c = client_new(e.endpoint, NULL);

	CHECK(net_client_ping(c, 0, &rtt) == 0);
	CHECK(rtt > 0);
	CHECK(net_client_status(c, 0, &st) == 0);
	CHECK(st.capacity == 1ull << 30 && st.used == 0 && st.fragments == 0);

	/* PUT ten fragments in one batch. */
	rel0 = atomic_load(&released);
	b = net_batch_new(c);
	for (int i = 0; i < 10; i++) {
		frag_make(&f[i], 1000 + (size_t)i * 7919, (uint8_t)(i % 3));
		used += EC_FRAG_HDR_LEN + f[i].len;
		CHECK(net_batch_submit(b, 0,
				       net_op_new_put(f[i].raw, f[i].data,
						      f[i].len, count_release,
						      NULL)) == 0);
	}
	CHECK(net_batch_wait(b, 10000) == 0);
	CHECK(net_batch_count(b) == 10 && net_batch_done(b) == 10);
	for (size_t i = 0; i < net_batch_count(b); i++)
		CHECK(net_op_result(net_batch_op(b, i))->status == 0);
	net_batch_free(b);
	CHECK(atomic_load(&released) - rel0 == 10);

	CHECK(net_client_status(c, 0, &st) == 0);
	CHECK(st.fragments == 10 && st.used == used);

	/* GET each back. */
	for (int i = 0; i < 10; i++) {
		uint8_t *d = NULL;
		size_t len = 0;

		CHECK(get_sync(c, &f[i].ref, &d, &len) == 0);
		CHECK(len == f[i].len && d && memcmp(d, f[i].data, len) == 0);
		free(d);
	}
	{
		struct net_fref missing = f[0].ref;
		uint8_t *d;
		size_t len;

		missing.index = 9;
		CHECK(get_sync(c, &missing, &d, &len) == -ENOENT);
	}

	/* A re-put is idempotent and costs nothing. */
	CHECK(put_sync(c, &f[3]) == 0);
	CHECK(net_client_status(c, 0, &st) == 0);
	CHECK(st.fragments == 10 && st.used == used);

	/* HAVE: the ten, and ten that are not there. */
	{
		struct net_fref refs[20];
		uint8_t map[3];

		for (int i = 0; i < 10; i++) {
			refs[i] = f[i].ref;
			refs[10 + i] = f[i].ref;
			refs[10 + i].index = 40;
		}
		CHECK(net_client_have(c, 0, refs, 20, map) == 0);
		for (uint32_t i = 0; i < 20; i++)
			CHECK(net_bitmap_get(map, i) == (i < 10));
	}

	/* LIST in pages of 3: each fragment once, with its length. */
	{
		struct net_list_item items[3];
		struct net_fref cursor;
		bool more = true, first = true, seen[10] = {false};
		uint32_t n, total = 0, pages = 0;

		while (more) {
			CHECK(net_client_list(c, 0, first ? NULL : &cursor, 3,
					      items, &n, &more) == 0);
			pages++;
			for (uint32_t i = 0; i < n; i++) {
				for (int j = 0; j < 10; j++) {
					if (blk_cid_equal(&items[i].ref.cid,
							  &f[j].ref.cid) &&
					    items[i].ref.index ==
						f[j].ref.index) {
						CHECK(!seen[j]);
						CHECK(items[i].frag_len ==
						      f[j].len);
						seen[j] = true;
					}
				}
				total++;
			}
			if (n)
				cursor = items[n - 1].ref;
			first = false;
			if (pages > 10)
				break;
		}
		CHECK(total == 10 && pages == 4);
		for (int j = 0; j < 10; j++)
			CHECK(seen[j]);
	}

	/* DELETE three (one named twice) and one that is not there. */
	{
		struct net_fref refs[5] = {f[0].ref, f[1].ref, f[2].ref,
					   f[1].ref, f[0].ref};
		struct net_op *op;
		const struct net_op_result *r;

		refs[4].index = 50;
		op = net_op_new_delete(refs, 5);
		CHECK(net_client_call(c, 0, op) == 0);
		r = net_op_result(op);
		CHECK(r && r->count == 5);
		if (r && r->bitmap) {
			CHECK(net_bitmap_get(r->bitmap, 0) &&
			      net_bitmap_get(r->bitmap, 1) &&
			      net_bitmap_get(r->bitmap, 2) &&
			      net_bitmap_get(r->bitmap, 3) &&
			      !net_bitmap_get(r->bitmap, 4));
		}
		net_op_free(op);
		for (int i = 0; i < 3; i++)
			used -= EC_FRAG_HDR_LEN + f[i].len;
		CHECK(net_client_status(c, 0, &st) == 0);
		CHECK(st.fragments == 7 && st.used == used);
		{
			uint8_t *d;
			size_t len;

			CHECK(get_sync(c, &f[1].ref, &d, &len) == -ENOENT);
		}
	}
	CHECK(net_client_sync(c, 0) == 0);

	/* Usage survives a restart of the server and of the database. */
	net_server_free(e.srv);
	blk_db_close(e.db);
	db_open(&e);
	REQUIRE(server_start(&e, "tcp://127.0.0.1:*", 1ull << 30, false) == 0);
	net_server_status(e.srv, &st);
	CHECK(st.fragments == 7 && st.used == used);

	net_client_free(c);
	for (int i = 0; i < 10; i++)
		frag_free(&f[i]);
	env_down(&e);
}

static void test_checksums(void)
{
	struct env e;
	struct net_client *c;
	struct frag f, g;
	struct net_status st;
	uint8_t key[NET_SERVER_KEY_LEN], *val, *d;
	size_t vlen, len;

	env_up(&e, 1ull << 30, false);
	c = client_new(e.endpoint, NULL);

	/* PUT with bytes that do not match the header's checksum. */
	frag_make(&f, 5000, 0);
	f.data[100] ^= 1;
	CHECK(put_sync(c, &f) == -EBADMSG);
	CHECK(net_client_status(c, 0, &st) == 0 && st.fragments == 0);
	f.data[100] ^= 1;
	CHECK(put_sync(c, &f) == 0);

	/* Rot the stored value: GET refuses to send it. */
	net_server_frag_key(&f.ref, key);
	REQUIRE(blk_db_get(e.db, CF_FRAGS, key, sizeof(key), (void **)&val,
			   &vlen) == 0);
	CHECK(vlen == EC_FRAG_HDR_LEN + f.len);
	val[EC_FRAG_HDR_LEN + 4000] ^= 0x10;
	REQUIRE(blk_db_put(e.db, CF_FRAGS, key, sizeof(key), val, vlen) == 0);
	CHECK(get_sync(c, &f.ref, &d, &len) == -EBADMSG);
	/* A value that is another fragment (a good one) is refused too. */
	frag_make(&g, 300, 0);
	memcpy(val, g.raw, EC_FRAG_HDR_LEN);
	memcpy(val + EC_FRAG_HDR_LEN, g.data, g.len);
	REQUIRE(blk_db_put(e.db, CF_FRAGS, key, sizeof(key), val,
			   EC_FRAG_HDR_LEN + g.len) == 0);
	CHECK(get_sync(c, &f.ref, &d, &len) == -EBADMSG);
	/* A truncated value. */
	REQUIRE(blk_db_put(e.db, CF_FRAGS, key, sizeof(key), val, 10) == 0);
	CHECK(get_sync(c, &f.ref, &d, &len) == -EBADMSG);
	free(val);
	/* A repair: putting the fragment again replaces the rotten copy. */
	CHECK(put_sync(c, &f) == 0);
	d = NULL;
	CHECK(get_sync(c, &f.ref, &d, &len) == 0);
	CHECK(d && len == f.len && memcmp(d, f.data, len) == 0);
	free(d);

	net_client_free(c);
	frag_free(&f);
	frag_free(&g);
	env_down(&e);
}

static void test_capacity(void)
{
	struct env e;
	struct net_client *c;
	struct frag f[3];
	struct net_status st;

	/* Room for two 4 KiB fragments with their headers, not three. */
	env_up(&e, 3 * 4096, false);
	c = client_new(e.endpoint, NULL);
	for (int i = 0; i < 3; i++)
		frag_make(&f[i], 4096, 0);
	CHECK(put_sync(c, &f[0]) == 0);
	CHECK(put_sync(c, &f[1]) == 0);
	CHECK(put_sync(c, &f[2]) == -ENOSPC);
	CHECK(put_sync(c, &f[0]) == 0); /* a re-put needs no room */
	CHECK(net_client_status(c, 0, &st) == 0);
	CHECK(st.fragments == 2 && st.used == 2 * (4096 + EC_FRAG_HDR_LEN));
	{
		uint8_t map[1];

		CHECK(net_client_have(c, 0, &f[2].ref, 1, map) == 0);
		CHECK(!net_bitmap_get(map, 0));
	}
	/* DELETE gives the room back. */
	{
		struct net_op *op = net_op_new_delete(&f[1].ref, 1);

		CHECK(net_client_call(c, 0, op) == 0);
		net_op_free(op);
	}
	CHECK(put_sync(c, &f[2]) == 0);
	CHECK(net_client_status(c, 0, &st) == 0 && st.fragments == 2);
	net_client_free(c);
	for (int i = 0; i < 3; i++)
		frag_free(&f[i]);
	env_down(&e);
}

/* A client whose key is not in the cluster can neither write nor read. */
static void test_unknown_key(void)
{
	struct env e;
	struct net_client *good, *bad;
	struct client_opts o = {.key = &stranger_key, .timeout_ms = 300,
				.attempts = 2, .heartbeat_ms = 200,
				.down_after_ms = 1500};
	struct frag f, g;
	struct net_status st;
	uint8_t *d = NULL;
	size_t len;
	uint64_t t0 = now_ms();
	int rc;

	env_up(&e, 1ull << 30, false);
	good = client_new(e.endpoint, NULL);
	bad = client_new(e.endpoint, &o);
	frag_make(&f, 2000, 0);
	frag_make(&g, 2000, 1);
	CHECK(put_sync(good, &g) == 0);

	rc = put_sync(bad, &f);
	CHECK(rc == -ETIMEDOUT || rc == -EHOSTDOWN);
	rc = get_sync(bad, &g.ref, &d, &len);
	CHECK(rc == -ETIMEDOUT || rc == -EHOSTDOWN);
	CHECK(d == NULL);
	rc = net_client_status(bad, 0, &st);
	CHECK(rc == -ETIMEDOUT || rc == -EHOSTDOWN);
	CHECK(now_ms() - t0 < 10000);
	{
		bool up = true;

		sleep_ms(1700);
		CHECK(net_client_peer_state(bad, 0, &up, NULL) == 0 && !up);
	}

	/* Nothing changed on the node. */
	net_server_status(e.srv, &st);
	CHECK(st.fragments == 1);
	CHECK(net_client_status(good, 0, &st) == 0 && st.fragments == 1);
	{
		uint8_t map[1];

		CHECK(net_client_have(good, 0, &f.ref, 1, map) == 0 &&
		      !net_bitmap_get(map, 0));
	}
	net_client_free(bad);
	net_client_free(good);
	frag_free(&f);
	frag_free(&g);
	env_down(&e);
}

/* Receive one reply on a raw DEALER; returns its header's status, or 1 if
 * nothing came, or 2 if it did not decode as a one-frame error reply. */
static int raw_reply(void *s, uint64_t *id)
{
	zmq_pollitem_t pi = {.socket = s, .events = ZMQ_POLLIN};
	struct net_frame f[NET_MAX_FRAMES];
	uint8_t buf[NET_MAX_FRAMES][128];
	struct net_rep r;
	int n = 0, more = 1;

	if (zmq_poll(&pi, 1, 3000) <= 0)
		return 1;
	while (more) {
		size_t ml = sizeof(more);
		int got = zmq_recv(s, buf[n < NET_MAX_FRAMES ? n : 0], 128, 0);

		if (got < 0)
			return 2;
		if (n < NET_MAX_FRAMES)
			f[n] = (struct net_frame){buf[n], (size_t)got};
		n++;
		zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
	}
	if (n > NET_MAX_FRAMES || net_rep_decode(f, (size_t)n, &r) < 0)
		return 2;
	*id = r.hdr.id;
	return r.hdr.status;
}

static void test_garbage(void)
{
	struct env e;
	struct net_client *c;
	void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
	int zero = 0;
	uint8_t h[NET_HDR_LEN], junk[64];
	uint64_t id;

	env_up(&e, 1ull << 30, false);
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, node_key.pub, NET_KEY_Z85_LEN);
	zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, client_key.pub, NET_KEY_Z85_LEN);
	zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, client_key.sec, NET_KEY_Z85_LEN);
	REQUIRE(zmq_connect(s, e.endpoint) == 0);

	/* Noise. */
	zmq_send(s, "hello", 5, 0);
	id = 1;
	CHECK(raw_reply(s, &id) == -EPROTO && id == 0);
	/* An empty frame. */
	zmq_send(s, "", 0, 0);
	CHECK(raw_reply(s, &id) == -EPROTO);
	/* Unknown and reserved ops: the id comes back. */
	net_hdr_encode(&(struct net_hdr){.op = 77, .id = 1234}, h);
	zmq_send(s, h, sizeof(h), 0);
	CHECK(raw_reply(s, &id) == -EOPNOTSUPP && id == 1234);
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_HEAD_GET, .id = 5}, h);
	zmq_send(s, h, sizeof(h), 0);
	CHECK(raw_reply(s, &id) == -EOPNOTSUPP && id == 5);
	/* GET with a short fref. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_GET, .id = 6}, h);
	zmq_send(s, h, sizeof(h), ZMQ_SNDMORE);
	zmq_send(s, junk, 10, 0);
	CHECK(raw_reply(s, &id) == -EMSGSIZE && id == 6);
	/* PUT with a missing frame, and with a garbage fragment header. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_PUT, .id = 7}, h);
	zmq_send(s, h, sizeof(h), ZMQ_SNDMORE);
	zmq_send(s, junk, 64, 0);
	CHECK(raw_reply(s, &id) == -EINVAL && id == 7);
	memset(junk, 0xee, sizeof(junk));
	zmq_send(s, h, sizeof(h), ZMQ_SNDMORE);
	zmq_send(s, junk, 64, ZMQ_SNDMORE);
	zmq_send(s, junk, 64, 0);
	CHECK(raw_reply(s, &id) == -EINVAL);
	/* Too many frames. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_PING, .id = 8}, h);
	zmq_send(s, h, sizeof(h), ZMQ_SNDMORE);
	for (int i = 0; i < 11; i++)
		zmq_send(s, junk, 3, i < 10 ? ZMQ_SNDMORE : 0);
	CHECK(raw_reply(s, &id) == -EINVAL && id == 8);
	/* HAVE claiming more frefs than it carries. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_HAVE, .id = 9,
					 .count = 1000000},
		       h);
	zmq_send(s, h, sizeof(h), ZMQ_SNDMORE);
	zmq_send(s, junk, NET_FREF_LEN, 0);
	CHECK(raw_reply(s, &id) == -EMSGSIZE && id == 9);
	/* A reply sent as a request. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_PING, .id = 10,
					 .flags = NET_F_REPLY},
		       h);
	zmq_send(s, h, sizeof(h), 0);
	CHECK(raw_reply(s, &id) == -EPROTO);
	/* A valid PING on the same connection still works. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_PING, .id = 11}, h);
	zmq_send(s, h, sizeof(h), 0);
	CHECK(raw_reply(s, &id) == 0 && id == 11);
	zmq_close(s);
	zmq_ctx_term(ctx);

	/* And the server still serves others. */
	c = client_new(e.endpoint, NULL);
	CHECK(net_client_ping(c, 0, NULL) == 0);
	net_client_free(c);
	env_down(&e);
}

/* Thousands of PUTs in flight from four threads at once. */
struct putter {
	struct net_client *c;
	int nth, count;
	int ok;
};

static void *putter_main(void *arg)
{
	struct putter *p = arg;
	struct net_batch *b = net_batch_new(p->c);
	uint8_t *data = malloc((size_t)p->count * 4096);
	uint8_t (*raw)[EC_FRAG_HDR_LEN] = malloc((size_t)p->count * 64);

	REQUIRE(b && data && raw);
	for (int i = 0; i < p->count; i++) {
		uint8_t *d = data + (size_t)i * 4096;
		struct ec_frag_hdr h = {.k = 1, .m = 0, .index = 0,
					.block_len = 4096, .frag_len = 4096};

		memset(d, 0, 4096);
		memcpy(d, &p->nth, sizeof(p->nth));
		memcpy(d + 8, &i, sizeof(i));
		blk_cid_compute(&h.cid, BLK_CODEC_RAW, d, 4096);
		ec_frag_hdr_seal(&h, d, raw[i]);
		net_batch_submit(b, 0,
				 net_op_new_put(raw[i], d, 4096, NULL, NULL));
	}
	if (net_batch_wait(b, 60000) == 0) {
		for (size_t i = 0; i < net_batch_count(b); i++)
			if (net_op_result(net_batch_op(b, i))->status == 0)
				p->ok++;
	}
	net_batch_free(b);
	free(raw);
	free(data);
	return NULL;
}

static void test_concurrent(void)
{
	struct env e;
	struct net_client *c;
	struct putter p[4];
	pthread_t t[4];
	struct net_status st;
	uint64_t t0;

	env_up(&e, 1ull << 30, false);
	c = client_new(e.endpoint, NULL);
	t0 = now_ms();
	for (int i = 0; i < 4; i++) {
		p[i] = (struct putter){.c = c, .nth = i, .count = 1500};
		REQUIRE(pthread_create(&t[i], NULL, putter_main, &p[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(p[i].ok == 1500);
	}
	CHECK(net_client_status(c, 0, &st) == 0 && st.fragments == 6000);
	printf("concurrent: 6000 PUTs of 4 KiB from 4 threads in %llu ms\n",
	       (unsigned long long)(now_ms() - t0));
	net_client_free(c);
	env_down(&e);
}

static bool wait_state(struct net_client *c, bool want, unsigned ms)
{
	uint64_t end = now_ms() + ms;
	bool up = !want;

	while (now_ms() < end) {
		net_client_peer_state(c, 0, &up, NULL);
		if (up == want)
			return true;
		sleep_ms(20);
	}
	return false;
}

static void test_down_up(void)
{
	struct env e;
	struct net_client *c;
	struct client_opts o = {.timeout_ms = 500, .attempts = 2,
				.heartbeat_ms = 200, .down_after_ms = 1000};
	struct frag f;
	uint64_t lat = 0, t0;
	bool up = false;
	uint8_t *d;
	size_t len;
	int rc;

	env_up(&e, 1ull << 30, false);
	c = client_new(e.endpoint, &o);
	frag_make(&f, 1000, 0);
	CHECK(put_sync(c, &f) == 0);
	sleep_ms(500);
	CHECK(net_client_peer_state(c, 0, &up, &lat) == 0 && up && lat > 0);

	/* Stop the node: DOWN within the configured time. */
	net_server_free(e.srv);
	e.srv = NULL;
	t0 = now_ms();
	CHECK(wait_state(c, false, 3000));
	printf("down: peer marked down after %llu ms\n",
	       (unsigned long long)(now_ms() - t0));
	t0 = now_ms();
	rc = get_sync(c, &f.ref, &d, &len);
	CHECK(rc == -EHOSTDOWN);
	CHECK(now_ms() - t0 < 200);

	/* Restart it on the same port: UP again, and serving. */
	t0 = now_ms();
	for (int i = 0; i < 50; i++) {
		if ((rc = server_start(&e, e.endpoint, 1ull << 30, false)) == 0)
			break;
		sleep_ms(100);
	}
	REQUIRE(rc == 0);
	CHECK(wait_state(c, true, 5000));
	printf("up: peer marked up %llu ms after the restart\n",
	       (unsigned long long)(now_ms() - t0));
	d = NULL;
	CHECK(get_sync(c, &f.ref, &d, &len) == 0);
	CHECK(d && len == f.len && memcmp(d, f.data, len) == 0);
	free(d);
	net_client_free(c);
	frag_free(&f);
	env_down(&e);
}

static void test_fault_switch(void)
{
	struct net_client *c, *raw;
	struct client_opts o = {.no_verify = true};
	struct env e;
	struct frag f;
	uint8_t *d = NULL;
	size_t len = 0, diff = 0;

	/* Switched on through the environment. */
	setenv("BLOCKFS_FAULT_CORRUPT_GET", "1", 1);
	env_up(&e, 1ull << 30, false);
	unsetenv("BLOCKFS_FAULT_CORRUPT_GET");
	c = client_new(e.endpoint, NULL);
	raw = client_new(e.endpoint, &o);
	frag_make(&f, 10000, 0);
	CHECK(put_sync(c, &f) == 0);
	/* A verifying client refuses the wrong bytes... */
	CHECK(get_sync(c, &f.ref, &d, &len) == -EBADMSG);
	/* ...which are indeed wrong, in one byte. */
	CHECK(get_sync(raw, &f.ref, &d, &len) == 0);
	CHECK(d && len == f.len);
	for (size_t i = 0; d && i < len && i < f.len; i++)
		diff += d[i] != f.data[i];
	CHECK(diff == 1);
	free(d);
	net_client_free(raw);
	net_client_free(c);
	env_down(&e);

	/* Off by default. */
	env_up(&e, 1ull << 30, false);
	c = client_new(e.endpoint, NULL);
	CHECK(put_sync(c, &f) == 0);
	d = NULL;
	CHECK(get_sync(c, &f.ref, &d, &len) == 0);
	free(d);
	net_client_free(c);
	env_down(&e);
	frag_free(&f);
}

/* PUT throughput: N MiB in 1 MiB fragments, window 64, then a SYNC. */
static void bench_put(void)
{
	const char *env = getenv("NET_BENCH_MIB");
	int mib = env ? atoi(env) : 1024;
	struct env e;
	struct net_client *c;
	struct net_batch *b;
	uint8_t *pool;
	uint64_t t0, t1, t2;
	int ok = 0;

	env_up(&e, 1ull << 40, false);
	c = client_new(e.endpoint, NULL);
	/* 64 distinct 1 MiB buffers, each sent many times with a varying
	 * first word (so every fragment is new). */
	pool = malloc((size_t)mib * MiB);
	REQUIRE(pool);
	for (size_t i = 0; i < (size_t)mib * MiB; i += 8) {
		uint64_t v = rnd();

		memcpy(pool + i, &v, 8);
	}
	b = net_batch_new(c);
	t0 = now_ms();
	for (int i = 0; i < mib; i++) {
		uint8_t *d = pool + (size_t)i * MiB, raw[EC_FRAG_HDR_LEN];
		struct ec_frag_hdr h = {.k = 1, .m = 0, .index = 0,
					.block_len = MiB, .frag_len = MiB};

		/* A real writer has the CID already; a cheap stand-in. */
		memcpy(h.cid.digest, d, BLK_DIGEST_LEN);
		h.cid.codec = BLK_CODEC_RAW;
		ec_frag_hdr_seal(&h, d, raw);
		net_batch_submit(b, 0, net_op_new_put(raw, d, MiB, NULL, NULL));
	}
	CHECK(net_batch_wait(b, 600000) == 0);
	t1 = now_ms();
	for (size_t i = 0; i < net_batch_count(b); i++)
		ok += net_op_result(net_batch_op(b, i))->status == 0;
	CHECK(ok == mib);
	CHECK(net_client_sync(c, 0) == 0);
	t2 = now_ms();
	printf("bench: PUT %d MiB in 1 MiB fragments: %.0f MB/s acknowledged "
	       "(%llu ms), %.0f MB/s including SYNC\n",
	       mib, (double)mib * MiB / 1e6 / ((double)(t1 - t0) / 1e3),
	       (unsigned long long)(t1 - t0),
	       (double)mib * MiB / 1e6 / ((double)(t2 - t0) / 1e3));
	net_batch_free(b);
	net_client_free(c);
	env_down(&e);
	free(pool);
}

int main(void)
{
	REQUIRE(net_keypair_generate(node_key.pub, node_key.sec) == 0);
	REQUIRE(net_keypair_generate(client_key.pub, client_key.sec) == 0);
	REQUIRE(net_keypair_generate(stranger_key.pub, stranger_key.sec) == 0);

	if (!getenv("NET_BENCH") || strcmp(getenv("NET_BENCH"), "only")) {
		test_ops();
		test_checksums();
		test_capacity();
		test_garbage();
		test_unknown_key();
		test_concurrent();
		test_down_up();
		test_fault_switch();
		/* The same operations through the local-peer path. */
		local_mode = true;
		test_ops();
		test_checksums();
		test_capacity();
		test_concurrent();
		test_fault_switch();
		local_mode = false;
	}
	if (getenv("NET_BENCH"))
		bench_put();
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
