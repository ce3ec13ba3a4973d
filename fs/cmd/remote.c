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

/* NODE_DIR/db read-only, when there is one with a block store: blocks
 * held here need no round trip. Failing that, the cluster alone. */
static void open_local(const char *node_dir, struct cmd_remote *r)
{
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .read_only = true};
	char path[PATH_MAX], err[512];
	struct stat sb;

	blk_store_register(&reg, NULL);
	cl_engine_register(&reg);
	snprintf(path, sizeof(path), "%s/db", node_dir);
	if (stat(path, &sb) || blk_db_open(path, &o, &r->db, err, sizeof(err)))
		return;
	if (blk_store_open(r->db, NULL, &r->store, err, sizeof(err))) {
		r->store = NULL;
		blk_db_close(r->db);
		r->db = NULL;
	}
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
	open_local(node_dir, r);
	return 0;
}

void cmd_remote_close(struct cmd_remote *r)
{
	cl_engine_close(r->eng);
	blk_store_close(r->store);
	blk_db_close(r->db);
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
