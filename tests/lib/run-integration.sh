#!/usr/bin/env bash
# Run every tests/integration/t*.sh (or those given) and sum their results.
# Prints one closing line: "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/../.."
passed=0 failed=0 skipped=0
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || scripts=(tests/integration/t*.sh)
for t in "${scripts[@]}"; do
	[ -f "$t" ] || continue
	echo "*** $t"
	start=$(date +%s)
	out=$(bash "$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	summary=$(printf '%s\n' "$out" | grep -E '^# [^ ]+: passed=[0-9]+ failed=[0-9]+ skipped=[0-9]+$' | tail -n 1)
	if [ -z "$summary" ]; then
		echo "not ok - $t ended without a summary (exit $rc)"
		failed=$((failed + 1))
		continue
	fi
	p=$(echo "$summary" | sed -E 's/.*passed=([0-9]+).*/\1/')
	f=$(echo "$summary" | sed -E 's/.*failed=([0-9]+).*/\1/')
	s=$(echo "$summary" | sed -E 's/.*skipped=([0-9]+).*/\1/')
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	echo "*** $t: $(( $(date +%s) - start ))s"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
