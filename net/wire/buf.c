/* Reference-counted send buffers (net/wire/buf.h). */
#include "net/wire/buf.h"

#include <stdatomic.h>
#include <stdlib.h>

struct net_buf {
	atomic_uint refs; /* lock-free */
	void *data;	  /* constant */
	void (*release)(void *data);
};

struct net_buf *net_buf_new(void *data, void (*release)(void *data))
{
	struct net_buf *b = malloc(sizeof(*b));

	if (!b)
		return NULL;
	atomic_init(&b->refs, 1);
	b->data = data;
	b->release = release;
	return b;
}

struct net_buf *net_buf_ref(struct net_buf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void net_buf_unref(struct net_buf *b)
{
	if (!b ||
	    atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (b->release)
		b->release(b->data);
	free(b);
}
