/* Tests of the record store and the block store (blocks/db/db.c, store.c and
 * the journal, new-block log and eviction): transactions and reference
 * counts, persistence, locking between processes, verification, ranges,
 * iterators, concurrency and space reclamation; STORE_BENCH=1 adds
 * an ingest benchmark that reports MB/s and asserts nothing about it. */

#include "blocks/store/store.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check.h"

#define KiB 1024
#define MiB (1024 * 1024)

static const char *const extra_cfs[] = {"inodes", "dirents", "meta", NULL};
enum { CF_INODES, CF_DIRENTS, CF_META };

struct tmp {
	char dir[64];
	char db[96];
};

static void tmp_make(struct tmp *t)
{
	strcpy(t->dir, "/tmp/test-store.XXXXXX");
	REQUIRE(mkdtemp(t->dir));
	snprintf(t->db, sizeof(t->db), "%s/db", t->dir);
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void tmp_remove(struct tmp *t)
{
	nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A database and the block store on it, as every test opens them: the
 * caller's column families first (their handles are 0, 1, ...), then the
 * store's. */
struct tstore {
	struct blk_db *db;
	struct blk_store *st;
};

struct topts {
	const char *const *extra_cfs; /* NULL-terminated, or NULL */
	bool create, read_only, verify_on_read, newlog;
};

static int topen(const char *path, const struct topts *o, struct tstore **out,
		 char *err, size_t errlen)
{
	struct blk_cf_registry reg = {0};
	struct blk_store_options so = {.verify_on_read = o->verify_on_read,
				       .newlog = o->newlog};
	struct blk_db_options dbo = {
	    .cfs = &reg, .create = o->create, .read_only = o->read_only};
	struct tstore *t = calloc(1, sizeof(*t));
	int rc;

	*out = NULL;
	REQUIRE(t);
	for (size_t i = 0; o->extra_cfs && o->extra_cfs[i]; i++)
		blk_cf_register(&reg, o->extra_cfs[i], 0);
	blk_store_register(&reg, &so);
	rc = blk_db_open(path, &dbo, &t->db, err, errlen);
	if (rc == 0)
		rc = blk_store_open(t->db, &so, &t->st, err, errlen);
	if (rc < 0) {
		blk_db_close(t->db);
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

static void tclose(struct tstore *t)
{
	if (!t)
		return;
	blk_store_close(t->st);
	blk_db_close(t->db);
	free(t);
}

static struct tstore *open_db(const char *path, bool create, bool ro,
			      bool verify)
{
	struct topts o = {
	    .extra_cfs = extra_cfs,
	    .create = create,
	    .read_only = ro,
	    .verify_on_read = verify,
	};
	struct tstore *db = NULL;
	char err[512] = "";
	int rc;

	rc = topen(path, &o, &db, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "open %s: %d %s\n", path, rc, err);
	REQUIRE(rc == 0 && db);
	return db;
}

/* Deterministic pseudo-random bytes (xorshift64*). */
static void fill(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0) {
			x ^= x >> 12;
			x ^= x << 25;
			x ^= x >> 27;
		}
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> (8 * (i % 8)));
	}
}

struct block {
	struct blk_cid cid;
	uint8_t *data;
	size_t len;
};

static void block_make(struct block *b, size_t len, uint64_t seed)
{
	b->data = malloc(len ? len : 1);
	REQUIRE(b->data);
	fill(b->data, len, seed);
	b->len = len;
	blk_cid_compute(&b->cid, BLK_CODEC_RAW, b->data, len);
}

static void block_free(struct block *b)
{
	free(b->data);
}

/* 0 if the store holds exactly @b's bytes. */
static int block_cmp_stored(struct tstore *db, const struct block *b)
{
	void *data = NULL;
	size_t len = 0;
	int rc = blk_store_get(db->st, &b->cid, &data, &len);

	if (rc == 0)
		rc = len == b->len && !memcmp(data, b->data, len) ? 0 : 1;
	free(data);
	return rc;
}

/* One commit that drops a reference to @old and adds one to @new (either
 * may be NULL). */
static int commit_replace(struct tstore *db, const struct block *old,
			  const struct block *new)
{
	struct blk_txn *t = blk_txn_new(db->st);
	int rc;

	REQUIRE(t);
	if (old)
		REQUIRE(blk_txn_unref(t, &old->cid) == 0);
	if (new)
		REQUIRE(blk_txn_ref(t, &new->cid, new->data, new->len) == 0);
	rc = blk_txn_commit(t, false);
	blk_txn_free(t);
	return rc;
}

static int commit_ref(struct tstore *db, const struct block *b)
{
	return commit_replace(db, NULL, b);
}

static int commit_unref(struct tstore *db, const struct block *b)
{
	return commit_replace(db, b, NULL);
}

static uint64_t refs_of(struct tstore *db, const struct block *b)
{
	uint64_t refs = 0;
	uint32_t len = 0;

	if (blk_store_refs(db->st, &b->cid, &refs, &len) < 0)
		return 0;
	return refs;
}

static void test_roundtrip(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block b[4];
	struct blk_txn *t;
	struct blk_store_stats st;
	void *val = NULL;
	size_t vlen = 0;
	uint64_t refs;
	uint32_t len;
	char buf[4];

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, true);
	/* inline DAG node, just over the blob threshold, a large leaf, empty */
	block_make(&b[0], 100, 1);
	block_make(&b[1], 5000, 2);
	block_make(&b[2], 300 * KiB, 3);
	block_make(&b[3], 0, 4);

	t = blk_txn_new(db->st);
	REQUIRE(t);
	for (int i = 0; i < 4; i++)
		CHECK(blk_txn_ref(t, &b[i].cid, b[i].data, b[i].len) == 0);
	blk_txn_put(t, CF_INODES, "ino1", 4, "record", 6);
	CHECK(blk_txn_commit(t, true) == 0);
	blk_txn_free(t);

	for (int i = 0; i < 4; i++) {
		CHECK(block_cmp_stored(db, &b[i]) == 0);
		CHECK(blk_store_has(db->st, &b[i].cid) == 1);
		CHECK(blk_store_refs(db->st, &b[i].cid, &refs, &len) == 0);
		CHECK(refs == 1 && len == b[i].len);
	}
	CHECK(blk_db_get(db->db, CF_INODES, "ino1", 4, &val, &vlen) == 0);
	CHECK(vlen == 6 && val && !memcmp(val, "record", 6));
	free(val);
	CHECK(blk_db_get_into(db->db, CF_INODES, "ino1", 4, buf, sizeof(buf)) ==
	      6);
	CHECK(!memcmp(buf, "reco", 4));
	CHECK(blk_db_get(db->db, CF_INODES, "nope", 4, &val, &vlen) == -ENOENT);
	CHECK(blk_db_get(db->db, CF_META, "ino1", 4, &val, &vlen) == -ENOENT);
	CHECK(blk_db_get(db->db, 15, "ino1", 4, &val, &vlen) == -EINVAL);

	CHECK(blk_store_stats(db->st, &st) == 0);
	CHECK(st.blocks == 4);
	CHECK(st.bytes == 100 + 5000 + 300 * KiB);
	CHECK(st.ref_bytes == st.bytes);

	/* A block never stored. */
	{
		struct block m;

		block_make(&m, 10, 99);
		CHECK(blk_store_has(db->st, &m.cid) == 0);
		CHECK(blk_store_get(db->st, &m.cid, &val, &vlen) == -ENOENT);
		CHECK(blk_store_read(db->st, &m.cid, 0, buf, 4) == -ENOENT);
		CHECK(blk_store_refs(db->st, &m.cid, &refs, &len) == -ENOENT);
		block_free(&m);
	}

	/* Deleting a record; an empty transaction; a bad column family. */
	t = blk_txn_new(db->st);
	blk_txn_delete(t, CF_INODES, "ino1", 4);
	CHECK(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	CHECK(blk_db_get(db->db, CF_INODES, "ino1", 4, &val, &vlen) == -ENOENT);
	t = blk_txn_new(db->st);
	CHECK(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	t = blk_txn_new(db->st);
	blk_txn_put(t, 15, "k", 1, "v", 1);
	CHECK(blk_txn_commit(t, false) == -EINVAL);
	blk_txn_free(t);

	for (int i = 0; i < 4; i++)
		block_free(&b[i]);
	tclose(db);
	tmp_remove(&tmp);
}

static void test_refcounts(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block b;
	struct blk_store_stats st;
	struct blk_txn *t;
	void *val;
	size_t vlen;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	block_make(&b, 64 * KiB, 10);

	CHECK(commit_ref(db, &b) == 0);
	CHECK(commit_ref(db, &b) == 0);
	CHECK(refs_of(db, &b) == 2);
	blk_store_stats(db->st, &st);
	CHECK(st.blocks == 1 && st.bytes == b.len && st.ref_bytes == 2 * b.len);

	CHECK(commit_unref(db, &b) == 0);
	CHECK(blk_store_has(db->st, &b.cid) == 1);
	CHECK(refs_of(db, &b) == 1);
	CHECK(block_cmp_stored(db, &b) == 0);
	blk_store_stats(db->st, &st);
	CHECK(st.blocks == 1 && st.bytes == b.len && st.ref_bytes == b.len);

	CHECK(commit_unref(db, &b) == 0);
	CHECK(blk_store_has(db->st, &b.cid) == 0);
	CHECK(blk_store_get(db->st, &b.cid, &val, &vlen) == -ENOENT);
	blk_store_stats(db->st, &st);
	CHECK(st.blocks == 0 && st.bytes == 0 && st.ref_bytes == 0);

	/* Going below zero is refused. */
	CHECK(commit_unref(db, &b) == -EUCLEAN);

	/* ref + unref of a new block in one transaction cancel out. */
	t = blk_txn_new(db->st);
	blk_txn_ref(t, &b.cid, b.data, b.len);
	blk_txn_unref(t, &b.cid);
	CHECK(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	CHECK(blk_store_has(db->st, &b.cid) == 0);

	/* A known block can be referenced without its bytes. */
	CHECK(commit_ref(db, &b) == 0);
	t = blk_txn_new(db->st);
	blk_txn_ref(t, &b.cid, NULL, 0);
	CHECK(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	CHECK(refs_of(db, &b) == 2);
	blk_store_stats(db->st, &st);
	CHECK(st.ref_bytes == 2 * b.len);

	block_free(&b);
	tclose(db);
	tmp_remove(&tmp);
}

/* stats.dag_bytes counts the blocks of DAG codecs (a commit's nodes), not
 * raw data, as they come and go, and survives a reopen. */
static void test_dag_bytes(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block raw, node;
	struct blk_store_stats st;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	block_make(&raw, 64 * KiB, 21);
	block_make(&node, 3000, 22);
	blk_cid_compute(&node.cid, BLK_CODEC_DAG_PB, node.data, node.len);

	CHECK(commit_ref(db, &raw) == 0);
	CHECK(commit_ref(db, &node) == 0);
	CHECK(commit_ref(db, &node) == 0);
	CHECK(blk_store_stats(db->st, &st) == 0);
	CHECK(st.bytes == raw.len + node.len && st.dag_bytes == node.len);
	tclose(db);

	db = open_db(tmp.db, false, false, false);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.dag_bytes == node.len);
	CHECK(commit_unref(db, &node) == 0);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.dag_bytes == node.len);
	CHECK(commit_unref(db, &node) == 0);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.dag_bytes == 0 &&
	      st.bytes == raw.len);

	block_free(&raw);
	block_free(&node);
	tclose(db);
	tmp_remove(&tmp);
}

static void test_dedup(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block b, c;
	struct blk_store_stats st;
	struct blk_txn *t;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	block_make(&b, 256 * KiB, 20);
	block_make(&c, 1000, 21);

	CHECK(commit_ref(db, &b) == 0);
	CHECK(commit_ref(db, &b) == 0);
	blk_store_stats(db->st, &st);
	CHECK(st.blocks == 1);
	CHECK(st.bytes == b.len);
	CHECK(st.ref_bytes == 2 * b.len);

	/* The same CID twice in one transaction. */
	t = blk_txn_new(db->st);
	blk_txn_ref(t, &c.cid, c.data, c.len);
	blk_txn_ref(t, &c.cid, c.data, c.len);
	blk_txn_ref(t, &b.cid, b.data, b.len);
	CHECK(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	CHECK(refs_of(db, &c) == 2);
	CHECK(refs_of(db, &b) == 3);
	blk_store_stats(db->st, &st);
	CHECK(st.blocks == 2);
	CHECK(st.bytes == b.len + c.len);
	CHECK(st.ref_bytes == 3 * b.len + 2 * c.len);

	block_free(&b);
	block_free(&c);
	tclose(db);
	tmp_remove(&tmp);
}

static void test_atomicity(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block a, b, c;
	struct blk_store_stats before, after;
	struct blk_txn *t;
	void *val;
	size_t vlen;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	block_make(&a, 70 * KiB, 30);
	block_make(&b, 80 * KiB, 31);
	block_make(&c, 90 * KiB, 32);
	CHECK(commit_ref(db, &c) == 0);
	blk_store_stats(db->st, &before);

	/* An unref of a block that is not there. */
	t = blk_txn_new(db->st);
	blk_txn_put(t, CF_META, "key", 3, "val", 3);
	blk_txn_ref(t, &a.cid, a.data, a.len);
	blk_txn_unref(t, &c.cid);
	blk_txn_unref(t, &b.cid);
	CHECK(blk_txn_commit(t, false) == -EUCLEAN);
	blk_txn_free(t);
	CHECK(blk_db_get(db->db, CF_META, "key", 3, &val, &vlen) == -ENOENT);
	CHECK(blk_store_has(db->st, &a.cid) == 0);
	CHECK(refs_of(db, &c) == 1);
	blk_store_stats(db->st, &after);
	CHECK(!memcmp(&before, &after, sizeof(before)));

	/* More unrefs than references. */
	t = blk_txn_new(db->st);
	blk_txn_put(t, CF_META, "key", 3, "val", 3);
	blk_txn_unref(t, &c.cid);
	blk_txn_unref(t, &c.cid);
	CHECK(blk_txn_commit(t, false) == -EUCLEAN);
	blk_txn_free(t);
	CHECK(refs_of(db, &c) == 1);
	CHECK(blk_db_get(db->db, CF_META, "key", 3, &val, &vlen) == -ENOENT);

	/* A new block without its bytes. */
	t = blk_txn_new(db->st);
	blk_txn_put(t, CF_META, "key", 3, "val", 3);
	blk_txn_ref(t, &a.cid, a.data, a.len);
	blk_txn_ref(t, &b.cid, NULL, 0);
	CHECK(blk_txn_commit(t, false) == -EUCLEAN);
	blk_txn_free(t);
	CHECK(blk_store_has(db->st, &a.cid) == 0);
	CHECK(blk_store_has(db->st, &b.cid) == 0);
	CHECK(blk_db_get(db->db, CF_META, "key", 3, &val, &vlen) == -ENOENT);
	blk_store_stats(db->st, &after);
	CHECK(!memcmp(&before, &after, sizeof(before)));

	block_free(&a);
	block_free(&b);
	block_free(&c);
	tclose(db);
	tmp_remove(&tmp);
}

static void test_reopen(void)
{
	static const char *const more_cfs[] = {"inodes", "xattrs", NULL};
	struct topts o = {.create = false};
	struct tmp tmp;
	struct tstore *db;
	struct block b[3];
	struct blk_store_stats st, st2;
	struct blk_txn *t;
	char err[512] = "", buf[8];
	int rc;

	tmp_make(&tmp);

	/* Nothing there and !create. */
	db = NULL;
	rc = topen(tmp.db, &o, &db, err, sizeof(err));
	CHECK(rc == -ENOENT && !db);
	CHECK(strstr(err, tmp.db) != NULL);
	printf("  missing database: %s\n", err);
	o.read_only = true;
	CHECK(topen(tmp.db, &o, &db, err, sizeof(err)) == -ENOENT);
	/* Bad options. */
	{
		static const char *const bad[] = {"meta", "refs", NULL};

		o.extra_cfs = bad;
		o.create = true;
		o.read_only = false;
		CHECK(topen(tmp.db, &o, &db, err, sizeof(err)) == -EINVAL);
	}

	db = open_db(tmp.db, true, false, false);
	t = blk_txn_new(db->st);
	for (int i = 0; i < 3; i++) {
		block_make(&b[i], (size_t)(i + 1) * 100 * KiB, 40 + i);
		blk_txn_ref(t, &b[i].cid, b[i].data, b[i].len);
	}
	blk_txn_ref(t, &b[0].cid, b[0].data, b[0].len);
	blk_txn_put(t, CF_DIRENTS, "d", 1, "entry", 5);
	CHECK(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	CHECK(blk_store_sync(db->st) == 0);
	blk_store_stats(db->st, &st);
	tclose(db);

	db = open_db(tmp.db, false, false, true);
	for (int i = 0; i < 3; i++)
		CHECK(block_cmp_stored(db, &b[i]) == 0);
	CHECK(refs_of(db, &b[0]) == 2);
	CHECK(blk_db_get_into(db->db, CF_DIRENTS, "d", 1, buf, sizeof(buf)) ==
	      5);
	blk_store_stats(db->st, &st2);
	CHECK(!memcmp(&st, &st2, sizeof(st)));
	CHECK(st2.blocks == 3 && st2.ref_bytes == st2.bytes + b[0].len);
	tclose(db);

	/* A new caller column family is created; ones not named are kept. */
	o.extra_cfs = more_cfs;
	o.create = false;
	o.read_only = false;
	db = NULL;
	CHECK(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
	if (db) {
		CHECK(blk_db_put(db->db, 1, "x", 1, "attr", 4) == 0);
		CHECK(block_cmp_stored(db, &b[1]) == 0);
		tclose(db);
	}
	db = open_db(tmp.db, false, false, false);
	CHECK(blk_db_get_into(db->db, CF_DIRENTS, "d", 1, buf, sizeof(buf)) ==
	      5);
	tclose(db);
	db = NULL;
	CHECK(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
	if (db) {
		CHECK(blk_db_get_into(db->db, 1, "x", 1, buf, sizeof(buf)) ==
		      4);
		tclose(db);
	}

	for (int i = 0; i < 3; i++)
		block_free(&b[i]);
	tmp_remove(&tmp);
}

/* The block and record the locking test's children look for. */
#define CHILD_BLOCK_LEN (70 * KiB)
#define CHILD_BLOCK_SEED 4242

/* Runs in a fresh process (fork + exec of this test): "rw" expects the
 * database to be busy, "ro" expects to read what the parent committed. */
static int child_main(const char *mode, const char *path)
{
	struct topts o = {.extra_cfs = extra_cfs};
	struct tstore *db = NULL;
	char err[512] = "";
	int rc;

	if (!strcmp(mode, "rw")) {
		o.create = true;
		rc = topen(path, &o, &db, err, sizeof(err));
		printf("  child read-write open: %d: %s\n", rc, err);
		tclose(db);
		return rc == -EBUSY && strstr(err, "in use") ? 0 : 1;
	}
	if (!strcmp(mode, "ro")) {
		struct block b;
		struct blk_store_stats st;
		char buf[8];
		int bad = 0;

		o.read_only = true;
		o.verify_on_read = true;
		rc = topen(path, &o, &db, err, sizeof(err));
		if (rc < 0) {
			printf("  child read-only open: %d: %s\n", rc, err);
			return 1;
		}
		block_make(&b, CHILD_BLOCK_LEN, CHILD_BLOCK_SEED);
		bad |= block_cmp_stored(db, &b) != 0;
		bad |= blk_db_get_into(db->db, CF_META, "parent", 6, buf,
				       sizeof(buf)) != 5;
		blk_store_stats(db->st, &st);
		bad |= st.blocks != 1 || st.bytes != b.len;
		bad |= blk_db_put(db->db, CF_META, "x", 1, "y", 1) != -EROFS;
		bad |= blk_store_sync(db->st) != 0;
		bad |= blk_store_compact(db->st, 0, NULL) != -EROFS;
		printf("  child read-only open: %s\n", bad ? "wrong" : "ok");
		block_free(&b);
		tclose(db);
		return bad;
	}
	if (!strcmp(mode, "crash-newlog")) {
		/* Two large blocks, unsynced; the first one's upload record
		 * is consumed (it reached peers), the second one's is not. */
		struct block b;
		uint8_t k0[8] = {0};

		o.create = true;
		o.newlog = true;
		rc = topen(path, &o, &db, err, sizeof(err));
		if (rc < 0)
			return 1;
		block_make(&b, 256 * KiB, 11);
		rc |= commit_ref(db, &b);
		block_free(&b);
		block_make(&b, 256 * KiB, 12);
		rc |= commit_ref(db, &b);
		block_free(&b);
		rc |= blk_db_delete(db->db, blk_store_newlog_cf(db->st), k0, 8);
		fflush(NULL);
		_exit(rc ? 1 : 0);
	}
	if (!strcmp(mode, "crash-replace")) {
		/* Seed 20 synced, then replaced by 21 (new) in one commit;
		 * 22 committed unsynced, then 21 replaced by 22 (stored, not
		 * durable); 23 committed unsynced alone. */
		struct block a, b, c, d;

		o.create = true;
		rc = topen(path, &o, &db, err, sizeof(err));
		if (rc < 0)
			return 1;
		block_make(&a, 256 * KiB, 20);
		block_make(&b, 256 * KiB, 21);
		block_make(&c, 256 * KiB, 22);
		block_make(&d, 256 * KiB, 23);
		rc |= commit_ref(db, &a);
		rc |= blk_store_sync(db->st);
		rc |= commit_replace(db, &a, &b);
		rc |= commit_ref(db, &c);
		rc |= commit_replace(db, &b, &c);
		rc |= commit_ref(db, &d);
		block_free(&a);
		block_free(&b);
		block_free(&c);
		block_free(&d);
		fflush(NULL);
		_exit(rc ? 1 : 0);
	}
	if (!strcmp(mode, "crash-small") || !strcmp(mode, "crash-big")) {
		/* Commit, sync part of it, then die without closing: what a
		 * kill -9 of the daemon leaves (the page cache keeps the WAL,
		 * memtables are gone). Seeds: 1 synced, 2 unsynced, 3 small
		 * unsynced, 4 unsynced then deleted; crash-big adds 40 MiB of
		 * synced blocks (seeds 100..139, the flush path). */
		struct block b;
		bool big = !strcmp(mode, "crash-big");

		o.create = true;
		rc = topen(path, &o, &db, err, sizeof(err));
		if (rc < 0)
			return 1;
		if (big) {
			for (int i = 0; i < 40; i++) {
				block_make(&b, 1 * MiB, 100 + i);
				rc |= commit_ref(db, &b);
				block_free(&b);
			}
		}
		block_make(&b, 256 * KiB, 1);
		rc |= commit_ref(db, &b);
		block_free(&b);
		rc |= blk_store_sync(db->st);
		block_make(&b, 256 * KiB, 2);
		rc |= commit_ref(db, &b);
		rc |= blk_db_put(db->db, CF_META, "after", 5, "sync", 4);
		block_free(&b);
		block_make(&b, 1000, 3);
		rc |= commit_ref(db, &b);
		block_free(&b);
		block_make(&b, 300 * KiB, 4);
		rc |= commit_ref(db, &b);
		rc |= commit_unref(db, &b);
		block_free(&b);
		fflush(NULL);
		_exit(rc ? 1 : 0);
	}
	return 2;
}

static int run_child(const char *mode, const char *path)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* exec: the child must not inherit the parent's RocksDB
		 * state (its lock table, its dead background threads). */
		execl("/proc/self/exe", "test-store", "--child", mode, path,
		      (char *)NULL);
		_exit(127);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Block bytes skip the WAL (journal.c J1): after a crash, synced blocks
 * are all there, unsynced large ones may be gone — and then so are their
 * reference records, and they are listed as lost — while records and small
 * blocks, which go through the WAL, survive. */
static void test_crash(void)
{
	static const char *const modes[] = {"crash-small", "crash-big"};

	for (int m = 0; m < 2; m++) {
		struct tmp tmp;
		struct tstore *db;
		struct block b1, b2, b3, b4;
		const struct blk_cid *lost;
		struct blk_store_stats st;
		char buf[8];
		size_t n;
		bool big = m == 1;

		tmp_make(&tmp);
		CHECK(run_child(modes[m], tmp.db) == 0);
		db = open_db(tmp.db, false, false, true);
		block_make(&b1, 256 * KiB, 1);
		block_make(&b2, 256 * KiB, 2);
		block_make(&b3, 1000, 3);
		block_make(&b4, 300 * KiB, 4);
		CHECK(block_cmp_stored(db, &b1) == 0 && refs_of(db, &b1) == 1);
		CHECK(block_cmp_stored(db, &b3) == 0 && refs_of(db, &b3) == 1);
		CHECK(blk_store_has(db->st, &b4.cid) == 0);
		CHECK(blk_db_get_into(db->db, CF_META, "after", 5, buf,
				      sizeof(buf)) == 4);
		/* b2 was never synced: its bytes died with the memtable. */
		n = blk_store_lost_blocks(db->st, &lost);
		CHECK(n == 1 && blk_cid_equal(&lost[0], &b2.cid));
		CHECK(blk_store_has(db->st, &b2.cid) == 0 &&
		      refs_of(db, &b2) == 0);
		for (int i = 0; big && i < 40; i++) {
			struct block b;

			block_make(&b, 1 * MiB, 100 + i);
			CHECK(block_cmp_stored(db, &b) == 0);
			block_free(&b);
		}
		CHECK(blk_store_stats(db->st, &st) == 0);
		CHECK(st.blocks == 2 + (big ? 40 : 0));
		CHECK(st.bytes == b1.len + b3.len + (big ? 40ull * MiB : 0));
		CHECK(st.ref_bytes == st.bytes);
		blk_store_forget_lost(db->st);
		CHECK(blk_store_lost_blocks(db->st, &lost) == 0);
		/* The journal is clear: a second open finds nothing lost, and
		 * the store goes on working. */
		tclose(db);
		db = open_db(tmp.db, false, false, true);
		CHECK(blk_store_lost_blocks(db->st, &lost) == 0);
		CHECK(commit_ref(db, &b2) == 0 &&
		      block_cmp_stored(db, &b2) == 0);
		CHECK(blk_store_sync(db->st) == 0);
		tclose(db);
		block_free(&b1);
		block_free(&b2);
		block_free(&b3);
		block_free(&b4);
		tmp_remove(&tmp);
	}
}

/* journal.c J2: a commit that drops a reference keeps the bytes it
 * rests on in the WAL, so a crash cannot take a range that was durable
 * before it: after a kill, the replacing blocks are there (the one stored
 * before the replace too), and only the block committed alone is lost. */
static void test_crash_replace(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block a, b, c, d;
	const struct blk_cid *lost;
	size_t n;

	tmp_make(&tmp);
	CHECK(run_child("crash-replace", tmp.db) == 0);
	db = open_db(tmp.db, false, false, true);
	block_make(&a, 256 * KiB, 20);
	block_make(&b, 256 * KiB, 21);
	block_make(&c, 256 * KiB, 22);
	block_make(&d, 256 * KiB, 23);
	CHECK(refs_of(db, &a) == 0 && refs_of(db, &b) == 0);
	CHECK(block_cmp_stored(db, &c) == 0 && refs_of(db, &c) == 2);
	n = blk_store_lost_blocks(db->st, &lost);
	CHECK(n == 1 && blk_cid_equal(&lost[0], &d.cid));
	blk_store_forget_lost(db->st);
	tclose(db);
	block_free(&a);
	block_free(&b);
	block_free(&c);
	block_free(&d);
	tmp_remove(&tmp);
}

/* Delete the new-block log records from @seq to @end (exclusive) in one
 * transaction, as the uploader does once their blocks are handed on, each
 * @times times; returns how many there were. */
static int retire_log(struct tstore *db, uint64_t seq, uint64_t end, int times)
{
	struct blk_iter *it =
	    blk_iter_new(db->db, blk_store_newlog_cf(db->st), NULL, 0, NULL, 0);
	struct blk_txn *t = blk_txn_new(db->st);
	int n = 0;

	REQUIRE(it && t);
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen;
		const uint8_t *k = blk_iter_key(it, &klen);
		uint64_t s = 0;

		for (size_t i = 0; i < klen && i < 8; i++)
			s = s << 8 | k[i];
		if (klen != 8 || s < seq || s >= end)
			continue;
		for (int i = 0; i < times; i++)
			blk_txn_delete(t, blk_store_newlog_cf(db->st), k, klen);
		n++;
	}
	blk_iter_free(it);
	REQUIRE(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);
	return n;
}

/* Eviction keeps references without bytes; the new-block log records only
 * blocks new to the store; after a crash a block handed on (log record
 * consumed) is kept as evicted, one not handed on is lost. */
static void test_evict(void)
{
	struct topts o = {
	    .extra_cfs = extra_cfs, .create = true, .newlog = true};
	struct tmp tmp;
	struct tstore *db = NULL;
	struct block a, b;
	struct blk_store_stats st;
	const struct blk_cid *lost;
	char err[256];
	uint64_t refs;
	uint32_t len;
	bool local;
	void *data;
	size_t dlen;
	int n;

	tmp_make(&tmp);
	REQUIRE(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
	block_make(&a, 200 * KiB, 21);
	block_make(&b, 1000, 22);
	CHECK(blk_store_newlog_head(db->st) == 0);
	CHECK(commit_ref(db, &a) == 0 && commit_ref(db, &a) == 0);
	CHECK(commit_ref(db, &b) == 0);
	CHECK(blk_store_newlog_head(db->st) == 2); /* a once, b once */
	/* handed on: their records go (test_evict_pending) */
	CHECK(retire_log(db, 0, UINT64_MAX, 1) == 2);

	CHECK(blk_store_evict(db->st, &a.cid) == (int)a.len);
	CHECK(blk_store_evict(db->st, &a.cid) == 0);
	CHECK(blk_store_info(db->st, &a.cid, &refs, &len, &local) == 0);
	CHECK(refs == 2 && len == a.len && !local);
	CHECK(blk_store_get(db->st, &a.cid, &data, &dlen) == -ENOENT);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.remote_bytes == a.len);
	CHECK(st.bytes == a.len + b.len);
	a.data[0] ^= 1;
	CHECK(blk_store_fill(db->st, &a.cid, a.data, a.len) == -EBADMSG);
	a.data[0] ^= 1;
	CHECK(blk_store_fill(db->st, &a.cid, a.data, a.len) == 0);
	CHECK(block_cmp_stored(db, &a) == 0);
	CHECK(blk_store_info(db->st, &a.cid, &refs, &len, &local) == 0 &&
	      local);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.remote_bytes == 0);
	/* Evicted blocks go when their last reference does. */
	CHECK(blk_store_evict(db->st, &a.cid) == (int)a.len);
	CHECK(commit_unref(db, &a) == 0 && commit_unref(db, &a) == 0);
	CHECK(blk_store_has(db->st, &a.cid) == 0);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.remote_bytes == 0 &&
	      st.bytes == b.len && st.blocks == 1);
	/* Written again while evicted: the bytes come back. */
	CHECK(blk_store_evict(db->st, &b.cid) == (int)b.len);
	CHECK(commit_ref(db, &b) == 0 && block_cmp_stored(db, &b) == 0);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.remote_bytes == 0);
	CHECK(blk_store_evict(db->st, &b.cid) == (int)b.len);
	tclose(db);
	/* Stats and flags survive a reopen. */
	REQUIRE(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.remote_bytes == b.len);
	CHECK(blk_store_newlog_head(db->st) ==
	      0); /* an empty log numbers anew */
	tclose(db);
	tmp_remove(&tmp);
	block_free(&a);
	block_free(&b);

	tmp_make(&tmp);
	CHECK(run_child("crash-newlog", tmp.db) == 0);
	REQUIRE(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
	block_make(&a, 256 * KiB, 11);
	block_make(&b, 256 * KiB, 12);
	CHECK(blk_store_lost_blocks(db->st, &lost) == 1 &&
	      blk_cid_equal(&lost[0], &b.cid));
	CHECK(blk_store_info(db->st, &a.cid, &refs, &len, &local) == 0 &&
	      refs == 1 && !local);
	CHECK(blk_store_has(db->st, &b.cid) == 0);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.blocks == 1 &&
	      st.remote_bytes == a.len);
	n = 0;
	struct blk_iter *it =
	    blk_iter_new(db->db, blk_store_newlog_cf(db->st), NULL, 0, NULL, 0);
	for (; blk_iter_valid(it); blk_iter_next(it))
		n++;
	blk_iter_free(it);
	CHECK(n == 0);
	CHECK(blk_store_newlog_head(db->st) == 2);
	tclose(db);
	block_free(&a);
	block_free(&b);
	tmp_remove(&tmp);
}

/* Issue 20 item 3: a block whose upload is pending (a new-block log record
 * names it) is never evicted, however eviction is reached: its bytes are
 * nowhere else yet. Once its records are retired it is. */
static void test_evict_pending(void)
{
	struct topts o = {
	    .extra_cfs = extra_cfs, .create = true, .newlog = true};
	struct tmp tmp;
	struct tstore *db = NULL;
	struct block a, b;
	struct blk_store_stats st;
	uint64_t freed = 1, count = 1;
	char err[256];
	void *data = NULL;
	size_t dlen;

	tmp_make(&tmp);
	REQUIRE(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
	block_make(&a, 100000, 31);
	block_make(&b, 5000, 32);
	CHECK(commit_ref(db, &a) == 0); /* record 0 */
	CHECK(blk_store_evict(db->st, &a.cid) == -EBUSY);
	CHECK(blk_store_get(db->st, &a.cid, &data, &dlen) == 0 &&
	      dlen == a.len);
	free(data);
	CHECK(blk_store_evict_upto(db->st, UINT64_MAX, &freed, &count) == 0);
	CHECK(freed == 0 && count == 0);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.remote_bytes == 0);
	CHECK(block_cmp_stored(db, &a) == 0);

	/* The count of records is loaded with the log at open. */
	tclose(db);
	REQUIRE(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
	CHECK(blk_store_evict(db->st, &a.cid) == -EBUSY);
	CHECK(block_cmp_stored(db, &a) == 0);

	/* Stored, deleted, stored again: two records name b, and b stays
	 * until both are retired (one deleted twice in a transaction is one
	 * record). */
	CHECK(commit_ref(db, &b) == 0); /* record 1 */
	CHECK(commit_unref(db, &b) == 0);
	CHECK(commit_ref(db, &b) == 0); /* record 2 */
	CHECK(blk_store_newlog_head(db->st) == 3);
	CHECK(retire_log(db, 1, 2, 2) == 1);
	CHECK(blk_store_evict(db->st, &b.cid) == -EBUSY);
	CHECK(retire_log(db, 2, 3, 1) == 1);
	CHECK(blk_store_evict(db->st, &b.cid) == (int)b.len);

	/* Handed on: now a goes, and only its bytes. */
	CHECK(blk_store_evict(db->st, &a.cid) == -EBUSY);
	CHECK(retire_log(db, 0, 1, 1) == 1);
	CHECK(blk_store_evict(db->st, &a.cid) == (int)a.len);
	CHECK(blk_store_get(db->st, &a.cid, &data, &dlen) == -ENOENT);
	CHECK(blk_store_has(db->st, &a.cid) == 1);
	CHECK(blk_store_stats(db->st, &st) == 0 &&
	      st.remote_bytes == a.len + b.len);
	tclose(db);
	block_free(&a);
	block_free(&b);
	tmp_remove(&tmp);
}

/* Many blocks retired in a scattered order, some of them stored, deleted
 * and stored again: exactly those with a record left are refused. */
static void test_evict_pending_many(void)
{
	enum { N = 1500, AGAIN = 100, ROUND = 97 };
	struct topts o = {
	    .extra_cfs = extra_cfs, .create = true, .newlog = true};
	static struct block b[N];
	static uint32_t order[N + AGAIN];
	static bool retired[N + AGAIN];
	struct tmp tmp;
	struct tstore *db = NULL;
	char err[256];
	unsigned wrong = 0;

	tmp_make(&tmp);
	REQUIRE(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
	for (uint32_t i = 0; i < N; i++) {
		block_make(&b[i], 64, 1000 + i);
		CHECK(commit_ref(db, &b[i]) == 0); /* record i */
	}
	/* records N.. name blocks 0..AGAIN-1 a second time */
	for (uint32_t i = 0; i < AGAIN; i++) {
		CHECK(commit_unref(db, &b[i]) == 0);
		CHECK(commit_ref(db, &b[i]) == 0);
	}
	CHECK(blk_store_newlog_head(db->st) == N + AGAIN);
	for (uint32_t i = 0; i < N + AGAIN; i++)
		order[i] = i;
	for (uint32_t i = N + AGAIN - 1; i > 0; i--) {
		uint32_t j = (uint32_t)((i * 2654435761u + 12345) % (i + 1));
		uint32_t x = order[i];

		order[i] = order[j];
		order[j] = x;
	}
	for (uint32_t done = 0; done < N + AGAIN; done += ROUND) {
		struct blk_txn *t = blk_txn_new(db->st);

		REQUIRE(t);
		for (uint32_t k = done; k < done + ROUND && k < N + AGAIN;
		     k++) {
			uint8_t key[8];

			for (int x = 0; x < 8; x++)
				key[x] = (uint8_t)((uint64_t)order[k] >>
						   (56 - 8 * x));
			blk_txn_delete(t, blk_store_newlog_cf(db->st), key, 8);
			retired[order[k]] = true;
		}
		CHECK(blk_txn_commit(t, false) == 0);
		blk_txn_free(t);
		for (uint32_t i = 0; i < N; i++) {
			bool left =
			    !retired[i] || (i < AGAIN && !retired[N + i]);
			int r = blk_store_evict(db->st, &b[i].cid);

			wrong += left ? r != -EBUSY : r != 0 && r != 64;
		}
	}
	CHECK(wrong == 0);
	tclose(db);
	for (uint32_t i = 0; i < N; i++)
		block_free(&b[i]);
	tmp_remove(&tmp);
}

/* Order of two blocks' binary CIDs, the order of "refs". */
static int cid_order(const void *a, const void *b)
{
	const struct block *x = a, *y = b;
	uint8_t kx[BLK_CID_MAX_BYTES], ky[BLK_CID_MAX_BYTES];
	size_t lx = blk_cid_to_bytes(&x->cid, kx);
	size_t ly = blk_cid_to_bytes(&y->cid, ky);
	int c = memcmp(kx, ky, lx < ly ? lx : ly);

	return c ? c : (int)lx - (int)ly;
}

static bool is_local(struct tstore *db, const struct block *b)
{
	uint64_t refs;
	uint32_t len;
	bool local = false;

	CHECK(blk_store_info(db->st, &b->cid, &refs, &len, &local) == 0);
	return local;
}

/* blk_store_evict_upto evicts in CID order until the goal is met; blocks
 * evicted already free nothing and are not counted. */
static void test_evict_upto(void)
{
	enum { N = 8 };
	struct tmp tmp;
	struct tstore *db;
	struct block b[N];
	struct blk_store_stats st;
	uint64_t freed, count, rest = 0;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	for (int i = 0; i < N; i++) {
		block_make(&b[i], (size_t)(i + 1) * 30 * KiB, 70 + i);
		CHECK(commit_ref(db, &b[i]) == 0);
	}
	qsort(b, N, sizeof(b[0]), cid_order);
	CHECK(blk_store_evict(db->st, &b[1].cid) == (int)b[1].len);

	CHECK(blk_store_evict_upto(db->st, 0, &freed, &count) == 0);
	CHECK(freed == 0 && count == 0 && is_local(db, &b[0]));

	/* b[0] does not reach the goal, b[1] is evicted already, b[2] does. */
	CHECK(blk_store_evict_upto(db->st, b[0].len + 1, &freed, &count) == 0);
	CHECK(freed == b[0].len + b[2].len && count == 2);
	CHECK(!is_local(db, &b[0]) && !is_local(db, &b[2]));
	for (int i = 3; i < N; i++) {
		CHECK(is_local(db, &b[i]));
		rest += b[i].len;
	}

	CHECK(blk_store_evict_upto(db->st, UINT64_MAX, &freed, &count) == 0);
	CHECK(freed == rest && count == N - 3);
	CHECK(blk_store_stats(db->st, &st) == 0 && st.blocks == N &&
	      st.remote_bytes == st.bytes);
	CHECK(blk_store_evict_upto(db->st, UINT64_MAX, &freed, &count) == 0);
	CHECK(freed == 0 && count == 0);
	/* The references stay; filling brings a block back. */
	CHECK(refs_of(db, &b[4]) == 1);
	CHECK(blk_store_fill(db->st, &b[4].cid, b[4].data, b[4].len) == 0);
	CHECK(block_cmp_stored(db, &b[4]) == 0);
	tclose(db);

	db = open_db(tmp.db, false, true, false);
	freed = count = 1;
	CHECK(blk_store_evict_upto(db->st, UINT64_MAX, &freed, &count) ==
	      -EROFS);
	CHECK(freed == 0 && count == 0);
	tclose(db);
	for (int i = 0; i < N; i++)
		block_free(&b[i]);
	tmp_remove(&tmp);
}

static void test_locking(void)
{
	struct topts o = {.extra_cfs = extra_cfs, .create = true};
	struct tmp tmp;
	struct tstore *db, *db2 = NULL;
	struct block b;
	struct blk_txn *t;
	char err[512] = "";

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	block_make(&b, CHILD_BLOCK_LEN, CHILD_BLOCK_SEED);
	t = blk_txn_new(db->st);
	blk_txn_ref(t, &b.cid, b.data, b.len);
	blk_txn_put(t, CF_META, "parent", 6, "hello", 5);
	CHECK(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);

	/* Same process: RocksDB's own lock table. */
	CHECK(topen(tmp.db, &o, &db2, err, sizeof(err)) == -EBUSY);
	CHECK(!db2 && strstr(err, "in use"));
	/* Another process: the file lock. */
	CHECK(run_child("rw", tmp.db) == 0);
	/* Read-only while this process holds it read-write: the child
	 * replays the WAL, and sees block bytes once they are synced
	 * (large ones skip the WAL; journal.c J1). */
	CHECK(blk_store_sync(db->st) == 0);
	CHECK(run_child("ro", tmp.db) == 0);

	block_free(&b);
	tclose(db);
	tmp_remove(&tmp);
}

static void test_verify(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block b;
	uint8_t key[BLK_CID_MAX_BYTES], *bad, buf[16];
	size_t klen;
	void *val = NULL;
	size_t vlen = 0;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, true);
	block_make(&b, 100 * KiB, 50);
	CHECK(commit_ref(db, &b) == 0);
	CHECK(block_cmp_stored(db, &b) == 0);
	CHECK(blk_store_read(db->st, &b.cid, 10, buf, sizeof(buf)) == 16);

	bad = malloc(b.len);
	REQUIRE(bad);
	memcpy(bad, b.data, b.len);
	bad[b.len / 2] ^= 0x01;
	klen = blk_cid_to_bytes(&b.cid, key);
	CHECK(blk_db_put(db->db, blk_db_cf_find(db->db, "blocks"), key, klen,
			 bad, b.len) == 0);
	CHECK(blk_store_get(db->st, &b.cid, &val, &vlen) == -EBADMSG);
	CHECK(blk_store_read(db->st, &b.cid, 10, buf, sizeof(buf)) == -EBADMSG);
	tclose(db);

	db = open_db(tmp.db, false, false, false);
	CHECK(blk_store_get(db->st, &b.cid, &val, &vlen) == 0);
	CHECK(vlen == b.len && val && !memcmp(val, bad, b.len));
	free(val);
	CHECK(blk_store_read(db->st, &b.cid, b.len / 2, buf, 1) == 1);
	CHECK(buf[0] == bad[b.len / 2]);
	tclose(db);

	free(bad);
	block_free(&b);
	tmp_remove(&tmp);
}

static void test_read_ranges(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block b[2];
	uint8_t *buf;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, true);
	block_make(&b[0], 1000, 60);	  /* inline */
	block_make(&b[1], 200 * KiB, 61); /* blob file */
	buf = malloc(256 * KiB);
	REQUIRE(buf);

	for (int i = 0; i < 2; i++) {
		size_t n = b[i].len;

		CHECK(commit_ref(db, &b[i]) == 0);
		CHECK(blk_store_read(db->st, &b[i].cid, 100, buf, 50) == 50);
		CHECK(!memcmp(buf, b[i].data + 100, 50));
		CHECK(blk_store_read(db->st, &b[i].cid, 0, buf, n) ==
		      (int64_t)n);
		CHECK(!memcmp(buf, b[i].data, n));
		CHECK(blk_store_read(db->st, &b[i].cid, n - 10, buf, 50) == 10);
		CHECK(!memcmp(buf, b[i].data + n - 10, 10));
		CHECK(blk_store_read(db->st, &b[i].cid, n, buf, 50) == 0);
		CHECK(blk_store_read(db->st, &b[i].cid, n + 5000, buf, 50) ==
		      0);
		CHECK(blk_store_read(db->st, &b[i].cid, 5, buf, 0) == 0);
	}
	/* The same after a flush, when reads come from SST and blob file. */
	tclose(db);
	db = open_db(tmp.db, false, false, true);
	CHECK(blk_store_compact(db->st, 0, NULL) == 0);
	CHECK(blk_store_read(db->st, &b[1].cid, 150 * KiB, buf, 100 * KiB) ==
	      50 * KiB);
	CHECK(!memcmp(buf, b[1].data + 150 * KiB, 50 * KiB));
	CHECK(blk_store_read(db->st, &b[0].cid, 999, buf, 100) == 1);
	CHECK(buf[0] == b[0].data[999]);

	free(buf);
	block_free(&b[0]);
	block_free(&b[1]);
	tclose(db);
	tmp_remove(&tmp);
}

/* Keys iterated, joined with '|'; "!" marks a failed status. */
static void iter_keys(struct tstore *db, const char *prefix, size_t plen,
		      const char *start, size_t slen, char *out, size_t cap)
{
	struct blk_iter *it =
	    blk_iter_new(db->db, CF_DIRENTS, prefix, plen, start, slen);
	size_t o = 0;

	REQUIRE(it);
	out[0] = 0;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, vlen;
		const char *k = blk_iter_key(it, &klen);
		const char *v = blk_iter_value(it, &vlen);

		/* every value equals its key */
		if (vlen != klen || memcmp(k, v, klen))
			o += (size_t)snprintf(out + o, cap - o, "?");
		for (size_t i = 0; i < klen && o + 5 < cap; i++) {
			uint8_t c = (uint8_t)k[i];

			if (c < 0x20 || c >= 0x80)
				o += (size_t)snprintf(out + o, cap - o,
						      "\\%02x", c);
			else
				out[o++] = (char)c, out[o] = 0;
		}
		if (o + 2 < cap)
			out[o++] = '|', out[o] = 0;
	}
	if (blk_iter_status(it) != 0)
		snprintf(out + o, cap - o, "!");
	blk_iter_free(it);
}

static void test_iter(void)
{
	static const char *const keys[] = {
	    "a",   "a/1",      "a/2",	   "a/3",	    "ab",
	    "b/1", "\xff\x01", "\xff\xff", "\xff\xff\x00x",
	};
	struct tmp tmp;
	struct tstore *db;
	struct blk_txn *t;
	struct blk_iter *it;
	char out[512];
	int n;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	t = blk_txn_new(db->st);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t len = strlen(keys[i]);

		if (i == 8)
			len = 4; /* embedded NUL */
		blk_txn_put(t, CF_DIRENTS, keys[i], len, keys[i], len);
	}
	blk_txn_put(t, CF_META, "a/0", 3, "other", 5);
	CHECK(blk_txn_commit(t, false) == 0);
	blk_txn_free(t);

	iter_keys(db, "a/", 2, NULL, 0, out, sizeof(out));
	CHECK(!strcmp(out, "a/1|a/2|a/3|"));
	iter_keys(db, "a/", 2, "a/2", 3, out, sizeof(out));
	CHECK(!strcmp(out, "a/2|a/3|"));
	iter_keys(db, "a/", 2, "a/10", 4, out, sizeof(out));
	CHECK(!strcmp(out, "a/2|a/3|"));
	iter_keys(db, "a/", 2, "0", 1, out, sizeof(out));
	CHECK(!strcmp(out, "a/1|a/2|a/3|"));
	iter_keys(db, "a/", 2, "b", 1, out, sizeof(out));
	CHECK(!strcmp(out, ""));
	iter_keys(db, "a", 1, NULL, 0, out, sizeof(out));
	CHECK(!strcmp(out, "a|a/1|a/2|a/3|ab|"));
	iter_keys(db, "c", 1, NULL, 0, out, sizeof(out));
	CHECK(!strcmp(out, ""));
	iter_keys(db, "\xff", 1, NULL, 0, out, sizeof(out));
	CHECK(!strcmp(out, "\\ff\\01|\\ff\\ff|\\ff\\ff\\00x|"));
	iter_keys(db, "\xff\xff", 2, NULL, 0, out, sizeof(out));
	CHECK(!strcmp(out, "\\ff\\ff|\\ff\\ff\\00x|"));
	iter_keys(db, NULL, 0, "b", 1, out, sizeof(out));
	CHECK(!strcmp(out, "b/1|\\ff\\01|\\ff\\ff|\\ff\\ff\\00x|"));
	iter_keys(db, NULL, 0, NULL, 0, out, sizeof(out));
	n = 0;
	for (char *p = out; *p; p++)
		n += *p == '|';
	CHECK(n == 9);

	/* A snapshot: later writes are not seen. */
	it = blk_iter_new(db->db, CF_DIRENTS, "a/", 2, NULL, 0);
	REQUIRE(it);
	CHECK(blk_db_put(db->db, CF_DIRENTS, "a/4", 3, "a/4", 3) == 0);
	CHECK(blk_db_put(db->db, CF_DIRENTS, "a/0", 3, "a/0", 3) == 0);
	n = 0;
	for (; blk_iter_valid(it); blk_iter_next(it))
		n++;
	CHECK(n == 3 && blk_iter_status(it) == 0);
	blk_iter_free(it);
	iter_keys(db, "a/", 2, NULL, 0, out, sizeof(out));
	CHECK(!strcmp(out, "a/0|a/1|a/2|a/3|a/4|"));
	CHECK(blk_iter_new(db->db, 15, NULL, 0, NULL, 0) == NULL);

	tclose(db);

	/* Read-only: a caller column family that does not exist yet reads
	 * as empty. */
	{
		static const char *const cfs[] = {"inodes", "dirents", "meta",
						  "newcf", NULL};
		struct topts o = {.extra_cfs = cfs, .read_only = true};
		char err[256];
		void *val;
		size_t vlen;

		db = NULL;
		CHECK(topen(tmp.db, &o, &db, err, sizeof(err)) == 0);
		if (db) {
			it = blk_iter_new(db->db, 3, NULL, 0, NULL, 0);
			CHECK(it && !blk_iter_valid(it) &&
			      blk_iter_status(it) == 0);
			blk_iter_free(it);
			CHECK(blk_db_get(db->db, 3, "k", 1, &val, &vlen) ==
			      -ENOENT);
			iter_keys(db, "a/", 2, NULL, 0, out, sizeof(out));
			CHECK(!strcmp(out, "a/0|a/1|a/2|a/3|a/4|"));
			tclose(db);
		}
	}
	tmp_remove(&tmp);
}

#define THREADS 4
#define THREAD_TXNS 2000
#define SHARED_BLOCKS 64

struct thread_arg {
	struct tstore *db;
	struct block *blocks;
	uint64_t seed;
	int64_t counts[SHARED_BLOCKS]; /* this thread's references */
	int errors;
};

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545f4914f6cdd1dull;
}

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	uint64_t x = a->seed;

	for (int i = 0; i < THREAD_TXNS; i++) {
		struct blk_txn *t = blk_txn_new(a->db->st);
		int64_t delta[SHARED_BLOCKS] = {0};
		int ops = 1 + (int)(rnd(&x) % 4);

		for (int j = 0; j < ops; j++) {
			unsigned k = (unsigned)(rnd(&x) % SHARED_BLOCKS);
			const struct block *b = &a->blocks[k];

			/* Unref only what this thread holds, so the total
			 * never goes below zero whatever the interleaving. */
			if (a->counts[k] + delta[k] > 0 && rnd(&x) % 2) {
				blk_txn_unref(t, &b->cid);
				delta[k]--;
			} else {
				blk_txn_ref(t, &b->cid, b->data, b->len);
				delta[k]++;
			}
		}
		if (blk_txn_commit(t, false) == 0) {
			for (int k = 0; k < SHARED_BLOCKS; k++)
				a->counts[k] += delta[k];
		} else {
			a->errors++;
		}
		blk_txn_free(t);
	}
	return NULL;
}

static void test_threads(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct block blocks[SHARED_BLOCKS];
	struct thread_arg args[THREADS];
	pthread_t th[THREADS];
	struct blk_store_stats st, want = {0};
	int errors = 0, exact = 0;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	for (int k = 0; k < SHARED_BLOCKS; k++)
		block_make(&blocks[k], 100 + (size_t)k * 997, 70 + k);
	for (int i = 0; i < THREADS; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].db = db;
		args[i].blocks = blocks;
		args[i].seed = 1000 + i;
		REQUIRE(pthread_create(&th[i], NULL, thread_main, &args[i]) ==
			0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		errors += args[i].errors;
	}
	CHECK(errors == 0);

	for (int k = 0; k < SHARED_BLOCKS; k++) {
		int64_t n = 0;

		for (int i = 0; i < THREADS; i++)
			n += args[i].counts[k];
		exact += refs_of(db, &blocks[k]) == (uint64_t)n &&
			 blk_store_has(db->st, &blocks[k].cid) == (n > 0) &&
			 (n == 0 || block_cmp_stored(db, &blocks[k]) == 0);
		if (n > 0) {
			want.blocks++;
			want.bytes += blocks[k].len;
			want.ref_bytes += (uint64_t)n * blocks[k].len;
		}
	}
	CHECK(exact == SHARED_BLOCKS);
	blk_store_stats(db->st, &st);
	CHECK(st.blocks == want.blocks && st.bytes == want.bytes &&
	      st.ref_bytes == want.ref_bytes);
	printf("  %d threads x %d txns: %llu blocks, %llu bytes referenced\n",
	       THREADS, THREAD_TXNS, (unsigned long long)st.blocks,
	       (unsigned long long)(st.ref_bytes));

	/* The persisted stats record agrees after a reopen. */
	tclose(db);
	db = open_db(tmp.db, false, false, false);
	blk_store_stats(db->st, &st);
	CHECK(!memcmp(&st, &want, sizeof(st)));

	for (int k = 0; k < SHARED_BLOCKS; k++)
		block_free(&blocks[k]);
	tclose(db);
	tmp_remove(&tmp);
}

/* Unique 256 KiB blocks as windows 8 bytes apart into one random buffer. */
struct stream {
	uint8_t *buf;
	size_t n;
	size_t len;
	struct blk_cid *cids;
};

static void stream_make(struct stream *s, size_t n, size_t len, uint64_t seed)
{
	s->n = n;
	s->len = len;
	s->buf = malloc(len + 8 * n);
	s->cids = malloc(n * sizeof(*s->cids));
	REQUIRE(s->buf && s->cids);
	fill(s->buf, len + 8 * n, seed);
	for (size_t i = 0; i < n; i++)
		blk_cid_compute(&s->cids[i], BLK_CODEC_RAW, s->buf + 8 * i,
				len);
}

static void stream_free(struct stream *s)
{
	free(s->buf);
	free(s->cids);
}

/* Reference (or drop) blocks [0, n) in transactions of @per blocks. */
static int stream_commit(struct tstore *db, struct stream *s, size_t per,
			 bool unref)
{
	for (size_t i = 0; i < s->n; i += per) {
		struct blk_txn *t = blk_txn_new(db->st);
		int rc;

		REQUIRE(t);
		for (size_t j = i; j < i + per && j < s->n; j++) {
			if (unref)
				rc = blk_txn_unref(t, &s->cids[j]);
			else
				rc = blk_txn_ref(t, &s->cids[j], s->buf + 8 * j,
						 s->len);
			REQUIRE(rc == 0);
		}
		rc = blk_txn_commit(t, false);
		blk_txn_free(t);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void test_disk_usage(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct stream s;
	struct blk_store_stats st;
	uint64_t full = 0, empty = 0;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	stream_make(&s, 800, 256 * KiB, 80); /* 200 MiB */
	CHECK(stream_commit(db, &s, 8, false) == 0);
	CHECK(blk_store_sync(db->st) == 0);
	CHECK(blk_db_disk_usage(db->db, &full) == 0);
	CHECK(full >= 200ull * MiB);

	CHECK(stream_commit(db, &s, 8, true) == 0);
	blk_store_stats(db->st, &st);
	CHECK(st.blocks == 0 && st.bytes == 0 && st.ref_bytes == 0);
	CHECK(blk_store_compact(db->st, 0, NULL) == 0);
	/* Obsolete files are deleted by RocksDB right after the compaction;
	 * give it a moment rather than race it. */
	for (int i = 0; i < 50; i++) {
		CHECK(blk_db_disk_usage(db->db, &empty) == 0);
		if (empty < 16ull * MiB)
			break;
		usleep(100 * 1000);
	}
	printf("  disk usage: %.1f MiB with 200 MiB of blocks, %.1f MiB after "
	       "dropping them and compacting\n",
	       (double)full / MiB, (double)empty / MiB);
	CHECK(empty < full / 8);
	CHECK(blk_store_has(db->st, &s.cids[0]) == 0);

	stream_free(&s);
	tclose(db);
	tmp_remove(&tmp);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* STORE_BENCH=1: ingest through blk_txn_ref + commit; reports, never
 * asserts on timing. CIDs are computed beforehand, so this is the store
 * alone (RocksDB, WAL, memtables, blob files), not the hashing. */
static void bench(void)
{
	static const size_t per_txn[] = {1, 16};
	const size_t n = 4096, len = 256 * KiB; /* 1 GiB */

	for (size_t r = 0; r < sizeof(per_txn) / sizeof(per_txn[0]); r++) {
		struct tmp tmp;
		struct tstore *db;
		struct stream s;
		double t0, t1, t2;
		uint64_t du = 0;

		tmp_make(&tmp);
		stream_make(&s, n, len, 90 + r);
		db = open_db(tmp.db, true, false, false);
		t0 = now();
		CHECK(stream_commit(db, &s, per_txn[r], false) == 0);
		t1 = now();
		CHECK(blk_store_sync(db->st) == 0);
		t2 = now();
		blk_db_disk_usage(db->db, &du);
		printf("  bench: %zu x 256 KiB, %zu per txn: %.0f MB/s "
		       "(%.2f s; + WAL sync %.3f s; %.0f MiB on disk)\n",
		       n, per_txn[r], (double)(n * len) / 1e6 / (t1 - t0),
		       t1 - t0, t2 - t1, (double)du / MiB);
		tclose(db);
		stream_free(&s);
		tmp_remove(&tmp);
	}
}

/* A read view sees every column family as of its creation: later puts,
 * overwrites and deletes stay invisible to its gets, iterators and walks,
 * while plain reads see them. */
static int count_rec(void *arg, const uint8_t *k, size_t kl, const uint8_t *v,
		     size_t vl)
{
	(*(int *)arg)++;
	return 0;
}

static void test_snapshot(void)
{
	struct tmp tmp;
	struct tstore *db;
	struct blk_snap *sn;
	struct blk_iter *it;
	char buf[16];
	int n = 0;

	tmp_make(&tmp);
	db = open_db(tmp.db, true, false, false);
	CHECK(blk_db_put(db->db, CF_DIRENTS, "k1", 2, "old", 3) == 0);
	CHECK(blk_db_put(db->db, CF_META, "m", 1, "x", 1) == 0);
	sn = blk_snap_new(db->db);
	REQUIRE(sn);
	CHECK(blk_db_put(db->db, CF_DIRENTS, "k1", 2, "new", 3) == 0);
	CHECK(blk_db_put(db->db, CF_DIRENTS, "k2", 2, "add", 3) == 0);
	CHECK(blk_db_delete(db->db, CF_META, "m", 1) == 0);

	CHECK(blk_snap_get_into(sn, CF_DIRENTS, "k1", 2, buf, sizeof(buf)) ==
		  3 &&
	      memcmp(buf, "old", 3) == 0);
	CHECK(blk_snap_get_into(sn, CF_DIRENTS, "k2", 2, buf, sizeof(buf)) ==
	      -ENOENT);
	CHECK(blk_snap_get_into(sn, CF_META, "m", 1, buf, sizeof(buf)) == 1);
	CHECK(blk_db_get_into(db->db, CF_DIRENTS, "k1", 2, buf, sizeof(buf)) ==
		  3 &&
	      memcmp(buf, "new", 3) == 0);
	CHECK(blk_db_get_into(db->db, CF_META, "m", 1, buf, 0) == -ENOENT);

	it = blk_snap_iter_new(sn, CF_DIRENTS, "k", 1, NULL, 0);
	REQUIRE(it);
	for (; blk_iter_valid(it); blk_iter_next(it))
		n++;
	CHECK(n == 1 && blk_iter_status(it) == 0);
	blk_iter_free(it);
	n = 0;
	CHECK(blk_snap_walk(sn, CF_DIRENTS,
			    &(struct blk_walk){.fn = count_rec, .arg = &n}) ==
		  0 &&
	      n == 1);
	n = 0;
	CHECK(blk_db_walk(db->db, CF_DIRENTS,
			  &(struct blk_walk){.fn = count_rec, .arg = &n}) ==
		  0 &&
	      n == 2);
	blk_snap_free(sn);
	tclose(db);
	tmp_remove(&tmp);
}

int main(int argc, char **argv)
{
	const char *b = getenv("STORE_BENCH");

	if (argc == 4 && !strcmp(argv[1], "--child"))
		return child_main(argv[2], argv[3]);

	setvbuf(stdout, NULL, _IOLBF, 0);
	test_roundtrip();
	test_refcounts();
	test_dag_bytes();
	test_dedup();
	test_atomicity();
	test_reopen();
	test_locking();
	test_crash();
	test_crash_replace();
	test_evict();
	test_evict_pending();
	test_evict_pending_many();
	test_evict_upto();
	test_verify();
	test_read_ranges();
	test_iter();
	test_snapshot();
	test_threads();
	test_disk_usage();
	if (b && *b && strcmp(b, "0"))
		bench();

	printf("store: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
