//! The `Broker` custom resource: a NATS server (or cluster) that MeshSync, Meshery Server and adapters talk through.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Phase;

/// The NATS client port every Broker listens on.
pub const NATS_CLIENT_PORT: u16 = 4222;
/// The NATS cluster-route port used between replicas.
pub const NATS_CLUSTER_PORT: u16 = 6222;
/// The NATS monitoring port (`/healthz`, `/varz`).
pub const NATS_MONITOR_PORT: u16 = 8222;

/// Pattern for `host:port` (DNS name, IPv4, or bracketed IPv6), checked by the API server.
pub(crate) const HOST_PORT_PATTERN: &str =
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):[0-9]{1,5}$";
/// Pattern for an IPv4 or IPv6 CIDR, checked by the API server (the operator checks the address itself).
pub(crate) const CIDR_PATTERN: &str = r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$";
/// Kubernetes' own quantity grammar (`500m`, `64Mi`, `1e3`), checked by the API server.
pub(crate) const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";
/// Pattern for an image tag or digest, checked by the API server.
pub(crate) const IMAGE_TAG_PATTERN: &str =
    r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[a-f0-9]{64})$";

/// A NATS broker managed by the operator.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "meshery.io",
    version = "v1alpha1",
    kind = "Broker",
    doc = "A NATS broker (one server or a routed cluster) that the operator deploys and keeps healthy.",
    plural = "brokers",
    shortname = "br",
    category = "meshery",
    namespaced,
    status = "BrokerStatus",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Internal","type":"string","jsonPath":".status.endpoint.internal"}"#,
    printcolumn = r#"{"name":"External","type":"string","jsonPath":".status.endpoint.external"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BrokerSpec {
    /// Number of NATS replicas; more than one forms a routed NATS cluster.
    #[serde(default = "default_size")]
    #[schemars(range(min = 1, max = 10))]
    pub size: i32,
    /// NATS image tag; the operator pins a tested release when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IMAGE_TAG_PATTERN))]
    pub version: Option<String>,
    /// NATS image repository (default `nats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<BrokerService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BrokerAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BrokerTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustering: Option<BrokerClustering>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<BrokerJetStream>,
    /// Container resources; defaults to requests 100m/64Mi and limits 500m/1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BrokerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<BrokerNetworkPolicy>,
    /// Allow the operator to delete and recreate a child whose immutable fields must change
    /// (for example the StatefulSet when JetStream storage changes). Off by default: such a change is reported instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recreate_on_immutable_change: bool,
    /// Where the pods may run and how they pull: node selector, tolerations, affinity, topology
    /// spread, priority class, image pull secrets, extra labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<super::PodOptions>,
}

pub(crate) fn default_size() -> i32 {
    1
}

/// How the broker is exposed; the fields and values Meshery Server already writes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerService {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Only with `type: LoadBalancer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub load_balancer_class: Option<String>,
    /// CIDRs allowed to reach the load balancer; only with `type: LoadBalancer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = CIDR_PATTERN)))]
    pub load_balancer_source_ranges: Option<Vec<String>>,
    /// `host:port` reported as the external endpoint instead of the derived one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = HOST_PORT_PATTERN), length(max = 261))]
    pub external_endpoint_override: Option<String>,
}

/// The Service types a Broker can be exposed through.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    ClusterIP,
    NodePort,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
        }
    }
}

/// Where the broker's credentials come from.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerAuth {
    /// A Secret with key `token`, or `users.json` (`{"users":[{"user":…,"password":…}]}`).
    /// Without it the operator generates a token Secret once and never rotates it silently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerTls {
    #[serde(default)]
    pub enabled: bool,
    /// Secret with `tls.crt`, `tls.key` and optionally `ca.crt`; required when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct BrokerClustering {
    /// Defaults to `size > 1`; `false` with `size > 1` is invalid (replicas would not share messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerJetStream {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class: Option<String>,
    /// Persistent volume size per replica (default `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = QUANTITY_PATTERN))]
    pub storage_size: Option<String>,
}

/// Settings rendered into `nats.conf`; unset fields keep the NATS defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerConfig {
    /// Largest message accepted, as a quantity (`1Mi`, `8388608`); NATS allows at most 64Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = QUANTITY_PATTERN))]
    pub max_payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub max_connections: Option<i64>,
    #[serde(default)]
    pub debug: bool,
    #[serde(default)]
    pub trace: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerNetworkPolicy {
    #[serde(default)]
    pub enabled: bool,
    /// Extra CIDRs allowed to reach port 4222 besides MeshSync pods.
    #[serde(
        default,
        rename = "allowedCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(inner(regex(pattern = CIDR_PATTERN)))]
    pub allowed_cidrs: Option<Vec<String>>,
}

/// What the operator last observed about a Broker.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::status::conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<BrokerEndpoint>,
}

/// Where clients reach the broker, as `host:port` without a scheme (what Meshery Server reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct BrokerEndpoint {
    #[serde(default)]
    pub internal: String,
    #[serde(default)]
    pub external: String,
}

impl BrokerSpec {
    pub fn service_type(&self) -> ServiceType {
        self.service
            .as_ref()
            .and_then(|s| s.service_type)
            .unwrap_or_default()
    }

    /// Whether the replicas form a routed cluster: explicitly configured, else whenever there is more than one.
    pub fn clustered(&self) -> bool {
        self.clustering
            .as_ref()
            .and_then(|c| c.enabled)
            .unwrap_or(self.size > 1)
    }

    pub fn jetstream_enabled(&self) -> bool {
        self.jetstream.as_ref().is_some_and(|j| j.enabled)
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.enabled)
    }

    /// The TLS Secret, when TLS is enabled (validation requires one then).
    pub fn tls_secret_name(&self) -> Option<&str> {
        self.tls
            .as_ref()
            .filter(|t| t.enabled)
            .and_then(|t| t.secret_name.as_deref())
    }

    /// The user's own auth Secret, when one is referenced.
    pub fn auth_secret_name(&self) -> Option<&str> {
        self.auth
            .as_ref()
            .and_then(|a| a.secret_ref.as_ref())
            .map(|r| r.name.as_str())
    }
}
