//! The NATS-level broker probe: a Broker is Ready only when a client holding the auth token can
//! connect, publish and receive — ready replicas alone (all the Go operator checks) say nothing about
//! whether the token, TLS and the Service actually let MeshSync in.
//!
//! One probe is one short-lived connection: connect with the Broker's credentials (and TLS when it
//! is enabled), send a message to a fresh inbox subject and wait for it to come back, close. Its
//! outcome is an observation for the pure lifecycle; the grace period lives there, not here.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::rustls;
use futures::StreamExt;

use crate::render::credentials::first_user;

/// What to dial and with which credentials.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    /// `host:port` without a scheme, as in `status.endpoint.internal` / `.external`.
    pub address: String,
    pub auth: ProbeAuth,
    /// `Some` when the Broker has `tls.enabled`; the connection then refuses to proceed without TLS.
    pub tls: Option<ProbeTls>,
}

/// The credentials the Broker's `authorization` block expects.
#[derive(Clone)]
pub enum ProbeAuth {
    /// The broker runs without authorization.
    None,
    /// The `token` key of the auth Secret.
    Token(String),
    /// One entry of the auth Secret's `users.json`.
    UserPassword { user: String, password: String },
}

/// Hand-written so that a `{:?}` of a target (in a log line or a panic) never prints a secret.
impl fmt::Debug for ProbeAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeAuth::None => f.write_str("None"),
            ProbeAuth::Token(_) => f.write_str("Token(<redacted>)"),
            ProbeAuth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl ProbeAuth {
    /// The credential an auth Secret holds (`get` reads one of its keys): its `token`, else the
    /// first user of its `users.json`; `None` when it has neither.
    pub fn from_secret<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Option<ProbeAuth> {
        if let Some(token) = get("token") {
            return Some(ProbeAuth::Token(
                String::from_utf8_lossy(token).into_owned(),
            ));
        }
        let (user, password) = get("users.json").and_then(first_user)?;
        Some(ProbeAuth::UserPassword { user, password })
    }

    /// The strings that must never appear in an error message.
    fn secrets(&self) -> Vec<&str> {
        match self {
            ProbeAuth::None => Vec::new(),
            ProbeAuth::Token(token) => vec![token.as_str()],
            ProbeAuth::UserPassword { password, .. } => vec![password.as_str()],
        }
    }
}

/// TLS settings taken from the Broker's TLS Secret.
#[derive(Clone)]
pub struct ProbeTls {
    /// The Secret's `ca.crt` (PEM, one or more certificates). The key is optional in the Secret:
    /// `None` means the server certificate is issued by a CA the platform already trusts.
    pub ca_pem: Option<Vec<u8>>,
}

/// Hand-written to keep kilobytes of PEM out of debug output.
impl fmt::Debug for ProbeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ca = match &self.ca_pem {
            Some(pem) => format!("{} bytes of PEM", pem.len()),
            None => "platform roots".to_string(),
        };
        f.debug_struct("ProbeTls").field("ca", &ca).finish()
    }
}

/// What a successful probe learned about the broker, for logs and Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSuccess {
    /// The NATS server version from its INFO.
    pub server_version: String,
    /// Whether the connection was encrypted (the server may demand TLS even when the CR did not ask).
    pub tls: bool,
    /// Connect, handshake and message round trip together.
    pub elapsed: Duration,
}

/// Why a probe failed. Variant names are stable: they are the `result` label of
/// `meshery_operator_broker_probe_total` (see [`ProbeError::label`]) and can serve as condition
/// reasons. No message ever contains the token or password: details coming from the NATS client
/// are scrubbed of them before they are stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("broker address {address:?} is not a host:port: {detail}")]
    InvalidAddress { address: String, detail: String },
    #[error("the broker's CA certificate (ca.crt of its TLS Secret) is unusable: {detail}")]
    InvalidCaCertificate { detail: String },
    #[error("cannot reach the broker at {address}: {detail}")]
    Unreachable { address: String, detail: String },
    #[error("TLS with the broker at {address} failed: {detail}")]
    TlsFailed { address: String, detail: String },
    #[error("the broker at {address} rejected the credentials from the auth Secret: {detail}")]
    AuthenticationFailed { address: String, detail: String },
    #[error(
        "the broker at {address} did not complete connect and message round trip within {timeout:?}"
    )]
    Timeout { address: String, timeout: Duration },
    #[error(
        "connected to the broker at {address}, but a message published to it did not come back: {detail}"
    )]
    RoundTripFailed { address: String, detail: String },
}

impl ProbeError {
    /// The variant name, for metric labels and condition reasons.
    pub fn label(&self) -> &'static str {
        match self {
            ProbeError::InvalidAddress { .. } => "InvalidAddress",
            ProbeError::InvalidCaCertificate { .. } => "InvalidCaCertificate",
            ProbeError::Unreachable { .. } => "Unreachable",
            ProbeError::TlsFailed { .. } => "TlsFailed",
            ProbeError::AuthenticationFailed { .. } => "AuthenticationFailed",
            ProbeError::Timeout { .. } => "Timeout",
            ProbeError::RoundTripFailed { .. } => "RoundTripFailed",
        }
    }
}

/// Which endpoint the operator can dial: inside a cluster the Service DNS name resolves, outside it
/// (a developer running `meshery-operator run` against a remote cluster) only the external one can.
///
/// `None` means there is nothing dialable yet (say, a LoadBalancer still pending while running
/// outside the cluster); the caller reports that as a skipped probe with its reason rather than as
/// an unreachable broker.
pub fn probe_address(internal: &str, external: &str, in_cluster: bool) -> Option<String> {
    [(in_cluster, internal), (true, external)]
        .into_iter()
        .find(|(usable, address)| *usable && !address.trim().is_empty())
        .map(|(_, address)| address.trim().to_string())
}

/// Whether the operator runs in a Pod: the kubelet sets this variable in every container, and it is
/// what kube's in-cluster configuration keys on too.
pub fn running_in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|host| !host.is_empty())
}

/// The payload sent to the probe's own inbox; any value works, a fixed one makes a mix-up visible.
const PING: &[u8] = b"meshery-operator probe";

/// Connects to the broker, proves a message round trip through it and disconnects.
///
/// `timeout` bounds the whole probe, connect included; a broker that accepts TCP but never speaks
/// NATS yields [`ProbeError::Timeout`], one that refuses the connection [`ProbeError::Unreachable`]
/// as soon as the refusal arrives.
pub async fn probe_broker(
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<ProbeSuccess, ProbeError> {
    let scrub = Scrubber {
        secrets: target.auth.secrets(),
    };
    let url = server_url(&target.address, &scrub)?;
    let options = connect_options(target, timeout)?;
    let address = target.address.as_str();
    let started = Instant::now();

    let probe = async {
        let client = options.connect(url.as_str()).await.map_err(|err| {
            classify_connect_error(address, timeout, target.tls.is_some(), &err, &scrub)
        })?;
        let round_trip = round_trip(&client).await;
        // Close politely; a failure to close does not change what the round trip proved.
        let _ = client.drain().await;
        round_trip.map_err(|detail| ProbeError::RoundTripFailed {
            address: address.to_string(),
            detail: scrub.clean(detail),
        })?;
        let info = client.server_info();
        Ok(ProbeSuccess {
            server_version: info.version,
            tls: target.tls.is_some() || info.tls_required,
            elapsed: started.elapsed(),
        })
    };

    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::Timeout {
                address: address.to_string(),
                timeout,
            })
        })
}

/// Publishes to a fresh inbox subject this connection subscribes to, and waits for the message:
/// a flush alone proves the server answers PINGs, this proves it routes messages for this client.
async fn round_trip(client: &async_nats::Client) -> Result<(), String> {
    let inbox = client.new_inbox();
    let mut subscription = client
        .subscribe(inbox.clone())
        .await
        .map_err(|err| err.to_string())?;
    client
        .publish(inbox, PING.into())
        .await
        .map_err(|err| err.to_string())?;
    client.flush().await.map_err(|err| err.to_string())?;
    match subscription.next().await {
        Some(message) if message.payload.as_ref() == PING => Ok(()),
        Some(_) => Err("a different message arrived on the probe's inbox".to_string()),
        None => Err("the connection closed before the message came back".to_string()),
    }
}

/// Checks that `address` is a bare `host:port` and turns it into a NATS URL.
///
/// Credentials embedded in the address (`token@host:port`, as in MeshSync's `BROKER_URL`) are
/// refused: they would bypass `auth` and could surface in an error message.
fn server_url(address: &str, scrub: &Scrubber) -> Result<String, ProbeError> {
    let invalid = |detail: &str| ProbeError::InvalidAddress {
        address: scrub.clean(strip_userinfo(address)),
        detail: detail.to_string(),
    };
    if address.contains("://") {
        return Err(invalid("expected host:port without a scheme"));
    }
    let url = format!("nats://{address}");
    let parsed = url::Url::parse(&url).map_err(|err| invalid(&err.to_string()))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "credentials belong in the auth Secret, not in the address",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if parsed.port().is_none() {
        return Err(invalid("no port"));
    }
    if !parsed.path().is_empty() || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("unexpected text after the port"));
    }
    Ok(url)
}

fn strip_userinfo(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => address.to_string(),
    }
}

fn connect_options(
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<async_nats::ConnectOptions, ProbeError> {
    let mut options = async_nats::ConnectOptions::new()
        .name("meshery-operator-probe")
        .connection_timeout(timeout)
        // A clustered broker advertises its pods' addresses; the probe is about this endpoint.
        .ignore_discovered_servers();
    options = match &target.auth {
        ProbeAuth::None => options,
        ProbeAuth::Token(token) => options.token(token.clone()),
        ProbeAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.clone())
        }
    };
    if let Some(tls) = &target.tls {
        options = options.require_tls(true);
        if let Some(ca_pem) = &tls.ca_pem {
            options = options.tls_client_config(client_config(ca_pem)?);
        }
    }
    Ok(options)
}

/// A rustls client trusting exactly the certificates in `ca_pem`. The server name checked against
/// the certificate is the host of the probed address (async-nats takes it from the URL).
fn client_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, ProbeError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let invalid = |detail: String| ProbeError::InvalidCaCertificate { detail };
    let certificates = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(format!("not PEM: {err}")))?;
    if certificates.is_empty() {
        return Err(invalid("no CERTIFICATE block in it".to_string()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|err| invalid(err.to_string()))?;
    }
    // An explicit provider: kube and async-nats both link rustls, and relying on a process-wide
    // default would make this depend on who installed one first.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn classify_connect_error(
    address: &str,
    timeout: Duration,
    tls_configured: bool,
    err: &async_nats::ConnectError,
    scrub: &Scrubber,
) -> ProbeError {
    use async_nats::ConnectErrorKind as Kind;

    let address = address.to_string();
    let detail = scrub.clean(err.to_string());
    if is_tls_error(err) {
        // The I/O wrapping is an artefact of how async-nats reports handshakes, not information.
        let detail = detail.strip_prefix("IO error: ").unwrap_or(&detail);
        let detail = if tls_configured {
            detail.to_string()
        } else {
            format!("the server requires TLS, which the probe was not configured for: {detail}")
        };
        return ProbeError::TlsFailed { address, detail };
    }
    match err.kind() {
        Kind::Authentication | Kind::AuthorizationViolation => {
            ProbeError::AuthenticationFailed { address, detail }
        }
        Kind::Tls => ProbeError::TlsFailed { address, detail },
        Kind::ServerParse => ProbeError::InvalidAddress { address, detail },
        // async-nats' own connect timeout, which is set to the probe's.
        Kind::TimedOut => ProbeError::Timeout { address, timeout },
        Kind::Dns | Kind::Io | Kind::MaxReconnects => ProbeError::Unreachable { address, detail },
    }
}

/// Whether a rustls error sits anywhere in the chain. async-nats reports a failed handshake (an
/// unknown issuer, a name mismatch, a plaintext server) as an I/O error, not as its `Tls` kind, and
/// `io::Error::source` skips the error it wraps, so the wrapped error is inspected explicitly.
fn is_tls_error(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && is_tls_error(inner)
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// Removes secrets from text produced by other code (the NATS client, the server's `-ERR` lines).
struct Scrubber<'a> {
    secrets: Vec<&'a str>,
}

impl Scrubber<'_> {
    fn clean(&self, text: impl Into<String>) -> String {
        self.secrets
            .iter()
            .filter(|secret| !secret.is_empty())
            .fold(text.into(), |text, secret| {
                text.replace(secret, "<redacted>")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_choice_follows_where_the_operator_runs() {
        let internal = "b.ns.svc.cluster.local:4222";
        let external = "203.0.113.7:4222";
        assert_eq!(
            probe_address(internal, external, true).as_deref(),
            Some(internal)
        );
        assert_eq!(
            probe_address(internal, external, false).as_deref(),
            Some(external)
        );
        assert_eq!(probe_address(internal, "", false), None);
        assert_eq!(probe_address(internal, "  ", false), None);
        // In a cluster without an internal endpoint yet, the external one still works.
        assert_eq!(probe_address("", external, true).as_deref(), Some(external));
        assert_eq!(probe_address("", "", true), None);
    }

    #[test]
    fn addresses_must_be_bare_host_port() {
        let scrub = Scrubber {
            secrets: vec!["tsecret"],
        };
        assert_eq!(
            server_url("127.0.0.1:4222", &scrub).unwrap(),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            server_url("b.ns.svc.cluster.local:4222", &scrub).unwrap(),
            "nats://b.ns.svc.cluster.local:4222"
        );
        assert!(server_url("[::1]:4222", &scrub).is_ok());
        for bad in [
            "",
            "host",
            ":4222",
            "nats://host:4222",
            "host:4222/x",
            "host:notaport",
            "tsecret@host:4222",
        ] {
            let err = server_url(bad, &scrub).expect_err(bad);
            assert_eq!(err.label(), "InvalidAddress", "{bad}");
            assert!(!err.to_string().contains("tsecret"), "{err}");
        }
    }

    #[test]
    fn debug_output_of_a_target_hides_credentials() {
        let target = ProbeTarget {
            address: "h:1".into(),
            auth: ProbeAuth::Token("tsecret".into()),
            tls: Some(ProbeTls {
                ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            }),
        };
        let shown = format!("{target:?}");
        assert!(!shown.contains("tsecret"), "{shown}");
        let shown = format!(
            "{:?}",
            ProbeAuth::UserPassword {
                user: "alice".into(),
                password: "hunter2".into()
            }
        );
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn scrubbing_ignores_empty_secrets() {
        let scrub = Scrubber {
            secrets: vec!["", "pw"],
        };
        assert_eq!(scrub.clean("a pw b"), "a <redacted> b");
    }

    #[test]
    fn unusable_ca_certificates_are_reported_as_such() {
        for pem in [
            &b""[..],
            b"not pem at all",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        ] {
            let err = client_config(pem).expect_err("accepted");
            assert_eq!(err.label(), "InvalidCaCertificate", "{err}");
        }
    }
}
