//! The test cluster behaves like a cluster: the node is Ready with a Lease heartbeat, pods are
//! scheduled and reported Running and Ready with a pod IP (readiness gates and injected readiness
//! failures honoured), deleted pods
//! go away, service-account tokens from the TokenRequest API authenticate and the real authorizer
//! enforces RBAC, and dropping the control plane stops every process and deletes its state.
//!
//! One control plane for the whole binary: start-up dominates, so the checks run in one test.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use test_cluster::{ControlPlane, NODE_NAME, Options, UNREADY_ANNOTATION};

const NAMESPACE: &str = "checks";

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn ready_pod(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && condition(pod, "Ready").as_deref() == Some("True")
}

fn pod(name: &str, gate: Option<&str>) -> Pod {
    let mut spec = json!({
        "containers": [{"name": "main", "image": "nats:2.10.24-alpine"}],
    });
    if let Some(gate) = gate {
        spec["readinessGates"] = json!([{"conditionType": gate}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }))
    .expect("a Pod")
}

async fn check_node(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get(NODE_NAME).await.expect("the node is registered");
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("True"), "the node reports Ready");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = leases.get(NODE_NAME).await.expect("the node's Lease");
    let spec = lease.spec.expect("a Lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE_NAME));
    assert!(spec.renew_time.is_some(), "the Lease is renewed");
}

async fn check_deployment_pods(client: &Client) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nats:2.10.24-alpine"}]},
            },
        },
    }))
    .expect("a Deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("creating a Deployment");
    let available = eventually(
        "the Deployment's 2 replicas available",
        Duration::from_secs(30),
        || async {
            let d = deployments.get("web").await.ok()?;
            (d.status?.available_replicas == Some(2)).then_some(())
        },
    )
    .await;
    let () = available;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("listing pods");
    assert_eq!(listed.items.len(), 2);
    let mut ips = Vec::new();
    for pod in &listed.items {
        assert!(ready_pod(pod), "{} is Running and Ready", pod.name_any());
        let spec = pod.spec.as_ref().expect("a pod spec");
        assert_eq!(
            spec.node_name.as_deref(),
            Some(NODE_NAME),
            "scheduled by kube-scheduler"
        );
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("a pod IP");
        assert!(ip.starts_with("127.100."), "pod IP {ip} is on loopback");
        ips.push(ip);
    }
    ips.dedup();
    assert_eq!(ips.len(), 2, "each pod has an address of its own");

    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .expect("deleting the Deployment");
    eventually(
        "the Deployment's pods gone",
        Duration::from_secs(30),
        || async {
            let left = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            left.items.is_empty().then_some(())
        },
    )
    .await;
}

async fn check_readiness_gate(client: &Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods.create(
        &PostParams::default(),
        &pod("gated", Some("example.com/ready")),
    )
    .await
    .expect("creating a gated pod");
    let running = eventually("the gated pod Running", Duration::from_secs(30), || async {
        let p = pods.get("gated").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    assert_eq!(
        condition(&running, "ContainersReady").as_deref(),
        Some("True")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let still = pods.get("gated").await.expect("the gated pod");
    assert_eq!(
        condition(&still, "Ready").as_deref(),
        Some("False"),
        "a pod whose readiness gate is not True is not Ready"
    );
    let gate = json!({"status": {"conditions": [{"type": "example.com/ready", "status": "True"}]}});
    pods.patch_status("gated", &PatchParams::default(), &Patch::Strategic(gate))
        .await
        .expect("opening the readiness gate");
    eventually("the gated pod Ready", Duration::from_secs(30), || async {
        let p = pods.get("gated").await.ok()?;
        ready_pod(&p).then_some(())
    })
    .await;

    // A failing readiness probe, injected: the containers go unready, and back.
    for (value, ready) in [(json!("true"), false), (serde_json::Value::Null, true)] {
        let patch = json!({"metadata": {"annotations": {UNREADY_ANNOTATION: value}}});
        pods.patch("gated", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotating the pod");
        eventually(
            "the injected readiness",
            Duration::from_secs(30),
            || async {
                let p = pods.get("gated").await.ok()?;
                let containers = condition(&p, "ContainersReady")?;
                (ready_pod(&p) == ready && (containers == "True") == ready).then_some(())
            },
        )
        .await;
    }
    pods.delete("gated", &DeleteParams::default())
        .await
        .expect("deleting the pod");
    eventually("the gated pod removed", Duration::from_secs(30), || async {
        pods.get_opt("gated").await.ok()?.is_none().then_some(())
    })
    .await;
}

/// A token from the TokenRequest API authenticates as the ServiceAccount, and RBAC (not admin
/// rights) decides what it may do.
async fn check_service_account_tokens(control_plane: &ControlPlane, admin: &Client) {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), NAMESPACE);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "reader"}})).expect("an SA"),
        )
        .await
        .expect("creating a ServiceAccount");
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [], "expirationSeconds": 3600},
    }))
    .expect("a TokenRequest");
    let token = accounts
        .create_token_request("reader", &PostParams::default(), &request)
        .await
        .expect("the TokenRequest API issues a token")
        .status
        .expect("a token")
        .token;
    let mut config = control_plane
        .client_config()
        .await
        .expect("the admin config");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let reader = Client::try_from(config).expect("a client with the token");
    let review: Api<SelfSubjectReview> = Api::all(reader.clone());
    let me = review
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("a SelfSubjectReview");
    let user = me.status.and_then(|s| s.user_info).and_then(|u| u.username);
    assert_eq!(
        user.as_deref(),
        Some(format!("system:serviceaccount:{NAMESPACE}:reader").as_str())
    );
    let pods: Api<Pod> = Api::namespaced(reader, NAMESPACE);
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("a ServiceAccount without grants may not list pods: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_cluster_behaves_like_a_cluster() {
    let began = Instant::now();
    let control_plane = tokio::task::spawn_blocking(|| ControlPlane::start(Options::default()))
        .await
        .expect("the start-up task")
        .expect("the control plane starts");
    eprintln!(
        "control plane ready in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let state_dir = control_plane.state_dir().to_path_buf();
    assert!(state_dir.is_dir());

    let admin = Client::try_from(
        control_plane
            .client_config()
            .await
            .expect("the admin config"),
    )
    .expect("a client");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).expect("a namespace"),
        )
        .await
        .expect("creating the namespace");

    check_node(&admin).await;
    check_deployment_pods(&admin).await;
    check_readiness_gate(&admin).await;
    check_service_account_tokens(&control_plane, &admin).await;

    namespaces
        .delete(NAMESPACE, &DeleteParams::default())
        .await
        .expect("deleting the namespace");
    eventually(
        "the namespace deleted by the namespace controller",
        Duration::from_secs(60),
        || async {
            namespaces
                .get_opt(NAMESPACE)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;

    let server = control_plane.server().to_string();
    tokio::task::spawn_blocking(move || drop(control_plane))
        .await
        .expect("stopping the control plane");
    assert!(
        !state_dir.exists(),
        "the state directory {} is deleted",
        state_dir.display()
    );
    let port = server
        .rsplit(':')
        .next()
        .expect("a port")
        .parse::<u16>()
        .expect("a port");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on the API server's port after the drop"
    );
}
