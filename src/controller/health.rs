//! `/metrics`, `/healthz` and `/readyz` over HTTP.
//!
//! Liveness and readiness answer different questions. `/healthz` fails only when restarting the
//! process could help: a watch that has kept failing past a threshold (a wedged client, expired
//! credentials). `/readyz` says whether this replica does its job: caches synced, and with leader
//! election a settled role — a standby replica is ready too, since being idle is its job; failing
//! it would make rollouts of a two-replica Deployment wait forever.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::controller::metrics::{CONTENT_TYPE, Metrics};

/// This replica's role in leader election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// `--leader-elect` is off: the replica always reconciles.
    Disabled,
    /// Leader election is on and its first attempt has not finished: the role is not known yet.
    Acquiring,
    /// Holds the Lease and reconciles.
    Leading,
    /// Another replica holds the Lease; this one waits to take over.
    StandingBy,
}

/// The facts `/healthz` and `/readyz` report on. Cloning is cheap and every clone shares the same
/// state, so the reconcilers and the leader elector each hold one and update it as things happen.
#[derive(Clone, Debug)]
pub struct HealthState {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    caches_synced: bool,
    leadership: Leadership,
    /// Why this replica stands aside for the Go Meshery Operator, while it does.
    go_operator: Option<String>,
    watch_failure_threshold: Duration,
    /// Per watch: when its current run of errors began, and the latest error.
    failing_watches: BTreeMap<&'static str, (Instant, String)>,
}

impl HealthState {
    /// `watch_failure_threshold` is how long a watch may keep failing before `/healthz` reports
    /// the process unhealthy; watches retry with back-off, so short outages must not restart it.
    pub fn new(leader_election: bool, watch_failure_threshold: Duration) -> Self {
        let leadership = if leader_election {
            Leadership::Acquiring
        } else {
            Leadership::Disabled
        };
        HealthState {
            inner: Arc::new(Mutex::new(Inner {
                caches_synced: false,
                leadership,
                go_operator: None,
                watch_failure_threshold,
                failing_watches: BTreeMap::new(),
            })),
        }
    }

    pub fn set_caches_synced(&self, synced: bool) {
        self.lock().caches_synced = synced;
    }

    pub fn set_leadership(&self, leadership: Leadership) {
        self.lock().leadership = leadership;
    }

    /// `Some(reason)` while the Go Meshery Operator runs and this replica does not reconcile.
    pub fn set_go_operator(&self, standing_aside: Option<String>) {
        self.lock().go_operator = standing_aside;
    }

    /// Records an error from the watch named `watch` (e.g. `"broker"`). The failure is counted
    /// from the first error of a run, so a watch erroring on every retry still ages past the
    /// threshold.
    pub fn record_watch_error(&self, watch: &'static str, at: Instant, error: &str) {
        let mut inner = self.lock();
        let entry = inner
            .failing_watches
            .entry(watch)
            .or_insert_with(|| (at, String::new()));
        entry.1 = error.to_string();
    }

    /// Records that the watch named `watch` delivered an event again, ending its run of errors.
    pub fn record_watch_ok(&self, watch: &'static str) {
        self.lock().failing_watches.remove(watch);
    }

    /// `Err` with the reason when some watch has been failing longer than the threshold.
    fn liveness(&self, now: Instant) -> Result<(), String> {
        let inner = self.lock();
        let threshold = inner.watch_failure_threshold;
        let stuck: Vec<String> = inner
            .failing_watches
            .iter()
            .filter_map(|(watch, (since, error))| {
                let failing_for = now.saturating_duration_since(*since);
                (failing_for > threshold).then(|| {
                    format!(
                        "the {watch} watch has been failing for {}s (threshold {}s): {error}",
                        failing_for.as_secs(),
                        threshold.as_secs()
                    )
                })
            })
            .collect();
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(stuck.join("\n"))
        }
    }

    /// `Err` with the reason until the caches are synced and the leadership role is settled.
    /// A standby is ready whatever its caches: it starts them only once it leads.
    fn readiness(&self) -> Result<(), String> {
        let inner = self.lock();
        if inner.leadership == Leadership::StandingBy {
            return Ok(());
        }
        if !inner.caches_synced {
            return Err("the watch caches have not synced yet".to_string());
        }
        if let Some(reason) = &inner.go_operator {
            return Err(reason.clone());
        }
        match inner.leadership {
            Leadership::Acquiring => {
                Err("leader election has not finished its first attempt".to_string())
            }
            Leadership::Disabled | Leadership::Leading | Leadership::StandingBy => Ok(()),
        }
    }

    /// The state is a handful of plain fields; a panic while holding the lock cannot leave them
    /// inconsistent, so a poisoned lock is used as is rather than taking the endpoints down.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Which endpoints one listener serves.
#[derive(Clone, Default)]
pub struct Endpoints {
    /// Serves `/metrics` when set.
    pub metrics: Option<Metrics>,
    /// Serves `/healthz` and `/readyz` when set.
    pub health: Option<HealthState>,
}

/// Binds `addr` and serves `endpoints` on it until `shutdown` is cancelled.
///
/// Binding happens before this returns, so a taken port fails `run` at start-up instead of in a
/// background task; the returned address is the bound one (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> io::Result<(SocketAddr, JoinHandle<io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let mut paths = Vec::new();
    let mut router = Router::new();
    if let Some(metrics) = endpoints.metrics {
        paths.push("/metrics");
        router = router.route(
            "/metrics",
            get(move || {
                let text = metrics.encode();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], text) }
            }),
        );
    }
    if let Some(health) = endpoints.health {
        paths.extend(["/healthz", "/readyz"]);
        let live = health.clone();
        router = router
            .route(
                "/healthz",
                get(move || {
                    let verdict = live.liveness(Instant::now());
                    async move { respond(verdict) }
                }),
            )
            .route(
                "/readyz",
                get(move || {
                    let verdict = health.readiness();
                    async move { respond(verdict) }
                }),
            );
    }
    tracing::info!(address = %local_addr, ?paths, "serving HTTP endpoints");
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok((local_addr, task))
}

/// Where the endpoints ended up, and the server tasks to await on shutdown.
#[derive(Debug)]
pub struct Serving {
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub tasks: Vec<JoinHandle<io::Result<()>>>,
}

/// Serves `/metrics` on `metrics_addr` and `/healthz` + `/readyz` on `health_addr`
/// (`--metrics-addr`, `--health-addr`); when both name the same address, one listener serves all
/// three, since a port can be bound only once.
pub async fn serve_all(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    metrics: Metrics,
    health: HealthState,
    shutdown: CancellationToken,
) -> io::Result<Serving> {
    if metrics_addr == health_addr {
        let endpoints = Endpoints {
            metrics: Some(metrics),
            health: Some(health),
        };
        let (addr, task) = serve(metrics_addr, endpoints, shutdown).await?;
        return Ok(Serving {
            metrics_addr: addr,
            health_addr: addr,
            tasks: vec![task],
        });
    }
    let metrics_only = Endpoints {
        metrics: Some(metrics),
        health: None,
    };
    let (metrics_addr, metrics_task) = serve(metrics_addr, metrics_only, shutdown.clone()).await?;
    let health_only = Endpoints {
        metrics: None,
        health: Some(health),
    };
    let (health_addr, health_task) = match serve(health_addr, health_only, shutdown).await {
        Ok(served) => served,
        Err(err) => {
            metrics_task.abort();
            return Err(err);
        }
    };
    Ok(Serving {
        metrics_addr,
        health_addr,
        tasks: vec![metrics_task, health_task],
    })
}

fn respond(verdict: Result<(), String>) -> impl IntoResponse {
    match verdict {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_errors_ages_from_its_first_error() {
        let health = HealthState::new(false, Duration::from_secs(60));
        let start = Instant::now();
        health.record_watch_error("broker", start, "first");
        health.record_watch_error("broker", start + Duration::from_secs(50), "latest");
        assert!(health.liveness(start + Duration::from_secs(59)).is_ok());
        let reason = health
            .liveness(start + Duration::from_secs(61))
            .unwrap_err();
        assert!(
            reason.contains("broker watch") && reason.contains("latest"),
            "{reason}"
        );
        health.record_watch_ok("broker");
        assert!(health.liveness(start + Duration::from_secs(600)).is_ok());
    }

    #[test]
    fn a_standby_is_ready_before_it_has_caches() {
        // The caches start only once this replica leads.
        let health = HealthState::new(true, Duration::from_secs(60));
        assert!(health.readiness().is_err());
        health.set_leadership(Leadership::StandingBy);
        assert_eq!(health.readiness(), Ok(()));
        health.set_leadership(Leadership::Leading);
        let reason = health.readiness().unwrap_err();
        assert!(reason.contains("caches"), "{reason}");
    }

    #[test]
    fn one_watch_recovering_does_not_hide_another() {
        let health = HealthState::new(false, Duration::from_secs(1));
        let start = Instant::now();
        health.record_watch_error("broker", start, "403");
        health.record_watch_error("meshsync", start, "403");
        health.record_watch_ok("meshsync");
        let reason = health.liveness(start + Duration::from_secs(5)).unwrap_err();
        assert!(
            reason.contains("broker") && !reason.contains("meshsync"),
            "{reason}"
        );
    }
}
