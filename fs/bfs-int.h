/* The filesystem core's private header: struct bfs, its sub-objects and
 * its lock order, the inode and open-file structs, and what the files of
 * the core (bfs.c, inode.c, namespace.c, write.c, flush.c, hash.c,
 * space.c, read.c, damage.c, xattr.c, maint.c, recover.c) share. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "blocks/cid.h"
#include "blocks/store/store.h"
#include "fs/bfs.h"
#include "fs/hash.h"
#include "fs/wbuf.h"
#include "net/cluster/engine.h"

#define ITAB_BUCKETS (1u << 14)
#define INO_RESERVE 4096
/* The largest file size: the kernel's for a FUSE mount (MAX_LFS_FILESIZE,
 * the largest off_t), so that a write the kernel accepted and buffered is
 * never refused at writeback, where its error could only reach close().
 * Offsets are 64-bit all the way down (extent keys, the write buffer), and
 * an offset plus an extent length stays far below 2^64. */
#define BFS_FILE_MAX ((uint64_t)INT64_MAX)
#define XATTR_VALUE_MAX 65536

/* Space. Writes are refused with ENOSPC while less than their length is
 * left of the file system's free bytes, less what RocksDB holds in
 * memtables (their flush writes it), less the dirty bytes (their flush
 * stores them), less the room fallocate set aside (falloc.c; a write
 * into a reserved range is admitted against its own reservation), less
 * a reserve: room for metadata, deletes, flushes and
 * the compaction that gives deleted space back, so that RocksDB itself
 * never meets a full disk through our writes. statfs reports the same
 * room as free. A file system with less than SPACE_OPEN_MIN free is
 * mounted read-only: RocksDB cannot open for writing there. */
#define SPACE_RESERVE_MIN (8ull << 20)
#define SPACE_RESERVE_MAX (1ull << 30)
#define SPACE_RESERVE_SHIFT 5 /* 1/32 of the file system */
#define SPACE_OPEN_MIN (4ull << 20)
#define SPACE_LOOK_NS (10 * 1000000ull)
#define SPACE_NEAR (256ull << 20) /* look on every write below this */
#define SPACE_WARN_NS (60 * 1000000000ull)
/* a flush for room at most this often */
#define SPACE_FLUSH_NS (1000000000ull)
#define SPACE_GARBAGE (4ull << 20) /* worth a compaction when room is short */
#define SPACE_FULL_MARGIN (1ull << 20) /* status: full below reserve + this */
/* What one more empty file or directory costs on disk, for statfs's free
 * files: its record, its directory entry and their share of RocksDB's
 * overhead, rounded up to what a 255-byte name alone costs. */
#define BFS_INODE_BYTES 256

#define COMPACT_AFTER (128ull << 20)
#define RECLAIM_WAIT_MS 20000 /* a writer short of room waits this long */
#define RECLAIM_IDLE_MS 1000  /* ... unless a round ended this recently */
#define MAINT_PERIOD_S 2
#define SYNC_PERIODS 3 /* the store is synced every SYNC_PERIODS periods */

/* A range of a file that fallocate reserved room for: [off, end). */
struct bfs_resv {
	uint64_t off, end;
};

/* An inode in memory. Lock order: ext_lock before lock (the order of
 * both among the filesystem's locks is on struct bfs, below). */
struct bfs_inode {
	uint64_t ino;		 /* constant */
	struct bfs_inode *hnext; /* itab_lock: itab bucket chain */
	uint64_t nlookup;	 /* itab_lock: kernel references */
	uint32_t refs;		 /* itab_lock: our references */

	pthread_rwlock_t ext_lock; /* the extent map vs. ip->flushing */
	/* ext_lock (changed held exclusively, read held shared): bumped at
	 * every change of the extent map, so a reader that dropped ext_lock
	 * to fetch blocks can tell whether what it read still stands */
	uint64_t ext_gen;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* lock: editing finished */
	/* lock; nlink and the file type also change only under ns_lock,
	 * so namespace operations read them under ns_lock alone */
	struct bfs_inode_rec rec;
	char *target;	   /* symlink target, NUL-terminated: set before the
			    * inode is in the table, constant after */
	struct wbuf dirty; /* lock */
	/* lock to read; the ip->editing holder fills it under lock, reads
	 * it without, and empties it under ext_lock + lock */
	struct wbuf flushing;
	/* lock: a flush owns the extents; a sleeping lock held across
	 * network waits (its place in the lock order: struct bfs) */
	bool editing;
	bool queued;	      /* lock: on the flush queue */
	int flush_err;	      /* lock: sticky background flush error */
	uint64_t flush_floor; /* lock: dirty bytes a flush left behind */
	bool attr_dirty;      /* lock: record changed, not yet written */
	bool attr_commit;     /* lock: ... by more than its atime (a commit
				 takes an atime with the next other change) */
	/* lock: truncated to zero since a writer last closed it; that
	 * close orders the file's blocks before later commits (ext4's
	 * auto_da_alloc), so a rewrite in place survives a crash whole */
	bool da_close;
	bool attr_listed;		 /* itab_lock: on fs->attr_dirty */
	struct bfs_inode *anext, *aprev; /* itab_lock */
	uint32_t nopen;			 /* lock: open file handles */
	/* Room fallocate set aside for later writes (falloc.c): sorted,
	 * disjoint ranges, their total in resv_bytes (also counted in
	 * fs->space.claimed). In memory only: given back by writes into
	 * them, punch, truncate, and when the inode leaves memory. */
	struct bfs_resv *resv;	 /* lock */
	size_t nresv, cresv;	 /* lock */
	uint64_t resv_bytes;	 /* lock */
	struct bfs_inode *qnext; /* fs->fq.lock */
};

/* An open file: the last block read, so sequential reads of a block
 * smaller than the read size do not fetch it again. f->lock is taken
 * alone or under ip->ext_lock, never together with ip->lock, and never
 * held across a fetch from the cluster. */
struct bfs_file {
	struct bfs_inode *ip; /* constant */
	bool writer;	      /* constant: opened for writing */
	bool reader;	      /* constant: opened read-only */
	bool accessed; /* atomic: a read through it counted (bfs_access) */
	struct bfs_file *prev, *next; /* itab_lock: fs->files */
	pthread_mutex_t lock;
	struct blk_cid cid; /* lock */
	void *data;	    /* lock */
	size_t len;	    /* lock */
	bool cached;	    /* lock: cid, data and len hold a block */
	uint64_t next_off;  /* lock: where a sequential read goes on */
	uint64_t ahead;	    /* lock: prefetch asked up to here */
};

/* The flush queue (flush.c): inodes waiting for a background flush, the
 * threads that flush them, and the count of dirty memory writers are
 * held back on. Lock: lock (a leaf). Started by bfs_flushq_start, stopped
 * (queue emptied, threads joined) by bfs_flushq_stop. */
struct bfs_flushq {
	pthread_mutex_t lock;
	pthread_cond_t cond;	       /* lock: the queue has an inode */
	pthread_cond_t drain;	       /* lock: dirty_bytes went down */
	struct bfs_inode *head, *tail; /* lock, linked by ip->qnext */
	bool stop;		       /* lock: the flushers stop */
	/* All dirty + flushing bytes. An atomic, changed under lock (so
	 * that a waiter on drain cannot miss a drop) and under the
	 * inode's ip->lock with its buffers; read without a lock. */
	uint64_t dirty_bytes;
	pthread_t *threads; /* start/stop only */
	unsigned nthreads;  /* start/stop only: those that started */
};

/* The maintenance thread (maint.c): deferred attributes, eviction, the
 * periodic sync and space reclamation: deleted blocks leave garbage in
 * blob files until a compaction; the thread runs one once enough was
 * freed and writes have paused, and bfs_close runs a last one
 * (bfs_maint_final). Lock: lock (a leaf). */
struct bfs_maint {
	pthread_t thread; /* start/stop only */
	bool started;	  /* start/stop only */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* lock: stop, kick or gen changed */
	bool stop;	     /* lock */
	/* A writer short of room asks for a compaction now
	 * (bfs_maint_reclaim): it sets kick and waits on cond for gen to
	 * move; reclaimed says whether that round compacted, idle_at
	 * (CLOCK_MONOTONIC ms) when a round last ended. All lock. */
	bool kick;
	bool reclaimed;
	uint64_t gen;
	uint64_t idle_at;
	/* The thread's own: set by bfs_maint_start before it starts, read
	 * by bfs_maint_final after it was joined. */
	uint64_t freed;	   /* bytes freed since the last compaction */
	uint64_t prev;	   /* stored bytes at the last look */
	uint64_t overhead; /* disk bytes past stored bytes that the last
			    * compaction left */
};

/* Room on the node directory's file system (space.c): the last look at
 * it, taken again every SPACE_LOOK_NS or on every write once little is
 * left, and the room fallocate set aside. Lock: lock (a leaf, held
 * across the store's blk_db_space). No thread: init/destroy only. */
struct bfs_space {
	pthread_mutex_t lock;
	uint64_t avail;	  /* lock: free bytes, less the reserve */
	uint64_t pending; /* lock: memtable bytes not written */
	uint64_t total;	  /* lock */
	uint64_t at;	  /* lock: CLOCK_MONOTONIC ns of the look */
	uint64_t warned;  /* lock: when ENOSPC was last logged */
	uint64_t flushed; /* lock: when a writer short of room last flushed
			   * the memtables */
	/* Room set aside by fallocate (the sum of every inode's
	 * resv_bytes): an atomic, added to under lock (so that two claims
	 * cannot both take the last room), taken from without. */
	uint64_t claimed;
};

/* Blocks whose damage the log reported (damage.c), so that it says so
 * once per block, not once per read: a ring of the last ones. Lock: lock
 * (a leaf). */
struct bfs_damage {
	pthread_mutex_t lock;
	struct blk_cid *said; /* lock */
	size_t n, next;	      /* lock */
};

/*
 * The filesystem. Fields without a lock are set by bfs_open (or
 * bfs_set_engine, before requests run) and only read afterwards.
 *
 * Lock order (outer first; none is held across a FUSE reply, and none
 * across a fetch from the cluster except by a truncate whose prefetched
 * block went, bfs_truncate, and a fallocate punch whose prefetched edge
 * block went, falloc.c punch; the read path never is, bfs_read):
 *   ns_lock          namespace: every create, link, unlink, rename, and
 *                    bfs_write_attrs; the only holder of several inodes'
 *                    ip->lock at once
 *   ip->editing      NETWORK WAIT. A sleeping lock: a flag under ip->lock,
 *                    waited for on ip->cond. A flush owns an inode's
 *                    extents with it (flush_take .. flush_pass) and reads
 *                    old blocks back while holding it (fill_run), which
 *                    may fetch them from the cluster. Taken and waited
 *                    for holding no lock but ip->lock (bfs_edit_lock lets
 *                    go of ext_lock to wait). Its holder may take
 *                    ext_lock, ip->lock and every lock below; it never
 *                    takes ns_lock or waits for another inode's editing,
 *                    and no holder of ns_lock or ext_lock waits for it
 *   ip->ext_lock     an inode's extent map vs. its flushing buffer
 *   ip->lock         an inode's record, buffers and flush state
 *     f->lock        an open file's cached block: alone or under
 *                    ext_lock, never together with ip->lock
 *   itab_lock        the inode table, reference counts, attr_dirty, files
 *   fq.lock          the flush queue and the dirty-memory count's waiters
 *                    (struct bfs_flushq, flush.c)
 *   space.lock       the last look at the node's file system
 *                    (struct bfs_space, space.c)
 *   mt.lock          the maintenance thread's stop flag and wakeup
 *                    (struct bfs_maint, maint.c)
 *   hasher.lock      the hash helper's job (struct bfs_hasher, hash.c)
 *   damage.lock      the blocks reported as damaged
 *                    (struct bfs_damage, damage.c)
 *   count_lock       the inode count, across its commit
 * The last six are leaves of this list: none is held while another lock
 * of it is taken (space.lock is held across the store's blk_db_space).
 * The store's own locks (blocks/store/store.c) and the cluster engine's
 * (through cl_engine_kick, under ext_lock + ip->lock) come after all of these.
 */
struct bfs {
	struct bfs_config cfg;
	char *node_dir;
	struct blk_db *db;
	struct blk_store *store; /* the block store on @db */
	/* The handles of the fragment store's and the engine's families in
	 * @db (bfs.c open_db). */
	unsigned cf_frags, cf_repair;
	struct cl_engine *peers; /* NULL: a single node */
	/* bfs_set_commit_hook: set before serving, cleared before stopping
	 * (no lock: no request runs at either time). */
	int (*commit_fn)(void *arg, struct bfs_commit_info *out);
	bool pending; /* bfs_open_pending; set and cleared before serving */
	void *commit_arg;
	uint64_t max_extent; /* longest extent any mount of this fs wrote */

	pthread_mutex_t ns_lock;
	uint64_t next_ino;     /* ns_lock */
	uint64_t ino_reserved; /* ns_lock: next_ino < ino_reserved */

	/* Inode records in the store (statfs's used files): changed only
	 * by bfs_txn_commit_counted, which holds count_lock across the
	 * commit that also writes the count, so the stored count always
	 * matches the stored records. */
	pthread_mutex_t count_lock;
	uint64_t n_inodes; /* count_lock */
	/* The next change mark's sequence number (bfs_txn_mark_changed):
	 * one past the last mark on disk at open, then atomic. */
	_Atomic uint64_t change_seq;

	/* The table of in-memory inodes: its chains, each inode's refs, and
	 * the two lists whose membership is part of an inode's life in it,
	 * so one lock: a handle in files is one of its inode's references,
	 * and eviction takes an inode out of attr_dirty in the critical
	 * section that takes it out of the table. */
	pthread_mutex_t itab_lock;
	struct bfs_inode **itab; /* itab_lock: ITAB_BUCKETS hash chains */
	struct bfs_file *files;	 /* itab_lock: open handles, for shutdown */
	/* Inodes whose record has attribute changes not yet written: the
	 * times the kernel reports for its cached writes (BFS_SET_LAZY),
	 * one per file written, go in batches. Explicit setattrs are
	 * committed at once. No reference is held: eviction unlinks an
	 * inode and writes its record itself. */
	struct bfs_inode *attr_dirty; /* itab_lock, linked by anext/aprev */

	struct bfs_flushq fq;	  /* flush.c */
	struct bfs_maint mt;	  /* maint.c */
	struct bfs_space space;	  /* space.c */
	struct bfs_damage damage; /* damage.c */
	/* A helper thread that hashes chunks beside the flusher (hash.c). */
	struct bfs_hasher hasher;

	/* Counters for the log at unmount (relaxed atomics). */
	uint64_t n_flushes, n_hashed, n_committed, n_sync_flushes;
};

/* ---- inode.c: records, the inode table, deferred attributes ---------- */

/* The current time for inode timestamps (CLOCK_REALTIME). */
void bfs_now(struct timespec *ts);
/* Put @ip's whole record in @t (the caller holds ip->lock): any deferred
 * attribute change goes with it. */
/* Put @ip's whole record in @t (the caller holds ip->lock), with a change
 * mark for the next commit (bfs_txn_mark_changed). */
void bfs_txn_put_inode(struct bfs *fs, struct blk_txn *t, struct bfs_inode *ip);
/* The same without the change mark: an atime alone, which the next
 * commit of another change carries (reads would otherwise commit, and
 * upload, a directory's attributes on every first read of a file). */
void bfs_txn_put_inode_quiet(struct blk_txn *t, struct bfs_inode *ip);
/* Note in @t that inode @ino changed: a record in the changes family
 * under a sequence number no other mark has, so that a commit deletes
 * exactly the marks it read (fs/commit). */
void bfs_txn_mark_changed(struct bfs *fs, struct blk_txn *t, uint64_t ino);

/* upgrade.c: fs->change_seq from the marks on disk; the upgrade of a
 * format 1 filesystem. 0 or -errno. */
int bfs_load_change_seq(struct bfs *fs);
int bfs_upgrade_v1(struct bfs *fs);
/* Commit and free @t; a failure is logged. 0 or -errno. */
int bfs_txn_commit(struct blk_txn *t, bool sync);
/* bfs_txn_commit for a transaction that adds (@delta 1) or deletes (-1)
 * an inode record: the inode count goes with it. */
int bfs_txn_commit_counted(struct bfs *fs, struct blk_txn *t, int delta);
/* The META key that marks @ino unlinked but not yet purged (32 bytes). */
void bfs_orphan_key(char *key, uint64_t ino);
/* A new in-memory inode (no references, not in the table), or NULL. */
struct bfs_inode *bfs_inode_alloc(uint64_t ino);
void bfs_inode_free(struct bfs_inode *ip);
/* Insert a new in-memory inode (refs 1), or return the one already there
 * (refs+1) and free @ip. */
struct bfs_inode *bfs_itab_insert(struct bfs *fs, struct bfs_inode *ip);
/* One more reference to an inode the caller holds a reference to. */
void bfs_inode_ref(struct bfs *fs, struct bfs_inode *ip);
/* Note that @ip's record changed in memory only (the caller holds
 * ip->lock); bfs_write_attrs writes it. */
void bfs_mark_attr_dirty(struct bfs *fs, struct bfs_inode *ip);
/* Write every deferred attribute change; 0 or the first error. */
int bfs_write_attrs(struct bfs *fs);
/* Own @ip's extent map for an edit (a truncate, a punch): ext_lock
 * exclusively, then ip->lock, once no flush edits it (ip->editing);
 * ext_gen is bumped. The caller unlocks both. */
void bfs_edit_lock(struct bfs_inode *ip);
/* Free an unlinked inode's data and records (it is out of the table). */
int bfs_purge_inode(struct bfs *fs, struct bfs_inode *ip);

/* ---- xattr.c: POSIX ACLs kept in step with the mode ------------------ */

/* In @ip's transaction @t (the caller holds ip->lock): a chmod of @ip to
 * @mode changes its stored access ACL too (posix_acl_chmod). 0 or
 * -errno. */
int bfs_acl_chmod_txn(struct bfs *fs, struct bfs_inode *ip, mode_t mode,
		      struct blk_txn *t);
/* For a new inode @ino of *@mode in directory @dp (dp->lock held): with a
 * default ACL on @dp, put the ACLs @ino inherits in @t and mask *@mode
 * with it (posix_acl_create), else take @umask from *@mode. Symlinks
 * take neither. 0 or -errno. */
int bfs_acl_inherit(struct bfs *fs, const struct bfs_inode *dp, uint64_t ino,
		    mode_t *mode, mode_t umask, struct blk_txn *t);

/* ---- write.c: the write path ----------------------------------------- */

bool bfs_all_zero(const uint8_t *p, size_t n);
/* Flush @ip: one pass of about flush_at bytes, or with @final until
 * nothing is buffered. *committed (optional) gets the bytes committed.
 * 0 or -errno (the data then stays buffered, ip->flush_err set). */
int bfs_flush_inode(struct bfs *fs, struct bfs_inode *ip, bool final,
		    uint64_t *committed);
/* The block a truncate cuts, fetched before the truncate takes its
 * locks (bfs_truncate_fetch); data NULL: none. */
struct bfs_tail {
	struct blk_cid cid;
	void *data;
	size_t len;
};
/* Before a truncate of @ip to @size takes ext_lock: with a cluster, fetch
 * the block that the new end cuts when it is not local, so that
 * bfs_truncate does not wait on the network under the lock. Takes no
 * lock; a miss (the map changed meanwhile, the fetch failed) only means
 * that bfs_truncate reads the block itself. Free @tail->data after. */
void bfs_truncate_fetch(struct bfs *fs, struct bfs_inode *ip, uint64_t size,
			struct bfs_tail *tail);
/* Cut @ip at @size in @t and in its dirty buffer; the caller holds
 * ext_lock exclusively and ip->lock, and no flush runs (!ip->editing).
 * The block the new end cuts comes from @tail (NULL fine) when it is
 * that one. *keep gets a buffer to free after the commit. */
int bfs_truncate(struct bfs *fs, struct bfs_inode *ip, uint64_t size,
		 const struct bfs_tail *tail, struct blk_txn *t, void **keep);

/* ---- seek.c: data and holes ------------------------------------------ */

/* The first offset at or after @pos that holds data (an extent or a
 * buffered byte) in *at, UINT64_MAX if none; ext_lock held (either way),
 * ip->lock not. 0 or -errno. */
int bfs_data_next(struct bfs *fs, struct bfs_inode *ip, uint64_t pos,
		  uint64_t *at);
/* Where the data that runs on from @pos without a gap ends (@pos when
 * @pos is in a hole), in *end; as bfs_data_next. */
int bfs_data_end(struct bfs *fs, struct bfs_inode *ip, uint64_t pos,
		 uint64_t *end);

/* ---- falloc.c: reserved room ------------------------------------------ */

/* Bytes of @ip's reservation (fallocate mode 0) in [off, end); ip->lock
 * held. */
uint64_t bfs_resv_overlap(const struct bfs_inode *ip, uint64_t off,
			  uint64_t end);
/* Give back @ip's reservation in [off, end) (a write, a punch, a
 * truncate: UINT64_MAX for @end); ip->lock held. */
void bfs_resv_drop(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
		   uint64_t end);

/* ---- flush.c: dirty memory, the flush queue ------------------------- */

/* Add @delta to the dirty bytes; waiting writers wake when it drops. */
void bfs_dirty_account(struct bfs *fs, int64_t delta);
/* Queue @ip for a background flush (takes a reference); the caller set
 * ip->queued. */
void bfs_enqueue(struct bfs *fs, struct bfs_inode *ip);
void bfs_flushq_init(struct bfs_flushq *fq);
/* Start cfg.flushers flusher threads (fs->fq.nthreads counts those that
 * started); 0 or -errno. */
int bfs_flushq_start(struct bfs *fs);
/* Stop the flushers once they emptied the queue, and join them; a no-op
 * if they never started. */
void bfs_flushq_stop(struct bfs *fs);
void bfs_flushq_destroy(struct bfs_flushq *fq);
/* Hold a writer of @ip back while dirty memory is over cfg.dirty_max;
 * 0 or the error of the flush it forced. */
int bfs_throttle(struct bfs *fs, struct bfs_inode *ip);

/* ---- space.c: room on the node's file system ------------------------- */

void bfs_space_init(struct bfs_space *sp);
void bfs_space_destroy(struct bfs_space *sp);
/* Bytes writes may still add, looking at the file system again when the
 * last look is old or little was left (@fresh: always). *total
 * (optional) gets the file system's size, 0 if it was never seen. */
uint64_t bfs_space_room(struct bfs *fs, bool fresh, uint64_t *total);
/* Forget the last look, so the next one looks again (a compaction gave
 * space back). */
void bfs_space_forget(struct bfs *fs);
/* 0 if @len more bytes fit, else -ENOSPC (logged once a minute). */
int bfs_space_admit(struct bfs *fs, uint64_t len);
/* Set @len bytes of room aside for a reservation (fallocate): 0, or
 * -ENOSPC when less is left (not logged: the caller asked for too much,
 * the disk is not full). */
int bfs_space_claim(struct bfs *fs, uint64_t len);
/* Give @len bytes of reservation back. */
void bfs_space_unclaim(struct bfs *fs, uint64_t len);
/* The reserve: free bytes writes leave alone (blk_store_compact may use
 * half of it). */
uint64_t bfs_space_reserve(struct bfs *fs);
/* Say how the last compaction went (@err: 0 or its errno) where
 * `blockfs status` reads it: NODE_DIR/BFS_COMPACT_ERR_FILE holds the
 * last failure until a compaction succeeds. Called by the maintenance
 * thread, and at unmount once it has stopped. */
#define BFS_COMPACT_ERR_FILE "compaction-error"
void bfs_space_compacted(struct bfs *fs, int err);

/* ---- damage.c: naming damaged data in the log --------------------- */

void bfs_damage_init(struct bfs_damage *d);
/* Frees the ring too. */
void bfs_damage_destroy(struct bfs_damage *d);
/* The path of @ino in the filesystem ("/dir/file",
 * one of them for an inode of several links) into @buf: 0, -ENOENT (no
 * directory entry names it: unlinked), -ENAMETOOLONG, -ELOOP, -ENOMEM,
 * -EIO. Scans the directory entries once per level: for log lines. */
int bfs_ino_path(struct bfs *fs, uint64_t ino, char *buf, size_t len);
/* bfs_ino_path for a log line: "(unlinked)", "(path unknown: ...)" or,
 * for @ino 0, "(a file being rewritten)" when there is no path. */
void bfs_ino_describe(struct bfs *fs, uint64_t ino, char *buf, size_t len);
/* Log, once per block, that block @cid at offset @off of inode @ino (0:
 * not known) could not be read (@err), naming the file's path. */
void bfs_damage_unreadable(struct bfs *fs, uint64_t ino, uint64_t off,
			   const struct blk_cid *cid, int err);
/* Log, once per block, that the local copy of @cid failed (@damage) and
 * was fetched from the cluster, and written back unless @rewrite < 0. */
void bfs_damage_healed(struct bfs *fs, uint64_t ino, const struct blk_cid *cid,
		       int damage, int rewrite);

/* ---- read.c: blocks, local or fetched -------------------------------- */

/* Whether block @cid is referenced here but its bytes are not in the
 * local store (evicted, or lost with a disk): a read fetches it. */
bool bfs_block_evicted(struct bfs *fs, const struct blk_cid *cid);
/* Read [off, off+len) of block @cid into @dst, from the store or else the
 * cluster (also when the local copy is damaged: it is healed); the bytes
 * read or -errno. May wait on the network. */
int64_t bfs_block_read(struct bfs *fs, const struct blk_cid *cid, uint64_t off,
		       void *dst, size_t len);

/* ---- maint.c: eviction, periodic sync, compaction -------------------- */

void bfs_maint_init(struct bfs_maint *mt);
/* Start the maintenance thread; 0 or -errno. */
int bfs_maint_start(struct bfs *fs);
/* Stop the maintenance thread and join it (if it started). */
void bfs_maint_stop(struct bfs *fs);
void bfs_maint_destroy(struct bfs_maint *mt);
/* At unmount, after the threads stopped: sync the store and compact if
 * anything was freed since the last compaction. 0 or the sync's error. */
int bfs_maint_final(struct bfs *fs);
/* For a writer short of room, holding no lock: have the maintenance
 * thread compact now if blocks were deleted since the last compaction,
 * and wait for it (at most RECLAIM_WAIT_MS). Whether a compaction ran;
 * false at once within RECLAIM_IDLE_MS of the end of the last round. */
bool bfs_maint_reclaim(struct bfs *fs);

/* ---- recover.c: what a crash or an unclean stop left ----------------- */

/* Drop the extents that point at blocks the store lost in a crash. */
int bfs_drop_lost_extents(struct bfs *fs);
/* Free inodes unlinked while open when the daemon last stopped. */
int bfs_purge_orphans(struct bfs *fs);
