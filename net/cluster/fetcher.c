/* The fetcher: plan, collect, decode and outvote; see fetcher.h.
 *
 * Design note: any node may lie (DESIGN.md §5), and the reader's only
 * proof is the CID. Lies come in three kinds. A fragment whose checksum
 * does not match is dropped by the client, and the next node asked. A
 * copy (K = 1) that checks but hashes wrong is dropped here, and the next
 * node asked. Under K > 1 a wrong fragment with a resealed checksum only
 * shows when the decoded block hashes wrong: then every fragment the
 * placement has is asked for and every choice of K decoded until one
 * hashes right (decode_subsets), so up to M liars are outvoted. Last, a
 * node may lie about the coding itself (K, M, length): the first fragment
 * in teaches the coding, and honest fragments then disagree with it. When
 * the fetch fails that way, the teacher is banned for this block and the
 * fetch starts again without it, up to MAX_BANS times.
 *
 * Locks: each fetch has its own (struct fetch, below), which the GETs'
 * completions take; fe->lock guards the block counters only. No path
 * takes both. A fetch's lock is dropped around cl_fetch_ops.get and
 * released while it waits for replies (pthread_cond_timedwait).
 *
 * The nodes are reached only through struct cl_fetch_ops (fetcher.h). */
#include "net/cluster/fetcher.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/clock.h"
#include "blocks/base/log.h"
#include "ec/fragment.h"
#include "net/cluster/config.h"
#include "net/cluster/plan.h"

#define HEDGE_MS 300 /* default: a fetch asks the next node after this */
#define FETCH_DEADLINE_MS 20000 /* default */
#define MAX_BANS 3 /* nodes banned for teaching a wrong coding, per fetch */
/* Choices of K decoded at most when a fragment lies (C(14, 10) = 1001
 * for 10+4). */
#define SUBSET_TRIES 1024

struct cl_fetcher {
	struct cl_fetcher_config cfg; /* read-only */
	pthread_mutex_t lock;
	struct cl_fetch_stats st; /* lock: blocks, bytes, failures */
	atomic_uint_fast64_t rejects;
	atomic_uint_fast64_t hedges;
	atomic_uint_fast64_t gets_sent[CL_MAX_NODES]; /* fragment GETs */
};

/* What one fetch has asked and received. Only its thread touches it,
 * except @lock's fields, which the GETs' completions fill. */
struct fetch {
	pthread_mutex_t lock;
	pthread_cond_t cond;			  /* lock: a reply came */
	unsigned outstanding;			  /* lock */
	struct cl_frag_reply *done[CL_MAX_NODES]; /* lock: replies to look at */
	unsigned ndone;				  /* lock */

	const struct blk_cid *cid;
	unsigned rank[CL_MAX_NODES]; /* the block's placement */
	unsigned nrank;
	/* The block's coding: guessed from its length when the local store
	 * remembers it, else the policy's; then, from the first fragment
	 * that arrives (fragment headers are self-describing), known. */
	unsigned k0, m0; /* the guess */
	unsigned k, m;
	bool known;
	uint32_t block_len; /* once known */
	size_t frag_len;    /* once known */
	struct ec_codec
	    *codec; /* K > 1 and known: cfg.lay.codec or own_codec */
	struct ec_codec *own_codec;
	struct cl_cand cand[CL_MAX_NODES];
	unsigned nc, next;
	uint64_t asked[CL_MAX_NODES]; /* bit x of [node]: index x asked */
	uint8_t *frags[EC_MAX_FRAGS];
	struct cl_frag_reply *keep[EC_MAX_FRAGS]; /* owners of frags[] */
	unsigned have;
	/* Hostile nodes (design note above): who taught the coding, how
	 * many fragments disagreed with it, and nodes not to ask. */
	int teacher;
	unsigned disagreed;
	bool disagreeing[CL_MAX_NODES]; /* sent one that disagreed */
	bool banned[CL_MAX_NODES];
};

/* What check_frag finds, besides a negative errno. */
enum frag_check {
	FRAG_FITS = 0,	       /* of this block and of the coding known */
	FRAG_OTHER_CODING = 1, /* of this block, of another coding */
};

static bool peer_up(struct cl_fetcher *fe, unsigned i)
{
	return fe->cfg.ops.up(fe->cfg.ops.arg, i);
}

static void reply_free(struct cl_frag_reply *r)
{
	if (r)
		r->release(r);
}

/* A wrong answer seen (counted for the unmount log). */
static void count_reject(struct cl_fetcher *fe)
{
	atomic_fetch_add_explicit(&fe->rejects, 1, memory_order_relaxed);
}

/* The fetch order for the coding @f->k + @f->m (net/cluster/plan.h), from
 * what the node functions know of the nodes now. */
static void plan_fetch(struct cl_fetcher *fe, struct fetch *f)
{
	bool up[CL_MAX_NODES] = {0};
	uint64_t lat[CL_MAX_NODES] = {0};

	for (unsigned i = 0; i < f->nrank; i++) {
		unsigned n = f->rank[i];

		up[n] = peer_up(fe, n);
		lat[n] = fe->cfg.ops.latency_us(fe->cfg.ops.arg, n);
	}
	f->nc = cl_plan_fetch(f->rank, f->nrank, f->k, f->m, up, lat, f->cand,
			      CL_MAX_NODES);
	f->next = 0;
}

static void get_done(struct cl_frag_reply *r, void *arg)
{
	struct fetch *f = arg;

	pthread_mutex_lock(&f->lock);
	f->done[f->ndone++] = r;
	f->outstanding--;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* Ask the next candidate that can still help. Called with f->lock held
 * (dropped around the submission). false when none is left. */
static bool send_get(struct cl_fetcher *fe, struct fetch *f)
{
	while (f->next < f->nc) {
		const struct cl_cand *c = &f->cand[f->next++];

		if (f->frags[c->index] || f->banned[c->node] ||
		    (f->asked[c->node] >> c->index & 1) ||
		    !peer_up(fe, c->node))
			continue;
		f->asked[c->node] |= 1ull << c->index;
		f->outstanding++;
		atomic_fetch_add_explicit(&fe->gets_sent[c->node], 1,
					  memory_order_relaxed);
		pthread_mutex_unlock(&f->lock);
		int r = fe->cfg.ops.get(fe->cfg.ops.arg, c->node, f->cid,
					c->index, get_done, f);
		pthread_mutex_lock(&f->lock);
		if (r < 0) {
			f->outstanding--;
			if (r == -ENOMEM)
				return false;
			continue;
		}
		return true;
	}
	return false;
}

/* The codec for a block coded @k + @m (K > 1): the policy's, or one for
 * this fetch (written under another policy). 0, -EBADMSG (no such
 * coding), -ENOMEM. */
static int fetch_codec(struct cl_fetcher *fe, struct fetch *f, unsigned k,
		       unsigned m, struct ec_codec **out)
{
	struct ec_codec *pc = fe->cfg.lay.codec;

	if (pc && ec_codec_k(pc) == k && ec_codec_m(pc) == m) {
		*out = pc;
		return 0;
	}
	if (f->own_codec &&
	    (ec_codec_k(f->own_codec) != k || ec_codec_m(f->own_codec) != m)) {
		ec_codec_free(f->own_codec);
		f->own_codec = NULL;
	}
	if (!f->own_codec) {
		int ret = ec_codec_new(k, m, &f->own_codec);
		if (ret < 0)
			return ret == -EINVAL ? -EBADMSG : ret;
	}
	*out = f->own_codec;
	return 0;
}

/* Learn the block's coding from its first good fragment @h: find the
 * codec, check that the fragment is as long as that coding makes it
 * (ec_decode reads that many bytes of every fragment), and re-plan the
 * requests if the guess was wrong. 0; -EBADMSG when the lengths do not fit
 * the coding (a broken or hostile node: nothing is learnt); -ENOMEM. */
static int fetch_learn(struct cl_fetcher *fe, struct fetch *f,
		       const struct ec_frag_hdr *h)
{
	struct ec_codec *codec = NULL;

	if (h->k > 1) {
		int ret = fetch_codec(fe, f, h->k, h->m, &codec);
		if (ret < 0)
			return ret;
		if (h->frag_len != ec_frag_size(codec, h->block_len))
			return -EBADMSG;
	}
	f->known = true;
	f->codec = codec;
	f->block_len = h->block_len;
	f->frag_len = h->frag_len;
	if (h->k != f->k || h->m != f->m) {
		f->k = h->k;
		f->m = h->m;
		plan_fetch(fe, f);
	}
	return 0;
}

/* Check a fragment reply for the block of fetch @f: FRAG_FITS if it is a
 * fragment of this block of the coding and length known so far (anything,
 * before the first), FRAG_OTHER_CODING if it is one of this block that
 * disagrees with the coding learnt, else -ENOENT (the node has no such
 * fragment), another negative status, or -EBADMSG. Fragment checksums
 * were checked by the node functions. */
static int check_frag(const struct fetch *f, const struct cl_frag_reply *r)
{
	if (r->status < 0)
		return r->status;
	if (!blk_cid_equal(&r->frag.cid, f->cid) || r->len != r->frag.frag_len)
		return -EBADMSG;
	if (f->known &&
	    (r->frag.k != f->k || r->frag.m != f->m ||
	     r->frag.block_len != f->block_len || r->len != f->frag_len))
		return FRAG_OTHER_CODING;
	return FRAG_FITS;
}

/* A reply that is not kept: note who disagreed, or say what was wrong. */
static void drop_reply(struct cl_fetcher *fe, struct fetch *f,
		       const struct cl_frag_reply *res, int c)
{
	char name[BLK_CID_STR_MAX];

	if (c == FRAG_OTHER_CODING) {
		/* the liar is the teacher or this node: told at the end */
		f->disagreed++;
		f->disagreeing[res->node] = true;
	} else if (c < 0 && c != -ENOENT) {
		if (c == -EBADMSG)
			count_reject(fe);
		blk_cid_to_string(f->cid, name);
		blk_log_warn("fetch %s: node %s: %s", name,
			     fe->cfg.lay.names[res->node], strerror(-c));
	}
}

/* Look at one reply (f->lock held): keep its fragment, or drop it.
 * 0, or a negative errno when the fetch cannot go on (-ENOMEM). */
static int take_reply(struct cl_fetcher *fe, struct fetch *f,
		      struct cl_frag_reply *res)
{
	int c = check_frag(f, res);

	if (c == FRAG_FITS && !f->known) {
		c = fetch_learn(fe, f, &res->frag);
		if (c < 0 && c != -EBADMSG) {
			reply_free(res);
			return c;
		}
		if (c == 0)
			f->teacher = (int)res->node;
	}
	if (c == FRAG_FITS && f->k == 1 &&
	    !blk_cid_verify(f->cid, res->data, res->len)) {
		/* A copy with a right checksum and wrong bytes: a node
		 * lies. Ask another. */
		c = -EBADMSG;
	}
	if (c == FRAG_FITS && !f->frags[res->frag.index]) {
		f->frags[res->frag.index] = (uint8_t *)res->data;
		f->keep[res->frag.index] = res;
		f->have++;
		return 0;
	}
	drop_reply(fe, f, res, c);
	reply_free(res);
	return 0;
}

/* Fragments a collect() waits for: K, or with @all every one (K + M). */
static unsigned fetch_target(const struct fetch *f, bool all)
{
	return all ? f->k + f->m : f->k;
}

/* Ask and wait (f->lock held) until K fragments are in (with @all, K + M:
 * every fragment of the block; K and M as learnt on the way), no node is
 * left to ask, or @deadline passes. 0 or a negative errno (-ENOMEM). */
static int collect(struct cl_fetcher *fe, struct fetch *f, bool all,
		   const struct timespec *deadline)
{
	for (;;) {
		unsigned target = fetch_target(f, all);

		/* As many requests as fragments still missing (replies not
		 * looked at yet count as on their way)... */
		while (f->have + f->outstanding + f->ndone < target &&
		       send_get(fe, f))
			;
		if (f->have >= target || (f->outstanding == 0 && f->ndone == 0))
			return 0;
		if (f->ndone == 0) {
			struct timespec hedge;

			if (blk_deadline_passed(deadline))
				return 0;
			blk_deadline(&hedge, fe->cfg.hedge_ms);
			/* ...and one more each time they are slow. */
			if (pthread_cond_timedwait(&f->cond, &f->lock,
						   &hedge) == ETIMEDOUT &&
			    f->ndone == 0 && send_get(fe, f))
				atomic_fetch_add_explicit(&fe->hedges, 1,
							  memory_order_relaxed);
			continue;
		}
		while (f->ndone && f->have < fetch_target(f, all)) {
			int r = take_reply(fe, f, f->done[--f->ndone]);
			if (r < 0)
				return r;
		}
	}
}

/* Wait for the requests still out (bounded by the nodes' timeouts) and
 * drop every reply and fragment: the fetch starts afresh. f->lock held. */
static void fetch_reset(struct fetch *f)
{
	while (f->outstanding)
		pthread_cond_wait(&f->cond, &f->lock);
	while (f->ndone)
		reply_free(f->done[--f->ndone]);
	for (unsigned i = 0; i < EC_MAX_FRAGS; i++) {
		reply_free(f->keep[i]);
		f->keep[i] = NULL;
		f->frags[i] = NULL;
	}
	f->have = 0;
}

/* Decode from @k of the fragments at hand, trying every choice of k until
 * one gives the block named by the CID: fragments with right checksums
 * and wrong bytes (a hostile node that reseals its lies) are left out that
 * way. At most SUBSET_TRIES choices. 0 with the block in @block, or
 * -EIO. */
static int decode_subsets(struct fetch *f, void *block, unsigned *tries)
{
	unsigned idx[EC_MAX_FRAGS], n = 0, pick[EC_MAX_FRAGS], k = f->k;

	*tries = 0;
	for (unsigned i = 0; i < f->k + f->m && i < EC_MAX_FRAGS; i++)
		if (f->frags[i])
			idx[n++] = i;
	if (n < k)
		return -EIO;
	cl_first_choice(pick, k);
	do {
		uint8_t *sub[EC_MAX_FRAGS] = {0};

		for (unsigned i = 0; i < k; i++)
			sub[idx[pick[i]]] = f->frags[idx[pick[i]]];
		(*tries)++;
		if (ec_decode(f->codec, sub, f->block_len, block) == 0 &&
		    blk_cid_verify(f->cid, block, f->block_len))
			return 0;
	} while (*tries < SUBSET_TRIES && cl_next_choice(pick, k, n));
	return -EIO;
}

/* A decode hashed wrong: ask for every fragment and outvote the liars
 * (decode_subsets). f->lock held. 0, -EIO or -ENOMEM. */
static int outvote(struct cl_fetcher *fe, struct fetch *f,
		   const struct timespec *deadline, uint8_t *block)
{
	char name[BLK_CID_STR_MAX];
	unsigned tries;
	int ret;

	count_reject(fe);
	ret = collect(fe, f, true, deadline);
	if (ret < 0)
		return ret;
	ret = decode_subsets(f, block, &tries);
	blk_cid_to_string(f->cid, name);
	blk_log_warn("fetch %s: fragments with right checksums decode to "
		     "wrong bytes; %s after %u tries of %u of %u fragments",
		     name, ret == 0 ? "right" : "still wrong", tries, f->k,
		     f->have);
	return ret;
}

/* The block from the fragments collected (f->lock held), into a new
 * *@block: copied (K = 1, checked already), decoded, or, when the decoded
 * bytes hash wrong, decoded again from every fragment the placement has
 * (outvote). 0, -EIO or -ENOMEM. */
static int fetch_assemble(struct cl_fetcher *fe, struct fetch *f,
			  const struct timespec *deadline, uint8_t **block)
{
	if (!f->known || f->have < f->k)
		return -EIO;
	free(*block);
	*block = malloc(f->block_len);
	if (!*block)
		return -ENOMEM;
	if (f->k == 1) {
		for (unsigned i = 0; i < EC_MAX_FRAGS; i++)
			if (f->frags[i]) {
				memcpy(*block, f->frags[i], f->block_len);
				return 0;
			}
		return -EIO;
	}
	if (ec_decode(f->codec, f->frags, f->block_len, *block) == 0 &&
	    blk_cid_verify(f->cid, *block, f->block_len))
		return 0;
	/* A fragment lies: ask for all of them and outvote it. */
	return outvote(fe, f, deadline, *block);
}

/* A new fetch of @cid: its placement and its coding guessed. NULL with
 * *@err set (-ENOMEM, or pl_rank's error). */
static struct fetch *fetch_new(struct cl_fetcher *fe, const struct blk_cid *cid,
			       int *err)
{
	struct fetch *f = calloc(1, sizeof(*f));
	uint64_t refs;
	uint32_t blen;
	bool local;
	int r;

	if (!f) {
		*err = -ENOMEM;
		return NULL;
	}
	r = pl_rank(fe->cfg.lay.pl, cid, f->rank, CL_MAX_NODES);
	if (r < 0) {
		free(f);
		*err = r;
		return NULL;
	}
	f->nrank = (unsigned)r;
	f->cid = cid;
	f->k0 = fe->cfg.lay.k;
	f->m0 = fe->cfg.lay.m;
	if (fe->cfg.lay.store &&
	    blk_store_info(fe->cfg.lay.store, cid, &refs, &blen, &local) == 0)
		cl_layout_coding(&fe->cfg.lay, blen, &f->k0, &f->m0);
	pthread_mutex_init(&f->lock, NULL);
	blk_cond_init(&f->cond);
	return f;
}

static void fetch_free(struct fetch *f)
{
	ec_codec_free(f->own_codec);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	free(f);
}

/* Collect and assemble (f->lock held), starting again without the node
 * that taught the coding when honest fragments disagreed with it (design
 * note above). 0 with the block in *@block, -EIO, -ENOMEM. */
static int fetch_rounds(struct cl_fetcher *fe, struct fetch *f, uint8_t **block)
{
	struct timespec deadline;
	char name[BLK_CID_STR_MAX];
	unsigned bans = 0;
	int ret;

	blk_deadline(&deadline, fe->cfg.deadline_ms);
	for (;;) {
		f->k = f->k0;
		f->m = f->m0;
		f->known = false;
		f->codec = NULL;
		f->teacher = -1;
		f->disagreed = 0;
		memset(f->disagreeing, 0, sizeof(f->disagreeing));
		memset(f->asked, 0, sizeof(f->asked));
		plan_fetch(fe, f);
		ret = collect(fe, f, false, &deadline);
		if (ret < 0)
			return ret;
		ret = fetch_assemble(fe, f, &deadline, block);
		if (ret == -ENOMEM)
			return ret;
		if (ret == 0 || !f->disagreed || f->teacher < 0 ||
		    bans >= MAX_BANS || blk_deadline_passed(&deadline))
			return ret;
		/* The coding was taught by a liar (design note above). */
		blk_cid_to_string(f->cid, name);
		blk_log_warn("fetch %s: %u fragments disagree with the coding "
			     "node %s gave; asking again without it",
			     name, f->disagreed, fe->cfg.lay.names[f->teacher]);
		count_reject(fe);
		f->banned[f->teacher] = true;
		bans++;
		fetch_reset(f);
	}
}

/* The coding that decoded the block right is the truth: who disagreed
 * with it lied. */
static void report_disagreeing(struct cl_fetcher *fe, const struct fetch *f)
{
	char name[BLK_CID_STR_MAX];

	blk_cid_to_string(f->cid, name);
	for (unsigned i = 0; i < CL_MAX_NODES; i++)
		if (f->disagreeing[i]) {
			count_reject(fe);
			blk_log_warn("fetch %s: node %s: fragment of another "
				     "coding",
				     name, fe->cfg.lay.names[i]);
		}
}

int cl_fetcher_fetch(struct cl_fetcher *fe, const struct blk_cid *cid,
		     void **data, size_t *len)
{
	char name[BLK_CID_STR_MAX];
	uint8_t *block = NULL;
	unsigned have, k;
	struct fetch *f;
	int ret;

	f = fetch_new(fe, cid, &ret);
	if (!f)
		return ret;
	pthread_mutex_lock(&f->lock);
	ret = fetch_rounds(fe, f, &block);
	if (ret == 0 && f->disagreed)
		report_disagreeing(fe, f);
	have = f->have;
	k = f->k;
	fetch_reset(f);
	pthread_mutex_unlock(&f->lock);

	if (ret == 0) {
		*data = block;
		*len = f->block_len;
	} else {
		free(block);
	}
	fetch_free(f);
	pthread_mutex_lock(&fe->lock);
	if (ret == 0) {
		fe->st.blocks++;
		fe->st.bytes += *len;
	} else {
		fe->st.failures++;
	}
	pthread_mutex_unlock(&fe->lock);
	if (ret < 0) {
		blk_cid_to_string(cid, name);
		blk_log_err("fetch %s: %u of %u fragments found: %s", name,
			    have, k, strerror(-ret));
		ret = -EIO;
	}
	return ret;
}

int cl_fetcher_new(const struct cl_fetcher_config *cfg, struct cl_fetcher **out)
{
	struct cl_fetcher *fe = calloc(1, sizeof(*fe));

	*out = NULL;
	if (!fe)
		return -ENOMEM;
	fe->cfg = *cfg;
	if (!fe->cfg.hedge_ms)
		fe->cfg.hedge_ms = HEDGE_MS;
	if (!fe->cfg.deadline_ms)
		fe->cfg.deadline_ms = FETCH_DEADLINE_MS;
	pthread_mutex_init(&fe->lock, NULL);
	*out = fe;
	return 0;
}

void cl_fetcher_free(struct cl_fetcher *fe)
{
	if (!fe)
		return;
	pthread_mutex_destroy(&fe->lock);
	free(fe);
}

void cl_fetcher_stats(struct cl_fetcher *fe, struct cl_fetch_stats *st)
{
	pthread_mutex_lock(&fe->lock);
	*st = fe->st;
	pthread_mutex_unlock(&fe->lock);
	st->rejects = atomic_load(&fe->rejects);
	st->hedges = atomic_load(&fe->hedges);
}

uint64_t cl_fetcher_gets_sent(struct cl_fetcher *fe, unsigned node)
{
	return node < CL_MAX_NODES ? atomic_load(&fe->gets_sent[node]) : 0;
}
