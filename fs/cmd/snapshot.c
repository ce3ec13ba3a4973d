/* 'blockfs snapshot list': the filesystem's heads as the nodes keep them,
 * newest first, with what the retention policy keeps, as text or JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <zmq.h>

#include "blocks/dag/pb.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/remote.h"
#include "net/cluster/headset.h"
#include "net/cluster/retention.h"

static const char snapshot_usage_text[] =
    "Usage: blockfs snapshot list NODE_DIR [--json]\n"
    "\n"
    "List the filesystem's snapshots (its heads, one per commit) as the\n"
    "cluster's nodes keep them, newest first: seq, commit time (UTC),\n"
    "the UnixFS root CID, the head's CID, the bytes of the tree (the\n"
    "root's Tsize: what 'blockfs export' of it holds, counting shared\n"
    "blocks once per reference), the node that wrote it, and whether the\n"
    "retention policy ([filesystem] retention in cluster.conf; default\n"
    "" CL_RETENTION_DEFAULT ") keeps it. Works while NODE_DIR is mounted\n"
    "or served; reads every node's heads and checks each against the\n"
    "filesystem's key.\n"
    "\n"
    "Options:\n"
    "  -j, --json   machine-readable output: {\"retention\": POLICY,\n"
    "               \"snapshots\": [{seq, time, time_ns, root, head,\n"
    "               bytes, writer, writer_node, keep}, ...]}\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 listed (also when there is no snapshot yet: the list\n"
    "is empty and the text says so), 1 failed (no node answered, a bad\n"
    "cluster file), 2 usage error.\n";

static const struct option snapshot_longopts[] = {
    {"json", no_argument, NULL, 'j'},
    CMD_OPT_HELP,
    {0},
};

static const struct cmd_spec snapshot_cmd =
    CMD_SPEC("snapshot", "jh", snapshot_longopts, snapshot_usage_text, 2,
	     "snapshot list needs NODE_DIR");

static int snapshot_opt(void *ctx, int c, const char *arg)
{
	(void)arg;
	if (c == 'j')
		*(bool *)ctx = true;
	return CMD_CONTINUE;
}

/* One line of the listing. */
struct snap {
	const struct cl_head_info *h;
	bool has_bytes;
	uint64_t bytes;
	bool keep;
	char time[32];
	char root[BLK_CID_STR_MAX], head[BLK_CID_STR_MAX];
	char writer[48];  /* Z85 of the CURVE key */
	const char *node; /* its name in the cluster file, or NULL */
};

/* The Tsize of UnixFS root @cid: its block's bytes and its links'
 * Tsizes. 0 or -errno. */
static int root_bytes(struct cmd_remote *r, const struct blk_cid *cid,
		      uint64_t *bytes)
{
	struct blk_pb_iter it;
	struct blk_pb_link l;
	void *data;
	size_t len;
	int ret = cmd_remote_fetch(r, cid, &data, &len);

	if (ret)
		return ret;
	*bytes = len;
	ret = blk_pb_iter_init(&it, data, len, NULL);
	while (!ret && blk_pb_iter_next(&it, &l) == 1)
		*bytes += l.tsize;
	free(data);
	return ret;
}

/* Fill @s's line; @prev (the line before, or NULL) lends its bytes when
 * the root is the same (nothing changed between two commits). */
static void describe(struct cmd_remote *r, struct snap *s,
		     const struct snap *prev)
{
	const struct blk_head *h = &s->h->head;
	time_t t = (time_t)(h->time_ns / 1000000000ull);
	struct tm tm;

	if (gmtime_r(&t, &tm))
		strftime(s->time, sizeof(s->time), "%Y-%m-%dT%H:%M:%SZ", &tm);
	blk_cid_to_string(&h->root, s->root);
	blk_cid_to_string(&s->h->cid, s->head);
	if (!zmq_z85_encode(s->writer, h->writer, sizeof(h->writer)))
		s->writer[0] = 0;
	for (unsigned i = 0; i < r->cl->nnodes; i++)
		if (!strcmp(r->cl->nodes[i].public_key, s->writer))
			s->node = r->cl->nodes[i].name;
	if (prev && blk_cid_equal(&prev->h->head.root, &h->root)) {
		s->has_bytes = prev->has_bytes;
		s->bytes = prev->bytes;
		return;
	}
	s->has_bytes = root_bytes(r, &h->root, &s->bytes) == 0;
}

static int print_json(const char *policy, const struct snap *s, size_t n)
{
	json_t *arr = json_array();
	json_t *o =
	    json_pack("{s:s, s:o}", "retention", policy, "snapshots", arr);
	int ret = o ? 0 : -ENOMEM;

	for (size_t i = 0; !ret && i < n; i++) {
		const struct blk_head *h = &s[i].h->head;
		json_t *e = json_pack(
		    "{s:I, s:s, s:I, s:s, s:s, s:o, s:s, s:o, s:b}", "seq",
		    (json_int_t)h->seq, "time", s[i].time, "time_ns",
		    (json_int_t)h->time_ns, "root", s[i].root, "head",
		    s[i].head, "bytes",
		    s[i].has_bytes ? json_integer((json_int_t)s[i].bytes)
				   : json_null(),
		    "writer", s[i].writer, "writer_node",
		    s[i].node ? json_string(s[i].node) : json_null(), "keep",
		    s[i].keep);
		if (!e || json_array_append_new(arr, e))
			ret = -ENOMEM;
	}
	if (!ret &&
	    (json_dumpf(o, stdout, JSON_INDENT(0)) || putchar('\n') == EOF))
		ret = -EIO;
	json_decref(o);
	if (ret)
		cmd_err("cannot print the snapshots as JSON: %s",
			strerror(-ret));
	return ret ? 1 : 0;
}

static void print_text(const char *policy, const struct snap *s, size_t n)
{
	if (!n) {
		printf("no snapshots yet: nothing has been committed\n");
		return;
	}
	printf("retention: %s\n", policy);
	printf("%-6s %-20s %-4s %14s %-12s %s\n", "SEQ", "TIME (UTC)", "KEEP",
	       "BYTES", "WRITER", "ROOT / HEAD");
	for (size_t i = 0; i < n; i++) {
		char bytes[24] = "?";

		if (s[i].has_bytes)
			snprintf(bytes, sizeof(bytes), "%llu",
				 (unsigned long long)s[i].bytes);
		printf("%-6llu %-20s %-4s %14s %-12s %s\n       head %s\n",
		       (unsigned long long)s[i].h->head.seq, s[i].time,
		       s[i].keep ? "yes" : "no", bytes,
		       s[i].node ? s[i].node : s[i].writer, s[i].root,
		       s[i].head);
	}
}

/* The list: heads, their retention, their lines. 0 or 1. */
static int snapshot_list(const char *node_dir, bool json)
{
	struct cmd_remote r;
	struct cl_head_info *heads = NULL;
	struct cl_retention pol;
	char policy[CL_RETENTION_MAX_LEN + 1], err[256];
	size_t n = 0, missing = 0;
	int st, ret;

	if (cmd_remote_open(node_dir, &r))
		return 1;
	ret = cl_retention_parse(r.cl->retention, &pol, err, sizeof(err));
	if (ret) { /* the cluster file's loader checked it already */
		cmd_err("invalid retention in %s/cluster.conf: %s", node_dir,
			err);
		cmd_remote_close(&r);
		return 1;
	}
	cl_retention_format(&pol, policy, sizeof(policy));
	ret = cmd_remote_list(&r, &heads, &n, &missing);
	if (ret) {
		cmd_err("cannot read the filesystem's heads: %s",
			ret == -EHOSTDOWN ? "no node answered"
					  : strerror(-ret));
		cmd_remote_close(&r);
		return 1;
	}
	if (missing)
		cmd_err("warning: %zu heads could not be read from any node "
			"(left out)",
			missing);
	struct snap *s = calloc(n ? n : 1, sizeof(*s));
	struct cl_retention_head *rh = calloc(n ? n : 1, sizeof(*rh));
	bool *keep = calloc(n ? n : 1, sizeof(*keep));
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	st = !s || !rh || !keep;
	for (size_t i = 0; !st && i < n; i++)
		rh[i] = (struct cl_retention_head){heads[i].head.seq,
						   heads[i].head.time_ns};
	if (!st)
		st = cl_retention_keep(&pol, rh, n,
				       (uint64_t)now.tv_sec * 1000000000ull +
					   (uint64_t)now.tv_nsec,
				       keep) != 0;
	for (size_t i = 0; !st && i < n; i++) {
		s[i].h = &heads[i];
		s[i].keep = keep[i];
		describe(&r, &s[i], i ? &s[i - 1] : NULL);
	}
	if (st)
		cmd_err("out of memory");
	else if (json)
		st = print_json(policy, s, n);
	else
		print_text(policy, s, n);
	free(s);
	free(rh);
	free(keep);
	free(heads);
	cmd_remote_close(&r);
	return st;
}

int cmd_snapshot(int argc, char **argv)
{
	bool json = false;
	int st = cmd_parse(&snapshot_cmd, argc, argv, snapshot_opt, &json);

	if (st != CMD_CONTINUE)
		return st;
	if (strcmp(argv[optind], "list"))
		return cmd_usage_error("snapshot",
				       "unknown snapshot command '%s' (list)",
				       argv[optind]);
	return snapshot_list(argv[optind + 1], json);
}
