//! `plan --cluster` against kube-sim: the real binary, pointed at the sim with `KUBECONFIG`, plans
//! the cluster's CRs against their live children with server-side dry-run applies — and never
//! writes (the sim's write log shows dry-run requests only).

mod harness;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use harness::{Cluster, Settings, get_json, test_settings, writes};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube_sim::Fault;
use meshery_operator::api::{Broker, MeshSync, Phase};
use meshery_operator::controller::BrokerProbeMode;
use meshery_operator::render::{DEFAULT_MESHSYNC_VERSION, DEFAULT_NATS_VERSION};

const BROKER: &str = "
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {name: meshery-broker, namespace: meshery}
spec: {size: 1}
";

const MESHSYNC: &str = "
apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {name: meshery-meshsync, namespace: meshery}
spec:
  broker:
    native: {name: meshery-broker}
";

const WAIT: Duration = Duration::from_secs(30);

/// Runs `meshery-operator plan --cluster ARGS` with the sim's kubeconfig, off the async runtime
/// (the sim serves on it).
async fn plan_cluster(kubeconfig: &Path, args: &[&str]) -> Output {
    let kubeconfig = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
            .args(["plan", "--cluster"])
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("NO_COLOR", "1")
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("the plan process finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn summary(output: &Output) -> String {
    stdout(output)
        .lines()
        .rev()
        .find(|l| l.starts_with("Plan: "))
        .unwrap_or_else(|| panic!("no summary in:\n{}", stdout(output)))
        .to_string()
}

/// The numbers in `Plan: C to create, U to update, P to prune, N unchanged.`
fn counts(output: &Output) -> [usize; 4] {
    let numbers: Vec<usize> = summary(output)
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    numbers.try_into().expect("four counts")
}

/// The operator's settings with the default image versions `plan` renders with.
fn settings() -> Settings {
    Settings {
        broker_probe: BrokerProbeMode::Off,
        nats_version: DEFAULT_NATS_VERSION.into(),
        meshsync_version: DEFAULT_MESHSYNC_VERSION.into(),
        ..test_settings()
    }
}

/// A cluster with a Broker and a MeshSync CR and nothing else: the operator has not run.
async fn cluster_with_crs() -> Cluster {
    let cluster = Cluster::start().await;
    cluster.create_namespace("meshery").await;
    cluster.apply_yaml::<Broker>(BROKER).await;
    cluster.apply_yaml::<MeshSync>(MESHSYNC).await;
    cluster
}

/// Runs the operator in-process until both CRs are Ready and the children stop changing, then stops it.
async fn converge(cluster: &mut Cluster) {
    cluster.start_operator(settings());
    cluster
        .wait_for_broker_phase("meshery", "meshery-broker", Phase::Ready, WAIT)
        .await;
    cluster
        .wait_for_meshsync_phase("meshery", "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop_operator().await;
}

fn dry_run_writes(cluster: &Cluster) -> usize {
    cluster
        .sim
        .stats()
        .writes
        .iter()
        .filter(|w| w.dry_run)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_operator_ran_every_child_is_a_create_and_nothing_is_written() {
    let mut cluster = cluster_with_crs().await;
    cluster.sim.reset_stats();

    let output = plan_cluster(cluster.sim.kubeconfig_path(), &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}\n{}", stderr(&output));
    for line in [
        "# Broker meshery/meshery-broker",
        "# MeshSync meshery/meshery-meshsync",
        "+ create Secret meshery/meshery-broker-auth",
        "+ create StatefulSet.apps meshery/meshery-broker",
        "+ create Deployment.apps meshery/meshery-meshsync",
        "+ create ClusterRole.rbac.authorization.k8s.io ",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let [create, update, prune, unchanged] = counts(&output);
    assert!(create > 5, "{text}");
    assert_eq!((update, prune, unchanged), (0, 0, 0), "{text}");
    // Creates are shown as the server would store them: with its defaults filled in.
    assert!(
        text.contains("revisionHistoryLimit"),
        "server defaults missing:\n{text}"
    );
    assert_eq!(writes(&cluster.sim), Vec::<String>::new(), "real writes");
    assert_eq!(
        dry_run_writes(&cluster),
        create,
        "one dry-run apply per create"
    );

    // Once the operator has run, the same cluster plans to nothing — with as many objects
    // unchanged as were to be created.
    converge(&mut cluster).await;
    cluster.sim.reset_stats();
    let output = plan_cluster(cluster.sim.kubeconfig_path(), &[]).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert_eq!(
        summary(&output),
        format!("Plan: 0 to create, 0 to update, 0 to prune, {create} unchanged.")
    );
    assert_eq!(writes(&cluster.sim), Vec::<String>::new(), "real writes");
    assert_eq!(dry_run_writes(&cluster), 0, "nothing to dry-run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_shows_exactly_that_update_and_changes_nothing() {
    let mut cluster = cluster_with_crs().await;
    converge(&mut cluster).await;
    let converged = plan_cluster(cluster.sim.kubeconfig_path(), &[]).await;
    assert_eq!(converged.status.code(), Some(0), "{}", stdout(&converged));
    let [_, _, _, total] = counts(&converged);

    // Another client changes a field the operator owns.
    let edit =
        serde_json::json!({"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}}});
    cluster
        .api::<StatefulSet>("meshery")
        .patch(
            "meshery-broker",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    cluster.sim.reset_stats();

    let output = plan_cluster(cluster.sim.kubeconfig_path(), &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}\n{}", stderr(&output));
    assert_eq!(
        summary(&output),
        format!(
            "Plan: 0 to create, 1 to update, 0 to prune, {} unchanged.",
            total - 1
        )
    );
    assert!(
        text.contains("~ update StatefulSet.apps meshery/meshery-broker"),
        "{text}"
    );
    assert!(
        text.contains("changed: spec.template.spec.terminationGracePeriodSeconds"),
        "{text}"
    );
    // The diff is observed → what the dry-run apply would store: the edit reverted, nothing else.
    let changed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .collect();
    assert_eq!(
        changed.len(),
        2,
        "one line out, one line in: {changed:#?}\n{text}"
    );
    assert!(
        changed[0].contains("terminationGracePeriodSeconds: 1"),
        "{changed:?}"
    );
    assert!(
        changed[1].contains("terminationGracePeriodSeconds:"),
        "{changed:?}"
    );
    assert!(!text.contains("resourceVersion"), "{text}");

    assert_eq!(writes(&cluster.sim), Vec::<String>::new(), "real writes");
    assert_eq!(dry_run_writes(&cluster), 1, "one dry-run apply");
    let live = get_json(
        &cluster.client,
        "apps/v1",
        "statefulsets",
        "meshery",
        "meshery-broker",
    )
    .await
    .unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 1,
        "the drift is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_any_output_format() {
    let mut cluster = cluster_with_crs().await;
    converge(&mut cluster).await;
    let token = cluster.broker_token("meshery", "meshery-broker").await;
    // Drift on the auth Secret itself, so its data is part of the diff.
    let edit = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/name": "edited"}}});
    cluster
        .api::<Secret>("meshery")
        .patch(
            "meshery-broker-auth",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    let encoded = get_json(
        &cluster.client,
        "v1",
        "secrets",
        "meshery",
        "meshery-broker-auth",
    )
    .await
    .unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    cluster.sim.reset_stats();

    for format in ["diff", "patch", "json"] {
        let output = plan_cluster(cluster.sim.kubeconfig_path(), &["-o", format, "-v"]).await;
        let (out, err) = (stdout(&output), stderr(&output));
        assert_eq!(output.status.code(), Some(1), "-o {format}: {out}\n{err}");
        assert!(
            out.contains("meshery-broker-auth"),
            "-o {format} shows the Secret:\n{out}"
        );
        for secret in [&token, &encoded] {
            assert!(
                !out.contains(secret.as_str()) && !err.contains(secret.as_str()),
                "-o {format} leaks the token:\n{out}\n{err}"
            );
        }
    }
    assert_eq!(writes(&cluster.sim), Vec::<String>::new(), "real writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_server_refuses_is_an_error_for_that_object() {
    let cluster = cluster_with_crs().await;
    cluster.sim.reset_stats();
    cluster.sim.inject(Fault::status(
        Some("patch"),
        "/statefulsets/meshery-broker",
        403,
    ));
    let output = plan_cluster(cluster.sim.kubeconfig_path(), &[]).await;
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(2), "{out}\n{err}");
    let refused = out
        .lines()
        .skip_while(|l| !l.starts_with("+ create StatefulSet.apps meshery/meshery-broker"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        refused.contains("! error: the API server refuses this write") && refused.contains("403"),
        "{out}"
    );
    assert_eq!(
        out.matches("! error:").count(),
        1,
        "only that object: {out}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: the API server would refuse 1 planned write(s): StatefulSet.apps meshery/meshery-broker: "),
        "{err}"
    );
    let json = plan_cluster(cluster.sim.kubeconfig_path(), &["-o", "json"]).await;
    assert_eq!(json.status.code(), Some(1), "the fault fired once");
    assert_eq!(writes(&cluster.sim), Vec::<String>::new(), "real writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scopes_the_plan() {
    let cluster = cluster_with_crs().await;
    let output = plan_cluster(cluster.sim.kubeconfig_path(), &["--namespace", "other"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        summary(&output),
        "Plan: 0 to create, 0 to update, 0 to prune, 0 unchanged."
    );
    let output = plan_cluster(cluster.sim.kubeconfig_path(), &["-n", "meshery"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_context_or_an_unreachable_cluster_is_a_one_line_error() {
    let cluster = Cluster::start().await;
    let output = plan_cluster(cluster.sim.kubeconfig_path(), &["--context", "nope"]).await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: loading kubeconfig context \"nope\""),
        "{err}"
    );
    assert!(stdout(&output).is_empty());

    let output = plan_cluster(cluster.sim.kubeconfig_path(), &["--context", "kube-sim"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // Nothing listens on the address the kubeconfig names.
    let dir = tempfile::tempdir().unwrap();
    let unreachable = dir.path().join("kubeconfig");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let text = std::fs::read_to_string(cluster.sim.kubeconfig_path())
        .unwrap()
        .replace(&cluster.sim.url(), &format!("http://{address}"));
    std::fs::write(&unreachable, text).unwrap();
    let output = plan_cluster(&unreachable, &[]).await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot reach the cluster at http://{address}/"
        )),
        "{err}"
    );
}

#[test]
fn cluster_conflicts_with_files_and_files_are_required_without_it() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
            .arg("plan")
            .args(args)
            .output()
            .unwrap()
    };
    let output = run(&["--cluster", "-f", "x.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot be used with"),
        "{}",
        stderr(&output)
    );
    let output = run(&["--cluster", "--observed", "x.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--filename"),
        "{}",
        stderr(&output)
    );
    let output = run(&["-f", "x.yaml", "--context", "c"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--cluster"), "{}", stderr(&output));
}
