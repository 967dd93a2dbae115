//! The MeshSync controller end to end: kube-sim as the API server, the operator in-process. The
//! Broker probe is off (a Broker is Ready on its children alone), so no test here needs nats-server.
//!
//! With `MESHERY_E2E_KUBECONFIG` set the suite runs against that cluster, in per-test namespaces;
//! what only kube-sim can tell (its request log, injected readiness) is skipped there with a notice,
//! and "zero writes" becomes "every object the operator writes kept its resourceVersion".

mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::{
    Cluster, WriteCount, condition, eventually, get_json, skip_notice, test_settings, writes,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Event, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use meshery_operator::api::watch_list::builtin_resources;
use meshery_operator::api::{Broker, MeshSync, MeshSyncStatus, Phase};
use meshery_operator::controller::BrokerProbeMode;

const BROKER: &str = "
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: meshery-broker, namespace: meshery}
spec: {size: 1}
";

/// The MeshSync the Helm chart installs: native broker `meshery-broker` in `meshery`.
const NATIVE_MESHSYNC: &str = "
apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {name: meshery-meshsync, namespace: meshery}
spec:
  size: 1
  broker: {native: {name: meshery-broker, namespace: meshery}}
";

const WAIT: Duration = Duration::from_secs(20);

/// `BROKER` in namespace `ns` (`meshery` against kube-sim, a per-test namespace on a real cluster).
fn broker_yaml(ns: &str) -> String {
    BROKER.replace("namespace: meshery", &format!("namespace: {ns}"))
}

/// `NATIVE_MESHSYNC` with itself and its Broker in namespace `ns`.
fn native_meshsync(ns: &str) -> String {
    NATIVE_MESHSYNC.replace("namespace: meshery", &format!("namespace: {ns}"))
}

/// `native_meshsync(broker_ns)`, moved to namespace `ns` (its Broker stays in `broker_ns`).
fn native_meshsync_in(ns: &str, broker_ns: &str) -> String {
    native_meshsync(broker_ns).replace(
        &format!("namespace: {broker_ns}}}\nspec"),
        &format!("namespace: {ns}}}\nspec"),
    )
}
const CHECKSUM: &str = "meshery.io/config-checksum";
const NATS_TOKEN: &str = "NATS_TOKEN";

/// The operator with the NATS probe off: Brokers are Ready on their children alone.
fn settings() -> harness::Settings {
    harness::Settings {
        broker_probe: BrokerProbeMode::Off,
        ..test_settings()
    }
}

/// A MeshSync publishing to a NATS server the operator does not manage, with an optional watch-list
/// (`data` as YAML flow mapping content, e.g. `whitelist: '[…]'`).
fn custom_meshsync(ns: &str, name: &str, url: &str, watch_list: Option<&str>) -> String {
    let watch_list = watch_list
        .map(|data| format!("\n  watch-list: {{data: {{{data}}}}}"))
        .unwrap_or_default();
    format!(
        "
apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {{name: {name}, namespace: {ns}}}
spec:
  size: 1
  broker: {{custom: {{url: '{url}'}}}}{watch_list}
"
    )
}

/// A cluster with the `meshery` namespace (its name returned: per test on a real cluster) and the
/// operator running (probe off).
async fn cluster_with_operator() -> (Cluster, String) {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    cluster.start_operator(settings());
    (cluster, ns)
}

fn status(meshsync: &MeshSync) -> &MeshSyncStatus {
    meshsync.status.as_ref().expect("a status")
}

fn phase(meshsync: &MeshSync) -> Option<Phase> {
    meshsync.status.as_ref().and_then(|s| s.phase)
}

fn ready_reason(meshsync: &MeshSync) -> Option<String> {
    let status = meshsync.status.as_ref()?;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

fn cluster_roles(cluster: &Cluster) -> Api<ClusterRole> {
    Api::all(cluster.client.clone())
}

fn cluster_role_bindings(cluster: &Cluster) -> Api<ClusterRoleBinding> {
    Api::all(cluster.client.clone())
}

/// `meshery-meshsync-<namespace>-<name>`: the name of a MeshSync's ClusterRole and ClusterRoleBinding.
fn rbac_name(namespace: &str, name: &str) -> String {
    format!("meshery-meshsync-{namespace}-{name}")
}

fn container_env(deployment: &Deployment) -> Vec<EnvVar> {
    let spec = deployment.spec.as_ref().expect("a Deployment spec");
    let pod = spec.template.spec.as_ref().expect("a pod spec");
    pod.containers[0].env.clone().unwrap_or_default()
}

fn env_var<'a>(env: &'a [EnvVar], name: &str) -> &'a EnvVar {
    env.iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no env var {name} in {env:#?}"))
}

fn pod_annotations(deployment: &Deployment) -> std::collections::BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

fn checksum(deployment: &Deployment) -> String {
    pod_annotations(deployment)
        .get(CHECKSUM)
        .cloned()
        .expect("the pod template carries the watch-list checksum")
}

/// One grant of a ClusterRole, flattened: (apiGroup, resource, verbs, resourceNames).
type Grant = (String, String, Vec<String>, Vec<String>);

fn grants(role: &ClusterRole) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        let mut verbs = rule.verbs.clone();
        verbs.sort();
        let names = rule.resource_names.clone().unwrap_or_default();
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                grants.insert((
                    group.clone(),
                    resource.clone(),
                    verbs.clone(),
                    names.clone(),
                ));
            }
        }
    }
    grants
}

/// What MeshSync `name` must be granted for watching `watched` (`(group, plural)` pairs) and nothing
/// more: get/list/watch on each, list/watch on CRDs (unless watched), get on its own MeshSync.
fn expected_grants(name: &str, watched: &[(&str, &str)]) -> BTreeSet<Grant> {
    let verbs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut expected: BTreeSet<Grant> = watched
        .iter()
        .map(|(group, plural)| {
            (
                group.to_string(),
                plural.to_string(),
                verbs(&["get", "list", "watch"]),
                vec![],
            )
        })
        .collect();
    if !watched.contains(&("apiextensions.k8s.io", "customresourcedefinitions")) {
        expected.insert((
            "apiextensions.k8s.io".into(),
            "customresourcedefinitions".into(),
            verbs(&["list", "watch"]),
            vec![],
        ));
    }
    expected.insert((
        "meshery.io".into(),
        "meshsyncs".into(),
        verbs(&["get"]),
        vec![name.to_string()],
    ));
    // spec.podAccess's defaults: Meshery UI's log streaming and terminal.
    expected.insert(("".into(), "pods/log".into(), verbs(&["get"]), vec![]));
    expected.insert((
        "".into(),
        "pods/exec".into(),
        verbs(&["create", "get"]),
        vec![],
    ));
    expected
}

/// Waits for a Warning Event with `reason` about the MeshSync `ns/name`: what `kubectl describe`
/// shows.
async fn wait_for_warning_event(cluster: &Cluster, ns: &str, name: &str, reason: &str) {
    let events: Api<k8s_openapi::api::events::v1::Event> = cluster.api(ns);
    let what = format!("a {reason} Warning Event for MeshSync {name}");
    eventually(WAIT, &what, || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("MeshSync")
            })
    })
    .await;
}

/// Whether a MeshSync's ClusterRole and ClusterRoleBinding (both named `name`) are gone.
async fn rbac_gone(client: &Client, name: String) -> bool {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    roles.get_opt(&name).await.unwrap().is_none()
        && bindings.get_opt(&name).await.unwrap().is_none()
}

/// Whether MeshSync `name`'s namespaced children in `ns` are gone.
async fn namespaced_children_gone(client: &Client, ns: &str, name: &str) -> bool {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    deployments.get_opt(name).await.unwrap().is_none()
        && config_maps
            .get_opt(&format!("{name}-watch-list"))
            .await
            .unwrap()
            .is_none()
        && accounts.get_opt(name).await.unwrap().is_none()
}

/// Writes other than the operator's status writes and Events (what "nothing applied" means).
async fn child_writes(cluster: &Cluster, count: &WriteCount) -> Vec<String> {
    cluster
        .writes_since(count)
        .await
        .into_iter()
        .filter(|w| !w.contains("meshsyncs") && !w.contains("brokers") && !w.contains("events"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshsync_waits_for_its_broker_then_publishes_to_it_with_the_brokers_token() {
    let (cluster, ns) = cluster_with_operator().await;
    cluster.apply_yaml::<MeshSync>(&native_meshsync(&ns)).await;

    let waiting = cluster
        .wait_for(&ns, "meshery-meshsync", WAIT, |m: &MeshSync| {
            ready_reason(m).as_deref() == Some("WaitingForBroker")
        })
        .await;
    assert_eq!(phase(&waiting), Some(Phase::Pending));
    let ready = condition(&status(&waiting).conditions, "Ready");
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains(&format!("{ns}/meshery-broker")),
        "the message names the broker: {}",
        ready.message
    );
    assert_eq!(status(&waiting).publishing_to, None);

    // Across a few resyncs nothing is applied while the broker is missing.
    let count = cluster.count_writes(&[&ns]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        child_writes(&cluster, &count).await,
        Vec::<String>::new(),
        "writes while waiting"
    );
    assert!(
        cluster
            .api::<Deployment>(&ns)
            .get_opt("meshery-meshsync")
            .await
            .unwrap()
            .is_none()
    );
    let rbac = rbac_name(&ns, "meshery-meshsync");
    assert!(
        cluster_roles(&cluster)
            .get_opt(&rbac)
            .await
            .unwrap()
            .is_none()
    );

    // The broker arrives and becomes Ready: the MeshSync follows without any change to it.
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let ready = cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    let status = status(&ready);
    assert_eq!(
        status.publishing_to.as_deref(),
        Some(format!("nats://meshery-broker.{ns}.svc.cluster.local:4222").as_str())
    );
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(condition(&status.conditions, "Ready").status, "True");

    let deployment = cluster
        .api::<Deployment>(&ns)
        .get("meshery-meshsync")
        .await
        .unwrap();
    let env = container_env(&deployment);
    assert_eq!(
        env_var(&env, "BROKER_URL").value.as_deref(),
        Some(format!("nats://$(NATS_TOKEN)@meshery-broker.{ns}.svc.cluster.local:4222").as_str())
    );
    let token = env_var(&env, NATS_TOKEN)
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("NATS_TOKEN comes from a Secret");
    assert_eq!(
        (token.name.as_str(), token.key.as_str()),
        ("meshery-broker-auth", "token"),
        "same namespace: the broker's own Secret"
    );
    let position = |name: &str| env.iter().position(|e| e.name == name).unwrap();
    assert!(
        position(NATS_TOKEN) < position("BROKER_URL"),
        "$(NATS_TOKEN) only expands when defined before BROKER_URL"
    );
    assert!(
        cluster
            .api::<Secret>(&ns)
            .get_opt("meshery-meshsync-broker-auth")
            .await
            .unwrap()
            .is_none(),
        "no copy of the token in the broker's own namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshsync_in_another_namespace_gets_its_own_copy_of_the_token() {
    let (cluster, ns) = cluster_with_operator().await;
    let discovery = cluster.create_ns("discovery").await;
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .apply_yaml::<MeshSync>(&native_meshsync_in(&discovery, &ns))
        .await;

    let ready = cluster
        .wait_for_meshsync_phase(&discovery, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    assert_eq!(
        status(&ready).publishing_to.as_deref(),
        Some(format!("nats://meshery-broker.{ns}.svc.cluster.local:4222").as_str())
    );
    let token = cluster.broker_token(&ns, "meshery-broker").await;
    let copy = cluster
        .api::<Secret>(&discovery)
        .get("meshery-meshsync-broker-auth")
        .await
        .expect("a copy of the broker's token next to MeshSync");
    assert_eq!(
        copy.data.as_ref().map(|d| d["token"].0.clone()),
        Some(token.into_bytes()),
        "the copy holds the broker's token"
    );
    assert!(
        copy.owner_references()
            .iter()
            .any(|r| r.kind == "MeshSync" && r.controller == Some(true)),
        "the copy is owned by the MeshSync (collected with it)"
    );

    let deployment = cluster
        .api::<Deployment>(&discovery)
        .get("meshery-meshsync")
        .await
        .unwrap();
    let env = container_env(&deployment);
    let reference = env_var(&env, NATS_TOKEN)
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("NATS_TOKEN comes from a Secret");
    assert_eq!(reference.name, "meshery-meshsync-broker-auth");
    let binding = cluster_role_bindings(&cluster)
        .get(&rbac_name(&discovery, "meshery-meshsync"))
        .await
        .unwrap();
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("meshery-meshsync", Some(discovery.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_url_meshsync_is_ready_without_a_broker_and_keeps_the_password_in_a_secret() {
    const PASSWORD: &str = "s3cr3t-Pa55";
    let (cluster, ns) = cluster_with_operator().await;
    let url = format!("nats://meshsync:{PASSWORD}@nats.example:4222");
    cluster
        .apply_yaml::<MeshSync>(&custom_meshsync(&ns, "external-meshsync", &url, None))
        .await;

    let ready = cluster
        .wait_for_meshsync_phase(&ns, "external-meshsync", Phase::Ready, WAIT)
        .await;
    assert_eq!(
        status(&ready).publishing_to.as_deref(),
        Some("nats://nats.example:4222"),
        "publishing-to carries no credentials"
    );
    assert!(
        cluster
            .api::<Broker>(&ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let secret = cluster
        .api::<Secret>(&ns)
        .get("external-meshsync-broker-auth")
        .await
        .expect("the credentials live in a Secret");
    let userinfo = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    assert_eq!(userinfo, format!("meshsync:{PASSWORD}"));

    let deployment = get_json(
        &cluster.client,
        "apps/v1",
        "deployments",
        &ns,
        "external-meshsync",
    )
    .await
    .expect("the Deployment");
    let env = container_env(&serde_json::from_value(deployment.clone()).unwrap());
    assert_eq!(
        env_var(&env, "BROKER_URL").value.as_deref(),
        Some("nats://$(NATS_TOKEN)@nats.example:4222")
    );
    let leaks = [
        ("the Deployment", deployment.to_string()),
        (
            "the MeshSync status",
            serde_json::to_string(status(&ready)).unwrap(),
        ),
        (
            "the watch-list ConfigMap",
            serde_json::to_string(
                &cluster
                    .api::<ConfigMap>(&ns)
                    .get("external-meshsync-watch-list")
                    .await
                    .unwrap(),
            )
            .unwrap(),
        ),
        (
            "the Events",
            serde_json::to_string(
                &cluster
                    .api::<Event>(&ns)
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items,
            )
            .unwrap(),
        ),
    ];
    for (what, text) in leaks {
        assert!(!text.contains(PASSWORD), "the password leaks into {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshery_servers_fields_on_the_deployment_are_kept() {
    let (cluster, ns) = cluster_with_operator().await;
    let yaml = custom_meshsync(&ns, "meshery-meshsync", "nats://nats.example:4222", None);
    cluster.apply_yaml::<MeshSync>(&yaml).await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(sim) = cluster.sim() {
        sim.reset_stats();
    }

    // What Meshery Server sends: its own field manager, forced, a partial Deployment.
    let deployments = cluster.api::<Deployment>(&ns);
    let server_apply = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "meshery-meshsync", "namespace": &ns},
        "spec": {"template": {
            "metadata": {"annotations": {"meshery.io/restarted-at": "2026-11-23T15:00:00Z"}},
            "spec": {"containers": [{
                "name": "meshsync",
                "args": ["--outputNamespaces=meshery"],
                "env": [{"name": "MESHSYNC_REDACT_SECRETS", "value": "true"}],
            }]},
        }},
    });
    let applied = deployments
        .patch(
            "meshery-meshsync",
            &PatchParams::apply("meshery-server").force(),
            &Patch::Apply(&server_apply),
        )
        .await
        .expect("Meshery Server's apply");

    let kept = |deployment: &Deployment| {
        let env = container_env(deployment);
        let pod = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        env.iter()
            .any(|e| e.name == "MESHSYNC_REDACT_SECRETS" && e.value.as_deref() == Some("true"))
            && env.iter().any(|e| e.name == "BROKER_URL")
            && pod.containers[0].args.as_deref()
                == Some(&["--outputNamespaces=meshery".to_string()][..])
            && pod_annotations(deployment).contains_key("meshery.io/restarted-at")
            && pod_annotations(deployment).contains_key(CHECKSUM)
    };
    // The restart rolls the pods; the MeshSync converges again, then several resyncs pass.
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let deployment = deployments.get("meshery-meshsync").await.unwrap();
    assert!(
        kept(&deployment),
        "Meshery Server's fields: {deployment:#?}"
    );
    match cluster.sim() {
        Some(sim) => {
            let to_deployment: Vec<_> = writes(sim)
                .into_iter()
                .filter(|w| w.contains("deployments.apps"))
                .collect();
            assert_eq!(
                to_deployment,
                ["apply deployments.apps meshery/meshery-meshsync"],
                "only Meshery Server's own apply: the operator did not fight it"
            );
            let managers: Vec<_> = sim
                .stats()
                .real_writes()
                .iter()
                .filter(|w| w.resource == "deployments.apps")
                .map(|w| w.field_manager.clone())
                .collect();
            assert_eq!(managers, [Some("meshery-server".to_string())]);
        }
        // No request log on a real cluster: the spec is still the one Meshery Server's apply made.
        None => {
            skip_notice("counting the writes to the Deployment and their field managers");
            assert_eq!(
                deployment.metadata.generation, applied.metadata.generation,
                "only Meshery Server's own apply: the operator did not fight it"
            );
        }
    }

    // A spec change makes the operator apply the Deployment; Meshery Server's fields survive it.
    cluster
        .apply_yaml::<MeshSync>(&yaml.replace("size: 1", "size: 2"))
        .await;
    eventually(WAIT, "the operator scales MeshSync to 2", || async {
        deployments
            .get("meshery-meshsync")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas
            == Some(2)
    })
    .await;
    let deployment = deployments.get("meshery-meshsync").await.unwrap();
    assert!(
        kept(&deployment),
        "Meshery Server's fields after the operator's apply: {deployment:#?}"
    );
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_list_change_rolls_meshsync_and_resizes_its_rbac_in_place() {
    let (cluster, ns) = cluster_with_operator().await;
    let url = "nats://nats.example:4222";
    let wide = r#"whitelist: '[{"Resource":"pods.v1.","Events":["ADDED","MODIFIED","DELETED"]},{"Resource":"services.v1.","Events":["ADDED"]},{"Resource":"deployments.v1.apps","Events":["MODIFIED"]}]'"#;
    let narrow = r#"whitelist: '[{"Resource":"pods.v1.","Events":["ADDED","DELETED"]}]'"#;
    let blacklist = r#"blacklist: '["secrets.v1.", "events.v1."]'"#;
    let name = "meshery-meshsync";
    let rbac = rbac_name(&ns, name);
    let deployments = cluster.api::<Deployment>(&ns);

    cluster
        .apply_yaml::<MeshSync>(&custom_meshsync(&ns, name, url, Some(wide)))
        .await;
    cluster
        .wait_for_meshsync_phase(&ns, name, Phase::Ready, WAIT)
        .await;
    let role = cluster_roles(&cluster).get(&rbac).await.unwrap();
    assert_eq!(
        grants(&role),
        expected_grants(
            name,
            &[("", "pods"), ("", "services"), ("apps", "deployments")]
        )
    );
    let binding = cluster_role_bindings(&cluster).get(&rbac).await.unwrap();
    assert_eq!(binding.role_ref.name, rbac);
    let (role_uid, binding_uid) = (role.uid(), binding.uid());
    let mut last_checksum = checksum(&deployments.get(name).await.unwrap());
    let count = cluster.count_writes(&[&ns]).await;

    // Narrower: the role shrinks to pods only, and MeshSync restarts to read the new list.
    let steps: [(&str, Vec<(String, String)>); 2] = [
        (narrow, vec![("".into(), "pods".into())]),
        (
            blacklist,
            builtin_resources()
                .into_iter()
                .filter(|r| r.plural != "secrets" && r.plural != "events")
                .map(|r| (r.group, r.plural))
                .collect(),
        ),
    ];
    for (watch_list, watched) in steps {
        let watched: Vec<(&str, &str)> = watched
            .iter()
            .map(|(g, p)| (g.as_str(), p.as_str()))
            .collect();
        let expected = expected_grants(name, &watched);
        let generation = deployments.get(name).await.unwrap().metadata.generation;
        cluster
            .apply_yaml::<MeshSync>(&custom_meshsync(&ns, name, url, Some(watch_list)))
            .await;
        eventually(
            WAIT,
            &format!("the ClusterRole follows {watch_list}"),
            || async { grants(&cluster_roles(&cluster).get(&rbac).await.unwrap()) == expected },
        )
        .await;
        let deployment = cluster
            .wait_for(&ns, name, WAIT, |d: &Deployment| {
                pod_annotations(d).get(CHECKSUM) != Some(&last_checksum)
            })
            .await;
        assert!(
            deployment.metadata.generation > generation,
            "a new pod template rolls MeshSync"
        );
        last_checksum = checksum(&deployment);
        let config = cluster
            .api::<ConfigMap>(&ns)
            .get(&format!("{name}-watch-list"))
            .await
            .unwrap();
        let key = watch_list.split(':').next().unwrap();
        assert_eq!(
            config.data.unwrap().keys().collect::<Vec<_>>(),
            [key],
            "the ConfigMap holds the new list"
        );
        // Ready again, at the new generation (not the previous generation's Ready status).
        cluster
            .wait_for(&ns, name, WAIT, |m: &MeshSync| {
                phase(m) == Some(Phase::Ready)
                    && m.status.as_ref().and_then(|s| s.observed_generation)
                        == m.metadata.generation
            })
            .await;
    }
    // Wider again: jobs (not in the default whitelist) is granted, secrets and events are not.
    let role = cluster_roles(&cluster).get(&rbac).await.unwrap();
    let granted = grants(&role);
    let has = |resource: &str| granted.iter().any(|(_, r, _, _)| r == resource);
    assert!(has("jobs") && has("pods") && !has("secrets") && !has("events"));
    // Read-only, but for the terminal's pods/exec (spec.podAccess.exec, on by default).
    assert!(
        !granted
            .iter()
            .filter(|(_, resource, _, _)| resource != "pods/exec")
            .any(|(_, _, verbs, _)| verbs
                .iter()
                .any(|v| !["get", "list", "watch"].contains(&v.as_str()))),
        "read-only: {granted:#?}"
    );

    // Same objects, updated in place; nothing deleted.
    assert_eq!(role.uid(), role_uid, "the ClusterRole keeps its identity");
    let binding = cluster_role_bindings(&cluster).get(&rbac).await.unwrap();
    assert_eq!(binding.uid(), binding_uid);
    let deletes: Vec<_> = cluster
        .writes_since(&count)
        .await
        .into_iter()
        .filter(|w| w.starts_with("delete") || w.ends_with(" deleted"))
        .collect();
    assert_eq!(deletes, Vec::<String>::new(), "nothing pruned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_meshsync_sweeps_its_cluster_rbac_even_when_the_operator_was_stopped() {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    // A long resync: only the deletion itself (or a start) can trigger the sweep within seconds.
    cluster.start_operator(harness::Settings {
        resync_interval: Duration::from_secs(120),
        ..settings()
    });
    let url = "nats://nats.example:4222";
    for name in ["first", "keeper", "third"] {
        cluster
            .apply_yaml::<MeshSync>(&custom_meshsync(&ns, name, url, None))
            .await;
    }
    for name in ["first", "keeper", "third"] {
        cluster
            .wait_for_meshsync_phase(&ns, name, Phase::Ready, WAIT)
            .await;
    }
    let keeper_rbac = rbac_name(&ns, "keeper");
    let keeper_role = cluster_roles(&cluster).get(&keeper_rbac).await.unwrap();
    let keeper_binding = cluster_role_bindings(&cluster)
        .get(&keeper_rbac)
        .await
        .unwrap();
    let meshsyncs = cluster.api::<MeshSync>(&ns);
    let keeper_uid = meshsyncs.get("keeper").await.unwrap().uid().unwrap();
    assert_eq!(
        keeper_role.labels().get("meshery.io/owner-uid"),
        Some(&keeper_uid),
        "cluster-scoped RBAC names its owner by label"
    );
    assert!(
        keeper_role
            .owner_references()
            .iter()
            .any(|r| r.kind == "CustomResourceDefinition" && r.name == "meshsyncs.meshery.io"),
        "owned by the CRD: uninstalling the CRDs removes it"
    );
    if let Some(sim) = cluster.sim() {
        sim.reset_stats();
    }

    // Deleted while the operator runs: no finalizer holds it, and the RBAC goes within seconds.
    meshsyncs
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        meshsyncs.get_opt("first").await.unwrap().is_none(),
        "deleted at once: no finalizer"
    );
    eventually(
        Duration::from_secs(5),
        "first's ClusterRole and ClusterRoleBinding are swept",
        || rbac_gone(&cluster.client, rbac_name(&ns, "first")),
    )
    .await;
    eventually(WAIT, "first's namespaced children are collected", || {
        namespaced_children_gone(&cluster.client, &ns, "first")
    })
    .await;

    // Deleted while the operator is stopped: the RBAC stays until the next start sweeps it.
    cluster.stop_operator().await;
    meshsyncs
        .delete("third", &DeleteParams::default())
        .await
        .unwrap();
    assert!(meshsyncs.get_opt("third").await.unwrap().is_none());
    eventually(WAIT, "third's namespaced children are collected", || {
        namespaced_children_gone(&cluster.client, &ns, "third")
    })
    .await;
    let third_rbac = rbac_name(&ns, "third");
    assert!(
        !rbac_gone(&cluster.client, third_rbac.clone()).await,
        "nothing removes the RBAC while the operator is down"
    );
    cluster.start_operator(harness::Settings {
        resync_interval: Duration::from_secs(120),
        ..settings()
    });
    eventually(
        Duration::from_secs(10),
        "the start sweeps third's ClusterRole and ClusterRoleBinding",
        || rbac_gone(&cluster.client, third_rbac.clone()),
    )
    .await;

    // The other MeshSync's RBAC was never touched.
    let role = cluster_roles(&cluster).get(&keeper_rbac).await.unwrap();
    let binding = cluster_role_bindings(&cluster)
        .get(&keeper_rbac)
        .await
        .unwrap();
    assert_eq!(
        (role.uid(), role.resource_version()),
        (keeper_role.uid(), keeper_role.resource_version())
    );
    assert_eq!(
        (binding.uid(), binding.resource_version()),
        (keeper_binding.uid(), keeper_binding.resource_version())
    );
    if let Some(sim) = cluster.require_sim(
        "the exact deletes of the sweep and the writes to the keeper need kube-sim's request log \
         (the keeper's unchanged resourceVersions above hold on a real cluster too)",
    ) {
        let keeper_writes: Vec<_> = writes(sim)
            .into_iter()
            .filter(|w| w.contains("keeper"))
            .collect();
        assert_eq!(keeper_writes, Vec::<String>::new(), "writes to the keeper");
        let deletes: BTreeSet<_> = writes(sim)
            .into_iter()
            .filter(|w| w.starts_with("delete clusterrole"))
            .collect();
        let expected: BTreeSet<_> = ["first", "third"]
            .iter()
            .flat_map(|n| {
                let name = rbac_name(&ns, n);
                [
                    format!("delete clusterroles.rbac.authorization.k8s.io /{name}"),
                    format!("delete clusterrolebindings.rbac.authorization.k8s.io /{name}"),
                ]
            })
            .collect();
        assert_eq!(deletes, expected, "the sweep deletes exactly the orphans");
    }
    assert_eq!(
        phase(&meshsyncs.get("keeper").await.unwrap()),
        Some(Phase::Ready)
    );
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_watch_list_on_a_deployed_meshsync_degrades_and_leaves_children_alone() {
    let (cluster, ns) = cluster_with_operator().await;
    let url = "nats://nats.example:4222";
    let name = "meshery-meshsync";
    let valid = r#"whitelist: '[{"Resource":"pods.v1.","Events":["ADDED"]}]'"#;
    cluster
        .apply_yaml::<MeshSync>(&custom_meshsync(&ns, name, url, Some(valid)))
        .await;
    cluster
        .wait_for_meshsync_phase(&ns, name, Phase::Ready, WAIT)
        .await;
    if cluster.is_real() {
        // A real Deployment controller may still write the rollout's last status.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let deployment = cluster.api::<Deployment>(&ns).get(name).await.unwrap();
    let role = cluster_roles(&cluster)
        .get(&rbac_name(&ns, name))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = cluster.count_writes(&[&ns]).await;

    // A core resource without its trailing dot, and an entry with no events.
    let invalid = r#"whitelist: '[{"Resource":"pods.v1","Events":["ADDED"]},{"Resource":"services.v1.","Events":[]}]'"#;
    cluster
        .apply_yaml::<MeshSync>(&custom_meshsync(&ns, name, url, Some(invalid)))
        .await;
    let degraded = cluster
        .wait_for_meshsync_phase(&ns, name, Phase::Degraded, WAIT)
        .await;
    let status = status(&degraded);
    let ready = condition(&status.conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    for field in [
        "spec.watch-list.data.whitelist[0].Resource",
        "spec.watch-list.data.whitelist[1].Events",
    ] {
        assert!(
            ready.message.contains(field),
            "{field} in {}",
            ready.message
        );
    }
    assert_eq!(condition(&status.conditions, "Stalled").status, "True");
    // `kubectl describe` shows it too: a Warning Event about this MeshSync turning Degraded.
    wait_for_warning_event(&cluster, &ns, name, "Degraded").await;
    assert_eq!(status.observed_generation, degraded.metadata.generation);

    // Several resyncs later the children are exactly as they were.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        child_writes(&cluster, &count).await,
        Vec::<String>::new(),
        "children untouched while the spec is invalid"
    );
    let after = cluster.api::<Deployment>(&ns).get(name).await.unwrap();
    assert_eq!(after.resource_version(), deployment.resource_version());
    let role_after = cluster_roles(&cluster)
        .get(&rbac_name(&ns, name))
        .await
        .unwrap();
    assert_eq!(role_after.resource_version(), role.resource_version());

    // Fixing the list returns to Ready.
    cluster
        .apply_yaml::<MeshSync>(&custom_meshsync(&ns, name, url, Some(valid)))
        .await;
    cluster
        .wait_for_meshsync_phase(&ns, name, Phase::Ready, WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_broker_and_meshsync_send_zero_writes() {
    let (mut cluster, ns) = cluster_with_operator().await;
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster.apply_yaml::<MeshSync>(&native_meshsync(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    // Let the rollout's last status updates settle, then count from a clean slate.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let count = cluster.count_writes(&[&ns]).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let written = cluster.writes_since(&count).await;
    assert_eq!(written, Vec::<String>::new(), "writes in steady state");
    let meshsync = cluster
        .api::<MeshSync>(&ns)
        .get("meshery-meshsync")
        .await
        .unwrap();
    assert_eq!(phase(&meshsync), Some(Phase::Ready));
    assert!(meshsync.meta().deletion_timestamp.is_none());
    cluster.stop_operator().await;
}

/// Runs a second operator against the same API server (the harness holds one); stops it on drop.
struct ExtraOperator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ExtraOperator {
    fn start(client: Client, settings: harness::Settings) -> ExtraOperator {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = meshery_operator::controller::RunOptions {
            settings,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            health_addr: "127.0.0.1:0".parse().unwrap(),
            leader_election: None,
            concurrency: 4,
        };
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            meshery_operator::controller::run(client, options, shutdown)
                .await
                .expect("the second operator runs");
        });
        ExtraOperator {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the second operator stops within 10 s")
            .expect("the second operator does not panic");
    }
}

impl Drop for ExtraOperator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scoped_operators_do_not_sweep_each_others_rbac() {
    let mut cluster = Cluster::start().await;
    let team_a = cluster.create_ns("team-a").await;
    let team_b = cluster.create_ns("team-b").await;
    let teams = [team_a.as_str(), team_b.as_str()];
    let scoped = |namespace: &str| harness::Settings {
        namespace: Some(namespace.to_string()),
        ..settings()
    };
    cluster.start_operator(scoped(&team_a));
    let second = ExtraOperator::start(cluster.operator_client.clone(), scoped(&team_b));
    for namespace in teams {
        cluster
            .apply_yaml::<MeshSync>(&custom_meshsync(
                namespace,
                "meshsync",
                "nats://nats.example:4222",
                None,
            ))
            .await;
    }
    for namespace in teams {
        cluster
            .wait_for_meshsync_phase(namespace, "meshsync", Phase::Ready, WAIT)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = cluster.count_writes(&teams).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let written = cluster.writes_since(&count).await;
    assert_eq!(
        written,
        Vec::<String>::new(),
        "each operator leaves the other's MeshSync RBAC alone"
    );
    for namespace in teams {
        let name = rbac_name(namespace, "meshsync");
        assert!(!rbac_gone(&cluster.client, name).await);
    }

    // Each still sweeps its own: deleting team-b's MeshSync removes only team-b's RBAC.
    cluster
        .api::<MeshSync>(&team_b)
        .delete("meshsync", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "team-b's operator sweeps its RBAC",
        || rbac_gone(&cluster.client, rbac_name(&team_b, "meshsync")),
    )
    .await;
    assert!(!rbac_gone(&cluster.client, rbac_name(&team_a, "meshsync")).await);
    second.stop().await;
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meshsync_deleted_and_recreated_under_the_same_name_keeps_its_rbac() {
    let (mut cluster, ns) = cluster_with_operator().await;
    let yaml = custom_meshsync(&ns, "meshery-meshsync", "nats://nats.example:4222", None);
    cluster.apply_yaml::<MeshSync>(&yaml).await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    let meshsyncs = cluster.api::<MeshSync>(&ns);
    let old_uid = meshsyncs.get("meshery-meshsync").await.unwrap().uid();

    // `kubectl replace --force`, or a Helm reinstall: gone and back within moments.
    meshsyncs
        .delete("meshery-meshsync", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = cluster.apply_yaml::<MeshSync>(&yaml).await;
    assert_ne!(recreated.uid(), old_uid);
    let new_uid = recreated.uid().unwrap();
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    let rbac = rbac_name(&ns, "meshery-meshsync");
    eventually(WAIT, "the RBAC belongs to the new MeshSync", || async {
        let role = cluster_roles(&cluster).get_opt(&rbac).await.unwrap();
        let binding = cluster_role_bindings(&cluster)
            .get_opt(&rbac)
            .await
            .unwrap();
        let owned = |labels: Option<&std::collections::BTreeMap<String, String>>| {
            labels.and_then(|l| l.get("meshery.io/owner-uid")) == Some(&new_uid)
        };
        role.is_some_and(|r| owned(r.metadata.labels.as_ref()))
            && binding.is_some_and(|b| owned(b.metadata.labels.as_ref()))
    })
    .await;
    // And it stays: several resyncs (and sweeps) later it is still there.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!rbac_gone(&cluster.client, rbac.clone()).await);
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_brokers_new_token_reaches_the_copy_in_another_namespace() {
    let (cluster, ns) = cluster_with_operator().await;
    let discovery = cluster.create_ns("discovery").await;
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .apply_yaml::<MeshSync>(&native_meshsync_in(&discovery, &ns))
        .await;
    cluster
        .wait_for_meshsync_phase(&discovery, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    let old_token = cluster.broker_token(&ns, "meshery-broker").await;

    // The Broker goes (its generated token Secret with it): the MeshSync waits for it again.
    let brokers = cluster.api::<Broker>(&ns);
    brokers
        .delete("meshery-broker", &DeleteParams::default())
        .await
        .unwrap();
    let waiting = cluster
        .wait_for_meshsync_phase(&discovery, "meshery-meshsync", Phase::Pending, WAIT)
        .await;
    let ready = condition(&status(&waiting).conditions, "Ready");
    assert_eq!(ready.reason, "WaitingForBroker");
    assert!(
        ready.message.contains(&format!("{ns}/meshery-broker")),
        "{}",
        ready.message
    );
    eventually(WAIT, "the old token Secret is collected", || async {
        cluster
            .api::<Secret>(&ns)
            .get_opt("meshery-broker-auth")
            .await
            .unwrap()
            .is_none()
    })
    .await;

    // Back with a freshly generated token: the copy follows it.
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let new_token = cluster.broker_token(&ns, "meshery-broker").await;
    assert_ne!(old_token, new_token);
    cluster
        .wait_for_meshsync_phase(&discovery, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    eventually(WAIT, "the copy holds the new token", || async {
        let copy = cluster
            .api::<Secret>(&discovery)
            .get("meshery-meshsync-broker-auth")
            .await
            .unwrap();
        copy.data.unwrap()["token"].0 == new_token.as_bytes()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_broker_sends_its_meshsync_back_to_waiting_at_once() {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    // A long resync, as in production (300 s): only the Broker's deletion can prompt the MeshSync.
    cluster.start_operator(harness::Settings {
        resync_interval: Duration::from_secs(120),
        ..settings()
    });
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster.apply_yaml::<MeshSync>(&native_meshsync(&ns)).await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;

    cluster
        .api::<Broker>(&ns)
        .delete("meshery-broker", &DeleteParams::default())
        .await
        .unwrap();
    let waiting = cluster
        .wait_for_meshsync_phase(
            &ns,
            "meshery-meshsync",
            Phase::Pending,
            Duration::from_secs(5),
        )
        .await;
    let ready = condition(&status(&waiting).conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "WaitingForBroker")
    );
    assert!(
        ready.message.contains(&format!("{ns}/meshery-broker")),
        "{}",
        ready.message
    );
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_with_the_operator_stopped_never_hangs_and_the_next_start_sweeps() {
    let (mut cluster, _ns) = cluster_with_operator().await;
    let scratch = cluster.create_ns("scratch").await;
    let yaml = custom_meshsync(&scratch, "meshsync", "nats://nats.example:4222", None);
    cluster.apply_yaml::<MeshSync>(&yaml).await;
    cluster
        .wait_for_meshsync_phase(&scratch, "meshsync", Phase::Ready, WAIT)
        .await;
    cluster.stop_operator().await;

    // No finalizer anywhere: the namespace and everything in it go without the operator.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    namespaces
        .delete(&scratch, &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "the namespace is gone", || async {
        namespaces.get_opt(&scratch).await.unwrap().is_none()
    })
    .await;
    let rbac = rbac_name(&scratch, "meshsync");
    assert!(
        !rbac_gone(&cluster.client, rbac.clone()).await,
        "cluster-scoped RBAC outlives the namespace until the operator sweeps it"
    );

    cluster.start_operator(settings());
    eventually(
        Duration::from_secs(10),
        "the start sweeps the RBAC of the MeshSync that went with its namespace",
        || rbac_gone(&cluster.client, rbac.clone()),
    )
    .await;
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_operator_style_configmap_watch_list_is_accepted() {
    let (cluster, ns) = cluster_with_operator().await;
    // The Go types make `watch-list` a whole ConfigMap; Meshery's chart and old CRs carry one.
    let yaml = r#"
apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {name: meshery-meshsync, namespace: meshery}
spec:
  size: 1
  broker: {custom: {url: 'nats://nats.example:4222'}}
  watch-list:
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: watch-list, namespace: meshery}
    data:
      blacklist: ""
      whitelist: '[{"Resource":"namespaces.v1.","Events":["ADDED","DELETED"]},{"Resource":"ingresses.v1.networking.k8s.io","Events":["MODIFIED"]}]'
"#;
    let yaml = yaml.replacen("namespace: meshery}", &format!("namespace: {ns}}}"), 1);
    cluster.apply_yaml::<MeshSync>(&yaml).await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    let role = cluster_roles(&cluster)
        .get(&rbac_name(&ns, "meshery-meshsync"))
        .await
        .unwrap();
    assert_eq!(
        grants(&role),
        expected_grants(
            "meshery-meshsync",
            &[("", "namespaces"), ("networking.k8s.io", "ingresses")]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_with_users_json_auth_gives_meshsync_a_copy_of_the_first_user() {
    let (cluster, ns) = cluster_with_operator().await;
    let users: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "nats-users", "namespace": &ns},
        "stringData": {"users.json": r#"{"users":[{"user":"meshsync","password":"p@ss word"},{"user":"other","password":"x"}]}"#},
    }))
    .unwrap();
    cluster
        .api::<Secret>(&ns)
        .create(&Default::default(), &users)
        .await
        .unwrap();
    cluster
        .apply_yaml::<Broker>(&broker_yaml(&ns).replace(
            "spec: {size: 1}",
            "spec: {size: 1, auth: {secretRef: {name: nats-users}}}",
        ))
        .await;
    cluster.apply_yaml::<MeshSync>(&native_meshsync(&ns)).await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    assert!(
        cluster
            .api::<Secret>(&ns)
            .get_opt("meshery-broker-auth")
            .await
            .unwrap()
            .is_none(),
        "no generated token when the user brings the Secret"
    );
    // users.json cannot be referenced as one key: the first user's credentials are copied, URL-encoded.
    let copy = cluster
        .api::<Secret>(&ns)
        .get("meshery-meshsync-broker-auth")
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(copy.data.unwrap()["token"].0.clone()).unwrap(),
        "meshsync:p%40ss%20word"
    );
    let deployment = cluster
        .api::<Deployment>(&ns)
        .get("meshery-meshsync")
        .await
        .unwrap();
    let env = container_env(&deployment);
    let reference = env_var(&env, NATS_TOKEN)
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("NATS_TOKEN comes from a Secret");
    assert_eq!(reference.name, "meshery-meshsync-broker-auth");

    // MeshSync v1.0.0 would take the user name for the broker's host and never connect: the
    // status says so and what to change, and the Deployment is left as it was.
    cluster
        .apply_yaml::<MeshSync>(
            &native_meshsync(&ns).replace("size: 1", "size: 1\n  version: v1.0.0"),
        )
        .await;
    let refused = cluster
        .wait_for(&ns, "meshery-meshsync", WAIT, |m: &MeshSync| {
            m.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.message.contains("user:password"))
            })
        })
        .await;
    let ready = refused
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        ready
            .message
            .contains("MeshSync v1.0.0 reads the broker's host from BROKER_URL")
            && ready.message.contains("v1.0.1 or later"),
        "{}",
        ready.message
    );
    let unchanged = cluster
        .api::<Deployment>(&ns)
        .get("meshery-meshsync")
        .await
        .unwrap();
    assert_eq!(unchanged.spec, deployment.spec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshsync_follows_its_broker_losing_and_regaining_readiness() {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    // A long resync: the MeshSync must follow the Broker's status changes, not a timer.
    cluster.start_operator(harness::Settings {
        resync_interval: Duration::from_secs(120),
        ..settings()
    });
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster.apply_yaml::<MeshSync>(&native_meshsync(&ns)).await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    let deployment = cluster
        .api::<Deployment>(&ns)
        .get("meshery-meshsync")
        .await
        .unwrap();

    if !cluster
        .set_workload_ready(
            "statefulsets",
            &ns,
            "meshery-broker",
            false,
            "the whole test",
        )
        .await
    {
        return;
    }
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Degraded, WAIT)
        .await;
    let waiting = cluster
        .wait_for_meshsync_phase(
            &ns,
            "meshery-meshsync",
            Phase::Pending,
            Duration::from_secs(5),
        )
        .await;
    let ready = condition(&status(&waiting).conditions, "Ready");
    assert_eq!(ready.reason, "WaitingForBroker");
    assert!(
        ready.message.contains("Degraded"),
        "the message says why: {}",
        ready.message
    );
    // Waiting does not tear anything down: MeshSync's Deployment is as it was.
    let unchanged = cluster
        .api::<Deployment>(&ns)
        .get("meshery-meshsync")
        .await
        .unwrap();
    assert_eq!(
        unchanged.metadata.generation,
        deployment.metadata.generation
    );

    cluster
        .set_workload_ready("statefulsets", &ns, "meshery-broker", true, "recovery")
        .await;
    cluster
        .wait_for_meshsync_phase(
            &ns,
            "meshery-meshsync",
            Phase::Ready,
            Duration::from_secs(10),
        )
        .await;
    cluster.stop_operator().await;
}

/// MeshSync reads its watch-list only from `meshery/meshery-meshsync`: a MeshSync of another name
/// (or namespace) is Ready all the same, and says on its `WatchListApplied` condition and in a
/// Warning Event that the process it deployed will not read this CR's watch-list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meshsync_whose_watch_list_meshsync_will_not_read_says_so() {
    let (cluster, ns) = cluster_with_operator().await;
    let url = "nats://nats.example:4222";
    let mut names = vec!["team-meshsync"];
    // Only kube-sim has the namespace `meshery` itself (real-cluster namespaces are per test).
    if !cluster.is_real() {
        names.push("meshery-meshsync");
    }
    for name in &names {
        cluster
            .apply_yaml::<MeshSync>(&custom_meshsync(&ns, name, url, None))
            .await;
    }
    let elsewhere = cluster
        .wait_for_meshsync_phase(&ns, "team-meshsync", Phase::Ready, WAIT)
        .await;
    let applied = condition(&status(&elsewhere).conditions, "WatchListApplied");
    assert_eq!(
        (applied.status.as_str(), applied.reason.as_str()),
        ("False", "ReadFromAnotherCR")
    );
    assert!(
        applied
            .message
            .contains("only from the MeshSync meshery/meshery-meshsync"),
        "{}",
        applied.message
    );
    wait_for_warning_event(&cluster, &ns, "team-meshsync", "WatchListNotApplied").await;
    if names.len() > 1 {
        let read = cluster
            .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
            .await;
        let applied = condition(&status(&read).conditions, "WatchListApplied");
        assert_eq!(
            (applied.status.as_str(), applied.reason.as_str()),
            ("True", "ReadFromThisCR")
        );
    }
}

/// `spec.podAccess` decides whether Meshery UI's log streaming and terminal work through MeshSync:
/// its ClusterRole carries `get pods/log` and `create pods/exec` as the spec says, and on a real
/// cluster the real authorizer answers MeshSync's ServiceAccount accordingly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_access_decides_what_meshery_ui_may_do_through_meshsync() {
    let (cluster, ns) = cluster_with_operator().await;
    let name = "ui-meshsync";
    let url = "nats://nats.example:4222";
    let with_access = |access: &str| {
        format!(
            "{}  podAccess: {access}\n",
            custom_meshsync(&ns, name, url, None)
        )
    };
    // `kubectl auth can-i VERB pods --subresource=SUB`: the `pods/exec` shorthand is not a subresource.
    let can_i = |verb: &str, subresource: &str| -> bool {
        let output = std::process::Command::new("kubectl")
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .args([
                "auth",
                "can-i",
                verb,
                "pods",
                &format!("--subresource={subresource}"),
                "-n",
                "default",
                &format!("--as=system:serviceaccount:{ns}:{name}"),
            ])
            .output()
            .expect("kubectl runs");
        String::from_utf8_lossy(&output.stdout).trim() == "yes"
    };
    let granted = |role: &ClusterRole, resource: &str, verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.resources.iter().flatten().any(|x| x == resource) && r.verbs.iter().any(|v| v == verb)
        })
    };

    cluster
        .apply_yaml::<MeshSync>(&with_access("{exec: false}"))
        .await;
    cluster
        .wait_for_meshsync_phase(&ns, name, Phase::Ready, WAIT)
        .await;
    let role = cluster_roles(&cluster)
        .get(&rbac_name(&ns, name))
        .await
        .unwrap();
    assert!(granted(&role, "pods/log", "get"));
    assert!(!granted(&role, "pods/exec", "create"));
    if cluster.is_real() {
        assert!(can_i("get", "log"), "MeshSync may read pod logs");
        assert!(
            !can_i("create", "exec"),
            "MeshSync may not exec with exec: false"
        );
    } else {
        skip_notice("the real authorizer's answer (kubectl auth can-i) needs a real cluster");
    }

    cluster
        .apply_yaml::<MeshSync>(&with_access("{logs: false}"))
        .await;
    eventually(
        WAIT,
        "the exec grant back and the log grant gone",
        || async {
            let role = cluster_roles(&cluster)
                .get(&rbac_name(&ns, name))
                .await
                .unwrap();
            granted(&role, "pods/exec", "create") && !granted(&role, "pods/log", "get")
        },
    )
    .await;
    if cluster.is_real() {
        // The authorizer sees a changed ClusterRole through its own informer, a moment later.
        eventually(
            WAIT,
            "the authorizer to follow the changed ClusterRole",
            || async { can_i("create", "exec") && !can_i("get", "log") },
        )
        .await;
    }
}
