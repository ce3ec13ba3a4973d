/* The WAL-less journal: large new blocks written without the WAL, the
 * records that track them until they are durable, making them durable at
 * blk_store_sync, and finding at open those a crash took. */

/*
 * Invariants:
 *  J1. A new block of at least JOURNAL_NOWAL_MIN bytes is written in a
 *      second batch (t->bb) with disableWAL, just before the main batch,
 *      and the main (WAL'd) batch carries a journal record for it:
 *      "journal" maps a u64 BE sequence number to the block's binary CID.
 *      Smaller blocks go through the WAL. The bytes are durable once
 *      "blocks" has been flushed. journal_sync gets there either by
 *      flushing "blocks" (more than RELOG_MAX bytes pending) or by writing
 *      the few pending blocks again through the WAL; either way it then
 *      deletes the journal records it covered (blk_store_sync; blk_store_settle
 *      does the same without the WAL fsync, which is enough to order the
 *      blocks before every later commit). Records below
 *      s->journal_first are gone; s->journal_bytes counts the bytes of
 *      those from journal_first to journal_seq.
 *  J2. Only what was never durable may be lost: a commit that drops a
 *      reference (an overwrite, a re-chunked file tail, a truncate that
 *      keeps the head of a block) moves a range of some file from a block
 *      that may be durable to one that may not be, and if the new bytes
 *      were lost in a crash that range would be lost with them, though an
 *      fsync had covered it. Such a commit therefore writes the bytes of
 *      every block it stores, and of every stored large block it adds a
 *      reference to, through the WAL, in the same batch as the references
 *      (store.c apply_ref): a crash keeps all of it or none of it. Appends
 *      and new files, which drop nothing, keep the WAL-less path.
 *  J3. After a crash, journal_recover checks every journaled block: one
 *      whose bytes did not survive loses its refs record (stats follow)
 *      and is reported by blk_store_lost_blocks(), so the caller can drop what
 *      points at it — unless the new-block log shows it was handed on
 *      already, then peers hold it and it is only marked evicted. Only
 *      bytes never covered by blk_store_sync are lost that way, and only when
 *      the process dies, which is the contract of an unsynced write.
 */

#include "blocks/store/store-int.h"

#include "blocks/base/bytes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Up to this many pending bytes journal_sync writes them again through
 * the WAL; beyond, it flushes the memtable. */
#define RELOG_MAX (16 * 1024 * 1024)

/* Add the bytes of a block to @t: through the WAL in t->wb when @wal or
 * when small, else in t->bb with a journal record in t->wb (J1), taking
 * the next journal sequence number from @d. */
void journal_put_bytes(struct blk_txn *t, const char *key, size_t klen,
		       const void *data, size_t len, bool wal,
		       struct store_delta *d)
{
	struct blk_store *s = t->s;

	if (!wal && len >= JOURNAL_NOWAL_MIN) {
		uint8_t seq[8];

		rocksdb_writebatch_put_cf(t->bb, s->blocks, key, klen, data,
					  len);
		blk_put_be64(seq, d->jseq++);
		rocksdb_writebatch_put_cf(t->wb, s->journal, (const char *)seq,
					  sizeof(seq), key, klen);
		d->jbytes += len;
	} else {
		rocksdb_writebatch_put_cf(t->wb, s->blocks, key, klen, data,
					  len);
	}
}

/* Write the bytes of the journaled blocks [first, upto) again, through the
 * WAL, and delete their journal records in the same batch. Called with
 * ref_lock held, so no commit can delete one of these blocks in between
 * and have the copy bring it back. 0, -ENOMEM, -EIO, -ENOSPC. */
static int journal_relog(struct blk_store *s, uint64_t first, uint64_t upto)
{
	uint8_t lo[8], hi[8];
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	struct blk_iter *it;
	char *rerr = NULL;
	int rc = 0;

	blk_put_be64(lo, first);
	blk_put_be64(hi, upto);
	it = blk_iter_new(s->db, s->cf_journal, NULL, 0, lo, sizeof(lo));
	if (!it) {
		rocksdb_writebatch_destroy(wb);
		return -ENOMEM;
	}
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, clen, vlen;
		const void *key = blk_iter_key(it, &klen);
		const void *cid = blk_iter_value(it, &clen);
		rocksdb_pinnableslice_t *ps;
		const char *v;

		if (blk_key_cmp(key, klen, hi, sizeof(hi)) >= 0)
			break;
		rocksdb_writebatch_delete_cf(wb, s->journal, key, klen);
		rc = blk_db_pinned(s->db, s->cf_blocks, cid, clen, &ps);
		if (rc == -ENOENT) {
			rc = 0;
			continue; /* deleted since: nothing to keep */
		}
		if (rc < 0)
			break;
		v = rocksdb_pinnableslice_value(ps, &vlen);
		rocksdb_writebatch_put_cf(wb, s->blocks, cid, clen, v, vlen);
		rocksdb_pinnableslice_destroy(ps);
	}
	if (rc == 0 && blk_iter_status(it) < 0)
		rc = -EIO;
	blk_iter_free(it);
	if (rc == 0) {
		rocksdb_write(s->db->rdb, s->db->wopts, wb, &rerr);
		if (rerr)
			rc = blk_rdb_errno(rerr);
	}
	rocksdb_writebatch_destroy(wb);
	return rc;
}

/* Flush "blocks" (waiting until every memtable holding journaled bytes is
 * in SST and blob files), then delete the journal records [first, upto).
 * 0, -EIO, -ENOSPC. */
static int journal_flush(struct blk_store *s, uint64_t first, uint64_t upto)
{
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	uint8_t lo[8], hi[8];
	rocksdb_writebatch_t *wb;
	char *rerr = NULL;

	rocksdb_flushoptions_set_wait(fo, 1);
	rocksdb_flush_cf(s->db->rdb, fo, s->blocks, &rerr);
	rocksdb_flushoptions_destroy(fo);
	if (rerr)
		return blk_rdb_errno(rerr);
	blk_put_be64(lo, first);
	blk_put_be64(hi, upto);
	wb = rocksdb_writebatch_create();
	rocksdb_writebatch_delete_range_cf(wb, s->journal, (const char *)lo,
					   sizeof(lo), (const char *)hi,
					   sizeof(hi));
	rocksdb_write(s->db->rdb, s->db->wopts, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr)
		return blk_rdb_errno(rerr);
	return 0;
}

/* Make the bytes of every block journaled so far durable and delete their
 * journal records (J1); the caller then syncs the WAL. Called with
 * sync_lock held: journal_first moves only here. 0, -ENOMEM, -EIO,
 * -ENOSPC. */
int journal_sync(struct blk_store *s)
{
	uint64_t first, upto, bytes;
	int rc = 0;

	pthread_mutex_lock(&s->ref_lock);
	first = s->journal_first;
	upto = s->journal_seq;
	bytes = s->journal_bytes;
	if (upto > first && bytes <= RELOG_MAX) {
		rc = journal_relog(s, first, upto);
		if (rc == 0) {
			s->journal_first = upto;
			s->journal_bytes -= bytes;
		}
		pthread_mutex_unlock(&s->ref_lock);
		return rc;
	}
	pthread_mutex_unlock(&s->ref_lock);
	if (upto <= first)
		return 0;
	/* The flush runs without ref_lock: commits go on meanwhile. */
	rc = journal_flush(s, first, upto);
	if (rc == 0) {
		pthread_mutex_lock(&s->ref_lock);
		s->journal_first = upto;
		s->journal_bytes -= bytes;
		pthread_mutex_unlock(&s->ref_lock);
	}
	return rc;
}

/* The state of journal_recover: its batch, the statistics it computes,
 * the new-block log by CID, and the lost blocks found (in s->lost). */
struct recovery {
	rocksdb_writebatch_t *wb;
	struct blk_store_stats st;
	struct newlog_index *nl;
	size_t nlost, cap;
};

static int lost_add(struct blk_store *s, struct recovery *rv,
		    const struct blk_cid *c)
{
	struct blk_cid *p =
	    blk_grow(s->lost, &rv->cap, rv->nlost, sizeof(*p), 64);

	if (!p)
		return -ENOMEM;
	s->lost = p;
	s->lost[rv->nlost++] = *c;
	return 0;
}

/* Check one journaled block (J3) and add what follows to @rv: nothing
 * when its bytes survived or it was deleted or evicted before the crash;
 * marked evicted when handed on already; else lost. 0, -ENOMEM, -EIO,
 * -EUCLEAN. */
static int recover_one(struct blk_store *s, struct recovery *rv,
		       const void *cid, size_t clen)
{
	rocksdb_pinnableslice_t *ps;
	uint8_t v[REFS_VALUE_MAX], flags;
	uint64_t refs;
	uint32_t len;
	struct blk_cid c;
	int rc;

	if (blk_cid_from_bytes(&c, cid, clen) < 0)
		return 0;
	rc = blk_db_pinned(s->db, s->cf_blocks, cid, clen, &ps);
	if (rc == 0) {
		rocksdb_pinnableslice_destroy(ps);
		return 0; /* the bytes survived */
	}
	if (rc != -ENOENT)
		return rc;
	rc = store_read_refs(s, &c, &refs, &len, &flags);
	if (rc <= 0 || (flags & REFS_EVICTED))
		return rc < 0 ? rc : 0; /* deleted or evicted before */
	if (s->newlog && !newlog_index_has(rv->nl, cid, clen)) {
		/* uploaded already: only the local copy is gone */
		rocksdb_writebatch_put_cf(
		    rv->wb, s->refs, cid, clen, (const char *)v,
		    store_encode_refs(v, refs, len, flags | REFS_EVICTED));
		rv->st.remote_bytes += len;
		return 0;
	}
	rc = lost_add(s, rv, &c);
	if (rc < 0)
		return rc;
	rocksdb_writebatch_delete_cf(rv->wb, s->refs, cid, clen);
	newlog_index_drop(rv->nl, s, rv->wb, cid, clen);
	rv->st.blocks--;
	rv->st.bytes -= len;
	rv->st.dag_bytes -= store_dag_len(cid, clen, len);
	rv->st.ref_bytes -= refs * len;
	return 0;
}

/* Write what recovery found, with the statistics, in one synced batch. */
static int recovery_write(struct blk_store *s, struct recovery *rv)
{
	char *rerr = NULL;

	if (rocksdb_writebatch_count(rv->wb) == 0)
		return 0;
	store_put_stats(s, rv->wb, &rv->st);
	rocksdb_write(s->db->rdb, s->db->wopts_sync, rv->wb, &rerr);
	if (rerr) {
		rocksdb_free(rerr);
		return -EIO;
	}
	s->stats = rv->st;
	return 0;
}

/* At open, read-write, before @s is shared (J3): check every journaled
 * block, clear the journal in the same synced batch, fill s->lost and set
 * the journal's counters past its last record. 0, -ENOMEM, -EIO,
 * -EUCLEAN. */
int journal_recover(struct blk_store *s)
{
	struct recovery rv = {.st = s->stats};
	struct blk_iter *it;
	uint64_t last = 0;
	int rc;

	rc = newlog_index_load(s, &rv.nl);
	if (rc < 0)
		return rc;
	it = blk_iter_new(s->db, s->cf_journal, NULL, 0, NULL, 0);
	if (!it) {
		newlog_index_free(rv.nl);
		return -ENOMEM;
	}
	rv.wb = rocksdb_writebatch_create();
	for (; blk_iter_valid(it); blk_iter_next(it)) {
		size_t klen, clen;
		const void *key = blk_iter_key(it, &klen);
		const void *cid = blk_iter_value(it, &clen);

		if (klen == 8)
			last = blk_get_be64(key) + 1;
		rocksdb_writebatch_delete_cf(rv.wb, s->journal, key, klen);
		rc = recover_one(s, &rv, cid, clen);
		if (rc < 0)
			break;
	}
	if (rc == 0 && blk_iter_status(it) < 0)
		rc = -EIO;
	blk_iter_free(it);
	newlog_index_free(rv.nl);
	if (rc == 0)
		rc = recovery_write(s, &rv);
	rocksdb_writebatch_destroy(rv.wb);
	if (rc < 0)
		return rc;
	s->nlost = rv.nlost;
	s->journal_seq = s->journal_first = last;
	return 0;
}

size_t blk_store_lost_blocks(struct blk_store *s, const struct blk_cid **cids)
{
	*cids = s->lost;
	return s->nlost;
}

void blk_store_forget_lost(struct blk_store *s)
{
	free(s->lost);
	s->lost = NULL;
	s->nlost = 0;
}
