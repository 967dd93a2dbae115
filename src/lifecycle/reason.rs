//! The closed vocabulary of condition reasons the operator writes. Tools and people match on these
//! strings, so they are part of the API: add new ones, never rename.

use std::fmt;

/// Why a CR is in its phase. Every condition the operator writes carries one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Ready: every child current (and, for a Broker, the NATS handshake succeeded).
    Available,
    /// Ready in-cluster, but a LoadBalancer Service has no ingress yet: the external endpoint is empty.
    LoadBalancerPending,
    /// Nothing has been applied for this CR yet.
    NotApplied,
    /// A MeshSync whose native Broker does not exist or is not Ready.
    WaitingForBroker,
    /// Children applied and still converging (generation not observed, replicas not rolled out).
    RollingOut,
    /// A Broker's workloads are rolled out but the NATS handshake has not succeeded yet, or a MeshSync's
    /// are but its broker shows no MeshSync connection yet (within the grace period).
    WaitingForNats,
    /// A workload lost availability at a generation that had been reached before.
    WorkloadUnavailable,
    /// A Broker's NATS handshake has been failing for longer than the grace period.
    BrokerUnreachable,
    /// The broker a MeshSync publishes to has shown no subscribed MeshSync connection for longer than
    /// the grace period: its pods may look Ready while no event flows.
    MeshSyncDisconnected,
    /// Server-side apply of a child failed (API error, admission webhook, quota, …); retried.
    ApplyFailed,
    /// The spec fails validation; nothing is applied until it is fixed.
    InvalidSpec,
    /// A change needs an immutable field of a child to change; it must be reverted or recreation allowed.
    ImmutableFieldChanged,
    /// A Deployment exceeded its progress deadline; it will not converge without a change.
    ProgressDeadlineExceeded,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::Available,
        Reason::LoadBalancerPending,
        Reason::NotApplied,
        Reason::WaitingForBroker,
        Reason::RollingOut,
        Reason::WaitingForNats,
        Reason::WorkloadUnavailable,
        Reason::BrokerUnreachable,
        Reason::MeshSyncDisconnected,
        Reason::ApplyFailed,
        Reason::InvalidSpec,
        Reason::ImmutableFieldChanged,
        Reason::ProgressDeadlineExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Available => "Available",
            Reason::LoadBalancerPending => "LoadBalancerPending",
            Reason::NotApplied => "NotApplied",
            Reason::WaitingForBroker => "WaitingForBroker",
            Reason::RollingOut => "RollingOut",
            Reason::WaitingForNats => "WaitingForNats",
            Reason::WorkloadUnavailable => "WorkloadUnavailable",
            Reason::BrokerUnreachable => "BrokerUnreachable",
            Reason::MeshSyncDisconnected => "MeshSyncDisconnected",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::ImmutableFieldChanged => "ImmutableFieldChanged",
            Reason::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
        }
    }

    /// Whether retrying cannot help: only a change by a person (spec, or allowing recreation) moves the
    /// CR on. These, and only these, set kstatus' `Stalled=True`, so `kstatus`/Flux fail fast instead of
    /// waiting out their timeout.
    pub fn is_stalled(self) -> bool {
        matches!(
            self,
            Reason::InvalidSpec | Reason::ImmutableFieldChanged | Reason::ProgressDeadlineExceeded
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
