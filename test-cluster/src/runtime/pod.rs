//! A pod's life on the node: its network namespace, its volumes, its containers as processes
//! (restarted with the kubelet's back-off), its probes, the status the kubelet would report, and
//! its graceful end (`preStop`, SIGTERM, `terminationGracePeriodSeconds`, SIGKILL).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PersistentVolume, PersistentVolumeClaim, Pod, Probe,
    Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::process::Child;
use tokio::sync::watch;

use super::container::{self, Image, Launch, Mount};
use super::env::{self, Objects, PodFacts};
use super::network::{PodInterface, PodNetwork};
use super::volumes::{self, Contents};

/// How often the worker looks at its processes and probes.
const TICK: Duration = Duration::from_millis(250);
/// The kubelet's crash back-off: the first restart at once, then 10 s doubling up to 5 minutes.
const BACK_OFF_START: Duration = Duration::from_secs(10);
const BACK_OFF_MAX: Duration = Duration::from_secs(300);
/// How long after a `preStop` hook the kubelet's stop signal arrives: the signal goes through the
/// container runtime (CRI `StopContainer`, containerd, its shim, `runc kill`), some milliseconds.
/// nats-server enters lame duck from its SIGUSR2 handler in a goroutine of its own, and handles a
/// SIGTERM that arrives in the same instant first, stopping without draining
/// (docs/real-workloads.md); a stop signal sent straight after the hook would make that the rule.
const CONTAINER_RUNTIME_STOP_LATENCY: Duration = Duration::from_millis(20);

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// What the runtime shares with every pod worker.
pub struct Shared {
    pub client: Client,
    pub network: PodNetwork,
    pub state_dir: PathBuf,
    /// The Go binaries' directory, where the images' executables are (see `known_image`).
    pub binaries: PathBuf,
    /// `KUBERNETES_SERVICE_HOST` / `_PORT` as pods see the API server.
    pub api_env: Vec<(String, String)>,
    /// Applies the NetworkPolicies to each pod's namespace.
    pub network_policies: Arc<super::network_policy::Enforcer>,
}

/// The pod's ConfigMaps and Secrets, read once per container start.
#[derive(Default)]
struct Fetched {
    config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
    /// Bound service-account tokens for projected volumes, by [`volumes::token_key`].
    tokens: BTreeMap<String, String>,
    /// The `hostPath` directory of each claim's PersistentVolume, by claim name.
    claimed_directories: BTreeMap<String, String>,
}

impl Objects for Fetched {
    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.config_maps.get(name).cloned().flatten()
    }
    fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.secrets.get(name).cloned().flatten()
    }
    fn claimed_directory(&self, claim: &str) -> Option<String> {
        self.claimed_directories.get(claim).cloned()
    }
}

fn decoded(data: Option<BTreeMap<String, ByteString>>) -> BTreeMap<String, String> {
    data.into_iter()
        .flatten()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// The ConfigMaps and Secrets the pod's env and volumes name, each read once, and (`for_volumes`,
/// when the volumes are still to be written) what only the volumes need: the service-account
/// tokens of its projected volumes and the directories of its claims' PersistentVolumes.
async fn fetch(client: &Client, pod: &Pod, for_volumes: bool) -> Result<Fetched, kube::Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut config_map_names = BTreeSet::new();
    let mut secret_names = BTreeSet::new();
    for container in spec.containers.iter() {
        for var in container.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                config_map_names.extend(from.config_map_key_ref.iter().map(|r| r.name.clone()));
                secret_names.extend(from.secret_key_ref.iter().map(|r| r.name.clone()));
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        config_map_names.extend(volume.config_map.iter().map(|c| c.name.clone()));
        secret_names.extend(volume.secret.iter().filter_map(|s| s.secret_name.clone()));
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            config_map_names.extend(source.config_map.iter().map(|c| c.name.clone()));
            secret_names.extend(source.secret.iter().map(|s| s.name.clone()));
        }
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut fetched = Fetched::default();
    for name in config_map_names {
        let found = config_maps.get_opt(&name).await?;
        fetched
            .config_maps
            .insert(name, found.map(|c| c.data.unwrap_or_default()));
    }
    for name in secret_names {
        let found = secrets.get_opt(&name).await?;
        let mut data = found.as_ref().map(|s| decoded(s.data.clone()));
        if let (Some(data), Some(strings)) = (&mut data, found.and_then(|s| s.string_data)) {
            data.extend(strings);
        }
        fetched.secrets.insert(name, data);
    }
    if !for_volumes {
        return Ok(fetched);
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let volumes_api: Api<PersistentVolume> = Api::all(client.clone());
    for claim in spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
    {
        let bound = claims
            .get_opt(&claim.claim_name)
            .await?
            .and_then(|c| c.spec?.volume_name);
        let Some(volume) = bound else { continue };
        let directory = volumes_api
            .get_opt(&volume)
            .await?
            .and_then(|v| Some(v.spec?.host_path?.path));
        if let Some(directory) = directory {
            fetched
                .claimed_directories
                .insert(claim.claim_name.clone(), directory);
        }
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let account = spec.service_account_name.as_deref().unwrap_or("default");
    for (key, audience, expiration_seconds) in volumes::token_requests(pod) {
        // Bound to the pod, as the kubelet asks for it (the node may ask only for its own pods).
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.into_iter().collect(),
                expiration_seconds,
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..TokenRequest::default()
        };
        let answered: TokenRequest = accounts
            .create_subresource("token", account, &PostParams::default(), &request)
            .await?;
        let token = answered.status.map(|s| s.token).unwrap_or_default();
        fetched.tokens.insert(key, token);
    }
    Ok(fetched)
}

/// Writes the pod's volumes under `dir` (one directory each) as the kubelet would lay them out.
fn materialise_volumes(facts: &PodFacts, fetched: &Fetched, dir: &Path) -> Result<(), String> {
    let spec = facts.pod.spec.clone().unwrap_or_default();
    for volume in spec.volumes.iter().flatten() {
        let target = dir.join(&volume.name);
        let failed = |e: std::io::Error| format!("volume {}: {e}", volume.name);
        match volumes::contents(volume, facts, fetched, &fetched.tokens)? {
            Contents::HostDirectory(directory) => {
                // The container's bind mount follows the link to the volume's own directory.
                std::fs::create_dir_all(dir).map_err(failed)?;
                std::os::unix::fs::symlink(directory, &target).map_err(failed)?;
            }
            Contents::Scratch => {
                std::fs::create_dir_all(&target).map_err(failed)?;
                set_mode(&target, 0o777)?;
            }
            Contents::Files(files) => {
                std::fs::create_dir_all(&target).map_err(failed)?;
                for (relative, content, mode) in files {
                    let path = target.join(&relative);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(failed)?;
                    }
                    std::fs::write(&path, content).map_err(failed)?;
                    set_mode(&path, mode)?;
                }
            }
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A probe's bookkeeping: when it runs next and its consecutive results.
#[derive(Default)]
struct ProbeState {
    next: Option<Instant>,
    successes: i32,
    failures: i32,
}

impl ProbeState {
    fn due(&self, probe: &Probe, started: Instant) -> bool {
        let initial = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        Instant::now() >= self.next.unwrap_or(started + initial)
    }

    /// Records one result; `Some(true)` when the probe passed its success threshold,
    /// `Some(false)` its failure threshold.
    fn record(&mut self, probe: &Probe, passed: bool) -> Option<bool> {
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        self.next = Some(Instant::now() + period);
        if passed {
            self.failures = 0;
            self.successes += 1;
            (self.successes >= probe.success_threshold.unwrap_or(1)).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures >= probe.failure_threshold.unwrap_or(3)).then_some(false)
        }
    }
}

/// One container: its process when running, and what its status reports.
struct Run {
    spec: Container,
    image: Option<Image>,
    child: Option<Child>,
    started_at: Option<(Instant, Time)>,
    restarts: i32,
    next_start: Instant,
    waiting: Option<(String, String)>,
    last_terminated: Option<ContainerStateTerminated>,
    startup_passed: bool,
    ready: bool,
    startup: ProbeState,
    liveness: ProbeState,
    readiness: ProbeState,
}

impl Run {
    fn new(spec: Container, binaries: &Path) -> Run {
        let reference = spec.image.as_deref().unwrap_or_default();
        let image = container::known_image(reference, binaries);
        let waiting = match &image {
            Some(_) => ("ContainerCreating".to_string(), String::new()),
            None => (
                "ErrImagePull".to_string(),
                container::unknown_image(reference),
            ),
        };
        Run {
            spec,
            image,
            child: None,
            started_at: None,
            restarts: 0,
            next_start: Instant::now(),
            waiting: Some(waiting),
            last_terminated: None,
            startup_passed: false,
            ready: false,
            startup: ProbeState::default(),
            liveness: ProbeState::default(),
            readiness: ProbeState::default(),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn status(&self) -> ContainerStatus {
        let image = self.spec.image.clone().unwrap_or_default();
        let state = match (&self.child, &self.started_at, &self.waiting) {
            (Some(_), Some((_, since)), _) => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(since.clone()),
                }),
                ..ContainerState::default()
            },
            (_, _, Some((reason, message))) => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: (!message.is_empty()).then(|| message.clone()),
                }),
                ..ContainerState::default()
            },
            _ => ContainerState {
                terminated: self.last_terminated.clone(),
                ..ContainerState::default()
            },
        };
        ContainerStatus {
            name: self.spec.name.clone(),
            image_id: format!("test-cluster://{image}"),
            image,
            container_id: self.pid().map(|pid| format!("test-cluster://{pid}")),
            ready: self.ready,
            started: Some(self.child.is_some() && self.startup_passed),
            restart_count: self.restarts,
            state: Some(state),
            last_state: self.last_terminated.clone().map(|t| ContainerState {
                terminated: Some(t),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    /// Notes a process that ended, and when the next start may come.
    fn reap(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        let Ok(Some(exit)) = child.try_wait() else {
            return;
        };
        self.record_exit(exit);
    }

    fn record_exit(&mut self, exit: std::process::ExitStatus) {
        use std::os::unix::process::ExitStatusExt;
        let exit_code = exit
            .code()
            .unwrap_or_else(|| 128 + exit.signal().unwrap_or(0));
        self.child = None;
        self.ready = false;
        self.startup_passed = false;
        self.startup = ProbeState::default();
        self.liveness = ProbeState::default();
        self.readiness = ProbeState::default();
        self.last_terminated = Some(ContainerStateTerminated {
            exit_code,
            reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
            started_at: self.started_at.take().map(|(_, t)| t),
            finished_at: Some(now()),
            ..ContainerStateTerminated::default()
        });
        self.restarts += 1;
        let delay = match self.restarts {
            1 => Duration::ZERO,
            n => BACK_OFF_START
                .saturating_mul(1 << (n - 2).min(5))
                .min(BACK_OFF_MAX),
        };
        self.next_start = Instant::now() + delay;
        self.waiting = Some((
            "CrashLoopBackOff".into(),
            format!(
                "back-off {}s restarting failed container={}",
                delay.as_secs(),
                self.spec.name
            ),
        ));
    }
}

/// The user and groups a container runs as: its own securityContext, else the pod's, else root.
fn identity(pod: &Pod, container: &Container) -> (u32, u32, Option<u32>) {
    let pod_context = pod.spec.as_ref().and_then(|s| s.security_context.clone());
    let own = container.security_context.clone().unwrap_or_default();
    let user = own
        .run_as_user
        .or(pod_context.as_ref().and_then(|c| c.run_as_user))
        .unwrap_or(0);
    let group = own
        .run_as_group
        .or(pod_context.as_ref().and_then(|c| c.run_as_group))
        .unwrap_or(0);
    let fs_group = pod_context.and_then(|c| c.fs_group);
    let clamp = |id: i64| u32::try_from(id).unwrap_or(0);
    (clamp(user), clamp(group), fs_group.map(clamp))
}

/// Runs `pod` until it is deleted: called once per pod UID, fed every newer version of the pod.
pub async fn run(shared: Arc<Shared>, mut latest: watch::Receiver<Option<Pod>>) {
    let Some(pod) = latest.borrow().clone() else {
        return;
    };
    let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let interface = match shared.network.attach() {
        Ok(interface) => interface,
        Err(e) => {
            eprintln!("test-cluster node: pod {name}: {e}");
            return;
        }
    };
    shared
        .network_policies
        .admit(&pod, &interface.namespace)
        .await;
    let dir = shared.state_dir.join(pod.uid().unwrap_or_default());
    let mut worker = Worker {
        shared: shared.clone(),
        name,
        dir,
        interface,
        runs: pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().cloned())
            .map(|c| Run::new(c, &shared.binaries))
            .collect(),
        volumes_ready: false,
        last_fetched: None,
        reported: None,
    };
    loop {
        let pod = latest.borrow().clone();
        let Some(pod) = pod else {
            // Deleted behind our back (forced): stop at once.
            worker.stop(None).await;
            break;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            worker.stop(Some(&pod)).await;
            worker.confirm_deletion(&pod).await;
            break;
        }
        worker.step(&pod).await;
        worker.report(&pod).await;
        tokio::select! {
            _ = latest.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    worker.shared.network_policies.release(&pod).await;
    worker.shared.network.detach(&worker.interface);
    let _ = std::fs::remove_dir_all(&worker.dir);
}

struct Worker {
    shared: Arc<Shared>,
    name: String,
    dir: PathBuf,
    interface: PodInterface,
    runs: Vec<Run>,
    volumes_ready: bool,
    /// The ConfigMaps and Secrets (and tokens) last read for a container start.
    last_fetched: Option<Fetched>,
    /// What the last status write said, times included as this worker made them: the API server
    /// keeps them to the second, so the stored status never equals a fresh one again.
    reported: Option<serde_json::Value>,
}

impl Worker {
    async fn step(&mut self, pod: &Pod) {
        for index in 0..self.runs.len() {
            self.runs[index].reap();
            let run = &self.runs[index];
            if run.child.is_none() && run.image.is_some() && Instant::now() >= run.next_start {
                self.start(pod, index).await;
            }
            self.probe(pod, index).await;
        }
    }

    async fn start(&mut self, pod: &Pod, index: usize) {
        match fetch(&self.shared.client, pod, !self.volumes_ready).await {
            Ok(fetched) => self.last_fetched = Some(fetched),
            // As a kubelet's ConfigMap and Secret caches do, what was last read serves a restart
            // while the API server cannot be reached.
            Err(_) if self.volumes_ready && self.last_fetched.is_some() => {}
            Err(e) => {
                self.runs[index].waiting = Some(("ContainerCreating".into(), e.to_string()));
                return;
            }
        }
        let Some(fetched) = &self.last_fetched else {
            return;
        };
        let volumes = self.dir.join("volumes");
        let address = self.interface.address.to_string();
        let facts = PodFacts {
            pod,
            pod_ip: &address,
            host_ip: "127.0.0.1",
        };
        if !self.volumes_ready {
            if let Err(e) = materialise_volumes(&facts, fetched, &volumes) {
                self.runs[index].waiting = Some(("CreateContainerConfigError".into(), e));
                return;
            }
            self.volumes_ready = true;
        }
        let run = &mut self.runs[index];
        let env = match env::resolve_env(&run.spec, &facts, fetched, &self.shared.api_env) {
            Ok(env) => env,
            Err(e) => {
                run.waiting = Some(("CreateContainerConfigError".into(), e.to_string()));
                return;
            }
        };
        let image = run.image.clone().expect("started only with a known image");
        let argv = env::command_line(
            &run.spec,
            &env,
            std::slice::from_ref(&image.entrypoint),
            &image.default_args,
        );
        let mounts: Vec<Mount> = run
            .spec
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| Mount {
                source: volumes
                    .join(&m.name)
                    .join(m.sub_path.as_deref().unwrap_or_default()),
                path: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false),
            })
            .collect();
        let root = self.dir.join("roots").join(&run.spec.name);
        if let Err(e) = std::fs::create_dir_all(&root) {
            run.waiting = Some(("RunContainerError".into(), e.to_string()));
            return;
        }
        let hostname = pod.name_any();
        let etc_files = vec![
            (
                "hosts".to_string(),
                format!("127.0.0.1\tlocalhost\n{address}\t{hostname}\n"),
            ),
            (
                "resolv.conf".to_string(),
                super::dns::resolv_conf(
                    self.shared.network.gateway(),
                    &pod.namespace().unwrap_or_default(),
                ),
            ),
        ];
        let (user, group, supplementary_group) = identity(pod, &run.spec);
        let log = self.dir.join(format!("{}.log", run.spec.name));
        let launch = Launch {
            network_namespace: &self.interface.namespace,
            hostname: &hostname,
            root: &root,
            image: &image,
            mounts: &mounts,
            etc_files: &etc_files,
            user,
            group,
            supplementary_group,
            read_only_root: run
                .spec
                .security_context
                .as_ref()
                .and_then(|c| c.read_only_root_filesystem)
                .unwrap_or(false),
            env: &env,
            argv: &argv,
            log: &log,
        };
        match container::spawn(&launch) {
            Ok(child) => {
                run.child = Some(child);
                run.started_at = Some((Instant::now(), now()));
                run.waiting = None;
                run.startup_passed = run.spec.startup_probe.is_none();
                run.ready = run.spec.readiness_probe.is_none() && run.startup_passed;
            }
            Err(e) => run.waiting = Some(("RunContainerError".into(), e.to_string())),
        }
    }

    async fn probe(&mut self, pod: &Pod, index: usize) {
        let address = self.interface.address;
        let run = &mut self.runs[index];
        let (Some(pid), Some((started, _))) = (run.pid(), run.started_at.clone()) else {
            return;
        };
        let (user, group, _) = identity(pod, &run.spec);
        let process = Some((pid, user, group));
        if !run.startup_passed {
            let Some(probe) = run.spec.startup_probe.clone() else {
                return;
            };
            if run.startup.due(&probe, started) {
                let passed = container::run_probe(&probe, &run.spec, address, process).await;
                match run.startup.record(&probe, passed) {
                    Some(true) => run.startup_passed = true,
                    Some(false) => self.kill(index, "startup probe failed").await,
                    None => {}
                }
            }
            return;
        }
        if let Some(probe) = run.spec.liveness_probe.clone()
            && run.liveness.due(&probe, started)
        {
            let passed = container::run_probe(&probe, &run.spec, address, process).await;
            if run.liveness.record(&probe, passed) == Some(false) {
                self.kill(index, "liveness probe failed").await;
                return;
            }
        }
        let run = &mut self.runs[index];
        match run.spec.readiness_probe.clone() {
            Some(probe) if run.readiness.due(&probe, started) => {
                let passed = container::run_probe(&probe, &run.spec, address, process).await;
                if let Some(ready) = run.readiness.record(&probe, passed) {
                    run.ready = ready;
                }
            }
            Some(_) => {}
            None => run.ready = true,
        }
    }

    /// Restarts a container whose probe failed: SIGTERM, the grace period, SIGKILL.
    async fn kill(&mut self, index: usize, why: &str) {
        eprintln!(
            "test-cluster node: pod {}: container {}: {why}, restarting",
            self.name, self.runs[index].spec.name
        );
        let grace = Duration::from_secs(30);
        if let Some(exit) = terminate(&mut self.runs[index], grace).await {
            self.runs[index].record_exit(exit);
        }
    }

    /// Stops every container the way the kubelet does on delete: `preStop`, then SIGTERM, then
    /// SIGKILL once the pod's grace period is over.
    async fn stop(&mut self, pod: Option<&Pod>) {
        let grace = pod
            .and_then(|p| p.metadata.deletion_grace_period_seconds)
            .or(pod.and_then(|p| p.spec.as_ref()?.termination_grace_period_seconds))
            .unwrap_or(0)
            .max(0) as u64;
        let deadline = Instant::now() + Duration::from_secs(grace);
        let pod_name = &self.name;
        let stops = self.runs.iter_mut().map(|run| async move {
            if let (Some(pid), Some(pod)) = (run.pid(), pod) {
                let pre_stop = run
                    .spec
                    .lifecycle
                    .as_ref()
                    .and_then(|l| l.pre_stop.as_ref())
                    .and_then(|h| h.exec.as_ref())
                    .and_then(|e| e.command.clone());
                if let Some(command) = pre_stop {
                    let (user, group, _) = identity(pod, &run.spec);
                    let left = deadline.saturating_duration_since(Instant::now());
                    if let Err(e) = container::exec_in(pid, user, group, &command, left).await {
                        eprintln!(
                            "test-cluster node: pod {pod_name}: container {}: preStop hook failed: {e}",
                            run.spec.name
                        );
                    }
                    tokio::time::sleep(CONTAINER_RUNTIME_STOP_LATENCY).await;
                }
            }
            terminate(run, deadline.saturating_duration_since(Instant::now())).await;
        });
        futures::future::join_all(stops).await;
    }

    /// The containers are gone: remove the pod, as the kubelet does (grace 0, this UID only).
    async fn confirm_deletion(&self, pod: &Pod) {
        let pods: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = pods.delete(&pod.name_any(), &params).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
        {
            eprintln!(
                "test-cluster node: pod {}: confirming deletion: {e}",
                self.name
            );
        }
    }

    /// Writes the pod's status when what the kubelet would report changed.
    async fn report(&mut self, pod: &Pod) {
        let current = pod.status.clone().unwrap_or_default();
        let statuses: Vec<ContainerStatus> = self.runs.iter().map(Run::status).collect();
        let desired = crate::node::kubelet_status(pod, &current, self.interface.address, statuses);
        let comparable = json!({
            "phase": desired.phase,
            "podIP": desired.pod_ip,
            "containers": desired.container_statuses,
            "conditions": desired.conditions.iter().flatten().map(|c| (&c.type_, &c.status)).collect::<Vec<_>>(),
        });
        if self.reported.as_ref() == Some(&comparable) && desired == current {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let patch = json!({
            "metadata": {"resourceVersion": pod.resource_version()},
            "status": desired,
        });
        match pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => self.reported = Some(comparable),
            // A newer version is on its way through the watch; the next tick retries.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => eprintln!(
                "test-cluster node: pod {}: reporting status: {e}",
                self.name
            ),
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`; the exit status when the process ended.
async fn terminate(run: &mut Run, grace: Duration) -> Option<std::process::ExitStatus> {
    let child = run.child.as_mut()?;
    if let Some(pid) = child.id() {
        // SAFETY: signalling a child process of ours that has not been reaped.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    let exit = match tokio::time::timeout(grace, child.wait()).await {
        Ok(result) => result.ok(),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    run.child = None;
    run.ready = false;
    exit
}
