/* Tests of the fetcher (net/cluster/fetcher.c): planning, hedging,
 * rejecting and outvoting, with the nodes faked at struct cl_fetch_ops --
 * nodes that answer, have nothing, are slow, lie (wrong bytes under a
 * resealed header), forge (another block's bytes under this block's
 * name), lie about the coding, or are down -- for replicas and for K+M.
 *
 * Deterministic: the blocks are seeded, replies complete on the fake's
 * thread in the order asked, and a slow node's replies are held until the
 * test lets them go; the tests wait on what the fake has seen, never on
 * time. */

#include "net/cluster/fetcher.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/clock.h"
#include "ec/codec.h"
#include "tests/unit/check.h"

#define NNODES 8
#define MAXQ 1024
#define BLOCK_LEN 100000
#define NO_HEDGE 60000 /* ms: longer than any fake reply takes */
#define HEDGE 20

static const char *const names[NNODES] = {"n0", "n1", "n2", "n3",
					  "n4", "n5", "n6", "n7"};

/* What a fake node does with GETs of fragments it holds. */
enum behaviour {
	HONEST,	 /* the right fragment */
	MISSING, /* -ENOENT, for everything */
	SLOW,	 /* the right fragment, held until fake_release */
	LYING,	 /* one byte flipped, the header's checksum sealed again */
	FORGING, /* another block's fragment under this block's name */
	CODING,	 /* right bytes, a header claiming a block 1 byte shorter */
	DOWN,	 /* up() says false; a GET fails at once */
};

/* ---- fake nodes --------------------------------------------------------- */

/* The block the nodes hold: fragment i lives on its home, rank[i]. */
struct block {
	struct blk_cid cid;
	uint8_t *data;
	unsigned k, m;
	size_t frag_len;
	uint8_t *frags[EC_MAX_FRAGS];
	uint8_t hdrs[EC_MAX_FRAGS][EC_FRAG_HDR_LEN];
	uint8_t *other[EC_MAX_FRAGS]; /* another block's, for FORGING */
	unsigned rank[NNODES];
};

struct get {
	unsigned node, index;
	cl_get_done_fn done;
	void *arg;
};

struct fake_reply {
	struct cl_frag_reply r;
	uint8_t *bytes;
};

/* fk.lock guards everything; it is never held while a completion runs. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* lock: a GET came, or a node changed */
	enum behaviour node[NNODES];
	unsigned asked[NNODES][EC_MAX_FRAGS]; /* GETs seen */
	unsigned gets;			      /* all GETs seen */
	unsigned completed;		      /* replies handed back */
	struct get q[MAXQ];
	unsigned nq;
	bool stop;
	pthread_t thread;
	const struct block *b;
} fk;

static void reply_release(struct cl_frag_reply *r)
{
	struct fake_reply *fr = (struct fake_reply *)r;

	free(fr->bytes);
	free(fr);
}

/* The reply of node @node, behaving as @how, to a GET of fragment
 * @index of the block. */
static struct cl_frag_reply *make_reply(unsigned node, unsigned index,
					enum behaviour how)
{
	const struct block *b = fk.b;
	struct fake_reply *fr = xmalloc(sizeof(*fr));
	struct ec_frag_hdr h;
	uint8_t raw[EC_FRAG_HDR_LEN];

	fr->r.node = node;
	fr->r.release = reply_release;
	if (how == MISSING || index >= b->k + b->m || b->rank[index] != node) {
		fr->r.status = -ENOENT;
		return &fr->r;
	}
	if (how == DOWN) {
		fr->r.status = -EHOSTDOWN;
		return &fr->r;
	}
	REQUIRE(ec_frag_hdr_parse(b->hdrs[index], EC_FRAG_HDR_LEN, &h) == 0);
	fr->bytes = xmalloc(b->frag_len);
	memcpy(fr->bytes, how == FORGING ? b->other[index] : b->frags[index],
	       b->frag_len);
	if (how == LYING)
		fr->bytes[b->frag_len / 2] ^= 0x40;
	if (how == CODING)
		h.block_len--;
	ec_frag_hdr_seal(&h, fr->bytes, raw); /* the checksum fits again */
	fr->r.frag = h;
	fr->r.data = fr->bytes;
	fr->r.len = b->frag_len;
	return &fr->r;
}

static int fake_get(void *arg, unsigned node, const struct blk_cid *cid,
		    unsigned index, cl_get_done_fn done, void *done_arg)
{
	(void)arg;
	REQUIRE(node < NNODES && index < EC_MAX_FRAGS);
	REQUIRE(blk_cid_equal(cid, &fk.b->cid));
	pthread_mutex_lock(&fk.lock);
	if (fk.node[node] == DOWN) {
		pthread_mutex_unlock(&fk.lock);
		return -EHOSTDOWN;
	}
	REQUIRE(fk.nq < MAXQ);
	fk.asked[node][index]++;
	fk.gets++;
	fk.q[fk.nq++] = (struct get){node, index, done, done_arg};
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
	return 0;
}

static bool fake_up(void *arg, unsigned node)
{
	bool up;

	(void)arg;
	pthread_mutex_lock(&fk.lock);
	up = fk.node[node] != DOWN;
	pthread_mutex_unlock(&fk.lock);
	return up;
}

static uint64_t fake_latency(void *arg, unsigned node)
{
	(void)arg;
	(void)node;
	return 500;
}

/* The first GET that may be answered now (not held), off the queue. */
static bool fake_pop(struct get *out, enum behaviour *how)
{
	for (unsigned i = 0; i < fk.nq; i++) {
		if (fk.node[fk.q[i].node] == SLOW)
			continue;
		*out = fk.q[i];
		*how = fk.node[out->node];
		memmove(&fk.q[i], &fk.q[i + 1],
			(fk.nq - i - 1) * sizeof(fk.q[0]));
		fk.nq--;
		return true;
	}
	return false;
}

static void *fake_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&fk.lock);
	while (!fk.stop) {
		struct cl_frag_reply *r;
		enum behaviour how;
		struct get g;

		if (!fake_pop(&g, &how)) {
			pthread_cond_wait(&fk.cond, &fk.lock);
			continue;
		}
		r = make_reply(g.node, g.index, how);
		pthread_mutex_unlock(&fk.lock);
		g.done(r, g.arg);
		pthread_mutex_lock(&fk.lock);
		fk.completed++;
		pthread_cond_broadcast(&fk.cond);
	}
	pthread_mutex_unlock(&fk.lock);
	return NULL;
}

/* Let node @node's held replies go: it answers honestly from now on. */
static void fake_release(unsigned node)
{
	pthread_mutex_lock(&fk.lock);
	fk.node[node] = HONEST;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
}

/* Wait until the fake has seen @n GETs: 0, or -ETIMEDOUT after 10 s (a
 * bound for a broken fetcher, not a timing assumption). */
static int fake_wait_gets(unsigned n)
{
	struct timespec deadline;
	int ret = 0;

	blk_deadline(&deadline, 10000);
	pthread_mutex_lock(&fk.lock);
	while (fk.gets < n && ret == 0)
		ret = pthread_cond_timedwait(&fk.cond, &fk.lock, &deadline);
	ret = fk.gets >= n ? 0 : -ETIMEDOUT;
	pthread_mutex_unlock(&fk.lock);
	return ret;
}

static unsigned fake_completed(void)
{
	unsigned n;

	pthread_mutex_lock(&fk.lock);
	n = fk.completed;
	pthread_mutex_unlock(&fk.lock);
	return n;
}

/* ---- the block, the placement and the fetcher --------------------------- */

struct env {
	struct block b;
	struct pl_map *pl;
	struct ec_codec *codec; /* the policy's, K > 1 */
	struct cl_fetcher *fe;
};

/* A seeded block of @len bytes coded @k + @m and placed over the nodes,
 * the fake started with every node honest, and a fetcher for the policy
 * @k + @m that hedges after @hedge_ms. The tests that do not test
 * hedging give a delay no fake reply takes (a minute): what they ask is
 * then the same however slowly the fake's thread runs. */
static void env_up(struct env *e, unsigned k, unsigned m, size_t len,
		   uint64_t seed, unsigned hedge_ms)
{
	struct pl_node nodes[NNODES];
	struct ec_codec *codec;
	struct block *b = &e->b;
	uint8_t *other = xmalloc(len);
	struct blk_cid ocid;
	uint8_t ohdrs[EC_MAX_FRAGS][EC_FRAG_HDR_LEN];

	memset(e, 0, sizeof(*e));
	for (unsigned i = 0; i < NNODES; i++)
		nodes[i] = (struct pl_node){names[i], names[i], 1.0};
	REQUIRE(pl_map_new(nodes, NNODES, &e->pl) == 0);
	b->k = k;
	b->m = m;
	b->data = xmalloc(len);
	fill_random(b->data, len, seed);
	fill_random(other, len, seed + 1000);
	blk_cid_compute(&b->cid, BLK_CODEC_RAW, b->data, len);
	blk_cid_compute(&ocid, BLK_CODEC_RAW, other, len);
	REQUIRE(pl_rank(e->pl, &b->cid, b->rank, NNODES) == NNODES);
	REQUIRE(ec_codec_new(k, m, &codec) == 0);
	b->frag_len = ec_frag_size(codec, len);
	for (unsigned i = 0; i < k + m; i++) {
		b->frags[i] = xmalloc(b->frag_len);
		b->other[i] = xmalloc(b->frag_len);
	}
	REQUIRE(ec_encode_frags(codec, &b->cid, b->data, len, b->frags,
				b->hdrs) == 0);
	REQUIRE(ec_encode_frags(codec, &ocid, other, len, b->other, ohdrs) ==
		0);
	free(other);
	if (k > 1)
		e->codec = codec;
	else
		ec_codec_free(codec);

	memset(&fk.node, 0, sizeof(fk.node));
	memset(&fk.asked, 0, sizeof(fk.asked));
	fk.gets = fk.completed = fk.nq = 0;
	fk.stop = false;
	fk.b = b;
	REQUIRE(pthread_create(&fk.thread, NULL, fake_main, NULL) == 0);

	struct cl_fetcher_config cfg = {
	    .lay = {.pl = e->pl,
		    .codec = e->codec,
		    .names = names,
		    .n = NNODES,
		    .k = k,
		    .m = m},
	    .ops = {fake_get, fake_up, fake_latency, NULL},
	    .hedge_ms = hedge_ms,
	};
	REQUIRE(cl_fetcher_new(&cfg, &e->fe) == 0);
}

static void env_down(struct env *e)
{
	pthread_mutex_lock(&fk.lock);
	fk.stop = true;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
	pthread_join(fk.thread, NULL);
	REQUIRE(fk.nq == 0); /* every fetch waited for its GETs */
	cl_fetcher_free(e->fe);
	for (unsigned i = 0; i < e->b.k + e->b.m; i++) {
		free(e->b.frags[i]);
		free(e->b.other[i]);
	}
	free(e->b.data);
	ec_codec_free(e->codec);
	pl_map_free(e->pl);
}

/* The home of fragment @i behaves as @how (before any fetch runs). */
static void home(struct env *e, unsigned i, enum behaviour how)
{
	fk.node[e->b.rank[i]] = how;
}

/* Fetch the block: the result, and whether the bytes are right. */
static int fetch(struct env *e, size_t len, bool *right)
{
	void *data = NULL;
	size_t got = 0;
	int ret = cl_fetcher_fetch(e->fe, &e->b.cid, &data, &got);

	*right = ret == 0 && got == len && !memcmp(data, e->b.data, len);
	free(data);
	return ret;
}

static unsigned gets_to(struct env *e, unsigned node)
{
	return (unsigned)cl_fetcher_gets_sent(e->fe, node);
}

static unsigned gets_total(struct env *e)
{
	unsigned n = 0;

	for (unsigned i = 0; i < NNODES; i++)
		n += gets_to(e, i);
	return n;
}

/* ---- replicas (K = 1) --------------------------------------------------- */

static void test_replicas_honest(void)
{
	struct cl_fetch_stats st;
	struct env e;
	bool right;

	env_up(&e, 1, 2, BLOCK_LEN, 1, NO_HEDGE);
	CHECK(fetch(&e, BLOCK_LEN, &right) == 0 && right);
	/* One copy is enough: one GET, to a home. */
	CHECK(gets_total(&e) == 1);
	CHECK(gets_to(&e, e.b.rank[0]) + gets_to(&e, e.b.rank[1]) +
		  gets_to(&e, e.b.rank[2]) ==
	      1);
	cl_fetcher_stats(e.fe, &st);
	CHECK(st.blocks == 1 && st.bytes == BLOCK_LEN && st.failures == 0);
	CHECK(st.rejects == 0);
	env_down(&e);
}

/* Every copy but one is missing, lies, or forges: the right bytes. */
static void test_replicas_one_good(void)
{
	static const enum behaviour bad[] = {MISSING, LYING, FORGING, DOWN};

	for (unsigned t = 0; t < sizeof(bad) / sizeof(bad[0]); t++)
		for (unsigned good = 0; good < 3; good++) {
			struct cl_fetch_stats st;
			struct env e;
			bool right;

			env_up(&e, 1, 2, BLOCK_LEN, 10 + t * 3 + good,
			       NO_HEDGE);
			for (unsigned i = 0; i < 3; i++)
				if (i != good)
					home(&e, i, bad[t]);
			CHECK(fetch(&e, BLOCK_LEN, &right) == 0 && right);
			cl_fetcher_stats(e.fe, &st);
			CHECK(st.blocks == 1 && st.failures == 0);
			/* Wrong bytes are counted (one per copy asked of a
			 * liar), and never returned. */
			if (bad[t] == LYING || bad[t] == FORGING)
				CHECK(st.rejects == gets_total(&e) - 1);
			/* No GET goes to a node seen down. */
			for (unsigned i = 0; bad[t] == DOWN && i < 3; i++)
				CHECK(i == good ||
				      gets_to(&e, e.b.rank[i]) == 0);
			env_down(&e);
		}
}

/* No copy is right: -EIO, after asking every node (the spares too: a
 * copy may have gone to one while its home was down). */
static void test_replicas_none_good(void)
{
	static const enum behaviour bad[] = {MISSING, LYING, FORGING, DOWN};

	for (unsigned t = 0; t < sizeof(bad) / sizeof(bad[0]); t++) {
		struct cl_fetch_stats st;
		struct env e;
		bool right;

		env_up(&e, 1, 2, BLOCK_LEN, 30 + t, NO_HEDGE);
		for (unsigned i = 0; i < 3; i++)
			home(&e, i, bad[t]);
		CHECK(fetch(&e, BLOCK_LEN, &right) == -EIO && !right);
		cl_fetcher_stats(e.fe, &st);
		CHECK(st.blocks == 0 && st.failures == 1);
		for (unsigned i = 3; i < NNODES; i++)
			CHECK(gets_to(&e, e.b.rank[i]) >= 1);
		if (bad[t] == LYING || bad[t] == FORGING)
			CHECK(st.rejects >= 3);
		env_down(&e);
	}
}

/* ---- K + M -------------------------------------------------------------- */

static void test_ec_honest(void)
{
	struct cl_fetch_stats st;
	struct env e;
	bool right;

	env_up(&e, 4, 2, BLOCK_LEN, 2, NO_HEDGE);
	CHECK(fetch(&e, BLOCK_LEN, &right) == 0 && right);
	/* The data fragments, from their homes: no decoding, no parity. */
	CHECK(gets_total(&e) == 4);
	for (unsigned i = 0; i < 4; i++)
		CHECK(fk.asked[e.b.rank[i]][i] == 1);
	cl_fetcher_stats(e.fe, &st);
	CHECK(st.blocks == 1 && st.rejects == 0 && st.hedges == 0);
	env_down(&e);
}

/* Up to M homes missing, down, lying or forging: the right bytes (the
 * liars outvoted); M + 1 of them: -EIO. Every pair of homes for M. */
static void test_ec_faults(void)
{
	static const enum behaviour bad[] = {MISSING, DOWN, LYING, FORGING};

	for (unsigned t = 0; t < sizeof(bad) / sizeof(bad[0]); t++)
		for (unsigned a = 0; a < 6; a++)
			for (unsigned b = a + 1; b < 6; b++) {
				struct cl_fetch_stats st;
				struct env e;
				bool right;

				env_up(&e, 4, 2, BLOCK_LEN, 100 + a * 6 + b,
				       NO_HEDGE);
				home(&e, a, bad[t]);
				home(&e, b, bad[t]);
				CHECK(fetch(&e, BLOCK_LEN, &right) == 0 &&
				      right);
				cl_fetcher_stats(e.fe, &st);
				if ((bad[t] == LYING || bad[t] == FORGING) &&
				    (a < 4 || b < 4))
					CHECK(st.rejects >= 1);
				env_down(&e);
			}
	for (unsigned t = 0; t < sizeof(bad) / sizeof(bad[0]); t++) {
		struct env e;
		bool right;

		env_up(&e, 4, 2, BLOCK_LEN, 200 + t, NO_HEDGE);
		home(&e, 0, bad[t]);
		home(&e, 2, bad[t]);
		home(&e, 5, bad[t]);
		CHECK(fetch(&e, BLOCK_LEN, &right) == -EIO && !right);
		env_down(&e);
	}
}

/* A node lies about the coding and its fragment comes first: it teaches
 * the wrong block length; the honest fragments disagree; the fetch starts
 * again without it and returns the right bytes. */
static void test_ec_coding_liar(void)
{
	struct cl_fetch_stats st;
	struct env e;
	bool right;

	env_up(&e, 4, 2, BLOCK_LEN, 3, NO_HEDGE);
	home(&e, 0, CODING);
	CHECK(fetch(&e, BLOCK_LEN, &right) == 0 && right);
	cl_fetcher_stats(e.fe, &st);
	CHECK(st.rejects >= 1);
	env_down(&e);
}

/* ---- hedging ------------------------------------------------------------ */

struct bg_fetch {
	struct env *e;
	int ret;
	bool right;
	pthread_t thread;
};

static void *bg_main(void *arg)
{
	struct bg_fetch *bg = arg;

	bg->ret = fetch(bg->e, BLOCK_LEN, &bg->right);
	return NULL;
}

/* Every node slow: the fetch asks K, and when none has answered after the
 * hedge delay, one more (a spare request); once the nodes answer, the
 * right bytes. */
static void test_hedge(unsigned k, unsigned m)
{
	struct cl_fetch_stats st;
	struct bg_fetch bg;
	struct env e;

	env_up(&e, k, m, BLOCK_LEN, 4 + k, HEDGE);
	for (unsigned i = 0; i < NNODES; i++)
		fk.node[i] = SLOW;
	bg.e = &e;
	REQUIRE(pthread_create(&bg.thread, NULL, bg_main, &bg) == 0);
	/* K asked at once, then the hedge while nothing has come back. */
	CHECK(fake_wait_gets(k + 1) == 0);
	CHECK(fake_completed() == 0);
	for (unsigned i = 0; i < NNODES; i++)
		fake_release(i);
	pthread_join(bg.thread, NULL);
	CHECK(bg.ret == 0 && bg.right);
	/* Counted once its GET is sent, after the fake saw it. */
	cl_fetcher_stats(e.fe, &st);
	CHECK(st.hedges >= 1);
	env_down(&e);
}

/* One home slow, the others fine: the spare request goes to another node
 * and the fetch completes from it without the slow one answering first. */
static void test_hedge_one_slow(void)
{
	struct cl_fetch_stats st;
	struct bg_fetch bg;
	struct env e;
	unsigned slow = 0;

	env_up(&e, 4, 2, BLOCK_LEN, 5, HEDGE);
	home(&e, slow, SLOW);
	bg.e = &e;
	REQUIRE(pthread_create(&bg.thread, NULL, bg_main, &bg) == 0);
	/* 4 data GETs, then the parity one that replaces the slow home. */
	CHECK(fake_wait_gets(5) == 0);
	/* The decode needs only the four that answered, but the fetch
	 * waits for every GET it sent: the slow one still holds it. */
	pthread_mutex_lock(&fk.lock);
	while (fk.completed < 4)
		pthread_cond_wait(&fk.cond, &fk.lock);
	pthread_mutex_unlock(&fk.lock);
	fake_release(e.b.rank[slow]);
	pthread_join(bg.thread, NULL);
	CHECK(bg.ret == 0 && bg.right);
	cl_fetcher_stats(e.fe, &st);
	CHECK(st.hedges >= 1);
	/* The spare request was for parity. */
	CHECK(fk.asked[e.b.rank[4]][4] + fk.asked[e.b.rank[5]][5] >= 1);
	env_down(&e);
}

int main(void)
{
	pthread_mutex_init(&fk.lock, NULL);
	blk_cond_init(&fk.cond);
	test_replicas_honest();
	test_replicas_one_good();
	test_replicas_none_good();
	test_ec_honest();
	test_ec_faults();
	test_ec_coding_liar();
	test_hedge(1, 2);
	test_hedge(4, 2);
	test_hedge_one_slow();
	printf("test-fetcher: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
