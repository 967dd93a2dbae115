//! A real Kubernetes control plane for the test suites: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler built from their official Go modules
//! (`build.sh`), started on loopback with certificates of their own, plus a node agent that
//! plays the kubelet's part for the pods scheduled to it. That node, when it runs pods as
//! processes, is a piece of its own ([`ProcessNode`]) that also runs beside kube-sim.
//!
//! kube-sim is the fast substrate for faults and benchmarks; this is the reference it is
//! measured against.

mod binaries;
mod control_plane;
mod node;
mod pki;
mod process_node;
mod runtime;

pub use binaries::{Binaries, ensure_built};
pub use control_plane::{ControlPlane, Options};
pub use node::{CONTAINER_RUNTIME, NODE_NAME, UNREADY_ANNOTATION};
pub use process_node::{KubeletTls, NodeOptions, ProcessNode};
pub use runtime::{PodNetwork, connect_from_pod};

/// Why the control plane could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the control plane's binaries with {script}: {detail}")]
    Build { script: String, detail: String },
    #[error("making {what}: {source}")]
    Certificates {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{component} did not become ready within {seconds} s; the end of its log:\n{log_tail}")]
    NotReady {
        component: String,
        seconds: u64,
        log_tail: String,
    },
    #[error("{component} exited while starting ({status}); the end of its log:\n{log_tail}")]
    Exited {
        component: String,
        status: String,
        log_tail: String,
    },
    #[error("talking to the API server: {0}")]
    Kube(#[from] kube::Error),
    #[error("the admin kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("the pods' network: {0}")]
    Network(String),
    #[error("the kubelet API's TLS: {0}")]
    KubeletTls(#[from] tokio_rustls::rustls::Error),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
