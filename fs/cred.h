/* The credentials of the process behind a FUSE request, as the kernel's
 * rules for clearing setuid and setgid need them: read from
 * /proc/PID/status, since libfuse gives only the uid, gid and pid. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BFS_CRED_GROUPS 256

struct bfs_cred {
	uid_t uid;
	gid_t gid;
	gid_t groups[BFS_CRED_GROUPS]; /* supplementary groups */
	size_t ngroups;
	bool fsetid;	/* holds CAP_FSETID */
	bool sys_admin; /* holds CAP_SYS_ADMIN */
};

/* Fill @c for process @pid acting as @uid/@gid. When its status cannot be
 * read (it exited, or lives in another PID namespace: pid 0) the caller
 * counts as member of @gid only, with every capability if @uid is 0 and
 * none otherwise. */
void bfs_cred_read(pid_t pid, uid_t uid, gid_t gid, struct bfs_cred *c);

/* Whether @c is in group @gid: its own gid or a supplementary one. */
bool bfs_cred_in_group(const struct bfs_cred *c, gid_t gid);
