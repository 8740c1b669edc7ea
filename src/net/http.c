#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"

#define PROGRESS_INTERVAL_MS 100

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int imgf_http_init(struct imgf_error **err)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "initialize libcurl: %s",
				      curl_easy_strerror(curl_init_result));
	return 0;
}

int64_t imgf_http_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct imgf_http_progress *p = userp;
	if (imgf_interrupted && !(p && p->uninterruptible))
		return 1;
	if (!p || !p->label || !imgf_log_progress_enabled())
		return 0;
	int64_t t = imgf_http_mono_ms();
	if (t - p->last_ms < PROGRESS_INTERVAL_MS)
		return 0;
	p->last_ms = t;
	curl_off_t now = p->upload ? ulnow : dlnow;
	curl_off_t total = p->upload ? ultotal : dltotal;
	imgf_progress(p->label, p->base + (uint64_t)(now > 0 ? now : 0),
		      p->total ? p->total : (uint64_t)(total > 0 ? total : 0));
	return 0;
}

void imgf_http_setup(CURL *h, const struct imgf_http_opts *o)
{
	static const struct imgf_http_opts none;
	if (!o)
		o = &none;
	const char *protocols = o->protocols ? o->protocols : "http,https";
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protocols);
	if (o->redir_protocols)
		curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, o->redir_protocols);
#else
	long mask = CURLPROTO_HTTP | CURLPROTO_HTTPS;
	if (strstr(protocols, "file"))
		mask |= CURLPROTO_FILE;
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, mask);
	if (o->redir_protocols)
		curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS,
				 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (o->redir_protocols) {
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(h, CURLOPT_MAXREDIRS, IMGF_HTTP_MAX_REDIRS);
	} else {
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	}
	curl_easy_setopt(h, CURLOPT_USERAGENT, IMGF_HTTP_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, IMGF_HTTP_CONNECT_TIMEOUT_S);
	if (o->stall_s >= 0) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, IMGF_HTTP_STALL_BYTES_PER_S);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
				 o->stall_s ? o->stall_s : IMGF_HTTP_STALL_S_DEFAULT);
	}
	if (o->timeout_ms > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	if (o->unix_socket)
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, o->unix_socket);
	if (o->no_proxy)
		curl_easy_setopt(h, CURLOPT_NOPROXY, o->no_proxy);
	if (o->tls_ca)
		curl_easy_setopt(h, CURLOPT_CAINFO, o->tls_ca);
	if (o->tls_cert)
		curl_easy_setopt(h, CURLOPT_SSLCERT, o->tls_cert);
	if (o->tls_key)
		curl_easy_setopt(h, CURLOPT_SSLKEY, o->tls_key);
	if (o->tls_no_verify) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (o->errbuf) {
		o->errbuf[0] = '\0';
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, o->errbuf);
	}
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, o->progress);
}

CURL *imgf_http_easy_new(const struct imgf_http_opts *o, struct imgf_error **err)
{
	if (imgf_http_init(err) < 0)
		return NULL;
	CURL *h = curl_easy_init();
	if (!h) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "initialize a libcurl handle");
		return NULL;
	}
	imgf_http_setup(h, o);
	return h;
}

size_t imgf_http_write_strbuf(char *data, size_t size, size_t nmemb, void *strbuf)
{
	struct strbuf *sb = strbuf;
	size_t n = size * nmemb;
	strbuf_add(sb, data, n);
	return sb->overflow ? 0 : n;
}

/* ---- headers ---- */

void imgf_http_headers_reset(struct imgf_http_headers *h)
{
	for (size_t i = 0; i < IMGF_HTTP_HEADERS_MAX; i++) {
		free(h->values[i]);
		h->values[i] = NULL;
	}
	h->reason[0] = '\0';
}

static void copy_printable_lower(char *dst, size_t cap, const char *src, size_t len)
{
	size_t j = 0;
	for (size_t i = 0; i < len && j + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c < 0x20 || c >= 0x7f)
			c = '?';
		dst[j++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	dst[j] = '\0';
}

size_t imgf_http_on_header(char *data, size_t size, size_t nmemb, void *headers)
{
	struct imgf_http_headers *h = headers;
	size_t n = size * nmemb;
	size_t len = n;
	while (len && (data[len - 1] == '\r' || data[len - 1] == '\n'))
		len--;
	if (len > 5 && !memcmp(data, "HTTP/", 5)) {
		/* A new response (after a redirect or a 100): forget the previous one's. */
		imgf_http_headers_reset(h);
		const char *sp = memchr(data, ' ', len);
		if (sp)
			sp = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - data));
		if (sp)
			copy_printable_lower(h->reason, sizeof(h->reason), sp + 1,
					     len - (size_t)(sp + 1 - data));
		return n;
	}
	const char *colon = memchr(data, ':', len);
	if (!colon)
		return n;
	size_t klen = (size_t)(colon - data);
	const char *v = colon + 1, *end = data + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (size_t i = 0; i < IMGF_HTTP_HEADERS_MAX && h->names[i]; i++) {
		if (strlen(h->names[i]) == klen && !strncasecmp(data, h->names[i], klen)) {
			if (!h->values[i])
				h->values[i] = xstrndup(v, (size_t)(end - v));
			break;
		}
	}
	return n;
}

const char *imgf_http_header_get(const struct imgf_http_headers *h, const char *name)
{
	for (size_t i = 0; i < IMGF_HTTP_HEADERS_MAX && h->names[i]; i++)
		if (!strcasecmp(h->names[i], name))
			return h->values[i];
	return NULL;
}

long imgf_http_retry_after(const struct imgf_http_headers *h)
{
	const char *v = imgf_http_header_get(h, "Retry-After");
	return v ? imgf_retry_after_s(v) : -1;
}

char *imgf_http_curl_reason(const char *errbuf, CURLcode rc)
{
	char *r = xstrdup(errbuf && errbuf[0] ? errbuf : curl_easy_strerror(rc));
	size_t len = strlen(r);
	while (len && (r[len - 1] == '\n' || r[len - 1] == '.'))
		r[--len] = '\0';
	if (r[0] >= 'A' && r[0] <= 'Z' && !(r[1] >= 'A' && r[1] <= 'Z'))
		r[0] = (char)(r[0] - 'A' + 'a');
	return r;
}

/* ---- retries ---- */

bool imgf_http_retry_failure(CURLcode rc, long status)
{
	return rc != CURLE_OK ? imgf_retry_transport(rc) : imgf_retry_status(status);
}

bool imgf_http_retry_left(const struct imgf_http_retry *p, int attempt)
{
	return attempt < p->max_attempts;
}

bool imgf_http_retry_worth(const struct imgf_http_retry *p, int attempt, CURLcode rc, long status)
{
	return imgf_http_retry_left(p, attempt) && imgf_http_retry_failure(rc, status);
}

long imgf_http_retry_delay(const struct imgf_http_retry *p, int attempt, long retry_after_s)
{
	return imgf_retry_delay_ms(p->base_ms, attempt, retry_after_s);
}

enum imgf_http_retry_next imgf_http_retry_next(const struct imgf_http_retry *p, int attempt,
					       long retry_after_s, int64_t deadline_ms,
					       long *delay_ms)
{
	*delay_ms = 0;
	if (!imgf_http_retry_left(p, attempt))
		return IMGF_HTTP_RETRY_EXHAUSTED;
	*delay_ms = imgf_http_retry_delay(p, attempt, retry_after_s);
	if (deadline_ms && imgf_http_mono_ms() + *delay_ms > deadline_ms)
		return IMGF_HTTP_RETRY_DEADLINE;
	return IMGF_HTTP_RETRY_WAIT;
}

void imgf_http_retry_log(const struct imgf_http_retry *p, int attempt, long delay_ms,
			 const char *prefix, const char *why)
{
	log_warn("%s: %s; retrying in %.1f s (attempt %d of %d)", prefix, why,
		 (double)delay_ms / 1000, attempt + 1, p->max_attempts);
}

struct imgf_http_retry imgf_http_retry_policy(int max_attempts)
{
	struct imgf_http_retry p = {.max_attempts = max_attempts, .base_ms = 1000};
	const char *v = getenv("IMGFORGE_RETRY_BASE_MS");
	if (v && *v) {
		char *end;
		errno = 0;
		long ms = strtol(v, &end, 10);
		if (!errno && !*end && ms >= 0 && ms <= IMGF_RETRY_DELAY_CAP_MS)
			p.base_ms = ms;
	}
	return p;
}

struct imgf_http_retry imgf_http_retry_for(int max_attempts, long base_ms)
{
	struct imgf_http_retry p =
		imgf_http_retry_policy(max_attempts > 0 ? max_attempts : IMGF_HTTP_MAX_ATTEMPTS);
	if (base_ms > 0)
		p.base_ms = base_ms;
	return p;
}

char *imgf_http_no_proxy_loopback(void)
{
	const char *env = getenv("no_proxy");
	if (!env || !*env)
		env = getenv("NO_PROXY");
	return xasprintf("%s%slocalhost,127.0.0.0/8,::1", env && *env ? env : "",
			 env && *env ? "," : "");
}

/* ---- URLs ---- */

void imgf_http_escape(struct strbuf *sb, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
			strbuf_addch(sb, (char)c);
		} else {
			strbuf_addch(sb, '%');
			strbuf_addch(sb, hex[c >> 4]);
			strbuf_addch(sb, hex[c & 15]);
		}
	}
}

char *imgf_http_escaped(const char *s)
{
	struct strbuf sb = STRBUF_INIT;
	imgf_http_escape(&sb, s, false);
	return strbuf_detach(&sb, NULL);
}

/* ---- whole requests ---- */

void imgf_http_header_add(struct curl_slist **list, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *h = xvasprintf(fmt, ap);
	va_end(ap);
	struct curl_slist *l = curl_slist_append(*list, h);
	if (!l)
		abort();
	*list = l;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userp)
{
	struct imgf_http_body *b = &((struct imgf_http_req *)userp)->body;
	size_t want = size * nitems;
	if (b->kind == IMGF_HTTP_BODY_READER) {
		size_t n = b->read(b->arg, buf, want);
		if (n != CURL_READFUNC_ABORT && n != CURL_READFUNC_PAUSE)
			b->pos += n;
		return n;
	}
	uint64_t left = b->len > 0 && (uint64_t)b->len > b->pos ? (uint64_t)b->len - b->pos : 0;
	size_t n = left < want ? (size_t)left : want;
	if (!n)
		return 0;
	if (b->kind == IMGF_HTTP_BODY_MEMORY) {
		memcpy(buf, (const char *)b->data + b->pos, n);
		b->pos += n;
		return n;
	}
	ssize_t got;
	do
		got = pread(b->fd, buf, n, (off_t)(b->off + b->pos));
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		b->read_errno = errno;
		return CURL_READFUNC_ABORT;
	}
	if (got == 0) {
		b->shrank = true;
		return CURL_READFUNC_ABORT;
	}
	if (b->seen)
		b->seen(b->arg, b->off + b->pos, buf, (size_t)got);
	b->pos += (uint64_t)got;
	return (size_t)got;
}

/* A body in memory can be sent again (a redirect, a dead reused connection). */
static int on_seek(void *userp, curl_off_t offset, int origin)
{
	struct imgf_http_body *b = &((struct imgf_http_req *)userp)->body;
	if (origin != SEEK_SET || offset < 0 || offset > b->len)
		return CURL_SEEKFUNC_CANTSEEK;
	b->pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static size_t sink_file(struct imgf_http_sink *s, const char *data, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = write(s->fd, data + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			s->write_errno = errno;
			return 0;
		}
		done += (size_t)w;
	}
	return n;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct imgf_http_req *q = userp;
	struct imgf_http_sink *s = &q->sink;
	size_t n = size * nmemb;
	if (s->errbody) {
		long code = 0;
		curl_easy_getinfo(q->curl, CURLINFO_RESPONSE_CODE, &code);
		if (code < 200 || code > 299) {
			size_t room = s->errbody_max > s->errbody->len
					      ? s->errbody_max - s->errbody->len
					      : 0;
			strbuf_add(s->errbody, data, n < room ? n : room);
			if (n < room)
				return n;
			s->errbody_cut = true;
			return 0;
		}
	}
	switch (s->kind) {
	case IMGF_HTTP_SINK_DISCARD:
		break;
	case IMGF_HTTP_SINK_MEMORY:
		strbuf_add(s->buf, data, n);
		if (s->buf->overflow) {
			s->overflow = true;
			return 0;
		}
		break;
	case IMGF_HTTP_SINK_FILE:
		if (s->max && s->written + n > s->max) {
			s->overflow = true;
			return 0;
		}
		if (sink_file(s, data, n) != n)
			return 0;
		break;
	case IMGF_HTTP_SINK_CALLBACK:
		if (s->write(s->arg, data, n) != n)
			return 0;
		break;
	}
	if (s->tee)
		s->tee(s->tee_arg, data, n);
	s->written += n;
	return n;
}

static void set_method(CURL *h, struct imgf_http_req *q)
{
	const char *m = q->method ? q->method : "GET";
	const struct imgf_http_body *b = &q->body;
	if (!strcmp(m, "GET")) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		return;
	}
	if (!strcmp(m, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		return;
	}
	bool streamed = b->kind == IMGF_HTTP_BODY_FILE || b->kind == IMGF_HTTP_BODY_READER;
	if (!strcmp(m, "PUT") || streamed) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)(b->kind == IMGF_HTTP_BODY_NONE ? 0 : b->len));
	} else if (!strcmp(m, "POST") || b->kind == IMGF_HTTP_BODY_MEMORY) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(b->kind == IMGF_HTTP_BODY_NONE ? 0 : b->len));
	}
	if (strcmp(m, "PUT") != 0 && !(strcmp(m, "POST") == 0 && !streamed))
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(h, CURLOPT_READDATA, q);
	if (b->kind == IMGF_HTTP_BODY_MEMORY) {
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, q);
	}
}

void imgf_http_prepare(CURL *h, struct imgf_http_req *q, struct imgf_http_resp *r)
{
	curl_easy_reset(h);
	q->curl = h;
	q->body.pos = 0;
	q->body.read_errno = 0;
	q->body.shrank = false;
	q->sink.written = 0;
	q->sink.overflow = false;
	q->sink.errbody_cut = false;
	q->sink.write_errno = 0;
	if (q->sink.buf) {
		strbuf_reset(q->sink.buf);
		q->sink.buf->overflow = 0;
	}
	if (q->sink.errbody)
		strbuf_reset(q->sink.errbody);
	if (q->reply_headers)
		imgf_http_headers_reset(q->reply_headers);
	r->rc = CURLE_OK;
	r->status = 0;
	r->sent = 0;
	r->content_length = -1;
	r->errbuf[0] = '\0';
	struct imgf_http_opts o = q->opts;
	if (!o.errbuf)
		o.errbuf = r->errbuf;
	if (q->deadline_ms) {
		int64_t left = q->deadline_ms - imgf_http_mono_ms();
		if (left < 1)
			left = 1;
		if (!o.timeout_ms || o.timeout_ms > left)
			o.timeout_ms = (long)left;
	}
	imgf_http_setup(h, &o);
	curl_easy_setopt(h, CURLOPT_URL, q->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
	if (q->reply_headers) {
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, imgf_http_on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, q->reply_headers);
	}
	if (q->upload_buffer)
		curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, q->upload_buffer);
	set_method(h, q);
}

void imgf_http_finish(CURL *h, struct imgf_http_req *q, struct imgf_http_resp *r, CURLcode rc)
{
	if (rc == CURLE_WRITE_ERROR && q->sink.errbody_cut)
		rc = CURLE_OK;
	r->rc = rc;
	r->status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r->content_length);
	/* curl's own count restarts when it rewinds a body; the larger one is reported (not
	 * for a chunked body, whose count has the chunks' framing) */
	curl_off_t up = 0;
	curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
	r->sent = q->body.pos;
	if (q->body.kind == IMGF_HTTP_BODY_FILE && up > 0 && (uint64_t)up > r->sent)
		r->sent = (uint64_t)up;
	r->interrupted = rc == CURLE_ABORTED_BY_CALLBACK && imgf_interrupted;
	r->deadline_passed = rc == CURLE_OPERATION_TIMEDOUT && q->deadline_ms &&
			     imgf_http_mono_ms() >= q->deadline_ms;
	if (q->opts.errbuf && q->opts.errbuf != r->errbuf)
		snprintf(r->errbuf, sizeof(r->errbuf), "%s", q->opts.errbuf);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	q->curl = NULL;
}

int imgf_http_perform(CURL *h, struct imgf_http_req *q, struct imgf_http_resp *r,
		      struct imgf_error **err)
{
	r->attempts++;
	if (q->before && q->before(q, q->hook_arg, err) < 0)
		return -1;
	CURL *own = NULL;
	if (!h) {
		if (!(own = imgf_http_easy_new(NULL, err)))
			return -1;
		h = own;
	}
	imgf_http_prepare(h, q, r);
	CURLcode rc = curl_easy_perform(h);
	imgf_http_finish(h, q, r, rc);
	if (own)
		curl_easy_cleanup(own);
	return 0;
}

char *imgf_http_resp_reason(const struct imgf_http_resp *r)
{
	return imgf_http_curl_reason(r->errbuf, r->rc);
}

static bool idempotent(const char *m)
{
	return !m || !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") ||
	       !strcmp(m, "DELETE") || !strcmp(m, "OPTIONS");
}

static bool stopped(const struct imgf_http_req *q)
{
	return imgf_interrupted && !(q->opts.progress && q->opts.progress->uninterruptible);
}

int imgf_http_do(CURL *h, struct imgf_http_req *q, struct imgf_http_resp *r,
		 struct imgf_error **err)
{
	static const struct imgf_http_retry once = {.max_attempts = 1};
	const struct imgf_http_retry *p =
		q->retry && (q->retry_unsafe || idempotent(q->method)) ? q->retry : &once;
	r->attempts = 0;
	r->exhausted = false;
	r->interrupted = false;
	r->deadline_passed = false;
	for (int attempt = 1;; attempt++) {
		if (stopped(q)) {
			r->rc = CURLE_ABORTED_BY_CALLBACK;
			r->interrupted = true;
			return 0;
		}
		if (q->deadline_ms && imgf_http_mono_ms() >= q->deadline_ms) {
			r->rc = CURLE_OPERATION_TIMEDOUT;
			r->deadline_passed = true;
			return 0;
		}
		if (imgf_http_perform(h, q, r, err) < 0)
			return -1;
		r->attempts = attempt;
		int verdict = q->after ? q->after(q, r, q->hook_arg, err) : IMGF_HTTP_POLICY;
		if (verdict < 0)
			return -1;
		if (verdict == IMGF_HTTP_AGAIN) {
			r->attempts = --attempt;
			continue;
		}
		if (verdict == IMGF_HTTP_DONE || r->interrupted || r->deadline_passed)
			return 0;
		if (!imgf_http_retry_failure(r->rc, r->status))
			return 0;
		long ra = q->reply_headers ? imgf_http_retry_after(q->reply_headers) : -1;
		long delay;
		switch (imgf_http_retry_next(p, attempt, ra, q->deadline_ms, &delay)) {
		case IMGF_HTTP_RETRY_EXHAUSTED:
			r->exhausted = true;
			return 0;
		case IMGF_HTTP_RETRY_DEADLINE:
			r->deadline_passed = true;
			return 0;
		case IMGF_HTTP_RETRY_WAIT:
			break;
		}
		_cleanup_free_ char *why = r->rc != CURLE_OK ? imgf_http_resp_reason(r)
					   : q->why	     ? q->why(q, r, q->hook_arg)
							     : xasprintf("HTTP %ld", r->status);
		_cleanup_free_ char *prefix = xasprintf("%s '%s'", q->method ? q->method : "GET",
							q->what ? q->what : q->url);
		imgf_http_retry_log(p, attempt, delay, prefix, why);
		if (imgf_sleep_ms(delay) < 0) {
			r->rc = CURLE_ABORTED_BY_CALLBACK;
			r->interrupted = true;
			return 0;
		}
	}
}
