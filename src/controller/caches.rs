//! In-memory caches of the objects the operator owns, kept by watches, so a reconcile observes its
//! children without a single API read; and the triggers that map a child's change to its CR.
//!
//! Children are kept as compact JSON text and parsed when a reconcile reads them. A watched object
//! decoded into a `serde_json` tree costs about ten times its JSON size on the heap (every small
//! map, and `managedFields` is made of them, is a B-tree node), which at a thousand Broker and
//! MeshSync pairs was most of the operator's memory; a reconcile reads only its own few children,
//! so parsing them on demand costs less than keeping every tree.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::apply::OwnWrites;
use super::kinds::{CHILD_KINDS, ChildKind};
use crate::api::{Broker, MeshSync};
use crate::object::{Object, ObjectKey};
use crate::render::labels::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};

/// Every child the operator manages, by key and by the UID of the CR that owns it.
#[derive(Clone)]
pub struct ChildCaches {
    state: Arc<RwLock<CacheState>>,
    /// How many kinds have completed their first listing.
    listed: watch::Receiver<usize>,
}

#[derive(Default)]
struct CacheState {
    objects: HashMap<ObjectKey, CachedChild>,
    by_owner: HashMap<String, HashSet<ObjectKey>>,
}

struct CachedChild {
    owner_uid: Option<String>,
    json: Box<str>,
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
        let state = Arc::new(RwLock::new(CacheState::default()));
        let (listed_tx, listed) = watch::channel(0);
        let listed_tx = Arc::new(listed_tx);
        let mut drivers: Vec<CacheDriver> = Vec::new();
        for kind in CHILD_KINDS {
            let resource = kind.api_resource();
            let api: Api<DynamicObject> = match (namespace, kind.namespaced) {
                (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resource),
                _ => Api::all_with(client.clone(), &resource),
            };
            let config = watcher::Config::default().labels(&managed_selector());
            let mut writer = KindWriter {
                kind,
                resource,
                state: state.clone(),
                relisting: None,
                listed_once: false,
                listed: listed_tx.clone(),
            };
            let triggers = triggers.clone();
            let own_writes = own_writes.clone();
            let driver = watcher(api, config)
                .backoff(WatchBackoff::default())
                .filter_map(move |event| {
                    if let Ok(event) = event
                        && let Some(touched) = writer.record(event)
                    {
                        fire_trigger(&touched, &triggers, &own_writes);
                    }
                    std::future::ready(Some(()))
                });
            drivers.push(Box::pin(driver));
        }
        (ChildCaches { state, listed }, drivers)
    }

    /// Waits until every kind's cache holds a complete first listing; false if the watches stopped first.
    pub async fn wait_until_ready(&self) -> bool {
        let mut listed = self.listed.clone();
        listed.wait_for(|n| *n == CHILD_KINDS.len()).await.is_ok()
    }

    /// Every cached child of the CR with this UID: namespaced ones by controller ownerReference,
    /// cluster-scoped ones by the owner-UID label.
    pub fn children_of(&self, uid: &str) -> Vec<Object> {
        let state = read(&self.state);
        let Some(keys) = state.by_owner.get(uid) else {
            return Vec::new();
        };
        let mut keys: Vec<&ObjectKey> = keys.iter().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|key| parse(&state.objects.get(key)?.json))
            .collect()
    }

    /// A cached object by key, if the operator manages it.
    pub fn get(&self, key: &ObjectKey) -> Option<Object> {
        parse(&read(&self.state).objects.get(key)?.json)
    }

    /// Every cached cluster-scoped child, for the sweep that removes orphans.
    pub fn cluster_scoped(&self) -> Vec<Object> {
        read(&self.state)
            .objects
            .iter()
            .filter(|(key, _)| key.namespace.is_none())
            .filter_map(|(_, child)| parse(&child.json))
            .collect()
    }
}

/// Keeps one kind's part of the cache in step with its watch: single changes as they come, a
/// re-listing (after a watch expired or failed) swapped in whole once complete, so objects deleted
/// while the watch was down leave the cache too.
struct KindWriter {
    kind: &'static ChildKind,
    resource: ApiResource,
    state: Arc<RwLock<CacheState>>,
    relisting: Option<Vec<(ObjectKey, CachedChild)>>,
    listed_once: bool,
    listed: Arc<watch::Sender<usize>>,
}

impl KindWriter {
    /// Applies one watch event; returns the object it touched, if any, for the triggers.
    fn record(&mut self, event: watcher::Event<DynamicObject>) -> Option<DynamicObject> {
        match event {
            watcher::Event::Apply(object) => {
                if let Some((key, child)) = self.entry(&object) {
                    insert(&mut write(&self.state), key, child);
                }
                Some(object)
            }
            watcher::Event::Delete(object) => {
                if let Some(key) = self.key(&object) {
                    remove(&mut write(&self.state), &key);
                }
                Some(object)
            }
            watcher::Event::Init => {
                self.relisting = Some(Vec::new());
                None
            }
            watcher::Event::InitApply(object) => {
                if let Some(entry) = self.entry(&object) {
                    self.relisting.get_or_insert_default().push(entry);
                }
                Some(object)
            }
            watcher::Event::InitDone => {
                let listing = self.relisting.take().unwrap_or_default();
                let listed: HashSet<&ObjectKey> = listing.iter().map(|(key, _)| key).collect();
                let mut state = write(&self.state);
                let gone: Vec<ObjectKey> = state
                    .objects
                    .keys()
                    .filter(|key| self.is_own_kind(key) && !listed.contains(key))
                    .cloned()
                    .collect();
                drop(listed);
                for key in &gone {
                    remove(&mut state, key);
                }
                for (key, child) in listing {
                    insert(&mut state, key, child);
                }
                drop(state);
                if !self.listed_once {
                    self.listed_once = true;
                    self.listed.send_modify(|n| *n += 1);
                }
                None
            }
        }
    }

    fn is_own_kind(&self, key: &ObjectKey) -> bool {
        key.group == self.kind.group && key.kind == self.kind.kind
    }

    fn key(&self, object: &DynamicObject) -> Option<ObjectKey> {
        Some(ObjectKey {
            group: self.kind.group.to_string(),
            kind: self.kind.kind.to_string(),
            namespace: object.namespace().filter(|_| self.kind.namespaced),
            name: object.metadata.name.clone()?,
        })
    }

    /// The object as the cache keeps it: its key, its owner's UID (controller ownerReference for
    /// namespaced kinds, the owner-UID label for cluster-scoped ones) and its JSON text.
    fn entry(&self, object: &DynamicObject) -> Option<(ObjectKey, CachedChild)> {
        let key = self.key(object)?;
        let json = compact_json(&self.resource, object)?;
        let owner_uid = if self.kind.namespaced {
            object
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid.clone())
        } else {
            object.labels().get(OWNER_UID_LABEL).cloned()
        };
        Some((key, CachedChild { owner_uid, json }))
    }
}

fn insert(state: &mut CacheState, key: ObjectKey, child: CachedChild) {
    remove(state, &key);
    if let Some(uid) = &child.owner_uid {
        state
            .by_owner
            .entry(uid.clone())
            .or_default()
            .insert(key.clone());
    }
    state.objects.insert(key, child);
}

fn remove(state: &mut CacheState, key: &ObjectKey) {
    let Some(old) = state.objects.remove(key) else {
        return;
    };
    if let Some(uid) = old.owner_uid
        && let Some(keys) = state.by_owner.get_mut(&uid)
    {
        keys.remove(key);
        if keys.is_empty() {
            state.by_owner.remove(&uid);
        }
    }
}

fn read(state: &RwLock<CacheState>) -> std::sync::RwLockReadGuard<'_, CacheState> {
    state
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(state: &RwLock<CacheState>) -> std::sync::RwLockWriteGuard<'_, CacheState> {
    state
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The object as JSON text with `apiVersion` and `kind` restored (watch items carry neither).
fn compact_json(resource: &ApiResource, object: &DynamicObject) -> Option<Box<str>> {
    #[derive(serde::Serialize)]
    struct Typed<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        metadata: &'a kube::api::ObjectMeta,
        #[serde(flatten)]
        data: &'a serde_json::Value,
    }
    let typed = Typed {
        api_version: &resource.api_version,
        kind: &resource.kind,
        metadata: &object.metadata,
        data: &object.data,
    };
    serde_json::to_string(&typed)
        .ok()
        .map(String::into_boxed_str)
}

fn parse(json: &str) -> Option<Object> {
    serde_json::from_str(json).ok().map(Object)
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
