/* Crash recovery at mount: extents of blocks lost in a crash, and files
 * unlinked while open when the daemon stopped. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/log.h"

/* Free inodes that were unlinked while open when the daemon last stopped. */
int bfs_purge_orphans(struct bfs *fs)
{
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_META, "orphan:", 7, NULL, 0);
	uint64_t n = 0;
	int ret = 0;

	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen;
		const char *k = blk_iter_key(it, &klen);
		char hex[17];
		if (klen != 7 + 16)
			continue;
		memcpy(hex, k + 7, 16);
		hex[16] = 0;
		struct bfs_inode *ip = bfs_inode_alloc(strtoull(hex, NULL, 16));
		if (!ip) {
			ret = -ENOMEM;
			break;
		}
		ret = bfs_purge_inode(fs, ip);
		bfs_inode_free(ip);
		if (ret)
			break;
		n++;
	}
	if (!ret)
		ret = blk_iter_status(it);
	blk_iter_free(it);
	if (n)
		blk_log_info("freed %llu files deleted while open",
			     (unsigned long long)n);
	return ret;
}

static int cid_bytes_cmp(const void *a, const void *b)
{
	return memcmp(a, b, BLK_CID_MAX_BYTES);
}

/* Dropped extents named one by one in the log; the rest are counted. */
#define DROPPED_SAID_MAX 64

/* The path of @ino for the log, or what stands for it. */
static void ino_path(struct bfs *fs, uint64_t ino, char *buf, size_t len)
{
	int ret = bfs_ino_path(fs, ino, buf, len);

	if (ret == -ENOENT)
		snprintf(buf, len, "(unlinked)");
	else if (ret)
		snprintf(buf, len, "(path unknown: %s)", strerror(-ret));
}

/* Say that the extent of inode @ino at @off (@len bytes, block @cid) was
 * dropped: the first DROPPED_SAID_MAX, by file path and CID. */
static void say_dropped(struct bfs *fs, uint64_t ino, uint64_t off,
			uint32_t len, const struct blk_cid *cid, uint64_t n)
{
	char path[1024], cs[BLK_CID_STR_MAX];

	if (n >= DROPPED_SAID_MAX)
		return;
	ino_path(fs, ino, path, sizeof(path));
	blk_cid_to_string(cid, cs);
	blk_log_warn("file %s (inode %llu): block %s at offset %llu (%u "
		     "bytes) was never synced before the crash and is lost; "
		     "the range reads as zeros",
		     path, (unsigned long long)ino, cs, (unsigned long long)off,
		     len);
}

/* Take @bytes, held by extents just dropped, off inode @ino's stored
 * bytes (an inode without a record is fine), and say so in the log. */
static int fix_stored(struct bfs *fs, uint64_t ino, uint64_t bytes)
{
	uint8_t ikey[8], *val = NULL;
	size_t ivlen;
	struct bfs_inode_rec r;
	const char *tgt;
	size_t tlen;

	bfs_ino_key(ikey, ino);
	int ret =
	    blk_db_get(fs->db, BFS_CF_INODES, ikey, 8, (void **)&val, &ivlen);
	if (ret == 0 && bfs_inode_decode(val, ivlen, &r, &tgt, &tlen) == 0) {
		uint8_t enc[BFS_INODE_REC_LEN + BFS_SYMLINK_MAX];

		r.stored = r.stored > bytes ? r.stored - bytes : 0;
		size_t n = bfs_inode_encode(&r, tgt, tlen, enc);
		ret = blk_db_put(fs->db, BFS_CF_INODES, ikey, 8, enc, n);
	}
	free(val);
	if (ret == -ENOENT)
		ret = 0;
	if (ret)
		return ret;
	char path[1024];
	ino_path(fs, ino, path, sizeof(path));
	blk_log_warn("file %s (inode %llu): %llu bytes written before the "
		     "crash were never synced and read as zeros",
		     path, (unsigned long long)ino, (unsigned long long)bytes);
	return 0;
}

static int delete_extent(struct bfs *fs, const void *key, size_t klen)
{
	struct blk_txn *t = blk_txn_new(fs->store);

	if (!t)
		return -ENOMEM;
	blk_txn_delete(t, BFS_CF_EXTENTS, key, klen);
	int ret = blk_txn_commit(t, false);
	blk_txn_free(t);
	return ret;
}

/* Delete every extent whose block is in @keys (@n sorted binary CIDs).
 * Extents come in inode order: each inode's stored bytes are fixed once
 * its extents are done. *dropped counts the extents deleted. */
static int drop_extents_in(struct bfs *fs,
			   const uint8_t (*keys)[BLK_CID_MAX_BYTES], size_t n,
			   uint64_t *dropped)
{
	uint64_t last_ino = 0, last_bytes = 0;
	int ret = 0;
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_EXTENTS, NULL, 0, NULL, 0);

	if (!it)
		return -ENOMEM;
	for (bool more = true; more;) {
		size_t klen = 0, vlen;
		const uint8_t *k = NULL, *v;
		uint64_t ino = 0;
		uint8_t c[BLK_CID_MAX_BYTES] = {0};
		struct blk_cid cid;
		uint32_t len;
		bool forced;

		more = blk_iter_valid(it);
		if (more) {
			k = blk_iter_key(it, &klen);
			v = blk_iter_value(it, &vlen);
			if (klen != 16 ||
			    bfs_extent_decode(v, vlen, &len, &forced, &cid)) {
				blk_iter_next(it);
				continue;
			}
			ino = blk_get_be64(k);
		}
		if (last_bytes && (!more || ino != last_ino)) {
			if ((ret = fix_stored(fs, last_ino, last_bytes)))
				break;
			last_bytes = 0;
		}
		if (!more)
			break;
		blk_cid_to_bytes(&cid, c);
		if (bsearch(c, keys, n, sizeof(*keys), cid_bytes_cmp)) {
			say_dropped(fs, ino, blk_get_be64(k + 8), len, &cid,
				    *dropped);
			if ((ret = delete_extent(fs, k, klen)))
				break;
			last_ino = ino;
			last_bytes += len;
			(*dropped)++;
		}
		blk_iter_next(it);
	}
	if (!ret)
		ret = blk_iter_status(it);
	blk_iter_free(it);
	return ret;
}

/*
 * After a crash, the store drops blocks whose bytes never reached the disk
 * (they were written but not synced; blocks/store/journal.c J1). Every extent
 * that points at one goes too, so the range reads as a hole instead of
 * failing: the same outcome as unsynced data after a power cut on a local
 * filesystem, and never metadata pointing at a missing block. Runs at
 * mount, before anything else touches the extent maps; scans them all.
 */
int bfs_drop_lost_extents(struct bfs *fs)
{
	const struct blk_cid *lost;
	size_t nlost = blk_store_lost_blocks(fs->store, &lost);
	uint8_t(*keys)[BLK_CID_MAX_BYTES];
	uint64_t dropped = 0;

	if (!nlost)
		return 0;
	keys = calloc(nlost, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < nlost; i++)
		blk_cid_to_bytes(&lost[i], keys[i]);
	qsort(keys, nlost, sizeof(*keys), cid_bytes_cmp);
	int ret = drop_extents_in(fs, (const uint8_t(*)[BLK_CID_MAX_BYTES])keys,
				  nlost, &dropped);
	free(keys);
	if (!ret) {
		blk_log_warn("%zu blocks written before a crash were lost; "
			     "dropped %llu extents pointing at them",
			     nlost, (unsigned long long)dropped);
		blk_store_forget_lost(fs->store);
		ret = blk_store_sync(fs->store);
	}
	return ret;
}
