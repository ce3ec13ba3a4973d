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
	/* Commits (fs/commit): the interval (-1 while not given: the
	 * default; 0: on demand and at unmount only), the lease, the
	 * filesystem key's file ("" while not given). */
	int commit_interval_s;
	unsigned lease_s; /* 0: default */
	bool recover;  /* -o recover: rebuild the metadata from the cluster */
	bool takeover; /* -o takeover: after another writer's lease */
	/* -o snapshot: a head's seq or CID, mounted read-only ("": the live
	 * filesystem) */
	char snapshot[128];
	char fs_key[PATH_MAX];
	bool local_set;
	struct bfs_mount_opts mo;
	/* flags, set through the option table: -1 while not given */
	int ro, allow_other, verify, nonempty, debug, acl;
	char extra[1024];
	char fsname[PATH_MAX + 16];
	char opt_err[PATH_MAX + 128]; /* why an option was refused */
};

/* Where an option goes. */
enum mount_opt_where {
	MOPT_DAEMON,  /* a field of struct mount_cfg (the daemon's config) */
	MOPT_KERNEL,  /* passed on to the kernel's mount (mc->extra) */
	MOPT_BOTH,    /* both: the daemon's, and the kernel's mount takes it */
	MOPT_DISCARD, /* accepted and dropped (what the mount always does) */
	/* fstab-only, a shell pattern ("comment=*", "x-*"): mount(8),
	 * systemd and other programs read it, blockfs mount discards it,
	 * and mount.blockfs drops it before it calls blockfs (it reads the
	 * list from 'blockfs mount --fstab-options') */
	MOPT_FSTAB,
};

/* How an option's value is parsed. */
enum mount_opt_parse {
	MOPT_FLAG,   /* no value: sets .field to .value, or calls .set */
	MOPT_SIZE,   /* a size (cl_parse_size) in [.min, .max], a power of
		      * two with .pow2 */
	MOPT_NUMBER, /* a decimal integer in [.min, .max] */
	MOPT_ENUM,   /* one of .choices ("a|b"): .set gets its index */
	MOPT_STRING, /* not empty, without ',' */
	MOPT_CUSTOM, /* .set parses the text itself */
};

/* One mount option: a row of mount_opts. */
struct mount_opt {
	const char *name;
	enum mount_opt_where where;
	enum mount_opt_parse parse;
	size_t field; /* a flag without .set: its int in struct mount_cfg */
	int value;    /* ... and what the flag sets it to (or gives .set) */
	uint64_t min, max;
	bool pow2;
	const char *choices;
	/* Store the value (@val as given, @v as parsed); false refuses it.
	 * For a flag, @v is .value. */
	bool (*set)(struct mount_cfg *mc, const char *val, uint64_t v);
	const char *arg;  /* --help: what the value is ("SIZE") */
	const char *must; /* the error: what the value must be */
	/* --help: what it does, lines split with '\n'; NULL: not listed,
	 * or (with same_help) in the item of the row above */
	const char *help;
	bool same_help;
	/* for tests/unit/test-mount-opts.c: a value it takes, one it
	 * refuses (valued options only) */
	const char *valid, *invalid;
};

/* Every mount option, fstab-only ones included, in the order of --help. */
extern const struct mount_opt mount_opts[];
extern const size_t mount_nopts;

/* Print the mount options' --help items, one per row with help (and the
 * rows that share it), the fstab-only ones left out. */
void mount_opts_usage(FILE *f);

/* Print the fstab-only options, one pattern a line (--fstab-options). */
void mount_fstab_print(FILE *f);

/* Print the fstab-only options as a --help item: the list, wrapped and
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
