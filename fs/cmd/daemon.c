/* The mount daemon's start: fork and detach, and the readiness byte (or
 * the error message) for whoever waits; the stop signals' mask. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/cmd/cmd.h"
#include "fs/cmd/daemon.h"

void daemon_ready_init(struct daemon_ready *d, const char *node_dir, int fd)
{
	d->fd = fd;
	d->detached = false;
	snprintf(d->log, sizeof(d->log), "%s/blockfs.log", node_dir);
}

/* The parent's side: one byte means mounted, anything else is the
 * daemon's error message; an empty pipe means it died. */
static int daemon_wait(int fd, pid_t pid, const char *log)
{
	char msg[1100];
	ssize_t n, got = 0;

	while ((n = read(fd, msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
		got += n;
	close(fd);
	if (got == 1 && msg[0] == 0)
		return 0;
	msg[got] = 0;
	if (got > 0) {
		cmd_err("%s", msg);
	} else {
		int st;
		waitpid(pid, &st, 0);
		cmd_err("the daemon died while starting; see %s", log);
	}
	return 1;
}

int daemon_detach(struct daemon_ready *d)
{
	int pfd[2];

	if (pipe2(pfd, O_CLOEXEC)) {
		perror("blockfs: pipe");
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("blockfs: fork");
		close(pfd[0]);
		close(pfd[1]);
		return 1;
	}
	if (pid > 0) {
		close(pfd[1]);
		return daemon_wait(pfd[0], pid, d->log);
	}
	close(pfd[0]);
	d->fd = pfd[1];
	d->detached = true;
	setsid();
	if (chdir("/")) {
		/* harmless: paths are absolute */
	}
	return CMD_CONTINUE;
}

/* A detached daemon leaves the terminal: stdio to /dev/null, stderr to
 * the log. */
static void daemon_redirect(const char *log_path)
{
	int log =
	    open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int null = open("/dev/null", O_RDWR);

	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		close(null);
	}
	if (log >= 0) {
		dup2(log, 2);
		close(log);
	}
}

void daemon_ready(struct daemon_ready *d)
{
	if (d->detached)
		daemon_redirect(d->log);
	if (d->fd < 0)
		return;
	if (write(d->fd, "", 1) != 1) {
		/* whoever waited is gone; nothing to tell */
	}
	daemon_ready_close(d);
}

void daemon_failed(struct daemon_ready *d, const char *msg)
{
	if (d->detached && d->fd >= 0) {
		if (write(d->fd, msg, strlen(msg)) < 0) {
			/* the parent is gone */
		}
	} else {
		cmd_err("%s", msg);
	}
	daemon_ready_close(d);
}

void daemon_ready_close(struct daemon_ready *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

void daemon_block_stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
}
