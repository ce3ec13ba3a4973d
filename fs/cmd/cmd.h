/* The blockfs command shell: the commands, and the option parsing, usage
 * errors and messages they share. */
#pragma once

#include <getopt.h>
#include <stdio.h>

/* Exit statuses of every command: 0 success, 1 failure, 2 usage error. */
#define EXIT_USAGE 2

/* Returned by cmd_parse() and the option callbacks to go on; anything
 * else is the exit status the command ends with. */
#define CMD_CONTINUE (-1)

/* The -h, --help entry every command's long option table ends with. */
#define CMD_OPT_HELP                                                           \
	{                                                                      \
		"help", no_argument, NULL, 'h'                                 \
	}

/* Handles option @c (with its argument @arg, or NULL) of a command for
 * its context @ctx: CMD_CONTINUE, or the exit status to end with (after
 * printing why). */
typedef int (*cmd_opt_fn)(void *ctx, int c, const char *arg);

/* A command's command line: getopt's tables (both holding -h/--help),
 * its --help text, and how many operands follow the options. */
struct cmd_spec {
	const char *name;	       /* as typed after "blockfs " */
	const char *shortopts;	       /* getopt's, with 'h' */
	const struct option *longopts; /* ends with CMD_OPT_HELP, {0} */
	const char *usage;	       /* the --help text */
	void (*usage_more)(FILE *f);   /* prints the rest of it, or NULL */
	int operands;		       /* operands after the options */
	const char *operands_err;      /* the usage error when not */
};

/* The cmd_spec of a command whose --help text is @usage alone. */
#define CMD_SPEC(name, shortopts, longopts, usage, operands, operands_err)     \
	{                                                                      \
		name, shortopts, longopts, usage, NULL, operands, operands_err \
	}

/* Print @cmd's --help text on @f. */
void cmd_usage(const struct cmd_spec *cmd, FILE *f);

/* Parse the options of @argv (argv[0] is the command's name) for @cmd,
 * handing each one but -h/--help to @opt. Returns CMD_CONTINUE with
 * argv[optind] the first of exactly cmd->operands operands; 0 once --help
 * is printed; EXIT_USAGE after printing a usage error; or what @opt
 * returned to end the command. */
int cmd_parse(const struct cmd_spec *cmd, int argc, char **argv, cmd_opt_fn opt,
	      void *ctx);

/* Print "blockfs: MESSAGE" and the hint to 'blockfs NAME --help' on
 * stderr. Returns EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) int cmd_usage_error(const char *name,
							  const char *fmt, ...);

/* Ask the mount at @mnt for ioctl @req (BFS_IOC_*), after syncfs(2) so
 * that the kernel's cached pages reach the daemon first. 0, the ioctl's
 * errno, or -1 after saying why the mountpoint could not be opened or
 * synced. */
int cmd_mount_ioctl(const char *mnt, unsigned long req, void *arg);

/* Print "blockfs: MESSAGE" on stderr. */
__attribute__((format(printf, 1, 2))) void cmd_err(const char *fmt, ...);

/* The commands: each takes its own argv (argv[0] its name) and returns
 * the exit status. */
int cmd_cluster(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_sync(int argc, char **argv);
int cmd_commit(int argc, char **argv);
