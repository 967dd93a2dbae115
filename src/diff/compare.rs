//! Comparing one desired object with its observed counterpart, field by field, on the fields the
//! operator owns: what differs, what another manager has taken over, and what our manager applied
//! before but no longer wants.

use serde_json::{Map, Value};

use crate::api::Quantity;

use super::base64;
use super::managed::{FieldSet, ManagedEntry, keys_match};
use super::path::{FieldPath, PathElement};

/// The merge keys of the list at `path` in an object of `kind`, as the Kubernetes OpenAPI schema
/// declares them (`x-kubernetes-list-map-keys`); `None` for lists compared as a whole.
pub(crate) fn merge_keys(kind: &str, path: &[PathElement]) -> Option<&'static [&'static str]> {
    let field = |i: usize| match path.len().checked_sub(i).and_then(|at| path.get(at)) {
        Some(PathElement::Field(name)) => Some(name.as_str()),
        _ => None,
    };
    let in_container = matches!(
        path.len().checked_sub(2).and_then(|at| path.get(at)),
        Some(PathElement::Key(_))
    );
    match field(1)? {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets" => Some(&["name"]),
        "env" if in_container => Some(&["name"]),
        "volumeMounts" if in_container => Some(&["mountPath"]),
        "volumeDevices" if in_container => Some(&["devicePath"]),
        "ports" if in_container => Some(&["containerPort", "protocol"]),
        "ports" if kind == "Service" && path.len() == 2 && field(2) == Some("spec") => {
            Some(&["port", "protocol"])
        }
        "conditions" => Some(&["type"]),
        "ownerReferences" if path.len() == 2 => Some(&["uid"]),
        "hostAliases" => Some(&["ip"]),
        "topologySpreadConstraints" => Some(&["topologyKey", "whenUnsatisfiable"]),
        _ => None,
    }
}

/// The merge key of a list item, with a missing `protocol` filled in as the TCP the server defaults to.
pub(crate) fn item_key(item: &Value, names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|name| match item.get(*name) {
            Some(value) if !value.is_null() => Some(((*name).to_string(), value.clone())),
            _ if *name == "protocol" => Some(("protocol".to_string(), Value::String("TCP".into()))),
            _ => None,
        })
        .collect()
}

/// The position of the list item a (non-field) path element selects.
fn position(items: &[Value], element: &PathElement) -> Option<usize> {
    match element {
        PathElement::Field(_) => None,
        PathElement::Key(key) => {
            let names: Vec<&str> = key.keys().map(String::as_str).collect();
            items
                .iter()
                .position(|item| keys_match(&item_key(item, &names), key))
        }
        PathElement::Value(member) => items.iter().position(|item| item == member),
        PathElement::Index(index) => (*index < items.len()).then_some(*index),
    }
}

/// The value one path element selects inside `value`.
pub(crate) fn resolve<'v>(value: &'v Value, element: &PathElement) -> Option<&'v Value> {
    match element {
        PathElement::Field(name) => value.as_object()?.get(name),
        _ => {
            let items = value.as_array()?;
            items.get(position(items, element)?)
        }
    }
}

pub(crate) fn lookup<'v>(value: &'v Value, path: &FieldPath) -> Option<&'v Value> {
    path.elements().iter().try_fold(value, resolve)
}

/// Where `path` lies inside `value` as JSON-pointer tokens, and whether something is there now.
/// Every parent must exist; a missing last field or list item points where an `add` would put it
/// (a list item one past the end).
pub(crate) fn locate(value: &Value, path: &FieldPath) -> Option<(Vec<String>, bool)> {
    let (last, parents) = path.elements().split_last()?;
    let mut tokens = Vec::with_capacity(path.elements().len());
    let mut current = value;
    for element in parents {
        let (token, next) = step(current, element)?;
        tokens.push(token);
        current = next;
    }
    if let Some((token, _)) = step(current, last) {
        tokens.push(token);
        return Some((tokens, true));
    }
    match (last, current) {
        (PathElement::Field(name), Value::Object(_)) => tokens.push(name.clone()),
        (PathElement::Key(_) | PathElement::Value(_), Value::Array(items)) => {
            tokens.push(items.len().to_string())
        }
        _ => return None,
    }
    Some((tokens, false))
}

fn step<'v>(value: &'v Value, element: &PathElement) -> Option<(String, &'v Value)> {
    match element {
        PathElement::Field(name) => value
            .as_object()?
            .get_key_value(name)
            .map(|(k, v)| (k.clone(), v)),
        _ => {
            let items = value.as_array()?;
            let at = position(items, element)?;
            Some((at.to_string(), &items[at]))
        }
    }
}

/// Who owns what on the observed object, from the operator's point of view.
pub(crate) struct Ownership {
    /// Our manager's `Apply` entry; `None` when we never applied this object (then we own nothing yet).
    ours: Option<FieldSet>,
    /// Entries that deliberately took fields over: other managers' applies and writes through a
    /// subresource (an HPA scaling through `/scale`). An imperative edit of the main resource is not one.
    takers: Vec<FieldSet>,
    /// Every entry other than ours.
    others: Vec<FieldSet>,
}

impl Ownership {
    pub(crate) fn new(entries: Vec<ManagedEntry>, field_manager: &str) -> Ownership {
        let mut ownership = Ownership {
            ours: None,
            takers: Vec::new(),
            others: Vec::new(),
        };
        for entry in entries {
            if entry.manager == field_manager
                && entry.operation == "Apply"
                && entry.subresource.is_empty()
            {
                ownership.ours = Some(entry.fields);
            } else {
                if entry.operation == "Apply" || !entry.subresource.is_empty() {
                    ownership.takers.push(entry.fields.clone());
                }
                ownership.others.push(entry.fields);
            }
        }
        ownership
    }

    /// A field we want but another manager took from us after we applied: not ours to fight over.
    fn yielded(&self, path: &FieldPath) -> bool {
        self.ours.as_ref().is_some_and(|ours| !ours.contains(path))
            && self.takers.iter().any(|set| set.contains(path))
    }

    fn others_own(&self, path: &FieldPath) -> bool {
        self.others.iter().any(|set| set.contains(path))
    }
}

/// The outcome of comparing one object.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    /// Owned fields whose observed value differs from the desired one (or is missing).
    pub changed: Vec<FieldPath>,
    /// Fields our manager applied before, no longer desires, and nobody else holds: the next apply removes them.
    pub stale: Vec<FieldPath>,
    /// Desired fields another manager took over; left out of the apply body.
    pub yielded: Vec<FieldPath>,
}

pub(crate) struct Comparer<'a> {
    kind: &'a str,
    secret: bool,
    ownership: &'a Ownership,
    result: Comparison,
}

impl<'a> Comparer<'a> {
    pub(crate) fn compare(
        kind: &'a str,
        secret: bool,
        ownership: &'a Ownership,
        desired: &Value,
        observed: &Value,
    ) -> Comparison {
        let mut comparer = Comparer {
            kind,
            secret,
            ownership,
            result: Comparison::default(),
        };
        let root = FieldPath::default();
        if let (Some(desired), Some(observed)) = (desired.as_object(), observed.as_object()) {
            for (name, value) in desired {
                if matches!(name.as_str(), "apiVersion" | "kind" | "status") {
                    continue;
                }
                let path = root.child(PathElement::Field(name.clone()));
                comparer.walk(&path, value, observed.get(name));
            }
        }
        if let Some(ours) = &ownership.ours {
            comparer.stale(ours, &root, Some(desired), observed);
        }
        comparer.result
    }

    fn report(&mut self, path: &FieldPath) {
        if self.ownership.yielded(path) {
            self.result.yielded.push(path.clone());
        } else {
            self.result.changed.push(path.clone());
        }
    }

    fn walk(&mut self, path: &FieldPath, desired: &Value, observed: Option<&Value>) {
        if desired.is_null() {
            return;
        }
        let Some(observed) = observed.filter(|o| !o.is_null()) else {
            if !is_empty(desired) {
                self.report(path);
            }
            return;
        };
        match desired {
            Value::Object(_) if is_atomic_map(path) => {
                if desired != observed {
                    self.report(path);
                }
            }
            Value::Object(fields) => {
                let Some(observed) = observed.as_object() else {
                    self.report(path);
                    return;
                };
                for (name, value) in fields {
                    self.walk(
                        &path.child(PathElement::Field(name.clone())),
                        value,
                        observed.get(name),
                    );
                }
            }
            Value::Array(items) => match merge_keys(self.kind, path.elements()) {
                Some(names) => {
                    let Some(observed_items) = observed.as_array() else {
                        self.report(path);
                        return;
                    };
                    for item in items {
                        let key = item_key(item, names);
                        let found = observed_items
                            .iter()
                            .find(|o| keys_match(&item_key(o, names), &key));
                        let item_path = path.child(PathElement::Key(key));
                        match found {
                            Some(found) => self.walk(&item_path, item, Some(found)),
                            None => self.report(&item_path),
                        }
                    }
                }
                None => {
                    if !self.covers(path, desired, observed) {
                        self.report(path);
                    }
                }
            },
            _ => {
                if !self.covers(path, desired, observed) {
                    self.report(path);
                }
            }
        }
    }

    /// Whether `observed` means what `desired` says: equal scalars (by meaning for quantities,
    /// int-or-string fields and Secret bytes), and inside whole-compared lists every desired field
    /// present, extra observed fields being server defaults.
    fn covers(&self, path: &FieldPath, desired: &Value, observed: &Value) -> bool {
        if desired == observed {
            return true;
        }
        match (desired, observed) {
            (Value::Null, _) => true,
            (Value::Object(d), Value::Object(o)) => {
                d.iter().all(|(name, value)| match o.get(name) {
                    Some(found) => {
                        self.covers(&path.child(PathElement::Field(name.clone())), value, found)
                    }
                    None => is_empty(value),
                })
            }
            (Value::Array(d), Value::Array(o)) => {
                d.len() == o.len()
                    && d.iter()
                        .zip(o)
                        .enumerate()
                        .all(|(i, (d, o))| self.covers(&path.child(PathElement::Index(i)), d, o))
            }
            (Value::Number(d), Value::Number(o)) => d.as_f64() == o.as_f64(),
            (Value::String(d), Value::String(o)) if self.is_secret_data(path) => {
                base64::decode(d).is_some_and(|d| base64::decode(o) == Some(d))
            }
            _ if is_quantity(path) => match (quantity(desired), quantity(observed)) {
                (Some(d), Some(o)) => d == o,
                _ => false,
            },
            (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
                if is_int_or_string(path) =>
            {
                *s == n.to_string()
            }
            _ => false,
        }
    }

    fn is_secret_data(&self, path: &FieldPath) -> bool {
        self.secret && matches!(path.elements(), [PathElement::Field(data), _] if data == "data")
    }

    /// Finds fields our manager owns that are no longer desired and that would really go away.
    fn stale(
        &mut self,
        set: &FieldSet,
        path: &FieldPath,
        desired: Option<&Value>,
        observed: &Value,
    ) {
        for (element, child) in set.children() {
            let Some(observed_child) = resolve(observed, element) else {
                continue;
            };
            let child_path = path.child(element.clone());
            if path.elements().is_empty()
                && matches!(element, PathElement::Field(f) if f == "status")
            {
                continue;
            }
            match desired
                .and_then(|d| resolve(d, element))
                .filter(|d| !d.is_null())
            {
                None => {
                    if !self.ownership.others_own(&child_path) {
                        self.result.stale.push(child_path);
                    }
                }
                Some(desired_child) => {
                    if !child.children().is_empty()
                        && !is_atomic(self.kind, &child_path, desired_child)
                    {
                        self.stale(child, &child_path, Some(desired_child), observed_child);
                    }
                }
            }
        }
    }
}

/// A desired list without merge keys is owned as a whole: its insides are not tracked separately.
fn is_atomic(kind: &str, path: &FieldPath, desired: &Value) -> bool {
    (desired.is_array() && merge_keys(kind, path.elements()).is_none()) || is_atomic_map(path)
}

/// Maps the schema marks `x-kubernetes-map-type: atomic`: label selectors and node selectors. They
/// are replaced whole by an apply, so a key we no longer set disappears and an extra key is drift;
/// nothing defaults inside them, so they compare exactly.
fn is_atomic_map(path: &FieldPath) -> bool {
    matches!(
        path.elements().last(),
        Some(PathElement::Field(name)) if matches!(name.as_str(), "selector" | "podSelector" | "namespaceSelector" | "nodeSelector")
    )
}

/// Zero values an API server drops on the way in (Go's `omitempty`): absent and empty mean the same.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
    }
}

fn field_names(path: &FieldPath) -> impl Iterator<Item = &str> {
    path.elements().iter().filter_map(|e| match e {
        PathElement::Field(name) => Some(name.as_str()),
        _ => None,
    })
}

/// Resource quantities: `resources.requests`/`limits` (also in claim templates), `sizeLimit`, `capacity`.
fn is_quantity(path: &FieldPath) -> bool {
    let names: Vec<&str> = field_names(path).collect();
    let resources = names
        .windows(2)
        .any(|w| w[0] == "resources" && matches!(w[1], "requests" | "limits"));
    resources
        || names
            .iter()
            .any(|n| matches!(*n, "sizeLimit" | "capacity" | "hard"))
}

fn quantity(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// Fields typed `IntOrString` where `8222` and `"8222"` are the same value.
fn is_int_or_string(path: &FieldPath) -> bool {
    let names: Vec<&str> = field_names(path).collect();
    matches!(
        names.as_slice(),
        [
            ..,
            "targetPort" | "maxUnavailable" | "maxSurge" | "minAvailable"
        ] | [.., "httpGet" | "tcpSocket", "port"]
    )
}
