/* Cluster file and node configuration parsing (see config.h). */
#include "net/cluster/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cl_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	case 't':
	case 'T':
		shift = 40;
		end++;
		break;
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

int cl_parse_hex(const char *s, uint8_t *out, size_t len)
{
	if (strlen(s) != 2 * len)
		return -EINVAL;
	for (size_t i = 0; i < 2 * len; i++) {
		char c = s[i];
		unsigned v = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
			     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
			     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
						    : 16;
		if (v > 15)
			return -EINVAL;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return 0;
}

int cl_parse_redundancy(const char *s, unsigned *k, unsigned *m)
{
	unsigned a, b;
	char tail;

	if (sscanf(s, "replicas:%u%c", &a, &tail) == 1 && a >= 1 && a <= 16) {
		*k = 1;
		*m = a - 1;
		return 0;
	}
	if (sscanf(s, "ec:%u+%u%c", &a, &b, &tail) == 2 && a >= 1 && a <= 32 &&
	    b <= 16) {
		*k = a;
		*m = b;
		return 0;
	}
	return -EINVAL;
}

int cl_parse_ec_min(const char *s, uint32_t *out)
{
	uint64_t v;

	if (cl_parse_size(s, &v) || v > CL_EC_MIN_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

void cl_block_coding(unsigned k, unsigned m, uint32_t ec_min, uint64_t len,
		     unsigned *bk, unsigned *bm)
{
	*bk = k;
	*bm = m;
	if (k > 1 && len < ec_min)
		*bk = 1;
}

/* What the parser has seen. Every setting may appear once per section
 * (a duplicated or concatenated file repeats them), and the first problem
 * found is the one reported, with its line. */
struct parse_ctx {
	struct cl_cluster *c;
	struct cl_node_info *node;
	FILE *f;
	int line;	  /* of the text the handler is given */
	int next_line;	  /* of the text the reader reads next */
	int section_line; /* of the last "[section]" read */
	int err_line;	  /* 0 until a problem is found */
	char msg[200];
	unsigned nodes_decl; /* "[cluster] nodes = N", 0 if absent */
	/* the line each setting was first seen on, 0 if not yet */
	int cluster_seen[9];
	int fs_seen[4]; /* [filesystem]: id, public_key, hash, retention */
	int fs_line;	/* where [filesystem] starts */
	int node_seen[CL_MAX_NODES][5];
	int node_line[CL_MAX_NODES]; /* where the node's section starts */
};

static const char *const cluster_keys[] = {
    "id",	 "redundancy", "ec_min", "chunker", "chunk_min",
    "chunk_avg", "chunk_max",  "nodes",	 NULL};
static const char *const node_keys[] = {"address", "public_key", "zone",
					"weight", NULL};
static const char *const fs_keys[] = {"id", "public_key", "hash", "retention",
				      NULL};

/* An ini_reader that counts lines (a line longer than the reader's
 * buffer comes in pieces that share its number). */
static char *read_line(char *str, int num, void *stream)
{
	struct parse_ctx *p = stream;
	char *s = fgets(str, num, p->f);

	p->line = p->next_line;
	if (s && s[strspn(s, " \t")] == '[')
		p->section_line = p->line;
	if (s && strchr(s, '\n'))
		p->next_line++;
	return s;
}

__attribute__((format(printf, 2, 3))) static int bad(struct parse_ctx *p,
						     const char *fmt, ...)
{
	va_list ap;

	if (p->err_line)
		return 0;
	p->err_line = p->line;
	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
	return 0;
}

static int key_index(const char *const *keys, const char *name)
{
	for (int i = 0; keys[i]; i++)
		if (!strcmp(keys[i], name))
			return i;
	return -1;
}

static int set_u32(struct parse_ctx *p, const char *name, const char *v,
		   uint32_t *out)
{
	uint64_t x;
	if (cl_parse_size(v, &x) || x > UINT32_MAX)
		return bad(p, "invalid %s '%s' (a size such as 64K)", name, v);
	*out = (uint32_t)x;
	return 1;
}

static int on_cluster_kv(struct parse_ctx *p, const char *name,
			 const char *value)
{
	struct cl_cluster *c = p->c;
	int k = key_index(cluster_keys, name);

	if (k < 0)
		return bad(p,
			   "unknown setting '%s' in [cluster] (known: id, "
			   "redundancy, ec_min, chunker, chunk_min, "
			   "chunk_avg, chunk_max, nodes)",
			   name);
	if (p->cluster_seen[k])
		return bad(p,
			   "'%s' of [cluster] set again (first on line %d): "
			   "is the file duplicated?",
			   name, p->cluster_seen[k]);
	p->cluster_seen[k] = p->line;
	if (!strcmp(name, "id")) {
		if (!*value || snprintf(c->id, sizeof(c->id), "%s", value) >=
				   (int)sizeof(c->id))
			return bad(p, "invalid id '%s'", value);
		return 1;
	}
	if (!strcmp(name, "redundancy")) {
		unsigned kk, m;
		if (cl_parse_redundancy(value, &kk, &m))
			return bad(p,
				   "invalid redundancy '%s' (replicas:N or "
				   "ec:K+M)",
				   value);
		snprintf(c->redundancy, sizeof(c->redundancy), "%s", value);
		return 1;
	}
	if (!strcmp(name, "ec_min")) {
		if (cl_parse_ec_min(value, &c->ec_min))
			return bad(p,
				   "invalid ec_min '%s' (a size, at most "
				   "64M)",
				   value);
		return 1;
	}
	if (!strcmp(name, "chunker")) {
		if (!strcmp(value, "fastcdc"))
			c->chunker = CDC_FASTCDC;
		else if (!strcmp(value, "fixed"))
			c->chunker = CDC_FIXED;
		else
			return bad(p, "invalid chunker '%s' (fastcdc or fixed)",
				   value);
		return 1;
	}
	if (!strcmp(name, "nodes")) {
		char *end;
		long n = strtol(value, &end, 10);
		if (*end || end == value || n < 1 || n > CL_MAX_NODES)
			return bad(p, "invalid node count '%s' (1-%d)", value,
				   CL_MAX_NODES);
		p->nodes_decl = (unsigned)n;
		return 1;
	}
	if (!strcmp(name, "chunk_min"))
		return set_u32(p, name, value, &c->chunk_min);
	if (!strcmp(name, "chunk_avg"))
		return set_u32(p, name, value, &c->chunk_avg);
	return set_u32(p, name, value, &c->chunk_max);
}

static int on_node_section_kv(struct parse_ctx *p, const char *node,
			      const char *name, const char *value)
{
	struct cl_cluster *c = p->c;

	/* inih gives no event for a section header: a section is new when
	 * its name differs from the one before. */
	if (!p->node || strcmp(p->node->name, node)) {
		if (!*node || strlen(node) >= sizeof(p->node->name))
			return bad(p, "invalid node name '%s'", node);
		for (unsigned i = 0; i < c->nnodes; i++) {
			if (strcmp(c->nodes[i].name, node))
				continue;
			p->line = p->section_line;
			return bad(p,
				   "node '%s' is listed twice (first on "
				   "line %d): is the file duplicated?",
				   node, p->node_line[i]);
		}
		if (c->nnodes == CL_MAX_NODES)
			return bad(p, "more than %d nodes", CL_MAX_NODES);
		p->node_line[c->nnodes] = p->section_line;
		p->node = &c->nodes[c->nnodes++];
		memset(p->node, 0, sizeof(*p->node));
		p->node->weight = 1.0;
		snprintf(p->node->name, sizeof(p->node->name), "%s", node);
	}
	struct cl_node_info *n = p->node;
	unsigned idx = (unsigned)(n - c->nodes);
	int k = key_index(node_keys, name);
	if (k < 0)
		return bad(p,
			   "unknown setting '%s' in [node %s] (known: "
			   "address, public_key, zone, weight)",
			   name, node);
	if (p->node_seen[idx][k])
		return bad(p, "'%s' of [node %s] set again (first on line %d)",
			   name, node, p->node_seen[idx][k]);
	p->node_seen[idx][k] = p->line;
	if (!strcmp(name, "address")) {
		if (strncmp(value, "tcp://", 6) ||
		    snprintf(n->address, sizeof(n->address), "%s", value) >=
			(int)sizeof(n->address))
			return bad(p, "invalid address '%s' (tcp://HOST:PORT)",
				   value);
		return 1;
	}
	if (!strcmp(name, "public_key")) {
		if (snprintf(n->public_key, sizeof(n->public_key), "%s",
			     value) != 40)
			return bad(p,
				   "invalid public_key '%s' (40 characters "
				   "of Z85, as in the node's curve.pub)",
				   value);
		return 1;
	}
	if (!strcmp(name, "zone")) {
		if (snprintf(n->zone, sizeof(n->zone), "%s", value) >=
		    (int)sizeof(n->zone))
			return bad(p, "zone name too long: '%s'", value);
		return 1;
	}
	char *end;
	n->weight = strtod(value, &end);
	if (*end || end == value || !(n->weight >= 0))
		return bad(p, "invalid weight '%s' (a number, 0 or more)",
			   value);
	return 1;
}

static int on_fs_kv(struct parse_ctx *p, const char *name, const char *value)
{
	struct cl_cluster *c = p->c;
	int k = key_index(fs_keys, name);

	if (k < 0)
		return bad(p,
			   "unknown setting '%s' in [filesystem] (known: id, "
			   "public_key, hash, retention)",
			   name);
	if (p->fs_seen[k])
		return bad(p,
			   "'%s' of [filesystem] set again (first on line "
			   "%d): is the file duplicated?",
			   name, p->fs_seen[k]);
	p->fs_seen[k] = p->line;
	if (!c->has_fs)
		p->fs_line = p->section_line;
	c->has_fs = true;
	if (k == 0) {
		if (cl_parse_hex(value, c->fs_id, CL_FS_ID_LEN))
			return bad(p,
				   "invalid filesystem id '%s' (32 hex "
				   "digits)",
				   value);
		return 1;
	}
	if (k == 1) {
		if (cl_parse_hex(value, c->fs_public_key, CL_FS_PK_LEN))
			return bad(p,
				   "invalid filesystem public_key '%s' (64 "
				   "hex digits: an Ed25519 public key)",
				   value);
		return 1;
	}
	if (k == 3) {
		struct cl_retention r;
		char why[160];

		if (cl_retention_parse(value, &r, why, sizeof(why)))
			return bad(p, "invalid retention: %s", why);
		snprintf(c->retention, sizeof(c->retention), "%s", value);
		return 1;
	}
	if (blk_hash_from_name(value, &c->hash))
		return bad(p, "invalid hash '%s' (sha2-256 or blake2b-256)",
			   value);
	return 1;
}

static int on_kv(void *user, const char *section, const char *name,
		 const char *value)
{
	struct parse_ctx *p = user;

	if (!strcmp(section, "cluster"))
		return on_cluster_kv(p, name, value);
	if (!strcmp(section, "filesystem"))
		return on_fs_kv(p, name, value);
	if (!strncmp(section, "node ", 5))
		return on_node_section_kv(p, section + 5, name, value);
	if (!*section)
		return bad(p,
			   "setting '%s' outside a section ([cluster], "
			   "[filesystem] or [node NAME])",
			   name);
	return bad(p,
		   "unknown section [%s] ([cluster], [filesystem] or [node "
		   "NAME])",
		   section);
}

/* What every cluster file must hold: the [cluster] id, at least one node,
 * and for each node its address and key; as many nodes as the file says
 * it has. 0, or -EINVAL with the problem in p->msg. */
static int check_complete(struct parse_ctx *p)
{
	const struct cl_cluster *c = p->c;

	if (!p->cluster_seen[0]) {
		snprintf(p->msg, sizeof(p->msg),
			 "no [cluster] id: the file is empty, truncated or not "
			 "a cluster file");
		return -EINVAL;
	}
	if (!c->nnodes) {
		snprintf(p->msg, sizeof(p->msg),
			 "no [node NAME] section: the file is truncated");
		return -EINVAL;
	}
	for (unsigned i = 0; i < c->nnodes; i++) {
		const char *missing = !p->node_seen[i][0]   ? "address"
				      : !p->node_seen[i][1] ? "public_key"
							    : NULL;
		if (missing) {
			p->err_line = p->node_line[i];
			snprintf(p->msg, sizeof(p->msg),
				 "[node %s] has no %s: the file is truncated?",
				 c->nodes[i].name, missing);
			return -EINVAL;
		}
		for (unsigned j = 0; j < i; j++) {
			if (!strcmp(c->nodes[i].public_key,
				    c->nodes[j].public_key)) {
				p->err_line = p->node_line[i];
				snprintf(p->msg, sizeof(p->msg),
					 "[node %s] has the public_key of "
					 "[node %s]; every node needs its own",
					 c->nodes[i].name, c->nodes[j].name);
				return -EINVAL;
			}
		}
	}
	if (c->has_fs && (!p->fs_seen[0] || !p->fs_seen[1])) {
		p->err_line = p->fs_line;
		snprintf(p->msg, sizeof(p->msg),
			 "[filesystem] has no %s: the file is truncated?",
			 !p->fs_seen[0] ? "id" : "public_key");
		return -EINVAL;
	}
	if (p->nodes_decl && p->nodes_decl != c->nnodes) {
		p->err_line = p->cluster_seen[7];
		snprintf(p->msg, sizeof(p->msg),
			 "nodes = %u, but the file lists %u: it is truncated "
			 "or was edited by hand",
			 p->nodes_decl, c->nnodes);
		return -EINVAL;
	}
	return 0;
}

int cl_cluster_load(const char *path, struct cl_cluster *c, char *err,
		    size_t errlen)
{
	struct parse_ctx *p = calloc(1, sizeof(*p));
	int ret = 0;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	p->c = c;
	p->next_line = 1;
	memset(c, 0, sizeof(*c));
	snprintf(c->redundancy, sizeof(c->redundancy), "replicas:1");
	c->ec_min = CL_EC_MIN_DEFAULT;
	c->chunker = CDC_FASTCDC;
	c->chunk_min = CDC_DEFAULT_MIN;
	c->chunk_avg = CDC_DEFAULT_AVG;
	c->chunk_max = CDC_DEFAULT_MAX;
	c->hash = BLK_HASH_DEFAULT;
	p->f = fopen(path, "r");
	if (!p->f) {
		ret = -errno;
		snprintf(err, errlen, "cannot read the cluster file %s: %s%s",
			 path, strerror(-ret),
			 ret == -EACCES ? " (run as the node's owner, or root)"
					: "");
		goto out;
	}
	int r = ini_parse_stream(read_line, p, on_kv, p);
	if (r > 0 && (!p->err_line || r < p->err_line)) {
		/* inih's own complaint: not "name = value", "[section]" or a
		 * comment */
		p->err_line = r;
		snprintf(p->msg, sizeof(p->msg),
			 "not 'name = value', '[section]' or a comment");
	}
	if (!p->err_line && check_complete(p) == 0) {
		struct cdc_chunker probe;
		if (cdc_chunker_init(&probe, c->chunker, c->chunk_min,
				     c->chunk_avg, c->chunk_max))
			snprintf(p->msg, sizeof(p->msg),
				 "invalid chunk sizes (need 64 <= chunk_min <= "
				 "chunk_avg <= chunk_max <= 64M, chunk_avg a "
				 "power of two)");
	}
	if (p->msg[0]) {
		char where[32] = "";
		if (p->err_line)
			snprintf(where, sizeof(where), ":%d", p->err_line);
		snprintf(err, errlen,
			 "cluster file %s%s: %s; fix it, or copy the cluster's "
			 "cluster.conf from another node",
			 path, where, p->msg);
		ret = -EINVAL;
	}
out:
	if (p->f)
		fclose(p->f);
	free(p);
	return ret;
}

/* The secret key text of @path: 0, or -errno with @err. */
static int read_key_text(const char *path, char *text, size_t cap, char *err,
			 size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot read the filesystem key %s: %s",
			 path, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
		close(fd);
		snprintf(err, errlen,
			 "the filesystem key %s is readable by others than "
			 "its owner (mode %03o): whoever reads it can write "
			 "the filesystem; 'chmod 600 %s' and check who read "
			 "it",
			 path, (unsigned)(st.st_mode & 0777), path);
		return -EPERM;
	}
	n = read(fd, text, cap - 1);
	close(fd);
	if (n < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot read the filesystem key %s: %s",
			 path, strerror(e));
		return -e;
	}
	text[n] = 0;
	return 0;
}

int cl_fs_key_load(const char *path, const struct cl_cluster *c,
		   uint8_t sk[CL_FS_SK_LEN], char *err, size_t errlen)
{
	char text[2 * CL_FS_SK_LEN + 8];
	uint8_t pk[CL_FS_PK_LEN], check[CL_FS_SK_LEN];
	int ret = read_key_text(path, text, sizeof(text), err, errlen);

	if (ret)
		return ret;
	text[strcspn(text, "\r\n")] = 0;
	ret = cl_parse_hex(text, sk, CL_FS_SK_LEN);
	sodium_memzero(text, sizeof(text));
	if (ret) {
		snprintf(err, errlen,
			 "%s is not a filesystem key (one line of %d hex "
			 "digits)",
			 path, 2 * CL_FS_SK_LEN);
		return -EINVAL;
	}
	/* libsodium's form: the seed, then the public key it makes */
	ret = crypto_sign_seed_keypair(pk, check, sk);
	sodium_memzero(check, sizeof(check));
	if (ret || memcmp(pk, sk + 32, sizeof(pk)) != 0) {
		sodium_memzero(sk, CL_FS_SK_LEN);
		snprintf(err, errlen, "%s is not a filesystem key (damaged?)",
			 path);
		return -EINVAL;
	}
	if (!c->has_fs || memcmp(pk, c->fs_public_key, sizeof(pk)) != 0) {
		sodium_memzero(sk, CL_FS_SK_LEN);
		snprintf(err, errlen,
			 c->has_fs ? "%s is the key of another filesystem "
				     "than the cluster file's public_key"
				   : "%s: the cluster file has no [filesystem] "
				     "section to check it against",
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
	char cluster[64]; /* "" when node.conf names no cluster */
};

static int on_node_kv(void *user, const char *section, const char *name,
		      const char *value)
{
	struct node_ctx *n = user;
	if (!strcmp(section, "node") && !strcmp(name, "name")) {
		snprintf(n->name, n->len, "%s", value);
		return 1;
	}
	if (!strcmp(section, "node") && !strcmp(name, "cluster")) {
		snprintf(n->cluster, sizeof(n->cluster), "%s", value);
		return 1;
	}
	if (!strcmp(section, "node") && !strcmp(name, "capacity")) {
		if (cl_parse_size(value, &n->capacity))
			n->bad_capacity = true;
		return 1;
	}
	return 1; /* other settings belong to later layers */
}

int cl_node_name(const char *node_dir, char *name, size_t len, char *err,
		 size_t errlen)
{
	char path[4096];
	struct node_ctx n = {name, len, 0, false, ""};

	name[0] = 0;
	snprintf(path, sizeof(path), "%s/node.conf", node_dir);
	FILE *f = fopen(path, "r");
	if (!f && errno == ENOENT) {
		snprintf(err, errlen,
			 "%s is not a blockfs node directory (no node.conf); "
			 "create one with 'blockfs cluster create'",
			 node_dir);
		return -ENOENT;
	}
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "cannot read %s: %s%s", path, strerror(e),
			 e == EACCES ? " (the node directory belongs to "
				       "another user: run as its owner, or "
				       "root)"
				     : "");
		return -e;
	}
	int r = ini_parse_file(f, on_node_kv, &n);
	fclose(f);
	if (r > 0) {
		snprintf(err, errlen,
			 "%s:%d: not 'name = value', '[section]' or a comment",
			 path, r);
		return -EINVAL;
	}
	if (!name[0]) {
		snprintf(err, errlen,
			 "%s: no 'name = NODE' in [node] (the node's name in "
			 "the cluster file)",
			 path);
		return -EINVAL;
	}
	return 0;
}

int cl_node_capacity(const char *node_dir, uint64_t *capacity)
{
	char path[4096], name[64];
	struct node_ctx n = {name, sizeof(name), 0, false, ""};

	snprintf(path, sizeof(path), "%s/node.conf", node_dir);
	if (ini_parse(path, on_node_kv, &n) != 0 || n.bad_capacity)
		return -EINVAL;
	*capacity = n.capacity;
	return 0;
}

int cl_node_cluster_id(const char *node_dir, char *id, size_t len)
{
	char path[4096], name[64];
	struct node_ctx n = {name, sizeof(name), 0, false, ""};

	snprintf(path, sizeof(path), "%s/node.conf", node_dir);
	if (ini_parse(path, on_node_kv, &n) != 0 || !n.cluster[0])
		return -ENOENT;
	snprintf(id, len, "%s", n.cluster);
	return 0;
}
