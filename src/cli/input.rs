//! Reading manifests from files and directories: YAML (multi-document) or JSON, `List` objects flattened.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::api::{Broker, MeshSync};

/// One object read from a file, with where it came from for error messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// `path` or `path (document N)` for multi-document files.
    pub source: String,
    pub value: Value,
}

/// A custom resource the operator manages, as read from a file.
#[derive(Clone, Debug)]
pub enum CustomResource {
    Broker(Box<Broker>),
    MeshSync(Box<MeshSync>),
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name}: not valid YAML or JSON: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {message}")]
    Shape {
        source_name: String,
        message: String,
    },
    #[error("no manifests found in {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Empty { paths: Vec<PathBuf> },
}

const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Reads every manifest in `paths` (files, or directories searched recursively for .yaml/.yml/.json,
/// in name order so output is stable). Finding no object at all is an error; an empty `List` (what
/// `kubectl get … -o yaml` prints for an empty namespace) is an object and reads as no documents.
pub fn read_documents(paths: &[PathBuf]) -> Result<Vec<Document>, InputError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut documents = Vec::new();
    let mut objects = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| InputError::Read {
            path: file.clone(),
            source,
        })?;
        let (parsed, top_level) = parse_counted(&file.display().to_string(), &text)?;
        documents.extend(parsed);
        objects += top_level;
    }
    if objects == 0 {
        return Err(InputError::Empty {
            paths: paths.to_vec(),
        });
    }
    Ok(documents)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let read_error = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_error)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_error)?;
        entries.sort();
        for entry in entries {
            let is_manifest = entry
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e));
            if entry.is_dir() || is_manifest {
                collect_files(&entry, files)?;
            }
        }
        Ok(())
    } else {
        std::fs::metadata(path).map_err(read_error)?;
        files.push(path.to_path_buf());
        Ok(())
    }
}

/// Parses a YAML stream (JSON is YAML), rejecting duplicate keys, and flattens `kind: List`.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Document>, InputError> {
    parse_counted(source, text).map(|(documents, _)| documents)
}

/// [`parse_documents`], and how many top-level objects (a `List` counts as one) the text held.
fn parse_counted(source: &str, text: &str) -> Result<(Vec<Document>, usize), InputError> {
    let mut raw = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let source_name = format!("{source} (document {})", index + 1);
        let yaml = serde_norway::Value::deserialize(document).map_err(|e| InputError::Syntax {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        if yaml.is_null() {
            continue;
        }
        let value = serde_json::to_value(&yaml).map_err(|e| InputError::Syntax {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        raw.push((source_name, value));
    }
    let top_level = raw.len();
    let single = top_level == 1;
    let mut documents = Vec::new();
    for (source_name, value) in raw {
        let source_name = if single {
            source.to_string()
        } else {
            source_name
        };
        if !value.is_object() {
            return Err(InputError::Shape {
                source_name,
                message: "expected a Kubernetes object (a mapping)".into(),
            });
        }
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            documents.extend(items.into_iter().enumerate().map(|(i, item)| Document {
                source: format!("{source_name} item {}", i + 1),
                value: item,
            }));
        } else {
            documents.push(Document {
                source: source_name,
                value,
            });
        }
    }
    Ok((documents, top_level))
}

impl Document {
    fn str_field(&self, field: &str) -> Option<&str> {
        self.value.get(field).and_then(Value::as_str)
    }

    /// Reads the document as a Broker or MeshSync, defaulting the namespace to `default` as kubectl would.
    pub fn custom_resource(&self) -> Result<CustomResource, InputError> {
        let shape = |message: String| InputError::Shape {
            source_name: self.source.clone(),
            message,
        };
        let api_version = self.str_field("apiVersion").unwrap_or_default();
        let kind = self.str_field("kind").unwrap_or_default();
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        if group != crate::api::GROUP || !matches!(kind, "Broker" | "MeshSync") {
            return Err(shape(format!(
                "{} is not a Broker or MeshSync (apiVersion meshery.io/v1alpha1)",
                if kind.is_empty() {
                    "an object without kind".to_string()
                } else {
                    format!("{api_version} {kind}")
                }
            )));
        }
        let mut value = self.value.clone();
        if value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_none()
            && let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut)
        {
            metadata.insert("namespace".into(), Value::String("default".into()));
        }
        let name_missing = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if name_missing {
            return Err(shape(format!("{kind} has no metadata.name")));
        }
        let typed = |e: serde_path_to_error::Error<serde_json::Error>| {
            shape(format!(
                "{kind} does not match the schema: {}: {}",
                e.path(),
                e.inner()
            ))
        };
        Ok(match kind {
            "Broker" => CustomResource::Broker(Box::new(
                serde_path_to_error::deserialize(value).map_err(typed)?,
            )),
            _ => CustomResource::MeshSync(Box::new(
                serde_path_to_error::deserialize(value).map_err(typed)?,
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_rejected_with_the_source_named() {
        let error = parse_documents("broker.yaml", "kind: Broker\nkind: MeshSync\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("broker.yaml (document 1): not valid YAML"),
            "{error}"
        );
        assert!(error.contains("duplicate"), "{error}");
    }

    #[test]
    fn lists_are_flattened_and_empty_documents_skipped() {
        let text =
            "---\n---\nkind: List\nitems:\n- kind: ConfigMap\n- kind: Secret\n---\nkind: Service\n";
        let documents = parse_documents("f.yaml", text).unwrap();
        let kinds: Vec<_> = documents
            .iter()
            .map(|d| d.str_field("kind").unwrap())
            .collect();
        assert_eq!(kinds, ["ConfigMap", "Secret", "Service"]);
        assert_eq!(documents[1].source, "f.yaml (document 2) item 2");
    }

    #[test]
    fn other_kinds_are_not_custom_resources() {
        let document = &parse_documents(
            "d.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
        )
        .unwrap()[0];
        let error = document.custom_resource().unwrap_err().to_string();
        assert_eq!(
            error,
            "d.yaml: apps/v1 Deployment is not a Broker or MeshSync (apiVersion meshery.io/v1alpha1)"
        );
    }

    #[test]
    fn namespace_defaults_like_kubectl() {
        let text = "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {name: b}\nspec: {}\n";
        let document = &parse_documents("b.yaml", text).unwrap()[0];
        let CustomResource::Broker(broker) = document.custom_resource().unwrap() else {
            panic!("not a broker")
        };
        assert_eq!(broker.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(broker.spec.size, 1);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let text = "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {name: b}\nspec: {size: three}\n";
        let document = &parse_documents("b.yaml", text).unwrap()[0];
        let error = document.custom_resource().unwrap_err().to_string();
        assert!(
            error.starts_with("b.yaml: Broker does not match the schema: spec.size: invalid type"),
            "{error}"
        );
    }
}
