/* Tests of the heads on a storage node (net/server/heads.c through
 * net/server/server.c) and the client's head ops (net/client), over TCP
 * loopback with CURVE as test-net.c does: HEAD_GET of nothing, a first
 * head accepted and read back, each refusal of HEAD_CAS with its status
 * and its line in the log (malformed, unsigned, forged, another
 * filesystem, stale, replayed, skipped, wrong parent), the writer lease
 * (with lease times in the past and the future: no waiting), the heads
 * kept across a restart, a node without a filesystem, the same CAS
 * through the local-peer path, and a node started from a cluster file
 * (cl_cluster_server_new) with and without its [filesystem] section. */

#include "blocks/dag/head.h"
#include "blocks/store/fragstore.h"
#include "net/client/client.h"
#include "net/cluster/cluster-net.h"
#include "net/cluster/config.h"
#include "net/server/heads.h"
#include "net/server/server.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net/wire/keys.h"
#include "tests/unit/check.h"

/* The families registered, in this order. */
enum { CF_FRAGS = 0, CF_HEADS = 1 };

struct keypair {
	char pub[NET_KEY_Z85_LEN + 1], sec[NET_KEY_Z85_LEN + 1];
};
static struct keypair node_key, client_key;

/* The filesystem: its id and signing key; another key that is not it. */
static uint8_t fs_id[16], fs_pk[32], fs_sk[64], other_pk[32], other_sk[64];
/* Two writers (their CURVE public keys, raw). */
static uint8_t writer_a[32], writer_b[32];

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the log ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_lines[64][512];
static unsigned nlog;

static void capture_log(void *arg, const char *msg)
{
	(void)arg;
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

/* ---- the node ---- */

struct env {
	char dir[64];
	struct blk_db *db;
	struct net_server *srv;
	struct net_client *c;
	bool with_fs; /* the server knows the filesystem */
	bool local;   /* the client reaches it by function call */
};

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void db_open(struct env *e)
{
	char path[96], err[256] = "";
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};

	REQUIRE(blk_fragstore_register(&reg) == CF_FRAGS);
	REQUIRE(net_heads_register(&reg) == CF_HEADS);
	snprintf(path, sizeof(path), "%s/db", e->dir);
	REQUIRE(blk_db_open(path, &o, &e->db, err, sizeof(err)) == 0);
}

/* The server on e->db and a client of it. */
static void node_start(struct env *e)
{
	const char *allowed[] = {client_key.pub};
	const char *names[] = {"client"};
	struct net_server_config sc = {
	    .endpoint = "tcp://127.0.0.1:*",
	    .public_key = node_key.pub,
	    .secret_key = node_key.sec,
	    .allowed_keys = allowed,
	    .allowed_names = names,
	    .nallowed = 1,
	    .db = e->db,
	    .cf = CF_FRAGS,
	    .has_heads = true,
	    .heads_cf = CF_HEADS,
	    .fs_id = e->with_fs ? fs_id : NULL,
	    .fs_public_key = e->with_fs ? fs_pk : NULL,
	    .capacity = 1ull << 30,
	    .workers = 2,
	    .log = capture_log,
	    .log_interval_ms = 1,
	};
	REQUIRE(net_server_new(&sc, &e->srv) == 0);

	struct net_peer_config peer = {.endpoint = net_server_endpoint(e->srv),
				       .server_key = node_key.pub,
				       .name = "n0"};
	struct net_client_config cc = {
	    .public_key = client_key.pub,
	    .secret_key = client_key.sec,
	    .peers = &peer,
	    .npeers = 1,
	};
	REQUIRE(net_client_new(&cc, &e->c) == 0);
	if (e->local)
		REQUIRE(net_client_set_local(e->c, 0, net_server_exec,
					     net_server_release, e->srv) == 0);
}

static void node_stop(struct env *e)
{
	net_client_free(e->c);
	net_server_free(e->srv);
	e->c = NULL;
	e->srv = NULL;
}

static void env_up(struct env *e, bool with_fs, bool local)
{
	memset(e, 0, sizeof(*e));
	e->with_fs = with_fs;
	e->local = local;
	strcpy(e->dir, "/tmp/test-heads.XXXXXX");
	REQUIRE(mkdtemp(e->dir));
	db_open(e);
	node_start(e);
	log_reset();
}

static void env_down(struct env *e)
{
	node_stop(e);
	blk_db_close(e->db);
	nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- heads ---- */

struct rec {
	uint8_t b[BLK_HEAD_MAX_BYTES];
	size_t len;
};

/* Head @seq by @writer with lease until @lease_ns, after @parent (NULL:
 * none), signed with @sk, of filesystem @fs. */
static struct rec head_make(const uint8_t *fs, uint64_t seq,
			    const struct rec *parent, const uint8_t *writer,
			    uint64_t lease_ns, const uint8_t *sk)
{
	struct blk_head h = {
	    .seq = seq, .time_ns = now_ns(), .lease_ns = lease_ns};
	struct rec r = {{0}, 0};
	uint8_t any[8];

	memcpy(h.fs, fs, sizeof(h.fs));
	memcpy(h.writer, writer, sizeof(h.writer));
	memcpy(any, &seq, sizeof(any));
	blk_cid_compute(&h.root, BLK_CODEC_DAG_PB, any, sizeof(any));
	blk_cid_compute(&h.attrs, BLK_CODEC_DAG_CBOR, any, sizeof(any));
	if (parent) {
		h.has_parent = true;
		blk_head_cid(parent->b, parent->len, &h.parent);
	}
	REQUIRE(blk_head_sign(&h, sk) == 0);
	REQUIRE(blk_head_encode(&h, r.b, sizeof(r.b), &r.len) == 0);
	return r;
}

/* A head of the filesystem, signed with its key; lease in an hour. */
static struct rec head_ok(uint64_t seq, const struct rec *parent,
			  const uint8_t *writer)
{
	return head_make(fs_id, seq, parent, writer,
			 now_ns() + 3600ull * 1000000000u, fs_sk);
}

/* @r without its "sig" entry: a well-formed unsigned head (the map loses
 * one entry: its first byte, 0xa0 | count, goes down by one). */
static struct rec unsign(const struct rec *r)
{
	static const uint8_t sig_key[] = {0x63, 's', 'i', 'g', 0x58, 64};
	struct rec u = *r;

	for (size_t i = 1; i + sizeof(sig_key) + 64 <= u.len; i++) {
		if (memcmp(u.b + i, sig_key, sizeof(sig_key)) != 0)
			continue;
		size_t cut = sizeof(sig_key) + 64;

		memmove(u.b + i, u.b + i + cut, u.len - i - cut);
		u.len -= cut;
		u.b[0]--;
		return u;
	}
	REQUIRE(!"no sig entry found");
	return u;
}

static int cas(struct env *e, uint64_t expect, const struct rec *r)
{
	return net_client_head_cas(e->c, 0, expect, r->b, r->len);
}

/* HEAD_GET @seq is @want (NULL: -ENOENT). */
static bool get_is(struct env *e, uint64_t seq, const struct rec *want)
{
	uint8_t buf[NET_HEAD_MAX_BYTES];
	size_t len = 99;
	int rc = net_client_head_get(e->c, 0, fs_id, seq, buf, &len);

	if (!want)
		return rc == -ENOENT && len == 0;
	return rc == 0 && len == want->len && memcmp(buf, want->b, len) == 0;
}

/* A refused CAS: its status, and one line in the log with @why. */
static bool refused(struct env *e, uint64_t expect, const struct rec *r,
		    int status, const char *why)
{
	struct net_server_counters c0, c1;
	int rc;

	sleep_ms(2); /* past the refusal log's 1 ms interval */
	log_reset();
	net_server_counters(e->srv, &c0);
	rc = cas(e, expect, r);
	net_server_counters(e->srv, &c1);
	if (rc != status ||
	    c1.refused[NET_REFUSED_HEAD] != c0.refused[NET_REFUSED_HEAD] + 1) {
		fprintf(stderr, "  cas: %d (want %d), refusals %llu -> %llu\n",
			rc, status,
			(unsigned long long)c0.refused[NET_REFUSED_HEAD],
			(unsigned long long)c1.refused[NET_REFUSED_HEAD]);
		return false;
	}
	if (log_count("refused head from", why) != 1) {
		fprintf(stderr, "  no log line with '%s' (%u lines: %s)\n", why,
			nlog, log_lines[0]);
		return false;
	}
	return true;
}

/* ---- tests ---- */

/* Nothing stored: HEAD_GET of the latest and of a seq are -ENOENT. */
static void test_empty(bool local)
{
	struct env e;
	uint8_t other[16] = {1};
	uint8_t buf[NET_HEAD_MAX_BYTES];
	size_t len;

	env_up(&e, true, local);
	CHECK(get_is(&e, 0, NULL));
	CHECK(get_is(&e, 1, NULL));
	CHECK(net_client_head_get(e.c, 0, other, 0, buf, &len) == -ENOENT);
	env_down(&e);
}

/* A chain of heads, each refusal in between, and a restart. */
static void test_chain(bool local)
{
	struct env e;
	struct rec h1, h2, h3, bad;

	env_up(&e, true, local);
	h1 = head_ok(1, NULL, writer_a);
	/* refusals of a first head */
	bad = unsign(&h1);
	{
		struct blk_head d;

		CHECK(blk_head_decode(&d, bad.b, bad.len) == -ENOKEY);
	}
	CHECK(refused(&e, 0, &bad, -EBADMSG, "unsigned head"));
	bad = h1;
	bad.b[bad.len / 2] ^= 0xff;
	bad.len -= 3;
	CHECK(refused(&e, 0, &bad, -EBADMSG, "malformed head"));
	bad = head_make(fs_id, 1, NULL, writer_a, now_ns(), other_sk);
	CHECK(refused(&e, 0, &bad, -EBADMSG, "forged head"));
	{
		uint8_t fs2[16];

		memcpy(fs2, fs_id, 16);
		fs2[15] ^= 1;
		bad = head_make(fs2, 1, NULL, writer_a, now_ns(), fs_sk);
		CHECK(refused(&e, 0, &bad, -ENOENT, "another filesystem"));
	}
	bad = head_ok(2, &h1, writer_a);
	CHECK(refused(&e, 0, &bad, -ESTALE, "skipped head"));
	CHECK(refused(&e, 1, &h1, -ESTALE, "stale head"));
	CHECK(get_is(&e, 0, NULL));

	/* the first head, read back by latest and by seq */
	CHECK(cas(&e, 0, &h1) == 0);
	CHECK(get_is(&e, 0, &h1));
	CHECK(get_is(&e, 1, &h1));
	CHECK(get_is(&e, 2, NULL));

	/* refusals of a second head */
	CHECK(refused(&e, 1, &h1, -ESTALE, "replayed head"));
	CHECK(refused(&e, 0, &h1, -ESTALE, "stale head"));
	h2 = head_ok(2, &h1, writer_a);
	CHECK(refused(&e, 0, &h2, -ESTALE, "stale head"));
	CHECK(refused(&e, 2, &h2, -ESTALE, "stale head"));
	bad = head_ok(2, &h2, writer_a); /* its parent is not seq 1 */
	CHECK(refused(&e, 1, &bad, -EINVAL, "wrong parent"));
	bad = head_ok(3, &h2, writer_a);
	CHECK(refused(&e, 1, &bad, -ESTALE, "skipped head"));
	bad = head_make(fs_id, 2, &h1, writer_a, now_ns(), other_sk);
	CHECK(refused(&e, 1, &bad, -EBADMSG, "forged head"));

	CHECK(cas(&e, 1, &h2) == 0);
	CHECK(get_is(&e, 0, &h2));
	CHECK(get_is(&e, 1, &h1));
	CHECK(get_is(&e, 2, &h2));
	/* replays: the same head again, an older one */
	CHECK(refused(&e, 2, &h2, -ESTALE, "replayed head"));
	CHECK(refused(&e, 2, &h1, -ESTALE, "replayed head"));

	/* a restart of the node and its database keeps every head */
	node_stop(&e);
	blk_db_close(e.db);
	db_open(&e);
	node_start(&e);
	CHECK(get_is(&e, 0, &h2));
	CHECK(get_is(&e, 1, &h1));
	CHECK(get_is(&e, 2, &h2));
	h3 = head_ok(3, &h2, writer_a);
	CHECK(refused(&e, 1, &h3, -ESTALE, "stale head"));
	CHECK(cas(&e, 2, &h3) == 0);
	CHECK(get_is(&e, 0, &h3));
	env_down(&e);
}

/* Another writer: refused while the current head's lease holds, accepted
 * once it has expired; the same writer is never held back by its own. */
static void test_lease(bool local)
{
	struct env e;
	struct rec h1, h2, h3, h4, b2;
	uint64_t hour = 3600ull * 1000000000u;

	env_up(&e, true, local);
	h1 = head_make(fs_id, 1, NULL, writer_a, now_ns() + hour, fs_sk);
	CHECK(cas(&e, 0, &h1) == 0);
	b2 = head_make(fs_id, 2, &h1, writer_b, now_ns() + hour, fs_sk);
	CHECK(refused(&e, 1, &b2, -EACCES, "lease held by"));
	CHECK(get_is(&e, 0, &h1));
	/* A renews, then lets its lease lapse (a lease in the past) */
	h2 = head_make(fs_id, 2, &h1, writer_a, now_ns() - hour, fs_sk);
	CHECK(cas(&e, 1, &h2) == 0);
	/* B takes over: its head follows A's last one */
	CHECK(refused(&e, 2, &b2, -ESTALE, "replayed head"));
	h3 = head_make(fs_id, 3, &h2, writer_b, now_ns() + hour, fs_sk);
	CHECK(cas(&e, 2, &h3) == 0);
	CHECK(get_is(&e, 0, &h3));
	/* now A is the other writer, and B's lease holds */
	h4 = head_make(fs_id, 4, &h3, writer_a, now_ns() + hour, fs_sk);
	CHECK(refused(&e, 3, &h4, -EACCES, "lease held by"));
	CHECK(get_is(&e, 0, &h3));
	env_down(&e);
}

/* A node whose cluster file has no [filesystem]: CAS is -EOPNOTSUPP, said
 * once; GET answers what it holds (nothing). */
static void test_no_fs(void)
{
	struct env e;
	struct rec h1 = head_ok(1, NULL, writer_a);

	env_up(&e, false, false);
	CHECK(cas(&e, 0, &h1) == -EOPNOTSUPP);
	CHECK(cas(&e, 0, &h1) == -EOPNOTSUPP);
	CHECK(log_count("[filesystem]", NULL) == 1);
	CHECK(get_is(&e, 0, NULL));
	env_down(&e);
}

/* The op constructors' bad arguments. */
static void test_ops_args(void)
{
	uint8_t b[NET_HEAD_MAX_BYTES + 1] = {0};
	struct net_op *op;

	CHECK(!net_op_new_head_get(NULL, 0));
	CHECK(!net_op_new_head_cas(0, NULL, 10));
	CHECK(!net_op_new_head_cas(0, b, 0));
	CHECK(!net_op_new_head_cas(0, b, sizeof(b)));
	op = net_op_new_head_cas(7, b, NET_HEAD_MAX_BYTES);
	CHECK(op != NULL);
	net_op_free(op);
	op = net_op_new_head_get(b, 3);
	CHECK(op != NULL);
	net_op_free(op);
}

/* A node started as the commands start it, from a cluster file: the
 * [filesystem] section is the filesystem it accepts heads of; without
 * it, none. */
static void test_from_cluster_file(bool with_section)
{
	char path[] = "/tmp/test-heads-conf-XXXXXX", text[1024], id[33], pk[65],
	     err[256];
	struct cl_cluster *cl = xmalloc(sizeof(*cl));
	struct env e;
	struct rec h1 = head_ok(1, NULL, writer_a);
	int fd = mkstemp(path);

	REQUIRE(fd >= 0);
	sodium_bin2hex(id, sizeof(id), fs_id, sizeof(fs_id));
	sodium_bin2hex(pk, sizeof(pk), fs_pk, sizeof(fs_pk));
	snprintf(text, sizeof(text),
		 "[cluster]\nid = c\n"
		 "%s%s%s%s%s"
		 "[node n1]\naddress = tcp://127.0.0.1:*\npublic_key = %s\n",
		 with_section ? "[filesystem]\nid = " : "",
		 with_section ? id : "", with_section ? "\npublic_key = " : "",
		 with_section ? pk : "", with_section ? "\n" : "",
		 node_key.pub);
	REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	REQUIRE(cl_cluster_load(path, cl, err, sizeof(err)) == 0);
	unlink(path);
	CHECK(cl->has_fs == with_section);

	memset(&e, 0, sizeof(e));
	strcpy(e.dir, "/tmp/test-heads.XXXXXX");
	REQUIRE(mkdtemp(e.dir));
	db_open(&e);
	struct net_server_config sc = {
	    .public_key = node_key.pub,
	    .secret_key = node_key.sec,
	    .db = e.db,
	    .cf = CF_FRAGS,
	    .has_heads = true,
	    .heads_cf = CF_HEADS,
	    .capacity = 1ull << 30,
	    .log = capture_log,
	};
	REQUIRE(cl_cluster_server_new(cl, 0, &sc, &e.srv) == 0);
	/* the node's own key is the cluster's: its client gets in */
	struct net_peer_config peer = {.endpoint = net_server_endpoint(e.srv),
				       .server_key = node_key.pub};
	struct net_client_config cc = {.public_key = node_key.pub,
				       .secret_key = node_key.sec,
				       .peers = &peer,
				       .npeers = 1};
	REQUIRE(net_client_new(&cc, &e.c) == 0);
	if (with_section) {
		CHECK(cas(&e, 0, &h1) == 0);
		CHECK(get_is(&e, 0, &h1));
	} else {
		CHECK(cas(&e, 0, &h1) == -EOPNOTSUPP);
		CHECK(get_is(&e, 0, NULL));
	}
	env_down(&e);
	free(cl);
}

int main(void)
{
	REQUIRE(sodium_init() >= 0);
	REQUIRE(net_keypair_generate(node_key.pub, node_key.sec) == 0);
	REQUIRE(net_keypair_generate(client_key.pub, client_key.sec) == 0);
	randombytes_buf(fs_id, sizeof(fs_id));
	crypto_sign_keypair(fs_pk, fs_sk);
	crypto_sign_keypair(other_pk, other_sk);
	randombytes_buf(writer_a, sizeof(writer_a));
	randombytes_buf(writer_b, sizeof(writer_b));

	test_ops_args();
	for (int local = 0; local < 2; local++) {
		test_empty(local);
		test_chain(local);
		test_lease(local);
	}
	test_no_fs();
	test_from_cluster_file(true);
	test_from_cluster_file(false);
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
