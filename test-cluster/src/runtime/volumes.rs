//! A pod's volumes as files, laid out as the kubelet lays them out: a file per key of a
//! ConfigMap or Secret (or per `items` entry), the sources of a projected volume side by side
//! (the admission-added `kube-api-access-*` volume among them: a bound service-account token,
//! the cluster's CA, the namespace), and emptyDirs. Pure: objects and tokens come in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};

use super::env::{Objects, PodFacts, field_value};

/// What goes into a volume's directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Contents {
    /// Files by path relative to the volume, each with its mode.
    Files(Vec<(String, String, u32)>),
    /// An empty directory writable by every user (an emptyDir).
    Scratch,
    /// A directory of the machine's that holds a PersistentVolume's data.
    HostDirectory(String),
}

/// A projected `serviceAccountToken` source's key into the tokens the agent requested.
pub fn token_key(volume: &str, path: &str) -> String {
    format!("{volume}/{path}")
}

/// The kubelet's default file mode for ConfigMap, Secret and projected volumes (0644).
const DEFAULT_MODE: i32 = 0o644;

fn mode(item: Option<i32>, default: Option<i32>) -> u32 {
    item.or(default).unwrap_or(DEFAULT_MODE) as u32 & 0o777
}

/// `data`'s keys as files, all of them or the `items` chosen; a missing object or key is an
/// error unless the source is optional.
fn keyed_files(
    volume: &str,
    (kind, object): (&str, &str),
    data: Option<BTreeMap<String, String>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: Option<i32>,
) -> Result<Vec<(String, String, u32)>, String> {
    let Some(data) = data else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(format!("volume {volume}: {kind} {object} not found"))
        };
    };
    match items {
        None => Ok(data
            .into_iter()
            .map(|(key, value)| (key, value, mode(None, default_mode)))
            .collect()),
        Some(items) => {
            let mut files = Vec::new();
            for item in items {
                match data.get(&item.key) {
                    Some(value) => files.push((
                        item.path.clone(),
                        value.clone(),
                        mode(item.mode, default_mode),
                    )),
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "volume {volume}: key {} not in {kind} {object}",
                            item.key
                        ));
                    }
                }
            }
            Ok(files)
        }
    }
}

/// What `volume` of `pod` holds.
pub fn contents(
    volume: &Volume,
    facts: &PodFacts,
    objects: &dyn Objects,
    tokens: &BTreeMap<String, String>,
) -> Result<Contents, String> {
    let name = volume.name.as_str();
    if volume.empty_dir.is_some() {
        return Ok(Contents::Scratch);
    }
    if let Some(source) = &volume.config_map {
        return keyed_files(
            name,
            ("ConfigMap", &source.name),
            objects.config_map(&source.name),
            source.items.as_ref(),
            source.optional.unwrap_or(false),
            source.default_mode,
        )
        .map(Contents::Files);
    }
    if let Some(source) = &volume.secret {
        let secret = source.secret_name.clone().unwrap_or_default();
        return keyed_files(
            name,
            ("Secret", &secret),
            objects.secret(&secret),
            source.items.as_ref(),
            source.optional.unwrap_or(false),
            source.default_mode,
        )
        .map(Contents::Files);
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        return objects
            .claimed_directory(&claim.claim_name)
            .map(Contents::HostDirectory)
            .ok_or_else(|| {
                format!(
                    "volume {name}: claim {} is not bound to a hostPath PersistentVolume",
                    claim.claim_name
                )
            });
    }
    let Some(projected) = &volume.projected else {
        return Err(format!(
            "volume {name}: only configMap, secret, projected, emptyDir and hostPath-backed \
             persistentVolumeClaim volumes run on this node"
        ));
    };
    let default_mode = projected.default_mode;
    let mut files = Vec::new();
    for source in projected.sources.iter().flatten() {
        if let Some(token) = &source.service_account_token {
            let key = token_key(name, &token.path);
            let value = tokens
                .get(&key)
                .ok_or_else(|| format!("volume {name}: no token requested for {}", token.path))?;
            files.push((token.path.clone(), value.clone(), mode(None, default_mode)));
        }
        if let Some(config_map) = &source.config_map {
            files.extend(keyed_files(
                name,
                ("ConfigMap", &config_map.name),
                objects.config_map(&config_map.name),
                config_map.items.as_ref(),
                config_map.optional.unwrap_or(false),
                default_mode,
            )?);
        }
        if let Some(secret) = &source.secret {
            files.extend(keyed_files(
                name,
                ("Secret", &secret.name),
                objects.secret(&secret.name),
                secret.items.as_ref(),
                secret.optional.unwrap_or(false),
                default_mode,
            )?);
        }
        if let Some(downward) = &source.downward_api {
            for item in downward.items.iter().flatten() {
                let path = item.field_ref.as_ref().map(|f| f.field_path.as_str());
                let value = path.and_then(|p| field_value(p, facts)).ok_or_else(|| {
                    format!("volume {name}: unsupported downwardAPI item {}", item.path)
                })?;
                files.push((item.path.clone(), value, mode(item.mode, default_mode)));
            }
        }
    }
    Ok(Contents::Files(files))
}

/// The service-account tokens `pod`'s projected volumes need: (key, audience, expiry seconds).
pub fn token_requests(pod: &Pod) -> Vec<(String, Option<String>, Option<i64>)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|volume| {
            volume
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .filter_map(|s| s.service_account_token.as_ref())
                .map(|t| {
                    (
                        token_key(&volume.name, &t.path),
                        t.audience.clone(),
                        t.expiration_seconds,
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed;
    impl Objects for Fixed {
        fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "kube-root-ca.crt").then(|| BTreeMap::from([("ca.crt".into(), "CA".into())]))
        }
        fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "auth").then(|| {
                BTreeMap::from([("token".into(), "t".into()), ("other".into(), "o".into())])
            })
        }
        fn claimed_directory(&self, claim: &str) -> Option<String> {
            (claim == "data-b-0").then(|| "/srv/volumes/pv-0".to_string())
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "m", "namespace": "meshery"},
            "spec": {"containers": []},
        }))
        .unwrap()
    }

    fn contents_of(volume: serde_json::Value) -> Result<Contents, String> {
        let pod = pod();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "10.244.0.2",
            host_ip: "127.0.0.1",
        };
        let tokens = BTreeMap::from([(token_key("kube-api-access-x", "token"), "jwt".to_string())]);
        contents(
            &serde_json::from_value(volume).unwrap(),
            &facts,
            &Fixed,
            &tokens,
        )
    }

    #[test]
    fn a_claim_is_its_bound_volumes_directory_and_an_unbound_one_waits() {
        let bound = json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-b-0"}});
        assert_eq!(
            contents_of(bound),
            Ok(Contents::HostDirectory("/srv/volumes/pv-0".into()))
        );
        let unbound = json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-b-1"}});
        assert_eq!(
            contents_of(unbound),
            Err("volume data: claim data-b-1 is not bound to a hostPath PersistentVolume".into())
        );
    }

    #[test]
    fn the_admission_added_api_access_volume_holds_token_ca_and_namespace() {
        let volume = json!({"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}});
        assert_eq!(
            contents_of(volume),
            Ok(Contents::Files(vec![
                ("token".into(), "jwt".into(), 0o644),
                ("ca.crt".into(), "CA".into(), 0o644),
                ("namespace".into(), "meshery".into(), 0o644),
            ]))
        );
    }

    #[test]
    fn secrets_and_config_maps_become_files_by_key_or_by_item() {
        assert_eq!(
            contents_of(json!({"name": "s", "secret": {"secretName": "auth", "defaultMode": 256}})),
            Ok(Contents::Files(vec![
                ("other".into(), "o".into(), 0o400),
                ("token".into(), "t".into(), 0o400),
            ]))
        );
        assert_eq!(
            contents_of(json!({"name": "s", "secret": {"secretName": "auth",
                "items": [{"key": "token", "path": "dir/token.txt", "mode": 384}]}})),
            Ok(Contents::Files(vec![(
                "dir/token.txt".into(),
                "t".into(),
                0o600
            )]))
        );
        assert_eq!(
            contents_of(json!({"name": "e", "emptyDir": {}})),
            Ok(Contents::Scratch)
        );
    }

    #[test]
    fn a_missing_source_fails_the_pod_unless_optional() {
        assert_eq!(
            contents_of(json!({"name": "c", "configMap": {"name": "gone"}})),
            Err("volume c: ConfigMap gone not found".into())
        );
        assert_eq!(
            contents_of(json!({"name": "c", "configMap": {"name": "gone", "optional": true}})),
            Ok(Contents::Files(Vec::new()))
        );
        assert_eq!(
            contents_of(
                json!({"name": "s", "secret": {"secretName": "auth", "items": [{"key": "nope", "path": "p"}]}})
            ),
            Err("volume s: key nope not in Secret auth".into())
        );
        assert!(
            contents_of(json!({"name": "h", "hostPath": {"path": "/"}}))
                .unwrap_err()
                .contains("only configMap, secret, projected, emptyDir and hostPath-backed")
        );
    }
}
