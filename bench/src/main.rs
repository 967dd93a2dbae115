//! `operator-bench`: what an operator costs the API server, measured by the API server.
//!
//! For every substrate (kube-sim, the real control plane), N and operator (ours with each
//! `--apply-strategy`, the Go Meshery Operator): a fresh API server with the operator's CRDs, the
//! operator binary as a child process, then N namespaces with one Broker + MeshSync pair each.
//! Records start-up to `/readyz`, creation → Ready per CR, the operator's API requests by verb
//! and resource during convergence and a steady-state window (kube-sim's counters, or the real
//! API server's audit log by the operator's own identity), etcd's writes in the steady state
//! (real control plane), the reaction to two hand edits, and the operator's peak RSS and CPU.
//! Not a test; see docs/benchmarks.md and scripts/bench.sh.

mod etcd;
mod operator;
mod report;
mod substrate;
mod traffic;
mod workload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use operator::{Binaries, OperatorKind, RunningOperator};
use report::{Reaction, RunResult, percentile};
use substrate::{Measured, OPERATOR_NAMESPACE, OwnRequests, Substrate, SubstrateKind};
use workload::SharedTimeline;

#[derive(Parser, Debug)]
#[command(
    name = "operator-bench",
    about = "Benchmark meshery-operator and the Go Meshery Operator against kube-sim and the real control plane"
)]
struct Args {
    /// Our operator's binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/meshery-operator")]
    operator_bin: PathBuf,
    /// The Go Meshery Operator's binary (test-cluster/build.sh builds it as `meshery-operator-go`,
    /// with its CRDs in `crds/` beside it); needed for `--operators go`.
    #[arg(long)]
    go_operator_bin: Option<PathBuf>,
    /// Our CRDs.
    #[arg(long, default_value = "crds")]
    crds: PathBuf,
    /// Pairs per run on kube-sim, comma-separated (the flag alone: no kube-sim runs).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "10,100,1000,5000")]
    sim_pairs: Vec<usize>,
    /// Pairs per run on the real control plane, comma-separated (the flag alone: no real runs).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1,10,100")]
    real_pairs: Vec<usize>,
    /// Operators: `diff`, `always-apply`, `dry-run-diff` (ours, by apply strategy) and `go`. The Go
    /// operator runs on the real control plane only.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "diff,always-apply,dry-run-diff,go"
    )]
    operators: Vec<String>,
    /// Length of the steady-state window after every CR is Ready, in seconds.
    #[arg(long, default_value_t = 300)]
    steady_seconds: u64,
    /// Our operator's `--resync-seconds` (so the steady state sees periodic reconciles; the Go
    /// operator has no such setting and runs with its defaults).
    #[arg(long, default_value_t = 20)]
    resync_seconds: u64,
    /// Skip the reaction test (a hand edit and a hand delete after the steady state).
    #[arg(long)]
    no_reaction: bool,
    /// kube-sim's workload readiness delay, in seconds.
    #[arg(long, default_value_t = 0.1)]
    ready_after: f64,
    /// The Brokers' `spec.service.type` (`ClusterIP`, `NodePort`, `LoadBalancer`); without it they
    /// get the operator's default, a LoadBalancer. A cluster's NodePort range holds the Services
    /// of 1384 such Brokers, so runs with more pairs need `ClusterIP`.
    #[arg(long, value_parser = ["ClusterIP", "NodePort", "LoadBalancer"])]
    broker_service_type: Option<String>,
    /// How many namespaces the bench creates at once.
    #[arg(long, default_value_t = 16)]
    create_concurrency: usize,
    /// Give up waiting for Ready after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// Where results (`results.jsonl`, `tables.md`) and operator logs go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Run nothing: print the tables of these `results.jsonl` files (several runs' results
    /// together, in the tables' order).
    #[arg(long, num_args = 1..)]
    report: Vec<PathBuf>,
}

/// The tables of earlier runs' `results.jsonl` files.
fn report_only(files: &[PathBuf]) -> Result<String, String> {
    let mut results = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let result: RunResult = serde_json::from_str(line).map_err(|e| {
                format!("{}:{}: not a run's result: {e}", file.display(), number + 1)
            })?;
            results.push(result);
        }
    }
    report::sort(&mut results);
    Ok(report::markdown(&results))
}

/// One planned run.
struct Plan {
    substrate: SubstrateKind,
    pairs: usize,
    operator: OperatorKind,
}

fn plans(args: &Args) -> Result<Vec<Plan>, String> {
    let operators: Vec<OperatorKind> = args
        .operators
        .iter()
        .map(|name| OperatorKind::parse(name))
        .collect::<Result<_, _>>()?;
    if operators.contains(&OperatorKind::Go) && args.go_operator_bin.is_none() {
        return Err("--operators includes go: pass --go-operator-bin (test-cluster/build.sh builds meshery-operator-go)".into());
    }
    let mut plans = Vec::new();
    for (substrate, sizes) in [
        (SubstrateKind::Real, &args.real_pairs),
        (SubstrateKind::KubeSim, &args.sim_pairs),
    ] {
        for &pairs in sizes.iter().filter(|&&n| n > 0) {
            for operator in &operators {
                // kube-sim answers JSON only; the Go operator's client-go asks for protobuf.
                if substrate == SubstrateKind::KubeSim && *operator == OperatorKind::Go {
                    continue;
                }
                plans.push(Plan {
                    substrate,
                    pairs,
                    operator: operator.clone(),
                });
            }
        }
    }
    Ok(plans)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !args.report.is_empty() {
        return match report_only(&args.report) {
            Ok(tables) => {
                print!("{tables}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("operator-bench: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let plans = match plans(&args) {
        Ok(plans) => plans,
        Err(e) => {
            eprintln!("operator-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.out_dir) {
        eprintln!("operator-bench: creating {}: {e}", args.out_dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let binaries = Binaries {
        ours: args.operator_bin.clone(),
        go: args.go_operator_bin.clone(),
    };
    let cluster_binaries = if plans.iter().any(|p| p.substrate == SubstrateKind::Real) {
        match test_cluster::ensure_built() {
            Ok(binaries) => Some(binaries),
            Err(e) => {
                eprintln!("operator-bench: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rendered =
        rendered_objects_per_pair(&args.operator_bin, args.broker_service_type.as_deref());
    let results_path = args.out_dir.join("results.jsonl");
    let mut results = Vec::new();
    for plan in &plans {
        eprintln!(
            "== {}, {}, N = {}",
            plan.substrate.label(),
            plan.operator.label(),
            plan.pairs
        );
        let started = Instant::now();
        let mut result =
            runtime.block_on(run_one(&args, &binaries, cluster_binaries.as_ref(), plan));
        result.rendered_objects_per_pair = rendered;
        let line = serde_json::to_string(&result).unwrap_or_default();
        eprintln!(
            "   done in {:.0} s: {line}",
            started.elapsed().as_secs_f64()
        );
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&results_path)
        {
            let _ = writeln!(file, "{line}");
        }
        results.push(result);
    }
    report::sort(&mut results);
    let tables = report::markdown(&results);
    let _ = std::fs::write(args.out_dir.join("tables.md"), &tables);
    print!("{tables}");
    if results.iter().any(|r| r.error.is_some()) {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// How many objects our operator renders for one pair, from its offline planner.
fn rendered_objects_per_pair(
    operator_bin: &Path,
    broker_service_type: Option<&str>,
) -> Option<u64> {
    let dir = tempfile::tempdir().ok()?;
    let file = dir.path().join("pair.yaml");
    let yaml = workload::pair(0, broker_service_type)
        .iter()
        .map(|d| serde_json::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n");
    std::fs::write(&file, yaml).ok()?;
    let output = Command::new(operator_bin)
        .args(["plan", "-f"])
        .arg(&file)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("Plan: "))?;
    eprintln!("offline plan of one pair: {line}");
    line.strip_prefix("Plan: ")?.split(' ').next()?.parse().ok()
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The Go operator's CRDs: `crds/` beside its (resolved) binary, as test-cluster/build.sh leaves them.
fn go_operator_crds(binary: &Path) -> PathBuf {
    let resolved = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    resolved.parent().unwrap_or(Path::new(".")).join("crds")
}

async fn run_one(
    args: &Args,
    binaries: &Binaries,
    cluster: Option<&test_cluster::Binaries>,
    plan: &Plan,
) -> RunResult {
    let mut result = RunResult {
        substrate: plan.substrate,
        operator: plan.operator.label(),
        pairs: plan.pairs,
        broker_service_type: args.broker_service_type.clone(),
        readyz_seconds: f64::NAN,
        all_ready: false,
        ready_crs: 0,
        total_seconds: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        convergence: Measured::default(),
        convergence_cpu_seconds: f64::NAN,
        steady: Measured::default(),
        steady_reconciles: None,
        steady_cpu_seconds: f64::NAN,
        peak_rss_mib: f64::NAN,
        reaction: None,
        rendered_objects_per_pair: None,
        load_average: (load_average(), f64::NAN),
        error: None,
    };
    if let Err(e) = measure(args, binaries, cluster, plan, &mut result).await {
        eprintln!("   failed: {e}");
        result.error = Some(e);
    }
    result.load_average.1 = load_average();
    result
}

async fn measure(
    args: &Args,
    binaries: &Binaries,
    cluster: Option<&test_cluster::Binaries>,
    plan: &Plan,
    result: &mut RunResult,
) -> Result<(), String> {
    let crds = match (&plan.operator, &binaries.go) {
        (OperatorKind::Go, Some(go)) => go_operator_crds(go),
        _ => args.crds.clone(),
    };
    let substrate = match plan.substrate {
        SubstrateKind::KubeSim => {
            Substrate::kube_sim(&crds, Duration::from_secs_f64(args.ready_after)).await?
        }
        SubstrateKind::Real => {
            let cluster = cluster.ok_or("the control plane's binaries were not built")?;
            Substrate::real(cluster.clone(), &crds).await?
        }
    };
    let outcome = measure_on(args, binaries, plan, &substrate, result).await;
    substrate.stop();
    outcome
}

async fn measure_on(
    args: &Args,
    binaries: &Binaries,
    plan: &Plan,
    substrate: &Substrate,
    result: &mut RunResult,
) -> Result<(), String> {
    let client = substrate.client();
    let log = args.out_dir.join(format!(
        "operator-{}-{}-{}.log",
        match plan.substrate {
            SubstrateKind::KubeSim => "sim",
            SubstrateKind::Real => "real",
        },
        plan.operator.file_label(),
        plan.pairs
    ));
    let mut operator = RunningOperator::spawn(
        &plan.operator,
        binaries,
        substrate.operator_kubeconfig(),
        &log,
        args.resync_seconds,
        OPERATOR_NAMESPACE,
    )?;
    result.readyz_seconds = operator
        .wait_ready(Duration::from_secs(120))
        .await?
        .as_secs_f64();
    let cpu_start = operator.cpu_seconds();

    let own = Arc::new(OwnRequests::default());
    let timeline: SharedTimeline = Arc::default();
    let trackers = ["Broker", "MeshSync"].map(|kind| {
        tokio::spawn(workload::track_ready(
            client.clone(),
            kind,
            own.clone(),
            timeline.clone(),
        ))
    });
    // Let the trackers' watches open before the first create.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window = substrate.open_window(&own);
    let start = Instant::now();
    let account = (plan.operator == OperatorKind::Go).then_some("meshery-operator");
    workload::create_pairs(
        &client,
        plan.pairs,
        args.create_concurrency,
        account,
        args.broker_service_type.as_deref(),
        &timeline,
    )
    .await?;
    let deadline = start + Duration::from_secs(args.timeout_seconds);
    result.all_ready = loop {
        if timeline.lock().unwrap().ready.len() == 2 * plan.pairs {
            break true;
        }
        if let Some(status) = operator.exited() {
            return Err(format!("the operator exited during convergence: {status}"));
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    {
        let timeline = timeline.lock().unwrap();
        let last = timeline.ready.values().max().copied().unwrap_or(start);
        let mut latencies: Vec<f64> = timeline
            .ready
            .iter()
            .filter_map(|(key, ready)| {
                Some(
                    ready
                        .saturating_duration_since(*timeline.created.get(key)?)
                        .as_secs_f64()
                        * 1000.0,
                )
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        result.ready_crs = timeline.ready.len();
        result.total_seconds = last.duration_since(start).as_secs_f64();
        result.p50_ms = percentile(&latencies, 0.50);
        result.p99_ms = percentile(&latencies, 0.99);
    }
    for tracker in trackers {
        tracker.abort();
    }
    // Writes a reconcile sends right after its CR turned Ready still belong to convergence.
    tokio::time::sleep(Duration::from_secs(5)).await;
    result.convergence = substrate.close_window(window, &own)?;
    let cpu_converged = operator.cpu_seconds();
    result.convergence_cpu_seconds = cpu_converged - cpu_start;
    if !result.all_ready {
        return Err(format!(
            "{} of {} CRs Ready after {} s",
            result.ready_crs,
            2 * plan.pairs,
            args.timeout_seconds
        ));
    }

    let reconciles_before = operator.reconciles();
    let window = substrate.open_window(&own);
    let steady_end = Instant::now() + Duration::from_secs(args.steady_seconds);
    while Instant::now() < steady_end {
        if let Some(status) = operator.exited() {
            return Err(format!(
                "the operator exited during the steady state: {status}"
            ));
        }
        tokio::time::sleep(
            Duration::from_millis(500).min(steady_end.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    result.steady = substrate.close_window(window, &own)?;
    result.steady_reconciles = operator
        .reconciles()
        .zip(reconciles_before)
        .map(|(after, before)| after.saturating_sub(before));
    result.steady_cpu_seconds = operator.cpu_seconds() - cpu_converged;
    result.peak_rss_mib = operator.peak_rss_mib();

    if !args.no_reaction {
        const TIMEOUT: Duration = Duration::from_secs(60);
        const SETTLE: Duration = Duration::from_secs(2);
        let namespace = workload::namespace(0);
        let window = substrate.open_window(&own);
        let scaled = workload::scale_broker_by_hand(&client, &namespace, &own, TIMEOUT).await?;
        tokio::time::sleep(SETTLE).await;
        let scaled_window = substrate.close_window(window, &own)?;
        let window = substrate.open_window(&own);
        let deleted =
            workload::delete_meshsync_deployment_by_hand(&client, &namespace, &own, TIMEOUT)
                .await?;
        tokio::time::sleep(SETTLE).await;
        let deleted_window = substrate.close_window(window, &own)?;
        result.reaction = Some(Reaction {
            scaled,
            scaled_window,
            deleted,
            deleted_window,
        });
    }
    Ok(())
}
