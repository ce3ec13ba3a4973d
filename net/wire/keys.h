/* CURVE key pairs for nodes and clients, in ZeroMQ's Z85 text form, and
 * the ZeroMQ context both ends create for their CURVE sockets. */
#pragma once

#define NET_KEY_Z85_LEN 40 /* characters, without the NUL */

/* Generate a fresh CURVE key pair (libsodium's RNG, through libzmq).
 * @pub and @sec receive NUL-terminated Z85 text (NET_KEY_Z85_LEN + 1 bytes).
 * Returns 0, or -ENOTSUP when libzmq was built without CURVE. */
int net_keypair_generate(char *pub, char *sec);

/* Derive the public key from a secret key; 0 or -EINVAL. */
int net_key_public(const char *sec, char *pub);

/* True if @s is a well-formed Z85 key (40 characters of the Z85 alphabet). */
int net_key_valid(const char *s);

/* A ZeroMQ context for CURVE sockets, or NULL (errno set). CURVE encrypts
 * and decrypts in the context's I/O threads: one is a single core's worth
 * of XSalsa20-Poly1305 for every peer's bytes, so connections are spread
 * over NET_IO_THREADS. */
#define NET_IO_THREADS 2
void *net_ctx_new(void);
