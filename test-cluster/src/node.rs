//! The node agent: what a kubelet does for the API server, for the pods bound to one node.
//!
//! It registers the Node, renews its Lease, and reports every pod bound to it Running with a
//! pod IP of its own (from 127.100.0.0/16: loopback, so that a later process runtime can bind
//! the pod's servers there), Ready once every readiness gate is `True`; a pod being deleted is
//! removed the way a kubelet removes it once its containers stopped (grace period 0, UID
//! precondition). What runs in the pods is decided in one place, [`container_statuses`], so
//! a runtime that starts real processes replaces only that. Tests make a pod's containers
//! unready with [`UNREADY_ANNOTATION`], as a failing readiness probe would.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Node, Pod,
    PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;

use crate::Error;
use crate::runtime::Runtime;
use std::sync::Arc;

/// The one node's name (its identity is `system:node:test-node` in `system:nodes`).
pub const NODE_NAME: &str = "test-node";
/// The node's `containerRuntimeVersion`: how a test tells this node agent from a real kubelet.
pub const CONTAINER_RUNTIME: &str = "test-cluster://1";
/// Fault injection for tests: a pod annotated `"true"` reports its containers not ready, as a
/// failing readiness probe would, until the annotation is removed.
pub const UNREADY_ANNOTATION: &str = "test-cluster.meshery.io/unready";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_SECONDS: i32 = 40;
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The node's Ready condition is re-reported this often, as a kubelet does without changes.
const STATUS_REPORT: Duration = Duration::from_secs(300);
const KUBELET_VERSION: &str = "v1.35.4";

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Room for what the benchmarks schedule on the one node: at N = 100 pairs, 200 pods whose
/// requests (100m CPU for each Broker and MeshSync pod) would not fit a 16-CPU node. No container
/// runs, so nothing is really reserved.
fn node_status(kubelet_port: u16) -> serde_json::Value {
    let resources =
        json!({"cpu": "256", "memory": "1Ti", "pods": "1000", "ephemeral-storage": "1Ti"});
    json!({
        "capacity": resources,
        "allocatable": resources,
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": NODE_NAME},
        ],
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "the test cluster's node agent is posting ready status",
            "lastHeartbeatTime": now(), "lastTransitionTime": now(),
        }],
        "nodeInfo": {
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
            "containerRuntimeVersion": CONTAINER_RUNTIME, "operatingSystem": "linux",
            "architecture": "amd64", "osImage": "meshery-operator test cluster",
            "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
    })
}

/// Creates the Node (or takes over an existing one) and reports it Ready, its kubelet API at
/// `127.0.0.1:kubelet_port` (0: none).
pub(crate) async fn register(client: &Client, kubelet_port: u16) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }},
    }))
    .expect("a Node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    report_node_status(&nodes, kubelet_port).await?;
    renew_lease(client).await?;
    Ok(())
}

async fn report_node_status(nodes: &Api<Node>, kubelet_port: u16) -> Result<(), Error> {
    nodes
        .patch_status(
            NODE_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": node_status(kubelet_port)})),
        )
        .await?;
    Ok(())
}

async fn renew_lease(client: &Client) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let spec = LeaseSpec {
        holder_identity: Some(NODE_NAME.into()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        ..LeaseSpec::default()
    };
    match leases.get_opt(NODE_NAME).await? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases
                .replace(NODE_NAME, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(NODE_NAME.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// The running node agent. Dropping it tells the agent to stop, which it does while the tokio
/// runtime still runs; [`Agent::stop`] waits for it.
pub(crate) struct Agent {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Runs the agent of a registered Node (see [`register`]) on a task of its own.
    pub(crate) fn spawn(client: Client, runtime: Option<Arc<Runtime>>, kubelet_port: u16) -> Agent {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(client, runtime, kubelet_port, stopped));
        Agent {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the agent and waits up to `grace` for its pods' processes to be killed and their
    /// namespaces removed.
    pub(crate) async fn stop(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(grace, task).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Heartbeats and pod status until `stop` fires; with a `runtime`, the pods' containers run as
/// processes, otherwise they are only reported running.
async fn run(
    client: Client,
    runtime: Option<Arc<Runtime>>,
    kubelet_port: u16,
    mut stop: oneshot::Receiver<()>,
) {
    let heartbeat = heartbeat(client.clone(), kubelet_port);
    let pods = sync_pods(client, runtime.clone());
    tokio::select! {
        _ = &mut stop => {}
        _ = heartbeat => {}
        _ = pods => {}
    }
    if let Some(runtime) = runtime {
        runtime.shutdown().await;
    }
}

async fn heartbeat(client: Client, kubelet_port: u16) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut since_report = Duration::ZERO;
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        if let Err(e) = renew_lease(&client).await {
            eprintln!("test-cluster node: renewing the Lease: {e}");
        }
        since_report += LEASE_RENEW;
        if since_report >= STATUS_REPORT {
            since_report = Duration::ZERO;
            if let Err(e) = report_node_status(&nodes, kubelet_port).await {
                eprintln!("test-cluster node: reporting the node status: {e}");
            }
        }
    }
}

/// Pod IPs, one per pod UID, from 127.100.0.0/16.
#[derive(Default)]
struct PodAddresses {
    by_uid: BTreeMap<String, Ipv4Addr>,
    used: BTreeSet<Ipv4Addr>,
}

impl PodAddresses {
    const FIRST: u32 = u32::from_be_bytes([127, 100, 0, 1]);
    const LAST: u32 = u32::from_be_bytes([127, 100, 255, 254]);

    /// The pod's address: the one it reports already (after a restart of the agent), or a free one.
    fn for_pod(&mut self, uid: &str, reported: Option<&str>) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_uid.get(uid) {
            return Some(*ip);
        }
        let ip = reported
            .and_then(|r| r.parse::<Ipv4Addr>().ok())
            .filter(|ip| !self.used.contains(ip))
            .or_else(|| {
                (Self::FIRST..=Self::LAST).map(Ipv4Addr::from).find(|ip| {
                    ip.octets()[3] != 0 && ip.octets()[3] != 255 && !self.used.contains(ip)
                })
            })?;
        self.by_uid.insert(uid.to_string(), ip);
        self.used.insert(ip);
        Some(ip)
    }

    fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_uid.remove(uid) {
            self.used.remove(&ip);
        }
    }
}

async fn sync_pods(client: Client, runtime: Option<Arc<Runtime>>) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    let mut addresses = PodAddresses::default();
    let mut events = watcher(pods.clone(), config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        if let Some(runtime) = &runtime {
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    runtime.observe(pod)
                }
                Ok(watcher::Event::Delete(pod)) => runtime.forget(&pod),
                Ok(_) => {}
                Err(e) => eprintln!("test-cluster node: watching pods: {e}"),
            }
            continue;
        }
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                if let Err(e) = sync_pod(&pods, &pod, &mut addresses).await {
                    // A conflict means a newer version is on its way through the watch.
                    if !matches!(&e, kube::Error::Api(s) if s.code == 409 || s.code == 404) {
                        eprintln!(
                            "test-cluster node: pod {}/{}: {e}",
                            pod.namespace().unwrap_or_default(),
                            pod.name_any()
                        );
                    }
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                addresses.release(&pod.uid().unwrap_or_default());
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => eprintln!("test-cluster node: watching pods: {e}"),
        }
    }
}

async fn sync_pod(
    pods: &Api<Pod>,
    pod: &Pod,
    addresses: &mut PodAddresses,
) -> Result<(), kube::Error> {
    let uid = pod.uid().unwrap_or_default();
    let namespaced: Api<Pod> = Api::namespaced(
        pods.clone().into_client(),
        &pod.namespace().unwrap_or_default(),
    );
    if pod.metadata.deletion_timestamp.is_some() {
        // The containers are gone at once: confirm the deletion as the kubelet does.
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        namespaced.delete(&pod.name_any(), &params).await?;
        addresses.release(&uid);
        return Ok(());
    }
    let current = pod.status.clone().unwrap_or_default();
    if matches!(current.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Ok(());
    }
    let Some(ip) = addresses.for_pod(&uid, current.pod_ip.as_deref()) else {
        eprintln!(
            "test-cluster node: no free pod address for {}",
            pod.name_any()
        );
        return Ok(());
    };
    let desired = desired_status(pod, &current, ip);
    if desired == current {
        return Ok(());
    }
    let patch = json!({
        "metadata": {"resourceVersion": pod.resource_version()},
        "status": desired,
    });
    namespaced
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    Ok(())
}

/// What a kubelet would report for `pod` whose containers all run (no process runtime):
/// ready unless [`UNREADY_ANNOTATION`] says otherwise.
fn desired_status(pod: &Pod, current: &PodStatus, ip: Ipv4Addr) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let started = current.start_time.clone().unwrap_or_else(now);
    let containers_ready = pod
        .annotations()
        .get(UNREADY_ANNOTATION)
        .map(String::as_str)
        != Some("true");
    let statuses = container_statuses(
        &spec.containers,
        current.container_statuses.as_deref(),
        &started,
        Some(containers_ready),
    );
    let mut status = kubelet_status(pod, current, ip, statuses);
    if let Some(init) = spec.init_containers.as_deref().filter(|c| !c.is_empty()) {
        status.init_container_statuses = Some(container_statuses(
            init,
            current.init_container_statuses.as_deref(),
            &started,
            None,
        ));
    }
    status
}

/// The status a kubelet reports for `pod` with these container statuses: phase, addresses and
/// the kubelet's conditions set; every other condition (the scheduler's, readiness gates) kept.
pub(crate) fn kubelet_status(
    pod: &Pod,
    current: &PodStatus,
    ip: Ipv4Addr,
    statuses: Vec<ContainerStatus>,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut status = current.clone();
    let running = statuses
        .iter()
        .any(|s| s.state.as_ref().is_some_and(|s| s.running.is_some()));
    status.phase = Some(if running { "Running" } else { "Pending" }.into());
    status.host_ip = Some("127.0.0.1".into());
    status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
        ip: "127.0.0.1".into(),
    }]);
    status.pod_ip = Some(ip.to_string());
    status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
        ip: ip.to_string(),
    }]);
    status.start_time = Some(current.start_time.clone().unwrap_or_else(now));
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let containers_ready = unready.is_empty();
    let unready_message = format!("containers with unready status: [{}]", unready.join(" "));

    let conditions = current.conditions.clone().unwrap_or_default();
    let gates_open = spec.readiness_gates.iter().flatten().all(|gate| {
        conditions
            .iter()
            .any(|c| c.type_ == gate.condition_type && c.status == "True")
    });
    let mut conditions = conditions;
    let not_ready_because = if !containers_ready {
        ("ContainersNotReady", unready_message.as_str())
    } else {
        (
            "ReadinessGatesNotReady",
            "the pod's readiness gates are not all True",
        )
    };
    for (type_, ready) in [
        ("PodReadyToStartContainers", true),
        ("Initialized", true),
        ("ContainersReady", containers_ready),
        ("Ready", containers_ready && gates_open),
    ] {
        set_condition(&mut conditions, type_, ready, not_ready_because);
    }
    status.conditions = Some(conditions);
    status.container_statuses = Some(statuses);
    status
}

fn set_condition(
    conditions: &mut Vec<PodCondition>,
    type_: &str,
    ready: bool,
    (not_ready_reason, not_ready_message): (&str, &str),
) {
    let status = if ready { "True" } else { "False" };
    let reason = (!ready).then(|| not_ready_reason.to_string());
    let message = (!ready).then(|| not_ready_message.to_string());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) if existing.status == status => {
            existing.reason = reason;
            existing.message = message;
        }
        Some(existing) => {
            existing.status = status.into();
            existing.reason = reason;
            existing.message = message;
            existing.last_transition_time = Some(now());
        }
        None => conditions.push(PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason,
            message,
            last_transition_time: Some(now()),
            ..PodCondition::default()
        }),
    }
}

/// Every container running, ready as `ready` says (`None`: init containers, completed), keeping
/// the start times already reported.
fn container_statuses(
    containers: &[k8s_openapi::api::core::v1::Container],
    reported: Option<&[ContainerStatus]>,
    started: &Time,
    ready: Option<bool>,
) -> Vec<ContainerStatus> {
    let init = ready.is_none();
    containers
        .iter()
        .map(|container| {
            let previous = reported
                .into_iter()
                .flatten()
                .find(|s| s.name == container.name);
            let image = container.image.clone().unwrap_or_default();
            let state = if init {
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 0,
                        reason: Some("Completed".into()),
                        started_at: Some(started.clone()),
                        finished_at: Some(started.clone()),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }
            } else {
                let since = previous
                    .and_then(|p| p.state.as_ref())
                    .and_then(|s| s.running.as_ref())
                    .and_then(|r| r.started_at.clone())
                    .unwrap_or_else(|| started.clone());
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(since),
                    }),
                    ..ContainerState::default()
                }
            };
            ContainerStatus {
                name: container.name.clone(),
                image_id: format!("test-cluster://{image}"),
                image,
                container_id: Some(format!("test-cluster://{}", container.name)),
                ready: ready.unwrap_or(false),
                started: Some(!init),
                restart_count: 0,
                state: Some(state),
                ..ContainerStatus::default()
            }
        })
        .collect()
}
