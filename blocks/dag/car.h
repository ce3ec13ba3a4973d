/* CAR v1 archives (https://ipld.io/specs/transport/car/carv1/): a
 * streaming writer and a strict streaming reader, both through callbacks
 * so that an archive of any size passes in bounded memory.
 *
 * Layout:
 *   varint(len(header)) || header
 *   (varint(len(cid) + len(data)) || cid || data)*
 * where the header is the DAG-CBOR map {"roots": [CID, ...], "version": 1}
 * and each cid is a binary CID. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "blocks/cid.h"

/* The largest block a CAR section may carry: blockfs' chunker allows
 * chunks up to 64 MiB (cdc_chunker_init), as does a fragment (EC_MAX_BLOCK),
 * so a filesystem made with the largest chunks exports blocks this big. */
#define BLK_CAR_MAX_BLOCK (64u << 20)
#define BLK_CAR_MAX_SECTION (BLK_CAR_MAX_BLOCK + BLK_CID_MAX_BYTES)
/* The header: blockfs writes one root; the reader takes none (the spec
 * leaves an empty list open) up to a few. */
#define BLK_CAR_MAX_ROOTS 16
#define BLK_CAR_MAX_HEADER 4096

/* Write all @len bytes at @buf; 0 or a negative errno. */
typedef int (*blk_car_write_fn)(void *arg, const void *buf, size_t len);

/* Read up to @len bytes into @buf: the bytes read (fewer only at the end
 * of the input; 0 at its end) or a negative errno. */
typedef ssize_t (*blk_car_read_fn)(void *arg, void *buf, size_t len);

struct blk_car_writer {
	blk_car_write_fn write;
	void *arg;
	uint64_t bytes;	 /* written so far */
	uint64_t blocks; /* blocks written */
};

/* Start an archive: write the header naming @nroots roots (at most
 * BLK_CAR_MAX_ROOTS). Returns 0, -EINVAL, or the write callback's error. */
int blk_car_writer_start(struct blk_car_writer *w, blk_car_write_fn write,
			 void *arg, const struct blk_cid *roots, size_t nroots);

/* Append one block (@len <= BLK_CAR_MAX_BLOCK; @cid is trusted to name
 * @data). Returns 0, -EINVAL, or the write callback's error. */
int blk_car_write_block(struct blk_car_writer *w, const struct blk_cid *cid,
			const void *data, size_t len);

/* The reader: opened on a stream, it has read the header; blocks then come
 * one at a time. Its buffer grows with the bytes that actually arrive, up
 * to the largest section read. Every malformed input is -EBADMSG: a varint
 * truncated, overlong or not minimal, a header that is not exactly
 * {"roots": [0..BLK_CAR_MAX_ROOTS CIDs], "version": 1} in canonical
 * DAG-CBOR, a section empty, longer than BLK_CAR_MAX_SECTION or cut short,
 * a CID blockfs cannot parse, or a block whose bytes do not hash to its
 * CID. */
struct blk_car_reader {
	blk_car_read_fn read;
	void *arg;
	struct blk_cid roots[BLK_CAR_MAX_ROOTS];
	size_t nroots;
	uint8_t *buf; /* read-ahead: unread bytes at [start, end) */
	size_t cap, start, end;
	bool eof;	 /* the read callback returned 0 */
	uint64_t offset; /* bytes consumed from the stream */
};

/* Read the header. Returns 0, -EBADMSG, -EPROTONOSUPPORT for a well-formed
 * header of another version (a CARv2 pragma), -ENOMEM, or the read
 * callback's error. On failure nothing is held. */
int blk_car_reader_open(struct blk_car_reader *r, blk_car_read_fn read,
			void *arg);

/* The next block: 1 with *@cid, *@data (valid until the next call) and
 * *@len set; 0 at the end of the archive; -EBADMSG, -ENOMEM or the read
 * callback's error. */
int blk_car_reader_next(struct blk_car_reader *r, struct blk_cid *cid,
			const uint8_t **data, size_t *len);

void blk_car_reader_close(struct blk_car_reader *r);
