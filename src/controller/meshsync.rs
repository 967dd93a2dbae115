//! Reconciling a MeshSync: dereference (its native Broker through the Broker cache) → validate →
//! inputs → render → plan → apply → observe → lifecycle → status.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::adopt::{clear_way_for_meshsync, finish_meshsync};
use super::connection;
use super::context::{BrokerProbeMode, Context, now};
use super::error::Error;
use super::go_operator::Gate;
use super::metrics::ControllerKind;
use super::observe::{converge, owner_of, readiness_of};
use super::probe::probe_address;
use super::secrets::{broker_tls_ca, read_secret};
use crate::api::{
    Broker, BrokerSelection, MeshSync, MeshSyncStatus, Phase, parse_broker_url, validate_meshsync,
};
use crate::lifecycle::{
    self, ApplyOutcome, BrokerConnection, MeshSyncFacts, MeshSyncObservations, WatchListSource,
    next,
};
use crate::render::credentials::{
    BrokerSecretData, credential_readable_by, resolve_custom_broker, resolve_native_broker,
};
use crate::render::{MeshSyncInputs, ResolvedBroker, broker_auth_secret_name, desired_meshsync};

/// While a new MeshSync's first status waits for its Broker, how often it looks again (the Broker
/// turning Ready triggers a reconcile at once; this only bounds a missed trigger).
const HELD_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

#[instrument(skip_all, fields(meshsync = %meshsync.name_any(), namespace = meshsync.namespace().unwrap_or_default()))]
pub async fn reconcile(meshsync: Arc<MeshSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Gate::StandAside(after) = ctx.go_operator.gate() {
        return Ok(Action::requeue(after));
    }
    let _timer = ctx.metrics.reconcile_started(ControllerKind::MeshSync);
    let owner = owner_of(&*meshsync)?;
    let observed = ctx.children.children_of(&owner.uid);
    let spec_errors = validate_meshsync(&meshsync);
    let mut apply = ApplyOutcome::NotAttempted;
    let mut adopted = None;
    let mut current = observed.clone();
    let mut facts = MeshSyncFacts {
        broker: lifecycle::ResolvedBroker::Custom,
        watch_list: WatchListSource::for_cr(
            &meshsync.namespace().unwrap_or_default(),
            &meshsync.name_any(),
        ),
        publishing_to: None,
        connection: BrokerConnection::Unknown {
            reason: "not checked: MeshSync is not deployed".into(),
        },
        grace: jiff::SignedDuration::try_from(ctx.settings.meshsync_connection_grace)
            .unwrap_or(jiff::SignedDuration::from_secs(150)),
    };
    let mut dialable = None;
    let mut deployment = None;
    if spec_errors.is_empty() {
        let (resolved, broker) = resolve_broker(&meshsync, &ctx).await?;
        facts.broker = resolved;
        if let Some(broker) = broker {
            let version = meshsync
                .spec
                .version
                .as_deref()
                .unwrap_or(&ctx.settings.meshsync_version);
            let broker = broker.and_then(|(resolved, address)| {
                credential_readable_by(version, &resolved).map(|()| (resolved, address))
            });
            match broker {
                Err(message) => apply = ApplyOutcome::Failed { message },
                Ok((broker, address)) => {
                    dialable = address;
                    facts.publishing_to = Some(format!("{}://{}", broker.scheme, broker.address));
                    let inputs = MeshSyncInputs {
                        default_version: ctx.settings.meshsync_version.clone(),
                        broker,
                        crd_uid: ctx.meshsync_crd_uid.clone(),
                    };
                    let desired = desired_meshsync(&meshsync, &inputs);
                    deployment = desired
                        .iter()
                        .find(|o| o.kind() == "Deployment")
                        .map(|o| o.name().to_string());
                    adopted = clear_way_for_meshsync(&ctx, &meshsync).await?;
                    (current, apply) = converge(
                        &ctx,
                        &owner,
                        &desired,
                        observed,
                        meshsync.spec.recreate_on_immutable_change,
                    )
                    .await;
                }
            }
        }
    }
    let applied = apply == ApplyOutcome::Applied;
    let children = readiness_of(&current);
    let checks_on = ctx.settings.broker_probe != BrokerProbeMode::Off;
    let rolled_out = applied && !children.is_empty() && children.values().all(|r| r.is_current());
    if !checks_on {
        facts.connection = BrokerConnection::Unknown {
            reason: "not checked: the operator runs with --broker-probe off".into(),
        };
    } else if rolled_out {
        facts.connection = connection::observe(&ctx, &meshsync, dialable.as_deref()).await;
    } else {
        // A rollout starts the clock again: new pods need their own time to connect.
        connection::forget(&ctx, &meshsync);
    }
    if let Some(deployment) = &deployment {
        connection::restart_if_gone(&ctx, &meshsync, deployment, &facts).await?;
    }
    let observations = MeshSyncObservations {
        generation: meshsync.meta().generation.unwrap_or_default(),
        spec_errors,
        apply,
        children,
        kind: facts,
    };
    let now = now();
    if let Some(hold) = lifecycle::first_status_held(
        meshsync.status.as_ref(),
        &observations,
        meshsync.metadata.creation_timestamp.as_ref(),
        &now,
        lifecycle::FIRST_STATUS_HOLD,
    ) {
        return Ok(Action::requeue(hold.unsigned_abs().min(HELD_RECHECK)));
    }
    let status = next(meshsync.status.as_ref(), &observations, now);
    let watch_list_warning = watch_list_turned_false(meshsync.status.as_ref(), &status);
    let written =
        super::status::write_if_changed(&ctx, &*meshsync, meshsync.status.as_ref(), &status)
            .await?;
    if let Some(message) = watch_list_warning.filter(|_| written) {
        super::status::send_event(
            &ctx,
            &*meshsync,
            EventType::Warning,
            "WatchListNotApplied",
            message,
        )
        .await;
    }
    if let Some(removed) = adopted.filter(|_| applied) {
        finish_meshsync(&ctx, &meshsync, &removed).await?;
    }
    Ok(super::broker::requeue_after(&ctx, status.phase, checks_on))
}

/// The `WatchListApplied` condition's message when it turns False with this status (or is False in
/// the first status): worth a Warning Event, once.
fn watch_list_turned_false(old: Option<&MeshSyncStatus>, new: &MeshSyncStatus) -> Option<String> {
    let find = |conditions: &[Condition]| {
        conditions
            .iter()
            .find(|c| c.type_ == lifecycle::WATCH_LIST_APPLIED)
            .cloned()
    };
    let new = find(&new.conditions).filter(|c| c.status == "False")?;
    let was_false = old
        .and_then(|old| find(&old.conditions))
        .is_some_and(|c| c.status == "False");
    (!was_false).then_some(new.message)
}

/// What the MeshSync publishes to: the lifecycle's view (is the Broker there and Ready?) and, when
/// it can be deployed, the render's view (address and credential) with the broker address the
/// operator itself can dial — or a problem to report.
async fn resolve_broker(
    meshsync: &MeshSync,
    ctx: &Context,
) -> Result<
    (
        lifecycle::ResolvedBroker,
        Option<Result<(ResolvedBroker, Option<String>), String>>,
    ),
    Error,
> {
    let own_namespace = meshsync.namespace().unwrap_or_default();
    let selections = meshsync.spec.broker_selections();
    match selections.first() {
        Some(BrokerSelection::Custom { url }) => {
            let resolved = parse_broker_url(url).map(|url| {
                let broker = resolve_custom_broker(&url);
                let address = broker.address.clone();
                (broker, Some(address))
            });
            Ok((lifecycle::ResolvedBroker::Custom, Some(resolved)))
        }
        Some(BrokerSelection::Native { name, namespace }) => {
            let namespace = namespace.unwrap_or(&own_namespace).to_string();
            let Some(broker) = ctx
                .brokers
                .get(&ObjectRef::<Broker>::new(name).within(&namespace))
            else {
                return Ok((
                    lifecycle::ResolvedBroker::NotFound {
                        namespace,
                        name: name.to_string(),
                    },
                    None,
                ));
            };
            let phase = broker.status.as_ref().and_then(|s| s.phase);
            let found = lifecycle::ResolvedBroker::Found {
                namespace: namespace.clone(),
                name: name.to_string(),
                phase,
            };
            if phase != Some(Phase::Ready) {
                return Ok((found, None));
            }
            let dialable = broker
                .status
                .as_ref()
                .and_then(|s| s.endpoint.as_ref())
                .and_then(|endpoint| {
                    probe_address(
                        &endpoint.internal,
                        &endpoint.external,
                        ctx.settings.in_cluster,
                    )
                });
            let secret = broker_auth_secret_name(&broker);
            let tls_ca = broker_tls_ca(ctx, &broker).await?;
            let resolved = match read_secret(ctx, &namespace, &secret).await? {
                Some(data) => resolve_native_broker(
                    &broker,
                    &own_namespace,
                    BrokerSecretData::from_map(&data.data, &data.revision),
                    tls_ca.as_deref(),
                )
                .map(|resolved| (resolved, dialable)),
                None => Err(format!(
                    "the broker's auth Secret {namespace}/{secret} does not exist yet"
                )),
            };
            Ok((found, Some(resolved)))
        }
        None => Ok((lifecycle::ResolvedBroker::Custom, None)),
    }
}
