/* The storage-node server: the request handlers over the node's fragment
 * store and the pool of workers that run them, wired to the front end
 * (net/server/proxy.h), the ZAP handler (net/server/zap.h) and the refusal log
 * (net/server/refusals.h); see server.h for the contract. */

/*
 * Design notes.
 *
 *  1. Threads. The proxy thread owns the ROUTER and hands admitted
 *     requests to the workers (net/server/proxy.h: tickets, admission). Each
 *     worker owns one DEALER connected to the proxy's backend; it decodes,
 *     executes and answers one request at a time. The ZAP thread owns its
 *     REP socket. Workers poll with a short timeout and leave when s->stop
 *     is set. Order of teardown: the proxy thread, the workers, the
 *     proxy's sockets, the ZAP handler, the store.
 *
 *  2. Fragments live in a blk_fragstore (blocks/store/fragstore.h), which keeps
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
 *  4. No lock of the server's own: what the workers share is set before
 *     they start and read-only after, or an atomic (stop, repaired), or an
 *     object with its own lock (the store, the refusal log). No worker
 *     holds a lock while it sends.
 */
#include "net/server/server.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "blocks/base/bytes.h"
#include "blocks/base/log.h"
#include "blocks/store/fragstore.h"
#include "net/server/heads.h"
#include "net/server/proxy.h"
#include "net/server/refusals.h"
#include "net/server/zap.h"
#include "net/wire/keys.h"
#include "net/wire/zmsg.h"

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

struct net_server {
	/* Set by net_server_new before any thread starts, read-only after. */
	void *ctx;
	bool own_ctx;
	size_t nallowed;
	unsigned fault_corrupt_get;    /* enum net_fault */
	struct blk_fragstore *store;   /* its own lock */
	struct net_heads *heads;       /* its own lock; NULL: none */
	struct net_refusals *refusals; /* its own lock */
	struct net_zap *zap;	       /* its own thread */
	struct net_proxy *proxy;       /* its own thread */
	pthread_t *workers;
	unsigned nworkers;

	void (*log)(void *arg, const char *msg); /* may be NULL */
	void *log_arg;

	atomic_bool stop;	       /* lock-free: workers leave */
	atomic_uint_fast64_t repaired; /* lock-free */
	atomic_bool damaged_said;      /* lock-free: the log said so */
	atomic_bool no_fs_said;	       /* lock-free: no [filesystem], said */
};

static unsigned slot_unknown(const struct net_server *s)
{
	return NET_REFUSALS_SLOT_UNKNOWN(s->nallowed);
}

static unsigned slot_local(const struct net_server *s)
{
	return NET_REFUSALS_SLOT_LOCAL(s->nallowed);
}

void net_server_counters(struct net_server *s, struct net_server_counters *c)
{
	for (unsigned i = 0; i < NET_REFUSED_KINDS; i++)
		c->refused[i] = net_refusals_count(s->refusals, i);
	c->repaired = atomic_load(&s->repaired);
	net_proxy_held(s->proxy, &c->held_bytes, &c->held_bytes_peak);
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
	return net_proxy_endpoint(s->proxy);
}

void net_server_status(struct net_server *s, struct net_status *st)
{
	struct blk_fragstore_usage u;

	blk_fragstore_usage(s->store, &u);
	st->capacity = u.capacity;
	st->used = u.used;
	st->fragments = u.count;
	st->lost = u.lost;
	st->full = u.full;
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
		net_refusals_peer(
		    s->refusals, slot, NET_REFUSED_PUT,
		    "%s: the bytes do not match their checksum",
		    frag_name(&q->frag.cid, q->frag.index, fname));
		return -EBADMSG;
	}
	/* A whole copy is the block: it must be the block its CID names. */
	if (q->frag.k == 1 && !blk_cid_verify(&q->frag.cid, q->data, q->len)) {
		net_refusals_peer(
		    s->refusals, slot, NET_REFUSED_PUT,
		    "%s: a whole copy whose bytes are not its CID's",
		    frag_name(&q->frag.cid, q->frag.index, fname));
		return -EBADMSG;
	}
	net_fref_encode(&ref, name);
	rc = blk_fragstore_put(s->store, name, q->frag_raw, q->data,
			       (uint32_t)q->len, &res);
	frag_name(&q->frag.cid, q->frag.index, fname);
	if (rc == -EEXIST) {
		net_refusals_peer(
		    s->refusals, slot, NET_REFUSED_OVERWRITE,
		    "%s: another fragment is stored under that name, "
		    "and stored fragments are immutable",
		    fname);
	} else if (rc == -ENOSPC) {
		struct blk_fragstore_usage u;

		blk_fragstore_usage(s->store, &u);
		net_refusals_peer(s->refusals, slot, NET_REFUSED_FULL,
				  "%s: the node is full (%" PRIu64
				  " of %" PRIu64 " bytes used%s)",
				  fname, res.used, u.capacity,
				  res.disk_short ? ", its disk short of room"
						 : "");
	} else if (rc == 0 && res.outcome == BLK_FRAG_REPLACED) {
		atomic_fetch_add(&s->repaired, 1);
	} else if (rc == -EIO && blk_fragstore_damaged(s->store) &&
		   !atomic_exchange(&s->damaged_said, true)) {
		/* RocksDB stops writes for good after a background error
		 * such as a damaged table file met by a compaction: every
		 * put fails from then on, and the mount sends the fragments
		 * elsewhere. Said once, loudly. */
		static const char msg[] =
		    "this node's database is damaged: it stopped taking "
		    "fragments after a background error (its db/LOG names "
		    "the file); it still serves what it holds. Stop the "
		    "node, move its db directory aside and start it again: "
		    "it starts empty, and the mounts upload what it held "
		    "again";
		if (s->log)
			s->log(s->log_arg, msg);
		else
			blk_log_err("%s", msg);
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

static int do_head_get(struct net_server *s, const struct net_req *q,
		       struct reply *r)
{
	uint8_t *buf;
	size_t len;
	int rc;

	if (!s->heads)
		return -EOPNOTSUPP;
	buf = malloc(NET_HEAD_MAX_BYTES);
	if (!buf)
		return -ENOMEM;
	rc = net_heads_get(s->heads, q->fsid, q->hdr.arg, buf, &len);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	r->own = buf;
	r->rep.data = buf;
	r->rep.len = len;
	return 0;
}

static int do_head_cas(struct net_server *s, const struct net_req *q,
		       unsigned slot)
{
	char why[256];
	int rc;

	if (!s->heads)
		return -EOPNOTSUPP;
	rc = net_heads_cas(s->heads, q->hdr.arg, q->data, q->len, why,
			   sizeof(why));
	if (rc == -EOPNOTSUPP) {
		if (!atomic_exchange(&s->no_fs_said, true)) {
			static const char msg[] =
			    "this node accepts no heads: its cluster file has "
			    "no [filesystem] section (a cluster made before "
			    "heads); HEAD_CAS is answered -EOPNOTSUPP";
			if (s->log)
				s->log(s->log_arg, msg);
			else
				blk_log_warn("%s", msg);
		}
	} else if (rc == -EBADMSG || rc == -ENOENT || rc == -ESTALE ||
		   rc == -EINVAL || rc == -EACCES) {
		net_refusals_peer(s->refusals, slot, NET_REFUSED_HEAD, "%s",
				  why);
	} else if (rc < 0) {
		char msg[300];

		snprintf(msg, sizeof(msg), "node: head: %s", why);
		if (s->log)
			s->log(s->log_arg, msg);
		else
			blk_log_err("%s", msg);
	}
	return rc;
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
		net_refusals_peer(
		    s->refusals, slot, NET_REFUSED_DELETE,
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
	case NET_OP_HEAD_GET:
		return do_head_get(s, q, r);
	case NET_OP_HEAD_CAS:
		return do_head_cas(s, q, slot);
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

/* Execute one message from the proxy (@n frames in @m: routing id,
 * ticket, then the request) and answer it. */
static void worker_serve(struct net_server *s, void *sock, zmq_msg_t *m,
			 size_t n, bool too_many)
{
	struct net_frame f[MAX_IN_FRAMES];
	struct net_req q;
	struct reply r;
	unsigned slot;
	int rc;

	slot = net_proxy_ticket_slot(zmq_msg_data(&m[1]));
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
		net_refusals_peer(s->refusals, slot, NET_REFUSED_MALFORMED,
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
}

static void *worker_main(void *arg)
{
	struct net_server *s = arg;
	void *sock = zmq_socket(s->ctx, ZMQ_DEALER);
	int zero = 0;

	if (!sock)
		return NULL;
	zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_connect(sock, net_proxy_backend(s->proxy)) < 0) {
		zmq_close(sock);
		return NULL;
	}
	while (!atomic_load(&s->stop)) {
		zmq_pollitem_t pi = {.socket = sock, .events = ZMQ_POLLIN};
		zmq_msg_t m[MAX_IN_FRAMES];
		size_t n;
		bool too_many;

		if (zmq_poll(&pi, 1, POLL_MS) <= 0 ||
		    !(pi.revents & ZMQ_POLLIN))
			continue;
		/* The whole message: routing id, ticket, then ours. */
		net_zmsg_recv(sock, m, MAX_IN_FRAMES, 0, &n, &too_many);
		if (n >= 2 && zmq_msg_size(&m[1]) == NET_PROXY_TICKET_LEN)
			worker_serve(s, sock, m, n, too_many);
		/* else not from our proxy: cannot happen */
		net_zmsg_close(m, n);
	}
	zmq_close(sock);
	return NULL;
}

/* ---- lifecycle ---- */

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

static int check_config(const struct net_server_config *cfg)
{
	if (!cfg || !cfg->endpoint || !cfg->db ||
	    !blk_db_cf_open(cfg->db, cfg->cf) ||
	    !net_key_valid(cfg->public_key) ||
	    !net_key_valid(cfg->secret_key) ||
	    (cfg->has_heads && !blk_db_cf_open(cfg->db, cfg->heads_cf)) ||
	    !cfg->fs_id != !cfg->fs_public_key ||
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
	return 0;
}

/* The GET fault of @cfg (compiled in with fault injection only). */
static void set_fault(struct net_server *s, const struct net_server_config *cfg)
{
#ifdef BFS_FAULT_INJECTION
	s->fault_corrupt_get = cfg->fault_corrupt_get;
#else
	(void)s;
	(void)cfg;
#endif
}

unsigned net_fault_parse(const char *name)
{
	if (!name)
		return NET_FAULT_NONE;
	if (!strcmp(name, "1") || !strcmp(name, "flip"))
		return NET_FAULT_FLIP;
	if (!strcmp(name, "forge"))
		return NET_FAULT_FORGE;
	if (!strcmp(name, "lie"))
		return NET_FAULT_LIE;
	return NET_FAULT_NONE;
}

/* The ZAP handler first (a CURVE server with no handler would admit
 * anyone), then the backend, the workers on it, and the ROUTER. */
static int start_serving(struct net_server *s,
			 const struct net_server_config *cfg)
{
	struct net_proxy_config pc = {
	    .nallowed = cfg->nallowed,
	    .peer_max_reqs = cfg->peer_max_requests
				 ? cfg->peer_max_requests
				 : NET_SERVER_DEFAULT_PEER_REQUESTS,
	    .peer_max_bytes = cfg->peer_max_bytes
				  ? cfg->peer_max_bytes
				  : NET_SERVER_DEFAULT_PEER_BYTES,
	    .max_bytes =
		cfg->max_bytes ? cfg->max_bytes : NET_SERVER_DEFAULT_MAX_BYTES,
	    .refusals = s->refusals,
	};
	int rc;

	s->ctx = cfg->zmq_ctx;
	if (!s->ctx) {
		s->ctx = net_ctx_new();
		s->own_ctx = true;
		if (!s->ctx)
			return errno ? -errno : -EIO;
	}
	pc.ctx = s->ctx;
	rc = net_zap_new(s->ctx, cfg->allowed_keys, cfg->nallowed, s->refusals,
			 &s->zap);
	if (rc < 0)
		return rc;
	rc = net_proxy_new(&pc, &s->proxy);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < s->nworkers; i++) {
		if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
			s->nworkers = i;
			return -EAGAIN;
		}
	}
	return net_proxy_start(s->proxy, cfg->endpoint, cfg->secret_key);
}

int net_server_new(const struct net_server_config *cfg, struct net_server **out)
{
	struct net_server *s;
	int rc;

	*out = NULL;
	rc = check_config(cfg);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	atomic_init(&s->stop, false);
	atomic_init(&s->repaired, 0);
	atomic_init(&s->damaged_said, false);
	atomic_init(&s->no_fs_said, false);
	s->log = cfg->log;
	s->log_arg = cfg->log_arg;
	set_fault(s, cfg);
	s->nallowed = cfg->nallowed;
	s->nworkers = cfg->workers ? cfg->workers : NET_SERVER_DEFAULT_WORKERS;
	s->workers = calloc(s->nworkers, sizeof(*s->workers));
	rc = s->workers ? 0 : -ENOMEM;
	if (rc == 0)
		rc = net_refusals_new(cfg->allowed_keys, cfg->allowed_names,
				      cfg->nallowed, cfg->log, cfg->log_arg,
				      cfg->log_interval_ms
					  ? cfg->log_interval_ms
					  : NET_SERVER_DEFAULT_LOG_INTERVAL_MS,
				      &s->refusals);
	if (rc == 0)
		rc = open_store(s, cfg);
	if (rc == 0 && cfg->has_heads)
		rc = net_heads_open(cfg->db, cfg->heads_cf, cfg->fs_id,
				    cfg->fs_public_key, &s->heads);
	if (rc == 0)
		rc = start_serving(s, cfg);
	if (rc < 0) {
		net_server_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void net_server_free(struct net_server *s)
{
	if (!s)
		return;
	net_proxy_stop(s->proxy);
	atomic_store(&s->stop, true);
	for (unsigned i = 0; i < s->nworkers; i++)
		if (s->workers && s->workers[i])
			pthread_join(s->workers[i], NULL);
	net_proxy_free(s->proxy);
	net_zap_free(s->zap);
	if (s->own_ctx && s->ctx)
		zmq_ctx_term(s->ctx);
	blk_fragstore_close(s->store);
	net_heads_close(s->heads);
	net_refusals_free(s->refusals);
	free(s->workers);
	free(s);
}
