/* A node directory's read-only view of its cluster for the commands that
 * read the filesystem's DAG without mounting it (export, snapshot): the
 * cluster file, a client-only engine (net/cluster/engine.h: no server, no
 * uploader) and the node's own store opened read-only, so that they work
 * while a mount or a serve holds NODE_DIR. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "blocks/cid.h"
#include "net/client/client.h"
#include "net/cluster/config.h"
#include "net/cluster/headset.h"

struct cmd_remote {
	struct cl_cluster *cl;
	struct cl_engine *eng;
	struct net_client *client; /* the engine's */
	struct blk_db *db;	   /* NODE_DIR/db read-only, or NULL */
	struct blk_store *store;   /* on it, or NULL */
	struct net_heads *heads;   /* its heads, or NULL */
	bool no_db;		   /* NODE_DIR/db does not exist (yet) */
	unsigned self;		   /* this node's index in the cluster file */
};

/* Open @node_dir's view. 0, or 1 after printing why (the exit status). */
int cmd_remote_open(const char *node_dir, struct cmd_remote *r);

/* Close the node's own database (its store and heads), keeping the
 * engine: for a long holder (a snapshot mount), so that the files the
 * node's own process compacts away are not kept open. */
void cmd_remote_drop_local(struct cmd_remote *r);

/* Close what open opened. */
void cmd_remote_close(struct cmd_remote *r);

/* blk_dag_fetch_fn over @ctx (a struct cmd_remote): the node's own store
 * first (checked against @cid), then the cluster. 0, -EIO (no node gave
 * the block), -ENOMEM. */
int cmd_remote_fetch(void *ctx, const struct blk_cid *cid, void **data,
		     size_t *len);

/* The filesystem's heads as net/cluster/headset.h reads them from the
 * nodes, and from NODE_DIR's own heads too (read-only): a cluster of
 * one node keeps its heads there with no server to answer while it is
 * mounted. The latest is the higher of both; a list comes from the
 * nodes unless the local heads go further. Statuses as headset.h's:
 * -ENOENT no such head, -EHOSTDOWN nobody could be read. */
int cmd_remote_latest(struct cmd_remote *r, struct cl_head_info *out);
int cmd_remote_head(struct cmd_remote *r, uint64_t seq,
		    struct cl_head_info *out);
int cmd_remote_list(struct cmd_remote *r, struct cl_head_info **out, size_t *n,
		    size_t *missing);

/* Whether @s is a snapshot's seq: digits only, no sign, > 0 (into
 * *@seq). */
bool cmd_remote_parse_seq(const char *s, uint64_t *seq);

/* The head @which names: a seq ("12", or NULL: the latest) or a head
 * record's CID (dag-cbor), found among the nodes' heads or else fetched
 * as a block and checked (cl_head_check). 0, or a negative errno with
 * why in @err: -ENOENT (no node has it validly), -EINVAL (@which is
 * neither a seq nor a dag-cbor CID), -EBADMSG (not a head of this
 * filesystem), -EHOSTDOWN (no node answered), another errno. */
int cmd_remote_find_head(struct cmd_remote *r, const char *which,
			 struct cl_head_info *out, char *err, size_t errlen);

/* Ask the cluster for blocks ahead of their fetch (cl_engine_prefetch),
 * those whose bytes the node's own store does not hold. */
void cmd_remote_prefetch(struct cmd_remote *r, const struct blk_cid *cids,
			 size_t n);
