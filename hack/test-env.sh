#!/usr/bin/env bash
# Start what the tests need when it is not already running; safe to run twice.
#   - a Docker Engine: the running one (DOCKER_HOST or /var/run/docker.sock), else Debian's dockerd
#   - a GCS emulator on http://127.0.0.1:4443 (fake-gcs-server from hack/install-deps.sh --test,
#     memory backend); tests point STORAGE_EMULATOR_HOST at it themselves, nothing is exported here
set -euo pipefail

gcs_addr=127.0.0.1:4443
gcs_log=/var/tmp/imgforge-fake-gcs-server.log

gcs_ping() {
	curl -fsS --max-time 5 -o /dev/null "http://$gcs_addr/storage/v1/b" 2>/dev/null
}

if gcs_ping; then
	echo "test-env: GCS emulator at http://$gcs_addr is running"
elif ! command -v fake-gcs-server >/dev/null 2>&1; then
	echo "test-env: no GCS emulator at http://$gcs_addr and no fake-gcs-server to start" \
		"(run hack/install-deps.sh --test); the upload tests will skip" >&2
else
	echo "test-env: starting fake-gcs-server on http://$gcs_addr (log: $gcs_log)"
	nohup fake-gcs-server -scheme http -host "${gcs_addr%:*}" -port "${gcs_addr##*:}" \
		-backend memory -log-level warn >"$gcs_log" 2>&1 &
	for _ in $(seq 1 50); do
		gcs_ping && break
		sleep 0.2
	done
	if gcs_ping; then
		echo "test-env: GCS emulator started (pid $!)"
	else
		echo "test-env: fake-gcs-server did not come up; see $gcs_log" >&2
		tail -n 20 "$gcs_log" >&2
		exit 1
	fi
fi

docker_sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
docker_sock=${docker_sock#unix://}

docker_ping() {
	curl -fsS --max-time 5 --unix-socket "$docker_sock" http://docker/_ping >/dev/null 2>&1
}

if docker_ping; then
	echo "test-env: Docker Engine at $docker_sock is running"
else
	command -v dockerd >/dev/null 2>&1 || {
		echo "test-env: no Docker Engine at $docker_sock and no dockerd to start" >&2
		exit 1
	}
	echo "test-env: starting dockerd"
	nohup dockerd --host "unix://$docker_sock" >/var/log/imgforge-dockerd.log 2>&1 &
	for _ in $(seq 1 60); do
		docker_ping && break
		sleep 1
	done
	docker_ping || {
		echo "test-env: dockerd did not come up; see /var/log/imgforge-dockerd.log" >&2
		tail -n 20 /var/log/imgforge-dockerd.log >&2
		exit 1
	}
	echo "test-env: Docker Engine started"
fi

# arm64 binaries through qemu-user-static (no systemd-binfmt here to register it). The F flag
# (from Debian's entry) opens the interpreter now, so it works inside containers too.
binfmt=/proc/sys/fs/binfmt_misc
if [ -e "$binfmt/qemu-aarch64" ]; then
	echo "test-env: binfmt_misc runs arm64 binaries ($(head -n 1 "$binfmt/qemu-aarch64"))"
elif [ ! -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
	echo "test-env: no /usr/lib/binfmt.d/qemu-aarch64.conf (qemu-user-static); the arm64 tests will skip" >&2
else
	{ [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"; } &&
		cat /usr/lib/binfmt.d/qemu-aarch64.conf >"$binfmt/register" &&
		echo "test-env: registered qemu-aarch64 with binfmt_misc" ||
		echo "test-env: could not register qemu-aarch64 with binfmt_misc; the arm64 tests will skip" >&2
fi

# libvirt for the VM builder's boot check (no systemd here to start it).
bash "$(dirname "$0")/libvirt-env.sh"
