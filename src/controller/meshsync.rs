//! Reconciling a MeshSync: dereference (its native Broker through the Broker cache) → validate →
//! inputs → render → plan → apply → observe → lifecycle → status.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::apply::{ApplyOptions, apply_plan};
use super::context::{Context, now};
use super::error::Error;
use super::metrics::ControllerKind;
use super::observe::{after_apply, apply_outcome, owner_of, readiness_of};
use super::secrets::{first_user, read_secret, userinfo};
use crate::api::{
    Broker, BrokerSelection, MeshSync, MeshSyncStatus, Phase, parse_broker_url, validate_meshsync,
};
use crate::diff::plan;
use crate::lifecycle::{self, ApplyOutcome, MeshSyncFacts, MeshSyncObservations, next};
use crate::render::labels::FIELD_MANAGER;
use crate::render::{
    BrokerCredential, MeshSyncInputs, ResolvedBroker, broker_internal_endpoint, desired_meshsync,
};

#[instrument(skip_all, fields(meshsync = %meshsync.name_any(), namespace = meshsync.namespace().unwrap_or_default()))]
pub async fn reconcile(meshsync: Arc<MeshSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(ControllerKind::MeshSync);
    let owner = owner_of(&*meshsync)?;
    let observed = ctx.children.children_of(&owner.uid);
    let spec_errors = validate_meshsync(&meshsync);
    let mut apply = ApplyOutcome::NotAttempted;
    let mut current = observed.clone();
    let mut facts = MeshSyncFacts {
        broker: lifecycle::ResolvedBroker::Custom,
        publishing_to: None,
    };
    if spec_errors.is_empty() {
        let (resolved, broker) = resolve_broker(&meshsync, &ctx).await?;
        facts.broker = resolved;
        if let Some(broker) = broker {
            match broker {
                Err(message) => apply = ApplyOutcome::Failed { message },
                Ok(broker) => {
                    facts.publishing_to = Some(format!("{}://{}", broker.scheme, broker.address));
                    let inputs = MeshSyncInputs {
                        default_version: ctx.settings.meshsync_version.clone(),
                        broker,
                        crd_uid: ctx.meshsync_crd_uid.clone(),
                    };
                    let desired = desired_meshsync(&meshsync, &inputs);
                    let plan = plan(&desired, &observed, &owner, FIELD_MANAGER);
                    let options = ApplyOptions {
                        dry_run: ctx.settings.dry_run,
                        recreate_on_immutable_change: meshsync.spec.recreate_on_immutable_change,
                    };
                    let report =
                        apply_plan(&ctx.client, &plan, options, &ctx.own_writes, &ctx.metrics)
                            .await;
                    current = after_apply(&desired, observed, &report);
                    apply = apply_outcome(report.failure);
                }
            }
        }
    }
    let observations = MeshSyncObservations {
        generation: meshsync.meta().generation.unwrap_or_default(),
        spec_errors,
        apply,
        children: readiness_of(&current),
        kind: facts,
    };
    let status = next(meshsync.status.as_ref(), &observations, now());
    super::status::write_if_changed(
        &ctx,
        &*meshsync,
        meshsync.status.as_ref(),
        &status,
        |s: &MeshSyncStatus| (s.phase, &s.conditions),
    )
    .await?;
    Ok(super::broker::requeue_after(&ctx, status.phase))
}

/// What the MeshSync publishes to: the lifecycle's view (is the Broker there and Ready?) and, when
/// it can be deployed, the render's view (address and credential) — or a problem to report.
async fn resolve_broker(
    meshsync: &MeshSync,
    ctx: &Context,
) -> Result<
    (
        lifecycle::ResolvedBroker,
        Option<Result<ResolvedBroker, String>>,
    ),
    Error,
> {
    let own_namespace = meshsync.namespace().unwrap_or_default();
    let selections = meshsync.spec.broker_selections();
    match selections.first() {
        Some(BrokerSelection::Custom { url }) => {
            let resolved = parse_broker_url(url).map(|url| ResolvedBroker {
                scheme: url.scheme,
                address: format!("{}:{}", url.host, url.port),
                credential: url.userinfo.map_or(BrokerCredential::None, |userinfo| {
                    BrokerCredential::Copy { userinfo }
                }),
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
            let credential = broker_credential(&broker, &own_namespace, ctx).await?;
            let resolved = credential.map(|credential| ResolvedBroker {
                scheme: if broker.spec.tls_enabled() {
                    "tls".into()
                } else {
                    "nats".into()
                },
                address: broker_internal_endpoint(&broker),
                credential,
            });
            Ok((found, Some(resolved)))
        }
        None => Ok((lifecycle::ResolvedBroker::Custom, None)),
    }
}

/// How MeshSync authenticates to a native Broker: its token Secret directly when in the same
/// namespace, else a copy (Secrets cannot be referenced across namespaces).
async fn broker_credential(
    broker: &Broker,
    own_namespace: &str,
    ctx: &Context,
) -> Result<Result<BrokerCredential, String>, Error> {
    let broker_namespace = broker.namespace().unwrap_or_default();
    let secret = broker
        .spec
        .auth_secret_name()
        .map_or_else(|| format!("{}-auth", broker.name_any()), str::to_string);
    let Some(data) = read_secret(ctx, &broker_namespace, &secret).await? else {
        return Ok(Err(format!(
            "the broker's auth Secret {broker_namespace}/{secret} does not exist yet"
        )));
    };
    if let Some(token) = data.get("token") {
        return Ok(Ok(if broker_namespace == own_namespace {
            BrokerCredential::SecretKey {
                secret,
                key: "token".into(),
            }
        } else {
            BrokerCredential::Copy {
                userinfo: String::from_utf8_lossy(token).into_owned(),
            }
        }));
    }
    Ok(match data.get("users.json").and_then(|u| first_user(u)) {
        Some((user, password)) => Ok(BrokerCredential::Copy {
            userinfo: userinfo(&user, &password),
        }),
        None => Err(format!(
            "the broker's auth Secret {broker_namespace}/{secret} has neither token nor users.json"
        )),
    })
}
