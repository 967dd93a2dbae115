//! The parts of the kubelet's API the API server calls for `pods/log` and `pods/exec`, served
//! over HTTPS to clients the cluster's CA certified (the API server's
//! `--kubelet-client-certificate`): containers' output (`containerLogs`), kept in the CRI log
//! format (`<RFC 3339 time> <stream> F <line>`) so `timestamps=true` reports when each line was
//! written; and `exec`, upgraded to a SPDY/3.1 session speaking the remote command protocol
//! `v4.channel.k8s.io` (see [`super::exec`]), which `kubectl exec` and client-go's SPDY executor
//! reach through the API server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::exec;

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// One line of a container's output as the log file keeps it.
fn cri_line(stream: &str, line: &str) -> String {
    format!(
        "{:.9} {stream} F {line}\n",
        k8s_openapi::jiff::Timestamp::now()
    )
}

/// A log file line as `containerLogs` returns it: the output itself, after its time when
/// `timestamps` is asked for; `None` for a line not in the CRI format.
fn served_line(cri: &str, timestamps: bool) -> Option<String> {
    let (time, rest) = cri.split_once(' ')?;
    let (_stream, rest) = rest.split_once(' ')?;
    let (_tag, output) = rest.split_once(' ')?;
    Some(if timestamps {
        format!("{time} {output}\n")
    } else {
        format!("{output}\n")
    })
}

/// Copies the lines of one output stream (`stdout` or `stderr`) of a container into its log file,
/// until the process closes it.
pub async fn pump(
    output: impl AsyncRead + Unpin,
    stream: &'static str,
    log: Arc<std::sync::Mutex<std::fs::File>>,
) {
    use std::io::Write;
    let mut lines = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let entry = cri_line(stream, text.trim_end_matches('\n'));
                let _ = log.lock().unwrap().write_all(entry.as_bytes());
            }
        }
    }
}

/// What a `containerLogs` request asks for.
#[derive(Debug, PartialEq, Eq)]
struct LogRequest {
    namespace: String,
    pod: String,
    container: String,
    tail_lines: Option<usize>,
    timestamps: bool,
    follow: bool,
}

/// The container a kubelet API request target `/<endpoint>/<namespace>/<pod>/<container>?<query>`
/// names, and its query.
pub struct ContainerTarget<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub query: &'a str,
}

/// Reads a request target of `endpoint` (`containerLogs`, `exec`); `None` for another endpoint or
/// another number of path segments.
pub fn container_target<'a>(target: &'a str, endpoint: &str) -> Option<ContainerTarget<'a>> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path
        .strip_prefix('/')?
        .strip_prefix(endpoint)?
        .strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (namespace, pod, container) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some(ContainerTarget {
        namespace,
        pod,
        container,
        query,
    })
}

/// Parses `GET /containerLogs/<namespace>/<pod>/<container>?<query>`.
fn log_request(target: &str) -> Option<LogRequest> {
    let ContainerTarget {
        namespace,
        pod,
        container,
        query,
    } = container_target(target, "containerLogs")?;
    let mut request = LogRequest {
        namespace: namespace.into(),
        pod: pod.into(),
        container: container.into(),
        tail_lines: None,
        timestamps: false,
        follow: false,
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let yes = value == "true" || value == "1";
        match key {
            "tailLines" => request.tail_lines = value.parse().ok(),
            "timestamps" => request.timestamps = yes,
            "follow" => request.follow = yes,
            _ => {}
        }
    }
    Some(request)
}

/// Serves the kubelet API on `listener` with `tls`; pods' log files are under `pods_dir`, by
/// pod UID, which `client` (the node's) looks up.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, client: Client, pods_dir: PathBuf) {
    loop {
        let Ok((connection, _)) = listener.accept().await else {
            continue;
        };
        let (tls, client, pods_dir) = (tls.clone(), client.clone(), pods_dir.clone());
        tokio::spawn(async move {
            if let Ok(stream) = tls.accept(connection).await {
                answer(stream, &client, &pods_dir).await;
            }
        });
    }
}

async fn answer(
    mut stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    client: &Client,
    pods: &Path,
) {
    // Read a byte at a time: after an upgrade, what follows the head is the SPDY session's.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.split(' ');
    let (method, target) = (
        request_line.next().unwrap_or_default(),
        request_line.next().unwrap_or_default(),
    );
    if target.starts_with("/exec/") && matches!(method, "GET" | "POST") {
        return exec(stream, &head, target, client).await;
    }
    let Some(request) = (method == "GET").then(|| log_request(target)).flatten() else {
        let _ = respond(
            &mut stream,
            "404 Not Found",
            "this node serves containerLogs and exec only\n",
        )
        .await;
        return;
    };
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &request.namespace);
    let Ok(Some(pod)) = pods_api.get_opt(&request.pod).await else {
        let _ = respond(&mut stream, "404 Not Found", "no such pod on this node\n").await;
        return;
    };
    let log = pods
        .join(pod.uid().unwrap_or_default())
        .join(format!("{}.log", request.container));
    let Ok(written) = read_from(&log, 0).await else {
        let body = format!("container {} has not started\n", request.container);
        let _ = respond(&mut stream, "400 Bad Request", &body).await;
        return;
    };
    let header = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
    if stream.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    let lines: Vec<&str> = written.lines().collect();
    let skip = request
        .tail_lines
        .map_or(0, |tail| lines.len().saturating_sub(tail));
    for line in &lines[skip..] {
        if let Some(served) = served_line(line, request.timestamps)
            && stream.write_all(served.as_bytes()).await.is_err()
        {
            return;
        }
    }
    let mut offset = written.len();
    // Following ends when the client goes away or the pod (and its logs) is removed.
    while request.follow && stream.flush().await.is_ok() {
        tokio::time::sleep(FOLLOW_POLL).await;
        let Ok(new) = read_from(&log, offset).await else {
            break;
        };
        let complete = new.rfind('\n').map_or(0, |end| end + 1);
        for line in new[..complete].lines() {
            if let Some(served) = served_line(line, request.timestamps)
                && stream.write_all(served.as_bytes()).await.is_err()
            {
                return;
            }
        }
        offset += complete;
    }
    let _ = stream.shutdown().await;
}

/// The values of the head's `name` headers.
fn header_values<'a>(head: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    head.lines().skip(1).filter_map(move |line| {
        let (field, value) = line.split_once(':')?;
        field
            .trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim())
    })
}

/// Upgrades an `exec` request to a SPDY/3.1 session speaking the remote command protocol and
/// serves it, as the kubelet's streaming server does; refusals are plain HTTP errors.
async fn exec(
    mut stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    head: &str,
    target: &str,
    client: &Client,
) {
    let Some(request) = exec::exec_request(target) else {
        let body = "an exec request names a container, a command and at least one stream\n";
        let _ = respond(&mut stream, "400 Bad Request", body).await;
        return;
    };
    let has = |name: &str, token: &str| {
        header_values(head, name).any(|value| value.to_ascii_lowercase().contains(token))
    };
    if !has("connection", "upgrade") || !has("upgrade", "spdy/3.1") {
        let body = "unable to upgrade: exec needs Connection: Upgrade and Upgrade: SPDY/3.1\n";
        let _ = respond(&mut stream, "400 Bad Request", body).await;
        return;
    }
    if !exec::offers_protocol(header_values(head, "x-stream-protocol-version")) {
        let body = format!(
            "unable to upgrade: this node speaks {} only\n",
            exec::PROTOCOL
        );
        let _ = respond(&mut stream, "403 Forbidden", &body).await;
        return;
    }
    let container = match running_container(client, &request).await {
        Ok(container) => container,
        Err((status, body)) => {
            let _ = respond(&mut stream, status, &body).await;
            return;
        }
    };
    let switching = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: {}\r\n\r\n",
        exec::PROTOCOL
    );
    if stream.write_all(switching.as_bytes()).await.is_ok() && stream.flush().await.is_ok() {
        exec::serve(stream, request, container).await;
    }
}

/// The main process of the container an exec names, from its status (`containerID` is
/// `test-cluster://<pid>`); else the HTTP status and message refusing the exec.
async fn running_container(
    client: &Client,
    request: &exec::ExecRequest,
) -> Result<exec::Target, (&'static str, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &request.namespace);
    let Ok(Some(pod)) = pods.get_opt(&request.pod).await else {
        return Err(("404 Not Found", "no such pod on this node\n".into()));
    };
    let pid = pod
        .status
        .iter()
        .flat_map(|status| status.container_statuses.iter().flatten())
        .find(|status| status.name == request.container)
        .filter(|status| status.state.as_ref().is_some_and(|s| s.running.is_some()))
        .and_then(|status| {
            status
                .container_id
                .as_deref()?
                .strip_prefix("test-cluster://")
        })
        .and_then(|pid| pid.parse().ok());
    let not_running = || format!("container {} is not running\n", request.container);
    let pid = pid.ok_or_else(|| ("400 Bad Request", not_running()))?;
    exec::Target::of(pid).map_err(|_| ("400 Bad Request", not_running()))
}

/// What the log file holds from byte `offset` on: only what a follower has not sent yet.
async fn read_from(log: &Path, offset: usize) -> std::io::Result<String> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(log).await?;
    file.seek(std::io::SeekFrom::Start(offset as u64)).await?;
    let mut text = String::new();
    file.read_to_string(&mut text).await?;
    Ok(text)
}

async fn respond(
    stream: &mut (impl AsyncWrite + Unpin),
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The TLS side of the kubelet API: the node's serving certificate, and client certificates the
/// cluster's CA issued (the API server's) required.
pub fn tls_acceptor(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<TlsAcceptor, rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |e: rustls::pki_types::pem::Error| rustls::Error::General(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.map_err(invalid)?)?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(invalid)?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_keeps_its_time_and_is_served_with_or_without_it() {
        let line = cri_line("stdout", "Server is ready");
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(
            time.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
            "{time}"
        );
        assert_eq!(rest, "stdout F Server is ready\n");
        let stored = line.trim_end();
        assert_eq!(
            served_line(stored, false).as_deref(),
            Some("Server is ready\n")
        );
        assert_eq!(
            served_line(stored, true),
            Some(format!("{time} Server is ready\n"))
        );
        assert_eq!(served_line("not cri", false), None);
    }

    #[test]
    fn container_logs_requests_are_read_as_the_api_server_sends_them() {
        assert_eq!(
            log_request(
                "/containerLogs/meshery/meshery-broker-0/nats?follow=true&tailLines=5&timestamps=true"
            ),
            Some(LogRequest {
                namespace: "meshery".into(),
                pod: "meshery-broker-0".into(),
                container: "nats".into(),
                tail_lines: Some(5),
                timestamps: true,
                follow: true,
            })
        );
        assert_eq!(
            log_request("/containerLogs/ns/p/c").map(|r| (r.tail_lines, r.follow)),
            Some((None, false))
        );
        assert_eq!(log_request("/exec/ns/p/c?command=sh"), None);
        assert_eq!(log_request("/containerLogs/ns/p"), None);
        assert_eq!(log_request("/containerLogs/ns/p/c/more"), None);
        assert_eq!(log_request("/containerLogsx/ns/p/c"), None);
    }
}
