#!/usr/bin/env bash
# Exit 0 when KVM really runs a guest here, 1 when not. /dev/kvm alone is not enough: nested
# setups hand out one that aborts QEMU as soon as a vCPU's MSRs are set (with the host CPU, as
# libguestfs runs it), or one whose guests never run an instruction (QEMU stays up, silent).
# So a kernel from /boot is booted with KVM and must print its banner on the serial console
# within 15 s. The qemu builder's `accelerator: auto` asks the same question.
[ -w /dev/kvm ] || exit 1
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort | tail -n 1)
[ -n "$kernel" ] || exit 1
timeout 15 qemu-system-x86_64 -accel kvm -cpu host -display none -nodefaults -m 256 -no-reboot \
	-serial stdio -kernel "$kernel" -append "console=ttyS0 panic=-1" 2>/dev/null </dev/null |
	grep -q -m 1 "Linux version"
