/* Deadlines on CLOCK_MONOTONIC, and condition variables whose timed waits
 * measure them on that clock: a wall-clock step (NTP, date -s) neither
 * fires a deadline early nor holds it back. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* *@ts = now + @ms, on CLOCK_MONOTONIC. */
void blk_deadline(struct timespec *ts, uint64_t ms);

/* Whether the monotonic deadline @ts has passed. */
bool blk_deadline_passed(const struct timespec *ts);

/* Milliseconds until @ts (0 once passed). */
uint64_t blk_deadline_left_ms(const struct timespec *ts);

/* pthread_cond_init for a condition variable that pthread_cond_timedwait
 * waits on with blk_deadline's deadlines. 0 or a negative errno. */
int blk_cond_init(pthread_cond_t *cond);
