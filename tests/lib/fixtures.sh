# shellcheck shell=bash
# Test fixtures: a loopback mirror of imgforge's upstream sources, made from this machine's
# Debian packages, so builds can run without the internet.
#
#   source tests/lib/fixtures.sh
#   fixtures_check          # exit 1 naming what this machine lacks (tests skip on it)
#   fixtures_build DIR      # DIR/www laid out like the upstream download sites; idempotent
#   fixtures_serve DIR      # HTTP server + registry on 127.0.0.1, DIR/vars.json,
#                           # exports FIXTURE_HTTP_PORT, FIXTURE_REGISTRY_PORT and
#                           # FIXTURE_AUTH_REGISTRY_PORT (the registry behind bearer tokens)
#   fixtures_attach DIR     # use the running servers another script started from DIR (same
#                           # exports as serve); status 1 when they are not all answering
#   fixtures_stop DIR       # stop what serve started; safe to call twice (use it in a trap)
#
# DIR/www holds:
#   containerd/vCV/containerd-CV-linux-amd64.tar.gz (+ .sha256sum)     Debian's containerd
#   runc/vRV/runc.amd64, runc/vRV/runc.sha256sum                          Debian's runc
#   cni/vNV/cni-plugins-linux-amd64-vNV.tgz (+ .sha256)                   /usr/lib/cni
#   crictl/v1.31.1/crictl-v1.31.1-linux-amd64.tar.gz (+ .sha256)          a stand-in script
#   release/v1.31.2/bin/linux/amd64/{kubeadm,kubelet,kubectl} (+ .sha256) stand-in scripts
#   release/v1.31.2/bin/linux/amd64/kube-*.tar (+ .sha256)                docker-archive images
# and the registry serves pause:3.10 (an OCI index, amd64 + arm64), etcd:3.5.15-0 (a Docker
# v2 schema 2 manifest), coredns/coredns:v1.11.3 and the kindest images (OCI manifests).

_FX_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_FX_TOP=$(cd "$_FX_LIB/../.." && pwd)

FIXTURE_KUBERNETES_VERSION=v1.31.2
# A second version, served beside the first, for what changes kubernetes_semver
# (bench/step-cache.sh): its own stand-ins and image tars.
FIXTURE_KUBERNETES_VERSION_NEXT=v1.31.3
FIXTURE_CRICTL_VERSION=v1.31.1
FIXTURE_KUBE_IMAGES=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
# In the fixture registry at these paths; vars.json maps registry.k8s.io and docker.io to it
# (registry_mirrors), so builds store them under their canonical names (fixture_canonical).
# pause, etcd and CoreDNS are what the stand-in kubeadm asks for: builds take them from it.
FIXTURE_REGISTRY_IMAGES=(
	pause:3.10
	etcd:3.5.15-0
	coredns/coredns:v1.11.3
	kindest/kindnetd:v20241108-5c6d2daf
	kindest/local-path-provisioner:v20241108-5c6d2daf
	kindest/local-path-helper:v20241108-5c6d2daf
)

# A fixture registry path's canonical name: kindest/* on docker.io, the rest registry.k8s.io.
fixture_canonical() {
	case $1 in
	kindest/*) echo "docker.io/$1" ;;
	*) echo "registry.k8s.io/$1" ;;
	esac
}

# The upstream part of a Debian package's version: 1.6.20~ds1-1+deb12u3 -> 1.6.20.
_fx_deb_version() {
	dpkg-query -W -f='${Version}' "$1" 2>/dev/null | sed -e 's/^[0-9]*://' -e 's/[~+-].*//'
}

_fx_versions() {
	FIXTURE_CONTAINERD_VERSION=$(_fx_deb_version containerd)
	FIXTURE_RUNC_VERSION=$(_fx_deb_version runc)
	FIXTURE_CNI_VERSION=$(_fx_deb_version containernetworking-plugins)
}

_fx_inputs() {
	printf '%s\n' /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/bin/ctr \
		/usr/sbin/runc /usr/lib/cni/*
}

# Print what the fixtures need but this machine lacks; status 1 when anything is missing.
fixtures_check() {
	local missing=() t f
	for t in python3 skopeo docker-registry curl tar gzip sha256sum dpkg-query; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	for f in $(_fx_inputs); do
		[ -x "$f" ] || missing+=("$f")
	done
	[ -f "$_FX_LIB/httpd.py" ] || missing+=("$_FX_LIB/httpd.py")
	if [ ${#missing[@]} -gt 0 ]; then
		echo "fixtures: missing ${missing[*]} (hack/install-deps.sh --test installs them)" >&2
		return 1
	fi
}

# What decides the mirror's content; a change rebuilds it.
_fx_key() {
	local f
	{
		cat "$_FX_LIB/fixtures.sh" "$_FX_LIB/mkimage.py" "$_FX_TOP/hack/mkimage.py"
		for f in $(_fx_inputs); do
			stat -L -c '%n %s %Y' "$f"
		done
		skopeo --version
	} | sha256sum | cut -d' ' -f1
}

# The interpreter python3 runs, found once: a version-manager shim costs ~0.5 s a call.
_fx_python() {
	if [ -z "${_FX_PYTHON:-}" ]; then
		_FX_PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)
		[ -x "$_FX_PYTHON" ] || _FX_PYTHON=python3
	fi
}

_fx_skopeo() {
	skopeo --policy "$_FX_DIR/policy.json" "$@"
}

# A reproducible tar.gz of MEMBERS under SRC: tar.gz OUT SRC MEMBERS...
_fx_tgz() {
	local out=$1 src=$2
	shift 2
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
		-C "$src" -cf - "$@" | gzip -n -1 >"$out"
}

_fx_sha256() {
	sha256sum "$1" | cut -d' ' -f1
}

# A stand-in program: NAME, VERSION, then its body (sh) on stdin.
_fx_script() {
	local out=$1 name=$2 version=$3
	{
		printf '#!/bin/sh\n'
		printf '# %s: an imgforge test fixture, a stand-in for the real program.\n' "$name"
		printf 'version=%s\n' "$version"
		cat
	} >"$out"
	chmod 0755 "$out"
}

_fx_kubeadm() {
	_fx_script "$1" kubeadm "${2:-$FIXTURE_KUBERNETES_VERSION}" <<'EOF'
images() {
	repo=registry.k8s.io
	kv=$version
	while [ $# -gt 0 ]; do
		case $1 in
		--image-repository=*) repo=${1#*=} ;;
		--image-repository) shift; repo=$1 ;;
		--kubernetes-version=*) kv=${1#*=} ;;
		--kubernetes-version) shift; kv=$1 ;;
		esac
		shift
	done
	for i in kube-apiserver:$kv kube-controller-manager:$kv kube-scheduler:$kv \
		kube-proxy:$kv coredns/coredns:v1.11.3 pause:3.10 etcd:3.5.15-0; do
		echo "$repo/$i"
	done
}
case "$*" in
"version -o short" | "version -o=short" | "version --output short" | "version --output=short")
	echo "$version" ;;
version)
	echo "kubeadm version: &version.Info{Major:\"1\", Minor:\"31\", GitVersion:\"$version\", GitTreeState:\"clean\", Platform:\"linux/amd64\"} (imgforge test fixture)" ;;
"config images list"*)
	shift 3
	images "$@" ;;
*)
	echo "kubeadm (imgforge test fixture): unsupported arguments: $*" >&2
	exit 1 ;;
esac
EOF
}

_fx_kubelet() {
	_fx_script "$1" kubelet "${2:-$FIXTURE_KUBERNETES_VERSION}" <<'EOF'
case "$*" in
--version | --version=true)
	echo "Kubernetes $version" ;;
*)
	echo "E0101 00:00:00.000000       1 run.go:72] \"command failed\" err=\"failed to load kubelet config file, path: /var/lib/kubelet/config.yaml, error: open /var/lib/kubelet/config.yaml: no such file or directory\" (imgforge test fixture)" >&2
	exit 1 ;;
esac
EOF
}

_fx_kubectl() {
	_fx_script "$1" kubectl "${2:-$FIXTURE_KUBERNETES_VERSION}" <<'EOF'
case "$*" in
"version --client" | "version --client=true")
	echo "Client Version: $version"
	echo "Kustomize Version: v5.4.2" ;;
*)
	echo "kubectl (imgforge test fixture): unsupported arguments: $*" >&2
	exit 1 ;;
esac
EOF
}

_fx_crictl() {
	_fx_script "$1" crictl "$FIXTURE_CRICTL_VERSION" <<'EOF'
case "$*" in
--version | -v | version)
	echo "crictl version $version" ;;
*)
	echo "crictl (imgforge test fixture): unsupported arguments: $*" >&2
	exit 1 ;;
esac
EOF
}

# A registry image's layout directory: coredns/coredns:v1.11.3 -> DIR/oci/registry/coredns_coredns
_fx_layout() {
	local name=${2%%:*}
	printf '%s/oci/registry/%s\n' "$1" "${name//\//_}"
}

# Runs in its own `bash -e` (see fixtures_build), so any failure stops it.
_fx_build_all() {
	local dir=$1 www=$1/www.new stage=$1/stage
	local cv rv nv d f img name tag
	_FX_DIR=$dir
	_fx_versions
	_fx_python
	cv=$FIXTURE_CONTAINERD_VERSION rv=$FIXTURE_RUNC_VERSION nv=$FIXTURE_CNI_VERSION
	rm -rf "$www" "$stage" "$dir/oci"
	mkdir -p "$www" "$stage" "$dir/oci"
	printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$dir/policy.json"

	# containerd: bin/containerd, bin/containerd-shim-runc-v2, bin/ctr
	d=$www/containerd/v$cv
	mkdir -p "$d" "$stage/containerd/bin"
	for f in containerd containerd-shim-runc-v2 ctr; do
		install -m 0755 "/usr/bin/$f" "$stage/containerd/bin/$f"
	done
	f=containerd-$cv-linux-amd64.tar.gz
	_fx_tgz "$d/$f" "$stage/containerd" bin
	(cd "$d" && sha256sum "$f" >"$f.sha256sum")

	# runc: the binary itself; the list names every arch, so lookups must match by name
	d=$www/runc/v$rv
	mkdir -p "$d"
	install -m 0755 /usr/sbin/runc "$d/runc.amd64"
	{
		printf '%s  runc.arm64\n' "$(printf 'not runc' | sha256sum | cut -d' ' -f1)"
		printf '%s  runc.amd64\n' "$(_fx_sha256 "$d/runc.amd64")"
	} >"$d/runc.sha256sum"

	# CNI plugins: ./bridge, ./host-local, ... as upstream's tarball has them
	d=$www/cni/v$nv
	mkdir -p "$d"
	f=cni-plugins-linux-amd64-v$nv.tgz
	_fx_tgz "$d/$f" /usr/lib/cni .
	(cd "$d" && sha256sum "$f" >"$f.sha256")

	# crictl: a stand-in in a tarball, checksum bare hex
	d=$www/crictl/$FIXTURE_CRICTL_VERSION
	mkdir -p "$d" "$stage/crictl"
	_fx_crictl "$stage/crictl/crictl"
	f=crictl-$FIXTURE_CRICTL_VERSION-linux-amd64.tar.gz
	_fx_tgz "$d/$f" "$stage/crictl" crictl
	printf '%s' "$(_fx_sha256 "$d/$f")" >"$d/$f.sha256"

	# Kubernetes: binaries and control-plane image tars, each with a bare-hex .sha256
	for kv in "$FIXTURE_KUBERNETES_VERSION" "$FIXTURE_KUBERNETES_VERSION_NEXT"; do
		d=$www/release/$kv/bin/linux/amd64
		mkdir -p "$d"
		_fx_kubeadm "$d/kubeadm" "$kv"
		_fx_kubelet "$d/kubelet" "$kv"
		_fx_kubectl "$d/kubectl" "$kv"
		for img in "${FIXTURE_KUBE_IMAGES[@]}"; do
			name=registry.k8s.io/$img-amd64:$kv
			"$_FX_PYTHON" "$_FX_LIB/mkimage.py" --out "$dir/oci/$img-$kv" --tag "$kv" \
				--name "$name"
			_fx_skopeo copy -q "oci:$dir/oci/$img-$kv:$kv" "docker-archive:$d/$img.tar:$name"
		done
		for f in kubeadm kubelet kubectl "${FIXTURE_KUBE_IMAGES[@]/%/.tar}"; do
			printf '%s' "$(_fx_sha256 "$d/$f")" >"$d/$f.sha256"
		done
	done

	# Registry images, pushed by fixtures_serve
	for img in "${FIXTURE_REGISTRY_IMAGES[@]}"; do
		tag=${img##*:}
		if [ "${img%%:*}" = pause ]; then
			"$_FX_PYTHON" "$_FX_LIB/mkimage.py" --out "$(_fx_layout "$dir" "$img")" --tag "$tag" \
				--name "registry.k8s.io/$img" --arch amd64 --arch arm64
		else
			"$_FX_PYTHON" "$_FX_LIB/mkimage.py" --out "$(_fx_layout "$dir" "$img")" --tag "$tag" \
				--name "registry.k8s.io/$img"
		fi
	done
	rm -rf "$stage"
}

fixtures_build() {
	local dir=${1:?usage: fixtures_build DIR} key
	fixtures_check || return 1
	mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
	_fx_versions
	key=$(_fx_key) || return 1
	if [ -d "$dir/www" ] && [ "$(cat "$dir/build.key" 2>/dev/null)" = "$key" ]; then
		return 0
	fi
	rm -rf "$dir/www" "$dir/build.key" "$dir/registry"
	# A child bash with -e: the caller may call us in an `if` or `||`, where -e is off.
	if ! bash -euo pipefail -c 'source "$1"; _fx_build_all "$2"' fixtures_build \
		"$_FX_LIB/fixtures.sh" "$dir"; then
		echo "fixtures_build: building the mirror in '$dir' failed" >&2
		return 1
	fi
	mv "$dir/www.new" "$dir/www" && printf '%s\n' "$key" >"$dir/build.key"
}

# The port a server printed on the first line of FILE (the last number on that line).
_fx_port_from() {
	[ -s "$1" ] || return 0
	head -n 1 "$1" | grep -oE '[0-9]+' | tail -n 1
}

_fx_alive() {
	local pid=$1 state
	state=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ]
}

# Start CMD... in the background, output to LOG, its PID recorded in DIR/pids.
_fx_spawn() {
	local dir=$1 out=$2 log=$3
	shift 3
	# Emptied here, not by the child's redirections: those happen after `&` returns, and a
	# caller polling for the port would read the previous server's.
	: >"$out" && : >"$log" || return 1
	"$@" </dev/null >>"$out" 2>>"$log" &
	echo "$!" >>"$dir/pids"
}

_fx_registry_config() {
	cat <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $1/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
  secret: imgforge-fixture
EOF
}

_fx_push_images() {
	local dir=$1 rp=$2 img args
	for img in "${FIXTURE_REGISTRY_IMAGES[@]}"; do
		case ${img%%:*} in
		pause) args=(--all) ;;                   # an OCI index, amd64 + arm64
		etcd) args=(--format v2s2) ;;             # a Docker v2 schema 2 manifest
		*) args=() ;;                             # OCI manifests
		esac
		_fx_skopeo copy -q "${args[@]}" --dest-tls-verify=false --dest-no-creds \
			"oci:$(_fx_layout "$dir" "$img"):${img##*:}" "docker://127.0.0.1:$rp/$img" ||
			return 1
	done
}

_fx_write_vars() {
	local dir=$1 hp=$2 rp=$3 u
	u=http://127.0.0.1:$hp
	local cv=$FIXTURE_CONTAINERD_VERSION rv=$FIXTURE_RUNC_VERSION nv=$FIXTURE_CNI_VERSION
	local crv=$FIXTURE_CRICTL_VERSION
	local ctgz=$u/containerd/v$cv/containerd-$cv-linux-amd64.tar.gz
	local cni=$u/cni/v$nv/cni-plugins-linux-amd64-v$nv.tgz
	local crictl=$u/crictl/$crv/crictl-$crv-linux-amd64.tar.gz
	cat >"$dir/vars.json.tmp" <<EOF
{
  "variables": {
    "kubernetes_http_source": "$u/release",
    "kubernetes_semver": "$FIXTURE_KUBERNETES_VERSION",
    "containerd_version": "$cv",
    "containerd_url": "$ctgz",
    "containerd_checksum": "file:$ctgz.sha256sum",
    "runc_version": "$rv",
    "runc_url": "$u/runc/v$rv/runc.amd64",
    "runc_checksum": "file:$u/runc/v$rv/runc.sha256sum",
    "kubernetes_cni_semver": "v$nv",
    "kubernetes_cni_url": "$cni",
    "kubernetes_cni_checksum": "$cni.sha256",
    "crictl_version": "${crv#v}",
    "crictl_url": "$crictl",
    "crictl_checksum": "$crictl.sha256",
    "kindnetd_image": "docker.io/kindest/kindnetd:v20241108-5c6d2daf",
    "local_path_provisioner_image": "docker.io/kindest/local-path-provisioner:v20241108-5c6d2daf",
    "local_path_helper_image": "docker.io/kindest/local-path-helper:v20241108-5c6d2daf",
    "registry_mirrors": "{\"registry.k8s.io\": \"127.0.0.1:$rp\", \"docker.io\": \"127.0.0.1:$rp\"}"
  }
}
EOF
	mv "$dir/vars.json.tmp" "$dir/vars.json"
}

fixtures_serve() {
	local dir=${1:?usage: fixtures_serve DIR} hp='' rp='' ap='' i key
	dir=$(cd "$dir" && pwd) || return 1
	if [ ! -d "$dir/www" ]; then
		echo "fixtures_serve: no mirror in '$dir'; run fixtures_build first" >&2
		return 1
	fi
	fixtures_stop "$dir"
	_FX_DIR=$dir
	_fx_versions
	_fx_python
	mkdir -p "$dir/registry" || return 1
	: >"$dir/pids"
	_fx_spawn "$dir" "$dir/httpd.port" "$dir/httpd.err" \
		"$_FX_PYTHON" "$_FX_LIB/httpd.py" --root "$dir/www" --log "$dir/httpd.log"
	_fx_registry_config "$dir" >"$dir/registry.yml"
	_fx_spawn "$dir" "$dir/registry.log" "$dir/registry.err" \
		docker-registry serve "$dir/registry.yml"
	for ((i = 0; i < 200; i++)); do
		[ -n "$hp" ] || hp=$(_fx_port_from "$dir/httpd.port")
		[ -n "$rp" ] || rp=$(grep -ohE 'listening on 127\.0\.0\.1:[0-9]+' \
			"$dir/registry.err" "$dir/registry.log" 2>/dev/null | head -n 1 | sed 's/.*://')
		if [ -n "$hp" ] && [ -n "$rp" ] &&
			curl -s -o /dev/null "http://127.0.0.1:$hp/" &&
			curl -fs -o /dev/null "http://127.0.0.1:$rp/v2/"; then
			break
		fi
		sleep 0.05
	done
	if [ -z "$hp" ] || [ -z "$rp" ] || [ "$i" -ge 200 ]; then
		echo "fixtures_serve: servers did not come up (http port '${hp}', registry port '${rp}')" >&2
		tail -n 5 "$dir/httpd.err" "$dir/registry.err" >&2 2>/dev/null
		fixtures_stop "$dir"
		return 1
	fi

	# Push once per mirror build: the registry's storage outlives its port.
	key=$(cat "$dir/build.key" 2>/dev/null)
	if [ "$(cat "$dir/registry/pushed.key" 2>/dev/null)" != "$key" ]; then
		if ! _fx_push_images "$dir" "$rp"; then
			echo "fixtures_serve: pushing the images to 127.0.0.1:$rp failed" >&2
			fixtures_stop "$dir"
			return 1
		fi
		printf '%s\n' "$key" >"$dir/registry/pushed.key"
	fi

	# The same registry behind bearer-token auth, with blobs redirected to another host name.
	# Its log starts empty, so a test can read what one serve saw.
	: >"$dir/authproxy.log"
	_fx_spawn "$dir" "$dir/authproxy.port" "$dir/authproxy.err" \
		"$_FX_PYTHON" "$_FX_TOP/tests/fixtures/registry-auth-proxy.py" \
		--upstream "127.0.0.1:$rp" --log "$dir/authproxy.log"
	for ((i = 0; i < 200; i++)); do
		ap=$(_fx_port_from "$dir/authproxy.port")
		[ -n "$ap" ] && break
		sleep 0.05
	done
	if [ -z "$ap" ]; then
		echo "fixtures_serve: the auth proxy did not come up" >&2
		tail -n 5 "$dir/authproxy.err" >&2 2>/dev/null
		fixtures_stop "$dir"
		return 1
	fi

	_fx_write_vars "$dir" "$hp" "$rp" || return 1
	export FIXTURE_HTTP_PORT=$hp FIXTURE_REGISTRY_PORT=$rp FIXTURE_AUTH_REGISTRY_PORT=$ap
}

# Use the servers another script started from DIR (tests/lib/harness.sh shares them): succeeds,
# with the same FIXTURE_* ports exported as fixtures_serve, only when all of them answer.
fixtures_attach() {
	local dir=${1:?usage: fixtures_attach DIR} hp rp ap pid
	dir=$(cd "$dir" 2>/dev/null && pwd) && [ -s "$dir/pids" ] && [ -f "$dir/vars.json" ] || return 1
	while read -r pid; do
		_fx_alive "$pid" || return 1
	done <"$dir/pids"
	_FX_DIR=$dir
	_fx_versions
	_fx_python
	hp=$(_fx_port_from "$dir/httpd.port")
	rp=$(grep -ohE 'listening on 127\.0\.0\.1:[0-9]+' "$dir/registry.err" "$dir/registry.log" \
		2>/dev/null | head -n 1 | sed 's/.*://')
	ap=$(_fx_port_from "$dir/authproxy.port")
	[ -n "$hp" ] && [ -n "$rp" ] && [ -n "$ap" ] &&
		curl -s -o /dev/null "http://127.0.0.1:$hp/" &&
		curl -fs -o /dev/null "http://127.0.0.1:$rp/v2/" || return 1
	export FIXTURE_HTTP_PORT=$hp FIXTURE_REGISTRY_PORT=$rp FIXTURE_AUTH_REGISTRY_PORT=$ap
	echo "fixtures_attach: servers of $dir (http $hp, registry $rp, auth proxy $ap)"
}

# A private auth proxy in front of DIR's registry, for a script that reads what it saw: its
# own log (LOG, the proxy's "METHOD PATH STATUS" lines) and its own first-GET 503s. Exports
# FIXTURE_AUTH_REGISTRY_PORT; its pid is appended to PIDFILE for the caller to stop.
fixtures_private_auth_proxy() {
	local dir=${1:?usage: fixtures_private_auth_proxy DIR LOG PIDFILE} log=$2 pidfile=$3 ap i
	_fx_python
	: >"$log" && : >"$log.port" || return 1
	"$_FX_PYTHON" "$_FX_TOP/tests/fixtures/registry-auth-proxy.py" \
		--upstream "127.0.0.1:$FIXTURE_REGISTRY_PORT" --log "$log" </dev/null >"$log.port" 2>"$log.err" &
	echo "$!" >>"$pidfile"
	for ((i = 0; i < 200; i++)); do
		ap=$(_fx_port_from "$log.port")
		[ -n "$ap" ] && break
		sleep 0.05
	done
	[ -n "$ap" ] || { tail -n 5 "$log.err" >&2; return 1; }
	export FIXTURE_AUTH_REGISTRY_PORT=$ap
}

fixtures_stop() {
	local dir=${1:?usage: fixtures_stop DIR} pid i pids=()
	dir=$(cd "$dir" 2>/dev/null && pwd) || return 0
	[ -f "$dir/pids" ] || return 0
	while read -r pid; do
		# Only a process we started: its command line names DIR.
		if [ -n "$pid" ] && _fx_alive "$pid" &&
			tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir"; then
			kill "$pid" 2>/dev/null && pids+=("$pid")
		fi
	done <"$dir/pids"
	for pid in "${pids[@]}"; do
		for ((i = 0; i < 100; i++)); do
			_fx_alive "$pid" || break
			sleep 0.05
		done
		_fx_alive "$pid" && kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -f "$dir/pids"
	return 0
}
