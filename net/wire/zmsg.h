/* One whole ZeroMQ multipart message received into an array of frames: the
 * receive loop the client, the server's workers and its ZAP handler share. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

/* Receive the next message on @sock: its first @max frames into
 * m[0..*@n), each initialised (the caller closes them), and the rest
 * received and dropped, with *@too_many set (NULL: not told). @flags go
 * to the first frame's zmq_msg_recv: with ZMQ_DONTWAIT and nothing
 * waiting, *@n is 0. A receive error ends the message where it is. */
void net_zmsg_recv(void *sock, zmq_msg_t *m, size_t max, int flags, size_t *n,
		   bool *too_many);

/* Close m[0..@n). */
void net_zmsg_close(zmq_msg_t *m, size_t n);
