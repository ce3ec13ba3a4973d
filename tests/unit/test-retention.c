/* Unit tests of the retention policy (net/cluster/retention.h): the
 * parser and its messages, the canonical form, rules 1-4 of the keep
 * function at their boundaries, and the [filesystem] "retention" key. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/cluster/config.h"
#include "net/cluster/retention.h"
#include "tests/unit/check.h"

#define NS 1000000000ull
#define H 3600ull
#define D 86400ull
/* 2026-12-07 12:00:00 UTC. */
#define NOW (1796644800ull * NS)

static void test_parse(void)
{
	struct cl_retention p;
	char err[256], buf[256];

	CHECK(cl_retention_parse(NULL, &p, err, sizeof(err)) == 0 && p.n == 3);
	cl_retention_format(&p, buf, sizeof(buf));
	CHECK(!strcmp(buf, CL_RETENTION_DEFAULT));
	CHECK(cl_retention_parse("", &p, err, sizeof(err)) == 0 && p.n == 3);
	CHECK(cl_retention_parse("all:1h, hourly:24h ,daily:30d,monthly:12", &p,
				 err, sizeof(err)) == 0 &&
	      p.n == 4);
	CHECK(p.rules[0].kind == CL_RETAIN_ALL && p.rules[0].span == H &&
	      !p.rules[0].count);
	CHECK(p.rules[1].kind == CL_RETAIN_HOURLY && p.rules[1].span == D);
	CHECK(p.rules[3].kind == CL_RETAIN_MONTHLY && p.rules[3].count &&
	      p.rules[3].span == 12);
	cl_retention_format(&p, buf, sizeof(buf));
	CHECK(!strcmp(buf, "all:1h,hourly:1d,daily:30d,monthly:12"));
	CHECK(cl_retention_parse("weekly:2w,all:90s,all:forever", &p, err,
				 sizeof(err)) == 0);
	cl_retention_format(&p, buf, sizeof(buf));
	CHECK(!strcmp(buf, "weekly:14d,all:90s,all:forever"));
	CHECK(cl_retention_parse("all:52142w,daily:365000d", &p, err,
				 sizeof(err)) == 0);
	cl_retention_format(&p, buf, sizeof(buf));
	CHECK(!strcmp(buf, "all:364994d,daily:365000d"));
	CHECK(cl_retention_parse(buf, &p, err, sizeof(err)) == 0);

	static const struct {
		const char *text, *want;
	} bad[] = {
	    {"dayly:3d", "unknown kind 'dayly' in 'dayly:3d'"},
	    {"daily", "'daily' is not KIND:SPAN"},
	    {"daily:", "invalid span in 'daily:'"},
	    {"daily:0d", "invalid span in 'daily:0d'"},
	    {"daily:3y", "invalid span in 'daily:3y'"},
	    {"daily:-3d", "invalid span"},
	    {"all:5", "'all' needs a duration"},
	    {"all:1h,,daily:3d", "empty rule"},
	    {"all:1h,", "empty rule"},
	    {"daily:99999999999999999999d", "invalid span"},
	    {"daily:365001d", "span too long in 'daily:365001d'"},
	    {"monthly:1000001", "span too long"},
	    {"all:1h,all:1h,all:1h,all:1h,all:1h,all:1h,all:1h,all:1h,all:1h",
	     "more than 8 retention rules"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		CHECK(cl_retention_parse(bad[i].text, &p, err, sizeof(err)) ==
		      -EINVAL);
		CHECK(strstr(err, bad[i].want) != NULL);
		if (!strstr(err, bad[i].want))
			fprintf(stderr, "%s: %s\n", bad[i].text, err);
	}
}

/* keep[] of heads at seq 1..n with the given ages in seconds before NOW
 * (negative: from the future). */
static void run(const char *policy, const int64_t *ages, size_t n, bool *keep)
{
	struct cl_retention p;
	struct cl_retention_head h[64];
	char err[256];

	REQUIRE(n <= 64);
	REQUIRE(cl_retention_parse(policy, &p, err, sizeof(err)) == 0);
	for (size_t i = 0; i < n; i++)
		h[i] = (struct cl_retention_head){
		    i + 1, (uint64_t)((int64_t)NOW - ages[i] * (int64_t)NS)};
	REQUIRE(cl_retention_keep(&p, h, n, NOW, keep) == 0);
}

static void test_keep(void)
{
	bool keep[64];

	/* Empty and one head (rule 1, even when old). */
	struct cl_retention p;
	char err[64];
	REQUIRE(cl_retention_parse(NULL, &p, err, sizeof(err)) == 0);
	CHECK(cl_retention_keep(&p, NULL, 0, NOW, NULL) == 0);
	CHECK(cl_retention_keep(NULL, NULL, 1, NOW, keep) == -EINVAL);
	run("all:1h", (int64_t[]){(int64_t)(400 * D)}, 1, keep);
	CHECK(keep[0]);

	/* all:1h at its boundary: age 3600 s kept, 3601 s not. */
	run("all:1h", (int64_t[]){3601, 3600, 10}, 3, keep);
	CHECK(!keep[0] && keep[1] && keep[2]);

	/* hourly:1d: the newest of each hour; 12:00 now, heads at
	 * 11:59:59 and 11:00:00 share hour 11, 10:59:59 is hour 10. */
	run("hourly:1d", (int64_t[]){3601, 3600, 1, 0}, 4, keep);
	CHECK(keep[0] && !keep[1] && keep[2] && keep[3]);
	run("hourly:1d", (int64_t[]){3601, 3600, 1}, 3, keep);
	CHECK(keep[0] && !keep[1] && keep[2]);
	/* beyond the span: not kept, apart from rule 1 */
	run("hourly:1d", (int64_t[]){(int64_t)D + 1, (int64_t)D, 5}, 3, keep);
	CHECK(!keep[0] && keep[1] && keep[2]);

	/* daily as a count: the current day and the one before. */
	run("daily:2",
	    (int64_t[]){(int64_t)(D + 12 * H) + 1, (int64_t)(D + 12 * H),
			(int64_t)(12 * H), (int64_t)(12 * H) - 1},
	    4, keep);
	CHECK(!keep[0] && keep[1] && !keep[2] && keep[3]);

	/* monthly:2: this month (December) and November (its newest);
	 * October not. */
	run("monthly:2",
	    (int64_t[]){(int64_t)(40 * D), (int64_t)(20 * D), (int64_t)(10 * D),
			(int64_t)(2 * D)},
	    4, keep);
	CHECK(!keep[0] && !keep[1] && keep[2] && keep[3]);

	/* Clocks going backwards: seq 2's time is before seq 1's, in the
	 * same hour; the newest by seq is seq 2, and a head from the future
	 * counts as age 0. */
	run("hourly:1d", (int64_t[]){600, 1200, -300}, 3, keep);
	CHECK(!keep[0] && keep[1] && keep[2]);
	run("hourly:1d", (int64_t[]){7000, 7100, 1}, 3, keep);
	CHECK(!keep[0] && keep[1] && keep[2]);
	run("all:1h", (int64_t[]){-(int64_t)D, 7200}, 2, keep);
	CHECK(keep[0] && keep[1]); /* future: age 0; seq 2 latest */

	/* The default policy on a day of commits every 10 minutes and a
	 * month of daily ones. */
	int64_t ages[64];
	size_t n = 0;
	for (int d = 40; d >= 1; d--)
		ages[n++] = (int64_t)(d * D) + 7;
	for (int m = 23; m >= 0; m--)
		ages[n++] = (int64_t)m * 600;
	run(NULL, ages, n, keep);
	size_t kept = 0;
	for (size_t i = 0; i < n; i++)
		kept += keep[i];
	/* daily:30d keeps the daily ones of age <= 30 d: days 1..29 (day 30
	 * is 7 s too old); all of the last hour (7 heads: ages 0..3600);
	 * the newest of hours 10, 9 and 8 (ages 4200, 7800, 11400). */
	for (size_t i = 0; i < 40; i++)
		CHECK(keep[i] == (i >= 11));
	CHECK(keep[n - 1] && keep[n - 7] && keep[n - 8] && !keep[n - 9]);
	CHECK(kept == 29 + 7 + 3);
}

static int load(const char *body, struct cl_cluster *c, char *err,
		size_t errlen)
{
	char path[] = "/tmp/test-retention-XXXXXX";
	int fd = mkstemp(path);

	REQUIRE(fd >= 0);
	REQUIRE(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
	close(fd);
	int ret = cl_cluster_load(path, c, err, errlen);
	unlink(path);
	return ret;
}

#define FILE_HEAD                                                              \
	"[cluster]\nid = x\n[node n1]\naddress = tcp://127.0.0.1:7401\n"       \
	"public_key = 0123456789012345678901234567890123456789\n"              \
	"[filesystem]\nid = 00112233445566778899aabbccddeeff\n"                \
	"public_key = 000102030405060708090a0b0c0d0e0f"                        \
	"F0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF\n"

static void test_config(void)
{
	struct cl_cluster *c = xmalloc(sizeof(*c));
	char err[512];

	CHECK(load(FILE_HEAD, c, err, sizeof(err)) == 0 && !c->retention[0]);
	CHECK(load(FILE_HEAD "retention = daily:7d,monthly:12\n", c, err,
		   sizeof(err)) == 0 &&
	      !strcmp(c->retention, "daily:7d,monthly:12"));
	CHECK(load(FILE_HEAD "retention = daily:7x\n", c, err, sizeof(err)) ==
		  -EINVAL &&
	      strstr(err, ":9: invalid retention: invalid span in 'daily:7x'"));
	if (!strstr(err, ":9:"))
		fprintf(stderr, "%s\n", err);
	free(c);
}

int main(void)
{
	test_parse();
	test_keep();
	test_config();
	printf("test-retention: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
