#!/usr/bin/env bash
# Run every tests/integration/t*.sh (or those given) and sum their results.
# Prints one closing line: "N passed, N failed, N skipped".
#
# Lanes: a script whose header has the line "# lane: NAME" runs in lane NAME, the others in
# lane "main". Each lane runs its scripts one after another, in name order; the lanes run at
# the same time (the VM scripts are mostly one TCG vCPU, the kind ones mostly waiting). Scripts
# in different lanes share only what tests/lib/harness.sh shares safely (the fixture and
# Kubernetes mirror servers, reference-counted). IMGF_TEST_LANES=1 runs everything in one lane.
# A script's output is printed whole when it ends, with its time.
set -u
cd "$(dirname "$0")/../.."
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || scripts=(tests/integration/t*.sh)
results=$(mktemp -d "${TMPDIR:-/tmp}/imgforge-check.XXXXXX")
trap 'rm -rf "$results"' EXIT

lane_of() {
	local l
	if [ "${IMGF_TEST_LANES:-}" = 1 ]; then
		echo main
		return
	fi
	l=$(sed -n '1,20s/^# lane: \([a-z0-9-]*\)$/\1/p' "$1" | head -n 1)
	echo "${l:-main}"
}

# run_lane NAME SCRIPT...: run them in order; NAME.sum gets "passed failed skipped".
run_lane() {
	local lane=$1 t out rc summary start p f s passed=0 failed=0 skipped=0
	shift
	for t in "$@"; do
		start=$(date +%s)
		out=$(bash "$t" 2>&1)
		rc=$?
		summary=$(printf '%s\n' "$out" | grep -E '^# [^ ]+: passed=[0-9]+ failed=[0-9]+ skipped=[0-9]+$' | tail -n 1)
		if [ -z "$summary" ]; then
			out+=$'\n'"not ok - $t ended without a summary (exit $rc)"
			failed=$((failed + 1))
		else
			p=$(echo "$summary" | sed -E 's/.*passed=([0-9]+).*/\1/')
			f=$(echo "$summary" | sed -E 's/.*failed=([0-9]+).*/\1/')
			s=$(echo "$summary" | sed -E 's/.*skipped=([0-9]+).*/\1/')
			passed=$((passed + p))
			failed=$((failed + f))
			skipped=$((skipped + s))
		fi
		# One block per script, whole: the other lanes print theirs under the same lock.
		{
			flock 9
			printf '*** %s [lane %s]\n%s\n*** %s: %ss\n' "$t" "$lane" "$out" "$t" \
				"$(($(date +%s) - start))"
		} 9>>"$results/print.lock"
	done
	echo "$passed $failed $skipped" >"$results/$lane.sum"
}

declare -A lanes=()
for t in "${scripts[@]}"; do
	[ -f "$t" ] || continue
	l=$(lane_of "$t")
	lanes[$l]+="$t"$'\n'
done
pids=()
for l in "${!lanes[@]}"; do
	mapfile -t list < <(printf '%s' "${lanes[$l]}")
	echo "*** lane $l: ${#list[@]} scripts"
	run_lane "$l" "${list[@]}" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

passed=0 failed=0 skipped=0
for l in "${!lanes[@]}"; do
	if ! read -r p f s <"$results/$l.sum"; then
		echo "not ok - lane $l ended without a result"
		failed=$((failed + 1))
		continue
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
