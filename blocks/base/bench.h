/* What the floor-measuring tools (blocks/store-bench, net/net-bench) share:
 * a clock of wall and process CPU time, the rates between two readings,
 * the parsing of their numeric options, and removing a scratch directory.
 * Header-only: the tools are not part of any library. */
#pragma once

#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

struct bench_clock {
	double wall; /* s, monotonic */
	double cpu;  /* s, user + system of the whole process */
};

static inline struct bench_clock bench_clock_now(void)
{
	struct timespec t;
	struct rusage ru;
	struct bench_clock c;

	clock_gettime(CLOCK_MONOTONIC, &t);
	getrusage(RUSAGE_SELF, &ru);
	c.wall = (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
	c.cpu = (double)ru.ru_utime.tv_sec +
		(double)ru.ru_utime.tv_usec * 1e-6 +
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
	return c;
}

/* MB/s (1 MB = 10^6 B) and CPU seconds per GiB of @bytes done between
 * readings @a and @b. */
static inline void bench_rates(size_t bytes, struct bench_clock a,
			       struct bench_clock b, double *mb_per_s,
			       double *cpu_per_gib)
{
	*mb_per_s = (double)bytes / 1e6 / (b.wall - a.wall);
	*cpu_per_gib =
	    (b.cpu - a.cpu) / ((double)bytes / (1024.0 * 1024 * 1024));
}

/* A whole decimal number in 1..@max; false for anything else. */
static inline bool bench_parse_count(const char *s, unsigned long max,
				     unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > max)
		return false;
	*out = v;
	return true;
}

static inline int bench_rm_one(const char *path, const struct stat *st,
			       int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path) ? -1 : 0;
}

/* rm -rf @path (without a shell); 0 or -1. */
static inline int bench_rm_tree(const char *path)
{
	return nftw(path, bench_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
