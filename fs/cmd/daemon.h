/* The mount daemon's start: detaching from the terminal, and telling the
 * one who waits (the parent of a detached daemon, or whoever reads a
 * --ready-fd) that the mount is live, or why it is not. */
#pragma once

#include <limits.h>
#include <signal.h>
#include <stdbool.h>

/* Who waits for the mount. fd gets one byte once the mount is live and is
 * then closed; a detached daemon also writes its error message there if
 * it fails before that. */
struct daemon_ready {
	int fd;			 /* -1: nobody waits (or no longer) */
	bool detached;		 /* fd is the pipe to the parent */
	char log[PATH_MAX + 16]; /* NODE_DIR/blockfs.log */
};

/* Nobody waits yet but whoever holds @fd (-1: nobody); the log of a
 * detached daemon goes to NODE_DIR/blockfs.log. */
void daemon_ready_init(struct daemon_ready *d, const char *node_dir, int fd);

/* Fork the daemon. In the daemon (a new session, working directory "/"):
 * CMD_CONTINUE, d->fd the pipe to the parent. In the parent, once the
 * daemon says it is mounted or failed: the exit status for the command
 * (0 mounted; 1 failed, the daemon's message printed). 1 if the fork
 * fails. */
int daemon_detach(struct daemon_ready *d);

/* The mount is live: a detached daemon's stdin and stdout go to
 * /dev/null and its stderr to the log; then the one byte to d->fd, which
 * is closed. */
void daemon_ready(struct daemon_ready *d);

/* The mount failed with @msg: to the parent of a detached daemon that is
 * not ready yet, else to stderr; d->fd is closed. */
void daemon_failed(struct daemon_ready *d, const char *msg);

/* Close d->fd if it is still open: whoever waits sees it close without
 * the byte. */
void daemon_ready_close(struct daemon_ready *d);

/* Block the signals that stop a daemon (SIGTERM, SIGINT, SIGHUP) in the
 * calling thread and put them in @set. Call it before the daemon starts
 * any thread (RocksDB's start inside blk_db_open, ZeroMQ's with its
 * context): a thread inherits its creator's mask, so then no thread but
 * the one that unblocks them or waits for them (sigwait) ever takes one,
 * and a stop signal never runs its default action (death, the database
 * neither synced nor closed) nor its handler on some library's thread. */
void daemon_block_stop_signals(sigset_t *set);
