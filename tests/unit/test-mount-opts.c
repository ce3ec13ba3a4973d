/* Tests of the mount option table (fs/cmd/mount-opts.c): its rows are
 * consistent (unique names, a value rule and help for every option),
 * every valued row takes its valid example and refuses its bad one, every
 * flag refuses a value, --help lists every option, and a few options land
 * where they should. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/cmd/mount-opts.h"
#include "net/cluster/config.h"

#include "tests/unit/check.h"

static struct cl_cluster cluster;

/* Parse @opts into a fresh @mc; the result of mount_cfg_parse. */
static int parse(struct mount_cfg *mc, const char *opts)
{
	mount_cfg_init(mc, &cluster, "/tmp/node", false);
	return mount_cfg_parse(mc, opts);
}

static bool valued(const struct mount_opt *o)
{
	return o->parse != MOPT_FLAG && o->where != MOPT_FSTAB;
}

static void test_rows(void)
{
	for (size_t i = 0; i < mount_nopts; i++) {
		const struct mount_opt *o = &mount_opts[i];
		CHECK(o->name && *o->name);
		for (size_t j = i + 1; j < mount_nopts; j++)
			CHECK(strcmp(o->name, mount_opts[j].name) != 0);
		if (valued(o)) {
			CHECK(o->set && o->must && o->arg && o->help);
			CHECK(o->valid && o->invalid);
		}
		if (o->parse == MOPT_ENUM)
			CHECK(o->choices != NULL);
		if (o->same_help)
			CHECK(i > 0 && (mount_opts[i - 1].help ||
					mount_opts[i - 1].same_help));
		/* only the daemon's own flags live in a field */
		if (o->parse == MOPT_FLAG && o->where != MOPT_DAEMON)
			CHECK(o->field == 0);
	}
}

static void test_values(void)
{
	struct mount_cfg mc;
	char opt[256];

	for (size_t i = 0; i < mount_nopts; i++) {
		const struct mount_opt *o = &mount_opts[i];
		if (o->where == MOPT_FSTAB) {
			/* a pattern: make a name it matches */
			char *star = strchr(o->name, '*');
			snprintf(opt, sizeof(opt), "%.*s%s",
				 (int)(star ? star - o->name
					    : (ptrdiff_t)strlen(o->name)),
				 o->name, star ? "some.thing" : "");
			CHECK(parse(&mc, opt) == 0);
			continue;
		}
		if (!valued(o)) {
			CHECK(parse(&mc, o->name) == 0);
			snprintf(opt, sizeof(opt), "%s=1", o->name);
			CHECK(parse(&mc, opt) == -EINVAL);
			CHECK(strstr(mc.opt_err, "is a flag") != NULL);
			continue;
		}
		snprintf(opt, sizeof(opt), "%s=%s", o->name, o->valid);
		CHECK(parse(&mc, opt) == 0);
		if (mc.opt_err[0])
			fprintf(stderr, "%s: %s\n", opt, mc.opt_err);
		snprintf(opt, sizeof(opt), "%s=%s", o->name, o->invalid);
		CHECK(parse(&mc, opt) == -EINVAL);
		CHECK(strstr(mc.opt_err, o->must) != NULL);
		CHECK(parse(&mc, o->name) == -EINVAL);
		CHECK(strstr(mc.opt_err, "needs a value") != NULL);
	}
	CHECK(parse(&mc, "no_such_option") == -EINVAL);
	CHECK(strstr(mc.opt_err, "unknown mount option") != NULL);
}

/* Where a few options land. */
static void test_effects(void)
{
	struct mount_cfg mc;

	CHECK(parse(&mc, "ro,noallow_other,acl") == 0);
	CHECK(mc.ro == 1 && mc.allow_other == 0 && mc.acl == 1);
	CHECK(mc.verify == -1 && mc.nonempty == -1);
	CHECK(parse(&mc, "chunk_size=64K,chunker=fixed,read_ahead=2M") == 0);
	CHECK(mc.fs.chunk_avg == 65536 && mc.fs.chunker == CDC_FIXED);
	CHECK(mc.mo.read_ahead_kb == 2048);
	CHECK(parse(&mc, "sync_timeout=30,dirty_max=64M,cache_size=0") == 0);
	CHECK(mc.sync_timeout_ms == 30000 && mc.fs.dirty_max == (64u << 20));
	CHECK(mc.local_set && mc.fs.local_max == 0);
	CHECK(parse(&mc, "redundancy=ec:4+2,ec_min=128K,fsname=data") == 0);
	CHECK(mc.redundancy_set && mc.k == 4 && mc.m == 2);
	CHECK(!strcmp(mc.redundancy, "ec:4+2") && mc.ec_min_set);
	CHECK(!strcmp(mc.fsname, "data"));
	/* the last atime option wins; only noatime and atime reach the
	 * kernel, with the kernel's own flags */
	CHECK(parse(&mc, "noatime,nosuid,strictatime,nodiratime") == 0);
	CHECK(mc.fs.atime == BFS_ATIME_STRICT && mc.fs.nodiratime);
	CHECK(!strcmp(mc.extra, "noatime,nosuid"));
	CHECK(parse(&mc, "strictatime,atime,default_permissions") == 0);
	CHECK(mc.fs.atime == BFS_ATIME_RELATIME);
	CHECK(!strcmp(mc.extra, "atime"));
	CHECK(parse(&mc, "sync,_netdev,x-systemd.automount") == 0);
	CHECK(!strcmp(mc.extra, "sync"));
}

/* --help names every option but the hidden ones. */
static void test_help(void)
{
	char *text = NULL, *fstab = NULL;
	size_t len = 0, flen = 0;
	FILE *f = open_memstream(&text, &len);
	FILE *g = open_memstream(&fstab, &flen);

	REQUIRE(f && g);
	mount_opts_usage(f);
	mount_fstab_usage(g);
	fclose(f);
	fclose(g);
	for (size_t i = 0; i < mount_nopts; i++) {
		const struct mount_opt *o = &mount_opts[i];
		char want[128];
		if (o->where == MOPT_FSTAB) {
			CHECK(strstr(fstab, o->name) != NULL);
			continue;
		}
		if (!o->help && !o->same_help)
			continue; /* hidden: default_permissions */
		snprintf(want, sizeof(want), "%s%s%s", o->name,
			 o->arg ? "=" : "", o->arg ? o->arg : "");
		bool found = false;
		for (const char *p = text; (p = strstr(p, want)); p++) {
			char after = p[strlen(want)];
			bool start = p[-1] == ' ';
			if (start &&
			    (after == ',' || after == ' ' || after == '\n'))
				found = true;
		}
		CHECK(found);
		if (!found)
			fprintf(stderr, "--help lacks %s\n", want);
	}
	CHECK(strstr(text, "default_permissions") == NULL);
	/* no line of the help passes 80 columns */
	for (const char *p = text; *p;) {
		size_t l = strcspn(p, "\n");
		CHECK(l <= 80);
		p += l + (p[l] != '\0');
	}
	free(text);
	free(fstab);
}

int main(void)
{
	test_rows();
	test_values();
	test_effects();
	test_help();
	printf("mount-opts: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
