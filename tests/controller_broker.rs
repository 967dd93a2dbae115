//! The Broker controller end to end: kube-sim as the API server, real nats-server as the broker.
//!
//! With `MESHERY_E2E_KUBECONFIG` set the suite runs against that cluster: the broker pods are real
//! NATS, probed through the Broker's LoadBalancer address; no local nats-server is started.

mod harness;
mod real_cluster_support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{
    Cluster, NATS_ADDRESSES, NatsServer, condition, eventually, external_address, get_json,
    skip_notice, skip_whole_test_on_real_cluster, test_settings,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams};
use meshery_operator::api::{Broker, Phase};
use meshery_operator::controller::BrokerProbeMode;
use real_cluster_support::{kubectl_ok, succeeded};

const BROKER: &str = "
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: meshery-broker, namespace: meshery}
spec: {size: 1}
";

const WAIT: Duration = Duration::from_secs(20);

/// `BROKER` in namespace `ns` (`meshery` against kube-sim, a per-test namespace on a real cluster).
fn broker_yaml(ns: &str) -> String {
    BROKER.replace("namespace: meshery", &format!("namespace: {ns}"))
}

/// A cluster with the operator running and `meshery-broker` Ready behind a real nats-server (on a
/// real cluster: behind its own NATS pod), and the namespace it is in.
async fn ready_broker() -> (Cluster, String, Option<NatsServer>) {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    cluster.start_operator(test_settings());
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    let nats = start_nats_for(&cluster, &ns, "meshery-broker").await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    (cluster, ns, nats)
}

/// Starts nats-server at the Broker's LoadBalancer address with its generated token. On a real
/// cluster the Broker's own NATS pods answer there: nothing to start.
async fn start_nats_for(cluster: &Cluster, namespace: &str, name: &str) -> Option<NatsServer> {
    cluster.sim()?;
    let broker = cluster.wait_for_broker_endpoint(namespace, name).await;
    let token = cluster.broker_token(namespace, name).await;
    Some(NatsServer::start(external_address(&broker), &token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_becomes_ready_once_nats_answers_with_the_token() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    cluster.start_operator(test_settings());
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;

    // Children roll out, the LoadBalancer gets an address, but nothing answers NATS there yet.
    let deploying = cluster
        .broker_with_external_endpoint(
            &ns,
            "meshery-broker",
            "Ready only once NATS answers through the external endpoint",
        )
        .await;
    if let Some(deploying) = &deploying {
        let status = deploying.status.as_ref().unwrap();
        if cluster.sim().is_some() {
            assert_ne!(
                status.phase,
                Some(Phase::Ready),
                "Ready before NATS was reachable: {status:#?}"
            );
        } else {
            skip_notice(
                "not Ready before NATS answers: a real broker pod may answer before its LoadBalancer \
                 has an address (only the sim lets the test start NATS later)",
            );
        }
        assert_eq!(
            status.endpoint.as_ref().unwrap().internal,
            format!("meshery-broker.{ns}.svc.cluster.local:4222")
        );
    }

    let token = cluster.broker_token(&ns, "meshery-broker").await;
    assert!(
        token.starts_with('t') && token.len() == 65,
        "token shape: {} chars",
        token.len()
    );
    // On a real cluster the broker's NATS pod answers with the token from the same Secret.
    let _nats = match (cluster.sim(), &deploying) {
        (Some(_), Some(deploying)) => Some(NatsServer::start(external_address(deploying), &token)),
        _ => None,
    };

    let ready = cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let status = ready.status.unwrap();
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(condition(&status.conditions, "Ready").status, "True");
    assert_eq!(condition(&status.conditions, "Reconciling").status, "False");
    assert_eq!(condition(&status.conditions, "Stalled").status, "False");
    if cluster.is_real() && test_settings().broker_probe == BrokerProbeMode::Off {
        skip_notice("Ready through the NATS probe: MESHERY_E2E_BROKER_PROBE=off");
    }
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_sends_zero_writes_across_sixty_seconds_of_resyncs() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, _nats) = ready_broker().await;
    // Let the rollout's last status updates settle, then count from a clean slate.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let count = cluster.count_writes(&[&ns]).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        cluster.writes_since(&count).await,
        Vec::<String>::new(),
        "writes in steady state"
    );
    let Some(sim) = cluster.sim() else {
        skip_notice("counting reads: the API server's request accounting is kube-sim's");
        cluster.stop_operator().await;
        return;
    };
    let reads = sim.stats().verb_total("get") + sim.stats().verb_total("list");
    assert!(
        reads <= 5,
        "steady state should read from caches, not the API: {reads} reads"
    );
    cluster.stop_operator().await;
}

/// What the operator renders is authoritative: the broker's replicas changed by `kubectl scale`,
/// `kubectl patch`, `kubectl edit` or another manager's server-side apply go back to the Broker's
/// size (the Go operator's bug: five unclustered NATS servers behind a Broker that says size 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_changed_by_any_client_go_back_to_the_brokers_size() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, _nats) = ready_broker().await;
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let statefulsets = cluster.api::<StatefulSet>(&ns);
    let editor_dir = tempfile::tempdir().unwrap();
    let editor = editor_dir.path().join("set-replicas-3");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/^  replicas: 1$/  replicas: 3/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let foreign_apply = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: meshery-broker, namespace: {ns}}}\nspec: {{replicas: 2}}\n"
    );

    for edit in [
        "kubectl scale",
        "kubectl patch",
        "kubectl edit",
        "server-side apply",
    ] {
        let args: Vec<String> = match edit {
            "kubectl scale" => vec![
                "scale".into(),
                "statefulset/meshery-broker".into(),
                "--replicas=5".into(),
            ],
            "kubectl patch" => vec![
                "patch".into(),
                "statefulset".into(),
                "meshery-broker".into(),
                "-p".into(),
                r#"{"spec":{"replicas":4}}"#.into(),
            ],
            "kubectl edit" => vec!["edit".into(), "statefulset".into(), "meshery-broker".into()],
            _ => vec![
                "apply".into(),
                "--server-side".into(),
                "--force-conflicts".into(),
                "--field-manager=platform-team".into(),
                "-f".into(),
                "-".into(),
            ],
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut all = vec!["-n", ns.as_str()];
        all.extend(&args);
        let printed = if edit == "server-side apply" {
            let mut child = Command::new("kubectl")
                .env("KUBECONFIG", &kubeconfig)
                .args(&all)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubectl is installed");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(foreign_apply.as_bytes())
                .unwrap();
            succeeded("kubectl", &all, child.wait_with_output().unwrap())
        } else if edit == "kubectl edit" {
            let output = Command::new("kubectl")
                .env("KUBECONFIG", &kubeconfig)
                .env("KUBE_EDITOR", &editor)
                .args(&all)
                .output()
                .expect("kubectl is installed");
            succeeded("kubectl", &all, output)
        } else {
            kubectl_ok(&kubeconfig, &all)
        };
        // The edit really changed the object (the operator may have reverted it already).
        assert!(
            ["scaled", "patched", "edited", "serverside-applied"]
                .iter()
                .any(|verb| printed.trim_end().ends_with(verb)),
            "{edit} changed nothing: {printed}"
        );
        eventually(
            WAIT,
            &format!("replicas back to 1 after {edit}"),
            || async {
                let sts = statefulsets.get("meshery-broker").await.unwrap();
                sts.spec.unwrap().replicas == Some(1)
            },
        )
        .await;
    }
    let broker = cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    assert_eq!(broker.spec.size, 1);
    cluster.stop_operator().await;
}

/// Placement and registry options reach the StatefulSet (and, on a real cluster, the pods the
/// scheduler placed), and what the API server stores for them is no drift: zero writes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_options_reach_the_pods_and_plan_as_unchanged() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    cluster.start_operator(test_settings());
    let pod_options = r#"pod:
    tolerations: [{key: dedicated, operator: Equal, value: meshery, effect: NoSchedule}]
    affinity:
      podAntiAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app: meshery-broker}}
    topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}
    priorityClassName: system-cluster-critical
    imagePullSecrets: [{name: registry-credentials}]
    labels: {team: platform}
    annotations: {example.com/owner: platform team}"#;
    cluster
        .apply_yaml::<Broker>(&broker_yaml(&ns).replace(
            "spec: {size: 1}",
            &format!("spec:\n  size: 1\n  {pod_options}"),
        ))
        .await;
    let _nats = start_nats_for(&cluster, &ns, "meshery-broker").await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    let sts = get_json(
        &cluster.client,
        "apps/v1",
        "statefulsets",
        &ns,
        "meshery-broker",
    )
    .await
    .expect("the StatefulSet");
    let template = &sts["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["team"], "platform");
    assert_eq!(template["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        template["spec"]["priorityClassName"],
        "system-cluster-critical"
    );
    assert_eq!(
        template["spec"]["imagePullSecrets"][0]["name"],
        "registry-credentials"
    );
    if cluster.is_real() {
        let pod = get_json(&cluster.client, "v1", "pods", &ns, "meshery-broker-0")
            .await
            .expect("the first broker pod");
        assert_eq!(pod["metadata"]["labels"]["team"], "platform", "{pod}");
        assert!(
            pod["spec"]["priority"].as_i64().is_some_and(|p| p > 0),
            "{pod}"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let count = cluster.count_writes(&[&ns]).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        cluster.writes_since(&count).await,
        Vec::<String>::new(),
        "what the server stored for the pod options is no drift"
    );
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_restored_with_one_apply_and_a_deleted_child_is_recreated() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, _nats) = ready_broker().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Another client changes a field the operator owns.
    let count = cluster.count_writes(&[&ns]).await;
    let statefulsets = cluster.api::<StatefulSet>(&ns);
    let edit =
        serde_json::json!({"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}}});
    statefulsets
        .patch(
            "meshery-broker",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    eventually(
        WAIT,
        "the operator restores terminationGracePeriodSeconds",
        || async {
            let sts = statefulsets.get("meshery-broker").await.unwrap();
            sts.spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .termination_grace_period_seconds
                != Some(1)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if count.counts_requests() {
        let operator_applies: Vec<_> = cluster
            .writes_since(&count)
            .await
            .into_iter()
            .filter(|w| w.starts_with("apply statefulsets"))
            .collect();
        assert_eq!(
            operator_applies,
            [format!("apply statefulsets.apps {ns}/meshery-broker")],
            "exactly one apply restores drift"
        );
    } else {
        skip_notice(
            "counting the applies that restore drift: no request log (MESHERY_E2E_AUDIT_LOG)",
        );
    }

    // A child deleted by hand comes back.
    let configmaps = cluster.api::<ConfigMap>(&ns);
    configmaps
        .delete("meshery-broker-config", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "the config ConfigMap is recreated", || async {
        configmaps
            .get_opt("meshery-broker-config")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_to_three_renders_a_routed_cluster_and_back_prunes_the_pdb() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, _nats) = ready_broker().await;
    let pdbs = cluster.api::<PodDisruptionBudget>(&ns);
    assert!(
        pdbs.get_opt("meshery-broker").await.unwrap().is_none(),
        "no PDB for one replica"
    );

    cluster
        .apply_yaml::<Broker>(&broker_yaml(&ns).replace("size: 1", "size: 3"))
        .await;
    eventually(WAIT, "three replicas and a PDB", || async {
        let sts = cluster
            .api::<StatefulSet>(&ns)
            .get("meshery-broker")
            .await
            .unwrap();
        sts.spec.unwrap().replicas == Some(3)
            && pdbs.get_opt("meshery-broker").await.unwrap().is_some()
    })
    .await;
    let config = cluster
        .api::<ConfigMap>(&ns)
        .get("meshery-broker-config")
        .await
        .unwrap();
    let nats_conf = &config.data.unwrap()["nats.conf"];
    for ordinal in 0..3 {
        let route =
            format!("meshery-broker-{ordinal}.meshery-broker-headless.{ns}.svc.cluster.local:6222");
        assert!(
            nats_conf.contains(&route),
            "route to replica {ordinal} missing:\n{nats_conf}"
        );
    }
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;

    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    eventually(WAIT, "the PDB is pruned at one replica", || async {
        pdbs.get_opt("meshery-broker").await.unwrap().is_none()
    })
    .await;
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_type_change_updates_the_service_in_place() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, _nats) = ready_broker().await;
    let services = cluster.api::<Service>(&ns);
    let before = services.get("meshery-broker").await.unwrap();
    let count = cluster.count_writes(&[&ns]).await;

    cluster
        .apply_yaml::<Broker>(&broker_yaml(&ns).replace(
            "spec: {size: 1}",
            "spec: {size: 1, service: {type: ClusterIP}}",
        ))
        .await;
    // (Observed at the new generation: without a LoadBalancer implementation the external endpoint
    // was empty before the change too.)
    let broker = cluster
        .wait_for(&ns, "meshery-broker", WAIT, |b: &Broker| {
            b.status.as_ref().is_some_and(|s| {
                s.observed_generation == b.metadata.generation
                    && s.endpoint.as_ref().is_some_and(|e| e.external.is_empty())
            })
        })
        .await;
    assert_eq!(
        broker.status.unwrap().endpoint.unwrap().internal,
        format!("meshery-broker.{ns}.svc.cluster.local:4222")
    );
    let after = services.get("meshery-broker").await.unwrap();
    assert_eq!(after.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        before.metadata.uid, after.metadata.uid,
        "the Service was updated, not recreated"
    );
    let deletes: Vec<_> = cluster
        .writes_since(&count)
        .await
        .into_iter()
        .filter(|w| w.starts_with("delete") || w.ends_with(" deleted"))
        .collect();
    assert_eq!(deletes, Vec::<String>::new(), "nothing pruned");
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_degrades_after_the_grace_period_and_recovery_returns_ready() {
    if skip_whole_test_on_real_cluster(
        "the outage is a local nats-server stopped and restarted at the sim's LoadBalancer address; \
         a real broker's NATS pods are kept running by their StatefulSet",
    ) {
        return;
    }
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, nats) = ready_broker().await;
    let nats = nats.expect("a local nats-server against kube-sim");
    let address = nats.address;
    nats.stop();
    let degraded = cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Degraded, WAIT)
        .await;
    let status = degraded.status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BrokerUnreachable")
    );
    assert!(
        !ready
            .message
            .contains(&cluster.broker_token(&ns, "meshery-broker").await),
        "token in status"
    );

    let token = cluster.broker_token(&ns, "meshery-broker").await;
    let _nats = NatsServer::start(address, &token);
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    cluster.stop_operator().await;
}

/// A Ready Broker is probed at the probe interval, not only at the (here five-minute) resync: when
/// its NATS stops answering it is Degraded within the interval plus the grace period, and the
/// probes in between send no API writes. Prints the measured detection time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_broker_that_stops_answering_is_degraded_between_resyncs() {
    if skip_whole_test_on_real_cluster(
        "the outage is a local nats-server stopped at the sim's LoadBalancer address",
    ) {
        return;
    }
    let _addresses = NATS_ADDRESSES.lock().await;
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    let probe_interval = Duration::from_secs(2);
    let probe_grace = Duration::from_secs(3);
    cluster.start_operator(harness::Settings {
        resync_interval: Duration::from_secs(300),
        probe_interval,
        probe_grace,
        ..test_settings()
    });
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    let nats = start_nats_for(&cluster, &ns, "meshery-broker")
        .await
        .expect("a local nats-server against kube-sim");
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = cluster.count_writes(&[&ns]).await;
    tokio::time::sleep(probe_interval * 3).await;
    assert_eq!(
        cluster.writes_since(&count).await,
        Vec::<String>::new(),
        "probes that find the broker answering write nothing"
    );

    let stopped = std::time::Instant::now();
    nats.stop();
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Degraded, WAIT)
        .await;
    let detected = stopped.elapsed();
    eprintln!(
        "broker outage detected in {:.1} s (probe interval {probe_interval:?}, grace {probe_grace:?})",
        detected.as_secs_f64()
    );
    assert!(
        detected <= probe_interval + probe_grace + Duration::from_secs(7),
        "detected after {detected:?}"
    );
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_losing_readiness_degrades_and_recovers() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, _nats) = ready_broker().await;
    if !cluster
        .set_workload_ready(
            "statefulsets",
            &ns,
            "meshery-broker",
            false,
            "the whole test",
        )
        .await
    {
        return;
    }
    let degraded = cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Degraded, WAIT)
        .await;
    assert_eq!(
        condition(&degraded.status.unwrap().conditions, "Degraded").status,
        "True"
    );
    cluster
        .set_workload_ready("statefulsets", &ns, "meshery-broker", true, "recovery")
        .await;
    cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_in_one_namespace_do_not_interfere_and_deletion_collects_children() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, _nats) = ready_broker().await;
    let second = broker_yaml(&ns).replace("name: meshery-broker", "name: second-broker");
    cluster.apply_yaml::<Broker>(&second).await;
    let _second_nats = start_nats_for(&cluster, &ns, "second-broker").await;
    cluster
        .wait_for_broker_phase(&ns, "second-broker", Phase::Ready, WAIT)
        .await;
    let first = cluster
        .api::<Broker>(&ns)
        .get("meshery-broker")
        .await
        .unwrap();
    assert_eq!(
        first.status.unwrap().phase,
        Some(Phase::Ready),
        "the first broker is unaffected"
    );

    cluster
        .api::<Broker>(&ns)
        .delete("second-broker", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        WAIT,
        "the second broker's children are garbage-collected",
        || async {
            get_json(
                &cluster.client,
                "apps/v1",
                "statefulsets",
                &ns,
                "second-broker",
            )
            .await
            .is_none()
                && get_json(
                    &cluster.client,
                    "v1",
                    "configmaps",
                    &ns,
                    "second-broker-config",
                )
                .await
                .is_none()
        },
    )
    .await;
    assert!(
        get_json(
            &cluster.client,
            "apps/v1",
            "statefulsets",
            &ns,
            "meshery-broker"
        )
        .await
        .is_some()
    );
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_on_a_deployed_broker_degrades_and_leaves_children_alone() {
    let _addresses = NATS_ADDRESSES.lock().await;
    let (mut cluster, ns, _nats) = ready_broker().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = cluster.count_writes(&[&ns]).await;
    // Valid for the schema, invalid for the operator: three unclustered replicas.
    cluster
        .apply_yaml::<Broker>(&broker_yaml(&ns).replace(
            "spec: {size: 1}",
            "spec: {size: 3, clustering: {enabled: false}}",
        ))
        .await;
    let degraded = cluster
        .wait_for_broker_phase(&ns, "meshery-broker", Phase::Degraded, WAIT)
        .await;
    let ready = condition(&degraded.status.as_ref().unwrap().conditions, "Ready").clone();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("spec.clustering.enabled"),
        "{}",
        ready.message
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let child_writes: Vec<_> = cluster
        .writes_since(&count)
        .await
        .into_iter()
        .filter(|w| !w.contains("brokers") && !w.contains("events"))
        .collect();
    assert_eq!(
        child_writes,
        Vec::<String>::new(),
        "children untouched while the spec is invalid"
    );
    let sts = cluster
        .api::<StatefulSet>(&ns)
        .get("meshery-broker")
        .await
        .unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(1));
    cluster.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reconciles_without_writing() {
    let mut cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    let count = cluster.count_writes(&[&ns]).await;
    cluster.start_operator(harness::Settings {
        dry_run: true,
        ..test_settings()
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let written = cluster.writes_since(&count).await;
    assert_eq!(written, Vec::<String>::new(), "dry-run wrote");
    let broker = cluster
        .api::<Broker>(&ns)
        .get("meshery-broker")
        .await
        .unwrap();
    assert!(broker.status.is_none(), "dry-run wrote a status");
    cluster.stop_operator().await;
}
