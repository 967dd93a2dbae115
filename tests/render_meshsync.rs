//! The objects rendered for a MeshSync, checked against product spec §3 one kind at a time.

#[allow(dead_code)]
mod support;

use meshery_operator::api::MeshSync;
use meshery_operator::api::watch_list::WatchList;
use meshery_operator::object::Object;
use meshery_operator::render::labels::CONFIG_CHECKSUM_ANNOTATION;
use meshery_operator::render::{
    BrokerCredential, MeshSyncInputs, MeshSyncRelease, desired_meshsync, meshsync_cluster_rbac_name,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{find, has, meshsync, native_spec, same_namespace_inputs, watch_list};

fn render(meshsync: &MeshSync) -> Vec<Object> {
    desired_meshsync(
        meshsync,
        &same_namespace_inputs("meshery-broker", "meshery"),
    )
}

fn default_meshsync() -> MeshSync {
    meshsync("meshery-meshsync", "meshery", native_spec("meshery-broker"))
}

fn deployment(objects: &[Object]) -> Value {
    objects
        .iter()
        .find(|o| o.kind() == "Deployment")
        .map(|o| o.0.clone())
        .expect("a Deployment")
}

fn container(objects: &[Object]) -> Value {
    deployment(objects)["spec"]["template"]["spec"]["containers"][0].clone()
}

fn env(container: &Value, name: &str) -> Option<Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

fn checksum(objects: &[Object]) -> String {
    deployment(objects)["spec"]["template"]["metadata"]["annotations"][CONFIG_CHECKSUM_ANNOTATION]
        .as_str()
        .expect("the pod template carries the watch-list checksum")
        .to_string()
}

fn rules(objects: &[Object], name: &str) -> Value {
    find(objects, "ClusterRole", name)
        .get(&["rules"])
        .cloned()
        .expect("rules")
}

#[test]
fn a_meshsync_renders_its_objects_in_apply_order() {
    let keys: Vec<String> = render(&default_meshsync())
        .iter()
        .map(|o| format!("{}/{}", o.kind(), o.name()))
        .collect();
    assert_eq!(
        keys,
        [
            "ConfigMap/meshery-meshsync-watch-list",
            "ServiceAccount/meshery-meshsync",
            "ClusterRole/meshery-meshsync-meshery-meshery-meshsync",
            "ClusterRoleBinding/meshery-meshsync-meshery-meshery-meshsync",
            "Deployment/meshery-meshsync",
        ]
    );
}

#[test]
fn namespaced_objects_are_controlled_by_the_meshsync() {
    for object in render(&default_meshsync())
        .iter()
        .filter(|o| o.namespace().is_some())
    {
        assert_eq!(object.namespace(), Some("meshery"));
        assert_eq!(
            object.label("app.kubernetes.io/managed-by"),
            Some("meshery-operator")
        );
        assert_eq!(
            object.label("app.kubernetes.io/instance"),
            Some("meshery-meshsync")
        );
        assert_eq!(
            object.label("app.kubernetes.io/name"),
            Some("meshery-meshsync")
        );
        assert_eq!(
            object.get(&["metadata", "ownerReferences"]),
            Some(&json!([{
                "apiVersion": "meshery.io/v1alpha1",
                "kind": "MeshSync",
                "name": "meshery-meshsync",
                "uid": "uid-meshsync",
                "controller": true,
                "blockOwnerDeletion": true,
            }])),
            "{}",
            object.key()
        );
    }
}

#[test]
fn cluster_rbac_is_labelled_with_the_owner_uid_and_owned_by_the_crd() {
    let objects = render(&default_meshsync());
    let name = meshsync_cluster_rbac_name(&default_meshsync());
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        let object = find(&objects, kind, &name);
        assert_eq!(object.namespace(), None);
        assert_eq!(object.label("meshery.io/owner-uid"), Some("uid-meshsync"));
        assert_eq!(
            object.label("app.kubernetes.io/managed-by"),
            Some("meshery-operator")
        );
        assert_eq!(
            object.controller_uid(),
            None,
            "a namespaced CR cannot control a cluster-scoped object"
        );
        assert_eq!(
            object.get(&["metadata", "ownerReferences"]),
            Some(&json!([{
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "name": "meshsyncs.meshery.io",
                "uid": "uid-crd",
            }]))
        );
    }
    let offline = MeshSyncInputs {
        crd_uid: None,
        ..same_namespace_inputs("meshery-broker", "meshery")
    };
    let objects = desired_meshsync(&default_meshsync(), &offline);
    assert_eq!(
        find(&objects, "ClusterRole", &name).get(&["metadata", "ownerReferences"]),
        None
    );
}

#[test]
fn the_binding_grants_the_role_to_the_service_account() {
    let objects = render(&default_meshsync());
    let binding = find(
        &objects,
        "ClusterRoleBinding",
        "meshery-meshsync-meshery-meshery-meshsync",
    );
    assert_eq!(
        binding.get(&["roleRef"]),
        Some(
            &json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "meshery-meshsync-meshery-meshery-meshsync"})
        )
    );
    assert_eq!(
        binding.get(&["subjects"]),
        Some(
            &json!([{"kind": "ServiceAccount", "name": "meshery-meshsync", "namespace": "meshery"}])
        )
    );
    assert!(has(&objects, "ServiceAccount", "meshery-meshsync"));
}

#[test]
fn the_role_grants_exactly_the_whitelisted_resources_and_meshsyncs_own_needs() {
    let mut spec = native_spec("meshery-broker");
    spec.watch_list = Some(watch_list(
        "whitelist",
        r#"[{"Resource":"pods.v1.","Events":["ADDED"]},{"Resource":"deployments.v1.apps","Events":["MODIFIED","DELETED"]},{"Resource":"services.v1.","Events":["ADDED"]},{"Resource":"virtualservices.v1beta1.networking.istio.io","Events":["ADDED"]}]"#,
    ));
    let objects = render(&meshsync("ms", "meshery", spec));
    assert_eq!(
        rules(&objects, "meshery-meshsync-meshery-ms"),
        json!([
            {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
            {"apiGroups": ["meshery.io"], "resources": ["meshsyncs"], "resourceNames": ["ms"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
        ])
    );
}

#[test]
fn pod_access_decides_the_log_and_exec_grants() {
    let grants = |access: Value| -> Vec<Value> {
        let mut spec = native_spec("meshery-broker");
        spec.pod_access = serde_json::from_value(access).unwrap();
        let objects = render(&meshsync("ms", "meshery", spec));
        rules(&objects, "meshery-meshsync-meshery-ms")
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["resources"][0].as_str().unwrap().starts_with("pods/"))
            .cloned()
            .collect()
    };
    let logs = json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]});
    let exec = json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]});
    for (access, expected) in [
        (json!(null), vec![logs.clone(), exec.clone()]),
        (json!({}), vec![logs.clone(), exec.clone()]),
        (json!({"exec": false}), vec![logs.clone()]),
        (json!({"logs": false}), vec![exec.clone()]),
        (json!({"logs": false, "exec": false}), vec![]),
    ] {
        assert_eq!(grants(access.clone()), expected, "podAccess {access}");
    }
}

#[test]
fn a_blacklist_grants_every_built_in_resource_but_the_listed_ones() {
    let mut spec = native_spec("meshery-broker");
    spec.watch_list = Some(watch_list(
        "blacklist",
        r#"["secrets.v1.", "configmaps.v1."]"#,
    ));
    let objects = render(&meshsync("ms", "meshery", spec));
    let rules = rules(&objects, "meshery-meshsync-meshery-ms");
    let core = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["apiGroups"] == json!([""]))
        .unwrap();
    let resources: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        resources.contains(&"pods") && resources.contains(&"namespaces"),
        "{resources:?}"
    );
    assert!(
        !resources.contains(&"secrets") && !resources.contains(&"configmaps"),
        "{resources:?}"
    );
    let crd_rules: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"] == json!(["apiextensions.k8s.io"]))
        .collect();
    assert_eq!(
        crd_rules.len(),
        1,
        "watched CRDs already grant list/watch: {crd_rules:?}"
    );
}

#[test]
fn the_watch_list_config_map_holds_the_normalised_list() {
    let objects = render(&default_meshsync());
    let config_map = find(&objects, "ConfigMap", "meshery-meshsync-watch-list");
    let (key, value) = WatchList::default().to_data();
    assert_eq!(
        config_map.get(&["data"]),
        Some(&json!({key: value})),
        "no watch-list means the built-in whitelist"
    );

    let mut spec = native_spec("meshery-broker");
    spec.watch_list = Some(watch_list("blacklist", "[ \"pods.v1.\" ,\n \"pods.v1.\" ]"));
    let objects = render(&meshsync("ms", "meshery", spec));
    assert_eq!(
        find(&objects, "ConfigMap", "ms-watch-list").get(&["data"]),
        Some(&json!({"blacklist": "[\"pods.v1.\"]"}))
    );
}

#[test]
fn the_deployment_runs_meshsync_with_its_identity_and_watch_list() {
    let objects = render(&default_meshsync());
    let deployment = deployment(&objects);
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1);
    let selector = json!({"app": "meshery-meshsync", "app.kubernetes.io/instance": "meshery-meshsync", "app.kubernetes.io/name": "meshery-meshsync"});
    assert_eq!(spec["selector"]["matchLabels"], selector);
    assert_eq!(
        spec["template"]["metadata"]["labels"]["app"],
        "meshery-meshsync"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "meshery-meshsync");
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert!(pod["volumes"].as_array().unwrap().contains(
        &json!({"name": "watch-list", "configMap": {"name": "meshery-meshsync-watch-list"}})
    ));
    let container = container(&objects);
    assert_eq!(container["image"], "meshery/meshsync:v1.0.3");
    assert!(
        container["volumeMounts"].as_array().unwrap().contains(
            &json!({"name": "watch-list", "mountPath": "/etc/meshsync", "readOnly": true})
        )
    );
    // MeshSync creates ~/.meshery at start-up and exits when it cannot: the root is read-only.
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "meshery-home", "mountPath": "/home/nonroot/.meshery"}))
    );
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "meshery-home", "emptyDir": {}}))
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": 11000})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": 11000})
    );
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
    );
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}})
    );
}

#[test]
fn the_broker_url_splices_the_token_from_the_brokers_secret() {
    let container = container(&render(&default_meshsync()));
    assert_eq!(
        env(&container, "NATS_TOKEN").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "meshery-broker-auth", "key": "token"})
    );
    assert_eq!(
        env(&container, "BROKER_URL").unwrap()["value"],
        "nats://$(NATS_TOKEN)@meshery-broker.meshery.svc.cluster.local:4222"
    );
    let names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["NATS_TOKEN", "BROKER_URL"],
        "the kubelet expands $(NATS_TOKEN) only from earlier entries"
    );
}

#[test]
fn releases_before_1_0_1_get_a_url_their_start_up_check_can_read_and_no_health_probes() {
    // MeshSync v1.0.0 polls `http://<everything before the first ':'>:8222/connz` before it
    // connects: `nats://…` made that `http://nats:8222/connz`, which never answers.
    let mut old = default_meshsync();
    old.spec.version = Some("v1.0.0".into());
    let container = container(&render(&old));
    assert_eq!(
        env(&container, "BROKER_URL").unwrap()["value"],
        "$(NATS_TOKEN)@meshery-broker.meshery.svc.cluster.local:4222"
    );
    for absent in ["livenessProbe", "readinessProbe", "ports"] {
        assert_eq!(
            container.get(absent),
            None,
            "{absent} on a release without a health server"
        );
    }
    for (version, current) in [
        ("v1.0.1", true),
        ("v1.0.3", true),
        ("v1.1.0", true),
        ("v2.0.0-rc.1", true),
        ("v0.8.11", false),
        ("v1.0.0-beta", false),
        ("edge-latest", true),
    ] {
        assert_eq!(
            MeshSyncRelease::of(version),
            MeshSyncRelease {
                serves_health: current,
                reads_url_scheme: current
            },
            "{version}"
        );
    }
}

#[test]
fn a_copied_credential_gets_its_own_secret() {
    let mut inputs = same_namespace_inputs("meshery-broker", "other");
    inputs.broker.credential = BrokerCredential::Copy {
        userinfo: "meshsync:s%40cret".into(),
    };
    let objects = desired_meshsync(&default_meshsync(), &inputs);
    assert_eq!(
        objects[0].key().to_string(),
        "Secret meshery/meshery-meshsync-broker-auth",
        "Secrets apply first"
    );
    let encoded = objects[0]
        .get(&["data", "token"])
        .and_then(Value::as_str)
        .unwrap();
    let decoded: k8s_openapi::ByteString = serde_json::from_value(json!(encoded)).unwrap();
    assert_eq!(decoded.0, b"meshsync:s%40cret");
    assert_eq!(objects[0].get(&["stringData"]), None);
    assert_eq!(
        env(&container(&objects), "NATS_TOKEN").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "meshery-meshsync-broker-auth", "key": "token"})
    );
}

#[test]
fn a_broker_without_credentials_gets_a_plain_url() {
    let mut inputs = same_namespace_inputs("meshery-broker", "meshery");
    inputs.broker = meshery_operator::render::ResolvedBroker {
        scheme: "tls".into(),
        address: "nats.example.com:4443".into(),
        credential: BrokerCredential::None,
        credential_revision: String::new(),
        tls_ca: None,
    };
    let objects = desired_meshsync(&default_meshsync(), &inputs);
    assert!(!objects.iter().any(Object::is_secret));
    let container = container(&objects);
    assert!(env(&container, "NATS_TOKEN").is_none());
    assert_eq!(
        env(&container, "BROKER_URL").unwrap()["value"],
        "tls://nats.example.com:4443"
    );
}

#[test]
fn a_tls_brokers_ca_reaches_meshsync_in_a_config_map_and_rolls_it_when_it_changes() {
    let mut inputs = same_namespace_inputs("meshery-broker", "meshery");
    inputs.broker.scheme = "tls".into();
    let without_ca = desired_meshsync(&default_meshsync(), &inputs);
    assert!(
        !without_ca
            .iter()
            .any(|o| o.name() == "meshery-meshsync-broker-ca"),
        "no CA, no ConfigMap"
    );
    assert!(env(&container(&without_ca), "SSL_CERT_FILE").is_none());

    inputs.broker.tls_ca = Some("-----BEGIN CERTIFICATE-----\nA\n".into());
    let objects = desired_meshsync(&default_meshsync(), &inputs);
    assert_eq!(
        find(&objects, "ConfigMap", "meshery-meshsync-broker-ca").get(&["data"]),
        Some(&json!({"ca.crt": "-----BEGIN CERTIFICATE-----\nA\n"}))
    );
    let container = container(&objects);
    assert_eq!(
        env(&container, "SSL_CERT_FILE").unwrap()["value"],
        "/etc/meshery/broker-ca/ca.crt"
    );
    assert!(
        container["volumeMounts"].as_array().unwrap().contains(
            &json!({"name": "broker-ca", "mountPath": "/etc/meshery/broker-ca", "readOnly": true})
        ),
        "{container}"
    );
    assert!(
        deployment(&objects)["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .contains(
                &json!({"name": "broker-ca", "configMap": {"name": "meshery-meshsync-broker-ca"}})
            ),
    );
    assert_ne!(checksum(&objects), checksum(&without_ca));
    inputs.broker.tls_ca = Some("-----BEGIN CERTIFICATE-----\nB\n".into());
    assert_ne!(
        checksum(&desired_meshsync(&default_meshsync(), &inputs)),
        checksum(&objects),
        "MeshSync reads its trust roots at start-up: a new CA rolls it"
    );
}

#[test]
fn image_size_and_resources_follow_the_spec() {
    let mut spec = native_spec("meshery-broker");
    spec.size = 3;
    spec.image = Some("ghcr.io/meshery/meshsync".into());
    spec.version = Some("v1.0.4".into());
    let objects = render(&meshsync("ms", "meshery", spec));
    assert_eq!(deployment(&objects)["spec"]["replicas"], 3);
    assert_eq!(
        container(&objects)["image"],
        "ghcr.io/meshery/meshsync:v1.0.4"
    );
}

#[test]
fn the_checksum_changes_exactly_when_the_watch_list_does() {
    let base = default_meshsync();
    let original = checksum(&render(&base));

    let mut same_list_written_differently = base.clone();
    let (key, value) = WatchList::default().to_data();
    let pretty: Value = serde_json::from_str(&value).unwrap();
    same_list_written_differently.spec.watch_list = Some(watch_list(
        key,
        &serde_json::to_string_pretty(&pretty).unwrap(),
    ));
    assert_eq!(
        original,
        checksum(&render(&same_list_written_differently)),
        "the normalised list is the same"
    );

    let mut other_settings = base.clone();
    other_settings.spec.size = 4;
    other_settings.spec.version = Some("v9".into());
    assert_eq!(original, checksum(&render(&other_settings)));

    let mut narrower = base.clone();
    narrower.spec.watch_list = Some(watch_list(
        "whitelist",
        r#"[{"Resource":"pods.v1.","Events":["ADDED"]}]"#,
    ));
    assert_ne!(original, checksum(&render(&narrower)));
}

#[test]
fn a_new_broker_credential_rolls_meshsync_without_revealing_it() {
    let checksum = |inputs: &meshery_operator::render::MeshSyncInputs| {
        let objects = desired_meshsync(&default_meshsync(), inputs);
        let deployment = objects.iter().find(|o| o.kind() == "Deployment").unwrap();
        deployment.0["spec"]["template"]["metadata"]["annotations"]["meshery.io/config-checksum"]
            .clone()
    };
    let before = same_namespace_inputs("meshery-broker", "meshery");
    let mut after = before.clone();
    after.broker.credential_revision = "secret-uid/2".into();
    assert_ne!(
        checksum(&before),
        checksum(&after),
        "a rewritten broker Secret must restart MeshSync"
    );
    assert_eq!(checksum(&before), checksum(&before.clone()));
}

/// With an autoscaler in charge the Deployment is rendered without replicas, so the operator never
/// fights the HPA (and `size` is not used).
#[test]
fn an_autoscaled_meshsync_renders_no_replicas() {
    let mut spec = native_spec("meshery-broker");
    spec.size = 3;
    spec.autoscaled = true;
    let objects = render(&meshsync("ms", "meshery", spec));
    assert!(
        deployment(&objects)["spec"].get("replicas").is_none(),
        "{}",
        deployment(&objects)["spec"]
    );
}
