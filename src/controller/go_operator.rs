//! Not fighting the Go Meshery Operator. Its Lease is watched (one watch, no polling); while a
//! live holder renews it the reconcilers stand aside — a log line and a Warning Event on the Lease
//! when that starts, `/readyz` failing with the reason — and every CR is picked up once it stops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use tracing::{info, warn};

use super::context::Context;
use super::health::HealthState;
use super::status::send_event;
use crate::migrate::{GO_LEASE_NAME, GoOperator, go_operator_state};

/// What the watch has seen of the Go operator's Lease.
#[derive(Clone, Debug)]
enum Seen {
    /// The first listing has not finished: whether the Go operator runs is not known yet.
    NotYet,
    Listed(Option<Box<Lease>>),
    /// The Lease cannot be read (no RBAC for it): the Go operator is assumed gone, and a warning says so.
    Unreadable,
}

/// The Go operator's Lease as last seen; cheap to clone, shared by the watch and the reconcilers.
#[derive(Clone, Debug)]
pub struct GoOperatorLease {
    namespace: String,
    seen: Arc<Mutex<Seen>>,
}

/// What a reconcile does about the Go operator.
pub enum Gate {
    Reconcile,
    /// Come back later: the Go operator runs, or its Lease has not been listed yet.
    StandAside(Duration),
}

impl GoOperatorLease {
    pub fn new(namespace: &str) -> GoOperatorLease {
        GoOperatorLease {
            namespace: namespace.into(),
            seen: Arc::new(Mutex::new(Seen::NotYet)),
        }
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
    }

    /// The Go operator's state now; `None` before the Lease was listed.
    fn state(&self) -> Option<GoOperator> {
        match self.seen() {
            Seen::NotYet => None,
            Seen::Listed(lease) => {
                Some(go_operator_state(lease.as_deref(), jiff::Timestamp::now()))
            }
            Seen::Unreadable => Some(GoOperator::NotRunning),
        }
    }

    pub fn gate(&self) -> Gate {
        match self.state() {
            None => Gate::StandAside(Duration::from_secs(1)),
            Some(GoOperator::Running { .. }) => Gate::StandAside(Duration::from_secs(5)),
            Some(GoOperator::NotRunning) => Gate::Reconcile,
        }
    }

    /// Keeps the last-seen Lease current until the stream ends (never, but for shutdown).
    pub async fn watch(self, client: Client) {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={GO_LEASE_NAME}"));
        let mut listing: Option<Option<Box<Lease>>> = None;
        let mut events = watcher(api, config).boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => listing = Some(None),
                Ok(watcher::Event::InitApply(lease)) => listing = Some(Some(Box::new(lease))),
                Ok(watcher::Event::InitDone) => self.set(Seen::Listed(listing.take().flatten())),
                Ok(watcher::Event::Apply(lease)) => self.set(Seen::Listed(Some(Box::new(lease)))),
                Ok(watcher::Event::Delete(_)) => self.set(Seen::Listed(None)),
                Err(e) => {
                    if matches!(self.seen(), Seen::NotYet) {
                        warn!(
                            namespace = %self.namespace,
                            lease = GO_LEASE_NAME,
                            error = %e,
                            "cannot watch the Go Meshery Operator's Lease (grant list/watch on it); reconciling as if it were not running"
                        );
                        self.set(Seen::Unreadable);
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    /// Reports changes of the Go operator's state every two seconds (its Lease expires with time,
    /// not with an event): in the log, in `/readyz`, and as an Event on its Lease.
    pub async fn report(self, ctx: Arc<Context>, health: HealthState) {
        let mut last: Option<GoOperator> = None;
        loop {
            let state = self.state();
            if state.is_some() && state != last {
                match &state {
                    Some(GoOperator::Running { holder }) => {
                        let note = format!(
                            "the Go Meshery Operator ({holder}) holds Lease {}/{GO_LEASE_NAME}: not reconciling until it stops (see the README's migration section)",
                            self.namespace
                        );
                        warn!("{note}");
                        health.set_go_operator(Some(note.clone()));
                        self.publish(&ctx, EventType::Warning, "GoOperatorRunning", note)
                            .await;
                    }
                    Some(GoOperator::NotRunning) => {
                        health.set_go_operator(None);
                        if last.is_some() {
                            let note = "the Go Meshery Operator stopped: reconciling, and adopting the CRs it managed".to_string();
                            info!("{note}");
                            self.publish(&ctx, EventType::Normal, "GoOperatorStopped", note)
                                .await;
                        }
                    }
                    None => {}
                }
                last = state;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn publish(&self, ctx: &Context, type_: EventType, reason: &str, note: String) {
        let Seen::Listed(Some(lease)) = self.seen() else {
            return;
        };
        send_event(ctx, &*lease, type_, reason, note).await;
    }
}
