/* The node's RocksDB block store: opening it with options tuned for large
 * content-addressed values, reference-counted blocks, atomic transactions,
 * plain records and iterators in callers' column families. */

/*
 * Design notes (the invariants themselves are listed in store.h).
 *
 *  1. Column families. "default" (unused, RocksDB insists on it), "blocks",
 *     "refs", then the caller's extra_cfs in order; db->cf[] is indexed by
 *     BLK_CF_*. Column families found on disk that nobody asked for are
 *     opened too (RocksDB refuses a read-write open otherwise) and kept in
 *     db->all only. A read-only open cannot create anything: a caller's
 *     column family that does not exist yet gets a NULL handle and reads as
 *     empty.
 *
 *  2. The refs column family maps a binary CID (38 bytes, first byte 0x01,
 *     the CID version) to a 12-byte value: reference count (u64 LE) then
 *     block length (u32 LE). It also holds one record that is not a CID: the
 *     1-byte key STATS_KEY (0x00) with the store's totals (blocks, bytes,
 *     ref_bytes as three u64 LE). Whoever iterates "refs" for CIDs uses the
 *     prefix 0x01 or skips keys that are not 38 bytes long.
 *
 *  3. blk_txn_commit is the only writer of "refs" and "blocks" (callers may
 *     write them through blk_db_put/blk_txn_put, which the corruption tests
 *     do on purpose, but then the invariants are theirs to keep). It reads
 *     the current counts, computes the new ones and writes the batch while
 *     holding db->ref_lock, so concurrent commits see each other's results
 *     and counts stay exact. The price is that commits are serialised,
 *     including their WAL append (and fsync, for the rare sync commit);
 *     unsynced, that append is a copy into the page cache and durability is
 *     a separate barrier (blk_db_sync), so the lock is held for tens of
 *     microseconds per 256 KiB block, longer while RocksDB stalls writes.
 *     Transactions that change only caller records do not take the lock.
 *
 *  4. db->stats mirrors the stats record and is protected by ref_lock. It is
 *     loaded at open and replaced only after a successful write, so it never
 *     shows a state that is not on disk (in the WAL).
 *
 *  5. Nothing in a transaction reaches RocksDB before commit: caller records
 *     go into the transaction's WriteBatch as they are added, reference
 *     changes into an array that commit turns into batch entries. Any error
 *     found during commit discards the whole batch.
 *
 *  6. Block bytes skip the WAL. Writing every byte twice (WAL, then the
 *     blob file at memtable flush), each time with a software CRC32C
 *     (Debian's librocksdb is built without SSE4.2), held the write path
 *     back: without the WAL copy, `contrib/bench` wrote 1 GiB at 310
 *     instead of 255 MB/s (one run each, same session). A new
 *     block of at least NOWAL_MIN bytes is therefore written in a second
 *     batch with disableWAL, just before the main batch, and the main
 *     (WAL'd) batch carries a journal record for it: "journal" maps a u64
 *     BE sequence number to the block's binary CID. The bytes are durable
 *     once "blocks" has been flushed; blk_db_sync gets there either by
 *     flushing "blocks" (many pending bytes) or by writing the few pending
 *     blocks again, this time through the WAL (small fsyncs, as databases
 *     do them, then never create tiny SST and blob files); either way it
 *     then deletes the journal records it covered and syncs the WAL.
 *     After a crash, blk_db_open replays the journal: a block whose bytes
 *     did not survive loses its refs record (stats follow) and is reported
 *     by blk_db_lost_blocks(), so the caller can drop what points at it.
 *     Only bytes never covered by blk_db_sync can be lost that way, and only
 *     when the process dies, which is the contract of an unsynced write.
 *     Small blocks go through the WAL as before.
 *
 *  7. What note 6 may lose is only what was never durable: a commit that
 *     drops a reference (an overwrite, a re-chunked file tail, a truncate
 *     that keeps the head of a block) moves a range of some file from a
 *     block that may be durable to one that is not, and if the new bytes
 *     were lost in a crash that range would be lost with them, though an
 *     fsync had covered it. Such a commit therefore writes the bytes of
 *     every block it stores, and of every stored large block it adds a
 *     reference to, through the WAL, in the same batch as the references:
 *     a crash keeps all of it or none of it. Appends and new files, which
 *     drop nothing, keep the WAL-less path.
 */

#include "blocks/store.h"

#include "blocks/bytes.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <rocksdb/c.h>
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
#define BLOCKS_WRITE_BUFFER (32 * MiB)
#define BLOCKS_MAX_WRITE_BUFFERS 2
#define SMALL_WRITE_BUFFER (32 * MiB)
#define SMALL_MAX_WRITE_BUFFERS 3
#define DB_WRITE_BUFFER (64 * MiB)
#define MAX_TOTAL_WAL (512 * MiB)
#define MIN_BLOB_SIZE (4 * KiB)
#define BLOB_FILE_SIZE (256 * MiB)
#define BLOB_READAHEAD (2 * MiB)
#define BLOOM_BITS_PER_KEY 10
#define BACKGROUND_JOBS 2
#define BYTES_PER_SYNC (1 * MiB)

/* RocksDB's BottommostLevelCompaction::kForceOptimized. */
#define BOTTOMMOST_FORCE_OPTIMIZED 3

/* Note 6: new blocks from this size on skip the WAL; blk_db_sync writes
 * them again through the WAL while fewer than RELOG_MAX bytes are pending
 * and flushes the memtable beyond. */
#define NOWAL_MIN (64 * KiB)
#define RELOG_MAX (16 * MiB)

/* refs values: count u64 LE, length u32 LE, then an optional flags byte
 * (absent: 0). */
#define REFS_VALUE_LEN 12
#define REFS_VALUE_MAX 13
#define REFS_EVICTED 0x01 /* the bytes are not here, only on peers */
#define REFS_FLAGS_KNOWN REFS_EVICTED
/* stats: blocks, bytes, ref_bytes, then remote_bytes (a 24-byte record
 * from before eviction existed has none). */
#define STATS_VALUE_OLD 24
#define STATS_VALUE_LEN 32
static const char STATS_KEY[1] = {0x00};

enum cf_kind {
	CF_KIND_BLOCKS,
	CF_KIND_REFS,
	CF_KIND_SMALL, /* callers' records and "default" */
};

struct blk_db {
	rocksdb_t *rdb;
	char *path;
	bool read_only;
	bool verify;

	/* By BLK_CF_* index; NULL when a read-only open found it missing. */
	rocksdb_column_family_handle_t *cf[BLK_DB_MAX_CFS];
	unsigned ncf;
	/* Every handle opened (including "default" and unknown ones), for
	 * flushing and closing. */
	rocksdb_column_family_handle_t **all;
	size_t nall;

	rocksdb_cache_t *cache;
	rocksdb_readoptions_t *ropts;
	rocksdb_readoptions_t *ropts_nocrc; /* BLK_GET_NO_CRC */
	rocksdb_writeoptions_t *wopts;
	rocksdb_writeoptions_t *wopts_sync;
	rocksdb_writeoptions_t *wopts_nowal;

	/* Serialises commits' read-compute-write of refs; protects stats. */
	pthread_mutex_t ref_lock;
	struct blk_store_stats stats;

	/* Serialises blk_db_compact (it changes and restores an option). */
	pthread_mutex_t compact_lock;

	/* The WAL-less block journal (note 6), under ref_lock: the next
	 * sequence number, and the bytes of the blocks journaled since the
	 * last blk_db_sync. journal_first is the lowest sequence number that
	 * may still have a record. */
	uint64_t journal_seq, journal_first;
	/* Next sequence number of the new-block log (store.h), ref_lock. */
	uint64_t newlog_seq;
	uint64_t journal_bytes;
	/* Serialises blk_db_sync's journal work. */
	pthread_mutex_t sync_lock;
	/* Blocks found lost at open (note 6). */
	struct blk_cid *lost;
	size_t nlost;
};

struct txn_ref {
	uint8_t key[BLK_CID_MAX_BYTES];
	uint8_t klen;
	int64_t delta;
	const void *data; /* NULL: bytes not supplied */
	size_t len;
};

struct blk_txn {
	struct blk_db *db;
	rocksdb_writebatch_t *wb;
	struct txn_ref *refs;
	size_t nrefs;
	size_t cap;
	int err; /* first error of a call that cannot return one */
	rocksdb_writebatch_t *bb; /* block bytes without WAL (note 6) */
};

struct blk_iter {
	rocksdb_iterator_t *it; /* NULL: an empty iteration */
	rocksdb_readoptions_t *ro;
	/* lower bound (the prefix) then upper bound; must outlive @it. */
	char bounds[];
};

/* The errno of a RocksDB error message, which it frees: -ENOSPC when the
 * file system is full (RocksDB's IOError NoSpace), else -EIO. */
static int rdb_errno(char *rerr)
{
	int rc = strstr(rerr, "No space left on device") ? -ENOSPC : -EIO;

	rocksdb_free(rerr);
	return rc;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Map a RocksDB open error message to the errno store.h promises. RocksDB
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
		set_err(err, errlen,
			"node database %s is in use by another process (%s)",
			path, msg);
		break;
	case -ENOENT:
		set_err(err, errlen, "no node database in %s (%s)", path, msg);
		break;
	case -EACCES:
		set_err(err, errlen,
			"permission denied opening node database %s (%s)", path,
			msg);
		break;
	default:
		set_err(err, errlen, "cannot open node database %s: %s", path,
			msg);
		break;
	}
}

/* Table options shared by every column family: the one LRU block cache and
 * a full bloom filter, which makes the point lookups by random CID (and a
 * lookup of a block not stored yet, the common case on ingest) cost no disk
 * read for keys that are absent. The filter is owned by the table options,
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

/* Per column family options, by what the family holds. */
static void set_cf_options(rocksdb_options_t *o, enum cf_kind kind,
			   rocksdb_cache_t *cache)
{
	set_table_options(o, cache);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);

	switch (kind) {
	case CF_KIND_BLOCKS:
		/*
		 * Values are mostly 64 KiB - 1 MiB chunks. Blob files keep them
		 * out of the LSM tree, so compaction moves only keys and blob
		 * references instead of rewriting the data at every level.
		 * DAG nodes below 4 KiB stay inline in the SSTs, where they
		 * share data blocks and the block cache.
		 *
		 * No compression anywhere in this family: file data is often
		 * already compressed, DAG nodes are mostly hashes, and on two
		 * cores the CPU is better spent on hashing and erasure coding.
		 *
		 * Blob GC is off in the background: block keys are random
		 * hashes, so every routine compaction touches keys in every
		 * blob file and GC would rewrite live file data over and over
		 * (measured: 4.4% of the daemon's cycles while copying 1 GiB
		 * in, plus the disk bandwidth). Space of deleted blocks comes
		 * back through blk_db_compact, which the filesystem runs after
		 * large deletions, with GC on and a full age cutoff.
		 *
		 * Memtables of 32 MiB, at most 2 (one filling, one flushing),
		 * and 64 MiB for all column families together: ingest still
		 * becomes large sequential blob writes, and the daemon's
		 * memory stays bounded (what memtables hold is resident).
		 */
		rocksdb_options_set_enable_blob_files(o, 1);
		rocksdb_options_set_min_blob_size(o, MIN_BLOB_SIZE);
		rocksdb_options_set_blob_file_size(o, BLOB_FILE_SIZE);
		rocksdb_options_set_blob_compression_type(
		    o, rocksdb_no_compression);
		rocksdb_options_set_enable_blob_gc(o, 0);
		rocksdb_options_set_blob_gc_age_cutoff(o, 1.0);
		rocksdb_options_set_blob_compaction_readahead_size(
		    o, BLOB_READAHEAD);
		rocksdb_options_set_compression(o, rocksdb_no_compression);
		rocksdb_options_set_write_buffer_size(o, BLOCKS_WRITE_BUFFER);
		rocksdb_options_set_max_write_buffer_number(
		    o, BLOCKS_MAX_WRITE_BUFFERS);
		break;
	case CF_KIND_REFS:
		/* Hashed keys and counters do not compress. */
		rocksdb_options_set_compression(o, rocksdb_no_compression);
		rocksdb_options_set_write_buffer_size(o, SMALL_WRITE_BUFFER);
		rocksdb_options_set_max_write_buffer_number(
		    o, SMALL_MAX_WRITE_BUFFERS);
		break;
	case CF_KIND_SMALL:
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

/* Database-wide options (also those of the "default" column family). */
static rocksdb_options_t *db_options(const struct blk_db_options *o,
				     rocksdb_cache_t *cache, const char *path)
{
	rocksdb_options_t *dbo = rocksdb_options_create();

	set_cf_options(dbo, CF_KIND_SMALL, cache);
	rocksdb_options_set_create_if_missing(dbo, o->create && !o->read_only);
	rocksdb_options_set_create_missing_column_families(dbo, 1);
	/* Two cores: one flush and one compaction at a time. */
	rocksdb_options_set_max_background_jobs(dbo, BACKGROUND_JOBS);
	/* Write back data and WAL files in 1 MiB steps instead of leaving
	 * hundreds of MiB dirty for one long stall at fsync time. */
	rocksdb_options_set_bytes_per_sync(dbo, BYTES_PER_SYNC);
	rocksdb_options_set_wal_bytes_per_sync(dbo, BYTES_PER_SYNC);
	/* Bound all memtables together, and the WAL: the WAL also holds the
	 * block bytes until they are flushed to blob files, and small column
	 * families that rarely fill a memtable would otherwise pin old WAL
	 * files forever. Past the limit RocksDB flushes them. */
	rocksdb_options_set_db_write_buffer_size(dbo, DB_WRITE_BUFFER);
	/* RocksDB preallocates each WAL file (fallocate) at up to this
	 * size: on a small file system, keep it to 1/16 of it. */
	uint64_t wal_max = MAX_TOTAL_WAL;
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
	if (vrc == 0 && (uint64_t)vfs.f_blocks * vfs.f_frsize / 16 < wal_max)
		wal_max = (uint64_t)vfs.f_blocks * vfs.f_frsize / 16;
	if (wal_max < 4 * MiB)
		wal_max = 4 * MiB;
	rocksdb_options_set_max_total_wal_size(dbo, wal_max);
	/* The info LOG: enough history to debug, bounded. */
	rocksdb_options_set_max_log_file_size(dbo, 16 * MiB);
	rocksdb_options_set_keep_log_file_num(dbo, 4);
	return dbo;
}

static int journal_recover(struct blk_db *db);
static int get_pinned(struct blk_db *db, unsigned cf, const void *key,
		      size_t klen, rocksdb_pinnableslice_t **ps);
static void put_bytes(struct blk_txn *t, const char *key, size_t klen,
		      const void *data, size_t len, bool wal, uint64_t *jseq,
		      uint64_t *jbytes);
static int write_batches(struct blk_txn *t, bool sync);
static int key_cmp(const void *a, size_t alen, const void *b, size_t blen);
static int read_refs(struct blk_db *db, const struct blk_cid *cid,
		     uint64_t *refs, uint32_t *len);
static int read_refs_flags(struct blk_db *db, const struct blk_cid *cid,
			   uint64_t *refs, uint32_t *len, uint8_t *flags);

static bool name_in(const char *name, char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i], name))
			return true;
	return false;
}

static bool is_large(const struct blk_db_options *o, const char *name)
{
	for (size_t i = 0; o->large_cfs && o->large_cfs[i]; i++)
		if (!strcmp(o->large_cfs[i], name))
			return true;
	return false;
}

static bool is_own_name(const struct blk_db_options *o, unsigned ncf,
			const char *name)
{
	if (!strcmp(name, "blocks") || !strcmp(name, "refs") ||
	    !strcmp(name, "journal") || !strcmp(name, "newlog"))
		return true;
	for (unsigned i = 0; i + BLK_CF_USER < ncf; i++)
		if (!strcmp(o->extra_cfs[i], name))
			return true;
	return false;
}

static int load_stats(struct blk_db *db)
{
	int64_t n;
	uint8_t v[STATS_VALUE_LEN];

	memset(&db->stats, 0, sizeof(db->stats));
	n = blk_db_get_into(db, BLK_CF_REFS, STATS_KEY, sizeof(STATS_KEY), v,
			    sizeof(v));
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	if (n != STATS_VALUE_LEN && n != STATS_VALUE_OLD)
		return -EUCLEAN;
	db->stats.blocks = blk_get_le64(v);
	db->stats.bytes = blk_get_le64(v + 8);
	db->stats.ref_bytes = blk_get_le64(v + 16);
	if (n == STATS_VALUE_LEN)
		db->stats.remote_bytes = blk_get_le64(v + 24);
	return 0;
}

static void put_stats(struct blk_db *db, rocksdb_writebatch_t *wb,
		      const struct blk_store_stats *st)
{
	uint8_t v[STATS_VALUE_LEN];

	blk_put_le64(v, st->blocks);
	blk_put_le64(v + 8, st->bytes);
	blk_put_le64(v + 16, st->ref_bytes);
	blk_put_le64(v + 24, st->remote_bytes);
	rocksdb_writebatch_put_cf(wb, db->cf[BLK_CF_REFS], STATS_KEY,
				  sizeof(STATS_KEY), (const char *)v,
				  sizeof(v));
}

static int parse_refs(const uint8_t *v, size_t n, uint64_t *refs, uint32_t *len,
		      uint8_t *flags)
{
	if (n != REFS_VALUE_LEN && n != REFS_VALUE_MAX)
		return -EUCLEAN;
	*refs = blk_get_le64(v);
	*len = blk_get_le32(v + 8);
	*flags = n == REFS_VALUE_MAX ? v[12] : 0;
	if (*flags & ~REFS_FLAGS_KNOWN)
		return -EUCLEAN;
	return 0;
}

static size_t encode_refs(uint8_t *v, uint64_t refs, uint32_t len,
			  uint8_t flags)
{
	blk_put_le64(v, refs);
	blk_put_le32(v + 8, len);
	if (!flags)
		return REFS_VALUE_LEN;
	v[12] = flags;
	return REFS_VALUE_MAX;
}

/*
 * Open (or create) the database in @path; see store.h for the contract.
 * Column families named in @o->extra_cfs that are missing are created
 * (read-write only). Besides the errors in store.h it returns -EINVAL for
 * bad options (too many column families, a reserved or repeated name) and
 * -ENOMEM. With read_only, "blocks" and "refs" must exist (-ENOENT).
 */
int blk_db_open(const char *path, const struct blk_db_options *o,
		struct blk_db **out, char *err, size_t errlen)
{
	static const struct blk_db_options defaults = {0};
	struct blk_db *db = NULL;
	rocksdb_options_t *dbo = NULL, *kind_opts[3] = {NULL};
	char **existing = NULL, *rerr = NULL;
	size_t nexisting = 0, nopen = 0;
	const char **names = NULL;
	const rocksdb_options_t **opts = NULL;
	int *slot = NULL; /* BLK_CF_* index of each opened family, or -1 */
	unsigned ncf = BLK_CF_USER;
	int rc;

	*out = NULL;
	if (!o)
		o = &defaults;
	for (; o->extra_cfs && o->extra_cfs[ncf - BLK_CF_USER]; ncf++) {
		const char *name = o->extra_cfs[ncf - BLK_CF_USER];

		if (ncf >= BLK_DB_MAX_CFS) {
			set_err(err, errlen,
				"too many column families (max %d)",
				BLK_DB_MAX_CFS - BLK_CF_USER);
			return -EINVAL;
		}
		if (!*name || !strcmp(name, "default") ||
		    !strcmp(name, "blocks") || !strcmp(name, "refs") ||
		    !strcmp(name, "journal") || !strcmp(name, "newlog")) {
			set_err(err, errlen,
				"column family name '%s' is reserved", name);
			return -EINVAL;
		}
		for (unsigned j = BLK_CF_USER; j < ncf; j++) {
			if (!strcmp(o->extra_cfs[j - BLK_CF_USER], name)) {
				set_err(err, errlen,
					"column family '%s' is named twice",
					name);
				return -EINVAL;
			}
		}
	}

	db = calloc(1, sizeof(*db));
	if (!db || !(db->path = strdup(path)))
		goto nomem;
	db->read_only = o->read_only;
	db->verify = o->verify_on_read;
	db->ncf = ncf;
	pthread_mutex_init(&db->ref_lock, NULL);
	pthread_mutex_init(&db->compact_lock, NULL);
	pthread_mutex_init(&db->sync_lock, NULL);

	db->cache = rocksdb_cache_create_lru(
	    o->cache_bytes ? o->cache_bytes : DEFAULT_CACHE_BYTES);
	dbo = db_options(o, db->cache, path);
	for (int k = 0; k < 3; k++) {
		kind_opts[k] = rocksdb_options_create();
		set_cf_options(kind_opts[k], (enum cf_kind)k, db->cache);
	}

	existing = rocksdb_list_column_families(dbo, path, &nexisting, &rerr);
	if (rerr) {
		/* No database yet (or unreadable): creating starts from
		 * "default" alone and rocksdb_open reports any real error. */
		if (!o->create || o->read_only) {
			rc = open_errno(rerr);
			open_message(rc, path, rerr, err, errlen);
			goto fail;
		}
		rocksdb_free(rerr);
		rerr = NULL;
		/* even on error it returns a malloc'd (empty) array */
		if (existing)
			rocksdb_list_column_families_destroy(existing,
							     nexisting);
		existing = NULL;
		nexisting = 0;
	}

	/* default + ours + unknown existing ones */
	names = calloc(1 + ncf + nexisting, sizeof(*names));
	opts = calloc(1 + ncf + nexisting, sizeof(*opts));
	slot = calloc(1 + ncf + nexisting, sizeof(*slot));
	db->all = calloc(1 + ncf + nexisting, sizeof(*db->all));
	if (!names || !opts || !slot || !db->all)
		goto nomem;
	names[nopen] = "default";
	opts[nopen] = dbo;
	slot[nopen++] = -1;
	for (unsigned i = 0; i < ncf; i++) {
		const char *name = i == BLK_CF_BLOCKS	 ? "blocks"
				   : i == BLK_CF_REFS	 ? "refs"
				   : i == BLK_CF_JOURNAL ? "journal"
				   : i == BLK_CF_NEWLOG
				       ? "newlog"
				       : o->extra_cfs[i - BLK_CF_USER];
		enum cf_kind kind =
		    i == BLK_CF_BLOCKS ? CF_KIND_BLOCKS
		    : i == BLK_CF_REFS ? CF_KIND_REFS
		    : i >= BLK_CF_USER &&
			    is_large(o, o->extra_cfs[i - BLK_CF_USER])
			? CF_KIND_BLOCKS
			: CF_KIND_SMALL;

		if (i == BLK_CF_NEWLOG && !o->newlog &&
		    !name_in(name, existing, nexisting))
			continue; /* only when asked for, see store.h */
		if (o->read_only && !name_in(name, existing, nexisting)) {
			if (i < BLK_CF_JOURNAL) {
				rc = -ENOENT;
				set_err(err, errlen,
					"no node database in %s (column family "
					"'%s' missing)",
					path, name);
				goto fail;
			}
			continue; /* reads as empty, see note 1 */
		}
		names[nopen] = name;
		opts[nopen] = kind_opts[kind];
		slot[nopen++] = (int)i;
	}
	for (size_t i = 0; i < nexisting; i++) {
		if (strcmp(existing[i], "default") &&
		    !is_own_name(o, ncf, existing[i])) {
			names[nopen] = existing[i];
			opts[nopen] = kind_opts[CF_KIND_SMALL];
			slot[nopen++] = -1;
		}
	}

	if (o->read_only)
		db->rdb = rocksdb_open_for_read_only_column_families(
		    dbo, path, (int)nopen, names, opts, db->all, 0, &rerr);
	else
		db->rdb = rocksdb_open_column_families(
		    dbo, path, (int)nopen, names, opts, db->all, &rerr);
	if (rerr) {
		rc = open_errno(rerr);
		open_message(rc, path, rerr, err, errlen);
		db->rdb = NULL;
		goto fail;
	}
	db->nall = nopen;
	for (size_t i = 0; i < nopen; i++)
		if (slot[i] >= 0)
			db->cf[slot[i]] = db->all[i];

	db->ropts = rocksdb_readoptions_create();
	db->ropts_nocrc = rocksdb_readoptions_create();
	rocksdb_readoptions_set_verify_checksums(db->ropts_nocrc, 0);
	db->wopts = rocksdb_writeoptions_create();
	db->wopts_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(db->wopts_sync, 1);
	db->wopts_nowal = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(db->wopts_nowal, 1);

	rc = load_stats(db);
	if (rc < 0) {
		set_err(err, errlen,
			"cannot read block statistics of node database %s",
			path);
		goto fail;
	}
	if (!db->read_only) {
		rc = journal_recover(db);
		if (rc < 0) {
			set_err(err, errlen,
				"cannot replay the block journal of node "
				"database %s: %s",
				path, strerror(-rc));
			goto fail;
		}
	}
	goto out;

nomem:
	rc = -ENOMEM;
	set_err(err, errlen, "out of memory opening node database %s", path);
fail:
	blk_db_close(db);
	db = NULL;
out:
	if (rerr)
		rocksdb_free(rerr);
	if (existing)
		rocksdb_list_column_families_destroy(existing, nexisting);
	free(names);
	free(opts);
	free(slot);
	for (int k = 0; k < 3; k++)
		if (kind_opts[k])
			rocksdb_options_destroy(kind_opts[k]);
	if (dbo)
		rocksdb_options_destroy(dbo);
	if (db) {
		*out = db;
		return 0;
	}
	return rc;
}

void blk_db_close(struct blk_db *db)
{
	if (!db)
		return;
	/* RocksDB flushes memtables holding WAL-less writes at close, but
	 * only when nothing failed; do it explicitly (note 6). */
	if (db->rdb && !db->read_only)
		blk_db_sync(db);
	for (size_t i = 0; i < db->nall; i++)
		rocksdb_column_family_handle_destroy(db->all[i]);
	if (db->rdb)
		rocksdb_close(db->rdb);
	if (db->ropts)
		rocksdb_readoptions_destroy(db->ropts);
	if (db->ropts_nocrc)
		rocksdb_readoptions_destroy(db->ropts_nocrc);
	if (db->wopts)
		rocksdb_writeoptions_destroy(db->wopts);
	if (db->wopts_sync)
		rocksdb_writeoptions_destroy(db->wopts_sync);
	if (db->wopts_nowal)
		rocksdb_writeoptions_destroy(db->wopts_nowal);
	if (db->cache)
		rocksdb_cache_destroy(db->cache);
	pthread_mutex_destroy(&db->ref_lock);
	pthread_mutex_destroy(&db->compact_lock);
	pthread_mutex_destroy(&db->sync_lock);
	free(db->lost);
	free(db->all);
	free(db->path);
	free(db);
}

/* Write the bytes of the journaled blocks [first, upto) again, through the
 * WAL, and delete their journal records in the same batch. Called with
 * ref_lock held, so no commit can delete one of these blocks in between
 * and have the copy bring it back. */
static int journal_relog(struct blk_db *db, uint64_t first, uint64_t upto)
{
	uint8_t lo[8], hi[8];
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	struct blk_iter *it;
	char *rerr = NULL;
	int rc = 0;

	blk_put_be64(lo, first);
	blk_put_be64(hi, upto);
	it = blk_iter_new(db, BLK_CF_JOURNAL, NULL, 0, lo, sizeof(lo));
	if (!it) {
		rocksdb_writebatch_destroy(wb);
		return -ENOMEM;
	}
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, clen, vlen;
		const void *key = blk_iter_key(it, &klen);
		const void *cid = blk_iter_value(it, &clen);
		rocksdb_pinnableslice_t *ps;
		const char *v;

		if (key_cmp(key, klen, hi, sizeof(hi)) >= 0)
			break;
		rocksdb_writebatch_delete_cf(wb, db->cf[BLK_CF_JOURNAL], key,
					     klen);
		rc = get_pinned(db, BLK_CF_BLOCKS, cid, clen, &ps);
		if (rc == -ENOENT) {
			rc = 0;
			continue; /* deleted since: nothing to keep */
		}
		if (rc < 0)
			break;
		v = rocksdb_pinnableslice_value(ps, &vlen);
		rocksdb_writebatch_put_cf(wb, db->cf[BLK_CF_BLOCKS], cid, clen,
					  v, vlen);
		rocksdb_pinnableslice_destroy(ps);
	}
	if (rc == 0 && blk_iter_status(it) < 0)
		rc = -EIO;
	blk_iter_free(it);
	if (rc == 0) {
		rocksdb_write(db->rdb, db->wopts, wb, &rerr);
		if (rerr) {
			rc = rdb_errno(rerr);
			rerr = NULL;
		}
	}
	rocksdb_writebatch_destroy(wb);
	return rc;
}

/* Flush "blocks" (waiting until every memtable holding journaled bytes is
 * in SST and blob files), then delete the journal records [first, upto). */
static int journal_flush(struct blk_db *db, uint64_t first, uint64_t upto)
{
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	uint8_t lo[8], hi[8];
	rocksdb_writebatch_t *wb;
	char *rerr = NULL;

	rocksdb_flushoptions_set_wait(fo, 1);
	rocksdb_flush_cf(db->rdb, fo, db->cf[BLK_CF_BLOCKS], &rerr);
	rocksdb_flushoptions_destroy(fo);
	if (rerr)
		return rdb_errno(rerr);
	blk_put_be64(lo, first);
	blk_put_be64(hi, upto);
	wb = rocksdb_writebatch_create();
	rocksdb_writebatch_delete_range_cf(wb, db->cf[BLK_CF_JOURNAL],
					   (const char *)lo, sizeof(lo),
					   (const char *)hi, sizeof(hi));
	rocksdb_write(db->rdb, db->wopts, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr)
		return rdb_errno(rerr);
	return 0;
}

/* 0 or -EIO; a read-only database has nothing to sync and returns 0. */
int blk_db_sync(struct blk_db *db)
{
	uint64_t first, upto, bytes;
	char *rerr = NULL;
	int rc = 0;

	if (db->read_only)
		return 0;
	pthread_mutex_lock(&db->sync_lock);
	pthread_mutex_lock(&db->ref_lock);
	first = db->journal_first;
	upto = db->journal_seq;
	bytes = db->journal_bytes;
	if (upto > first && bytes <= RELOG_MAX) {
		rc = journal_relog(db, first, upto);
		if (rc == 0) {
			db->journal_first = upto;
			db->journal_bytes -= bytes;
		}
		pthread_mutex_unlock(&db->ref_lock);
	} else {
		pthread_mutex_unlock(&db->ref_lock);
		if (upto > first) {
			rc = journal_flush(db, first, upto);
			if (rc == 0) {
				pthread_mutex_lock(&db->ref_lock);
				db->journal_first = upto;
				db->journal_bytes -= bytes;
				pthread_mutex_unlock(&db->ref_lock);
			}
		}
	}
	if (rc == 0) {
		rocksdb_flush_wal(db->rdb, 1, &rerr);
		if (rerr)
			rc = rdb_errno(rerr);
	}
	pthread_mutex_unlock(&db->sync_lock);
	return rc;
}

struct newlog_ent {
	uint8_t cid[BLK_CID_MAX_BYTES];
	uint8_t seq[8];
};

static int newlog_ent_cmp(const void *a, const void *b)
{
	return memcmp(a, b, BLK_CID_MAX_BYTES);
}

/* Load the new-block log (store.h) sorted by CID, and set newlog_seq past
 * its last record. */
static int newlog_load(struct blk_db *db, struct newlog_ent **out, size_t *n)
{
	struct blk_iter *it;
	struct newlog_ent *v = NULL;
	size_t cap = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!db->cf[BLK_CF_NEWLOG])
		return 0;
	it = blk_iter_new(db, BLK_CF_NEWLOG, NULL, 0, NULL, 0);
	if (!it)
		return -ENOMEM;
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, clen;
		const uint8_t *key = blk_iter_key(it, &klen);
		const uint8_t *cid = blk_iter_value(it, &clen);

		if (klen != 8 || clen > BLK_CID_MAX_BYTES)
			continue;
		if (*n == cap) {
			struct newlog_ent *p;

			cap = cap ? 2 * cap : 256;
			p = realloc(v, cap * sizeof(*v));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			v = p;
		}
		memset(v[*n].cid, 0, sizeof(v[*n].cid));
		memcpy(v[*n].cid, cid, clen);
		memcpy(v[*n].seq, key, 8);
		(*n)++;
		db->newlog_seq = blk_get_be64(key) + 1;
	}
	if (rc == 0)
		rc = blk_iter_status(it);
	blk_iter_free(it);
	if (rc < 0) {
		free(v);
		*n = 0;
		return rc;
	}
	if (*n)
		qsort(v, *n, sizeof(*v), newlog_ent_cmp);
	*out = v;
	return 0;
}

/* Note 6, at open: every journaled block must be there. One that is not
 * is lost — its reference record goes and the statistics follow — unless
 * the new-block log shows it was handed on already (store.h): then peers
 * hold it and it is only marked evicted. The journal is cleared in the
 * same synced batch. */
static int journal_recover(struct blk_db *db)
{
	struct blk_iter *it;
	rocksdb_writebatch_t *wb;
	struct blk_store_stats st = db->stats;
	struct newlog_ent *nl = NULL;
	size_t nnl = 0, cap = 0, n = 0;
	uint64_t last = 0;
	char *rerr = NULL;
	int rc;

	rc = newlog_load(db, &nl, &nnl);
	if (rc < 0)
		return rc;
	it = blk_iter_new(db, BLK_CF_JOURNAL, NULL, 0, NULL, 0);
	if (!it) {
		free(nl);
		return -ENOMEM;
	}
	wb = rocksdb_writebatch_create();
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, clen;
		const void *key = blk_iter_key(it, &klen);
		const void *cid = blk_iter_value(it, &clen);
		rocksdb_pinnableslice_t *ps;
		uint8_t v[REFS_VALUE_MAX], flags, ck[BLK_CID_MAX_BYTES] = {0};
		struct newlog_ent *e;
		uint64_t refs;
		uint32_t len;
		struct blk_cid c;

		if (klen == 8)
			last = blk_get_be64(key) + 1;
		rocksdb_writebatch_delete_cf(wb, db->cf[BLK_CF_JOURNAL], key,
					     klen);
		if (blk_cid_from_bytes(&c, cid, clen) < 0)
			continue;
		rc = get_pinned(db, BLK_CF_BLOCKS, cid, clen, &ps);
		if (rc == 0) {
			rocksdb_pinnableslice_destroy(ps);
			continue; /* the bytes survived */
		}
		if (rc != -ENOENT)
			break;
		rc = read_refs_flags(db, &c, &refs, &len, &flags);
		if (rc < 0)
			break;
		if (rc == 0 || (flags & REFS_EVICTED)) {
			rc = 0;
			continue; /* deleted or evicted before the crash */
		}
		rc = 0;
		memcpy(ck, cid, clen);
		e = nnl ? bsearch(ck, nl, nnl, sizeof(*nl), newlog_ent_cmp)
			: NULL;
		if (db->cf[BLK_CF_NEWLOG] && !e) {
			/* uploaded already: only the local copy is gone */
			rocksdb_writebatch_put_cf(
			    wb, db->cf[BLK_CF_REFS], cid, clen, (const char *)v,
			    encode_refs(v, refs, len, flags | REFS_EVICTED));
			st.remote_bytes += len;
			continue;
		}
		if (n == cap) {
			struct blk_cid *p;

			cap = cap ? 2 * cap : 64;
			p = realloc(db->lost, cap * sizeof(*p));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			db->lost = p;
		}
		db->lost[n++] = c;
		rocksdb_writebatch_delete_cf(wb, db->cf[BLK_CF_REFS], cid,
					     clen);
		/* its upload record: neighbours in the sorted array may
		 * hold the same CID (stored, deleted, stored again) */
		for (struct newlog_ent *q = e;
		     q && q >= nl && !memcmp(q->cid, ck, sizeof(ck)); q--)
			rocksdb_writebatch_delete_cf(wb, db->cf[BLK_CF_NEWLOG],
						     (const char *)q->seq, 8);
		for (struct newlog_ent *q = e ? e + 1 : NULL;
		     q && q < nl + nnl && !memcmp(q->cid, ck, sizeof(ck)); q++)
			rocksdb_writebatch_delete_cf(wb, db->cf[BLK_CF_NEWLOG],
						     (const char *)q->seq, 8);
		st.blocks--;
		st.bytes -= len;
		st.ref_bytes -= refs * len;
	}
	if (rc == 0 && blk_iter_status(it) < 0)
		rc = -EIO;
	blk_iter_free(it);
	free(nl);
	if (rc == 0 && rocksdb_writebatch_count(wb) > 0) {
		put_stats(db, wb, &st);
		rocksdb_write(db->rdb, db->wopts_sync, wb, &rerr);
		if (rerr)
			rc = -EIO;
		else
			db->stats = st;
	}
	if (rerr)
		rocksdb_free(rerr);
	rocksdb_writebatch_destroy(wb);
	if (rc < 0)
		return rc;
	db->nlost = n;
	db->journal_seq = db->journal_first = last;
	return 0;
}

size_t blk_db_lost_blocks(struct blk_db *db, const struct blk_cid **cids)
{
	*cids = db->lost;
	return db->nlost;
}

void blk_db_forget_lost(struct blk_db *db)
{
	free(db->lost);
	db->lost = NULL;
	db->nlost = 0;
}

/*
 * Flush every column family (so deletions reach the SSTs and old WAL files
 * can go), then compact "blocks" and "refs" over their whole range, forcing
 * the bottommost level too, with blob GC switched on (age cutoff 1.0) for
 * the duration: every live blob the compaction meets is then relocated, so
 * every blob file that held a deleted block becomes unreferenced and is
 * removed. In the background GC stays off, so routine compactions never
 * rewrite file data. The cost is rewriting the
 * live blocks once: this is a maintenance operation.
 *
 * Returns 0, -EROFS on a read-only database, or -EIO when a flush or an
 * option change fails. RocksDB's C API does not report compaction errors;
 * they surface on later writes.
 */
int blk_db_compact(struct blk_db *db)
{
	static const char *const key[] = {"enable_blob_garbage_collection"};
	static const char *const full[] = {"true"};
	static const char *const normal[] = {"false"};
	rocksdb_flushoptions_t *fo;
	rocksdb_compactoptions_t *co;
	char *rerr = NULL;
	int rc = 0;

	if (db->read_only)
		return -EROFS;
	pthread_mutex_lock(&db->compact_lock);

	fo = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(fo, 1);
	for (size_t i = 0; i < db->nall && !rerr; i++)
		rocksdb_flush_cf(db->rdb, fo, db->all[i], &rerr);
	rocksdb_flushoptions_destroy(fo);
	if (rerr)
		goto out;

	rocksdb_set_options_cf(db->rdb, db->cf[BLK_CF_BLOCKS], 1, key, full,
			       &rerr);
	if (rerr)
		goto out;
	co = rocksdb_compactoptions_create();
	rocksdb_compactoptions_set_bottommost_level_compaction(
	    co, BOTTOMMOST_FORCE_OPTIMIZED);
	rocksdb_compact_range_cf_opt(db->rdb, db->cf[BLK_CF_BLOCKS], co, NULL,
				     0, NULL, 0);
	rocksdb_compact_range_cf_opt(db->rdb, db->cf[BLK_CF_REFS], co, NULL, 0,
				     NULL, 0);
	rocksdb_compactoptions_destroy(co);
	rocksdb_set_options_cf(db->rdb, db->cf[BLK_CF_BLOCKS], 1, key, normal,
			       &rerr);
out:
	if (rerr) {
		rocksdb_free(rerr);
		rc = -EIO;
	}
	pthread_mutex_unlock(&db->compact_lock);
	return rc;
}

/*
 * Sum the space allocated to the files in the database directory
 * (st_blocks, so sparse and preallocated files count as the file system
 * counts them): SSTs, blob files and WAL, plus RocksDB's small bookkeeping
 * files (MANIFEST, OPTIONS, LOG). Files deleted during the walk are skipped.
 * Returns 0, or a negative errno from opendir/fstatat.
 */
int blk_db_space(struct blk_db *db, struct blk_db_space *sp)
{
	struct statvfs vfs;

	if (statvfs(db->path, &vfs))
		return -errno;
	sp->total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	sp->avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	sp->pending = 0;
	for (size_t i = 0; i < db->nall; i++) {
		uint64_t v = 0;

		if (rocksdb_property_int_cf(db->rdb, db->all[i],
					    "rocksdb.cur-size-all-mem-tables",
					    &v) == 0)
			sp->pending += v;
	}
	return 0;
}

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

static rocksdb_column_family_handle_t *cf_handle(struct blk_db *db, unsigned cf)
{
	return cf < db->ncf ? db->cf[cf] : NULL;
}

/* Look @key up in @cf. Returns 0 with *@ps set (destroy it), -ENOENT
 * (also for a column family a read-only open found missing), -EINVAL for a
 * column family index that was never opened, or -EIO. */
static int get_pinned_opts(struct blk_db *db, unsigned cf, const void *key,
			   size_t klen, const rocksdb_readoptions_t *ro,
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
		return rdb_errno(rerr);
	return *ps ? 0 : -ENOENT;
}

static int get_pinned(struct blk_db *db, unsigned cf, const void *key,
		      size_t klen, rocksdb_pinnableslice_t **ps)
{
	return get_pinned_opts(db, cf, key, klen, db->ropts, ps);
}

/* See store.h. The handle is the pinnable slice itself. */
int blk_db_get_val(struct blk_db *db, unsigned cf, const void *key, size_t klen,
		   unsigned flags, struct blk_val **out)
{
	rocksdb_pinnableslice_t *ps;
	int rc;

	rc = get_pinned_opts(
	    db, cf, key, klen,
	    (flags & BLK_GET_NO_CRC) ? db->ropts_nocrc : db->ropts, &ps);
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

/* See store.h; also -EINVAL for a bad @cf and -ENOMEM. */
int blk_db_get(struct blk_db *db, unsigned cf, const void *key, size_t klen,
	       void **val, size_t *vlen)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc;

	rc = get_pinned(db, cf, key, klen, &ps);
	if (rc < 0)
		return rc;
	v = rocksdb_pinnableslice_value(ps, &n);
	*val = malloc(n ? n : 1);
	if (!*val) {
		rocksdb_pinnableslice_destroy(ps);
		return -ENOMEM;
	}
	if (n)
		memcpy(*val, v, n);
	*vlen = n;
	rocksdb_pinnableslice_destroy(ps);
	return 0;
}

/* See store.h; also -EINVAL for a bad @cf. */
int64_t blk_db_get_into(struct blk_db *db, unsigned cf, const void *key,
			size_t klen, void *buf, size_t cap)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc;

	rc = get_pinned(db, cf, key, klen, &ps);
	if (rc < 0)
		return rc;
	v = rocksdb_pinnableslice_value(ps, &n);
	if (n && cap)
		memcpy(buf, v, n < cap ? n : cap);
	rocksdb_pinnableslice_destroy(ps);
	return (int64_t)n;
}

/* Write one record (not synced). 0, -EINVAL for a bad @cf, -EROFS on a
 * read-only database, or -EIO. */
int blk_db_put(struct blk_db *db, unsigned cf, const void *key, size_t klen,
	       const void *val, size_t vlen)
{
	rocksdb_column_family_handle_t *h = cf_handle(db, cf);
	char *rerr = NULL;

	if (db->read_only)
		return -EROFS;
	if (!h)
		return -EINVAL;
	rocksdb_put_cf(db->rdb, db->wopts, h, key, klen, val, vlen, &rerr);
	if (rerr)
		return rdb_errno(rerr);
	return 0;
}

/* Byte-wise order, a proper prefix first: RocksDB's default comparator. */
static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/*
 * The iterator is bounded below by @prefix and above by the prefix
 * "incremented" (last byte that is not 0xff plus one, the 0xff bytes after
 * it dropped; a prefix of only 0xff bytes has no upper bound), so RocksDB
 * stops at the end of the prefix without comparing every key. It sees the
 * implicit snapshot RocksDB takes when it is created. A column family that
 * a read-only open found missing iterates as empty. Returns NULL on ENOMEM
 * or a bad @cf.
 */
struct blk_iter *blk_iter_new(struct blk_db *db, unsigned cf,
			      const void *prefix, size_t plen,
			      const void *start, size_t slen)
{
	struct blk_iter *it;
	size_t ulen = plen;
	char *upper;

	if (cf >= db->ncf)
		return NULL;
	it = calloc(1, sizeof(*it) + 2 * plen + 1);
	if (!it)
		return NULL;
	if (!db->cf[cf])
		return it;

	upper = it->bounds + plen;
	if (plen > 0) {
		memcpy(it->bounds, prefix, plen);
		memcpy(upper, prefix, plen);
	}
	while (ulen > 0 && (uint8_t)upper[ulen - 1] == 0xff)
		ulen--;
	if (ulen > 0)
		upper[ulen - 1] = (char)((uint8_t)upper[ulen - 1] + 1);

	it->ro = rocksdb_readoptions_create();
	if (plen > 0)
		rocksdb_readoptions_set_iterate_lower_bound(it->ro, it->bounds,
							    plen);
	if (ulen > 0)
		rocksdb_readoptions_set_iterate_upper_bound(it->ro, upper,
							    ulen);
	it->it = rocksdb_create_iterator_cf(db->rdb, it->ro, db->cf[cf]);

	/* Start at the later of @prefix and @start. */
	if (start && key_cmp(start, slen, prefix, plen) > 0)
		rocksdb_iter_seek(it->it, start, slen);
	else if (plen > 0)
		rocksdb_iter_seek(it->it, prefix, plen);
	else
		rocksdb_iter_seek_to_first(it->it);
	return it;
}

bool blk_iter_valid(struct blk_iter *it)
{
	return it->it && rocksdb_iter_valid(it->it);
}

void blk_iter_next(struct blk_iter *it)
{
	rocksdb_iter_next(it->it);
}

/* Key and value stay valid until the next blk_iter_next or blk_iter_free. */
const void *blk_iter_key(struct blk_iter *it, size_t *len)
{
	return rocksdb_iter_key(it->it, len);
}

const void *blk_iter_value(struct blk_iter *it, size_t *len)
{
	return rocksdb_iter_value(it->it, len);
}

int blk_iter_status(struct blk_iter *it)
{
	char *rerr = NULL;

	if (!it->it)
		return 0;
	rocksdb_iter_get_error(it->it, &rerr);
	if (rerr)
		return rdb_errno(rerr);
	return 0;
}

void blk_iter_free(struct blk_iter *it)
{
	if (!it)
		return;
	if (it->it)
		rocksdb_iter_destroy(it->it);
	if (it->ro)
		rocksdb_readoptions_destroy(it->ro);
	free(it);
}

/* Blocks */

/* Looks the refs record up: 1 (filled in), 0 (absent), -EIO, or -EUCLEAN
 * for a record of the wrong size. */
static int read_refs_flags(struct blk_db *db, const struct blk_cid *cid,
			   uint64_t *refs, uint32_t *len, uint8_t *flags)
{
	uint8_t key[BLK_CID_MAX_BYTES], v[REFS_VALUE_MAX];
	size_t klen = blk_cid_to_bytes(cid, key);
	int64_t n;

	n = blk_db_get_into(db, BLK_CF_REFS, key, klen, v, sizeof(v));
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	if (n > (int64_t)sizeof(v) ||
	    parse_refs(v, (size_t)n, refs, len, flags) < 0)
		return -EUCLEAN;
	return 1;
}

static int read_refs(struct blk_db *db, const struct blk_cid *cid,
		     uint64_t *refs, uint32_t *len)
{
	uint8_t flags;

	return read_refs_flags(db, cid, refs, len, &flags);
}

/* Eviction (store.h): the bytes go, the reference record stays, marked. */
int blk_store_evict(struct blk_db *db, const struct blk_cid *cid)
{
	uint8_t key[BLK_CID_MAX_BYTES], v[REFS_VALUE_MAX], flags;
	size_t klen = blk_cid_to_bytes(cid, key);
	rocksdb_writebatch_t *wb;
	struct blk_store_stats st;
	uint64_t refs;
	uint32_t len;
	char *rerr = NULL;
	int rc;

	if (db->read_only)
		return -EROFS;
	pthread_mutex_lock(&db->ref_lock);
	rc = read_refs_flags(db, cid, &refs, &len, &flags);
	if (rc <= 0 || (flags & REFS_EVICTED)) {
		pthread_mutex_unlock(&db->ref_lock);
		return rc < 0 ? rc : rc == 0 ? -ENOENT : 0;
	}
	st = db->stats;
	st.remote_bytes += len;
	wb = rocksdb_writebatch_create();
	rocksdb_writebatch_delete_cf(wb, db->cf[BLK_CF_BLOCKS],
				     (const char *)key, klen);
	rocksdb_writebatch_put_cf(
	    wb, db->cf[BLK_CF_REFS], (const char *)key, klen, (const char *)v,
	    encode_refs(v, refs, len, flags | REFS_EVICTED));
	put_stats(db, wb, &st);
	rocksdb_write(db->rdb, db->wopts, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr) {
		rc = rdb_errno(rerr);
	} else {
		db->stats = st;
		rc = (int)len;
	}
	pthread_mutex_unlock(&db->ref_lock);
	return rc;
}

int blk_store_fill(struct blk_db *db, const struct blk_cid *cid,
		   const void *data, size_t len)
{
	uint8_t key[BLK_CID_MAX_BYTES], v[REFS_VALUE_MAX], flags;
	size_t klen = blk_cid_to_bytes(cid, key);
	struct blk_txn *t;
	struct blk_store_stats st;
	uint64_t refs, jseq, jbytes = 0;
	uint32_t blen;
	int rc;

	if (db->read_only)
		return -EROFS;
	if (!blk_cid_verify(cid, data, len))
		return -EBADMSG;
	t = blk_txn_new(db);
	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&db->ref_lock);
	rc = read_refs_flags(db, cid, &refs, &blen, &flags);
	if (rc <= 0 || !(flags & REFS_EVICTED) || blen != len) {
		pthread_mutex_unlock(&db->ref_lock);
		blk_txn_free(t);
		return rc < 0 ? rc : rc == 0 ? -ENOENT : 0;
	}
	st = db->stats;
	st.remote_bytes -= len;
	jseq = db->journal_seq;
	put_bytes(t, (const char *)key, klen, data, len, false, &jseq, &jbytes);
	rocksdb_writebatch_put_cf(
	    t->wb, db->cf[BLK_CF_REFS], (const char *)key, klen,
	    (const char *)v, encode_refs(v, refs, blen, flags & ~REFS_EVICTED));
	put_stats(db, t->wb, &st);
	rc = write_batches(t, false);
	if (rc == 0) {
		db->stats = st;
		db->journal_seq = jseq;
		db->journal_bytes += jbytes;
	}
	pthread_mutex_unlock(&db->ref_lock);
	blk_txn_free(t);
	return rc;
}

int blk_store_info(struct blk_db *db, const struct blk_cid *cid, uint64_t *refs,
		   uint32_t *len, bool *local)
{
	uint8_t flags = 0;
	int rc = read_refs_flags(db, cid, refs, len, &flags);

	if (rc == 0)
		return -ENOENT;
	if (rc < 0)
		return rc;
	*local = !(flags & REFS_EVICTED);
	return 0;
}

int blk_db_delete(struct blk_db *db, unsigned cf, const void *key, size_t klen)
{
	rocksdb_column_family_handle_t *h = cf_handle(db, cf);
	char *rerr = NULL;

	if (db->read_only)
		return -EROFS;
	if (!h)
		return -EINVAL;
	rocksdb_delete_cf(db->rdb, db->wopts, h, key, klen, &rerr);
	if (rerr)
		return rdb_errno(rerr);
	return 0;
}

uint64_t blk_db_newlog_head(struct blk_db *db)
{
	uint64_t v;

	pthread_mutex_lock(&db->ref_lock);
	v = db->newlog_seq;
	pthread_mutex_unlock(&db->ref_lock);
	return v;
}

/* 1, 0, -EIO, or -EUCLEAN (a corrupt refs record). Looks at "refs" only:
 * by invariant 1 that answers for "blocks" without reading a blob. */
int blk_store_has(struct blk_db *db, const struct blk_cid *cid)
{
	uint64_t refs;
	uint32_t len;

	return read_refs(db, cid, &refs, &len);
}

/* 0 or -ENOENT/-EIO, -EUCLEAN (a corrupt refs record). */
int blk_store_refs(struct blk_db *db, const struct blk_cid *cid, uint64_t *refs,
		   uint32_t *len)
{
	int rc = read_refs(db, cid, refs, len);

	return rc == 0 ? -ENOENT : rc < 0 ? rc : 0;
}

/* Always 0: the totals are kept in memory (design note 4). */
int blk_store_stats(struct blk_db *db, struct blk_store_stats *st)
{
	pthread_mutex_lock(&db->ref_lock);
	*st = db->stats;
	pthread_mutex_unlock(&db->ref_lock);
	return 0;
}

/* Pinned block bytes, verified against @cid when the database was opened
 * with verify_on_read: 0, -ENOENT, -EIO, -EBADMSG. */
static int get_block(struct blk_db *db, const struct blk_cid *cid,
		     rocksdb_pinnableslice_t **ps, const char **v, size_t *n)
{
	uint8_t key[BLK_CID_MAX_BYTES];
	size_t klen = blk_cid_to_bytes(cid, key);
	int rc;

	rc = get_pinned(db, BLK_CF_BLOCKS, key, klen, ps);
	if (rc < 0)
		return rc;
	*v = rocksdb_pinnableslice_value(*ps, n);
	if (db->verify && !blk_cid_verify(cid, *v, *n)) {
		rocksdb_pinnableslice_destroy(*ps);
		return -EBADMSG;
	}
	return 0;
}

/* See store.h; also -ENOMEM. */
int blk_store_get(struct blk_db *db, const struct blk_cid *cid, void **data,
		  size_t *len)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc;

	rc = get_block(db, cid, &ps, &v, &n);
	if (rc < 0)
		return rc;
	*data = malloc(n ? n : 1);
	if (!*data) {
		rocksdb_pinnableslice_destroy(ps);
		return -ENOMEM;
	}
	if (n)
		memcpy(*data, v, n);
	*len = n;
	rocksdb_pinnableslice_destroy(ps);
	return 0;
}

/* See store.h. An @off at or past the end copies nothing and returns 0.
 * The value is read pinned (from the block cache, the memtable or the blob
 * file's read buffer) and only [off, off+len) is copied. */
int64_t blk_store_read(struct blk_db *db, const struct blk_cid *cid,
		       uint64_t off, void *dst, size_t len)
{
	rocksdb_pinnableslice_t *ps;
	const char *v;
	size_t n;
	int rc;

	rc = get_block(db, cid, &ps, &v, &n);
	if (rc < 0)
		return rc;
	if (off >= n)
		len = 0;
	else if (len > n - off)
		len = n - off;
	if (len)
		memcpy(dst, v + off, len);
	rocksdb_pinnableslice_destroy(ps);
	return (int64_t)len;
}

/* Transactions */

struct blk_txn *blk_txn_new(struct blk_db *db)
{
	struct blk_txn *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->db = db;
	t->wb = rocksdb_writebatch_create();
	t->bb = rocksdb_writebatch_create();
	return t;
}

void blk_txn_free(struct blk_txn *t)
{
	if (!t)
		return;
	rocksdb_writebatch_destroy(t->wb);
	rocksdb_writebatch_destroy(t->bb);
	free(t->refs);
	free(t);
}

/* @cf's handle for a transaction; a bad @cf is remembered and makes the
 * commit fail with -EINVAL. */
static rocksdb_column_family_handle_t *txn_cf(struct blk_txn *t, unsigned cf)
{
	rocksdb_column_family_handle_t *h = cf_handle(t->db, cf);

	if (!h && !t->err)
		t->err = -EINVAL;
	return h;
}

/* A bad @cf is remembered and makes the commit fail with -EINVAL. */
void blk_txn_put(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		 const void *val, size_t vlen)
{
	rocksdb_column_family_handle_t *h = txn_cf(t, cf);

	if (!h)
		return;
	rocksdb_writebatch_put_cf(t->wb, h, key, klen, val, vlen);
}

/* As blk_txn_put; the value is the concatenation of @v0 and @v1. */
void blk_txn_put2(struct blk_txn *t, unsigned cf, const void *key, size_t klen,
		  const void *v0, size_t l0, const void *v1, size_t l1)
{
	rocksdb_column_family_handle_t *h = txn_cf(t, cf);
	const char *kl[1] = {key}, *vl[2] = {v0, v1};
	size_t ks[1] = {klen}, vs[2] = {l0, l1};

	if (!h)
		return;
	rocksdb_writebatch_putv_cf(t->wb, h, 1, kl, ks, 2, vl, vs);
}

/* As blk_txn_put. */
void blk_txn_delete(struct blk_txn *t, unsigned cf, const void *key,
		    size_t klen)
{
	rocksdb_column_family_handle_t *h = txn_cf(t, cf);

	if (!h)
		return;
	rocksdb_writebatch_delete_cf(t->wb, h, key, klen);
}

static int add_ref(struct blk_txn *t, const struct blk_cid *cid, int64_t delta,
		   const void *data, size_t len)
{
	struct txn_ref *r;

	if (t->nrefs == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct txn_ref *n = realloc(t->refs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->refs = n;
		t->cap = cap;
	}
	r = &t->refs[t->nrefs++];
	r->klen = (uint8_t)blk_cid_to_bytes(cid, r->key);
	r->delta = delta;
	r->data = data;
	r->len = len;
	return 0;
}

/* See store.h. @data NULL means "bytes not supplied" (the block must then
 * be stored already at commit); an empty block is passed with a non-NULL
 * @data and @len 0. Also -EINVAL for a block longer than UINT32_MAX. */
int blk_txn_ref(struct blk_txn *t, const struct blk_cid *cid, const void *data,
		size_t len)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	return add_ref(t, cid, 1, data, len);
}

int blk_txn_unref(struct blk_txn *t, const struct blk_cid *cid)
{
	return add_ref(t, cid, -1, NULL, 0);
}

static int ref_cmp(const void *a, const void *b)
{
	const struct txn_ref *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);

	return c ? c : (int)x->klen - (int)y->klen;
}

/* Sort by CID and fold equal CIDs into one entry (summed delta, the first
 * bytes supplied); drop entries whose changes cancel. Returns the count. */
static size_t aggregate_refs(struct txn_ref *r, size_t n)
{
	size_t out = 0;

	if (n == 0)
		return 0;
	qsort(r, n, sizeof(*r), ref_cmp);
	for (size_t i = 0; i < n;) {
		struct txn_ref acc = r[i];

		for (i++; i < n && !ref_cmp(&acc, &r[i]); i++) {
			acc.delta += r[i].delta;
			if (!acc.data && r[i].data) {
				acc.data = r[i].data;
				acc.len = r[i].len;
			}
		}
		if (acc.delta != 0)
			r[out++] = acc;
	}
	return out;
}

/*
 * Called with ref_lock held: read the counts of the @n aggregated CIDs,
 * append the block, refs and stats changes to the batch and compute the new
 * totals in *@st. 0, -EIO, or -EUCLEAN (count below zero, new block without
 * bytes, corrupt refs record).
 */
/* The bytes of a block, through the WAL or, when large, without it and
 * journaled (note 6). */
static void put_bytes(struct blk_txn *t, const char *key, size_t klen,
		      const void *data, size_t len, bool wal, uint64_t *jseq,
		      uint64_t *jbytes)
{
	struct blk_db *db = t->db;

	if (!wal && len >= NOWAL_MIN) {
		uint8_t seq[8];

		rocksdb_writebatch_put_cf(t->bb, db->cf[BLK_CF_BLOCKS], key,
					  klen, data, len);
		blk_put_be64(seq, (*jseq)++);
		rocksdb_writebatch_put_cf(t->wb, db->cf[BLK_CF_JOURNAL],
					  (const char *)seq, sizeof(seq), key,
					  klen);
		*jbytes += len;
	} else {
		rocksdb_writebatch_put_cf(t->wb, db->cf[BLK_CF_BLOCKS], key,
					  klen, data, len);
	}
}

/* Write a transaction's batches: the block bytes that skip the WAL first,
 * so that no reference record is ever visible before its block (note 6),
 * then the rest. Should the second write fail, the first leaves bytes
 * without a reference: space, not a wrong answer. 0 or -EIO. */
static int write_batches(struct blk_txn *t, bool sync)
{
	struct blk_db *db = t->db;
	char *rerr = NULL;

	if (rocksdb_writebatch_count(t->bb) > 0)
		rocksdb_write(db->rdb, db->wopts_nowal, t->bb, &rerr);
	if (!rerr)
		rocksdb_write(db->rdb, sync ? db->wopts_sync : db->wopts, t->wb,
			      &rerr);
	if (rerr)
		return rdb_errno(rerr);
	return 0;
}

static int apply_refs(struct blk_txn *t, size_t n,
		      const rocksdb_column_family_handle_t **cfs,
		      const char **keys, size_t *klens, char **vals,
		      size_t *vlens, char **errs, struct blk_store_stats *st,
		      uint64_t *jseq, uint64_t *jbytes, uint64_t *nseq)
{
	struct blk_db *db = t->db;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		keys[i] = (const char *)t->refs[i].key;
		klens[i] = t->refs[i].klen;
		cfs[i] = db->cf[BLK_CF_REFS];
	}
	rocksdb_multi_get_cf(db->rdb, db->ropts, cfs, n, keys, klens, vals,
			     vlens, errs);

	/* Note 7: a commit that drops a reference keeps every byte it
	 * stores in the WAL. */
	bool wal = false;
	for (size_t i = 0; i < n; i++)
		wal |= t->refs[i].delta < 0;

	*st = db->stats;
	for (size_t i = 0; i < n; i++) {
		const struct txn_ref *r = &t->refs[i];
		uint64_t cur = 0;
		uint32_t len = 0;
		uint8_t flags = 0, v[REFS_VALUE_MAX];

		if (errs[i]) {
			rc = -EIO;
			break;
		}
		if (vals[i] && parse_refs((const uint8_t *)vals[i], vlens[i],
					  &cur, &len, &flags) < 0) {
			rc = -EUCLEAN;
			break;
		}
		if (r->delta < 0 && (uint64_t)-r->delta > cur) {
			rc = -EUCLEAN;
			break;
		}
		if (cur == 0) {
			/* 0 -> n: a new block (delta > 0 here) */
			if (!r->data) {
				rc = -EUCLEAN;
				break;
			}
			len = (uint32_t)r->len;
			put_bytes(t, keys[i], klens[i], r->data, r->len, wal,
				  jseq, jbytes);
			if (db->cf[BLK_CF_NEWLOG]) {
				uint8_t seq[8];

				blk_put_be64(seq, (*nseq)++);
				rocksdb_writebatch_put_cf(
				    t->wb, db->cf[BLK_CF_NEWLOG],
				    (const char *)seq, sizeof(seq), keys[i],
				    klens[i]);
			}
			st->blocks++;
			st->bytes += len;
		} else if (cur + (uint64_t)r->delta == 0) {
			/* n -> 0: the block goes */
			rocksdb_writebatch_delete_cf(
			    t->wb, db->cf[BLK_CF_BLOCKS], keys[i], klens[i]);
			rocksdb_writebatch_delete_cf(t->wb, db->cf[BLK_CF_REFS],
						     keys[i], klens[i]);
			st->blocks--;
			st->bytes -= len;
			st->ref_bytes -= cur * len;
			if (flags & REFS_EVICTED)
				st->remote_bytes -= len;
			continue;
		} else if ((flags & REFS_EVICTED) && r->data && r->len == len) {
			/* Written again while only peers hold it: keep the
			 * bytes at hand. */
			put_bytes(t, keys[i], klens[i], r->data, r->len, wal,
				  jseq, jbytes);
			flags &= (uint8_t)~REFS_EVICTED;
			st->remote_bytes -= len;
		} else if (wal && r->delta > 0 && r->data && r->len == len &&
			   len >= NOWAL_MIN) {
			/* Stored already, but perhaps only in a memtable
			 * (journaled, not synced): the new reference must not
			 * rest on bytes a crash can take (note 7). */
			put_bytes(t, keys[i], klens[i], r->data, r->len, true,
				  jseq, jbytes);
		}
		/* unsigned wrap-around adds a negative delta correctly */
		rocksdb_writebatch_put_cf(
		    t->wb, db->cf[BLK_CF_REFS], keys[i], klens[i],
		    (const char *)v,
		    encode_refs(v, cur + (uint64_t)r->delta, len, flags));
		st->ref_bytes += (uint64_t)r->delta * len;
	}

	for (size_t i = 0; i < n; i++) {
		if (vals[i])
			rocksdb_free(vals[i]);
		if (errs[i])
			rocksdb_free(errs[i]);
	}
	if (rc < 0)
		return rc;
	put_stats(db, t->wb, st);
	return 0;
}

/*
 * See store.h and design notes 3-5. Besides -EIO and -EUCLEAN: -EROFS on a
 * read-only database, -EINVAL after a put/delete to a bad column family,
 * -ENOMEM; nothing is applied in any of these cases.
 */
int blk_txn_commit(struct blk_txn *t, bool sync)
{
	struct blk_db *db = t->db;
	struct blk_store_stats st;
	const rocksdb_column_family_handle_t **cfs = NULL;
	const char **keys = NULL;
	size_t *klens = NULL, *vlens = NULL, n;
	char **vals = NULL, **errs = NULL;
	uint64_t jseq = 0, jbytes = 0, nseq = 0;
	int rc = 0;

	if (db->read_only)
		return -EROFS;
	if (t->err)
		return t->err;

	n = aggregate_refs(t->refs, t->nrefs);
	t->nrefs = 0; /* the transaction is spent */
	if (n > 0) {
		cfs = calloc(n, sizeof(*cfs));
		keys = calloc(n, sizeof(*keys));
		klens = calloc(n, sizeof(*klens));
		vlens = calloc(n, sizeof(*vlens));
		vals = calloc(n, sizeof(*vals));
		errs = calloc(n, sizeof(*errs));
		if (!cfs || !keys || !klens || !vlens || !vals || !errs) {
			rc = -ENOMEM;
			goto out;
		}
	} else if (rocksdb_writebatch_count(t->wb) == 0) {
		goto out;
	}

	/* Only reference changes need the lock; record-only transactions
	 * keep RocksDB's group commit (note 3). */
	if (n > 0) {
		pthread_mutex_lock(&db->ref_lock);
		jseq = db->journal_seq;
		nseq = db->newlog_seq;
		rc = apply_refs(t, n, cfs, keys, klens, vals, vlens, errs, &st,
				&jseq, &jbytes, &nseq);
	}
	if (rc == 0)
		rc = write_batches(t, sync);
	if (rc == 0 && n > 0) {
		db->stats = st;
		db->journal_seq = jseq;
		db->journal_bytes += jbytes;
		db->newlog_seq = nseq;
	}
	if (n > 0)
		pthread_mutex_unlock(&db->ref_lock);

out:
	rocksdb_writebatch_clear(t->wb);
	rocksdb_writebatch_clear(t->bb);
	free(cfs);
	free(keys);
	free(klens);
	free(vlens);
	free(vals);
	free(errs);
	return rc;
}
