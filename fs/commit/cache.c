/* The dag column family's records: per-inode commit results and the last
 * head (see cache.h for the layout). */
#include "fs/commit/cache.h"

#include <errno.h>
#include <string.h>

#include "blocks/base/bytes.h"
#include "fs/meta.h"

#define REC_VERSION 1
#define F_NODE 1u
#define F_ATTRS 2u
#define F_NONEMPTY 4u
#define HEAD_KEY "H"

static size_t put_cid(uint8_t *p, bool has, const struct blk_cid *c)
{
	size_t n = has ? blk_cid_to_bytes(c, p + 1) : 0;

	p[0] = (uint8_t)n;
	return 1 + n;
}

size_t bfs_dag_rec_encode(const struct bfs_dag_rec *r, uint8_t *buf)
{
	size_t n = 10;

	buf[0] = REC_VERSION;
	buf[1] = (uint8_t)((r->has_node ? F_NODE : 0) |
			   (r->has_attrs ? F_ATTRS : 0) |
			   (r->nonempty ? F_NONEMPTY : 0));
	blk_put_le64(buf + 2, r->tsize);
	n += put_cid(buf + n, r->has_node, &r->node);
	n += put_cid(buf + n, r->has_attrs, &r->attrs);
	return n;
}

/* One length-prefixed CID at *@pos; present exactly when @want. */
static int get_cid(const uint8_t *buf, size_t len, size_t *pos, bool want,
		   struct blk_cid *c)
{
	size_t n;

	if (*pos >= len)
		return -EUCLEAN;
	n = buf[(*pos)++];
	if (n > len - *pos || (n != 0) != want ||
	    (n && blk_cid_from_bytes(c, buf + *pos, n) < 0))
		return -EUCLEAN;
	*pos += n;
	return 0;
}

int bfs_dag_rec_decode(const uint8_t *buf, size_t len, struct bfs_dag_rec *r)
{
	size_t pos = 10;

	memset(r, 0, sizeof(*r));
	if (len < 10 || buf[0] != REC_VERSION ||
	    (buf[1] & ~(F_NODE | F_ATTRS | F_NONEMPTY)))
		return -EUCLEAN;
	r->has_node = buf[1] & F_NODE;
	r->has_attrs = buf[1] & F_ATTRS;
	r->nonempty = buf[1] & F_NONEMPTY;
	r->tsize = blk_get_le64(buf + 2);
	if (get_cid(buf, len, &pos, r->has_node, &r->node) ||
	    get_cid(buf, len, &pos, r->has_attrs, &r->attrs) || pos != len)
		return -EUCLEAN;
	return 0;
}

int bfs_dag_get(struct blk_db *db, struct blk_snap *snap, uint64_t ino,
		struct bfs_dag_rec *r)
{
	uint8_t key[BFS_DAG_KEY_LEN], val[BFS_DAG_REC_MAX + 1];
	size_t klen = bfs_dag_key(key, ino);
	int64_t n =
	    snap ? blk_snap_get_into(snap, BFS_CF_DAG, key, klen, val,
				     sizeof(val))
		 : blk_db_get_into(db, BFS_CF_DAG, key, klen, val, sizeof(val));

	if (n < 0)
		return (int)n;
	if ((size_t)n > BFS_DAG_REC_MAX)
		return -EUCLEAN;
	return bfs_dag_rec_decode(val, (size_t)n, r);
}

void bfs_dag_put(struct blk_txn *t, uint64_t ino, const struct bfs_dag_rec *r)
{
	uint8_t key[BFS_DAG_KEY_LEN], val[BFS_DAG_REC_MAX];

	blk_txn_put(t, BFS_CF_DAG, key, bfs_dag_key(key, ino), val,
		    bfs_dag_rec_encode(r, val));
}

void bfs_dag_del(struct blk_txn *t, uint64_t ino)
{
	uint8_t key[BFS_DAG_KEY_LEN];

	blk_txn_delete(t, BFS_CF_DAG, key, bfs_dag_key(key, ino));
}

int bfs_dag_head_get(struct blk_db *db, uint8_t *buf, size_t cap, size_t *len)
{
	int64_t n = blk_db_get_into(db, BFS_CF_DAG, HEAD_KEY, 1, buf, cap);

	if (n < 0)
		return (int)n;
	if ((size_t)n > cap)
		return -EUCLEAN;
	*len = (size_t)n;
	return 0;
}

void bfs_dag_head_put(struct blk_txn *t, const uint8_t *buf, size_t len)
{
	blk_txn_put(t, BFS_CF_DAG, HEAD_KEY, 1, buf, len);
}
