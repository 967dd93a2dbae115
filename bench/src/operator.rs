//! The operator under test as a child process: ours with one `--apply-strategy`, or the real Go
//! Meshery Operator; its start-up time to `/readyz`, CPU seconds and peak RSS from `/proc`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which operator a run measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorKind {
    /// meshery-operator (this repository) with the given `--apply-strategy`.
    Ours { strategy: String },
    /// The Go Meshery Operator (github.com/meshery/meshery-operator).
    Go,
}

impl OperatorKind {
    /// `diff`, `always-apply`, `dry-run-diff` or `go`, as `--operators` spells them.
    pub fn parse(name: &str) -> Result<OperatorKind, String> {
        match name {
            "go" => Ok(OperatorKind::Go),
            "diff" | "always-apply" | "dry-run-diff" => Ok(OperatorKind::Ours {
                strategy: name.to_string(),
            }),
            other => Err(format!(
                "unknown operator {other:?}: expected diff, always-apply, dry-run-diff (ours, by apply strategy) or go (the Go Meshery Operator)"
            )),
        }
    }

    pub fn label(&self) -> String {
        match self {
            OperatorKind::Ours { strategy } => format!("ours: {strategy}"),
            OperatorKind::Go => "Go operator".to_string(),
        }
    }

    pub fn file_label(&self) -> String {
        match self {
            OperatorKind::Ours { strategy } => strategy.clone(),
            OperatorKind::Go => "go".to_string(),
        }
    }
}

/// Where the two binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub ours: PathBuf,
    pub go: Option<PathBuf>,
}

/// A running operator; killed on drop.
pub struct RunningOperator {
    child: Child,
    health: SocketAddr,
    metrics: Option<SocketAddr>,
    spawned: Instant,
}

impl RunningOperator {
    /// Starts `kind` against the cluster of `kubeconfig`, logging to `log`. Ours runs as in the
    /// kube-sim benchmark (broker probe off: no pod runs a NATS server); the Go operator as its
    /// manifests run it, minus what needs a pod (no conversion webhook, metrics off) and leader
    /// election (ours runs without it too).
    pub fn spawn(
        kind: &OperatorKind,
        binaries: &Binaries,
        kubeconfig: &Path,
        log: &Path,
        resync_seconds: u64,
        namespace: &str,
    ) -> Result<RunningOperator, String> {
        let health = free_addr()?;
        let log_file =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let (mut command, metrics) = match kind {
            OperatorKind::Ours { strategy } => {
                let metrics = free_addr()?;
                let mut command = Command::new(&binaries.ours);
                command
                    .args(["run", "--broker-probe", "off", "--apply-strategy", strategy])
                    .args(["--metrics-addr", &metrics.to_string()])
                    .args(["--health-addr", &health.to_string()])
                    .args(["--resync-seconds", &resync_seconds.to_string()])
                    .env("POD_NAMESPACE", namespace);
                (command, Some(metrics))
            }
            OperatorKind::Go => {
                let binary = binaries.go.as_ref().ok_or(
                    "the Go operator's binary is unknown: pass --go-operator-bin (test-cluster/build.sh builds it)",
                )?;
                let mut command = Command::new(binary);
                command
                    .arg("--metrics-addr=0")
                    .arg(format!("--health-probe-bind-address={health}"))
                    .args(["--namespace", namespace])
                    .env("ENABLE_WEBHOOKS", "false");
                (command, None)
            }
        };
        let child = command
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", kind.label()))?;
        Ok(RunningOperator {
            child,
            health,
            metrics,
            spawned: Instant::now(),
        })
    }

    /// Waits for `/readyz` to answer 200 and returns the time since the process started.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, _)) = http_get(self.health, "/readyz") {
                return Ok(self.spawned.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the operator exited before it was ready: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the operator's /readyz did not answer 200 in {} s",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `None` when the process has exited (an operator must not, during a run).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Reconciles so far (ours: `meshery_operator_reconcile_total`; the Go operator's metrics
    /// need TLS and a token, so it reports none).
    pub fn reconciles(&self) -> Option<u64> {
        let (_, body) = http_get(self.metrics?, "/metrics")?;
        Some(
            body.lines()
                .filter(|l| l.starts_with("meshery_operator_reconcile_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64,
        )
    }

    /// utime + stime, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return f64::NAN;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return f64::NAN;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        ticks as f64 / clock_ticks() as f64
    }

    /// VmHWM, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        kib as f64 / 1024.0
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}

/// A plain HTTP/1.0 GET; `None` when nothing answers.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_named_by_strategy_or_go_and_anything_else_is_refused_with_the_choices() {
        assert_eq!(OperatorKind::parse("go"), Ok(OperatorKind::Go));
        assert_eq!(
            OperatorKind::parse("dry-run-diff").map(|k| k.label()),
            Ok("ours: dry-run-diff".to_string())
        );
        let error = OperatorKind::parse("fast").unwrap_err();
        assert!(
            error.contains("diff, always-apply, dry-run-diff") && error.contains("go"),
            "{error}"
        );
    }
}
