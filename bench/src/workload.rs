//! What the bench does to the cluster: N namespaces with one Broker + MeshSync pair each, a watch
//! that records when each CR turns Ready, and the hand edits of the reaction test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use serde_json::{Value, json};

use crate::substrate::{BENCH_MANAGER, NAMESPACE_PREFIX, OwnRequests};

/// The Broker and MeshSync of pair `i`, as both operators accept them (v1alpha1, one per namespace).
/// `broker_service_type` sets the Broker's `spec.service.type`; without it the Broker gets the
/// default (a LoadBalancer, whose two NodePorts each limit a cluster to 1384 Brokers).
pub fn pair(i: usize, broker_service_type: Option<&str>) -> [Value; 2] {
    let namespace = namespace(i);
    let mut broker_spec = json!({"size": 1});
    if let Some(service_type) = broker_service_type {
        broker_spec["service"] = json!({"type": service_type});
    }
    [
        custom_resource("Broker", &namespace, "broker", broker_spec),
        custom_resource(
            "MeshSync",
            &namespace,
            "meshsync",
            json!({"size": 1, "broker": {"native": {"name": "broker", "namespace": namespace}}}),
        ),
    ]
}

pub fn namespace(i: usize) -> String {
    format!("{NAMESPACE_PREFIX}{i}")
}

fn custom_resource(kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "meshery.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

pub fn resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "Broker" => "brokers",
        _ => "meshsyncs",
    };
    ApiResource {
        group: "meshery.io".into(),
        version: "v1alpha1".into(),
        api_version: "meshery.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn core(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// When each CR (`Kind ns/name`) was created and first reported condition `Ready` True (the
/// signal both operators give, and what `kubectl wait --for=condition=Ready` waits for).
#[derive(Default)]
pub struct Timeline {
    pub created: HashMap<String, Instant>,
    pub ready: HashMap<String, Instant>,
}

pub type SharedTimeline = Arc<Mutex<Timeline>>;

fn key(kind: &str, object: &DynamicObject) -> String {
    format!(
        "{kind} {}/{}",
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default()
    )
}

/// `status.conditions[type=Ready].status == "True"`.
pub fn is_ready(object: &Value) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Creates `pairs` namespaces, each with its pair; `with_account` also creates the ServiceAccount
/// `meshery-operator` that the Go operator's MeshSync pods run as (its chart makes it in the one
/// namespace it supports).
pub async fn create_pairs(
    client: &kube::Client,
    pairs: usize,
    concurrency: usize,
    with_account: Option<&str>,
    broker_service_type: Option<&str>,
    timeline: &SharedTimeline,
) -> Result<(), String> {
    let params = PostParams {
        field_manager: Some(BENCH_MANAGER.into()),
        ..PostParams::default()
    };
    let results: Vec<Result<(), String>> = futures::stream::iter(0..pairs)
        .map(|i| {
            let params = params.clone();
            async move {
                let namespace = namespace(i);
                let namespaces: Api<DynamicObject> = Api::all_with(client.clone(), &core("Namespace", "namespaces"));
                let object = dynamic(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))?;
                namespaces
                    .create(&params, &object)
                    .await
                    .map_err(|e| format!("creating namespace {namespace}: {e}"))?;
                if let Some(account) = with_account {
                    let accounts: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &namespace, &core("ServiceAccount", "serviceaccounts"));
                    let object = dynamic(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}))?;
                    accounts
                        .create(&params, &object)
                        .await
                        .map_err(|e| format!("creating ServiceAccount {namespace}/{account}: {e}"))?;
                }
                for cr in pair(i, broker_service_type) {
                    let kind = cr["kind"].as_str().unwrap_or_default().to_string();
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource(&kind));
                    let object = dynamic(cr)?;
                    api.create(&params, &object)
                        .await
                        .map_err(|e| format!("creating {kind} in {namespace}: {e}"))?;
                    timeline.lock().unwrap().created.insert(key(&kind, &object), Instant::now());
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

fn dynamic(value: Value) -> Result<DynamicObject, String> {
    serde_json::from_value(value).map_err(|e| format!("building an object: {e}"))
}

/// Lists, then watches, one CR kind, recording when each CR first reports Ready.
pub async fn track_ready(
    client: kube::Client,
    kind: &'static str,
    own: Arc<OwnRequests>,
    timeline: SharedTimeline,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource(kind));
    let resource = format!("{}.meshery.io", resource(kind).plural);
    let see = |object: &DynamicObject| {
        if is_ready(&object.data) {
            timeline
                .lock()
                .unwrap()
                .ready
                .entry(key(kind, object))
                .or_insert_with(Instant::now);
        }
    };
    'relist: loop {
        own.add(&format!("list {resource}"));
        let Ok(list) = api.list(&ListParams::default()).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        list.items.iter().for_each(see);
        let mut version = list.metadata.resource_version.unwrap_or_default();
        loop {
            own.add(&format!("watch {resource}"));
            let Ok(stream) = api
                .watch(&WatchParams::default().timeout(290), &version)
                .await
            else {
                continue 'relist;
            };
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(event)) = stream.try_next().await {
                match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        see(&o);
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                    }
                    WatchEvent::Deleted(o) => {
                        version = o.metadata.resource_version.clone().unwrap_or(version)
                    }
                    WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                    WatchEvent::Error(_) => continue 'relist,
                }
            }
        }
    }
}

/// The object of `list` that the CR `owner_kind`/`owner_name` controls.
fn owned_by<'a, K: kube::Resource>(
    list: &'a [K],
    owner_kind: &str,
    owner_name: &str,
) -> Option<&'a K> {
    list.iter().find(|object| {
        object
            .meta()
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == owner_kind && o.name == owner_name && o.controller == Some(true))
            && object.meta().deletion_timestamp.is_none()
    })
}

/// The outcome of one hand edit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Restored {
    /// From the edit's response to the first read that showed it undone; `None` if it never was
    /// within the timeout.
    pub seconds: Option<f64>,
}

const POLL: Duration = Duration::from_millis(20);

/// `kubectl scale` by hand of the Broker's StatefulSet in `namespace` (an owned field, `spec.replicas`,
/// 1 → 3); returns once the operator put it back.
pub async fn scale_broker_by_hand(
    client: &kube::Client,
    namespace: &str,
    own: &OwnRequests,
    timeout: Duration,
) -> Result<Restored, String> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    own.add("list statefulsets.apps");
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let statefulset = owned_by(&list.items, "Broker", "broker")
        .ok_or_else(|| format!("no StatefulSet in {namespace} is the Broker's"))?;
    let name = statefulset.metadata.name.clone().unwrap_or_default();
    let original = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    api.patch(
        &name,
        &PatchParams {
            field_manager: Some(BENCH_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"spec": {"replicas": original + 2}})),
    )
    .await
    .map_err(|e| format!("scaling {namespace}/{name}: {e}"))?;
    let edited = Instant::now();
    while edited.elapsed() < timeout {
        own.add("get statefulsets.apps");
        let now = api.get(&name).await.map_err(|e| e.to_string())?;
        if now.spec.and_then(|s| s.replicas) == Some(original) {
            return Ok(Restored {
                seconds: Some(edited.elapsed().as_secs_f64()),
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(Restored { seconds: None })
}

/// `kubectl delete` by hand of the MeshSync's Deployment in `namespace`; returns once the operator
/// made a new one.
pub async fn delete_meshsync_deployment_by_hand(
    client: &kube::Client,
    namespace: &str,
    own: &OwnRequests,
    timeout: Duration,
) -> Result<Restored, String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    own.add("list deployments.apps");
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let deployment = owned_by(&list.items, "MeshSync", "meshsync")
        .ok_or_else(|| format!("no Deployment in {namespace} is the MeshSync's"))?;
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let uid = deployment.metadata.uid.clone();
    api.delete(&name, &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting {namespace}/{name}: {e}"))?;
    let deleted = Instant::now();
    while deleted.elapsed() < timeout {
        own.add("list deployments.apps");
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if owned_by(&list.items, "MeshSync", "meshsync").is_some_and(|d| d.metadata.uid != uid) {
            return Ok(Restored {
                seconds: Some(deleted.elapsed().as_secs_f64()),
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(Restored { seconds: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_a_broker_and_a_meshsync_publishing_to_it_in_a_namespace_of_its_own() {
        let [broker, meshsync] = pair(7, None);
        assert_eq!(broker["metadata"]["namespace"], "bench-7");
        assert_eq!(broker["spec"], json!({"size": 1}));
        assert_eq!(
            meshsync["spec"]["broker"]["native"],
            json!({"name": "broker", "namespace": "bench-7"})
        );
    }

    #[test]
    fn a_broker_service_type_goes_into_the_broker_spec_only() {
        let [broker, meshsync] = pair(0, Some("ClusterIP"));
        assert_eq!(broker["spec"]["service"], json!({"type": "ClusterIP"}));
        assert!(meshsync["spec"].get("service").is_none());
    }

    #[test]
    fn ready_means_the_ready_condition_is_true() {
        assert!(is_ready(
            &json!({"status": {"conditions": [{"type": "Processing", "status": "True"}, {"type": "Ready", "status": "True"}]}})
        ));
        assert!(!is_ready(
            &json!({"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "False"}]}})
        ));
        assert!(!is_ready(&json!({})));
    }
}
