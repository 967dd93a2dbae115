//! The objects rendered for a Broker, checked against product spec §3 one kind at a time.

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;

use meshery_operator::api::{
    Broker, BrokerAuth, BrokerClustering, BrokerConfig, BrokerJetStream, BrokerNetworkPolicy,
    BrokerService, BrokerTls, SecretRef, ServiceType,
};
use meshery_operator::object::Object;
use meshery_operator::render::labels::CONFIG_CHECKSUM_ANNOTATION;
use meshery_operator::render::{
    AuthKind, BrokerAuthInput, BrokerInputs, broker_internal_endpoint, desired_broker,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{TOKEN, broker, broker_spec, find, generated_inputs, has, meta, nats_conf};

fn render(broker: &Broker) -> Vec<Object> {
    desired_broker(broker, &generated_inputs())
}

fn keys(objects: &[Object]) -> Vec<String> {
    objects
        .iter()
        .map(|o| format!("{}/{}", o.kind(), o.name()))
        .collect()
}

fn pod_spec(objects: &[Object], name: &str) -> Value {
    find(objects, "StatefulSet", name)
        .get(&["spec", "template", "spec"])
        .cloned()
        .expect("a pod template")
}

fn container(objects: &[Object], name: &str) -> Value {
    pod_spec(objects, name)["containers"][0].clone()
}

fn env(container: &Value, name: &str) -> Option<Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

fn checksum(objects: &[Object], name: &str) -> String {
    find(objects, "StatefulSet", name)
        .get(&[
            "spec",
            "template",
            "metadata",
            "annotations",
            CONFIG_CHECKSUM_ANNOTATION,
        ])
        .and_then(Value::as_str)
        .expect("the pod template carries the config checksum")
        .to_string()
}

fn referenced(mut broker: Broker, secret: &str) -> Broker {
    broker.spec.auth = Some(BrokerAuth {
        secret_ref: Some(SecretRef {
            name: secret.into(),
        }),
    });
    broker
}

fn referenced_inputs(kind: AuthKind) -> BrokerInputs {
    BrokerInputs {
        auth: BrokerAuthInput::Referenced { kind },
        ..generated_inputs()
    }
}

#[test]
fn a_single_server_renders_its_objects_in_apply_order() {
    let objects = render(&broker("meshery-broker", "meshery", broker_spec(1)));
    assert_eq!(
        keys(&objects),
        [
            "Secret/meshery-broker-auth",
            "ConfigMap/meshery-broker-config",
            "Service/meshery-broker",
            "Service/meshery-broker-headless",
            "StatefulSet/meshery-broker",
        ]
    );
}

#[test]
fn a_cluster_with_a_network_policy_adds_the_budget_and_the_policy_last() {
    let mut spec = broker_spec(3);
    spec.network_policy = Some(BrokerNetworkPolicy {
        enabled: true,
        allowed_cidrs: None,
    });
    let objects = render(&broker("nats", "meshery", spec));
    let kinds: Vec<&str> = objects.iter().map(Object::kind).collect();
    assert_eq!(
        kinds,
        [
            "Secret",
            "ConfigMap",
            "Service",
            "Service",
            "StatefulSet",
            "PodDisruptionBudget",
            "NetworkPolicy"
        ]
    );
}

#[test]
fn every_object_is_labelled_and_controlled_by_the_broker() {
    let mut spec = broker_spec(3);
    spec.network_policy = Some(BrokerNetworkPolicy {
        enabled: true,
        allowed_cidrs: None,
    });
    for object in render(&broker("nats", "meshery", spec)) {
        let metadata = object.get(&["metadata"]).expect("metadata");
        assert_eq!(metadata["namespace"], "meshery", "{}", object.key());
        assert_eq!(
            metadata["labels"],
            json!({
                "app.kubernetes.io/managed-by": "meshery-operator",
                "app.kubernetes.io/instance": "nats",
                "app.kubernetes.io/name": "meshery-broker",
            }),
            "{}",
            object.key()
        );
        assert_eq!(
            metadata["ownerReferences"],
            json!([{
                "apiVersion": "meshery.io/v1alpha1",
                "kind": "Broker",
                "name": "nats",
                "uid": "uid-broker",
                "controller": true,
                "blockOwnerDeletion": true,
            }]),
            "{}",
            object.key()
        );
    }
}

#[test]
fn a_broker_without_namespace_or_uid_renders_into_default_with_an_empty_uid() {
    let broker = Broker {
        metadata: meta("nats", None, None),
        spec: broker_spec(1),
        status: None,
    };
    for object in render(&broker) {
        assert_eq!(object.namespace(), Some("default"), "{}", object.key());
        assert_eq!(object.controller_uid(), Some(""), "{}", object.key());
    }
    assert_eq!(
        broker_internal_endpoint(&broker),
        "nats.default.svc.cluster.local:4222"
    );
}

#[test]
fn the_internal_endpoint_is_the_client_service_dns_name() {
    assert_eq!(
        broker_internal_endpoint(&broker("meshery-broker", "meshery", broker_spec(1))),
        "meshery-broker.meshery.svc.cluster.local:4222"
    );
}

#[test]
fn the_generated_token_secret_holds_the_token_as_data() {
    let objects = render(&broker("nats", "meshery", broker_spec(1)));
    let secret = find(&objects, "Secret", "nats-auth");
    assert_eq!(secret.get(&["type"]), Some(&json!("Opaque")));
    let encoded = secret
        .get(&["data", "token"])
        .and_then(Value::as_str)
        .expect("data.token");
    let decoded: k8s_openapi::ByteString = serde_json::from_value(json!(encoded)).expect("base64");
    assert_eq!(decoded.0, TOKEN.as_bytes());
    assert_eq!(
        secret.get(&["stringData"]),
        None,
        "stringData cannot be diffed by server-side apply"
    );
}

#[test]
fn a_referenced_auth_secret_is_used_and_not_rendered() {
    let broker = referenced(broker("nats", "meshery", broker_spec(1)), "my-token");
    let objects = desired_broker(&broker, &referenced_inputs(AuthKind::Token));
    assert!(
        !objects.iter().any(Object::is_secret),
        "{:?}",
        keys(&objects)
    );
    let token = env(&container(&objects, "nats"), "NATS_TOKEN").expect("NATS_TOKEN");
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        json!({"name": "my-token", "key": "token"})
    );
}

#[test]
fn the_config_takes_the_token_from_the_environment_never_inline() {
    let objects = render(&broker("nats", "meshery", broker_spec(1)));
    let conf = nats_conf(&objects);
    for line in [
        "port: 4222",
        "http_port: 8222",
        "token: $NATS_TOKEN",
        "server_name: $POD_NAME",
    ] {
        assert!(conf.contains(line), "missing {line:?} in\n{conf}");
    }
    assert!(
        conf.contains("lame_duck_duration") && conf.contains("lame_duck_grace_period"),
        "{conf}"
    );
    assert!(!conf.contains(TOKEN), "{conf}");
    let container = container(&objects, "nats");
    let token = env(&container, "NATS_TOKEN").expect("NATS_TOKEN");
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        json!({"name": "nats-auth", "key": "token"})
    );
    let pod_name = env(&container, "POD_NAME").expect("POD_NAME");
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
}

#[test]
fn a_cluster_routes_to_every_replica_through_the_headless_service() {
    let objects = render(&broker("nats", "meshery", broker_spec(3)));
    let conf = nats_conf(&objects);
    assert!(
        conf.contains("cluster {")
            && conf.contains("name: \"nats\"")
            && conf.contains("port: 6222"),
        "{conf}"
    );
    assert!(
        conf.contains("authorization { user: \"route\", password: $NATS_TOKEN }"),
        "{conf}"
    );
    let container = container(&objects, "nats");
    for ordinal in 0..3 {
        let host = format!("nats-{ordinal}.nats-headless.meshery.svc.cluster.local:6222");
        assert!(
            conf.contains(&format!("$NATS_ROUTE_{ordinal} # {host}")),
            "{conf}"
        );
        let route = env(&container, &format!("NATS_ROUTE_{ordinal}")).expect("route env");
        assert_eq!(route["value"], format!("nats://route:$(NATS_TOKEN)@{host}"));
    }
    assert!(env(&container, "NATS_ROUTE_3").is_none());
    let names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names[0], "NATS_TOKEN",
        "the kubelet expands $(NATS_TOKEN) only from earlier entries"
    );
}

#[test]
fn a_single_server_that_opts_into_clustering_still_gets_a_cluster_block() {
    let mut spec = broker_spec(1);
    spec.clustering = Some(BrokerClustering {
        enabled: Some(true),
    });
    let conf = nats_conf(&render(&broker("nats", "meshery", spec)));
    assert!(
        conf.contains("cluster {") && conf.contains("$NATS_ROUTE_0"),
        "{conf}"
    );
}

#[test]
fn users_json_auth_is_included_from_the_mounted_secret() {
    let broker = referenced(broker("nats", "meshery", broker_spec(3)), "nats-users");
    let objects = desired_broker(&broker, &referenced_inputs(AuthKind::Users));
    let conf = nats_conf(&objects);
    assert!(
        conf.contains("include \"../nats-auth/users.json\""),
        "{conf}"
    );
    assert!(!conf.contains("NATS_TOKEN"), "{conf}");
    let container = container(&objects, "nats");
    assert!(env(&container, "NATS_TOKEN").is_none());
    assert_eq!(
        env(&container, "NATS_ROUTE_1").unwrap()["value"],
        "nats://nats-1.nats-headless.meshery.svc.cluster.local:6222"
    );
    let pod = pod_spec(&objects, "nats");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "auth", "secret": {"secretName": "nats-users"}}))
    );
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "auth", "mountPath": "/etc/nats-auth", "readOnly": true}))
    );
}

#[test]
fn tls_mounts_the_secret_and_points_the_config_at_it() {
    let mut spec = broker_spec(1);
    spec.tls = Some(BrokerTls {
        enabled: true,
        secret_name: Some("broker-tls".into()),
    });
    let objects = render(&broker("nats", "meshery", spec));
    let conf = nats_conf(&objects);
    assert!(
        conf.contains("cert_file: \"/etc/nats-tls/tls.crt\"")
            && conf.contains("key_file: \"/etc/nats-tls/tls.key\""),
        "{conf}"
    );
    let pod = pod_spec(&objects, "nats");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "tls", "secret": {"secretName": "broker-tls"}}))
    );
}

#[test]
fn nats_settings_are_rendered_as_plain_numbers() {
    let mut spec = broker_spec(1);
    spec.config = Some(BrokerConfig {
        max_payload: Some("2Mi".into()),
        max_connections: Some(100),
        debug: true,
        trace: false,
    });
    let conf = nats_conf(&render(&broker("nats", "meshery", spec)));
    for line in [
        "max_payload: 2097152",
        "max_connections: 100",
        "debug: true",
        "trace: false",
    ] {
        assert!(conf.contains(line), "missing {line:?} in\n{conf}");
    }
}

#[test]
fn the_client_service_exposes_nats_and_monitoring_on_the_spec_type() {
    let mut spec = broker_spec(1);
    spec.service = Some(BrokerService {
        service_type: Some(ServiceType::LoadBalancer),
        annotations: Some(BTreeMap::from([("example.com/team".into(), "mesh".into())])),
        load_balancer_class: Some("example.com/lb".into()),
        load_balancer_source_ranges: Some(vec!["10.0.0.0/8".into()]),
        external_endpoint_override: None,
    });
    let objects = render(&broker("nats", "meshery", spec));
    let service = find(&objects, "Service", "nats");
    assert_eq!(
        service.get(&["metadata", "annotations"]),
        Some(&json!({"example.com/team": "mesh"}))
    );
    assert_eq!(
        service.get(&["spec"]),
        Some(&json!({
            "type": "LoadBalancer",
            "selector": {"app": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/name": "meshery-broker"},
            "ports": [
                {"name": "nats", "port": 4222, "targetPort": 4222, "protocol": "TCP"},
                {"name": "monitor", "port": 8222, "targetPort": 8222, "protocol": "TCP"},
            ],
            "loadBalancerClass": "example.com/lb",
            "loadBalancerSourceRanges": ["10.0.0.0/8"],
        }))
    );
}

#[test]
fn the_client_service_defaults_to_load_balancer_and_honours_other_types() {
    let objects = render(&broker("nats", "meshery", broker_spec(1)));
    assert_eq!(
        find(&objects, "Service", "nats").get(&["spec", "type"]),
        Some(&json!("LoadBalancer"))
    );
    let mut spec = broker_spec(1);
    spec.service = Some(BrokerService {
        service_type: Some(ServiceType::NodePort),
        ..BrokerService::default()
    });
    let objects = render(&broker("nats", "meshery", spec));
    let service = find(&objects, "Service", "nats");
    assert_eq!(service.get(&["spec", "type"]), Some(&json!("NodePort")));
    assert_eq!(service.get(&["metadata", "annotations"]), None);
}

#[test]
fn the_headless_service_publishes_every_replica_including_unready_ones() {
    let objects = render(&broker("nats", "meshery", broker_spec(3)));
    let spec = find(&objects, "Service", "nats-headless")
        .get(&["spec"])
        .cloned()
        .unwrap();
    assert_eq!(spec["clusterIP"], "None");
    assert_eq!(spec["publishNotReadyAddresses"], true);
    let ports: Vec<(String, i64)> = spec["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("nats".to_string(), 4222),
            ("cluster".to_string(), 6222),
            ("monitor".to_string(), 8222)
        ]
    );
}

#[test]
fn the_stateful_set_runs_size_replicas_with_stable_identities() {
    let objects = render(&broker("nats", "meshery", broker_spec(3)));
    let stateful_set = find(&objects, "StatefulSet", "nats");
    let spec = stateful_set.get(&["spec"]).unwrap();
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["serviceName"], "nats-headless");
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    let selector = json!({"app": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/name": "meshery-broker"});
    assert_eq!(spec["selector"]["matchLabels"], selector);
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["app"], "nats");
    assert_eq!(
        pod_labels["app.kubernetes.io/managed-by"],
        "meshery-operator"
    );
    assert!(spec.get("volumeClaimTemplates").is_none());
}

#[test]
fn the_nats_container_is_configured_probed_and_locked_down() {
    let objects = render(&broker("nats", "meshery", broker_spec(1)));
    let container = container(&objects, "nats");
    assert_eq!(container["name"], "nats");
    assert_eq!(container["image"], "nats:2.10.22");
    assert_eq!(
        container["args"],
        json!(["--config", "/etc/nats/nats.conf"])
    );
    let ports: Vec<(&str, i64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("client", 4222), ("cluster", 6222), ("monitor", 8222)]
    );
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(
            container[probe]["httpGet"],
            json!({"path": "/healthz", "port": 8222}),
            "{probe}"
        );
    }
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}})
    );
    assert_eq!(
        container["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        })
    );
    assert_eq!(
        container["lifecycle"]["preStop"]["exec"]["command"],
        json!(["/nats-server", "--signal", "ldm=/var/run/nats/nats.pid"])
    );
    let pod = pod_spec(&objects, "nats");
    assert_eq!(
        pod["securityContext"],
        json!({
            "runAsNonRoot": true,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    assert!(
        pod["terminationGracePeriodSeconds"].as_i64().unwrap() > 30 + 10,
        "covers lame duck and its grace period"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "config", "configMap": {"name": "nats-config"}}))
    );
}

#[test]
fn image_version_and_resources_follow_the_spec() {
    let mut spec = broker_spec(1);
    spec.image = Some("registry.example.com/nats".into());
    spec.version = Some("2.11.1".into());
    spec.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "memory".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".into()),
        )])),
        ..Default::default()
    });
    let objects = render(&broker("nats", "meshery", spec.clone()));
    let container = container(&objects, "nats");
    assert_eq!(container["image"], "registry.example.com/nats:2.11.1");
    assert_eq!(container["resources"], json!({"limits": {"memory": "2Gi"}}));
    let digest = format!("sha256:{}", "a".repeat(64));
    spec.version = Some(digest.clone());
    let objects = render(&broker("nats", "meshery", spec));
    assert_eq!(
        self::container(&objects, "nats")["image"],
        format!("registry.example.com/nats@{digest}")
    );
}

#[test]
fn jetstream_adds_a_store_and_a_volume_claim_per_replica() {
    let mut spec = broker_spec(3);
    spec.jetstream = Some(BrokerJetStream {
        enabled: true,
        storage_class: Some("fast-ssd".into()),
        storage_size: None,
    });
    let objects = render(&broker("nats", "meshery", spec));
    let conf = nats_conf(&objects);
    assert!(
        conf.contains("store_dir: \"/data/jetstream\"")
            && conf.contains("max_file_store: 10737418240"),
        "{conf}"
    );
    let claims = find(&objects, "StatefulSet", "nats")
        .get(&["spec", "volumeClaimTemplates"])
        .cloned()
        .unwrap();
    assert_eq!(claims[0]["metadata"]["name"], "data");
    assert_eq!(
        claims[0]["spec"],
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "fast-ssd", "resources": {"requests": {"storage": "10Gi"}}})
    );
    assert!(
        container(&objects, "nats")["volumeMounts"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "data", "mountPath": "/data"}))
    );
}

#[test]
fn the_checksum_changes_exactly_when_the_config_does() {
    let base = broker("nats", "meshery", broker_spec(1));
    let original = checksum(&render(&base), "nats");
    assert_eq!(
        original,
        checksum(&render(&base), "nats"),
        "rendering is deterministic"
    );

    let mut config_change = base.clone();
    config_change.spec.config = Some(BrokerConfig {
        max_connections: Some(10),
        ..BrokerConfig::default()
    });
    assert_ne!(original, checksum(&render(&config_change), "nats"));

    let mut image_change = base.clone();
    image_change.spec.version = Some("2.11.0".into());
    image_change.spec.service = Some(BrokerService {
        service_type: Some(ServiceType::ClusterIP),
        ..BrokerService::default()
    });
    assert_eq!(
        original,
        checksum(&render(&image_change), "nats"),
        "nothing in nats.conf changed"
    );

    let rotated = BrokerInputs {
        auth: BrokerAuthInput::Generated {
            token: format!("t{}", "f".repeat(64)),
        },
        ..generated_inputs()
    };
    assert_ne!(
        original,
        checksum(&desired_broker(&base, &rotated), "nats"),
        "a new token must reach the servers"
    );
}

#[test]
fn a_disruption_budget_keeps_a_cluster_at_most_one_server_down() {
    assert!(!has(
        &render(&broker("nats", "meshery", broker_spec(1))),
        "PodDisruptionBudget",
        "nats"
    ));
    let objects = render(&broker("nats", "meshery", broker_spec(3)));
    let budget = find(&objects, "PodDisruptionBudget", "nats");
    assert_eq!(budget.get(&["spec", "maxUnavailable"]), Some(&json!(1)));
    assert_eq!(
        budget.get(&["spec", "selector", "matchLabels"]),
        find(&objects, "StatefulSet", "nats").get(&["spec", "selector", "matchLabels"])
    );
}

#[test]
fn the_network_policy_admits_meshsync_the_listed_cidrs_routes_and_monitoring() {
    assert!(!has(
        &render(&broker("nats", "meshery", broker_spec(1))),
        "NetworkPolicy",
        "nats"
    ));
    let mut spec = broker_spec(3);
    spec.network_policy = Some(BrokerNetworkPolicy {
        enabled: true,
        allowed_cidrs: Some(vec!["192.168.0.0/16".into()]),
    });
    let objects = render(&broker("nats", "meshery", spec));
    let policy = find(&objects, "NetworkPolicy", "nats")
        .get(&["spec"])
        .cloned()
        .unwrap();
    let own_pods = json!({"matchLabels": {"app": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/name": "meshery-broker"}});
    assert_eq!(policy["podSelector"], own_pods);
    assert_eq!(policy["policyTypes"], json!(["Ingress"]));
    let rules = policy["ingress"].as_array().unwrap();
    let port_of = |rule: &Value| rule["ports"][0]["port"].as_i64().unwrap();
    assert_eq!(
        rules.iter().map(port_of).collect::<Vec<_>>(),
        [4222, 6222, 8222]
    );
    let client_peers = rules[0]["from"].as_array().unwrap();
    assert!(client_peers.contains(&json!({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "meshery-meshsync"}}})));
    assert!(client_peers.contains(&json!({"ipBlock": {"cidr": "192.168.0.0/16"}})));
    assert_eq!(rules[1]["from"], json!([{"podSelector": own_pods}]));
    assert_eq!(
        rules[2]["from"],
        json!([
            {"podSelector": {}},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "meshery-meshsync"}}},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "meshery-operator"}}},
        ]),
        "monitoring from the broker's namespace, and from MeshSync (its start-up check) and the \
         operator (its connection check) in any namespace"
    );
}

#[test]
fn disabled_features_render_nothing_for_them() {
    let mut spec = broker_spec(1);
    spec.tls = Some(BrokerTls {
        enabled: false,
        secret_name: Some("unused".into()),
    });
    spec.jetstream = Some(BrokerJetStream {
        enabled: false,
        storage_class: None,
        storage_size: Some("5Gi".into()),
    });
    spec.network_policy = Some(BrokerNetworkPolicy {
        enabled: false,
        allowed_cidrs: None,
    });
    let objects = render(&broker("nats", "meshery", spec));
    let conf = nats_conf(&objects);
    assert!(
        !conf.contains("tls {") && !conf.contains("jetstream {") && !conf.contains("cluster {"),
        "{conf}"
    );
    assert!(!has(&objects, "NetworkPolicy", "nats"));
    let volumes = pod_spec(&objects, "nats")["volumes"].clone();
    assert!(!volumes.to_string().contains("unused"), "{volumes}");
}

/// Placement and registry options reach the pod template as given, beside the operator's own
/// labels and checksum; MeshSync renders the same options the same way.
#[test]
fn pod_options_reach_the_pod_template_of_both_workloads() {
    let options: meshery_operator::api::PodOptions = serde_json::from_value(json!({
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "meshery", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"app": "meshery-broker"}}}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "meshery-high",
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "labels": {"team": "platform"},
        "annotations": {"example.com/owner": "platform team"},
    }))
    .unwrap();
    let mut spec = broker_spec(1);
    spec.pod = Some(options.clone());
    let objects = render(&broker("meshery-broker", "meshery", spec));
    let template = find(&objects, "StatefulSet", "meshery-broker")
        .get(&["spec", "template"])
        .cloned()
        .unwrap();
    let pod = &template["spec"];
    let given = serde_json::to_value(&options).unwrap();
    for field in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
    ] {
        assert_eq!(pod[field], given[field], "{field}");
    }
    assert_eq!(template["metadata"]["labels"]["team"], "platform");
    assert_eq!(template["metadata"]["labels"]["app"], "meshery-broker");
    assert_eq!(
        template["metadata"]["annotations"]["example.com/owner"],
        "platform team"
    );
    assert!(template["metadata"]["annotations"][CONFIG_CHECKSUM_ANNOTATION].is_string());

    let mut meshsync_spec = support::native_spec("meshery-broker");
    meshsync_spec.pod = Some(options);
    let meshsync = support::meshsync("meshery-meshsync", "meshery", meshsync_spec);
    let objects = meshery_operator::render::desired_meshsync(
        &meshsync,
        &support::same_namespace_inputs("meshery-broker", "meshery"),
    );
    let deployment = find(&objects, "Deployment", "meshery-meshsync");
    for field in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
    ] {
        assert_eq!(
            deployment.get(&["spec", "template", "spec", field]),
            Some(&given[field]),
            "{field}"
        );
    }
}
