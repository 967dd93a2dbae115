//! One run's figures, and the Markdown tables docs/benchmarks.md is made of.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::substrate::{Measured, SubstrateKind};
use crate::workload::Restored;

/// One run: one operator, one substrate, N pairs. A line of `results.jsonl`; a figure that could not
/// be measured is NaN, written as `null`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub substrate: SubstrateKind,
    pub operator: String,
    pub pairs: usize,
    /// The Brokers' `spec.service.type`, when the run set one (older results: the default).
    #[serde(default)]
    pub broker_service_type: Option<String>,
    /// From the process's start to its first `/readyz` 200.
    #[serde(deserialize_with = "nullable_f64")]
    pub readyz_seconds: f64,
    pub all_ready: bool,
    pub ready_crs: usize,
    /// First create to last Ready.
    #[serde(deserialize_with = "nullable_f64")]
    pub total_seconds: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub p50_ms: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub p99_ms: f64,
    /// From just before the first create until every CR was Ready, plus a settle.
    pub convergence: Measured,
    #[serde(deserialize_with = "nullable_f64")]
    pub convergence_cpu_seconds: f64,
    pub steady: Measured,
    pub steady_reconciles: Option<u64>,
    #[serde(deserialize_with = "nullable_f64")]
    pub steady_cpu_seconds: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub peak_rss_mib: f64,
    pub reaction: Option<Reaction>,
    /// `meshery-operator plan -f` of one pair: how many objects it renders.
    pub rendered_objects_per_pair: Option<u64>,
    /// The machine's 1-minute load average at the start and the end of the run.
    #[serde(deserialize_with = "nullable_f64_pair")]
    pub load_average: (f64, f64),
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// The reaction test on pair 0: each hand edit, how long until undone, and what the operator sent meanwhile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reaction {
    pub scaled: Restored,
    pub scaled_window: Measured,
    pub deleted: Restored,
    pub deleted_window: Measured,
}

/// A figure written as `null` (NaN) reads back as NaN.
pub fn nullable_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

fn nullable_f64_pair<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(f64, f64), D::Error> {
    let (a, b) = <(Option<f64>, Option<f64>)>::deserialize(deserializer)?;
    Ok((a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)))
}

impl RunResult {
    /// The substrate, and the Brokers' Service type where the run set one.
    pub fn substrate_label(&self) -> String {
        match &self.broker_service_type {
            Some(service_type) => format!("{} ({service_type} Brokers)", self.substrate.label()),
            None => self.substrate.label().to_string(),
        }
    }
}

/// The order the tables list runs in: the real control plane first, then by N, then ours by
/// strategy before the Go operator.
pub fn sort(results: &mut [RunResult]) {
    let rank = |operator: &str| match operator {
        "ours: diff" => 0,
        "ours: always-apply" => 1,
        "ours: dry-run-diff" => 2,
        _ => 3,
    };
    results.sort_by_key(|r| {
        (
            r.substrate == SubstrateKind::KubeSim,
            r.pairs,
            r.broker_service_type.clone(),
            rank(&r.operator),
        )
    });
}

/// A figure to one decimal, or `-` when the run did not measure it (it stopped early).
fn one_decimal(value: f64) -> String {
    if value.is_nan() {
        "-".to_string()
    } else {
        format!("{value:.1}")
    }
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

/// `"user verb resource"` keys with the users' common prefixes dropped
/// (`system:serviceaccount:kube-system:endpoint-controller` → `kube-system:endpoint-controller`).
fn short_users(writers: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut short = BTreeMap::new();
    for (key, count) in writers {
        let key = key
            .strip_prefix("system:serviceaccount:")
            .or_else(|| key.strip_prefix("system:"))
            .unwrap_or(key);
        *short.entry(key.to_string()).or_default() += count;
    }
    short
}

fn per(count: u64, n: usize) -> String {
    format!("{:.2}", count as f64 / n.max(1) as f64)
}

fn seconds(restored: &Restored) -> String {
    restored
        .seconds
        .map_or_else(|| "not restored".to_string(), |s| format!("{s:.2}"))
}

/// The etcd columns: writes on the benchmark's objects, the rest of the cluster's, and etcd's own
/// count of both.
fn etcd(measured: &Measured) -> [String; 3] {
    match &measured.etcd {
        Some(etcd) => [
            etcd.benchmark_total().to_string(),
            format!("{} ({})", etcd.other_total(), joined(&etcd.other, 3)),
            etcd.counted_by_etcd
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
        ],
        None => ["n/a", "n/a", "n/a"].map(String::from),
    }
}

/// The convergence, steady-state and reaction tables.
pub fn markdown(results: &[RunResult]) -> String {
    let mut out = String::new();
    out.push_str("\n### Convergence: time and writes\n\n");
    out.push_str("| substrate | operator | N | /readyz s | all Ready | total s | p50 ms | p99 ms | child writes / pair | status writes / Broker | status writes / MeshSync | CR writes | Events | dry-run applies | operator CPU s |\n");
    out.push_str("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        let w = &r.convergence.traffic.writes;
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} | {:.1} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.substrate_label(),
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
            r.convergence_cpu_seconds,
        ));
    }
    requests_table(
        &mut out,
        "Convergence: the operator's requests",
        results,
        |r| Some(&r.convergence),
    );
    out.push_str("\n### Steady state: writes, etcd, process\n\n");
    out.push_str("| substrate | operator | N | window s | reconciles | API writes | etcd writes on the benchmark's objects | their writers | etcd writes, rest of the cluster | etcd writes, etcd's own count | operator CPU s | peak RSS MiB | load avg |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|\n");
    for r in results {
        let [bench_etcd, other_etcd, counted_etcd] = etcd(&r.steady);
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1}→{:.1} |\n",
            r.substrate_label(),
            r.operator,
            r.pairs,
            r.steady.seconds,
            r.steady_reconciles
                .map_or("-".to_string(), |n| n.to_string()),
            r.steady.traffic.writes.stored(),
            bench_etcd,
            if r.steady.etcd.is_some() {
                joined(&short_users(&r.steady.writers), 3)
            } else {
                "n/a".to_string()
            },
            other_etcd,
            counted_etcd,
            one_decimal(r.steady_cpu_seconds),
            one_decimal(r.peak_rss_mib),
            r.load_average.0,
            r.load_average.1,
        ));
    }
    requests_table(
        &mut out,
        "Steady state: the operator's requests",
        results,
        |r| Some(&r.steady),
    );
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
                r.substrate_label(),
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
        requests_table(
            &mut out,
            "Reaction: the operator's requests after the StatefulSet was scaled",
            results,
            |r| r.reaction.as_ref().map(|reaction| &reaction.scaled_window),
        );
        requests_table(
            &mut out,
            "Reaction: the operator's requests after the Deployment was deleted",
            results,
            |r| r.reaction.as_ref().map(|reaction| &reaction.deleted_window),
        );
    }
    let failed: Vec<&RunResult> = results.iter().filter(|r| r.error.is_some()).collect();
    if !failed.is_empty() {
        out.push_str("\n### Runs that stopped early\n\n");
        for r in failed {
            out.push_str(&format!(
                "- {}, {}, N = {}: {}\n",
                r.substrate_label(),
                r.operator,
                r.pairs,
                r.error.as_deref().unwrap_or_default()
            ));
        }
    }
    out
}

/// One window's requests per run: the total, by verb and by resource.
fn requests_table(
    out: &mut String,
    title: &str,
    results: &[RunResult],
    window: impl Fn(&RunResult) -> Option<&Measured>,
) {
    out.push_str(&format!("\n### {title}\n\n"));
    out.push_str("| substrate | operator | N | requests | by verb | by resource |\n");
    out.push_str("|---|---|---:|---:|---|---|\n");
    for r in results {
        let Some(measured) = window(r) else {
            continue;
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.substrate_label(),
            r.operator,
            r.pairs,
            measured.traffic.total(),
            joined(&measured.traffic.by_verb(), 6),
            joined(&measured.traffic.by_resource(), 6),
        ));
    }
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
    fn writers_lose_the_common_user_prefixes() {
        let writers: BTreeMap<String, u64> = [
            (
                "system:serviceaccount:kube-system:endpoint-controller patch events",
                4,
            ),
            ("system:node:test-node patch pods/status", 2),
            ("admin delete deployments", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            joined(&short_users(&writers), 5),
            "kube-system:endpoint-controller patch events 4, node:test-node patch pods/status 2, admin delete deployments 1"
        );
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
