/* The balanced UnixFS file layout, built leaf by leaf. */
#include "blocks/dag/file.h"

#include <errno.h>
#include <stdlib.h>

int blk_dag_file_new(struct blk_dag_file **out,
		     const struct blk_dag_file_meta *meta, blk_dag_emit_fn emit,
		     blk_dag_read_fn read, void *ctx)
{
	*out = NULL;
	return -ENOSYS;
}

int blk_dag_file_add_leaf(struct blk_dag_file *f, const struct blk_cid *cid,
			  uint64_t size)
{
	return -ENOSYS;
}

int blk_dag_file_finish(struct blk_dag_file *f, struct blk_cid *root,
			uint64_t *file_size, uint64_t *dag_size)
{
	return -ENOSYS;
}

void blk_dag_file_free(struct blk_dag_file **f)
{
	*f = NULL;
}
