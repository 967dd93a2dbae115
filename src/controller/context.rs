//! What every reconcile shares: the client, the operator's settings, caches, metrics and events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::runtime::reflector::Store;

use super::apply::{OwnWrites, WriteObserver};
use super::caches::ChildCaches;
use super::events::EventRecorder;
use super::go_operator::GoOperatorLease;
use super::metrics::{Metrics, WriteVerb};
use crate::api::{Broker, MeshSync};

/// Whether the operator dials each Broker with a NATS client to decide readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerProbeMode {
    /// Probe through the internal endpoint in a cluster, else the external endpoint when there is one.
    Auto,
    /// Never dial; readiness rests on the children alone (and the Ready message says so).
    Off,
}

/// How a reconcile writes the children the render wants, and its CR's status. Only `diff` is for
/// production; the others exist so `operator-bench` can measure what the diff engine saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplyStrategy {
    /// Apply only what the diff engine says drifted; write status only when it changed.
    #[default]
    Diff,
    /// Server-side apply every desired child and write status on every reconcile (what the Go
    /// Meshery Operator and kube-rs' controller-rs example do).
    AlwaysApply,
    /// Per child: GET, server-side dry-run apply, and apply for real only if the dry-run result
    /// differs from the live object (what Flux's `ssa` resource manager does). Status as `diff`.
    DryRunDiff,
}

/// The operator's settings, from the `run` command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Reconcile only CRs in this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Reconcile fully but write nothing: every planned write is logged instead.
    pub dry_run: bool,
    pub broker_probe: BrokerProbeMode,
    /// Whether the operator runs inside the cluster (and so can dial Services' cluster DNS names).
    pub in_cluster: bool,
    /// The host of the API server, reported with a NodePort as a Broker's external endpoint.
    pub api_server_host: String,
    /// How often a converged CR is checked again without any event.
    pub resync_interval: Duration,
    /// How long a Broker's NATS handshake may fail before it is Degraded.
    pub probe_grace: Duration,
    /// How often a Ready Broker is probed again (when probing is on): a broker that stops
    /// answering while its pods still look Ready is noticed within this plus the grace period, not
    /// at the next resync.
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// How long a MeshSync's broker may show no MeshSync connection before the MeshSync is Degraded.
    pub meshsync_connection_grace: Duration,
    /// Restart a MeshSync whose broker has shown no MeshSync connection for the grace period.
    pub restart_disconnected_meshsync: bool,
    /// Image tags used when a CR does not pin one.
    pub nats_version: String,
    pub meshsync_version: String,
    /// Where the Go Meshery Operator keeps its leader Lease (its `--namespace`): while a live
    /// holder renews it, nothing is reconciled.
    pub go_operator_namespace: String,
}

/// Shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub children: ChildCaches,
    pub brokers: Store<Broker>,
    pub meshsyncs: Store<MeshSync>,
    pub own_writes: Arc<OwnWrites>,
    pub metrics: Metrics,
    pub recorder: EventRecorder,
    /// Since when each Broker's probe has been failing without a success.
    pub probe_failing_since: FailingSince,
    /// Since when each MeshSync has been missing from its broker's connections.
    pub meshsync_missing_since: FailingSince,
    /// UID of the `meshsyncs.meshery.io` CRD, the owner of MeshSync's cluster-scoped RBAC.
    pub meshsync_crd_uid: Option<String>,
    pub apply_strategy: ApplyStrategy,
    pub go_operator: GoOperatorLease,
}

/// Since when a check of each CR (by UID) has been failing without a break: the first failure of
/// the current run starts the grace period the lifecycle measures.
#[derive(Default)]
pub struct FailingSince(Mutex<HashMap<String, Time>>);

impl FailingSince {
    /// When the current run of failures of `uid` began: now, if this is its first.
    pub fn since(&self, uid: &str) -> Time {
        self.map()
            .entry(uid.to_string())
            .or_insert_with(now)
            .clone()
    }

    /// The check passed (or starts over): the next failure begins a new run.
    pub fn clear(&self, uid: &str) {
        self.map().remove(uid);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Time>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl WriteObserver for Metrics {
    fn observe_write(&self, kind: &str, verb: WriteVerb) {
        self.api_write(kind, verb);
    }
}

/// The current time as Kubernetes writes it; the only clock the reconcilers read.
pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}
