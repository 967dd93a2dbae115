//! Starting and stopping the control plane: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and the node agent, all on loopback with ports of their own.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::oneshot;

use crate::binaries::Binaries;
use crate::pki::{Credential, Pki};
use crate::process_node::{KubeletTls, NodeOptions, ProcessNode};
use crate::runtime::PodNetwork;
use crate::{Error, io_error, node};

/// The ClusterIP range of Services; only allocated, never routed.
const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's ClusterIP (the range's first address), named in the serving certificate.
const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The issuer and audience of service-account tokens, as on a kubeadm cluster.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The controllers a cluster needs for what the operator renders: workloads, their pods'
/// service accounts and tokens, garbage collection, namespace deletion, endpoints, PDBs and
/// the aggregated ClusterRoles; node lifecycle lifts the not-ready taint that admission puts on
/// a new Node once it reports Ready.
const CONTROLLERS: &str = "garbagecollector,namespace,deployment,replicaset,statefulset,endpoint,\
endpointslice,serviceaccount,serviceaccount-token,root-ca-cert-publisher,disruption,\
clusterrole-aggregation,podgc,nodelifecycle,persistentvolume-binder";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to start the control plane.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The Go binaries; `None` runs `build.sh` (which builds nothing when the cache is warm).
    pub binaries: Option<Binaries>,
    /// Where the API server writes its audit log (metadata level, every request), if anywhere.
    pub audit_log: Option<PathBuf>,
    /// Run the pods' containers as processes (images the node knows), each pod in a network
    /// namespace of its own; otherwise pods are only reported running.
    pub run_pods: bool,
}

/// A running control plane. Dropping it stops every process and deletes its state.
///
/// The processes are started from a supervisor thread of its own and die with it
/// (`PR_SET_PDEATHSIG`), so even a test runner that is killed leaves none behind.
pub struct ControlPlane {
    server: String,
    etcd_url: String,
    kubeconfig: String,
    state_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    supervisor: Option<std::thread::JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts the control plane and returns once the API server's `/readyz` answers `ok`, the
    /// node is registered and Ready with its not-ready taint lifted, and the controllers have made
    /// the `default` namespace's ServiceAccount (so pods can be created and scheduled at once).
    pub fn start(options: Options) -> Result<ControlPlane, Error> {
        let binaries = match options.binaries.clone() {
            Some(binaries) => binaries,
            None => crate::binaries::ensure_built()?,
        };
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let supervisor = std::thread::Builder::new()
            .name("test-cluster-supervisor".into())
            .spawn(move || supervise(binaries, options, started_tx, stop_rx))
            .map_err(io_error("starting the supervisor thread"))?;
        match started_rx.recv() {
            Ok(Ok(started)) => Ok(ControlPlane {
                server: started.server,
                etcd_url: started.etcd_url,
                kubeconfig: started.kubeconfig,
                state_dir: started.state_dir,
                stop: Some(stop_tx),
                supervisor: Some(supervisor),
            }),
            Ok(Err(error)) => {
                let _ = supervisor.join();
                Err(error)
            }
            Err(_) => {
                let _ = supervisor.join();
                Err(Error::Kubeconfig(
                    "the supervisor thread ended without starting the control plane".into(),
                ))
            }
        }
    }

    /// The API server's URL (`https://127.0.0.1:<port>`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// etcd's client URL (`http://127.0.0.1:<port>`, no authentication): its `/metrics` and its
    /// JSON gateway (`/v3/watch`) show what reaches storage, which benchmarks count.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// A self-contained admin kubeconfig (user `admin` in `system:masters`).
    pub fn kubeconfig_yaml(&self) -> &str {
        &self.kubeconfig
    }

    /// Writes the admin kubeconfig to `path` (mode 0600: it holds the admin's key).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let what = || format!("writing the kubeconfig {}", path.display());
        let partial = path.with_extension("partial");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_error(what()))?;
        file.write_all(self.kubeconfig.as_bytes())
            .map_err(io_error(what()))?;
        std::fs::rename(&partial, path).map_err(io_error(what()))
    }

    /// An admin client configuration for `kube::Client`.
    pub async fn client_config(&self) -> Result<kube::Config, Error> {
        client_config(&self.kubeconfig).await
    }

    /// The directory of the control plane's state and its components' logs (deleted on drop).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
    }
}

pub(crate) async fn client_config(kubeconfig: &str) -> Result<kube::Config, Error> {
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))
}

struct Started {
    server: String,
    etcd_url: String,
    kubeconfig: String,
    state_dir: PathBuf,
}

/// One component's process, with its log.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        state: &Path,
    ) -> Result<Process, Error> {
        let log = state.join(format!("{name}.log"));
        let out = File::create(&log).map_err(io_error(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io_error(format!("opening {}", log.display())))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(state)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(io_error(format!("starting {}", program.display())))?;
        Ok(Process { name, child, log })
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// `Err` when the process has exited: a component must not exit while the cluster runs.
    fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::Exited {
                component: self.name.to_string(),
                status: status.to_string(),
                log_tail: self.log_tail(),
            }),
            _ => Ok(()),
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`].
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill has no memory effects; the pid is our own unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 4000;
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(TAIL)));
    let mut tail = String::new();
    let _ = file.read_to_string(&mut tail);
    tail
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("finding a free loopback port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io_error("finding a free loopback port"))
}

/// The state directory: on tmpfs when the machine has one (etcd never touches a disk).
fn state_dir() -> Result<tempfile::TempDir, Error> {
    let shm = Path::new("/dev/shm");
    let builder = || {
        let mut builder = tempfile::Builder::new();
        builder.prefix("meshery-test-cluster-");
        builder
    };
    if shm.is_dir()
        && let Ok(dir) = builder().tempdir_in(shm)
    {
        return Ok(dir);
    }
    builder()
        .tempdir()
        .map_err(io_error("creating the state directory"))
}

fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(io_error(format!("writing {}", path.display())))?;
    Ok(path)
}

/// A kubeconfig for `credential` against `server`, with every certificate inlined.
fn kubeconfig(server: &str, ca_pem: &str, user: &str, credential: &Credential) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test-cluster", "cluster": {
            "server": server,
            "certificate-authority-data": BASE64.encode(ca_pem),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": BASE64.encode(&credential.cert_pem),
            "client-key-data": BASE64.encode(&credential.key_pem),
        }}],
        "contexts": [{"name": "test-cluster", "context": {"cluster": "test-cluster", "user": user}}],
        "current-context": "test-cluster",
    });
    // JSON is YAML: kubectl, helm and kube-rs read it as a kubeconfig.
    serde_json::to_string_pretty(&config).expect("a kubeconfig serializes")
}

const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

fn supervise(
    binaries: Binaries,
    options: Options,
    started: std::sync::mpsc::Sender<Result<Started, Error>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-cluster-node")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err(io_error("starting a runtime")(e)));
            return;
        }
    };
    let state = match state_dir() {
        Ok(state) => state,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let mut processes = Vec::new();
    let result = runtime.block_on(start(&binaries, &options, state.path(), &mut processes));
    match result {
        Ok((ready, node)) => {
            let _ = started.send(Ok(ready));
            runtime.block_on(watch_until_stopped(&mut processes, stop));
            runtime.block_on(node.stop(STOP_GRACE));
        }
        Err(e) => {
            let _ = started.send(Err(e));
        }
    }
    // Reverse start order: the node and controllers go before the API server, which goes before etcd.
    for process in processes.iter_mut().rev() {
        process.stop();
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(state);
}

/// Waits for the stop signal, reporting (once) a component that died meanwhile.
async fn watch_until_stopped(processes: &mut [Process], mut stop: oneshot::Receiver<()>) {
    let mut reported = false;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if !reported {
                    for process in processes.iter_mut() {
                        if let Err(e) = process.check_running() {
                            eprintln!("test-cluster: {e}");
                            reported = true;
                        }
                    }
                }
            }
        }
    }
}

async fn start(
    binaries: &Binaries,
    options: &Options,
    state: &Path,
    processes: &mut Vec<Process>,
) -> Result<(Started, node::Agent), Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    let network = if options.run_pods {
        Some(PodNetwork::create()?)
    } else {
        None
    };
    let mut serving_addresses = vec![std::net::IpAddr::from(KUBERNETES_SERVICE_IP)];
    serving_addresses.extend(
        network
            .as_ref()
            .map(|n| std::net::IpAddr::from(n.gateway())),
    );
    let pki = Pki::generate(&serving_addresses)?;
    let ca = write_file(state, "ca.crt", &pki.ca_pem)?;
    let serving_cert = write_file(state, "apiserver.crt", &pki.serving.cert_pem)?;
    let serving_key = write_file(state, "apiserver.key", &pki.serving.key_pem)?;
    let sa_key = write_file(state, "service-account.key", &pki.service_account_key_pem)?;
    let sa_public_key = write_file(
        state,
        "service-account.pub",
        &pki.service_account_public_key_pem,
    )?;

    let etcd_port = free_port()?;
    let etcd_peer_port = free_port()?;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
    processes.push(Process::spawn(
        "etcd",
        &binaries.path("etcd"),
        &[
            "--name=test-cluster".into(),
            format!("--data-dir={}", state.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=test-cluster={peer_url}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
        state,
    )?);
    wait_for_etcd(etcd_port, &mut processes[0], deadline).await?;

    let api_port = free_port()?;
    let server = format!("https://127.0.0.1:{api_port}");
    let mut apiserver_args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={api_port}"),
        format!("--cert-dir={}", state.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", serving_cert.display()),
        format!("--tls-private-key-file={}", serving_key.display()),
        format!("--client-ca-file={}", ca.display()),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!("--service-account-key-file={}", sa_public_key.display()),
        format!("--service-account-signing-key-file={}", sa_key.display()),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement".into(),
        "--allow-privileged=true".into(),
        // The `kubernetes` Service's endpoint would be a loopback address, which Endpoints reject.
        "--endpoint-reconciler-type=none".into(),
        "--profiling=false".into(),
    ];
    // The API server calls the kubelet API for pods' logs and exec when the node runs pods.
    if network.is_some() {
        let client = pki.client("kube-apiserver-kubelet-client", &[])?;
        let cert = write_file(state, "apiserver-kubelet-client.crt", &client.cert_pem)?;
        let key = write_file(state, "apiserver-kubelet-client.key", &client.key_pem)?;
        apiserver_args.extend([
            format!("--kubelet-client-certificate={}", cert.display()),
            format!("--kubelet-client-key={}", key.display()),
            format!("--kubelet-certificate-authority={}", ca.display()),
            "--kubelet-preferred-address-types=InternalIP".into(),
        ]);
    }
    if let Some(audit_log) = &options.audit_log {
        let policy = write_file(state, "audit-policy.yaml", AUDIT_POLICY)?;
        apiserver_args.push(format!("--audit-policy-file={}", policy.display()));
        apiserver_args.push(format!("--audit-log-path={}", audit_log.display()));
        apiserver_args.push("--audit-log-format=json".into());
    }
    processes.push(Process::spawn(
        "kube-apiserver",
        &binaries.path("kube-apiserver"),
        &apiserver_args,
        state,
    )?);

    let admin = pki.client("admin", &["system:masters"])?;
    let admin_kubeconfig = kubeconfig(&server, &pki.ca_pem, "admin", &admin);
    let client = kube::Client::try_from(client_config(&admin_kubeconfig).await?)?;
    wait_for_readyz(&client, &mut processes[1], deadline).await?;

    for (name, user) in [
        ("kube-controller-manager", "system:kube-controller-manager"),
        ("kube-scheduler", "system:kube-scheduler"),
    ] {
        let credential = pki.client(user, &[])?;
        let file = write_file(
            state,
            &format!("{name}.kubeconfig"),
            &kubeconfig(&server, &pki.ca_pem, user, &credential),
        )?;
        let mut args = vec![
            format!("--kubeconfig={}", file.display()),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ];
        if name == "kube-controller-manager" {
            args.extend([
                format!("--controllers={CONTROLLERS}"),
                format!("--service-account-private-key-file={}", sa_key.display()),
                format!("--root-ca-file={}", ca.display()),
                // Each controller as its own ServiceAccount, with its bootstrap role, as kubeadm runs it.
                "--use-service-account-credentials=true".into(),
            ]);
        }
        processes.push(Process::spawn(name, &binaries.path(name), &args, state)?);
    }

    let node_credential = pki.client(
        &format!("system:node:{}", node::NODE_NAME),
        &["system:nodes"],
    )?;
    let node_config =
        client_config(&kubeconfig(&server, &pki.ca_pem, "node", &node_credential)).await?;
    let node_client = kube::Client::try_from(node_config)?;
    let node = match network {
        Some(network) => {
            let serving = pki.kubelet_serving(node::NODE_NAME)?;
            ProcessNode::start(NodeOptions {
                client: node_client,
                cluster_client: client.clone(),
                network,
                binaries_dir: binaries.dir.clone(),
                state_dir: state.join("pods"),
                api_port,
                kubelet_tls: Some(KubeletTls {
                    client_ca_pem: pki.ca_pem.clone(),
                    cert_pem: serving.cert_pem,
                    key_pem: serving.key_pem,
                }),
            })
            .await?
            .into_agent()
        }
        None => {
            node::register(&node_client, 0).await?;
            node::Agent::spawn(node_client, None, 0)
        }
    };

    wait_for_pods_to_be_schedulable(&client, processes, deadline).await?;
    Ok((
        Started {
            server,
            etcd_url,
            kubeconfig: admin_kubeconfig,
            state_dir: state.to_path_buf(),
        },
        node,
    ))
}

fn not_ready(process: &Process, started: Instant) -> Error {
    Error::NotReady {
        component: process.name.to_string(),
        seconds: started.elapsed().as_secs(),
        log_tail: process.log_tail(),
    }
}

async fn wait_for_etcd(port: u16, etcd: &mut Process, deadline: Instant) -> Result<(), Error> {
    let began = Instant::now();
    loop {
        etcd.check_running()?;
        if let Ok(body) = http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/health").await
            && body.contains("\"health\":\"true\"")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(not_ready(etcd, began));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.0 GET: etcd's client URL needs nothing more.
async fn http_get(address: SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

async fn wait_for_readyz(
    client: &kube::Client,
    apiserver: &mut Process,
    deadline: Instant,
) -> Result<(), Error> {
    let began = Instant::now();
    loop {
        apiserver.check_running()?;
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("a /readyz request");
        if let Ok(body) = client.request_text(request).await
            && body.trim() == "ok"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(not_ready(apiserver, began));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Until a pod can be created and scheduled at once: the controllers made the `default`
/// namespace's ServiceAccount and lifted the new Node's `not-ready` taint.
async fn wait_for_pods_to_be_schedulable(
    client: &kube::Client,
    processes: &mut [Process],
    deadline: Instant,
) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::{Node, ServiceAccount};
    let began = Instant::now();
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), "default");
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    loop {
        for process in processes.iter_mut() {
            process.check_running()?;
        }
        let account = accounts.get_opt("default").await.ok().flatten().is_some();
        let schedulable = nodes
            .get_opt(node::NODE_NAME)
            .await
            .ok()
            .flatten()
            .is_some_and(|n| {
                n.spec
                    .and_then(|s| s.taints)
                    .unwrap_or_default()
                    .iter()
                    .all(|t| t.key != "node.kubernetes.io/not-ready")
            });
        if account && schedulable {
            return Ok(());
        }
        if Instant::now() > deadline {
            let manager = processes
                .iter()
                .find(|p| p.name == "kube-controller-manager")
                .expect("the controller manager is started");
            return Err(not_ready(manager, began));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
