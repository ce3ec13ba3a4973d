/* The write path: a file's bytes from the write buffer into blocks and
 * extents (run planning, chunking, hashing, the commit of a flush), and
 * truncation of the extent map.
 *
 * States of a byte range of a file, and what moves it on:
 *
 *   written     in ip->dirty                     bfs_write (wbuf_write)
 *      |  flush_take (wbuf_take_prefix): a flusher (flush.c), fsync,
 *      v  throttle, release or eviction runs flush_pass
 *   flushing    in ip->flushing, ip->editing set
 *      |  flush_build: plan_runs, fill_run (old blocks read back),
 *      v  chunk_run (FastCDC cuts), put_chunks (bfs_hash_chunks)
 *   chunked     new extents and block references in a transaction
 *      |  flush_commit (blk_txn_commit), under ext_lock + ip->lock; a tail
 *      v  without a content-defined cut goes back to "written"
 *   committed   in the extent map, in the store's WAL (unsynced)
 *      |  blk_store_sync: bfs_fsync_meta, bfs_sync_all, the maintenance
 *      v  thread every SYNC_PERIODS (maint.c)
 *   durable     on the local disk
 *
 * The states of a block once a flush stored it are drawn once, where the
 * code that moves them lives: net/cluster/uploader.c.
 *
 * Invariants:
 *  1. A byte of a file lives in exactly one of: ip->dirty (newest),
 *     ip->flushing, the extent map (oldest), or nowhere (a hole, zeros).
 *     Reads overlay them in that order, under ext_lock held shared.
 *  2. Only the holder of ip->editing (one flush or truncate at a time;
 *     a truncate or a fallocate punch, falloc.c, holds ext_lock
 *     exclusively and ip->lock while no flush edits) changes the extent
 *     map; it commits extents, block references and the inode record in
 *     one transaction, then empties ip->flushing, both under ext_lock
 *     held exclusively.
 *  3. A committed extent never points at a missing block: the store's
 *     transactions keep references and blocks together, and after a crash
 *     bfs_drop_lost_extents (recover.c) deletes extents whose unsynced
 *     block bytes were lost before anything reads the map.
 *  4. ip->rec.stored is the sum of the lengths of the file's extents.
 *  5. A failed flush loses nothing: everything it took is back in
 *     ip->dirty, under newer writes, and ip->flush_err is set.
 *  6. A block stored with cfg.newlog has a newlog record from the commit
 *     that first stored it until all its fragments are acknowledged; the
 *     uploader's watermark is below every record not yet retired.
 *  7. Only a block that is uploaded is evicted: the store refuses one that
 *     a newlog record names, under its lock (blocks/store/store.h invariant 4),
 *     and the uploader never takes an evicted block for a deleted one
 *     (uploader.c invariant 5). An evicted block keeps its references: it
 *     can always be fetched.
 *  8. An fsync'ed byte is committed and durable, and with a cluster its
 *     blocks are synced on their placement.
 */
#include "fs/bfs-int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/log.h"
#include "fs/extent.h"

struct run {
	uint64_t ea, eb;   /* file range re-chunked */
	size_t ext0, next; /* its old extents in the extent list */
	uint8_t *buf;	   /* new content of [ea, eb) */
	bool borrowed;	   /* buf is a flushing segment's, not ours */
	/* Boundaries: the run starts where an old block started (or at 0),
	 * and ends where an old block ends or the next one begins. Only
	 * then are its first and last cuts where one-shot chunking of the
	 * whole file would put them. */
	bool start_anchored, end_anchored;
	uint64_t keep; /* [keep, eb) goes back to the buffer */
};

/* Debug-build checks of the byte-range states above, called at their
 * transitions (compiled out with NDEBUG, as SQLite's assert_pager_state):
 *   idle      !ip->editing: ip->flushing is empty, written bytes are in
 *             ip->dirty or the extent map
 *   flushing  ip->editing: ip->flushing holds what flush_take took, until
 *             flush_commit empties it
 * and both buffers are well formed (sorted, disjoint segments whose
 * lengths add up to their byte count). ip->lock held, or ip->editing
 * owned (the flushing buffer is then the holder's). */
#ifndef NDEBUG
static void assert_wbuf(const struct wbuf *w)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < w->n; i++) {
		assert(i == 0 || w->segs[i - 1].off + w->segs[i - 1].len <=
				     w->segs[i].off);
		sum += w->segs[i].len;
	}
	assert(sum == w->bytes);
}

static void assert_idle(const struct bfs_inode *ip)
{
	assert(!ip->editing);
	assert(ip->flushing.n == 0 && ip->flushing.bytes == 0);
}

static void assert_flushing(const struct bfs_inode *ip)
{
	assert(ip->editing);
	assert(ip->flushing.n > 0);
	assert_wbuf(&ip->flushing);
	assert_wbuf(&ip->dirty);
}
#else
#define assert_wbuf(w) ((void)0)
#define assert_idle(ip) ((void)0)
#define assert_flushing(ip) ((void)0)
#endif

bool bfs_all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t zero[4096];
	while (n >= sizeof(zero)) {
		if (memcmp(p, zero, sizeof(zero)))
			return false;
		p += sizeof(zero);
		n -= sizeof(zero);
	}
	return memcmp(p, zero, n) == 0;
}

/* The old extents segment [a, b) touches, in @tmp: the one it starts in
 * or right after (only if that one's end was forced), those inside, the
 * one it ends in. *prev_at_a: a block ends at @a (or @a is 0); *next_at_b:
 * a block starts at @b. */
static int seg_extents(struct bfs *fs, struct bfs_inode *ip, bool no_extents,
		       uint64_t a, uint64_t b, struct bfs_extent_list *tmp,
		       bool *prev_at_a, bool *next_at_b)
{
	int ret = 0;

	tmp->n = 0;
	if (!no_extents)
		ret = bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino,
				     a ? a - 1 : 0, b + 1, fs->max_extent, tmp);
	if (ret)
		return ret;
	*next_at_b = false;
	*prev_at_a = a == 0;
	while (tmp->n && tmp->v[tmp->n - 1].off >= b) {
		*next_at_b |= tmp->v[tmp->n - 1].off == b;
		tmp->n--;
	}
	/* A block ending right where the data starts needs re-chunking
	 * only if its end was forced. */
	if (tmp->n && tmp->v[0].off + tmp->v[0].len == a) {
		*prev_at_a = true;
		if (!tmp->v[0].forced)
			memmove(tmp->v, tmp->v + 1,
				--tmp->n * sizeof(tmp->v[0]));
	}
	return 0;
}

/* Add segment [a, b), widened to its old extents @tmp, to the runs: a new
 * run, or merged into the last one when it overlaps or touches it. The
 * extents not listed yet go to @exts. */
static int add_to_runs(struct run *runs, size_t *nruns,
		       struct bfs_extent_list *exts,
		       const struct bfs_extent_list *tmp, uint64_t a,
		       uint64_t b, bool prev_at_a, bool next_at_b)
{
	uint64_t ea = a, eb = b;

	if (tmp->n) {
		if (tmp->v[0].off < ea)
			ea = tmp->v[0].off;
		uint64_t end = tmp->v[tmp->n - 1].off + tmp->v[tmp->n - 1].len;
		if (end > eb)
			eb = end;
	}
	struct run *r = *nruns ? &runs[*nruns - 1] : NULL;
	bool end_anchored = eb > b || next_at_b;
	if (r && ea <= r->eb) {
		if (eb >= r->eb) {
			r->eb = eb;
			r->end_anchored = end_anchored;
		}
	} else {
		r = &runs[(*nruns)++];
		r->ea = ea;
		r->eb = eb;
		r->ext0 = exts->n;
		r->next = 0;
		r->end_anchored = end_anchored;
		r->start_anchored =
		    prev_at_a || (tmp->n && tmp->v[0].off == ea);
	}
	for (size_t k = 0; k < tmp->n; k++) {
		if (r->next && tmp->v[k].off <= exts->v[exts->n - 1].off)
			continue;
		int ret = bfs_extent_list_push(exts, &tmp->v[k]);
		if (ret)
			return ret;
		r->next++;
	}
	return 0;
}

/* Group the flushing segments into runs: each segment widened to the old
 * extents it touches (the one it starts in or right after, the one it ends
 * in), overlapping or touching runs merged. */
static int plan_runs(struct bfs *fs, struct bfs_inode *ip,
		     struct bfs_extent_list *exts, struct run **runs_out,
		     size_t *nruns_out)
{
	const struct wbuf *w = &ip->flushing;
	struct run *runs = calloc(w->n ? w->n : 1, sizeof(*runs));
	size_t nruns = 0;
	struct bfs_extent_list tmp = {0};
	int ret = 0;

	if (!runs)
		return -ENOMEM;
	/* A file without extents (new files, the common case) needs no
	 * look-ups; ip->rec.stored counts the bytes its extents hold. */
	pthread_mutex_lock(&ip->lock);
	bool no_extents = ip->rec.stored == 0;
	pthread_mutex_unlock(&ip->lock);
	for (size_t i = 0; !ret && i < w->n; i++) {
		uint64_t a = w->segs[i].off, b = a + w->segs[i].len;
		bool prev_at_a, next_at_b;

		ret = seg_extents(fs, ip, no_extents, a, b, &tmp, &prev_at_a,
				  &next_at_b);
		if (!ret)
			ret = add_to_runs(runs, &nruns, exts, &tmp, a, b,
					  prev_at_a, next_at_b);
	}
	bfs_extent_list_free(&tmp);
	if (ret) {
		free(runs);
		return ret;
	}
	*runs_out = runs;
	*nruns_out = nruns;
	return 0;
}

static int fill_run(struct bfs *fs, struct bfs_inode *ip, struct run *r,
		    const struct bfs_extent_list *exts)
{
	uint64_t len = r->eb - r->ea;

	/* New data that replaces nothing (appends): chunk it where it lies. */
	if (r->next == 0) {
		for (size_t i = 0; i < ip->flushing.n; i++) {
			struct wb_seg *s = &ip->flushing.segs[i];
			if (s->off == r->ea && s->len == len) {
				r->buf = s->data;
				r->borrowed = true;
				return 0;
			}
		}
	}
	r->buf = malloc(len ? len : 1);
	if (!r->buf)
		return -ENOMEM;
	/* Whatever neither an old extent nor the buffer covers is a hole. */
	uint64_t covered = 0;
	for (size_t k = r->ext0; k < r->ext0 + r->next; k++)
		covered += exts->v[k].len;
	if (covered + ip->flushing.bytes < len)
		memset(r->buf, 0, len);
	for (size_t k = r->ext0; k < r->ext0 + r->next; k++) {
		const struct bfs_extent *e = &exts->v[k];
		int64_t got = bfs_block_read(fs, &e->cid, 0,
					     r->buf + (e->off - r->ea), e->len);
		if (got < 0) {
			bfs_damage_unreadable(fs, ip->ino, e->off, &e->cid,
					      (int)got);
			return (int)got;
		}
		if ((uint64_t)got != e->len)
			return -EUCLEAN;
	}
	wbuf_overlay(&ip->flushing, r->ea, r->buf, len);
	return 0;
}

static int chunk_run(struct bfs *fs, const struct run *r, struct chunk **out,
		     size_t *nout)
{
	struct cdc_chunker c;
	size_t cap = 16, n = 0;
	struct chunk *v = malloc(cap * sizeof(*v));
	uint64_t pos = 0, len = r->eb - r->ea;

	if (!v)
		return -ENOMEM;
	int ret = cdc_chunker_init(&c, fs->cfg.chunker, fs->cfg.chunk_min,
				   fs->cfg.chunk_avg, fs->cfg.chunk_max);
	if (ret) {
		free(v);
		return ret;
	}
	while (pos < len) {
		size_t cut = cdc_chunker_scan(&c, r->buf + pos, len - pos);
		bool natural = cut != CDC_NEED_MORE;
		if (!natural)
			cut = len - pos;
		if (n == cap) {
			cap *= 2;
			struct chunk *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (struct chunk){r->ea + pos, (uint32_t)cut, natural};
		pos += cut;
	}
	*out = v;
	*nout = n;
	return 0;
}

/* For a run not followed by stable data: the end of what it commits, its
 * last content-defined cut past every old extent it replaces (r->ea:
 * nothing yet). The rest, [r->keep, r->eb), goes back to the buffer. */
static uint64_t run_cut_end(struct run *r, const struct bfs_extent_list *exts,
			    const struct chunk *ch, size_t nch)
{
	uint64_t old_end = r->ea, end = r->ea;

	for (size_t k = r->ext0; k < r->ext0 + r->next; k++)
		old_end = exts->v[k].off + exts->v[k].len;
	for (size_t k = 0; k < nch; k++) {
		uint64_t ce = ch[k].off + ch[k].len;
		if (ch[k].natural && ce >= old_end)
			end = ce;
	}
	if (end < r->eb)
		r->keep = end;
	return end;
}

/* Delete the old extents of @r in @t and drop their block references. */
static int drop_old_extents(struct blk_txn *t, struct bfs_inode *ip,
			    const struct run *r,
			    const struct bfs_extent_list *exts,
			    int64_t *stored_delta)
{
	for (size_t k = r->ext0; k < r->ext0 + r->next; k++) {
		uint8_t key[16];
		blk_txn_delete(t, BFS_CF_EXTENTS, key,
			       bfs_extent_key(key, ip->ino, exts->v[k].off));
		int ret = blk_txn_unref(t, &exts->v[k].cid);
		if (ret)
			return ret;
		*stored_delta -= exts->v[k].len;
	}
	return 0;
}

/* Hash the first @n chunks of @r and put them in @t as extents and block
 * references; all-zero chunks stay holes. */
static int put_chunks(struct bfs *fs, struct bfs_inode *ip, struct blk_txn *t,
		      const struct run *r, const struct chunk *ch, size_t n,
		      int64_t *stored_delta)
{
	struct blk_cid *cids = malloc((n + 1) * sizeof(*cids));
	bool *zero = malloc(n + 1);
	int ret = 0;

	if (!cids || !zero) {
		free(cids);
		free(zero);
		return -ENOMEM;
	}
	struct hash_job job = {
	    .base = r->buf,
	    .base_off = r->ea,
	    .ch = ch,
	    .n = n,
	    .cids = cids,
	    .zero = zero,
	    .hash = fs->cfg.hash,
	};
	bfs_hash_chunks(&fs->hasher, &job);
	for (size_t k = 0; !ret && k < n; k++) {
		const uint8_t *p = r->buf + (ch[k].off - r->ea);
		uint8_t key[16], val[BFS_EXTENT_VAL_MAX];

		if (zero[k])
			continue; /* stays a hole */
		__atomic_fetch_add(&fs->n_hashed, ch[k].len, __ATOMIC_RELAXED);
		blk_txn_put(t, BFS_CF_EXTENTS, key,
			    bfs_extent_key(key, ip->ino, ch[k].off), val,
			    bfs_extent_encode(val, ch[k].len, !ch[k].natural,
					      &cids[k]));
		ret = blk_txn_ref(t, &cids[k], p, ch[k].len);
		*stored_delta += ch[k].len;
	}
	free(cids);
	free(zero);
	return ret;
}

/* Turn run @r into new extents in @t; the bytes committed or -errno. */
static int64_t build_run(struct bfs *fs, struct bfs_inode *ip,
			 struct blk_txn *t, struct run *r,
			 const struct bfs_extent_list *exts, bool final,
			 int64_t *stored_delta)
{
	struct chunk *ch;
	size_t nch, ncommit = 0;
	uint64_t end = r->eb;

	r->keep = UINT64_MAX;
	/* Data that follows a gap (writeback out of order, a hole being
	 * filled) waits for what comes before it, unless this flush must
	 * commit everything. */
	if (!final && !r->start_anchored) {
		r->keep = r->ea;
		return 0;
	}
	int ret = chunk_run(fs, r, &ch, &nch);
	if (ret)
		return ret;
	/* A run not followed by stable data (the end of a file being
	 * appended to, or a gap) commits up to its last content-defined
	 * cut; the rest waits for what follows. */
	if (!final && !r->end_anchored) {
		end = run_cut_end(r, exts, ch, nch);
		if (end == r->ea) {
			free(ch);
			return 0; /* nothing to commit yet */
		}
	}
	ret = drop_old_extents(t, ip, r, exts, stored_delta);
	while (ncommit < nch && ch[ncommit].off < end)
		ncommit++;
	if (!ret)
		ret = put_chunks(fs, ip, t, r, ch, ncommit, stored_delta);
	free(ch);
	return ret ? ret : (int64_t)(end - r->ea);
}

/* Turn the runs into new extents in @t. A run whose end is not followed
 * by stable data, in a flush that is not final, stops at its last
 * content-defined cut past every old extent it replaces and hands the
 * rest back through r->keep: more data is likely to follow. Returns the
 * bytes committed or -errno. */
static int64_t build_txn(struct bfs *fs, struct bfs_inode *ip,
			 struct blk_txn *t, struct run *runs, size_t nruns,
			 const struct bfs_extent_list *exts, bool final,
			 int64_t *stored_delta)
{
	int64_t committed = 0;

	*stored_delta = 0;
	for (size_t i = 0; i < nruns; i++) {
		int64_t n =
		    build_run(fs, ip, t, &runs[i], exts, final, stored_delta);
		if (n < 0)
			return n;
		committed += n;
	}
	return committed;
}

/* Start a flush pass (the first step of flush_pass): wait for the
 * extents, move at least @limit dirty bytes to ip->flushing and own the
 * extents (ip->editing). *took false: nothing to flush, and the return
 * value is the sticky error, now cleared. */
static int flush_take(struct bfs *fs, struct bfs_inode *ip, uint64_t limit,
		      bool *final, bool *took)
{
	int ret;

	*took = false;
	pthread_mutex_lock(&ip->lock);
	while (ip->editing)
		pthread_cond_wait(&ip->cond, &ip->lock);
	assert_idle(ip);
	if (!ip->dirty.n || fs->cfg.read_only) {
		ret = ip->flush_err;
		ip->flush_err = 0;
		pthread_mutex_unlock(&ip->lock);
		return ret;
	}
	ret = wbuf_take_prefix(&ip->dirty, limit, &ip->flushing);
	if (!ret) {
		*took = true;
		ip->editing = true;
		/* Data still buffered behind what was taken: not the last
		 * word. */
		if (ip->dirty.n)
			*final = false;
		assert_flushing(ip);
	}
	pthread_mutex_unlock(&ip->lock);
	return ret;
}

/* Plan, read and chunk what flush_take took, into a new transaction in
 * *t (no lock held: ip->editing keeps other flushes and truncates out).
 * The bytes it commits, or -errno. */
static int64_t flush_build(struct bfs *fs, struct bfs_inode *ip, bool final,
			   struct bfs_extent_list *exts, struct run **runs,
			   size_t *nruns, struct blk_txn **t,
			   int64_t *stored_delta)
{
	int ret = plan_runs(fs, ip, exts, runs, nruns);

	for (size_t i = 0; !ret && i < *nruns; i++)
		ret = fill_run(fs, ip, &(*runs)[i], exts);
	if (ret)
		return ret;
	*t = blk_txn_new(fs->store);
	if (!*t)
		return -ENOMEM;
	return build_txn(fs, ip, *t, *runs, *nruns, exts, final, stored_delta);
}

/* Commit @t (when @ret is 0) and empty ip->flushing: what was not
 * committed goes back under newer writes. ext_lock and ip->lock held.
 * Returns @ret or the commit's error; on error everything taken is back
 * in ip->dirty and ip->flush_err is set. */
static int flush_commit(struct bfs *fs, struct bfs_inode *ip, struct blk_txn *t,
			const struct run *runs, size_t nruns,
			int64_t stored_delta, int ret)
{
	if (!ret) {
		ip->rec.stored =
		    (uint64_t)((int64_t)ip->rec.stored + stored_delta);
		bfs_txn_put_inode(fs, t, ip);
		ret = blk_txn_commit(t, false);
		if (!ret && fs->peers)
			cl_engine_kick(fs->peers);
	}
	for (size_t i = 0; !ret && i < nruns; i++) {
		const struct run *r = &runs[i];
		if (r->keep == UINT64_MAX)
			continue;
		ret = wbuf_write_under(&ip->dirty, r->keep,
				       r->buf + (r->keep - r->ea),
				       r->eb - r->keep);
	}
	if (ret) {
		uint64_t taken = ip->flushing.bytes;
		bool lost = false;
		for (size_t i = 0; i < ip->flushing.n; i++) {
			struct wb_seg *s = &ip->flushing.segs[i];
			if (!wbuf_write_under(&ip->dirty, s->off, s->data,
					      s->len))
				continue;
			lost = true;
			blk_log_err("inode %llu: out of memory putting "
				    "back unflushed data",
				    (unsigned long long)ip->ino);
		}
		ip->flush_err = ret;
		/* invariant 5: all of it is back, under newer writes, unless
		 * memory ran out (logged) */
		assert(lost || ip->dirty.bytes >= taken);
		(void)taken;
		(void)lost;
	}
	wbuf_clear(&ip->flushing);
	assert_wbuf(&ip->dirty);
	return ret;
}

/* One flush pass: take at least @limit dirty bytes (whole segments) of
 * @ip and turn them into blocks and extents. With @final, and when nothing
 * is left behind them, everything taken is committed; otherwise ends that
 * are not followed by stable data keep their tail in the buffer.
 * *committed gets the bytes committed, *more whether dirty bytes remain.
 * Returns 0 or -errno (the data then stays buffered, flush_err set). */
static int flush_pass(struct bfs *fs, struct bfs_inode *ip, bool final,
		      uint64_t limit, uint64_t *committed, bool *more)
{
	struct bfs_extent_list exts = {0};
	struct run *runs = NULL;
	size_t nruns = 0;
	int64_t stored_delta = 0, done;
	struct blk_txn *t = NULL;
	bool took;
	int ret;

	*committed = 0;
	*more = false;
	ret = flush_take(fs, ip, limit, &final, &took);
	if (!took)
		return ret;
	done =
	    flush_build(fs, ip, final, &exts, &runs, &nruns, &t, &stored_delta);
	ret = done < 0 ? (int)done : 0;

	pthread_rwlock_wrlock(&ip->ext_lock);
	ip->ext_gen++;
	pthread_mutex_lock(&ip->lock);
	uint64_t before = ip->dirty.bytes + ip->flushing.bytes;
	ret = flush_commit(fs, ip, t, runs, nruns, stored_delta, ret);
	uint64_t after = ip->dirty.bytes;
	/* The count changes before anyone can see the inode idle (fsync
	 * returning, a checkpoint adding up the buffers). */
	bfs_dirty_account(fs, (int64_t)after - (int64_t)before);
	/* Left-over bytes wait for a flush_at more before the next try. */
	ip->flush_floor = final || ret ? 0 : after;
	ip->editing = false;
	assert_idle(ip);
	pthread_cond_broadcast(&ip->cond);
	pthread_mutex_unlock(&ip->lock);
	pthread_rwlock_unlock(&ip->ext_lock);

	blk_txn_free(t);
	for (size_t i = 0; i < nruns; i++)
		if (!runs[i].borrowed)
			free(runs[i].buf);
	free(runs);
	bfs_extent_list_free(&exts);
	if (!ret)
		*committed = (uint64_t)done;
	*more = after > 0;
	__atomic_fetch_add(&fs->n_flushes, 1, __ATOMIC_RELAXED);
	if (!ret)
		__atomic_fetch_add(&fs->n_committed, (uint64_t)done,
				   __ATOMIC_RELAXED);
	return ret;
}

/* Flush @ip: one pass of about flush_at bytes, or with @final passes until
 * nothing is buffered (each pass that commits nothing takes twice as much
 * the next time, so this ends). *committed (optional) gets the bytes
 * committed. */
int bfs_flush_inode(struct bfs *fs, struct bfs_inode *ip, bool final,
		    uint64_t *committed)
{
	uint64_t limit = fs->cfg.flush_at, total = 0, done;
	bool more;
	int ret;

	/* A writer that keeps appending must not keep fsync here forever:
	 * after as many passes as the buffer held at the start (and some),
	 * one pass takes everything. */
	pthread_mutex_lock(&ip->lock);
	uint64_t passes = ip->dirty.bytes / fs->cfg.flush_at + 8;
	pthread_mutex_unlock(&ip->lock);
	do {
		if (!--passes)
			limit = UINT64_MAX;
		ret = flush_pass(fs, ip, final, limit, &done, &more);
		total += done;
		if (!done && limit < (UINT64_MAX >> 1))
			limit *= 2;
	} while (final && !ret && more && passes);
	if (committed)
		*committed = total;
	return ret;
}

int64_t bfs_write(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
		  const void *buf, size_t len)
{
	if (fs->cfg.read_only)
		return -EROFS;
	if (off >= BFS_FILE_MAX || len > BFS_FILE_MAX - off)
		return -EFBIG;
	/* Bytes written where fallocate reserved room are admitted against
	 * that reservation, and take it (falloc.c). */
	pthread_mutex_lock(&ip->lock);
	uint64_t resv = ip->nresv ? bfs_resv_overlap(ip, off, off + len) : 0;
	pthread_mutex_unlock(&ip->lock);
	int err = bfs_space_admit(fs, len - resv);
	if (err)
		return err;

	pthread_mutex_lock(&ip->lock);
	uint64_t before = ip->dirty.bytes;
	int ret = wbuf_write(&ip->dirty, off, buf, len);
	if (ret) {
		pthread_mutex_unlock(&ip->lock);
		return ret;
	}
	if (ip->nresv)
		bfs_resv_drop(fs, ip, off, off + len);
	if (off + len > ip->rec.size)
		ip->rec.size = off + len;
	bfs_now(&ip->rec.mtime);
	ip->rec.ctime = ip->rec.mtime;
	bool queue = !ip->queued &&
		     ip->dirty.bytes >= ip->flush_floor + fs->cfg.flush_at;
	if (queue)
		ip->queued = true;
	bfs_dirty_account(fs, (int64_t)ip->dirty.bytes - (int64_t)before);
	pthread_mutex_unlock(&ip->lock);

	if (queue)
		bfs_enqueue(fs, ip);
	ret = bfs_throttle(fs, ip);
	if (!ret && fs->peers)
		cl_engine_throttle(fs->peers);
	return ret ? ret : (int64_t)len;
}

int bfs_fsync(struct bfs *fs, struct bfs_inode *ip, bool durable)
{
	int ret = bfs_flush_inode(fs, ip, true, NULL);
	if (!ret && durable)
		ret = bfs_fsync_meta(fs);
	return ret;
}

int bfs_close_flush(struct bfs *fs, struct bfs_inode *ip, bool writer)
{
	int ret = bfs_flush_inode(fs, ip, true, NULL);

	if (ret || !writer)
		return ret;
	pthread_mutex_lock(&ip->lock);
	bool settle = ip->da_close;
	ip->da_close = false;
	pthread_mutex_unlock(&ip->lock);
	if (settle && (ret = blk_store_settle(fs->store))) {
		pthread_mutex_lock(&ip->lock);
		ip->da_close = true;
		pthread_mutex_unlock(&ip->lock);
	}
	return ret;
}

int bfs_fsync_meta(struct bfs *fs)
{
	int ret = bfs_write_attrs(fs);
	/* The promise of fsync: on the placement at full redundancy, the
	 * metadata too. A commit does both: it syncs the store after its
	 * own blocks (so no sync of it here first), its barrier waits for
	 * the data's uploads with its blocks', then its head goes to the
	 * nodes, so that a machine that loses this one's disk finds what
	 * fsync acknowledged. (One node: its own disk is all there is, and
	 * the store's sync makes the metadata durable on it.) */
	bool commit = fs->commit_fn && fs->peers && !fs->cfg.read_only;

	if (!ret && !commit)
		ret = blk_store_sync(fs->store);
	if (ret || fs->cfg.read_only)
		return ret;
	if (commit) {
		ret = fs->commit_fn(fs->commit_arg, NULL);
		/* fenced, or not published: not durable */
		return ret && ret != -ENOSPC ? -EIO : ret;
	}
	if (fs->peers)
		ret = cl_engine_barrier(fs->peers);
	return ret;
}

void bfs_truncate_fetch(struct bfs *fs, struct bfs_inode *ip, uint64_t size,
			struct bfs_tail *tail)
{
	struct bfs_extent_list exts = {0};

	memset(tail, 0, sizeof(*tail));
	if (!fs->peers || bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino, size,
					 size + 1, fs->max_extent, &exts))
		return;
	for (size_t k = 0; k < exts.n; k++) {
		const struct bfs_extent *e = &exts.v[k];
		if (e->off >= size || e->off + e->len <= size)
			continue;
		if (!bfs_block_evicted(fs, &e->cid))
			break;
		tail->cid = e->cid;
		if (cl_engine_fetch(fs->peers, &e->cid, &tail->data,
				    &tail->len))
			tail->data = NULL;
		break;
	}
	bfs_extent_list_free(&exts);
}

/* The first @head bytes of @e's block into @p: from @tail when it is
 * that block, else from the store or the cluster. */
static int truncate_head(struct bfs *fs, const struct bfs_extent *e,
			 const struct bfs_tail *tail, uint8_t *p, uint32_t head)
{
	if (tail && tail->data && blk_cid_equal(&tail->cid, &e->cid) &&
	    tail->len >= head) {
		memcpy(p, tail->data, head);
		return 0;
	}
	int64_t got = bfs_block_read(fs, &e->cid, 0, p, head);
	if (got != head)
		return got < 0 ? (int)got : -EUCLEAN;
	return 0;
}

/* Cut the file's extent map at @size in @t: the extents past it go, the
 * one straddling it keeps its head as a new block (*keep, for the caller
 * to free after the commit). Under bfs_truncate's locks. */
static int truncate_extents(struct bfs *fs, struct bfs_inode *ip, uint64_t size,
			    const struct bfs_tail *tail, struct blk_txn *t,
			    int64_t *stored_delta, void **keep)
{
	struct bfs_extent_list exts = {0};
	int ret = bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino, size,
				 UINT64_MAX, fs->max_extent, &exts);
	for (size_t k = 0; !ret && k < exts.n; k++) {
		const struct bfs_extent *e = &exts.v[k];
		uint8_t key[16];

		blk_txn_delete(t, BFS_CF_EXTENTS, key,
			       bfs_extent_key(key, ip->ino, e->off));
		ret = blk_txn_unref(t, &e->cid);
		*stored_delta -= e->len;
		if (ret || e->off >= size)
			continue;
		/* The extent straddling the new end keeps its head. */
		uint32_t head = (uint32_t)(size - e->off);
		uint8_t *p = malloc(head);
		if (!p) {
			ret = -ENOMEM;
			break;
		}
		ret = truncate_head(fs, e, tail, p, head);
		if (ret) {
			free(p);
			break;
		}
		*keep = p;
		if (bfs_all_zero(p, head))
			continue;
		struct blk_cid cid;
		uint8_t val[BFS_EXTENT_VAL_MAX];
		blk_cid_compute_hash(&cid, fs->cfg.hash, BLK_CODEC_RAW, p,
				     head);
		blk_txn_put(t, BFS_CF_EXTENTS, key, 16, val,
			    bfs_extent_encode(val, head, true, &cid));
		ret = blk_txn_ref(t, &cid, p, head);
		*stored_delta += head;
	}
	bfs_extent_list_free(&exts);
	return ret;
}

int bfs_truncate(struct bfs *fs, struct bfs_inode *ip, uint64_t size,
		 const struct bfs_tail *tail, struct blk_txn *t, void **keep)
{
	int64_t stored_delta = 0;
	int ret = 0;

	assert_idle(ip);
	if (size > BFS_FILE_MAX)
		return -EFBIG;
	if (size < ip->rec.size) {
		ret = truncate_extents(fs, ip, size, tail, t, &stored_delta,
				       keep);
		if (ret)
			return ret;
	}
	/* A truncate that does not grow the file gives back the room
	 * reserved past its end, as ext4 frees blocks preallocated there. */
	if (size <= ip->rec.size)
		bfs_resv_drop(fs, ip, size, UINT64_MAX);
	uint64_t before = ip->dirty.bytes;
	wbuf_truncate(&ip->dirty, size);
	bfs_dirty_account(fs, (int64_t)ip->dirty.bytes - (int64_t)before);
	ip->rec.size = size;
	ip->rec.stored = (uint64_t)((int64_t)ip->rec.stored + stored_delta);
	return 0;
}
