//! `meshery-operator doctor`: reads what the troubleshooting checks need from the cluster, asks the
//! API server what the operator's ServiceAccount may do, dials each Broker and reads its `/connz`
//! as Meshery Server and MeshSync would, and prints the verdicts. It changes nothing
//! (SubjectAccessReviews are not stored) and never prints a credential.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};

use super::plan::{PlanError, plan_documents, split_invalid};
use super::plan_cluster::{LiveCluster, error_line, typed};
use crate::api::{Broker, BrokerSelection, MeshSync, Phase, parse_broker_url};
use crate::controller::connection::fetch_connz;
use crate::controller::probe::{
    ProbeAuth, ProbeTarget, ProbeTls, probe_address, probe_broker, running_in_cluster,
};
use crate::controller::{LEASE_NAME, api_for, managed_selector};
use crate::diff::Action;
use crate::doctor::{
    CrFacts, CrdFacts, Dial, Facts, Finding, LeaseFacts, Leftover, Link, OPERATOR_PERMISSIONS,
    OperatorDeployment, PendingPod, PermissionFacts, diagnose, exit_code, format_text,
};
use crate::migrate::{
    GO_FINALIZERS, GO_LEASE_NAME, GoOperator, go_broker_child_keys, go_operator_state,
};
use crate::monitor::{MeshSyncOnBroker, meshsync_on_broker, monitoring_address};
use crate::render::{TLS_CA_KEY, broker_auth_secret_name};

/// Where both operators' charts install by default, so where the Go operator's Lease is looked for
/// even when no operator Deployment of ours is found.
const DEFAULT_NAMESPACE: &str = "meshery";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// Check only the CRs (and operator) in this namespace (default: all namespaces).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = DoctorOutput::Text)]
    pub output: DoctorOutput,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DoctorOutput {
    Text,
    Json,
}

const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=meshery-operator";

/// Runs every check; exit 0 all good, 1 problems found, 2 could not check.
pub fn run(args: &DoctorArgs) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    let findings = runtime
        .block_on(async {
            let cluster =
                LiveCluster::connect(args.context.as_deref(), args.namespace.clone()).await?;
            let mut unknown = Vec::new();
            let facts = gather(&cluster, args.namespace.as_deref(), &mut unknown).await?;
            let mut findings = diagnose(&facts);
            findings.extend(unknown);
            Ok::<_, PlanError>(findings)
        })
        .map_err(|e| e.to_string())?;
    let text = match args.output {
        DoctorOutput::Text => format_text(&findings),
        DoctorOutput::Json => {
            let mut json = serde_json::to_string_pretty(&serde_json::json!({
                "findings": findings,
                "exitCode": exit_code(&findings),
            }))
            .map_err(|e| e.to_string())?;
            json.push('\n');
            json
        }
    };
    super::print_stdout(&text)?;
    Ok(ExitCode::from(exit_code(&findings)))
}

/// Reads the facts. A read the API refuses for one check becomes an `Unknown` finding in
/// `unknown`; not reaching the cluster at all is an error.
async fn gather(
    cluster: &LiveCluster,
    namespace: Option<&str>,
    unknown: &mut Vec<Finding>,
) -> Result<Facts, PlanError> {
    let client = &cluster.client;
    let mut facts = Facts::default();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [Broker::crd_name(), MeshSync::crd_name()] {
        match crds.get_opt(name).await {
            Ok(found) => facts.crds.push(crd_facts(name, found.as_ref())),
            Err(e) => unknown.push(Finding::unknown("crds", name, error_line(&e))),
        }
    }

    let deployments: Api<Deployment> = scoped(client, namespace);
    match deployments
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await
    {
        Ok(list) => {
            for deployment in &list.items {
                facts.operators.push(operator_facts(deployment));
            }
        }
        Err(e) => unknown.push(Finding::unknown("operator", "Deployments", error_line(&e))),
    }
    let mut lease_namespaces: Vec<String> = facts
        .operators
        .iter()
        .map(|o| o.namespace.clone())
        .collect();
    lease_namespaces.push(DEFAULT_NAMESPACE.into());
    lease_namespaces.sort();
    lease_namespaces.dedup();
    for namespace in lease_namespaces {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
        match leases.get_opt(GO_LEASE_NAME).await {
            Ok(Some(lease)) => {
                if let GoOperator::Running { holder } =
                    go_operator_state(Some(&lease), jiff::Timestamp::now())
                {
                    facts.go_operator_running.push((namespace.clone(), holder));
                }
            }
            Ok(None) => {}
            Err(e) => unknown.push(Finding::unknown(
                "go-operator",
                format!("Lease {namespace}/{GO_LEASE_NAME}"),
                error_line(&e),
            )),
        }
    }
    for operator in facts.operators.clone() {
        match permissions(client, &operator).await {
            Ok(found) => facts.permissions.push(found),
            Err(e) => unknown.push(Finding::unknown(
                "permissions",
                format!(
                    "ServiceAccount {}/{}",
                    operator.namespace, operator.service_account
                ),
                format!("SubjectAccessReviews could not be made: {}", error_line(&e)),
            )),
        }
        let leases: Api<Lease> = Api::namespaced(client.clone(), &operator.namespace);
        match leases.get_opt(LEASE_NAME).await {
            Ok(Some(lease)) => facts.leases.push(lease_facts(&operator.namespace, &lease)),
            Ok(None) => {}
            Err(e) => unknown.push(Finding::unknown(
                "operator",
                format!("Lease {}/{LEASE_NAME}", operator.namespace),
                error_line(&e),
            )),
        }
    }

    if facts.crds.iter().all(|c| c.present) {
        let (documents, observed) = cluster.gather().await?;
        let (documents, _invalid) = split_invalid(documents);
        let plans = plan_documents(&documents, &observed)?;
        let mut namespaces = std::collections::BTreeSet::new();
        for object in &observed {
            let resource = match object.kind() {
                "Broker" => match typed::<Broker>(object) {
                    Some(broker) => {
                        let mut facts = cr_facts_broker(&broker, &observed);
                        facts.nats = Some(dial_broker(client, &broker).await);
                        Some(facts)
                    }
                    None => None,
                },
                "MeshSync" => match typed::<MeshSync>(object) {
                    Some(meshsync) => {
                        let mut facts = cr_facts_meshsync(&meshsync);
                        facts.link = Some(link_of(&meshsync, &observed).await);
                        Some(facts)
                    }
                    None => None,
                },
                _ => None,
            };
            let Some(mut resource) = resource else {
                continue;
            };
            if let Some(plan) = plans.iter().find(|p| {
                p.owner.kind == resource.kind
                    && p.owner.namespace == resource.namespace
                    && p.owner.name == resource.name
            }) {
                resource.missing_children = plan
                    .plan
                    .entries
                    .iter()
                    .filter(|e| matches!(e.action, Action::Create { .. }))
                    .map(|e| e.key.to_string())
                    .collect();
            }
            if resource.kind == "Broker" {
                namespaces.insert(resource.namespace.clone());
            }
            facts.resources.push(resource);
        }
        for namespace in &namespaces {
            leftovers(client, namespace, &mut facts.leftovers, unknown).await;
        }
    }

    let pods: Api<Pod> = scoped(client, namespace);
    match pods
        .list(&ListParams::default().labels(&managed_selector()))
        .await
    {
        Ok(list) => facts
            .pending_pods
            .extend(list.items.iter().filter_map(pending_pod)),
        Err(e) => unknown.push(Finding::unknown("scheduling", "Pods", error_line(&e))),
    }
    Ok(facts)
}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

fn crd_facts(name: &str, crd: Option<&CustomResourceDefinition>) -> CrdFacts {
    let Some(crd) = crd else {
        return CrdFacts {
            name: name.to_string(),
            ..CrdFacts::default()
        };
    };
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
    CrdFacts {
        name: name.to_string(),
        present: true,
        established,
        served: crd
            .spec
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.clone())
            .collect(),
        storage: crd
            .spec
            .versions
            .iter()
            .find(|v| v.storage)
            .map(|v| v.name.clone()),
    }
}

fn operator_facts(deployment: &Deployment) -> OperatorDeployment {
    let spec = deployment.spec.as_ref();
    let leader_elect = spec.is_some_and(|s| {
        s.template.spec.as_ref().is_some_and(|pod| {
            pod.containers
                .iter()
                .flat_map(|c| c.args.iter().flatten())
                .any(|a| a == "--leader-elect")
        })
    });
    OperatorDeployment {
        namespace: deployment.namespace().unwrap_or_default(),
        name: deployment.name_any(),
        desired: spec.and_then(|s| s.replicas).unwrap_or(1),
        available: deployment
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
        leader_elect,
        service_account: spec
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|pod| pod.service_account_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "default".into()),
    }
}

fn lease_facts(namespace: &str, lease: &Lease) -> LeaseFacts {
    let spec = lease.spec.as_ref();
    let renewed = spec
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| (jiff::Timestamp::now() - t.0).get_seconds());
    LeaseFacts {
        namespace: namespace.to_string(),
        holder: spec.and_then(|s| s.holder_identity.clone()),
        renewed_seconds_ago: renewed,
        duration_seconds: spec.and_then(|s| s.lease_duration_seconds).map(i64::from),
    }
}

fn ready_condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> (Option<String>, Option<String>) {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map_or((None, None), |c| {
            (Some(c.reason.clone()), Some(c.message.clone()))
        })
}

fn go_finalizers(finalizers: Option<&Vec<String>>) -> Vec<String> {
    finalizers
        .into_iter()
        .flatten()
        .filter(|f| GO_FINALIZERS.contains(&f.as_str()))
        .cloned()
        .collect()
}

fn phase_name(phase: Option<Phase>) -> Option<String> {
    phase.map(|p| p.as_str().to_string())
}

fn cr_facts_broker(broker: &Broker, observed: &[crate::object::Object]) -> CrFacts {
    let namespace = broker.namespace().unwrap_or_default();
    let name = broker.name_any();
    let status = broker.status.as_ref();
    let (ready_reason, ready_message) =
        ready_condition(status.map(|s| s.conditions.as_slice()).unwrap_or_default());
    let load_balancer_pending_seconds = observed
        .iter()
        .filter(|o| o.kind() == "Service" && o.namespace() == Some(namespace.as_str()))
        .filter(|o| o.name() == name)
        .filter_map(typed::<Service>)
        .find(|service| {
            service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
                && service
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .is_none_or(Vec::is_empty)
        })
        .and_then(|service| service.metadata.creation_timestamp)
        .map(|created| (jiff::Timestamp::now() - created.0).get_seconds());
    CrFacts {
        kind: "Broker",
        namespace,
        name,
        phase: phase_name(status.and_then(|s| s.phase)),
        ready_reason,
        ready_message,
        missing_children: Vec::new(),
        load_balancer_pending_seconds,
        go_finalizers: go_finalizers(broker.metadata.finalizers.as_ref()),
        nats: None,
        link: None,
    }
}

fn cr_facts_meshsync(meshsync: &MeshSync) -> CrFacts {
    let status = meshsync.status.as_ref();
    let (ready_reason, ready_message) =
        ready_condition(status.map(|s| s.conditions.as_slice()).unwrap_or_default());
    CrFacts {
        kind: "MeshSync",
        namespace: meshsync.namespace().unwrap_or_default(),
        name: meshsync.name_any(),
        phase: phase_name(status.and_then(|s| s.phase)),
        ready_reason,
        ready_message,
        missing_children: Vec::new(),
        load_balancer_pending_seconds: None,
        go_finalizers: go_finalizers(meshsync.metadata.finalizers.as_ref()),
        nats: None,
        link: None,
    }
}

/// Asks the API server, one SubjectAccessReview per verb, whether the operator's ServiceAccount may
/// do what it needs (the Lease verbs only when it runs with `--leader-elect`).
async fn permissions(
    client: &kube::Client,
    operator: &OperatorDeployment,
) -> Result<PermissionFacts, kube::Error> {
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let namespace = &operator.namespace;
    let user = format!(
        "system:serviceaccount:{namespace}:{}",
        operator.service_account
    );
    let groups = vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_string(),
    ];
    let mut found = PermissionFacts {
        namespace: namespace.clone(),
        service_account: operator.service_account.clone(),
        checked: 0,
        denied: Vec::new(),
    };
    let needed = OPERATOR_PERMISSIONS
        .iter()
        .filter(|p| operator.leader_elect || !p.leader_election);
    for permission in needed {
        let (resource, subresource) = match permission.resource.split_once('/') {
            Some((resource, sub)) => (resource, Some(sub.to_string())),
            None => (permission.resource, None),
        };
        for verb in permission.verbs {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.clone()),
                    groups: Some(groups.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(permission.group.to_string()),
                        resource: Some(resource.to_string()),
                        subresource: subresource.clone(),
                        verb: Some(verb.to_string()),
                        name: permission.name.map(String::from),
                        namespace: permission.in_own_namespace.then(|| namespace.clone()),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let answer = reviews.create(&PostParams::default(), &review).await?;
            found.checked += 1;
            if !answer.status.is_some_and(|s| s.allowed) {
                let group = if permission.group.is_empty() {
                    String::new()
                } else {
                    format!("{}/", permission.group)
                };
                let name = permission.name.map(|n| format!("/{n}")).unwrap_or_default();
                let scope = if permission.in_own_namespace {
                    format!(" in {namespace}")
                } else {
                    String::new()
                };
                found.denied.push(format!(
                    "{verb} {group}{}{name}{scope}",
                    permission.resource
                ));
            }
        }
    }
    Ok(found)
}

/// How long one NATS handshake or `/connz` read may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The address of `broker` this machine can dial: the cluster DNS name inside the cluster, the
/// external endpoint outside it.
fn dialable(broker: &Broker) -> Result<String, String> {
    let Some(endpoint) = broker.status.as_ref().and_then(|s| s.endpoint.as_ref()) else {
        return Err("the Broker has no endpoint in its status yet".into());
    };
    probe_address(&endpoint.internal, &endpoint.external, running_in_cluster()).ok_or_else(|| {
        "the Broker has no external endpoint, and doctor runs outside the cluster (a ClusterIP \
         Service is reachable only inside it)"
            .to_string()
    })
}

/// A NATS handshake with the Broker's credential, read from its auth Secret (never printed: the
/// probe's messages are scrubbed of it).
async fn dial_broker(client: &kube::Client, broker: &Broker) -> Dial {
    let address = match dialable(broker) {
        Ok(address) => address,
        Err(why) => return Dial::Skipped { why },
    };
    let namespace = broker.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret_name = broker_auth_secret_name(broker);
    let failed = |message: String| Dial::Failed {
        address: address.clone(),
        message,
    };
    let data = match secrets.get_opt(&secret_name).await {
        Ok(Some(secret)) => secret.data.unwrap_or_default(),
        Ok(None) => {
            return failed(format!(
                "its auth Secret {namespace}/{secret_name} does not exist"
            ));
        }
        Err(e) => {
            return Dial::Skipped {
                why: format!(
                    "its auth Secret {namespace}/{secret_name} cannot be read: {}",
                    error_line(&e)
                ),
            };
        }
    };
    let Some(auth) = ProbeAuth::from_secret(|key| data.get(key).map(|value| value.0.as_slice()))
    else {
        return failed(format!(
            "its auth Secret {namespace}/{secret_name} has neither key token nor a users.json with a user"
        ));
    };
    let tls = match broker.spec.tls_secret_name() {
        Some(name) => {
            let ca_pem = secrets
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|s| s.data)
                .and_then(|d| d.get(TLS_CA_KEY).map(|ca| ca.0.clone()));
            Some(ProbeTls { ca_pem })
        }
        None => None,
    };
    let target = ProbeTarget {
        address: address.clone(),
        auth,
        tls,
    };
    match probe_broker(&target, DIAL_TIMEOUT).await {
        Ok(success) => Dial::Answered {
            address,
            server_version: success.server_version,
        },
        Err(e) => failed(e.to_string()),
    }
}

/// MeshSync's connection as its broker's `/connz?subs=1` shows it.
async fn link_of(meshsync: &MeshSync, observed: &[crate::object::Object]) -> Link {
    let own_namespace = meshsync.namespace().unwrap_or_default();
    let client_address = match meshsync.spec.broker_selections().first() {
        Some(BrokerSelection::Custom { url }) => {
            parse_broker_url(url).map(|url| format!("{}:{}", url.host, url.port))
        }
        Some(BrokerSelection::Native { name, namespace }) => {
            let namespace = namespace.unwrap_or(&own_namespace);
            observed
                .iter()
                .filter(|o| {
                    o.kind() == "Broker" && o.namespace() == Some(namespace) && o.name() == *name
                })
                .find_map(typed::<Broker>)
                .ok_or_else(|| format!("its Broker {namespace}/{name} does not exist"))
                .and_then(|broker| dialable(&broker))
        }
        None => Err("it names no broker".into()),
    };
    let address = match client_address.map(|a| monitoring_address(&a)) {
        Ok(Some(address)) => address,
        Ok(None) => {
            return Link::Skipped {
                why: "its broker address has no host".into(),
            };
        }
        Err(why) => return Link::Skipped { why },
    };
    match fetch_connz(&address, DIAL_TIMEOUT).await {
        Ok(connz) => match meshsync_on_broker(&connz) {
            MeshSyncOnBroker::Subscribed => Link::Subscribed { address },
            MeshSyncOnBroker::ConnectedNotSubscribed => Link::NotSubscribed { address },
            MeshSyncOnBroker::Absent => Link::Absent { address },
        },
        Err(message) => Link::Unreadable { address, message },
    }
}

/// The Go operator's fixed-name Broker children in `namespace`.
async fn leftovers(
    client: &kube::Client,
    namespace: &str,
    found: &mut Vec<Leftover>,
    unknown: &mut Vec<Finding>,
) {
    for key in go_broker_child_keys(namespace) {
        let Some(api) = api_for(client, &key) else {
            continue;
        };
        match api.get_metadata_opt(&key.name).await {
            Ok(Some(_)) => found.push(Leftover {
                kind: key.kind.clone(),
                namespace: namespace.to_string(),
                name: key.name.clone(),
            }),
            Ok(None) => {}
            Err(e) => unknown.push(Finding::unknown(
                "go-operator",
                key.to_string(),
                error_line(&e),
            )),
        }
    }
}

fn pending_pod(pod: &Pod) -> Option<PendingPod> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some(PendingPod {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        reason: unschedulable
            .message
            .clone()
            .or_else(|| unschedulable.reason.clone())
            .unwrap_or_default(),
    })
}
