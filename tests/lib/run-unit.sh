#!/bin/sh
# Run each unit-test binary and sum their closing "N passed, N failed, N skipped" lines into
# one such line. A skipped test ("ok - NAME # skip WHY") is counted as skipped, not as passed.
passed=0
failed=0
skipped=0
summary='^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$'
for t in "$@"; do
	out=$("$t" 2>&1)
	rc=$?
	printf '%s\n' "$out" | grep -Ev "$summary" | sed "s|^|$(basename "$t"): |"
	line=$(printf '%s\n' "$out" | grep -E "$summary" | tail -n 1)
	if [ -z "$line" ]; then
		echo "not ok - $(basename "$t") crashed (exit $rc)"
		failed=$((failed + 1))
		continue
	fi
	p=${line%% passed*}
	f=${line#*, }
	f=${f%% failed*}
	s=${line##*, }
	s=${s%% skipped}
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $(basename "$t") exited $rc"
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
