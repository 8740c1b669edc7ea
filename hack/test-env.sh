#!/usr/bin/env bash
# Start what the tests need when it is not already running; safe to run twice.
#   - a Docker Engine: the running one (DOCKER_HOST or /var/run/docker.sock), else Debian's dockerd
set -euo pipefail

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
