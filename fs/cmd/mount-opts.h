/* The options of 'blockfs mount -o': their table, their values, and the
 * fstab-only options that mount.blockfs drops and blockfs mount
 * discards. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fs/bfs.h"
#include "fs/fuse.h"
#include "net/cluster/config.h"

/* What a mount is run with: the cluster file's settings, then the -o
 * options over them. */
struct mount_cfg {
	struct bfs_config fs;
	unsigned k, m;	 /* redundancy; k == 0: the cluster's */
	uint32_t ec_min; /* with ec_min_set; else the cluster's */
	bool ec_min_set;
	bool redundancy_set;	  /* by the option, not the cluster file */
	char redundancy[32];	  /* the option's value */
	unsigned sync_timeout_ms; /* 0: default */
	bool local_set;
	struct bfs_mount_opts mo;
	/* flags, set through the option table: -1 while not given */
	int ro, allow_other, verify, nonempty, debug, acl;
	char extra[1024];
	char fsname[PATH_MAX + 16];
	char opt_err[PATH_MAX + 128]; /* why an option was refused */
};

/* The fstab-only options as shell patterns ("comment=*", "x-*"), NULL
 * ended: mount(8), systemd and other programs read them, blockfs mount
 * discards them, and mount.blockfs drops them before it calls blockfs
 * (it reads this list from 'blockfs mount --fstab-options'). */
extern const char *const mount_fstab_only[];

/* Print mount_fstab_only, one pattern a line (--fstab-options). */
void mount_fstab_print(FILE *f);

/* Print mount_fstab_only as a --help item: the list, wrapped and
 * indented, then what they do. */
void mount_fstab_usage(FILE *f);

/* Start @mc from the cluster file @cl for the node in @node_dir: its
 * chunking, the memory and cache defaults, no option given yet. */
void mount_cfg_init(struct mount_cfg *mc, const struct cl_cluster *cl,
		    const char *node_dir, bool debug);

/* Parse one comma-separated option string into @mc. 0, or -EINVAL with
 * the reason in mc->opt_err. */
int mount_cfg_parse(struct mount_cfg *mc, const char *opts);

/* Settle what the options leave open, for a mount on @mnt (which must
 * outlive @mc): the flags, allow_other for root, the kernel options. */
void mount_cfg_finish(struct mount_cfg *mc, const char *mnt);
