/*
 * A tiny unit-test harness: TEST(name) { ... CHECK(cond); ... } and a main that runs them in
 * order, printing "ok - name" / "not ok - name" and a closing "N passed, N failed".
 */
#ifndef IMGF_TEST_H
#define IMGF_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

extern int test_failed_flag;

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

int main(int argc, char **argv)
{
	int passed = 0, failed = 0;
	for (const struct test_case *t = __start_imgf_tests; t < __stop_imgf_tests; t++) {
		if (argc > 1 && !strstr(t->name, argv[1]))
			continue;
		test_failed_flag = 0;
		t->fn();
		if (test_failed_flag) {
			printf("not ok - %s\n", t->name);
			failed++;
		} else {
			printf("ok - %s\n", t->name);
			passed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

#endif
