//! What every rendered object shares: labels, ownership, image references, checksums and the restricted
//! security settings both workloads run with.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use super::labels::{
    APP_LABEL, CONFIG_CHECKSUM_ANNOTATION, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
    NAME_LABEL, OWNER_UID_LABEL,
};
use crate::api::{GROUP, PodOptions, STORAGE_VERSION};

/// The namespace a CR without one lives in, as the API server would default it.
const DEFAULT_NAMESPACE: &str = "default";

/// The CR's namespace, or the one the API server would put it in.
pub(crate) fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

/// The CR whose children are being rendered, reduced to what their metadata needs.
pub(crate) struct Owner<'a> {
    pub kind: &'static str,
    pub name: &'a str,
    pub namespace: &'a str,
    /// Empty when the CR has not been stored yet (offline rendering): the apply layer then has nothing to own.
    pub uid: &'a str,
    /// The `app.kubernetes.io/name` value of this kind's children.
    pub app_name: &'static str,
}

impl<'a> Owner<'a> {
    pub fn new(kind: &'static str, app_name: &'static str, meta: &'a ObjectMeta) -> Self {
        Owner {
            kind,
            name: meta.name.as_deref().unwrap_or_default(),
            namespace: namespace_of(meta),
            uid: meta.uid.as_deref().unwrap_or_default(),
            app_name,
        }
    }

    /// The labels that mark an object as this CR's: what prune and the cluster-scoped sweep select on.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            (INSTANCE_LABEL.to_string(), self.name.to_string()),
            (NAME_LABEL.to_string(), self.app_name.to_string()),
        ])
    }

    /// The labels selecting this CR's pods. `app: <name>` alone is what the Go operator's docs use, but a
    /// Broker and a MeshSync may share a name in one namespace, so the component label is part of the
    /// selector too.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (APP_LABEL.to_string(), self.name.to_string()),
            (INSTANCE_LABEL.to_string(), self.name.to_string()),
            (NAME_LABEL.to_string(), self.app_name.to_string()),
        ])
    }

    pub fn selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector_labels()),
            ..LabelSelector::default()
        }
    }

    /// Pod-template labels: the ownership labels plus `app: <name>`.
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels();
        labels.extend(self.selector_labels());
        labels
    }

    /// Pod-template metadata: the user's extra labels and annotations (`spec.pod`), then the pod
    /// labels and the checksum whose change rolls the pods (validation keeps the two apart).
    pub fn pod_template_meta(
        &self,
        config_checksum: String,
        options: Option<&PodOptions>,
    ) -> ObjectMeta {
        let mut labels = options.and_then(|o| o.labels.clone()).unwrap_or_default();
        labels.extend(self.pod_labels());
        let mut annotations = options
            .and_then(|o| o.annotations.clone())
            .unwrap_or_default();
        annotations.insert(CONFIG_CHECKSUM_ANNOTATION.to_string(), config_checksum);
        ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of a namespaced child: the CR's namespace, labels and controller ownerReference.
    pub fn namespaced_meta(&self, name: impl Into<String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.namespace.to_string()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.controller_reference()]),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of a cluster-scoped child, which a namespaced CR cannot own: the owner's UID goes in a
    /// label, and the ownerReference (when the CRD's UID is known) points at the CRD so uninstalling the
    /// CRDs removes the child.
    pub fn cluster_meta(&self, name: impl Into<String>, crd: Option<OwnerReference>) -> ObjectMeta {
        let mut labels = self.labels();
        labels.insert(OWNER_UID_LABEL.to_string(), self.uid.to_string());
        ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            owner_references: crd.map(|reference| vec![reference]),
            ..ObjectMeta::default()
        }
    }

    fn controller_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: format!("{GROUP}/{STORAGE_VERSION}"),
            kind: self.kind.to_string(),
            name: self.name.to_string(),
            uid: self.uid.to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// `<image>:<tag>`, or `<image>@sha256:…` when the version is a digest.
pub(crate) fn image_reference(image: &str, version: &str) -> String {
    if version.starts_with("sha256:") {
        format!("{image}@{version}")
    } else {
        format!("{image}:{version}")
    }
}

/// Hex SHA-256 over the parts, each length-prefixed so that moving bytes between parts changes the sum.
pub(crate) fn checksum(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The spec's resources when set (taken whole, so a request is never paired with a lower default
/// limit), else the component's defaults.
pub(crate) fn resources_or(
    spec: Option<&ResourceRequirements>,
    requests: (&str, &str),
    limits: (&str, &str),
) -> ResourceRequirements {
    let pair = |(cpu, memory): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])
    };
    spec.cloned().unwrap_or_else(|| ResourceRequirements {
        requests: Some(pair(requests)),
        limits: Some(pair(limits)),
        ..ResourceRequirements::default()
    })
}

/// Pod security for the restricted Pod Security Standard. The UID is numeric so the kubelet can verify
/// `runAsNonRoot` even for images whose user is a name.
pub(crate) fn pod_security_context(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Container security for the restricted Pod Security Standard, with a read-only root filesystem.
pub(crate) fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}
