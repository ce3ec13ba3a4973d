/* The commits of a mounted filesystem: encode, make durable, sign and
 * publish a head; renew the lease; the thread that does it every few
 * seconds (see commit.h). */
#include "fs/commit/commit.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blocks/base/clock.h"
#include "blocks/base/log.h"
#include "blocks/store/store.h"
#include "fs/commit/cache.h"
#include "fs/commit/encode.h"
#include "fs/meta.h"
#include "net/client/client.h"
#include "net/cluster/engine.h"
#include "net/cluster/headset.h"
#include "net/server/heads.h"

/*
 * A commit (commit_once), under run_lock:
 *   1. encode: the changed metadata of one snapshot into blocks, their
 *      dag records and the deletion of the marks read, in one batch;
 *   2. durable: the blocks on their placement (the engine's barrier) or,
 *      on one node, in its store; the local records synced;
 *   3. head: seq + 1, parent the last head, the root and attribute
 *      block, the lease, signed;
 *   4. publish: HEAD_CAS on every node (a node behind is brought forward
 *      with the heads it lacks, read from this node's own); done when a
 *      majority holds it;
 *   5. local: the head block stored, and named by the dag family's 'H'.
 * A commit with no change publishes only to renew the lease (at half of
 * it) or to publish a root that an earlier, failed publish left behind.
 *
 * Invariants:
 *  1. A head is published only after every block below it is durable on
 *     its placement (step 2 before step 4).
 *  2. Heads this mount publishes form one chain: seq + 1 and parent the
 *     CID of the last head it published or started from; after a refusal
 *     by lease (-EACCES) it publishes no more (fenced).
 *  3. run_lock is held across the network (the barrier, the CAS): it
 *     orders commits, and only committers wait on it — the filesystem's
 *     paths never take it.
 */

struct bfs_commit {
	struct bfs_commit_config cfg;
	pthread_mutex_t run_lock; /* one commit at a time (invariant 3) */
	/* run_lock: */
	bool have_head;
	struct blk_head head;
	uint8_t head_bytes[BLK_HEAD_MAX_BYTES];
	size_t head_len;
	bool fenced;
	bool majority; /* a majority of the nodes hold head (else the next
			  commit publishes again, even with no change) */
	struct bfs_encode_result last; /* the last commit's encoding */
	/* lock: the thread's controls */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	bool has_thread;
	pthread_t thread;
	_Atomic uint64_t seq; /* the last published head's */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct net_client *client(const struct bfs_commit_config *cfg)
{
	return cfg->engine ? cl_engine_client(cfg->engine) : NULL;
}

/* Head @seq (0: the latest) of node @i, or this node's heads on one
 * node. 0, -ENOENT, or a network error. */
static int node_head(const struct bfs_commit_config *cfg, unsigned i,
		     uint64_t seq, uint8_t *buf, size_t *len)
{
	if (!cfg->engine)
		return net_heads_get(cfg->heads, cfg->cluster->fs_id, seq, buf,
				     len);
	return net_client_head_get(client(cfg), i, cfg->cluster->fs_id, seq,
				   buf, len);
}

/* Decode and verify a head of this filesystem. */
static int head_check(const struct bfs_commit_config *cfg, const uint8_t *buf,
		      size_t len, struct blk_head *h)
{
	int ret = blk_head_decode(h, buf, len);

	if (!ret)
		ret = blk_head_verify(h, cfg->cluster->fs_public_key);
	if (!ret && memcmp(h->fs, cfg->cluster->fs_id, sizeof(h->fs)))
		ret = -ENOENT;
	return ret;
}

/* The nodes' latest head is the one after the local one, by this node,
 * over the root its dag records name: this node published it and lost
 * its 'H' record to a crash (publish_head writes it unsynced). Take it
 * back. */
static void adopt_own_head(const struct bfs_commit_config *cfg,
			   struct bfs_commit_state *st)
{
	struct bfs_dag_rec root;
	struct blk_cid local_cid;
	uint8_t buf[BLK_HEAD_MAX_BYTES];
	size_t len;
	struct blk_txn *t;

	if (st->latest.seq != st->local.seq + 1 ||
	    memcmp(st->latest.writer, cfg->writer, sizeof(st->latest.writer)) ||
	    bfs_dag_head_get(bfs_db(cfg->fs), buf, sizeof(buf), &len))
		return;
	blk_head_cid(buf, len, &local_cid);
	if (!st->latest.has_parent ||
	    !blk_cid_equal(&st->latest.parent, &local_cid) ||
	    bfs_dag_get(bfs_db(cfg->fs), NULL, BFS_ROOT_INO, &root) ||
	    !blk_cid_equal(&root.node, &st->latest.root) ||
	    !blk_cid_equal(&root.attrs, &st->latest.attrs))
		return;
	t = blk_txn_new(bfs_store(cfg->fs));
	if (!t)
		return;
	bfs_dag_head_put(t, st->latest_rec, st->latest_len);
	if (!blk_txn_commit(t, true)) {
		st->local = st->latest;
		st->same = true;
		blk_log_info("head %llu, published before a crash, is this "
			     "node's own: taken back",
			     (unsigned long long)st->latest.seq);
	}
	blk_txn_free(t);
}

int bfs_commit_check(const struct bfs_commit_config *cfg,
		     struct bfs_commit_state *st)
{
	uint8_t buf[BLK_HEAD_MAX_BYTES];
	size_t len;

	memset(st, 0, sizeof(*st));
	if (cfg->engine) {
		/* every node at once; heads that do not verify are logged
		 * and ignored there */
		struct cl_head_info info;
		int ret = cl_heads_latest(client(cfg), cfg->cluster, 0, &info,
					  st->latest_rec, &st->latest_len);

		if (ret && ret != -ENOENT)
			return ret == -EHOSTDOWN ? -EIO : ret;
		st->nodes_have = !ret;
		if (!ret)
			st->latest = info.head;
	} else if (!node_head(cfg, 0, 0, buf, &len)) {
		if (head_check(cfg, buf, len, &st->latest))
			blk_log_warn("this node holds a head that does not "
				     "verify: ignored");
		else {
			st->nodes_have = true;
			memcpy(st->latest_rec, buf, len);
			st->latest_len = len;
		}
	}
	if (!bfs_dag_head_get(bfs_db(cfg->fs), buf, sizeof(buf), &len) &&
	    !head_check(cfg, buf, len, &st->local))
		st->local_have = true;
	st->same =
	    st->nodes_have && st->local_have &&
	    st->latest.seq == st->local.seq &&
	    !memcmp(st->latest.sig, st->local.sig, sizeof(st->local.sig));
	if (st->nodes_have && st->local_have && !st->same)
		adopt_own_head(cfg, st);
	return 0;
}

/* Head @k of this writer's chain: the last one in memory, else from
 * this node's heads, else from any node that has it (checked). */
static int head_bytes_of(struct bfs_commit *c, uint64_t k, uint8_t *buf,
			 size_t *len)
{
	const struct bfs_commit_config *cfg = &c->cfg;
	unsigned n = cfg->engine ? cfg->cluster->nnodes : 1;
	struct blk_head h;

	if (c->have_head && c->head.seq == k) {
		memcpy(buf, c->head_bytes, c->head_len);
		*len = c->head_len;
		return 0;
	}
	for (unsigned j = 0; j < n; j++) {
		unsigned i = (cfg->self + j) % n;

		if (!node_head(cfg, i, k, buf, len) &&
		    !head_check(cfg, buf, *len, &h) && h.seq == k)
			return 0;
	}
	return -ENOENT;
}

/* Bring node @i forward to @upto (its heads after its own, read from this
 * node's), for a CAS it refused as stale. 0 or -errno. */
static int catch_up(struct bfs_commit *c, unsigned i, uint64_t upto)
{
	const struct bfs_commit_config *cfg = &c->cfg;
	uint8_t buf[BLK_HEAD_MAX_BYTES];
	struct blk_head h;
	uint64_t have = 0;
	size_t len;
	int ret = node_head(cfg, i, 0, buf, &len);

	if (ret && ret != -ENOENT)
		return ret;
	if (!ret && !head_check(cfg, buf, len, &h))
		have = h.seq;
	for (uint64_t k = have + 1; k <= upto; k++) {
		if ((ret = head_bytes_of(c, k, buf, &len)) ||
		    (ret =
			 net_client_head_cas(client(cfg), i, k - 1, buf, len)))
			return ret;
	}
	return 0;
}

/* A node's current head is head @seq of this writer's chain but not
 * @rec: an earlier publish of ours reached that node and not a majority,
 * or its reply was lost. Its bytes into @sib. */
static bool sibling_of(struct bfs_commit *c, unsigned i, uint64_t seq,
		       const uint8_t *rec, size_t len, uint8_t *sib,
		       size_t *slen)
{
	const struct bfs_commit_config *cfg = &c->cfg;
	struct blk_head h;

	if (node_head(cfg, i, 0, sib, slen) || head_check(cfg, sib, *slen, &h))
		return false;
	return h.seq == seq && !(*slen == len && !memcmp(sib, rec, len)) &&
	       !memcmp(h.writer, cfg->writer, sizeof(h.writer));
}

/* Step 4: CAS @rec (head @seq) on every node. 0 when a majority took it;
 * -EACCES when a node says another writer's lease holds; -EAGAIN when a
 * node holds a sibling of ours at @seq and none took @rec (its bytes in
 * @sib: the chain must go on from it); else -EIO. *@acks_out: the nodes
 * that hold @rec. */
static int publish(struct bfs_commit *c, uint64_t seq, const uint8_t *rec,
		   size_t len, unsigned *acks_out, uint8_t *sib, size_t *slen)
{
	const struct bfs_commit_config *cfg = &c->cfg;
	char why[256] = "";
	unsigned acks = 0, n, lease = 0;
	bool sibling = false;

	if (!cfg->engine) {
		int ret = net_heads_cas(cfg->heads, seq - 1, rec, len, why,
					sizeof(why));
		if (ret)
			blk_log_err("head %llu not stored: %s",
				    (unsigned long long)seq, why);
		*acks_out = !ret;
		return ret == -EACCES ? ret : ret ? -EIO : 0;
	}
	n = cfg->cluster->nnodes;
	/* Every node at once (one round of node fsyncs), then, one by one,
	 * the nodes that said they are behind. */
	int st[CL_MAX_NODES];
	struct net_batch *b = net_batch_new(client(cfg));

	if (!b)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct net_op *op = net_op_new_head_cas(seq - 1, rec, len);

		st[i] = op ? net_batch_submit(b, i, op) : -ENOMEM;
		if (!st[i])
			st[i] = -ETIMEDOUT; /* until its result says */
	}
	net_batch_wait(b, -1); /* ops end by their own timeouts */
	for (size_t k = 0; k < net_batch_count(b); k++) {
		const struct net_op_result *res =
		    net_op_result(net_batch_op(b, k));

		if (res && res->peer < n)
			st[res->peer] = res->status;
	}
	net_batch_free(b);
	for (unsigned i = 0; i < n; i++) {
		int ret = st[i];

		if (ret == -ESTALE && !catch_up(c, i, seq - 1))
			ret = net_client_head_cas(client(cfg), i, seq - 1, rec,
						  len);
		if (ret == -ESTALE) { /* an earlier try of ours took? */
			uint8_t got[BLK_HEAD_MAX_BYTES];
			size_t glen;

			if (!node_head(cfg, i, seq, got, &glen) &&
			    glen == len && !memcmp(got, rec, len))
				ret = 0;
			else if (!sibling &&
				 sibling_of(c, i, seq, rec, len, sib, slen))
				sibling = true;
		}
		if (ret == -EACCES)
			lease++;
		if (ret == 0)
			acks++;
		else
			blk_log_warn(
			    "head %llu: node %s: %s", (unsigned long long)seq,
			    cfg->cluster->nodes[i].name, strerror(-ret));
	}
	*acks_out = acks;
	if (acks > n / 2)
		return 0;
	return lease ? -EACCES : sibling && !acks ? -EAGAIN : -EIO;
}

/* Steps 3 to 5 for root @root and attribute block @attrs. */
/* The chain goes on from @h (@rec): a head of ours that at least one
 * node holds, whether or not a majority took it (invariant 2). */
static void chain_to(struct bfs_commit *c, const struct blk_head *h,
		     const uint8_t *rec, size_t len)
{
	c->head = *h;
	memcpy(c->head_bytes, rec, len);
	c->head_len = len;
	c->have_head = true;
	atomic_store(&c->seq, h->seq);
}

/* Sign and publish the next head over @root and @attrs; once more over
 * a sibling of ours that a node turned out to hold. */
static int sign_publish(struct bfs_commit *c, const struct blk_cid *root,
			const struct blk_cid *attrs, struct blk_head *h,
			uint8_t *rec, size_t *len)
{
	const struct bfs_commit_config *cfg = &c->cfg;
	uint8_t sib[BLK_HEAD_MAX_BYTES];
	size_t slen = 0;
	int ret = -EAGAIN;

	for (int tries = 0; ret == -EAGAIN && tries < 2; tries++) {
		unsigned acks = 0;

		*h = (struct blk_head){
		    .seq = c->have_head ? c->head.seq + 1 : 1,
		    .time_ns = now_ns(),
		    .root = *root,
		    .attrs = *attrs,
		    .has_parent = c->have_head,
		};
		memcpy(h->fs, cfg->cluster->fs_id, sizeof(h->fs));
		memcpy(h->writer, cfg->writer, sizeof(h->writer));
		h->lease_ns = h->time_ns + (uint64_t)cfg->lease_ms * 1000000u;
		if (c->have_head)
			blk_head_cid(c->head_bytes, c->head_len, &h->parent);
		if ((ret = blk_head_sign(h, cfg->fs_sk)) ||
		    (ret = blk_head_encode(h, rec, BLK_HEAD_MAX_BYTES, len)))
			return ret;
		ret = publish(c, h->seq, rec, *len, &acks, sib, &slen);
		if (ret == -EAGAIN) {
			struct blk_head s;

			if (blk_head_decode(&s, sib, slen))
				return -EIO;
			chain_to(c, &s, sib, slen);
		} else if (acks) {
			chain_to(c, h, rec, *len);
		}
		c->majority = ret == 0;
	}
	return ret == -EAGAIN ? -EIO : ret;
}

static int publish_head(struct bfs_commit *c, const struct blk_cid *root,
			const struct blk_cid *attrs)
{
	const struct bfs_commit_config *cfg = &c->cfg;
	struct blk_head h;
	uint8_t rec[BLK_HEAD_MAX_BYTES];
	struct blk_txn *t;
	size_t len;
	int ret = sign_publish(c, root, attrs, &h, rec, &len);

	if (ret == -EACCES && !c->fenced) {
		c->fenced = true;
		blk_log_err("another writer holds this filesystem's lease: "
			    "this mount publishes no more commits (unmount "
			    "it; its changes since head %llu are not in the "
			    "cluster)",
			    (unsigned long long)(h.seq - 1));
	}
	if (ret)
		return ret;
	/* 'H'. The head is no block the uploader sends: every node keeps
	 * every head (HEAD_GET by seq), and a block would wait for its
	 * placement whenever nodes are down, renewals too. Not synced: the
	 * nodes hold the head, and the dag records it names were synced
	 * before it went out; a crash that loses this 'H' is mended at the
	 * next mount (adopt_own_head). */
	t = blk_txn_new(bfs_store(cfg->fs));
	if (!t)
		return -ENOMEM;
	bfs_dag_head_put(t, rec, len);
	ret = blk_txn_commit(t, false);
	blk_txn_free(t);
	return ret;
}

/* Fetch for the encoder (a one-chunk file evicted from the local store). */
static int encode_fetch(void *arg, const struct blk_cid *cid, void **data,
			size_t *len)
{
	struct bfs_commit *c = arg;

	return c->cfg.engine ? cl_engine_fetch(c->cfg.engine, cid, data, len)
			     : -ENOENT;
}

/* Steps 1 and 2. */
static int encode_durable(struct bfs_commit *c, struct bfs_encode_result *res)
{
	const struct bfs_commit_config *cfg = &c->cfg;
	struct bfs_encode_config ec = {
	    .db = bfs_db(cfg->fs),
	    .store = bfs_store(cfg->fs),
	    .hash = cfg->cluster->hash,
	    .fetch = encode_fetch,
	    .fetch_arg = c,
	};
	struct blk_snap *snap = blk_snap_new(ec.db);
	struct blk_txn *t = blk_txn_new(ec.store);
	int ret = snap && t ? 0 : -ENOMEM;

	if (!ret)
		ret = bfs_encode_run(&ec, snap, t, res);
	blk_snap_free(snap);
	if (!ret)
		ret = blk_txn_commit(t, false);
	blk_txn_free(t);
	if (ret)
		return ret;
	if (cfg->engine)
		cl_engine_kick(cfg->engine);
	ret = blk_store_sync(ec.store);
	if (!ret && cfg->engine && (res->changed || !c->have_head))
		ret = cl_engine_barrier(cfg->engine);
	return ret;
}

static int commit_once(struct bfs_commit *c)
{
	struct bfs_encode_result res = {0};
	struct bfs_dag_rec root = {0};
	uint64_t now = now_ns();
	bool renew;
	int ret;

	pthread_mutex_lock(&c->run_lock);
	if (c->fenced) {
		pthread_mutex_unlock(&c->run_lock);
		return -EACCES;
	}
	ret = encode_durable(c, &res);
	c->last = res;
	if (ret) {
		blk_log_err("commit: %s", strerror(-ret));
		goto out;
	}
	if (!res.changed) {
		/* The root as the last commit left it: a failed publish may
		 * have left it unpublished. */
		ret = bfs_dag_get(bfs_db(c->cfg.fs), NULL, BFS_ROOT_INO, &root);
		if (ret == -ENOENT && !c->have_head)
			ret = 0; /* never changed, never committed: nothing */
		if (ret || !root.has_node)
			goto out;
		res.root = root.node;
		res.attrs = root.attrs;
	}
	renew = c->have_head &&
		c->head.lease_ns < now + (uint64_t)c->cfg.lease_ms * 500000u;
	if (c->have_head && c->majority &&
	    blk_cid_equal(&res.root, &c->head.root) &&
	    blk_cid_equal(&res.attrs, &c->head.attrs) && !renew)
		goto out; /* nothing new, lease fresh */
	ret = publish_head(c, &res.root, &res.attrs);
	if (!ret && res.changed && c->cfg.verbose) {
		char root_s[BLK_CID_STR_MAX];

		blk_cid_to_string(&res.root, root_s);
		blk_log_info("commit %llu: root %s, %llu inodes, %llu blocks "
			     "(%llu bytes)",
			     (unsigned long long)c->head.seq, root_s,
			     (unsigned long long)res.inodes,
			     (unsigned long long)res.blocks,
			     (unsigned long long)res.block_bytes);
	}
out:
	pthread_mutex_unlock(&c->run_lock);
	return ret;
}

int bfs_commit_now(struct bfs_commit *c)
{
	return commit_once(c);
}

void bfs_commit_last_stats(struct bfs_commit *c, uint64_t *inodes,
			   uint64_t *blocks, uint64_t *bytes)
{
	pthread_mutex_lock(&c->run_lock);
	*inodes = c->last.inodes;
	*blocks = c->last.blocks;
	*bytes = c->last.block_bytes;
	pthread_mutex_unlock(&c->run_lock);
}

bool bfs_commit_head(struct bfs_commit *c, struct blk_head *out)
{
	bool have;

	pthread_mutex_lock(&c->run_lock);
	have = c->have_head;
	if (have)
		*out = c->head;
	pthread_mutex_unlock(&c->run_lock);
	return have;
}

uint64_t bfs_commit_seq(struct bfs_commit *c)
{
	return atomic_load(&c->seq);
}

/* Renew the lease without a commit: a head over the last one's root, at
 * half of the lease (with commit_interval=0, or between commits longer
 * than half a lease). 0 or -errno. */
static int renew_lease(struct bfs_commit *c)
{
	int ret = 0;

	pthread_mutex_lock(&c->run_lock);
	if (c->fenced)
		ret = -EACCES;
	else if (c->have_head &&
		 c->head.lease_ns <
		     now_ns() + (uint64_t)c->cfg.lease_ms * 500000u) {
		struct blk_cid root = c->head.root, attrs = c->head.attrs;

		ret = publish_head(c, &root, &attrs);
	}
	pthread_mutex_unlock(&c->run_lock);
	return ret;
}

/* Commits every interval_ms (when not 0); the lease's renewal checked
 * every quarter of it. */
static void *commit_thread(void *arg)
{
	struct bfs_commit *c = arg;
	unsigned tick = c->cfg.lease_ms / 4;
	struct timespec next;

	if (c->cfg.interval_ms && c->cfg.interval_ms < tick)
		tick = c->cfg.interval_ms;
	blk_deadline(&next, c->cfg.interval_ms);
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		struct timespec until;

		blk_deadline(&until, tick);
		while (!c->stop && pthread_cond_timedwait(&c->cond, &c->lock,
							  &until) != ETIMEDOUT)
			;
		if (c->stop)
			break;
		pthread_mutex_unlock(&c->lock);
		if (c->cfg.interval_ms && blk_deadline_passed(&next)) {
			struct timespec t0, t1;
			uint64_t took_ms, wait_ms = c->cfg.interval_ms;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			commit_once(c);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			/* At most a tenth of the time committing: a commit
			 * that takes long (a large directory changing under a
			 * copy) spaces the next ones out. */
			took_ms = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
				  (uint64_t)(t1.tv_nsec - t0.tv_nsec) / 1000000;
			if (took_ms * 10 > wait_ms)
				wait_ms = took_ms * 10;
			blk_deadline(&next, wait_ms);
		} else {
			renew_lease(c);
		}
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int bfs_commit_open(const struct bfs_commit_config *cfg,
		    const struct bfs_commit_state *st, struct bfs_commit **out)
{
	struct bfs_commit *c;

	*out = NULL;
	if (!cfg->cluster->has_fs || !cfg->fs_sk || !cfg->writer ||
	    (!cfg->engine && !cfg->heads) || !cfg->lease_ms)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	pthread_mutex_init(&c->run_lock, NULL);
	pthread_mutex_init(&c->lock, NULL);
	blk_cond_init(&c->cond);
	if (st->nodes_have) {
		/* The chain goes on from the cluster's latest head, whose
		 * bytes bfs_commit_check kept (checked again here). */
		if (st->latest_len > sizeof(c->head_bytes) ||
		    head_check(cfg, st->latest_rec, st->latest_len, &c->head) ||
		    c->head.seq != st->latest.seq) {
			bfs_commit_close(c);
			return -EIO;
		}
		memcpy(c->head_bytes, st->latest_rec, st->latest_len);
		c->head_len = st->latest_len;
		c->have_head = true;
		c->majority = true;
		atomic_store(&c->seq, c->head.seq);
	}
	if (pthread_create(&c->thread, NULL, commit_thread, c)) {
		bfs_commit_close(c);
		return -ENOMEM;
	}
	c->has_thread = true;
	*out = c;
	return 0;
}

void bfs_commit_close(struct bfs_commit *c)
{
	if (!c)
		return;
	if (c->has_thread) {
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
	}
	pthread_mutex_destroy(&c->run_lock);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}
