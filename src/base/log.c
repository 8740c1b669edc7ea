#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "redact.h"
#include "util.h"

static bool log_json_mode;
static int log_verbosity;
static bool progress_shown;
static bool log_color;
static bool log_tty;
static char *log_image; /* the image being built: the "image" of every event */

static bool use_color_now(void)
{
	const char *nc = getenv("NO_COLOR");
	return !(nc && *nc) && isatty(STDERR_FILENO);
}

void imgf_log_init(bool json, int verbosity)
{
	log_json_mode = json;
	log_verbosity = verbosity;
	/* Decided once: a parallel build's child logs into a pipe its parent relays to the TTY. */
	log_tty = isatty(STDERR_FILENO);
	log_color = use_color_now();
}

void imgf_log_set_image(const char *name)
{
	free(log_image);
	log_image = name ? xstrdup(name) : NULL;
}

void imgf_log_set_relayed(void)
{
	log_tty = false; /* a progress bar's \r would garble the relayed lines */
}

static bool skip_prefix(const char **p, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(*p, prefix, n))
		return false;
	*p += n;
	return true;
}

char *imgf_log_prefix_line(const char *image, const char *line)
{
	const char *p = line;
	/* A colored line starts with an SGR sequence: it stays in front. */
	if (p[0] == '\033' && p[1] == '[') {
		const char *m = strchr(p, 'm');
		if (m)
			p = m + 1;
	}
	int esc = (int)(p - line);
	_cleanup_free_ char *own = xasprintf("%s: ", image);
	if (skip_prefix(&p, "==> ")) {
		const char *level = p;
		if (!skip_prefix(&p, "warning: "))
			skip_prefix(&p, "debug: ");
		int nlevel = (int)(p - level);
		skip_prefix(&p, own); /* the message named the image already */
		return xasprintf("%.*s==> %s%.*s%s", esc, line, own, nlevel, level, p);
	}
	p = line + esc;
	skip_prefix(&p, "    ");
	return xasprintf("%.*s    %s%s", esc, line, own, p);
}

bool imgf_log_json(void)
{
	return log_json_mode;
}

static _Thread_local bool thread_quiet;

void imgf_log_thread_quiet(bool quiet)
{
	thread_quiet = quiet;
}

bool imgf_log_progress_enabled(void)
{
	return !log_json_mode && log_tty && !thread_quiet;
}

static void clear_progress(void)
{
	if (progress_shown) {
		fputs("\r\033[K", stderr);
		progress_shown = false;
	}
}

static void vlog(const char *level, const char *color, const char *fmt, va_list ap)
{
	clear_progress();
	_cleanup_free_ char *raw = xvasprintf(fmt, ap);
	char *msg = imgf_redact(raw);
	if (log_json_mode) {
		json_t *ev = json_pack("{s:s,s:s}", "level", level, "message", msg);
		imgf_event("log", ev, NULL);
	} else if (log_color && color) {
		fprintf(stderr, "%s==> %s\033[0m\n", color, msg);
	} else {
		fprintf(stderr, "==> %s%s%s\n", strcmp(level, "info") ? level : "",
			strcmp(level, "info") ? ": " : "", msg);
	}
	free(msg);
}

void log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("info", "\033[1m", fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("warning", "\033[33m", fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	if (log_verbosity < 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("debug", "\033[2m", fmt, ap);
	va_end(ap);
}

void log_output(const char *label, int stream, const char *data, size_t len)
{
	if (log_json_mode) {
		json_t *ev = json_pack("{s:s,s:s,s:s%}", "step", label, "stream",
				       stream == 2 ? "stderr" : "stdout", "data", data, len);
		imgf_event("output", ev, NULL);
		return;
	}
	clear_progress();
	/* A command may print a URL it was given: redacted like every other line. */
	_cleanup_free_ char *raw = xstrndup(data, len);
	_cleanup_free_ char *text = imgf_redact(raw);
	/* Prefix each line so interleaved steps stay readable. */
	const char *p = text, *end = text + strlen(text);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		fprintf(stderr, "    %s: %.*s\n", label, (int)n, p);
		p += n + (nl ? 1 : 0);
	}
}

void imgf_event(const char *name, json_t *fields, const char *human)
{
	if (!log_json_mode) {
		if (human)
			log_info("%s", human);
		json_decref(fields);
		return;
	}
	json_t *ev = json_object();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	json_object_set_new(ev, "time", json_real((double)ts.tv_sec + ts.tv_nsec / 1e9));
	json_object_set_new(ev, "event", json_string(name));
	if (log_image)
		json_object_set_new(ev, "image", json_string(log_image));
	if (fields)
		json_object_update(ev, fields);
	if (human && !json_object_get(ev, "message"))
		json_object_set_new(ev, "message", json_string(human));
	_cleanup_free_ char *raw = json_dumps(ev, JSON_COMPACT);
	_cleanup_free_ char *line = imgf_redact(raw);
	if (line) {
		flockfile(stdout); /* one whole line, whichever thread writes */
		fputs(line, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		funlockfile(stdout);
	}
	json_decref(ev);
	json_decref(fields);
}

static void human_size(uint64_t n, char *buf, size_t len)
{
	const char *units[] = {"B", "KiB", "MiB", "GiB"};
	double v = (double)n;
	size_t u = 0;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, units[u]);
}

void imgf_progress(const char *label, uint64_t done, uint64_t total)
{
	if (!imgf_log_progress_enabled())
		return;
	char d[32], t[32];
	_cleanup_free_ char *shown = imgf_redact(label);
	label = shown;
	human_size(done, d, sizeof(d));
	if (total) {
		human_size(total, t, sizeof(t));
		int pct = (int)(done * 100 / total);
		int bars = pct / 5;
		fprintf(stderr, "\r\033[K%-40.40s [%-20.*s] %3d%% %s/%s", label, bars,
			"####################", pct, d, t);
	} else {
		fprintf(stderr, "\r\033[K%-40.40s %s", label, d);
	}
	progress_shown = true;
}

void imgf_progress_done(void)
{
	clear_progress();
}
