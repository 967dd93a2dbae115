//! The child kinds the operator renders, with what the API needs to address each dynamically.

use kube::discovery::ApiResource;

/// One kind of child object: enough to build an `Api<DynamicObject>` for it from an `Object`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// Every kind the renderer produces, in apply order.
pub const CHILD_KINDS: &[ChildKind] = &[
    ChildKind {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
    },
    ChildKind {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
    },
    ChildKind {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
    },
    ChildKind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
    },
    ChildKind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
    },
    ChildKind {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        namespaced: true,
    },
    ChildKind {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
    },
    ChildKind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
    },
    ChildKind {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        namespaced: true,
    },
    ChildKind {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        namespaced: true,
    },
];

impl ChildKind {
    /// The kind an object of `group`/`kind` belongs to, if the operator renders such objects.
    pub fn find(group: &str, kind: &str) -> Option<&'static ChildKind> {
        CHILD_KINDS
            .iter()
            .find(|k| k.group == group && k.kind == kind)
    }

    pub fn api_resource(&self) -> ApiResource {
        let api_version = if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version,
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }
}
