/* The node's fragment store: fragments kept by name in one column family
 * of a record store (blocks/store/store.h), with their count and bytes, bounded
 * by a capacity and by the room left on the database's disk.
 *
 * A fragment is a caller-defined header of head_len bytes followed by its
 * bytes (1..UINT32_MAX of them); it is named by BLK_FRAG_NAME_LEN opaque
 * bytes (the storage node uses the wire fragment reference of
 * net/wire/proto.h: u32 LE CID type word, the 32-byte digest of the block's
 * CID, u8 fragment index). The store knows nothing of what a header means: a
 * caller-supplied check says whether a stored value is a sound fragment.
 *
 * Records in the column family:
 *   'F' name -> the header, then the fragment bytes
 *   'I' name -> u32 LE length of the fragment bytes: an index entry, so
 *               has, scan and delete never read fragment bytes
 *   'S'      -> u64 LE used bytes, u64 LE fragment count
 *   'L'      -> u64 LE fragments lost, u64 LE reserved (0): puts this
 *               store had acknowledged and lost since
 * Used bytes count the value of each fragment (head_len + its length).
 *
 * Invariants (kept under the store's lock by put and delete):
 *  1. A name has an 'F' record iff it has an 'I' record, and the 'I'
 *     record holds the length of the 'F' record's bytes after the header.
 *  2. The 'S' record, and the in-memory copy blk_fragstore_usage reports,
 *     equal the sums over the 'I' records; the three change together in
 *     one transaction.
 *  3. A sound stored fragment is never replaced by other bytes: put checks
 *     what is stored and writes in one critical section.
 *  4. Used bytes never grow past the capacity.
 *  5. The 'L' record only grows: at open, the records that the
 *     database's replay dropped from a damaged write-ahead log
 *     (blk_db_wal_damage) are added to it, each counted as one lost
 *     fragment (at most: a dropped record may also have been a delete, or
 *     another owner's record in a shared database). Invariants 1-4 hold
 *     all the same: the replay keeps a point in time.
 *
 * Durability: puts and deletes go to the WAL unsynced (they survive the
 * death of the process); blk_fragstore_sync makes all of them durable.
 *
 * Thread safety: every call may run on any thread at any time between
 * open and close. Readers (get, has, scan) take no lock: RocksDB gives
 * them a consistent view per key. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/db/db.h"

#define BLK_FRAG_NAME_LEN 37
/* Key of a fragment's 'F' (or 'I') record: a tag byte, then the name. */
#define BLK_FRAGSTORE_KEY_LEN (1 + BLK_FRAG_NAME_LEN)
#define BLK_FRAGSTORE_DEFAULT_DISK_RESERVE (64ull << 20)

struct blk_fragstore;

/* Whether @val (@len bytes: header, then fragment bytes) is a sound
 * fragment named @name: 0 if so, a negative errno if not. */
typedef int (*blk_frag_check_fn)(void *arg,
				 const uint8_t name[BLK_FRAG_NAME_LEN],
				 const void *val, size_t len);

/* Add the fragment store's column family, "frags" (large values), to
 * @r: its handle, for blk_fragstore_options.cf, or the error of
 * blk_cf_register. */
int blk_fragstore_register(struct blk_cf_registry *r);

struct blk_fragstore_options {
	/* The column family (blk_fragstore_register's handle), open in @db. */
	unsigned cf;
	size_t head_len;   /* bytes of every fragment's header, > 0 */
	uint64_t capacity; /* bytes; puts beyond it fail with -ENOSPC */
	/* The database's directory: a put that would leave less than
	 * disk_reserve bytes free on its file system gets -ENOSPC. NULL: no
	 * such check (capacity and failing writes only). */
	const char *data_dir;
	uint64_t disk_reserve; /* 0: BLK_FRAGSTORE_DEFAULT_DISK_RESERVE */
	/* Run by put on a fragment stored under the name it puts. NULL:
	 * every stored fragment is sound. */
	blk_frag_check_fn check;
	void *check_arg;
};

/* Open the store on @db, which the caller keeps open until
 * blk_fragstore_close returns. Loads the 'S' record, or recounts the 'I'
 * records when there is none, and the 'L' record (adding to it what the
 * database's open dropped, invariant 5, in a synced commit). Returns 0,
 * or:
 *   -EINVAL  a bad column family or head_len
 *   -EIO     the 'S' record is not one the store writes, or a read failed
 *   -ENOMEM */
int blk_fragstore_open(struct blk_db *db, const struct blk_fragstore_options *o,
		       struct blk_fragstore **out);

/* Free the store (not the database); NULL is fine. */
void blk_fragstore_close(struct blk_fragstore *fs);

/* How put went, when it returns 0. */
enum blk_frag_put_outcome {
	BLK_FRAG_STORED,   /* there was no fragment: now there is */
	BLK_FRAG_SAME,	   /* the same bytes were stored: nothing changed */
	BLK_FRAG_REPLACED, /* the stored value failed the check: replaced */
};

struct blk_frag_put_result {
	enum blk_frag_put_outcome outcome; /* when put returns 0 */
	/* When put returns -ENOSPC: the bytes used then, and whether the
	 * disk under data_dir was short of room for the value. */
	uint64_t used;
	bool disk_short;
};

/* Store the fragment @name: its header @head (head_len bytes) and @len
 * bytes @data, both copied before put returns. A sound fragment already
 * stored under @name (invariant 3) is kept: with the same @len bytes put
 * returns 0 and BLK_FRAG_SAME (whatever the header), with other bytes
 * -EEXIST. Returns 0 (outcome in @res), or:
 *   -EEXIST  another sound fragment is stored under @name
 *   -ENOSPC  over the capacity, the disk short of the reserve, or the
 *            write failing while it is (@res says which)
 *   -EIO     a read or the write failed; -ENOMEM
 * Nothing is changed unless put returns 0 with STORED or REPLACED. */
int blk_fragstore_put(struct blk_fragstore *fs,
		      const uint8_t name[BLK_FRAG_NAME_LEN], const void *head,
		      const void *data, uint32_t len,
		      struct blk_frag_put_result *res);

/* The stored value of @name (header, then bytes), read without copying,
 * with RocksDB's checksums of every table block and blob record it reads
 * (a damaged table file gives -EIO, never a crash or other bytes; the
 * caller still checks the value end to end). 0 (free *@out with
 * blk_val_free), -ENOENT or -EIO. */
int blk_fragstore_get(struct blk_fragstore *fs,
		      const uint8_t name[BLK_FRAG_NAME_LEN],
		      struct blk_val **out);

/* 1 if @name is stored, 0 if not, -EIO. */
int blk_fragstore_has(struct blk_fragstore *fs,
		      const uint8_t name[BLK_FRAG_NAME_LEN]);

/* Delete the @n fragments whose names are packed in @names (n *
 * BLK_FRAG_NAME_LEN bytes; a name may come more than once), in one
 * transaction. Sets bit i of @gone (byte i / 8, 1 << i % 8; the caller
 * zeroes it) when name i was stored and is now gone. 0, -ENOMEM or -EIO
 * (then nothing is deleted, whatever the bits say). */
int blk_fragstore_delete(struct blk_fragstore *fs, const uint8_t *names,
			 uint32_t n, uint8_t *gone);

/* Visit the stored fragments in name order, from the first name after
 * @after (NULL: from the first), calling @fn with each name and the
 * length of its bytes until @fn returns non-zero. Returns what @fn
 * returned last if non-zero, else 0; or -ENOMEM / -EIO. */
typedef int (*blk_frag_scan_fn)(void *arg,
				const uint8_t name[BLK_FRAG_NAME_LEN],
				uint32_t len);
int blk_fragstore_scan(struct blk_fragstore *fs,
		       const uint8_t after[BLK_FRAG_NAME_LEN],
		       blk_frag_scan_fn fn, void *arg);

struct blk_fragstore_usage {
	uint64_t capacity; /* as opened */
	uint64_t used;	   /* bytes of the stored values */
	uint64_t count;	   /* fragments stored */
	/* Fragment puts acknowledged and lost since (the 'L' record,
	 * invariant 5), and those of them this open found. */
	uint64_t lost, lost_at_open;
	/* A put of BLK_FRAG_FULL_LEN bytes would be refused now: the
	 * capacity or the disk (its reserve) has no room for it. */
	bool full;
};
#define BLK_FRAG_FULL_LEN (1u << 20)
void blk_fragstore_usage(struct blk_fragstore *fs,
			 struct blk_fragstore_usage *u);

/* Make every put and delete so far durable (blk_db_sync). 0 or -EIO. */
int blk_fragstore_sync(struct blk_fragstore *fs);

/* Whether the store's database met a background error (a damaged file
 * found by a compaction, say): a put that then fails with -EIO fails
 * because the database stopped taking writes, not for this fragment. */
bool blk_fragstore_damaged(struct blk_fragstore *fs);

/* Key of @name's 'F' record, for tools and tests that inspect or damage
 * the store. */
void blk_fragstore_frag_key(const uint8_t name[BLK_FRAG_NAME_LEN],
			    uint8_t out[BLK_FRAGSTORE_KEY_LEN]);
