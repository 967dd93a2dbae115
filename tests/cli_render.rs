//! `meshery-operator render -f` as a user runs it: YAML out, one-line errors and exit code 2 on bad input.

use std::process::{Command, Output};

fn render(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
        .arg("render")
        .args(args)
        .output()
        .unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn renders_every_example_as_multi_document_yaml() {
    let output = render(&["-f", "examples/"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<serde_json::Value> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_norway::from_str(d).unwrap())
        .collect();
    assert!(documents.len() > 20, "{} objects", documents.len());
    for document in &documents {
        assert_eq!(
            document["metadata"]["labels"]["app.kubernetes.io/managed-by"], "meshery-operator",
            "{document}"
        );
    }
    let kinds: std::collections::BTreeSet<_> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "Secret",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "Deployment",
        "ClusterRole",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(kind), "no {kind} rendered: {kinds:?}");
    }
    for secret in documents.iter().filter(|d| d["kind"] == "Secret") {
        for value in secret["data"].as_object().unwrap().values() {
            assert_eq!(value, "***", "Secret values are masked: {secret}");
        }
    }
}

#[test]
fn bad_input_is_one_line_naming_the_file_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "dup.yaml",
            "apiVersion: meshery.io/v1alpha1\nkind: Broker\nkind: Broker\n",
            "not valid YAML or JSON",
        ),
        (
            "deploy.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
            "is not a Broker or MeshSync",
        ),
        (
            "size.yaml",
            "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {name: b}\nspec: {size: 0}\n",
            "spec.size",
        ),
        (
            "type.yaml",
            "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {name: b}\nspec: {size: many}\n",
            "spec.size: invalid type",
        ),
        ("bad.yaml", ": : :\n- [", "not valid YAML or JSON"),
    ];
    for (name, text, fragment) in cases {
        let path = write(&dir, name, text);
        let output = render(&["-f", &path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{name}: one line expected: {stderr}"
        );
        assert!(
            stderr.contains(&path) && stderr.contains(fragment),
            "{name}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{name}: nothing on stdout");
    }
    let missing = render(&["-f", "/nonexistent/broker.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/broker.yaml"));
}
