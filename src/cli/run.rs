//! `meshery-operator run`: the controller, configured from flags.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::controller::{
    ApplyStrategy, BrokerProbeMode, LEASE_NAME, LeaderElection, RunOptions, Settings,
};
use crate::render::{DEFAULT_MESHSYNC_VERSION, DEFAULT_NATS_VERSION};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Reconcile only CRs in this namespace (default: all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Where to serve Prometheus metrics (`/metrics`).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Where to serve `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,
    /// Hold the `meshery-operator` Lease before reconciling, so only one replica acts.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (default: the operator's own, from POD_NAMESPACE).
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// Namespace of the Go Meshery Operator's leader Lease, its `--namespace` (default: the
    /// operator's own). While the Go operator holds it, this one does not reconcile.
    #[arg(long)]
    pub go_operator_namespace: Option<String>,
    /// How many CRs of each kind are reconciled at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Dial each Broker with a NATS client (auth included) before calling it Ready.
    #[arg(long, value_enum, default_value_t = BrokerProbeMode::Auto)]
    pub broker_probe: BrokerProbeMode,
    /// Reconcile fully but never write: log every planned patch instead.
    #[arg(long)]
    pub dry_run: bool,
    /// How often converged CRs are checked again without any event, in seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub resync_seconds: u64,
    /// How long a Broker's NATS handshake may fail before it is Degraded, in seconds.
    #[arg(long, default_value_t = 30)]
    pub probe_grace_seconds: u64,
    /// How often a Ready Broker is probed again, in seconds (no API requests while nothing changes).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub probe_interval_seconds: u64,
    /// How long a MeshSync's broker may show no MeshSync connection (its `/connz`) before the
    /// MeshSync is Degraded, in seconds. MeshSync's client gives up reconnecting after about 120 s.
    #[arg(long, default_value_t = 150)]
    pub meshsync_connection_grace_seconds: u64,
    /// Restart (as `kubectl rollout restart` does) a MeshSync that has been disconnected for the
    /// grace period. Off by default: a restart re-lists the whole cluster.
    #[arg(long)]
    pub restart_disconnected_meshsync: bool,
    /// How children and status are written (benchmarks only): `diff`, `always-apply`, `dry-run-diff`.
    #[arg(long, value_enum, default_value_t = ApplyStrategy::Diff, hide = true)]
    pub apply_strategy: ApplyStrategy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Starts the controller against the cluster the kubeconfig (or the in-cluster environment) names.
pub fn run(args: &RunArgs) -> Result<ExitCode, String> {
    init_logging(args.log_format);
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async {
        let config = kube::Config::infer()
            .await
            .map_err(|e| format!("no usable kubeconfig or in-cluster environment: {e}"))?;
        let api_server_host = config.cluster_url.host().unwrap_or_default().to_string();
        let client =
            kube::Client::try_from(config).map_err(|e| format!("building the API client: {e}"))?;
        let own_namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "meshery".into());
        let leader_election = args.leader_elect.then(|| LeaderElection {
            namespace: args
                .leader_election_namespace
                .clone()
                .unwrap_or_else(|| own_namespace.clone()),
            lease_name: LEASE_NAME.into(),
            identity: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("meshery-operator-{}", std::process::id())),
        });
        let options = RunOptions {
            settings: Settings {
                namespace: args.namespace.clone(),
                dry_run: args.dry_run,
                broker_probe: args.broker_probe,
                in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
                api_server_host,
                resync_interval: Duration::from_secs(args.resync_seconds),
                probe_grace: Duration::from_secs(args.probe_grace_seconds),
                probe_interval: Duration::from_secs(args.probe_interval_seconds),
                probe_timeout: Duration::from_secs(3),
                meshsync_connection_grace: Duration::from_secs(
                    args.meshsync_connection_grace_seconds,
                ),
                restart_disconnected_meshsync: args.restart_disconnected_meshsync,
                nats_version: DEFAULT_NATS_VERSION.into(),
                meshsync_version: DEFAULT_MESHSYNC_VERSION.into(),
                go_operator_namespace: args
                    .go_operator_namespace
                    .clone()
                    .unwrap_or_else(|| own_namespace.clone()),
            },
            metrics_addr: args.metrics_addr,
            health_addr: args.health_addr,
            leader_election,
            concurrency: args.concurrency,
        };
        crate::controller::run_with_strategy(
            client,
            options,
            args.apply_strategy,
            crate::controller::shutdown_signal(),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    // Colour only for a person at a terminal: piped into a file, `kubectl logs` or a log
    // collector, escape codes are noise.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
