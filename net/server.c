/* The storage-node server: ROUTER + proxy + worker pool + ZAP handler;
 * see server.h for the contract and the records it keeps. */

/*
 * Design notes.
 *
 *  1. Sockets and threads. The ROUTER (frontend) and the inproc DEALER
 *     (backend) are created by net_server_new, then used only by the proxy
 *     thread (proxy_main) until it reads TERMINATE on the control socket;
 *     only then does net_server_free close them. Each worker owns one
 *     DEALER connected to the backend and receives [routing id][ticket]
 *     [header][payload...]; it answers [routing id][ticket][reply frames],
 *     and the proxy, dropping the ticket, routes the rest back. The ZAP
 *     thread owns its REP socket. Workers and the ZAP thread poll with a
 *     short timeout and leave when s->stop is set.
 *
 *  2. Fragments live in a blk_fragstore (blocks/fragstore.h), which keeps
 *     the usage, the capacity and the immutability of what it stores under
 *     its own lock. The server checks what comes off the wire (checksum,
 *     CID of a whole copy) before it puts, and what it reads (header,
 *     checksum, name) before it answers; the store's check of what a PUT
 *     would replace is the same as GET's (frag_check).
 *
 *  3. GET replies are zero-copy: the value RocksDB read (a pinned slice,
 *     not copied out) is handed to ZeroMQ with zmq_msg_init_data and
 *     released by it once sent. GET skips RocksDB's checksum: the
 *     fragment's own XXH3 checksum is verified instead. PUT hands RocksDB
 *     the header and the received bytes as two slices (no copy of ours).
 *
 *  4. Admission (proxy thread only). The ZAP handler gives each connection
 *     the user id of its key's slot in s->peers, so every frame names its
 *     peer. The proxy takes a message off the ROUTER frame by frame,
 *     keeping at most NET_MAX_FRAMES of them and NET_MAX_MSG_BYTES bytes
 *     (past that, each frame is closed as soon as it is read). A message
 *     that fits and is within its peer's and the node's bounds goes to the
 *     workers with a ticket (peer slot, bytes); the peer's and the node's
 *     counts go up then and down when the worker's reply for that ticket
 *     comes back. Everything else is answered by the proxy itself. So what
 *     the node holds for requests is at most max_bytes plus one message
 *     per peer, whatever the peers send.
 *
 *  5. Refusal logs: s->log_mu protects every peer's rate-limit state (and
 *     the table of unknown keys); the message is formatted and emitted
 *     under it, so the log callback never runs twice at once.
 */
#include "net/server.h"

#include "blocks/bytes.h"
#include "blocks/fragstore.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "net/keys.h"
#include "net/zmsg.h"

#define POLL_MS 100
/* The GET fault (net_server_config.fault_corrupt_get): a constant 0
 * unless the build has -Dfault_injection=true, so that the product
 * compiles the lie away. */
#ifdef BFS_FAULT_INJECTION
#define FAULT_CORRUPT_GET(s) ((s)->fault_corrupt_get)
#else
#define FAULT_CORRUPT_GET(s) 0u
#endif
/* routing id, ticket, then at most NET_MAX_FRAMES (the proxy saw to it) */
#define MAX_IN_FRAMES (2 + NET_MAX_FRAMES)
#define TICKET_LEN 12	/* u32 peer slot, u64 bytes admitted */
#define PROXY_BATCH 64	/* messages taken from one side before the other */
#define UNKNOWN_KEYS 16 /* unknown keys whose refusals are rate-limited */

static const char *const REFUSAL_NAMES[NET_REFUSED_KINDS] = {
    [NET_REFUSED_KEY] = "connection",
    [NET_REFUSED_MALFORMED] = "malformed request",
    [NET_REFUSED_TOO_BIG] = "oversized message",
    [NET_REFUSED_BUSY] = "request",
    [NET_REFUSED_PUT] = "put",
    [NET_REFUSED_OVERWRITE] = "put",
    [NET_REFUSED_DELETE] = "delete",
    [NET_REFUSED_FULL] = "put",
};

struct ratelog {
	uint64_t last_ms; /* 0: never logged */
	uint64_t suppressed;
};

/* One client key's state; slots nallowed and nallowed + 1 are a peer
 * without a user id (none should exist) and the local peer. */
struct peer {
	char name[64];
	uint32_t reqs;	/* proxy thread: requests with the workers */
	uint64_t bytes; /* proxy thread: their bytes */
	struct ratelog log[NET_REFUSED_KINDS]; /* log_mu */
};

struct unknown_key {
	uint8_t key[32];
	struct ratelog log;
};

struct net_server {
	void *ctx;
	bool own_ctx;
	void *router, *backend, *ctl_in, *ctl_out, *zap;
	char endpoint[256];
	char backend_ep[64], ctl_ep[64];

	pthread_t proxy_thread, zap_thread;
	pthread_t *workers;
	unsigned nworkers;
	bool proxy_started, zap_started;
	atomic_bool stop;

	uint8_t (*allowed)[32];
	size_t nallowed;
	struct peer *peers; /* nallowed + 2 (struct peer) */
	unsigned peer_max_reqs;
	uint64_t peer_max_bytes, max_bytes;
	uint64_t held; /* proxy thread: bytes with the workers */

	struct blk_fragstore *store;
	unsigned fault_corrupt_get; /* enum net_fault */

	pthread_mutex_t log_mu; /* note 5 */
	void (*log)(void *arg, const char *msg);
	void *log_arg;
	uint64_t log_interval_ms;
	struct unknown_key unknown[UNKNOWN_KEYS];
	unsigned nunknown;

	atomic_uint_fast64_t refused[NET_REFUSED_KINDS];
	atomic_uint_fast64_t repaired, held_pub, held_peak;
};

static unsigned slot_unknown(const struct net_server *s)
{
	return (unsigned)s->nallowed;
}

static unsigned slot_local(const struct net_server *s)
{
	return (unsigned)s->nallowed + 1;
}

/* ---- refusals ---- */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void refusal_logv(struct net_server *s, struct ratelog *rl,
			 enum net_refusal kind, const char *who,
			 const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* Log a refusal if @rl allows: "refused <what> from <who>: <why>".
 * Called with log_mu held. */
static void refusal_logv(struct net_server *s, struct ratelog *rl,
			 enum net_refusal kind, const char *who,
			 const char *fmt, va_list ap)
{
	uint64_t now = mono_ms();
	char why[256], msg[512];

	if (rl->last_ms && now - rl->last_ms < s->log_interval_ms) {
		rl->suppressed++;
		return;
	}
	vsnprintf(why, sizeof(why), fmt, ap);
	if (rl->suppressed)
		snprintf(msg, sizeof(msg),
			 "node: refused %s from %s: %s (and %" PRIu64
			 " more refusals of this kind from it since the last "
			 "report)",
			 REFUSAL_NAMES[kind], who, why, rl->suppressed);
	else
		snprintf(msg, sizeof(msg), "node: refused %s from %s: %s",
			 REFUSAL_NAMES[kind], who, why);
	rl->last_ms = now ? now : 1;
	rl->suppressed = 0;
	if (s->log)
		s->log(s->log_arg, msg);
	else
		fprintf(stderr, "blockfs: warning: %s\n", msg);
}

static void refuse(struct net_server *s, unsigned slot, enum net_refusal kind,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A refusal of a request from the peer in @slot. */
static void refuse(struct net_server *s, unsigned slot, enum net_refusal kind,
		   const char *fmt, ...)
{
	struct peer *p = &s->peers[slot];
	va_list ap;

	atomic_fetch_add(&s->refused[kind], 1);
	pthread_mutex_lock(&s->log_mu);
	va_start(ap, fmt);
	refusal_logv(s, &p->log[kind], kind, p->name, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->log_mu);
}

static void log_key(struct net_server *s, const uint8_t key[32],
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A connection refused to an unknown @key (NULL: no CURVE key at all). */
static void log_key(struct net_server *s, const uint8_t key[32],
		    const char *fmt, ...)
{
	static const uint8_t none[32];
	struct unknown_key *u = NULL;
	char z85[NET_KEY_Z85_LEN + 1], who[96];
	va_list ap;

	if (!key)
		key = none;
	atomic_fetch_add(&s->refused[NET_REFUSED_KEY], 1);
	pthread_mutex_lock(&s->log_mu);
	for (unsigned i = 0; i < s->nunknown; i++)
		if (!memcmp(s->unknown[i].key, key, 32))
			u = &s->unknown[i];
	if (!u) {
		unsigned i = s->nunknown < UNKNOWN_KEYS ? s->nunknown++ : 0;

		/* Full: the least recently logged key makes room. */
		for (unsigned j = 0;
		     s->nunknown == UNKNOWN_KEYS && j < UNKNOWN_KEYS; j++)
			if (s->unknown[j].log.last_ms <
			    s->unknown[i].log.last_ms)
				i = j;
		u = &s->unknown[i];
		memcpy(u->key, key, 32);
		u->log = (struct ratelog){0};
	}
	if (key == none)
		snprintf(who, sizeof(who), "a peer without a CURVE key");
	else if (zmq_z85_encode(z85, key, 32))
		snprintf(who, sizeof(who), "key %s", z85);
	else
		snprintf(who, sizeof(who), "an unreadable key");
	va_start(ap, fmt);
	refusal_logv(s, &u->log, NET_REFUSED_KEY, who, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->log_mu);
}

void net_server_counters(struct net_server *s, struct net_server_counters *c)
{
	for (unsigned i = 0; i < NET_REFUSED_KINDS; i++)
		c->refused[i] = atomic_load(&s->refused[i]);
	c->repaired = atomic_load(&s->repaired);
	c->held_bytes = atomic_load(&s->held_pub);
	c->held_bytes_peak = atomic_load(&s->held_peak);
}

static const char *frag_name(const struct blk_cid *cid, unsigned index,
			     char buf[BLK_CID_STR_MAX + 16])
{
	size_t n = blk_cid_to_string(cid, buf);

	snprintf(buf + n, 16, "/%u", index);
	return buf;
}

_Static_assert(NET_SERVER_KEY_LEN == BLK_FRAGSTORE_KEY_LEN &&
		   NET_FREF_LEN == BLK_FRAG_NAME_LEN,
	       "a fragment's name in the store is its wire fref");

void net_server_frag_key(const struct net_fref *ref,
			 uint8_t out[NET_SERVER_KEY_LEN])
{
	uint8_t name[NET_FREF_LEN];

	net_fref_encode(ref, name);
	blk_fragstore_frag_key(name, out);
}

const char *net_server_endpoint(const struct net_server *s)
{
	return s->endpoint;
}

void net_server_status(struct net_server *s, struct net_status *st)
{
	struct blk_fragstore_usage u;

	blk_fragstore_usage(s->store, &u);
	st->capacity = u.capacity;
	st->used = u.used;
	st->fragments = u.count;
}

/* ---- request handlers: each fills @rep (status and payload) ---- */

struct reply {
	struct net_rep rep;
	void *own;		/* freed after sending */
	struct blk_val *zc_val; /* GET: value whose bytes go zero-copy */
};

/* 0 if @val (@vlen bytes) is a sound fragment @ref, with its header in
 * @h: a header, bytes matching its checksum, the CID and index of @ref.
 * Else -EBADMSG. */
static int frag_check(const struct net_fref *ref, const uint8_t *val,
		      size_t vlen, struct ec_frag_hdr *h)
{
	if (vlen <= EC_FRAG_HDR_LEN ||
	    ec_frag_hdr_parse(val, EC_FRAG_HDR_LEN, h) < 0 ||
	    !blk_cid_equal(&h->cid, &ref->cid) || h->index != ref->index ||
	    ec_frag_verify(h, val + EC_FRAG_HDR_LEN, vlen - EC_FRAG_HDR_LEN) <
		0)
		return -EBADMSG;
	return 0;
}

/* The store's check (blk_frag_check_fn) of what a PUT would replace. */
static int stored_check(void *arg, const uint8_t name[BLK_FRAG_NAME_LEN],
			const void *val, size_t len)
{
	struct net_fref ref;
	struct ec_frag_hdr h;

	if (net_fref_decode(name, &ref) < 0)
		return -EINVAL;
	return frag_check(&ref, val, len, &h);
}

static int do_put(struct net_server *s, const struct net_req *q, unsigned slot)
{
	struct net_fref ref = {.cid = q->frag.cid, .index = q->frag.index};
	uint8_t name[NET_FREF_LEN];
	char fname[BLK_CID_STR_MAX + 16];
	struct blk_frag_put_result res;
	int rc;

	if (ec_frag_verify(&q->frag, q->data, q->len) < 0) {
		refuse(s, slot, NET_REFUSED_PUT,
		       "%s: the bytes do not match their checksum",
		       frag_name(&q->frag.cid, q->frag.index, fname));
		return -EBADMSG;
	}
	/* A whole copy is the block: it must be the block its CID names. */
	if (q->frag.k == 1 && !blk_cid_verify(&q->frag.cid, q->data, q->len)) {
		refuse(s, slot, NET_REFUSED_PUT,
		       "%s: a whole copy whose bytes are not its CID's",
		       frag_name(&q->frag.cid, q->frag.index, fname));
		return -EBADMSG;
	}
	net_fref_encode(&ref, name);
	rc = blk_fragstore_put(s->store, name, q->frag_raw, q->data,
			       (uint32_t)q->len, &res);
	frag_name(&q->frag.cid, q->frag.index, fname);
	if (rc == -EEXIST) {
		refuse(s, slot, NET_REFUSED_OVERWRITE,
		       "%s: another fragment is stored under that name, "
		       "and stored fragments are immutable",
		       fname);
	} else if (rc == -ENOSPC) {
		struct blk_fragstore_usage u;

		blk_fragstore_usage(s->store, &u);
		refuse(s, slot, NET_REFUSED_FULL,
		       "%s: the node is full (%" PRIu64 " of %" PRIu64
		       " bytes used%s)",
		       fname, res.used, u.capacity,
		       res.disk_short ? ", its disk short of room" : "");
	} else if (rc == 0 && res.outcome == BLK_FRAG_REPLACED) {
		atomic_fetch_add(&s->repaired, 1);
	}
	return rc;
}

static int do_get(struct net_server *s, const struct net_req *q,
		  struct reply *r)
{
	uint8_t name[NET_FREF_LEN];
	struct ec_frag_hdr h;
	struct blk_val *v;
	const uint8_t *val;
	size_t vlen;
	int rc;

	/* The store skips RocksDB's own checksum: the fragment's XXH3
	 * checksum, checked here, covers the same bytes end to end. */
	net_fref_encode(&q->ref, name);
	rc = blk_fragstore_get(s->store, name, &v);
	if (rc < 0)
		return rc;
	val = blk_val_data(v, &vlen);
	rc = frag_check(&q->ref, val, vlen, &h);
	if (rc < 0) {
		blk_val_free(v);
		return rc;
	}
	if (FAULT_CORRUPT_GET(s)) {
		/* the pinned value may be shared: damage a copy */
		uint8_t *b = malloc(vlen);

		if (!b) {
			blk_val_free(v);
			return -ENOMEM;
		}
		memcpy(b, val, vlen);
		blk_val_free(v);
		if (s->fault_corrupt_get != NET_FAULT_LIE)
			b[EC_FRAG_HDR_LEN + (vlen - EC_FRAG_HDR_LEN) / 2] ^=
			    0x40;
		if (s->fault_corrupt_get == NET_FAULT_LIE && h.block_len > 1)
			h.block_len--;
		if (s->fault_corrupt_get != NET_FAULT_FLIP)
			ec_frag_hdr_seal(&h, b + EC_FRAG_HDR_LEN, b);
		r->own = b;
		val = b;
	} else {
		r->zc_val = v;
	}
	r->rep.frag_raw = val;
	r->rep.frag = h;
	r->rep.data = val + EC_FRAG_HDR_LEN;
	r->rep.len = vlen - EC_FRAG_HDR_LEN;
	return 0;
}

static int do_have(struct net_server *s, const struct net_req *q,
		   struct reply *r)
{
	uint8_t *map = calloc(1, net_bitmap_len(q->hdr.count));

	if (!map)
		return -ENOMEM;
	for (uint32_t i = 0; i < q->hdr.count; i++) {
		int rc = blk_fragstore_has(s->store,
					   q->refs + (size_t)i * NET_FREF_LEN);

		if (rc > 0) {
			net_bitmap_set(map, i);
		} else if (rc < 0) {
			free(map);
			return rc;
		}
	}
	r->own = map;
	r->rep.bitmap = map;
	r->rep.hdr.count = q->hdr.count;
	return 0;
}

int net_server_delete(struct net_server *s, const struct net_fref *refs,
		      uint32_t n, uint8_t *bitmap)
{
	uint8_t *packed;
	int rc;

	if (!s || !refs || !bitmap || n < 1 || n > NET_MAX_REFS)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (refs[i].index >= EC_MAX_FRAGS)
			return -EINVAL;
	packed = malloc((size_t)n * NET_FREF_LEN);
	if (!packed)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		net_fref_encode(&refs[i], packed + (size_t)i * NET_FREF_LEN);
	memset(bitmap, 0, net_bitmap_len(n));
	rc = blk_fragstore_delete(s->store, packed, n, bitmap);
	free(packed);
	return rc;
}

struct list_page {
	uint8_t *items;
	uint32_t n, limit;
	bool more;
};

/* blk_frag_scan_fn: one item of a LIST page; 1 once the page is full. */
static int list_item(void *arg, const uint8_t name[BLK_FRAG_NAME_LEN],
		     uint32_t len)
{
	struct list_page *pg = arg;
	uint8_t *out;

	if (pg->n == pg->limit) {
		pg->more = true;
		return 1;
	}
	if (name[NET_FREF_LEN - 1] >= EC_MAX_FRAGS)
		return 0; /* not ours; cannot go on the wire */
	out = pg->items + (size_t)pg->n * NET_LIST_ITEM_LEN;
	memcpy(out, name, NET_FREF_LEN);
	blk_put_le32(out + NET_FREF_LEN, len);
	pg->n++;
	return 0;
}

static int do_list(struct net_server *s, const struct net_req *q,
		   struct reply *r)
{
	struct list_page pg = {.limit = q->hdr.count};
	uint8_t cursor[NET_FREF_LEN];
	int rc;

	pg.items = malloc((size_t)q->hdr.count * NET_LIST_ITEM_LEN);
	if (!pg.items)
		return -ENOMEM;
	if (q->has_cursor)
		net_fref_encode(&q->ref, cursor);
	rc = blk_fragstore_scan(s->store, q->has_cursor ? cursor : NULL,
				list_item, &pg);
	if (rc < 0) {
		free(pg.items);
		return rc;
	}
	r->own = pg.items;
	r->rep.items = pg.items;
	r->rep.hdr.count = pg.n;
	r->rep.hdr.flags = pg.more ? NET_F_MORE : 0;
	return 0;
}

static int handle(struct net_server *s, const struct net_req *q,
		  struct reply *r, unsigned slot)
{
	switch (q->hdr.op) {
	case NET_OP_PING:
		r->rep.hdr.arg = q->hdr.arg;
		return 0;
	case NET_OP_PUT:
		return do_put(s, q, slot);
	case NET_OP_GET:
		return do_get(s, q, r);
	case NET_OP_HAVE:
		return do_have(s, q, r);
	case NET_OP_DELETE:
		/* Until GC knows what no retained head reaches, no peer may
		 * delete: one key would do to destroy every node's copies. */
		refuse(s, slot, NET_REFUSED_DELETE,
		       "%u fragments: deleting is the node's own maintenance",
		       q->hdr.count);
		return -EPERM;
	case NET_OP_LIST:
		return do_list(s, q, r);
	case NET_OP_STATUS:
		net_server_status(s, &r->rep.st);
		return 0;
	case NET_OP_SYNC:
		return blk_fragstore_sync(s->store);
	default:
		return -EOPNOTSUPP;
	}
}

/* See server.h. */
int net_server_exec(void *arg, const struct net_req *q, struct net_rep *rep,
		    void **hold)
{
	struct net_server *s = arg;
	struct reply *r = calloc(1, sizeof(*r));
	int rc;

	*hold = NULL;
	if (!r)
		return -ENOMEM;
	r->rep.hdr.op = q->hdr.op;
	r->rep.hdr.id = q->hdr.id;
	rc = handle(s, q, r, slot_local(s));
	r->rep.hdr.status = rc;
	*rep = r->rep;
	*hold = r;
	return rc;
}

void net_server_release(void *hold)
{
	struct reply *r = hold;

	if (!r)
		return;
	blk_val_free(r->zc_val);
	free(r->own);
	free(r);
}

/* ---- workers ---- */

static void free_value(void *data, void *hint)
{
	blk_val_free(hint);
}

/* Send @rid and @ticket, then the reply's frames; the GET bytes go
 * zero-copy. */
static void send_reply(void *sock, zmq_msg_t *rid, zmq_msg_t *ticket,
		       struct reply *r)
{
	uint8_t scratch[NET_ENC_SCRATCH];
	struct net_frame f[NET_MAX_FRAMES];
	int n = net_rep_encode(&r->rep, scratch, f);

	if (n < 0) { /* our bug: answer something the client can read */
		r->rep.hdr.status = -EIO;
		n = net_rep_encode(&r->rep, scratch, f);
	}
	if (zmq_msg_send(rid, sock, ZMQ_SNDMORE) < 0 ||
	    zmq_msg_send(ticket, sock, ZMQ_SNDMORE) < 0)
		return;
	for (int i = 0; i < n; i++) {
		int more = i + 1 < n ? ZMQ_SNDMORE : 0;

		if (r->zc_val && f[i].data == r->rep.data && i == 2) {
			zmq_msg_t m;

			/* ZeroMQ owns the value from here and frees it. */
			zmq_msg_init_data(&m, (void *)f[i].data, f[i].len,
					  free_value, r->zc_val);
			r->zc_val = NULL;
			if (zmq_msg_send(&m, sock, more) < 0)
				zmq_msg_close(&m);
		} else {
			zmq_send(sock, f[i].data, f[i].len, more);
		}
	}
}

static void *worker_main(void *arg)
{
	struct net_server *s = arg;
	void *sock = zmq_socket(s->ctx, ZMQ_DEALER);
	int zero = 0;

	if (!sock)
		return NULL;
	zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_connect(sock, s->backend_ep) < 0) {
		zmq_close(sock);
		return NULL;
	}
	while (!atomic_load(&s->stop)) {
		zmq_pollitem_t pi = {.socket = sock, .events = ZMQ_POLLIN};
		zmq_msg_t m[MAX_IN_FRAMES];
		struct net_frame f[MAX_IN_FRAMES];
		struct net_req q;
		struct reply r;
		size_t n;
		unsigned slot;
		bool too_many;
		int rc;

		if (zmq_poll(&pi, 1, POLL_MS) <= 0 ||
		    !(pi.revents & ZMQ_POLLIN))
			continue;
		/* The whole message: routing id, ticket, then ours. */
		net_zmsg_recv(sock, m, MAX_IN_FRAMES, 0, &n, &too_many);
		if (n < 2 || zmq_msg_size(&m[1]) != TICKET_LEN) {
			/* not from our proxy: cannot happen */
			net_zmsg_close(m, n);
			continue;
		}
		slot = blk_get_le32(zmq_msg_data(&m[1]));
		if (slot > slot_local(s))
			slot = slot_unknown(s);
		for (size_t i = 2; i < n; i++)
			f[i - 2] = (struct net_frame){zmq_msg_data(&m[i]),
						      zmq_msg_size(&m[i])};

		memset(&r, 0, sizeof(r));
		rc = net_req_decode(f, n - 2, &q);
		if (rc == 0 && too_many)
			rc = -EMSGSIZE;
		if (rc < 0)
			refuse(s, slot, NET_REFUSED_MALFORMED,
			       "%s (op %u, %zu frames)", strerror(-rc),
			       q.hdr.op, n - 2);
		r.rep.hdr.op = q.hdr.op;
		r.rep.hdr.id = q.hdr.id;
		if (rc == 0)
			rc = handle(s, &q, &r, slot);
		r.rep.hdr.status = rc;
		if (rc < 0) {
			blk_val_free(r.zc_val);
			r.zc_val = NULL;
		}
		send_reply(sock, &m[0], &m[1], &r);
		blk_val_free(r.zc_val);
		free(r.own);
		for (size_t i = 0; i < n; i++)
			zmq_msg_close(&m[i]);
	}
	zmq_close(sock);
	return NULL;
}

/* ---- ZAP (RFC 27) ---- */

/* The slot of @key among the allowed keys, or -1. */
static int key_slot(const struct net_server *s, const void *key)
{
	for (size_t i = 0; i < s->nallowed; i++)
		if (!memcmp(s->allowed[i], key, 32))
			return (int)i;
	return -1;
}

static void *zap_main(void *arg)
{
	struct net_server *s = arg;

	while (!atomic_load(&s->stop)) {
		zmq_pollitem_t pi = {.socket = s->zap, .events = ZMQ_POLLIN};
		zmq_msg_t m[8];
		size_t n;
		int slot = -1;
		bool curve;
		char uid[16] = "";

		if (zmq_poll(&pi, 1, POLL_MS) <= 0 ||
		    !(pi.revents & ZMQ_POLLIN))
			continue;
		net_zmsg_recv(s->zap, m, 8, 0, &n, NULL);
		/* version, request id, domain, address, identity, mechanism,
		 * credentials (CURVE: the client's 32-byte public key) */
		curve = n == 7 && zmq_msg_size(&m[0]) == 3 &&
			!memcmp(zmq_msg_data(&m[0]), "1.0", 3) &&
			zmq_msg_size(&m[5]) == 5 &&
			!memcmp(zmq_msg_data(&m[5]), "CURVE", 5) &&
			zmq_msg_size(&m[6]) == 32;
		if (curve)
			slot = key_slot(s, zmq_msg_data(&m[6]));
		if (slot >= 0) {
			/* Every frame from the connection names its peer
			 * (note 4). */
			snprintf(uid, sizeof(uid), "%d", slot);
		} else {
			char addr[64] = "?";
			size_t al = n >= 4 ? zmq_msg_size(&m[3]) : 0;

			if (al > 0 && al < sizeof(addr)) {
				memcpy(addr, zmq_msg_data(&m[3]), al);
				addr[al] = 0;
			}
			log_key(s, curve ? zmq_msg_data(&m[6]) : NULL,
				"the key is not in the cluster (from %s)",
				addr);
		}
		zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
		if (n >= 2)
			zmq_send(s->zap, zmq_msg_data(&m[1]),
				 zmq_msg_size(&m[1]), ZMQ_SNDMORE);
		else
			zmq_send(s->zap, "", 0, ZMQ_SNDMORE);
		zmq_send(s->zap, slot >= 0 ? "200" : "400", 3, ZMQ_SNDMORE);
		zmq_send(s->zap, slot >= 0 ? "OK" : "key not in the cluster",
			 slot >= 0 ? 2 : 22, ZMQ_SNDMORE);
		zmq_send(s->zap, uid, strlen(uid), ZMQ_SNDMORE); /* user id */
		zmq_send(s->zap, "", 0, 0);			 /* metadata */
		for (size_t i = 0; i < n; i++)
			zmq_msg_close(&m[i]);
	}
	return NULL;
}

/* ---- proxy (note 4) ---- */

/* The peer slot a frame from the ROUTER comes from. */
static unsigned frame_slot(const struct net_server *s, zmq_msg_t *m)
{
	const char *uid = zmq_msg_gets(m, "User-Id");
	char *end;
	unsigned long v;

	if (!uid || !*uid)
		return slot_unknown(s);
	v = strtoul(uid, &end, 10);
	return *end || v >= s->nallowed ? slot_unknown(s) : (unsigned)v;
}

/* Answer the request whose header frame is @hdr (NULL: none readable)
 * with @status alone. */
static void proxy_answer(struct net_server *s, zmq_msg_t *rid, zmq_msg_t *hdr,
			 int status)
{
	struct net_hdr h = {0};
	uint8_t out[NET_HDR_LEN];

	if (hdr)
		net_hdr_decode(zmq_msg_data(hdr), zmq_msg_size(hdr), &h);
	h = (struct net_hdr){
	    .op = h.op, .id = h.id, .status = status, .flags = NET_F_REPLY};
	net_hdr_encode(&h, out);
	/* ROUTER drops what it cannot route or queue: never blocks. */
	if (zmq_msg_send(rid, s->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		return;
	zmq_send(s->router, out, sizeof(out), ZMQ_DONTWAIT);
}

static void set_held(struct net_server *s, uint64_t held)
{
	s->held = held;
	atomic_store(&s->held_pub, held);
	if (held > atomic_load(&s->held_peak))
		atomic_store(&s->held_peak, held);
}

/* Take one request off the ROUTER and admit, refuse or answer it. false
 * when there was none. */
static bool proxy_request(struct net_server *s)
{
	zmq_msg_t rid, f[NET_MAX_FRAMES];
	size_t n = 0, frames = 0;
	uint64_t bytes = 0;
	unsigned slot = slot_unknown(s);
	bool too_big = false, busy;
	struct peer *p;
	uint8_t ticket[TICKET_LEN];
	int more;

	zmq_msg_init(&rid);
	if (zmq_msg_recv(&rid, s->router, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&rid);
		return false;
	}
	more = zmq_msg_more(&rid);
	while (more) {
		zmq_msg_t m;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s->router, 0) < 0) {
			zmq_msg_close(&m);
			break;
		}
		more = zmq_msg_more(&m);
		if (frames == 0)
			slot = frame_slot(s, &m);
		frames++;
		bytes += zmq_msg_size(&m);
		if (!too_big &&
		    (frames > NET_MAX_FRAMES || bytes > NET_MAX_MSG_BYTES)) {
			/* Keep the header frame, for the reply's id. */
			too_big = true;
			for (size_t i = 1; i < n; i++)
				zmq_msg_close(&f[i]);
			n = n ? 1 : 0;
		}
		if (!too_big ||
		    (frames == 1 && zmq_msg_size(&m) == NET_HDR_LEN))
			f[n++] = m;
		else
			zmq_msg_close(&m);
	}
	p = &s->peers[slot];
	if (frames == 0) {
		zmq_msg_close(&rid);
		return true;
	}
	if (too_big) {
		refuse(s, slot, NET_REFUSED_TOO_BIG,
		       "%zu frames, %" PRIu64 " bytes (the most is %d frames, "
		       "%" PRIu64 " bytes)",
		       frames, bytes, NET_MAX_FRAMES, NET_MAX_MSG_BYTES);
		proxy_answer(s, &rid, n ? &f[0] : NULL, -EMSGSIZE);
		goto drop;
	}
	busy = p->reqs >= s->peer_max_reqs ||
	       (p->reqs && p->bytes + bytes > s->peer_max_bytes) ||
	       (s->held && s->held + bytes > s->max_bytes);
	if (busy) {
		refuse(s, slot, NET_REFUSED_BUSY,
		       "busy: %u requests, %" PRIu64 " bytes in flight from "
		       "it, %" PRIu64 " from all",
		       p->reqs, p->bytes, s->held);
		proxy_answer(s, &rid, &f[0], -EBUSY);
		goto drop;
	}
	blk_put_le32(ticket, slot);
	blk_put_le64(ticket + 4, bytes);
	/* The backend has no high-water mark: what it holds is bounded by
	 * the admission above, and the proxy must not block on it. */
	if (zmq_msg_send(&rid, s->backend, ZMQ_SNDMORE) < 0 ||
	    zmq_send(s->backend, ticket, sizeof(ticket), ZMQ_SNDMORE) < 0)
		goto drop; /* only when the context is going away */
	for (size_t i = 0; i < n; i++)
		if (zmq_msg_send(&f[i], s->backend,
				 i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
			zmq_msg_close(&f[i]);
	zmq_msg_close(&rid);
	p->reqs++;
	p->bytes += bytes;
	set_held(s, s->held + bytes);
	return true;

drop:
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&f[i]);
	zmq_msg_close(&rid);
	return true;
}

/* Pass one worker reply on to the ROUTER, settling its ticket. false when
 * there was none. */
static bool proxy_reply(struct net_server *s)
{
	zmq_msg_t m;
	int more, i = 0;

	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, s->backend, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&m);
		return false;
	}
	for (;;) {
		more = zmq_msg_more(&m);
		if (i == 1) {
			if (zmq_msg_size(&m) == TICKET_LEN) {
				const uint8_t *t = zmq_msg_data(&m);
				uint32_t slot = blk_get_le32(t);
				uint64_t bytes = blk_get_le64(t + 4);

				if (slot < s->nallowed + 1) {
					s->peers[slot].reqs--;
					s->peers[slot].bytes -= bytes;
					set_held(s, s->held - bytes);
				}
			}
			zmq_msg_close(&m);
		} else if (zmq_msg_send(&m, s->router,
					(more ? ZMQ_SNDMORE : 0) |
					    ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
		}
		if (!more)
			break;
		i++;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s->backend, 0) < 0) {
			zmq_msg_close(&m);
			break;
		}
	}
	return true;
}

static void *proxy_main(void *arg)
{
	struct net_server *s = arg;

	for (;;) {
		zmq_pollitem_t pi[3] = {
		    {.socket = s->ctl_in, .events = ZMQ_POLLIN},
		    {.socket = s->backend, .events = ZMQ_POLLIN},
		    {.socket = s->router, .events = ZMQ_POLLIN},
		};

		if (zmq_poll(pi, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break; /* context terminated */
		}
		if (pi[0].revents & ZMQ_POLLIN)
			break; /* TERMINATE */
		/* Replies first: they free room for requests. */
		for (int i = 0; i < PROXY_BATCH && proxy_reply(s); i++)
			;
		for (int i = 0; i < PROXY_BATCH && proxy_request(s); i++)
			;
	}
	return NULL;
}

/* ---- lifecycle ---- */

static int zerr(void)
{
	return errno ? -errno : -EIO;
}

static int open_store(struct net_server *s, const struct net_server_config *cfg)
{
	struct blk_fragstore_options o = {
	    .cf = cfg->cf,
	    .head_len = EC_FRAG_HDR_LEN,
	    .capacity = cfg->capacity,
	    .data_dir = cfg->data_dir,
	    .disk_reserve = cfg->disk_reserve ? cfg->disk_reserve
					      : NET_SERVER_DEFAULT_DISK_RESERVE,
	    .check = stored_check,
	};

	return blk_fragstore_open(cfg->db, &o, &s->store);
}

int net_server_new(const struct net_server_config *cfg, struct net_server **out)
{
	struct net_server *s;
	int zero = 0, one = 1, hwm = 10000, rc;
	int64_t maxmsg = NET_MAX_FRAME_BYTES;
	size_t len;

	*out = NULL;
	if (!cfg || !cfg->endpoint || !cfg->db || cfg->cf < BLK_CF_USER ||
	    !net_key_valid(cfg->public_key) ||
	    !net_key_valid(cfg->secret_key) ||
	    (cfg->nallowed && !cfg->allowed_keys) ||
	    cfg->workers > NET_SERVER_MAX_WORKERS)
		return -EINVAL;
#ifndef BFS_FAULT_INJECTION
	if (cfg->fault_corrupt_get)
		return -EOPNOTSUPP; /* not compiled in */
#endif
	for (size_t i = 0; i < cfg->nallowed; i++)
		if (!net_key_valid(cfg->allowed_keys[i]))
			return -EINVAL;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->log_mu, NULL);
	atomic_init(&s->stop, false);
	for (unsigned i = 0; i < NET_REFUSED_KINDS; i++)
		atomic_init(&s->refused[i], 0);
	atomic_init(&s->repaired, 0);
	atomic_init(&s->held_pub, 0);
	atomic_init(&s->held_peak, 0);
	s->peer_max_reqs = cfg->peer_max_requests
			       ? cfg->peer_max_requests
			       : NET_SERVER_DEFAULT_PEER_REQUESTS;
	s->peer_max_bytes = cfg->peer_max_bytes ? cfg->peer_max_bytes
						: NET_SERVER_DEFAULT_PEER_BYTES;
	s->max_bytes =
	    cfg->max_bytes ? cfg->max_bytes : NET_SERVER_DEFAULT_MAX_BYTES;
	s->log = cfg->log;
	s->log_arg = cfg->log_arg;
	s->log_interval_ms = cfg->log_interval_ms
				 ? cfg->log_interval_ms
				 : NET_SERVER_DEFAULT_LOG_INTERVAL_MS;
#ifdef BFS_FAULT_INJECTION
	s->fault_corrupt_get = cfg->fault_corrupt_get;
	const char *env = getenv("BLOCKFS_FAULT_CORRUPT_GET");
	if (env && (!strcmp(env, "1") || !strcmp(env, "flip")))
		s->fault_corrupt_get = NET_FAULT_FLIP;
	else if (env && !strcmp(env, "forge"))
		s->fault_corrupt_get = NET_FAULT_FORGE;
	else if (env && !strcmp(env, "lie"))
		s->fault_corrupt_get = NET_FAULT_LIE;
#endif
	s->nworkers = cfg->workers ? cfg->workers : NET_SERVER_DEFAULT_WORKERS;
	s->nallowed = cfg->nallowed;
	s->allowed = calloc(cfg->nallowed ? cfg->nallowed : 1, 32);
	s->workers = calloc(s->nworkers, sizeof(*s->workers));
	s->peers = calloc(cfg->nallowed + 2, sizeof(*s->peers));
	if (!s->allowed || !s->workers || !s->peers) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < cfg->nallowed; i++) {
		const char *name =
		    cfg->allowed_names ? cfg->allowed_names[i] : NULL;

		zmq_z85_decode(s->allowed[i], cfg->allowed_keys[i]);
		if (name)
			snprintf(s->peers[i].name, sizeof(s->peers[i].name),
				 "node %s", name);
		else
			snprintf(s->peers[i].name, sizeof(s->peers[i].name),
				 "key %.40s", cfg->allowed_keys[i]);
	}
	snprintf(s->peers[slot_unknown(s)].name, sizeof(s->peers[0].name),
		 "a peer without a user id");
	snprintf(s->peers[slot_local(s)].name, sizeof(s->peers[0].name),
		 "the local client");

	rc = open_store(s, cfg);
	if (rc < 0)
		goto fail;

	s->ctx = cfg->zmq_ctx;
	if (!s->ctx) {
		s->ctx = net_ctx_new();
		s->own_ctx = true;
		if (!s->ctx) {
			rc = zerr();
			goto fail;
		}
	}
	snprintf(s->backend_ep, sizeof(s->backend_ep),
		 "inproc://blockfs-server-backend-%p", (void *)s);
	snprintf(s->ctl_ep, sizeof(s->ctl_ep), "inproc://blockfs-server-ctl-%p",
		 (void *)s);

	/* ZAP first: a CURVE server with no handler would admit anyone. */
	s->zap = zmq_socket(s->ctx, ZMQ_REP);
	if (!s->zap) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(s->zap, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_bind(s->zap, "inproc://zeromq.zap.01") < 0) {
		rc = zerr();
		goto fail;
	}
	if (pthread_create(&s->zap_thread, NULL, zap_main, s) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	s->zap_started = true;

	s->backend = zmq_socket(s->ctx, ZMQ_DEALER);
	if (!s->backend) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(s->backend, ZMQ_LINGER, &zero, sizeof(zero));
	/* Unbounded here: the proxy's admission bounds it (note 4). */
	zmq_setsockopt(s->backend, ZMQ_SNDHWM, &zero, sizeof(zero));
	zmq_setsockopt(s->backend, ZMQ_RCVHWM, &zero, sizeof(zero));
	if (zmq_bind(s->backend, s->backend_ep) < 0) {
		rc = zerr();
		goto fail;
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
			s->nworkers = i;
			rc = -EAGAIN;
			goto fail;
		}
	}

	s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
	if (!s->router) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(s->router, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s->router, ZMQ_CURVE_SERVER, &one, sizeof(one));
	zmq_setsockopt(s->router, ZMQ_CURVE_SECRETKEY, cfg->secret_key,
		       NET_KEY_Z85_LEN);
	zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, "blockfs", 7);
	zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	zmq_setsockopt(s->router, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(s->router, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	if (zmq_bind(s->router, cfg->endpoint) < 0) {
		rc = zerr();
		goto fail;
	}
	len = sizeof(s->endpoint);
	if (zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, s->endpoint, &len) < 0)
		snprintf(s->endpoint, sizeof(s->endpoint), "%s", cfg->endpoint);

	s->ctl_in = zmq_socket(s->ctx, ZMQ_PAIR);
	s->ctl_out = zmq_socket(s->ctx, ZMQ_PAIR);
	if (!s->ctl_in || !s->ctl_out || zmq_bind(s->ctl_in, s->ctl_ep) < 0 ||
	    zmq_connect(s->ctl_out, s->ctl_ep) < 0) {
		rc = zerr();
		goto fail;
	}
	zmq_setsockopt(s->ctl_in, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s->ctl_out, ZMQ_LINGER, &zero, sizeof(zero));
	if (pthread_create(&s->proxy_thread, NULL, proxy_main, s) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	s->proxy_started = true;
	*out = s;
	return 0;

fail:
	net_server_free(s);
	return rc;
}

void net_server_free(struct net_server *s)
{
	if (!s)
		return;
	if (s->proxy_started) {
		zmq_send(s->ctl_out, "TERMINATE", 9, 0);
		pthread_join(s->proxy_thread, NULL);
	}
	atomic_store(&s->stop, true);
	for (unsigned i = 0; i < s->nworkers; i++)
		if (s->workers && s->workers[i])
			pthread_join(s->workers[i], NULL);
	if (s->zap_started)
		pthread_join(s->zap_thread, NULL);
	if (s->router) {
		/* Give the port back now, not when the context is reaped. */
		zmq_unbind(s->router, s->endpoint);
		zmq_close(s->router);
	}
	if (s->backend)
		zmq_close(s->backend);
	if (s->ctl_in)
		zmq_close(s->ctl_in);
	if (s->ctl_out)
		zmq_close(s->ctl_out);
	if (s->zap)
		zmq_close(s->zap);
	if (s->own_ctx && s->ctx)
		zmq_ctx_term(s->ctx);
	blk_fragstore_close(s->store);
	pthread_mutex_destroy(&s->log_mu);
	free(s->peers);
	free(s->allowed);
	free(s->workers);
	free(s);
}
