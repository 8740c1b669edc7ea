#!/usr/bin/env bash
# make check: the unit tests, then the integration tests, then one closing line
# "N passed, N failed, N skipped" over both (a skipped test says why and is not a pass).
# make check-quick (--quick): only the integration scripts whose "# needs:" header names
# neither docker nor vm (tests/lib/needs.sh); a script without that header fails the run.
set -u
cd "$(dirname "$0")/../.."
integration=()
if [ "${1:-}" = --quick ]; then
	shift
	if ! quick=$(bash tests/lib/needs.sh quick); then
		echo "not ok - an integration script is not classified (see above)"
		echo "0 passed, 1 failed, 0 skipped"
		exit 1
	fi
	mapfile -t integration <<<"$quick"
fi
unit_out=$(sh tests/lib/run-unit.sh "$@" 2>&1)
printf '%s\n' "$unit_out"
u=$(printf '%s\n' "$unit_out" | tail -n 1)
up=$(echo "$u" | sed -E 's/^([0-9]+) passed.*/\1/')
uf=$(echo "$u" | sed -E 's/.* ([0-9]+) failed.*/\1/')
us=$(echo "$u" | sed -E 's/.* ([0-9]+) skipped.*/\1/')
int_out_file=$(mktemp)
bash tests/lib/run-integration.sh "${integration[@]+"${integration[@]}"}" 2>&1 | tee "$int_out_file"
i=$(tail -n 1 "$int_out_file")
rm -f "$int_out_file"
ip=$(echo "$i" | sed -E 's/^([0-9]+) passed.*/\1/')
if_=$(echo "$i" | sed -E 's/.* ([0-9]+) failed.*/\1/')
is=$(echo "$i" | sed -E 's/.* ([0-9]+) skipped.*/\1/')
case "$up$uf$us$ip$if_$is" in
*[!0-9]*|"") echo "0 passed, 1 failed, 0 skipped"; exit 1 ;;
esac
echo
echo "$((up + ip)) passed, $((uf + if_)) failed, $((us + is)) skipped"
[ $((uf + if_)) -eq 0 ]
