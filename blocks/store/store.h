/* The block store: content-addressed blocks with reference counts, kept in
 * its own column families of a record store (db.h) — "blocks", "refs",
 * "journal" and "newlog" — and changed together with callers' records
 * through its transactions, which wrap a record batch.
 *
 * Invariants (kept by blk_txn_commit under the store's ref lock):
 *  1. A block is in the "blocks" column family iff its reference count in
 *     "refs" is > 0 and it is not evicted.
 *  2. Every change a transaction makes — caller records, reference counts,
 *     block bytes, the stats record — lands in one WriteBatch: after a crash
 *     either all of it is there or none of it.
 *  3. Stats (block count, unique bytes, referenced bytes, evicted bytes)
 *     equal the sums over "refs" at every commit.
 *  4. A block that a record of the new-block log names (its upload is
 *     pending) is never evicted: blk_store_evict checks, under the same
 *     lock, the count of records per CID that commits and the log's
 *     retirement keep (newlog.c N3).
 *
 * Durability: records and reference counts go to the WAL without syncing
 * (they survive the death of the process, not of the machine). The bytes of
 * large new blocks skip the WAL and become durable at the next memtable
 * flush (journal.c). blk_store_sync() makes everything committed so far
 * durable. After a crash, blocks whose bytes were not durable yet are
 * dropped at open (their reference records go too) and listed by
 * blk_store_lost_blocks(): the caller must then drop its own records that
 * point at them.
 *
 * Lifecycle: blk_store_register adds the families to the registry the
 * database is opened with (db.h), blk_store_open loads the store on the
 * open database, blk_store_close makes it durable and frees it before the
 * database closes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/db/db.h"

struct blk_store;
struct blk_txn;

struct blk_store_options {
	bool verify_on_read; /* re-hash every block read against its CID */
	/* Keep the new-block log: every commit that stores a block not
	 * stored before also adds a "newlog" record (next sequence number ->
	 * binary CID) in the same batch, for a consumer that hands new
	 * blocks on (to peers) and deletes each record once done, with
	 * blk_txn_delete (invariant 4: no block is evicted while a record
	 * names it). After a crash, a block whose bytes were lost but whose
	 * record is gone is kept, marked evicted (the consumer had handed it
	 * on). Without it, "newlog" is opened only when found on disk. */
	bool newlog;
};

/* Add the store's column families to @r. 0, or the error of
 * blk_cf_register (also kept in @r). */
int blk_store_register(struct blk_cf_registry *r,
		       const struct blk_store_options *o);

/* Load the store on @db, opened with a registry blk_store_register added
 * to: its statistics, then (read-write) the journal's replay, which may
 * find lost blocks. Returns 0 with *@out set, or a negative errno with a
 * reason in @err: -ENOENT (the store's families were not registered, or
 * a read-only open found "blocks" or "refs" missing: a node only ever
 * served), -EUCLEAN (the
 * statistics record is corrupt), -ENOMEM, -EIO. */
int blk_store_open(struct blk_db *db, const struct blk_store_options *o,
		   struct blk_store **out, char *err, size_t errlen);
/* Make everything committed durable (blk_store_sync) and free the store;
 * the database stays open, for its owner to close. NULL is fine. */
void blk_store_close(struct blk_store *s);
struct blk_db *blk_store_db(struct blk_store *s);

/* Make every committed transaction durable: the bytes of blocks committed
 * since the last sync (written again through the WAL when they are few,
 * otherwise by flushing the block memtable), then one WAL fsync (which
 * covers every record of the database). 0 (also on a read-only
 * database: nothing to sync) or -EIO; -ENOSPC when the file system is
 * full. */
int blk_store_sync(struct blk_store *s);

/* Order the blocks committed so far before every later commit: the bytes
 * of those that skipped the WAL are written again through it, or the
 * block memtable is flushed when they are many, as blk_store_sync does,
 * but the WAL is not synced. A crash (of the process or of the machine)
 * that keeps a commit made after this returns keeps those blocks too.
 * Renames that replace a file call it (ext4's auto_da_alloc), so a crash
 * leaves the old content or the new, never a file of zeros. 0 (also on a
 * read-only database) or -EIO, -ENOMEM, -ENOSPC. */
int blk_store_settle(struct blk_store *s);

/* Give the space of deleted blocks back (blk_db_compact over "blocks"
 * and "refs", blob garbage collection of "blocks"). */
int blk_store_compact(struct blk_store *s, uint64_t reserve,
		      struct blk_db_compact_stats *cs);

struct blk_store_stats {
	uint64_t blocks; /* distinct blocks stored */
	uint64_t bytes;	 /* their total length */
	uint64_t
	    ref_bytes; /* sum of length x refcount: logical bytes referenced */
	uint64_t remote_bytes; /* of bytes, those evicted (not held here) */
	/* of bytes, those of dag-pb and dag-cbor blocks (the filesystem's
	 * commits: its directories, file nodes, attributes and heads) */
	uint64_t dag_bytes;
};

/* 1 if the block is stored (its bytes here or evicted), 0 if not, -EIO,
 * -EUCLEAN (a corrupt refs record). Reads "refs" only. */
int blk_store_has(struct blk_store *s, const struct blk_cid *cid);
/* Whole block as a malloc'd copy: 0, -ENOENT (the bytes are not here:
 * not stored, or evicted; blk_store_has tells which), -ENOMEM, -EIO; with
 * verify_on_read, -EBADMSG when the bytes do not hash to @cid. */
int blk_store_get(struct blk_store *s, const struct blk_cid *cid, void **data,
		  size_t *len);
/* Copy bytes [off, off+len) of a block into @dst without an intermediate
 * copy. Returns the bytes copied (short at the block's end, 0 from an @off
 * at or past it), -ENOENT, -EIO, -EBADMSG (verify_on_read). */
int64_t blk_store_read(struct blk_store *s, const struct blk_cid *cid,
		       uint64_t off, void *dst, size_t len);
/* Reference count and length of a stored block: 0, -ENOENT, -EIO,
 * -EUCLEAN. */
int blk_store_refs(struct blk_store *s, const struct blk_cid *cid,
		   uint64_t *refs, uint32_t *len);
/* References, length, and whether the bytes are here: 0, -ENOENT, -EIO,
 * -EUCLEAN. */
int blk_store_info(struct blk_store *s, const struct blk_cid *cid,
		   uint64_t *refs, uint32_t *len, bool *local);
/* The totals as of the last commit (kept in memory): always 0. */
int blk_store_stats(struct blk_store *s, struct blk_store_stats *st);

/* Transactions: collect record changes and block reference changes, then
 * commit them atomically in one record batch. Nothing reaches the
 * database before blk_txn_commit. Not thread-safe per transaction; any
 * number of transactions may be built in parallel. */
struct blk_txn *blk_txn_new(struct blk_store *s); /* NULL on ENOMEM */
void blk_txn_free(struct blk_txn *t);		  /* NULL is fine */
/* Records of any column family of the database, as blk_batch_put,
 * blk_batch_put2 and blk_batch_delete. Deleting a "newlog" record also
 * tells the store that the block's upload is done (invariant 4); that
 * commit takes its lock. */
void blk_txn_put(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		 const void *val, size_t vlen);
void blk_txn_put2(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		  const void *v0, size_t l0, const void *v1, size_t l1);
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

/* Add one reference to a block. @data/@len are its bytes, used if the block
 * is not stored yet at commit (or is evicted); they must stay valid until
 * commit returns. @data NULL means "bytes not supplied": the block must
 * then be stored already at commit; an empty block is passed with a
 * non-NULL @data and @len 0. 0, -ENOMEM, -EINVAL (@len > UINT32_MAX). */
int blk_txn_ref(struct blk_txn *t, const struct blk_cid *cid, const void *data,
		size_t len);
/* Add one reference to a block whose bytes (@len of them) are not at hand
 * but held by peers: a block not stored yet is stored evicted (its refs
 * record only, as blk_store_evict leaves one; no new-block log record),
 * so reads of it fail with -ENOENT until blk_store_fill puts its bytes
 * (the read path does after a fetch). A block stored already just gains
 * the reference. For a rebuild of metadata from the cluster. 0, -ENOMEM,
 * -EINVAL (@len > UINT32_MAX). */
int blk_txn_ref_remote(struct blk_txn *t, const struct blk_cid *cid,
		       size_t len);
/* Drop one reference; the block is deleted when its count reaches 0.
 * 0 or -ENOMEM. */
int blk_txn_unref(struct blk_txn *t, const struct blk_cid *cid);

/* Eviction (evict.c): drop a block's bytes but keep its references, for a
 * block that peers hold. Reads of it then fail with -ENOENT until it is
 * filled again. Returns the bytes freed (0 if evicted already), -EBUSY
 * (a new-block log record names it: not handed on yet, invariant 4),
 * -ENOENT (not stored), -EIO, -EUCLEAN, -EROFS. */
int blk_store_evict(struct blk_store *s, const struct blk_cid *cid);
/* Evict stored blocks in CID order, as blk_store_evict does, until at
 * least @goal bytes have been freed or every block has been tried (blocks
 * evicted already free nothing). A block that fails to evict is skipped.
 * *@freed and *@count are set to the bytes freed and the blocks evicted,
 * also on error. Returns 0; -EROFS (nothing tried), -ENOMEM, or the first
 * other error met (a failed eviction, -ENOENT of a block deleted meanwhile
 * and -EBUSY of one not handed on aside, or -EIO when the walk over "refs"
 * broke off). */
int blk_store_evict_upto(struct blk_store *s, uint64_t goal, uint64_t *freed,
			 uint64_t *count);
/* Put an evicted block's bytes back (after fetching them): 0 (also when
 * the block is not evicted, or its length differs: then nothing is
 * written), -ENOENT (no longer referenced), -EBADMSG (the bytes do not
 * hash to @cid), -ENOMEM, -EIO, -EUCLEAN, -EROFS. */
int blk_store_fill(struct blk_store *s, const struct blk_cid *cid,
		   const void *data, size_t len);
/* Write good bytes over a stored block whose local copy is damaged (a
 * read of it failed RocksDB's checksum, -EIO, or its CID, -EBADMSG), after
 * checking them against @cid; an evicted block is filled (blk_store_fill).
 * The bytes go through the WAL, as one record; the damaged copy is left
 * to compaction. 0, -ENOENT (no longer referenced), -EBADMSG (the bytes do
 * not hash to @cid), -EINVAL (not the block's length), -ENOMEM, -EIO,
 * -ENOSPC, -EUCLEAN, -EROFS. */
int blk_store_rewrite(struct blk_store *s, const struct blk_cid *cid,
		      const void *data, size_t len);

/* Blocks whose bytes did not survive a crash, found by blk_store_open: their
 * reference records are gone and the statistics no longer count them.
 * Returns how many, with the CIDs in *cids (owned by @s, valid until
 * blk_store_forget_lost or close). Not thread-safe: for the opener, before
 * it shares @s. */
size_t blk_store_lost_blocks(struct blk_store *s, const struct blk_cid **cids);
/* Drop the list once the caller has dealt with it. */
void blk_store_forget_lost(struct blk_store *s);

/* The next sequence number of the new-block log (newlog.c): every record
 * below it was committed. 0 when the log is not kept, and on a read-only
 * database (which does not load the log). */
uint64_t blk_store_newlog_head(struct blk_store *s);
/* The handle of "newlog", for a consumer that walks its records and
 * deletes them (blk_txn_delete). */
unsigned blk_store_newlog_cf(struct blk_store *s);
/* Add a new-block log record for every block whose bytes are held here
 * (not evicted), so that the consumer hands each on again: for when a
 * node lost fragments it had acknowledged. *@queued says how many, also
 * on error (records are added in commits of up to 1024). 0, -ENOENT (the
 * log is not kept), -EROFS, -ENOMEM, -EIO. */
int blk_store_newlog_requeue(struct blk_store *s, uint64_t *queued);
