//! `operator-bench`: convergence time, API economy, memory and CPU of the operator against kube-sim.
//!
//! For every N and apply strategy: a fresh in-process kube-sim (CRDs installed, LoadBalancers
//! pending), the release operator binary as a child process (`run --broker-probe off
//! --apply-strategy S`), then N namespaces each with one Broker and one MeshSync using it. Records
//! creation→Ready per CR, API requests by verb until all are Ready (plus a short settle), API writes
//! during a steady-state window, and the operator's peak RSS (VmHWM) and CPU seconds.
//!
//! The bench's own requests (namespace and CR creates, its list/watch of the CRs) are counted by
//! the bench and subtracted from the sim's counts, so the tables show the operator's requests only.
//! Not a test; see docs/benchmarks.md and scripts/bench.sh.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};
use kube_sim::{LoadBalancerMode, RequestStats, Sim, SimOptions};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    name = "operator-bench",
    about = "Benchmark meshery-operator against kube-sim"
)]
struct Args {
    /// The operator binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/meshery-operator")]
    operator_bin: PathBuf,
    /// The CRDs to install.
    #[arg(long, default_value = "crds")]
    crds: PathBuf,
    /// Broker+MeshSync pairs per run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pairs: Vec<usize>,
    /// Apply strategies, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "diff,always-apply,dry-run-diff"
    )]
    strategies: Vec<String>,
    /// Length of the steady-state window after every CR is Ready, in seconds.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,
    /// The operator's `--resync-seconds` (so the steady-state window sees periodic reconciles).
    #[arg(long, default_value_t = 20)]
    resync_seconds: u64,
    /// kube-sim's workload readiness delay, in seconds.
    #[arg(long, default_value_t = 0.1)]
    ready_after: f64,
    /// How many creates the bench sends at once.
    #[arg(long, default_value_t = 16)]
    create_concurrency: usize,
    /// Give up waiting for Ready after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
    /// Where results (JSON lines) and operator logs go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
}

/// One run's measurements.
#[derive(Debug, serde::Serialize)]
struct RunResult {
    strategy: String,
    pairs: usize,
    all_ready: bool,
    ready_crs: usize,
    total_seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Operator requests by verb from the first create until every CR was Ready plus the settle.
    convergence_requests: BTreeMap<String, u64>,
    convergence_child_applies: u64,
    convergence_status_writes: u64,
    convergence_status_writes_broker: u64,
    convergence_status_writes_meshsync: u64,
    convergence_events: u64,
    convergence_deletes: u64,
    convergence_dry_runs: u64,
    steady_seconds: f64,
    steady_requests: BTreeMap<String, u64>,
    steady_writes: u64,
    steady_child_applies: u64,
    steady_status_writes: u64,
    steady_dry_runs: u64,
    steady_reconciles: u64,
    convergence_cpu_seconds: f64,
    steady_cpu_seconds: f64,
    total_cpu_seconds: f64,
    peak_rss_mib: f64,
    rendered_objects_per_pair: Option<u64>,
    /// The machine's 1-minute load average at the start and the end of the run (other work on a
    /// shared machine shows here).
    load_average: (f64, f64),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out_dir).expect("creating the output directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rendered = rendered_objects_per_pair(&args);
    let results_path = args.out_dir.join("results.jsonl");
    let mut results = Vec::new();
    for &pairs in &args.pairs {
        for strategy in &args.strategies {
            eprintln!("== {strategy}, N = {pairs}");
            let started = Instant::now();
            let mut result = runtime.block_on(run_one(&args, strategy, pairs));
            result.rendered_objects_per_pair = rendered;
            eprintln!(
                "   done in {:.0} s: {}",
                started.elapsed().as_secs_f64(),
                serde_json::to_string(&result).unwrap_or_default()
            );
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&results_path)
                .expect("opening results.jsonl");
            writeln!(
                file,
                "{}",
                serde_json::to_string(&result).unwrap_or_default()
            )
            .ok();
            results.push(result);
        }
    }
    print!("{}", markdown(&results));
    std::process::ExitCode::SUCCESS
}

/// How many objects the operator renders for one pair, from its offline planner.
fn rendered_objects_per_pair(args: &Args) -> Option<u64> {
    let dir = tempfile::tempdir().ok()?;
    let file = dir.path().join("pair.yaml");
    let docs = [
        cr("Broker", "bench-0", "broker"),
        cr("MeshSync", "bench-0", "meshsync"),
    ];
    let yaml = docs
        .iter()
        .map(|d| serde_json::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n");
    std::fs::write(&file, yaml).ok()?;
    let output = Command::new(&args.operator_bin)
        .args(["plan", "-f"])
        .arg(&file)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("Plan: "))?;
    let created = line.strip_prefix("Plan: ")?.split(' ').next()?.parse().ok();
    eprintln!("offline plan of one pair: {line}");
    created
}

fn cr(kind: &str, namespace: &str, name: &str) -> Value {
    let spec = match kind {
        "Broker" => json!({"size": 1}),
        _ => json!({"size": 1, "broker": {"native": {"name": "broker", "namespace": namespace}}}),
    };
    json!({
        "apiVersion": "meshery.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

fn resource(plural: &str, kind: &str) -> ApiResource {
    ApiResource {
        group: "meshery.io".into(),
        version: "v1alpha1".into(),
        api_version: "meshery.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Requests the bench itself sent, by the sim's `"<verb> <resource>"` key.
#[derive(Default)]
struct OwnRequests(Mutex<BTreeMap<String, u64>>);

impl OwnRequests {
    fn add(&self, key: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default() += 1;
    }
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// When each CR (`Kind ns/name`) was created and became Ready.
#[derive(Default)]
struct Timeline {
    created: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
}

type SharedTimeline = Arc<Mutex<Timeline>>;

async fn run_one(args: &Args, strategy: &str, pairs: usize) -> RunResult {
    let load_start = load_average();
    let sim = Sim::start(SimOptions {
        ready_after: Duration::from_secs_f64(args.ready_after),
        load_balancer: LoadBalancerMode::Pending,
        crds_dir: Some(args.crds.clone()),
        ..SimOptions::default()
    })
    .await
    .expect("kube-sim starts");
    let client = sim.client();
    let metrics_addr = free_addr();
    let health_addr = free_addr();
    let log = std::fs::File::create(
        args.out_dir
            .join(format!("operator-{strategy}-{pairs}.log")),
    )
    .expect("creating the operator log");
    let mut operator = Command::new(&args.operator_bin)
        .args(["run", "--broker-probe", "off", "--apply-strategy", strategy])
        .args(["--metrics-addr", &metrics_addr.to_string()])
        .args(["--health-addr", &health_addr.to_string()])
        .args(["--resync-seconds", &args.resync_seconds.to_string()])
        .env("KUBECONFIG", sim.kubeconfig_path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the operator");
    let pid = operator.id();
    wait_ready(health_addr, &mut operator).await;
    sim.reset_stats();
    let cpu_start = cpu_seconds(pid);

    let own = Arc::new(OwnRequests::default());
    let timeline: SharedTimeline = Arc::default();
    let trackers = [("brokers", "Broker"), ("meshsyncs", "MeshSync")].map(|(plural, kind)| {
        tokio::spawn(track_ready(
            Api::all_with(client.clone(), &resource(plural, kind)),
            format!("{plural}.meshery.io"),
            kind,
            own.clone(),
            timeline.clone(),
        ))
    });
    // Let the trackers' watches open before the first create.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    create_pairs(&client, pairs, args.create_concurrency, &own, &timeline).await;
    let deadline = start + Duration::from_secs(args.timeout_seconds);
    let all_ready = loop {
        let ready = timeline.lock().unwrap().ready.len();
        if ready == 2 * pairs {
            break true;
        }
        if Instant::now() > deadline {
            eprintln!("   timed out: {ready} of {} CRs Ready", 2 * pairs);
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (total_seconds, latencies, ready_crs) = {
        let timeline = timeline.lock().unwrap();
        let last = timeline.ready.values().max().copied().unwrap_or(start);
        let mut latencies: Vec<f64> = timeline
            .ready
            .iter()
            .filter_map(|(key, ready)| {
                let created = timeline.created.get(key)?;
                Some(ready.saturating_duration_since(*created).as_secs_f64() * 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let ready_crs = timeline.ready.len();
        (
            last.duration_since(start).as_secs_f64(),
            latencies,
            ready_crs,
        )
    };
    for tracker in trackers {
        tracker.abort();
    }
    // Writes a reconcile sends right after its CR turned Ready still belong to convergence.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let convergence = sim.stats();
    let cpu_converged = cpu_seconds(pid);

    let reconciles_before = reconciles(metrics_addr);
    sim.reset_stats();
    let steady_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let steady = sim.stats();
    let steady_seconds = steady_start.elapsed().as_secs_f64();
    let reconciles_after = reconciles(metrics_addr);
    let cpu_end = cpu_seconds(pid);
    let peak_rss_mib = peak_rss_kib(pid) as f64 / 1024.0;
    let _ = operator.kill();
    let _ = operator.wait();
    sim.stop();

    let own = own.snapshot();
    let conv_writes = classify_writes(&convergence);
    let steady_writes = classify_writes(&steady);
    RunResult {
        strategy: strategy.into(),
        pairs,
        all_ready,
        ready_crs,
        total_seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        convergence_requests: by_verb(&convergence, &own),
        convergence_child_applies: conv_writes.child_applies,
        convergence_status_writes: conv_writes.status,
        convergence_status_writes_broker: conv_writes.status_broker,
        convergence_status_writes_meshsync: conv_writes.status - conv_writes.status_broker,
        convergence_events: conv_writes.events,
        convergence_deletes: conv_writes.deletes,
        convergence_dry_runs: conv_writes.dry_runs,
        steady_seconds,
        steady_requests: by_verb(&steady, &BTreeMap::new()),
        steady_writes: steady_writes.child_applies
            + steady_writes.status
            + steady_writes.events
            + steady_writes.deletes
            + steady_writes.other,
        steady_child_applies: steady_writes.child_applies,
        steady_status_writes: steady_writes.status,
        steady_dry_runs: steady_writes.dry_runs,
        steady_reconciles: reconciles_after.saturating_sub(reconciles_before),
        convergence_cpu_seconds: cpu_converged - cpu_start,
        steady_cpu_seconds: cpu_end - cpu_converged,
        total_cpu_seconds: cpu_end,
        peak_rss_mib,
        rendered_objects_per_pair: None,
        load_average: (load_start, load_average()),
    }
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Creates `pairs` namespaces, each with a Broker `broker` and a MeshSync `meshsync` using it.
async fn create_pairs(
    client: &kube::Client,
    pairs: usize,
    concurrency: usize,
    own: &OwnRequests,
    timeline: &SharedTimeline,
) {
    let params = PostParams {
        field_manager: Some("operator-bench".into()),
        ..PostParams::default()
    };
    let namespaces: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
        },
    );
    futures::stream::iter(0..pairs)
        .map(|i| {
            let namespaces = namespaces.clone();
            let params = params.clone();
            async move {
                let namespace = format!("bench-{i}");
                let ns: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
                }))
                .expect("a namespace");
                own.add("create namespaces");
                namespaces
                    .create(&params, &ns)
                    .await
                    .expect("creating a namespace");
                for (plural, kind, name) in [
                    ("brokers", "Broker", "broker"),
                    ("meshsyncs", "MeshSync", "meshsync"),
                ] {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &namespace, &resource(plural, kind));
                    let object: DynamicObject =
                        serde_json::from_value(cr(kind, &namespace, name)).expect("a CR");
                    own.add(&format!("create {plural}.meshery.io"));
                    api.create(&params, &object)
                        .await
                        .unwrap_or_else(|e| panic!("creating {kind} {namespace}/{name}: {e}"));
                    timeline
                        .lock()
                        .unwrap()
                        .created
                        .insert(format!("{kind} {namespace}/{name}"), Instant::now());
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

/// Lists, then watches, one CR kind, recording when each CR first reports phase Ready.
async fn track_ready(
    api: Api<DynamicObject>,
    resource: String,
    kind: &'static str,
    own: Arc<OwnRequests>,
    timeline: SharedTimeline,
) {
    let see = |object: &DynamicObject| {
        let phase = object.data["status"]["phase"].as_str();
        if phase == Some("Ready") {
            let key = format!(
                "{kind} {}/{}",
                object.metadata.namespace.as_deref().unwrap_or_default(),
                object.metadata.name.as_deref().unwrap_or_default()
            );
            timeline
                .lock()
                .unwrap()
                .ready
                .entry(key)
                .or_insert_with(Instant::now);
        }
    };
    'relist: loop {
        own.add(&format!("list {resource}"));
        let Ok(list) = api.list(&ListParams::default()).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        list.items.iter().for_each(see);
        let mut version = list.metadata.resource_version.unwrap_or_default();
        loop {
            own.add(&format!("watch {resource}"));
            let params = WatchParams::default().timeout(290);
            let Ok(stream) = api.watch(&params, &version).await else {
                continue 'relist;
            };
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(event)) = stream.try_next().await {
                match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        see(&o);
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                    }
                    WatchEvent::Deleted(o) => {
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                    }
                    WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                    WatchEvent::Error(_) => continue 'relist,
                }
            }
        }
    }
}

/// The operator's requests by verb (`patch` split into real applies and dry runs), without the bench's own.
fn by_verb(stats: &RequestStats, own: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut verbs = BTreeMap::new();
    for (key, count) in &stats.counts {
        let count = count.saturating_sub(own.get(key).copied().unwrap_or(0));
        let verb = key.split(' ').next().unwrap_or_default().to_string();
        *verbs.entry(verb).or_insert(0) += count;
    }
    let dry_runs = stats
        .writes
        .iter()
        .filter(|w| w.dry_run && w.field_manager.as_deref() != Some("operator-bench"))
        .count() as u64;
    if dry_runs > 0 {
        if let Some(patch) = verbs.get_mut("patch") {
            *patch = patch.saturating_sub(dry_runs);
        }
        verbs.insert("patch (dry-run)".into(), dry_runs);
    }
    verbs.retain(|_, count| *count > 0);
    verbs
}

#[derive(Default)]
struct Writes {
    child_applies: u64,
    status: u64,
    status_broker: u64,
    events: u64,
    deletes: u64,
    dry_runs: u64,
    other: u64,
}

/// The operator's writes (the bench's creates excluded), by what they are.
fn classify_writes(stats: &RequestStats) -> Writes {
    let mut writes = Writes::default();
    for w in &stats.writes {
        if w.field_manager.as_deref() == Some("operator-bench") {
            continue;
        }
        if w.dry_run {
            writes.dry_runs += 1;
        } else if w.resource.starts_with("events") {
            writes.events += 1;
        } else if w.resource.ends_with("/status") {
            writes.status += 1;
            if w.resource.starts_with("brokers.") {
                writes.status_broker += 1;
            }
        } else if w.verb == "apply" {
            writes.child_applies += 1;
        } else if w.verb == "delete" {
            writes.deletes += 1;
        } else {
            writes.other += 1;
        }
    }
    writes
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A plain HTTP/1.0 GET; `None` when nothing answers.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((code, body))
}

async fn wait_ready(health: SocketAddr, operator: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = http_get(health, "/readyz") {
            return;
        }
        if let Ok(Some(status)) = operator.try_wait() {
            panic!("the operator exited before it was ready: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the operator was not ready in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `meshery_operator_reconcile_total`, summed over both controllers.
fn reconciles(metrics: SocketAddr) -> u64 {
    let Some((_, body)) = http_get(metrics, "/metrics") else {
        return 0;
    };
    body.lines()
        .filter(|l| l.starts_with("meshery_operator_reconcile_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks() as f64
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn markdown(results: &[RunResult]) -> String {
    let mut out = String::new();
    out.push_str("\n### Convergence\n\n");
    out.push_str("| strategy | N pairs | all Ready | total s | p50 ms | p99 ms | child applies / pair | status writes / Broker | status writes / MeshSync | events | dry-run applies | requests by verb | operator CPU s |\n");
    out.push_str("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for r in results {
        let verbs = r
            .convergence_requests
            .iter()
            .map(|(v, c)| format!("{v} {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.1} |\n",
            r.strategy,
            r.pairs,
            if r.all_ready {
                "yes".to_string()
            } else {
                format!("no ({}/{})", r.ready_crs, 2 * r.pairs)
            },
            r.total_seconds,
            r.p50_ms,
            r.p99_ms,
            r.convergence_child_applies as f64 / r.pairs as f64,
            r.convergence_status_writes_broker as f64 / r.pairs as f64,
            r.convergence_status_writes_meshsync as f64 / r.pairs as f64,
            r.convergence_events,
            r.convergence_dry_runs,
            verbs,
            r.convergence_cpu_seconds,
        ));
    }
    out.push_str("\n### Steady state\n\n");
    out.push_str("| strategy | N pairs | window s | reconciles | writes | writes / reconcile | child applies | status writes | dry-run applies | requests by verb | operator CPU s | peak RSS MiB | load avg |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n");
    for r in results {
        let verbs = r
            .steady_requests
            .iter()
            .map(|(v, c)| format!("{v} {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let per_reconcile = if r.steady_reconciles == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", r.steady_writes as f64 / r.steady_reconciles as f64)
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1}→{:.1} |\n",
            r.strategy,
            r.pairs,
            r.steady_seconds,
            r.steady_reconciles,
            r.steady_writes,
            per_reconcile,
            r.steady_child_applies,
            r.steady_status_writes,
            r.steady_dry_runs,
            if verbs.is_empty() { "-".into() } else { verbs },
            r.steady_cpu_seconds,
            r.peak_rss_mib,
            r.load_average.0,
            r.load_average.1,
        ));
    }
    out
}
