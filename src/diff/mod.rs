//! The pure diff engine: desired objects against observed ones → a [`Plan`] of what to create,
//! server-side-apply, leave alone, or prune, decided without any API round-trip.
//!
//! Drift is judged only on fields the operator owns: those present in the desired object, plus
//! those our field manager applied before and no longer desires. Server defaults, status, and
//! fields other managers set (an HPA's `replicas`, Meshery Server's env vars) never count, so a
//! steady-state reconcile plans no writes at all.
//!
//! Who may take a field from the operator: another manager's server-side apply (Meshery Server
//! applying env vars and args) or a write through a subresource (an HPA scaling through `/scale`).
//! Such fields are reported as yielded and left out of the apply body, so a forced apply never takes
//! them back. An imperative edit of the main resource (`kubectl edit`, `kubectl patch`) is drift,
//! and the next apply reverts it.

mod base64;
mod compare;
mod managed;
pub mod mask;
mod path;

use std::borrow::Cow;
use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

use crate::object::{Object, ObjectKey};
use crate::render::labels::{INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};

pub use managed::{FieldSet, ManagedEntry, managed_entries};
pub use path::{FieldPath, PathElement};

use compare::{Comparer, Ownership};

/// Decodes base64 as Secret `data` holds it (for callers reading observed Secrets).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    base64::decode(text)
}

/// The custom resource whose children are being planned; prune is limited to what it provably owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `Broker` or `MeshSync`.
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// What to do with one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The object does not exist: apply it whole.
    Create { object: Object },
    /// Owned fields drifted: server-side-apply `apply_body` with force.
    Update {
        /// The desired object minus fields another manager has taken over, so applying it with
        /// force changes exactly `changed_paths` and never takes those fields back.
        apply_body: Object,
        /// RFC 6902 patch turning the observed object into what the apply is expected to produce.
        /// On a Secret it carries the new values: print it only through [`mask::mask_patch`].
        json_patch: json_patch::Patch,
        /// Owned fields that differ, are missing, or were applied before and are no longer desired.
        changed_paths: Vec<FieldPath>,
        /// The subset of `changed_paths` the API server refuses to change in place; when non-empty
        /// the apply will fail and the controller reports `ImmutableFieldChanged` (or recreates).
        immutable_paths: Vec<FieldPath>,
        /// Desired fields left to the manager that took them over.
        yielded_paths: Vec<FieldPath>,
    },
    /// Every owned field already matches: no write.
    Unchanged {
        /// Desired fields left to the manager that took them over.
        yielded_paths: Vec<FieldPath>,
    },
    /// The object carries our labels and owner but is no longer desired: delete it.
    Prune,
}

/// One object's entry in a [`Plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: ObjectKey,
    pub action: Action,
}

/// Every desired object's action in apply order, followed by prunes in reverse apply order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub entries: Vec<Entry>,
}

/// How many entries of each action a plan has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub prune: usize,
    pub unchanged: usize,
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for entry in &self.entries {
            match entry.action {
                Action::Create { .. } => counts.create += 1,
                Action::Update { .. } => counts.update += 1,
                Action::Unchanged { .. } => counts.unchanged += 1,
                Action::Prune => counts.prune += 1,
            }
        }
        counts
    }

    /// Whether carrying out the plan would write anything.
    pub fn has_changes(&self) -> bool {
        self.entries
            .iter()
            .any(|e| !matches!(e.action, Action::Unchanged { .. }))
    }
}

impl Counts {
    /// `Plan: 3 to create, 1 to update, 0 to prune, 4 unchanged.`
    pub fn summary(&self) -> String {
        format!(
            "Plan: {} to create, {} to update, {} to prune, {} unchanged.",
            self.create, self.update, self.prune, self.unchanged
        )
    }
}

/// Plans `desired` against `observed` for the children of `owner`, judging ownership by `field_manager`.
///
/// `observed` may hold anything (other owners' objects, unrelated kinds): only objects with a
/// desired counterpart are compared, and only those that carry our labels and `owner`'s UID are
/// pruned. When a key appears twice, the first occurrence counts.
pub fn plan(desired: &[Object], observed: &[Object], owner: &Owner, field_manager: &str) -> Plan {
    let mut observed_by_key: BTreeMap<ObjectKey, &Object> = BTreeMap::new();
    for object in observed {
        observed_by_key.entry(object.key()).or_insert(object);
    }
    let mut desired_by_key: BTreeMap<ObjectKey, &Object> = BTreeMap::new();
    for object in desired {
        desired_by_key.entry(object.key()).or_insert(object);
    }

    let mut entries: Vec<Entry> = desired_by_key
        .iter()
        .map(|(key, desired)| Entry {
            key: key.clone(),
            action: match observed_by_key.get(key) {
                None => Action::Create {
                    object: (*desired).clone(),
                },
                Some(observed) => compare(desired, observed, field_manager),
            },
        })
        .collect();
    entries.sort_by_key(|e| apply_rank(&e.key.kind));

    let mut prunes: Vec<Entry> = observed_by_key
        .iter()
        .filter(|(key, object)| !desired_by_key.contains_key(*key) && is_pruneable(object, owner))
        .map(|(key, _)| Entry {
            key: key.clone(),
            action: Action::Prune,
        })
        .collect();
    prunes.sort_by_key(|e| std::cmp::Reverse(apply_rank(&e.key.kind)));
    entries.extend(prunes);
    Plan { entries }
}

/// Compares one desired object with the observed object of the same key.
pub fn compare(desired: &Object, observed: &Object, field_manager: &str) -> Action {
    let kind = desired.kind();
    let desired_value = normalise_desired(desired);
    let ownership = Ownership::new(managed_entries(&observed.0), field_manager);
    let comparison = Comparer::compare(
        kind,
        desired.is_secret(),
        &ownership,
        &desired_value,
        &observed.0,
    );
    if comparison.changed.is_empty() && comparison.stale.is_empty() {
        return Action::Unchanged {
            yielded_paths: comparison.yielded,
        };
    }

    let mut expected = observed.0.clone();
    let mut operations = Vec::new();
    for path in &comparison.changed {
        if let Some(value) = compare::lookup(&desired_value, path) {
            let field = match path.elements().last() {
                Some(PathElement::Field(name)) => Some(name.as_str()),
                _ => None,
            };
            let stored = compare::stored_form(field, value);
            edit(&mut expected, &mut operations, path, Some(stored));
        }
    }
    for path in &comparison.stale {
        edit(&mut expected, &mut operations, path, None);
    }
    let mut apply_body = desired.0.clone();
    for path in &comparison.yielded {
        edit(&mut apply_body, &mut Vec::new(), path, None);
    }
    let changed_paths: Vec<FieldPath> = comparison
        .changed
        .into_iter()
        .chain(comparison.stale)
        .collect();
    let immutable_paths = changed_paths
        .iter()
        .filter(|path| {
            immutable_fields(kind)
                .iter()
                .any(|prefix| path.starts_with(&FieldPath::fields(prefix)))
        })
        .cloned()
        .collect();
    Action::Update {
        apply_body: Object(apply_body),
        json_patch: json_patch::Patch(operations),
        changed_paths,
        immutable_paths,
        yielded_paths: comparison.yielded,
    }
}

/// Sets (`Some`) or removes (`None`) the value at `path` in `target`, recording the RFC 6902
/// operation; each operation is applied at once so later pointers see earlier edits.
fn edit(
    target: &mut Value,
    operations: &mut Vec<PatchOperation>,
    path: &FieldPath,
    new: Option<Value>,
) {
    let Some((tokens, exists)) = compare::locate(target, path) else {
        return;
    };
    let path = PointerBuf::from_tokens(tokens);
    let operation = match (new, exists) {
        (Some(value), true) => PatchOperation::Replace(ReplaceOperation { path, value }),
        (Some(value), false) => PatchOperation::Add(AddOperation { path, value }),
        (None, true) => PatchOperation::Remove(RemoveOperation { path }),
        (None, false) => return,
    };
    if json_patch::patch(target, std::slice::from_ref(&operation)).is_ok() {
        operations.push(operation);
    }
}

/// The desired object as the server will store it: a Secret's `stringData` folded into `data`.
fn normalise_desired(desired: &Object) -> Cow<'_, Value> {
    if !desired.is_secret() {
        return Cow::Borrowed(&desired.0);
    }
    let mut value = desired.0.clone();
    let Some(map) = value.as_object_mut() else {
        return Cow::Owned(value);
    };
    if let Some(Value::Object(strings)) = map.remove("stringData") {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(data) = data {
            for (name, text) in strings {
                let bytes = text.as_str().unwrap_or_default().as_bytes();
                data.insert(name, Value::String(base64::encode(bytes)));
            }
        }
    }
    Cow::Owned(value)
}

/// Apply order: what others reference first (credentials, config, identities, RBAC, Services),
/// then workloads, then policies about them. Unknown kinds go last.
fn apply_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "Secret" => 1,
        "ConfigMap" => 2,
        "ServiceAccount" => 3,
        "ClusterRole" | "Role" => 4,
        "ClusterRoleBinding" | "RoleBinding" => 5,
        "Service" => 6,
        "StatefulSet" | "Deployment" | "DaemonSet" => 7,
        "PodDisruptionBudget" | "NetworkPolicy" | "HorizontalPodAutoscaler" => 8,
        _ => 9,
    }
}

/// Fields the API server refuses to change on an existing object of `kind`.
fn immutable_fields(kind: &str) -> &'static [&'static [&'static str]] {
    match kind {
        "StatefulSet" => &[
            &["spec", "selector"],
            &["spec", "serviceName"],
            &["spec", "volumeClaimTemplates"],
            &["spec", "podManagementPolicy"],
        ],
        "Deployment" | "DaemonSet" | "ReplicaSet" => &[&["spec", "selector"]],
        "Service" => &[&["spec", "clusterIP"], &["spec", "clusterIPs"]],
        "ClusterRoleBinding" | "RoleBinding" => &[&["roleRef"]],
        "Secret" => &[&["type"]],
        _ => &[],
    }
}

/// Only what provably belongs to this CR: our labels, and a controller reference to its UID
/// (cluster-scoped objects, which cannot reference a namespaced owner, carry the UID as a label).
fn is_pruneable(object: &Object, owner: &Owner) -> bool {
    if owner.uid.is_empty()
        || object.label(MANAGED_BY_LABEL) != Some(MANAGED_BY)
        || object.label(INSTANCE_LABEL) != Some(owner.name.as_str())
    {
        return false;
    }
    match object.namespace() {
        Some(namespace) => {
            namespace == owner.namespace && object.controller_uid() == Some(owner.uid.as_str())
        }
        None => object.label(OWNER_UID_LABEL) == Some(owner.uid.as_str()),
    }
}
