//! End-to-end harness: a kube-sim API server with the CRDs installed, the operator running
//! in-process against it, and real `nats-server` processes standing in for the broker pods.
//!
//! With `MESHERY_E2E_KUBECONFIG=/path/to/kubeconfig` the same tests run against that (real)
//! cluster instead: the CRDs and the chart's RBAC are server-side applied, the operator under test
//! authenticates as the chart's ServiceAccount (a TokenRequest token: the real authorizer applies
//! the chart's rules), every namespace a test asks for through
//! [`Cluster::ns`] gets a unique per-test name and is deleted (with its MeshSyncs' cluster-scoped
//! RBAC) when the `Cluster` drops, tests run one at a time, waits are stretched, and whatever only
//! kube-sim can do (request accounting, fault and readiness injection, loopback LoadBalancers
//! served by a local nats-server) is reached through [`Cluster::sim`] / [`Cluster::require_sim`],
//! which say on a real cluster that the sim-only part is skipped and why.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use kube_sim::{LoadBalancerMode, Sim, SimOptions};
use meshery_operator::api::{Broker, MeshSync, Phase};
pub use meshery_operator::controller::Settings;
use meshery_operator::controller::{BrokerProbeMode, RunOptions};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// NATS-using tests bind nats-server to the sim's LoadBalancer addresses, which every sim hands
/// out from the same range: they take this lock so they never share an address.
pub static NATS_ADDRESSES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Names the kubeconfig of a real cluster to run the end-to-end suites against (kind, k3d, …).
pub const REAL_CLUSTER_VAR: &str = "MESHERY_E2E_KUBECONFIG";
/// Multiplies every `wait_for`/`eventually` timeout on a real cluster (default 6: pods and image
/// pulls take longer than kube-sim's simulated rollouts).
pub const TIMEOUT_SCALE_VAR: &str = "MESHERY_E2E_TIMEOUT_SCALE";
/// On a real cluster: the MeshSync image (`repo:tag`) to run instead of the pinned release, set on
/// every MeshSync applied through [`Cluster::apply_yaml`] that does not pin `spec.image`.
pub const MESHSYNC_IMAGE_VAR: &str = "MESHERY_E2E_MESHSYNC_IMAGE";
/// On a real cluster: `off` runs the in-process operator with `broker_probe: Off`, for clusters whose
/// LoadBalancer addresses the test host cannot reach (Brokers are then Ready on their children).
pub const BROKER_PROBE_VAR: &str = "MESHERY_E2E_BROKER_PROBE";
/// On a real cluster: `none` says it has no LoadBalancer implementation (the local test cluster), so
/// the parts that need a Broker's external address are skipped at once instead of after a wait.
pub const LOAD_BALANCER_VAR: &str = "MESHERY_E2E_LOAD_BALANCER";
/// Label on every namespace the harness creates on a real cluster (`kubectl delete ns -l …`).
pub const NAMESPACE_LABEL: &str = "meshery.io/e2e";
/// On a real cluster: the chart's `rbac.meshsyncGrants` mode (`hold`, the default, or `escalate`)
/// whose ClusterRole the operator under test runs with.
pub const RBAC_MODE_VAR: &str = "MESHERY_E2E_RBAC";
/// The chart's release namespace and ServiceAccount on a real cluster: the operator under test
/// authenticates as this account (a TokenRequest token), so the real authorizer enforces the
/// chart's ClusterRole and Role.
pub const OPERATOR_NAMESPACE: &str = "meshery";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "meshery-operator";

/// The kubeconfig of the real cluster to test against, when [`REAL_CLUSTER_VAR`] names one.
pub fn real_cluster_kubeconfig() -> Option<PathBuf> {
    std::env::var_os(REAL_CLUSTER_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Whether the suites run against a real cluster rather than kube-sim.
pub fn on_real_cluster() -> bool {
    real_cluster_kubeconfig().is_some()
}

/// `timeout` as waited for: unchanged against kube-sim, stretched on a real cluster.
pub fn scaled(timeout: Duration) -> Duration {
    if !on_real_cluster() {
        return timeout;
    }
    let factor = std::env::var(TIMEOUT_SCALE_VAR)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|f| *f > 0)
        .unwrap_or(6);
    timeout * factor
}

/// Prints the line every skipped (part of a) test leaves in the output (run with `--nocapture` to
/// see them for passing tests).
pub fn skip_notice(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    eprintln!("{test}: skipped on a real cluster: {reason}");
}

/// `true` (after printing `skipped on a real cluster: <reason>`) when the suites run against a
/// real cluster: for tests that are sim-only as a whole, before they start anything.
pub fn skip_whole_test_on_real_cluster(reason: &str) -> bool {
    if on_real_cluster() {
        skip_notice(reason);
        return true;
    }
    false
}

/// Names the real cluster's API server audit log (JSON lines, `--audit-log-path`), when the suites
/// can read it: the operator's requests are then counted there, as in kube-sim's request log.
pub const AUDIT_LOG_VAR: &str = "MESHERY_E2E_AUDIT_LOG";

fn audit_log_path() -> Option<PathBuf> {
    std::env::var_os(AUDIT_LOG_VAR)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Where [`Cluster::writes_since`] counts from.
pub struct WriteCount {
    since: jiff::Timestamp,
    namespaces: Vec<String>,
    /// Without an audit log on a real cluster: the fingerprint to compare with.
    versions: Option<BTreeMap<String, String>>,
}

impl WriteCount {
    /// Whether [`Cluster::writes_since`] lists requests (kube-sim's log, the audit log) rather
    /// than only the objects that changed.
    pub fn counts_requests(&self) -> bool {
        self.versions.is_none()
    }
}

/// One completed request from the API server's audit log.
pub struct AuditedRequest {
    pub verb: String,
    /// The API group, empty for the core group.
    pub group: String,
    /// The plural, with `/subresource` when there is one.
    pub resource: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub code: i64,
    /// `?dryRun=All`: validated and answered, but nothing stored.
    pub dry_run: bool,
}

impl AuditedRequest {
    /// `plural[.group][/subresource]`, as kube-sim's request log names resources.
    pub fn resource_name(&self) -> String {
        let (plural, sub) = match self.resource.split_once('/') {
            Some((plural, sub)) => (plural, format!("/{sub}")),
            None => (self.resource.as_str(), String::new()),
        };
        match self.group.as_str() {
            "" => format!("{plural}{sub}"),
            group => format!("{plural}.{group}{sub}"),
        }
    }
}

/// The resource requests `user` made since `since` according to the audit log
/// ([`AUDIT_LOG_VAR`]); `None` when there is none to read. Discovery (non-resource URLs) is left out.
pub fn audited_requests(user: &str, since: jiff::Timestamp) -> Option<Vec<AuditedRequest>> {
    let path = audit_log_path()?;
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{AUDIT_LOG_VAR}={}: {e}", path.display()));
    let text_of = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
    let requests = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["user"]["username"] == user && event["stage"] == "ResponseComplete")
        .filter(|event| {
            event["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t >= since)
        })
        .filter_map(|event| {
            let object = &event["objectRef"];
            let plural = object["resource"].as_str()?;
            Some(AuditedRequest {
                verb: text_of(&event["verb"]),
                group: text_of(&object["apiGroup"]),
                resource: match object["subresource"].as_str() {
                    Some(sub) => format!("{plural}/{sub}"),
                    None => plural.to_string(),
                },
                namespace: text_of(&object["namespace"]),
                name: text_of(&object["name"]),
                code: event["responseStatus"]["code"].as_i64().unwrap_or(0),
                dry_run: event["requestURI"]
                    .as_str()
                    .is_some_and(|uri| uri.contains("dryRun=All")),
            })
        })
        .collect();
    Some(requests)
}

/// What changed between two [`Cluster::resource_versions`] fingerprints, one line per object.
pub fn changed_objects(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut changed = Vec::new();
    for (object, version) in before {
        match after.get(object) {
            None => changed.push(format!("{object} deleted")),
            Some(now) if now != version => {
                changed.push(format!("{object} resourceVersion {version} -> {now}"))
            }
            Some(_) => {}
        }
    }
    for object in after.keys().filter(|o| !before.contains_key(*o)) {
        changed.push(format!("{object} created"));
    }
    changed
}

/// The cluster's kube-sim, when there is one. Dereferences to [`Sim`] so that `cluster.sim.stats()`
/// and `writes(&cluster.sim)` keep working; on a real cluster dereferencing it panics, naming the
/// way to declare the sim-only part ([`Cluster::require_sim`]).
pub struct SimHandle(Option<Sim>);

impl SimHandle {
    pub fn get(&self) -> Option<&Sim> {
        self.0.as_ref()
    }
}

impl std::ops::Deref for SimHandle {
    type Target = Sim;

    fn deref(&self) -> &Sim {
        self.0.as_ref().unwrap_or_else(|| {
            panic!(
                "this test uses a kube-sim-only capability (`cluster.sim`) while running against the real \
                 cluster of {REAL_CLUSTER_VAR}: declare it with `cluster.require_sim(\"why\")` (or \
                 `cluster.sim()`) and skip that part on a real cluster"
            )
        })
    }
}

/// Real-cluster tests share one cluster whose operator (started by each test) watches every
/// namespace: they run one at a time.
static REAL_CLUSTER_SERIAL: LazyLock<Arc<tokio::sync::Mutex<()>>> =
    LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));
/// Set once a Broker's LoadBalancer stayed without ingress on the real cluster: later tests skip
/// their NATS-through-the-external-endpoint parts at once instead of waiting again.
static NO_LOAD_BALANCER: AtomicBool = AtomicBool::new(false);
static CLUSTER_COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Cluster {
    /// kube-sim (empty on a real cluster: see [`SimHandle`]).
    pub sim: SimHandle,
    /// The test's own client (admin).
    pub client: Client,
    /// What the operator under test talks with: on a real cluster the chart's ServiceAccount
    /// (see [`OPERATOR_SERVICE_ACCOUNT`]), against kube-sim the same as `client`.
    pub operator_client: Client,
    operator: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// `Some` on a real cluster: what cleaning up needs.
    real: Option<RealCluster>,
    kubeconfig: PathBuf,
}

struct RealCluster {
    config: kube::Config,
    /// Suffix of this test's namespaces, unique per test and process.
    suffix: String,
    /// Namespaces to delete on drop (with their MeshSyncs' cluster-scoped RBAC).
    namespaces: std::sync::Mutex<Vec<String>>,
    _serial: tokio::sync::OwnedMutexGuard<()>,
}

/// Settings tuned for tests: fast resync and a short probe grace period.
pub fn test_settings() -> Settings {
    Settings {
        namespace: None,
        dry_run: false,
        broker_probe: if on_real_cluster()
            && std::env::var(BROKER_PROBE_VAR).is_ok_and(|v| v == "off")
        {
            BrokerProbeMode::Off
        } else {
            BrokerProbeMode::Auto
        },
        in_cluster: false,
        api_server_host: "127.0.0.1".into(),
        resync_interval: Duration::from_secs(2),
        probe_grace: Duration::from_secs(3),
        probe_interval: Duration::from_secs(30),
        probe_timeout: Duration::from_secs(1),
        meshsync_connection_grace: Duration::from_secs(3),
        restart_disconnected_meshsync: false,
        nats_version: "2.10.24-alpine".into(),
        meshsync_version: "v1.0.3".into(),
        go_operator_namespace: OPERATOR_NAMESPACE.into(),
    }
}

impl Cluster {
    /// kube-sim in-process, or — with [`REAL_CLUSTER_VAR`] set — the cluster it names.
    pub async fn start() -> Cluster {
        if let Some(kubeconfig) = real_cluster_kubeconfig() {
            return Cluster::connect(kubeconfig).await;
        }
        let crds = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
        let sim = Sim::start(SimOptions {
            load_balancer: LoadBalancerMode::Loopback,
            ready_after: Duration::from_millis(300),
            crds_dir: Some(crds),
            ..SimOptions::default()
        })
        .await
        .expect("kube-sim starts");
        let client = sim.client();
        let kubeconfig = sim.kubeconfig_path().to_path_buf();
        Cluster {
            sim: SimHandle(Some(sim)),
            operator_client: client.clone(),
            client,
            operator: None,
            real: None,
            kubeconfig,
        }
    }

    /// Connects to the real cluster of `kubeconfig` and server-side applies the CRDs.
    async fn connect(kubeconfig: PathBuf) -> Cluster {
        let serial = REAL_CLUSTER_SERIAL.clone().lock_owned().await;
        let parsed = kube::config::Kubeconfig::read_from(&kubeconfig)
            .unwrap_or_else(|e| panic!("{REAL_CLUSTER_VAR}={}: {e}", kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{REAL_CLUSTER_VAR}={}: {e}", kubeconfig.display()));
        let client = Client::try_from(config.clone()).expect("a client for the real cluster");
        install_crds(&client).await;
        let operator_client = operator_client(&client, &config, &rbac_mode()).await;
        let suffix = format!(
            "e2e-{:x}-{}-{}",
            std::process::id(),
            CLUSTER_COUNTER.fetch_add(1, Ordering::Relaxed),
            jiff::Timestamp::now().as_second() % 100_000
        );
        eprintln!(
            "{}: against the real cluster of {REAL_CLUSTER_VAR}={} (namespaces *-{suffix})",
            std::thread::current().name().unwrap_or("test"),
            kubeconfig.display()
        );
        Cluster {
            sim: SimHandle(None),
            client,
            operator_client,
            operator: None,
            real: Some(RealCluster {
                config,
                suffix,
                namespaces: std::sync::Mutex::new(Vec::new()),
                _serial: serial,
            }),
            kubeconfig,
        }
    }

    /// Whether this cluster is a real one (not kube-sim).
    pub fn is_real(&self) -> bool {
        self.real.is_some()
    }

    /// kube-sim, when the cluster is one.
    pub fn sim(&self) -> Option<&Sim> {
        self.sim.get()
    }

    /// kube-sim for a sim-only capability; on a real cluster `None`, after printing
    /// `skipped on a real cluster: <reason>`.
    pub fn require_sim(&self, reason: &str) -> Option<&Sim> {
        if self.sim.get().is_none() {
            skip_notice(reason);
        }
        self.sim.get()
    }

    /// `true` (after printing why) on a real cluster: the caller skips a sim-only part.
    pub fn skip_on_real_cluster(&self, reason: &str) -> bool {
        self.require_sim(reason).is_none()
    }

    /// The kubeconfig of this cluster (kube-sim's, or the one [`REAL_CLUSTER_VAR`] names).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The namespace a test calls `logical`: the same name against kube-sim, a unique per-test name
    /// (`<logical>-e2e-…`) on a real cluster.
    pub fn ns(&self, logical: &str) -> String {
        match &self.real {
            None => logical.to_string(),
            Some(real) => format!("{logical}-{}", real.suffix),
        }
    }

    /// Creates the namespace [`Cluster::ns`] names for `logical` and returns its name; on a real
    /// cluster it is deleted when the `Cluster` drops.
    pub async fn create_ns(&self, logical: &str) -> String {
        let name = self.ns(logical);
        self.create_namespace(&name).await;
        name
    }

    /// On a real cluster, deletes `namespace` (and its MeshSyncs' cluster-scoped RBAC) on drop:
    /// for namespaces a test made some other way (say, with kubectl).
    pub fn track_namespace(&self, namespace: &str) {
        if let Some(real) = &self.real {
            let mut namespaces = real
                .namespaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !namespaces.iter().any(|n| n == namespace) {
                namespaces.push(namespace.to_string());
            }
        }
    }

    /// A fingerprint of every object the operator writes for CRs in `namespaces` (the CRs, their
    /// children, their MeshSyncs' ClusterRoles/Bindings): kind/namespace/name → resourceVersion.
    /// Equal fingerprints before and after a quiet period mean nothing was written in between —
    /// what "zero writes" checks on a real cluster, where there is no request accounting.
    pub async fn resource_versions(&self, namespaces: &[&str]) -> BTreeMap<String, String> {
        const NAMESPACED: [(&str, &str); 10] = [
            ("meshery.io/v1alpha1", "brokers"),
            ("meshery.io/v1alpha1", "meshsyncs"),
            ("apps/v1", "statefulsets"),
            ("apps/v1", "deployments"),
            ("v1", "services"),
            ("v1", "configmaps"),
            ("v1", "secrets"),
            ("v1", "serviceaccounts"),
            ("policy/v1", "poddisruptionbudgets"),
            ("rbac.authorization.k8s.io/v1", "rolebindings"),
        ];
        let mut versions = BTreeMap::new();
        for namespace in namespaces {
            for (api_version, plural) in NAMESPACED {
                let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    namespace,
                    &api_resource(api_version, plural),
                );
                for object in api.list(&Default::default()).await.expect("listing").items {
                    // What the cluster itself puts in every namespace, soon after creating it.
                    if matches!(
                        (plural, object.name_any().as_str()),
                        ("configmaps", "kube-root-ca.crt") | ("serviceaccounts", "default")
                    ) {
                        continue;
                    }
                    versions.insert(
                        format!("{plural} {namespace}/{}", object.name_any()),
                        object.resource_version().unwrap_or_default(),
                    );
                }
            }
            for plural in ["clusterroles", "clusterrolebindings"] {
                let api: Api<kube::api::DynamicObject> = Api::all_with(
                    self.client.clone(),
                    &api_resource("rbac.authorization.k8s.io/v1", plural),
                );
                let prefix = format!("meshery-meshsync-{namespace}-");
                for object in api.list(&Default::default()).await.expect("listing").items {
                    if object.name_any().starts_with(&prefix) {
                        versions.insert(
                            format!("{plural} /{}", object.name_any()),
                            object.resource_version().unwrap_or_default(),
                        );
                    }
                }
            }
        }
        versions
    }

    /// Starts counting writes in `namespaces` (and to cluster-scoped objects): kube-sim's request
    /// log restarts; on a real cluster the API server's audit log ([`AUDIT_LOG_VAR`]) is read from
    /// now on, or, without one, the resourceVersions there are noted.
    pub async fn count_writes(&self, namespaces: &[&str]) -> WriteCount {
        if let Some(sim) = self.sim() {
            sim.reset_stats();
        }
        let versions = match (&self.real, audit_log_path()) {
            (Some(_), None) => Some(self.resource_versions(namespaces).await),
            _ => None,
        };
        WriteCount {
            since: jiff::Timestamp::now(),
            namespaces: namespaces.iter().map(ToString::to_string).collect(),
            versions,
        }
    }

    /// The writes since `count`, one `verb resource namespace/name` per request (`apply` for a
    /// server-side apply): kube-sim's request log (every client's), or the audit log's requests by
    /// the operator under test. A
    /// real cluster without an audit log can only say which objects changed:
    /// `resource namespace/name resourceVersion a -> b` (a write that changed nothing is missed).
    pub async fn writes_since(&self, count: &WriteCount) -> Vec<String> {
        if let Some(sim) = self.sim() {
            return writes(sim);
        }
        if let Some(before) = &count.versions {
            let namespaces: Vec<&str> = count.namespaces.iter().map(String::as_str).collect();
            return changed_objects(before, &self.resource_versions(&namespaces).await);
        }
        // The log backend writes each event as the request completes; give the last one a moment.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
        audited_requests(&user, count.since)
            .expect("an audit log, as count_writes found")
            .into_iter()
            .filter(|r| {
                !r.dry_run
                    && matches!(
                        r.verb.as_str(),
                        "create" | "update" | "patch" | "delete" | "deletecollection"
                    )
                    && (r.namespace.is_empty() || count.namespaces.contains(&r.namespace))
            })
            .map(|r| {
                // The operator patches only with server-side apply (its one merge patch, the opt-in
                // restart of a disconnected MeshSync, is off in these runs), so its patches are
                // named as kube-sim names applies.
                let verb = if r.verb == "patch" { "apply" } else { &r.verb };
                format!("{verb} {} {}/{}", r.resource_name(), r.namespace, r.name)
            })
            .collect()
    }

    /// On a real cluster [`Cluster::resource_versions`]; against kube-sim `None` (tests read its
    /// request log instead, which says more).
    pub async fn real_resource_versions(
        &self,
        namespaces: &[&str],
    ) -> Option<BTreeMap<String, String>> {
        match self.real {
            None => None,
            Some(_) => Some(self.resource_versions(namespaces).await),
        }
    }

    /// Makes the pods of workload `plural` (`statefulsets`, `deployments`) `namespace/name` lose
    /// their readiness (`ready: false`) or regain it. Against kube-sim through its readiness
    /// injection; on the local test cluster through its node agent, which reports the containers
    /// of annotated pods not ready, as a failing readiness probe would. `false` (after printing
    /// that `what` is skipped) on any other real cluster, where nothing can fail a probe on demand.
    pub async fn set_workload_ready(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        ready: bool,
        what: &str,
    ) -> bool {
        if let Some(sim) = self.sim.get() {
            let readiness = if ready {
                kube_sim::Readiness::Normal
            } else {
                kube_sim::Readiness::LoseReadiness
            };
            sim.set_readiness(plural, namespace, name, readiness);
            return true;
        }
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let test_cluster = nodes
            .get_opt(test_cluster::NODE_NAME)
            .await
            .expect("reading the nodes")
            .and_then(|n| n.status?.node_info)
            .is_some_and(|info| info.container_runtime_version == test_cluster::CONTAINER_RUNTIME);
        if !test_cluster {
            skip_notice(&format!(
                "{what}: readiness injection needs kube-sim or the local test cluster's node agent"
            ));
            return false;
        }
        let workload: Api<kube::api::DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &api_resource("apps/v1", plural),
        );
        let workload = workload.get(name).await.expect("reading the workload");
        let selector = workload.data["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("a workload with matchLabels")
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<k8s_openapi::api::core::v1::Pod> = self.api(namespace);
        let value = if ready {
            serde_json::Value::Null
        } else {
            "true".into()
        };
        let patch = serde_json::json!({"metadata": {"annotations": {test_cluster::UNREADY_ANNOTATION: value}}});
        for pod in pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .expect("listing the workload's pods")
        {
            pods.patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .expect("annotating a pod");
        }
        true
    }

    /// Waits for the Broker's external endpoint (its LoadBalancer ingress) and returns the Broker.
    /// On a real cluster without a LoadBalancer implementation the endpoint stays empty: `None`,
    /// after printing that `what` is skipped (and, once seen, later calls skip at once).
    pub async fn broker_with_external_endpoint(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
    ) -> Option<Broker> {
        let has_external = |b: &Broker| {
            b.status
                .as_ref()
                .and_then(|s| s.endpoint.as_ref())
                .is_some_and(|e| !e.external.is_empty())
        };
        if !self.is_real() {
            return Some(
                self.wait_for(namespace, name, Duration::from_secs(20), has_external)
                    .await,
            );
        }
        let reason = format!(
            "{what}: the Broker's LoadBalancer got no ingress address (the cluster needs a \
             LoadBalancer implementation reachable from here: cloud-provider-kind, MetalLB, k3d's servicelb)"
        );
        if NO_LOAD_BALANCER.load(Ordering::Relaxed)
            || std::env::var(LOAD_BALANCER_VAR).is_ok_and(|v| v == "none")
        {
            skip_notice(&reason);
            return None;
        }
        let api: Api<Broker> = self.api(namespace);
        let deadline = Instant::now() + scaled(Duration::from_secs(20));
        loop {
            if let Some(broker) = api.get_opt(name).await.expect("reading the Broker")
                && has_external(&broker)
            {
                return Some(broker);
            }
            if Instant::now() > deadline {
                NO_LOAD_BALANCER.store(true, Ordering::Relaxed);
                skip_notice(&reason);
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn start_operator(&mut self, settings: Settings) {
        assert!(self.operator.is_none(), "the operator is already running");
        let (stop, stopped) = oneshot::channel::<()>();
        let options = RunOptions {
            settings,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            health_addr: "127.0.0.1:0".parse().unwrap(),
            leader_election: None,
            concurrency: 4,
        };
        let client = self.operator_client.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            meshery_operator::controller::run(client, options, shutdown)
                .await
                .expect("the operator runs");
        });
        self.operator = Some((stop, task));
    }

    pub async fn stop_operator(&mut self) {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the operator stops within 10 s")
                .expect("the operator task does not panic");
        }
    }

    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates namespace `name` as given (see [`Cluster::create_ns`] for a per-test name on a real
    /// cluster); on a real cluster it is labelled [`NAMESPACE_LABEL`] and deleted on drop.
    pub async fn create_namespace(&self, name: &str) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let metadata = match &self.real {
            None => serde_json::json!({"name": name}),
            Some(_) => serde_json::json!({"name": name, "labels": {NAMESPACE_LABEL: "true"}}),
        };
        let namespace =
            serde_json::from_value(serde_json::json!({ "metadata": metadata })).unwrap();
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        self.track_namespace(name);
    }

    /// Applies a CR from YAML as a user would (`kubectl apply --server-side`).
    pub async fn apply_yaml<K>(&self, yaml: &str) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let mut value: serde_json::Value = serde_norway::from_str(yaml).expect("test YAML parses");
        if self.is_real()
            && value["kind"] == "MeshSync"
            && value["spec"].get("image").is_none()
            && let Some(image) = std::env::var(MESHSYNC_IMAGE_VAR)
                .ok()
                .filter(|i| !i.is_empty())
        {
            let (repository, tag) = image.rsplit_once(':').unwrap_or((&image, "latest"));
            value["spec"]["image"] = repository.into();
            value["spec"]["version"] = tag.into();
        }
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_string();
        let api: Api<K> = self.api(&namespace);
        api.patch(
            &name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"))
    }

    /// Waits until `check` holds for the named object, returning it; panics with the last state on timeout.
    pub async fn wait_for<K>(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        check: impl Fn(&K) -> bool,
    ) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = self.api(namespace);
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let current = api.get_opt(name).await.expect("reading the object");
            if let Some(object) = &current
                && check(object)
            {
                return object.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {name}; last seen: {current:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_broker_phase(
        &self,
        namespace: &str,
        name: &str,
        phase: Phase,
        timeout: Duration,
    ) -> Broker {
        self.wait_for(namespace, name, timeout, |b: &Broker| {
            b.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    /// Waits until the Broker reports an external endpoint (against kube-sim: its loopback
    /// LoadBalancer address, where a test's nats-server then listens).
    pub async fn wait_for_broker_endpoint(&self, namespace: &str, name: &str) -> Broker {
        self.wait_for(namespace, name, Duration::from_secs(30), |b: &Broker| {
            b.status
                .as_ref()
                .and_then(|s| s.endpoint.as_ref())
                .is_some_and(|e| !e.external.is_empty())
        })
        .await
    }

    /// Starts a real nats-server as the Broker `name`'s pods, at its external endpoint with its
    /// token (`monitored`: with `/connz` on port 8222), and waits for the Broker to be Ready.
    pub async fn serve_broker(
        &self,
        namespace: &str,
        name: &str,
        monitored: bool,
    ) -> (NatsServer, SocketAddr, String) {
        let broker = self.wait_for_broker_endpoint(namespace, name).await;
        let address = external_address(&broker);
        let token = self.broker_token(namespace, name).await;
        let nats = if monitored {
            NatsServer::start_monitored(address, &token)
        } else {
            NatsServer::start(address, &token)
        };
        self.wait_for_broker_phase(namespace, name, Phase::Ready, Duration::from_secs(30))
            .await;
        (nats, address, token)
    }

    pub async fn wait_for_meshsync_phase(
        &self,
        namespace: &str,
        name: &str,
        phase: Phase,
        timeout: Duration,
    ) -> MeshSync {
        self.wait_for(namespace, name, timeout, |m: &MeshSync| {
            m.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    /// The token the operator generated for a Broker.
    pub async fn broker_token(&self, namespace: &str, broker: &str) -> String {
        let secret: Secret = self
            .wait_for(
                namespace,
                &format!("{broker}-auth"),
                Duration::from_secs(10),
                |_: &Secret| true,
            )
            .await;
        let data = secret.data.expect("the auth Secret has data");
        String::from_utf8(data["token"].0.clone()).expect("the token is text")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            task.abort();
        }
        if let Some(real) = &self.real {
            let namespaces = real
                .namespaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            clean_up_real_cluster(real.config.clone(), namespaces);
        }
    }
}

/// The CRDs of `crds/`, server-side applied (field manager `meshery-e2e`), then waited Established.
async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/crds.yaml");
    let text = std::fs::read_to_string(&path).expect("crds/crds.yaml");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document).expect("a CRD document");
        if value.is_null() {
            continue;
        }
        let name = value["metadata"]["name"]
            .as_str()
            .expect("a CRD name")
            .to_string();
        api.patch(
            &name,
            &PatchParams::apply("meshery-e2e").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("server-side applying CRD {name}: {e}"));
        names.push(name);
    }
    for name in names {
        eventually(
            Duration::from_secs(10),
            &format!("CRD {name} Established"),
            || async {
                api.get(&name)
                    .await
                    .ok()
                    .and_then(|crd| crd.status)
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            },
        )
        .await;
    }
}

/// The chart's `rbac.meshsyncGrants` mode named by [`RBAC_MODE_VAR`] (default `hold`).
pub fn rbac_mode() -> String {
    match std::env::var(RBAC_MODE_VAR) {
        Ok(mode) if !mode.is_empty() => {
            assert!(
                mode == "hold" || mode == "escalate",
                "{RBAC_MODE_VAR}={mode}: use hold or escalate"
            );
            mode
        }
        _ => "hold".into(),
    }
}

/// The chart's RBAC objects (ServiceAccount, ClusterRole, ClusterRoleBinding, Role, RoleBinding)
/// rendered by real Helm with `values`, in install order.
pub fn chart_rbac_objects(values: &serde_json::Value) -> Vec<serde_json::Value> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv/bin/python"));
    let values = values.to_string();
    let output = Command::new(&python)
        .arg(repo.join("scripts/helm-render.py"))
        .args(["render", &values, "--namespace", OPERATOR_NAMESPACE])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} scripts/helm-render.py (scripts/install-and-test.sh makes .venv): {e}",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "rendering the chart: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 manifests");
    serde_norway::Deserializer::from_str(&text)
        .map(|document| serde_json::Value::deserialize(document).expect("a manifest"))
        .filter(|object| {
            matches!(
                object["kind"].as_str(),
                Some(
                    "ServiceAccount"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "Role"
                        | "RoleBinding"
                )
            )
        })
        .collect()
}

/// Server-side applies the chart's RBAC rendered with `values` (field manager `meshery-e2e`),
/// creating the release namespace if needed: the rules are replaced as a whole, so switching
/// modes leaves nothing of the other behind.
pub async fn install_chart_rbac(client: &Client, values: &serde_json::Value) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(OPERATOR_NAMESPACE)
        .await
        .expect("reading the release namespace")
        .is_none()
    {
        let namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": OPERATOR_NAMESPACE}}))
                .unwrap();
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => panic!("creating namespace {OPERATOR_NAMESPACE}: {e}"),
        }
    }
    for object in chart_rbac_objects(values) {
        let api_version = object["apiVersion"].as_str().expect("an apiVersion");
        let kind = object["kind"].as_str().expect("a kind");
        let plural = format!("{}s", kind.to_lowercase());
        let name = object["metadata"]["name"].as_str().expect("a name");
        let resource = api_resource(api_version, &plural);
        let api: Api<kube::api::DynamicObject> = match object["metadata"]["namespace"].as_str() {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None if kind.starts_with("Cluster") => Api::all_with(client.clone(), &resource),
            None => Api::namespaced_with(client.clone(), OPERATOR_NAMESPACE, &resource),
        };
        api.patch(
            name,
            &PatchParams::apply("meshery-e2e").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying the chart's {kind} {name}: {e}"));
    }
}

/// A client that authenticates as `namespace/service_account` with a token from the TokenRequest
/// API, on the server (and CA) of `config`.
pub async fn service_account_client(
    client: &Client,
    config: &kube::Config,
    namespace: &str,
    service_account: &str,
) -> Client {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": [], "expirationSeconds": 7200},
    }))
    .unwrap();
    let token = accounts
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token for {namespace}/{service_account}: {e}"))
        .status
        .expect("a TokenRequest status")
        .token;
    let mut config = config.clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    Client::try_from(config).expect("a client with the ServiceAccount's token")
}

/// The chart's RBAC installed for `mode`, and a client of its ServiceAccount.
async fn operator_client(client: &Client, config: &kube::Config, mode: &str) -> Client {
    install_chart_rbac(
        client,
        &serde_json::json!({"rbac": {"meshsyncGrants": mode}}),
    )
    .await;
    service_account_client(client, config, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await
}

/// Deletes a real-cluster test's namespaces and the cluster-scoped RBAC of MeshSyncs in them, and
/// waits (briefly) until their CRs are gone so that the next test's operator does not see them.
/// Runs on its own thread and runtime: a `Cluster` may drop while its test's runtime unwinds.
fn clean_up_real_cluster(config: kube::Config, namespaces: Vec<String>) {
    if namespaces.is_empty() {
        return;
    }
    let cleanup = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a cleanup runtime");
        runtime.block_on(async move {
            let Ok(client) = Client::try_from(config) else {
                return;
            };
            let namespace_api: Api<k8s_openapi::api::core::v1::Namespace> =
                Api::all(client.clone());
            for namespace in &namespaces {
                match namespace_api
                    .delete(namespace, &kube::api::DeleteParams::background())
                    .await
                {
                    // A test may have deleted it itself.
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => eprintln!("cleanup: deleting namespace {namespace}: {e}"),
                }
            }
            for plural in ["clusterroles", "clusterrolebindings"] {
                let api: Api<kube::api::DynamicObject> = Api::all_with(
                    client.clone(),
                    &api_resource("rbac.authorization.k8s.io/v1", plural),
                );
                let Ok(list) = api.list(&Default::default()).await else {
                    continue;
                };
                for object in list.items {
                    let name = object.name_any();
                    if namespaces
                        .iter()
                        .any(|ns| name.starts_with(&format!("meshery-meshsync-{ns}-")))
                        && let Err(e) = api.delete(&name, &Default::default()).await
                    {
                        eprintln!("cleanup: deleting {plural} {name}: {e}");
                    }
                }
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            for namespace in &namespaces {
                let brokers: Api<Broker> = Api::namespaced(client.clone(), namespace);
                let meshsyncs: Api<MeshSync> = Api::namespaced(client.clone(), namespace);
                while Instant::now() < deadline {
                    let remaining = brokers
                        .list(&Default::default())
                        .await
                        .map(|l| l.items.len())
                        .unwrap_or(0)
                        + meshsyncs
                            .list(&Default::default())
                            .await
                            .map(|l| l.items.len())
                            .unwrap_or(0);
                    if remaining == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        });
    });
    let _ = cleanup.join();
}

fn api_resource(api_version: &str, plural: &str) -> kube::discovery::ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: String::new(),
        plural: plural.into(),
    }
}

/// A real nats-server process, killed on drop.
pub struct NatsServer {
    child: Child,
    pub address: SocketAddr,
}

impl NatsServer {
    /// Starts `nats-server` on `address` requiring `token`, and waits until it accepts connections.
    pub fn start(address: SocketAddr, token: &str) -> NatsServer {
        Self::start_with(address, token, &[])
    }

    /// As [`NatsServer::start`], with the monitoring endpoint on port 8222 of the same host, as a
    /// Broker pod serves it (`/connz`, `/healthz`).
    pub fn start_monitored(address: SocketAddr, token: &str) -> NatsServer {
        let port = meshery_operator::api::NATS_MONITOR_PORT.to_string();
        Self::start_with(address, token, &["-m", &port])
    }

    fn start_with(address: SocketAddr, token: &str, extra: &[&str]) -> NatsServer {
        let child = Command::new("nats-server")
            .args([
                "-a",
                &address.ip().to_string(),
                "-p",
                &address.port().to_string(),
                "--auth",
                token,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/install-and-test.sh installs it)");
        let mut server = NatsServer { child, address };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A server that exited could not bind: another process holds the address, and a
            // connection would reach that process instead.
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "nats-server could not listen on {address} ({status}); is another test process using it?"
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "nats-server exited right after starting on {address} ({status}); is another test process using it?"
            );
        }
        server
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to the broker as MeshSync v1.0.x does: named `meshsync`, subscribed to the request
/// subject. The returned subscriber keeps the subscription; drain the client to disconnect.
pub async fn connect_as_meshsync(
    address: SocketAddr,
    token: &str,
) -> (async_nats::Client, async_nats::Subscriber) {
    let client = async_nats::ConnectOptions::with_token(token.to_string())
        .name(meshery_operator::monitor::MESHSYNC_CONNECTION_NAME)
        .connect(address.to_string())
        .await
        .expect("connect to the broker as MeshSync");
    let subscriber = client
        .subscribe(meshery_operator::monitor::MESHSYNC_REQUEST_SUBJECT)
        .await
        .expect("subscribe as MeshSync");
    client.flush().await.expect("flush the subscription");
    (client, subscriber)
}

/// The external `host:port` a Broker reports.
pub fn external_address(broker: &Broker) -> SocketAddr {
    let external = &broker
        .status
        .as_ref()
        .and_then(|s| s.endpoint.as_ref())
        .expect("an endpoint")
        .external;
    external
        .parse()
        .unwrap_or_else(|e| panic!("external endpoint {external:?}: {e}"))
}

pub fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:#?}"))
}

pub fn name_of<K: ResourceExt>(object: &K) -> String {
    object.name_any()
}

/// Writes the API server saw (dry-run ones excluded), as `verb resource namespace/name`.
pub fn writes(sim: &Sim) -> Vec<String> {
    sim.stats()
        .real_writes()
        .into_iter()
        .map(describe_write)
        .collect()
}

/// One write as `verb resource namespace/name`.
pub fn describe_write(w: &kube_sim::WriteRecord) -> String {
    format!(
        "{} {} {}/{}",
        w.verb,
        w.resource,
        w.namespace.as_deref().unwrap_or(""),
        w.name.as_deref().unwrap_or("")
    )
}

/// A namespaced object's data as the API server returns it.
pub async fn get_json(
    client: &Client,
    api_version: &str,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Option<serde_json::Value> {
    let resource = api_resource(api_version, plural);
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &resource);
    api.get_opt(name)
        .await
        .expect("reading")
        .map(|o| serde_json::to_value(o).unwrap())
}

/// Polls `check` until it holds or `timeout` passes (stretched on a real cluster: see [`scaled`]).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let timeout = scaled(timeout);
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
