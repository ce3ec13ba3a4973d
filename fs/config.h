/* The cluster file and a node directory's own configuration, read with
 * inih (Debian's libinih: a small, well-kept INI parser). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "blocks/cdc.h"

#define BFS_MAX_NODES 256

struct bfs_node_info {
	char name[64];
	char address[128];
	char public_key[41];
	char zone[64];
	double weight;
};

struct bfs_cluster {
	char id[64];
	char redundancy[32];
	enum cdc_kind chunker;
	uint32_t chunk_min, chunk_avg, chunk_max;
	unsigned nnodes;
	struct bfs_node_info nodes[BFS_MAX_NODES];
};

/* Parse a cluster file. 0, or -errno with a message naming the file and
 * line in @err. */
int bfs_cluster_load(const char *path, struct bfs_cluster *c, char *err,
		     size_t errlen);

/* The node directory's name (from NODE_DIR/node.conf). 0 or -errno with a
 * message. */
int bfs_node_name(const char *node_dir, char *name, size_t len, char *err,
		  size_t errlen);

/* The node's "capacity = SIZE" from NODE_DIR/node.conf: 0 (and 0 in
 * *capacity when the file does not set one) or -EINVAL. */
int bfs_node_capacity(const char *node_dir, uint64_t *capacity);

/* Parse "256K", "1M", "2G", "4096" into bytes; 0 or -EINVAL. */
int bfs_parse_size(const char *s, uint64_t *out);

/* Parse a redundancy policy "replicas:N" or "ec:K+M"; 0 or -EINVAL. */
int bfs_parse_redundancy(const char *s, unsigned *k, unsigned *m);
