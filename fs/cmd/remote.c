/* The commands' read-only view of the cluster; see remote.h. */
#include "fs/cmd/remote.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blocks/store/store.h"
#include "fs/cmd/cmd.h"
#include "fs/cmd/node.h"
#include "net/cluster/engine.h"
#include "net/server/heads.h"

/* NODE_DIR/db read-only, when there is one: its block store (blocks held
 * here need no round trip) and its heads (a cluster of one node keeps
 * them there, with no server to ask while it is mounted). Failing that,
 * the cluster alone. */
static void open_local(const char *node_dir, struct cmd_remote *r)
{
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .read_only = true};
	char path[PATH_MAX], err[512];
	struct stat sb;
	int heads;

	blk_store_register(&reg, NULL);
	cl_engine_register(&reg);
	heads = net_heads_register(&reg);
	snprintf(path, sizeof(path), "%s/db", node_dir);
	if (stat(path, &sb)) {
		r->no_db = errno == ENOENT;
		return;
	}
	if (blk_db_open(path, &o, &r->db, err, sizeof(err)))
		return;
	if (blk_store_open(r->db, NULL, &r->store, err, sizeof(err)))
		r->store = NULL; /* a node only ever served has none */
	if (heads >= 0 && blk_db_cf_open(r->db, (unsigned)heads) &&
	    net_heads_open(r->db, (unsigned)heads, r->cl->fs_id,
			   r->cl->fs_public_key, &r->heads))
		r->heads = NULL;
}

int cmd_remote_open(const char *node_dir, struct cmd_remote *r)
{
	char err[1024] = "", name[64], pub[64], sec[64];
	unsigned k = 1, m = 0;
	int ret;

	memset(r, 0, sizeof(*r));
	if (cl_node_name(node_dir, name, sizeof(name), err, sizeof(err))) {
		cmd_err("%s", err);
		return 1;
	}
	r->cl = node_cluster(node_dir, err, sizeof(err));
	if (!r->cl) {
		cmd_err("%s", err);
		return 1;
	}
	if (!r->cl->has_fs) {
		cmd_err("%s/cluster.conf has no [filesystem] section (a "
			"cluster made before snapshots): it has no heads",
			node_dir);
		cmd_remote_close(r);
		return 1;
	}
	if (node_keys(node_dir, pub, sec, err, sizeof(err))) {
		cmd_err("%s", err);
		cmd_remote_close(r);
		return 1;
	}
	if (cl_parse_redundancy(r->cl->redundancy, &k, &m) ||
	    k + m > r->cl->nnodes) {
		k = 1;
		m = 0;
	}
	struct cl_engine_config ec = {
	    .cluster = r->cl,
	    .self = name,
	    .public_key = pub,
	    .secret_key = sec,
	    .k = k,
	    .m = m,
	    .ec_min = r->cl->ec_min,
	};
	ret = cl_engine_open(&ec, &r->eng, err, sizeof(err));
	if (ret) {
		cmd_err("%s", err);
		cmd_remote_close(r);
		return 1;
	}
	r->client = cl_engine_client(r->eng);
	for (unsigned i = 0; i < r->cl->nnodes; i++)
		if (!strcmp(r->cl->nodes[i].name, name))
			r->self = i;
	open_local(node_dir, r);
	return 0;
}

void cmd_remote_drop_local(struct cmd_remote *r)
{
	net_heads_close(r->heads);
	blk_store_close(r->store);
	blk_db_close(r->db);
	r->heads = NULL;
	r->store = NULL;
	r->db = NULL;
}

void cmd_remote_close(struct cmd_remote *r)
{
	cl_engine_close(r->eng);
	cmd_remote_drop_local(r);
	free(r->cl);
	memset(r, 0, sizeof(*r));
}

int cmd_remote_fetch(void *ctx, const struct blk_cid *cid, void **data,
		     size_t *len)
{
	struct cmd_remote *r = ctx;

	if (r->store && blk_store_get(r->store, cid, data, len) == 0) {
		if (blk_cid_verify(cid, *data, *len))
			return 0;
		free(*data); /* a damaged local copy: the cluster's */
	}
	return cl_engine_fetch(r->eng, cid, data, len);
}

void cmd_remote_prefetch(struct cmd_remote *r, const struct blk_cid *cids,
			 size_t n)
{
	struct blk_cid far[256];
	size_t m = 0;

	/* Only what the node's own store does not hold here. */
	for (size_t i = 0; i < n; i++) {
		uint64_t refs;
		uint32_t len;
		bool local = false;

		if (r->store &&
		    blk_store_info(r->store, &cids[i], &refs, &len, &local) ==
			0 &&
		    local)
			continue;
		far[m++] = cids[i];
		if (m == sizeof(far) / sizeof(far[0])) {
			cl_engine_prefetch(r->eng, far, m);
			m = 0;
		}
	}
	if (m)
		cl_engine_prefetch(r->eng, far, m);
}

/* Head @seq (0: the latest) from the node's own heads: 0, -ENOENT (none,
 * or none valid: logged), -EHOSTDOWN (no heads here to read). */
static int local_head(struct cmd_remote *r, uint64_t seq,
		      struct cl_head_info *out)
{
	uint8_t buf[NET_HEAD_MAX_BYTES];
	char why[160];
	size_t len;
	int ret;

	if (!r->heads)
		return r->no_db ? -ENOENT : -EHOSTDOWN;
	ret = net_heads_get(r->heads, r->cl->fs_id, seq, buf, &len);
	if (ret)
		return ret == -ENOENT ? ret : -EHOSTDOWN;
	if (cl_head_check(r->cl, buf, len, seq, &out->head, why, sizeof(why))) {
		cmd_err("warning: this node's own database holds %s; ignored",
			why);
		return -ENOENT;
	}
	blk_head_cid(buf, len, &out->cid);
	out->node = r->self;
	return 0;
}

/* The better of the cluster's answer @net (status @ret) and the local
 * one: the higher seq. */
static int best(struct cmd_remote *r, uint64_t seq, int ret,
		struct cl_head_info *out)
{
	struct cl_head_info loc;
	int lret = local_head(r, seq, &loc);

	if (lret == 0 && (ret || loc.head.seq > out->head.seq)) {
		*out = loc;
		return 0;
	}
	if (ret == -EHOSTDOWN && lret == -ENOENT)
		return -ENOENT; /* the only node we could read has none */
	return ret;
}

/* A cluster of this node alone: its own heads are all there is (no
 * need to wait for a server that may not run); none if it never ran. */
static bool alone(const struct cmd_remote *r)
{
	return (r->heads || r->no_db) && r->cl->nnodes == 1;
}

int cmd_remote_latest(struct cmd_remote *r, struct cl_head_info *out)
{
	int ret = alone(r)
		      ? -EHOSTDOWN
		      : cl_heads_latest(r->client, r->cl, 0, out, NULL, NULL);

	return best(r, 0, ret, out);
}

int cmd_remote_head(struct cmd_remote *r, uint64_t seq,
		    struct cl_head_info *out)
{
	int ret = alone(r)
		      ? -EHOSTDOWN
		      : cl_heads_get(r->client, r->cl, seq, 0, out, NULL, NULL);

	return ret ? best(r, seq, ret, out) : 0;
}

int cmd_remote_list(struct cmd_remote *r, struct cl_head_info **out, size_t *n,
		    size_t *missing)
{
	struct cl_head_info top;
	int ret = alone(r)
		      ? -EHOSTDOWN
		      : cl_heads_list(r->client, r->cl, 0, out, n, missing);

	int lret;

	if (alone(r)) {
		*out = NULL;
		*n = 0;
	}
	if (ret && ret != -EHOSTDOWN)
		return ret;
	/* The node's own heads, when they go further (a cluster of one). */
	lret = local_head(r, 0, &top);
	if (lret)
		return ret == -EHOSTDOWN && lret == -ENOENT ? 0 : ret;
	if (!ret && *n && (*out)[0].head.seq >= top.head.seq)
		return 0;
	free(*out);
	*out = calloc((size_t)top.head.seq, sizeof(**out));
	*n = 0;
	if (missing)
		*missing = 0;
	if (!*out)
		return -ENOMEM;
	for (uint64_t s = top.head.seq; s >= 1; s--) {
		if (!local_head(r, s, &(*out)[*n]))
			(*n)++;
		else if (missing)
			(*missing)++;
	}
	return 0;
}

bool cmd_remote_parse_seq(const char *s, uint64_t *seq)
{
	char *end;

	if (!*s || strspn(s, "0123456789") != strlen(s))
		return false;
	errno = 0;
	*seq = strtoull(s, &end, 10);
	return !errno && *seq > 0;
}

/* A head named by its CID @cid: among the nodes' heads, else as a block
 * (a head is stored as one too), checked. */
static int head_by_cid(struct cmd_remote *r, const struct blk_cid *cid,
		       struct cl_head_info *out, char *why, size_t whylen)
{
	struct cl_head_info *all;
	void *data;
	size_t n, len;
	int ret;

	if (!cmd_remote_list(r, &all, &n, NULL)) {
		for (size_t i = 0; i < n; i++)
			if (blk_cid_equal(&all[i].cid, cid)) {
				*out = all[i];
				free(all);
				return 0;
			}
		free(all);
	}
	if (cmd_remote_fetch(r, cid, &data, &len))
		return -ENOENT;
	out->cid = *cid;
	out->node = r->self;
	ret = cl_head_check(r->cl, data, len, 0, &out->head, why, whylen);
	free(data);
	return ret;
}

int cmd_remote_find_head(struct cmd_remote *r, const char *which,
			 struct cl_head_info *out, char *err, size_t errlen)
{
	struct blk_cid cid;
	char why[160] = "";
	uint64_t seq = 0;
	int ret;

	if (!which || cmd_remote_parse_seq(which, &seq)) {
		ret = seq ? cmd_remote_head(r, seq, out)
			  : cmd_remote_latest(r, out);
		if (ret == -ENOENT)
			snprintf(err, errlen,
				 seq ? "no node has a valid head %s"
				     : "the filesystem has no snapshot yet%s",
				 seq ? which : "");
		else if (ret)
			snprintf(err, errlen,
				 "cannot read the filesystem's heads: %s",
				 ret == -EHOSTDOWN ? "no node answered"
						   : strerror(-ret));
		return ret;
	}
	if (blk_cid_from_string(&cid, which) ||
	    cid.codec != BLK_CODEC_DAG_CBOR) {
		snprintf(err, errlen,
			 "'%s' is neither a snapshot's seq nor a head's CID "
			 "(dag-cbor)",
			 which);
		return -EINVAL;
	}
	ret = head_by_cid(r, &cid, out, why, sizeof(why));
	if (ret == -ENOENT)
		snprintf(err, errlen, "no node has the head %s", which);
	else if (ret)
		snprintf(err, errlen, "%s is not a head of this filesystem: %s",
			 which, why);
	return ret;
}
