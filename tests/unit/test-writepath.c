/* Model-based test of the write path through fs/bfs.h: a seeded random
 * sequence of writes, overwrites, truncates, flushes, reads, unlinks and
 * remounts on a few files of a single-node filesystem, checked against a
 * byte array per file, and the extent maps and block references checked
 * against the store at checkpoints and at the end.
 *
 * What is checked:
 *  1. Every read returns the model's bytes (holes read as zeros) and the
 *     model's length; every file's size is the model's.
 *  2. A file's extents are sorted, non-empty, disjoint, end within the
 *     file's size and are no longer than the longest chunk configured
 *     (reads look back only that far, extent.h).
 *  3. Once every file is flushed: every extent's block hashes to its CID
 *     from the model's bytes, is stored here with its length, and has as
 *     many references as extents point at it; bytes no extent covers are
 *     zeros in the model; the store's statistics equal the sums over the
 *     extents (store.h invariants 1 and 3); st_blocks counts the extents'
 *     bytes; the dirty-memory count equals the bytes the files buffer.
 *  4. With every file unlinked or truncated to 0: no extent is left, the
 *     store holds no block and no referenced byte, and no block seen in an
 *     extent during the run is still stored (store.h invariant 1), also
 *     after a remount; no room reserved by fallocate is left.
 *  5. SEEK_DATA skips only bytes that are zeros in the model, SEEK_HOLE
 *     stops at one, and both give ENXIO at or past the end.
 *
 * Beside writes, truncates and reads, the sequence punches holes, zeroes
 * ranges and reserves room (fallocate), which the model sees as zeros.
 *
 * WRITEPATH_SEED (default: from the clock) and WRITEPATH_STEPS choose the
 * sequence, WRITEPATH_CHUNKER (fixed, fastcdc; default both) the chunker;
 * a failure prints the three with the tail of the operations. The
 * flusher threads run beside the sequence, so a replay takes the same
 * operations but not always the same flush timing. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blocks/cid.h"
#include "blocks/store/store.h"
#include "fs/bfs-int.h"
#include "fs/bfs.h"
#include "fs/extent.h"
#include "fs/meta.h"

#include "tests/unit/check.h"

#define NFILES 3
#define FILE_CAP (160u << 10) /* largest file the model holds */
#define DEFAULT_STEPS 1200
#define TAIL 40		    /* operations printed on a failure */
#define PURGE_WAIT_MS 10000 /* for a background flush to drop a file */

/* One file of the model. */
struct mfile {
	uint64_t ino;	      /* 0: not created */
	struct bfs_inode *ip; /* referenced while the fs is open */
	struct bfs_file *f;   /* an open handle, or NULL */
	uint8_t *data;	      /* FILE_CAP bytes, zeros at and past size */
	uint64_t size;
	unsigned gen; /* names: f<slot>.<gen> */
};

/* A CID with a count and a length, in an open-addressing set. */
struct cident {
	struct blk_cid cid;
	uint64_t count;
	uint32_t len;
	bool used;
};

struct cidset {
	struct cident *v;
	size_t cap, n;
};

static struct {
	uint64_t seed, rng;
	unsigned long step, steps;
	const char *mode;
	bool broken;   /* a mismatch was seen: stop the sequence */
	bool reported; /* its tail was printed for this step */
	char tail[TAIL][120];
	unsigned long ntail;

	char dir[64];
	struct bfs_config cfg;
	struct bfs *fs;
	uint64_t max_extent; /* longest chunk of any config used so far */
	struct mfile files[NFILES];
	uint64_t pending[64]; /* unlinked inodes a flusher may still hold */
	size_t npending;
	struct cidset seen; /* every CID met in an extent */
	uint8_t *buf;	    /* scratch: FILE_CAP bytes */
} S;

/* ---- failure reports ---------------------------------------------------- */

__attribute__((format(printf, 1, 2))) static void op_log(const char *fmt, ...)
{
	va_list ap;
	char *line = S.tail[S.ntail++ % TAIL];

	int n = snprintf(line, sizeof(S.tail[0]), "%lu: ", S.step);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(S.tail[0]) - (size_t)n, fmt, ap);
	va_end(ap);
}

static void mismatch(int line, const char *what)
{
	failed++;
	fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, line, what);
	S.broken = true;
	if (S.reported)
		return;
	S.reported = true;
	fprintf(stderr,
		"writepath: mismatch at step %lu, chunker %s\n"
		"  replay: WRITEPATH_SEED=0x%016" PRIx64
		" WRITEPATH_STEPS=%lu WRITEPATH_CHUNKER=%s\n"
		"  last operations:\n",
		S.step, S.mode, S.seed, S.step + 1, S.mode);
	unsigned long from = S.ntail > TAIL ? S.ntail - TAIL : 0;
	for (unsigned long i = from; i < S.ntail; i++)
		fprintf(stderr, "    %s\n", S.tail[i % TAIL]);
}

/* CHECK, plus the replay report on the first failure. */
#define MCHECK(cond)                                                           \
	do {                                                                   \
		if (cond)                                                      \
			passed++;                                              \
		else                                                           \
			mismatch(__LINE__, #cond);                             \
	} while (0)

/* ---- helpers --------------------------------------------------------------
 */

static uint64_t rnd(void)
{
	return xorshift64(&S.rng);
}

/* Uniform in [0, n); 0 when n is 0. */
static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static uint64_t umin(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static bool zeros(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static bool cidset_grow(struct cidset *s);

static uint64_t cid_hash(const struct blk_cid *c)
{
	uint64_t h;

	memcpy(&h, c->digest, sizeof(h));
	return h ^ c->codec;
}

/* The entry of @cid, added with count 0 if missing. */
static struct cident *cidset_get(struct cidset *s, const struct blk_cid *cid)
{
	if ((s->n + 1) * 2 > s->cap)
		REQUIRE(cidset_grow(s));
	size_t i = (size_t)cid_hash(cid) & (s->cap - 1);
	while (s->v[i].used && !blk_cid_equal(&s->v[i].cid, cid))
		i = (i + 1) & (s->cap - 1);
	if (!s->v[i].used) {
		s->v[i] = (struct cident){.cid = *cid, .used = true};
		s->n++;
	}
	return &s->v[i];
}

static bool cidset_grow(struct cidset *s)
{
	struct cidset g = {.cap = s->cap ? s->cap * 2 : 1024};

	g.v = calloc(g.cap, sizeof(*g.v));
	if (!g.v)
		return false;
	for (size_t i = 0; i < s->cap; i++) {
		if (s->v[i].used)
			*cidset_get(&g, &s->v[i].cid) = s->v[i];
	}
	free(s->v);
	*s = g;
	return true;
}

static void cidset_free(struct cidset *s)
{
	free(s->v);
	*s = (struct cidset){0};
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* ---- the filesystem --------------------------------------------------------
 */

static uint64_t cfg_max(const struct bfs_config *c)
{
	return c->chunker == CDC_FIXED ? c->chunk_avg : c->chunk_max;
}

static void fs_open(void)
{
	char err[256] = "";
	int ret = bfs_open(&S.cfg, &S.fs, err, sizeof(err));

	if (ret)
		fprintf(stderr, "bfs_open: %s\n", err);
	REQUIRE(ret == 0);
	if (cfg_max(&S.cfg) > S.max_extent)
		S.max_extent = cfg_max(&S.cfg);
	for (int i = 0; i < NFILES; i++) {
		struct mfile *m = &S.files[i];
		if (!m->ino)
			continue;
		MCHECK(bfs_iget(S.fs, m->ino, &m->ip) == 0);
		if (!m->ip)
			m->ino = 0; /* lost: the checks have said so */
	}
}

static void handle_close(struct mfile *m)
{
	if (!m->f)
		return;
	MCHECK(bfs_release_file(S.fs, m->f) == 0);
	m->f = NULL;
}

static void fs_close(void)
{
	for (int i = 0; i < NFILES; i++) {
		handle_close(&S.files[i]);
		bfs_iput(S.fs, S.files[i].ip);
		S.files[i].ip = NULL;
	}
	MCHECK(bfs_close(S.fs) == 0);
	S.fs = NULL;
	S.npending = 0; /* bfs_close waits for the flushers */
}

static void file_create(struct mfile *m, int slot)
{
	char name[32];
	struct bfs_inode *ip = NULL;

	snprintf(name, sizeof(name), "f%d.%u", slot, m->gen++);
	int ret = bfs_mknod(S.fs, BFS_ROOT_INO, name, S_IFREG | 0644, 0, 0,
			    getuid(), getgid(), NULL, &ip);
	MCHECK(ret == 0);
	m->ip = ip;
	m->ino = ip ? ip->ino : 0;
	m->f = NULL;
	m->size = 0;
	memset(m->data, 0, FILE_CAP);
}

static uint64_t stat_size(struct mfile *m)
{
	struct stat st;

	bfs_stat(m->ip, &st);
	return (uint64_t)st.st_size;
}

/* The inode record of @ino is gone (the file's data was freed). */
static bool ino_gone(uint64_t ino)
{
	uint8_t key[8];
	void *val = NULL;
	size_t vlen;
	int ret = blk_db_get(bfs_db(S.fs), BFS_CF_INODES, key,
			     bfs_ino_key(key, ino), &val, &vlen);

	free(val);
	return ret == -ENOENT;
}

/* Wait until the flushers have dropped the files unlinked while queued. */
static void wait_purged(void)
{
	for (size_t i = 0; i < S.npending; i++) {
		int waited = 0;
		while (!ino_gone(S.pending[i]) && waited < PURGE_WAIT_MS) {
			usleep(5000);
			waited += 5;
		}
		MCHECK(ino_gone(S.pending[i]));
	}
	S.npending = 0;
}

/* ---- checks ----------------------------------------------------------------
 */

static bool read_eq(struct mfile *m, uint64_t off, size_t len)
{
	struct bfs_file *f = m->f;
	bool tmp = !f;

	if (tmp && bfs_open_file(S.fs, m->ip, false, &f))
		return false;
	uint64_t want = off < m->size ? umin(len, m->size - off) : 0;
	int64_t got = bfs_read(S.fs, f, off, S.buf, len);
	bool ok = got >= 0 && (uint64_t)got == want &&
		  memcmp(S.buf, m->data + off, want) == 0;
	if (!ok) {
		size_t i = 0;
		while (got > 0 && i < (size_t)got &&
		       S.buf[i] == m->data[off + i])
			i++;
		fprintf(stderr,
			"writepath: read ino %" PRIu64 " [%" PRIu64 ", +%zu): "
			"got %" PRId64 " of %" PRIu64 " bytes, first "
			"difference at offset %" PRIu64 "\n",
			m->ino, off, len, got, want, off + i);
	}
	if (tmp)
		bfs_release_file(S.fs, f);
	return ok;
}

/* Invariant 2 for one file; its extents go into *out when asked for. */
static void check_extent_shape(struct mfile *m, struct bfs_extent_list *out)
{
	struct bfs_extent_list l = {0};
	uint64_t end = 0, size = stat_size(m);

	MCHECK(bfs_extents_in(bfs_db(S.fs), BFS_CF_EXTENTS, m->ino, 0,
			      UINT64_MAX, BFS_EXTENT_MAX, &l) == 0);
	for (size_t k = 0; k < l.n; k++) {
		const struct bfs_extent *e = &l.v[k];
		MCHECK(e->len > 0);
		MCHECK(e->off >= end); /* sorted and disjoint */
		MCHECK(e->len <= S.max_extent);
		MCHECK(e->off + e->len <= size);
		end = e->off + e->len;
		cidset_get(&S.seen, &e->cid);
	}
	if (out)
		*out = l;
	else
		bfs_extent_list_free(&l);
}

/* Invariant 3 for one file (flushed), counting its extents into @live. */
static void check_extent_blocks(struct mfile *m, struct cidset *live)
{
	struct bfs_extent_list l = {0};
	struct blk_store *db = bfs_store(S.fs);
	uint64_t covered = 0, pos = 0;

	check_extent_shape(m, &l);
	for (size_t k = 0; k < l.n && !S.broken; k++) {
		const struct bfs_extent *e = &l.v[k];
		struct blk_cid want;
		uint64_t refs = 0;
		uint32_t len = 0;
		bool local = false;

		if (e->off + e->len > FILE_CAP)
			break; /* reported by the shape check */
		MCHECK(zeros(m->data + pos, e->off - pos));
		pos = e->off + e->len;
		blk_cid_compute(&want, BLK_CODEC_RAW, m->data + e->off, e->len);
		MCHECK(blk_cid_equal(&want, &e->cid));
		MCHECK(blk_store_info(db, &e->cid, &refs, &len, &local) == 0);
		MCHECK(refs >= 1 && len == e->len && local);
		struct cident *c = cidset_get(live, &e->cid);
		c->count++;
		c->len = e->len;
		covered += e->len;
	}
	if (pos < m->size)
		MCHECK(zeros(m->data + pos, m->size - pos));
	struct stat st;
	bfs_stat(m->ip, &st);
	pthread_mutex_lock(&m->ip->lock);
	uint64_t resv = m->ip->resv_bytes; /* room fallocate set aside */
	pthread_mutex_unlock(&m->ip->lock);
	MCHECK((uint64_t)st.st_blocks == (covered + resv + 511) / 512);
	bfs_extent_list_free(&l);
}

/* The bytes the open files hold in memory (dirty and being flushed). */
static uint64_t held_bytes(void)
{
	uint64_t n = 0;

	for (int i = 0; i < NFILES; i++) {
		struct bfs_inode *ip = S.files[i].ip;
		if (!ip)
			continue;
		pthread_mutex_lock(&ip->lock);
		n += ip->dirty.bytes + ip->flushing.bytes;
		pthread_mutex_unlock(&ip->lock);
	}
	return n;
}

/* Each file's reserved ranges are sorted, disjoint and add up to its
 * resv_bytes; the files' reservations add up to the filesystem's. */
static void check_reservations(void)
{
	uint64_t total = 0;

	for (int i = 0; i < NFILES; i++) {
		struct bfs_inode *ip = S.files[i].ip;
		uint64_t sum = 0, end = 0;
		if (!ip)
			continue;
		pthread_mutex_lock(&ip->lock);
		for (size_t k = 0; k < ip->nresv; k++) {
			MCHECK(ip->resv[k].off < ip->resv[k].end);
			MCHECK(k == 0 || ip->resv[k].off > end);
			end = ip->resv[k].end;
			sum += ip->resv[k].end - ip->resv[k].off;
		}
		MCHECK(sum == ip->resv_bytes);
		total += ip->resv_bytes;
		pthread_mutex_unlock(&ip->lock);
	}
	MCHECK(__atomic_load_n(&S.fs->space.claimed, __ATOMIC_RELAXED) ==
	       total);
}

/* Flush every file and check invariants 1-3 on all of them. */
static void checkpoint(void)
{
	struct cidset live = {0};
	struct blk_store_stats st;
	uint64_t bytes = 0, ref_bytes = 0;

	op_log("checkpoint");
	for (int i = 0; i < NFILES; i++)
		MCHECK(bfs_fsync(S.fs, S.files[i].ip, false) == 0);
	wait_purged();
	MCHECK(bfs_dirty_bytes(S.fs) == held_bytes());
	check_reservations();
	for (int i = 0; i < NFILES && !S.broken; i++) {
		struct mfile *m = &S.files[i];
		MCHECK(stat_size(m) == m->size);
		MCHECK(read_eq(m, 0, FILE_CAP));
		check_extent_blocks(m, &live);
	}
	if (S.broken) {
		cidset_free(&live);
		return; /* the counts below would only repeat it */
	}
	for (size_t i = 0; i < live.cap && !S.broken; i++) {
		const struct cident *c = &live.v[i];
		uint64_t refs = 0;
		uint32_t len;
		if (!c->used)
			continue;
		MCHECK(blk_store_refs(bfs_store(S.fs), &c->cid, &refs, &len) ==
		       0);
		MCHECK(refs == c->count);
		bytes += c->len;
		ref_bytes += c->count * c->len;
	}
	MCHECK(blk_store_stats(bfs_store(S.fs), &st) == 0);
	MCHECK(st.blocks == live.n);
	MCHECK(st.bytes == bytes);
	MCHECK(st.ref_bytes == ref_bytes);
	cidset_free(&live);
}

/* Invariant 4: nothing is left of any file's data. */
static void check_all_freed(void)
{
	struct blk_db *db = bfs_db(S.fs);
	struct blk_store_stats st;

	struct blk_iter *it =
	    blk_iter_new(db, BFS_CF_EXTENTS, NULL, 0, NULL, 0);
	REQUIRE(it);
	MCHECK(!blk_iter_valid(it));
	MCHECK(blk_iter_status(it) == 0);
	blk_iter_free(it);
	MCHECK(blk_store_stats(bfs_store(S.fs), &st) == 0);
	MCHECK(st.blocks == 0 && st.bytes == 0 && st.ref_bytes == 0);
	for (size_t i = 0; i < S.seen.cap && !S.broken; i++) {
		const struct cident *c = &S.seen.v[i];
		uint64_t refs = 0;
		uint32_t len;
		bool local;
		if (!c->used)
			continue;
		MCHECK(blk_store_has(bfs_store(S.fs), &c->cid) == 0);
		int ret = blk_store_info(bfs_store(S.fs), &c->cid, &refs, &len,
					 &local);
		MCHECK(ret == -ENOENT || (ret == 0 && refs == 0));
	}
}

/* ---- operations
 * -------------------------------------------------------------- */

/* Fill @p with random bytes, zeros (they stay holes), or a short
 * repeated pattern. */
static const char *fill(uint8_t *p, size_t len)
{
	uint64_t kind = below(100);

	if (kind < 15) {
		memset(p, 0, len);
		return "zeros";
	}
	if (kind < 30) {
		uint8_t pat[16];
		size_t plen = 1 + below(sizeof(pat));
		fill_random(pat, plen, rnd());
		for (size_t i = 0; i < len; i++)
			p[i] = pat[i % plen];
		return "pattern";
	}
	fill_random(p, len, rnd());
	return "random";
}

static uint64_t pick_offset(const struct mfile *m)
{
	uint64_t kind = below(100), chunk = S.cfg.chunk_avg;

	if (kind < 30)
		return m->size; /* append */
	if (kind < 45)
		return m->size + below(8192); /* past EOF: a hole */
	if (kind < 75)
		return below(m->size + 1);
	/* near a chunk boundary: straddling it */
	uint64_t b = chunk * below(m->size / chunk + 2);
	return b > 32 ? b - 32 + below(64) : below(64);
}

static size_t pick_length(void)
{
	uint64_t kind = below(100);

	if (kind < 50)
		return 1 + below(256);
	if (kind < 85)
		return 257 + below(8192);
	return 8192 + below(32768);
}

static void op_write(struct mfile *m, int slot, const struct mfile *from)
{
	uint64_t off = pick_offset(m);
	size_t len = pick_length();

	if (off >= FILE_CAP)
		off = below(FILE_CAP);
	len = umin(len, FILE_CAP - off);
	const char *what = "copy";
	if (from)
		memcpy(S.buf, from->data + off, len); /* same blocks: dedup */
	else
		what = fill(S.buf, len);
	op_log("write f%d [%" PRIu64 ", +%zu) %s", slot, off, len, what);
	int64_t ret = bfs_write(S.fs, m->ip, off, S.buf, len);
	MCHECK(ret == (int64_t)len);
	if (ret != (int64_t)len)
		return;
	memcpy(m->data + off, S.buf, len);
	if (off + len > m->size)
		m->size = off + len;
}

static void op_truncate(struct mfile *m, int slot)
{
	uint64_t size, kind = below(100), chunk = S.cfg.chunk_avg;

	if (kind < 50)
		size = below(m->size + 1);
	else if (kind < 65)
		size = umin(chunk * below(m->size / chunk + 1), m->size);
	else
		size = umin(m->size + below(16384), FILE_CAP);
	op_log("truncate f%d %" PRIu64 " -> %" PRIu64, slot, m->size, size);
	struct stat st = {.st_size = (off_t)size};
	MCHECK(bfs_setattr(S.fs, m->ip, &st, BFS_SET_SIZE) == 0);
	if (size < m->size)
		memset(m->data + size, 0, m->size - size);
	m->size = size;
}

/* fallocate: punch a hole, zero a range (keeping the size or not), or
 * reserve room (mode 0 grows the file). */
static void op_fallocate(struct mfile *m, int slot)
{
	static const int modes[] = {0x03, 0x03, 0x03, 0x11, 0x11, 0x10, 0, 1};
	int mode = modes[below(sizeof(modes) / sizeof(modes[0]))];
	uint64_t off = below(m->size + 2048);
	uint64_t len = 1 + (below(2) ? below(512) : below(24576));

	if (off >= FILE_CAP)
		off = below(FILE_CAP);
	len = umin(len, FILE_CAP - off);
	op_log("fallocate f%d mode %#x [%" PRIu64 ", +%" PRIu64 ")", slot, mode,
	       off, len);
	MCHECK(bfs_fallocate(S.fs, m->ip, mode, off, len) == 0);
	if (mode & 0x12)
		memset(m->data + off, 0,
		       umin(len, m->size > off ? m->size - off : 0));
	if (!(mode & 1) && off + len > m->size)
		m->size = off + len;
}

/* SEEK_DATA and SEEK_HOLE from a random offset: what they skip reads as
 * zeros in the model, and past the end is ENXIO. */
static void op_seek(struct mfile *m, int slot)
{
	uint64_t off = below(m->size + 100);

	op_log("seek f%d %" PRIu64, slot, off);
	int64_t d = bfs_seek_data_hole(S.fs, m->ip, off, SEEK_DATA);
	int64_t h = bfs_seek_data_hole(S.fs, m->ip, off, SEEK_HOLE);
	if (off >= m->size) {
		MCHECK(d == -ENXIO && h == -ENXIO);
		return;
	}
	MCHECK(d == -ENXIO || (d >= (int64_t)off && d < (int64_t)m->size));
	uint64_t dend = d < 0 ? m->size : (uint64_t)d;
	if (dend <= m->size)
		MCHECK(zeros(m->data + off, dend - off));
	MCHECK(h >= (int64_t)off && h <= (int64_t)m->size);
	if (h < (int64_t)off || h >= (int64_t)m->size)
		return;
	int64_t d2 = bfs_seek_data_hole(S.fs, m->ip, (uint64_t)h, SEEK_DATA);
	MCHECK(d2 == -ENXIO || (d2 > h && d2 < (int64_t)m->size));
	uint64_t hend = d2 < 0 ? m->size : (uint64_t)d2;
	if (hend <= m->size)
		MCHECK(zeros(m->data + h, hend - (uint64_t)h));
}

static void op_read(struct mfile *m, int slot)
{
	uint64_t off = below(m->size + 1024);
	size_t len = 1 + below(16384);

	if (off >= FILE_CAP)
		off = FILE_CAP - 1;
	len = umin(len, FILE_CAP - off);
	op_log("read f%d [%" PRIu64 ", +%zu)%s", slot, off, len,
	       m->f ? "" : " (new handle)");
	MCHECK(read_eq(m, off, len));
}

/* Unlink the file, with or without its handle, dirty or not, and create
 * a new one in its slot. A flusher may hold the old inode: it is freed
 * when that flush ends. */
static void op_replace(struct mfile *m, int slot)
{
	char name[32];

	snprintf(name, sizeof(name), "f%d.%u", slot, m->gen - 1);
	op_log("unlink f%d (%s, handle %s)", slot, name,
	       m->f ? "open" : "none");
	MCHECK(bfs_unlink(S.fs, BFS_ROOT_INO, name, false) == 0);
	handle_close(m);
	bfs_iput(S.fs, m->ip);
	if (S.npending < sizeof(S.pending) / sizeof(S.pending[0]))
		S.pending[S.npending++] = m->ino;
	else
		wait_purged();
	file_create(m, slot);
}

static void op_reopen(void)
{
	op_log("remount");
	fs_close();
	/* Change the longest chunk now and then: extents written under
	 * the other setting must stay readable. */
	if (below(2)) {
		if (S.cfg.chunker == CDC_FIXED)
			S.cfg.chunk_avg = S.cfg.chunk_avg == 1536 ? 1024 : 1536;
		else
			S.cfg.chunk_max =
			    S.cfg.chunk_max == 4096 ? 16384 : 4096;
	}
	fs_open();
	for (int i = 0; i < NFILES; i++) {
		struct mfile *m = &S.files[i];
		if (m->ip)
			MCHECK(stat_size(m) == m->size);
	}
}

static void step(void)
{
	int slot = (int)below(NFILES);
	struct mfile *m = &S.files[slot];
	uint64_t r = below(1000);

	if (r < 380) {
		op_write(m, slot, NULL);
	} else if (r < 440) {
		op_write(m, slot, &S.files[(slot + 1) % NFILES]);
	} else if (r < 520) {
		op_truncate(m, slot);
	} else if (r < 580) {
		op_fallocate(m, slot);
	} else if (r < 620) {
		op_seek(m, slot);
	} else if (r < 780) {
		op_read(m, slot);
	} else if (r < 830) {
		bool durable = below(2);
		op_log("fsync f%d%s", slot, durable ? " durable" : "");
		MCHECK(bfs_fsync(S.fs, m->ip, durable) == 0);
	} else if (r < 860) {
		op_log("flush_async f%d", slot);
		bfs_flush_async(S.fs, m->ip);
	} else if (r < 910) {
		op_log("%s handle f%d", m->f ? "release" : "open", slot);
		if (m->f)
			handle_close(m);
		else
			MCHECK(bfs_open_file(S.fs, m->ip, true, &m->f) == 0);
	} else if (r < 925) {
		op_replace(m, slot);
	} else if (r < 970) {
		checkpoint();
	} else if (r < 975) {
		op_reopen();
	} else {
		op_log("sync_all");
		MCHECK(bfs_sync_all(S.fs) == 0);
	}
	if (!S.broken) {
		MCHECK(stat_size(m) == m->size);
		check_extent_shape(m, NULL);
	}
}

/* Unlink or empty every file, then check that every block went. */
static void finish(void)
{
	for (int i = 0; i < NFILES; i++) {
		struct mfile *m = &S.files[i];
		if (below(2)) {
			op_replace(m, i);
		} else {
			op_log("truncate f%d to 0", i);
			struct stat st = {.st_size = 0};
			MCHECK(bfs_setattr(S.fs, m->ip, &st, BFS_SET_SIZE) ==
			       0);
			memset(m->data, 0, FILE_CAP);
			m->size = 0;
		}
	}
	checkpoint();
	check_all_freed();
	/* every reservation went with its file's data */
	MCHECK(__atomic_load_n(&S.fs->space.claimed, __ATOMIC_RELAXED) == 0);
	op_log("remount");
	fs_close();
	fs_open();
	check_all_freed();
}

static void run(enum cdc_kind chunker)
{
	S.mode = chunker == CDC_FIXED ? "fixed" : "fastcdc";
	S.rng = S.seed ^ (chunker == CDC_FIXED ? 0x5bd1e995 : 0);
	if (!S.rng)
		S.rng = 1;
	S.broken = S.reported = false;
	S.ntail = 0;
	S.max_extent = 0;
	S.npending = 0;
	snprintf(S.dir, sizeof(S.dir), "%s", "/tmp/test-writepath.XXXXXX");
	REQUIRE(mkdtemp(S.dir));
	/* Small chunks and small dirty limits: a file of FILE_CAP holds
	 * about a hundred blocks, and flushes start every few writes, in
	 * the background and in writers over the bound. */
	S.cfg = (struct bfs_config){
	    .node_dir = S.dir,
	    .chunker = chunker,
	    .hash = BLK_HASH_DEFAULT,
	    .chunk_min = 256,
	    .chunk_avg = chunker == CDC_FIXED ? 1536 : 1024,
	    .chunk_max = 4096,
	    .cache_bytes = 8u << 20,
	    .dirty_max = 96u << 10,
	    .flush_at = 8u << 10,
	    .flushers = 2,
	};
	for (int i = 0; i < NFILES; i++)
		S.files[i] = (struct mfile){.data = xmalloc(FILE_CAP)};
	fs_open();
	for (int i = 0; i < NFILES; i++)
		file_create(&S.files[i], i);
	for (S.step = 0; S.step < S.steps && !S.broken; S.step++) {
		S.reported = false;
		step();
	}
	if (!S.broken)
		finish();
	fs_close();
	for (int i = 0; i < NFILES; i++)
		free(S.files[i].data);
	cidset_free(&S.seen);
	nftw(S.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	printf("writepath %s: %lu steps%s\n", S.mode, S.step,
	       S.broken ? ", stopped at a mismatch" : "");
}

/* ---- ip->editing: the lock held across network waits ----------------------
 */

struct fsync_arg {
	struct bfs *fs;
	struct bfs_inode *ip;
	int ret;
};

static void *fsync_main(void *arg)
{
	struct fsync_arg *a = arg;

	a->ret = bfs_fsync(a->fs, a->ip, false);
	return NULL;
}

/* A flush holds ip->editing while it reads old blocks, maybe from the
 * cluster (fill_run): neither readers nor writers of the file wait for
 * it, only the next flush or truncate does, and that one goes on once
 * it is let go. The test holds editing itself, as a flush stuck on the
 * network would; a wait where there must be none ends it (alarm). */
static void test_editing(void)
{
	char dir[] = "/tmp/test-writepath-editing.XXXXXX";
	char err[256] = "";
	struct bfs *fs;
	struct bfs_inode *ip = NULL;
	struct bfs_file *f = NULL;
	enum { LEN = 64 << 10 };
	uint8_t *want = xmalloc(LEN), *got = xmalloc(LEN);

	REQUIRE(mkdtemp(dir));
	struct bfs_config cfg = {
	    .node_dir = dir,
	    .chunker = CDC_FIXED,
	    .hash = BLK_HASH_DEFAULT,
	    .chunk_min = 1024,
	    .chunk_avg = 4096,
	    .chunk_max = 4096,
	    .cache_bytes = 8u << 20,
	    .dirty_max = 64u << 20,
	    .flush_at = 8u << 20,
	    .flushers = 1,
	};
	REQUIRE(bfs_open(&cfg, &fs, err, sizeof(err)) == 0);
	REQUIRE(bfs_mknod(fs, BFS_ROOT_INO, "e", S_IFREG | 0644, 0, 0, getuid(),
			  getgid(), NULL, &ip) == 0);
	REQUIRE(bfs_open_file(fs, ip, true, &f) == 0);
	for (size_t i = 0; i < LEN; i++)
		want[i] = (uint8_t)(i * 7 + 1);
	CHECK(bfs_write(fs, ip, 0, want, LEN) == LEN);
	CHECK(bfs_fsync(fs, ip, false) == 0); /* now in the extent map */

	alarm(60);
	pthread_mutex_lock(&ip->lock);
	while (ip->editing)
		pthread_cond_wait(&ip->cond, &ip->lock);
	ip->editing = true;
	pthread_mutex_unlock(&ip->lock);

	memset(want + 1000, 0xee, 5000);
	CHECK(bfs_write(fs, ip, 1000, want + 1000, 5000) == 5000);
	CHECK(bfs_read(fs, f, 0, got, LEN) == LEN);
	CHECK(memcmp(got, want, LEN) == 0);
	struct fsync_arg a = {fs, ip, -1};
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, fsync_main, &a) == 0);

	pthread_mutex_lock(&ip->lock);
	ip->editing = false;
	pthread_cond_broadcast(&ip->cond);
	pthread_mutex_unlock(&ip->lock);
	pthread_join(t, NULL);
	CHECK(a.ret == 0);
	alarm(0);
	pthread_mutex_lock(&ip->lock);
	CHECK(ip->dirty.n == 0 && !ip->editing);
	pthread_mutex_unlock(&ip->lock);
	memset(got, 0, LEN);
	CHECK(bfs_read(fs, f, 0, got, LEN) == LEN);
	CHECK(memcmp(got, want, LEN) == 0);

	CHECK(bfs_release_file(fs, f) == 0);
	bfs_iput(fs, ip);
	CHECK(bfs_close(fs) == 0);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(want);
	free(got);
}

int main(void)
{
	const char *env = getenv("WRITEPATH_SEED");
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	S.seed = env ? strtoull(env, NULL, 0)
		     : (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
			   ((uint64_t)getpid() << 40);
	env = getenv("WRITEPATH_STEPS");
	S.steps = env ? strtoul(env, NULL, 0) : DEFAULT_STEPS;
	printf("writepath: WRITEPATH_SEED=0x%016" PRIx64
	       " WRITEPATH_STEPS=%lu\n",
	       S.seed, S.steps);
	fflush(stdout);
	S.buf = xmalloc(FILE_CAP);
	env = getenv("WRITEPATH_CHUNKER");
	if (!env || !strcmp(env, "fixed"))
		run(CDC_FIXED);
	if (!env || !strcmp(env, "fastcdc"))
		run(CDC_FASTCDC);
	free(S.buf);
	test_editing();
	printf("writepath: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
