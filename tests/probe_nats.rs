//! The broker probe against real `nats-server` processes on loopback: one server per test, each on
//! its own 127.0.0.x address and a port the server picks itself (reported through its ports file),
//! so tests run in parallel without racing for ports.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshery_operator::controller::probe::{
    ProbeAuth, ProbeError, ProbeTarget, ProbeTls, probe_broker,
};
use meshery_operator::controller::token::generate_token;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A `nats-server` child process, killed when dropped.
struct NatsServer {
    child: Child,
    dir: TempDir,
    /// `ip:port` the server listens on.
    address: String,
    /// `ip:port` of the monitoring endpoint, when the configuration enables it.
    monitoring: Option<String>,
}

fn without_scheme(url: &serde_json::Value) -> Option<String> {
    let (_, address) = url.as_str()?.split_once("://")?;
    Some(address.to_string())
}

impl NatsServer {
    /// Starts `nats-server` on `ip` with `extra` appended to its configuration (authorization, TLS).
    fn start(ip: &str, extra: &str) -> NatsServer {
        NatsServer::start_in(tempfile::tempdir().expect("temp dir"), ip, extra)
    }

    /// Like [`NatsServer::start`], in a directory already holding files the configuration names.
    fn start_in(dir: TempDir, ip: &str, extra: &str) -> NatsServer {
        let config = format!(
            "listen: \"{ip}:-1\"\nports_file_dir: \"{}\"\n{extra}\n",
            dir.path().display()
        );
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, config).expect("write nats.conf");
        let log = std::fs::File::create(dir.path().join("nats.log")).expect("log file");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start nats-server ({err}); these tests need the real binary: \
                     apt-get install -y nats-server"
                )
            });
        let mut server = NatsServer {
            child,
            dir,
            address: String::new(),
            monitoring: None,
        };
        let ports = server.wait_for_ports();
        server.address = without_scheme(&ports["nats"][0]).expect("client address");
        server.monitoring = without_scheme(&ports["monitoring"][0]);
        server
    }

    /// Reads the listening addresses from the ports file the server writes once its listeners are
    /// up: `{"nats": ["nats://ip:port"], "monitoring": ["http://ip:port"]}` (`tls://` with TLS).
    fn wait_for_ports(&mut self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports_file = format!("nats-server_{}.ports", self.child.id());
        let path = self.dir.path().join(ports_file);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
                && ports["nats"][0].is_string()
            {
                return ports;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nats-server exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not report its port within 10s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn target(address: &str, auth: ProbeAuth, tls: Option<ProbeTls>) -> ProbeTarget {
    ProbeTarget {
        address: address.to_string(),
        auth,
        tls,
    }
}

/// Neither the `Display` nor the `Debug` form of an error may carry a secret.
fn assert_secret_free(err: &ProbeError, secrets: &[&str]) {
    let shown = format!("{err} | {err:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "secret leaked into {shown}");
    }
}

fn token_config(token: &str) -> String {
    format!("authorization {{ token: \"{token}\" }}")
}

#[tokio::test]
async fn token_authentication_succeeds_with_the_right_token() {
    let token = generate_token();
    let server = NatsServer::start("127.0.0.11", &token_config(&token));
    let success = probe_broker(
        &target(&server.address, ProbeAuth::Token(token), None),
        TIMEOUT,
    )
    .await
    .expect("probe with the right token");
    assert!(success.server_version.starts_with("2."), "{success:?}");
    assert!(!success.tls);
    assert!(success.elapsed < TIMEOUT);
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_an_authentication_failure() {
    let token = generate_token();
    let wrong = generate_token();
    let server = NatsServer::start("127.0.0.12", &token_config(&token));

    let err = probe_broker(
        &target(&server.address, ProbeAuth::Token(wrong.clone()), None),
        TIMEOUT,
    )
    .await
    .expect_err("wrong token accepted");
    assert!(
        matches!(err, ProbeError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert_eq!(err.label(), "AuthenticationFailed");
    assert!(err.to_string().contains(&server.address), "{err}");
    assert_secret_free(&err, &[&token, &wrong]);

    let err = probe_broker(&target(&server.address, ProbeAuth::None, None), TIMEOUT)
        .await
        .expect_err("no token accepted");
    assert!(
        matches!(err, ProbeError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert_secret_free(&err, &[&token]);
}

#[tokio::test]
async fn user_and_password_from_users_json_authenticate() {
    let server = NatsServer::start(
        "127.0.0.13",
        r#"authorization { users = [ { user: "meshsync", password: "s3cret-pw" }, { user: "other", password: "x" } ] }"#,
    );
    let auth = |password: &str| ProbeAuth::UserPassword {
        user: "meshsync".into(),
        password: password.into(),
    };
    probe_broker(&target(&server.address, auth("s3cret-pw"), None), TIMEOUT)
        .await
        .expect("right password");

    let err = probe_broker(&target(&server.address, auth("wrong-pw"), None), TIMEOUT)
        .await
        .expect_err("wrong password accepted");
    assert!(
        matches!(err, ProbeError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert_secret_free(&err, &["s3cret-pw", "wrong-pw"]);
}

#[tokio::test]
async fn a_server_without_authorization_accepts_an_anonymous_probe() {
    let server = NatsServer::start("127.0.0.14", "");
    probe_broker(&target(&server.address, ProbeAuth::None, None), TIMEOUT)
        .await
        .expect("anonymous probe");
}

#[tokio::test]
async fn a_stopped_server_is_unreachable_well_within_the_timeout() {
    let token = generate_token();
    let mut server = NatsServer::start("127.0.0.15", &token_config(&token));
    let probe_target = target(&server.address, ProbeAuth::Token(token.clone()), None);
    probe_broker(&probe_target, TIMEOUT)
        .await
        .expect("server is up");

    server.stop();
    let started = Instant::now();
    let err = probe_broker(&probe_target, TIMEOUT)
        .await
        .expect_err("server is down");
    assert!(matches!(err, ProbeError::Unreachable { .. }), "{err:?}");
    assert!(
        started.elapsed() < TIMEOUT,
        "took {:?}: a refused connection must not wait for the timeout",
        started.elapsed()
    );
    assert!(err.to_string().contains(&server.address), "{err}");
    assert_secret_free(&err, &[&token]);
}

#[tokio::test]
async fn a_listener_that_never_speaks_nats_times_out_on_time() {
    // Accepts TCP connections and then says nothing, like a wedged process or a wrong port.
    let listener = tokio::net::TcpListener::bind("127.0.0.16:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let token = generate_token();
    let timeout = Duration::from_millis(700);
    let started = Instant::now();
    let err = probe_broker(
        &target(&address, ProbeAuth::Token(token.clone()), None),
        timeout,
    )
    .await
    .expect_err("silent server");
    let elapsed = started.elapsed();
    silent.abort();

    assert!(matches!(err, ProbeError::Timeout { .. }), "{err:?}");
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "took {elapsed:?} for a {timeout:?} timeout"
    );
    assert_secret_free(&err, &[&token]);
}

/// A CA and a server certificate it issued, written where `nats-server` can read them.
struct Pki {
    ca_pem: String,
}

impl Pki {
    /// Issues a server certificate for `names` (DNS names or IPs) into `dir`.
    fn issue(dir: &Path, names: &[&str]) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "probe test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");

        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "meshery-broker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca).expect("server certificate");

        std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write tls.crt");
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write tls.key");
        Pki { ca_pem: ca.pem() }
    }

    /// A CA that has never issued anything: valid PEM, wrong trust anchor.
    fn unrelated_ca() -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "some other CA");
        params
            .self_signed(&KeyPair::generate().expect("key"))
            .expect("self-signed")
            .pem()
    }
}

/// Starts a TLS-only, token-protected server on `ip` whose certificate names `names`.
fn start_tls_server(ip: &str, names: &[&str], token: &str) -> (NatsServer, Pki) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::issue(dir.path(), names);
    let config = format!(
        "{}\ntls {{ cert_file: \"{}\", key_file: \"{}\" }}",
        token_config(token),
        dir.path().join("tls.crt").display(),
        dir.path().join("tls.key").display()
    );
    (NatsServer::start_in(dir, ip, &config), pki)
}

fn tls(ca_pem: &str) -> Option<ProbeTls> {
    Some(ProbeTls {
        ca_pem: Some(ca_pem.as_bytes().to_vec()),
    })
}

#[tokio::test]
async fn tls_with_the_brokers_ca_succeeds() {
    let token = generate_token();
    let (server, pki) = start_tls_server("127.0.0.17", &["localhost", "127.0.0.17"], &token);
    let success = probe_broker(
        &target(&server.address, ProbeAuth::Token(token), tls(&pki.ca_pem)),
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|err| panic!("TLS probe failed: {err}\n{}", server.log()));
    assert!(success.tls);
}

#[tokio::test]
async fn tls_verification_failures_are_tls_failures() {
    let token = generate_token();
    let (server, pki) = start_tls_server("127.0.0.18", &["localhost", "127.0.0.1"], &token);

    // A CA that did not issue the server's certificate.
    let err = probe_broker(
        &target(
            &server.address,
            ProbeAuth::Token(token.clone()),
            tls(&Pki::unrelated_ca()),
        ),
        TIMEOUT,
    )
    .await
    .expect_err("unrelated CA trusted");
    assert!(matches!(err, ProbeError::TlsFailed { .. }), "{err:?}");
    assert_eq!(err.label(), "TlsFailed");
    assert_secret_free(&err, &[&token]);

    // The right CA, but the certificate does not name the address dialled (127.0.0.18).
    let err = probe_broker(
        &target(
            &server.address,
            ProbeAuth::Token(token.clone()),
            tls(&pki.ca_pem),
        ),
        TIMEOUT,
    )
    .await
    .expect_err("certificate for another host accepted");
    assert!(matches!(err, ProbeError::TlsFailed { .. }), "{err:?}");
    assert_secret_free(&err, &[&token]);

    // No ca.crt: the platform roots do not trust a private CA.
    let err = probe_broker(
        &target(
            &server.address,
            ProbeAuth::Token(token.clone()),
            Some(ProbeTls { ca_pem: None }),
        ),
        TIMEOUT,
    )
    .await
    .expect_err("private CA trusted through platform roots");
    assert!(matches!(err, ProbeError::TlsFailed { .. }), "{err:?}");

    // TLS not configured for the probe, but the server demands it: still a TLS problem, not auth.
    let err = probe_broker(
        &target(&server.address, ProbeAuth::Token(token.clone()), None),
        TIMEOUT,
    )
    .await
    .expect_err("TLS server passed without a CA");
    assert!(matches!(err, ProbeError::TlsFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("requires TLS"), "{err}");
    assert_secret_free(&err, &[&token]);
}

#[tokio::test]
async fn tls_against_a_plaintext_server_is_a_tls_failure() {
    let token = generate_token();
    let server = NatsServer::start("127.0.0.19", &token_config(&token));
    let err = probe_broker(
        &target(
            &server.address,
            ProbeAuth::Token(token.clone()),
            tls(&Pki::unrelated_ca()),
        ),
        TIMEOUT,
    )
    .await
    .expect_err("TLS probe of a plaintext server");
    assert!(matches!(err, ProbeError::TlsFailed { .. }), "{err:?}");
    assert_secret_free(&err, &[&token]);
}

#[tokio::test]
async fn an_address_carrying_the_token_is_refused_without_echoing_it() {
    let token = generate_token();
    let err = probe_broker(
        &target(
            &format!("{token}@127.0.0.20:4222"),
            ProbeAuth::Token(token.clone()),
            None,
        ),
        TIMEOUT,
    )
    .await
    .expect_err("credentials in the address");
    assert!(matches!(err, ProbeError::InvalidAddress { .. }), "{err:?}");
    assert_secret_free(&err, &[&token]);
}

/// The number of client connections the server holds, from its monitoring endpoint.
async fn open_connections(monitoring: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(monitoring)
        .await
        .expect("connect to monitoring");
    // HTTP/1.0, so that a large reply is not chunked.
    let request = format!("GET /connz HTTP/1.0\r\nHost: {monitoring}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("receive");
    let (_, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let connz: serde_json::Value = serde_json::from_str(body).expect("connz JSON");
    connz["num_connections"].as_u64().expect("num_connections")
}

#[tokio::test]
async fn probes_close_their_connections() {
    // The operator probes every Broker on every resync; a probe that left its connection open
    // would eventually exhaust the broker's max_connections.
    let token = generate_token();
    let server = NatsServer::start(
        "127.0.0.21",
        &format!("{}\nhttp: \"127.0.0.21:-1\"", token_config(&token)),
    );
    let monitoring = server.monitoring.clone().expect("monitoring address");
    let probe_target = target(&server.address, ProbeAuth::Token(token), None);
    for _ in 0..20 {
        probe_broker(&probe_target, TIMEOUT).await.expect("probe");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open = open_connections(&monitoring).await;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} probe connections still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects everything logged on this thread, at every level.
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn nothing_logged_during_probes_contains_a_secret() {
    // The test runtime is single-threaded, so the NATS client's background tasks log through this
    // thread's subscriber too.
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );

    let token = generate_token();
    let wrong = generate_token();
    let server = NatsServer::start("127.0.0.22", &token_config(&token));
    probe_broker(
        &target(&server.address, ProbeAuth::Token(token.clone()), None),
        TIMEOUT,
    )
    .await
    .expect("right token");
    probe_broker(
        &target(&server.address, ProbeAuth::Token(wrong.clone()), None),
        TIMEOUT,
    )
    .await
    .expect_err("wrong token");

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).expect("UTF-8 logs");
    assert!(
        logs.contains("CONNECT"),
        "trace logs were not captured:\n{logs}"
    );
    assert!(!logs.contains(&token), "token logged:\n{logs}");
    assert!(!logs.contains(&wrong), "token logged:\n{logs}");
}
