//! The in-process simulator: start/stop, the HTTP listener (with "API server down"), handles.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::faults::{ActiveFault, Fault, Faults, RequestStats};
use crate::store::Store;

/// How LoadBalancer Services get their ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancerMode {
    /// `status.loadBalancer` stays empty (EXTERNAL-IP `<pending>`), as on a cluster without a LB controller.
    #[default]
    Pending,
    /// Each LoadBalancer Service gets one ingress IP from 127.0.1.0/24 (127.0.1.1, .2, … in creation order).
    Loopback,
}

/// Simulated rollout behaviour of one Deployment or StatefulSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Readiness {
    /// Rolls out `ready_after` after each new generation (the default).
    #[default]
    Normal,
    /// Pods never become ready: Progressing=True, Available=False, readyReplicas 0.
    NeverReady,
    /// Was ready, now no replica is ready (e.g. crash-looping): readyReplicas/availableReplicas 0, Available=False.
    LoseReadiness,
    /// The rollout stalls: Progressing=False with reason ProgressDeadlineExceeded.
    ProgressDeadlineExceeded,
}

/// Options for [`Sim::start`].
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Address to bind; default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Delay between a new workload generation and its rolled-out status. Default 0.5 s.
    pub ready_after: Duration,
    pub load_balancer: LoadBalancerMode,
    /// CRD YAML files to install (and wait Established) at start.
    pub crds_dir: Option<PathBuf>,
    /// Where to write the kubeconfig (default: a temp dir owned by the `Sim`).
    pub kubeconfig_path: Option<PathBuf>,
    /// Number of watch events kept for resuming watches; older RVs get 410 Gone.
    pub watch_history: usize,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ready_after: Duration::from_millis(500),
            load_balancer: LoadBalancerMode::Pending,
            crds_dir: None,
            kubeconfig_path: None,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<Faults>,
    pub stats: Mutex<RequestStats>,
    pub ready_after: Mutex<Duration>,
    pub lb_mode: Mutex<LoadBalancerMode>,
    /// (group/plural, namespace, name) → readiness override
    pub readiness: Mutex<HashMap<(String, String, String), Readiness>>,
    /// Bumped to end every open watch stream.
    pub watch_epoch: tokio::sync::watch::Sender<u64>,
    pub bookmark_interval: Duration,
    pub addr: SocketAddr,
    /// Simulated-controller bookkeeping: uid → (generation, when first seen at it, template hash).
    pub rollouts: Mutex<HashMap<String, (i64, std::time::Instant, String)>>,
    /// Workloads whose simulated status is final: uid → (resourceVersion, readiness mode).
    pub settled: Mutex<HashMap<String, (String, Readiness)>>,
    /// The RV at the end of the last controller pass that reacted to writes.
    pub last_tick_rv: Mutex<u64>,
    /// LoadBalancer ingress assignments: uid → last octet.
    pub lb_ips: Mutex<(HashMap<String, u8>, u8)>,
    /// Cancels the current accept loop and its connections ("down").
    pub current: Mutex<CancellationToken>,
    /// Cancels everything (stop).
    pub stopped: CancellationToken,
}

/// A running simulated API server.
pub struct Sim {
    shared: Arc<Shared>,
    kubeconfig: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) use lock as lock_shared;

fn spawn_accept(shared: Arc<Shared>, listener: TcpListener, token: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = token.cancelled() => break,
                r = listener.accept() => r,
            };
            let Ok((stream, _)) = accepted else { continue };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            use futures::FutureExt;
                            let fut = crate::api::handle(shared, req.map(axum::body::Body::new));
                            // A bug in kube-sim answers 500 (and says so) instead of dropping the connection.
                            let resp = match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                                Ok(r) => r,
                                Err(_) => crate::api::json_response(
                                    500,
                                    &crate::errors::ApiError::internal(
                                        "kube-sim panicked while handling this request (a kube-sim bug)",
                                    )
                                    .to_status(),
                                ),
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = token.cancelled() => {}
                }
            });
        }
    });
}

fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\nusers:\n- name: kube-sim\n  user: {{}}\npreferences: {{}}\n"
    )
}

impl Sim {
    /// Bind, start serving, install `crds_dir` (Established), write the kubeconfig.
    pub async fn start(opts: SimOptions) -> anyhow_like::Result<Sim> {
        let listener = TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let (watch_epoch, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(opts.watch_history.max(1))),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(RequestStats::default()),
            ready_after: Mutex::new(opts.ready_after),
            lb_mode: Mutex::new(opts.load_balancer),
            readiness: Mutex::new(HashMap::new()),
            watch_epoch,
            bookmark_interval: opts.bookmark_interval,
            addr,
            rollouts: Mutex::new(HashMap::new()),
            last_tick_rv: Mutex::new(0),
            settled: Mutex::new(HashMap::new()),
            lb_ips: Mutex::new((HashMap::new(), 0)),
            current: Mutex::new(CancellationToken::new()),
            stopped: CancellationToken::new(),
        });
        // One synchronous controller pass: the seeded namespaces get their default objects.
        crate::controllers::tick(&shared);
        let token = lock(&shared.current).clone();
        spawn_accept(shared.clone(), listener, token);
        crate::controllers::spawn(shared.clone());
        let (dir, kubeconfig) = match &opts.kubeconfig_path {
            Some(p) => (None, p.clone()),
            None => {
                let d = tempfile::tempdir()?;
                let p = d.path().join("kubeconfig");
                (Some(d), p)
            }
        };
        let sim = Sim {
            shared,
            kubeconfig,
            _dir: dir,
        };
        if let Some(d) = &opts.crds_dir {
            sim.install_crds_from_dir(d)?;
        }
        std::fs::write(&sim.kubeconfig, kubeconfig_yaml(&sim.url()))?;
        Ok(sim)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A `kube::Config` for this server (default namespace `default`; kube's default retry of
    /// 429/503/504 left on, as `Config::infer` would have it).
    pub fn config(&self) -> kube::Config {
        let mut cfg = kube::Config::new(self.url().parse().expect("url"));
        cfg.default_namespace = "default".into();
        cfg
    }

    /// A `kube::Client` for this server (from [`Sim::config`]).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("kube client")
    }

    /// Install every CRD in `*.yaml`/`*.yml`/`*.json` files of `dir` (multi-document YAML allowed).
    /// They are Established when this returns. Returns the CRD names.
    pub fn install_crds_from_dir(&self, dir: &Path) -> anyhow_like::Result<Vec<String>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        let mut names = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f)?;
            for doc in serde_norway::Deserializer::from_str(&text) {
                let v: Value = match Value::deserialize(doc) {
                    Ok(v) => v,
                    Err(e) => return Err(format!("{}: {e}", f.display()).into()),
                };
                if v.is_null() {
                    continue;
                }
                if v["kind"] != "CustomResourceDefinition" {
                    continue;
                }
                names.push(
                    self.install_crd(v)
                        .map_err(|e| format!("{}: {e}", f.display()))?,
                );
            }
        }
        Ok(names)
    }

    /// Create (or update) one CRD object; it is Established when this returns.
    pub fn install_crd(&self, mut crd: Value) -> anyhow_like::Result<String> {
        crate::util::normalise_numbers(&mut crd);
        let mut st = lock(&self.shared.store);
        let ri = st
            .builtin("apiextensions.k8s.io", "customresourcedefinitions")
            .expect("crd");
        let out = st.put_object(&ri, crd, "kube-sim").map_err(|e| e.message)?;
        Ok(out["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    // ---- simulated cluster behaviour -------------------------------------------------------

    /// Delay between a new workload generation and its rolled-out status.
    pub fn set_ready_after(&self, d: Duration) {
        *lock(&self.shared.ready_after) = d;
    }

    pub fn set_load_balancer_mode(&self, mode: LoadBalancerMode) {
        *lock(&self.shared.lb_mode) = mode;
    }

    /// Override how one Deployment/StatefulSet (`resource` = "deployments" or "statefulsets") rolls out.
    pub fn set_readiness(&self, resource: &str, namespace: &str, name: &str, r: Readiness) {
        lock(&self.shared.readiness).insert(
            (format!("apps/{resource}"), namespace.into(), name.into()),
            r,
        );
    }

    // ---- faults -----------------------------------------------------------------------------

    /// Add a fault rule; returns its id.
    pub fn inject(&self, fault: Fault) -> u64 {
        let mut f = lock(&self.shared.faults);
        f.next_id += 1;
        let id = f.next_id;
        f.rules.push(ActiveFault { id, fault, seen: 0 });
        id
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).rules.clear();
    }

    /// End every open watch stream (clients see the stream close and must re-watch).
    pub fn drop_watches(&self) {
        self.shared.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Forget the watch history: resuming a watch from any earlier RV gets `410 Gone`.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// The API server goes down: the listener closes (connections refused) and open connections drop.
    pub fn go_down(&self) {
        go_down(&self.shared);
    }

    /// Back up on the same address.
    pub async fn come_up(&self) -> std::io::Result<()> {
        come_up(self.shared.clone()).await
    }

    /// Down for `d`, then back on the same port (returns at once; the restart runs in the background).
    pub fn down_for(&self, d: Duration) {
        down_for(&self.shared, d);
    }

    // ---- accounting -------------------------------------------------------------------------

    pub fn stats(&self) -> RequestStats {
        lock(&self.shared.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = RequestStats::default();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv
    }

    /// Stop serving and stop the simulated controllers.
    pub fn stop(&self) {
        self.go_down();
        self.shared.stopped.cancel();
        self.drop_watches();
    }
}

pub(crate) fn go_down(shared: &Shared) {
    lock(&shared.current).cancel();
}

pub(crate) async fn come_up(shared: Arc<Shared>) -> std::io::Result<()> {
    let mut last_err = None;
    for _ in 0..100 {
        if shared.stopped.is_cancelled() {
            return Ok(());
        }
        match TcpListener::bind(shared.addr).await {
            Ok(l) => {
                let token = CancellationToken::new();
                *lock(&shared.current) = token.clone();
                spawn_accept(shared, l, token);
                return Ok(());
            }
            Err(e) => {
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Err(last_err.expect("error"))
}

pub(crate) fn down_for(shared: &Arc<Shared>, d: Duration) {
    go_down(shared);
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(d).await;
        let _ = come_up(shared).await;
    });
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Minimal boxed-error result so the public API does not force an error crate on callers.
pub mod anyhow_like {
    pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
    pub type Result<T> = std::result::Result<T, Error>;
}
