#!/usr/bin/env bash
# Cold kind-node build: imgforge against a plain shell script doing the same steps with the
# docker CLI (run, cp, exec, commit), the way kind's build scripts do, on the same inputs
# (the loopback fixture mirror and the debootstrap base image). Prints both times and the ratio.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/bench-kind-node.XXXXXX)
trap 'fixtures_stop "$FIX" >/dev/null 2>&1 || true; docker rm -f bench-kind-node-sh >/dev/null 2>&1 || true; docker rmi -f imgforge-bench/kind-node:imgforge imgforge-bench/kind-node:shell >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
# The harness's helpers, without its test bookkeeping.
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
. "$TOP/tests/lib/fixtures.sh"
. "$TOP/tests/lib/base-image.sh"
FIX=$TEST_CACHE/fixtures
# The fixture helpers are not written for `set -e`; calling them from `if` suspends it.
if ! fixtures_build "$FIX" >/dev/null || ! fixtures_serve "$FIX" >/dev/null; then
	echo "bench: fixtures failed" >&2
	exit 1
fi
if ! BASE=$(base_image_ensure); then
	echo "bench: base image failed" >&2
	exit 1
fi
make -s -C "$TOP"
V() { jq -r ".variables.$1" "$FIX/vars.json"; }

now() { date +%s.%N; }

echo "== imgforge (cold cache)"
t0=$(now)
IMGFORGE_CACHE_DIR=$TMP/cache "$TOP/imgforge" build --only kind-node --var-file "$FIX/vars.json" \
	--var docker_base_image="$BASE" --var kind_node_image=imgforge-bench/kind-node:imgforge \
	--var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" --output-dir "$TMP/out" \
	"$TOP/config/debian-12.json" >"$TMP/imgforge.log" 2>&1
t1=$(now)

echo "== shell script with the docker CLI"
t2=$(now)
(
	set -e
	cd "$TMP"
	dl() { curl -fsSL -o "$2" "$1"; }
	src=$(V kubernetes_http_source)/$(V kubernetes_semver)/bin/linux/amd64
	dl "$(V containerd_url)" containerd.tgz
	dl "$(V runc_url)" runc
	dl "$(V kubernetes_cni_url)" cni.tgz
	dl "$(V crictl_url)" crictl.tgz
	for b in kubeadm kubelet kubectl kube-apiserver.tar kube-controller-manager.tar kube-scheduler.tar kube-proxy.tar; do
		dl "$src/$b" "$b"
	done
	c=bench-kind-node-sh
	docker run -d --name $c --network host --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
		--entrypoint sleep "$BASE" infinity >/dev/null
	docker exec $c sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends jq && apt-get clean && rm -rf /var/lib/apt/lists/*" >/dev/null
	docker cp containerd.tgz $c:/tmp/ && docker exec $c tar -C /usr/local -xzf /tmp/containerd.tgz
	docker cp runc $c:/usr/local/sbin/runc && docker exec $c chmod 755 /usr/local/sbin/runc
	docker exec $c mkdir -p /opt/cni/bin && docker cp cni.tgz $c:/tmp/ && docker exec $c tar -C /opt/cni/bin -xzf /tmp/cni.tgz
	docker cp crictl.tgz $c:/tmp/ && docker exec $c tar -C /usr/local/bin -xzf /tmp/crictl.tgz
	for b in kubeadm kubelet kubectl; do docker cp $b $c:/usr/bin/$b; docker exec $c chmod 755 /usr/bin/$b; done
	docker exec $c mkdir -p /kind/images
	for t in kube-*.tar; do docker cp "$t" $c:/kind/images/; done
	docker exec $c sh -c '
		containerd >/tmp/containerd.log 2>&1 &
		pid=$!
		until ctr version >/dev/null 2>&1; do sleep 0.1; done
		for t in /kind/images/*.tar; do ctr -n k8s.io images import --no-unpack --all-platforms "$t"; done
		for i in '"${FIXTURE_REGISTRY_IMAGES[*]}"'; do
			ctr -n k8s.io images pull --plain-http "127.0.0.1:'"$FIXTURE_REGISTRY_PORT"'/$i" >/dev/null
		done
		kill $pid; wait $pid; rm -rf /kind/images' >/dev/null
	echo v1.31.2 | docker exec -i $c sh -c 'cat > /kind/version'
	docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
		--change 'ENV container=docker' $c imgforge-bench/kind-node:shell >/dev/null
	docker rm -f $c >/dev/null
) >"$TMP/shell.log" 2>&1 || { cat "$TMP/shell.log"; exit 1; }
t3=$(now)

imgf=$(echo "$t1 - $t0" | bc)
sh=$(echo "$t3 - $t2" | bc)
printf 'imgforge cold build: %.1f s\nshell+docker CLI:    %.1f s\nratio (shell/imgforge): %.2f\n' \
	"$imgf" "$sh" "$(echo "$sh / $imgf" | bc -l)"
