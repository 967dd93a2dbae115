//! kube-sim: a simulated Kubernetes API server for tests, benchmarks and local runs.

pub mod list_keys;
pub mod ssa;
