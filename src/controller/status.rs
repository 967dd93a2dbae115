//! Writing a CR's status — only when it changed, ignoring timestamps — and an Event on every phase
//! change and every new error, so `kubectl describe` tells the story.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::context::{ApplyStrategy, Context};
use super::error::Error;
use super::metrics::WriteVerb;
use crate::api::{BrokerStatus, MeshSyncStatus, Phase};
use crate::lifecycle::{READY, Reason, status_equal_ignoring_time};
use crate::render::labels::FIELD_MANAGER;

/// What an Event about a status says: its phase and why.
pub trait StatusSummary {
    fn phase(&self) -> Option<Phase>;
    fn conditions(&self) -> &[Condition];

    /// The Ready condition's reason and message, the one-line story of the phase.
    fn summary(&self) -> String {
        self.conditions()
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_default()
    }
}

impl StatusSummary for BrokerStatus {
    fn phase(&self) -> Option<Phase> {
        self.phase
    }
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl StatusSummary for MeshSyncStatus {
    fn phase(&self) -> Option<Phase> {
        self.phase
    }
    fn conditions(&self) -> &[Condition] {
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
    let always = ctx.apply_strategy == ApplyStrategy::AlwaysApply;
    if !always && stored.is_some_and(|stored| status_equal_ignoring_time(stored, status)) {
        return Ok(false);
    }
    let object = format!(
        "{} {}/{}",
        K::kind(&()),
        cr.namespace().unwrap_or_default(),
        cr.name_any()
    );
    let old_ready = stored.and_then(|s| ready_condition(s.conditions()));
    let new_ready = ready_condition(status.conditions());
    let (old_phase, new_phase) = (stored.and_then(StatusSummary::phase), status.phase());
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
    let error = new_ready.filter(|c| needs_attention(&c.reason));
    if old_phase != new_phase
        && let Some(phase) = new_phase
    {
        info!(%object, from = ?old_phase, to = %phase, "phase changed");
        let warning = phase == Phase::Degraded || error.is_some();
        let event_type = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!("{} is now {phase}: {}", K::kind(&()), status.summary());
        send_event(ctx, cr, event_type, phase.as_str(), note).await;
    } else if let Some(ready) = error
        && old_ready.is_none_or(|old| old.reason != ready.reason)
    {
        // A new error within the same phase (e.g. a Pending CR whose apply now fails).
        send_event(
            ctx,
            cr,
            EventType::Warning,
            &ready.reason,
            ready.message.clone(),
        )
        .await;
    }
    Ok(true)
}

fn ready_condition(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == READY)
}

/// Reasons that need someone's attention: they make the Event a Warning, whatever the phase.
fn needs_attention(reason: &str) -> bool {
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

/// A Normal or Warning Event about `cr` (any object: the CRs, the Go operator's Lease), its note
/// cut to what the API server accepts; nothing in dry-run mode.
pub(super) async fn send_event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    cr: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    if ctx.settings.dry_run {
        return;
    }
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
    ctx.metrics.api_write("Event", WriteVerb::Create);
    if let Err(e) = ctx
        .recorder
        .publish(type_, reason, "Reconcile", &note, &cr.object_ref(&()))
        .await
    {
        warn!(error = %e, "could not publish an Event");
    }
}
