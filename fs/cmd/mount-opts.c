/* The options of 'blockfs mount -o': one table, a row per option, from
 * which the fuse_opt table, the checks of each value and the options'
 * part of --help are made. */
#include <errno.h>
#include <fnmatch.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fuse_opt.h>

#include "blocks/cid.h"
#include "fs/cmd/mount-opts.h"

/* ---- how each valued option is stored ---------------------------------- */

static bool set_chunker(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->fs.chunker = v == 0 ? CDC_FASTCDC : CDC_FIXED;
	return true;
}

static bool set_chunk_size(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->fs.chunk_avg = (uint32_t)v;
	cdc_sizes_for_avg(mc->fs.chunk_avg, &mc->fs.chunk_min,
			  &mc->fs.chunk_max);
	return true;
}

static bool set_cache_size(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->fs.local_max = v;
	mc->local_set = true;
	return true;
}

static bool set_db_cache(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->fs.cache_bytes = v;
	return true;
}

static bool set_redundancy(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)v;
	if (cl_parse_redundancy(val, &mc->k, &mc->m))
		return false;
	snprintf(mc->redundancy, sizeof(mc->redundancy), "%s", val);
	mc->redundancy_set = true;
	return true;
}

static bool set_ec_min(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)v;
	if (cl_parse_ec_min(val, &mc->ec_min))
		return false;
	mc->ec_min_set = true;
	return true;
}

static bool set_sync_timeout(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->sync_timeout_ms = (unsigned)v * 1000;
	return true;
}

static bool set_commit_interval(struct mount_cfg *mc, const char *val,
				uint64_t v)
{
	(void)val;
	mc->commit_interval_s = (int)v;
	return true;
}

static bool set_lease(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->lease_s = (unsigned)v;
	return true;
}

static bool set_recover(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	(void)v;
	mc->recover = true;
	return true;
}

static bool set_takeover(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	(void)v;
	mc->takeover = true;
	return true;
}

/* A seq (digits, not 0) or a CID; mount_snapshot_open says whether a
 * head has it. */
static bool set_snapshot(struct mount_cfg *mc, const char *val, uint64_t v)
{
	struct blk_cid cid;
	bool digits = strspn(val, "0123456789") == strlen(val);

	(void)v;
	if (strlen(val) >= sizeof(mc->snapshot) ||
	    (digits ? strspn(val, "0") == strlen(val)
		    : blk_cid_from_string(&cid, val) != 0))
		return false;
	strcpy(mc->snapshot, val);
	return true;
}

static bool set_fs_key(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)v;
	if (strlen(val) >= sizeof(mc->fs_key))
		return false;
	strcpy(mc->fs_key, val);
	return true;
}

static bool set_dirty_max(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->fs.dirty_max = v;
	return true;
}

static bool set_read_ahead(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->mo.read_ahead_kb = (unsigned)(v >> 10);
	return true;
}

static bool set_fsname(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)v;
	snprintf(mc->fsname, sizeof(mc->fsname), "%s", val);
	return true;
}

/* The atime options are the daemon's: FUSE leaves atime to it. As in
 * mount(8), the last of noatime/atime/relatime/strictatime wins; @v is
 * the row's value, an enum bfs_atime. */
static bool set_atime(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	mc->fs.atime = (enum bfs_atime)v;
	return true;
}

static bool set_nodiratime(struct mount_cfg *mc, const char *val, uint64_t v)
{
	(void)val;
	(void)v;
	mc->fs.nodiratime = true;
	return true;
}

/* ---- the table ------------------------------------------------------- */

#define FIELD(f) .field = offsetof(struct mount_cfg, f)
#define MIB (1ull << 20)

/* Every mount option, in the order of --help. A row with .same_help
 * shares the help item of the row above ("ro, rw"); a row without .help
 * and without .same_help is not in --help. A flag matches only without a
 * value ("ro=0" is refused, not taken for "ro"). libfuse passes on
 * noatime and atime and refuses relatime and strictatime, so only the
 * first two are MOPT_BOTH. */
const struct mount_opt mount_opts[] = {
    {"ro", MOPT_DAEMON, MOPT_FLAG, FIELD(ro), .value = 1,
     .help = "read-only or read-write (default rw)"},
    {"rw", MOPT_DAEMON, MOPT_FLAG, FIELD(ro), .value = 0, .same_help = true},
    {"allow_other", MOPT_DAEMON, MOPT_FLAG, FIELD(allow_other), .value = 1,
     .help = "let other users use the mount, the kernel\n"
	     "checking file modes (default: allow_other\n"
	     "when root mounts, else noallow_other)"},
    {"noallow_other", MOPT_DAEMON, MOPT_FLAG, FIELD(allow_other), .value = 0,
     .same_help = true},
    {"chunker", MOPT_DAEMON, MOPT_ENUM, .choices = "fastcdc|fixed",
     .set = set_chunker, .arg = "fastcdc|fixed", .must = "fastcdc or fixed",
     .help = "chunking for new data (default: cluster file)", .valid = "fixed",
     .invalid = "rabin"},
    {"chunk_size", MOPT_DAEMON, MOPT_SIZE, .min = 256, .max = 16 * MIB,
     .pow2 = true, .set = set_chunk_size, .arg = "SIZE",
     .must = "a power of two, 256 to 16M",
     .help = "average chunk size, a power of two", .valid = "64K",
     .invalid = "100K"},
    {"cache_size", MOPT_DAEMON, MOPT_SIZE, .max = UINT64_MAX,
     .set = set_cache_size, .arg = "SIZE",
     .must = "a size such as 4G; 0: keep every block",
     .help = "blocks kept in the local store once their\n"
	     "placement holds them (default 4G; 0: all)",
     .valid = "0", .invalid = "4X"},
    {"db_cache", MOPT_DAEMON, MOPT_SIZE, .max = UINT64_MAX, .set = set_db_cache,
     .arg = "SIZE", .must = "a size such as 64M",
     .help = "RocksDB block cache (default 64M)", .valid = "32M",
     .invalid = "lots"},
    {"redundancy", MOPT_DAEMON, MOPT_CUSTOM, .set = set_redundancy,
     .arg = "POLICY", .must = "replicas:N or ec:K+M",
     .help = "replicas:N or ec:K+M for new blocks (default:\n"
	     "the cluster file's)",
     .valid = "ec:4+2", .invalid = "raid5"},
    {"ec_min", MOPT_DAEMON, MOPT_CUSTOM, .set = set_ec_min, .arg = "SIZE",
     .must = "a size, at most 64M",
     .help = "under ec:K+M, blocks shorter than this are\n"
	     "stored as M+1 replicas (default: the cluster\n"
	     "file's ec_min, else 64K; 0: code them all)",
     .valid = "128K", .invalid = "1G"},
    {"sync_timeout", MOPT_DAEMON, MOPT_NUMBER, .min = 1, .max = 86400,
     .set = set_sync_timeout, .arg = "SECONDS",
     .must = "whole seconds, 1 to 86400",
     .help = "how long fsync waits for the placement before\n"
	     "it fails with EIO (default 60)",
     .valid = "30", .invalid = "0"},
    {"commit_interval", MOPT_DAEMON, MOPT_NUMBER, .max = 86400,
     .set = set_commit_interval, .arg = "SECONDS",
     .must = "whole seconds, 0 to 86400",
     .help = "commit the metadata into the DAG and publish a\n"
	     "head this often (default 5; 0: only with\n"
	     "'blockfs commit' and at unmount)",
     .valid = "10", .invalid = "-1"},
    {"lease", MOPT_DAEMON, MOPT_NUMBER, .min = 2, .max = 86400,
     .set = set_lease, .arg = "SECONDS", .must = "whole seconds, 2 to 86400",
     .help = "the writer lease each head gives this mount,\n"
	     "renewed at half of it (default 60)",
     .valid = "30", .invalid = "1"},
    {"fs_key", MOPT_DAEMON, MOPT_STRING, .set = set_fs_key, .arg = "FILE",
     .must = "a file name without ','",
     .help = "the filesystem's secret key, which signs heads\n"
	     "(default: NODE_DIR/filesystem.key, else the one\n"
	     "beside NODE_DIR, as 'cluster create' leaves it)",
     .valid = "/etc/blockfs/fs.key", .invalid = ""},
    {"recover", MOPT_DAEMON, MOPT_FLAG, .set = set_recover,
     .help = "rebuild this node's metadata from the cluster's\n"
	     "latest head (the old database is kept aside as\n"
	     "NODE_DIR/db.replaced-TIME): after a lost or\n"
	     "damaged disk, or another node wrote since"},
    {"takeover", MOPT_DAEMON, MOPT_FLAG, .set = set_takeover,
     .help = "become the filesystem's writer once another\n"
	     "node's lease has expired"},
    {"snapshot", MOPT_DAEMON, MOPT_STRING, .set = set_snapshot,
     .arg = "SEQ|CID",
     .must = "a snapshot's seq (1 or more) or its head's CID, as 'blockfs "
	     "snapshot list' shows them",
     .help = "mount that snapshot, read-only, beside the\n"
	     "live mount (its metadata is rebuilt from the\n"
	     "cluster into NODE_DIR/snapshots/SEQ once)",
     .valid = "12", .invalid = "0"},
    {"dirty_max", MOPT_DAEMON, MOPT_SIZE, .min = MIB, .max = UINT64_MAX,
     .set = set_dirty_max, .arg = "SIZE", .must = "a size, at least 1M",
     .help = "unchunked write data held in memory (default 32M)",
     .valid = "64M", .invalid = "512K"},
    {"read_ahead", MOPT_DAEMON, MOPT_SIZE, .min = 4096, .max = 64 * MIB,
     .set = set_read_ahead, .arg = "SIZE", .must = "a size, 4K to 64M",
     .help = "kernel read-ahead for the mount (default 1M;\n"
	     "needs root)",
     .valid = "2M", .invalid = "1K"},
    {"verify", MOPT_DAEMON, MOPT_FLAG, FIELD(verify), .value = 1,
     .help = "re-hash every block read against its CID\n"
	     "(RocksDB checksums catch bit rot either way)"},
    {"fsname", MOPT_DAEMON, MOPT_STRING, .set = set_fsname, .arg = "NAME",
     .must = "a name without ','", .help = "name shown in /proc/mounts",
     .valid = "data", .invalid = ""},
    {"nonempty", MOPT_DAEMON, MOPT_FLAG, FIELD(nonempty), .value = 1,
     .help = "allow mounting over a non-empty directory"},
    {"sync", MOPT_KERNEL, MOPT_FLAG,
     .help = "sync: every write(2) returns once durable,\n"
	     "as after fsync (slow); passed to the kernel"},
    {"async", MOPT_KERNEL, MOPT_FLAG, .same_help = true},
    {"dirsync", MOPT_KERNEL, MOPT_FLAG, .same_help = true},
    {"acl", MOPT_DAEMON, MOPT_FLAG, FIELD(acl), .value = 1,
     .help = "POSIX ACLs, stored and enforced (default acl;\n"
	     "noacl saves the kernel asking each file for\n"
	     "its ACL once: setfacl then fails)"},
    {"noacl", MOPT_DAEMON, MOPT_FLAG, FIELD(acl), .value = 0,
     .same_help = true},
    {"relatime", MOPT_DAEMON, MOPT_FLAG, .set = set_atime,
     .value = BFS_ATIME_RELATIME,
     .help = "a read updates atime when it is not newer than\n"
	     "mtime or ctime, or a day old (the default)"},
    {"atime", MOPT_BOTH, MOPT_FLAG, .set = set_atime,
     .value = BFS_ATIME_RELATIME, .same_help = true},
    {"noatime", MOPT_BOTH, MOPT_FLAG, .set = set_atime,
     .value = BFS_ATIME_NOATIME, .help = "reads never update atime"},
    {"strictatime", MOPT_DAEMON, MOPT_FLAG, .set = set_atime,
     .value = BFS_ATIME_STRICT, .help = "every read updates atime"},
    {"nodiratime", MOPT_DAEMON, MOPT_FLAG, .set = set_nodiratime,
     .help = "listing a directory leaves its atime"},
    {"nosuid", MOPT_KERNEL, MOPT_FLAG, .help = "passed to the kernel"},
    {"nodev", MOPT_KERNEL, MOPT_FLAG, .same_help = true},
    {"noexec", MOPT_KERNEL, MOPT_FLAG, .same_help = true},
    {"suid", MOPT_KERNEL, MOPT_FLAG, .same_help = true},
    {"dev", MOPT_KERNEL, MOPT_FLAG, .same_help = true},
    {"exec", MOPT_KERNEL, MOPT_FLAG, .same_help = true},
    /* the mount always checks modes in the kernel */
    {"default_permissions", MOPT_DISCARD, MOPT_FLAG},
    /* Read by mount(8), systemd and other programs; discarded here, and
     * dropped by mount.blockfs before it calls blockfs (it reads them
     * from 'blockfs mount --fstab-options'). Shell patterns. */
    {"defaults", MOPT_FSTAB, MOPT_FLAG},
    {"_netdev", MOPT_FSTAB, MOPT_FLAG},
    {"nofail", MOPT_FSTAB, MOPT_FLAG},
    {"noauto", MOPT_FSTAB, MOPT_FLAG},
    {"auto", MOPT_FSTAB, MOPT_FLAG},
    {"user", MOPT_FSTAB, MOPT_FLAG},
    {"users", MOPT_FSTAB, MOPT_FLAG},
    {"nouser", MOPT_FSTAB, MOPT_FLAG},
    {"owner", MOPT_FSTAB, MOPT_FLAG},
    {"group", MOPT_FSTAB, MOPT_FLAG},
    {"comment=*", MOPT_FSTAB, MOPT_STRING},
    {"x-*", MOPT_FSTAB, MOPT_FLAG},
};
const size_t mount_nopts = sizeof(mount_opts) / sizeof(mount_opts[0]);

/* ---- parsing ----------------------------------------------------------- */

/* Keys of the fuse_opt table: the row's index past this. */
#define KEY_ROW 16

/* Whether @val is a valid value for row @o, stored in @mc if so. */
static bool opt_value(struct mount_cfg *mc, const struct mount_opt *o,
		      const char *val)
{
	uint64_t v = 0;

	switch (o->parse) {
	case MOPT_SIZE:
		if (cl_parse_size(val, &v) || v < o->min || v > o->max ||
		    (o->pow2 && (v & (v - 1))))
			return false;
		break;
	case MOPT_NUMBER: {
		char *end;
		long t = strtol(val, &end, 10);
		if (*end || end == val || t < (long)o->min || t > (long)o->max)
			return false;
		v = (uint64_t)t;
		break;
	}
	case MOPT_ENUM: {
		size_t n = strlen(val);
		const char *c = o->choices;
		for (v = 0;; v++) {
			size_t l = strcspn(c, "|");
			if (n && l == n && !strncmp(c, val, n))
				break;
			if (!c[l])
				return false;
			c += l + 1;
		}
		break;
	}
	case MOPT_STRING:
		if (!*val || strchr(val, ','))
			return false;
		break;
	case MOPT_CUSTOM:
	case MOPT_FLAG:
		break;
	}
	return o->set(mc, val, v);
}

/* Valued option @arg ("name=value") of row @o. */
static int opt_valued(struct mount_cfg *mc, const struct mount_opt *o,
		      const char *arg)
{
	if (opt_value(mc, o, strchr(arg, '=') + 1))
		return 0;
	snprintf(mc->opt_err, sizeof(mc->opt_err),
		 "invalid mount option '%s': %s must be %s", arg, o->name,
		 o->must);
	return -1;
}

/* What fuse_opt matches @o with: "name" for a flag, "name=" for a valued
 * option; into @buf of @len bytes. */
static const char *opt_templ(const struct mount_opt *o, char *buf, size_t len)
{
	if (o->parse == MOPT_FLAG || o->where == MOPT_FSTAB)
		return o->name;
	snprintf(buf, len, "%s=", o->name);
	return buf;
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
	char buf[64];

	for (size_t i = 0; i < mount_nopts; i++)
		if (mount_opts[i].where == MOPT_FSTAB &&
		    !fnmatch(mount_opts[i].name, arg, 0))
			return 0;
	for (int fstab = 0; fstab < 2; fstab++)
		for (size_t i = 0; i < mount_nopts; i++) {
			const struct mount_opt *o = &mount_opts[i];
			if ((o->where == MOPT_FSTAB) != fstab)
				continue;
			if (mount_opt_misfit(mc, arg,
					     opt_templ(o, buf, sizeof(buf))))
				return -1;
		}
	snprintf(mc->opt_err, sizeof(mc->opt_err), "unknown mount option '%s'",
		 arg);
	return -1;
}

/* Add @arg to the options the kernel's mount gets. */
static void opt_kernel(struct mount_cfg *mc, const char *arg)
{
	size_t l = strlen(mc->extra);

	snprintf(mc->extra + l, sizeof(mc->extra) - l, "%s%s", l ? "," : "",
		 arg);
}

static int mount_opt_proc(void *data, const char *arg, int key,
			  struct fuse_args *outargs)
{
	struct mount_cfg *mc = data;

	(void)outargs;
	if (key >= KEY_ROW) {
		const struct mount_opt *o = &mount_opts[key - KEY_ROW];
		if (o->parse != MOPT_FLAG)
			return opt_valued(mc, o, arg);
		if (o->set)
			o->set(mc, arg, (uint64_t)o->value);
		if (o->where != MOPT_DAEMON)
			opt_kernel(mc, arg);
		return 0;
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
	struct fuse_opt table[sizeof(mount_opts) / sizeof(mount_opts[0]) + 1];
	char templ[sizeof(mount_opts) / sizeof(mount_opts[0])][64];
	size_t n = 0;
	int ret = 0;

	for (size_t i = 0; i < mount_nopts; i++) {
		const struct mount_opt *o = &mount_opts[i];
		if (o->where == MOPT_FSTAB)
			continue;
		table[n].templ = opt_templ(o, templ[i], sizeof(templ[i]));
		if (o->where == MOPT_DISCARD) {
			table[n].offset = -1U;
			table[n].value = FUSE_OPT_KEY_DISCARD;
		} else if (o->parse == MOPT_FLAG && !o->set &&
			   o->where == MOPT_DAEMON) {
			table[n].offset = o->field;
			table[n].value = o->value;
		} else {
			table[n].offset = -1U;
			table[n].value = KEY_ROW + (int)i;
		}
		n++;
	}
	table[n] = (struct fuse_opt)FUSE_OPT_END;
	if (fuse_opt_parse(&args, mc, table, mount_opt_proc)) {
		if (!mc->opt_err[0])
			snprintf(mc->opt_err, sizeof(mc->opt_err),
				 "invalid mount options '%s'", opts);
		ret = -EINVAL;
	}
	fuse_opt_free_args(&args);
	return ret;
}

/* ---- help -------------------------------------------------------------- */

/* The label of the help item that starts at row @i: the names of its
 * rows, each with "=ARG" when it takes a value, joined with ", ". */
static void help_label(size_t i, char *buf, size_t len)
{
	size_t l = 0;

	buf[0] = '\0';
	do {
		const struct mount_opt *o = &mount_opts[i];
		l += (size_t)snprintf(buf + l, len - l, "%s%s%s%s",
				      l ? ", " : "", o->name, o->arg ? "=" : "",
				      o->arg ? o->arg : "");
		if (l >= len)
			return;
	} while (++i < mount_nopts && mount_opts[i].same_help);
}

void mount_opts_usage(FILE *f)
{
	enum { COL = 24 };
	char label[128];

	for (size_t i = 0; i < mount_nopts; i++) {
		const char *h = mount_opts[i].help;
		if (!h)
			continue;
		help_label(i, label, sizeof(label));
		if (2 + strlen(label) + 1 > COL)
			fprintf(f, "  %s\n%*s", label, COL, "");
		else
			fprintf(f, "  %-*s", COL - 2, label);
		for (;;) {
			size_t l = strcspn(h, "\n");
			fprintf(f, "%.*s\n", (int)l, h);
			if (!h[l])
				break;
			h += l + 1;
			fprintf(f, "%*s", COL, "");
		}
	}
}

void mount_fstab_print(FILE *f)
{
	for (size_t i = 0; i < mount_nopts; i++)
		if (mount_opts[i].where == MOPT_FSTAB)
			fprintf(f, "%s\n", mount_opts[i].name);
}

void mount_fstab_usage(FILE *f)
{
	int col = 0;

	for (size_t i = 0; i < mount_nopts; i++) {
		const char *name = mount_opts[i].name;
		if (mount_opts[i].where != MOPT_FSTAB)
			continue;
		int w = (int)strlen(name) + 2;
		if (col && col + w > 70) {
			fputs(",\n", f);
			col = 0;
		}
		fprintf(f, "%s%s", col ? ", " : "  ", name);
		col += w;
	}
	fputs("\n                        fstab options, ignored\n", f);
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
	    .hash = cl->hash,
	    .dirty_max = 32u << 20,
	    .flush_at = 8u << 20,
	    .flushers = 2,
	    .local_max = 4ull << 30,
	};
	snprintf(mc->fsname, sizeof(mc->fsname), "blockfs:%s", node_dir);
	mc->ro = mc->allow_other = mc->verify = mc->nonempty = mc->acl = -1;
	mc->commit_interval_s = -1;
	mc->debug = debug ? 1 : -1;
}

void mount_cfg_finish(struct mount_cfg *mc, const char *mnt)
{
	mc->fs.read_only = mc->mo.read_only = mc->ro == 1 || mc->snapshot[0];
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
