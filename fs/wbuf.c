/* Dirty byte ranges of a file as sorted segments (see wbuf.h). */
#include "fs/wbuf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void seg_free(struct wb_seg *s)
{
	free(s->data - s->head);
}

void wbuf_clear(struct wbuf *w)
{
	for (size_t i = 0; i < w->n; i++)
		seg_free(&w->segs[i]);
	free(w->segs);
	*w = (struct wbuf)WBUF_INIT;
}

void wbuf_take(struct wbuf *w, struct wbuf *out)
{
	*out = *w;
	*w = (struct wbuf)WBUF_INIT;
}

int wbuf_take_prefix(struct wbuf *w, uint64_t limit, struct wbuf *out)
{
	size_t k = 0;
	uint64_t moved = 0;

	while (k < w->n && (k == 0 || moved < limit))
		moved += w->segs[k++].len;
	if (k == w->n) {
		wbuf_take(w, out);
		return 0;
	}
	struct wb_seg *segs = malloc(k * sizeof(*segs));
	if (!segs)
		return -ENOMEM;
	memcpy(segs, w->segs, k * sizeof(*segs));
	memmove(w->segs, w->segs + k, (w->n - k) * sizeof(*segs));
	w->n -= k;
	w->bytes -= moved;
	*out = (struct wbuf){segs, k, k, moved};
	return 0;
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

/* Insert a new segment at index @i holding a copy of @data. Big appends
 * past the end get room to grow to WBUF_SEG_MAX and headroom in front. */
static int insert_seg(struct wbuf *w, size_t i, uint64_t off,
		      const uint8_t *data, size_t len)
{
	bool stream = off >= wbuf_end(w) && len >= 64 * 1024;
	size_t head = stream ? WBUF_HEADROOM : 0;
	size_t cap =
	    stream && len < WBUF_SEG_MAX ? WBUF_SEG_MAX : grow_cap(len);

	if (reserve_segs(w, w->n + 1))
		return -ENOMEM;
	uint8_t *base = malloc(head + cap);
	if (!base)
		return -ENOMEM;
	memcpy(base + head, data, len);
	memmove(&w->segs[i + 1], &w->segs[i], (w->n - i) * sizeof(w->segs[0]));
	w->segs[i] = (struct wb_seg){off, len, cap, head, base + head};
	w->n++;
	w->bytes += len;
	return 0;
}

/* Append @len bytes to segment @s in place, growing its allocation. */
static int append_seg(struct wbuf *w, struct wb_seg *s, const uint8_t *data,
		      size_t len)
{
	if (s->len + len > s->cap) {
		size_t cap = grow_cap(s->len + len);
		uint8_t *base = realloc(s->data - s->head, s->head + cap);
		if (!base)
			return -ENOMEM;
		s->data = base + s->head;
		s->cap = cap;
	}
	memcpy(s->data + s->len, data, len);
	s->len += len;
	w->bytes += len;
	return 0;
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
	size_t cap = grow_cap(nlen);
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	uint64_t old_bytes = 0;
	if (!over)
		memcpy(buf + (off - start), data, len);
	for (size_t k = i; k < j; k++) {
		struct wb_seg *s = &w->segs[k];
		memcpy(buf + (s->off - start), s->data, s->len);
		old_bytes += s->len;
		seg_free(s);
	}
	if (over)
		memcpy(buf + (off - start), data, len);
	w->segs[i] = (struct wb_seg){start, nlen, cap, 0, buf};
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
	bool overlap = false;
	while (j < w->n && w->segs[j].off <= off + len) {
		struct wb_seg *s = &w->segs[j];
		overlap |= s->off < off + len && s->off + s->len > off;
		j++;
	}
	if (overlap) {
		/* Rewrites: only the segments they touch are merged. */
		size_t a = i, b = j;
		while (a < b && w->segs[a].off + w->segs[a].len == off)
			a++; /* a left neighbour that only touches */
		while (b > a && w->segs[b - 1].off == off + len)
			b--; /* a right neighbour that only touches */
		return merge(w, a, b, off, data, len, over);
	}
	/* Touching at most: grow the left neighbour, fill the right one's
	 * headroom, or stand alone. */
	if (i < j && w->segs[i].off + w->segs[i].len == off &&
	    w->segs[i].len + len <= WBUF_SEG_MAX)
		return append_seg(w, &w->segs[i], data, len);
	if (i < j && w->segs[j - 1].off == off + len &&
	    w->segs[j - 1].head >= len) {
		struct wb_seg *s = &w->segs[j - 1];
		s->data -= len;
		s->head -= len;
		s->cap += len;
		s->off -= len;
		s->len += len;
		memcpy(s->data, data, len);
		w->bytes += len;
		return 0;
	}
	size_t at = i < j && w->segs[i].off < off ? i + 1 : i;
	return insert_seg(w, at, off, data, len);
}

int wbuf_write(struct wbuf *w, uint64_t off, const void *data, size_t len)
{
	return write_common(w, off, data, len, true);
}

int wbuf_write_under(struct wbuf *w, uint64_t off, const void *data, size_t len)
{
	return write_common(w, off, data, len, false);
}

uint64_t wbuf_overlay(const struct wbuf *w, uint64_t off, void *buf, size_t len)
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
			seg_free(s);
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

/* The segment of @w that holds byte @off, or w->n. */
static size_t seg_holding(const struct wbuf *w, uint64_t off)
{
	size_t lo = 0, hi = w->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (w->segs[mid].off + w->segs[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < w->n && w->segs[lo].off <= off ? lo : w->n;
}

int wbuf_punch(struct wbuf *w, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;

	if (!len)
		return 0;
	/* A segment spanning the range on both sides: its right part goes
	 * to a new segment, made before anything changes. */
	size_t i = seg_holding(w, off);
	if (i < w->n && w->segs[i].off < off &&
	    w->segs[i].off + w->segs[i].len > end) {
		struct wb_seg *s = &w->segs[i];
		uint64_t rlen = s->off + s->len - end;
		if (reserve_segs(w, w->n + 1))
			return -ENOMEM;
		s = &w->segs[i];
		uint8_t *p = malloc(rlen);
		if (!p)
			return -ENOMEM;
		memcpy(p, s->data + (end - s->off), rlen);
		s->len = off - s->off;
		memmove(&w->segs[i + 2], &w->segs[i + 1],
			(w->n - i - 1) * sizeof(w->segs[0]));
		w->segs[i + 1] = (struct wb_seg){end, rlen, rlen, 0, p};
		w->n++;
		w->bytes -= len;
		return 0;
	}
	size_t k = first_touching(w, off), out = k;
	for (; k < w->n; k++) {
		struct wb_seg *s = &w->segs[k];
		uint64_t se = s->off + s->len;
		if (s->off >= end) {
			w->segs[out++] = *s;
			continue;
		}
		if (se <= off) { /* touches the range only */
			w->segs[out++] = *s;
			continue;
		}
		if (s->off < off) { /* keeps its head */
			w->bytes -= se - off;
			s->len = off - s->off;
			w->segs[out++] = *s;
		} else if (se > end) { /* keeps its tail */
			uint64_t d = end - s->off;
			w->bytes -= d;
			s->data += d;
			s->head += d;
			s->cap -= d;
			s->off = end;
			s->len -= d;
			w->segs[out++] = *s;
		} else { /* inside: goes */
			w->bytes -= s->len;
			seg_free(s);
		}
	}
	w->n = out;
	return 0;
}

bool wbuf_next_data(const struct wbuf *w, uint64_t off, uint64_t *at)
{
	size_t i = seg_holding(w, off);

	if (i < w->n) {
		*at = off;
		return true;
	}
	i = first_touching(w, off);
	while (i < w->n && w->segs[i].off + w->segs[i].len <= off)
		i++;
	if (i == w->n)
		return false;
	*at = w->segs[i].off;
	return true;
}

uint64_t wbuf_data_end(const struct wbuf *w, uint64_t off)
{
	size_t i = seg_holding(w, off);

	if (i == w->n)
		return off;
	uint64_t end = w->segs[i].off + w->segs[i].len;
	while (++i < w->n && w->segs[i].off == end)
		end += w->segs[i].len;
	return end;
}
