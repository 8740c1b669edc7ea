#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

static int64_t mono_ms(void)
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
	int64_t t = mono_ms();
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

bool imgf_http_retry_worth(const struct imgf_http_retry *p, int attempt, CURLcode rc, long status)
{
	if (attempt >= p->max_attempts)
		return false;
	return rc != CURLE_OK ? imgf_retry_transport(rc) : imgf_retry_status(status);
}

long imgf_http_retry_delay(const struct imgf_http_retry *p, int attempt, long retry_after_s)
{
	return imgf_retry_delay_ms(p->base_ms, attempt, retry_after_s);
}

void imgf_http_retry_log(const struct imgf_http_retry *p, int attempt, long delay_ms,
			 const char *prefix, const char *why)
{
	log_warn("%s: %s; retrying in %.1f s (attempt %d of %d)", prefix, why,
		 (double)delay_ms / 1000, attempt + 1, p->max_attempts);
}
