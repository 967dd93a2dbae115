//! Replacing the Go Meshery Operator in place, against the real control plane with the real Go
//! operator (v1.0.5, built from its module by test-cluster/build.sh): the "before" state is what
//! it really makes from the seed CRs. Then, as the README's migration section tells a user: our
//! CRDs, our chart without its default CRs, our operator — which stands aside while the Go one
//! holds its Lease, and adopts both CRs once it is stopped. And the way back.
//!
//! The adoption rules themselves (look-alike objects untouched, the token kept) also run on
//! kube-sim, with the Go operator's objects made by the test.

mod chart_support;
mod harness;
mod real_cluster_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Cluster, OPERATOR_NAMESPACE, audited_requests, eventually, scaled, skip_notice};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use meshery_operator::api::{Broker, Phase};
use meshery_operator::migrate::{GO_BROKER_FINALIZER, GO_LEASE_NAME};
use real_cluster_support::{
    Operator, RestoreHarnessOnDrop, kubectl, kubectl_ok, kubectl_timeout,
    remove_operator_installation, service_account_kubeconfig_for, start_installed_operator,
    wait_for_default_crs_ready,
};
use serde_json::{Value, json};

/// The identity the Go operator runs as here (its own chart names it `meshery-operator`, as ours
/// does; a separate name keeps the two apart in the audit log).
const GO_SERVICE_ACCOUNT: &str = "meshery-go-operator";

/// The Go operator process, stopped (SIGTERM) on drop; its log is printed when the test fails.
struct GoOperator {
    child: Child,
    log: PathBuf,
}

impl GoOperator {
    /// Runs it as its manifests do (leader election in `meshery`), minus what needs a pod: no
    /// conversion webhook (its CRDs use conversion None), metrics and probes off.
    fn start(kubeconfig: &Path, log: &Path) -> GoOperator {
        let child = Command::new(go_operator_binary())
            .env("ENABLE_WEBHOOKS", "false")
            .env("KUBECONFIG", kubeconfig)
            .args([
                "--metrics-addr=0",
                "--health-probe-bind-address=0",
                "--enable-leader-election",
                "--namespace",
                OPERATOR_NAMESPACE,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("starting the Go Meshery Operator");
        GoOperator {
            child,
            log: log.to_path_buf(),
        }
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for GoOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "Go operator log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// `meshery-operator-go` from PATH (scripts/install-and-test.sh puts the build cache's bin first).
fn go_operator_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("meshery-operator-go"))
        .find(|candidate| candidate.exists())
        .expect("meshery-operator-go on PATH: run test-cluster/build.sh and put its bin directory on PATH")
}

/// The Go operator's own CRDs, which build.sh keeps beside its binary.
fn go_operator_crds() -> PathBuf {
    let binary = std::fs::canonicalize(go_operator_binary()).unwrap();
    binary.parent().unwrap().join("crds")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn apply_crds(kubeconfig: &Path, dir: &Path) {
    kubectl_ok(
        kubeconfig,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            dir.to_str().unwrap(),
        ],
    );
    kubectl_ok(
        kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "crd/brokers.meshery.io",
            "crd/meshsyncs.meshery.io",
            "--timeout=30s",
        ],
    );
}

/// What installing the Go operator (its chart) provides: its CRDs, the namespace, the
/// ServiceAccount its MeshSync pods use, and the test's identity for the Go operator, bound to
/// cluster-admin.
fn go_operator_prerequisites(kubeconfig: &Path, dir: &Path) {
    apply_crds(kubeconfig, &go_operator_crds());
    let setup = write(
        dir,
        "go-operator.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {OPERATOR_NAMESPACE}}}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: meshery-operator, namespace: {OPERATOR_NAMESPACE}}}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {GO_SERVICE_ACCOUNT}, namespace: {OPERATOR_NAMESPACE}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {GO_SERVICE_ACCOUNT}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\n\
             subjects: [{{kind: ServiceAccount, name: {GO_SERVICE_ACCOUNT}, namespace: {OPERATOR_NAMESPACE}}}]\n"
        ),
    );
    kubectl_ok(kubeconfig, &["apply", "--server-side", "-f", &setup]);
}

/// The Go operator's world: [`go_operator_prerequisites`], the seed CRs, and the Go operator
/// itself. Returns once it made both CRs Ready.
fn go_operator_installed(kubeconfig: &Path, dir: &Path) -> GoOperator {
    go_operator_prerequisites(kubeconfig, dir);

    // The seeds' CRs, as the Go operator's own samples have them.
    let seeds = write(
        dir,
        "seeds.yaml",
        &format!(
            "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {{name: meshery-broker, namespace: {OPERATOR_NAMESPACE}}}\n\
             spec: {{size: 1}}\n---\n\
             apiVersion: meshery.io/v1alpha1\nkind: MeshSync\nmetadata: {{name: meshery-meshsync, namespace: {OPERATOR_NAMESPACE}}}\n\
             spec: {{size: 1, broker: {{native: {{name: meshery-broker, namespace: {OPERATOR_NAMESPACE}}}}}}}\n"
        ),
    );
    kubectl_ok(kubeconfig, &["apply", "--server-side", "-f", &seeds]);
    let go_kubeconfig = service_account_kubeconfig_for(kubeconfig, dir, GO_SERVICE_ACCOUNT);
    let go = GoOperator::start(&go_kubeconfig, &dir.join("go-operator.log"));
    wait_for_default_crs_ready(kubeconfig, Duration::from_secs(90));
    go
}

/// Our operator installed the README's way for a cluster that already has CRs: our CRDs
/// (`--force-conflicts` takes them over from the Go operator's install), the chart without its
/// default CRs, and the operator binary as the chart's Deployment runs it.
fn ours_installed(kubeconfig: &Path, dir: &Path) -> (Operator, String) {
    apply_crds(kubeconfig, &chart_support::repo().join("crds"));
    let values = json!({
        "meshery-broker": {"enabled": false},
        "meshery-meshsync": {"enabled": false},
    });
    let chart = write(
        dir,
        "chart.yaml",
        &chart_support::render_yaml(Some(&values)),
    );
    kubectl_ok(
        kubeconfig,
        &[
            "apply",
            "--server-side",
            "--field-manager=helm",
            "-f",
            &chart,
        ],
    );
    let operator = start_installed_operator(
        kubeconfig,
        dir,
        "meshery-operator-7d9c6b5f4-m1gr8",
        &["--broker-probe=off"],
    );
    (operator, chart)
}

/// `GET path` on a local port: the status code and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn get_json(kubeconfig: &Path, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-n", OPERATOR_NAMESPACE, "-o", "json"]);
    serde_json::from_str(&kubectl_ok(kubeconfig, &all)).unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// The release namespace's StatefulSets are exactly `name`: one NATS server, not two.
fn assert_only_statefulset(kubeconfig: &Path, name: &str, why: &str) {
    assert_eq!(
        names(&get_json(kubeconfig, &["statefulsets"])),
        [name],
        "{why}"
    );
}

fn secret_token(kubeconfig: &Path, secret: &str) -> String {
    let token = kubectl_ok(
        kubeconfig,
        &[
            "get",
            "secret",
            secret,
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            "jsonpath={.data.token}",
        ],
    );
    assert!(!token.is_empty(), "Secret {secret} has a token");
    token
}

/// Waits until both seed CRs are Ready under our operator (our `status.phase`); returns how long.
fn wait_ours_ready(kubeconfig: &Path, timeout: Duration) -> Duration {
    let started = Instant::now();
    kubectl_ok(
        kubeconfig,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Ready",
            "broker/meshery-broker",
            "meshsync/meshery-meshsync",
            "-n",
            OPERATOR_NAMESPACE,
            &kubectl_timeout(timeout),
        ],
    );
    started.elapsed()
}

/// The writes (not reads, not dry runs) `user` made since `since`, leaving out Leases (leader
/// election) and Events: what would be a fight over the CRs and their children.
fn writes_by(user: &str, since: jiff::Timestamp) -> Vec<String> {
    audited_requests(user, since)
        .expect("the audit log (MESHERY_E2E_AUDIT_LOG) on the real control plane")
        .into_iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .filter(|r| !r.dry_run && r.resource != "leases" && r.resource != "events")
        .map(|r| {
            format!(
                "{} {} {}/{}",
                r.verb,
                r.resource_name(),
                r.namespace,
                r.name
            )
        })
        .collect()
}

/// On drop, also when the test fails: takes every finalizer off the CRs in the release
/// namespace, so that removing it (the harness's restore) cannot hang on a Go finalizer whose
/// operator is gone.
struct StripFinalizersOnDrop(PathBuf);

impl Drop for StripFinalizersOnDrop {
    fn drop(&mut self) {
        for kind in ["brokers", "meshsyncs"] {
            let found = kubectl(
                &self.0,
                &["get", kind, "-n", OPERATOR_NAMESPACE, "-o", "name"],
            );
            for name in String::from_utf8_lossy(&found.stdout).split_whitespace() {
                let _ = kubectl(
                    &self.0,
                    &[
                        "patch",
                        name,
                        "-n",
                        OPERATOR_NAMESPACE,
                        "--type=merge",
                        "-p",
                        r#"{"metadata":{"finalizers":null}}"#,
                    ],
                );
            }
        }
    }
}

fn seconds_since(start: jiff::Timestamp) -> f64 {
    (jiff::Timestamp::now() - start)
        .total(jiff::Unit::Second)
        .unwrap_or_default()
}

/// The real cluster with its release namespace emptied for the Go operator's world; on drop the
/// CRs' finalizers go, then the harness's namespace is restored (fields drop in this order).
struct ReleaseNamespace {
    _strip: StripFinalizersOnDrop,
    _restore: RestoreHarnessOnDrop,
    cluster: Cluster,
    dir: tempfile::TempDir,
}

impl ReleaseNamespace {
    /// `None` (with a notice) on kube-sim: the Go operator runs only against the real control plane.
    async fn take() -> Option<ReleaseNamespace> {
        if !harness::on_real_cluster() {
            skip_notice("needs the real Go Meshery Operator on the real control plane");
            return None;
        }
        let cluster = Cluster::start().await;
        remove_operator_installation(&cluster.client).await;
        Some(ReleaseNamespace {
            _strip: StripFinalizersOnDrop(cluster.kubeconfig_path().to_path_buf()),
            _restore: RestoreHarnessOnDrop::new(cluster.kubeconfig_path()),
            dir: tempfile::tempdir().unwrap(),
            cluster,
        })
    }

    fn kubeconfig(&self) -> PathBuf {
        self.cluster.kubeconfig_path().to_path_buf()
    }
}

fn service_account_user(name: &str) -> String {
    format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{name}")
}

/// Go operator Ready → ours installed beside it (it stands aside) → Go operator stopped → ours
/// adopts both CRs: one NATS StatefulSet, the token kept, the Go finalizers and conditions gone,
/// and the namespace deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_stands_aside_for_the_go_operator_then_adopts_its_crs() {
    let Some(release) = ReleaseNamespace::take().await else {
        return;
    };
    let (kubeconfig, dir) = (release.kubeconfig(), &release.dir);

    tokio::task::block_in_place(|| {
        let go = go_operator_installed(&kubeconfig, dir.path());
        assert_only_statefulset(&kubeconfig, "meshery-nats", "what the Go operator made");
        let token = secret_token(&kubeconfig, "meshery-nats-auth");
        let broker = get_json(&kubeconfig, &["broker", "meshery-broker"]);
        assert_eq!(
            broker["metadata"]["finalizers"],
            json!([GO_BROKER_FINALIZER])
        );

        // The Go operator's own write rate, alone (it re-applies and re-writes status on every
        // reconcile, and its own writes trigger the next).
        let alone_started = jiff::Timestamp::now();
        std::thread::sleep(Duration::from_secs(20));
        let alone = writes_by(&service_account_user(GO_SERVICE_ACCOUNT), alone_started).len();
        let alone_seconds = seconds_since(alone_started);

        // Both operators at once: ours stands aside and says why.
        let installed = jiff::Timestamp::now();
        let (operator, _) = ours_installed(&kubeconfig, dir.path());
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        loop {
            if let Some((503, body)) = http_get(operator.health_port, "/readyz")
                && body.contains("Go Meshery Operator")
            {
                assert!(body.contains(GO_LEASE_NAME), "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never named the Go operator"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let deadline = Instant::now() + scaled(Duration::from_secs(20));
        while kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "events",
                "-n",
                OPERATOR_NAMESPACE,
                "--field-selector",
                "reason=GoOperatorRunning",
                "-o",
                "name",
            ],
        )
        .trim()
        .is_empty()
        {
            assert!(Instant::now() < deadline, "no GoOperatorRunning Event");
            std::thread::sleep(Duration::from_millis(250));
        }
        // Installing our CRDs makes the Go operator re-list and reconcile everything once; the
        // steady overlap is measured after that.
        std::thread::sleep(Duration::from_secs(5));
        let burst = writes_by(&service_account_user(GO_SERVICE_ACCOUNT), installed).len();
        let overlap_started = jiff::Timestamp::now();
        std::thread::sleep(Duration::from_secs(20));
        let overlap = seconds_since(overlap_started);
        assert!(
            writes_by(&service_account_user("meshery-operator"), installed).is_empty(),
            "ours wrote while standing aside"
        );
        let ours = writes_by(&service_account_user("meshery-operator"), overlap_started);
        let theirs = writes_by(&service_account_user(GO_SERVICE_ACCOUNT), overlap_started).len();
        let per_minute = |writes: usize, seconds: f64| writes as f64 * 60.0 / seconds;
        eprintln!(
            "writes per minute (Leases and Events aside): the Go operator alone {:.0}; both running: ours {:.0}, the Go operator {:.0} (after a one-time {burst} when our CRDs were applied)",
            per_minute(alone, alone_seconds),
            per_minute(ours.len(), overlap),
            per_minute(theirs, overlap)
        );
        assert!(ours.is_empty(), "ours stood aside, yet wrote: {ours:?}");
        assert!(
            per_minute(theirs, overlap) <= 2.0 * per_minute(alone, alone_seconds) + 6.0,
            "the Go operator writes more with ours beside it: {theirs} writes in {overlap:.0} s, {alone} in {alone_seconds:.0} s alone"
        );
        assert_only_statefulset(
            &kubeconfig,
            "meshery-nats",
            "ours made nothing while standing aside",
        );

        // The Go operator stops; ours adopts both CRs.
        go.stop();
        let took = wait_ours_ready(&kubeconfig, Duration::from_secs(60));
        eprintln!(
            "both CRs Ready under ours {took:?} after the Go operator stopped (its Lease expires after 15 s)"
        );
        assert!(took <= Duration::from_secs(60), "took {took:?}");
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        loop {
            let broker = get_json(&kubeconfig, &["broker", "meshery-broker"]);
            let meshsync = get_json(&kubeconfig, &["meshsync", "meshery-meshsync"]);
            let finalizers = [&broker, &meshsync]
                .iter()
                .flat_map(|cr| {
                    cr["metadata"]["finalizers"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .count();
            if finalizers == 0 {
                for cr in [&broker, &meshsync] {
                    let types: Vec<&str> = cr["status"]["conditions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["type"].as_str().unwrap())
                        .collect();
                    for go_only in ["Processing", "Failed", "Cleanup"] {
                        assert!(!types.contains(&go_only), "{go_only} left in {types:?}");
                    }
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Go finalizers stayed: {broker}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_only_statefulset(
            &kubeconfig,
            "meshery-broker",
            "exactly one NATS StatefulSet, ours",
        );
        for kind in ["services", "configmaps", "secrets"] {
            let left: Vec<String> = names(&get_json(&kubeconfig, &[kind]))
                .into_iter()
                .filter(|n| n.starts_with("meshery-nats"))
                .collect();
            assert!(left.is_empty(), "the Go operator's {kind} stayed: {left:?}");
        }
        assert_eq!(
            secret_token(&kubeconfig, "meshery-broker-auth"),
            token,
            "the broker token is kept"
        );
        // Meshery Server finds the broker by the Service name `meshery-broker` first.
        let service = get_json(&kubeconfig, &["service", "meshery-broker"]);
        assert_eq!(
            service["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "meshery-operator"
        );
        let deployment = get_json(&kubeconfig, &["deployment", "meshery-meshsync"]);
        assert_eq!(
            deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"], "meshery-operator",
            "our MeshSync Deployment replaced the Go one"
        );
        assert_ne!(
            deployment["spec"]["selector"]["matchLabels"],
            json!({"app": "meshery", "component": "meshsync"})
        );
        let adopted = kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "events",
                "-n",
                OPERATOR_NAMESPACE,
                "--field-selector",
                "reason=Adopted",
                "-o",
                "jsonpath={.items[*].involvedObject.kind}",
            ],
        );
        assert!(
            adopted.contains("Broker") && adopted.contains("MeshSync"),
            "{adopted}"
        );
        assert_eq!(
            http_get(operator.health_port, "/readyz").map(|(code, _)| code),
            Some(200)
        );

        // Nothing hangs on a Go finalizer any more.
        kubectl_ok(
            &kubeconfig,
            &[
                "delete",
                "namespace",
                OPERATOR_NAMESPACE,
                &kubectl_timeout(Duration::from_secs(60)),
            ],
        );
        operator.terminate();
    });
}

/// After adopting, the way back: ours removed and its children deleted (the token copied into
/// the Secret the Go operator reuses), the Go operator started again makes both CRs Ready, with
/// the same token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_to_the_go_operator_as_documented_works() {
    let Some(release) = ReleaseNamespace::take().await else {
        return;
    };
    let (kubeconfig, dir) = (release.kubeconfig(), &release.dir);

    tokio::task::block_in_place(|| {
        let go = go_operator_installed(&kubeconfig, dir.path());
        let token = secret_token(&kubeconfig, "meshery-nats-auth");
        go.stop();
        let (operator, chart) = ours_installed(&kubeconfig, dir.path());
        wait_ours_ready(&kubeconfig, Duration::from_secs(60));

        // The README's rollback, step by step.
        operator.terminate();
        kubectl_ok(&kubeconfig, &["delete", "-f", &chart, "--ignore-not-found"]);
        let ours = secret_token(&kubeconfig, "meshery-broker-auth");
        kubectl_ok(
            &kubeconfig,
            &[
                "create",
                "secret",
                "generic",
                "meshery-nats-auth",
                "-n",
                OPERATOR_NAMESPACE,
                &format!(
                    "--from-literal=token={}",
                    String::from_utf8(
                        meshery_operator::diff::decode_base64(&ours).expect("base64")
                    )
                    .unwrap()
                ),
            ],
        );
        kubectl_ok(
            &kubeconfig,
            &[
                "delete",
                "statefulsets,deployments,services,configmaps,secrets,serviceaccounts,poddisruptionbudgets,networkpolicies",
                "-n",
                OPERATOR_NAMESPACE,
                "-l",
                "app.kubernetes.io/managed-by=meshery-operator",
            ],
        );
        kubectl_ok(
            &kubeconfig,
            &[
                "delete",
                "clusterroles,clusterrolebindings",
                "-l",
                "app.kubernetes.io/managed-by=meshery-operator",
            ],
        );
        go_operator_prerequisites(&kubeconfig, dir.path());
        let go = GoOperator::start(
            &service_account_kubeconfig_for(&kubeconfig, dir.path(), GO_SERVICE_ACCOUNT),
            &dir.path().join("go-operator-again.log"),
        );
        let deadline = Instant::now() + scaled(Duration::from_secs(90));
        loop {
            // The Go operator's own Ready (its reason; ours never uses it).
            let ready = |cr: &Value| {
                cr["status"]["conditions"]
                    .as_array()
                    .is_some_and(|conditions| {
                        conditions.iter().any(|c| {
                            c["type"] == "Ready"
                                && c["status"] == "True"
                                && c["reason"] == "ReconciliationSuccessful"
                        })
                    })
            };
            let broker = get_json(&kubeconfig, &["broker", "meshery-broker"]);
            let meshsync = get_json(&kubeconfig, &["meshsync", "meshery-meshsync"]);
            if ready(&broker) && ready(&meshsync) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Go operator did not make both CRs Ready again: {broker} {meshsync}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_only_statefulset(
            &kubeconfig,
            "meshery-nats",
            "exactly one NATS StatefulSet, the Go operator's",
        );
        assert_eq!(
            secret_token(&kubeconfig, "meshery-nats-auth"),
            token,
            "the broker token survived the round trip"
        );
        // The Go operator removes its finalizers itself when the namespace goes.
        kubectl_ok(
            &kubeconfig,
            &[
                "delete",
                "namespace",
                OPERATOR_NAMESPACE,
                &kubectl_timeout(Duration::from_secs(60)),
            ],
        );
        go.stop();
        let _ = kubectl(
            &kubeconfig,
            &[
                "delete",
                "clusterrolebinding",
                GO_SERVICE_ACCOUNT,
                "--ignore-not-found",
            ],
        );
    });
}

/// On either substrate, with the Go operator's objects made by hand: adoption deletes only what
/// the adopted CR controls (a look-alike in another namespace, owned by nobody, stays), keeps the
/// Go token, and clears the finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_touches_only_what_the_go_operator_made_for_that_cr() {
    let mut cluster = Cluster::start().await;
    let namespace = cluster.create_ns("adopt").await;
    let lookalike_namespace = cluster.create_ns("lookalike").await;
    let brokers = cluster.api::<Broker>(&namespace);
    let broker: Broker = cluster
        .apply_yaml(&format!(
            "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata:\n  name: meshery-broker\n  namespace: {namespace}\n  finalizers: [{GO_BROKER_FINALIZER}, example.com/keep]\nspec: {{size: 1}}\n"
        ))
        .await;
    let uid = broker.metadata.uid.clone().unwrap();
    let owner = format!(
        "ownerReferences: [{{apiVersion: meshery.io/v1alpha1, kind: Broker, name: meshery-broker, uid: {uid}, controller: true}}]"
    );
    let go_token = "t0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let _: Secret = cluster
        .apply_yaml(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: meshery-nats-auth\n  namespace: {namespace}\n  {owner}\nstringData: {{token: {go_token}}}\n"
        ))
        .await;
    let _: ConfigMap = cluster
        .apply_yaml(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: meshery-nats-config\n  namespace: {namespace}\n  {owner}\ndata: {{nats.conf: \"port: 4222\"}}\n"
        ))
        .await;
    let _: ConfigMap = cluster
        .apply_yaml(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: meshery-nats-config\n  namespace: {lookalike_namespace}\ndata: {{user: data}}\n"
        ))
        .await;
    let mut settings = harness::test_settings();
    settings.broker_probe = meshery_operator::controller::BrokerProbeMode::Off;
    cluster.start_operator(settings);
    cluster
        .wait_for_broker_phase(
            &namespace,
            "meshery-broker",
            Phase::Ready,
            Duration::from_secs(60),
        )
        .await;
    eventually(
        Duration::from_secs(30),
        "the Go finalizer removed, the other kept",
        || async {
            brokers
                .get("meshery-broker")
                .await
                .ok()
                .and_then(|b| b.metadata.finalizers)
                == Some(vec!["example.com/keep".to_string()])
        },
    )
    .await;
    let configmaps = cluster.api::<ConfigMap>(&namespace);
    let secrets = cluster.api::<Secret>(&namespace);
    eventually(
        Duration::from_secs(10),
        "the Go children deleted",
        || async {
            configmaps
                .get_opt("meshery-nats-config")
                .await
                .unwrap()
                .is_none()
                && secrets
                    .get_opt("meshery-nats-auth")
                    .await
                    .unwrap()
                    .is_none()
        },
    )
    .await;
    assert_eq!(
        cluster.broker_token(&namespace, "meshery-broker").await,
        go_token
    );
    let lookalikes = cluster.api::<ConfigMap>(&lookalike_namespace);
    assert!(
        lookalikes
            .get_opt("meshery-nats-config")
            .await
            .unwrap()
            .is_some(),
        "a look-alike owned by nobody is not the Go operator's"
    );
    brokers
        .patch(
            "meshery-broker",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    cluster.stop_operator().await;
}
