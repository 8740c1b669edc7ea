# shellcheck shell=bash
# The real-Kubernetes end-to-end body shared by t1500 (the shipped config/debian-13.json, release
# layout), t1520 (debian-12 from a local build) and `make check-versions` (every supported minor):
# a kind node image that imgforge builds from the from-source mirror (hack/kube-from-source.sh:
# real kubeadm, kubelet, kubectl, control-plane images, etcd, CoreDNS, pause, crictl, containerd,
# runc, the CNI plugins, local-path-provisioner, flannel, all built at the shipped versions)
# boots real kind clusters with the current kind (v0.33.0).
#
# What differs from the shipped config is checked, not assumed: only the variables that say
# where sources come from (the mirror's var file: URLs and checksums of the binaries, the
# registry mirrors), the base image (debootstrap: no registry here), the output tag, and kind's
# default CNI (flannel, which the mirror has; kind's kindnetd cannot be built here, so its
# manifest is checked by a server-side dry run). Everything else, versions included, is the
# shipped value.
#
# kind runs through tests/lib/kind-docker (this engine refuses --privileged). The clusters use
# the image's default CNI: `kind create cluster` with no CNI options.
#
# Set before sourcing: E2E_WHAT (what a skip names), E2E_BUILD_WHAT (the build test's name
# suffix), E2E_VARS (an array of more build arguments), E2E_OVERRIDES (more variable names the
# test may change besides the source ones); optionally E2E_CONFIG (default config/debian-13.json),
# E2E_SUITE (the debootstrap base's suite, default trixie), E2E_WORKERS_TOO (0 = the one-node
# cluster only), and the hooks e2e_before_build and e2e_after_create.
. "$TOP/tests/lib/kube.sh"
TEST_CLAIM=1
docker_up "$E2E_WHAT"
fixtures_up "$E2E_WHAT"
require_cmd go || {
	test_skip "$E2E_WHAT" "no Go toolchain to build Kubernetes"
	test_done
}
kube_up
E2E_CONFIG=${E2E_CONFIG:-$TOP/config/debian-13.json}
E2E_BASE=$(base_image_ensure "" "${E2E_SUITE:-trixie}") || die "could not make the ${E2E_SUITE:-trixie} base image"

T=${TEST_NAME%%-*}
TAG=imgforge-test/kind-node:$T-$$
WEB=imgforge-test/web:$T-$$
C1=imgf-$T-a-$$
C2=imgf-$T-b-$$
export IMGFORGE_CACHE_DIR=$TMP/cache
export KUBECONFIG=$TMP/kubeconfig
at_exit "kind_cmd delete cluster --name $C1"
at_exit "kind_cmd delete cluster --name $C2"
at_exit "docker rmi -f $TAG $WEB"
k() { "$KUBECTL" "$@"; }

# Manifests the mirror registry served to anything but an imgforge build (its access log ends
# with the user agent): the registry is shared with scripts of the other lane, whose builds pull
# through it (user agent imgforge/VERSION) while this one's cluster runs.
registry_pulls() {
	grep 'GET /v2/[^ ]*/manifests/' "$KUBE_DIR/registry.log" | grep -vc '"imgforge/[^"]*"$' || true
}

# Hooks for the script that sources this: E2E_VARS (more build arguments), e2e_before_build
# (runs before the build), e2e_after_create (more tests on the first cluster, named $C1).
declare -F e2e_before_build >/dev/null || e2e_before_build() { :; }
declare -F e2e_after_create >/dev/null || e2e_after_create() { :; }
e2e_before_build

E2E_ARGS=(--var-file "$KUBE_BUILD_VARS" --var docker_base_image="$E2E_BASE"
	--var kind_node_image="$TAG" "${E2E_VARS[@]}")

# The variables the test may change: where sources come from, the base, the tag, the CNI.
E2E_ALLOWED="kubernetes_http_source containerd_url containerd_checksum runc_url runc_checksum
	kubernetes_cni_url kubernetes_cni_checksum crictl_url crictl_checksum registry_mirrors
	kubernetes_tarball docker_base_image kind_node_image kind_cni kind_cni_images flannel_cni_plugin_image
	${E2E_OVERRIDES:-}"
test_expect_success "the build differs from the shipped $(basename "$E2E_CONFIG") only in source variables" '
	"$IMGF" inspect --json --only kind-node "$E2E_CONFIG" >"$TMP/shipped.json" &&
	"$IMGF" inspect --json --only kind-node "${E2E_ARGS[@]}" "$E2E_CONFIG" >"$TMP/test.json" &&
	jq -r -s ".[0].variables as \$a | .[1].variables as \$b |
		(\$a + \$b) | keys[] | select(\$a[.].value != \$b[.].value)" \
		"$TMP/shipped.json" "$TMP/test.json" >"$TMP/changed" &&
	echo "changed: $(tr "\n" " " <"$TMP/changed")" &&
	for v in $(cat "$TMP/changed"); do
		echo " $E2E_ALLOWED " | tr -s " \t\n" " " | grep -qF " $v " ||
			{ echo "the test changes $v, which is not a source variable"; exit 1; }
	done
'

test_expect_success "imgforge builds the kind node image$E2E_BUILD_WHAT" '
	t0=$SECONDS
	"$IMGF" build --only kind-node "${E2E_ARGS[@]}" --output-dir "$TMP/output" "$E2E_CONFIG" \
		>"$TMP/build.log" 2>&1 || { tail -n 60 "$TMP/build.log"; exit 1; }
	echo "$((SECONDS - t0))" >"$TMP/took.build" && echo "build: $(cat "$TMP/took.build") s"
	grep -F "through $KUBE_REG/registry.k8s.io" "$TMP/build.log"
'

test_expect_success "the node image holds the real binaries at the mirror version" '
	docker run --rm --entrypoint /bin/sh "$TAG" -c "
		set -e
		test \"\$(kubeadm version -o short)\" = $KUBE_VERSION
		kubelet --version | grep -Fx \"Kubernetes $KUBE_VERSION\"
		kubectl version --client | grep -F \"Client Version: $KUBE_VERSION\"
		crictl --version | grep -F ${CRICTL_VERSION#v}
		containerd --version | grep -F \" $CONTAINERD_VERSION \"
		ctr --version | grep -F \" $CONTAINERD_VERSION\"
		test -x /usr/local/bin/containerd-shim-runc-v2
		runc --version | grep -x \"runc version ${RUNC_VERSION#v}\"
		runc --version | grep -q \"^libseccomp: \"
		test -x /opt/cni/bin/ptp && test -x /opt/cni/bin/portmap
		grep -q \"restrict_oom_score_adj = false\" /etc/containerd/config.toml
		grep -q \"sandbox_image = .registry.k8s.io/pause:$PAUSE_TAG.\" /etc/containerd/config.toml
		grep -q \"would you kindly template this file\" /kind/manifests/default-cni.yaml
	" >"$TMP/bins.log" 2>&1 || { cat "$TMP/bins.log"; exit 1; }
'

# A small web image to load with `kind load docker-image`: Debian's static busybox. (Its wget
# crashes with -T, so timeouts come from busybox timeout.)
test_expect_success "a local image to load: busybox httpd" '
	mkdir -p "$TMP/web/bin" "$TMP/web/www" &&
	cp /bin/busybox "$TMP/web/bin/busybox" &&
	ln -s busybox "$TMP/web/bin/sh" &&
	echo "hello from imgforge" >"$TMP/web/www/index.html" &&
	tar -C "$TMP/web" -c . | docker import --change "CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]" - "$WEB" >/dev/null
'

# kind create cluster NAME with N workers and no CNI options (the image's default CNI);
# waits for every node Ready.
create_cluster() {
	local name=$1 workers=$2 t0=$SECONDS
	kube_kind_config "$workers" >"$TMP/$name.yaml"
	kind_cmd create cluster --name "$name" --image "$TAG" --config "$TMP/$name.yaml" \
		--kubeconfig "$KUBECONFIG" --wait 0s >"$TMP/$name-create.log" 2>&1 ||
		{ cat "$TMP/$name-create.log"; return 1; }
	k wait --for=condition=Ready nodes --all --timeout=300s
	echo "$((SECONDS - t0))" >"$TMP/took.ready-$name"
	echo "cluster $name: nodes Ready $((SECONDS - t0)) s after kind create cluster"
}

pulls_before=$(registry_pulls)
t_create=$SECONDS

test_expect_success "kind create cluster with the imgforge image: the node is Ready" '
	create_cluster "$C1" 0
'

test_expect_success "preloaded images keep canonical names, tagged and pinned in k8s.io" '
	docker exec "$C1-control-plane" ctr -n k8s.io images ls >"$TMP/images" &&
	"$KUBE_DIR/release/$KUBE_VERSION/bin/linux/amd64/kubeadm" config images list \
		--kubernetes-version "$KUBE_VERSION" >"$TMP/want" &&
	for img in $(cat "$TMP/want") docker.io/kindest/local-path-provisioner:$LOCAL_PATH_TAG \
		docker.io/kindest/local-path-helper:$LOCAL_PATH_HELPER_TAG; do
		grep "^$img " "$TMP/images" | grep -q io.cri-containerd.pinned=pinned ||
			{ cat "$TMP/images"; echo "missing or unpinned: $img"; exit 1; }
	done &&
	! grep -F "$KUBE_REG" "$TMP/images"
'

test_expect_success "every kube-system pod runs and is Ready (control plane, etcd, CoreDNS, kube-proxy, CNI, storage)" '
	kube_pods_ready &&
	echo "$((SECONDS - t_create))" >"$TMP/took.pods" &&
	k get pods -A --no-headers >"$TMP/pods" &&
	for p in etcd- kube-apiserver- kube-controller-manager- kube-scheduler- kube-proxy- coredns- kube-flannel-ds-; do
		grep -q "^kube-system  *$p" "$TMP/pods" || { cat "$TMP/pods"; echo "no $p pod"; exit 1; }
	done &&
	grep -q "^local-path-storage  *local-path-provisioner-" "$TMP/pods"
'

e2e_after_create

test_expect_success "a Deployment of an image loaded with kind load docker-image becomes Available" '
	kind_cmd load docker-image "$WEB" --name "$C1" >"$TMP/load.log" 2>&1 || { cat "$TMP/load.log"; exit 1; }
	k create deployment web --image="$WEB" --port=8080 &&
	k patch deployment web -p "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"web\",\"imagePullPolicy\":\"Never\"}]}}}}" &&
	k wait --for=condition=Available deployment/web --timeout=180s
'

test_expect_success "a pod resolves a Service name through CoreDNS and reaches its ClusterIP" '
	k expose deployment web --port=80 --target-port=8080 &&
	ip=$(k get service web -o jsonpath="{.spec.clusterIP}") &&
	k run client --image="$WEB" --image-pull-policy=Never --restart=Never --command -- \
		/bin/busybox sh -c "sleep 3600" &&
	k wait --for=condition=Ready pod/client --timeout=120s &&
	for i in $(seq 1 30); do
		out=$(k exec client -- /bin/busybox nslookup web.default.svc.cluster.local 2>&1) &&
			echo "$out" | grep -qF "$ip" && break
		sleep 2
	done &&
	echo "$out" && echo "$out" | grep -qF "$ip" &&
	k exec client -- /bin/busybox timeout 20 /bin/busybox wget -q -O - "http://web.default.svc.cluster.local/" >"$TMP/page" &&
	grep -qx "hello from imgforge" "$TMP/page" &&
	k exec client -- /bin/busybox timeout 20 /bin/busybox wget -q -O - "http://$ip/" | grep -qx "hello from imgforge"
'

test_expect_success "a PVC binds through the default StorageClass and a pod writes to it" '
	k apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 16Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: writer
spec:
  restartPolicy: Never
  containers:
    - name: writer
      image: $WEB
      imagePullPolicy: Never
      command: [/bin/busybox, sh, -c, "echo stored > /data/file && /bin/busybox cat /data/file"]
      volumeMounts:
        - name: data
          mountPath: /data
  volumes:
    - name: data
      persistentVolumeClaim:
        claimName: data
EOF
	k wait --for=jsonpath="{.status.phase}"=Bound pvc/data --timeout=180s &&
	k wait --for=jsonpath="{.status.phase}"=Succeeded pod/writer --timeout=120s &&
	test "$(k logs writer)" = stored &&
	test "$(k get pvc data -o jsonpath="{.spec.storageClassName}")" = standard
'

# kindnetd, the shipped default CNI, cannot be built here: its manifest (imgforge's template
# with the shipped kindnetd_image, the one variable it has) is checked by the API server.
test_expect_success "kind's kindnetd manifest (the shipped default CNI) and the storage manifest pass a server-side dry run" '
	kindnetd=$(jq -r .variables.kindnetd_image.value "$TMP/shipped.json") &&
	sed "s#{{ kindnetd_image }}#$kindnetd#" "$TOP/provisioners/kind/default-cni.yaml" >"$TMP/kindnetd.yaml" &&
	! grep -F "{{" "$TMP/kindnetd.yaml" &&
	docker exec "$C1-control-plane" cat /kind/manifests/default-storage.yaml >"$TMP/default-storage.yaml" &&
	for m in kindnetd default-storage; do
		k apply --dry-run=server -f "$TMP/$m.yaml" >"$TMP/$m.out" ||
			{ cat "$TMP/$m.out"; exit 1; }
		cat "$TMP/$m.out"
	done
'

test_expect_success "nothing was pulled: no PullImage in containerd, no manifest asked of the mirror" '
	docker exec "$C1-control-plane" journalctl -u containerd --no-pager >"$TMP/containerd.log" &&
	grep -q "starting containerd" "$TMP/containerd.log" &&
	! grep "PullImage" "$TMP/containerd.log" &&
	test "$(registry_pulls)" = "$pulls_before"
'

# The volumes kind gives a cluster's nodes (anonymous ones, for /var: they carry no label).
node_volumes() {
	docker ps -aq --filter label=io.x-k8s.kind.cluster="$1" |
		xargs -r docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}'
}

test_expect_success "kind delete cluster removes the nodes and their volumes" '
	kind_cmd get clusters | grep -qx "$C1" &&
	vols=$(node_volumes "$C1") && test -n "$vols" &&
	kind_cmd delete cluster --name "$C1" >/dev/null 2>&1 &&
	test -z "$(docker ps -aq --filter label=io.x-k8s.kind.cluster=$C1)" &&
	for v in $vols; do ! docker volume inspect "$v" >/dev/null 2>&1 || { echo "left: $v"; exit 1; }; done &&
	! docker network inspect kind --format "{{range .Containers}}{{.Name}} {{end}}" 2>/dev/null | grep -F "$C1"
'

if [ "${E2E_WORKERS_TOO:-1}" != 0 ]; then
test_expect_success "two nodes (kubeadm join): both Ready, a pod on the worker reaches one on the control plane" '
	create_cluster "$C2" 1 &&
	kube_pods_ready &&
	kind_cmd load docker-image "$WEB" --name "$C2" >/dev/null 2>&1 &&
	for n in control-plane worker; do
		node=$C2-$n
		k apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: on-$n
spec:
  nodeName: $node
  tolerations: [{operator: Exists}]
  containers:
    - name: web
      image: $WEB
      imagePullPolicy: Never
EOF
	done &&
	k wait --for=condition=Ready pod/on-control-plane pod/on-worker --timeout=180s &&
	ip=$(k get pod on-control-plane -o jsonpath="{.status.podIP}") &&
	test "$(k get pod on-worker -o jsonpath="{.spec.nodeName}")" = "$C2-worker" &&
	k exec on-worker -- /bin/busybox timeout 20 /bin/busybox wget -q -O - "http://$ip:8080/" | grep -qx "hello from imgforge"
'

test_expect_success "kind delete cluster leaves no container, volume or attached network endpoint" '
	kind_cmd get clusters | grep -qx "$C2" &&
	vols=$(node_volumes "$C2") && test "$(echo $vols | wc -w)" -ge 2 &&
	kind_cmd delete cluster --name "$C2" >/dev/null 2>&1 &&
	test -z "$(docker ps -aq --filter label=io.x-k8s.kind.cluster=$C2)" &&
	for v in $vols; do ! docker volume inspect "$v" >/dev/null 2>&1 || { echo "left: $v"; exit 1; }; done &&
	test -z "$(docker network inspect kind --format "{{range .Containers}}{{.Name}} {{end}}" 2>/dev/null | tr -d " ")"
'
fi

# One row for `make check-versions`' table: version, build s, node Ready s, all pods Ready s.
if [ -n "${E2E_RESULTS:-}" ]; then
	printf '%s %s %s %s\n' "$KUBE_VERSION" "$(cat "$TMP/took.build" 2>/dev/null || echo -)" \
		"$(cat "$TMP/took.ready-$C1" 2>/dev/null || echo -)" \
		"$(cat "$TMP/took.pods" 2>/dev/null || echo -)" >>"$E2E_RESULTS"
fi
