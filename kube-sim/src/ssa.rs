//! Server-side apply: merging an applied configuration into a live object and tracking field ownership.
//!
//! This follows the behaviour of the real kube-apiserver (the structured-merge-diff library driven by
//! `k8s.io/apiserver`'s managed-fields machinery), re-implemented from its documented semantics:
//!
//! * **Apply** (`apply`): the applied configuration's field set (every leaf, every list element, every
//!   map entry, every empty object) becomes the applier's `Apply` entry. The configuration is merged
//!   into the live object (structs and maps field by field, associative lists by key, sets by value,
//!   atomic lists and `x-kubernetes-map-type: atomic` maps replaced whole, list order as the real
//!   merge keeps it). Fields that the applier owned at its last apply and no longer applies are
//!   removed unless another manager still owns them. Then the merged object is compared with the live
//!   one: fields that another manager owns and whose value changed (or that were added) are
//!   conflicts, reported all at once; with `force` they move to the applier. Fields that the
//!   comparison finds removed are dropped from every other manager.
//! * **Update** (`record_update`): the fields that a write added or changed become the writer's
//!   `Update` entry (one per manager + apiVersion + subresource) and leave every other entry; removed
//!   fields leave every entry. Entries that end up empty are dropped.
//! * The server-owned parts (`apiVersion`, `kind`, `metadata` itself, `metadata.name`, `namespace`,
//!   `uid`, `resourceVersion`, `generation`, `creationTimestamp`, `selfLink`, `clusterName`,
//!   `managedFields`) are never owned, as the real "strip meta" step does.
//! * The main resource never applies/owns `.status`; the `status` subresource applies/owns only
//!   `.status` (the real "reset fields" of a kind with a status subresource).
//!
//! Known differences from the real server are listed on [`KNOWN_DIFFERENCES`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::list_keys::{ListType, Schema};

/// Real-server behaviours this module does not reproduce (also documented at each place).
pub const KNOWN_DIFFERENCES: &[&str] = &[
    "the `status` of a kind is always treated as a status subresource (never applied through the main \
     resource), also for custom resources whose CRD does not enable the status subresource",
    "conflict messages do not say `using <apiVersion>` for Update managers",
    "no conversion between API versions: every manager's set is read as if it were in the applied version",
    "a config value that is null is owned and removes the field (as the typed conversion does), \
     but the real server may keep a null in a custom resource whose schema marks the field nullable",
    "duplicate keys in a live associative list are not tolerated specially (the first element wins)",
    "number equality follows serde_json (1 and 1.0 differ)",
    "`k:`/`v:` JSON in fieldsV1 does not HTML-escape `<`, `>`, `&` as Go's encoder does",
    "fields a kind does not declare are accepted (the real server answers 500 \"failed to create \
     typed patch object (...): .spec.x: field not declared in schema\"): only list keys are checked",
    "no defaulting, validation or admission: the caller defaults and validates around apply()",
];

// ---------------------------------------------------------------------------------------------
// Path elements and field sets
// ---------------------------------------------------------------------------------------------

/// One step in a field path, as fieldsV1 spells it.
#[derive(Clone, Debug)]
pub enum PathElement {
    /// `f:<name>`: a struct field or a map entry.
    Field(String),
    /// `k:{...}`: an associative-list element by its key fields, sorted by name.
    Key(Vec<(String, Value)>),
    /// `v:<json>`: a set-list element by value.
    Value(Value),
    /// `i:<n>`: a list element by index (only read, never produced for apply).
    Index(u64),
}

fn value_rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

/// A total order on JSON values (for sorting path elements).
fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x.cmp(&y);
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x.cmp(&y);
            }
            let (fx, fy) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            fx.partial_cmp(&fy)
                .unwrap_or(Ordering::Equal)
                .then_with(|| x.to_string().cmp(&y.to_string()))
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (i, j) in x.iter().zip(y) {
                let c = cmp_value(i, j);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|a, b| a.0.cmp(b.0));
            ys.sort_by(|a, b| a.0.cmp(b.0));
            for ((ka, va), (kb, vb)) in xs.iter().zip(&ys) {
                let c = ka.cmp(kb).then_with(|| cmp_value(va, vb));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => value_rank(a).cmp(&value_rank(b)),
    }
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The fieldsV1 spelling: `f:name`, `k:{"a":1}`, `v:"x"`, `i:0`.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(n) => format!("f:{n}"),
            PathElement::Key(k) => format!("k:{}", key_json(k)),
            PathElement::Value(v) => format!("v:{}", compact(v)),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse one fieldsV1 key (not `.`).
    pub fn from_fields_v1_key(s: &str) -> Result<Self, String> {
        if let Some(n) = s.strip_prefix("f:") {
            return Ok(PathElement::Field(n.to_string()));
        }
        if let Some(k) = s.strip_prefix("k:") {
            let v: Value =
                serde_json::from_str(k).map_err(|e| format!("bad key path element {s:?}: {e}"))?;
            let Value::Object(m) = v else {
                return Err(format!("key path element {s:?} is not an object"));
            };
            let mut fields: Vec<(String, Value)> = m.into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            return Ok(PathElement::Key(fields));
        }
        if let Some(v) = s.strip_prefix("v:") {
            let v: Value = serde_json::from_str(v)
                .map_err(|e| format!("bad value path element {s:?}: {e}"))?;
            return Ok(PathElement::Value(v));
        }
        if let Some(i) = s.strip_prefix("i:") {
            return i
                .parse()
                .map(PathElement::Index)
                .map_err(|e| format!("bad index path element {s:?}: {e}"));
        }
        Err(format!("unknown path element {s:?}"))
    }

    /// The human spelling used in conflict messages: `.name`, `[name="nats"]`, `[="x"]`, `[0]`.
    pub fn to_human(&self) -> String {
        match self {
            PathElement::Field(n) => format!(".{n}"),
            PathElement::Key(k) => {
                let parts: Vec<String> = k
                    .iter()
                    .map(|(n, v)| format!("{n}={}", compact(v)))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(v) => format!("[={}]", compact(v)),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for PathElement {}
impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PathElement {
    /// The real order: field names, then keys, then values, then indexes.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((na, va), (nb, vb)) in a.iter().zip(b) {
                    let c = na.cmp(nb).then_with(|| cmp_value(va, vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => cmp_value(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `{"a":1,"b":"x"}` with keys sorted, values as in the object.
fn key_json(k: &[(String, Value)]) -> String {
    let mut sorted: Vec<&(String, Value)> = k.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<String> = sorted
        .iter()
        .map(|(n, v)| format!("{}:{}", compact(&Value::String(n.clone())), compact(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A path from the object root.
pub type Path = Vec<PathElement>;

/// Render a path as the real server does in conflict messages, e.g.
/// `.spec.template.spec.containers[name="nats"].image`.
pub fn path_to_string(p: &[PathElement]) -> String {
    p.iter().map(PathElement::to_human).collect()
}

/// The field set a managedFields entry's fieldsV1 encodes.
///
/// Like the real `fieldpath.Set`: `members` are owned paths ending here, `children` are the
/// sub-sets below a path element. A path element that is both a member and has children is
/// encoded with `".": {}` inside its object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a fieldsV1 object. Unknown keys are ignored (see [`FieldSet::try_from_fields_v1`]).
    pub fn from_fields_v1(v: &Value) -> Self {
        Self::parse(v, false).unwrap_or_default()
    }

    /// Parse a fieldsV1 object, failing on anything malformed.
    pub fn try_from_fields_v1(v: &Value) -> Result<Self, String> {
        Self::parse(v, true)
    }

    fn parse(v: &Value, strict: bool) -> Result<Self, String> {
        let mut out = FieldSet::new();
        let Some(m) = v.as_object() else {
            return if strict {
                Err("fieldsV1 must be an object".into())
            } else {
                Ok(out)
            };
        };
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let pe = match PathElement::from_fields_v1_key(k) {
                Ok(pe) => pe,
                Err(e) if strict => return Err(e),
                Err(_) => continue,
            };
            let cm = child.as_object();
            let is_member = cm.is_none_or(|c| c.is_empty() || c.contains_key("."));
            if is_member {
                out.members.insert(pe.clone());
            }
            let sub = Self::parse(child, strict)?;
            if !sub.is_empty() {
                out.children.insert(pe, sub);
            }
        }
        Ok(out)
    }

    /// Encode as fieldsV1 (`.` first, then path elements in the real sort order).
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            let v = match self.children.get(pe) {
                Some(c) => Value::Object(c.emit(self.members.contains(pe))),
                None => Value::Object(Map::new()),
            };
            out.insert(pe.to_fields_v1_key(), v);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Add a path (the empty path is ignored: the root is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [pe] => {
                self.members.insert(pe.clone());
            }
            [pe, rest @ ..] => self.children.entry(pe.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [pe] => self.members.contains(pe),
            [pe, rest @ ..] => self.children.get(pe).is_some_and(|c| c.has(rest)),
        }
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(pe) {
                c.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    pub fn union(&self, o: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(o.members.iter().cloned());
        for (pe, c) in &o.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths of `self` that are not paths of `o` (exact paths: a member of `o` does not remove
    /// `self`'s paths below it).
    pub fn difference(&self, o: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&o.members).cloned().collect();
        for (pe, c) in &self.children {
            let d = match o.children.get(pe) {
                Some(oc) => c.difference(oc),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// `self` minus `o`, where a member of `o` also removes everything below it.
    pub fn recursive_difference(&self, o: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&o.members).cloned().collect();
        for (pe, c) in &self.children {
            if o.members.contains(pe) {
                continue;
            }
            let d = match o.children.get(pe) {
                Some(oc) => c.recursive_difference(oc),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    pub fn intersection(&self, o: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.intersection(&o.members).cloned().collect();
        for (pe, c) in &self.children {
            if let Some(oc) = o.children.get(pe) {
                let i = c.intersection(oc);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Only the paths under the top-level field `name`.
    fn only_under(&self, name: &str) -> FieldSet {
        let pe = PathElement::Field(name.to_string());
        let mut out = FieldSet::new();
        if self.members.contains(&pe) {
            out.members.insert(pe.clone());
        }
        if let Some(c) = self.children.get(&pe) {
            out.children.insert(pe, c.clone());
        }
        out
    }

    fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    /// The apiVersion of the conflicting entry when it is an Update (the real server names it:
    /// `"m" using apps/v1`); None when the manager applied.
    pub update_api_version: Option<String>,
    /// Human path like `.spec.replicas` or `.spec.template.spec.containers[name="nats"].image`.
    pub field: String,
}

impl Conflict {
    /// The conflicting manager as the real server prints it.
    pub fn manager_label(&self) -> String {
        match &self.update_api_version {
            Some(av) => format!("{:?} using {av}", self.manager),
            None => format!("{:?}", self.manager),
        }
    }
}

/// The real server's wording: `Apply failed with 1 conflict: conflict with "m": .spec.replicas`;
/// for several, per manager (sorted): `Apply failed with 3 conflicts: conflicts with "a":\n- .x\n
/// conflicts with "b" using v1:\n- .y\n- .z`.
pub fn conflicts_message(cs: &[Conflict]) -> String {
    if let [c] = cs {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager_label(),
            c.field
        );
    }
    let mut by_manager: Vec<(&Conflict, Vec<&str>)> = Vec::new();
    for c in cs {
        let same = |(m, _): &&mut (&Conflict, Vec<&str>)| {
            m.manager == c.manager && m.update_api_version == c.update_api_version
        };
        match by_manager.iter_mut().find(same) {
            Some((_, fs)) => fs.push(&c.field),
            None => by_manager.push((c, vec![&c.field])),
        }
    }
    by_manager.sort_by(|(a, _), (b, _)| {
        (&a.manager, &a.update_api_version).cmp(&(&b.manager, &b.update_api_version))
    });
    let lines: Vec<String> = by_manager
        .iter()
        .flat_map(|(m, fs)| {
            std::iter::once(format!("conflicts with {}:", m.manager_label()))
                .chain(fs.iter().map(|f| format!("- {f}")))
        })
        .collect();
    format!(
        "Apply failed with {} conflicts: {}",
        cs.len(),
        lines.join("\n")
    )
}

#[derive(Debug, PartialEq)]
pub enum ApplyError {
    Conflicts(Vec<Conflict>),
    Invalid(String),
}

/// Prefix of the message the real server gives when the applied configuration cannot be read
/// against the schema (e.g. a map-list element without its key field). The real server answers
/// those with **500 Internal Server Error** ("Internal error occurred: failed to create typed patch
/// object ..."), not 422; see [`ApplyError::http_status`].
pub const TYPED_PATCH_ERROR_PREFIX: &str = "failed to create typed patch object";

impl ApplyError {
    /// The HTTP status the real kube-apiserver answers with: 409 for conflicts, 500 for a
    /// configuration that does not fit the schema (missing/duplicate list keys), 400 otherwise
    /// (missing apiVersion/kind, managedFields set in the configuration).
    pub fn http_status(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid(m) if m.starts_with(TYPED_PATCH_ERROR_PREFIX) => 500,
            ApplyError::Invalid(_) => 400,
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Invalid(m) => write!(f, "{m}"),
            ApplyError::Conflicts(cs) => write!(f, "{}", conflicts_message(cs)),
        }
    }
}

impl std::error::Error for ApplyError {}

// ---------------------------------------------------------------------------------------------
// Schema-driven walks
// ---------------------------------------------------------------------------------------------

struct Walker<'a> {
    schema: &'a dyn Schema,
}

/// The kind of node a value is at a path.
enum Shape {
    /// A granular struct or map: walked key by key.
    Object,
    /// A set or associative list: walked element by element.
    List(ListType),
    /// A scalar, an atomic list or an atomic map: one leaf.
    Leaf,
}

impl<'a> Walker<'a> {
    fn names(names: &[String]) -> Vec<&str> {
        names.iter().map(String::as_str).collect()
    }

    fn shape(&self, v: &Value, names: &[String]) -> Shape {
        let n = Self::names(names);
        match v {
            Value::Object(_) if !self.schema.is_atomic_struct(&n) => Shape::Object,
            Value::Array(_) => match self.schema.list_type(&n) {
                ListType::Atomic => Shape::Leaf,
                lt => Shape::List(lt),
            },
            _ => Shape::Leaf,
        }
    }

    /// The path element of one list element. `strict` (for applied configurations) rejects elements
    /// without key fields; lenient mode (live objects) keys them by what they have.
    fn element_pe(
        &self,
        lt: &ListType,
        names: &[String],
        item: &Value,
        index: usize,
        strict: bool,
    ) -> Result<PathElement, String> {
        match lt {
            ListType::Set => Ok(PathElement::Value(item.clone())),
            ListType::Atomic => Ok(PathElement::Index(index as u64)),
            ListType::Map(keys) => {
                let Some(m) = item.as_object() else {
                    return if strict {
                        Err(format!(
                            "element {index}: associative list with keys may not have non-map elements"
                        ))
                    } else {
                        Ok(PathElement::Index(index as u64))
                    };
                };
                let n = Self::names(names);
                let mut fields = Vec::with_capacity(keys.len());
                for k in keys {
                    match m.get(k) {
                        Some(v) if !v.is_null() => fields.push((k.clone(), v.clone())),
                        _ => match self.schema.key_default(&n, k) {
                            Some(d) => fields.push((k.clone(), d)),
                            None if strict => {
                                return Err(format!(
                                    "element {index}: associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                                ));
                            }
                            None => {}
                        },
                    }
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(PathElement::Key(fields))
            }
        }
    }

    /// The path elements of a list's items, checking (strict) that keys are present and unique.
    fn element_pes(
        &self,
        lt: &ListType,
        names: &[String],
        items: &[Value],
        path: &[PathElement],
        strict: bool,
    ) -> Result<Vec<PathElement>, String> {
        let mut out: Vec<PathElement> = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let pe = self
                .element_pe(lt, names, item, i, strict)
                .map_err(|e| format!("{}: {e}", path_to_string(path)))?;
            if !seen.insert(pe.clone()) && strict {
                return Err(format!(
                    "{}: duplicate entries for key {}",
                    path_to_string(path),
                    pe.to_human()
                ));
            }
            out.push(pe);
        }
        Ok(out)
    }

    // --- field set of an object -------------------------------------------------------------

    /// The set of fields an object sets (what an applied configuration owns).
    fn to_field_set(&self, v: &Value, strict: bool) -> Result<FieldSet, String> {
        let mut set = FieldSet::new();
        self.tfs(v, &mut Vec::new(), &mut Vec::new(), &mut set, strict)?;
        Ok(set)
    }

    fn tfs(
        &self,
        v: &Value,
        names: &mut Vec<String>,
        path: &mut Path,
        set: &mut FieldSet,
        strict: bool,
    ) -> Result<(), String> {
        match self.shape(v, names) {
            Shape::Object => {
                let m = v.as_object().expect("object shape");
                for (k, child) in m {
                    let is_map = self.schema.is_map_entry(&Self::names(names), k);
                    names.push(k.clone());
                    path.push(PathElement::Field(k.clone()));
                    self.tfs(child, names, path, set, strict)?;
                    // Map entries are always members; a struct field is a member when it holds a
                    // leaf (handled below), null, or an empty object.
                    let empty_obj = child.as_object().is_some_and(Map::is_empty);
                    if is_map || child.is_null() || empty_obj {
                        set.insert(path);
                    }
                    path.pop();
                    names.pop();
                }
            }
            Shape::List(lt) => {
                let items = v.as_array().expect("list shape");
                let pes = self.element_pes(&lt, names, items, path, strict)?;
                for (item, pe) in items.iter().zip(pes) {
                    path.push(pe);
                    self.tfs(item, names, path, set, strict)?;
                    set.insert(path);
                    path.pop();
                }
            }
            Shape::Leaf => set.insert(path),
        }
        Ok(())
    }

    // --- merge -------------------------------------------------------------------------------

    fn merge(&self, l: &Value, r: &Value, names: &mut Vec<String>) -> Value {
        match (l, r) {
            (Value::Object(lm), Value::Object(rm))
                if !self.schema.is_atomic_struct(&Self::names(names)) =>
            {
                let mut out = lm.clone();
                for (k, rv) in rm {
                    names.push(k.clone());
                    let merged = match lm.get(k) {
                        Some(lv) => self.merge(lv, rv, names),
                        None => rv.clone(),
                    };
                    names.pop();
                    out.insert(k.clone(), merged);
                }
                Value::Object(out)
            }
            (Value::Array(la), Value::Array(ra)) => {
                match self.schema.list_type(&Self::names(names)) {
                    ListType::Atomic => r.clone(),
                    lt => Value::Array(self.merge_list(&lt, la, ra, names)),
                }
            }
            _ => r.clone(),
        }
    }

    /// Merge two granular lists, keeping the real merge's order: the live order for items only
    /// live has, the applied order for items the configuration mentions, new items placed where the
    /// configuration puts them relative to the shared ones.
    fn merge_list(
        &self,
        lt: &ListType,
        la: &[Value],
        ra: &[Value],
        names: &mut Vec<String>,
    ) -> Vec<Value> {
        let lpes = self
            .element_pes(lt, names, la, &[], false)
            .unwrap_or_default();
        let rpes = self
            .element_pes(lt, names, ra, &[], false)
            .unwrap_or_default();
        let index_of = |pes: &[PathElement], pe: &PathElement| pes.iter().position(|p| p == pe);
        let in_r = |pe: &PathElement| index_of(&rpes, pe);
        let in_l = |pe: &PathElement| index_of(&lpes, pe);

        let mut shared: std::collections::VecDeque<&PathElement> =
            rpes.iter().filter(|pe| in_l(pe).is_some()).collect();
        let mut next_shared = shared.pop_front();
        let mut merged_r: BTreeSet<PathElement> = BTreeSet::new();
        let mut out = Vec::with_capacity(la.len().max(ra.len()));
        let (mut li, mut ri) = (0usize, 0usize);
        let merge_item =
            |w: &Self, pe: &PathElement, r: &Value, names: &mut Vec<String>| match in_l(pe) {
                Some(j) => w.merge(&la[j], r, names),
                None => r.clone(),
            };
        while li < lpes.len() || ri < rpes.len() {
            if li < lpes.len() && ri < rpes.len() {
                if lpes[li] == rpes[ri] {
                    let pe = &rpes[ri];
                    merged_r.insert(pe.clone());
                    let r = &ra[in_r(pe).unwrap_or(ri)];
                    out.push(merge_item(self, pe, r, names));
                    li += 1;
                    ri += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if in_r(&lpes[li]).is_some() && next_shared.is_some_and(|ns| *ns != lpes[li]) {
                    // A shared item, but not the one the applied order wants next.
                    li += 1;
                    continue;
                }
            }
            if li < lpes.len() {
                let pe = &lpes[li];
                if in_r(pe).is_none() {
                    out.push(la[li].clone());
                    li += 1;
                    continue;
                } else if merged_r.contains(pe) {
                    li += 1;
                    continue;
                }
            }
            if ri < rpes.len() {
                let pe = &rpes[ri];
                let first = merged_r.insert(pe.clone());
                if first {
                    let r = &ra[in_r(pe).unwrap_or(ri)];
                    out.push(merge_item(self, pe, r, names));
                }
                ri += 1;
                if next_shared.is_some_and(|ns| ns == pe) {
                    next_shared = shared.pop_front();
                }
            }
        }
        out
    }

    // --- compare -----------------------------------------------------------------------------

    fn compare(&self, l: Option<&Value>, r: Option<&Value>) -> Comparison {
        let mut c = Comparison::default();
        self.cmp_node(l, r, &mut Vec::new(), &mut Vec::new(), &mut c);
        c
    }

    fn cmp_node(
        &self,
        l: Option<&Value>,
        r: Option<&Value>,
        names: &mut Vec<String>,
        path: &mut Path,
        c: &mut Comparison,
    ) {
        // A null on one side takes the shape of the other side (an empty container), as in the
        // real comparison where null is a wildcard: a typed empty object's `containers: null`
        // followed by a list is not "added", only its elements are.
        let empty_obj = Value::Object(Map::new());
        let empty_arr = Value::Array(Vec::new());
        let as_empty_like = |other: Option<&Value>| match other {
            Some(Value::Object(_)) => Some(&empty_obj),
            Some(Value::Array(_)) => Some(&empty_arr),
            _ => None,
        };
        let (l, r) = match (l, r) {
            (Some(Value::Null), Some(o)) if !o.is_null() => (as_empty_like(r).or(l), Some(o)),
            (Some(o), Some(Value::Null)) if !o.is_null() => (Some(o), as_empty_like(l).or(r)),
            _ => (l, r),
        };
        let ls = l.map(|v| self.shape(v, names));
        let rs = r.map(|v| self.shape(v, names));
        let container = match (&ls, &rs) {
            (Some(Shape::Object), Some(Shape::Object))
            | (Some(Shape::Object), None)
            | (None, Some(Shape::Object)) => Some(None),
            (Some(Shape::List(lt)), Some(Shape::List(_)))
            | (Some(Shape::List(lt)), None)
            | (None, Some(Shape::List(lt))) => Some(Some(lt.clone())),
            _ => None,
        };
        match container {
            Some(None) => {
                let empty = Map::new();
                let lm = l.and_then(Value::as_object).unwrap_or(&empty);
                let rm = r.and_then(Value::as_object).unwrap_or(&empty);
                let mut keys: Vec<&String> = lm.keys().collect();
                keys.extend(rm.keys().filter(|k| !lm.contains_key(*k)));
                for k in keys {
                    names.push(k.clone());
                    path.push(PathElement::Field(k.clone()));
                    self.cmp_node(lm.get(k), rm.get(k), names, path, c);
                    path.pop();
                    names.pop();
                }
            }
            Some(Some(lt)) => {
                let empty = Vec::new();
                let la = l.and_then(Value::as_array).unwrap_or(&empty);
                let ra = r.and_then(Value::as_array).unwrap_or(&empty);
                let lpes = self
                    .element_pes(&lt, names, la, path, false)
                    .unwrap_or_default();
                let rpes = self
                    .element_pes(&lt, names, ra, path, false)
                    .unwrap_or_default();
                let mut done = BTreeSet::new();
                let order: Vec<&PathElement> = lpes.iter().chain(rpes.iter()).collect();
                for pe in order {
                    if !done.insert(pe.clone()) {
                        continue;
                    }
                    let li = lpes.iter().position(|p| p == pe).map(|i| &la[i]);
                    let ri = rpes.iter().position(|p| p == pe).map(|i| &ra[i]);
                    path.push(pe.clone());
                    self.cmp_node(li, ri, names, path, c);
                    path.pop();
                }
            }
            None => {
                match (l, r) {
                    (None, Some(_)) => c.added.insert(path),
                    (Some(_), None) => c.removed.insert(path),
                    (Some(a), Some(b)) if a != b => c.modified.insert(path),
                    _ => {}
                }
                return;
            }
        }
        // A container that exists on one side only is itself added or removed.
        match (l, r) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            _ => {}
        }
    }

    // --- removal -----------------------------------------------------------------------------

    /// The object without the subtrees at the set's member paths.
    fn remove_items(&self, v: &Value, set: &FieldSet) -> Value {
        self.remove(v, set, &mut Vec::new())
    }

    fn remove(&self, v: &Value, set: &FieldSet, names: &mut Vec<String>) -> Value {
        if set.is_empty() {
            return v.clone();
        }
        match self.shape(v, names) {
            Shape::Object => {
                let m = v.as_object().expect("object shape");
                let mut out = Map::new();
                for (k, child) in m {
                    let pe = PathElement::Field(k.clone());
                    if set.members.contains(&pe) {
                        continue;
                    }
                    let kept = match set.child(&pe) {
                        Some(sub) => {
                            names.push(k.clone());
                            let r = self.remove(child, sub, names);
                            names.pop();
                            r
                        }
                        None => child.clone(),
                    };
                    out.insert(k.clone(), kept);
                }
                Value::Object(out)
            }
            Shape::List(lt) => {
                let items = v.as_array().expect("list shape");
                let pes = self
                    .element_pes(&lt, names, items, &[], false)
                    .unwrap_or_default();
                let mut out = Vec::with_capacity(items.len());
                for (item, pe) in items.iter().zip(pes) {
                    if set.members.contains(&pe) {
                        continue;
                    }
                    out.push(match set.child(&pe) {
                        Some(sub) => self.remove(item, sub, names),
                        None => item.clone(),
                    });
                }
                Value::Array(out)
            }
            Shape::Leaf => v.clone(),
        }
    }

    /// The set plus every struct field (not map entry, not list element) that has children, as
    /// members: what "owning `.spec.template`" means when pruning.
    fn ensure_named_fields_are_members(&self, set: &FieldSet) -> FieldSet {
        self.ensure(set, &mut Vec::new())
    }

    fn ensure(&self, set: &FieldSet, names: &mut Vec<String>) -> FieldSet {
        let mut out = FieldSet {
            members: set.members.clone(),
            children: BTreeMap::new(),
        };
        for (pe, child) in &set.children {
            let sub = match pe {
                PathElement::Field(n) => {
                    if !self.schema.is_map_entry(&Self::names(names), n) {
                        out.members.insert(pe.clone());
                    }
                    names.push(n.clone());
                    let s = self.ensure(child, names);
                    names.pop();
                    s
                }
                _ => self.ensure(child, names),
            };
            out.children.insert(pe.clone(), sub);
        }
        out
    }

    /// Remove what the applier owned at its last apply and no longer applies, unless another manager
    /// still owns it (the real prune: remove the last set, add back what anyone owns, add back what
    /// the applier never owned).
    fn prune(&self, merged: &Value, managed: &FieldSet, last: &FieldSet) -> Value {
        let last = self.ensure_named_fields_are_members(last);
        let managed = self.ensure_named_fields_are_members(managed);
        let fs = |v: &Value| {
            self.ensure_named_fields_are_members(&self.to_field_set(v, false).unwrap_or_default())
        };
        let merged_set = fs(merged);
        let pruned0 = self.remove_items(merged, &last);
        let keep = fs(&pruned0).union(&managed);
        let pruned1 = self.remove_items(merged, &merged_set.difference(&keep));
        let dangling = merged_set.difference(&fs(&pruned1)).intersection(&last);
        self.remove_items(merged, &dangling)
    }
}

#[derive(Default, Debug)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn filter(self, f: &dyn Fn(&FieldSet) -> FieldSet) -> Comparison {
        Comparison {
            added: f(&self.added),
            modified: f(&self.modified),
            removed: f(&self.removed),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    /// The real manager identity: Apply entries are one per manager (+ subresource); Update entries
    /// one per manager + apiVersion (+ subresource).
    fn same_identity(&self, manager: &str, op: &str, api_version: &str, sub: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == op
            && self.subresource.as_deref() == sub
            && (op == "Apply" || self.api_version == api_version)
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), Value::String(s.clone()));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Option<Entry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Entry {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation").unwrap_or_else(|| "Update".into()),
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|s| !s.is_empty()),
            set: v
                .get("fieldsV1")
                .map(FieldSet::from_fields_v1)
                .unwrap_or_default(),
        })
    }
}

fn seconds(t: &Option<String>) -> i64 {
    t.as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|ts| ts.as_second())
        .unwrap_or(0)
}

/// The real server's order: operation ("Apply" before "Update"), then time (seconds), manager,
/// apiVersion, subresource.
fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|p, q| {
        p.operation
            .cmp(&q.operation)
            .then_with(|| seconds(&p.time).cmp(&seconds(&q.time)))
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
}

fn decode_entries(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

fn encode_entries(mut entries: Vec<Entry>) -> Option<Value> {
    entries.retain(|e| !e.set.is_empty());
    if entries.is_empty() {
        return None;
    }
    sort_entries(&mut entries);
    Some(Value::Array(entries.iter().map(Entry::to_json).collect()))
}

/// The real server keeps at most this many Update entries ...
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// ... folding the oldest into one entry per apiVersion under this manager name.
pub const ANCIENT_CHANGES_MANAGER: &str = "ancient-changes";

/// Fold the oldest Update entries into `ancient-changes` buckets (one per apiVersion) until at most
/// [`MAX_UPDATE_MANAGERS`] Update entries remain. As on the real server, the first old entry of a
/// version only moves into the bucket once a second entry of that version is folded; the bucket
/// takes the time of the newest entry folded into it.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == "Update")
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|&a, &b| {
        seconds(&entries[a].time)
            .cmp(&seconds(&entries[b].time))
            .then_with(|| entries[a].manager.cmp(&entries[b].manager))
    });
    let mut length = updaters.len();
    let mut first_of_version: BTreeMap<String, usize> = BTreeMap::new();
    let mut bucket_of_version: BTreeMap<String, usize> = BTreeMap::new();
    let mut dropped = BTreeSet::new();
    for &i in &updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(&first) = first_of_version.get(&version) else {
            first_of_version.insert(version, i);
            continue;
        };
        let bucket = match bucket_of_version.get(&version) {
            Some(&b) => b,
            None => {
                // The first entry of this version becomes the bucket (unless a bucket exists).
                let existing = entries.iter().position(|e| {
                    e.manager == ANCIENT_CHANGES_MANAGER
                        && e.operation == "Update"
                        && e.api_version == version
                        && e.subresource.is_none()
                });
                let b = match existing {
                    Some(b) if b != first => {
                        let s = entries[first].set.clone();
                        entries[b].set = entries[b].set.union(&s);
                        dropped.insert(first);
                        b
                    }
                    _ => {
                        entries[first].manager = ANCIENT_CHANGES_MANAGER.into();
                        entries[first].subresource = None;
                        first
                    }
                };
                bucket_of_version.insert(version, b);
                b
            }
        };
        let s = entries[i].set.clone();
        entries[bucket].set = entries[bucket].set.union(&s);
        entries[bucket].time = entries[i].time.clone();
        dropped.insert(i);
        length -= 1;
    }
    let mut idx = 0;
    entries.retain(|_| {
        let keep = !dropped.contains(&idx);
        idx += 1;
        keep
    });
}

fn set_managed_fields(obj: &mut Value, mut entries: Vec<Entry>) {
    cap_update_managers(&mut entries);
    let encoded = encode_entries(entries);
    let Value::Object(m) = obj else { return };
    match encoded {
        Some(e) => {
            let meta = m
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                meta.insert("managedFields".into(), e);
            }
        }
        None => {
            if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                meta.remove("managedFields");
            }
        }
    }
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.remove("managedFields");
    }
    v
}

/// Paths the server owns and never records (the real "strip meta" set). Removed as members only:
/// `metadata` stays a container of owned labels etc.
fn strip_meta(set: &FieldSet) -> FieldSet {
    let mut strip = FieldSet::new();
    let f = |s: &str| PathElement::Field(s.to_string());
    for top in ["apiVersion", "kind", "metadata"] {
        strip.insert(&[f(top)]);
    }
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        strip.insert(&[f("metadata"), f(m)]);
    }
    set.difference(&strip)
}

/// The fields a write to the main resource or to a subresource may own (the real "reset fields").
fn reset_filter(set: &FieldSet, subresource: Option<&str>) -> FieldSet {
    match subresource {
        Some("status") => set.only_under("status"),
        _ => {
            let mut status = FieldSet::new();
            status.insert(&[PathElement::Field("status".into())]);
            set.recursive_difference(&status)
        }
    }
}

/// Metadata fields the server owns: never taken from an applied configuration.
const SERVER_OWNED_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Drop object entries whose value is null (a null in an applied configuration removes the field,
/// as the real typed conversion does after the merge).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, c| !c.is_null());
            for c in m.values_mut() {
                strip_nulls(c);
            }
        }
        Value::Array(a) => {
            for c in a.iter_mut() {
                strip_nulls(c);
            }
        }
        _ => {}
    }
}

/// How the real server names an applied configuration in its errors: `ns/name; group/version,
/// Kind=K` from the configuration itself (`/name` when it names no namespace).
pub fn object_label(config: &Value) -> String {
    let s = |p: &str| config.pointer(p).and_then(Value::as_str).unwrap_or("");
    let id = format!("{}/{}", s("/metadata/namespace"), s("/metadata/name"));
    let av = s("/apiVersion");
    let (group, version) = match av.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", av),
    };
    format!("{id}; {group}/{version}, Kind={}", s("/kind"))
}

// ---------------------------------------------------------------------------------------------
// Apply
// ---------------------------------------------------------------------------------------------

/// Server-side apply of `config` (the applied configuration, an object) by `manager` onto `live`
/// (None = create). Returns the new object with metadata.managedFields updated (Apply entry for
/// manager+apiVersion, fieldsV1 encoding, `time` = now). Without force, a field another manager
/// owns with a different value is a conflict (all conflicts reported at once); with force ownership
/// moves to `manager`. Fields the manager owned before and omits now are removed unless another
/// manager also owns them. Fields in `live` that `config` does not mention are kept. `.status` is
/// applied only (and alone) when `subresource == Some("status")`. Server-owned metadata (uid,
/// resourceVersion, generation, creationTimestamp, managedFields) is never taken from config nor
/// owned; a config that sets `metadata.managedFields` is rejected, as the real server rejects it
/// ("metadata.managedFields must be nil").
///
/// An apply that changes neither the object nor the applier's field set returns `live` unchanged
/// (same bytes, entry time not bumped), so the caller can skip the write and keep the
/// resourceVersion. When `live` exists but has no managedFields, its fields are first recorded as
/// owned by an Update entry of manager `before-first-apply`, as the real server does.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    schema: &dyn Schema,
    subresource: Option<&str>,
    now: &str,
) -> Result<Value, ApplyError> {
    let Some(cfg) = config.as_object() else {
        return Err(ApplyError::Invalid(
            "the applied configuration must be a JSON object".into(),
        ));
    };
    let api_version = cfg
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApplyError::Invalid("apiVersion must be set".into()))?
        .to_string();
    if cfg
        .get("kind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApplyError::Invalid("kind must be set".into()));
    }
    match config.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => {
            return Err(ApplyError::Invalid(
                "metadata.managedFields must be nil".into(),
            ));
        }
    }
    let w = Walker { schema };

    // The effective configuration: what this write may set.
    let mut eff = config.clone();
    if let Some(Value::Object(meta)) = eff.get_mut("metadata") {
        for k in SERVER_OWNED_META {
            meta.remove(*k);
        }
    }
    if subresource == Some("status") {
        let mut m = Map::new();
        for k in ["apiVersion", "kind"] {
            if let Some(v) = cfg.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        let mut meta = Map::new();
        for k in ["name", "namespace"] {
            if let Some(v) = config.pointer(&format!("/metadata/{k}")) {
                meta.insert(k.into(), v.clone());
            }
        }
        m.insert("metadata".into(), Value::Object(meta));
        if let Some(s) = cfg.get("status") {
            m.insert("status".into(), s.clone());
        }
        eff = Value::Object(m);
    } else if let Value::Object(m) = &mut eff {
        m.remove("status");
    }

    let new_set = w.to_field_set(&eff, true).map_err(|e| {
        ApplyError::Invalid(format!(
            "{TYPED_PATCH_ERROR_PREFIX} ({}): {e}",
            object_label(config)
        ))
    })?;
    // During the merge the applier's set still holds apiVersion, kind, metadata.name, namespace
    // (the real server strips them only afterwards): that keeps `metadata` itself alive when the
    // applier drops its last label or annotation.
    let full_new_set = reset_filter(&new_set, subresource);
    let new_set = strip_meta(&full_new_set);

    let live_plain = match live {
        Some(l) => without_managed_fields(l),
        None => Value::Object(Map::new()),
    };
    let original = decode_entries(live);
    let mut entries = original.clone();
    if live.is_some() && entries.iter().all(|e| e.set.is_empty()) {
        // The object predates field tracking: its fields belong to "before-first-apply".
        let set = w.to_field_set(&live_plain, false).unwrap_or_default();
        let set = reset_filter(&strip_meta(&set), None);
        entries = vec![Entry {
            manager: "before-first-apply".into(),
            operation: "Update".into(),
            api_version: live_plain
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(&api_version)
                .to_string(),
            time: Some(now.to_string()),
            subresource: None,
            set,
        }];
    }

    let me = entries
        .iter()
        .position(|e| e.same_identity(manager, "Apply", &api_version, subresource));
    let former = me.map(|i| entries[i].clone());
    let me = match me {
        Some(i) => {
            entries[i].set = new_set.clone();
            entries[i].api_version = api_version.clone();
            i
        }
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation: "Apply".into(),
                api_version: api_version.clone(),
                time: None,
                subresource: subresource.map(str::to_string),
                set: new_set.clone(),
            });
            entries.len() - 1
        }
    };

    let mut merged = w.merge(&live_plain, &eff, &mut Vec::new());
    if let Some(former) = &former
        && !former.set.is_empty()
    {
        let managed = entries
            .iter()
            .fold(full_new_set.clone(), |acc, e| acc.union(&e.set));
        merged = w.prune(&merged, &managed, &former.set);
    }

    // Ownership changes: conflicts, forced moves, removals.
    let cmp = w
        .compare(Some(&live_plain), Some(&merged))
        .filter(&|s| reset_filter(s, subresource));
    let changed = cmp.added.union(&cmp.modified);
    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, FieldSet)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if i == me {
            continue;
        }
        let c = e.set.intersection(&changed);
        if !c.is_empty() {
            for p in c.paths() {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    update_api_version: (e.operation == "Update").then(|| e.api_version.clone()),
                    field: path_to_string(&p),
                });
            }
            taken.push((i, c));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (i, c) in taken {
        entries[i].set = entries[i].set.difference(&c);
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if i != me {
            e.set = e.set.difference(&cmp.removed);
        }
    }

    strip_nulls(&mut merged);
    let mut live_cmp = live_plain.clone();
    strip_nulls(&mut live_cmp);
    let object_changed = live.is_none() || merged != live_cmp;
    let set_changed = former.as_ref().is_none_or(|f| f.set != new_set);
    entries[me].time = if object_changed || set_changed {
        Some(now.to_string())
    } else {
        former.as_ref().and_then(|f| f.time.clone())
    };

    if let Some(l) = live
        && !object_changed
        && same_entries(&original, &entries)
    {
        return Ok(l.clone());
    }
    if !object_changed {
        // Only ownership changed: keep the live object's bytes apart from managedFields.
        merged = live_plain;
    }
    set_managed_fields(&mut merged, entries);
    Ok(merged)
}

fn same_entries(a: &[Entry], b: &[Entry]) -> bool {
    let norm = |v: &[Entry]| {
        let mut v: Vec<Entry> = v.iter().filter(|e| !e.set.is_empty()).cloned().collect();
        sort_entries(&mut v);
        v
    };
    norm(a) == norm(b)
}

// ---------------------------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------------------------

/// Record an Update (PUT / merge / JSON / strategic patch) by `manager`: `new` is the object after the
/// write; the fields whose values changed or were added vs `old` become owned by `manager`
/// (operation Update, one entry per manager + apiVersion + subresource) and are removed from other
/// managers' sets; removed fields leave every set. Returns `new` with managedFields updated. Empty
/// entries are dropped, as the real server does; the writer's entry time moves only when it took
/// fields.
///
/// As on the real server: if `new` carries a `metadata.managedFields` that differs from `old`'s, the
/// client replaced it and that list is the starting point; `[{}]` resets field tracking (then this
/// write's own changes are recorded, so a reset-only write leaves no managedFields); an empty list
/// `[]` or no managedFields at all keeps `old`'s.
/// A create (`old == None`) is compared against the kind's empty object ([`Schema::empty_object`]).
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    schema: &dyn Schema,
    subresource: Option<&str>,
    now: &str,
) -> Value {
    let w = Walker { schema };
    let new_mf = new.pointer("/metadata/managedFields");
    let old_mf = old.and_then(|o| o.pointer("/metadata/managedFields"));
    let new_plain = without_managed_fields(new);
    let mut entries = match new_mf {
        // `[]` does not reset (clients unaware of managedFields must not strip it): keep old's.
        Some(Value::Array(a)) if a.is_empty() => decode_entries(old),
        // `[{}]` resets: tracking starts afresh, and this write's changes are then recorded.
        Some(Value::Array(a)) if a.iter().all(|e| e.as_object().is_some_and(Map::is_empty)) => {
            Vec::new()
        }
        Some(mf @ Value::Array(_)) if Some(mf) != old_mf => decode_entries(Some(new)),
        _ => decode_entries(old),
    };
    let old_plain = match old {
        Some(o) => without_managed_fields(o),
        None => schema.empty_object(),
    };
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();

    let cmp = w
        .compare(Some(&old_plain), Some(&new_plain))
        .filter(&|s| reset_filter(&strip_meta(s), subresource));
    let changed = cmp.added.union(&cmp.modified);
    for e in entries.iter_mut() {
        e.set = e.set.difference(&changed).difference(&cmp.removed);
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.same_identity(manager, "Update", &api_version, subresource))
        {
            Some(e) => {
                e.set = e.set.union(&changed);
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version,
                time: Some(now.to_string()),
                subresource: subresource.map(str::to_string),
                set: changed,
            }),
        }
    }
    let mut out = new_plain;
    set_managed_fields(&mut out, entries);
    out
}

/// The field sets of an object's managedFields entries, as (manager, operation, set), for tests.
pub fn managed_sets(obj: &Value) -> Vec<(String, String, FieldSet)> {
    decode_entries(Some(obj))
        .into_iter()
        .map(|e| (e.manager, e.operation, e.set))
        .collect()
}

/// The field set an object (e.g. an applied configuration) would own under `schema`.
pub fn field_set_of(v: &Value, schema: &dyn Schema) -> Result<FieldSet, String> {
    Walker { schema }.to_field_set(v, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trip_and_dot() {
        let v = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nats\"}": {".": {}, "f:image": {}, "f:name": {}}
            }}}}
        });
        let s = FieldSet::from_fields_v1(&v);
        assert_eq!(s.to_fields_v1(), v);
        assert!(s.has(&[
            PathElement::Field("metadata".into()),
            PathElement::Field("labels".into()),
            PathElement::Field("app".into())
        ]));
    }

    #[test]
    fn human_paths() {
        let p = vec![
            PathElement::Field("spec".into()),
            PathElement::Key(vec![("name".into(), json!("nats"))]),
            PathElement::Field("image".into()),
        ];
        assert_eq!(path_to_string(&p), ".spec[name=\"nats\"].image");
        let k = PathElement::Key(vec![
            ("containerPort".into(), json!(4222)),
            ("protocol".into(), json!("TCP")),
        ]);
        assert_eq!(
            k.to_fields_v1_key(),
            "k:{\"containerPort\":4222,\"protocol\":\"TCP\"}"
        );
    }
}
