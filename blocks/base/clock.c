/* Monotonic deadlines and the condition variables that wait for them; see
 * clock.h. */
#include "blocks/base/clock.h"

#include <errno.h>

#define NS 1000000000L

void blk_deadline(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= NS) {
		ts->tv_sec++;
		ts->tv_nsec -= NS;
	}
}

bool blk_deadline_passed(const struct timespec *ts)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > ts->tv_sec ||
	       (now.tv_sec == ts->tv_sec && now.tv_nsec >= ts->tv_nsec);
}

uint64_t blk_deadline_left_ms(const struct timespec *ts)
{
	struct timespec now;
	int64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (int64_t)(ts->tv_sec - now.tv_sec) * 1000 +
	     (ts->tv_nsec - now.tv_nsec) / 1000000L;
	return ms > 0 ? (uint64_t)ms : 0;
}

int blk_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);

	if (rc)
		return -rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
	return -rc;
}
