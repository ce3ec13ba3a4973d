/* One commit's encoding: the inodes changed since the last commit, read
 * from one snapshot of the metadata, turned into UnixFS and attribute
 * blocks bottom-up, with the dag records that say what each inode became
 * (private to fs/commit). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/db/db.h"
#include "blocks/store/store.h"

/* What a run produced, for the head and the log. */
struct bfs_encode_result {
	bool changed;	      /* there were change marks */
	struct blk_cid root;  /* the root directory's UnixFS node */
	uint64_t root_tsize;  /* its Tsize: the snapshot's DAG bytes */
	struct blk_cid attrs; /* the root's attribute block */
	uint64_t marks;	      /* change marks read (and deleted) */
	uint64_t inodes;      /* inodes encoded */
	uint64_t blocks;      /* blocks emitted (new or not) */
	uint64_t block_bytes; /* their bytes */
};

struct bfs_encode_config {
	struct blk_db *db;
	struct blk_store *store;
	enum blk_hash hash; /* of the DAG blocks */
	/* Bytes of a raw block that is not in the local store (a
	 * one-chunk file's inline data): the cluster's fetch, or NULL. */
	int (*fetch)(void *arg, const struct blk_cid *cid, void **data,
		     size_t *len);
	void *fetch_arg;
};

/* Encode everything the change marks in @snap name, and the directories
 * above them up to the root, into blocks referenced in @t (so the store
 * keeps them and the uploader sends them), with their dag records and
 * the deletion of the marks read, all in @t. The caller commits @t, then
 * makes the blocks durable on their placement before a head names them.
 * Returns 0 (res->changed false: nothing to commit), or -errno: -EUCLEAN
 * for metadata that does not decode or does not hold together (a
 * directory entry without its inode), -EOVERFLOW for a directory whose
 * names collide in the HAMT's hash, -EIO, -ENOMEM. */
int bfs_encode_run(const struct bfs_encode_config *cfg, struct blk_snap *snap,
		   struct blk_txn *t, struct bfs_encode_result *res);
