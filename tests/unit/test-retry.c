/* The shared retry policy: what is retried, how long to wait, Retry-After values. */
#include <time.h>

#include <curl/curl.h>

#include "retry.h"
#include "test.h"

TEST(retryable_statuses_and_transport_failures)
{
	CHECK(imgf_retry_status(408) && imgf_retry_status(429) && imgf_retry_status(503));
	CHECK(!imgf_retry_status(404) && !imgf_retry_status(401) && !imgf_retry_status(200));
	CHECK(imgf_retry_transport(CURLE_OPERATION_TIMEDOUT));
	CHECK(imgf_retry_transport(CURLE_RECV_ERROR));
	/* A name that does not resolve fails at once, naming it. */
	CHECK(!imgf_retry_transport(CURLE_COULDNT_RESOLVE_HOST));
}

TEST(backoff_doubles_with_jitter_and_is_capped)
{
	for (int i = 0; i < 50; i++) {
		long d1 = imgf_retry_delay_ms(1000, 1, -1);
		long d3 = imgf_retry_delay_ms(1000, 3, -1);
		CHECK(d1 >= 500 && d1 <= 1500);
		CHECK(d3 >= 2000 && d3 <= 6000);
		CHECK(imgf_retry_delay_ms(1000, 40, -1) <= IMGF_RETRY_DELAY_CAP_MS);
	}
	CHECK(imgf_retry_delay_ms(1000, 1, 7) == 7000);
	CHECK(imgf_retry_delay_ms(1000, 1, 3600) == IMGF_RETRY_DELAY_CAP_MS);
}

TEST(retry_after_seconds_and_http_dates)
{
	CHECK(imgf_retry_after_s("5") == 5);
	CHECK(imgf_retry_after_s("99999") == 3600);
	CHECK(imgf_retry_after_s("soon") == -1);
	CHECK(imgf_retry_after_s("5x") == -1);
	CHECK(imgf_retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0); /* in the past */
	time_t later = time(NULL) + 120;
	char date[64];
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime(&later));
	long s = imgf_retry_after_s(date);
	CHECK(s >= 118 && s <= 121);
}
