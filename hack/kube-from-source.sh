#!/usr/bin/env bash
# Build real Kubernetes from the Go module proxy into a local mirror in the upstream release
# layout, for building node images with no internet (and for imgforge's own end-to-end tests).
#
#   hack/kube-from-source.sh [--arch ARCH] [--only PART,...] [VERSION [DIR]]
#
# ARCH defaults to the machine's own. Another one (arm64 on amd64) is a cross build of the
# parts a node image for it needs: kubernetes, etcd, coredns, pause (gcc-aarch64-linux-gnu),
# crictl and storage (busybox from Debian's busybox-static:ARCH); `images` and `flannel` carry
# this machine's iptables and `kind` runs here, so those are the machine's arch only. The
# build checks kubeadm's version by running it, so a foreign ARCH needs binfmt_misc with
# qemu-user-static (hack/test-env.sh registers it).
# VERSION defaults to the shipped kubernetes_semver (config/kubernetes.json); DIR to
# $IMGF_KUBE_DIR, else /var/cache/imgforge/kube-from-source/VERSION (VERSION-linux-ARCH for a
# foreign ARCH). Every part is built once
# and cached in DIR by a key of what decides it; a second run only prints what is there.
# Parts (the default: all):
#
#   kubernetes  kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler
#               kube-proxy, stamped with VERSION           -> release/VERSION/bin/linux/ARCH/NAME
#   images      kube-apiserver.tar ... kube-proxy.tar, named as upstream's release names them
#               (registry.k8s.io/NAME-ARCH:VERSION)          -> release/VERSION/bin/linux/ARCH/
#   etcd        etcd + etcdctl, image etcd:TAG              -> oci/etcd
#   coredns     coredns, image coredns/coredns:TAG          -> oci/coredns
#   pause       pause (C source from the kubernetes module), image pause:TAG -> oci/pause
#   crictl      crictl (cri-tools)                          -> crictl/vV/crictl-vV-linux-ARCH.tar.gz
#   storage     local-path-provisioner and its helper image (busybox, Debian's busybox-static)
#   flannel     flanneld + flannel's CNI plugin images (kind's kindnetd is not obtainable here)
#   kind        the kind CLI                                -> bin/kind
#
# Every file gets NAME.sha256 (bare hex) beside it, as upstream publishes them. Images are OCI
# layouts under DIR/oci (one per image, tagged); DIR/images.txt lists "LAYOUT REPOSITORY:TAG"
# so a loopback registry can be filled with `skopeo copy` (hack/kube-mirror-serve.sh does that
# and writes the --var-file that points imgforge at DIR and the registry).
#
# Needs: go, gcc (static glibc), python3, skopeo, busybox-static, iptables, conntrack (the
# kube-proxy and flannel images carry this machine's iptables tools); hack/install-deps.sh --test
# installs them.
set -euo pipefail

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HACK/.." && pwd)

ARCH=
ONLY=
while [ $# -gt 0 ]; do
	case $1 in
	--arch) ARCH=$2; shift 2 ;;
	--arch=*) ARCH=${1#*=}; shift ;;
	--only) ONLY=$2; shift 2 ;;
	--only=*) ONLY=${1#*=}; shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "kube-from-source: unknown option '$1'" >&2; exit 2 ;;
	*) break ;;
	esac
done
VERSION=${1:-$(sed -n 's/.*"kubernetes_semver": *"\([^"]*\)".*/\1/p' "$TOP/config/kubernetes.json")}
DIR=${2:-}

# The versions of everything else. What the shipped config names is read from config/ (so the
# mirror holds exactly what a build with the shipped defaults installs); what kubeadm asks for
# (etcd, CoreDNS, pause) is read from the kubeadm just built (`kubeadm config images list`).
# Each one is a parameter: KFS_NAME=VERSION in the environment overrides it, e.g.
# KFS_CONTAINERD=v2.4.1, KFS_ETCD_TAG=3.6.8-0. An unserved version fails at once, naming the module.
cfgvar() { # NAME FILE: a string variable of the shipped config
	sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$TOP/config/$2" | head -n 1
}
vprefix() { case $1 in v*) echo "$1" ;; *) echo "v$1" ;; esac; }
CONTAINERD_VERSION=$(vprefix "${KFS_CONTAINERD:-$(cfgvar containerd_version containerd.json)}")
RUNC_VERSION=$(vprefix "${KFS_RUNC:-$(cfgvar runc_version containerd.json)}")
CNI_VERSION=$(vprefix "${KFS_CNI:-$(cfgvar kubernetes_cni_semver cni.json)}")
CRICTL_VERSION=$(vprefix "${KFS_CRICTL:-$(cfgvar crictl_version containerd.json)}")
KIND_VERSION=${KFS_KIND:-v0.33.0}
# Set from kubeadm after the kubernetes part, unless given.
ETCD_TAG=${KFS_ETCD_TAG:-}
COREDNS_VERSION=${KFS_COREDNS:-}
PAUSE_TAG=${KFS_PAUSE_TAG:-}
# kind's storage images, by the names the shipped config preloads (kind v0.33's tags);
# rancher's local-path-provisioner v0.0.34 (kind v0.33's) is not served, v0.0.33 is.
LOCAL_PATH_VERSION=${KFS_LOCAL_PATH:-v0.0.33}
LOCAL_PATH_TAG=$(cfgvar local_path_provisioner_image common.json)
LOCAL_PATH_TAG=${LOCAL_PATH_TAG##*:}
LOCAL_PATH_HELPER_TAG=$(cfgvar local_path_helper_image common.json)
LOCAL_PATH_HELPER_TAG=${LOCAL_PATH_HELPER_TAG##*:}
FLANNEL_VERSION=$(cfgvar flannel_image common.json)
FLANNEL_VERSION=${KFS_FLANNEL:-${FLANNEL_VERSION##*:}}
# flannel's CNI plugin: github.com/flannel-io/cni-plugin is not served by the module proxy; the
# same plugin shipped in containernetworking/plugins up to v0.9.1 (plugins/meta/flannel).
FLANNEL_CNI_VERSION=${KFS_FLANNEL_CNI:-v0.9.1}

die() {
	echo "kube-from-source: $*" >&2
	exit 1
}

case $VERSION in
v[0-9]*.[0-9]*.[0-9]*) ;;
*) die "version '$VERSION' is not a Kubernetes release version (vMAJOR.MINOR.PATCH)" ;;
esac
GO=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$GO" ] || die "go not found (PATH or /usr/local/go/bin)"
HOST_ARCH=$("$GO" env GOHOSTARCH)
ARCH=${ARCH:-$HOST_ARCH}
# The C compiler and the static busybox for ARCH (Debian's cross gcc; busybox-static:ARCH).
CROSS_CC=gcc
CROSS_STRIP="strip"
BUSYBOX=/bin/busybox
if [ "$ARCH" = "$HOST_ARCH" ]; then
	DIR=${DIR:-${IMGF_KUBE_DIR:-/var/cache/imgforge/kube-from-source/$VERSION}}
else
	case $ARCH in
	arm64) triplet=aarch64-linux-gnu qemu=aarch64 ;;
	*) die "arch '$ARCH': cross builds are arm64 only (the machine's arch is $HOST_ARCH)" ;;
	esac
	DIR=${DIR:-/var/cache/imgforge/kube-from-source/$VERSION-linux-$ARCH}
	ONLY=${ONLY:-kubernetes,etcd,coredns,pause,crictl,storage}
	for p in ${ONLY//,/ }; do
		case $p in
		images | flannel | kind)
			die "part '$p' is built for the machine's arch ($HOST_ARCH) only, not '$ARCH'" ;;
		esac
	done
	grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$qemu" 2>/dev/null ||
		die "arch '$ARCH': this machine cannot run $ARCH binaries (no binfmt_misc entry qemu-$qemu; hack/test-env.sh registers Debian's qemu-user-static)"
	CROSS_CC=$triplet-gcc
	CROSS_STRIP=$triplet-strip
	BUSYBOX=
fi
for t in python3 skopeo sha256sum "$CROSS_CC"; do
	command -v "$t" >/dev/null 2>&1 || die "'$t' not found (hack/install-deps.sh --test installs it)"
done
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
export CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH

mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
# One build of a DIR at a time: a second run waits, then finds the parts cached.
exec 9>"$DIR/.lock"
flock 9
SRC=$DIR/.src
BUSYBOX=${BUSYBOX:-$SRC/busybox-$ARCH/bin/busybox}
BIN=$DIR/release/$VERSION/bin/linux/$ARCH
mkdir -p "$SRC" "$BIN" "$DIR/oci" "$DIR/bin" "$DIR/.stamps"
MINOR=${VERSION#v}
MAJOR=${MINOR%%.*}
MINOR=${MINOR#*.}
MINOR=${MINOR%%.*}
STAGING_VERSION=v0.$MINOR.${VERSION#v*.*.}

want() {
	[ -z "$ONLY" ] && return 0
	case ",$ONLY," in *",$1,"*) return 0 ;; esac
	return 1
}

# A part is cached under a key of what decides it: its build function and the helpers it
# calls, the pinned versions, the arch and the Go toolchain (so editing one part of this
# script rebuilds that part only). The key is written only after the part finished, so a
# killed build redoes it.
part_key() {
	{
		declare -f "$2" mod_fetch wrapper_module sha256_beside
		case $1 in
		kubernetes) ;;
		images) declare -f mkimage base_files iptables_tree busybox_tree ;;
		etcd) declare -f mkimage base_files && echo "$ETCD_TAG" ;;
		coredns) declare -f mkimage base_files && echo "$COREDNS_VERSION" ;;
		pause) declare -f mkimage && echo "$PAUSE_TAG" ;;
		crictl) echo "$CRICTL_VERSION" ;;
		storage)
			declare -f mkimage base_files busybox_tree
			echo "$LOCAL_PATH_VERSION $LOCAL_PATH_TAG $LOCAL_PATH_HELPER_TAG"
			;;
		containerd) declare -f tgz && echo "$CONTAINERD_VERSION" ;;
		runc) echo "$RUNC_VERSION" ;;
		cni) declare -f tgz && echo "$CNI_VERSION" ;;
		flannel)
			declare -f mkimage base_files iptables_tree busybox_tree
			echo "$FLANNEL_VERSION $FLANNEL_CNI_VERSION"
			;;
		kind) echo "$KIND_VERSION" ;;
		esac
		case $1 in
		images | flannel) cat "$HACK/mkimage.py" "$TOP/provisioners/images/iptables-wrapper" ;;
		kubernetes | crictl | kind | containerd | runc | cni) ;;
		*) cat "$HACK/mkimage.py" ;;
		esac
		echo "$1 $VERSION $ARCH"
		"$GO" version
	} | sha256sum | cut -d' ' -f1
}
part_done() { [ "$(cat "$DIR/.stamps/$1" 2>/dev/null)" = "$(part_key "$1" "$2")" ]; }
part_mark() { part_key "$1" "$2" >"$DIR/.stamps/$1"; }

declare -A took
run_part() {
	local name=$1 fn=$2 t0
	want "$name" || return 0
	if part_done "$name" "$fn"; then
		printf 'kube-from-source: %-10s cached\n' "$name"
		took[$name]=cached
		return 0
	fi
	t0=$(date +%s)
	printf 'kube-from-source: %-10s building\n' "$name"
	"$fn"
	part_mark "$name" "$fn"
	took[$name]=$(($(date +%s) - t0))s
	printf 'kube-from-source: %-10s done in %s\n' "$name" "${took[$name]}"
}

sha256_beside() {
	local f
	for f in "$@"; do
		printf '%s' "$(sha256sum "$f" | cut -d' ' -f1)" >"$f.sha256"
	done
}

# `go mod download` of one exact version, with the module named when the proxy refuses it.
mod_fetch() {
	local out
	if ! out=$(cd "$SRC" && "$GO" mod download -json "$1@$2" 2>&1); then
		echo "$out" >&2
		die "the Go module proxy does not serve module '$1' version '$2'"
	fi
	printf '%s\n' "$out" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# A wrapper module in $SRC/NAME: go.mod with requires and replaces, main.go with blank imports.
wrapper_module() {
	local name=$1 d=$SRC/$1
	rm -rf "$d" && mkdir -p "$d"
	cat >"$d/go.mod"
	printf 'package main\n\nimport (\n' >"$d/tools.go"
	local p
	for p in "${WRAP_IMPORTS[@]}"; do
		printf '\t_ "%s"\n' "$p" >>"$d/tools.go"
	done
	printf ')\n\nfunc main() {}\n' >>"$d/tools.go"
	(cd "$d" && "$GO" mod tidy >"$d/tidy.log" 2>&1) || {
		tail -n 20 "$d/tidy.log" >&2
		die "go mod tidy for the $name wrapper module failed (log: $d/tidy.log)"
	}
}

KUBE_CMDS=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

build_kubernetes() {
	local kdir info commit date staging p ld=() pkgs=()
	kdir=$(mod_fetch k8s.io/kubernetes "$VERSION")
	[ -n "$kdir" ] || die "the Go module proxy does not serve module 'k8s.io/kubernetes' version '$VERSION'"
	info=$("$GO" env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$VERSION.info
	commit=$(sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$info")
	date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
	# The staging modules (k8s.io/api, client-go, ...) at v0.MINOR.PATCH, as kubernetes'
	# own go.mod replaces them with its staging/ tree, which the module zip does not carry.
	staging=$(sed -n '/^replace (/,/^)/s/^[[:space:]]*\(k8s\.io\/[^ ]*\) => \.\/staging.*/\1/p' \
		"$kdir/go.mod")
	[ -n "$staging" ] || die "no staging replace block in $kdir/go.mod"
	pkgs=("${KUBE_CMDS[@]/#/k8s.io/kubernetes/cmd/}")
	WRAP_IMPORTS=("${pkgs[@]}")
	{
		echo "module imgforge.local/kube-from-source"
		echo
		echo "go $(sed -n 's/^go \(.*\)/\1/p' "$kdir/go.mod")"
		echo
		echo "require k8s.io/kubernetes $VERSION"
		echo
		echo "replace ("
		for p in $staging; do
			echo "	$p => $p $STAGING_VERSION"
		done
		echo ")"
	} | wrapper_module kubernetes
	# The version stamps upstream's hack/lib/version.sh sets, in both version packages.
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=(-X "$p.gitVersion=$VERSION" -X "$p.gitMajor=$MAJOR" -X "$p.gitMinor=$MINOR"
			-X "$p.gitCommit=$commit" -X "$p.gitTreeState=clean" -X "$p.buildDate=$date")
	done
	(cd "$SRC/kubernetes" && "$GO" build -trimpath -ldflags "-s -w ${ld[*]}" -o "$BIN/" "${pkgs[@]}")
	sha256_beside "${KUBE_CMDS[@]/#/$BIN/}"
	"$BIN/kubeadm" version -o short | grep -qx "$VERSION" ||
		die "kubeadm reports '$("$BIN/kubeadm" version -o short)', not $VERSION"
}

# `go install PKG@VERSION...` with upstream's flags (-trimpath, stripped) into DIR. go install
# refuses GOBIN for a cross build and puts binaries in GOPATH/bin/linux_ARCH: moved from there.
go_install() {
	local d=$1 a name
	shift
	if [ "$ARCH" = "$HOST_ARCH" ]; then
		GOBIN=$d "$GO" install -trimpath "$@"
		return
	fi
	env -u GOBIN "$GO" install -trimpath "$@"
	mkdir -p "$d"
	for a in "$@"; do
		case $a in
		-*) continue ;;
		*@*) name=${a%@*} && name=${name##*/} ;;
		*) continue ;;
		esac
		mv -f "$("$GO" env GOPATH)/bin/linux_$ARCH/$name" "$d/$name"
	done
}

# The commit a module version was tagged at (the proxy's .info Origin), for version stamps.
mod_commit() {
	sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$("$GO" env GOMODCACHE)/cache/download/$1/@v/$2.info"
}

# A reproducible .tar.gz of DIR's members (upstream's release tarballs, without their dates).
tgz() { # OUT DIR MEMBER...
	local out=$1 d=$2
	shift 2
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$d" -cf - "$@" |
		gzip -n >"$out"
}

# mkimage: python3 hack/mkimage.py with the arch given.
mkimage() { python3 "$HACK/mkimage.py" --arch "$ARCH" "$@"; }

# Files a distroless-like base has: CA certificates, passwd/group with root and nobody, /tmp.
BASE_ADD=()
base_files() {
	local b=$SRC/base
	rm -rf "$b" && mkdir -p "$b/etc/ssl/certs" "$b/tmp"
	cp /etc/ssl/certs/ca-certificates.crt "$b/etc/ssl/certs/" 2>/dev/null ||
		: >"$b/etc/ssl/certs/ca-certificates.crt"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$b/etc/passwd"
	printf 'root:x:0:\nnobody:x:65534:\n' >"$b/etc/group"
	printf 'hosts: files dns\n' >"$b/etc/nsswitch.conf"
	BASE_ADD=(--tree "$b")
}

# A shell and the usual tools: busybox from Debian's busybox-static, with its applet links.
busybox_tree() {
	local t=$SRC/busybox bb=$BUSYBOX f
	# Debian's busybox-static puts a static busybox at /bin/busybox; another arch's is
	# unpacked from its package.
	if [ "$ARCH" != "$HOST_ARCH" ] && [ ! -x "$bb" ]; then
		rm -rf "$SRC/busybox-$ARCH" && mkdir -p "$SRC/busybox-$ARCH"
		(cd "$SRC" && apt-get download -q "busybox-static:$ARCH" >/dev/null) ||
			die "apt-get download busybox-static:$ARCH failed (dpkg --add-architecture $ARCH; apt-get update)"
		dpkg-deb -x "$SRC"/busybox-static_*_"$ARCH".deb "$SRC/busybox-$ARCH"
		rm -f "$SRC"/busybox-static_*_"$ARCH".deb
	fi
	[ -x "$bb" ] && ! ldd "$bb" >/dev/null 2>&1 ||
		die "no static busybox at $bb (Debian's busybox-static; hack/install-deps.sh --test)"
	rm -rf "$t" && mkdir -p "$t/bin"
	cp -L "$bb" "$t/bin/busybox"
	for f in sh ash ln grep sed cat cp mv rm rmdir mkdir chmod chown ls echo test sleep touch \
		du df basename dirname head tail wc tr; do
		ln -s busybox "$t/bin/$f"
	done
	BUSYBOX_TREE=$t
}

# A root filesystem with this machine's iptables (legacy and nft), conntrack and busybox, and
# an iptables wrapper that picks the mode the node uses, as upstream's distroless-iptables does.
iptables_tree() {
	local t=$SRC/iptables f lib
	rm -rf "$t" && mkdir -p "$t/usr/sbin" "$t/bin"
	for f in /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-nft-multi /usr/sbin/conntrack; do
		[ -x "$f" ] || die "'$f' not found (hack/install-deps.sh --test installs iptables and conntrack)"
		mkdir -p "$t$(dirname "$f")" && cp -L "$f" "$t$f"
	done
	# The match and target modules (libxt_statistic.so, ...).
	for f in /usr/lib/*/xtables; do
		[ -d "$f" ] && mkdir -p "$t$(dirname "$f")" && cp -a "$f" "$t$f"
	done
	# What all of them link (libm for statistic, ...), at the same paths, with the loader.
	for lib in $(ldd /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-nft-multi /usr/sbin/conntrack \
		/usr/lib/*/xtables/*.so | grep -v ':$' | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
		mkdir -p "$t$(dirname "$lib")" && cp -L "$lib" "$t$lib"
	done
	busybox_tree
	cp -a "$BUSYBOX_TREE/bin/." "$t/bin/"
	install -m 0755 "$TOP/provisioners/images/iptables-wrapper" "$t/usr/sbin/iptables-wrapper"
	for f in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
		ln -s iptables-wrapper "$t/usr/sbin/$f"
		ln -s xtables-legacy-multi "$t/usr/sbin/$f-legacy"
		ln -s xtables-nft-multi "$t/usr/sbin/$f-nft"
	done
	IPTABLES_TREE=$t
}

build_images() {
	local c tars=() extra
	[ -x "$BIN/kube-apiserver" ] || die "build the 'kubernetes' part first"
	base_files
	iptables_tree
	for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
		extra=()
		[ "$c" != kube-proxy ] || extra=(--tree "$IPTABLES_TREE")
		mkimage --out "$SRC/img-$c" --tag "$VERSION" --name "registry.k8s.io/$c-$ARCH:$VERSION" \
			"${BASE_ADD[@]}" "${extra[@]}" --add "$BIN/$c=/usr/local/bin/$c:0755" \
			--entrypoint "[\"/usr/local/bin/$c\"]"
		rm -f "$BIN/$c.tar"
		# docker-archive, the format of upstream's release tars.
		skopeo --policy "$SRC/policy.json" copy -q "oci:$SRC/img-$c:$VERSION" \
			"docker-archive:$BIN/$c.tar:registry.k8s.io/$c-$ARCH:$VERSION"
		tars+=("$BIN/$c.tar")
	done
	sha256_beside "${tars[@]}"
}

build_etcd() {
	local d=$SRC/etcd ETCD_VERSION=v${ETCD_TAG%-*}
	WRAP_IMPORTS=(go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3)
	mod_fetch go.etcd.io/etcd/server/v3 "$ETCD_VERSION" >/dev/null
	printf 'module imgforge.local/etcd\n\ngo 1.22\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 %s\n\tgo.etcd.io/etcd/etcdctl/v3 %s\n)\n' \
		"$ETCD_VERSION" "$ETCD_VERSION" | wrapper_module etcd
	mkdir -p "$d/out"
	(cd "$d" && "$GO" build -trimpath -ldflags "-s -w" -o out/etcd go.etcd.io/etcd/server/v3 &&
		"$GO" build -trimpath -ldflags "-s -w" -o out/etcdctl go.etcd.io/etcd/etcdctl/v3)
	base_files
	mkimage --out "$DIR/oci/etcd" --tag "$ETCD_TAG" --name "registry.k8s.io/etcd:$ETCD_TAG" \
		"${BASE_ADD[@]}" --add "$d/out/etcd=/usr/local/bin/etcd:0755" \
		--add "$d/out/etcdctl=/usr/local/bin/etcdctl:0755" --cmd '["/usr/local/bin/etcd"]'
}

build_coredns() {
	local d=$SRC/coredns
	mkdir -p "$d"
	mod_fetch github.com/coredns/coredns "$COREDNS_VERSION" >/dev/null
	go_install "$d" -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
	base_files
	mkimage --out "$DIR/oci/coredns" --tag "$COREDNS_VERSION" \
		--name "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "${BASE_ADD[@]}" \
		--add "$d/coredns=/coredns:0755" --entrypoint '["/coredns"]' --expose 53/tcp --expose 53/udp
}

build_pause() {
	local kdir d=$SRC/pause
	kdir=$(mod_fetch k8s.io/kubernetes "$VERSION")
	mkdir -p "$d"
	"$CROSS_CC" -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-imgforge" \
		-o "$d/pause" "$kdir/build/pause/linux/pause.c"
	"$CROSS_STRIP" "$d/pause" 2>/dev/null || true
	mkimage --out "$DIR/oci/pause" --tag "$PAUSE_TAG" --name "registry.k8s.io/pause:$PAUSE_TAG" \
		--add "$d/pause=/pause:0755" --entrypoint '["/pause"]' --user 65535:65535
}

build_crictl() {
	local d=$SRC/crictl out=$DIR/crictl/$CRICTL_VERSION f
	mkdir -p "$d/bin" "$out"
	mod_fetch sigs.k8s.io/cri-tools "$CRICTL_VERSION" >/dev/null
	go_install "$d/bin" -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
		"sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	f=$out/crictl-$CRICTL_VERSION-linux-$ARCH.tar.gz
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$d/bin" -cf - crictl |
		gzip -n >"$f"
	sha256_beside "$f"
}

# kind's storage: local-path-provisioner, and the helper image its pods run (a shell and
# coreutils: busybox from Debian's busybox-static).
build_storage() {
	local d=$SRC/storage
	mkdir -p "$d"
	mod_fetch github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION" >/dev/null
	go_install "$d" -ldflags "-s -w" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
	base_files
	mkimage --out "$DIR/oci/local-path-provisioner" --tag "$LOCAL_PATH_TAG" \
		--name "docker.io/kindest/local-path-provisioner:$LOCAL_PATH_TAG" "${BASE_ADD[@]}" \
		--add "$d/local-path-provisioner=/usr/local/bin/local-path-provisioner:0755" \
		--entrypoint '["/usr/local/bin/local-path-provisioner"]'
	busybox_tree
	mkimage --out "$DIR/oci/local-path-helper" --tag "$LOCAL_PATH_HELPER_TAG" \
		--name "docker.io/kindest/local-path-helper:$LOCAL_PATH_HELPER_TAG" --tree "$BUSYBOX_TREE" \
		--cmd '["/bin/sh"]'
}

build_flannel() {
	local d=$SRC/flannel
	rm -rf "$d" && mkdir -p "$d/flanneld" "$d/cni"
	mod_fetch github.com/flannel-io/flannel "$FLANNEL_VERSION" >/dev/null
	mod_fetch github.com/containernetworking/plugins "$FLANNEL_CNI_VERSION" >/dev/null
	# Both commands are called "flannel": one GOBIN each. flanneld's udp backend is cgo: link
	# it statically, as upstream does. One of its modules (tencentcloud-sdk-go/.../vpc) is
	# served by the module proxy but unknown to the checksum database, which answers 404:
	# its hash is taken from the proxy alone.
	CGO_ENABLED=1 GONOSUMDB=github.com/tencentcloud go_install "$d/flanneld" -tags netgo,osusergo \
		-ldflags "-s -w -linkmode external -extldflags -static \
		-X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION" \
		"github.com/flannel-io/flannel@$FLANNEL_VERSION"
	go_install "$d/cni" -ldflags "-s -w" \
		"github.com/containernetworking/plugins/plugins/meta/flannel@$FLANNEL_CNI_VERSION"
	base_files
	iptables_tree
	mkimage --out "$DIR/oci/flannel" --tag "$FLANNEL_VERSION" \
		--name "docker.io/flannel/flannel:$FLANNEL_VERSION" "${BASE_ADD[@]}" \
		--tree "$IPTABLES_TREE" \
		--add "$d/flanneld/flannel=/opt/bin/flanneld:0755" \
		--entrypoint '["/opt/bin/flanneld"]'
	mkimage --out "$DIR/oci/flannel-cni-plugin" --tag "$FLANNEL_CNI_VERSION" \
		--name "docker.io/flannel/flannel-cni-plugin:$FLANNEL_CNI_VERSION" --tree "$BUSYBOX_TREE" \
		--add "$d/cni/flannel=/flannel:0755"
}

# containerd as upstream releases it: containerd-V-linux-ARCH.tar.gz holding bin/, with a
# .sha256sum beside it. Static (CGO off), with upstream's build tags and version stamps.
build_containerd() {
	local d=$SRC/containerd v=${CONTAINERD_VERSION#v} out m=github.com/containerd/containerd/v2 c
	out=$DIR/containerd/v$v
	rm -rf "$d" && mkdir -p "$d/bin" "$out"
	mod_fetch "$m" "$CONTAINERD_VERSION" >/dev/null
	go_install "$d/bin" -tags "no_aufs no_zfs no_btrfs no_devmapper urfave_cli_no_docs" \
		-ldflags "-s -w -X $m/version.Version=$CONTAINERD_VERSION \
		-X $m/version.Revision=$(mod_commit "$m" "$CONTAINERD_VERSION") -X $m/version.Package=$m" \
		"$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
		"$m/cmd/ctr@$CONTAINERD_VERSION"
	c=containerd-$v-linux-$ARCH.tar.gz
	tgz "$out/$c" "$d" bin
	(cd "$out" && sha256sum "$c" >"$c.sha256sum")
	"$d/bin/containerd" --version | grep -F " $CONTAINERD_VERSION " ||
		die "containerd reports '$("$d/bin/containerd" --version)', not $CONTAINERD_VERSION"
}

# runc as upstream releases it: runc.ARCH, static, with seccomp (Debian's libseccomp-dev), and
# runc.sha256sum. Upstream's libpathrs tag needs a Rust library Debian does not ship: left out.
build_runc() {
	local d=$SRC/runc v=${RUNC_VERSION#v} out m=github.com/opencontainers/runc
	out=$DIR/runc/$RUNC_VERSION
	rm -rf "$d" && mkdir -p "$d" "$out"
	mod_fetch "$m" "$RUNC_VERSION" >/dev/null
	CGO_ENABLED=1 CC=$CROSS_CC go_install "$d" -tags "seccomp urfave_cli_no_docs netgo osusergo" \
		-ldflags "-s -w -X main.gitCommit=$(mod_commit "$m" "$RUNC_VERSION") \
		-linkmode external -extldflags -static" "$m@$RUNC_VERSION"
	cp "$d/runc" "$out/runc.$ARCH"
	(cd "$out" && sha256sum "runc.$ARCH" >runc.sha256sum)
	! ldd "$out/runc.$ARCH" >/dev/null 2>&1 || die "runc.$ARCH is not static"
	[ "$ARCH" = "$HOST_ARCH" ] || return 0
	# Read whole before matching: with pipefail, grep -q closing the pipe early fails it.
	local said
	said=$("$out/runc.$ARCH" --version)
	case $said in "runc version $v"*) ;; *) die "runc reports '${said%%$'\n'*}', not $v" ;; esac
	said=$("$out/runc.$ARCH" features)
	case $said in *'"enabled": true'*) ;; *) die "runc.$ARCH was built without seccomp" ;; esac
}

# The CNI plugins as upstream releases them: cni-plugins-linux-ARCH-vV.tgz holding ./NAME for
# every plugin (main, ipam, meta), with its .sha256.
build_cni() {
	local d=$SRC/cni out m=github.com/containernetworking/plugins c
	out=$DIR/cni/$CNI_VERSION
	rm -rf "$d" && mkdir -p "$d/bin" "$out"
	mod_fetch "$m" "$CNI_VERSION" >/dev/null
	go_install "$d/bin" -ldflags "-s -w -X $m/pkg/utils/buildversion.BuildVersion=$CNI_VERSION" \
		"$m/plugins/main/...@$CNI_VERSION" "$m/plugins/ipam/...@$CNI_VERSION" \
		"$m/plugins/meta/...@$CNI_VERSION"
	for c in bridge host-local loopback portmap ptp; do
		[ -x "$d/bin/$c" ] || die "the CNI plugins $CNI_VERSION built no '$c'"
	done
	c=cni-plugins-linux-$ARCH-$CNI_VERSION.tgz
	# ./NAME members, as upstream's tarball has them
	tgz "$out/$c" "$d/bin" $(cd "$d/bin" && ls | sed 's#^#./#')
	(cd "$out" && sha256sum "$c" >"$c.sha256")
}

# etcd, CoreDNS and pause at what this kubeadm asks for (as kind's node-image build does), unless
# given (KFS_ETCD_TAG, KFS_COREDNS, KFS_PAUSE_TAG).
kubeadm_images() {
	local list
	[ -x "$BIN/kubeadm" ] || die "build the 'kubernetes' part first (etcd, CoreDNS and pause follow its kubeadm)"
	list=$("$BIN/kubeadm" config images list --kubernetes-version "$VERSION") ||
		die "kubeadm config images list --kubernetes-version $VERSION failed"
	ETCD_TAG=${ETCD_TAG:-$(echo "$list" | sed -n 's#^registry.k8s.io/etcd:##p')}
	COREDNS_VERSION=${COREDNS_VERSION:-$(echo "$list" | sed -n 's#^registry.k8s.io/coredns/coredns:##p')}
	PAUSE_TAG=${PAUSE_TAG:-$(echo "$list" | sed -n 's#^registry.k8s.io/pause:##p')}
	[ -n "$ETCD_TAG" ] && [ -n "$COREDNS_VERSION" ] && [ -n "$PAUSE_TAG" ] ||
		die "kubeadm $VERSION listed no etcd, coredns or pause image: $list"
	echo "kube-from-source: kubeadm $VERSION asks for etcd $ETCD_TAG, coredns $COREDNS_VERSION, pause $PAUSE_TAG"
}

build_kind() {
	mod_fetch sigs.k8s.io/kind "$KIND_VERSION" >/dev/null
	go_install "$DIR/bin" "sigs.k8s.io/kind@$KIND_VERSION"
	"$DIR/bin/kind" version
}

# The whole run is one function, read before it starts: editing this file mid-build is safe.
main() {
	printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$SRC/policy.json"
	[ -f "$SRC/go.mod" ] || printf 'module imgforge.local/fetch\n\ngo 1.22\n' >"$SRC/go.mod"
	t_start=$(date +%s)
	run_part kubernetes build_kubernetes
	if want etcd || want coredns || want pause; then kubeadm_images; fi
	run_part images build_images
	run_part containerd build_containerd
	run_part runc build_runc
	run_part cni build_cni
	run_part etcd build_etcd
	run_part coredns build_coredns
	run_part pause build_pause
	run_part crictl build_crictl
	run_part storage build_storage
	run_part flannel build_flannel
	run_part kind build_kind

	# What a loopback registry must serve, for hack/kube-mirror-serve.sh and the tests (the
	# images that were built: a cross build has no flannel).
	while read -r l n; do
		[ ! -f "$DIR/${l%:*}/index.json" ] || echo "$l $n"
	done >"$DIR/images.txt" <<-EOF
	oci/pause:$PAUSE_TAG registry.k8s.io/pause:$PAUSE_TAG
	oci/etcd:$ETCD_TAG registry.k8s.io/etcd:$ETCD_TAG
	oci/coredns:$COREDNS_VERSION registry.k8s.io/coredns/coredns:$COREDNS_VERSION
	oci/local-path-provisioner:$LOCAL_PATH_TAG docker.io/kindest/local-path-provisioner:$LOCAL_PATH_TAG
	oci/local-path-helper:$LOCAL_PATH_HELPER_TAG docker.io/kindest/local-path-helper:$LOCAL_PATH_HELPER_TAG
	oci/flannel:$FLANNEL_VERSION docker.io/flannel/flannel:$FLANNEL_VERSION
	oci/flannel-cni-plugin:$FLANNEL_CNI_VERSION docker.io/flannel/flannel-cni-plugin:$FLANNEL_CNI_VERSION
	EOF
	cat >"$DIR/versions.env" <<-EOF
	KUBERNETES_VERSION=$VERSION
	ARCH=$ARCH
	CRICTL_VERSION=$CRICTL_VERSION
	ETCD_TAG=$ETCD_TAG
	COREDNS_VERSION=$COREDNS_VERSION
	PAUSE_TAG=$PAUSE_TAG
	KIND_VERSION=$KIND_VERSION
	LOCAL_PATH_TAG=$LOCAL_PATH_TAG
	LOCAL_PATH_HELPER_TAG=$LOCAL_PATH_HELPER_TAG
	CONTAINERD_VERSION=$CONTAINERD_VERSION
	RUNC_VERSION=$RUNC_VERSION
	CNI_VERSION=$CNI_VERSION
	FLANNEL_VERSION=$FLANNEL_VERSION
	FLANNEL_CNI_VERSION=$FLANNEL_CNI_VERSION
	EOF
	for p in "${!took[@]}"; do
		printf 'kube-from-source: took %-10s %s\n' "$p" "${took[$p]}"
	done | sort
	echo "kube-from-source: $VERSION for $ARCH in $DIR ($(($(date +%s) - t_start)) s)"
}

main "$@"
exit $?
