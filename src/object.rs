//! The one representation of a Kubernetes object that the renderer produces, the diff engine compares,
//! and the controller applies: plain JSON, so any kind can be compared field by field.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A Kubernetes object as JSON, with `apiVersion`, `kind` and `metadata.name` always present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Object(pub Value);

/// Identifies an object regardless of API version: group, kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

impl Object {
    /// Converts a typed k8s-openapi object, filling in `apiVersion` and `kind`.
    pub fn from_typed<K>(typed: &K) -> Object
    where
        K: Resource + Metadata<Ty = ObjectMeta> + Serialize,
    {
        let mut value = serde_json::to_value(typed).expect("k8s-openapi types always serialise");
        if let Value::Object(map) = &mut value {
            map.insert(
                "apiVersion".into(),
                Value::String(K::API_VERSION.to_string()),
            );
            map.insert("kind".into(), Value::String(K::KIND.to_string()));
        }
        Object(value)
    }

    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"]).unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.str_at(&["kind"]).unwrap_or_default()
    }

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(group, _)| group)
            .unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"]).unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.str_at(&["metadata", "namespace"])
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            group: self.group().to_string(),
            kind: self.kind().to_string(),
            namespace: self.namespace().map(str::to_string),
            name: self.name().to_string(),
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.0.get("metadata")?.get("labels")?.get(key)?.as_str()
    }

    /// The UID of the controller ownerReference, if any.
    pub fn controller_uid(&self) -> Option<&str> {
        self.0
            .get("metadata")?
            .get("ownerReferences")?
            .as_array()?
            .iter()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
            .get("uid")?
            .as_str()
    }

    /// Whether this is a Secret, whose values must never be printed or logged.
    pub fn is_secret(&self) -> bool {
        self.group().is_empty() && self.kind() == "Secret"
    }

    /// The value at a path of object keys.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.0, |value, key| value.get(*key))
    }

    fn str_at(&self, path: &[&str]) -> Option<&str> {
        self.get(path)?.as_str()
    }
}

/// An object without the metadata the API server makes up or bumps on every write
/// (`managedFields`, `resourceVersion`, `generation`, `uid`, `creationTimestamp`): its content.
pub fn without_server_bookkeeping(object: &Value) -> Value {
    let mut value = object.clone();
    if let Some(Value::Object(metadata)) = value.get_mut("metadata") {
        for field in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
        ] {
            metadata.remove(field);
        }
    }
    value
}
