/* A FUSE caller's groups and capabilities, read from /proc (see cred.h). */
#include "fs/cred.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP_FSETID_BIT 4
#define CAP_SYS_ADMIN_BIT 21

static void parse_groups(struct bfs_cred *c, const char *s)
{
	char *end;

	while (c->ngroups < BFS_CRED_GROUPS) {
		unsigned long g = strtoul(s, &end, 10);
		if (end == s)
			break;
		c->groups[c->ngroups++] = (gid_t)g;
		s = end;
	}
}

void bfs_cred_read(pid_t pid, uid_t uid, gid_t gid, struct bfs_cred *c)
{
	char path[64], line[4096];
	bool caps = false;

	memset(c, 0, sizeof(*c));
	c->uid = uid;
	c->gid = gid;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = pid > 0 ? fopen(path, "re") : NULL;
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Groups:", 7)) {
			parse_groups(c, line + 7);
		} else if (!strncmp(line, "CapEff:", 7)) {
			unsigned long long v = strtoull(line + 7, NULL, 16);
			c->fsetid = v >> CAP_FSETID_BIT & 1;
			c->sys_admin = v >> CAP_SYS_ADMIN_BIT & 1;
			caps = true;
		}
	}
	if (f)
		fclose(f);
	if (!caps)
		c->fsetid = c->sys_admin = uid == 0;
}

bool bfs_cred_in_group(const struct bfs_cred *c, gid_t gid)
{
	if (c->gid == gid)
		return true;
	for (size_t i = 0; i < c->ngroups; i++)
		if (c->groups[i] == gid)
			return true;
	return false;
}
