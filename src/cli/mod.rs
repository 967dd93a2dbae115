//! The `meshery-operator` command line: the controller and the offline tools around the pure core.

mod doctor;
mod input;
pub mod plan;
mod plan_cluster;
mod render;
mod run;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use input::{CustomResource, Document, InputError, parse_documents, read_documents};

/// Exit code for errors, as `kubectl diff` uses it (0 and 1 are "no changes" and "changes").
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "meshery-operator",
    version,
    about = "Deploys and runs Meshery's Broker (NATS) and MeshSync"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: reconcile every Broker and MeshSync until stopped.
    Run(run::RunArgs),
    /// Dry run: render the CRs in the files, diff them against observed objects, and print what
    /// would be created, changed and pruned; with --cluster, the CRs and objects of a live cluster,
    /// checked with server-side dry-run applies. Exit 0: no changes, 1: changes, 2: error.
    Plan(plan::PlanArgs),
    /// Print the objects the operator would create for the CRs in the files, as YAML (Secret values masked).
    Render(render::RenderArgs),
    /// Print the CustomResourceDefinitions for Broker and MeshSync as YAML.
    Crd,
    /// Check an installation the way the troubleshooting guide does, and say what to fix. Reads
    /// only. Exit 0: all good, 1: problems found, 2: something could not be checked.
    Doctor(doctor::DoctorArgs),
}

/// Runs the command line and maps every failure to a one-line message and exit code 2.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Render(args) => render::render(&args).and_then(|yaml| print_stdout(&yaml)),
        Command::Crd => print_stdout(&crate::api::crds_yaml()),
        Command::Doctor(args) => doctor::run(&args),
        Command::Plan(args) => plan::run(&args)
            .map(plan::Outcome::exit_code)
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Writes to stdout, treating a closed pipe (`| head`) as success rather than a panic.
fn print_stdout(text: &str) -> Result<ExitCode, String> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("writing output: {e}")),
    }
}
