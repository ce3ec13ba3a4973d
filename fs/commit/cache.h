/* What the last commit made of each inode (its UnixFS node, its Tsize,
 * a directory's attribute block) and the last head, in the core's dag
 * column family (fs/meta.h): the state that lets a commit re-encode only
 * what changed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "blocks/db/db.h"
#include "blocks/store/store.h"

/*
 * Records (FORMAT.md §5), in BFS_CF_DAG:
 *   'C' ino(be64) -> version u8 (1), flags u8, tsize le64,
 *                    [u8 len, node CID], [u8 len, attrs CID]
 *      flags: 1 has node, 2 has attrs, 4 a directory with UnixFS entries
 *   'H'           -> the head record (blocks/dag/head.h) this mount last
 *                    published or recovered from
 * A 'C' record is what the commit of the head in 'H' made of the inode:
 * both are written in one batch by a commit or a rebuild.
 */

struct bfs_dag_rec {
	bool has_node;	      /* files, symlinks, directories */
	struct blk_cid node;  /* the UnixFS node */
	uint64_t tsize;	      /* its Tsize (the DAG's bytes below it) */
	bool has_attrs;	      /* directories */
	struct blk_cid attrs; /* its attribute block (FORMAT.md §3) */
	bool nonempty;	      /* a directory with UnixFS entries */
};

#define BFS_DAG_REC_MAX (2 + 8 + 2 * (1 + BLK_CID_MAX_BYTES))

/* Read inode @ino's record from @snap (NULL: the database now).
 * 0, -ENOENT, -EUCLEAN (undecodable) or -EIO. */
int bfs_dag_get(struct blk_db *db, struct blk_snap *snap, uint64_t ino,
		struct bfs_dag_rec *r);

/* Put or delete inode @ino's record in @t. */
void bfs_dag_put(struct blk_txn *t, uint64_t ino, const struct bfs_dag_rec *r);
void bfs_dag_del(struct blk_txn *t, uint64_t ino);

/* The last head's bytes into @buf (@cap >= BLK_HEAD_MAX_BYTES), length in
 * *@len: 0, -ENOENT (none yet), -EUCLEAN (longer than @cap) or -EIO. */
int bfs_dag_head_get(struct blk_db *db, uint8_t *buf, size_t cap, size_t *len);
void bfs_dag_head_put(struct blk_txn *t, const uint8_t *buf, size_t len);

/* Encodings, for tests. bfs_dag_rec_encode returns the length (at most
 * BFS_DAG_REC_MAX); bfs_dag_rec_decode returns 0 or -EUCLEAN. */
size_t bfs_dag_rec_encode(const struct bfs_dag_rec *r, uint8_t *buf);
int bfs_dag_rec_decode(const uint8_t *buf, size_t len, struct bfs_dag_rec *r);
