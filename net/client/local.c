/* The client's executor for a local peer (the storage node in this
 * process): LOCAL_THREADS threads that run its ops as function calls
 * instead of round trips through ZeroMQ, started by net_client_set_local
 * and joined by net_client_free (net_local_stop).
 *
 * Local ops are on c->localq (under c->mu) until a local thread takes
 * them; the thread runs the exec without the lock and completes the op
 * like any other. The peer's socket stays connected and pinged, so its
 * liveness is still real. */
#include <errno.h>

#include "net/client/client-impl.h"

static void run_local(struct net_client *c, struct net_op *op)
{
	const struct net_peer *p = &c->peers[op->peer];
	struct net_rep rep = {.hdr = {.op = op->req.hdr.op}};
	uint64_t t0 = net_now_us();
	int rc = 0;

	op->attempts = 1;
	if (op->req.hdr.op == NET_OP_PUT)
		rc = ec_frag_hdr_parse(op->req.frag_raw, EC_FRAG_HDR_LEN,
				       &op->req.frag);
	if (rc == 0)
		rc = p->local_exec(p->local_arg, &op->req, &rep,
				   &op->local_hold);
	op->local_release = p->local_release;
	if (rc == 0) {
		rep.hdr.op = op->req.hdr.op;
		rep.hdr.status = 0;
		rc = net_op_accept_reply(c, op, &rep);
	}
	op->res.rtt_us = net_now_us() - t0 + 1; /* never 0: 0 means none */
	net_op_complete(c, op, rc);
}

static void *local_main(void *arg)
{
	struct net_client *c = arg;
	struct op_list left = {0};
	struct net_op *op;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		op = c->localq.head;
		if (!op) {
			if (c->stopping)
				break;
			pthread_cond_wait(&c->local_cond, &c->mu);
			continue;
		}
		op_list_del(&c->localq, op);
		if (c->stopping) {
			op_list_push(&left, op);
			continue;
		}
		pthread_mutex_unlock(&c->mu);
		run_local(c, op);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	net_op_fail_list(c, &left, -ECANCELED);
	return NULL;
}

void net_local_push(struct net_client *c, struct net_op *op)
{
	op_list_push(&c->localq, op);
	pthread_cond_signal(&c->local_cond);
}

void net_local_stop(struct net_client *c)
{
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->local_cond);
	pthread_mutex_unlock(&c->mu);
	for (unsigned i = 0; i < c->nlocal_threads; i++)
		pthread_join(c->local_threads[i], NULL);
	c->nlocal_threads = 0;
}

int net_client_set_local(struct net_client *c, unsigned peer, net_local_fn exec,
			 net_local_release_fn release, void *arg)
{
	if (peer >= c->npeers || !exec || c->peers[peer].local_exec)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	c->peers[peer].local_release = release;
	c->peers[peer].local_arg = arg;
	c->peers[peer].local_exec = exec;
	pthread_mutex_unlock(&c->mu);
	while (c->nlocal_threads < LOCAL_THREADS) {
		if (pthread_create(&c->local_threads[c->nlocal_threads], NULL,
				   local_main, c) != 0)
			return c->nlocal_threads ? 0 : -EAGAIN;
		c->nlocal_threads++;
	}
	return 0;
}
