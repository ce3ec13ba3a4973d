/* The node's heads: every head record (blocks/dag/head.h) a writer
 * published on this node, per filesystem, kept in the node's own `heads`
 * column family, and the compare-and-swap that accepts the next one.
 *
 * Records in the column family:
 *   fsid (16) || BE64 seq  -> the head record's bytes, as received
 *   fsid (16)              -> BE64 seq of the current head
 * Big-endian seqs keep a filesystem's heads in seq order.
 *
 * Invariants:
 *  1. The current seq of a filesystem is 0 (no record) or the seq of a
 *     head stored under it; every head from 1 to the current is stored.
 *  2. A head is stored only if it decodes, is signed, names the
 *     filesystem configured, verifies with its public key, follows the
 *     current head (seq + 1, parent = the CID of the current head's
 *     bytes), and, when its writer is not the current head's, the
 *     current head's lease has expired by the node's clock.
 *  3. A head and the new current seq are written in one batch, synced
 *     (the WAL fsync'd) before net_heads_cas returns 0: an accepted head
 *     survives a crash of the machine.
 *  4. CAS calls are serialised by the object's lock, from the read of
 *     the current head to the commit; readers take no lock (RocksDB gives
 *     them a consistent view per key, and a head is written before or
 *     with the seq that names it).
 *
 * Thread safety: every call may run on any thread between open and close. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/db/db.h"
#include "net/wire/proto.h"

#define NET_HEADS_CF "heads"

struct net_heads;

/* Add the heads' column family, NET_HEADS_CF (small values, no
 * compression), to @r: its handle, or the error of blk_cf_register. */
int net_heads_register(struct blk_cf_registry *r);

/* Open the heads of @db's family @cf, which the caller keeps open until
 * net_heads_close returns. @fs_id (NET_FSID_LEN bytes) and @fs_pk (the
 * Ed25519 public key, 32 bytes) name the one filesystem whose heads CAS
 * accepts, both copied; NULL: none (every CAS is -EOPNOTSUPP). 0,
 * -EINVAL (a bad family), -ENOMEM. */
int net_heads_open(struct blk_db *db, unsigned cf, const uint8_t *fs_id,
		   const uint8_t *fs_pk, struct net_heads **out);
void net_heads_close(struct net_heads *h); /* NULL is fine */

/* Whether a filesystem was configured (CAS can accept anything). */
bool net_heads_has_fs(const struct net_heads *h);

/* The head @seq of filesystem @fsid (0: the current one) into @buf
 * (NET_HEAD_MAX_BYTES), its length in *@len. 0, -ENOENT (none), -EIO (a
 * read failed, or a stored record we did not write). */
int net_heads_get(struct net_heads *h, const uint8_t fsid[NET_FSID_LEN],
		  uint64_t seq, uint8_t *buf, size_t *len);

/* Store the head record @rec (@len bytes) if it follows the current head
 * by invariant 2 and @expect is the current seq (0: none yet). Returns 0
 * (stored, synced), or, with @why (@whylen bytes) saying why for the
 * log:
 *   -EOPNOTSUPP  no filesystem configured
 *   -EBADMSG     malformed, unsigned, or forged (its signature does not
 *                verify with the filesystem's key)
 *   -ENOENT      a head of another filesystem
 *   -ESTALE      @expect is not the current seq; or the head's seq is not
 *                the current + 1 (replayed or skipped)
 *   -EINVAL      its parent is not the current head
 *   -EACCES      another writer's lease on the current head holds
 *   -EIO, -ENOSPC, -EROFS, -ENOMEM  reading or writing failed (no refusal:
 *                @why says what failed) */
int net_heads_cas(struct net_heads *h, uint64_t expect, const uint8_t *rec,
		  size_t len, char *why, size_t whylen);
