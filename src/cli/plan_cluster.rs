//! `meshery-operator plan --cluster`: the offline plan, computed against a live cluster. The Broker
//! and MeshSync CRs, the operator's children, the user's auth Secrets and the MeshSync CRD are read
//! from the cluster and handed to the offline planner as documents and observed objects (so it
//! uses the cluster's real tokens and UIDs); every planned write is then checked with a
//! server-side dry-run apply, whose answer is what the diff shows. Nothing is written.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::KubeConfigOptions;
use kube::{Client, Config};

use super::input::Document;
use super::plan::{
    Outcome, OwnerPlan, PlanArgs, PlanError, ServerAnswer, ServerAnswers, format_plans_with,
    outcome, plan_documents, print, split_invalid, stdout_color,
};
use crate::api::{Broker, BrokerSelection, MeshSync};
use crate::controller::{CHILD_KINDS, ChildKind, api_for, managed_selector, with_type};
use crate::diff::Action;
use crate::object::{Object, ObjectKey};
use crate::render::labels::FIELD_MANAGER;
use crate::render::{MESHSYNC_CRD_NAME, broker_auth_secret_name};

/// Runs `plan --cluster` and prints the result to stdout.
pub fn run(args: &PlanArgs) -> Result<Outcome, PlanError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PlanError::Cluster {
            what: "starting the async runtime".into(),
            message: e.to_string(),
        })?;
    let (plans, observed, answers, invalid) = runtime.block_on(async {
        let cluster = LiveCluster::connect(args.context.as_deref(), args.namespace.clone()).await?;
        let (documents, observed) = cluster.gather().await?;
        let (documents, invalid) = split_invalid(documents);
        let plans = plan_documents(&documents, &observed)?;
        let answers = cluster.dry_run(&plans).await;
        Ok::<_, PlanError>((plans, observed, answers, invalid))
    })?;
    for error in &invalid {
        eprintln!("{error} (InvalidSpec: the operator changes nothing for it until it is fixed)");
    }
    let text = format_plans_with(
        &plans,
        &observed,
        args.output,
        args.verbose,
        stdout_color(),
        &answers,
    );
    print(&text)?;
    let refused: Vec<String> = answers
        .iter()
        .filter_map(|(key, answer)| match answer {
            ServerAnswer::Refused(message) => Some(format!("{key}: {message}")),
            ServerAnswer::Stored(_) => None,
        })
        .collect();
    if !refused.is_empty() {
        return Err(PlanError::Refused { refused });
    }
    Ok(outcome(&plans))
}

pub(super) struct LiveCluster {
    pub(super) client: Client,
    /// The API server's address, to name it when it cannot be reached.
    url: String,
    namespace: Option<String>,
}

/// One line: messages from the API or the network can span lines.
fn one_line(text: impl std::fmt::Display) -> String {
    text.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line for a failed API call: the API's own message and code, or the client's error.
pub(super) fn error_line(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => one_line(format!("{} ({})", status.message, status.code)),
        other => one_line(other),
    }
}

impl LiveCluster {
    /// A client for the kubeconfig's current context, or `context`; with neither a kubeconfig nor
    /// a context, the in-cluster environment.
    pub(super) async fn connect(
        context: Option<&str>,
        namespace: Option<String>,
    ) -> Result<Self, PlanError> {
        let mut config = match context {
            Some(context) => Config::from_kubeconfig(&KubeConfigOptions {
                context: Some(context.to_string()),
                ..KubeConfigOptions::default()
            })
            .await
            .map_err(|e| PlanError::Cluster {
                what: format!("loading kubeconfig context {context:?}"),
                message: one_line(e),
            })?,
            None => Config::infer().await.map_err(|e| PlanError::Cluster {
                what: "no usable kubeconfig or in-cluster environment".into(),
                message: one_line(e),
            })?,
        };
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| PlanError::Cluster {
            what: "building the API client".into(),
            message: one_line(e),
        })?;
        Ok(LiveCluster {
            client,
            url,
            namespace,
        })
    }

    /// What failed while reading: an API answer names the request; no answer at all means the
    /// cluster cannot be reached.
    fn read_error(&self, what: String, error: kube::Error) -> PlanError {
        let message = error_line(&error);
        match error {
            kube::Error::Api(_) => PlanError::Cluster { what, message },
            _ => PlanError::Cluster {
                what: format!("cannot reach the cluster at {} ({what})", self.url),
                message,
            },
        }
    }

    fn api(&self, resource: &ApiResource, namespaced: bool) -> Api<DynamicObject> {
        match (&self.namespace, namespaced) {
            (Some(namespace), true) => {
                Api::namespaced_with(self.client.clone(), namespace, resource)
            }
            _ => Api::all_with(self.client.clone(), resource),
        }
    }

    pub(super) async fn list(
        &self,
        resource: &ApiResource,
        namespaced: bool,
        params: &ListParams,
    ) -> Result<Vec<Object>, PlanError> {
        let what = format!(
            "listing {}{}",
            plural_name(resource),
            match (&self.namespace, namespaced) {
                (Some(namespace), true) => format!(" in namespace {namespace}"),
                _ => String::new(),
            }
        );
        let list = self
            .api(resource, namespaced)
            .list(params)
            .await
            .map_err(|e| self.read_error(what, e))?;
        Ok(list
            .items
            .iter()
            .filter_map(|item| with_type(resource, item))
            .collect())
    }

    /// GETs one object, `None` when it does not exist.
    pub(super) async fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Object>, PlanError> {
        let api: Api<DynamicObject> = match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, resource),
            None => Api::all_with(self.client.clone(), resource),
        };
        let what = match namespace {
            Some(namespace) => format!("reading {} {namespace}/{name}", plural_name(resource)),
            None => format!("reading {} {name}", plural_name(resource)),
        };
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| self.read_error(what, e))?;
        Ok(found.and_then(|object| with_type(resource, &object)))
    }

    /// The CRs as documents for the planner, and everything it observes: the CRs themselves, the
    /// operator's children, the Secrets the Brokers reference, the Brokers MeshSyncs use from other
    /// namespaces, and the MeshSync CRD (whose UID MeshSync's cluster-scoped RBAC points at).
    pub(super) async fn gather(&self) -> Result<(Vec<Document>, Vec<Object>), PlanError> {
        let broker_resource = ApiResource::erase::<Broker>(&());
        let meshsync_resource = ApiResource::erase::<MeshSync>(&());
        let everything = ListParams::default();
        let brokers = self.list(&broker_resource, true, &everything).await?;
        let meshsyncs = self.list(&meshsync_resource, true, &everything).await?;

        let mut observed: Vec<Object> = brokers.iter().chain(&meshsyncs).cloned().collect();
        let children = ListParams::default().labels(&managed_selector());
        for kind in CHILD_KINDS {
            let listed = self
                .list(&kind.api_resource(), kind.namespaced, &children)
                .await?;
            observed.extend(listed);
        }
        let mut seen: BTreeSet<ObjectKey> = observed.iter().map(Object::key).collect();
        let mut extra = Vec::new();

        // MeshSyncs' native Brokers outside the listed namespace: the planner resolves the broker
        // (Service, Secret names, token) from the live CR.
        for meshsync in meshsyncs.iter().filter_map(typed::<MeshSync>) {
            let own_namespace = meshsync.metadata.namespace.clone().unwrap_or_default();
            for selection in meshsync.spec.broker_selections() {
                if let BrokerSelection::Native { name, namespace } = selection {
                    let namespace = namespace.unwrap_or(&own_namespace);
                    let key = cr_key("Broker", namespace, name);
                    if !seen.contains(&key)
                        && let Some(broker) =
                            self.get(&broker_resource, Some(namespace), name).await?
                    {
                        seen.insert(key);
                        extra.push(broker);
                    }
                }
            }
        }
        // Every Broker's credentials Secret not already listed: the user's own (not labelled as
        // the operator's) and a generated one in a namespace outside the listing.
        let secret = ApiResource::erase::<Secret>(&());
        let all_brokers: Vec<Broker> = brokers.iter().chain(&extra).filter_map(typed).collect();
        for broker in &all_brokers {
            let namespace = broker.metadata.namespace.clone().unwrap_or_default();
            let name = broker_auth_secret_name(broker);
            let key = ObjectKey {
                group: String::new(),
                kind: "Secret".into(),
                namespace: Some(namespace.clone()),
                name: name.clone(),
            };
            if seen.insert(key)
                && let Some(found) = self.get(&secret, Some(&namespace), &name).await?
            {
                extra.push(found);
            }
        }
        let crd = ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        };
        extra.extend(self.get(&crd, None, MESHSYNC_CRD_NAME).await?);
        observed.extend(extra);

        let documents = brokers
            .iter()
            .chain(&meshsyncs)
            .map(|object| Document {
                source: format!(
                    "cluster: {} {}/{}",
                    object.kind(),
                    object.namespace().unwrap_or_default(),
                    object.name()
                ),
                value: object.0.clone(),
            })
            .collect();
        Ok((documents, observed))
    }

    /// Sends every planned create and update as a server-side dry-run apply — the same body, field
    /// manager and force the controller uses — and keeps the server's answer.
    async fn dry_run(&self, plans: &[OwnerPlan]) -> ServerAnswers {
        let mut answers = ServerAnswers::new();
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        for entry in plans.iter().flat_map(|p| &p.plan.entries) {
            let body = match &entry.action {
                Action::Create { object } => object,
                Action::Update { apply_body, .. } => apply_body,
                Action::Unchanged { .. } | Action::Prune => continue,
            };
            let (Some(api), Some(kind)) = (
                api_for(&self.client, &entry.key),
                ChildKind::find(&entry.key.group, &entry.key.kind),
            ) else {
                let message = "the operator does not manage this kind".to_string();
                answers.insert(entry.key.clone(), ServerAnswer::Refused(message));
                continue;
            };
            let answer = match api
                .patch(&entry.key.name, &params, &Patch::Apply(&body.0))
                .await
            {
                Ok(stored) => match with_type(&kind.api_resource(), &stored) {
                    Some(object) => ServerAnswer::Stored(object),
                    None => {
                        ServerAnswer::Refused("the API server's answer is not an object".into())
                    }
                },
                Err(kube::Error::Api(status)) => {
                    ServerAnswer::Refused(one_line(format!("{} ({})", status.message, status.code)))
                }
                Err(other) => ServerAnswer::Refused(one_line(format!(
                    "cannot reach the cluster at {}: {other}",
                    self.url
                ))),
            };
            answers.insert(entry.key.clone(), answer);
        }
        answers
    }
}

/// `brokers.meshery.io`, `secrets`: how kubectl names a resource.
fn plural_name(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// A CR read from the cluster as its type; one that does not fit is left to the planner, which
/// reports it with its name.
pub(super) fn typed<K: serde::de::DeserializeOwned>(object: &Object) -> Option<K> {
    serde_json::from_value::<K>(object.0.clone()).ok()
}

fn cr_key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        group: crate::api::GROUP.into(),
        kind: kind.into(),
        namespace: Some(namespace.into()),
        name: name.into(),
    }
}
