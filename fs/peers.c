/* The mount's side of the cluster; see peers.h. */
#include "fs/peers.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blocks/clock.h"
#include "ec/codec.h"
#include "ec/fragment.h"
#include "fs/log.h"
#include "fs/meta.h"
#include "fs/plan.h"
#include "net/client.h"
#include "net/placement.h"
#include "net/server.h"

#define DEFAULT_WINDOW 32
#define DEFAULT_BACKLOG 1024
#define DEFAULT_SYNC_TIMEOUT_MS 60000
#define RETRY_MS 1000 /* a block no node would take is tried again */
#define HEDGE_MS 300  /* a fetch asks the next node after this long */
#define FETCH_DEADLINE_MS 20000
#define THROTTLE_MAX_MS 1000
#define SYNC_RETRY_MS 200 /* a node that did not answer SYNC is asked again */
#define FULL_MS 10000	  /* a node that said it is full is skipped so long */

/* One fragment's payload, shared by the PUTs that send it: freed when the
 * last one releases it. For replicas every fragment is the block itself. */
struct payload {
	atomic_uint refs;
	void *buf;
};

struct job {
	struct job *next;
	uint64_t seq;
	struct blk_cid cid;
	uint8_t ckey[BLK_CID_MAX_BYTES];
	size_t cklen;
	size_t len; /* block length */
	size_t frag_len;
	struct payload *pl; /* all fragments' bytes (one block for K = 1) */
	uint8_t *frag[EC_MAX_FRAGS];
	uint8_t hdr[EC_MAX_FRAGS][EC_FRAG_HDR_LEN];
	unsigned want;		    /* K + M */
	unsigned ok;		    /* fragments acknowledged */
	unsigned inflight;	    /* PUTs outstanding */
	int holder[EC_MAX_FRAGS];   /* node holding fragment i, -1 none */
	bool placed[BFS_MAX_NODES]; /* nodes used by this job */
	unsigned rank[BFS_MAX_NODES];
	unsigned nrank;
	bool misplaced; /* some fragment is not on its ideal node */
	bool stalled;	/* some fragment found no node; retry later */
	struct timespec retry_at;
	bool done;
};

struct completion {
	struct completion *next;
	struct bfs_peers *p;
	struct job *job;
	unsigned index;
	unsigned node;
	struct net_op *op;
};

/* A block fetched ahead of its read (sequential reads), or one fetched
 * lately: kept, since the kernel reads a block in several pieces (128 KiB
 * each, and a block straddles two reads), and without a local copy every
 * piece would fetch the whole block again. */
struct pf_ent {
	struct pf_ent *next;
	struct blk_cid cid;
	void *data; /* malloc'd, checked against cid, once ready */
	size_t len;
	int state;  /* PF_* */
	bool taken; /* read once: the first to go when room is needed */
	struct timespec done_at; /* READY or FAILED since */
};
enum { PF_QUEUED, PF_INFLIGHT, PF_READY, PF_FAILED };
/* Blocks held: 32 MiB at 256 KiB, twice bfs.c's 16 MiB read-ahead window,
 * so blocks fetched ahead are not dropped before the reader takes them. */
#define PF_MAX 128
#define PF_WORKERS 8	  /* blocks fetched ahead at once */
#define PF_STALE_MS 10000 /* a block fetched ahead and not read by then */

struct bfs_peers {
	struct bfs_peers_config cfg;
	struct pf_ent *pf; /* lock */
	unsigned npf;
	pthread_cond_t pf_cond; /* an entry is done */
	pthread_cond_t pf_work; /* an entry is queued */
	bool pf_stop;		/* lock */
	pthread_t pf_thread[PF_WORKERS];
	unsigned npf_threads;
	struct pl_map *pl;
	unsigned n;
	int self;
	struct net_server *srv;
	struct net_client *cl;
	struct ec_codec *codec; /* K > 1 */

	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* the uploader has something to do */
	pthread_cond_t done; /* the watermark moved */
	bool stop;
	struct job *head, *tail; /* in sequence order */
	unsigned njobs;
	struct completion *comps;
	uint64_t read_seq;	   /* next log record to read */
	uint64_t watermark;	   /* every record below it is done */
	bool dirty[BFS_MAX_NODES]; /* took fragments since the last barrier */
	struct timespec full_until[BFS_MAX_NODES]; /* answered -ENOSPC */
	/* Unmount (bfs_peers_closing): the one deadline every barrier and
	 * the drain share, pushed back whenever blocks go out. Only the
	 * unmounting thread touches them. */
	bool closing;
	struct timespec close_deadline;
	bool close_reported; /* what is left was said once */

	/* counters (lock) */
	uint64_t up_blocks, up_bytes, up_misplaced, up_failures;
	uint64_t fetch_blocks, fetch_bytes, fetch_failures, fetch_rejects;
	atomic_uint_fast64_t gets_sent[BFS_MAX_NODES]; /* fragment GETs */
	atomic_uint_fast64_t hedges; /* GETs sent because others were slow */
};

static bool peer_up(struct bfs_peers *p, unsigned i)
{
	bool up = false;

	net_client_peer_state(p->cl, i, &up, NULL);
	return up;
}

/* ---- uploads ------------------------------------------------------------ */

static void payload_release(void *arg)
{
	struct payload *pl = arg;

	if (atomic_fetch_sub(&pl->refs, 1) == 1) {
		free(pl->buf);
		free(pl);
	}
}

static void put_done(struct net_op *op, void *arg)
{
	struct completion *c = arg;
	struct bfs_peers *p = c->p;

	/* I/O thread: hand over and return at once. */
	c->op = op;
	pthread_mutex_lock(&p->lock);
	c->next = p->comps;
	p->comps = c;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
}

/* The @n-th node fragment @i of @j may go to: its home rank[i] first, then
 * the spares rank[want], rank[want + 1], ... (the nodes of the order past
 * the homes). Never the home of another fragment: a fetch asks a home for
 * its own index and the spares for every index (fs/plan.h), so a fragment
 * on another's home would not be found. -1 past the last. */
static int place_candidate(const struct job *j, unsigned i, unsigned n)
{
	if (n == 0)
		return i < j->nrank ? (int)i : -1;
	n += j->want - 1;
	return n < j->nrank ? (int)n : -1;
}

/* Send fragment @i of @j to the first of its candidate nodes
 * (place_candidate) that is up, not full, and holds nothing of this block
 * yet; with none, the job stalls until RETRY_MS on. Called with p->lock
 * held. */
static void place_fragment(struct bfs_peers *p, struct job *j, unsigned i)
{
	for (unsigned n = 0;; n++) {
		int r = place_candidate(j, i, n);
		unsigned node;
		struct completion *c;
		struct net_op *op;

		if (r < 0)
			break;
		node = j->rank[r];
		if (j->placed[node] || !peer_up(p, node) ||
		    !blk_deadline_passed(&p->full_until[node]))
			continue;
		c = calloc(1, sizeof(*c));
		if (!c)
			break;
		atomic_fetch_add(&j->pl->refs, 1);
		op = net_op_new_put(j->hdr[i], j->frag[i], j->frag_len,
				    payload_release, j->pl);
		if (!op) {
			payload_release(j->pl);
			free(c);
			break;
		}
		c->job = j;
		c->index = i;
		c->node = node;
		c->p = p;
		j->placed[node] = true;
		j->holder[i] = (int)node;
		j->inflight++;
		if ((unsigned)r != i)
			j->misplaced = true;
		if (net_client_submit(p->cl, node, op, put_done, c) < 0) {
			/* still ours: undo and try the next node */
			net_op_free(op);
			free(c);
			j->inflight--;
			j->holder[i] = -1;
			continue;
		}
		return;
	}
	/* No node left for this round. In the next one (RETRY_MS on) every
	 * node that does not hold a fragment of this block may be tried
	 * again: nodes that failed may be back. */
	memset(j->placed, 0, sizeof(j->placed));
	for (unsigned x = 0; x < j->want; x++)
		if (j->holder[x] >= 0)
			j->placed[j->holder[x]] = true;
	j->stalled = true;
	blk_deadline(&j->retry_at, RETRY_MS);
}

/* Read the block and make its fragments. 0, or -ENOENT when the block was
 * deleted before its turn came (nothing to upload), or another -errno. */
static int job_prepare(struct bfs_peers *p, struct job *j)
{
	unsigned k, m, want;
	void *data = NULL;
	size_t len;
	int ret;

	ret = blk_store_get(p->cfg.db, &j->cid, &data, &len);
	if (ret < 0)
		return ret;
	/* Short blocks: M+1 replicas on the first M+1 nodes of the order. */
	bfs_block_coding(p->cfg.k, p->cfg.m, p->cfg.ec_min, len, &k, &m);
	want = k + m;
	j->len = len;
	j->want = want;
	j->pl = calloc(1, sizeof(*j->pl));
	if (!j->pl) {
		free(data);
		return -ENOMEM;
	}
	atomic_init(&j->pl->refs, 1);
	if (k == 1) {
		j->pl->buf = data;
		j->frag_len = len;
		for (unsigned i = 0; i < want; i++) {
			struct ec_frag_hdr h = {.k = 1,
						.m = (uint8_t)(want - 1),
						.index = (uint8_t)i,
						.block_len = (uint32_t)len,
						.frag_len = (uint32_t)len,
						.cid = j->cid};
			j->frag[i] = data;
			ec_frag_hdr_seal(&h, data, j->hdr[i]);
		}
	} else {
		size_t fl = ec_frag_size(p->codec, len);
		uint8_t *buf = malloc(fl * want);

		if (!buf) {
			free(data);
			return -ENOMEM;
		}
		for (unsigned i = 0; i < want; i++)
			j->frag[i] = buf + i * fl;
		j->frag_len = fl;
		j->pl->buf = buf;
		ret = ec_encode_frags(p->codec, &j->cid, data, len, j->frag,
				      j->hdr);
		free(data);
		if (ret < 0)
			return ret;
	}
	for (unsigned i = 0; i < want; i++)
		j->holder[i] = -1;
	ret = pl_rank(p->pl, &j->cid, j->rank, BFS_MAX_NODES);
	if (ret < 0)
		return ret;
	j->nrank = (unsigned)ret;
	return 0;
}

static void job_start(struct bfs_peers *p, struct job *j)
{
	j->stalled = false;
	/* Every fragment, also past one that stalls: another fragment's
	 * home may well be up. */
	for (unsigned i = 0; i < j->want; i++)
		if (j->holder[i] < 0)
			place_fragment(p, j, i);
}

static void job_free(struct job *j)
{
	if (j->pl)
		payload_release(j->pl);
	free(j);
}

/* Read new records of the log into jobs, up to the window. Called with
 * the lock held; drops it around store reads. */
static void read_log(struct bfs_peers *p)
{
	const unsigned window = p->cfg.window ? p->cfg.window : DEFAULT_WINDOW;
	uint64_t head = blk_db_newlog_head(p->cfg.db);
	uint8_t start[8];

	if (p->njobs >= window || p->read_seq >= head)
		return;
	blk_put_be64(start, p->read_seq);
	pthread_mutex_unlock(&p->lock);
	struct blk_iter *it =
	    blk_iter_new(p->cfg.db, BLK_CF_NEWLOG, NULL, 0, start, 8);
	struct job *first = NULL, **tail = &first;
	unsigned got = 0;
	uint64_t next = p->read_seq;
	bool complete = true;

	for (; it && blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, clen;
		const uint8_t *key = blk_iter_key(it, &klen);
		const uint8_t *cid = blk_iter_value(it, &clen);
		uint64_t seq;
		struct job *j;

		if (klen != 8)
			continue;
		seq = blk_get_be64(key);
		if (seq >= head)
			break;
		if (p->njobs + got >= window) {
			complete = false;
			break;
		}
		next = seq + 1;
		j = calloc(1, sizeof(*j));
		if (!j) {
			complete = false;
			break;
		}
		j->seq = seq;
		if (clen > sizeof(j->ckey) ||
		    blk_cid_from_bytes(&j->cid, cid, clen) < 0) {
			j->done = true; /* not a CID: drop the record */
		} else {
			memcpy(j->ckey, cid, clen);
			j->cklen = clen;
			int ret = job_prepare(p, j);
			if (ret == -ENOENT) {
				j->done = true; /* deleted already */
			} else if (ret < 0) {
				bfs_log_err("upload: cannot read block for "
					    "upload: %s",
					    strerror(-ret));
				free(j);
				complete = false;
				break;
			}
		}
		*tail = j;
		tail = &j->next;
		got++;
	}
	if (it && blk_iter_status(it) < 0)
		complete = false;
	blk_iter_free(it);
	pthread_mutex_lock(&p->lock);
	p->read_seq = complete ? head : next;
	for (struct job *j = first, *nx; j; j = nx) {
		nx = j->next;
		j->next = NULL;
		if (p->tail)
			p->tail->next = j;
		else
			p->head = j;
		p->tail = j;
		p->njobs++;
		if (!j->done)
			job_start(p, j);
	}
}

static void handle_completion(struct bfs_peers *p, struct completion *c)
{
	struct job *j = c->job;
	const struct net_op_result *r = net_op_result(c->op);
	int status = r ? r->status : -EIO;

	j->inflight--;
	if (status == 0) {
		j->ok++;
		p->dirty[c->node] = true;
		if (j->ok == j->want) {
			j->done = true;
			p->up_blocks++;
			p->up_bytes += j->len;
			if (j->misplaced)
				p->up_misplaced++;
		}
	} else {
		char name[BLK_CID_STR_MAX];

		p->up_failures++;
		if (status == -ENOSPC) {
			/* Full: the next nodes in rendezvous order take its
			 * fragments for a while (repair moves them later). */
			if (blk_deadline_passed(&p->full_until[c->node]))
				bfs_log_warn(
				    "node %s is full; its fragments go "
				    "to the next nodes for %u s",
				    p->cfg.cluster->nodes[c->node].name,
				    FULL_MS / 1000);
			blk_deadline(&p->full_until[c->node], FULL_MS);
		}
		if (p->up_failures <= 20 || p->up_failures % 1000 == 0) {
			blk_cid_to_string(&j->cid, name);
			bfs_log_warn("upload of %s fragment %u to %s failed: "
				     "%s; trying the next node",
				     name, c->index,
				     p->cfg.cluster->nodes[c->node].name,
				     strerror(-status));
		}
		j->holder[c->index] = -1;
		/* the node keeps its placed mark: never the same node twice
		 * for one block in this round */
		place_fragment(p, j, c->index);
	}
	net_op_free(c->op);
	free(c);
}

/* Pop the finished jobs at the head: delete their log records (and note
 * the misplaced ones for repair) in one transaction. Lock held; dropped
 * around the commit. */
static void retire(struct bfs_peers *p)
{
	struct job *first = p->head, *last = NULL;
	struct blk_txn *t;
	unsigned n = 0;

	for (struct job *j = p->head; j && j->done && !j->inflight;
	     j = j->next) {
		last = j;
		n++;
	}
	if (!n)
		return;
	p->head = last->next;
	if (!p->head)
		p->tail = NULL;
	p->njobs -= n;
	last->next = NULL;
	uint64_t mark = p->head ? p->head->seq : p->read_seq;
	pthread_mutex_unlock(&p->lock);

	t = blk_txn_new(p->cfg.db);
	for (struct job *j = first; t && j; j = j->next) {
		uint8_t key[8];

		blk_put_be64(key, j->seq);
		blk_txn_delete(t, BLK_CF_NEWLOG, key, 8);
		if (j->misplaced && j->cklen)
			blk_txn_put(t, p->cfg.repair_cf, j->ckey, j->cklen,
				    "misplaced", 9);
	}
	int ret = t ? blk_txn_commit(t, false) : -ENOMEM;
	blk_txn_free(t);
	if (ret < 0)
		bfs_log_err("upload: cannot retire %u uploaded blocks: %s", n,
			    strerror(-ret));
	for (struct job *j = first, *nx; j; j = nx) {
		nx = j->next;
		job_free(j);
	}
	pthread_mutex_lock(&p->lock);
	if (mark > p->watermark)
		p->watermark = mark;
	pthread_cond_broadcast(&p->done);
}

static void *uploader_main(void *arg)
{
	struct bfs_peers *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		struct completion *c = p->comps;

		p->comps = NULL;
		while (c) {
			struct completion *nx = c->next;
			handle_completion(p, c);
			c = nx;
		}
		for (struct job *j = p->head; j; j = j->next)
			if (j->stalled && blk_deadline_passed(&j->retry_at))
				job_start(p, j);
		read_log(p);
		retire(p);
		if (p->comps)
			continue;
		if (!p->head)
			p->watermark = p->read_seq;
		struct timespec ts;
		blk_deadline(&ts, 200);
		pthread_cond_timedwait(&p->wake, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void bfs_peers_kick(struct bfs_peers *p)
{
	pthread_mutex_lock(&p->lock);
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
}

uint64_t bfs_peers_backlog(struct bfs_peers *p)
{
	uint64_t head = blk_db_newlog_head(p->cfg.db), w;

	pthread_mutex_lock(&p->lock);
	w = p->watermark;
	pthread_mutex_unlock(&p->lock);
	return head > w ? head - w : 0;
}

void bfs_peers_throttle(struct bfs_peers *p)
{
	uint64_t max =
	    p->cfg.backlog_max ? p->cfg.backlog_max : DEFAULT_BACKLOG;
	struct timespec ts;

	if (bfs_peers_backlog(p) <= max)
		return;
	blk_deadline(&ts, THROTTLE_MAX_MS);
	pthread_mutex_lock(&p->lock);
	pthread_cond_signal(&p->wake);
	while (!p->stop && blk_db_newlog_head(p->cfg.db) - p->watermark > max &&
	       pthread_cond_timedwait(&p->done, &p->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&p->lock);
}

/* Wait until the watermark reaches @target or the deadline passes. */
static int wait_uploaded(struct bfs_peers *p, uint64_t target,
			 const struct timespec *deadline)
{
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	pthread_cond_signal(&p->wake);
	while (p->watermark < target && !p->stop) {
		if (pthread_cond_timedwait(&p->done, &p->lock, deadline) ==
		    ETIMEDOUT) {
			ret = p->watermark < target ? -EIO : 0;
			break;
		}
	}
	if (p->watermark < target)
		ret = -EIO;
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static unsigned sync_timeout(const struct bfs_peers *p)
{
	return p->cfg.sync_timeout_ms ? p->cfg.sync_timeout_ms
				      : DEFAULT_SYNC_TIMEOUT_MS;
}

/* The nodes down now, as " node2 node3" (empty when none). */
static void nodes_down(struct bfs_peers *p, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = 0;
	for (unsigned i = 0; i < p->n && len + 1 < size; i++) {
		if (peer_up(p, i))
			continue;
		int n = snprintf(buf + len, size - len, " %s",
				 p->cfg.cluster->nodes[i].name);
		if (n < 0)
			break;
		len += (size_t)n;
	}
}

/* Unmount: upload everything committed before @target, showing progress
 * on stderr (a terminal) or in the log, until the close deadline, which
 * moves one sync timeout past every moment blocks go out. 0 once the
 * queue is empty; -EIO (said once, with what is left and which nodes are
 * down) when the deadline passes. */
static int drain(struct bfs_peers *p, uint64_t target)
{
	bool tty = isatty(STDERR_FILENO), shown = false;
	int ret = 0;

	for (;;) {
		uint64_t before = bfs_peers_backlog(p);
		struct timespec step;

		if (before == 0)
			break;
		if (blk_deadline_passed(&p->close_deadline)) {
			ret = -EIO;
			break;
		}
		if (tty)
			fprintf(stderr,
				"\rblockfs: uploading: %llu blocks left   ",
				(unsigned long long)before);
		else
			bfs_log_info("unmount: %llu blocks left to upload",
				     (unsigned long long)before);
		shown = true;
		blk_deadline(&step, 1000);
		wait_uploaded(p, target, &step);
		if (bfs_peers_backlog(p) < before)
			blk_deadline(&p->close_deadline, sync_timeout(p));
	}
	if (tty && shown)
		fprintf(stderr, "\n");
	if (ret && !p->close_reported) {
		char down[1024];

		nodes_down(p, down, sizeof(down));
		bfs_log_err("unmount: %llu blocks not uploaded: none went out "
			    "for %u s (sync_timeout)%s%s; they stay queued for "
			    "the next mount",
			    (unsigned long long)bfs_peers_backlog(p),
			    sync_timeout(p) / 1000,
			    down[0] ? "; nodes down:" : "", down);
		p->close_reported = true;
	}
	return ret;
}

void bfs_peers_closing(struct bfs_peers *p)
{
	if (!p || p->closing)
		return;
	p->closing = true;
	blk_deadline(&p->close_deadline, sync_timeout(p));
}

int bfs_peers_barrier(struct bfs_peers *p)
{
	unsigned tmo = sync_timeout(p);
	uint64_t target = blk_db_newlog_head(p->cfg.db);
	bool nodes[BFS_MAX_NODES];
	struct timespec deadline;
	struct net_batch *b;
	int ret = 0;

	if (p->closing) {
		/* Unmounting: the drain waits (and reports), and the
		 * SYNCs share its deadline. */
		if (drain(p, target) < 0)
			return -EIO;
		deadline = p->close_deadline;
	} else {
		blk_deadline(&deadline, tmo);
		ret = wait_uploaded(p, target, &deadline);
		if (ret < 0) {
			bfs_log_err("sync: %llu blocks not on their %u nodes "
				    "after %u s",
				    (unsigned long long)bfs_peers_backlog(p),
				    p->cfg.k + p->cfg.m, tmo / 1000);
			return -EIO;
		}
	}
	pthread_mutex_lock(&p->lock);
	memcpy(nodes, p->dirty, sizeof(nodes));
	memset(p->dirty, 0, sizeof(p->dirty));
	pthread_mutex_unlock(&p->lock);

	/* SYNC every node that took fragments. A node that is down or does
	 * not answer (it may be restarting: its WAL holds what it acked) is
	 * asked again every SYNC_RETRY_MS until the deadline. */
	bool pending[BFS_MAX_NODES];
	int last_err[BFS_MAX_NODES] = {0};
	unsigned left;

	memcpy(pending, nodes, sizeof(pending));
	for (;;) {
		uint64_t ms = blk_deadline_left_ms(&deadline);

		b = net_batch_new(p->cl);
		if (!b) {
			ret = -ENOMEM;
			break;
		}
		for (unsigned i = 0; i < p->n; i++) {
			struct net_op *op;

			if (!pending[i])
				continue;
			op = net_op_new_sync();
			if (!op || net_batch_submit(b, i, op) < 0)
				ret = -ENOMEM;
		}
		net_batch_wait(b, ms < INT_MAX ? (int)ms : INT_MAX);
		for (size_t i = 0; i < net_batch_count(b); i++) {
			const struct net_op_result *r =
			    net_op_result(net_batch_op(b, i));

			if (r && r->status == 0)
				pending[r->peer] = false;
			else if (r)
				last_err[r->peer] = r->status;
		}
		net_batch_free(b);
		left = 0;
		for (unsigned i = 0; i < p->n; i++)
			left += pending[i];
		if (!left || ret < 0 || blk_deadline_passed(&deadline))
			break;
		struct timespec pause;
		blk_deadline(&pause, SYNC_RETRY_MS);
		pthread_mutex_lock(&p->lock);
		while (!p->stop &&
		       pthread_cond_timedwait(&p->done, &p->lock, &pause) == 0)
			;
		bool stop = p->stop;
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
	}
	left = 0;
	for (unsigned i = 0; i < p->n; i++) {
		if (!pending[i])
			continue;
		left++;
		bfs_log_err("sync: node %s: %s", p->cfg.cluster->nodes[i].name,
			    strerror(last_err[i] ? -last_err[i] : ETIMEDOUT));
	}
	if (left || ret < 0) {
		/* sync them again next time */
		pthread_mutex_lock(&p->lock);
		for (unsigned i = 0; i < p->n; i++)
			p->dirty[i] |= pending[i];
		pthread_mutex_unlock(&p->lock);
		return -EIO;
	}
	return 0;
}

/* ---- fetch -------------------------------------------------------------- */

/* The fetch order for a block coded @k + @m (fs/plan.h), from what the
 * client knows of the nodes now. */
static unsigned plan_fetch(struct bfs_peers *p, const unsigned *rank,
			   unsigned nrank, unsigned k, unsigned m,
			   struct bfs_cand *cand)
{
	bool up[BFS_MAX_NODES] = {0};
	uint64_t lat[BFS_MAX_NODES] = {0};

	for (unsigned i = 0; i < nrank; i++)
		net_client_peer_state(p->cl, rank[i], &up[rank[i]],
				      &lat[rank[i]]);
	return bfs_plan_fetch(rank, nrank, k, m, up, lat, cand, BFS_MAX_NODES);
}

/* What one fetch has asked and received. Only its thread touches it,
 * except @lock's fields, which the I/O thread's completions fill. */
struct fetch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned outstanding;		    /* lock */
	struct net_op *done[BFS_MAX_NODES]; /* lock: replies to look at */
	unsigned ndone;			    /* lock */

	const struct blk_cid *cid;
	/* The block's coding: guessed from its length when the local store
	 * remembers it, else the policy's; then, from the first fragment
	 * that arrives (fragment headers are self-describing), known. */
	unsigned k, m;
	bool known;
	uint32_t block_len;	/* once known */
	size_t frag_len;	/* once known */
	struct ec_codec *codec; /* K > 1 and known: p->codec or own_codec */
	struct ec_codec *own_codec;
	struct bfs_cand cand[BFS_MAX_NODES];
	unsigned nc, next;
	uint64_t asked[BFS_MAX_NODES]; /* bit x of [node]: index x asked */
	uint8_t *frags[EC_MAX_FRAGS];
	struct net_op *keep[EC_MAX_FRAGS]; /* owners of frags[] */
	unsigned have;
	/* Hostile nodes (design note in fetch_now): who taught the coding,
	 * how many fragments disagreed with it, and nodes not to ask. */
	int teacher;
	unsigned disagreed;
	bool disagreeing[BFS_MAX_NODES]; /* sent one that disagreed */
	bool banned[BFS_MAX_NODES];
};

static void get_done(struct net_op *op, void *arg)
{
	struct fetch *f = arg;

	pthread_mutex_lock(&f->lock);
	f->done[f->ndone++] = op;
	f->outstanding--;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* Ask the next candidate that can still help. Called with f->lock held
 * (dropped around the submission). false when none is left. */
static bool send_get(struct bfs_peers *p, struct fetch *f)
{
	while (f->next < f->nc) {
		const struct bfs_cand *c = &f->cand[f->next++];
		struct net_fref ref = {.cid = *f->cid,
				       .index = (uint8_t)c->index};
		struct net_op *op;

		if (f->frags[c->index] || f->banned[c->node] ||
		    (f->asked[c->node] >> c->index & 1) || !peer_up(p, c->node))
			continue;
		op = net_op_new_get(&ref);
		if (!op)
			return false;
		f->asked[c->node] |= 1ull << c->index;
		f->outstanding++;
		atomic_fetch_add_explicit(&p->gets_sent[c->node], 1,
					  memory_order_relaxed);
		pthread_mutex_unlock(&f->lock);
		int r = net_client_submit(p->cl, c->node, op, get_done, f);
		pthread_mutex_lock(&f->lock);
		if (r < 0) {
			net_op_free(op);
			f->outstanding--;
			continue;
		}
		return true;
	}
	return false;
}

/* Learn the block's coding from its first good fragment @h: find the
 * codec, check that the fragment is as long as that coding makes it
 * (ec_decode reads that many bytes of every fragment), and re-plan the
 * requests if the guess was wrong. 0; -EBADMSG when the lengths do not fit
 * the coding (a broken or hostile node: nothing is learnt); -ENOMEM. */
static int fetch_learn(struct bfs_peers *p, struct fetch *f,
		       const unsigned *rank, unsigned nrank,
		       const struct ec_frag_hdr *h)
{
	struct ec_codec *codec = NULL;

	if (h->k > 1) {
		if (p->codec && ec_codec_k(p->codec) == h->k &&
		    ec_codec_m(p->codec) == h->m) {
			codec = p->codec;
		} else {
			/* written under another policy: a codec for this
			 * fetch */
			if (f->own_codec &&
			    (ec_codec_k(f->own_codec) != h->k ||
			     ec_codec_m(f->own_codec) != h->m)) {
				ec_codec_free(f->own_codec);
				f->own_codec = NULL;
			}
			if (!f->own_codec) {
				int ret =
				    ec_codec_new(h->k, h->m, &f->own_codec);
				if (ret < 0)
					return ret == -EINVAL ? -EBADMSG : ret;
			}
			codec = f->own_codec;
		}
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
		f->nc = plan_fetch(p, rank, nrank, f->k, f->m, f->cand);
		f->next = 0;
	}
	return 0;
}

/* Check a fragment reply for the block of fetch @f: 0 if it is a fragment
 * of this block of the coding and length known so far (anything, before
 * the first), -ENOENT (the node has no such fragment), another negative
 * status, -EBADMSG, or -EXDEV: a fragment of this block that disagrees
 * with the coding learnt. Fragment checksums were checked by the client. */
static int check_frag(const struct fetch *f, const struct net_op_result *r)
{
	if (r->status < 0)
		return r->status;
	if (!blk_cid_equal(&r->frag.cid, f->cid) || r->len != r->frag.frag_len)
		return -EBADMSG;
	if (f->known &&
	    (r->frag.k != f->k || r->frag.m != f->m ||
	     r->frag.block_len != f->block_len || r->len != f->frag_len))
		return -EXDEV;
	return 0;
}

/* A wrong answer seen (counted for the unmount log). */
static void count_reject(struct bfs_peers *p)
{
	__atomic_fetch_add(&p->fetch_rejects, 1, __ATOMIC_RELAXED);
}

/* Look at one reply (f->lock held): keep its fragment, or drop it.
 * 0, or a negative errno when the fetch cannot go on (-ENOMEM). */
static int take_reply(struct bfs_peers *p, struct fetch *f,
		      const unsigned *rank, unsigned nrank, struct net_op *op)
{
	const struct net_op_result *res = net_op_result(op);
	int c = res ? check_frag(f, res) : -EIO;
	char name[BLK_CID_STR_MAX];

	if (c == 0 && !f->known) {
		c = fetch_learn(p, f, rank, nrank, &res->frag);
		if (c < 0 && c != -EBADMSG) {
			net_op_free(op);
			return c;
		}
		if (c == 0)
			f->teacher = (int)res->peer;
	}
	if (c == 0 && f->k == 1 &&
	    !blk_cid_verify(f->cid, res->data, res->len)) {
		/* A copy with a right checksum and wrong bytes: a node
		 * lies. Ask another. */
		c = -EBADMSG;
	}
	if (c == 0 && !f->frags[res->frag.index]) {
		f->frags[res->frag.index] = (uint8_t *)res->data;
		f->keep[res->frag.index] = op;
		f->have++;
		return 0;
	}
	if (c == -EXDEV) {
		/* the liar is the teacher or this node: told at the end */
		f->disagreed++;
		f->disagreeing[res->peer] = true;
	} else if (c < 0 && c != -ENOENT) {
		if (c == -EBADMSG)
			count_reject(p);
		blk_cid_to_string(f->cid, name);
		bfs_log_warn("fetch %s: node %s: %s", name,
			     res ? p->cfg.cluster->nodes[res->peer].name : "?",
			     strerror(-c));
	}
	net_op_free(op);
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
static int collect(struct bfs_peers *p, struct fetch *f, const unsigned *rank,
		   unsigned nrank, bool all, const struct timespec *deadline)
{
	for (;;) {
		unsigned target = fetch_target(f, all);

		/* As many requests as fragments still missing (replies not
		 * looked at yet count as on their way)... */
		while (f->have + f->outstanding + f->ndone < target &&
		       send_get(p, f))
			;
		if (f->have >= target || (f->outstanding == 0 && f->ndone == 0))
			return 0;
		if (f->ndone == 0) {
			struct timespec hedge;

			if (blk_deadline_passed(deadline))
				return 0;
			blk_deadline(&hedge, HEDGE_MS);
			/* ...and one more each time they are slow. */
			if (pthread_cond_timedwait(&f->cond, &f->lock,
						   &hedge) == ETIMEDOUT &&
			    f->ndone == 0 && send_get(p, f))
				atomic_fetch_add_explicit(&p->hedges, 1,
							  memory_order_relaxed);
			continue;
		}
		while (f->ndone && f->have < fetch_target(f, all)) {
			int r =
			    take_reply(p, f, rank, nrank, f->done[--f->ndone]);
			if (r < 0)
				return r;
		}
	}
}

/* Wait for the requests still out (bounded by the client's timeouts) and
 * drop every reply and fragment: the fetch starts afresh. f->lock held. */
static void fetch_reset(struct fetch *f)
{
	while (f->outstanding)
		pthread_cond_wait(&f->cond, &f->lock);
	while (f->ndone)
		net_op_free(f->done[--f->ndone]);
	for (unsigned i = 0; i < EC_MAX_FRAGS; i++) {
		net_op_free(f->keep[i]);
		f->keep[i] = NULL;
		f->frags[i] = NULL;
	}
	f->have = 0;
}

/* Decode from @k of the fragments at hand, trying every choice of k until
 * one gives the block named by the CID: fragments with right checksums
 * and wrong bytes (a hostile node that reseals its lies) are left out that
 * way. At most SUBSET_TRIES choices (C(14, 10) = 1001 for 10+4). 0 with
 * the block in @block, or -EIO. */
#define SUBSET_TRIES 1024
static int decode_subsets(struct fetch *f, void *block, unsigned *tries)
{
	unsigned idx[EC_MAX_FRAGS], n = 0, pick[EC_MAX_FRAGS], k = f->k;

	*tries = 0;
	for (unsigned i = 0; i < f->k + f->m && i < EC_MAX_FRAGS; i++)
		if (f->frags[i])
			idx[n++] = i;
	if (n < k)
		return -EIO;
	bfs_first_choice(pick, k);
	do {
		uint8_t *sub[EC_MAX_FRAGS] = {0};

		for (unsigned i = 0; i < k; i++)
			sub[idx[pick[i]]] = f->frags[idx[pick[i]]];
		(*tries)++;
		if (ec_decode(f->codec, sub, f->block_len, block) == 0 &&
		    blk_cid_verify(f->cid, block, f->block_len))
			return 0;
	} while (*tries < SUBSET_TRIES && bfs_next_choice(pick, k, n));
	return -EIO;
}

/* The block from the fragments collected (f->lock held), into a new
 * *@block: copied (K = 1, checked already), decoded, or, when the decoded
 * bytes hash wrong, decoded again from every fragment the placement has,
 * each choice of K in turn (decode_subsets). 0, -EIO or -ENOMEM. */
static int fetch_assemble(struct bfs_peers *p, struct fetch *f,
			  const unsigned *rank, unsigned nrank,
			  const struct timespec *deadline, uint8_t **block)
{
	char name[BLK_CID_STR_MAX];
	unsigned tries;
	int ret;

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
	count_reject(p);
	ret = collect(p, f, rank, nrank, true, deadline);
	if (ret < 0)
		return ret;
	ret = decode_subsets(f, *block, &tries);
	blk_cid_to_string(f->cid, name);
	bfs_log_warn("fetch %s: fragments with right checksums decode to "
		     "wrong bytes; %s after %u tries of %u of %u fragments",
		     name, ret == 0 ? "right" : "still wrong", tries, f->k,
		     f->have);
	return ret;
}

/* Fetch @cid from the placement: see peers.h.
 *
 * Design note: any node may lie (DESIGN.md §5), and the reader's only
 * proof is the CID. Lies come in three kinds. A fragment whose checksum
 * does not match is dropped by the client, and the next node asked. A
 * copy (K = 1) that checks but hashes wrong is dropped here, and the next
 * node asked. Under K > 1 a wrong fragment with a resealed checksum only
 * shows when the decoded block hashes wrong: then every fragment the
 * placement has is asked for and every choice of K decoded until one
 * hashes right (decode_subsets), so up to M liars are outvoted. Last, a
 * node may lie about the coding itself (K, M, length): the first
 * fragment in teaches the coding, and honest fragments then disagree with
 * it. When the fetch fails that way, the teacher is banned for this block
 * and the fetch starts again without it, up to MAX_BANS times. */
#define MAX_BANS 3
static int fetch_now(struct bfs_peers *p, const struct blk_cid *cid,
		     void **data, size_t *len)
{
	unsigned rank[BFS_MAX_NODES], nrank, bans = 0, k0, m0;
	struct fetch *f;
	struct timespec deadline;
	uint64_t refs;
	uint32_t blen;
	bool local;
	int ret = -EIO, r;
	char name[BLK_CID_STR_MAX];
	uint8_t *block = NULL;

	r = pl_rank(p->pl, cid, rank, BFS_MAX_NODES);
	if (r < 0)
		return r;
	nrank = (unsigned)r;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->cid = cid;
	k0 = p->cfg.k;
	m0 = p->cfg.m;
	if (blk_store_info(p->cfg.db, cid, &refs, &blen, &local) == 0)
		bfs_block_coding(p->cfg.k, p->cfg.m, p->cfg.ec_min, blen, &k0,
				 &m0);

	pthread_mutex_init(&f->lock, NULL);
	blk_cond_init(&f->cond);
	blk_deadline(&deadline, FETCH_DEADLINE_MS);
	pthread_mutex_lock(&f->lock);
	for (;;) {
		f->k = k0;
		f->m = m0;
		f->known = false;
		f->codec = NULL;
		f->teacher = -1;
		f->disagreed = 0;
		memset(f->disagreeing, 0, sizeof(f->disagreeing));
		memset(f->asked, 0, sizeof(f->asked));
		f->nc = plan_fetch(p, rank, nrank, f->k, f->m, f->cand);
		f->next = 0;
		ret = collect(p, f, rank, nrank, false, &deadline);
		if (ret < 0)
			break;
		ret = fetch_assemble(p, f, rank, nrank, &deadline, &block);
		if (ret == -ENOMEM)
			break;
		if (ret == 0 || !f->disagreed || f->teacher < 0 ||
		    bans >= MAX_BANS || blk_deadline_passed(&deadline))
			break;
		/* The coding was taught by a liar (design note above). */
		blk_cid_to_string(cid, name);
		bfs_log_warn("fetch %s: %u fragments disagree with the coding "
			     "node %s gave; asking again without it",
			     name, f->disagreed,
			     p->cfg.cluster->nodes[f->teacher].name);
		count_reject(p);
		f->banned[f->teacher] = true;
		bans++;
		fetch_reset(f);
	}
	if (ret == 0 && f->disagreed) {
		/* The coding that decoded the block right is the truth: who
		 * disagreed with it lied. */
		blk_cid_to_string(cid, name);
		for (unsigned i = 0; i < BFS_MAX_NODES; i++)
			if (f->disagreeing[i]) {
				count_reject(p);
				bfs_log_warn("fetch %s: node %s: fragment of "
					     "another coding",
					     name,
					     p->cfg.cluster->nodes[i].name);
			}
	}
	unsigned have = f->have, k = f->k;
	fetch_reset(f);
	pthread_mutex_unlock(&f->lock);

	if (ret == 0) {
		*data = block;
		*len = f->block_len;
	} else {
		free(block);
	}
	ec_codec_free(f->own_codec);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	free(f);
	pthread_mutex_lock(&p->lock);
	if (ret == 0) {
		p->fetch_blocks++;
		p->fetch_bytes += *len;
	} else {
		p->fetch_failures++;
	}
	pthread_mutex_unlock(&p->lock);
	if (ret < 0) {
		blk_cid_to_string(cid, name);
		bfs_log_err("fetch %s: %u of %u fragments found: %s", name,
			    have, k, strerror(-ret));
		ret = -EIO;
	}
	return ret;
}

/* ---- prefetch ----------------------------------------------------------- */

/* Prefetch workers: each takes the oldest queued entry and fetches it
 * exactly as a read would (fetch_now: any coding, hedging, checks), so
 * that PF_WORKERS blocks of a sequential reader are on their way at
 * once. An entry in flight stays in the list until its worker is done
 * with it (pf_make_room and pf_take leave it alone). */
static void *pf_main(void *arg)
{
	struct bfs_peers *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->pf_stop) {
		struct pf_ent *e = NULL;
		struct blk_cid cid;
		void *data = NULL;
		size_t len = 0;

		for (struct pf_ent *x = p->pf; x; x = x->next)
			if (x->state == PF_QUEUED)
				e = x; /* the list is newest first */
		if (!e) {
			pthread_cond_wait(&p->pf_work, &p->lock);
			continue;
		}
		e->state = PF_INFLIGHT;
		cid = e->cid;
		pthread_mutex_unlock(&p->lock);
		int r = fetch_now(p, &cid, &data, &len);
		pthread_mutex_lock(&p->lock);
		e->data = r == 0 ? data : NULL;
		e->len = len;
		e->state = r == 0 ? PF_READY : PF_FAILED;
		clock_gettime(CLOCK_MONOTONIC, &e->done_at);
		pthread_cond_broadcast(&p->pf_cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static struct pf_ent *pf_find(struct bfs_peers *p, const struct blk_cid *cid,
			      struct pf_ent ***link)
{
	for (struct pf_ent **l = &p->pf; *l; l = &(*l)->next) {
		if (blk_cid_equal(&(*l)->cid, cid)) {
			if (link)
				*link = l;
			return *l;
		}
	}
	return NULL;
}

/* Take the entry at @link off the list and free it. Lock held. */
static void pf_unlink(struct bfs_peers *p, struct pf_ent **link)
{
	struct pf_ent *e = *link;

	*link = e->next;
	free(e->data);
	free(e);
	p->npf--;
}

/* Drop an entry to make room: the least recently read, else the oldest
 * failure, else the oldest block fetched ahead that nobody read for
 * PF_STALE_MS (the reader went elsewhere). False if none may go: blocks
 * fetched ahead wait for their reader. Lock held. */
static bool pf_make_room(struct bfs_peers *p)
{
	struct pf_ent **taken = NULL, **failed = NULL, **stale = NULL, **victim;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	/* the list is most recent first */
	for (struct pf_ent **l = &p->pf; *l; l = &(*l)->next) {
		struct pf_ent *e = *l;

		if (e->state == PF_READY && e->taken)
			taken = l;
		else if (e->state == PF_FAILED)
			failed = l;
		else if (e->state == PF_READY &&
			 (now.tv_sec - e->done_at.tv_sec) * 1000 +
				 (now.tv_nsec - e->done_at.tv_nsec) / 1000000 >
			     PF_STALE_MS)
			stale = l;
	}
	victim = taken ? taken : failed ? failed : stale;
	if (!victim)
		return false;
	pf_unlink(p, victim);
	return true;
}

void bfs_peers_prefetch(struct bfs_peers *p, const struct blk_cid *cids,
			size_t n)
{
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < n && !p->pf_stop; i++) {
		struct pf_ent *e;

		if (pf_find(p, &cids[i], NULL) ||
		    (p->npf >= PF_MAX && !pf_make_room(p)))
			continue;
		e = calloc(1, sizeof(*e));
		if (!e)
			break;
		e->cid = cids[i];
		e->state = PF_QUEUED;
		e->next = p->pf;
		p->pf = e;
		p->npf++;
		pthread_cond_signal(&p->pf_work);
	}
	pthread_mutex_unlock(&p->lock);
}

/* Copy block @cid out of the entries: 0 with a malloc'd copy, or -ENOENT
 * (not there, not started yet, or the prefetch failed: fetch it the normal
 * way), -ENOMEM. Waits for one in flight. A block read moves to the front
 * of the list. */
static int pf_take(struct bfs_peers *p, const struct blk_cid *cid, void **data,
		   size_t *len)
{
	struct pf_ent **link, *e;
	int ret = -ENOENT;

	pthread_mutex_lock(&p->lock);
	while ((e = pf_find(p, cid, &link)) && e->state == PF_INFLIGHT)
		pthread_cond_wait(&p->pf_cond, &p->lock);
	if (e) {
		*link = e->next;
		if (e->state == PF_READY) {
			e->next = p->pf;
			p->pf = e;
			e->taken = true;
			*data = malloc(e->len);
			ret = *data ? 0 : -ENOMEM;
			if (*data) {
				memcpy(*data, e->data, e->len);
				*len = e->len;
			}
		} else {
			p->npf--;
			free(e->data);
			free(e);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

void bfs_peers_drop_taken(struct bfs_peers *p)
{
	pthread_mutex_lock(&p->lock);
	for (struct pf_ent **l = &p->pf; *l;) {
		struct pf_ent *e = *l;

		if (e->state == PF_READY && e->taken)
			pf_unlink(p, l);
		else
			l = &e->next;
	}
	pthread_mutex_unlock(&p->lock);
}

/* Keep a copy of a block just fetched for the next read of it. */
static void pf_keep(struct bfs_peers *p, const struct blk_cid *cid,
		    const void *data, size_t len)
{
	struct pf_ent *e = calloc(1, sizeof(*e));
	void *copy = e ? malloc(len) : NULL;

	if (!copy) {
		free(e);
		return;
	}
	memcpy(copy, data, len);
	e->cid = *cid;
	e->data = copy;
	e->len = len;
	e->state = PF_READY;
	e->taken = true;
	clock_gettime(CLOCK_MONOTONIC, &e->done_at);
	pthread_mutex_lock(&p->lock);
	if (pf_find(p, cid, NULL) || (p->npf >= PF_MAX && !pf_make_room(p))) {
		pthread_mutex_unlock(&p->lock);
		free(copy);
		free(e);
		return;
	}
	e->next = p->pf;
	p->pf = e;
	p->npf++;
	pthread_mutex_unlock(&p->lock);
}

int bfs_peers_fetch(struct bfs_peers *p, const struct blk_cid *cid, void **data,
		    size_t *len)
{
	int ret = pf_take(p, cid, data, len);

	if (ret != -ENOENT)
		return ret;
	ret = fetch_now(p, cid, data, len);
	if (ret == 0)
		pf_keep(p, cid, *data, *len);
	return ret;
}

/* ---- lifecycle ---------------------------------------------------------- */

int bfs_peers_open(const struct bfs_peers_config *cfg, struct bfs_peers **out,
		   char *err, size_t errlen)
{
	const struct bfs_cluster *cl = cfg->cluster;
	struct pl_node nodes[BFS_MAX_NODES];
	struct net_peer_config peers[BFS_MAX_NODES];
	const char *keys[BFS_MAX_NODES];
	struct bfs_peers *p;
	int ret;

	*out = NULL;
	if (cfg->k < 1 || cfg->k + cfg->m > EC_MAX_FRAGS ||
	    cfg->k + cfg->m > cl->nnodes) {
		snprintf(err, errlen,
			 "redundancy %u+%u needs %u nodes; the cluster has %u",
			 cfg->k, cfg->m, cfg->k + cfg->m, cl->nnodes);
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	p->n = cl->nnodes;
	p->self = -1;
	pthread_mutex_init(&p->lock, NULL);
	blk_cond_init(&p->wake);
	blk_cond_init(&p->done);
	blk_cond_init(&p->pf_cond);
	blk_cond_init(&p->pf_work);
	for (unsigned i = 0; i < cl->nnodes; i++) {
		nodes[i] = (struct pl_node){
		    cl->nodes[i].name, cl->nodes[i].zone, cl->nodes[i].weight};
		peers[i] = (struct net_peer_config){cl->nodes[i].address,
						    cl->nodes[i].public_key};
		keys[i] = cl->nodes[i].public_key;
		if (!strcmp(cl->nodes[i].name, cfg->self))
			p->self = (int)i;
	}
	ret = pl_map_new(nodes, cl->nnodes, &p->pl);
	if (ret < 0) {
		snprintf(err, errlen, "bad node list in the cluster file: %s",
			 strerror(-ret));
		goto fail;
	}
	if (cfg->k > 1) {
		ret = ec_codec_new(cfg->k, cfg->m, &p->codec);
		if (ret < 0) {
			snprintf(err, errlen,
				 "cannot build the %u+%u codec: %s", cfg->k,
				 cfg->m, strerror(-ret));
			goto fail;
		}
	}
	if (cfg->serve && p->self >= 0) {
		struct net_server_config sc = {
		    .endpoint = cl->nodes[p->self].address,
		    .public_key = cfg->public_key,
		    .secret_key = cfg->secret_key,
		    .allowed_keys = keys,
		    .nallowed = cl->nnodes,
		    .db = cfg->db,
		    .cf = cfg->frags_cf,
		    .capacity = cfg->capacity,
		};
		ret = net_server_new(&sc, &p->srv);
		if (ret < 0) {
			snprintf(err, errlen, "cannot serve %s on %s: %s",
				 cfg->self, sc.endpoint, strerror(-ret));
			goto fail;
		}
	}
	struct net_client_config cc = {
	    .public_key = cfg->public_key,
	    .secret_key = cfg->secret_key,
	    .peers = peers,
	    .npeers = cl->nnodes,
	};
	ret = net_client_new(&cc, &p->cl);
	if (ret < 0) {
		snprintf(err, errlen, "cannot start the cluster client: %s",
			 strerror(-ret));
		goto fail;
	}
	/* Our own node's fragments: a function call, not a round trip
	 * through CURVE to ourselves. */
	if (p->srv) {
		ret = net_client_set_local(p->cl, (unsigned)p->self,
					   net_server_exec, net_server_release,
					   p->srv);
		if (ret < 0) {
			snprintf(err, errlen,
				 "cannot start the local fragment threads: %s",
				 strerror(-ret));
			goto fail;
		}
	}
	/* Records below the first one left in the log are done. */
	{
		struct blk_iter *it =
		    blk_iter_new(cfg->db, BLK_CF_NEWLOG, NULL, 0, NULL, 0);
		p->read_seq = blk_db_newlog_head(cfg->db);
		if (it && blk_iter_valid(it)) {
			size_t klen;
			const uint8_t *key = blk_iter_key(it, &klen);
			if (klen == 8)
				p->read_seq = blk_get_be64(key);
		}
		blk_iter_free(it);
		p->watermark = p->read_seq;
	}
	for (unsigned i = 0; i < PF_WORKERS; i++) {
		if (pthread_create(&p->pf_thread[i], NULL, pf_main, p))
			break; /* fewer prefetch workers will do */
		p->npf_threads++;
	}
	ret = -pthread_create(&p->thread, NULL, uploader_main, p);
	if (ret < 0) {
		snprintf(err, errlen, "cannot start the uploader: %s",
			 strerror(-ret));
		goto fail;
	}
	p->started = true;
	*out = p;
	return 0;
fail:
	bfs_peers_close(p);
	return ret;
}

static void drop_jobs(struct bfs_peers *p)
{
	while (p->head) {
		struct job *j = p->head;
		p->head = j->next;
		job_free(j);
	}
	p->tail = NULL;
	while (p->comps) {
		struct completion *c = p->comps;
		p->comps = c->next;
		net_op_free(c->op);
		free(c);
	}
}

int bfs_peers_close(struct bfs_peers *p)
{
	int ret = 0;

	if (!p)
		return 0;
	if (p->started) {
		/* A barrier while closing is the drain, then the SYNCs. */
		bfs_peers_closing(p);
		if (bfs_peers_barrier(p) < 0)
			ret = -EIO;
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_broadcast(&p->wake);
		pthread_cond_broadcast(&p->done);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
	}
	/* Prefetches in flight end within the fetch deadline. */
	pthread_mutex_lock(&p->lock);
	p->pf_stop = true;
	pthread_cond_broadcast(&p->pf_work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->npf_threads; i++)
		pthread_join(p->pf_thread[i], NULL);
	bfs_peers_log_counters(p);
	/* The client completes whatever is in flight (callbacks included)
	 * before it goes; only then can the jobs go. */
	net_client_free(p->cl);
	drop_jobs(p);
	while (p->pf) {
		struct pf_ent *e = p->pf;
		p->pf = e->next;
		free(e->data);
		free(e);
	}
	net_server_free(p->srv);
	ec_codec_free(p->codec);
	pl_map_free(p->pl);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->pf_cond);
	pthread_cond_destroy(&p->pf_work);
	free(p);
	return ret;
}

int64_t bfs_peers_describe(struct bfs_peers *p, char *buf, size_t size)
{
	size_t len = 0;

	for (unsigned i = 0; i < p->n; i++) {
		bool up = false;
		uint64_t lat = 0;
		int n;

		net_client_peer_state(p->cl, i, &up, &lat);
		n = snprintf(len < size ? buf + len : NULL,
			     len < size ? size - len : 0, "%s %s %llu\n",
			     p->cfg.cluster->nodes[i].name, up ? "up" : "down",
			     (unsigned long long)lat);
		if (n < 0)
			return -EIO;
		len += (size_t)n;
	}
	if (size && len < size)
		buf[len] = 0;
	return (int64_t)len;
}

void bfs_peers_log_counters(struct bfs_peers *p)
{
	pthread_mutex_lock(&p->lock);
	bfs_log_info("peers: uploaded %llu blocks (%llu MiB, %llu off their "
		     "placement), %llu failed sends; fetched %llu blocks "
		     "(%llu MiB), %llu fetch failures, %llu wrong answers "
		     "rejected",
		     (unsigned long long)p->up_blocks,
		     (unsigned long long)(p->up_bytes >> 20),
		     (unsigned long long)p->up_misplaced,
		     (unsigned long long)p->up_failures,
		     (unsigned long long)p->fetch_blocks,
		     (unsigned long long)(p->fetch_bytes >> 20),
		     (unsigned long long)p->fetch_failures,
		     (unsigned long long)p->fetch_rejects);
	pthread_mutex_unlock(&p->lock);
	{
		char buf[1024];
		size_t off = 0;

		for (unsigned i = 0; i < p->n && off < sizeof(buf) - 64; i++)
			off += (size_t)snprintf(
			    buf + off, sizeof(buf) - off, " %s:%llu",
			    p->cfg.cluster->nodes[i].name,
			    (unsigned long long)atomic_load(&p->gets_sent[i]));
		bfs_log_info("peers: fragment requests sent per node:%s; %llu "
			     "of them because others were slow",
			     buf, (unsigned long long)atomic_load(&p->hedges));
	}
}
