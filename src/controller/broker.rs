//! Reconciling a Broker: dereference → validate → inputs → render → plan → apply → observe (children
//! and a NATS handshake) → lifecycle → status.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::adopt::{adopt_broker, go_broker_token};
use super::context::{BrokerProbeMode, Context, now};
use super::error::Error;
use super::go_operator::Gate;
use super::metrics::ControllerKind;
use super::observe::{converge, owner_of, readiness_of};
use super::probe::{ProbeAuth, ProbeTarget, ProbeTls, probe_address, probe_broker};
use super::secrets::{SecretData, broker_tls_ca, read_secret};
use super::token::generate_token;
use crate::api::{Broker, BrokerEndpoint, NATS_CLIENT_PORT, Phase, ServiceType, validate_broker};
use crate::lifecycle::{ApplyOutcome, BrokerFacts, BrokerObservations, NatsProbe, next};
use crate::object::Object;
use crate::render::{
    AuthKind, BrokerAuthInput, BrokerInputs, broker_internal_endpoint, desired_broker,
};

/// How a Broker's clients authenticate, as the probe needs it.
struct Credentials {
    auth: ProbeAuth,
}

#[instrument(skip_all, fields(broker = %broker.name_any(), namespace = broker.namespace().unwrap_or_default()))]
pub async fn reconcile(broker: Arc<Broker>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Gate::StandAside(after) = ctx.go_operator.gate() {
        return Ok(Action::requeue(after));
    }
    let _timer = ctx.metrics.reconcile_started(ControllerKind::Broker);
    let owner = owner_of(&*broker)?;
    let observed = ctx.children.children_of(&owner.uid);
    let spec_errors = validate_broker(&broker);
    let mut apply = ApplyOutcome::NotAttempted;
    let mut current = observed.clone();
    let mut credentials = None;
    if spec_errors.is_empty() {
        match inputs(&broker, &ctx).await? {
            Err(message) => apply = ApplyOutcome::Failed { message },
            Ok((inputs, creds)) => {
                let desired = desired_broker(&broker, &inputs);
                (current, apply) = converge(
                    &ctx,
                    &owner,
                    &desired,
                    observed,
                    broker.spec.recreate_on_immutable_change,
                )
                .await;
                credentials = Some(creds);
            }
        }
    }
    let children = readiness_of(&current);
    let ours_ready = credentials.is_some()
        && apply == ApplyOutcome::Applied
        && !children.is_empty()
        && children.values().all(|r| r.is_current());
    let endpoint = endpoints(&broker, &current, &ctx);
    let probe = match &credentials {
        Some(creds) if children.values().all(|r| r.is_current()) => {
            run_probe(&broker, &endpoint, creds, &ctx).await
        }
        _ => NatsProbe::Skipped {
            reason: "waiting for the broker's children".into(),
        },
    };
    let observations = BrokerObservations {
        generation: broker.meta().generation.unwrap_or_default(),
        spec_errors,
        apply,
        children,
        kind: BrokerFacts {
            probe,
            grace: SignedDuration::try_from(ctx.settings.probe_grace)
                .unwrap_or(SignedDuration::from_secs(30)),
            endpoint: Some(endpoint),
        },
    };
    let status = next(broker.status.as_ref(), &observations, now());
    super::status::write_if_changed(&ctx, &*broker, broker.status.as_ref(), &status).await?;
    adopt_broker(
        &ctx,
        &broker,
        ours_ready && status.phase == Some(Phase::Ready),
    )
    .await?;
    let probed = ctx.settings.broker_probe != BrokerProbeMode::Off;
    Ok(requeue_after(&ctx, status.phase, probed))
}

/// Converged CRs are checked again at the resync interval — a probed Broker at the probe interval
/// when that is sooner; others soon, so a failing probe's grace period or a pending LoadBalancer is
/// noticed without waiting for an event. A check that finds nothing changed writes nothing.
pub fn requeue_after(ctx: &Context, phase: Option<Phase>, probed: bool) -> Action {
    let resync = ctx.settings.resync_interval;
    match phase {
        Some(Phase::Ready) if probed => Action::requeue(ctx.settings.probe_interval.min(resync)),
        Some(Phase::Ready) => Action::requeue(resync),
        _ => Action::requeue(Duration::from_secs(5).min(resync)),
    }
}

/// The render inputs and probe credentials; `Ok(Err(message))` is a problem the user must fix
/// (a referenced Secret missing or malformed), reported in status rather than retried as an error.
async fn inputs(
    broker: &Broker,
    ctx: &Context,
) -> Result<Result<(BrokerInputs, Credentials), String>, Error> {
    let namespace = broker.namespace().unwrap_or_default();
    let (auth, probe_auth) = match broker.spec.auth_secret_name() {
        None => {
            let secret_name = format!("{}-auth", broker.name_any());
            let existing = read_secret(ctx, &namespace, &secret_name).await?;
            let token = match existing
                .as_ref()
                .and_then(|secret| secret.data.get("token"))
            {
                Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                None => match go_broker_token(ctx, broker).await? {
                    Some(token) => token,
                    None => generate_token(),
                },
            };
            (
                BrokerAuthInput::Generated {
                    token: token.clone(),
                },
                ProbeAuth::Token(token),
            )
        }
        Some(name) => {
            let Some(SecretData { data, .. }) = read_secret(ctx, &namespace, name).await? else {
                return Ok(Err(format!(
                    "Secret {namespace}/{name} named by spec.auth.secretRef does not exist: create it with key token or users.json"
                )));
            };
            let (kind, auth) = match ProbeAuth::from_secret(|key| data.get(key).map(Vec::as_slice))
            {
                Some(auth @ ProbeAuth::Token(_)) => (AuthKind::Token, auth),
                Some(auth @ ProbeAuth::UserPassword { .. }) => (AuthKind::Users, auth),
                Some(ProbeAuth::None) | None => {
                    return Ok(Err(format!(
                        "Secret {namespace}/{name} named by spec.auth.secretRef has neither key token nor a users.json with at least one user"
                    )));
                }
            };
            (BrokerAuthInput::Referenced { kind }, auth)
        }
    };
    let inputs = BrokerInputs {
        default_version: ctx.settings.nats_version.clone(),
        auth,
    };
    Ok(Ok((inputs, Credentials { auth: probe_auth })))
}

/// `status.endpoint`: the cluster DNS name, and the override, LoadBalancer ingress or NodePort outside.
fn endpoints(broker: &Broker, current: &[Object], ctx: &Context) -> BrokerEndpoint {
    let internal = broker_internal_endpoint(broker);
    let service = current
        .iter()
        .find(|o| o.kind() == "Service" && o.group().is_empty() && o.name() == broker.name_any());
    let external = if let Some(endpoint) = broker
        .spec
        .service
        .as_ref()
        .and_then(|s| s.external_endpoint_override.clone())
    {
        endpoint
    } else {
        match (broker.spec.service_type(), service) {
            (ServiceType::LoadBalancer, Some(service)) => service
                .get(&["status", "loadBalancer", "ingress"])
                .and_then(|i| i.get(0))
                .and_then(|ingress| ingress.get("ip").or_else(|| ingress.get("hostname")))
                .and_then(|host| host.as_str())
                .map(|host| format!("{host}:{NATS_CLIENT_PORT}"))
                .unwrap_or_default(),
            (ServiceType::NodePort, Some(service)) => service
                .get(&["spec", "ports"])
                .and_then(|ports| ports.as_array())
                .and_then(|ports| {
                    ports.iter().find(|p| {
                        p.get("port").and_then(|p| p.as_u64()) == Some(NATS_CLIENT_PORT.into())
                    })
                })
                .and_then(|port| port.get("nodePort"))
                .and_then(|port| port.as_u64())
                .map(|port| format!("{}:{port}", ctx.settings.api_server_host))
                .unwrap_or_default(),
            _ => String::new(),
        }
    };
    BrokerEndpoint { internal, external }
}

async fn run_probe(
    broker: &Broker,
    endpoint: &BrokerEndpoint,
    creds: &Credentials,
    ctx: &Context,
) -> NatsProbe {
    if ctx.settings.broker_probe == BrokerProbeMode::Off {
        return NatsProbe::Skipped {
            reason: "the operator runs with --broker-probe off".into(),
        };
    }
    let Some(address) = probe_address(
        &endpoint.internal,
        &endpoint.external,
        ctx.settings.in_cluster,
    ) else {
        return NatsProbe::Skipped {
            reason:
                "the operator runs outside the cluster and the broker has no external endpoint yet"
                    .into(),
        };
    };
    let tls = match broker.spec.tls_secret_name() {
        Some(_) => Some(ProbeTls {
            ca_pem: broker_tls_ca(ctx, broker).await.ok().flatten(),
        }),
        None => None,
    };
    let target = ProbeTarget {
        address,
        auth: creds.auth.clone(),
        tls,
    };
    let uid = broker.uid().unwrap_or_default();
    let result = probe_broker(&target, ctx.settings.probe_timeout).await;
    ctx.metrics.broker_probe(&result);
    match result {
        Ok(_) => {
            ctx.probe_failing_since.clear(&uid);
            NatsProbe::Ok
        }
        Err(error) => NatsProbe::Failing {
            since: ctx.probe_failing_since.since(&uid),
            message: error.to_string(),
        },
    }
}
