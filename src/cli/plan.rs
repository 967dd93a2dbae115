//! `meshery-operator plan`: the offline dry run. Renders the Broker and MeshSync CRs found in files,
//! plans them against objects exported from a cluster (or against nothing), and prints what the
//! operator would create, change and prune — without a cluster, and with Secret values masked.
//!
//! `plan --cluster` (in `plan_cluster`) feeds the same planner and output from a live cluster.
//!
//! Exit codes follow `kubectl diff`: 0 nothing would change, 1 something would, 2 an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::input::{CustomResource, Document, InputError, read_documents};
use crate::api::{
    Broker, BrokerSelection, BrokerSpec, FieldError, MeshSync, parse_broker_url, validate_broker,
    validate_meshsync,
};
use crate::diff::{self, Action, Counts, Owner, Plan, mask};
use crate::object::{Object, ObjectKey, without_server_bookkeeping};
use crate::render::credentials::{
    BrokerSecretData, credential_readable_by, resolve_custom_broker, resolve_native_broker,
};
use crate::render::labels::{FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL};
use crate::render::nats_conf::USERS_FILE_NAME;
use crate::render::{
    AuthKind, BrokerAuthInput, BrokerInputs, DEFAULT_MESHSYNC_VERSION, DEFAULT_NATS_VERSION,
    MESHSYNC_CRD_NAME, MeshSyncInputs, ResolvedBroker, TLS_CA_KEY, TOKEN_KEY,
    broker_auth_secret_name, desired_broker, desired_meshsync, generated_auth_secret_name,
};

/// Arguments of `meshery-operator plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Files or directories with Broker and MeshSync resources (YAML, multi-document, or JSON).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required_unless_present = "cluster"
    )]
    pub filenames: Vec<PathBuf>,
    /// Objects as they are in the cluster, e.g. from `kubectl get … -o yaml --show-managed-fields`;
    /// without it everything is planned as a create.
    #[arg(long, value_name = "FILE|DIR")]
    pub observed: Vec<PathBuf>,
    /// Plan against the live cluster of the kubeconfig: read the Broker and MeshSync CRs and their
    /// children from it and check every write with a server-side dry-run apply. Changes nothing.
    #[arg(long, conflicts_with_all = ["filenames", "observed"])]
    pub cluster: bool,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// Plan only the CRs in this namespace (default: all namespaces).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// `diff`: per-object headers and unified YAML diffs; `patch`: the server-side-apply bodies;
    /// `json`: the whole plan with RFC 6902 patches.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Diff)]
    pub output: OutputFormat,
    /// Also list objects that would not change.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Diff,
    Patch,
    Json,
}

/// What went wrong; every message names the file (and document) it came from.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "{source_name}: {kind} {namespace}/{name} is invalid: {}",
        list(errors)
    )]
    Invalid {
        source_name: String,
        kind: &'static str,
        namespace: String,
        name: String,
        errors: Vec<FieldError>,
    },
    /// The operator would refuse to deploy this MeshSync (its `Ready` condition says the same).
    #[error("{source_name}: MeshSync {namespace}/{name} would not be deployed: {message}")]
    NotDeployable {
        source_name: String,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("{source_name}: {kind} {namespace}/{name} is also defined in {first}")]
    Duplicate {
        source_name: String,
        first: String,
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{source_name}: not a Kubernetes object: {message}")]
    Observed {
        source_name: String,
        message: String,
    },
    #[error("writing output: {0}")]
    Write(std::io::Error),
    #[error("{0}")]
    Usage(String),
    /// Talking to the cluster failed: `what` names the step (connecting, the list or read).
    #[error("{what}: {message}")]
    Cluster { what: String, message: String },
    /// The plan was printed, but the API server's dry run refused some of its writes.
    #[error("the API server would refuse {} planned write(s): {}", refused.len(), refused.join("; "))]
    Refused { refused: Vec<String> },
}

/// Every problem on one line, so each error stays one greppable line in scripts and CI logs.
fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the plan would change anything, as `kubectl diff` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    NoChanges,
    Changes,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::NoChanges => ExitCode::SUCCESS,
            Outcome::Changes => ExitCode::from(1),
        }
    }
}

/// The plan for one CR read from the input files.
#[derive(Debug, Clone)]
pub struct OwnerPlan {
    pub owner: Owner,
    pub plan: Plan,
}

/// Runs `plan` (offline, or against the cluster with `--cluster`) and prints the result to stdout.
pub fn run(args: &PlanArgs) -> Result<Outcome, PlanError> {
    if args.cluster {
        return super::plan_cluster::run(args);
    }
    // Checked here: clap's `requires` counts a flag's default (`--cluster` false) as present.
    if args.context.is_some() || args.namespace.is_some() {
        return Err(PlanError::Usage(
            "--context and --namespace select what to read from a cluster: they need --cluster"
                .into(),
        ));
    }
    let documents = read_documents(&args.filenames)?;
    let observed = if args.observed.is_empty() {
        Vec::new()
    } else {
        observed_objects(read_documents(&args.observed)?)?
    };
    let plans = plan_documents(&documents, &observed)?;
    let text = format_plans(&plans, &observed, args.output, args.verbose, stdout_color());
    print(&text)?;
    Ok(outcome(&plans))
}

/// Colour only on a terminal, and never with `NO_COLOR` set.
pub(super) fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Writes the plan to stdout; a closed pipe (`| head`) is not an error.
pub(super) fn print(text: &str) -> Result<(), PlanError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(PlanError::Write(e)),
        _ => Ok(()),
    }
}

/// Whether any of the plans would write anything.
pub(super) fn outcome(plans: &[OwnerPlan]) -> Outcome {
    if plans.iter().any(|p| p.plan.has_changes()) {
        Outcome::Changes
    } else {
        Outcome::NoChanges
    }
}

fn observed_objects(documents: Vec<Document>) -> Result<Vec<Object>, PlanError> {
    documents
        .into_iter()
        .map(|document| {
            let object = Object(document.value);
            if object.kind().is_empty()
                || object.api_version().is_empty()
                || object.name().is_empty()
            {
                return Err(PlanError::Observed {
                    source_name: document.source,
                    message: "apiVersion, kind and metadata.name are required".into(),
                });
            }
            Ok(object)
        })
        .collect()
}

/// Reads, validates, renders and plans every CR in `documents` against `observed`.
pub fn plan_documents(
    documents: &[Document],
    observed: &[Object],
) -> Result<Vec<OwnerPlan>, PlanError> {
    Ok(render_documents(documents, observed)?
        .into_iter()
        .map(|(owner, desired)| {
            let plan = diff::plan(&desired, observed, &owner, FIELD_MANAGER);
            OwnerPlan { owner, plan }
        })
        .collect())
}

/// The CR's kind, metadata and every validation problem with it.
fn validated(resource: &CustomResource) -> (&'static str, &ObjectMeta, Vec<FieldError>) {
    match resource {
        CustomResource::Broker(b) => ("Broker", &b.metadata, validate_broker(b)),
        CustomResource::MeshSync(m) => ("MeshSync", &m.metadata, validate_meshsync(m)),
    }
}

/// Separates the CRs that fail validation (each as a [`PlanError::Invalid`] naming its fields) from
/// the rest, so that against a cluster one bad CR does not hide the plan of the others — the
/// operator itself leaves an invalid CR's children alone and reports `InvalidSpec`.
pub fn split_invalid(documents: Vec<Document>) -> (Vec<Document>, Vec<PlanError>) {
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    for document in documents {
        let Ok(resource) = document.custom_resource() else {
            valid.push(document);
            continue;
        };
        let (kind, metadata, errors) = validated(&resource);
        if errors.is_empty() {
            valid.push(document);
        } else {
            invalid.push(PlanError::Invalid {
                source_name: document.source.clone(),
                kind,
                namespace: metadata.namespace.clone().unwrap_or_default(),
                name: metadata.name.clone().unwrap_or_default(),
                errors,
            });
        }
    }
    (valid, invalid)
}

/// Reads, validates and renders every CR in `documents`, taking what the cluster would supply (tokens,
/// UIDs, resolved brokers) from `observed`, else from stand-ins.
pub fn render_documents(
    documents: &[Document],
    observed: &[Object],
) -> Result<Vec<(Owner, Vec<Object>)>, PlanError> {
    let mut seen: BTreeMap<(&'static str, String, String), String> = BTreeMap::new();
    let mut resources = Vec::new();
    let mut sources = Vec::new();
    for document in documents {
        let resource = document.custom_resource()?;
        let (kind, metadata, errors) = validated(&resource);
        let namespace = metadata.namespace.clone().unwrap_or_default();
        let name = metadata.name.clone().unwrap_or_default();
        if !errors.is_empty() {
            return Err(PlanError::Invalid {
                source_name: document.source.clone(),
                kind,
                namespace,
                name,
                errors,
            });
        }
        if let Some(first) = seen.insert(
            (kind, namespace.clone(), name.clone()),
            document.source.clone(),
        ) {
            return Err(PlanError::Duplicate {
                source_name: document.source.clone(),
                first,
                kind,
                namespace,
                name,
            });
        }
        resources.push(resource);
        sources.push(document.source.clone());
    }
    let mut offline = Offline::new(observed);
    for resource in &mut resources {
        match resource {
            CustomResource::Broker(broker) => offline.adopt_uid("Broker", &mut broker.metadata),
            CustomResource::MeshSync(meshsync) => {
                offline.adopt_uid("MeshSync", &mut meshsync.metadata)
            }
        }
    }
    let brokers: Vec<&Broker> = resources
        .iter()
        .filter_map(|r| match r {
            CustomResource::Broker(b) => Some(b.as_ref()),
            CustomResource::MeshSync(_) => None,
        })
        .collect();
    let mut rendered = Vec::new();
    for (resource, source_name) in resources.iter().zip(sources) {
        let (owner, desired) = match resource {
            CustomResource::Broker(broker) => {
                let inputs = BrokerInputs {
                    default_version: DEFAULT_NATS_VERSION.into(),
                    auth: offline.broker_auth(broker),
                };
                (
                    owner_of("Broker", &broker.metadata),
                    desired_broker(broker, &inputs),
                )
            }
            CustomResource::MeshSync(meshsync) => {
                let broker = offline.resolve_broker(meshsync, &brokers);
                let version = meshsync
                    .spec
                    .version
                    .as_deref()
                    .unwrap_or(DEFAULT_MESHSYNC_VERSION);
                if let Err(message) = credential_readable_by(version, &broker) {
                    return Err(PlanError::NotDeployable {
                        source_name,
                        namespace: meshsync.metadata.namespace.clone().unwrap_or_default(),
                        name: meshsync.metadata.name.clone().unwrap_or_default(),
                        message,
                    });
                }
                let inputs = MeshSyncInputs {
                    default_version: DEFAULT_MESHSYNC_VERSION.into(),
                    broker,
                    crd_uid: offline.uid_of(
                        "apiextensions.k8s.io",
                        "CustomResourceDefinition",
                        None,
                        MESHSYNC_CRD_NAME,
                    ),
                };
                (
                    owner_of("MeshSync", &meshsync.metadata),
                    desired_meshsync(meshsync, &inputs),
                )
            }
        };
        rendered.push((owner, desired));
    }
    Ok(rendered)
}

fn owner_of(
    kind: &str,
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Owner {
    Owner {
        kind: kind.into(),
        name: metadata.name.clone().unwrap_or_default(),
        namespace: metadata.namespace.clone().unwrap_or_default(),
        uid: metadata.uid.clone().unwrap_or_default(),
    }
}

/// What the I/O layer would learn from the cluster, derived from the observed objects instead.
struct Offline<'a> {
    observed: &'a [Object],
    /// Tokens chosen per Broker (namespace, name) in this run, so a MeshSync in another namespace
    /// copies the same token its Broker's Secret gets.
    tokens: BTreeMap<(String, String), String>,
}

impl<'a> Offline<'a> {
    fn new(observed: &'a [Object]) -> Self {
        Offline {
            observed,
            tokens: BTreeMap::new(),
        }
    }

    fn find(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&'a Object> {
        let key = ObjectKey {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        };
        self.observed.iter().find(|o| o.key() == key)
    }

    fn uid_of(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<String> {
        let object = self.find(group, kind, namespace, name)?;
        object
            .get(&["metadata", "uid"])?
            .as_str()
            .map(str::to_string)
    }

    /// A CR file rarely carries a UID; take it from the live CR, else from the controller reference
    /// of its observed children, so rendered ownerReferences and prune decisions match the cluster.
    fn adopt_uid(
        &self,
        kind: &str,
        metadata: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) {
        if metadata.uid.as_deref().is_some_and(|uid| !uid.is_empty()) {
            return;
        }
        let name = metadata.name.clone().unwrap_or_default();
        let namespace = metadata.namespace.clone();
        let from_cr = self.uid_of(crate::api::GROUP, kind, namespace.as_deref(), &name);
        let from_children = || {
            self.observed.iter().find_map(|object| {
                let ours = object.label(MANAGED_BY_LABEL) == Some(MANAGED_BY)
                    && object.label(INSTANCE_LABEL) == Some(name.as_str())
                    && object.namespace() == namespace.as_deref();
                let reference = object
                    .get(&["metadata", "ownerReferences"])?
                    .as_array()?
                    .iter()
                    .find(|r| {
                        r["controller"] == json!(true)
                            && r["kind"] == json!(kind)
                            && r["name"] == json!(name)
                    })?;
                ours.then(|| reference["uid"].as_str().map(str::to_string))
                    .flatten()
            })
        };
        metadata.uid = from_cr.or_else(from_children);
    }

    /// An observed Secret's `uid/resourceVersion`, as the controller computes it; empty when not observed.
    fn secret_revision(&self, namespace: &str, name: &str) -> String {
        self.find("", "Secret", Some(namespace), name)
            .map(|secret| {
                let field = |f: &str| {
                    secret
                        .get(&["metadata", f])
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                format!("{}/{}", field("uid"), field("resourceVersion"))
            })
            .unwrap_or_default()
    }

    /// A value from an observed Secret, decoded.
    fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        let secret = self.find("", "Secret", Some(namespace), name)?;
        let encoded = secret.get(&["data", key])?.as_str()?;
        let bytes = diff::decode_base64(encoded)?;
        String::from_utf8(bytes).ok()
    }

    fn broker_auth(&mut self, broker: &Broker) -> BrokerAuthInput {
        let namespace = broker.metadata.namespace.clone().unwrap_or_default();
        if let Some(secret) = broker.spec.auth_secret_name() {
            let users = self
                .find("", "Secret", Some(&namespace), secret)
                .is_some_and(|s| s.get(&["data", USERS_FILE_NAME]).is_some());
            return BrokerAuthInput::Referenced {
                kind: if users {
                    AuthKind::Users
                } else {
                    AuthKind::Token
                },
            };
        }
        BrokerAuthInput::Generated {
            token: self.generated_token(broker),
        }
    }

    /// The token of a Broker's generated Secret: the observed one, else a stand-in (see [`stand_in_token`]).
    fn generated_token(&mut self, broker: &Broker) -> String {
        let namespace = broker.metadata.namespace.clone().unwrap_or_default();
        let name = broker.metadata.name.clone().unwrap_or_default();
        let secret = generated_auth_secret_name(broker);
        let observed = self.secret_value(&namespace, &secret, TOKEN_KEY);
        let stand_in = stand_in_token(&namespace, &secret);
        self.tokens
            .entry((namespace, name))
            .or_insert_with(|| observed.unwrap_or(stand_in))
            .clone()
    }

    /// The broker a MeshSync publishes to: a Broker from the input files, else the live Broker CR,
    /// else a Broker of that name with the default spec (the conventional Service and Secret names).
    fn resolve_broker(&mut self, meshsync: &MeshSync, brokers: &[&Broker]) -> ResolvedBroker {
        let own_namespace = meshsync.metadata.namespace.clone().unwrap_or_default();
        let (name, namespace) = match meshsync.spec.broker_selections().first() {
            Some(BrokerSelection::Custom { url }) => {
                let url = parse_broker_url(url).expect("validated before planning");
                return resolve_custom_broker(&url);
            }
            Some(BrokerSelection::Native { name, namespace }) => (
                name.to_string(),
                namespace.unwrap_or(&own_namespace).to_string(),
            ),
            None => unreachable!("validation requires a broker"),
        };
        let in_files = brokers
            .iter()
            .find(|b| {
                b.metadata.name.as_deref() == Some(&name)
                    && b.metadata.namespace.as_deref() == Some(&namespace)
            })
            .map(|b| (*b).clone());
        let observed_cr = || {
            self.find(crate::api::GROUP, "Broker", Some(&namespace), &name)
                .and_then(|o| serde_json::from_value::<Broker>(o.0.clone()).ok())
        };
        let target = in_files.or_else(observed_cr).unwrap_or_else(|| {
            let mut broker = Broker::new(
                &name,
                BrokerSpec {
                    size: 1,
                    ..BrokerSpec::default()
                },
            );
            broker.metadata.namespace = Some(namespace.clone());
            broker
        });
        let secret = broker_auth_secret_name(&target);
        let users_json = self.secret_value(&namespace, &secret, USERS_FILE_NAME);
        let token = match target.spec.auth_secret_name() {
            None => Some(self.generated_token(&target)),
            Some(_) if users_json.is_some() => None,
            Some(_) => Some(
                self.secret_value(&namespace, &secret, TOKEN_KEY)
                    .unwrap_or_else(|| stand_in_token(&namespace, &secret)),
            ),
        };
        let revision = self.secret_revision(&namespace, &secret);
        let data = BrokerSecretData {
            token: token.as_deref().map(str::as_bytes),
            users_json: users_json.as_deref().map(str::as_bytes),
            revision: &revision,
        };
        let tls_ca = target
            .spec
            .tls_secret_name()
            .and_then(|tls| self.secret_value(&namespace, tls, TLS_CA_KEY));
        resolve_native_broker(
            &target,
            &own_namespace,
            data,
            tls_ca.as_deref().map(str::as_bytes),
        )
        .expect("a token or users.json is always supplied")
    }
}

/// A credential the plan needs but the observed objects do not hold, in the generated token format
/// (`t` + 64 hex). Derived from the Secret's name rather than random: the rendered config checksum
/// covers the credential, and a random one would make two runs of `plan` print different checksums.
/// It is only ever printed masked and never applied — the controller generates the real token.
fn stand_in_token(namespace: &str, secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!(
        "meshery-operator plan stand-in {namespace}/{secret}"
    ));
    format!("t{}", hex::encode(digest))
}

// ---------- output ----------

/// The API server's answer to a server-side dry-run apply of one planned write (`plan --cluster`).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerAnswer {
    /// The object as the server would store it.
    Stored(Object),
    /// The server would refuse the write (validation, admission, an immutable field): its message.
    Refused(String),
}

/// Server answers by object; empty offline, where no server is asked.
pub type ServerAnswers = BTreeMap<ObjectKey, ServerAnswer>;

/// Renders plans in `format`. `observed` supplies the live objects updates and prunes are shown against.
pub fn format_plans(
    plans: &[OwnerPlan],
    observed: &[Object],
    format: OutputFormat,
    verbose: bool,
    color: bool,
) -> String {
    format_plans_with(
        plans,
        observed,
        format,
        verbose,
        color,
        &ServerAnswers::new(),
    )
}

/// [`format_plans`] with the API server's dry-run answers: creates and updates are shown as the
/// server would store them, and writes it would refuse carry its message.
pub fn format_plans_with(
    plans: &[OwnerPlan],
    observed: &[Object],
    format: OutputFormat,
    verbose: bool,
    color: bool,
    server: &ServerAnswers,
) -> String {
    let mut totals = Counts::default();
    for plan in plans {
        let counts = plan.plan.counts();
        totals.create += counts.create;
        totals.update += counts.update;
        totals.prune += counts.prune;
        totals.unchanged += counts.unchanged;
    }
    let live: BTreeMap<ObjectKey, &Object> = observed.iter().map(|o| (o.key(), o)).rev().collect();
    match format {
        OutputFormat::Diff => format_diff(plans, &live, server, verbose, color, &totals),
        OutputFormat::Patch => format_patch(plans, server, &totals),
        OutputFormat::Json => format_json(plans, server, &totals),
    }
}

fn refusal<'a>(server: &'a ServerAnswers, key: &ObjectKey) -> Option<&'a str> {
    match server.get(key) {
        Some(ServerAnswer::Refused(message)) => Some(message),
        _ => None,
    }
}

/// What the server would store, without the bookkeeping a dry run makes up or bumps.
fn stored(server: &ServerAnswers, key: &ObjectKey) -> Option<Value> {
    match server.get(key) {
        Some(ServerAnswer::Stored(object)) => Some(without_server_bookkeeping(&object.0)),
        _ => None,
    }
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

fn format_diff(
    plans: &[OwnerPlan],
    live: &BTreeMap<ObjectKey, &Object>,
    server: &ServerAnswers,
    verbose: bool,
    color: bool,
    totals: &Counts,
) -> String {
    let style = Style { color };
    let mut out = String::new();
    if live
        .values()
        .any(|o| o.get(&["metadata", "managedFields"]).is_none())
    {
        let note = "# some observed objects carry no managedFields: fields other managers own there count as drift\n# (export with `kubectl get -o yaml --show-managed-fields`)";
        let _ = writeln!(out, "{note}");
    }
    for OwnerPlan { owner, plan } in plans {
        let _ = writeln!(
            out,
            "{}",
            style.paint(
                "1",
                &format!("# {} {}/{}", owner.kind, owner.namespace, owner.name)
            )
        );
        if owner.uid.is_empty() && !live.is_empty() {
            let note = "# its UID is unknown (not in the file, no live CR or child observed): nothing is pruned";
            let _ = writeln!(out, "{note}");
        }
        for entry in &plan.entries {
            let observed = live.get(&entry.key).map(|o| &o.0);
            match &entry.action {
                Action::Create { object } => {
                    let _ = writeln!(
                        out,
                        "{}",
                        style.paint("1;32", &format!("+ create {}", entry.key))
                    );
                    refused_line(&mut out, server, &entry.key, &style);
                    let object = stored(server, &entry.key).unwrap_or_else(|| object.0.clone());
                    out.push_str(&unified(None, Some(&object), &style));
                }
                Action::Update {
                    json_patch,
                    changed_paths,
                    immutable_paths,
                    yielded_paths,
                    ..
                } => {
                    let _ = writeln!(
                        out,
                        "{}",
                        style.paint("1;33", &format!("~ update {}", entry.key))
                    );
                    refused_line(&mut out, server, &entry.key, &style);
                    let paths: Vec<String> =
                        changed_paths.iter().map(ToString::to_string).collect();
                    let _ = writeln!(out, "  changed: {}", paths.join(", "));
                    if !immutable_paths.is_empty() {
                        let paths: Vec<String> =
                            immutable_paths.iter().map(ToString::to_string).collect();
                        let warning = format!(
                            "  ! immutable: {} (the API server rejects this apply; the operator reports ImmutableFieldChanged unless spec.recreateOnImmutableChange is set)",
                            paths.join(", ")
                        );
                        let _ = writeln!(out, "{}", style.paint("31", &warning));
                    }
                    if !yielded_paths.is_empty() {
                        let paths: Vec<String> =
                            yielded_paths.iter().map(ToString::to_string).collect();
                        let _ = writeln!(out, "  left to other managers: {}", paths.join(", "));
                    }
                    if let (Some(observed), Some(stored)) = (observed, stored(server, &entry.key)) {
                        let observed = without_server_bookkeeping(observed);
                        out.push_str(&unified(Some(&observed), Some(&stored), &style));
                    } else if let Some(observed) = observed {
                        let mut expected = observed.clone();
                        if json_patch::patch(&mut expected, json_patch).is_ok() {
                            out.push_str(&unified(Some(observed), Some(&expected), &style));
                        }
                    }
                }
                Action::Unchanged { yielded_paths } if verbose => {
                    let _ = write!(out, "= unchanged {}", entry.key);
                    if !yielded_paths.is_empty() {
                        let paths: Vec<String> =
                            yielded_paths.iter().map(ToString::to_string).collect();
                        let _ = write!(out, " (left to other managers: {})", paths.join(", "));
                    }
                    out.push('\n');
                }
                Action::Unchanged { .. } => {}
                Action::Prune => {
                    let _ = writeln!(
                        out,
                        "{}",
                        style.paint("1;31", &format!("- prune {}", entry.key))
                    );
                    out.push_str(&unified(observed, None, &style));
                }
            }
        }
    }
    let _ = writeln!(out, "\n{}", totals.summary());
    out
}

fn refused_line(out: &mut String, server: &ServerAnswers, key: &ObjectKey, style: &Style) {
    if let Some(message) = refusal(server, key) {
        let line = format!("  ! error: the API server refuses this write: {message}");
        let _ = writeln!(out, "{}", style.paint("1;31", &line));
    }
}

/// Objects as shown to people: Secret values masked, managedFields (bookkeeping, not content) left out.
fn for_display(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let mut value = value.clone();
    if let Some(Value::Object(metadata)) = value.get_mut("metadata") {
        metadata.remove("managedFields");
    }
    serde_norway::to_string(&value).unwrap_or_default()
}

fn unified(before: Option<&Value>, after: Option<&Value>, style: &Style) -> String {
    let (before, after) = mask::mask_pair(before, after);
    let old = for_display(before.as_ref());
    let new = for_display(after.as_ref());
    let diff = similar::TextDiff::from_lines(&old, &new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header("observed", "expected")
        .to_string();
    text.lines()
        .map(|line| {
            let painted = match line.as_bytes().first() {
                Some(b'+') => style.paint("32", line),
                Some(b'-') => style.paint("31", line),
                Some(b'@') => style.paint("36", line),
                _ => line.to_string(),
            };
            format!("    {painted}\n")
        })
        .collect()
}

fn format_patch(plans: &[OwnerPlan], server: &ServerAnswers, totals: &Counts) -> String {
    let mut out = String::new();
    for OwnerPlan { owner, plan } in plans {
        for entry in &plan.entries {
            let body = match &entry.action {
                Action::Create { object } => object,
                Action::Update { apply_body, .. } => apply_body,
                Action::Unchanged { .. } => continue,
                Action::Prune => {
                    let _ = writeln!(
                        out,
                        "# {} {}/{}: delete {}",
                        owner.kind, owner.namespace, owner.name, entry.key
                    );
                    continue;
                }
            };
            let verb = if matches!(entry.action, Action::Create { .. }) {
                "create"
            } else {
                "update"
            };
            let _ = writeln!(
                out,
                "---\n# {} {}/{}: {verb} {} (server-side apply, field manager {FIELD_MANAGER}, force)",
                owner.kind, owner.namespace, owner.name, entry.key
            );
            if let Some(message) = refusal(server, &entry.key) {
                let _ = writeln!(
                    out,
                    "# ! error: the API server refuses this write: {message}"
                );
            }
            out.push_str(&serde_norway::to_string(&mask::mask_object(&body.0)).unwrap_or_default());
        }
    }
    let _ = writeln!(out, "# {}", totals.summary());
    out
}

fn format_json(plans: &[OwnerPlan], server: &ServerAnswers, totals: &Counts) -> String {
    let owners: Vec<Value> = plans
        .iter()
        .map(|OwnerPlan { owner, plan }| {
            let entries: Vec<Value> = plan
                .entries
                .iter()
                .map(|entry| {
                    let mut value = entry_json(entry);
                    if let (Some(message), Value::Object(map)) =
                        (refusal(server, &entry.key), &mut value)
                    {
                        map.insert("refusedByServer".into(), message.into());
                    }
                    value
                })
                .collect();
            json!({
                "owner": {"kind": owner.kind, "namespace": owner.namespace, "name": owner.name, "uid": owner.uid},
                "entries": entries,
            })
        })
        .collect();
    let document = json!({
        "plans": owners,
        "summary": {"create": totals.create, "update": totals.update, "prune": totals.prune, "unchanged": totals.unchanged},
        "changes": totals.create + totals.update + totals.prune > 0,
    });
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

fn entry_json(entry: &diff::Entry) -> Value {
    let key = &entry.key;
    let mut value =
        json!({"group": key.group, "kind": key.kind, "namespace": key.namespace, "name": key.name});
    let secret = key.group.is_empty() && key.kind == "Secret";
    let fields = match &entry.action {
        Action::Create { object } => {
            json!({"action": "create", "object": mask::mask_object(&object.0)})
        }
        Action::Update {
            apply_body,
            json_patch,
            changed_paths,
            immutable_paths,
            yielded_paths,
        } => json!({
            "action": "update",
            "changedPaths": changed_paths,
            "immutablePaths": immutable_paths,
            "yieldedPaths": yielded_paths,
            "patch": if secret { mask::mask_patch(json_patch) } else { serde_json::to_value(json_patch).unwrap_or_default() },
            "applyBody": mask::mask_object(&apply_body.0),
        }),
        Action::Unchanged { yielded_paths } => {
            json!({"action": "unchanged", "yieldedPaths": yielded_paths})
        }
        Action::Prune => json!({"action": "prune"}),
    };
    if let (Value::Object(value), Value::Object(fields)) = (&mut value, fields) {
        value.extend(fields);
    }
    value
}
