/* The blockfs command: --help, --version, and the dispatch to its
 * commands (fs/cmd/cmd.h; one file each in fs/cmd/). */
#include <stdio.h>
#include <string.h>

#include "fs/cmd/cmd.h"

static const char main_usage[] =
    "Usage: blockfs COMMAND [ARGS]\n"
    "\n"
    "A FUSE filesystem over a content-addressed, replicated block store.\n"
    "\n"
    "Commands:\n"
    "  cluster create DIR --nodes N   create a local cluster\n"
    "  cluster upgrade DIR            give an older cluster signed heads\n"
    "  commit MOUNTPOINT              commit the metadata, publish a head\n"
    "  export NODE_DIR --car FILE     write a snapshot as a CAR archive\n"
    "  mount NODE_DIR MOUNTPOINT      mount the node's filesystem\n"
    "  serve NODE_DIR                 run a storage node\n"
    "  snapshot list NODE_DIR         list the filesystem's snapshots\n"
    "  status NODE_DIR                show what the node stores\n"
    "  sync MOUNTPOINT                wait until what was written is on\n"
    "                                 the cluster\n"
    "\n"
    "'blockfs COMMAND --help' describes each command.\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

/* The commands by name. */
static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
    {"cluster", cmd_cluster}, {"commit", cmd_commit},	  {"mount", cmd_mount},
    {"status", cmd_status},   {"serve", cmd_serve},	  {"sync", cmd_sync},
    {"export", cmd_export},   {"snapshot", cmd_snapshot},
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(main_usage, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") ||
	    !strcmp(cmd, "help")) {
		fputs(main_usage, stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		puts("blockfs 0.1.0");
#ifdef BFS_FAULT_INJECTION
		puts("fault injection: compiled in (a test build: never for "
		     "a node in use)");
#endif
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(cmd, commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	cmd_err("unknown command '%s'", cmd);
	fputs(main_usage, stderr);
	return EXIT_USAGE;
}
