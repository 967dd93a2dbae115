//! The API server a run drives: an in-process kube-sim, or the real control plane (etcd,
//! kube-apiserver, controller manager, scheduler, node agent; test-cluster) with its audit log and
//! a watch on etcd. Either counts the operator's requests per window without asking the operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use kube_sim::{LoadBalancerMode, Sim, SimOptions};
use serde::{Deserialize, Serialize};
use test_cluster::ControlPlane;

use crate::etcd::{EtcdWatch, EtcdWrites};
use crate::traffic::{Traffic, writers_in_benchmark_namespaces};

/// The namespace the operator under test "runs in" (its identity, the Go operator's `--namespace`).
pub const OPERATOR_NAMESPACE: &str = "bench-operator";
const OPERATOR_ACCOUNT: &str = "operator";
/// The field manager of every write the bench itself sends.
pub const BENCH_MANAGER: &str = "operator-bench";
/// Benchmark namespaces are `bench-<i>`.
pub const NAMESPACE_PREFIX: &str = "bench-";

/// Which substrate, as `--substrates` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubstrateKind {
    KubeSim,
    Real,
}

impl SubstrateKind {
    pub fn label(self) -> &'static str {
        match self {
            SubstrateKind::KubeSim => "kube-sim",
            SubstrateKind::Real => "real control plane",
        }
    }
}

/// Requests the bench itself sent to kube-sim, by its `"verb resource"` key (kube-sim does not
/// know who sent a request; the real API server's audit log does, so there this stays unused).
#[derive(Default)]
pub struct OwnRequests(Mutex<BTreeMap<String, u64>>);

impl OwnRequests {
    pub fn add(&self, key: &str) {
        *self.0.lock().unwrap().entry(key.to_string()).or_default() += 1;
    }

    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A window's start.
pub struct Window {
    started: Instant,
    from: jiff::Timestamp,
    /// etcd's write counter when the window opened (real control plane).
    etcd_counter: Option<u64>,
}

/// What one window measured.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Measured {
    #[serde(deserialize_with = "crate::report::nullable_f64")]
    pub seconds: f64,
    pub traffic: Traffic,
    /// Real control plane only.
    pub etcd: Option<EtcdWrites>,
    /// Real control plane only: every client's writes into the benchmark's namespaces, by
    /// `"user verb resource"` (what the etcd writes on the benchmark's objects came from).
    pub writers: BTreeMap<String, u64>,
}

pub enum Substrate {
    KubeSim(Sim),
    Real(Box<Real>),
}

pub struct Real {
    control_plane: ControlPlane,
    audit_log: PathBuf,
    etcd: EtcdWatch,
    operator_kubeconfig: PathBuf,
    operator_user: String,
    client: kube::Client,
    _state: tempfile::TempDir,
}

impl Substrate {
    /// A fresh kube-sim with our CRDs (workloads Ready after `ready_after`, LoadBalancers pending).
    pub async fn kube_sim(crds: &Path, ready_after: Duration) -> Result<Substrate, String> {
        let sim = Sim::start(SimOptions {
            ready_after,
            load_balancer: LoadBalancerMode::Pending,
            crds_dir: Some(crds.to_path_buf()),
            ..SimOptions::default()
        })
        .await
        .map_err(|e| format!("starting kube-sim: {e}"))?;
        Ok(Substrate::KubeSim(sim))
    }

    /// A fresh real control plane with `crds` installed and an identity of the operator's own
    /// (ServiceAccount `bench-operator/operator`, bound to cluster-admin, as for either operator;
    /// its username tells its requests apart in the audit log).
    pub async fn real(binaries: test_cluster::Binaries, crds: &Path) -> Result<Substrate, String> {
        let state = tempfile::Builder::new()
            .prefix("operator-bench-")
            .tempdir()
            .map_err(|e| format!("creating a state directory: {e}"))?;
        let audit_log = state.path().join("audit.log");
        let options = test_cluster::Options {
            binaries: Some(binaries.clone()),
            audit_log: Some(audit_log.clone()),
            // Pods are reported running, not run: at N = 100 the benchmark is about the API.
            run_pods: false,
        };
        let control_plane = tokio::task::spawn_blocking(move || ControlPlane::start(options))
            .await
            .map_err(|e| format!("starting the control plane: {e}"))?
            .map_err(|e| format!("starting the control plane: {e}"))?;
        let admin_kubeconfig = state.path().join("admin.kubeconfig");
        control_plane
            .write_kubeconfig(&admin_kubeconfig)
            .map_err(|e| e.to_string())?;
        let config = control_plane
            .client_config()
            .await
            .map_err(|e| e.to_string())?;
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        install_crds(&binaries.path("kubectl"), &admin_kubeconfig, crds)?;
        let token = operator_identity(&client).await?;
        let operator_kubeconfig = state.path().join("operator.kubeconfig");
        write_token_kubeconfig(
            control_plane.kubeconfig_yaml(),
            &token,
            &operator_kubeconfig,
        )?;
        let etcd = EtcdWatch::start(control_plane.etcd_url())?;
        Ok(Substrate::Real(Box::new(Real {
            control_plane,
            audit_log,
            etcd,
            operator_kubeconfig,
            operator_user: format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"),
            client,
            _state: state,
        })))
    }

    /// An admin client for the bench's own requests.
    pub fn client(&self) -> kube::Client {
        match self {
            Substrate::KubeSim(sim) => sim.client(),
            Substrate::Real(real) => real.client.clone(),
        }
    }

    /// The kubeconfig the operator runs with.
    pub fn operator_kubeconfig(&self) -> &Path {
        match self {
            Substrate::KubeSim(sim) => sim.kubeconfig_path(),
            Substrate::Real(real) => &real.operator_kubeconfig,
        }
    }

    /// Starts counting (kube-sim: its counters and the bench's own are reset).
    pub fn open_window(&self, own: &OwnRequests) -> Window {
        if let Substrate::KubeSim(sim) = self {
            sim.reset_stats();
            own.take();
        }
        let etcd_counter = match self {
            Substrate::Real(real) => real.etcd.counter().ok(),
            Substrate::KubeSim(_) => None,
        };
        Window {
            started: Instant::now(),
            from: jiff::Timestamp::now(),
            etcd_counter,
        }
    }

    /// The operator's requests (and, on the real control plane, etcd's writes) since `window` opened.
    pub fn close_window(&self, window: Window, own: &OwnRequests) -> Result<Measured, String> {
        let etcd_counter = match self {
            Substrate::Real(real) => real.etcd.counter().ok(),
            Substrate::KubeSim(_) => None,
        };
        let (ended, to) = (Instant::now(), jiff::Timestamp::now());
        let seconds = ended.duration_since(window.started).as_secs_f64();
        match self {
            Substrate::KubeSim(sim) => Ok(Measured {
                seconds,
                traffic: Traffic::from_sim(&sim.stats(), &own.take(), BENCH_MANAGER),
                etcd: None,
                writers: BTreeMap::new(),
            }),
            Substrate::Real(real) => {
                // The audit backend writes each event as its request completes; give the last one a moment.
                std::thread::sleep(Duration::from_millis(300));
                let log = std::fs::read_to_string(&real.audit_log).map_err(|e| {
                    format!("reading the audit log {}: {e}", real.audit_log.display())
                })?;
                Ok(Measured {
                    seconds,
                    traffic: Traffic::from_audit_log(&log, &real.operator_user, window.from, to),
                    etcd: Some(EtcdWrites {
                        counted_by_etcd: window
                            .etcd_counter
                            .zip(etcd_counter)
                            .map(|(at_open, at_close)| at_close.saturating_sub(at_open)),
                        ..real.etcd.writes(window.started, ended, NAMESPACE_PREFIX)?
                    }),
                    writers: writers_in_benchmark_namespaces(
                        &log,
                        NAMESPACE_PREFIX,
                        window.from,
                        to,
                    ),
                })
            }
        }
    }

    pub fn stop(self) {
        match self {
            Substrate::KubeSim(sim) => sim.stop(),
            Substrate::Real(real) => drop(real.control_plane),
        }
    }
}

fn install_crds(kubectl: &Path, kubeconfig: &Path, crds: &Path) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let output = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .map_err(|e| format!("running {}: {e}", kubectl.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    let crds = crds
        .to_str()
        .ok_or("the CRD directory's path is not UTF-8")?;
    run(&["apply", "--server-side", "--force-conflicts", "-f", crds])?;
    run(&[
        "wait",
        "--for=condition=Established",
        "crd/brokers.meshery.io",
        "crd/meshsyncs.meshery.io",
        "--timeout=60s",
    ])
}

/// The operator's namespace, ServiceAccount and cluster-admin binding; returns a token for it.
async fn operator_identity(client: &kube::Client) -> Result<String, String> {
    let params = PostParams {
        field_manager: Some(BENCH_MANAGER.into()),
        ..PostParams::default()
    };
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": OPERATOR_NAMESPACE}
    }))
    .map_err(|e| e.to_string())?;
    Api::<Namespace>::all(client.clone())
        .create(&params, &namespace)
        .await
        .map_err(|e| format!("creating namespace {OPERATOR_NAMESPACE}: {e}"))?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": OPERATOR_ACCOUNT}
    }))
    .map_err(|e| e.to_string())?;
    accounts
        .create(&params, &account)
        .await
        .map_err(|e| format!("creating the operator's ServiceAccount: {e}"))?;
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "operator-bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE}],
    }))
    .map_err(|e| e.to_string())?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&params, &binding)
        .await
        .map_err(|e| format!("binding the operator's ServiceAccount: {e}"))?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(6 * 3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(OPERATOR_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("requesting the operator's token: {e}"))?;
    issued
        .status
        .map(|s| s.token)
        .ok_or_else(|| "the TokenRequest came back without a token".to_string())
}

/// The admin kubeconfig (JSON) with its user swapped for a bearer token.
fn write_token_kubeconfig(admin: &str, token: &str, path: &Path) -> Result<(), String> {
    let mut config: serde_json::Value =
        serde_json::from_str(admin).map_err(|e| format!("the admin kubeconfig: {e}"))?;
    config["users"] = serde_json::json!([{"name": "operator", "user": {"token": token}}]);
    config["contexts"][0]["context"]["user"] = "operator".into();
    std::fs::write(path, config.to_string()).map_err(|e| format!("writing {}: {e}", path.display()))
}
