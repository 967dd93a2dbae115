#!/usr/bin/env bash
# Regenerates every number in docs/benchmarks.md: the pure-core micro benchmark (render + plan of
# one Broker + MeshSync pair), then operator-bench: ours (each apply strategy) and the real Go
# Meshery Operator on the real control plane (N = 1, 10, 100 pairs), and ours on kube-sim
# (N = 10, 100, 1000, 5000), each with a 5-minute steady state and the reaction test. Release
# builds; the control plane and the Go operator come from test-cluster/build.sh (cached). Results,
# tables and operator logs go to $CARGO_TARGET_DIR/bench (default target/bench).
#
#   scripts/bench.sh                                   # everything (about 2.5 hours on 2 cores)
#   REAL_PAIRS=1,10 SIM_PAIRS= scripts/bench.sh        # real control plane only, fewer sizes
#   OPERATORS=diff,go STEADY_SECONDS=60 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench"
mkdir -p "$out"
rm -f "$out/results.jsonl"

cargo build --release -p meshery-operator -p operator-bench
bin=$(test-cluster/build.sh | tail -n 1)
export PATH="$bin:$PATH"

{
  echo "## Machine"
  echo
  echo '```'
  echo "nproc: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo
  free -h
  uname -srm
  echo "$(kube-apiserver --version) (kube-apiserver), $("$bin/etcd" --version | head -n 1)"
  echo "Go Meshery Operator: $(grep -o 'GO_OPERATOR_VERSION=v[0-9.]*' test-cluster/build.sh | cut -d= -f2)"
  echo "meshery-operator: $(git rev-parse --short HEAD)"
  echo '```'
} | tee "$out/machine.md"

echo "## render + plan" | tee "$out/render_plan.md"
cargo bench -p meshery-operator --bench render_plan | tee -a "$out/render_plan.md"

echo "## operator-bench" | tee "$out/operator_bench.md"
# ${VAR-default}: an empty REAL_PAIRS or SIM_PAIRS means no runs on that substrate.
real_pairs="${REAL_PAIRS-1,10,100}"
sim_pairs="${SIM_PAIRS-10,100,1000,5000}"
"$target/release/operator-bench" \
  --operator-bin "$target/release/meshery-operator" \
  --go-operator-bin "$bin/meshery-operator-go" \
  --crds crds \
  --out-dir "$out" \
  --real-pairs ${real_pairs:+"$real_pairs"} \
  --sim-pairs ${sim_pairs:+"$sim_pairs"} \
  --operators "${OPERATORS:-diff,always-apply,dry-run-diff,go}" \
  --steady-seconds "${STEADY_SECONDS:-300}" \
  --resync-seconds "${RESYNC_SECONDS:-20}" | tee -a "$out/operator_bench.md"
