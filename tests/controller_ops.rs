//! Operability end to end: what a platform engineer does with `kubectl`, the `meshery-operator`
//! binary, its metrics and health endpoints, and leader election — against kube-sim.
//!
//! The operator runs as the real binary (a child process with `KUBECONFIG` pointing at the sim),
//! with `--broker-probe off` so no NATS server is needed: readiness rests on the children alone.

mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use harness::{Cluster, changed_objects, eventually, scaled, skip_whole_test_on_real_cluster};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams};
use kube_sim::Fault;
use meshery_operator::api::{Broker, MeshSync, Phase};

const WAIT: Duration = Duration::from_secs(20);

const BROKER: &str = "
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: meshery-broker, namespace: meshery}
spec: {size: 1}
";

// ---------------------------------------------------------------------------------------------
// Helpers: the operator binary as a child process, kubectl, plain HTTP.

/// The `meshery-operator run` binary as a child process, killed on drop.
struct Operator {
    child: Child,
    metrics: SocketAddr,
    health: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts `meshery-operator run` against `kubeconfig` on free loopback ports, with
    /// `--broker-probe off --resync-seconds 2 --log-format json` (unless `extra` sets the resync
    /// or the format) and `extra` flags; `env` is added
    /// to a clean environment (no in-cluster variables, no `RUST_LOG`, no `POD_NAME`).
    fn start(kubeconfig: &Path, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("operator.log");
        let metrics = free_addr();
        let health = free_addr();
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshery-operator"));
        command
            .arg("run")
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--health-addr", &health.to_string()])
            .args(["--broker-probe", "off"])
            .args(if extra.contains(&"--resync-seconds") {
                &[][..]
            } else {
                &["--resync-seconds", "2"][..]
            })
            .args(if extra.contains(&"--log-format") {
                &[][..]
            } else {
                &["--log-format", "json"][..]
            })
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file"));
        let child = command.spawn().expect("the operator binary starts");
        let operator = Operator {
            child,
            metrics,
            health,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&health, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the operator never served {health}; its log:\n{}",
                operator.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        operator
    }

    /// Everything the operator wrote to stderr so far.
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit; panics with its log when it outlives `timeout`.
    async fn exited_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the operator did not exit within {timeout:?}; its log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let addr = if path == "/metrics" {
            self.metrics
        } else {
            self.health
        };
        http_get(addr, path).await
    }

    async fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics").await;
        assert_eq!(code, 200, "/metrics: {body}");
        body
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address nothing listens on right now.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("its address")
}

/// `GET path` over HTTP/1.1; the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {response:?}"));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        (code, body.to_string())
    })
    .await
    .expect("the HTTP request does not panic")
}

/// Runs `kubectl` against `kubeconfig` (off the async workers: the sim serves on them).
async fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let kubeconfig = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let stdin = stdin.map(ToString::to_string);
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("kubectl runs")
    })
    .await
    .expect("kubectl does not panic")
}

/// `kubectl …` that must succeed; its stdout.
async fn kubectl_ok(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let output = kubectl(kubeconfig, args, stdin).await;
    assert!(
        output.status.success(),
        "kubectl {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kubectl prints text")
}

/// Creates a namespace with kubectl. (`kubectl create namespace NAME` sends protobuf, which kube-sim
/// does not speak; a manifest goes as JSON.)
async fn kubectl_create_namespace(kubeconfig: &Path, name: &str) {
    let mut manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
    if harness::on_real_cluster() {
        // Labelled as the harness's own namespaces are (`kubectl delete ns -l meshery.io/e2e`).
        manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{}: 'true'}}}}\n",
            harness::NAMESPACE_LABEL
        );
    }
    kubectl_ok(kubeconfig, &["create", "-f", "-"], Some(&manifest)).await;
}

/// The value of the sample `series` (name and labels exactly as exposed) in a metrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Events of the events.k8s.io/v1 API in `namespace` about the object named `regarding`.
///
/// The operator publishes through events.k8s.io/v1. A real API server serves the same Events as
/// core/v1 too, so plain `kubectl get events` lists them; kube-sim stores the two groups apart and
/// answers an empty core/v1 list, so these tests ask for the events.k8s.io resource by name.
async fn events_about(
    kubeconfig: &Path,
    namespace: &str,
    regarding: &str,
) -> Vec<serde_json::Value> {
    let json = kubectl_ok(
        kubeconfig,
        &[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            namespace,
            "-o",
            "json",
        ],
        None,
    )
    .await;
    let list: serde_json::Value = serde_json::from_str(&json).expect("kubectl prints JSON");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        // About the CR, not the StatefulSet of the same name (whose controller reports too on a
        // real cluster).
        .filter(|event| {
            event["regarding"]["name"] == regarding
                && event["regarding"]["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("meshery.io/"))
        })
        .collect()
}

/// Whether `text` contains something shaped like a generated broker token (`t` + 64 hex digits).
fn contains_token_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(65).any(|w| {
        w[0] == b't'
            && w[1..]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    })
}

/// Makes `meshery-broker` valid for the schema but invalid for the operator (three unclustered
/// replicas) and waits until it is Degraded.
async fn make_broker_invalid(cluster: &Cluster, ns: &str) {
    cluster
        .apply_yaml::<Broker>(&broker_yaml(ns).replace(
            "spec: {size: 1}",
            "spec: {size: 3, clustering: {enabled: false}}",
        ))
        .await;
    cluster
        .wait_for_broker_phase(ns, "meshery-broker", Phase::Degraded, WAIT)
        .await;
}

/// A sim (or the real cluster) with the CRDs and a `meshery` namespace (made with kubectl; per test
/// on a real cluster), its kubeconfig, and the namespace's name.
async fn cluster_with_meshery_namespace() -> (Cluster, PathBuf, String) {
    let cluster = Cluster::start().await;
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let ns = kubectl_create_test_namespace(&cluster, "meshery").await;
    (cluster, kubeconfig, ns)
}

/// The operator running against a fresh cluster, and the test's Broker Ready.
async fn operator_with_ready_broker() -> (Cluster, PathBuf, String, Operator) {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let operator = Operator::start(&kubeconfig, &[], &[]);
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    (cluster, kubeconfig, ns, operator)
}

/// Creates the namespace the test calls `logical` with kubectl; deleted with the cluster on a real one.
async fn kubectl_create_test_namespace(cluster: &Cluster, logical: &str) -> String {
    let ns = cluster.ns(logical);
    cluster.track_namespace(&ns);
    kubectl_create_namespace(cluster.kubeconfig_path(), &ns).await;
    ns
}

/// `BROKER` in namespace `ns` (`meshery` against kube-sim, a per-test namespace on a real cluster).
fn broker_yaml(ns: &str) -> String {
    BROKER.replace("namespace: meshery", &format!("namespace: {ns}"))
}

async fn lease_holder(cluster: &Cluster, ns: &str) -> Option<String> {
    let leases: Api<Lease> = cluster.api(ns);
    leases
        .get_opt("meshery-operator")
        .await
        .expect("reading the Lease")
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// The real binary against the sim, driven with kubectl as a platform engineer would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_kubectl_and_stops_gracefully_on_sigterm() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let mut operator = Operator::start(&kubeconfig, &[], &[]);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/meshery-broker.yaml");
    if cluster.is_real() {
        // The example names namespace `meshery`: applied into this test's namespace instead.
        let manifest = std::fs::read_to_string(example)
            .expect("the example")
            .replace("namespace: meshery", &format!("namespace: {ns}"));
        kubectl_ok(
            &kubeconfig,
            &["apply", "--server-side", "-f", "-"],
            Some(&manifest),
        )
        .await;
    } else {
        kubectl_ok(
            &kubeconfig,
            &["apply", "--server-side", "-f", example],
            None,
        )
        .await;
    }
    let timeout = format!("--timeout={}s", scaled(Duration::from_secs(60)).as_secs());
    kubectl_ok(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "broker/meshery-broker",
            "-n",
            &ns,
            &timeout,
        ],
        None,
    )
    .await;
    // On a real cluster the EXTERNAL column needs a LoadBalancer implementation.
    let external = cluster
        .broker_with_external_endpoint(&ns, "meshery-broker", "the EXTERNAL column's address")
        .await
        .is_some();

    let table = kubectl_ok(&kubeconfig, &["get", "brokers", "-n", &ns], None).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SIZE", "PHASE", "INTERNAL", "EXTERNAL", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(
        row[..4],
        [
            "meshery-broker",
            "1",
            "Ready",
            format!("meshery-broker.{ns}.svc.cluster.local:4222").as_str()
        ],
        "{table}"
    );
    if external {
        assert!(
            row[4].ends_with(":4222"),
            "the LoadBalancer address: {table}"
        );
    }

    let short = kubectl_ok(&kubeconfig, &["get", "br", "-n", &ns], None).await;
    assert!(
        short
            .lines()
            .any(|l| l.starts_with("meshery-broker ") && l.contains(" Ready ")),
        "{short}"
    );
    let category = kubectl_ok(&kubeconfig, &["get", "meshery", "-n", &ns], None).await;
    assert!(
        category
            .lines()
            .any(|l| l.starts_with("broker.meshery.io/meshery-broker ") && l.contains(" Ready ")),
        "{category}"
    );

    operator.sigterm();
    let status = operator.exited_within(Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "exit after SIGTERM: {status}; log:\n{}",
        operator.logs()
    );
    let logs = operator.logs();
    assert!(logs.contains("SIGTERM: shutting down"), "{logs}");
    drop(cluster);
}

/// `/readyz` fails until the caches are synced, `/healthz` passes, and `/metrics` counts the work
/// with the names dashboards use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_caches_and_metrics_count_the_work() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    // Hold up the first listing of Brokers so the not-yet-synced state is observable.
    let delayed = cluster.require_sim(
        "/readyz failing before the caches synced: kube-sim delays the first list of Brokers on demand",
    );
    if let Some(sim) = delayed {
        sim.inject(Fault::delay(
            Some("list"),
            "/brokers",
            Duration::from_secs(3),
        ));
    }
    let operator = Operator::start(&kubeconfig, &[], &[]);

    if delayed.is_some() {
        let (code, body) = operator.get("/readyz").await;
        assert_eq!(code, 503, "/readyz before the caches synced: {body}");
        assert!(body.contains("caches"), "{body}");
    }
    let (code, body) = operator.get("/healthz").await;
    assert_eq!(code, 200, "/healthz: {body}");
    eventually(WAIT, "/readyz turns 200", || async {
        operator.get("/readyz").await.0 == 200
    })
    .await;

    // The first status write fails: a retried reconcile error, counted by kind.
    let failed_write = cluster.require_sim(
        "the failed status write counted as a reconcile error: kube-sim injects the 500",
    );
    if let Some(sim) = failed_write {
        sim.inject(Fault::status(
            Some("patch"),
            "/brokers/meshery-broker/status",
            500,
        ));
    }
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let ready_gauge = r#"meshery_operator_resources{controller="broker",phase="Ready"}"#;
    eventually(WAIT, "the Ready gauge counts the Broker", || async {
        sample(&operator.metrics().await, ready_gauge) == Some(1.0)
    })
    .await;

    let metrics = operator.metrics().await;
    let reconciles = sample(
        &metrics,
        r#"meshery_operator_reconcile_total{controller="broker"}"#,
    )
    .expect("reconcile_total for broker");
    assert!(reconciles > 0.0, "{metrics}");
    let timed = sample(
        &metrics,
        r#"meshery_operator_reconcile_duration_seconds_count{controller="broker"}"#,
    )
    .expect("the duration histogram");
    assert!(timed > 0.0, "{metrics}");
    for kind in [
        "StatefulSet",
        "Service",
        "ConfigMap",
        "Secret",
        "Broker/status",
    ] {
        let series = format!(r#"meshery_operator_api_writes_total{{kind="{kind}",verb="apply"}}"#);
        assert!(
            sample(&metrics, &series).is_some_and(|n| n >= 1.0),
            "{series} missing from\n{metrics}"
        );
    }
    if failed_write.is_some() {
        assert_eq!(
            sample(
                &metrics,
                r#"meshery_operator_reconcile_errors_total{controller="broker",error="StatusWrite"}"#
            ),
            Some(1.0),
            "{metrics}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            r#"meshery_operator_resources{controller="broker",phase="Pending"}"#
        ),
        Some(0.0),
        "{metrics}"
    );
    let (code, _) = operator.get("/healthz").await;
    assert_eq!(code, 200);
}

/// Every phase change is an Event on the Broker; an invalid spec is a Warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_changes_are_events_and_an_invalid_spec_is_a_warning() {
    let (cluster, kubeconfig, ns, _operator) = operator_with_ready_broker().await;
    let events = events_about(&kubeconfig, &ns, "meshery-broker").await;
    let ready = events
        .iter()
        .find(|e| e["reason"] == "Ready")
        .unwrap_or_else(|| panic!("no Ready event in {events:#?}"));
    assert_eq!(ready["type"], "Normal");
    assert_eq!(ready["regarding"]["kind"], "Broker");
    assert_eq!(ready["reportingController"], "meshery-operator");

    // Valid for the schema, invalid for the operator: three unclustered replicas.
    make_broker_invalid(&cluster, &ns).await;
    eventually(WAIT, "a Degraded event", || async {
        events_about(&kubeconfig, &ns, "meshery-broker")
            .await
            .iter()
            .any(|e| e["reason"] == "Degraded")
    })
    .await;
    let events = events_about(&kubeconfig, &ns, "meshery-broker").await;
    let warning = events.iter().find(|e| e["reason"] == "Degraded").unwrap();
    assert_eq!(warning["type"], "Warning", "{warning:#}");
}

/// A new Broker whose spec is invalid never deploys, so its phase stays Pending: a Warning Event
/// still says why, naming the field, for `kubectl describe` and `kubectl get events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_broker_with_an_invalid_spec_gets_a_warning_event_naming_the_field() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let _operator = Operator::start(&kubeconfig, &[], &[]);
    cluster
        .apply_yaml::<Broker>(&broker_yaml(&ns).replace(
            "spec: {size: 1}",
            "spec: {size: 3, clustering: {enabled: false}}",
        ))
        .await;
    let pending = cluster
        .wait_for(&ns, "meshery-broker", WAIT, |b: &Broker| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "InvalidSpec")
            })
        })
        .await;
    assert_eq!(pending.status.unwrap().phase, Some(Phase::Pending));
    let mut events = Vec::new();
    for _ in 0..30 {
        events = events_about(&kubeconfig, &ns, "meshery-broker").await;
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warning = events
        .iter()
        .find(|e| e["type"] == "Warning")
        .unwrap_or_else(|| panic!("no Warning event for an invalid spec: {events:#?}"));
    let note = warning["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("InvalidSpec") && note.contains("spec.clustering.enabled"),
        "{warning:#}"
    );
}

/// The same Event again (the same invalid spec, after a valid one in between) is counted on the
/// first one's series, as `kubectl describe` shows repeats, instead of a second Event object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_is_counted_on_the_first_ones_series() {
    let (cluster, kubeconfig, ns, _operator) = operator_with_ready_broker().await;
    for _ in 0..2 {
        make_broker_invalid(&cluster, &ns).await;
        cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
        cluster
            .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
            .await;
    }
    let degraded_events = || async {
        events_about(&kubeconfig, &ns, "meshery-broker")
            .await
            .into_iter()
            .filter(|e| e["reason"] == "Degraded")
            .collect::<Vec<_>>()
    };
    eventually(WAIT, "the repeat counted on the series", || async {
        let degraded = degraded_events().await;
        degraded.len() == 1 && degraded[0]["series"]["count"] == 2
    })
    .await;
    let degraded = degraded_events().await;
    assert!(
        degraded[0]["series"]["lastObservedTime"].is_string(),
        "{:#}",
        degraded[0]
    );
}

/// The generated token stays in its Secret: not in the logs (JSON, debug level), the Events, the
/// Broker's status or the metrics — and dry-run logs show none either.
/// The CRs-by-phase gauge follows phase changes within moments, not at the next resync (five
/// minutes by default; it used to be refreshed only then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phase_gauge_follows_phase_changes_between_resyncs() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let operator = Operator::start(&kubeconfig, &["--resync-seconds", "300"], &[]);
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let gauge = |phase: &str| {
        format!(r#"meshery_operator_resources{{controller="broker",phase="{phase}"}}"#)
    };
    eventually(
        Duration::from_secs(5),
        "the Ready gauge counts the Broker",
        || async { sample(&operator.metrics().await, &gauge("Ready")) == Some(1.0) },
    )
    .await;
    make_broker_invalid(&cluster, &ns).await;
    eventually(
        Duration::from_secs(5),
        "the gauge moves to Degraded",
        || async {
            let metrics = operator.metrics().await;
            sample(&metrics, &gauge("Degraded")) == Some(1.0)
                && sample(&metrics, &gauge("Ready")) == Some(0.0)
        },
    )
    .await;
}

/// Text logs written to a file (as `kubectl logs` and log collectors read them) carry no colour
/// escape codes; they used to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_file_carry_no_colour_codes() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let operator = Operator::start(&kubeconfig, &["--log-format", "text"], &[]);
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let logs = operator.logs();
    assert!(logs.contains("applied"), "{logs}");
    assert!(!logs.contains('\x1b'), "escape codes in:\n{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_logs_events_status_or_metrics() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let operator = Operator::start(
        &kubeconfig,
        &[],
        &[("RUST_LOG", "info,meshery_operator=debug,kube=warn")],
    );
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let token = cluster.broker_token(&ns, "meshery-broker").await;
    assert!(
        contains_token_shape(&token),
        "the token's shape: {} chars",
        token.len()
    );

    // An invalid spec takes the failure path too: its status, Warning Event and logs.
    make_broker_invalid(&cluster, &ns).await;

    let logs = operator.logs();
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "--log-format json prints one JSON object per line:\n{logs}"
    );
    // Structured logs carry the CR in a span.
    let applied: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "applied")
        .collect();
    assert!(!applied.is_empty(), "{logs}");
    for line in &applied {
        assert_eq!(
            (&line["span"]["broker"], &line["span"]["namespace"]),
            (
                &serde_json::json!("meshery-broker"),
                &serde_json::json!(&ns)
            ),
            "{line}"
        );
    }
    let events = kubectl_ok(
        &kubeconfig,
        &["get", "events.v1.events.k8s.io", "-n", &ns, "-o", "json"],
        None,
    )
    .await;
    let broker = kubectl_ok(
        &kubeconfig,
        &["get", "broker", "meshery-broker", "-n", &ns, "-o", "json"],
        None,
    )
    .await;
    let metrics = operator.metrics().await;
    for (what, text) in [
        ("the logs", &logs),
        ("the Events", &events),
        ("the Broker", &broker),
        ("/metrics", &metrics),
    ] {
        assert!(!text.contains(&token), "the token is in {what}:\n{text}");
        assert!(
            !contains_token_shape(text),
            "a token-shaped string is in {what}:\n{text}"
        );
    }
    drop(operator);

    // Dry-run logs every planned write, the auth Secret included: masked.
    let second = broker_yaml(&ns).replace("name: meshery-broker", "name: dry-broker");
    cluster.apply_yaml::<Broker>(&second).await;
    let dry_run = Operator::start(&kubeconfig, &["--dry-run"], &[]);
    eventually(WAIT, "dry-run logs the planned Secret", || async {
        dry_run
            .logs()
            .contains(&format!("Secret {ns}/dry-broker-auth"))
    })
    .await;
    let logs = dry_run.logs();
    assert!(logs.contains("dry-run: would create"), "{logs}");
    assert!(
        !logs.contains(&token),
        "the first broker's token in dry-run logs"
    );
    assert!(
        !contains_token_shape(&logs),
        "a generated token in dry-run logs:\n{logs}"
    );
}

/// `--namespace a` reconciles a Broker in `a` and leaves one in `b` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_flag_scopes_reconciliation() {
    let cluster = Cluster::start().await;
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let a = kubectl_create_test_namespace(&cluster, "a").await;
    let b = kubectl_create_test_namespace(&cluster, "b").await;
    for namespace in [&a, &b] {
        cluster.apply_yaml::<Broker>(&broker_yaml(namespace)).await;
    }
    if let Some(sim) = cluster.sim() {
        sim.reset_stats();
    }
    let b_before = cluster.real_resource_versions(&[&b]).await;
    let _operator = Operator::start(&kubeconfig, &["--namespace", &a], &[]);
    cluster
        .wait_for_broker_phase(&a, "meshery-broker", Phase::Ready, WAIT)
        .await;
    // Several resyncs later, b is still as the user left it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let in_b: Vec<String> = match cluster.sim() {
        Some(sim) => sim
            .stats()
            .real_writes()
            .iter()
            .filter(|w| w.namespace.as_deref() == Some(b.as_str()))
            .map(|w| format!("{} {} {:?}", w.verb, w.resource, w.name))
            .collect(),
        // No request log on a real cluster: b's objects kept their resourceVersions.
        None => changed_objects(
            b_before.as_ref().unwrap(),
            &cluster.resource_versions(&[&b]).await,
        ),
    };
    assert_eq!(in_b, Vec::<String>::new(), "writes in namespace b");
    let untouched: Broker = cluster.api(&b).get("meshery-broker").await.unwrap();
    assert!(untouched.status.is_none(), "{:#?}", untouched.status);
    assert!(
        cluster
            .api::<StatefulSet>(&b)
            .get_opt("meshery-broker")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cluster
            .api::<Service>(&b)
            .get_opt("meshery-broker")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cluster
            .api::<ConfigMap>(&b)
            .get_opt("meshery-broker-config")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cluster
            .api::<Secret>(&b)
            .get_opt("meshery-broker-auth")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cluster
            .api::<StatefulSet>(&a)
            .get_opt("meshery-broker")
            .await
            .unwrap()
            .is_some()
    );
}

/// Two replicas with `--leader-elect`: only the Lease holder reconciles; the standby is ready and
/// idle; when the leader is stopped the standby takes over and keeps reconciling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_the_standby_takes_over() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let elect = ["--leader-elect"];
    let mut first = Operator::start(
        &kubeconfig,
        &elect,
        &[("POD_NAME", "operator-a"), ("POD_NAMESPACE", &ns)],
    );
    eventually(WAIT, "operator-a holds the Lease", || async {
        lease_holder(&cluster, &ns).await.as_deref() == Some("operator-a")
    })
    .await;
    let second = Operator::start(
        &kubeconfig,
        &elect,
        &[("POD_NAME", "operator-b"), ("POD_NAMESPACE", &ns)],
    );
    eventually(WAIT, "operator-b waits for the Lease", || async {
        second.logs().contains("waiting to become the leader")
    })
    .await;

    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let reconciles = r#"meshery_operator_reconcile_total{controller="broker"}"#;
    assert!(sample(&first.metrics().await, reconciles).unwrap() > 0.0);
    assert_eq!(
        sample(&second.metrics().await, reconciles),
        Some(0.0),
        "the standby reconciled"
    );
    let events = events_about(&kubeconfig, &ns, "meshery-broker").await;
    assert!(!events.is_empty());
    for event in &events {
        assert_eq!(event["reportingInstance"], "operator-a", "{event:#}");
    }
    let (code, body) = second.get("/readyz").await;
    assert_eq!(
        code, 200,
        "a standby replica is ready (idle is its job): {body}"
    );

    // The leader goes away; the standby takes over within the Lease duration.
    first.sigterm();
    let status = first.exited_within(Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "leader exit: {status}; log:\n{}",
        first.logs()
    );
    eventually(
        Duration::from_secs(45),
        "operator-b takes the Lease",
        || async { lease_holder(&cluster, &ns).await.as_deref() == Some("operator-b") },
    )
    .await;
    cluster
        .apply_yaml::<Broker>(
            &broker_yaml(&ns).replace("name: meshery-broker", "name: second-broker"),
        )
        .await;
    cluster
        .wait_for_broker_phase(&ns, "second-broker", Phase::Ready, WAIT)
        .await;
    assert!(sample(&second.metrics().await, reconciles).unwrap() > 0.0);
    let events = events_about(&kubeconfig, &ns, "second-broker").await;
    assert!(
        events
            .iter()
            .any(|e| e["reportingInstance"] == "operator-b" && e["reason"] == "Ready"),
        "{events:#?}"
    );
}

/// SIGTERM stops a standby replica promptly and cleanly, and a leader that stops hands the Lease
/// back rather than leaving it to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_standby_promptly_and_the_leader_releases_the_lease() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let elect = ["--leader-elect"];
    let mut leader = Operator::start(
        &kubeconfig,
        &elect,
        &[("POD_NAME", "operator-a"), ("POD_NAMESPACE", &ns)],
    );
    eventually(WAIT, "operator-a holds the Lease", || async {
        lease_holder(&cluster, &ns).await.as_deref() == Some("operator-a")
    })
    .await;
    let mut standby = Operator::start(
        &kubeconfig,
        &elect,
        &[("POD_NAME", "operator-c"), ("POD_NAMESPACE", &ns)],
    );
    eventually(WAIT, "operator-c waits for the Lease", || async {
        standby.logs().contains("waiting to become the leader")
    })
    .await;
    standby.sigterm();
    let status = standby.exited_within(Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "standby exit after SIGTERM: {status}; log:\n{}",
        standby.logs()
    );

    leader.sigterm();
    let status = leader.exited_within(Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "leader exit after SIGTERM: {status}; log:\n{}",
        leader.logs()
    );
    assert_eq!(
        lease_holder(&cluster, &ns).await,
        None,
        "the stopped leader still holds the Lease"
    );
}

/// A leader whose Lease is taken by someone else stops reconciling and exits with an error, so
/// that its pod restarts as a standby instead of acting alongside the new holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_exits_with_an_error() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let mut leader = Operator::start(
        &kubeconfig,
        &["--leader-elect"],
        &[("POD_NAME", "operator-a"), ("POD_NAMESPACE", &ns)],
    );
    eventually(WAIT, "operator-a holds the Lease", || async {
        lease_holder(&cluster, &ns).await.as_deref() == Some("operator-a")
    })
    .await;
    // Another holder, as after a network partition: it renewed just now. A Lease's times are
    // MicroTime: the API server accepts exactly six fractional digits.
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let takeover = serde_json::json!({"spec": {
        "holderIdentity": "someone-else",
        "acquireTime": now,
        "renewTime": now,
        "leaseDurationSeconds": 60,
    }});
    let leases: Api<Lease> = cluster.api(&ns);
    leases
        .patch(
            "meshery-operator",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&takeover),
        )
        .await
        .expect("taking the Lease over");
    let status = leader.exited_within(Duration::from_secs(40)).await;
    assert!(!status.success(), "exit after losing the Lease: {status}");
    let logs = leader.logs();
    assert!(logs.contains("lost the leader lease"), "{logs}");
    assert_eq!(
        lease_holder(&cluster, &ns).await.as_deref(),
        Some("someone-else")
    );
}

/// A short API server outage is not a liveness failure: `/healthz` stays 200 and reconciling
/// resumes once the API server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_api_outage_keeps_healthz_and_reconciling_resumes() {
    if skip_whole_test_on_real_cluster(
        "the outage is kube-sim's listener going down for 3 s (down_for); a real API server is not \
         taken down by a test",
    ) {
        return;
    }
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let operator = Operator::start(&kubeconfig, &[], &[]);
    eventually(WAIT, "/readyz turns 200", || async {
        operator.get("/readyz").await.0 == 200
    })
    .await;
    cluster.sim.down_for(Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, body) = operator.get("/healthz").await;
    assert_eq!(code, 200, "/healthz during a short outage: {body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let (code, body) = operator.get("/healthz").await;
    assert_eq!(code, 200, "/healthz after the outage: {body}");
}

/// A sweep the API server refuses (here a 403 on deleting a deleted MeshSync's ClusterRole, as
/// when the operator's own RBAC went first) says why in a warning and counts a `SweepFailed`
/// error; the next sweep deletes what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sweep_warns_with_the_reason_and_the_next_sweep_finishes_it() {
    let (cluster, kubeconfig, ns) = cluster_with_meshery_namespace().await;
    let Some(sim) = cluster.require_sim("the refused delete: kube-sim injects the 403") else {
        return;
    };
    let operator = Operator::start(&kubeconfig, &[], &[]);
    let meshsync = format!(
        "
apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {{name: swept, namespace: {ns}}}
spec:
  size: 1
  broker: {{custom: {{url: 'nats://nats.example:4222'}}}}
"
    );
    cluster.apply_yaml::<MeshSync>(&meshsync).await;
    cluster
        .wait_for_meshsync_phase(&ns, "swept", Phase::Ready, WAIT)
        .await;
    let rbac = format!("meshery-meshsync-{ns}-swept");
    sim.inject(Fault::status(Some("delete"), &format!("/clusterroles/{rbac}"), 403).times(2));
    cluster
        .api::<MeshSync>(&ns)
        .delete("swept", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "a warning that names the refused delete", || async {
        operator.logs().lines().any(|line| {
            line.contains("could not sweep") && line.contains("WARN") && line.contains(&rbac)
        })
    })
    .await;
    let errors =
        r#"meshery_operator_reconcile_errors_total{controller="meshsync",error="SweepFailed"}"#;
    assert!(
        sample(&operator.metrics().await, errors).is_some_and(|n| n >= 1.0),
        "{errors} counts the refused sweep"
    );
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    eventually(WAIT, "a later sweep deletes the ClusterRole", || async {
        roles.get_opt(&rbac).await.unwrap().is_none()
    })
    .await;
}
