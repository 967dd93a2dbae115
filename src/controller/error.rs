//! Why a reconcile failed. Variant names double as the `error` label of the errors metric.

/// A reconcile failure that is retried with back-off (invalid specs and unhealthy children are
/// not errors: they are status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error("writing the status of {object}: {source}")]
    StatusWrite { object: String, source: kube::Error },
    #[error("{object} has no {field}: it was not read from the API server")]
    MissingMetadata { object: String, field: &'static str },
    #[error("{object} could not be decoded: {message}")]
    Decode { object: String, message: String },
    /// A step of taking over from the Go Meshery Operator (deleting its child, clearing its
    /// finalizer or conditions) that the API server refused.
    #[error("adopting {object} from the Go Meshery Operator: {action}: {source}")]
    Adopt {
        object: String,
        action: String,
        source: kube::Error,
    },
    /// Restarting a disconnected MeshSync (`--restart-disconnected-meshsync`) was refused.
    #[error("restarting Deployment {object} of a disconnected MeshSync: {source}")]
    Restart { object: String, source: kube::Error },
}

impl Error {
    /// The variant name, for the `error` metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Read { .. } => "Read",
            Error::StatusWrite { .. } => "StatusWrite",
            Error::MissingMetadata { .. } => "MissingMetadata",
            Error::Decode { .. } => "Decode",
            Error::Adopt { .. } => "Adopt",
            Error::Restart { .. } => "Restart",
        }
    }
}
