#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "retry.h"
#include "util.h"

bool imgf_retry_transport(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_SEND_FAIL_REWIND: /* a reused connection died; curl would resend the body */
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

bool imgf_retry_status(long status)
{
	return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

/* xorshift64*: jitter only has to decorrelate clients, not be unpredictable. */
static double jitter01(void)
{
	static uint64_t s;
	if (!s) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
		s |= 1;
	}
	s ^= s >> 12;
	s ^= s << 25;
	s ^= s >> 27;
	return (double)((s * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

long imgf_retry_delay_ms(long base_ms, int attempt, long retry_after_s)
{
	if (retry_after_s >= 0)
		return retry_after_s * 1000 > IMGF_RETRY_DELAY_CAP_MS ? IMGF_RETRY_DELAY_CAP_MS
								      : retry_after_s * 1000;
	double d = (double)base_ms;
	for (int i = 1; i < attempt && d < IMGF_RETRY_DELAY_CAP_MS; i++)
		d *= 2;
	d *= 0.5 + jitter01();
	return d > IMGF_RETRY_DELAY_CAP_MS ? IMGF_RETRY_DELAY_CAP_MS : (long)d;
}

long imgf_retry_after_s(const char *value)
{
	if (*value >= '0' && *value <= '9') {
		char *end;
		unsigned long s = strtoul(value, &end, 10);
		if (*end && *end != ' ' && *end != '\t')
			return -1;
		return s > 3600 ? 3600 : (long)s;
	}
	time_t when = curl_getdate(value, NULL);
	if (when == -1)
		return -1;
	time_t now = time(NULL);
	long s = when > now ? (long)(when - now) : 0;
	return s > 3600 ? 3600 : s;
}

int imgf_sleep_ms(long ms)
{
	struct timespec now, until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!imgf_interrupted) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = (long)(until.tv_sec - now.tv_sec) * 1000 +
			    (until.tv_nsec - now.tv_nsec) / 1000000L;
		if (left <= 0)
			return 0;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (left > 100 ? 100 : left) * 1000000L};
		nanosleep(&ts, NULL);
	}
	return -1;
}
