#!/usr/bin/env bash
# Starts the real test cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a
# node agent) in the foreground: builds any missing Go binary first (test-cluster/build.sh, cached
# in ~/.cache/meshery-operator-test-cluster), writes the admin kubeconfig to --kubeconfig FILE once
# /readyz is ok, and stops every process and removes its state on SIGTERM or SIGINT.
#   scripts/control-plane.sh --kubeconfig /tmp/test-cluster.kubeconfig [--audit-log FILE] [--run-pods]
# --run-pods (root): the node runs the pods whose images it knows (nats, meshery/meshsync:v1.0.0) as
# processes, each in a network namespace whose address this machine reaches (README: Real pods).
set -euo pipefail
cd "$(dirname "$0")/.."
test-cluster/build.sh >/dev/null
# cargo run replaces itself with the launcher, so SIGTERM and SIGINT reach it directly.
exec cargo run --quiet --locked -p test-cluster --bin control-plane -- "$@"
