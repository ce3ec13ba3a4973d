/* Unit tests for fs/upgrade.c and the change tracking of format 2: the
 * parents index and the change marks kept by namespace operations, and a
 * format 1 filesystem (no parents, no marks) upgraded in place at open. */

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blocks/base/bytes.h"
#include "fs/bfs.h"
#include "fs/meta.h"
#include "tests/unit/check.h"

static struct bfs_config config(const char *dir)
{
	return (struct bfs_config){
	    .node_dir = dir,
	    .chunker = CDC_FIXED,
	    .hash = BLK_HASH_DEFAULT,
	    .chunk_min = 1024,
	    .chunk_avg = 4096,
	    .chunk_max = 4096,
	    .cache_bytes = 8u << 20,
	    .dirty_max = 64u << 20,
	    .flush_at = 8u << 20,
	    .flushers = 1,
	};
}

static int count_cb(void *arg, const uint8_t *k, size_t kl, const uint8_t *v,
		    size_t vl)
{
	(*(unsigned *)arg)++;
	return 0;
}

static unsigned count(struct bfs *fs, unsigned cf)
{
	unsigned n = 0;

	CHECK(blk_db_walk(bfs_db(fs), cf,
			  &(struct blk_walk){.fn = count_cb, .arg = &n}) == 0);
	return n;
}

/* Whether @ino has the parents record @parent/@name. */
static bool has_parent(struct bfs *fs, uint64_t ino, uint64_t parent,
		       const char *name)
{
	uint8_t key[BFS_PARENT_KEY_MAX];

	return blk_db_get_into(
		   bfs_db(fs), BFS_CF_PARENTS, key,
		   bfs_parent_key(key, ino, parent, name, strlen(name)), NULL,
		   0) == 0;
}

static uint64_t make(struct bfs *fs, uint64_t parent, const char *name,
		     mode_t mode)
{
	struct bfs_inode *ip;
	uint64_t ino;

	REQUIRE(bfs_mknod(fs, parent, name, mode, 0, 0, getuid(), getgid(),
			  NULL, &ip) == 0);
	ino = bfs_inode_ino(ip);
	bfs_iput(fs, ip);
	return ino;
}

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	return remove(p);
}

int main(void)
{
	char dir[] = "/tmp/test-upgrade.XXXXXX";
	char err[256] = "";
	struct bfs_config cfg;
	struct bfs *fs;
	struct bfs_inode *ip;
	uint64_t d, f, g;
	uint8_t v[8];

	REQUIRE(mkdtemp(dir));
	cfg = config(dir);
	REQUIRE(bfs_open(&cfg, &fs, err, sizeof(err)) == 0);
	d = make(fs, BFS_ROOT_INO, "d", S_IFDIR | 0755);
	f = make(fs, d, "f", S_IFREG | 0644);
	g = make(fs, BFS_ROOT_INO, "g", S_IFREG | 0600);
	/* parents follow link, rename over a name, exchange and unlink */
	REQUIRE(bfs_link(fs, f, BFS_ROOT_INO, "f2", &ip) == 0);
	bfs_iput(fs, ip);
	CHECK(has_parent(fs, f, d, "f") && has_parent(fs, f, 1, "f2"));
	CHECK(bfs_rename(fs, BFS_ROOT_INO, "g", d, "f", 0) == 0);
	CHECK(has_parent(fs, g, d, "f") && !has_parent(fs, g, 1, "g"));
	CHECK(!has_parent(fs, f, d, "f") && has_parent(fs, f, 1, "f2"));
	CHECK(bfs_rename(fs, BFS_ROOT_INO, "f2", d, "f", RENAME_EXCHANGE) == 0);
	CHECK(has_parent(fs, f, d, "f") && has_parent(fs, g, 1, "f2"));
	CHECK(!has_parent(fs, f, 1, "f2") && !has_parent(fs, g, d, "f"));
	CHECK(bfs_unlink(fs, BFS_ROOT_INO, "f2", false) == 0);
	CHECK(!has_parent(fs, g, 1, "f2"));
	CHECK(count(fs, BFS_CF_PARENTS) == 2); /* d in /, f in d */
	CHECK(count(fs, BFS_CF_CHANGES) > 0);  /* nothing committed them */
	/* Back to format 1: no parents, no marks. */
	{
		struct blk_iter *it;
		for (unsigned cf = BFS_CF_PARENTS; cf <= BFS_CF_CHANGES; cf++) {
			it = blk_iter_new(bfs_db(fs), cf, NULL, 0, NULL, 0);
			for (; blk_iter_valid(it); blk_iter_next(it)) {
				size_t kl;
				const void *k = blk_iter_key(it, &kl);
				CHECK(blk_db_delete(bfs_db(fs), cf, k, kl) ==
				      0);
			}
			blk_iter_free(it);
		}
		blk_put_le64(v, 1);
		CHECK(blk_db_put(bfs_db(fs), BFS_CF_META, "format", 6, v, 8) ==
		      0);
	}
	CHECK(bfs_close(fs) == 0);
	/* Read-only: read as it is. */
	cfg.read_only = true;
	REQUIRE(bfs_open(&cfg, &fs, err, sizeof(err)) == 0);
	CHECK(count(fs, BFS_CF_PARENTS) == 0);
	CHECK(bfs_close(fs) == 0);
	/* Writable: upgraded, parents rebuilt, every inode marked. */
	cfg.read_only = false;
	REQUIRE(bfs_open(&cfg, &fs, err, sizeof(err)) == 0);
	CHECK(has_parent(fs, d, 1, "d") && has_parent(fs, f, d, "f"));
	CHECK(count(fs, BFS_CF_PARENTS) == 2);
	CHECK(count(fs, BFS_CF_CHANGES) >= 3); /* root, d, f */
	CHECK(blk_db_get_into(bfs_db(fs), BFS_CF_META, "format", 6, v, 8) ==
		  8 &&
	      blk_get_le64(v) == BFS_FORMAT_VERSION);
	CHECK(bfs_close(fs) == 0);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	printf("upgrade: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
