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
    AUTH_DIR, CONFIG_DIR, CONFIG_FILE_NAME, DATA_DIR, PID_DIR, TLS_DIR, USERS_FILE_NAME,
};
use meshery_operator::render::{AuthKind, BrokerAuthInput, BrokerInputs, desired_broker};
use support::{TOKEN, broker, broker_spec, find, generated_inputs, nats_conf};

/// The nats-server binary; a missing one fails the test rather than skipping it.
fn nats_server() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/usr/local/bin".into()]);
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
        Pod { root: tempfile::tempdir().expect("a temporary directory") }
    }

    /// Where an absolute in-pod path lives in this pod's directory.
    fn path(&self, in_pod: &str) -> PathBuf {
        self.root.path().join(in_pod.trim_start_matches('/'))
    }

    fn write(&self, in_pod: &str, contents: &[u8]) {
        let path = self.path(in_pod);
        std::fs::create_dir_all(path.parent().expect("absolute paths have parents")).expect("create directory");
        std::fs::write(path, contents).expect("write file");
    }

    /// A self-signed certificate and key, as the TLS Secret's `tls.crt` and `tls.key`.
    fn write_tls_secret(&self) {
        let dir = self.path(TLS_DIR);
        std::fs::create_dir_all(&dir).expect("create TLS directory");
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=broker"])
            .arg("-keyout")
            .arg(dir.join("tls.key"))
            .arg("-out")
            .arg(dir.join("tls.crt"))
            .output()
            .expect("openssl is not installed: `apt-get install -y openssl`");
        assert!(status.status.success(), "openssl failed: {}", String::from_utf8_lossy(&status.stderr));
    }

    /// Writes `nats.conf` with every in-pod mount path moved into this pod's directory.
    fn write_conf(&self, conf: &str) -> PathBuf {
        let relocated = [TLS_DIR, PID_DIR, DATA_DIR].iter().fold(conf.to_string(), |text, dir| {
            text.replace(&format!("\"{dir}"), &format!("\"{}", self.path(dir).display()))
        });
        let in_pod = format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}");
        self.write(&in_pod, relocated.as_bytes());
        self.path(&in_pod)
    }
}

/// The container's environment as the kubelet builds it: literal values with `$(VAR)` expanded from
/// earlier entries, secret references resolved to `token`, and the pod name of replica 0.
fn container_env(objects: &[Object], broker_name: &str, token: &str) -> Vec<(String, String)> {
    let stateful_set = find(objects, "StatefulSet", broker_name);
    let env = stateful_set
        .get(&["spec", "template", "spec", "containers"])
        .and_then(|c| c[0].get("env"))
        .and_then(|e| e.as_array())
        .expect("the nats container has env");
    let mut resolved: Vec<(String, String)> = Vec::new();
    for entry in env {
        let name = entry["name"].as_str().expect("env names are strings").to_string();
        let value = if let Some(literal) = entry.get("value").and_then(|v| v.as_str()) {
            resolved
                .iter()
                .fold(literal.to_string(), |text, (var, value)| text.replace(&format!("$({var})"), value))
        } else if entry.pointer("/valueFrom/secretKeyRef").is_some() {
            token.to_string()
        } else if entry.pointer("/valueFrom/fieldRef/fieldPath").and_then(|p| p.as_str()) == Some("metadata.name") {
            format!("{broker_name}-0")
        } else {
            panic!("unexpected env source in {entry}")
        };
        resolved.push((name, value));
    }
    resolved
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
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(text) } else { Err(text) }
}

/// Renders `broker`, lays out its pod, and asserts the real server accepts the config.
fn assert_accepted(broker: &Broker, inputs: &BrokerInputs, pod: &Pod) -> String {
    let objects = desired_broker(broker, inputs);
    let conf = nats_conf(&objects);
    let conf_path = pod.write_conf(&conf);
    let env = container_env(&objects, broker.metadata.name.as_deref().unwrap_or_default(), TOKEN);
    match check(pod, &conf_path, &env) {
        Ok(output) => {
            assert!(output.contains("is valid"), "unexpected nats-server output: {output}");
            conf
        }
        Err(output) => panic!("nats-server rejected the rendered config:\n{output}\n--- nats.conf ---\n{conf}"),
    }
}

fn users_inputs() -> BrokerInputs {
    BrokerInputs { auth: BrokerAuthInput::Referenced { kind: AuthKind::Users }, ..generated_inputs() }
}

fn with_users_secret(mut broker: Broker) -> Broker {
    broker.spec.auth = Some(BrokerAuth { secret_ref: Some(SecretRef { name: "broker-users".into() }) });
    broker
}

fn write_users_json(pod: &Pod) {
    let users = r#"{"users":[{"user":"meshsync","password":"p@ss:w0rd\"quoted"},{"user":"server","password":"s3cret"}]}"#;
    pod.write(&format!("{AUTH_DIR}/{USERS_FILE_NAME}"), users.as_bytes());
}

#[test]
fn single_server_config_is_accepted() {
    let conf = assert_accepted(&broker("meshery-broker", "meshery", broker_spec(1)), &generated_inputs(), &Pod::new());
    assert!(!conf.contains("cluster {"), "{conf}");
}

#[test]
fn three_replica_cluster_config_is_accepted() {
    let conf = assert_accepted(&broker("nats", "meshery", broker_spec(3)), &generated_inputs(), &Pod::new());
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
        let conf = assert_accepted(&broker("js", "meshery", spec), &generated_inputs(), &Pod::new());
        assert!(conf.contains(&format!("max_file_store: {}", 1536u64 << 20)), "{conf}");
    }
}

#[test]
fn tls_config_is_accepted() {
    let mut spec = broker_spec(1);
    spec.tls = Some(BrokerTls { enabled: true, secret_name: Some("broker-tls".into()) });
    let pod = Pod::new();
    pod.write_tls_secret();
    assert_accepted(&broker("secure", "meshery", spec), &generated_inputs(), &pod);
}

#[test]
fn users_json_config_is_accepted_single_and_clustered() {
    for size in [1, 3] {
        let pod = Pod::new();
        write_users_json(&pod);
        let conf = assert_accepted(&with_users_secret(broker("users", "meshery", broker_spec(size))), &users_inputs(), &pod);
        assert!(!conf.contains("NATS_TOKEN"), "{conf}");
    }
}

#[test]
fn every_feature_at_once_is_accepted() {
    let mut spec = broker_spec(5);
    spec.tls = Some(BrokerTls { enabled: true, secret_name: Some("broker-tls".into()) });
    spec.jetstream = Some(BrokerJetStream { enabled: true, storage_class: None, storage_size: None });
    spec.config = Some(BrokerConfig {
        max_payload: Some("8Mi".into()),
        max_connections: Some(5000),
        debug: true,
        trace: true,
    });
    let pod = Pod::new();
    pod.write_tls_secret();
    let conf = assert_accepted(&broker("everything", "meshery", spec), &generated_inputs(), &pod);
    for expected in ["max_payload: 8388608", "max_connections: 5000", "debug: true", "trace: true"] {
        assert!(conf.contains(expected), "missing {expected:?} in\n{conf}");
    }
}

/// Guards the harness itself: without the token in its environment the server must refuse the config,
/// so the tests above really exercise the env-based auth.
#[test]
fn the_server_rejects_the_config_without_the_token_env() {
    let objects = desired_broker(&broker("nats", "meshery", broker_spec(1)), &generated_inputs());
    let pod = Pod::new();
    let conf_path = pod.write_conf(&nats_conf(&objects));
    let env: Vec<(String, String)> = container_env(&objects, "nats", TOKEN)
        .into_iter()
        .filter(|(name, _)| name != "NATS_TOKEN")
        .collect();
    let output = check(&pod, &conf_path, &env).expect_err("a config referring to an unset variable is invalid");
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
