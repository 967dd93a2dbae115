//! Turning what a reconcile saw and did into the lifecycle's observations.

use std::collections::BTreeMap;

use kube::{Resource, ResourceExt};

use super::apply::{ApplyFailure, ApplyOptions, ApplyReport, apply_every_desired, apply_plan};
use super::context::{ApplyStrategy, Context};
use super::error::Error;
use crate::diff::{Owner, plan};
use crate::lifecycle::{ApplyOutcome, Readiness, child_readiness};
use crate::object::{Object, ObjectKey};
use crate::render::labels::FIELD_MANAGER;

/// The CR as the diff engine's prune guard needs it; a CR without a UID was not read from the API server.
pub fn owner_of<K: Resource<DynamicType = ()>>(cr: &K) -> Result<Owner, Error> {
    let object = format!(
        "{} {}/{}",
        K::kind(&()),
        cr.namespace().unwrap_or_default(),
        cr.name_any()
    );
    let uid = cr.uid().ok_or(Error::MissingMetadata {
        object,
        field: "metadata.uid",
    })?;
    Ok(Owner {
        kind: K::kind(&()).to_string(),
        name: cr.name_any(),
        namespace: cr.namespace().unwrap_or_default(),
        uid,
    })
}

/// Plans `desired` against the cached `observed` children, applies what drifted, and returns the
/// children as they now are together with the outcome the lifecycle needs.
pub async fn converge(
    ctx: &Context,
    owner: &Owner,
    desired: &[Object],
    observed: Vec<Object>,
    recreate_on_immutable_change: bool,
) -> (Vec<Object>, ApplyOutcome) {
    let mut plan = plan(desired, &observed, owner, FIELD_MANAGER);
    if ctx.apply_strategy != ApplyStrategy::Diff {
        plan = apply_every_desired(plan, desired);
    }
    let options = ApplyOptions {
        dry_run: ctx.settings.dry_run,
        recreate_on_immutable_change,
        verify_with_dry_run: ctx.apply_strategy == ApplyStrategy::DryRunDiff,
    };
    let report = apply_plan(&ctx.client, &plan, options, &ctx.own_writes, &ctx.metrics).await;
    let current = after_apply(desired, observed, &report);
    (current, apply_outcome(report.failure))
}

/// The children as they are after applying: the API server's answers replace what the cache held,
/// deleted ones are gone, and only objects the render still wants count for readiness.
fn after_apply(desired: &[Object], observed: Vec<Object>, report: &ApplyReport) -> Vec<Object> {
    let mut by_key: BTreeMap<ObjectKey, Object> =
        observed.into_iter().map(|o| (o.key(), o)).collect();
    for key in &report.deleted {
        by_key.remove(key);
    }
    for object in &report.applied {
        by_key.insert(object.key(), object.clone());
    }
    desired
        .iter()
        .filter_map(|d| by_key.remove(&d.key()))
        .collect()
}

pub fn readiness_of(children: &[Object]) -> BTreeMap<ObjectKey, Readiness> {
    children
        .iter()
        .map(|o| (o.key(), child_readiness(o)))
        .collect()
}

fn apply_outcome(failure: Option<ApplyFailure>) -> ApplyOutcome {
    match failure {
        None => ApplyOutcome::Applied,
        Some(ApplyFailure::Immutable { object, paths }) => ApplyOutcome::ImmutableFieldChanged {
            paths: paths.iter().map(|p| format!("{object}: {p}")).collect(),
        },
        Some(failure @ ApplyFailure::Api { .. }) => ApplyOutcome::Failed {
            message: failure.to_string(),
        },
    }
}
