/* Running the filesystem core behind a FUSE low-level session. */
#pragma once

#include <stdbool.h>
#include <sys/ioctl.h>

#include "fs/bfs.h"

struct bfs_mount_opts {
	const char *mountpoint;
	const char *fsname;
	bool read_only;
	bool allow_other;
	bool debug;
	const char *extra; /* comma-separated options for the kernel mount */
	double timeout;	   /* attribute and entry cache seconds */
	unsigned read_ahead_kb; /* kernel read-ahead for the mount, 0: leave */
	bool no_acl; /* refuse POSIX ACLs (the kernel then asks no ACL) */
};

/* ioctl(2) on any file or directory of a mount (`blockfs sync`): flush
 * every file's buffered writes into blocks, sync the node's store and, in a
 * cluster, wait until everything is on its placement (the fsync barrier,
 * net/cluster/engine.h). Fails with EIO after sync_timeout. syncfs(2) cannot do
 * this: libfuse 3.14 has no syncfs operation, so the kernel writes its cached
 * pages back and returns 0 without asking the daemon. */
#define BFS_IOC_SYNC _IO(0xbf, 1)
/* 'blockfs commit': commit the metadata and publish a head now; returns
 * once the head is published (fs/commit/commit.h), with the head it
 * published (or the last one, when nothing changed). */
#define BFS_IOC_COMMIT _IOR(0xbf, 2, struct bfs_commit_info)

/* Called once the mount is live (e.g. to tell a waiting parent). */
typedef void (*bfs_ready_fn)(void *arg);

/* Mount @fs at opts->mountpoint and serve it until unmounted or until
 * SIGTERM/SIGINT/SIGHUP. Returns 0 after a clean unmount, or a negative
 * errno (with a message in @err) when the mount could not be set up.
 * Those signals are taken by the calling thread while it runs the FUSE
 * loop (unblocked there, the mask restored after): the caller blocks them
 * before it starts any thread, so that no other thread takes one (its
 * handler would end the session but not wake the loop's wait). */
int bfs_fuse_run(struct bfs *fs, const struct bfs_mount_opts *opts,
		 bfs_ready_fn ready, void *arg, char *err, size_t errlen);
