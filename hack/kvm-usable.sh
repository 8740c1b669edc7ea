#!/usr/bin/env bash
# Exit 0 when KVM really runs a guest here, 1 when not. /dev/kvm alone is not enough: nested
# setups hand one out that aborts QEMU as soon as a vCPU's MSRs are set (with the host CPU,
# as libguestfs runs it). The qemu builder's `accelerator: auto` asks the same question.
[ -w /dev/kvm ] || exit 1
rc=0
(timeout 2 qemu-system-x86_64 -accel kvm -cpu host -display none -nodefaults -m 32 -no-reboot
	exit $?) >/dev/null 2>&1 || rc=$?
# Still running when timeout ended it: KVM works.
[ "$rc" = 124 ]
