//! The README's kube-sim quick start, run as written: the commands a new user pastes first must
//! work. kube-sim refuses protobuf bodies (kube-sim/README.md), so this is also the check that the
//! quick start needs none — `kubectl create namespace` would fail here.

use std::path::{Path, PathBuf};
use std::process::Command;

const README: &str = include_str!("../README.md");

/// The `sh` block after "Try the operator against the simulated API server".
fn quick_start_block() -> String {
    let after = README
        .split("Try the operator against the simulated API server")
        .nth(1)
        .expect("the README has the kube-sim quick start");
    let block = after
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a sh block");
    block.to_string()
}

/// Where cargo put this test's binaries; kube-sim's is built there if this run did not build it.
fn binaries() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_meshery-operator"))
        .parent()
        .unwrap()
        .to_path_buf();
    if !dir.join("kube-sim").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "kube-sim", "--bin", "kube-sim"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building kube-sim");
    }
    dir
}

#[test]
fn the_kube_sim_quick_start_runs_as_written() {
    let block = quick_start_block();
    assert!(
        !block.contains("kubectl create"),
        "kubectl create sends protobuf, which kube-sim refuses:\n{block}"
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sim.kubeconfig");
    let bin = binaries();
    // The build step is what this test's own build did; the rest runs verbatim, with the binaries
    // where this build put them and the kubeconfig in a private directory.
    let script: String = block
        .lines()
        .filter(|line| !line.trim_start().starts_with("cargo build"))
        .map(|line| {
            line.replace("target/debug/", &format!("{}/", bin.display()))
                .replace("/tmp/sim.kubeconfig", &kubeconfig.display().to_string())
        })
        .collect::<Vec<_>>()
        .join("\n");
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}\n"
        ))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the quick start failed:\n{text}");
    for expected in [
        "namespace/meshery serverside-applied",
        "broker.meshery.io/meshery-broker condition met",
        "meshsync.meshery.io/meshery-meshsync condition met",
        "0 to create, 0 to update, 0 to prune",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
}
