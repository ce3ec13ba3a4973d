/* Damaged data in the log (struct bfs_damage): the path of an inode (a
 * reverse lookup through the directory entries), and the one line per
 * block that says its local copy was unreadable, or healed from the
 * cluster, naming file and CID. */
#include "fs/bfs-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/base/log.h"

/* Blocks remembered as reported: the last DAMAGE_SAID_MAX. A block
 * reported before them may be reported again, once. */
#define DAMAGE_SAID_MAX 4096
/* Directory levels followed up from an inode before giving up. */
#define PATH_DEPTH_MAX 256

/* The directory entry naming @ino: its parent and name (into @name,
 * BFS_NAME_MAX + 1 bytes). Scans every entry; the first one found wins (an
 * inode with several links has several). 0, -ENOENT (none: unlinked),
 * -ENOMEM or -EIO. */
static int find_dirent(struct bfs *fs, uint64_t ino, uint64_t *parent,
		       char *name)
{
	struct blk_iter *it =
	    blk_iter_new(fs->db, BFS_CF_DIRENTS, NULL, 0, NULL, 0);
	int ret = -ENOENT;

	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = blk_iter_key(it, &klen);
		const uint8_t *v = blk_iter_value(it, &vlen);
		uint64_t vino;
		uint8_t dtype;

		if (klen <= 8 || klen > 8 + BFS_NAME_MAX ||
		    bfs_dirent_decode(v, vlen, &vino, &dtype) || vino != ino)
			continue;
		*parent = blk_get_be64(k);
		memcpy(name, k + 8, klen - 8);
		name[klen - 8] = 0;
		ret = 0;
		break;
	}
	if (ret == -ENOENT && blk_iter_status(it) < 0)
		ret = -EIO;
	blk_iter_free(it);
	return ret;
}

int bfs_ino_path(struct bfs *fs, uint64_t ino, char *buf, size_t len)
{
	char name[BFS_NAME_MAX + 1];
	size_t at = len - 1; /* the path is built from its end */

	if (len < 2)
		return -ENAMETOOLONG;
	buf[at] = 0;
	if (ino == BFS_ROOT_INO) {
		buf[--at] = '/';
		memmove(buf, buf + at, len - at);
		return 0;
	}
	for (int depth = 0; ino != BFS_ROOT_INO; depth++) {
		uint64_t parent;
		int ret = depth < PATH_DEPTH_MAX
			      ? find_dirent(fs, ino, &parent, name)
			      : -ELOOP;
		size_t n = strlen(name);

		if (ret)
			return ret;
		if (n + 1 > at)
			return -ENAMETOOLONG;
		at -= n;
		memcpy(buf + at, name, n);
		buf[--at] = '/';
		ino = parent;
	}
	memmove(buf, buf + at, len - at);
	return 0;
}

void bfs_ino_describe(struct bfs *fs, uint64_t ino, char *buf, size_t len)
{
	int ret;

	if (!ino) {
		snprintf(buf, len, "(a file being rewritten)");
		return;
	}
	ret = bfs_ino_path(fs, ino, buf, len);
	if (ret == -ENOENT)
		snprintf(buf, len, "(unlinked)");
	else if (ret)
		snprintf(buf, len, "(path unknown: %s)", strerror(-ret));
}

void bfs_damage_init(struct bfs_damage *d)
{
	pthread_mutex_init(&d->lock, NULL);
}

void bfs_damage_destroy(struct bfs_damage *d)
{
	free(d->said);
	d->said = NULL;
	pthread_mutex_destroy(&d->lock);
}

/* Whether @cid is reported already; if not, it is from now on. */
static bool said_before(struct bfs *fs, const struct blk_cid *cid)
{
	bool said = false;

	pthread_mutex_lock(&fs->damage.lock);
	for (size_t i = 0; i < fs->damage.n && !said; i++)
		said = blk_cid_equal(&fs->damage.said[i], cid);
	if (!said) {
		if (!fs->damage.said)
			fs->damage.said =
			    calloc(DAMAGE_SAID_MAX, sizeof(*fs->damage.said));
		if (fs->damage.said) {
			fs->damage.said[fs->damage.next] = *cid;
			fs->damage.next =
			    (fs->damage.next + 1) % DAMAGE_SAID_MAX;
			if (fs->damage.n < DAMAGE_SAID_MAX)
				fs->damage.n++;
		}
	}
	pthread_mutex_unlock(&fs->damage.lock);
	return said;
}

void bfs_damage_unreadable(struct bfs *fs, uint64_t ino, uint64_t off,
			   const struct blk_cid *cid, int err)
{
	char path[1024], cs[BLK_CID_STR_MAX];

	if (said_before(fs, cid))
		return;
	bfs_ino_describe(fs, ino, path, sizeof(path));
	blk_cid_to_string(cid, cs);
	blk_log_err("file %s (inode %llu): block %s at offset %llu is "
		    "unreadable: %s%s",
		    path, (unsigned long long)ino, cs, (unsigned long long)off,
		    strerror(-err),
		    err == -EIO || err == -EBADMSG
			? " (the local copy is damaged and no other copy "
			  "could be had)"
			: "");
}

void bfs_damage_healed(struct bfs *fs, uint64_t ino, const struct blk_cid *cid,
		       int damage, int rewrite)
{
	char path[1024], cs[BLK_CID_STR_MAX];

	if (said_before(fs, cid))
		return;
	bfs_ino_describe(fs, ino, path, sizeof(path));
	blk_cid_to_string(cid, cs);
	if (rewrite)
		blk_log_err("file %s (inode %llu): block %s: the local copy is "
			    "damaged (%s); read from the cluster, but it "
			    "could not be written back: %s",
			    path, (unsigned long long)ino, cs,
			    strerror(-damage), strerror(-rewrite));
	else
		blk_log_warn("file %s (inode %llu): block %s: the local copy "
			     "was damaged (%s); healed from the cluster",
			     path, (unsigned long long)ino, cs,
			     strerror(-damage));
}
