/* The record store: one RocksDB database with named column families, plain
 * records, snapshot iterators and atomic transactions (one WriteBatch
 * each). The block store (store.h) keeps its own column families in it and
 * extends its transactions with block references.
 *
 * Every call returns 0 (or a count) on success and a negative errno on
 * failure; none of them exits or prints. A database may be used from any
 * number of threads; a transaction or an iterator from one at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blk_db;
struct blk_txn;
struct blk_iter;

/* Column families, by index. The first BLK_CF_USER are the block store's
 * (store.h); callers' own ones follow from BLK_CF_USER in the order given
 * in blk_db_options.extra_cfs. */
enum {
	BLK_CF_BLOCKS =
	    0, /* binary CID -> block bytes (large values in blob files) */
	BLK_CF_REFS = 1, /* binary CID -> refcount (u64 LE) + length (u32 LE) */
	BLK_CF_JOURNAL =
	    2, /* u64 BE seq -> binary CID: block bytes not yet durable */
	BLK_CF_NEWLOG = 3, /* u64 BE seq -> binary CID: new blocks (opt-in) */
	BLK_CF_USER = 4,
};

#define BLK_DB_MAX_CFS 16

struct blk_db_options {
	const char *const *extra_cfs; /* NULL-terminated, or NULL */
	/* Those of extra_cfs that hold large values (fragments, ...): they
	 * get the options of "blocks" (blob files, no compression, large
	 * memtables). NULL-terminated, or NULL. */
	const char *const *large_cfs;
	size_t cache_bytes;  /* shared block cache; 0: default 64 MiB */
	bool create;	     /* create the database if missing */
	bool read_only;	     /* open without taking the write lock;
			      * sees the writer's records, and its
			      * block bytes up to its last sync */
	bool verify_on_read; /* re-hash every block read against its CID */
	/* Keep the new-block log: every commit that stores a block not
	 * stored before also adds "newlog" record (next sequence number ->
	 * binary CID) in the same batch, for a consumer that hands new
	 * blocks on (to peers) and deletes each record once done, with
	 * blk_txn_delete (store.h invariant 4: no block is evicted while a
	 * record names it). After a crash, a block whose bytes were lost but
	 * whose record is gone is kept, marked evicted (the consumer had
	 * handed it on). */
	bool newlog;
};

/* Open (or create) the database in directory @path.
 *
 * Column families named in @o->extra_cfs that are missing are created
 * (read-write only); a read-only open reads a missing one as empty. The
 * block store's state is loaded and its journal replayed (store.h: blocks
 * lost in a crash are then listed by blk_db_lost_blocks).
 *
 * Returns 0 with *@out set, or a negative errno with *@out NULL and, if
 * @err is not NULL, a human-readable reason in @err (@errlen bytes,
 * NUL-terminated):
 *   -EBUSY   another process holds the database lock
 *   -ENOENT  no database there and !create (also: read_only and the
 *            block store's column families missing)
 *   -EACCES  permission denied
 *   -EINVAL  bad options: too many column families, a reserved or
 *            repeated name
 *   -ENOMEM  out of memory
 *   -EUCLEAN the block statistics record is corrupt
 *   -EIO     anything else RocksDB reports (corruption, ...) */
int blk_db_open(const char *path, const struct blk_db_options *o,
		struct blk_db **out, char *err, size_t errlen);

/* What a damaged write-ahead log cost at the last read-write open. RocksDB
 * replays the log up to its first damaged record and drops every record
 * from there on (db.c says why that mode); open checks the log first
 * (walscan.c) and keeps what it found here. Every record is one committed
 * transaction (a fragment put, a block store commit): @records of them
 * were dropped, starting at byte @offset of log @file. All zero when the
 * log was sound (or the open read-only). */
struct blk_wal_damage {
	uint64_t records;
	uint64_t offset;
	char file[64];
};
void blk_db_wal_damage(struct blk_db *db, struct blk_wal_damage *out);

/* Make everything committed so far durable (blk_db_sync) and flushed
 * (blk_db_flush), then close and free. NULL is fine. Waits for RocksDB's
 * background work. After it the write-ahead log holds nothing the database
 * needs, so a clean stop leaves no record that damage to the log could
 * take. */
void blk_db_close(struct blk_db *db);

/* Make every committed transaction durable: the bytes of blocks committed
 * since the last sync (written again through the WAL when they are few,
 * otherwise by flushing the block memtable), then one WAL fsync.
 * 0 (also on a read-only database: nothing to sync) or -EIO; -ENOSPC
 * when the file system is full. */
int blk_db_sync(struct blk_db *db);

/* Order the blocks committed so far before every later commit: the bytes
 * of those that skipped the WAL (store.h) are written again through it,
 * or the block memtable is flushed when they are many, as blk_db_sync
 * does, but the WAL is not synced. A crash (of the process or of the
 * machine) that keeps a commit made after this returns keeps those blocks
 * too. Renames that replace a file call it (ext4's auto_da_alloc), so a
 * crash leaves the old content or the new, never a file of zeros.
 * 0 (also on a read-only database) or -EIO, -ENOMEM, -ENOSPC. */
int blk_db_settle(struct blk_db *db);

/* Write every column family's memtables out to SST and blob files, and
 * wait: what they hold stops counting as pending in blk_db_space, and
 * WAL files that held only it go. Durability is blk_db_sync's, not this:
 * a clean stop calls both (the sync first, so the journal's blocks go out
 * with the flush), leaving nothing in the WAL.
 * 0, -EROFS, -ENOSPC, -EIO. */
int blk_db_flush(struct blk_db *db);

/* Give the space of deleted blocks back to the file system: every column
 * family is flushed, then "blocks" and "refs" are compacted over their
 * whole range, which drops deleted blocks and the blob files that held only
 * those; then blob garbage collection rewrites the live blocks of the
 * blob files that also held deleted ones, in passes that each use at most
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
int blk_db_compact(struct blk_db *db, uint64_t reserve,
		   struct blk_db_compact_stats *cs);

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
 * until blk_val_free, from any thread, and must not be written to.
 * BLK_GET_NO_CRC skips RocksDB's own (software CRC32C) checksum of the
 * blocks and blob records read: only for callers that check the bytes end
 * to end themselves, as the storage node does with every fragment's XXH3
 * checksum. 0, -ENOENT, -EINVAL (bad @cf) or -EIO. */
struct blk_val;
#define BLK_GET_NO_CRC 1u
int blk_db_get_val(struct blk_db *db, unsigned cf, const void *key, size_t klen,
		   unsigned flags, struct blk_val **out);
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

/* Transactions: collect record changes (and, through store.h, block
 * reference changes), then commit them atomically. Nothing reaches the
 * database before blk_txn_commit. Not thread-safe per transaction; any
 * number of transactions may be built in parallel. */
struct blk_txn *blk_txn_new(struct blk_db *db); /* NULL on ENOMEM */
void blk_txn_free(struct blk_txn *t);		/* NULL is fine */
/* Add a put or a delete of one record. A bad @cf is remembered and makes
 * the commit fail with -EINVAL. */
void blk_txn_put(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		 const void *val, size_t vlen);
/* As blk_txn_put, the value given in two parts (header and payload)
 * that RocksDB joins as it copies them into the batch. */
void blk_txn_put2(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		  const void *v0, size_t l0, const void *v1, size_t l1);
/* Deleting a "newlog" record also tells the block store that the block's
 * upload is done (store.h invariant 4); that commit takes its lock. */
void blk_txn_delete(struct blk_txn *t, unsigned cf, const void *key,
		    size_t klen);
/* Apply everything atomically; with @sync, durably (WAL fsync).
 * Returns 0 (also for an empty transaction), or, with nothing applied:
 *   -ENOSPC  the file system is full
 *   -EIO     another RocksDB error
 *   -EUCLEAN a reference would drop below zero, a new block comes
 *            without its bytes, or a reference record is corrupt (a bug
 *            or corrupt metadata)
 *   -EINVAL  a put or delete named a bad column family
 *   -EROFS   the database is read-only
 *   -ENOMEM  out of memory
 * The transaction is spent either way: free it. */
int blk_txn_commit(struct blk_txn *t, bool sync);
