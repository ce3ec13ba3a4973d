/* The filesystem core: inodes, directories, files and their write buffers
 * over the node database, as operations that return 0 or a negative errno.
 * fs/fuse.c turns them into FUSE replies; nothing here knows FUSE.
 *
 * The lock order is written on struct bfs (fs/bfs-int.h), the states and
 * invariants of the write path at the top of fs/write.c. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "blocks/cdc.h"
#include "blocks/store/store.h"
#include "fs/cred.h"
#include "fs/meta.h"

struct bfs;
struct cl_engine; /* net/cluster/engine.h */

/* When a read updates a file's atime (mount options relatime, noatime,
 * strictatime; relatime is the default, as on Linux). */
enum bfs_atime {
	BFS_ATIME_RELATIME, /* when not newer than mtime or ctime, or a day
			     * old */
	BFS_ATIME_NOATIME,  /* never */
	BFS_ATIME_STRICT,   /* at every read */
};

struct bfs_config {
	const char *node_dir;
	enum cdc_kind chunker;
	uint32_t chunk_min, chunk_avg, chunk_max;
	/* The hash of new file data's CIDs: the cluster file's [filesystem]
	 * hash. Zero is blake2b-256: whoever fills a config sets it
	 * (BLK_HASH_DEFAULT for sha2-256). */
	enum blk_hash hash;
	bool read_only;
	size_t cache_bytes; /* RocksDB block cache */
	bool verify_reads;  /* re-hash every block read against its CID */
	uint64_t dirty_max; /* all files' unflushed bytes before writers wait */
	uint64_t flush_at;  /* a file's dirty bytes that start a flush */
	unsigned flushers;  /* background flush threads */
	bool newlog; /* keep the store's new-block log (net/cluster/engine.h) */
	uint64_t local_max; /* local block bytes kept once on peers (0: all) */
	enum bfs_atime atime;
	bool nodiratime; /* listing a directory leaves its atime */
	/* A writable open of a database that holds no filesystem yet stops
	 * there (bfs_open_pending): the caller may first rebuild one from
	 * the cluster (fs/commit/rebuild.h), then bfs_open_finish, which
	 * makes a new filesystem if there is still none. */
	bool defer_mkfs;
};

/* Read-only attribute of the root directory: the mount's own view of the
 * cluster's nodes, one line per node, "NAME up|down LATENCY_US\n" (latency
 * of the last heartbeats, 1 for the mount's own node, 0 before any). Not
 * listed by listxattr (so cp -a and rsync -X do not copy it); setting or
 * removing any "blockfs." attribute fails with EPERM. */
#define BFS_XATTR_NODES "blockfs.nodes"
#define BFS_XATTR_PREFIX "blockfs."

/* An inode in memory and an open file: private to the core
 * (fs/bfs-int.h); the functions below take and give them. */
struct bfs_inode;
struct bfs_file;

struct bfs_dirent {
	uint64_t ino;
	uint8_t dtype;
	char *name;
};

struct bfs_dir {
	struct bfs_dirent *ents;
	size_t n;
	bool loaded;
};

/* Open the node's database and the filesystem in it (created on first
 * use). On error a negative errno and a message in @err. */
int bfs_open(const struct bfs_config *cfg, struct bfs **out, char *err,
	     size_t errlen);
/* After bfs_open with cfg->defer_mkfs: whether the database held no
 * filesystem, and the rest of the open (the database is open: bfs_db and
 * bfs_store work before it). 0 or -errno with a message in @err. */
bool bfs_open_pending(const struct bfs *fs);
int bfs_open_finish(struct bfs *fs, char *err, size_t errlen);
/* Whether the filesystem is read-only: asked for, or forced by a full
 * file system at open. */
bool bfs_read_only(const struct bfs *fs);
/* Flush every file, stop the flushers, close the database; NULL is fine.
 * Returns 0, or the first error seen while flushing. */
int bfs_close(struct bfs *fs);
/* Flush every dirty file and make the database durable (and, with a
 * remote, everything on its placement). */
int bfs_sync_all(struct bfs *fs);

/* Attach the cluster engine (net/cluster/engine.h): from now on blocks missing
 * from the store are fetched through @peers, new ones are announced to its
 * uploader and fsync waits for its barrier (unless the filesystem is
 * read-only). NULL detaches. Not while requests run; @peers must stay
 * open until it is detached. */
void bfs_set_engine(struct bfs *fs, struct cl_engine *peers);
/* What 'blockfs commit' (BFS_IOC_COMMIT) calls: the mount's commit
 * (fs/commit/commit.h), set before the mount serves and cleared (NULL)
 * before it stops; bfs_commit_request returns its result, or
 * -EOPNOTSUPP while none is set (a read-only mount). */
struct bfs_commit_info {
	uint64_t seq;	/* the head's sequence number */
	char root[80];	/* its root CID, text (NUL-terminated) */
	char attrs[80]; /* its attribute block's CID */
	/* What this commit encoded (0 when nothing changed): inodes, and
	 * the blocks and bytes it wrote. */
	uint64_t inodes, blocks, bytes;
};
void bfs_set_commit_hook(struct bfs *fs,
			 int (*fn)(void *arg, struct bfs_commit_info *out),
			 void *arg);
int bfs_commit_request(struct bfs *fs, struct bfs_commit_info *out);
struct blk_db *bfs_db(struct bfs *fs);
struct blk_store *bfs_store(struct bfs *fs);
/* The handles of the node's other families in bfs_db: the fragment store's
 * (blk_fragstore_register) and the cluster engine's (cl_engine_register). */
unsigned bfs_cf_frags(struct bfs *fs);
unsigned bfs_cf_repair(struct bfs *fs);

/* Inode references. bfs_iget loads an inode (refs+1). bfs_iput drops one;
 * bfs_forget drops kernel lookups. An unlinked inode's data is freed when
 * the last of both goes. bfs_ref_lookup records one kernel lookup. */
int bfs_iget(struct bfs *fs, uint64_t ino, struct bfs_inode **out);
void bfs_iput(struct bfs *fs, struct bfs_inode *ip);
void bfs_ref_lookup(struct bfs *fs, struct bfs_inode *ip);
void bfs_forget(struct bfs *fs, uint64_t ino, uint64_t n);

void bfs_stat(struct bfs_inode *ip, struct stat *st);
/* The inode number of @ip. */
uint64_t bfs_inode_ino(const struct bfs_inode *ip);
/* The file type and permission bits of @ip (st_mode). */
mode_t bfs_inode_mode(struct bfs_inode *ip);

/* A read of @ip (a file read, a directory listed): its atime moves to now
 * when the mount's atime rule (cfg.atime, cfg.nodiratime) says so. The
 * new atime is a deferred attribute change, written in the next batch
 * (bfs_write_attrs) as the kernel's own mtime reports are, never by the
 * read. Returns whether atime changed (the kernel's cached attributes
 * are then stale). */
bool bfs_access(struct bfs *fs, struct bfs_inode *ip);
/* bfs_access for a read through @f (@closing false), or its close(2)
 * (@closing true). Reads the page cache serves never reach the daemon,
 * so the close of a read-only handle that sent no read counts as one; a
 * handle counts once, or at every read with strictatime. */
bool bfs_file_access(struct bfs *fs, struct bfs_file *f, bool closing);

/* Namespace. Every function returning an inode returns it referenced
 * (bfs_iput it); the caller counts the kernel's lookup (bfs_ref_lookup). */
int bfs_lookup(struct bfs *fs, uint64_t parent, const char *name,
	       struct bfs_inode **out);
/* @mode is the mode asked for (with its type), before @umask: a new inode
 * in a directory with a default ACL takes that ACL masked by @mode
 * (posix_acl_create, which ignores the umask), any other gets @mode less
 * @umask. Symlinks (@target set) take neither. */
int bfs_mknod(struct bfs *fs, uint64_t parent, const char *name, mode_t mode,
	      mode_t umask, dev_t rdev, uid_t uid, gid_t gid,
	      const char *target, struct bfs_inode **out);
int bfs_link(struct bfs *fs, uint64_t ino, uint64_t parent, const char *name,
	     struct bfs_inode **out);
int bfs_unlink(struct bfs *fs, uint64_t parent, const char *name, bool dir);
int bfs_rename(struct bfs *fs, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, unsigned flags);
int bfs_readlink(struct bfs *fs, struct bfs_inode *ip, char *buf, size_t size);

/* Attributes: @valid is a mask of BFS_SET_*. */
enum {
	BFS_SET_MODE = 1 << 0,
	BFS_SET_UID = 1 << 1,
	BFS_SET_GID = 1 << 2,
	BFS_SET_SIZE = 1 << 3,
	BFS_SET_ATIME = 1 << 4,
	BFS_SET_MTIME = 1 << 5,
	BFS_SET_ATIME_NOW = 1 << 6,
	BFS_SET_MTIME_NOW = 1 << 7,
	BFS_SET_CTIME = 1 << 8,
	/* The kernel's own report of the times its cached writes set (with
	 * the writeback cache, a setattr of mtime and ctime only, sent with
	 * the file handle at close and writeback): written with the next
	 * commit of the inode or in the next batch of deferred attributes
	 * (bfs_write_attrs). Every other setattr is committed before it is
	 * acknowledged, so that a crash may lose the last operations, never
	 * one from the middle: a chmod 600 that returned is never undone by
	 * a crash that keeps a later create or rename. */
	BFS_SET_LAZY = 1 << 9,
	/* Clear setuid / setgid: what a write or truncate by someone
	 * without CAP_FSETID costs the file (bfs_killpriv). */
	BFS_SET_KILL_SUID = 1 << 10,
	BFS_SET_KILL_SGID = 1 << 11,
};
int bfs_setattr(struct bfs *fs, struct bfs_inode *ip, const struct stat *st,
		unsigned valid);
/* What a write to @ip or a truncate of it by @c must clear, as the
 * kernel's setattr_should_drop_suidgid decides for local filesystems:
 * setuid always, setgid when the file is group-executable or @c is not
 * in its group; nothing for a caller with CAP_FSETID or a file that is
 * not regular. BFS_SET_KILL_* bits for bfs_setattr. */
unsigned bfs_killpriv(struct bfs_inode *ip, const struct bfs_cred *c);

/* Directories. */
int bfs_dir_load(struct bfs *fs, struct bfs_inode *dp, struct bfs_dir *d);
void bfs_dir_free(struct bfs_dir *d);

/* Files. A handle of @ip opened for writing (@writer) or read-only:
 * takes a reference to @ip. */
int bfs_open_file(struct bfs *fs, struct bfs_inode *ip, bool writer,
		  struct bfs_file **out);
/* The inode of a handle (constant while it is open). */
struct bfs_inode *bfs_file_inode(const struct bfs_file *f);
/* Whether the handle was opened for writing. */
bool bfs_file_writer(const struct bfs_file *f);
/* Release a handle: starts the file's final flush in the background and
 * returns its sticky error (so close(2) can report it). */
int bfs_release_file(struct bfs *fs, struct bfs_file *f);
/* close(2) of @f (FUSE flush): a reader is done with its blocks. */
void bfs_read_done(struct bfs *fs, struct bfs_file *f);
/* Read up to @len bytes at @off; returns the bytes read (0 at EOF) or a
 * negative errno. */
int64_t bfs_read(struct bfs *fs, struct bfs_file *f, uint64_t off, void *buf,
		 size_t len);
int64_t bfs_write(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
		  const void *buf, size_t len);
/* Chunk the file's dirty bytes now; with @durable also sync the WAL. */
int bfs_fsync(struct bfs *fs, struct bfs_inode *ip, bool durable);
/* close(2) of a handle of @ip (@writer: opened for writing): chunk what
 * is buffered into the local store, without syncing it. The close of a
 * writer of a file truncated to zero since (ip->da_close) also orders
 * the file's blocks before every later commit (blk_store_settle), as ext4's
 * auto_da_alloc does: a file rewritten in place (O_TRUNC, then write)
 * holds its new content after a crash that keeps anything done after the
 * close. 0 or -errno. */
int bfs_close_flush(struct bfs *fs, struct bfs_inode *ip, bool writer);
/* Make every committed change and deferred attribute durable. */
int bfs_fsync_meta(struct bfs *fs);
/* Unflushed bytes of every file, counted against dirty_max. */
uint64_t bfs_dirty_bytes(struct bfs *fs);
/* Start a background flush of a file (close(2) does not wait). */
void bfs_flush_async(struct bfs *fs, struct bfs_inode *ip);
int bfs_fallocate(struct bfs *fs, struct bfs_inode *ip, int mode, uint64_t off,
		  uint64_t len);
/* lseek(2) SEEK_DATA / SEEK_HOLE (@whence) from @off on a regular file,
 * answered from its extent map and its write buffers (fs/seek.c): the
 * offset found, -ENXIO when @off is at or past the end (or, for
 * SEEK_DATA, only a hole follows it), -EINVAL (another @whence, not a
 * regular file), -EIO, -ENOMEM. */
int64_t bfs_seek_data_hole(struct bfs *fs, struct bfs_inode *ip, uint64_t off,
			   int whence);

/* Extended attributes, in the namespaces user., trusted., security. and
 * the POSIX ACLs system.posix_acl_access and _default (fs/xattr.c):
 * another name gives -EOPNOTSUPP, a prefix alone -EINVAL. @flags:
 * XATTR_CREATE / XATTR_REPLACE. getxattr and listxattr return the
 * value's size (copying it when @size allows) or -ERANGE / -ENODATA.
 * Setting an access ACL sets the mode's permission bits, and clears
 * set-group-ID unless @cr is in the file's group or has CAP_FSETID;
 * chmod changes the ACL in turn (bfs_setattr). listxattr leaves out
 * trusted.* unless @cr has CAP_SYS_ADMIN. */
int bfs_setxattr(struct bfs *fs, struct bfs_inode *ip, const char *name,
		 const void *value, size_t size, int flags,
		 const struct bfs_cred *cr);
int64_t bfs_getxattr(struct bfs *fs, struct bfs_inode *ip, const char *name,
		     void *value, size_t size);
/* *@hidden (optional) is set when trusted.* names were left out: a caller
 * may ask first without finding out its capabilities, and again with
 * them only then. */
int64_t bfs_listxattr(struct bfs *fs, struct bfs_inode *ip, char *list,
		      size_t size, const struct bfs_cred *cr, bool *hidden);
int bfs_removexattr(struct bfs *fs, struct bfs_inode *ip, const char *name);

int bfs_statfs(struct bfs *fs, struct statvfs *st);

/* For `blockfs status`, without a mount: whether writes to the node in
 * @node_dir fail with ENOSPC now (its file system has less than the
 * reserve and 1 MiB free), and the last compaction's error
 * (NODE_DIR/compaction-error, one line, into @err of @errlen bytes;
 * empty when the last one succeeded). */
bool bfs_node_full(const char *node_dir);
void bfs_node_compaction_error(const char *node_dir, char *err, size_t errlen);
