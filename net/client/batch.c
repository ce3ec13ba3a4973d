/* Batches: a set of ops one thread submits and then waits on with a
 * deadline, from net_batch_new to net_batch_free; its counters are under
 * the client's mutex, which outlives it (an op orphaned by
 * net_batch_free is freed by its completion). */
#include <errno.h>
#include <stdlib.h>

#include "blocks/base/clock.h"
#include "net/client/client-impl.h"

struct net_batch *net_batch_new(struct net_client *c)
{
	struct net_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->c = c;
	if (blk_cond_init(&b->cond) < 0) {
		free(b);
		return NULL;
	}
	return b;
}

int net_batch_submit(struct net_batch *b, unsigned peer, struct net_op *op)
{
	struct net_client *c = b->c;
	int rc;

	if (!op)
		return -EINVAL;
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		struct net_op **ops = realloc(b->ops, cap * sizeof(*ops));

		if (!ops) {
			net_op_free(op);
			return -ENOMEM;
		}
		b->ops = ops;
		b->cap = cap;
	}
	rc = net_client_prepare(c, peer, op);
	if (rc < 0) {
		if (op->submitted) /* someone else's op: not ours to touch */
			return rc;
		op->peer = peer < c->npeers ? peer : 0;
	}
	op->batch = b;
	b->ops[b->n++] = op;
	if (rc == 0)
		rc = net_client_enqueue(c, peer, op);
	if (rc < 0)
		net_op_complete(c, op, rc);
	return rc;
}

int net_batch_wait(struct net_batch *b, int timeout_ms)
{
	struct net_client *c = b->c;
	struct timespec until;
	int rc = 0;

	if (timeout_ms >= 0)
		blk_deadline(&until, (uint64_t)timeout_ms);
	pthread_mutex_lock(&c->mu);
	while (b->ndone < b->n) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&b->cond, &c->mu);
		} else if (pthread_cond_timedwait(&b->cond, &c->mu, &until) ==
			   ETIMEDOUT) {
			rc = b->ndone < b->n ? -ETIMEDOUT : 0;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

size_t net_batch_count(const struct net_batch *b)
{
	return b->n;
}

size_t net_batch_done(struct net_batch *b)
{
	size_t n;

	pthread_mutex_lock(&b->c->mu);
	n = b->ndone;
	pthread_mutex_unlock(&b->c->mu);
	return n;
}

struct net_op *net_batch_op(const struct net_batch *b, size_t i)
{
	return i < b->n ? b->ops[i] : NULL;
}

void net_batch_free(struct net_batch *b)
{
	size_t kept = 0;

	if (!b)
		return;
	pthread_mutex_lock(&b->c->mu);
	for (size_t i = 0; i < b->n; i++) {
		struct net_op *op = b->ops[i];

		if (atomic_load(&op->done))
			b->ops[kept++] = op; /* ours to free */
		else
			op->orphan = true; /* the I/O thread frees it */
	}
	pthread_mutex_unlock(&b->c->mu);
	for (size_t i = 0; i < kept; i++)
		net_op_free(b->ops[i]);
	pthread_cond_destroy(&b->cond);
	free(b->ops);
	free(b);
}
