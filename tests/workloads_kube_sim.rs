//! The process node (`test_cluster::ProcessNode`) beside kube-sim instead of the real control
//! plane: a bare Pod bound to the node runs as a real `nats-server` in its own network namespace,
//! configured from a ConfigMap volume and its environment, reported Running and Ready with its
//! pod IP; it keeps serving through an API server outage, after which its status catches up with
//! what happened meanwhile (the server killed, and restarted at once from what the node last read); deleting it (gracefully, as the
//! real API server deletes a bound pod) stops the server and removes its namespace, and the node's
//! shutdown removes its bridge. Needs root (network and mount namespaces) and the binaries
//! `test-cluster/build.sh` builds.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube_sim::{Sim, SimOptions};
use serde_json::json;
use test_cluster::{NODE_NAME, NodeOptions, PodNetwork, ProcessNode};

/// The port the ConfigMap's `nats.conf` sets, not nats-server's default: the config is in use.
const CLIENT_PORT: u16 = 4333;
const MONITOR_PORT: u16 = 8333;
const WITHIN: Duration = Duration::from_secs(30);

/// Read from the ConfigMap into the environment at every container start, and from there into
/// `nats.conf`.
const MAX_PAYLOAD: i64 = 2 * 1024 * 1024;

fn config_map() -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "nats-config", "namespace": "default"},
        "data": {
            "nats.conf": format!(
                "port: {CLIENT_PORT}\nhttp_port: {MONITOR_PORT}\nserver_name: $SERVER_NAME\nmax_payload: $MAX_PAYLOAD\n"
            ),
            "max-payload": MAX_PAYLOAD.to_string(),
        },
    }))
    .unwrap()
}

/// A bare pod bound to the node: no scheduler runs beside kube-sim.
fn pod() -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nats", "namespace": "default"},
        "spec": {
            "nodeName": NODE_NAME,
            // kube-sim serves no TokenRequests, which a projected token volume needs.
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "nats",
                "image": "nats:2.10.24-alpine",
                "args": ["-c", "/etc/nats/nats.conf"],
                "env": [
                    {"name": "SERVER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "MAX_PAYLOAD", "valueFrom": {"configMapKeyRef": {"name": "nats-config", "key": "max-payload"}}},
                ],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/nats"}],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": MONITOR_PORT},
                    "periodSeconds": 1,
                },
            }],
            "volumes": [{"name": "config", "configMap": {"name": "nats-config"}}],
        },
    }))
    .unwrap()
}

/// Waits until the pod satisfies `done`, returning it.
async fn wait_for_pod(pods: &Api<Pod>, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    let began = Instant::now();
    loop {
        if let Ok(pod) = pods.get("nats").await
            && done(&pod)
        {
            return pod;
        }
        assert!(
            began.elapsed() < WITHIN,
            "the pod is not {what} within {WITHIN:?}: {:#?}",
            pods.get("nats").await.ok().and_then(|p| p.status)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.clone().unwrap_or_default();
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum()
}

/// The running server's process id, from its container ID (`test-cluster://<pid>`).
fn server_pid(pod: &Pod) -> String {
    let statuses = pod.status.as_ref().unwrap().container_statuses.as_ref();
    let id = statuses.unwrap()[0].container_id.clone().unwrap();
    id.trim_start_matches("test-cluster://").to_string()
}

async fn round_trip(ip: Ipv4Addr, subject: &str) -> async_nats::Client {
    let client = async_nats::connect(SocketAddr::from((ip, CLIENT_PORT)).to_string())
        .await
        .unwrap();
    let mut messages = client.subscribe(subject.to_string()).await.unwrap();
    client.flush().await.unwrap();
    client
        .publish(subject.to_string(), "hello".into())
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("the message comes back within 5 s")
        .unwrap();
    assert_eq!(&message.payload[..], b"hello");
    client
}

fn answers(address: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// The pod's network namespace, as the node names it (`mo-<third>-<fourth octet>`).
fn has_namespace(ip: Ipv4Addr) -> bool {
    let octets = ip.octets();
    std::path::Path::new(&format!("/var/run/netns/mo-{}-{}", octets[2], octets[3])).exists()
}

fn has_address(ip: Ipv4Addr) -> bool {
    let output = Command::new("ip").args(["-o", "addr"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).contains(&format!(" {ip}/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_node_runs_a_nats_server_pod_on_kube_sim() {
    let binaries = test_cluster::ensure_built().expect("the node's binaries");
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let client = sim.client();
    let state = tempfile::tempdir().unwrap();
    let node = ProcessNode::start(NodeOptions {
        client: client.clone(),
        cluster_client: client.clone(),
        network: PodNetwork::create().expect("the pods' bridge (as root)"),
        binaries_dir: binaries.dir.clone(),
        state_dir: state.path().join("pods"),
        api_port: sim.addr().port(),
        kubelet_tls: None,
    })
    .await
    .expect("the node starts against kube-sim");

    let registered = Api::<Node>::all(client.clone())
        .get(NODE_NAME)
        .await
        .unwrap();
    let conditions = registered.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .get(NODE_NAME)
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(NODE_NAME)
    );

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .create(&PostParams::default(), &config_map())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod()).await.unwrap();
    let running = wait_for_pod(&pods, "Running and Ready", is_ready).await;
    eprintln!("the pod was Ready after {:?}", started.elapsed());
    let ip: Ipv4Addr = running
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .expect("a pod IP")
        .parse()
        .unwrap();

    let nats = round_trip(ip, "kube-sim.hello").await;
    assert_eq!(
        nats.server_info().server_name,
        "nats",
        "the server is named from the pod's environment (its name, by the downward API)"
    );
    assert_eq!(
        nats.server_info().max_payload as i64,
        MAX_PAYLOAD,
        "the environment's value from the ConfigMap is in use"
    );
    drop(nats);

    // The API server goes away for a while: the server keeps serving; killed meanwhile, it is
    // restarted at once from what the node last read (as a kubelet's caches serve it), and the
    // restart reaches the pod's status afterwards.
    let outage = Duration::from_secs(5);
    let outage_ends = Instant::now() + outage;
    sim.down_for(outage);
    round_trip(ip, "kube-sim.during-the-outage").await;
    let killed = Command::new("kill")
        .args(["-KILL", &server_pid(&running)])
        .status()
        .unwrap();
    assert!(killed.success());
    let server = SocketAddr::from((ip, CLIENT_PORT));
    while answers(server) {
        assert!(
            Instant::now() < outage_ends,
            "the killed server still answers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while !answers(server) {
        assert!(
            Instant::now() < outage_ends,
            "the killed server was not restarted while the API server was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restarted = wait_for_pod(&pods, "reporting the restart after the outage", |pod| {
        restarts(pod) == 1 && is_ready(pod)
    })
    .await;
    assert_ne!(server_pid(&restarted), server_pid(&running));

    // kube-sim deletes a bound pod gracefully: kept for the node, which stops the server (SIGTERM
    // within the grace period) and then confirms the deletion.
    let marked = pods
        .delete("nats", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the pod, kept until the node confirms");
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    let began = Instant::now();
    while pods.get_opt("nats").await.unwrap().is_some() || answers(server) || has_namespace(ip) {
        assert!(
            began.elapsed() < WITHIN,
            "the deleted pod is still there, its server still answers, or its network namespace is left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("the pod was stopped and gone after {:?}", began.elapsed());

    let gateway = node.gateway();
    assert!(has_address(gateway));
    node.shutdown().await;
    assert!(
        !has_address(gateway),
        "the node's bridge is removed on shutdown"
    );
    let pods_dir = state.path().join("pods");
    assert_eq!(
        std::fs::read_dir(&pods_dir).unwrap().count(),
        0,
        "nothing of the pod is left in {}",
        pods_dir.display()
    );
}
