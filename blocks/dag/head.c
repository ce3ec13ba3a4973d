/* The head record: encoding, strict decoding, signing and verifying. */
#include "blocks/dag/head.h"

#include <errno.h>
#include <string.h>

/* Stub bodies until the implementation lands: every call fails. */
int blk_head_sign(struct blk_head *h, const uint8_t sk[64])
{
	return -ENOSYS;
}

int blk_head_encode(const struct blk_head *h, uint8_t *buf, size_t cap,
		    size_t *len)
{
	*len = 0;
	return -ENOSYS;
}

int blk_head_decode(struct blk_head *h, const uint8_t *buf, size_t len)
{
	memset(h, 0, sizeof(*h));
	return -EBADMSG;
}

int blk_head_verify(const struct blk_head *h, const uint8_t pk[32])
{
	return -EBADMSG;
}

void blk_head_cid(const uint8_t *buf, size_t len, struct blk_cid *out)
{
	blk_cid_compute(out, BLK_CODEC_DAG_CBOR, buf, len);
}
