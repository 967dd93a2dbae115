//! MeshSync's connection, asked of the broker it publishes to: one GET of the broker's
//! `/connz?subs=1`, reduced by the pure [`crate::monitor`] to "subscribed, connected, absent". A
//! broker that cannot be asked leaves the connection Unknown; only one that answers can say MeshSync
//! is gone. With `--restart-disconnected-meshsync`, a MeshSync gone past the grace period is
//! restarted the way `kubectl rollout restart` does it.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;

use super::context::{Context, now};
use super::error::Error;
use crate::api::MeshSync;
use crate::lifecycle::{BrokerConnection, MeshSyncFacts};
use crate::monitor::{CONNZ_PATH, Connz, MeshSyncOnBroker, meshsync_on_broker, monitoring_address};

/// The pod-template annotation a restart sets, as `kubectl rollout restart` sets its own.
pub const RESTARTED_AT_ANNOTATION: &str = "meshery.io/restartedAt";

/// The field manager of that annotation: not the operator's apply manager, so the operator's next
/// apply neither owns nor removes it.
const RESTART_MANAGER: &str = "meshery-operator-restart";

/// Reads `/connz?subs=1` from the monitoring endpoint at `address` (`host:port`).
pub async fn fetch_connz(address: &str, timeout: Duration) -> Result<Connz, String> {
    let uri: hyper::Uri = format!("http://{address}{CONNZ_PATH}")
        .parse()
        .map_err(|e| format!("monitoring address {address:?} is not usable: {e}"))?;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let read = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("cannot reach http://{address}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading http://{address}{CONNZ_PATH}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("http://{address}{CONNZ_PATH} answered {status}"));
        }
        serde_json::from_slice::<Connz>(&body)
            .map_err(|e| format!("http://{address}{CONNZ_PATH} is not a /connz answer: {e}"))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "http://{address} did not answer within {timeout:?}"
            ))
        })
}

/// The connection of `meshsync`, whose pods are rolled out, to the broker at `client_address`
/// (the address the operator can dial, `None` when it has none). Remembers since when it has been
/// missing.
pub(super) async fn observe(
    ctx: &Context,
    meshsync: &MeshSync,
    client_address: Option<&str>,
) -> BrokerConnection {
    let unknown = |reason: String| {
        forget(ctx, meshsync);
        BrokerConnection::Unknown { reason }
    };
    let Some(address) = client_address.and_then(monitoring_address) else {
        return unknown(
            "not checked: the operator has no address of the broker it can dial (outside the \
             cluster it needs the Broker's external endpoint)"
                .into(),
        );
    };
    let connz = match fetch_connz(&address, ctx.settings.probe_timeout).await {
        Ok(connz) => connz,
        Err(message) => {
            ctx.metrics.meshsync_connection_check("Unreachable");
            return unknown(format!(
                "not checked: the broker's monitoring endpoint cannot be read ({message})"
            ));
        }
    };
    let message = match meshsync_on_broker(&connz) {
        MeshSyncOnBroker::Subscribed => {
            ctx.metrics.meshsync_connection_check("Subscribed");
            forget(ctx, meshsync);
            return BrokerConnection::Connected;
        }
        MeshSyncOnBroker::ConnectedNotSubscribed => {
            ctx.metrics
                .meshsync_connection_check("ConnectedNotSubscribed");
            format!(
                "MeshSync is connected to the broker at {address} but not subscribed to {}",
                crate::monitor::MESHSYNC_REQUEST_SUBJECT
            )
        }
        MeshSyncOnBroker::Absent => {
            ctx.metrics.meshsync_connection_check("Absent");
            format!("the broker ({address}/connz) shows no MeshSync connection")
        }
    };
    let since = ctx
        .meshsync_missing_since
        .since(&meshsync.uid().unwrap_or_default());
    BrokerConnection::Missing { since, message }
}

/// Forgets since when `meshsync` has been missing (it is rolling out, or was restarted).
pub(super) fn forget(ctx: &Context, meshsync: &MeshSync) {
    ctx.meshsync_missing_since
        .clear(&meshsync.uid().unwrap_or_default());
}

/// With `--restart-disconnected-meshsync`: restarts MeshSync's Deployment when the broker has shown
/// no MeshSync for longer than the grace period, once per grace period (the missing clock starts
/// again), and says so in an Event.
pub(super) async fn restart_if_gone(
    ctx: &Context,
    meshsync: &MeshSync,
    deployment: &str,
    facts: &MeshSyncFacts,
) -> Result<(), Error> {
    if !ctx.settings.restart_disconnected_meshsync
        || ctx.settings.dry_run
        || !facts.disconnected_past_grace(&now())
    {
        return Ok(());
    }
    let BrokerConnection::Missing { since, message } = &facts.connection else {
        return Ok(());
    };
    let gone = (now().0 - since.0).get_seconds();
    let namespace = meshsync.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let stamp = now().0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}
    });
    api.patch(
        deployment,
        &PatchParams {
            field_manager: Some(RESTART_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| Error::Restart {
        object: format!("{namespace}/{deployment}"),
        source,
    })?;
    ctx.metrics
        .api_write("Deployment", super::metrics::WriteVerb::Patch);
    forget(ctx, meshsync);
    super::status::send_event(
        ctx,
        meshsync,
        EventType::Warning,
        "RestartedMeshSync",
        format!(
            "restarted Deployment {namespace}/{deployment} ({message} for {gone} s; \
             --restart-disconnected-meshsync is on)"
        ),
    )
    .await;
    Ok(())
}
