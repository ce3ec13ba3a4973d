/* The client's ops: their constructors, their PUT payloads, their
 * completion and the check of the replies they get; the lifecycle of an
 * op is net_op_new_* -> (submitted) -> net_op_complete -> net_op_free. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/client/client-impl.h"

static void buf_zmq_free(void *data, void *hint)
{
	(void)data;
	net_buf_unref(hint);
}

void net_op_payload_msg(struct net_op *op, zmq_msg_t *m)
{
	if (!op->buf) {
		zmq_msg_init_data(m, (void *)op->req.data, op->req.len, NULL,
				  NULL);
		return;
	}
	zmq_msg_init_data(m, (void *)op->req.data, op->req.len, buf_zmq_free,
			  net_buf_ref(op->buf));
}

static struct net_op *op_new(uint8_t code)
{
	struct net_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->req.hdr.op = code;
	op->res.op = code;
	atomic_init(&op->done, false);
	return op;
}

struct net_op *net_op_new_ping(void)
{
	return op_new(NET_OP_PING);
}

struct net_op *net_op_new_status(void)
{
	return op_new(NET_OP_STATUS);
}

struct net_op *net_op_new_sync(void)
{
	return op_new(NET_OP_SYNC);
}

struct net_op *net_op_new_put(const uint8_t frag_raw[EC_FRAG_HDR_LEN],
			      struct net_buf *buf, const void *data, size_t len)
{
	struct net_op *op;

	if (!frag_raw || !data || len == 0 || len > EC_MAX_BLOCK)
		return NULL;
	op = op_new(NET_OP_PUT);
	if (!op)
		return NULL;
	op->buf = buf ? net_buf_ref(buf) : NULL;
	memcpy(op->frag_raw, frag_raw, EC_FRAG_HDR_LEN);
	op->req.frag_raw = op->frag_raw;
	op->req.data = data;
	op->req.len = len;
	return op;
}

struct net_op *net_op_new_get(const struct net_fref *ref)
{
	struct net_op *op;

	if (!ref || ref->index >= EC_MAX_FRAGS)
		return NULL;
	op = op_new(NET_OP_GET);
	if (op)
		op->req.ref = *ref;
	return op;
}

static struct net_op *new_batched(uint8_t code, const struct net_fref *refs,
				  uint32_t n)
{
	struct net_op *op;

	if (!refs || n < 1 || n > NET_MAX_REFS)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		if (refs[i].index >= EC_MAX_FRAGS)
			return NULL;
	op = op_new(code);
	if (!op)
		return NULL;
	op->refs = malloc((size_t)n * NET_FREF_LEN);
	if (!op->refs) {
		free(op);
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++)
		net_fref_encode(&refs[i], op->refs + (size_t)i * NET_FREF_LEN);
	op->req.refs = op->refs;
	op->req.hdr.count = n;
	return op;
}

struct net_op *net_op_new_have(const struct net_fref *refs, uint32_t n)
{
	return new_batched(NET_OP_HAVE, refs, n);
}

struct net_op *net_op_new_delete(const struct net_fref *refs, uint32_t n)
{
	return new_batched(NET_OP_DELETE, refs, n);
}

struct net_op *net_op_new_list(const struct net_fref *cursor, uint32_t limit)
{
	struct net_op *op;

	if (limit < 1 || limit > NET_MAX_LIST ||
	    (cursor && cursor->index >= EC_MAX_FRAGS))
		return NULL;
	op = op_new(NET_OP_LIST);
	if (!op)
		return NULL;
	op->req.hdr.count = limit;
	if (cursor) {
		op->req.has_cursor = true;
		op->req.ref = *cursor;
	}
	return op;
}

struct net_op *net_op_new_head_get(const uint8_t fsid[NET_FSID_LEN],
				   uint64_t seq)
{
	struct net_op *op;

	if (!fsid)
		return NULL;
	op = op_new(NET_OP_HEAD_GET);
	if (!op)
		return NULL;
	memcpy(op->fsid, fsid, NET_FSID_LEN);
	op->req.fsid = op->fsid;
	op->req.hdr.arg = seq;
	return op;
}

struct net_op *net_op_new_head_cas(uint64_t expect, const void *rec, size_t len)
{
	struct net_op *op;

	if (!rec || len == 0 || len > NET_HEAD_MAX_BYTES)
		return NULL;
	op = op_new(NET_OP_HEAD_CAS);
	if (!op)
		return NULL;
	op->head = malloc(len);
	if (!op->head) {
		free(op);
		return NULL;
	}
	memcpy(op->head, rec, len);
	op->req.data = op->head;
	op->req.len = len;
	op->req.hdr.arg = expect;
	return op;
}

void net_op_drop_reply(struct net_op *op)
{
	for (int i = 0; i < op->nrmsg; i++)
		zmq_msg_close(&op->rmsg[i]);
	op->nrmsg = 0;
	if (op->local_hold && op->local_release)
		op->local_release(op->local_hold);
	op->local_hold = NULL;
}

void net_op_free(struct net_op *op)
{
	if (!op)
		return;
	net_op_drop_reply(op);
	net_buf_unref(op->buf);
	free(op->refs);
	free(op->head);
	free(op);
}

const struct net_op_result *net_op_result(const struct net_op *op)
{
	if (!atomic_load_explicit(&((struct net_op *)op)->done,
				  memory_order_acquire))
		return NULL;
	return &op->res;
}

/* ---- completion (the owner: I/O or local thread, or a submitter for ops
 * never queued) ---- */

void net_op_complete(struct net_client *c, struct net_op *op, int status)
{
	bool free_it = false;

	op->res.status = status;
	op->res.peer = op->peer;
	op->res.attempts = op->attempts;
	if (status < 0)
		net_op_drop_reply(op);
	/* The bytes are no longer needed by us (ZeroMQ may still hold them). */
	net_buf_unref(op->buf);
	op->buf = NULL;

	if (op->batch) {
		pthread_mutex_lock(&c->mu);
		atomic_store_explicit(&op->done, true, memory_order_release);
		if (op->orphan) {
			free_it = true;
		} else {
			op->batch->ndone++;
			pthread_cond_broadcast(&op->batch->cond);
		}
		pthread_mutex_unlock(&c->mu);
		if (free_it)
			net_op_free(op);
		return;
	}
	atomic_store_explicit(&op->done, true, memory_order_release);
	if (op->done_fn)
		op->done_fn(op, op->done_arg);
	else
		net_op_free(op);
}

void net_op_fail_list(struct net_client *c, struct op_list *l, int status)
{
	struct net_op *op;

	while ((op = l->head)) {
		op_list_del(l, op);
		net_op_complete(c, op, status);
	}
}

int net_op_accept_reply(struct net_client *c, struct net_op *op,
			const struct net_rep *r)
{
	if (r->hdr.op != op->req.hdr.op)
		return -EPROTO;
	if (r->hdr.status < 0)
		return r->hdr.status;
	switch (r->hdr.op) {
	case NET_OP_GET:
		if (!c->no_verify &&
		    (ec_frag_verify(&r->frag, r->data, r->len) < 0 ||
		     !blk_cid_equal(&r->frag.cid, &op->req.ref.cid) ||
		     r->frag.index != op->req.ref.index))
			return -EBADMSG;
		op->res.frag = r->frag;
		op->res.frag_raw = r->frag_raw;
		op->res.data = r->data;
		op->res.len = r->len;
		return 0;
	case NET_OP_HAVE:
	case NET_OP_DELETE:
		if (r->hdr.count != op->req.hdr.count)
			return -EPROTO;
		op->res.bitmap = r->bitmap;
		op->res.count = r->hdr.count;
		return 0;
	case NET_OP_LIST:
		if (r->hdr.count > op->req.hdr.count)
			return -EPROTO;
		op->res.items = r->items;
		op->res.count = r->hdr.count;
		op->res.more = r->hdr.flags & NET_F_MORE;
		return 0;
	case NET_OP_STATUS:
		op->res.st = r->st;
		return 0;
	case NET_OP_HEAD_GET:
		op->res.data = r->data;
		op->res.len = r->len;
		return 0;
	default:
		return 0;
	}
}
