/*
 * src/archive/archive*.c: hostile archives are refused by both readers with a message naming the
 * member, and extraction writes nothing outside the destination; well-formed archives
 * extract and copy with the names, modes, owners and mtimes asked for.
 *
 * Every archive is written here with libarchive's writer, so names and types are exact.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "error.h"
#include "fsutil.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

#define MEMBER_MTIME 1600000000

/* One member to write. Zero fields mean: regular file, mode 0644 (0755 for directories). */
struct spec {
	const char *name;
	mode_t type;
	const char *data;
	const char *symlink;
	const char *hardlink;
	mode_t perm;
	int64_t uid;
};

/* specs ends with an entry whose name is NULL. */
static void write_archive_as(const char *path, int format, bool gzip, const struct spec *specs)
{
	struct archive *a = archive_write_new();
	CHECK(archive_write_set_format(a, format) == ARCHIVE_OK);
	if (gzip)
		CHECK(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
	CHECK(archive_write_open_filename(a, path) == ARCHIVE_OK);
	for (const struct spec *s = specs; s->name; s++) {
		struct archive_entry *e = archive_entry_new();
		mode_t type = s->type ? s->type : AE_IFREG;
		archive_entry_set_pathname(e, s->name);
		archive_entry_set_filetype(e, type);
		archive_entry_set_perm(e, s->perm ? s->perm : type == AE_IFDIR ? 0755 : 0644);
		archive_entry_set_uid(e, s->uid);
		archive_entry_set_gid(e, s->uid);
		archive_entry_set_mtime(e, MEMBER_MTIME, 0);
		if (s->symlink)
			archive_entry_set_symlink(e, s->symlink);
		if (s->hardlink)
			archive_entry_set_hardlink(e, s->hardlink);
		if (type == AE_IFCHR || type == AE_IFBLK)
			archive_entry_set_rdev(e, makedev(1, 3));
		size_t len = type == AE_IFREG && !s->hardlink && s->data ? strlen(s->data) : 0;
		archive_entry_set_size(e, (la_int64_t)len);
		CHECK(archive_write_header(a, e) == ARCHIVE_OK);
		if (len)
			CHECK(archive_write_data(a, s->data, len) == (la_ssize_t)len);
		archive_entry_free(e);
	}
	CHECK(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);
}

static void write_archive(const char *path, bool gzip, const struct spec *specs)
{
	write_archive_as(path, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, gzip, specs);
}

/* What a tar holds, read back with libarchive. */
struct got {
	char *name;
	mode_t type;
	mode_t perm;
	int64_t uid, gid;
	char *uname, *gname;
	time_t mtime;
	char *data;
	char *symlink;
	char *hardlink;
};

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static size_t read_tar(const char *path, struct got *got, size_t max)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	CHECK(archive_read_open_filename(a, path, 10240) == ARCHIVE_OK);
	size_t n = 0;
	struct archive_entry *e;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		CHECK(n < max);
		if (n >= max)
			break;
		struct got *g = &got[n++];
		g->name = xstrdup(archive_entry_pathname(e));
		g->type = archive_entry_filetype(e);
		g->perm = archive_entry_perm(e);
		g->uid = archive_entry_uid(e);
		g->gid = archive_entry_gid(e);
		g->uname = dup_or_null(archive_entry_uname(e));
		g->gname = dup_or_null(archive_entry_gname(e));
		g->mtime = archive_entry_mtime(e);
		g->symlink = dup_or_null(archive_entry_symlink(e));
		g->hardlink = dup_or_null(archive_entry_hardlink(e));
		size_t size = (size_t)archive_entry_size(e);
		g->data = xcalloc(1, size + 1);
		CHECK(archive_read_data(a, g->data, size) == (la_ssize_t)size);
	}
	archive_read_free(a);
	return n;
}

static void got_free(struct got *got, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(got[i].name);
		free(got[i].uname);
		free(got[i].gname);
		free(got[i].data);
		free(got[i].symlink);
		free(got[i].hardlink);
	}
}

/* The raw names in an archive, one per line, to prove the writer kept hostile names as given. */
static char *archive_names(const char *path)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	CHECK(archive_read_open_filename(a, path, 10240) == ARCHIVE_OK);
	struct strbuf sb = STRBUF_INIT;
	struct archive_entry *e;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK)
		strbuf_addf(&sb, "%s\n", archive_entry_pathname(e));
	archive_read_free(a);
	return strbuf_detach(&sb, NULL);
}

static char *read_text(const char *path)
{
	char *s = NULL;
	struct imgf_error *err = NULL;
	if (read_file(path, 0, &s, NULL, &err) < 0) {
		fprintf(stderr, "  %s\n", err->msg);
		imgf_error_free(err);
		return xstrdup("(unreadable)");
	}
	return s;
}

static mode_t perm_of(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

/*
 * A playground: base/w/x/y/dest is the destination, so "..", "../.." and "../../.." from
 * inside it all land in directories that exist and that the walk below watches.
 */
struct playground {
	char *base;
	char *dest;
	char *archive;
	char *out;
};

static void playground_init(struct playground *p, const char *archive_name)
{
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-test-archive", &p->base, &err) == 0);
	p->dest = path_join(p->base, "w/x/y/dest");
	CHECK(mkdir_p(p->dest, 0755, &err) == 0);
	p->archive = path_join(p->base, archive_name);
	p->out = path_join(p->base, "out.tar");
	imgf_error_free(err);
}

static void playground_release(struct playground *p)
{
	struct imgf_error *err = NULL;
	CHECK(rm_rf(p->base, &err) == 0);
	imgf_error_free(err);
	free(p->base);
	free(p->dest);
	free(p->archive);
	free(p->out);
}

static const char *walk_base, *walk_archive;
static int walk_unexpected;

static int outside_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	static const char *const allowed[] = {"w", "w/x", "w/x/y", "w/x/y/dest", "outside", NULL};
	(void)sb;
	(void)flag;
	(void)ftw;
	const char *rel = path + strlen(walk_base);
	rel += *rel == '/';
	if (!*rel || str_has_prefix(rel, "w/x/y/dest/"))
		return 0;
	if (strcmp(rel, walk_archive) == 0 || strcmp(rel, "out.tar") == 0)
		return 0;
	for (size_t i = 0; allowed[i]; i++)
		if (strcmp(rel, allowed[i]) == 0)
			return 0;
	fprintf(stderr, "  written outside the destination: '%s'\n", rel);
	walk_unexpected++;
	return 0;
}

/* Nothing in the playground but the destination's own subtree and the archives. */
static bool nothing_outside(const struct playground *p)
{
	walk_base = p->base;
	walk_archive = path_basename(p->archive);
	walk_unexpected = 0;
	CHECK(nftw(p->base, outside_cb, 16, FTW_PHYS) == 0);
	return walk_unexpected == 0;
}

static const char *walk_dest_real;
static int walk_escaping;

static int links_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag != FTW_SL && flag != FTW_SLN)
		return 0;
	char *real = realpath(path, NULL);
	size_t n = strlen(walk_dest_real);
	if (real && !(str_has_prefix(real, walk_dest_real) && (real[n] == '/' || !real[n]))) {
		fprintf(stderr, "  symlink '%s' leads to '%s'\n", path, real);
		walk_escaping++;
	}
	free(real);
	return 0;
}

/* Every symlink left in the destination that resolves at all resolves inside it. */
static bool no_escaping_links(const struct playground *p)
{
	char *real = realpath(p->dest, NULL);
	walk_dest_real = real;
	walk_escaping = 0;
	CHECK(nftw(p->dest, links_cb, 16, FTW_PHYS) == 0);
	free(real);
	return walk_escaping == 0;
}

static bool same_file_state(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_size == b->st_size && a->st_nlink == b->st_nlink &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/*
 * The archive is refused, with `reason` for `member`, by extraction (which leaves nothing
 * outside the destination, no link out of it, and /etc as it was) and by copying into a tar.
 */
static void check_refused(struct playground *p, const char *member, const char *reason)
{
	char *want = xasprintf("archive '%s': member '%s': %s", p->archive, member, reason);
	struct stat passwd_before, passwd_after;
	CHECK(stat("/etc/passwd", &passwd_before) == 0);
	bool etc_x_existed = access("/etc/x", F_OK) == 0;

	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p->archive, p->dest, &err) < 0);
	CHECK_ERR(err, want);
	imgf_error_clear(&err);
	CHECK(nothing_outside(p));
	CHECK(no_escaping_links(p));
	CHECK(etc_x_existed || access("/etc/x", F_OK) != 0);
	CHECK(stat("/etc/passwd", &passwd_after) == 0 &&
	      same_file_state(&passwd_before, &passwd_after));

	struct imgf_tar *t = imgf_tar_open(p->out, &err);
	CHECK(t != NULL);
	CHECK(imgf_tar_add_archive(t, p->archive, 0, NULL, NULL, &err) < 0);
	CHECK_ERR(err, want);
	imgf_error_clear(&err);
	imgf_tar_free(t);
	free(want);
}

static void check_hostile_as(int format, const char *archive_name, const struct spec *specs,
			     const char *member, const char *reason)
{
	struct playground p;
	playground_init(&p, archive_name);
	write_archive_as(p.archive, format, false, specs);
	struct strbuf want_names = STRBUF_INIT;
	for (const struct spec *s = specs; s->name; s++)
		strbuf_addf(&want_names, "%s\n", s->name);
	char *names = archive_names(p.archive);
	CHECK_STR(names, want_names.buf);
	free(names);
	strbuf_release(&want_names);
	check_refused(&p, member, reason);
	playground_release(&p);
}

static void check_hostile(const struct spec *specs, const char *member, const char *reason)
{
	check_hostile_as(ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, "evil.tar", specs, member, reason);
}

/* ---- Hostile archives ---- */

TEST(refuse_parent_dir)
{
	check_hostile((struct spec[]){{.name = "../x", .data = "pwned"}, {0}}, "../x",
		      "path escapes the destination");
}

TEST(refuse_dotdot_climbing_out)
{
	check_hostile((struct spec[]){{.name = "a/", .type = AE_IFDIR},
				      {.name = "a/../../x", .data = "pwned"},
				      {0}},
		      "a/../../x", "path escapes the destination");
}

TEST(refuse_dotdot_staying_inside)
{
	check_hostile((struct spec[]){{.name = "a/../b", .data = "x"}, {0}}, "a/../b",
		      "path contains '..'");
}

TEST(refuse_absolute_path)
{
	check_hostile((struct spec[]){{.name = "/etc/x", .data = "pwned"}, {0}}, "/etc/x",
		      "path is absolute");
}

TEST(refuse_empty_name)
{
	check_hostile((struct spec[]){{.name = ".", .data = "x"}, {0}}, ".", "path is empty");
	check_hostile((struct spec[]){{.name = "", .data = "x"}, {0}}, "", "path is empty");
}

TEST(refuse_path_too_long)
{
	/* Longer than PATH_MAX: libarchive would chdir() its way down to create it. */
	struct strbuf name = STRBUF_INIT;
	while (name.len < PATH_MAX + 100)
		strbuf_addstr(&name, "deep/");
	strbuf_addstr(&name, "x");
	check_hostile((struct spec[]){{.name = name.buf, .data = "x"}, {0}}, name.buf,
		      "path is too long");
	strbuf_release(&name);
}

TEST(refuse_absolute_symlink_then_write_through)
{
	check_hostile((struct spec[]){{.name = "l", .type = AE_IFLNK, .symlink = "/etc"},
				      {.name = "l/passwd", .data = "root::0:0::/:/bin/sh\n"},
				      {0}},
		      "l", "symlink target '/etc' is absolute");
}

TEST(refuse_escaping_symlink_then_write_through)
{
	check_hostile((struct spec[]){{.name = "l", .type = AE_IFLNK, .symlink = "../.."},
				      {.name = "l/x", .data = "pwned"},
				      {0}},
		      "l", "symlink target '../..' escapes the destination");
}

TEST(refuse_nested_symlink_escaping)
{
	check_hostile((struct spec[]){{.name = "a/", .type = AE_IFDIR},
				      {.name = "a/b", .type = AE_IFLNK, .symlink = "../../.."},
				      {0}},
		      "a/b", "symlink target '../../..' escapes the destination");
}

TEST(refuse_symlink_escaping_through_later_symlink)
{
	/* x is harmless when it arrives; d/up -> .. turns it into dest/.. afterwards. */
	check_hostile((struct spec[]){{.name = "d/", .type = AE_IFDIR},
				      {.name = "x", .type = AE_IFLNK, .symlink = "d/up/.."},
				      {.name = "d/up", .type = AE_IFLNK, .symlink = ".."},
				      {0}},
		      "x", "symlink target 'd/up/..' escapes the destination");
}

TEST(escaping_symlink_is_removed_when_a_later_member_fails)
{
	/* The refused member stops extraction; x, redirected by d/up, must not stay behind. */
	check_hostile((struct spec[]){{.name = "d/", .type = AE_IFDIR},
				      {.name = "x", .type = AE_IFLNK, .symlink = "d/up/.."},
				      {.name = "d/up", .type = AE_IFLNK, .symlink = ".."},
				      {.name = "../z", .data = "pwned"},
				      {0}},
		      "../z", "path escapes the destination");
}

TEST(refuse_symlink_loop)
{
	check_hostile((struct spec[]){{.name = "a", .type = AE_IFLNK, .symlink = "b"},
				      {.name = "b", .type = AE_IFLNK, .symlink = "a"},
				      {0}},
		      "a", "symlink target 'b' has too many levels of symlinks");
}

TEST(refuse_writing_through_internal_symlink)
{
	check_hostile((struct spec[]){{.name = "sub/", .type = AE_IFDIR},
				      {.name = "l", .type = AE_IFLNK, .symlink = "sub"},
				      {.name = "l/x", .data = "x"},
				      {0}},
		      "l/x", "path goes through symlink 'l'");
}

TEST(refuse_hardlink_absolute)
{
	check_hostile((struct spec[]){{.name = "h", .hardlink = "/etc/passwd"}, {0}}, "h",
		      "hardlink target '/etc/passwd' is absolute");
}

TEST(refuse_hardlink_escaping)
{
	check_hostile((struct spec[]){{.name = "h", .hardlink = "../x"}, {0}}, "h",
		      "hardlink target '../x' escapes the destination");
}

TEST(refuse_hardlink_to_later_member)
{
	check_hostile((struct spec[]){{.name = "h", .hardlink = "later"},
				      {.name = "later", .data = "x"},
				      {0}},
		      "h", "hardlink target 'later' is not an earlier member");
}

TEST(refuse_hardlink_to_directory)
{
	check_hostile((struct spec[]){{.name = "d/", .type = AE_IFDIR},
				      {.name = "h", .hardlink = "d"},
				      {0}},
		      "h", "hardlink target 'd' is not a regular file");
}

TEST(refuse_char_device)
{
	check_hostile((struct spec[]){{.name = "dev/null", .type = AE_IFCHR}, {0}}, "dev/null",
		      "character devices are not allowed");
}

TEST(refuse_block_device)
{
	check_hostile((struct spec[]){{.name = "dev/sda", .type = AE_IFBLK}, {0}}, "dev/sda",
		      "block devices are not allowed");
}

TEST(refuse_fifo)
{
	check_hostile((struct spec[]){{.name = "p", .type = AE_IFIFO}, {0}}, "p",
		      "fifos are not allowed");
}

TEST(refuse_socket_in_cpio)
{
	/* tar cannot hold a socket; cpio can, and any format libarchive reads is checked. */
	check_hostile_as(ARCHIVE_FORMAT_CPIO_SVR4_NOCRC, "evil.cpio",
			 (struct spec[]){{.name = "s", .type = AE_IFSOCK}, {0}}, "s",
			 "sockets are not allowed");
}

TEST(refuse_control_characters_escaped_in_message)
{
	check_hostile((struct spec[]){{.name = "../\x1b[2Jx", .data = "x"}, {0}}, "../\\x1b[2Jx",
		      "path escapes the destination");
}

TEST(refuse_write_through_symlink_already_in_destination)
{
	struct playground p;
	playground_init(&p, "evil.tar");
	char *outside = path_join(p.base, "outside");
	char *link = path_join(p.dest, "out");
	CHECK(mkdir(outside, 0755) == 0);
	CHECK(symlink(outside, link) == 0);
	write_archive(p.archive, false, (struct spec[]){{.name = "out/x", .data = "pwned"}, {0}});
	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) < 0);
	char *want = xasprintf("archive '%s': member 'out/x': path goes through symlink 'out'",
			       p.archive);
	CHECK_ERR(err, want);
	imgf_error_free(err);
	CHECK(nothing_outside(&p));
	free(want);
	free(outside);
	free(link);
	playground_release(&p);
}

TEST(refuse_mtree)
{
	/* An mtree "archive" names files on this host for libarchive to read. */
	struct playground p;
	playground_init(&p, "evil.mtree");
	struct imgf_error *err = NULL;
	const char *mtree = "#mtree\n./x type=file contents=/etc/passwd\n";
	CHECK(write_file_atomic(p.archive, mtree, strlen(mtree), 0644, &err) == 0);
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) < 0);
	CHECK_ERR(err, "mtree is not supported");
	imgf_error_clear(&err);
	CHECK(nothing_outside(&p));
	char *x = path_join(p.dest, "x");
	CHECK(access(x, F_OK) != 0);
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, NULL, NULL, &err) < 0);
	CHECK_ERR(err, "mtree is not supported");
	imgf_error_free(err);
	imgf_tar_free(t);
	free(x);
	playground_release(&p);
}

TEST(refuse_garbage_and_missing_archives)
{
	struct playground p;
	playground_init(&p, "junk.tar");
	struct imgf_error *err = NULL;
	CHECK(write_file_atomic(p.archive, "not an archive at all\n", 22, 0644, &err) == 0);
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) < 0);
	char *want = xasprintf("archive '%s': ", p.archive);
	CHECK_ERR(err, want);
	imgf_error_clear(&err);
	char *missing = path_join(p.base, "missing.tar");
	CHECK(imgf_archive_extract(missing, p.dest, &err) < 0);
	CHECK_ERR(err, "missing.tar");
	imgf_error_clear(&err);
	char *no_dest = path_join(p.base, "no-such-dir");
	CHECK(imgf_archive_extract(p.archive, no_dest, &err) < 0);
	CHECK_ERR(err, "destination");
	imgf_error_free(err);
	free(want);
	free(missing);
	free(no_dest);
	playground_release(&p);
}

/* A one-member tar whose header claims far more data than follows it. */
static void write_truncated_tar(const char *path)
{
	write_archive(path, false, (struct spec[]){{.name = "big", .data = "hello"}, {0}});
	char *tar = NULL;
	size_t len = 0;
	struct imgf_error *err = NULL;
	CHECK(read_file(path, 0, &tar, &len, &err) == 0 && len >= 1024);
	/* ustar: size at 124 (12 octal digits), checksum at 148 (summed with itself blank). */
	memcpy(tar + 124, "10000000000", 12); /* 1 GiB */
	memset(tar + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < 512; i++)
		sum += (unsigned char)tar[i];
	snprintf(tar + 148, 8, "%06o", sum);
	CHECK(write_file_atomic(path, tar, 1024, 0644, &err) == 0);
	imgf_error_free(err);
	free(tar);
}

static off_t size_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : 0;
}

TEST(refuse_truncated_member_without_padding_it_out)
{
	struct playground p;
	playground_init(&p, "truncated.tar");
	write_truncated_tar(p.archive);
	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) < 0);
	CHECK_ERR(err, "member 'big': ");
	imgf_error_clear(&err);
	char *big = path_join(p.dest, "big");
	CHECK(size_of(big) < 1 << 20);

	/* The entry was begun when the data failed: the tar is unusable, and stays small. */
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_data(t, "x", 1, "first", 0644, 0, 0, &err) == 0);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, NULL, NULL, &err) < 0);
	CHECK_ERR(err, "member 'big': ");
	imgf_error_clear(&err);
	CHECK(imgf_tar_add_data(t, "x", 1, "later", 0644, 0, 0, &err) < 0);
	CHECK_ERR(err, "incomplete after an earlier error");
	imgf_error_clear(&err);
	CHECK(imgf_tar_close(t, &err) < 0);
	CHECK_ERR(err, "incomplete after an earlier error");
	imgf_error_free(err);
	imgf_tar_free(t);
	CHECK(size_of(p.out) < 1 << 20);
	free(big);
	playground_release(&p);
}

/* ---- Extraction ---- */

TEST(extract_nested_tgz)
{
	struct playground p;
	playground_init(&p, "ok.tgz");
	write_archive(
		p.archive, true,
		(struct spec[]){
			{.name = "top/", .type = AE_IFDIR},
			{.name = "top/a/", .type = AE_IFDIR},
			{.name = "top/a/b/", .type = AE_IFDIR, .perm = 0750},
			{.name = "top/a/b/c.txt", .data = "hello\n", .perm = 0640, .uid = 1234},
			{.name = "top/run", .data = "#!/bin/sh\n", .perm = 06755},
			{.name = "top/c-again", .hardlink = "top/a/b/c.txt"},
			{0}});
	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	char *c = path_join(p.dest, "top/a/b/c.txt");
	char *b = path_join(p.dest, "top/a/b");
	char *run = path_join(p.dest, "top/run");
	char *again = path_join(p.dest, "top/c-again");
	char *text = read_text(c);
	CHECK_STR(text, "hello\n");
	CHECK(perm_of(c) == 0640);
	CHECK(perm_of(b) == 0750);
	CHECK(perm_of(run) == 0755); /* setuid and setgid dropped */
	struct stat st_c, st_again;
	CHECK(stat(c, &st_c) == 0 && stat(again, &st_again) == 0);
	CHECK(st_c.st_ino == st_again.st_ino);
	CHECK(st_c.st_uid == getuid()); /* not 1234: files belong to the extracting user */
	CHECK(st_c.st_mtime == MEMBER_MTIME);
	CHECK(nothing_outside(&p));
	free(text);
	free(c);
	free(b);
	free(run);
	free(again);
	playground_release(&p);
}

TEST(extract_benign_internal_symlink)
{
	struct playground p;
	playground_init(&p, "busybox.tar");
	write_archive(p.archive, false,
		      (struct spec[]){{.name = "bin/", .type = AE_IFDIR},
				      {.name = "bin/busybox", .data = "BB", .perm = 0755},
				      {.name = "bin/sh", .type = AE_IFLNK, .symlink = "busybox"},
				      {.name = "lib/", .type = AE_IFDIR},
				      {.name = "lib/up", .type = AE_IFLNK, .symlink = "../bin/sh"},
				      {0}});
	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) == 0);
	imgf_error_clear(&err);
	char *sh = path_join(p.dest, "bin/sh");
	char *up = path_join(p.dest, "lib/up");
	char target[64] = "";
	ssize_t n = readlink(sh, target, sizeof(target) - 1);
	CHECK(n == 7);
	target[n > 0 ? n : 0] = '\0';
	CHECK_STR(target, "busybox");
	char *text = read_text(up);
	CHECK_STR(text, "BB");

	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, NULL, NULL, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	imgf_error_free(err);
	struct got got[8] = {0};
	size_t ng = read_tar(p.out, got, 8);
	CHECK(ng == 5);
	CHECK_STR(got[2].name, "bin/sh");
	CHECK(got[2].type == AE_IFLNK);
	CHECK_STR(got[2].symlink, "busybox");
	got_free(got, ng);
	free(text);
	free(sh);
	free(up);
	playground_release(&p);
}

TEST(extract_dot_prefixed_upstream_tarball)
{
	/* cni-plugins' release tarball: "./", "./bridge", ... */
	struct playground p;
	playground_init(&p, "cni.tgz");
	write_archive(p.archive, true,
		      (struct spec[]){{.name = "./", .type = AE_IFDIR, .perm = 0775},
				      {.name = "./bridge", .data = "B", .perm = 0755, .uid = 1001},
				      {.name = "./loopback", .data = "L", .perm = 0755},
				      {0}});
	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) == 0);
	imgf_error_clear(&err);
	char *bridge = path_join(p.dest, "bridge");
	char *text = read_text(bridge);
	CHECK_STR(text, "B");
	CHECK(perm_of(bridge) == 0755);
	CHECK(perm_of(p.dest) == 0755); /* "./" does not touch the destination */

	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, "opt/cni/bin", NULL, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	imgf_error_free(err);
	struct got got[8] = {0};
	size_t ng = read_tar(p.out, got, 8);
	CHECK(ng == 2);
	CHECK_STR(got[0].name, "opt/cni/bin/bridge");
	CHECK_STR(got[1].name, "opt/cni/bin/loopback");
	CHECK(got[0].uid == 0 && got[0].gid == 0);
	CHECK_STR(got[0].data, "B");
	got_free(got, ng);
	free(text);
	free(bridge);
	playground_release(&p);
}

TEST(extract_sparse_member)
{
	/* 1 MiB with "abc" at 4096 and holes around it; pax 1.0 sparse, as GNU tar -S makes. */
	enum {
		SIZE = 1 << 20,
		AT = 4096
	};
	struct playground p;
	playground_init(&p, "sparse.tar");
	struct archive *a = archive_write_new();
	archive_write_set_format_pax(a);
	CHECK(archive_write_open_filename(a, p.archive) == ARCHIVE_OK);
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "hole");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, SIZE);
	archive_entry_sparse_add_entry(e, AT, 4096);
	char *content = xcalloc(1, SIZE);
	memcpy(content + AT, "abc", 3);
	CHECK(archive_write_header(a, e) == ARCHIVE_OK);
	CHECK(archive_write_data(a, content, SIZE) == SIZE);
	archive_entry_free(e);
	CHECK(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);

	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) == 0);
	imgf_error_clear(&err);
	char *hole = path_join(p.dest, "hole");
	char *got = NULL;
	size_t len = 0;
	CHECK(read_file(hole, 0, &got, &len, &err) == 0);
	CHECK(len == SIZE && got && memcmp(got, content, SIZE) == 0);

	/* A tar entry has no holes: copying would write every one out as zeros. */
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, NULL, NULL, &err) < 0);
	CHECK_ERR(err, "member 'hole': sparse members are not supported");
	imgf_error_free(err);
	imgf_tar_free(t);
	free(got);
	free(hole);
	free(content);
	playground_release(&p);
}

/* ---- Expansion caps: a small compressed archive must not fill the disk ---- */

static bool exists(const char *dir, const char *name)
{
	_cleanup_free_ char *path = path_join(dir, name);
	return access(path, F_OK) == 0;
}

TEST(refuse_a_gzip_bomb_past_extract_max_size)
{
	enum {
		MIB = 1 << 20
	};
	char *zeros = xmalloc(MIB + 1);
	memset(zeros, '0', MIB);
	zeros[MIB] = '\0';
	const struct spec bomb[] = {
		{.name = "a", .data = zeros},
		{.name = "b", .data = zeros},
		{.name = "c", .data = zeros}, /* past the cap of 2.5 MiB */
		{0},
	};
	struct playground p;
	playground_init(&p, "bomb.tar.gz");
	write_archive(p.archive, true, bomb);
	CHECK(size_of(p.archive) < 64 * 1024);
	imgf_archive_set_limits(&(struct imgf_archive_limits){.max_size = 5 * MIB / 2});
	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) < 0);
	CHECK_ERR(err, "bomb.tar.gz': expands to more than 2621440 bytes; raise the cap with "
		       "variable 'extract_max_size'");
	CHECK(exists(p.dest, "a") && exists(p.dest, "b") && !exists(p.dest, "c"));
	imgf_error_clear(&err);
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, NULL, NULL, &err) < 0);
	CHECK_ERR(err, "variable 'extract_max_size'");
	imgf_error_free(err);
	imgf_tar_free(t);
	imgf_archive_set_limits(&(struct imgf_archive_limits){0}); /* the defaults again */
	free(zeros);
	playground_release(&p);
}

TEST(refuse_an_archive_past_extract_max_entries)
{
	const struct spec many[] = {
		{.name = "d/", .type = AE_IFDIR},
		{.name = "d/1"},
		{.name = "d/2"},
		{.name = "d/3"}, /* the fourth member: past the cap of 3 */
		{0},
	};
	struct playground p;
	playground_init(&p, "many.tar");
	write_archive(p.archive, false, many);
	imgf_archive_set_limits(&(struct imgf_archive_limits){.max_entries = 3});
	struct imgf_error *err = NULL;
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) < 0);
	CHECK_ERR(err, "many.tar': more than 3 members; raise the cap with variable "
		       "'extract_max_entries'");
	CHECK(exists(p.dest, "d/2") && !exists(p.dest, "d/3"));
	imgf_error_clear(&err);
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, NULL, NULL, &err) < 0);
	CHECK_ERR(err, "variable 'extract_max_entries'");
	imgf_error_clear(&err);
	imgf_tar_free(t);
	/* the defaults take both: kubernetes' server tarball holds image tars of hundreds of MiB */
	imgf_archive_set_limits(&(struct imgf_archive_limits){0});
	CHECK(IMGF_EXTRACT_MAX_SIZE_DEFAULT >= (8ull << 30));
	rm_rf(p.dest, NULL);
	CHECK(mkdir_p(p.dest, 0755, NULL) == 0);
	CHECK(imgf_archive_extract(p.archive, p.dest, &err) == 0);
	imgf_error_free(err);
	playground_release(&p);
}

/* ---- Copying into a tar ---- */

static const struct spec containerd_tarball[] = {
	{.name = "containerd/", .type = AE_IFDIR},
	{.name = "containerd/bin/", .type = AE_IFDIR},
	{.name = "containerd/bin/containerd", .data = "daemon", .perm = 04755, .uid = 1000},
	{.name = "containerd/bin/ctr", .data = "client", .perm = 0750, .uid = 1000},
	{.name = "containerd/README.md", .data = "readme"},
	{0},
};

TEST(add_archive_strip_prefix_only)
{
	struct playground p;
	playground_init(&p, "containerd.tgz");
	write_archive(p.archive, true, containerd_tarball);
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	const char *const only[] = {"bin/ctr", "bin/containerd", NULL};
	CHECK(imgf_tar_add_archive(t, p.archive, 1, "usr/local", only, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	struct got got[8] = {0};
	size_t ng = read_tar(p.out, got, 8);
	CHECK(ng == 2);
	CHECK_STR(got[0].name, "usr/local/bin/containerd");
	CHECK(got[0].type == AE_IFREG);
	CHECK(got[0].perm == 04755); /* setuid kept: this installs binaries into an image */
	CHECK_STR(got[0].data, "daemon");
	CHECK_STR(got[1].name, "usr/local/bin/ctr");
	CHECK(got[1].perm == 0750);
	CHECK_STR(got[1].data, "client");
	for (size_t i = 0; i < ng; i++) {
		CHECK(got[i].uid == 0 && got[i].gid == 0);
		CHECK_STR(got[i].uname, "root");
		CHECK_STR(got[i].gname, "root");
		CHECK(got[i].mtime == MEMBER_MTIME);
	}
	got_free(got, ng);
	playground_release(&p);
}

TEST(add_archive_strip_without_only_skips_emptied_members)
{
	struct playground p;
	playground_init(&p, "containerd.tar");
	write_archive(p.archive, false, containerd_tarball);
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 1, "usr/local/", NULL, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	imgf_error_free(err);
	struct got got[8] = {0};
	size_t ng = read_tar(p.out, got, 8);
	CHECK(ng == 4);
	CHECK_STR(got[0].name, "usr/local/bin/");
	CHECK(got[0].type == AE_IFDIR);
	CHECK_STR(got[1].name, "usr/local/bin/containerd");
	CHECK_STR(got[2].name, "usr/local/bin/ctr");
	CHECK_STR(got[3].name, "usr/local/README.md");
	got_free(got, ng);
	playground_release(&p);
}

TEST(add_archive_only_names_missing_member)
{
	struct playground p;
	playground_init(&p, "containerd.tar");
	write_archive(p.archive, false, containerd_tarball);
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	const char *const only[] = {"bin/ctr", "bin/containerd-shim", NULL};
	CHECK(imgf_tar_add_archive(t, p.archive, 1, NULL, only, &err) < 0);
	char *want = xasprintf("archive '%s': member 'bin/containerd-shim': not found", p.archive);
	CHECK_ERR(err, want);
	imgf_error_free(err);
	imgf_tar_free(t);
	free(want);
	playground_release(&p);
}

TEST(add_archive_rewrites_hardlinks)
{
	struct playground p;
	playground_init(&p, "links.tar");
	write_archive(p.archive, false,
		      (struct spec[]){{.name = "pkg/bin/a", .data = "A", .perm = 0755},
				      {.name = "pkg/bin/b", .hardlink = "pkg/bin/a"},
				      {0}});
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 1, "usr", NULL, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	struct got got[4] = {0};
	size_t ng = read_tar(p.out, got, 4);
	CHECK(ng == 2);
	CHECK_STR(got[1].name, "usr/bin/b");
	CHECK_STR(got[1].hardlink, "usr/bin/a");
	got_free(got, ng);

	/* A link whose target is left out would dangle. */
	t = imgf_tar_open(p.out, &err);
	const char *const only[] = {"bin/b", NULL};
	CHECK(imgf_tar_add_archive(t, p.archive, 1, "usr", only, &err) < 0);
	CHECK_ERR(err, "member 'pkg/bin/b': hardlink target 'bin/a' is not copied");
	imgf_error_free(err);
	imgf_tar_free(t);
	playground_release(&p);
}

TEST(add_archive_symlink_escaping_after_strip)
{
	/* pkg/l -> ../x stays inside the archive, but not inside what strip 1 keeps. */
	struct playground p;
	playground_init(&p, "strip.tar");
	write_archive(p.archive, false,
		      (struct spec[]){{.name = "pkg/l", .type = AE_IFLNK, .symlink = "../x"}, {0}});
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, NULL, NULL, &err) == 0);
	imgf_tar_free(t);
	t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_archive(t, p.archive, 1, NULL, NULL, &err) < 0);
	CHECK_ERR(err, "member 'pkg/l': symlink target '../x' escapes the destination");
	imgf_error_free(err);
	imgf_tar_free(t);
	playground_release(&p);
}

/* ---- Writing trees, files and data ---- */

static void make_file(const char *dir, const char *name, const char *data, mode_t perm)
{
	char *path = path_join(dir, name);
	struct imgf_error *err = NULL;
	CHECK(write_file_atomic(path, data, strlen(data), perm, &err) == 0);
	imgf_error_free(err);
	free(path);
}

static void make_tree(const char *dir)
{
	make_file(dir, "z", "zed", 0600);
	make_file(dir, "a", "ay", 0644);
	make_file(dir, "B", "bee", 0755);
	char *m = path_join(dir, "m");
	CHECK(mkdir(m, 0700) == 0);
	make_file(m, "inner", "in", 0640);
	char *link = path_join(dir, "link");
	CHECK(symlink("a", link) == 0);
	free(m);
	free(link);
}

TEST(add_tree_sorted_with_modes_and_root_owner)
{
	struct playground p;
	playground_init(&p, "unused.tar");
	char *host = path_join(p.base, "host");
	CHECK(mkdir(host, 0750) == 0);
	make_tree(host);
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_tree(t, host, "etc/x", &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	imgf_error_free(err);

	static const struct {
		const char *name;
		mode_t type, perm;
		const char *data;
	} want[] = {
		{"etc/x/", AE_IFDIR, 0750, ""},	    {"etc/x/B", AE_IFREG, 0755, "bee"},
		{"etc/x/a", AE_IFREG, 0644, "ay"},  {"etc/x/link", AE_IFLNK, 0777, ""},
		{"etc/x/m/", AE_IFDIR, 0700, ""},   {"etc/x/m/inner", AE_IFREG, 0640, "in"},
		{"etc/x/z", AE_IFREG, 0600, "zed"},
	};
	struct got got[16] = {0};
	size_t ng = read_tar(p.out, got, 16);
	CHECK(ng == ARRAY_SIZE(want));
	for (size_t i = 0; i < ng && i < ARRAY_SIZE(want); i++) {
		CHECK_STR(got[i].name, want[i].name);
		CHECK(got[i].type == want[i].type);
		CHECK(got[i].type == AE_IFLNK || got[i].perm == want[i].perm);
		CHECK_STR(got[i].data, want[i].data);
		CHECK(got[i].uid == 0 && got[i].gid == 0);
		CHECK_STR(got[i].uname, "root");
	}
	CHECK(ng > 3 && got[3].symlink && strcmp(got[3].symlink, "a") == 0);
	got_free(got, ng);

	/* Without a prefix the top directory has no name and is not emitted. */
	t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_tree(t, host, NULL, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	ng = read_tar(p.out, got, 16);
	CHECK(ng == 6);
	CHECK(ng > 0 && strcmp(got[0].name, "B") == 0);
	got_free(got, ng);
	free(host);
	playground_release(&p);
}

static void set_mtime(const char *path, time_t when)
{
	struct timespec ts[2] = {{.tv_sec = when}, {.tv_sec = when}};
	CHECK(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) == 0);
}

TEST(source_date_epoch_sets_every_mtime)
{
	struct playground p;
	playground_init(&p, "in.tar");
	write_archive(p.archive, false, (struct spec[]){{.name = "m", .data = "member"}, {0}});
	char *host = path_join(p.base, "host");
	CHECK(mkdir(host, 0755) == 0);
	make_file(host, "f", "file", 0644);
	char *f = path_join(host, "f");
	set_mtime(f, 1500000000);
	struct imgf_error *err = NULL;

	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(t != NULL);
	CHECK(imgf_tar_add_file(t, f, "file", 0, 0, 0, &err) == 0);
	CHECK(imgf_tar_add_data(t, "d", 1, "data", 0644, 0, 0, &err) == 0);
	CHECK(imgf_tar_add_dir(t, "dir", 0755, 0, 0, &err) == 0);
	CHECK(imgf_tar_add_symlink(t, "sym", "file", &err) == 0);
	CHECK(imgf_tar_add_tree(t, host, "tree", &err) == 0);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, "arch", NULL, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	struct got got[16] = {0};
	size_t ng = read_tar(p.out, got, 16);
	CHECK(ng == 7);
	for (size_t i = 0; i < ng; i++) {
		if (got[i].mtime != 1700000000)
			fprintf(stderr, "  '%s' has mtime %lld\n", got[i].name,
				(long long)got[i].mtime);
		CHECK(got[i].mtime == 1700000000);
	}
	got_free(got, ng);

	/* Unset: files keep theirs, members theirs, data gets the current time. */
	unsetenv("SOURCE_DATE_EPOCH");
	time_t before = time(NULL);
	t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_file(t, f, "file", 0, 0, 0, &err) == 0);
	CHECK(imgf_tar_add_data(t, "d", 1, "data", 0644, 0, 0, &err) == 0);
	CHECK(imgf_tar_add_archive(t, p.archive, 0, NULL, NULL, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	time_t after = time(NULL);
	ng = read_tar(p.out, got, 16);
	CHECK(ng == 3);
	CHECK(got[0].mtime == 1500000000);
	CHECK(got[1].mtime >= before && got[1].mtime <= after);
	CHECK(got[2].mtime == MEMBER_MTIME);
	got_free(got, ng);

	setenv("SOURCE_DATE_EPOCH", "yesterday", 1);
	CHECK(imgf_tar_open(p.out, &err) == NULL);
	CHECK_ERR(err, "SOURCE_DATE_EPOCH 'yesterday': expected a number of seconds since "
		       "1970-01-01 UTC");
	imgf_error_free(err);
	unsetenv("SOURCE_DATE_EPOCH");
	free(f);
	free(host);
	playground_release(&p);
}

TEST(tar_writer_files_data_and_names)
{
	struct playground p;
	playground_init(&p, "unused.tar");
	make_file(p.base, "tool", "#!/bin/sh\n", 0750);
	char *tool = path_join(p.base, "tool");
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_file(t, tool, "./usr//bin/tool", 0, 0, 0, &err) == 0);
	CHECK(imgf_tar_add_file(t, tool, "usr/bin/tool-600", 0600, 1000, 1000, &err) == 0);
	CHECK(imgf_tar_add_data(t, "k=v\n", 4, "etc/conf", 0640, 0, 0, &err) == 0);
	CHECK(imgf_tar_add_data(t, "", 0, "etc/empty", 0644, 0, 0, &err) == 0);

	CHECK(imgf_tar_add_data(t, "x", 1, "/etc/abs", 0644, 0, 0, &err) < 0);
	CHECK_ERR(err, "name '/etc/abs': path is absolute");
	imgf_error_clear(&err);
	CHECK(imgf_tar_add_dir(t, "../up", 0755, 0, 0, &err) < 0);
	CHECK_ERR(err, "name '../up': path escapes the destination");
	imgf_error_clear(&err);
	CHECK(imgf_tar_add_symlink(t, "", "x", &err) < 0);
	CHECK_ERR(err, "name '': path is empty");
	imgf_error_clear(&err);
	CHECK(imgf_tar_add_file(t, p.dest, "dir-as-file", 0, 0, 0, &err) < 0);
	CHECK_ERR(err, "not a regular file");
	imgf_error_clear(&err);

	CHECK(imgf_tar_close(t, &err) == 0);
	CHECK(imgf_tar_add_data(t, "x", 1, "late", 0644, 0, 0, &err) < 0);
	CHECK_ERR(err, "is closed");
	imgf_error_free(err);
	imgf_tar_free(t);

	struct got got[8] = {0};
	size_t ng = read_tar(p.out, got, 8);
	CHECK(ng == 4);
	CHECK_STR(got[0].name, "usr/bin/tool");
	CHECK(got[0].perm == 0750);
	CHECK_STR(got[0].data, "#!/bin/sh\n");
	CHECK(got[1].perm == 0600);
	CHECK(got[1].uid == 1000 && got[1].gid == 1000);
	CHECK(got[1].uname == NULL || !*got[1].uname);
	CHECK_STR(got[2].data, "k=v\n");
	CHECK(got[2].perm == 0640);
	CHECK_STR(got[3].name, "etc/empty");
	got_free(got, ng);

	/* Freed while open: no report, no leak. */
	t = imgf_tar_open(p.out, &err);
	CHECK(imgf_tar_add_data(t, "x", 1, "x", 0644, 0, 0, &err) == 0);
	imgf_tar_free(t);
	free(tool);
	playground_release(&p);
}
