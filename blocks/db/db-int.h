/* What the record store shares with its owners inside blocks/: the
 * database and batch structs and the RocksDB handles behind them, for an
 * owner that writes RocksDB batches of its own (blocks/store/). Not for
 * use outside blocks/. */
#pragma once

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/db/db.h"

/* The database. compact_lock is its one lock. */
struct blk_db {
	/* Set by blk_db_open, read-only after. */
	rocksdb_t *rdb;
	char *path;
	bool read_only;
	/* The registry's names and flags, and by handle the family opened
	 * (NULL when a read-only open found it missing, or an IF_PRESENT
	 * one is not on disk). */
	struct blk_cf_def def[BLK_DB_MAX_CFS];
	rocksdb_column_family_handle_t *cf[BLK_DB_MAX_CFS];
	unsigned ncf;
	/* Every handle opened (including "default" and unknown ones), for
	 * flushing and closing. */
	rocksdb_column_family_handle_t **all;
	size_t nall;
	rocksdb_cache_t *cache;
	rocksdb_readoptions_t *ropts;
	rocksdb_writeoptions_t *wopts;
	rocksdb_writeoptions_t *wopts_sync;
	rocksdb_writeoptions_t *wopts_nowal;

	/* Serialises blk_db_compact (it changes and restores an option). */
	pthread_mutex_t compact_lock;
	/* Bytes of blob files, 1/128 of the file system (db.c). Set by
	 * db_new, read-only after. */
	uint64_t blob_size;
	/* Room a running GC pass may fill (blk_db_compact), counted as
	 * pending by blk_db_space; written under compact_lock, read by
	 * anyone. */
	_Atomic uint64_t compact_hold;

	/* The write-ahead log's damage found at open (walscan.c): set by
	 * blk_db_open, read-only after. */
	struct blk_wal_damage wal_damage;
};

/* A batch: one WriteBatch, owned by one thread at a time (db.h). */
struct blk_batch {
	struct blk_db *db;
	rocksdb_writebatch_t *wb;
	int err; /* first error of a call that cannot return one */
};

int blk_rdb_errno(char *rerr); /* frees @rerr; -ENOSPC or -EIO */
/* Format a message into @err (@errlen bytes; NULL or 0: none). */
void blk_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Iterators and walks on @snap (NULL: the implicit snapshot of now). */
struct blk_iter *blk_iter_new_at(struct blk_db *db,
				 const rocksdb_snapshot_t *snap, unsigned cf,
				 const void *prefix, size_t plen,
				 const void *start, size_t slen);
int blk_db_walk_at(struct blk_db *db, const rocksdb_snapshot_t *snap,
		   unsigned cf, const struct blk_walk *w);
/* blk_db_pinned with read options @ro (the snapshot's). */
int blk_db_pinned_ro(struct blk_db *db, const rocksdb_readoptions_t *ro,
		     unsigned cf, const void *key, size_t klen,
		     rocksdb_pinnableslice_t **ps);
/* blk_db_get_into with read options @ro. */
int64_t blk_db_get_into_ro(struct blk_db *db, const rocksdb_readoptions_t *ro,
			   unsigned cf, const void *key, size_t klen, void *buf,
			   size_t cap);
int blk_db_pinned(struct blk_db *db, unsigned cf, const void *key, size_t klen,
		  rocksdb_pinnableslice_t **ps);
/* @cf's handle: NULL for a bad handle or a family not open. */
rocksdb_column_family_handle_t *blk_db_cf(struct blk_db *db, unsigned cf);
int blk_key_cmp(const void *a, size_t alen, const void *b, size_t blen);
int blk_slice_dup(rocksdb_pinnableslice_t *ps, void **out, size_t *len);
void *blk_grow(void *v, size_t *cap, size_t n, size_t size, size_t first);

/* Check the write-ahead log in database directory @dir before RocksDB
 * replays it (walscan.c): *@out says what the replay will drop. 0, or
 * -errno of reading it (then *@out says nothing). */
int wal_scan(const char *dir, struct blk_wal_damage *out);
