//! The operator's Prometheus metrics.
//!
//! The three `meshery_operator_reconcile*` names and their `controller` label are what existing
//! Meshery dashboards query (`meshery-compat.md`), so they are fixed; the rest follow the same
//! prefix. prometheus-client names a counter family without `_total` and appends it to the sample,
//! so the families below are registered without the suffix and exposed with it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::api::Phase;
use crate::controller::probe::{ProbeError, ProbeSuccess};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The two reconcilers; the label values are the lower-case ones the dashboards filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ControllerKind {
    Broker,
    MeshSync,
}

impl ControllerKind {
    pub const ALL: [ControllerKind; 2] = [ControllerKind::Broker, ControllerKind::MeshSync];

    pub fn as_str(self) -> &'static str {
        match self {
            ControllerKind::Broker => "broker",
            ControllerKind::MeshSync => "meshsync",
        }
    }
}

impl EncodeLabelValue for ControllerKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// What an API write did, for `meshery_operator_api_writes_total{verb}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteVerb {
    /// Server-side apply of a child.
    Apply,
    /// A merge or JSON patch, e.g. of a CR's status.
    Patch,
    /// A plain create, e.g. of an Event.
    Create,
    /// A prune, or the sweep of a deleted MeshSync's cluster-scoped RBAC.
    Delete,
}

impl EncodeLabelValue for WriteVerb {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            WriteVerb::Apply => "apply",
            WriteVerb::Patch => "patch",
            WriteVerb::Create => "create",
            WriteVerb::Delete => "delete",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: ControllerKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: ControllerKind,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: String,
    verb: WriteVerb,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    controller: ControllerKind,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    result: &'static str,
}

type DurationFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Reconciles take milliseconds when nothing drifted and seconds when a rollout is applied:
/// 5 ms doubling up to about 41 s.
fn reconcile_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// All of the operator's metrics. Cloning is cheap and every clone records into the same registry,
/// so each reconciler, the probe loop and the HTTP server can hold their own.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: DurationFamily,
    api_writes: Family<WriteLabels, Counter>,
    resources: Family<PhaseLabels, Gauge>,
    broker_probes: Family<ProbeLabels, Counter>,
    meshsync_connection_checks: Family<ProbeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("meshery_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Reconciles completed, successful or not",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            reconcile_errors.clone(),
        );
        let reconcile_duration = DurationFamily::new_with_constructor(reconcile_duration_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Time taken by a reconcile",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let api_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Writes sent to the Kubernetes API; zero in steady state",
            api_writes.clone(),
        );
        let resources = Family::<PhaseLabels, Gauge>::default();
        registry.register("resources", "Custom resources by phase", resources.clone());
        let broker_probes = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "broker_probe",
            "NATS probes of brokers, by result",
            broker_probes.clone(),
        );
        let meshsync_connection_checks = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "meshsync_connection_check",
            "Checks of MeshSync's connection on its broker's /connz, by result (Subscribed, \
             ConnectedNotSubscribed, Absent, Unreachable)",
            meshsync_connection_checks.clone(),
        );

        // Series that exist from the first scrape, so that rate() and "how many are Ready" queries
        // have a zero to start from instead of no data.
        for controller in ControllerKind::ALL {
            let labels = ControllerLabels { controller };
            let _ = reconciles.get_or_create(&labels);
            let _ = reconcile_duration.get_or_create(&labels);
            for phase in Phase::ALL {
                let _ = resources.get_or_create(&PhaseLabels {
                    controller,
                    phase: phase.as_str(),
                });
            }
        }

        Metrics {
            registry: Arc::new(registry),
            reconciles,
            reconcile_errors,
            reconcile_duration,
            api_writes,
            resources,
            broker_probes,
            meshsync_connection_checks,
        }
    }

    /// Starts timing a reconcile; when the returned guard is dropped (on every exit path of the
    /// reconcile, `?` included) the reconcile is counted and its duration observed.
    pub fn reconcile_started(&self, controller: ControllerKind) -> ReconcileTimer {
        ReconcileTimer {
            reconciles: self.reconciles.clone(),
            durations: self.reconcile_duration.clone(),
            controller,
            started: Instant::now(),
        }
    }

    /// Counts a failed reconcile. `error` is the variant name of the reconciler's error enum, so the
    /// label set stays small and stable.
    pub fn reconcile_failed(&self, controller: ControllerKind, error: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { controller, error })
            .inc();
    }

    /// Counts one write to the API server (`kind` as in the object, e.g. `StatefulSet`).
    pub fn api_write(&self, kind: &str, verb: WriteVerb) {
        self.api_writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                verb,
            })
            .inc();
    }

    /// Replaces the per-phase counts of one controller's resources. Phases missing from `counts`
    /// are set to zero, so a phase nobody is in any more does not keep its last value.
    pub fn set_phase_counts(&self, controller: ControllerKind, counts: &BTreeMap<Phase, i64>) {
        for phase in Phase::ALL {
            self.resources
                .get_or_create(&PhaseLabels {
                    controller,
                    phase: phase.as_str(),
                })
                .set(counts.get(&phase).copied().unwrap_or(0));
        }
    }

    /// Counts a probe outcome: `result` is `Success` or the [`ProbeError`] variant name.
    pub fn broker_probe(&self, outcome: &Result<ProbeSuccess, ProbeError>) {
        let result = match outcome {
            Ok(_) => "Success",
            Err(err) => err.label(),
        };
        self.broker_probes
            .get_or_create(&ProbeLabels { result })
            .inc();
    }

    /// Counts a probe that was not attempted (`--broker-probe off`, or no dialable endpoint yet).
    pub fn broker_probe_skipped(&self) {
        self.broker_probes
            .get_or_create(&ProbeLabels { result: "Skipped" })
            .inc();
    }

    /// Counts one look at MeshSync's connection on its broker's monitoring endpoint.
    pub fn meshsync_connection_check(&self, result: &'static str) {
        self.meshsync_connection_checks
            .get_or_create(&ProbeLabels { result })
            .inc();
    }

    /// The OpenMetrics text exposition of every metric, as served on `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Times one reconcile; see [`Metrics::reconcile_started`].
#[must_use = "the reconcile is recorded when this guard is dropped; dropping it at once records nothing useful"]
pub struct ReconcileTimer {
    reconciles: Family<ControllerLabels, Counter>,
    durations: DurationFamily,
    controller: ControllerKind,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let labels = ControllerLabels {
            controller: self.controller,
        };
        self.durations
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        self.reconciles.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_names_are_the_dashboard_names() {
        let metrics = Metrics::new();
        drop(metrics.reconcile_started(ControllerKind::Broker));
        metrics.reconcile_failed(ControllerKind::MeshSync, "ApplyFailed");
        let text = metrics.encode();
        for line in [
            r#"meshery_operator_reconcile_total{controller="broker"} 1"#,
            r#"meshery_operator_reconcile_total{controller="meshsync"} 0"#,
            r#"meshery_operator_reconcile_errors_total{controller="meshsync",error="ApplyFailed"} 1"#,
            r#"meshery_operator_reconcile_duration_seconds_count{controller="broker"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(!text.contains("_total_total"), "{text}");
    }

    #[test]
    fn phase_counts_reset_phases_that_are_gone() {
        let metrics = Metrics::new();
        metrics.set_phase_counts(
            ControllerKind::Broker,
            &BTreeMap::from([(Phase::Deploying, 2), (Phase::Ready, 1)]),
        );
        metrics.set_phase_counts(ControllerKind::Broker, &BTreeMap::from([(Phase::Ready, 3)]));
        let text = metrics.encode();
        assert!(
            text.contains(r#"meshery_operator_resources{controller="broker",phase="Deploying"} 0"#)
        );
        assert!(
            text.contains(r#"meshery_operator_resources{controller="broker",phase="Ready"} 3"#)
        );
    }
}
