//! The process runtime (`--run-pods`): the node agent runs each pod whose images it knows as
//! local processes, each pod in a network namespace of its own, as a kubelet and a container
//! runtime would, minus the images.

mod container;
mod dns;
mod env;
mod exec;
pub mod kubelet_api;
mod network;
mod network_policy;
mod pod;
mod spdy;
mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::Error;
pub use network::{PodNetwork, connect_from_pod};

/// The pods this node runs, one worker task each.
pub struct Runtime {
    shared: Arc<pod::Shared>,
    workers: Mutex<HashMap<String, Worker>>,
    /// The API forwarder, the DNS server, the kubelet API and the NetworkPolicy enforcer. The
    /// first two are bound to the bridge's address, so they must be closed before the bridge (and
    /// its subnet) can go to another node agent.
    services: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct Worker {
    latest: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

impl Runtime {
    /// Runs pods on `network`; pods reach the API server (listening on loopback at `api_port`)
    /// at the network's gateway, port 443, through a forwarder of the agent's own, as they would
    /// reach the `kubernetes` Service through kube-proxy, and the cluster DNS at the gateway,
    /// port 53. The DNS server (EndpointSlices) and the NetworkPolicy enforcer (policies, pods,
    /// namespaces) read the whole cluster with `cluster_client`, as kube-proxy and a CNI agent do
    /// with their own credentials: the node's may not. The API server reads the pods' logs from
    /// the kubelet API on `kubelet`.
    pub async fn new(
        client: Client,
        cluster_client: Client,
        network: PodNetwork,
        state_dir: PathBuf,
        binaries: PathBuf,
        api_port: u16,
        kubelet: (tokio::net::TcpListener, tokio_rustls::TlsAcceptor),
    ) -> Result<Runtime, Error> {
        std::fs::create_dir_all(&state_dir).map_err(crate::io_error(format!(
            "creating the pods' directory {}",
            state_dir.display()
        )))?;
        let gateway = network.gateway();
        let listener = tokio::net::TcpListener::bind((gateway, 443))
            .await
            .map_err(crate::io_error(format!(
                "listening on {gateway}:443 for pods"
            )))?;
        let (kubelet_listener, kubelet_tls) = kubelet;
        let mut services = vec![
            tokio::spawn(forward(listener, api_port)),
            tokio::spawn(kubelet_api::serve(
                kubelet_listener,
                kubelet_tls,
                client.clone(),
                state_dir.clone(),
            )),
        ];
        services.extend(dns::serve(cluster_client.clone(), gateway).await.map_err(
            crate::io_error(format!("serving DNS on {gateway}:53 for pods")),
        )?);
        let (network_policies, enforcement) =
            network_policy::Enforcer::start(&cluster_client, gateway).await?;
        services.extend(enforcement);
        let api_env = vec![
            ("KUBERNETES_SERVICE_HOST".to_string(), gateway.to_string()),
            ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
            (
                "KUBERNETES_SERVICE_PORT_HTTPS".to_string(),
                "443".to_string(),
            ),
        ];
        Ok(Runtime {
            shared: Arc::new(pod::Shared {
                client,
                network,
                state_dir,
                binaries,
                api_env,
                network_policies,
            }),
            workers: Mutex::new(HashMap::new()),
            services: Mutex::new(services),
        })
    }

    /// A new version of a pod bound to this node: starts its worker the first time.
    pub fn observe(&self, pod: Pod) {
        let uid = pod.uid().unwrap_or_default();
        let mut workers = self.workers.lock().unwrap();
        if let Some(worker) = workers.get(&uid) {
            // A worker that finished (its pod deleted) needs no later version.
            let _ = worker.latest.send(Some(pod));
            return;
        }
        if matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) {
            return;
        }
        let (latest, receiver) = watch::channel(Some(pod));
        let task = tokio::spawn(pod::run(self.shared.clone(), receiver));
        workers.insert(uid, Worker { latest, task });
    }

    /// The pod is gone from the API server: its worker stops what still runs.
    pub fn forget(&self, pod: &Pod) {
        let uid = pod.uid().unwrap_or_default();
        if let Some(worker) = self.workers.lock().unwrap().remove(&uid) {
            let _ = worker.latest.send(None);
        }
    }

    /// The node stops: every pod's processes are killed and its namespace removed, as when a
    /// machine goes down, before the control plane stops; then the pods' services close.
    pub async fn shutdown(&self) {
        let workers: Vec<Worker> = self
            .workers
            .lock()
            .unwrap()
            .drain()
            .map(|(_, w)| w)
            .collect();
        for worker in &workers {
            let _ = worker.latest.send(None);
        }
        for worker in workers {
            let _ = worker.task.await;
        }
        let services: Vec<_> = self.services.lock().unwrap().drain(..).collect();
        for service in services {
            service.abort();
            let _ = service.await;
        }
    }
}

/// Copies each connection from pods to the API server on loopback.
async fn forward(listener: tokio::net::TcpListener, api_port: u16) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", api_port)).await
            {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
