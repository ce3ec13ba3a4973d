/* CURVE key pairs in Z85 text, generated and checked through libzmq. */
#include "net/wire/keys.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <zmq.h>

void *net_ctx_new(void)
{
	void *ctx = zmq_ctx_new();

	if (ctx)
		zmq_ctx_set(ctx, ZMQ_IO_THREADS, NET_IO_THREADS);
	return ctx;
}

int net_keypair_generate(char *pub, char *sec)
{
	if (!zmq_has("curve"))
		return -ENOTSUP;
	if (zmq_curve_keypair(pub, sec) != 0)
		return -errno;
	return 0;
}

int net_key_public(const char *sec, char *pub)
{
	if (!net_key_valid(sec))
		return -EINVAL;
	if (zmq_curve_public(pub, sec) != 0)
		return -EINVAL;
	return 0;
}

int net_key_valid(const char *s)
{
	static const char alphabet[] =
	    "0123456789abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
	uint8_t raw[32];

	if (!s || strlen(s) != NET_KEY_Z85_LEN)
		return 0;
	for (const char *p = s; *p; p++)
		if (!strchr(alphabet, *p))
			return 0;
	return zmq_z85_decode(raw, s) != NULL;
}
