//! A node whose pods run as local processes, against any API server: the control plane starts
//! one for its node when it runs pods, and a test can start one beside kube-sim.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::pki::Pki;
use crate::runtime::{PodNetwork, Runtime, kubelet_api};
use crate::{Error, io_error, node};

/// How long [`ProcessNode::shutdown`] waits for the pods to be killed and the bridge removed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to start a [`ProcessNode`].
pub struct NodeOptions {
    /// The node's own identity (`system:node:test-node` on the control plane): it registers the
    /// Node, renews its Lease, watches the pods bound to it and reports their status.
    pub client: Client,
    /// Reads the whole cluster for the pods' DNS (EndpointSlices) and NetworkPolicies, as
    /// kube-proxy and a CNI agent do with credentials of their own: the node's may not.
    pub cluster_client: Client,
    /// The bridge the pods are attached to. It is made before the node because the API server's
    /// serving certificate must name its gateway, where pods reach the API server.
    pub network: PodNetwork,
    /// Where the images' executables are ([`crate::Binaries::dir`]).
    pub binaries_dir: PathBuf,
    /// Where the pods' volumes, roots and logs are kept while they run.
    pub state_dir: PathBuf,
    /// The API server's port on 127.0.0.1: pods reach it at the gateway, port 443, through a
    /// plain TCP forwarder (so an API server serving plain HTTP, like kube-sim, is plain HTTP to
    /// pods too).
    pub api_port: u16,
    /// The kubelet API's certificates; `None`: a CA of the node's own, which no API server
    /// trusts, for an API server that never calls the kubelet (kube-sim).
    pub kubelet_tls: Option<KubeletTls>,
}

/// The kubelet API's TLS: a serving certificate for `127.0.0.1` (the Node's `InternalIP`), and
/// the CA whose client certificates it accepts (the API server's `--kubelet-client-certificate`).
pub struct KubeletTls {
    pub client_ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A running node agent that runs its pods' containers as processes, each pod in a network
/// namespace of its own on the node's bridge.
///
/// [`ProcessNode::shutdown`] kills the pods and removes their namespaces, then the bridge.
/// Dropping it only tells the agent to stop, which it does while the tokio runtime still runs
/// (the pods' processes are killed with their handles in any case).
pub struct ProcessNode {
    agent: node::Agent,
    gateway: Ipv4Addr,
}

impl ProcessNode {
    /// Registers the Node [`crate::NODE_NAME`] (Ready, its kubelet API on 127.0.0.1), then serves
    /// the pods bound to it until shut down.
    pub async fn start(options: NodeOptions) -> Result<ProcessNode, Error> {
        let kubelet_tls = match options.kubelet_tls {
            Some(tls) => tls,
            None => {
                let pki = Pki::generate(&[])?;
                let serving = pki.kubelet_serving(node::NODE_NAME)?;
                KubeletTls {
                    client_ca_pem: pki.ca_pem,
                    cert_pem: serving.cert_pem,
                    key_pem: serving.key_pem,
                }
            }
        };
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(io_error("listening for the kubelet API"))?;
        let kubelet_port = listener
            .local_addr()
            .map_err(io_error("reading the kubelet API's port"))?
            .port();
        let acceptor = kubelet_api::tls_acceptor(
            &kubelet_tls.client_ca_pem,
            &kubelet_tls.cert_pem,
            &kubelet_tls.key_pem,
        )?;
        node::register(&options.client, kubelet_port).await?;
        let gateway = options.network.gateway();
        let runtime = Runtime::new(
            options.client.clone(),
            options.cluster_client,
            options.network,
            options.state_dir,
            options.binaries_dir,
            options.api_port,
            (listener, acceptor),
        )
        .await?;
        let agent = node::Agent::spawn(options.client, Some(Arc::new(runtime)), kubelet_port);
        Ok(ProcessNode { agent, gateway })
    }

    /// The bridge's address: where pods reach the node's API forwarder (port 443) and DNS (53).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Stops the node: every pod's processes are killed and its namespace removed, as when a
    /// machine goes down, then the node's services close and the bridge goes. The Node object
    /// and the pods stay in the API server.
    pub async fn shutdown(self) {
        self.agent.stop(SHUTDOWN_GRACE).await;
    }

    /// The agent, for the control plane that stops it among its components.
    pub(crate) fn into_agent(self) -> node::Agent {
        self.agent
    }
}
