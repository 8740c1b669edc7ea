/*
 * GCS resumable uploads: a session, the file in one request (or chunks), recovery from the
 * server's offset after a failure, and crc32c/sha256 computed while the bytes are read (md5
 * only for a server that reports no crc32c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base64.h"
#include "crc32c.h"
#include "error.h"
#include "gcs-internal.h"
#include "gcs.h"
#include "log.h"
#include "util.h"

/* ---- resumable uploads ---- */

struct upload {
	struct imgf_gcs *g;
	const char *bucket, *object, *path;
	char *what;
	int fd;
	uint64_t size;
	struct upload_hash h;
	char *session;
	uint64_t offset; /* the server has bytes [0, offset) */
	unsigned sessions;
	struct imgf_gcs_upload_result *res;
	json_t *final;	    /* the object resource once the server finalized it */
	char *last_why;	    /* the last failure worth a retry */
	long retry_after_s; /* its Retry-After, -1 none */
};

static int upload_session_start(struct upload *u, struct imgf_error **err)
{
	if (++u->sessions > MAX_SESSIONS)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "upload '%s': the server lost the upload session %u times",
				      u->what, MAX_SESSIONS - 1);
	_cleanup_free_ char *meta = NULL;
	json_t *m = json_pack("{s:s,s:s}", "name", u->object, "contentType",
			      "application/octet-stream");
	meta = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	struct http_req r;
	imgf_gcs_req_init(&r, "POST", imgf_gcs_upload_url(u->g, u->bucket, u->object, "resumable"),
			  u->what);
	r.body = meta;
	r.body_len = strlen(meta);
	r.content_type = "application/json; charset=UTF-8";
	int ret = -1;
	if (imgf_gcs_request(u->g, &r, err) < 0)
		goto out;
	if (r.status == 404) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "bucket '%s' does not exist (at %s)", u->bucket,
			       u->g->endpoint);
		goto out;
	}
	if (r.status != 200 && r.status != 201) {
		imgf_gcs_req_fail(u->g, &r, err);
		goto out;
	}
	if (!r.location || !*r.location) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': the server started no session (no Location header)",
			       u->what);
		goto out;
	}
	free(u->session);
	u->session = xstrdup(r.location);
	u->offset = 0;
	ret = 0;
out:
	imgf_gcs_req_release(&r);
	return ret;
}

/* What a reply to a chunk or a status query says about the session. */
enum chunk_outcome {
	CHUNK_FINAL,	/* 200/201: the object exists */
	CHUNK_CONTINUE, /* 308: u->offset updated from Range */
	CHUNK_RETRY,	/* connection trouble, 408/429/5xx, 401: query, then go on */
	CHUNK_LOST,	/* 404/410: the session is gone, start a new one */
	CHUNK_FATAL,	/* *err is set */
};

static enum chunk_outcome chunk_outcome(struct upload *u, struct http_req *r,
					struct imgf_error **err)
{
	if (r->rc == CURLE_ABORTED_BY_CALLBACK || r->rc == CURLE_READ_ERROR) {
		struct file_body *fb = r->fbody;
		if (imgf_interrupted)
			imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "upload '%s': interrupted",
				       u->what);
		else if (fb && fb->read_errno)
			imgf_error_errno(err, fb->read_errno, "upload '%s': read '%s'", u->what,
					 u->path);
		else if (fb && fb->shrank)
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "upload '%s': '%s' shrank while it was being uploaded",
				       u->what, u->path);
		else
			imgf_gcs_req_fail(u->g, r, err);
		return CHUNK_FATAL;
	}
	if (r->rc != CURLE_OK) {
		if (imgf_http_retry_failure(r->rc, 0))
			return CHUNK_RETRY;
		imgf_gcs_req_fail(u->g, r, err);
		return CHUNK_FATAL;
	}
	if (r->status == 200 || r->status == 201) {
		json_decref(u->final);
		u->final = imgf_gcs_reply_json(r, err);
		return u->final ? CHUNK_FINAL : CHUNK_FATAL;
	}
	if (r->status == 308) {
		uint64_t have = r->range_end >= 0 ? (uint64_t)r->range_end + 1 : 0;
		if (have > u->h.upto || have > u->size) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "upload '%s': the server claims %llu bytes, only %llu were "
				       "sent",
				       u->what, (unsigned long long)have,
				       (unsigned long long)u->h.upto);
			return CHUNK_FATAL;
		}
		u->offset = have;
		return CHUNK_CONTINUE;
	}
	if (r->status == 404 || r->status == 410)
		return CHUNK_LOST;
	if (imgf_http_retry_failure(CURLE_OK, r->status) || (r->status == 401 && u->g->have_key)) {
		if (r->status == 401) {
			free(u->g->token);
			u->g->token = NULL;
		}
		return CHUNK_RETRY;
	}
	imgf_gcs_req_fail(u->g, r, err);
	return CHUNK_FATAL;
}

/* PUT bytes [offset, offset+len) of the file, or with len 0 ask where the session stands. */
static enum chunk_outcome upload_put(struct upload *u, uint64_t len, struct imgf_error **err)
{
	char range[96];
	struct file_body fb = {.fd = u->fd, .off = u->offset, .len = len, .h = &u->h};
	if (len)
		snprintf(range, sizeof(range), "bytes %llu-%llu/%llu",
			 (unsigned long long)u->offset, (unsigned long long)(u->offset + len - 1),
			 (unsigned long long)u->size);
	else
		snprintf(range, sizeof(range), "bytes */%llu", (unsigned long long)u->size);
	struct http_req r;
	imgf_gcs_req_init(&r, "PUT", xstrdup(u->session), u->what);
	r.content_range = range;
	r.content_type = "application/octet-stream";
	r.fbody = &fb;
	u->g->progress.base = u->offset;
	enum chunk_outcome o = CHUNK_FATAL;
	if (imgf_gcs_perform(u->g, &r, err) == 0) {
		u->res->bytes_sent += r.sent;
		o = chunk_outcome(u, &r, err);
	}
	if (o == CHUNK_RETRY) {
		free(u->last_why);
		u->last_why = r.rc != CURLE_OK ? imgf_gcs_curl_reason(u->g, r.rc)
					       : imgf_gcs_http_reason(&r);
		u->retry_after_s = r.retry_after_s;
		log_warn("upload '%s': %s %s: %s", u->what, len ? "chunk" : "status query", range,
			 u->last_why);
	}
	imgf_gcs_req_release(&r);
	return o;
}

/* Read what was never read (the server finalized early) so the digests cover the file. */
static int upload_hash_rest(struct upload *u, struct imgf_error **err)
{
	char buf[65536];
	while (u->h.upto < u->size) {
		ssize_t n = pread(u->fd, buf, sizeof(buf), (off_t)u->h.upto);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return imgf_error_errno(err, errno, "read '%s'", u->path);
		if (n == 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "'%s' shrank while it was being uploaded", u->path);
		imgf_gcs_upload_hash_feed(&u->h, u->h.upto, buf, (size_t)n);
	}
	return 0;
}

/* The file's md5, read again: only for a server that reports an md5 and no crc32c. */
static int upload_md5(struct upload *u, struct imgf_error **err)
{
	EVP_MD_CTX *md5 = EVP_MD_CTX_new();
	if (!md5 || EVP_DigestInit_ex(md5, EVP_md5(), NULL) != 1)
		abort();
	char *buf = xmalloc(1u << 20);
	int r = 0;
	for (uint64_t at = 0; at < u->size && r == 0;) {
		ssize_t n = pread(u->fd, buf, 1u << 20, (off_t)at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = imgf_error_errno(err, errno, "read '%s'", u->path);
		else if (n == 0)
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "'%s' shrank while it was being uploaded", u->path);
		else if (EVP_DigestUpdate(md5, buf, (size_t)n) != 1)
			abort();
		at += n > 0 ? (uint64_t)n : 0;
	}
	free(buf);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (r == 0 && EVP_DigestFinal_ex(md5, md, &len) != 1)
		abort();
	EVP_MD_CTX_free(md5);
	if (r == 0) {
		_cleanup_free_ char *m64 = imgf_base64_encode(md, len);
		snprintf(u->res->md5_b64, sizeof(u->res->md5_b64), "%s", m64);
	}
	return r;
}

static int upload_delete_after(struct upload *u, struct imgf_error **err)
{
	struct imgf_error *e2 = NULL;
	if (imgf_gcs_delete(u->g, u->bucket, u->object, &e2) < 0) {
		imgf_error_suffix(err, "; deleting the object failed too: %s", e2->msg);
		imgf_error_free(e2);
	} else {
		imgf_error_suffix(err, "; the object was deleted");
	}
	return -1;
}

/* Compare what the server stored with what was read. */
static int upload_verify(struct upload *u, struct imgf_error **err)
{
	int rest = upload_hash_rest(u, err);
	imgf_gcs_upload_hash_finish(&u->h); /* the digests are complete and the main thread's */
	if (rest < 0)
		return upload_delete_after(u, err);
	imgf_crc32c_b64(u->h.crc, u->res->crc32c_b64);
	imgf_digest_final_hex(&u->h.sha256, u->res->sha256);

	const char *size_s = json_string_value(json_object_get(u->final, "size"));
	json_t *size_j = json_object_get(u->final, "size");
	unsigned long long got_size =
		size_s ? strtoull(size_s, NULL, 10)
		       : (json_is_integer(size_j) ? (unsigned long long)json_integer_value(size_j)
						  : 0);
	const char *md5 = json_string_value(json_object_get(u->final, "md5Hash"));
	const char *crc = json_string_value(json_object_get(u->final, "crc32c"));
	u->res->size = got_size;
	if ((size_s || size_j) && got_size != u->size) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': the server stored %llu bytes of the %llu-byte '%s'",
			       u->what, got_size, (unsigned long long)u->size, u->path);
		return upload_delete_after(u, err);
	}
	if (!md5 && !crc) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': the server reported neither md5Hash nor crc32c",
			       u->what);
		return upload_delete_after(u, err);
	}
	if (crc && strcmp(crc, u->res->crc32c_b64) != 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': crc32c mismatch: the server stored %s, '%s' has %s",
			       u->what, crc, u->path, u->res->crc32c_b64);
		return upload_delete_after(u, err);
	}
	if (crc)
		return 0;
	/* No crc32c: the md5, at the cost of reading the file again. */
	log_debug("upload '%s': the server reported no crc32c, checking its md5", u->what);
	if (upload_md5(u, err) < 0)
		return upload_delete_after(u, err);
	if (strcmp(md5, u->res->md5_b64) != 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': md5 mismatch: the server stored %s, '%s' has %s",
			       u->what, md5, u->path, u->res->md5_b64);
		return upload_delete_after(u, err);
	}
	return 0;
}

static int upload_run(struct upload *u, struct imgf_error **err)
{
	if (upload_session_start(u, err) < 0)
		return -1;
	int fails = 0;	    /* failures since the server last had more than ever before */
	uint64_t best = 0;  /* the most the server ever had */
	bool query = false; /* ask the server where it stands before sending more */
	for (;;) {
		enum chunk_outcome o;
		if (query) {
			o = upload_put(u, 0, err);
		} else {
			uint64_t len = u->size - u->offset;
			if (u->g->chunk && len > u->g->chunk)
				len = u->g->chunk;
			o = upload_put(u, len, err);
		}
		switch (o) {
		case CHUNK_FINAL:
			return 0;
		case CHUNK_FATAL:
			return -1;
		case CHUNK_CONTINUE:
			if (query) {
				u->res->resumes++;
				log_info("upload '%s': resuming at byte %llu of %llu", u->what,
					 (unsigned long long)u->offset,
					 (unsigned long long)u->size);
			}
			if (u->offset > best) {
				best = u->offset;
				fails = 0;
			} else if (!query || u->offset == u->size) {
				u->retry_after_s = -1;
				break; /* a chunk the server kept nothing of: a failure too */
			}
			query = false;
			/* 308 for all bytes: only a status query can finalize now */
			if (u->offset == u->size && u->size)
				query = true;
			continue;
		case CHUNK_LOST:
			log_warn("upload '%s': the server forgot the upload session; starting a "
				 "new one",
				 u->what);
			if (upload_session_start(u, err) < 0)
				return -1;
			best = 0;
			query = false;
			continue;
		case CHUNK_RETRY:
			break;
		}
		/* The retry policy's: attempts left without progress, and the wait (the server's
		 * Retry-After, else the backoff); then the server says where to go on from. */
		long delay;
		if (imgf_http_retry_next(&u->g->retry, ++fails, u->retry_after_s, 0, &delay) !=
		    IMGF_HTTP_RETRY_WAIT)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "upload '%s': no progress after %d attempts at byte "
					      "%llu: %s",
					      u->what, fails, (unsigned long long)u->offset,
					      u->last_why ? u->last_why
							  : "the server kept nothing");
		log_warn("upload '%s': asking the server how much it has in %.1f s (attempt %d "
			 "of %d)",
			 u->what, (double)delay / 1000, fails + 1, u->g->retry.max_attempts);
		if (imgf_sleep_ms(delay) < 0)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED,
					      "upload '%s': interrupted", u->what);
		query = true;
	}
}

int imgf_gcs_upload_file(struct imgf_gcs *g, const char *bucket, const char *object,
			 const char *path, const char *want_sha256,
			 struct imgf_gcs_upload_result *res, struct imgf_error **err)
{
	memset(res, 0, sizeof(*res));
	struct upload u = {.g = g,
			   .bucket = bucket,
			   .object = object,
			   .path = path,
			   .res = res,
			   .retry_after_s = -1};
	u.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (u.fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	struct stat st;
	if (fstat(u.fd, &st) < 0) {
		int e = errno;
		close(u.fd);
		return imgf_error_errno(err, e, "stat '%s'", path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(u.fd);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is not a regular file", path);
	}
#ifdef POSIX_FADV_SEQUENTIAL
	posix_fadvise(u.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
	u.size = (uint64_t)st.st_size;
	u.what = imgf_gcs_gs_name(bucket, object);
	imgf_digest_init(&u.h.sha256, IMGF_SHA256);
	if (!imgf_gcs_upload_hash_start(&u.h))
		log_debug("upload '%s': no hashing thread, the digests are computed inline",
			  u.what);
	g->progress = (struct imgf_http_progress){
		.label = path_basename(object), .upload = true, .total = u.size};

	int r = upload_run(&u, err);
	imgf_progress_done();
	g->progress.label = NULL;
	if (r == 0)
		r = upload_verify(&u, err);
	if (r == 0 && want_sha256 && strcmp(want_sha256, res->sha256) != 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': the bytes sent from '%s' have sha256 %s, not %s (the "
			       "file changed, or its .sha256 is wrong)",
			       u.what, path, res->sha256, want_sha256);
		r = upload_delete_after(&u, err);
	}
	if (r == 0) {
		_cleanup_free_ char *human = xasprintf(
			"upload '%s': sent %llu bytes for %llu-byte object (%u resume%s)", u.what,
			(unsigned long long)res->bytes_sent, (unsigned long long)u.size,
			res->resumes, res->resumes == 1 ? "" : "s");
		json_t *ev = json_pack("{s:s,s:s,s:I,s:I,s:i,s:s,s:s}", "object", u.what, "file",
				       path, "size", (json_int_t)u.size, "bytes_sent",
				       (json_int_t)res->bytes_sent, "resumes", (int)res->resumes,
				       "crc32c", res->crc32c_b64, "sha256", res->sha256);
		if (res->md5_b64[0]) /* checked only when the server reported no crc32c */
			json_object_set_new(ev, "md5", json_string(res->md5_b64));
		imgf_event("upload-sent", ev, human);
	}
	imgf_gcs_upload_hash_finish(&u.h); /* when the upload failed before upload_verify */
	imgf_digest_release(&u.h.sha256);
	json_decref(u.final);
	free(u.last_why);
	free(u.session);
	free(u.what);
	close(u.fd);
	return r;
}
