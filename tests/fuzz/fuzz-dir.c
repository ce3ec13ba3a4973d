/* libFuzzer target for the directory reader (blocks/dag/dir.c, hamt.c):
 * decode a directory node, walk it and look its names up, fetching shards
 * from the input; never crash, lookups agree with the walk, and a plain
 * directory that reads rebuilds to the same CID. A HAMT that reads also
 * has an entry removed and one added (blk_hamt_update), and must read
 * back with exactly that change.
 *
 * Input: either one block (the directory's root), or the byte 0xB1, a
 * count k (1..8) and k blocks, each a 2-byte big-endian length and its
 * bytes; the first is the root. A fetch serves the block whose CID it asks
 * for, or else block (first digest byte mod k), so that mutated blocks
 * still reach the shards below. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/dir.h"
#include "blocks/dag/hamt.h"
#include "blocks/dag/pb.h"

/* Not assert(): it must hold in every build type. */
#define REQUIRE(c)                                                             \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

#define MAX_BLOCKS 8
#define MAX_ENTRIES 4096
/* Blocks an update may emit: a path and a split's chain. */
#define MAX_NEW (2 * BLK_HAMT_MAX_DEPTH + 2)

struct input {
	size_t k;
	const uint8_t *block[MAX_BLOCKS];
	size_t len[MAX_BLOCKS];
	struct blk_cid cid[MAX_BLOCKS];
	size_t fetches;
	/* What updates emitted, served by fetch before the input's. */
	size_t n_new;
	uint8_t *new_block[MAX_NEW];
	size_t new_len[MAX_NEW];
	struct blk_cid new_cid[MAX_NEW];
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void split(struct input *in, const uint8_t *data, size_t size)
{
	size_t pos = 2;

	in->k = 0;
	if (size >= 2 && data[0] == 0xB1 && data[1] >= 1 &&
	    data[1] <= MAX_BLOCKS) {
		for (size_t i = 0; i < data[1]; i++) {
			size_t len;

			if (size - pos < 2)
				break;
			len = (size_t)data[pos] << 8 | data[pos + 1];
			pos += 2;
			if (len > size - pos)
				break;
			in->block[in->k] = data + pos;
			in->len[in->k++] = len;
			pos += len;
		}
	}
	if (in->k == 0) {
		in->k = 1;
		in->block[0] = data;
		in->len[0] = size;
	}
	for (size_t i = 0; i < in->k; i++)
		blk_cid_compute(&in->cid[i], BLK_CODEC_DAG_PB, in->block[i],
				in->len[i]);
}

static int fetch(void *ctx, const struct blk_cid *cid, void **data, size_t *len)
{
	struct input *in = ctx;
	size_t i = cid->digest[0] % in->k;

	/* A HAMT has at most 1 + 255 * 7 shards on a path... but a walk
	 * may fetch many: bound the work per input. */
	if (++in->fetches > 4096)
		return -ELOOP;
	for (size_t j = 0; j < in->n_new; j++) {
		if (!blk_cid_equal(cid, &in->new_cid[j]))
			continue;
		*data = malloc(in->new_len[j] ? in->new_len[j] : 1);
		if (!*data)
			return -ENOMEM;
		memcpy(*data, in->new_block[j], in->new_len[j]);
		*len = in->new_len[j];
		return 0;
	}
	for (size_t j = 0; j < in->k; j++)
		if (blk_cid_equal(cid, &in->cid[j]))
			i = j;
	*data = malloc(in->len[i] ? in->len[i] : 1);
	if (!*data)
		return -ENOMEM;
	memcpy(*data, in->block[i], in->len[i]);
	*len = in->len[i];
	return 0;
}

static int keep_new(void *ctx, const struct blk_cid *cid, const uint8_t *block,
		    size_t len)
{
	struct input *in = ctx;
	size_t i = in->n_new;

	REQUIRE(i < MAX_NEW);
	in->new_block[i] = malloc(len ? len : 1);
	if (!in->new_block[i])
		return -ENOMEM;
	memcpy(in->new_block[i], block, len);
	in->new_len[i] = len;
	in->new_cid[i] = *cid;
	in->n_new++;
	return 0;
}

/* What the walk saw, kept for lookups and the rebuild. */
struct seen {
	size_t n;
	bool all_tsize;
	struct {
		uint8_t name[BLK_DAG_NAME_MAX];
		size_t name_len;
		struct blk_cid cid;
		uint64_t tsize;
	} e[MAX_ENTRIES];
};

static int keep(void *arg, const struct blk_dag_dirent *e)
{
	struct seen *s = arg;

	REQUIRE(blk_dag_name_valid(e->name, e->name_len));
	if (s->n == MAX_ENTRIES)
		return -E2BIG;
	memcpy(s->e[s->n].name, e->name, e->name_len);
	s->e[s->n].name_len = e->name_len;
	s->e[s->n].cid = e->cid;
	s->e[s->n].tsize = e->tsize;
	s->all_tsize = s->all_tsize && e->has_tsize;
	s->n++;
	return 0;
}

/* A plain directory that reads is canonical: the builder makes the same
 * block from its entries and metadata (unless the builder would shard it
 * or keep fewer mode bits). */
static void rebuild(const struct input *in, const struct seen *s,
		    const struct blk_dag_dir_info *info)
{
	struct blk_dag_dir *d;
	struct blk_cid cid;
	uint64_t tsize;

	if (info->sharded || !s->all_tsize || (info->meta.mode & ~07777u))
		return;
	REQUIRE(blk_dag_dir_new(&d) == 0);
	for (size_t i = 0; i < s->n; i++)
		REQUIRE(blk_dag_dir_add(d, s->e[i].name, s->e[i].name_len,
					&s->e[i].cid, s->e[i].tsize, 0) == 0);
	if (!blk_dag_dir_will_shard(d)) {
		REQUIRE(blk_dag_dir_finish(d, &info->meta, NULL, NULL, &cid,
					   &tsize) == 0);
		REQUIRE(blk_cid_equal(&cid, &in->cid[0]));
	}
	blk_dag_dir_free(&d);
}

static int count(void *arg, const struct blk_dag_dirent *e)
{
	(void)e;
	++*(size_t *)arg;
	return 0;
}

/* Remove the first entry listed, then add a name that was not there: the
 * HAMT reads back with one entry less, then one more. */
static void update(struct input *in, const struct blk_dag_dir_reader *r,
		   const struct seen *s, const struct blk_dag_dir_info *info)
{
	struct blk_cid root = in->cid[0], leaf;
	struct blk_dag_dirent e;
	uint64_t tsize;
	size_t n;
	int rc;

	if (!info->sharded || s->n == 0)
		return;
	in->fetches = 0;
	rc = blk_hamt_update(r, &root, s->e[0].name, s->e[0].name_len, NULL, 0,
			     &info->meta, BLK_HASH_SHA2_256, keep_new, in,
			     &root, &tsize);
	if (rc == -ELOOP)
		return;
	REQUIRE(rc == 0);
	in->fetches = 0;
	n = 0;
	if (blk_dag_dir_each(r, &root, count, &n) == -ELOOP)
		return;
	REQUIRE(n == s->n - 1);
	in->fetches = 0;
	REQUIRE(blk_dag_dir_lookup(r, &root, s->e[0].name, s->e[0].name_len,
				   &e) == -ENOENT);

	blk_cid_compute(&leaf, BLK_CODEC_RAW, "new", 3);
	in->fetches = 0;
	rc = blk_hamt_update(r, &root, (const uint8_t *)"\x02new", 4, &leaf, 3,
			     NULL, BLK_HASH_SHA2_256, keep_new, in, &root,
			     &tsize);
	if (rc == -ELOOP || rc == -EOVERFLOW)
		return;
	REQUIRE(rc == 0);
	in->fetches = 0;
	REQUIRE(blk_dag_dir_lookup(r, &root, "\x02new", 4, &e) == 0);
	REQUIRE(blk_cid_equal(&e.cid, &leaf) && e.tsize == 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen s;
	struct input in;
	struct blk_dag_dir_reader r = {.fetch = fetch, .ctx = &in};
	struct blk_dag_dir_info info;
	struct blk_dag_dirent e;
	int rc, decoded;

	split(&in, data, size);
	in.n_new = 0;
	decoded = blk_dag_dir_decode(in.block[0], in.len[0], &info);
	REQUIRE(decoded == 0 || decoded == -EBADMSG || decoded == -ENOTDIR);

	in.fetches = 0;
	s.n = 0;
	s.all_tsize = true;
	rc = blk_dag_dir_each(&r, &in.cid[0], keep, &s);
	REQUIRE(rc == 0 || rc == -EBADMSG || rc == -ENOTDIR || rc == -ELOOP ||
		rc == -E2BIG || rc == -ENOMEM);
	if (decoded)
		REQUIRE(rc == decoded);
	if (rc)
		return 0;

	rebuild(&in, &s, &info);
	/* Every name listed is found, with the same link. */
	for (size_t i = 0; i < s.n && i < 64; i++) {
		in.fetches = 0;
		rc = blk_dag_dir_lookup(&r, &in.cid[0], s.e[i].name,
					s.e[i].name_len, &e);
		REQUIRE(rc == 0);
		REQUIRE(blk_cid_equal(&e.cid, &s.e[i].cid));
	}
	in.fetches = 0;
	rc = blk_dag_dir_lookup(&r, &in.cid[0], "\x01missing", 8, &e);
	REQUIRE(rc == -ENOENT || rc == 0);

	update(&in, &r, &s, &info);
	for (size_t i = 0; i < in.n_new; i++)
		free(in.new_block[i]);
	return 0;
}
