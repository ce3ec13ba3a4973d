/* Tests of the uploader and the barrier (net/cluster/uploader.c): their state
 * transitions, with a real new-block log (a blk_db in a temporary
 * directory) and the nodes faked at struct cl_node_ops. */

#include "net/cluster/uploader.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blocks/base/clock.h"
#include "tests/unit/check.h"

#define NNODES 5
#define MAXBLOCKS 32
#define MAXSENDS 256

/* The engine's family, registered first: handle 0. */
enum { CF_REPAIR = 0 };
static const char *const names[NNODES] = {"node0", "node1", "node2", "node3",
					  "node4"};

/* ---- fake nodes --------------------------------------------------------- */

struct fake_node {
	bool down;	 /* up() says false */
	bool hold;	 /* sends wait until released */
	int put_status;	 /* what a send completes with */
	int sync_status; /* 0, -errno, or CL_SYNC_NO_ANSWER */
	unsigned sends, syncs;
	unsigned done;			/* completions that have run */
	unsigned ups;			/* up() asked about it */
	struct blk_cid acked[MAXSENDS]; /* fragments it acknowledged */
	unsigned nacked;
};

struct pending {
	struct cl_send *s;
	unsigned node;
	struct blk_cid cid;
	struct net_buf *buf; /* the fake's reference */
};

/* Sends complete on the fake's own thread, as they do on the client's
 * I/O thread. fk.lock guards everything; it is never held while a
 * completion runs. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fake_node node[NNODES];
	struct pending q[MAXSENDS];
	unsigned nq;
	bool stop;
	pthread_t thread;
} fk;

static int fake_send(void *arg, unsigned node,
		     const uint8_t hdr[EC_FRAG_HDR_LEN], struct net_buf *buf,
		     const void *data, size_t len, struct cl_send *s)
{
	struct ec_frag_hdr h;

	(void)arg;
	REQUIRE(node < NNODES);
	REQUIRE(ec_frag_hdr_parse(hdr, EC_FRAG_HDR_LEN, &h) == 0);
	REQUIRE(ec_frag_verify(&h, data, len) == 0);
	pthread_mutex_lock(&fk.lock);
	REQUIRE(fk.nq < MAXSENDS);
	fk.node[node].sends++;
	fk.q[fk.nq++] = (struct pending){s, node, h.cid, net_buf_ref(buf)};
	pthread_cond_signal(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
	return 0;
}

static int fake_sync(void *arg, const bool *nodes, unsigned n,
		     unsigned timeout_ms, int *status)
{
	(void)arg;
	(void)timeout_ms;
	pthread_mutex_lock(&fk.lock);
	for (unsigned i = 0; i < n; i++) {
		if (!nodes[i])
			continue;
		fk.node[i].syncs++;
		if (fk.node[i].sync_status != CL_SYNC_NO_ANSWER)
			status[i] = fk.node[i].sync_status;
	}
	pthread_mutex_unlock(&fk.lock);
	return 0;
}

static bool fake_up(void *arg, unsigned node)
{
	bool up;

	(void)arg;
	pthread_mutex_lock(&fk.lock);
	fk.node[node].ups++;
	up = !fk.node[node].down;
	pthread_mutex_unlock(&fk.lock);
	return up;
}

/* The first send that may complete now, taken off the queue. */
static bool fake_pop(struct pending *out, int *status)
{
	for (unsigned i = 0; i < fk.nq; i++) {
		struct fake_node *n = &fk.node[fk.q[i].node];

		if (n->hold)
			continue;
		*out = fk.q[i];
		*status = n->put_status;
		if (*status == 0 && n->nacked < MAXSENDS)
			n->acked[n->nacked++] = out->cid;
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
		struct pending p;
		int status;

		if (!fake_pop(&p, &status)) {
			pthread_cond_wait(&fk.cond, &fk.lock);
			continue;
		}
		pthread_mutex_unlock(&fk.lock);
		net_buf_unref(p.buf);
		p.s->done(p.s, status);
		pthread_mutex_lock(&fk.lock);
		fk.node[p.node].done++;
	}
	pthread_mutex_unlock(&fk.lock);
	return NULL;
}

static void fake_start(void)
{
	memset(&fk.node, 0, sizeof(fk.node));
	fk.nq = 0;
	fk.stop = false;
	REQUIRE(pthread_create(&fk.thread, NULL, fake_main, NULL) == 0);
}

/* Stop the thread, completing what is still queued with -ECANCELED (as
 * net_client_free does). */
static void fake_stop(void)
{
	pthread_mutex_lock(&fk.lock);
	fk.stop = true;
	pthread_cond_signal(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
	pthread_join(fk.thread, NULL);
	for (unsigned i = 0; i < fk.nq; i++) {
		net_buf_unref(fk.q[i].buf);
		fk.q[i].s->done(fk.q[i].s, -ECANCELED);
	}
	fk.nq = 0;
}

/* Change a node under the lock (and let held sends go). */
static void fake_set(unsigned node, bool down, bool hold, int put_status,
		     int sync_status)
{
	pthread_mutex_lock(&fk.lock);
	fk.node[node].down = down;
	fk.node[node].hold = hold;
	fk.node[node].put_status = put_status;
	fk.node[node].sync_status = sync_status;
	pthread_cond_signal(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
}

/* A counter guarded by fk.lock (of fk, or prog below), read under it. */
static unsigned fake_read(const unsigned *counter)
{
	unsigned n;

	pthread_mutex_lock(&fk.lock);
	n = *counter;
	pthread_mutex_unlock(&fk.lock);
	return n;
}

static unsigned fake_count(unsigned node, bool syncs)
{
	unsigned n;

	pthread_mutex_lock(&fk.lock);
	n = syncs ? fk.node[node].syncs : fk.node[node].sends;
	pthread_mutex_unlock(&fk.lock);
	return n;
}

static bool fake_acked(unsigned node, const struct blk_cid *cid)
{
	bool found = false;

	pthread_mutex_lock(&fk.lock);
	for (unsigned i = 0; i < fk.node[node].nacked; i++)
		found |= blk_cid_equal(&fk.node[node].acked[i], cid);
	pthread_mutex_unlock(&fk.lock);
	return found;
}

static unsigned fake_queued(void)
{
	unsigned n;

	pthread_mutex_lock(&fk.lock);
	n = fk.nq;
	pthread_mutex_unlock(&fk.lock);
	return n;
}

/* ---- the store and the uploader ----------------------------------------- */

struct env {
	char dir[64];
	struct blk_db *db;
	struct blk_store *st;
	struct pl_map *pl;
	struct cl_uploader *u;
	struct blk_cid cid[MAXBLOCKS];
	unsigned rank[MAXBLOCKS][NNODES];
	unsigned nblocks;
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

/* Stores opened from now on re-hash every block read (-EBADMSG). */
static bool env_verify;

/* The fake cl_uploader_config.heal: the nodes give back @heal_data when
 * heal_give is set; counts its calls. */
static struct {
	struct blk_store *st;
	const void *data;
	size_t len;
	bool give;
	unsigned calls;
} hl;

static int fake_heal(void *arg, const struct blk_cid *cid)
{
	(void)arg;
	__atomic_add_fetch(&hl.calls, 1, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&hl.give, __ATOMIC_SEQ_CST))
		return -ENOENT;
	return blk_store_rewrite(hl.st, cid, hl.data, hl.len);
}

/* A store with the new-block log, a placement over @nnodes nodes and fake
 * nodes; no uploader yet (env_start). */
static void env_open_store(struct env *e, unsigned nnodes)
{
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};
	struct blk_store_options so = {.newlog = true,
				       .verify_on_read = env_verify};
	struct pl_node nodes[NNODES];
	char path[96], err[256] = "";

	memset(e, 0, sizeof(*e));
	strcpy(e->dir, "/tmp/test-uploader.XXXXXX");
	REQUIRE(mkdtemp(e->dir));
	snprintf(path, sizeof(path), "%s/db", e->dir);
	REQUIRE(blk_cf_register(&reg, "repair", 0) == CF_REPAIR);
	REQUIRE(blk_store_register(&reg, &so) == 0);
	REQUIRE(blk_db_open(path, &o, &e->db, err, sizeof(err)) == 0);
	REQUIRE(blk_store_open(e->db, &so, &e->st, err, sizeof(err)) == 0);
	for (unsigned i = 0; i < nnodes; i++)
		nodes[i] = (struct pl_node){names[i], names[i], 1.0};
	REQUIRE(pl_map_new(nodes, nnodes, &e->pl) == 0);
	fake_start();
}

/* Start the uploader of @e, for replicas:@copies. */
static void env_start(struct env *e, unsigned nnodes, unsigned copies,
		      unsigned sync_timeout_ms)
{
	struct cl_uploader_config uc = {
	    .lay = {.store = e->st,
		    .pl = e->pl,
		    .names = names,
		    .n = nnodes,
		    .k = 1,
		    .m = copies - 1},
	    .repair_cf = CF_REPAIR,
	    .sync_timeout_ms = sync_timeout_ms,
	    .retry_ms = 100,
	    .ops = {fake_send, fake_sync, fake_up, NULL},
	    .heal = fake_heal,
	};
	REQUIRE(cl_uploader_new(&uc, &e->u) == 0);
}

/* A store, fake nodes, and an uploader for replicas:@copies. */
static void env_open(struct env *e, unsigned nnodes, unsigned copies,
		     unsigned sync_timeout_ms)
{
	env_open_store(e, nnodes);
	env_start(e, nnodes, copies, sync_timeout_ms);
}

static void env_close(struct env *e)
{
	cl_uploader_stop(e->u);
	fake_stop();
	cl_uploader_free(e->u);
	pl_map_free(e->pl);
	blk_store_close(e->st);
	blk_db_close(e->db);
	nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Commit block number @seed (its bytes derived from it) and kick the
 * uploader. Returns its index in e->cid. */
static unsigned commit_block(struct env *e, uint64_t seed)
{
	uint8_t data[4096];
	unsigned i = e->nblocks++;
	struct blk_txn *t;

	REQUIRE(i < MAXBLOCKS);
	fill_random(data, sizeof(data), seed);
	blk_cid_compute(&e->cid[i], BLK_CODEC_RAW, data, sizeof(data));
	REQUIRE(pl_rank(e->pl, &e->cid[i], e->rank[i], NNODES) > 0);
	t = blk_txn_new(e->st);
	REQUIRE(t && blk_txn_ref(t, &e->cid[i], data, sizeof(data)) == 0);
	REQUIRE(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	if (e->u)
		cl_uploader_kick(e->u);
	return i;
}

/* A block whose first @homes placement nodes include @node. */
static unsigned commit_block_on(struct env *e, unsigned node, unsigned homes)
{
	for (uint64_t seed = 1000;; seed++) {
		struct blk_cid cid;
		unsigned rank[NNODES];
		uint8_t data[4096];

		fill_random(data, sizeof(data), seed);
		blk_cid_compute(&cid, BLK_CODEC_RAW, data, sizeof(data));
		REQUIRE(pl_rank(e->pl, &cid, rank, NNODES) > 0);
		for (unsigned h = 0; h < homes; h++)
			if (rank[h] == node)
				return commit_block(e, seed);
	}
}

static unsigned log_records(struct env *e)
{
	struct blk_iter *it =
	    blk_iter_new(e->db, blk_store_newlog_cf(e->st), NULL, 0, NULL, 0);
	unsigned n = 0;

	for (; it && blk_iter_valid(it); blk_iter_next(it))
		n++;
	blk_iter_free(it);
	return n;
}

static bool repair_marked(struct env *e, const struct blk_cid *cid)
{
	uint8_t key[BLK_CID_MAX_BYTES];
	size_t klen = blk_cid_to_bytes(cid, key);
	void *val = NULL;
	size_t vlen = 0;
	bool marked = blk_db_get(e->db, CF_REPAIR, key, klen, &val, &vlen) == 0;

	free(val);
	return marked;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait (at most 5 s) until the backlog is @want. */
static bool wait_backlog(struct env *e, uint64_t want)
{
	for (int i = 0; i < 500; i++) {
		if (cl_uploader_backlog(e->u) == want)
			return true;
		usleep(10000);
	}
	return false;
}

/* Wait (at most 5 s) until @n sends are queued at the fake. */
static bool wait_queued(unsigned n)
{
	for (int i = 0; i < 500; i++) {
		if (fake_queued() >= n)
			return true;
		usleep(10000);
	}
	return false;
}

/* Wait (at most 5 s) until a counter guarded by fk.lock is at least @n:
 * completions run for a node's sends (.done), times the uploader asked
 * whether a node is up (.ups), progress steps told (prog.steps). */
static bool wait_counter(const unsigned *counter, unsigned n)
{
	for (int i = 0; i < 500; i++) {
		if (fake_read(counter) >= n)
			return true;
		usleep(10000);
	}
	return false;
}

/* ---- tests -------------------------------------------------------------- */

/* Nothing written: the barrier passes at once and syncs nobody. */
static void test_barrier_idle(void)
{
	struct env e;

	env_open(&e, NNODES, 3, 2000);
	CHECK(cl_uploader_barrier(e.u) == 0);
	for (unsigned i = 0; i < NNODES; i++)
		CHECK(fake_count(i, true) == 0);
	env_close(&e);
}

/* Blocks acknowledged by all their homes leave the log, the watermark
 * passes them, and the barrier syncs exactly the nodes that took
 * fragments. */
static void test_all_homes(void)
{
	struct cl_upload_stats st;
	bool took[NNODES] = {0};
	struct env e;

	env_open(&e, NNODES, 3, 5000);
	for (unsigned b = 0; b < 8; b++)
		commit_block(&e, b + 1);
	CHECK(cl_uploader_barrier(e.u) == 0);
	CHECK(cl_uploader_backlog(e.u) == 0);
	CHECK(log_records(&e) == 0);
	for (unsigned b = 0; b < e.nblocks; b++) {
		for (unsigned r = 0; r < NNODES; r++)
			CHECK(fake_acked(e.rank[b][r], &e.cid[b]) == (r < 3));
		for (unsigned r = 0; r < 3; r++)
			took[e.rank[b][r]] = true;
		CHECK(!repair_marked(&e, &e.cid[b]));
	}
	for (unsigned i = 0; i < NNODES; i++)
		CHECK((fake_count(i, true) > 0) == took[i]);
	cl_uploader_stats(e.u, &st);
	CHECK(st.blocks == 8 && st.bytes == 8 * 4096);
	CHECK(st.misplaced == 0 && st.failures == 0);
	/* a second barrier has nothing to sync */
	for (unsigned i = 0; i < NNODES; i++)
		fake_set(i, false, false, 0, -EIO);
	CHECK(cl_uploader_barrier(e.u) == 0);
	env_close(&e);
}

/* A block stays in the log, and the watermark below it, until its last
 * home acknowledges; the barrier meanwhile fails after its deadline. */
static void test_waits_for_last_ack(void)
{
	struct env e;
	unsigned b, held;
	uint64_t t0;

	env_open(&e, NNODES, 3, 300);
	held = 2;
	fake_set(held, false, true, 0, 0);
	b = commit_block_on(&e, held, 3);
	/* The uploader has run: the held home has its send, and the other
	 * two homes' completions have run. */
	CHECK(wait_queued(1));
	for (unsigned r = 0; r < 3; r++)
		if (e.rank[b][r] != held)
			CHECK(wait_counter(&fk.node[e.rank[b][r]].done, 1));
	CHECK(cl_uploader_backlog(e.u) == 1);
	CHECK(log_records(&e) == 1);
	t0 = now_ms();
	CHECK(cl_uploader_barrier(e.u) == -EIO);
	CHECK(now_ms() - t0 >= 250);
	CHECK(log_records(&e) == 1);
	fake_set(held, false, false, 0, 0);
	CHECK(wait_backlog(&e, 0));
	CHECK(log_records(&e) == 0);
	CHECK(fake_acked(held, &e.cid[b]));
	CHECK(cl_uploader_barrier(e.u) == 0);
	env_close(&e);
}

/* A home that refuses (full) or is down: its fragment goes to the first
 * spare, and the block is marked for repair. */
static void test_spare(bool down)
{
	struct cl_upload_stats st;
	unsigned bad = 1, b, r;
	struct env e;

	env_open(&e, NNODES, 3, 5000);
	fake_set(bad, down, false, down ? 0 : -ENOSPC, 0);
	b = commit_block_on(&e, bad, 3);
	CHECK(cl_uploader_barrier(e.u) == 0);
	CHECK(log_records(&e) == 0);
	for (r = 0; r < 3; r++)
		CHECK(fake_acked(e.rank[b][r], &e.cid[b]) ==
		      (e.rank[b][r] != bad));
	CHECK(fake_acked(e.rank[b][3], &e.cid[b]));
	CHECK(!fake_acked(e.rank[b][4], &e.cid[b]));
	CHECK(fake_count(bad, false) == (down ? 0u : 1u));
	CHECK(fake_count(bad, true) == 0);
	CHECK(repair_marked(&e, &e.cid[b]));
	cl_uploader_stats(e.u, &st);
	CHECK(st.blocks == 1 && st.misplaced == 1);
	CHECK(st.failures == (down ? 0u : 1u));
	env_close(&e);
}

/* No node left to take a fragment: the block waits, and goes once the
 * node is back (tried again every retry_ms). */
static void test_stall_and_retry(void)
{
	struct env e;
	unsigned b;

	env_open(&e, 3, 3, 5000);
	fake_set(2, true, false, 0, 0);
	b = commit_block(&e, 7);
	/* The uploader has run and tried again: the live nodes' sends are
	 * done, and it asked about the down node at the first try and at
	 * two retries since. */
	CHECK(wait_counter(&fk.node[0].done, 1));
	CHECK(wait_counter(&fk.node[1].done, 1));
	CHECK(wait_counter(&fk.node[2].ups, 3));
	CHECK(cl_uploader_backlog(e.u) == 1);
	CHECK(fake_count(2, false) == 0);
	fake_set(2, false, false, 0, 0);
	CHECK(cl_uploader_barrier(e.u) == 0);
	CHECK(log_records(&e) == 0);
	for (unsigned i = 0; i < 3; i++)
		CHECK(fake_acked(i, &e.cid[b]));
	CHECK(!repair_marked(&e, &e.cid[b]));
	env_close(&e);
}

/* A node that took fragments and never syncs (no answer, or an error):
 * the barrier asks it again until its deadline, then fails with -EIO;
 * the next barrier asks it again and passes once it syncs. */
static void test_sync_fails(int status)
{
	unsigned bad = 3, syncs;
	struct env e;
	uint64_t t0;

	env_open(&e, NNODES, 3, 500);
	fake_set(bad, false, false, 0, status);
	commit_block_on(&e, bad, 3);
	t0 = now_ms();
	CHECK(cl_uploader_barrier(e.u) == -EIO);
	CHECK(now_ms() - t0 >= 450);
	syncs = fake_count(bad, true);
	CHECK(syncs >= 2);
	CHECK(log_records(&e) == 0);
	fake_set(bad, false, false, 0, 0);
	CHECK(cl_uploader_barrier(e.u) == 0);
	CHECK(fake_count(bad, true) == syncs + 1);
	env_close(&e);
}

/* What the uploader told its progress function. fk.lock guards it. */
static struct {
	unsigned steps, ends;
	uint64_t first_done, first_total, last_done, last_total;
	char what[32];
} prog;

static bool fake_progress(void *arg, uint64_t done, uint64_t total,
			  const char *what)
{
	(void)arg;
	pthread_mutex_lock(&fk.lock);
	if (!what) {
		prog.ends++;
		prog.last_done = done;
		prog.last_total = total;
	} else if (!prog.steps++) {
		prog.first_done = done;
		prog.first_total = total;
		snprintf(prog.what, sizeof(prog.what), "%s", what);
	}
	pthread_mutex_unlock(&fk.lock);
	return true;
}

struct bg_barrier {
	struct cl_uploader *u;
	int ret;
	pthread_t thread;
};

static void *bg_barrier_main(void *arg)
{
	struct bg_barrier *bg = arg;

	bg->ret = cl_uploader_barrier(bg->u);
	return NULL;
}

/* Unmount: the barrier drains the queue; stopping leaves what is not
 * done in the log for the next uploader, which resumes there, and drains
 * it at its own unmount, telling the progress function. */
static void test_stop_keeps_log(void)
{
	struct env e;

	env_open(&e, NNODES, 3, 300);
	for (unsigned i = 0; i < NNODES; i++)
		fake_set(i, false, true, 0, 0);
	commit_block(&e, 11);
	commit_block(&e, 12);
	CHECK(wait_queued(6));
	cl_uploader_closing(e.u);
	CHECK(cl_uploader_barrier(e.u) == -EIO);
	CHECK(cl_uploader_backlog(e.u) == 2);
	cl_uploader_stop(e.u);
	fake_stop();
	CHECK(log_records(&e) == 2);
	cl_uploader_free(e.u);

	/* The blocks do not go until the drain has shown its first step. */
	fake_start();
	for (unsigned i = 0; i < NNODES; i++)
		fake_set(i, false, true, 0, 0);
	struct cl_uploader_config uc = {
	    .lay = {.store = e.st,
		    .pl = e.pl,
		    .names = names,
		    .n = NNODES,
		    .k = 1,
		    .m = 2},
	    .repair_cf = CF_REPAIR,
	    .sync_timeout_ms = 5000,
	    .ops = {fake_send, fake_sync, fake_up, NULL},
	    .progress = fake_progress,
	};
	REQUIRE(cl_uploader_new(&uc, &e.u) == 0);
	CHECK(cl_uploader_backlog(e.u) == 2);
	cl_uploader_closing(e.u);
	struct bg_barrier bg = {.u = e.u};
	REQUIRE(pthread_create(&bg.thread, NULL, bg_barrier_main, &bg) == 0);
	CHECK(wait_counter(&prog.steps, 1));
	for (unsigned i = 0; i < NNODES; i++)
		fake_set(i, false, false, 0, 0);
	pthread_join(bg.thread, NULL);
	CHECK(bg.ret == 0);
	CHECK(log_records(&e) == 0);
	CHECK(prog.steps >= 1 && prog.ends == 1);
	CHECK(!strcmp(prog.what, "uploading"));
	CHECK(prog.first_done == 0 && prog.first_total == 2);
	CHECK(prog.last_done == 2 && prog.last_total == 2);
	env_close(&e);
}

/* Issue 20 item 3: the store references a queued block whose bytes are
 * not here (evicted before its upload, as a store written before the
 * store refused that may hold one): its job is not done, the barrier
 * fails, until the bytes are back. A block deleted before its upload is
 * done at once. */
static void test_evicted_not_done(void)
{
	uint8_t seq1[8] = {0, 0, 0, 0, 0, 0, 0, 1}, key[BLK_CID_MAX_BYTES];
	uint8_t data[4096];
	unsigned gone, a;
	struct blk_txn *t;
	struct env e;
	size_t klen;
	uint64_t t0;

	env_open_store(&e, NNODES);
	gone = commit_block(&e, 31); /* record 0 */
	t = blk_txn_new(e.st);
	REQUIRE(t && blk_txn_unref(t, &e.cid[gone]) == 0);
	REQUIRE(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	CHECK(blk_store_has(e.st, &e.cid[gone]) == 0);
	a = commit_block(&e, 32); /* record 1 */
	/* a was handed on once (its record retired) and evicted, and a
	 * record names it again */
	t = blk_txn_new(e.st);
	REQUIRE(t);
	blk_txn_delete(t, blk_store_newlog_cf(e.st), seq1, 8);
	REQUIRE(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	CHECK(blk_store_evict(e.st, &e.cid[a]) == 4096);
	klen = blk_cid_to_bytes(&e.cid[a], key);
	CHECK(blk_db_put(e.db, blk_store_newlog_cf(e.st), seq1, 8, key, klen) ==
	      0);
	CHECK(blk_store_newlog_head(e.st) == 2);

	env_start(&e, NNODES, 3, 300);
	CHECK(wait_backlog(&e, 1)); /* the deleted block is done */
	t0 = now_ms();
	CHECK(cl_uploader_barrier(e.u) == -EIO);
	CHECK(now_ms() - t0 >= 250);
	CHECK(cl_uploader_backlog(e.u) == 1);
	CHECK(log_records(&e) == 1);
	for (unsigned i = 0; i < NNODES; i++)
		CHECK(fake_count(i, false) == 0);

	/* The bytes are back (a read fetched them): the job goes on. */
	fill_random(data, sizeof(data), 32);
	CHECK(blk_store_fill(e.st, &e.cid[a], data, sizeof(data)) == 0);
	CHECK(wait_backlog(&e, 0));
	CHECK(cl_uploader_barrier(e.u) == 0);
	CHECK(log_records(&e) == 0);
	for (unsigned r = 0; r < NNODES; r++)
		CHECK(fake_acked(e.rank[a][r], &e.cid[a]) == (r < 3));
	env_close(&e);
}

/* A block whose local copy is damaged when its upload reads it: the
 * uploader asks for it back from the nodes (cfg.heal); until they give
 * it, the job waits, is not done, and is tried again; then it goes out
 * with the right bytes. */
static void test_damaged_healed(void)
{
	uint8_t data[4096], bad[4096], key[BLK_CID_MAX_BYTES];
	unsigned a;
	struct env e;
	size_t klen;

	env_verify = true;
	env_open_store(&e, NNODES);
	env_verify = false;
	a = commit_block(&e, 41);
	fill_random(data, sizeof(data), 41);
	memcpy(bad, data, sizeof(bad));
	bad[100] ^= 0x20;
	klen = blk_cid_to_bytes(&e.cid[a], key);
	CHECK(blk_db_put(e.db, blk_db_cf_find(e.db, "blocks"), key, klen, bad,
			 sizeof(bad)) == 0);
	hl = (typeof(hl)){.st = e.st, .data = data, .len = sizeof(data)};

	env_start(&e, NNODES, 3, 300);
	CHECK(cl_uploader_barrier(e.u) == -EIO);
	CHECK(cl_uploader_backlog(e.u) == 1);
	CHECK(log_records(&e) == 1);
	CHECK(__atomic_load_n(&hl.calls, __ATOMIC_SEQ_CST) >= 1);
	for (unsigned i = 0; i < NNODES; i++)
		CHECK(fake_count(i, false) == 0);

	/* The nodes give it back: healed, uploaded, done. */
	__atomic_store_n(&hl.give, true, __ATOMIC_SEQ_CST);
	CHECK(wait_backlog(&e, 0));
	CHECK(cl_uploader_barrier(e.u) == 0);
	CHECK(log_records(&e) == 0);
	for (unsigned r = 0; r < NNODES; r++)
		CHECK(fake_acked(e.rank[a][r], &e.cid[a]) == (r < 3));
	void *got = NULL;
	size_t glen = 0;
	CHECK(blk_store_get(e.st, &e.cid[a], &got, &glen) == 0 &&
	      glen == sizeof(data) && !memcmp(got, data, glen));
	free(got);
	env_close(&e);
}

int main(void)
{
	pthread_mutex_init(&fk.lock, NULL);
	blk_cond_init(&fk.cond);
	test_barrier_idle();
	test_all_homes();
	test_waits_for_last_ack();
	test_spare(false);
	test_spare(true);
	test_stall_and_retry();
	test_sync_fails(CL_SYNC_NO_ANSWER);
	test_sync_fails(-EIO);
	test_stop_keeps_log();
	test_evicted_not_done();
	test_damaged_healed();
	printf("uploader: %u checks passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
