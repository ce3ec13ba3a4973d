/* dag-pb PBNode/PBLink: canonical encoding and strict decoding. */
#include "blocks/dag/pb.h"

#include <errno.h>

int blk_pb_link_cmp(const struct blk_pb_link *a, const struct blk_pb_link *b)
{
	return 0;
}

void blk_pb_sort_links(struct blk_pb_link *links, size_t n)
{
}

size_t blk_pb_encoded_size(const struct blk_pb_node *node)
{
	return 0;
}

int blk_pb_encode(const struct blk_pb_node *node, uint8_t *buf, size_t cap,
		  size_t *len)
{
	return -ENOSYS;
}

int blk_pb_decode(const uint8_t *buf, size_t len, struct blk_pb_node *node,
		  struct blk_pb_link *links, size_t max_links)
{
	return -ENOSYS;
}

int blk_pb_iter_init(struct blk_pb_iter *it, const uint8_t *buf, size_t len,
		     struct blk_pb_node *node)
{
	return -ENOSYS;
}

int blk_pb_iter_next(struct blk_pb_iter *it, struct blk_pb_link *link)
{
	return 0;
}
