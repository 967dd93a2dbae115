//! API-server semantics: finalizers, GC, generation, no-op writes, dry-run, CRD validation, faults,
//! accounting, simulated readiness, and the standalone binary's admin API.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::discovery::ApiResource;
use kube_sim::{Fault, Readiness};
use serde_json::{Value, json};

fn widgets() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        e => panic!("not an API error: {e}"),
    }
}

#[tokio::test]
async fn finalizers_block_deletion_until_emptied() {
    let sim = common::sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let mut c = cm("f");
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &c).await.unwrap();
    let mut events = cms
        .watch(
            &WatchParams::default().timeout(5),
            &sim.resource_version().to_string(),
        )
        .await
        .unwrap()
        .boxed();
    cms.delete("f", &DeleteParams::default()).await.unwrap();
    let held = cms.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    // new finalizers may not be added while deleting
    let err = cms
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), 422);
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(cms.get("f").await.unwrap_err()), 404);
    let mut types = Vec::new();
    while let Some(Ok(ev)) = events.next().await {
        types.push(match ev {
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            _ => continue,
        });
        if types.last() == Some(&"DELETED") {
            break;
        }
    }
    assert_eq!(types, ["MODIFIED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn garbage_collection_by_owner_uid() {
    let sim = common::sim().await;
    let client = sim.client();
    let owners: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widgets());
    let owner = owners
        .create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "o"}, "spec": {"version": "1"}})).unwrap())
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut dep = cm("dep");
    dep.metadata.owner_references = Some(vec![serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "o", "uid": uid, "controller": true, "blockOwnerDeletion": true})).unwrap()]);
    cms.create(&PostParams::default(), &dep).await.unwrap();
    cms.create(&PostParams::default(), &cm("unowned"))
        .await
        .unwrap();
    owners.delete("o", &DeleteParams::default()).await.unwrap();
    common::eventually(5, "dependent collected", || async {
        cms.get("dep").await.is_err().then_some(())
    })
    .await;
    cms.get("unowned").await.unwrap();

    // a cluster-scoped owner (a CRD) owning cluster-scoped ClusterRoles
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("gadgets.example.com").await.unwrap();
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let role: ClusterRole = serde_json::from_value(json!({"metadata": {"name": "r", "ownerReferences": [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "name": "gadgets.example.com", "uid": crd.metadata.uid.unwrap()}]}, "rules": []})).unwrap();
    roles.create(&PostParams::default(), &role).await.unwrap();
    crds.delete("gadgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(5, "clusterrole collected", || async {
        roles.get("r").await.is_err().then_some(())
    })
    .await;
    common::eventually(5, "crd gone", || async {
        crds.get("gadgets.example.com").await.is_err().then_some(())
    })
    .await;

    // foreground deletion keeps the owner until its dependents are gone
    let o2 = owners
        .create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "o2"}, "spec": {"version": "1"}})).unwrap())
        .await
        .unwrap();
    let mut d2 = cm("dep2");
    d2.metadata.owner_references = Some(vec![serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "o2", "uid": o2.metadata.uid.unwrap()})).unwrap()]);
    cms.create(&PostParams::default(), &d2).await.unwrap();
    owners
        .delete("o2", &DeleteParams::foreground())
        .await
        .unwrap();
    common::eventually(5, "foreground: dependent and owner gone", || async {
        (cms.get("dep2").await.is_err() && owners.get("o2").await.is_err()).then_some(())
    })
    .await;

    // namespace deletion removes its content
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let tmp: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    tmp.create(&PostParams::default(), &cm("x")).await.unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    let err = tmp.create(&PostParams::default(), &cm("y")).await;
    assert!(
        err.is_err(),
        "creating in a terminating namespace is forbidden"
    );
    common::eventually(5, "namespace gone", || async {
        nss.get("tmp").await.is_err().then_some(())
    })
    .await;
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    assert_eq!(
        code(
            missing
                .create(&PostParams::default(), &cm("z"))
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test]
async fn generation_noop_and_dry_run() {
    let sim = common::sim().await;
    let client = sim.client();
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let pp = PatchParams::apply("op").force();
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "g", "labels": {"a": "1"}},
        "spec": {"selector": {"matchLabels": {"app": "g"}}, "template": {"metadata": {"labels": {"app": "g"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
    let v1 = deps.patch("g", &pp, &Patch::Apply(&d)).await.unwrap();
    assert_eq!(v1.metadata.generation, Some(1));
    // metadata-only change: no generation bump
    let mut d2 = d.clone();
    d2["metadata"]["labels"]["a"] = json!("2");
    let v2 = deps.patch("g", &pp, &Patch::Apply(&d2)).await.unwrap();
    assert_eq!(v2.metadata.generation, Some(1));
    // a Deployment's annotation change bumps generation (real deployment strategy)
    let mut d2 = d2.clone();
    d2["metadata"]["annotations"] = json!({"note": "x"});
    let v2b = deps.patch("g", &pp, &Patch::Apply(&d2)).await.unwrap();
    assert_eq!(v2b.metadata.generation, Some(2));
    // spec change: bump
    let mut d3 = d2.clone();
    d3["spec"]["replicas"] = json!(3);
    let v3 = deps.patch("g", &pp, &Patch::Apply(&d3)).await.unwrap();
    assert_eq!(v3.metadata.generation, Some(3));
    common::eventually(5, "rolled", || async {
        let s = deps.get_status("g").await.ok()?.status?;
        (s.observed_generation == Some(3) && s.ready_replicas == Some(3)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // no-op apply, no-op merge patch, no-op PUT: same RV, no watch event, no stats write counted as change
    let before = deps.get("g").await.unwrap();
    let rv = before.metadata.resource_version.clone().unwrap();
    let mut events = deps
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    let same = deps.patch("g", &pp, &Patch::Apply(&d3)).await.unwrap();
    assert_eq!(same.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let same = deps
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let same = deps
        .replace("g", &PostParams::default(), &before)
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let mut n = 0;
    while let Some(ev) = events.next().await {
        if !matches!(ev, Ok(WatchEvent::Bookmark(_))) {
            n += 1;
        }
    }
    assert_eq!(n, 0, "no-op writes emit no events");
    assert_eq!(sim.resource_version().to_string(), rv);

    // dryRun=All on every write: full response, nothing stored
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = cms.create(&dry, &cm("dry")).await.unwrap();
    assert!(out.metadata.uid.is_some());
    assert_eq!(code(cms.get("dry").await.unwrap_err()), 404);
    cms.create(&PostParams::default(), &cm("real"))
        .await
        .unwrap();
    let rv0 = sim.resource_version();
    let dpp = PatchParams {
        dry_run: true,
        ..PatchParams::apply("x").force()
    };
    let out = cms.patch("real", &dpp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "real"}, "data": {"k": "changed"}}))).await.unwrap();
    assert_eq!(out.data.unwrap()["k"], "changed");
    let out = cms
        .patch(
            "real",
            &PatchParams {
                dry_run: true,
                ..Default::default()
            },
            &Patch::Merge(json!({"data": {"k": "m"}})),
        )
        .await
        .unwrap();
    assert_eq!(out.data.unwrap()["k"], "m");
    let mut r = cms.get("real").await.unwrap();
    r.data = Some([("k".to_string(), "put".to_string())].into());
    cms.replace("real", &dry, &r).await.unwrap();
    cms.delete(
        "real",
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(cms.get("real").await.unwrap().data.unwrap()["k"], "v");
    assert_eq!(sim.resource_version(), rv0, "dry-run writes store nothing");
    let stats = sim.stats();
    assert!(stats.writes.iter().filter(|w| w.dry_run).count() >= 5);
}

#[tokio::test]
async fn crd_schema_validation_pruning_and_cel_rejection() {
    let sim = common::sim().await;
    let api: Api<DynamicObject> = Api::namespaced_with(sim.client(), "default", &widgets());
    let mk = |spec: Value| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "v"}, "spec": spec})).unwrap()
    };
    let cases = [
        (
            json!({"version": "1", "size": 11}),
            "spec.size",
            "FieldValueInvalid",
        ),
        (
            json!({"version": "1", "size": 0}),
            "spec.size",
            "FieldValueInvalid",
        ),
        (
            json!({"version": "1", "size": "three"}),
            "spec.size",
            "FieldValueTypeInvalid",
        ),
        (json!({"size": 2}), "spec.version", "FieldValueRequired"),
        (
            json!({"version": "UPPER"}),
            "spec.version",
            "FieldValueInvalid",
        ),
        (
            json!({"version": "1", "serviceType": "Magic"}),
            "spec.serviceType",
            "FieldValueNotSupported",
        ),
        (
            json!({"version": "1", "cidrs": ["10.0.0.0/8", "a", "b", "c"]}),
            "spec.cidrs",
            "FieldValueTooMany",
        ),
        (
            json!({"version": "1", "cidrs": ["not-a-cidr"]}),
            "spec.cidrs[0]",
            "FieldValueTypeInvalid",
        ),
        (
            json!({"version": "1", "ports": [{"name": "a"}, {"name": "a"}]}),
            "spec.ports[1]",
            "FieldValueDuplicate",
        ),
        (
            json!({"version": "123456789012345678901"}),
            "spec.version",
            "FieldValueTooLong",
        ),
    ];
    for (spec, field, reason) in cases {
        let err = api
            .create(&PostParams::default(), &mk(spec.clone()))
            .await
            .unwrap_err();
        let kube::Error::Api(s) = err else { panic!() };
        assert_eq!(s.code, 422, "{spec}");
        assert_eq!(s.reason, "Invalid");
        assert!(
            s.message
                .starts_with("Widget.example.com \"v\" is invalid: "),
            "{}",
            s.message
        );
        let details = s.details.expect("details");
        assert!(
            details
                .causes
                .iter()
                .any(|c| c.field == field && c.reason == reason),
            "{spec}: want {field}/{reason}, got {:?}",
            details.causes
        );
    }
    // preserve-unknown-fields subtree is kept, other unknown fields are pruned; defaults applied
    let ok = api
        .create(
            &PostParams::default(),
            &mk(json!({"version": "1", "extra": {"any": {"thing": 1}}, "junk": 1})),
        )
        .await
        .unwrap();
    assert_eq!(ok.data["spec"]["extra"]["any"]["thing"], 1);
    assert!(ok.data["spec"].get("junk").is_none());
    assert_eq!(ok.data["spec"]["size"], 1);
    assert_eq!(ok.data["spec"]["serviceType"], "LoadBalancer");

    // defaults added to the CRD later show on existing objects (defaulting on read)
    let (status, v) = common::raw(
        &sim.client(),
        "PATCH",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        Some("application/json-patch+json"),
        Some(json!([{"op": "add", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/later",
                     "value": {"type": "string", "default": "added-later"}}])),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["metadata"]["generation"], 2);
    let again = api.get("v").await.unwrap();
    assert_eq!(again.data["spec"]["later"], "added-later");
    // ...and are no change: a no-op write keeps the resourceVersion and generation
    let same = api
        .patch(
            "v",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        again.metadata.resource_version
    );
    assert_eq!(same.metadata.generation, again.metadata.generation);

    // A CRD carrying CEL rules is refused, loudly.
    let crds: Api<CustomResourceDefinition> = Api::all(sim.client());
    let cel: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "cels.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "cels", "kind": "Cel"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": [{"rule": "self.a > 0"}],
                    "properties": {"a": {"type": "integer"}}}}}}}]}
    }))
    .unwrap();
    let err = crds.create(&PostParams::default(), &cel).await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!(s.code, 422);
    assert!(s.message.contains("does not evaluate CEL"), "{}", s.message);
    // and an ordinary new CRD starts serving at once, with Established and NamesAccepted
    let mut plain: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &plain).await.unwrap();
    let got = crds.get("things.example.com").await.unwrap();
    let conds = got.status.unwrap().conditions.unwrap();
    for t in ["Established", "NamesAccepted"] {
        assert!(
            conds.iter().any(|c| c.type_ == t && c.status == "True"),
            "{t}"
        );
    }
    plain.metadata.name = Some("wrong.example.com".into());
    assert_eq!(
        code(
            crds.create(&PostParams::default(), &plain)
                .await
                .unwrap_err()
        ),
        422
    );
}

#[tokio::test]
async fn field_validation_for_builtins() {
    let sim = common::sim().await;
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"u"},"data":{"a":"b"},"bogus":1}"#;
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, _, v) = common::raw_full(
        &sim.client(),
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        Some("application/json"),
        Some(body),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("strict decoding error: unknown field \"bogus\""),
        "{v}"
    );
    let (code, head, v) = common::raw_full(
        &sim.client(),
        "POST",
        path,
        Some("application/json"),
        Some(body),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(
        head.get_all("warning")
            .iter()
            .any(|w| w.as_bytes() == b"299 - \"unknown field \\\"bogus\\\"\""),
        "{head:?}"
    );
    assert!(v.get("bogus").is_none(), "unknown fields are dropped");
    // object metadata is validated for every kind
    let bad_label = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"l","labels":{"app":"not valid!"}}}"#;
    let (code, _, v) = common::raw_full(
        &sim.client(),
        "POST",
        path,
        Some("application/json"),
        Some(bad_label),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.labels");
    let two_controllers = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"o","ownerReferences":[
        {"apiVersion":"v1","kind":"ConfigMap","name":"a","uid":"1","controller":true},
        {"apiVersion":"v1","kind":"ConfigMap","name":"b","uid":"2","controller":true}]}}"#;
    let (code, _, v) = common::raw_full(
        &sim.client(),
        "POST",
        path,
        Some("application/json"),
        Some(two_controllers),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    // a value of the wrong type fails decoding
    let bad = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":"three"}}"#;
    let (code, _, v) = common::raw_full(
        &sim.client(),
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some("application/json"),
        Some(bad),
    )
    .await;
    assert_eq!(code, 400, "{v}");
}

#[tokio::test]
async fn fault_injection_each_kind() {
    let sim = common::sim().await;
    // kube's client retries 429/503/504 by default; see the raw faults without that layer.
    let mut cfg = sim.config();
    cfg.default_retry = false;
    let cms: Api<ConfigMap> = Api::default_namespaced(kube::Client::try_from(cfg).unwrap());
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    for status in [500u16, 429, 409, 503] {
        sim.inject(Fault::status(Some("get"), "/configmaps/a", status));
        let err = cms.get("a").await.unwrap_err();
        assert_eq!(code(err), status);
        cms.get("a").await.expect("only the next request fails");
    }
    // with kube's default retry, a single 503 is absorbed by the client
    let retrying: Api<ConfigMap> = Api::default_namespaced(sim.client());
    sim.inject(Fault::status(Some("get"), "/configmaps/a", 503));
    retrying.get("a").await.expect("kube retries a 503");
    // the Nth matching request, for K requests
    sim.inject(
        Fault::status(Some("list"), "/configmaps", 500)
            .nth(2)
            .times(2),
    );
    let lp = kube::api::ListParams::default();
    cms.list(&lp).await.unwrap();
    assert!(cms.list(&lp).await.is_err());
    assert!(cms.list(&lp).await.is_err());
    cms.list(&lp).await.unwrap();
    // verb filter: a create fault does not hit gets
    sim.inject(Fault::status(Some("create"), "/configmaps", 500));
    cms.get("a").await.unwrap();
    assert_eq!(
        code(
            cms.create(&PostParams::default(), &cm("b"))
                .await
                .unwrap_err()
        ),
        500
    );
    cms.create(&PostParams::default(), &cm("b")).await.unwrap();
    // delay
    sim.inject(Fault::delay(
        None,
        "/configmaps/a",
        Duration::from_millis(400),
    ));
    let t = Instant::now();
    cms.get("a").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400));
    // API server down for a period: connections refused, then back on the same port
    sim.down_for(Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = tokio::net::TcpStream::connect(sim.addr()).await;
    assert!(refused.is_err(), "connections are refused while down");
    assert!(cms.get("a").await.is_err());
    common::eventually(5, "back up", || async { cms.get("a").await.ok() }).await;
    // explicit down/up
    sim.go_down();
    assert!(tokio::net::TcpStream::connect(sim.addr()).await.is_err());
    sim.come_up().await.unwrap();
    cms.get("a").await.unwrap();
}

#[tokio::test]
async fn request_accounting() {
    let sim = common::sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    sim.reset_stats();
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    cms.get("a").await.unwrap();
    cms.get("a").await.unwrap();
    cms.list(&Default::default()).await.unwrap();
    cms.patch("a", &PatchParams::apply("mgr"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}))).await.unwrap();
    let deps: Api<Deployment> = Api::default_namespaced(sim.client());
    let _ = deps.get("none").await;
    let s = sim.stats();
    assert_eq!(s.count("get", "configmaps"), 2);
    assert_eq!(s.count("list", "configmaps"), 1);
    assert_eq!(s.count("create", "configmaps"), 1);
    assert_eq!(s.count("patch", "configmaps"), 1);
    assert_eq!(s.count("get", "deployments.apps"), 1);
    assert_eq!(s.writes.len(), 2);
    assert_eq!(s.writes[1].verb, "apply");
    assert_eq!(s.writes[1].field_manager.as_deref(), Some("mgr"));
    assert_eq!(s.writes[1].name.as_deref(), Some("a"));
    assert_eq!(s.writes[1].namespace.as_deref(), Some("default"));
    assert!(!s.writes[1].dry_run);
    sim.reset_stats();
    assert_eq!(sim.stats().writes.len(), 0);
    assert_eq!(sim.stats().verb_total("get"), 0);
}

#[tokio::test]
async fn readiness_faults() {
    let sim = common::sim().await;
    let deps: Api<Deployment> = Api::default_namespaced(sim.client());
    let pp = PatchParams::apply("op").force();
    let mk = |n: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": n},
        "spec": {"selector": {"matchLabels": {"app": n}}, "template": {"metadata": {"labels": {"app": n}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}})
    };
    sim.set_readiness("deployments", "default", "never", Readiness::NeverReady);
    sim.set_readiness(
        "deployments",
        "default",
        "stuck",
        Readiness::ProgressDeadlineExceeded,
    );
    for n in ["never", "stuck", "ok"] {
        deps.patch(n, &pp, &Patch::Apply(mk(n))).await.unwrap();
    }
    common::eventually(5, "ok ready", || async {
        (deps.get_status("ok").await.ok()?.status?.ready_replicas == Some(1)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let never = deps.get_status("never").await.unwrap().status.unwrap();
    assert_eq!(never.ready_replicas, None);
    assert!(
        never
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "False")
    );
    let stuck = deps.get_status("stuck").await.unwrap().status.unwrap();
    assert!(
        stuck
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    );
    sim.set_readiness("deployments", "default", "ok", Readiness::LoseReadiness);
    common::eventually(5, "ok lost readiness", || async {
        let s = deps.get_status("ok").await.ok()?.status?;
        (s.ready_replicas.is_none() && s.unavailable_replicas == Some(1)).then_some(())
    })
    .await;
    sim.set_readiness("deployments", "default", "ok", Readiness::Normal);
    common::eventually(5, "ok ready again", || async {
        (deps.get_status("ok").await.ok()?.status?.ready_replicas == Some(1)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn scale_subresource_pdb_status_and_namespace_defaults() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let sim = common::sim().await;
    let client = sim.client();
    // every namespace gets the default ServiceAccount and the root CA ConfigMap
    let sas: Api<ServiceAccount> = Api::default_namespaced(client.clone());
    sas.get("default").await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    assert!(
        cms.get("kube-root-ca.crt")
            .await
            .unwrap()
            .data
            .unwrap()
            .contains_key("ca.crt")
    );
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "s"}}, "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
    deps.patch("s", &PatchParams::apply("op"), &Patch::Apply(&d))
        .await
        .unwrap();
    let sc = deps.get_scale("s").await.unwrap();
    assert_eq!(sc.spec.unwrap().replicas, Some(3));
    deps.patch_scale(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    assert_eq!(deps.get("s").await.unwrap().spec.unwrap().replicas, Some(2));
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client.clone());
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "s"}}}})).unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let st = common::eventually(5, "pdb status", || async {
        let s = pdbs.get_status("s").await.ok()?.status?;
        (s.current_healthy == 2).then_some(s)
    })
    .await;
    assert_eq!(st.expected_pods, 2);
    assert_eq!(st.desired_healthy, 1);
    assert_eq!(st.disruptions_allowed, 1);
}

#[tokio::test]
async fn standalone_binary_and_admin_api() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kc)
        .arg("--crds")
        .arg(common::fixtures())
        .args(["--ready-after", "0.1", "--load-balancer", "loopback"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Kill the server even when an assertion below fails.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(kc.exists());
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kc).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let mut config = config;
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.get("widgets.example.com").await.unwrap();
    let http = |method: &'static str, path: &'static str, body: Option<Value>| {
        let addr = addr.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let b = body.map(|b| b.to_string()).unwrap_or_default();
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            let body = out
                .split_once("\r\n\r\n")
                .map(|x| x.1.to_string())
                .unwrap_or_default();
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
        }
    };
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    http("DELETE", "/_sim/requests", None).await;
    http(
        "POST",
        "/_sim/faults",
        Some(json!({"verb": "get", "pathContains": "/configmaps/", "action": {"status": 503}})),
    )
    .await;
    assert_eq!(code(cms.get("x").await.unwrap_err()), 503);
    assert_eq!(code(cms.get("x").await.unwrap_err()), 404);
    let stats = http("GET", "/_sim/requests", None).await;
    assert_eq!(stats["counts"]["get configmaps"], 2);
    http("POST", "/_sim/readiness", Some(json!({"resource": "deployments", "namespace": "default", "name": "d", "readiness": "never-ready"}))).await;
    http(
        "PUT",
        "/_sim/settings",
        Some(json!({"readyAfterSeconds": 0.2, "loadBalancer": "pending"})),
    )
    .await;
    let r = http("POST", "/_sim/down", Some(json!({"seconds": 1.5}))).await;
    assert_eq!(r["downForSeconds"], 1.5);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(cms.get("x").await.is_err());
    common::eventually(5, "standalone back up", || async {
        crds.get("widgets.example.com").await.ok()
    })
    .await;
}
