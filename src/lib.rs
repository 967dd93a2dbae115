//! meshery-operator: deploys and runs Meshery's Broker (NATS) and MeshSync from two custom resources.
//!
//! The pure core (`api` validation, `render`, `diff`, `lifecycle`) never touches the network, a clock or
//! randomness; `controller` and `cli` are the I/O shell around it.

pub mod api;
pub mod cli;
pub mod controller;
pub mod diff;
pub mod doctor;
pub mod lifecycle;
pub mod migrate;
pub mod monitor;
pub mod object;
pub mod render;
