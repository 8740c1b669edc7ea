#!/usr/bin/env bash
# needs: docker go
# Real Kubernetes end to end: the shipped config/debian-13.json (kind node image, the default
# Kubernetes, containerd, runc, CNI plugins and crictl) with the release layout (per-binary URLs
# and image tars) from the from-source mirror, booted by kind v0.33.0: one node, then a control
# plane and a worker. See tests/lib/kind-e2e.sh for what is built and checked.
. "$(dirname "$0")/../lib/harness.sh"
E2E_WHAT="kind cluster from an imgforge node image"
E2E_BUILD_WHAT=" from the from-source mirror"
E2E_VARS=()
. "$TOP/tests/lib/kind-e2e.sh"
test_done
