//! `next(previous status, observations, now) -> status`: the single source of every status the operator
//! writes. Observations are first reduced to one [`Situation`] (the first of a fixed list of checks that
//! holds), then [`transition`] — the transition table, one `match` mirrored row for row in
//! `docs/lifecycle.md` — picks the phase and reason from the previous phase and that situation.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Reason;
use super::conditions::{BROKER_CONNECTED, WATCH_LIST_APPLIED, condition, conditions};
use super::readiness::Readiness;
use crate::api::{BrokerEndpoint, BrokerStatus, FieldError, MeshSyncStatus, Phase};
use crate::object::ObjectKey;

/// Everything the controller learned in one reconcile of one CR.
#[derive(Clone, Debug, PartialEq)]
pub struct Observations<K> {
    /// The CR's `metadata.generation`: the spec this status describes.
    pub generation: i64,
    /// What validation found wrong with the spec (empty when valid). The controller applies nothing
    /// while this is non-empty; children already running are left as they are.
    pub spec_errors: Vec<FieldError>,
    /// What applying this generation's render did.
    pub apply: ApplyOutcome,
    /// The readiness of every child observed after applying (empty: none exist, or none observed yet).
    pub children: BTreeMap<ObjectKey, Readiness>,
    /// What only this kind observes.
    pub kind: K,
}

/// What applying this generation's render did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Nothing was sent this reconcile (invalid spec, broker missing, or nothing attempted yet).
    NotAttempted,
    /// Every child now matches this generation's render (created, patched, or already unchanged).
    Applied,
    /// The API server refused an apply (admission webhook, quota, conflict, outage); retried with back-off.
    Failed { message: String },
    /// The render needs an immutable field of an existing child to change, and the CR does not allow
    /// recreating it. Each path names the object and field, e.g. `StatefulSet nats: spec.volumeClaimTemplates`.
    ImmutableFieldChanged { paths: Vec<String> },
}

/// What a Broker reconcile observes beyond the common facts.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerFacts {
    pub probe: NatsProbe,
    /// How long the NATS handshake may fail before a Ready or Deploying Broker becomes Degraded: rides out
    /// a pod restart or a leader move without flapping `Ready`.
    pub grace: SignedDuration,
    /// Copied to `status.endpoint`.
    pub endpoint: Option<BrokerEndpoint>,
}

/// The outcome of the NATS client handshake (with the auth token) against the Broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsProbe {
    Ok,
    /// Failing continuously since `since` (the first failure of the current run, kept by the controller).
    Failing {
        since: Time,
        message: String,
    },
    /// Not dialled because the operator runs with `--broker-probe off` (or cannot reach pod networks):
    /// readiness then rests on the children alone, and the Ready message says so.
    Skipped {
        reason: String,
    },
}

/// What a MeshSync reconcile observes beyond the common facts.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshSyncFacts {
    pub broker: ResolvedBroker,
    /// Where the MeshSync process reads its watch-list from.
    pub watch_list: WatchListSource,
    /// Copied to `status.publishing-to`.
    pub publishing_to: Option<String>,
    pub connection: BrokerConnection,
    /// How long the broker may show no MeshSync connection before the MeshSync is Degraded: rides
    /// out a MeshSync restart or a broker pod move.
    pub grace: SignedDuration,
}

impl MeshSyncFacts {
    /// Whether the broker has shown no MeshSync connection for longer than the grace period at
    /// `now`: the MeshSync is Degraded, and the opt-in restart is due.
    pub fn disconnected_past_grace(&self, now: &Time) -> bool {
        match &self.connection {
            BrokerConnection::Missing { since, .. } => failing_for(since, self.grace, now).0,
            _ => false,
        }
    }
}

/// How long a new MeshSync may go without a first status while its Broker rolls out.
pub const FIRST_STATUS_HOLD: SignedDuration = SignedDuration::from_secs(30);

/// Whether to write no status yet, and for how long at most: a MeshSync created together with its
/// Broker would first be `Pending` (waiting for the Broker), a status the next reconcile replaces
/// moments later — one status write per CR that says nothing the Broker's own status does not. So
/// while the CR has never had a status, its spec is valid and its native Broker exists and is
/// still rolling out (not Degraded), the first status waits, for at most `hold` after the CR was
/// created; the Broker turning Ready triggers the next reconcile. A missing or Degraded Broker, or
/// a wait past `hold`, is reported at once.
pub fn first_status_held(
    previous: Option<&MeshSyncStatus>,
    obs: &MeshSyncObservations,
    created: Option<&Time>,
    now: &Time,
    hold: SignedDuration,
) -> Option<SignedDuration> {
    let broker_rolling_out = matches!(
        obs.kind.broker,
        ResolvedBroker::Found {
            phase: None | Some(Phase::Pending | Phase::Deploying),
            ..
        }
    );
    if previous.is_some()
        || !obs.spec_errors.is_empty()
        || obs.apply != ApplyOutcome::NotAttempted
        || !broker_rolling_out
    {
        return None;
    }
    let remaining = hold - now.0.duration_since(created?.0);
    remaining.is_positive().then_some(remaining)
}

/// MeshSync's connection as its broker's monitoring endpoint (`/connz?subs=1`) shows it; the
/// `BrokerConnected` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerConnection {
    /// Not known: `reason` says why (checks off, the monitoring endpoint unreachable from the
    /// operator, nothing deployed yet). Never changes the phase: only a broker that answers can say
    /// MeshSync is gone.
    Unknown { reason: String },
    /// Connected and subscribed to Meshery Server's request subject.
    Connected,
    /// Missing (or not subscribed) without a break since `since`, the first such answer.
    Missing { since: Time, message: String },
}

/// Where MeshSync reads its watch-list: its releases read one fixed CR, whatever the name and
/// namespace of the CR it was deployed for; the `WatchListApplied` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchListSource {
    /// This CR is the one MeshSync reads.
    ThisCr,
    /// MeshSync reads [`WatchListSource::FIXED_NAMESPACE`]/[`WatchListSource::FIXED_NAME`], not
    /// this CR.
    FixedCr,
}

impl WatchListSource {
    /// The CR MeshSync's releases (v1.0.x, checked on v1.0.0's source and process) read their
    /// watch-list from, at start-up: `meshery/meshery-meshsync`, the Helm chart's.
    pub const FIXED_NAMESPACE: &str = "meshery";
    pub const FIXED_NAME: &str = "meshery-meshsync";

    /// Where MeshSync deployed for the MeshSync `namespace/name` reads its watch-list.
    pub fn for_cr(namespace: &str, name: &str) -> WatchListSource {
        if (namespace, name) == (Self::FIXED_NAMESPACE, Self::FIXED_NAME) {
            WatchListSource::ThisCr
        } else {
            WatchListSource::FixedCr
        }
    }
}

/// The broker a MeshSync publishes to, as resolved through the Broker CR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolvedBroker {
    /// `spec.broker.custom.url`: no Broker CR to wait for.
    Custom,
    NotFound {
        namespace: String,
        name: String,
    },
    /// The Broker CR and the phase its status reports (`None` before its first status).
    Found {
        namespace: String,
        name: String,
        phase: Option<Phase>,
    },
}

pub type BrokerObservations = Observations<BrokerFacts>;
pub type MeshSyncObservations = Observations<MeshSyncFacts>;

/// What `next` needs from a kind: how to read its previous status, what it waits for, and how to write
/// its status. Implemented by [`BrokerFacts`] and [`MeshSyncFacts`].
pub trait Kind {
    type Status;

    /// The parts of a previous status the lifecycle reads.
    fn previous(status: &Self::Status) -> Previous<'_>;
    /// Why this CR cannot proceed until another CR is Ready, if it cannot.
    fn waiting_for_broker(&self) -> Option<String>;
    /// The NATS probe's verdict once every child is current.
    fn probe(&self, now: &Time) -> Probe;
    /// The status to write, with the kind's own fields copied from the observations.
    fn status(&self, phase: Phase, generation: i64, conditions: Vec<Condition>) -> Self::Status;
    /// Conditions this kind writes beside the five every CR has.
    fn own_conditions(
        &self,
        _previous: &[Condition],
        _generation: i64,
        _now: &Time,
    ) -> Vec<Condition> {
        Vec::new()
    }
}

/// The parts of a previous status the lifecycle reads.
#[derive(Clone, Copy, Debug)]
pub struct Previous<'a> {
    /// `None` for a CR never given a status (or one written by the Go operator): treated as Pending.
    pub phase: Option<Phase>,
    pub observed_generation: Option<i64>,
    pub conditions: &'a [Condition],
}

/// A kind's verdict on its NATS probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing (more) to check; `note` goes into the Ready message.
    Passed {
        note: String,
    },
    Failing {
        past_grace: bool,
        message: String,
    },
    /// A MeshSync whose broker shows no MeshSync connection.
    Disconnected {
        past_grace: bool,
        message: String,
    },
}

/// The state machine: the status to write after observing `obs` at `now`, given the `previous` status.
/// Pure and deterministic — the same arguments give a byte-identical status — so the controller writes
/// only when the result differs from what is stored ([`super::status_equal_ignoring_time`]).
pub fn next<K: Kind>(previous: Option<&K::Status>, obs: &Observations<K>, now: Time) -> K::Status {
    let previous = previous.map(K::previous).unwrap_or(Previous {
        phase: None,
        observed_generation: None,
        conditions: &[],
    });
    let from = previous.phase.unwrap_or(Phase::Pending);
    let new_generation = previous.observed_generation != Some(obs.generation);
    let (situation, message) = assess(obs, new_generation, &now);
    let (phase, reason) = transition(from, situation);
    let message = match (situation, phase) {
        (Situation::RollingOut { .. }, Phase::Deploying) => rolling_out(obs).unwrap_or(message),
        _ => message,
    };
    let mut conditions = conditions(
        phase,
        reason,
        &message,
        obs.generation,
        previous.conditions,
        &now,
    );
    conditions.extend(
        obs.kind
            .own_conditions(previous.conditions, obs.generation, &now),
    );
    obs.kind.status(phase, obs.generation, conditions)
}

/// The observations reduced to what decides the next phase. Checked in declaration order; the first
/// that holds wins, so a more fundamental problem (an invalid spec) hides a consequence (children not
/// rolling out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Situation {
    /// The spec fails validation; `deployed` when children exist.
    InvalidSpec {
        deployed: bool,
    },
    /// A MeshSync's native Broker does not exist or is not Ready.
    WaitingForBroker,
    ImmutableFieldChanged,
    /// Apply failed; `deployed` when children exist.
    ApplyFailed {
        deployed: bool,
    },
    /// Nothing was applied for this generation.
    NotApplied,
    /// A child failed (a Deployment past its progress deadline).
    ProgressDeadlineExceeded,
    /// Some child is not current, or none is observed yet; `new_generation` when the previous status
    /// described an older generation.
    RollingOut {
        new_generation: bool,
    },
    /// Every child current, NATS handshake failing.
    NatsFailing {
        past_grace: bool,
    },
    /// Every child current, the broker shows no MeshSync connection.
    Disconnected {
        past_grace: bool,
    },
    /// Every child current and the NATS probe passed (or is off).
    Current {
        load_balancer_pending: bool,
    },
}

/// The transition table. `docs/lifecycle.md` shows it row for row; `tests/lifecycle_machine.rs` checks
/// that every transition `next` makes is a row there and that every row is reached.
fn transition(from: Phase, situation: Situation) -> (Phase, Reason) {
    use Phase::{Degraded, Deploying, Pending, Ready};
    use Situation as S;
    match (from, situation) {
        (_, S::InvalidSpec { deployed: false }) => (Pending, Reason::InvalidSpec),
        (_, S::InvalidSpec { deployed: true }) => (Degraded, Reason::InvalidSpec),
        (_, S::WaitingForBroker) => (Pending, Reason::WaitingForBroker),
        (_, S::ImmutableFieldChanged) => (Degraded, Reason::ImmutableFieldChanged),
        (_, S::ApplyFailed { deployed: false }) => (Pending, Reason::ApplyFailed),
        (_, S::ApplyFailed { deployed: true }) => (Degraded, Reason::ApplyFailed),
        (Pending, S::NotApplied) => (Pending, Reason::NotApplied),
        (Deploying | Ready | Degraded, S::NotApplied) => (Deploying, Reason::RollingOut),
        (_, S::ProgressDeadlineExceeded) => (Degraded, Reason::ProgressDeadlineExceeded),
        (Pending | Deploying, S::RollingOut { .. }) => (Deploying, Reason::RollingOut),
        (
            Ready | Degraded,
            S::RollingOut {
                new_generation: true,
            },
        ) => (Deploying, Reason::RollingOut),
        (
            Ready | Degraded,
            S::RollingOut {
                new_generation: false,
            },
        ) => (Degraded, Reason::WorkloadUnavailable),
        (_, S::NatsFailing { past_grace: true }) => (Degraded, Reason::BrokerUnreachable),
        (Pending | Deploying, S::NatsFailing { past_grace: false }) => {
            (Deploying, Reason::WaitingForNats)
        }
        (Ready, S::NatsFailing { past_grace: false }) => (Ready, Reason::Available),
        (Degraded, S::NatsFailing { past_grace: false }) => (Degraded, Reason::BrokerUnreachable),
        (_, S::Disconnected { past_grace: true }) => (Degraded, Reason::MeshSyncDisconnected),
        (Pending | Deploying, S::Disconnected { past_grace: false }) => {
            (Deploying, Reason::WaitingForNats)
        }
        (Ready, S::Disconnected { past_grace: false }) => (Ready, Reason::Available),
        (Degraded, S::Disconnected { past_grace: false }) => {
            (Degraded, Reason::MeshSyncDisconnected)
        }
        (
            _,
            S::Current {
                load_balancer_pending: false,
            },
        ) => (Ready, Reason::Available),
        (
            _,
            S::Current {
                load_balancer_pending: true,
            },
        ) => (Ready, Reason::LoadBalancerPending),
    }
}

/// Reduces the observations to a situation and the message every condition will carry.
fn assess<K: Kind>(obs: &Observations<K>, new_generation: bool, now: &Time) -> (Situation, String) {
    let deployed = !obs.children.is_empty();
    if !obs.spec_errors.is_empty() {
        let errors = join(obs.spec_errors.iter().map(ToString::to_string));
        let message = if deployed {
            format!("invalid spec (running children are left as they are): {errors}")
        } else {
            format!("invalid spec: {errors}")
        };
        return (Situation::InvalidSpec { deployed }, message);
    }
    if let Some(message) = obs.kind.waiting_for_broker() {
        return (Situation::WaitingForBroker, message);
    }
    match &obs.apply {
        ApplyOutcome::ImmutableFieldChanged { paths } => {
            let message = format!(
                "the spec change needs immutable fields to change ({}); revert it, or set \
                 spec.recreateOnImmutableChange to let the operator recreate the object",
                paths.join(", ")
            );
            return (Situation::ImmutableFieldChanged, message);
        }
        ApplyOutcome::Failed { message } => {
            return (
                Situation::ApplyFailed { deployed },
                format!("apply failed: {message}"),
            );
        }
        ApplyOutcome::NotAttempted => {
            return (
                Situation::NotApplied,
                format!("generation {} not applied yet", obs.generation),
            );
        }
        ApplyOutcome::Applied => {}
    }
    let failed = join(
        obs.children
            .iter()
            .filter_map(|(key, readiness)| match readiness {
                Readiness::Failed { message, .. } => Some(format!("{}: {message}", child(key))),
                _ => None,
            }),
    );
    if !failed.is_empty() {
        return (Situation::ProgressDeadlineExceeded, failed);
    }
    if !deployed {
        return (
            Situation::RollingOut { new_generation },
            "applied; no child observed yet".to_string(),
        );
    }
    let in_progress = join(
        obs.children
            .iter()
            .filter_map(|(key, readiness)| match readiness {
                Readiness::InProgress { message, .. } => Some(format!("{}: {message}", child(key))),
                _ => None,
            }),
    );
    if !in_progress.is_empty() {
        return (Situation::RollingOut { new_generation }, in_progress);
    }
    match obs.kind.probe(now) {
        Probe::Failing {
            past_grace,
            message,
        } => (Situation::NatsFailing { past_grace }, message),
        Probe::Disconnected {
            past_grace,
            message,
        } => (Situation::Disconnected { past_grace }, message),
        Probe::Passed { note } => {
            let pending = join(obs.children.iter().filter_map(
                |(key, readiness)| match readiness {
                    Readiness::LoadBalancerPending { message } => {
                        Some(format!("{}: {message}", child(key)))
                    }
                    _ => None,
                },
            ));
            let count = obs.children.len();
            let message = join([
                format!("all {count} children current"),
                note,
                pending.clone(),
            ]);
            (
                Situation::Current {
                    load_balancer_pending: !pending.is_empty(),
                },
                message,
            )
        }
    }
}

/// While Deploying, the message names the children still rolling out but not how far they got:
/// their progress (replica counts, which kstatus check is pending) changes several times in one
/// rollout, each change would be another status write, and the child's own status shows it. A
/// rollout that is stuck or lost (Degraded) gets the details.
fn rolling_out<K>(obs: &Observations<K>) -> Option<String> {
    let children: Vec<String> = obs
        .children
        .iter()
        .filter(|(_, readiness)| matches!(readiness, Readiness::InProgress { .. }))
        .map(|(key, _)| child(key))
        .collect();
    (!children.is_empty()).then(|| format!("rolling out: {}", children.join(", ")))
}

/// A child as messages name it: children share the CR's namespace, so kind and name say enough.
fn child(key: &ObjectKey) -> String {
    format!("{} {}", key.kind, key.name)
}

/// Whether a run of failures that began at `since` has outlasted `grace` at `now`, and the
/// `since … (grace period …)` words that say so.
fn failing_for(since: &Time, grace: SignedDuration, now: &Time) -> (bool, String) {
    let past_grace = now.0.duration_since(since.0) >= grace;
    let words = format!(
        "since {} (grace period {grace:#})",
        since.0.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    (past_grace, words)
}

/// Joins the non-empty parts with `; `.
fn join(parts: impl IntoIterator<Item = String>) -> String {
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Kind for BrokerFacts {
    type Status = BrokerStatus;

    fn previous(status: &BrokerStatus) -> Previous<'_> {
        Previous {
            phase: status.phase,
            observed_generation: status.observed_generation,
            conditions: &status.conditions,
        }
    }

    fn waiting_for_broker(&self) -> Option<String> {
        None
    }

    fn probe(&self, now: &Time) -> Probe {
        match &self.probe {
            NatsProbe::Ok => Probe::Passed {
                note: "NATS handshake succeeded".to_string(),
            },
            NatsProbe::Skipped { reason } => Probe::Passed {
                note: format!("NATS probe skipped: {reason}"),
            },
            NatsProbe::Failing { since, message } => {
                let (past_grace, since) = failing_for(since, self.grace, now);
                Probe::Failing {
                    past_grace,
                    message: format!("NATS handshake failing {since}: {message}"),
                }
            }
        }
    }

    fn status(&self, phase: Phase, generation: i64, conditions: Vec<Condition>) -> BrokerStatus {
        BrokerStatus {
            phase: Some(phase),
            observed_generation: Some(generation),
            conditions,
            endpoint: self.endpoint.clone(),
        }
    }
}

impl Kind for MeshSyncFacts {
    type Status = MeshSyncStatus;

    fn previous(status: &MeshSyncStatus) -> Previous<'_> {
        Previous {
            phase: status.phase,
            observed_generation: status.observed_generation,
            conditions: &status.conditions,
        }
    }

    fn waiting_for_broker(&self) -> Option<String> {
        match &self.broker {
            ResolvedBroker::Custom
            | ResolvedBroker::Found {
                phase: Some(Phase::Ready),
                ..
            } => None,
            ResolvedBroker::NotFound { namespace, name } => {
                Some(format!("Broker {namespace}/{name} not found"))
            }
            // The Broker's phase only when it failed: following its every step while it rolls out
            // would rewrite this status each time, and the Broker's own status tells that story.
            ResolvedBroker::Found {
                namespace,
                name,
                phase,
            } => {
                let failed = if *phase == Some(Phase::Degraded) {
                    " (it is Degraded)"
                } else {
                    ""
                };
                Some(format!(
                    "waiting for Broker {namespace}/{name} to become Ready{failed}"
                ))
            }
        }
    }

    fn probe(&self, now: &Time) -> Probe {
        let publishing = self
            .publishing_to
            .as_ref()
            .map(|url| format!("publishing to {url}"))
            .unwrap_or_default();
        match &self.connection {
            BrokerConnection::Missing { since, message } => {
                let (past_grace, since) = failing_for(since, self.grace, now);
                Probe::Disconnected {
                    past_grace,
                    message: format!(
                        "{message} {since}; MeshSync's pods may look Ready, but no events reach Meshery Server"
                    ),
                }
            }
            BrokerConnection::Connected => Probe::Passed {
                note: join([publishing, "connected and subscribed".to_string()]),
            },
            BrokerConnection::Unknown { .. } => Probe::Passed { note: publishing },
        }
    }

    fn own_conditions(
        &self,
        previous: &[Condition],
        generation: i64,
        now: &Time,
    ) -> Vec<Condition> {
        let (status, reason, message) = match &self.connection {
            BrokerConnection::Connected => (
                "True",
                "Subscribed",
                format!(
                    "the broker shows MeshSync connected and subscribed to {}",
                    crate::monitor::MESHSYNC_REQUEST_SUBJECT
                ),
            ),
            BrokerConnection::Missing { message, .. } => ("False", "NotConnected", message.clone()),
            BrokerConnection::Unknown { reason } => ("Unknown", "NotChecked", reason.clone()),
        };
        let (applied, applied_reason, applied_message) = match &self.watch_list {
            WatchListSource::ThisCr => (
                "True",
                "ReadFromThisCR",
                "MeshSync reads its watch-list from this CR".to_string(),
            ),
            WatchListSource::FixedCr => (
                "False",
                "ReadFromAnotherCR",
                format!(
                    "MeshSync reads its watch-list only from the MeshSync {namespace}/{name}, not from \
                     this one: it watches that CR's watch-list, or its built-in set when there is none \
                     (v1.0.0's built-in set names a resource it cannot parse and publishes nothing), \
                     while the RBAC rendered here grants only this CR's watch-list. Name this MeshSync \
                     {name} in namespace {namespace} for its watch-list to take effect",
                    namespace = WatchListSource::FIXED_NAMESPACE,
                    name = WatchListSource::FIXED_NAME,
                ),
            ),
        };
        vec![
            condition(
                BROKER_CONNECTED,
                status,
                reason,
                &message,
                generation,
                previous,
                now,
            ),
            condition(
                WATCH_LIST_APPLIED,
                applied,
                applied_reason,
                &applied_message,
                generation,
                previous,
                now,
            ),
        ]
    }

    fn status(&self, phase: Phase, generation: i64, conditions: Vec<Condition>) -> MeshSyncStatus {
        MeshSyncStatus {
            phase: Some(phase),
            observed_generation: Some(generation),
            conditions,
            publishing_to: self.publishing_to.clone(),
        }
    }
}
