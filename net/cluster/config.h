/* The cluster file and a node directory's own configuration, read with
 * inih (Debian's libinih: a small, well-kept INI parser). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "blocks/cdc.h"
#include "blocks/cid.h"
#include "net/cluster/placement.h" /* CL_MAX_NODES: nodes in a cluster */
#include "net/cluster/retention.h"

/* Blocks shorter than this are stored as M+1 whole replicas under ec:K+M
 * (the same fault tolerance, no tiny fragments; DESIGN.md §8). 64 KiB is
 * FastCDC's default minimum chunk: every chunk cut inside a file's data is
 * erasure coded (at 4+2 its fragments are 16 KiB or more), and what falls
 * below is what should not be -- small files, file tails, DAG nodes. A
 * block of 64 KiB coded 4+2 would cost 4+2 fragment records and, to read,
 * 4 requests where a replica costs 1; replicating it costs 3x instead of
 * 1.5x of bytes that are few. */
#define CL_EC_MIN_DEFAULT (64u << 10)

struct cl_node_info {
	char name[64];
	char address[128];
	char public_key[41];
	char zone[64];
	double weight;
};

/* The filesystem of a cluster: its [filesystem] section, written by
 * 'blockfs cluster create':
 *   id = 32 hex digits          the filesystem id (16 bytes), in its heads
 *   public_key = 64 hex digits  the Ed25519 key its heads are signed with
 *   hash = sha2-256 | blake2b-256   the hash of new CIDs (default sha2-256)
 *   retention = RULES           which heads to keep (net/cluster/retention.h;
 *                               default CL_RETENTION_DEFAULT)
 * The secret key is not in the cluster file (DIR/filesystem.key). */
#define CL_FS_ID_LEN 16
#define CL_FS_PK_LEN 32

struct cl_cluster {
	char id[64];
	char redundancy[32];
	uint32_t ec_min; /* "ec_min = SIZE": see CL_EC_MIN_DEFAULT */
	enum cdc_kind chunker;
	uint32_t chunk_min, chunk_avg, chunk_max;
	unsigned nnodes;
	struct cl_node_info nodes[CL_MAX_NODES];
	/* [filesystem]: has_fs is false for a file without the section (a
	 * cluster made before filesystems had keys); fs_id and fs_public_key
	 * are then zero and hash is BLK_HASH_DEFAULT. */
	bool has_fs;
	uint8_t fs_id[CL_FS_ID_LEN];
	uint8_t fs_public_key[CL_FS_PK_LEN];
	enum blk_hash hash;
	/* "retention = ...", checked by cl_retention_parse; empty: not set
	 * (the default policy). */
	char retention[CL_RETENTION_MAX_LEN + 1];
};

/* Parse a cluster file. 0, or -errno with a message naming the file and
 * line in @err. A [filesystem] section must have both id and public_key;
 * a file without one loads with has_fs false. */
int cl_cluster_load(const char *path, struct cl_cluster *c, char *err,
		    size_t errlen);

/* The filesystem's secret key from @path (DIR/filesystem.key, as 'blockfs
 * cluster create' writes it: one line of 128 hex digits, libsodium's
 * 64-byte Ed25519 secret key) into @sk, checked against @c's
 * [filesystem] public_key. 0, or -errno with a message in @err:
 *   -ENOENT  no such file (or another error of open: its -errno)
 *   -EPERM   the file is readable by others than its owner (chmod 600)
 *   -EINVAL  not a key, or the key of another filesystem (or @c has no
 *            [filesystem] section) */
#define CL_FS_SK_LEN 64
int cl_fs_key_load(const char *path, const struct cl_cluster *c,
		   uint8_t sk[CL_FS_SK_LEN], char *err, size_t errlen);

/* The node directory's name (from NODE_DIR/node.conf). 0 or -errno with a
 * message. */
int cl_node_name(const char *node_dir, char *name, size_t len, char *err,
		 size_t errlen);

/* The node's "capacity = SIZE" from NODE_DIR/node.conf: 0 (and 0 in
 * *capacity when the file does not set one) or -EINVAL. */
int cl_node_capacity(const char *node_dir, uint64_t *capacity);

/* The id of the cluster the node belongs to, "cluster = ID" in
 * NODE_DIR/node.conf (written by 'blockfs cluster create'), into @id:
 * 0, or -ENOENT when the file names none (a node directory made before
 * it did) or cannot be read. */
int cl_node_cluster_id(const char *node_dir, char *id, size_t len);

/* Parse exactly 2 * @len hex digits (either case) of @s into @out: 0 or
 * -EINVAL. */
int cl_parse_hex(const char *s, uint8_t *out, size_t len);

/* Parse "256K", "1M", "2G", "4096" into bytes; 0 or -EINVAL. */
int cl_parse_size(const char *s, uint64_t *out);

/* Parse a redundancy policy "replicas:N" or "ec:K+M"; 0 or -EINVAL. */
int cl_parse_redundancy(const char *s, unsigned *k, unsigned *m);

/* Parse an ec_min size ("64K", "0": code every block); at most
 * CL_EC_MIN_MAX. 0 or -EINVAL. */
#define CL_EC_MIN_MAX (64u << 20)
int cl_parse_ec_min(const char *s, uint32_t *out);

/* How a block of @len bytes is stored under the policy K+M (@k, @m) with
 * threshold @ec_min: as *@bk data and *@bm parity fragments. K+M itself,
 * except that with K > 1 a block shorter than @ec_min becomes M+1 whole
 * replicas (K = 1): every block survives the loss of any M nodes either
 * way. Replication (K = 1) is never changed. */
void cl_block_coding(unsigned k, unsigned m, uint32_t ec_min, uint64_t len,
		     unsigned *bk, unsigned *bm);
