//! Field paths in the shape server-side apply tracks ownership in: object fields, list items by their
//! merge key, set members by value, and (rarely) positions, so a path read from `managedFields` and a
//! path found while comparing objects are the same value.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq)]
pub enum PathElement {
    /// `f:<name>`: a field of an object (or a key of a map).
    Field(String),
    /// `k:{…}`: the item of a keyed list whose merge-key fields have these values.
    Key(Map<String, Value>),
    /// `v:<json>`: the member of a set list with this value.
    Value(Value),
    /// `i:<n>`: a list position (only for lists without merge keys that the server tracks by index).
    Index(usize),
}

/// A path to a field inside an object, e.g. `spec.template.spec.containers[name=nats].image`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldPath(pub Vec<PathElement>);

impl FieldPath {
    /// A path of plain object fields, e.g. `FieldPath::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> FieldPath {
        FieldPath(
            names
                .iter()
                .map(|n| PathElement::Field((*n).to_string()))
                .collect(),
        )
    }

    pub fn elements(&self) -> &[PathElement] {
        &self.0
    }

    /// Whether this path equals `prefix` or lies beneath it.
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.len() >= prefix.0.len() && self.0[..prefix.0.len()] == prefix.0[..]
    }

    #[cfg(test)]
    pub(crate) fn child(&self, element: PathElement) -> FieldPath {
        let mut elements = self.0.clone();
        elements.push(element);
        FieldPath(elements)
    }
}

/// Whether a field name can be printed bare after a `.` without ambiguity.
fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, element) in self.0.iter().enumerate() {
            match element {
                PathElement::Field(name) if is_plain(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                PathElement::Field(name) => write!(f, "[{name:?}]")?,
                PathElement::Key(keys) => {
                    let parts: Vec<String> = keys
                        .iter()
                        .map(|(k, v)| format!("{k}={}", scalar(v)))
                        .collect();
                    write!(f, "[{}]", parts.join(","))?;
                }
                PathElement::Value(value) => write!(f, "[={}]", scalar(value))?,
                PathElement::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Paths serialise as their display form, which is what users and status messages read.
impl Serialize for FieldPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_display_like_field_references() {
        let Value::Object(key) = json!({"containerPort": 4222, "protocol": "TCP"}) else {
            unreachable!()
        };
        let path = FieldPath::fields(&["spec", "template", "spec", "containers"])
            .child(PathElement::Field("ports".into()))
            .child(PathElement::Key(key))
            .child(PathElement::Field("name".into()));
        assert_eq!(
            path.to_string(),
            "spec.template.spec.containers.ports[containerPort=4222,protocol=TCP].name"
        );
        let annotation = FieldPath::fields(&["metadata", "annotations", "meshery.io/restarted-at"]);
        assert_eq!(
            annotation.to_string(),
            "metadata.annotations[\"meshery.io/restarted-at\"]"
        );
    }
}
