//! Golden tests: managedFields produced by server-side apply and by recorded updates must match the
//! fieldsV1 encoding the real kube-apiserver produces (hand-written expectations under
//! `tests/golden/ssa/`).

use std::path::PathBuf;

use kube_sim::list_keys::builtin_schema;
use kube_sim::ssa::{ApplyError, Conflict, FieldSet, apply, record_update};
use serde_json::Value;

const T1: &str = "2026-01-01T00:00:00Z";
const T2: &str = "2026-01-01T00:01:00Z";

fn golden(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/ssa")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn assert_json_eq(got: &Value, want: &Value, what: &str) {
    if got != want {
        panic!(
            "{what} differs from golden\n--- got ---\n{}\n--- want ---\n{}",
            serde_json::to_string_pretty(got).unwrap(),
            serde_json::to_string_pretty(want).unwrap()
        );
    }
}

#[test]
fn deployment_applied_by_operator_then_server() {
    let schema = builtin_schema("apps", "Deployment");
    let op_cfg = golden("deployment_operator_apply.json");
    let srv_cfg = golden("deployment_server_apply.json");

    // 1. meshery-operator creates the Deployment by apply.
    let v1 = apply(None, &op_cfg, "meshery-operator", false, &*schema, None, T1).unwrap();
    assert_json_eq(
        &v1,
        &golden("deployment_after_operator.json"),
        "after operator apply",
    );

    // 2. meshery-server applies an extra env var, an annotation and a changed `args`. `args` is an
    //    atomic list the operator owns with another value: a conflict, named with its manager.
    let err = apply(
        Some(&v1),
        &srv_cfg,
        "meshery-server",
        false,
        &*schema,
        None,
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "meshery-operator".into(),
            update_api_version: None,
            field: ".spec.template.spec.containers[name=\"nats\"].args".into(),
        }])
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"meshery-operator\": .spec.template.spec.containers[name=\"nats\"].args"
    );
    assert_eq!(err.http_status(), 409);

    // 3. With force, `args` moves to meshery-server; the env lists merge by key across managers.
    let v2 = apply(
        Some(&v1),
        &srv_cfg,
        "meshery-server",
        true,
        &*schema,
        None,
        T2,
    )
    .unwrap();
    assert_json_eq(
        &v2,
        &golden("deployment_after_server.json"),
        "after server apply",
    );

    // 4. Each fieldsV1 round-trips through FieldSet unchanged.
    for e in v2["metadata"]["managedFields"].as_array().unwrap() {
        let fs = FieldSet::from_fields_v1(&e["fieldsV1"]);
        assert_eq!(fs.to_fields_v1(), e["fieldsV1"]);
        assert_eq!(FieldSet::try_from_fields_v1(&e["fieldsV1"]).unwrap(), fs);
    }

    // 5. Both managers re-applying their configurations change nothing.
    let again = apply(
        Some(&v2),
        &op_cfg,
        "meshery-operator",
        false,
        &*schema,
        None,
        "2026-01-02T00:00:00Z",
    );
    // The operator's config still says args ["--jetstream"]: that is now meshery-server's field.
    assert!(
        matches!(again, Err(ApplyError::Conflicts(ref c)) if c.len() == 1 && c[0].manager == "meshery-server")
    );
    let again = apply(
        Some(&v2),
        &srv_cfg,
        "meshery-server",
        false,
        &*schema,
        None,
        "2026-01-02T00:00:00Z",
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        serde_json::to_string(&v2).unwrap()
    );
}

#[test]
fn create_recorded_as_update_matches_kubectl_create_encoding() {
    let schema = builtin_schema("apps", "Deployment");
    let mut obj = golden("deployment_operator_apply.json");
    obj["metadata"]["uid"] = "0b7a6c1e-0000-4000-8000-000000000001".into();
    obj["metadata"]["resourceVersion"] = "1".into();
    obj["metadata"]["creationTimestamp"] = T1.into();
    let out = record_update(None, &obj, "kubectl-create", &*schema, None, T1);
    let mf = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    let e = &mf[0];
    assert_eq!(e["manager"], "kubectl-create");
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], T1);
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e.get("subresource").is_none());
    assert_json_eq(
        &e["fieldsV1"],
        &golden("deployment_kubectl_create.json")["fieldsV1"],
        "kubectl-create fieldsV1",
    );
}

/// The example object of the Kubernetes "Server-Side Apply" documentation page.
#[test]
fn documentation_configmap_example() {
    let schema = builtin_schema("", "ConfigMap");
    let cfg = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
        "data": {"key": "some value"}
    });
    let got = apply(
        None,
        &cfg,
        "kubectl",
        false,
        &*schema,
        None,
        "2010-10-10T00:00:00Z",
    )
    .unwrap();
    assert_json_eq(
        &got,
        &golden("docs_configmap.json"),
        "documentation example",
    );
}
