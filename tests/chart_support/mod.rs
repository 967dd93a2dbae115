//! Shared by the chart tests: the chart rendered by real Helm (helm-python-sdk, Helm v4's Go SDK, in
//! `.venv`, which scripts/install-and-test.sh creates) through scripts/helm-render.py.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The virtualenv's python (or `HELM_PYTHON`), which has `helm_python` installed.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("HELM_PYTHON") {
        return python.into();
    }
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-and-test.sh (it creates .venv and installs helm-python-sdk)",
        python.display()
    );
    python
}

/// Runs scripts/helm-render.py with `args`.
pub fn helm(args: &[&str]) -> Output {
    Command::new(python())
        .arg(repo().join("scripts/helm-render.py"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("running scripts/helm-render.py")
}

/// The chart rendered (release meshery-operator, namespace meshery) as one YAML stream.
pub fn render_yaml(values: Option<&Value>) -> String {
    let values = values.map(Value::to_string);
    let mut args = vec!["render"];
    if let Some(values) = &values {
        args.push(values);
    }
    let output = helm(&args);
    assert!(
        output.status.success(),
        "helm render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 manifests")
}

/// The rendered objects, in install order.
pub fn render(values: Option<&Value>) -> Vec<Value> {
    parse_stream(&render_yaml(values))
}

pub fn parse_stream(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

pub fn get<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(objects, kind, name).unwrap_or_else(|| {
        panic!(
            "no {kind} {name} in the render: {:?}",
            kinds_and_names(objects)
        )
    })
}

pub fn kinds_and_names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// One RBAC rule of the chart, flattened: where it applies (`None`: cluster-wide) and what it allows.
#[derive(Clone, Debug)]
pub struct Rule {
    pub namespace: Option<String>,
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub names: Vec<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every rule of the ClusterRoles and Roles in the render.
pub fn rules(objects: &[Value]) -> Vec<Rule> {
    objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .flat_map(|role| {
            let namespace = (role["kind"] == "Role")
                .then(|| role["metadata"]["namespace"].as_str().unwrap().to_string());
            role["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |rule| Rule {
                    namespace: namespace.clone(),
                    groups: strings(&rule["apiGroups"]),
                    resources: strings(&rule["resources"]),
                    verbs: strings(&rule["verbs"]),
                    names: strings(&rule["resourceNames"]),
                })
        })
        .collect()
}

/// `plural` (core) or `plural.group` — kube-sim's accounting names — split into (group, plural).
pub fn split_resource(resource: &str) -> (String, String) {
    match resource.split_once('/') {
        Some((base, sub)) => {
            let (group, plural) = split_resource(base);
            (group, format!("{plural}/{sub}"))
        }
        None => match resource.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), resource.to_string()),
        },
    }
}

/// Whether some rule allows `verb` on `group`/`resource` (in `namespace` for namespaced requests).
pub fn allowed<'a>(
    rules: &'a [Rule],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> Option<&'a Rule> {
    rules.iter().find(|r| {
        r.verbs.iter().any(|v| v == verb)
            && r.groups.iter().any(|g| g == group)
            && r.resources.iter().any(|x| x == resource)
            && match (&r.namespace, namespace) {
                (None, _) => true,
                (Some(own), Some(ns)) => own == ns,
                (Some(_), None) => false,
            }
    })
}

pub fn read(path: impl AsRef<Path>) -> String {
    let path = repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
