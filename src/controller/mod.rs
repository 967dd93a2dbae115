//! The I/O shell around the pure core: watches, server-side apply, the NATS probe, status writes.

mod adopt;
mod apply;
mod broker;
mod caches;
pub mod connection;
mod context;
mod error;
mod events;
mod go_operator;
pub mod health;
mod kinds;
mod meshsync;
pub mod metrics;
mod observe;
pub mod probe;
mod run;
mod secrets;
mod status;
mod sweep;
pub mod token;

pub use apply::api_for;
pub use caches::{managed_selector, with_type};
pub use context::{ApplyStrategy, BrokerProbeMode, Settings};
pub use error::Error;
pub use kinds::{CHILD_KINDS, ChildKind};
pub use run::{
    LEASE_NAME, LeaderElection, RunError, RunOptions, run, run_with_strategy, shutdown_signal,
};
