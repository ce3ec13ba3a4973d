/* 'blockfs export': a snapshot of the filesystem (or of one directory in
 * it) as a CAR v1 archive, streamed from the cluster's blocks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blocks/dag/attrs.h"
#include "blocks/dag/car.h"
#include "blocks/dag/head.h"
#include "blocks/dag/walk.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/progress.h"
#include "fs/cmd/remote.h"
#include "net/cluster/headset.h"

static const char export_usage_text[] =
    "Usage: blockfs export NODE_DIR --car FILE [--snapshot SEQ|CID]\n"
    "                      [--path /DIR]\n"
    "\n"
    "Write a snapshot of the filesystem as a CAR v1 archive: every block\n"
    "of its UnixFS tree once, parents first, with the tree's root as the\n"
    "archive's root, so IPFS tools (ipfs dag import, ipfs-car, the\n"
    "unixfs exporter) read it. Blocks come from the node's own store and\n"
    "the cluster; works while NODE_DIR is mounted or served. Only the\n"
    "UnixFS tree goes into the archive unless --attrs asks for the rest.\n"
    "\n"
    "Options:\n"
    "  -o, --car FILE        write the archive to FILE ('-': stdout)\n"
    "  -s, --snapshot WHICH  the snapshot: its seq (see 'blockfs snapshot\n"
    "                        list'), a head's CID (dag-cbor), or a UnixFS\n"
    "                        root CID (dag-pb); default the latest\n"
    "  -p, --path /DIR       export only this directory (or file) of it\n"
    "  -a, --attrs           also the head and the attribute blocks\n"
    "                        (owners, times, xattrs, hard links, special\n"
    "                        files: FORMAT.md), after the UnixFS tree;\n"
    "                        the archive's root stays the UnixFS root\n"
    "  -h, --help            show this help\n"
    "\n"
    "Exit status: 0 done, 1 failed (a block could not be read, no such\n"
    "snapshot or path, FILE not writable), 2 usage error.\n";

static const struct option export_longopts[] = {
    {"car", required_argument, NULL, 'o'},
    {"snapshot", required_argument, NULL, 's'},
    {"path", required_argument, NULL, 'p'},
    {"attrs", no_argument, NULL, 'a'},
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec export_cmd =
    CMD_SPEC("export", "o:s:p:ah", export_longopts, export_usage_text, 1,
	     "export needs NODE_DIR");

struct export_opts {
	const char *car, *snapshot, *path;
	bool attrs;
};

static int export_opt(void *ctx, int c, const char *arg)
{
	struct export_opts *o = ctx;

	if (c == 'o')
		o->car = arg;
	else if (c == 's')
		o->snapshot = arg;
	else if (c == 'p')
		o->path = arg;
	else if (c == 'a')
		o->attrs = true;
	return CMD_CONTINUE;
}

/* The archive's output and the walk's progress. */
struct export_run {
	struct cmd_remote r;
	FILE *out;
	struct blk_car_writer car;
	bool tty;
	struct timespec last; /* progress drawn */
	/* --attrs: the head, and the attribute tree's blocks written */
	bool has_head;
	struct blk_cid head, attrs;
	struct blk_head head_rec; /* encoded again: the nodes keep heads,
				     not blocks of them */
	struct blk_cid *seen;
	size_t nseen, capseen;
};

static int write_out(void *arg, const void *buf, size_t len)
{
	struct export_run *x = arg;

	if (len && fwrite(buf, 1, len, x->out) != len)
		return errno ? -errno : -EIO;
	return 0;
}

static void draw(struct export_run *x, bool force)
{
	struct timespec now;

	if (!x->tty)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!force && (now.tv_sec - x->last.tv_sec) * 1000000000L +
			      (now.tv_nsec - x->last.tv_nsec) <
			  200000000L)
		return;
	x->last = now;
	cmd_progress_count("export", x->car.blocks, x->car.bytes);
}

static int visit(void *ctx, const struct blk_cid *cid, const uint8_t *data,
		 size_t len)
{
	struct export_run *x = ctx;
	int ret = blk_car_write_block(&x->car, cid, data, len);

	draw(x, false);
	return ret;
}

static int fetch(void *ctx, const struct blk_cid *cid, void **data, size_t *len)
{
	struct export_run *x = ctx;

	return cmd_remote_fetch(&x->r, cid, data, len);
}

static void prefetch(void *ctx, const struct blk_cid *cids, size_t n)
{
	struct export_run *x = ctx;

	cmd_remote_prefetch(&x->r, cids, n);
}

/* The UnixFS root of the snapshot @which (NULL: the latest; a seq, a
 * head's CID, or a UnixFS root's CID) into @root, with its head when
 * there is one. 0, or 1 after saying why. */
static int snapshot_root(struct cmd_remote *r, const char *which,
			 struct blk_cid *root, struct cl_head_info *head,
			 bool *has_head)
{
	char err[512];
	bool is_cid = which && !blk_cid_from_string(root, which);

	if (is_cid && root->codec == BLK_CODEC_DAG_PB)
		return 0;
	if (is_cid && root->codec != BLK_CODEC_DAG_CBOR) {
		cmd_err("%s is not a head (dag-cbor) or a UnixFS root (dag-pb)",
			which);
		return 1;
	}
	if (cmd_remote_find_head(r, which, head, err, sizeof(err))) {
		cmd_err("%s", err);
		return 1;
	}
	*root = head->head.root;
	*has_head = true;
	return 0;
}

/* Write block @cid unless written already (the attribute tree shares
 * blocks between directories alike). 0, 1 when seen, or -errno. */
static int attrs_once(struct export_run *x, const struct blk_cid *cid)
{
	for (size_t i = 0; i < x->nseen; i++)
		if (blk_cid_equal(&x->seen[i], cid))
			return 1;
	if (x->nseen == x->capseen) {
		size_t n = x->capseen ? x->capseen * 2 : 64;
		struct blk_cid *v = realloc(x->seen, n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		x->seen = v;
		x->capseen = n;
	}
	x->seen[x->nseen++] = *cid;
	return 0;
}

/* blk_dag_fetch_fn for the attribute reader: parts go into the archive
 * as they are read. */
static int attrs_fetch(void *ctx, const struct blk_cid *cid, void **data,
		       size_t *len)
{
	struct export_run *x = ctx;
	int ret = fetch(x, cid, data, len);

	if (!ret && attrs_once(x, cid) == 0)
		ret = visit(x, cid, *data, *len);
	return ret;
}

/* --attrs: the head block and every attribute block, breadth-first (a
 * queue of directory blocks: memory grows with the directories). */
static int export_attrs(struct export_run *x, struct blk_cid *failed)
{
	struct blk_cid *queue = NULL;
	size_t head = 0, n = 0, cap = 0;
	uint8_t rec[BLK_HEAD_MAX_BYTES];
	void *data = NULL;
	size_t len;
	int ret = blk_head_encode(&x->head_rec, rec, sizeof(rec), &len);

	*failed = x->head;
	if (!ret)
		ret = visit(x, &x->head, rec, len);
	for (struct blk_cid next = x->attrs; !ret;) {
		struct blk_attrs_rd *rd = NULL;
		struct blk_attr_entry e;

		*failed = next;
		if (attrs_once(x, &next) == 0) {
			data = NULL;
			ret = fetch(x, &next, &data, &len);
			if (!ret)
				ret = visit(x, &next, data, len);
			if (!ret)
				ret = blk_attrs_rd_open(&rd, data, len);
			while (!ret && (ret = blk_attrs_rd_next(rd, attrs_fetch,
								x, &e)) == 1) {
				ret = 0;
				if (!e.dir)
					continue;
				if (n == cap) {
					size_t c = cap ? cap * 2 : 64;
					struct blk_cid *v =
					    realloc(queue, c * sizeof(*v));

					if (!v) {
						ret = -ENOMEM;
						break;
					}
					queue = v;
					cap = c;
				}
				queue[n++] = e.attrs_cid;
			}
			blk_attrs_rd_free(&rd);
			free(data);
		}
		if (ret || head == n)
			break;
		next = queue[head++];
	}
	free(queue);
	return ret;
}

/* Walk @root into the archive. 0 or 1 after saying why. */
static int export_walk(struct export_run *x, const struct blk_cid *root,
		       const char *file)
{
	struct blk_walk_config wc = {
	    .fetch = fetch, .visit = visit, .prefetch = prefetch, .ctx = x};
	struct blk_walk_stats st = {0};
	char cs[BLK_CID_STR_MAX];
	int ret;

	ret = blk_car_writer_start(&x->car, write_out, x, root, 1);
	if (!ret)
		ret = blk_dag_walk(&wc, root, &st);
	if (!ret && x->has_head) {
		ret = export_attrs(x, &st.failed);
		st.has_failed = ret != 0;
	}
	if (!ret && fflush(x->out))
		ret = -errno;
	draw(x, true);
	if (x->tty)
		cmd_progress_draw(NULL, 0, 0, NULL);
	if (ret && st.has_failed) {
		blk_cid_to_string(&st.failed, cs);
		cmd_err("cannot read block %s: %s", cs,
			ret == -EBADMSG ? "not a valid UnixFS node"
					: strerror(-ret));
		return 1;
	}
	if (ret) {
		cmd_err("cannot write %s: %s", file, strerror(-ret));
		return 1;
	}
	blk_cid_to_string(root, cs);
	fprintf(stderr,
		"blockfs: exported %s: %llu blocks, %llu bytes of archive "
		"(%llu hole blocks made)\n",
		cs, (unsigned long long)x->car.blocks,
		(unsigned long long)x->car.bytes, (unsigned long long)st.zeros);
	return 0;
}

int cmd_export(int argc, char **argv)
{
	struct export_opts o = {0};
	int st = cmd_parse(&export_cmd, argc, argv, export_opt, &o);

	if (st != CMD_CONTINUE)
		return st;
	if (!o.car)
		return cmd_usage_error("export", "export needs --car FILE");
	struct blk_cid given;
	uint64_t seq;
	if (o.snapshot && !cmd_remote_parse_seq(o.snapshot, &seq) &&
	    blk_cid_from_string(&given, o.snapshot))
		return cmd_usage_error(
		    "export",
		    "--snapshot '%s' is neither a seq (1, 2, "
		    "...) nor a CID",
		    o.snapshot);
	if (o.path && o.path[0] != '/')
		return cmd_usage_error(
		    "export", "--path must start with '/': '%s'", o.path);
	const char *node_dir = argv[optind];
	struct export_run x = {0};
	struct blk_cid root;

	if (cmd_remote_open(node_dir, &x.r))
		return 1;
	struct cl_head_info h;
	bool has_head = false;
	st = snapshot_root(&x.r, o.snapshot, &root, &h, &has_head);
	if (!st && o.attrs) {
		if (!has_head || o.path) {
			cmd_err("--attrs exports a whole snapshot named by its "
				"seq or head, without --path");
			st = 1;
		}
		x.has_head = true;
		x.head = h.cid;
		x.head_rec = h.head;
		x.attrs = h.head.attrs;
	}
	if (!st && o.path) {
		int ret = blk_dag_walk_resolve(cmd_remote_fetch, &x.r, &root,
					       o.path, &root);
		if (ret) {
			cmd_err("%s: %s", o.path,
				ret == -EIO ? "a block on the way could not be "
					      "read"
					    : strerror(-ret));
			st = 1;
		}
	}
	bool to_stdout = !strcmp(o.car, "-");
	if (!st) {
		x.out = to_stdout ? stdout : fopen(o.car, "we");
		if (!x.out) {
			cmd_err("cannot create %s: %s", o.car, strerror(errno));
			st = 1;
		}
	}
	if (!st) {
		x.tty = isatty(STDERR_FILENO);
		st = export_walk(&x, &root, to_stdout ? "stdout" : o.car);
		if (!to_stdout && fclose(x.out) && !st) {
			cmd_err("cannot write %s: %s", o.car, strerror(errno));
			st = 1;
		}
		if (st && !to_stdout)
			unlink(o.car); /* no partial archive left behind */
	}
	cmd_remote_close(&x.r);
	free(x.seen);
	return st;
}
