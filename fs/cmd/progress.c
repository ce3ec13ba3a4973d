/* Progress lines on the terminal; see progress.h. */
#include "fs/cmd/progress.h"

#include <stdio.h>
#include <unistd.h>

bool cmd_progress_draw(void *arg, uint64_t done, uint64_t total,
		       const char *what)
{
	(void)arg;
	if (!isatty(STDERR_FILENO))
		return false;
	if (!what)
		fprintf(stderr, "\n");
	else
		fprintf(stderr, "\rblockfs: %s: %llu blocks left   ", what,
			(unsigned long long)(total > done ? total - done : 0));
	return true;
}

void cmd_progress_count(const char *what, uint64_t blocks, uint64_t bytes)
{
	if (!isatty(STDERR_FILENO))
		return;
	fprintf(stderr, "\rblockfs: %s: %llu blocks, %llu MiB   ", what,
		(unsigned long long)blocks, (unsigned long long)(bytes >> 20));
}
