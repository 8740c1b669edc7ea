/*
 * gce: the disk artifact as NAME.tar.gz (+ .sha256), what Compute Engine's image import
 * takes: a gzip-compressed GNU-format tar whose one member is disk.raw, the disk's bytes.
 * disk.raw is a whole number of GiB (the disk extended with zeros), as a Compute Engine disk
 * is a whole number of GB.
 *
 * The tar goes through libarchive (gnutar format, gzip filter) straight from a sparse raw
 * copy of the disk in the work directory: its holes are never read (SEEK_DATA/SEEK_HOLE),
 * zeros are handed to the compressor from one buffer, and the .tar.gz is hashed as it is
 * written. libarchive's gnutar writer writes no sparse members, so disk.raw is stored whole
 * and gzip squeezes the zeros. Memory stays two 1 MiB buffers and zlib's state. Member time
 * SOURCE_DATE_EPOCH (or imgforge's commit time), owner root, mode 0644, and no time in the
 * gzip header: the same disk gives the same bytes.
 *
 * Key: compression_level, gzip's 1 (fastest) to 9 (smallest), default 6.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "contract.h"
#include "digest.h"
#include "diskout.h"
#include "error.h"
#include "log.h"
#include "postprocessor.h"
#include "util.h"

#define GCE_ALIGN (1024ULL * 1024 * 1024)
#define GCE_MEMBER "disk.raw"
#define GCE_BUF (1024 * 1024)
#define GCE_LEVEL_DEFAULT 6

static const struct imgf_key gce_keys[] = {
	{"compression_level", IMGF_KEY_INT, false},
	{NULL, 0, false},
};

/* compression_level from cfg (absent: the default); the key check has seen digits only. */
static int gce_level(json_t *cfg, int *level, struct imgf_error **err)
{
	json_t *v = json_object_get(cfg, "compression_level");
	*level = GCE_LEVEL_DEFAULT;
	if (!v)
		return 0;
	long long n = json_is_integer(v) ? json_integer_value(v)
					 : strtoll(json_string_value(v), NULL, 10);
	if (n < 1 || n > 9) {
		_cleanup_free_ char *text = json_is_string(v) ? xstrdup(json_string_value(v))
							      : json_dumps(v, JSON_ENCODE_ANY);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "compression_level: '%s' is not a gzip level from 1 to 9",
				      text);
	}
	*level = (int)n;
	return 0;
}

static int gce_validate(struct imgf_build *b, json_t *cfg, struct imgf_error **err)
{
	int level;
	return gce_level(cfg, &level, err);
}

/* Where the tar goes: the file, hashed on the way. */
struct gce_sink {
	int fd;
	struct imgf_digest d;
	int error; /* errno of a failed write */
};

static la_ssize_t gce_sink_write(struct archive *a, void *arg, const void *buf, size_t len)
{
	struct gce_sink *s = arg;
	const char *p = buf;
	for (size_t left = len; left;) {
		ssize_t n = write(s->fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s->error = errno;
			archive_set_error(a, errno, "%s", strerror(errno));
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	imgf_digest_update(&s->d, buf, len);
	return (la_ssize_t)len;
}

static int gce_data(struct archive *a, const void *buf, size_t n, struct imgf_error **err)
{
	if (archive_write_data(a, buf, n) != (la_ssize_t)n)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar member '%s': %s", GCE_MEMBER,
				      archive_error_string(a));
	return 0;
}

/* disk.raw's `size` bytes from `raw`: data regions read, holes given as zeros. */
static int gce_copy(struct archive *a, const char *raw, uint64_t size, struct imgf_error **err)
{
	_cleanup_close_ int fd = open(raw, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", raw);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	_cleanup_free_ char *buf = xmalloc(GCE_BUF);
	_cleanup_free_ char *zeros = xcalloc(1, GCE_BUF);
	uint64_t at = 0;
	while (at < size) {
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		/* [at, data) is a hole, [data, hole) data; a file system without SEEK_DATA
		 * reports everything as data */
		off_t data = lseek(fd, (off_t)at, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			data = (off_t)size;
		else if (data < 0)
			return imgf_error_errno(err, errno, "seek in '%s'", raw);
		off_t hole = (uint64_t)data < size ? lseek(fd, data, SEEK_HOLE) : (off_t)size;
		if (hole < 0)
			return imgf_error_errno(err, errno, "seek in '%s'", raw);
		for (; at < (uint64_t)data && at < size;) {
			size_t n = (size_t)((uint64_t)data - at < GCE_BUF ? (uint64_t)data - at
									  : GCE_BUF);
			if (gce_data(a, zeros, n, err) < 0)
				return -1;
			at += n;
		}
		while (at < (uint64_t)hole && at < size) {
			uint64_t want =
				(uint64_t)hole - at < GCE_BUF ? (uint64_t)hole - at : GCE_BUF;
			ssize_t n = pread(fd, buf, (size_t)want, (off_t)at);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return imgf_error_errno(err, errno, "read '%s'", raw);
			if (n == 0)
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "'%s' ended at %" PRIu64 " of %" PRIu64
						      " bytes",
						      raw, at, size);
			if (gce_data(a, buf, (size_t)n, err) < 0)
				return -1;
			at += (uint64_t)n;
		}
		imgf_progress(GCE_MEMBER, at, size);
	}
	imgf_progress_done();
	return 0;
}

static int gce_write_tar(const struct imgf_disk_out *o, const char *raw, uint64_t size, int level,
			 int64_t mtime, char *hex, struct stat *st, struct imgf_error **err)
{
	struct gce_sink sink = {.fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)};
	if (sink.fd < 0)
		return imgf_error_errno(err, errno, "create '%s'", o->tmp);
	imgf_digest_init(&sink.d, IMGF_SHA256);
	struct archive *a = archive_write_new();
	char opts[64];
	snprintf(opts, sizeof(opts), "gzip:compression-level=%d,gzip:!timestamp", level);
	int r = -1;
	if (archive_write_set_format_gnutar(a) != ARCHIVE_OK ||
	    archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
	    archive_write_set_options(a, opts) != ARCHIVE_OK ||
	    archive_write_open(a, &sink, NULL, gce_sink_write, NULL) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': %s", o->tmp,
			       archive_error_string(a));
		goto out;
	}
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, GCE_MEMBER);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_uname(e, "root");
	archive_entry_set_gname(e, "root");
	archive_entry_set_mtime(e, (time_t)mtime, 0);
	archive_entry_set_size(e, (la_int64_t)size);
	int hr = archive_write_header(a, e);
	archive_entry_free(e);
	if (hr != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': tar member '%s': %s", o->tmp,
			       GCE_MEMBER, archive_error_string(a));
		goto out;
	}
	if (gce_copy(a, raw, size, err) < 0) {
		imgf_error_prefix(err, "write '%s'", o->tmp);
		goto out;
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': %s", o->tmp,
			       archive_error_string(a));
		goto out;
	}
	if (fsync(sink.fd) < 0 || fstat(sink.fd, st) < 0) {
		imgf_error_errno(err, errno, "write '%s'", o->tmp);
		goto out;
	}
	r = 0;
out:
	archive_write_free(a);
	if (r == 0)
		imgf_digest_final_hex(&sink.d, hex);
	else
		imgf_digest_release(&sink.d);
	if (close(sink.fd) < 0 && r == 0)
		r = imgf_error_errno(err, errno, "write '%s'", o->tmp);
	return r;
}

static int gce_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	int level;
	int64_t mtime = c->build->contract->epoch.value;
	if (gce_level(c->cfg, &level, err) < 0)
		return imgf_error_prefix(err, "post-processor 'gce'");
	struct imgf_disk_out o;
	uint64_t size = 0;
	char hex[IMGF_DIGEST_HEX_MAX];
	struct stat st;
	_cleanup_free_ char *raw = NULL;
	int r = imgf_disk_out_begin(c, "gce", "tar.gz", &o, err);
	if (r == 0) {
		raw = path_join(o.work, GCE_MEMBER);
		r = imgf_disk_out_raw(&o, raw, GCE_ALIGN, &size, err);
	}
	if (r == 0)
		r = gce_write_tar(&o, raw, size, level, mtime, hex, &st, err);
	if (r == 0)
		r = imgf_disk_out_publish(c, &o, hex, &st, err);
	imgf_disk_out_release(&o);
	return r < 0 ? imgf_error_prefix(err, "post-processor 'gce'") : 0;
}

const struct imgf_post_processor_ops imgf_gce_post_processor = {
	.name = "gce",
	.keys = gce_keys,
	.when = IMGF_PP_LISTED,
	.needs_disk = true,
	.ext = "tar.gz",
	.validate = gce_validate,
	.run = gce_run,
};
