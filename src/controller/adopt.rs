//! Adopting CRs the Go Meshery Operator managed: reading its children, deleting them when
//! `crate::migrate` says so, then clearing its conditions and finalizer. Runs only while a CR
//! still carries a Go finalizer, so an adopted cluster pays nothing for it.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::info;

use super::apply::api_for;
use super::context::Context;
use super::error::Error;
use super::metrics::WriteVerb;
use super::status::send_event;
use crate::api::{Broker, MeshSync};
use crate::migrate::{
    Adoption, GO_TOKEN_SECRET, GoChild, broker_adoption, carries_go_finalizer,
    go_broker_child_keys, go_conditions_removal, go_finalizers_removal, go_meshsync_child_keys,
    go_token, meshsync_adoption,
};
use crate::object::{Object, ObjectKey};

/// The token of the Go operator's Secret for this Broker, kept so every connected client stays
/// authorized; `None` when the Broker is not being adopted or has no such Secret.
pub async fn go_broker_token(ctx: &Context, broker: &Broker) -> Result<Option<String>, Error> {
    let (Some(uid), Some(namespace)) = (broker.uid(), broker.namespace()) else {
        return Ok(None);
    };
    if !carries_go_finalizer(broker.finalizers()) {
        return Ok(None);
    }
    let key = ObjectKey {
        group: String::new(),
        kind: "Secret".into(),
        namespace: Some(namespace),
        name: GO_TOKEN_SECRET.into(),
    };
    let found = read_existing(ctx, &[key]).await?;
    Ok(found.first().and_then(|secret| go_token(secret, &uid)))
}

/// A Broker's adoption step, after ours was applied: the Go NATS objects go once `ours_ready`,
/// then the Go conditions and finalizer.
pub async fn adopt_broker(ctx: &Context, broker: &Broker, ours_ready: bool) -> Result<(), Error> {
    let (Some(uid), Some(namespace)) = (broker.uid(), broker.namespace()) else {
        return Ok(());
    };
    if !carries_go_finalizer(broker.finalizers()) {
        return Ok(());
    }
    let found = read_existing(ctx, &go_broker_child_keys(&namespace)).await?;
    match broker_adoption(&found, &uid, ours_ready) {
        Adoption::Waiting { children } => {
            info!(
                go_children = %names(&children),
                "adopting from the Go Meshery Operator: its NATS server keeps serving until ours is Ready"
            );
            Ok(())
        }
        Adoption::Delete { children } => {
            delete_children(ctx, broker, &children).await?;
            finish(ctx, broker, &names(&children)).await
        }
        Adoption::Finish => finish(ctx, broker, "").await,
    }
}

/// A MeshSync's adoption step, before ours is applied: the Go Deployment (its selector cannot
/// become ours) and mirrored token Secret go. Returns what was removed, for [`finish_meshsync`].
pub async fn clear_way_for_meshsync(
    ctx: &Context,
    meshsync: &MeshSync,
) -> Result<Option<String>, Error> {
    let (Some(uid), Some(namespace)) = (meshsync.uid(), meshsync.namespace()) else {
        return Ok(None);
    };
    if !carries_go_finalizer(meshsync.finalizers()) {
        return Ok(None);
    }
    let keys = go_meshsync_child_keys(&namespace, &meshsync.name_any());
    let found = read_existing(ctx, &keys).await?;
    match meshsync_adoption(&found, &uid) {
        Adoption::Delete { children } => {
            delete_children(ctx, meshsync, &children).await?;
            Ok(Some(names(&children)))
        }
        Adoption::Waiting { .. } | Adoption::Finish => Ok(Some(String::new())),
    }
}

/// Ends a MeshSync's adoption once ours was applied after [`clear_way_for_meshsync`].
pub async fn finish_meshsync(
    ctx: &Context,
    meshsync: &MeshSync,
    removed: &str,
) -> Result<(), Error> {
    finish(ctx, meshsync, removed).await
}

/// The objects at `keys` that exist.
async fn read_existing(ctx: &Context, keys: &[ObjectKey]) -> Result<Vec<Object>, Error> {
    let mut found = Vec::new();
    for key in keys {
        let Some(api) = api_for(&ctx.client, key) else {
            continue;
        };
        match api.get_opt(&key.name).await {
            Ok(Some(object)) => {
                let value = serde_json::to_value(object).map_err(|e| Error::Decode {
                    object: key.to_string(),
                    message: e.to_string(),
                })?;
                found.push(Object(value));
            }
            Ok(None) => {}
            Err(source) => {
                return Err(Error::Read {
                    what: key.to_string(),
                    source,
                });
            }
        }
    }
    Ok(found)
}

/// Deletes the Go children, each only while it is the object that was read (UID precondition);
/// one already gone is fine.
async fn delete_children<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    cr: &K,
    children: &[GoChild],
) -> Result<(), Error> {
    for child in children {
        if ctx.settings.dry_run {
            info!(object = %child.key, "dry-run: would delete the Go Meshery Operator's child");
            continue;
        }
        let Some(api) = api_for(&ctx.client, &child.key) else {
            continue;
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(child.uid.clone()),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        ctx.metrics.api_write(&child.key.kind, WriteVerb::Delete);
        match api.delete(&child.key.name, &params).await {
            Ok(_) => info!(object = %child.key, "deleted the Go Meshery Operator's child"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Adopt {
                    object: describe(cr),
                    action: format!("deleting {}", child.key),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Clears the Go conditions (on the status as stored now) and then the Go finalizer, and says so
/// in an Event.
async fn finish<K>(ctx: &Context, cr: &K, removed: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + HasConditions,
{
    if ctx.settings.dry_run {
        info!(object = %describe(cr), "dry-run: would clear the Go Meshery Operator's finalizer");
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let stored = api
        .get(&cr.name_any())
        .await
        .map_err(|source| Error::Read {
            what: describe(cr),
            source,
        })?;
    // The conditions first: with the finalizer gone the CR no longer counts as being adopted.
    let steps = [
        (
            go_conditions_removal(stored.conditions()),
            Some("status"),
            "removing its status conditions",
        ),
        (
            go_finalizers_removal(stored.finalizers()),
            None,
            "removing its finalizer",
        ),
    ];
    for (patch, subresource, action) in steps {
        let Some(patch) = patch else {
            continue;
        };
        let patch = json_patch(describe(cr), patch)?;
        let params = PatchParams::default();
        let written = match subresource {
            Some(sub) => {
                ctx.metrics
                    .api_write(&format!("{}/{sub}", K::kind(&())), WriteVerb::Patch);
                api.patch_status(&cr.name_any(), &params, &patch).await
            }
            None => {
                ctx.metrics.api_write(&K::kind(&()), WriteVerb::Patch);
                api.patch(&cr.name_any(), &params, &patch).await
            }
        };
        written.map_err(|source| Error::Adopt {
            object: describe(cr),
            action: action.into(),
            source,
        })?;
    }
    let note = if removed.is_empty() {
        "took over from the Go Meshery Operator: removed its finalizer and conditions".to_string()
    } else {
        format!(
            "took over from the Go Meshery Operator: replaced its {removed}, removed its finalizer and conditions"
        )
    };
    info!(object = %describe(cr), "{note}");
    send_event(ctx, cr, EventType::Normal, "Adopted", note).await;
    Ok(())
}

/// A JSON patch as kube sends it, from the pure core's RFC 6902 array.
fn json_patch(object: String, operations: serde_json::Value) -> Result<Patch<()>, Error> {
    serde_json::from_value(operations)
        .map(Patch::Json)
        .map_err(|e| Error::Decode {
            object,
            message: format!("a JSON patch: {e}"),
        })
}

/// The CRs whose status conditions the Go operator wrote into.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];
}

impl HasConditions for Broker {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl HasConditions for MeshSync {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

fn names(children: &[GoChild]) -> String {
    children
        .iter()
        .map(|c| format!("{} {}", c.key.kind, c.key.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe<K: Resource<DynamicType = ()>>(cr: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        cr.meta().namespace.clone().unwrap_or_default(),
        cr.meta().name.clone().unwrap_or_default()
    )
}
