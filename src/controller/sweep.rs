//! Removing MeshSync's cluster-scoped RBAC once its MeshSync is gone. These objects cannot be owned
//! by a namespaced CR and the operator uses no finalizers (they would block deleting a MeshSync or its
//! namespace whenever the operator is down), so the operator deletes them itself: right after a
//! MeshSync's deletion, at every start, and at every resync.

use std::collections::HashSet;

use kube::ResourceExt;
use tracing::{info, warn};

use super::apply::{ApplyOptions, apply_plan};
use super::caches::ClusterChild;
use super::context::Context;
use super::metrics::ControllerKind;
use crate::diff::{Action, Entry, Plan};

/// Deletes every cached (so labelled as ours) cluster-scoped child whose owner UID is not a live MeshSync's; returns how
/// many. Call only once the MeshSync cache is complete, or live objects would look orphaned. An
/// operator scoped to one namespace (`--namespace`) sees only that namespace's MeshSyncs, so it
/// sweeps only the children of MeshSyncs from that namespace: another namespace's belong to another
/// operator, and deleting them would start a delete/recreate fight with it.
pub async fn sweep_orphaned_cluster_children(ctx: &Context) -> usize {
    let live: HashSet<String> = ctx
        .meshsyncs
        .state()
        .iter()
        .filter_map(|m| m.uid())
        .collect();
    let entries: Vec<Entry> = ctx
        .children
        .cluster_scoped()
        .into_iter()
        .filter(|child| in_scope(child, ctx.settings.namespace.as_deref()))
        .filter(|child| {
            child
                .owner_uid
                .as_ref()
                .is_some_and(|uid| !live.contains(uid))
        })
        .map(|child| Entry {
            key: child.key,
            action: Action::Prune,
        })
        .collect();
    if entries.is_empty() {
        return 0;
    }
    let count = entries.len();
    let options = ApplyOptions {
        dry_run: ctx.settings.dry_run,
        recreate_on_immutable_change: false,
        verify_with_dry_run: false,
    };
    let report = apply_plan(
        &ctx.client,
        &Plan { entries },
        options,
        &ctx.own_writes,
        &ctx.metrics,
    )
    .await;
    match &report.failure {
        None => info!(
            orphans = count,
            deleted = report.deleted.len(),
            "swept cluster-scoped children of deleted MeshSyncs"
        ),
        Some(failure) => {
            ctx.metrics
                .reconcile_failed(ControllerKind::MeshSync, "SweepFailed");
            warn!(
                orphans = count,
                deleted = report.deleted.len(),
                error = %failure,
                "could not sweep the cluster-scoped children of deleted MeshSyncs; retrying at the next sweep"
            );
        }
    }
    report.deleted.len()
}

/// Whether a cluster-scoped child belongs to a MeshSync in `namespace` (every one when unscoped). Its
/// name is `meshery-meshsync-<namespace>-<instance>` and it carries its MeshSync's name as the
/// instance label, so name and label together tell the namespace without ambiguity.
fn in_scope(child: &ClusterChild, namespace: Option<&str>) -> bool {
    let Some(namespace) = namespace else {
        return true;
    };
    child.instance.as_ref().is_some_and(|instance| {
        child.key.name == format!("meshery-meshsync-{namespace}-{instance}")
    })
}
