//! How each list field merges (atomic, set, or map keyed by fields), per kind, from the Kubernetes OpenAPI.
//!
//! The real kube-apiserver derives this from the OpenAPI extensions `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type` (and, for older built-in fields that carry no
//! list-type marker, from `x-kubernetes-patch-strategy: merge` + `x-kubernetes-patch-merge-key`, which the
//! structured-merge-diff converter treats as an associative list keyed by the merge key). A list without
//! any of these markers is atomic. This module holds a hand-written table of those markers for the kinds
//! the simulator serves, and reads them from a CRD's `openAPIV3Schema` for custom resources.
//!
//! Paths are the field names from the object root to the list (or map), list element levels skipped:
//! `["spec","template","spec","containers","ports"]`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

/// How a list (or map) at a path merges, as the Kubernetes OpenAPI marks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole by whoever sets it; owned as one leaf (`x-kubernetes-list-type: atomic` or no marker).
    Atomic,
    /// Scalar elements merged by value, owned one by one as `v:<json>` (`x-kubernetes-list-type: set`).
    Set,
    /// Object elements merged by the named key fields, owned as `k:{...}` (`x-kubernetes-list-type: map`).
    Map(Vec<String>),
}

/// Answers how lists/maps of one kind merge. `path` is the field names from the object root to the list,
/// list element levels skipped: e.g. `["spec","template","spec","containers","ports"]`.
pub trait Schema: Send + Sync {
    fn list_type(&self, path: &[&str]) -> ListType;
    /// true for a map/struct that is replaced whole (`x-kubernetes-map-type: atomic` /
    /// `+structType=atomic`, e.g. every `metav1.LabelSelector` such as a Deployment's `spec.selector`,
    /// a Service's `spec.selector`, a PodSpec's `nodeSelector`), default false.
    fn is_atomic_struct(&self, path: &[&str]) -> bool {
        let _ = path;
        false
    }
    /// true when the object at `path` is a *map* (OpenAPI `additionalProperties`, e.g. `metadata.labels`,
    /// `data`) rather than a struct with named fields. Map entries are always owned as members
    /// (so a map entry whose value is a non-empty object is encoded with `".": {}`), while a struct field
    /// is a member only when it holds a leaf. Default false (struct).
    fn is_map(&self, path: &[&str]) -> bool {
        let _ = path;
        false
    }
    /// true when `key` of the object at `path` is a map entry rather than a declared struct field.
    /// Defaults to [`Schema::is_map`] of the parent; a schema with both declared `properties` and
    /// undeclared keys (`x-kubernetes-preserve-unknown-fields`) answers per key.
    fn is_map_entry(&self, path: &[&str], key: &str) -> bool {
        let _ = key;
        self.is_map(path)
    }
    /// The OpenAPI `default` of a key field of the map-list at `path`, used when an element omits that
    /// key (the real server keys a container port that has no `protocol` as `"protocol":"TCP"`).
    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        let _ = (path, key);
        None
    }
    /// What the real server compares a *create* against when it records an Update: the empty object
    /// of the kind. For built-in (typed) kinds that object already holds the non-pointer structs
    /// (`spec`, `spec.template`, ...), so those are not reported as added (no `".": {}` under
    /// `f:spec`); for custom resources it is empty, so `f:spec` gets `".": {}`.
    fn empty_object(&self) -> Value {
        Value::Object(Default::default())
    }
}

/// A table-driven schema: dotted path -> marker.
#[derive(Default, Debug)]
struct TableSchema {
    lists: HashMap<String, ListType>,
    atomic_structs: HashSet<String>,
    maps: HashSet<String>,
    /// (dotted list path, key field) -> default value.
    key_defaults: HashMap<(String, String), Value>,
    /// The typed empty object of the kind (see [`Schema::empty_object`]).
    empty: Option<Value>,
}

impl TableSchema {
    fn map_list(&mut self, path: &str, keys: &[&str]) {
        self.lists.insert(
            path.to_string(),
            ListType::Map(keys.iter().map(|k| k.to_string()).collect()),
        );
    }
    fn set_list(&mut self, path: &str) {
        self.lists.insert(path.to_string(), ListType::Set);
    }
    fn atomic_struct(&mut self, path: &str) {
        self.atomic_structs.insert(path.to_string());
    }
    fn map(&mut self, path: &str) {
        self.maps.insert(path.to_string());
    }
    fn set_key_default(&mut self, path: &str, key: &str, v: Value) {
        self.key_defaults
            .insert((path.to_string(), key.to_string()), v);
    }

    /// ObjectMeta at `prefix` ("metadata" or "spec.template.metadata").
    fn object_meta(&mut self, prefix: &str) {
        // ObjectMeta.ownerReferences: +listType=map +listMapKey=uid (patchMergeKey uid), of
        // OwnerReference: +structType=atomic.
        self.map_list(&format!("{prefix}.ownerReferences"), &["uid"]);
        self.atomic_struct(&format!("{prefix}.ownerReferences"));
        // ObjectMeta.finalizers: +listType=set.
        self.set_list(&format!("{prefix}.finalizers"));
        // managedFields: no marker -> atomic (it is also never owned: the server strips it).
        self.map(&format!("{prefix}.labels"));
        self.map(&format!("{prefix}.annotations"));
    }

    /// A `metav1.LabelSelector` (`+structType=atomic`) at `path`.
    fn label_selector(&mut self, path: &str) {
        self.atomic_struct(path);
    }

    /// `conditions` keyed by `type` (`+listType=map +listMapKey=type`).
    fn conditions(&mut self, path: &str) {
        self.map_list(path, &["type"]);
    }

    /// A core/v1 PodSpec at `p` (e.g. "spec.template.spec").
    fn pod_spec(&mut self, p: &str) {
        for c in ["containers", "initContainers", "ephemeralContainers"] {
            let c = format!("{p}.{c}");
            // PodSpec.containers: +listType=map +listMapKey=name.
            self.map_list(&c, &["name"]);
            // Container.ports: +listType=map +listMapKey=containerPort +listMapKey=protocol.
            // ContainerPort.protocol carries `+default="TCP"` in the OpenAPI, so an element without a
            // protocol is keyed as {"containerPort":N,"protocol":"TCP"} — the real default participates
            // in the key.
            self.map_list(&format!("{c}.ports"), &["containerPort", "protocol"]);
            self.set_key_default(&format!("{c}.ports"), "protocol", Value::from("TCP"));
            // Container.env: +listType=map +listMapKey=name. envFrom: +listType=atomic.
            self.map_list(&format!("{c}.env"), &["name"]);
            // EnvVarSource's selectors are all +structType=atomic.
            for selector in [
                "fieldRef",
                "resourceFieldRef",
                "configMapKeyRef",
                "secretKeyRef",
                "fileKeyRef",
            ] {
                self.atomic_struct(&format!("{c}.env.valueFrom.{selector}"));
            }
            // Container.volumeMounts: +listType=map +listMapKey=mountPath.
            self.map_list(&format!("{c}.volumeMounts"), &["mountPath"]);
            // Container.volumeDevices: +listType=map +listMapKey=devicePath.
            self.map_list(&format!("{c}.volumeDevices"), &["devicePath"]);
            // ResourceRequirements.claims: +listType=map +listMapKey=name.
            self.map_list(&format!("{c}.resources.claims"), &["name"]);
            self.map(&format!("{c}.resources.limits"));
            self.map(&format!("{c}.resources.requests"));
            // args, command, envFrom, resizePolicy, securityContext.capabilities.{add,drop}: atomic.
        }
        // PodSpec.volumes: +listType=map +listMapKey=name.
        self.map_list(&format!("{p}.volumes"), &["name"]);
        // PodSpec.imagePullSecrets: +listType=map +listMapKey=name, of LocalObjectReference:
        // +structType=atomic.
        self.map_list(&format!("{p}.imagePullSecrets"), &["name"]);
        self.atomic_struct(&format!("{p}.imagePullSecrets"));
        // NodeSelector and LabelSelector: +structType=atomic.
        self.atomic_struct(&format!(
            "{p}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ));
        self.label_selector(&format!("{p}.topologySpreadConstraints.labelSelector"));
        // PodSpec.hostAliases: +listType=map +listMapKey=ip.
        self.map_list(&format!("{p}.hostAliases"), &["ip"]);
        // PodSpec.topologySpreadConstraints: +listType=map +listMapKey=topologyKey +listMapKey=whenUnsatisfiable.
        self.map_list(
            &format!("{p}.topologySpreadConstraints"),
            &["topologyKey", "whenUnsatisfiable"],
        );
        // PodSpec.schedulingGates / resourceClaims: +listType=map +listMapKey=name.
        self.map_list(&format!("{p}.schedulingGates"), &["name"]);
        self.map_list(&format!("{p}.resourceClaims"), &["name"]);
        // PodSpec.nodeSelector: +mapType=atomic.
        self.atomic_struct(&format!("{p}.nodeSelector"));
        self.map(&format!("{p}.nodeSelector"));
        self.map(&format!("{p}.overhead"));
        // tolerations, readinessGates, dnsConfig.*, securityContext.supplementalGroups/sysctls,
        // affinity term lists, volumes[].*.items, projected.sources: atomic (no marker / +listType=atomic).
    }

    fn pod_template(&mut self, prefix: &str) {
        self.object_meta(&format!("{prefix}.metadata"));
        self.pod_spec(&format!("{prefix}.spec"));
    }
}

fn join(path: &[&str]) -> String {
    path.join(".")
}

impl Schema for TableSchema {
    fn list_type(&self, path: &[&str]) -> ListType {
        self.lists
            .get(&join(path))
            .cloned()
            .unwrap_or(ListType::Atomic)
    }
    fn is_atomic_struct(&self, path: &[&str]) -> bool {
        self.atomic_structs.contains(&join(path))
    }
    fn is_map(&self, path: &[&str]) -> bool {
        self.maps.contains(&join(path))
    }
    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        self.key_defaults
            .get(&(join(path), key.to_string()))
            .cloned()
    }
    fn empty_object(&self) -> Value {
        self.empty
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default()))
    }
}

/// The built-in table for a group/kind (core group is ""). Unknown kinds get a schema where every list
/// (outside `metadata`) is atomic and every object is a struct.
pub fn builtin_schema(group: &str, kind: &str) -> Arc<dyn Schema> {
    let mut t = TableSchema::default();
    t.object_meta("metadata");
    match (group, kind) {
        ("", "ConfigMap") => {
            t.map("data");
            t.map("binaryData");
        }
        ("", "Secret") => {
            t.map("data");
            t.map("stringData");
        }
        ("", "ServiceAccount") => {
            // ServiceAccount.secrets: +listType=map +listMapKey=name (patchMergeKey name).
            t.map_list("secrets", &["name"]);
            // ServiceAccount.imagePullSecrets: +listType=atomic.
        }
        ("", "Service") => {
            // ServiceSpec.ports: +listType=map +listMapKey=port +listMapKey=protocol; ServicePort.protocol
            // has `+default="TCP"`, which participates in the key.
            t.map_list("spec.ports", &["port", "protocol"]);
            t.set_key_default("spec.ports", "protocol", Value::from("TCP"));
            // ServiceSpec.selector: +mapType=atomic.
            t.atomic_struct("spec.selector");
            t.map("spec.selector");
            // clusterIPs, externalIPs, ipFamilies, loadBalancerSourceRanges: atomic.
            t.conditions("status.conditions");
            // status.loadBalancer.ingress: +listType=atomic.
        }
        ("apps", "Deployment") => {
            t.label_selector("spec.selector");
            t.pod_template("spec.template");
            t.conditions("status.conditions");
        }
        ("apps", "StatefulSet") => {
            t.label_selector("spec.selector");
            t.pod_template("spec.template");
            // volumeClaimTemplates: +listType=atomic.
            t.conditions("status.conditions");
        }
        ("apps", "DaemonSet") | ("apps", "ReplicaSet") => {
            t.label_selector("spec.selector");
            t.pod_template("spec.template");
            t.conditions("status.conditions");
        }
        ("", "Pod") => {
            t.pod_spec("spec");
            t.conditions("status.conditions");
        }
        ("policy", "PodDisruptionBudget") => {
            t.label_selector("spec.selector");
            t.conditions("status.conditions");
            t.map("status.disruptedPods");
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            // podSelector is a LabelSelector; ingress, egress, policyTypes: +listType=atomic.
            t.label_selector("spec.podSelector");
        }
        ("rbac.authorization.k8s.io", "ClusterRole") => {
            // rules: +listType=atomic; aggregationRule.clusterRoleSelectors: +listType=atomic.
        }
        ("rbac.authorization.k8s.io", "Role") => {}
        ("rbac.authorization.k8s.io", "ClusterRoleBinding")
        | ("rbac.authorization.k8s.io", "RoleBinding") => {
            // subjects: +listType=atomic; RoleRef: +structType=atomic.
            t.atomic_struct("roleRef");
        }
        ("coordination.k8s.io", "Lease") => {}
        ("", "Event") | ("events.k8s.io", "Event") => {}
        ("", "Namespace") => {
            // NamespaceSpec.finalizers: +listType=atomic.
            t.conditions("status.conditions");
        }
        ("", "PersistentVolumeClaim") => {
            // spec.accessModes: +listType=atomic; spec.selector: LabelSelector.
            t.label_selector("spec.selector");
            t.map("spec.resources.limits");
            t.map("spec.resources.requests");
            t.conditions("status.conditions");
            t.map("status.capacity");
            t.map("status.allocatedResources");
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            // spec.versions: +listType=atomic; names.shortNames/categories: +listType=atomic;
            // status.storedVersions: +listType=atomic.
            t.conditions("status.conditions");
        }
        _ => return Arc::new(t),
    }
    // A known built-in kind: typed, so its empty object has the non-pointer structs and the
    // fields without omitempty: a PodSpec's `containers` (null), ObjectMeta's `creationTimestamp`
    // (a zero time, null), a NetworkPolicy's `podSelector` (an empty LabelSelector), a PVC's
    // `resources`.
    let pod_spec = serde_json::json!({"containers": null});
    let template = serde_json::json!({"metadata": {"creationTimestamp": null}, "spec": pod_spec});
    let spec = match kind {
        "Deployment" => serde_json::json!({"strategy": {}, "template": template}),
        "StatefulSet" | "DaemonSet" => {
            serde_json::json!({"updateStrategy": {}, "template": template})
        }
        "ReplicaSet" => serde_json::json!({"template": template}),
        "Pod" => pod_spec,
        "NetworkPolicy" => serde_json::json!({"podSelector": {}}),
        "PersistentVolumeClaim" => serde_json::json!({"resources": {}}),
        _ => serde_json::json!({}),
    };
    let mut empty = serde_json::json!({"metadata": {}});
    if !matches!(
        kind,
        "ConfigMap"
            | "Secret"
            | "ServiceAccount"
            | "ClusterRole"
            | "Role"
            | "ClusterRoleBinding"
            | "RoleBinding"
            | "Event"
    ) {
        empty["spec"] = spec;
    }
    t.empty = Some(empty);
    Arc::new(t)
}

/// A schema read from a CRD version's `openAPIV3Schema`.
struct CrdSchema {
    root: Value,
    /// The ObjectMeta rules (custom resources use the real ObjectMeta schema for `metadata`).
    meta: TableSchema,
}

/// Where a path leads in an OpenAPI v3 schema.
enum Node<'a> {
    Schema(&'a Value),
    /// Inside `x-kubernetes-preserve-unknown-fields` without properties: a deduced map.
    Deduced,
    /// Not described.
    Unknown,
}

impl CrdSchema {
    fn resolve(&self, path: &[&str]) -> Node<'_> {
        let mut cur = &self.root;
        for name in path {
            // Element levels are skipped in `path`: step through `items` first.
            cur = through_items(cur);
            if let Some(p) = cur.get("properties").and_then(|p| p.get(*name)) {
                cur = p;
            } else if let Some(ap) = cur.get("additionalProperties").filter(|v| v.is_object()) {
                cur = ap;
            } else if cur.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                || cur.get("additionalProperties") == Some(&Value::Bool(true))
            {
                return Node::Deduced;
            } else {
                return Node::Unknown;
            }
        }
        Node::Schema(cur)
    }
}

fn through_items(mut v: &Value) -> &Value {
    while v.get("type").and_then(Value::as_str) == Some("array") {
        match v.get("items") {
            Some(i) => v = i,
            None => break,
        }
    }
    v
}

impl Schema for CrdSchema {
    fn list_type(&self, path: &[&str]) -> ListType {
        if path.first() == Some(&"metadata") {
            return self.meta.list_type(path);
        }
        match self.resolve(path) {
            Node::Schema(s) => match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListType::Set,
                Some("map") => ListType::Map(
                    s.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                _ => ListType::Atomic,
            },
            _ => ListType::Atomic,
        }
    }
    fn is_atomic_struct(&self, path: &[&str]) -> bool {
        if path.first() == Some(&"metadata") {
            return self.meta.is_atomic_struct(path);
        }
        match self.resolve(path) {
            Node::Schema(s) => {
                let s = through_items(s);
                s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
            _ => false,
        }
    }
    fn is_map(&self, path: &[&str]) -> bool {
        if path.first() == Some(&"metadata") {
            return self.meta.is_map(path);
        }
        match self.resolve(path) {
            Node::Schema(s) => {
                let s = through_items(s);
                let has_props = s
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty());
                !has_props
                    && (s
                        .get("additionalProperties")
                        .is_some_and(|a| !a.is_boolean() || a == &Value::Bool(true))
                        || s.get("x-kubernetes-preserve-unknown-fields")
                            == Some(&Value::Bool(true)))
            }
            Node::Deduced => true,
            Node::Unknown => false,
        }
    }
    fn is_map_entry(&self, path: &[&str], key: &str) -> bool {
        if path.first() == Some(&"metadata") {
            return self.meta.is_map(path);
        }
        match self.resolve(path) {
            Node::Schema(s) => {
                let s = through_items(s);
                let declared = s
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| p.contains_key(key));
                !declared
                    && (s
                        .get("additionalProperties")
                        .is_some_and(|a| !a.is_boolean() || a == &Value::Bool(true))
                        || s.get("x-kubernetes-preserve-unknown-fields")
                            == Some(&Value::Bool(true)))
            }
            Node::Deduced => true,
            Node::Unknown => false,
        }
    }
    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        match self.resolve(path) {
            Node::Schema(s) => through_items(s)
                .get("properties")
                .and_then(|p| p.get(key))
                .and_then(|k| k.get("default"))
                .cloned(),
            _ => None,
        }
    }
}

/// A schema read from a CRD version's openAPIV3Schema (honours `x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`, and `default` on map-list key fields);
/// lists without markers are atomic. `metadata` follows the built-in ObjectMeta rules, as the real
/// server does for custom resources.
pub fn crd_schema(open_api_v3_schema: &Value) -> Arc<dyn Schema> {
    let mut meta = TableSchema::default();
    meta.object_meta("metadata");
    Arc::new(CrdSchema {
        root: open_api_v3_schema.clone(),
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_table() {
        let s = builtin_schema("apps", "Deployment");
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "containers"]),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "containers", "ports"]),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            s.key_default(
                &["spec", "template", "spec", "containers", "ports"],
                "protocol"
            ),
            Some(json!("TCP"))
        );
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "tolerations"]),
            ListType::Atomic
        );
        assert_eq!(s.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert!(s.is_atomic_struct(&["spec", "selector"]));
        assert!(s.is_map(&["metadata", "labels"]));
    }

    #[test]
    fn every_listed_kind_has_a_table() {
        let kinds = [
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Service"),
            ("apps", "Deployment"),
            ("apps", "StatefulSet"),
            ("policy", "PodDisruptionBudget"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("coordination.k8s.io", "Lease"),
            ("", "Event"),
            ("", "Namespace"),
            ("", "PersistentVolumeClaim"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ];
        for (g, k) in kinds {
            let s = builtin_schema(g, k);
            assert_eq!(
                s.list_type(&["metadata", "ownerReferences"]),
                ListType::Map(vec!["uid".into()]),
                "{k}"
            );
            assert_eq!(s.list_type(&["metadata", "finalizers"]), ListType::Set);
            assert_eq!(
                s.list_type(&["metadata", "managedFields"]),
                ListType::Atomic
            );
        }
        let map = |keys: &[&str]| ListType::Map(keys.iter().map(|k| k.to_string()).collect());
        let svc = builtin_schema("", "Service");
        assert_eq!(
            svc.list_type(&["spec", "ports"]),
            map(&["port", "protocol"])
        );
        assert_eq!(
            svc.key_default(&["spec", "ports"], "protocol"),
            Some(json!("TCP"))
        );
        assert!(svc.is_atomic_struct(&["spec", "selector"]));
        let sts = builtin_schema("apps", "StatefulSet");
        assert_eq!(
            sts.list_type(&["spec", "volumeClaimTemplates"]),
            ListType::Atomic
        );
        assert_eq!(sts.list_type(&["status", "conditions"]), map(&["type"]));
        let d = builtin_schema("apps", "Deployment");
        let c = ["spec", "template", "spec", "containers"];
        assert_eq!(d.list_type(&[&c[..], &["env"]].concat()), map(&["name"]));
        assert_eq!(
            d.list_type(&[&c[..], &["envFrom"]].concat()),
            ListType::Atomic
        );
        assert_eq!(
            d.list_type(&[&c[..], &["volumeMounts"]].concat()),
            map(&["mountPath"])
        );
        assert_eq!(d.list_type(&[&c[..], &["args"]].concat()), ListType::Atomic);
        assert_eq!(
            d.list_type(&["spec", "template", "spec", "volumes"]),
            map(&["name"])
        );
        assert_eq!(
            d.list_type(&["spec", "template", "spec", "imagePullSecrets"]),
            map(&["name"])
        );
        assert_eq!(
            d.list_type(&["spec", "template", "spec", "initContainers"]),
            map(&["name"])
        );
        let cr = builtin_schema("rbac.authorization.k8s.io", "ClusterRole");
        assert_eq!(cr.list_type(&["rules"]), ListType::Atomic);
        let rb = builtin_schema("rbac.authorization.k8s.io", "RoleBinding");
        assert_eq!(rb.list_type(&["subjects"]), ListType::Atomic);
        let np = builtin_schema("networking.k8s.io", "NetworkPolicy");
        assert_eq!(np.list_type(&["spec", "ingress"]), ListType::Atomic);
        assert!(np.is_atomic_struct(&["spec", "podSelector"]));
        let pdb = builtin_schema("policy", "PodDisruptionBudget");
        assert!(pdb.is_atomic_struct(&["spec", "selector"]));
        let sa = builtin_schema("", "ServiceAccount");
        assert_eq!(sa.list_type(&["secrets"]), map(&["name"]));
        assert_eq!(sa.list_type(&["imagePullSecrets"]), ListType::Atomic);
        let crd = builtin_schema("apiextensions.k8s.io", "CustomResourceDefinition");
        assert_eq!(crd.list_type(&["spec", "versions"]), ListType::Atomic);
        assert_eq!(crd.list_type(&["status", "conditions"]), map(&["type"]));
        // Typed kinds compare creates against an empty object that already has `spec`.
        assert_eq!(
            d.empty_object()["spec"]["template"]["spec"].get("containers"),
            Some(&Value::Null)
        );
        assert!(
            builtin_schema("", "ConfigMap")
                .empty_object()
                .get("spec")
                .is_none()
        );
        assert_eq!(
            builtin_schema("example.com", "Widget").empty_object(),
            json!({})
        );
    }

    #[test]
    fn unknown_kind_is_atomic() {
        let s = builtin_schema("example.com", "Widget");
        assert_eq!(s.list_type(&["spec", "things"]), ListType::Atomic);
        assert_eq!(
            s.list_type(&["metadata", "ownerReferences"]),
            ListType::Map(vec!["uid".into()])
        );
    }

    #[test]
    fn crd_markers() {
        let s = crd_schema(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                  "x-kubernetes-list-map-keys": ["port"],
                                  "items": {"type": "object", "properties": {"port": {"type": "integer"}}}}}}},
                    "sel": {"type": "object", "x-kubernetes-map-type": "atomic"},
                    "extra": {"type": "object", "additionalProperties": {"type": "string"}}
                }},
                "status": {"type": "object", "properties": {
                    "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                                   "x-kubernetes-list-map-keys": ["type"],
                                   "items": {"type": "object", "properties": {"type": {"type": "string"}}}}
                }}
            }
        }));
        assert_eq!(s.list_type(&["spec", "tags"]), ListType::Set);
        assert_eq!(s.list_type(&["spec", "items"]), ListType::Atomic);
        assert_eq!(
            s.list_type(&["spec", "items", "ports"]),
            ListType::Map(vec!["port".into()])
        );
        assert_eq!(
            s.list_type(&["status", "conditions"]),
            ListType::Map(vec!["type".into()])
        );
        assert!(s.is_atomic_struct(&["spec", "sel"]));
        assert!(s.is_map(&["spec", "extra"]));
        assert!(!s.is_map(&["spec"]));
        assert!(s.is_map_entry(&["spec", "extra"], "k"));
        assert!(!s.is_map_entry(&["spec"], "tags"));
        let mixed = crd_schema(&json!({"type": "object", "properties": {"spec": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}}}}));
        assert!(!mixed.is_map_entry(&["spec"], "known"));
        assert!(mixed.is_map_entry(&["spec"], "other"));
        assert!(mixed.is_map_entry(&["spec", "other"], "deep"));
        assert_eq!(s.list_type(&["metadata", "finalizers"]), ListType::Set);
    }
}
