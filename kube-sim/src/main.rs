//! `kube-sim`: run the simulated API server standalone.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube_sim::{LoadBalancerMode, Sim, SimOptions};

#[derive(Parser, Debug)]
#[command(
    name = "kube-sim",
    about = "A simulated Kubernetes API server for tests and local runs"
)]
struct Args {
    /// Address to listen on; the chosen address is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Write a kubeconfig for this server here once it serves.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Install every CustomResourceDefinition in this directory at start (Established before serving notice).
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Simulated workload readiness delay, in seconds.
    #[arg(long, default_value_t = 0.5)]
    ready_after: f64,
    /// LoadBalancer Services: `pending` (no ingress) or `loopback` (ingress IPs from 127.0.1.0/24).
    #[arg(long, default_value = "pending", value_parser = ["pending", "loopback"])]
    load_balancer: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SimOptions {
        listen: args.listen,
        ready_after: Duration::from_secs_f64(args.ready_after.max(0.0)),
        load_balancer: if args.load_balancer == "loopback" {
            LoadBalancerMode::Loopback
        } else {
            LoadBalancerMode::Pending
        },
        crds_dir: args.crds.clone(),
        kubeconfig_path: Some(
            args.kubeconfig
                .clone()
                .unwrap_or_else(|| dir.path().join("kubeconfig")),
        ),
        ..SimOptions::default()
    };
    let sim = match Sim::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kube-sim: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", sim.addr());
    eprintln!(
        "kube-sim serving at {} (kubeconfig {})",
        sim.url(),
        sim.kubeconfig_path().display()
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.stop();
    std::process::ExitCode::SUCCESS
}
