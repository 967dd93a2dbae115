#!/usr/bin/env bash
# Regenerates every number in docs/benchmarks.md, in three operator-bench runs and the pure-core
# micro benchmark (render + plan of one Broker + MeshSync pair):
#   1. the real control plane, N = 1, 10, 100 pairs: ours (`diff`) and the real Go Meshery
#      Operator, each with a 5-minute steady state;
#   2. the real control plane, N = 1, 10, 100: our two peer strategies (`always-apply`,
#      `dry-run-diff`), 2-minute steady state (six resyncs per CR: their cost per reconcile);
#   3. kube-sim, N = 10, 100, 1000: our three strategies, 1-minute steady state;
#   4. kube-sim, N = 5000, the same, with ClusterIP Brokers: a LoadBalancer Service takes two
#      NodePorts, and a cluster's NodePort range holds those of 1384 Brokers.
# Every run ends with the reaction test (a hand scale and a hand delete). Release builds; the
# control plane and the Go operator come from test-cluster/build.sh (cached). Results (one JSON
# line per run), the tables and every operator's log go to $CARGO_TARGET_DIR/bench (default
# target/bench); tables.md holds the tables of all four runs.
#
#   scripts/bench.sh                                   # everything (about 3 hours on 2 cores)
#   REAL_PAIRS=1,10 SIM_PAIRS=10 LARGE_PAIRS= scripts/bench.sh   # fewer sizes
#   STEADY_SECONDS=60 scripts/bench.sh                 # a shorter steady state for ours and Go's
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench"
rm -rf "$out"
mkdir -p "$out"

cargo build --release --locked -p meshery-operator -p operator-bench
bin=$(test-cluster/build.sh | tail -n 1)
export PATH="$bin:$PATH"

{
  echo "## Machine"
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
cargo bench --locked -p meshery-operator --bench render_plan | tee -a "$out/render_plan.md"

bench() {
  local name=$1
  shift
  "$target/release/operator-bench" \
    --operator-bin "$target/release/meshery-operator" \
    --go-operator-bin "$bin/meshery-operator-go" \
    --crds crds \
    --resync-seconds "${RESYNC_SECONDS:-20}" \
    --out-dir "$out/$name" "$@" | tee "$out/$name/stdout.md"
}
mkdir -p "$out/real" "$out/real-peers" "$out/sim" "$out/sim-large"
real_pairs="${REAL_PAIRS:-1,10,100}"
bench real --real-pairs "$real_pairs" --sim-pairs --operators diff,go \
  --steady-seconds "${STEADY_SECONDS:-300}"
bench real-peers --real-pairs "$real_pairs" --sim-pairs --operators always-apply,dry-run-diff \
  --steady-seconds 120
bench sim --real-pairs --sim-pairs "${SIM_PAIRS:-10,100,1000}" \
  --operators diff,always-apply,dry-run-diff --steady-seconds 60 --timeout-seconds 1500
large_pairs="${LARGE_PAIRS-5000}"
if [[ -n "$large_pairs" ]]; then
  bench sim-large --real-pairs --sim-pairs "$large_pairs" --broker-service-type ClusterIP \
    --operators diff,always-apply,dry-run-diff --steady-seconds 60 --timeout-seconds 1500
fi
reports=()
for run in real real-peers sim sim-large; do
  [[ -f "$out/$run/results.jsonl" ]] && reports+=("$out/$run/results.jsonl")
done
"$target/release/operator-bench" --report "${reports[@]}" | tee "$out/tables.md"
