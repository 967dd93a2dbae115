//! Server-side apply semantics: conflicts, forced moves, removal of omitted fields, shared
//! ownership, no-op applies, list merge strategies, CRD markers, status subresource, updates.

use kube_sim::list_keys::{builtin_schema, crd_schema};
use kube_sim::ssa::{ApplyError, Conflict, FieldSet, apply, managed_sets, record_update};
use serde_json::{Value, json};

const T1: &str = "2026-01-01T00:00:00Z";
const T2: &str = "2026-01-01T00:01:00Z";
const T3: &str = "2026-01-01T00:02:00Z";
const T4: &str = "2026-01-01T00:03:00Z";

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "namespace": "meshery"}, "data": data})
}

fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

fn fields(obj: &Value, manager: &str) -> Value {
    entry(obj, manager)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["manager"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn deployment(containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "d", "namespace": "meshery"},
           "spec": {"template": {"spec": {"containers": containers}}}})
}

#[test]
fn conflicts_name_every_field_and_manager_and_force_moves_ownership() {
    let s = builtin_schema("", "ConfigMap");
    let a = apply(
        None,
        &cm(json!({"x": "1", "y": "1", "z": "1"})),
        "alpha",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    let b = apply(
        Some(&a),
        &cm(json!({"w": "1"})),
        "beta",
        false,
        &*s,
        None,
        T2,
    )
    .unwrap();

    // gamma changes x and y (alpha's) and w (beta's) and adds a new key v.
    let cfg = cm(json!({"x": "2", "y": "2", "w": "2", "v": "2"}));
    let err = apply(Some(&b), &cfg, "gamma", false, &*s, None, T3).unwrap_err();
    let ApplyError::Conflicts(mut cs) = err else {
        panic!("want conflicts")
    };
    cs.sort_by(|p, q| (&p.manager, &p.field).cmp(&(&q.manager, &q.field)));
    assert_eq!(
        cs,
        vec![
            Conflict {
                manager: "alpha".into(),
                update_api_version: None,
                field: ".data.x".into()
            },
            Conflict {
                manager: "alpha".into(),
                update_api_version: None,
                field: ".data.y".into()
            },
            Conflict {
                manager: "beta".into(),
                update_api_version: None,
                field: ".data.w".into()
            },
        ]
    );

    // Same value is not a conflict: shared ownership.
    let shared = apply(
        Some(&b),
        &cm(json!({"x": "1"})),
        "gamma",
        false,
        &*s,
        None,
        T3,
    )
    .unwrap();
    assert_eq!(
        fields(&shared, "alpha"),
        json!({"f:data": {"f:x": {}, "f:y": {}, "f:z": {}}})
    );
    assert_eq!(fields(&shared, "gamma"), json!({"f:data": {"f:x": {}}}));

    // With force: fields move; beta's entry becomes empty and disappears.
    let forced = apply(Some(&b), &cfg, "gamma", true, &*s, None, T3).unwrap();
    assert_eq!(
        forced["data"],
        json!({"x": "2", "y": "2", "z": "1", "w": "2", "v": "2"})
    );
    assert_eq!(fields(&forced, "alpha"), json!({"f:data": {"f:z": {}}}));
    assert_eq!(
        fields(&forced, "gamma"),
        json!({"f:data": {"f:v": {}, "f:w": {}, "f:x": {}, "f:y": {}}})
    );
    assert!(entry(&forced, "beta").is_none());
    assert_eq!(managers(&forced), vec!["alpha", "gamma"]);
}

#[test]
fn omitted_fields_are_removed_unless_someone_else_owns_them() {
    let s = builtin_schema("", "ConfigMap");
    let a = apply(
        None,
        &cm(json!({"a": "1", "b": "1", "shared": "s"})),
        "alpha",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    // beta applies the same value of `shared`: co-owned.
    let b = apply(
        Some(&a),
        &cm(json!({"shared": "s"})),
        "beta",
        false,
        &*s,
        None,
        T2,
    )
    .unwrap();
    // kubectl edits: adds `c` and changes `b` (an Update takes b from alpha).
    let mut edited = b.clone();
    edited["data"]["c"] = "1".into();
    edited["data"]["b"] = "2".into();
    let u = record_update(Some(&b), &edited, "kubectl-edit", &*s, None, T3);
    assert_eq!(
        fields(&u, "kubectl-edit"),
        json!({"f:data": {"f:b": {}, "f:c": {}}})
    );
    assert_eq!(entry(&u, "kubectl-edit").unwrap()["operation"], "Update");
    assert_eq!(
        fields(&u, "alpha"),
        json!({"f:data": {"f:a": {}, "f:shared": {}}})
    );

    // alpha now applies only `a`: `shared` stays (beta owns it), `b` and `c` stay (kubectl-edit
    // owns them), nothing alpha alone owned is left to remove.
    let r = apply(
        Some(&u),
        &cm(json!({"a": "1"})),
        "alpha",
        false,
        &*s,
        None,
        T4,
    )
    .unwrap();
    assert_eq!(
        r["data"],
        json!({"a": "1", "b": "2", "c": "1", "shared": "s"})
    );

    // alpha applies nothing under data: `a` (only alpha's) is removed.
    let r2 = apply(Some(&r), &cm(json!({})), "alpha", false, &*s, None, T4).unwrap();
    assert_eq!(r2["data"], json!({"b": "2", "c": "1", "shared": "s"}));
    // alpha applied only `data: {}`, which it now owns as an empty map; with no data at all it
    // owns nothing and its entry disappears.
    let mut bare = cm(json!({}));
    bare.as_object_mut().unwrap().remove("data");
    let r3 = apply(Some(&r2), &bare, "alpha", false, &*s, None, T4).unwrap();
    assert!(entry(&r3, "alpha").is_none());
    assert_eq!(r3["data"], json!({"b": "2", "c": "1", "shared": "s"}));
}

#[test]
fn fields_of_an_omitted_struct_go_with_it() {
    let s = builtin_schema("apps", "Deployment");
    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "annotations": {"a": "1"}},
        "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let mut v1 = apply(None, &cfg, "op", false, &*s, None, T1).unwrap();
    v1["metadata"]["uid"] = "u-1".into();
    v1["metadata"]["resourceVersion"] = "3".into();
    let cfg2 = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d"}, "spec": {"replicas": 2}});
    let v2 = apply(Some(&v1), &cfg2, "op", false, &*s, None, T2).unwrap();
    assert_eq!(v2["spec"], json!({"replicas": 2}));
    assert!(v2["metadata"].get("annotations").is_none());
    assert_eq!(v2["metadata"]["name"], "d", "metadata itself survives");
    assert_eq!(v2["metadata"]["uid"], "u-1");
    assert_eq!(v2["metadata"]["resourceVersion"], "3");
    assert_eq!(fields(&v2, "op"), json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn noop_apply_returns_the_live_object_unchanged() {
    let s = builtin_schema("apps", "Deployment");
    let cfg = deployment(
        json!([{"name": "nats", "image": "nats:2", "ports": [{"containerPort": 4222}]}]),
    );
    let mut v1 = apply(None, &cfg, "op", false, &*s, None, T1).unwrap();
    // what the server adds after apply
    v1["metadata"]["uid"] = "u-1".into();
    v1["metadata"]["resourceVersion"] = "7".into();
    v1["metadata"]["generation"] = 1.into();
    v1["status"] = json!({"replicas": 1});
    let v2 = apply(Some(&v1), &cfg, "op", false, &*s, None, T2).unwrap();
    assert_eq!(
        serde_json::to_vec(&v2).unwrap(),
        serde_json::to_vec(&v1).unwrap()
    );
    assert_eq!(entry(&v2, "op").unwrap()["time"], T1);

    // A config carrying server-owned metadata and status is still a no-op.
    let mut noisy = cfg.clone();
    noisy["metadata"]["uid"] = "other".into();
    noisy["metadata"]["resourceVersion"] = "1".into();
    noisy["status"] = json!({"replicas": 5});
    let v3 = apply(Some(&v1), &noisy, "op", false, &*s, None, T2).unwrap();
    assert_eq!(v3, v1);

    // Re-applying the same values by a second manager changes only managedFields.
    let v4 = apply(Some(&v1), &cfg, "other", false, &*s, None, T2).unwrap();
    let mut a = v4.clone();
    let mut b = v1.clone();
    a["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    b["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    assert_eq!(a, b);
    assert_eq!(managers(&v4), vec!["op", "other"]);
}

#[test]
fn map_lists_merge_by_key_across_managers() {
    let s = builtin_schema("apps", "Deployment");
    let a = deployment(
        json!([{"name": "nats", "image": "nats:2", "env": [{"name": "A", "value": "1"}]}]),
    );
    let b = deployment(json!([{"name": "nats", "env": [{"name": "B", "value": "2"}]}]));
    let v1 = apply(None, &a, "alpha", false, &*s, None, T1).unwrap();
    let v2 = apply(Some(&v1), &b, "beta", false, &*s, None, T2).unwrap();
    let c = &v2["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        c,
        &json!([{"name": "nats", "image": "nats:2",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])
    );
    assert_eq!(
        fields(&v2, "beta"),
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nats\"}": {
            ".": {}, "f:env": {"k:{\"name\":\"B\"}": {".": {}, "f:name": {}, "f:value": {}}}, "f:name": {}}}}}}})
    );
    // alpha drops its env var: A goes, B stays; the container stays (beta co-owns it).
    let a2 = deployment(json!([{"name": "nats", "image": "nats:2"}]));
    let v3 = apply(Some(&v2), &a2, "alpha", false, &*s, None, T3).unwrap();
    assert_eq!(
        v3["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nats", "image": "nats:2", "env": [{"name": "B", "value": "2"}]}])
    );
    // beta drops everything: the container stays (alpha owns it), B goes, and with it the `env`
    // field itself, which nobody owns any more (a struct field of the last applied set).
    let b2 = deployment(json!([]));
    let v4 = apply(Some(&v3), &b2, "beta", false, &*s, None, T4).unwrap();
    assert_eq!(
        v4["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nats", "image": "nats:2"}])
    );
    assert!(entry(&v4, "beta").is_none());
}

#[test]
fn new_list_items_keep_the_applied_order() {
    let s = builtin_schema("apps", "Deployment");
    let v1 = apply(
        None,
        &deployment(json!([{"name": "a"}, {"name": "c"}])),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    let v2 = apply(
        Some(&v1),
        &deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
        "op",
        false,
        &*s,
        None,
        T2,
    )
    .unwrap();
    let names: Vec<&str> = v2["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    // Reordering with another manager's item in the list: the real merge walks the live list,
    // keeps items the configuration does not mention where they are, emits shared items in the
    // configuration's order, and places the rest after them: [a,b,c,side] + [c,a] -> [c,side,a]
    // (b pruned).
    let v3 = apply(
        Some(&v2),
        &deployment(json!([{"name": "side"}])),
        "other",
        false,
        &*s,
        None,
        T3,
    )
    .unwrap();
    let v4 = apply(
        Some(&v3),
        &deployment(json!([{"name": "c"}, {"name": "a"}])),
        "op",
        false,
        &*s,
        None,
        T4,
    )
    .unwrap();
    let names: Vec<&str> = v4["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "side", "a"]);
}

#[test]
fn ports_without_protocol_are_keyed_with_the_tcp_default() {
    let s = builtin_schema("apps", "Deployment");
    let cfg = deployment(
        json!([{"name": "nats", "ports": [{"containerPort": 4222}, {"containerPort": 4222, "protocol": "UDP"}]}]),
    );
    let v = apply(None, &cfg, "op", false, &*s, None, T1).unwrap();
    let f = fields(&v, "op");
    let ports =
        &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nats\"}"]["f:ports"];
    assert_eq!(
        ports,
        &json!({
            "k:{\"containerPort\":4222,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}},
            "k:{\"containerPort\":4222,\"protocol\":\"UDP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}
        })
    );
    // An explicit TCP is the same element.
    let cfg2 = deployment(
        json!([{"name": "nats", "ports": [{"containerPort": 4222, "protocol": "TCP", "name": "client"}]}]),
    );
    let v2 = apply(Some(&v), &cfg2, "other", false, &*s, None, T2).unwrap();
    let ports = v2["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ports.len(), 2);
    assert_eq!(
        ports[0],
        json!({"containerPort": 4222, "protocol": "TCP", "name": "client"})
    );

    // Service ports: keyed by port+protocol, TCP defaulted.
    let svc = builtin_schema("", "Service");
    let cfg = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                     "spec": {"selector": {"app": "x"}, "ports": [{"port": 4222, "targetPort": 4222}]}});
    let v = apply(None, &cfg, "op", false, &*svc, None, T1).unwrap();
    assert_eq!(
        fields(&v, "op"),
        json!({"f:spec": {"f:ports": {"k:{\"port\":4222,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}},
                          "f:selector": {}}})
    );
}

#[test]
fn missing_or_duplicate_list_keys_are_rejected_like_the_real_server() {
    let s = builtin_schema("apps", "Deployment");
    let err = apply(
        None,
        &deployment(json!([{"image": "nats"}])),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap_err();
    let ApplyError::Invalid(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.starts_with(
            "failed to create typed patch object (meshery/d; apps/v1, Kind=Deployment)"
        ),
        "{msg}"
    );
    assert!(msg.contains(".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\""), "{msg}");
    assert_eq!(err.http_status(), 500);

    let err = apply(
        None,
        &deployment(json!([{"name": "a"}, {"name": "a"}])),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap_err();
    let ApplyError::Invalid(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("duplicate entries for key [name=\"a\"]"),
        "{msg}"
    );

    let mut with_mf = deployment(json!([]));
    with_mf["metadata"]["managedFields"] = json!([{"manager": "x"}]);
    let err = apply(None, &with_mf, "op", false, &*s, None, T1).unwrap_err();
    assert_eq!(
        err,
        ApplyError::Invalid("metadata.managedFields must be nil".into())
    );
    assert_eq!(err.http_status(), 400);

    let err = apply(
        None,
        &json!({"kind": "Deployment"}),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap_err();
    assert!(matches!(err, ApplyError::Invalid(_)));
}

#[test]
fn set_lists_merge_by_value() {
    let s = builtin_schema("", "ConfigMap");
    let with_fin = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
    let v1 = apply(
        None,
        &with_fin(json!(["meshery.io/a"])),
        "alpha",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    let v2 = apply(
        Some(&v1),
        &with_fin(json!(["meshery.io/b"])),
        "beta",
        false,
        &*s,
        None,
        T2,
    )
    .unwrap();
    assert_eq!(
        v2["metadata"]["finalizers"],
        json!(["meshery.io/a", "meshery.io/b"])
    );
    assert_eq!(
        fields(&v2, "beta"),
        json!({"f:metadata": {"f:finalizers": {"v:\"meshery.io/b\"": {}}}})
    );
    let v3 = apply(
        Some(&v2),
        &with_fin(json!([])),
        "alpha",
        false,
        &*s,
        None,
        T3,
    )
    .unwrap();
    assert_eq!(v3["metadata"]["finalizers"], json!(["meshery.io/b"]));
}

#[test]
fn atomic_lists_are_replaced_whole_and_owned_as_one_field() {
    let s = builtin_schema("apps", "Deployment");
    let with_tol = |t: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"template": {"spec": {"tolerations": t}}}})
    };
    let v1 = apply(
        None,
        &with_tol(json!([{"key": "a", "operator": "Exists"}])),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    assert_eq!(
        fields(&v1, "op"),
        json!({"f:spec": {"f:template": {"f:spec": {"f:tolerations": {}}}}})
    );
    let v2 = apply(
        Some(&v1),
        &with_tol(json!([{"key": "b", "operator": "Exists"}])),
        "op",
        false,
        &*s,
        None,
        T2,
    )
    .unwrap();
    assert_eq!(
        v2["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
    // The selector is an atomic struct: replaced, not merged.
    let sel = |m: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                                "spec": {"selector": {"matchLabels": m}}})
    };
    let v3 = apply(
        Some(&v2),
        &sel(json!({"a": "1", "b": "2"})),
        "op",
        false,
        &*s,
        None,
        T3,
    )
    .unwrap();
    let v4 = apply(
        Some(&v3),
        &sel(json!({"a": "1"})),
        "op",
        true,
        &*s,
        None,
        T4,
    )
    .unwrap();
    assert_eq!(v4["spec"]["selector"], json!({"matchLabels": {"a": "1"}}));
    assert_eq!(fields(&v4, "op"), json!({"f:spec": {"f:selector": {}}}));
}

fn broker_crd_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "hosts": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}}
            }},
            "status": {"type": "object", "properties": {
                "endpoint": {"type": "object", "properties": {"internal": {"type": "string"}}},
                "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {
                        "type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"}}}}
            }}
        }
    })
}

fn broker(spec: Option<Value>, status: Option<Value>) -> Value {
    let mut v = json!({"apiVersion": "meshery.io/v1alpha1", "kind": "Broker",
                       "metadata": {"name": "meshery-broker", "namespace": "meshery"}});
    if let Some(s) = spec {
        v["spec"] = s;
    }
    if let Some(s) = status {
        v["status"] = s;
    }
    v
}

#[test]
fn crd_markers_and_status_subresource() {
    let s = crd_schema(&broker_crd_schema());
    let v1 = apply(
        None,
        &broker(
            Some(json!({"size": 1, "tags": ["a"], "hosts": ["h1"],
                                             "extra": {"k": {"v": "x"}}})),
            Some(json!({"conditions": [{"type": "Ready", "status": "True"}]})),
        ),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    // status is not applied through the main resource.
    assert!(v1.get("status").is_none());
    assert_eq!(
        fields(&v1, "op"),
        json!({"f:spec": {"f:extra": {"f:k": {".": {}, "f:v": {}}}, "f:hosts": {}, "f:size": {},
                          "f:tags": {"v:\"a\"": {}}}})
    );

    // Two controllers each own one condition through the status subresource.
    let v2 = apply(
        Some(&v1),
        &broker(
            Some(json!({"size": 99})),
            Some(json!({"conditions": [{"type": "Ready", "status": "True"}]})),
        ),
        "controller-a",
        false,
        &*s,
        Some("status"),
        T2,
    )
    .unwrap();
    assert_eq!(v2["spec"]["size"], 1, "spec is not applied through status");
    let v3 = apply(
        Some(&v2),
        &broker(
            None,
            Some(json!({"conditions": [{"type": "Synced", "status": "False", "reason": "Init"}]})),
        ),
        "controller-b",
        false,
        &*s,
        Some("status"),
        T3,
    )
    .unwrap();
    assert_eq!(
        v3["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False", "reason": "Init"}])
    );
    let eb = entry(&v3, "controller-b").unwrap();
    assert_eq!(eb["subresource"], "status");
    assert_eq!(eb["operation"], "Apply");
    assert_eq!(
        eb["fieldsV1"],
        json!({"f:status": {"f:conditions": {"k:{\"type\":\"Synced\"}": {".": {}, "f:reason": {}, "f:status": {}, "f:type": {}}}}})
    );
    // controller-b flips Ready: conflict with controller-a.
    let err = apply(
        Some(&v3),
        &broker(
            None,
            Some(json!({"conditions": [{"type": "Ready", "status": "False"}]})),
        ),
        "controller-b",
        false,
        &*s,
        Some("status"),
        T4,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "controller-a".into(),
            update_api_version: None,
            field: ".status.conditions[type=\"Ready\"].status".into()
        }])
    );
    // controller-b's apply without Synced removes its condition.
    let v4 = apply(
        Some(&v3),
        &broker(None, Some(json!({"conditions": []}))),
        "controller-b",
        false,
        &*s,
        Some("status"),
        T4,
    )
    .unwrap();
    assert_eq!(
        v4["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}])
    );
}

#[test]
fn status_updates_are_recorded_with_the_subresource() {
    let s = crd_schema(&broker_crd_schema());
    let v1 = apply(
        None,
        &broker(Some(json!({"size": 1})), None),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    let mut v2 = v1.clone();
    v2["status"] = json!({"endpoint": {"internal": "nats://x"}});
    let u = record_update(Some(&v1), &v2, "meshery-operator", &*s, Some("status"), T2);
    let e = entry(&u, "meshery-operator").unwrap();
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["apiVersion"], "meshery.io/v1alpha1");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {".": {}, "f:endpoint": {".": {}, "f:internal": {}}}})
    );
    // Apply entries sort before Update entries.
    assert_eq!(managers(&u), vec!["op", "meshery-operator"]);
    // An update that changes nothing keeps the entry (and its time) as it was.
    let u2 = record_update(Some(&u), &u, "meshery-operator", &*s, Some("status"), T3);
    assert_eq!(u2, u);
}

#[test]
fn update_entries_are_per_manager_and_version_and_take_fields() {
    let s = builtin_schema("", "ConfigMap");
    let v1 = apply(None, &cm(json!({"a": "1"})), "op", false, &*s, None, T1).unwrap();
    let mut v2 = v1.clone();
    v2["data"]["a"] = "2".into();
    let u = record_update(Some(&v1), &v2, "kubectl", &*s, None, T2);
    assert!(
        entry(&u, "op").is_none(),
        "op owned only a, which kubectl took"
    );
    let mut v3 = u.clone();
    v3["data"]["b"] = "1".into();
    let u2 = record_update(Some(&u), &v3, "kubectl", &*s, None, T3);
    assert_eq!(
        fields(&u2, "kubectl"),
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
    assert_eq!(entry(&u2, "kubectl").unwrap()["time"], T3);
    // op applies a again: conflict with the Update manager.
    let err = apply(
        Some(&u2),
        &cm(json!({"a": "1"})),
        "op",
        false,
        &*s,
        None,
        T4,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "kubectl".into(),
            update_api_version: Some("v1".into()),
            field: ".data.a".into()
        }])
    );
    // A client clearing managedFields with `[{}]` resets tracking...
    let mut cleared = u2.clone();
    cleared["metadata"]["managedFields"] = json!([{}]);
    let r = record_update(Some(&u2), &cleared, "kubectl", &*s, None, T4);
    assert!(r["metadata"].get("managedFields").is_none());
    // ...and changes made in the same request are then owned by the writer...
    cleared["data"]["z"] = "1".into();
    let r = record_update(Some(&u2), &cleared, "kubectl", &*s, None, T4);
    assert_eq!(managers(&r), vec!["kubectl"]);
    assert_eq!(fields(&r, "kubectl"), json!({"f:data": {"f:z": {}}}));
    // ...while `[]` is ignored (clients unaware of managedFields never strip it).
    let mut emptied = u2.clone();
    emptied["metadata"]["managedFields"] = json!([]);
    let r = record_update(Some(&u2), &emptied, "kubectl", &*s, None, T4);
    assert_eq!(r, u2);
    // A removed field leaves every manager.
    let mut v4 = u2.clone();
    v4["data"].as_object_mut().unwrap().remove("b");
    let r = record_update(Some(&u2), &v4, "other", &*s, None, T4);
    assert_eq!(fields(&r, "kubectl"), json!({"f:data": {"f:a": {}}}));
    assert!(
        entry(&r, "other").is_none(),
        "removing a field owns nothing"
    );
}

#[test]
fn objects_without_managed_fields_belong_to_before_first_apply() {
    let s = builtin_schema("", "ConfigMap");
    let live = cm(json!({"a": "1", "b": "1"}));
    let err = apply(
        Some(&live),
        &cm(json!({"a": "2"})),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "before-first-apply".into(),
            update_api_version: Some("v1".into()),
            field: ".data.a".into()
        }])
    );
    let v = apply(
        Some(&live),
        &cm(json!({"a": "1"})),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    let e = entry(&v, "before-first-apply").unwrap();
    assert_eq!(e["operation"], "Update");
    // The live object's field set, as an applied configuration would own it (no "." on data).
    assert_eq!(e["fieldsV1"], json!({"f:data": {"f:a": {}, "f:b": {}}}));
}

#[test]
fn null_in_config_removes_the_field_and_owns_it() {
    let s = builtin_schema("", "ConfigMap");
    let v1 = apply(
        None,
        &cm(json!({"a": "1", "b": "1"})),
        "op",
        false,
        &*s,
        None,
        T1,
    )
    .unwrap();
    let v2 = apply(
        Some(&v1),
        &cm(json!({"a": "1", "b": null})),
        "op",
        false,
        &*s,
        None,
        T2,
    )
    .unwrap();
    assert_eq!(v2["data"], json!({"a": "1"}));
    assert_eq!(fields(&v2, "op"), json!({"f:data": {"f:a": {}, "f:b": {}}}));
    // and it is idempotent
    let v3 = apply(
        Some(&v2),
        &cm(json!({"a": "1", "b": null})),
        "op",
        false,
        &*s,
        None,
        T3,
    )
    .unwrap();
    assert_eq!(v3, v2);
    // null on a field another manager owns with a value is a conflict
    let err = apply(
        Some(&v1),
        &cm(json!({"a": null})),
        "other",
        false,
        &*s,
        None,
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "op".into(),
            update_api_version: None,
            field: ".data.a".into()
        }])
    );
}

#[test]
fn entries_are_sorted_like_the_real_server() {
    let s = builtin_schema("", "ConfigMap");
    let v1 = apply(None, &cm(json!({"a": "1"})), "zeta", false, &*s, None, T2).unwrap();
    let v2 = apply(
        Some(&v1),
        &cm(json!({"b": "1"})),
        "alpha",
        false,
        &*s,
        None,
        T3,
    )
    .unwrap();
    let v3 = apply(
        Some(&v2),
        &cm(json!({"c": "1"})),
        "beta",
        false,
        &*s,
        None,
        T2,
    )
    .unwrap();
    let mut v4 = v3.clone();
    v4["data"]["d"] = "1".into();
    let v5 = record_update(Some(&v3), &v4, "aaa-update", &*s, None, T1);
    // Apply before Update; then by time; then by manager.
    assert_eq!(managers(&v5), vec!["beta", "zeta", "alpha", "aaa-update"]);
    let sets = managed_sets(&v5);
    assert_eq!(
        sets[0].2,
        FieldSet::from_fields_v1(&json!({"f:data": {"f:c": {}}}))
    );
}

#[test]
fn metadata_the_server_owns_is_never_owned() {
    let s = builtin_schema("", "ConfigMap");
    let mut cfg = cm(json!({"a": "1"}));
    cfg["metadata"]["labels"] = json!({"app": "x"});
    cfg["metadata"]["uid"] = "abc".into();
    cfg["metadata"]["generation"] = 3.into();
    let v = apply(None, &cfg, "op", false, &*s, None, T1).unwrap();
    assert!(v["metadata"].get("uid").is_none());
    assert!(v["metadata"].get("generation").is_none());
    assert_eq!(
        fields(&v, "op"),
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
    );
}

#[test]
fn at_most_ten_update_managers_oldest_fold_into_ancient_changes() {
    let s = builtin_schema("", "ConfigMap");
    let mut obj = apply(None, &cm(json!({"base": "1"})), "op", false, &*s, None, T1).unwrap();
    for i in 0..12 {
        let mut next = obj.clone();
        next["data"][format!("k{i:02}")] = "1".into();
        let t = format!("2026-01-02T00:{i:02}:00Z");
        obj = record_update(Some(&obj), &next, &format!("writer-{i:02}"), &*s, None, &t);
    }
    let ms = managers(&obj);
    // 1 Apply entry + 10 Update entries: writer-00..02 folded into ancient-changes.
    assert_eq!(ms.len(), 11, "{ms:?}");
    assert_eq!(ms[0], "op");
    assert_eq!(ms[1], "ancient-changes");
    let anc = entry(&obj, "ancient-changes").unwrap();
    assert_eq!(
        anc["fieldsV1"],
        json!({"f:data": {"f:k00": {}, "f:k01": {}, "f:k02": {}}})
    );
    assert_eq!(anc["time"], "2026-01-02T00:02:00Z");
    assert!(entry(&obj, "writer-02").is_none());
    assert!(entry(&obj, "writer-03").is_some());
}
