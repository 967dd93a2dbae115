#![allow(dead_code)]
//! Shared helpers for the kube-sim integration tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sim::{Sim, SimOptions};
use serde_json::{Value, json};

/// Names the admin kubeconfig of a real cluster; when set, the conformance tests run against it
/// instead of a kube-sim, so that every claim they make about kube-sim is checked on the real thing.
const REFERENCE_KUBECONFIG: &str = "KUBE_SIM_REFERENCE_KUBECONFIG";

/// The field manager that installs the fixture CRDs on the reference server.
const FIXTURE_MANAGER: &str = "kube-sim-tests";

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crds")
}

/// A sim with the fixture CRDs installed and a fast readiness delay.
pub async fn sim() -> Sim {
    Sim::start(SimOptions {
        crds_dir: Some(fixtures()),
        ready_after: Duration::from_millis(200),
        bookmark_interval: Duration::from_millis(500),
        ..SimOptions::default()
    })
    .await
    .expect("start sim")
}

/// Whether the fixture CRDs are installed before the test starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Crds {
    Installed,
    /// The test installs them itself (with kubectl).
    Absent,
}

/// The API server a conformance test runs against: its own kube-sim, or the reference cluster of
/// [`REFERENCE_KUBECONFIG`], where the test gets a namespace of its own (deleted on drop) and
/// cluster-scoped names carry a per-process suffix so that runs never collide.
pub struct Server {
    sim: Option<Sim>,
    config: kube::Config,
    kubeconfig: PathBuf,
    namespace: String,
    suffix: String,
}

/// The server under test for the test `test` (its namespace on the reference server is named after it).
pub async fn server(test: &str, crds: Crds) -> Server {
    match std::env::var_os(REFERENCE_KUBECONFIG).filter(|path| !path.is_empty()) {
        None => {
            let sim = if crds == Crds::Installed {
                sim().await
            } else {
                Sim::start(SimOptions {
                    ready_after: Duration::from_millis(100),
                    ..SimOptions::default()
                })
                .await
                .expect("start sim")
            };
            Server {
                config: sim.config(),
                kubeconfig: sim.kubeconfig_path().to_path_buf(),
                namespace: "default".into(),
                suffix: String::new(),
                sim: Some(sim),
            }
        }
        Some(path) => reference(test, PathBuf::from(path), crds).await,
    }
}

async fn reference(test: &str, kubeconfig: PathBuf, crds: Crds) -> Server {
    eprintln!(
        "{test}: running against the REAL API server of {}",
        kubeconfig.display()
    );
    let suffix = format!("-{}", std::process::id());
    let namespace = format!("{test}{suffix}").replace('_', "-");
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("read reference kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("reference kubeconfig");
    config.default_namespace = namespace.clone();
    let client = kube::Client::try_from(config.clone()).expect("reference client");
    if crds == Crds::Installed {
        install_fixture_crds(&client).await;
    }
    let namespaces: Api<Namespace> = Api::all(client);
    let ns = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {namespace}: {e}"));
    Server {
        sim: None,
        config,
        kubeconfig,
        namespace,
        suffix,
    }
}

/// Server-side apply the fixture CRDs and wait until they are Established.
async fn install_fixture_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let crd: Value = serde_norway::from_str(&text).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        crds.patch(
            &name,
            &PatchParams::apply(FIXTURE_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
        eventually(30, &format!("{name} Established"), || async {
            let crd = crds.get(&name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }
}

impl Server {
    /// The kube-sim under test for a check only it can make; on the reference server None, after
    /// printing `skipped on the real API server: <reason>` so that the skipped set is visible.
    pub fn sim_only(&self, reason: &str) -> Option<&Sim> {
        if self.sim.is_none() {
            // Written past the test harness's output capture, so that every run shows what it skipped.
            let _ = writeln!(
                std::io::stderr(),
                "skipped on the real API server: {reason}"
            );
        }
        self.sim.as_ref()
    }

    pub fn is_reference(&self) -> bool {
        self.sim.is_none()
    }

    /// A client whose default namespace is [`Server::namespace`].
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config.clone()).expect("kube client")
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The namespace this test works in (`default` on a kube-sim).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A cluster-scoped object's name, unique to this run on the reference server.
    pub fn cluster_name(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }

    /// A raw request through the client (for what typed clients hide): (status, headers, body).
    pub async fn raw_full(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&str>,
    ) -> (u16, http::HeaderMap, Value) {
        raw_full(&self.client(), method, path, content_type, body).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        raw(&self.client(), method, path, content_type, body).await
    }
}

impl Drop for Server {
    /// Delete the test's namespace on the reference server, also when the test failed. A thread of
    /// its own, with its own runtime and client, because drop cannot await.
    fn drop(&mut self) {
        if self.sim.is_some() {
            return;
        }
        let config = self.config.clone();
        let namespace = self.namespace.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let namespaces: Api<Namespace> =
                    Api::all(kube::Client::try_from(config).expect("kube client"));
                namespaces
                    .delete(&namespace, &DeleteParams::default())
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = deleted {
            eprintln!("could not delete test namespace {}: {e}", self.namespace);
        }
    }
}

/// Poll `f` until it returns Some, or panic after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw request through `client` (its base URL and credentials; kube's retries of 429/503/504
/// apply). Returns (status, headers, body as JSON, or as a JSON string when it is not JSON).
pub async fn raw_full(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (u16, http::HeaderMap, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::ACCEPT, "application/json");
    if let Some(ct) = content_type {
        request = request.header(http::header::CONTENT_TYPE, ct);
    }
    let request = request
        .body(kube::client::Body::from(
            body.unwrap_or("").as_bytes().to_vec(),
        ))
        .expect("request");
    let response = client.send(request).await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect_bytes().await.expect("body");
    let text = String::from_utf8_lossy(&bytes).to_string();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

pub async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let b = body.map(|v| v.to_string());
    let (s, _, v) = raw_full(client, method, path, content_type, b.as_deref()).await;
    (s, v)
}
