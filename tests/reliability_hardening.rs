//! Hardening end to end: TLS with real nats-server and generated certificates, and the generated
//! token kept out of `plan` and `render` output (offline and against a cluster).
//!
//! Covered elsewhere and referenced from docs/reliability.md: the token out of logs, Events, status
//! and metrics (`tests/controller_ops.rs`, `the_token_never_appears_in_logs_events_status_or_metrics`);
//! pods non-root, read-only, no capabilities (`tests/render_broker.rs`, `tests/render_meshsync.rs`,
//! `tests/chart_helm.rs`); NetworkPolicy rendering (`tests/render_broker.rs`); auth always on
//! (`tests/render_nats_conf.rs`).

mod harness;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Cluster, test_settings};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use meshery_operator::api::{Broker, Phase};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;

const NS: &str = "meshery";
const NAME: &str = "tls-broker";
const WAIT: Duration = Duration::from_secs(30);

/// A CA and a server certificate for 127.0.0.1 and the broker's cluster DNS names.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn issue() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "reliability test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        format!("{NAME}.{NS}.svc.cluster.local"),
    ])
    .unwrap();
    params.distinguished_name.push(DnType::CommonName, NAME);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// nats-server on `address` requiring `token`, with TLS from `dir` when `tls`; killed on drop.
struct Nats(Child);

impl Nats {
    fn start(address: SocketAddr, token: &str, tls: Option<&Path>) -> Nats {
        let mut command = Command::new("nats-server");
        command.args([
            "-a",
            &address.ip().to_string(),
            "-p",
            &address.port().to_string(),
            "--auth",
            token,
        ]);
        if let Some(dir) = tls {
            command
                .arg("--tls")
                .arg("--tlscert")
                .arg(dir.join("tls.crt"))
                .arg("--tlskey")
                .arg(dir.join("tls.key"));
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "nats-server exited: {address} taken?"
            );
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats(child)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Whether `text` contains something shaped like a generated token (`t` + 64 hex digits).
fn contains_token_shape(text: &str) -> bool {
    text.as_bytes().windows(65).any(|w| {
        w[0] == b't'
            && w[1..]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    })
}

async fn ready_message(cluster: &Cluster) -> (Option<Phase>, String) {
    let brokers: Api<Broker> = cluster.api(NS);
    let broker = brokers.get(NAME).await.unwrap();
    let status = broker.status.unwrap_or_default();
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default();
    (status.phase, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_end_to_end_with_real_nats_and_generated_certificates() {
    let address = free_address();
    let pki = issue();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &pki.cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &pki.key).unwrap();

    let mut cluster = Cluster::start().await;
    cluster.create_namespace(NS).await;
    let secrets: Api<Secret> = cluster.api(NS);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "nats-tls"}, "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": pki.cert, "tls.key": pki.key, "ca.crt": pki.ca}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    cluster.start_operator(test_settings());
    cluster
        .apply_yaml::<Broker>(&format!(
            "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {{name: {NAME}, namespace: {NS}}}\n\
             spec: {{size: 1, tls: {{enabled: true, secretName: nats-tls}}, service: {{externalEndpointOverride: '{address}'}}}}\n"
        ))
        .await;
    let token = cluster.broker_token(NS, NAME).await;

    // The rendered server config turns TLS on with the Secret's files; the StatefulSet mounts it.
    let conf = cluster
        .wait_for(NS, &format!("{NAME}-config"), WAIT, |_: &ConfigMap| true)
        .await
        .data
        .unwrap()["nats.conf"]
        .clone();
    assert!(
        conf.contains("tls {") && conf.contains("/etc/nats-tls/tls.crt"),
        "{conf}"
    );
    let sts = serde_json::to_value(
        cluster
            .wait_for(
                NS,
                NAME,
                WAIT,
                |_: &k8s_openapi::api::apps::v1::StatefulSet| true,
            )
            .await,
    )
    .unwrap();
    assert!(
        sts["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "nats-tls"),
        "{sts:#}"
    );

    // A plaintext server with the right token is not good enough: the probe insists on TLS.
    let plain = Nats::start(address, &token, None);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (phase, message) = ready_message(&cluster).await;
    assert_ne!(phase, Some(Phase::Ready), "Ready over plaintext: {message}");
    assert!(message.to_lowercase().contains("tls"), "{message}");
    println!("HARDENING| TLS Broker against a plaintext nats-server: {phase:?}, {message}");
    drop(plain);

    // The real thing: nats-server with the certificate the CA in the Secret issued.
    let started = Instant::now();
    let _tls = Nats::start(address, &token, Some(dir.path()));
    cluster
        .wait_for_broker_phase(NS, NAME, Phase::Ready, WAIT)
        .await;
    let (_, message) = ready_message(&cluster).await;
    println!(
        "HARDENING| TLS Broker Ready {:.1} s after a TLS nats-server started: {message}",
        started.elapsed().as_secs_f64()
    );

    // plan --cluster against this cluster shows no token.
    let output = Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
        .args(["plan", "--cluster", "-v", "-o", "diff"])
        .env("KUBECONFIG", cluster.sim.kubeconfig_path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains(&format!("{NAME}-auth")), "{text}");
    assert!(
        !text.contains(&token),
        "the token in plan --cluster:\n{text}"
    );
    assert!(!contains_token_shape(&text), "{text}");
    cluster.stop_operator().await;
}

/// Offline `plan` (every output format, with the observed auth Secret holding a token) and
/// `render` never print a token.
#[test]
fn plan_and_render_never_print_the_token() {
    let token = format!("t{}", "0123456789abcdef".repeat(4));
    let encoded = {
        // base64 of the token, as a Secret's data holds it.
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = token.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let dir = tempfile::tempdir().unwrap();
    let cr = dir.path().join("broker.yaml");
    std::fs::write(
        &cr,
        "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {name: b, namespace: meshery, uid: u1}\nspec: {size: 1}\n",
    )
    .unwrap();
    let observed = dir.path().join("observed.yaml");
    std::fs::write(
        &observed,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: b-auth\n  namespace: meshery\n  labels: {{app.kubernetes.io/managed-by: meshery-operator, app.kubernetes.io/instance: b}}\n  ownerReferences: [{{apiVersion: meshery.io/v1alpha1, kind: Broker, name: b, uid: u1, controller: true}}]\ndata:\n  token: {encoded}\n  stale: {encoded}\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
            .args(args)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let (cr, observed) = (cr.to_str().unwrap(), observed.to_str().unwrap());
    for args in [
        vec!["plan", "-f", cr],
        vec!["plan", "-f", cr, "-v"],
        vec!["plan", "-f", cr, "--observed", observed, "-v"],
        vec!["plan", "-f", cr, "--observed", observed, "-o", "patch"],
        vec!["plan", "-f", cr, "--observed", observed, "-o", "json"],
        vec!["render", "-f", cr],
    ] {
        let text = run(&args);
        assert!(text.contains("b-auth"), "{args:?}: {text}");
        assert!(
            !text.contains(&token),
            "{args:?} printed the token:\n{text}"
        );
        assert!(
            !text.contains(&encoded),
            "{args:?} printed the encoded token:\n{text}"
        );
        assert!(
            !contains_token_shape(&text),
            "{args:?} printed a token:\n{text}"
        );
    }
}
