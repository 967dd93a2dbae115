//! Reading `metadata.managedFields`: which manager owns which field, decoded from the `FieldsV1`
//! trie (`f:<field>`, `k:<merge key json>`, `v:<value json>`, `i:<index>`, and `.` for "the item itself").

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::path::{FieldPath, PathElement};

/// The set of fields one manager owns, as a trie of path elements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSet {
    children: Vec<(PathElement, FieldSet)>,
}

/// One `managedFields` entry reduced to what ownership decisions need.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// Empty for the main resource; `scale` or `status` for writes through a subresource.
    pub subresource: String,
    pub fields: FieldSet,
}

impl FieldSet {
    /// Decodes a `fieldsV1` value; entries that cannot be decoded are skipped, since the server
    /// only ever writes well-formed ones and a best-effort reading is safer than refusing to plan.
    pub fn from_fields_v1(value: &Value) -> FieldSet {
        let Some(map) = value.as_object() else {
            return FieldSet::default();
        };
        let children = map
            .iter()
            .filter_map(|(raw, child)| Some((parse_element(raw)?, FieldSet::from_fields_v1(child))))
            .collect();
        FieldSet { children }
    }

    pub fn children(&self) -> &[(PathElement, FieldSet)] {
        &self.children
    }

    /// Whether the set holds exactly this path (as a leaf or an inner node).
    pub fn contains(&self, path: &FieldPath) -> bool {
        self.node(path).is_some()
    }

    fn node(&self, path: &FieldPath) -> Option<&FieldSet> {
        path.elements().iter().try_fold(self, |set, element| {
            set.children
                .iter()
                .find(|(e, _)| elements_match(e, element))
                .map(|(_, child)| child)
        })
    }
}

/// Parses one trie key; `.` (the item itself) carries no path step and is dropped.
fn parse_element(raw: &str) -> Option<PathElement> {
    let (prefix, rest) = raw.split_once(':')?;
    match prefix {
        "f" => Some(PathElement::Field(rest.to_string())),
        "k" => match serde_json::from_str(rest).ok()? {
            Value::Object(keys) => Some(PathElement::Key(keys)),
            _ => None,
        },
        "v" => serde_json::from_str(rest).ok().map(PathElement::Value),
        "i" => rest.parse().ok().map(PathElement::Index),
        _ => None,
    }
}

/// Path elements match when they name the same step; merge-key values compare by meaning
/// (`4222` and `"4222"`, a missing and a `TCP` protocol).
pub(crate) fn elements_match(a: &PathElement, b: &PathElement) -> bool {
    match (a, b) {
        (PathElement::Key(a), PathElement::Key(b)) => keys_match(a, b),
        _ => a == b,
    }
}

pub(crate) fn keys_match(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let names = a.keys().chain(b.keys());
    names
        .into_iter()
        .all(|name| key_values_match(a.get(name), b.get(name), name))
}

/// Whether two values of the merge-key field `name` mean the same: protocols default to TCP,
/// numbers compare as text.
pub(crate) fn key_values_match(a: Option<&Value>, b: Option<&Value>, name: &str) -> bool {
    match (a, b) {
        (Some(Value::String(a)), Some(Value::String(b))) => a == b,
        (Some(Value::Number(a)), Some(Value::Number(b))) if a.is_i64() && b.is_i64() => {
            a.as_i64() == b.as_i64()
        }
        _ => key_text(a, name) == key_text(b, name),
    }
}

/// A merge-key value normalised for comparison: protocols default to TCP, numbers compare as text.
fn key_text<'v>(value: Option<&'v Value>, name: &str) -> Option<Cow<'v, str>> {
    match value {
        None | Some(Value::Null) if name == "protocol" => Some(Cow::Borrowed("TCP")),
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Cow::Borrowed(s)),
        Some(other) => Some(Cow::Owned(other.to_string())),
    }
}

/// The `managedFields` entries of an object.
pub fn managed_entries(object: &Value) -> Vec<ManagedEntry> {
    let entries = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    entries
        .iter()
        .map(|entry| {
            let text = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            ManagedEntry {
                manager: text("manager"),
                operation: text("operation"),
                subresource: text("subresource"),
                fields: entry
                    .get("fieldsV1")
                    .map(FieldSet::from_fields_v1)
                    .unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_decodes_every_element_kind() {
        let set = FieldSet::from_fields_v1(&json!({
            "f:spec": {
                "f:ports": {"k:{\"port\":4222,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}}},
                "f:finalizers": {"v:\"x\"": {}},
                "f:items": {"i:3": {}}
            }
        }));
        let Value::Object(key) = json!({"port": 4222}) else {
            unreachable!()
        };
        let port_name = FieldPath::fields(&["spec", "ports"])
            .child(PathElement::Key(key))
            .child(PathElement::Field("name".into()));
        assert!(
            set.contains(&port_name),
            "protocol TCP is the default and matches a key without it"
        );
        assert!(set.contains(
            &FieldPath::fields(&["spec", "finalizers"]).child(PathElement::Value(json!("x")))
        ));
        assert!(set.contains(&FieldPath::fields(&["spec", "items"]).child(PathElement::Index(3))));
        assert!(!set.contains(&FieldPath::fields(&["spec", "replicas"])));
    }
}
