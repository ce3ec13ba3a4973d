/* The uploader: the new-block log's consumer and the sync barrier; see
 * uploader.h.
 *
 * The lifecycle of a block (a chunk's content, by CID): the one diagram
 * of it, with one set of names for the whole system (fs/write.c points
 * here). In capitals the states of a job of this file, which
 * assert_job_state checks at every transition in debug builds; in lower
 * case the states outside a job.
 *
 *   stored     refs record and bytes in the local store: blk_txn_commit
 *      |       (blocks/store); in the same batch a new-block log record
 *      v       (cfg.newlog); the writer then kicks the uploader
 *              (fs/write.c flush_commit: cl_engine_kick)
 *   queued     a log record no job holds yet (cl_uploader_backlog counts
 *      |       from here to UPLOADED); the uploader thread's read_log:
 *      |--read_log--------------------------------------> UPLOADING
 *      |--read_log (not a CID, or deleted: nothing to do)-> UPLOADED
 *      '--read_log (referenced, bytes not here)---------> UNREAD
 *   UNREAD     --job_retry (retry_at passed, read)------> UPLOADING
 *   UNREAD     --job_retry (deleted meanwhile)----------> UPLOADED
 *   UPLOADING  --place_fragment (no node left)----------> STALLED
 *   STALLED    --job_retry (retry_at passed)------------> UPLOADING
 *   UPLOADING  --handle_completion (K+M acknowledged)---> UPLOADED
 *   UPLOADED   --retire (record deleted, the watermark moves)--> uploaded
 *   uploaded   on K+M nodes (its placement or spares), in their WALs
 *      |  cl_uploader_barrier: wait_uploaded, then a SYNC to every node
 *      v  written since the last barrier
 *   synced     durable on its placement
 *
 *   evicted    bytes gone from the local store, refs record kept
 *              (fs/maint.c evict_blocks -> blk_store_evict); only an
 *              uploaded block may be evicted (not "synced": the WALs
 *              suffice), and a read fetches the bytes back
 *              (cl_engine_fetch -> blk_store_fill). A block evicted while
 *              queued (a store written before that was refused) makes
 *              its job UNREAD (invariant 5).
 *
 * A job's state is a function of its flags (job_state): done ->
 * UPLOADED, else unread -> UNREAD, else stalled -> STALLED, else
 * UPLOADING. A STALLED job may still have sends in flight.
 *
 * Invariants (under u->lock):
 *  1. The jobs are in sequence order; every record below the first job's
 *     sequence number (below read_seq when there is none) is done, and the
 *     watermark never passes it.
 *  2. A job leaves the list only when it is done and no send of it is in
 *     flight (its completions still point at it).
 *  3. No node holds two fragments of one block, and no fragment goes to
 *     another fragment's home (a fetch would not look for it there).
 *  4. dirty[i] is set for every node that acknowledged a fragment since
 *     the last barrier that synced it.
 *  5. A job is done only when all its fragments were acknowledged or there
 *     is nothing to upload: its record names no CID, or the store holds no
 *     reference to the block (deleted). A block still referenced whose
 *     bytes are not here (evicted: blk_store_get says -ENOENT,
 *     blk_store_has 1) is never taken for deleted; its job stays unread,
 *     and the watermark and the barrier wait.
 *
 * Locks: u->lock guards the fields so marked and every job on the list.
 * The node functions are called with it held (send, up) or without it
 * (sync); their completions take it. Nothing waits on the network with
 * it held. */
#include "net/cluster/uploader.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/bytes.h"
#include "blocks/base/clock.h"
#include "blocks/base/log.h"
#include "net/cluster/config.h"

#define DEFAULT_WINDOW 32
#define DEFAULT_BACKLOG 1024
#define DEFAULT_SYNC_TIMEOUT_MS 60000
#define DEFAULT_RETRY_MS 1000 /* a block no node would take is tried again */
#define THROTTLE_MAX_MS 1000
#define SYNC_RETRY_MS 200 /* a node that did not answer SYNC is asked again */
#define FULL_MS 10000	  /* a node that said it is full is skipped so long */
#define IDLE_MS 200	  /* the thread looks at the log at least this often */

/* One block being uploaded. Private to the uploader thread while it is
 * made (read_log), then under u->lock. */
struct job {
	struct job *next;
	uint64_t seq;
	struct blk_cid cid;
	uint8_t ckey[BLK_CID_MAX_BYTES];
	size_t cklen;
	size_t len; /* block length */
	size_t frag_len;
	/* all fragments' bytes (for K = 1 the block, every fragment's),
	 * shared with the sends in flight */
	struct net_buf *buf;
	uint8_t *frag[EC_MAX_FRAGS];
	uint8_t hdr[EC_MAX_FRAGS][EC_FRAG_HDR_LEN];
	unsigned want;		   /* K + M */
	unsigned ok;		   /* fragments acknowledged */
	unsigned inflight;	   /* sends outstanding */
	int holder[EC_MAX_FRAGS];  /* node holding fragment i, -1 none */
	bool placed[CL_MAX_NODES]; /* nodes used by this job */
	unsigned rank[CL_MAX_NODES];
	unsigned nrank;
	bool misplaced; /* some fragment is not on its home */
	bool stalled;	/* some fragment found no node; retry later */
	/* Its bytes were not here (invariant 5): read again at retry_at.
	 * No send of it is in flight meanwhile. */
	bool unread;
	bool warned; /* that its bytes were not here was logged */
	struct timespec retry_at;
	bool done;
};

/* One fragment send. Made under u->lock; its done runs on another
 * thread and queues it on u->comps for the uploader thread. */
struct completion {
	struct cl_send send; /* first: the node functions hand it back */
	struct completion *next;
	struct cl_uploader *u;
	struct job *job;
	unsigned index;
	unsigned node;
	int status;
};

struct cl_uploader {
	struct cl_uploader_config cfg; /* read-only */
	pthread_t thread;	       /* started at new, joined at stop */
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t wake;	  /* lock: the thread has something to do */
	pthread_cond_t done;	  /* lock: the watermark moved, or stop */
	bool stop;		  /* lock */
	struct job *head, *tail;  /* lock: in sequence order */
	unsigned njobs;		  /* lock */
	struct completion *comps; /* lock: sends completed, to handle */
	uint64_t read_seq;	  /* lock: next log record to read */
	uint64_t watermark;	  /* lock: every record below it is done */
	bool dirty[CL_MAX_NODES]; /* lock: took fragments since a barrier */
	struct timespec full_until[CL_MAX_NODES]; /* lock: said -ENOSPC */
	/* Unmount (cl_uploader_closing): the one deadline every barrier
	 * shares, pushed back whenever blocks go out. */
	bool closing;			/* lock */
	struct timespec close_deadline; /* lock */
	bool close_reported;		/* lock: what is left was said */
	struct cl_upload_stats st;	/* lock */
};

/* ---- job states (the diagram at the top) -------------------------- */

enum job_state { JOB_UNREAD, JOB_UPLOADING, JOB_STALLED, JOB_UPLOADED };
#define JS(s) (1u << JOB_##s)

#ifndef NDEBUG
static enum job_state job_state(const struct job *j)
{
	if (j->done)
		return JOB_UPLOADED;
	if (j->unread)
		return JOB_UNREAD;
	return j->stalled ? JOB_STALLED : JOB_UPLOADING;
}

/* Check that @j is in one of @states (JS(...) | ...) and that what that
 * state promises holds, as SQLite's pager.c does with
 * assert_pager_state. Returns 1, for assert(). u->lock held, or @j
 * private to the uploader thread. */
static int assert_job_state(const struct job *j, unsigned states)
{
	enum job_state s = job_state(j);
	unsigned held = 0;

	assert(states & (1u << s));
	assert(j->want <= EC_MAX_FRAGS);
	assert(j->ok + j->inflight <= j->want);
	/* invariant 3: no node holds two fragments of the block */
	for (unsigned i = 0; i < j->want; i++) {
		if (j->holder[i] < 0)
			continue;
		held++;
		assert(j->placed[j->holder[i]]);
		for (unsigned x = 0; x < i; x++)
			assert(j->holder[x] != j->holder[i]);
	}
	switch (s) {
	case JOB_UNREAD:
		/* its bytes were not here: nothing sent, nothing to send */
		assert(!j->buf && j->stalled);
		assert(j->ok == 0 && j->inflight == 0 && held == 0);
		break;
	case JOB_UPLOADING:
		/* every fragment has a node (acknowledged or on its way) */
		assert(j->buf && j->want >= 1);
		assert(held == j->want);
		break;
	case JOB_STALLED:
		/* some fragment found no node: it waits for retry_at */
		assert(j->buf && j->want >= 1 && held < j->want);
		break;
	case JOB_UPLOADED:
		/* every fragment acknowledged, or nothing was to be sent */
		assert(j->inflight == 0);
		assert(j->ok == j->want || j->ok == 0);
		break;
	}
	return 1;
}
#endif

/* A send finished (another thread): hand it to the uploader thread. */
static void send_done(struct cl_send *s, int status)
{
	struct completion *c = (struct completion *)s;
	struct cl_uploader *u = c->u;

	c->status = status;
	pthread_mutex_lock(&u->lock);
	c->next = u->comps;
	u->comps = c;
	pthread_cond_signal(&u->wake);
	pthread_mutex_unlock(&u->lock);
}

/* The @n-th node fragment @i of @j may go to: its home rank[i] first, then
 * the spares rank[want], rank[want + 1], ... (the nodes of the order past
 * the homes). Never the home of another fragment: a fetch asks a home for
 * its own index and the spares for every index (net/cluster/plan.h), so a
 * fragment on another's home would not be found. -1 past the last. */
static int place_candidate(const struct job *j, unsigned i, unsigned n)
{
	if (n == 0)
		return i < j->nrank ? (int)i : -1;
	n += j->want - 1;
	return n < j->nrank ? (int)n : -1;
}

/* Whether fragments may go to @node now. u->lock held. */
static bool node_usable(struct cl_uploader *u, const struct job *j,
			unsigned node)
{
	return !j->placed[node] && u->cfg.ops.up(u->cfg.ops.arg, node) &&
	       blk_deadline_passed(&u->full_until[node]);
}

/* Send fragment @i of @j to @node: 0, -ENOMEM (give up for this round),
 * or another negative errno (try the next node). u->lock held, so the
 * send's completion cannot run before the job records it. */
static int send_fragment(struct cl_uploader *u, struct job *j, unsigned i,
			 unsigned node, bool home)
{
	struct completion *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->send.done = send_done;
	c->job = j;
	c->index = i;
	c->node = node;
	c->u = u;
	ret = u->cfg.ops.send(u->cfg.ops.arg, node, j->hdr[i], j->buf,
			      j->frag[i], j->frag_len, &c->send);
	if (ret == -ENOMEM) {
		free(c);
		return ret;
	}
	j->placed[node] = true;
	if (!home)
		j->misplaced = true;
	if (ret < 0) {
		free(c);
		return ret;
	}
	j->holder[i] = (int)node;
	j->inflight++;
	return 0;
}

/* Send fragment @i of @j to the first of its candidate nodes
 * (place_candidate) that is up, not full, and holds nothing of this block
 * yet; with none, the job stalls until retry_ms on. u->lock held. */
static void place_fragment(struct cl_uploader *u, struct job *j, unsigned i)
{
	for (unsigned n = 0;; n++) {
		int r = place_candidate(j, i, n), ret;

		if (r < 0)
			break;
		if (!node_usable(u, j, j->rank[r]))
			continue;
		ret = send_fragment(u, j, i, j->rank[r], (unsigned)r == i);
		if (ret == 0)
			return;
		if (ret == -ENOMEM)
			break;
	}
	/* No node left for this round. In the next one (retry_ms on) every
	 * node that does not hold a fragment of this block may be tried
	 * again: nodes that failed may be back. */
	memset(j->placed, 0, sizeof(j->placed));
	for (unsigned x = 0; x < j->want; x++)
		if (j->holder[x] >= 0)
			j->placed[j->holder[x]] = true;
	j->stalled = true;
	blk_deadline(&j->retry_at,
		     u->cfg.retry_ms ? u->cfg.retry_ms : DEFAULT_RETRY_MS);
	assert(assert_job_state(j, JS(STALLED)));
}

/* Fragments of a block sent as copies (K = 1): every one is the block.
 * Takes @data. 0 or -ENOMEM. */
static int job_copies(struct job *j, void *data, size_t len)
{
	j->buf = net_buf_new(data, free);
	if (!j->buf) {
		free(data);
		return -ENOMEM;
	}
	j->frag_len = len;
	for (unsigned i = 0; i < j->want; i++) {
		struct ec_frag_hdr h = {.k = 1,
					.m = (uint8_t)(j->want - 1),
					.index = (uint8_t)i,
					.block_len = (uint32_t)len,
					.frag_len = (uint32_t)len,
					.cid = j->cid};
		j->frag[i] = data;
		ec_frag_hdr_seal(&h, data, j->hdr[i]);
	}
	return 0;
}

/* Fragments of a block coded K+M (K > 1). Takes @data. 0 or -errno. */
static int job_encode(struct cl_uploader *u, struct job *j, void *data,
		      size_t len)
{
	size_t fl = ec_frag_size(u->cfg.lay.codec, len);
	uint8_t *buf = malloc(fl * j->want);
	int ret;

	j->buf = buf ? net_buf_new(buf, free) : NULL;
	if (!j->buf) {
		free(buf);
		free(data);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < j->want; i++)
		j->frag[i] = buf + i * fl;
	j->frag_len = fl;
	ret = ec_encode_frags(u->cfg.lay.codec, &j->cid, data, len, j->frag,
			      j->hdr);
	free(data);
	return ret;
}

/* Read the block and make its fragments. 0, -ENOENT when its bytes are
 * not here (deleted before its turn came, or evicted: job_deleted tells
 * which), or another -errno. */
static int job_prepare(struct cl_uploader *u, struct job *j)
{
	unsigned k, m;
	void *data = NULL;
	size_t len;
	int ret;

	ret = blk_store_get(u->cfg.lay.store, &j->cid, &data, &len);
	if (ret < 0)
		return ret;
	/* Short blocks: M+1 replicas on the first M+1 nodes of the order. */
	cl_layout_coding(&u->cfg.lay, len, &k, &m);
	j->len = len;
	j->want = k + m;
	ret = k == 1 ? job_copies(j, data, len) : job_encode(u, j, data, len);
	if (ret < 0)
		return ret;
	for (unsigned i = 0; i < j->want; i++)
		j->holder[i] = -1;
	ret = pl_rank(u->cfg.lay.pl, &j->cid, j->rank, CL_MAX_NODES);
	if (ret < 0)
		return ret;
	j->nrank = (unsigned)ret;
	return 0;
}

static void job_start(struct cl_uploader *u, struct job *j)
{
	j->stalled = false;
	/* Every fragment, also past one that stalls: another fragment's
	 * home may well be up. */
	for (unsigned i = 0; i < j->want; i++)
		if (j->holder[i] < 0)
			place_fragment(u, j, i);
	assert(assert_job_state(j, JS(UPLOADING) | JS(STALLED)));
}

static void job_free(struct job *j)
{
	net_buf_unref(j->buf);
	free(j);
}

/* Whether @err, from a read of the local store, says the local copy is
 * damaged: RocksDB's checksum (-EIO) or, with verify_on_read, the CID
 * (-EBADMSG). */
static bool local_damaged(int err)
{
	return err == -EIO || err == -EBADMSG;
}

/* The store references @j's block but its bytes are not here (@why
 * -ENOENT): evicted before its upload (the store refuses that now,
 * store.h invariant 4, but a store written before may hold such a block),
 * or stored again since the read; or they cannot be read (@why another
 * errno: a damaged local copy that no node gave back). Its bytes reached
 * no node, so the job is not done (invariant 5): it reads them again
 * after retry_ms (a read of the file may fill them back from the
 * cluster). Said once per job. @j is the caller's (read_records) or
 * u->lock is held. */
static void job_unread(struct cl_uploader *u, struct job *j, int why)
{
	char name[BLK_CID_STR_MAX];

	net_buf_unref(j->buf);
	j->buf = NULL;
	j->unread = true;
	j->stalled = true;
	blk_deadline(&j->retry_at,
		     u->cfg.retry_ms ? u->cfg.retry_ms : DEFAULT_RETRY_MS);
	assert(assert_job_state(j, JS(UNREAD)));
	if (j->warned)
		return;
	j->warned = true;
	blk_cid_to_string(&j->cid, name);
	if (why == -ENOENT)
		blk_log_err("upload: block %s is referenced but its bytes are "
			    "not here; it stays queued until they are",
			    name);
	else if (local_damaged(why))
		blk_log_err("upload: block %s: the local copy is damaged (%s) "
			    "and no node gave it back; it stays queued and is "
			    "tried again",
			    name, strerror(-why));
	else
		blk_log_err("upload: block %s cannot be read here (%s); it "
			    "stays queued and is tried again",
			    name, strerror(-why));
}

/* job_prepare, and when the local copy is damaged, the same again after
 * the nodes gave the block back (cfg.heal). Without u->lock: it may wait
 * on the network. */
static int job_read(struct cl_uploader *u, struct job *j)
{
	int ret = job_prepare(u, j);

	if (local_damaged(ret) && u->cfg.heal &&
	    u->cfg.heal(u->cfg.heal_arg, &j->cid) == 0)
		ret = job_prepare(u, j);
	return ret;
}

/* Whether a block job_prepare did not find (-ENOENT) is deleted (no
 * reference left: nothing to upload) rather than evicted. */
static bool job_deleted(struct cl_uploader *u, const struct job *j)
{
	return blk_store_has(u->cfg.lay.store, &j->cid) == 0;
}

/* A job for log record @seq naming @cid (@clen bytes): prepared, unread
 * (its bytes are not here), or done at once when there is nothing to
 * upload. NULL when the record must be read again later (out of memory,
 * the store failing). */
static struct job *job_from_record(struct cl_uploader *u, uint64_t seq,
				   const uint8_t *cid, size_t clen)
{
	struct job *j = calloc(1, sizeof(*j));
	int ret;

	if (!j)
		return NULL;
	j->seq = seq;
	if (clen > sizeof(j->ckey) ||
	    blk_cid_from_bytes(&j->cid, cid, clen) < 0) {
		j->done = true; /* not a CID: drop the record */
		assert(assert_job_state(j, JS(UPLOADED)));
		return j;
	}
	memcpy(j->ckey, cid, clen);
	j->cklen = clen;
	ret = job_read(u, j);
	if (ret == -ENOENT && job_deleted(u, j)) {
		j->done = true; /* deleted already */
		assert(assert_job_state(j, JS(UPLOADED)));
	} else if (ret == -ENOENT || local_damaged(ret)) {
		/* evicted, or damaged and not healed: not done (invariant
		 * 5) */
		job_unread(u, j, ret);
	} else if (ret < 0) {
		blk_log_err("upload: cannot read block for upload: %s",
			    strerror(-ret));
		job_free(j);
		return NULL;
	}
	return j;
}

/* Read log records from @from below @head into a list of at most @room
 * jobs at *@first. Sets *@next to the sequence number to read from next.
 * Touches no field of @u but its configuration: called without the
 * lock. */
static void read_records(struct cl_uploader *u, uint64_t from, uint64_t head,
			 unsigned room, struct job **first, uint64_t *next)
{
	uint8_t start[8];
	struct job **tail = first;
	unsigned got = 0;
	bool complete = true;
	struct blk_iter *it;

	*next = from;
	blk_put_be64(start, from);
	it = blk_iter_new(blk_store_db(u->cfg.lay.store),
			  blk_store_newlog_cf(u->cfg.lay.store), NULL, 0, start,
			  8);
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
		if (got >= room) {
			complete = false;
			break;
		}
		*next = seq + 1;
		j = job_from_record(u, seq, cid, clen);
		if (!j) {
			complete = false;
			break;
		}
		*tail = j;
		tail = &j->next;
		got++;
	}
	if (it && blk_iter_status(it) < 0)
		complete = false;
	blk_iter_free(it);
	if (complete)
		*next = head;
}

/* Read new records of the log into jobs, up to the window, and start
 * them. u->lock held; dropped around the store reads. */
static void read_log(struct cl_uploader *u)
{
	const unsigned window = u->cfg.window ? u->cfg.window : DEFAULT_WINDOW;
	uint64_t head = blk_store_newlog_head(u->cfg.lay.store), next;
	struct job *first = NULL;

	if (u->njobs >= window || u->read_seq >= head)
		return;
	/* Only this thread adds jobs: the room stays. */
	unsigned room = window - u->njobs;
	uint64_t from = u->read_seq;

	pthread_mutex_unlock(&u->lock);
	read_records(u, from, head, room, &first, &next);
	pthread_mutex_lock(&u->lock);
	u->read_seq = next;
	for (struct job *j = first, *nx; j; j = nx) {
		nx = j->next;
		j->next = NULL;
		if (u->tail)
			u->tail->next = j;
		else
			u->head = j;
		u->tail = j;
		u->njobs++;
		if (!j->done && !j->unread)
			job_start(u, j);
	}
}

/* A fragment send failed with @status. u->lock held. */
static void send_failed(struct cl_uploader *u, struct completion *c, int status)
{
	const char *node = u->cfg.lay.names[c->node];
	char name[BLK_CID_STR_MAX];

	u->st.failures++;
	if (status == -ENOSPC) {
		/* Full: the next nodes in rendezvous order take its
		 * fragments for a while (repair moves them later). */
		if (blk_deadline_passed(&u->full_until[c->node]))
			blk_log_warn("node %s is full; its fragments go to the "
				     "next nodes for %u s",
				     node, FULL_MS / 1000);
		blk_deadline(&u->full_until[c->node], FULL_MS);
	}
	if (u->st.failures <= 20 || u->st.failures % 1000 == 0) {
		blk_cid_to_string(&c->job->cid, name);
		blk_log_warn("upload of %s fragment %u to %s failed: %s; "
			     "trying the next node",
			     name, c->index, node, strerror(-status));
	}
	c->job->holder[c->index] = -1;
	/* the node keeps its placed mark: never the same node twice for one
	 * block in this round */
	place_fragment(u, c->job, c->index);
}

static void handle_completion(struct cl_uploader *u, struct completion *c)
{
	struct job *j = c->job;

	assert(assert_job_state(j, JS(UPLOADING) | JS(STALLED)));
	j->inflight--;
	if (c->status == 0) {
		j->ok++;
		u->dirty[c->node] = true;
		if (j->ok == j->want) {
			j->done = true;
			u->st.blocks++;
			u->st.bytes += j->len;
			if (j->misplaced)
				u->st.misplaced++;
		}
	} else {
		send_failed(u, c, c->status);
	}
	assert(assert_job_state(j, JS(UPLOADING) | JS(STALLED) | JS(UPLOADED)));
	free(c);
}

/* Delete the log records of the jobs from @first on (and note the
 * misplaced ones for repair) in one transaction, and free the jobs. */
static void retire_commit(struct cl_uploader *u, struct job *first, unsigned n)
{
	struct blk_txn *t = blk_txn_new(u->cfg.lay.store);
	int ret;

	for (struct job *j = first; t && j; j = j->next) {
		uint8_t key[8];

		blk_put_be64(key, j->seq);
		blk_txn_delete(t, blk_store_newlog_cf(u->cfg.lay.store), key,
			       8);
		if (j->misplaced && j->cklen)
			blk_txn_put(t, u->cfg.repair_cf, j->ckey, j->cklen,
				    "misplaced", 9);
	}
	ret = t ? blk_txn_commit(t, false) : -ENOMEM;
	blk_txn_free(t);
	if (ret < 0)
		blk_log_err("upload: cannot retire %u uploaded blocks: %s", n,
			    strerror(-ret));
	for (struct job *j = first, *nx; j; j = nx) {
		nx = j->next;
		job_free(j);
	}
}

/* Pop the finished jobs at the head, retire them and move the watermark.
 * u->lock held; dropped around the commit. */
static void retire(struct cl_uploader *u)
{
	struct job *first = u->head, *last = NULL;
	unsigned n = 0;

	for (struct job *j = u->head; j && j->done && !j->inflight;
	     j = j->next) {
		assert(assert_job_state(j, JS(UPLOADED)));
		assert(!last || last->seq < j->seq); /* invariant 1 */
		last = j;
		n++;
	}
	if (!n)
		return;
	u->head = last->next;
	if (!u->head)
		u->tail = NULL;
	u->njobs -= n;
	last->next = NULL;
	uint64_t mark = u->head ? u->head->seq : u->read_seq;

	pthread_mutex_unlock(&u->lock);
	retire_commit(u, first, n);
	pthread_mutex_lock(&u->lock);
	if (mark > u->watermark)
		u->watermark = mark;
	pthread_cond_broadcast(&u->done);
}

/* Start a stalled job again; an unread one reads its block first, with
 * u->lock dropped: only this thread changes the list, and no send of the
 * job is in flight. u->lock held. */
static void job_retry(struct cl_uploader *u, struct job *j)
{
	assert(assert_job_state(j, JS(UNREAD) | JS(STALLED)));
	if (j->unread) {
		pthread_mutex_unlock(&u->lock);
		int ret = job_read(u, j);
		bool deleted = ret == -ENOENT && job_deleted(u, j);
		pthread_mutex_lock(&u->lock);
		if (ret < 0 && !deleted) {
			job_unread(u, j, ret);
			return;
		}
		j->unread = false;
		j->stalled = false;
		if (deleted) {
			j->done = true;
			assert(assert_job_state(j, JS(UPLOADED)));
			return;
		}
	}
	job_start(u, j);
}

static void *uploader_main(void *arg)
{
	struct cl_uploader *u = arg;

	pthread_mutex_lock(&u->lock);
	while (!u->stop) {
		struct completion *c = u->comps;

		u->comps = NULL;
		while (c) {
			struct completion *nx = c->next;
			handle_completion(u, c);
			c = nx;
		}
		for (struct job *j = u->head; j; j = j->next)
			if (j->stalled && blk_deadline_passed(&j->retry_at))
				job_retry(u, j);
		read_log(u);
		retire(u);
		if (u->comps)
			continue;
		if (!u->head)
			u->watermark = u->read_seq;
		struct timespec ts;
		blk_deadline(&ts, IDLE_MS);
		pthread_cond_timedwait(&u->wake, &u->lock, &ts);
	}
	pthread_mutex_unlock(&u->lock);
	return NULL;
}

void cl_uploader_kick(struct cl_uploader *u)
{
	pthread_mutex_lock(&u->lock);
	pthread_cond_signal(&u->wake);
	pthread_mutex_unlock(&u->lock);
}

uint64_t cl_uploader_backlog(struct cl_uploader *u)
{
	uint64_t head = blk_store_newlog_head(u->cfg.lay.store), w;

	pthread_mutex_lock(&u->lock);
	w = u->watermark;
	pthread_mutex_unlock(&u->lock);
	return head > w ? head - w : 0;
}

void cl_uploader_throttle(struct cl_uploader *u)
{
	uint64_t max =
	    u->cfg.backlog_max ? u->cfg.backlog_max : DEFAULT_BACKLOG;
	struct timespec ts;

	if (cl_uploader_backlog(u) <= max)
		return;
	blk_deadline(&ts, THROTTLE_MAX_MS);
	pthread_mutex_lock(&u->lock);
	pthread_cond_signal(&u->wake);
	while (!u->stop &&
	       blk_store_newlog_head(u->cfg.lay.store) - u->watermark > max &&
	       pthread_cond_timedwait(&u->done, &u->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&u->lock);
}

/* Wait until the watermark reaches @target or the deadline passes: 0 or
 * -EIO. */
static int wait_uploaded(struct cl_uploader *u, uint64_t target,
			 const struct timespec *deadline)
{
	int ret = 0;

	pthread_mutex_lock(&u->lock);
	pthread_cond_signal(&u->wake);
	while (u->watermark < target && !u->stop) {
		if (pthread_cond_timedwait(&u->done, &u->lock, deadline) ==
		    ETIMEDOUT) {
			ret = u->watermark < target ? -EIO : 0;
			break;
		}
	}
	if (u->watermark < target)
		ret = -EIO;
	pthread_mutex_unlock(&u->lock);
	return ret;
}

static unsigned sync_timeout(const struct cl_uploader *u)
{
	return u->cfg.sync_timeout_ms ? u->cfg.sync_timeout_ms
				      : DEFAULT_SYNC_TIMEOUT_MS;
}

/* The nodes down now, as " node2 node3" (empty when none). */
static void nodes_down(struct cl_uploader *u, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = 0;
	for (unsigned i = 0; i < u->cfg.lay.n && len + 1 < size; i++) {
		if (u->cfg.ops.up(u->cfg.ops.arg, i))
			continue;
		int n =
		    snprintf(buf + len, size - len, " %s", u->cfg.lay.names[i]);
		if (n < 0)
			break;
		len += (size_t)n;
	}
}

/* The unmount's deadline (cl_uploader_closing): whether it passed, and
 * with @push, moved one sync timeout from now first. */
static bool close_deadline_passed(struct cl_uploader *u, bool push)
{
	bool passed;

	pthread_mutex_lock(&u->lock);
	if (push)
		blk_deadline(&u->close_deadline, sync_timeout(u));
	passed = blk_deadline_passed(&u->close_deadline);
	pthread_mutex_unlock(&u->lock);
	return passed;
}

/* The drain failed: say so, once, with what is left and the nodes down. */
static void drain_report(struct cl_uploader *u)
{
	char down[1024];
	bool said;

	pthread_mutex_lock(&u->lock);
	said = u->close_reported;
	u->close_reported = true;
	pthread_mutex_unlock(&u->lock);
	if (said)
		return;
	nodes_down(u, down, sizeof(down));
	blk_log_err("unmount: %llu blocks not uploaded: none went out for %u s "
		    "(sync_timeout)%s%s; they stay queued for the next mount",
		    (unsigned long long)cl_uploader_backlog(u),
		    sync_timeout(u) / 1000, down[0] ? "; nodes down:" : "",
		    down);
}

/* Unmount: upload everything committed before @target, telling the
 * progress to cfg.progress (or the log), until the close deadline, which
 * moves one sync timeout past every moment blocks go out. 0 once the
 * queue is empty; -EIO (said once, with what is left and which nodes are
 * down) when the deadline passes. */
static int drain(struct cl_uploader *u, uint64_t target)
{
	cl_progress_fn progress = u->cfg.progress;
	bool shown = false, moved = false;
	uint64_t total = 0;
	int ret = 0;

	for (;;) {
		uint64_t before = cl_uploader_backlog(u);
		struct timespec step;

		if (before == 0)
			break;
		if (close_deadline_passed(u, moved)) {
			ret = -EIO;
			break;
		}
		if (before > total)
			total = before;
		if (progress && progress(u->cfg.progress_arg, total - before,
					 total, "uploading"))
			shown = true;
		else
			blk_log_info("unmount: %llu blocks left to upload",
				     (unsigned long long)before);
		blk_deadline(&step, 1000);
		wait_uploaded(u, target, &step);
		moved = cl_uploader_backlog(u) < before;
	}
	if (moved)
		close_deadline_passed(u, true);
	if (progress && shown) {
		uint64_t left = cl_uploader_backlog(u);

		progress(u->cfg.progress_arg, left < total ? total - left : 0,
			 total, NULL);
	}
	if (ret)
		drain_report(u);
	return ret;
}

void cl_uploader_closing(struct cl_uploader *u)
{
	pthread_mutex_lock(&u->lock);
	if (!u->closing) {
		u->closing = true;
		blk_deadline(&u->close_deadline, sync_timeout(u));
	}
	pthread_mutex_unlock(&u->lock);
}

/* First half of the barrier: everything committed before now is done,
 * within the barrier's deadline, which *@deadline receives. 0 or -EIO. */
static int barrier_upload(struct cl_uploader *u, struct timespec *deadline)
{
	uint64_t target = blk_store_newlog_head(u->cfg.lay.store);
	unsigned tmo = sync_timeout(u);
	bool closing;

	pthread_mutex_lock(&u->lock);
	closing = u->closing;
	pthread_mutex_unlock(&u->lock);
	if (closing) {
		/* Unmounting: the drain waits (and reports), and the SYNCs
		 * share its deadline. */
		if (drain(u, target) < 0)
			return -EIO;
		pthread_mutex_lock(&u->lock);
		*deadline = u->close_deadline;
		pthread_mutex_unlock(&u->lock);
		return 0;
	}
	blk_deadline(deadline, tmo);
	if (wait_uploaded(u, target, deadline) < 0) {
		blk_log_err(
		    "sync: %llu blocks not on their %u nodes after %u s",
		    (unsigned long long)cl_uploader_backlog(u),
		    u->cfg.lay.k + u->cfg.lay.m, tmo / 1000);
		return -EIO;
	}
	return 0;
}

/* Wait SYNC_RETRY_MS, or less if the uploader stops: false if it did. */
static bool sync_pause(struct cl_uploader *u)
{
	struct timespec pause;
	bool stop;

	blk_deadline(&pause, SYNC_RETRY_MS);
	pthread_mutex_lock(&u->lock);
	while (!u->stop &&
	       pthread_cond_timedwait(&u->done, &u->lock, &pause) == 0)
		;
	stop = u->stop;
	pthread_mutex_unlock(&u->lock);
	return !stop;
}

/* Second half: SYNC every node in @pending until each has answered 0 or
 * @deadline passes. A node that is down or does not answer (it may be
 * restarting: its WAL holds what it acknowledged) is asked again every
 * SYNC_RETRY_MS. Clears @pending[i] for the nodes synced; @last_err[i]
 * receives a node's last error (0: none came). 0 or -ENOMEM. */
static int sync_nodes(struct cl_uploader *u, bool *pending, int *last_err,
		      const struct timespec *deadline)
{
	const unsigned n = u->cfg.lay.n;
	int ret = 0;

	for (;;) {
		uint64_t ms = blk_deadline_left_ms(deadline);
		int status[CL_MAX_NODES];
		unsigned left = 0;

		for (unsigned i = 0; i < n; i++) {
			status[i] = CL_SYNC_NO_ANSWER;
			left += pending[i];
		}
		if (!left)
			break;
		ret = u->cfg.ops.sync(u->cfg.ops.arg, pending, n,
				      ms < INT_MAX ? (unsigned)ms : INT_MAX,
				      status);
		left = 0;
		for (unsigned i = 0; i < n; i++) {
			if (status[i] == 0)
				pending[i] = false;
			else if (status[i] < 0)
				last_err[i] = status[i];
			left += pending[i];
		}
		if (!left || ret < 0 || blk_deadline_passed(deadline) ||
		    !sync_pause(u))
			break;
	}
	return ret;
}

int cl_uploader_barrier(struct cl_uploader *u)
{
	bool pending[CL_MAX_NODES];
	int last_err[CL_MAX_NODES] = {0};
	struct timespec deadline;
	unsigned left = 0;
	int ret;

	if (barrier_upload(u, &deadline) < 0)
		return -EIO;
	pthread_mutex_lock(&u->lock);
	memcpy(pending, u->dirty, sizeof(pending));
	memset(u->dirty, 0, sizeof(u->dirty));
	pthread_mutex_unlock(&u->lock);

	ret = sync_nodes(u, pending, last_err, &deadline);
	for (unsigned i = 0; i < u->cfg.lay.n; i++) {
		if (!pending[i])
			continue;
		left++;
		blk_log_err("sync: node %s: %s", u->cfg.lay.names[i],
			    strerror(last_err[i] ? -last_err[i] : ETIMEDOUT));
	}
	if (left || ret < 0) {
		/* sync them again next time */
		pthread_mutex_lock(&u->lock);
		for (unsigned i = 0; i < u->cfg.lay.n; i++)
			u->dirty[i] |= pending[i];
		pthread_mutex_unlock(&u->lock);
		return -EIO;
	}
	return 0;
}

/* The first record left in the log: records below it are done. */
static uint64_t log_first(struct blk_store *s)
{
	struct blk_iter *it = blk_iter_new(
	    blk_store_db(s), blk_store_newlog_cf(s), NULL, 0, NULL, 0);
	uint64_t seq = blk_store_newlog_head(s);

	if (it && blk_iter_valid(it)) {
		size_t klen;
		const uint8_t *key = blk_iter_key(it, &klen);

		if (klen == 8)
			seq = blk_get_be64(key);
	}
	blk_iter_free(it);
	return seq;
}

int cl_uploader_new(const struct cl_uploader_config *cfg,
		    struct cl_uploader **out)
{
	struct cl_uploader *u = calloc(1, sizeof(*u));
	int ret;

	*out = NULL;
	if (!u)
		return -ENOMEM;
	u->cfg = *cfg;
	pthread_mutex_init(&u->lock, NULL);
	blk_cond_init(&u->wake);
	blk_cond_init(&u->done);
	u->read_seq = log_first(cfg->lay.store);
	u->watermark = u->read_seq;
	ret = -pthread_create(&u->thread, NULL, uploader_main, u);
	if (ret < 0) {
		cl_uploader_free(u);
		return ret;
	}
	u->started = true;
	*out = u;
	return 0;
}

void cl_uploader_stop(struct cl_uploader *u)
{
	if (!u || !u->started)
		return;
	pthread_mutex_lock(&u->lock);
	u->stop = true;
	pthread_cond_broadcast(&u->wake);
	pthread_cond_broadcast(&u->done);
	pthread_mutex_unlock(&u->lock);
	pthread_join(u->thread, NULL);
	u->started = false;
}

void cl_uploader_free(struct cl_uploader *u)
{
	if (!u)
		return;
	cl_uploader_stop(u);
	while (u->head) {
		struct job *j = u->head;
		u->head = j->next;
		job_free(j);
	}
	while (u->comps) {
		struct completion *c = u->comps;
		u->comps = c->next;
		free(c);
	}
	pthread_mutex_destroy(&u->lock);
	pthread_cond_destroy(&u->wake);
	pthread_cond_destroy(&u->done);
	free(u);
}

void cl_uploader_stats(struct cl_uploader *u, struct cl_upload_stats *st)
{
	pthread_mutex_lock(&u->lock);
	*st = u->st;
	pthread_mutex_unlock(&u->lock);
}
