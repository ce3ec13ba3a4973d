/* The unit tests' one assertion: count passes, report failures with their
 * place, never stop (so one run shows every failure). */
#pragma once

#include <stdio.h>

static unsigned int passed, failed;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (cond) {                                                  \
			passed++;                                            \
		} else {                                                     \
			failed++;                                            \
			fprintf(stderr, "%s:%d: check failed: %s\n",         \
				__FILE__, __LINE__, #cond);                  \
		}                                                            \
	} while (0)
