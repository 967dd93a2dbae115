#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (as root; safe to re-run) and runs every
# test: first the whole workspace against kube-sim, then the end-to-end suites and kube-sim's
# conformance tests against a real control plane (test-cluster/, built from the official Go modules).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v openssl >/dev/null || missing+=(openssl)
# The process node agent (tests/workloads_real.rs): network namespaces, veths and a bridge.
command -v ip >/dev/null || missing+=(iproute2)
# Its NetworkPolicy enforcement: an nftables table in each isolated pod's network namespace.
command -v nft >/dev/null || missing+=(nftables)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Helm's own Go SDK (v4) for Python, used by the chart tests (tests/chart_*.rs via scripts/helm-render.py).
if ! .venv/bin/python -c 'import helm_python' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check helm-python-sdk
fi

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and helm, built from their
# Go modules into ~/.cache/meshery-operator-test-cluster (a warm cache builds nothing). Their kubectl
# and helm come first on PATH, so every test uses the versions the control plane is.
bin=$(test-cluster/build.sh | tail -n 1)
export PATH="$bin:$PATH"

cargo test --workspace --locked

# The same suites against the real control plane: the operator runs as the chart's ServiceAccount.
state=$(mktemp -d)
scripts/control-plane.sh --kubeconfig "$state/kubeconfig" --audit-log "$state/audit.log" \
    >"$state/control-plane.log" 2>&1 &
control_plane=$!
trap 'kill "$control_plane" 2>/dev/null; wait "$control_plane" 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 1 600); do
    [[ -f "$state/kubeconfig" ]] && break
    kill -0 "$control_plane" 2>/dev/null || { cat "$state/control-plane.log" >&2; exit 1; }
    sleep 0.5
done
[[ -f "$state/kubeconfig" ]] || { cat "$state/control-plane.log" >&2; echo "the control plane did not start" >&2; exit 1; }
cat "$state/control-plane.log"

# No LoadBalancer implementation and fast rollouts: skip the external-address parts at once, and
# stretch waits less than for a cloud cluster.
MESHERY_E2E_KUBECONFIG="$state/kubeconfig" MESHERY_E2E_AUDIT_LOG="$state/audit.log" \
MESHERY_E2E_LOAD_BALANCER=none MESHERY_E2E_TIMEOUT_SCALE=3 \
    cargo test --locked \
    --test controller_broker --test controller_meshsync --test controller_ops \
    --test plan_cluster --test chart_install --test chart_rbac --test user_commands --test doctor \
    --test migration
KUBE_SIM_REFERENCE_KUBECONFIG="$state/kubeconfig" \
    cargo test --locked -p kube-sim --test kubectl --test client
