//! `exec` in a running container, as a kubelet's streaming server serves it to the API server:
//! the remote command protocol `v4.channel.k8s.io` on a SPDY/3.1 session, the command run in the
//! container's namespaces, root, user and environment (`nsenter` into its main process), on a
//! pseudo-terminal when `tty=1` and on pipes otherwise.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::spdy::{Event, Session};

/// The remote command protocol this node speaks (the kubelet's newest over SPDY).
pub const PROTOCOL: &str = "v4.channel.k8s.io";
/// How long the client has to open its streams (the kubelet's `streamCreationTimeout`).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output is still copied after the command ended, for processes it left behind that
/// hold its output open.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// The largest data frame of output.
const CHUNK: usize = 32 * 1024;
/// What a terminal sends for end of input (VEOF, `^D`).
const END_OF_INPUT: u8 = 0x04;

/// What an `exec` request asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Parses `/exec/<namespace>/<pod>/<container>?command=…&input=1&output=1&error=1&tty=1`; as
/// the kubelet, a terminal has no separate stderr, and a request must ask for some stream.
pub fn exec_request(target: &str) -> Option<ExecRequest> {
    let super::kubelet_api::ContainerTarget {
        namespace,
        pod,
        container,
        query,
    } = super::kubelet_api::container_target(target, "exec")?;
    let mut request = ExecRequest {
        namespace: namespace.into(),
        pod: pod.into(),
        container: container.into(),
        command: Vec::new(),
        stdin: false,
        stdout: false,
        stderr: false,
        tty: false,
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let yes = value == "1" || value == "true";
        match &*key {
            "command" => request.command.push(value.into_owned()),
            "input" => request.stdin = yes,
            "output" => request.stdout = yes,
            "error" => request.stderr = yes,
            "tty" => request.tty = yes,
            _ => {}
        }
    }
    request.stderr &= !request.tty;
    let some_stream = request.stdin || request.stdout || request.stderr;
    (some_stream && !request.command.is_empty()).then_some(request)
}

/// Whether the client offers [`PROTOCOL`] among its `X-Stream-Protocol-Version`s (each header
/// may list several, comma-separated).
pub fn offers_protocol<'a>(offered: impl IntoIterator<Item = &'a str>) -> bool {
    offered
        .into_iter()
        .flat_map(|value| value.split(','))
        .any(|protocol| protocol.trim() == PROTOCOL)
}

/// The container's main process, whose namespaces, root, user and environment an exec joins.
#[derive(Debug)]
pub struct Target {
    pid: u32,
    user: u32,
    group: u32,
    env: Vec<(OsString, OsString)>,
}

impl Target {
    /// The process `pid`, which must be one this agent started (a container's main process): a
    /// container's status may name a process that has just ended and whose PID is reused.
    pub fn of(pid: u32) -> std::io::Result<Target> {
        let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
        let stat = std::fs::read_to_string(proc.join("stat"))?;
        // `pid (comm) state ppid …`, the command name possibly holding spaces and parentheses.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent != Some(std::process::id()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("process {pid} is not a container of this node"),
            ));
        }
        let status = std::fs::read_to_string(proc.join("status"))?;
        let id = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|ids| ids.split_whitespace().next())
                .and_then(|real| real.parse().ok())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("no {field} in /proc/{pid}/status"),
                    )
                })
        };
        let env = std::fs::read(proc.join("environ"))?
            .split(|byte| *byte == 0)
            .filter_map(|entry| {
                let at = entry.iter().position(|byte| *byte == b'=')?;
                Some((
                    OsString::from_vec(entry[..at].to_vec()),
                    OsString::from_vec(entry[at + 1..].to_vec()),
                ))
            })
            .collect();
        Ok(Target {
            pid,
            user: id("Uid:")?,
            group: id("Gid:")?,
            env,
        })
    }
}

/// How a command ended, as the v4 protocol reports it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited(i32),
    /// It could not be run.
    Failed(String),
}

/// The `metav1.Status` a v4 server writes on the error stream (the kubelet's
/// `v4WriteStatusFunc`), with the message containerd gives a non-zero exit.
fn v4_status(outcome: &Outcome, command: &[String]) -> Value {
    match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(why) => {
            let error = format!("error executing command in container: {why}");
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {error}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": error}]},
                "code": 500,
            })
        }
    }
}

/// A terminal window size as client-go's resize stream sends it, one JSON object a line.
fn window_size(line: &[u8]) -> Option<libc::winsize> {
    let size: Value = serde_json::from_slice(line).ok()?;
    let dimension = |name: &str| size.get(name)?.as_u64().and_then(|n| u16::try_from(n).ok());
    Some(libc::winsize {
        ws_col: dimension("Width")?,
        ws_row: dimension("Height")?,
        ws_xpixel: 0,
        ws_ypixel: 0,
    })
}

/// The streams the client opened, by their `streamType`.
#[derive(Debug, Default)]
struct Streams {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Streams {
    fn all_open(&self, request: &ExecRequest) -> bool {
        self.error.is_some()
            && self.stdin.is_some() == request.stdin
            && self.stdout.is_some() == request.stdout
            && self.stderr.is_some() == request.stderr
            && self.resize.is_some() == request.tty
    }
}

/// Waits for the streams `request` needs (client-go opens them all before it sends anything).
async fn open_streams(session: &mut Session, request: &ExecRequest) -> Option<Streams> {
    let mut streams = Streams::default();
    let wait = async {
        while !streams.all_open(request) {
            let Event::Opened { stream, headers } = session.events.recv().await? else {
                continue;
            };
            let kind = headers
                .iter()
                .find(|(name, _)| name == "streamtype")
                .map(|(_, value)| value.as_str());
            let slot = match kind {
                Some("error") => &mut streams.error,
                Some("stdin") => &mut streams.stdin,
                Some("stdout") => &mut streams.stdout,
                Some("stderr") => &mut streams.stderr,
                Some("resize") => &mut streams.resize,
                _ => continue,
            };
            *slot = Some(stream);
        }
        Some(())
    };
    tokio::time::timeout(STREAM_CREATION_TIMEOUT, wait)
        .await
        .ok()
        .flatten()?;
    Some(streams)
}

/// Serves one `exec` on an upgraded connection: waits for the client's streams, runs the command
/// in `target`'s container, copies its input and output, reports how it ended on the error
/// stream, and closes the session.
pub async fn serve(
    connection: impl AsyncRead + AsyncWrite + Send + 'static,
    request: ExecRequest,
    target: Target,
) {
    let Ok(mut session) = super::spdy::Session::start(connection) else {
        return;
    };
    let Some(streams) = open_streams(&mut session, &request).await else {
        session.end().await;
        return;
    };
    let outcome = match Process::spawn(&request, &target) {
        Ok(process) => match process.run(&mut session, &streams).await {
            Some(outcome) => outcome,
            // The client went away: nothing to report to.
            None => return session.end().await,
        },
        Err(e) => Outcome::Failed(format!("starting nsenter: {e}")),
    };
    for stream in [streams.stdout, streams.stderr].into_iter().flatten() {
        let _ = session.send(stream, Vec::new(), true).await;
    }
    if let Some(error) = streams.error {
        let status = v4_status(&outcome, &request.command).to_string();
        let _ = session.send(error, status.into_bytes(), true).await;
    }
    session.end().await;
}

/// The command's process and its ends of the streams.
struct Process {
    child: Child,
    input: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    outputs: Vec<(OutputStream, Box<dyn AsyncRead + Send + Unpin>)>,
    /// The terminal's master side, for window sizes and end of input.
    terminal: Option<File>,
}

#[derive(Debug, Clone, Copy)]
enum OutputStream {
    Stdout,
    Stderr,
}

impl Process {
    fn spawn(request: &ExecRequest, target: &Target) -> std::io::Result<Process> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", target.pid))
            .args(["--mount", "--uts", "--net", "--root", "--wd"])
            .arg(format!("--setuid={}", target.user))
            .arg(format!("--setgid={}", target.group))
            .arg("--")
            .args(&request.command)
            .env_clear()
            .envs(target.env.iter().map(|(name, value)| (name, value)))
            .kill_on_drop(true);
        if !request.tty {
            let piped = |wanted: bool| {
                if wanted {
                    Stdio::piped()
                } else {
                    Stdio::null()
                }
            };
            command
                .stdin(piped(request.stdin))
                .stdout(piped(request.stdout))
                .stderr(piped(request.stderr));
            let mut child = command.spawn()?;
            let mut outputs: Vec<(OutputStream, Box<dyn AsyncRead + Send + Unpin>)> = Vec::new();
            if let Some(stdout) = child.stdout.take() {
                outputs.push((OutputStream::Stdout, Box::new(stdout)));
            }
            if let Some(stderr) = child.stderr.take() {
                outputs.push((OutputStream::Stderr, Box::new(stderr)));
            }
            let input = child
                .stdin
                .take()
                .map(|stdin| Box::new(stdin) as Box<dyn AsyncWrite + Send + Unpin>);
            return Ok(Process {
                child,
                input,
                outputs,
                terminal: None,
            });
        }
        let (master, slave) = open_terminal()?;
        command
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: the command leads a session
        // of its own whose controlling terminal is the one on its standard input.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        let terminal = master.try_clone()?;
        // SAFETY: the `File` owns its descriptor for as long as the `AsyncFd` owns the `File`.
        let master = unsafe { AsyncFd::register(master) }?;
        let (output, input) = tokio::io::split(Terminal(master));
        Ok(Process {
            child,
            input: request.stdin.then(|| Box::new(input) as Box<_>),
            outputs: if request.stdout {
                vec![(OutputStream::Stdout, Box::new(output) as Box<_>)]
            } else {
                Vec::new()
            },
            terminal: Some(terminal),
        })
    }

    /// Copies between the session and the process until it ends; `None` when the client went
    /// away first (the process is killed).
    async fn run(mut self, session: &mut Session, streams: &Streams) -> Option<Outcome> {
        let (chunks, mut output) = mpsc::channel::<(u32, Vec<u8>)>(4);
        for (kind, reader) in self.outputs.drain(..) {
            let stream = match kind {
                OutputStream::Stdout => streams.stdout,
                OutputStream::Stderr => streams.stderr,
            };
            if let Some(stream) = stream {
                tokio::spawn(copy_output(reader, stream, chunks.clone()));
            }
        }
        drop(chunks);
        let mut resizes = Vec::new();
        let exit = loop {
            tokio::select! {
                event = session.events.recv() => match event? {
                    Event::Data { stream, data } if Some(stream) == streams.stdin => {
                        if let Some(input) = &mut self.input
                            && input.write_all(&data).await.is_err()
                        {
                            self.input = None;
                        }
                    }
                    Event::Finished { stream } if Some(stream) == streams.stdin => {
                        self.end_input().await;
                    }
                    Event::Data { stream, data } if Some(stream) == streams.resize => {
                        resizes.extend(data);
                        while let Some(end) = resizes.iter().position(|byte| *byte == b'\n') {
                            let line: Vec<u8> = resizes.drain(..=end).collect();
                            self.resize(&line);
                        }
                    }
                    _ => {}
                },
                Some((stream, data)) = output.recv() => {
                    session.send(stream, data, false).await.ok()?;
                }
                exit = self.child.wait() => break exit,
            }
        };
        let drain = async {
            while let Some((stream, data)) = output.recv().await {
                session.send(stream, data, false).await.ok()?;
            }
            Some(())
        };
        if let Ok(None) = tokio::time::timeout(OUTPUT_DRAIN, drain).await {
            return None;
        }
        Some(match exit {
            Ok(status) => Outcome::Exited(exit_code(status)),
            Err(e) => Outcome::Failed(format!("waiting for the command: {e}")),
        })
    }

    /// The client's input ended: a pipe is closed; a terminal gets `^D`, as from its keyboard.
    async fn end_input(&mut self) {
        match (&self.terminal, self.input.take()) {
            (Some(_), Some(mut terminal)) => {
                let _ = terminal.write_all(&[END_OF_INPUT]).await;
            }
            (_, Some(mut pipe)) => {
                let _ = pipe.shutdown().await;
            }
            (_, None) => {}
        }
    }

    fn resize(&self, line: &[u8]) {
        if let (Some(terminal), Some(size)) = (&self.terminal, window_size(line)) {
            // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call.
            unsafe {
                libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size);
            }
        }
    }
}

/// The exit code the kubelet reports: the process's, or 128 and the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Sends what `reader` gives as data on `stream`, in chunks, until it ends.
async fn copy_output(
    mut reader: impl AsyncRead + Unpin,
    stream: u32,
    chunks: mpsc::Sender<(u32, Vec<u8>)>,
) {
    let mut buffer = vec![0u8; CHUNK];
    while let Ok(read @ 1..) = reader.read(&mut buffer).await {
        if chunks
            .send((stream, buffer[..read].to_vec()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A new pseudo-terminal: its master side (non-blocking) and its slave side, both close-on-exec
/// so no other process the agent starts meanwhile holds them.
fn open_terminal() -> std::io::Result<(File, File)> {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the calls act on the descriptor we own; ptsname_r writes at most `name.len()`
    // bytes, NUL included, into `name`.
    let unlocked = unsafe {
        libc::grantpt(fd) == 0
            && libc::unlockpt(fd) == 0
            && libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) == 0
            && libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) == 0
    };
    if !unlocked {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated path.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(std::ffi::OsStr::from_bytes(path.to_bytes()))?;
    Ok((File::from(master), slave))
}

/// A terminal's master side, read and written without blocking the runtime. Reading ends (EIO)
/// once no process holds the slave side any more.
struct Terminal(AsyncFd<File>);

impl AsyncRead for Terminal {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| fd.get_ref().read(unfilled)) {
                Ok(Ok(read)) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Terminal {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| fd.get_ref().write(data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_requests_are_read_as_the_api_server_sends_them() {
        assert_eq!(
            exec_request(
                "/exec/meshery/meshery-broker-0/nats?command=%2Fbin%2Fsh&command=-c&command=echo+hi%26%26ls&error=1&input=1&output=1"
            ),
            Some(ExecRequest {
                namespace: "meshery".into(),
                pod: "meshery-broker-0".into(),
                container: "nats".into(),
                command: vec!["/bin/sh".into(), "-c".into(), "echo hi&&ls".into()],
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
            })
        );
        let terminal = exec_request("/exec/ns/p/c?command=sh&input=1&output=1&error=1&tty=1");
        assert_eq!(
            terminal.map(|r| (r.stdin, r.stdout, r.stderr, r.tty)),
            Some((true, true, false, true)),
            "a terminal has no stderr of its own"
        );
        for refused in [
            "/exec/ns/p/c?command=sh",
            "/exec/ns/p/c?output=1",
            "/exec/ns/p?command=sh&output=1",
            "/containerLogs/ns/p/c?command=sh&output=1",
        ] {
            assert_eq!(exec_request(refused), None, "{refused}");
        }
    }

    #[test]
    fn only_the_v4_protocol_is_agreed() {
        assert!(offers_protocol([
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io"
        ]));
        assert!(offers_protocol(["v5.channel.k8s.io, v4.channel.k8s.io"]));
        assert!(!offers_protocol(["v3.channel.k8s.io", "channel.k8s.io"]));
        assert!(!offers_protocol([]));
    }

    #[test]
    fn the_error_stream_carries_the_v4_status() {
        let command = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(
            v4_status(&Outcome::Exited(0), &command),
            json!({"metadata": {}, "status": "Success"})
        );
        assert_eq!(
            v4_status(&Outcome::Exited(3), &command),
            json!({
                "metadata": {},
                "status": "Failure",
                "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
            })
        );
        assert_eq!(
            v4_status(&Outcome::Failed("no nsenter".into()), &command),
            json!({
                "metadata": {},
                "status": "Failure",
                "message": "Internal error occurred: error executing command in container: no nsenter",
                "reason": "InternalError",
                "details": {"causes": [{"message": "error executing command in container: no nsenter"}]},
                "code": 500,
            })
        );
    }

    #[test]
    fn resize_events_are_window_sizes() {
        let size = window_size(br#"{"Width":120,"Height":40}"#).unwrap();
        assert_eq!((size.ws_col, size.ws_row), (120, 40));
        assert!(window_size(br#"{"Width":70000,"Height":40}"#).is_none());
        assert!(window_size(b"not json").is_none());
    }

    #[test]
    fn exit_codes_are_the_processes_or_128_and_the_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }

    #[tokio::test]
    async fn a_terminal_carries_output_and_reads_end_once_its_process_is_gone() {
        let (master, slave) = open_terminal().unwrap();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "test -t 1 && echo on a terminal"])
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .status()
            .unwrap();
        assert!(child.success());
        // SAFETY: the `File` owns its descriptor for as long as the `AsyncFd` owns the `File`.
        let mut terminal = Terminal(unsafe { AsyncFd::register(master) }.unwrap());
        let mut output = String::new();
        terminal.read_to_string(&mut output).await.unwrap();
        assert_eq!(output, "on a terminal\r\n");
    }
}
