//! What reached etcd: a watch on every Kubernetes key through etcd's JSON gateway (`/v3/watch`),
//! so each write is known by its key and can be told apart as the benchmark's objects or the
//! cluster's own background (node heartbeats, the API server's identity Lease); and etcd's own
//! count of them (`etcd_mvcc_put_total` + `etcd_mvcc_delete_total`), which the watch must match.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// Where Kubernetes keeps its objects, and the first key after them.
const PREFIX: &str = "/registry/";
const PREFIX_END: &str = "/registry0";

/// etcd writes (puts and deletes) in one window, by resource (`<resource>` or `<group>/<resource>`
/// as the key names it).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdWrites {
    /// On the benchmark's objects: anything in a benchmark namespace (CRs, children, Events,
    /// pods) and the cluster-scoped children named after one.
    pub benchmark: BTreeMap<String, u64>,
    /// Everything else: the cluster's own background.
    pub other: BTreeMap<String, u64>,
    /// etcd's own count of puts and deletes in the window, from its `/metrics`.
    #[serde(default)]
    pub counted_by_etcd: Option<u64>,
}

impl EtcdWrites {
    pub fn benchmark_total(&self) -> u64 {
        self.benchmark.values().sum()
    }

    pub fn other_total(&self) -> u64 {
        self.other.values().sum()
    }

    pub fn add(&mut self, key: &str, namespace_prefix: &str) {
        let (resource, benchmark) = classify_key(key, namespace_prefix);
        let map = if benchmark {
            &mut self.benchmark
        } else {
            &mut self.other
        };
        *map.entry(resource).or_default() += 1;
    }
}

/// The resource a Kubernetes etcd key is of, and whether it is one of the benchmark's objects:
/// `/registry/<resource>/<namespace>/<name>`, `/registry/<group>/<resource>/<namespace>/<name>`,
/// `/registry/services/specs/<namespace>/<name>`, cluster-scoped keys without a namespace.
/// Benchmark namespaces are `<namespace_prefix><number>`; a cluster-scoped child carries its
/// CR's namespace in its name (`meshery-meshsync-bench-3-meshsync`).
pub fn classify_key(key: &str, namespace_prefix: &str) -> (String, bool) {
    let path = key.strip_prefix(PREFIX).unwrap_or(key);
    let segments: Vec<&str> = path.split('/').collect();
    let is_benchmark_namespace = |segment: &str| {
        segment
            .strip_prefix(namespace_prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    };
    let names_benchmark_namespace = |segment: &str| {
        segment.split(namespace_prefix).skip(1).any(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            !digits.is_empty() && rest[digits.len()..].starts_with('-')
        })
    };
    let benchmark = segments
        .iter()
        .any(|s| is_benchmark_namespace(s) || names_benchmark_namespace(s));
    let resource = match segments.as_slice() {
        [group, resource, ..] if group.contains('.') => format!("{group}/{resource}"),
        ["services", kind, ..] => format!("services/{kind}"),
        [resource, ..] => (*resource).to_string(),
        [] => String::new(),
    };
    (resource, benchmark)
}

/// etcd's count of puts and deletes since it started, from its `/metrics` at `address` (`host:port`).
pub fn write_counter(address: &str) -> Result<u64, String> {
    let mut stream =
        TcpStream::connect(address).map_err(|e| format!("connecting to etcd at {address}: {e}"))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n")
        .map_err(|e| format!("asking etcd for its metrics: {e}"))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text)
        .map_err(|e| format!("reading etcd's metrics: {e}"))?;
    writes_in_metrics(&text).ok_or_else(|| "etcd's metrics have no etcd_mvcc_put_total".to_string())
}

/// `etcd_mvcc_put_total` + `etcd_mvcc_delete_total` in a Prometheus text exposition.
fn writes_in_metrics(text: &str) -> Option<u64> {
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some((value("etcd_mvcc_put_total")? + value("etcd_mvcc_delete_total").unwrap_or(0.0)) as u64)
}

/// A watch on every key, recording when each write arrived.
pub struct EtcdWatch {
    address: String,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    error: Arc<Mutex<Option<String>>>,
}

impl EtcdWatch {
    /// Opens the watch at `url` (`http://host:port`) and returns once etcd confirmed it.
    pub fn start(url: &str) -> Result<EtcdWatch, String> {
        let address = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("etcd URL {url}: only http:// is supported"))?
            .trim_end_matches('/')
            .to_string();
        let mut stream = TcpStream::connect(address.as_str())
            .map_err(|e| format!("connecting to etcd at {address}: {e}"))?;
        let body = serde_json::json!({"create_request": {
            "key": BASE64.encode(PREFIX),
            "range_end": BASE64.encode(PREFIX_END),
        }})
        .to_string();
        // HTTP/1.0: the gateway streams its messages unchunked until the connection closes.
        write!(
            stream,
            "POST /v3/watch HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| format!("opening the etcd watch: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader
            .read_line(&mut status)
            .map_err(|e| format!("reading etcd's answer: {e}"))?;
        if !status.contains(" 200 ") {
            return Err(format!("etcd refused the watch: {}", status.trim()));
        }
        loop {
            let mut header = String::new();
            let read = reader
                .read_line(&mut header)
                .map_err(|e| format!("reading etcd's headers: {e}"))?;
            if read == 0 || header == "\r\n" {
                break;
            }
        }
        let mut messages =
            serde_json::Deserializer::from_reader(reader).into_iter::<serde_json::Value>();
        match messages.next() {
            Some(Ok(first)) if first["result"]["created"] == true => {}
            other => return Err(format!("etcd did not confirm the watch: {other:?}")),
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let error = Arc::new(Mutex::new(None));
        let (seen_by_thread, error_by_thread) = (seen.clone(), error.clone());
        std::thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || {
                for message in messages {
                    let message = match message {
                        Ok(message) => message,
                        Err(e) => {
                            *error_by_thread.lock().unwrap() =
                                Some(format!("the etcd watch ended: {e}"));
                            return;
                        }
                    };
                    let now = Instant::now();
                    let events = message["result"]["events"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let mut seen = seen_by_thread.lock().unwrap();
                    for event in events {
                        let key = event["kv"]["key"]
                            .as_str()
                            .and_then(|k| BASE64.decode(k).ok())
                            .map(|k| String::from_utf8_lossy(&k).into_owned())
                            .unwrap_or_default();
                        seen.push((now, key));
                    }
                }
                *error_by_thread.lock().unwrap() = Some("the etcd watch ended".into());
            })
            .map_err(|e| format!("starting the etcd watch thread: {e}"))?;
        Ok(EtcdWatch {
            address,
            seen,
            error,
        })
    }

    /// etcd's own count of writes so far.
    pub fn counter(&self) -> Result<u64, String> {
        write_counter(&self.address)
    }

    /// The writes that arrived in `[from, to)`; `Err` when the watch broke (the count would be short).
    pub fn writes(
        &self,
        from: Instant,
        to: Instant,
        namespace_prefix: &str,
    ) -> Result<EtcdWrites, String> {
        if let Some(error) = self.error.lock().unwrap().clone() {
            return Err(error);
        }
        let mut writes = EtcdWrites::default();
        for (at, key) in self.seen.lock().unwrap().iter() {
            if *at >= from && *at < to {
                writes.add(key, namespace_prefix);
            }
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_attributed_to_the_benchmark_by_namespace_or_by_the_namespace_in_a_cluster_scoped_name()
     {
        let cases = [
            (
                "/registry/meshery.io/brokers/bench-3/broker",
                "meshery.io/brokers",
                true,
            ),
            (
                "/registry/statefulsets/bench-3/broker",
                "statefulsets",
                true,
            ),
            (
                "/registry/services/specs/bench-12/broker-client",
                "services/specs",
                true,
            ),
            ("/registry/events/bench-0/broker.1876", "events", true),
            (
                "/registry/clusterroles/meshery-meshsync-bench-3-meshsync",
                "clusterroles",
                true,
            ),
            (
                "/registry/leases/kube-node-lease/test-node",
                "leases",
                false,
            ),
            (
                "/registry/leases/kube-system/apiserver-abc",
                "leases",
                false,
            ),
            ("/registry/namespaces/bench-operator", "namespaces", false),
            ("/registry/clusterroles/bench-", "clusterroles", false),
            ("/registry/configmaps/default/bench-3x", "configmaps", false),
        ];
        for (key, resource, benchmark) in cases {
            assert_eq!(
                classify_key(key, "bench-"),
                (resource.to_string(), benchmark),
                "{key}"
            );
        }
    }

    #[test]
    fn etcds_write_count_is_its_puts_and_deletes() {
        let text = "# HELP etcd_mvcc_put_total Total number of puts seen by this member.\n\
                    # TYPE etcd_mvcc_put_total counter\n\
                    etcd_mvcc_put_total 1234\n\
                    etcd_mvcc_delete_total 16\n\
                    etcd_mvcc_put_total_other 9\n";
        assert_eq!(writes_in_metrics(text), Some(1250));
        assert_eq!(writes_in_metrics("etcd_mvcc_range_total 3\n"), None);
    }

    #[test]
    fn writes_are_counted_by_resource_on_either_side() {
        let mut writes = EtcdWrites::default();
        writes.add("/registry/leases/kube-node-lease/test-node", "bench-");
        writes.add("/registry/leases/kube-node-lease/test-node", "bench-");
        writes.add("/registry/pods/bench-1/broker-0", "bench-");
        assert_eq!(writes.benchmark_total(), 1);
        assert_eq!(writes.other_total(), 2);
        assert_eq!(writes.other["leases"], 2);
    }
}
