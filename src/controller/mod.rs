//! The I/O shell around the pure core: talking to the broker, generating its token, and the
//! operator's own metrics and health endpoints.

pub mod health;
pub mod metrics;
pub mod probe;
pub mod token;
