/* The command line every blockfs command shares: one getopt loop with
 * -h/--help, the operand count, usage errors and messages. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "fs/cmd/cmd.h"

int cmd_usage_error(const char *name, const char *fmt, ...)
{
	va_list ap;

	fputs("blockfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'blockfs %s --help'.\n", name);
	return EXIT_USAGE;
}

void cmd_err(const char *fmt, ...)
{
	va_list ap;

	fputs("blockfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cmd_usage(const struct cmd_spec *cmd, FILE *f)
{
	fputs(cmd->usage, f);
	if (cmd->usage_more)
		cmd->usage_more(f);
}

int cmd_parse(const struct cmd_spec *cmd, int argc, char **argv, cmd_opt_fn opt,
	      void *ctx)
{
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, cmd->shortopts, cmd->longopts,
				NULL)) != -1) {
		if (c == 'h') {
			cmd_usage(cmd, stdout);
			return 0;
		}
		if (c == '?' || c == ':' || !opt)
			return cmd_usage_error(cmd->name, "invalid option");
		int st = opt(ctx, c, optarg);
		if (st != CMD_CONTINUE)
			return st;
	}
	if (optind != argc - cmd->operands)
		return cmd_usage_error(cmd->name, "%s", cmd->operands_err);
	return CMD_CONTINUE;
}

int cmd_mount_ioctl(const char *mnt, unsigned long req, void *arg)
{
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret;

	if (fd < 0) {
		cmd_err("%s: %s", mnt, strerror(errno));
		return -1;
	}
	/* The kernel's cached pages first (the daemon sees them only at
	 * writeback), then the daemon's work. */
	if (syncfs(fd)) {
		cmd_err("syncfs %s: %s", mnt, strerror(errno));
		close(fd);
		return -1;
	}
	ret = ioctl(fd, req, arg) ? errno : 0;
	close(fd);
	return ret;
}
