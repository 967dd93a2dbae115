//! `control-plane --kubeconfig FILE`: starts the test cluster in the foreground, writes the admin
//! kubeconfig to FILE once the API server is ready, and stops everything (deleting its state and
//! FILE) on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use test_cluster::{ControlPlane, Options};

#[derive(Parser)]
#[command(about = "A real Kubernetes control plane on loopback, for tests and local runs")]
struct Args {
    /// Where to write the admin kubeconfig once `/readyz` is ok.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Where the API server writes its audit log (JSON lines, metadata level).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Run the pods' containers as local processes (the images the node knows: `nats`), each
    /// pod in a network namespace of its own whose address is reachable from this machine.
    /// Needs root (network and mount namespaces).
    #[arg(long)]
    run_pods: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let began = std::time::Instant::now();
    let control_plane = match ControlPlane::start(Options {
        audit_log: args.audit_log,
        run_pods: args.run_pods,
        ..Options::default()
    }) {
        Ok(control_plane) => control_plane,
        Err(e) => {
            eprintln!("control-plane: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = control_plane.write_kubeconfig(&args.kubeconfig) {
        eprintln!("control-plane: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "control-plane: ready in {:.1} s at {}; kubeconfig {}; logs in {}; stop with Ctrl-C or SIGTERM",
        began.elapsed().as_secs_f64(),
        control_plane.server(),
        args.kubeconfig.display(),
        control_plane.state_dir().display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a signal runtime");
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    });
    eprintln!("control-plane: stopping");
    drop(control_plane);
    let _ = std::fs::remove_file(&args.kubeconfig);
    ExitCode::SUCCESS
}
