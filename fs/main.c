/* The blockfs command: cluster creation, mounting, status. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse_opt.h>
#include <jansson.h>
#include <stddef.h>

#include "fs/bfs.h"
#include "fs/config.h"
#include "fs/fuse.h"
#include "fs/meta.h"
#include "fs/peers.h"
#include "net/client.h"
#include "net/keys.h"
#include "net/server.h"

#define EXIT_USAGE 2

static const char *prog = "blockfs";

__attribute__((format(printf, 2, 3), noreturn)) static void
die_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s %s--help'.\n", prog, cmd);
	exit(EXIT_USAGE);
}

/* ---- cluster create ---------------------------------------------------- */

static const char cluster_usage[] =
    "Usage: blockfs cluster create DIR --nodes N [OPTIONS]\n"
    "\n"
    "Create a local cluster: DIR/cluster.conf and one node directory per\n"
    "node (DIR/node1 ... DIR/nodeN), each with its own CURVE key pair.\n"
    "Nodes listen on 127.0.0.1, one port each from the base port.\n"
    "\n"
    "Options:\n"
    "  -n, --nodes N            number of nodes (1-256)\n"
    "  -r, --redundancy POLICY  replicas:N or ec:K+M (default "
    "replicas:min(3,N))\n"
    "  -p, --base-port PORT     first node's port (default 7401)\n"
    "      --chunker KIND       fastcdc (default) or fixed\n"
    "      --chunk-size SIZE    average chunk size (default 256K)\n"
    "  -h, --help               show this help\n"
    "\n"
    "Exit status: 0 created, 1 failed, 2 usage error.\n";

/* Write @data to @path atomically (temporary name, fsync, rename). */
static int write_file(const char *path, const char *data, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	size_t len = strlen(data), done = 0;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0) {
			int e = -errno;
			close(fd);
			unlink(tmp);
			return e;
		}
		done += (size_t)n;
	}
	if (fsync(fd) || close(fd)) {
		int e = -errno;
		unlink(tmp);
		return e;
	}
	if (rename(tmp, path)) {
		int e = -errno;
		unlink(tmp);
		return e;
	}
	return 0;
}

static int cmd_cluster(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"nodes", required_argument, NULL, 'n'},
	    {"redundancy", required_argument, NULL, 'r'},
	    {"base-port", required_argument, NULL, 'p'},
	    {"chunker", required_argument, NULL, 'c'},
	    {"chunk-size", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	long nodes = 0, port = 7401;
	const char *redundancy = NULL, *chunker = "fastcdc";
	uint64_t avg = CDC_DEFAULT_AVG;
	int c;

	if (argc >= 2 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(cluster_usage, stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "create"))
		die_usage("cluster ", "cluster: expected 'create'%s", "");
	argc--;
	argv++;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:r:p:h", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'n':
			nodes = strtol(optarg, &end, 10);
			if (*end || nodes < 1 || nodes > BFS_MAX_NODES)
				die_usage("cluster create ",
					  "invalid node count '%s'", optarg);
			break;
		case 'r':
			redundancy = optarg;
			break;
		case 'p':
			port = strtol(optarg, &end, 10);
			if (*end || port < 1 || port > 65000)
				die_usage("cluster create ",
					  "invalid port '%s'", optarg);
			break;
		case 'c':
			if (strcmp(optarg, "fastcdc") &&
			    strcmp(optarg, "fixed"))
				die_usage("cluster create ",
					  "unknown chunker '%s'", optarg);
			chunker = optarg;
			break;
		case 's':
			if (bfs_parse_size(optarg, &avg) || avg < 256 ||
			    avg > (16u << 20) || (avg & (avg - 1)))
				die_usage("cluster create ",
					  "invalid chunk size '%s' (a power of "
					  "two, 256 to 16M)",
					  optarg);
			break;
		case 'h':
			fputs(cluster_usage, stdout);
			return 0;
		default:
			die_usage("cluster create ", "%s", "invalid option");
		}
	}
	if (optind != argc - 1)
		die_usage("cluster create ", "%s",
			  "cluster create needs exactly one DIR");
	if (!nodes)
		die_usage("cluster create ", "%s", "--nodes is required");
	const char *dir = argv[optind];
	char rbuf[32];
	if (!redundancy) {
		snprintf(rbuf, sizeof(rbuf), "replicas:%ld",
			 nodes < 3 ? nodes : 3);
		redundancy = rbuf;
	}
	unsigned k, m;
	if (bfs_parse_redundancy(redundancy, &k, &m))
		die_usage("cluster create ",
			  "invalid redundancy '%s' (replicas:N or ec:K+M)",
			  redundancy);
	if (k + m > nodes) {
		fprintf(stderr, "%s: %s needs %u nodes, the cluster has %ld\n",
			prog, redundancy, k + m, nodes);
		return EXIT_USAGE;
	}

	char path[PATH_MAX];
	if (mkdir(dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "%s: cannot create %s: %s\n", prog, dir,
			strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/cluster.conf", dir);
	if (access(path, F_OK) == 0) {
		fprintf(stderr,
			"%s: %s already exists; refusing to overwrite a "
			"cluster (remove the directory to start over)\n",
			prog, path);
		return 1;
	}
	/* A node directory holds a node's keys and data: never replace one,
	 * whether or not the cluster file beside it survived. */
	for (long i = 1; i <= nodes; i++) {
		char ndir[PATH_MAX];
		struct stat st;
		snprintf(ndir, sizeof(ndir), "%s/node%ld", dir, i);
		if (lstat(ndir, &st) == 0) {
			fprintf(stderr,
				"%s: %s already exists (a node of another "
				"cluster?); refusing to replace its keys "
				"(remove it, or create the cluster in another "
				"directory)\n",
				prog, ndir);
			return 1;
		}
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "%s: libsodium failed to initialise\n", prog);
		return 1;
	}
	uint8_t idraw[16];
	char id[33];
	randombytes_buf(idraw, sizeof(idraw));
	sodium_bin2hex(id, sizeof(id), idraw, sizeof(idraw));

	size_t cap = 1024 + (size_t)nodes * 256, len = 0;
	char *conf = malloc(cap);
	if (!conf)
		return 1;
	uint64_t cmin = avg / 4, cmax = avg * 4;
	len +=
	    (size_t)snprintf(conf + len, cap - len,
			     "# blockfs cluster file: every node and client "
			     "reads the same one.\n"
			     "[cluster]\n"
			     "id = %s\n"
			     "nodes = %ld\n"
			     "redundancy = %s\n"
			     "chunker = %s\n"
			     "chunk_min = %llu\n"
			     "chunk_avg = %llu\n"
			     "chunk_max = %llu\n",
			     id, nodes, redundancy, chunker,
			     (unsigned long long)(cmin < 64 ? 64 : cmin),
			     (unsigned long long)avg, (unsigned long long)cmax);
	for (long i = 1; i <= nodes; i++) {
		char pub[NET_KEY_Z85_LEN + 1], sec[NET_KEY_Z85_LEN + 1];
		char ndir[PATH_MAX], file[PATH_MAX + 32], text[512];
		int ret = net_keypair_generate(pub, sec);
		if (ret) {
			fprintf(stderr, "%s: cannot generate CURVE keys: %s\n",
				prog, strerror(-ret));
			goto fail;
		}
		snprintf(ndir, sizeof(ndir), "%s/node%ld", dir, i);
		if (mkdir(ndir, 0700)) {
			fprintf(stderr, "%s: cannot create %s: %s\n", prog,
				ndir, strerror(errno));
			goto fail;
		}
		snprintf(file, sizeof(file), "%s/curve.key", ndir);
		snprintf(text, sizeof(text), "%s\n", sec);
		if ((ret = write_file(file, text, 0600)) == 0) {
			snprintf(file, sizeof(file), "%s/curve.pub", ndir);
			snprintf(text, sizeof(text), "%s\n", pub);
			ret = write_file(file, text, 0644);
		}
		if (!ret) {
			snprintf(file, sizeof(file), "%s/node.conf", ndir);
			snprintf(text, sizeof(text),
				 "# blockfs node configuration\n"
				 "[node]\n"
				 "name = node%ld\n",
				 i);
			ret = write_file(file, text, 0644);
		}
		if (ret) {
			fprintf(stderr, "%s: cannot write %s: %s\n", prog, file,
				strerror(-ret));
			goto fail;
		}
		len += (size_t)snprintf(conf + len, cap - len,
					"\n[node node%ld]\n"
					"address = tcp://127.0.0.1:%ld\n"
					"public_key = %s\n"
					"zone = zone%ld\n"
					"weight = 1\n",
					i, port + i - 1, pub, i);
	}
	for (long i = 1; i <= nodes; i++) {
		char file[PATH_MAX];
		snprintf(file, sizeof(file), "%s/node%ld/cluster.conf", dir, i);
		int ret = write_file(file, conf, 0644);
		if (ret) {
			fprintf(stderr, "%s: cannot write %s: %s\n", prog, file,
				strerror(-ret));
			goto fail;
		}
	}
	int ret = write_file(path, conf, 0644);
	if (ret) {
		fprintf(stderr, "%s: cannot write %s: %s\n", prog, path,
			strerror(-ret));
		goto fail;
	}
	free(conf);
	printf("created cluster %s (%s) in %s:\n", id, redundancy, dir);
	for (long i = 1; i <= nodes; i++)
		printf("  %s/node%ld\n", dir, i);
	return 0;
fail:
	free(conf);
	return 1;
}

/* ---- mount ------------------------------------------------------------- */

static const char mount_usage[] =
    "Usage: blockfs mount NODE_DIR MOUNTPOINT [-o OPTIONS] [-f] [-d]\n"
    "\n"
    "Mount the filesystem kept by the node in NODE_DIR. Without -f the\n"
    "daemon detaches once the mount is live and logs to NODE_DIR/blockfs.log;\n"
    "unmount with 'fusermount3 -u MOUNTPOINT' or 'umount MOUNTPOINT'.\n"
    "\n"
    "Options:\n"
    "  -o OPTIONS      comma-separated mount options (below)\n"
    "  -f, --foreground  stay in the foreground, log to stderr\n"
    "  -d, --debug     foreground with FUSE request tracing\n"
    "  -h, --help      show this help\n"
    "\n"
    "Mount options:\n"
    "  ro, rw                read-only or read-write (default rw)\n"
    "  allow_other, noallow_other\n"
    "                        let other users use the mount, the kernel\n"
    "                        checking file modes (default: allow_other\n"
    "                        when root mounts, else noallow_other)\n"
    "  chunker=fastcdc|fixed chunking for new data (default: cluster file)\n"
    "  chunk_size=SIZE       average chunk size, a power of two\n"
    "  cache_size=SIZE       blocks kept in the local store once their\n"
    "                        placement holds them (default 4G; 0: all)\n"
    "  db_cache=SIZE         RocksDB block cache (default 64M)\n"
    "  redundancy=POLICY     replicas:N or ec:K+M for new blocks (default:\n"
    "                        the cluster file's)\n"
    "  ec_min=SIZE           under ec:K+M, blocks shorter than this are\n"
    "                        stored as M+1 replicas (default: the cluster\n"
    "                        file's ec_min, else 64K; 0: code them all)\n"
    "  sync_timeout=SECONDS  how long fsync waits for the placement before\n"
    "                        it fails with EIO (default 60)\n"
    "  dirty_max=SIZE        unchunked write data held in memory (default "
    "32M)\n"
    "  read_ahead=SIZE       kernel read-ahead for the mount (default 1M;\n"
    "                        needs root)\n"
    "  verify                re-hash every block read against its CID\n"
    "                        (RocksDB checksums catch bit rot either way)\n"
    "  fsname=NAME           name shown in /proc/mounts\n"
    "  nonempty              allow mounting over a non-empty directory\n"
    "  sync, async, dirsync  sync: every write(2) returns once durable,\n"
    "                        as after fsync (slow); passed to the kernel\n"
    "  nosuid, nodev, noexec, suid, dev, exec, noatime, atime, relatime,\n"
    "  nodiratime, strictatime\n"
    "                        passed to the kernel\n"
    "  defaults, _netdev, nofail, noauto, auto, user, users, nouser,\n"
    "  owner, group, comment=..., x-*\n"
    "                        fstab options, ignored\n"
    "\n"
    "A flag takes no value (ro=0 is an error: leave ro out). 'blockfs sync\n"
    "MOUNTPOINT' waits for the cluster, as fsync does for one file.\n"
    "\n"
    "Exit status: 0 mounted (or, with -f, cleanly unmounted), 1 failed,\n"
    "2 usage error.\n";

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
	int ro, allow_other, verify, nonempty, debug;
	char extra[1024];
	char fsname[PATH_MAX + 16];
	char opt_err[PATH_MAX + 128]; /* why an option was refused */
};

enum {
	KEY_KERNEL,  /* a flag for the kernel's mount */
	KEY_VALUED,  /* name=value, parsed by mount_opt_value */
	KEY_IGNORED, /* fstab-only */
};

#define MOPT(t, field, v)                                                      \
	{                                                                      \
		t, offsetof(struct mount_cfg, field), v                        \
	}
/* The mount options; 'blockfs mount --help', README.md and
 * mount-helper/mount.blockfs list the same ones. A flag matches only
 * without a value ("ro=0" is refused, not taken for "ro"). */
static const struct fuse_opt mount_opt_table[] = {
    MOPT("ro", ro, 1), MOPT("rw", ro, 0), MOPT("allow_other", allow_other, 1),
    MOPT("noallow_other", allow_other, 0), MOPT("verify", verify, 1),
    MOPT("nonempty", nonempty, 1), MOPT("debug", debug, 1),
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
    FUSE_OPT_KEY("dirsync", KEY_KERNEL), FUSE_OPT_KEY("defaults", KEY_IGNORED),
    FUSE_OPT_KEY("_netdev", KEY_IGNORED), FUSE_OPT_KEY("nofail", KEY_IGNORED),
    FUSE_OPT_KEY("noauto", KEY_IGNORED), FUSE_OPT_KEY("auto", KEY_IGNORED),
    FUSE_OPT_KEY("user", KEY_IGNORED), FUSE_OPT_KEY("users", KEY_IGNORED),
    FUSE_OPT_KEY("nouser", KEY_IGNORED), FUSE_OPT_KEY("owner", KEY_IGNORED),
    FUSE_OPT_KEY("group", KEY_IGNORED), FUSE_OPT_KEY("comment=", KEY_IGNORED),
    FUSE_OPT_END};

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
		if (bfs_parse_size(val, &v) || v < 256 || v > (16u << 20) ||
		    (v & (v - 1)))
			return false;
		mc->fs.chunk_avg = (uint32_t)v;
		mc->fs.chunk_min = (uint32_t)(v / 4 < 64 ? 64 : v / 4);
		mc->fs.chunk_max = (uint32_t)(v * 4);
	} else if (!strcmp(name, "cache_size")) {
		if (bfs_parse_size(val, &v))
			return false;
		mc->fs.local_max = v;
		mc->local_set = true;
	} else if (!strcmp(name, "db_cache")) {
		if (bfs_parse_size(val, &v))
			return false;
		mc->fs.cache_bytes = v;
	} else if (!strcmp(name, "redundancy")) {
		if (bfs_parse_redundancy(val, &mc->k, &mc->m))
			return false;
		snprintf(mc->redundancy, sizeof(mc->redundancy), "%s", val);
		mc->redundancy_set = true;
	} else if (!strcmp(name, "ec_min")) {
		if (bfs_parse_ec_min(val, &mc->ec_min))
			return false;
		mc->ec_min_set = true;
	} else if (!strcmp(name, "sync_timeout")) {
		char *end;
		long t = strtol(val, &end, 10);
		if (*end || end == val || t < 1 || t > 86400)
			return false;
		mc->sync_timeout_ms = (unsigned)t * 1000;
	} else if (!strcmp(name, "dirty_max")) {
		if (bfs_parse_size(val, &v) || v < (1u << 20))
			return false;
		mc->fs.dirty_max = v;
	} else if (!strcmp(name, "read_ahead")) {
		if (bfs_parse_size(val, &v) || v < 4096 || v > (64u << 20))
			return false;
		mc->mo.read_ahead_kb = (unsigned)(v >> 10);
	} else {
		if (!*val || strchr(val, ','))
			return false;
		snprintf(mc->fsname, sizeof(mc->fsname), "%s", val);
	}
	return true;
}

static int mount_opt_proc(void *data, const char *arg, int key,
			  struct fuse_args *outargs)
{
	struct mount_cfg *mc = data;
	const char *eq = strchr(arg, '=');
	size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);

	(void)outargs;
	if (key == KEY_IGNORED)
		return 0;
	if (key == KEY_KERNEL) {
		size_t l = strlen(mc->extra);
		snprintf(mc->extra + l, sizeof(mc->extra) - l, "%s%s",
			 l ? "," : "", arg);
		return 0;
	}
	if (key == KEY_VALUED) {
		for (int i = 0; valued_opts[i][0]; i++) {
			if (strlen(valued_opts[i][0]) != nlen ||
			    strncmp(arg, valued_opts[i][0], nlen))
				continue;
			if (mount_opt_value(mc, valued_opts[i][0], eq + 1))
				return 0;
			snprintf(mc->opt_err, sizeof(mc->opt_err),
				 "invalid mount option '%s': %s must be %s",
				 arg, valued_opts[i][0], valued_opts[i][1]);
			return -1;
		}
	}
	if (key == FUSE_OPT_KEY_NONOPT) {
		snprintf(mc->opt_err, sizeof(mc->opt_err),
			 "unexpected argument '%s' in the mount options", arg);
		return -1;
	}
	if (!strncmp(arg, "x-", 2))
		return 0; /* fstab options for other programs */
	/* What the table did not match: a flag given a value, a valued
	 * option without one, or an unknown name. */
	for (int i = 0; mount_opt_table[i].templ; i++) {
		const char *t = mount_opt_table[i].templ;
		size_t tlen = strcspn(t, "=");
		if (tlen != nlen || strncmp(t, arg, nlen))
			continue;
		if (eq && !t[tlen])
			snprintf(mc->opt_err, sizeof(mc->opt_err),
				 "invalid mount option '%s': %.*s is a flag "
				 "and takes no value (leave it out to turn it "
				 "off)",
				 arg, (int)nlen, arg);
		else
			snprintf(mc->opt_err, sizeof(mc->opt_err),
				 "invalid mount option '%s': it needs a value "
				 "(%s=VALUE)",
				 arg, arg);
		return -1;
	}
	snprintf(mc->opt_err, sizeof(mc->opt_err), "unknown mount option '%s'",
		 arg);
	return -1;
}

/* Parse one -o string into @mc. 0, or -EINVAL with the reason in
 * mc->opt_err. */
static int parse_mount_opts(const char *s, struct mount_cfg *mc)
{
	char *argv[] = {(char *)prog, "-o", (char *)s, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	int ret = 0;

	if (fuse_opt_parse(&args, mc, mount_opt_table, mount_opt_proc)) {
		if (!mc->opt_err[0])
			snprintf(mc->opt_err, sizeof(mc->opt_err),
				 "invalid mount options '%s'", s);
		ret = -EINVAL;
	}
	fuse_opt_free_args(&args);
	return ret;
}

static int check_mountpoint(const char *mnt, bool nonempty, char *err,
			    size_t errlen)
{
	struct stat st, pst;
	char parent[PATH_MAX + 4];

	if (stat(mnt, &st)) {
		snprintf(err, errlen, "mountpoint %s: %s", mnt,
			 errno == ENOTCONN ? "a dead FUSE mount is there (run "
					     "'fusermount3 -u' on it)"
					   : strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "mountpoint %s is not a directory", mnt);
		return -ENOTDIR;
	}
	snprintf(parent, sizeof(parent), "%s/..", mnt);
	if (stat(parent, &pst) == 0 &&
	    (pst.st_dev != st.st_dev || pst.st_ino == st.st_ino) &&
	    strcmp(mnt, "/")) {
		snprintf(err, errlen, "%s is already a mountpoint", mnt);
		return -EBUSY;
	}
	if (access(mnt, W_OK) && errno == EACCES) {
		snprintf(err, errlen, "mountpoint %s: permission denied", mnt);
		return -EACCES;
	}
	if (!nonempty) {
		DIR *d = opendir(mnt);
		struct dirent *de;
		bool empty = true;
		if (!d) {
			snprintf(err, errlen, "mountpoint %s: %s", mnt,
				 strerror(errno));
			return -errno;
		}
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") &&
			    strcmp(de->d_name, "..")) {
				empty = false;
				break;
			}
		}
		closedir(d);
		if (!empty) {
			snprintf(err, errlen,
				 "mountpoint %s is not empty (use -o nonempty "
				 "to mount over its contents)",
				 mnt);
			return -ENOTEMPTY;
		}
	}
	return 0;
}

/* The node's lock. NODE_DIR/blockfs.pid is write-locked (fcntl) by the
 * process that runs the node, for as long as it lives (the kernel drops
 * the lock when it exits, however it exits), and holds "PID ROLE
 * [MOUNTPOINT]\n": ROLE is "mount", "unmounting" (unmounted, uploading
 * what is queued) or "serve". A pid file nobody has locked is stale. */
struct node_holder {
	pid_t pid; /* 0: nobody holds the node */
	char role[16];
	char mnt[PATH_MAX];
};

/* Who holds the node now; 0 (and h->pid 0) when nobody does. */
static pid_t read_pid(const char *node_dir, struct node_holder *h)
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

/* Why the node cannot be taken now, for @what ("mount" or "serve"). */
static void print_in_use(const char *what, const char *node_dir,
			 const struct node_holder *h)
{
	if (!strcmp(h->role, "mount"))
		fprintf(stderr,
			"%s: node %s is mounted on %s by blockfs process %d; "
			"unmount it first\n",
			prog, node_dir, h->mnt[0] ? h->mnt : "?", (int)h->pid);
	else if (!strcmp(h->role, "unmounting"))
		fprintf(stderr,
			"%s: node %s was unmounted, and blockfs process %d is "
			"still uploading what is queued (it gives up after "
			"sync_timeout); %s again once it has exited\n",
			prog, node_dir, (int)h->pid, what);
	else if (!strcmp(h->role, "serve"))
		fprintf(stderr,
			"%s: node %s is served by 'blockfs serve' (process "
			"%d); stop it first%s\n",
			prog, node_dir, (int)h->pid,
			strcmp(what, "mount") ? ""
					      : " (a mount serves its node "
						"itself)");
	else
		fprintf(stderr, "%s: node %s is in use by process %d\n", prog,
			node_dir, (int)h->pid);
}

/* Take the node's lock for this process: the locked fd (keep it open for
 * as long as the node is held), -EBUSY if another process holds it, or
 * -errno. */
static int node_lock(const char *node_dir)
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

/* Say what the node's holder (this process, holding @fd) does now. */
static int node_label(int fd, const char *role, const char *mnt)
{
	char text[PATH_MAX + 64];
	int len = snprintf(text, sizeof(text), "%d %s%s%s\n", (int)getpid(),
			   role, mnt ? " " : "", mnt ? mnt : "");

	if (ftruncate(fd, 0) || pwrite(fd, text, (size_t)len, 0) != len)
		return -errno;
	return 0;
}

/* Let go of the node: the pid file goes, then the lock with its fd. */
static void node_unlock(const char *node_dir, int fd)
{
	char path[PATH_MAX + 16];

	if (fd < 0)
		return;
	snprintf(path, sizeof(path), "%s/blockfs.pid", node_dir);
	unlink(path);
	close(fd);
}

struct ready_ctx {
	int pipe_fd; /* -1 in the foreground */
	const char *node_dir;
	const char *mnt;
	int lock_fd; /* the node's lock once mounted, else -1 */
};

static void on_ready(void *arg)
{
	struct ready_ctx *r = arg;
	char path[PATH_MAX];

	/* The mount took the node's database, which RocksDB locks too: the
	 * node's lock cannot be held by another process now. */
	r->lock_fd = node_lock(r->node_dir);
	if (r->lock_fd < 0 || node_label(r->lock_fd, "mount", r->mnt))
		fprintf(stderr,
			"%s: warning: cannot write %s/blockfs.pid: %s\n", prog,
			r->node_dir,
			strerror(r->lock_fd < 0 ? -r->lock_fd : errno));
	if (r->pipe_fd >= 0) {
		snprintf(path, sizeof(path), "%s/blockfs.log", r->node_dir);
		int log =
		    open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			close(null);
		}
		if (log >= 0) {
			dup2(log, 2);
			close(log);
		}
		if (write(r->pipe_fd, "", 1) != 1) {
			/* the parent is gone; nothing to tell */
		}
		close(r->pipe_fd);
		r->pipe_fd = -1;
	}
}

/* NODE_DIR/cluster.conf, malloc'd (free it); NULL with a message in @err. */
static struct bfs_cluster *node_cluster(const char *node_dir, char *err,
					size_t errlen)
{
	struct bfs_cluster *cl = malloc(sizeof(*cl));
	char cpath[PATH_MAX + 16];

	snprintf(cpath, sizeof(cpath), "%s/cluster.conf", node_dir);
	if (!cl) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (bfs_cluster_load(cpath, cl, err, errlen)) {
		free(cl);
		return NULL;
	}
	return cl;
}

static int remote_fetch(void *arg, const struct blk_cid *cid, void **data,
			size_t *len)
{
	return bfs_peers_fetch(arg, cid, data, len);
}

static void remote_committed(void *arg)
{
	bfs_peers_kick(arg);
}

static int remote_barrier(void *arg)
{
	return bfs_peers_barrier(arg);
}

static void remote_throttle(void *arg)
{
	bfs_peers_throttle(arg);
}

static uint64_t remote_backlog(void *arg)
{
	return bfs_peers_backlog(arg);
}

static void remote_prefetch(void *arg, const struct blk_cid *cids, size_t n)
{
	bfs_peers_prefetch(arg, cids, n);
}

static void remote_read_done(void *arg)
{
	bfs_peers_drop_taken(arg);
}

static int64_t remote_describe(void *arg, char *buf, size_t size)
{
	return bfs_peers_describe(arg, buf, size);
}

/* The node's CURVE key pair from NODE_DIR/curve.{pub,key}. */
static int node_keys(const char *node_dir, char *pub, char *sec, char *err,
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

/* This node in the cluster file: its index, once its name (node.conf) is
 * listed there with the key of NODE_DIR/curve.pub. -1 with a message in
 * @err otherwise. */
static int node_self(const char *node_dir, const struct bfs_cluster *cl,
		     const char *name, const char *pub, char *err,
		     size_t errlen)
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

/* What a node offers: NODE_DIR/node.conf "capacity", else 95% of the file
 * system it is on. */
static uint64_t node_capacity(const char *node_dir)
{
	struct statvfs sv;
	uint64_t cap = 0;

	if (bfs_node_capacity(node_dir, &cap) == 0 && cap)
		return cap;
	if (statvfs(node_dir, &sv) == 0)
		return (uint64_t)sv.f_blocks * sv.f_frsize / 100 * 95;
	return UINT64_MAX;
}

static int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"foreground", no_argument, NULL, 'f'},
	    {"debug", no_argument, NULL, 'd'},
	    {"options", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct mount_cfg mc = {0};
	bool fg = false;
	char *optstr[16];
	int nopt = 0, c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fdo:hs", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fg = true;
			break;
		case 'd':
			fg = true;
			mc.mo.debug = true;
			break;
		case 'o':
			if (nopt < 16)
				optstr[nopt++] = optarg;
			break;
		case 's':
			break; /* mount(8) "sloppy": ignore */
		case 'h':
			fputs(mount_usage, stdout);
			return 0;
		default:
			die_usage("mount ", "%s", "invalid option");
		}
	}
	if (optind != argc - 2)
		die_usage("mount ", "%s",
			  "mount needs NODE_DIR and MOUNTPOINT");

	char node_dir[PATH_MAX], mnt[PATH_MAX], err[1024] = "", name[64];
	if (!realpath(argv[optind], node_dir)) {
		fprintf(stderr, "%s: node directory %s: %s\n", prog,
			argv[optind], strerror(errno));
		return 1;
	}
	if (!realpath(argv[optind + 1], mnt)) {
		fprintf(stderr, "%s: mountpoint %s: %s\n", prog,
			argv[optind + 1],
			errno == ENOTCONN ? "a dead FUSE mount is there (run "
					    "'fusermount3 -u' on it)"
					  : strerror(errno));
		return 1;
	}
	if (bfs_node_name(node_dir, name, sizeof(name), err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	struct bfs_cluster *cl = node_cluster(node_dir, err, sizeof(err));
	if (!cl) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	mc.fs = (struct bfs_config){
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
	snprintf(mc.fsname, sizeof(mc.fsname), "blockfs:%s", node_dir);
	mc.ro = mc.allow_other = mc.verify = mc.nonempty = -1;
	mc.debug = mc.mo.debug ? 1 : -1;
	for (int i = 0; i < nopt; i++) {
		if (parse_mount_opts(optstr[i], &mc)) {
			free(cl);
			die_usage("mount ", "%s", mc.opt_err);
		}
	}
	mc.fs.read_only = mc.mo.read_only = mc.ro == 1;
	mc.fs.verify_reads = mc.verify == 1;
	mc.mo.debug = mc.debug == 1;
	/* Root mounts for every user of the machine, as ceph-fuse and
	 * JuiceFS do; the kernel checks modes (default_permissions). Others
	 * need user_allow_other in /etc/fuse.conf, so ask for it. */
	mc.mo.allow_other =
	    mc.allow_other == 1 || (mc.allow_other == -1 && geteuid() == 0);
	mc.mo.mountpoint = mnt;
	mc.mo.fsname = mc.fsname;
	mc.mo.extra = mc.extra;
	mc.mo.timeout = 1.0;
	if (!mc.mo.read_ahead_kb)
		mc.mo.read_ahead_kb = 1024;
	if (mc.mo.debug)
		fg = true;

	char pub[64], sec[64];
	if (node_keys(node_dir, pub, sec, err, sizeof(err)) ||
	    node_self(node_dir, cl, name, pub, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		free(cl);
		return 1;
	}
	/* The policy must be one the cluster can meet: K+M nodes that take
	 * fragments (weight above 0). */
	unsigned rk = mc.k, rm = mc.m, storing = 0;
	if (!mc.redundancy_set &&
	    bfs_parse_redundancy(cl->redundancy, &rk, &rm)) {
		rk = 1;
		rm = 0;
	}
	for (unsigned i = 0; i < cl->nnodes; i++)
		storing += cl->nodes[i].weight > 0;
	if (cl->nnodes == 1)
		storing = 1; /* a single node stores its own blocks */
	if (rk + rm > storing) {
		if (mc.redundancy_set)
			fprintf(stderr,
				"%s: invalid mount option 'redundancy=%s': it "
				"needs %u nodes that store blocks, and "
				"%s/cluster.conf has %u (use a policy that "
				"needs at most %u, or add nodes)\n",
				prog, mc.redundancy, rk + rm, node_dir, storing,
				storing);
		else
			fprintf(
			    stderr,
			    "%s: %s/cluster.conf asks for redundancy %s, "
			    "which needs %u nodes that store blocks; it has "
			    "%u (fix the cluster file, or mount with "
			    "-o redundancy=POLICY)\n",
			    prog, node_dir, cl->redundancy, rk + rm, storing);
		free(cl);
		return 1;
	}

	struct node_holder holder;
	if (read_pid(node_dir, &holder)) {
		print_in_use("mount", node_dir, &holder);
		free(cl);
		return 1;
	}
	if (check_mountpoint(mnt, mc.nonempty == 1, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", prog, err);
		free(cl);
		return 1;
	}

	/* Write buffers and RocksDB memtable arenas allocate megabytes at a
	 * time; served by mmap, each would be faulted in and zeroed afresh
	 * (a sixth of the daemon's cycles in a 1 GiB copy). Keep them in the
	 * heap: memory stays bounded by dirty_max and the memtable limits. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	/* Per-thread arenas unmap whole heaps as soon as they empty, so the
	 * same megabytes get faulted in again and again (measured: a third
	 * fewer page faults and 10% less CPU for a 1 GiB copy with one). */
	mallopt(M_ARENA_MAX, 1);

	struct ready_ctx rc = {
	    .pipe_fd = -1, .node_dir = node_dir, .mnt = mnt, .lock_fd = -1};
	if (!fg) {
		int pfd[2];
		if (pipe2(pfd, O_CLOEXEC)) {
			perror("blockfs: pipe");
			free(cl);
			return 1;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror("blockfs: fork");
			free(cl);
			return 1;
		}
		if (pid > 0) {
			/* Wait for the daemon: one byte means mounted,
			 * anything else is its error message. The
			 * cluster is the daemon's business. */
			free(cl);
			char msg[1100];
			ssize_t n, got = 0;
			close(pfd[1]);
			while ((n = read(pfd[0], msg + got,
					 sizeof(msg) - 1 - (size_t)got)) > 0)
				got += n;
			if (got == 1 && msg[0] == 0)
				return 0;
			msg[got] = 0;
			if (got > 0) {
				fprintf(stderr, "%s: %s\n", prog, msg);
			} else {
				int st;
				waitpid(pid, &st, 0);
				fprintf(stderr,
					"%s: the daemon died while starting; "
					"see %s/blockfs.log\n",
					prog, node_dir);
			}
			return 1;
		}
		close(pfd[0]);
		rc.pipe_fd = pfd[1];
		setsid();
		if (chdir("/")) {
			/* harmless: paths are absolute */
		}
	}

	/* More than one node: blocks go to their placement (fs/peers.h). */
	bool clustered = cl->nnodes > 1;
	if (!mc.k && bfs_parse_redundancy(cl->redundancy, &mc.k, &mc.m)) {
		mc.k = 1;
		mc.m = 0;
	}
	if (!mc.ec_min_set)
		mc.ec_min = cl->ec_min;
	mc.fs.newlog = clustered && !mc.fs.read_only;
	if (!clustered)
		mc.fs.local_max = 0;

	struct bfs *fs = NULL;
	struct bfs_peers *peers = NULL;
	int ret = bfs_open(&mc.fs, &fs, err, sizeof(err));
	if (!ret && bfs_read_only(fs))
		mc.fs.read_only = mc.mo.read_only = true; /* a full disk */
	if (!ret && clustered) {
		struct bfs_peers_config pc = {
		    .cluster = cl,
		    .self = name,
		    .public_key = pub,
		    .secret_key = sec,
		    .db = bfs_db(fs),
		    .frags_cf = BFS_CF_FRAGS,
		    .repair_cf = BFS_CF_REPAIR,
		    .k = mc.k,
		    .m = mc.m,
		    .ec_min = mc.ec_min,
		    .capacity = node_capacity(node_dir),
		    .sync_timeout_ms = mc.sync_timeout_ms,
		    .serve = true,
		};
		ret = bfs_peers_open(&pc, &peers, err, sizeof(err));
		if (!ret) {
			struct bfs_remote r = {
			    .fetch = remote_fetch,
			    .committed = remote_committed,
			    .barrier = mc.fs.read_only ? NULL : remote_barrier,
			    .throttle = remote_throttle,
			    .backlog = remote_backlog,
			    .prefetch = remote_prefetch,
			    .read_done = remote_read_done,
			    .describe = remote_describe,
			    .arg = peers,
			};
			bfs_set_remote(fs, &r);
		}
	}
	if (!ret)
		ret = bfs_fuse_run(fs, &mc.mo, on_ready, &rc, err, sizeof(err));
	if (rc.lock_fd >= 0)
		node_label(rc.lock_fd, "unmounting", NULL);
	if (peers) {
		/* Everything written goes to its placement before the
		 * database closes, within one sync_timeout once nothing
		 * moves; what cannot go stays queued for the next mount. */
		bfs_peers_closing(peers);
		if (!mc.fs.read_only) {
			int r = bfs_sync_all(fs);
			/* -EIO: the drain below says what is left */
			if (r && r != -EIO)
				fprintf(stderr, "%s: flushing at unmount: %s\n",
					prog, strerror(-r));
		}
		bfs_set_remote(fs, NULL);
		if (bfs_peers_close(peers) && !ret)
			ret = -EIO;
	}
	free(cl);
	if (ret && rc.pipe_fd >= 0) {
		if (write(rc.pipe_fd, err, strlen(err)) < 0) {
			/* the parent is gone */
		}
	} else if (ret) {
		fprintf(stderr, "%s: %s\n", prog, err);
	}
	/* Close whenever it was opened, also when mounting failed. */
	if (fs) {
		int r = bfs_close(fs);
		if (r)
			fprintf(stderr,
				"%s: error while closing the filesystem: %s\n",
				prog, strerror(-r));
		ret = ret ? ret : r;
	}
	node_unlock(node_dir, rc.lock_fd);
	return ret ? 1 : 0;
}

/* ---- serve ------------------------------------------------------------- */

static const char serve_usage[] =
    "Usage: blockfs serve NODE_DIR [OPTIONS]\n"
    "\n"
    "Run the storage node in NODE_DIR: listen on its address from the\n"
    "cluster file (CURVE: only the cluster's keys get in) and keep the\n"
    "fragments other nodes send it. Runs in the foreground, logs to stderr,\n"
    "stops cleanly on SIGTERM or SIGINT. A mounted node serves from its\n"
    "mount; this is for nodes that only store.\n"
    "\n"
    "Options:\n"
    "  -c, --capacity SIZE  bytes this node accepts (default: node.conf's\n"
    "                       capacity, else 95% of its file system)\n"
    "  -w, --workers N      request threads (default 4)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 stopped cleanly, 1 failed, 2 usage error.\n";

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"capacity", required_argument, NULL, 'c'},
	    {"workers", required_argument, NULL, 'w'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	uint64_t capacity = 0;
	long workers = 0;
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:w:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (bfs_parse_size(optarg, &capacity) || !capacity)
				die_usage("serve ", "invalid capacity '%s'",
					  optarg);
			break;
		case 'w':
			workers = strtol(optarg, &end, 10);
			if (*end || workers < 1 || workers > 64)
				die_usage("serve ",
					  "invalid workers '%s' (1-64)",
					  optarg);
			break;
		case 'h':
			fputs(serve_usage, stdout);
			return 0;
		default:
			die_usage("serve ", "%s", "invalid option");
		}
	}
	if (optind != argc - 1)
		die_usage("serve ", "%s", "serve needs NODE_DIR");

	char node_dir[PATH_MAX], err[1024] = "", name[64], pub[64], sec[64];
	if (!realpath(argv[optind], node_dir)) {
		fprintf(stderr, "%s: node directory %s: %s\n", prog,
			argv[optind], strerror(errno));
		return 1;
	}
	if (bfs_node_name(node_dir, name, sizeof(name), err, sizeof(err)) ||
	    node_keys(node_dir, pub, sec, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	struct bfs_cluster *cl = node_cluster(node_dir, err, sizeof(err));
	if (!cl) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	const char *keys[BFS_MAX_NODES], *names[BFS_MAX_NODES];
	for (unsigned i = 0; i < cl->nnodes; i++) {
		keys[i] = cl->nodes[i].public_key;
		names[i] = cl->nodes[i].name;
	}
	int self = node_self(node_dir, cl, name, pub, err, sizeof(err));
	if (self < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		free(cl);
		return 1;
	}
	struct node_holder holder;
	if (read_pid(node_dir, &holder)) {
		print_in_use("serve", node_dir, &holder);
		free(cl);
		return 1;
	}

	/* The same database layout as a mount of this node, so a node can
	 * be served and mounted in turn. */
	struct blk_db_options o = {.extra_cfs = bfs_cf_names,
				   .large_cfs = bfs_large_cf_names,
				   .create = true};
	struct blk_db *db = NULL;
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/db", node_dir);
	int ret = blk_db_open(path, &o, &db, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "%s: %s\n", prog, err);
		free(cl);
		return 1;
	}
	/* Signals are taken synchronously by this thread only. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct net_server_config sc = {
	    .endpoint = cl->nodes[self].address,
	    .public_key = pub,
	    .secret_key = sec,
	    .allowed_keys = keys,
	    .allowed_names = names,
	    .nallowed = cl->nnodes,
	    .db = db,
	    .cf = BFS_CF_FRAGS,
	    .data_dir = path,
	    .capacity = capacity ? capacity : node_capacity(node_dir),
	    .workers = (unsigned)workers,
	};
	struct net_server *srv = NULL;
	ret = net_server_new(&sc, &srv);
	if (ret) {
		fprintf(stderr, "%s: cannot serve node %s on %s: %s\n", prog,
			name, sc.endpoint,
			ret == -EADDRINUSE ? "address in use (another process "
					     "serves it?)"
					   : strerror(-ret));
		blk_db_close(db);
		free(cl);
		return 1;
	}
	/* The database is ours (RocksDB locks it): so is the node's lock. */
	int lock_fd = node_lock(node_dir);
	if (lock_fd < 0 || node_label(lock_fd, "serve", NULL))
		fprintf(stderr,
			"%s: warning: cannot write %s/blockfs.pid: %s\n", prog,
			node_dir, strerror(lock_fd < 0 ? -lock_fd : errno));
	struct net_status st;
	net_server_status(srv, &st);
	fprintf(stderr,
		"blockfs: serving node %s on %s: %llu fragments, %llu of "
		"%llu bytes used\n",
		name, net_server_endpoint(srv),
		(unsigned long long)st.fragments, (unsigned long long)st.used,
		(unsigned long long)st.capacity);
	int sig = 0;
	sigwait(&set, &sig);
	fprintf(stderr, "blockfs: node %s stopping (signal %d)\n", name, sig);
	net_server_free(srv);
	ret = blk_db_sync(db);
	blk_db_close(db);
	node_unlock(node_dir, lock_fd);
	free(cl);
	return ret ? 1 : 0;
}

/* ---- status ------------------------------------------------------------ */

struct node_view {
	char name[64], address[128], zone[64];
	bool up;
	uint64_t latency_us;
	struct net_status st;
};

struct cluster_view {
	char redundancy[32];
	uint64_t pending; /* blocks in the new-block log */
	uint64_t repair;  /* records in "repair" */
	struct node_view *nodes;
	unsigned n;
};

static uint64_t count_records(struct blk_db *db, unsigned cf)
{
	struct blk_iter *it = blk_iter_new(db, cf, NULL, 0, NULL, 0);
	uint64_t n = 0;

	for (; it && blk_iter_valid(it); blk_iter_next(it))
		n++;
	blk_iter_free(it);
	return n;
}

/* Every node's state as this node sees it: PING + STATUS to each, 2.5 s
 * at most. 0 or -errno. */
static int cluster_view(const char *node_dir, const struct bfs_cluster *cl,
			struct cluster_view *cv)
{
	char err[512], pub[64], sec[64];
	struct net_peer_config peers[BFS_MAX_NODES];
	struct net_client *c = NULL;
	int ret;

	snprintf(cv->redundancy, sizeof(cv->redundancy), "%s", cl->redundancy);
	cv->nodes = calloc(cl->nnodes, sizeof(*cv->nodes));
	if (!cv->nodes)
		return -ENOMEM;
	cv->n = cl->nnodes;
	for (unsigned i = 0; i < cl->nnodes; i++) {
		struct node_view *v = &cv->nodes[i];
		snprintf(v->name, sizeof(v->name), "%s", cl->nodes[i].name);
		snprintf(v->address, sizeof(v->address), "%s",
			 cl->nodes[i].address);
		snprintf(v->zone, sizeof(v->zone), "%s", cl->nodes[i].zone);
		peers[i] = (struct net_peer_config){cl->nodes[i].address,
						    cl->nodes[i].public_key};
	}
	ret = node_keys(node_dir, pub, sec, err, sizeof(err));
	if (!ret) {
		struct net_client_config cc = {
		    .public_key = pub,
		    .secret_key = sec,
		    .peers = peers,
		    .npeers = cl->nnodes,
		    .timeout_ms = 2000,
		    .max_attempts = 1,
		};
		ret = net_client_new(&cc, &c);
	}
	if (ret)
		return ret;
	struct net_batch *b = net_batch_new(c);
	for (unsigned i = 0; b && i < cl->nnodes; i++) {
		net_batch_submit(b, i, net_op_new_ping());
		net_batch_submit(b, i, net_op_new_status());
	}
	if (b)
		net_batch_wait(b, 2500);
	for (size_t i = 0; b && i < net_batch_count(b); i++) {
		const struct net_op_result *r =
		    net_op_result(net_batch_op(b, i));
		if (!r || r->status < 0)
			continue;
		struct node_view *v = &cv->nodes[r->peer];
		v->up = true;
		if (r->op == NET_OP_PING)
			v->latency_us = r->rtt_us;
		else if (r->op == NET_OP_STATUS)
			v->st = r->st;
	}
	net_batch_free(b);
	net_client_free(c);
	return 0;
}

/* `status --json`: one object, built with jansson so that names and
 * paths are escaped whatever they hold. 0 or -ENOMEM. */
static int print_status_json(const char *name, const char *state,
			     const struct node_holder *h,
			     const struct blk_store_stats *st, double ratio,
			     uint64_t disk, const struct cluster_view *cv)
{
	json_t *o = json_pack(
	    "{s:s, s:s, s:b, s:b, s:i, s:s?, s:I, s:I, s:I, s:I, s:f, s:I}",
	    "node", name, "state", state, "mounted",
	    h->pid && !strcmp(h->role, "mount"), "served",
	    h->pid && !strcmp(h->role, "serve"), "pid", (int)h->pid,
	    "mountpoint", h->pid && h->mnt[0] ? h->mnt : NULL, "blocks",
	    (json_int_t)st->blocks, "stored_bytes", (json_int_t)st->bytes,
	    "local_bytes", (json_int_t)(st->bytes - st->remote_bytes),
	    "logical_bytes", (json_int_t)st->ref_bytes, "dedup_ratio", ratio,
	    "disk_bytes", (json_int_t)disk);
	int ret = o ? 0 : -ENOMEM;

	if (o && cv) {
		json_t *nodes = json_array();
		ret = json_object_set_new(o, "redundancy",
					  json_string(cv->redundancy)) ||
			      json_object_set_new(
				  o, "pending_uploads",
				  json_integer((json_int_t)cv->pending)) ||
			      json_object_set_new(
				  o, "below_redundancy",
				  json_integer((json_int_t)cv->repair)) ||
			      json_object_set_new(o, "nodes", nodes)
			  ? -ENOMEM
			  : 0;
		for (unsigned i = 0; !ret && i < cv->n; i++) {
			const struct node_view *v = &cv->nodes[i];
			json_t *n = json_pack(
			    "{s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:I}", "name",
			    v->name, "address", v->address, "zone", v->zone,
			    "up", v->up, "latency_us",
			    (json_int_t)v->latency_us, "capacity",
			    (json_int_t)v->st.capacity, "used",
			    (json_int_t)v->st.used, "fragments",
			    (json_int_t)v->st.fragments);
			if (!n || json_array_append_new(nodes, n))
				ret = -ENOMEM;
		}
	}
	if (!ret && (json_dumpf(o, stdout, JSON_REAL_PRECISION(6)) ||
		     putchar('\n') == EOF))
		ret = -EIO;
	json_decref(o);
	if (ret)
		fprintf(stderr, "%s: cannot print the status as JSON: %s\n",
			prog, strerror(-ret));
	return ret;
}

static const char status_usage[] =
    "Usage: blockfs status NODE_DIR [--json]\n"
    "\n"
    "Show what the node stores: blocks, unique bytes, logical bytes\n"
    "referenced by files, the deduplication ratio and the space the node\n"
    "database takes on disk. Works while the node is mounted. In a cluster\n"
    "of several nodes, also the blocks waiting for upload, the blocks below\n"
    "their redundancy, and every node: up or down, latency, capacity,\n"
    "bytes and fragments stored.\n"
    "\n"
    "Options:\n"
    "  -j, --json   machine-readable output\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 ok, 1 failed, 2 usage error.\n";

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	bool json = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(status_usage, stdout);
			return 0;
		default:
			die_usage("status ", "%s", "invalid option");
		}
	}
	if (optind != argc - 1)
		die_usage("status ", "%s", "status needs NODE_DIR");
	const char *node_dir = argv[optind];
	char name[64], err[1024] = "", path[PATH_MAX];
	if (bfs_node_name(node_dir, name, sizeof(name), err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	struct node_holder holder;
	pid_t pid = read_pid(node_dir, &holder);
	bool mounted = pid && !strcmp(holder.role, "mount");
	bool served = pid && !strcmp(holder.role, "serve");
	const char *state = !pid	     ? "stopped"
			    : mounted	     ? "mounted"
			    : served	     ? "served"
			    : holder.role[0] ? holder.role
					     : "in use";
	snprintf(path, sizeof(path), "%s/db", node_dir);

	struct blk_store_stats st = {0};
	struct cluster_view cv = {0};
	uint64_t disk = 0;
	struct blk_db *db = NULL;
	struct stat sb;
	int ret = 0;
	if (stat(path, &sb) == 0) {
		struct blk_db_options o = {.extra_cfs = bfs_cf_names,
					   .read_only = true};
		/* A live writer may be compacting: retry a few times. */
		for (int i = 0; i < 5; i++) {
			ret = blk_db_open(path, &o, &db, err, sizeof(err));
			if (!ret)
				break;
			usleep(200000);
		}
		if (ret) {
			fprintf(stderr, "%s: %s\n", prog, err);
			return 1;
		}
		ret = blk_store_stats(db, &st);
		if (!ret)
			ret = blk_db_disk_usage(db, &disk);
		cv.pending = count_records(db, BLK_CF_NEWLOG);
		cv.repair = count_records(db, BFS_CF_REPAIR);
		blk_db_close(db);
		if (ret) {
			fprintf(stderr,
				"%s: cannot read the node's statistics: "
				"%s\n",
				prog, strerror(-ret));
			return 1;
		}
	}
	double ratio = st.bytes ? (double)st.ref_bytes / (double)st.bytes : 1.0;
	/* In a cluster of several nodes: every node's state too. */
	struct bfs_cluster *cl = node_cluster(node_dir, err, sizeof(err));
	int cret =
	    cl && cl->nnodes > 1 ? cluster_view(node_dir, cl, &cv) : -ENOENT;
	free(cl);
	if (json) {
		ret = print_status_json(name, state, &holder, &st, ratio, disk,
					cret == 0 ? &cv : NULL);
		free(cv.nodes);
		return ret ? 1 : 0;
	} else {
		printf("node:          %s (%s)\n", name, node_dir);
		if (mounted)
			printf("mounted:       yes, on %s (pid %d)\n",
			       holder.mnt, (int)pid);
		else if (served)
			printf("mounted:       no; served by 'blockfs serve' "
			       "(pid %d)\n",
			       (int)pid);
		else if (pid)
			printf("mounted:       no; %s (pid %d)\n", state,
			       (int)pid);
		else
			printf("mounted:       no\n");
		printf("blocks:        %llu\n", (unsigned long long)st.blocks);
		printf("stored bytes:  %llu (%llu held locally)\n",
		       (unsigned long long)st.bytes,
		       (unsigned long long)(st.bytes - st.remote_bytes));
		printf("logical bytes: %llu\n",
		       (unsigned long long)st.ref_bytes);
		printf("dedup ratio:   %.2f\n", ratio);
		printf("disk bytes:    %llu\n", (unsigned long long)disk);
		if (cret == 0) {
			printf("redundancy:    %s\n", cv.redundancy);
			printf("pending uploads:  %llu blocks\n",
			       (unsigned long long)cv.pending);
			printf("below redundancy: %llu blocks\n",
			       (unsigned long long)cv.repair);
			printf("\n%-12s %-24s %-8s %-5s %10s %14s %14s %10s\n",
			       "NODE", "ADDRESS", "ZONE", "STATE", "LATENCY",
			       "CAPACITY", "USED", "FRAGMENTS");
			for (unsigned i = 0; i < cv.n; i++) {
				const struct node_view *v = &cv.nodes[i];
				char lat[32] = "-";
				if (v->up)
					snprintf(lat, sizeof(lat), "%.1f ms",
						 (double)v->latency_us / 1000);
				printf(
				    "%-12s %-24s %-8s %-5s %10s %14llu %14llu "
				    "%10llu\n",
				    v->name, v->address, v->zone,
				    v->up ? "up" : "DOWN", lat,
				    (unsigned long long)v->st.capacity,
				    (unsigned long long)v->st.used,
				    (unsigned long long)v->st.fragments);
			}
		}
	}
	free(cv.nodes);
	return 0;
}

/* ---- sync -------------------------------------------------------------- */

static const char sync_usage[] =
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

static int cmd_sync(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(sync_usage, stdout);
			return 0;
		default:
			die_usage("sync ", "%s", "invalid option");
		}
	}
	if (optind != argc - 1)
		die_usage("sync ", "%s", "sync needs MOUNTPOINT");
	const char *mnt = argv[optind];
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, mnt, strerror(errno));
		return 1;
	}
	/* The kernel's cached pages first (the daemon sees them only at
	 * writeback), then the daemon's barrier. */
	if (syncfs(fd)) {
		fprintf(stderr, "%s: syncfs %s: %s\n", prog, mnt,
			strerror(errno));
		close(fd);
		return 1;
	}
	int ret = ioctl(fd, BFS_IOC_SYNC) ? errno : 0;
	close(fd);
	if (ret == ENOTTY || ret == EINVAL || ret == ENOSYS) {
		fprintf(stderr, "%s: %s is not a blockfs mount\n", prog, mnt);
		return 1;
	}
	if (ret == EIO) {
		fprintf(stderr,
			"%s: %s: not everything reached its nodes within "
			"sync_timeout (too few nodes up?); it stays queued and "
			"goes out when they return (the mount's log says "
			"more; 'blockfs status NODE_DIR' shows the nodes)\n",
			prog, mnt);
		return 1;
	}
	if (ret) {
		fprintf(stderr, "%s: sync %s: %s\n", prog, mnt, strerror(ret));
		return 1;
	}
	return 0;
}

/* ---- main -------------------------------------------------------------- */

static const char main_usage[] =
    "Usage: blockfs COMMAND [ARGS]\n"
    "\n"
    "A FUSE filesystem over a content-addressed, replicated block store.\n"
    "\n"
    "Commands:\n"
    "  cluster create DIR --nodes N   create a local cluster\n"
    "  mount NODE_DIR MOUNTPOINT      mount the node's filesystem\n"
    "  serve NODE_DIR                 run a storage node\n"
    "  status NODE_DIR                show what the node stores\n"
    "  sync MOUNTPOINT                wait until what was written is on\n"
    "                                 the cluster\n"
    "\n"
    "'blockfs COMMAND --help' describes each command.\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

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
	if (!strcmp(cmd, "cluster"))
		return cmd_cluster(argc - 1, argv + 1);
	if (!strcmp(cmd, "mount"))
		return cmd_mount(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(cmd, "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (!strcmp(cmd, "sync"))
		return cmd_sync(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
	fputs(main_usage, stderr);
	return EXIT_USAGE;
}
