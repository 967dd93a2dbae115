//! Writing a CR's status — only when it changed, ignoring timestamps — and an Event on every phase
//! change and every new error, so `kubectl describe` tells the story.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::context::Context;
use super::error::Error;
use super::metrics::WriteVerb;
use crate::api::Phase;
use crate::lifecycle::{Reason, status_equal_ignoring_time};
use crate::render::labels::FIELD_MANAGER;

/// Writes `status` on `cr` unless it equals the stored one (timestamps aside); returns whether it wrote.
/// `summary_of` gives a status's phase and conditions.
pub async fn write_if_changed<K, S>(
    ctx: &Context,
    cr: &K,
    stored: Option<&S>,
    status: &S,
    summary_of: impl Fn(&S) -> (Option<Phase>, &[Condition]),
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    if stored.is_some_and(|stored| status_equal_ignoring_time(stored, status)) {
        return Ok(false);
    }
    let object = format!(
        "{} {}/{}",
        K::kind(&()),
        cr.namespace().unwrap_or_default(),
        cr.name_any()
    );
    let (old_phase, old_conditions) = stored.map_or((None, &[][..]), &summary_of);
    let (new_phase, new_conditions) = summary_of(status);
    let old_ready = ready_condition(old_conditions);
    let new_ready = ready_condition(new_conditions);
    if ctx.settings.dry_run {
        info!(%object, status = %serde_json::to_string(status).unwrap_or_default(), "dry-run: would write status");
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    ctx.metrics
        .api_write(&format!("{}/status", K::kind(&())), WriteVerb::Apply);
    api.patch_status(
        &cr.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::StatusWrite {
        object: object.clone(),
        source,
    })?;
    let error = new_ready.filter(|c| is_error(&c.reason));
    if old_phase != new_phase
        && let Some(phase) = new_phase
    {
        info!(%object, from = ?old_phase, to = %phase, "phase changed");
        let mut note = format!("{} is now {phase}", K::kind(&()));
        if let Some(ready) = error {
            note = format!("{note}: {}: {}", ready.reason, ready.message);
        }
        let warning = phase == Phase::Degraded || error.is_some();
        publish(ctx, cr, warning, phase.as_str(), note).await;
    } else if let Some(ready) = error
        && old_ready.is_none_or(|old| old.reason != ready.reason)
    {
        // A new error within the same phase (e.g. a Pending CR whose apply now fails).
        publish(ctx, cr, true, &ready.reason, ready.message.clone()).await;
    }
    Ok(true)
}

fn ready_condition(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// Reasons that need someone's attention: they make the Event a Warning, whatever the phase.
fn is_error(reason: &str) -> bool {
    Reason::ALL
        .into_iter()
        .find(|r| r.as_str() == reason)
        .is_some_and(|r| {
            r.is_stalled()
                || matches!(
                    r,
                    Reason::ApplyFailed | Reason::BrokerUnreachable | Reason::WorkloadUnavailable
                )
        })
}

async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    cr: &K,
    warning: bool,
    reason: &str,
    note: String,
) {
    let event_type = if warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    // The API server rejects an Event whose note exceeds 1 kB.
    let mut note = note;
    if note.len() > 1000 {
        let mut end = 997;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    let event = Event {
        type_: event_type,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.metrics.api_write("Event", WriteVerb::Create);
    if let Err(e) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
        warn!(error = %e, "could not publish an Event");
    }
}
