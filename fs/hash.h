/* The hash helper: a thread that hashes a flush's chunks beside the
 * flusher that asked, so that a flush uses two cores. It owns one job
 * slot, its lock and its thread; nothing else of the filesystem. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks/cid.h"

/* A chunk of a run (write.c): where content-defined chunking cut it. */
struct chunk {
	uint64_t off; /* file offset */
	uint32_t len;
	bool natural; /* a content-defined cut, not the end of the data */
};

/* One run's chunks to hash: items are claimed with an atomic counter by
 * the flusher and the helper thread alike. */
struct hash_job {
	const uint8_t *base;
	uint64_t base_off;
	const struct chunk *ch;
	size_t n;
	struct blk_cid *cids;
	bool *zero;
	enum blk_hash hash; /* of the CIDs */
	size_t next;	    /* atomic: next item to claim */
	unsigned users;	    /* bfs_hasher.lock: helpers inside */
};

/* Lock: lock, a leaf (nothing is taken while it is held). */
struct bfs_hasher {
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* lock: a job was posted, or stop */
	pthread_cond_t done;  /* lock: a helper left a job */
	struct hash_job *job; /* lock: the job helpers may join */
	bool stop;	      /* lock */
	pthread_t thread;     /* start/stop only */
	bool started;	      /* start/stop only */
};

void bfs_hasher_init(struct bfs_hasher *h);
/* Start the helper thread; false if it could not start (hashing then
 * runs on the flushers alone). */
bool bfs_hasher_start(struct bfs_hasher *h);
/* Stop and join the thread (if it started); a no-op otherwise. */
void bfs_hasher_stop(struct bfs_hasher *h);
void bfs_hasher_destroy(struct bfs_hasher *h);
/* Hash every chunk of @j (all-zero chunks are marked, not hashed), with
 * the helper thread if it is free. */
void bfs_hash_chunks(struct bfs_hasher *h, struct hash_job *j);
