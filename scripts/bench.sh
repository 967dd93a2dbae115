#!/usr/bin/env bash
# Regenerates every number in docs/benchmarks.md: the pure-core micro benchmark (render + plan of
# one Broker + MeshSync pair) and the operator benchmark against kube-sim (N = 10, 100, 1000 pairs
# × the three apply strategies). Release builds; results and operator logs go to
# $CARGO_TARGET_DIR/bench (default target/bench).
#
#   scripts/bench.sh                         # everything (about 15 minutes on 2 cores, plus the build)
#   PAIRS=10,100 scripts/bench.sh            # fewer sizes
#   STRATEGIES=diff STEADY_SECONDS=30 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench"
mkdir -p "$out"
rm -f "$out/results.jsonl"

cargo build --release -p meshery-operator -p kube-sim

{
  echo "## Machine"
  echo
  echo '```'
  echo "nproc: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo
  free -h
  uname -srm
  echo '```'
} | tee "$out/machine.md"

echo "## render + plan" | tee "$out/render_plan.md"
cargo bench -p meshery-operator --bench render_plan | tee -a "$out/render_plan.md"

echo "## operator-bench" | tee "$out/operator_bench.md"
"$target/release/operator-bench" \
  --operator-bin "$target/release/meshery-operator" \
  --crds crds \
  --out-dir "$out" \
  --pairs "${PAIRS:-10,100,1000}" \
  --strategies "${STRATEGIES:-diff,always-apply,dry-run-diff}" \
  --steady-seconds "${STEADY_SECONDS:-60}" \
  --resync-seconds "${RESYNC_SECONDS:-20}" | tee -a "$out/operator_bench.md"
