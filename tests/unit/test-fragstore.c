/* Tests of the node's fragment store (blocks/store/fragstore.c): put and its
 * outcomes (stored, same, replaced, refused), immutability, capacity,
 * delete with repeated names, scan order and cursors, the usage record
 * across a reopen, lost or damaged, and the puts a damaged write-ahead
 * log took (blocks/db/walscan.c, the 'L' record). */

#include "blocks/store/fragstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/check.h"

#define HEAD 8

/* The fragment store's family, the only one registered: handle 0. */
enum { CF_FRAGS = 0 };

struct env {
	char dir[64];
	struct blk_db *db;
	struct blk_fragstore *fs;
	uint64_t capacity;
};

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	remove(path);
	return 0;
}

/* The test's check: a value whose header starts with 'X' is unsound. */
static int check_head(void *arg, const uint8_t name[BLK_FRAG_NAME_LEN],
		      const void *val, size_t len)
{
	unsigned *calls = arg;

	(*calls)++;
	return ((const uint8_t *)val)[0] == 'X' ? -EBADMSG : 0;
}

static unsigned check_calls;

static int store_open(struct env *e)
{
	struct blk_fragstore_options o = {
	    .cf = CF_FRAGS,
	    .head_len = HEAD,
	    .capacity = e->capacity,
	    .check = check_head,
	    .check_arg = &check_calls,
	};

	return blk_fragstore_open(e->db, &o, &e->fs);
}

static void env_open(struct env *e, bool fresh)
{
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};
	char err[256] = "";

	REQUIRE(blk_fragstore_register(&reg) == CF_FRAGS);
	if (fresh) {
		strcpy(e->dir, "/tmp/test-fragstore.XXXXXX");
		REQUIRE(mkdtemp(e->dir));
	}
	REQUIRE(blk_db_open(e->dir, &o, &e->db, err, sizeof(err)) == 0);
	REQUIRE(store_open(e) == 0);
}

static void env_close(struct env *e, bool remove_dir)
{
	blk_fragstore_close(e->fs);
	blk_db_close(e->db);
	e->fs = NULL;
	e->db = NULL;
	if (remove_dir)
		nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void name_of(unsigned i, uint8_t name[BLK_FRAG_NAME_LEN])
{
	memset(name, 0, BLK_FRAG_NAME_LEN);
	name[4] = (uint8_t)(i >> 8);
	name[5] = (uint8_t)i;
	name[BLK_FRAG_NAME_LEN - 1] = (uint8_t)(i % 7);
}

static int put(struct env *e, unsigned i, char head0, uint8_t fill,
	       uint32_t len, struct blk_frag_put_result *res)
{
	uint8_t name[BLK_FRAG_NAME_LEN], head[HEAD], *data = xmalloc(len);
	int rc;

	name_of(i, name);
	memset(head, head0, sizeof(head));
	memset(data, fill, len);
	rc = blk_fragstore_put(e->fs, name, head, data, len, res);
	free(data);
	return rc;
}

static void check_usage(struct env *e, uint64_t used, uint64_t count)
{
	struct blk_fragstore_usage u;

	blk_fragstore_usage(e->fs, &u);
	CHECK(u.used == used);
	CHECK(u.count == count);
	CHECK(u.capacity == e->capacity);
}

static void test_put_outcomes(void)
{
	struct env e = {.capacity = 1000};
	struct blk_frag_put_result res;
	uint8_t name[BLK_FRAG_NAME_LEN], key[BLK_FRAGSTORE_KEY_LEN];
	struct blk_val *v;
	const uint8_t *val;
	size_t vlen;

	env_open(&e, true);
	check_usage(&e, 0, 0);
	name_of(1, name);
	CHECK(blk_fragstore_has(e.fs, name) == 0);
	CHECK(blk_fragstore_get(e.fs, name, &v) == -ENOENT);

	CHECK(put(&e, 1, 'h', 0xaa, 100, &res) == 0 &&
	      res.outcome == BLK_FRAG_STORED);
	check_usage(&e, HEAD + 100, 1);
	CHECK(blk_fragstore_has(e.fs, name) == 1);
	REQUIRE(blk_fragstore_get(e.fs, name, &v) == 0);
	val = blk_val_data(v, &vlen);
	CHECK(vlen == HEAD + 100 && val[0] == 'h' && val[HEAD] == 0xaa &&
	      val[HEAD + 99] == 0xaa);
	blk_val_free(v);
	/* The 'F' record under the key tools use. */
	blk_fragstore_frag_key(name, key);
	CHECK(blk_db_get_into(e.db, CF_FRAGS, key, sizeof(key), NULL, 0) ==
	      HEAD + 100);

	/* Same bytes, another header: a retry, nothing changes. */
	CHECK(put(&e, 1, 'g', 0xaa, 100, &res) == 0 &&
	      res.outcome == BLK_FRAG_SAME);
	check_usage(&e, HEAD + 100, 1);
	/* Other bytes under a sound fragment: refused, nothing changes. */
	CHECK(put(&e, 1, 'h', 0xbb, 100, &res) == -EEXIST);
	CHECK(put(&e, 1, 'h', 0xaa, 50, &res) == -EEXIST);
	REQUIRE(blk_fragstore_get(e.fs, name, &v) == 0);
	val = blk_val_data(v, &vlen);
	CHECK(vlen == HEAD + 100 && val[0] == 'h' && val[HEAD] == 0xaa);
	blk_val_free(v);

	/* A stored value failing the check is replaced: that is repair. */
	CHECK(put(&e, 2, 'X', 0x11, 40, &res) == 0 &&
	      res.outcome == BLK_FRAG_STORED);
	check_calls = 0;
	CHECK(put(&e, 2, 'h', 0x22, 60, &res) == 0 &&
	      res.outcome == BLK_FRAG_REPLACED);
	CHECK(check_calls == 1);
	check_usage(&e, 2 * HEAD + 160, 2);

	/* Capacity: 1000 bytes, 176 used. */
	CHECK(put(&e, 3, 'h', 0x33, 1000 - 176 - HEAD + 1, &res) == -ENOSPC);
	CHECK(res.used == 176 && !res.disk_short);
	check_usage(&e, 176, 2);
	CHECK(put(&e, 3, 'h', 0x33, 1000 - 176 - HEAD, &res) == 0);
	check_usage(&e, 1000, 3);
	/* An identical re-put of a full node is still acknowledged. */
	CHECK(put(&e, 3, 'h', 0x33, 1000 - 176 - HEAD, &res) == 0 &&
	      res.outcome == BLK_FRAG_SAME);
	env_close(&e, true);
}

static void test_delete(void)
{
	struct env e = {.capacity = 1 << 20};
	struct blk_frag_put_result res;
	uint8_t names[5 * BLK_FRAG_NAME_LEN], gone[1] = {0};

	env_open(&e, true);
	for (unsigned i = 0; i < 3; i++)
		REQUIRE(put(&e, i, 'h', (uint8_t)i, 10 + i, &res) == 0);
	check_usage(&e, 3 * HEAD + 33, 3);
	/* 1, 7 (absent), 1 again, 2, 7 again */
	name_of(1, names);
	name_of(7, names + BLK_FRAG_NAME_LEN);
	name_of(1, names + 2 * BLK_FRAG_NAME_LEN);
	name_of(2, names + 3 * BLK_FRAG_NAME_LEN);
	name_of(7, names + 4 * BLK_FRAG_NAME_LEN);
	CHECK(blk_fragstore_delete(e.fs, names, 5, gone) == 0);
	CHECK(gone[0] == (1u << 0 | 1u << 2 | 1u << 3));
	check_usage(&e, HEAD + 10, 1);
	CHECK(blk_fragstore_has(e.fs, names) == 0);
	CHECK(blk_fragstore_has(e.fs, names + 3 * BLK_FRAG_NAME_LEN) == 0);
	gone[0] = 0;
	CHECK(blk_fragstore_delete(e.fs, names, 1, gone) == 0 && gone[0] == 0);
	check_usage(&e, HEAD + 10, 1);
	env_close(&e, true);
}

struct seen {
	uint8_t names[16][BLK_FRAG_NAME_LEN];
	uint32_t lens[16];
	unsigned n, stop_at;
};

static int record(void *arg, const uint8_t name[BLK_FRAG_NAME_LEN],
		  uint32_t len)
{
	struct seen *s = arg;

	if (s->n == s->stop_at)
		return 7;
	memcpy(s->names[s->n], name, BLK_FRAG_NAME_LEN);
	s->lens[s->n++] = len;
	return 0;
}

static void test_scan(void)
{
	struct env e = {.capacity = 1 << 20};
	struct blk_frag_put_result res;
	struct seen s = {.stop_at = 16};
	uint8_t name[BLK_FRAG_NAME_LEN];
	bool sorted = true;

	env_open(&e, true);
	CHECK(blk_fragstore_scan(e.fs, NULL, record, &s) == 0 && s.n == 0);
	for (unsigned i = 5; i > 0; i--)
		REQUIRE(put(&e, i, 'h', 1, i, &res) == 0);
	CHECK(blk_fragstore_scan(e.fs, NULL, record, &s) == 0 && s.n == 5);
	for (unsigned i = 0; i < s.n; i++) {
		name_of(i + 1, name);
		sorted = sorted && !memcmp(s.names[i], name, sizeof(name)) &&
			 s.lens[i] == i + 1;
	}
	CHECK(sorted);
	/* From after name 2 (a cursor), stopping after two. */
	s = (struct seen){.stop_at = 2};
	name_of(2, name);
	CHECK(blk_fragstore_scan(e.fs, name, record, &s) == 7 && s.n == 2);
	name_of(3, name);
	CHECK(!memcmp(s.names[0], name, sizeof(name)));
	/* A cursor that is not stored lists what follows it. */
	s = (struct seen){.stop_at = 16};
	name_of(6, name);
	CHECK(blk_fragstore_scan(e.fs, name, record, &s) == 0 && s.n == 0);
	env_close(&e, true);
}

static void test_usage_record(void)
{
	struct env e = {.capacity = 1 << 20};
	struct blk_frag_put_result res;
	static const uint8_t skey[1] = {'S'};

	env_open(&e, true);
	for (unsigned i = 0; i < 4; i++)
		REQUIRE(put(&e, i, 'h', 1, 100, &res) == 0);
	env_close(&e, false);
	env_open(&e, false);
	check_usage(&e, 4 * (HEAD + 100), 4);
	/* Without the 'S' record the index entries are counted again. */
	CHECK(blk_db_delete(e.db, CF_FRAGS, skey, 1) == 0);
	blk_fragstore_close(e.fs);
	REQUIRE(store_open(&e) == 0);
	check_usage(&e, 4 * (HEAD + 100), 4);
	/* A record the store did not write. */
	CHECK(blk_db_put(e.db, CF_FRAGS, skey, 1, "bad", 3) == 0);
	blk_fragstore_close(e.fs);
	e.fs = NULL;
	CHECK(store_open(&e) == -EIO && e.fs == NULL);
	env_close(&e, true);
}

/* The bytes of the write-ahead log files (NNNNNN.log) in @dir. */
static uint64_t wal_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t sum = 0;

	REQUIRE(d);
	while ((de = readdir(d))) {
		char path[512];
		struct stat st;
		size_t l = strlen(de->d_name);

		if (l < 5 || strcmp(de->d_name + l - 4, ".log"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0)
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

/* Copy the files of @from (a database in use: what a crash would leave
 * of it) into @to, but its LOCK. */
static void copy_db(const char *from, const char *to)
{
	DIR *d = opendir(from);
	struct dirent *de;
	static char buf[1 << 16];

	REQUIRE(d);
	while ((de = readdir(d))) {
		char src[512], dst[512];
		ssize_t n;

		if (de->d_name[0] == '.' || !strcmp(de->d_name, "LOCK"))
			continue;
		snprintf(src, sizeof(src), "%s/%s", from, de->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", to, de->d_name);
		int in = open(src, O_RDONLY), out;
		REQUIRE(in >= 0);
		out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		REQUIRE(out >= 0);
		while ((n = read(in, buf, sizeof(buf))) > 0)
			REQUIRE(write(out, buf, (size_t)n) == n);
		close(in);
		close(out);
	}
	closedir(d);
}

/* Invert 16 bytes at @per_mille of each non-empty log file of @dir. */
static void damage_wal(const char *dir, unsigned per_mille)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	REQUIRE(d);
	while ((de = readdir(d))) {
		char path[512];
		uint8_t b[16];
		struct stat st;
		size_t l = strlen(de->d_name);

		if (l < 5 || strcmp(de->d_name + l - 4, ".log"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int fd = open(path, O_RDWR);
		REQUIRE(fd >= 0 && fstat(fd, &st) == 0);
		if (st.st_size > 64) {
			off_t at = st.st_size * per_mille / 1000;
			REQUIRE(pread(fd, b, sizeof(b), at) == sizeof(b));
			for (size_t i = 0; i < sizeof(b); i++)
				b[i] ^= 0xff;
			REQUIRE(pwrite(fd, b, sizeof(b), at) == sizeof(b));
		}
		close(fd);
	}
	closedir(d);
}

/* Puts that only the write-ahead log holds (the process died) and 16
 * flipped bytes at @per_mille of it: the replay keeps those before the
 * damage, the open says how many transactions it dropped, and the store
 * counts them as lost, durably; what it holds plus what it lost is what
 * it had. A clean close leaves an empty log. */
static void test_damaged_wal(unsigned per_mille)
{
	struct env e = {.capacity = 64 << 20}, c = {.capacity = 64 << 20};
	struct blk_frag_put_result res;
	struct blk_fragstore_usage u;
	struct blk_wal_damage wd;
	const unsigned n = 24;

	env_open(&e, true);
	for (unsigned i = 0; i < n; i++) /* large and small records */
		REQUIRE(put(&e, i, 'h', (uint8_t)i, i % 3 ? 100000 : 300,
			    &res) == 0);
	strcpy(c.dir, "/tmp/test-fragstore.XXXXXX");
	REQUIRE(mkdtemp(c.dir));
	copy_db(e.dir, c.dir);
	env_close(&e, false);
	CHECK(wal_bytes(e.dir) == 0); /* the clean stop flushed */
	env_close(&e, true);

	CHECK(wal_bytes(c.dir) > 0);
	damage_wal(c.dir, per_mille);
	env_open(&c, false);
	blk_db_wal_damage(c.db, &wd);
	blk_fragstore_usage(c.fs, &u);
	CHECK(wd.records > 0 && wd.records < n);
	CHECK(u.lost == wd.records && u.lost_at_open == wd.records);
	CHECK(u.count + u.lost == n);
	env_close(&c, false);
	/* Counted once, and kept. */
	env_open(&c, false);
	blk_db_wal_damage(c.db, &wd);
	blk_fragstore_usage(c.fs, &u);
	CHECK(wd.records == 0 && u.lost_at_open == 0);
	CHECK(u.count + u.lost == n);
	env_close(&c, true);
}

/* Flip 4 bytes at @at of the first .sst file of @dir; false if it has none
 * that long. */
static bool rot_table(const char *dir, uint64_t at)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool done = false;

	REQUIRE(d);
	while (!done && (de = readdir(d))) {
		char path[512];
		uint8_t b[4];
		struct stat st;
		size_t l = strlen(de->d_name);

		if (l < 5 || strcmp(de->d_name + l - 4, ".sst"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int fd = open(path, O_RDWR);
		REQUIRE(fd >= 0 && fstat(fd, &st) == 0);
		if ((uint64_t)st.st_size > sizeof(b)) {
			off_t off =
			    (off_t)(at % ((uint64_t)st.st_size - sizeof(b)));
			REQUIRE(pread(fd, b, sizeof(b), off) == sizeof(b));
			for (size_t i = 0; i < sizeof(b); i++)
				b[i] ^= 0x5a;
			REQUIRE(pwrite(fd, b, sizeof(b), off) == sizeof(b));
			done = true;
		}
		close(fd);
	}
	closedir(d);
	return done;
}

/* In a child: open the rotted copy in @dir and read every fragment. Exit
 * status 0 when every read gave the bytes put or -EIO (or the open said
 * the database is damaged), 1 when one gave other bytes or another error. */
static int read_rotted(const char *dir, unsigned n)
{
	struct env c = {.capacity = 64 << 20};
	bool replaced = false;
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg};
	char err[256] = "";

	REQUIRE(blk_fragstore_register(&reg) == CF_FRAGS);
	strcpy(c.dir, dir);
	if (blk_db_open(c.dir, &o, &c.db, err, sizeof(err)))
		return 0;
	if (store_open(&c)) {
		blk_db_close(c.db);
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		uint8_t name[BLK_FRAG_NAME_LEN];
		struct blk_frag_put_result res;
		struct blk_val *v;
		const uint8_t *val;
		size_t vlen;
		int rc;

		name_of(i, name);
		rc = blk_fragstore_get(c.fs, name, &v);
		if (rc == -EIO) {
			/* Unreadable: a put of the same fragment (an
			 * uploader sending it again) replaces it, also when
			 * its index record is what rotted. */
			rc = put(&c, i, 'h', (uint8_t)i, 300, &res);
			if (rc || res.outcome != BLK_FRAG_REPLACED)
				return 1;
			replaced = true;
			rc = blk_fragstore_get(c.fs, name, &v);
		}
		if (rc)
			return 1;
		val = blk_val_data(v, &vlen);
		if (vlen != HEAD + 300 || val[0] != 'h' ||
		    val[HEAD] != (uint8_t)i || val[HEAD + 299] != (uint8_t)i)
			return 1;
		blk_val_free(v);
		/* Sent again (a mount uploading what a node lost): taken,
		 * also when its index record is what rotted (the crash
		 * soak's seed 3851262544: refused, its block could not be
		 * placed and fsync failed with every node up). */
		rc = put(&c, i, 'h', (uint8_t)i, 300, &res);
		if (rc)
			return 1;
		replaced |= res.outcome == BLK_FRAG_REPLACED;
	}
	/* A forked child has none of RocksDB's background threads (they
	 * are the parent's): closing after a put would wait for a flush that
	 * never runs. The child exits without it. */
	if (replaced)
		return 2;
	blk_fragstore_close(c.fs);
	blk_db_close(c.db);
	return 0;
}

/* Bit rot in a stopped node's table files (the crash harness's rot_node):
 * opening and reading it gives the bytes put or an error -- never a crash
 * (RocksDB's own asserts on a damaged data block read unchecked) and
 * never other bytes; and a fragment that reads as damaged is replaced by
 * a put of it (else its block stays below redundancy for good: the crash
 * soak's seed 1535060865). Each trial runs in a child, so that a crash is
 * a failure of that trial; it exits 2 when it replaced a fragment. */
static void test_rotted_tables(void)
{
	struct env e = {.capacity = 64 << 20};
	struct blk_frag_put_result res;
	const unsigned n = 200, trials = 150;
	unsigned bad = 0, replaced = 0;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	env_open(&e, true);
	for (unsigned i = 0; i < n; i++) /* small: kept in the table files */
		REQUIRE(put(&e, i, 'h', (uint8_t)i, 300, &res) == 0);
	env_close(&e, false); /* the clean stop flushes them to a table */
	for (unsigned t = 0; t < trials; t++) {
		char dir[64] = "/tmp/test-fragstore.XXXXXX";
		int status;
		pid_t pid;

		REQUIRE(mkdtemp(dir));
		copy_db(e.dir, dir);
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		REQUIRE(rot_table(dir, x));
		fflush(NULL);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(read_rotted(dir, n));
		REQUIRE(waitpid(pid, &status, 0) == pid);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
			replaced++;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr,
				"rotted table, trial %u (at %llu): %s\n", t,
				(unsigned long long)x,
				WIFEXITED(status) ? "wrong bytes or error"
						  : "crashed");
			bad++;
		}
		REQUIRE(nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS) == 0);
	}
	CHECK(bad == 0);
	CHECK(replaced > 0);
	printf("rotted tables: %u trials, %u replaced a damaged fragment\n",
	       trials, replaced);
	nftw(e.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_bad_options(void)
{
	struct env e = {.capacity = 1};
	/* A family that is not open. */
	struct blk_fragstore_options o = {.cf = CF_FRAGS + 1, .head_len = HEAD};
	struct blk_fragstore *fs = (void *)&e;

	env_open(&e, true);
	CHECK(blk_fragstore_open(e.db, &o, &fs) == -EINVAL && fs == NULL);
	o = (struct blk_fragstore_options){.cf = CF_FRAGS};
	CHECK(blk_fragstore_open(e.db, &o, &fs) == -EINVAL && fs == NULL);
	env_close(&e, true);
}

int main(void)
{
	test_put_outcomes();
	test_delete();
	test_scan();
	test_usage_record();
	/* in a header, in a large record, near either end */
	for (unsigned pm = 100; pm < 1000; pm += 111)
		test_damaged_wal(pm);
	test_rotted_tables();
	test_bad_options();
	printf("fragstore: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
