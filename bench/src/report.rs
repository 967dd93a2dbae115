//! One run's figures, and the Markdown tables docs/benchmarks.md is made of.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::substrate::{Measured, SubstrateKind};
use crate::workload::Restored;

/// One run: one operator, one substrate, N pairs.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub substrate: SubstrateKind,
    pub operator: String,
    pub pairs: usize,
    /// From the process's start to its first `/readyz` 200.
    pub readyz_seconds: f64,
    pub all_ready: bool,
    pub ready_crs: usize,
    /// First create to last Ready.
    pub total_seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// From just before the first create until every CR was Ready, plus a settle.
    pub convergence: Measured,
    pub convergence_cpu_seconds: f64,
    pub steady: Measured,
    pub steady_reconciles: Option<u64>,
    pub steady_cpu_seconds: f64,
    pub peak_rss_mib: f64,
    pub reaction: Option<Reaction>,
    /// `meshery-operator plan -f` of one pair: how many objects it renders.
    pub rendered_objects_per_pair: Option<u64>,
    /// The machine's 1-minute load average at the start and the end of the run.
    pub load_average: (f64, f64),
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// The reaction test on pair 0: each hand edit, how long until undone, and what the operator sent meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct Reaction {
    pub scaled: Restored,
    pub scaled_window: Measured,
    pub deleted: Restored,
    pub deleted_window: Measured,
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn joined(counts: &BTreeMap<String, u64>, limit: usize) -> String {
    let mut sorted: Vec<(&String, &u64)> = counts.iter().filter(|(_, c)| **c > 0).collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = sorted
        .iter()
        .take(limit)
        .map(|(k, c)| format!("{k} {c}"))
        .collect();
    match (shown.is_empty(), sorted.len() > limit) {
        (true, _) => "-".to_string(),
        (false, true) => format!("{}, …", shown.join(", ")),
        (false, false) => shown.join(", "),
    }
}

fn per(count: u64, n: usize) -> String {
    format!("{:.2}", count as f64 / n.max(1) as f64)
}

fn seconds(restored: &Restored) -> String {
    restored
        .seconds
        .map_or_else(|| "not restored".to_string(), |s| format!("{s:.2}"))
}

fn etcd(measured: &Measured) -> (String, String) {
    match &measured.etcd {
        Some(etcd) => (
            etcd.benchmark_total().to_string(),
            format!("{} ({})", etcd.other_total(), joined(&etcd.other, 3)),
        ),
        None => ("n/a".to_string(), "n/a".to_string()),
    }
}

/// The convergence, steady-state and reaction tables.
pub fn markdown(results: &[RunResult]) -> String {
    let mut out = String::new();
    out.push_str("\n### Convergence\n\n");
    out.push_str("| substrate | operator | N | /readyz s | all Ready | total s | p50 ms | p99 ms | child writes / pair | status writes / Broker | status writes / MeshSync | CR writes | events | dry-run applies | requests by verb | operator CPU s |\n");
    out.push_str("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for r in results {
        let w = &r.convergence.traffic.writes;
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} | {:.1} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.substrate.label(),
            r.operator,
            r.pairs,
            r.readyz_seconds,
            if r.all_ready {
                "yes".to_string()
            } else {
                format!("no ({}/{})", r.ready_crs, 2 * r.pairs)
            },
            r.total_seconds,
            r.p50_ms,
            r.p99_ms,
            per(w.children, r.pairs),
            per(w.status_broker, r.pairs),
            per(w.status_meshsync, r.pairs),
            w.custom_resources,
            w.events,
            w.dry_runs,
            joined(&r.convergence.traffic.by_verb(), 8),
            r.convergence_cpu_seconds,
        ));
    }
    out.push_str("\n### Steady state\n\n");
    out.push_str("| substrate | operator | N | window s | reconciles | API writes | etcd writes on the benchmark's objects | their writers | etcd writes, rest of the cluster | requests by verb | requests by resource | operator CPU s | peak RSS MiB | load avg |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|---|\n");
    for r in results {
        let (bench_etcd, other_etcd) = etcd(&r.steady);
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1}→{:.1} |\n",
            r.substrate.label(),
            r.operator,
            r.pairs,
            r.steady.seconds,
            r.steady_reconciles.map_or("-".to_string(), |n| n.to_string()),
            r.steady.traffic.writes.stored(),
            bench_etcd,
            if r.steady.etcd.is_some() {
                joined(&r.steady.writers, 3)
            } else {
                "n/a".to_string()
            },
            other_etcd,
            joined(&r.steady.traffic.by_verb(), 6),
            joined(&r.steady.traffic.by_resource(), 4),
            r.steady_cpu_seconds,
            r.peak_rss_mib,
            r.load_average.0,
            r.load_average.1,
        ));
    }
    if results.iter().any(|r| r.reaction.is_some()) {
        out.push_str("\n### Reaction to hand edits (pair 0)\n\n");
        out.push_str("| substrate | operator | N | StatefulSet scaled 1 → 3: restored after s | writes | requests | MeshSync Deployment deleted: recreated after s | writes | requests |\n");
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in results {
            let Some(reaction) = &r.reaction else {
                continue;
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.substrate.label(),
                r.operator,
                r.pairs,
                seconds(&reaction.scaled),
                reaction.scaled_window.traffic.writes.stored(),
                reaction.scaled_window.traffic.total(),
                seconds(&reaction.deleted),
                reaction.deleted_window.traffic.writes.stored(),
                reaction.deleted_window.traffic.total(),
            ));
        }
    }
    let failed: Vec<&RunResult> = results.iter().filter(|r| r.error.is_some()).collect();
    if !failed.is_empty() {
        out.push_str("\n### Runs that stopped early\n\n");
        for r in failed {
            out.push_str(&format!(
                "- {}, {}, N = {}: {}\n",
                r.substrate.label(),
                r.operator,
                r.pairs,
                r.error.as_deref().unwrap_or_default()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_rank_that_covers_the_fraction() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&sorted, 0.5), 2.0);
        assert_eq!(percentile(&sorted, 0.99), 4.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn counts_are_listed_largest_first_and_cut_with_an_ellipsis() {
        let counts: BTreeMap<String, u64> = [("get", 3), ("list", 9), ("watch", 3), ("patch", 0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(joined(&counts, 2), "list 9, get 3, …");
        assert_eq!(joined(&counts, 5), "list 9, get 3, watch 3");
        assert_eq!(joined(&BTreeMap::new(), 5), "-");
    }
}
