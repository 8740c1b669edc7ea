/*
 * The one retry policy for HTTP (downloads, registry pulls, uploads): which failures are
 * worth another attempt, how long to wait before it, and Retry-After. http.h applies it.
 */
#ifndef IMGF_RETRY_H
#define IMGF_RETRY_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

/* No single wait (backoff or Retry-After) is longer than this. */
#define IMGF_RETRY_DELAY_CAP_MS 60000L

/* Transport failures worth another attempt: timeouts, refused or dropped connections.
 * A name that does not resolve is not one: the build should fail at once, naming it. */
bool imgf_retry_transport(CURLcode rc);
/* HTTP statuses worth another attempt: 408, 429 and 5xx. */
bool imgf_retry_status(long status);
/* The wait after `attempt` attempts (1 = after the first): base_ms doubled per further
 * attempt, with +-50% jitter, or Retry-After seconds when the server sent one (>= 0); capped. */
long imgf_retry_delay_ms(long base_ms, int attempt, long retry_after_s);
/* A Retry-After value (delay-seconds or an HTTP date) as seconds from now, capped at an hour;
 * -1 when it is neither. */
long imgf_retry_after_s(const char *value);
/* Sleep, in slices so SIGINT/SIGTERM is noticed; -1 when interrupted. */
int imgf_sleep_ms(long ms);

#endif
