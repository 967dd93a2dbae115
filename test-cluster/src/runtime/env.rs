//! A container's environment and command line, resolved as the kubelet resolves them: `env` in
//! order (`value`, `valueFrom` fieldRef / configMapKeyRef / secretKeyRef), each `value` and then
//! `command` and `args` expanded with Kubernetes' `$(VAR)` syntax. Pure: the ConfigMaps and
//! Secrets come in as a lookup, so the rules are table-tested without an API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

/// Why a container cannot start (the kubelet reports it as `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("env {name}: {kind} {object} not found")]
    MissingObject {
        name: String,
        kind: &'static str,
        object: String,
    },
    #[error("env {name}: key {key} not found in {kind} {object}")]
    MissingKey {
        name: String,
        kind: &'static str,
        object: String,
        key: String,
    },
    #[error("env {name}: unsupported fieldPath {path}")]
    UnsupportedField { name: String, path: String },
    #[error("env {name}: {what} is not supported by this node agent")]
    Unsupported { name: String, what: &'static str },
}

/// The pod's ConfigMaps and Secrets, by name: `None` when the object does not exist.
pub trait Objects {
    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>>;
    fn secret(&self, name: &str) -> Option<BTreeMap<String, String>>;
    /// The directory of the `hostPath` PersistentVolume the claim is bound to.
    fn claimed_directory(&self, _claim: &str) -> Option<String> {
        None
    }
}

/// What the kubelet knows about the pod beyond its spec: the address it gave it.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

/// The container's environment, in order, with `base` (the in-cluster API's
/// `KUBERNETES_SERVICE_*`) first so that `env` entries can refer to and override it.
pub fn resolve_env(
    container: &Container,
    facts: &PodFacts,
    objects: &dyn Objects,
    base: &[(String, String)],
) -> Result<Vec<(String, String)>, EnvError> {
    let mut resolved: Vec<(String, String)> = base.to_vec();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(_)) => value_from(var, facts, objects)?,
            (Some(value), None) => expand(value, &lookup(&resolved)),
            (None, None) => String::new(),
        };
        match resolved.iter_mut().find(|(name, _)| name == &var.name) {
            Some(entry) => entry.1 = value,
            None => resolved.push((var.name.clone(), value)),
        }
    }
    Ok(resolved)
}

/// `command` + `args` expanded with the container's environment; `entrypoint` and `default_args`
/// are the image's, used where the container leaves them out (as a container runtime does).
pub fn command_line(
    container: &Container,
    env: &[(String, String)],
    entrypoint: &[String],
    default_args: &[String],
) -> Vec<String> {
    let values = lookup(env);
    let expand_all = |items: &Vec<String>| -> Vec<String> {
        items.iter().map(|item| expand(item, &values)).collect()
    };
    match (&container.command, &container.args) {
        (Some(command), Some(args)) => [expand_all(command), expand_all(args)].concat(),
        (Some(command), None) => expand_all(command),
        (None, Some(args)) => [entrypoint.to_vec(), expand_all(args)].concat(),
        (None, None) => [entrypoint, default_args].concat(),
    }
}

fn lookup(env: &[(String, String)]) -> BTreeMap<&str, &str> {
    env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

fn value_from(var: &EnvVar, facts: &PodFacts, objects: &dyn Objects) -> Result<String, EnvError> {
    let source = var.value_from.as_ref().expect("called with valueFrom");
    let name = var.name.clone();
    if let Some(field) = &source.field_ref {
        return field_value(&field.field_path, facts).ok_or(EnvError::UnsupportedField {
            name,
            path: field.field_path.clone(),
        });
    }
    let (kind, object, key, optional, data) = if let Some(selector) = &source.config_map_key_ref {
        (
            "ConfigMap",
            selector.name.clone(),
            selector.key.clone(),
            selector.optional.unwrap_or(false),
            objects.config_map(&selector.name),
        )
    } else if let Some(selector) = &source.secret_key_ref {
        (
            "Secret",
            selector.name.clone(),
            selector.key.clone(),
            selector.optional.unwrap_or(false),
            objects.secret(&selector.name),
        )
    } else {
        return Err(EnvError::Unsupported {
            name,
            what: "resourceFieldRef",
        });
    };
    match data.map(|data| data.get(&key).cloned()) {
        Some(Some(value)) => Ok(value),
        _ if optional => Ok(String::new()),
        None => Err(EnvError::MissingObject { name, kind, object }),
        Some(None) => Err(EnvError::MissingKey {
            name,
            kind,
            object,
            key,
        }),
    }
}

/// The downward API's `fieldRef` paths a kubelet resolves for env.
pub fn field_value(path: &str, facts: &PodFacts) -> Option<String> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
    };
    if let Some(key) = subscript("metadata.labels['") {
        let labels = meta.labels.as_ref();
        return Some(labels.and_then(|l| l.get(key)).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript("metadata.annotations['") {
        let annotations = meta.annotations.as_ref();
        return Some(
            annotations
                .and_then(|a| a.get(key))
                .cloned()
                .unwrap_or_default(),
        );
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec?.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => spec?.service_account_name.clone().unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        _ => return None,
    })
}

/// Kubernetes' `$(VAR)` expansion (`third_party/forked/golang/expansion`): `$(NAME)` becomes
/// NAME's value when it is defined and stays as written when it is not, `$$` is a literal `$`,
/// and any other `$` is kept.
pub fn expand(input: &str, values: &BTreeMap<&str, &str>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] != b'$' || cursor + 1 == bytes.len() {
            out.push(bytes[cursor]);
            cursor += 1;
            continue;
        }
        let rest = &bytes[cursor + 1..];
        match rest[0] {
            b'$' => {
                out.push(b'$');
                cursor += 2;
            }
            b'(' => match rest.iter().position(|&b| b == b')') {
                Some(close) => {
                    let name = &input[cursor + 2..cursor + 1 + close];
                    match values.get(name) {
                        Some(value) => out.extend_from_slice(value.as_bytes()),
                        None => out.extend_from_slice(format!("$({name})").as_bytes()),
                    }
                    cursor += close + 2;
                }
                None => {
                    out.extend_from_slice(b"$(");
                    cursor += 2;
                }
            },
            other => {
                out.extend_from_slice(&[b'$', other]);
                cursor += 2;
            }
        }
    }
    String::from_utf8(out).expect("bytes copied in order from a str")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let values = BTreeMap::from([("VAR_A", "A"), ("VAR_B", "B"), ("EMPTY", "")]);
        // (input, expected): cases from Kubernetes' expansion tests.
        for (input, expected) in [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(EMPTY)x", "x"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(", "$("),
            ("$()", "$()"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("x$$", "x$"),
            ("ünï$(VAR_A)çødé", "ünïAçødé"),
            ("$ü", "$ü"),
        ] {
            assert_eq!(expand(input, &values), expected, "expanding {input:?}");
        }
    }

    struct Fixed;
    impl Objects for Fixed {
        fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "settings").then(|| BTreeMap::from([("mode".into(), "fast".into())]))
        }
        fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "auth").then(|| BTreeMap::from([("token".into(), "s3cret".into())]))
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "broker-0", "namespace": "meshery", "uid": "u-1",
                         "labels": {"app": "nats"}},
            "spec": {"nodeName": "test-node", "serviceAccountName": "sa", "containers": []},
        }))
        .unwrap()
    }

    fn container(env: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "env": env})).unwrap()
    }

    fn resolve(env: serde_json::Value) -> Result<Vec<(String, String)>, EnvError> {
        let pod = pod();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "10.244.0.7",
            host_ip: "127.0.0.1",
        };
        let base = [(
            "KUBERNETES_SERVICE_HOST".to_string(),
            "10.0.0.1".to_string(),
        )];
        resolve_env(&container(env), &facts, &Fixed, &base)
    }

    #[test]
    fn env_resolves_references_in_order_as_the_kubelet_does() {
        let env = resolve(json!([
            {"name": "NATS_TOKEN", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "token"}}},
            {"name": "URL", "value": "nats://$(NATS_TOKEN)@$(POD_IP):4222"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
            {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
            {"name": "KUBERNETES_SERVICE_HOST", "value": "override"},
        ]))
        .unwrap();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        // POD_IP is defined after URL, so URL keeps `$(POD_IP)` as written.
        assert_eq!(get("URL"), Some("nats://s3cret@$(POD_IP):4222"));
        assert_eq!(get("POD_IP"), Some("10.244.0.7"));
        assert_eq!(get("POD_NAME"), Some("broker-0"));
        assert_eq!(get("APP"), Some("nats"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("API"), Some("https://10.0.0.1"));
        assert_eq!(get("OPTIONAL"), Some(""));
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("override"));
        assert_eq!(
            env.first().map(|(n, _)| n.as_str()),
            Some("KUBERNETES_SERVICE_HOST")
        );
    }

    #[test]
    fn a_missing_required_reference_says_what_is_missing() {
        assert_eq!(
            resolve(
                json!([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}])
            ),
            Err(EnvError::MissingObject {
                name: "T".into(),
                kind: "Secret",
                object: "gone".into()
            })
        );
        assert_eq!(
            resolve(
                json!([{"name": "M", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}}])
            ),
            Err(EnvError::MissingKey {
                name: "M".into(),
                kind: "ConfigMap",
                object: "settings".into(),
                key: "nope".into()
            })
        );
    }

    #[test]
    fn command_and_args_expand_with_the_final_env_and_fall_back_to_the_image() {
        let env = vec![("CONF".to_string(), "/etc/nats/nats.conf".to_string())];
        let entrypoint = vec!["/nats-server".to_string()];
        let defaults = vec!["--config".to_string(), "nats-server.conf".to_string()];
        let with = |value: serde_json::Value| -> Vec<String> {
            let container: Container = serde_json::from_value(value).unwrap();
            command_line(&container, &env, &entrypoint, &defaults)
        };
        assert_eq!(
            with(json!({"name": "c", "args": ["--config", "$(CONF)"]})),
            ["/nats-server", "--config", "/etc/nats/nats.conf"]
        );
        assert_eq!(
            with(json!({"name": "c"})),
            ["/nats-server", "--config", "nats-server.conf"]
        );
        assert_eq!(
            with(json!({"name": "c", "command": ["sh", "-c", "echo $$(CONF) $(CONF)"]})),
            ["sh", "-c", "echo $(CONF) /etc/nats/nats.conf"]
        );
    }
}
