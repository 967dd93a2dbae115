//! What a broker's NATS monitoring endpoint (`/connz?subs=1`) says about MeshSync. Pure: the
//! endpoint's JSON in, a verdict out. MeshSync's own `/readyz` stays 200 after its first connect and
//! its client gives up reconnecting after about two minutes, so only the broker can tell whether
//! events still flow.

use serde::Deserialize;

use crate::api::NATS_MONITOR_PORT;

/// The NATS connection name MeshSync v1.0.x gives its client (`pkg/lib/meshsync`), the only
/// client of that name a broker should see.
pub const MESHSYNC_CONNECTION_NAME: &str = "meshsync";

/// The subject MeshSync subscribes to for Meshery Server's requests (resync, log and exec
/// streams): a connection without it cannot be asked for anything.
pub const MESHSYNC_REQUEST_SUBJECT: &str = "meshery.meshsync.request";

/// The monitoring path and query the operator and `doctor` read.
pub const CONNZ_PATH: &str = "/connz?subs=1&limit=1024";

/// The part of nats-server's `/connz?subs=1` answer the checks read.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Connz {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub connections: Vec<Connection>,
}

/// One client connection.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Connection {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub subscriptions_list: Vec<String>,
}

/// Go encodes an empty slice it never allocated as `null`.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// What the broker shows of MeshSync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeshSyncOnBroker {
    /// Connected and subscribed to the request subject.
    Subscribed,
    /// Connected under MeshSync's name but not (yet) subscribed: it cannot receive requests.
    ConnectedNotSubscribed,
    /// No connection of MeshSync's.
    Absent,
}

/// MeshSync's state in a `/connz?subs=1` answer. Every MeshSync names its connection alike, so
/// with several publishing to one broker any one of them counts.
pub fn meshsync_on_broker(connz: &Connz) -> MeshSyncOnBroker {
    let ours = connz
        .connections
        .iter()
        .filter(|c| c.name == MESHSYNC_CONNECTION_NAME);
    let mut found = MeshSyncOnBroker::Absent;
    for connection in ours {
        if connection
            .subscriptions_list
            .iter()
            .any(|s| s.split_whitespace().next() == Some(MESHSYNC_REQUEST_SUBJECT))
        {
            return MeshSyncOnBroker::Subscribed;
        }
        found = MeshSyncOnBroker::ConnectedNotSubscribed;
    }
    found
}

/// The monitoring endpoint beside a broker client address (`host:4222` → `host:8222`), the way
/// MeshSync's own start-up check finds it. `None` for an address without a host.
pub fn monitoring_address(client_address: &str) -> Option<String> {
    let address = client_address.trim();
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => address,
    };
    (!host.is_empty()).then(|| format!("{host}:{NATS_MONITOR_PORT}"))
}
