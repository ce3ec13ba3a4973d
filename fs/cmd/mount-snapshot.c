/* 'blockfs mount -o snapshot=SEQ|CID': one head's filesystem, rebuilt
 * from the cluster into NODE_DIR/snapshots/SEQ once and served read-only
 * beside the live mount, its file data fetched from the cluster. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blocks/base/log.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/mount-run.h"
#include "fs/cmd/progress.h"
#include "fs/cmd/remote.h"
#include "fs/commit/rebuild.h"

/*
 * The snapshot's directory, NODE_DIR/snapshots/SEQ, holds a node
 * database (db/) with the snapshot's metadata, as a recovery rebuilds it
 * (fs/commit/rebuild.h). States:
 *
 *   (none) --rebuild into SEQ.build-PID--> SEQ.build-PID --rename--> SEQ
 *
 * Invariants:
 *  1. NODE_DIR/snapshots/SEQ exists only complete: a rebuild writes into
 *     SEQ.build-PID and renames it when bfs_open_finish has written the
 *     format record; a crash leaves only the .build directory, which a
 *     later mount of that snapshot removes (its PID is gone).
 *  2. The mount never writes the snapshot's database: it is opened
 *     read-only (a read-only RocksDB, so two mounts of one snapshot may
 *     run at once), and fetched data is not kept in it.
 *  3. The mount takes no lock on NODE_DIR: the live mount keeps it, and
 *     the node's own database is closed once the snapshot is rebuilt.
 *  4. SEQ/head holds the CID of the head it was rebuilt from (written
 *     before the rename): a directory of another head of the same seq (a
 *     sibling a minority of nodes took) is refused, never served.
 */

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) ? -errno : 0;
}

static void rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Remove NODE_DIR/snapshots/SEQ.build-PID of rebuilds whose process is
 * gone (invariant 1). */
static void rm_stale_builds(const char *dir, uint64_t seq)
{
	char prefix[48], path[PATH_MAX + 320];
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = snprintf(prefix, sizeof(prefix), "%llu.build-",
			 (unsigned long long)seq);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, (size_t)n))
			continue;
		long pid = strtol(de->d_name + n, NULL, 10);
		if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
			continue; /* still rebuilding */
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		rm_tree(path);
	}
	closedir(d);
}

/* Rebuild the snapshot of head @h into @build (a new directory). 0 or
 * -errno (r->err). */
static int rebuild_into(struct mount_run *r, const struct cl_head_info *h,
			const char *build)
{
	uint8_t rec[BLK_HEAD_MAX_BYTES];
	struct blk_cid cid;
	size_t len;
	struct bfs_config cfg = r->mc.fs;
	struct bfs_rebuild_ops ops = {
	    .fetch = cmd_remote_fetch,
	    .ctx = r->remote,
	    .progress = mount_rebuild_progress,
	    .arg = (void *)"rebuilding the snapshot",
	    .threads = 8,
	};
	struct bfs_rebuild_stats rs = {0};
	struct bfs *fs;
	int ret = blk_head_encode(&h->head, rec, sizeof(rec), &len);

	if (!ret) {
		blk_head_cid(rec, len, &cid);
		if (!blk_cid_equal(&cid, &h->cid))
			ret = -EBADMSG; /* not the canonical form it came in */
	}
	if (ret) {
		snprintf(r->err, sizeof(r->err),
			 "head %llu does not encode back to its CID: %s",
			 (unsigned long long)h->head.seq, strerror(-ret));
		return ret;
	}
	if (mkdir(build, 0700)) {
		snprintf(r->err, sizeof(r->err), "cannot make %s: %s", build,
			 strerror(errno));
		return -errno;
	}
	cfg.node_dir = build;
	cfg.read_only = false;
	cfg.defer_mkfs = true;
	cfg.newlog = false;
	ret = bfs_open(&cfg, &fs, r->err, sizeof(r->err));
	if (ret)
		return ret;
	ret = bfs_rebuild(bfs_db(fs), bfs_store(fs), rec, len, &ops, &rs,
			  r->err, sizeof(r->err));
	cmd_progress_draw(NULL, 0, 0, NULL);
	if (!ret)
		ret = bfs_open_finish(fs, r->err, sizeof(r->err));
	int c = bfs_close(fs);
	if (!ret && c) {
		snprintf(r->err, sizeof(r->err),
			 "cannot close the rebuilt snapshot: %s", strerror(-c));
		ret = c;
	}
	if (!ret)
		blk_log_info("snapshot %llu: rebuilt %llu directories, %llu "
			     "entries, %llu files (%llu blocks fetched)",
			     (unsigned long long)h->head.seq,
			     (unsigned long long)rs.dirs,
			     (unsigned long long)rs.entries,
			     (unsigned long long)rs.files,
			     (unsigned long long)rs.blocks);
	return ret;
}

/* Write @h's CID to @dir/head (invariant 4). 0 or -errno. */
static int head_write(const char *dir, const struct cl_head_info *h)
{
	char path[PATH_MAX + 120], cid[BLK_CID_STR_MAX];
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "%s/head", dir);
	blk_cid_to_string(&h->cid, cid);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	if (fprintf(f, "%s\n", cid) < 0 || fflush(f) || fsync(fileno(f)))
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -EIO;
	return ret;
}

/* Whether @dir/head names @h (invariant 4). */
static bool head_matches(const char *dir, const struct cl_head_info *h)
{
	char path[PATH_MAX + 120], want[BLK_CID_STR_MAX],
	    got[BLK_CID_STR_MAX + 2];
	FILE *f;
	bool same = false;

	snprintf(path, sizeof(path), "%s/head", dir);
	blk_cid_to_string(&h->cid, want);
	f = fopen(path, "re");
	if (f && fgets(got, sizeof(got), f)) {
		got[strcspn(got, "\n")] = 0;
		same = !strcmp(got, want);
	}
	if (f)
		fclose(f);
	return same;
}

/* NODE_DIR/snapshots/SEQ for head @h, rebuilt unless it is there, into
 * r->snap_dir. 0 or -errno (r->err). */
static int snapshot_dir(struct mount_run *r, const struct cl_head_info *h)
{
	char dir[PATH_MAX + 16], build[PATH_MAX + 96];
	struct stat st;
	int ret;

	snprintf(dir, sizeof(dir), "%s/snapshots", r->node_dir);
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(r->err, sizeof(r->err), "cannot make %s: %s", dir,
			 strerror(errno));
		return -errno;
	}
	snprintf(r->snap_dir, sizeof(r->snap_dir), "%s/%llu", dir,
		 (unsigned long long)h->head.seq);
	if (stat(r->snap_dir, &st) == 0) {
		/* complete (invariant 1); of this head (invariant 4)? */
		if (head_matches(r->snap_dir, h))
			return 0;
		snprintf(r->err, sizeof(r->err),
			 "%s holds the snapshot of another head %llu than the "
			 "one asked for: remove it (while it is not mounted) "
			 "and mount again",
			 r->snap_dir, (unsigned long long)h->head.seq);
		return -EEXIST;
	}
	rm_stale_builds(dir, h->head.seq);
	snprintf(build, sizeof(build), "%s/%llu.build-%ld", dir,
		 (unsigned long long)h->head.seq, (long)getpid());
	blk_log_info("snapshot %llu: rebuilding its metadata from the "
		     "cluster into %s",
		     (unsigned long long)h->head.seq, r->snap_dir);
	ret = rebuild_into(r, h, build);
	if (!ret && (ret = head_write(build, h)))
		snprintf(r->err, sizeof(r->err), "cannot write %s/head: %s",
			 build, strerror(-ret));
	if (!ret && rename(build, r->snap_dir)) {
		if ((errno == EEXIST || errno == ENOTEMPTY) &&
		    head_matches(r->snap_dir, h)) {
			rm_tree(build); /* another mount finished first */
			return 0;
		}
		ret = -errno;
		snprintf(r->err, sizeof(r->err), "cannot rename %s to %s: %s",
			 build, r->snap_dir, strerror(errno));
	}
	if (ret)
		rm_tree(build);
	return ret;
}

int mount_snapshot_open(struct mount_run *r)
{
	struct cl_head_info h;
	char err[512];
	int ret;

	if (r->cl->nnodes < 2) {
		snprintf(r->err, sizeof(r->err),
			 "-o snapshot needs a cluster: a one-node "
			 "filesystem's blocks have no server to read them "
			 "from beside its mount (use 'blockfs export "
			 "--snapshot' instead)");
		return -EOPNOTSUPP;
	}
	r->remote = calloc(1, sizeof(*r->remote));
	if (!r->remote)
		return -ENOMEM;
	if (cmd_remote_open(r->node_dir, r->remote)) {
		free(r->remote);
		r->remote = NULL;
		snprintf(r->err, sizeof(r->err),
			 "cannot reach the cluster of %s (see above)",
			 r->node_dir);
		return -EIO;
	}
	ret = cmd_remote_find_head(r->remote, r->mc.snapshot, &h, err,
				   sizeof(err));
	if (ret) {
		snprintf(r->err, sizeof(r->err), "-o snapshot=%s: %s",
			 r->mc.snapshot, err);
		return ret;
	}
	ret = snapshot_dir(r, &h);
	if (ret)
		return ret;
	/* Reads go to the cluster: the node's own database, open read-only
	 * since cmd_remote_open, would keep the files its mount compacts
	 * away for as long as the snapshot is mounted. */
	cmd_remote_drop_local(r->remote);
	r->mc.fs.node_dir = r->snap_dir;
	r->mc.fs.read_only = true; /* invariant 2 */
	r->mc.fs.local_max = 0;
	ret = bfs_open(&r->mc.fs, &r->fs, r->err, sizeof(r->err));
	if (ret)
		return ret;
	bfs_set_engine(r->fs, r->remote->eng);
	blk_log_info("snapshot %llu of %s: read-only on %s",
		     (unsigned long long)h.head.seq, r->node_dir, r->mnt);
	return 0;
}

void mount_snapshot_close(struct mount_run *r)
{
	if (!r->remote)
		return;
	cmd_remote_close(r->remote);
	free(r->remote);
	r->remote = NULL;
}
