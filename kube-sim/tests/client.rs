//! kube::Client against the server under test (a kube-sim, or the real API server of
//! `KUBE_SIM_REFERENCE_KUBECONFIG`): typed (k8s-openapi) and dynamic CRUD, apply, status, watches.

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

use common::Crds;

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
    let server = common::server("typed-crud", Crds::Installed).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
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
    if let Some(sim) =
        server.sim_only("a continue token from before a compaction (Sim::compact) is 410 Gone")
    {
        sim.compact();
        let err = cms
            .list(&ListParams::default().limit(1).continue_token(&cont))
            .await
            .unwrap_err();
        assert!(matches!(err, kube::Error::Api(s) if s.code == 410));
    }
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
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
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
    let server = common::server("typed-apply", Crds::Installed).await;
    let client = server.client();
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
    let ready = common::eventually(60, "deployment rolled out", || async {
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
    let held_rollout = server.sim_only(
        "holding a rolling update midway (Sim::set_ready_after) to see the old pods keep it available",
    );
    if let Some(sim) = held_rollout {
        sim.set_ready_after(Duration::from_secs(600));
    }
    let d2 = deps.patch("d", &pp, &Patch::Apply(&dep2)).await.unwrap();
    assert_eq!(d2.metadata.generation, Some(2));
    if let Some(sim) = held_rollout {
        common::eventually(10, "rolling update in progress", || async {
            let s = deps.get_status("d").await.ok()?.status?;
            let conds = s.conditions.unwrap_or_default();
            let available = conds
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True");
            let updating = conds.iter().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("ReplicaSetUpdated")
            });
            (s.observed_generation == Some(2)
                && available
                && updating
                && s.updated_replicas.is_none())
            .then_some(())
        })
        .await;
        sim.set_ready_after(Duration::from_millis(100));
    }
    common::eventually(60, "re-rolled", || async {
        let s = deps.get_status("d").await.ok()?.status?;
        (s.observed_generation == Some(2) && s.ready_replicas == Some(2)).then_some(())
    })
    .await;

    // StatefulSet: defaulting of claim templates shown by a dry run (no cluster here provisions
    // volumes, so pods with claims would never start), the rollout by one without claims.
    let sts: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let s = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "b"},
        "spec": {"serviceName": "b-headless", "replicas": 3, "selector": {"matchLabels": {"app": "b"}},
                 "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "nats", "image": "nats:2.10"}]}}}
    });
    let mut with_claims = s.clone();
    with_claims["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]);
    let dry = sts
        .patch("b", &pp.clone().dry_run(), &Patch::Apply(&with_claims))
        .await
        .unwrap();
    assert_eq!(
        dry.spec.unwrap().volume_claim_templates.unwrap()[0]
            .spec
            .as_ref()
            .unwrap()
            .volume_mode
            .as_deref(),
        Some("Filesystem")
    );
    let created = sts.patch("b", &pp, &Patch::Apply(&s)).await.unwrap();
    let spec = created.spec.unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    assert_eq!(
        spec.update_strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    let st = common::eventually(60, "sts ready", || async {
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
        "without a load balancer implementation ingress stays empty"
    );
    let Some(sim) = server.sim_only("LoadBalancer ingress (Sim::set_load_balancer_mode Loopback)")
    else {
        return;
    };
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
    let server = common::server("dynamic-crud", Crds::Installed).await;
    let api: Api<DynamicObject> = Api::default_namespaced_with(server.client(), &widgets_ar());
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
    let (code, j) = server
        .raw(
            "PATCH",
            &format!(
                "/apis/example.com/v1/namespaces/{}/widgets/w",
                server.namespace()
            ),
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
    let g1: Api<DynamicObject> = Api::all_with(server.client(), &gadgets_v1);
    let gb: Api<DynamicObject> = Api::all_with(server.client(), &gadgets_b1);
    let gadget = server.cluster_name("g");
    g1.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": gadget}, "spec": {}})).unwrap())
        .await
        .unwrap();
    let viab = gb.get(&gadget).await.unwrap();
    assert_eq!(viab.types.unwrap().api_version, "example.com/v1beta1");
    assert_eq!(viab.data["spec"]["mode"], "fast");
    g1.delete(&gadget, &DeleteParams::default()).await.unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn watcher_survives_dropped_streams_and_410() {
    let server = common::server("watcher-recovery", Crds::Installed).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
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
    if let Some(sim) = server
        .sim_only("dropped watch streams and 410 on re-watch (Sim::drop_watches, Sim::compact)")
    {
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
    }
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    wait_for(&mut rx, &mut seen, "delete a").await;
    task.abort();
}

#[tokio::test]
async fn raw_watch_semantics() {
    let server = common::server("raw-watch", Crds::Installed).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
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
    if let Some(sim) = server.sim_only(
        "a watch from a compacted RV gets a 410 ERROR event (Sim::compact; the real server compacts every 5 minutes)",
    ) {
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
    }
    // the deprecated watch of one named object
    let (code, _, body) = server
        .raw_full(
            "GET",
            &format!(
                "/api/v1/namespaces/{}/configmaps/kube-root-ca.crt?watch=1&timeoutSeconds=1",
                server.namespace()
            ),
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
    let current = cms.list(&ListParams::default()).await.unwrap();
    let current_rv = current.metadata.resource_version.unwrap();
    let start = std::time::Instant::now();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(1), &current_rv)
        .await
        .unwrap()
        .boxed();
    while stream.next().await.is_some() {}
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn server_side_apply_through_the_server() {
    let server = common::server("ssa-through-server", Crds::Installed).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
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
            assert_eq!(
                s.message,
                "Apply failed with 1 conflict: conflict with \"a\": .data.x"
            );
            let d = s.details.unwrap();
            assert_eq!(d.causes[0].field, ".data.x");
            assert_eq!(d.causes[0].message, "conflict with \"a\"");
        }
        e => panic!("{e}"),
    }
    // conflicts with several managers: grouped by manager, Update managers named with their
    // apiVersion
    cms.patch(
        "ssa",
        &PatchParams {
            field_manager: Some("edit".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"e": "1"}})),
    )
    .await
    .unwrap();
    let err = cms
        .patch(
            "ssa",
            &PatchParams::apply("c"),
            &Patch::Apply(cfg(json!({"e": "2", "x": "2", "shared": "2"}))),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(
                s.message,
                "Apply failed with 4 conflicts: conflicts with \"a\":\n- .data.shared\n- .data.x\nconflicts with \"b\":\n- .data.shared\nconflicts with \"edit\" using v1:\n- .data.e"
            );
            let causes: Vec<(&str, &str)> = s
                .details
                .as_ref()
                .unwrap()
                .causes
                .iter()
                .map(|c| (c.field.as_str(), c.message.as_str()))
                .collect();
            assert!(
                causes.contains(&(".data.e", "conflict with \"edit\" using v1")),
                "{causes:?}"
            );
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
    let deps: Api<Deployment> = Api::default_namespaced(server.client());
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

/// A SubjectAccessReview is answered, not stored: an admin's review is allowed (the sim allows
/// every review; the real server's authorizer allows system:masters), a review without a subject or
/// attributes is invalid, and the collection cannot be read.
#[tokio::test]
async fn subject_access_reviews_are_answered_not_stored() {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let server = common::server("subject-access-review", Crds::Absent).await;
    let reviews: Api<SubjectAccessReview> = Api::all(server.client());
    let review = |spec: serde_json::Value| -> SubjectAccessReview {
        serde_json::from_value(json!({"spec": spec})).unwrap()
    };
    let answer = reviews
        .create(
            &PostParams::default(),
            &review(json!({
                "user": "kube-sim-admin", "groups": ["system:masters"],
                "resourceAttributes": {"verb": "create", "group": "apps", "resource": "deployments", "namespace": "default"}
            })),
        )
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);
    for invalid in [
        json!({"resourceAttributes": {"verb": "get", "resource": "pods"}}),
        json!({"user": "someone"}),
    ] {
        let err = reviews
            .create(&PostParams::default(), &review(invalid.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 422),
            "{invalid}: {err}"
        );
    }
    let err = reviews.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 405),
        "{err}"
    );
}

#[tokio::test]
async fn event_recorder_and_status_apply() {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = common::server("events-status-apply", Crds::Installed).await;
    let client = server.client();
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
    let api: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &widgets_ar());
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
    let server = common::server("smp-by-key", Crds::Installed).await;
    let deps: Api<Deployment> = Api::default_namespaced(server.client());
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "smp", "finalizers": ["a/b", "x/y"]},
        "spec": {"selector": {"matchLabels": {"app": "smp"}}, "template": {"metadata": {"labels": {"app": "smp"}},
        "spec": {"containers": [{"name": "a", "image": "x:1", "env": [{"name": "E1", "value": "1"}, {"name": "E3", "value": "3"}]},
                                {"name": "b", "image": "y:1"}, {"name": "c", "image": "z:1"}]}}}});
    deps.create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let smp = |p: serde_json::Value| {
        let deps = deps.clone();
        async move {
            deps.patch("smp", &PatchParams::default(), &Patch::Strategic(p))
                .await
        }
    };
    let names = |d: &Deployment| -> Vec<String> {
        let cs = &d
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers;
        cs.iter().map(|c| c.name.clone()).collect()
    };
    let out = smp(json!({"metadata": {"finalizers": ["c/d", "x/y"]},
        "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "new", "image": "n:1"},
            {"name": "a", "env": [{"name": "E2", "value": "2"}, {"name": "E3", "value": "33"}]}]}}}}))
    .await
    .unwrap();
    // merged lists: the patch's elements in its order, a live-only element before the patch
    // elements it preceded, new elements before live-only ones
    assert_eq!(names(&out), ["b", "new", "a", "c"]);
    let cs = out.spec.unwrap().template.spec.unwrap().containers;
    let a = cs.iter().find(|c| c.name == "a").unwrap();
    assert_eq!(
        a.image.as_deref(),
        Some("x:1"),
        "unmentioned fields of a merged element are kept"
    );
    let env: Vec<(&str, &str)> = a
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap()))
        .collect();
    assert_eq!(env, [("E2", "2"), ("E1", "1"), ("E3", "33")]);
    assert_eq!(
        cs.iter().find(|c| c.name == "b").unwrap().image.as_deref(),
        Some("y:2")
    );
    assert_eq!(
        out.metadata.finalizers.unwrap(),
        ["c/d", "a/b", "x/y"],
        "finalizers merge as a set, ordered like merged lists"
    );
    // $setElementOrder orders the list, also when the patch changes one element or none
    let out = smp(json!({"metadata": {"$setElementOrder/finalizers": ["x/y", "c/d", "a/b"]},
        "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}, {"name": "new"}],
            "containers": [{"name": "a", "image": "x:2"}]}}}}))
    .await
    .unwrap();
    assert_eq!(names(&out), ["c", "a", "b", "new"]);
    assert_eq!(out.metadata.finalizers.unwrap(), ["x/y", "c/d", "a/b"]);
    let out = smp(json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "new"}, {"name": "a"}]}}}}))
        .await
        .unwrap();
    assert_eq!(names(&out), ["c", "b", "new", "a"]);
    // a patch list that its $setElementOrder does not list is refused (a 500, as on a real server)
    let err = smp(
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "b"}],
        "containers": [{"name": "q", "image": "q:1"}]}}}}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500 && s.message.starts_with("The order in patch list:")),
        "{err}"
    );
    // $patch: delete removes one element by key
    let out = smp(json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}}}))
        .await
        .unwrap();
    assert_eq!(names(&out), ["c", "new", "a"]);
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
    let server = common::server("discovery", Crds::Installed).await;
    for aggregated in [false, true] {
        let d = kube::Discovery::new(server.client());
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
    // kube-sim says v1.33, the API its built-in types and defaults follow (see README.md,
    // "Deliberate divergences"); the reference server says its own version.
    let v = server.client().apiserver_version().await.unwrap();
    if server.is_reference() {
        let minor: u32 = v.minor.parse().unwrap();
        assert!(v.major == "1" && minor >= 33, "{v:?}");
        assert!(!v.git_version.contains("kube-sim"), "{v:?}");
    } else {
        assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
        assert_eq!(v.git_version, "v1.33.0+kube-sim");
    }
}

/// The fields of the first managedFields entry of `obj`.
fn first_entry_fields(obj: &serde_json::Value) -> serde_json::Value {
    obj["metadata"]["managedFields"][0]["fieldsV1"].clone()
}

#[tokio::test]
async fn creates_own_what_the_request_and_defaulting_set() {
    let server = common::server("create-ownership", Crds::Installed).await;
    let ns = server.namespace().to_string();
    let create = |path: String, body: serde_json::Value| {
        let server = &server;
        async move {
            let (code, v) = server
                .raw(
                    "POST",
                    &format!("{path}?dryRun=All&fieldManager=creator"),
                    Some("application/json"),
                    Some(body),
                )
                .await;
            assert_eq!(code, 201, "{v}");
            v
        }
    };
    // Selectors of an env var source are atomic; the template's null creationTimestamp is not
    // owned; a created workload starts with its zero status.
    let d = create(
        format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "x", "env": [{"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]}]}}}}),
    )
    .await;
    // Defaults inside the atomic selectors: the diff engine must not take them for drift.
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env[0]["valueFrom"]["fieldRef"],
        json!({"apiVersion": "v1", "fieldPath": "metadata.name"})
    );
    assert_eq!(
        env[1]["valueFrom"]["resourceFieldRef"],
        json!({"divisor": "0", "resource": "limits.memory"})
    );
    let template = &first_entry_fields(&d)["f:spec"]["f:template"];
    assert_eq!(
        template["f:metadata"],
        json!({"f:labels": {".": {}, "f:app": {}}})
    );
    assert_eq!(
        template["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:env"]["k:{\"name\":\"P\"}"]["f:valueFrom"],
        json!({".": {}, "f:fieldRef": {}})
    );
    assert_eq!(d["status"], json!({}));
    let s = create(
        format!("/apis/apps/v1/namespaces/{ns}/statefulsets"),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
            "spec": {"selector": {"matchLabels": {"app": "s"}}, "template": {"metadata": {"labels": {"app": "s"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
    )
    .await;
    assert_eq!(s["status"], json!({"replicas": 0, "availableReplicas": 0}));
    let p = create(
        format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "s"}}}}),
    )
    .await;
    assert_eq!(
        p["status"],
        json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})
    );
    // What the Service allocators add (cluster IPs, IP families, node ports) is nobody's.
    let svc = create(
        format!("/api/v1/namespaces/{ns}/services"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
            "spec": {"type": "NodePort", "selector": {"app": "s"}, "ports": [{"name": "a", "port": 80}]}}),
    )
    .await;
    assert_eq!(
        first_entry_fields(&svc),
        json!({"f:spec": {"f:externalTrafficPolicy": {}, "f:internalTrafficPolicy": {},
            "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
            "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}})
    );
    // A Namespace's finalizers come from its strategy, after the request's fields are recorded.
    let namespace = create(
        "/api/v1/namespaces".to_string(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": server.cluster_name("owned")}}),
    )
    .await;
    assert_eq!(
        first_entry_fields(&namespace),
        json!({"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}}}})
    );
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));
    // A RoleBinding's roleRef is atomic; a NetworkPolicy's empty podSelector is the zero value.
    let rb = create(
        format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]}),
    )
    .await;
    assert_eq!(
        first_entry_fields(&rb),
        json!({"f:roleRef": {}, "f:subjects": {}})
    );
    let np = create(
        format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 4222}]}]}}),
    )
    .await;
    assert_eq!(
        first_entry_fields(&np),
        json!({"f:spec": {"f:ingress": {}, "f:policyTypes": {}}})
    );
}

#[tokio::test]
async fn custom_resource_validation_causes() {
    let server = common::server("cr-validation", Crds::Installed).await;
    let (code, v) = server
        .raw(
            "POST",
            &format!(
                "/apis/example.com/v1/namespaces/{}/widgets?dryRun=All",
                server.namespace()
            ),
            Some("application/json"),
            Some(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad"},
                "spec": {"version": "NOPE!", "size": 1.5, "serviceType": "X", "cidrs": ["x", "10.0.0.0/8", "a", "b"],
                         "ports": [{"name": "a"}, {"name": "a"}], "extra": "str"}})),
        )
        .await;
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")), "{v}");
    // The real server lists the causes in no fixed order.
    let mut causes: Vec<(String, String, String)> = v["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("field"), s("reason"), s("message"))
        })
        .collect();
    causes.sort();
    let want = [
        ("spec.cidrs", "FieldValueTooMany", "Too many: 4: must have at most 3 items"),
        ("spec.cidrs[0]", "FieldValueTypeInvalid", "Invalid value: \"x\": spec.cidrs[0] in body must be of type cidr: \"x\""),
        ("spec.cidrs[2]", "FieldValueTypeInvalid", "Invalid value: \"a\": spec.cidrs[2] in body must be of type cidr: \"a\""),
        ("spec.cidrs[3]", "FieldValueTypeInvalid", "Invalid value: \"b\": spec.cidrs[3] in body must be of type cidr: \"b\""),
        ("spec.extra", "FieldValueTypeInvalid", "Invalid value: \"string\": spec.extra in body must be of type object: \"string\""),
        ("spec.ports[1]", "FieldValueDuplicate", "Duplicate value: {\"name\":\"a\"}"),
        ("spec.serviceType", "FieldValueNotSupported", "Unsupported value: \"X\": supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\""),
        ("spec.size", "FieldValueTypeInvalid", "Invalid value: \"number\": spec.size in body must be of type integer: \"number\""),
        ("spec.version", "FieldValueInvalid", "Invalid value: \"NOPE!\": spec.version in body should match '^[0-9a-z.-]+$'"),
    ]
    .map(|(f, r, m)| (f.to_string(), r.to_string(), m.to_string()));
    assert_eq!(causes, want);
}

#[tokio::test]
async fn error_statuses_and_delete_responses() {
    let server = common::server("error-statuses", Crds::Installed).await;
    let ns = server.namespace().to_string();
    let cms = format!("/api/v1/namespaces/{ns}/configmaps");
    let status = |v: &serde_json::Value| {
        (
            v["code"].as_u64().unwrap_or_default(),
            v["reason"].as_str().unwrap_or_default().to_string(),
            v["message"].as_str().unwrap_or_default().to_string(),
        )
    };
    let s =
        |code: u64, reason: &str, message: &str| (code, reason.to_string(), message.to_string());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e", "labels": {"set": "e"}}, "data": {"a": "1"}});
    let (code, _) = server
        .raw("POST", &cms, Some("application/json"), Some(cm.clone()))
        .await;
    assert_eq!(code, 201);
    let (_, v) = server
        .raw("POST", &cms, Some("application/json"), Some(cm))
        .await;
    assert_eq!(
        status(&v),
        s(409, "AlreadyExists", "configmaps \"e\" already exists")
    );
    let (_, v) = server.raw("GET", &format!("{cms}/none"), None, None).await;
    assert_eq!(
        status(&v),
        s(404, "NotFound", "configmaps \"none\" not found")
    );
    let (_, v) = server
        .raw("PUT", &cms, Some("application/json"), Some(json!({})))
        .await;
    assert_eq!(
        status(&v),
        s(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource"
        )
    );
    // The media type is checked first: a strategic merge patch of a custom resource is a 415
    // even when there is no such object.
    let (_, v) = server
        .raw(
            "PATCH",
            &format!("/apis/example.com/v1/namespaces/{ns}/widgets/none"),
            Some("application/strategic-merge-patch+json"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status(&v),
        s(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        )
    );
    let (_, v) = server
        .raw(
            "PATCH",
            &format!("{cms}/e"),
            Some("text/plain"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status(&v),
        s(415, "UnsupportedMediaType", "415: Unsupported Media Type")
    );
    // JSON patch: a failed test names no cause; a replace of a missing member adds it.
    let (_, v) = server
        .raw(
            "PATCH",
            &format!("{cms}/e"),
            Some("application/json-patch+json"),
            Some(json!([{"op": "test", "path": "/data/a", "value": "2"}])),
        )
        .await;
    assert_eq!(
        status(&v),
        s(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request"
        )
    );
    let (code, v) = server
        .raw(
            "PATCH",
            &format!("{cms}/e"),
            Some("application/json-patch+json"),
            Some(json!([{"op": "replace", "path": "/data/b", "value": "2"}])),
        )
        .await;
    assert_eq!(
        (code, &v["data"]),
        (200, &json!({"a": "1", "b": "2"})),
        "{v}"
    );
    // Field selectors: kinds with field labels of their own word the refusal differently.
    let (_, v) = server
        .raw(
            "GET",
            &format!("{cms}?fieldSelector=data.a%3D1"),
            None,
            None,
        )
        .await;
    assert_eq!(
        status(&v),
        s(
            400,
            "BadRequest",
            "\"data.a\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        )
    );
    let (_, v) = server
        .raw(
            "GET",
            &format!("/api/v1/namespaces/{ns}/secrets?fieldSelector=data.a%3D1"),
            None,
            None,
        )
        .await;
    assert_eq!(
        status(&v),
        s(400, "BadRequest", "field label not supported: data.a")
    );
    let (code, _) = server
        .raw(
            "GET",
            &format!("/api/v1/namespaces/{ns}/services?fieldSelector=spec.type%3DNodePort"),
            None,
            None,
        )
        .await;
    assert_eq!(code, 200);
    // A group nobody serves is the mux's plain-text 404; an unknown version of a served group a Status.
    let (code, _, body) = server
        .raw_full("GET", "/apis/nothing.example.com/v1/things", None, None)
        .await;
    assert_eq!((code, body), (404, json!("404 page not found\n")));
    let (_, v) = server.raw("GET", "/apis/apps/v0", None, None).await;
    assert_eq!(
        status(&v),
        s(
            404,
            "NotFound",
            "the server could not find the requested resource"
        )
    );
    // Delete collection answers the deleted items (without apiVersion/kind, as list items);
    // deleting a ConfigMap answers a Status, deleting a Service the Service.
    let (code, v) = server
        .raw(
            "DELETE",
            &format!("{cms}?labelSelector=set%3De"),
            None,
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["kind"], "ConfigMapList");
    let item = &v["items"][0];
    assert!(
        item.get("kind").is_none() && item["metadata"]["name"] == "e",
        "{v}"
    );
    let (_, v) = server
        .raw(
            "POST",
            &cms,
            Some("application/json"),
            Some(json!({"metadata": {"name": "gone"}})),
        )
        .await;
    let (_, v2) = server
        .raw("DELETE", &format!("{cms}/gone"), None, None)
        .await;
    assert_eq!(
        (&v2["kind"], &v2["status"], &v2["details"]["uid"]),
        (&json!("Status"), &json!("Success"), &v["metadata"]["uid"]),
        "{v2}"
    );
    let svcs = format!("/api/v1/namespaces/{ns}/services");
    server
        .raw(
            "POST",
            &svcs,
            Some("application/json"),
            Some(json!({"metadata": {"name": "gone"}, "spec": {"ports": [{"port": 80}]}})),
        )
        .await;
    let (_, v) = server
        .raw("DELETE", &format!("{svcs}/gone"), None, None)
        .await;
    assert_eq!(
        (&v["kind"], &v["metadata"]["name"]),
        (&json!("Service"), &json!("gone")),
        "{v}"
    );
}

/// One Event, two faces: written through `events.k8s.io/v1` it reads through core `v1` (what
/// `kubectl get events` and `kubectl describe` list) with the fields renamed, and the other way
/// round.
#[tokio::test]
async fn events_of_either_group_read_through_both() {
    let server = common::server("events", common::Crds::Absent).await;
    let ns = server.namespace();
    let regarding = json!({"apiVersion": "v1", "kind": "ConfigMap", "namespace": ns, "name": "cm", "uid": "0c7b6c1e-1111-4c3a-9d2e-5a4b3c2d1e0f"});
    let (_, before) = server
        .raw(
            "GET",
            &format!("/api/v1/namespaces/{ns}/events"),
            None,
            None,
        )
        .await;
    let since = before["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, created) = server
        .raw(
            "POST",
            &format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"),
            Some("application/json"),
            Some(json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "from-events-api"},
                "eventTime": "2026-12-04T01:00:00.000000Z", "reportingController": "example.com/ctl",
                "reportingInstance": "ctl-0", "action": "Reconcile", "reason": "Ready",
                "type": "Normal", "note": "the broker is Ready", "regarding": regarding})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let (code, core) = server
        .raw(
            "GET",
            &format!("/api/v1/namespaces/{ns}/events/from-events-api"),
            None,
            None,
        )
        .await;
    assert_eq!(code, 200, "{core}");
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "the broker is Ready");
    assert_eq!(core["reportingComponent"], "example.com/ctl");
    assert_eq!(core["involvedObject"]["name"], "cm");
    assert!(
        core.get("note").is_none() && core.get("regarding").is_none(),
        "{core}"
    );
    let (code, list) = server
        .raw(
            "GET",
            &format!("/api/v1/namespaces/{ns}/events"),
            None,
            None,
        )
        .await;
    assert_eq!(code, 200, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"from-events-api"), "{list}");
    // A watch of core Events sees it too.
    let (code, stream) = server
        .raw(
            "GET",
            &format!(
                "/api/v1/namespaces/{ns}/events?watch=true&resourceVersion={since}&timeoutSeconds=2"
            ),
            None,
            None,
        )
        .await;
    assert_eq!(code, 200, "{stream}");
    let stream = stream
        .as_str()
        .map(String::from)
        .unwrap_or(stream.to_string());
    let added: Vec<serde_json::Value> = stream
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["type"] == "ADDED")
        .collect();
    assert!(
        added
            .iter()
            .any(|e| e["object"]["metadata"]["name"] == "from-events-api"
                && e["object"]["message"] == "the broker is Ready"),
        "{stream}"
    );

    let (code, created) = server
        .raw(
            "POST",
            &format!("/api/v1/namespaces/{ns}/events"),
            Some("application/json"),
            Some(
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "from-core"},
                "involvedObject": regarding, "reason": "Created", "message": "made by hand",
                "type": "Normal", "source": {"component": "by-hand"}, "count": 2,
                "firstTimestamp": "2026-12-04T01:00:00Z", "lastTimestamp": "2026-12-04T01:00:05Z"}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let (code, events_api) = server
        .raw(
            "GET",
            &format!("/apis/events.k8s.io/v1/namespaces/{ns}/events/from-core"),
            None,
            None,
        )
        .await;
    assert_eq!(code, 200, "{events_api}");
    assert_eq!(events_api["apiVersion"], "events.k8s.io/v1");
    assert_eq!(events_api["note"], "made by hand");
    assert_eq!(events_api["regarding"]["name"], "cm");
    assert_eq!(events_api["deprecatedCount"], 2);
    assert_eq!(events_api["deprecatedSource"]["component"], "by-hand");
}

/// A `MicroTime` decodes only with exactly six fractional digits: a create is refused with 400,
/// a server-side apply with the conversion error (500), as the real server does.
#[tokio::test]
async fn a_micro_time_needs_six_fractional_digits() {
    let server = common::server("micro-time", common::Crds::Absent).await;
    let ns = server.namespace();
    let lease = |name: &str, renew: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15, "renewTime": renew}})
    };
    let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases");
    for renew in ["2026-12-04T01:00:00.123456789Z", "2026-12-04T01:00:00Z"] {
        let (code, status) = server
            .raw(
                "POST",
                &leases,
                Some("application/json"),
                Some(lease("nine", renew)),
            )
            .await;
        assert_eq!(code, 400, "{renew}: {status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("Lease in version \"v1\" cannot be handled as a Lease: parsing time")
                && message.contains("2006-01-02T15:04:05.000000Z07:00"),
            "{message}"
        );
        let (code, status) = server
            .raw(
                "PATCH",
                &format!("{leases}/applied?fieldManager=test"),
                Some("application/apply-patch+yaml"),
                Some(lease("applied", renew)),
            )
            .await;
        assert_eq!(code, 500, "{renew}: {status}");
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("failed to convert new object")),
            "{status}"
        );
    }
    let (code, created) = server
        .raw(
            "POST",
            &leases,
            Some("application/json"),
            Some(lease("six", "2026-12-04T01:00:00.123456Z")),
        )
        .await;
    assert_eq!(code, 201, "{created}");
}

/// A pod bound to a node is not removed by DELETE but marked for its kubelet, which stops the
/// containers and then confirms with a grace period of 0 and the pod's UID; meanwhile the kubelet
/// still writes its status, a later DELETE may only shorten the grace period, and a pod bound to
/// no node goes at once.
#[tokio::test]
async fn bound_pods_are_deleted_gracefully() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::Preconditions;
    let server = common::server("graceful-pods", Crds::Absent).await;
    let pods: Api<Pod> = Api::namespaced(server.client(), server.namespace());
    let pod = |name: &str, node: Option<&str>| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "c", "image": "nats:2.10.24"}],
            },
        }))
        .unwrap()
    };
    let grace = |seconds: u32| DeleteParams {
        grace_period_seconds: Some(seconds),
        ..DeleteParams::default()
    };
    let deadline = |pod: &Pod| pod.metadata.deletion_timestamp.clone().unwrap().0;

    pods.create(&PostParams::default(), &pod("bound", Some("a-node")))
        .await
        .unwrap();
    let asked = k8s_openapi::jiff::Timestamp::now();
    let marked = pods
        .delete("bound", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the pod, kept for its kubelet");
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    let ahead = deadline(&marked).duration_since(asked).as_secs();
    assert!(
        (29..=31).contains(&ahead),
        "deletionTimestamp {ahead} s ahead"
    );

    pods.patch_status(
        "bound",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    let longer = pods
        .delete("bound", &grace(60))
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(longer.metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(deadline(&longer), deadline(&marked));

    let shorter = pods
        .delete("bound", &grace(5))
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(shorter.metadata.deletion_grace_period_seconds, Some(5));
    assert_eq!(
        deadline(&marked)
            .duration_since(deadline(&shorter))
            .as_secs(),
        25
    );

    let confirm = |uid: &str| DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let error = pods
        .delete("bound", &confirm("another-incarnation"))
        .await
        .unwrap_err();
    assert_eq!(
        match error {
            kube::Error::Api(status) => status.code,
            e => panic!("not an API error: {e}"),
        },
        409
    );
    let uid = marked.metadata.uid.clone().unwrap();
    pods.delete("bound", &confirm(&uid)).await.unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());

    pods.create(&PostParams::default(), &pod("unbound", None))
        .await
        .unwrap();
    pods.delete("unbound", &DeleteParams::default())
        .await
        .unwrap();
    assert!(pods.get_opt("unbound").await.unwrap().is_none());
}
