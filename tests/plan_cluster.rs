//! `plan --cluster` against a live cluster — kube-sim, or with `MESHERY_E2E_KUBECONFIG` that real
//! cluster: the real binary, pointed at it with `KUBECONFIG`, plans the cluster's CRs against their
//! live children with server-side dry-run applies, and never writes. Against kube-sim its write log
//! shows dry-run requests only; on a real cluster every object in the test's namespace keeps its
//! resourceVersion, the CRs live in a per-test namespace and each plan is scoped to it (`-n`: other
//! namespaces are not the test's), and a write the server refuses is refused by a
//! ValidatingAdmissionPolicy instead of an injected fault. Only counting the dry-run requests is
//! kube-sim's alone.

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use harness::{
    Cluster, Settings, changed_objects, eventually, get_json, scaled, test_settings, writes,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube_sim::{Fault, Sim};
use meshery_operator::api::{Broker, MeshSync, Phase};
use meshery_operator::controller::BrokerProbeMode;
use meshery_operator::render::{DEFAULT_MESHSYNC_VERSION, DEFAULT_NATS_VERSION};

fn broker_yaml(namespace: &str) -> String {
    format!(
        "
apiVersion: meshery.io/v1alpha1
kind: Broker
metadata: {{name: meshery-broker, namespace: {namespace}}}
spec: {{size: 1}}
"
    )
}

fn meshsync_yaml(namespace: &str) -> String {
    format!(
        "
apiVersion: meshery.io/v1alpha1
kind: MeshSync
metadata: {{name: meshery-meshsync, namespace: {namespace}}}
spec:
  broker:
    native: {{name: meshery-broker}}
"
    )
}

const WAIT: Duration = Duration::from_secs(30);

/// Runs `meshery-operator plan --cluster ARGS` with `kubeconfig`, off the async runtime (kube-sim
/// serves on it).
async fn plan_with(kubeconfig: &Path, args: &[&str]) -> Output {
    let kubeconfig = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
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

/// `plan --cluster ARGS` as the user runs it against `cluster` (with its admin kubeconfig); on a
/// real cluster scoped to the test's namespace `ns`.
async fn plan(cluster: &Cluster, ns: &str, args: &[&str]) -> Output {
    let mut args = args.to_vec();
    if cluster.is_real() {
        args.extend(["-n", ns]);
    }
    plan_with(cluster.kubeconfig_path(), &args).await
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
        go_operator_namespace: "meshery".into(),
        ..test_settings()
    }
}

/// A cluster with a Broker and a MeshSync CR in namespace `meshery` (a per-test one on a real
/// cluster, returned) and nothing else: the operator has not run.
async fn cluster_with_crs() -> (Cluster, String) {
    let cluster = Cluster::start().await;
    let ns = cluster.create_ns("meshery").await;
    cluster.apply_yaml::<Broker>(&broker_yaml(&ns)).await;
    cluster.apply_yaml::<MeshSync>(&meshsync_yaml(&ns)).await;
    (cluster, ns)
}

/// Runs the operator in-process until both CRs are Ready and the children stop changing, then stops it.
async fn converge(cluster: &mut Cluster, ns: &str) {
    cluster.start_operator(settings());
    cluster
        .wait_for_broker_phase(ns, "meshery-broker", Phase::Ready, WAIT)
        .await;
    cluster
        .wait_for_meshsync_phase(ns, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop_operator().await;
}

fn dry_run_writes(sim: &Sim) -> usize {
    sim.stats().writes.iter().filter(|w| w.dry_run).count()
}

/// What "nothing was written from now on" is checked against.
enum WriteCheck {
    /// kube-sim's request log, reset when the check starts.
    RequestLog,
    /// On a real cluster: the resourceVersions of everything in the test's namespace.
    ResourceVersions(BTreeMap<String, String>),
}

impl WriteCheck {
    async fn start(cluster: &Cluster, ns: &str) -> WriteCheck {
        match cluster.sim() {
            Some(sim) => {
                sim.reset_stats();
                WriteCheck::RequestLog
            }
            None => WriteCheck::ResourceVersions(settled_resource_versions(cluster, ns).await),
        }
    }

    async fn assert_nothing_written(&self, cluster: &Cluster, ns: &str) {
        match self {
            WriteCheck::RequestLog => {
                assert_eq!(writes(&cluster.sim), Vec::<String>::new(), "real writes")
            }
            WriteCheck::ResourceVersions(before) => assert_eq!(
                changed_objects(before, &cluster.resource_versions(&[ns]).await),
                Vec::<String>::new(),
                "objects written"
            ),
        }
    }
}

/// The resourceVersions in `ns` once they stayed the same for 2 s: the cluster's own controllers
/// (a StatefulSet rollout after an edit, workload status) have finished what a change started.
async fn settled_resource_versions(cluster: &Cluster, ns: &str) -> BTreeMap<String, String> {
    let timeout = scaled(WAIT);
    let deadline = Instant::now() + timeout;
    let mut last = cluster.resource_versions(&[ns]).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = cluster.resource_versions(&[ns]).await;
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "still changing after {timeout:?}: {:?}",
            changed_objects(&last, &now)
        );
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_operator_ran_every_child_is_a_create_and_nothing_is_written() {
    let (mut cluster, ns) = cluster_with_crs().await;
    let check = WriteCheck::start(&cluster, &ns).await;

    let output = plan(&cluster, &ns, &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}\n{}", stderr(&output));
    for line in [
        format!("# Broker {ns}/meshery-broker"),
        format!("# MeshSync {ns}/meshery-meshsync"),
        format!("+ create Secret {ns}/meshery-broker-auth"),
        format!("+ create StatefulSet.apps {ns}/meshery-broker"),
        format!("+ create Deployment.apps {ns}/meshery-meshsync"),
        "+ create ClusterRole.rbac.authorization.k8s.io ".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    let [create, update, prune, unchanged] = counts(&output);
    assert!(create > 5, "{text}");
    assert_eq!((update, prune, unchanged), (0, 0, 0), "{text}");
    // Creates are shown as the server would store them: with its defaults filled in.
    assert!(
        text.contains("revisionHistoryLimit"),
        "server defaults missing:\n{text}"
    );
    check.assert_nothing_written(&cluster, &ns).await;
    if let Some(sim) =
        cluster.require_sim("counting the dry-run applies needs kube-sim's request log")
    {
        assert_eq!(dry_run_writes(sim), create, "one dry-run apply per create");
    }

    // Once the operator has run, the same cluster plans to nothing — with as many objects
    // unchanged as were to be created.
    converge(&mut cluster, &ns).await;
    let check = WriteCheck::start(&cluster, &ns).await;
    let output = plan(&cluster, &ns, &[]).await;
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
    check.assert_nothing_written(&cluster, &ns).await;
    if let Some(sim) =
        cluster.require_sim("counting the dry-run applies needs kube-sim's request log")
    {
        assert_eq!(dry_run_writes(sim), 0, "nothing to dry-run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_shows_exactly_that_update_and_changes_nothing() {
    let (mut cluster, ns) = cluster_with_crs().await;
    converge(&mut cluster, &ns).await;
    let converged = plan(&cluster, &ns, &[]).await;
    assert_eq!(converged.status.code(), Some(0), "{}", stdout(&converged));
    let [_, _, _, total] = counts(&converged);

    // Another client changes a field the operator owns.
    let edit =
        serde_json::json!({"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}}});
    cluster
        .api::<StatefulSet>(&ns)
        .patch(
            "meshery-broker",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    // The StatefulSet controller answers the edit by rolling the pod and writing status
    // (observedGeneration, revisions, updatedReplicas); a plan made meanwhile would diff against a
    // status that moves between its read and its dry run.
    eventually(
        WAIT,
        "the StatefulSet controller rolled out the edit",
        || async {
            let sts = cluster
                .api::<StatefulSet>(&ns)
                .get("meshery-broker")
                .await
                .unwrap();
            let replicas = sts.spec.as_ref().and_then(|s| s.replicas);
            sts.status.is_some_and(|s| {
                s.observed_generation == sts.metadata.generation
                    && s.update_revision.is_some()
                    && s.update_revision == s.current_revision
                    && s.updated_replicas == replicas
                    && s.ready_replicas == replicas
            })
        },
    )
    .await;
    let check = WriteCheck::start(&cluster, &ns).await;

    let output = plan(&cluster, &ns, &[]).await;
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
        text.contains(&format!("~ update StatefulSet.apps {ns}/meshery-broker")),
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

    check.assert_nothing_written(&cluster, &ns).await;
    if let Some(sim) =
        cluster.require_sim("counting the dry-run applies needs kube-sim's request log")
    {
        assert_eq!(dry_run_writes(sim), 1, "one dry-run apply");
    }
    let live = get_json(
        &cluster.client,
        "apps/v1",
        "statefulsets",
        &ns,
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
    let (mut cluster, ns) = cluster_with_crs().await;
    converge(&mut cluster, &ns).await;
    let token = cluster.broker_token(&ns, "meshery-broker").await;
    // Drift on the auth Secret itself, so its data is part of the diff.
    let edit = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/name": "edited"}}});
    cluster
        .api::<Secret>(&ns)
        .patch(
            "meshery-broker-auth",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    let encoded = get_json(&cluster.client, "v1", "secrets", &ns, "meshery-broker-auth")
        .await
        .unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let check = WriteCheck::start(&cluster, &ns).await;

    for format in ["diff", "patch", "json"] {
        let output = plan(&cluster, &ns, &["-o", format, "-v"]).await;
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
    check.assert_nothing_written(&cluster, &ns).await;
}

/// On a real cluster: a ValidatingAdmissionPolicy that refuses (403 Forbidden) every create and
/// update of the StatefulSet `meshery-broker` in one namespace — the API server refusing a write
/// for real; removed on drop.
struct AdmissionRefusal {
    kubeconfig: PathBuf,
    manifest: tempfile::NamedTempFile,
}

impl AdmissionRefusal {
    fn install(kubeconfig: &Path, namespace: &str) -> AdmissionRefusal {
        let name = format!("refuse-broker-statefulset-{namespace}");
        let manifest = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            manifest.path(),
            format!(
                "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [apps]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [statefulsets]
  validations:
    - expression: \"object.metadata.name != 'meshery-broker'\"
      reason: Forbidden
      message: this test refuses the Broker's StatefulSet
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {namespace}}}
"
            ),
        )
        .unwrap();
        let refusal = AdmissionRefusal {
            kubeconfig: kubeconfig.to_path_buf(),
            manifest,
        };
        refusal.kubectl(&["apply", "--server-side"]);
        refusal
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let output = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .arg("-f")
            .arg(self.manifest.path())
            .output()
            .expect("kubectl is installed");
        assert!(
            output.status.success() || std::thread::panicking(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for AdmissionRefusal {
    fn drop(&mut self) {
        self.kubectl(&["delete", "--ignore-not-found"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_server_refuses_is_an_error_for_that_object() {
    let (cluster, ns) = cluster_with_crs().await;
    let check = WriteCheck::start(&cluster, &ns).await;
    let (output, refusal) = match cluster.sim() {
        Some(sim) => {
            sim.inject(Fault::status(
                Some("patch"),
                "/statefulsets/meshery-broker",
                403,
            ));
            (plan(&cluster, &ns, &[]).await, None)
        }
        None => {
            let refusal = tokio::task::block_in_place(|| {
                AdmissionRefusal::install(cluster.kubeconfig_path(), &ns)
            });
            // The API server enforces a new policy within a few seconds.
            let deadline = Instant::now() + scaled(Duration::from_secs(10));
            loop {
                let output = plan(&cluster, &ns, &[]).await;
                if output.status.code() == Some(2) || Instant::now() > deadline {
                    break (output, Some(refusal));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(2), "{out}\n{err}");
    let refused = out
        .lines()
        .skip_while(|l| !l.starts_with(&format!("+ create StatefulSet.apps {ns}/meshery-broker")))
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
        err.starts_with(&format!(
            "error: the API server would refuse 1 planned write(s): StatefulSet.apps {ns}/meshery-broker: "
        )),
        "{err}"
    );
    // Once the server accepts the write again (the injected fault fired once; the policy is
    // removed), the plan is an ordinary one.
    tokio::task::block_in_place(|| drop(refusal));
    eventually(
        Duration::from_secs(10),
        "plan -o json exits 1 (changes, no errors)",
        || async { plan(&cluster, &ns, &["-o", "json"]).await.status.code() == Some(1) },
    )
    .await;
    check.assert_nothing_written(&cluster, &ns).await;
}

/// One invalid CR in the cluster is reported (with its fields, as the operator's `InvalidSpec`)
/// and the others are still planned; it used to abort the whole plan with exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cr_is_reported_and_the_others_are_planned() {
    let (cluster, ns) = cluster_with_crs().await;
    cluster
        .apply_yaml::<Broker>(
            &broker_yaml(&ns)
                .replace("name: meshery-broker", "name: unclustered")
                .replace(
                    "spec: {size: 1}",
                    "spec: {size: 3, clustering: {enabled: false}}",
                ),
        )
        .await;
    let output = plan(&cluster, &ns, &[]).await;
    let (text, errors) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{text}\n{errors}");
    assert!(
        text.contains(&format!("+ create StatefulSet.apps {ns}/meshery-broker")),
        "the valid Broker is planned:\n{text}"
    );
    assert!(
        !text.contains(&format!("{ns}/unclustered")),
        "nothing planned for the invalid one:\n{text}"
    );
    assert!(
        errors.contains(&format!("Broker {ns}/unclustered is invalid"))
            && errors.contains("spec.clustering.enabled")
            && errors.contains("InvalidSpec"),
        "{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scopes_the_plan() {
    let (cluster, ns) = cluster_with_crs().await;
    let other = cluster.ns("other");
    let output = plan_with(cluster.kubeconfig_path(), &["--namespace", &other]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        summary(&output),
        "Plan: 0 to create, 0 to update, 0 to prune, 0 unchanged."
    );
    let output = plan_with(cluster.kubeconfig_path(), &["-n", &ns]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

/// `kubeconfig` parsed (kubeconfigs are YAML, or JSON, which is YAML too).
fn read_kubeconfig(kubeconfig: &Path) -> serde_json::Value {
    serde_norway::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).expect("a kubeconfig")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_context_or_an_unreachable_cluster_is_a_one_line_error() {
    let cluster = Cluster::start().await;
    let output = plan_with(cluster.kubeconfig_path(), &["--context", "nope"]).await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: loading kubeconfig context \"nope\""),
        "{err}"
    );
    assert!(stdout(&output).is_empty());

    let mut kubeconfig = read_kubeconfig(cluster.kubeconfig_path());
    let context = kubeconfig["current-context"]
        .as_str()
        .expect("a current context")
        .to_string();
    let output = plan(&cluster, &cluster.ns("meshery"), &["--context", &context]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // Nothing listens on the address the kubeconfig names.
    let dir = tempfile::tempdir().unwrap();
    let unreachable = dir.path().join("kubeconfig");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    for entry in kubeconfig["clusters"].as_array_mut().expect("clusters") {
        entry["cluster"]["server"] = format!("http://{address}").into();
    }
    std::fs::write(&unreachable, kubeconfig.to_string()).unwrap();
    let output = plan_with(&unreachable, &[]).await;
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
