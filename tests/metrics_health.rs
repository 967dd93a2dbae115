//! `/metrics`, `/healthz` and `/readyz` scraped over real HTTP, the way Prometheus and the kubelet
//! see them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshery_operator::api::Phase;
use meshery_operator::controller::health::{Endpoints, HealthState, Leadership, serve, serve_all};
use meshery_operator::controller::metrics::{ControllerKind, Metrics, WriteVerb};
use meshery_operator::controller::probe::{ProbeError, ProbeSuccess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct Response {
    status: u16,
    head: String,
    body: String,
}

/// A minimal HTTP/1.1 GET, enough to see exactly what a scraper or a probe would receive.
async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("receive");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    Response {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn ago(duration: Duration) -> Instant {
    Instant::now()
        .checked_sub(duration)
        .expect("the monotonic clock has run that long")
}

const LOCAL: &str = "127.0.0.31:0";

#[tokio::test]
async fn metrics_are_exposed_under_the_dashboard_names() {
    let metrics = Metrics::new();
    drop(metrics.reconcile_started(ControllerKind::Broker));
    for _ in 0..2 {
        let _timer = metrics.reconcile_started(ControllerKind::MeshSync);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    metrics.reconcile_failed(ControllerKind::Broker, "ApplyFailed");
    metrics.api_write("StatefulSet", WriteVerb::Apply);
    metrics.api_write("StatefulSet", WriteVerb::Apply);
    metrics.api_write("Broker", WriteVerb::Patch);
    metrics.api_write("ClusterRole", WriteVerb::Delete);
    metrics.api_write("Event", WriteVerb::Create);
    metrics.set_phase_counts(
        ControllerKind::Broker,
        &BTreeMap::from([(Phase::Ready, 2), (Phase::Degraded, 1)]),
    );
    metrics.broker_probe(&Ok(ProbeSuccess {
        server_version: "2.9.10".into(),
        tls: false,
        elapsed: Duration::from_millis(3),
    }));
    metrics.broker_probe(&Err(ProbeError::Timeout {
        address: "b.ns.svc.cluster.local:4222".into(),
        timeout: Duration::from_secs(5),
    }));
    metrics.broker_probe_skipped();
    metrics.meshsync_connection_check("Absent");
    metrics.meshsync_connection_check("Subscribed");
    metrics.meshsync_connection_check("Subscribed");

    let shutdown = CancellationToken::new();
    let endpoints = Endpoints {
        metrics: Some(metrics),
        health: None,
    };
    let (addr, _task) = serve(LOCAL.parse().unwrap(), endpoints, shutdown.clone())
        .await
        .expect("serve");
    let response = get(addr, "/metrics").await;
    shutdown.cancel();

    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .head
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{}",
        response.head
    );
    let text = response.body;
    let lines: BTreeSet<&str> = text.lines().collect();
    for expected in [
        "# TYPE meshery_operator_reconcile counter",
        r#"meshery_operator_reconcile_total{controller="broker"} 1"#,
        r#"meshery_operator_reconcile_total{controller="meshsync"} 2"#,
        "# TYPE meshery_operator_reconcile_errors counter",
        r#"meshery_operator_reconcile_errors_total{controller="broker",error="ApplyFailed"} 1"#,
        "# TYPE meshery_operator_reconcile_duration_seconds histogram",
        "# UNIT meshery_operator_reconcile_duration_seconds seconds",
        r#"meshery_operator_reconcile_duration_seconds_count{controller="broker"} 1"#,
        r#"meshery_operator_reconcile_duration_seconds_count{controller="meshsync"} 2"#,
        r#"meshery_operator_reconcile_duration_seconds_bucket{le="+Inf",controller="meshsync"} 2"#,
        // The 10 ms sleeps land above the 5 ms bucket.
        r#"meshery_operator_reconcile_duration_seconds_bucket{le="0.005",controller="meshsync"} 0"#,
        r#"meshery_operator_api_writes_total{kind="StatefulSet",verb="apply"} 2"#,
        r#"meshery_operator_api_writes_total{kind="Broker",verb="patch"} 1"#,
        r#"meshery_operator_api_writes_total{kind="ClusterRole",verb="delete"} 1"#,
        r#"meshery_operator_api_writes_total{kind="Event",verb="create"} 1"#,
        "# TYPE meshery_operator_resources gauge",
        r#"meshery_operator_resources{controller="broker",phase="Ready"} 2"#,
        r#"meshery_operator_resources{controller="broker",phase="Degraded"} 1"#,
        r#"meshery_operator_resources{controller="broker",phase="Pending"} 0"#,
        r#"meshery_operator_resources{controller="meshsync",phase="Ready"} 0"#,
        r#"meshery_operator_broker_probe_total{result="Success"} 1"#,
        r#"meshery_operator_broker_probe_total{result="Timeout"} 1"#,
        r#"meshery_operator_broker_probe_total{result="Skipped"} 1"#,
        r#"meshery_operator_meshsync_connection_check_total{result="Absent"} 1"#,
        r#"meshery_operator_meshsync_connection_check_total{result="Subscribed"} 2"#,
        "# EOF",
    ] {
        assert!(lines.contains(expected), "missing {expected:?} in\n{text}");
    }

    // Every sample name, exactly: nothing renamed, nothing doubled (`_total_total`).
    let names: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(['{', ' ']).next().unwrap())
        .collect();
    let expected: BTreeSet<&str> = [
        "meshery_operator_reconcile_total",
        "meshery_operator_reconcile_errors_total",
        "meshery_operator_reconcile_duration_seconds_bucket",
        "meshery_operator_reconcile_duration_seconds_sum",
        "meshery_operator_reconcile_duration_seconds_count",
        "meshery_operator_api_writes_total",
        "meshery_operator_resources",
        "meshery_operator_broker_probe_total",
        "meshery_operator_meshsync_connection_check_total",
    ]
    .into();
    assert_eq!(names, expected, "\n{text}");
}

#[tokio::test]
async fn healthz_fails_only_once_a_watch_has_failed_past_the_threshold() {
    let health = HealthState::new(false, Duration::from_secs(30));
    let shutdown = CancellationToken::new();
    let endpoints = Endpoints {
        metrics: None,
        health: Some(health.clone()),
    };
    let (addr, _task) = serve("127.0.0.32:0".parse().unwrap(), endpoints, shutdown.clone())
        .await
        .expect("serve");

    let healthy = get(addr, "/healthz").await;
    assert_eq!((healthy.status, healthy.body.as_str()), (200, "ok\n"));

    // Failing, but for less than the threshold: watches retry, so this is still healthy.
    health.record_watch_error("meshsync", ago(Duration::from_secs(10)), "connection reset");
    assert_eq!(get(addr, "/healthz").await.status, 200);

    health.record_watch_error(
        "broker",
        ago(Duration::from_secs(45)),
        "brokers.meshery.io is forbidden",
    );
    let unhealthy = get(addr, "/healthz").await;
    assert_eq!(unhealthy.status, 503);
    assert!(
        unhealthy
            .body
            .contains("broker watch has been failing for 45s")
            && unhealthy.body.contains("threshold 30s")
            && unhealthy.body.contains("brokers.meshery.io is forbidden"),
        "{}",
        unhealthy.body
    );
    assert!(!unhealthy.body.contains("meshsync"), "{}", unhealthy.body);

    health.record_watch_ok("broker");
    assert_eq!(get(addr, "/healthz").await.status, 200);
    shutdown.cancel();
}

#[tokio::test]
async fn readyz_waits_for_synced_caches_and_a_settled_leadership_role() {
    let health = HealthState::new(true, Duration::from_secs(30));
    let shutdown = CancellationToken::new();
    let endpoints = Endpoints {
        metrics: None,
        health: Some(health.clone()),
    };
    let (addr, _task) = serve("127.0.0.33:0".parse().unwrap(), endpoints, shutdown.clone())
        .await
        .expect("serve");

    let before_sync = get(addr, "/readyz").await;
    assert_eq!(before_sync.status, 503);
    assert!(before_sync.body.contains("caches"), "{}", before_sync.body);

    health.set_caches_synced(true);
    let electing = get(addr, "/readyz").await;
    assert_eq!(electing.status, 503);
    assert!(
        electing.body.contains("leader election"),
        "{}",
        electing.body
    );

    for role in [Leadership::StandingBy, Leadership::Leading] {
        health.set_leadership(role);
        let ready = get(addr, "/readyz").await;
        assert_eq!(
            (ready.status, ready.body.as_str()),
            (200, "ok\n"),
            "{role:?}"
        );
    }

    // A failing watch is a liveness matter, not a readiness one.
    health.record_watch_error("broker", ago(Duration::from_secs(60)), "gone");
    assert_eq!(get(addr, "/readyz").await.status, 200);
    assert_eq!(get(addr, "/healthz").await.status, 503);

    health.set_caches_synced(false);
    assert_eq!(get(addr, "/readyz").await.status, 503);
    shutdown.cancel();

    // Without leader election, synced caches are enough.
    let health = HealthState::new(false, Duration::from_secs(30));
    let shutdown = CancellationToken::new();
    let endpoints = Endpoints {
        metrics: None,
        health: Some(health.clone()),
    };
    let (addr, _task) = serve("127.0.0.33:0".parse().unwrap(), endpoints, shutdown.clone())
        .await
        .expect("serve");
    assert_eq!(get(addr, "/readyz").await.status, 503);
    health.set_caches_synced(true);
    assert_eq!(get(addr, "/readyz").await.status, 200);
    shutdown.cancel();
}

#[tokio::test]
async fn metrics_and_health_on_separate_addresses_serve_only_their_own_paths() {
    let health = HealthState::new(false, Duration::from_secs(30));
    health.set_caches_synced(true);
    let shutdown = CancellationToken::new();
    let serving = serve_all(
        "127.0.0.34:0".parse().unwrap(),
        "127.0.0.35:0".parse().unwrap(),
        Metrics::new(),
        health,
        shutdown.clone(),
    )
    .await
    .expect("serve");
    assert_ne!(serving.metrics_addr, serving.health_addr);
    assert_eq!(serving.tasks.len(), 2);

    assert_eq!(get(serving.metrics_addr, "/metrics").await.status, 200);
    assert_eq!(get(serving.metrics_addr, "/healthz").await.status, 404);
    assert_eq!(get(serving.metrics_addr, "/readyz").await.status, 404);
    assert_eq!(get(serving.health_addr, "/healthz").await.status, 200);
    assert_eq!(get(serving.health_addr, "/readyz").await.status, 200);
    assert_eq!(get(serving.health_addr, "/metrics").await.status, 404);

    // Shutdown ends both servers cleanly and frees their ports.
    shutdown.cancel();
    for task in serving.tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server stopped")
            .expect("task joined")
            .expect("server ended without error");
    }
    assert!(TcpStream::connect(serving.metrics_addr).await.is_err());
    assert!(TcpStream::connect(serving.health_addr).await.is_err());
}

#[tokio::test]
async fn one_address_for_both_serves_every_path_on_one_listener() {
    let addr: SocketAddr = "127.0.0.36:0".parse().unwrap();
    let health = HealthState::new(false, Duration::from_secs(30));
    let shutdown = CancellationToken::new();
    let serving = serve_all(addr, addr, Metrics::new(), health, shutdown.clone())
        .await
        .expect("serve");
    assert_eq!(serving.metrics_addr, serving.health_addr);
    assert_eq!(serving.tasks.len(), 1);
    for (path, status) in [("/metrics", 200), ("/healthz", 200), ("/readyz", 503)] {
        assert_eq!(
            get(serving.metrics_addr, path).await.status,
            status,
            "{path}"
        );
    }
    shutdown.cancel();
}

#[tokio::test]
async fn a_taken_port_fails_at_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.37:0").expect("bind");
    let addr = taken.local_addr().unwrap();
    let err = serve_all(
        "127.0.0.38:0".parse().unwrap(),
        addr,
        Metrics::new(),
        HealthState::new(false, Duration::from_secs(30)),
        CancellationToken::new(),
    )
    .await
    .expect_err("bound a taken port");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}
