/* The options of 'blockfs mount -o': one fuse_opt table built with
 * offsetof for the flags, the valued options parsed into a mount_cfg, the
 * kernel's options passed on, and the one list of fstab-only options. */
#include <errno.h>
#include <fnmatch.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fuse_opt.h>

#include "fs/cmd/mount-opts.h"

const char *const mount_fstab_only[] = {
    "defaults", "_netdev", "nofail", "noauto",	  "auto", "user", "users",
    "nouser",	"owner",   "group",  "comment=*", "x-*",  NULL,
};

void mount_fstab_print(FILE *f)
{
	for (int i = 0; mount_fstab_only[i]; i++)
		fprintf(f, "%s\n", mount_fstab_only[i]);
}

void mount_fstab_usage(FILE *f)
{
	int col = 0;

	for (int i = 0; mount_fstab_only[i]; i++) {
		int w = (int)strlen(mount_fstab_only[i]) + 2;
		if (col && col + w > 70) {
			fputs(",\n", f);
			col = 0;
		}
		fprintf(f, "%s%s", col ? ", " : "  ", mount_fstab_only[i]);
		col += w;
	}
	fputs("\n                        fstab options, ignored\n", f);
}

enum {
	KEY_KERNEL, /* a flag for the kernel's mount */
	KEY_VALUED, /* name=value, parsed by mount_opt_value */
};

#define MOPT(t, field, v)                                                      \
	{                                                                      \
		t, offsetof(struct mount_cfg, field), v                        \
	}
/* The mount options but the fstab-only ones ('blockfs mount --help' and
 * README.md describe them). A flag matches only without a value ("ro=0"
 * is refused, not taken for "ro"). */
static const struct fuse_opt mount_opt_table[] = {
    MOPT("ro", ro, 1), MOPT("rw", ro, 0), MOPT("allow_other", allow_other, 1),
    MOPT("noallow_other", allow_other, 0), MOPT("verify", verify, 1),
    MOPT("nonempty", nonempty, 1), MOPT("debug", debug, 1), MOPT("acl", acl, 1),
    MOPT("noacl", acl, 0),
    FUSE_OPT_KEY("default_permissions", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("chunker=", KEY_VALUED),
    FUSE_OPT_KEY("chunk_size=", KEY_VALUED),
    FUSE_OPT_KEY("cache_size=", KEY_VALUED),
    FUSE_OPT_KEY("db_cache=", KEY_VALUED),
    FUSE_OPT_KEY("redundancy=", KEY_VALUED),
    FUSE_OPT_KEY("ec_min=", KEY_VALUED),
    FUSE_OPT_KEY("sync_timeout=", KEY_VALUED),
    FUSE_OPT_KEY("dirty_max=", KEY_VALUED),
    FUSE_OPT_KEY("read_ahead=", KEY_VALUED),
    FUSE_OPT_KEY("fsname=", KEY_VALUED), FUSE_OPT_KEY("nosuid", KEY_KERNEL),
    FUSE_OPT_KEY("suid", KEY_KERNEL), FUSE_OPT_KEY("nodev", KEY_KERNEL),
    FUSE_OPT_KEY("dev", KEY_KERNEL), FUSE_OPT_KEY("noexec", KEY_KERNEL),
    FUSE_OPT_KEY("exec", KEY_KERNEL), FUSE_OPT_KEY("noatime", KEY_KERNEL),
    FUSE_OPT_KEY("atime", KEY_KERNEL), FUSE_OPT_KEY("relatime", KEY_KERNEL),
    FUSE_OPT_KEY("nodiratime", KEY_KERNEL),
    FUSE_OPT_KEY("strictatime", KEY_KERNEL),
    /* synchronous writes: the kernel fsyncs after every write(2) */
    FUSE_OPT_KEY("sync", KEY_KERNEL), FUSE_OPT_KEY("async", KEY_KERNEL),
    FUSE_OPT_KEY("dirsync", KEY_KERNEL), FUSE_OPT_END};

/* The option names that take a value, and what the value must be. */
static const char *const valued_opts[][2] = {
    {"chunker", "fastcdc or fixed"},
    {"chunk_size", "a power of two, 256 to 16M"},
    {"cache_size", "a size such as 4G; 0: keep every block"},
    {"db_cache", "a size such as 64M"},
    {"redundancy", "replicas:N or ec:K+M"},
    {"ec_min", "a size, at most 64M"},
    {"sync_timeout", "whole seconds, 1 to 86400"},
    {"dirty_max", "a size, at least 1M"},
    {"read_ahead", "a size, 4K to 64M"},
    {"fsname", "a name without ','"},
    {NULL, NULL},
};

/* Parse @val for option @name into @mc; false if it is not valid. */
static bool mount_opt_value(struct mount_cfg *mc, const char *name,
			    const char *val)
{
	uint64_t v;

	if (!strcmp(name, "chunker")) {
		if (!strcmp(val, "fastcdc"))
			mc->fs.chunker = CDC_FASTCDC;
		else if (!strcmp(val, "fixed"))
			mc->fs.chunker = CDC_FIXED;
		else
			return false;
	} else if (!strcmp(name, "chunk_size")) {
		if (cl_parse_size(val, &v) || v < 256 || v > (16u << 20) ||
		    (v & (v - 1)))
			return false;
		mc->fs.chunk_avg = (uint32_t)v;
		cdc_sizes_for_avg(mc->fs.chunk_avg, &mc->fs.chunk_min,
				  &mc->fs.chunk_max);
	} else if (!strcmp(name, "cache_size")) {
		if (cl_parse_size(val, &v))
			return false;
		mc->fs.local_max = v;
		mc->local_set = true;
	} else if (!strcmp(name, "db_cache")) {
		if (cl_parse_size(val, &v))
			return false;
		mc->fs.cache_bytes = v;
	} else if (!strcmp(name, "redundancy")) {
		if (cl_parse_redundancy(val, &mc->k, &mc->m))
			return false;
		snprintf(mc->redundancy, sizeof(mc->redundancy), "%s", val);
		mc->redundancy_set = true;
	} else if (!strcmp(name, "ec_min")) {
		if (cl_parse_ec_min(val, &mc->ec_min))
			return false;
		mc->ec_min_set = true;
	} else if (!strcmp(name, "sync_timeout")) {
		char *end;
		long t = strtol(val, &end, 10);
		if (*end || end == val || t < 1 || t > 86400)
			return false;
		mc->sync_timeout_ms = (unsigned)t * 1000;
	} else if (!strcmp(name, "dirty_max")) {
		if (cl_parse_size(val, &v) || v < (1u << 20))
			return false;
		mc->fs.dirty_max = v;
	} else if (!strcmp(name, "read_ahead")) {
		if (cl_parse_size(val, &v) || v < 4096 || v > (64u << 20))
			return false;
		mc->mo.read_ahead_kb = (unsigned)(v >> 10);
	} else {
		if (!*val || strchr(val, ','))
			return false;
		snprintf(mc->fsname, sizeof(mc->fsname), "%s", val);
	}
	return true;
}

/* Option @arg of @mc that took the value of a KEY_VALUED template. */
static int mount_opt_valued(struct mount_cfg *mc, const char *arg)
{
	const char *eq = strchr(arg, '=');
	size_t nlen = (size_t)(eq - arg);

	for (int i = 0; valued_opts[i][0]; i++) {
		if (strlen(valued_opts[i][0]) != nlen ||
		    strncmp(arg, valued_opts[i][0], nlen))
			continue;
		if (mount_opt_value(mc, valued_opts[i][0], eq + 1))
			return 0;
		snprintf(mc->opt_err, sizeof(mc->opt_err),
			 "invalid mount option '%s': %s must be %s", arg,
			 valued_opts[i][0], valued_opts[i][1]);
		return -1;
	}
	return 1;
}

/* Whether @arg is option @t (a template or fstab pattern: "name",
 * "name=", "name=*") given wrongly: a flag with a value or a valued
 * option without one. If so, says how in mc->opt_err. */
static bool mount_opt_misfit(struct mount_cfg *mc, const char *arg,
			     const char *t)
{
	const char *eq = strchr(arg, '=');
	size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
	size_t tlen = strcspn(t, "=");

	if (tlen != nlen || strncmp(t, arg, nlen))
		return false;
	if (eq && !t[tlen])
		snprintf(mc->opt_err, sizeof(mc->opt_err),
			 "invalid mount option '%s': %.*s is a flag and takes "
			 "no value (leave it out to turn it off)",
			 arg, (int)nlen, arg);
	else
		snprintf(mc->opt_err, sizeof(mc->opt_err),
			 "invalid mount option '%s': it needs a value "
			 "(%s=VALUE)",
			 arg, arg);
	return true;
}

/* What the table did not match: an fstab-only option (discarded), or a
 * flag given a value, a valued option without one, an unknown name. */
static int mount_opt_unmatched(struct mount_cfg *mc, const char *arg)
{
	for (int i = 0; mount_fstab_only[i]; i++)
		if (!fnmatch(mount_fstab_only[i], arg, 0))
			return 0;
	for (int i = 0; mount_opt_table[i].templ; i++)
		if (mount_opt_misfit(mc, arg, mount_opt_table[i].templ))
			return -1;
	for (int i = 0; mount_fstab_only[i]; i++)
		if (mount_opt_misfit(mc, arg, mount_fstab_only[i]))
			return -1;
	snprintf(mc->opt_err, sizeof(mc->opt_err), "unknown mount option '%s'",
		 arg);
	return -1;
}

/* The atime options are the daemon's: FUSE leaves atime to it. As in
 * mount(8), the last of noatime/atime/relatime/strictatime wins. Returns
 * whether the kernel's mount takes the option too (libfuse passes on
 * noatime and atime, and refuses the others). */
static bool mount_opt_atime(struct mount_cfg *mc, const char *arg)
{
	if (!strcmp(arg, "noatime"))
		mc->fs.atime = BFS_ATIME_NOATIME;
	else if (!strcmp(arg, "atime"))
		mc->fs.atime = BFS_ATIME_RELATIME;
	else if (!strcmp(arg, "relatime"))
		mc->fs.atime = BFS_ATIME_RELATIME;
	else if (!strcmp(arg, "strictatime"))
		mc->fs.atime = BFS_ATIME_STRICT;
	else if (!strcmp(arg, "nodiratime"))
		mc->fs.nodiratime = true;
	else
		return true;
	return !strcmp(arg, "noatime") || !strcmp(arg, "atime");
}

static int mount_opt_proc(void *data, const char *arg, int key,
			  struct fuse_args *outargs)
{
	struct mount_cfg *mc = data;

	(void)outargs;
	if (key == KEY_KERNEL) {
		if (!mount_opt_atime(mc, arg))
			return 0;
		size_t l = strlen(mc->extra);
		snprintf(mc->extra + l, sizeof(mc->extra) - l, "%s%s",
			 l ? "," : "", arg);
		return 0;
	}
	if (key == KEY_VALUED) {
		int ret = mount_opt_valued(mc, arg);
		if (ret <= 0)
			return ret;
	}
	if (key == FUSE_OPT_KEY_NONOPT) {
		snprintf(mc->opt_err, sizeof(mc->opt_err),
			 "unexpected argument '%s' in the mount options", arg);
		return -1;
	}
	return mount_opt_unmatched(mc, arg);
}

int mount_cfg_parse(struct mount_cfg *mc, const char *opts)
{
	char *argv[] = {"blockfs", "-o", (char *)opts, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	int ret = 0;

	if (fuse_opt_parse(&args, mc, mount_opt_table, mount_opt_proc)) {
		if (!mc->opt_err[0])
			snprintf(mc->opt_err, sizeof(mc->opt_err),
				 "invalid mount options '%s'", opts);
		ret = -EINVAL;
	}
	fuse_opt_free_args(&args);
	return ret;
}

void mount_cfg_init(struct mount_cfg *mc, const struct cl_cluster *cl,
		    const char *node_dir, bool debug)
{
	memset(mc, 0, sizeof(*mc));
	mc->fs = (struct bfs_config){
	    .node_dir = node_dir,
	    .chunker = cl->chunker,
	    .chunk_min = cl->chunk_min,
	    .chunk_avg = cl->chunk_avg,
	    .chunk_max = cl->chunk_max,
	    .dirty_max = 32u << 20,
	    .flush_at = 8u << 20,
	    .flushers = 2,
	    .local_max = 4ull << 30,
	};
	snprintf(mc->fsname, sizeof(mc->fsname), "blockfs:%s", node_dir);
	mc->ro = mc->allow_other = mc->verify = mc->nonempty = mc->acl = -1;
	mc->debug = debug ? 1 : -1;
}

void mount_cfg_finish(struct mount_cfg *mc, const char *mnt)
{
	mc->fs.read_only = mc->mo.read_only = mc->ro == 1;
	mc->fs.verify_reads = mc->verify == 1;
	mc->mo.debug = mc->debug == 1;
	mc->mo.no_acl = mc->acl == 0;
	/* Root mounts for every user of the machine; the kernel checks
	 * modes (default_permissions). Others need user_allow_other in
	 * /etc/fuse.conf, so ask for it. */
	mc->mo.allow_other =
	    mc->allow_other == 1 || (mc->allow_other == -1 && geteuid() == 0);
	mc->mo.mountpoint = mnt;
	mc->mo.fsname = mc->fsname;
	mc->mo.extra = mc->extra;
	mc->mo.timeout = 1.0;
	if (!mc->mo.read_ahead_kb)
		mc->mo.read_ahead_kb = 1024;
}
