# Integration-test harness (after git's t/test-lib.sh). Source it from tests/integration/tNNNN-*.sh:
#   test_expect_success "what it shows" 'commands'   run commands with `set -e`; ok if they succeed
#   test_expect_failure_output CODE "pattern" "what" 'commands'  exit CODE and stderr matching
#   test_skip "what" "why"                             counted, with the reason
#   test_done                                          prints the summary and exits
# Helpers: die, require_cmd, docker_available, IMGF (the binary), TOP (repo root), TMP (per-script).
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IMGF=${IMGF:-$TOP/imgforge}
TEST_NAME=$(basename "$0" .sh)
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
mkdir -p "$TEST_CACHE"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TEST_NAME.XXXXXX")
# A step and download cache of the script's own unless it names one: scripts of other lanes
# run at the same time (tests/lib/run-integration.sh).
export IMGFORGE_CACHE_DIR=${IMGFORGE_CACHE_DIR:-$TMP/cache}
test_count=0
test_passed=0
test_failed=0
test_skipped=0
test_cleanups=()

test_at_exit() {
	local c
	for c in "${test_cleanups[@]+"${test_cleanups[@]}"}"; do
		eval "$c" >/dev/null 2>&1 || true
	done
	# The step cache's images of builds under $TMP go with it (tests/integration/t1235).
	[ -n "${KEEP_TMP:-}" ] || find "$TMP" -type d -name steps -prune 2>/dev/null |
		while read -r d; do
			IMGFORGE_CACHE_DIR=$(dirname "$d") "$IMGF" cache prune >/dev/null 2>&1 || true
		done
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap test_at_exit EXIT
# Register a command to run when the script ends, however it ends.
at_exit() { test_cleanups+=("$1"); }

die() {
	echo "error: $*" >&2
	exit 1
}

say() { printf '# %s\n' "$*"; }

test_expect_success() {
	local desc=$1 body=$2
	test_count=$((test_count + 1))
	local log="$TMP/test-$test_count.log"
	# A statement of its own: inside `if`, `&&` or `||` bash would ignore the `set -e`.
	# (The script itself runs without -e, so a failing body does not end it.)
	(
		set -e
		eval "$body"
	) >"$log" 2>&1
	local rc=$?
	if [ "$rc" -eq 0 ]; then
		test_passed=$((test_passed + 1))
		echo "ok $test_count - $desc"
		[ -z "${VERBOSE:-}" ] || sed 's/^/#   /' "$log"
	else
		test_failed=$((test_failed + 1))
		echo "not ok $test_count - $desc"
		tail -n 40 "$log" | sed 's/^/#   /'
	fi
}

# A script whose tests prove a claim (a node works: tests/lib/kind-e2e.sh, t1290) sets
# TEST_CLAIM=1: in CI (CI=true) a prerequisite missing there is a failure, not a skip.
test_skip() {
	test_count=$((test_count + 1))
	if [ "${CI:-}" = true ] && [ -n "${TEST_CLAIM:-}" ]; then
		test_failed=$((test_failed + 1))
		echo "not ok $test_count - $1 (a prerequisite is missing in CI, where this may not skip: $2)"
		return
	fi
	test_skipped=$((test_skipped + 1))
	echo "ok $test_count # skip $1 ($2)"
}

test_done() {
	echo "# $TEST_NAME: passed=$test_passed failed=$test_failed skipped=$test_skipped"
	[ "$test_failed" -eq 0 ]
	exit $?
}

# Run imgforge expecting exit status $1; stderr goes to $TMP/err, stdout to $TMP/out.
expect_exit() {
	local want=$1 rc=0
	shift
	"$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "exit status $rc, want $want: $*" >&2
		cat "$TMP/err" >&2
		return 1
	fi
}

# The stderr of the last expect_exit must contain this fixed string.
expect_err() {
	grep -qF -- "$1" "$TMP/err" || {
		echo "stderr lacks: $1" >&2
		echo "stderr was:" >&2
		cat "$TMP/err" >&2
		return 1
	}
}

docker_available() {
	command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

require_cmd() {
	command -v "$1" >/dev/null 2>&1
}

# Where /dev/kvm exists but cannot run a guest (nested setups whose KVM fails on the host
# CPU's MSRs), point libguestfs (guestfish, virt-make-fs) at TCG, as imgforge's own probe does.
vm_accel_env() {
	[ ! -e /dev/kvm ] || bash "$TOP/hack/kvm-usable.sh" || export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
}

# Servers shared by scripts running at once (tests/lib/shared.sh).
. "$TOP/tests/lib/shared.sh"

# The fixture mirror and registry on loopback for this script (tests/lib/fixtures.sh), shared
# with scripts running at once and stopped by the last of them; sets FIX. Skips the whole script,
# saying why, when the machine lacks what it needs.
fixtures_up() {
	. "$TOP/tests/lib/fixtures.sh"
	local why
	if ! why=$(fixtures_check 2>&1); then
		test_skip "$1" "fixtures need: $why"
		test_done
	fi
	FIX=$TEST_CACHE/fixtures
	mkdir -p "$FIX"
	at_exit "fixtures_release"
	if shared_acquire "$FIX" && fixtures_attach "$FIX" >>"$TMP/fixtures.log" 2>&1; then
		shared_hold "$FIX"
		return 0
	fi
	fixtures_build "$FIX" >"$TMP/fixtures.log" 2>&1 || {
		shared_unlock
		cat "$TMP/fixtures.log"
		die "fixtures_build failed"
	}
	fixtures_serve "$FIX" >>"$TMP/fixtures.log" 2>&1 || {
		shared_unlock
		cat "$TMP/fixtures.log"
		die "fixtures_serve failed"
	}
	shared_hold "$FIX"
}
fixtures_release() {
	if shared_release "$FIX"; then
		fixtures_stop "$FIX"
	fi
	shared_unlock
}

# A reachable Docker Engine and the debootstrap base image (tests/lib/base-image.sh); sets
# BASE. Skips the whole script when there is no engine.
docker_up() {
	if ! docker_available; then
		test_skip "$1" "no Docker Engine reachable"
		test_done
	fi
	. "$TOP/tests/lib/base-image.sh"
	BASE=$(base_image_ensure) || die "could not make the base image"
}
