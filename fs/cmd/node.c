/* A node directory as the commands use it: its lock and pid file, its
 * CURVE keys, its cluster file, its place in that file and its capacity. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs/cmd/cmd.h"
#include "fs/cmd/node.h"
#include "net/wire/keys.h"

pid_t node_holder_read(const char *node_dir, struct node_holder *h)
{
	char path[PATH_MAX + 16], text[PATH_MAX + 64];
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	struct node_holder none;
	ssize_t n;

	if (!h)
		h = &none;
	memset(h, 0, sizeof(*h));
	snprintf(path, sizeof(path), "%s/blockfs.pid", node_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fcntl(fd, F_GETLK, &fl) || fl.l_type == F_UNLCK) {
		close(fd);
		return 0;
	}
	h->pid = fl.l_pid;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[n > 0 ? n : 0] = 0;
	text[strcspn(text, "\n")] = 0;
	char *p = strchr(text, ' ');
	if (p) {
		p++;
		size_t rl = strcspn(p, " ");
		snprintf(h->role, sizeof(h->role), "%.*s", (int)rl, p);
		if (p[rl] == ' ')
			snprintf(h->mnt, sizeof(h->mnt), "%s", p + rl + 1);
	}
	return h->pid;
}

void node_print_in_use(const char *what, const char *node_dir,
		       const struct node_holder *h)
{
	if (!strcmp(h->role, "mount"))
		cmd_err("node %s is mounted on %s by blockfs process %d; "
			"unmount it first",
			node_dir, h->mnt[0] ? h->mnt : "?", (int)h->pid);
	else if (!strcmp(h->role, "unmounting"))
		cmd_err("node %s was unmounted, and blockfs process %d is "
			"still uploading what is queued (it gives up after "
			"sync_timeout); %s again once it has exited",
			node_dir, (int)h->pid, what);
	else if (!strcmp(h->role, "serve"))
		cmd_err("node %s is served by 'blockfs serve' (process "
			"%d); stop it first%s",
			node_dir, (int)h->pid,
			strcmp(what, "mount") ? ""
					      : " (a mount serves its node "
						"itself)");
	else
		cmd_err("node %s is in use by process %d", node_dir,
			(int)h->pid);
}

int node_lock(const char *node_dir)
{
	char path[PATH_MAX + 16];
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};

	snprintf(path, sizeof(path), "%s/blockfs.pid", node_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_SETLK, &fl)) {
		int e = errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
		close(fd);
		return e;
	}
	return fd;
}

int node_label(int fd, const char *role, const char *mnt)
{
	char text[PATH_MAX + 64];
	int len = snprintf(text, sizeof(text), "%d %s%s%s\n", (int)getpid(),
			   role, mnt ? " " : "", mnt ? mnt : "");

	if (ftruncate(fd, 0) || pwrite(fd, text, (size_t)len, 0) != len)
		return -errno;
	return 0;
}

void node_unlock(const char *node_dir, int fd)
{
	char path[PATH_MAX + 16];

	if (fd < 0)
		return;
	snprintf(path, sizeof(path), "%s/blockfs.pid", node_dir);
	unlink(path);
	close(fd);
}

struct cl_cluster *node_cluster(const char *node_dir, char *err, size_t errlen)
{
	struct cl_cluster *cl = malloc(sizeof(*cl));
	char cpath[PATH_MAX + 16];

	snprintf(cpath, sizeof(cpath), "%s/cluster.conf", node_dir);
	if (!cl) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (cl_cluster_load(cpath, cl, err, errlen)) {
		free(cl);
		return NULL;
	}
	/* A node belongs to one cluster: its fragments and keys were made
	 * for it. Another cluster's file, even one that lists this node's
	 * name and key, would put it among nodes that hold none of its
	 * blocks. */
	char own[sizeof(cl->id)];
	if (cl_node_cluster_id(node_dir, own, sizeof(own)) == 0 &&
	    strcmp(own, cl->id)) {
		snprintf(err, errlen,
			 "%s is the file of cluster %s, but this node belongs "
			 "to cluster %s (%s/node.conf): copy cluster %s's "
			 "cluster.conf into the node directory",
			 cpath, cl->id, own, node_dir, own);
		free(cl);
		return NULL;
	}
	return cl;
}

int node_keys(const char *node_dir, char *pub, char *sec, char *err,
	      size_t errlen)
{
	const char *names[2] = {"curve.pub", "curve.key"};
	char *out[2] = {pub, sec};

	for (int i = 0; i < 2; i++) {
		char path[PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/%s", node_dir, names[i]);
		FILE *f = fopen(path, "r");
		if (!f) {
			snprintf(err, errlen, "cannot read the node key %s: %s",
				 path, strerror(errno));
			return -errno;
		}
		if (!fgets(out[i], 64, f))
			out[i][0] = 0;
		fclose(f);
		out[i][strcspn(out[i], "\r\n")] = 0;
		if (!net_key_valid(out[i])) {
			snprintf(err, errlen, "%s is not a CURVE key", path);
			return -EINVAL;
		}
	}
	char derived[NET_KEY_Z85_LEN + 1];
	if (net_key_public(sec, derived) || strcmp(derived, pub)) {
		snprintf(err, errlen,
			 "%s/curve.key does not match %s/curve.pub: the node "
			 "could not talk to the cluster (restore the pair "
			 "from a backup)",
			 node_dir, node_dir);
		return -EINVAL;
	}
	return 0;
}

int node_self(const char *node_dir, const struct cl_cluster *cl,
	      const char *name, const char *pub, char *err, size_t errlen)
{
	for (unsigned i = 0; i < cl->nnodes; i++) {
		if (strcmp(cl->nodes[i].name, name))
			continue;
		if (strcmp(cl->nodes[i].public_key, pub)) {
			snprintf(
			    err, errlen,
			    "%s/curve.pub is not the public_key of [node "
			    "%s] in %s/cluster.conf: the other nodes would "
			    "refuse this node (copy the cluster's "
			    "cluster.conf, or this node's keys, back)",
			    node_dir, name, node_dir);
			return -1;
		}
		return (int)i;
	}
	snprintf(err, errlen,
		 "node %s (%s/node.conf) is not in %s/cluster.conf: the "
		 "cluster file is not this node's (copy the cluster's "
		 "cluster.conf into the node directory)",
		 name, node_dir, node_dir);
	return -1;
}

uint64_t node_capacity(const char *node_dir)
{
	struct statvfs sv;
	uint64_t cap = 0;

	if (cl_node_capacity(node_dir, &cap) == 0 && cap)
		return cap;
	if (statvfs(node_dir, &sv) == 0)
		return (uint64_t)sv.f_blocks * sv.f_frsize / 100 * 95;
	return UINT64_MAX;
}
