//! Golden tests on objects as a real API server returns them (tests/fixtures/observed), planned
//! against what the operator renders (tests/fixtures/desired).

mod diff_support;

use diff_support::{MANAGER, load};
use meshery_operator::diff::{Action, Owner, compare, plan};
use meshery_operator::object::Object;
use serde_json::{Value, json};

fn meshsync_owner() -> Owner {
    Owner {
        kind: "MeshSync".into(),
        name: "meshery-meshsync".into(),
        namespace: "meshery".into(),
        uid: "6c1f3f4e-2b7a-4d3e-9f1a-0e5c2b8d7a10".into(),
    }
}

fn broker_owner() -> Owner {
    diff_support::owner("meshery-broker")
}

fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap()
}

fn leaf_count(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.values().map(leaf_count).sum(),
        Value::Array(items) => items.iter().map(leaf_count).sum(),
        _ => 1,
    }
}

fn strings(paths: &[meshery_operator::diff::FieldPath]) -> Vec<String> {
    paths.iter().map(ToString::to_string).collect()
}

#[test]
fn nothing_changed_although_the_server_added_many_fields() {
    let desired = load("desired/meshsync.yaml");
    let observed = load("observed/meshsync.yaml");
    let deployment = find(&desired, "Deployment", "meshery-meshsync");
    let mut live = find(&observed, "Deployment", "meshery-meshsync").0.clone();
    live["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let added = leaf_count(&live) - leaf_count(&deployment.0);
    assert!(
        added >= 20,
        "the fixture should carry at least 20 server/other-manager fields, has {added}"
    );

    let plan = plan(&desired, &observed, &meshsync_owner(), MANAGER);
    let actions: Vec<(String, &Action)> = plan
        .entries
        .iter()
        .map(|e| (e.key.to_string(), &e.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            (
                "ConfigMap meshery/meshery-meshsync-watch-list".to_string(),
                &Action::Unchanged {
                    yielded_paths: vec![]
                }
            ),
            (
                "Deployment.apps meshery/meshery-meshsync".to_string(),
                // The HPA's `replicas` are not rendered (`autoscaled`), so not compared.
                &Action::Unchanged {
                    yielded_paths: vec![]
                }
            ),
        ]
    );
    assert_eq!(
        plan.counts().summary(),
        "Plan: 0 to create, 0 to update, 0 to prune, 2 unchanged."
    );
}

#[test]
fn an_image_bump_patches_only_the_image_and_leaves_other_managers_alone() {
    let mut desired = find(
        &load("desired/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    desired.0["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("meshery/meshsync:v1.0.4");
    let observed = find(
        &load("observed/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    let Action::Update {
        apply_body,
        json_patch,
        changed_paths,
        immutable_paths,
        yielded_paths,
    } = compare(&desired, &observed, MANAGER)
    else {
        panic!("expected an update")
    };
    assert_eq!(
        strings(&changed_paths),
        ["spec.template.spec.containers[name=meshsync].image"]
    );
    assert!(immutable_paths.is_empty());
    assert!(yielded_paths.is_empty());
    assert_eq!(
        serde_json::to_value(&json_patch).unwrap(),
        json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "meshery/meshsync:v1.0.4"}])
    );
    // The body is the render: it never carries the HPA's replicas nor Meshery Server's env vars,
    // args or annotation.
    assert_eq!(apply_body.0, desired.0);
}

#[test]
fn an_env_var_we_applied_before_and_dropped_is_removed() {
    let mut desired = find(
        &load("desired/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    desired.0["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let observed = find(
        &load("observed/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    let Action::Update {
        json_patch,
        changed_paths,
        ..
    } = compare(&desired, &observed, MANAGER)
    else {
        panic!("expected an update")
    };
    assert_eq!(
        strings(&changed_paths),
        ["spec.template.spec.containers[name=meshsync].env[name=BROKER_URL]"]
    );
    assert_eq!(
        serde_json::to_value(&json_patch).unwrap(),
        json!([{"op": "remove", "path": "/spec/template/spec/containers/0/env/1"}])
    );
}

#[test]
fn meshery_server_fields_are_never_drift_even_when_they_change() {
    let desired = load("desired/meshsync.yaml");
    let mut observed = load("observed/meshsync.yaml");
    let deployment = observed
        .iter_mut()
        .find(|o| o.kind() == "Deployment")
        .unwrap();
    let container = &mut deployment.0["spec"]["template"]["spec"]["containers"][0];
    container["args"] = json!(["--outputNamespaces=istio-system"]);
    container["env"][4]["value"] = json!("true");
    deployment.0["spec"]["template"]["metadata"]["annotations"]["meshery.io/restarted-at"] =
        json!("2026-11-23T00:00:00Z");
    deployment.0["spec"]["replicas"] = json!(7);
    let plan = plan(&desired, &observed, &meshsync_owner(), MANAGER);
    assert!(!plan.has_changes(), "{:#?}", plan);
}

#[test]
fn broker_children_as_returned_by_the_server_are_unchanged() {
    let plan = plan(
        &load("desired/broker.yaml"),
        &load("observed/broker.yaml"),
        &broker_owner(),
        MANAGER,
    );
    for entry in &plan.entries {
        assert_eq!(
            entry.action,
            Action::Unchanged {
                yielded_paths: vec![]
            },
            "{}",
            entry.key
        );
    }
    assert_eq!(plan.entries.len(), 4);
}

#[test]
fn a_changed_token_is_reported_on_data_without_its_value() {
    let mut desired = find(
        &load("desired/broker.yaml"),
        "Secret",
        "meshery-broker-auth",
    )
    .clone();
    desired.0["stringData"]["token"] = json!("tnew");
    let observed = find(
        &load("observed/broker.yaml"),
        "Secret",
        "meshery-broker-auth",
    )
    .clone();
    let Action::Update {
        changed_paths,
        json_patch,
        ..
    } = compare(&desired, &observed, MANAGER)
    else {
        panic!("expected an update")
    };
    assert_eq!(strings(&changed_paths), ["data.token"]);
    assert_eq!(
        serde_json::to_value(&json_patch).unwrap(),
        json!([{"op": "replace", "path": "/data/token", "value": "dG5ldw=="}])
    );
}

#[test]
fn immutable_changes_are_flagged() {
    let desired = load("desired/broker.yaml");
    let observed = load("observed/broker.yaml");
    let mut statefulset = find(&desired, "StatefulSet", "meshery-broker").clone();
    statefulset.0["spec"]["serviceName"] = json!("renamed");
    statefulset.0["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nats:2.11");
    let Action::Update {
        changed_paths,
        immutable_paths,
        ..
    } = compare(
        &statefulset,
        find(&observed, "StatefulSet", "meshery-broker"),
        MANAGER,
    )
    else {
        panic!("expected an update")
    };
    assert_eq!(changed_paths.len(), 2);
    assert_eq!(strings(&immutable_paths), ["spec.serviceName"]);

    let headless = find(&desired, "Service", "meshery-broker-headless");
    let mut allocated = find(&observed, "Service", "meshery-broker-headless").clone();
    allocated.0["spec"]["clusterIP"] = json!("10.96.7.7");
    let Action::Update {
        immutable_paths, ..
    } = compare(headless, &allocated, MANAGER)
    else {
        panic!("expected an update")
    };
    assert_eq!(strings(&immutable_paths), ["spec.clusterIP"]);
}

#[test]
fn equivalent_encodings_are_not_drift() {
    let desired = Object(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "meshery"},
        "spec": {"ports": [{"port": 8222, "targetPort": "8222"}]}
    }));
    let observed = Object(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "meshery"},
        "spec": {"ports": [{"port": 8222, "protocol": "TCP", "targetPort": 8222}], "clusterIP": "10.0.0.1"}
    }));
    assert!(matches!(
        compare(&desired, &observed, MANAGER),
        Action::Unchanged { .. }
    ));
}

#[test]
fn only_provably_owned_leftovers_are_pruned_in_reverse_apply_order() {
    let mut observed = load("observed/broker.yaml");
    observed.extend(load("observed/extras.yaml"));
    let plan = plan(
        &load("desired/broker.yaml"),
        &observed,
        &broker_owner(),
        MANAGER,
    );
    let prunes: Vec<String> = plan
        .entries
        .iter()
        .filter(|e| e.action == Action::Prune)
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(
        prunes,
        [
            "PodDisruptionBudget.policy meshery/meshery-broker",
            "ClusterRole.rbac.authorization.k8s.io meshery-broker-reader",
            "ConfigMap meshery/meshery-broker-config",
        ]
    );
    assert_eq!(
        plan.counts().summary(),
        "Plan: 0 to create, 0 to update, 3 to prune, 4 unchanged."
    );
}

#[test]
fn creates_come_in_apply_order() {
    let plan = plan(&load("desired/broker.yaml"), &[], &broker_owner(), MANAGER);
    let order: Vec<String> = plan.entries.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(
        order,
        [
            "Secret meshery/meshery-broker-auth",
            "Service meshery/meshery-broker",
            "Service meshery/meshery-broker-headless",
            "StatefulSet.apps meshery/meshery-broker",
        ]
    );
    assert!(
        plan.entries
            .iter()
            .all(|e| matches!(e.action, Action::Create { .. }))
    );
    assert_eq!(
        plan.counts().summary(),
        "Plan: 4 to create, 0 to update, 0 to prune, 0 unchanged."
    );
}

/// Atomic structs (here an env var's `secretKeyRef`) are replaced whole by an apply: a field added
/// by hand inside one is drift, as the real API server would drop it on our next apply (kube-sim's
/// check against the real server found the diff engine treating them as mergeable maps).
#[test]
fn a_field_added_inside_an_atomic_struct_is_drift() {
    let desired = find(
        &load("desired/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    let mut observed = find(
        &load("observed/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    let env = observed.0["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap();
    let token = env.iter_mut().find(|e| e["name"] == "NATS_TOKEN").unwrap();
    token["valueFrom"]["secretKeyRef"]["optional"] = json!(true);
    let Action::Update { changed_paths, .. } = compare(&desired, &observed, MANAGER) else {
        panic!("a hand edit inside secretKeyRef is drift")
    };
    assert_eq!(
        strings(&changed_paths),
        [
            "spec.template.spec.containers[name=meshsync].env[name=NATS_TOKEN].valueFrom.secretKeyRef"
        ]
    );
}

/// The API server fills `apiVersion: v1` into a `fieldRef` and `divisor: "0"` into a
/// `resourceFieldRef`; read back that way they are not drift. Before this was handled, the
/// broker's `POD_NAME` env var made every resync re-apply the StatefulSet.
#[test]
fn server_defaults_inside_env_var_selectors_are_not_drift() {
    let mut desired = find(
        &load("desired/broker.yaml"),
        "StatefulSet",
        "meshery-broker",
    )
    .clone();
    let mut observed = find(
        &load("observed/broker.yaml"),
        "StatefulSet",
        "meshery-broker",
    )
    .clone();
    let set_env = |object: &mut Object, pod_name: Value, memory: Value| {
        object.0["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": pod_name}},
            {"name": "MEMORY", "valueFrom": {"resourceFieldRef": memory}},
        ]);
    };
    set_env(
        &mut desired,
        json!({"fieldPath": "metadata.name"}),
        json!({"resource": "limits.memory"}),
    );
    set_env(
        &mut observed,
        json!({"apiVersion": "v1", "fieldPath": "metadata.name"}),
        json!({"resource": "limits.memory", "divisor": "0"}),
    );
    assert!(
        matches!(
            compare(&desired, &observed, MANAGER),
            Action::Unchanged { .. }
        ),
        "server-defaulted selectors must not be drift"
    );

    set_env(
        &mut observed,
        json!({"apiVersion": "v1", "fieldPath": "metadata.namespace"}),
        json!({"resource": "limits.memory", "divisor": "0"}),
    );
    let Action::Update { changed_paths, .. } = compare(&desired, &observed, MANAGER) else {
        panic!("a changed fieldPath is drift")
    };
    assert_eq!(
        strings(&changed_paths),
        ["spec.template.spec.containers[name=nats].env[name=POD_NAME].valueFrom.fieldRef"]
    );
}

/// What the operator renders is authoritative: replicas another client changed — `kubectl scale`
/// (an Update through `/scale`), a foreign server-side apply, `kubectl edit` — are drift.
#[test]
fn replicas_another_client_changed_are_drift_unless_autoscaled() {
    let mut desired = find(
        &load("desired/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    desired.0["spec"]["replicas"] = json!(1);
    let observed = find(
        &load("observed/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    for (manager, operation, subresource) in [
        ("kubectl", "Update", "scale"),
        ("kube-controller-manager", "Update", "scale"),
        ("platform-team", "Apply", ""),
        ("kubectl-edit", "Update", ""),
    ] {
        let mut observed = observed.clone();
        let entries = observed.0["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap();
        let scaler = entries
            .iter_mut()
            .find(|e| e["subresource"] == "scale")
            .unwrap();
        scaler["manager"] = json!(manager);
        scaler["operation"] = json!(operation);
        if subresource.is_empty() {
            scaler.as_object_mut().unwrap().remove("subresource");
        }
        let Action::Update {
            changed_paths,
            yielded_paths,
            ..
        } = compare(&desired, &observed, MANAGER)
        else {
            panic!("replicas 3 set by {manager} ({operation} {subresource}) must be drift")
        };
        assert_eq!(strings(&changed_paths), ["spec.replicas"], "{manager}");
        assert!(yielded_paths.is_empty(), "{manager}: {yielded_paths:?}");
    }
}

/// The one deliberate exception: Meshery Server's own apply of an env entry we also render wins.
#[test]
fn meshery_servers_apply_of_a_rendered_env_entry_is_left_to_it() {
    let mut desired = find(
        &load("desired/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    let observed = find(
        &load("observed/meshsync.yaml"),
        "Deployment",
        "meshery-meshsync",
    )
    .clone();
    let servers = observed.0["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "MESHSYNC_REDACT_SECRETS")
        .unwrap()
        .clone();
    let mut ours = servers.clone();
    ours["value"] = json!("operator's value");
    desired.0["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(ours);
    let Action::Unchanged { yielded_paths } = compare(&desired, &observed, MANAGER) else {
        panic!("Meshery Server's env entry must not be fought over")
    };
    assert_eq!(
        strings(&yielded_paths),
        ["spec.template.spec.containers[name=meshsync].env[name=MESHSYNC_REDACT_SECRETS].value"]
    );
}
