//! The objects a MeshSync consists of (product spec §3): watch-list ConfigMap, identity and
//! least-privilege RBAC, an optional broker credential copy, and the Deployment.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PodSpec, PodTemplateSpec, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::labels::MESHSYNC_APP_NAME;
use super::meta::{
    Owner, checksum, container_security_context, image_reference, pod_security_context,
    resources_or,
};
use super::pod::{
    ProbeTiming, config_map_volume, container_port, empty_dir_volume, env_from_secret, env_value,
    http_probe, mount, with_pod_options,
};
use super::rbac::meshsync_rules;
use super::{BrokerCredential, MeshSyncInputs, TLS_CA_KEY};
use crate::api::MeshSync;
use crate::api::watch_list::WatchList;
use crate::object::Object;

/// The MeshSync image repository when `spec.image` is unset.
pub const DEFAULT_MESHSYNC_IMAGE: &str = "meshery/meshsync";
/// The MeshSync release deployed when a MeshSync does not pin `spec.version`: pinned, never a floating tag.
pub const DEFAULT_MESHSYNC_VERSION: &str = "v1.0.3";
/// Where the watch-list ConfigMap is mounted in the MeshSync container.
pub const WATCH_LIST_DIR: &str = "/etc/meshsync";
/// The port MeshSync serves `/healthz` and `/readyz` on.
pub const MESHSYNC_HEALTH_PORT: u16 = 11000;
/// The env var MeshSync reads the broker URL from.
pub const BROKER_URL_ENV: &str = "BROKER_URL";
/// The env var holding the broker URL's userinfo, which the kubelet splices into `BROKER_URL`.
pub const BROKER_TOKEN_ENV: &str = "NATS_TOKEN";
/// The key of the userinfo in `<name>-broker-auth`.
pub const BROKER_AUTH_KEY: &str = "token";
/// Where `<name>-broker-ca` is mounted in the MeshSync container.
pub const BROKER_CA_DIR: &str = "/etc/meshery/broker-ca";
/// The env var Go's TLS reads an extra trusted certificate file from. It replaces only the
/// system's bundle file: the system's certificate directories are still read.
pub const SSL_CERT_FILE_ENV: &str = "SSL_CERT_FILE";
/// The CRD that owns MeshSync's cluster-scoped RBAC.
pub const MESHSYNC_CRD_NAME: &str = "meshsyncs.meshery.io";
/// The UID MeshSync runs as: the distroless `nonroot` user its image is built for.
const MESHSYNC_UID: i64 = 65532;

/// What a MeshSync release expects of the Deployment it runs in, where releases differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshSyncRelease {
    /// It serves `/healthz` and `/readyz` on [`MESHSYNC_HEALTH_PORT`] (v1.0.1 and later): the
    /// probes point there. Earlier releases serve nothing, so HTTP probes would restart them.
    pub serves_health: bool,
    /// Its start-up check finds the broker's host in a `scheme://` URL (v1.0.1 and later).
    /// Earlier releases take everything before the first `:` as the host, so `nats://…` gave
    /// `nats` and the check never passed: they get the URL without its scheme
    /// (`<userinfo>@host:port`), which their NATS client reads as `nats://` all the same.
    pub reads_url_scheme: bool,
}

impl MeshSyncRelease {
    /// The release of image tag `version`: `vMAJOR.MINOR.PATCH` (a `-suffix` ignored); any tag
    /// that is not such a version is taken for a current release.
    pub fn of(version: &str) -> MeshSyncRelease {
        let numbers: Option<Vec<u64>> = version
            .trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .map(|core| {
                core.split('.')
                    .map(|n| n.parse().ok())
                    .collect::<Option<_>>()
            })
            .unwrap_or_default();
        let current = match numbers.as_deref() {
            Some([major, minor, patch]) => (*major, *minor, *patch) >= (1, 0, 1),
            _ => true,
        };
        MeshSyncRelease {
            serves_health: current,
            reads_url_scheme: current,
        }
    }
}

const WATCH_LIST_VOLUME: &str = "watch-list";
const TMP_VOLUME: &str = "tmp";
const HOME_VOLUME: &str = "meshery-home";
const BROKER_CA_VOLUME: &str = "broker-ca";
/// Where MeshSync keeps its configuration: `~/.meshery` of the image's `nonroot` user. It creates
/// the directory at start-up and exits when it cannot (the root filesystem is read-only).
const MESHERY_HOME_DIR: &str = "/home/nonroot/.meshery";

/// The name of MeshSync's ClusterRole and ClusterRoleBinding: `meshery-meshsync-<namespace>-<name>`,
/// unique across the cluster because MeshSyncs in different namespaces may share a name.
pub fn meshsync_cluster_rbac_name(meshsync: &MeshSync) -> String {
    let owner = Owner::new("MeshSync", MESHSYNC_APP_NAME, &meshsync.metadata);
    format!("meshery-meshsync-{}-{}", owner.namespace, owner.name)
}

/// The MeshSync's watch-list as it takes effect. Callers validate first; should an invalid one still
/// arrive, the built-in whitelist keeps rendering total.
fn effective_watch_list(meshsync: &MeshSync) -> WatchList {
    let (whitelist, blacklist) = meshsync.spec.watch_list_data();
    WatchList::parse(whitelist, blacklist).unwrap_or_default()
}

/// Every object a MeshSync consists of, in apply order.
pub fn desired_meshsync(meshsync: &MeshSync, inputs: &MeshSyncInputs) -> Vec<Object> {
    let owner = Owner::new("MeshSync", MESHSYNC_APP_NAME, &meshsync.metadata);
    let watch_list = effective_watch_list(meshsync);
    let (watch_key, watch_data) = watch_list.to_data();
    let rbac_name = meshsync_cluster_rbac_name(meshsync);
    let crd_owner = inputs.crd_uid.as_ref().map(|uid| OwnerReference {
        api_version: "apiextensions.k8s.io/v1".to_string(),
        kind: "CustomResourceDefinition".to_string(),
        name: MESHSYNC_CRD_NAME.to_string(),
        uid: uid.clone(),
        ..OwnerReference::default()
    });

    let mut objects = Vec::new();
    if let BrokerCredential::Copy { userinfo } = &inputs.broker.credential {
        objects.push(Object::from_typed(&broker_auth_secret(&owner, userinfo)));
    }
    if let Some(ca) = &inputs.broker.tls_ca {
        objects.push(Object::from_typed(&ConfigMap {
            metadata: owner.namespaced_meta(broker_ca_config_map_name(owner.name)),
            data: Some(BTreeMap::from([(TLS_CA_KEY.to_string(), ca.clone())])),
            ..ConfigMap::default()
        }));
    }
    objects.push(Object::from_typed(&ConfigMap {
        metadata: owner.namespaced_meta(format!("{}-watch-list", owner.name)),
        data: Some(BTreeMap::from([(
            watch_key.to_string(),
            watch_data.clone(),
        )])),
        ..ConfigMap::default()
    }));
    objects.push(Object::from_typed(&ServiceAccount {
        metadata: owner.namespaced_meta(owner.name),
        ..ServiceAccount::default()
    }));
    objects.push(Object::from_typed(&ClusterRole {
        metadata: owner.cluster_meta(&rbac_name, crd_owner.clone()),
        rules: Some(meshsync_rules(
            &watch_list,
            owner.name,
            meshsync.spec.pod_access_grants(),
        )),
        ..ClusterRole::default()
    }));
    objects.push(Object::from_typed(&ClusterRoleBinding {
        metadata: owner.cluster_meta(&rbac_name, crd_owner),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: rbac_name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: owner.name.to_string(),
            namespace: Some(owner.namespace.to_string()),
            ..Subject::default()
        }]),
    }));
    objects.push(Object::from_typed(&deployment(
        meshsync,
        inputs,
        &owner,
        checksum(&[
            watch_key,
            &watch_data,
            &inputs.broker.credential_revision,
            inputs.broker.tls_ca.as_deref().unwrap_or_default(),
        ]),
    )));
    objects
}

/// The ConfigMap holding the TLS broker's CA for MeshSync `name`: a CA certificate is public, and
/// a ConfigMap in MeshSync's own namespace reaches it wherever the Broker is.
fn broker_ca_config_map_name(name: &str) -> String {
    format!("{name}-broker-ca")
}

fn broker_auth_secret(owner: &Owner, userinfo: &str) -> Secret {
    Secret {
        metadata: owner.namespaced_meta(format!("{}-broker-auth", owner.name)),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            BROKER_AUTH_KEY.to_string(),
            ByteString(userinfo.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// MeshSync reads its watch-list, its broker credential and the broker's CA only at start-up, so
/// their checksum sits on the pod template: a change rolls the pods and takes effect.
fn deployment(
    meshsync: &MeshSync,
    inputs: &MeshSyncInputs,
    owner: &Owner,
    start_up_inputs_checksum: String,
) -> Deployment {
    let spec = &meshsync.spec;
    let broker = &inputs.broker;
    let version = spec.version.as_deref().unwrap_or(&inputs.default_version);
    let release = MeshSyncRelease::of(version);
    let scheme = if release.reads_url_scheme {
        format!("{}://", broker.scheme)
    } else {
        String::new()
    };
    let mut env = Vec::new();
    let credential_secret = match &broker.credential {
        BrokerCredential::None => None,
        BrokerCredential::SecretKey { secret, key } => Some((secret.clone(), key.as_str())),
        BrokerCredential::Copy { .. } => {
            Some((format!("{}-broker-auth", owner.name), BROKER_AUTH_KEY))
        }
    };
    let broker_url = match &credential_secret {
        Some((secret, key)) => {
            env.push(env_from_secret(BROKER_TOKEN_ENV, secret, key));
            format!("{scheme}$({BROKER_TOKEN_ENV})@{}", broker.address)
        }
        None => format!("{scheme}{}", broker.address),
    };
    env.push(env_value(BROKER_URL_ENV, broker_url));
    let mut volume_mounts = vec![
        mount(WATCH_LIST_VOLUME, WATCH_LIST_DIR, true),
        // The root filesystem is read-only; scratch space for anything MeshSync writes.
        mount(TMP_VOLUME, "/tmp", false),
        mount(HOME_VOLUME, MESHERY_HOME_DIR, false),
    ];
    let mut volumes = vec![
        config_map_volume(WATCH_LIST_VOLUME, &format!("{}-watch-list", owner.name)),
        empty_dir_volume(TMP_VOLUME),
        empty_dir_volume(HOME_VOLUME),
    ];
    if broker.tls_ca.is_some() {
        volumes.push(config_map_volume(
            BROKER_CA_VOLUME,
            &broker_ca_config_map_name(owner.name),
        ));
        env.push(env_value(
            SSL_CERT_FILE_ENV,
            format!("{BROKER_CA_DIR}/{TLS_CA_KEY}"),
        ));
        volume_mounts.push(mount(BROKER_CA_VOLUME, BROKER_CA_DIR, true));
    }

    let container = Container {
        name: "meshsync".to_string(),
        image: Some(image_reference(
            spec.image.as_deref().unwrap_or(DEFAULT_MESHSYNC_IMAGE),
            version,
        )),
        env: Some(env),
        ports: release
            .serves_health
            .then(|| vec![container_port("health", MESHSYNC_HEALTH_PORT)]),
        liveness_probe: release.serves_health.then(|| {
            http_probe(
                "/healthz",
                MESHSYNC_HEALTH_PORT,
                ProbeTiming {
                    period_seconds: 20,
                    failure_threshold: 3,
                },
            )
        }),
        readiness_probe: release.serves_health.then(|| {
            http_probe(
                "/readyz",
                MESHSYNC_HEALTH_PORT,
                ProbeTiming {
                    period_seconds: 10,
                    failure_threshold: 3,
                },
            )
        }),
        resources: Some(resources_or(
            spec.resources.as_ref(),
            ("100m", "128Mi"),
            ("1", "1Gi"),
        )),
        security_context: Some(container_security_context()),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    };
    Deployment {
        metadata: owner.namespaced_meta(owner.name),
        spec: Some(DeploymentSpec {
            replicas: (!spec.autoscaled).then_some(spec.size),
            selector: owner.selector(),
            template: PodTemplateSpec {
                metadata: Some(
                    owner.pod_template_meta(start_up_inputs_checksum, spec.pod.as_ref()),
                ),
                spec: Some(with_pod_options(
                    PodSpec {
                        service_account_name: Some(owner.name.to_string()),
                        containers: vec![container],
                        volumes: Some(volumes),
                        security_context: Some(pod_security_context(MESHSYNC_UID)),
                        ..PodSpec::default()
                    },
                    spec.pod.as_ref(),
                )),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
