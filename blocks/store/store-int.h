/* What the block store, its journal, its new-block log and eviction share
 * inside blocks/store/: the store and transaction structs, the "refs"
 * record format and the steps of a reference-changing commit. Not for use
 * outside blocks/store/. */
#pragma once

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/db/db-int.h"
#include "blocks/store/store.h"

/* refs values: count u64 LE, length u32 LE, then an optional flags byte
 * (absent: 0). Keys are binary CIDs: their first byte, the CID version, is
 * REFS_CID_PREFIX; the one other key is STATS_KEY. */
#define REFS_VALUE_LEN 12
#define REFS_VALUE_MAX 13
#define REFS_EVICTED 0x01 /* the bytes are not here, only on peers */
#define REFS_FLAGS_KNOWN REFS_EVICTED
#define REFS_CID_PREFIX 0x01

/* The length of a block to count in stats.dag_bytes, by its binary CID:
 * @len for a block of a DAG codec (anything but raw: the codec varint is
 * the key's second byte, one byte for every codec blockfs writes), else 0. */
static inline uint64_t store_dag_len(const void *key, size_t klen, uint64_t len)
{
	const uint8_t *k = key;

	return klen >= 2 && k[1] != BLK_CODEC_RAW ? len : 0;
}

/* New blocks from this size on skip the WAL and are journaled (journal.c,
 * invariant J1). */
#define JOURNAL_NOWAL_MIN (64 * 1024)

/* The CIDs that records of the new-block log name, each with its number of
 * records: an open-addressing table with linear probing (newlog.c N3). */
struct pending_slot {
	uint8_t cid[BLK_CID_MAX_BYTES];
	uint8_t clen;
	uint32_t n; /* records naming it; 0: an empty slot */
};

struct newlog_pending {
	struct pending_slot *v; /* cap slots, cap a power of two (or 0) */
	size_t cap, used;	/* used: slots with n > 0 */
};

/*
 * The block store. Lock order: sync_lock before ref_lock (the db's
 * compact_lock is never held together with either).
 */
struct blk_store {
	/* Set by blk_store_open, read-only after. */
	struct blk_db *db;
	bool read_only;
	bool verify;
	/* The handles of "blocks", "refs", "journal" and "newlog" and their
	 * RocksDB families (NULL when the db did not open one: "newlog" not
	 * kept, "journal" missing on a read-only open). */
	unsigned cf_blocks, cf_refs, cf_journal, cf_newlog;
	rocksdb_column_family_handle_t *blocks, *refs, *journal, *newlog;

	/* Serialises blk_store_sync and blk_store_settle (their journal work
	 * and WAL fsync). */
	pthread_mutex_t sync_lock;
	/* The commit lock: serialises every read-compute-write of "refs"
	 * (store.c) with the batch write that publishes it, so the counters
	 * below advance in the order their records are written. They are
	 * one object's, the commit's, not three: a commit that changes
	 * references writes the stats record, its journal records and its
	 * new-block log entries in the same batch, so it needs all of them
	 * at once, and a lock each would only be three locks taken
	 * together around every commit. */
	pthread_mutex_t ref_lock;

	struct blk_store_stats stats; /* ref_lock; mirrors the stats record */
	/* The WAL-less journal (journal.c): the next sequence number, the
	 * lowest one that may still have a record (written by
	 * blk_store_sync only, which also holds sync_lock), and the bytes of
	 * the blocks journaled since the last sync. All ref_lock. */
	uint64_t journal_seq, journal_first, journal_bytes;
	uint64_t newlog_seq; /* ref_lock: next new-block log number */
	/* ref_lock: the CIDs the new-block log names (newlog.c N3), which
	 * eviction refuses. Filled at open (read-write) before the store is
	 * shared. */
	struct newlog_pending pending;

	/* Blocks found lost at open (journal.c). Written by blk_store_open,
	 * then the opener's (blk_store_lost_blocks): no lock. */
	struct blk_cid *lost;
	size_t nlost;
};

/* One reference change of a transaction, by binary CID. */
struct txn_ref {
	uint8_t key[BLK_CID_MAX_BYTES];
	uint8_t klen;
	int64_t delta;
	const void *data; /* NULL: bytes not supplied */
	size_t len;
	bool remote; /* blk_txn_ref_remote: a new block is stored evicted */
	bool logged; /* the commit adds a new-block log record for it */
};

/* A new-block log record a transaction deletes (newlog.c N3): its key, and
 * the CID it names, read under ref_lock at commit (clen 0: none). */
struct txn_retire {
	uint8_t seq[8];
	uint8_t cid[BLK_CID_MAX_BYTES];
	uint8_t clen;
};

/* A transaction: owned by one thread at a time (store.h). */
struct blk_txn {
	struct blk_store *s;
	/* records, refs, stats: through the WAL; wb is rec->wb */
	struct blk_batch *rec;
	rocksdb_writebatch_t *wb;
	rocksdb_writebatch_t *bb; /* block bytes without WAL (journal.c) */
	struct txn_ref *refs;	  /* reference changes, applied at commit */
	size_t nrefs;
	size_t cap;
	struct txn_retire *retire; /* new-block log records deleted */
	size_t nretire, retire_cap;
	int err; /* first error of a call that cannot return one */
};

/* What a change of reference records computes under ref_lock and
 * publishes into the db only once its batches are written. */
struct store_delta {
	struct blk_store_stats st;
	uint64_t jseq;	 /* next journal sequence number */
	uint64_t jbytes; /* bytes this change journaled */
	uint64_t nseq;	 /* next new-block log sequence number */
};

/* txn.c: write @t's batches (WAL-less block bytes first, so no reference
 * record is ever visible before its block). 0, -ENOSPC or -EIO. */
int blk_txn_write(struct blk_txn *t, bool sync);

/* store.c: the block store. */
int store_load_stats(struct blk_store *s);
int store_commit_refs(struct blk_txn *t, bool sync);
int store_parse_refs(const uint8_t *v, size_t n, uint64_t *refs, uint32_t *len,
		     uint8_t *flags);
size_t store_encode_refs(uint8_t *v, uint64_t refs, uint32_t len,
			 uint8_t flags);
int store_read_refs(struct blk_store *s, const struct blk_cid *cid,
		    uint64_t *refs, uint32_t *len, uint8_t *flags);
void store_put_stats(struct blk_store *s, rocksdb_writebatch_t *wb,
		     const struct blk_store_stats *st);
void store_delta_begin(struct blk_store *s, struct store_delta *d);
void store_delta_publish(struct blk_store *s, const struct store_delta *d);

/* journal.c: the WAL-less journal of new block bytes. */
void journal_put_bytes(struct blk_txn *t, const char *key, size_t klen,
		       const void *data, size_t len, bool wal,
		       struct store_delta *d);
int journal_sync(struct blk_store *s);
int journal_recover(struct blk_store *s);

/* newlog.c: the new-block log. */
bool newlog_append(struct blk_txn *t, const char *key, size_t klen,
		   struct store_delta *d);
int newlog_txn_retire(struct blk_txn *t, const void *seq);
int newlog_commit_prepare(struct blk_txn *t, size_t nrefs);
void newlog_commit_publish(struct blk_txn *t, size_t nrefs);
bool newlog_pending_has(const struct blk_store *s, const void *cid,
			size_t clen);
void newlog_pending_free(struct blk_store *s);
struct newlog_index;
int newlog_index_load(struct blk_store *s, struct newlog_index **out);
bool newlog_index_has(const struct newlog_index *ix, const void *cid,
		      size_t clen);
void newlog_index_drop(const struct newlog_index *ix, struct blk_store *s,
		       rocksdb_writebatch_t *wb, const void *cid, size_t clen);
void newlog_index_free(struct newlog_index *ix);
