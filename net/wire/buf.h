/* A reference-counted buffer: bytes that several requests and the
 * ZeroMQ messages built on them send without copying (the K+M fragments
 * of one block share one). The last reference to go releases the bytes,
 * on whichever thread drops it. */
#pragma once

#include <stddef.h>

struct net_buf;

/* A buffer holding @data, with one reference (the caller's). When the
 * last reference goes, @release(@data) runs (NULL: the bytes outlive
 * every user). NULL when out of memory; @data is then still the
 * caller's. */
struct net_buf *net_buf_new(void *data, void (*release)(void *data));

/* One more reference; returns @b. Any thread. */
struct net_buf *net_buf_ref(struct net_buf *b);

/* Drop one reference. Any thread; NULL is fine. */
void net_buf_unref(struct net_buf *b);
