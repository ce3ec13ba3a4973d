/* Fragment framing; see fragment.h for the layout. */
#include "ec/fragment.h"

#include "blocks/base/bytes.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

static void encode_fields(const struct ec_frag_hdr *h, uint8_t *out)
{
	memcpy(out, "BFRG", 4);
	out[4] = EC_FRAG_VERSION;
	out[5] = h->k;
	out[6] = h->m;
	out[7] = h->index;
	blk_put_le32(out + 8, h->block_len);
	blk_put_le32(out + 12, h->frag_len);
	blk_put_le32(out + 16, blk_cid_type(&h->cid));
	blk_put_le32(out + 20, 0);
	memcpy(out + 24, h->cid.digest, BLK_DIGEST_LEN);
}

static uint64_t checksum(const uint8_t *fields, const void *data, size_t len)
{
	return XXH3_64bits_withSeed(data, len, XXH3_64bits(fields, 56));
}

void ec_frag_hdr_seal(struct ec_frag_hdr *h, const void *data,
		      uint8_t out[EC_FRAG_HDR_LEN])
{
	encode_fields(h, out);
	h->checksum = checksum(out, data, h->frag_len);
	blk_put_le64(out + 56, h->checksum);
}

int ec_frag_hdr_parse(const uint8_t *buf, size_t len, struct ec_frag_hdr *h)
{
	if (len != EC_FRAG_HDR_LEN || memcmp(buf, "BFRG", 4) != 0 ||
	    buf[4] != EC_FRAG_VERSION)
		return -EPROTO;
	memset(h, 0, sizeof(*h));
	h->k = buf[5];
	h->m = buf[6];
	h->index = buf[7];
	h->block_len = blk_get_le32(buf + 8);
	h->frag_len = blk_get_le32(buf + 12);
	memcpy(h->cid.digest, buf + 24, BLK_DIGEST_LEN);
	h->checksum = blk_get_le64(buf + 56);
	if (blk_get_le32(buf + 20) != 0)
		return -EPROTO;
	if (blk_cid_set_type(&h->cid, blk_get_le32(buf + 16)) < 0)
		return -EINVAL;
	if (h->k < 1 || h->k > EC_MAX_K || h->m > EC_MAX_M ||
	    h->index >= h->k + h->m)
		return -EINVAL;
	if (h->block_len < 1 || h->block_len > EC_MAX_BLOCK ||
	    h->frag_len < 1 || h->frag_len > EC_MAX_BLOCK)
		return -EINVAL;
	/* A fragment holds at least its share of the block, and a replica
	 * (k = 1) exactly the block. */
	if ((uint64_t)h->frag_len * h->k < h->block_len ||
	    (h->k == 1 && h->frag_len != h->block_len))
		return -EINVAL;
	if (h->cid.codec != BLK_CODEC_RAW && h->cid.codec != BLK_CODEC_DAG_PB &&
	    h->cid.codec != BLK_CODEC_DAG_CBOR)
		return -EINVAL;
	return 0;
}

int ec_frag_verify(const struct ec_frag_hdr *h, const void *data, size_t len)
{
	uint8_t fields[EC_FRAG_HDR_LEN];

	if (len != h->frag_len)
		return -EBADMSG;
	encode_fields(h, fields);
	return checksum(fields, data, len) == h->checksum ? 0 : -EBADMSG;
}
