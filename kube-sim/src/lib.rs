//! kube-sim: a simulated Kubernetes API server for tests, benchmarks and local runs.
//!
//! It speaks the real HTTP API (JSON only) so that `kube::Client` and `kubectl` work against it.
//! Where it cannot match the real API server it answers with an error saying so (see README.md,
//! "Fidelity gaps"), never silently differently.

pub mod list_keys;
pub mod ssa;

mod admin;
mod api;
mod controllers;
pub mod crd;
pub mod defaults;
mod discovery;
pub mod errors;
pub mod events;
pub mod faults;
pub mod resources;
pub mod selectors;
mod sim;
pub mod smp;
mod store;
pub mod table;
mod typed;
pub mod util;

pub use faults::{Fault, FaultAction, RequestStats, WriteRecord};
pub use sim::{
    LoadBalancerMode, Readiness, Sim, SimOptions, anyhow_like::Error, anyhow_like::Result,
};
