/* fallocate(2): punching holes, zeroing ranges, and room reserved for
 * later writes.
 *
 * Punch (PUNCH_HOLE | KEEP_SIZE) and zero range (ZERO_RANGE, with or
 * without KEEP_SIZE) make [off, off+len) a hole: the extents inside go,
 * the two that straddle its edges keep their outer parts as new blocks
 * (read back and stored again, as truncate keeps the head of the block
 * its new end cuts), the buffered bytes inside go, and the blocks'
 * references are dropped. All of it is one transaction with the inode
 * record, made under ext_lock held exclusively and ip->lock, with no
 * flush running (ip->editing clear): the same protocol as a truncate
 * (bfs_setattr), so after a crash the file holds the range as it was
 * before or as a hole, never a mix. A block at an edge that is not local
 * is fetched before the locks are taken (bfs_truncate_fetch).
 *
 * Reservations (mode 0 and KEEP_SIZE; zero range too, whose range stays
 * allocated as ext4's does): the holes of the range, less what is
 * reserved already, are set aside from the room writes may use
 * (bfs_space_claim), or fallocate fails with ENOSPC. A write into a
 * reserved range is admitted against the reservation and takes that part
 * of it (bfs_write), since its bytes are counted as dirty from then on;
 * punch and truncate give back what they cover, and the inode's
 * eviction gives back the rest. Reservations live in memory with the
 * inode: while a file is open, and until the kernel forgets it; not
 * across a remount. Blocks are content-addressed, so there is nothing to
 * preallocate on disk: reserving room is the whole promise.
 *
 * COLLAPSE_RANGE and INSERT_RANGE get EOPNOTSUPP: the FUSE kernel module
 * refuses them itself (fs/fuse/file.c fuse_file_fallocate accepts only
 * KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE), so no request ever reaches the
 * daemon; the core refuses them as every unknown mode. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/log.h"
#include "fs/extent.h"

/* linux/falloc.h, without its header's dependency on the kernel's */
#define FL_KEEP_SIZE 0x01
#define FL_PUNCH_HOLE 0x02
#define FL_ZERO_RANGE 0x10

/* ---- reservations --------------------------------------------------- */

uint64_t bfs_resv_overlap(const struct bfs_inode *ip, uint64_t off,
			  uint64_t end)
{
	uint64_t n = 0;

	for (size_t i = 0; i < ip->nresv && ip->resv[i].off < end; i++) {
		uint64_t a = ip->resv[i].off > off ? ip->resv[i].off : off;
		uint64_t b = ip->resv[i].end < end ? ip->resv[i].end : end;
		if (a < b)
			n += b - a;
	}
	return n;
}

/* Room for one more range in ip->resv: false on ENOMEM. ip->lock held. */
static bool resv_room(struct bfs_inode *ip)
{
	if (ip->nresv < ip->cresv)
		return true;
	size_t cap = ip->cresv ? 2 * ip->cresv : 4;
	struct bfs_resv *v = realloc(ip->resv, cap * sizeof(*v));
	if (!v)
		return false;
	ip->resv = v;
	ip->cresv = cap;
	return true;
}

void bfs_resv_drop(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
		   uint64_t end)
{
	uint64_t freed = 0;
	size_t out = 0;

	for (size_t i = 0; i < ip->nresv; i++) {
		struct bfs_resv *r = &ip->resv[i];
		if (r->off >= off || r->end <= end)
			continue;
		/* [off, end) strictly inside one range: split it, or give
		 * all of it back when there is no memory for two. */
		if (resv_room(ip)) {
			r = &ip->resv[i];
			memmove(r + 1, r, (ip->nresv - i) * sizeof(*r));
			ip->nresv++;
			r[0].end = off;
			r[1].off = end;
			freed = end - off;
		} else {
			freed = r->end - r->off;
			memmove(r, r + 1, (ip->nresv - i - 1) * sizeof(*r));
			ip->nresv--;
		}
		goto out;
	}
	for (size_t i = 0; i < ip->nresv; i++) {
		struct bfs_resv r = ip->resv[i];
		uint64_t a = r.off > off ? r.off : off;
		uint64_t b = r.end < end ? r.end : end;
		if (a < b) {
			freed += b - a;
			if (r.off < off)
				r.end = off; /* keeps its head */
			else if (r.end > end)
				r.off = end; /* keeps its tail */
			else
				continue; /* inside: goes */
		}
		ip->resv[out++] = r;
	}
	ip->nresv = out;
out:
	ip->resv_bytes -= freed;
	if (freed)
		bfs_space_unclaim(fs, freed);
}

/* Reserve [off, end) in @ip's ranges, merged with those it overlaps or
 * touches. 0 or -ENOMEM. ip->lock held. */
static int resv_add(struct bfs_inode *ip, uint64_t off, uint64_t end)
{
	if (!resv_room(ip))
		return -ENOMEM;
	size_t i = 0, j;
	while (i < ip->nresv && ip->resv[i].end < off)
		i++;
	for (j = i; j < ip->nresv && ip->resv[j].off <= end; j++) {
		if (ip->resv[j].off < off)
			off = ip->resv[j].off;
		if (ip->resv[j].end > end)
			end = ip->resv[j].end;
	}
	/* [i, j) become one range at i */
	if (j == i)
		memmove(&ip->resv[i + 1], &ip->resv[i],
			(ip->nresv - i) * sizeof(ip->resv[0]));
	else if (j > i + 1)
		memmove(&ip->resv[i + 1], &ip->resv[j],
			(ip->nresv - j) * sizeof(ip->resv[0]));
	ip->nresv = ip->nresv + 1 - (j - i);
	ip->resv[i] = (struct bfs_resv){off, end};
	return 0;
}

/* A hole of a range to reserve. */
struct hole {
	uint64_t off, end;
};

/* The holes of [off, end) (no extent, nothing buffered) in *@out (@n of
 * them), and the bytes of them not reserved yet in *@need. */
static int find_holes(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
		      uint64_t end, struct hole **out, size_t *n,
		      uint64_t *need)
{
	struct hole *v = NULL;
	size_t cap = 0;
	int ret = 0;

	*n = 0;
	*need = 0;
	pthread_rwlock_rdlock(&ip->ext_lock);
	for (uint64_t pos = off; !ret && pos < end;) {
		uint64_t at, stop;
		ret = bfs_data_next(fs, ip, pos, &at);
		if (ret)
			break;
		stop = at < end ? at : end;
		if (stop > pos) {
			if (*n == cap) {
				cap = cap ? 2 * cap : 8;
				struct hole *nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					ret = -ENOMEM;
					break;
				}
				v = nv;
			}
			v[(*n)++] = (struct hole){pos, stop};
			pthread_mutex_lock(&ip->lock);
			*need += stop - pos - bfs_resv_overlap(ip, pos, stop);
			pthread_mutex_unlock(&ip->lock);
		}
		if (stop == end)
			break;
		ret = bfs_data_end(fs, ip, at, &pos);
	}
	pthread_rwlock_unlock(&ip->ext_lock);
	if (ret) {
		free(v);
		return ret;
	}
	*out = v;
	return 0;
}

/* Add the holes to @ip's reservation, @claimed bytes of room having been
 * set aside for them; settles the difference when the file changed
 * meanwhile. ip->lock held. */
static int reserve_holes(struct bfs *fs, struct bfs_inode *ip,
			 const struct hole *v, size_t n, uint64_t claimed)
{
	uint64_t added = 0;
	int ret = 0;

	for (size_t i = 0; i < n && !ret; i++) {
		uint64_t had = bfs_resv_overlap(ip, v[i].off, v[i].end);
		ret = resv_add(ip, v[i].off, v[i].end);
		if (!ret)
			added += v[i].end - v[i].off - had;
	}
	ip->resv_bytes += added;
	if (added < claimed)
		bfs_space_unclaim(fs, claimed - added);
	else if (added > claimed) /* a write took some meanwhile */
		__atomic_add_fetch(&fs->space.claimed, added - claimed,
				   __ATOMIC_RELAXED);
	return ret;
}

/* ---- the extent map --------------------------------------------------- */

/* Buffers the transaction of a punch points at, freed after it. */
struct keep {
	void *v[4];
	size_t n;
};

/* The bytes of block @e into @p: from one of @tails when it is that
 * block, else from the store or the cluster. */
static int edge_read(struct bfs *fs, const struct bfs_extent *e,
		     const struct bfs_tail *tails, uint8_t *p)
{
	for (int i = 0; i < 2; i++) {
		const struct bfs_tail *tl = &tails[i];
		if (tl->data && blk_cid_equal(&tl->cid, &e->cid) &&
		    tl->len >= e->len) {
			memcpy(p, tl->data, e->len);
			return 0;
		}
	}
	int64_t got = bfs_block_read(fs, &e->cid, 0, p, e->len);
	if (got != e->len)
		return got < 0 ? (int)got : -EUCLEAN;
	return 0;
}

/* Store [from, from+len) of @data (the block of extent @e) as a new
 * extent at @from in @t, unless it is all zeros; its CID hashes with
 * @fs's hash. */
static int put_piece(struct bfs *fs, struct bfs_inode *ip, struct blk_txn *t,
		     const uint8_t *data, uint64_t boff, uint64_t from,
		     uint32_t len, bool forced, int64_t *stored_delta)
{
	uint8_t key[16], val[BFS_EXTENT_VAL_MAX];
	struct blk_cid cid;
	const uint8_t *p = data + boff;

	if (!len || bfs_all_zero(p, len))
		return 0;
	blk_cid_compute_hash(&cid, fs->cfg.hash, BLK_CODEC_RAW, p, len);
	blk_txn_put(t, BFS_CF_EXTENTS, key, bfs_extent_key(key, ip->ino, from),
		    val, bfs_extent_encode(val, len, forced, &cid));
	*stored_delta += len;
	return blk_txn_ref(t, &cid, p, len);
}

/* Drop the extents in [a, b) in @t; the two that straddle its edges
 * keep their parts outside it as new blocks. ext_lock exclusive,
 * ip->lock held, no flush running. */
static int punch_extents(struct bfs *fs, struct bfs_inode *ip, uint64_t a,
			 uint64_t b, const struct bfs_tail *tails,
			 struct blk_txn *t, int64_t *stored_delta,
			 struct keep *keep)
{
	struct bfs_extent_list exts = {0};
	int ret = bfs_extents_in(fs->db, BFS_CF_EXTENTS, ip->ino, a, b,
				 fs->max_extent, &exts);

	for (size_t k = 0; !ret && k < exts.n; k++) {
		const struct bfs_extent *e = &exts.v[k];
		uint64_t end = e->off + e->len;
		uint8_t key[16];

		blk_txn_delete(t, BFS_CF_EXTENTS, key,
			       bfs_extent_key(key, ip->ino, e->off));
		ret = blk_txn_unref(t, &e->cid);
		*stored_delta -= e->len;
		if (ret || (e->off >= a && end <= b))
			continue;
		/* An edge: at most two, so keep has room. */
		uint8_t *p = malloc(e->len);
		if (!p) {
			ret = -ENOMEM;
			break;
		}
		keep->v[keep->n++] = p;
		ret = edge_read(fs, e, tails, p);
		if (!ret && e->off < a)
			ret = put_piece(fs, ip, t, p, 0, e->off,
					(uint32_t)(a - e->off), true,
					stored_delta);
		if (!ret && end > b)
			ret = put_piece(fs, ip, t, p, b - e->off, b,
					(uint32_t)(end - b), e->forced,
					stored_delta);
		if (ret)
			bfs_damage_unreadable(fs, ip->ino, e->off, &e->cid,
					      ret);
	}
	bfs_extent_list_free(&exts);
	return ret;
}

/* Make [off, off+len) a hole and commit it with the inode record; with
 * @zero, reserve it (its room, @claimed, set aside by the caller), and
 * with @extend, grow the file to cover it. */
static int punch(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
		 uint64_t len, bool zero, bool extend, uint64_t claimed)
{
	struct bfs_tail tails[2];
	struct keep keep = {.n = 0};
	int64_t stored_delta = 0;
	uint64_t end = off + len;
	int ret = 0;

	struct blk_txn *t = blk_txn_new(fs->store);
	if (!t) {
		bfs_space_unclaim(fs, claimed);
		return -ENOMEM;
	}
	/* no lock is held across a fetch from the cluster */
	bfs_truncate_fetch(fs, ip, off, &tails[0]);
	bfs_truncate_fetch(fs, ip, end, &tails[1]);
	bfs_edit_lock(ip);
	uint64_t size = ip->rec.size, b = end < size ? end : size;
	if (off < b)
		ret = punch_extents(fs, ip, off, b, tails, t, &stored_delta,
				    &keep);
	/* Before the commit, so that a failure changes nothing: only a
	 * split of a segment allocates. */
	uint64_t before = ip->dirty.bytes;
	if (!ret && off < b)
		ret = wbuf_punch(&ip->dirty, off, b - off);
	struct bfs_inode_rec saved = ip->rec;
	if (!ret) {
		if (extend && end > ip->rec.size)
			ip->rec.size = end;
		ip->rec.stored =
		    (uint64_t)((int64_t)ip->rec.stored + stored_delta);
		bfs_now(&ip->rec.mtime);
		ip->rec.ctime = ip->rec.mtime;
		bfs_txn_put_inode(fs, t, ip);
		ret = blk_txn_commit(t, false);
		if (ret) {
			/* The buffered bytes of the range are gone; the
			 * old extents show there, as after a failed
			 * truncate. */
			ip->rec = saved;
			blk_log_err("inode %llu: fallocate commit failed: %s",
				    (unsigned long long)ip->ino,
				    strerror(-ret));
		}
	}
	bfs_dirty_account(fs, (int64_t)ip->dirty.bytes - (int64_t)before);
	if (!ret && zero)
		ret =
		    reserve_holes(fs, ip, &(struct hole){off, end}, 1, claimed);
	else if (!ret)
		bfs_resv_drop(fs, ip, off, end);
	else if (claimed)
		bfs_space_unclaim(fs, claimed);
	pthread_mutex_unlock(&ip->lock);
	pthread_rwlock_unlock(&ip->ext_lock);
	blk_txn_free(t);
	for (size_t i = 0; i < keep.n; i++)
		free(keep.v[i]);
	free(tails[0].data);
	free(tails[1].data);
	return ret;
}

/* ---- fallocate modes ------------------------------------------------ */

/* Mode 0 / KEEP_SIZE: reserve the holes of [off, end), and with @extend
 * grow the file to @end. */
static int reserve(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
		   uint64_t end, bool extend)
{
	struct hole *v = NULL;
	size_t n;
	uint64_t need;

	int ret = find_holes(fs, ip, off, end, &v, &n, &need);
	if (!ret)
		ret = bfs_space_claim(fs, need);
	if (ret) {
		free(v);
		return ret;
	}
	pthread_mutex_lock(&ip->lock);
	ret = reserve_holes(fs, ip, v, n, need);
	bool grow = !ret && extend && end > ip->rec.size;
	pthread_mutex_unlock(&ip->lock);
	free(v);
	if (!grow)
		return ret;
	/* The new size is committed as a truncate commits it. */
	struct stat st = {.st_size = (off_t)end};
	pthread_mutex_lock(&ip->lock);
	grow = end > ip->rec.size;
	pthread_mutex_unlock(&ip->lock);
	return grow ? bfs_setattr(fs, ip, &st, BFS_SET_SIZE) : 0;
}

int bfs_fallocate(struct bfs *fs, struct bfs_inode *ip, int mode, uint64_t off,
		  uint64_t len)
{
	if (fs->cfg.read_only)
		return -EROFS;
	if (!S_ISREG(ip->rec.mode))
		return -ENODEV;
	if (!len)
		return -EINVAL;
	if (off >= BFS_FILE_MAX || len > BFS_FILE_MAX - off)
		return -EFBIG;
	switch (mode) {
	case 0:
	case FL_KEEP_SIZE:
		return reserve(fs, ip, off, off + len, mode == 0);
	case FL_PUNCH_HOLE | FL_KEEP_SIZE:
		return punch(fs, ip, off, len, false, false, 0);
	case FL_ZERO_RANGE:
	case FL_ZERO_RANGE | FL_KEEP_SIZE: {
		/* The whole range is a hole afterwards: reserve all of it
		 * that is not reserved yet. */
		pthread_mutex_lock(&ip->lock);
		uint64_t need = len - bfs_resv_overlap(ip, off, off + len);
		pthread_mutex_unlock(&ip->lock);
		int ret = bfs_space_claim(fs, need);
		if (ret)
			return ret;
		return punch(fs, ip, off, len, true, mode == FL_ZERO_RANGE,
			     need);
	}
	default:
		/* COLLAPSE_RANGE, INSERT_RANGE (never sent by the kernel),
		 * UNSHARE_RANGE, PUNCH_HOLE without KEEP_SIZE, ... */
		return -EOPNOTSUPP;
	}
}
