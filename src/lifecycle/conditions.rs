//! The five conditions derived from a phase and its reason (and a MeshSync's `BrokerConnected`), following the Kubernetes API conventions
//! and kstatus.
//!
//! All five are always written, `False` included: the API conventions ask controllers to publish the
//! conditions they own so users can tell "not true" from "not reported", and kstatus only reacts to
//! `Reconciling=True` / `Stalled=True`, so their `False` forms are harmless to it. Exactly one of
//! `Ready`, `Reconciling` and `Stalled` is `True`, which is what kstatus (Flux, Argo CD, `kstatus wait`)
//! maps to Current, InProgress and Failed. Conditions of any other type (the Go operator's `Processing`
//! and `Failed`) are dropped: they were never cleared and would contradict ours.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;
use serde_json::Value;

use super::Reason;
use crate::api::Phase;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// A MeshSync's connection to its broker, as the broker's monitoring endpoint shows it.
pub const BROKER_CONNECTED: &str = "BrokerConnected";
/// Whether the MeshSync process reads this CR's watch-list (MeshSync reads one fixed CR's).
pub const WATCH_LIST_APPLIED: &str = "WatchListApplied";

/// The condition types the operator owns, in the order it writes them.
pub const TYPES: [&str; 5] = [READY, PROGRESSING, DEGRADED, RECONCILING, STALLED];

/// The API server rejects condition messages longer than this (characters).
const MAX_MESSAGE: usize = 32768;

/// The conditions for `phase` reached for `reason`. Each carries the same reason and message — they
/// describe one situation from five angles — and `lastTransitionTime` is copied from `previous` unless
/// that condition's status changes, when it becomes `now`.
pub(crate) fn conditions(
    phase: Phase,
    reason: Reason,
    message: &str,
    generation: i64,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let stalled = reason.is_stalled();
    let statuses = [
        phase == Phase::Ready,
        phase == Phase::Deploying,
        phase == Phase::Degraded,
        phase != Phase::Ready && !stalled,
        stalled,
    ];
    TYPES
        .iter()
        .zip(statuses)
        .map(|(type_, status)| {
            condition(
                type_,
                if status { "True" } else { "False" },
                reason.as_str(),
                message,
                generation,
                previous,
                now,
            )
        })
        .collect()
}

/// One condition; its `lastTransitionTime` is copied from `previous` unless its status changes.
pub(crate) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| whole_seconds(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: bounded(message),
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// The API server stores condition times to the second; truncating here makes the status we compute
/// identical to the one we read back, so a re-read never looks like a change.
fn whole_seconds(now: &Time) -> Time {
    let second = now.0.as_second();
    Time(jiff::Timestamp::from_second(second).expect("truncating a valid timestamp stays in range"))
}

fn bounded(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE - 1).collect();
    cut.push('…');
    cut
}

/// Whether two statuses say the same thing, ignoring every condition's `lastTransitionTime`. The
/// controller writes status only when this is false, so a steady state costs no API writes even if a
/// time was re-read at a different precision.
pub fn status_equal_ignoring_time<S: Serialize>(a: &S, b: &S) -> bool {
    without_times(a) == without_times(b)
}

fn without_times<S: Serialize>(status: &S) -> Value {
    let mut value = serde_json::to_value(status).expect("status types always serialise");
    if let Some(conditions) = value.get_mut("conditions").and_then(Value::as_array_mut) {
        for condition in conditions {
            if let Some(condition) = condition.as_object_mut() {
                condition.remove("lastTransitionTime");
            }
        }
    }
    value
}
