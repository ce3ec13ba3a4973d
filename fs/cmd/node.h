/* A node directory as the commands use it: its lock and pid file, its
 * CURVE keys, its cluster file, its place in that file and its capacity. */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/cluster/config.h"

/* The node's lock. NODE_DIR/blockfs.pid is write-locked (fcntl) by the
 * process that runs the node, for as long as it lives (the kernel drops
 * the lock when it exits, however it exits), and holds "PID ROLE
 * [MOUNTPOINT]\n": ROLE is "mount", "unmounting" (unmounted, uploading
 * what is queued) or "serve". A pid file nobody has locked is stale. */
struct node_holder {
	pid_t pid; /* 0: nobody holds the node */
	char role[16];
	char mnt[PATH_MAX];
};

/* Who holds the node now, into @h (may be NULL); returns its pid, or 0
 * (and h->pid 0) when nobody does. */
pid_t node_holder_read(const char *node_dir, struct node_holder *h);

/* Print on stderr why the node cannot be taken now for @what ("mount" or
 * "serve"). */
void node_print_in_use(const char *what, const char *node_dir,
		       const struct node_holder *h);

/* Take the node's lock for this process: the locked fd (keep it open for
 * as long as the node is held), -EBUSY if another process holds it, or
 * -errno. */
int node_lock(const char *node_dir);

/* Say what the node's holder (this process, holding @fd) does now:
 * @role, and @mnt unless NULL. 0 or -errno. */
int node_label(int fd, const char *role, const char *mnt);

/* Let go of the node: the pid file goes, then the lock with its fd. Does
 * nothing for @fd < 0. */
void node_unlock(const char *node_dir, int fd);

/* NODE_DIR/cluster.conf, malloc'd (free it); NULL with a message in @err,
 * also when it is the file of another cluster than the one node.conf
 * says the node belongs to. */
struct cl_cluster *node_cluster(const char *node_dir, char *err, size_t errlen);

/* The node's CURVE key pair from NODE_DIR/curve.{pub,key} into @pub and
 * @sec (64 bytes each), checked to be one pair. 0, or -errno with a
 * message in @err. */
int node_keys(const char *node_dir, char *pub, char *sec, char *err,
	      size_t errlen);

/* This node in the cluster file: its index, once its name (node.conf) is
 * listed there with the key of NODE_DIR/curve.pub. -1 with a message in
 * @err otherwise. */
int node_self(const char *node_dir, const struct cl_cluster *cl,
	      const char *name, const char *pub, char *err, size_t errlen);

/* What a node offers: NODE_DIR/node.conf "capacity", else 95% of the file
 * system it is on (UINT64_MAX if neither can be read). */
uint64_t node_capacity(const char *node_dir);
