//! The pods the operator renders run for real: on the real control plane whose node agent runs
//! them as processes (`Options::run_pods`, `scripts/control-plane.sh --run-pods`), a Broker's
//! StatefulSet pods are `nats-server`s started from the rendered `nats.conf`, Secret and
//! environment, each in its own network namespace; a 3-replica Broker forms a route cluster
//! through the cluster DNS, carries a message between replicas, and a killed server is restarted
//! by the node while the Broker goes Degraded and back to Ready. The seed MeshSync runs the real
//! MeshSync (v1.0.0, built from its Go module) as its ServiceAccount, and a subscriber standing in
//! for Meshery Server receives its events for a Deployment created and deleted in the cluster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use meshery_operator::monitor::{CONNZ_PATH, Connz, MeshSyncOnBroker, meshsync_on_broker};
use serde_json::{Value, json};
use test_cluster::{ControlPlane, Options};

const NAMESPACE: &str = "meshery";

/// A control plane running pods, the operator beside it, and the admin kubeconfig.
struct Cluster {
    control_plane: ControlPlane,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    operator: Child,
    operator_log: PathBuf,
    _dir: tempfile::TempDir,
    /// Released last, once this cluster's processes are gone.
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

/// One cluster at a time: each runs an API server, etcd and a dozen real processes, and on two
/// cores several of them starve one another's probes and timers.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    async fn start() -> Cluster {
        let one_at_a_time = ONE_CLUSTER_AT_A_TIME.lock().await;
        let binaries = test_cluster::ensure_built().expect("the control plane's binaries");
        let control_plane = ControlPlane::start(Options {
            binaries: Some(binaries.clone()),
            run_pods: true,
            ..Options::default()
        })
        .expect("the control plane starts with a node that runs pods");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        control_plane.write_kubeconfig(&kubeconfig).unwrap();
        let kubectl = binaries.path("kubectl");
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        run(
            &kubectl,
            &kubeconfig,
            &["apply", "-f", crds.to_str().unwrap()],
        );
        run(&kubectl, &kubeconfig, &["create", "namespace", NAMESPACE]);
        let operator_log = dir.path().join("operator.log");
        let operator = Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
            .args([
                "run",
                "--metrics-addr=127.0.0.1:0",
                "--health-addr=127.0.0.1:0",
                "--resync-seconds=5",
                "--probe-grace-seconds=3",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&operator_log).unwrap())
            .spawn()
            .expect("the operator starts");
        Cluster {
            control_plane,
            kubeconfig,
            kubectl,
            operator,
            operator_log,
            _dir: dir,
            _one_at_a_time: one_at_a_time,
        }
    }

    async fn client(&self) -> Client {
        Client::try_from(self.control_plane.client_config().await.unwrap()).unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        run(&self.kubectl, &self.kubeconfig, args)
    }

    /// How `kubectl` exits, for commands whose answer is their exit status (`auth can-i`).
    fn kubectl_status(&self, args: &[&str]) -> std::process::ExitStatus {
        Command::new(&self.kubectl)
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("kubectl runs")
    }

    /// Applies an example CR from `examples/`, with `spec` fields overridden.
    fn apply_example(&self, file: &str, overrides: Value) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(file);
        let mut object: Value =
            serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for (field, value) in overrides.as_object().unwrap() {
            object["spec"][field] = value.clone();
        }
        self.apply(&object);
    }

    /// `kubectl apply` of `object`, as a user applies a manifest.
    fn apply(&self, object: &Value) {
        let file = self._dir.path().join(format!(
            "{}-{}.json",
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default()
        ));
        std::fs::write(&file, object.to_string()).unwrap();
        self.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    }

    fn apply_broker(&self, size: u32) {
        let broker = json!({
            "apiVersion": "meshery.io/v1alpha1",
            "kind": "Broker",
            "metadata": {"name": "meshery-broker", "namespace": NAMESPACE},
            "spec": {"size": size},
        });
        self.apply(&broker);
    }

    /// `kubectl wait` for the Broker's condition, as a user checks it.
    fn wait_broker(&self, condition: &str, timeout: Duration) {
        self.kubectl(&[
            "wait",
            &format!("--for=condition={condition}"),
            "broker/meshery-broker",
            "-n",
            NAMESPACE,
            &format!("--timeout={}s", timeout.as_secs()),
        ]);
    }

    async fn broker_pods(&self) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client().await, NAMESPACE);
        let mut list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=meshery-broker"))
            .await
            .unwrap()
            .items;
        list.sort_by_key(|p| p.name_any());
        list
    }

    async fn token(&self) -> String {
        let secrets: Api<Secret> = Api::namespaced(self.client().await, NAMESPACE);
        let secret = secrets.get("meshery-broker-auth").await.unwrap();
        String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.operator.kill();
        let _ = self.operator.wait();
        if std::thread::panicking() {
            eprintln!(
                "operator log:\n{}",
                std::fs::read_to_string(&self.operator_log).unwrap_or_default()
            );
            for pod in std::fs::read_dir(self.control_plane.state_dir().join("pods"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for log in std::fs::read_dir(pod.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if log.path().extension().is_some_and(|e| e == "log") {
                        eprintln!(
                            "{}:\n{}",
                            log.path().display(),
                            std::fs::read_to_string(log.path()).unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
}

fn run(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let output = Command::new(kubectl)
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .unwrap()
        .pod_ip
        .clone()
        .expect("a pod IP")
}

/// GET of a nats-server monitoring endpoint at `ip:8222`.
async fn monitor(ip: &str, path: &str) -> Value {
    let mut stream = tokio::net::TcpStream::connect((ip, 8222)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn connect(ip: &str, token: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_token(token.to_string())
        .connection_timeout(Duration::from_secs(5))
        .connect(format!("nats://{ip}:4222"))
        .await
        .unwrap_or_else(|e| panic!("a NATS client connects to the Broker pod at {ip}:4222: {e}"))
}

/// A subscription to `subject` that the server has taken in (flushed) before this returns.
async fn subscribe(client: &async_nats::Client, subject: &str) -> async_nats::Subscriber {
    let subscription = client.subscribe(subject.to_string()).await.unwrap();
    client.flush().await.unwrap();
    subscription
}

/// Meshery Server's request `entity` (with its `payload`) to MeshSync, on `meshery.meshsync.request`.
async fn ask_meshsync(client: &async_nats::Client, entity: &str, payload: Value) {
    let message = json!({"Request": {"Entity": entity, "Payload": payload}});
    client
        .publish("meshery.meshsync.request", message.to_string().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_replica_broker_is_a_real_nats_route_cluster() {
    let cluster = Cluster::start().await;
    cluster.apply_broker(3);
    cluster.wait_broker("Ready", Duration::from_secs(180));

    let pods = cluster.broker_pods().await;
    assert_eq!(pods.len(), 3);
    let ips: Vec<String> = pods.iter().map(pod_ip).collect();
    // Each replica routes to the two others, found through their DNS names.
    let deadline = Instant::now() + Duration::from_secs(60);
    for ip in &ips {
        loop {
            let routes = monitor(ip, "/routez").await;
            let mut remotes: Vec<String> = routes["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["ip"].as_str().map(String::from))
                .collect();
            remotes.sort();
            remotes.dedup();
            let mut expected: Vec<String> = ips.iter().filter(|o| *o != ip).cloned().collect();
            expected.sort();
            if remotes == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ip}'s /routez shows routes to {remotes:?}, not to {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let varz = monitor(&ips[0], "/varz").await;
    assert_eq!(varz["server_name"], pods[0].name_any());

    // A message published on replica A reaches a subscriber on replica C, with the Broker's token.
    let token = cluster.token().await;
    let subscriber = connect(&ips[2], &token).await;
    let mut messages = subscriber.subscribe("meshery.e2e").await.unwrap();
    subscriber.flush().await.unwrap();
    let publisher = connect(&ips[0], &token).await;
    // Interest crosses the route asynchronously: publish until the first message arrives.
    let received = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            publisher
                .publish("meshery.e2e", "hello".into())
                .await
                .unwrap();
            publisher.flush().await.unwrap();
            if let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(500), messages.next()).await
            {
                return message;
            }
        }
    })
    .await
    .expect("a message published on replica A reaches a subscriber on replica C");
    assert_eq!(received.payload.as_ref(), b"hello");

    // Without the token the pods turn a client away.
    let refused = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .max_reconnects(Some(1))
        .connect(format!("nats://{}:4222", ips[1]))
        .await;
    if let Ok(client) = refused {
        assert!(
            client.flush().await.is_err(),
            "a client without the token is served"
        );
    }

    // MeshSync publishes to the replica it connected to (A); Meshery Server, subscribed on
    // another one (C), receives every event through the routes.
    cluster.deploy_seed_meshsync();
    let connected = wait_for_meshsync_connection(&ips).await;
    assert_eq!(connected.len(), 1, "MeshSync's connections: {connected:?}");
    let other = ips.iter().find(|ip| **ip != connected[0]).unwrap();
    let (_client, mut messages) = cluster.subscriber(other).await;
    cluster
        .deployment_round_trip(&mut messages, "e2e-routed")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_nats_server_is_restarted_and_the_broker_recovers() {
    let cluster = Cluster::start().await;
    cluster.apply_broker(1);
    cluster.wait_broker("Ready", Duration::from_secs(120));
    cluster.deploy_seed_meshsync();
    let pod = cluster.broker_pods().await.remove(0);
    let status = pod.status.clone().unwrap();
    let container = &status.container_statuses.unwrap()[0];
    assert_eq!(container.restart_count, 0);
    let pid = container
        .container_id
        .as_deref()
        .and_then(|id| id.strip_prefix("test-cluster://"))
        .expect("the node reports the container's process as its ID");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "nats-server");

    // Watch the Broker from before the kill: its Degraded spell may be short.
    let brokers: Api<DynamicObject> = Api::namespaced_with(
        cluster.client().await,
        NAMESPACE,
        &ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "meshery.io",
            "v1alpha1",
            "Broker",
        )),
    );
    let mut phases = watcher(brokers, watcher::Config::default())
        .applied_objects()
        .map(|b| {
            b.ok()
                .and_then(|b| b.data["status"]["phase"].as_str().map(String::from))
        })
        .boxed();
    assert_eq!(phases.next().await.flatten().as_deref(), Some("Ready"));
    assert!(
        Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .unwrap()
            .success()
    );
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(phase) = phases.next().await {
            if let Some(phase) = phase.filter(|p| seen.last() != Some(p)) {
                seen.push(phase);
            }
            if seen.ends_with(&["Degraded".to_string(), "Ready".to_string()]) {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the Broker went through {seen:?}, not Degraded and back to Ready"));

    let pod = cluster.broker_pods().await.remove(0);
    let status = pod.status.clone().unwrap();
    let container = &status.container_statuses.unwrap()[0];
    assert_eq!(container.restart_count, 1);
    assert_eq!(
        container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        Some(137),
        "the last state records the SIGKILL"
    );
    // MeshSync reconnects to the restarted server, and its events reach Meshery Server again.
    let ip = pod_ip(&pod);
    wait_for_meshsync_connection(std::slice::from_ref(&ip)).await;
    let (_client, mut messages) = cluster.subscriber(&ip).await;
    cluster
        .deployment_round_trip(&mut messages, "e2e-resumed")
        .await;

    // Deleting the pod stops its server (preStop, then SIGTERM) and the StatefulSet's new pod runs.
    let old_pid = container
        .container_id
        .as_deref()
        .and_then(|id| id.strip_prefix("test-cluster://"))
        .unwrap()
        .to_string();
    // Not `kubectl delete`'s own wait: it can miss the deletion when the StatefulSet's
    // replacement of the same name appears first, and then waits for ever.
    cluster.kubectl(&[
        "delete",
        "pod",
        "-n",
        NAMESPACE,
        &pod.name_any(),
        "--wait=false",
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, NAMESPACE);
    // Lame duck (its 10 s grace before MeshSync is moved) and the shutdown fit the pod's 60 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    while pods
        .get_opt(&pod.name_any())
        .await
        .unwrap()
        .map(|p| p.uid())
        == Some(pod.uid())
    {
        assert!(Instant::now() < deadline, "the deleted pod is still there");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !Path::new(&format!("/proc/{old_pid}")).exists(),
        "the deleted pod's nats-server still runs"
    );
    cluster.wait_broker("Ready", Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_change_rolls_the_broker_and_lame_duck_moves_its_clients() {
    let cluster = Cluster::start().await;
    cluster.apply_broker(3);
    cluster.wait_broker("Ready", Duration::from_secs(180));
    cluster.deploy_seed_meshsync();
    let before = cluster.broker_pods().await;
    let ips: Vec<String> = before.iter().map(pod_ip).collect();
    wait_for_meshsync_connection(&ips).await;

    // A client of the replica the StatefulSet replaces first (the highest ordinal) hears of lame
    // duck before its server stops.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _client = async_nats::ConnectOptions::with_token(cluster.token().await)
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        })
        .connect(format!("nats://{}:4222", ips[2]))
        .await
        .unwrap();

    cluster.kubectl(&[
        "patch",
        "broker",
        "meshery-broker",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        r#"{"spec":{"config":{"maxPayload":"2Mi"}}}"#,
    ]);
    // Every replica is replaced, one at a time, each draining for lame duck's 40 s.
    let deadline = Instant::now() + Duration::from_secs(420);
    let after = loop {
        let now = cluster.broker_pods().await;
        // Replaced and serving: the last new pod may still be waiting for its address.
        let replaced = now.len() == 3
            && now.iter().all(|p| {
                let status = p.status.as_ref();
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                p.metadata.deletion_timestamp.is_none()
                    && !before.iter().any(|b| b.uid() == p.uid())
                    && status.is_some_and(|s| s.pod_ip.is_some())
                    && ready
            });
        if replaced {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the Broker's pods were not all replaced after its config changed"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    cluster.wait_broker("Ready", Duration::from_secs(180));
    for pod in &after {
        let varz = monitor(&pod_ip(pod), "/varz").await;
        assert_eq!(
            varz["max_payload"],
            2 * 1024 * 1024,
            "{} runs the old config",
            pod.name_any()
        );
    }
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event.to_string());
    }
    assert!(
        seen.iter()
            .any(|e| e == &async_nats::Event::LameDuckMode.to_string()),
        "the client of the replaced replica was never told of lame duck; it saw {seen:?}"
    );

    // MeshSync moved to a new replica, and its events still reach Meshery Server.
    let ips: Vec<String> = after.iter().map(pod_ip).collect();
    let connected = wait_for_meshsync_connection(&ips).await;
    let (_subscriber, mut messages) = cluster.subscriber(&connected[0]).await;
    cluster
        .deployment_round_trip(&mut messages, "e2e-rolled")
        .await;
}

/// The Broker's client address inside the cluster: what a TLS certificate for it must name.
const BROKER_SERVICE_NAME: &str = "meshery-broker.meshery.svc.cluster.local";

/// A private CA and a server certificate it issued for the Broker's Service name: `tls.crt`,
/// `tls.key` and `ca.crt`, as a TLS Secret holds them.
fn broker_tls_secret_data() -> serde_json::Map<String, Value> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "workloads test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec![BROKER_SERVICE_NAME.to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let mut data = serde_json::Map::new();
    data.insert("tls.crt".into(), cert.pem().into());
    data.insert("tls.key".into(), key.serialize_pem().into());
    data.insert("ca.crt".into(), ca.pem().into());
    data
}

/// A TLS client configuration that trusts `ca_pem` and checks the server's certificate for
/// the Broker's Service name, whichever pod IP it dials: what a client in the cluster sees.
fn tls_as_the_service(ca_pem: &str) -> async_nats::rustls::ClientConfig {
    use async_nats::rustls::client::WebPkiServerVerifier;
    use async_nats::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use async_nats::rustls::pki_types::pem::PemObject;
    use async_nats::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use async_nats::rustls::{self, DigitallySignedStruct, SignatureScheme};
    use std::sync::Arc;

    #[derive(Debug)]
    struct AsService(Arc<WebPkiServerVerifier>);
    impl ServerCertVerifier for AsService {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _dialled: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let service = ServerName::try_from(BROKER_SERVICE_NAME).unwrap();
            self.0
                .verify_server_cert(end_entity, intermediates, &service, ocsp, now)
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AsService(verifier)))
        .with_no_client_auth()
}

#[tokio::test(flavor = "multi_thread")]
async fn meshsync_publishes_through_a_tls_broker_signed_by_a_private_ca() {
    let cluster = Cluster::start().await;
    let tls = broker_tls_secret_data();
    let ca_pem = tls["ca.crt"].as_str().unwrap().to_string();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "broker-tls", "namespace": NAMESPACE}, "stringData": tls});
    cluster.apply(&secret);
    cluster.apply_example(
        "meshery-broker.yaml",
        json!({"tls": {"enabled": true, "secretName": "broker-tls"}}),
    );
    cluster.wait_broker("Ready", Duration::from_secs(120));
    cluster.deploy_seed_meshsync();

    // MeshSync trusts the Broker's private CA (the operator hands it the CA) and connects over
    // TLS with the Broker's token.
    let broker = pod_ip(&cluster.broker_pods().await.remove(0));
    wait_for_meshsync_connection(std::slice::from_ref(&broker)).await;
    let connz = monitor(&broker, CONNZ_PATH).await;
    let connections = connz["connections"].as_array().cloned().unwrap_or_default();
    assert!(
        !connections.is_empty()
            && connections.iter().all(|c| c["tls_version"]
                .as_str()
                .is_some_and(|v| v.starts_with("1."))),
        "a connection without TLS: {connz}"
    );

    let server = async_nats::ConnectOptions::with_token(cluster.token().await)
        .require_tls(true)
        .tls_client_config(tls_as_the_service(&ca_pem))
        .connection_timeout(Duration::from_secs(5))
        .connect(format!("tls://{broker}:4222"))
        .await
        .expect("Meshery Server's stand-in connects over TLS");
    let mut messages = subscribe(&server, "meshery.meshsync.core").await;
    cluster
        .deployment_round_trip(&mut messages, "e2e-tls")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_json_broker_accepts_the_credential_meshsync_is_given() {
    let cluster = Cluster::start().await;
    let users =
        r#"{"users":[{"user":"meshsync","password":"s3cret:pw"},{"user":"other","password":"x"}]}"#;
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "broker-users", "namespace": NAMESPACE},
        "stringData": {"users.json": users}});
    cluster.apply(&secret);
    cluster.apply_example(
        "meshery-broker.yaml",
        json!({"auth": {"secretRef": {"name": "broker-users"}}}),
    );
    cluster.wait_broker("Ready", Duration::from_secs(120));
    // The default release: its Deployment is rendered (its pod stays ErrImagePull here), and with
    // it the copy of the first user's credential that MeshSync would connect with.
    cluster.apply_example("meshery-meshsync.yaml", json!({}));
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(60);
    let userinfo = loop {
        if let Some(copy) = secrets
            .get_opt("meshery-meshsync-broker-auth")
            .await
            .unwrap()
        {
            break String::from_utf8(copy.data.unwrap()["token"].0.clone()).unwrap();
        }
        assert!(Instant::now() < deadline, "no credential copy for MeshSync");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(userinfo, "meshsync:s3cret%3Apw");

    // nats-server, started with the users.json include, accepts exactly that credential, decoded
    // from the URL as MeshSync's Go client decodes it.
    let broker = pod_ip(&cluster.broker_pods().await.remove(0));
    let (user, password) = userinfo.split_once(':').unwrap();
    let client = async_nats::ConnectOptions::with_user_and_password(
        percent_decode(user),
        percent_decode(password),
    )
    .connection_timeout(Duration::from_secs(5))
    .connect(format!("nats://{broker}:4222"))
    .await
    .unwrap_or_else(|e| panic!("the credential MeshSync is given is refused: {e}"));
    let mut messages = client.subscribe("meshery.e2e").await.unwrap();
    client.publish("meshery.e2e", "hello".into()).await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received.payload.as_ref(), b"hello");
    let refused =
        async_nats::ConnectOptions::with_user_and_password("meshsync".into(), "wrong".into())
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(Some(1))
            .connect(format!("nats://{broker}:4222"))
            .await;
    if let Ok(client) = refused {
        assert!(client.flush().await.is_err(), "a wrong password is served");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jetstream_broker_keeps_meshsyncs_events_on_its_persistent_volume() {
    let cluster = Cluster::start().await;
    // What a provisioner would do: a hostPath PersistentVolume the Broker's claim binds to.
    let store = cluster._dir.path().join("jetstream-volume");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let volume = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "jetstream-0"},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": store.to_str().unwrap()}}});
    cluster.apply(&volume);
    cluster.apply_example(
        "meshery-broker.yaml",
        json!({"jetstream": {"enabled": true}}),
    );
    cluster.wait_broker("Ready", Duration::from_secs(120));
    cluster.deploy_seed_meshsync();

    let broker = pod_ip(&cluster.broker_pods().await.remove(0));
    wait_for_meshsync_connection(std::slice::from_ref(&broker)).await;
    // Meshery Server's stand-in keeps MeshSync's events in a stream.
    let client = connect(&broker, &cluster.token().await).await;
    let jetstream = async_nats::jetstream::new(client.clone());
    let mut stream = jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "MESHSYNC".into(),
            subjects: vec!["meshery.meshsync.core".into()],
            ..Default::default()
        })
        .await
        .expect("the Broker serves JetStream");
    let mut messages = subscribe(&client, "meshery.meshsync.core").await;
    cluster
        .deployment_round_trip(&mut messages, "e2e-stored")
        .await;
    let stored = stream.info().await.unwrap().state.messages;
    assert!(
        stored >= 2,
        "the stream holds {stored} of MeshSync's events"
    );
    let on_volume = std::fs::read_dir(store.join("jetstream"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert!(
        on_volume > 0,
        "nothing under the PersistentVolume's jetstream directory"
    );
}

/// Whether a TCP connection from the pod at `from` to `to_ip:port` is let through: a refused
/// connection is dropped, so it times out.
fn reaches(from: &str, to_ip: &str, port: u16) -> bool {
    let target = std::net::SocketAddr::new(to_ip.parse().unwrap(), port);
    test_cluster::connect_from_pod(from.parse().unwrap(), target, Duration::from_secs(2)).is_ok()
}

/// Waits until the pod `namespace/name` runs and has an IP.
async fn running_pod_ip(cluster: &Cluster, namespace: &str, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, namespace);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(pod) = pods.get(name).await
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && let Some(ip) = pod.status.and_then(|s| s.pod_ip)
        {
            return ip;
        }
        assert!(
            Instant::now() < deadline,
            "pod {namespace}/{name} did not run"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// With `networkPolicy.enabled`, the node enforces the rendered NetworkPolicy as a CNI would: a
/// MeshSync in another namespace passes its start-up check on 8222, connects on 4222 and
/// publishes; any other pod is refused on every Broker port; the routes port admits only the
/// Broker's own pods; once the policy is disabled, the other pod is admitted again.
#[tokio::test(flavor = "multi_thread")]
async fn the_network_policy_admits_meshsync_from_another_namespace_and_no_other_pod() {
    let cluster = Cluster::start().await;
    cluster.apply_example(
        "meshery-broker.yaml",
        json!({"size": 2, "networkPolicy": {"enabled": true}}),
    );
    cluster.wait_broker("Ready", Duration::from_secs(120));
    cluster.kubectl(&["create", "namespace", "elsewhere"]);
    let meshsync = json!({"apiVersion": "meshery.io/v1alpha1", "kind": "MeshSync",
        "metadata": {"name": "meshsync", "namespace": "elsewhere"},
        "spec": {"version": MESHSYNC_RELEASE,
                 "broker": {"native": {"name": "meshery-broker", "namespace": NAMESPACE}}}});
    cluster.apply(&meshsync);
    let other = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "other", "namespace": "elsewhere", "labels": {"app": "other"}},
        "spec": {"containers": [{"name": "nats", "image": "nats:2.10.24-alpine"}]}});
    cluster.apply(&other);
    cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "meshsync/meshsync",
        "-n",
        "elsewhere",
        "--timeout=180s",
    ]);
    let brokers: Vec<String> = cluster.broker_pods().await.iter().map(pod_ip).collect();
    wait_for_meshsync_connection(&brokers).await;
    let (_client, mut messages) = cluster.subscriber(&brokers[0]).await;
    cluster
        .deployment_round_trip(&mut messages, "e2e-through-the-policy")
        .await;

    let meshsync_pod = cluster.kubectl(&[
        "get",
        "pods",
        "-n",
        "elsewhere",
        "-l",
        "app.kubernetes.io/name=meshery-meshsync",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let meshsync_ip = running_pod_ip(&cluster, "elsewhere", &meshsync_pod).await;
    let other_ip = running_pod_ip(&cluster, "elsewhere", "other").await;
    let broker = &brokers[0];
    assert!(reaches(&meshsync_ip, broker, 4222));
    assert!(reaches(&meshsync_ip, broker, 8222));
    assert!(
        !reaches(&meshsync_ip, broker, 6222),
        "MeshSync reaches the routes port"
    );
    assert!(
        reaches(&brokers[1], broker, 6222),
        "the Broker's own routes are refused"
    );
    for port in [4222, 6222, 8222] {
        assert!(
            !reaches(&other_ip, broker, port),
            "another pod reaches {port}"
        );
    }

    cluster.apply_example("meshery-broker.yaml", json!({"size": 2}));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reaches(&other_ip, broker, 4222) {
        assert!(
            Instant::now() < deadline,
            "the other pod is still refused after the policy was disabled"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// URL userinfo decoded as Go's `net/url` decodes it (async-nats passes it on still encoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).unwrap()
}

/// The MeshSync release the node runs (test-cluster/build.sh): the newest the module proxy serves.
const MESHSYNC_RELEASE: &str = "v1.0.0";

/// One MeshSync event for `kind` `name`, as Meshery Server reads it off the broker.
async fn event_for(
    messages: &mut async_nats::Subscriber,
    kind: &str,
    name: &str,
    event: &str,
    timeout: Duration,
) -> Value {
    let wanted = format!("\"name\":\"{name}\"");
    tokio::time::timeout(timeout, async {
        while let Some(message) = messages.next().await {
            let text = String::from_utf8_lossy(&message.payload);
            if !text.contains(&wanted) {
                continue;
            }
            let envelope: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if envelope["EventType"] == event && envelope["Object"]["kind"].as_str() == Some(kind) {
                return envelope;
            }
        }
        panic!("the subscription ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no {event} event for {kind} {name} within {timeout:?}"))
}

impl Cluster {
    /// The seed MeshSync (examples/meshery-meshsync.yaml) at the release the node runs, Ready.
    fn deploy_seed_meshsync(&self) {
        self.apply_example(
            "meshery-meshsync.yaml",
            json!({"version": MESHSYNC_RELEASE}),
        );
        self.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "meshsync/meshery-meshsync",
            "-n",
            NAMESPACE,
            "--timeout=180s",
        ]);
    }

    /// Meshery Server's side: a client of the Broker pod at `ip`, with the Broker's token,
    /// subscribed to the subject MeshSync publishes resource events on.
    async fn subscriber(&self, ip: &str) -> (async_nats::Client, async_nats::Subscriber) {
        let client = connect(ip, &self.token().await).await;
        let messages = subscribe(&client, "meshery.meshsync.core").await;
        (client, messages)
    }

    /// Creates and deletes Deployment `name` in namespace `watched`; `messages` carries MeshSync's
    /// ADDED and then its DELETED event for it, each within [`EVENT_WITHIN`].
    async fn deployment_round_trip(&self, messages: &mut async_nats::Subscriber, name: &str) {
        // The namespace may exist from an earlier round trip.
        let _ = Command::new(&self.kubectl)
            .env("KUBECONFIG", &self.kubeconfig)
            .args(["create", "namespace", "watched"])
            .output();
        self.kubectl(&[
            "create",
            "deployment",
            name,
            "-n",
            "watched",
            "--image=nats:2.10.24-alpine",
        ]);
        let added = event_for(messages, "Deployment", name, "ADDED", EVENT_WITHIN).await;
        assert_eq!(added["ObjectType"], "meshsync-data");
        self.kubectl(&["delete", "deployment", name, "-n", "watched"]);
        event_for(messages, "Deployment", name, "DELETED", EVENT_WITHIN).await;
    }
}

/// How soon Meshery Server must hear of a change in the cluster.
const EVENT_WITHIN: Duration = Duration::from_secs(30);

/// The Broker pod IPs whose `/connz` shows MeshSync's connection subscribed to Meshery Server's
/// requests.
async fn meshsync_connected_to(ips: &[String]) -> Vec<String> {
    let mut connected = Vec::new();
    for ip in ips {
        let connz: Connz =
            serde_json::from_value(monitor(ip, CONNZ_PATH).await).unwrap_or_default();
        if meshsync_on_broker(&connz) == MeshSyncOnBroker::Subscribed {
            connected.push(ip.clone());
        }
    }
    connected
}

/// Waits (up to a minute: MeshSync's pod is Ready before it has connected, v1.0.0 having no
/// readiness probe) until MeshSync is connected to one of the Broker pods at `ips`; which ones.
async fn wait_for_meshsync_connection(ips: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let connected = meshsync_connected_to(ips).await;
        if !connected.is_empty() {
            return connected;
        }
        assert!(
            Instant::now() < deadline,
            "MeshSync did not connect to any of {ips:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn meshsync_publishes_the_clusters_changes_through_the_broker() {
    let cluster = Cluster::start().await;
    cluster.apply_example("meshery-broker.yaml", json!({}));
    cluster.wait_broker("Ready", Duration::from_secs(120));
    cluster.deploy_seed_meshsync();

    let broker = pod_ip(&cluster.broker_pods().await.remove(0));
    // MeshSync is connected as itself and listens for Meshery Server's requests.
    wait_for_meshsync_connection(std::slice::from_ref(&broker)).await;
    let (_client, mut messages) = cluster.subscriber(&broker).await;
    cluster
        .deployment_round_trip(&mut messages, "e2e-watched")
        .await;
    meshery_server_requests_are_answered(&cluster, &broker, &mut messages).await;
    log_streaming_follows_pod_access(&cluster, &broker).await;
    kubectl_exec_runs_commands_in_containers(&cluster);
    terminal_sessions_follow_pod_access(&cluster, &broker).await;

    // A whitelist without Deployments rolls MeshSync (it reads its watch-list at start-up only),
    // and the new one publishes Pods but no Deployment.
    let before = meshsync_pods(&cluster).await;
    let pods_only = json!({"data": {"whitelist":
        r#"[{"Resource":"pods.v1.","Events":["ADDED","MODIFIED","DELETED"]}]"#}});
    cluster.apply_example(
        "meshery-meshsync.yaml",
        json!({"version": MESHSYNC_RELEASE, "watch-list": pods_only}),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = meshsync_pods(&cluster).await;
        if !now.is_empty() && now.iter().all(|p| !before.contains(p)) {
            break;
        }
        assert!(Instant::now() < deadline, "MeshSync did not roll: {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_for_meshsync_connection(std::slice::from_ref(&broker)).await;
    let (_client, mut messages) = cluster.subscriber(&broker).await;
    cluster.kubectl(&[
        "create",
        "deployment",
        "e2e-unlisted",
        "-n",
        "watched",
        "--image=nats:2.10.24-alpine",
    ]);
    let deadline = Instant::now() + EVENT_WITHIN;
    let mut saw_pod = false;
    while !saw_pod {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, messages.next())
            .await
            .expect("no Pod event within 30 s of the Deployment's creation")
            .expect("the subscription ended");
        let envelope: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        let kind = envelope["Object"]["kind"].as_str().unwrap_or_default();
        assert_ne!(
            kind, "Deployment",
            "a Deployment event after Deployments left the whitelist"
        );
        saw_pod =
            kind == "Pod" && String::from_utf8_lossy(&message.payload).contains("e2e-unlisted");
    }
}

/// Meshery UI's log streaming: MeshSync reads a pod's log through the API server (which asks the
/// node's kubelet API) and publishes it on `meshery.meshsync.logs`, while `podAccess.logs` grants
/// it `pods/log`; without the grant the API server refuses MeshSync and nothing is published.
async fn log_streaming_follows_pod_access(cluster: &Cluster, broker: &str) {
    let server = connect(broker, &cluster.token().await).await;
    let mut logs = subscribe(&server, "meshery.meshsync.logs").await;
    let ask_for_logs = |pod: String, container: &str| {
        let id = format!("e2e-{pod}");
        let payload = json!({&id: {
            "id": id, "namespace": NAMESPACE, "name": pod, "container": container,
            "taillines": 20, "follow": false,
        }});
        ask_meshsync(&server, "log-stream", payload)
    };

    let broker_pod = cluster.broker_pods().await.remove(0).name_any();
    ask_for_logs(broker_pod.clone(), "nats").await;
    let streamed = tokio::time::timeout(EVENT_WITHIN, async {
        let mut text = String::new();
        while let Some(message) = logs.next().await {
            let envelope: Value = serde_json::from_slice(&message.payload).unwrap();
            assert_eq!(envelope["ObjectType"], "log-stream");
            assert_eq!(envelope["Object"]["primary"], broker_pod.as_str());
            text.push_str(envelope["Object"]["data"].as_str().unwrap_or_default());
            if text.contains("Server is ready") {
                return text;
            }
        }
        panic!("the subscription ended");
    })
    .await
    .expect("no log lines of the Broker's nats-server from MeshSync within 30 s");
    // The kubelet API's timestamps=true, which MeshSync always asks for, comes through.
    let first = streamed.lines().next().unwrap_or_default();
    assert!(
        first
            .split(' ')
            .next()
            .is_some_and(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_ok()),
        "{first}"
    );

    cluster.apply_example(
        "meshery-meshsync.yaml",
        json!({"version": MESHSYNC_RELEASE, "podAccess": {"logs": false}}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster
        .kubectl_status(&[
            "auth",
            "can-i",
            "get",
            "pods",
            "--subresource=log",
            "-n",
            NAMESPACE,
            "--as=system:serviceaccount:meshery:meshery-meshsync",
        ])
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "MeshSync still may read pod logs"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let meshsync_pod = meshsync_pods(cluster).await.remove(0);
    ask_for_logs(meshsync_pod, "meshsync").await;
    let refused = tokio::time::timeout(Duration::from_secs(10), logs.next()).await;
    assert!(
        refused.is_err(),
        "log lines published without pods/log: {:?}",
        refused.ok().flatten().map(|m| m.payload)
    );
}

/// `kubectl exec` (WebSocket to the API server, which speaks SPDY to the node's kubelet API) runs
/// commands in a container as its user: output and input on pipes, stderr apart, the exit code
/// reported; and on a terminal (`-t`, under `script` for one) whose window size follows the
/// client's.
fn kubectl_exec_runs_commands_in_containers(cluster: &Cluster) {
    let exec = |flags: &[&str], command: &[&str], input: &str| {
        let mut child = Command::new(&cluster.kubectl)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .args(["exec", "-n", NAMESPACE, "meshery-broker-0", "-c", "nats"])
            .args(flags)
            .arg("--")
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let listed = exec(&[], &["ls", "/etc/nats"], "");
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "nats.conf\n");

    let shell = exec(&["-i"], &["/bin/sh"], "id -u\necho $((6 * 7))\n");
    assert!(shell.status.success(), "{shell:?}");
    assert_eq!(String::from_utf8_lossy(&shell.stdout), "1000\n42\n");

    let failing = exec(
        &[],
        &["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
        "",
    );
    assert_eq!(failing.status.code(), Some(3), "{failing:?}");
    assert_eq!(String::from_utf8_lossy(&failing.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert!(
        stderr.starts_with("err\n") && stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    // `script` gives kubectl the terminal `-t` wants (kubectl drops `-t` without `-i`), 30 rows
    // of 100 columns.
    let on_terminal = Command::new("script")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["--quiet", "--return", "--command"])
        .arg(format!(
            "stty rows 30 cols 100; {} exec -it -n {NAMESPACE} meshery-broker-0 -- /bin/sh -c 'tty; stty size; exit 4'",
            cluster.kubectl.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let output = String::from_utf8_lossy(&on_terminal.stdout);
    assert_eq!(on_terminal.status.code(), Some(4), "{output}");
    assert!(
        output.contains("/dev/pts/") && output.contains("\r\n30 100\r\n"),
        "{output}"
    );
}

/// Meshery UI's terminal: MeshSync runs `/bin/sh` in a pod on a terminal through the API server
/// (SPDY end to end, as client-go's `NewSPDYExecutor` speaks it) while `podAccess.exec` grants it
/// `pods/exec`; without the grant the API server refuses it and MeshSync publishes the refusal on
/// the session's subject.
///
/// With the grant, MeshSync v1.0.0 itself crashes once the node has taken the session's streams:
/// its terminal size queue wraps the nil queue kubectl's `MonitorSize` returns for output that is
/// not a terminal (a NATS subject), and client-go's resize loop calls it. The crash, with that
/// frame on its stack, is what shows the session got through the API server and the node.
async fn terminal_sessions_follow_pod_access(cluster: &Cluster, broker: &str) {
    let server = connect(broker, &cluster.token().await).await;
    let broker_pod = cluster.broker_pods().await.remove(0).name_any();
    let ask_for_terminal = |id: &str| {
        let payload = json!({id: {
            "id": id, "namespace": NAMESPACE, "name": broker_pod, "container": "nats",
        }});
        ask_meshsync(&server, "exec-request", payload)
    };
    let subject = |id: &str| format!("exec.{NAMESPACE}.{broker_pod}.nats.{id}");

    let meshsync_pod = meshsync_pods(cluster).await.remove(0);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, NAMESPACE);
    let restarts = |pod: Pod| {
        pod.status
            .and_then(|s| s.container_statuses?.first().map(|c| c.restart_count))
            .unwrap_or(0)
    };
    let before = restarts(pods.get(&meshsync_pod).await.unwrap());
    let mut granted = subscribe(&server, &subject("e2e-granted")).await;
    ask_for_terminal("e2e-granted").await;
    let deadline = Instant::now() + EVENT_WITHIN;
    while restarts(pods.get(&meshsync_pod).await.unwrap()) == before {
        assert!(
            Instant::now() < deadline,
            "MeshSync's terminal session neither crashed it nor failed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The node keeps one log file a container, across its restarts.
    let crash = cluster.kubectl(&["logs", "-n", NAMESPACE, &meshsync_pod]);
    assert!(
        crash.contains("terminalSizeQueueAdapter).Next")
            && crash.contains("streamProtocolV3).handleResizes"),
        "MeshSync ended otherwise: {crash}"
    );
    let published = tokio::time::timeout(Duration::from_secs(1), granted.next()).await;
    assert!(
        !published
            .ok()
            .flatten()
            .is_some_and(|m| String::from_utf8_lossy(&m.payload).contains("forbidden")),
        "the API server refused MeshSync's granted terminal session"
    );
    wait_for_meshsync_connection(&[broker.to_string()]).await;

    cluster.apply_example(
        "meshery-meshsync.yaml",
        json!({"version": MESHSYNC_RELEASE, "podAccess": {"exec": false}}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster
        .kubectl_status(&[
            "auth",
            "can-i",
            "create",
            "pods",
            "--subresource=exec",
            "-n",
            NAMESPACE,
            "--as=system:serviceaccount:meshery:meshery-meshsync",
        ])
        .success()
    {
        assert!(Instant::now() < deadline, "MeshSync still may exec");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut refused = subscribe(&server, &subject("e2e-refused")).await;
    ask_for_terminal("e2e-refused").await;
    let message = tokio::time::timeout(EVENT_WITHIN, refused.next())
        .await
        .expect("no answer to a terminal session without pods/exec within 30 s")
        .expect("the subscription ended");
    let envelope: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(envelope["ObjectType"], "error", "{envelope}");
    let refusal = envelope["Object"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("cannot create resource \"pods/exec\""),
        "{refusal}"
    );
    assert_eq!(
        restarts(pods.get(&meshsync_pod).await.unwrap()),
        before + 1,
        "MeshSync crashed on a refused terminal session"
    );
}

/// The names of MeshSync's pods.
async fn meshsync_pods(cluster: &Cluster) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, NAMESPACE);
    pods.list(&ListParams::default().labels("app=meshery-meshsync"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect()
}

/// What Meshery Server asks of MeshSync on `meshery.meshsync.request` is answered through the
/// broker: `meshsync-meta` (its version), `informer-store` (the objects it holds, on the reply
/// subject the request names) and `resync-discovery` (it starts its discovery anew, so every
/// object is published again as ADDED).
async fn meshery_server_requests_are_answered(
    cluster: &Cluster,
    broker: &str,
    events: &mut async_nats::Subscriber,
) {
    cluster.kubectl(&[
        "create",
        "deployment",
        "e2e-resynced",
        "-n",
        "watched",
        "--image=nats:2.10.24-alpine",
    ]);
    event_for(events, "Deployment", "e2e-resynced", "ADDED", EVENT_WITHIN).await;

    let server = connect(broker, &cluster.token().await).await;
    let mut meta = subscribe(&server, "meshsync-meta").await;
    let mut store = subscribe(&server, "e2e.informer-store").await;

    ask_meshsync(&server, "meshsync-meta", Value::Null).await;
    let reply = tokio::time::timeout(EVENT_WITHIN, meta.next())
        .await
        .expect("no answer to meshsync-meta within 30 s")
        .unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(
        reply.get("Object").is_some(),
        "meshsync-meta answer: {reply}"
    );

    // MeshSync restarts its discovery 5 s after start-up (when it has seen the cluster's CRDs), and
    // a request that meets the restart goes unanswered: ask again until the answer comes.
    let deadline = Instant::now() + EVENT_WITHIN;
    'asking: loop {
        assert!(
            Instant::now() < deadline,
            "no informer-store answer listing Deployment e2e-resynced within 30 s"
        );
        ask_meshsync(
            &server,
            "informer-store",
            json!({"Reply": "e2e.informer-store"}),
        )
        .await;
        while let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(5), store.next()).await
        {
            if String::from_utf8_lossy(&batch.payload).contains("\"name\":\"e2e-resynced\"") {
                break 'asking;
            }
        }
    }

    // MeshSync debounces a resync for 5 s, then lists everything again: an ADDED event for an
    // object it had already published, after the events so far are drained.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), events.next()).await {}
    ask_meshsync(&server, "resync-discovery", Value::Null).await;
    event_for(events, "Deployment", "e2e-resynced", "ADDED", EVENT_WITHIN).await;
    cluster.kubectl(&["delete", "deployment", "e2e-resynced", "-n", "watched"]);
}
