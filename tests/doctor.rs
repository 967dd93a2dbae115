//! `meshery-operator doctor` against a live cluster — kube-sim, or with `MESHERY_E2E_KUBECONFIG`
//! that real cluster — in a healthy install and in broken states made for real: the verdicts, the
//! exit codes, JSON output, and no credential printed. Each run is scoped to the test's namespace.

mod harness;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use harness::{
    Cluster, NATS_ADDRESSES, connect_as_meshsync, skip_whole_test_on_real_cluster, test_settings,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use meshery_operator::api::{Broker, MeshSync, Phase};
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

/// The ServiceAccount `name` in `namespace`, bound to the chart's ClusterRole `meshery-operator`
/// when `bound` (the binding, cluster-scoped, is named after the namespace).
async fn service_account(cluster: &Cluster, namespace: &str, name: &str, bound: bool) {
    let account: ServiceAccount = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}),
    )
    .unwrap();
    Api::<ServiceAccount>::namespaced(cluster.client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply("doctor-test").force(),
            &Patch::Apply(&account),
        )
        .await
        .expect("the ServiceAccount");
    if bound {
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("doctor-test-{namespace}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "meshery-operator"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(cluster.client.clone())
            .patch(
                &format!("doctor-test-{namespace}"),
                &PatchParams::apply("doctor-test").force(),
                &Patch::Apply(&binding),
            )
            .await
            .expect("the ClusterRoleBinding");
    }
}

/// An operator Deployment as the chart labels it, running as ServiceAccount `meshery-operator`
/// bound to the chart's ClusterRole (its pods are the node's or kube-sim's to run; the operator
/// under test runs in-process).
async fn operator_deployment(cluster: &Cluster, namespace: &str, args: &[&str]) {
    service_account(cluster, namespace, "meshery-operator", true).await;
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "meshery-operator", "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "meshery-operator", "name": "meshery-operator"}},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"name": "meshery-operator"}},
            "template": {"metadata": {"labels": {"name": "meshery-operator",
                    "app.kubernetes.io/name": "meshery-operator"}},
                "spec": {"serviceAccountName": "meshery-operator",
                    "containers": [{"name": "manager", "image": "meshery/meshery-operator-rs:test",
                    "args": args}]}}}
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
    operator_deployment(&cluster, &ns, &["run"]).await;
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
    for check in ["crds", "operator", "permissions", "broker"] {
        assert!(
            found
                .iter()
                .any(|f| f["check"] == check && f["verdict"] == "ok"),
            "no {check} verdict in {found:#?}"
        );
    }
    // A ClusterIP Broker is not dialled from outside the cluster, and that is not a problem.
    let nats_check = finding(&found, "nats");
    assert_eq!(nats_check["verdict"], "ok", "{nats_check:#}");
    assert!(
        nats_check["message"]
            .as_str()
            .unwrap()
            .contains("not dialled from here: the Broker has no external endpoint"),
        "{nats_check:#}"
    );
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

    let report = doctor_text(&kubeconfig, &ns, 1).await;
    says_all(
        &report,
        &[
            format!("Broker {ns}/unclustered: Pending (InvalidSpec)"),
            "spec.clustering.enabled".to_string(),
            "fix the fields the message names".to_string(),
            format!(
                "Broker {ns}/meshery-broker: carries the Go operator's finalizer broker.meshery.io/finalizer"
            ),
            format!("ConfigMap {ns}/meshery-nats-config: left by the Go Meshery Operator"),
            format!("kubectl delete configmap meshery-nats-config -n {ns}"),
        ],
    );
    assert!(!report.contains(&token), "doctor printed the token");

    // An operator ServiceAccount without the chart's RBAC: the real authorizer denies, and doctor
    // names each verb (kube-sim has no authorizer: it allows every review).
    if cluster.is_real() {
        service_account(&cluster, &ns, "unbound", false).await;
        Api::<Deployment>::namespaced(cluster.client.clone(), &ns)
            .patch(
                "meshery-operator",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"template": {"spec": {"serviceAccountName": "unbound"}}}}),
                ),
            )
            .await
            .unwrap();
        let report = doctor_text(&kubeconfig, &ns, 1).await;
        says_all(
            &report,
            &[
                format!("ServiceAccount {ns}/unbound: denied"),
                "patch meshery.io/brokers/status".to_string(),
                "create apps/deployments".to_string(),
                "get apiextensions.k8s.io/customresourcedefinitions/meshsyncs.meshery.io"
                    .to_string(),
            ],
        );
    } else {
        harness::skip_notice("denied SubjectAccessReviews need the real authorizer");
    }
    let _ = Api::<ClusterRoleBinding>::all(cluster.client.clone())
        .delete(&format!("doctor-test-{ns}"), &Default::default())
        .await;

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

/// Every permission doctor asks about is one the chart grants (rendered by real Helm): a
/// permissions problem is then always "the chart's RBAC is missing or changed", never doctor
/// expecting more than the operator is given.
#[test]
fn doctors_permission_table_is_what_the_chart_grants() {
    use meshery_operator::doctor::OPERATOR_PERMISSIONS;
    let objects = harness::chart_rbac_objects(&json!({}));
    let rules: Vec<(&str, &Value)> = objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("ClusterRole" | "Role")))
        .flat_map(|o| {
            let kind = o["kind"].as_str().unwrap();
            o["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |r| (kind, r))
        })
        .collect();
    let has = |list: &Value, item: &str| {
        list.as_array()
            .is_some_and(|items| items.iter().any(|i| i == item || i == "*"))
    };
    for permission in OPERATOR_PERMISSIONS {
        for verb in permission.verbs {
            let granted = rules.iter().any(|(kind, rule)| {
                (*kind == "Role") == permission.in_own_namespace
                    && has(&rule["apiGroups"], permission.group)
                    && has(&rule["resources"], permission.resource)
                    && has(&rule["verbs"], verb)
                    && (rule["resourceNames"].is_null()
                        || permission
                            .name
                            .is_some_and(|n| has(&rule["resourceNames"], n)))
            });
            assert!(
                granted,
                "the chart does not grant {verb} {}/{} {:?}",
                permission.group, permission.resource, permission.name
            );
        }
    }
}

/// `doctor -n NS` as text, asserting its exit code.
async fn doctor_text(kubeconfig: &Path, namespace: &str, code: i32) -> String {
    let output = doctor(kubeconfig, namespace, &[]).await;
    let report = text(&output);
    assert_eq!(output.status.code(), Some(code), "{report}");
    report
}

/// Asserts the report says every one of `expected`.
fn says_all<S: AsRef<str>>(report: &str, expected: &[S]) {
    for expected in expected {
        let expected = expected.as_ref();
        assert!(
            report.contains(expected),
            "{expected:?} missing from:\n{report}"
        );
    }
}

fn finding<'a>(found: &'a [Value], check: &str) -> &'a Value {
    found
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {found:#?}"))
}

/// "Broker not accessible" and "MeshSync not discovering": doctor dials the Broker with its token
/// as Meshery Server would, and reads MeshSync's connection from the broker's `/connz` — a real
/// nats-server at the Broker's LoadBalancer address, MeshSync a client that connects as it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_dials_the_broker_and_reads_meshsyncs_connection() {
    if skip_whole_test_on_real_cluster(
        "the broker is a local nats-server at the sim's LoadBalancer address; the real control \
         plane has no LoadBalancer, so doctor does not dial from outside (the healthy-install test \
         checks that verdict)",
    ) {
        return;
    }
    let _addresses = NATS_ADDRESSES.lock().await;
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    operator_deployment(&cluster, &ns, &["run"]).await;
    cluster.start_operator(test_settings());
    cluster
        .apply_yaml::<Broker>(&broker_yaml(&ns, "meshery-broker", "{size: 1}"))
        .await;
    let (nats, address, token) = cluster.serve_broker(&ns, "meshery-broker", true).await;
    cluster
        .apply_yaml::<MeshSync>(&format!(
            "apiVersion: meshery.io/v1alpha1\nkind: MeshSync\nmetadata: {{name: meshery-meshsync, namespace: {ns}}}\nspec: {{broker: {{native: {{name: meshery-broker}}}}}}\n"
        ))
        .await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Degraded, WAIT)
        .await;

    // Broker reachable, MeshSync not connected: one problem, with the fix.
    let output = doctor(&kubeconfig, &ns, &["-o", "json"]).await;
    let found = findings(&output);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let nats_check = finding(&found, "nats");
    assert_eq!(nats_check["verdict"], "ok", "{nats_check:#}");
    assert!(
        nats_check["message"]
            .as_str()
            .unwrap()
            .contains(&format!("at {address} succeeded")),
        "{nats_check:#}"
    );
    let connection = finding(&found, "connection");
    assert_eq!(connection["verdict"], "problem", "{connection:#}");
    assert!(
        connection["message"]
            .as_str()
            .unwrap()
            .contains("shows no MeshSync connection"),
        "{connection:#}"
    );
    assert!(
        connection["fix"]
            .as_str()
            .unwrap()
            .contains("kubectl rollout restart deployment/meshery-meshsync"),
        "{connection:#}"
    );

    // MeshSync connects: all good.
    let (_client, _subscriber) = connect_as_meshsync(address, &token).await;
    cluster
        .wait_for_meshsync_phase(&ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    let output = doctor(&kubeconfig, &ns, &["-o", "json"]).await;
    let found = findings(&output);
    assert_eq!(problems(&found), Vec::<String>::new(), "{}", text(&output));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(finding(&found, "connection")["verdict"], "ok");

    // The broker stops answering: the handshake is the problem named, and the token never shows.
    nats.stop();
    let report = doctor_text(&kubeconfig, &ns, 1).await;
    assert!(
        report.contains(&format!(
            "Broker {ns}/meshery-broker: no NATS handshake from here: cannot reach the broker at {address}"
        )),
        "{report}"
    );
    assert!(!report.contains(&token), "doctor printed the token");
}

/// More broken states, made for real: an operator Deployment with `--leader-elect` whose Lease no
/// replica holds, a Broker whose pods no node can take (the real scheduler's FailedScheduling), a
/// child deleted while no operator runs, and a CRD that is not installed (kube-sim only: the real cluster's CRDs are shared by every test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_an_unheld_lease_an_unschedulable_pod_and_a_missing_crd() {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    operator_deployment(&cluster, &ns, &["run", "--leader-elect"]).await;
    cluster.start_operator(harness::Settings {
        broker_probe: meshery_operator::controller::BrokerProbeMode::Off,
        ..test_settings()
    });
    cluster
        .apply_yaml::<Broker>(&broker_yaml(
            &ns,
            "meshery-broker",
            "{size: 1, service: {type: ClusterIP}, pod: {nodeSelector: {meshery.io/no-such-node: 'true'}}}",
        ))
        .await;
    if cluster.is_real() {
        harness::eventually(WAIT, "the broker's pod is unschedulable", || async {
            let output = doctor(&kubeconfig, &ns, &[]).await;
            text(&output).contains("cannot be scheduled")
        })
        .await;
    }
    let report = doctor_text(&kubeconfig, &ns, 1).await;
    assert!(
        report.contains(&format!(
            "Deployment {ns}/meshery-operator: available, but no Lease meshery-operator: no replica has become the leader"
        )),
        "{report}"
    );
    if cluster.is_real() {
        says_all(
            &report,
            &[
                format!("Pod {ns}/meshery-broker-0: cannot be scheduled: 0/1 nodes are available"),
                "spec.pod.tolerations for tainted nodes".to_string(),
            ],
        );
    } else {
        harness::skip_notice("kube-sim runs no scheduler: unschedulable pods need the real one");
    }

    // A child deleted while no operator runs to put it back.
    let services = Api::<Service>::namespaced(cluster.client.clone(), &ns);
    harness::eventually(
        WAIT,
        "the operator applied the Broker's children",
        || async {
            services
                .get_opt("meshery-broker-headless")
                .await
                .is_ok_and(|s| s.is_some())
        },
    )
    .await;
    cluster.stop_operator().await;
    services
        .delete("meshery-broker-headless", &Default::default())
        .await
        .unwrap();
    let report = doctor_text(&kubeconfig, &ns, 1).await;
    says_all(
        &report,
        &[
            format!(
                "Broker {ns}/meshery-broker: missing children: Service {ns}/meshery-broker-headless"
            ),
            "the operator recreates them within seconds when it runs".to_string(),
        ],
    );

    if cluster.skip_on_real_cluster("deleting a CRD would break every other test on the cluster") {
        return;
    }
    Api::<CustomResourceDefinition>::all(cluster.client.clone())
        .delete("meshsyncs.meshery.io", &Default::default())
        .await
        .unwrap();
    harness::eventually(WAIT, "the CRD is gone", || async {
        Api::<CustomResourceDefinition>::all(cluster.client.clone())
            .get_opt("meshsyncs.meshery.io")
            .await
            .is_ok_and(|crd| crd.is_none())
    })
    .await;
    let report = doctor_text(&kubeconfig, &ns, 1).await;
    says_all(
        &report,
        &[
            "CustomResourceDefinition meshsyncs.meshery.io: not installed",
            "kubectl apply --server-side -f crds/",
        ],
    );
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
