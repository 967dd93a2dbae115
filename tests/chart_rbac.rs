//! Least privilege, checked both ways: the operator runs (in-process, with leader election)
//! through Broker and MeshSync create/update/prune/status/sweep/events; every (verb, resource) it
//! sent is allowed by the chart's ClusterRole/Role, and every permission the chart grants was used
//! or is needed for a documented reason — chiefly Kubernetes' RBAC escalation check. On a real
//! cluster the operator authenticates as the chart's ServiceAccount, so the real authorizer (and
//! its escalation check) refuses whatever the chart does not grant, in both
//! `rbac.meshsyncGrants` modes.

mod chart_support;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chart_support::{Rule, allowed, render, rules, split_resource};
use harness::{
    AUDIT_LOG_VAR, Cluster, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, REAL_CLUSTER_VAR,
    Settings, audited_requests, install_chart_rbac, on_real_cluster, rbac_mode, scaled,
    skip_notice, test_settings,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use meshery_operator::api::watch_list::WatchList;
use meshery_operator::api::{Broker, MeshSync, Phase, PodAccessGrants};
use meshery_operator::controller::{BrokerProbeMode, LeaderElection, RunOptions};
use meshery_operator::render::rbac::meshsync_rules;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// The test's own API requests, counted under kube-sim's names so they can be told from the operator's.
struct Own {
    client: Client,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Own {
    fn count(&self, verb: &str, resource: &str) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(format!("{verb} {resource}"))
            .or_default() += 1;
    }

    async fn secret(&self, namespace: &str, name: &str, token: &str) {
        self.count("create", "secrets");
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"token": token},
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    fn plural<K: Resource<DynamicType = ()>>() -> String {
        format!("{}.meshery.io", K::plural(&()))
    }

    async fn apply<K>(&self, value: Value) -> K
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.count("patch", &Self::plural::<K>());
        let namespace = value["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = value["metadata"]["name"].as_str().unwrap().to_string();
        Api::<K>::namespaced(self.client.clone(), &namespace)
            .patch(
                &name,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&value),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {name}: {e}"))
    }

    async fn delete<K>(&self, namespace: &str, name: &str)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.count("delete", &Self::plural::<K>());
        Api::<K>::namespaced(self.client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    /// Waits until the CR is Ready at its current generation.
    async fn ready<K, S>(&self, namespace: &str, name: &str, status: impl Fn(&K) -> Option<&S>)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        S: HasPhase,
    {
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        let deadline = Instant::now() + scaled(WAIT);
        loop {
            self.count("get", &Self::plural::<K>());
            let cr = api.get(name).await.unwrap();
            if let Some(s) = status(&cr)
                && s.phase() == Some(Phase::Ready)
                && s.observed_generation() == cr.meta().generation
            {
                return;
            }
            assert!(Instant::now() < deadline, "{name} not Ready: {cr:#?}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn cluster_role(&self, name: &str) -> Option<ClusterRole> {
        self.count("get", "clusterroles.rbac.authorization.k8s.io");
        Api::<ClusterRole>::all(self.client.clone())
            .get_opt(name)
            .await
            .unwrap()
    }
}

trait HasPhase {
    fn phase(&self) -> Option<Phase>;
    fn observed_generation(&self) -> Option<i64>;
}

impl HasPhase for meshery_operator::api::BrokerStatus {
    fn phase(&self) -> Option<Phase> {
        self.phase
    }
    fn observed_generation(&self) -> Option<i64> {
        self.observed_generation
    }
}

impl HasPhase for meshery_operator::api::MeshSyncStatus {
    fn phase(&self) -> Option<Phase> {
        self.phase
    }
    fn observed_generation(&self) -> Option<i64> {
        self.observed_generation
    }
}

fn broker_status(b: &Broker) -> Option<&meshery_operator::api::BrokerStatus> {
    b.status.as_ref()
}

fn meshsync_status(m: &MeshSync) -> Option<&meshery_operator::api::MeshSyncStatus> {
    m.status.as_ref()
}

fn broker(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "meshery.io/v1alpha1", "kind": "Broker",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

fn meshsync(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "meshery.io/v1alpha1", "kind": "MeshSync",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// (verb, API group, resource[/subresource]) → how often the operator called it.
type Calls = BTreeMap<(String, String, String), u64>;

/// The API calls a real cluster's audit log ([`AUDIT_LOG_VAR`]) shows `user` made since `since`,
/// as (verb, group, resource[/subresource]) → count, and every request of theirs that was denied.
fn audited_calls(user: &str, since: jiff::Timestamp) -> Option<(Calls, Vec<String>)> {
    let mut used = BTreeMap::new();
    let mut denied = Vec::new();
    for request in audited_requests(user, since)? {
        if request.code == 403 {
            denied.push(format!(
                "{} {}/{} {}/{}",
                request.verb, request.group, request.resource, request.namespace, request.name
            ));
        }
        // Server-side apply of an object that does not exist yet is authorized as `create` too.
        if request.verb == "patch" && request.code == 201 {
            *used
                .entry((
                    "create".to_string(),
                    request.group.clone(),
                    request.resource.clone(),
                ))
                .or_insert(0) += 1;
        }
        *used
            .entry((request.verb, request.group, request.resource))
            .or_insert(0) += 1;
    }
    Some((used, denied))
}

/// What the operator sent according to kube-sim's request log, minus the test's own requests.
fn simulated_calls(cluster: &Cluster, own: &Own) -> Calls {
    let stats = cluster.sim.stats();
    let own_counts = own.counts.lock().unwrap().clone();
    let mut used = Calls::new();
    for (key, count) in &stats.counts {
        let (verb, resource) = key.split_once(' ').unwrap();
        if verb == "discovery" {
            continue;
        }
        let count = count - own_counts.get(key).copied().unwrap_or(0);
        if count > 0 {
            let (group, resource) = split_resource(resource);
            used.insert((verb.to_string(), group, resource), count);
        }
    }
    for (key, count) in &own_counts {
        assert!(
            stats.counts.get(key).copied().unwrap_or(0) >= *count,
            "kube-sim saw fewer {key} than the test sent"
        );
    }
    // Server-side apply of an object that does not exist yet is authorized as `create` too.
    for write in stats.real_writes() {
        if write.verb == "apply" && write.field_manager.as_deref() == Some("meshery-operator") {
            let (group, resource) = split_resource(&write.resource);
            if !resource.contains('/') {
                used.entry(("create".into(), group, resource)).or_insert(0);
            }
        }
        if write.resource.starts_with("leases") {
            assert_eq!(write.namespace.as_deref(), Some(OPERATOR_NAMESPACE));
            assert_eq!(write.name.as_deref(), Some("meshery-operator"));
        }
    }
    used
}

/// The chart's default CRs, moved to namespace `namespace` (with the Broker MeshSync names).
fn default_crs(namespace: &str) -> Vec<Value> {
    render(None)
        .into_iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Broker" | "MeshSync")))
        .map(|mut cr| {
            cr["metadata"]["namespace"] = namespace.into();
            if let Some(native) = cr
                .pointer_mut("/spec/broker/native")
                .and_then(Value::as_object_mut)
                && native.contains_key("namespace")
            {
                native.insert("namespace".into(), namespace.into());
            }
            cr
        })
        .collect()
}

/// The operator (with leader election, as the chart runs it, as the chart's ServiceAccount on a
/// real cluster) through create, update, prune, a foreign auth Secret, a cross-namespace Broker,
/// a watch-list change and delete with the sweep of MeshSync's cluster-scoped RBAC; returns the
/// ClusterRole it made for the default MeshSync.
async fn run_scenario(cluster: &Cluster, own: &Own, release: &str, other: &str) -> ClusterRole {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions {
        settings: meshery_operator::controller::Settings {
            broker_probe: BrokerProbeMode::Off,
            ..test_settings()
        },
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: Some(LeaderElection {
            namespace: OPERATOR_NAMESPACE.into(),
            lease_name: "meshery-operator".into(),
            identity: "meshery-operator-0".into(),
        }),
        concurrency: 4,
    };
    let client = cluster.operator_client.clone();
    let operator = tokio::spawn(async move {
        meshery_operator::controller::run(client, options, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the operator runs");
    });

    // Create: the chart's default CRs.
    for cr in default_crs(release) {
        match cr["kind"].as_str().unwrap() {
            "Broker" => drop(own.apply::<Broker>(cr).await),
            _ => drop(own.apply::<MeshSync>(cr).await),
        }
    }
    own.ready(release, "meshery-broker", broker_status).await;
    own.ready(release, "meshery-meshsync", meshsync_status)
        .await;
    let meshsync_role = own
        .cluster_role(&format!("meshery-meshsync-{release}-meshery-meshsync"))
        .await
        .expect("MeshSync's ClusterRole");

    // Update: a routed cluster with a PodDisruptionBudget and a NetworkPolicy; then back (prune).
    let spec = json!({"size": 3, "networkPolicy": {"enabled": true}});
    own.apply::<Broker>(broker(release, "meshery-broker", spec))
        .await;
    own.ready(release, "meshery-broker", broker_status).await;
    own.apply::<Broker>(broker(release, "meshery-broker", json!({"size": 1})))
        .await;
    own.ready(release, "meshery-broker", broker_status).await;

    // A user's auth Secret (read with a GET) in another namespace.
    own.secret(other, "user-auth", &format!("t{}", "a".repeat(64)))
        .await;
    let spec = json!({"size": 1, "service": {"type": "ClusterIP"}, "auth": {"secretRef": {"name": "user-auth"}}});
    own.apply::<Broker>(broker(other, "custom-auth", spec))
        .await;
    own.ready(other, "custom-auth", broker_status).await;

    // A MeshSync publishing to a Broker in another namespace (its credential is copied), with a
    // blacklist; then moved to a Broker beside it (the copy is pruned).
    let spec = json!({
        "size": 1,
        "broker": {"native": {"name": "meshery-broker", "namespace": release}},
        "watch-list": {"data": {"blacklist": "[\"secrets.v1.\"]"}},
    });
    own.apply::<MeshSync>(meshsync(other, "other-sync", spec))
        .await;
    own.ready(other, "other-sync", meshsync_status).await;
    let spec = json!({
        "size": 1,
        "broker": {"native": {"name": "custom-auth"}},
        "watch-list": {"data": {"whitelist": "[{\"Resource\":\"pods.v1.\",\"Events\":[\"ADDED\"]}]"}},
    });
    own.apply::<MeshSync>(meshsync(other, "other-sync", spec))
        .await;
    own.ready(other, "other-sync", meshsync_status).await;

    // Delete: its cluster-scoped RBAC is swept.
    own.delete::<MeshSync>(other, "other-sync").await;
    let deadline = Instant::now() + scaled(WAIT);
    while own
        .cluster_role(&format!("meshery-meshsync-{other}-other-sync"))
        .await
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "MeshSync's ClusterRole was not swept"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .expect("the operator stops")
        .expect("no panic");
    meshsync_role
}

/// Least privilege both ways. On a real cluster the operator authenticates as the chart's
/// ServiceAccount in each `rbac.meshsyncGrants` mode, so the real authorizer (and its escalation
/// check on the ClusterRoles the operator creates for MeshSync) refuses any missing grant, and
/// the API server's audit log says which calls it made; against kube-sim its request log does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_grants_exactly_what_the_operator_uses() {
    let modes: &[&str] = if on_real_cluster() {
        &["hold", "escalate"]
    } else {
        &["hold"]
    };
    for mode in modes {
        let cluster = Cluster::start().await;
        if cluster.is_real() {
            install_chart_rbac(&cluster.client, &grants(mode)).await;
        }
        let chart_rules = rules(&render(Some(&grants(mode))));
        let own = Own {
            client: cluster.client.clone(),
            counts: Mutex::new(BTreeMap::new()),
        };
        // Against kube-sim the CRs live in the release namespace; on a real cluster (where the
        // release namespace holds the chart's ServiceAccount already) in per-test namespaces.
        let (release, other) = (cluster.ns(OPERATOR_NAMESPACE), cluster.ns("other"));
        for namespace in [&release, &other] {
            own.count("create", "namespaces");
            cluster.create_namespace(namespace).await;
        }
        if cluster.is_real() {
            // The release namespace outlives tests: start without the Lease, as a new install does.
            let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
            match leases
                .delete("meshery-operator", &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => panic!("deleting the leader-election Lease: {e}"),
            }
        }
        let since = jiff::Timestamp::now();
        let meshsync_role = run_scenario(&cluster, &own, &release, &other).await;

        let used = if cluster.is_real() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let user =
                format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
            match audited_calls(&user, since) {
                Some((used, denied)) => {
                    assert!(
                        denied.is_empty(),
                        "mode {mode}: the API server denied the operator: {denied:#?}"
                    );
                    used
                }
                None => {
                    skip_notice(&format!(
                        "mode {mode}: every grant used or documented (needs the API server's audit log in {AUDIT_LOG_VAR}); \
                         the operator converged as the chart's ServiceAccount, so no grant is missing"
                    ));
                    continue;
                }
            }
        } else {
            simulated_calls(&cluster, &own)
        };
        check_least_privilege(mode, &chart_rules, &used, &meshsync_role);
    }
}

/// Everything the operator did, the chart allows; and everything the chart grants was used, or is
/// needed for a documented reason.
fn check_least_privilege(
    mode: &str,
    chart_rules: &[Rule],
    used: &Calls,
    meshsync_role: &ClusterRole,
) {
    let used_summary: Vec<String> = used
        .iter()
        .map(|((v, g, r), c)| format!("{v} {g}/{r} ×{c}"))
        .collect();
    eprintln!(
        "mode {mode}: API calls the operator made:\n  {}",
        used_summary.join("\n  ")
    );
    for (verb, group, resource) in used.keys() {
        let namespace = (resource == "leases").then_some(OPERATOR_NAMESPACE);
        assert!(
            allowed(chart_rules, verb, group, resource, namespace).is_some(),
            "mode {mode}: the operator used `{verb} {group}/{resource}` but the chart does not grant it"
        );
    }
    for expected in [
        ("watch", "meshery.io", "brokers"),
        ("patch", "meshery.io", "brokers/status"),
        ("patch", "meshery.io", "meshsyncs/status"),
        ("get", "", "secrets"),
        ("delete", "policy", "poddisruptionbudgets"),
        ("delete", "networking.k8s.io", "networkpolicies"),
        ("delete", "rbac.authorization.k8s.io", "clusterroles"),
        ("delete", "", "secrets"),
        ("create", "events.k8s.io", "events"),
        ("patch", "coordination.k8s.io", "leases"),
        ("get", "apiextensions.k8s.io", "customresourcedefinitions"),
    ] {
        let key = (
            expected.0.to_string(),
            expected.1.to_string(),
            expected.2.to_string(),
        );
        assert!(
            used.contains_key(&key),
            "mode {mode}: the scenario should exercise {expected:?}: {used_summary:?}"
        );
    }

    // What MeshSync may be granted in hold mode: every built-in resource (a blacklist's role).
    let escalation: BTreeSet<(String, String, String)> = triples(&meshsync_rules(
        &WatchList::Blacklist(vec![]),
        "any",
        PodAccessGrants {
            logs: true,
            exec: true,
        },
    ))
    .into_iter()
    .chain(triples(meshsync_role.rules.as_deref().unwrap_or_default()))
    .collect();
    let documented = |verb: &str, group: &str, resource: &str| -> Option<&'static str> {
        let key = (verb.to_string(), group.to_string(), resource.to_string());
        if escalation.contains(&key) {
            return Some(
                "held so the operator may create and bind MeshSync's ClusterRole (escalation check)",
            );
        }
        match (verb, group, resource) {
            ("escalate" | "bind", "rbac.authorization.k8s.io", "clusterroles") => Some(
                "rbac.meshsyncGrants=escalate: MeshSync's ClusterRole grants what the operator does not hold",
            ),
            ("update", "meshery.io", "brokers/finalizers" | "meshsyncs/finalizers") => {
                Some("blockOwnerDeletion on children, under OwnerReferencesPermissionEnforcement")
            }
            ("patch", "meshery.io", "brokers" | "meshsyncs") => Some(
                "removing the Go Meshery Operator's finalizer from a CR it adopts (tests/migration.rs)",
            ),
            ("get", "", "configmaps" | "services")
            | ("get", "apps", "deployments" | "statefulsets")
            | ("get", "meshery.io", "brokers") => Some(
                "reading the Go Meshery Operator's children of a CR it adopts (tests/migration.rs)",
            ),
            ("patch", "events.k8s.io", "events") => {
                Some("the operator's EventRecorder patches a repeated Event's series")
            }
            ("create" | "patch" | "delete", _, _) if CHILD_KINDS.contains(&(group, resource)) => {
                Some(
                    "every child kind can be applied, pruned or recreated (recreateOnImmutableChange)",
                )
            }
            _ => None,
        }
    };
    let mut unexplained = Vec::new();
    for rule in chart_rules {
        for group in &rule.groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    let key = (verb.clone(), group.clone(), resource.clone());
                    if used.contains_key(&key) {
                        continue;
                    }
                    match documented(verb, group, resource) {
                        Some(reason) => {
                            eprintln!(
                                "mode {mode}: granted, unused here: {verb} {group}/{resource}: {reason}"
                            )
                        }
                        None => unexplained.push(format!("{verb} {group}/{resource}")),
                    }
                }
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "mode {mode}: granted but neither used nor documented: {unexplained:?}"
    );
}

/// Every (verb, group, resource) a set of rules names.
fn triples(rules: &[PolicyRule]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.push((verb.clone(), group.clone(), resource.clone()));
                }
            }
        }
    }
    out
}

/// The chart's values for `rbac.meshsyncGrants=<mode>`.
fn grants(mode: &str) -> Value {
    json!({"rbac": {"meshsyncGrants": mode}})
}

/// A watch-list of a custom resource the chart's defaults do not let the operator read.
const WIDGETS: &str = r#"[{"Resource":"widgets.v1.example.com","Events":["ADDED"]}]"#;

async fn apply_meshsync(cluster: &Cluster, namespace: &str, name: &str, watch_list: Value) {
    let spec = json!({"size": 1, "broker": {"native": {"name": "meshery-broker"}}, "watch-list": {"data": watch_list}});
    let yaml = serde_json::to_string(&meshsync(namespace, name, spec)).unwrap();
    cluster.apply_yaml::<MeshSync>(&yaml).await;
}

fn ready_at_generation(m: &MeshSync) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.phase == Some(Phase::Ready) && s.observed_generation == m.metadata.generation
    })
}

/// The API server's escalation check, for real: in `hold` mode the operator may grant MeshSync
/// every built-in resource (a blacklist's role) but not a custom resource until
/// `rbac.meshsyncReadableResources` lists it — the CR says so with `ApplyFailed` — and in
/// `escalate` mode it may grant both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_operator_may_grant_meshsync_is_decided_by_the_api_servers_escalation_check() {
    if skip_whole_test_on_real_cluster_only() {
        return;
    }
    for mode in ["hold", "escalate"] {
        let mut cluster = Cluster::start().await;
        install_chart_rbac(&cluster.client, &grants(mode)).await;
        let namespace = cluster.create_ns("grants").await;
        cluster.start_operator(Settings {
            broker_probe: BrokerProbeMode::Off,
            ..test_settings()
        });
        let broker =
            serde_json::to_string(&broker(&namespace, "meshery-broker", json!({"size": 1})))
                .unwrap();
        cluster.apply_yaml::<Broker>(&broker).await;
        cluster
            .wait_for_broker_phase(&namespace, "meshery-broker", Phase::Ready, WAIT)
            .await;

        apply_meshsync(
            &cluster,
            &namespace,
            "everything",
            json!({"blacklist": "[]"}),
        )
        .await;
        cluster
            .wait_for(&namespace, "everything", WAIT, ready_at_generation)
            .await;

        apply_meshsync(
            &cluster,
            &namespace,
            "widgets",
            json!({"whitelist": WIDGETS}),
        )
        .await;
        if mode == "escalate" {
            cluster
                .wait_for(&namespace, "widgets", WAIT, ready_at_generation)
                .await;
        } else {
            let refused = cluster
                .wait_for(&namespace, "widgets", WAIT, |m: &MeshSync| {
                    m.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.reason == "ApplyFailed" && c.message.contains("forbidden"))
                    })
                })
                .await;
            assert_ne!(phase_of(&refused), Some(Phase::Ready));
            // The fix the chart documents: let the operator read the custom resource.
            let mut values = grants("hold");
            values["rbac"]["meshsyncReadableResources"] =
                json!([{"apiGroups": ["example.com"], "resources": ["widgets"]}]);
            install_chart_rbac(&cluster.client, &values).await;
            cluster
                .wait_for(&namespace, "widgets", WAIT, ready_at_generation)
                .await;
        }
        cluster.stop_operator().await;
    }
    // The next suite's operator runs with the mode it asks for.
    let cluster = Cluster::start().await;
    install_chart_rbac(&cluster.client, &grants(&rbac_mode())).await;
}

fn phase_of(m: &MeshSync) -> Option<Phase> {
    m.status.as_ref().and_then(|s| s.phase)
}

/// `true` (after printing why) against kube-sim, which has no authorizer.
fn skip_whole_test_on_real_cluster_only() -> bool {
    if on_real_cluster() {
        return false;
    }
    eprintln!(
        "{}: needs a real API server (its authorizer): set {REAL_CLUSTER_VAR} (scripts/install-and-test.sh does)",
        std::thread::current().name().unwrap_or("this test")
    );
    true
}

/// The kinds the operator renders (src/controller/kinds.rs), as (group, plural).
const CHILD_KINDS: &[(&str, &str)] = &[
    ("", "secrets"),
    ("", "configmaps"),
    ("", "serviceaccounts"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("", "services"),
    ("apps", "statefulsets"),
    ("apps", "deployments"),
    ("policy", "poddisruptionbudgets"),
    ("networking.k8s.io", "networkpolicies"),
];
