/* Unit tests for POSIX ACLs in the kernel's xattr form (fs/acl.c): the
 * decoder's checks as posix_acl_from_xattr and posix_acl_valid make them,
 * the encoding, and the mode rules (equiv_mode, chmod, create) pinned on
 * the answers the kernel gives for the same ACLs. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "blocks/base/bytes.h"
#include "fs/acl.h"

#include "tests/unit/check.h"

#define UO BFS_ACL_USER_OBJ
#define U BFS_ACL_USER
#define GO BFS_ACL_GROUP_OBJ
#define G BFS_ACL_GROUP
#define M BFS_ACL_MASK
#define O BFS_ACL_OTHER
#define NOID BFS_ACL_NO_ID

/* An ACL from a list of {tag, perm, id}. */
static struct bfs_acl make(size_t n, const struct bfs_acl_entry *e)
{
	struct bfs_acl a = {.n = n};

	memcpy(a.e, e, n * sizeof(*e));
	return a;
}
#define ACL(...)                                                               \
	make(sizeof((struct bfs_acl_entry[]){__VA_ARGS__}) /                   \
		 sizeof(struct bfs_acl_entry),                                 \
	     (struct bfs_acl_entry[]){__VA_ARGS__})

static bool same(const struct bfs_acl *a, const struct bfs_acl *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->e[i].tag != b->e[i].tag ||
		    a->e[i].perm != b->e[i].perm ||
		    ((a->e[i].tag == U || a->e[i].tag == G) &&
		     a->e[i].id != b->e[i].id))
			return false;
	return true;
}

/* The bytes setfacl -m u:65534:r sends for a 0644 file, as the kernel
 * passes them on (posix_acl_to_xattr). */
static const uint8_t known[] = {
    2,	  0, 0, 0,			   /* version 2 */
    1,	  0, 6, 0, 0xff, 0xff, 0xff, 0xff, /* user::rw- */
    2,	  0, 4, 0, 0xfe, 0xff, 0,    0,	   /* user:65534:r-- */
    4,	  0, 4, 0, 0xff, 0xff, 0xff, 0xff, /* group::r-- */
    0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, /* mask::r-- */
    0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, /* other::r-- */
};

static void test_codec(void)
{
	struct bfs_acl a;
	uint8_t buf[BFS_ACL_XATTR_LEN(BFS_ACL_MAX_ENTRIES) + 8];

	CHECK(bfs_acl_decode(known, sizeof(known), &a) == 0);
	struct bfs_acl want = ACL({UO, 6, NOID}, {U, 4, 65534}, {GO, 4, NOID},
				  {M, 4, NOID}, {O, 4, NOID});
	CHECK(same(&a, &want));
	CHECK(bfs_acl_encode(&a, buf) == sizeof(known));
	CHECK(!memcmp(buf, known, sizeof(known)));

	/* Entries that name nobody are written with the kernel's id. */
	a = ACL({UO, 7, 12}, {GO, 5, 34}, {O, 5, 56});
	CHECK(bfs_acl_encode(&a, buf) == BFS_ACL_XATTR_LEN(3));
	CHECK(!memcmp(buf + 8, "\xff\xff\xff\xff", 4));
	CHECK(!memcmp(buf + 16, "\xff\xff\xff\xff", 4));

	/* Malformed values. */
	CHECK(bfs_acl_decode(known, 3, &a) == -EINVAL);
	CHECK(bfs_acl_decode(known, sizeof(known) - 1, &a) == -EINVAL);
	memcpy(buf, known, sizeof(known));
	buf[0] = 1;
	CHECK(bfs_acl_decode(buf, sizeof(known), &a) == -EOPNOTSUPP);
	CHECK(bfs_acl_decode(known, 4, &a) == 0 && a.n == 0);
	memset(buf, 0, sizeof(buf)); /* one entry too many */
	blk_put_le32(buf, 2);
	CHECK(bfs_acl_decode(buf, BFS_ACL_XATTR_LEN(BFS_ACL_MAX_ENTRIES + 1),
			     &a) == -E2BIG);
	memcpy(buf, known, sizeof(known));
	memset(buf + 4 + 8 + 4, 0xff, 4); /* user:4294967295 names nobody */
	CHECK(bfs_acl_decode(buf, sizeof(known), &a) == -EINVAL);
}

static void test_valid(void)
{
	struct {
		struct bfs_acl a;
		int want;
	} cases[] = {
	    {ACL({UO, 6}, {GO, 4}, {O, 4}), 0},
	    {ACL({UO, 6}, {GO, 4}, {M, 4}, {O, 4}), 0}, /* mask alone */
	    {ACL({UO, 6}, {U, 4, 1}, {U, 4, 1}, {GO, 4}, {M, 4}, {O, 0}),
	     0}, /* the kernel does not look at duplicates */
	    {ACL({UO, 6}, {U, 4, 2}, {GO, 4}, {G, 1, 3}, {M, 7}, {O, 0}), 0},
	    {ACL({UO, 6}, {GO, 4}), -EINVAL},			 /* no other */
	    {ACL({GO, 4}, {UO, 6}, {O, 4}), -EINVAL},		 /* order */
	    {ACL({UO, 6}, {UO, 6}, {GO, 4}, {O, 4}), -EINVAL},	 /* twice */
	    {ACL({UO, 6}, {U, 4, 5}, {GO, 4}, {O, 4}), -EINVAL}, /* no mask */
	    {ACL({UO, 6}, {GO, 4}, {U, 4, 5}, {M, 4}, {O, 4}), -EINVAL},
	    {ACL({UO, 6}, {GO, 4}, {M, 4}, {M, 4}, {O, 4}), -EINVAL},
	    {ACL({UO, 6}, {GO, 4}, {O, 4}, {O, 4}), -EINVAL},
	    {ACL({UO, 8}, {GO, 4}, {O, 4}), -EINVAL}, /* perm past rwx */
	    {ACL({UO, 6}, {0x40, 4}, {GO, 4}, {O, 4}), -EINVAL}, /* tag */
	    {ACL({UO, 6}, {GO, 4}, {G, 4, NOID}, {M, 4}, {O, 4}), -EINVAL},
	    {ACL({UO, 6}, {M, 4}, {O, 4}), -EINVAL}, /* no group_obj */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = bfs_acl_valid(&cases[i].a);
		if (r != cases[i].want)
			fprintf(stderr, "valid case %zu: %d\n", i, r);
		CHECK(r == cases[i].want);
	}
}

static void test_equiv_mode(void)
{
	struct bfs_acl a = ACL({UO, 6}, {GO, 4}, {O, 0});
	mode_t mode = S_IFREG | S_ISGID | 0777;

	CHECK(bfs_acl_equiv_mode(&a, &mode) == 0);
	CHECK(mode == (S_IFREG | S_ISGID | 0640));

	/* The mask is the group bits; it makes the ACL worth storing. */
	a = ACL({UO, 7}, {U, 4, 65534}, {GO, 5}, {M, 1}, {O, 0});
	mode = S_IFDIR | 0755;
	CHECK(bfs_acl_equiv_mode(&a, &mode) == 1);
	CHECK(mode == (S_IFDIR | 0710));
	a = ACL({UO, 6}, {GO, 4}, {M, 6}, {O, 4});
	mode = S_IFREG;
	CHECK(bfs_acl_equiv_mode(&a, &mode) == 1);
	CHECK(mode == (S_IFREG | 0664));
}

static void test_chmod(void)
{
	struct bfs_acl a = ACL({UO, 7}, {U, 4, 65534}, {GO, 5}, {M, 7}, {O, 5});
	struct bfs_acl want =
	    ACL({UO, 6}, {U, 4, 65534}, {GO, 5}, {M, 4}, {O, 0});

	CHECK(bfs_acl_chmod(&a, S_IFREG | 0640) == 0);
	CHECK(same(&a, &want));
	/* Without a mask the group entry takes the group bits. */
	a = ACL({UO, 7}, {GO, 5}, {O, 5});
	want = ACL({UO, 5}, {GO, 1}, {O, 3});
	CHECK(bfs_acl_chmod(&a, 0513) == 0);
	CHECK(same(&a, &want));
	a = ACL({UO, 7}, {O, 5});
	CHECK(bfs_acl_chmod(&a, 0513) == -EIO);
}

static void test_create(void)
{
	/* A minimal default ACL is the umask's opposite: the mode asked for,
	 * masked by it. */
	struct bfs_acl a = ACL({UO, 7}, {GO, 5}, {O, 5});
	struct bfs_acl want = ACL({UO, 6}, {GO, 4}, {O, 4});
	mode_t mode = S_IFREG | 0666;

	CHECK(bfs_acl_create_masq(&a, &mode) == 0);
	CHECK(mode == (S_IFREG | 0644));
	CHECK(same(&a, &want));

	/* With named entries: the mask takes the group bits asked for. */
	a = ACL({UO, 7}, {U, 7, 65534}, {GO, 5}, {M, 7}, {O, 0});
	want = ACL({UO, 6}, {U, 7, 65534}, {GO, 5}, {M, 6}, {O, 0});
	mode = S_IFREG | 0666;
	CHECK(bfs_acl_create_masq(&a, &mode) == 1);
	CHECK(mode == (S_IFREG | 0660));
	CHECK(same(&a, &want));

	a = ACL({UO, 7}, {U, 7, 65534}, {GO, 5}, {M, 7}, {O, 5});
	want = ACL({UO, 7}, {U, 7, 65534}, {GO, 5}, {M, 0}, {O, 0});
	mode = S_IFDIR | S_ISGID | 0700;
	CHECK(bfs_acl_create_masq(&a, &mode) == 1);
	CHECK(mode == (S_IFDIR | S_ISGID | 0700));
	CHECK(same(&a, &want));

	a = ACL({UO, 7}, {O, 5});
	CHECK(bfs_acl_create_masq(&a, &mode) == -EIO);
}

int main(void)
{
	test_codec();
	test_valid();
	test_equiv_mode();
	test_chmod();
	test_create();
	printf("acl: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
