//! In-memory caches of the objects the operator owns, kept by watches, so a reconcile observes its
//! children without a single API read; and the triggers that map a child's change to its CR.
//!
//! Children are kept as LZ4-compressed JSON and parsed when a reconcile reads them. A watched object
//! decoded into a `serde_json` tree costs about ten times its JSON size on the heap (every small
//! map, and `managedFields` is made of them, is a B-tree node), which at a thousand Broker and
//! MeshSync pairs was most of the operator's memory; compressed, it is about a fifth of that JSON.
//! Every child of a kind is compressed against a dictionary, the first one of that kind the watch
//! delivered: the children of different CRs differ in little more than names, UIDs and
//! timestamps, so most of each one compresses to references into the dictionary. A reconcile reads
//! only its own few children, and decompressing and parsing those costs less than keeping every
//! tree.

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
use crate::render::labels::{INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};

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
    /// The instance label, kept for cluster-scoped children only: the orphan sweep reads it.
    instance: Option<String>,
    json: CompressedJson,
}

/// An object's JSON, LZ4-compressed against its kind's dictionary.
struct CompressedJson {
    bytes: Box<[u8]>,
    dictionary: Arc<[u8]>,
}

/// What the orphan sweep needs to know of a cluster-scoped child, read without parsing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterChild {
    pub key: ObjectKey,
    /// The owner-UID label: the MeshSync it was rendered for.
    pub owner_uid: Option<String>,
    /// The instance label: that MeshSync's name.
    pub instance: Option<String>,
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
                dictionary: None,
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
    pub fn cluster_scoped(&self) -> Vec<ClusterChild> {
        read(&self.state)
            .objects
            .iter()
            .filter(|(key, _)| key.namespace.is_none())
            .map(|(key, child)| ClusterChild {
                key: key.clone(),
                owner_uid: child.owner_uid.clone(),
                instance: child.instance.clone(),
            })
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
    /// The first object of this kind, as JSON: what every later one is compressed against.
    dictionary: Option<Arc<[u8]>>,
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
    fn entry(&mut self, object: &DynamicObject) -> Option<(ObjectKey, CachedChild)> {
        let key = self.key(object)?;
        let json = typed_json(&self.resource, object)?;
        let dictionary = self
            .dictionary
            .get_or_insert_with(|| Arc::from(json.as_slice()))
            .clone();
        let json = CompressedJson {
            bytes: lz4_flex::block::compress_prepend_size_with_dict(&json, &dictionary)
                .into_boxed_slice(),
            dictionary,
        };
        let (owner_uid, instance) = if self.kind.namespaced {
            let controller = object
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true));
            (controller.map(|r| r.uid.clone()), None)
        } else {
            let labels = object.labels();
            (
                labels.get(OWNER_UID_LABEL).cloned(),
                labels.get(INSTANCE_LABEL).cloned(),
            )
        };
        Some((
            key,
            CachedChild {
                owner_uid,
                instance,
                json,
            },
        ))
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

/// The object's JSON with its `apiVersion` and `kind` (a watch item carries neither).
fn typed_json(resource: &ApiResource, object: &DynamicObject) -> Option<Vec<u8>> {
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
    serde_json::to_vec(&typed).ok()
}

fn parse(compressed: &CompressedJson) -> Option<Object> {
    let json = lz4_flex::block::decompress_size_prepended_with_dict(
        &compressed.bytes,
        &compressed.dictionary,
    )
    .ok()?;
    serde_json::from_slice(&json).ok().map(Object)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kind(name: &str) -> &'static ChildKind {
        CHILD_KINDS.iter().find(|k| k.kind == name).unwrap()
    }

    fn writer(kind: &'static ChildKind, caches: &ChildCaches) -> KindWriter {
        KindWriter {
            kind,
            resource: kind.api_resource(),
            state: caches.state.clone(),
            relisting: None,
            listed_once: false,
            listed: Arc::new(watch::Sender::new(0)),
            dictionary: None,
        }
    }

    fn caches() -> ChildCaches {
        ChildCaches {
            state: Arc::default(),
            listed: watch::channel(0).1,
        }
    }

    fn config_map(name: &str, owner: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "meshery", "resourceVersion": "7",
                "ownerReferences": [{"apiVersion": "meshery.io/v1alpha1", "kind": "Broker",
                    "name": "b", "uid": owner, "controller": true}],
                "managedFields": [{"manager": "meshery-operator", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:k": {}}}}]
            },
            "data": {"k": "v"}
        }))
        .unwrap()
    }

    #[test]
    fn a_child_reads_back_whole_with_its_type_and_only_under_its_owner() {
        let caches = caches();
        let mut writer = writer(kind("ConfigMap"), &caches);
        writer.record(watcher::Event::Apply(config_map("a", "uid-1")));
        writer.record(watcher::Event::Apply(config_map("b", "uid-2")));
        let children = caches.children_of("uid-1");
        assert_eq!(children.len(), 1);
        let mut expected = serde_json::to_value(config_map("a", "uid-1")).unwrap();
        expected["apiVersion"] = json!("v1");
        expected["kind"] = json!("ConfigMap");
        assert_eq!(children[0].0, expected);
        assert_eq!(caches.get(&children[0].key()), Some(children[0].clone()));
        assert!(caches.children_of("uid-3").is_empty());
    }

    #[test]
    fn children_of_a_kind_compress_against_the_first_one_and_read_back_whole() {
        let caches = caches();
        let mut writer = writer(kind("ConfigMap"), &caches);
        let owners: Vec<String> = (0..20).map(|i| format!("uid-{i:03}")).collect();
        for (i, owner) in owners.iter().enumerate() {
            writer.record(watcher::Event::Apply(config_map(&format!("cm-{i}"), owner)));
        }
        for (i, owner) in owners.iter().enumerate() {
            let mut expected = serde_json::to_value(config_map(&format!("cm-{i}"), owner)).unwrap();
            expected["apiVersion"] = json!("v1");
            expected["kind"] = json!("ConfigMap");
            assert_eq!(caches.children_of(owner)[0].0, expected, "{owner}");
        }
        let state = read(&caches.state);
        let json_len = serde_json::to_vec(&config_map("cm-19", "uid-019"))
            .unwrap()
            .len();
        let stored = &state.objects.values().last().unwrap().json;
        assert!(
            stored.bytes.len() * 4 < json_len,
            "{} compressed bytes of {json_len}: the dictionary holds the rest",
            stored.bytes.len()
        );
    }

    #[test]
    fn deletes_and_relistings_leave_no_stale_child() {
        let caches = caches();
        let mut writer = writer(kind("ConfigMap"), &caches);
        writer.record(watcher::Event::Apply(config_map("a", "uid-1")));
        writer.record(watcher::Event::Apply(config_map("b", "uid-1")));
        writer.record(watcher::Event::Delete(config_map("a", "uid-1")));
        assert_eq!(caches.children_of("uid-1").len(), 1);
        // "b" was deleted and "c" created while the watch was down: the relisting says so.
        writer.record(watcher::Event::Init);
        writer.record(watcher::Event::InitApply(config_map("c", "uid-1")));
        assert_eq!(caches.children_of("uid-1")[0].name(), "b");
        writer.record(watcher::Event::InitDone);
        let names: Vec<String> = caches
            .children_of("uid-1")
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        assert_eq!(names, ["c"]);
    }

    #[test]
    fn a_child_moved_to_another_owner_leaves_the_first() {
        let caches = caches();
        let mut writer = writer(kind("ConfigMap"), &caches);
        writer.record(watcher::Event::Apply(config_map("a", "uid-1")));
        writer.record(watcher::Event::Apply(config_map("a", "uid-2")));
        assert!(caches.children_of("uid-1").is_empty());
        assert_eq!(caches.children_of("uid-2").len(), 1);
    }

    #[test]
    fn cluster_scoped_children_are_owned_by_label_and_listed_for_the_sweep() {
        let caches = caches();
        let mut writer = writer(kind("ClusterRole"), &caches);
        let role: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "meshery-meshsync-meshery-m", "labels": {
                OWNER_UID_LABEL: "uid-9", INSTANCE_LABEL: "m", MANAGED_BY_LABEL: MANAGED_BY}},
            "rules": []
        }))
        .unwrap();
        writer.record(watcher::Event::Apply(role));
        assert_eq!(caches.children_of("uid-9").len(), 1);
        let listed = caches.cluster_scoped();
        assert_eq!(
            listed,
            [ClusterChild {
                key: ObjectKey {
                    group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    namespace: None,
                    name: "meshery-meshsync-meshery-m".into(),
                },
                owner_uid: Some("uid-9".into()),
                instance: Some("m".into()),
            }]
        );
    }
}
