/* The retention policy's parser and the function that applies it; see
 * retention.h for the syntax and rules 1-4. */
#include "net/cluster/retention.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const kind_names[] = {"all", "hourly", "daily", "weekly",
					 "monthly"};
#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))

#define NS 1000000000ull

/* Parse the SPAN of one rule (@s, @len bytes) into @r. 0 or -EINVAL with
 * the message in @err. */
static int parse_span(const char *rule, const char *s, size_t len,
		      struct cl_retention_rule *r, char *err, size_t errlen)
{
	static const struct {
		const char *unit;
		uint64_t sec;
	} units[] = {{"s", 1},	   {"m", 60},	     {"h", 3600},
		     {"d", 86400}, {"w", 7 * 86400}, {NULL, 0}};
	uint64_t v = 0;
	size_t i = 0;

	if (len == 7 && !memcmp(s, "forever", 7)) {
		r->forever = true;
		return 0;
	}
	while (i < len && isdigit((unsigned char)s[i])) {
		if (v > CL_RETENTION_MAX_SPAN)
			goto bad;
		v = v * 10 + (uint64_t)(s[i++] - '0');
	}
	if (i == 0 || v == 0)
		goto bad;
	if (i == len) {
		if (r->kind == CL_RETAIN_ALL) {
			snprintf(err, errlen,
				 "'%s': 'all' needs a duration with a unit "
				 "(s, m, h, d, w), e.g. 'all:1h'",
				 rule);
			return -EINVAL;
		}
		if (v > CL_RETENTION_MAX_COUNT)
			goto too_long;
		r->count = true;
		r->span = v;
		return 0;
	}
	for (unsigned u = 0; units[u].unit; u++)
		if (len - i == strlen(units[u].unit) &&
		    !memcmp(s + i, units[u].unit, len - i)) {
			if (v > CL_RETENTION_MAX_SPAN / units[u].sec)
				goto too_long;
			r->span = v * units[u].sec;
			return 0;
		}
	goto bad; /* no such unit */
too_long:
	snprintf(err, errlen,
		 "span too long in '%s' (at most 1000 years, or 'forever')",
		 rule);
	return -EINVAL;
bad:
	snprintf(err, errlen,
		 "invalid span in '%s' (a positive number with a unit s, m, "
		 "h, d or w, a bare count of buckets, or 'forever')",
		 rule);
	return -EINVAL;
}

/* One rule "KIND:SPAN" (@s, @len bytes) into @r. */
static int parse_rule(const char *s, size_t len, struct cl_retention_rule *r,
		      char *err, size_t errlen)
{
	char rule[CL_RETENTION_MAX_LEN + 1];
	const char *colon = memchr(s, ':', len);
	unsigned k;

	snprintf(rule, sizeof(rule), "%.*s", (int)len, s);
	memset(r, 0, sizeof(*r));
	if (!len) {
		snprintf(err, errlen,
			 "empty rule (rules are KIND:SPAN "
			 "separated by commas)");
		return -EINVAL;
	}
	if (!colon) {
		snprintf(err, errlen,
			 "'%s' is not KIND:SPAN (e.g. 'daily:30d')", rule);
		return -EINVAL;
	}
	for (k = 0; k < NKINDS; k++)
		if ((size_t)(colon - s) == strlen(kind_names[k]) &&
		    !memcmp(s, kind_names[k], (size_t)(colon - s)))
			break;
	if (k == NKINDS) {
		snprintf(err, errlen,
			 "unknown kind '%.*s' in '%s' (all, hourly, daily, "
			 "weekly, monthly)",
			 (int)(colon - s), s, rule);
		return -EINVAL;
	}
	r->kind = (enum cl_retention_kind)k;
	return parse_span(rule, colon + 1, len - (size_t)(colon + 1 - s), r,
			  err, errlen);
}

int cl_retention_parse(const char *text, struct cl_retention *out, char *err,
		       size_t errlen)
{
	const char *s = text && *text ? text : CL_RETENTION_DEFAULT;
	size_t len = strlen(s);

	memset(out, 0, sizeof(*out));
	if (len > CL_RETENTION_MAX_LEN) {
		snprintf(err, errlen, "retention policy longer than %d bytes",
			 CL_RETENTION_MAX_LEN);
		return -EINVAL;
	}
	for (;;) {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);

		/* Spaces around a rule are allowed. */
		while (n && isspace((unsigned char)*s))
			s++, n--;
		while (n && isspace((unsigned char)s[n - 1]))
			n--;
		if (out->n == CL_RETENTION_MAX_RULES) {
			snprintf(err, errlen, "more than %d retention rules",
				 CL_RETENTION_MAX_RULES);
			return -EINVAL;
		}
		int ret = parse_rule(s, n, &out->rules[out->n], err, errlen);
		if (ret)
			return ret;
		out->n++;
		if (!comma)
			return 0;
		s = comma + 1;
	}
}

void cl_retention_format(const struct cl_retention *p, char *buf, size_t len)
{
	size_t off = 0;

	if (len)
		buf[0] = 0;
	for (unsigned i = 0; i < p->n && off < len; i++) {
		const struct cl_retention_rule *r = &p->rules[i];
		char span[32];
		uint64_t s = r->span;

		if (r->forever)
			snprintf(span, sizeof(span), "forever");
		else if (r->count)
			snprintf(span, sizeof(span), "%llu",
				 (unsigned long long)s);
		else if (s % 86400 == 0)
			snprintf(span, sizeof(span), "%llud",
				 (unsigned long long)(s / 86400));
		else if (s % 3600 == 0)
			snprintf(span, sizeof(span), "%lluh",
				 (unsigned long long)(s / 3600));
		else if (s % 60 == 0)
			snprintf(span, sizeof(span), "%llum",
				 (unsigned long long)(s / 60));
		else
			snprintf(span, sizeof(span), "%llus",
				 (unsigned long long)s);
		int n = snprintf(buf + off, len - off, "%s%s:%s", i ? "," : "",
				 kind_names[r->kind], span);
		if (n < 0)
			return;
		off += (size_t)n;
	}
}

/* The bucket of time @sec (unix seconds) for @kind: hours, days, weeks
 * since the epoch, or year * 12 + month (UTC). */
static int64_t bucket_of(enum cl_retention_kind kind, int64_t sec)
{
	struct tm tm;
	time_t t = (time_t)sec;

	switch (kind) {
	case CL_RETAIN_HOURLY:
		return sec / 3600;
	case CL_RETAIN_DAILY:
		return sec / 86400;
	case CL_RETAIN_WEEKLY:
		return sec / (7 * 86400);
	case CL_RETAIN_MONTHLY:
		if (!gmtime_r(&t, &tm))
			return 0;
		return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
	default:
		return 0;
	}
}

/* A head in one bucket, for sorting by (bucket, seq). */
struct slot {
	int64_t bucket;
	uint64_t seq;
	size_t i;
};

static int slot_cmp(const void *a, const void *b)
{
	const struct slot *x = a, *y = b;

	if (x->bucket != y->bucket)
		return x->bucket < y->bucket ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Rule 2: the age of a head in seconds, 0 for one from the future. */
static uint64_t age_sec(const struct cl_retention_head *h, uint64_t now_ns)
{
	return h->time_ns >= now_ns ? 0 : (now_ns - h->time_ns) / NS;
}

/* Apply one bucketed rule (rule 3) with @slots room for @n heads. */
static void keep_bucketed(const struct cl_retention_rule *r,
			  const struct cl_retention_head *h, size_t n,
			  uint64_t now_ns, struct slot *slots, bool *keep)
{
	int64_t now_bucket = bucket_of(r->kind, (int64_t)(now_ns / NS));
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t t = h[i].time_ns > now_ns ? now_ns : h[i].time_ns;
		int64_t b = bucket_of(r->kind, (int64_t)(t / NS));

		if (!r->forever && !r->count &&
		    age_sec(&h[i], now_ns) > r->span)
			continue;
		if (!r->forever && r->count &&
		    (uint64_t)(now_bucket - b) >= r->span)
			continue;
		slots[m++] = (struct slot){b, h[i].seq, i};
	}
	qsort(slots, m, sizeof(*slots), slot_cmp);
	for (size_t j = 0; j < m; j++)
		if (j + 1 == m || slots[j + 1].bucket != slots[j].bucket)
			keep[slots[j].i] = true;
}

int cl_retention_keep(const struct cl_retention *p,
		      const struct cl_retention_head *h, size_t n,
		      uint64_t now_ns, bool *keep)
{
	struct slot *slots;
	size_t latest = 0;

	if (!n)
		return 0;
	if (!p || !h || !keep)
		return -EINVAL;
	slots = calloc(n, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		keep[i] = false;
		if (h[i].seq > h[latest].seq)
			latest = i;
	}
	keep[latest] = true; /* rule 1 */
	for (unsigned r = 0; r < p->n; r++) {
		const struct cl_retention_rule *rule = &p->rules[r];

		if (rule->kind != CL_RETAIN_ALL) {
			keep_bucketed(rule, h, n, now_ns, slots, keep);
			continue;
		}
		for (size_t i = 0; i < n; i++)
			if (rule->forever ||
			    age_sec(&h[i], now_ns) <= rule->span)
				keep[i] = true;
	}
	free(slots);
	return 0;
}
