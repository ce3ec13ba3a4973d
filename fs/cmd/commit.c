/* 'blockfs commit': commit a mount's metadata into the DAG and publish a
 * head now (the mount's BFS_IOC_COMMIT). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "fs/cmd/cmd.h"
#include "fs/fuse.h"

static const char commit_usage_text[] =
    "Usage: blockfs commit [--json] MOUNTPOINT\n"
    "\n"
    "Commit everything written to the mount before the call into the\n"
    "filesystem's Merkle DAG and publish a signed head naming it on the\n"
    "cluster's nodes; return once a majority of them hold the head. The\n"
    "head is a snapshot: 'blockfs snapshot list' shows it, and a machine\n"
    "that has lost this node's disk mounts the filesystem back as of it.\n"
    "Mounts commit by themselves every commit_interval seconds (default\n"
    "5) and at unmount.\n"
    "\n"
    "It prints the head: its sequence number and root CID (the\n"
    "snapshot's UnixFS root, which 'ipfs ls' lists).\n"
    "\n"
    "Options:\n"
    "      --json   print {\"seq\", \"root\", \"attrs\", \"inodes\",\n"
    "               \"blocks\", \"bytes\"} instead (what this commit\n"
    "               encoded: 0 when nothing had changed)\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 published, 1 failed (the blocks did not reach their\n"
    "nodes in time, too few nodes took the head, another writer holds\n"
    "the filesystem, or the mount is read-only), 2 usage error.\n";

static const struct option commit_longopts[] = {
    {"json", no_argument, NULL, 'j'},
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec commit_cmd =
    CMD_SPEC("commit", "jh", commit_longopts, commit_usage_text, 1,
	     "commit needs MOUNTPOINT");

static int commit_opt(void *ctx, int c, const char *arg)
{
	(void)arg;
	if (c == 'j')
		*(bool *)ctx = true;
	return CMD_CONTINUE;
}

int cmd_commit(int argc, char **argv)
{
	bool json = false;
	int st = cmd_parse(&commit_cmd, argc, argv, commit_opt, &json);

	if (st != CMD_CONTINUE)
		return st;
	const char *mnt = argv[optind];
	struct bfs_commit_info info = {0};
	int ret = cmd_mount_ioctl(mnt, BFS_IOC_COMMIT, &info);

	if (ret < 0)
		return 1;
	switch (ret) {
	case 0:
		info.root[sizeof(info.root) - 1] = '\0';
		info.attrs[sizeof(info.attrs) - 1] = '\0';
		if (json)
			printf("{\"seq\": %llu, \"root\": \"%s\", "
			       "\"attrs\": \"%s\", \"inodes\": %llu, "
			       "\"blocks\": %llu, \"bytes\": %llu}\n",
			       (unsigned long long)info.seq, info.root,
			       info.attrs, (unsigned long long)info.inodes,
			       (unsigned long long)info.blocks,
			       (unsigned long long)info.bytes);
		else if (info.seq)
			printf("head %llu: root %s\n",
			       (unsigned long long)info.seq, info.root);
		return 0;
	case ENOTTY:
	case EINVAL:
	case ENOSYS:
		cmd_err("%s is not a blockfs mount", mnt);
		break;
	case EOPNOTSUPP:
		cmd_err("%s does not commit: it is mounted read-only, or its "
			"cluster file has no [filesystem] section",
			mnt);
		break;
	case EACCES:
		cmd_err("%s: another writer holds the filesystem's lease; "
			"this mount publishes no more heads",
			mnt);
		break;
	case EIO:
		cmd_err(
		    "%s: the commit could not be published (blocks not on "
		    "their nodes within sync_timeout, or too few nodes took "
		    "the head); the mount's log says more",
		    mnt);
		break;
	default:
		cmd_err("commit %s: %s", mnt, strerror(ret));
	}
	return 1;
}
