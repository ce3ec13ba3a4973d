/* store-bench: what storing bytes in the block store costs in CPU, the
 * two ways blockfs stores them.
 *
 *   store-bench [--size-mb N] [--value-kib N] [--dir DIR]
 *
 *   blocks     as a mount stores new blocks: blk_txn_ref per block (large
 *              blocks skip the WAL and are journaled, journal.c J1), then
 *              blk_store_sync (memtable flush into blob files);
 *   fragments  as a storage node stores puts: a 64-byte header and the
 *              bytes in a large-value column family through the WAL, then
 *              blk_db_sync (WAL fsync). The memtable flush that later
 *              writes them into blob files is included: the test waits for
 *              it by closing the database.
 *
 * Values are random (so nothing compresses) and distinct. CPU seconds are
 * this process's user + system time, RocksDB's background threads
 * included, per GiB stored; the kernel's writeback of the page cache is
 * not (it runs in kworkers). Figures for telling how far a design is from
 * the floor on a given machine, not assertions.
 *
 * Exit status: 0 measured, 1 a step failed, 2 usage. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blocks/base/bench.h"
#include "blocks/cid.h"
#include "blocks/store/store.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define FRAG_HDR 64

static uint64_t xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill(uint8_t *p, size_t n, uint64_t *s)
{
	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t v = xorshift64(s);

		memcpy(p + i, &v, 8);
	}
}

static int run(const char *dir, bool frags, size_t size_mb, size_t value_kib)
{
	struct blk_cf_registry reg = {0};
	struct blk_db_options o = {.cfs = &reg, .create = true};
	int frags_cf = blk_cf_register(&reg, "frags", BLK_CF_LARGE);
	size_t len = value_kib * KiB, n = size_mb * MiB / len;
	uint8_t *buf = malloc(len + FRAG_HDR);
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	char path[4096], err[256];
	struct blk_db *db = NULL;
	struct blk_store *st = NULL;
	struct bench_clock a, b;
	double mbps, cpu;
	int rc = 1;

	snprintf(path, sizeof(path), "%s/store-bench.%ld.%s", dir,
		 (long)getpid(), frags ? "frags" : "blocks");
	if (!buf)
		goto out;
	if (blk_store_register(&reg, NULL) < 0 || frags_cf < 0 ||
	    blk_db_open(path, &o, &db, err, sizeof(err)) < 0 ||
	    blk_store_open(db, NULL, &st, err, sizeof(err)) < 0) {
		fprintf(stderr, "store-bench: %s: %s\n", path, err);
		goto out;
	}
	a = bench_clock_now();
	for (size_t i = 0; i < n; i++) {
		struct blk_txn *t = blk_txn_new(st);
		struct blk_cid cid = {.codec = 0x55};
		uint8_t key[40];
		int r;

		if (!t)
			goto out;
		/* Distinct bytes per value; filling them is not timed
		 * apart, but it is 1/40 of a memcpy's cost per byte. */
		fill(buf, 64, &seed);
		memcpy(cid.digest, buf, sizeof(cid.digest));
		if (frags) {
			key[0] = 'f';
			memcpy(key + 1, buf, 39);
			blk_txn_put2(t, (unsigned)frags_cf, key, sizeof(key),
				     buf, FRAG_HDR, buf + FRAG_HDR, len);
			r = 0;
		} else {
			r = blk_txn_ref(t, &cid, buf, len);
		}
		if (r == 0)
			r = blk_txn_commit(t, false);
		blk_txn_free(t);
		if (r < 0) {
			fprintf(stderr, "store-bench: commit: %s\n",
				strerror(-r));
			goto out;
		}
	}
	if (blk_store_sync(st) < 0) {
		fprintf(stderr, "store-bench: sync failed\n");
		goto out;
	}
	blk_store_close(st);
	st = NULL;
	blk_db_close(db); /* waits for the flush into blob files */
	db = NULL;
	b = bench_clock_now();
	bench_rates(n * len, a, b, &mbps, &cpu);
	printf("%-10s %8.1f MB/s %7.2f CPU-s/GiB  (%zu x %zu KiB)\n",
	       frags ? "fragments" : "blocks", mbps, cpu, n, value_kib);
	rc = 0;
out:
	blk_store_close(st);
	blk_db_close(db);
	if (bench_rm_tree(path) != 0 && errno != ENOENT)
		fprintf(stderr, "store-bench: could not remove %s: %s\n", path,
			strerror(errno));
	free(buf);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: store-bench [--size-mb N] [--value-kib N] [--dir DIR]\n"
	    "  --size-mb    bytes stored per test, MiB (default 1024)\n"
	    "  --value-kib  value size, KiB (default 256, the average chunk)\n"
	    "  --dir        where the scratch databases go (default /var/tmp)\n"
	    "Prints MB/s and CPU seconds per GiB of storing random values as\n"
	    "a mount stores blocks and as a node stores fragments.\n"
	    "exit status: 0 measured, 1 a step failed, 2 usage.\n");
}

int main(int argc, char **argv)
{
	const char *dir = "/var/tmp";
	size_t size_mb = 1024, value_kib = 256;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		unsigned long v;

		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			usage(stderr);
			return 2;
		}
		if (!strcmp(argv[i], "--dir")) {
			dir = argv[++i];
			continue;
		}
		if (!bench_parse_count(argv[i + 1], 1000000, &v)) {
			usage(stderr);
			return 2;
		}
		if (!strcmp(argv[i], "--size-mb"))
			size_mb = v;
		else if (!strcmp(argv[i], "--value-kib") && v <= 16384)
			value_kib = v;
		else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (value_kib > size_mb * 1024) {
		fprintf(stderr,
			"store-bench: --value-kib is larger than --size-mb\n");
		return 2;
	}
	rc |= run(dir, false, size_mb, value_kib);
	rc |= run(dir, true, size_mb, value_kib);
	return rc;
}
