/* fs/cred.c: a caller's groups and capabilities read from /proc, and the
 * fallback when they cannot be. */
#include <grp.h>
#include <unistd.h>

#include "fs/cred.h"
#include "tests/unit/check.h"

static void test_self(void)
{
	struct bfs_cred c;
	gid_t groups[BFS_CRED_GROUPS];
	int n = getgroups(BFS_CRED_GROUPS, groups);

	bfs_cred_read(getpid(), getuid(), getgid(), &c);
	CHECK(c.uid == getuid() && c.gid == getgid());
	REQUIRE(n >= 0);
	CHECK(c.ngroups == (size_t)n);
	for (int i = 0; i < n; i++)
		CHECK(bfs_cred_in_group(&c, groups[i]));
	CHECK(bfs_cred_in_group(&c, getgid()));
	/* Root (as the tests run in CI) holds every capability. */
	if (geteuid() == 0) {
		CHECK(c.fsetid);
		CHECK(c.sys_admin);
	}
}

static void test_fallback(void)
{
	struct bfs_cred c;

	/* pid 0: a caller in another PID namespace */
	bfs_cred_read(0, 1000, 1000, &c);
	CHECK(c.ngroups == 0 && !c.fsetid && !c.sys_admin);
	CHECK(bfs_cred_in_group(&c, 1000));
	CHECK(!bfs_cred_in_group(&c, 0));
	bfs_cred_read(0, 0, 0, &c);
	CHECK(c.fsetid && c.sys_admin);
	/* a process that is gone */
	bfs_cred_read(0x7ffffff0, 65534, 65534, &c);
	CHECK(!c.fsetid && c.ngroups == 0);
}

int main(void)
{
	test_self();
	test_fallback();
	printf("cred: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
