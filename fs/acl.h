/* POSIX ACLs in the form the kernel passes them as the values of
 * system.posix_acl_access and system.posix_acl_default
 * (<linux/posix_acl_xattr.h>: a little-endian version 2 header, then
 * entries of tag, permissions and id): decoding with the kernel's checks,
 * encoding, and the rules of fs/posix_acl.c that tie an access ACL to
 * the file mode. Pure functions: no I/O, no locks, no FUSE. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BFS_ACL_ACCESS "system.posix_acl_access"
#define BFS_ACL_DEFAULT "system.posix_acl_default"

/* Entry tags and permission bits (ACL_USER_OBJ ... in <sys/acl.h>). */
enum {
	BFS_ACL_USER_OBJ = 0x01,
	BFS_ACL_USER = 0x02,
	BFS_ACL_GROUP_OBJ = 0x04,
	BFS_ACL_GROUP = 0x08,
	BFS_ACL_MASK = 0x10,
	BFS_ACL_OTHER = 0x20,
};
#define BFS_ACL_READ 4
#define BFS_ACL_WRITE 2
#define BFS_ACL_EXECUTE 1
/* The id the kernel writes for entries that name nobody. */
#define BFS_ACL_NO_ID UINT32_MAX

/* The most entries an ACL may have: the kernel reads an ACL from a FUSE
 * daemon into one page (fs/fuse/acl.c), 4 header + 8 per entry bytes. */
#define BFS_ACL_MAX_ENTRIES 511
#define BFS_ACL_XATTR_LEN(n) (4 + 8 * (size_t)(n))

struct bfs_acl_entry {
	uint16_t tag;
	uint16_t perm;
	uint32_t id; /* uid or gid of USER and GROUP entries */
};

struct bfs_acl {
	size_t n;
	struct bfs_acl_entry e[BFS_ACL_MAX_ENTRIES];
};

/* Decode and check an xattr value into @acl: 0, -EOPNOTSUPP for a version
 * other than 2 (as posix_acl_from_xattr), -E2BIG past
 * BFS_ACL_MAX_ENTRIES, -EINVAL for anything else malformed or not valid
 * (bfs_acl_valid). A header without entries gives n == 0: the kernel
 * takes that as no ACL at all. */
int bfs_acl_decode(const void *buf, size_t len, struct bfs_acl *acl);
/* posix_acl_valid: 0, or -EINVAL when a permission has bits past rwx, a
 * tag is unknown, the entries are not in the order USER_OBJ, USER...,
 * GROUP_OBJ, GROUP..., MASK, OTHER (each of the four once), a named entry
 * has no MASK, or a named entry's id is BFS_ACL_NO_ID. */
int bfs_acl_valid(const struct bfs_acl *acl);
/* Encode @acl into @buf (BFS_ACL_XATTR_LEN(acl->n) bytes) as the kernel
 * does (posix_acl_to_xattr: entries that name nobody carry
 * BFS_ACL_NO_ID); returns the length. */
size_t bfs_acl_encode(const struct bfs_acl *acl, void *buf);

/* posix_acl_equiv_mode: set the permission bits of *@mode from @acl
 * (owner, group = MASK if present else GROUP_OBJ, other; the other bits of
 * *@mode are kept). 0 if the mode says all the ACL says (no named entry,
 * no MASK: the ACL need not be stored), 1 if not, -EINVAL for an unknown
 * tag. */
int bfs_acl_equiv_mode(const struct bfs_acl *acl, mode_t *mode);
/* posix_acl_chmod: after a chmod to @mode, USER_OBJ, OTHER and MASK (or
 * GROUP_OBJ without MASK) take the mode's bits. 0 or -EIO (no group
 * entry: not a valid ACL). */
int bfs_acl_chmod(struct bfs_acl *acl, mode_t mode);
/* posix_acl_create: @acl is a directory's default ACL and *@mode the
 * mode a new inode is created with; both are masked by each other.
 * Returns 1 if the result must be stored as the new inode's access ACL, 0
 * if the mode says all of it, -EIO if @acl has no group entry. */
int bfs_acl_create_masq(struct bfs_acl *acl, mode_t *mode);
