# shellcheck shell=bash
# arm64 on this amd64 machine: arm64 binaries run through binfmt_misc and Debian's
# qemu-user-static (hack/test-env.sh registers it with the F flag, so it works in containers).
#
#   arm64_usable            status 0 when an arm64 binary runs here; else prints why
#   arm64_fixtures_up DIR   Debian's arm64 containerd, runc and CNI plugins repacked into the
#                           upstream release layout (linux-arm64 names) under DIR/www, served
#                           on loopback; sets ARM64_HTTP (the server's base URL) and
#                           ARM64_CONTAINERD_VERSION, ARM64_RUNC_VERSION, ARM64_CNI_VERSION
#   arm64_kube_up           Kubernetes, etcd, CoreDNS, pause, crictl and the storage images
#                           cross-built for arm64 (hack/kube-from-source.sh --arch arm64,
#                           cached by version); sets KUBE_ARM64_DIR
ARM64_DEBS=(containerd runc containernetworking-plugins)

arm64_usable() {
	local f=/proc/sys/fs/binfmt_misc/qemu-aarch64
	if ! grep -qx enabled "$f" 2>/dev/null; then
		echo "no binfmt_misc entry qemu-aarch64 ($f; hack/test-env.sh registers Debian's qemu-user-static)"
		return 1
	fi
	if ! grep -q '^flags: .*F' "$f"; then
		echo "binfmt_misc's qemu-aarch64 lacks the F flag, so containers cannot use it"
		return 1
	fi
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		echo "dpkg has no arm64 architecture (hack/install-deps.sh --test adds it)"
		return 1
	fi
	return 0
}

# The upstream part of a .deb's version: 1.6.20~ds1-1+deb12u1 -> 1.6.20.
_arm64_deb_version() {
	dpkg-deb -f "$1" Version | sed -e 's/^[0-9]*://' -e 's/[~+-].*//'
}

_arm64_fixtures_build() {
	local dir=$1 debs=$1/debs x=$1/x www=$1/www.new p cv rv nv f
	rm -rf "$debs" "$x" "$www" && mkdir -p "$debs" "$x" "$www"
	for p in "${ARM64_DEBS[@]}"; do
		(cd "$debs" && apt-get download -q "$p:arm64" >/dev/null 2>&1) ||
			{ echo "apt-get download $p:arm64 failed" >&2; return 1; }
		dpkg-deb -x "$debs/${p}_"*_arm64.deb "$x"
	done
	cv=$(_arm64_deb_version "$debs"/containerd_*_arm64.deb)
	rv=$(_arm64_deb_version "$debs"/runc_*_arm64.deb)
	nv=$(_arm64_deb_version "$debs"/containernetworking-plugins_*_arm64.deb)
	# containerd: bin/containerd, bin/containerd-shim-runc-v2, bin/ctr
	mkdir -p "$www/containerd/v$cv" "$x/containerd/bin"
	for f in containerd containerd-shim-runc-v2 ctr; do
		install -m 0755 "$x/usr/bin/$f" "$x/containerd/bin/$f"
	done
	f=containerd-$cv-linux-arm64.tar.gz
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$x/containerd" -cf - bin |
		gzip -n -1 >"$www/containerd/v$cv/$f"
	(cd "$www/containerd/v$cv" && sha256sum "$f" >"$f.sha256sum")
	# runc: the binary, and a list naming it
	mkdir -p "$www/runc/v$rv"
	install -m 0755 "$x/usr/sbin/runc" "$www/runc/v$rv/runc.arm64"
	(cd "$www/runc/v$rv" && sha256sum runc.arm64 >runc.sha256sum)
	# CNI plugins: ./bridge, ./host-local, ...
	mkdir -p "$www/cni/v$nv"
	f=cni-plugins-linux-arm64-v$nv.tgz
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$x/usr/lib/cni" -cf - . |
		gzip -n -1 >"$www/cni/v$nv/$f"
	(cd "$www/cni/v$nv" && sha256sum "$f" >"$f.sha256")
	printf 'ARM64_CONTAINERD_VERSION=%s\nARM64_RUNC_VERSION=%s\nARM64_CNI_VERSION=%s\n' \
		"$cv" "$rv" "$nv" >"$www/versions.env"
	rm -rf "$x" "$debs"
	rm -rf "$dir/www" && mv "$www" "$dir/www"
}

arm64_fixtures_up() {
	local dir=$1 key port
	mkdir -p "$dir"
	# Rebuilt when this file or the candidate arm64 versions change.
	key=$({
		cat "${BASH_SOURCE[0]}"
		apt-cache policy "${ARM64_DEBS[@]/%/:arm64}" 2>/dev/null | grep -E '^[^ ]|Candidate'
	} | sha256sum | cut -d' ' -f1)
	if [ "$(cat "$dir/key" 2>/dev/null)" != "$key" ] || [ ! -d "$dir/www" ]; then
		_arm64_fixtures_build "$dir" || return 1
		echo "$key" >"$dir/key"
	fi
	# shellcheck disable=SC1091
	. "$dir/www/versions.env"
	python3 "$TOP/tests/lib/httpd.py" --root "$dir/www" --log "$TMP/arm64-httpd.log" \
		>"$TMP/arm64-httpd.port" 2>"$TMP/arm64-httpd.err" </dev/null &
	at_exit "kill $!"
	for _ in $(seq 1 50); do
		port=$(head -n 1 "$TMP/arm64-httpd.port" 2>/dev/null | grep -oE '[0-9]+' | tail -n 1)
		[ -z "$port" ] || break
		sleep 0.1
	done
	[ -n "$port" ] || { cat "$TMP/arm64-httpd.err" >&2; return 1; }
	export ARM64_HTTP=http://127.0.0.1:$port
}

arm64_kube_up() {
	local t0=$SECONDS
	KUBE_ARM64_DIR=/var/cache/imgforge/kube-from-source/$KUBE_VERSION-linux-arm64
	if ! bash "$TOP/hack/kube-from-source.sh" --arch arm64 "$KUBE_VERSION" "$KUBE_ARM64_DIR" \
		>"$TMP/kube-arm64.log" 2>&1; then
		tail -n 40 "$TMP/kube-arm64.log"
		return 1
	fi
	say "kube-from-source --arch arm64: $((SECONDS - t0)) s ($(grep -c cached "$TMP/kube-arm64.log") parts cached)"
}
