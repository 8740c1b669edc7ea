#!/usr/bin/env bash
# lane: vm
# needs: vm
# The OVA as other tools read it. GNU tar and sha256sum agree with its layout, .mf and
# .sha256; Debian's virt-v2v (-i ova) parses the OVF (name, memory, vCPUs, the disk on SCSI,
# the vmxnet3 NIC, firmware bios; uefi from a UEFI image's vmw:firmware efi), checks the .mf
# against the members and refuses a tampered one; and, when the libguestfs appliance starts
# here, opens the vmdk inside the tar and gets as far as inspecting it (the test disk holds no
# operating system, so inspection is where it stops).
# The OVA is written by tests/unit/test-ova.c (IMGF_TEST_KEEP_OVA=DIR).
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
NAME='ubuntu-2204+kube-v1.31.2'

if ! require_cmd qemu-img; then
	test_skip "OVAs read by tar, sha256sum and virt-v2v" "qemu-img is not installed (qemu-utils)"
	test_done
fi
# `make check` builds it (into IMGF_BUILD_DIR, with its flags); standalone runs build it here.
B=${IMGF_BUILD_DIR:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
OVA_TEST=$B/tests/test-ova
[ -x "$OVA_TEST" ] || make -C "$TOP" -s "B=$B" "$B/tests/test-ova" >"$TMP/make.log" 2>&1 ||
	{ cat "$TMP/make.log"; die "building $OVA_TEST failed"; }
OVA=$TMP/ova/$NAME.ova
export LIBGUESTFS_BACKEND=direct
vm_accel_env

test_expect_success "the unit test's writer leaves an OVA and its .sha256" '
	mkdir -p "$TMP/ova"
	IMGF_TEST_KEEP_OVA=$TMP/ova "$OVA_TEST" ova_is_reproducible >"$TMP/unit.log" 2>&1 ||
		{ cat "$TMP/unit.log"; exit 1; }
	cat "$TMP/unit.log"
	grep -qx "1 passed, 0 failed, 0 skipped" "$TMP/unit.log"
	printf "%s  %s\n" "$(cat "$OVA.sha256")" "$OVA" | sha256sum -c -
'

test_expect_success "GNU tar reads a USTAR tar of .ovf, .mf, .vmdk and sha256sum agrees with the .mf" '
	[ "$(dd if="$OVA" bs=1 skip=257 count=8 2>/dev/null | od -An -c | tr -s " ")" = " u s t a r \0 0 0" ]
	tar -tf "$OVA" >"$TMP/members"
	printf "%s\n" "$NAME.ovf" "$NAME.mf" "$NAME.vmdk" | diff -u - "$TMP/members"
	mkdir "$TMP/x" && tar -xf "$OVA" -C "$TMP/x"
	sed -nE "s/^SHA256\((.*)\)= ([0-9a-f]{64})$/\2  \1/p" "$TMP/x/$NAME.mf" >"$TMP/x/sums"
	[ "$(wc -l <"$TMP/x/sums")" -eq 2 ] && [ "$(wc -l <"$TMP/x/$NAME.mf")" -eq 2 ]
	(cd "$TMP/x" && sha256sum -c sums)
	qemu-img info "$TMP/x/$NAME.vmdk" | grep -q "create type: streamOptimized"
'

if ! require_cmd virt-v2v; then
	test_skip "virt-v2v reads the OVA" "virt-v2v is not installed (Debian package virt-v2v)"
	test_done
fi

test_expect_success "virt-v2v parses the OVF and accepts the manifest" '
	virt-v2v -i ova "$OVA" -o null --print-source >"$TMP/source" 2>&1 || { cat "$TMP/source"; exit 1; }
	cat "$TMP/source"
	grep -qxF "    source name: $NAME" "$TMP/source"
	grep -qE "^ *memory: 4294967296 \(bytes\)$" "$TMP/source"
	grep -qE "^ *nr vCPUs: 4$" "$TMP/source"
	grep -qE "^	0 \[scsi\]$" "$TMP/source"
	grep -qF "Bridge \"Lab & <Net>\" [vmxnet3]" "$TMP/source"
	grep -qE "^ *firmware: bios$" "$TMP/source"
'

test_expect_success "virt-v2v reads firmware uefi from a UEFI image's OVF (vmw:firmware efi)" '
	mkdir -p "$TMP/uefi"
	IMGF_TEST_KEEP_OVA_UEFI=$TMP/uefi "$OVA_TEST" ova_declares_uefi_firmware >"$TMP/unit-uefi.log" 2>&1 ||
		{ cat "$TMP/unit-uefi.log"; exit 1; }
	virt-v2v -i ova "$TMP/uefi/$NAME.ova" -o null --print-source >"$TMP/source-uefi" 2>&1 ||
		{ cat "$TMP/source-uefi"; exit 1; }
	grep -E "^ *firmware:" "$TMP/source-uefi"
	grep -qE "^ *firmware: uefi$" "$TMP/source-uefi"
'

test_expect_success "virt-v2v refuses the OVA once a digest in its .mf is changed" '
	mkdir "$TMP/bad" && tar -xf "$OVA" -C "$TMP/bad"
	sed -i -E "s/(vmdk\)= )0/\11/; t; s/(vmdk\)= )./\10/" "$TMP/bad/$NAME.mf"
	! tar -xOf "$OVA" "$NAME.mf" | cmp -s - "$TMP/bad/$NAME.mf" || exit 1
	(cd "$TMP/bad" && tar --format=ustar -cf bad.ova "$NAME.ovf" "$NAME.mf" "$NAME.vmdk")
	! virt-v2v -i ova "$TMP/bad/bad.ova" -o null --print-source >"$TMP/refused" 2>&1 || exit 1
	cat "$TMP/refused"
	grep -qF "checksum of disk $NAME.vmdk does not match manifest" "$TMP/refused"
'

# The appliance needs a kernel in /boot and takes ~20 s to start under TCG.
if ! timeout 600 guestfish --ro -a /dev/null run >"$TMP/appliance.log" 2>&1; then
	test_skip "virt-v2v opens the vmdk inside the OVA" \
		"the libguestfs appliance does not start here: $(tail -n 1 "$TMP/appliance.log")"
	test_done
fi

test_expect_success "virt-v2v opens the vmdk inside the OVA and inspects it" '
	! timeout 900 virt-v2v -i ova "$OVA" -o null >"$TMP/convert" 2>&1 || exit 1
	cat "$TMP/convert"
	grep -qF "Opening the source" "$TMP/convert"
	grep -qF "Inspecting the source" "$TMP/convert"
	grep -qF "No root device found in this operating system image" "$TMP/convert"
'

test_done
