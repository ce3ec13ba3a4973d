/* The storage-node server: one CURVE ROUTER socket serving the wire
 * protocol (net/wire/proto.h) out of a column family of the node's RocksDB.
 *
 * Threads: a proxy thread owns the ROUTER (no other thread touches it) and
 * hands admitted requests to a bounded pool of workers over an inproc
 * DEALER; a ZAP handler thread on inproc://zeromq.zap.01 admits only the
 * configured client keys. Each worker decodes, executes and answers one
 * request at a time.
 *
 * Fragments live in a column family of the node's RocksDB, kept by a
 * blk_fragstore (blocks/store/fragstore.h: its records, usage and invariants),
 * named by their wire fragment reference ("fref" of proto.h). Used bytes
 * count the value of each fragment (64-byte header + frag_len).
 *
 * Any peer may be broken or hostile; none can change or remove what the
 * node stores for others:
 *   - PUT bytes must match their header's checksum, and a whole-block copy
 *     (K = 1: replicas, and the small blocks an ec:K+M policy stores as
 *     copies) must hash to its CID; otherwise -EBADMSG.
 *   - Stored fragments are immutable. A PUT of a (CID, index) already
 *     stored with the same bytes is acknowledged and changes nothing (a
 *     retry); with other bytes it is refused with -EEXIST, unless the
 *     stored value fails its own checks (header, checksum, the fragment it
 *     should be), in which case the PUT replaces it: that is repair.
 *   - DELETE from the wire is refused with -EPERM: until GC can tell what
 *     no retained head reaches, only the node's own maintenance deletes,
 *     by calling net_server_delete.
 *   - A PUT the node has no room for gets -ENOSPC (capacity reached, or
 *     the disk under data_dir short of the reserve, or the write failing
 *     with it so), so the writer places the fragment on its next node; an
 *     identical re-put is still acknowledged.
 *   - A message of more than NET_MAX_FRAMES frames or NET_MAX_MSG_BYTES
 *     bytes is answered -EMSGSIZE by the proxy, each frame freed as it is
 *     taken off the socket; it never reaches a worker. (ZeroMQ delivers a
 *     message only once all its frames have arrived and bounds each frame
 *     alone, with ZMQ_MAXMSGSIZE, here the largest valid frame.)
 *   - Each peer (client key) may have peer_max_requests requests and
 *     peer_max_bytes bytes of them in flight, and all peers together
 *     max_bytes; a request beyond that is answered -EBUSY at once (clients
 *     back off and send it again). A peer with nothing in flight always
 *     gets one request in, however large, if the node has room for it.
 *   - GET verifies the stored value (header, checksum, and that it is the
 *     fragment asked for) and answers -EBADMSG rather than send wrong
 *     bytes. Every malformed request gets an error reply (proto.h lists
 *     the statuses) and the server goes on serving.
 * Every refusal (unknown key, malformed or oversized message, busy, put,
 * delete, full) is logged, at most once per peer and kind per
 * log_interval_ms, with the count of those not logged since.
 *
 * Heads (net/server/heads.h: records and invariants): HEAD_GET answers a
 * stored head record of any filesystem; HEAD_CAS stores the next head of
 * the cluster's filesystem (fs_id, fs_public_key) only if it decodes, is
 * signed with the filesystem's key, follows the node's current head and
 * respects the current writer's lease; every refusal is logged as
 * NET_REFUSED_HEAD. A node that knows no filesystem (a cluster file
 * without [filesystem]) answers HEAD_CAS -EOPNOTSUPP and says why once.
 *
 * Durability: PUTs go to the WAL unsynced; SYNC makes them all durable
 * with one WAL sync (blk_db_sync), like NFS COMMIT. An accepted head is
 * synced before its reply. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/store/store.h"
#include "net/wire/proto.h"

struct net_server;

#define NET_SERVER_KEY_LEN (1 + NET_FREF_LEN)
#define NET_SERVER_DEFAULT_WORKERS 4
#define NET_SERVER_MAX_WORKERS 64
#define NET_SERVER_DEFAULT_PEER_REQUESTS 128
#define NET_SERVER_DEFAULT_PEER_BYTES (256ull << 20)
#define NET_SERVER_DEFAULT_MAX_BYTES (1024ull << 20)
#define NET_SERVER_DEFAULT_DISK_RESERVE (64ull << 20)
#define NET_SERVER_DEFAULT_LOG_INTERVAL_MS 60000

/* Kinds of refusal, as counted and logged. */
enum net_refusal {
	NET_REFUSED_KEY,       /* a key not in the cluster (ZAP) */
	NET_REFUSED_MALFORMED, /* a request that does not decode */
	NET_REFUSED_TOO_BIG,   /* too many frames or bytes in one message */
	NET_REFUSED_BUSY,      /* over the peer's or the node's bound */
	NET_REFUSED_PUT,       /* bytes not matching checksum or CID */
	NET_REFUSED_OVERWRITE, /* other bytes under a stored (CID, index) */
	NET_REFUSED_DELETE,    /* DELETE from a peer */
	NET_REFUSED_FULL,      /* no room: capacity or disk */
	NET_REFUSED_HEAD,      /* a head CAS refused (heads.h) */
	NET_REFUSED_KINDS,
};

/* What the server refused and what it held, since it started. */
struct net_server_counters {
	uint64_t refused[NET_REFUSED_KINDS];
	uint64_t repaired;   /* corrupt fragments replaced by a PUT */
	uint64_t held_bytes; /* request bytes admitted, not answered */
	uint64_t held_bytes_peak;
};

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
	/* Their names for messages (NULL, or NULL entries: the key). */
	const char *const *allowed_names;
	/* Where fragments live: an open database and the index of a column
	 * family of its own (blk_fragstore_register). The caller keeps the db
	 * open until net_server_free returns. */
	struct blk_db *db;
	unsigned cf;
	uint64_t capacity; /* bytes; PUTs beyond it fail with -ENOSPC */
	/* Where heads live: with has_heads, the index of a column family of
	 * @db of their own (net_heads_register, net/server/heads.h).
	 * Without, HEAD_GET and HEAD_CAS answer -EOPNOTSUPP. */
	bool has_heads;
	unsigned heads_cf;
	/* The filesystem whose heads HEAD_CAS accepts, from the cluster
	 * file's [filesystem] section (cl_cluster_server_new fills them in):
	 * its id (NET_FSID_LEN bytes) and Ed25519 public key (32 bytes),
	 * copied. NULL: none, HEAD_CAS answers -EOPNOTSUPP. */
	const uint8_t *fs_id;
	const uint8_t *fs_public_key;
	/* The database's directory: a PUT that would leave less than
	 * disk_reserve bytes free on its file system gets -ENOSPC. NULL: no
	 * such check (capacity and failing writes only). */
	const char *data_dir;
	uint64_t disk_reserve; /* 0: NET_SERVER_DEFAULT_DISK_RESERVE */
	unsigned workers;      /* 0: NET_SERVER_DEFAULT_WORKERS */
	/* Bounds on requests in flight (0: the NET_SERVER_DEFAULT_* value). */
	unsigned peer_max_requests;
	uint64_t peer_max_bytes;
	uint64_t max_bytes;
	/* Refusals and the damaged-database error: where their messages go
	 * (NULL: the log, blk_log_warn / blk_log_err), and at most one
	 * refusal per peer and kind per this many ms (0:
	 * NET_SERVER_DEFAULT_LOG_INTERVAL_MS). @log may run on any of the
	 * server's threads, never two at once. */
	void (*log)(void *arg, const char *msg);
	void *log_arg;
	unsigned log_interval_ms;
	/* Test only, in a build with -Dfault_injection=true (else non-zero
	 * is -EOPNOTSUPP): GET replies lie (a hostile or broken peer), in the
	 * way of enum net_fault. The command sets it from
	 * BLOCKFS_FAULT_CORRUPT_GET (net_fault_parse). */
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

/* The fault named @name, as BLOCKFS_FAULT_CORRUPT_GET spells it: "1" (or
 * "flip"), "forge", "lie"; anything else, or NULL, is NET_FAULT_NONE. */
unsigned net_fault_parse(const char *name);

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

/* Counters, as struct net_server_counters describes them. */
void net_server_counters(struct net_server *s, struct net_server_counters *c);

/* The node's own maintenance (GC, once it knows what no retained head
 * reaches): delete the @n (1..NET_MAX_REFS) fragments named by @refs; bit
 * i of @bitmap (net_bitmap_len(n) bytes) is set when fragment i was there
 * and is gone. Never reachable from the wire. 0, -EINVAL, -ENOMEM, -EIO. */
int net_server_delete(struct net_server *s, const struct net_fref *refs,
		      uint32_t n, uint8_t *bitmap);

/* Execute one request in the calling thread, exactly as a worker would
 * for the same request from the network (DELETE refused included), for a
 * client in this process (net_client_set_local: @arg is the server); it
 * counts as the peer "local", with no bound on what it has in flight. *@rep is
 * the reply; its pointers stay valid until net_server_release(*@hold). Returns
 * the reply's status. */
int net_server_exec(void *arg, const struct net_req *q, struct net_rep *rep,
		    void **hold);
void net_server_release(void *hold);

/* Key of a fragment's 'F' record (for tools and tests that inspect or
 * damage the store); @out receives NET_SERVER_KEY_LEN bytes. */
void net_server_frag_key(const struct net_fref *ref,
			 uint8_t out[NET_SERVER_KEY_LEN]);
