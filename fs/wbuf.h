/* A file's write buffer: dirty byte ranges not yet chunked into blocks, as
 * a sorted array of non-overlapping, non-adjacent segments.
 *
 * Not thread-safe: the owner (the inode) serializes calls. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct wb_seg {
	uint64_t off;
	uint64_t len;
	size_t cap;
	uint8_t *data;
};

struct wbuf {
	struct wb_seg *segs;
	size_t n, cap;
	uint64_t bytes; /* sum of segment lengths */
};

#define WBUF_INIT {NULL, 0, 0, 0}

/* Free every segment; the buffer is empty afterwards. */
void wbuf_clear(struct wbuf *w);

/* Move everything from @w into @out (which must be empty). */
void wbuf_take(struct wbuf *w, struct wbuf *out);

/* Store @len bytes at @off; they replace whatever the buffer held there.
 * Adjacent and overlapping segments merge. 0 or -ENOMEM (buffer unchanged). */
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

/* End of the last segment, or 0 when empty. */
uint64_t wbuf_end(const struct wbuf *w);
