/* The record store: one RocksDB database with named column families, plain
 * records, snapshot iterators and atomic batches (one WriteBatch each). It
 * knows nothing of what its owners keep in it (where "block" appears in
 * blocks/db/ it is RocksDB's or the file system's word: table pages, the
 * WAL's 32 KiB pages, st_blocks): each owner adds its column
 * families to a registry, and whoever composes them opens the database
 * with it.
 *
 * Every call returns 0 (or a count) on success and a negative errno on
 * failure; none of them exits or prints. A database may be used from any
 * number of threads; a batch or an iterator from one at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blk_db;
struct blk_batch;
struct blk_iter;

#define BLK_DB_MAX_CFS 16

/* How a column family is kept (its flags in the registry):
 *   BLK_CF_LARGE       large values: blob files, no compression, large
 *                      memtables
 *   BLK_CF_RAW         small values that do not compress (hashes,
 *                      counters): no compression
 *   BLK_CF_IF_PRESENT  opened when on disk, never created
 * Others: small values, LZ4. */
#define BLK_CF_LARGE 0x1u
#define BLK_CF_RAW 0x2u
#define BLK_CF_IF_PRESENT 0x4u

/*
 * The column-family registry: the families to open, by name, each with
 * its flags. A family's handle, which every record call takes, is its
 * index here: the order of registration. "default" (which RocksDB insists
 * on) is not in it. Families found on disk that nobody registered are
 * opened too (RocksDB refuses a read-write open otherwise) and kept
 * untouched: no handle names them.
 *
 * Zero-initialise it, register, then hand it to blk_db_open. Not
 * thread-safe; it may be freed once the open returns.
 */
struct blk_cf_def {
	const char *name; /* must outlive the open */
	unsigned flags;	  /* BLK_CF_* */
};
struct blk_cf_registry {
	struct blk_cf_def cf[BLK_DB_MAX_CFS];
	unsigned n;
	int err; /* the first failed registration's, 0 if none */
};

/* Add family @name: its handle (>= 0), or -EINVAL (empty, "default" or
 * registered already) or -E2BIG (BLK_DB_MAX_CFS are), also kept in
 * @r->err so that the open fails with it. */
int blk_cf_register(struct blk_cf_registry *r, const char *name,
		    unsigned flags);

struct blk_db_options {
	const struct blk_cf_registry *cfs; /* NULL: none */
	size_t cache_bytes; /* RocksDB's LRU cache; 0: default 64 MiB */
	bool create;	    /* create the database if missing */
	bool read_only;	    /* open without taking the write lock; sees
			     * the writer's records up to its last WAL
			     * write, not what it wrote without the WAL
			     * and has not flushed */
};

/* Open (or create) the database in directory @path.
 *
 * The column families of @o->cfs that are missing are created (read-write
 * only, and not those flagged BLK_CF_IF_PRESENT); a read-only open reads a
 * missing one as empty.
 *
 * Returns 0 with *@out set, or a negative errno with *@out NULL and, if
 * @err is not NULL, a human-readable reason in @err (@errlen bytes,
 * NUL-terminated):
 *   -EBUSY   another process holds the database lock
 *   -ENOENT  no database there and !create
 *   -EACCES  permission denied
 *   -EINVAL, -E2BIG  a failed registration (@o->cfs->err)
 *   -ENOMEM  out of memory
 *   -EIO     anything else RocksDB reports (corruption, ...) */
int blk_db_open(const char *path, const struct blk_db_options *o,
		struct blk_db **out, char *err, size_t errlen);

/* What a damaged write-ahead log cost at the last read-write open. RocksDB
 * replays the log up to its first damaged record and drops every record
 * from there on (db.c says why that mode); open checks the log first
 * (walscan.c) and keeps what it found here. Every record is one committed
 * batch committed: @records of them
 * were dropped, starting at byte @offset of log @file. All zero when the
 * log was sound (or the open read-only). */
struct blk_wal_damage {
	uint64_t records;
	uint64_t offset;
	char file[64];
};
void blk_db_wal_damage(struct blk_db *db, struct blk_wal_damage *out);

/* Make everything written through the WAL durable (blk_db_sync) and
 * flushed (blk_db_flush), then close and free. NULL is fine. Waits for
 * RocksDB's background work. After it the write-ahead log holds nothing
 * the database needs, so a clean stop leaves no record that damage to the
 * log could take. An owner that writes without the WAL makes that durable
 * first (blk_store_close). */
void blk_db_close(struct blk_db *db);

/* The handle of column family @name as registered, or -ENOENT. */
int blk_db_cf_find(struct blk_db *db, const char *name);
/* Whether family @cf is open: false for a bad handle, or for a family a
 * read-only open found missing or an IF_PRESENT one not on disk. */
bool blk_db_cf_open(struct blk_db *db, unsigned cf);
bool blk_db_read_only(struct blk_db *db);

/* Make every batch committed so far durable: one WAL fsync. 0 (also on a
 * read-only database: nothing to sync) or -EIO; -ENOSPC when the file
 * system is full. Writes made without the WAL are their writer's to make
 * durable (their owner's sync). */
int blk_db_sync(struct blk_db *db);

/* Write every column family's memtables out to SST and blob files, and
 * wait: what they hold stops counting as pending in blk_db_space, and
 * WAL files that held only it go. Durability is blk_db_sync's, not this:
 * a clean stop calls both (the sync first), leaving nothing in the WAL.
 * 0, -EROFS, -ENOSPC, -EIO. */
int blk_db_flush(struct blk_db *db);

/* Give the space of deleted records back to the file system: every column
 * family is flushed, then the @n families @cfs are compacted over their
 * whole range, which drops deleted records and the blob files that held
 * only those; then blob garbage collection rewrites the live values of the
 * blob files of @cfs[0] (a BLK_CF_LARGE family) that also held deleted
 * ones, in passes that each use at most
 * half of the @reserve bytes writers leave free and a quarter of the room
 * beyond it (counted as pending by blk_db_space while they run): freeing
 * space needs room for one blob file (1/128 of the file system), never
 * room in proportion to the live data. A
 * maintenance operation. @cs (may be NULL) says what it did.
 * 0, -EROFS on a read-only database, -ENOSPC when RocksDB met a full
 * file system in a flush or in the background compaction, -EIO for any
 * other error of either (RocksDB's "rocksdb.background-errors" count
 * rose: its LOG has the message). */
/* How many background errors (flush, compaction) RocksDB met since the
 * database opened. After one it may stop taking writes for good: a
 * damaged table file met by a compaction does that. */
uint64_t blk_db_background_errors(struct blk_db *db);

struct blk_db_compact_stats {
	uint64_t blob_bytes_before; /* blob files' bytes after the flush */
	uint64_t blob_bytes_after;  /* ... and at the end */
	uint64_t garbage_after;	    /* dead bytes left in blob files */
	unsigned gc_passes;	    /* GC passes run */
};
int blk_db_compact(struct blk_db *db, const unsigned *cfs, size_t n,
		   uint64_t reserve, struct blk_db_compact_stats *cs);

/* Room on the database's file system: @total and @avail bytes (statvfs,
 * what an unprivileged writer may use), and @pending bytes held in
 * memtables, which their next flush writes to it (WAL'd records already
 * take room in the WAL too, until that flush), and the room a running
 * compaction may still fill. 0 or -errno of statvfs. */
struct blk_db_space {
	uint64_t total, avail, pending;
};
int blk_db_space(struct blk_db *db, struct blk_db_space *sp);

/* Bytes the database occupies on disk: the space allocated (st_blocks) to
 * the regular files of its directory (SST, blob, WAL, MANIFEST, OPTIONS,
 * LOG). Files deleted during the walk are skipped. 0 with *@bytes set, or
 * a negative errno of opendir/fstatat. */
int blk_db_disk_usage(struct blk_db *db, uint64_t *bytes);

/* Plain records in any column family. blk_db_get returns 0 and a malloc'd
 * copy in *val (free() it; an empty value is a 1-byte allocation with
 * *vlen 0), -ENOENT (also for a column family a read-only open found
 * missing), -EINVAL (bad @cf), -ENOMEM or -EIO. */
int blk_db_get(struct blk_db *db, unsigned cf, const void *key, size_t klen,
	       void **val, size_t *vlen);
/* As blk_db_get, into a caller buffer: returns the value's full length
 * (copying at most @cap bytes), -ENOENT, -EINVAL or -EIO. */
int64_t blk_db_get_into(struct blk_db *db, unsigned cf, const void *key,
			size_t klen, void *buf, size_t cap);
/* Write one record, not synced (it survives the process, not the machine,
 * until blk_db_sync). 0, -EINVAL (bad @cf), -EROFS, -ENOSPC or -EIO. */
int blk_db_put(struct blk_db *db, unsigned cf, const void *key, size_t klen,
	       const void *val, size_t vlen);
/* Delete one record (absent is fine), not synced: 0, -EIO, -ENOSPC,
 * -EROFS, -EINVAL. */
int blk_db_delete(struct blk_db *db, unsigned cf, const void *key, size_t klen);

/* A value read without copying it out of RocksDB: blk_val_data is valid
 * until blk_val_free, from any thread, and must not be written to. Read
 * with RocksDB's checksums, as every read is: a damaged table file gives
 * -EIO (with them off, Debian's librocksdb asserts on a damaged block).
 * 0, -ENOENT, -EINVAL (bad @cf) or -EIO. */
struct blk_val;
int blk_db_get_val(struct blk_db *db, unsigned cf, const void *key, size_t klen,
		   struct blk_val **out);
const void *blk_val_data(const struct blk_val *v, size_t *len);
void blk_val_free(struct blk_val *v); /* NULL is fine */

/* Iterate over the keys of @cf that start with @prefix (plen may be 0),
 * in byte order (a proper prefix first), from the later of @prefix and
 * @start (NULL: from the prefix). The iterator sees the snapshot taken
 * when it is created; a column family a read-only open found missing
 * iterates as empty. Returns NULL on ENOMEM or a bad @cf. */
struct blk_iter *blk_iter_new(struct blk_db *db, unsigned cf,
			      const void *prefix, size_t plen,
			      const void *start, size_t slen);
bool blk_iter_valid(struct blk_iter *it);
void blk_iter_next(struct blk_iter *it); /* only while valid */
/* Key and value of the current record (only while valid); they stay
 * valid until the next blk_iter_next or blk_iter_free. */
const void *blk_iter_key(struct blk_iter *it, size_t *len);
const void *blk_iter_value(struct blk_iter *it, size_t *len);
/* 0, or -EIO if the iteration stopped on an error. */
int blk_iter_status(struct blk_iter *it);
void blk_iter_free(struct blk_iter *it); /* NULL is fine */

/* A walk over the records of @cf whose keys start with @prefix, from the
 * later of @prefix and @start (NULL: the prefix), in byte order, on one
 * snapshot (blk_iter_new). Keys shorter than @klen_min or longer than
 * @klen_max (0: no limit) are skipped, or, with @klen_err, end the walk
 * with that error. @fn gets each other record; it returns 0 to go on,
 * anything else to end the walk with that. blk_db_walk returns 0, @fn's
 * non-zero return, @klen_err, -ENOMEM, -EINVAL (bad @cf) or -EIO (the
 * iteration broke off). */
struct blk_walk {
	const void *prefix, *start;
	size_t plen, slen;
	size_t klen_min, klen_max;
	int klen_err;
	int (*fn)(void *arg, const uint8_t *key, size_t klen,
		  const uint8_t *val, size_t vlen);
	void *arg;
};
int blk_db_walk(struct blk_db *db, unsigned cf, const struct blk_walk *w);

/* Read views (snap.c): every column family as it was when blk_snap_new
 * returned, for readers that need several records at one point in time
 * while writers go on (a commit of the metadata). Reads return what the
 * blk_db_ calls of the same name do. NULL on ENOMEM. Free every iterator
 * made from a view before the view; a view holds old versions of the
 * records it covers alive in RocksDB until freed, so keep it short. */
struct blk_snap;
struct blk_snap *blk_snap_new(struct blk_db *db);
void blk_snap_free(struct blk_snap *s); /* NULL is fine */
int blk_snap_get(struct blk_snap *s, unsigned cf, const void *key, size_t klen,
		 void **val, size_t *vlen);
int64_t blk_snap_get_into(struct blk_snap *s, unsigned cf, const void *key,
			  size_t klen, void *buf, size_t cap);
struct blk_iter *blk_snap_iter_new(struct blk_snap *s, unsigned cf,
				   const void *prefix, size_t plen,
				   const void *start, size_t slen);
int blk_snap_walk(struct blk_snap *s, unsigned cf, const struct blk_walk *w);

/* Batches: collect record changes, then commit them atomically. Nothing
 * reaches the database before blk_batch_commit. Not thread-safe per batch;
 * any number of batches may be built in parallel. */
struct blk_batch *blk_batch_new(struct blk_db *db); /* NULL on ENOMEM */
void blk_batch_free(struct blk_batch *b);	    /* NULL is fine */
/* Add a put or a delete of one record. A bad @cf is remembered and makes
 * the commit fail with -EINVAL. */
void blk_batch_put(struct blk_batch *b, unsigned cf, const void *key,
		   size_t klen, const void *val, size_t vlen);
/* As blk_batch_put, the value given in two parts (header and payload)
 * that RocksDB joins as it copies them into the batch. */
void blk_batch_put2(struct blk_batch *b, unsigned cf, const void *key,
		    size_t klen, const void *v0, size_t l0, const void *v1,
		    size_t l1);
void blk_batch_delete(struct blk_batch *b, unsigned cf, const void *key,
		      size_t klen);
/* Records changed so far (puts and deletes). */
size_t blk_batch_count(const struct blk_batch *b);
/* Remember error @err (the first one sticks) for the commit to return. */
void blk_batch_fail(struct blk_batch *b, int err);

/* How blk_batch_commit writes. */
#define BLK_WRITE_SYNC 1u /* durably: with a WAL fsync */
#define BLK_WRITE_NO_WAL                                                       \
	2u /* without the WAL: lost in a crash until the                       \
	    * memtable's next flush */
/* Apply everything atomically and empty the batch (an empty one writes
 * nothing). Returns 0, or, with nothing applied:
 *   -ENOSPC  the file system is full
 *   -EIO     another RocksDB error
 *   -EINVAL  a put or delete named a bad column family
 *   -EROFS   the database is read-only
 *   -ENOMEM  out of memory
 *   or the error given to blk_batch_fail. */
int blk_batch_commit(struct blk_batch *b, unsigned flags);
