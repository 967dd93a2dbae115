//! The chart installed as a user would: rendered by real Helm, applied with real
//! `kubectl apply --server-side` to kube-sim (CRDs first, as Helm installs `crds/`), then the
//! operator binary started with exactly the rendered Deployment's command, args and env (the
//! downward API resolved, KUBECONFIG instead of the in-cluster config) brings the default Broker
//! and MeshSync to Ready.

mod chart_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chart_support::{get, render, render_yaml, repo};
use kube_sim::{LoadBalancerMode, Sim, SimOptions};
use serde_json::{Value, json};

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("kubectl is installed (scripts/install-and-test.sh installs it)")
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let output = kubectl(kubeconfig, args);
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The operator process; its log is printed when the test fails.
struct Operator {
    child: Child,
    log: std::path::PathBuf,
}

impl Operator {
    /// SIGTERM, as the kubelet stops the container: the operator exits 0 within the grace period.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the operator exited with {status} on SIGTERM"
                );
                return;
            }
            assert!(Instant::now() < deadline, "the operator ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "operator log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Starts the operator binary as the rendered Deployment's `manager` container would run, with
/// the metrics/health listeners on free local ports (returned) and `extra_args` appended.
fn start_operator(
    deployment: &Value,
    kubeconfig: &Path,
    log: &Path,
    pod_name: &str,
    extra_args: &[&str],
) -> (Operator, u16, u16) {
    let manager = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(manager["name"], "manager");
    assert_eq!(manager["command"], json!(["/meshery-operator"]));
    let (metrics_port, health_port) = (free_port(), free_port());
    let mut args: Vec<String> = manager["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .map(|arg| {
            if arg.starts_with("--metrics-addr=") {
                format!("--metrics-addr=127.0.0.1:{metrics_port}")
            } else if arg.starts_with("--health-addr=") {
                format!("--health-addr=127.0.0.1:{health_port}")
            } else {
                arg
            }
        })
        .collect();
    for extra in extra_args {
        let flag = extra.split('=').next().unwrap();
        args.retain(|a| a.split('=').next() != Some(flag));
        args.push(extra.to_string());
    }
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshery-operator"));
    command
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for var in manager["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => pod_name.to_string(),
            Some("metadata.namespace") => namespace.to_string(),
            Some(other) => panic!("unexpected downward API field {other}"),
            None => var["value"].as_str().unwrap().to_string(),
        };
        command.env(name, value);
    }
    let child = command.spawn().expect("starting the operator binary");
    let operator = Operator {
        child,
        log: log.to_path_buf(),
    };
    (operator, metrics_port, health_port)
}

async fn sim() -> Sim {
    Sim::start(SimOptions {
        load_balancer: LoadBalancerMode::Loopback,
        ready_after: Duration::from_millis(300),
        crds_dir: None,
        ..SimOptions::default()
    })
    .await
    .expect("kube-sim starts")
}

fn write(dir: &Path, name: &str, yaml: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_rendered_chart_applied_with_kubectl_runs_the_default_crs_to_ready() {
    let sim = sim().await;
    let kubeconfig = sim.kubeconfig_path().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let crds = repo().join("crds");
    tokio::task::block_in_place(|| {
        // helm install: CRDs from crds/ first, then the namespace (--create-namespace), then the templates.
        kubectl_ok(
            &kubeconfig,
            &["apply", "--server-side", "-f", crds.to_str().unwrap()],
        );
        kubectl_ok(
            &kubeconfig,
            &[
                "wait",
                "--for=condition=Established",
                "crd/brokers.meshery.io",
                "crd/meshsyncs.meshery.io",
                "--timeout=30s",
            ],
        );
        let namespace = write(
            dir.path(),
            "namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: meshery}\n",
        );
        kubectl_ok(&kubeconfig, &["apply", "--server-side", "-f", &namespace]);

        // The default CRs and every other rendered object pass the API server's validation
        // (the CRDs' schemas) in a server-side dry run, for default and non-default values.
        for values in [
            None,
            Some(json!({"meshery-broker": {"service": {"type": "NodePort"}, "size": 3}})),
            Some(json!({
                "leaderElection": {"enabled": false},
                "image": {"repository": "registry.example.com/operator", "tag": "v1.2.3"},
                "meshery-broker": {"enabled": false},
                "meshery-meshsync": {"enabled": false},
            })),
        ] {
            let file = write(dir.path(), "dry-run.yaml", &render_yaml(values.as_ref()));
            let out = kubectl_ok(
                &kubeconfig,
                &["apply", "--server-side", "--dry-run=server", "-f", &file],
            );
            assert!(
                out.contains(
                    "deployment.apps/meshery-operator serverside-applied (server dry run)"
                ),
                "{out}"
            );
        }
        // The kubectl users' manifest too.
        let manifest = repo().join("deploy/meshery-operator.yaml");
        let out = kubectl_ok(
            &kubeconfig,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-f",
                manifest.to_str().unwrap(),
            ],
        );
        assert!(
            out.contains("namespace/meshery serverside-applied (server dry run)"),
            "{out}"
        );
        // …and the schema is really applied: a Broker of size 0 is rejected.
        let mut invalid = get(&render(None), "Broker", "meshery-broker").clone();
        invalid["spec"]["size"] = json!(0);
        let file = write(
            dir.path(),
            "invalid.yaml",
            &serde_json::to_string(&invalid).unwrap(),
        );
        let rejected = kubectl(
            &kubeconfig,
            &["apply", "--server-side", "--dry-run=server", "-f", &file],
        );
        assert!(!rejected.status.success(), "size 0 accepted");

        // The real apply of the default render.
        let file = write(dir.path(), "chart.yaml", &render_yaml(None));
        let out = kubectl_ok(
            &kubeconfig,
            &[
                "apply",
                "--server-side",
                "--field-manager=helm",
                "-f",
                &file,
            ],
        );
        for line in [
            "serviceaccount/meshery-operator serverside-applied",
            "clusterrole.rbac.authorization.k8s.io/meshery-operator serverside-applied",
            "role.rbac.authorization.k8s.io/meshery-operator-leader-election serverside-applied",
            "deployment.apps/meshery-operator serverside-applied",
            "broker.meshery.io/meshery-broker serverside-applied",
            "meshsync.meshery.io/meshery-meshsync serverside-applied",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        // The seeds' troubleshooting selector finds the operator.
        let names = kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "deployments",
                "-n",
                "meshery",
                "-l",
                "name=meshery-operator",
                "-o",
                "name",
            ],
        );
        assert_eq!(names.trim(), "deployment.apps/meshery-operator");
    });

    // The operator as the Deployment runs it (NATS is not reachable here: probe off).
    let installed: Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "deployment",
                "meshery-operator",
                "-n",
                "meshery",
                "-o",
                "json",
            ],
        )
    }))
    .unwrap();
    let pod_name = "meshery-operator-5c7d8f9b6-x2x7q";
    let log = dir.path().join("operator.log");
    let (operator, metrics_port, health_port) = start_operator(
        &installed,
        &kubeconfig,
        &log,
        pod_name,
        &["--broker-probe=off"],
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(health_port, "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "/readyz never answered 200");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(http_status(health_port, "/healthz"), Some(200));
    assert_eq!(http_status(metrics_port, "/metrics"), Some(200));

    tokio::task::block_in_place(|| {
        kubectl_ok(
            &kubeconfig,
            &[
                "wait",
                "--for=condition=Ready",
                "broker/meshery-broker",
                "meshsync/meshery-meshsync",
                "-n",
                "meshery",
                "--timeout=60s",
            ],
        );
        let phases = kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "brokers,meshsyncs",
                "-n",
                "meshery",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
        );
        assert_eq!(
            phases.split_whitespace().collect::<Vec<_>>(),
            ["Ready", "Ready"]
        );
        // Leader election ran in the release namespace with the pod's name as identity.
        let holder = kubectl_ok(
            &kubeconfig,
            &[
                "get",
                "lease",
                "meshery-operator",
                "-n",
                "meshery",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        );
        assert_eq!(holder, pod_name);
        operator.terminate();
    });
    // Structured logs, as --log-format=json asks.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with('{') && l.contains("\"level\"")),
        "{log}"
    );
    drop(sim);
}
