/* Cluster file and node configuration parsing (see config.h). */
#include "fs/config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bfs_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (*end == 'i' && shift)
		end++;
	if ((*end == 'b' || *end == 'B') && shift)
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int bfs_parse_redundancy(const char *s, unsigned *k, unsigned *m)
{
	unsigned a, b;
	char tail;

	if (sscanf(s, "replicas:%u%c", &a, &tail) == 1 && a >= 1 && a <= 16) {
		*k = 1;
		*m = a - 1;
		return 0;
	}
	if (sscanf(s, "ec:%u+%u%c", &a, &b, &tail) == 2 && a >= 1 &&
	    a <= 32 && b <= 16) {
		*k = a;
		*m = b;
		return 0;
	}
	return -EINVAL;
}

int bfs_parse_ec_min(const char *s, uint32_t *out)
{
	uint64_t v;

	if (bfs_parse_size(s, &v) || v > BFS_EC_MIN_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

void bfs_block_coding(unsigned k, unsigned m, uint32_t ec_min, uint64_t len,
		      unsigned *bk, unsigned *bm)
{
	*bk = k;
	*bm = m;
	if (k > 1 && len < ec_min)
		*bk = 1;
}

struct parse_ctx {
	struct bfs_cluster *c;
	struct bfs_node_info *node;
	char *err;
	size_t errlen;
	int line_err;
};

static int set_u32(const char *v, uint32_t *out)
{
	uint64_t x;
	if (bfs_parse_size(v, &x) || x > UINT32_MAX)
		return 0;
	*out = (uint32_t)x;
	return 1;
}

static int on_kv(void *user, const char *section, const char *name,
		 const char *value)
{
	struct parse_ctx *p = user;
	struct bfs_cluster *c = p->c;

	if (!strcmp(section, "cluster")) {
		if (!strcmp(name, "id"))
			return snprintf(c->id, sizeof(c->id), "%s", value) <
			       (int)sizeof(c->id);
		if (!strcmp(name, "redundancy")) {
			unsigned k, m;
			if (bfs_parse_redundancy(value, &k, &m))
				return 0;
			snprintf(c->redundancy, sizeof(c->redundancy), "%s",
				 value);
			return 1;
		}
		if (!strcmp(name, "ec_min"))
			return bfs_parse_ec_min(value, &c->ec_min) == 0;
		if (!strcmp(name, "chunker")) {
			if (!strcmp(value, "fastcdc"))
				c->chunker = CDC_FASTCDC;
			else if (!strcmp(value, "fixed"))
				c->chunker = CDC_FIXED;
			else
				return 0;
			return 1;
		}
		if (!strcmp(name, "chunk_min"))
			return set_u32(value, &c->chunk_min);
		if (!strcmp(name, "chunk_avg"))
			return set_u32(value, &c->chunk_avg);
		if (!strcmp(name, "chunk_max"))
			return set_u32(value, &c->chunk_max);
		return 0;
	}
	if (!strncmp(section, "node ", 5)) {
		if (!p->node || strcmp(p->node->name, section + 5)) {
			if (c->nnodes == BFS_MAX_NODES)
				return 0;
			p->node = &c->nodes[c->nnodes++];
			memset(p->node, 0, sizeof(*p->node));
			p->node->weight = 1.0;
			snprintf(p->node->name, sizeof(p->node->name), "%s",
				 section + 5);
		}
		struct bfs_node_info *n = p->node;
		if (!strcmp(name, "address"))
			return snprintf(n->address, sizeof(n->address), "%s",
					value) < (int)sizeof(n->address);
		if (!strcmp(name, "public_key"))
			return snprintf(n->public_key, sizeof(n->public_key),
					"%s", value) == 40;
		if (!strcmp(name, "zone"))
			return snprintf(n->zone, sizeof(n->zone), "%s",
					value) < (int)sizeof(n->zone);
		if (!strcmp(name, "weight")) {
			char *end;
			n->weight = strtod(value, &end);
			return *end == 0 && n->weight >= 0;
		}
		return 0;
	}
	return 0;
}

int bfs_cluster_load(const char *path, struct bfs_cluster *c, char *err,
		     size_t errlen)
{
	struct parse_ctx p = {.c = c, .err = err, .errlen = errlen};

	memset(c, 0, sizeof(*c));
	snprintf(c->redundancy, sizeof(c->redundancy), "replicas:1");
	c->ec_min = BFS_EC_MIN_DEFAULT;
	c->chunker = CDC_FASTCDC;
	c->chunk_min = CDC_DEFAULT_MIN;
	c->chunk_avg = CDC_DEFAULT_AVG;
	c->chunk_max = CDC_DEFAULT_MAX;
	int r = ini_parse(path, on_kv, &p);
	if (r < 0) {
		snprintf(err, errlen, "cannot read cluster file %s: %s", path,
			 strerror(errno ? errno : ENOENT));
		return -ENOENT;
	}
	if (r > 0) {
		snprintf(err, errlen,
			 "%s:%d: unknown or invalid setting (see "
			 "contrib/cluster.conf.example)",
			 path, r);
		return -EINVAL;
	}
	struct cdc_chunker probe;
	if (cdc_chunker_init(&probe, c->chunker, c->chunk_min, c->chunk_avg,
			     c->chunk_max)) {
		snprintf(err, errlen,
			 "%s: invalid chunk sizes (need 64 <= min <= avg <= "
			 "max <= 64M, avg a power of two)",
			 path);
		return -EINVAL;
	}
	return 0;
}

struct node_ctx {
	char *name;
	size_t len;
	uint64_t capacity;
	bool bad_capacity;
};

static int on_node_kv(void *user, const char *section, const char *name,
		      const char *value)
{
	struct node_ctx *n = user;
	if (!strcmp(section, "node") && !strcmp(name, "name")) {
		snprintf(n->name, n->len, "%s", value);
		return 1;
	}
	if (!strcmp(section, "node") && !strcmp(name, "capacity")) {
		if (bfs_parse_size(value, &n->capacity))
			n->bad_capacity = true;
		return 1;
	}
	return 1; /* other settings belong to later layers */
}

int bfs_node_name(const char *node_dir, char *name, size_t len, char *err,
		  size_t errlen)
{
	char path[4096];
	struct node_ctx n = {name, len, 0, false};

	name[0] = 0;
	snprintf(path, sizeof(path), "%s/node.conf", node_dir);
	int r = ini_parse(path, on_node_kv, &n);
	if (r < 0) {
		snprintf(err, errlen,
			 "%s is not a blockfs node directory (no node.conf); "
			 "create one with 'blockfs cluster create'",
			 node_dir);
		return -ENOENT;
	}
	if (r > 0 || !name[0]) {
		snprintf(err, errlen, "%s: malformed (line %d)", path, r);
		return -EINVAL;
	}
	return 0;
}

int bfs_node_capacity(const char *node_dir, uint64_t *capacity)
{
	char path[4096], name[64];
	struct node_ctx n = {name, sizeof(name), 0, false};

	snprintf(path, sizeof(path), "%s/node.conf", node_dir);
	if (ini_parse(path, on_node_kv, &n) != 0 || n.bad_capacity)
		return -EINVAL;
	*capacity = n.capacity;
	return 0;
}
