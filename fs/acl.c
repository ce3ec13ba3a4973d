/* POSIX ACLs: the kernel's xattr form decoded, checked and encoded, and
 * the rules that tie an access ACL to the file mode (fs/acl.h). */
#include "fs/acl.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "blocks/base/bytes.h"

#define ACL_XATTR_VERSION 2
#define PERM_BITS (BFS_ACL_READ | BFS_ACL_WRITE | BFS_ACL_EXECUTE)

int bfs_acl_decode(const void *buf, size_t len, struct bfs_acl *acl)
{
	const uint8_t *p = buf;

	if (len < 4)
		return -EINVAL;
	if (blk_get_le32(p) != ACL_XATTR_VERSION)
		return -EOPNOTSUPP;
	if ((len - 4) % 8)
		return -EINVAL;
	if ((len - 4) / 8 > BFS_ACL_MAX_ENTRIES)
		return -E2BIG;
	acl->n = (len - 4) / 8;
	for (size_t i = 0; i < acl->n; i++) {
		const uint8_t *q = p + 4 + 8 * i;
		acl->e[i].tag = blk_get_le16(q);
		acl->e[i].perm = blk_get_le16(q + 2);
		acl->e[i].id = blk_get_le32(q + 4);
	}
	return acl->n ? bfs_acl_valid(acl) : 0;
}

int bfs_acl_valid(const struct bfs_acl *acl)
{
	/* The tag the next entry may have, as posix_acl_valid walks it;
	 * 0 once OTHER was seen. */
	int state = BFS_ACL_USER_OBJ;
	bool needs_mask = false;

	for (size_t i = 0; i < acl->n; i++) {
		const struct bfs_acl_entry *e = &acl->e[i];

		if (e->perm & ~PERM_BITS)
			return -EINVAL;
		switch (e->tag) {
		case BFS_ACL_USER_OBJ:
			if (state != BFS_ACL_USER_OBJ)
				return -EINVAL;
			state = BFS_ACL_USER;
			break;
		case BFS_ACL_USER:
		case BFS_ACL_GROUP:
			if (state != (e->tag == BFS_ACL_USER ? BFS_ACL_USER
							     : BFS_ACL_GROUP))
				return -EINVAL;
			if (e->id == BFS_ACL_NO_ID)
				return -EINVAL;
			needs_mask = true;
			break;
		case BFS_ACL_GROUP_OBJ:
			if (state != BFS_ACL_USER)
				return -EINVAL;
			state = BFS_ACL_GROUP;
			break;
		case BFS_ACL_MASK:
			if (state != BFS_ACL_GROUP)
				return -EINVAL;
			state = BFS_ACL_OTHER;
			break;
		case BFS_ACL_OTHER:
			if (state != BFS_ACL_OTHER &&
			    (state != BFS_ACL_GROUP || needs_mask))
				return -EINVAL;
			state = 0;
			break;
		default:
			return -EINVAL;
		}
	}
	return state == 0 ? 0 : -EINVAL;
}

size_t bfs_acl_encode(const struct bfs_acl *acl, void *buf)
{
	uint8_t *p = buf;

	blk_put_le32(p, ACL_XATTR_VERSION);
	for (size_t i = 0; i < acl->n; i++) {
		const struct bfs_acl_entry *e = &acl->e[i];
		uint8_t *q = p + 4 + 8 * i;
		bool named = e->tag == BFS_ACL_USER || e->tag == BFS_ACL_GROUP;

		blk_put_le16(q, e->tag);
		blk_put_le16(q + 2, e->perm);
		blk_put_le32(q + 4, named ? e->id : BFS_ACL_NO_ID);
	}
	return BFS_ACL_XATTR_LEN(acl->n);
}

int bfs_acl_equiv_mode(const struct bfs_acl *acl, mode_t *mode)
{
	mode_t m = 0;
	int not_equiv = 0;

	for (size_t i = 0; i < acl->n; i++) {
		mode_t perm = acl->e[i].perm & S_IRWXO;

		switch (acl->e[i].tag) {
		case BFS_ACL_USER_OBJ:
			m |= perm << 6;
			break;
		case BFS_ACL_GROUP_OBJ:
			m |= perm << 3;
			break;
		case BFS_ACL_OTHER:
			m |= perm;
			break;
		case BFS_ACL_MASK:
			/* The mask is the group bits: it comes after
			 * GROUP_OBJ and replaces it. */
			m = (m & ~(mode_t)S_IRWXG) | perm << 3;
			not_equiv = 1;
			break;
		case BFS_ACL_USER:
		case BFS_ACL_GROUP:
			not_equiv = 1;
			break;
		default:
			return -EINVAL;
		}
	}
	*mode = (*mode & ~(mode_t)(S_IRWXU | S_IRWXG | S_IRWXO)) | m;
	return not_equiv;
}

/* The MASK entry of @acl, else its GROUP_OBJ, else NULL. */
static struct bfs_acl_entry *group_bits(struct bfs_acl *acl)
{
	struct bfs_acl_entry *group = NULL;

	for (size_t i = 0; i < acl->n; i++) {
		if (acl->e[i].tag == BFS_ACL_MASK)
			return &acl->e[i];
		if (acl->e[i].tag == BFS_ACL_GROUP_OBJ)
			group = &acl->e[i];
	}
	return group;
}

int bfs_acl_chmod(struct bfs_acl *acl, mode_t mode)
{
	struct bfs_acl_entry *group = group_bits(acl);

	if (!group)
		return -EIO;
	for (size_t i = 0; i < acl->n; i++) {
		if (acl->e[i].tag == BFS_ACL_USER_OBJ)
			acl->e[i].perm = (mode & S_IRWXU) >> 6;
		else if (acl->e[i].tag == BFS_ACL_OTHER)
			acl->e[i].perm = mode & S_IRWXO;
	}
	group->perm = (mode & S_IRWXG) >> 3;
	return 0;
}

int bfs_acl_create_masq(struct bfs_acl *acl, mode_t *mode)
{
	struct bfs_acl_entry *group = group_bits(acl);
	mode_t m = *mode;
	int not_equiv = 0;

	if (!group)
		return -EIO;
	for (size_t i = 0; i < acl->n; i++) {
		struct bfs_acl_entry *e = &acl->e[i];

		switch (e->tag) {
		case BFS_ACL_USER_OBJ:
			e->perm &= (m >> 6) & S_IRWXO;
			m &= ((mode_t)e->perm << 6) | ~(mode_t)S_IRWXU;
			break;
		case BFS_ACL_OTHER:
			e->perm &= m & S_IRWXO;
			m &= e->perm | ~(mode_t)S_IRWXO;
			break;
		case BFS_ACL_USER:
		case BFS_ACL_GROUP:
		case BFS_ACL_MASK:
			not_equiv = 1;
			break;
		}
	}
	group->perm &= (m >> 3) & S_IRWXO;
	m &= ((mode_t)group->perm << 3) | ~(mode_t)S_IRWXG;
	*mode = m;
	return not_equiv;
}
