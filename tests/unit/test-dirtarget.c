/*
 * tests/unit/dirtarget.c: the target contract (src/target.h) on a directory: exec runs inside the
 * root and leaves nothing running or mounted; put_tar keeps modes, owners and setuid bits and
 * refuses what the checked extraction refuses; get_tar names members by the last component;
 * every path resolves inside the root.
 */
#include <archive.h>
#include <archive_entry.h>
#include <time.h>

#include "archive.h"
#include "fsutil.h"
#include "rootfs.h"
#include "strbuf.h"

struct output {
	struct strbuf out, err;
};

static void collect(void *opaque, int stream, const char *data, size_t len)
{
	struct output *o = opaque;
	strbuf_add(stream == 2 ? &o->err : &o->out, data, len);
}

/* Run argv in the target; its status, or -1 with *err. Output lands in o. */
static int run(struct rootfs *r, char *const *argv, char *const *env, const char *workdir,
	       struct output *o, struct imgf_error **err)
{
	struct imgf_exec x = {.argv = argv,
			      .env = env,
			      .workdir = workdir,
			      .label = "test",
			      .on_output = collect,
			      .opaque = o};
	int status = -1;
	if (r->t->ops->exec(r->t, &x, &status, err) < 0)
		return -1;
	return status;
}

static void output_init(struct output *o)
{
	o->out = (struct strbuf)STRBUF_INIT;
	o->err = (struct strbuf)STRBUF_INIT;
}

static void output_release(struct output *o)
{
	strbuf_release(&o->out);
	strbuf_release(&o->err);
}

/* Whether anything is mounted at or under `dir` in this (the host's) mount namespace. */
static bool host_has_mount_under(const char *dir)
{
	char *text = NULL;
	size_t len;
	if (read_file("/proc/self/mountinfo", 0, &text, &len, NULL) < 0)
		return false;
	bool found = strstr(text, dir) != NULL;
	free(text);
	return found;
}

TEST(exec_runs_inside_the_root)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	struct output o;
	output_init(&o);
	struct imgf_error *err = NULL;
	char *argv[] = {"sh", "-c", "echo inside > /marker; ls /", NULL};
	CHECK(run(&r, argv, NULL, NULL, &o, &err) == 0);
	CHECK(err == NULL);
	_cleanup_free_ char *m = rootfs_read(&r, "/marker");
	CHECK_STR(m, "inside\n");
	CHECK(access("/marker", F_OK) != 0); /* not the host's root */
	CHECK(strstr(o.out.buf, "busybox") == NULL && strstr(o.out.buf, "bin\n") != NULL);
	imgf_error_free(err);
	output_release(&o);
	rootfs_release(&r);
}

TEST(exec_returns_the_exit_status_and_both_streams)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	struct output o;
	output_init(&o);
	struct imgf_error *err = NULL;
	char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 7", NULL};
	CHECK(run(&r, argv, NULL, NULL, &o, &err) == 7);
	CHECK_STR(o.out.buf, "out\n");
	CHECK_STR(o.err.buf, "err\n");
	imgf_error_free(err);
	output_release(&o);
	rootfs_release(&r);
}

TEST(exec_passes_env_and_workdir_and_finds_argv0_in_the_targets_path)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	struct output o;
	output_init(&o);
	struct imgf_error *err = NULL;
	char *env[] = {"GREETING=hello there", "HOME=/tmp", NULL};
	char *argv[] = {"sh", "-c", "echo \"$GREETING|$PWD|$HOME|$PATH\"", NULL};
	CHECK(run(&r, argv, env, "/etc", &o, &err) == 0);
	CHECK_STR(o.out.buf,
		  "hello there|/etc|/tmp|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
		  "/bin\n");
	imgf_error_free(err);
	output_release(&o);
	rootfs_release(&r);
}

TEST(exec_of_a_missing_command_is_an_error_naming_it)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	struct output o;
	output_init(&o);
	struct imgf_error *err = NULL;
	char *argv[] = {"no-such-command", NULL};
	CHECK(run(&r, argv, NULL, NULL, &o, &err) == -1);
	CHECK_ERR(err, "exec 'no-such-command': No such file or directory");
	imgf_error_free(err);
	output_release(&o);
	rootfs_release(&r);
}

TEST(exec_in_a_missing_workdir_is_an_error_naming_it)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	struct output o;
	output_init(&o);
	struct imgf_error *err = NULL;
	char *argv[] = {"true", NULL};
	CHECK(run(&r, argv, NULL, "/no/such/dir", &o, &err) == -1);
	CHECK_ERR(err, "working directory '/no/such/dir'");
	imgf_error_free(err);
	output_release(&o);
	rootfs_release(&r);
}

TEST(exec_has_dev_and_proc_and_leaves_no_mounts_behind)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	struct output o;
	output_init(&o);
	struct imgf_error *err = NULL;
	/* $$ is 1's child: the command runs in its own PID namespace. */
	char *argv[] = {"sh", "-c",
			"echo x >/dev/null && test -c /dev/null && test -c /dev/urandom && "
			"test -L /dev/fd && test -r /proc/self/status && test -d /sys/class && "
			"grep -q '^PPid:[[:space:]]*1$' /proc/$$/status && "
			"grep -q '^proc /proc/sys proc ro,' /proc/mounts && echo ok",
			NULL};
	CHECK(run(&r, argv, NULL, NULL, &o, &err) == 0);
	CHECK_STR(o.out.buf, "ok\n");
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	/* The mounts were the namespace's: the host sees none, and the root's /dev is empty. */
	CHECK(!host_has_mount_under(r.root));
	struct stat st;
	CHECK(rootfs_lstat(&r, "/dev/null", &st) != 0);
	imgf_error_free(err);
	output_release(&o);
	rootfs_release(&r);
}

TEST(exec_kills_what_the_command_left_running)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	struct output o;
	output_init(&o);
	struct imgf_error *err = NULL;
	/* A background sleep keeps stdout open: without the PID namespace the exec would wait. */
	char *argv[] = {"sh", "-c", "sleep 30 & echo started", NULL};
	time_t start = time(NULL);
	CHECK(run(&r, argv, NULL, NULL, &o, &err) == 0);
	CHECK(time(NULL) - start < 10);
	CHECK_STR(o.out.buf, "started\n");
	imgf_error_free(err);
	output_release(&o);
	rootfs_release(&r);
}

/* A tar of entries written by the test; each added by a callback. */
static char *tar_with(struct rootfs *r, const char *name,
		      int (*fill)(struct imgf_tar *w, struct imgf_error **err))
{
	char *path = xasprintf("%s/%s.tar", r->tmp, name);
	struct imgf_error *err = NULL;
	struct imgf_tar *w = imgf_tar_open(path, &err);
	CHECK(w != NULL);
	if (w) {
		CHECK(fill(w, &err) == 0);
		CHECK(imgf_tar_close(w, &err) == 0);
		imgf_tar_free(w);
	}
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);
	return path;
}

static int fill_owned(struct imgf_tar *w, struct imgf_error **err)
{
	if (imgf_tar_add_data(w, "x", 1, "usr/bin/helper", 04755, 1234, 5678, err) < 0 ||
	    imgf_tar_add_data(w, "secret", 6, "etc/secret", 0600, 0, 0, err) < 0 ||
	    imgf_tar_add_dir(w, "var/lib/app", 0700, 42, 43, err) < 0)
		return -1;
	return 0;
}

TEST(put_tar_keeps_modes_owners_and_setuid)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	_cleanup_free_ char *tar = tar_with(&r, "owned", fill_owned);
	struct imgf_error *err = NULL;
	CHECK(r.t->ops->put_tar(r.t, tar, "/", &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	struct stat st;
	CHECK(rootfs_lstat(&r, "/usr/bin/helper", &st) == 0);
	CHECK((st.st_mode & 07777) == 04755);
	CHECK(st.st_uid == 1234 && st.st_gid == 5678);
	CHECK(rootfs_lstat(&r, "/etc/secret", &st) == 0);
	CHECK((st.st_mode & 07777) == 0600 && st.st_uid == 0);
	CHECK(rootfs_lstat(&r, "/var/lib/app", &st) == 0);
	CHECK(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700 && st.st_uid == 42);
	imgf_error_free(err);
	rootfs_release(&r);
}

static int fill_abs_link(struct imgf_tar *w, struct imgf_error **err)
{
	return imgf_tar_add_symlink(w, "etc/systemd/system/multi-user.target.wants/x.service",
				    "/etc/systemd/system/x.service", err);
}

TEST(put_tar_keeps_absolute_symlinks_which_point_into_the_root)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	_cleanup_free_ char *tar = tar_with(&r, "link", fill_abs_link);
	struct imgf_error *err = NULL;
	CHECK(r.t->ops->put_tar(r.t, tar, "/", &err) == 0);
	_cleanup_free_ char *l =
		rootfs_readlink(&r, "/etc/systemd/system/multi-user.target.wants/x.service");
	CHECK_STR(l, "/etc/systemd/system/x.service");
	imgf_error_free(err);
	rootfs_release(&r);
}

static int fill_escape(struct imgf_tar *w, struct imgf_error **err)
{
	return imgf_tar_add_symlink(w, "etc/up", "../../..", err);
}

TEST(put_tar_refuses_a_symlink_that_escapes_the_root)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	_cleanup_free_ char *tar = tar_with(&r, "escape", fill_escape);
	struct imgf_error *err = NULL;
	CHECK(r.t->ops->put_tar(r.t, tar, "/", &err) < 0);
	CHECK_ERR(err, "symlink target '../../..' escapes the destination");
	struct stat st;
	CHECK(rootfs_lstat(&r, "/etc/up", &st) != 0);
	imgf_error_free(err);
	rootfs_release(&r);
}

static int fill_one(struct imgf_tar *w, struct imgf_error **err)
{
	return imgf_tar_add_data(w, "data\n", 5, "file", 0644, 0, 0, err);
}

TEST(put_tar_resolves_the_destination_inside_the_root)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	/* /opt -> /srv (absolute): it must land in the root's /srv, not the host's. */
	_cleanup_free_ char *srv = rootfs_path(&r, "/srv");
	_cleanup_free_ char *opt = rootfs_path(&r, "/opt");
	CHECK(mkdir(srv, 0755) == 0);
	CHECK(symlink("/srv", opt) == 0);
	_cleanup_free_ char *tar = tar_with(&r, "one", fill_one);
	struct imgf_error *err = NULL;
	CHECK(r.t->ops->put_tar(r.t, tar, "/opt", &err) == 0);
	_cleanup_free_ char *got = rootfs_read(&r, "/srv/file");
	CHECK_STR(got, "data\n");
	struct stat st;
	_cleanup_free_ char *got_path = rootfs_path(&r, "/srv/file");
	CHECK(access("/srv/file", F_OK) != 0);
	/* ".." stops at the root, in a symlink as in the path. */
	_cleanup_free_ char *up = rootfs_path(&r, "/etc/up");
	CHECK(symlink("../../../..", up) == 0);
	CHECK(rootfs_lstat(&r, "/srv/file", &st) == 0 && unlink(got_path) == 0);
	CHECK(r.t->ops->put_tar(r.t, tar, "/../etc/up/srv/", &err) == 0);
	CHECK(rootfs_lstat(&r, "/srv/file", &st) == 0);
	imgf_error_clear(&err);
	/* A missing destination is an error naming it. */
	CHECK(r.t->ops->put_tar(r.t, tar, "/missing", &err) < 0);
	CHECK_ERR(err, "directory '/missing'");
	imgf_error_free(err);
	rootfs_release(&r);
}

/* The member names of a tar, one per line. */
static char *tar_names(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	struct archive *a = archive_read_new();
	archive_read_support_format_all(a);
	if (archive_read_open_filename(a, path, 16384) == ARCHIVE_OK) {
		struct archive_entry *e;
		while (archive_read_next_header(a, &e) == ARCHIVE_OK)
			strbuf_addf(&sb, "%s\n", archive_entry_pathname(e));
	}
	archive_read_free(a);
	return strbuf_detach(&sb, NULL);
}

TEST(get_tar_names_members_by_the_last_component)
{
	struct rootfs r;
	ROOTFS_INIT(&r);
	struct output o;
	output_init(&o);
	struct imgf_error *err = NULL;
	char *argv[] = {"sh", "-c",
			"mkdir -p /etc/app/sub && echo a >/etc/app/a && "
			"echo b >/etc/app/sub/b && ln -s /etc/app /applink",
			NULL};
	CHECK(run(&r, argv, NULL, NULL, &o, &err) == 0);
	_cleanup_free_ char *out = xasprintf("%s/got.tar", r.tmp);
	CHECK(r.t->ops->get_tar(r.t, "/etc/app", out, &err) == 0);
	_cleanup_free_ char *names = tar_names(out);
	CHECK_STR(names, "app/\napp/a\napp/sub/\napp/sub/b\n");
	/* A file, through an absolute symlink that resolves inside the root. */
	CHECK(r.t->ops->get_tar(r.t, "/applink/sub/b", out, &err) == 0);
	_cleanup_free_ char *one = tar_names(out);
	CHECK_STR(one, "b\n");
	/* Missing: an error naming the path, and no tar left behind. */
	CHECK(r.t->ops->get_tar(r.t, "/etc/nope", out, &err) < 0);
	CHECK_ERR(err, "get '/etc/nope' from directory");
	CHECK(access(out, F_OK) != 0);
	imgf_error_free(err);
	output_release(&o);
	rootfs_release(&r);
}
