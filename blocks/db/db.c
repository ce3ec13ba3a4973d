/* The record store: one RocksDB opened with options tuned for large
 * content-addressed values, the registry of its column families, plain
 * records, syncing, compaction and the space it takes. */

/*
 * Column families. "default" (unused, RocksDB insists on it), then the
 * registry's in order (those flagged BLK_CF_IF_PRESENT only when found on
 * disk); db->cf[] is indexed by handle, the registry's index. Column
 * families found on disk that nobody registered are opened too (RocksDB
 * refuses a read-write open otherwise) and kept in db->all only. A
 * read-only open cannot create anything: a registered family that does
 * not exist yet gets a NULL handle and reads as empty.
 */

#include "blocks/db/db-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define KiB (1024ull)
#define MiB (1024ull * KiB)

#define DEFAULT_CACHE_BYTES (64 * MiB)

/* Options, chosen for this workload; see db_options() and cf_options(). */
#define LARGE_WRITE_BUFFER (32 * MiB)
#define LARGE_MAX_WRITE_BUFFERS 2
#define SMALL_WRITE_BUFFER (32 * MiB)
#define SMALL_MAX_WRITE_BUFFERS 3
#define DB_WRITE_BUFFER (64 * MiB)
#define MAX_TOTAL_WAL (512 * MiB)
#define MIN_BLOB_SIZE (4 * KiB)
#define BLOB_FILE_MIN (1 * MiB)
#define BLOB_FILE_MAX (64 * MiB)
#define BLOB_FILE_SHIFT 7 /* 1/128 of the file system; see blk_db_compact */
#define BLOB_READAHEAD (2 * MiB)
#define BLOOM_BITS_PER_KEY 10
#define BACKGROUND_JOBS 2
#define BYTES_PER_SYNC (1 * MiB)

/* RocksDB's BottommostLevelCompaction::kForceOptimized. */
#define BOTTOMMOST_FORCE_OPTIMIZED 3

/*
 * RocksDB's WALRecoveryMode: what an open does with a damaged record in
 * the write-ahead log (bit rot, a bad sector). After a clean stop the log
 * holds nothing (blk_db_close flushes), so this is about the log a crash
 * left behind.
 *
 * - kTolerateCorruptedTailRecords and kAbsoluteConsistency fail the open:
 *   a node with one bad record would serve none of what it holds, and a
 *   torn write in the unsynced end of the log after a power cut could
 *   keep a mount from ever opening again.
 * - kSkipAnyCorruptedRecords drops only the bad records and keeps the
 *   later ones. For a mount's metadata that is a state the database never
 *   had (its batches build on each other: a create, writes to that inode,
 *   a rename), and RocksDB 7.8 cannot even do it for our records: its log
 *   reader (db/log_reader.cc, ReadRecord) does not reset the record
 *   checksum it hands to the replay when it abandons a record spanning
 *   log pages, so the next such record fails "Write batch content
 *   corrupted" and the open fails after all (any large value is such a
 *   record; still so in RocksDB's main branch).
 * - kPointInTimeRecovery (RocksDB's default, chosen): replay up to the
 *   first bad record, then stop. What remains is a state the database
 *   really had, consistent for metadata and fragment counts alike. Its
 *   cost is every record after the damaged one, which RocksDB drops
 *   silently; so blk_db_open reads the log first (walscan.c) and
 *   blk_db_wal_damage says how many records the replay dropped, for the
 *   opener to report (the fragment store counts them as lost fragments).
 */
#define WAL_POINT_IN_TIME 2

enum cf_kind {
	CF_KIND_LARGE, /* BLK_CF_LARGE */
	CF_KIND_RAW,   /* BLK_CF_RAW */
	CF_KIND_SMALL, /* the others and "default" */
	CF_KINDS,
};

/* The errno of a RocksDB error message, which it frees: -ENOSPC when the
 * file system is full (RocksDB's IOError NoSpace), else -EIO. */
int blk_rdb_errno(char *rerr)
{
	int rc = strstr(rerr, "No space left on device") ? -ENOSPC : -EIO;

	rocksdb_free(rerr);
	return rc;
}

void blk_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Map a RocksDB open error message to the errno db.h promises. RocksDB
 * reports errno only as text, so this matches the strerror() strings its
 * POSIX environment embeds and its own wording for the lock it already
 * holds in this process. */
static int open_errno(const char *msg)
{
	if (strstr(msg, "lock") &&
	    (strstr(msg, "Resource temporarily unavailable") ||
	     strstr(msg, "lock hold by current process") ||
	     strstr(msg, "already held")))
		return -EBUSY;
	if (strstr(msg, "Permission denied"))
		return -EACCES;
	if (strstr(msg, "No such file or directory") ||
	    strstr(msg, "does not exist"))
		return -ENOENT;
	return -EIO;
}

static void open_message(int rc, const char *path, const char *msg, char *err,
			 size_t errlen)
{
	switch (rc) {
	case -EBUSY:
		blk_set_err(
		    err, errlen,
		    "node database %s is in use by another process (%s)", path,
		    msg);
		break;
	case -ENOENT:
		blk_set_err(err, errlen, "no node database in %s (%s)", path,
			    msg);
		break;
	case -EACCES:
		blk_set_err(err, errlen,
			    "permission denied opening node database %s (%s)",
			    path, msg);
		break;
	default:
		blk_set_err(err, errlen, "cannot open node database %s: %s",
			    path, msg);
		break;
	}
}

/* Table options shared by every column family: the one LRU cache and a
 * full bloom filter, which makes point lookups by random key (and a lookup
 * of a key not stored yet, the common case on ingest) cost no disk read
 * for keys that are absent. The filter is owned by the table options,
 * whose contents the table factory copies. */
static void set_table_options(rocksdb_options_t *o, rocksdb_cache_t *cache)
{
	rocksdb_block_based_table_options_t *t;

	t = rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_block_cache(t, cache);
	rocksdb_block_based_options_set_filter_policy(
	    t, rocksdb_filterpolicy_create_bloom_full(BLOOM_BITS_PER_KEY));
	rocksdb_block_based_options_set_format_version(t, 5);
	rocksdb_options_set_block_based_table_factory(o, t);
	rocksdb_block_based_options_destroy(t);
}

/*
 * The options of large-value families (BLK_CF_LARGE).
 *
 * Values are mostly 64 KiB - 1 MiB chunks of file data. Blob files keep
 * them out of the LSM tree, so compaction moves only keys and blob
 * references instead of rewriting the data at every level. Values below
 * 4 KiB stay inline in the SSTs, where they share table pages and the
 * cache.
 *
 * No compression anywhere in these families: file data is often already
 * compressed, small values are mostly hashes, and on two cores the CPU is
 * better spent on hashing and erasure coding.
 *
 * Blob GC is off in the background: keys are random hashes, so every
 * routine compaction touches keys in every blob file and GC would rewrite
 * live file data over and over. Space of deleted values comes back
 * through blk_db_compact, which its owner runs after large deletions. Blob
 * files are small, 1/128 of the file system (1 to 64 MiB), so that it can
 * free space with room for a few of them.
 *
 * Memtables of 32 MiB, at most 2 (one filling, one flushing), and 64 MiB
 * for all column families together: ingest still becomes large sequential
 * blob writes, and the daemon's memory stays bounded (what memtables hold
 * is resident).
 */
static void set_large_options(rocksdb_options_t *o, uint64_t blob_size)
{
	rocksdb_options_set_enable_blob_files(o, 1);
	rocksdb_options_set_min_blob_size(o, MIN_BLOB_SIZE);
	rocksdb_options_set_blob_file_size(o, blob_size);
	rocksdb_options_set_blob_compression_type(o, rocksdb_no_compression);
	rocksdb_options_set_enable_blob_gc(o, 0);
	rocksdb_options_set_blob_gc_age_cutoff(o, 1.0);
	rocksdb_options_set_blob_compaction_readahead_size(o, BLOB_READAHEAD);
	rocksdb_options_set_compression(o, rocksdb_no_compression);
	rocksdb_options_set_write_buffer_size(o, LARGE_WRITE_BUFFER);
	rocksdb_options_set_max_write_buffer_number(o, LARGE_MAX_WRITE_BUFFERS);
}

/* Per column family options, by what the family holds. */
static void set_cf_options(rocksdb_options_t *o, enum cf_kind kind,
			   rocksdb_cache_t *cache, uint64_t blob_size)
{
	set_table_options(o, cache);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);

	switch (kind) {
	case CF_KIND_LARGE:
		set_large_options(o, blob_size);
		break;
	case CF_KIND_RAW:
		/* Hashed keys and counters do not compress. */
		rocksdb_options_set_compression(o, rocksdb_no_compression);
		rocksdb_options_set_write_buffer_size(o, SMALL_WRITE_BUFFER);
		rocksdb_options_set_max_write_buffer_number(
		    o, SMALL_MAX_WRITE_BUFFERS);
		break;
	case CF_KIND_SMALL:
	default:
		/* Inode, directory and extent records are small and repetitive:
		 * LZ4 is nearly free in CPU (Debian's librocksdb links liblz4).
		 */
		rocksdb_options_set_compression(o, rocksdb_lz4_compression);
		rocksdb_options_set_write_buffer_size(o, SMALL_WRITE_BUFFER);
		rocksdb_options_set_max_write_buffer_number(
		    o, SMALL_MAX_WRITE_BUFFERS);
		break;
	}
}

/* The size of the file system holding @path, 0 if unknown. @path may not
 * exist yet: then its parent is measured. */
static uint64_t fs_size(const char *path)
{
	struct statvfs vfs;
	char parent[PATH_MAX];
	int vrc = statvfs(path, &vfs);

	if (vrc && snprintf(parent, sizeof(parent), "%s", path) <
		       (int)sizeof(parent)) {
		char *slash = strrchr(parent, '/'); /* not created yet */
		if (slash && slash != parent) {
			*slash = 0;
			vrc = statvfs(parent, &vfs);
		}
	}
	return vrc ? 0 : (uint64_t)vfs.f_blocks * vfs.f_frsize;
}

/* The WAL's total size limit: RocksDB preallocates each WAL file
 * (fallocate) at up to this size, so on a small file system it is kept to
 * 1/16 of it, and never below 4 MiB. */
static uint64_t wal_limit(const char *path)
{
	uint64_t wal_max = MAX_TOTAL_WAL, total = fs_size(path);

	if (total && total / 16 < wal_max)
		wal_max = total / 16;
	if (wal_max < 4 * MiB)
		wal_max = 4 * MiB;
	return wal_max;
}

/* The blob file size for a database in @path: 1/128 of its file system,
 * within [BLOB_FILE_MIN, BLOB_FILE_MAX] (blk_db_compact says why). */
static uint64_t blob_file_size(const char *path)
{
	uint64_t size = fs_size(path) >> BLOB_FILE_SHIFT;

	return size < BLOB_FILE_MIN   ? BLOB_FILE_MIN
	       : size > BLOB_FILE_MAX ? BLOB_FILE_MAX
				      : size;
}

/* @dbo with fallocate off, or @dbo itself if that fails (it cannot with
 * a valid string). RocksDB preallocates WAL, SST and blob files by about
 * 1.1 times the size it expects (up to 35 MiB for a WAL, 70 MiB for an
 * SST), which takes the reserve of a small file system in one step, ahead
 * of the bytes that need it: a flush of a few KiB then met a full disk
 * (and stopped the database until 32 MiB were free). Without it a file
 * takes the room it holds, which is what the room accounting assumes. The
 * C API has no setter for allow_fallocate; the options string has. */
static rocksdb_options_t *no_fallocate(rocksdb_options_t *dbo)
{
	rocksdb_options_t *n = rocksdb_options_create();
	char *rerr = NULL;

	rocksdb_get_options_from_string(dbo, "allow_fallocate=false", n, &rerr);
	if (rerr) {
		rocksdb_free(rerr);
		rocksdb_options_destroy(n);
		return dbo;
	}
	rocksdb_options_destroy(dbo);
	return n;
}

/* Database-wide options (also those of the "default" column family). */
static rocksdb_options_t *db_options(const struct blk_db_options *o,
				     rocksdb_cache_t *cache, const char *path)
{
	rocksdb_options_t *dbo = rocksdb_options_create();

	set_cf_options(dbo, CF_KIND_SMALL, cache, 0);
	rocksdb_options_set_create_if_missing(dbo, o->create && !o->read_only);
	rocksdb_options_set_create_missing_column_families(dbo, 1);
	/* Two cores: one flush and one compaction at a time. */
	rocksdb_options_set_max_background_jobs(dbo, BACKGROUND_JOBS);
	/* Write back data and WAL files in 1 MiB steps instead of leaving
	 * hundreds of MiB dirty for one long stall at fsync time. */
	rocksdb_options_set_bytes_per_sync(dbo, BYTES_PER_SYNC);
	rocksdb_options_set_wal_bytes_per_sync(dbo, BYTES_PER_SYNC);
	/* Bound all memtables together, and the WAL: the WAL also holds
	 * large values until they are flushed to blob files, and small column
	 * families that rarely fill a memtable would otherwise pin old WAL
	 * files forever. Past the limit RocksDB flushes them. */
	rocksdb_options_set_db_write_buffer_size(dbo, DB_WRITE_BUFFER);
	rocksdb_options_set_max_total_wal_size(dbo, wal_limit(path));
	/* The info LOG: enough history to debug, bounded. */
	rocksdb_options_set_max_log_file_size(dbo, 16 * MiB);
	rocksdb_options_set_keep_log_file_num(dbo, 4);
	rocksdb_options_set_wal_recovery_mode(dbo, WAL_POINT_IN_TIME);
	return no_fallocate(dbo);
}

static bool name_in(const char *name, char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i], name))
			return true;
	return false;
}

int blk_cf_register(struct blk_cf_registry *r, const char *name, unsigned flags)
{
	int rc = 0;

	if (!name || !*name || !strcmp(name, "default"))
		rc = -EINVAL;
	for (unsigned i = 0; rc == 0 && i < r->n; i++)
		if (!strcmp(r->cf[i].name, name))
			rc = -EINVAL;
	if (rc == 0 && r->n >= BLK_DB_MAX_CFS)
		rc = -E2BIG;
	if (rc) {
		if (!r->err)
			r->err = rc;
		return rc;
	}
	r->cf[r->n].name = name;
	r->cf[r->n].flags = flags;
	return (int)r->n++;
}

static bool is_registered(const struct blk_db *db, const char *name)
{
	for (unsigned i = 0; i < db->ncf; i++)
		if (!strcmp(db->def[i].name, name))
			return true;
	return false;
}

static enum cf_kind cf_kind_of(unsigned flags)
{
	if (flags & BLK_CF_LARGE)
		return CF_KIND_LARGE;
	if (flags & BLK_CF_RAW)
		return CF_KIND_RAW;
	return CF_KIND_SMALL;
}

/* What blk_db_open hands RocksDB: the options, and the column families to
 * open with their options and BLK_CF_* slots (-1: none). */
struct open_plan {
	rocksdb_options_t *dbo;
	rocksdb_options_t *kind[CF_KINDS];
	char **existing; /* on disk, as RocksDB lists them */
	size_t nexisting;
	const char **names;
	const rocksdb_options_t **opts;
	int *slot;
	size_t n;
};

static void plan_free(struct open_plan *p)
{
	if (p->existing)
		rocksdb_list_column_families_destroy(p->existing, p->nexisting);
	free(p->names);
	free(p->opts);
	free(p->slot);
	for (int k = 0; k < CF_KINDS; k++)
		if (p->kind[k])
			rocksdb_options_destroy(p->kind[k]);
	if (p->dbo)
		rocksdb_options_destroy(p->dbo);
}

/* Build the options and list the column families on disk. No database yet
 * (or an unreadable one) is fine when creating: creation starts from
 * "default" alone and rocksdb_open reports any real error. 0, or an errno
 * of open_errno() with a message. */
static int plan_init(struct open_plan *p, const struct blk_db_options *o,
		     const struct blk_db *db, const char *path, char *err,
		     size_t errlen)
{
	char *rerr = NULL;
	int rc;

	p->dbo = db_options(o, db->cache, path);
	for (int k = 0; k < CF_KINDS; k++) {
		p->kind[k] = rocksdb_options_create();
		set_cf_options(p->kind[k], (enum cf_kind)k, db->cache,
			       db->blob_size);
	}
	p->existing =
	    rocksdb_list_column_families(p->dbo, path, &p->nexisting, &rerr);
	if (!rerr)
		return 0;
	if (!o->create || o->read_only) {
		rc = open_errno(rerr);
		open_message(rc, path, rerr, err, errlen);
		rocksdb_free(rerr);
		return rc;
	}
	rocksdb_free(rerr);
	/* even on error it returns a malloc'd (empty) array */
	if (p->existing)
		rocksdb_list_column_families_destroy(p->existing, p->nexisting);
	p->existing = NULL;
	p->nexisting = 0;
	return 0;
}

static void plan_add(struct open_plan *p, const char *name,
		     const rocksdb_options_t *opts, int slot)
{
	p->names[p->n] = name;
	p->opts[p->n] = opts;
	p->slot[p->n++] = slot;
}

/* Decide which column families to open: "default", the registered ones
 * (IF_PRESENT ones only when present; on a read-only open only those
 * present), then unknown ones on disk. 0 or -ENOMEM. */
static int plan_families(struct open_plan *p, const struct blk_db *db)
{
	size_t max = 1 + db->ncf + p->nexisting;

	p->names = calloc(max, sizeof(*p->names));
	p->opts = calloc(max, sizeof(*p->opts));
	p->slot = calloc(max, sizeof(*p->slot));
	if (!p->names || !p->opts || !p->slot)
		return -ENOMEM;
	plan_add(p, "default", p->dbo, -1);
	for (unsigned i = 0; i < db->ncf; i++) {
		const char *name = db->def[i].name;
		unsigned flags = db->def[i].flags;
		bool found = name_in(name, p->existing, p->nexisting);

		if ((flags & BLK_CF_IF_PRESENT) && !found)
			continue;
		if (db->read_only && !found)
			continue; /* reads as empty */
		plan_add(p, name, p->kind[cf_kind_of(flags)], (int)i);
	}
	for (size_t i = 0; i < p->nexisting; i++)
		if (strcmp(p->existing[i], "default") &&
		    !is_registered(db, p->existing[i]))
			plan_add(p, p->existing[i], p->kind[CF_KIND_SMALL], -1);
	return 0;
}

/* Open RocksDB with @p's column families and set db->all and db->cf[]. */
static int open_rdb(struct blk_db *db, const struct open_plan *p,
		    const char *path, char *err, size_t errlen)
{
	char *rerr = NULL;
	int rc;

	db->all = calloc(p->n, sizeof(*db->all));
	if (!db->all)
		return -ENOMEM;
	if (db->read_only)
		db->rdb = rocksdb_open_for_read_only_column_families(
		    p->dbo, path, (int)p->n, p->names, p->opts, db->all, 0,
		    &rerr);
	else
		db->rdb = rocksdb_open_column_families(
		    p->dbo, path, (int)p->n, p->names, p->opts, db->all, &rerr);
	if (rerr) {
		rc = open_errno(rerr);
		open_message(rc, path, rerr, err, errlen);
		rocksdb_free(rerr);
		db->rdb = NULL;
		return rc;
	}
	db->nall = p->n;
	for (size_t i = 0; i < p->n; i++)
		if (p->slot[i] >= 0)
			db->cf[p->slot[i]] = db->all[i];
	return 0;
}

static struct blk_db *db_new(const char *path, const struct blk_db_options *o)
{
	struct blk_db *db = calloc(1, sizeof(*db));

	if (!db)
		return NULL;
	db->path = strdup(path);
	if (!db->path) {
		free(db);
		return NULL;
	}
	db->read_only = o->read_only;
	db->blob_size = blob_file_size(path);
	if (o->cfs) {
		db->ncf = o->cfs->n;
		memcpy(db->def, o->cfs->cf, sizeof(db->def));
	}
	pthread_mutex_init(&db->compact_lock, NULL);
	db->cache = rocksdb_cache_create_lru(
	    o->cache_bytes ? o->cache_bytes : DEFAULT_CACHE_BYTES);
	db->ropts = rocksdb_readoptions_create();
	db->wopts = rocksdb_writeoptions_create();
	db->wopts_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(db->wopts_sync, 1);
	db->wopts_nowal = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(db->wopts_nowal, 1);
	return db;
}

int blk_db_open(const char *path, const struct blk_db_options *o,
		struct blk_db **out, char *err, size_t errlen)
{
	static const struct blk_db_options defaults = {0};
	struct open_plan plan = {0};
	struct blk_db *db;
	int rc;

	*out = NULL;
	if (!o)
		o = &defaults;
	if (o->cfs && o->cfs->err) {
		blk_set_err(err, errlen,
			    "bad column families for %s: a name reserved or "
			    "registered twice, or more than %d",
			    path, BLK_DB_MAX_CFS);
		return o->cfs->err;
	}
	db = db_new(path, o);
	if (!db) {
		rc = -ENOMEM;
		goto nomem;
	}
	rc = plan_init(&plan, o, db, path, err, errlen);
	if (rc == 0)
		rc = plan_families(&plan, db);
	/* Advisory: a log that cannot be read fails the open below. */
	if (rc == 0 && !o->read_only && wal_scan(path, &db->wal_damage) < 0)
		memset(&db->wal_damage, 0, sizeof(db->wal_damage));
	if (rc == 0)
		rc = open_rdb(db, &plan, path, err, errlen);
	if (rc == -ENOMEM)
		goto nomem;
	if (rc < 0)
		goto fail;
	plan_free(&plan);
	*out = db;
	return 0;

nomem:
	blk_set_err(err, errlen, "out of memory opening node database %s",
		    path);
fail:
	blk_db_close(db);
	plan_free(&plan);
	return rc;
}

void blk_db_close(struct blk_db *db)
{
	if (!db)
		return;
	/* RocksDB flushes memtables holding WAL-less writes at close, but
	 * only when nothing failed, and leaves what went through the WAL
	 * there: flush everything, so the WAL is empty after a clean stop. */
	if (db->rdb && !db->read_only && blk_db_sync(db) == 0)
		blk_db_flush(db);
	for (size_t i = 0; i < db->nall; i++)
		rocksdb_column_family_handle_destroy(db->all[i]);
	if (db->rdb)
		rocksdb_close(db->rdb);
	/* db_new created these */
	rocksdb_readoptions_destroy(db->ropts);
	rocksdb_writeoptions_destroy(db->wopts);
	rocksdb_writeoptions_destroy(db->wopts_sync);
	rocksdb_writeoptions_destroy(db->wopts_nowal);
	rocksdb_cache_destroy(db->cache);
	pthread_mutex_destroy(&db->compact_lock);
	free(db->all);
	free(db->path);
	free(db);
}

int blk_db_sync(struct blk_db *db)
{
	char *rerr = NULL;

	if (db->read_only)
		return 0;
	rocksdb_flush_wal(db->rdb, 1, &rerr);
	return rerr ? blk_rdb_errno(rerr) : 0;
}

int blk_db_cf_find(struct blk_db *db, const char *name)
{
	for (unsigned i = 0; i < db->ncf; i++)
		if (!strcmp(db->def[i].name, name))
			return (int)i;
	return -ENOENT;
}

bool blk_db_cf_open(struct blk_db *db, unsigned cf)
{
	return blk_db_cf(db, cf) != NULL;
}

bool blk_db_read_only(struct blk_db *db)
{
	return db->read_only;
}

void blk_db_wal_damage(struct blk_db *db, struct blk_wal_damage *out)
{
	*out = db->wal_damage;
}

/*
 * Compaction that gives space back without needing room in proportion to
 * the live data.
 *
 * A blob file goes once no SST refers to it and all its blobs are dead
 * (RocksDB deletes it itself). So the first pass compacts the families
 * asked for over their whole range with blob GC off: deleted keys are
 * dropped, and the blob files that held only deleted values go. That pass
 * writes only SSTs (keys and blob references, about 1/1000 of the data)
 * and gives back the space of files written and deleted together, the
 * common case.
 *
 * Garbage in blob files that still hold live values (files written side
 * by side, one of them deleted) needs the live blobs rewritten before the
 * file can go, and a compaction frees its inputs only once its outputs
 * are written: room for the live part first. Blob GC with age cutoff 1.0
 * (what this did before) rewrote every live blob in one job and so needed
 * room for all of the live data: on a disk that had filled up it failed
 * with ENOSPC and gave nothing back. So GC runs in passes, each with the
 * age cutoff that takes only as many of the oldest blob files as its
 * budget holds, counting each as the largest blob file: half of the
 * @reserve that writers leave free (the other half stays for metadata,
 * deletes and flushes), and a quarter of the free room beyond it, which
 * counts as pending in blk_db_space while the pass runs so that writers
 * leave it alone. The rewritten blobs go to new files, so the next pass
 * takes the next oldest, with the room the last one gave back. Passes
 * stop when the garbage is gone, after one round of the blob files, when
 * the room does not allow one file, or on an error.
 *
 * Blob files are 1/128 of the file system: the filesystem's reserve is
 * 1/32 (fs/space.c), so on a disk that filled up a pass of one file (it
 * may pass the size by one value) fits in half of it. The cost is more
 * files: 1 TiB of values in 16384 of 64 MiB, instead of the 256 MiB files
 * before (whose flushes wrote files of one 32 MiB memtable anyway).
 *
 * Errors: rocksdb_compact_range does not return one; a compaction that
 * failed in the background counts in "rocksdb.background-errors", which
 * is read before and after.
 */

/* An integer property of @cf (NULL: the database's), 0 when unknown. */
static uint64_t prop_int(struct blk_db *db, rocksdb_column_family_handle_t *cf,
			 const char *name)
{
	uint64_t v = 0;

	if (cf)
		rocksdb_property_int_cf(db->rdb, cf, name, &v);
	else
		rocksdb_property_int(db->rdb, name, &v);
	return v;
}

/* Bytes an unprivileged writer may still add to the database's file
 * system, 0 when statvfs fails. */
static uint64_t free_room(struct blk_db *db)
{
	struct statvfs vfs;

	if (statvfs(db->path, &vfs))
		return 0;
	return (uint64_t)vfs.f_bavail * vfs.f_frsize;
}

/* The size of the largest blob file: a bound on the live bytes of any
 * (a file may pass db->blob_size by one value). 0 if there is none or
 * the directory cannot be read. */
static uint64_t largest_blob_file(struct blk_db *db)
{
	struct dirent *de;
	uint64_t big = 0;
	DIR *d = opendir(db->path);

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct stat st;
		size_t len = strlen(de->d_name);

		if (len > 5 && !strcmp(de->d_name + len - 5, ".blob") &&
		    !fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) &&
		    (uint64_t)st.st_size > big)
			big = (uint64_t)st.st_size;
	}
	closedir(d);
	return big;
}

/* Set blob GC of @cf on (with age cutoff @cutoff) or off. */
static void set_gc(struct blk_db *db, rocksdb_column_family_handle_t *cf,
		   bool on, double cutoff, char **rerr)
{
	static const char *const keys[] = {
	    "enable_blob_garbage_collection",
	    "blob_garbage_collection_age_cutoff"};
	char cut[32];
	const char *vals[] = {on ? "true" : "false", cut};

	snprintf(cut, sizeof(cut), "%.6f", cutoff);
	rocksdb_set_options_cf(db->rdb, cf, 2, keys, vals, rerr);
}

/* Compact the @n families @cfs over their whole range, forcing the
 * bottommost level too. */
static void compact_all(struct blk_db *db, const unsigned *cfs, size_t n)
{
	rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();

	rocksdb_compactoptions_set_bottommost_level_compaction(
	    co, BOTTOMMOST_FORCE_OPTIMIZED);
	for (size_t i = 0; i < n; i++)
		if (blk_db_cf(db, cfs[i]))
			rocksdb_compact_range_cf_opt(db->rdb,
						     blk_db_cf(db, cfs[i]), co,
						     NULL, 0, NULL, 0);
	rocksdb_compactoptions_destroy(co);
}

uint64_t blk_db_background_errors(struct blk_db *db)
{
	return prop_int(db, NULL, "rocksdb.background-errors");
}

/* The errno of a background error that happened since the count was
 * @before: -ENOSPC when the file system is short of one blob file's room
 * (RocksDB ran into it), else -EIO. 0 if none. */
static int bg_error(struct blk_db *db, uint64_t before)
{
	if (prop_int(db, NULL, "rocksdb.background-errors") == before)
		return 0;
	return free_room(db) < 2 * db->blob_size ? -ENOSPC : -EIO;
}

/* The GC passes (see above) over the blob files of family @cf; @errs is
 * the background error count before the first pass. 0 or the errno of
 * bg_error or an option change. */
static int gc_passes(struct blk_db *db, unsigned cf, uint64_t reserve,
		     uint64_t errs, struct blk_db_compact_stats *cs)
{
	rocksdb_column_family_handle_t *b = db->cf[cf];
	uint64_t round = prop_int(db, b, "rocksdb.num-blob-files");
	uint64_t done = 0;
	char *rerr = NULL;
	int rc = 0;

	while (done < round && rc == 0) {
		uint64_t garbage =
		    prop_int(db, b, "rocksdb.live-blob-file-garbage-size");
		uint64_t files = prop_int(db, b, "rocksdb.num-blob-files");
		struct blk_db_space sp = {0};
		uint64_t big = largest_blob_file(db), n = 0;

		/* Memtables' next flush needs room too. */
		(void)blk_db_space(db, &sp);
		uint64_t room =
		    sp.avail > sp.pending ? sp.avail - sp.pending : 0;
		uint64_t in_res = (room < reserve ? room : reserve) / 2;
		uint64_t beyond = room > reserve ? room - reserve : 0;
		uint64_t budget = in_res + beyond / 4;

		if (big && big <= budget)
			n = budget / big;
		if (garbage < db->blob_size / 2 || !files || !n)
			break;
		if (n > files)
			n = files;
		atomic_store(&db->compact_hold,
			     n * big > in_res ? n * big - in_res : 0);
		/* RocksDB takes the oldest floor(cutoff * files) files. */
		set_gc(db, b, true,
		       n == files ? 1.0 : ((double)n + 0.5) / files, &rerr);
		if (rerr)
			break;
		compact_all(db, &cf, 1);
		atomic_store(&db->compact_hold, 0);
		set_gc(db, b, false, 1.0, &rerr);
		rc = bg_error(db, errs);
		done += n;
		cs->gc_passes++;
	}
	if (rerr)
		rc = blk_rdb_errno(rerr);
	return rc;
}

int blk_db_flush(struct blk_db *db)
{
	rocksdb_flushoptions_t *fo;
	char *rerr = NULL;

	if (db->read_only)
		return -EROFS;
	fo = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(fo, 1);
	for (size_t i = 0; i < db->nall && !rerr; i++)
		rocksdb_flush_cf(db->rdb, fo, db->all[i], &rerr);
	rocksdb_flushoptions_destroy(fo);
	return rerr ? blk_rdb_errno(rerr) : 0;
}

int blk_db_compact(struct blk_db *db, const unsigned *cfs, size_t n,
		   uint64_t reserve, struct blk_db_compact_stats *cs)
{
	struct blk_db_compact_stats dummy;
	rocksdb_column_family_handle_t *b;
	uint64_t errs;
	int rc = 0;

	if (!cs)
		cs = &dummy;
	memset(cs, 0, sizeof(*cs));
	if (db->read_only)
		return -EROFS;
	if (!n || !(b = blk_db_cf(db, cfs[0])))
		return -EINVAL;
	pthread_mutex_lock(&db->compact_lock);
	errs = prop_int(db, NULL, "rocksdb.background-errors");

	/* So deletions reach the SSTs and old WAL files can go. */
	rc = blk_db_flush(db);
	if (rc)
		goto out;
	cs->blob_bytes_before = prop_int(db, b, "rocksdb.total-blob-file-size");
	compact_all(db, cfs, n);
	rc = bg_error(db, errs);
	if (rc == 0)
		rc = gc_passes(db, cfs[0], reserve, errs, cs);
	cs->blob_bytes_after = prop_int(db, b, "rocksdb.total-blob-file-size");
	cs->garbage_after =
	    prop_int(db, b, "rocksdb.live-blob-file-garbage-size");
out:
	pthread_mutex_unlock(&db->compact_lock);
	return rc;
}

int blk_db_space(struct blk_db *db, struct blk_db_space *sp)
{
	struct statvfs vfs;

	if (statvfs(db->path, &vfs))
		return -errno;
	sp->total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	sp->avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	/* A GC pass's output, not written yet (blk_db_compact). */
	sp->pending = atomic_load(&db->compact_hold);
	for (size_t i = 0; i < db->nall; i++) {
		uint64_t v = 0;

		if (rocksdb_property_int_cf(db->rdb, db->all[i],
					    "rocksdb.cur-size-all-mem-tables",
					    &v) == 0)
			sp->pending += v;
	}
	return 0;
}

/* st_blocks, so sparse and preallocated files count as the file system
 * counts them. */
int blk_db_disk_usage(struct blk_db *db, uint64_t *bytes)
{
	struct dirent *de;
	uint64_t sum = 0;
	DIR *d;
	int rc = 0;

	d = opendir(db->path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct stat st;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW)) {
			if (errno == ENOENT)
				continue;
			rc = -errno;
			break;
		}
		if (S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_blocks * 512;
	}
	closedir(d);
	if (rc == 0)
		*bytes = sum;
	return rc;
}

rocksdb_column_family_handle_t *blk_db_cf(struct blk_db *db, unsigned cf)
{
	return cf < db->ncf ? db->cf[cf] : NULL;
}

/* Look @key up in @cf, with checksums verified. Returns 0 with *@ps set
 * (destroy it), -ENOENT (also for a column family a read-only open found
 * missing), -EINVAL for a column family index that was never opened, or
 * -EIO. */
int blk_db_pinned_ro(struct blk_db *db, const rocksdb_readoptions_t *ro,
		     unsigned cf, const void *key, size_t klen,
		     rocksdb_pinnableslice_t **ps)
{
	rocksdb_column_family_handle_t *h;
	char *rerr = NULL;

	if (cf >= db->ncf)
		return -EINVAL;
	h = db->cf[cf];
	if (!h)
		return -ENOENT;
	*ps = rocksdb_get_pinned_cf(db->rdb, ro, h, key, klen, &rerr);
	if (rerr)
		return blk_rdb_errno(rerr);
	return *ps ? 0 : -ENOENT;
}

int blk_db_pinned(struct blk_db *db, unsigned cf, const void *key, size_t klen,
		  rocksdb_pinnableslice_t **ps)
{
	return blk_db_pinned_ro(db, db->ropts, cf, key, klen, ps);
}

/* The handle is the pinnable slice itself. */
int blk_db_get_val(struct blk_db *db, unsigned cf, const void *key, size_t klen,
		   struct blk_val **out)
{
	rocksdb_pinnableslice_t *ps;
	int rc;

	rc = blk_db_pinned(db, cf, key, klen, &ps);
	if (rc < 0)
		return rc;
	*out = (struct blk_val *)ps;
	return 0;
}

const void *blk_val_data(const struct blk_val *v, size_t *len)
{
	return rocksdb_pinnableslice_value((const rocksdb_pinnableslice_t *)v,
					   len);
}

void blk_val_free(struct blk_val *v)
{
	if (v)
		rocksdb_pinnableslice_destroy((rocksdb_pinnableslice_t *)v);
}

/* Copy a pinned value into a malloc'd buffer (an empty one: 1 byte) and
 * destroy the slice: 0 or -ENOMEM (*@out NULL). */
int blk_slice_dup(rocksdb_pinnableslice_t *ps, void **out, size_t *len)
{
	size_t n;
	const char *v = rocksdb_pinnableslice_value(ps, &n);
	void *p = malloc(n ? n : 1);

	*out = p;
	if (p) {
		if (n)
			memcpy(p, v, n);
		*len = n;
	}
	rocksdb_pinnableslice_destroy(ps);
	return p ? 0 : -ENOMEM;
}

/* Room for element @n of an array of @size-byte elements at @v with
 * capacity *@cap, doubling it (from @first): the array, or NULL on ENOMEM
 * (then @v and *@cap are unchanged). */
void *blk_grow(void *v, size_t *cap, size_t n, size_t size, size_t first)
{
	size_t c = *cap ? 2 * *cap : first;
	void *p;

	if (n < *cap)
		return v;
	p = realloc(v, c * size);
	if (p)
		*cap = c;
	return p;
}

int blk_db_get(struct blk_db *db, unsigned cf, const void *key, size_t klen,
	       void **val, size_t *vlen)
{
	rocksdb_pinnableslice_t *ps;
	int rc = blk_db_pinned(db, cf, key, klen, &ps);

	return rc < 0 ? rc : blk_slice_dup(ps, val, vlen);
}

int64_t blk_db_get_into_ro(struct blk_db *db, const rocksdb_readoptions_t *ro,
			   unsigned cf, const void *key, size_t klen, void *buf,
			   size_t cap)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc;

	rc = blk_db_pinned_ro(db, ro, cf, key, klen, &ps);
	if (rc < 0)
		return rc;
	v = rocksdb_pinnableslice_value(ps, &n);
	if (n && cap)
		memcpy(buf, v, n < cap ? n : cap);
	rocksdb_pinnableslice_destroy(ps);
	return (int64_t)n;
}

int64_t blk_db_get_into(struct blk_db *db, unsigned cf, const void *key,
			size_t klen, void *buf, size_t cap)
{
	return blk_db_get_into_ro(db, db->ropts, cf, key, klen, buf, cap);
}

/* Put (or, with @del, delete) one record, not synced. */
static int write_one(struct blk_db *db, unsigned cf, const void *key,
		     size_t klen, const void *val, size_t vlen, bool del)
{
	rocksdb_column_family_handle_t *h = blk_db_cf(db, cf);
	char *rerr = NULL;

	if (db->read_only)
		return -EROFS;
	if (!h)
		return -EINVAL;
	if (del)
		rocksdb_delete_cf(db->rdb, db->wopts, h, key, klen, &rerr);
	else
		rocksdb_put_cf(db->rdb, db->wopts, h, key, klen, val, vlen,
			       &rerr);
	if (rerr)
		return blk_rdb_errno(rerr);
	return 0;
}

int blk_db_put(struct blk_db *db, unsigned cf, const void *key, size_t klen,
	       const void *val, size_t vlen)
{
	return write_one(db, cf, key, klen, val, vlen, false);
}

int blk_db_delete(struct blk_db *db, unsigned cf, const void *key, size_t klen)
{
	return write_one(db, cf, key, klen, NULL, 0, true);
}

/* Byte-wise order, a proper prefix first: RocksDB's default comparator. */
int blk_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}
