/* Unit tests of reading heads from the nodes (net/cluster/headset.h):
 * three real servers holding different heads (one ahead, one lagging, one
 * holding a forged record written behind its back), the checks of
 * cl_head_check, the latest, by seq, the list, and nodes going down. */
#include "blocks/dag/head.h"
#include "blocks/store/fragstore.h"
#include "net/client/client.h"
#include "net/cluster/config.h"
#include "net/cluster/headset.h"
#include "net/server/heads.h"
#include "net/server/server.h"
#include "net/wire/keys.h"

#include <endian.h>
#include <errno.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/unit/check.h"

enum { CF_FRAGS = 0, CF_HEADS = 1 };
#define NODES 3

static char node_pub[NODES][NET_KEY_Z85_LEN + 1],
    node_sec[NODES][NET_KEY_Z85_LEN + 1];
static char client_pub[NET_KEY_Z85_LEN + 1], client_sec[NET_KEY_Z85_LEN + 1];
static uint8_t fs_id[16], fs_pk[32], fs_sk[64], other_pk[32], other_sk[64];
static struct cl_cluster cl;

struct node {
	char dir[64];
	struct blk_db *db;
	struct net_heads *heads;
	struct net_server *srv;
};
static struct node nodes[NODES];
static struct net_client *client;

struct rec {
	uint8_t b[BLK_HEAD_MAX_BYTES];
	size_t len;
};
static struct rec chain[4]; /* chain[s] is head s, 1..3 */

static struct rec head_make(const uint8_t *fs, uint64_t seq,
			    const struct rec *parent, const uint8_t *sk)
{
	struct blk_head h = {.seq = seq, .time_ns = seq * 1000000000ull};
	struct rec r = {{0}, 0};

	memcpy(h.fs, fs, sizeof(h.fs));
	blk_cid_compute(&h.root, BLK_CODEC_DAG_PB, &seq, sizeof(seq));
	h.attrs = h.root;
	if (parent) {
		h.has_parent = true;
		blk_head_cid(parent->b, parent->len, &h.parent);
	}
	REQUIRE(blk_head_sign(&h, sk) == 0);
	REQUIRE(blk_head_encode(&h, r.b, sizeof(r.b), &r.len) == 0);
	return r;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void node_up(unsigned i)
{
	struct node *n = &nodes[i];
	const char *allowed[] = {client_pub};
	const char *names[] = {"client"};
	struct net_server_config sc = {
	    .endpoint = cl.nodes[i].address,
	    .public_key = node_pub[i],
	    .secret_key = node_sec[i],
	    .allowed_keys = allowed,
	    .allowed_names = names,
	    .nallowed = 1,
	    .db = n->db,
	    .cf = CF_FRAGS,
	    .has_heads = true,
	    .heads_cf = CF_HEADS,
	    .fs_id = fs_id,
	    .fs_public_key = fs_pk,
	    .capacity = 1ull << 30,
	    .workers = 1,
	};
	REQUIRE(net_server_new(&sc, &n->srv) == 0);
}

static void node_open(unsigned i)
{
	struct node *n = &nodes[i];
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};
	char path[96], err[256];

	strcpy(n->dir, "/tmp/test-headset.XXXXXX");
	REQUIRE(mkdtemp(n->dir));
	REQUIRE(blk_fragstore_register(&reg) == CF_FRAGS);
	REQUIRE(net_heads_register(&reg) == CF_HEADS);
	snprintf(path, sizeof(path), "%s/db", n->dir);
	REQUIRE(blk_db_open(path, &o, &n->db, err, sizeof(err)) == 0);
	REQUIRE(net_heads_open(n->db, CF_HEADS, fs_id, fs_pk, &n->heads) == 0);
	/* a free port: bind to *, read it back, keep the address */
	struct net_server_config probe = {
	    .endpoint = "tcp://127.0.0.1:*",
	    .public_key = node_pub[i],
	    .secret_key = node_sec[i],
	    .db = n->db,
	    .cf = CF_FRAGS,
	    .capacity = 1,
	    .workers = 1,
	};
	struct net_server *s;
	REQUIRE(net_server_new(&probe, &s) == 0);
	snprintf(cl.nodes[i].address, sizeof(cl.nodes[i].address), "%s",
		 net_server_endpoint(s));
	net_server_free(s);
	snprintf(cl.nodes[i].name, sizeof(cl.nodes[i].name), "n%u", i);
	snprintf(cl.nodes[i].public_key, sizeof(cl.nodes[i].public_key), "%s",
		 node_pub[i]);
}

/* Write head @r as node @i's head @seq and its current, behind the CAS's
 * back (what a damaged or hostile node would answer). */
static void plant(unsigned i, uint64_t seq, const struct rec *r)
{
	uint8_t key[24];
	uint64_t be = htobe64(seq);

	memcpy(key, fs_id, 16);
	memcpy(key + 16, &be, 8);
	REQUIRE(blk_db_put(nodes[i].db, CF_HEADS, key, 24, r->b, r->len) == 0);
	REQUIRE(blk_db_put(nodes[i].db, CF_HEADS, fs_id, 16, &be, 8) == 0);
}

static void test_check(void)
{
	struct blk_head h;
	char why[160];
	struct rec forged = head_make(fs_id, 1, NULL, other_sk);
	struct rec other = head_make(other_pk, 1, NULL, fs_sk);

	CHECK(cl_head_check(&cl, chain[1].b, chain[1].len, 1, &h, why,
			    sizeof(why)) == 0 &&
	      h.seq == 1);
	CHECK(cl_head_check(&cl, chain[2].b, chain[2].len, 0, &h, why,
			    sizeof(why)) == 0);
	CHECK(cl_head_check(&cl, chain[2].b, chain[2].len, 3, &h, why,
			    sizeof(why)) == -EBADMSG &&
	      strstr(why, "head 2 when asked for 3"));
	CHECK(cl_head_check(&cl, forged.b, forged.len, 1, &h, why,
			    sizeof(why)) == -EBADMSG &&
	      strstr(why, "forged"));
	CHECK(cl_head_check(&cl, other.b, other.len, 1, &h, why, sizeof(why)) ==
		  -EBADMSG &&
	      strstr(why, "another filesystem"));
	CHECK(cl_head_check(&cl, chain[1].b, chain[1].len - 1, 1, &h, why,
			    sizeof(why)) == -EBADMSG &&
	      strstr(why, "malformed"));
	CHECK(cl_head_check(&cl, (const uint8_t *)"", 0, 0, &h, why,
			    sizeof(why)) == -EBADMSG);
}

static void test_nodes(void)
{
	struct cl_head_info h, *all;
	uint8_t rec[BLK_HEAD_MAX_BYTES];
	size_t len, n, missing;
	char why[160];

	/* none holds a head yet */
	CHECK(cl_heads_latest(client, &cl, 1000, &h, rec, &len) == -ENOENT);
	CHECK(cl_heads_list(client, &cl, 1000, &all, &n, &missing) == 0 &&
	      n == 0 && !all);

	/* node 0 has 1..3, node 1 lags at 2, node 2 answers a forged 9 */
	for (uint64_t s = 1; s <= 3; s++) {
		CHECK(net_heads_cas(nodes[0].heads, s - 1, chain[s].b,
				    chain[s].len, why, sizeof(why)) == 0);
		if (s <= 2)
			CHECK(net_heads_cas(nodes[1].heads, s - 1, chain[s].b,
					    chain[s].len, why,
					    sizeof(why)) == 0);
	}
	struct rec forged = head_make(fs_id, 9, &chain[3], other_sk);
	plant(2, 9, &forged);

	CHECK(cl_heads_latest(client, &cl, 2000, &h, rec, &len) == 0);
	CHECK(h.head.seq == 3 && h.node == 0 && len == chain[3].len &&
	      !memcmp(rec, chain[3].b, len));
	struct blk_cid c3;
	blk_head_cid(chain[3].b, chain[3].len, &c3);
	CHECK(blk_cid_equal(&h.cid, &c3));
	CHECK(cl_heads_get(client, &cl, 2, 2000, &h, NULL, NULL) == 0 &&
	      h.head.seq == 2);
	CHECK(cl_heads_get(client, &cl, 9, 2000, &h, NULL, NULL) == -ENOENT);
	CHECK(cl_heads_get(client, &cl, 0, 2000, &h, NULL, NULL) == -EINVAL);

	CHECK(cl_heads_list(client, &cl, 2000, &all, &n, &missing) == 0);
	CHECK(n == 3 && missing == 0);
	for (size_t i = 0; all && i < n; i++)
		CHECK(all[i].head.seq == 3 - i);
	free(all);

	/* node 0 down: the lagging node's 2 is the latest there is */
	net_server_free(nodes[0].srv);
	nodes[0].srv = NULL;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(cl_heads_latest(client, &cl, 1000, &h, NULL, NULL) == 0 &&
	      h.head.seq == 2 && h.node == 1);
	CHECK(cl_heads_list(client, &cl, 1000, &all, &n, &missing) == 0 &&
	      n == 2 && all[0].head.seq == 2 && all[1].head.seq == 1);
	free(all);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(t1.tv_sec - t0.tv_sec < 10); /* bounded waits */

	/* every node down */
	net_server_free(nodes[1].srv);
	net_server_free(nodes[2].srv);
	nodes[1].srv = nodes[2].srv = NULL;
	CHECK(cl_heads_latest(client, &cl, 500, &h, NULL, NULL) == -EHOSTDOWN);

	/* a cluster without [filesystem] */
	struct cl_cluster *bare = xmalloc(sizeof(*bare));
	*bare = cl;
	bare->has_fs = false;
	CHECK(cl_heads_latest(client, bare, 500, &h, NULL, NULL) ==
	      -EOPNOTSUPP);
	free(bare);
}

int main(void)
{
	REQUIRE(sodium_init() >= 0);
	for (unsigned i = 0; i < NODES; i++)
		REQUIRE(net_keypair_generate(node_pub[i], node_sec[i]) == 0);
	REQUIRE(net_keypair_generate(client_pub, client_sec) == 0);
	randombytes_buf(fs_id, sizeof(fs_id));
	crypto_sign_keypair(fs_pk, fs_sk);
	crypto_sign_keypair(other_pk, other_sk);
	cl.has_fs = true;
	memcpy(cl.fs_id, fs_id, 16);
	memcpy(cl.fs_public_key, fs_pk, 32);
	cl.nnodes = NODES;
	chain[1] = head_make(fs_id, 1, NULL, fs_sk);
	chain[2] = head_make(fs_id, 2, &chain[1], fs_sk);
	chain[3] = head_make(fs_id, 3, &chain[2], fs_sk);

	test_check();
	struct net_peer_config peers[NODES];
	for (unsigned i = 0; i < NODES; i++) {
		node_open(i);
		node_up(i);
		peers[i] = (struct net_peer_config){
		    cl.nodes[i].address, node_pub[i], cl.nodes[i].name};
	}
	struct net_client_config cc = {
	    .public_key = client_pub,
	    .secret_key = client_sec,
	    .peers = peers,
	    .npeers = NODES,
	    .timeout_ms = 500,
	    .max_attempts = 1,
	    .down_after_ms = 1000,
	};
	REQUIRE(net_client_new(&cc, &client) == 0);
	test_nodes();
	net_client_free(client);
	for (unsigned i = 0; i < NODES; i++) {
		net_server_free(nodes[i].srv);
		net_heads_close(nodes[i].heads);
		blk_db_close(nodes[i].db);
		nftw(nodes[i].dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
	printf("test-headset: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
