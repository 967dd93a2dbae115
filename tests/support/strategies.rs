//! Proptest strategies for Broker and MeshSync CRs: valid ones (with the renderer inputs the I/O layer
//! would gather for them) and invalid ones (a valid CR with one rule broken).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use meshery_operator::api::watch_list::builtin_resources;
use meshery_operator::api::{
    Broker, BrokerAuth, BrokerClustering, BrokerConfig, BrokerJetStream, BrokerNetworkPolicy,
    BrokerService, BrokerSpec, BrokerTls, CustomBroker, MeshSync, MeshSyncBroker, MeshSyncSpec,
    NativeBroker, PodOptions, SecretRef, ServiceType, WatchListConfigMap,
};
use meshery_operator::render::{
    AuthKind, BrokerAuthInput, BrokerCredential, BrokerInputs, MeshSyncInputs, ResolvedBroker,
};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::meta;

/// A valid Broker, the inputs rendering it needs, and the secret values that must stay in Secrets.
#[derive(Clone, Debug)]
pub struct BrokerCase {
    pub broker: Broker,
    pub inputs: BrokerInputs,
    pub secrets: Vec<String>,
}

/// A valid MeshSync, the inputs rendering it needs, and the secret values that must stay in Secrets.
#[derive(Clone, Debug)]
pub struct MeshSyncCase {
    pub meshsync: MeshSync,
    pub inputs: MeshSyncInputs,
    pub secrets: Vec<String>,
}

/// A Broker name: DNS-1035 label within the 52 characters the derived names leave room for.
pub fn broker_name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,40}[a-z0-9])?"
}

pub fn namespace() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,14}[a-z0-9])?"
}

fn uid() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[0-9a-f]{8}-[0-9a-f]{4}")
}

fn cidr() -> impl Strategy<Value = String> {
    select(vec![
        "10.0.0.0/8",
        "192.168.1.0/24",
        "2001:db8::/32",
        "0.0.0.0/0",
    ])
    .prop_map(String::from)
}

fn token() -> impl Strategy<Value = String> {
    "t[0-9a-f]{64}"
}

fn resources(
    cpu: (&'static str, &'static str),
    memory: (&'static str, &'static str),
) -> impl Strategy<Value = Option<ResourceRequirements>> {
    prop::option::of(Just(()).prop_map(move |()| {
        let pair = |cpu: &str, memory: &str| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.to_string())),
                ("memory".to_string(), Quantity(memory.to_string())),
            ])
        };
        ResourceRequirements {
            requests: Some(pair(cpu.0, memory.0)),
            limits: Some(pair(cpu.1, memory.1)),
            ..ResourceRequirements::default()
        }
    }))
}

fn service() -> impl Strategy<Value = BrokerService> {
    (
        select(vec![
            ServiceType::LoadBalancer,
            ServiceType::ClusterIP,
            ServiceType::NodePort,
        ]),
        prop::option::of(prop::collection::btree_map(
            select(vec![
                "service.beta.kubernetes.io/aws-load-balancer-type",
                "example.com/team",
                "owner",
            ])
            .prop_map(String::from),
            "[a-z0-9]{1,10}",
            0..3,
        )),
        prop::option::of(Just("example.com/internal-lb".to_string())),
        prop::option::of(prop::collection::vec(cidr(), 1..3)),
        prop::option::of(
            select(vec!["nats.example.com:4222", "10.1.2.3:30422"]).prop_map(String::from),
        ),
    )
        .prop_map(|(service_type, annotations, class, ranges, endpoint)| {
            let load_balancer = service_type == ServiceType::LoadBalancer;
            BrokerService {
                service_type: Some(service_type),
                annotations,
                load_balancer_class: class.filter(|_| load_balancer),
                load_balancer_source_ranges: ranges.filter(|_| load_balancer),
                external_endpoint_override: endpoint,
            }
        })
}

fn broker_config() -> impl Strategy<Value = BrokerConfig> {
    (
        prop::option::of(select(vec!["1Mi", "8388608", "64Mi", "512Ki"]).prop_map(String::from)),
        prop::option::of(1i64..=1_000_000),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(max_payload, max_connections, debug, trace)| BrokerConfig {
                max_payload,
                max_connections,
                debug,
                trace,
            },
        )
}

/// Valid placement and registry options: some of each kind, as a user on a tainted, zoned,
/// air-gapped cluster writes them.
pub fn pod_options() -> impl Strategy<Value = PodOptions> {
    (
        prop::option::of(Just(BTreeMap::from([(
            "kubernetes.io/os".to_string(),
            "linux".to_string(),
        )]))),
        prop::option::of(Just(vec![
            Toleration {
                key: Some("dedicated".into()),
                operator: Some("Equal".into()),
                value: Some("meshery".into()),
                effect: Some("NoSchedule".into()),
                ..Toleration::default()
            },
            Toleration {
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(30),
                ..Toleration::default()
            },
        ])),
        prop::option::of(Just(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/arch".into(),
                            operator: "In".into(),
                            values: Some(vec!["amd64".into(), "arm64".into()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        })),
        prop::option::of(Just(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "team".to_string(),
                    "platform".to_string(),
                )])),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }])),
        prop::option::of(
            select(vec!["meshery-high", "system-cluster-critical"]).prop_map(String::from),
        ),
        prop::option::of(Just(vec![LocalObjectReference {
            name: "registry-credentials".into(),
        }])),
        prop::option::of(Just(BTreeMap::from([(
            "team".to_string(),
            "platform".to_string(),
        )]))),
        prop::option::of(Just(BTreeMap::from([(
            "example.com/owner".to_string(),
            "platform team".to_string(),
        )]))),
    )
        .prop_map(
            |(
                node_selector,
                tolerations,
                affinity,
                topology_spread_constraints,
                priority_class_name,
                image_pull_secrets,
                labels,
                annotations,
            )| PodOptions {
                node_selector,
                tolerations,
                affinity,
                topology_spread_constraints,
                priority_class_name,
                image_pull_secrets,
                labels,
                annotations,
            },
        )
}

/// A Broker spec that passes validation.
pub fn valid_broker_spec() -> impl Strategy<Value = BrokerSpec> {
    let shape = (
        1i32..=10,
        prop::option::of(any::<bool>()),
        prop::option::of(select(vec!["2.10.22", "2.9.10", "2.11.0-alpine"]).prop_map(String::from)),
        prop::option::of(
            select(vec!["nats", "registry.example.com/team/nats"]).prop_map(String::from),
        ),
        prop::option::of(service()),
        prop::option::of(Just(BrokerAuth {
            secret_ref: Some(SecretRef {
                name: "broker-credentials".into(),
            }),
        })),
    );
    let features = (
        prop::option::of(any::<bool>()),
        prop::option::of((
            any::<bool>(),
            prop::option::of(Just("fast-ssd".to_string())),
            prop::option::of(select(vec!["1Gi", "10Gi", "500Mi"]).prop_map(String::from)),
        )),
        resources(("100m", "500m"), ("64Mi", "1Gi")),
        prop::option::of(broker_config()),
        prop::option::of((
            any::<bool>(),
            prop::option::of(prop::collection::vec(cidr(), 0..3)),
        )),
        prop::option::of(pod_options()),
    );
    (shape, features).prop_map(
        |(
            (size, clustering, version, image, service, auth),
            (tls, jetstream, resources, config, network, pod),
        )| BrokerSpec {
            size,
            // `false` is valid only for a single server.
            clustering: clustering.map(|enabled| BrokerClustering {
                enabled: Some(enabled || size > 1),
            }),
            version,
            image,
            service,
            auth,
            tls: tls.map(|enabled| BrokerTls {
                enabled,
                secret_name: enabled.then(|| "broker-tls".to_string()),
            }),
            jetstream: jetstream.map(|(enabled, storage_class, storage_size)| BrokerJetStream {
                enabled,
                storage_class,
                storage_size,
            }),
            resources,
            config,
            network_policy: network.map(|(enabled, allowed_cidrs)| BrokerNetworkPolicy {
                enabled,
                allowed_cidrs,
            }),
            recreate_on_immutable_change: false,
            pod,
        },
    )
}

/// A valid Broker with inputs matching its auth: a generated token unless it references a Secret.
pub fn broker_case() -> impl Strategy<Value = BrokerCase> {
    (
        broker_name(),
        prop::option::of(namespace()),
        uid(),
        valid_broker_spec(),
        token(),
        any::<bool>(),
    )
        .prop_map(|(name, namespace, uid, spec, token, users)| {
            let referenced = spec.auth_secret_name().is_some();
            let auth = if referenced {
                BrokerAuthInput::Referenced {
                    kind: if users {
                        AuthKind::Users
                    } else {
                        AuthKind::Token
                    },
                }
            } else {
                BrokerAuthInput::Generated {
                    token: token.clone(),
                }
            };
            BrokerCase {
                broker: Broker {
                    metadata: meta(&name, namespace.as_deref(), uid.as_deref()),
                    spec,
                    status: None,
                },
                inputs: BrokerInputs {
                    default_version: "2.10.22".into(),
                    auth,
                },
                secrets: if referenced { Vec::new() } else { vec![token] },
            }
        })
}

/// A Broker that breaks exactly one validation rule, with a description of the rule.
pub fn invalid_broker() -> impl Strategy<Value = (Broker, &'static str)> {
    (broker_case(), 0usize..15, select(vec![0, 11, -1])).prop_map(|(case, rule, bad_size)| {
        let mut broker = case.broker;
        let spec = &mut broker.spec;
        let what = match rule {
            0 => {
                spec.size = bad_size;
                "size out of range"
            }
            1 => {
                spec.size = spec.size.max(2);
                spec.clustering = Some(BrokerClustering {
                    enabled: Some(false),
                });
                "clustering disabled with several replicas"
            }
            2 => {
                let service = spec.service.get_or_insert_with(BrokerService::default);
                service.service_type = Some(ServiceType::ClusterIP);
                service.load_balancer_class = Some("example.com/lb".into());
                "loadBalancerClass without LoadBalancer"
            }
            3 => {
                let service = spec.service.get_or_insert_with(BrokerService::default);
                service.service_type = Some(ServiceType::NodePort);
                service.load_balancer_source_ranges = Some(vec!["10.0.0.0/8".into()]);
                "loadBalancerSourceRanges without LoadBalancer"
            }
            4 => {
                spec.network_policy = Some(BrokerNetworkPolicy {
                    enabled: true,
                    allowed_cidrs: Some(vec!["10.0.0.0/33".into()]),
                });
                "malformed CIDR"
            }
            5 => {
                spec.service
                    .get_or_insert_with(BrokerService::default)
                    .external_endpoint_override = Some("no-port".into());
                "external endpoint without a port"
            }
            6 => {
                spec.tls = Some(BrokerTls {
                    enabled: true,
                    secret_name: None,
                });
                "TLS without a Secret"
            }
            7 => {
                spec.jetstream = Some(BrokerJetStream {
                    enabled: true,
                    storage_class: None,
                    storage_size: Some("ten gigs".into()),
                });
                "malformed storage size"
            }
            8 => {
                spec.config
                    .get_or_insert_with(BrokerConfig::default)
                    .max_payload = Some("65Mi".into());
                "max payload above 64Mi"
            }
            9 => {
                broker.metadata.name = Some("x".repeat(53));
                "name too long"
            }
            10 => {
                spec.version = Some("a b".into());
                "malformed version"
            }
            11 => {
                let name = broker.metadata.name.take().unwrap_or_default();
                broker.metadata.name = Some(format!("{name}-headless"));
                "name colliding with another Broker's headless Service"
            }
            12 => {
                spec.pod.get_or_insert_with(PodOptions::default).labels =
                    Some(BTreeMap::from([("app".to_string(), "mine".to_string())]));
                "a pod label the operator sets itself"
            }
            13 => {
                spec.pod.get_or_insert_with(PodOptions::default).tolerations =
                    Some(vec![Toleration {
                        key: Some("dedicated".into()),
                        operator: Some("Exists".into()),
                        value: Some("meshery".into()),
                        ..Toleration::default()
                    }]);
                "a toleration with operator Exists and a value"
            }
            _ => {
                spec.resources = resources_request_above_limit();
                "request above limit"
            }
        };
        (broker, what)
    })
}

fn resources_request_above_limit() -> Option<ResourceRequirements> {
    Some(ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_string(), Quantity("2".into()))])),
        limits: Some(BTreeMap::from([(
            "cpu".to_string(),
            Quantity("500m".into()),
        )])),
        ..ResourceRequirements::default()
    })
}

/// Resources the watch-list strategies draw from: every built-in plus two custom resources.
fn watchable_resources() -> Vec<String> {
    builtin_resources()
        .iter()
        .map(ToString::to_string)
        .chain([
            "virtualservices.v1beta1.networking.istio.io".to_string(),
            "meshsyncs.v1alpha1.meshery.io".to_string(),
        ])
        .collect()
}

/// The `data` of a watch-list: none, a whitelist or a blacklist, as compact or pretty JSON.
pub fn watch_list_data() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    let events = subsequence(vec!["ADDED", "MODIFIED", "DELETED"], 1..=3);
    let whitelist = (subsequence(watchable_resources(), 1..=15), prop::collection::vec(events, 15), any::<bool>())
        .prop_map(|(resources, events, pretty)| {
            let entries: Vec<serde_json::Value> = resources
                .iter()
                .zip(events)
                .map(|(resource, events)| serde_json::json!({"Resource": resource, "Events": events}))
                .collect();
            ("whitelist".to_string(), to_json(&entries, pretty))
        });
    let blacklist = (subsequence(watchable_resources(), 0..=10), any::<bool>())
        .prop_map(|(resources, pretty)| ("blacklist".to_string(), to_json(&resources, pretty)));
    prop::option::of(
        prop_oneof![whitelist, blacklist].prop_map(|(key, value)| BTreeMap::from([(key, value)])),
    )
}

fn to_json<T: serde::Serialize>(value: &T, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    } else {
        serde_json::to_string(value).expect("JSON values serialise")
    }
}

#[derive(Clone, Debug)]
enum BrokerChoice {
    Native {
        name: String,
        namespace: Option<String>,
    },
    Custom {
        scheme: String,
        credentials: Option<(String, String)>,
        host: String,
        port: Option<u16>,
    },
}

impl BrokerChoice {
    fn url(&self) -> Option<String> {
        let BrokerChoice::Custom {
            scheme,
            credentials,
            host,
            port,
        } = self
        else {
            return None;
        };
        let userinfo = credentials
            .as_ref()
            .map(|(user, password)| format!("{user}:{password}@"))
            .unwrap_or_default();
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        Some(format!("{scheme}://{userinfo}{host}{port}"))
    }
}

fn broker_choice() -> impl Strategy<Value = BrokerChoice> {
    let native = (broker_name(), prop::option::of(namespace()))
        .prop_map(|(name, namespace)| BrokerChoice::Native { name, namespace });
    let custom = (
        prop::option::of(("[a-z]{3,8}", "[A-Za-z0-9]{16,24}")),
        select(vec!["nats.example.com", "10.0.0.7", "broker.messaging.svc"]),
        prop::option::of(1024u16..=65535),
        select(vec!["nats", "tls"]),
    )
        .prop_map(|(credentials, host, port, scheme)| BrokerChoice::Custom {
            scheme: scheme.to_string(),
            credentials,
            host: host.to_string(),
            port,
        });
    prop_oneof![native, custom]
}

/// A valid MeshSync with the inputs the I/O layer would resolve for its broker.
pub fn meshsync_case() -> impl Strategy<Value = MeshSyncCase> {
    (
        "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?",
        prop::option::of(namespace()),
        uid(),
        1i32..=10,
        prop::option::of(select(vec!["v1.0.3", "v0.8.2"]).prop_map(String::from)),
        prop::option::of(
            select(vec!["meshery/meshsync", "ghcr.io/meshery/meshsync"]).prop_map(String::from),
        ),
        broker_choice(),
        watch_list_data(),
        resources(("100m", "1"), ("128Mi", "1Gi")),
        (
            token(),
            prop::option::of("[A-Za-z0-9]{16,24}"),
            prop::option::of("[0-9a-f]{8}"),
        ),
        any::<bool>(),
        prop::option::of(pod_options()),
    )
        .prop_map(
            |(
                name,
                namespace,
                uid,
                size,
                version,
                image,
                choice,
                data,
                resources,
                (token, users_password, crd_uid),
                autoscaled,
                pod,
            )| {
                let own_namespace = namespace.clone().unwrap_or_else(|| "default".to_string());
                let mut secrets = Vec::new();
                let (broker, resolved) = match &choice {
                    BrokerChoice::Native {
                        name: broker,
                        namespace: broker_namespace,
                    } => {
                        let broker = broker.clone();
                        let broker_namespace = broker_namespace
                            .clone()
                            .unwrap_or_else(|| own_namespace.clone());
                        let credential = if broker_namespace == own_namespace {
                            BrokerCredential::SecretKey {
                                secret: format!("{broker}-auth"),
                                key: "token".into(),
                            }
                        } else {
                            // A token broker's credential is its token; a users.json broker's is
                            // `user:password` from the Secret the I/O layer read.
                            let userinfo = match users_password {
                                Some(password) => {
                                    secrets.push(password.clone());
                                    format!("meshsync:{password}")
                                }
                                None => token,
                            };
                            secrets.push(userinfo.clone());
                            BrokerCredential::Copy { userinfo }
                        };
                        let resolved = ResolvedBroker {
                            scheme: "nats".into(),
                            address: format!("{broker}.{broker_namespace}.svc.cluster.local:4222"),
                            credential,
                            credential_revision: "secret-uid/1".into(),
                            tls_ca: None,
                        };
                        let native = NativeBroker {
                            name: broker,
                            namespace: Some(broker_namespace),
                        };
                        (
                            MeshSyncBroker {
                                native: Some(native),
                                custom: None,
                            },
                            resolved,
                        )
                    }
                    BrokerChoice::Custom {
                        scheme,
                        credentials,
                        host,
                        port,
                    } => {
                        let url = choice.url();
                        let credential = match credentials {
                            Some((user, password)) => {
                                let userinfo = format!("{user}:{password}");
                                secrets.push(password.clone());
                                secrets.push(userinfo.clone());
                                BrokerCredential::Copy { userinfo }
                            }
                            None => BrokerCredential::None,
                        };
                        let resolved = ResolvedBroker {
                            scheme: scheme.clone(),
                            address: format!("{host}:{}", port.unwrap_or(4222)),
                            credential,
                            credential_revision: String::new(),
                            tls_ca: None,
                        };
                        (
                            MeshSyncBroker {
                                native: None,
                                custom: Some(CustomBroker { url }),
                            },
                            resolved,
                        )
                    }
                };
                let watch_list = data.map(|data| WatchListConfigMap {
                    api_version: Some("v1".into()),
                    kind: Some("ConfigMap".into()),
                    data: Some(data),
                    ..WatchListConfigMap::default()
                });
                MeshSyncCase {
                    meshsync: MeshSync {
                        metadata: meta(&name, namespace.as_deref(), uid.as_deref()),
                        spec: MeshSyncSpec {
                            size,
                            version,
                            image,
                            broker: Some(broker),
                            watch_list,
                            resources,
                            recreate_on_immutable_change: false,
                            autoscaled,
                            pod,
                            pod_access: None,
                        },
                        status: None,
                    },
                    inputs: MeshSyncInputs {
                        default_version: "v1.0.3".into(),
                        broker: resolved,
                        crd_uid,
                    },
                    secrets,
                }
            },
        )
}

/// A MeshSync that breaks exactly one validation rule, with a description of the rule.
pub fn invalid_meshsync() -> impl Strategy<Value = (MeshSync, &'static str)> {
    (meshsync_case(), 0usize..12).prop_map(|(case, rule)| {
        let mut meshsync = case.meshsync;
        let spec = &mut meshsync.spec;
        let set_data = |spec: &mut MeshSyncSpec, entries: &[(&str, &str)]| {
            spec.watch_list = Some(WatchListConfigMap {
                data: Some(
                    entries
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..WatchListConfigMap::default()
            });
        };
        let what = match rule {
            0 => {
                spec.size = 0;
                "size out of range"
            }
            1 => {
                spec.broker = None;
                "no broker"
            }
            2 => {
                spec.broker = Some(MeshSyncBroker {
                    native: Some(NativeBroker {
                        name: "meshery-broker".into(),
                        namespace: None,
                    }),
                    custom: Some(CustomBroker {
                        url: Some("nats://nats.example.com:4222".into()),
                    }),
                });
                "both native and custom broker"
            }
            3 => {
                spec.broker = Some(MeshSyncBroker {
                    native: None,
                    custom: Some(CustomBroker {
                        url: Some("http://nats.example.com:4222".into()),
                    }),
                });
                "unsupported URL scheme"
            }
            4 => {
                set_data(
                    spec,
                    &[
                        (
                            "whitelist",
                            r#"[{"Resource":"pods.v1.","Events":["ADDED"]}]"#,
                        ),
                        ("blacklist", r#"["pods.v1."]"#),
                    ],
                );
                "both whitelist and blacklist"
            }
            5 => {
                set_data(spec, &[("whitelist", "[{")]);
                "malformed whitelist JSON"
            }
            6 => {
                set_data(
                    spec,
                    &[(
                        "whitelist",
                        r#"[{"Resource":"pod.v1.","Events":["ADDED"]}]"#,
                    )],
                );
                "singular resource"
            }
            7 => {
                set_data(
                    spec,
                    &[(
                        "whitelist",
                        r#"[{"Resource":"pods.v1.","Events":["CREATED"]}]"#,
                    )],
                );
                "unknown event"
            }
            8 => {
                set_data(
                    spec,
                    &[("whitelist", r#"[{"Resource":"pods.v1.","Events":[]}]"#)],
                );
                "no events"
            }
            9 => {
                set_data(spec, &[("blacklist", r#"["pods"]"#)]);
                "blacklist entry not plural.version.group"
            }
            10 => {
                meshsync.metadata.name = Some("Bad_Name".into());
                "malformed name"
            }
            _ => {
                spec.image = Some("meshery/meshsync:v1".into());
                "image with a tag"
            }
        };
        (meshsync, what)
    })
}
