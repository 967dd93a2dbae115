//! Faults end to end: kube-sim fault injection and real `nats-server` against the operator.
//!
//! For every fault: the operator converges back, its API writes during the fault stay bounded
//! (printed as writes per minute, lines starting `FAULT|`, copied into docs/reliability.md), the
//! generated token and the CR survive (no data lost), and objects it does not own — unrelated ones,
//! ones carrying our labels without our owner, ones owned by another UID — are never touched.

mod harness;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Cluster, NatsServer, eventually, test_settings};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sim::{Fault, Sim};
use meshery_operator::api::{Broker, Phase};
use meshery_operator::controller::BrokerProbeMode;
use serde_json::json;

const NS: &str = "meshery";
const NAME: &str = "meshery-broker";
const WAIT: Duration = Duration::from_secs(30);
const BROKER: &str = "
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: meshery-broker, namespace: meshery}
spec: {size: 1}
";

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Objects the operator must never touch, created before any fault.
struct Unrelated {
    versions: Vec<(String, String)>,
}

impl Unrelated {
    /// A plain ConfigMap; a ConfigMap with our labels but no owner; a Secret with our labels whose
    /// controller is another object (that ConfigMap); a ClusterRole named like MeshSync's with an
    /// owner-UID label but another manager's label; a foreign StatefulSet.
    async fn seed(cluster: &Cluster) -> Unrelated {
        let ours = json!({"app.kubernetes.io/managed-by": "meshery-operator", "app.kubernetes.io/instance": NAME});
        let configmaps: Api<ConfigMap> = cluster.api(NS);
        for body in [
            json!({"metadata": {"name": "unrelated"}, "data": {"keep": "me"}}),
            json!({"metadata": {"name": "labelled-no-owner", "labels": ours}, "data": {"keep": "me"}}),
        ] {
            configmaps
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(body).unwrap(),
                )
                .await
                .unwrap();
        }
        let owner_uid = configmaps
            .get("unrelated")
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap();
        let foreign_owner = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "unrelated",
            "uid": owner_uid, "controller": true}]);
        let secrets: Api<Secret> = cluster.api(NS);
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": "foreign-owned", "labels": ours,
                    "ownerReferences": foreign_owner}, "stringData": {"k": "v"}}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
        roles
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": "meshery-meshsync-meshery-stale",
                    "labels": {"app.kubernetes.io/managed-by": "someone-else",
                               "app.kubernetes.io/instance": "stale",
                               "meshery.io/owner-uid": "00000000-0000-0000-0000-000000000bad"}},
                    "rules": []}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let statefulsets: Api<StatefulSet> = cluster.api(NS);
        statefulsets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "someone-elses"},
                    "spec": {"selector": {"matchLabels": {"app": "x"}}, "serviceName": "x",
                        "template": {"metadata": {"labels": {"app": "x"}},
                            "spec": {"containers": [{"name": "x", "image": "busybox:1"}]}}}}))
                .unwrap(),
            )
            .await
            .unwrap();
        // Let the sim's controllers write the StatefulSet's status before taking the snapshot.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Unrelated {
            versions: Self::read(cluster).await,
        }
    }

    async fn read(cluster: &Cluster) -> Vec<(String, String)> {
        let rv = |o: Option<kube::core::ObjectMeta>| {
            o.and_then(|m| m.resource_version)
                .unwrap_or_else(|| "GONE".into())
        };
        let configmaps: Api<ConfigMap> = cluster.api(NS);
        let secrets: Api<Secret> = cluster.api(NS);
        let statefulsets: Api<StatefulSet> = cluster.api(NS);
        let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
        vec![
            (
                "ConfigMap unrelated".into(),
                rv(configmaps
                    .get_opt("unrelated")
                    .await
                    .unwrap()
                    .map(|o| o.metadata)),
            ),
            (
                "ConfigMap labelled-no-owner".into(),
                rv(configmaps
                    .get_opt("labelled-no-owner")
                    .await
                    .unwrap()
                    .map(|o| o.metadata)),
            ),
            (
                "Secret foreign-owned".into(),
                rv(secrets
                    .get_opt("foreign-owned")
                    .await
                    .unwrap()
                    .map(|o| o.metadata)),
            ),
            (
                "ClusterRole meshery-meshsync-meshery-stale".into(),
                rv(roles
                    .get_opt("meshery-meshsync-meshery-stale")
                    .await
                    .unwrap()
                    .map(|o| o.metadata)),
            ),
            (
                "StatefulSet someone-elses".into(),
                rv(statefulsets
                    .get_opt("someone-elses")
                    .await
                    .unwrap()
                    .map(|o| o.metadata)),
            ),
        ]
    }

    async fn assert_untouched(&self, cluster: &Cluster, after: &str) {
        let now = Self::read(cluster).await;
        assert_eq!(
            self.versions, now,
            "objects the operator does not own changed after {after}"
        );
    }
}

/// The operator's writes recorded since the last `reset_stats` (failed ones included), leaving out
/// the test's own (field manager `fault-test`).
fn operator_writes(sim: &Sim) -> Vec<String> {
    sim.stats()
        .writes
        .iter()
        .filter(|w| !w.dry_run && w.field_manager.as_deref() != Some("fault-test"))
        .map(harness::describe_write)
        .collect()
}

/// Writes per minute: over the window, or over the minute from the fault's start when the window
/// is shorter (every test checks the operator is quiet afterwards, so nothing more follows).
fn per_minute(writes: usize, window: Duration) -> f64 {
    writes as f64 * 60.0 / window.as_secs_f64().max(60.0)
}

/// A hand edit (merge patch) recorded under the test's field manager.
fn edit_params() -> PatchParams {
    PatchParams {
        field_manager: Some("fault-test".into()),
        ..PatchParams::default()
    }
}

/// One line of the reliability table.
fn report(fault: &str, injected: &str, observed: &str, writes: &[String], window: Duration) {
    let per_minute = per_minute(writes.len(), window);
    println!(
        "FAULT| {fault} | {injected} | {observed} | {} writes in {:.1} s ({per_minute:.0}/min) | none",
        writes.len(),
        window.as_secs_f64()
    );
}

/// Asserts a bound on writes during a fault: no hot loop.
fn assert_bounded(fault: &str, writes: &[String], window: Duration, limit: f64) {
    let rate = per_minute(writes.len(), window);
    assert!(
        rate <= limit,
        "{fault}: {} writes in {window:?} ({rate:.0}/min > {limit}/min): {writes:#?}",
        writes.len()
    );
}

async fn broker_phase(cluster: &Cluster) -> Option<Phase> {
    let brokers: Api<Broker> = cluster.api(NS);
    brokers
        .get(NAME)
        .await
        .ok()
        .and_then(|b| b.status)
        .and_then(|s| s.phase)
}

async fn wait_ready(cluster: &Cluster, what: &str) {
    eventually(WAIT, what, || async {
        broker_phase(cluster).await == Some(Phase::Ready)
    })
    .await;
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.ok().flatten().is_some()
}

/// Reconciling stays quiet once converged: no writes across three resyncs.
async fn assert_quiet(cluster: &Cluster, after: &str) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.sim.reset_stats();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let writes = operator_writes(&cluster.sim);
    assert!(
        writes.is_empty(),
        "writes after {after} converged: {writes:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// API errors, conflicts, watches, hand edits and a NATS outage, one after another on one
// Broker that a real nats-server serves.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_conflicts_watches_hand_edits_and_nats_outage_converge_with_bounded_writes() {
    // nats-server listens on a free loopback port named by externalEndpointOverride (which the
    // probe uses from outside the cluster), not on the sim's LoadBalancer addresses, which other
    // test processes on this machine hand out too.
    let address: std::net::SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let with_override = |extra: &str| {
        BROKER.replace(
            "spec: {size: 1}",
            &format!(
                "spec: {{size: 1, service: {{externalEndpointOverride: '{address}'}}{extra}}}"
            ),
        )
    };
    let mut cluster = Cluster::start().await;
    cluster.create_namespace(NS).await;
    let unrelated = Unrelated::seed(&cluster).await;
    cluster.start_operator(test_settings());
    cluster.apply_yaml::<Broker>(&with_override("")).await;
    let token = cluster.broker_token(NS, NAME).await;
    let mut nats = Some(NatsServer::start(address, &token));
    wait_ready(&cluster, "the Broker is Ready behind nats-server").await;
    assert_quiet(&cluster, "the first rollout").await;

    let configmaps: Api<ConfigMap> = cluster.api(NS);
    let statefulsets: Api<StatefulSet> = cluster.api(NS);
    let services: Api<Service> = cluster.api(NS);
    let config = format!("{NAME}-config");

    // 1. Bursts of 500, 503 and 429 on the operator's applies, while it restores a deleted child.
    for (code, times) in [(500u16, 4u64), (503, 8), (429, 8)] {
        cluster.sim.inject(
            Fault::status(Some("patch"), &format!("/configmaps/{config}"), code).times(times),
        );
        configmaps
            .delete(&config, &DeleteParams::default())
            .await
            .unwrap();
        cluster.sim.reset_stats();
        let start = Instant::now();
        eventually(
            WAIT,
            "the ConfigMap is restored through the burst",
            || async { exists(&configmaps, &config).await },
        )
        .await;
        wait_ready(&cluster, "Ready after the burst").await;
        let window = start.elapsed();
        let writes = operator_writes(&cluster.sim);
        let failed_applies = writes
            .iter()
            .filter(|w| w.starts_with("apply configmaps"))
            .count();
        assert!(
            failed_applies as u64 >= times.min(2),
            "{code}: the faults were not hit: {writes:#?}"
        );
        assert_bounded(&format!("{code} burst"), &writes, window, 120.0);
        report(
            &format!("{code} burst on child applies"),
            &format!(
                "{times} consecutive {code} on apply of ConfigMap {config}, after deleting it"
            ),
            &format!("ConfigMap recreated after {failed_applies} applies; Ready again"),
            &writes,
            window,
        );
        cluster.sim.clear_faults();
        unrelated
            .assert_untouched(&cluster, &format!("a {code} burst"))
            .await;
    }
    assert_quiet(&cluster, "the bursts").await;

    // 2. Conflicts on status writes while a spec change must be reported.
    cluster
        .sim
        .inject(Fault::status(Some("patch"), &format!("/brokers/{NAME}/status"), 409).times(3));
    cluster
        .apply_yaml::<Broker>(&with_override(", config: {debug: true}"))
        .await;
    cluster.sim.reset_stats();
    let start = Instant::now();
    let brokers: Api<Broker> = cluster.api(NS);
    cluster
        .wait_for(NS, NAME, WAIT, |b: &Broker| {
            let status = b.status.clone().unwrap_or_default();
            status.observed_generation == b.metadata.generation
                && status.phase == Some(Phase::Ready)
        })
        .await;
    let window = start.elapsed();
    let writes = operator_writes(&cluster.sim);
    let status_writes = writes
        .iter()
        .filter(|w| w.contains("brokers.meshery.io/status"))
        .count();
    assert!(
        status_writes >= 3,
        "the conflicts were not hit: {writes:#?}"
    );
    assert_bounded("409 on status", &writes, window, 120.0);
    report(
        "409 Conflict on status writes",
        "3 consecutive 409 on the Broker's status patch, after a spec change",
        &format!(
            "status written after {status_writes} attempts; observedGeneration current, Ready"
        ),
        &writes,
        window,
    );
    cluster.sim.clear_faults();
    unrelated.assert_untouched(&cluster, "409s on status").await;
    assert_quiet(&cluster, "the status conflicts").await;

    // 3. Watches dropped and history compacted (every watch resumes with 410), then a hand edit.
    cluster.sim.reset_stats();
    let start = Instant::now();
    cluster.sim.drop_watches();
    cluster.sim.compact();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let edit = json!({"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}}});
    statefulsets
        .patch(NAME, &edit_params(), &Patch::Merge(&edit))
        .await
        .unwrap();
    eventually(
        WAIT,
        "the edit is reverted after the watches resumed",
        || async {
            statefulsets
                .get(NAME)
                .await
                .unwrap()
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .termination_grace_period_seconds
                != Some(1)
        },
    )
    .await;
    wait_ready(&cluster, "Ready after the dropped watches").await;
    let window = start.elapsed();
    let writes = operator_writes(&cluster.sim);
    assert_bounded("dropped watches", &writes, window, 120.0);
    report(
        "Dropped watches + compacted history",
        "every watch stream ended and history forgotten (resume gets 410), then the StatefulSet edited",
        "watches re-listed; the edit reverted",
        &writes,
        window,
    );
    unrelated
        .assert_untouched(&cluster, "dropped watches")
        .await;
    assert_quiet(&cluster, "the dropped watches").await;

    // 4. Children deleted by hand.
    let start = Instant::now();
    statefulsets
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    configmaps
        .delete(&config, &DeleteParams::default())
        .await
        .unwrap();
    cluster.sim.reset_stats();
    eventually(WAIT, "the deleted children are recreated", || async {
        exists(&statefulsets, NAME).await && exists(&configmaps, &config).await
    })
    .await;
    wait_ready(&cluster, "Ready after the hand deletion").await;
    let window = start.elapsed();
    let writes = operator_writes(&cluster.sim);
    let applies: Vec<_> = writes
        .iter()
        .filter(|w| w.starts_with("apply ") && !w.contains("/status"))
        .collect();
    assert_eq!(applies.len(), 2, "one apply per deleted child: {writes:#?}");
    assert_bounded("child deleted", &writes, window, 120.0);
    report(
        "Child deleted by hand",
        "StatefulSet and ConfigMap deleted with kubectl delete",
        "both recreated (one apply each); Ready",
        &writes,
        window,
    );
    unrelated.assert_untouched(&cluster, "hand deletion").await;
    assert_quiet(&cluster, "the hand deletion").await;

    // 5. Another manager edits a child: an imperative edit of an owned field is reverted once; a
    // field another manager server-side-applies is left to it (no fight, no writes).
    cluster.sim.reset_stats();
    let start = Instant::now();
    let annotate = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME,
        "annotations": {"external-dns.alpha.kubernetes.io/hostname": "nats.example.com"}}});
    services
        .patch(
            NAME,
            &PatchParams::apply("fault-test").force(),
            &Patch::Apply(&annotate),
        )
        .await
        .unwrap();
    let replicas = json!({"spec": {"replicas": 4}});
    statefulsets
        .patch(NAME, &edit_params(), &Patch::Merge(&replicas))
        .await
        .unwrap();
    eventually(WAIT, "the imperative replicas edit is reverted", || async {
        statefulsets.get(NAME).await.unwrap().spec.unwrap().replicas == Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let window = start.elapsed();
    let writes = operator_writes(&cluster.sim);
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.starts_with("apply ") && !w.contains("/status"))
            .cloned()
            .collect::<Vec<_>>(),
        [format!("apply statefulsets.apps {NS}/{NAME}")],
        "one apply reverts the owned field; the other manager's annotation costs nothing"
    );
    let service = services.get(NAME).await.unwrap();
    assert_eq!(
        service.metadata.annotations.unwrap_or_default()["external-dns.alpha.kubernetes.io/hostname"],
        "nats.example.com",
        "the other manager's annotation was taken away"
    );
    report(
        "Child edited by another manager",
        "StatefulSet spec.replicas set to 4 by merge patch; an annotation server-side-applied on the Service by another manager",
        "replicas reverted to 1 by one apply; the annotation kept, never fought over",
        &writes,
        window,
    );
    unrelated
        .assert_untouched(&cluster, "edits by another manager")
        .await;
    wait_ready(&cluster, "Ready after the edits").await;

    // 6. The NATS server goes away, then comes back with the same token.
    cluster.sim.reset_stats();
    let start = Instant::now();
    nats.take().unwrap().stop();
    eventually(
        WAIT,
        "the Broker is Degraded while NATS is down",
        || async { broker_phase(&cluster).await == Some(Phase::Degraded) },
    )
    .await;
    let degraded_after = start.elapsed();
    // Hold the outage for a while to see the write rate while it lasts.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = operator_writes(&cluster.sim);
    let outage = start.elapsed();
    let brokers_now = brokers.get(NAME).await.unwrap();
    let ready = harness::condition(&brokers_now.status.as_ref().unwrap().conditions, "Ready");
    assert_eq!(ready.reason, "BrokerUnreachable", "{ready:?}");
    assert!(
        !ready.message.contains(&token),
        "the token in a status message"
    );
    let child_writes: Vec<_> = during
        .iter()
        .filter(|w| !w.contains("/status") && !w.contains("events"))
        .collect();
    assert!(
        child_writes.is_empty(),
        "a NATS outage is no reason to touch children: {child_writes:#?}"
    );
    assert_bounded("NATS down", &during, outage, 30.0);
    nats = Some(NatsServer::start(address, &token));
    wait_ready(&cluster, "Ready once NATS is back").await;
    report(
        "NATS server down and back",
        &format!(
            "nats-server killed for {:.0} s, then restarted on the same address and token",
            outage.as_secs_f64()
        ),
        &format!(
            "Degraded (BrokerUnreachable) after {:.1} s; Ready again {:.1} s after NATS returned",
            degraded_after.as_secs_f64(),
            (start.elapsed() - outage).as_secs_f64()
        ),
        &during,
        outage,
    );
    unrelated
        .assert_untouched(&cluster, "the NATS outage")
        .await;
    assert_quiet(&cluster, "the NATS outage").await;

    // Nothing lost: the token is the one NATS was started with, and the CR keeps its spec.
    assert_eq!(
        cluster.broker_token(NS, NAME).await,
        token,
        "the token changed"
    );
    assert_eq!(
        brokers
            .get(NAME)
            .await
            .unwrap()
            .spec
            .config
            .map(|c| c.debug),
        Some(true)
    );
    drop(nats);
    cluster.stop_operator().await;
}

// ---------------------------------------------------------------------------------------------
// The API server down for 30 s.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_down_for_thirty_seconds_then_reconciling_resumes() {
    let mut cluster = Cluster::start().await;
    cluster.create_namespace(NS).await;
    let unrelated = Unrelated::seed(&cluster).await;
    let mut settings = test_settings();
    settings.broker_probe = BrokerProbeMode::Off;
    cluster.start_operator(settings);
    cluster.apply_yaml::<Broker>(BROKER).await;
    cluster
        .wait_for_broker_phase(NS, NAME, Phase::Ready, WAIT)
        .await;
    let token = cluster.broker_token(NS, NAME).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    cluster.sim.reset_stats();
    let start = Instant::now();
    cluster.sim.down_for(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(31)).await;
    // Refused connections never reach the sim: whatever it recorded came after it was back.
    let during = operator_writes(&cluster.sim);
    // Back: a change made now is picked up once the watches reconnect.
    let back = Instant::now();
    let configmaps: Api<ConfigMap> = cluster.api(NS);
    configmaps
        .delete(&format!("{NAME}-config"), &DeleteParams::default())
        .await
        .unwrap();
    cluster
        .apply_yaml::<Broker>(&BROKER.replace("spec: {size: 1}", "spec: {size: 2}"))
        .await;
    eventually(
        Duration::from_secs(60),
        "the change after the outage is reconciled",
        || async {
            let brokers: Api<Broker> = cluster.api(NS);
            let b = brokers.get(NAME).await.unwrap();
            let status = b.status.unwrap_or_default();
            status.observed_generation == b.metadata.generation
                && status.phase == Some(Phase::Ready)
                && exists(&configmaps, &format!("{NAME}-config")).await
        },
    )
    .await;
    let recovered = back.elapsed();
    let statefulsets: Api<StatefulSet> = cluster.api(NS);
    assert_eq!(
        statefulsets.get(NAME).await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
    let after = operator_writes(&cluster.sim);
    let window = start.elapsed();
    assert!(during.is_empty(), "writes recorded while down: {during:#?}");
    assert_bounded("API down", &after, window, 60.0);
    report(
        "API server down 30 s",
        "listener closed for 30 s (connection refused), then back on the same port; a child deleted and size 1→2 right after",
        &format!(
            "0 requests reached the server while down; the change reconciled {:.1} s after it came back",
            recovered.as_secs_f64()
        ),
        &after,
        window,
    );
    assert_eq!(
        cluster.broker_token(NS, NAME).await,
        token,
        "the token changed"
    );
    unrelated.assert_untouched(&cluster, "the API outage").await;
    assert_quiet(&cluster, "the API outage").await;
    cluster.stop_operator().await;
}

// ---------------------------------------------------------------------------------------------
// The operator killed mid-reconcile and a second process taking over.

/// `meshery-operator run` as a child process against `kubeconfig`, SIGKILLed on drop.
struct OperatorProcess {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    fn start(kubeconfig: &Path) -> OperatorProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let child = Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
            .args([
                "run",
                "--metrics-addr",
                "127.0.0.1:0",
                "--health-addr",
                "127.0.0.1:0",
            ])
            .args(["--broker-probe", "off", "--resync-seconds", "2"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the operator binary starts");
        OperatorProcess {
            child,
            log,
            _dir: dir,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_killed_mid_reconcile_is_finished_by_a_second_process() {
    let cluster = Cluster::start().await;
    cluster.create_namespace(NS).await;
    let unrelated = Unrelated::seed(&cluster).await;
    // Hold the StatefulSet apply so the first process is killed between its Secret and its workload.
    cluster
        .sim
        .inject(Fault::delay(Some("patch"), "/statefulsets/", Duration::from_secs(5)).times(1));
    let mut first = OperatorProcess::start(cluster.sim.kubeconfig_path());
    cluster.apply_yaml::<Broker>(BROKER).await;
    let secrets: Api<Secret> = cluster.api(NS);
    let configmaps: Api<ConfigMap> = cluster.api(NS);
    let statefulsets: Api<StatefulSet> = cluster.api(NS);
    eventually(
        WAIT,
        "the first process wrote the Secret and ConfigMap",
        || async {
            exists(&secrets, &format!("{NAME}-auth")).await
                && exists(&configmaps, &format!("{NAME}-config")).await
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !exists(&statefulsets, NAME).await,
        "the StatefulSet apply was not held; log:\n{}",
        first.logs()
    );
    first.kill();
    let token = cluster.broker_token(NS, NAME).await;
    cluster.sim.clear_faults();

    // The held request still completes inside the sim; wait it out so what follows is the second
    // process's work alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.sim.reset_stats();
    let start = Instant::now();
    let second = OperatorProcess::start(cluster.sim.kubeconfig_path());
    cluster
        .wait_for_broker_phase(NS, NAME, Phase::Ready, WAIT)
        .await;
    let window = start.elapsed();
    let writes = operator_writes(&cluster.sim);
    assert_bounded("restart", &writes, window, 120.0);
    assert_eq!(
        cluster.broker_token(NS, NAME).await,
        token,
        "the second process replaced the token"
    );
    // One of each child, all owned by this Broker.
    let children: Api<Service> = cluster.api(NS);
    let services = children
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=meshery-broker,app.kubernetes.io/managed-by=meshery-operator"))
        .await
        .unwrap();
    let mut names: Vec<_> = services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [NAME.to_string(), format!("{NAME}-headless")]);
    report(
        "Operator killed mid-reconcile",
        "SIGKILL while its StatefulSet apply was held 5 s (Secret and ConfigMap written, workload not); a second process started",
        &format!(
            "second process finished the rollout: Ready after {:.1} s; token kept",
            window.as_secs_f64()
        ),
        &writes,
        window,
    );
    unrelated.assert_untouched(&cluster, "the restart").await;
    assert_quiet(&cluster, "the restart").await;
    assert!(
        !second.logs().contains(&token),
        "the token in the second process's logs"
    );
    assert!(
        !first.logs().contains(&token),
        "the token in the first process's logs"
    );
}
