/* The retention policy of a filesystem's heads: which snapshots to keep,
 * from the cluster file's [filesystem] "retention = ..." setting, and the
 * pure function that applies it. The garbage collector (to come) keeps
 * the blocks reachable from the heads cl_retention_keep says to keep, and
 * only those; 'blockfs snapshot list' shows the same answer.
 *
 * Syntax: rules separated by commas, each KIND:SPAN.
 *   KIND   all      every head in the span
 *          hourly   the newest head of each hour (UTC) in the span
 *          daily    the newest head of each day (UTC)
 *          weekly   the newest head of each week (7-day buckets from the
 *                   epoch: Thursday 00:00 UTC to Thursday)
 *          monthly  the newest head of each calendar month (UTC)
 *   SPAN   a duration: a number and a unit, s m h d w (1d = 24h,
 *          1w = 7d), e.g. "30d"; or a bare number N (not for "all"):
 *          the current bucket and the N - 1 before it ("monthly:12").
 * Example: "all:1h,hourly:1d,daily:30d,monthly:12". Without the setting
 * the policy is CL_RETENTION_DEFAULT; "all:forever" keeps everything.
 *
 * Rules of the function (numbered: tests/unit/test-retention.c checks
 * each):
 *  1. The head with the highest seq is always kept.
 *  2. A head's age is now - time; a head from the future (a clock that
 *     went backwards, here or on the writer) has age 0.
 *  3. A head is kept if any rule keeps it: "all" keeps every head of age
 *     <= SPAN; a bucketed rule keeps, in each bucket its SPAN covers
 *     (by age <= SPAN for a duration, by bucket for a count), the head of
 *     the highest seq among those in the bucket (seq orders commits; the
 *     time only places them in buckets, so times out of order do not
 *     change which head is the newest).
 *  4. Nothing else is kept. The answer depends only on the heads' (seq,
 *     time) and @now: the same input gives the same answer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CL_RETENTION_DEFAULT "all:1h,hourly:1d,daily:30d"
#define CL_RETENTION_MAX_RULES 8
#define CL_RETENTION_MAX_LEN 256 /* of the setting's text */
/* The longest span, in seconds (1000 years of 365 days), and the most
 * buckets a count may name: longer is 'forever'. */
#define CL_RETENTION_MAX_SPAN (1000ull * 365 * 86400)
#define CL_RETENTION_MAX_COUNT 1000000ull

enum cl_retention_kind {
	CL_RETAIN_ALL,
	CL_RETAIN_HOURLY,
	CL_RETAIN_DAILY,
	CL_RETAIN_WEEKLY,
	CL_RETAIN_MONTHLY,
};

struct cl_retention_rule {
	enum cl_retention_kind kind;
	bool count;    /* span is a number of buckets, not seconds */
	bool forever;  /* no limit */
	uint64_t span; /* seconds, or buckets when count */
};

struct cl_retention {
	unsigned n;
	struct cl_retention_rule rules[CL_RETENTION_MAX_RULES];
};

/* Parse @text (NULL or empty: CL_RETENTION_DEFAULT) into @out. 0, or
 * -EINVAL with what is wrong in @err ("unknown kind 'dayly' in
 * 'dayly:3d' (all, hourly, daily, weekly, monthly)"). */
int cl_retention_parse(const char *text, struct cl_retention *out, char *err,
		       size_t errlen);

/* Write @p back in the syntax above, canonical: the largest unit of s, m,
 * h, d that divides the span ("1h", "14d" for "2w"), a count bare ("12"). */
void cl_retention_format(const struct cl_retention *p, char *buf, size_t len);

/* One head as the policy sees it. */
struct cl_retention_head {
	uint64_t seq;
	uint64_t time_ns; /* unix nanoseconds, as the head says */
};

/* Which of the @n heads @h (any order; seqs distinct) policy @p keeps at
 * @now_ns: keep[i] for h[i]. 0, -EINVAL (a NULL argument with n > 0), or
 * -ENOMEM. Pure: no clock, no environment. */
int cl_retention_keep(const struct cl_retention *p,
		      const struct cl_retention_head *h, size_t n,
		      uint64_t now_ns, bool *keep);
