//! Where the Go binaries are: the per-version cache that `build.sh` fills.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The cache's directory of binaries (`…/bin/{etcd,kube-apiserver,…,helm}`).
#[derive(Clone, Debug)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("build.sh")
}

/// Runs `build.sh`, which builds any binary missing from the cache (and nothing when it is
/// warm), and returns the cache's bin directory.
pub fn ensure_built() -> Result<Binaries, Error> {
    let script = build_script();
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Build {
            script: script.display().to_string(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::Build {
            script: script.display().to_string(),
            detail: format!("{} (its output is above)", output.status),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Error::Build {
            script: script.display().to_string(),
            detail: "it printed no bin directory".into(),
        })?;
    Ok(Binaries {
        dir: PathBuf::from(dir),
    })
}
