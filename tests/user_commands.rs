//! The README's commands, run for real: the Helm install / upgrade / uninstall and the kubectl
//! install / check / delete, with the real `helm` and `kubectl` from PATH against the real cluster
//! of `MESHERY_E2E_KUBECONFIG` (on kube-sim each test says it needs one and returns), checking after
//! each step the state the README promises.
//!
//! The Deployment's pod does not run the operator on a test cluster whose node agent only reports
//! pods Running and Ready, so the operator is the binary the test starts outside the cluster with
//! the installed Deployment's args and env, under the name of the pod it stands in for, and with a
//! TokenRequest token of the chart's ServiceAccount: the chart's RBAC is what authorizes it. It
//! probes NATS as the Deployment says (`--broker-probe=auto`); outside the cluster, without a
//! LoadBalancer address, a Broker is Ready with reason `LoadBalancerPending`. The README's
//! `kubectl logs … -c manager` has no container to read there and is not run.
//!
//! Each test starts from a cluster without the operator — the harness's release namespace and RBAC
//! and the CRDs removed — and ends, pass or fail, by putting the harness's CRDs and release
//! namespace back.

mod harness;
mod real_cluster_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use harness::{Cluster, OPERATOR_NAMESPACE, REAL_CLUSTER_VAR, on_real_cluster, scaled};
use real_cluster_support::{
    Operator, RestoreHarnessOnDrop, kubectl, kubectl_ok, operator_pod_name,
    remove_operator_installation, start_installed_operator, succeeded, wait_for_default_crs_ready,
};
use serde_json::Value;

const RELEASE: &str = "meshery-operator";
const CRDS: [&str; 2] = [
    "customresourcedefinition.apiextensions.k8s.io/brokers.meshery.io",
    "customresourcedefinition.apiextensions.k8s.io/meshsyncs.meshery.io",
];
/// What the README says both installs create in namespace `meshery`, besides the cluster-scoped
/// ClusterRole and ClusterRoleBinding `meshery-operator`.
const RELEASE_OBJECTS: [&str; 9] = [
    "deployment.apps/meshery-operator",
    "serviceaccount/meshery-operator",
    "role.rbac.authorization.k8s.io/meshery-operator-leader-election",
    "rolebinding.rbac.authorization.k8s.io/meshery-operator-leader-election",
    "role.rbac.authorization.k8s.io/meshery-operator-go-operator-lease",
    "rolebinding.rbac.authorization.k8s.io/meshery-operator-go-operator-lease",
    "service/meshery-operator-metrics",
    "broker.meshery.io/meshery-broker",
    "meshsync.meshery.io/meshery-meshsync",
];
const CLUSTER_RBAC: [&str; 2] = [
    "clusterrole.rbac.authorization.k8s.io/meshery-operator",
    "clusterrolebinding.rbac.authorization.k8s.io/meshery-operator",
];
/// The README's children of the default Broker (size 1) and MeshSync in namespace `meshery`.
const DEFAULT_CHILDREN: [&str; 10] = [
    "secret/meshery-broker-auth",
    "configmap/meshery-broker-config",
    "service/meshery-broker",
    "service/meshery-broker-headless",
    "statefulset.apps/meshery-broker",
    "configmap/meshery-meshsync-watch-list",
    "serviceaccount/meshery-meshsync",
    "deployment.apps/meshery-meshsync",
    "clusterrole.rbac.authorization.k8s.io/meshery-meshsync-meshery-meshery-meshsync",
    "clusterrolebinding.rbac.authorization.k8s.io/meshery-meshsync-meshery-meshery-meshsync",
];
/// The default MeshSync's ClusterRole and ClusterRoleBinding.
const MESHSYNC_CLUSTER_RBAC: [&str; 2] = [
    "clusterrole.rbac.authorization.k8s.io/meshery-meshsync-meshery-meshery-meshsync",
    "clusterrolebinding.rbac.authorization.k8s.io/meshery-meshsync-meshery-meshery-meshsync",
];

/// `true`, after saying why, when there is no real cluster to run the user's commands against.
fn needs_real_cluster() -> bool {
    if on_real_cluster() {
        return false;
    }
    eprintln!(
        "{}: needs a real cluster: set {REAL_CLUSTER_VAR} to its kubeconfig",
        std::thread::current().name().unwrap_or("this test")
    );
    true
}

/// `helm ARGS` from the repository root (the chart is `.`).
fn helm(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("helm")
        .env("KUBECONFIG", kubeconfig)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("helm is installed (on PATH)")
}

fn helm_ok(kubeconfig: &Path, args: &[&str]) -> String {
    succeeded("helm", args, helm(kubeconfig, args))
}

/// `kubectl` from the repository root, so that `-f crds/` names what the README's does.
fn kubectl_in_repo(kubeconfig: &Path, args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("kubectl is installed (on PATH)");
    succeeded("kubectl", args, output)
}

/// `helm status` of the release: its status and revision.
fn release_status(kubeconfig: &Path) -> (String, u64) {
    let status: Value = serde_json::from_str(&helm_ok(
        kubeconfig,
        &["status", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json"],
    ))
    .expect("helm status -o json");
    (
        status["info"]["status"].as_str().unwrap_or_default().into(),
        status["version"].as_u64().unwrap_or_default(),
    )
}

/// Which of `objects` (`kind/name`, in namespace `meshery` or cluster-scoped) exist.
fn existing(kubeconfig: &Path, objects: &[&str]) -> Vec<String> {
    let mut args = vec![
        "get",
        "-n",
        OPERATOR_NAMESPACE,
        "--ignore-not-found",
        "-o",
        "name",
    ];
    args.extend(objects);
    let listed = kubectl_ok(kubeconfig, &args);
    listed.lines().map(str::to_string).collect()
}

fn assert_all_exist(kubeconfig: &Path, objects: &[&str]) {
    assert_eq!(existing(kubeconfig, objects), objects, "present");
}

/// Waits until none of `objects` exists (garbage collection and the operator take a moment).
fn assert_all_gone(kubeconfig: &Path, objects: &[&str], why: &str) {
    let timeout = scaled(Duration::from_secs(20));
    let deadline = Instant::now() + timeout;
    loop {
        let left = existing(kubeconfig, objects);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: still there after {timeout:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A cluster as the README's user starts from: no operator, no CRDs (deleting them deletes every
/// Broker and MeshSync). Returns the harness's cluster (held: the real-cluster tests run one at a
/// time), and what puts the harness's CRDs and release namespace back when the test ends.
fn cluster_without_the_operator(
    runtime: &tokio::runtime::Runtime,
) -> (Cluster, RestoreHarnessOnDrop) {
    let cluster = runtime.block_on(Cluster::start());
    let restore = RestoreHarnessOnDrop::new(cluster.kubeconfig_path());
    runtime.block_on(remove_operator_installation(&cluster.client));
    kubectl_in_repo(
        cluster.kubeconfig_path(),
        &["delete", "-f", "crds/", "--ignore-not-found"],
    );
    (cluster, restore)
}

/// The operator binary as the installed Deployment `meshery-operator` runs it, authenticated as
/// the chart's ServiceAccount, under the name of the Deployment's pod; waits until it is ready.
fn start_operator(kubeconfig: &Path, dir: &Path) -> (Operator, String) {
    let pod_name = operator_pod_name(kubeconfig);
    let mut operator = start_installed_operator(kubeconfig, dir, &pod_name, &[]);
    operator.wait_ready();
    (operator, pod_name)
}

fn leader(kubeconfig: &Path) -> String {
    kubectl_ok(
        kubeconfig,
        &[
            "get",
            "lease",
            "meshery-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
}

/// `kubectl get` of one object, as `jsonpath`.
fn jsonpath(kubeconfig: &Path, object: &str, path: &str) -> String {
    kubectl_ok(
        kubeconfig,
        &[
            "get",
            object,
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            &format!("jsonpath={path}"),
        ],
    )
}

/// One table of `kubectl get`'s output: each row's cells by column header, cut at the header's
/// column starts (so an empty cell stays an empty string).
struct Table {
    header: Vec<String>,
    rows: Vec<BTreeMap<String, String>>,
}

/// The tables `kubectl get` prints, one per kind, separated by blank lines.
fn tables(output: &str) -> Vec<Table> {
    output
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let header_line = lines.next().expect("a header");
            let starts: Vec<usize> = header_line
                .char_indices()
                .filter(|&(i, c)| c != ' ' && (i == 0 || header_line.as_bytes()[i - 1] == b' '))
                .map(|(i, _)| i)
                .collect();
            let header: Vec<String> = header_line.split_whitespace().map(str::to_string).collect();
            let rows = lines
                .map(|line| {
                    header
                        .iter()
                        .enumerate()
                        .map(|(column, name)| {
                            let start = starts[column].min(line.len());
                            let end = starts
                                .get(column + 1)
                                .map_or(line.len(), |&e| e.min(line.len()));
                            (name.clone(), line[start..end].trim().to_string())
                        })
                        .collect()
                })
                .collect();
            Table { header, rows }
        })
        .collect()
}

#[test]
fn helm_install_upgrade_and_uninstall_leave_the_state_the_readme_describes() {
    if needs_real_cluster() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cluster, _restore) = cluster_without_the_operator(&runtime);
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let dir = tempfile::tempdir().unwrap();

    // helm install: the CRDs from crds/, then everything the README lists.
    let installed = helm_ok(
        &kubeconfig,
        &[
            "install",
            RELEASE,
            ".",
            "-n",
            OPERATOR_NAMESPACE,
            "--create-namespace",
        ],
    );
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert!(
        installed.contains("kubectl wait --for=condition=Ready broker/meshery-broker -n meshery"),
        "the NOTES say how to wait for the default CRs: {installed}"
    );
    assert_eq!(release_status(&kubeconfig), ("deployed".into(), 1));
    assert_all_exist(&kubeconfig, &CRDS);
    assert_all_exist(&kubeconfig, &RELEASE_OBJECTS);
    assert_all_exist(&kubeconfig, &CLUSTER_RBAC);

    // The operator brings the default CRs to Ready and creates their children.
    let (operator, pod_name) = start_operator(&kubeconfig, dir.path());
    wait_for_default_crs_ready(&kubeconfig, Duration::from_secs(60));
    assert_all_exist(&kubeconfig, &DEFAULT_CHILDREN);
    assert_eq!(
        leader(&kubeconfig),
        pod_name,
        "the Deployment's pod holds the Lease"
    );

    // helm upgrade with other values, CRDs applied first as the README says: the CRs and their
    // children follow.
    kubectl_in_repo(&kubeconfig, &["apply", "--server-side", "-f", "crds/"]);
    helm_ok(
        &kubeconfig,
        &[
            "upgrade",
            RELEASE,
            ".",
            "-n",
            OPERATOR_NAMESPACE,
            "--set",
            "meshery-broker.size=3",
            "--set",
            "meshery-meshsync.size=2",
        ],
    );
    assert_eq!(release_status(&kubeconfig), ("deployed".into(), 2));
    wait_for_default_crs_ready(&kubeconfig, Duration::from_secs(60));
    let listed = kubectl_ok(
        &kubeconfig,
        &["get", "brokers,meshsyncs", "-n", OPERATOR_NAMESPACE],
    );
    let sizes: Vec<(String, String, String)> = tables(&listed)
        .iter()
        .flat_map(|table| &table.rows)
        .map(|row| {
            (
                row["NAME"].clone(),
                row["SIZE"].clone(),
                row["PHASE"].clone(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        [
            (
                "broker.meshery.io/meshery-broker".into(),
                "3".into(),
                "Ready".into()
            ),
            (
                "meshsync.meshery.io/meshery-meshsync".into(),
                "2".into(),
                "Ready".into()
            ),
        ],
        "{listed}"
    );
    assert_eq!(
        jsonpath(
            &kubeconfig,
            "statefulset/meshery-broker",
            "{.spec.replicas}"
        ),
        "3"
    );
    assert_all_exist(&kubeconfig, &["poddisruptionbudget.policy/meshery-broker"]);
    assert_eq!(
        jsonpath(
            &kubeconfig,
            "deployment/meshery-meshsync",
            "{.spec.replicas}"
        ),
        "2"
    );

    // Uninstall as the README says: the CRs first, while the operator runs, so MeshSync's
    // cluster-scoped RBAC goes at once; then the release; Helm keeps the CRDs.
    kubectl_ok(&kubeconfig, &["delete", "brokers,meshsyncs", "--all", "-A"]);
    assert_all_gone(
        &kubeconfig,
        &MESHSYNC_CLUSTER_RBAC,
        "the operator deletes a deleted MeshSync's cluster-scoped RBAC",
    );
    assert_all_gone(
        &kubeconfig,
        &DEFAULT_CHILDREN,
        "the CRs' children are garbage-collected",
    );
    helm_ok(
        &kubeconfig,
        &["uninstall", RELEASE, "-n", OPERATOR_NAMESPACE],
    );
    // The Deployment is gone: its pod is stopped.
    operator.terminate();
    let status = helm(&kubeconfig, &["status", RELEASE, "-n", OPERATOR_NAMESPACE]);
    assert!(
        !status.status.success() && String::from_utf8_lossy(&status.stderr).contains("not found"),
        "helm status after uninstall: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_all_gone(&kubeconfig, &RELEASE_OBJECTS, "helm uninstall");
    assert_all_gone(&kubeconfig, &CLUSTER_RBAC, "helm uninstall");
    assert_all_exist(&kubeconfig, &CRDS);
    kubectl_in_repo(&kubeconfig, &["delete", "-f", "crds/"]);
    assert_all_gone(&kubeconfig, &CRDS, "kubectl delete -f crds/");
}

#[test]
fn kubectl_apply_wait_get_and_delete_leave_the_state_the_readme_describes() {
    if needs_real_cluster() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cluster, _restore) = cluster_without_the_operator(&runtime);
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let dir = tempfile::tempdir().unwrap();

    // Two commands, as the README has them: in one `kubectl apply` the CRs of the manifest would
    // find no mapping for kinds whose CRDs the same command creates.
    kubectl_in_repo(&kubeconfig, &["apply", "--server-side", "-f", "crds/"]);
    let applied = kubectl_in_repo(
        &kubeconfig,
        &[
            "apply",
            "--server-side",
            "-f",
            "deploy/meshery-operator.yaml",
        ],
    );
    for line in [
        "namespace/meshery serverside-applied",
        "deployment.apps/meshery-operator serverside-applied",
        "broker.meshery.io/meshery-broker serverside-applied",
        "meshsync.meshery.io/meshery-meshsync serverside-applied",
    ] {
        assert!(applied.contains(line), "{line} in {applied}");
    }
    assert_all_exist(&kubeconfig, &RELEASE_OBJECTS);
    assert_all_exist(&kubeconfig, &CLUSTER_RBAC);

    let (operator, _) = start_operator(&kubeconfig, dir.path());
    wait_for_default_crs_ready(&kubeconfig, Duration::from_secs(60));

    // The category lists both kinds with the columns the README documents.
    let listed = kubectl_ok(&kubeconfig, &["get", "meshery", "-A"]);
    let tables = tables(&listed);
    let [brokers, meshsyncs] = &tables[..] else {
        panic!("one table per kind: {listed}");
    };
    assert_eq!(
        brokers.header,
        [
            "NAMESPACE",
            "NAME",
            "SIZE",
            "PHASE",
            "INTERNAL",
            "EXTERNAL",
            "AGE"
        ],
        "{listed}"
    );
    assert_eq!(
        meshsyncs.header,
        ["NAMESPACE", "NAME", "SIZE", "PHASE", "PUBLISHING-TO", "AGE"],
        "{listed}"
    );
    let row = |table: &Table, name: &str| -> BTreeMap<String, String> {
        table
            .rows
            .iter()
            .find(|r| r["NAMESPACE"] == OPERATOR_NAMESPACE && r["NAME"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {listed}"))
            .clone()
    };
    let broker = row(brokers, "broker.meshery.io/meshery-broker");
    let internal = "meshery-broker.meshery.svc.cluster.local:4222";
    assert_eq!(
        (broker["SIZE"].as_str(), broker["PHASE"].as_str()),
        ("1", "Ready"),
        "{listed}"
    );
    assert_eq!(broker["INTERNAL"], internal, "{listed}");
    assert_eq!(
        broker["EXTERNAL"],
        jsonpath(
            &kubeconfig,
            "broker/meshery-broker",
            "{.status.endpoint.external}"
        ),
        "{listed}"
    );
    assert!(!broker["AGE"].is_empty(), "{listed}");
    let meshsync = row(meshsyncs, "meshsync.meshery.io/meshery-meshsync");
    assert_eq!(
        (meshsync["SIZE"].as_str(), meshsync["PHASE"].as_str()),
        ("1", "Ready"),
        "{listed}"
    );
    assert_eq!(
        meshsync["PUBLISHING-TO"],
        format!("nats://{internal}"),
        "the broker URL without credentials: {listed}"
    );
    assert!(!meshsync["AGE"].is_empty(), "{listed}");

    // kubectl delete of the manifest (the CRs go with the namespace), then of the CRDs: the
    // namespace and all cluster-scoped RBAC are gone, MeshSync's through its ownerReference to the
    // CRD even if the operator did not get to it.
    kubectl_in_repo(
        &kubeconfig,
        &["delete", "-f", "deploy/meshery-operator.yaml"],
    );
    operator.terminate();
    kubectl_in_repo(&kubeconfig, &["delete", "-f", "crds/"]);
    assert!(
        !kubectl(&kubeconfig, &["get", "namespace", OPERATOR_NAMESPACE])
            .status
            .success(),
        "namespace {OPERATOR_NAMESPACE} is gone"
    );
    assert_all_gone(&kubeconfig, &CLUSTER_RBAC, "kubectl delete -f deploy/");
    assert_all_gone(
        &kubeconfig,
        &MESHSYNC_CLUSTER_RBAC,
        "MeshSync's cluster-scoped RBAC",
    );
    assert_all_gone(&kubeconfig, &CRDS, "kubectl delete -f crds/");
}
