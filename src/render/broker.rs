//! The objects a Broker consists of (product spec §3): auth Secret, config, Services, the NATS
//! StatefulSet, and the optional PodDisruptionBudget and NetworkPolicy.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, ExecAction, Lifecycle, LifecycleHandler, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, ResourceRequirements, Secret, Service,
    ServiceSpec, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{BROKER_APP_NAME, MESHSYNC_APP_NAME, NAME_LABEL};
use super::meta::{
    Owner, checksum, container_security_context, image_reference, pod_security_context,
    resources_or,
};
use super::nats_conf::{
    self, AUTH_DIR, CONFIG_DIR, CONFIG_FILE_NAME, DATA_DIR, DEFAULT_STORAGE_SIZE,
    LAME_DUCK_DURATION_SECONDS, LAME_DUCK_GRACE_PERIOD_SECONDS, PID_DIR, PID_FILE, POD_NAME_ENV,
    TLS_DIR, TOKEN_ENV,
};
use super::pod::{
    ProbeTiming, config_map_volume, container_port, empty_dir_volume, env_from_field,
    env_from_secret, env_value, http_probe, mount, secret_volume, service_port, with_pod_options,
};
use super::{AuthKind, BrokerAuthInput, BrokerInputs};
use crate::api::{Broker, NATS_CLIENT_PORT, NATS_CLUSTER_PORT, NATS_MONITOR_PORT, ServiceType};
use crate::object::Object;

/// The NATS image repository when `spec.image` is unset.
pub const DEFAULT_NATS_IMAGE: &str = "nats";
/// The NATS release deployed when a Broker does not pin `spec.version`: pinned, never a floating tag.
pub const DEFAULT_NATS_VERSION: &str = "2.10.24";
/// The key of the token in the broker's auth Secret (generated or referenced).
pub const TOKEN_KEY: &str = "token";
/// The key of the CA certificate in a Broker's TLS Secret (optional there): clients of the broker
/// trust it.
pub const TLS_CA_KEY: &str = "ca.crt";
/// The UID the NATS container runs as.
const NATS_UID: i64 = 1000;
/// Where the official `nats` image keeps its binary; the lame-duck preStop hook runs it.
const NATS_BINARY: &str = "/nats-server";
/// Time a terminating pod gets beyond lame duck itself, for the final shutdown.
const SHUTDOWN_MARGIN_SECONDS: i64 = 20;
/// Labels of the operator's own pods, which dial the broker for the NATS health probe.
const OPERATOR_APP_NAME: &str = "meshery-operator";

const CONFIG_VOLUME: &str = "config";
const PID_VOLUME: &str = "pid";
const TLS_VOLUME: &str = "tls";
const AUTH_VOLUME: &str = "auth";
const DATA_VOLUME: &str = "data";

/// The Secret the operator generates when the spec references none: `<name>-auth`.
pub fn generated_auth_secret_name(broker: &Broker) -> String {
    format!("{}-auth", broker_name(broker))
}

/// The Secret the broker's credentials live in: the referenced one, else the generated `<name>-auth`.
pub fn broker_auth_secret_name(broker: &Broker) -> String {
    broker
        .spec
        .auth_secret_name()
        .map_or_else(|| generated_auth_secret_name(broker), str::to_string)
}

/// Where in-cluster clients reach the broker: `<name>.<ns>.svc.cluster.local:4222`.
pub fn broker_internal_endpoint(broker: &Broker) -> String {
    let owner = Owner::new("Broker", BROKER_APP_NAME, &broker.metadata);
    format!(
        "{}.{}.svc.cluster.local:{NATS_CLIENT_PORT}",
        owner.name, owner.namespace
    )
}

fn broker_name(broker: &Broker) -> &str {
    broker.metadata.name.as_deref().unwrap_or_default()
}

/// Where the running servers take their credentials from, reconciled from the spec and the inputs:
/// the spec decides which Secret, the inputs what kind of credential it holds.
struct AuthPlan<'a> {
    secret: String,
    kind: AuthKind,
    /// The token to write into the generated Secret; `None` when the Secret is not the operator's.
    generated_token: Option<&'a str>,
}

fn auth_plan<'a>(broker: &Broker, inputs: &'a BrokerInputs) -> AuthPlan<'a> {
    let referenced = broker.spec.auth_secret_name().is_some();
    let (kind, generated_token) = match &inputs.auth {
        BrokerAuthInput::Generated { token } => {
            (AuthKind::Token, (!referenced).then_some(token.as_str()))
        }
        BrokerAuthInput::Referenced { kind } => (*kind, None),
    };
    AuthPlan {
        secret: broker_auth_secret_name(broker),
        kind,
        generated_token,
    }
}

/// Every object a Broker consists of, in apply order.
pub fn desired_broker(broker: &Broker, inputs: &BrokerInputs) -> Vec<Object> {
    let owner = Owner::new("Broker", BROKER_APP_NAME, &broker.metadata);
    let auth = auth_plan(broker, inputs);
    let conf = nats_conf::render(broker, auth.kind);
    let mut objects = Vec::new();
    if let Some(token) = auth.generated_token {
        objects.push(Object::from_typed(&auth_secret(
            &owner,
            &auth.secret,
            token,
        )));
    }
    objects.push(Object::from_typed(&config_map(&owner, &conf)));
    objects.push(Object::from_typed(&client_service(broker, &owner)));
    objects.push(Object::from_typed(&headless_service(&owner)));
    objects.push(Object::from_typed(&stateful_set(
        broker, inputs, &owner, &auth, &conf,
    )));
    if broker.spec.size > 1 {
        objects.push(Object::from_typed(&disruption_budget(&owner)));
    }
    if broker
        .spec
        .network_policy
        .as_ref()
        .is_some_and(|p| p.enabled)
    {
        objects.push(Object::from_typed(&network_policy(broker, &owner)));
    }
    objects
}

/// The generated token Secret. Written as `data`: server-side apply cannot compare `stringData`, which
/// the API server folds into `data`.
fn auth_secret(owner: &Owner, name: &str, token: &str) -> Secret {
    Secret {
        metadata: owner.namespaced_meta(name),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

fn config_map(owner: &Owner, conf: &str) -> ConfigMap {
    ConfigMap {
        metadata: owner.namespaced_meta(format!("{}-config", owner.name)),
        data: Some(BTreeMap::from([(
            CONFIG_FILE_NAME.to_string(),
            conf.to_string(),
        )])),
        ..ConfigMap::default()
    }
}

fn client_service(broker: &Broker, owner: &Owner) -> Service {
    let service = broker.spec.service.clone().unwrap_or_default();
    let service_type = broker.spec.service_type();
    let load_balancer = service_type == ServiceType::LoadBalancer;
    let mut metadata = owner.namespaced_meta(owner.name);
    metadata.annotations = service.annotations.filter(|a| !a.is_empty());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(service_type.as_str().to_string()),
            selector: Some(owner.selector_labels()),
            ports: Some(vec![
                service_port("nats", NATS_CLIENT_PORT),
                service_port("monitor", NATS_MONITOR_PORT),
            ]),
            load_balancer_class: service.load_balancer_class.filter(|_| load_balancer),
            load_balancer_source_ranges: service
                .load_balancer_source_ranges
                .filter(|ranges| load_balancer && !ranges.is_empty()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Gives every replica a stable DNS name for cluster routes, including before it is ready (a cluster
/// must form before its members report healthy).
fn headless_service(owner: &Owner) -> Service {
    Service {
        metadata: owner.namespaced_meta(format!("{}-headless", owner.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(owner.selector_labels()),
            ports: Some(vec![
                service_port("nats", NATS_CLIENT_PORT),
                service_port("cluster", NATS_CLUSTER_PORT),
                service_port("monitor", NATS_MONITOR_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn stateful_set(
    broker: &Broker,
    inputs: &BrokerInputs,
    owner: &Owner,
    auth: &AuthPlan,
    conf: &str,
) -> StatefulSet {
    let spec = &broker.spec;
    let image = image_reference(
        spec.image.as_deref().unwrap_or(DEFAULT_NATS_IMAGE),
        spec.version.as_deref().unwrap_or(&inputs.default_version),
    );
    // A new generated token reaches the servers only through a restart, so it rolls the pods too.
    let config_checksum = checksum(&[conf, auth.generated_token.unwrap_or_default()]);

    let mut env = Vec::new();
    if auth.kind == AuthKind::Token {
        env.push(env_from_secret(TOKEN_ENV, &auth.secret, TOKEN_KEY));
    }
    env.push(env_from_field(POD_NAME_ENV, "metadata.name"));
    if spec.clustered() {
        env.extend((0..spec.size.max(1)).map(|ordinal| {
            env_value(
                &nats_conf::route_env(ordinal),
                nats_conf::route_url(broker, ordinal, auth.kind),
            )
        }));
    }

    let mut volumes = vec![
        config_map_volume(CONFIG_VOLUME, &format!("{}-config", owner.name)),
        empty_dir_volume(PID_VOLUME),
    ];
    let mut mounts = vec![
        mount(CONFIG_VOLUME, CONFIG_DIR, true),
        mount(PID_VOLUME, PID_DIR, false),
    ];
    if let Some(secret) = spec.tls_secret_name() {
        volumes.push(secret_volume(TLS_VOLUME, secret));
        mounts.push(mount(TLS_VOLUME, TLS_DIR, true));
    }
    if auth.kind == AuthKind::Users {
        volumes.push(secret_volume(AUTH_VOLUME, &auth.secret));
        mounts.push(mount(AUTH_VOLUME, AUTH_DIR, true));
    }
    if spec.jetstream_enabled() {
        mounts.push(mount(DATA_VOLUME, DATA_DIR, false));
    }

    let container = nats_container(image, env, mounts, spec.resources.as_ref());
    let lame_duck = LAME_DUCK_DURATION_SECONDS + LAME_DUCK_GRACE_PERIOD_SECONDS;
    StatefulSet {
        metadata: owner.namespaced_meta(owner.name),
        spec: Some(StatefulSetSpec {
            service_name: Some(format!("{}-headless", owner.name)),
            replicas: Some(spec.size),
            // Replicas of a NATS cluster find each other by routes; there is no reason to start them one by one.
            pod_management_policy: Some("Parallel".to_string()),
            selector: owner.selector(),
            template: PodTemplateSpec {
                metadata: Some(owner.pod_template_meta(config_checksum, spec.pod.as_ref())),
                spec: Some(with_pod_options(
                    PodSpec {
                        containers: vec![container],
                        volumes: Some(volumes),
                        security_context: Some(pod_security_context(NATS_UID)),
                        // NATS never talks to the Kubernetes API.
                        automount_service_account_token: Some(false),
                        termination_grace_period_seconds: Some(lame_duck + SHUTDOWN_MARGIN_SECONDS),
                        ..PodSpec::default()
                    },
                    spec.pod.as_ref(),
                )),
            },
            volume_claim_templates: spec
                .jetstream_enabled()
                .then(|| vec![jetstream_claim(broker)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn nats_container(
    image: String,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    resources: Option<&ResourceRequirements>,
) -> Container {
    Container {
        name: "nats".to_string(),
        image: Some(image),
        args: Some(vec![
            "--config".to_string(),
            format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}"),
        ]),
        env: Some(env),
        ports: Some(vec![
            container_port("client", NATS_CLIENT_PORT),
            container_port("cluster", NATS_CLUSTER_PORT),
            container_port("monitor", NATS_MONITOR_PORT),
        ]),
        // Startup allows a JetStream store minutes to recover before liveness may restart the server.
        startup_probe: Some(http_probe(
            "/healthz",
            NATS_MONITOR_PORT,
            ProbeTiming {
                period_seconds: 5,
                failure_threshold: 60,
            },
        )),
        liveness_probe: Some(http_probe(
            "/healthz",
            NATS_MONITOR_PORT,
            ProbeTiming {
                period_seconds: 30,
                failure_threshold: 3,
            },
        )),
        readiness_probe: Some(http_probe(
            "/healthz",
            NATS_MONITOR_PORT,
            ProbeTiming {
                period_seconds: 10,
                failure_threshold: 3,
            },
        )),
        // Lame duck moves clients to the other replicas before the server stops; NATS ignores the SIGTERM
        // that follows while lame duck runs, and exits when it is done.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        NATS_BINARY.to_string(),
                        "--signal".to_string(),
                        format!("ldm={PID_FILE}"),
                    ]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(resources_or(resources, ("100m", "64Mi"), ("500m", "1Gi"))),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn jetstream_claim(broker: &Broker) -> PersistentVolumeClaim {
    let jetstream = broker.spec.jetstream.clone().unwrap_or_default();
    let size = jetstream
        .storage_size
        .unwrap_or_else(|| DEFAULT_STORAGE_SIZE.to_string());
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: jetstream.storage_class,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Keeps voluntary disruptions (node drains) to one server at a time, so the cluster keeps a quorum.
fn disruption_budget(owner: &Owner) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.namespaced_meta(owner.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(owner.selector()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Admits clients on 4222 from MeshSync and operator pods in any namespace and from the listed CIDRs,
/// routes on 6222 only between this broker's own pods, and monitoring on 8222 from its namespace.
fn network_policy(broker: &Broker, owner: &Owner) -> NetworkPolicy {
    let any_namespace_pods = |app_name: &str| NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NAME_LABEL.to_string(),
                app_name.to_string(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let port = |port: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".to_string()),
        ..NetworkPolicyPort::default()
    };
    let mut client_peers = vec![
        any_namespace_pods(MESHSYNC_APP_NAME),
        any_namespace_pods(OPERATOR_APP_NAME),
    ];
    let cidrs = broker
        .spec
        .network_policy
        .as_ref()
        .and_then(|p| p.allowed_cidrs.clone());
    client_peers.extend(cidrs.into_iter().flatten().map(|cidr| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr,
            ..IPBlock::default()
        }),
        ..NetworkPolicyPeer::default()
    }));
    NetworkPolicy {
        metadata: owner.namespaced_meta(owner.name),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(owner.selector()),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(client_peers),
                    ports: Some(vec![port(NATS_CLIENT_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(owner.selector()),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![port(NATS_CLUSTER_PORT)]),
                },
                // MeshSync's start-up check polls /connz, and the operator reads it to see MeshSync
                // connected, both from any namespace; the rest of the Broker's namespace too.
                NetworkPolicyIngressRule {
                    from: Some(vec![
                        NetworkPolicyPeer {
                            pod_selector: Some(LabelSelector::default()),
                            ..NetworkPolicyPeer::default()
                        },
                        any_namespace_pods(MESHSYNC_APP_NAME),
                        any_namespace_pods(OPERATOR_APP_NAME),
                    ]),
                    ports: Some(vec![port(NATS_MONITOR_PORT)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}
