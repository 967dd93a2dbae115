//! `doctor`: the troubleshooting guide as checks. Pure: what the cluster showed ([`Facts`]) in, one
//! verdict per check and subject out, each problem with the fix a user can apply. The I/O shell
//! (`cli::doctor`) gathers the facts and prints the report; nothing here touches the cluster.

use crate::migrate::GO_LEASE_NAME;
use serde::Serialize;

use crate::api::{COMPAT_VERSION, GROUP, LEASE_NAME, STORAGE_VERSION};

/// What one check concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Problem,
    /// The check could not be made (a read the API refused, an answer that did not parse).
    Unknown,
}

/// One line of the report: `check` on `subject` is `verdict` because `message`; do `fix`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub subject: String,
    pub verdict: Verdict,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            check,
            subject: subject.into(),
            verdict: Verdict::Ok,
            message: message.into(),
            fix: None,
        }
    }

    fn problem(
        check: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            subject: subject.into(),
            verdict: Verdict::Problem,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn unknown(
        check: &'static str,
        subject: impl Into<String>,
        why: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            subject: subject.into(),
            verdict: Verdict::Unknown,
            message: why.into(),
            fix: None,
        }
    }
}

/// A CustomResourceDefinition as found, `None` fields when it is missing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrdFacts {
    pub name: String,
    pub present: bool,
    pub established: bool,
    pub served: Vec<String>,
    pub storage: Option<String>,
}

/// An operator Deployment (labelled `app.kubernetes.io/name: meshery-operator`).
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorDeployment {
    pub namespace: String,
    pub name: String,
    pub desired: i32,
    pub available: i32,
    pub leader_elect: bool,
    /// Its pods' ServiceAccount (`default` when the pod template names none).
    pub service_account: String,
}

/// One permission the operator needs: `verb` on `resource` (`plural` or `plural/subresource`) of
/// `group`, limited to the object `name` when set. Cluster-wide unless `in_own_namespace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub name: Option<&'static str>,
    pub verbs: &'static [&'static str],
    /// Granted by a Role in the operator's namespace (its leader-election Leases).
    pub in_own_namespace: bool,
    /// Needed only with `--leader-elect`.
    pub leader_election: bool,
}

const CHILD_VERBS: &[&str] = &["list", "watch", "create", "patch", "delete"];
const READ_CHILD_VERBS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

const fn cluster(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
) -> Permission {
    Permission {
        group,
        resource,
        name: None,
        verbs,
        in_own_namespace: false,
        leader_election: false,
    }
}

/// What the operator's ServiceAccount must be allowed, as the chart grants it (its ClusterRole
/// `meshery-operator` and leader-election Role; `tests/doctor.rs` checks the two agree). MeshSync's
/// own grants, which `rbac.meshsyncGrants: hold` adds, are not required.
pub const OPERATOR_PERMISSIONS: &[Permission] = &[
    cluster("meshery.io", "brokers", &["get", "list", "watch", "patch"]),
    cluster(
        "meshery.io",
        "meshsyncs",
        &["get", "list", "watch", "patch"],
    ),
    cluster("meshery.io", "brokers/status", &["patch"]),
    cluster("meshery.io", "meshsyncs/status", &["patch"]),
    cluster("meshery.io", "brokers/finalizers", &["update"]),
    cluster("meshery.io", "meshsyncs/finalizers", &["update"]),
    cluster("", "configmaps", READ_CHILD_VERBS),
    cluster("", "services", READ_CHILD_VERBS),
    cluster("", "secrets", READ_CHILD_VERBS),
    cluster("", "serviceaccounts", CHILD_VERBS),
    cluster("apps", "deployments", READ_CHILD_VERBS),
    cluster("apps", "statefulsets", READ_CHILD_VERBS),
    cluster("policy", "poddisruptionbudgets", CHILD_VERBS),
    cluster("networking.k8s.io", "networkpolicies", CHILD_VERBS),
    cluster("rbac.authorization.k8s.io", "clusterroles", CHILD_VERBS),
    cluster(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        CHILD_VERBS,
    ),
    Permission {
        name: Some("meshsyncs.meshery.io"),
        ..cluster(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            &["get"],
        )
    },
    cluster("events.k8s.io", "events", &["create", "patch"]),
    Permission {
        in_own_namespace: true,
        leader_election: true,
        ..cluster("coordination.k8s.io", "leases", &["create"])
    },
    Permission {
        name: Some(LEASE_NAME),
        in_own_namespace: true,
        leader_election: true,
        ..cluster("coordination.k8s.io", "leases", &["get", "patch"])
    },
    Permission {
        name: Some(GO_LEASE_NAME),
        in_own_namespace: true,
        ..cluster("coordination.k8s.io", "leases", &["list", "watch"])
    },
];

/// What SubjectAccessReviews said about one operator Deployment's ServiceAccount.
#[derive(Clone, Debug, PartialEq)]
pub struct PermissionFacts {
    pub namespace: String,
    pub service_account: String,
    /// How many verb checks were made.
    pub checked: usize,
    /// Each denied one as `verb group/resource[/name]`.
    pub denied: Vec<String>,
}

/// The leader-election Lease of an operator namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseFacts {
    pub namespace: String,
    pub holder: Option<String>,
    /// Seconds since the holder last renewed, and how long the lease lasts.
    pub renewed_seconds_ago: Option<i64>,
    pub duration_seconds: Option<i64>,
}

/// A Broker or MeshSync as the cluster shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrFacts {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub phase: Option<String>,
    /// The Ready condition's reason and message.
    pub ready_reason: Option<String>,
    pub ready_message: Option<String>,
    /// Children the operator would create: they are missing.
    pub missing_children: Vec<String>,
    /// A Broker's client Service of type LoadBalancer without an address, and for how long.
    pub load_balancer_pending_seconds: Option<i64>,
    /// Finalizers the Go Meshery Operator put on the CR.
    pub go_finalizers: Vec<String>,
    /// A Broker: the NATS handshake from where `doctor` runs. `None` for a MeshSync.
    pub nats: Option<Dial>,
    /// A MeshSync: its connection on its broker's `/connz`. `None` for a Broker.
    pub link: Option<Link>,
}

/// A NATS handshake with the Broker's own credential (and TLS), from where `doctor` runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Dial {
    /// Not dialled, and why (say, a ClusterIP Broker seen from outside the cluster).
    Skipped {
        why: String,
    },
    Answered {
        address: String,
        server_version: String,
    },
    Failed {
        address: String,
        message: String,
    },
}

/// What the broker a MeshSync publishes to shows of it on `/connz?subs=1`.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    Skipped {
        why: String,
    },
    Subscribed {
        address: String,
    },
    /// Connected under MeshSync's name, not subscribed to the request subject.
    NotSubscribed {
        address: String,
    },
    Absent {
        address: String,
    },
    /// The monitoring endpoint could not be read.
    Unreadable {
        address: String,
        message: String,
    },
}

/// An object with one of the Go operator's fixed Broker child names.
#[derive(Clone, Debug, PartialEq)]
pub struct Leftover {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// A pod of a Broker or MeshSync the scheduler could not place.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingPod {
    pub namespace: String,
    pub name: String,
    /// The latest FailedScheduling event's message.
    pub reason: String,
}

/// Everything the checks look at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub crds: Vec<CrdFacts>,
    pub operators: Vec<OperatorDeployment>,
    pub leases: Vec<LeaseFacts>,
    pub permissions: Vec<PermissionFacts>,
    pub resources: Vec<CrFacts>,
    pub leftovers: Vec<Leftover>,
    pub pending_pods: Vec<PendingPod>,
    /// A live holder of the Go Meshery Operator's Lease: (its namespace, the holder).
    pub go_operator_running: Vec<(String, String)>,
}

/// How long a LoadBalancer may stay without an address before it is reported.
const LOAD_BALANCER_PATIENCE_SECONDS: i64 = 60;

/// Every check over `facts`, in the order of the troubleshooting guide.
pub fn diagnose(facts: &Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    check_crds(&facts.crds, &mut findings);
    check_operator(&facts.operators, &facts.leases, &mut findings);
    for permissions in &facts.permissions {
        findings.push(check_permissions(permissions));
    }
    for resource in &facts.resources {
        check_resource(resource, &mut findings);
    }
    for pod in &facts.pending_pods {
        findings.push(Finding::problem(
            "scheduling",
            format!("Pod {}/{}", pod.namespace, pod.name),
            format!("cannot be scheduled: {}", pod.reason),
            "give the CR's pods a place to run: spec.pod.tolerations for tainted nodes, \
             spec.pod.nodeSelector/affinity that some node matches, or smaller spec.resources",
        ));
    }
    for (namespace, holder) in &facts.go_operator_running {
        findings.push(Finding::problem(
            "go-operator",
            format!("Lease {namespace}/{GO_LEASE_NAME}"),
            format!(
                "the Go Meshery Operator ({holder}) is running: this operator stands aside and reconciles nothing"
            ),
            "stop the Go operator (helm uninstall its release, or delete its Deployment); this one then adopts its CRs",
        ));
    }
    for leftover in &facts.leftovers {
        findings.push(Finding::problem(
            "go-operator",
            format!("{} {}/{}", leftover.kind, leftover.namespace, leftover.name),
            "left by the Go Meshery Operator: a second NATS beside the Broker's own",
            format!(
                "the operator removes it while the Broker carries the Go finalizer; else, once the Broker is Ready under this operator: kubectl delete {} {} -n {}",
                leftover.kind.to_lowercase(),
                leftover.name,
                leftover.namespace
            ),
        ));
    }
    findings
}

fn check_crds(crds: &[CrdFacts], findings: &mut Vec<Finding>) {
    for crd in crds {
        let subject = format!("CustomResourceDefinition {}", crd.name);
        if !crd.present {
            findings.push(Finding::problem(
                "crds",
                subject,
                "not installed: Brokers and MeshSyncs cannot be created",
                "kubectl apply --server-side -f crds/ (or helm install the chart)",
            ));
        } else if !crd.established {
            findings.push(Finding::problem(
                "crds",
                subject,
                "not Established yet",
                format!("kubectl wait --for=condition=Established crd/{}", crd.name),
            ));
        } else if !crd.served.iter().any(|v| v == STORAGE_VERSION)
            || crd.storage.as_deref() != Some(STORAGE_VERSION)
        {
            findings.push(Finding::problem(
                "crds",
                subject,
                format!(
                    "serves {} and stores {}; this operator reads {GROUP}/{STORAGE_VERSION}",
                    list_or_none(&crd.served),
                    crd.storage.as_deref().unwrap_or("nothing")
                ),
                "kubectl apply --server-side --force-conflicts -f crds/ (the CRDs of this release)",
            ));
        } else {
            findings.push(Finding::ok(
                "crds",
                subject,
                format!(
                    "Established; serves {}; stores {STORAGE_VERSION}{}",
                    crd.served.join(", "),
                    if crd.served.iter().any(|v| v == COMPAT_VERSION) {
                        ""
                    } else {
                        " (v1alpha2, which the Go operator stored, is not served)"
                    }
                ),
            ));
        }
    }
}

fn check_operator(
    operators: &[OperatorDeployment],
    leases: &[LeaseFacts],
    findings: &mut Vec<Finding>,
) {
    if operators.is_empty() {
        findings.push(Finding::problem(
            "operator",
            "Deployment meshery-operator",
            "no operator Deployment found: nothing reconciles the CRs",
            "helm install meshery-operator . -n meshery --create-namespace \
             (or kubectl apply --server-side -f deploy/meshery-operator.yaml)",
        ));
        return;
    }
    for operator in operators {
        let subject = format!("Deployment {}/{}", operator.namespace, operator.name);
        if operator.available < 1 {
            findings.push(Finding::problem(
                "operator",
                subject,
                format!(
                    "{} of {} replicas available",
                    operator.available, operator.desired
                ),
                format!(
                    "kubectl describe pods -n {} -l name=meshery-operator; \
                     kubectl logs -n {} deployment/{} -c manager",
                    operator.namespace, operator.namespace, operator.name
                ),
            ));
            continue;
        }
        if !operator.leader_elect {
            findings.push(Finding::ok(
                "operator",
                subject,
                format!(
                    "{} of {} replicas available",
                    operator.available, operator.desired
                ),
            ));
            continue;
        }
        let lease = leases.iter().find(|l| l.namespace == operator.namespace);
        match lease {
            Some(LeaseFacts {
                holder: Some(holder),
                renewed_seconds_ago: Some(ago),
                duration_seconds: Some(duration),
                ..
            }) if ago <= duration => findings.push(Finding::ok(
                "operator",
                subject,
                format!(
                    "{} of {} replicas available; {holder} leads (renewed {ago} s ago)",
                    operator.available, operator.desired
                ),
            )),
            Some(LeaseFacts {
                holder,
                renewed_seconds_ago,
                ..
            }) => findings.push(Finding::problem(
                "operator",
                subject,
                format!(
                    "available, but the Lease meshery-operator is not held ({})",
                    match (holder, renewed_seconds_ago) {
                        (Some(holder), Some(ago)) => format!("{holder} last renewed {ago} s ago"),
                        _ => "no holder".to_string(),
                    }
                ),
                format!(
                    "kubectl logs -n {} deployment/{} -c manager (look for leader election)",
                    operator.namespace, operator.name
                ),
            )),
            None => findings.push(Finding::problem(
                "operator",
                subject,
                "available, but no Lease meshery-operator: no replica has become the leader",
                format!(
                    "kubectl logs -n {} deployment/{} -c manager (look for leader election)",
                    operator.namespace, operator.name
                ),
            )),
        }
    }
}

fn check_permissions(facts: &PermissionFacts) -> Finding {
    let subject = format!(
        "ServiceAccount {}/{}",
        facts.namespace, facts.service_account
    );
    if facts.denied.is_empty() {
        return Finding::ok(
            "permissions",
            subject,
            format!("allowed all {} verbs the operator needs", facts.checked),
        );
    }
    Finding::problem(
        "permissions",
        subject,
        format!(
            "denied {} of {} verbs the operator needs: {}",
            facts.denied.len(),
            facts.checked,
            facts.denied.join(", ")
        ),
        format!(
            "bind it to the chart's ClusterRole meshery-operator (and Role \
             meshery-operator-leader-election in {}): helm upgrade the release, or kubectl apply \
             --server-side -f deploy/meshery-operator.yaml",
            facts.namespace
        ),
    )
}

fn check_resource(resource: &CrFacts, findings: &mut Vec<Finding>) {
    let subject = format!("{} {}/{}", resource.kind, resource.namespace, resource.name);
    let check = if resource.kind == "Broker" {
        "broker"
    } else {
        "meshsync"
    };
    for finalizer in &resource.go_finalizers {
        findings.push(Finding::problem(
            "go-operator",
            subject.clone(),
            format!("carries the Go operator's finalizer {finalizer}: with it gone, deleting the CR or its namespace hangs"),
            format!(
                "kubectl patch {} {} -n {} --type=json -p '[{{\"op\":\"remove\",\"path\":\"/metadata/finalizers\"}}]'",
                resource.kind.to_lowercase(),
                resource.name,
                resource.namespace
            ),
        ));
    }
    if !resource.missing_children.is_empty() {
        findings.push(Finding::problem(
            check,
            subject.clone(),
            format!("missing children: {}", resource.missing_children.join(", ")),
            "the operator recreates them within seconds when it runs; see the operator check",
        ));
    }
    if let Some(pending) = resource.load_balancer_pending_seconds
        && pending >= LOAD_BALANCER_PATIENCE_SECONDS
    {
        findings.push(Finding::problem(
            check,
            subject.clone(),
            format!("its LoadBalancer Service has had no address for {pending} s"),
            "kind, minikube and bare metal have no LoadBalancer controller: set spec.service.type \
             NodePort (or ClusterIP when Meshery runs in the cluster), run `minikube tunnel`, or \
             install MetalLB",
        ));
    }
    if let Some(dial) = &resource.nats {
        findings.push(dial_finding(&subject, resource, dial));
    }
    if let Some(link) = &resource.link {
        findings.push(link_finding(&subject, resource, link));
    }
    match resource.phase.as_deref() {
        Some("Ready") => findings.push(Finding::ok(check, subject, "Ready")),
        phase => {
            let reason = resource.ready_reason.as_deref().unwrap_or("no status yet");
            let message = resource.ready_message.as_deref().unwrap_or_default();
            findings.push(Finding::problem(
                check,
                subject,
                format!(
                    "{} ({reason}){}",
                    phase.unwrap_or("not reconciled"),
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ),
                fix_for(reason),
            ));
        }
    }
}

fn dial_finding(subject: &str, broker: &CrFacts, dial: &Dial) -> Finding {
    match dial {
        Dial::Skipped { why } => {
            Finding::ok("nats", subject, format!("not dialled from here: {why}"))
        }
        Dial::Answered {
            address,
            server_version,
        } => Finding::ok(
            "nats",
            subject,
            format!(
                "NATS handshake with the Broker's credential at {address} succeeded (nats-server {server_version})"
            ),
        ),
        Dial::Failed { address, message } => Finding::problem(
            "nats",
            subject,
            format!("no NATS handshake from here: {message}"),
            format!(
                "Meshery Server must reach {address} as this machine tried to: check the Service \
                 (kubectl get service {} -n {}), firewalls between here and it, and that the \
                 broker's pods are Ready",
                broker.name, broker.namespace
            ),
        ),
    }
}

fn link_finding(subject: &str, meshsync: &CrFacts, link: &Link) -> Finding {
    let restart = format!(
        "kubectl logs deployment/{name} -n {ns} (look for the broker connection), then \
         kubectl rollout restart deployment/{name} -n {ns}; the operator does it itself with \
         --restart-disconnected-meshsync",
        name = meshsync.name,
        ns = meshsync.namespace
    );
    match link {
        Link::Skipped { why } => Finding::ok(
            "connection",
            subject,
            format!("connection not checked from here: {why}"),
        ),
        Link::Subscribed { address } => Finding::ok(
            "connection",
            subject,
            format!(
                "its broker ({address}/connz) shows MeshSync connected and subscribed to {}",
                crate::monitor::MESHSYNC_REQUEST_SUBJECT
            ),
        ),
        Link::NotSubscribed { address } => Finding::problem(
            "connection",
            subject,
            format!(
                "its broker ({address}/connz) shows MeshSync connected but not subscribed to {}: \
                 Meshery Server's requests go unanswered",
                crate::monitor::MESHSYNC_REQUEST_SUBJECT
            ),
            restart,
        ),
        Link::Absent { address } => Finding::problem(
            "connection",
            subject,
            format!(
                "its broker ({address}/connz) shows no MeshSync connection: no events reach \
                 Meshery Server, whatever its pods' readiness says"
            ),
            restart,
        ),
        Link::Unreadable { address, message } => Finding::unknown(
            "connection",
            subject,
            format!("the broker's monitoring endpoint {address} could not be read: {message}"),
        ),
    }
}

/// What to do about a Ready condition's reason (`docs/lifecycle.md`).
fn fix_for(reason: &str) -> String {
    match reason {
        "InvalidSpec" => "fix the fields the message names (kubectl edit)".into(),
        "BrokerUnreachable" => "check the Broker's pods and Service; from outside the cluster \
                                the external endpoint must be reachable"
            .into(),
        "MeshSyncDisconnected" => "MeshSync lost its broker connection: kubectl logs and kubectl \
                                   rollout restart its Deployment (or run the operator with \
                                   --restart-disconnected-meshsync)"
            .into(),
        "WaitingForBroker" => "create the Broker it names, or fix spec.broker".into(),
        "ImmutableFieldChanged" => {
            "revert the change or set spec.recreateOnImmutableChange: true".into()
        }
        "no status yet" => "is the operator running? see the operator check".into(),
        _ => "kubectl describe the CR: its Events say what the operator tried".into(),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

/// The exit code: 0 when every check passed, 1 when a problem was found, 2 when something could
/// not be checked (and nothing was found wrong).
pub fn exit_code(findings: &[Finding]) -> u8 {
    if findings.iter().any(|f| f.verdict == Verdict::Problem) {
        1
    } else if findings.iter().any(|f| f.verdict == Verdict::Unknown) {
        2
    } else {
        0
    }
}

/// The report as text: one line per finding, the fix indented below each problem.
pub fn format_text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let mark = match finding.verdict {
            Verdict::Ok => "ok     ",
            Verdict::Problem => "PROBLEM",
            Verdict::Unknown => "UNKNOWN",
        };
        out.push_str(&format!(
            "{mark} {:<11} {}: {}\n",
            finding.check, finding.subject, finding.message
        ));
        if let Some(fix) = &finding.fix {
            out.push_str(&format!("        fix: {fix}\n"));
        }
    }
    let problems = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Problem)
        .count();
    let unknown = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Unknown)
        .count();
    out.push_str(&format!(
        "{} checks: {} ok, {problems} problems, {unknown} could not be checked\n",
        findings.len(),
        findings.len() - problems - unknown
    ));
    out
}
