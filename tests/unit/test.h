/*
 * A tiny unit-test harness: TEST(name) { ... CHECK(cond); ... } and a main that runs them in
 * order, printing "ok - name", "not ok - name" or "ok - name # skip WHY" and a closing
 * "N passed, N failed, N skipped". SKIP("why") ends a test that cannot run on this machine;
 * it counts as skipped, never as passed (a check that failed before it still fails the test).
 */
#ifndef IMGF_TEST_H
#define IMGF_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins.h"

struct test_case {
	const char *name;
	void (*fn)(void);
};

extern int test_failed_flag;
extern const char *test_skip_reason;

#define SKIP(why)                         \
	do {                              \
		test_skip_reason = (why); \
		return;                   \
	} while (0)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failed_flag = 1;                                                      \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b)                                                                        \
	do {                                                                                   \
		const char *a_ = (a), *b_ = (b);                                               \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                       \
			fprintf(stderr, "  %s:%d: %s == %s\n    got:  '%s'\n    want: '%s'\n", \
				__FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",                \
				b_ ? b_ : "(null)");                                           \
			test_failed_flag = 1;                                                  \
		}                                                                              \
	} while (0)

/* The error message must contain `needle`. */
#define CHECK_ERR(err, needle)                                                                    \
	do {                                                                                      \
		if (!(err) || !strstr((err)->msg, (needle))) {                                    \
			fprintf(stderr, "  %s:%d: error should contain '%s', got '%s'\n",         \
				__FILE__, __LINE__, (needle), (err) ? (err)->msg : "(no error)"); \
			test_failed_flag = 1;                                                     \
		}                                                                                 \
	} while (0)

#define TEST(name)                                                                             \
	static void test_##name(void);                                                         \
	static const struct test_case tc_##name __attribute__((                                \
		used, section("imgf_tests"), aligned(sizeof(void *)))) = {#name, test_##name}; \
	static void test_##name(void)

extern const struct test_case __start_imgf_tests[], __stop_imgf_tests[];
int test_failed_flag;
const char *test_skip_reason;

int main(int argc, char **argv)
{
	int passed = 0, failed = 0, skipped = 0;
	imgf_plugins_register();
	for (const struct test_case *t = __start_imgf_tests; t < __stop_imgf_tests; t++) {
		if (argc > 1 && !strstr(t->name, argv[1]))
			continue;
		test_failed_flag = 0;
		test_skip_reason = NULL;
		t->fn();
		if (test_failed_flag) {
			printf("not ok - %s\n", t->name);
			failed++;
		} else if (test_skip_reason) {
			printf("ok - %s # skip %s\n", t->name, test_skip_reason);
			skipped++;
		} else {
			printf("ok - %s\n", t->name);
			passed++;
		}
	}
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}

#endif
