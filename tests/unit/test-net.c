/* Tests of the storage-node server and the pipelined client
 * (net/server/server.c, net/client/client.c) over TCP loopback with CURVE:
 * every op, checksums on put and get, capacity, authentication, garbage from an
 * authenticated peer, many concurrent PUTs, a node going down and coming back,
 * the GET fault switch, and what a hostile peer with a valid key cannot do
 * (overwrite or delete stored fragments, fill the node's memory) and the
 * refusals it leaves in the log. NET_BENCH=1 adds a PUT throughput measurement
 * (1 GiB in 1 MiB fragments; NET_BENCH_MIB overrides the size; NET_BENCH=only
 * runs it alone) that asserts nothing. */

#include "blocks/store/fragstore.h"
#include "net/client/client.h"
#include "net/server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "net/wire/keys.h"
#include "tests/unit/check.h"

#define KiB 1024
#define MiB (1024 * 1024)

/* AddressSanitizer keeps freed memory in quarantine: peak RSS says
 * nothing about what the code under test holds there. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* The fragment store's family, the only one registered: handle 0. */
enum { CF_FRAGS = 0 };

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
	struct net_client *c; /* env_open's client, or NULL */
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
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};

	REQUIRE(blk_fragstore_register(&reg) == CF_FRAGS);
	snprintf(path, sizeof(path), "%s/db", e->dir);
	REQUIRE(blk_db_open(path, &o, &e->db, err, sizeof(err)) == 0);
}

/* What the next servers started get besides the defaults (tests that
 * change it put it back). */
static struct {
	unsigned peer_max_requests, log_interval_ms;
	uint64_t peer_max_bytes, max_bytes, disk_reserve;
	const char *data_dir;
} srv_opts;

/* The refusals servers logged (net_server_config.log). */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_lines[64][512];
static unsigned nlog;

static void capture_log(void *arg, const char *msg)
{
	pthread_mutex_lock(&log_mu);
	if (nlog < 64)
		snprintf(log_lines[nlog], sizeof(log_lines[0]), "%s", msg);
	nlog++;
	pthread_mutex_unlock(&log_mu);
}

static void log_reset(void)
{
	pthread_mutex_lock(&log_mu);
	nlog = 0;
	pthread_mutex_unlock(&log_mu);
}

/* Lines logged since log_reset that contain @a and @b (NULL: any). */
static unsigned log_count(const char *a, const char *b)
{
	unsigned n = 0;

	pthread_mutex_lock(&log_mu);
	for (unsigned i = 0; i < nlog && i < 64; i++)
		if ((!a || strstr(log_lines[i], a)) &&
		    (!b || strstr(log_lines[i], b)))
			n++;
	pthread_mutex_unlock(&log_mu);
	return n;
}

static int server_start(struct env *e, const char *endpoint, uint64_t capacity,
			bool fault)
{
	const char *allowed[] = {client_key.pub, node_key.pub};
	const char *names[] = {"client", NULL};
	struct net_server_config cfg = {
	    .endpoint = endpoint,
	    .public_key = node_key.pub,
	    .secret_key = node_key.sec,
	    .allowed_keys = allowed,
	    .allowed_names = names,
	    .nallowed = 2,
	    .db = e->db,
	    .cf = CF_FRAGS,
	    .capacity = capacity,
	    .workers = 3,
	    .fault_corrupt_get = fault,
	    .peer_max_requests = srv_opts.peer_max_requests,
	    .peer_max_bytes = srv_opts.peer_max_bytes,
	    .max_bytes = srv_opts.max_bytes,
	    .data_dir = srv_opts.data_dir,
	    .disk_reserve = srv_opts.disk_reserve,
	    .log = capture_log,
	    .log_interval_ms = srv_opts.log_interval_ms,
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
	net_client_free(e->c);
	net_server_free(e->srv);
	blk_db_close(e->db);
	nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

struct client_opts {
	const struct keypair *key;
	const char *server_key; /* NULL: node_key's */
	unsigned timeout_ms, attempts, heartbeat_ms, down_after_ms;
	bool no_verify;
	bool log; /* the client's reports to capture_log */
};

static struct net_client *client_new(const char *endpoint,
				     const struct client_opts *o)
{
	static const struct client_opts defaults = {0};
	struct net_peer_config peer = {
	    .endpoint = endpoint, .server_key = node_key.pub, .name = "n0"};
	struct net_client_config cfg;
	struct net_client *c = NULL;

	if (!o)
		o = &defaults;
	if (o->server_key)
		peer.server_key = o->server_key;
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
	    .log = o->log ? capture_log : NULL,
	};
	REQUIRE(net_client_new(&cfg, &c) == 0);
	if (local_srv)
		REQUIRE(net_client_set_local(c, 0, net_server_exec,
					     net_server_release,
					     local_srv) == 0);
	return c;
}

/* Most tests' setup: a server with @capacity bytes on a new database
 * (GET replies corrupted with @fault) and a client of it, which env_down
 * frees. */
static struct net_client *env_open(struct env *e, uint64_t capacity, bool fault)
{
	env_up(e, capacity, fault);
	e->c = client_new(e->endpoint, NULL);
	return e->c;
}

/* Restart the server of env_open on a new endpoint (with @reopen_db, its
 * database too), with a new client. */
static struct net_client *env_restart(struct env *e, uint64_t capacity,
				      bool reopen_db)
{
	net_client_free(e->c);
	net_server_free(e->srv);
	if (reopen_db) {
		blk_db_close(e->db);
		db_open(e);
	}
	REQUIRE(server_start(e, "tcp://127.0.0.1:*", capacity, false) == 0);
	local_srv = local_mode ? e->srv : NULL;
	e->c = client_new(e->endpoint, NULL);
	return e->c;
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
	struct ec_frag_hdr h = {.k = 1,
				.m = 2,
				.index = index,
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

static void count_release(void *data)
{
	(void)data;
	atomic_fetch_add(&released, 1);
}

/* A PUT of @f whose bytes count in `released` once nobody needs them. */
static struct net_op *counted_put(const struct frag *f)
{
	struct net_buf *buf = net_buf_new(f->data, count_release);
	struct net_op *op;

	REQUIRE(buf);
	op = net_op_new_put(f->raw, buf, f->data, f->len);
	net_buf_unref(buf);
	return op;
}

static int put_sync(struct net_client *c, const struct frag *f)
{
	struct net_op *op = counted_put(f);
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

	c = env_open(&e, 1ull << 30, false);

	CHECK(net_client_ping(c, 0, &rtt) == 0);
	CHECK(rtt > 0);
	CHECK(net_client_status(c, 0, &st) == 0);
	CHECK(st.capacity == 1ull << 30 && st.used == 0 && st.fragments == 0);
	CHECK(!st.full);

	/* PUT ten fragments in one batch. */
	rel0 = atomic_load(&released);
	b = net_batch_new(c);
	for (int i = 0; i < 10; i++) {
		frag_make(&f[i], 1000 + (size_t)i * 7919, (uint8_t)(i % 3));
		used += EC_FRAG_HDR_LEN + f[i].len;
		CHECK(net_batch_submit(b, 0, counted_put(&f[i])) == 0);
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

	/* DELETE three (one named twice) and one that is not there, as the
	 * node's own maintenance does (peers may not: test_delete). */
	{
		struct net_fref refs[5] = {f[0].ref, f[1].ref, f[2].ref,
					   f[1].ref, f[0].ref};
		uint8_t map[1];

		refs[4].index = 50;
		CHECK(net_server_delete(e.srv, refs, 5, map) == 0);
		CHECK(net_bitmap_get(map, 0) && net_bitmap_get(map, 1) &&
		      net_bitmap_get(map, 2) && net_bitmap_get(map, 3) &&
		      !net_bitmap_get(map, 4));
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
	c = env_restart(&e, 1ull << 30, true);
	net_server_status(e.srv, &st);
	CHECK(st.fragments == 7 && st.used == used);

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

	c = env_open(&e, 1ull << 30, false);

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
	c = env_open(&e, 3 * 4096, false);
	for (int i = 0; i < 3; i++)
		frag_make(&f[i], 4096, 0);
	CHECK(put_sync(c, &f[0]) == 0);
	CHECK(put_sync(c, &f[1]) == 0);
	CHECK(put_sync(c, &f[2]) == -ENOSPC);
	CHECK(put_sync(c, &f[0]) == 0); /* a re-put needs no room */
	CHECK(net_client_status(c, 0, &st) == 0);
	CHECK(st.fragments == 2 && st.used == 2 * (4096 + EC_FRAG_HDR_LEN));
	CHECK(st.full); /* status says so: it refuses puts */
	{
		uint8_t map[1];

		CHECK(net_client_have(c, 0, &f[2].ref, 1, map) == 0);
		CHECK(!net_bitmap_get(map, 0));
	}
	/* Deleting gives the room back. */
	{
		uint8_t map[1];

		CHECK(net_server_delete(e.srv, &f[1].ref, 1, map) == 0 &&
		      net_bitmap_get(map, 0));
	}
	CHECK(put_sync(c, &f[2]) == 0);
	CHECK(net_client_status(c, 0, &st) == 0 && st.fragments == 2);
	for (int i = 0; i < 3; i++)
		frag_free(&f[i]);
	env_down(&e);
}

/* A client whose key is not in the cluster can neither write nor read. */
/* Wait up to @ms until the client sees peer 0 up (@want) or down; up
 * also means a heartbeat measured its latency. */
static bool wait_state(struct net_client *c, bool want, unsigned ms)
{
	uint64_t end = now_ms() + ms, lat = 0;
	bool up = !want;

	while (now_ms() < end) {
		net_client_peer_state(c, 0, &up, &lat);
		if (up == want && (!want || lat > 0))
			return true;
		sleep_ms(20);
	}
	return false;
}

static void test_unknown_key(void)
{
	struct env e;
	struct net_client *good, *bad;
	struct client_opts o = {.key = &stranger_key,
				.timeout_ms = 300,
				.attempts = 2,
				.heartbeat_ms = 200,
				.down_after_ms = 1500};
	struct frag f, g;
	struct net_status st;
	uint8_t *d = NULL;
	size_t len;
	uint64_t t0 = now_ms();
	int rc;

	env_up(&e, 1ull << 30, false);
	log_reset();
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
		CHECK(wait_state(bad, false, 5000));
	}

	/* Nothing changed on the node, which logged the key once, however
	 * often the stranger's socket came back. */
	net_server_status(e.srv, &st);
	CHECK(st.fragments == 1);
	CHECK(log_count("refused connection from key", "not in the cluster") ==
	      1);
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

/* Until @n lines logged since log_reset contain @a and @b, for up to 10 s. */
static bool wait_logged(unsigned n, const char *a, const char *b)
{
	uint64_t end = now_ms() + 10000;

	while (log_count(a, b) < n && now_ms() < end)
		sleep_ms(20);
	return log_count(a, b) >= n;
}

/* Until @srv has refused @n connections in all, for up to 10 s. */
static bool wait_refused(struct net_server *srv, uint64_t n)
{
	uint64_t end = now_ms() + 10000;
	struct net_server_counters cnt;

	do {
		net_server_counters(srv, &cnt);
		if (cnt.refused[NET_REFUSED_KEY] >= n)
			return true;
		sleep_ms(20);
	} while (now_ms() < end);
	return false;
}

/* A ZMTP 3.0 greeting with the NULL mechanism (no CURVE) on a plain TCP
 * connection to @endpoint ("tcp://127.0.0.1:PORT"), kept open until the
 * node has logged it (a ZeroMQ socket would drop the connection as soon
 * as it sees the node's CURVE greeting, sometimes before the node has
 * read its own). true once logged within 10 s. */
static bool plain_greeting(const char *endpoint)
{
	uint8_t greeting[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0};
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	const char *port = strrchr(endpoint, ':');
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool logged = false;

	REQUIRE(port && fd >= 0);
	sa.sin_port = htons((uint16_t)atoi(port + 1));
	memcpy(greeting + 12, "NULL", 4);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    write(fd, greeting, sizeof(greeting)) == (ssize_t)sizeof(greeting))
		logged = wait_logged(1,
				     "refused connection from a peer without "
				     "CURVE",
				     "does not use CURVE");
	close(fd);
	return logged;
}

/* Handshakes that fail are reported by both ends, once however often the
 * client redials: a client whose key the node refuses, a client that
 * expects another key for the node (another cluster's file), and a
 * connection without CURVE. */
static void test_handshake_reports(void)
{
	struct env e;
	struct client_opts stranger = {.key = &stranger_key, .log = true};
	struct client_opts other = {.server_key = stranger_key.pub,
				    .log = true};
	struct net_server_counters cnt;
	struct net_client *c;

	env_up(&e, 1ull << 30, false);
	log_reset();
	c = client_new(e.endpoint, &stranger);
	CHECK(wait_logged(1, "node n0 (tcp://127.0.0.1:",
			  ") refuses our key (another cluster?)"));
	CHECK(wait_logged(1, "refused connection from key",
			  "not in the "
			  "cluster"));
	CHECK(log_count("node n0", "refuses our key") == 1);
	net_client_free(c);

	log_reset();
	net_server_counters(e.srv, &cnt);
	c = client_new(e.endpoint, &other);
	CHECK(wait_logged(1, "node n0", "ends our CURVE handshakes"));
	CHECK(wait_logged(1,
			  "refused connection from a peer whose CURVE "
			  "handshake failed",
			  "another key for this node"));
	CHECK(wait_refused(e.srv, cnt.refused[NET_REFUSED_KEY] + 3));
	CHECK(log_count("node n0", "ends our CURVE handshakes") == 1);
	CHECK(log_count("a peer whose CURVE handshake failed", NULL) == 1);
	net_client_free(c);

	log_reset();
	CHECK(plain_greeting(e.endpoint));
	env_down(&e);
}

/* Receive one reply on a raw DEALER; returns its header's status, or 1 if
 * nothing came within 10 s, or 2 if it did not decode as a reply. */
static int raw_reply(void *s, uint64_t *id)
{
	zmq_pollitem_t pi = {.socket = s, .events = ZMQ_POLLIN};
	struct net_frame f[NET_MAX_FRAMES];
	zmq_msg_t m[NET_MAX_FRAMES + 1];
	struct net_rep r;
	int n = 0, more = 1, rc = 2;

	if (zmq_poll(&pi, 1, 10000) <= 0)
		return 1;
	while (more) {
		zmq_msg_t *dst = &m[n < NET_MAX_FRAMES ? n : NET_MAX_FRAMES];

		zmq_msg_init(dst);
		if (zmq_msg_recv(dst, s, 0) < 0) {
			zmq_msg_close(dst);
			break;
		}
		more = zmq_msg_more(dst);
		if (n < NET_MAX_FRAMES) {
			f[n] = (struct net_frame){zmq_msg_data(dst),
						  zmq_msg_size(dst)};
			n++;
		} else {
			zmq_msg_close(dst);
			n = NET_MAX_FRAMES + 1;
		}
	}
	if (n <= NET_MAX_FRAMES && net_rep_decode(f, (size_t)n, &r) == 0) {
		*id = r.hdr.id;
		rc = r.hdr.status;
	}
	for (int i = 0; i < n && i < NET_MAX_FRAMES; i++)
		zmq_msg_close(&m[i]);
	return rc;
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
	log_reset();
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
	/* Unknown ops: the id comes back. */
	net_hdr_encode(&(struct net_hdr){.op = 77, .id = 1234}, h);
	zmq_send(s, h, sizeof(h), 0);
	CHECK(raw_reply(s, &id) == -EOPNOTSUPP && id == 1234);
	/* HEAD_GET without its fsid; and with it, to a node that keeps no
	 * heads (this server has no heads family). */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_HEAD_GET, .id = 5}, h);
	zmq_send(s, h, sizeof(h), 0);
	CHECK(raw_reply(s, &id) == -EINVAL && id == 5);
	zmq_send(s, h, sizeof(h), ZMQ_SNDMORE);
	zmq_send(s, junk, NET_FSID_LEN, 0);
	CHECK(raw_reply(s, &id) == -EOPNOTSUPP && id == 5);
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_HEAD_CAS, .id = 9}, h);
	zmq_send(s, h, sizeof(h), ZMQ_SNDMORE);
	zmq_send(s, junk, 64, 0);
	CHECK(raw_reply(s, &id) == -EOPNOTSUPP && id == 9);
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
	CHECK(raw_reply(s, &id) == -EMSGSIZE && id == 8);
	/* HAVE claiming more frefs than it carries. */
	net_hdr_encode(
	    &(struct net_hdr){.op = NET_OP_HAVE, .id = 9, .count = 1000000}, h);
	zmq_send(s, h, sizeof(h), ZMQ_SNDMORE);
	zmq_send(s, junk, NET_FREF_LEN, 0);
	CHECK(raw_reply(s, &id) == -EMSGSIZE && id == 9);
	/* A reply sent as a request. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_PING,
					 .id = 10,
					 .flags = NET_F_REPLY},
		       h);
	zmq_send(s, h, sizeof(h), 0);
	CHECK(raw_reply(s, &id) == -EPROTO);
	/* A valid PING on the same connection still works. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_PING, .id = 11}, h);
	zmq_send(s, h, sizeof(h), 0);
	CHECK(raw_reply(s, &id) == 0 && id == 11);
	/* Each kind of refusal logged once. */
	CHECK(log_count("refused malformed request from node client", NULL) ==
	      1);
	CHECK(log_count("refused oversized message from node client", NULL) ==
	      1);
	zmq_close(s);
	zmq_ctx_term(ctx);

	/* And the server still serves others. */
	c = client_new(e.endpoint, NULL);
	CHECK(net_client_ping(c, 0, NULL) == 0);
	net_client_free(c);
	env_down(&e);
}

/* A DEALER with the client's key, connected to @endpoint. */
static void *raw_dealer(void *ctx, const char *endpoint)
{
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	int zero = 0;

	REQUIRE(s);
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, node_key.pub, NET_KEY_Z85_LEN);
	zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, client_key.pub, NET_KEY_Z85_LEN);
	zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, client_key.sec, NET_KEY_Z85_LEN);
	REQUIRE(zmq_connect(s, endpoint) == 0);
	return s;
}

/* Fragment @index of an ec:2+1 block @cid, of @len random bytes (the node
 * cannot check an EC fragment against its CID, only its checksum). */
static void frag_make_ec(struct frag *f, const struct blk_cid *cid, size_t len,
			 uint8_t index)
{
	struct ec_frag_hdr h = {.k = 2,
				.m = 1,
				.index = index,
				.block_len = (uint32_t)(2 * len),
				.frag_len = (uint32_t)len,
				.cid = *cid};

	f->data = malloc(len);
	REQUIRE(f->data);
	for (size_t i = 0; i < len; i++)
		f->data[i] = (uint8_t)rnd();
	f->len = len;
	ec_frag_hdr_seal(&h, f->data, f->raw);
	f->ref = (struct net_fref){.cid = *cid, .index = index};
}

static bool got_bytes(struct net_client *c, const struct frag *f)
{
	uint8_t *d = NULL;
	size_t len = 0;
	bool same = get_sync(c, &f->ref, &d, &len) == 0 && len == f->len &&
		    memcmp(d, f->data, len) == 0;

	free(d);
	return same;
}

/* Stored fragments are immutable: other bytes under a stored (CID, index)
 * are refused, the same bytes acknowledged, a stored fragment that fails
 * its checksum replaced; a whole copy must be its CID's bytes; refusals
 * are logged once per peer and kind per interval, with a count. */
static void test_immutable(void)
{
	struct env e;
	struct net_client *c;
	struct net_server_counters cnt;
	struct net_status st;
	struct frag a, b, copy, fake;
	struct blk_cid cid;
	uint8_t key[NET_SERVER_KEY_LEN], *val;
	size_t vlen;

	srv_opts.log_interval_ms = 300;
	c = env_open(&e, 1ull << 30, false);
	log_reset();
	memset(&cid, 0x5a, sizeof(cid));
	cid.codec = BLK_CODEC_RAW;
	cid.hash = BLK_HASH_SHA2_256;
	frag_make_ec(&a, &cid, 3000, 0);
	frag_make_ec(&b, &cid, 3000, 0);

	CHECK(put_sync(c, &a) == 0);
	/* Other bytes with a valid checksum: refused, the stored ones kept. */
	CHECK(put_sync(c, &b) == -EEXIST);
	CHECK(got_bytes(c, &a));
	/* The same bytes again: a retry, acknowledged, nothing changes. */
	CHECK(put_sync(c, &a) == 0);
	CHECK(net_client_status(c, 0, &st) == 0 && st.fragments == 1 &&
	      st.used == EC_FRAG_HDR_LEN + 3000);
	/* A flood of overwrites: every one refused, one line logged. */
	for (int i = 0; i < 50; i++)
		CHECK(put_sync(c, &b) == -EEXIST);
	CHECK(got_bytes(c, &a));
	CHECK(log_count(local_mode ? "refused put from the local client"
				   : "refused put from node client",
			"immutable") == 1);
	net_server_counters(e.srv, &cnt);
	CHECK(cnt.refused[NET_REFUSED_OVERWRITE] == 51);
	/* After the interval, the next one is logged with the count. */
	sleep_ms(350);
	CHECK(put_sync(c, &b) == -EEXIST);
	CHECK(log_count("immutable", "and 50 more") == 1);

	/* A stored fragment that fails its own checksum may be replaced:
	 * that is repair. */
	net_server_frag_key(&a.ref, key);
	REQUIRE(blk_db_get(e.db, CF_FRAGS, key, sizeof(key), (void **)&val,
			   &vlen) == 0);
	val[EC_FRAG_HDR_LEN + 10] ^= 1;
	REQUIRE(blk_db_put(e.db, CF_FRAGS, key, sizeof(key), val, vlen) == 0);
	free(val);
	CHECK(put_sync(c, &b) == 0);
	CHECK(got_bytes(c, &b));
	net_server_counters(e.srv, &cnt);
	CHECK(cnt.repaired == 1);
	CHECK(put_sync(c, &a) == -EEXIST);
	CHECK(net_client_status(c, 0, &st) == 0 && st.fragments == 1 &&
	      st.used == EC_FRAG_HDR_LEN + 3000);

	/* A whole copy (K = 1) whose bytes are not its CID's, checksum
	 * sealed right: refused, before and after the real one is stored. */
	frag_make(&copy, 5000, 1);
	fake.len = copy.len;
	fake.data = malloc(fake.len);
	REQUIRE(fake.data);
	memcpy(fake.data, copy.data, fake.len);
	fake.data[77] ^= 0x20;
	{
		struct ec_frag_hdr h;

		REQUIRE(ec_frag_hdr_parse(copy.raw, EC_FRAG_HDR_LEN, &h) == 0);
		ec_frag_hdr_seal(&h, fake.data, fake.raw);
		fake.ref = copy.ref;
	}
	CHECK(put_sync(c, &fake) == -EBADMSG);
	CHECK(put_sync(c, &copy) == 0);
	CHECK(put_sync(c, &fake) == -EBADMSG);
	CHECK(got_bytes(c, &copy));
	CHECK(log_count("refused put", "not its CID") == 1);
	net_server_counters(e.srv, &cnt);
	CHECK(cnt.refused[NET_REFUSED_PUT] == 2);

	frag_free(&a);
	frag_free(&b);
	frag_free(&copy);
	frag_free(&fake);
	env_down(&e);
	srv_opts.log_interval_ms = 0;
}

/* No peer may delete: DELETE from the wire is refused and logged, the
 * fragments stay; the node's own maintenance can. */
static void test_delete(void)
{
	struct env e;
	struct net_client *c;
	struct frag f[3];
	struct net_fref refs[3];
	struct net_status st;
	struct net_op *op;
	uint8_t map[1];

	c = env_open(&e, 1ull << 30, false);
	log_reset();
	for (int i = 0; i < 3; i++) {
		frag_make(&f[i], 2000, (uint8_t)i);
		refs[i] = f[i].ref;
		CHECK(put_sync(c, &f[i]) == 0);
	}
	for (int i = 0; i < 20; i++) {
		op = net_op_new_delete(refs, 3);
		CHECK(net_client_call(c, 0, op) == -EPERM);
		net_op_free(op);
	}
	CHECK(net_client_status(c, 0, &st) == 0 && st.fragments == 3);
	for (int i = 0; i < 3; i++)
		CHECK(got_bytes(c, &f[i]));
	CHECK(log_count("refused delete from", "maintenance") == 1);
	/* The local path: the same refusal. */
	local_srv = e.srv;
	{
		struct net_client *l = client_new(e.endpoint, NULL);

		op = net_op_new_delete(refs, 3);
		CHECK(net_client_call(l, 0, op) == -EPERM);
		net_op_free(op);
		net_client_free(l);
	}
	local_srv = local_mode ? e.srv : NULL;
	CHECK(net_server_delete(e.srv, refs, 2, map) == 0 &&
	      net_bitmap_get(map, 0) && net_bitmap_get(map, 1));
	CHECK(net_client_status(c, 0, &st) == 0 && st.fragments == 1);
	for (int i = 0; i < 3; i++)
		frag_free(&f[i]);
	env_down(&e);
}

/* A full node answers -ENOSPC, whether its capacity is reached or its
 * disk short of the reserve, logs it, and still acknowledges a re-put of
 * what it holds. */
static void test_full(void)
{
	struct env e;
	struct net_client *c;
	struct frag f, g;
	struct net_server_counters cnt;

	c = env_open(&e, 1ull << 30, false);
	frag_make(&f, 4000, 0);
	frag_make(&g, 4000, 0);
	CHECK(put_sync(c, &f) == 0);

	/* The disk under the database has less free than the reserve. */
	srv_opts.data_dir = e.dir;
	srv_opts.disk_reserve = 1ull << 62;
	c = env_restart(&e, 1ull << 30, false);
	log_reset();
	CHECK(put_sync(c, &g) == -ENOSPC);
	CHECK(put_sync(c, &g) == -ENOSPC);
	CHECK(put_sync(c, &f) == 0); /* a retry needs no room */
	CHECK(got_bytes(c, &f));
	CHECK(log_count(local_mode ? "refused put from the local client"
				   : "refused put from node client",
			"disk short") == 1);
	net_server_counters(e.srv, &cnt);
	CHECK(cnt.refused[NET_REFUSED_FULL] == 2);
	srv_opts.data_dir = NULL;
	srv_opts.disk_reserve = 0;
	frag_free(&f);
	frag_free(&g);
	env_down(&e);
}

static uint64_t rss_peak_kib(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long v = 0;

	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "VmHWM: %llu kB", &v) == 1)
			break;
	fclose(fp);
	return v;
}

static void rss_peak_reset(void)
{
	FILE *fp = fopen("/proc/self/clear_refs", "w");

	if (fp) {
		fputs("5", fp);
		fclose(fp);
	}
}

static void no_free(void *data, void *hint)
{
}

/* Send a message of @n frames from @frames (borrowed, zero-copy). */
static void raw_send(void *s, const struct net_frame *frames, int n)
{
	for (int i = 0; i < n; i++) {
		zmq_msg_t m;

		zmq_msg_init_data(&m, (void *)frames[i].data, frames[i].len,
				  no_free, NULL);
		if (zmq_msg_send(&m, s, i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
			zmq_msg_close(&m);
	}
}

/* Whole messages are bounded: too many frames or too many bytes get
 * -EMSGSIZE, and the node keeps none of them; each peer's requests in
 * flight are bounded, beyond that -EBUSY at once, and the client backs off
 * and gets its ops through. */
static void test_bounds(void)
{
	struct env e;
	void *ctx = zmq_ctx_new(), *s;
	struct net_server_counters cnt;
	const size_t big = 40u << 20;
	uint8_t h[NET_HDR_LEN], fh[EC_FRAG_HDR_LEN], *buf;
	uint64_t id = 0, before;
	unsigned ok = 0, busy = 0, other = 0;
	int rc;

	buf = calloc(1, big);
	REQUIRE(ctx && buf);
	srv_opts.peer_max_requests = 2;
	srv_opts.peer_max_bytes = 8u << 20;
	env_up(&e, 1ull << 30, false);
	s = raw_dealer(ctx, e.endpoint);
	log_reset();

	/* Twenty frames. */
	net_hdr_encode(&(struct net_hdr){.op = NET_OP_PING, .id = 21}, h);
	{
		struct net_frame f[20] = {{h, sizeof(h)}};

		for (int i = 1; i < 20; i++)
			f[i] = (struct net_frame){buf, 1000};
		raw_send(s, f, 20);
		CHECK(raw_reply(s, &id) == -EMSGSIZE && id == 21);
	}
	/* A PUT of four frames, 80 MiB, each frame within ZMQ_MAXMSGSIZE:
	 * eight of them, while the node's memory stays bounded. */
	{
		struct ec_frag_hdr fr = {.k = 2,
					 .m = 1,
					 .index = 0,
					 .block_len = (uint32_t)(2 * big),
					 .frag_len = (uint32_t)big};
		struct net_frame f[4] = {
		    {h, sizeof(h)}, {fh, sizeof(fh)}, {buf, big}, {buf, big}};

		memset(&fr.cid, 7, sizeof(fr.cid));
		fr.cid.hash = BLK_HASH_SHA2_256;
		ec_frag_hdr_seal(&fr, buf, fh);
		net_hdr_encode(&(struct net_hdr){.op = NET_OP_PUT, .id = 22},
			       h);
		rss_peak_reset();
		before = rss_peak_kib();
		for (int i = 0; i < 8; i++) {
			raw_send(s, f, 4);
			rc = raw_reply(s, &id);
			CHECK(rc == -EMSGSIZE && id == 22);
		}
		printf("bounds: peak RSS %llu MiB above the start while 8 "
		       "messages of %zu MiB were refused\n",
		       (unsigned long long)(rss_peak_kib() - before) / 1024,
		       (2 * big + 96) >> 20);
		/* ZeroMQ gathers a message before the node sees it (one at
		 * a time here): far below the 640 MiB sent. */
		CHECK(UNDER_ASAN || rss_peak_kib() - before < 400 * 1024);
	}
	CHECK(log_count("refused oversized message", "frames") == 1);

	/* Sixty-four HAVEs of 65536 frefs (2.4 MB each) sent at once: at
	 * most 2 and 8 MiB of them with the workers, the rest -EBUSY. */
	{
		size_t len = (size_t)NET_MAX_REFS * NET_FREF_LEN;
		uint8_t *refs = malloc(len);
		struct net_frame f[2] = {{h, sizeof(h)}, {NULL, len}};

		REQUIRE(refs);
		for (size_t i = 0; i < NET_MAX_REFS; i++) {
			struct net_fref r = {.index = (uint8_t)(i % 8)};

			for (int j = 0; j < BLK_DIGEST_LEN; j += 8) {
				uint64_t v = rnd();

				memcpy(r.cid.digest + j, &v, 8);
			}
			net_fref_encode(&r, refs + i * NET_FREF_LEN);
		}
		static uint8_t hh[64][NET_HDR_LEN];

		f[1].data = refs;
		for (int i = 0; i < 64; i++) {
			net_hdr_encode(
			    &(struct net_hdr){.op = NET_OP_HAVE,
					      .id = 100 + (uint64_t)i,
					      .count = NET_MAX_REFS},
			    hh[i]);
			f[0].data = hh[i];
			raw_send(s, f, 2);
		}
		for (int i = 0; i < 64; i++) {
			rc = raw_reply(s, &id);
			ok += rc == 0;
			busy += rc == -EBUSY;
			other += rc != 0 && rc != -EBUSY;
		}
		printf("bounds: 64 HAVEs of 2.4 MB at once: %u answered, %u "
		       "busy\n",
		       ok, busy);
		CHECK(ok >= 1 && busy >= 1 && other == 0 && ok + busy == 64);
		net_server_counters(e.srv, &cnt);
		CHECK(cnt.held_bytes_peak <= (8u << 20));
		CHECK(cnt.refused[NET_REFUSED_BUSY] == busy);
		CHECK(log_count("refused request from node client", "busy") ==
		      1);
		free(refs);
	}
	zmq_close(s);

	/* A client backs off on -EBUSY and gets every op through. */
	{
		struct net_client *c = client_new(e.endpoint, NULL);
		struct net_batch *b = net_batch_new(c);
		struct net_fref r[4096];
		unsigned done = 0;

		memset(r, 0, sizeof(r));
		for (int i = 0; i < 4096; i++) {
			r[i].cid.digest[0] = (uint8_t)i;
			r[i].cid.digest[1] = (uint8_t)(i >> 8);
		}
		for (int i = 0; i < 40; i++)
			CHECK(net_batch_submit(b, 0,
					       net_op_new_have(r, 4096)) == 0);
		CHECK(net_batch_wait(b, 60000) == 0);
		for (size_t i = 0; i < net_batch_count(b); i++)
			done += net_op_result(net_batch_op(b, i))->status == 0;
		CHECK(done == 40);
		net_batch_free(b);
		net_client_free(c);
	}
	zmq_ctx_term(ctx);
	free(buf);
	srv_opts.peer_max_requests = 0;
	srv_opts.peer_max_bytes = 0;
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
	uint8_t(*raw)[EC_FRAG_HDR_LEN] = malloc((size_t)p->count * 64);

	REQUIRE(b && data && raw);
	for (int i = 0; i < p->count; i++) {
		uint8_t *d = data + (size_t)i * 4096;
		struct ec_frag_hdr h = {.k = 1,
					.m = 0,
					.index = 0,
					.block_len = 4096,
					.frag_len = 4096};

		memset(d, 0, 4096);
		memcpy(d, &p->nth, sizeof(p->nth));
		memcpy(d + 8, &i, sizeof(i));
		blk_cid_compute(&h.cid, BLK_CODEC_RAW, d, 4096);
		ec_frag_hdr_seal(&h, d, raw[i]);
		net_batch_submit(b, 0, net_op_new_put(raw[i], NULL, d, 4096));
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

	c = env_open(&e, 1ull << 30, false);
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
	env_down(&e);
}

static void test_down_up(void)
{
	struct env e;
	struct net_client *c;
	struct client_opts o = {.timeout_ms = 500,
				.attempts = 2,
				.heartbeat_ms = 200,
				.down_after_ms = 1000};
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
	CHECK(wait_state(c, true, 5000));
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

#ifdef BFS_FAULT_INJECTION
static void test_fault_switch(void)
{
	struct net_client *c, *raw;
	struct client_opts o = {.no_verify = true};
	struct env e;
	struct frag f;
	uint8_t *d = NULL;
	size_t len = 0, diff = 0;

	/* The names BLOCKFS_FAULT_CORRUPT_GET takes (the command reads it
	 * and sets the config's field). */
	CHECK(net_fault_parse("1") == NET_FAULT_FLIP);
	CHECK(net_fault_parse("flip") == NET_FAULT_FLIP);
	CHECK(net_fault_parse("forge") == NET_FAULT_FORGE);
	CHECK(net_fault_parse("lie") == NET_FAULT_LIE);
	CHECK(net_fault_parse("0") == NET_FAULT_NONE);
	CHECK(net_fault_parse(NULL) == NET_FAULT_NONE);

	/* Switched on through the config. */
	c = env_open(&e, 1ull << 30, net_fault_parse("1"));
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
	env_down(&e);

	/* Off by default. */
	c = env_open(&e, 1ull << 30, false);
	CHECK(put_sync(c, &f) == 0);
	d = NULL;
	CHECK(get_sync(c, &f.ref, &d, &len) == 0);
	free(d);
	env_down(&e);
	frag_free(&f);
}

#else
/* Without -Dfault_injection=true the switch is not there: the server
 * reads no environment, and the config field is refused. */
static void test_fault_switch(void)
{
	struct net_client *c;
	struct env e;
	struct frag f;
	uint8_t *d = NULL;
	size_t len = 0;

	setenv("BLOCKFS_FAULT_CORRUPT_GET", "1", 1);
	env_up(&e, 1ull << 30, false);
	unsetenv("BLOCKFS_FAULT_CORRUPT_GET");
	c = client_new(e.endpoint, NULL);
	frag_make(&f, 10000, 0);
	CHECK(put_sync(c, &f) == 0);
	CHECK(get_sync(c, &f.ref, &d, &len) == 0);
	CHECK(d && len == f.len && !memcmp(d, f.data, len));
	free(d);
	{
		struct env e2 = e;

		CHECK(server_start(&e2, "tcp://127.0.0.1:*", 1ull << 30,
				   true) == -EOPNOTSUPP);
	}
	net_client_free(c);
	env_down(&e);
	frag_free(&f);
}
#endif

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

	c = env_open(&e, 1ull << 40, false);
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
		struct ec_frag_hdr h = {.k = 1,
					.m = 0,
					.index = 0,
					.block_len = MiB,
					.frag_len = MiB};

		/* A real writer has the CID already; a cheap stand-in. */
		memcpy(h.cid.digest, d, BLK_DIGEST_LEN);
		h.cid.codec = BLK_CODEC_RAW;
		ec_frag_hdr_seal(&h, d, raw);
		net_batch_submit(b, 0, net_op_new_put(raw, NULL, d, MiB));
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
		test_handshake_reports();
		test_concurrent();
		test_down_up();
		test_fault_switch();
		test_immutable();
		test_delete();
		test_full();
		test_bounds();
		/* The same operations through the local-peer path. */
		local_mode = true;
		test_ops();
		test_checksums();
		test_capacity();
		test_concurrent();
		test_fault_switch();
		test_immutable();
		test_delete();
		test_full();
		local_mode = false;
	}
	if (getenv("NET_BENCH"))
		bench_put();
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
