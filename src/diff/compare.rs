//! Comparing one desired object with its observed counterpart, field by field, on the fields the
//! operator owns: what differs, what another manager has taken over, and what our manager applied
//! before but no longer wants.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::api::Quantity;

use super::base64;
use super::managed::{FieldSet, ManagedEntry, key_values_match};
use super::path::{FieldPath, PathElement};

/// One step of the path the comparison is at, borrowed from the values being compared (or from a
/// managed-fields set): the walk pushes and pops these, and only a path that is reported is turned
/// into an owned [`FieldPath`].
#[derive(Clone, Copy, Debug)]
enum Step<'a> {
    /// A field of an object.
    Field(&'a str),
    /// The item of a keyed list, identified by the values of its merge-key fields `names`.
    Item(&'a Value, &'static [&'static str]),
    /// A position in a list compared as a whole.
    Index(usize),
    /// A step read from a managed-fields set.
    Element(&'a PathElement),
}

impl Step<'_> {
    fn field(&self) -> Option<&str> {
        match self {
            Step::Field(name) => Some(name),
            Step::Element(PathElement::Field(name)) => Some(name),
            _ => None,
        }
    }

    /// Whether this step selects a keyed list item (a `k:` element).
    fn is_keyed_item(&self) -> bool {
        matches!(self, Step::Item(..) | Step::Element(PathElement::Key(_)))
    }

    fn to_element(self) -> PathElement {
        match self {
            Step::Field(name) => PathElement::Field(name.to_string()),
            Step::Item(item, names) => PathElement::Key(item_key(item, names)),
            Step::Index(index) => PathElement::Index(index),
            Step::Element(element) => element.clone(),
        }
    }
}

fn field_path(steps: &[Step]) -> FieldPath {
    FieldPath(steps.iter().map(|step| step.to_element()).collect())
}

/// The merge keys of the list at `path` in an object of `kind`, as the Kubernetes OpenAPI schema
/// declares them (`x-kubernetes-list-map-keys`); `None` for lists compared as a whole.
fn merge_keys(kind: &str, path: &[Step]) -> Option<&'static [&'static str]> {
    let field = |i: usize| path.len().checked_sub(i).and_then(|at| path[at].field());
    let in_container = path
        .len()
        .checked_sub(2)
        .is_some_and(|at| path[at].is_keyed_item());
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

/// Whether two list items have the same merge key: what `keys_match` says of their `item_key`s,
/// without building them.
fn same_item(a: &Value, b: &Value, names: &[&str]) -> bool {
    names
        .iter()
        .all(|name| key_values_match(a.get(*name), b.get(*name), name))
}

/// Whether a list item is the one a `k:` element's merge key selects.
fn item_has_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter()
        .all(|(name, value)| key_values_match(item.get(name), Some(value), name))
}

/// The position of the list item a (non-field) path element selects.
fn position(items: &[Value], element: &PathElement) -> Option<usize> {
    match element {
        PathElement::Field(_) => None,
        PathElement::Key(key) => items.iter().position(|item| item_has_key(item, key)),
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
    /// Every entry other than ours, each marked whether the product lets it take our fields (see
    /// [`may_take_over`]).
    others: Vec<(FieldSet, bool)>,
}

impl Ownership {
    pub(crate) fn new(entries: Vec<ManagedEntry>, field_manager: &str) -> Ownership {
        let mut ownership = Ownership {
            ours: None,
            others: Vec::new(),
        };
        for entry in entries {
            if entry.manager == field_manager
                && entry.operation == "Apply"
                && entry.subresource.is_empty()
            {
                ownership.ours = Some(entry.fields);
            } else {
                let taker = entry.manager == MESHERY_SERVER_MANAGER
                    && entry.operation == "Apply"
                    && entry.subresource.is_empty();
                ownership.others.push((entry.fields, taker));
            }
        }
        ownership
    }

    /// A field we want but that the product deliberately leaves to the manager that took it.
    fn yielded(&self, path: &FieldPath) -> bool {
        self.ours.as_ref().is_some_and(|ours| !ours.contains(path))
            && may_take_over(path)
            && self
                .others
                .iter()
                .any(|(set, taker)| *taker && set.contains(path))
    }

    fn others_own(&self, path: &FieldPath) -> bool {
        self.others.iter().any(|(set, _)| set.contains(path))
    }
}

/// The field manager Meshery Server server-side-applies its MeshSync settings with.
pub const MESHERY_SERVER_MANAGER: &str = "meshery-server";

/// What the operator renders is authoritative: a field another client changed (`kubectl scale`,
/// `edit`, `patch`, a foreign server-side apply) is drift and is restored. The one deliberate
/// exception is Meshery Server's own apply of container `env` entries and `args` and pod-template
/// annotations (`meshery-compat.md`); an autoscaler gets `replicas` by the MeshSync's
/// `spec.autoscaled`, which leaves them out of the render instead.
fn may_take_over(path: &FieldPath) -> bool {
    let names: Vec<Option<&str>> = path
        .elements()
        .iter()
        .map(|element| match element {
            PathElement::Field(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    matches!(
        names.as_slice(),
        [
            Some("spec"),
            Some("template"),
            Some("metadata"),
            Some("annotations"),
            ..
        ] | [
            Some("spec"),
            Some("template"),
            Some("spec"),
            Some("containers"),
            None,
            Some("env" | "args"),
            ..
        ]
    )
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
    /// Where the walk is: pushed on the way down, popped on the way back.
    path: Vec<Step<'a>>,
    result: Comparison,
}

impl<'a> Comparer<'a> {
    pub(crate) fn compare(
        kind: &'a str,
        secret: bool,
        ownership: &'a Ownership,
        desired: &'a Value,
        observed: &'a Value,
    ) -> Comparison {
        let mut comparer = Comparer {
            kind,
            secret,
            ownership,
            path: Vec::with_capacity(16),
            result: Comparison::default(),
        };
        if let (Some(desired), Some(observed)) = (desired.as_object(), observed.as_object()) {
            for (name, value) in desired {
                if matches!(name.as_str(), "apiVersion" | "kind" | "status") {
                    continue;
                }
                comparer.path.push(Step::Field(name));
                comparer.walk(value, observed.get(name));
                comparer.path.pop();
            }
        }
        if let Some(ours) = &ownership.ours {
            comparer.stale(ours, Some(desired), observed);
        }
        comparer.result
    }

    /// Records the current path as changed, or as yielded when another manager took it over.
    fn report(&mut self) {
        let path = field_path(&self.path);
        if self.ownership.yielded(&path) {
            self.result.yielded.push(path);
        } else {
            self.result.changed.push(path);
        }
    }

    fn walk(&mut self, desired: &'a Value, observed: Option<&'a Value>) {
        if desired.is_null() {
            return;
        }
        let Some(observed) = observed.filter(|o| !o.is_null()) else {
            if !is_empty(desired) {
                self.report();
            }
            return;
        };
        match desired {
            Value::Object(_) if is_atomic_map(&self.path) => {
                let field = self.path.last().and_then(Step::field);
                if *with_atomic_defaults(field, desired) != *observed {
                    self.report();
                }
            }
            Value::Object(fields) => {
                let Some(observed) = observed.as_object() else {
                    self.report();
                    return;
                };
                for (name, value) in fields {
                    self.path.push(Step::Field(name));
                    self.walk(value, observed.get(name));
                    self.path.pop();
                }
            }
            Value::Array(items) => match merge_keys(self.kind, &self.path) {
                Some(names) => {
                    let Some(observed_items) = observed.as_array() else {
                        self.report();
                        return;
                    };
                    for item in items {
                        let found = observed_items.iter().find(|o| same_item(o, item, names));
                        self.path.push(Step::Item(item, names));
                        match found {
                            Some(found) => self.walk(item, Some(found)),
                            None => self.report(),
                        }
                        self.path.pop();
                    }
                }
                None => {
                    if !self.covers(desired, observed) {
                        self.report();
                    }
                }
            },
            _ => {
                if !self.covers(desired, observed) {
                    self.report();
                }
            }
        }
    }

    /// Whether `observed` means what `desired` says (at the current path): equal scalars (by
    /// meaning for quantities, int-or-string fields and Secret bytes), and inside whole-compared
    /// lists every desired field present, extra observed fields being server defaults.
    fn covers(&mut self, desired: &'a Value, observed: &'a Value) -> bool {
        if desired == observed {
            return true;
        }
        match (desired, observed) {
            (Value::Null, _) => true,
            (Value::Object(d), Value::Object(o)) => {
                d.iter().all(|(name, value)| match o.get(name) {
                    Some(found) => {
                        self.path.push(Step::Field(name));
                        let covered = self.covers(value, found);
                        self.path.pop();
                        covered
                    }
                    None => is_empty(value),
                })
            }
            (Value::Array(d), Value::Array(o)) => {
                d.len() == o.len()
                    && d.iter().zip(o).enumerate().all(|(i, (d, o))| {
                        self.path.push(Step::Index(i));
                        let covered = self.covers(d, o);
                        self.path.pop();
                        covered
                    })
            }
            (Value::Number(d), Value::Number(o)) => d.as_f64() == o.as_f64(),
            (Value::String(d), Value::String(o)) if self.is_secret_data() => {
                base64::decode(d).is_some_and(|d| base64::decode(o) == Some(d))
            }
            _ if is_quantity(&self.path) => match (quantity(desired), quantity(observed)) {
                (Some(d), Some(o)) => d == o,
                _ => false,
            },
            (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
                if is_int_or_string(&self.path) =>
            {
                *s == n.to_string()
            }
            _ => false,
        }
    }

    fn is_secret_data(&self) -> bool {
        self.secret && matches!(self.path.as_slice(), [data, _] if data.field() == Some("data"))
    }

    /// Finds fields our manager owns (below the current path) that are no longer desired and that
    /// would really go away.
    fn stale(&mut self, set: &'a FieldSet, desired: Option<&'a Value>, observed: &'a Value) {
        for (element, child) in set.children() {
            let Some(observed_child) = resolve(observed, element) else {
                continue;
            };
            if self.path.is_empty() && matches!(element, PathElement::Field(f) if f == "status") {
                continue;
            }
            self.path.push(Step::Element(element));
            match desired
                .and_then(|d| resolve(d, element))
                .filter(|d| !d.is_null())
            {
                None => {
                    let path = field_path(&self.path);
                    if !self.ownership.others_own(&path) {
                        self.result.stale.push(path);
                    }
                }
                Some(desired_child) => {
                    if !child.children().is_empty()
                        && !is_atomic(self.kind, &self.path, desired_child)
                    {
                        self.stale(child, Some(desired_child), observed_child);
                    }
                }
            }
            self.path.pop();
        }
    }
}

/// A desired list without merge keys is owned as a whole: its insides are not tracked separately.
fn is_atomic(kind: &str, path: &[Step], desired: &Value) -> bool {
    (desired.is_array() && merge_keys(kind, path).is_none()) || is_atomic_map(path)
}

/// Maps and structs the schema marks atomic (`x-kubernetes-map-type: atomic`,
/// `+structType=atomic`): label selectors (also `labelSelector` in affinity terms and spread
/// constraints) and node selectors, a binding's `roleRef`, the env-var selectors
/// (`fieldRef`, `resourceFieldRef`, `secretKeyRef`, `configMapKeyRef`), and the items of
/// `ownerReferences` and `imagePullSecrets`. An apply replaces them whole, so a key we no longer
/// set disappears and an extra key is drift; they compare exactly once the server's defaults are in
/// (see [`with_atomic_defaults`]).
fn is_atomic_map(path: &[Step]) -> bool {
    match path.split_last() {
        Some((last, parents)) if last.is_keyed_item() || matches!(last, Step::Index(_)) => {
            matches!(
                parents.last().and_then(Step::field),
                Some("ownerReferences" | "imagePullSecrets")
            )
        }
        Some((last, _)) => matches!(
            last.field(),
            Some(
                "selector"
                    | "podSelector"
                    | "namespaceSelector"
                    | "nodeSelector"
                    | "labelSelector"
                    | "roleRef"
                    | "fieldRef"
                    | "resourceFieldRef"
                    | "secretKeyRef"
                    | "configMapKeyRef"
            )
        ),
        None => false,
    }
}

/// `desired` with what the API server fills in inside an atomic struct: a `fieldRef` without
/// `apiVersion` reads back as `v1`, and a `resourceFieldRef` without `divisor` reads back as `"0"`
/// (a zero Quantity is serialised). Without these, every resync would see drift and re-apply, and a
/// repair's predicted object would differ from what the server stores.
pub(crate) fn with_atomic_defaults<'v>(field: Option<&str>, desired: &'v Value) -> Cow<'v, Value> {
    let default = match field {
        Some("fieldRef") => ("apiVersion", "v1"),
        Some("resourceFieldRef") => ("divisor", "0"),
        _ => return Cow::Borrowed(desired),
    };
    match desired.as_object() {
        Some(fields) if !fields.contains_key(default.0) => {
            let mut filled = fields.clone();
            filled.insert(default.0.to_string(), Value::from(default.1));
            Cow::Owned(Value::Object(filled))
        }
        _ => Cow::Borrowed(desired),
    }
}

/// `value` (found at a field named `field`) as the server stores it: [`with_atomic_defaults`] at
/// every atomic selector inside it too, so a repair that adds a whole container predicts its
/// `fieldRef`s with their `apiVersion`.
pub(crate) fn stored_form(field: Option<&str>, value: &Value) -> Value {
    let mut stored = with_atomic_defaults(field, value).into_owned();
    fill_nested_defaults(&mut stored);
    stored
}

fn fill_nested_defaults(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, child) in fields.iter_mut() {
                if let Cow::Owned(filled) = with_atomic_defaults(Some(name), child) {
                    *child = filled;
                }
                fill_nested_defaults(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(fill_nested_defaults),
        _ => {}
    }
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

fn field_names<'p>(path: &'p [Step]) -> impl DoubleEndedIterator<Item = &'p str> + Clone {
    path.iter().filter_map(|step| step.field())
}

/// Resource quantities: `resources.requests`/`limits` (also in claim templates), `sizeLimit`, `capacity`.
fn is_quantity(path: &[Step]) -> bool {
    let names = field_names(path);
    let resources = names
        .clone()
        .zip(names.clone().skip(1))
        .any(|(a, b)| a == "resources" && matches!(b, "requests" | "limits"));
    resources
        || names
            .clone()
            .any(|n| matches!(n, "sizeLimit" | "capacity" | "hard"))
}

fn quantity(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// Fields typed `IntOrString` where `8222` and `"8222"` are the same value.
fn is_int_or_string(path: &[Step]) -> bool {
    let mut names = field_names(path).rev();
    matches!(
        (names.next(), names.next()),
        (
            Some("targetPort" | "maxUnavailable" | "maxSurge" | "minAvailable"),
            _
        ) | (Some("port"), Some("httpGet" | "tcpSocket"))
    )
}
