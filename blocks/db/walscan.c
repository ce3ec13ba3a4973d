/* The check of a database's write-ahead log before RocksDB replays it:
 * whether a record is damaged, and how many records the replay will drop
 * because of it (blk_db_wal_damage in db.h). */

/*
 * RocksDB replays its log in kPointInTimeRecovery mode (db.c says why):
 * up to the first damaged record, dropping everything after it, which it
 * notes only in its own info LOG. This scan reads the log the way its
 * reader does, so that the opener can say what was dropped.
 *
 * The log format (RocksDB's db/log_format.h, unchanged since LevelDB but
 * for the additions below): 32 KiB blocks of physical records, each a
 * header — masked CRC32C (u32 LE) of the bytes from the type on, length
 * (u16 LE), type (u8), and for the "recyclable" types a u32 log number —
 * then the payload. A logical record (one write batch) is one kFull
 * record, or kFirst, kMiddle..., kLast. Fewer than a header's bytes at
 * the end of a block are zero padding; a zero type and length is
 * preallocated space (the end of what was written).
 *
 * Counting: the logical record the first damaged physical record belongs
 * to, and every one that starts after it, in that file and in the later
 * ones: a sound kFull or kFirst, or a damaged piece that does not follow
 * a kFirst or kMiddle (which the next piece always continues). A damaged
 * piece's type is believed when its length fits the block; after a header
 * so damaged that it does not, the scan finds the next sound record of
 * the block by its CRC (a record hidden in the damage itself is missed). A
 * physical record cut short by the end of the file is a write the process
 * died in: not damage, and never acknowledged.
 */

#include "blocks/db/db-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blocks/base/bytes.h"
#include "blocks/base/crc32c.h"

#define WAL_BLOCK 32768u
#define HDR 7u
#define RECYCLABLE_HDR 11u
#define CRC_MASK_DELTA 0xa282ead8u

enum {
	T_ZERO = 0,
	T_FULL = 1,
	T_FIRST = 2,
	T_MIDDLE = 3,
	T_LAST = 4,
	T_RFULL = 5,
	T_RFIRST = 6,
	T_RMIDDLE = 7,
	T_RLAST = 8,
	T_SET_COMPRESSION = 9,
	T_TIMESTAMP_SIZE = 10,
	T_RTIMESTAMP_SIZE = 11,
};

static uint32_t unmask(uint32_t m)
{
	uint32_t rot = m - CRC_MASK_DELTA;

	return (rot >> 17) | (rot << 15);
}

/* The scan so far, carried from block to block and file to file. */
struct walscan {
	bool damaged;	  /* a damaged record was met */
	uint64_t records; /* counted since (invariant above) */
	bool end;	  /* the file's written bytes ended */
	/* The last physical record was a kFirst or kMiddle: the next one
	 * continues its logical record (the format guarantees it). */
	bool mid;
};

static bool starts(unsigned type)
{
	return type == T_FULL || type == T_FIRST || type == T_RFULL ||
	       type == T_RFIRST;
}

static bool continues(unsigned type)
{
	return type == T_FIRST || type == T_MIDDLE || type == T_RFIRST ||
	       type == T_RMIDDLE;
}

/* The header length of a physical record of @type. */
static size_t header_len(unsigned type)
{
	return (type >= T_RFULL && type <= T_RLAST) || type == T_RTIMESTAMP_SIZE
		   ? RECYCLABLE_HDR
		   : HDR;
}

/* Whether a sound physical record starts at @off of the block @blk (@len
 * bytes): a known type, a length within the block, its CRC right. */
static bool sound_at(const uint8_t *blk, size_t len, size_t off)
{
	const uint8_t *h = blk + off;
	size_t hlen = header_len(h[6]), plen = blk_get_le16(h + 4);

	return h[6] != T_ZERO && h[6] <= T_RTIMESTAMP_SIZE &&
	       off + hlen + plen <= len &&
	       unmask(blk_get_le32(h)) ==
		   blk_crc32c_extend(0, h + 6, hlen - 6 + plen);
}

/* One block of file @name at file offset @base: its @len bytes (fewer
 * than WAL_BLOCK only at the end of the file). */
static void scan_block(struct walscan *s, const uint8_t *blk, size_t len,
		       uint64_t base, const char *name,
		       struct blk_wal_damage *out)
{
	size_t off = 0;

	while (off + HDR <= WAL_BLOCK && !s->end) {
		if (len - off < HDR) {
			/* cut short: the process died writing it */
			s->end = off < len || len < WAL_BLOCK;
			return;
		}
		const uint8_t *h = blk + off;
		unsigned type = h[6];
		size_t hlen = header_len(type);
		size_t plen = blk_get_le16(h + 4);

		if (type == T_ZERO && plen == 0) {
			s->end = true; /* preallocated, never written */
			return;
		}
		bool fits =
		    off + hlen + plen <= WAL_BLOCK && type <= T_RTIMESTAMP_SIZE;
		if (fits && off + hlen + plen > len) {
			s->end = true; /* cut short */
			return;
		}
		bool sound =
		    fits && unmask(blk_get_le32(h)) ==
				blk_crc32c_extend(0, h + 6, hlen - 6 + plen);
		if (!sound) {
			/* The first damaged piece drops its record; a later
			 * one starts another unless it continues one. */
			if (!s->damaged) {
				s->damaged = true;
				s->records = 1;
				snprintf(out->file, sizeof(out->file), "%s",
					 name);
				out->offset = base + off;
			} else if (!s->mid) {
				s->records++;
			}
			/* Its type is believed when its length fits (the
			 * damage is in its payload, most likely). */
			s->mid = fits && continues(type);
			if (!fits) {
				/* A damaged header: its length is no guide.
				 * The next sound record in the block, if any,
				 * is found by its CRC (RocksDB's reader drops
				 * the rest of the block: that is counted). */
				size_t at = off + 1;
				while (at + HDR <= len &&
				       !sound_at(blk, len, at))
					at++;
				if (at + HDR > len)
					return;
				off = at;
				continue;
			}
		} else {
			if (s->damaged && !s->mid && starts(type))
				s->records++;
			s->mid = continues(type);
		}
		off += hlen + plen;
	}
}

/* Scan @dir/@name block by block. 0 or -errno. */
static int scan_file(struct walscan *s, const char *dir, const char *name,
		     uint8_t *blk, struct blk_wal_damage *out)
{
	char path[4096];
	uint64_t base = 0;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	s->end = false;
	while (!s->end) {
		size_t len = 0;

		while (len < WAL_BLOCK) {
			ssize_t r = pread(fd, blk + len, WAL_BLOCK - len,
					  (off_t)(base + len));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				rc = -errno;
			if (r <= 0)
				break;
			len += (size_t)r;
		}
		if (rc || len == 0)
			break;
		scan_block(s, blk, len, base, name, out);
		if (len < WAL_BLOCK)
			break;
		base += WAL_BLOCK;
	}
	close(fd);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The log files of @dir (NNNNNN.log), in number (= name) order. */
static int list_logs(const char *dir, char ***names, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t cap = 0;
	int rc = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		char **p;

		if (l < 5 || strcmp(de->d_name + l - 4, ".log") ||
		    strspn(de->d_name, "0123456789") != l - 4)
			continue;
		p = blk_grow(*names, &cap, *n, sizeof(**names), 8);
		if (!p || !(p[*n] = strdup(de->d_name))) {
			*names = p ? p : *names;
			rc = -ENOMEM;
			break;
		}
		*names = p;
		(*n)++;
	}
	closedir(d);
	if (rc == 0 && *n)
		qsort(*names, *n, sizeof(**names), name_cmp);
	return rc;
}

int wal_scan(const char *dir, struct blk_wal_damage *out)
{
	struct walscan s = {0};
	uint8_t *blk = malloc(WAL_BLOCK);
	char **names = NULL;
	size_t n = 0;
	int rc = blk ? list_logs(dir, &names, &n) : -ENOMEM;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = scan_file(&s, dir, names[i], blk, out);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(blk);
	if (rc == 0 && s.damaged)
		out->records = s.records;
	return rc;
}
