//! The `plan` command as users run it: formats, exit codes (0 no changes, 1 changes, 2 error),
//! masking of Secret values, and determinism.

mod diff_support;

use std::path::Path;
use std::process::{Command, Output};

use diff_support::{base64, simulate_apply};
use meshery_operator::cli::parse_documents;
use meshery_operator::cli::plan::plan_documents;
use meshery_operator::diff::Action;
use meshery_operator::object::Object;
use serde_json::{Value, json};

const BROKER: &str = "apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: meshery-broker, namespace: meshery, uid: 1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5}
spec: {size: 1}
";

/// A MeshSync whose broker credentials come from a custom URL, so it owns a Secret with a known value.
const MESHSYNC: &str = "apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {name: meshsync, namespace: meshery, uid: 6c1f3f4e-2b7a-4d3e-9f1a-0e5c2b8d7a10}
spec:
  broker:
    custom: {url: 'nats://reader:s3cr3t-pa55@nats.example.com:4222'}
";

fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
        .arg("plan")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// What the cluster would hold after the operator applied the CRs in `crs`: every rendered object
/// through `simulate_apply` (defaults, status, managedFields, Meshery Server's own fields).
fn applied_cluster(crs: &str) -> Vec<Object> {
    let documents = parse_documents("crs.yaml", crs).unwrap();
    let plans = plan_documents(&documents, &[]).unwrap();
    plans
        .iter()
        .flat_map(|p| &p.plan.entries)
        .map(|entry| match &entry.action {
            Action::Create { object } => simulate_apply(object).object,
            other => panic!("expected only creates without observed objects, got {other:?}"),
        })
        .collect()
}

fn as_list(objects: &[Object]) -> String {
    let items: Vec<Value> = objects.iter().map(|o| o.0.clone()).collect();
    serde_norway::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap()
}

fn setup(observed: &[Object]) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let crs = write(dir.path(), "crs.yaml", &format!("{BROKER}---\n{MESHSYNC}"));
    let live = write(dir.path(), "observed.yaml", &as_list(observed));
    (dir, crs, live)
}

fn crs() -> String {
    format!("{BROKER}---\n{MESHSYNC}")
}

fn edit(objects: &mut [Object], kind: &str, name: &str, change: impl FnOnce(&mut Value)) {
    let object = objects
        .iter_mut()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap();
    change(&mut object.0);
}

#[test]
fn the_examples_plan_as_creates_without_a_cluster() {
    let examples = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    let output = plan(&["-f", &examples]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("+ create Secret meshery/meshery-broker-auth"),
        "{text}"
    );
    assert!(
        text.contains("+ create StatefulSet.apps meshery/meshery-broker"),
        "{text}"
    );
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with("Plan: ")
            && summary.ends_with(" to create, 0 to update, 0 to prune, 0 unchanged."),
        "{summary}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

/// What `kubectl get … -o yaml` prints for an empty namespace is a valid observed set: everything
/// plans as a create (it used to fail with "no manifests found").
#[test]
fn an_empty_list_as_observed_plans_creates() {
    let dir = tempfile::tempdir().unwrap();
    let crs = write(dir.path(), "crs.yaml", &crs());
    let live = write(
        dir.path(),
        "observed.yaml",
        "apiVersion: v1\nitems: []\nkind: List\nmetadata:\n  resourceVersion: \"\"\n",
    );
    let output = plan(&["-f", &crs, "--observed", &live]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("+ create StatefulSet.apps meshery/meshery-broker"),
        "{text}"
    );
    assert!(
        text.contains(" 0 to update, 0 to prune, 0 unchanged."),
        "{text}"
    );

    // A file without any object is still refused, naming it.
    let empty = write(dir.path(), "empty.yaml", "# nothing here\n");
    let output = plan(&["-f", &crs, "--observed", &empty]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no manifests found in"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_applied_cluster_plans_nothing_and_exits_zero() {
    let observed = applied_cluster(&crs());
    let (_dir, crs, live) = setup(&observed);
    let output = plan(&["-f", &crs, "--observed", &live]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let text = stdout(&output);
    assert!(
        text.ends_with(&format!(
            "Plan: 0 to create, 0 to update, 0 to prune, {} unchanged.\n",
            observed.len()
        )),
        "{text}"
    );
    assert!(
        !text.contains("= unchanged"),
        "unchanged objects are listed only with -v"
    );

    let verbose = stdout(&plan(&["-f", &crs, "--observed", &live, "-v"]));
    assert!(
        verbose.contains("= unchanged Deployment.apps meshery/meshsync"),
        "{verbose}"
    );
}

#[test]
fn drift_shows_as_an_update_with_a_unified_diff_and_leftovers_as_prunes() {
    let mut observed = applied_cluster(&crs());
    edit(&mut observed, "StatefulSet", "meshery-broker", |o| {
        o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nats:2.9.0");
    });
    let mut leftover = observed
        .iter()
        .find(|o| o.kind() == "ConfigMap" && o.name() == "meshery-broker-config")
        .unwrap()
        .clone();
    leftover.0["metadata"]["name"] = json!("meshery-broker-old");
    observed.push(leftover);
    let (_dir, crs, live) = setup(&observed);
    let output = plan(&["-f", &crs, "--observed", &live]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("~ update StatefulSet.apps meshery/meshery-broker\n  changed: spec.template.spec.containers[name=nats].image\n"), "{text}");
    assert!(text.contains("-        image: nats:2.9.0\n"), "{text}");
    let expected_image = format!(
        "+        image: nats:{}\n",
        meshery_operator::render::DEFAULT_NATS_VERSION
    );
    assert!(text.contains(&expected_image), "{text}");
    assert!(
        text.contains("- prune ConfigMap meshery/meshery-broker-old\n"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "Plan: 0 to create, 1 to update, 1 to prune, {} unchanged.\n",
            observed.len() - 2
        )),
        "{text}"
    );
}

#[test]
fn patch_output_is_the_apply_bodies() {
    let mut observed = applied_cluster(&crs());
    edit(&mut observed, "Deployment", "meshsync", |o| {
        o["spec"]["replicas"] = json!(4)
    });
    let (_dir, crs, live) = setup(&observed);
    let output = plan(&["-f", &crs, "--observed", &live, "-o", "patch"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let documents = parse_documents("patch output", &text).unwrap();
    assert_eq!(documents.len(), 1, "{text}");
    let body = &documents[0].value;
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["spec"]["replicas"], 1);
    assert!(body["metadata"].get("managedFields").is_none() && body.get("status").is_none());
    assert!(
        text.contains("# MeshSync meshery/meshsync: update Deployment.apps meshery/meshsync"),
        "{text}"
    );
    assert!(
        text.contains("# Plan: 0 to create, 1 to update, 0 to prune, "),
        "{text}"
    );
}

#[test]
fn json_output_carries_rfc6902_patches() {
    let mut observed = applied_cluster(&crs());
    edit(&mut observed, "Deployment", "meshsync", |o| {
        o["spec"]["replicas"] = json!(4)
    });
    let (_dir, crs, live) = setup(&observed);
    let output = plan(&["-f", &crs, "--observed", &live, "-o", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        plan["summary"],
        json!({"create": 0, "update": 1, "prune": 0, "unchanged": observed.len() - 1})
    );
    assert_eq!(plan["changes"], true);
    let updates: Vec<&Value> = plan["plans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["entries"].as_array().unwrap())
        .filter(|e| e["action"] == "update")
        .collect();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["changedPaths"], json!(["spec.replicas"]));
    assert_eq!(
        updates[0]["patch"],
        json!([{"op": "replace", "path": "/spec/replicas", "value": 1}])
    );
}

#[test]
fn secret_values_never_appear_in_any_format() {
    let mut observed = applied_cluster(&crs());
    let old_userinfo = "reader:0ld-pa55w0rd";
    edit(&mut observed, "Secret", "meshsync-broker-auth", |o| {
        o["data"]["token"] = json!(base64(old_userinfo.as_bytes()))
    });
    let (_dir, crs, live) = setup(&observed);
    let new_userinfo = "reader:s3cr3t-pa55";
    let forbidden = [
        old_userinfo.to_string(),
        new_userinfo.to_string(),
        base64(old_userinfo.as_bytes()),
        base64(new_userinfo.as_bytes()),
        "s3cr3t".to_string(),
        "0ld-pa55".to_string(),
    ];
    for format in ["diff", "patch", "json"] {
        let output = plan(&["-f", &crs, "--observed", &live, "-o", format, "-v"]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{format}: {}",
            stderr(&output)
        );
        let text = stdout(&output);
        assert!(
            text.contains("meshsync-broker-auth"),
            "{format}: the Secret is planned\n{text}"
        );
        for secret in &forbidden {
            assert!(
                !text.contains(secret.as_str()),
                "{format} output leaks {secret}:\n{text}"
            );
        }
        if format == "diff" {
            assert!(
                text.contains("*** (before)") && text.contains("*** (after)"),
                "{text}"
            );
        }
    }
}

#[test]
fn planning_without_a_cluster_is_deterministic_too() {
    let examples = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    for format in ["diff", "patch", "json"] {
        let first = plan(&["-f", &examples, "-o", format]);
        let second = plan(&["-f", &examples, "-o", format]);
        assert_eq!(stdout(&first), stdout(&second), "{format}");
    }
}

#[test]
fn output_is_deterministic() {
    let mut observed = applied_cluster(&crs());
    edit(&mut observed, "StatefulSet", "meshery-broker", |o| {
        o["spec"]["replicas"] = json!(2)
    });
    let (_dir, crs, live) = setup(&observed);
    for format in ["diff", "patch", "json"] {
        let first = plan(&["-f", &crs, "--observed", &live, "-o", format, "-v"]);
        let second = plan(&["-f", &crs, "--observed", &live, "-o", format, "-v"]);
        assert_eq!(stdout(&first), stdout(&second), "{format}");
    }
}

/// The planner says what the controller's status says: a MeshSync release before v1.0.1 cannot use
/// a user:password credential, so the operator would not deploy it.
#[test]
fn a_meshsync_that_could_not_read_its_credential_is_reported_not_planned() {
    let dir = tempfile::tempdir().unwrap();
    let old_release = write(
        dir.path(),
        "meshsync.yaml",
        &MESHSYNC.replace("spec:\n", "spec:\n  version: v1.0.0\n"),
    );
    let output = plan(&["-f", &old_release]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("meshsync.yaml")
            && message.contains("MeshSync meshery/meshsync would not be deployed")
            && message.contains("v1.0.1 or later"),
        "{message}"
    );
    assert!(stdout(&output).is_empty());

    let default_release = write(dir.path(), "default.yaml", MESHSYNC);
    assert_eq!(plan(&["-f", &default_release]).status.code(), Some(1));
}

#[test]
fn invalid_resources_exit_two_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let invalid = write(
        dir.path(),
        "bad-broker.yaml",
        "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {name: b, namespace: meshery}\nspec: {size: 40}\n",
    );
    let output = plan(&["-f", &invalid]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("bad-broker.yaml")
            && message.contains("Broker meshery/b is invalid")
            && message.contains("spec.size"),
        "{message}"
    );
    assert!(stdout(&output).is_empty());

    let other = write(
        dir.path(),
        "deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
    );
    let message = stderr(&plan(&["-f", &other]));
    assert!(
        message.contains("deployment.yaml") && message.contains("not a Broker or MeshSync"),
        "{message}"
    );

    let broken = write(dir.path(), "broken.yaml", "kind: Broker\n  metadata: [\n");
    let output = plan(&["-f", &broken]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("broken.yaml"),
        "{}",
        stderr(&output)
    );

    let missing = dir.path().join("missing.yaml").display().to_string();
    let output = plan(&["-f", &missing]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("missing.yaml"));

    let valid = write(dir.path(), "ok.yaml", BROKER);
    let bad_observed = write(
        dir.path(),
        "live.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
    );
    let output = plan(&["-f", &valid, "--observed", &bad_observed]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("live.yaml"), "{}", stderr(&output));
}

/// Whatever shape the observed objects take, planning and printing report, never panic.
mod malformed_observed {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::FileFailurePersistence;

    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    pointers(
                        child,
                        format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                        out,
                    );
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    pointers(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 96,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/plan_cli.txt"))),
            ..ProptestConfig::default()
        })]

        #[test]
        fn never_panics(object in any::<Index>(), spots in prop::collection::vec((any::<Index>(), 0usize..8), 1..6)) {
            let documents = parse_documents("crs.yaml", &crs()).unwrap();
            let mut observed = applied_cluster(&crs());
            let at = object.index(observed.len());
            for (spot, replacement) in spots {
                let mut all = Vec::new();
                pointers(&observed[at].0, String::new(), &mut all);
                let pointer = spot.get(&all).clone();
                let value = [json!(null), json!(1), json!("x"), json!([]), json!({}), json!(true), json!([1, "a"]), json!({"a": {}})][replacement].clone();
                if pointer.is_empty() || pointer == "/kind" || pointer == "/apiVersion" || pointer.starts_with("/metadata/name") {
                    continue;
                }
                *observed[at].0.pointer_mut(&pointer).unwrap() = value;
            }
            let plans = plan_documents(&documents, &observed).unwrap();
            for format in [
                meshery_operator::cli::plan::OutputFormat::Diff,
                meshery_operator::cli::plan::OutputFormat::Patch,
                meshery_operator::cli::plan::OutputFormat::Json,
            ] {
                let text = meshery_operator::cli::plan::format_plans(&plans, &observed, format, true, false);
                prop_assert!(!text.is_empty());
            }
        }
    }
}
