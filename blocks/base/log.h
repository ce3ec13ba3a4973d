/* Daemon logging: to stderr, prefixed, with the level; no state. */
#pragma once

#include <stdio.h>

#define blk_log_err(fmt, ...)                                                  \
	fprintf(stderr, "blockfs: error: " fmt "\n", ##__VA_ARGS__)
#define blk_log_warn(fmt, ...)                                                 \
	fprintf(stderr, "blockfs: warning: " fmt "\n", ##__VA_ARGS__)
#define blk_log_info(fmt, ...)                                                 \
	fprintf(stderr, "blockfs: " fmt "\n", ##__VA_ARGS__)
