//! In-memory caches of the objects the operator owns, kept by watches, so a reconcile observes its
//! children without a single API read; and the triggers that map a child's change to its CR.

use std::sync::Arc;

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::apply::OwnWrites;
use super::kinds::{CHILD_KINDS, ChildKind};
use crate::api::{Broker, MeshSync};
use crate::object::{Object, ObjectKey};
use crate::render::labels::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};

/// One cache per child kind, filled only with objects labelled as managed by the operator.
#[derive(Clone)]
pub struct ChildCaches {
    stores: Vec<(&'static ChildKind, Store<DynamicObject>)>,
}

/// Where a child's change should trigger a reconcile.
#[derive(Clone)]
pub struct Triggers {
    pub brokers: UnboundedSender<ObjectRef<Broker>>,
    pub meshsyncs: UnboundedSender<ObjectRef<MeshSync>>,
    /// Resolves a cluster-scoped child's owner-UID label to its MeshSync.
    pub meshsync_store: Store<MeshSync>,
}

/// Delays between a failed watch's retries: 0.5 s doubling to at most 5 s, reset once the watch
/// delivers again. kube's default backoff grows to 30 s, so after an API outage of that length a
/// cache could stay stale for another 30 s — and a reconcile planning against a stale cache
/// re-applies what it already wrote, at every resync, until the watch catches up.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: std::time::Duration,
}

impl WatchBackoff {
    pub const MIN: std::time::Duration = std::time::Duration::from_millis(500);
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

/// A stream that keeps one cache filled and fires triggers; it must be polled for the cache to live.
pub type CacheDriver = std::pin::Pin<Box<dyn Stream<Item = ()> + Send>>;

/// The label selector every child watch uses, so the caches hold only the operator's own objects.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

impl ChildCaches {
    /// Starts one watch per child kind (within `namespace` when set; cluster-scoped kinds always
    /// cluster-wide) and returns the caches plus the streams that keep them filled and fire triggers.
    pub fn start(
        client: &Client,
        namespace: Option<&str>,
        triggers: Triggers,
        own_writes: Arc<OwnWrites>,
    ) -> (ChildCaches, Vec<CacheDriver>) {
        let mut stores = Vec::new();
        let mut drivers: Vec<CacheDriver> = Vec::new();
        for kind in CHILD_KINDS {
            let resource = kind.api_resource();
            let api: Api<DynamicObject> = match (namespace, kind.namespaced) {
                (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resource),
                _ => Api::all_with(client.clone(), &resource),
            };
            let writer = reflector::store::Writer::new(resource);
            stores.push((kind, writer.as_reader()));
            let config = watcher::Config::default().labels(&managed_selector());
            let triggers = triggers.clone();
            let own_writes = own_writes.clone();
            let driver = reflector::reflector(
                writer,
                watcher(api, config).backoff(WatchBackoff::default()),
            )
            .touched_objects()
            .filter_map(move |event| {
                if let Ok(object) = event {
                    fire_trigger(&object, &triggers, &own_writes);
                }
                std::future::ready(Some(()))
            });
            drivers.push(Box::pin(driver));
        }
        (ChildCaches { stores }, drivers)
    }

    /// Waits until every cache holds a complete first listing.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for (_, store) in &self.stores {
            store.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Every cached child of the CR with this UID: namespaced ones by controller ownerReference,
    /// cluster-scoped ones by the owner-UID label.
    pub fn children_of(&self, uid: &str) -> Vec<Object> {
        let mut children = Vec::new();
        for (kind, store) in &self.stores {
            for object in store.state() {
                let owned = if kind.namespaced {
                    object
                        .owner_references()
                        .iter()
                        .any(|r| r.controller == Some(true) && r.uid == uid)
                } else {
                    object
                        .labels()
                        .get(OWNER_UID_LABEL)
                        .is_some_and(|v| v == uid)
                };
                if owned && let Some(child) = to_object(kind, &object) {
                    children.push(child);
                }
            }
        }
        children
    }

    /// A cached object by key, if the operator manages it.
    pub fn get(&self, key: &ObjectKey) -> Option<Object> {
        let (kind, store) = self
            .stores
            .iter()
            .find(|(kind, _)| kind.group == key.group && kind.kind == key.kind)?;
        let mut reference = ObjectRef::new_with(&key.name, kind.api_resource());
        if let Some(namespace) = &key.namespace {
            reference = reference.within(namespace);
        }
        to_object(kind, &*store.get(&reference)?)
    }

    /// Every cached cluster-scoped child, for the sweep that removes orphans.
    pub fn cluster_scoped(&self) -> Vec<Object> {
        self.stores
            .iter()
            .filter(|(kind, _)| !kind.namespaced)
            .flat_map(|(kind, store)| {
                store
                    .state()
                    .into_iter()
                    .filter_map(move |o| to_object(kind, &o))
            })
            .collect()
    }
}

/// A cached object as the diff engine reads it: `apiVersion` and `kind` are not kept by dynamic
/// watches' items, so they are restored from the kind.
fn to_object(kind: &ChildKind, object: &DynamicObject) -> Option<Object> {
    with_type(&kind.api_resource(), object)
}

/// A dynamic object (a watch or list item, which carries no `apiVersion`/`kind`) as the diff engine
/// reads it, with both set from `resource`.
pub fn with_type(resource: &ApiResource, object: &DynamicObject) -> Option<Object> {
    let mut value = serde_json::to_value(object).ok()?;
    let map = value.as_object_mut()?;
    map.insert("apiVersion".into(), resource.api_version.clone().into());
    map.insert("kind".into(), resource.kind.clone().into());
    Some(Object(value))
}

fn fire_trigger(object: &DynamicObject, triggers: &Triggers, own_writes: &OwnWrites) {
    if let (Some(uid), Some(version)) = (object.uid(), object.resource_version())
        && own_writes.is_own(&uid, &version)
    {
        return;
    }
    let namespace = object.namespace().unwrap_or_default();
    for owner in object
        .owner_references()
        .iter()
        .filter(|r| r.controller == Some(true))
    {
        if !owner.api_version.starts_with("meshery.io/") {
            continue;
        }
        match owner.kind.as_str() {
            "Broker" => {
                let _ = triggers
                    .brokers
                    .unbounded_send(ObjectRef::new(&owner.name).within(&namespace));
            }
            "MeshSync" => {
                let _ = triggers
                    .meshsyncs
                    .unbounded_send(ObjectRef::new(&owner.name).within(&namespace));
            }
            _ => {}
        }
    }
    if let Some(uid) = object.labels().get(OWNER_UID_LABEL)
        && let Some(meshsync) = triggers
            .meshsync_store
            .find(|m| m.uid().as_deref() == Some(uid))
    {
        let _ = triggers
            .meshsyncs
            .unbounded_send(ObjectRef::from_obj(&*meshsync));
    }
}
