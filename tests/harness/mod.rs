//! End-to-end harness: a kube-sim API server with the CRDs installed, the operator running
//! in-process against it, and real `nats-server` processes standing in for the broker pods.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use kube_sim::{LoadBalancerMode, Sim, SimOptions};
use meshery_operator::api::{Broker, MeshSync, Phase};
pub use meshery_operator::controller::Settings;
use meshery_operator::controller::{BrokerProbeMode, RunOptions};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// NATS-using tests bind nats-server to the sim's LoadBalancer addresses, which every sim hands
/// out from the same range: they take this lock so they never share an address.
pub static NATS_ADDRESSES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Cluster {
    pub sim: Sim,
    pub client: Client,
    operator: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// Settings tuned for tests: fast resync and a short probe grace period.
pub fn test_settings() -> Settings {
    Settings {
        namespace: None,
        dry_run: false,
        broker_probe: BrokerProbeMode::Auto,
        in_cluster: false,
        api_server_host: "127.0.0.1".into(),
        resync_interval: Duration::from_secs(2),
        probe_grace: Duration::from_secs(3),
        probe_timeout: Duration::from_secs(1),
        nats_version: "2.10.24-alpine".into(),
        meshsync_version: "v1.0.3".into(),
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        let crds = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
        let sim = Sim::start(SimOptions {
            load_balancer: LoadBalancerMode::Loopback,
            ready_after: Duration::from_millis(300),
            crds_dir: Some(crds),
            ..SimOptions::default()
        })
        .await
        .expect("kube-sim starts");
        let client = sim.client();
        Cluster {
            sim,
            client,
            operator: None,
        }
    }

    pub fn start_operator(&mut self, settings: Settings) {
        assert!(self.operator.is_none(), "the operator is already running");
        let (stop, stopped) = oneshot::channel::<()>();
        let options = RunOptions {
            settings,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            health_addr: "127.0.0.1:0".parse().unwrap(),
            leader_election: None,
            concurrency: 4,
        };
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            meshery_operator::controller::run(client, options, shutdown)
                .await
                .expect("the operator runs");
        });
        self.operator = Some((stop, task));
    }

    pub async fn stop_operator(&mut self) {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the operator stops within 10 s")
                .expect("the operator task does not panic");
        }
    }

    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub async fn create_namespace(&self, name: &str) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
    }

    /// Applies a CR from YAML as a user would (`kubectl apply --server-side`).
    pub async fn apply_yaml<K>(&self, yaml: &str) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let value: serde_json::Value = serde_norway::from_str(yaml).expect("test YAML parses");
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_string();
        let api: Api<K> = self.api(&namespace);
        api.patch(
            &name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"))
    }

    /// Waits until `check` holds for the named object, returning it; panics with the last state on timeout.
    pub async fn wait_for<K>(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        check: impl Fn(&K) -> bool,
    ) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = self.api(namespace);
        let deadline = Instant::now() + timeout;
        loop {
            let current = api.get_opt(name).await.expect("reading the object");
            if let Some(object) = &current
                && check(object)
            {
                return object.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {name}; last seen: {current:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_broker_phase(
        &self,
        namespace: &str,
        name: &str,
        phase: Phase,
        timeout: Duration,
    ) -> Broker {
        self.wait_for(namespace, name, timeout, |b: &Broker| {
            b.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    pub async fn wait_for_meshsync_phase(
        &self,
        namespace: &str,
        name: &str,
        phase: Phase,
        timeout: Duration,
    ) -> MeshSync {
        self.wait_for(namespace, name, timeout, |m: &MeshSync| {
            m.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    /// The token the operator generated for a Broker.
    pub async fn broker_token(&self, namespace: &str, broker: &str) -> String {
        let secret: Secret = self
            .wait_for(
                namespace,
                &format!("{broker}-auth"),
                Duration::from_secs(10),
                |_: &Secret| true,
            )
            .await;
        let data = secret.data.expect("the auth Secret has data");
        String::from_utf8(data["token"].0.clone()).expect("the token is text")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            task.abort();
        }
    }
}

/// A real nats-server process, killed on drop.
pub struct NatsServer {
    child: Child,
    pub address: SocketAddr,
}

impl NatsServer {
    /// Starts `nats-server` on `address` requiring `token`, and waits until it accepts connections.
    pub fn start(address: SocketAddr, token: &str) -> NatsServer {
        let child = Command::new("nats-server")
            .args([
                "-a",
                &address.ip().to_string(),
                "-p",
                &address.port().to_string(),
                "--auth",
                token,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/install-and-test.sh installs it)");
        let mut server = NatsServer { child, address };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A server that exited could not bind: another process holds the address, and a
            // connection would reach that process instead.
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "nats-server could not listen on {address} ({status}); is another test process using it?"
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "nats-server exited right after starting on {address} ({status}); is another test process using it?"
            );
        }
        server
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The external `host:port` a Broker reports.
pub fn external_address(broker: &Broker) -> SocketAddr {
    let external = &broker
        .status
        .as_ref()
        .and_then(|s| s.endpoint.as_ref())
        .expect("an endpoint")
        .external;
    external
        .parse()
        .unwrap_or_else(|e| panic!("external endpoint {external:?}: {e}"))
}

pub fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:#?}"))
}

pub fn name_of<K: ResourceExt>(object: &K) -> String {
    object.name_any()
}

/// Writes the API server saw (dry-run ones excluded), as `verb resource namespace/name`.
pub fn writes(sim: &Sim) -> Vec<String> {
    sim.stats()
        .real_writes()
        .iter()
        .map(|w| {
            format!(
                "{} {} {}/{}",
                w.verb,
                w.resource,
                w.namespace.as_deref().unwrap_or(""),
                w.name.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// A namespaced object's data as the API server returns it.
pub async fn get_json(
    client: &Client,
    api_version: &str,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Option<serde_json::Value> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: String::new(),
        plural: plural.into(),
    };
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &resource);
    api.get_opt(name)
        .await
        .expect("reading")
        .map(|o| serde_json::to_value(o).unwrap())
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
