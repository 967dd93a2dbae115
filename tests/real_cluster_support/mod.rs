//! Shared by the tests that drive the user's tools (`kubectl`, `helm`) and the operator binary as
//! the chart's Deployment runs it: the commands, the operator process, a kubeconfig for the chart's
//! ServiceAccount and, on a real cluster, taking the harness's release namespace away for an install
//! and putting it back afterwards (later suites of the same run expect it).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

use crate::harness::{
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, install_chart_rbac, rbac_mode, scaled,
};

/// The chart's cluster-scoped RBAC and the default MeshSync's (`meshery-meshsync-<ns>-<name>`).
const OPERATOR_CLUSTER_RBAC: &str = "meshery-operator";
const DEFAULT_MESHSYNC_CLUSTER_RBAC: &str = "meshery-meshsync-meshery-meshery-meshsync";

pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("kubectl is installed (scripts/install-and-test.sh installs it)")
}

/// `kubectl ARGS`, which must succeed: its stdout.
pub fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    succeeded("kubectl", args, kubectl(kubeconfig, args))
}

/// The stdout of a command that must have succeeded; else a panic with everything it printed.
pub fn succeeded(program: &str, args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "{program} {args:?} ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `--timeout=…` for `kubectl wait`: `timeout`, stretched on a real cluster.
pub fn kubectl_timeout(timeout: Duration) -> String {
    format!("--timeout={}s", scaled(timeout).as_secs())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of `GET path` on a local port, if something answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
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

/// The operator binary standing in for the Deployment's pod; its log is printed when the test fails.
pub struct Operator {
    child: Child,
    log: PathBuf,
    pub metrics_port: u16,
    pub health_port: u16,
}

impl Operator {
    /// Starts the operator binary as the `manager` container of `deployment` (as the API server
    /// returns it) would run: its args and env, the downward API resolved for `pod_name`,
    /// `KUBECONFIG` instead of the in-cluster config, metrics/health on free local ports, and
    /// `extra_args` replacing flags of the same name.
    pub fn start_as(
        deployment: &Value,
        kubeconfig: &Path,
        log: &Path,
        pod_name: &str,
        extra_args: &[&str],
    ) -> Operator {
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
        Operator {
            child: command.spawn().expect("starting the operator binary"),
            log: log.to_path_buf(),
            metrics_port,
            health_port,
        }
    }

    /// Waits until `/readyz` answers 200 (the caches are synced).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        while http_status(self.health_port, "/readyz") != Some(200) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the operator exited with {status}");
            }
            assert!(Instant::now() < deadline, "/readyz never answered 200");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as the kubelet stops the container: the operator exits 0 within the grace period.
    pub fn terminate(mut self) {
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
            eprintln!("operator log:\n{}", self.log());
        }
    }
}

/// The operator binary as the installed Deployment `meshery-operator` runs it (see
/// [`Operator::start_as`]), authenticated as the chart's ServiceAccount, its log in `dir`.
pub fn start_installed_operator(
    kubeconfig: &Path,
    dir: &Path,
    pod_name: &str,
    extra_args: &[&str],
) -> Operator {
    let deployment: Value = serde_json::from_str(&kubectl_ok(
        kubeconfig,
        &[
            "get",
            "deployment",
            "meshery-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            "json",
        ],
    ))
    .unwrap();
    Operator::start_as(
        &deployment,
        &service_account_kubeconfig(kubeconfig, dir),
        &dir.join("operator.log"),
        pod_name,
        extra_args,
    )
}

/// The README's check: both default CRs Ready (at their current generation: `kubectl wait` compares
/// the observed generation), within `timeout` (stretched on a real cluster).
pub fn wait_for_default_crs_ready(kubeconfig: &Path, timeout: Duration) {
    kubectl_ok(
        kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "broker/meshery-broker",
            "meshsync/meshery-meshsync",
            "-n",
            OPERATOR_NAMESPACE,
            &kubectl_timeout(timeout),
        ],
    );
}

/// A kubeconfig (written into `dir`) for the chart's ServiceAccount `meshery/meshery-operator`, on
/// the server of `admin`'s current context, with a TokenRequest token from `kubectl create token`:
/// what the operator's pod authenticates as, so the real authorizer applies the chart's RBAC.
pub fn service_account_kubeconfig(admin: &Path, dir: &Path) -> PathBuf {
    service_account_kubeconfig_for(admin, dir, OPERATOR_SERVICE_ACCOUNT)
}

/// [`service_account_kubeconfig`] for another ServiceAccount of the release namespace, written to
/// `<dir>/<service_account>.kubeconfig`.
pub fn service_account_kubeconfig_for(admin: &Path, dir: &Path, service_account: &str) -> PathBuf {
    let token = kubectl_ok(
        admin,
        &[
            "create",
            "token",
            service_account,
            "-n",
            OPERATOR_NAMESPACE,
            "--duration=2h",
        ],
    );
    let mut config: Value = serde_json::from_str(&kubectl_ok(
        admin,
        &[
            "config",
            "view",
            "--minify",
            "--flatten",
            "--raw",
            "-o",
            "json",
        ],
    ))
    .expect("kubectl config view prints JSON");
    config["users"] = json!([{"name": service_account, "user": {"token": token.trim()}}]);
    config["contexts"][0]["context"]["user"] = json!(service_account);
    let path = dir.join(format!("{service_account}.kubeconfig"));
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// The name of the pod the Deployment `meshery-operator` runs (on this cluster only reported
/// Running: the binary the test starts does its work under this name).
pub fn operator_pod_name(kubeconfig: &Path) -> String {
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    loop {
        let names = kubectl_ok(
            kubeconfig,
            &[
                "get",
                "pods",
                "-n",
                OPERATOR_NAMESPACE,
                "-l",
                "name=meshery-operator",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        );
        if let [name] = names.split_whitespace().collect::<Vec<_>>()[..] {
            return name.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no single operator pod: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An admin client for the cluster of `kubeconfig`.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let parsed = kube::config::Kubeconfig::read_from(kubeconfig).expect("a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .expect("a client configuration");
    Client::try_from(config).expect("a client")
}

/// Removes what installing the chart adds besides the CRDs — the release namespace `meshery` (with
/// the CRs, their children and Helm's release records in it), the operator's ClusterRole and
/// ClusterRoleBinding and the default MeshSync's — and waits until the namespace is gone: the
/// cluster as it was before the operator was installed, so an install starts from scratch.
pub async fn remove_operator_installation(client: &Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    ignore_not_found(
        namespaces
            .delete(OPERATOR_NAMESPACE, &Default::default())
            .await
            .map(|_| ()),
    );
    for name in [OPERATOR_CLUSTER_RBAC, DEFAULT_MESHSYNC_CLUSTER_RBAC] {
        let roles: Api<ClusterRole> = Api::all(client.clone());
        ignore_not_found(roles.delete(name, &Default::default()).await.map(|_| ()));
        let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
        ignore_not_found(bindings.delete(name, &Default::default()).await.map(|_| ()));
    }
    let timeout = scaled(Duration::from_secs(60));
    let deadline = Instant::now() + timeout;
    while namespaces
        .get_opt(OPERATOR_NAMESPACE)
        .await
        .expect("reading the release namespace")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "namespace {OPERATOR_NAMESPACE} still there after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn ignore_not_found(result: kube::Result<()>) {
    match result {
        Ok(()) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => panic!("deleting: {e}"),
    }
}

/// On drop — also when the test fails — replaces whatever the test left of the operator's
/// installation with the harness's state, which the suites run after this one in the same CI run
/// expect: the CRDs, and the release namespace `meshery` holding the chart's ServiceAccount and
/// RBAC (for the mode of `MESHERY_E2E_RBAC`), both server-side applied by field manager
/// `meshery-e2e`.
pub struct RestoreHarnessOnDrop {
    kubeconfig: PathBuf,
}

impl RestoreHarnessOnDrop {
    pub fn new(kubeconfig: &Path) -> RestoreHarnessOnDrop {
        RestoreHarnessOnDrop {
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }
}

impl Drop for RestoreHarnessOnDrop {
    fn drop(&mut self) {
        let kubeconfig = self.kubeconfig.clone();
        // Its own thread and runtime: the test's runtime may be unwinding.
        let restored = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let client = client_for(&kubeconfig).await;
                remove_operator_installation(&client).await;
                let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
                kubectl_ok(
                    &kubeconfig,
                    &[
                        "apply",
                        "--server-side",
                        "--field-manager=meshery-e2e",
                        "--force-conflicts",
                        "-f",
                        crds.to_str().unwrap(),
                    ],
                );
                install_chart_rbac(&client, &json!({"rbac": {"meshsyncGrants": rbac_mode()}}))
                    .await;
            });
        })
        .join();
        if restored.is_err() {
            eprintln!(
                "could not restore namespace {OPERATOR_NAMESPACE} with the chart's ServiceAccount and \
                 RBAC: later real-cluster suites will fail until it is"
            );
        }
    }
}
