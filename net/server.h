/* The storage-node server: one CURVE ROUTER socket serving the wire
 * protocol (net/proto.h) out of a column family of the node's RocksDB.
 *
 * Threads: a proxy thread owns the ROUTER (no other thread touches it) and
 * forwards requests to a bounded pool of workers over an inproc DEALER
 * (zmq_proxy_steerable); a ZAP handler thread on inproc://zeromq.zap.01
 * admits only the configured client keys. Each worker decodes, executes and
 * answers one request at a time.
 *
 * Records in the fragment column family (keys are a tag byte, then the
 * 37-byte wire fragment reference "fref" of proto.h):
 *   'F' fref  -> the 64-byte fragment header, then the fragment bytes
 *   'I' fref  -> u32 LE frag_len: a small index entry, so HAVE, LIST and
 *                DELETE never read fragment bytes
 *   'S'       -> u64 LE used bytes, u64 LE fragment count
 * The three change together in one transaction. Used bytes count the value
 * of each fragment (64 + frag_len). A PUT of a fragment already stored
 * rewrites it (so a repair can replace a rotten copy) and costs no space.
 *
 * Checks: a PUT whose bytes do not match its header's checksum is refused
 * with -EBADMSG; a GET verifies the stored value (header, checksum, and
 * that it is the fragment asked for) and answers -EBADMSG rather than send
 * wrong bytes. Every malformed request gets an error reply (proto.h lists
 * the statuses) and the server goes on serving.
 *
 * Durability: PUTs and DELETEs go to the WAL unsynced; SYNC makes them all
 * durable with one WAL sync (blk_db_sync), like NFS COMMIT. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/store.h"
#include "net/proto.h"

struct net_server;

#define NET_SERVER_KEY_LEN (1 + NET_FREF_LEN)
#define NET_SERVER_DEFAULT_WORKERS 4
#define NET_SERVER_MAX_WORKERS 64

struct net_server_config {
	/* ZeroMQ context; NULL: the server creates and owns one. A shared
	 * context can hold only one server (one ZAP handler per context). */
	void *zmq_ctx;
	/* Where to bind, e.g. "tcp://127.0.0.1:7000"; a port of "*" picks a
	 * free one (see net_server_endpoint). */
	const char *endpoint;
	/* The node's CURVE key pair, Z85. */
	const char *public_key;
	const char *secret_key;
	/* Client public keys (Z85) the ZAP handler admits: the cluster's. */
	const char *const *allowed_keys;
	size_t nallowed;
	/* Where fragments live: an open database and the index of a column
	 * family of its own (BLK_CF_USER + i). The caller keeps the db open
	 * until net_server_free returns. */
	struct blk_db *db;
	unsigned cf;
	uint64_t capacity; /* bytes; PUTs beyond it fail with -ENOSPC */
	unsigned workers;  /* 0: NET_SERVER_DEFAULT_WORKERS */
	/* Test only: GET replies lie (a hostile or broken peer), in the way
	 * of enum net_fault. Also set by BLOCKFS_FAULT_CORRUPT_GET in the
	 * environment when the server is created: "1" (or "flip"), "forge",
	 * "lie". */
	unsigned fault_corrupt_get;
};

enum net_fault {
	NET_FAULT_NONE,
	/* one byte flipped after the stored fragment was verified: the
	 * reader's fragment checksum catches it */
	NET_FAULT_FLIP,
	/* one byte flipped and the header's checksum sealed again: only the
	 * CID of the decoded block shows it */
	NET_FAULT_FORGE,
	/* right bytes, a header (checksum sealed again) that claims a block
	 * one byte shorter: a lie about the coding */
	NET_FAULT_LIE,
};

/* Create the server and start serving. Returns 0, or:
 *   -EINVAL      a missing or malformed field (keys, endpoint, cf)
 *   -EADDRINUSE  the endpoint, or the context's ZAP endpoint, is taken
 *   -EIO         the stored usage record is unreadable
 *   -ENOMEM, or another -errno from ZeroMQ */
int net_server_new(const struct net_server_config *cfg,
		   struct net_server **out);

/* Stop serving (requests in flight may get no reply), join every thread,
 * close the sockets and, if it owns it, the context. NULL is fine. */
void net_server_free(struct net_server *s);

/* The endpoint bound, with the port resolved ("tcp://127.0.0.1:41234"). */
const char *net_server_endpoint(const struct net_server *s);

/* Current usage, as STATUS reports it. */
void net_server_status(struct net_server *s, struct net_status *st);

/* Execute one request in the calling thread, exactly as a worker would
 * for the same request from the network, for a client in this process
 * (net_client_set_local: @arg is the server). *@rep is the reply; its
 * pointers stay valid until net_server_release(*@hold). Returns the
 * reply's status. */
int net_server_exec(void *arg, const struct net_req *q, struct net_rep *rep,
		    void **hold);
void net_server_release(void *hold);

/* Key of a fragment's 'F' record (for tools and tests that inspect or
 * damage the store); @out receives NET_SERVER_KEY_LEN bytes. */
void net_server_frag_key(const struct net_fref *ref,
			 uint8_t out[NET_SERVER_KEY_LEN]);
