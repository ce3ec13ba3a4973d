/* The blockfs wire protocol between a client (DEALER) and a storage node
 * (ROUTER): pure encoding and decoding of the frames of one message, with
 * every length checked. Nothing here touches a socket.
 *
 * Messages are multipart ZeroMQ messages: one fixed 32-byte header frame,
 * then the op's payload frames. All integers are little-endian.
 *
 * Header frame (NET_HDR_LEN = 32 bytes):
 *   off len field
 *     0   4 magic "BFNP"
 *     4   1 version (NET_PROTO_VERSION = 1)
 *     5   1 op (NET_OP_*)
 *     6   2 flags: bit 0 NET_F_REPLY (set in replies, clear in requests),
 *               bit 1 NET_F_MORE (LIST reply: more items may follow);
 *               other bits are zero (readers reject them)
 *     8   8 request id, chosen by the client, echoed by the server
 *    16   4 status: i32, 0 in requests; 0 or -errno in replies
 *    20   4 count: number of items (HAVE, DELETE, LIST; see below), else 0
 *    24   8 arg: PING: opaque value echoed in the reply; HEAD_GET and
 *               HEAD_CAS requests: a sequence number (below); else 0
 *
 * A fragment reference ("fref", NET_FREF_LEN = 37 bytes) names one
 * fragment: u32 CID type word (blk_cid_type: multicodec in bits 0-15, hash
 * function in bits 16-31, 0 there for blake2b-256), the 32-byte digest of
 * the block, u8 fragment index (< EC_MAX_FRAGS). Together with the index this
 * is the fixed-size form of a CID, as the fragment header itself stores it.
 *
 * Frames after the header, per op (request | reply when status == 0):
 *   PING    -                                | -
 *   PUT     64-byte fragment header, bytes   | -
 *   GET     fref                             | 64-byte fragment header, bytes
 *   HAVE    count frefs (count * 37 bytes)   | bitmap (ceil(count/8) bytes,
 *                                              bit i = byte i/8, 1 << i%8)
 *   DELETE  count frefs                      | bitmap: 1 = was there, deleted
 *   LIST    cursor: empty (from the start)   | count items of 41 bytes:
 *           or an fref (list after it);        fref + u32 frag_len, in key
 *           count = the most items wanted      order; NET_F_MORE if more may
 *                                              follow (next cursor: the
 *                                              last item's fref)
 *   STATUS  -                                | 40-byte struct: capacity,
 *                                              used bytes, fragments, flags
 *                                              (bit 0: full), lost fragments
 *                                              (u64s; nodes before lost was
 *                                              added send the first four)
 *   SYNC    -                                | -
 *   HEAD_GET fsid (NET_FSID_LEN = 16 bytes); | the head record (1..
 *              arg: the seq wanted (0: the     NET_HEAD_MAX_BYTES bytes)
 *              latest)
 *   HEAD_CAS the new head record (1..        | -
 *              NET_HEAD_MAX_BYTES bytes); arg:
 *              the seq the writer believes
 *              current (0: none yet)
 * A reply with status != 0 is the header frame alone.
 *
 * Limits: a batch (HAVE, DELETE) holds 1..NET_MAX_REFS frefs, a LIST asks
 * for 1..NET_MAX_LIST items; PUT/GET bytes are 1..EC_MAX_BLOCK and must
 * match the fragment header's frag_len. A head record (blocks/dag/head.h:
 * a signed DAG-CBOR map) is opaque here: only its length is checked.
 *
 * Decoding errors, so the server can answer with a meaningful status:
 *   -EPROTO      not our protocol: short or long header frame, bad magic,
 *                unknown version, unknown flags, a reply where a request
 *                belongs (or the other way round)
 *   -EOPNOTSUPP  an op number that is reserved or unknown
 *   -EINVAL      wrong number of frames, a field out of range (fragment
 *                header, fref index, non-zero reserved field)
 *   -EMSGSIZE    a payload frame of the wrong length, counts over the limits
 *                (the node also answers it to a message of more than
 *                NET_MAX_FRAMES frames or NET_MAX_MSG_BYTES bytes)
 *
 * Statuses a node answers besides those (net/server/server.h): -EBADMSG (bytes
 * that fail their checksum or CID), -EEXIST (other bytes are stored under
 * that fragment reference), -EPERM (DELETE from a peer), -ENOSPC (no room:
 * put it elsewhere), -EBUSY (too much in flight from this peer: send it
 * again later), -ENOENT (GET of a fragment not held; HEAD_GET of a head not
 * held). HEAD_CAS is answered 0 (stored, synced) or refused with -EBADMSG
 * (malformed, unsigned or forged), -ENOENT (another filesystem), -ESTALE
 * (arg is not the node's current seq, or the seq does not follow it),
 * -EINVAL (its parent is not the current head), -EACCES (another writer's
 * lease holds), -EOPNOTSUPP (the node knows no filesystem).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"
#include "ec/fragment.h"

#define NET_PROTO_VERSION 1
#define NET_HDR_LEN 32
#define NET_FREF_LEN 37
#define NET_LIST_ITEM_LEN 41
#define NET_STATUS_LEN 40
#define NET_STATUS_LEN_V1 32 /* without the lost count */
#define NET_MAX_REFS 65536   /* frefs in one HAVE or DELETE */
#define NET_MAX_LIST 8192    /* items in one LIST page */
#define NET_MAX_FRAMES 4     /* header included, in any valid message */
#define NET_FSID_LEN 16	     /* a filesystem id */
/* The largest head record (blocks/dag/head.h's BLK_HEAD_MAX_BYTES). */
#define NET_HEAD_MAX_BYTES 1024
/* Bytes of the largest valid message, all frames together: a PUT or GET of
 * a fragment of EC_MAX_BLOCK bytes. */
#define NET_MAX_MSG_BYTES                                                      \
	((uint64_t)NET_HDR_LEN + EC_FRAG_HDR_LEN + EC_MAX_BLOCK)
/* Bytes of the largest valid frame: fragment bytes. */
#define NET_MAX_FRAME_BYTES ((int64_t)EC_MAX_BLOCK)

enum net_op_code {
	NET_OP_PING = 1,
	NET_OP_PUT = 2,
	NET_OP_GET = 3,
	NET_OP_HAVE = 4,
	NET_OP_DELETE = 5,
	NET_OP_LIST = 6,
	NET_OP_STATUS = 7,
	NET_OP_SYNC = 8,
	NET_OP_HEAD_GET = 9,
	NET_OP_HEAD_CAS = 10,
	NET_OP_MAX = NET_OP_HEAD_CAS,
};

enum {
	NET_F_REPLY = 1u << 0,
	NET_F_MORE = 1u << 1,
	NET_F_ALL = NET_F_REPLY | NET_F_MORE,
};

struct net_hdr {
	uint8_t op;
	uint16_t flags;
	uint64_t id;
	int32_t status;
	uint32_t count;
	uint64_t arg;
};

/* Fragment reference: which fragment of which block. */
struct net_fref {
	struct blk_cid cid;
	uint8_t index;
};

struct net_list_item {
	struct net_fref ref;
	uint32_t frag_len;
};

#define NET_STATUS_FULL 1u

struct net_status {
	uint64_t capacity;  /* bytes the node accepts */
	uint64_t used;	    /* bytes stored (fragment headers included) */
	uint64_t fragments; /* fragments stored */
	/* fragments the node acknowledged and then lost (a damaged
	 * database): blk_fragstore_usage's lost */
	uint64_t lost;
	bool full; /* the node refuses puts now (bit 0 of the
		    * fourth u64) */
};

/* One frame of a message, borrowed. */
struct net_frame {
	const void *data;
	size_t len;
};

/* A request, as decoded or to be encoded. Pointers borrow the frames (or,
 * for encoding, the caller's buffers). */
struct net_req {
	struct net_hdr hdr;	 /* hdr.count: HAVE/DELETE frefs, LIST limit;
				  * hdr.arg: PING, HEAD_GET, HEAD_CAS */
	const uint8_t *frag_raw; /* PUT: the 64 header bytes */
	struct ec_frag_hdr frag; /* PUT: decoded from frag_raw */
	const void *data;	 /* PUT: fragment bytes; HEAD_CAS: the head */
	size_t len;
	const uint8_t *fsid; /* HEAD_GET: NET_FSID_LEN bytes */
	struct net_fref ref; /* GET; LIST: the cursor if has_cursor */
	bool has_cursor;     /* LIST */
	const uint8_t *refs; /* HAVE/DELETE: hdr.count packed frefs */
};

/* A reply, likewise. */
struct net_rep {
	struct net_hdr hdr;	 /* hdr.count: HAVE/DELETE bits, LIST items */
	const uint8_t *frag_raw; /* GET */
	struct ec_frag_hdr frag; /* GET: decoded from frag_raw */
	const void *data;	 /* GET; HEAD_GET: the head record */
	size_t len;
	const uint8_t *bitmap; /* HAVE/DELETE */
	const uint8_t *items;  /* LIST: hdr.count packed items */
	struct net_status st;  /* STATUS */
};

/* Bytes of scratch space net_req_encode/net_rep_encode need. */
#define NET_ENC_SCRATCH (NET_HDR_LEN + NET_STATUS_LEN + NET_FREF_LEN)

/* Header alone. net_hdr_decode checks magic, version, flags and the length
 * of the frame (-EPROTO); it does not look at the op. */
void net_hdr_encode(const struct net_hdr *h, uint8_t out[NET_HDR_LEN]);
int net_hdr_decode(const void *buf, size_t len, struct net_hdr *h);

/* Fragment references and LIST items; the decoders return 0 or -EINVAL
 * (fragment index out of range). */
void net_fref_encode(const struct net_fref *r, uint8_t out[NET_FREF_LEN]);
int net_fref_decode(const uint8_t *buf, struct net_fref *r);
void net_list_item_encode(const struct net_list_item *it,
			  uint8_t out[NET_LIST_ITEM_LEN]);
int net_list_item_decode(const uint8_t *buf, struct net_list_item *it);
void net_status_encode(const struct net_status *st,
		       uint8_t out[NET_STATUS_LEN]);
/* @len: NET_STATUS_LEN, or NET_STATUS_LEN_V1 (lost is then 0). */
void net_status_decode(const uint8_t *buf, size_t len, struct net_status *st);

/* Bitmaps of HAVE and DELETE replies. */
static inline size_t net_bitmap_len(uint32_t nbits)
{
	return ((size_t)nbits + 7) / 8;
}
static inline bool net_bitmap_get(const uint8_t *map, uint32_t i)
{
	return map[i / 8] >> (i % 8) & 1;
}
static inline void net_bitmap_set(uint8_t *map, uint32_t i)
{
	map[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Decode a whole message given as @n frames. 0, or one of the errors listed
 * at the top. On error the header fields that could be read are in
 * r->hdr (r->hdr.id is 0 when the header itself is bad), so the server
 * can address its error reply. */
int net_req_decode(const struct net_frame *f, size_t n, struct net_req *r);
int net_rep_decode(const struct net_frame *f, size_t n, struct net_rep *r);

/* Turn a request or reply into frames: @out (NET_MAX_FRAMES) receives
 * frames that point into @scratch (NET_ENC_SCRATCH bytes, for the header
 * and small payloads) or at the caller's buffers (fragment bytes, packed
 * frefs, bitmaps, items). Sets the REPLY flag as appropriate and, for
 * replies with a non-zero status, emits the header alone. Returns the
 * number of frames, or -EINVAL for an op that cannot be encoded or counts
 * over the limits (a bug of the caller). */
int net_req_encode(const struct net_req *r, uint8_t *scratch,
		   struct net_frame *out);
int net_rep_encode(const struct net_rep *r, uint8_t *scratch,
		   struct net_frame *out);

/* Name of an op, for messages ("put", "get", ...; "?" when unknown). */
const char *net_op_name(unsigned op);
