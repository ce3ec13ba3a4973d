/* The node's RocksDB: content-addressed blocks with reference counts, plus
 * the column families that higher layers keep their own records in, all
 * changed together through atomic transactions (one WriteBatch each).
 *
 * Invariants (kept by blk_txn_commit under the db's ref lock):
 *  1. A block is in the "blocks" column family iff its reference count in
 *     "refs" is > 0.
 *  2. Every change a transaction makes — caller records, reference counts,
 *     block bytes, the stats record — lands in one WriteBatch: after a crash
 *     either all of it is there or none of it.
 *  3. Stats (block count, unique bytes, referenced bytes) equal the sums over
 *     "refs" at every commit.
 *
 * Durability: records and reference counts go to the WAL without syncing
 * (they survive the death of the process, not of the machine). The bytes of
 * large new blocks skip the WAL and become durable at the next memtable
 * flush. blk_db_sync() makes everything committed so far durable. After a
 * crash, blocks whose bytes were not durable yet are dropped at open (their
 * reference records go too) and listed by blk_db_lost_blocks(): the caller
 * must then drop its own records that point at them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"

struct blk_db;
struct blk_txn;
struct blk_iter;

/* Column families the store owns; callers' own ones follow from
 * BLK_CF_USER in the order given in blk_db_options.extra_cfs. */
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
	 * blocks on (to peers) and deletes each record once done. After a
	 * crash, a block whose bytes were lost but whose record is gone is
	 * kept, marked evicted (the consumer had handed it on). */
	bool newlog;
};

/* Open (or create) the database in directory @path.
 * On error returns a negative errno and, if @err is not NULL, writes a
 * human-readable reason into @err (@errlen bytes, NUL-terminated):
 *   -EBUSY   another process holds the database lock
 *   -ENOENT  no database there and !create
 *   -EACCES  permission denied
 *   -EIO     anything else RocksDB reports (corruption, ...) */
int blk_db_open(const char *path, const struct blk_db_options *o,
		struct blk_db **out, char *err, size_t errlen);

/* Close and free; NULL is fine. Waits for background work. */
void blk_db_close(struct blk_db *db);

/* Make every committed transaction durable: the bytes of blocks committed
 * since the last sync (written again through the WAL when they are few,
 * otherwise by flushing the block memtable), then one WAL fsync.
 * 0 or -EIO. */
int blk_db_sync(struct blk_db *db);

/* Blocks whose bytes did not survive a crash, found by blk_db_open: their
 * reference records are gone and the statistics no longer count them.
 * Returns how many, with the CIDs in *cids (owned by @db, valid until
 * blk_db_forget_lost or close). */
size_t blk_db_lost_blocks(struct blk_db *db, const struct blk_cid **cids);
/* Drop the list once the caller has dealt with it. */
void blk_db_forget_lost(struct blk_db *db);

/* Compact the block column family so space of deleted blocks (blob files
 * included) is given back to the file system. 0 or -EIO. */
int blk_db_compact(struct blk_db *db);

/* Room on the database's file system: @total and @avail bytes (statvfs,
 * what an unprivileged writer may use), and @pending bytes held in
 * memtables, which their next flush writes to it (WAL'd records already
 * take room in the WAL too, until that flush). 0 or -errno. */
struct blk_db_space {
	uint64_t total, avail, pending;
};
int blk_db_space(struct blk_db *db, struct blk_db_space *sp);

/* Bytes the database occupies on disk (SST + blob + WAL files). */
int blk_db_disk_usage(struct blk_db *db, uint64_t *bytes);

/* Plain records in any column family. blk_db_get returns 0 and a malloc'd
 * copy in *val (free() it), -ENOENT, or -EIO. */
int blk_db_get(struct blk_db *db, unsigned cf, const void *key, size_t klen,
	       void **val, size_t *vlen);
/* As blk_db_get, into a caller buffer: returns the value's full length
 * (copying at most @cap bytes), -ENOENT or -EIO. */
int64_t blk_db_get_into(struct blk_db *db, unsigned cf, const void *key,
			size_t klen, void *buf, size_t cap);
int blk_db_put(struct blk_db *db, unsigned cf, const void *key, size_t klen,
	       const void *val, size_t vlen);

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
void blk_val_free(struct blk_val *v);

/* Iterate over the keys of @cf that start with @prefix (plen may be 0),
 * in byte order, from @start (NULL: from the prefix). The iterator sees a
 * consistent snapshot. Returns NULL on ENOMEM. */
struct blk_iter *blk_iter_new(struct blk_db *db, unsigned cf,
			      const void *prefix, size_t plen,
			      const void *start, size_t slen);
bool blk_iter_valid(struct blk_iter *it);
void blk_iter_next(struct blk_iter *it);
const void *blk_iter_key(struct blk_iter *it, size_t *len);
const void *blk_iter_value(struct blk_iter *it, size_t *len);
/* 0, or -EIO if the iteration stopped on an error. */
int blk_iter_status(struct blk_iter *it);
void blk_iter_free(struct blk_iter *it);

/* Blocks. */
struct blk_store_stats {
	uint64_t blocks; /* distinct blocks stored */
	uint64_t bytes;	 /* their total length */
	uint64_t
	    ref_bytes; /* sum of length x refcount: logical bytes referenced */
	uint64_t remote_bytes; /* of bytes, those evicted (not held here) */
};

/* 1 if the block is stored, 0 if not, -EIO. */
int blk_store_has(struct blk_db *db, const struct blk_cid *cid);
/* Whole block as a malloc'd copy: 0, -ENOENT, -EIO; with verify_on_read,
 * -EBADMSG when the bytes do not hash to @cid. */
int blk_store_get(struct blk_db *db, const struct blk_cid *cid, void **data,
		  size_t *len);
/* Copy bytes [off, off+len) of a block into @dst without an intermediate
 * copy. Returns the bytes copied (short at the block's end), -ENOENT, -EIO,
 * -EBADMSG (verify_on_read). */
int64_t blk_store_read(struct blk_db *db, const struct blk_cid *cid,
		       uint64_t off, void *dst, size_t len);
/* Reference count and length of a stored block: 0 or -ENOENT/-EIO. */
int blk_store_refs(struct blk_db *db, const struct blk_cid *cid, uint64_t *refs,
		   uint32_t *len);
int blk_store_stats(struct blk_db *db, struct blk_store_stats *st);

/* Eviction: drop a block's bytes but keep its references, for a block
 * that peers hold. Reads of it then fail with -ENOENT until it is filled
 * again. Returns the bytes freed (0 if evicted already), -ENOENT (not
 * stored), -EIO, -EROFS. */
int blk_store_evict(struct blk_db *db, const struct blk_cid *cid);
/* Put an evicted block's bytes back (after fetching them): 0 (also when
 * the block is not evicted, or no longer referenced: then nothing is
 * written), -EBADMSG (the bytes do not hash to @cid), -EIO, -EROFS. */
int blk_store_fill(struct blk_db *db, const struct blk_cid *cid,
		   const void *data, size_t len);
/* References, length, and whether the bytes are here: 0, -ENOENT, -EIO,
 * -EUCLEAN. */
int blk_store_info(struct blk_db *db, const struct blk_cid *cid, uint64_t *refs,
		   uint32_t *len, bool *local);

/* The next sequence number of the new-block log: every record below it
 * was committed. */
uint64_t blk_db_newlog_head(struct blk_db *db);

/* Delete one record: 0, -EIO, -EROFS, -EINVAL. */
int blk_db_delete(struct blk_db *db, unsigned cf, const void *key, size_t klen);

/* Transactions: collect record changes and block reference changes, then
 * commit them atomically. Not thread-safe per transaction; any number of
 * transactions may be built in parallel. */
struct blk_txn *blk_txn_new(struct blk_db *db); /* NULL on ENOMEM */
void blk_txn_free(struct blk_txn *t);		/* NULL is fine */
void blk_txn_put(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		 const void *val, size_t vlen);
/* As blk_txn_put, the value given in two parts (header and payload)
 * that RocksDB joins as it copies them into the batch. */
void blk_txn_put2(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		  const void *v0, size_t l0, const void *v1, size_t l1);
void blk_txn_delete(struct blk_txn *t, unsigned cf, const void *key,
		    size_t klen);
/* Add one reference to a block. @data/@len are its bytes, used if the block
 * is not stored yet at commit; they must stay valid until commit returns.
 * 0 or -ENOMEM. */
int blk_txn_ref(struct blk_txn *t, const struct blk_cid *cid, const void *data,
		size_t len);
/* Drop one reference; the block is deleted when its count reaches 0.
 * 0 or -ENOMEM. */
int blk_txn_unref(struct blk_txn *t, const struct blk_cid *cid);
/* Apply everything atomically; with @sync, durably (WAL fsync).
 * Returns 0, -ENOSPC (the file system is full, nothing applied), -EIO
 * (another RocksDB error, nothing applied), or -EUCLEAN when a
 * reference would drop below zero or a new block comes without its bytes
 * (nothing applied; a bug or corrupt metadata). The transaction is spent
 * either way: free it. */
int blk_txn_commit(struct blk_txn *t, bool sync);
