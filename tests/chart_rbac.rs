//! Least privilege, checked both ways: the operator runs (in-process, against kube-sim, with leader
//! election) through Broker and MeshSync create/update/prune/status/sweep/events; every
//! (verb, resource) it sent is allowed by the chart's ClusterRole/Role, and every permission the
//! chart grants was used or is needed for a documented reason — chiefly Kubernetes' RBAC
//! escalation check, emulated here against the ClusterRole the operator really created for MeshSync.

mod chart_support;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chart_support::{Rule, allowed, render, rules, split_resource};
use harness::{Cluster, test_settings};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use meshery_operator::api::watch_list::WatchList;
use meshery_operator::api::{Broker, MeshSync, Phase};
use meshery_operator::controller::{BrokerProbeMode, LeaderElection, RunOptions};
use meshery_operator::render::rbac::meshsync_rules;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const RELEASE_NAMESPACE: &str = "meshery";

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

    async fn namespace(&self, name: &str) {
        self.count("create", "namespaces");
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
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
        let deadline = Instant::now() + WAIT;
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

/// Whether `granted` covers every permission of `role` (Kubernetes' escalation check, for rules
/// without non-resource URLs).
fn uncovered(granted: &[Rule], role: &[PolicyRule]) -> Vec<String> {
    let mut missing = Vec::new();
    for rule in role {
        let names = rule.resource_names.clone().unwrap_or_default();
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let covered = granted.iter().any(|g| {
                        g.namespace.is_none()
                            && g.verbs.contains(verb)
                            && g.groups.contains(group)
                            && g.resources.contains(resource)
                            && (g.names.is_empty()
                                || (!names.is_empty() && names.iter().all(|n| g.names.contains(n))))
                    });
                    if !covered {
                        missing.push(format!("{verb} {group}/{resource} {names:?}"));
                    }
                }
            }
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_grants_exactly_what_the_operator_uses() {
    let chart_rules = rules(&render(None));
    let cluster = Cluster::start().await;
    let own = Own {
        client: cluster.client.clone(),
        counts: Mutex::new(BTreeMap::new()),
    };
    own.namespace(RELEASE_NAMESPACE).await;
    own.namespace("other").await;

    // The operator, with leader election as the chart runs it.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions {
        settings: meshery_operator::controller::Settings {
            broker_probe: BrokerProbeMode::Off,
            ..test_settings()
        },
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: Some(LeaderElection {
            namespace: RELEASE_NAMESPACE.into(),
            lease_name: "meshery-operator".into(),
            identity: "meshery-operator-0".into(),
        }),
        concurrency: 4,
    };
    let client = cluster.client.clone();
    let operator = tokio::spawn(async move {
        meshery_operator::controller::run(client, options, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the operator runs");
    });

    // Create: the chart's default CRs.
    let defaults = render(None);
    for cr in &defaults {
        match cr["kind"].as_str().unwrap() {
            "Broker" => drop(own.apply::<Broker>(cr.clone()).await),
            "MeshSync" => drop(own.apply::<MeshSync>(cr.clone()).await),
            _ => {}
        }
    }
    own.ready("meshery", "meshery-broker", broker_status).await;
    own.ready("meshery", "meshery-meshsync", meshsync_status)
        .await;

    // Escalation: the ClusterRole the operator created for MeshSync grants nothing the chart
    // does not give the operator (so the API server lets it create and bind that role).
    let meshsync_role = own
        .cluster_role("meshery-meshsync-meshery-meshery-meshsync")
        .await
        .expect("MeshSync's ClusterRole");
    let missing = uncovered(
        &chart_rules,
        meshsync_role.rules.as_deref().unwrap_or_default(),
    );
    assert!(
        missing.is_empty(),
        "the operator could not grant MeshSync: {missing:?}"
    );

    // Update: a routed cluster with a PodDisruptionBudget and a NetworkPolicy; then back (prune).
    let spec = json!({"size": 3, "networkPolicy": {"enabled": true}});
    own.apply::<Broker>(broker("meshery", "meshery-broker", spec))
        .await;
    own.ready("meshery", "meshery-broker", broker_status).await;
    own.apply::<Broker>(broker("meshery", "meshery-broker", json!({"size": 1})))
        .await;
    own.ready("meshery", "meshery-broker", broker_status).await;

    // A user's auth Secret (read with a GET) in another namespace.
    own.secret("other", "user-auth", &format!("t{}", "a".repeat(64)))
        .await;
    let spec = json!({"size": 1, "service": {"type": "ClusterIP"}, "auth": {"secretRef": {"name": "user-auth"}}});
    own.apply::<Broker>(broker("other", "custom-auth", spec))
        .await;
    own.ready("other", "custom-auth", broker_status).await;

    // A MeshSync publishing to a Broker in another namespace (its credential is copied), with a
    // blacklist; then moved to a Broker beside it (the copy is pruned).
    let spec = json!({
        "size": 1,
        "broker": {"native": {"name": "meshery-broker", "namespace": "meshery"}},
        "watch-list": {"data": {"blacklist": "[\"secrets.v1.\"]"}},
    });
    own.apply::<MeshSync>(meshsync("other", "other-sync", spec))
        .await;
    own.ready("other", "other-sync", meshsync_status).await;
    let spec = json!({
        "size": 1,
        "broker": {"native": {"name": "custom-auth"}},
        "watch-list": {"data": {"whitelist": "[{\"Resource\":\"pods.v1.\",\"Events\":[\"ADDED\"]}]"}},
    });
    own.apply::<MeshSync>(meshsync("other", "other-sync", spec))
        .await;
    own.ready("other", "other-sync", meshsync_status).await;

    // Delete: its cluster-scoped RBAC is swept.
    own.delete::<MeshSync>("other", "other-sync").await;
    let deadline = Instant::now() + WAIT;
    while own
        .cluster_role("meshery-meshsync-other-other-sync")
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

    // What the operator sent: everything kube-sim saw, minus the test's own requests.
    let stats = cluster.sim.stats();
    let own_counts = own.counts.lock().unwrap().clone();
    let mut used: BTreeMap<(String, String, String), u64> = BTreeMap::new();
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
            assert_eq!(write.namespace.as_deref(), Some(RELEASE_NAMESPACE));
            assert_eq!(write.name.as_deref(), Some("meshery-operator"));
        }
    }
    let used_summary: Vec<String> = used
        .iter()
        .map(|((v, g, r), c)| format!("{v} {g}/{r} ×{c}"))
        .collect();
    eprintln!(
        "API calls the operator made:\n  {}",
        used_summary.join("\n  ")
    );

    // 1. Everything the operator did, the chart allows.
    for (verb, group, resource) in used.keys() {
        let namespace = (resource == "leases").then_some(RELEASE_NAMESPACE);
        assert!(
            allowed(&chart_rules, verb, group, resource, namespace).is_some(),
            "the operator used `{verb} {group}/{resource}` but the chart does not grant it"
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
            "the scenario should exercise {expected:?}: {used_summary:?}"
        );
    }

    // 2. Everything the chart grants was used, or is needed for a documented reason.
    // What MeshSync may be granted in hold mode: every built-in resource (a blacklist's role).
    let escalation: BTreeSet<(String, String, String)> =
        triples(&meshsync_rules(&WatchList::Blacklist(vec![]), "any"))
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
            ("update", "meshery.io", "brokers/finalizers" | "meshsyncs/finalizers") => {
                Some("blockOwnerDeletion on children, under OwnerReferencesPermissionEnforcement")
            }
            ("patch", "events.k8s.io", "events") => {
                Some("kube-runtime's Recorder patches a repeated event's series")
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
    for rule in &chart_rules {
        for group in &rule.groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    let key = (verb.clone(), group.clone(), resource.clone());
                    if used.contains_key(&key) {
                        continue;
                    }
                    match documented(verb, group, resource) {
                        Some(reason) => {
                            eprintln!("granted, unused here: {verb} {group}/{resource}: {reason}")
                        }
                        None => unexplained.push(format!("{verb} {group}/{resource}")),
                    }
                }
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "granted but neither used nor documented: {unexplained:?}"
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

#[test]
fn hold_mode_can_grant_every_builtin_watch_list_but_not_custom_resources() {
    let held = rules(&render(None));
    // A blacklist watches every built-in resource MeshSync knows but the listed ones.
    let everything = meshsync_rules(&WatchList::Blacklist(vec![]), "meshery-meshsync");
    assert_eq!(uncovered(&held, &everything), Vec::<String>::new());
    let default = meshsync_rules(&WatchList::default(), "meshery-meshsync");
    assert_eq!(uncovered(&held, &default), Vec::<String>::new());
    // A custom resource needs rbac.meshsyncReadableResources (or rbac.meshsyncGrants=escalate).
    let custom = WatchList::parse(
        Some(r#"[{"Resource":"widgets.v1.example.com","Events":["ADDED"]}]"#),
        None,
    )
    .expect("a valid whitelist");
    let missing = uncovered(&held, &meshsync_rules(&custom, "meshery-meshsync"));
    assert_eq!(missing.len(), 3, "{missing:?}");
    let extended = rules(&render(Some(
        &json!({"rbac": {"meshsyncReadableResources": [
            {"apiGroups": ["example.com"], "resources": ["widgets"]},
        ]}}),
    )));
    assert_eq!(
        uncovered(&extended, &meshsync_rules(&custom, "meshery-meshsync")),
        Vec::<String>::new()
    );
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
