//! The chart installed as a user would: rendered by real Helm, applied with real
//! `kubectl apply --server-side` (CRDs first, as Helm installs `crds/`), then the operator binary
//! started with exactly the rendered Deployment's command, args and env (the downward API resolved,
//! KUBECONFIG instead of the in-cluster config) brings the default Broker and MeshSync to Ready.
//!
//! Against kube-sim (started without CRDs), or with `MESHERY_E2E_KUBECONFIG` against that real
//! cluster: there the chart goes into the real release namespace `meshery` — the harness's
//! ServiceAccount and RBAC are removed first so the install starts from scratch, and put back when
//! the test ends — and the operator authenticates as the chart's ServiceAccount (a TokenRequest
//! token), as its pod would, so the real authorizer enforces the installed RBAC.

mod chart_support;
mod harness;
mod real_cluster_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chart_support::{get, render, render_yaml, repo};
use harness::Cluster;
use kube_sim::{LoadBalancerMode, Sim, SimOptions};
use real_cluster_support::{
    Operator, RestoreHarnessOnDrop, http_status, kubectl, kubectl_ok, kubectl_timeout,
    remove_operator_installation, service_account_kubeconfig,
};
use serde_json::{Value, json};

/// Where the chart is installed.
struct Target {
    /// The admin kubeconfig the user's kubectl uses.
    kubeconfig: PathBuf,
    /// On a real cluster: puts the harness's release namespace back; declared before `cluster` so
    /// that it runs while the harness's serial lock is still held.
    _restore: Option<RestoreHarnessOnDrop>,
    cluster: Option<Cluster>,
    _sim: Option<Sim>,
}

impl Target {
    /// The real cluster of `MESHERY_E2E_KUBECONFIG` without the operator installed, or a kube-sim
    /// without CRDs (the test installs them from `crds/`, as Helm does).
    async fn start() -> Target {
        if harness::on_real_cluster() {
            let cluster = Cluster::start().await;
            remove_operator_installation(&cluster.client).await;
            return Target {
                kubeconfig: cluster.kubeconfig_path().to_path_buf(),
                _restore: Some(RestoreHarnessOnDrop::new(cluster.kubeconfig_path())),
                cluster: Some(cluster),
                _sim: None,
            };
        }
        let sim = Sim::start(SimOptions {
            load_balancer: LoadBalancerMode::Loopback,
            ready_after: Duration::from_millis(300),
            crds_dir: None,
            ..SimOptions::default()
        })
        .await
        .expect("kube-sim starts");
        Target {
            kubeconfig: sim.kubeconfig_path().to_path_buf(),
            _restore: None,
            cluster: None,
            _sim: Some(sim),
        }
    }

    /// What the operator's pod would authenticate with: on a real cluster a kubeconfig for the
    /// chart's ServiceAccount (written into `dir`); kube-sim authorizes everything.
    fn operator_kubeconfig(&self, dir: &Path) -> PathBuf {
        match &self.cluster {
            Some(_) => service_account_kubeconfig(&self.kubeconfig, dir),
            None => self.kubeconfig.clone(),
        }
    }
}

fn write(dir: &Path, name: &str, yaml: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_rendered_chart_applied_with_kubectl_runs_the_default_crs_to_ready() {
    let target = Target::start().await;
    let kubeconfig = target.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    let crds = repo().join("crds");
    tokio::task::block_in_place(|| {
        // helm install: CRDs from crds/ first, then the namespace (--create-namespace), then the templates.
        kubectl_ok(
            &kubeconfig,
            &["apply", "--server-side", "-f", crds.to_str().unwrap()],
        );
        kubectl_ok(
            &kubeconfig,
            &[
                "wait",
                "--for=condition=Established",
                "crd/brokers.meshery.io",
                "crd/meshsyncs.meshery.io",
                "--timeout=30s",
            ],
        );
        let namespace = write(
            dir.path(),
            "namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: meshery}\n",
        );
        kubectl_ok(&kubeconfig, &["apply", "--server-side", "-f", &namespace]);

        // The default CRs and every other rendered object pass the API server's validation
        // (the CRDs' schemas) in a server-side dry run, for default and non-default values.
        for values in [
            None,
            Some(json!({"meshery-broker": {"service": {"type": "NodePort"}, "size": 3}})),
            Some(json!({
                "leaderElection": {"enabled": false},
                "image": {"repository": "registry.example.com/operator", "tag": "v1.2.3"},
                "meshery-broker": {"enabled": false},
                "meshery-meshsync": {"enabled": false},
            })),
        ] {
            let file = write(dir.path(), "dry-run.yaml", &render_yaml(values.as_ref()));
            let out = kubectl_ok(
                &kubeconfig,
                &["apply", "--server-side", "--dry-run=server", "-f", &file],
            );
            assert!(
                out.contains(
                    "deployment.apps/meshery-operator serverside-applied (server dry run)"
                ),
                "{out}"
            );
        }
        // The kubectl users' manifest too.
        let manifest = repo().join("deploy/meshery-operator.yaml");
        let out = kubectl_ok(
            &kubeconfig,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-f",
                manifest.to_str().unwrap(),
            ],
        );
        assert!(
            out.contains("namespace/meshery serverside-applied (server dry run)"),
            "{out}"
        );
        // …and the schema is really applied: a Broker of size 0 is rejected.
        let mut invalid = get(&render(None), "Broker", "meshery-broker").clone();
        invalid["spec"]["size"] = json!(0);
        let file = write(
            dir.path(),
            "invalid.yaml",
            &serde_json::to_string(&invalid).unwrap(),
        );
        let rejected = kubectl(
            &kubeconfig,
            &["apply", "--server-side", "--dry-run=server", "-f", &file],
        );
        assert!(!rejected.status.success(), "size 0 accepted");

        // The real apply of the default render.
        let file = write(dir.path(), "chart.yaml", &render_yaml(None));
        let out = kubectl_ok(
            &kubeconfig,
            &[
                "apply",
                "--server-side",
                "--field-manager=helm",
                "-f",
                &file,
            ],
        );
        for line in [
            "serviceaccount/meshery-operator serverside-applied",
            "clusterrole.rbac.authorization.k8s.io/meshery-operator serverside-applied",
            "role.rbac.authorization.k8s.io/meshery-operator-leader-election serverside-applied",
            "deployment.apps/meshery-operator serverside-applied",
            "broker.meshery.io/meshery-broker serverside-applied",
            "meshsync.meshery.io/meshery-meshsync serverside-applied",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        // The seeds' troubleshooting selector finds the operator.
        let names = kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "deployments",
                "-n",
                "meshery",
                "-l",
                "name=meshery-operator",
                "-o",
                "name",
            ],
        );
        assert_eq!(names.trim(), "deployment.apps/meshery-operator");
    });

    // The operator as the Deployment runs it (NATS is not reachable here: probe off).
    let (installed, operator_kubeconfig): (Value, PathBuf) = tokio::task::block_in_place(|| {
        let installed = kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "deployment",
                "meshery-operator",
                "-n",
                "meshery",
                "-o",
                "json",
            ],
        );
        (
            serde_json::from_str(&installed).unwrap(),
            target.operator_kubeconfig(dir.path()),
        )
    });
    let pod_name = "meshery-operator-5c7d8f9b6-x2x7q";
    let log = dir.path().join("operator.log");
    let mut operator = Operator::start_as(
        &installed,
        &operator_kubeconfig,
        &log,
        pod_name,
        &["--broker-probe=off"],
    );

    tokio::task::block_in_place(|| {
        operator.wait_ready();
        assert_eq!(http_status(operator.health_port, "/healthz"), Some(200));
        assert_eq!(http_status(operator.metrics_port, "/metrics"), Some(200));
        kubectl_ok(
            &kubeconfig,
            &[
                "wait",
                "--for=condition=Ready",
                "broker/meshery-broker",
                "meshsync/meshery-meshsync",
                "-n",
                "meshery",
                &kubectl_timeout(Duration::from_secs(60)),
            ],
        );
        let phases = kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "brokers,meshsyncs",
                "-n",
                "meshery",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
        );
        assert_eq!(
            phases.split_whitespace().collect::<Vec<_>>(),
            ["Ready", "Ready"]
        );
        // Leader election ran in the release namespace with the pod's name as identity.
        let holder = kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "lease",
                "meshery-operator",
                "-n",
                "meshery",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        );
        assert_eq!(holder, pod_name);
        // Structured logs, as --log-format=json asks.
        let log = operator.log();
        assert!(
            log.lines()
                .any(|l| l.starts_with('{') && l.contains("\"level\"")),
            "{log}"
        );
        operator.terminate();
    });
    // On a real cluster this puts the harness's release namespace back.
    tokio::task::block_in_place(|| drop(target));
}
