/* head-probe: send crafted head records (HEAD_CAS) to every node of a
 * cluster at once and print how each node answered, for the integration
 * tests (tests/integration/test_heads.py): unsigned, forged, stale,
 * replayed, other-filesystem and wrong-parent heads must be refused by
 * every node, and the correct next head (--valid) accepted.
 *
 * Usage: head-probe [OPTIONS] NODE_DIR (see usage()). The probe is a
 * client of the cluster with NODE_DIR's CURVE identity: the nodes name
 * its refusals after that node, and log at most one refusal of heads per
 * peer a minute (net/server/refusals.h), so a test that wants every case
 * in the logs sends each from another node's directory.
 *
 * Every case is built from the latest head the nodes answer (seq N, the
 * record R, the CID C):
 *   unsigned    seq N+1 after C, without "sig"             expect N
 *   forged      seq N+1 after C, signed with another key   expect N
 *   stale       seq N, another root, after head N-1        expect N-1
 *               (a writer that missed head N)
 *   replayed    R itself, byte for byte                    expect N
 *               (sent as it first was, from N-1, it is the stale case)
 *   other-fs    seq N+1 after C, another filesystem id     expect N
 *   bad-parent  seq N+1, parent head N-1 (a fork), or a    expect N
 *               CID that names no head when N is 1
 *   valid       seq N+1 after C, head N's writer, tree and expect N
 *               lease a minute from now: accepted
 * Each but unsigned, forged and replayed is signed with the filesystem's
 * key, so only what the case changes is wrong with it.
 *
 * Output, one JSON object on stdout:
 *   {"identity": NAME, "head": {"seq", "cid"}, "before": {NODE: HEAD},
 *    "cases": {CASE: {"seq", "expect", "cid", "status": {NODE: S}}},
 *    "after": {NODE: HEAD}}
 * where S is 0 (accepted) or the errno's name ("EBADMSG", "ESTALE", ...),
 * and HEAD is a node's current head, {"seq", "cid"}, or {"error": NAME}.
 * Exit status: 0 (ran: the statuses say the rest), 1 (could not run:
 * said why on stderr), 2 (usage). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blocks/dag/head.h"
#include "net/client/client.h"
#include "net/cluster/cluster-net.h"
#include "net/cluster/config.h"
#include "net/cluster/headset.h"
#include "net/wire/keys.h"

#define DEFAULT_TIMEOUT_MS 10000
#define LEASE_NS (60ull * 1000000000u)

static const char *const CASES[] = {"unsigned", "forged",   "stale",
				    "replayed", "other-fs", "bad-parent",
				    "valid"};
#define NCASES (sizeof(CASES) / sizeof(CASES[0]))
#define NBAD (NCASES - 1) /* all but "valid" */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: head-probe [OPTIONS] NODE_DIR\n"
	    "Send crafted heads (HEAD_CAS) to every node of NODE_DIR's "
	    "cluster, as NODE_DIR's\nnode, and print each node's answer "
	    "as JSON.\n\n"
	    "  --case NAME        send this case (repeatable): unsigned, "
	    "forged, stale,\n"
	    "                     replayed, other-fs, bad-parent, valid; "
	    "default: all but valid\n"
	    "  --valid            the correct next head (the same as "
	    "--case valid): accepted\n"
	    "  --fs-key FILE      the filesystem's secret key (default "
	    "NODE_DIR/filesystem.key,\n"
	    "                     else the one beside NODE_DIR)\n"
	    "  --forge-seed TEXT  derive the forged key from TEXT (default: "
	    "a random key)\n"
	    "  --timeout MS       wait this long for every node's answers "
	    "(default %d)\n"
	    "  --help             this text\n\n"
	    "Exit status: 0 ran (the statuses are in the JSON), 1 could "
	    "not run, 2 usage.\n",
	    DEFAULT_TIMEOUT_MS);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "head-probe: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One record to send, and what CAS expects. */
struct rec {
	uint64_t expect;
	uint64_t seq;
	uint8_t b[BLK_HEAD_MAX_BYTES];
	size_t len;
};

/* What the probe knows. */
struct probe {
	const char *node_dir;
	char name[64];
	struct cl_cluster cl;
	uint8_t fs_sk[CL_FS_SK_LEN];
	uint8_t forge_pk[32], forge_sk[64];
	struct net_client *client;
	unsigned timeout_ms;
	/* The latest head (seq N), its record, and head N-1 when N > 1. */
	struct cl_head_info cur, prev;
	uint8_t cur_rec[BLK_HEAD_MAX_BYTES];
	size_t cur_len;
	bool has_prev;
};

/* NODE_DIR/FILE's one line, a Z85 CURVE key, into @out. 0 or -1. */
static int read_key(const char *dir, const char *file,
		    char out[NET_KEY_Z85_LEN + 1])
{
	char path[PATH_MAX], line[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "r");
	if (!f) {
		fail("cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	if (!net_key_valid(line)) {
		fail("%s is not a CURVE key", path);
		return -1;
	}
	snprintf(out, NET_KEY_Z85_LEN + 1, "%s", line);
	return 0;
}

/* The filesystem key: @path, else NODE_DIR/filesystem.key, else the one
 * beside NODE_DIR (as the mount looks for it). 0 or -1. */
static int load_fs_key(struct probe *p, const char *path)
{
	char buf[PATH_MAX], err[512];

	if (!path) {
		snprintf(buf, sizeof(buf), "%s/filesystem.key", p->node_dir);
		if (access(buf, F_OK) != 0)
			snprintf(buf, sizeof(buf), "%s/../filesystem.key",
				 p->node_dir);
		path = buf;
	}
	if (cl_fs_key_load(path, &p->cl, p->fs_sk, err, sizeof(err))) {
		fail("%s", err);
		return -1;
	}
	return 0;
}

/* The forged key: from @seed (hashed to a libsodium seed), else random. */
static void make_forged_key(struct probe *p, const char *seed)
{
	uint8_t s[crypto_sign_SEEDBYTES];

	if (!seed) {
		crypto_sign_keypair(p->forge_pk, p->forge_sk);
		return;
	}
	crypto_generichash(s, sizeof(s), (const uint8_t *)seed, strlen(seed),
			   NULL, 0);
	crypto_sign_seed_keypair(p->forge_pk, p->forge_sk, s);
}

/* The cluster file, the identity and the client. 0 or -1. */
static int open_cluster(struct probe *p)
{
	char path[PATH_MAX], err[512], pub[NET_KEY_Z85_LEN + 1],
	    sec[NET_KEY_Z85_LEN + 1], derived[NET_KEY_Z85_LEN + 1];
	int ret;

	if (cl_node_name(p->node_dir, p->name, sizeof(p->name), err,
			 sizeof(err))) {
		fail("%s", err);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/cluster.conf", p->node_dir);
	if (cl_cluster_load(path, &p->cl, err, sizeof(err))) {
		fail("%s", err);
		return -1;
	}
	if (!p->cl.has_fs) {
		fail("%s has no [filesystem] section: its nodes keep no heads",
		     path);
		return -1;
	}
	if (read_key(p->node_dir, "curve.pub", pub) ||
	    read_key(p->node_dir, "curve.key", sec))
		return -1;
	if (net_key_public(sec, derived) || strcmp(derived, pub)) {
		fail("%s/curve.key does not match %s/curve.pub", p->node_dir,
		     p->node_dir);
		return -1;
	}
	/* One attempt per CAS: a retry after a lost reply would turn an
	 * accepted head into -ESTALE (net_op_new_head_cas). */
	struct net_client_config cc = {
	    .public_key = pub,
	    .secret_key = sec,
	    .timeout_ms = p->timeout_ms,
	    .max_attempts = 1,
	};
	ret = cl_cluster_client_new(&p->cl, &cc, &p->client);
	if (ret) {
		fail("cannot start a client to the cluster: %s",
		     strerror(-ret));
		return -1;
	}
	return 0;
}

static json_t *errno_json(int st)
{
	const char *name = st ? strerrorname_np(-st) : NULL;
	char buf[32];

	if (!st)
		return json_integer(0);
	if (!name) {
		snprintf(buf, sizeof(buf), "E%d", -st);
		name = buf;
	}
	return json_string(name);
}

static json_t *head_json(const struct blk_head *h, const struct blk_cid *cid)
{
	char s[BLK_CID_STR_MAX];

	blk_cid_to_string(cid, s);
	return json_pack("{s:I, s:s}", "seq", (json_int_t)h->seq, "cid", s);
}

/* Every node's current head, as each answers it, into a JSON object
 * {NODE: HEAD}; NULL on ENOMEM. */
static json_t *nodes_heads(struct probe *p)
{
	struct net_batch *b = net_batch_new(p->client);
	json_t *o = json_object();

	if (!b || !o)
		goto nomem;
	for (unsigned i = 0; i < p->cl.nnodes; i++) {
		struct net_op *op = net_op_new_head_get(p->cl.fs_id, 0);

		if (!op || net_batch_submit(b, i, op) < 0)
			goto nomem;
	}
	net_batch_wait(b, (int)p->timeout_ms);
	for (unsigned i = 0; i < p->cl.nnodes; i++) {
		const struct net_op_result *r =
		    net_op_result(net_batch_op(b, i));
		struct blk_head h;
		struct blk_cid cid;
		char why[160];
		json_t *v;

		if (!r)
			v = json_pack("{s:s}", "error", "ETIMEDOUT");
		else if (r->status)
			v = json_pack("{s:o}", "error", errno_json(r->status));
		else if (cl_head_check(&p->cl, r->data, r->len, 0, &h, why,
				       sizeof(why)))
			v = json_pack("{s:s, s:s}", "error", "EBADMSG", "why",
				      why);
		else {
			blk_head_cid(r->data, r->len, &cid);
			v = head_json(&h, &cid);
		}
		if (!v || json_object_set_new(o, p->cl.nodes[i].name, v))
			goto nomem;
	}
	net_batch_free(b);
	return o;
nomem:
	net_batch_free(b);
	json_decref(o);
	return NULL;
}

/* The latest head, and the one before it. 0 or -1. */
static int read_heads(struct probe *p)
{
	int ret = cl_heads_latest(p->client, &p->cl, p->timeout_ms, &p->cur,
				  p->cur_rec, &p->cur_len);

	if (ret == -ENOENT) {
		fail("the filesystem has no head yet: commit first");
		return -1;
	}
	if (ret) {
		fail("cannot read the latest head: %s",
		     ret == -EHOSTDOWN ? "no node answered" : strerror(-ret));
		return -1;
	}
	if (p->cur.head.seq < 2)
		return 0;
	ret = cl_heads_get(p->client, &p->cl, p->cur.head.seq - 1,
			   p->timeout_ms, &p->prev, NULL, NULL);
	if (ret) {
		fail("cannot read head %llu: %s",
		     (unsigned long long)p->cur.head.seq - 1, strerror(-ret));
		return -1;
	}
	p->has_prev = true;
	return 0;
}

/* The next head after the current one: seq N+1, parent its CID, the
 * same tree and writer, now, a lease a minute from now. */
static struct blk_head next_head(const struct probe *p)
{
	struct blk_head h = p->cur.head;
	uint64_t now = now_ns();

	h.seq = p->cur.head.seq + 1;
	h.has_parent = true;
	h.parent = p->cur.cid;
	h.time_ns = now;
	h.lease_ns = now + LEASE_NS;
	memset(h.sig, 0, sizeof(h.sig));
	return h;
}

/* A CID no head or tree of the filesystem has: of @what, in @codec. */
static struct blk_cid nobody(uint64_t codec, const char *what)
{
	struct blk_cid cid;

	blk_cid_compute(&cid, codec, what, strlen(what));
	return cid;
}

/* Sign @h with @sk and encode it into @r. 0 or -1. */
static int sign_into(struct blk_head *h, const uint8_t *sk, struct rec *r)
{
	r->seq = h->seq;
	if (blk_head_sign(h, sk) ||
	    blk_head_encode(h, r->b, sizeof(r->b), &r->len)) {
		fail("cannot sign and encode head %llu",
		     (unsigned long long)h->seq);
		return -1;
	}
	return 0;
}

/* @r without its "sig" entry: the map loses one entry (its first byte,
 * 0xa0 | count, goes down by one) and the key with its 64 bytes go. The
 * result must decode as well-formed and unsigned (-ENOKEY). 0 or -1. */
static int unsign(struct rec *r)
{
	static const uint8_t key[] = {0x63, 's', 'i', 'g', 0x58, 64};
	const size_t cut = sizeof(key) + 64;
	struct blk_head h;

	for (size_t i = 1; i + cut <= r->len; i++) {
		if (memcmp(r->b + i, key, sizeof(key)) != 0)
			continue;
		memmove(r->b + i, r->b + i + cut, r->len - i - cut);
		r->len -= cut;
		r->b[0]--;
		if (blk_head_decode(&h, r->b, r->len) != -ENOKEY)
			break;
		return 0;
	}
	fail("cannot make an unsigned head of the encoding");
	return -1;
}

/* Build case @name into @r. 0 or -1. */
static int build(struct probe *p, const char *name, struct rec *r)
{
	struct blk_head h = next_head(p);
	uint64_t n = p->cur.head.seq;

	memset(r, 0, sizeof(*r));
	r->expect = n;
	if (!strcmp(name, "unsigned"))
		return sign_into(&h, p->fs_sk, r) || unsign(r) ? -1 : 0;
	if (!strcmp(name, "forged")) {
		if (sign_into(&h, p->forge_sk, r))
			return -1;
		if (blk_head_verify(&h, p->cl.fs_public_key) == 0) {
			fail("the forged key is the filesystem's");
			return -1;
		}
		return 0;
	}
	if (!strcmp(name, "stale")) {
		h.seq = n;
		h.has_parent = p->has_prev;
		if (p->has_prev)
			h.parent = p->prev.cid;
		h.root = nobody(BLK_CODEC_DAG_PB, "head-probe: a stale root");
		r->expect = n - 1;
		return sign_into(&h, p->fs_sk, r);
	}
	if (!strcmp(name, "replayed")) {
		memcpy(r->b, p->cur_rec, p->cur_len);
		r->len = p->cur_len;
		r->seq = n;
		return 0;
	}
	if (!strcmp(name, "other-fs")) {
		for (size_t i = 0; i < sizeof(h.fs); i++)
			h.fs[i] ^= 0xff;
		return sign_into(&h, p->fs_sk, r);
	}
	if (!strcmp(name, "bad-parent")) {
		h.parent = p->has_prev ? p->prev.cid
				       : nobody(BLK_CODEC_DAG_CBOR,
						"head-probe: not a head");
		return sign_into(&h, p->fs_sk, r);
	}
	if (!strcmp(name, "valid"))
		return sign_into(&h, p->fs_sk, r);
	fail("no case %s", name);
	return -1;
}

/* Send @r to every node at once: {"seq", "expect", "cid", "status":
 * {NODE: S}}, or NULL on ENOMEM. */
static json_t *send_all(struct probe *p, const struct rec *r)
{
	struct net_batch *b = net_batch_new(p->client);
	json_t *st = json_object(), *o = NULL;
	char s[BLK_CID_STR_MAX];
	struct blk_cid cid;

	if (!b || !st)
		goto out;
	for (unsigned i = 0; i < p->cl.nnodes; i++) {
		struct net_op *op =
		    net_op_new_head_cas(r->expect, r->b, r->len);

		if (!op || net_batch_submit(b, i, op) < 0)
			goto out;
	}
	net_batch_wait(b, (int)p->timeout_ms);
	for (unsigned i = 0; i < p->cl.nnodes; i++) {
		const struct net_op_result *res =
		    net_op_result(net_batch_op(b, i));

		if (json_object_set_new(
			st, p->cl.nodes[i].name,
			errno_json(res ? res->status : -ETIMEDOUT)))
			goto out;
	}
	blk_head_cid(r->b, r->len, &cid);
	blk_cid_to_string(&cid, s);
	o = json_pack("{s:I, s:I, s:s, s:O}", "seq", (json_int_t)r->seq,
		      "expect", (json_int_t)r->expect, "cid", s, "status", st);
out:
	json_decref(st);
	net_batch_free(b);
	return o;
}

/* Parse the command line into @p and the cases to send (@want, by index
 * in CASES). 0, or the exit status to leave with. */
static int parse(int argc, char **argv, struct probe *p, bool want[NCASES],
		 const char **fs_key, const char **seed)
{
	static const struct option opts[] = {
	    {"case", required_argument, NULL, 'c'},
	    {"valid", no_argument, NULL, 'v'},
	    {"fs-key", required_argument, NULL, 'k'},
	    {"forge-seed", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	bool any = false;
	char *end;
	long v;
	int c;

	p->timeout_ms = DEFAULT_TIMEOUT_MS;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		size_t i;

		switch (c) {
		case 'c':
			for (i = 0; i < NCASES && strcmp(CASES[i], optarg); i++)
				;
			if (i == NCASES) {
				fail("no case '%s' (see --help)", optarg);
				return 2;
			}
			want[i] = any = true;
			break;
		case 'v':
			want[NCASES - 1] = any = true;
			break;
		case 'k':
			*fs_key = optarg;
			break;
		case 's':
			*seed = optarg;
			break;
		case 't':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v <= 0 || v > INT_MAX) {
				fail("--timeout takes milliseconds, not '%s'",
				     optarg);
				return 2;
			}
			p->timeout_ms = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	p->node_dir = argv[optind];
	for (size_t i = 0; !any && i < NBAD; i++)
		want[i] = true;
	return 0;
}

int main(int argc, char **argv)
{
	static struct probe p;
	bool want[NCASES] = {false};
	const char *fs_key = NULL, *seed = NULL;
	json_t *out = NULL, *cases = NULL, *j;
	int ret = parse(argc, argv, &p, want, &fs_key, &seed);

	if (ret)
		return ret;
	if (sodium_init() < 0) {
		fail("cannot initialise libsodium");
		return 1;
	}
	make_forged_key(&p, seed);
	ret = 1;
	if (open_cluster(&p) || load_fs_key(&p, fs_key))
		goto out;
	j = nodes_heads(&p);
	if (read_heads(&p))
		goto out_j;
	cases = json_object();
	out = json_pack("{s:s, s:o, s:o}", "identity", p.name, "head",
			head_json(&p.cur.head, &p.cur.cid), "before", j);
	j = NULL;
	if (!out || !cases)
		goto nomem;
	for (size_t i = 0; i < NCASES; i++) {
		struct rec r;
		json_t *res;

		if (!want[i])
			continue;
		if (build(&p, CASES[i], &r))
			goto out;
		res = send_all(&p, &r);
		if (!res || json_object_set_new(cases, CASES[i], res))
			goto nomem;
	}
	/* json_object_set_new takes the value's reference, also when it
	 * fails. */
	ret = json_object_set_new(out, "cases", cases);
	cases = NULL;
	j = ret ? NULL : nodes_heads(&p);
	ret = !j || json_object_set_new(out, "after", j);
	j = NULL;
	if (ret)
		goto nomem;
	ret = 1;
	if (json_dumpf(out, stdout, JSON_INDENT(0)) || putchar('\n') == EOF ||
	    fflush(stdout)) {
		fail("cannot print the result: %s", strerror(errno));
		goto out;
	}
	ret = 0;
	goto out;
nomem:
	fail("out of memory");
out_j:
	json_decref(j);
out:
	json_decref(cases);
	json_decref(out);
	net_client_free(p.client);
	sodium_memzero(p.fs_sk, sizeof(p.fs_sk));
	return ret;
}
