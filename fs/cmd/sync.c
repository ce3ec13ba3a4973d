/* 'blockfs sync': wait until what was written to a mount is durable on
 * its placement (the mount's BFS_IOC_SYNC). */
#include <errno.h>
#include <string.h>

#include "fs/cmd/cmd.h"
#include "fs/fuse.h"

static const char sync_usage_text[] =
    "Usage: blockfs sync MOUNTPOINT\n"
    "\n"
    "Wait until everything written to the mount before the call is\n"
    "durable: every file's data chunked into blocks and committed, the\n"
    "node's store synced and, in a cluster, every block on all of its\n"
    "placement's nodes (what fsync promises for one file, for the whole\n"
    "mount). Use it where 'sync -f' would do on another filesystem:\n"
    "syncfs(2) on a blockfs mount only writes the kernel's cached pages\n"
    "back to the daemon and does not wait for the cluster.\n"
    "\n"
    "Options:\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 durable, 1 failed (e.g. fewer nodes up than the\n"
    "redundancy needs for sync_timeout: the data stays queued), 2 usage\n"
    "error.\n";

static const struct option sync_longopts[] = {
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec sync_cmd = CMD_SPEC(
    "sync", "h", sync_longopts, sync_usage_text, 1, "sync needs MOUNTPOINT");

int cmd_sync(int argc, char **argv)
{
	int st = cmd_parse(&sync_cmd, argc, argv, NULL, NULL);

	if (st != CMD_CONTINUE)
		return st;
	const char *mnt = argv[optind];
	int ret = cmd_mount_ioctl(mnt, BFS_IOC_SYNC, NULL);

	if (ret < 0)
		return 1;
	if (ret == ENOTTY || ret == EINVAL || ret == ENOSYS) {
		cmd_err("%s is not a blockfs mount", mnt);
		return 1;
	}
	if (ret == EIO) {
		cmd_err("%s: not everything reached its nodes within "
			"sync_timeout (too few nodes up?); it stays queued and "
			"goes out when they return (the mount's log says "
			"more; 'blockfs status NODE_DIR' shows the nodes)",
			mnt);
		return 1;
	}
	if (ret) {
		cmd_err("sync %s: %s", mnt, strerror(ret));
		return 1;
	}
	return 0;
}
