//! Writing a CR's status — only when it changed, ignoring timestamps — and an Event on every phase
//! change, so `kubectl describe` tells the story.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::context::Context;
use super::error::Error;
use super::metrics::WriteVerb;
use crate::api::{BrokerStatus, MeshSyncStatus, Phase};
use crate::lifecycle::status_equal_ignoring_time;
use crate::render::labels::FIELD_MANAGER;

/// What an Event about a status says: its phase and why.
pub trait StatusSummary {
    fn phase(&self) -> Option<Phase>;
    fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition];

    /// The Ready condition's reason and message, the one-line story of the phase.
    fn summary(&self) -> String {
        self.conditions()
            .iter()
            .find(|c| c.type_ == crate::lifecycle::READY)
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_default()
    }
}

impl StatusSummary for BrokerStatus {
    fn phase(&self) -> Option<Phase> {
        self.phase
    }
    fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
        &self.conditions
    }
}

impl StatusSummary for MeshSyncStatus {
    fn phase(&self) -> Option<Phase> {
        self.phase
    }
    fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
        &self.conditions
    }
}

/// Writes `status` on `cr` unless it equals the stored one (timestamps aside); returns whether it wrote.
pub async fn write_if_changed<K, S>(
    ctx: &Context,
    cr: &K,
    stored: Option<&S>,
    status: &S,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + StatusSummary,
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
    let old_phase = stored.and_then(StatusSummary::phase);
    let new_phase = status.phase();
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
    if old_phase != new_phase
        && let Some(phase) = new_phase
    {
        info!(%object, from = ?old_phase, to = %phase, "phase changed");
        publish(ctx, cr, phase, &status.summary()).await;
    }
    Ok(true)
}

async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    cr: &K,
    phase: Phase,
    summary: &str,
) {
    let event_type = if phase == Phase::Degraded {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let note = format!("{} is now {phase}: {summary}", K::kind(&()));
    send_event(ctx, cr, event_type, phase.as_str(), note).await;
}

/// A Warning Event for a reconcile that failed and will be retried.
pub async fn publish_error<K: Resource<DynamicType = ()>>(ctx: &Context, cr: &K, error: &str) {
    send_event(
        ctx,
        cr,
        EventType::Warning,
        "ReconcileError",
        format!("will retry: {error}"),
    )
    .await;
}

async fn send_event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    cr: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    if ctx.settings.dry_run {
        return;
    }
    // Events allow at most 1 kB of note.
    let note: String = note.chars().take(1000).collect();
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.metrics.api_write("Event", WriteVerb::Create);
    if let Err(e) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
        warn!(error = %e, "could not publish an Event");
    }
}
