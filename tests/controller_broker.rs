//! The Broker controller end to end: kube-sim as the API server, real nats-server as the broker.

mod harness;

use std::time::Duration;

use harness::{Cluster, NATS_ADDRESSES, NatsServer, condition, external_address, test_settings};
use meshery_operator::api::{Broker, Phase};

const BROKER: &str = "
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: meshery-broker, namespace: meshery}
spec: {size: 1}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_becomes_ready_once_nats_answers_with_the_token() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let mut cluster = Cluster::start().await;
    cluster.create_namespace("meshery").await;
    cluster.start_operator(test_settings());
    cluster.apply_yaml::<Broker>(BROKER).await;

    // Children roll out, the LoadBalancer gets an address, but nothing answers NATS there yet.
    let deploying = cluster
        .wait_for(
            "meshery",
            "meshery-broker",
            Duration::from_secs(20),
            |b: &Broker| b.status.as_ref().and_then(|s| s.endpoint.as_ref()).is_some_and(|e| !e.external.is_empty()),
        )
        .await;
    let status = deploying.status.as_ref().unwrap();
    assert_ne!(status.phase, Some(Phase::Ready), "Ready before NATS was reachable: {status:#?}");
    let endpoint = status.endpoint.as_ref().unwrap();
    assert_eq!(endpoint.internal, "meshery-broker.meshery.svc.cluster.local:4222");

    let token = cluster.broker_token("meshery", "meshery-broker").await;
    assert!(token.starts_with('t') && token.len() == 65, "token shape: {} chars", token.len());
    let _nats = NatsServer::start(external_address(&deploying), &token);

    let ready = cluster.wait_for_broker_phase("meshery", "meshery-broker", Phase::Ready, Duration::from_secs(20)).await;
    let status = ready.status.unwrap();
    assert_eq!(status.observed_generation, ready.metadata.generation);
    let ready_condition = condition(&status.conditions, "Ready");
    assert_eq!(ready_condition.status, "True");
    assert_eq!(condition(&status.conditions, "Reconciling").status, "False");
    cluster.stop_operator().await;
}
