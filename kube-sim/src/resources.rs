//! The resource registry: built-in kinds the sim serves, plus resources served from stored CRDs.

use serde_json::Value;

/// One served resource at one group/version.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a `/status` subresource.
    pub status: bool,
    /// `metadata.generation` is maintained for this kind.
    pub generation: bool,
    /// Set for custom resources: the CRD version definition and the CRD itself.
    pub crd: Option<CrdServing>,
}

#[derive(Clone, Debug)]
pub struct CrdServing {
    /// `spec.versions[i].schema.openAPIV3Schema` for this version.
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
    pub storage_version: String,
    pub scale: bool,
}

impl ResourceInfo {
    /// `group/plural`, the storage key of the resource (independent of version).
    pub fn gr(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// `plural` for core, `plural.group` otherwise (used in messages and accounting).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    /// `Kind.group` used in Invalid messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }
}

struct B(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    bool,
    bool,
);

const BUILTINS: &[B] = &[
    // group, version, plural, singular, kind, namespaced, shortNames, categories, status, generation
    B(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        &[],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        &[],
        false,
        false,
    ),
    B(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        &[],
        false,
        false,
    ),
    B(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        &["all"],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        &[],
        false,
        false,
    ),
    B(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        &["po"],
        &["all"],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        &[],
        false,
        false,
    ),
    B(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        &[],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        &["no"],
        &[],
        true,
        false,
    ),
    B(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        &["all"],
        true,
        true,
    ),
    B(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        &["all"],
        true,
        true,
    ),
    B(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        &["all"],
        true,
        true,
    ),
    B(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        &["all"],
        true,
        true,
    ),
    B(
        "apps",
        "v1",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        &[],
        true,
        true,
    ),
    B(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        &[],
        false,
        true,
    ),
    B(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        &[],
        false,
        false,
    ),
    // Not stored: a create is answered with the decision (see api::subject_access_review).
    B(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        false,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        &[],
        false,
        false,
    ),
    B(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        &["api-extensions"],
        true,
        true,
    ),
];

pub fn builtins() -> Vec<ResourceInfo> {
    BUILTINS
        .iter()
        .map(|b| ResourceInfo {
            group: b.0.into(),
            version: b.1.into(),
            plural: b.2.into(),
            singular: b.3.into(),
            kind: b.4.into(),
            namespaced: b.5,
            short_names: b.6.iter().map(|s| s.to_string()).collect(),
            categories: b.7.iter().map(|s| s.to_string()).collect(),
            status: b.8,
            generation: b.9,
            crd: None,
        })
        .collect()
}

/// Whether a CRD object is established (serving).
pub fn crd_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The served resources of one CRD (one per served version).
pub fn crd_resources(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default()
        .to_string();
    versions
        .iter()
        .filter(|v| v["served"].as_bool() == Some(true))
        .map(|v| ResourceInfo {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().to_string(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            namespaced,
            short_names: strs(&names["shortNames"]),
            categories: strs(&names["categories"]),
            status: v.pointer("/subresources/status").is_some(),
            generation: true,
            crd: Some(CrdServing {
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                storage_version: storage_version.clone(),
                scale: v.pointer("/subresources/scale").is_some(),
            }),
        })
        .collect()
}

/// Kubernetes version priority ordering (GA > beta > alpha, higher numbers first, then others alphabetically).
pub fn version_priority_key(v: &str) -> (u8, i64, i64, String) {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^v(\d+)(?:(alpha|beta)(\d+))?$").expect("regex")
    });
    if let Some(c) = RE.captures(v) {
        let major: i64 = c[1].parse().unwrap_or(0);
        match c.get(2).map(|m| m.as_str()) {
            None => (0, -major, 0, String::new()),
            Some(kind) => {
                let minor: i64 = c[3].parse().unwrap_or(0);
                (
                    if kind == "beta" { 1 } else { 2 },
                    -major,
                    -minor,
                    String::new(),
                )
            }
        }
    } else {
        (3, 0, 0, v.to_string())
    }
}
