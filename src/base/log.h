/* Human log lines on stderr, or one JSON event per line on stdout with --json. */
#ifndef IMGF_LOG_H
#define IMGF_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

void imgf_log_init(bool json, int verbosity);
bool imgf_log_json(void);
/* The image being built (NULL: none): every event carries it as "image". */
void imgf_log_set_image(const char *name);
/* This process logs into a pipe that a parallel build's parent relays: no progress bars. */
void imgf_log_set_relayed(void);
/*
 * A log line of a parallel build with its image's name, as Packer prints "==> name: ...":
 * "==> msg" becomes "==> IMAGE: msg" (a message that starts with "IMAGE: " keeps one),
 * "    step: out" becomes "    IMAGE: step: out", any other line "    IMAGE: line".
 */
char *imgf_log_prefix_line(const char *image, const char *line);
/* True when a progress bar may be drawn (stderr is a TTY and not --json). */
bool imgf_log_progress_enabled(void);
/* On the calling thread only: no progress bar (it runs beside other output). */
void imgf_log_thread_quiet(bool quiet);

__attribute__((format(printf, 1, 2))) void log_info(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_warn(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_debug(const char *fmt, ...);
/* Output of a command run in a target, prefixed with the step's label. */
void log_output(const char *label, int stream, const char *data, size_t len);

/*
 * A machine-readable event: with --json one line {"time":..,"event":NAME,...fields} on stdout;
 * otherwise `human` (if non-NULL) is logged as info. Steals `fields` (may be NULL).
 */
void imgf_event(const char *name, json_t *fields, const char *human);

/* A one-line progress bar on stderr (TTY only). total 0 = unknown. */
void imgf_progress(const char *label, uint64_t done, uint64_t total);
void imgf_progress_done(void);

#endif
