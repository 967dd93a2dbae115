//! The lifecycle: child readiness by kstatus rules, the `Pending → Deploying → Ready ⇄ Degraded` state
//! machine, and the status conditions it writes. Pure: no client, no clock (`now` is an argument), no
//! randomness. The transition table, states and reason vocabulary are documented in `docs/lifecycle.md`.
//!
//! ```
//! use std::collections::BTreeMap;
//! use meshery_operator::lifecycle::{self, ApplyOutcome, BrokerFacts, NatsProbe, Observations};
//!
//! let now = "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap().into();
//! let obs = Observations {
//!     generation: 1,
//!     spec_errors: vec![],
//!     apply: ApplyOutcome::Applied,
//!     children: BTreeMap::new(), // child key → lifecycle::child_readiness(&observed)
//!     kind: BrokerFacts { probe: NatsProbe::Ok, grace: jiff::SignedDuration::from_secs(30), endpoint: None },
//! };
//! let status = lifecycle::next(None, &obs, now);
//! assert_eq!(status.phase, Some(meshery_operator::api::Phase::Deploying));
//! ```

mod conditions;
mod machine;
mod readiness;
mod reason;

pub use conditions::{
    BROKER_CONNECTED, DEGRADED, PROGRESSING, READY, RECONCILING, STALLED, TYPES,
    WATCH_LIST_APPLIED, status_equal_ignoring_time,
};
pub use machine::{
    ApplyOutcome, BrokerConnection, BrokerFacts, BrokerObservations, FIRST_STATUS_HOLD, Kind,
    MeshSyncFacts, MeshSyncObservations, NatsProbe, Observations, Previous, Probe, ResolvedBroker,
    WatchListSource, first_status_held, next,
};
pub use readiness::{Readiness, child_readiness, reasons as readiness_reasons};
pub use reason::Reason;
