//! The rendered `nats.conf` is accepted by a real `nats-server` (`-t`: parse and check the config,
//! including included files and TLS key material). The server sees what a pod would: the env the
//! StatefulSet sets (with the kubelet's `$(VAR)` expansion), and the mounted files, relocated under a
//! temporary directory.

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use meshery_operator::api::{
    Broker, BrokerAuth, BrokerConfig, BrokerJetStream, BrokerTls, SecretRef,
};
use meshery_operator::object::Object;
use meshery_operator::render::nats_conf::{
    AUTH_DIR, CONFIG_DIR, CONFIG_FILE_NAME, DATA_DIR, JETSTREAM_STORE_DIR, PID_DIR, TLS_DIR,
    USERS_FILE_NAME, replica_host,
};
use meshery_operator::render::{AuthKind, BrokerAuthInput, BrokerInputs, desired_broker};
use serde_json::json;
use support::{TOKEN, broker, broker_spec, find, generated_inputs, nats_conf};

/// The nats-server binary; a missing one fails the test rather than skipping it.
fn nats_server() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([
            "/usr/sbin".into(),
            "/usr/bin".into(),
            "/usr/local/bin".into(),
        ]);
    candidates
        .map(|dir| dir.join("nats-server"))
        .find(|path| path.is_file())
        .expect("nats-server is not installed: `apt-get install -y nats-server` (these tests run the real server)")
}

/// A pod's view of the broker, laid out under a temporary directory.
struct Pod {
    root: tempfile::TempDir,
}

impl Pod {
    fn new() -> Pod {
        Pod {
            root: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// Where an absolute in-pod path lives in this pod's directory.
    fn path(&self, in_pod: &str) -> PathBuf {
        self.root.path().join(in_pod.trim_start_matches('/'))
    }

    fn write(&self, in_pod: &str, contents: &[u8]) {
        let path = self.path(in_pod);
        std::fs::create_dir_all(path.parent().expect("absolute paths have parents"))
            .expect("create directory");
        std::fs::write(path, contents).expect("write file");
    }

    /// A self-signed certificate and key, as the TLS Secret's `tls.crt` and `tls.key`.
    fn write_tls_secret(&self) {
        let dir = self.path(TLS_DIR);
        std::fs::create_dir_all(&dir).expect("create TLS directory");
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=broker",
            ])
            .arg("-keyout")
            .arg(dir.join("tls.key"))
            .arg("-out")
            .arg(dir.join("tls.crt"))
            .output()
            .expect("openssl is not installed: `apt-get install -y openssl`");
        assert!(
            status.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }

    /// Writes `nats.conf` with every in-pod mount path moved into this pod's directory, and creates
    /// the writable volumes (pid emptyDir, JetStream claim) the pod would have.
    fn write_conf(&self, conf: &str) -> PathBuf {
        for dir in [PID_DIR, DATA_DIR] {
            std::fs::create_dir_all(self.path(dir)).expect("create volume directory");
        }
        let relocated = [TLS_DIR, PID_DIR, DATA_DIR]
            .iter()
            .fold(conf.to_string(), |text, dir| {
                text.replace(
                    &format!("\"{dir}"),
                    &format!("\"{}", self.path(dir).display()),
                )
            });
        let in_pod = format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}");
        self.write(&in_pod, relocated.as_bytes());
        self.path(&in_pod)
    }
}

/// The container's environment as the kubelet builds it for replica `ordinal`: literal values with
/// `$(VAR)` expanded from earlier entries, secret references resolved to `token`, and the pod name.
fn replica_env(
    objects: &[Object],
    broker_name: &str,
    token: &str,
    ordinal: usize,
) -> Vec<(String, String)> {
    let stateful_set = find(objects, "StatefulSet", broker_name);
    let env = stateful_set
        .get(&["spec", "template", "spec", "containers"])
        .and_then(|c| c[0].get("env"))
        .and_then(|e| e.as_array())
        .expect("the nats container has env");
    let mut resolved: Vec<(String, String)> = Vec::new();
    for entry in env {
        let name = entry["name"]
            .as_str()
            .expect("env names are strings")
            .to_string();
        let value = if let Some(literal) = entry.get("value").and_then(|v| v.as_str()) {
            resolved
                .iter()
                .fold(literal.to_string(), |text, (var, value)| {
                    text.replace(&format!("$({var})"), value)
                })
        } else if entry.pointer("/valueFrom/secretKeyRef").is_some() {
            token.to_string()
        } else if entry
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(|p| p.as_str())
            == Some("metadata.name")
        {
            format!("{broker_name}-{ordinal}")
        } else {
            panic!("unexpected env source in {entry}")
        };
        resolved.push((name, value));
    }
    resolved
}

fn container_env(objects: &[Object], broker_name: &str, token: &str) -> Vec<(String, String)> {
    replica_env(objects, broker_name, token, 0)
}

/// Runs `nats-server -t -c nats.conf` with the pod's environment and returns its output.
fn check(pod: &Pod, conf_path: &Path, env: &[(String, String)]) -> Result<String, String> {
    let output = Command::new(nats_server())
        .arg("-t")
        .arg("-c")
        .arg(conf_path)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(pod.root.path())
        .output()
        .expect("nats-server runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Renders `broker`, lays out its pod, and asserts the real server accepts the config.
fn assert_accepted(broker: &Broker, inputs: &BrokerInputs, pod: &Pod) -> String {
    let objects = desired_broker(broker, inputs);
    let conf = nats_conf(&objects);
    let conf_path = pod.write_conf(&conf);
    let env = container_env(
        &objects,
        broker.metadata.name.as_deref().unwrap_or_default(),
        TOKEN,
    );
    match check(pod, &conf_path, &env) {
        Ok(output) => {
            assert!(
                output.contains("is valid"),
                "unexpected nats-server output: {output}"
            );
            conf
        }
        Err(output) => {
            panic!("nats-server rejected the rendered config:\n{output}\n--- nats.conf ---\n{conf}")
        }
    }
}

fn users_inputs() -> BrokerInputs {
    BrokerInputs {
        auth: BrokerAuthInput::Referenced {
            kind: AuthKind::Users,
        },
        ..generated_inputs()
    }
}

fn with_users_secret(mut broker: Broker) -> Broker {
    broker.spec.auth = Some(BrokerAuth {
        secret_ref: Some(SecretRef {
            name: "broker-users".into(),
        }),
    });
    broker
}

fn write_users_json(pod: &Pod) {
    let users = r#"{"users":[{"user":"meshsync","password":"p@ss:w0rd\"quoted"},{"user":"server","password":"s3cret"}]}"#;
    pod.write(&format!("{AUTH_DIR}/{USERS_FILE_NAME}"), users.as_bytes());
}

#[test]
fn single_server_config_is_accepted() {
    let conf = assert_accepted(
        &broker("meshery-broker", "meshery", broker_spec(1)),
        &generated_inputs(),
        &Pod::new(),
    );
    assert!(!conf.contains("cluster {"), "{conf}");
}

#[test]
fn three_replica_cluster_config_is_accepted() {
    let conf = assert_accepted(
        &broker("nats", "meshery", broker_spec(3)),
        &generated_inputs(),
        &Pod::new(),
    );
    assert!(conf.contains("cluster {"), "{conf}");
}

#[test]
fn jetstream_config_is_accepted() {
    for size in [1, 3] {
        let mut spec = broker_spec(size);
        spec.jetstream = Some(BrokerJetStream {
            enabled: true,
            storage_class: Some("fast".into()),
            storage_size: Some("1.5Gi".into()),
        });
        let conf = assert_accepted(
            &broker("js", "meshery", spec),
            &generated_inputs(),
            &Pod::new(),
        );
        assert!(
            conf.contains(&format!("max_file_store: {}", 1536u64 << 20)),
            "{conf}"
        );
    }
}

#[test]
fn tls_config_is_accepted() {
    let mut spec = broker_spec(1);
    spec.tls = Some(BrokerTls {
        enabled: true,
        secret_name: Some("broker-tls".into()),
    });
    let pod = Pod::new();
    pod.write_tls_secret();
    assert_accepted(
        &broker("secure", "meshery", spec),
        &generated_inputs(),
        &pod,
    );
}

#[test]
fn users_json_config_is_accepted_single_and_clustered() {
    for size in [1, 3] {
        let pod = Pod::new();
        write_users_json(&pod);
        let conf = assert_accepted(
            &with_users_secret(broker("users", "meshery", broker_spec(size))),
            &users_inputs(),
            &pod,
        );
        assert!(!conf.contains("NATS_TOKEN"), "{conf}");
    }
}

#[test]
fn every_feature_at_once_is_accepted() {
    let mut spec = broker_spec(5);
    spec.tls = Some(BrokerTls {
        enabled: true,
        secret_name: Some("broker-tls".into()),
    });
    spec.jetstream = Some(BrokerJetStream {
        enabled: true,
        storage_class: None,
        storage_size: None,
    });
    spec.config = Some(BrokerConfig {
        max_payload: Some("8Mi".into()),
        max_connections: Some(5000),
        debug: true,
        trace: true,
    });
    let pod = Pod::new();
    pod.write_tls_secret();
    let conf = assert_accepted(
        &broker("everything", "meshery", spec),
        &generated_inputs(),
        &pod,
    );
    for expected in [
        "max_payload: 8388608",
        "max_connections: 5000",
        "debug: true",
        "trace: true",
    ] {
        assert!(conf.contains(expected), "missing {expected:?} in\n{conf}");
    }
}

/// Guards the harness itself: without the token in its environment the server must refuse the config,
/// so the tests above really exercise the env-based auth.
#[test]
fn the_server_rejects_the_config_without_the_token_env() {
    let objects = desired_broker(
        &broker("nats", "meshery", broker_spec(1)),
        &generated_inputs(),
    );
    let pod = Pod::new();
    let conf_path = pod.write_conf(&nats_conf(&objects));
    let env: Vec<(String, String)> = container_env(&objects, "nats", TOKEN)
        .into_iter()
        .filter(|(name, _)| name != "NATS_TOKEN")
        .collect();
    let output = check(&pod, &conf_path, &env)
        .expect_err("a config referring to an unset variable is invalid");
    assert!(output.contains("NATS_TOKEN"), "{output}");
}

/// Guards the users.json harness: without the included file the server must refuse the config.
#[test]
fn the_server_rejects_the_users_config_without_the_mounted_file() {
    let broker = with_users_secret(broker("users", "meshery", broker_spec(1)));
    let objects = desired_broker(&broker, &users_inputs());
    let pod = Pod::new();
    let conf_path = pod.write_conf(&nats_conf(&objects));
    let env = container_env(&objects, "users", TOKEN);
    check(&pod, &conf_path, &env).expect_err("the include names a file that is not there");
}

/// A running nats-server, stopped when dropped.
struct RunningServer {
    child: std::process::Child,
    log: PathBuf,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` distinct free local ports. The listeners stay bound until all are chosen, so the kernel
/// cannot hand the same port out twice.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free local port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}

/// Live clusters start one at a time, so one cluster cannot take ports chosen for another.
static LIVE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The body of an HTTP GET against the server's monitoring port.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn route_count(monitor_port: u16) -> Option<u64> {
    let response = http_get(monitor_port, "/routez").ok()?;
    let body = &response[response.find('{')?..];
    serde_json::from_str::<serde_json::Value>(body).ok()?["num_routes"].as_u64()
}

/// The server's first reply to a client `CONNECT` with `credentials` (JSON fields) then `PING`:
/// `PONG` when the client is accepted.
fn handshake(client_port: u16, credentials: serde_json::Value) -> String {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", client_port))
        .expect("connect to the client port");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("set a read timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut info = String::new();
    reader
        .read_line(&mut info)
        .expect("the server greets with INFO");
    assert!(info.starts_with("INFO "), "{info}");
    let mut connect = credentials;
    connect["verbose"] = false.into();
    let mut writer = stream;
    write!(writer, "CONNECT {connect}\r\nPING\r\n").expect("send CONNECT");
    let mut reply = String::new();
    reader.read_line(&mut reply).expect("the server replies");
    reply.trim().to_string()
}

/// Servers started from a rendered Broker; they stop, and the next cluster may start, when dropped.
struct LiveCluster {
    client_ports: Vec<u16>,
    /// Held to stop the servers on drop, before their pods' directories go.
    _servers: Vec<RunningServer>,
    pods: Vec<Pod>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Starts one server per replica from the rendered config and env, with ports and replica addresses
/// moved to localhost, and waits until every server routes to every other one. `prepare` lays out
/// what the pod's mounts would hold.
fn start_cluster(broker: &Broker, inputs: &BrokerInputs, prepare: impl Fn(&Pod)) -> LiveCluster {
    let serial = LIVE_CLUSTER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let size = broker.spec.size as usize;
    let name = broker.metadata.name.as_deref().unwrap_or_default();
    let objects = desired_broker(broker, inputs);
    let conf = nats_conf(&objects);
    let ports: Vec<[u16; 3]> = free_ports(3 * size)
        .chunks(3)
        .map(|chunk| [chunk[0], chunk[1], chunk[2]])
        .collect();
    let pods: Vec<Pod> = (0..size).map(|_| Pod::new()).collect();
    let mut servers: Vec<RunningServer> = (0..size)
        .map(|ordinal| {
            let [client, cluster, monitor] = ports[ordinal];
            let pod = &pods[ordinal];
            prepare(pod);
            let local_conf = conf
                .replace("\nport: 4222\n", &format!("\nport: {client}\n"))
                .replace("http_port: 8222", &format!("http_port: {monitor}"))
                .replace("  port: 6222", &format!("  port: {cluster}"));
            let conf_path = pod.write_conf(&local_conf);
            let env: Vec<(String, String)> = replica_env(&objects, name, TOKEN, ordinal)
                .into_iter()
                .map(|(variable, value)| {
                    let local = (0..size).fold(value, |text, peer| {
                        let host = replica_host(broker, peer as i32);
                        text.replace(
                            &format!("{host}:6222"),
                            &format!("127.0.0.1:{}", ports[peer][1]),
                        )
                    });
                    (variable, local)
                })
                .collect();
            let log = pod.path("/nats.log");
            let child = Command::new(nats_server())
                .arg("-c")
                .arg(&conf_path)
                .arg("-l")
                .arg(&log)
                .env_clear()
                .envs(env)
                .spawn()
                .expect("nats-server starts");
            RunningServer { child, log }
        })
        .collect();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while (0..size).any(|i| route_count(ports[i][2]) != Some(size as u64 - 1)) {
        let exited = servers
            .iter_mut()
            .any(|s| matches!(s.child.try_wait(), Ok(Some(_))));
        if exited || std::time::Instant::now() > deadline {
            let logs: Vec<String> = servers
                .iter()
                .map(|s| std::fs::read_to_string(&s.log).unwrap_or_default())
                .collect();
            panic!(
                "the cluster did not form a full mesh of routes:\n{}",
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    LiveCluster {
        client_ports: ports.iter().map(|p| p[0]).collect(),
        _servers: servers,
        pods,
        _serial: serial,
    }
}

/// Beyond `-t`: three servers started from the rendered config form a full mesh of routes
/// authenticated with the token, and clients need the token.
#[test]
fn a_rendered_token_cluster_forms_authenticated_routes() {
    let broker = broker("nats", "meshery", broker_spec(3));
    let cluster = start_cluster(&broker, &generated_inputs(), |_| {});
    let clients = &cluster.client_ports;
    assert_eq!(handshake(clients[0], json!({"auth_token": TOKEN})), "PONG");
    let refused = handshake(clients[1], json!({"auth_token": "twrong"}));
    assert!(refused.contains("Authorization Violation"), "{refused}");
}

/// A clustered JetStream broker starts with its store on the claimed volume and forms its routes.
#[test]
fn a_rendered_jetstream_cluster_starts() {
    let mut spec = broker_spec(3);
    spec.jetstream = Some(BrokerJetStream {
        enabled: true,
        storage_class: None,
        storage_size: Some("1Gi".into()),
    });
    let broker = broker("js", "meshery", spec);
    let cluster = start_cluster(&broker, &generated_inputs(), |_| {});
    let clients = &cluster.client_ports;
    assert_eq!(handshake(clients[2], json!({"auth_token": TOKEN})), "PONG");
    assert!(cluster.pods[0].path(JETSTREAM_STORE_DIR).is_dir());
}

/// A users.json broker authenticates clients by user and password from the mounted file.
#[test]
fn a_rendered_users_cluster_authenticates_users() {
    let broker = with_users_secret(broker("users", "meshery", broker_spec(3)));
    let cluster = start_cluster(&broker, &users_inputs(), write_users_json);
    let clients = &cluster.client_ports;
    assert_eq!(
        handshake(clients[0], json!({"user": "server", "pass": "s3cret"})),
        "PONG"
    );
    let refused = handshake(clients[1], json!({"user": "server", "pass": "wrong"}));
    assert!(refused.contains("Authorization Violation"), "{refused}");
}
