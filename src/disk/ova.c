/*
 * The OVA post-processor (see ova.h): qemu-img makes the streamOptimized VMDK (qemuimg.h), the
 * OVF descriptor comes from ovf.c, the rest is written here, the tar through libarchive.
 *
 * Work happens in a private directory inside out_dir (".NAME.ova.XXXXXX"): the vmdk in it can
 * be called NAME.vmdk (qemu-img writes the file's own name into the vmdk's descriptor), a
 * failure anywhere is cleaned up by removing that one directory, and only NAME.ova and then
 * NAME.ova.sha256 reach out_dir, each by rename.
 *
 * What is read how often, and what runs at once. The .ovf and .mf are built in memory; they
 * never exist as files. Two SHA-256 passes over the vmdk's bytes cannot be avoided: the .mf
 * carries the vmdk's digest and comes before the vmdk in the tar, so the .ova's digest, which
 * runs over the tar's bytes in order, can only start once the vmdk's is final. Nor can the
 * vmdk be hashed while qemu-img writes it: a digest starts at byte 0, and qemu-img updates
 * the grain tables near the start of the file with every grain it appends (strace shows
 * it), until it exits; we then set the CID there too. So the passes overlap instead, on a
 * second core:
 *   - `qemu-img map` (the populated size) runs while `qemu-img convert` does;
 *   - the vmdk is read once, to copy it into the tar, and hashed on another thread from the
 *     same buffers: the tar's layout does not depend on the digest, so the .mf goes in with
 *     a placeholder of the same length, patched once the digest is known (the bytes under it
 *     are checked to be the placeholder first);
 *   - the finished .ova is then hashed from the page cache while it is flushed to disk.
 * The vmdk and the .ova are each still in the page cache when read (qemu-img, then we, have
 * just written them); memory stays a few buffers of 1 MiB whatever the disk's size.
 *
 * Reproducible: tar members carry the build timestamp, owner root and mode 0644, and the one
 * random field qemu-img writes (the vmdk descriptor's CID) is replaced by one derived from
 * the name and timestamp, so the same disk and variables give the same .ova bytes.
 */
/* <archive.h> is libarchive's: src/ is on the quote path only (-iquote src). */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "ova-internal.h"
#include "ova.h"
#include "qemuimg.h"
#include "sidecar.h"
#include "strbuf.h"
#include "util.h"

#define COPY_BUF_SIZE (1024 * 1024)

/* ---- Work on a second core ---- */

/* Run fn(arg) on a thread; where none can be started, right here. Returns whether to join. */
static bool job_start(pthread_t *tid, void *(*fn)(void *), void *arg)
{
	if (pthread_create(tid, NULL, fn, arg) == 0)
		return true;
	fn(arg);
	return false;
}

static void job_join(bool started, pthread_t tid)
{
	if (started)
		pthread_join(tid, NULL);
}

/* Hand a job's error to the caller's (a job cannot fill *err: the caller may fill it too). */
static int job_error(struct imgf_error *job_err, struct imgf_error **err)
{
	if (err && !*err)
		*err = job_err;
	else
		imgf_error_free(job_err);
	return -1;
}

struct map_job {
	const char *disk;
	struct ova_spec *s; /* sets s->populated only */
	struct imgf_error *err;
	int r;
};

static void *map_job_run(void *arg)
{
	struct map_job *j = arg;
	j->r = imgf_qemu_img_populated(j->disk, j->s->disk_format, j->s->capacity, &j->s->populated,
				       &j->err);
	return NULL;
}

/*
 * The vmdk's sha256, computed on another thread from the very buffers the copy into the tar
 * reads: the copy fills a slot, hands it to libarchive and to the hasher, and takes a slot
 * again only once the hasher is done with it. The vmdk is read once.
 */
#define HASH_SLOTS 4

struct vmdk_hasher {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool threaded;	     /* else the copy hashes each buffer itself */
	bool done;	     /* the copy is over (or failed) */
	uint64_t head, tail; /* slots [tail, head) wait to be hashed, in order */
	char *buf[HASH_SLOTS];
	size_t len[HASH_SLOTS];
	struct imgf_digest d;
};

static void *vmdk_hasher_run(void *arg)
{
	struct vmdk_hasher *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->tail == h->head && !h->done)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->tail == h->head)
			break;
		size_t slot = (size_t)(h->tail % HASH_SLOTS);
		pthread_mutex_unlock(&h->mu);
		imgf_digest_update(&h->d, h->buf[slot], h->len[slot]);
		pthread_mutex_lock(&h->mu);
		h->tail++;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void vmdk_hasher_start(struct vmdk_hasher *h, pthread_t *tid)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	for (size_t i = 0; i < HASH_SLOTS; i++)
		h->buf[i] = xmalloc(COPY_BUF_SIZE);
	imgf_digest_init(&h->d, IMGF_SHA256);
	h->threaded = pthread_create(tid, NULL, vmdk_hasher_run, h) == 0;
}

/* A slot the copy may read into. */
static char *vmdk_hasher_slot(struct vmdk_hasher *h)
{
	if (!h->threaded)
		return h->buf[0];
	pthread_mutex_lock(&h->mu);
	while (h->head - h->tail == HASH_SLOTS)
		pthread_cond_wait(&h->cv, &h->mu);
	size_t slot = (size_t)(h->head % HASH_SLOTS);
	pthread_mutex_unlock(&h->mu);
	return h->buf[slot];
}

/* The slot vmdk_hasher_slot gave holds n bytes, next in the file: hash them. */
static void vmdk_hasher_push(struct vmdk_hasher *h, size_t n)
{
	if (!h->threaded) {
		imgf_digest_update(&h->d, h->buf[0], n);
		return;
	}
	pthread_mutex_lock(&h->mu);
	h->len[h->head % HASH_SLOTS] = n;
	h->head++;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* Wait for the hasher, and the digest into hex (NULL: the copy failed, drop it). */
static void vmdk_hasher_finish(struct vmdk_hasher *h, pthread_t tid, char *hex)
{
	if (h->threaded) {
		pthread_mutex_lock(&h->mu);
		h->done = true;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
		pthread_join(tid, NULL);
	}
	if (hex)
		imgf_digest_final_hex(&h->d, hex);
	else
		imgf_digest_release(&h->d);
	for (size_t i = 0; i < HASH_SLOTS; i++)
		free(h->buf[i]);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
}

struct sync_job {
	int fd;
	int sync_errno;
};

static void *sync_job_run(void *arg)
{
	struct sync_job *j = arg;
	j->sync_errno = fsync(j->fd) < 0 ? errno : 0;
	return NULL;
}

/* ---- The tar ---- */

/* Where libarchive's output goes: the .ova's file. */
static la_ssize_t sink_write(struct archive *a, void *data, const void *buf, size_t len)
{
	int fd = *(const int *)data;
	const char *p = buf;
	size_t left = len;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			archive_set_error(a, errno, "%s", strerror(errno));
			return -1;
		}
		p += w;
		left -= (size_t)w;
	}
	return (la_ssize_t)len;
}

static int tar_header(struct archive *a, const char *name, uint64_t size, int64_t mtime,
		      struct imgf_error **err)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_uname(e, "root");
	archive_entry_set_gname(e, "root");
	archive_entry_set_mtime(e, (time_t)mtime, 0);
	archive_entry_set_size(e, (la_int64_t)size);
	int r = archive_write_header(a, e);
	archive_entry_free(e);
	if (r != ARCHIVE_OK)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar member '%s': %s", name,
				      archive_error_string(a));
	return 0;
}

static int tar_add_buffer(struct archive *a, const char *name, const struct strbuf *data,
			  int64_t mtime, struct imgf_error **err)
{
	if (tar_header(a, name, data->len, mtime, err) < 0)
		return -1;
	if (archive_write_data(a, data->buf, data->len) != (la_ssize_t)data->len)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar member '%s': %s", name,
				      archive_error_string(a));
	return 0;
}

static int tar_add_vmdk(struct archive *a, const char *name, const char *path, uint64_t size,
			int64_t mtime, struct vmdk_hasher *h, struct imgf_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	if (tar_header(a, name, size, mtime, err) < 0)
		return -1;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	uint64_t done = 0;
	for (unsigned chunk = 0;; chunk++) {
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		char *buf = vmdk_hasher_slot(h);
		ssize_t n = read(fd, buf, COPY_BUF_SIZE);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return imgf_error_errno(err, errno, "read '%s'", path);
		}
		if (n == 0)
			break;
		if (done + (uint64_t)n > size)
			break;
		if (archive_write_data(a, buf, (size_t)n) != n)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "tar member '%s': %s", name,
					      archive_error_string(a));
		vmdk_hasher_push(h, (size_t)n);
		done += (uint64_t)n;
		if (chunk % 16 == 0)
			imgf_progress(name, done, size);
	}
	imgf_progress_done();
	if (done != size)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s' changed size while being copied (%" PRIu64
				      " bytes, then more or fewer)",
				      path, size);
	return 0;
}

/* Write the tar (ovf, mf, vmdk, in that order) to fd, the .mf as it is given. */
static int ova_write_tar(int fd, const char *ova_path, const struct ova_spec *s,
			 const struct strbuf *ovf, const struct strbuf *mf, const char *vmdk_path,
			 struct vmdk_hasher *h, struct imgf_error **err)
{
	_cleanup_free_ char *ovf_name = xasprintf("%s.ovf", s->name);
	_cleanup_free_ char *mf_name = xasprintf("%s.mf", s->name);
	_cleanup_free_ char *vmdk_name = xasprintf("%s.vmdk", s->name);
	struct archive *a = archive_write_new();
	int r = -1;
	if (archive_write_set_format_ustar(a) != ARCHIVE_OK ||
	    archive_write_add_filter_none(a) != ARCHIVE_OK ||
	    archive_write_open(a, &fd, NULL, sink_write, NULL) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': %s", ova_path,
			       archive_error_string(a));
		goto out;
	}
	if (tar_add_buffer(a, ovf_name, ovf, s->timestamp, err) < 0 ||
	    tar_add_buffer(a, mf_name, mf, s->timestamp, err) < 0 ||
	    tar_add_vmdk(a, vmdk_name, vmdk_path, s->vmdk_size, s->timestamp, h, err) < 0) {
		imgf_error_prefix(err, "write '%s'", ova_path);
		goto out;
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': %s", ova_path,
			       archive_error_string(a));
		goto out;
	}
	r = 0;
out:
	archive_write_free(a);
	return r;
}

/*
 * Put the .mf's final text over its placeholder: the member's data starts after the .ovf's
 * header and data (padded to 512) and its own header. Whatever is there must be the
 * placeholder, byte for byte, or the layout is not what this expects.
 */
static int ova_patch_mf(int fd, const char *ova_path, size_t ovf_len, const struct strbuf *old,
			const struct strbuf *mf, struct imgf_error **err)
{
	off_t at = (off_t)(512 + (ovf_len + 511) / 512 * 512 + 512);
	_cleanup_free_ char *have = xmalloc(old->len);
	ssize_t n = pread(fd, have, old->len, at);
	if (n < 0)
		return imgf_error_errno(err, errno, "read '%s'", ova_path);
	if ((size_t)n != old->len || memcmp(have, old->buf, old->len) != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s': the .mf is not at byte %lld of the tar", ova_path,
				      (long long)at);
	n = pwrite(fd, mf->buf, mf->len, at);
	if (n < 0)
		return imgf_error_errno(err, errno, "write '%s'", ova_path);
	if ((size_t)n != mf->len)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': short write", ova_path);
	return 0;
}

/* The .ova's sha256 from its bytes (just written: in the page cache) while they are flushed
 * to disk; *st is its stat afterwards. */
static int ova_hash_and_flush(int fd, const char *ova_path, char *hex, struct stat *st,
			      struct imgf_error **err)
{
	struct sync_job sj = {.fd = fd};
	pthread_t tid;
	bool started = job_start(&tid, sync_job_run, &sj);
	_cleanup_free_ char *buf = xmalloc(COPY_BUF_SIZE);
	struct imgf_digest d;
	imgf_digest_init(&d, IMGF_SHA256);
	int r = 0;
	for (off_t at = 0;;) {
		ssize_t n = pread(fd, buf, COPY_BUF_SIZE, at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = imgf_error_errno(err, errno, "read '%s'", ova_path);
			break;
		}
		if (n == 0)
			break;
		imgf_digest_update(&d, buf, (size_t)n);
		at += n;
	}
	job_join(started, tid);
	if (r == 0 && sj.sync_errno)
		r = imgf_error_errno(err, sj.sync_errno, "write '%s'", ova_path);
	if (r == 0 && fstat(fd, st) < 0)
		r = imgf_error_errno(err, errno, "stat '%s'", ova_path);
	if (r == 0)
		imgf_digest_final_hex(&d, hex);
	else
		imgf_digest_release(&d);
	return r;
}

/* ---- Putting it together ---- */

/* The vmdk from the disk (with `qemu-img map` running beside `qemu-img convert`), its CID set. */
static int vmdk_make(const struct imgf_ova_opts *o, struct ova_spec *s, const char *disk,
		     const char *vmdk, struct imgf_error **err)
{
	if (imgf_qemu_img_info(disk, &s->disk_format, &s->capacity, err) < 0)
		return imgf_error_prefix(err, "disk '%s'", o->disk);
	struct map_job mj = {.disk = disk, .s = s};
	pthread_t tid;
	bool started = job_start(&tid, map_job_run, &mj);
	/* adapter_type only fills the descriptor's ddb.adapterType; lsilogic is what VMware
	 * writes for SCSI disks, pvscsi ones included. */
	int r = imgf_qemu_img_convert(disk, s->disk_format, "vmdk",
				      "subformat=streamOptimized,adapter_type=lsilogic", vmdk, err);
	job_join(started, tid);
	if (r == 0 && mj.r < 0)
		r = job_error(mj.err, err);
	else
		imgf_error_free(mj.err);
	if (r < 0)
		return imgf_error_prefix(err, "disk '%s'", o->disk);
	struct stat st;
	if (stat(vmdk, &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", vmdk);
	s->vmdk_size = (uint64_t)st.st_size;
	if (s->vmdk_size > USTAR_SIZE_MAX)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "the vmdk of '%s' is %" PRIu64 " bytes; a USTAR member holds "
				      "at most %llu (8 GiB - 1)",
				      o->disk, s->vmdk_size, USTAR_SIZE_MAX);
	return imgf_vmdk_fix_cid(vmdk, s, err);
}

/* disk is o->disk, with "./" in front when it starts with '-' (qemu-img would see an option). */
static int ova_build(const struct imgf_ova_opts *o, struct ova_spec *s, const char *disk,
		     const char *work, struct imgf_error **err)
{
	_cleanup_free_ char *vmdk = xasprintf("%s/%s.vmdk", work, s->name);
	_cleanup_free_ char *ova = xasprintf("%s/%s.ova", work, s->name);
	_cleanup_free_ char *final = xasprintf("%s/%s.ova", o->out_dir, s->name);
	_cleanup_free_ char *final_sum = xasprintf("%s.sha256", final);
	struct strbuf ovf = STRBUF_INIT, mf = STRBUF_INIT, mf_draft = STRBUF_INIT;
	char ovf_hex[IMGF_DIGEST_HEX_MAX], ova_hex[IMGF_DIGEST_HEX_MAX];
	struct stat st;
	int r = -1, fd = -1;

	if (vmdk_make(o, s, disk, vmdk, err) < 0)
		goto out;
	imgf_ovf_build(s, &ovf);
	imgf_digest_buffer(IMGF_SHA256, ovf.buf, ovf.len, ovf_hex);
	strbuf_addf(&mf, "SHA256(%s.ovf)= %s\nSHA256(%s.vmdk)= ", s->name, ovf_hex, s->name);
	strbuf_add(&mf_draft, mf.buf, mf.len);
	strbuf_addf(&mf_draft, "%064d\n", 0); /* as long as the digest it stands for */

	fd = open(ova, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		imgf_error_errno(err, errno, "create '%s'", ova);
		goto out;
	}
	/* the vmdk's digest on a second core, from the buffers the copy into the tar reads */
	struct vmdk_hasher h;
	pthread_t tid;
	char vmdk_hex[IMGF_DIGEST_HEX_MAX];
	vmdk_hasher_start(&h, &tid);
	int tr = ova_write_tar(fd, ova, s, &ovf, &mf_draft, vmdk, &h, err);
	vmdk_hasher_finish(&h, tid, tr == 0 ? vmdk_hex : NULL);
	if (tr < 0)
		goto out;
	strbuf_addf(&mf, "%s\n", vmdk_hex);
	if (ova_patch_mf(fd, ova, ovf.len, &mf_draft, &mf, err) < 0 ||
	    ova_hash_and_flush(fd, ova, ova_hex, &st, err) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		imgf_error_errno(err, errno, "write '%s'", ova);
		goto out;
	}
	fd = -1;

	/* A stale .sha256 must never sit beside a new .ova, so it goes first and comes last. */
	if (unlink(final_sum) < 0 && errno != ENOENT) {
		imgf_error_errno(err, errno, "remove '%s'", final_sum);
		goto out;
	}
	if (rename(ova, final) < 0) {
		imgf_error_errno(err, errno, "rename to '%s'", final);
		goto out;
	}
	if (imgf_sidecar_write_hex(final, ova_hex, &st, err) < 0) {
		unlink(final);
		goto out;
	}
	log_info("ova: wrote '%s' (sha256 %s)", final, ova_hex);
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	strbuf_release(&ovf);
	strbuf_release(&mf);
	strbuf_release(&mf_draft);
	return r;
}

/* Everything about the OVA that does not need the disk: name, timestamp, properties, hardware. */
int imgf_ova_validate(const struct imgf_ova_opts *o, struct imgf_error **err)
{
	struct ova_spec s = {.name = o->name, .timestamp = o->build_timestamp};
	int r = imgf_ova_spec_gather(o, &s, err);
	imgf_ova_spec_release(&s);
	if (r < 0)
		imgf_error_prefix(err, "ova '%s'", o->name ? o->name : "");
	return r;
}

int imgf_ova_write(const struct imgf_ova_opts *o, char ***files, struct imgf_error **err)
{
	struct ova_spec s = {.name = o->name, .timestamp = o->build_timestamp};
	int r = -1;
	_cleanup_free_ char *work = NULL, *disk = NULL;

	if (imgf_ova_spec_gather(o, &s, err) < 0)
		goto out;
	if (!o->disk || !*o->disk || !o->out_dir || !*o->out_dir) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "the OVA needs a disk and an output directory");
		goto out;
	}
	/* qemu-img would say so too, but after the command line; this names the input. */
	struct stat st;
	if (stat(o->disk, &st) < 0) {
		imgf_error_errno(err, errno, "disk '%s'", o->disk);
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "disk '%s' is not a file", o->disk);
		goto out;
	}
	work = xasprintf("%s/.%s.ova.XXXXXX", o->out_dir, o->name);
	if (!mkdtemp(work)) {
		imgf_error_errno(err, errno, "create a work directory in '%s'", o->out_dir);
		free(work);
		work = NULL;
		goto out;
	}
	disk = xasprintf("%s%s", o->disk[0] == '-' ? "./" : "", o->disk);
	r = ova_build(o, &s, disk, work, err);
	struct imgf_error *rm_err = NULL;
	if (rm_rf(work, &rm_err) < 0) {
		log_warn("%s", rm_err->msg);
		imgf_error_free(rm_err);
	}
	if (r == 0 && files) {
		char **v = strv_push(NULL, xasprintf("%s.ova", o->name));
		*files = strv_push(v, xasprintf("%s.ova.sha256", o->name));
	}
out:
	imgf_ova_spec_release(&s);
	if (r < 0)
		imgf_error_prefix(err, "ova '%s'", o->name ? o->name : "");
	return r;
}
