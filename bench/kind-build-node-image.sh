#!/usr/bin/env bash
# kind's own `kind build node-image` against `imgforge build --only kind-node`, on one machine in
# one run, from the same inputs: the same kubernetes-server-linux-amd64.tar.gz (made from the
# from-source mirror of hack/kube-from-source.sh), the same base (kind's base image as imgforge's
# `kind-base` builds it, served from a loopback registry as kindest/base is from Docker Hub) and
# the same images (pause, etcd, CoreDNS, the CNI and storage images) from that loopback registry.
# The kind CLI is the one the tests use (the mirror's bin/kind, kind v0.33.0), with
# `--type file`. Builds alternate, imgforge then kind, BENCH_PAIRS times (default 2) cold and
# as many warm; prints every time, each pair's ratio (kind / imgforge), where each imgforge
# build spent its time (its --json phase events) and the medians.
#
# BENCH_IMGF_B=PATH also times another imgforge binary's cold build after each pair (its
# phases and the A/B ratio), for an A/B of two imgforge builds from the same inputs.
#
#   cold  imgforge: an empty IMGFORGE_CACHE_DIR (no downloads, no step cache) per build.
#         kind: it keeps nothing between builds, so each of its builds is a cold one; the
#         base image is in the engine for both, as after the first pull.
#   warm  imgforge: the cache of a cold build again with --no-cache (downloads cached, every
#         step run), and that cache again as it is (every step cached: nothing runs).
#         kind: the same build again (the page cache is all it can reuse).
#
# What kind's flow cannot do here, and what stands in (said again in the output):
#   - kindnetd (kind's CNI image, docker.io/kindest/kindnetd) is not served by the Go module
#     proxy, so it cannot be built: the mirror's flannel image is pushed under kindnetd's name
#     and both builds preload that (and write kind's kindnetd manifest). The images built are
#     for timing; a cluster from them would run flannel's binary as kindnetd.
#   - `kind build node-image` fetches images with `ctr content fetch` inside an unprivileged
#     build container on the engine's default network, from the real registries. A bench-only
#     `docker` on kind's PATH ($TMP/bin/docker, below) gives that container host networking (the
#     registry listens on 127.0.0.1 only) and containerd hosts.toml files mounted at
#     /etc/containerd/certs.d (mirrors of registry.k8s.io and docker.io to the loopback
#     registry), and adds `--hosts-dir /etc/containerd/certs.d` to those `ctr content fetch`
#     calls; it then calls tests/lib/kind-docker (kind's `docker exec --privileged`, refused by
#     this engine, runs without the flag). Nothing else of kind's commands is changed.
#   - `--type source` (make quick-release-images in a Kubernetes git tree, in kube-cross) and
#     `--type release`/`ci` (dl.k8s.io) cannot run here: no git tree, no kube-cross image, no
#     internet. `--type url` is `--type file` after an HTTP download.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/bench-kind-build-node-image.XXXXXX)
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
PAIRS=${BENCH_PAIRS:-2}
TAG_IMGF=imgforge-bench/kind-node:bni-imgforge-$$
TAG_KIND=imgforge-bench/kind-node:bni-kind-$$
TAG_BASE=imgforge-bench/kind-base:bni-$$
KUBE_VERSION=${IMGF_KUBE_VERSION:-$(jq -r .variables.kubernetes_semver "$TOP/config/kubernetes.json")}
KUBE_DIR=${IMGF_KUBE_DIR:-/var/cache/imgforge/kube-from-source/$KUBE_VERSION}
KINDNETD=$(jq -r .variables.kindnetd_image "$TOP/config/common.json")
M=$TMP/mirror
say() { printf '# %s\n' "$*"; }
die() { echo "bench: $*" >&2; exit 1; }
. "$TOP/tests/lib/base-image.sh"
cleanup() {
	local c
	while read -r c; do docker rm -f -v "$c" >/dev/null 2>&1 || true; done <"$TMP/kind-containers" 2>/dev/null || true
	docker rmi -f "$TAG_IMGF" "$TAG_KIND" "$TAG_BASE" ${REG:+"$REG/kindest/base:bni-$$"} >/dev/null 2>&1 || true
	# Each build's image (a later one takes its tag).
	while read -r c; do docker rmi -f "$c" >/dev/null 2>&1 || true; done <"$TMP/built" 2>/dev/null || true
	for c in "$TMP"/cache-*; do
		[ -d "$c" ] && IMGFORGE_CACHE_DIR=$c "$TOP/imgforge" cache prune >/dev/null 2>&1 || true
	done
	[ -d "$M" ] && bash "$TOP/hack/kube-mirror-serve.sh" --stop "$M" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
now() { date +%s.%N; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
make -s -C "$TOP"

say "the from-source mirror ($KUBE_VERSION, $KUBE_DIR): hack/kube-from-source.sh, cached"
bash "$TOP/hack/kube-from-source.sh" "$KUBE_VERSION" "$KUBE_DIR" >"$TMP/kube-from-source.log" 2>&1 || {
	tail -n 30 "$TMP/kube-from-source.log"
	die "hack/kube-from-source.sh failed"
}
# shellcheck disable=SC1091
. "$KUBE_DIR/versions.env"
KIND=$KUBE_DIR/bin/kind
PAUSE=registry.k8s.io/pause:$PAUSE_TAG

# The bench's own copy of the mirror (links to its files) and its own loopback registry, so the
# kindnetd stand-in goes into no registry the tests share.
mkdir -p "$M"
for e in "$KUBE_DIR"/*; do
	case ${e##*/} in registry | registry.* | holders* | vars.json | images.txt) continue ;; esac
	ln -s "$e" "$M/"
done
flannel=$(awk -v r="docker.io/flannel/flannel:$FLANNEL_VERSION" '$2 == r {print $1}' "$KUBE_DIR/images.txt")
[ -n "$flannel" ] || die "no flannel image in $KUBE_DIR/images.txt"
{ cat "$KUBE_DIR/images.txt"; echo "$flannel $KINDNETD"; } >"$M/images.txt"
bash "$TOP/hack/kube-mirror-serve.sh" --port 0 "$M" >"$TMP/serve.log" 2>&1 || { cat "$TMP/serve.log"; die "registry failed"; }
REG=127.0.0.1:$(cat "$M/registry.port")
VARS=$M/vars.json
say "loopback registry $REG: $(wc -l <"$M/images.txt") images; $KINDNETD is flannel's image (kindnetd cannot be built here)"

# kind's base image, built by imgforge's kind-base (not timed), pushed to the loopback registry.
BASE=$(base_image_ensure "" trixie) || die "base image failed"
say "kind-base: imgforge build --only kind-base from $BASE (sandbox image $PAUSE)"
IMGFORGE_CACHE_DIR=$TMP/cache-base "$TOP/imgforge" build --only kind-base --var-file "$VARS" \
	--var docker_base_image="$BASE" --var kind_base_image="$TAG_BASE" --var pause_image="$PAUSE" \
	--output-dir "$TMP/out-base" "$TOP/config/debian-13.json" >"$TMP/kind-base.log" 2>&1 ||
	{ tail -n 30 "$TMP/kind-base.log"; die "kind-base failed"; }
KBASE=$REG/kindest/base:bni-$$
docker tag "$TAG_BASE" "$KBASE"
docker push -q "$KBASE" >/dev/null || die "docker push $KBASE failed"
say "base: $KBASE ($(docker image inspect -f '{{.Size}}' "$KBASE" | awk '{printf "%.0f MB", $1/1e6}'))"

# The server tarball both builds take: kubernetes/server/bin with kubeadm, kubelet, kubectl, the
# other four binaries, the four image tars and their .docker_tag files, and kubernetes/version.
srv=$TMP/srv/kubernetes/server/bin
bin=$KUBE_DIR/release/$KUBE_VERSION/bin/linux/$ARCH
mkdir -p "$srv"
for f in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
	ln -s "$bin/$f" "$srv/$f"
done
for f in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
	ln -s "$bin/$f.tar" "$srv/$f.tar" && echo "$KUBE_VERSION" >"$srv/$f.docker_tag"
done
echo "$KUBE_VERSION" >"$TMP/srv/kubernetes/version"
TARBALL=$TMP/kubernetes-server-linux-$ARCH.tar.gz
tar -C "$TMP/srv" -chf - kubernetes | gzip -1 >"$TARBALL"
say "server tarball: $(du -m "$TARBALL" | cut -f1) MB"

# kind's docker: host networking and the registry mirrors for its build container, the
# mirrors for its `ctr content fetch`, then tests/lib/kind-docker (see the top of this file).
mkdir -p "$TMP/bin" "$TMP/hosts/registry.k8s.io" "$TMP/hosts/docker.io"
for r in registry.k8s.io docker.io; do
	printf 'server = "https://%s"\n\n[host."http://%s/v2/%s"]\n  capabilities = ["pull", "resolve"]\n  override_path = true\n' \
		"$r" "$REG" "$r" >"$TMP/hosts/$r/hosts.toml"
done
cat >"$TMP/bin/docker" <<EOF
#!/usr/bin/env bash
set -euo pipefail
PATH=\${PATH#"$TMP/bin:"}
a=("\$@")
case \${1:-} in
run)
	for x in "\$@"; do
		case \$x in --name=kind-build-*)
			echo "\${x#--name=}" >>"$TMP/kind-containers"
			a=(run --network host -v "$TMP/hosts:/etc/containerd/certs.d:ro" "\${@:2}")
			echo "run: --network host, hosts.toml mounted" >>"$TMP/wrapper.log"
			;;
		esac
	done
	;;
exec)
	a=() p=
	for x in "\$@"; do
		a+=("\$x")
		if [ "\$p" = content ] && [ "\$x" = fetch ]; then
			a+=(--hosts-dir /etc/containerd/certs.d)
			echo "exec: ctr content fetch --hosts-dir" >>"$TMP/wrapper.log"
		fi
		p=\$x
	done
	;;
esac
exec "$TOP/tests/lib/kind-docker/docker" "\${a[@]}"
EOF
chmod +x "$TMP/bin/docker"

imgf() { # CACHE OUT [ARGS...]: imgforge build --only kind-node from the same inputs
	local cache=$1 out=$2
	shift 2
	IMGFORGE_CACHE_DIR=$cache "${IMGF_BIN:-$TOP/imgforge}" build --json --only kind-node "$@" --var-file "$VARS" \
		--var docker_base_image="$KBASE" --var kind_node_image="$TAG_IMGF" \
		--var kubernetes_source=tarball --var kubernetes_tarball="$TARBALL" \
		--var pause_image="$PAUSE" --var kind_cni=kindnetd --var kind_cni_images="$KINDNETD" \
		--output-dir "$out" "$TOP/config/debian-13.json"
}
kindb() {
	PATH="$TMP/bin:$PATH" "$KIND" build node-image --type file "$TARBALL" \
		--base-image "$KBASE" --image "$TAG_KIND"
}
timed() { # NAME CMD...: runs CMD into $TMP/NAME.log, prints the seconds it took
	local name=$1 t0 t1
	shift
	t0=$(now)
	"$@" >"$TMP/$name.log" 2>&1 || { tail -n 30 "$TMP/$name.log" >&2; die "$name failed"; }
	t1=$(now)
	docker image inspect -f '{{.Id}}' "$TAG_IMGF" "$TAG_KIND" >>"$TMP/built" 2>/dev/null || true
	printf '%.2f' "$(echo "$t1 - $t0" | bc)"
}
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
phases() { # LOG: where an imgforge build's time went (its --json phase events, summed)
	grep '^{' "$TMP/$1.log" | jq -r 'select(.event == "phase") | "\(.phase) \(.seconds)"' |
		awk '{s[$1] += $2; if (!($1 in o)) o[$1] = n++} END {for (p in o) k[o[p]] = p;
			for (i = 0; i < n; i++) printf "%s%s %.1f", i ? ", " : "", k[i], s[k[i]]; print ""}'
}
steps() { # LOG: each step's seconds (its --json step-done events, whole seconds)
	grep '^{' "$TMP/$1.log" | jq -r 'select(.event == "step-done") | "\(.step) \(.seconds)"' | paste -sd, - | sed 's/,/, /g'
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

echo "== cold: imgforge (empty cache) then kind, alternating, $PAIRS pairs (load $(load))"
declare -a IC KC IW KW IS RC RW BC
for i in $(seq 1 "$PAIRS"); do
	IC[i]=$(timed "imgforge-cold-$i" imgf "$TMP/cache-$i" "$TMP/out-cold-$i")
	KC[i]=$(timed "kind-cold-$i" kindb)
	RC[i]=$(ratio "${KC[i]}" "${IC[i]}")
	echo "pair $i: imgforge ${IC[i]} s, kind ${KC[i]} s, ratio kind/imgforge ${RC[i]} (load $(load))"
	echo "  imgforge's phases (s): $(phases "imgforge-cold-$i")"
	echo "  imgforge's steps (s): $(steps "imgforge-cold-$i")"
	if [ -n "${BENCH_IMGF_B:-}" ]; then # another imgforge binary, cold too: an A/B of two
		BC[i]=$(IMGF_BIN=$BENCH_IMGF_B timed "imgforge-b-cold-$i" imgf "$TMP/cache-b-$i" "$TMP/out-b-cold-$i")
		echo "  imgforge B ($BENCH_IMGF_B): ${BC[i]} s, A/B $(ratio "${IC[i]}" "${BC[i]}"); phases (s): $(phases "imgforge-b-cold-$i")"
	fi
done
echo "== warm: imgforge (the cache again, --no-cache: downloads cached, every step run) then kind, $PAIRS pairs"
for i in $(seq 1 "$PAIRS"); do
	IW[i]=$(timed "imgforge-warm-$i" imgf "$TMP/cache-$i" "$TMP/out-warm-$i" --no-cache)
	KW[i]=$(timed "kind-warm-$i" kindb)
	RW[i]=$(ratio "${KW[i]}" "${IW[i]}")
	echo "pair $i: imgforge ${IW[i]} s, kind ${KW[i]} s, ratio kind/imgforge ${RW[i]} (load $(load))"
	echo "  imgforge's phases (s): $(phases "imgforge-warm-$i")"
done
echo "== warm: imgforge with every step cached (kind has no such cache)"
for i in $(seq 1 "$PAIRS"); do
	IS[i]=$(timed "imgforge-steps-$i" imgf "$TMP/cache-$i" "$TMP/out-steps-$i")
	echo "run $i: imgforge ${IS[i]} s"
done

# What the two images hold.
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }
echo "== images: imgforge $(size "$TAG_IMGF"), kind $(size "$TAG_KIND")"
echo "kind's docker calls the bench changed: $(sort "$TMP/wrapper.log" | uniq -c | sed 's/^ *//' | paste -sd';' -)"
mi() { printf '%.2f' "$(printf '%s\n' "$@" | median)"; }
echo "== summary (medians of $PAIRS; load now $(load))"
printf 'cold: imgforge %s s, kind %s s, kind/imgforge %s (pairs: %s)\n' \
	"$(mi "${IC[@]}")" "$(mi "${KC[@]}")" "$(mi "${RC[@]}")" "${RC[*]}"
printf 'warm: imgforge %s s, kind %s s, kind/imgforge %s (pairs: %s)\n' \
	"$(mi "${IW[@]}")" "$(mi "${KW[@]}")" "$(mi "${RW[@]}")" "${RW[*]}"
printf 'warm, every step cached: imgforge %s s (kind/imgforge %s)\n' \
	"$(mi "${IS[@]}")" "$(ratio "$(mi "${KW[@]}")" "$(mi "${IS[@]}")")"
