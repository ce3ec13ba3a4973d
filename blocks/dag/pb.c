/* dag-pb PBNode/PBLink: the canonical encoding (what @ipld/dag-pb's encode
 * writes) and a strict decoder that accepts nothing else. */

/*
 * The canonical form, field by field (every key is one byte):
 *   PBNode: 0x12 len PBLink, once per link, sorted by Name bytes (stable),
 *           then 0x0a len Data when there is Data (possibly empty).
 *   PBLink: 0x0a len Hash (a binary CID), then 0x12 len Name when there is
 *           a Name (possibly empty), then 0x18 varint Tsize when there is one.
 * Invariants:
 *  1. blk_pb_decode accepts exactly the byte strings blk_pb_encode writes:
 *     keys in that order and no other, minimal varints, nothing after Data,
 *     links sorted. So a block that decodes re-encodes to itself, and one
 *     node has one CID. This is stricter than the dag-pb spec, which asks
 *     decoders to accept Data before the links (old IPFS data has it) and
 *     not to sort on decode, and than @ipld/dag-pb's decoder, which also
 *     takes non-minimal varints: none of these is ever written by the
 *     reference encoder or by blockfs, and a block in such a form would
 *     not survive a decode and re-encode with its CID.
 *  2. The decoder reads only within [buf, buf + len), keeps views into it,
 *     and allocates nothing: the caller bounds the links it stores.
 *  3. Links compare as @ipld/dag-pb's linkComparator: bytewise over the
 *     common prefix, then the shorter first; an absent Name is "".
 */
#include "blocks/dag/pb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/dag/pbwire.h"

#define KEY_NODE_DATA PBW_KEY(1, PBW_BYTES)
#define KEY_NODE_LINK PBW_KEY(2, PBW_BYTES)
#define KEY_LINK_HASH PBW_KEY(1, PBW_BYTES)
#define KEY_LINK_NAME PBW_KEY(2, PBW_BYTES)
#define KEY_LINK_TSIZE PBW_KEY(3, PBW_VARINT)

int blk_pb_link_cmp(const struct blk_pb_link *a, const struct blk_pb_link *b)
{
	size_t la = a->has_name ? a->name_len : 0;
	size_t lb = b->has_name ? b->name_len : 0;
	size_t n = la < lb ? la : lb;
	int c = n ? memcmp(a->name, b->name, n) : 0;

	if (c)
		return c;
	return la < lb ? -1 : la > lb;
}

/* Stable merge of the sorted runs [lo, mid) and [mid, hi) through @tmp. */
static void merge(struct blk_pb_link *l, struct blk_pb_link *tmp, size_t lo,
		  size_t mid, size_t hi)
{
	size_t i = lo, j = mid, k = lo;

	while (i < mid && j < hi)
		tmp[k++] = blk_pb_link_cmp(&l[j], &l[i]) < 0 ? l[j++] : l[i++];
	while (i < mid)
		tmp[k++] = l[i++];
	while (j < hi)
		tmp[k++] = l[j++];
	memcpy(l + lo, tmp + lo, (hi - lo) * sizeof(*l));
}

static void insertion_sort(struct blk_pb_link *l, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct blk_pb_link x = l[i];
		size_t j = i;

		while (j > 0 && blk_pb_link_cmp(&x, &l[j - 1]) < 0) {
			l[j] = l[j - 1];
			j--;
		}
		l[j] = x;
	}
}

void blk_pb_sort_links(struct blk_pb_link *links, size_t n)
{
	struct blk_pb_link *tmp;
	size_t width;

	if (n < 32) {
		insertion_sort(links, n);
		return;
	}
	tmp = malloc(n * sizeof(*tmp));
	if (!tmp) {
		/* Slower, but still stable and still sorted. */
		insertion_sort(links, n);
		return;
	}
	for (width = 1; width < n; width *= 2)
		for (size_t lo = 0; lo + width < n; lo += 2 * width) {
			size_t hi = lo + 2 * width < n ? lo + 2 * width : n;

			merge(links, tmp, lo, lo + width, hi);
		}
	free(tmp);
}

static size_t cid_len(const struct blk_cid *cid)
{
	uint8_t b[BLK_CID_MAX_BYTES];

	return blk_cid_to_bytes(cid, b);
}

static size_t link_body_len(const struct blk_pb_link *l)
{
	size_t n = pbw_bytes_field_len(cid_len(&l->cid));

	if (l->has_name)
		n += pbw_bytes_field_len(l->name_len);
	if (l->has_tsize)
		n += 1 + pbw_varint_len(l->tsize);
	return n;
}

size_t blk_pb_encoded_size(const struct blk_pb_node *node)
{
	size_t n = 0;

	for (size_t i = 0; i < node->n_links; i++)
		n += pbw_bytes_field_len(link_body_len(&node->links[i]));
	if (node->has_data)
		n += pbw_bytes_field_len(node->data_len);
	return n;
}

static size_t put_bytes_field(uint8_t *p, uint8_t key, const void *b, size_t n)
{
	size_t k = 0;

	p[k++] = key;
	k += pbw_put_varint(p + k, n);
	if (n)
		memcpy(p + k, b, n);
	return k + n;
}

int blk_pb_encode(const struct blk_pb_node *node, uint8_t *buf, size_t cap,
		  size_t *len)
{
	size_t need, pos = 0;

	for (size_t i = 0; i < node->n_links; i++) {
		const struct blk_pb_link *l = &node->links[i];

		if (l->has_tsize && l->tsize > BLK_PB_MAX_TSIZE)
			return -EINVAL;
		if (i > 0 && blk_pb_link_cmp(l, &node->links[i - 1]) < 0)
			return -EINVAL;
	}
	need = blk_pb_encoded_size(node);
	if (need > BLK_PB_MAX_BLOCK)
		return -EINVAL;
	*len = need;
	if (cap < need)
		return -ENOBUFS;

	for (size_t i = 0; i < node->n_links; i++) {
		const struct blk_pb_link *l = &node->links[i];
		uint8_t cid[BLK_CID_MAX_BYTES];
		size_t cl = blk_cid_to_bytes(&l->cid, cid);

		buf[pos++] = KEY_NODE_LINK;
		pos += pbw_put_varint(buf + pos, link_body_len(l));
		pos += put_bytes_field(buf + pos, KEY_LINK_HASH, cid, cl);
		if (l->has_name)
			pos += put_bytes_field(buf + pos, KEY_LINK_NAME,
					       l->name, l->name_len);
		if (l->has_tsize) {
			buf[pos++] = KEY_LINK_TSIZE;
			pos += pbw_put_varint(buf + pos, l->tsize);
		}
	}
	if (node->has_data)
		pos += put_bytes_field(buf + pos, KEY_NODE_DATA, node->data,
				       node->data_len);
	return 0;
}

/* Decode one PBLink body of @len bytes at @b. Returns 0 or -EBADMSG. */
static int decode_link(const uint8_t *b, size_t len, struct blk_pb_link *l)
{
	const uint8_t *hash;
	size_t hash_len, pos = 0;

	memset(l, 0, sizeof(*l));
	if (pos == len || b[pos++] != KEY_LINK_HASH)
		return -EBADMSG;
	if (pbw_get_bytes(b, len, &pos, &hash, &hash_len) < 0)
		return -EBADMSG;
	/* CIDv0 (a bare sha2-256 multihash) is refused here: blockfs never
	 * writes it, and blk_cid_from_bytes parses CIDv1 only. */
	if (blk_cid_from_bytes(&l->cid, hash, hash_len) < 0)
		return -EBADMSG;
	if (pos < len && b[pos] == KEY_LINK_NAME) {
		pos++;
		if (pbw_get_bytes(b, len, &pos, &l->name, &l->name_len) < 0)
			return -EBADMSG;
		l->has_name = true;
	}
	if (pos < len && b[pos] == KEY_LINK_TSIZE) {
		pos++;
		if (pbw_get_varint(b, len, &pos, &l->tsize) < 0 ||
		    l->tsize > BLK_PB_MAX_TSIZE)
			return -EBADMSG;
		l->has_tsize = true;
	}
	return pos == len ? 0 : -EBADMSG;
}

/* Decode the link field at *@pos (its key already checked), advancing. */
static int next_link(const uint8_t *buf, size_t len, size_t *pos,
		     struct blk_pb_link *l)
{
	const uint8_t *body;
	size_t body_len;

	(*pos)++;
	if (pbw_get_bytes(buf, len, pos, &body, &body_len) < 0)
		return -EBADMSG;
	return decode_link(body, body_len, l);
}

/* The whole check; *@links_end gets where the links end. */
static int decode(const uint8_t *buf, size_t len, struct blk_pb_node *node,
		  struct blk_pb_link *links, size_t max_links,
		  size_t *links_end)
{
	struct blk_pb_link prev, cur;
	size_t pos = 0, n = 0;

	if (len > BLK_PB_MAX_BLOCK)
		return -EBADMSG;
	memset(node, 0, sizeof(*node));
	while (pos < len && buf[pos] == KEY_NODE_LINK) {
		if (next_link(buf, len, &pos, &cur) < 0)
			return -EBADMSG;
		if (n > 0 && blk_pb_link_cmp(&cur, &prev) < 0)
			return -EBADMSG;
		if (n < max_links)
			links[n] = cur;
		prev = cur;
		n++;
	}
	*links_end = pos;
	if (pos < len) {
		if (buf[pos++] != KEY_NODE_DATA)
			return -EBADMSG;
		if (pbw_get_bytes(buf, len, &pos, &node->data,
				  &node->data_len) < 0)
			return -EBADMSG;
		node->has_data = true;
		if (pos != len)
			return -EBADMSG; /* anything after Data */
	}
	node->n_links = n;
	node->links = max_links ? links : NULL;
	return 0;
}

int blk_pb_decode(const uint8_t *buf, size_t len, struct blk_pb_node *node,
		  struct blk_pb_link *links, size_t max_links)
{
	struct blk_pb_node tmp;
	size_t end;
	int rc = decode(buf, len, &tmp, links, max_links, &end);

	if (rc == 0)
		*node = tmp;
	return rc;
}

int blk_pb_iter_init(struct blk_pb_iter *it, const uint8_t *buf, size_t len,
		     struct blk_pb_node *node)
{
	struct blk_pb_node tmp;
	size_t end;
	int rc = decode(buf, len, &tmp, NULL, 0, &end);

	if (rc < 0)
		return rc;
	it->buf = buf;
	it->len = end;
	it->pos = 0;
	if (node)
		*node = tmp;
	return 0;
}

int blk_pb_iter_next(struct blk_pb_iter *it, struct blk_pb_link *link)
{
	if (it->pos >= it->len)
		return 0;
	/* Validated by blk_pb_iter_init: cannot fail. */
	if (next_link(it->buf, it->len, &it->pos, link) < 0) {
		it->pos = it->len;
		return 0;
	}
	return 1;
}
