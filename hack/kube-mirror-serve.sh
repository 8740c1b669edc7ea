#!/usr/bin/env bash
# Serve a mirror made by hack/kube-from-source.sh on this machine and write the --var-file
# that points imgforge at it:
#
#   hack/kube-mirror-serve.sh [--port PORT] DIR     start (or reuse) the registry, push, write DIR/vars.json
#   hack/kube-mirror-serve.sh --stop DIR            stop the registry
#
# Binaries are read straight from DIR through file:// URLs (kubernetes_http_source, containerd,
# runc, the CNI plugins, crictl);
# images come from a loopback registry (Debian's docker-registry, storage in DIR/registry, port
# PORT, default 5000; 0 picks a free one) as REGISTRY/NAME under the mirror, e.g.
# 127.0.0.1:5000/registry.k8s.io/etcd:3.5.15-0, and `registry_mirrors` maps each upstream
# registry there, so the images keep their canonical names in the node image. DIR/registry.port
# holds the port, DIR/registry.pid the server's pid.
set -euo pipefail

PORT=5000
STOP=
while [ $# -gt 0 ]; do
	case $1 in
	--port) PORT=$2; shift 2 ;;
	--port=*) PORT=${1#*=}; shift ;;
	--stop) STOP=1; shift ;;
	-*) echo "kube-mirror-serve: unknown option '$1'" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--port PORT] DIR | --stop DIR" >&2; exit 2; }
DIR=$(cd "$1" && pwd)

die() {
	echo "kube-mirror-serve: $*" >&2
	exit 1
}

alive() {
	local pid
	pid=$(cat "$DIR/registry.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR/registry.yml"
}

if [ -n "$STOP" ]; then
	if alive; then
		kill "$(cat "$DIR/registry.pid")"
		for _ in $(seq 1 200); do alive || break; sleep 0.1; done
		! alive || kill -KILL "$(cat "$DIR/registry.pid")" 2>/dev/null || true
	fi
	rm -f "$DIR/registry.pid" "$DIR/registry.port"
	exit 0
fi

[ -f "$DIR/versions.env" ] && [ -f "$DIR/images.txt" ] ||
	die "'$DIR' is not a mirror made by hack/kube-from-source.sh (no versions.env/images.txt)"
# shellcheck disable=SC1091
. "$DIR/versions.env"
command -v docker-registry >/dev/null || die "docker-registry not found (hack/install-deps.sh --test)"
command -v skopeo >/dev/null || die "skopeo not found (hack/install-deps.sh --test)"

ping() { curl -fs -o /dev/null "http://127.0.0.1:$1/v2/"; }

if alive && ping "$(cat "$DIR/registry.port")"; then
	PORT=$(cat "$DIR/registry.port")
else
	mkdir -p "$DIR/registry"
	cat >"$DIR/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $DIR/registry
http:
  addr: 127.0.0.1:$PORT
  secret: imgforge-kube-mirror
EOF
	: >"$DIR/registry.log"
	nohup docker-registry serve "$DIR/registry.yml" </dev/null >"$DIR/registry.log" 2>&1 &
	echo $! >"$DIR/registry.pid"
	got=
	# Up to 30 s on a loaded machine. Until the child has exec'ed, its command line is still
	# this script's: only its death ends the wait early, not alive()'s command-line check.
	for _ in $(seq 1 600); do
		got=$(grep -ohE 'listening on 127\.0\.0\.1:[0-9]+' "$DIR/registry.log" | head -n 1 |
			sed 's/.*://' || true)
		[ -n "$got" ] && ping "$got" && break
		kill -0 "$(cat "$DIR/registry.pid")" 2>/dev/null || break
		sleep 0.05
	done
	[ -n "$got" ] && ping "$got" || {
		tail -n 5 "$DIR/registry.log" >&2
		die "the registry did not come up on 127.0.0.1:$PORT"
	}
	PORT=$got
	echo "$PORT" >"$DIR/registry.port"
fi
REG=127.0.0.1:$PORT

# Push what images.txt lists, again whenever the list or an image changes (the storage
# outlives the port).
key=$(cat "$DIR/images.txt" "$DIR"/oci/*/index.json | sha256sum | cut -d' ' -f1)
if [ "$(cat "$DIR/registry/pushed.key" 2>/dev/null)" != "$key" ]; then
	printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$DIR/.policy.json"
	while read -r src name; do
		[ -n "$src" ] || continue
		skopeo --policy "$DIR/.policy.json" copy -q --dest-tls-verify=false --dest-no-creds \
			"oci:$DIR/$src" "docker://$REG/$name" ||
			die "pushing '$src' as '$REG/$name' failed"
	done <"$DIR/images.txt"
	echo "$key" >"$DIR/registry/pushed.key"
fi

f=file://$DIR
crictl=$f/crictl/$CRICTL_VERSION/crictl-$CRICTL_VERSION-linux-$ARCH.tar.gz
containerd=$f/containerd/$CONTAINERD_VERSION/containerd-${CONTAINERD_VERSION#v}-linux-$ARCH.tar.gz
cni=$f/cni/$CNI_VERSION/cni-plugins-linux-$ARCH-$CNI_VERSION.tgz
# The versions are the mirror's (the shipped defaults unless it was built for others); kind's
# default CNI is flannel, which the mirror has (kindnetd cannot be built here).
cat >"$DIR/vars.json.tmp" <<EOF
{
  "variables": {
    "kubernetes_semver": "$KUBERNETES_VERSION",
    "kubernetes_series": "$(echo "$KUBERNETES_VERSION" | cut -d. -f1-2)",
    "kubernetes_http_source": "$f/release",
    "containerd_version": "${CONTAINERD_VERSION#v}",
    "containerd_url": "$containerd",
    "containerd_checksum": "file:$containerd.sha256sum",
    "runc_version": "${RUNC_VERSION#v}",
    "runc_url": "$f/runc/$RUNC_VERSION/runc.$ARCH",
    "runc_checksum": "file:$f/runc/$RUNC_VERSION/runc.sha256sum",
    "kubernetes_cni_semver": "$CNI_VERSION",
    "kubernetes_cni_url": "$cni",
    "kubernetes_cni_checksum": "$cni.sha256",
    "crictl_version": "${CRICTL_VERSION#v}",
    "crictl_url": "$crictl",
    "crictl_checksum": "$crictl.sha256",
    "kind_cni": "flannel",
    "kind_cni_images": "docker.io/flannel/flannel:$FLANNEL_VERSION docker.io/flannel/flannel-cni-plugin:$FLANNEL_CNI_VERSION",
    "flannel_image": "docker.io/flannel/flannel:$FLANNEL_VERSION",
    "flannel_cni_plugin_image": "docker.io/flannel/flannel-cni-plugin:$FLANNEL_CNI_VERSION",
    "registry_mirrors": "{\"registry.k8s.io\": \"$REG/registry.k8s.io\", \"docker.io\": \"$REG/docker.io\"}"
  }
}
EOF
mv "$DIR/vars.json.tmp" "$DIR/vars.json"
echo "kube-mirror-serve: registry at $REG (storage $DIR/registry); var file $DIR/vars.json"
