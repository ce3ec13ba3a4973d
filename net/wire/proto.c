/* The wire protocol's encoders and decoders; see proto.h for the format. */
#include "net/wire/proto.h"

#include "blocks/base/bytes.h"

#include <errno.h>
#include <string.h>

static const uint8_t MAGIC[4] = {'B', 'F', 'N', 'P'};

const char *net_op_name(unsigned op)
{
	static const char *const names[] = {
	    [NET_OP_PING] = "ping",	    [NET_OP_PUT] = "put",
	    [NET_OP_GET] = "get",	    [NET_OP_HAVE] = "have",
	    [NET_OP_DELETE] = "delete",	    [NET_OP_LIST] = "list",
	    [NET_OP_STATUS] = "status",	    [NET_OP_SYNC] = "sync",
	    [NET_OP_HEAD_GET] = "head-get", [NET_OP_HEAD_CAS] = "head-cas",
	};

	if (op == 0 || op > NET_OP_MAX)
		return "?";
	return names[op];
}

void net_hdr_encode(const struct net_hdr *h, uint8_t out[NET_HDR_LEN])
{
	memcpy(out, MAGIC, 4);
	out[4] = NET_PROTO_VERSION;
	out[5] = h->op;
	blk_put_le16(out + 6, h->flags);
	blk_put_le64(out + 8, h->id);
	blk_put_le32(out + 16, (uint32_t)h->status);
	blk_put_le32(out + 20, h->count);
	blk_put_le64(out + 24, h->arg);
}

int net_hdr_decode(const void *buf, size_t len, struct net_hdr *h)
{
	const uint8_t *p = buf;

	memset(h, 0, sizeof(*h));
	if (len != NET_HDR_LEN || memcmp(p, MAGIC, 4) != 0 ||
	    p[4] != NET_PROTO_VERSION)
		return -EPROTO;
	h->op = p[5];
	h->flags = blk_get_le16(p + 6);
	h->id = blk_get_le64(p + 8);
	h->status = (int32_t)blk_get_le32(p + 16);
	h->count = blk_get_le32(p + 20);
	h->arg = blk_get_le64(p + 24);
	if (h->flags & ~NET_F_ALL)
		return -EPROTO;
	return 0;
}

void net_fref_encode(const struct net_fref *r, uint8_t out[NET_FREF_LEN])
{
	blk_put_le32(out, blk_cid_type(&r->cid));
	memcpy(out + 4, r->cid.digest, BLK_DIGEST_LEN);
	out[36] = r->index;
}

int net_fref_decode(const uint8_t *buf, struct net_fref *r)
{
	if (blk_cid_set_type(&r->cid, blk_get_le32(buf)) < 0)
		return -EINVAL;
	memcpy(r->cid.digest, buf + 4, BLK_DIGEST_LEN);
	r->index = buf[36];
	return r->index < EC_MAX_FRAGS ? 0 : -EINVAL;
}

void net_list_item_encode(const struct net_list_item *it,
			  uint8_t out[NET_LIST_ITEM_LEN])
{
	net_fref_encode(&it->ref, out);
	blk_put_le32(out + NET_FREF_LEN, it->frag_len);
}

int net_list_item_decode(const uint8_t *buf, struct net_list_item *it)
{
	it->frag_len = blk_get_le32(buf + NET_FREF_LEN);
	return net_fref_decode(buf, &it->ref);
}

void net_status_encode(const struct net_status *st, uint8_t out[NET_STATUS_LEN])
{
	blk_put_le64(out, st->capacity);
	blk_put_le64(out + 8, st->used);
	blk_put_le64(out + 16, st->fragments);
	blk_put_le64(out + 24, st->full ? NET_STATUS_FULL : 0);
	blk_put_le64(out + 32, st->lost);
}

void net_status_decode(const uint8_t *buf, size_t len, struct net_status *st)
{
	st->capacity = blk_get_le64(buf);
	st->used = blk_get_le64(buf + 8);
	st->fragments = blk_get_le64(buf + 16);
	st->full = blk_get_le64(buf + 24) & NET_STATUS_FULL;
	st->lost = len >= NET_STATUS_LEN ? blk_get_le64(buf + 32) : 0;
}

/* ---- the frames of each op (proto.h's table), for encoders and decoders */

/* What follows the header frame: a body of one of these kinds. */
enum body {
	BODY_NONE,   /* nothing */
	BODY_FRAG,   /* the 64-byte fragment header, then its frag_len bytes */
	BODY_FREF,   /* one fref */
	BODY_FREFS,  /* count packed frefs */
	BODY_CURSOR, /* an fref, or an empty frame (from the start) */
	BODY_STATUS, /* the STATUS record (NET_STATUS_LEN, or _V1) */
	BODY_BITMAP, /* net_bitmap_len(count) bytes */
	BODY_ITEMS,  /* count packed LIST items */
	BODY_FSID,   /* a filesystem id, NET_FSID_LEN bytes */
	BODY_HEAD,   /* a head record, 1..NET_HEAD_MAX_BYTES bytes */
};

/* Each kind's frames after the header, and the header's count: 0 for the
 * kinds without one (count_max 0), else count_min..count_max. */
static const struct {
	uint8_t frames;
	uint32_t count_min, count_max;
} BODIES[] = {
    [BODY_NONE] = {0, 0, 0},
    [BODY_FRAG] = {2, 0, 0},
    [BODY_FREF] = {1, 0, 0},
    [BODY_FREFS] = {1, 1, NET_MAX_REFS},
    [BODY_CURSOR] = {1, 1, NET_MAX_LIST}, /* count: the most items wanted */
    [BODY_STATUS] = {1, 0, 0},
    [BODY_BITMAP] = {1, 1, NET_MAX_REFS},
    [BODY_ITEMS] = {1, 0, NET_MAX_LIST},
    [BODY_FSID] = {1, 0, 0},
    [BODY_HEAD] = {1, 0, 0},
};

/* Each op's request and reply (status 0) bodies, and whether the request
 * carries an arg. Ops not in the table (0) are not served. */
static const struct {
	bool known;
	uint8_t req, rep; /* enum body */
	bool req_arg;
} OPS[NET_OP_MAX + 1] = {
    [NET_OP_PING] = {true, BODY_NONE, BODY_NONE, true},
    [NET_OP_PUT] = {true, BODY_FRAG, BODY_NONE},
    [NET_OP_GET] = {true, BODY_FREF, BODY_FRAG},
    [NET_OP_HAVE] = {true, BODY_FREFS, BODY_BITMAP},
    [NET_OP_DELETE] = {true, BODY_FREFS, BODY_BITMAP},
    [NET_OP_LIST] = {true, BODY_CURSOR, BODY_ITEMS},
    [NET_OP_STATUS] = {true, BODY_NONE, BODY_STATUS},
    [NET_OP_SYNC] = {true, BODY_NONE, BODY_NONE},
    [NET_OP_HEAD_GET] = {true, BODY_FSID, BODY_HEAD, true},
    [NET_OP_HEAD_CAS] = {true, BODY_HEAD, BODY_NONE, true},
};

static bool op_known(unsigned op)
{
	return op <= NET_OP_MAX && OPS[op].known;
}

/* A body's fields, as a request or a reply holds them. */
struct body_fields {
	const uint8_t *frag_raw; /* FRAG */
	struct ec_frag_hdr frag;
	const void *data; /* FRAG; HEAD */
	size_t len;
	const uint8_t *fsid; /* FSID */
	struct net_fref ref; /* FREF; CURSOR if has_ref */
	bool has_ref;
	const uint8_t *packed; /* FREFS, BITMAP, ITEMS */
	struct net_status st;  /* STATUS */
};

/* Frames of body @kind of @b into @out, @small (NET_STATUS_LEN +
 * NET_FREF_LEN bytes) holding what is encoded here; sets *@count to 0 for
 * a kind without one. The number of frames, or -EINVAL (count out of
 * range, no fsid, a head of no bytes or too many). */
static int encode_body(unsigned kind, uint32_t *count,
		       const struct body_fields *b, uint8_t *small,
		       struct net_frame *out)
{
	if (BODIES[kind].count_max == 0)
		*count = 0;
	else if (*count < BODIES[kind].count_min ||
		 *count > BODIES[kind].count_max)
		return -EINVAL;
	switch (kind) {
	case BODY_FRAG:
		out[0] = (struct net_frame){b->frag_raw, EC_FRAG_HDR_LEN};
		out[1] = (struct net_frame){b->data, b->len};
		break;
	case BODY_FREF:
		net_fref_encode(&b->ref, small);
		out[0] = (struct net_frame){small, NET_FREF_LEN};
		break;
	case BODY_FREFS:
		out[0] = (struct net_frame){b->packed,
					    (size_t)*count * NET_FREF_LEN};
		break;
	case BODY_CURSOR:
		if (b->has_ref)
			net_fref_encode(&b->ref, small);
		out[0] =
		    (struct net_frame){small, b->has_ref ? NET_FREF_LEN : 0};
		break;
	case BODY_STATUS:
		net_status_encode(&b->st, small);
		out[0] = (struct net_frame){small, NET_STATUS_LEN};
		break;
	case BODY_BITMAP:
		out[0] = (struct net_frame){b->packed, net_bitmap_len(*count)};
		break;
	case BODY_ITEMS:
		out[0] = (struct net_frame){b->packed,
					    (size_t)*count * NET_LIST_ITEM_LEN};
		break;
	case BODY_FSID:
		if (!b->fsid)
			return -EINVAL;
		out[0] = (struct net_frame){b->fsid, NET_FSID_LEN};
		break;
	case BODY_HEAD:
		if (!b->data || b->len == 0 || b->len > NET_HEAD_MAX_BYTES)
			return -EINVAL;
		out[0] = (struct net_frame){b->data, b->len};
		break;
	}
	return BODIES[kind].frames;
}

/* The fragment header and bytes of a PUT request or a GET reply. */
static int decode_frag(const struct net_frame *hf, const struct net_frame *df,
		       struct body_fields *b)
{
	int rc;

	if (hf->len != EC_FRAG_HDR_LEN)
		return -EMSGSIZE;
	rc = ec_frag_hdr_parse(hf->data, hf->len, &b->frag);
	if (rc < 0)
		return -EINVAL;
	if (df->len != b->frag.frag_len)
		return -EMSGSIZE;
	b->frag_raw = hf->data;
	b->data = df->data;
	b->len = df->len;
	return 0;
}

/* Packed frefs: check each one's index, so a handler never meets a bad one. */
static int check_frefs(const uint8_t *p, uint32_t n)
{
	struct net_fref r;

	for (uint32_t i = 0; i < n; i++)
		if (net_fref_decode(p + (size_t)i * NET_FREF_LEN, &r) < 0)
			return -EINVAL;
	return 0;
}

/* Packed LIST items: likewise. */
static int check_items(const uint8_t *p, uint32_t n)
{
	struct net_list_item it;

	for (uint32_t i = 0; i < n; i++)
		if (net_list_item_decode(p + (size_t)i * NET_LIST_ITEM_LEN,
					 &it) < 0)
			return -EINVAL;
	return 0;
}

/* Body @kind from the @n frames @f after the header, whose count is
 * @count, into @b. 0, -EINVAL (frames, a count that must be 0 or is
 * under the least, a field), -EMSGSIZE (lengths, a count over the
 * limit). */
static int decode_body(unsigned kind, uint32_t count, const struct net_frame *f,
		       size_t n, struct body_fields *b)
{
	if (n != BODIES[kind].frames)
		return -EINVAL;
	if (count < BODIES[kind].count_min || count > BODIES[kind].count_max)
		return BODIES[kind].count_max && count > BODIES[kind].count_max
			   ? -EMSGSIZE
			   : -EINVAL;
	switch (kind) {
	case BODY_FRAG:
		return decode_frag(&f[0], &f[1], b);
	case BODY_FREF:
		if (f[0].len != NET_FREF_LEN)
			return -EMSGSIZE;
		return net_fref_decode(f[0].data, &b->ref);
	case BODY_FREFS:
		if (f[0].len != (size_t)count * NET_FREF_LEN)
			return -EMSGSIZE;
		b->packed = f[0].data;
		return check_frefs(b->packed, count);
	case BODY_CURSOR:
		if (f[0].len == 0)
			return 0;
		if (f[0].len != NET_FREF_LEN)
			return -EMSGSIZE;
		b->has_ref = true;
		return net_fref_decode(f[0].data, &b->ref);
	case BODY_STATUS:
		if (f[0].len != NET_STATUS_LEN && f[0].len != NET_STATUS_LEN_V1)
			return -EMSGSIZE;
		net_status_decode(f[0].data, f[0].len, &b->st);
		return 0;
	case BODY_BITMAP:
		if (f[0].len != net_bitmap_len(count))
			return -EMSGSIZE;
		b->packed = f[0].data;
		return 0;
	case BODY_ITEMS:
		if (f[0].len != (size_t)count * NET_LIST_ITEM_LEN)
			return -EMSGSIZE;
		b->packed = f[0].data;
		return check_items(b->packed, count);
	case BODY_FSID:
		if (f[0].len != NET_FSID_LEN)
			return -EMSGSIZE;
		b->fsid = f[0].data;
		return 0;
	case BODY_HEAD:
		if (f[0].len == 0 || f[0].len > NET_HEAD_MAX_BYTES)
			return -EMSGSIZE;
		b->data = f[0].data;
		b->len = f[0].len;
		return 0;
	}
	return 0;
}

/* ---- requests and replies ------------------------------------------- */

int net_req_decode(const struct net_frame *f, size_t n, struct net_req *r)
{
	const struct net_hdr *h = &r->hdr;
	struct body_fields b = {0};
	int rc;

	memset(r, 0, sizeof(*r));
	if (n < 1)
		return -EPROTO;
	rc = net_hdr_decode(f[0].data, f[0].len, &r->hdr);
	if (rc < 0)
		return rc;
	if (h->flags != 0)
		return -EPROTO; /* a reply, or MORE: not in a request */
	if (!op_known(h->op))
		return -EOPNOTSUPP;
	if (n != 1u + BODIES[OPS[h->op].req].frames)
		return -EINVAL;
	if (h->status != 0 || (!OPS[h->op].req_arg && h->arg != 0))
		return -EINVAL;
	rc = decode_body(OPS[h->op].req, h->count, f + 1, n - 1, &b);
	r->frag_raw = b.frag_raw;
	r->frag = b.frag;
	r->data = b.data;
	r->len = b.len;
	r->fsid = b.fsid;
	r->ref = b.ref;
	r->has_cursor = h->op == NET_OP_LIST && b.has_ref;
	r->refs = b.packed;
	return rc;
}

int net_rep_decode(const struct net_frame *f, size_t n, struct net_rep *r)
{
	const struct net_hdr *h = &r->hdr;
	struct body_fields b = {0};
	int rc;

	memset(r, 0, sizeof(*r));
	if (n < 1)
		return -EPROTO;
	rc = net_hdr_decode(f[0].data, f[0].len, &r->hdr);
	if (rc < 0)
		return rc;
	if (!(h->flags & NET_F_REPLY))
		return -EPROTO;
	if ((h->flags & NET_F_MORE) && h->op != NET_OP_LIST)
		return -EINVAL;
	if (!op_known(h->op)) {
		/* The server's answer to an op it does not know: fine as an
		 * error reply, not as a success. */
		if (h->status < 0 && n == 1)
			return 0;
		return -EOPNOTSUPP;
	}
	if (h->status > 0)
		return -EINVAL;
	if (h->status < 0) {
		if (n != 1 || h->count != 0 || (h->flags & NET_F_MORE))
			return -EINVAL;
		return 0;
	}
	if (h->op != NET_OP_PING && h->arg != 0)
		return -EINVAL;
	rc = decode_body(OPS[h->op].rep, h->count, f + 1, n - 1, &b);
	r->frag_raw = b.frag_raw;
	r->frag = b.frag;
	r->data = b.data;
	r->len = b.len;
	r->bitmap = h->op == NET_OP_LIST ? NULL : b.packed;
	r->items = h->op == NET_OP_LIST ? b.packed : NULL;
	r->st = b.st;
	return rc;
}

int net_req_encode(const struct net_req *r, uint8_t *scratch,
		   struct net_frame *out)
{
	struct net_hdr h = r->hdr;
	const struct body_fields b = {
	    .frag_raw = r->frag_raw,
	    .data = r->data,
	    .len = r->len,
	    .fsid = r->fsid,
	    .ref = r->ref,
	    .has_ref = r->has_cursor,
	    .packed = r->refs,
	};
	int n;

	h.flags = 0;
	h.status = 0;
	if (!op_known(h.op))
		return -EINVAL;
	if (!OPS[h.op].req_arg)
		h.arg = 0;
	n = encode_body(OPS[h.op].req, &h.count, &b, scratch + NET_HDR_LEN,
			out + 1);
	if (n < 0)
		return n;
	net_hdr_encode(&h, scratch);
	out[0] = (struct net_frame){scratch, NET_HDR_LEN};
	return 1 + n;
}

int net_rep_encode(const struct net_rep *r, uint8_t *scratch,
		   struct net_frame *out)
{
	struct net_hdr h = r->hdr;
	const struct body_fields b = {
	    .frag_raw = r->frag_raw,
	    .data = r->data,
	    .len = r->len,
	    .packed = h.op == NET_OP_LIST ? r->items : r->bitmap,
	    .st = r->st,
	};
	int n;

	h.flags = (uint16_t)(NET_F_REPLY | (h.flags & NET_F_MORE));
	if (h.op != NET_OP_LIST)
		h.flags &= (uint16_t)~NET_F_MORE;
	if (h.op != NET_OP_PING)
		h.arg = 0;
	if (h.status != 0) {
		if (h.status > 0)
			return -EINVAL;
		h.count = 0;
		h.flags = NET_F_REPLY;
		h.arg = 0;
		net_hdr_encode(&h, scratch);
		out[0] = (struct net_frame){scratch, NET_HDR_LEN};
		return 1;
	}
	if (!op_known(h.op))
		return -EINVAL;
	n = encode_body(OPS[h.op].rep, &h.count, &b, scratch + NET_HDR_LEN,
			out + 1);
	if (n < 0)
		return n;
	net_hdr_encode(&h, scratch);
	out[0] = (struct net_frame){scratch, NET_HDR_LEN};
	return 1 + n;
}
