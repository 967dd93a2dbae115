//! Wiring: caches, triggers, both controllers, the sweep, health and metrics, leader election and
//! graceful shutdown — everything `meshery-operator run` starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::apply::OwnWrites;
use super::caches::{ChildCaches, Triggers, WatchBackoff};
use super::context::{ApplyStrategy, Context, Settings};
use super::error::Error;
use super::events::EventRecorder;
use super::go_operator::GoOperatorLease;
use super::health::{HealthState, Leadership, serve_all};
use super::metrics::{ControllerKind, Metrics};
use super::sweep::sweep_orphaned_cluster_children;
use super::{broker, meshsync};
use crate::api::{Broker, BrokerSelection, MeshSync};
use tokio_util::sync::CancellationToken;

/// Everything `run` needs beyond the reconcile settings.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub settings: Settings,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    /// Hold a Lease before reconciling, so only one of several replicas acts.
    pub leader_election: Option<LeaderElection>,
    /// How many CRs of each kind are reconciled at once.
    pub concurrency: u16,
}

pub use crate::api::LEASE_NAME;

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("serving health and metrics: {0}")]
    Serve(std::io::Error),
    #[error("leader election: {0}")]
    LeaderElection(String),
    #[error("lost the leader lease; exiting so a new leader can take over")]
    LostLeadership,
}

/// Runs both controllers until `shutdown` resolves (the CLI passes SIGTERM/SIGINT) or leadership is lost.
pub async fn run(
    client: Client,
    options: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), RunError> {
    run_with_strategy(client, options, ApplyStrategy::Diff, shutdown).await
}

/// [`run`] with another way of writing children and status (the hidden `--apply-strategy` flag,
/// for benchmarks only).
pub async fn run_with_strategy(
    client: Client,
    options: RunOptions,
    apply_strategy: ApplyStrategy,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let health = HealthState::new(options.leader_election.is_some(), WATCH_FAILURE_THRESHOLD);
    let stop_serving = CancellationToken::new();
    let servers = serve_all(
        options.metrics_addr,
        options.health_addr,
        metrics.clone(),
        health.clone(),
        stop_serving.clone(),
    )
    .await
    .map_err(RunError::Serve)?;

    // Polled from the start, so that a standby replica stops on SIGTERM too.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown) as ShutdownFuture);
    let mut leadership = None;
    if let Some(election) = &options.leader_election {
        health.set_leadership(Leadership::StandingBy);
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &election.lease_name)
                .with_namespace(&election.namespace)
                .with_identity(&election.identity)
                .with_field_manager(crate::render::labels::FIELD_MANAGER)
                .build()
                .await
                .map_err(|e| RunError::LeaderElection(e.to_string()))?;
        let (mut leading, task) = manager.watch().await;
        info!(lease = %election.lease_name, "waiting to become the leader");
        while !*leading.borrow_and_update() {
            tokio::select! {
                () = shutdown.clone() => {
                    info!("stopped before becoming the leader");
                    release_lease(leading, task).await;
                    stop_serving.cancel();
                    for task in servers.tasks {
                        let _ = task.await;
                    }
                    return Ok(());
                }
                changed = leading.changed() => if changed.is_err() {
                    return Err(RunError::LeaderElection("the lease watch ended".into()));
                },
            }
        }
        info!("leading");
        health.set_leadership(Leadership::Leading);
        leadership = Some((leading, task));
    }

    let settings = options.settings.clone();
    let (brokers_api, meshsyncs_api): (Api<Broker>, Api<MeshSync>) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (broker_store, broker_writer) = reflector::store();
    let (meshsync_store, meshsync_writer) = reflector::store();
    let (broker_tx, broker_rx) = futures::channel::mpsc::unbounded();
    let (meshsync_tx, meshsync_rx) = futures::channel::mpsc::unbounded();
    let own_writes = Arc::new(OwnWrites::default());
    let triggers = Triggers {
        brokers: broker_tx,
        meshsyncs: meshsync_tx.clone(),
        meshsync_store: meshsync_store.clone(),
    };
    let (children, child_drivers) = ChildCaches::start(
        &client,
        settings.namespace.as_deref(),
        triggers,
        own_writes.clone(),
    );

    let meshsync_crd_uid = Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt("meshsyncs.meshery.io")
        .await
        .ok()
        .flatten()
        .and_then(|crd| crd.uid());
    let go_operator = GoOperatorLease::new(&settings.go_operator_namespace);
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: settings.clone(),
        children: children.clone(),
        brokers: broker_store.clone(),
        meshsyncs: meshsync_store.clone(),
        own_writes,
        metrics: metrics.clone(),
        recorder: EventRecorder::new(
            client.clone(),
            "meshery-operator",
            std::env::var("POD_NAME").ok(),
        ),
        probe_failing_since: Default::default(),
        meshsync_missing_since: Default::default(),
        meshsync_crd_uid,
        apply_strategy,
        go_operator: go_operator.clone(),
    });

    // A Broker's status change (it became Ready) or deletion re-reconciles the MeshSyncs that use
    // it; only spec changes (generation) re-reconcile the Broker itself.
    let watch_health = health.clone();
    // Any CR event may change a phase: the CRs-by-phase gauge is refreshed from the caches then.
    let phases_changed = Arc::new(Notify::new());
    let brokers_changed = phases_changed.clone();
    let meshsyncs_changed = phases_changed.clone();
    let meshsyncs_for_brokers = meshsync_store.clone();
    let meshsyncs_for_deleted_brokers = meshsync_store.clone();
    let deleted_broker_tx = meshsync_tx.clone();
    let broker_events = watcher(brokers_api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(forget_managed_fields)
        .inspect(move |event| {
            record_watch(&watch_health, "broker", event);
            if let Ok(watcher::Event::Delete(broker)) = event {
                for meshsync in meshsyncs_using(&meshsyncs_for_deleted_brokers, broker) {
                    let _ = deleted_broker_tx.unbounded_send(meshsync);
                }
            }
        })
        .reflect(broker_writer)
        .inspect(move |_| brokers_changed.notify_one())
        .applied_objects()
        .inspect(move |broker| {
            for meshsync in broker
                .iter()
                .flat_map(|b| meshsyncs_using(&meshsyncs_for_brokers, b))
            {
                let _ = meshsync_tx.unbounded_send(meshsync);
            }
        })
        .predicate_filter(predicates::generation, Default::default());

    let sweep_now = Arc::new(Notify::new());
    let deleted = sweep_now.clone();
    let watch_health = health.clone();
    let meshsync_events = watcher(meshsyncs_api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(forget_managed_fields)
        .inspect(move |event| {
            record_watch(&watch_health, "meshsync", event);
            if matches!(event, Ok(watcher::Event::Delete(_))) {
                deleted.notify_one();
            }
        })
        .reflect(meshsync_writer)
        .inspect(move |_| meshsyncs_changed.notify_one())
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

    let config = controller::Config::default()
        .concurrency(options.concurrency)
        .debounce(Duration::from_millis(200));
    let broker_controller = Controller::for_stream(broker_events, broker_store.clone())
        .with_config(config.clone())
        .reconcile_on(broker_rx)
        .graceful_shutdown_on(shutdown.clone())
        .run(broker::reconcile, error_policy::<Broker>, ctx.clone())
        .for_each(|_| future::ready(()));
    let meshsync_controller = Controller::for_stream(meshsync_events, meshsync_store.clone())
        .with_config(config)
        .reconcile_on(meshsync_rx)
        .graceful_shutdown_on(shutdown.clone())
        .run(meshsync::reconcile, error_policy::<MeshSync>, ctx.clone())
        .for_each(|_| future::ready(()));
    let drivers = stream::select_all(child_drivers).for_each(|_| future::ready(()));

    let housekeeping = housekeeping(ctx.clone(), sweep_now, phases_changed, health.clone());
    let go_operator_watch = go_operator.clone().watch(client.clone());
    let go_operator_report = go_operator.report(ctx.clone(), health.clone());
    let controllers = async {
        tokio::select! {
            () = broker_controller => {},
            () = meshsync_controller => {},
            () = drivers => {},
            () = housekeeping => {},
            () = go_operator_watch => {},
            () = go_operator_report => {},
        }
    };
    let lost_leadership = async {
        match &mut leadership {
            Some((leading, _)) => loop {
                if leading.changed().await.is_err() || !*leading.borrow() {
                    return;
                }
            },
            None => future::pending().await,
        }
    };
    let result = tokio::select! {
        () = controllers => Ok(()),
        () = lost_leadership => Err(RunError::LostLeadership),
    };
    info!("stopped reconciling");
    if let Some((leading, task)) = leadership {
        release_lease(leading, task).await;
    }
    stop_serving.cancel();
    for task in servers.tasks {
        let _ = task.await;
    }
    result
}

/// The CR caches drop `managedFields`: nothing reads them, and as `serde_json` trees they are most
/// of a cached CR's memory.
fn forget_managed_fields<K: kube::Resource>(cr: &mut K) {
    cr.meta_mut().managed_fields = None;
}

/// Stops taking part in leader election: closing the channel makes the lease task release the
/// Lease (when held) so a standby need not wait for it to expire; bounded, as shutdown must finish.
async fn release_lease(
    leading: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) {
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => info!("left leader election"),
        Ok(Ok(Err(e))) => warn!(error = %e, "could not release the leader lease"),
        Ok(Err(e)) => warn!(error = %e, "the leader-election task failed"),
        Err(_) => warn!("releasing the leader lease timed out"),
    }
}

/// Once the caches are complete: mark the operator ready, sweep orphans, then sweep again after
/// every MeshSync deletion and at every resync; refresh the CRs-by-phase gauge at each of those and
/// whenever a CR changed (so it follows phase changes within moments, not at the next resync).
async fn housekeeping(
    ctx: Arc<Context>,
    sweep_now: Arc<Notify>,
    phases_changed: Arc<Notify>,
    health: HealthState,
) {
    let ready = async {
        ctx.brokers.wait_until_ready().await.is_ok()
            && ctx.meshsyncs.wait_until_ready().await.is_ok()
            && ctx.children.wait_until_ready().await
    };
    if !ready.await {
        warn!("a cache stopped before its first listing; not sweeping");
        return future::pending().await;
    }
    health.set_caches_synced(true);
    info!("caches synced");
    let mut sweep = true;
    let mut next_resync = tokio::time::Instant::now() + ctx.settings.resync_interval;
    loop {
        if sweep {
            sweep_orphaned_cluster_children(&ctx).await;
        }
        refresh_phase_gauge(&ctx);
        sweep = tokio::select! {
            () = sweep_now.notified() => true,
            () = phases_changed.notified() => false,
            () = tokio::time::sleep_until(next_resync) => {
                next_resync = tokio::time::Instant::now() + ctx.settings.resync_interval;
                true
            },
        };
    }
}

fn refresh_phase_gauge(ctx: &Context) {
    let brokers = ctx.brokers.state();
    let meshsyncs = ctx.meshsyncs.state();
    ctx.metrics.set_phase_counts(
        ControllerKind::Broker,
        &count_phases(
            brokers
                .iter()
                .map(|b| b.status.as_ref().and_then(|s| s.phase)),
        ),
    );
    ctx.metrics.set_phase_counts(
        ControllerKind::MeshSync,
        &count_phases(
            meshsyncs
                .iter()
                .map(|m| m.status.as_ref().and_then(|s| s.phase)),
        ),
    );
}

/// How long a watch may keep failing before `/healthz` reports the operator unhealthy.
const WATCH_FAILURE_THRESHOLD: Duration = Duration::from_secs(120);

fn record_watch<T>(health: &HealthState, watch: &'static str, event: &Result<T, watcher::Error>) {
    match event {
        Ok(_) => health.record_watch_ok(watch),
        Err(error) => {
            health.record_watch_error(watch, std::time::Instant::now(), &error.to_string())
        }
    }
}

/// CRs per phase; those without a status yet count as Pending.
fn count_phases(
    phases: impl Iterator<Item = Option<crate::api::Phase>>,
) -> std::collections::BTreeMap<crate::api::Phase, i64> {
    let mut counts: std::collections::BTreeMap<_, _> =
        crate::api::Phase::ALL.into_iter().map(|p| (p, 0)).collect();
    for phase in phases {
        *counts.entry(phase.unwrap_or_default()).or_default() += 1;
    }
    counts
}

/// The MeshSyncs whose native broker is this Broker.
fn meshsyncs_using(
    meshsyncs: &reflector::Store<MeshSync>,
    broker: &Broker,
) -> Vec<ObjectRef<MeshSync>> {
    let broker_namespace = broker.namespace().unwrap_or_default();
    meshsyncs
        .state()
        .iter()
        .filter(|meshsync| {
            let own_namespace = meshsync.namespace().unwrap_or_default();
            meshsync
                .spec
                .broker_selections()
                .iter()
                .any(|selection| match selection {
                    BrokerSelection::Native { name, namespace } => {
                        *name == broker.name_any()
                            && namespace.unwrap_or(&own_namespace) == broker_namespace
                    }
                    BrokerSelection::Custom { .. } => false,
                })
        })
        .map(|meshsync| ObjectRef::from_obj(&**meshsync))
        .collect()
}

/// API failures are retried after a pause (not immediately: no hot loop against a struggling API server).
fn error_policy<K: Resource<DynamicType = ()> + Send + Sync + 'static>(
    cr: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let controller = if K::kind(&()) == "Broker" {
        ControllerKind::Broker
    } else {
        ControllerKind::MeshSync
    };
    ctx.metrics
        .reconcile_failed(controller, error.metric_label());
    error!(kind = %K::kind(&()), name = %cr.name_any(), namespace = cr.namespace().unwrap_or_default(), %error, "reconcile failed");
    let message = error.to_string();
    tokio::spawn(async move { super::status::publish_error(&ctx, &*cr, &message).await });
    Action::requeue(Duration::from_secs(10))
}

type ShutdownFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>;

/// Resolves on SIGTERM or SIGINT: how `meshery-operator run` is stopped.
pub async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                return future::pending().await;
            }
        };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
    }
}
