//! One container as a local process: the images this node knows, the root it sees (the
//! machine's `/usr`, a few `/etc` files and the pod's volumes at their mount paths, in a mount
//! namespace of its own), and the probes a kubelet runs against it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// An image this node runs: the machine's executable standing in for the image's entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The entrypoint's path inside the image (where the executable is bind-mounted).
    pub entrypoint: String,
    pub host_executable: PathBuf,
    /// The image's `CMD`: the arguments when the container gives neither command nor args.
    pub default_args: Vec<String>,
    /// The image's own `/etc` files (its users and groups): name and content.
    pub etc: Vec<(String, String)>,
    /// Directories the image has, with their owner's UID (and GID).
    pub dirs: Vec<(String, u32)>,
}

/// The users and groups of a distroless image (MeshSync's base): its programs look their user up.
fn distroless_etc() -> Vec<(String, String)> {
    vec![
        (
            "passwd".into(),
            "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n".into(),
        ),
        (
            "group".into(),
            "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n".into(),
        ),
    ]
}

/// Why the node cannot run an image (the kubelet's `ErrImagePull`).
pub fn unknown_image(image: &str) -> String {
    format!(
        "this node runs only the images it has executables for (nats and meshery/meshsync with \
         the releases test-cluster/build.sh built from their Go modules); {image} is not one"
    )
}

/// The images this node knows, by repository (any registry prefix), each only with the tags
/// whose release `build.sh` built into `binaries` from its Go module: `nats:<release>[-<variant>]`
/// is `nats-server-<release>`, `meshery/meshsync:<tag>` is `meshery-meshsync-<tag>`.
pub fn known_image(image: &str, binaries: &Path) -> Option<Image> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (repository, tag) = match without_digest.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
        _ => (without_digest, None),
    };
    let name = repository
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/");
    match name {
        "nats" => {
            // `2.10.24-alpine` is release 2.10.24 on another base image.
            let release = tag?.split('-').next()?;
            let executable = binaries.join(format!("nats-server-{release}"));
            executable.is_file().then(|| Image {
                entrypoint: "/nats-server".into(),
                host_executable: executable,
                default_args: vec!["--config".into(), "nats-server.conf".into()],
                // A scratch image: no /etc of its own.
                etc: Vec::new(),
                dirs: Vec::new(),
            })
        }
        "meshery/meshsync" => {
            let executable = binaries.join(format!("meshery-meshsync-{}", tag?));
            executable.is_file().then(|| Image {
                entrypoint: "/meshery-meshsync".into(),
                host_executable: executable,
                default_args: Vec::new(),
                etc: distroless_etc(),
                dirs: vec![("/home/nonroot".into(), 65532)],
            })
        }
        _ => None,
    }
}

/// A directory prepared on the machine, mounted at `path` in the container.
#[derive(Debug, Clone)]
pub struct Mount {
    pub source: PathBuf,
    pub path: String,
    pub read_only: bool,
}

/// How the container's process is started.
pub struct Launch<'a> {
    pub network_namespace: &'a str,
    pub hostname: &'a str,
    /// An empty directory on the machine that becomes the container's root.
    pub root: &'a Path,
    pub image: &'a Image,
    pub mounts: &'a [Mount],
    /// Files placed in the container's `/etc` (`hosts`, `resolv.conf`, …): name and content.
    pub etc_files: &'a [(String, String)],
    pub user: u32,
    pub group: u32,
    pub supplementary_group: Option<u32>,
    /// `securityContext.readOnlyRootFilesystem`: only the volumes are writable.
    pub read_only_root: bool,
    pub env: &'a [(String, String)],
    pub argv: &'a [String],
    pub log: &'a Path,
}

/// POSIX shell quoting.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The script that builds the container's root inside its new mount namespace and `exec`s the
/// process in it, so the process is the one the agent started (its PID is the container's).
pub fn setup_script(launch: &Launch) -> String {
    let root = quote(&launch.root.display().to_string());
    let mut lines = vec![
        "set -e".to_string(),
        format!("hostname {}", quote(launch.hostname)),
        format!("mount -t tmpfs -o mode=755 rootfs {root}"),
        format!("cd {root}"),
        "mkdir usr etc proc dev tmp var run".into(),
        "mount --rbind /usr usr && mount -o remount,bind,ro usr".into(),
        "for d in bin sbin lib lib64; do [ -L /$d ] && ln -s \"$(readlink /$d)\" $d; done".into(),
        "mount -t proc proc proc".into(),
        "mount --rbind /dev dev".into(),
        "chmod 1777 tmp".into(),
        "mkdir -p etc/ssl && mount --rbind /etc/ssl etc/ssl".into(),
    ];
    for (name, content) in launch.image.etc.iter().chain(launch.etc_files) {
        lines.push(format!(
            "printf '%s' {} > etc/{}",
            quote(content),
            quote(name)
        ));
    }
    for (dir, owner) in &launch.image.dirs {
        let dir = quote(&format!(".{dir}"));
        lines.push(format!("mkdir -p {dir} && chown {owner}:{owner} {dir}"));
    }
    let entrypoint = format!(".{}", launch.image.entrypoint);
    lines.push(format!(
        "mkdir -p \"$(dirname {e})\" && touch {e} && mount --bind {} {e}",
        quote(&launch.image.host_executable.display().to_string()),
        e = quote(&entrypoint),
    ));
    let mut mounts: Vec<&Mount> = launch.mounts.iter().collect();
    mounts.sort_by_key(|m| m.path.len());
    for mount in mounts {
        let target = quote(&format!(".{}", mount.path));
        let source = quote(&mount.source.display().to_string());
        lines.push(format!(
            "mkdir -p {target} && mount --bind {source} {target}"
        ));
        if mount.read_only {
            lines.push(format!("mount -o remount,bind,ro {target}"));
        }
    }
    let groups = launch
        .supplementary_group
        .map(|g| format!("--groups={g}"))
        .unwrap_or_else(|| "--clear-groups".into());
    let argv: Vec<String> = launch.argv.iter().map(|a| quote(a)).collect();
    if launch.read_only_root {
        lines.push(format!("mount -o remount,ro {root}"));
    }
    lines.push("cd /".into());
    lines.push(format!(
        "exec chroot {root} /usr/bin/setpriv --reuid={} --regid={} {groups} --inh-caps=-all --bounding-set=-all -- {}",
        launch.user,
        launch.group,
        argv.join(" ")
    ));
    lines.join("\n")
}

/// Starts the container's process (its PID is the container's main process), its output copied
/// line by line into its log file.
pub fn spawn(launch: &Launch) -> std::io::Result<Child> {
    let log = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log)?,
    ));
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", launch.network_namespace])
        .args([
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
        ])
        .args(["/bin/sh", "-c", &setup_script(launch)])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOSTNAME", launch.hostname)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(super::kubelet_api::pump(stdout, "stdout", log.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(super::kubelet_api::pump(stderr, "stderr", log));
    }
    Ok(child)
}

/// Runs `argv` inside the running container `pid` (its namespaces, root and user): how
/// `exec` probes and `preStop` hooks run. `Err` says why it failed: its exit and output.
pub async fn exec_in(
    pid: u32,
    user: u32,
    group: u32,
    argv: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--target={pid}"))
        .args(["--mount", "--uts", "--net", "--root", "--wd"])
        .arg(format!("--setuid={user}"))
        .arg(format!("--setgid={group}"))
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => Err(format!(
            "{}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("running nsenter: {e}")),
        Err(_) => Err(format!("still running after {timeout:?}")),
    }
}

/// The port a probe names: a number, or one of the container's named ports.
fn probe_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// One attempt of `probe` against the container at `address`, as the kubelet makes it:
/// HTTP 200–399, a TCP connect, or an exec exiting 0, within `timeoutSeconds`.
pub async fn run_probe(
    probe: &Probe,
    container: &Container,
    address: std::net::Ipv4Addr,
    process: Option<(u32, u32, u32)>,
) -> bool {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(http) = &probe.http_get {
        let Some(port) = probe_port(&http.port, container) else {
            return false;
        };
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        return tokio::time::timeout(timeout, http_get(address, port, &path))
            .await
            .unwrap_or(false);
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = probe_port(&tcp.port, container) else {
            return false;
        };
        return matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((address, port))).await,
            Ok(Ok(_))
        );
    }
    if let (Some(exec), Some((pid, user, group))) = (&probe.exec, process) {
        return exec_in(
            pid,
            user,
            group,
            exec.command.as_deref().unwrap_or_default(),
            timeout,
        )
        .await
        .is_ok();
    }
    false
}

async fn http_get(address: std::net::Ipv4Addr, port: u16, path: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect((address, port)).await else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}:{port}\r\nUser-Agent: kube-probe/1.35\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let status = std::str::from_utf8(&head[..read])
        .ok()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    matches!(status, Some(200..=399))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_repository_and_the_releases_built() {
        let binaries = tempfile::tempdir().unwrap();
        for built in ["meshery-meshsync-v1.0.0", "nats-server-2.10.24"] {
            std::fs::write(binaries.path().join(built), "").unwrap();
        }
        let known = |image: &str| known_image(image, binaries.path()).map(|i| i.entrypoint);
        for image in [
            "nats:2.10.24",
            "docker.io/library/nats:2.10.24-alpine",
            "nats:2.10.24@sha256:abc",
        ] {
            assert_eq!(known(image), Some("/nats-server".to_string()), "{image}");
        }
        assert_eq!(
            known("docker.io/meshery/meshsync:v1.0.0"),
            Some("/meshery-meshsync".to_string())
        );
        for unknown in [
            "nats",
            "nats:2.11.0",
            "nats@sha256:abc",
            "meshery/meshsync:v1.0.3",
            "meshery/meshsync",
            "natsio/nats-box:0.14",
            "registry:5000/other",
        ] {
            assert_eq!(known(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn quoting_survives_any_word() {
        for word in ["plain", "it's", "$(VAR) `x` \"y\"", "", "a\nb"] {
            let output = std::process::Command::new("/bin/sh")
                .args(["-c", &format!("printf '%s' {}", quote(word))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(output.stdout).unwrap(), word);
        }
    }
}
