//! The hidden `--apply-strategy` alternatives `operator-bench` compares: each converges a Broker and
//! a MeshSync to Ready and repairs drift; only `diff` and `dry-run-diff` write nothing in steady state.

mod harness;

use std::time::Duration;

use harness::{Cluster, eventually, test_settings};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams};
use meshery_operator::api::{Broker, MeshSync, Phase};
use meshery_operator::controller::{ApplyStrategy, BrokerProbeMode, RunOptions, run_with_strategy};
use tokio::sync::oneshot;

const BROKER: &str = r#"
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: broker, namespace: bench}
spec: {size: 1}
"#;

const MESHSYNC: &str = r#"
apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {name: meshsync, namespace: bench}
spec:
  size: 1
  broker: {native: {name: broker, namespace: bench}}
"#;

/// Real writes and dry-run applies the API server saw since the last reset, the bench's own excluded.
fn counts(cluster: &Cluster) -> (usize, usize, usize) {
    let stats = cluster.sim.stats();
    let ours = stats
        .writes
        .iter()
        .filter(|w| w.field_manager.as_deref() == Some("meshery-operator"));
    let (mut children, mut status, mut dry_runs) = (0, 0, 0);
    for write in ours {
        if write.dry_run {
            dry_runs += 1;
        } else if write.resource.ends_with("/status") {
            status += 1;
        } else if !write.resource.starts_with("events") {
            children += 1;
        }
    }
    (children, status, dry_runs)
}

/// The operator running in this test with `strategy`, until stopped.
struct OperatorTask {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl OperatorTask {
    fn start(cluster: &Cluster, strategy: ApplyStrategy) -> OperatorTask {
        let (stop, stopped) = oneshot::channel::<()>();
        let options = RunOptions {
            settings: harness::Settings {
                broker_probe: BrokerProbeMode::Off,
                ..test_settings()
            },
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            health_addr: "127.0.0.1:0".parse().unwrap(),
            leader_election: None,
            concurrency: 4,
        };
        let client = cluster.client.clone();
        let task = tokio::spawn(async move {
            run_with_strategy(client, options, strategy, async move {
                let _ = stopped.await;
            })
            .await
            .expect("the operator runs");
        });
        OperatorTask { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the operator stops")
            .expect("no panic");
    }
}

async fn converges_and_repairs(strategy: ApplyStrategy) {
    let cluster = Cluster::start().await;
    cluster.create_namespace("bench").await;
    let operator = OperatorTask::start(&cluster, strategy);

    cluster.apply_yaml::<Broker>(BROKER).await;
    cluster.apply_yaml::<MeshSync>(MESHSYNC).await;
    let timeout = Duration::from_secs(30);
    cluster
        .wait_for_broker_phase("bench", "broker", Phase::Ready, timeout)
        .await;
    cluster
        .wait_for_meshsync_phase("bench", "meshsync", Phase::Ready, timeout)
        .await;

    // Steady state across at least one resync (2 s in the test settings).
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.sim.reset_stats();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (children, status, dry_runs) = counts(&cluster);
    match strategy {
        ApplyStrategy::Diff => assert_eq!((children, status, dry_runs), (0, 0, 0)),
        ApplyStrategy::AlwaysApply => {
            assert!(
                children > 0 && status > 0,
                "{children} applies, {status} status writes"
            );
            assert_eq!(dry_runs, 0);
        }
        ApplyStrategy::DryRunDiff => {
            assert_eq!((children, status), (0, 0));
            assert!(dry_runs > 0, "no dry-run applies in steady state");
        }
    }

    // An imperative edit of an owned field is drift: every strategy reverts it.
    let config_maps: Api<ConfigMap> = cluster.api("bench");
    let selector = ListParams::default().labels("app.kubernetes.io/instance=broker");
    let config_map = config_maps
        .list(&selector)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|c| c.data.as_ref().is_some_and(|d| !d.is_empty()))
        .expect("the broker renders a ConfigMap with data");
    let name = config_map.metadata.name.clone().unwrap();
    let (key, original) = config_map.data.unwrap().into_iter().next().unwrap();
    config_maps
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {key.clone(): "tampered"}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "the edit is reverted", || async {
        let current = config_maps.get(&name).await.unwrap();
        current.data.and_then(|d| d.get(&key).cloned()).as_ref() == Some(&original)
    })
    .await;

    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_converges_and_writes_nothing_in_steady_state() {
    converges_and_repairs(ApplyStrategy::Diff).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_apply_converges_and_writes_on_every_reconcile() {
    converges_and_repairs(ApplyStrategy::AlwaysApply).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_diff_converges_and_only_dry_runs_in_steady_state() {
    converges_and_repairs(ApplyStrategy::DryRunDiff).await;
}

/// Status writes the API server saw for one CR (`brokers` or `meshsyncs`) since the last reset.
fn status_writes(cluster: &Cluster, plural: &str, name: &str) -> usize {
    let resource = format!("{plural}.meshery.io/status");
    cluster
        .sim
        .stats()
        .real_writes()
        .iter()
        .filter(|w| w.resource == resource && w.name.as_deref() == Some(name))
        .count()
}

/// The convergence cost the benchmark reports, per CR: one apply per rendered child, and one
/// status write per phase the CR goes through — Deploying and Ready — even for a MeshSync created
/// together with its Broker (its first status waits for the Broker's rollout instead of saying
/// Pending), and never one per step of the Broker's own rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergence_writes_each_child_once_and_status_once_per_phase() {
    let cluster = Cluster::start().await;
    // As in the benchmark: no load-balancer controller, so no external address arrives mid-rollout.
    cluster
        .sim
        .set_load_balancer_mode(kube_sim::LoadBalancerMode::Pending);
    cluster.create_namespace("bench").await;
    let operator = OperatorTask::start(&cluster, ApplyStrategy::Diff);
    let timeout = Duration::from_secs(30);
    let meshsync_for = |name: &str, broker: &str| {
        format!(
            "apiVersion: meshery.io/v1alpha1\nkind: MeshSync\nmetadata: {{name: {name}, namespace: bench}}\n\
             spec: {{size: 1, broker: {{native: {{name: {broker}, namespace: bench}}}}}}\n"
        )
    };

    // A MeshSync created once its Broker is Ready: Deploying, Ready.
    cluster.sim.reset_stats();
    cluster.apply_yaml::<Broker>(BROKER).await;
    cluster
        .wait_for_broker_phase("bench", "broker", Phase::Ready, timeout)
        .await;
    cluster
        .apply_yaml::<MeshSync>(&meshsync_for("after", "broker"))
        .await;
    cluster
        .wait_for_meshsync_phase("bench", "after", Phase::Ready, timeout)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (children, _, _) = counts(&cluster);
    assert_eq!(children, 10, "one apply per rendered object of the pair");
    let broker_writes = status_writes(&cluster, "brokers", "broker");
    let meshsync_writes = status_writes(&cluster, "meshsyncs", "after");
    assert!((1..=2).contains(&broker_writes), "{broker_writes}");
    assert!((1..=2).contains(&meshsync_writes), "{meshsync_writes}");

    // A MeshSync created together with its Broker: no Pending first (its status waits for the
    // Broker's rollout), so again Deploying, Ready.
    cluster.sim.reset_stats();
    cluster
        .apply_yaml::<Broker>(&BROKER.replace("name: broker", "name: second"))
        .await;
    cluster
        .apply_yaml::<MeshSync>(&meshsync_for("together", "second"))
        .await;
    cluster
        .wait_for_meshsync_phase("bench", "together", Phase::Ready, timeout)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (children, _, _) = counts(&cluster);
    assert_eq!(children, 10, "one apply per rendered object of the pair");
    let broker_writes = status_writes(&cluster, "brokers", "second");
    let meshsync_writes = status_writes(&cluster, "meshsyncs", "together");
    assert!((1..=2).contains(&broker_writes), "{broker_writes}");
    assert!((1..=2).contains(&meshsync_writes), "{meshsync_writes}");

    operator.stop().await;
}
