//! The `MeshSync` custom resource: the cluster-discovery agent that publishes resource changes to a broker.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Phase;
use super::broker::IMAGE_TAG_PATTERN;

/// Pattern for a custom broker URL, checked by the API server; the operator checks the rest.
pub(crate) const BROKER_URL_PATTERN: &str = r"^(nats|tls)://[^\s/]+$";

/// A MeshSync deployment managed by the operator.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "meshery.io",
    version = "v1alpha1",
    kind = "MeshSync",
    doc = "A MeshSync agent that the operator deploys with RBAC derived from its watch-list.",
    plural = "meshsyncs",
    category = "meshery",
    namespaced,
    status = "MeshSyncStatus",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Publishing-To","type":"string","jsonPath":".status.publishing-to"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MeshSyncSpec {
    #[serde(default = "super::broker::default_size")]
    #[schemars(range(min = 1, max = 10))]
    pub size: i32,
    /// MeshSync image tag; the operator pins a tested release when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IMAGE_TAG_PATTERN))]
    pub version: Option<String>,
    /// MeshSync image repository (default `meshery/meshsync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<MeshSyncBroker>,
    /// A ConfigMap-shaped object (the Go API embeds a whole ConfigMap); only `data.whitelist` and
    /// `data.blacklist` are read.
    #[serde(
        default,
        rename = "watch-list",
        skip_serializing_if = "Option::is_none"
    )]
    pub watch_list: Option<WatchListConfigMap>,
    /// Container resources; defaults to requests 100m/128Mi and limits 1/1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Allow the operator to delete and recreate a child whose immutable fields must change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recreate_on_immutable_change: bool,
    /// A HorizontalPodAutoscaler (or another scaler) sets the Deployment's replicas: the operator
    /// leaves `replicas` out of what it applies, so `size` is not used. Without it the operator's
    /// replicas are authoritative and a `kubectl scale` is reverted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub autoscaled: bool,
    /// Where the pods may run and how they pull: node selector, tolerations, affinity, topology
    /// spread, priority class, image pull secrets, extra labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<super::PodOptions>,
    /// What Meshery UI may do to the cluster's pods through MeshSync: read their logs (log
    /// streaming) and exec into them (the interactive terminal). Both on by default, as Meshery UI
    /// users expect; each off removes its grant from MeshSync's ClusterRole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_access: Option<PodAccess>,
}

/// [`PodAccess`] with its defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodAccessGrants {
    pub logs: bool,
    pub exec: bool,
}

/// The pod subresources MeshSync is granted for Meshery UI's log streaming and terminal.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct PodAccess {
    /// `get pods/log` on every namespace: Meshery UI's log streaming (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<bool>,
    /// `create` (and, for WebSocket clients, `get`) `pods/exec` on every namespace: Meshery UI's
    /// interactive terminal, which runs commands in any pod (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<bool>,
}

/// Which broker MeshSync publishes to: exactly one of `native` and `custom`.
/// Go clients serialise both structs even when empty, so an empty one counts as absent.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct MeshSyncBroker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeBroker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomBroker>,
}

/// A Broker CR, resolved through its status endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct NativeBroker {
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub name: String,
    /// Defaults to the MeshSync's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// A broker the operator does not manage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct CustomBroker {
    /// `nats://[user:password@]host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BROKER_URL_PATTERN), length(max = 2048))]
    pub url: Option<String>,
}

/// The Go API's `corev1.ConfigMap` shape, accepted whole for compatibility.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WatchListConfigMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_data: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// What the operator last observed about a MeshSync.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshSyncStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::status::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The broker URL MeshSync publishes to, without credentials.
    #[serde(
        default,
        rename = "publishing-to",
        skip_serializing_if = "Option::is_none"
    )]
    pub publishing_to: Option<String>,
}

/// The broker a MeshSync is configured for, after treating empty Go structs as absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerSelection<'a> {
    Native {
        name: &'a str,
        namespace: Option<&'a str>,
    },
    Custom {
        url: &'a str,
    },
}

impl MeshSyncSpec {
    /// Whether MeshSync may read pod logs and exec into pods, defaults applied.
    pub fn pod_access_grants(&self) -> PodAccessGrants {
        let access = self.pod_access.clone().unwrap_or_default();
        PodAccessGrants {
            logs: access.logs.unwrap_or(true),
            exec: access.exec.unwrap_or(true),
        }
    }

    /// The configured brokers, empty ones dropped; valid specs have exactly one.
    pub fn broker_selections(&self) -> Vec<BrokerSelection<'_>> {
        let Some(broker) = &self.broker else {
            return Vec::new();
        };
        let native = broker
            .native
            .as_ref()
            .filter(|n| !n.name.is_empty())
            .map(|n| BrokerSelection::Native {
                name: &n.name,
                namespace: n.namespace.as_deref().filter(|ns| !ns.is_empty()),
            });
        let custom = broker
            .custom
            .as_ref()
            .and_then(|c| c.url.as_deref())
            .filter(|u| !u.is_empty())
            .map(|url| BrokerSelection::Custom { url });
        native.into_iter().chain(custom).collect()
    }

    /// The raw `whitelist` and `blacklist` strings from the watch-list ConfigMap.
    pub fn watch_list_data(&self) -> (Option<&str>, Option<&str>) {
        let data = self.watch_list.as_ref().and_then(|w| w.data.as_ref());
        let get = |key: &str| data.and_then(|d| d.get(key)).map(String::as_str);
        (get("whitelist"), get("blacklist"))
    }
}
