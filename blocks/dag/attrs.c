/* The attribute blocks (FORMAT.md §3): their builder and strict reader. */
#include "blocks/dag/attrs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blocks/dag/cbor.h"
#include "blocks/dag/murmur3.h"

/* Keys of Attrs and Entry maps, in DAG-CBOR order. */
enum {
	K_GID,
	K_INO,
	K_UID,
	K_MODE,
	K_NAME,
	K_NODE,
	K_RDEV,
	K_SIZE,
	K_ATIME,
	K_ATTRS,
	K_BTIME,
	K_CTIME,
	K_MTIME,
	K_NLINK,
	K_TSIZE,
	K_TARGET,
	K_XATTRS,
	K_COUNT,
};

static const char *const keys[K_COUNT] = {
    "gid",   "ino",   "uid",   "mode",	 "name",   "node",
    "rdev",  "size",  "atime", "attrs",	 "btime",  "ctime",
    "mtime", "nlink", "tsize", "target", "xattrs",
};

#define B(k) (1u << (k))
#define M_BASE                                                                 \
	(B(K_GID) | B(K_UID) | B(K_MODE) | B(K_SIZE) | B(K_ATIME) |            \
	 B(K_BTIME) | B(K_CTIME) | B(K_MTIME) | B(K_NLINK))
#define M_ENT (M_BASE | B(K_INO) | B(K_NAME))
#define M_DIR (B(K_INO) | B(K_NAME) | B(K_NODE) | B(K_ATTRS) | B(K_TSIZE))

static int name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

bool blk_attrs_is_cut(const uint8_t *name, size_t len)
{
	return blk_murmur3_x64_64(name, len) % BLK_ATTRS_CUT_MOD == 0;
}

/* The keys a map of this kind holds (without the optional "xattrs"), or 0
 * for a mode of no known type. @ent: an entry's, not self's. */
static unsigned required(uint32_t mode, bool ent)
{
	if (mode & ~(uint32_t)(S_IFMT | 07777))
		return 0;
	if (!ent)
		return S_ISDIR(mode) ? M_BASE : 0;
	switch (mode & S_IFMT) {
	case S_IFREG:
		return M_ENT | B(K_NODE) | B(K_TSIZE);
	case S_IFLNK:
		return M_ENT | B(K_NODE) | B(K_TSIZE) | B(K_TARGET);
	case S_IFCHR:
	case S_IFBLK:
		return M_ENT | B(K_RDEV);
	case S_IFIFO:
	case S_IFSOCK:
		return M_ENT;
	default:
		return 0; /* directories have their own entry form */
	}
}

static bool xname_ok(const uint8_t *p, size_t len)
{
	return len >= 1 && len <= BLK_ATTRS_XNAME_MAX && !memchr(p, 0, len);
}

/* --- Encoding --- */

static int xattr_cmp(const void *a, const void *b)
{
	const struct blk_xattr *x = a, *y = b;

	return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

/* The mask of @e's keys (0: @e breaks invariants 1-3). */
static unsigned entry_mask(const struct blk_attr_entry *e)
{
	if (!blk_dag_name_valid(e->name, e->name_len) || e->ino == 0)
		return 0;
	if (e->dir)
		return M_DIR;
	unsigned m = required(e->attrs.mode, true);
	if (e->no_node && S_ISREG(e->attrs.mode))
		m &= ~(B(K_NODE) | B(K_TSIZE));
	if (m & B(K_TARGET) &&
	    (e->target_len == 0 || e->target_len > BLK_ATTRS_TARGET_MAX ||
	     memchr(e->target, 0, e->target_len)))
		return 0;
	return m;
}

static int put_xattrs(struct blk_cbor_enc *enc, const struct blk_attrs *a)
{
	struct blk_xattr *v = malloc(a->nxattrs * sizeof(*v));
	int ret = 0;

	if (!v)
		return -ENOMEM;
	memcpy(v, a->xattrs, a->nxattrs * sizeof(*v));
	qsort(v, a->nxattrs, sizeof(*v), xattr_cmp);
	for (size_t i = 0; i < a->nxattrs; i++)
		if (!xname_ok(v[i].name, v[i].name_len) ||
		    v[i].value_len > BLK_ATTRS_XATTR_MAX ||
		    (i && !xattr_cmp(&v[i - 1], &v[i])))
			ret = -EINVAL;
	blk_cbor_put_array(enc, a->nxattrs);
	for (size_t i = 0; !ret && i < a->nxattrs; i++) {
		blk_cbor_put_array(enc, 2);
		blk_cbor_put_bytes(enc, v[i].name, v[i].name_len);
		blk_cbor_put_bytes(enc, v[i].value, v[i].value_len);
	}
	free(v);
	return ret;
}

/* Write the map of @mask's keys from @a and @e (NULL for self). */
static int put_map(struct blk_cbor_enc *enc, unsigned mask,
		   const struct blk_attrs *a, const struct blk_attr_entry *e)
{
	int ret = 0;

	if (a->nxattrs && !(mask & B(K_ATTRS)))
		mask |= B(K_XATTRS);
	blk_cbor_put_map(enc, (size_t)__builtin_popcount(mask));
	for (unsigned k = 0; k < K_COUNT && !ret; k++) {
		if (!(mask & B(k)))
			continue;
		blk_cbor_put_key(enc, keys[k]);
		switch (k) {
		case K_GID:
			blk_cbor_put_uint(enc, a->gid);
			break;
		case K_INO:
			blk_cbor_put_uint(enc, e->ino);
			break;
		case K_UID:
			blk_cbor_put_uint(enc, a->uid);
			break;
		case K_MODE:
			blk_cbor_put_uint(enc, a->mode);
			break;
		case K_NAME:
			blk_cbor_put_bytes(enc, e->name, e->name_len);
			break;
		case K_NODE:
			blk_cbor_put_cid(enc, &e->node);
			break;
		case K_RDEV:
			blk_cbor_put_uint(enc, a->rdev);
			break;
		case K_SIZE:
			blk_cbor_put_uint(enc, a->size);
			break;
		case K_ATIME:
			blk_cbor_put_int(enc, a->atime);
			break;
		case K_ATTRS:
			blk_cbor_put_cid(enc, &e->attrs_cid);
			break;
		case K_BTIME:
			blk_cbor_put_int(enc, a->btime);
			break;
		case K_CTIME:
			blk_cbor_put_int(enc, a->ctime);
			break;
		case K_MTIME:
			blk_cbor_put_int(enc, a->mtime);
			break;
		case K_NLINK:
			blk_cbor_put_uint(enc, a->nlink);
			break;
		case K_TSIZE:
			blk_cbor_put_uint(enc, e->tsize);
			break;
		case K_TARGET:
			blk_cbor_put_bytes(enc, e->target, e->target_len);
			break;
		case K_XATTRS:
			ret = put_xattrs(enc, a);
			break;
		}
	}
	return ret ? ret : enc->err;
}

struct blk_attrs_dir {
	enum blk_hash hash;
	uint8_t *buf; /* the encoded entries, back to back */
	size_t len, cap;
	size_t *off; /* entry i starts at off[i] */
	bool *cut;   /* entry i's name is a cut (blk_attrs_is_cut) */
	size_t n, ncap;
	uint8_t last[BLK_DAG_NAME_MAX];
	size_t last_len;
	struct blk_cbor_enc enc; /* growable scratch */
};

int blk_attrs_dir_new(struct blk_attrs_dir **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->hash = BLK_HASH_DEFAULT;
	blk_cbor_enc_init(&(*out)->enc, NULL, 0);
	return 0;
}

void blk_attrs_dir_free(struct blk_attrs_dir **d)
{
	if (!*d)
		return;
	blk_cbor_enc_release(&(*d)->enc);
	free((*d)->buf);
	free((*d)->off);
	free((*d)->cut);
	free(*d);
	*d = NULL;
}

int blk_attrs_dir_set_hash(struct blk_attrs_dir *d, enum blk_hash hash)
{
	if (hash != BLK_HASH_SHA2_256 && hash != BLK_HASH_BLAKE2B_256)
		return -EINVAL;
	d->hash = hash;
	return 0;
}

void blk_attrs_dir_reset(struct blk_attrs_dir *d)
{
	d->len = 0;
	d->n = 0;
	d->last_len = 0;
}

size_t blk_attrs_dir_count(const struct blk_attrs_dir *d)
{
	return d->n;
}

static int append(struct blk_attrs_dir *d, const void *p, size_t len)
{
	if (d->len + len > d->cap) {
		size_t cap = d->cap ? d->cap : 4096;
		while (cap < d->len + len)
			cap *= 2;
		uint8_t *b = realloc(d->buf, cap);
		if (!b)
			return -ENOMEM;
		d->buf = b;
		d->cap = cap;
	}
	memcpy(d->buf + d->len, p, len);
	d->len += len;
	return 0;
}

int blk_attrs_dir_add(struct blk_attrs_dir *d, const struct blk_attr_entry *e)
{
	unsigned mask = entry_mask(e);
	size_t len;
	int ret;

	if (!mask ||
	    (d->n && name_cmp(d->last, d->last_len, e->name, e->name_len) >= 0))
		return -EINVAL;
	if (d->n == d->ncap) {
		size_t nc = d->ncap ? 2 * d->ncap : 256;
		size_t *o = realloc(d->off, nc * sizeof(*o));
		if (!o)
			return -ENOMEM;
		d->off = o;
		bool *c = realloc(d->cut, nc * sizeof(*c));
		if (!c)
			return -ENOMEM;
		d->cut = c;
		d->ncap = nc;
	}
	blk_cbor_enc_reset(&d->enc);
	ret = put_map(&d->enc, mask, &e->attrs, e);
	if (!ret)
		ret = blk_cbor_enc_finish(&d->enc, &len);
	if (!ret) {
		d->off[d->n] = d->len;
		ret = append(d, d->enc.buf, len);
	}
	if (ret)
		return ret == -ENOBUFS ? -ENOMEM : ret;
	d->cut[d->n++] = blk_attrs_is_cut(e->name, e->name_len);
	memcpy(d->last, e->name, e->name_len);
	d->last_len = e->name_len;
	return 0;
}

/* A CBOR head (major type @major, argument @n) in shortest form at @p:
 * its length. */
static size_t cbor_head(uint8_t *p, unsigned major, uint64_t n)
{
	uint8_t m = (uint8_t)(major << 5);

	if (n < 24) {
		p[0] = m | (uint8_t)n;
		return 1;
	}
	unsigned bytes = n <= 0xff	   ? 1
			 : n <= 0xffff	   ? 2
			 : n <= 0xffffffff ? 4
					   : 8;
	p[0] = m | (uint8_t)(bytes == 1	  ? 24
			     : bytes == 2 ? 25
			     : bytes == 4 ? 26
					  : 27);
	for (unsigned i = 0; i < bytes; i++)
		p[1 + i] = (uint8_t)(n >> (8 * (bytes - 1 - i)));
	return 1 + bytes;
}

/* Grow-only output for one block. */
struct out {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void out_put(struct out *o, const void *p, size_t len)
{
	if (o->err)
		return;
	if (o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		while (cap < o->len + len)
			cap *= 2;
		uint8_t *b = realloc(o->p, cap);
		if (!b) {
			o->err = -ENOMEM;
			return;
		}
		o->p = b;
		o->cap = cap;
	}
	memcpy(o->p + o->len, p, len);
	o->len += len;
}

static void out_head(struct out *o, unsigned major, uint64_t n)
{
	uint8_t h[9];

	out_put(o, h, cbor_head(h, major, n));
}

static void out_text(struct out *o, const char *s)
{
	out_head(o, 3, strlen(s));
	out_put(o, s, strlen(s));
}

/* "ents": entries [a, b) */
static void out_ents(struct out *o, const struct blk_attrs_dir *d, size_t a,
		     size_t b)
{
	size_t end = b == d->n ? d->len : d->off[b];

	out_text(o, "ents");
	out_head(o, 4, b - a);
	if (b > a)
		out_put(o, d->buf + d->off[a], end - d->off[a]);
}

static int emit_block(struct blk_attrs_dir *d, struct out *o,
		      blk_dag_emit_fn emit, void *ctx, struct blk_cid *cid)
{
	if (o->err)
		return o->err;
	blk_cid_compute_hash(cid, d->hash, BLK_CODEC_DAG_CBOR, o->p, o->len);
	return emit ? emit(ctx, cid, o->p, o->len) : 0;
}

/* Emit the parts; their CIDs, encoded as CBOR items, into @cids. */
static int emit_parts(struct blk_attrs_dir *d, blk_dag_emit_fn emit, void *ctx,
		      struct out *cids, size_t *nparts)
{
	struct out o = {0};
	size_t start = 0;
	int ret = 0;

	*nparts = 0;
	for (size_t i = 0; i < d->n && !ret; i++) {
		if (!(d->cut[i] || i + 1 - start == BLK_ATTRS_PART_MAX ||
		      i + 1 == d->n))
			continue;
		struct blk_cid cid;
		o.len = 0;
		out_head(&o, 5, 1);
		out_ents(&o, d, start, i + 1);
		ret = emit_block(d, &o, emit, ctx, &cid);
		if (ret)
			break;
		struct blk_cbor_enc e;
		uint8_t buf[8 + BLK_CID_MAX_BYTES];
		size_t len;
		blk_cbor_enc_init(&e, buf, sizeof(buf));
		blk_cbor_put_cid(&e, &cid);
		ret = blk_cbor_enc_finish(&e, &len);
		out_put(cids, buf, len);
		ret = ret ? ret : cids->err;
		(*nparts)++;
		start = i + 1;
	}
	free(o.p);
	return ret;
}

int blk_attrs_dir_finish(struct blk_attrs_dir *d, const struct blk_attrs *self,
			 blk_dag_emit_fn emit, void *ctx, struct blk_cid *cid)
{
	unsigned mask = required(self->mode, false);
	struct out o = {0}, cids = {0};
	size_t len, nparts = 0;
	int ret;

	if (!mask)
		return -EINVAL;
	blk_cbor_enc_reset(&d->enc);
	ret = put_map(&d->enc, mask, self, NULL);
	if (!ret)
		ret = blk_cbor_enc_finish(&d->enc, &len);
	if (ret)
		return ret == -ENOBUFS ? -ENOMEM : ret;
	if (d->n > BLK_ATTRS_PART_MAX)
		ret = emit_parts(d, emit, ctx, &cids, &nparts);
	if (ret)
		goto out;
	out_head(&o, 5, 3);
	out_text(&o, "v");
	out_head(&o, 0, BLK_ATTRS_VERSION);
	if (d->n <= BLK_ATTRS_PART_MAX)
		out_ents(&o, d, 0, d->n);
	out_text(&o, "self");
	out_put(&o, d->enc.buf, len);
	if (d->n > BLK_ATTRS_PART_MAX) {
		out_text(&o, "parts");
		out_head(&o, 4, nparts);
		out_put(&o, cids.p, cids.len);
	}
	ret = emit_block(d, &o, emit, ctx, cid);
out:
	free(o.p);
	free(cids.p);
	return ret;
}

/* --- Reading --- */

struct blk_attrs_rd {
	const uint8_t *block;
	size_t len;
	struct blk_attrs self;
	struct blk_xattr *sx; /* self's xattrs */
	size_t sx_cap;
	struct blk_xattr *ex; /* the current entry's */
	size_t ex_cap;
	int err;
	bool end; /* every entry has been read */
	/* the entries being read: of the block, or of the current part */
	struct blk_cbor_dec ents;
	size_t left;	/* entries left in @ents */
	size_t in_part; /* entries read of the current part */
	/* parts: a cursor over the CIDs, and the current part's bytes */
	struct blk_cbor_dec parts;
	size_t nparts, parts_left;
	struct blk_cid *pcids; /* all the part CIDs (blk_attrs_rd_part) */
	void *part;
	uint64_t total;
	bool last_cut; /* the last entry read is a cut */
	uint8_t last[BLK_DAG_NAME_MAX];
	size_t last_len;
};

static int get_u32(struct blk_cbor_dec *d, uint32_t *v)
{
	uint64_t x;
	int ret = blk_cbor_get_uint(d, &x);

	if (!ret && x > UINT32_MAX)
		ret = blk_cbor_fail(d);
	*v = (uint32_t)x;
	return ret;
}

static int get_xattrs(struct blk_cbor_dec *d, struct blk_xattr **v, size_t *cap,
		      size_t *n)
{
	size_t cnt;
	int ret = blk_cbor_get_array(d, &cnt);

	if (ret)
		return ret;
	if (cnt == 0)
		return blk_cbor_fail(d); /* left out when there are none */
	if (cnt > *cap) {
		struct blk_xattr *x = realloc(*v, cnt * sizeof(*x));
		if (!x)
			return -ENOMEM;
		*v = x;
		*cap = cnt;
	}
	for (size_t i = 0; i < cnt; i++) {
		struct blk_xattr *x = &(*v)[i];
		size_t two;
		if ((ret = blk_cbor_get_array(d, &two)))
			return ret;
		if (two != 2)
			return blk_cbor_fail(d);
		blk_cbor_get_bytes(d, &x->name, &x->name_len);
		if ((ret = blk_cbor_get_bytes(d, &x->value, &x->value_len)))
			return ret;
		if (!xname_ok(x->name, x->name_len) ||
		    x->value_len > BLK_ATTRS_XATTR_MAX ||
		    (i && xattr_cmp(&(*v)[i - 1], x) >= 0))
			return blk_cbor_fail(d);
	}
	*n = cnt;
	return 0;
}

static int key_index(const char *k, size_t len)
{
	for (int i = 0; i < K_COUNT; i++)
		if (strlen(keys[i]) == len && !memcmp(keys[i], k, len))
			return i;
	return -1;
}

/* Decode one Attrs (@e NULL) or Entry map into @a and @e. */
static int get_map(struct blk_cbor_dec *d, struct blk_attrs *a,
		   struct blk_attr_entry *e, struct blk_xattr **xv,
		   size_t *xcap)
{
	size_t n;
	unsigned mask = 0;
	int ret = blk_cbor_get_map(d, &n);

	if (e) {
		memset(e, 0, sizeof(*e));
		a = &e->attrs;
	}
	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < n && !ret; i++) {
		const char *key;
		size_t klen;
		if ((ret = blk_cbor_get_key(d, &key, &klen)))
			break;
		int k = key_index(key, klen);
		if (k < 0 || (!e && (k == K_INO || k == K_NAME || k == K_NODE ||
				     k == K_RDEV || k == K_ATTRS ||
				     k == K_TSIZE || k == K_TARGET)))
			return blk_cbor_fail(d);
		mask |= B(k);
		switch (k) {
		case K_GID:
			ret = get_u32(d, &a->gid);
			break;
		case K_INO:
			ret = blk_cbor_get_uint(d, &e->ino);
			break;
		case K_UID:
			ret = get_u32(d, &a->uid);
			break;
		case K_MODE:
			ret = get_u32(d, &a->mode);
			break;
		case K_NAME:
			ret = blk_cbor_get_bytes(d, &e->name, &e->name_len);
			break;
		case K_NODE:
			ret = blk_cbor_get_cid(d, &e->node);
			break;
		case K_RDEV:
			ret = blk_cbor_get_uint(d, &a->rdev);
			break;
		case K_SIZE:
			ret = blk_cbor_get_uint(d, &a->size);
			break;
		case K_ATIME:
			ret = blk_cbor_get_int(d, &a->atime);
			break;
		case K_ATTRS:
			ret = blk_cbor_get_cid(d, &e->attrs_cid);
			break;
		case K_BTIME:
			ret = blk_cbor_get_int(d, &a->btime);
			break;
		case K_CTIME:
			ret = blk_cbor_get_int(d, &a->ctime);
			break;
		case K_MTIME:
			ret = blk_cbor_get_int(d, &a->mtime);
			break;
		case K_NLINK:
			ret = get_u32(d, &a->nlink);
			break;
		case K_TSIZE:
			ret = blk_cbor_get_uint(d, &e->tsize);
			break;
		case K_TARGET:
			ret = blk_cbor_get_bytes(d, &e->target, &e->target_len);
			break;
		case K_XATTRS:
			ret = get_xattrs(d, xv, xcap, &a->nxattrs);
			a->xattrs = *xv;
			break;
		}
	}
	if (ret)
		return ret;
	if (e && (mask & B(K_ATTRS))) {
		e->dir = true;
		a->mode = S_IFDIR;
	}
	unsigned want = e && e->dir ? M_DIR : required(a->mode, e != NULL);
	if (e && !e->dir && S_ISREG(a->mode) &&
	    !(mask & (B(K_NODE) | B(K_TSIZE)))) {
		e->no_node = true; /* data not in the DAG */
		want &= ~(B(K_NODE) | B(K_TSIZE));
	}
	if (!want || (mask & ~B(K_XATTRS)) != want ||
	    (e && e->dir && (mask & B(K_XATTRS))))
		return blk_cbor_fail(d);
	if (e && entry_mask(e) != want)
		return blk_cbor_fail(d);
	return 0;
}

int blk_attrs_rd_open(struct blk_attrs_rd **out, const uint8_t *block,
		      size_t len)
{
	struct blk_attrs_rd *rd = calloc(1, sizeof(*rd));
	struct blk_cbor_dec d;
	const char *key;
	size_t n, klen;
	uint64_t v;
	int ret;

	*out = NULL;
	if (!rd)
		return -ENOMEM;
	rd->block = block;
	rd->len = len;
	blk_cbor_dec_init(&d, block, len);
	blk_cbor_get_map(&d, &n);
	blk_cbor_expect_key(&d, "v");
	ret = blk_cbor_get_uint(&d, &v);
	if (!ret && (n != 3 || v != BLK_ATTRS_VERSION))
		ret = blk_cbor_fail(&d);
	if (!ret)
		ret = blk_cbor_get_key(&d, &key, &klen);
	if (!ret && klen == 4 && !memcmp(key, "ents", 4)) {
		ret = blk_cbor_get_array(&d, &rd->left);
		if (!ret && rd->left > BLK_ATTRS_PART_MAX)
			ret = blk_cbor_fail(&d);
		rd->ents = d;
		for (size_t i = 0; i < rd->left && !ret; i++)
			ret = blk_cbor_skip(&d);
		if (!ret)
			ret = blk_cbor_expect_key(&d, "self");
		if (!ret)
			ret =
			    get_map(&d, &rd->self, NULL, &rd->sx, &rd->sx_cap);
	} else if (!ret && klen == 4 && !memcmp(key, "self", 4)) {
		ret = get_map(&d, &rd->self, NULL, &rd->sx, &rd->sx_cap);
		if (!ret)
			ret = blk_cbor_expect_key(&d, "parts");
		if (!ret)
			ret = blk_cbor_get_array(&d, &rd->nparts);
		/* more than PART_MAX entries: at least two parts */
		if (!ret && rd->nparts < 2)
			ret = blk_cbor_fail(&d);
		if (!ret &&
		    !(rd->pcids = calloc(rd->nparts, sizeof(*rd->pcids))))
			ret = -ENOMEM;
		for (size_t i = 0; i < rd->nparts && !ret; i++)
			ret = blk_cbor_get_cid(&d, &rd->pcids[i]);
		for (size_t i = 0; i < rd->nparts && !ret; i++)
			if (rd->pcids[i].codec != BLK_CODEC_DAG_CBOR)
				ret = blk_cbor_fail(&d);
		rd->parts_left = rd->nparts;
	} else if (!ret) {
		ret = blk_cbor_fail(&d);
	}
	if (!ret)
		ret = blk_cbor_dec_finish(&d);
	if (ret) {
		blk_attrs_rd_free(&rd);
		return ret == -ENOMEM ? ret : -EBADMSG;
	}
	*out = rd;
	return 0;
}

void blk_attrs_rd_free(struct blk_attrs_rd **rd)
{
	if (!*rd)
		return;
	free((*rd)->sx);
	free((*rd)->ex);
	free((*rd)->pcids);
	free((*rd)->part);
	free(*rd);
	*rd = NULL;
}

const struct blk_attrs *blk_attrs_rd_self(const struct blk_attrs_rd *rd)
{
	return &rd->self;
}

size_t blk_attrs_rd_nparts(const struct blk_attrs_rd *rd)
{
	return rd->nparts;
}

int blk_attrs_rd_part(const struct blk_attrs_rd *rd, size_t i,
		      struct blk_cid *cid)
{
	if (i >= rd->nparts)
		return -EINVAL;
	*cid = rd->pcids[i];
	return 0;
}

/* Fetch and open the next part: 1, 0 (none left), or an error. */
static int next_part(struct blk_attrs_rd *rd, blk_dag_fetch_fn fetch, void *ctx)
{
	const struct blk_cid *cid;
	size_t len, n;
	int ret;

	if (!rd->parts_left)
		return 0;
	cid = &rd->pcids[rd->nparts - rd->parts_left];
	/* a part ends at a cut or after PART_MAX entries (invariant 4) */
	if (rd->parts_left < rd->nparts && !rd->last_cut &&
	    rd->in_part != BLK_ATTRS_PART_MAX)
		return -EBADMSG;
	if (!fetch)
		return -EINVAL;
	free(rd->part);
	rd->part = NULL;
	if ((ret = fetch(ctx, cid, &rd->part, &len)))
		return ret;
	rd->parts_left--;
	blk_cbor_dec_init(&rd->ents, rd->part, len);
	blk_cbor_get_map(&rd->ents, &n);
	blk_cbor_expect_key(&rd->ents, "ents");
	ret = blk_cbor_get_array(&rd->ents, &rd->left);
	if (!ret && (n != 1 || rd->left == 0 || rd->left > BLK_ATTRS_PART_MAX))
		ret = -EBADMSG;
	rd->in_part = 0;
	return ret ? -EBADMSG : 1;
}

int blk_attrs_rd_next(struct blk_attrs_rd *rd, blk_dag_fetch_fn fetch,
		      void *ctx, struct blk_attr_entry *e)
{
	int ret;

	if (rd->err || rd->end)
		return rd->err;
	while (!rd->left) {
		/* the part just read must end here: nothing after it */
		if (rd->nparts && rd->part && blk_cbor_dec_finish(&rd->ents)) {
			rd->err = -EBADMSG;
			return rd->err;
		}
		ret = next_part(rd, fetch, ctx);
		if (ret <= 0) {
			if (!ret && rd->nparts &&
			    rd->total <= BLK_ATTRS_PART_MAX)
				ret = -EBADMSG;
			rd->err = ret;
			rd->end = !ret;
			return ret;
		}
	}
	ret = get_map(&rd->ents, NULL, e, &rd->ex, &rd->ex_cap);
	if (!ret && rd->total &&
	    name_cmp(rd->last, rd->last_len, e->name, e->name_len) >= 0)
		ret = -EBADMSG;
	/* inside a part, no entry before the last is a cut */
	if (!ret && rd->nparts && rd->in_part && rd->last_cut)
		ret = -EBADMSG;
	if (ret) {
		rd->err = ret == -ENOMEM ? ret : -EBADMSG;
		return rd->err;
	}
	memcpy(rd->last, e->name, e->name_len);
	rd->last_len = e->name_len;
	rd->last_cut = blk_attrs_is_cut(e->name, e->name_len);
	rd->left--;
	rd->in_part++;
	rd->total++;
	return 1;
}
