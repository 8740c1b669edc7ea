#!/usr/bin/env bash
# What each integration script needs, from its header line "# needs: WORD..." (within its first
# 20 lines). The words (tests/README.md says more):
#   none        nothing beyond the build's own tools
#   docker      a Docker Engine (hack/test-env.sh starts dockerd)
#   vm          libguestfs's appliance, libvirt or qemu-system: a virtual machine
#   go          Go, for the from-source Kubernetes mirror (tests/lib/kube.sh) or its tools
#   gcs         the GCS emulator fake-gcs-server on 127.0.0.1:4443 (hack/test-env.sh)
#   fixtures    the loopback fixture servers (tests/lib/fixtures.sh; python3)
#   containerd  containerd and ctr on the host
#   root        uid 0
# Usage: tests/lib/needs.sh quick [SCRIPT...]   the scripts that need neither docker nor vm
#        tests/lib/needs.sh check [SCRIPT...]   every script has a valid header (else exit 1)
# With no SCRIPT, every tests/integration/t*.sh.
set -u
cd "$(dirname "$0")/../.." || exit 1
known=" none docker vm go gcs fixtures containerd root "

# needs_of SCRIPT: its words, or nothing (and exit 1) when it has no header line.
needs_of() {
	local line
	line=$(sed -n '1,20{/^# needs:/{s/^# needs:[[:space:]]*//p;q}}' "$1")
	[ -n "$line" ] || return 1
	echo "$line"
}

mode=${1:-}
shift || true
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || scripts=(tests/integration/t*.sh)
bad=0
for t in "${scripts[@]}"; do
	if ! words=$(needs_of "$t"); then
		echo "$t: no '# needs: WORD...' line in its first 20 lines (words:$known)" >&2
		bad=1
		continue
	fi
	quick=1
	for w in $words; do
		case "$known" in
		*" $w "*) ;;
		*)
			echo "$t: '# needs:' names '$w', which is none of:$known" >&2
			bad=1
			;;
		esac
		case $w in docker | vm) quick=0 ;; esac
	done
	if [ "$words" != none ] && [[ " $words " == *" none "* ]]; then
		echo "$t: '# needs: $words': 'none' stands alone" >&2
		bad=1
	fi
	[ "$mode" = quick ] && [ $quick = 1 ] && echo "$t"
done
case $mode in
quick | check) ;;
*)
	echo "usage: tests/lib/needs.sh quick|check [SCRIPT...]" >&2
	exit 2
	;;
esac
exit $bad
