#!/usr/bin/env bash
# The qemu builder's edges that need no real OS: a base image that names another host file
# is refused before anything is made.
. "$(dirname "$0")/../lib/harness.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
vm_accel_env
F=$TOP/tests/fixtures/config
work_dirs() { ls -d "${TMPDIR:-/var/tmp}"/imgforge-qemu-* 2>/dev/null | wc -l; }
export IMGFORGE_CACHE_DIR=$TMP/cache
if ! require_cmd qemu-img; then
	test_skip "qemu base and output" "qemu-img is not installed"
	test_done
fi
before_dirs=$(work_dirs)

# build_with BASE OUTPUT [imgforge options...]: build qemu-minimal.json from BASE.
build_with() {
	local base=$1 out=$2
	shift 2
	expect_exit "${WANT:-0}" "$IMGF" build --var qemu_base_image_url="$base" \
		--var qemu_base_image_checksum="sha256:$(sha256sum "$base" | cut -d" " -f1)" \
		--output-dir "$out" "$@" "$F/qemu-minimal.json"
}

mkdir -p "$TMP/host" && echo "a host file" >"$TMP/host/secret.raw" && truncate -s 1M "$TMP/host/secret.raw"

test_expect_success "a base qcow2 with a backing file is refused, naming the file; nothing is left" '
	qemu-img create -q -f qcow2 -F raw -b "$TMP/host/secret.raw" "$TMP/backed.qcow2" 1M &&
	WANT=1 build_with "$TMP/backed.qcow2" "$TMP/out-backed" &&
	expect_err "names the backing file '"'"'$TMP/host/secret.raw'"'"'" &&
	test ! -e "$TMP/out-backed" && test "$(work_dirs)" -eq "$before_dirs"
'

test_expect_success "a base qcow2 with an external data file is refused, naming the file" '
	qemu-img create -q -f qcow2 -o data_file="$TMP/host/data.raw",data_file_raw=on "$TMP/datafile.qcow2" 1M &&
	WANT=1 build_with "$TMP/datafile.qcow2" "$TMP/out-data" &&
	expect_err "names the external data file '"'"'$TMP/host/data.raw'"'"'" &&
	test ! -e "$TMP/out-data" && test "$(work_dirs)" -eq "$before_dirs"
'

test_done
