/* Receiving one multipart ZeroMQ message; see zmsg.h. */
#include "net/wire/zmsg.h"

void net_zmsg_recv(void *sock, zmq_msg_t *m, size_t max, int flags, size_t *n,
		   bool *too_many)
{
	int more = 1;

	*n = 0;
	if (too_many)
		*too_many = false;
	while (more) {
		zmq_msg_t extra, *dst = *n < max ? &m[*n] : &extra;

		zmq_msg_init(dst);
		if (zmq_msg_recv(dst, sock, *n ? 0 : flags) < 0) {
			zmq_msg_close(dst);
			break;
		}
		more = zmq_msg_more(dst);
		if (dst == &extra) {
			zmq_msg_close(&extra);
			if (too_many)
				*too_many = true;
		} else {
			(*n)++;
		}
	}
}

void net_zmsg_close(zmq_msg_t *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&m[i]);
}
