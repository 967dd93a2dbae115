//! MeshSync's connection as status: the operator reads the Broker's `/connz?subs=1` (a real
//! nats-server with its monitoring endpoint, at the address kube-sim gives the Broker's
//! LoadBalancer) and shows it as the MeshSync's `BrokerConnected` condition; a MeshSync gone past
//! the grace period is Degraded, and with `--restart-disconnected-meshsync` restarted. The MeshSync
//! client is an async-nats connection that names and subscribes itself as MeshSync v1.0.x does.
//! The pure reading of `/connz` is table-tested first.

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{
    Cluster, NATS_ADDRESSES, NatsServer, condition, connect_as_meshsync, eventually,
    skip_whole_test_on_real_cluster, test_settings,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use meshery_operator::api::{Broker, MeshSync, Phase};
use meshery_operator::lifecycle::BROKER_CONNECTED;
use meshery_operator::monitor::{
    Connection, Connz, MESHSYNC_REQUEST_SUBJECT, MeshSyncOnBroker, meshsync_on_broker,
    monitoring_address,
};

// ---------------------------------------------------------------------------------------------
// The pure reading of /connz

fn connection(name: &str, subjects: &[&str]) -> Connection {
    Connection {
        name: name.into(),
        subscriptions_list: subjects.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn connz_tells_subscribed_connected_and_absent_apart() {
    let request = MESHSYNC_REQUEST_SUBJECT;
    let cases: Vec<(&str, Vec<Connection>, MeshSyncOnBroker)> = vec![
        ("no connections", vec![], MeshSyncOnBroker::Absent),
        (
            "another client subscribed to the subject is not MeshSync",
            vec![connection("meshery-server", &[request])],
            MeshSyncOnBroker::Absent,
        ),
        (
            "MeshSync subscribed",
            vec![connection("meshsync", &["meshery.meshsync.core", request])],
            MeshSyncOnBroker::Subscribed,
        ),
        (
            "a queue subscription as nats-server lists it",
            vec![connection(
                "meshsync",
                &["meshery.meshsync.request meshsync-request-stream"],
            )],
            MeshSyncOnBroker::Subscribed,
        ),
        (
            "MeshSync connected, no request subscription yet",
            vec![connection("meshsync", &[])],
            MeshSyncOnBroker::ConnectedNotSubscribed,
        ),
        (
            "a longer subject is not the request subject",
            vec![connection("meshsync", &["meshery.meshsync.requests"])],
            MeshSyncOnBroker::ConnectedNotSubscribed,
        ),
        (
            "one of two MeshSync connections subscribed",
            vec![
                connection("meshsync", &[]),
                connection("meshsync", &[request]),
            ],
            MeshSyncOnBroker::Subscribed,
        ),
    ];
    for (what, connections, expected) in cases {
        let connz = Connz { connections };
        assert_eq!(meshsync_on_broker(&connz), expected, "{what}");
    }
}

#[test]
fn connz_answer_parses_with_fields_missing() {
    let connz: Connz = serde_json::from_str(
        r#"{"server_id":"N","num_connections":2,"connections":[
            {"cid":5,"ip":"127.0.0.1","port":5000,"name":"meshsync","subscriptions_list":["meshery.meshsync.request"]},
            {"cid":6,"ip":"127.0.0.1","port":5001}]}"#,
    )
    .unwrap();
    assert_eq!(connz.connections.len(), 2);
    assert_eq!(connz.connections[1].name, "");
    assert_eq!(meshsync_on_broker(&connz), MeshSyncOnBroker::Subscribed);
    // Go writes a nil slice as null.
    let empty: Connz = serde_json::from_str(r#"{"num_connections":0,"connections":null}"#).unwrap();
    assert!(empty.connections.is_empty());
    let unsubscribed: Connz =
        serde_json::from_str(r#"{"connections":[{"name":"meshsync","subscriptions_list":null}]}"#)
            .unwrap();
    assert_eq!(
        meshsync_on_broker(&unsubscribed),
        MeshSyncOnBroker::ConnectedNotSubscribed
    );
    assert_eq!(meshsync_on_broker(&empty), MeshSyncOnBroker::Absent);
}

#[test]
fn monitoring_address_is_port_8222_of_the_client_host() {
    for (client, monitoring) in [
        (
            "meshery-broker.meshery.svc.cluster.local:4222",
            Some("meshery-broker.meshery.svc.cluster.local:8222"),
        ),
        ("127.0.0.7:4222", Some("127.0.0.7:8222")),
        ("[::1]:4222", Some("[::1]:8222")),
        ("nats.example", Some("nats.example:8222")),
        (" 10.0.0.1:30222 ", Some("10.0.0.1:8222")),
        ("", None),
        (":4222", None),
    ] {
        assert_eq!(
            monitoring_address(client).as_deref(),
            monitoring,
            "{client:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// End to end: kube-sim, the operator in-process, a real nats-server

const WAIT: Duration = Duration::from_secs(30);

const BROKER: &str = "
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: meshery-broker, namespace: NS}
spec: {size: 1}
";

const MESHSYNC: &str = "
apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {name: meshery-meshsync, namespace: NS}
spec:
  broker: {native: {name: meshery-broker}}
";

/// A Ready Broker behind a real nats-server with its monitoring endpoint, a MeshSync publishing to
/// it, and the broker's address and token.
async fn broker_and_meshsync(restart: bool) -> (Cluster, String, NatsServer, SocketAddr, String) {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    cluster.start_operator(harness::Settings {
        restart_disconnected_meshsync: restart,
        ..test_settings()
    });
    cluster
        .apply_yaml::<Broker>(&BROKER.replace("NS", &ns))
        .await;
    let (nats, address, token) = cluster.serve_broker(&ns, "meshery-broker", true).await;
    cluster
        .apply_yaml::<MeshSync>(&MESHSYNC.replace("NS", &ns))
        .await;
    (cluster, ns, nats, address, token)
}

async fn wait_for_connection(
    cluster: &Cluster,
    ns: &str,
    phase: Phase,
    connected: &str,
) -> MeshSync {
    cluster
        .wait_for(ns, "meshery-meshsync", WAIT, |m: &MeshSync| {
            m.status.as_ref().is_some_and(|s| {
                s.phase == Some(phase)
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == BROKER_CONNECTED && c.status == connected)
            })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshsync_connection_is_a_condition_degraded_past_the_grace_period() {
    if skip_whole_test_on_real_cluster(
        "the broker is a local nats-server at the sim's LoadBalancer address, and MeshSync a test \
         client; on the real control plane no pod runs MeshSync yet (issue: real workloads)",
    ) {
        return;
    }
    let _addresses = NATS_ADDRESSES.lock().await;
    let (cluster, ns, _nats, address, token) = broker_and_meshsync(false).await;

    // Rolled out, but nothing connected: the broker says so, and past the grace period it is Degraded.
    let degraded = wait_for_connection(&cluster, &ns, Phase::Degraded, "False").await;
    let status = degraded.status.as_ref().unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!(ready.reason, "MeshSyncDisconnected", "{status:#?}");
    assert!(
        ready.message.contains("shows no MeshSync connection"),
        "{}",
        ready.message
    );
    assert_eq!(
        condition(&status.conditions, BROKER_CONNECTED).reason,
        "NotConnected"
    );

    // A rollout gives the new pods their own grace period: after a spec change MeshSync waits for
    // its connection again (Deploying, WaitingForNats) instead of staying Degraded at once.
    let meshsyncs = cluster.api::<MeshSync>(&ns);
    let changed = meshsyncs
        .patch(
            "meshery-meshsync",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    let generation = changed.metadata.generation;
    cluster
        .wait_for(&ns, "meshery-meshsync", WAIT, |m: &MeshSync| {
            m.status.as_ref().is_some_and(|s| {
                s.observed_generation == generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.reason == "WaitingForNats")
            })
        })
        .await;

    // MeshSync connects and subscribes: Ready, BrokerConnected True.
    let (client, subscriber) = connect_as_meshsync(address, &token).await;
    let ready = wait_for_connection(&cluster, &ns, Phase::Ready, "True").await;
    let connected = condition(&ready.status.as_ref().unwrap().conditions, BROKER_CONNECTED);
    assert_eq!(connected.reason, "Subscribed");

    // Steady state: the connection is checked at every requeue (2 s here), and nothing is written.
    let count = cluster.count_writes(&[&ns]).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let written = cluster.writes_since(&count).await;
    assert!(
        written.is_empty(),
        "writes while MeshSync stayed connected: {written:#?}"
    );

    // It goes away (as MeshSync's client does once it stops reconnecting): False, then Degraded.
    drop(subscriber);
    client.drain().await.expect("disconnect");
    let gone = wait_for_connection(&cluster, &ns, Phase::Degraded, "False").await;
    assert_eq!(
        condition(&gone.status.as_ref().unwrap().conditions, "Ready").reason,
        "MeshSyncDisconnected"
    );

    // And comes back.
    let (_client, _subscriber) = connect_as_meshsync(address, &token).await;
    wait_for_connection(&cluster, &ns, Phase::Ready, "True").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_monitoring_endpoint_leaves_the_connection_unknown() {
    if skip_whole_test_on_real_cluster(
        "the broker is a local nats-server at the sim's LoadBalancer address",
    ) {
        return;
    }
    let _addresses = NATS_ADDRESSES.lock().await;
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    cluster.start_operator(test_settings());
    cluster
        .apply_yaml::<Broker>(&BROKER.replace("NS", &ns))
        .await;
    // Client port only: /connz cannot be read, so nothing is known about MeshSync.
    let _nats = cluster.serve_broker(&ns, "meshery-broker", false).await;
    cluster
        .apply_yaml::<MeshSync>(&MESHSYNC.replace("NS", &ns))
        .await;
    let ready = wait_for_connection(&cluster, &ns, Phase::Ready, "Unknown").await;
    let unknown = condition(&ready.status.as_ref().unwrap().conditions, BROKER_CONNECTED);
    assert_eq!(unknown.reason, "NotChecked");
    assert!(
        unknown
            .message
            .contains("monitoring endpoint cannot be read"),
        "{}",
        unknown.message
    );
    // Unknown is not a reason to leave Ready: after several grace periods it is still Ready.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let still = cluster
        .api::<MeshSync>(&ns)
        .get("meshery-meshsync")
        .await
        .unwrap();
    assert_eq!(still.status.unwrap().phase, Some(Phase::Ready));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_disconnected_meshsync_restarts_its_deployment() {
    if skip_whole_test_on_real_cluster(
        "the broker is a local nats-server at the sim's LoadBalancer address",
    ) {
        return;
    }
    let _addresses = NATS_ADDRESSES.lock().await;
    let (cluster, ns, _nats, _address, _token) = broker_and_meshsync(true).await;
    let deployments = cluster.api::<Deployment>(&ns);
    let restarted_at = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| {
                a.get(meshery_operator::controller::connection::RESTARTED_AT_ANNOTATION)
                    .cloned()
            })
    };
    eventually(
        WAIT,
        "the operator restarts the disconnected MeshSync",
        || {
            let deployments = deployments.clone();
            async move {
                deployments
                    .get("meshery-meshsync")
                    .await
                    .is_ok_and(|d| restarted_at(&d).is_some())
            }
        },
    )
    .await;
    let events = cluster.api::<Event>(&ns);
    eventually(WAIT, "a RestartedMeshSync Event", || {
        let events = events.clone();
        async move {
            events.list(&ListParams::default()).await.is_ok_and(|list| {
                list.items
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("RestartedMeshSync"))
            })
        }
    })
    .await;
    // The operator's own applies leave the restart annotation alone (another field manager's).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deployment = deployments.get("meshery-meshsync").await.unwrap();
    assert!(restarted_at(&deployment).is_some(), "{deployment:#?}");
}
