/* 'blockfs cluster create': a local cluster's cluster file, its
 * filesystem's signing key, and one node directory per node, each with its
 * own CURVE key pair; 'blockfs cluster upgrade': the filesystem's key and
 * section for a cluster made before signed heads. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blocks/cdc.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/node.h"
#include "net/cluster/config.h"
#include "net/wire/keys.h"

static const char cluster_usage_text[] =
    "Usage: blockfs cluster create DIR --nodes N [OPTIONS]\n"
    "       blockfs cluster upgrade DIR [--hash HASH]   (see its --help)\n"
    "\n"
    "Create a local cluster: DIR/cluster.conf, the filesystem's key\n"
    "DIR/filesystem.key, and one node directory per node (DIR/node1 ...\n"
    "DIR/nodeN), each with its own CURVE key pair and a copy of the\n"
    "cluster file. Nodes listen on 127.0.0.1, one port each from the base\n"
    "port.\n"
    "\n"
    "The filesystem is named by a random id and an Ed25519 key pair: the\n"
    "cluster file's [filesystem] section holds the id and the public key,\n"
    "with which every node checks the heads (commits) it is sent.\n"
    "DIR/filesystem.key (mode 0600) holds the secret key, as one line of\n"
    "128 hex digits: libsodium's 64-byte Ed25519 secret key (the 32-byte\n"
    "seed, then the public key). Whoever holds it can publish heads: keep\n"
    "it safe, and copy it only to the machines that mount the filesystem\n"
    "read-write; without it the filesystem can be read but never written.\n"
    "\n"
    "Options:\n"
    "  -n, --nodes N            number of nodes (1-256)\n"
    "  -r, --redundancy POLICY  replicas:N or ec:K+M (default "
    "replicas:min(3,N))\n"
    "  -p, --base-port PORT     first node's port (default 7401)\n"
    "      --chunker KIND       fastcdc (default) or fixed\n"
    "      --chunk-size SIZE    average chunk size (default 256K)\n"
    "      --hash HASH          sha2-256 (default) or blake2b-256: the hash\n"
    "                           of the filesystem's CIDs\n"
    "  -h, --help               show this help\n"
    "\n"
    "Exit status: 0 created, 1 failed, 2 usage error.\n";

static const struct option cluster_longopts[] = {
    {"nodes", required_argument, NULL, 'n'},
    {"redundancy", required_argument, NULL, 'r'},
    {"base-port", required_argument, NULL, 'p'},
    {"chunker", required_argument, NULL, 'c'},
    {"chunk-size", required_argument, NULL, 's'},
    {"hash", required_argument, NULL, 'H'},
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec cluster_cmd =
    CMD_SPEC("cluster create", "n:r:p:h", cluster_longopts, cluster_usage_text,
	     1, "cluster create needs exactly one DIR");

/* What the cluster is made of. */
struct cluster_args {
	long nodes, port;
	const char *redundancy, *chunker;
	enum blk_hash hash;
	uint64_t avg;
	char rbuf[32]; /* the default redundancy */
};

static int cluster_opt(void *ctx, int c, const char *arg)
{
	struct cluster_args *a = ctx;
	const char *name = cluster_cmd.name;
	char *end;

	switch (c) {
	case 'n':
		a->nodes = strtol(arg, &end, 10);
		if (*end || a->nodes < 1 || a->nodes > CL_MAX_NODES)
			return cmd_usage_error(name, "invalid node count '%s'",
					       arg);
		break;
	case 'r':
		a->redundancy = arg;
		break;
	case 'p':
		a->port = strtol(arg, &end, 10);
		if (*end || a->port < 1 || a->port > 65000)
			return cmd_usage_error(name, "invalid port '%s'", arg);
		break;
	case 'c':
		if (strcmp(arg, "fastcdc") && strcmp(arg, "fixed"))
			return cmd_usage_error(name, "unknown chunker '%s'",
					       arg);
		a->chunker = arg;
		break;
	case 'H':
		if (blk_hash_from_name(arg, &a->hash))
			return cmd_usage_error(
			    name, "unknown hash '%s' (sha2-256 or blake2b-256)",
			    arg);
		break;
	case 's':
		if (cl_parse_size(arg, &a->avg) || a->avg < 256 ||
		    a->avg > (16u << 20) || (a->avg & (a->avg - 1)))
			return cmd_usage_error(
			    name,
			    "invalid chunk size '%s' (a power "
			    "of two, 256 to 16M)",
			    arg);
		break;
	}
	return CMD_CONTINUE;
}

/* The options that must be given, and the redundancy the cluster can
 * meet. CMD_CONTINUE, or the exit status after saying why. */
static int cluster_check_args(struct cluster_args *a)
{
	unsigned k, m;

	if (!a->nodes)
		return cmd_usage_error(cluster_cmd.name, "--nodes is required");
	if (!a->redundancy) {
		snprintf(a->rbuf, sizeof(a->rbuf), "replicas:%ld",
			 a->nodes < 3 ? a->nodes : 3);
		a->redundancy = a->rbuf;
	}
	if (cl_parse_redundancy(a->redundancy, &k, &m))
		return cmd_usage_error(cluster_cmd.name,
				       "invalid redundancy '%s' (replicas:N or "
				       "ec:K+M)",
				       a->redundancy);
	if (k + m > a->nodes) {
		cmd_err("%s needs %u nodes, the cluster has %ld", a->redundancy,
			k + m, a->nodes);
		return EXIT_USAGE;
	}
	return CMD_CONTINUE;
}

/* DIR exists and holds neither a cluster file nor a node directory that
 * would be overwritten. 0, or -errno after saying why. */
static int cluster_check_dir(const char *dir, long nodes)
{
	char path[PATH_MAX];

	if (mkdir(dir, 0755) && errno != EEXIST) {
		int e = -errno;
		cmd_err("cannot create %s: %s", dir, strerror(errno));
		return e;
	}
	/* A node directory holds a node's keys and data: never replace one,
	 * whether or not the cluster file beside it survived. */
	for (long i = 1; i <= nodes; i++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/node%ld", dir, i);
		if (lstat(path, &st) == 0) {
			cmd_err("%s already exists (a node of another "
				"cluster?); refusing to replace its keys "
				"(remove it, or create the cluster in another "
				"directory)",
				path);
			return -EEXIST;
		}
	}
	/* Then the cluster's own files: the node directories name the
	 * real loss when both are there. */
	static const char *const files[] = {"cluster.conf", "filesystem.key"};
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (access(path, F_OK) == 0) {
			cmd_err("%s already exists; refusing to overwrite a "
				"cluster (remove the directory to start over)",
				path);
			return -EEXIST;
		}
	}
	return 0;
}

/* Write @data to @path atomically (temporary name, fsync, rename). 0 or
 * -errno. */
static int write_file(const char *path, const char *data, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(data), done = 0;
	int e = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0) {
			e = -errno;
			close(fd);
			goto out_unlink;
		}
		done += (size_t)n;
	}
	if (fsync(fd) || close(fd)) {
		e = -errno;
		goto out_unlink;
	}
	if (rename(tmp, path)) {
		e = -errno;
		goto out_unlink;
	}
	return 0;
out_unlink:
	unlink(tmp);
	return e;
}

/* The growing text of the cluster file. */
struct conf_text {
	char *buf;
	size_t cap, len;
};

/* Make node @i of cluster @id in @dir: its directory, key pair and
 * node.conf (which names the cluster it belongs to); its section goes to
 * @conf. 0, or -errno after saying why. */
static int cluster_make_node(const char *dir, const char *id, long i, long port,
			     struct conf_text *conf)
{
	char pub[NET_KEY_Z85_LEN + 1], sec[NET_KEY_Z85_LEN + 1];
	char ndir[PATH_MAX], file[PATH_MAX + 32], text[512];
	int ret = net_keypair_generate(pub, sec);

	if (ret) {
		cmd_err("cannot generate CURVE keys: %s", strerror(-ret));
		return ret;
	}
	snprintf(ndir, sizeof(ndir), "%s/node%ld", dir, i);
	if (mkdir(ndir, 0700)) {
		ret = -errno;
		cmd_err("cannot create %s: %s", ndir, strerror(errno));
		return ret;
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
			 "name = node%ld\n"
			 "cluster = %s\n",
			 i, id);
		ret = write_file(file, text, 0644);
	}
	if (ret) {
		cmd_err("cannot write %s: %s", file, strerror(-ret));
		return ret;
	}
	conf->len +=
	    (size_t)snprintf(conf->buf + conf->len, conf->cap - conf->len,
			     "\n[node node%ld]\n"
			     "address = tcp://127.0.0.1:%ld\n"
			     "public_key = %s\n"
			     "zone = zone%ld\n"
			     "weight = 1\n",
			     i, port + i - 1, pub, i);
	return 0;
}

/* The [cluster] section, for a new cluster id. */
static void cluster_conf_head(const struct cluster_args *a, const char *id,
			      struct conf_text *conf)
{
	uint32_t cmin, cmax;

	cdc_sizes_for_avg((uint32_t)a->avg, &cmin, &cmax);

	conf->len += (size_t)snprintf(
	    conf->buf + conf->len, conf->cap - conf->len,
	    "# blockfs cluster file: every node and client reads the same "
	    "one.\n"
	    "[cluster]\n"
	    "id = %s\n"
	    "nodes = %ld\n"
	    "redundancy = %s\n"
	    "chunker = %s\n"
	    "chunk_min = %llu\n"
	    "chunk_avg = %llu\n"
	    "chunk_max = %llu\n",
	    id, a->nodes, a->redundancy, a->chunker, (unsigned long long)cmin,
	    (unsigned long long)a->avg, (unsigned long long)cmax);
}

/* The filesystem: a new id and Ed25519 key pair, the secret key written
 * to DIR/filesystem.key (0600, one line of hex) and the [filesystem]
 * section to @conf. 0, or -errno after saying why. */
static int cluster_make_fs(const struct cluster_args *a, const char *dir,
			   struct conf_text *conf)
{
	uint8_t id[CL_FS_ID_LEN], pk[crypto_sign_PUBLICKEYBYTES],
	    sk[crypto_sign_SECRETKEYBYTES];
	char idhex[2 * sizeof(id) + 1], pkhex[2 * sizeof(pk) + 1];
	char skhex[2 * sizeof(sk) + 2], file[PATH_MAX];
	int ret;

	_Static_assert(sizeof(pk) == CL_FS_PK_LEN, "Ed25519 public key");
	randombytes_buf(id, sizeof(id));
	crypto_sign_keypair(pk, sk);
	sodium_bin2hex(idhex, sizeof(idhex), id, sizeof(id));
	sodium_bin2hex(pkhex, sizeof(pkhex), pk, sizeof(pk));
	sodium_bin2hex(skhex, sizeof(skhex), sk, sizeof(sk));
	strcat(skhex, "\n");
	snprintf(file, sizeof(file), "%s/filesystem.key", dir);
	ret = write_file(file, skhex, 0600);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(skhex, sizeof(skhex));
	if (ret) {
		cmd_err("cannot write %s: %s", file, strerror(-ret));
		return ret;
	}
	conf->len += (size_t)snprintf(
	    conf->buf + conf->len, conf->cap - conf->len,
	    "\n# The filesystem: its heads are signed with the secret key in\n"
	    "# filesystem.key, which is not in this file.\n"
	    "[filesystem]\n"
	    "id = %s\n"
	    "public_key = %s\n"
	    "hash = %s\n",
	    idhex, pkhex, blk_hash_name(a->hash));
	return 0;
}

/* The same cluster file in every node directory, then in DIR. 0, or
 * -errno after saying why. */
static int cluster_write_conf(const char *dir, long nodes, const char *conf)
{
	char file[PATH_MAX];
	int ret = 0;

	for (long i = 1; !ret && i <= nodes + 1; i++) {
		if (i <= nodes)
			snprintf(file, sizeof(file), "%s/node%ld/cluster.conf",
				 dir, i);
		else
			snprintf(file, sizeof(file), "%s/cluster.conf", dir);
		ret = write_file(file, conf, 0644);
		if (ret)
			cmd_err("cannot write %s: %s", file, strerror(-ret));
	}
	return ret;
}

/* Make the cluster in @dir. 0, or -errno after saying why. */
static int cluster_create(const struct cluster_args *a, const char *dir)
{
	uint8_t idraw[16];
	char id[33];
	struct conf_text conf = {.cap = 2048 + (size_t)a->nodes * 256};
	int ret = -ENOMEM;

	randombytes_buf(idraw, sizeof(idraw));
	sodium_bin2hex(id, sizeof(id), idraw, sizeof(idraw));
	conf.buf = malloc(conf.cap);
	if (!conf.buf) {
		cmd_err("out of memory");
		goto out;
	}
	cluster_conf_head(a, id, &conf);
	ret = cluster_make_fs(a, dir, &conf);
	if (ret)
		goto out;
	for (long i = 1; i <= a->nodes; i++) {
		ret = cluster_make_node(dir, id, i, a->port, &conf);
		if (ret)
			goto out;
	}
	ret = cluster_write_conf(dir, a->nodes, conf.buf);
	if (ret)
		goto out;
	printf("created cluster %s (%s) in %s:\n", id, a->redundancy, dir);
	for (long i = 1; i <= a->nodes; i++)
		printf("  %s/node%ld\n", dir, i);
	printf("filesystem key: %s/filesystem.key (keep it safe: it writes "
	       "the filesystem)\n",
	       dir);
out:
	free(conf.buf);
	return ret;
}

static const char upgrade_usage_text[] =
    "Usage: blockfs cluster upgrade DIR [--hash HASH]\n"
    "\n"
    "Give a cluster made before signed heads (its cluster file has no\n"
    "[filesystem] section: its mount makes no commits and cannot be\n"
    "recovered from the cluster) a filesystem id and Ed25519 key pair:\n"
    "the secret key goes to DIR/filesystem.key (mode 0600), the section to\n"
    "DIR/cluster.conf and to the copy in every node directory DIR/NAME of\n"
    "a node it lists. Stop the cluster's mount and nodes first, start\n"
    "them again after; the first mount then commits the whole tree. Copy\n"
    "the new cluster file to the nodes kept elsewhere (they are listed),\n"
    "and filesystem.key to the machines that mount read-write.\n"
    "\n"
    "Options:\n"
    "      --hash HASH   the hash of new CIDs: blake2b-256 (the default\n"
    "                    here: the hash of the CIDs the cluster holds, so\n"
    "                    that new copies of stored data deduplicate) or\n"
    "                    sha2-256\n"
    "  -h, --help        show this help\n"
    "\n"
    "Exit status: 0 upgraded, 1 failed or nothing to do (nothing is\n"
    "changed then), 2 usage error.\n";

static const struct option upgrade_longopts[] = {
    {"hash", required_argument, NULL, 'H'},
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec upgrade_cmd =
    CMD_SPEC("cluster upgrade", "h", upgrade_longopts, upgrade_usage_text, 1,
	     "cluster upgrade needs exactly one DIR");

static int upgrade_opt(void *ctx, int c, const char *arg)
{
	struct cluster_args *a = ctx;

	if (c == 'H' && blk_hash_from_name(arg, &a->hash))
		return cmd_usage_error(upgrade_cmd.name,
				       "unknown hash '%s' (sha2-256 or "
				       "blake2b-256)",
				       arg);
	return CMD_CONTINUE;
}

/* The whole of the file at @path as a malloc'd string: 0 or -errno. */
static int read_text(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;
	int ret = 0;

	*out = NULL;
	if (!f)
		return -errno;
	if (getdelim(&buf, &len, '\0', f) < 0 && !feof(f))
		ret = -EIO;
	if (!buf && !ret)
		buf = strdup("");
	if (!buf && !ret)
		ret = -ENOMEM;
	fclose(f);
	if (ret)
		free(buf);
	else
		*out = buf;
	return ret;
}

/* What an upgrade finds in DIR before it changes anything. */
struct upgrade_plan {
	struct cl_cluster *cl;
	char *text;  /* DIR/cluster.conf as it is */
	bool *local; /* per node: DIR/NAME holds a same copy */
	unsigned nlocal, nremote;
};

/* Check DIR and fill @p: a cluster file without [filesystem], no key
 * yet, and every node directory in DIR stopped and holding the same
 * cluster file. 0, or 1 after saying why. */
static int upgrade_check(const char *dir, struct upgrade_plan *p)
{
	char path[PATH_MAX + 80], err[1024];
	struct node_holder h;

	snprintf(path, sizeof(path), "%s/cluster.conf", dir);
	p->cl = calloc(1, sizeof(*p->cl));
	if (!p->cl) {
		cmd_err("out of memory");
		return 1;
	}
	int r = read_text(path, &p->text);
	if (r) {
		cmd_err("cannot read %s: %s", path, strerror(-r));
		return 1;
	}
	if (cl_cluster_load(path, p->cl, err, sizeof(err))) {
		cmd_err("%s", err);
		return 1;
	}
	if (p->cl->has_fs) {
		cmd_err("%s has a [filesystem] section already: nothing to do",
			path);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/filesystem.key", dir);
	if (access(path, F_OK) == 0) {
		cmd_err("%s exists, but the cluster file names no filesystem: "
			"move it aside first (it signs another filesystem)",
			path);
		return 1;
	}
	p->local = calloc(p->cl->nnodes ? p->cl->nnodes : 1, sizeof(bool));
	if (!p->local)
		return 1;
	for (unsigned i = 0; i < p->cl->nnodes; i++) {
		char node[PATH_MAX + 80], *copy;
		snprintf(node, sizeof(node), "%s/%s", dir,
			 p->cl->nodes[i].name);
		snprintf(path, sizeof(path), "%s/cluster.conf", node);
		if (read_text(path, &copy)) {
			p->nremote++;
			continue;
		}
		bool same = !strcmp(copy, p->text);
		free(copy);
		if (!same) {
			cmd_err(
			    "%s differs from %s/cluster.conf: make them the "
			    "same first",
			    path, dir);
			return 1;
		}
		if (node_holder_read(node, &h)) {
			node_print_in_use("upgrade", node, &h);
			return 1;
		}
		p->local[i] = true;
		p->nlocal++;
	}
	return 0;
}

/* Upgrade the cluster in @dir. 0, or 1 after saying why. */
static int cluster_upgrade(const struct cluster_args *a, const char *dir)
{
	struct upgrade_plan p = {0};
	struct conf_text conf = {0};
	char path[PATH_MAX + 80];
	int ret = upgrade_check(dir, &p);

	if (ret)
		goto out;
	ret = 1;
	conf.cap = strlen(p.text) + 1024;
	conf.buf = malloc(conf.cap);
	if (!conf.buf)
		goto out;
	conf.len = (size_t)snprintf(conf.buf, conf.cap, "%s", p.text);
	if (conf.len && conf.buf[conf.len - 1] != '\n')
		conf.len += (size_t)snprintf(conf.buf + conf.len,
					     conf.cap - conf.len, "\n");
	if (cluster_make_fs(a, dir, &conf))
		goto out;
	/* The node copies first, DIR's last: a failure half-way leaves
	 * DIR/cluster.conf as it was, and running the command again after
	 * removing filesystem.key starts over. */
	for (unsigned i = 0; i < p.cl->nnodes; i++) {
		if (!p.local[i])
			continue;
		snprintf(path, sizeof(path), "%s/%s/cluster.conf", dir,
			 p.cl->nodes[i].name);
		int w = write_file(path, conf.buf, 0644);
		if (w) {
			cmd_err("cannot write %s: %s", path, strerror(-w));
			goto out;
		}
	}
	snprintf(path, sizeof(path), "%s/cluster.conf", dir);
	int w = write_file(path, conf.buf, 0644);
	if (w) {
		cmd_err("cannot write %s: %s", path, strerror(-w));
		goto out;
	}
	printf("upgraded cluster %s in %s: hash %s, %u node copies updated\n",
	       p.cl->id, dir, blk_hash_name(a->hash), p.nlocal);
	printf("filesystem key: %s/filesystem.key (keep it safe: it writes "
	       "the filesystem)\n",
	       dir);
	for (unsigned i = 0; i < p.cl->nnodes; i++)
		if (!p.local[i])
			printf("copy %s/cluster.conf to node %s (not in %s)\n",
			       dir, p.cl->nodes[i].name, dir);
	ret = 0;
out:
	free(conf.buf);
	free(p.local);
	free(p.text);
	free(p.cl);
	return ret;
}

int cmd_cluster(int argc, char **argv)
{
	struct cluster_args a = {.port = 7401,
				 .chunker = "fastcdc",
				 .avg = CDC_DEFAULT_AVG,
				 .hash = BLK_HASH_DEFAULT};

	if (argc >= 2 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		cmd_usage(&cluster_cmd, stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "upgrade")) {
		struct cluster_args u = {.hash = BLK_HASH_BLAKE2B_256};
		int st = cmd_parse(&upgrade_cmd, argc - 1, argv + 1,
				   upgrade_opt, &u);
		if (st != CMD_CONTINUE)
			return st;
		if (sodium_init() < 0) {
			cmd_err("libsodium failed to initialise");
			return 1;
		}
		return cluster_upgrade(&u, argv[1 + optind]);
	}
	if (argc < 2 || strcmp(argv[1], "create"))
		return cmd_usage_error("cluster",
				       "cluster: expected 'create' or "
				       "'upgrade'");
	int st = cmd_parse(&cluster_cmd, argc - 1, argv + 1, cluster_opt, &a);
	if (st != CMD_CONTINUE)
		return st;
	st = cluster_check_args(&a);
	if (st != CMD_CONTINUE)
		return st;
	const char *dir = argv[1 + optind];
	if (cluster_check_dir(dir, a.nodes))
		return 1;
	if (sodium_init() < 0) {
		cmd_err("libsodium failed to initialise");
		return 1;
	}
	return cluster_create(&a, dir) ? 1 : 0;
}
