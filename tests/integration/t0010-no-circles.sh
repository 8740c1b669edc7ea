#!/usr/bin/env bash
# needs: none
# The layering holds: no import circle between imgforge's source files, of either kind
# hack/circles.py reads: calls (from the objects `make` built: a file takes a symbol another
# defines, nm) and includes (a file includes the header of another .c, itself or through its
# own header). A new circle anywhere in src/, builders/, provisioners/ or post-processors/
# fails make check.
# shellcheck disable=SC2016 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
B=${IMGF_BUILD_DIR:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
if ! require_cmd nm || ! require_cmd python3; then
	test_skip "no import circles" "nm (binutils) and python3 are needed"
	test_done
fi
[ -f "$B/src/main.o" ] || make -C "$TOP" -s "B=$B" imgforge >"$TMP/make.log" 2>&1 ||
	{ cat "$TMP/make.log"; die "make failed"; }

test_expect_success "no import circle between the source files (hack/circles.py on the build's objects)" '
	python3 "$TOP/hack/circles.py" "$B" >"$TMP/circles" 2>&1 || { cat "$TMP/circles"; exit 1; }
	grep -E "^circles: [0-9]+ files, [0-9]+ arrows, 0 circle\(s\)$" "$TMP/circles" &&
	grep -E "^include circles: [0-9]+ files, [0-9]+ arrows, 0 circle\(s\)$" "$TMP/circles"
'

test_expect_success "a circle is found and named with the symbols on its arrows" '
	mkdir -p "$TMP/objs/src" &&
	printf "int b_get(void);\nint a_get(void) { return b_get() + 1; }\n" >"$TMP/a.c" &&
	printf "int a_get(void);\nint b_get(void) { return 1; }\nint b_twice(void) { return 2 * a_get(); }\n" >"$TMP/b.c" &&
	cc -c -o "$TMP/objs/src/a.o" "$TMP/a.c" && cc -c -o "$TMP/objs/src/b.o" "$TMP/b.c" &&
	{ python3 "$TOP/hack/circles.py" "$TMP/objs" >"$TMP/out" 2>&1; test $? -eq 1; } &&
	grep -qx "circle 1: src/a.c, src/b.c" "$TMP/out" &&
	grep -qx "  src/a.c -> src/b.c: b_get" "$TMP/out" &&
	grep -qx "  src/b.c -> src/a.c: a_get" "$TMP/out"
'

test_expect_success "an include circle is found too, where no call closes it" '
	mkdir -p "$TMP/inc/src" "$TMP/inc/objs/src" &&
	printf "struct a_opts { int n; };\nint a_run(void);\n" >"$TMP/inc/src/a.h" &&
	printf "int b_get(void);\n" >"$TMP/inc/src/b.h" &&
	printf "#include \"a.h\"\n#include \"b.h\"\nint a_run(void) { return b_get(); }\n" >"$TMP/inc/src/a.c" &&
	printf "#include \"a.h\"\n#include \"b.h\"\nint b_get(void) { return (int)sizeof(struct a_opts); }\n" >"$TMP/inc/src/b.c" &&
	cc -c -o "$TMP/inc/objs/src/a.o" "$TMP/inc/src/a.c" && cc -c -o "$TMP/inc/objs/src/b.o" "$TMP/inc/src/b.c" &&
	{ python3 "$TOP/hack/circles.py" --src "$TMP/inc" "$TMP/inc/objs" >"$TMP/out" 2>&1; test $? -eq 1; } &&
	grep -qx "circles: 2 files, 1 arrows, 0 circle(s)" "$TMP/out" &&
	grep -qx "include circle 1: src/a.c, src/b.c" "$TMP/out" &&
	grep -qx "  src/b.c -> src/a.c: a.h" "$TMP/out"
'

test_done
