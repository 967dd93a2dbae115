//! `nats.conf` for a Broker. Secrets never appear in it: the server reads them from its environment
//! (`$NATS_TOKEN`) or from files mounted from the auth Secret.

use crate::api::{Broker, NATS_CLIENT_PORT, NATS_CLUSTER_PORT, NATS_MONITOR_PORT, Quantity};

use super::AuthKind;
use super::meta::namespace_of;

/// Where the ConfigMap is mounted; `nats.conf` inside it is what the server is started with.
pub const CONFIG_DIR: &str = "/etc/nats";
pub const CONFIG_FILE_NAME: &str = "nats.conf";
/// Where the TLS Secret (`tls.crt`, `tls.key`) is mounted.
pub const TLS_DIR: &str = "/etc/nats-tls";
/// Where a users.json auth Secret is mounted. A sibling of `CONFIG_DIR` rather than inside it, because
/// nested mounts inside a read-only ConfigMap volume are fragile; NATS resolves `include` relative to the
/// config file, hence the `../` in the rendered include.
pub const AUTH_DIR: &str = "/etc/nats-auth";
pub const USERS_FILE_NAME: &str = "users.json";
/// The users.json file as `nats.conf` includes it: relative to `CONFIG_DIR`, because NATS joins every
/// include path onto the config file's directory.
pub const USERS_INCLUDE: &str = "../nats-auth/users.json";
/// A writable directory for the pid file the lame-duck preStop hook signals through.
pub const PID_DIR: &str = "/var/run/nats";
pub const PID_FILE: &str = "/var/run/nats/nats.pid";
/// Where the JetStream volume is mounted, and the store directory within it.
pub const DATA_DIR: &str = "/data";
pub const JETSTREAM_STORE_DIR: &str = "/data/jetstream";
/// The JetStream file store per replica when `spec.jetstream.storageSize` is unset.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";

/// The env var holding the auth token, set from the auth Secret.
pub const TOKEN_ENV: &str = "NATS_TOKEN";
/// The env var holding the pod name (the downward API), which names the server in the cluster.
pub const POD_NAME_ENV: &str = "POD_NAME";
/// The user name routes authenticate with; the password is the auth token. NATS rejects tokens for
/// cluster authorization, so the token is carried as a password instead.
pub const ROUTE_USER: &str = "route";

/// How long a terminating server keeps evicting clients gradually, so they reconnect elsewhere; the
/// shortest duration nats-server accepts.
pub const LAME_DUCK_DURATION_SECONDS: i64 = 30;
/// How long a server waits after entering lame duck before it starts evicting clients.
pub const LAME_DUCK_GRACE_PERIOD_SECONDS: i64 = 10;

/// The env var carrying the full URL of the route to replica `ordinal`. A route URL must embed the
/// route credentials and NATS cannot splice a variable into a string, so the kubelet builds each URL
/// (expanding `$(NATS_TOKEN)`) and `nats.conf` refers to it as a whole value.
pub fn route_env(ordinal: i32) -> String {
    format!("NATS_ROUTE_{ordinal}")
}

/// The stable DNS name of replica `ordinal` through the headless Service.
pub fn replica_host(broker: &Broker, ordinal: i32) -> String {
    let name = broker.metadata.name.as_deref().unwrap_or_default();
    let namespace = namespace_of(&broker.metadata);
    format!("{name}-{ordinal}.{name}-headless.{namespace}.svc.cluster.local")
}

/// The route URL to replica `ordinal`, with the kubelet reference to the token when routes authenticate.
pub fn route_url(broker: &Broker, ordinal: i32, auth: AuthKind) -> String {
    let host = replica_host(broker, ordinal);
    match auth {
        AuthKind::Token => format!("nats://{ROUTE_USER}:$({TOKEN_ENV})@{host}:{NATS_CLUSTER_PORT}"),
        AuthKind::Users => format!("nats://{host}:{NATS_CLUSTER_PORT}"),
    }
}

/// Renders `nats.conf`. `auth` decides where credentials come from: a token in `$NATS_TOKEN` (which also
/// authenticates routes), or a users.json file included from the auth Secret's mount (routes then
/// authenticate with nothing, as there is no single shared credential to give them).
pub fn render(broker: &Broker, auth: AuthKind) -> String {
    let spec = &broker.spec;
    let name = broker.metadata.name.as_deref().unwrap_or_default();
    let mut conf = String::new();
    let mut line = |text: &str| {
        conf.push_str(text);
        conf.push('\n');
    };
    line("# Rendered by meshery-operator from the Broker spec; edits are overwritten.");
    line(&format!("server_name: ${POD_NAME_ENV}"));
    line(&format!("port: {NATS_CLIENT_PORT}"));
    line(&format!("http_port: {NATS_MONITOR_PORT}"));
    line(&format!("pid_file: \"{PID_FILE}\""));
    line(&format!(
        "lame_duck_duration: \"{LAME_DUCK_DURATION_SECONDS}s\""
    ));
    line(&format!(
        "lame_duck_grace_period: \"{LAME_DUCK_GRACE_PERIOD_SECONDS}s\""
    ));
    let config = spec.config.clone().unwrap_or_default();
    if let Some(bytes) = config.max_payload.as_deref().and_then(bytes_of) {
        line(&format!("max_payload: {bytes}"));
    }
    if let Some(connections) = config.max_connections {
        line(&format!("max_connections: {connections}"));
    }
    line(&format!("debug: {}", config.debug));
    line(&format!("trace: {}", config.trace));
    line("authorization {");
    match auth {
        AuthKind::Token => line(&format!("  token: ${TOKEN_ENV}")),
        AuthKind::Users => line(&format!("  include \"{USERS_INCLUDE}\"")),
    }
    line("}");
    if spec.tls_enabled() {
        line("tls {");
        line(&format!("  cert_file: \"{TLS_DIR}/tls.crt\""));
        line(&format!("  key_file: \"{TLS_DIR}/tls.key\""));
        line("}");
    }
    if spec.jetstream_enabled() {
        let size = spec
            .jetstream
            .as_ref()
            .and_then(|j| j.storage_size.as_deref())
            .unwrap_or(DEFAULT_STORAGE_SIZE);
        line("jetstream {");
        line(&format!("  store_dir: \"{JETSTREAM_STORE_DIR}\""));
        if let Some(bytes) = bytes_of(size) {
            line(&format!("  max_file_store: {bytes}"));
        }
        line("}");
    }
    if spec.clustered() {
        line("cluster {");
        line(&format!("  name: \"{name}\""));
        line(&format!("  port: {NATS_CLUSTER_PORT}"));
        // Clients reach the broker through its Service; pod IPs advertised to them may be unreachable.
        line("  no_advertise: true");
        if auth == AuthKind::Token {
            line(&format!(
                "  authorization {{ user: \"{ROUTE_USER}\", password: ${TOKEN_ENV} }}"
            ));
        }
        line("  routes: [");
        for ordinal in 0..spec.size.max(1) {
            let host = replica_host(broker, ordinal);
            line(&format!(
                "    ${} # {host}:{NATS_CLUSTER_PORT}",
                route_env(ordinal)
            ));
        }
        line("  ]");
        line("}");
    }
    conf
}

/// A quantity as whole bytes, so the server never has to interpret Kubernetes suffixes.
fn bytes_of(quantity: &str) -> Option<i128> {
    Quantity::parse(quantity).ok().map(Quantity::ceil_units)
}

#[cfg(test)]
mod tests {
    use std::path::{Component, Path, PathBuf};

    use super::*;

    #[test]
    fn the_users_include_resolves_to_the_auth_mount() {
        let joined = Path::new(CONFIG_DIR).join(USERS_INCLUDE);
        let resolved = joined
            .components()
            .fold(PathBuf::new(), |mut path, component| {
                match component {
                    Component::ParentDir => {
                        path.pop();
                    }
                    other => path.push(other),
                }
                path
            });
        assert_eq!(resolved, Path::new(AUTH_DIR).join(USERS_FILE_NAME));
    }
}
