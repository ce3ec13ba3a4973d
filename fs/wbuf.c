/* Dirty byte ranges of a file as sorted, merged segments (see wbuf.h). */
#include "fs/wbuf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void wbuf_clear(struct wbuf *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->segs[i].data);
	free(w->segs);
	*w = (struct wbuf)WBUF_INIT;
}

void wbuf_take(struct wbuf *w, struct wbuf *out)
{
	*out = *w;
	*w = (struct wbuf)WBUF_INIT;
}

uint64_t wbuf_end(const struct wbuf *w)
{
	return w->n ? w->segs[w->n - 1].off + w->segs[w->n - 1].len : 0;
}

/* First segment whose end is >= off (it overlaps or touches [off, …)). */
static size_t first_touching(const struct wbuf *w, uint64_t off)
{
	size_t lo = 0, hi = w->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (w->segs[mid].off + w->segs[mid].len < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int reserve_segs(struct wbuf *w, size_t n)
{
	if (n <= w->cap)
		return 0;
	size_t cap = w->cap ? w->cap * 2 : 4;
	while (cap < n)
		cap *= 2;
	struct wb_seg *s = realloc(w->segs, cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	w->segs = s;
	w->cap = cap;
	return 0;
}

static size_t grow_cap(size_t need)
{
	size_t cap = 64 * 1024;
	while (cap < need)
		cap = cap < (64u << 20) ? cap * 2 : cap + (64u << 20);
	return cap;
}

/* Merge segments [i, j) with the new range [off, off+len) into one segment
 * at index i. Bytes of the new range win when @over, else the old ones. */
static int merge(struct wbuf *w, size_t i, size_t j, uint64_t off,
		 const uint8_t *data, size_t len, bool over)
{
	uint64_t start = off, end = off + len;

	if (w->segs[i].off < start)
		start = w->segs[i].off;
	if (w->segs[j - 1].off + w->segs[j - 1].len > end)
		end = w->segs[j - 1].off + w->segs[j - 1].len;

	uint64_t nlen = end - start;
	struct wb_seg *first = &w->segs[i];
	/* Growing the first segment (appends) reallocates it, which often
	 * extends it where it is. Older bytes winning means copying them over
	 * the new ones: never in place. */
	bool in_place = over && first->off == start;
	if (in_place && first->cap < nlen) {
		size_t ncap = grow_cap(nlen);
		uint8_t *nb = realloc(first->data, ncap);
		if (!nb)
			return -ENOMEM;
		first->data = nb;
		first->cap = ncap;
	}
	uint8_t *buf = first->data;
	size_t cap = first->cap;

	if (!in_place) {
		cap = grow_cap(nlen);
		buf = malloc(cap);
		if (!buf)
			return -ENOMEM;
	}
	uint64_t old_bytes = 0;
	if (!over)
		memcpy(buf + (off - start), data, len);
	for (size_t k = i; k < j; k++) {
		struct wb_seg *s = &w->segs[k];
		if (!(in_place && k == i))
			memcpy(buf + (s->off - start), s->data, s->len);
		old_bytes += s->len;
		if (k != i)
			free(s->data);
	}
	if (over)
		memcpy(buf + (off - start), data, len);
	if (!in_place)
		free(first->data);
	first->off = start;
	first->len = nlen;
	first->cap = cap;
	first->data = buf;
	if (j - i > 1)
		memmove(&w->segs[i + 1], &w->segs[j],
			(w->n - j) * sizeof(w->segs[0]));
	w->n -= j - i - 1;
	w->bytes = w->bytes - old_bytes + nlen;
	return 0;
}

static int write_common(struct wbuf *w, uint64_t off, const void *data,
			size_t len, bool over)
{
	if (len == 0)
		return 0;
	size_t i = first_touching(w, off);
	size_t j = i;
	while (j < w->n && w->segs[j].off <= off + len)
		j++;
	if (j > i)
		return merge(w, i, j, off, data, len, over);

	if (reserve_segs(w, w->n + 1))
		return -ENOMEM;
	size_t cap = grow_cap(len);
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, data, len);
	memmove(&w->segs[i + 1], &w->segs[i], (w->n - i) * sizeof(w->segs[0]));
	w->segs[i] = (struct wb_seg){off, len, cap, buf};
	w->n++;
	w->bytes += len;
	return 0;
}

int wbuf_write(struct wbuf *w, uint64_t off, const void *data, size_t len)
{
	return write_common(w, off, data, len, true);
}

int wbuf_write_under(struct wbuf *w, uint64_t off, const void *data,
		     size_t len)
{
	return write_common(w, off, data, len, false);
}

uint64_t wbuf_overlay(const struct wbuf *w, uint64_t off, void *buf,
		      size_t len)
{
	uint64_t copied = 0, end = off + len;

	for (size_t i = first_touching(w, off); i < w->n; i++) {
		const struct wb_seg *s = &w->segs[i];
		if (s->off >= end)
			break;
		uint64_t a = s->off > off ? s->off : off;
		uint64_t b = s->off + s->len < end ? s->off + s->len : end;
		if (a >= b)
			continue;
		memcpy((uint8_t *)buf + (a - off), s->data + (a - s->off),
		       b - a);
		copied += b - a;
	}
	return copied;
}

void wbuf_truncate(struct wbuf *w, uint64_t size)
{
	while (w->n) {
		struct wb_seg *s = &w->segs[w->n - 1];
		if (s->off >= size) {
			w->bytes -= s->len;
			free(s->data);
			w->n--;
			continue;
		}
		if (s->off + s->len > size) {
			w->bytes -= s->off + s->len - size;
			s->len = size - s->off;
		}
		break;
	}
}
