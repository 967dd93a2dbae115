#![allow(dead_code)]
//! Shared helpers for the kube-sim integration tests.

use std::path::PathBuf;
use std::time::Duration;

use kube_sim::{Sim, SimOptions};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crds")
}

/// A sim with the fixture CRDs installed and a fast readiness delay.
pub async fn sim() -> Sim {
    Sim::start(SimOptions {
        crds_dir: Some(fixtures()),
        ready_after: Duration::from_millis(200),
        bookmark_interval: Duration::from_millis(500),
        ..SimOptions::default()
    })
    .await
    .expect("start sim")
}

/// Poll `f` until it returns Some, or panic after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Raw HTTP/1.1 against the sim (for the things typed clients hide). Returns (status, headers, body).
pub async fn raw_full(
    sim: &Sim,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (u16, String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sim.addr())
        .await
        .expect("connect");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        sim.addr(),
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            r = &tail[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, head.to_string(), v)
}

pub async fn raw(
    sim: &Sim,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let b = body.map(|v| v.to_string());
    let (s, _, v) = raw_full(sim, method, path, content_type, b.as_deref()).await;
    (s, v)
}
