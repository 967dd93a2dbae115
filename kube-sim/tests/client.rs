//! kube::Client against the sim: typed (k8s-openapi) and dynamic CRUD, apply, status, watcher recovery.

mod common;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use serde_json::json;

fn widgets_ar() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

#[tokio::test]
async fn typed_crud_and_defaulting() {
    let sim = common::sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "c1", "labels": {"app": "x"}}, "data": {"a": "1"}
    }))
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.metadata.generation, None,
        "ConfigMaps carry no generation, as on a real server"
    );
    let got = cms.get("c1").await.unwrap();
    assert_eq!(got.data.unwrap()["a"], "1");
    // list with selectors
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c2", "labels": {"app": "y"}}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let l = cms
        .list(&ListParams::default().labels("app=x"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    let l = cms
        .list(&ListParams::default().labels("app in (x,y),app!=y"))
        .await
        .unwrap();
    assert_eq!(
        l.items
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["c1"]
    );
    let l = cms
        .list(&ListParams::default().labels("!app"))
        .await
        .unwrap();
    assert!(l.items.iter().all(|c| c.metadata.labels.is_none()));
    let l = cms
        .list(&ListParams::default().fields("metadata.name=c2"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    // pagination
    let p1 = cms.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(p1.items.len(), 1);
    let cont = p1.metadata.continue_.clone().expect("continue token");
    let p2 = cms
        .list(&ListParams::default().limit(1).continue_token(&cont))
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_ne!(p1.items[0].metadata.name, p2.items[0].metadata.name);
    // a continue token from before a compaction is 410 Gone
    sim.compact();
    let err = cms
        .list(&ListParams::default().limit(1).continue_token(&cont))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 410));
    // delete collection by label
    let gone = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=y"),
        )
        .await
        .unwrap();
    let names: Vec<String> = gone
        .left()
        .unwrap()
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["c2"]);
    assert!(cms.get("c2").await.is_err());
    // replace with the current RV works; a stale RV is a 409 Conflict
    let mut cur = cms.get("c1").await.unwrap();
    let stale = cur.clone();
    cur.data = Some([("a".to_string(), "2".to_string())].into());
    cms.replace("c1", &PostParams::default(), &cur)
        .await
        .unwrap();
    let err = cms
        .replace("c1", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
        }
        e => panic!("{e}"),
    }
    // Secret stringData is folded into data
    let secrets: Api<Secret> = Api::default_namespaced(sim.client());
    let s = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "s"}, "stringData": {"token": "abc"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(s.data.unwrap()["token"].0, b"abc");
    assert!(s.string_data.is_none());
    // delete
    cms.delete("c1", &DeleteParams::default()).await.unwrap();
    assert!(matches!(cms.get("c1").await, Err(kube::Error::Api(s)) if s.code == 404));
}

#[tokio::test]
async fn typed_apply_workloads_and_services() {
    let sim = common::sim().await;
    let client = sim.client();
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let pp = PatchParams::apply("operator").force();
    let dep = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "nats:2.10.1", "ports": [{"containerPort": 4222}]}]}}}
    });
    let d = deps.patch("d", &pp, &Patch::Apply(&dep)).await.unwrap();
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(
        pod.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(
        pod.containers[0].ports.as_ref().unwrap()[0]
            .protocol
            .as_deref(),
        Some("TCP")
    );
    // defaulted fields are owned by nobody: the operator's Apply entry does not list them
    let mf = d.metadata.managed_fields.as_ref().unwrap();
    let entry = mf
        .iter()
        .find(|e| e.manager.as_deref() == Some("operator"))
        .unwrap();
    let fields = serde_json::to_string(&entry.fields_v1).unwrap();
    assert!(
        !fields.contains("revisionHistoryLimit") && !fields.contains("dnsPolicy"),
        "{fields}"
    );
    // rollout status appears after the readiness delay
    let ready = common::eventually(10, "deployment rolled out", || async {
        let d = deps.get_status("d").await.ok()?;
        let s = d.status?;
        (s.ready_replicas == Some(2) && s.observed_generation == Some(1)).then_some(s)
    })
    .await;
    let conds = ready.conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Progressing"
                && c.reason.as_deref() == Some("NewReplicaSetAvailable"))
    );
    // a spec change bumps generation and re-rolls
    let mut dep2 = dep.clone();
    dep2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nats:2.10.2");
    sim.set_ready_after(Duration::from_secs(600));
    let d2 = deps.patch("d", &pp, &Patch::Apply(&dep2)).await.unwrap();
    assert_eq!(d2.metadata.generation, Some(2));
    // while the new generation rolls, the old pods keep the Deployment available
    common::eventually(10, "rolling update in progress", || async {
        let s = deps.get_status("d").await.ok()?.status?;
        let conds = s.conditions.unwrap_or_default();
        let available = conds
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True");
        let updating = conds
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("ReplicaSetUpdated"));
        (s.observed_generation == Some(2) && available && updating && s.updated_replicas.is_none())
            .then_some(())
    })
    .await;
    sim.set_ready_after(Duration::from_millis(100));
    common::eventually(10, "re-rolled", || async {
        let s = deps.get_status("d").await.ok()?.status?;
        (s.observed_generation == Some(2) && s.ready_replicas == Some(2)).then_some(())
    })
    .await;

    // StatefulSet
    let sts: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let s = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "b"},
        "spec": {"serviceName": "b-headless", "replicas": 3, "selector": {"matchLabels": {"app": "b"}},
                 "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "nats", "image": "nats:2.10"}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]}
    });
    let created = sts.patch("b", &pp, &Patch::Apply(&s)).await.unwrap();
    let spec = created.spec.unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    assert_eq!(
        spec.update_strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    assert_eq!(
        spec.volume_claim_templates.unwrap()[0]
            .spec
            .as_ref()
            .unwrap()
            .volume_mode
            .as_deref(),
        Some("Filesystem")
    );
    let st = common::eventually(10, "sts ready", || async {
        let s = sts.get_status("b").await.ok()?.status?;
        (s.ready_replicas == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(st.current_revision, st.update_revision);
    assert_eq!(st.current_replicas, Some(3));

    // Services: ClusterIP, NodePort, headless, LoadBalancer (pending, then loopback)
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    let mk = |name: &str, typ: &str, headless: bool| {
        let mut v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": typ, "selector": {"app": "b"}, "ports": [{"name": "nats", "port": 4222}]}});
        if headless {
            v["spec"]["clusterIP"] = json!("None");
        }
        v
    };
    let np = svcs
        .patch("np", &pp, &Patch::Apply(mk("np", "NodePort", false)))
        .await
        .unwrap();
    let port = &np.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert!((30000..=32767).contains(&port.node_port.unwrap()));
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    let hl = svcs
        .patch("hl", &pp, &Patch::Apply(mk("hl", "ClusterIP", true)))
        .await
        .unwrap();
    assert_eq!(hl.spec.unwrap().cluster_ips.unwrap(), ["None"]);
    let lb = svcs
        .patch("lb", &pp, &Patch::Apply(mk("lb", "LoadBalancer", false)))
        .await
        .unwrap();
    assert!(
        lb.spec
            .as_ref()
            .unwrap()
            .cluster_ip
            .as_ref()
            .unwrap()
            .starts_with("10.96.")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lb = svcs.get("lb").await.unwrap();
    assert!(
        lb.status.unwrap().load_balancer.unwrap().ingress.is_none(),
        "pending mode leaves ingress empty"
    );
    sim.set_load_balancer_mode(kube_sim::LoadBalancerMode::Loopback);
    let ing = common::eventually(5, "lb ingress", || async {
        svcs.get("lb").await.ok()?.status?.load_balancer?.ingress
    })
    .await;
    assert_eq!(ing[0].ip.as_deref(), Some("127.0.1.1"));
    let lb2 = svcs
        .patch("lb2", &pp, &Patch::Apply(mk("lb2", "LoadBalancer", false)))
        .await
        .unwrap();
    let _ = lb2;
    let ing2 = common::eventually(5, "lb2 ingress", || async {
        svcs.get("lb2").await.ok()?.status?.load_balancer?.ingress
    })
    .await;
    assert_eq!(
        ing2[0].ip.as_deref(),
        Some("127.0.1.2"),
        "one address per Service, in order"
    );
}

#[tokio::test]
async fn dynamic_crud_apply_and_status() {
    let sim = common::sim().await;
    let api: Api<DynamicObject> = Api::namespaced_with(sim.client(), "default", &widgets_ar());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"version": "1.0", "unknown": true},
        "status": {"phase": "ignored-on-create"}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 1, "default");
    assert!(created.data["spec"].get("unknown").is_none(), "pruned");
    assert!(
        created.data.get("status").is_none(),
        "status is not set through the main resource"
    );
    assert_eq!(created.metadata.generation, Some(1));
    // status subresource
    let st = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["phase"], "Ready");
    assert_eq!(
        st.data["spec"]["size"], 1,
        "a status write does not change spec"
    );
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    // main resource write ignores status and bumps generation
    let m = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}, "status": {"phase": "Hacked"}})),
        )
        .await
        .unwrap();
    assert_eq!(m.data["status"]["phase"], "Ready");
    assert_eq!(m.metadata.generation, Some(2));
    // a metadata-only change does not bump generation
    let m = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(m.metadata.generation, Some(2));
    // apply by a second manager with a conflicting value → 409 naming field and manager; force moves it
    let cfg = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"version": "1.0", "size": 7}});
    api.patch(
        "w",
        &PatchParams::apply("first").force(),
        &Patch::Apply(&cfg),
    )
    .await
    .unwrap();
    let cfg2 = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 8}});
    let err = api
        .patch("w", &PatchParams::apply("second"), &Patch::Apply(&cfg2))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("conflict with \"first\"") && s.message.contains(".spec.size"),
                "{}",
                s.message
            );
        }
        e => panic!("{e}"),
    }
    let forced = api
        .patch(
            "w",
            &PatchParams::apply("second").force(),
            &Patch::Apply(&cfg2),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["size"], 8);
    // JSON patch
    let (code, j) = common::raw(
        &sim,
        "PATCH",
        "/apis/example.com/v1/namespaces/default/widgets/w",
        Some("application/json-patch+json"),
        Some(json!([{"op": "replace", "path": "/spec/version", "value": "2.0"}])),
    )
    .await;
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["spec"]["version"], "2.0");
    // strategic merge patch is refused for custom resources, as on a real server
    let err = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 415));
    // the other served version of a multi-version CRD serves the same objects
    let gadgets_v1 = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let gadgets_b1 = ApiResource {
        version: "v1beta1".into(),
        api_version: "example.com/v1beta1".into(),
        ..gadgets_v1.clone()
    };
    let g1: Api<DynamicObject> = Api::all_with(sim.client(), &gadgets_v1);
    let gb: Api<DynamicObject> = Api::all_with(sim.client(), &gadgets_b1);
    g1.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {}})).unwrap())
        .await
        .unwrap();
    let viab = gb.get("g").await.unwrap();
    assert_eq!(viab.types.unwrap().api_version, "example.com/v1beta1");
    assert_eq!(viab.data["spec"]["mode"], "fast");
    api.delete("w", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn watcher_survives_dropped_streams_and_410() {
    let sim = common::sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let stream = watcher(cms.clone(), watcher::Config::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let label = match ev {
                Ok(watcher::Event::Apply(c)) | Ok(watcher::Event::InitApply(c)) => {
                    format!("apply {}", c.metadata.name.unwrap())
                }
                Ok(watcher::Event::Delete(c)) => format!("delete {}", c.metadata.name.unwrap()),
                Ok(watcher::Event::Init) => "init".into(),
                Ok(watcher::Event::InitDone) => "initdone".into(),
                Err(e) => format!("error {e}"),
            };
            if tx.send(label).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    async fn wait_for(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
        seen: &mut Vec<String>,
        want: &str,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if seen.iter().any(|s| s == want) {
                return;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => seen.push(s),
                _ => panic!("never saw {want:?}; saw {seen:?}"),
            }
        }
    }
    let mk =
        |n: &str| serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": n}})).unwrap();
    wait_for(&mut rx, &mut seen, "initdone").await;
    cms.create(&PostParams::default(), &mk("a")).await.unwrap();
    wait_for(&mut rx, &mut seen, "apply a").await;
    // 1. the server drops every watch stream: the watcher re-watches from its last RV
    sim.drop_watches();
    tokio::time::sleep(Duration::from_millis(200)).await;
    cms.create(&PostParams::default(), &mk("b")).await.unwrap();
    wait_for(&mut rx, &mut seen, "apply b").await;
    // 2. history compacted and stream dropped: the re-watch gets 410 Gone, the watcher relists
    seen.clear();
    sim.compact();
    sim.drop_watches();
    cms.create(&PostParams::default(), &mk("c")).await.unwrap();
    wait_for(&mut rx, &mut seen, "apply c").await;
    assert!(
        seen.iter().any(|s| s == "init"),
        "a 410 makes the watcher relist: {seen:?}"
    );
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    wait_for(&mut rx, &mut seen, "delete a").await;
    task.abort();
}

#[tokio::test]
async fn raw_watch_semantics() {
    let sim = common::sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let c = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "w1", "labels": {"k": "v"}}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let rv = c.metadata.resource_version.unwrap();
    // label-filtered watch from an RV, with bookmarks
    let wp = WatchParams::default().labels("k=v").timeout(3);
    let mut stream = cms.watch(&wp, &rv).await.unwrap().boxed();
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    // leaving the selector looks like a deletion to this watcher
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"k": "other"}}})),
    )
    .await
    .unwrap();
    let mut types = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            WatchEvent::Added(_) => types.push("ADDED"),
            WatchEvent::Modified(_) => types.push("MODIFIED"),
            WatchEvent::Deleted(_) => types.push("DELETED"),
            WatchEvent::Bookmark(_) => types.push("BOOKMARK"),
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
        if types.len() >= 2 {
            break;
        }
    }
    assert_eq!(types, ["MODIFIED", "DELETED"]);
    // bookmarks arrive when asked for
    let wp = WatchParams {
        bookmarks: true,
        ..WatchParams::default()
    }
    .timeout(2);
    let mut stream = cms.watch(&wp, "0").await.unwrap().boxed();
    let mut got_bookmark = false;
    while let Some(ev) = stream.next().await {
        if let Ok(WatchEvent::Bookmark(b)) = ev {
            assert!(!b.metadata.resource_version.is_empty());
            got_bookmark = true;
            break;
        }
    }
    assert!(got_bookmark);
    // a too-old RV gets an ERROR event carrying a 410 Status
    sim.compact();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("{other:?}"),
    }
    // the deprecated watch of one named object
    let (code, _, body) = common::raw_full(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps/kube-root-ca.crt?watch=1&timeoutSeconds=1",
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    let text = body.to_string();
    assert!(
        text.contains("kube-root-ca.crt") && !text.contains("\"w1\""),
        "{text}"
    );
    // timeoutSeconds ends the stream
    let start = std::time::Instant::now();
    let mut stream = cms
        .watch(
            &WatchParams::default().timeout(1),
            &sim.resource_version().to_string(),
        )
        .await
        .unwrap()
        .boxed();
    while stream.next().await.is_some() {}
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn server_side_apply_through_the_server() {
    let sim = common::sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let cfg = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    cms.patch(
        "ssa",
        &PatchParams::apply("a"),
        &Patch::Apply(cfg(json!({"x": "1", "shared": "s"}))),
    )
    .await
    .unwrap();
    cms.patch(
        "ssa",
        &PatchParams::apply("b"),
        &Patch::Apply(cfg(json!({"shared": "s", "y": "2"}))),
    )
    .await
    .unwrap();
    // a conflicting value without force names field and manager
    let err = cms
        .patch(
            "ssa",
            &PatchParams::apply("b"),
            &Patch::Apply(cfg(json!({"x": "9"}))),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            let d = s.details.unwrap();
            assert_eq!(d.causes[0].field, ".data.x");
            assert!(d.causes[0].message.contains("\"a\""));
        }
        e => panic!("{e}"),
    }
    // a omits `shared` (b still owns it: kept) and `x` (only a owned it: removed)
    let out = cms
        .patch(
            "ssa",
            &PatchParams::apply("a"),
            &Patch::Apply(cfg(json!({}))),
        )
        .await
        .unwrap();
    let data = out.data.unwrap();
    assert_eq!(data.get("shared").map(String::as_str), Some("s"));
    assert_eq!(data.get("y").map(String::as_str), Some("2"));
    assert!(!data.contains_key("x"));
    // managedFields encoding for an associative list, through the server
    let deps: Api<Deployment> = Api::default_namespaced(sim.client());
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mf"},
        "spec": {"selector": {"matchLabels": {"app": "mf"}}, "template": {"metadata": {"labels": {"app": "mf"}},
        "spec": {"containers": [{"name": "nats", "image": "nats:2.10", "ports": [{"containerPort": 4222, "name": "client"}]}]}}}});
    let out = deps
        .patch("mf", &PatchParams::apply("operator"), &Patch::Apply(&d))
        .await
        .unwrap();
    let mf = out.metadata.managed_fields.unwrap();
    let e = mf
        .iter()
        .find(|e| e.manager.as_deref() == Some("operator"))
        .unwrap();
    assert_eq!(e.operation.as_deref(), Some("Apply"));
    assert_eq!(e.fields_type.as_deref(), Some("FieldsV1"));
    let f = serde_json::to_value(&e.fields_v1).unwrap();
    let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nats\"}"];
    assert!(c.get(".").is_some() && c.get("f:image").is_some(), "{f}");
    assert!(
        c["f:ports"]
            .get("k:{\"containerPort\":4222,\"protocol\":\"TCP\"}")
            .is_some(),
        "{f}"
    );
    // a merge patch records an Update entry for its manager
    let out = deps
        .patch(
            "mf",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"minReadySeconds": 5}})),
        )
        .await
        .unwrap();
    let mf = out.metadata.managed_fields.unwrap();
    assert!(
        mf.iter()
            .any(|e| e.manager.as_deref() == Some("kubectl-edit")
                && e.operation.as_deref() == Some("Update"))
    );
}

#[tokio::test]
async fn event_recorder_and_status_apply() {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let sim = common::sim().await;
    let client = sim.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let c = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "ev"}})).unwrap(),
        )
        .await
        .unwrap();
    let rec = Recorder::new(
        client.clone(),
        Reporter {
            controller: "meshery-operator".into(),
            instance: Some("pod-1".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("ok".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    rec.publish(&ev, &c.object_ref(&())).await.unwrap();
    rec.publish(&ev, &c.object_ref(&())).await.unwrap();
    let evs: Api<K8sEvent> = Api::default_namespaced(client.clone());
    let list = evs.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
    let mut long = list.items[0].clone();
    long.metadata = serde_json::from_value(json!({"name": "long"})).unwrap();
    long.note = Some("x".repeat(2000));
    let err = evs.create(&PostParams::default(), &long).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));

    // status through server-side apply on the status subresource
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widgets_ar());
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "sa"}, "spec": {"version": "1"}});
    api.patch("sa", &PatchParams::apply("op"), &Patch::Apply(&w))
        .await
        .unwrap();
    let st = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "sa"},
        "status": {"phase": "Ready", "observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}});
    let out = api
        .patch_status("sa", &PatchParams::apply("op").force(), &Patch::Apply(&st))
        .await
        .unwrap();
    assert_eq!(out.data["status"]["phase"], "Ready");
    assert_eq!(out.data["spec"]["version"], "1");
    assert_eq!(out.metadata.generation, Some(1));
    let mf = out.metadata.managed_fields.unwrap();
    assert!(
        mf.iter()
            .any(|e| e.subresource.as_deref() == Some("status")
                && e.manager.as_deref() == Some("op"))
    );
    let rv = out.metadata.resource_version.clone();
    let again = api
        .patch_status("sa", &PatchParams::apply("op").force(), &Patch::Apply(&st))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, rv,
        "re-applying the same status is a no-op"
    );
}

#[tokio::test]
async fn strategic_merge_patch_merges_by_key() {
    let sim = common::sim().await;
    let deps: Api<Deployment> = Api::default_namespaced(sim.client());
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "smp", "finalizers": ["a/b"]},
        "spec": {"selector": {"matchLabels": {"app": "smp"}}, "template": {"metadata": {"labels": {"app": "smp"}},
        "spec": {"containers": [{"name": "a", "image": "x:1", "env": [{"name": "E1", "value": "1"}]}, {"name": "b", "image": "y:1"}]}}}});
    deps.create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let p = json!({"metadata": {"finalizers": ["c/d"]},
        "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "a", "env": [{"name": "E2", "value": "2"}]}]}}}});
    let out = deps
        .patch("smp", &PatchParams::default(), &Patch::Strategic(p))
        .await
        .unwrap();
    let cs = out.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(cs.len(), 2);
    let a = cs.iter().find(|c| c.name == "a").unwrap();
    assert_eq!(
        a.image.as_deref(),
        Some("x:1"),
        "unmentioned fields of a merged element are kept"
    );
    let env: Vec<&str> = a
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["E1", "E2"]);
    assert_eq!(
        cs.iter().find(|c| c.name == "b").unwrap().image.as_deref(),
        Some("y:2")
    );
    assert_eq!(
        out.metadata.finalizers.unwrap(),
        ["a/b", "c/d"],
        "finalizers merge as a set"
    );
    // $patch: delete removes one element by key
    let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}}});
    let out = deps
        .patch("smp", &PatchParams::default(), &Patch::Strategic(p))
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().template.spec.unwrap().containers.len(), 1);
    deps.patch(
        "smp",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn discovery_legacy_and_aggregated() {
    let sim = common::sim().await;
    for aggregated in [false, true] {
        let d = kube::Discovery::new(sim.client());
        let d = if aggregated {
            d.run_aggregated().await.unwrap()
        } else {
            d.run().await.unwrap()
        };
        let (ar, caps) = d
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(ar, _)| ar.plural == "widgets")
            .unwrap_or_else(|| panic!("widgets not discovered (aggregated={aggregated})"));
        assert_eq!(ar.kind, "Widget");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural == "widgets/status" || s.plural == "status"),
            "{:?}",
            caps.subresources
        );
        assert!(d.has_group("apps") && d.has_group("apiextensions.k8s.io"));
        let core = d
            .groups()
            .find(|g| g.name().is_empty())
            .expect("core group");
        assert!(
            core.recommended_resources()
                .iter()
                .any(|(ar, _)| ar.plural == "configmaps")
        );
    }
    let v = sim.client().apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
}
