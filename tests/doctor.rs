//! `meshery-operator doctor` against a live cluster — kube-sim, or with `MESHERY_E2E_KUBECONFIG`
//! that real cluster — in a healthy install and in broken states made for real: the verdicts, the
//! exit codes, JSON output, and no credential printed. Each run is scoped to the test's namespace.

mod harness;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use harness::{Cluster, test_settings};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use meshery_operator::api::{Broker, Phase};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn broker_yaml(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
}

/// Runs `meshery-operator doctor -n NS ARGS` with `kubeconfig`, off the async runtime (kube-sim
/// serves on it).
async fn doctor(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Output {
    let kubeconfig = kubeconfig.to_path_buf();
    let mut all = vec!["doctor".to_string(), "-n".into(), namespace.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
            .args(&all)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("doctor finishes")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An operator Deployment as the chart labels it (its pods are the node's or kube-sim's to run;
/// the operator under test runs in-process).
async fn operator_deployment(cluster: &Cluster, namespace: &str) {
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "meshery-operator", "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "meshery-operator", "name": "meshery-operator"}},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"name": "meshery-operator"}},
            "template": {"metadata": {"labels": {"name": "meshery-operator",
                    "app.kubernetes.io/name": "meshery-operator"}},
                "spec": {"containers": [{"name": "manager", "image": "meshery/meshery-operator-rs:test",
                    "args": ["run"]}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(cluster.client.clone(), namespace)
        .patch(
            "meshery-operator",
            &PatchParams::apply("doctor-test").force(),
            &Patch::Apply(&deployment),
        )
        .await
        .expect("the operator Deployment");
    harness::eventually(WAIT, "the operator Deployment is available", || async {
        Api::<Deployment>::namespaced(cluster.client.clone(), namespace)
            .get("meshery-operator")
            .await
            .ok()
            .and_then(|d| d.status)
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            >= 1
    })
    .await;
}

fn findings(output: &Output) -> Vec<Value> {
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("doctor -o json: {e}\n{}", text(output)));
    report["findings"].as_array().cloned().unwrap_or_default()
}

fn problems(found: &[Value]) -> Vec<String> {
    found
        .iter()
        .filter(|f| f["verdict"] == "problem")
        .map(|f| format!("{} {}: {}", f["check"], f["subject"], f["message"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_install_passes_and_broken_states_are_named_with_their_fix() {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();

    // No operator yet: the first thing the guide checks.
    let output = doctor(&kubeconfig, &ns, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("no operator Deployment found"),
        "{}",
        text(&output)
    );

    // Healthy: CRDs, an available operator Deployment, a Ready Broker with all its children.
    operator_deployment(&cluster, &ns).await;
    cluster.start_operator(harness::Settings {
        broker_probe: meshery_operator::controller::BrokerProbeMode::Off,
        ..test_settings()
    });
    cluster
        .apply_yaml::<Broker>(&broker_yaml(
            &ns,
            "meshery-broker",
            "{size: 1, service: {type: ClusterIP}}",
        ))
        .await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let output = doctor(&kubeconfig, &ns, &["-o", "json"]).await;
    let found = findings(&output);
    assert_eq!(problems(&found), Vec::<String>::new(), "{}", text(&output));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    for check in ["crds", "operator", "broker"] {
        assert!(
            found
                .iter()
                .any(|f| f["check"] == check && f["verdict"] == "ok"),
            "no {check} verdict in {found:#?}"
        );
    }
    let token = cluster.broker_token(&ns, "meshery-broker").await;
    assert!(!text(&output).contains(&token), "doctor printed the token");

    // Broken: an invalid Broker, a Go operator finalizer and a Go operator child.
    cluster
        .apply_yaml::<Broker>(&broker_yaml(
            &ns,
            "unclustered",
            "{size: 3, clustering: {enabled: false}}",
        ))
        .await;
    // A CR that was never deployed stays Pending, with the reason.
    cluster
        .wait_for_broker_phase(&ns, "unclustered", Phase::Pending, WAIT)
        .await;
    // The Go finalizer as a cluster has it when the Go operator is gone and ours not yet running
    // (a running operator adopts the CR and removes it: tests/migration.rs).
    cluster.stop_operator().await;
    let brokers: Api<Broker> = Api::namespaced(cluster.client.clone(), &ns);
    brokers
        .patch(
            "meshery-broker",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["broker.meshery.io/finalizer"]}})),
        )
        .await
        .unwrap();
    let leftover: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "meshery-nats-config", "namespace": &ns},
        "data": {"nats.conf": "port: 4222"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(cluster.client.clone(), &ns)
        .patch(
            "meshery-nats-config",
            &PatchParams::apply("go-operator").force(),
            &Patch::Apply(&leftover),
        )
        .await
        .unwrap();

    let output = doctor(&kubeconfig, &ns, &[]).await;
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    for expected in [
        format!("Broker {ns}/unclustered: Pending (InvalidSpec)"),
        "spec.clustering.enabled".to_string(),
        "fix the fields the message names".to_string(),
        format!(
            "Broker {ns}/meshery-broker: carries the Go operator's finalizer broker.meshery.io/finalizer"
        ),
        format!("ConfigMap {ns}/meshery-nats-config: left by the Go Meshery Operator"),
        format!("kubectl delete configmap meshery-nats-config -n {ns}"),
    ] {
        assert!(
            report.contains(&expected),
            "{expected:?} missing from:\n{report}"
        );
    }
    assert!(!report.contains(&token), "doctor printed the token");

    // Let the namespace go: the finalizer has no one to remove it.
    brokers
        .patch(
            "meshery-broker",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
}

/// Not reaching the cluster is "could not check": exit 2 and one line saying where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster: {server: 'https://127.0.0.1:9'}\n\
         contexts:\n- name: gone\n  context: {cluster: gone, user: u}\ncurrent-context: gone\n\
         users:\n- name: u\n  user: {token: abc}\n",
    )
    .unwrap();
    let output = doctor(&kubeconfig, "meshery", &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("127.0.0.1:9"), "{}", text(&output));
}
