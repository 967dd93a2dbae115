//! Shared by the diff tests: fixture loading, a model of what the API server does to an applied
//! object (`simulate_apply`), and generators of realistic desired objects.
#![allow(dead_code)]

use std::collections::BTreeMap;

use meshery_operator::api::Quantity;
use meshery_operator::diff::Owner;
use meshery_operator::object::Object;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub const MANAGER: &str = "meshery-operator";
pub const OWNER_UID: &str = "1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5";
pub const NAMESPACE: &str = "meshery";

/// Every object in a fixture file (multi-document YAML, `kind: List` flattened).
pub fn load(relative: &str) -> Vec<Object> {
    let path = format!("{}/tests/fixtures/{relative}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut objects = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value: Value = Value::deserialize(document).unwrap_or_else(|e| panic!("{path}: {e}"));
        match value.get("kind").and_then(Value::as_str) {
            Some("List") => objects.extend(
                value["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .cloned()
                    .map(Object),
            ),
            Some(_) => objects.push(Object(value)),
            None => {}
        }
    }
    objects
}

pub fn owner(name: &str) -> Owner {
    Owner {
        kind: "Broker".into(),
        name: name.into(),
        namespace: NAMESPACE.into(),
        uid: OWNER_UID.into(),
    }
}

pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// The merge keys the Kubernetes schema declares for the list at `path` (test-side copy, written from
/// the OpenAPI spec independently of the engine).
pub fn list_keys(kind: &str, path: &[String]) -> Option<Vec<&'static str>> {
    let last = path.last()?.as_str();
    let parent_is_item = path.len() >= 2 && path[path.len() - 2].starts_with('[');
    match last {
        "containers" | "initContainers" | "volumes" | "imagePullSecrets" => Some(vec!["name"]),
        "env" if parent_is_item => Some(vec!["name"]),
        "volumeMounts" if parent_is_item => Some(vec!["mountPath"]),
        "ports" if parent_is_item => Some(vec!["containerPort", "protocol"]),
        "ports" if kind == "Service" && path.len() == 2 => Some(vec!["port", "protocol"]),
        "ownerReferences" => Some(vec!["uid"]),
        "topologySpreadConstraints" => Some(vec!["topologyKey", "whenUnsatisfiable"]),
        _ => None,
    }
}

/// Maps and structs the schema marks atomic (selectors, `roleRef`, env-var selectors, the items of
/// `ownerReferences` and `imagePullSecrets`): owned and compared as a whole.
pub fn is_atomic_map(path: &[String]) -> bool {
    match path.split_last() {
        Some((last, parents)) if last.starts_with('[') => parents
            .last()
            .is_some_and(|p| matches!(p.as_str(), "ownerReferences" | "imagePullSecrets")),
        Some((last, _)) => matches!(
            last.as_str(),
            "selector"
                | "podSelector"
                | "namespaceSelector"
                | "nodeSelector"
                | "labelSelector"
                | "roleRef"
                | "fieldRef"
                | "resourceFieldRef"
                | "secretKeyRef"
                | "configMapKeyRef"
        ),
        None => false,
    }
}

/// A list item's key with the server's `protocol: TCP` default.
pub fn key_of(item: &Value, names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                item.get(*n).cloned().unwrap_or_else(|| json!("TCP")),
            )
        })
        .collect()
}

fn display_field(name: &str, first: bool) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        if first {
            name.to_string()
        } else {
            format!(".{name}")
        }
    } else {
        format!("[{name:?}]")
    }
}

fn display_key(key: &Map<String, Value>) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            )
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// One field the operator owns on an applied object.
#[derive(Clone, Debug)]
pub struct OwnedLeaf {
    /// JSON pointer to the value, valid in the desired and in the simulated observed object.
    pub pointer: String,
    /// The path the diff engine reports when the value drifts: the leaf, the whole list for lists
    /// without merge keys, or the list item when the value is part of the item's merge key.
    pub reported: String,
    /// A scalar that is not part of a merge key (so removing it from desired leaves its item in place).
    pub removable: bool,
    /// The pointer every operation of the repairing patch must stay under: the leaf, or for a
    /// merge-key field the list holding the item.
    pub scope: String,
}

/// Every owned leaf of a desired object (identity fields excluded), with `stringData` read as the
/// `data` the server stores it as.
pub fn owned_leaves(object: &Object) -> Vec<OwnedLeaf> {
    let mut leaves = Vec::new();
    let kind = object.kind().to_string();
    let mut value = object.0.clone();
    let string_data = value.as_object_mut().unwrap().remove("stringData");
    if let Some(Value::Object(strings)) = &string_data {
        let data = value
            .as_object_mut()
            .unwrap()
            .entry("data")
            .or_insert_with(|| json!({}));
        for (k, v) in strings {
            data[k] = json!(base64(v.as_str().unwrap().as_bytes()));
        }
    }
    for (name, child) in value.as_object().unwrap() {
        if matches!(name.as_str(), "apiVersion" | "kind") {
            continue;
        }
        let pointer = format!("/{}", escape(name));
        collect_leaves(
            &kind,
            child,
            &pointer,
            &display_field(name, true),
            &mut vec![name.clone()],
            None,
            &mut leaves,
        );
    }
    leaves.retain(|l| l.pointer != "/metadata/name" && l.pointer != "/metadata/namespace");
    if string_data.is_some() {
        for leaf in &mut leaves {
            leaf.removable &= !leaf.pointer.starts_with("/data/");
        }
    }
    leaves
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn collect_leaves(
    kind: &str,
    value: &Value,
    pointer: &str,
    display: &str,
    path: &mut Vec<String>,
    item_keys: Option<&[&str]>,
    out: &mut Vec<OwnedLeaf>,
) {
    match value {
        Value::Null => {}
        Value::Object(_) if is_atomic_map(path) => {
            // An atomic list item changes its identity (merge key) with it: the list is touched.
            let scope = match path.last() {
                Some(step) if step.starts_with('[') => pointer
                    .rsplit_once('/')
                    .map(|(list, _)| list.to_string())
                    .unwrap_or_default(),
                _ => pointer.into(),
            };
            out.push(OwnedLeaf {
                pointer: pointer.into(),
                reported: display.into(),
                removable: false,
                scope,
            })
        }
        Value::Object(map) => {
            for (name, child) in map {
                let child_pointer = format!("{pointer}/{}", escape(name));
                if item_keys.is_some_and(|keys| keys.contains(&name.as_str())) {
                    let scope = pointer
                        .rsplit_once('/')
                        .map(|(list, _)| list.to_string())
                        .unwrap_or_default();
                    out.push(OwnedLeaf {
                        pointer: child_pointer,
                        reported: display.to_string(),
                        removable: false,
                        scope,
                    });
                    continue;
                }
                path.push(name.clone());
                let child_display = format!("{display}{}", display_field(name, false));
                collect_leaves(kind, child, &child_pointer, &child_display, path, None, out);
                path.pop();
            }
        }
        Value::Array(items) => match list_keys(kind, path) {
            Some(keys) => {
                for (i, element) in items.iter().enumerate() {
                    let item_display = format!("{display}{}", display_key(&key_of(element, &keys)));
                    path.push("[item]".into());
                    collect_leaves(
                        kind,
                        element,
                        &format!("{pointer}/{i}"),
                        &item_display,
                        path,
                        Some(&keys),
                        out,
                    );
                    path.pop();
                }
            }
            None => out.push(OwnedLeaf {
                pointer: pointer.into(),
                reported: display.into(),
                removable: false,
                scope: pointer.into(),
            }),
        },
        _ => out.push(OwnedLeaf {
            pointer: pointer.into(),
            reported: display.into(),
            removable: true,
            scope: pointer.into(),
        }),
    }
}

/// The `fieldsV1` set server-side apply records for an applied object.
pub fn fields_v1(kind: &str, value: &Value, path: &mut Vec<String>) -> Value {
    match value {
        Value::Object(_) if is_atomic_map(path) => json!({}),
        Value::Object(map) => {
            let mut out = Map::new();
            for (name, child) in map {
                if child.is_null()
                    || (path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind"))
                {
                    continue;
                }
                if path.len() == 1
                    && path[0] == "metadata"
                    && matches!(name.as_str(), "name" | "namespace")
                {
                    continue;
                }
                path.push(name.clone());
                out.insert(format!("f:{name}"), fields_v1(kind, child, path));
                path.pop();
            }
            Value::Object(out)
        }
        Value::Array(items) => match list_keys(kind, path) {
            Some(keys) => {
                let mut out = Map::new();
                for item in items {
                    let key = key_of(item, &keys);
                    path.push(format!("[{}]", Value::Object(key.clone())));
                    let mut fields = fields_v1(kind, item, path);
                    path.pop();
                    fields
                        .as_object_mut()
                        .unwrap()
                        .insert(".".into(), json!({}));
                    out.insert(format!("k:{}", Value::Object(key)), fields);
                }
                Value::Object(out)
            }
            None => json!({}),
        },
        _ => json!({}),
    }
}

/// An object as the API server would return it after `manager` applied `desired`: server defaults,
/// canonical quantities, allocated IPs, status, metadata, and managedFields for `manager` plus a
/// `kubectl annotate` by someone else (and, on Deployments, Meshery Server's own apply).
pub struct Applied {
    pub object: Object,
    /// Pointers to fields only the server or other managers own.
    pub foreign: Vec<String>,
}

pub fn simulate_apply(desired: &Object) -> Applied {
    let kind = desired.kind().to_string();
    let mut value = desired.0.clone();
    let our_fields = fields_v1(&kind, &desired.0, &mut Vec::new());
    let mut foreign = vec![
        "/metadata/resourceVersion".to_string(),
        "/metadata/annotations/example.com~1note".to_string(),
    ];
    let meta = value["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), json!(format!("uid-{}", desired.name())));
    meta.insert("resourceVersion".into(), json!("4242"));
    meta.insert("creationTimestamp".into(), json!("2026-11-20T09:12:44Z"));
    meta.entry("annotations").or_insert_with(|| json!({}))["example.com/note"] =
        json!("added by hand");
    let mut managed = vec![
        json!({"manager": MANAGER, "operation": "Apply", "apiVersion": desired.api_version(),
               "time": "2026-11-20T09:12:44Z", "fieldsType": "FieldsV1", "fieldsV1": our_fields}),
        json!({"manager": "kubectl-annotate", "operation": "Update", "apiVersion": desired.api_version(),
               "time": "2026-11-21T10:00:00Z", "fieldsType": "FieldsV1",
               "fieldsV1": {"f:metadata": {"f:annotations": {"f:example.com/note": {}}}}}),
    ];
    match kind.as_str() {
        "Secret" => {
            let obj = value.as_object_mut().unwrap();
            if let Some(Value::Object(strings)) = obj.remove("stringData") {
                let data = obj.entry("data").or_insert_with(|| json!({}));
                for (k, v) in strings {
                    data[k] = json!(base64(v.as_str().unwrap().as_bytes()));
                }
            }
            obj.entry("type").or_insert_with(|| json!("Opaque"));
        }
        "Service" => {
            let spec = value["spec"].as_object_mut().unwrap();
            let service_type = spec
                .entry("type")
                .or_insert_with(|| json!("ClusterIP"))
                .as_str()
                .unwrap()
                .to_string();
            let ip = spec
                .entry("clusterIP")
                .or_insert_with(|| json!("10.96.0.17"))
                .clone();
            spec.insert("clusterIPs".into(), json!([ip]));
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
            spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
            spec.insert("sessionAffinity".into(), json!("None"));
            spec.insert("internalTrafficPolicy".into(), json!("Cluster"));
            if service_type != "ClusterIP" {
                spec.insert("externalTrafficPolicy".into(), json!("Cluster"));
            }
            if service_type == "LoadBalancer" {
                spec.insert("allocateLoadBalancerNodePorts".into(), json!(true));
            }
            for (i, port) in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let port = port.as_object_mut().unwrap();
                port.entry("protocol").or_insert_with(|| json!("TCP"));
                let number = port["port"].clone();
                port.entry("targetPort").or_insert(number);
                if service_type != "ClusterIP" {
                    port.insert("nodePort".into(), json!(30000 + i));
                }
            }
            foreign.push("/spec/sessionAffinity".into());
            value["status"] = json!({"loadBalancer": {}});
        }
        "Deployment" | "StatefulSet" => {
            let spec = value["spec"].as_object_mut().unwrap();
            spec.entry("replicas").or_insert(json!(1));
            spec.insert("revisionHistoryLimit".into(), json!(10));
            if kind == "Deployment" {
                spec.insert("progressDeadlineSeconds".into(), json!(600));
                spec.insert("strategy".into(), json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}));
            } else {
                spec.entry("podManagementPolicy")
                    .or_insert(json!("OrderedReady"));
                spec.insert(
                    "updateStrategy".into(),
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                spec.insert(
                    "persistentVolumeClaimRetentionPolicy".into(),
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            default_pod_spec(&mut value["spec"]["template"]["spec"]);
            value["spec"]["template"]["metadata"]["creationTimestamp"] = Value::Null;
            foreign.push("/spec/revisionHistoryLimit".into());
            foreign.push("/spec/template/spec/containers/0/terminationMessagePath".into());
            if kind == "Deployment" {
                let container = &mut value["spec"]["template"]["spec"]["containers"][0];
                let env = container
                    .as_object_mut()
                    .unwrap()
                    .entry("env")
                    .or_insert_with(|| json!([]));
                let at = env.as_array().unwrap().len();
                env.as_array_mut()
                    .unwrap()
                    .push(json!({"name": "MESHSYNC_REDACT_SECRETS", "value": "true"}));
                foreign.push(format!("/spec/template/spec/containers/0/env/{at}/value"));
                let mut server_fields = json!({"f:spec": {"f:template": {
                    "f:metadata": {"f:annotations": {"f:meshery.io/restarted-at": {}}},
                    "f:spec": {"f:containers": {}}}}});
                let container_name = container["name"].as_str().unwrap().to_string();
                let mut container_fields = json!({".": {}, "f:name": {},
                    "f:env": {"k:{\"name\":\"MESHSYNC_REDACT_SECRETS\"}": {".": {}, "f:name": {}, "f:value": {}}}});
                if container.get("args").is_none() {
                    container["args"] = json!(["--outputNamespaces=meshery"]);
                    container_fields["f:args"] = json!({});
                    foreign.push("/spec/template/spec/containers/0/args/0".into());
                }
                server_fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
                    [format!("k:{}", json!({"name": container_name}))] = container_fields;
                let template_meta = value["spec"]["template"]["metadata"]
                    .as_object_mut()
                    .unwrap();
                template_meta
                    .entry("annotations")
                    .or_insert_with(|| json!({}))["meshery.io/restarted-at"] =
                    json!("2026-11-21T14:02:10Z");
                foreign.push("/spec/template/metadata/annotations/meshery.io~1restarted-at".into());
                managed.push(json!({"manager": "meshery-server", "operation": "Apply", "apiVersion": "apps/v1",
                    "time": "2026-11-21T14:02:10Z", "fieldsType": "FieldsV1", "fieldsV1": server_fields}));
            }
            let replicas = value["spec"]["replicas"].clone();
            value["status"] = json!({"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": replicas});
            foreign.push("/status/readyReplicas".into());
        }
        _ => {}
    }
    value["metadata"]["managedFields"] = Value::Array(managed);
    Applied {
        object: Object(value),
        foreign,
    }
}

fn default_pod_spec(spec: &mut Value) {
    let spec = spec.as_object_mut().unwrap();
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("restartPolicy").or_insert(json!("Always"));
    spec.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    spec.entry("securityContext").or_insert(json!({}));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    for container in spec
        .get_mut("containers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let c = container.as_object_mut().unwrap();
        c.entry("imagePullPolicy").or_insert(json!("IfNotPresent"));
        c.insert(
            "terminationMessagePath".into(),
            json!("/dev/termination-log"),
        );
        c.insert("terminationMessagePolicy".into(), json!("File"));
        for port in c
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            port.as_object_mut()
                .unwrap()
                .entry("protocol")
                .or_insert(json!("TCP"));
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            if let Some(Value::Object(p)) = c.get_mut(probe) {
                p.entry("timeoutSeconds").or_insert(json!(1));
                p.entry("periodSeconds").or_insert(json!(10));
                p.entry("successThreshold").or_insert(json!(1));
                p.entry("failureThreshold").or_insert(json!(3));
                if let Some(Value::Object(get)) = p.get_mut("httpGet") {
                    get.entry("scheme").or_insert(json!("HTTP"));
                }
            }
        }
        for var in c
            .get_mut("env")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(Value::Object(field_ref)) = var.pointer_mut("/valueFrom/fieldRef") {
                field_ref.entry("apiVersion").or_insert(json!("v1"));
            }
            if let Some(Value::Object(resource_ref)) =
                var.pointer_mut("/valueFrom/resourceFieldRef")
            {
                resource_ref.entry("divisor").or_insert(json!("0"));
            }
        }
        if let Some(Value::Object(resources)) = c.get_mut("resources") {
            for list in resources.values_mut() {
                for quantity in list
                    .as_object_mut()
                    .into_iter()
                    .flat_map(|m| m.values_mut())
                {
                    let canonical = Quantity::parse(quantity.as_str().unwrap())
                        .unwrap()
                        .to_string();
                    *quantity = json!(canonical);
                }
            }
        }
    }
    for volume in spec
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(Value::Object(config)) = volume.get_mut("configMap") {
            config.entry("defaultMode").or_insert(json!(420));
        }
    }
}

// ---------- generators ----------

fn labels(name: &str, cluster_scoped: bool) -> Value {
    let mut labels = json!({
        "app": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "meshery-operator",
        "app.kubernetes.io/name": "meshery-broker",
    });
    if cluster_scoped {
        labels["meshery.io/owner-uid"] = json!(OWNER_UID);
    }
    labels
}

pub fn metadata(name: &str, object_name: &str) -> Value {
    json!({
        "name": object_name,
        "namespace": NAMESPACE,
        "labels": labels(name, false),
        "ownerReferences": [{"apiVersion": "meshery.io/v1alpha1", "kind": "Broker", "name": name,
                             "uid": OWNER_UID, "controller": true, "blockOwnerDeletion": true}],
    })
}

pub fn cluster_metadata(name: &str, object_name: &str) -> Value {
    json!({"name": object_name, "labels": labels(name, true)})
}

fn quantity() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "100m",
        "0.5",
        "1",
        "250m",
        "64Mi",
        "128Mi",
        "1Gi",
        "1073741824",
        "2G",
        "1.5Gi",
    ])
    .prop_map(str::to_string)
}

fn container(index: usize) -> impl Strategy<Value = Value> {
    (
        "[a-z]{3,6}",
        "v[0-9]\\.[0-9]{1,2}",
        prop::option::of(prop::collection::vec("--[a-z]{2,8}", 1..3)),
        prop::collection::btree_map("[A-Z]{2,6}", "[a-z0-9:/.]{0,12}", 0..3),
        any::<bool>(),
        prop::collection::btree_set(1024u16..9000, 1..3),
        any::<bool>(),
        (quantity(), quantity()),
        any::<bool>(),
    )
        .prop_map(move |(image, tag, args, env, secret_env, ports, explicit_protocol, (cpu, memory), named_probe)| {
            let mut env: Vec<Value> = env.into_iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
            if secret_env {
                env.push(json!({"name": "NATS_TOKEN", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "token"}}}));
            }
            let ports: Vec<Value> = ports
                .iter()
                .enumerate()
                .map(|(i, port)| {
                    let mut p = json!({"name": format!("p{i}"), "containerPort": port});
                    if explicit_protocol {
                        p["protocol"] = json!("TCP");
                    }
                    p
                })
                .collect();
            let probe_port = if named_probe { json!("p0") } else { ports[0]["containerPort"].clone() };
            let mut c = json!({
                "name": format!("c{index}"),
                "image": format!("example/{image}:{tag}"),
                "ports": ports,
                "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": "1Gi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": probe_port}},
                "volumeMounts": [{"name": "config", "mountPath": format!("/etc/c{index}")}],
                "securityContext": {"readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
            });
            if !env.is_empty() {
                c["env"] = json!(env);
            }
            if let Some(args) = args {
                c["args"] = json!(args);
            }
            c
        })
}

/// A realistic set of children for one CR named `name`: Secret, ConfigMap, ServiceAccount,
/// ClusterRole + binding, Service, a Deployment or StatefulSet, sometimes a PodDisruptionBudget.
pub fn desired_set() -> impl Strategy<Value = Vec<Object>> {
    (
        prop::sample::select(vec!["meshery-broker", "nats-a", "b"]),
        "t[0-9a-f]{64}",
        any::<bool>(),
        prop::collection::btree_map("[a-z.]{1,10}", "[ -~]{0,20}", 1..4),
        prop::sample::select(vec!["ClusterIP", "NodePort", "LoadBalancer"]),
        prop::collection::btree_set(1u16..9999, 1..4),
        any::<bool>(),
        1i64..5,
        prop::collection::vec(container(0), 1..2).prop_flat_map(|first| {
            prop::option::of(container(1)).prop_map(move |second| first.iter().cloned().chain(second).collect::<Vec<_>>())
        }),
        any::<bool>(),
    )
        .prop_map(|(name, token, string_data, config, service_type, service_ports, stateful, replicas, containers, pdb)| {
            let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata(name, &format!("{name}-auth")), "type": "Opaque"});
            if string_data {
                secret["stringData"] = json!({"token": token});
            } else {
                secret["data"] = json!({"token": base64(token.as_bytes())});
            }
            let config: BTreeMap<String, String> = config;
            let ports: Vec<Value> = service_ports
                .iter()
                .enumerate()
                .map(|(i, port)| {
                    let target = if i % 2 == 0 { json!(port) } else { json!(format!("p{i}")) };
                    json!({"name": format!("p{i}"), "port": port, "targetPort": target})
                })
                .collect();
            let mut objects = vec![
                Object(secret),
                Object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(name, &format!("{name}-config")), "data": config})),
                Object(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name, name)})),
                Object(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": cluster_metadata(name, &format!("meshery-{name}")),
                    "rules": [{"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]}]})),
                Object(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": cluster_metadata(name, &format!("meshery-{name}")),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("meshery-{name}")},
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]})),
                Object(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata(name, name),
                    "spec": {"type": service_type, "selector": {"app": name}, "ports": ports}})),
                Object(json!({"apiVersion": "apps/v1", "kind": if stateful { "StatefulSet" } else { "Deployment" },
                    "metadata": metadata(name, name),
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": labels(name, false), "annotations": {"meshery.io/config-checksum": "abc123"}},
                            "spec": {"containers": containers, "volumes": [{"name": "config", "configMap": {"name": format!("{name}-config")}}]}
                        }
                    }})),
            ];
            if stateful {
                objects.last_mut().unwrap().0["spec"]["serviceName"] = json!(format!("{name}-headless"));
            }
            if pdb {
                objects.push(Object(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(name, name),
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}}})));
            }
            objects
        })
}

/// A different value of the same JSON type.
pub fn mutate(value: &Value) -> Value {
    match value {
        Value::Bool(b) => json!(!b),
        // Far outside every generated number, so a mutated merge key never collides with another item's.
        Value::Number(n) => json!(n.as_i64().unwrap_or(0) + 10_007),
        Value::String(s) => json!(format!("{s}-mutated")),
        Value::Array(items) => {
            let mut items = items.clone();
            items.push(json!("mutated"));
            Value::Array(items)
        }
        other => json!({"mutated": other.clone()}),
    }
}
