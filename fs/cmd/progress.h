/* Progress lines on the terminal for the command's long jobs (the
 * unmount's upload; fsck, repair and export later): one line on stderr,
 * drawn again in place, when stderr is a terminal. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* A cl_progress_fn (net/cluster/uploader.h; @arg unused): when stderr is
 * a terminal, draw "blockfs: WHAT: N blocks left" over the line drawn
 * before and return true; else return false (the job logs the step). With
 * @what NULL, end the line drawn. Any thread, one job at a time. */
bool cmd_progress_draw(void *arg, uint64_t done, uint64_t total,
		       const char *what);

/* When stderr is a terminal, draw "blockfs: WHAT: N blocks, M MiB" over
 * the line drawn before (end it with cmd_progress_draw(NULL, 0, 0,
 * NULL)); else nothing. */
void cmd_progress_count(const char *what, uint64_t blocks, uint64_t bytes);
