#!/usr/bin/env bash
# Start virtlogd and libvirtd by hand when they are not running (no systemd as PID 1 here);
# safe to run twice. Called by hack/test-env.sh.
set -euo pipefail
if ! command -v libvirtd >/dev/null 2>&1; then
	echo "libvirt-env: libvirtd is not installed (hack/install-deps.sh installs it)" >&2
	exit 1
fi
running() { pgrep -x "$1" >/dev/null 2>&1; }
if ! running virtlogd; then
	virtlogd --daemon
	echo "libvirt-env: started virtlogd"
fi
if ! running libvirtd; then
	mkdir -p /var/run/libvirt
	libvirtd --daemon
	echo "libvirt-env: started libvirtd"
fi
for _ in $(seq 1 50); do
	virsh -c qemu:///system version >/dev/null 2>&1 && break
	sleep 0.2
done
virsh -c qemu:///system version >/dev/null 2>&1 || {
	echo "libvirt-env: libvirtd does not answer on qemu:///system" >&2
	exit 1
}
echo "libvirt-env: qemu:///system answers"
