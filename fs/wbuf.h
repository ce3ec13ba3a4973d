/* A file's write buffer: dirty byte ranges not yet chunked into blocks, as
 * a sorted array of non-overlapping segments.
 *
 * Segments may touch: an append past WBUF_SEG_MAX starts a new segment
 * instead of growing (so a flush takes a bounded prefix, and nothing is
 * ever copied into an ever larger buffer), and segments made by appends
 * keep WBUF_HEADROOM bytes in front, so the uncommitted tail of a flush can
 * be put back in front of the data that followed it without moving that.
 *
 * Not thread-safe: the owner (the inode) serializes calls. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WBUF_SEG_MAX (8u << 20)
#define WBUF_HEADROOM (1u << 20)

struct wb_seg {
	uint64_t off;
	uint64_t len;
	size_t cap;    /* usable bytes from data on */
	size_t head;   /* free bytes before data */
	uint8_t *data; /* allocation + head */
};

struct wbuf {
	struct wb_seg *segs;
	size_t n, cap;
	uint64_t bytes; /* sum of segment lengths */
};

#define WBUF_INIT                                                              \
	{                                                                      \
		NULL, 0, 0, 0                                                  \
	}

/* Free every segment; the buffer is empty afterwards. */
void wbuf_clear(struct wbuf *w);

/* Move everything from @w into @out (which must be empty). */
void wbuf_take(struct wbuf *w, struct wbuf *out);

/* Move leading segments from @w into @out (which must be empty) until at
 * least @limit bytes moved or @w is empty; at least one segment moves.
 * 0 or -ENOMEM (nothing moved). */
int wbuf_take_prefix(struct wbuf *w, uint64_t limit, struct wbuf *out);

/* Store @len bytes at @off; they replace whatever the buffer held there.
 * 0 or -ENOMEM (buffer unchanged). */
int wbuf_write(struct wbuf *w, uint64_t off, const void *data, size_t len);

/* Store only those of the @len bytes at @off that the buffer does not cover
 * yet (older data slid under newer). 0 or -ENOMEM. */
int wbuf_write_under(struct wbuf *w, uint64_t off, const void *data,
		     size_t len);

/* Copy the buffered bytes that fall in [off, off+len) into @buf, which
 * stands for that range; bytes not buffered are left alone. Returns the
 * number of bytes copied. */
uint64_t wbuf_overlay(const struct wbuf *w, uint64_t off, void *buf,
		      size_t len);

/* Drop every buffered byte at or beyond @size. */
void wbuf_truncate(struct wbuf *w, uint64_t size);

/* Drop every buffered byte in [off, off+len): a segment that spans the
 * range is split in two. 0 or -ENOMEM (buffer unchanged). */
int wbuf_punch(struct wbuf *w, uint64_t off, uint64_t len);

/* The first buffered offset at or after @off, in *at: true, or false
 * when nothing is buffered there. */
bool wbuf_next_data(const struct wbuf *w, uint64_t off, uint64_t *at);

/* Where the buffered bytes that run on from @off without a gap end (@off
 * itself when @off is not buffered). */
uint64_t wbuf_data_end(const struct wbuf *w, uint64_t off);

/* End of the last segment, or 0 when empty. */
uint64_t wbuf_end(const struct wbuf *w);
