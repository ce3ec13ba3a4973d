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
	blk_put_le32(out, (uint32_t)r->cid.codec);
	memcpy(out + 4, r->cid.digest, BLK_DIGEST_LEN);
	out[36] = r->index;
}

int net_fref_decode(const uint8_t *buf, struct net_fref *r)
{
	r->cid.codec = blk_get_le32(buf);
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

/* The fragment header and bytes of a PUT request or a GET reply. */
static int decode_frag(const struct net_frame *hf, const struct net_frame *df,
		       struct ec_frag_hdr *h, const uint8_t **raw,
		       const void **data, size_t *len)
{
	int rc;

	if (hf->len != EC_FRAG_HDR_LEN)
		return -EMSGSIZE;
	rc = ec_frag_hdr_parse(hf->data, hf->len, h);
	if (rc < 0)
		return -EINVAL;
	if (df->len != h->frag_len)
		return -EMSGSIZE;
	*raw = hf->data;
	*data = df->data;
	*len = df->len;
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

/* Frames a request of @op must have, header included; 0 if not an op. */
static size_t req_frames(unsigned op)
{
	switch (op) {
	case NET_OP_PING:
	case NET_OP_STATUS:
	case NET_OP_SYNC:
		return 1;
	case NET_OP_GET:
	case NET_OP_HAVE:
	case NET_OP_DELETE:
	case NET_OP_LIST:
		return 2;
	case NET_OP_PUT:
		return 3;
	default:
		return 0;
	}
}

int net_req_decode(const struct net_frame *f, size_t n, struct net_req *r)
{
	const struct net_hdr *h = &r->hdr;
	int rc;

	memset(r, 0, sizeof(*r));
	if (n < 1)
		return -EPROTO;
	rc = net_hdr_decode(f[0].data, f[0].len, &r->hdr);
	if (rc < 0)
		return rc;
	if (h->flags != 0)
		return -EPROTO; /* a reply, or MORE: not in a request */
	if (h->op == NET_OP_HEAD_GET || h->op == NET_OP_HEAD_CAS ||
	    req_frames(h->op) == 0)
		return -EOPNOTSUPP;
	if (n != req_frames(h->op))
		return -EINVAL;
	if (h->status != 0 || (h->op != NET_OP_PING && h->arg != 0))
		return -EINVAL;

	switch (h->op) {
	case NET_OP_PING:
	case NET_OP_STATUS:
	case NET_OP_SYNC:
	case NET_OP_PUT:
	case NET_OP_GET:
		if (h->count != 0)
			return -EINVAL;
		break;
	default:
		break;
	}

	switch (h->op) {
	case NET_OP_PUT:
		return decode_frag(&f[1], &f[2], &r->frag, &r->frag_raw,
				   &r->data, &r->len);
	case NET_OP_GET:
		if (f[1].len != NET_FREF_LEN)
			return -EMSGSIZE;
		return net_fref_decode(f[1].data, &r->ref);
	case NET_OP_HAVE:
	case NET_OP_DELETE:
		if (h->count < 1 || h->count > NET_MAX_REFS)
			return h->count ? -EMSGSIZE : -EINVAL;
		if (f[1].len != (size_t)h->count * NET_FREF_LEN)
			return -EMSGSIZE;
		r->refs = f[1].data;
		return check_frefs(r->refs, h->count);
	case NET_OP_LIST:
		if (h->count < 1 || h->count > NET_MAX_LIST)
			return h->count ? -EMSGSIZE : -EINVAL;
		if (f[1].len == 0)
			return 0;
		if (f[1].len != NET_FREF_LEN)
			return -EMSGSIZE;
		r->has_cursor = true;
		return net_fref_decode(f[1].data, &r->ref);
	default:
		return 0;
	}
}

int net_rep_decode(const struct net_frame *f, size_t n, struct net_rep *r)
{
	const struct net_hdr *h = &r->hdr;
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
	if (h->op == NET_OP_HEAD_GET || h->op == NET_OP_HEAD_CAS ||
	    req_frames(h->op) == 0) {
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

	switch (h->op) {
	case NET_OP_PING:
	case NET_OP_PUT:
	case NET_OP_SYNC:
		if (n != 1 || h->count != 0)
			return -EINVAL;
		return 0;
	case NET_OP_GET:
		if (n != 3 || h->count != 0)
			return -EINVAL;
		return decode_frag(&f[1], &f[2], &r->frag, &r->frag_raw,
				   &r->data, &r->len);
	case NET_OP_STATUS:
		if (n != 2 || h->count != 0)
			return -EINVAL;
		if (f[1].len != NET_STATUS_LEN && f[1].len != NET_STATUS_LEN_V1)
			return -EMSGSIZE;
		net_status_decode(f[1].data, f[1].len, &r->st);
		return 0;
	case NET_OP_HAVE:
	case NET_OP_DELETE:
		if (n != 2)
			return -EINVAL;
		if (h->count < 1 || h->count > NET_MAX_REFS)
			return h->count ? -EMSGSIZE : -EINVAL;
		if (f[1].len != net_bitmap_len(h->count))
			return -EMSGSIZE;
		r->bitmap = f[1].data;
		return 0;
	case NET_OP_LIST:
		if (n != 2)
			return -EINVAL;
		if (h->count > NET_MAX_LIST)
			return -EMSGSIZE;
		if (f[1].len != (size_t)h->count * NET_LIST_ITEM_LEN)
			return -EMSGSIZE;
		r->items = f[1].data;
		for (uint32_t i = 0; i < h->count; i++) {
			struct net_list_item it;

			if (net_list_item_decode(
				r->items + (size_t)i * NET_LIST_ITEM_LEN, &it) <
			    0)
				return -EINVAL;
		}
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

int net_req_encode(const struct net_req *r, uint8_t *scratch,
		   struct net_frame *out)
{
	struct net_hdr h = r->hdr;
	uint8_t *small = scratch + NET_HDR_LEN;
	int n = 1;

	h.flags = 0;
	h.status = 0;
	if (h.op != NET_OP_PING)
		h.arg = 0;
	switch (h.op) {
	case NET_OP_PING:
	case NET_OP_STATUS:
	case NET_OP_SYNC:
		h.count = 0;
		break;
	case NET_OP_PUT:
		h.count = 0;
		out[n++] = (struct net_frame){r->frag_raw, EC_FRAG_HDR_LEN};
		out[n++] = (struct net_frame){r->data, r->len};
		break;
	case NET_OP_GET:
		h.count = 0;
		net_fref_encode(&r->ref, small);
		out[n++] = (struct net_frame){small, NET_FREF_LEN};
		break;
	case NET_OP_HAVE:
	case NET_OP_DELETE:
		if (h.count < 1 || h.count > NET_MAX_REFS)
			return -EINVAL;
		out[n++] =
		    (struct net_frame){r->refs, (size_t)h.count * NET_FREF_LEN};
		break;
	case NET_OP_LIST:
		if (h.count < 1 || h.count > NET_MAX_LIST)
			return -EINVAL;
		if (r->has_cursor)
			net_fref_encode(&r->ref, small);
		out[n++] =
		    (struct net_frame){small, r->has_cursor ? NET_FREF_LEN : 0};
		break;
	default:
		return -EINVAL;
	}
	net_hdr_encode(&h, scratch);
	out[0] = (struct net_frame){scratch, NET_HDR_LEN};
	return n;
}

int net_rep_encode(const struct net_rep *r, uint8_t *scratch,
		   struct net_frame *out)
{
	struct net_hdr h = r->hdr;
	uint8_t *small = scratch + NET_HDR_LEN;
	int n = 1;

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
	switch (h.op) {
	case NET_OP_PING:
	case NET_OP_PUT:
	case NET_OP_SYNC:
		h.count = 0;
		break;
	case NET_OP_GET:
		h.count = 0;
		out[n++] = (struct net_frame){r->frag_raw, EC_FRAG_HDR_LEN};
		out[n++] = (struct net_frame){r->data, r->len};
		break;
	case NET_OP_STATUS:
		h.count = 0;
		net_status_encode(&r->st, small);
		out[n++] = (struct net_frame){small, NET_STATUS_LEN};
		break;
	case NET_OP_HAVE:
	case NET_OP_DELETE:
		if (h.count < 1 || h.count > NET_MAX_REFS)
			return -EINVAL;
		out[n++] =
		    (struct net_frame){r->bitmap, net_bitmap_len(h.count)};
		break;
	case NET_OP_LIST:
		if (h.count > NET_MAX_LIST)
			return -EINVAL;
		out[n++] = (struct net_frame){r->items, (size_t)h.count *
							    NET_LIST_ITEM_LEN};
		break;
	default:
		return -EINVAL;
	}
	net_hdr_encode(&h, scratch);
	out[0] = (struct net_frame){scratch, NET_HDR_LEN};
	return n;
}
