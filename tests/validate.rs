//! Validation: every problem reported at once, each with the field path a user edits and what to do.

use meshery_operator::api::{Broker, MeshSync, validate_broker, validate_meshsync};
use meshery_operator::cli::{CustomResource, parse_documents, read_documents};

fn broker(spec: &str) -> Broker {
    broker_named("b", spec)
}

fn broker_named(name: &str, spec: &str) -> Broker {
    let yaml = format!(
        "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata: {{name: {name}, namespace: ns}}\nspec: {spec}\n"
    );
    match parse_documents("test", &yaml).unwrap()[0]
        .custom_resource()
        .unwrap()
    {
        CustomResource::Broker(b) => *b,
        CustomResource::MeshSync(_) => unreachable!(),
    }
}

fn meshsync(spec: &str) -> MeshSync {
    let yaml = format!(
        "apiVersion: meshery.io/v1alpha1\nkind: MeshSync\nmetadata: {{name: m, namespace: ns}}\nspec: {spec}\n"
    );
    match parse_documents("test", &yaml).unwrap()[0]
        .custom_resource()
        .unwrap()
    {
        CustomResource::MeshSync(m) => *m,
        CustomResource::Broker(_) => unreachable!(),
    }
}

fn broker_errors(spec: &str) -> Vec<String> {
    validate_broker(&broker(spec))
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn meshsync_errors(spec: &str) -> Vec<String> {
    validate_meshsync(&meshsync(spec))
        .iter()
        .map(ToString::to_string)
        .collect()
}

const NATIVE: &str = "broker: {native: {name: meshery-broker}}";

fn with_watch_list(key: &str, json: &str) -> String {
    format!("{{{NATIVE}, watch-list: {{data: {{{key}: '{json}'}}}}}}")
}

#[track_caller]
fn assert_one(errors: &[String], path: &str, fragment: &str) {
    assert_eq!(
        errors.len(),
        1,
        "expected one error at {path}, got {errors:#?}"
    );
    assert!(
        errors[0].starts_with(&format!("{path}: ")),
        "wrong path: {}",
        errors[0]
    );
    assert!(
        errors[0].contains(fragment),
        "{:?} does not mention {fragment:?}",
        errors[0]
    );
}

#[test]
fn every_example_is_valid() {
    for document in read_documents(&["examples".into()]).unwrap() {
        let errors = match document.custom_resource().unwrap() {
            CustomResource::Broker(b) => validate_broker(&b),
            CustomResource::MeshSync(m) => validate_meshsync(&m),
        };
        assert!(errors.is_empty(), "{}: {errors:?}", document.source);
    }
}

#[test]
fn broker_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("{size: 0}", "spec.size", "use 1 to 10"),
        ("{size: 11}", "spec.size", "use 1 to 10"),
        (
            "{size: 3, clustering: {enabled: false}}",
            "spec.clustering.enabled",
            "would not share messages",
        ),
        (
            "{service: {type: ClusterIP, loadBalancerClass: x}}",
            "spec.service.loadBalancerClass",
            "only valid with type LoadBalancer, not ClusterIP",
        ),
        (
            "{service: {type: NodePort, loadBalancerSourceRanges: ['10.0.0.0/8']}}",
            "spec.service.loadBalancerSourceRanges",
            "not NodePort",
        ),
        (
            "{service: {loadBalancerSourceRanges: ['10.0.0.0/33']}}",
            "spec.service.loadBalancerSourceRanges[0]",
            "is not a CIDR",
        ),
        (
            "{service: {externalEndpointOverride: 'broker.example.com'}}",
            "spec.service.externalEndpointOverride",
            "is not host:port",
        ),
        (
            "{service: {externalEndpointOverride: 'broker.example.com:0'}}",
            "spec.service.externalEndpointOverride",
            "port must be 1-65535",
        ),
        (
            "{service: {externalEndpointOverride: 'bad_host:4222'}}",
            "spec.service.externalEndpointOverride",
            "not a DNS name or IP",
        ),
        (
            "{tls: {enabled: true}}",
            "spec.tls.secretName",
            "required when tls.enabled",
        ),
        (
            "{jetstream: {enabled: true, storageSize: '10 gigs'}}",
            "spec.jetstream.storageSize",
            "is not a Kubernetes quantity",
        ),
        (
            "{jetstream: {enabled: true, storageSize: '0'}}",
            "spec.jetstream.storageSize",
            "greater than zero",
        ),
        (
            "{config: {maxPayload: 128Mi}}",
            "spec.config.maxPayload",
            "more than the allowed",
        ),
        (
            "{networkPolicy: {enabled: true, allowedCIDRs: ['everyone']}}",
            "spec.networkPolicy.allowedCIDRs[0]",
            "is not a CIDR",
        ),
        (
            "{image: 'nats:2.10'}",
            "spec.image",
            "put the repository here and the tag in spec.version",
        ),
        (
            "{image: 'Upper/Case'}",
            "spec.image",
            "is not an image repository",
        ),
        (
            "{version: 'has space'}",
            "spec.version",
            "is not an image tag",
        ),
        (
            "{auth: {secretRef: {name: 'Bad_Name'}}}",
            "spec.auth.secretRef.name",
            "not a valid object name",
        ),
        (
            "{resources: {requests: {cpu: '2'}, limits: {cpu: '1'}}}",
            "spec.resources.requests.cpu",
            "above the limit",
        ),
        (
            "{resources: {limits: {memory: lots}}}",
            "spec.resources.limits.memory",
            "not a Kubernetes quantity",
        ),
        (
            "{service: {annotations: {'-bad': x}}}",
            "spec.service.annotations[\"-bad\"]",
            "not a valid annotation key",
        ),
    ];
    for (spec, path, fragment) in cases {
        assert_one(&broker_errors(spec), path, fragment);
    }
}

#[test]
fn broker_valid_specs_pass() {
    for spec in [
        "{}",
        "{size: 3}",
        "{size: 1, clustering: {enabled: true}}",
        "{service: {type: LoadBalancer, loadBalancerClass: x, loadBalancerSourceRanges: ['10.0.0.0/8', '2001:db8::/32']}}",
        "{service: {externalEndpointOverride: '[::1]:4222'}}",
        "{service: {externalEndpointOverride: '192.0.2.1:30222'}}",
        "{image: 'registry.example.com:5000/team/nats', version: '2.10.24-alpine'}",
        "{tls: {enabled: true, secretName: broker-tls}, jetstream: {enabled: true, storageSize: 1.5Gi}}",
        "{config: {maxPayload: 64Mi, maxConnections: 10, debug: true}}",
        "{resources: {requests: {cpu: 500m}, limits: {cpu: '0.5'}}}",
    ] {
        assert_eq!(broker_errors(spec), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let errors = broker_errors(
        "{size: 12, tls: {enabled: true}, service: {type: ClusterIP, loadBalancerClass: x}}",
    );
    let paths: Vec<_> = errors
        .iter()
        .map(|e| e.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "spec.size",
            "spec.service.loadBalancerClass",
            "spec.tls.secretName"
        ]
    );
}

#[test]
fn names_that_would_overflow_derived_names_are_rejected() {
    let long = "b".repeat(53);
    let errors: Vec<_> = validate_broker(&broker_named(&long, "{}"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_one(&errors, "metadata.name", "at most 52");
    let errors: Vec<_> = validate_broker(&broker_named("1broker", "{}"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_one(&errors, "metadata.name", "starting with a letter");
    assert!(validate_broker(&broker_named(&"b".repeat(52), "{}")).is_empty());
}

#[test]
fn meshsync_broker_selection() {
    assert_one(
        &meshsync_errors("{}"),
        "spec.broker",
        "set broker.native.name",
    );
    assert_one(
        &meshsync_errors("{broker: {native: {name: b}, custom: {url: 'nats://x:4222'}}}"),
        "spec.broker",
        "keep exactly one",
    );
    // Go clients serialise empty structs: an empty custom next to a native broker is not "both".
    assert!(meshsync_errors("{broker: {native: {name: b, namespace: ''}, custom: {}}}").is_empty());
    assert!(
        meshsync_errors("{broker: {native: {name: ''}, custom: {url: 'nats://x'}}}").is_empty()
    );
    assert_one(
        &meshsync_errors("{broker: {native: {name: b, namespace: Meshery}}}"),
        "spec.broker.native.namespace",
        "not a namespace name",
    );
}

#[test]
fn meshsync_custom_urls() {
    for (url, fragment) in [
        ("http://x:4222", "scheme \"http\" is not supported"),
        ("nats://", "has no host"),
        ("nats://x:4222/path", "has a path"),
        ("nats://x:99999", "is not a URL"),
    ] {
        assert_one(
            &meshsync_errors(&format!("{{broker: {{custom: {{url: '{url}'}}}}}}")),
            "spec.broker.custom.url",
            fragment,
        );
    }
    for url in [
        "nats://x",
        "nats://user:pw@x:4222",
        "tls://10.0.0.1:4222",
        "nats://[::1]:4222",
    ] {
        assert!(
            meshsync_errors(&format!("{{broker: {{custom: {{url: '{url}'}}}}}}")).is_empty(),
            "{url}"
        );
    }
}

#[test]
fn watch_list_table() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "whitelist",
            "not json",
            "spec.watch-list.data.whitelist",
            "not a JSON array",
        ),
        (
            "whitelist",
            r#"{"Resource":"pods.v1."}"#,
            "spec.watch-list.data.whitelist",
            "not a JSON array",
        ),
        (
            "whitelist",
            r#"[{"Resource":"pods.v1.","Events":["ADDED","CREATED"]}]"#,
            "spec.watch-list.data.whitelist[0].Events[1]",
            "\"CREATED\" is not an event",
        ),
        (
            "whitelist",
            r#"[{"Resource":"pods.v1.","Events":[]}]"#,
            "spec.watch-list.data.whitelist[0].Events",
            "is empty",
        ),
        (
            "whitelist",
            r#"[{"Resource":"pods.v1."}]"#,
            "spec.watch-list.data.whitelist[0].Events",
            "non-empty array",
        ),
        (
            "whitelist",
            r#"[{"resource":"pods.v1.","Events":["ADDED"]}]"#,
            "spec.watch-list.data.whitelist[0].resource",
            "case-sensitive: use \"Resource\"",
        ),
        (
            "whitelist",
            r#"[{"Resource":"pods.v1","Events":["ADDED"]}]"#,
            "spec.watch-list.data.whitelist[0].Resource",
            "use \"pods.v1.\"",
        ),
        (
            "whitelist",
            r#"[{"Resource":"pod.v1.","Events":["ADDED"]}]"#,
            "spec.watch-list.data.whitelist[0].Resource",
            "\"pod\" is singular, use \"pods.v1.\"",
        ),
        (
            "whitelist",
            r#"[{"Resource":"Pods.v1.","Events":["ADDED"]}]"#,
            "spec.watch-list.data.whitelist[0].Resource",
            "lowercase",
        ),
        (
            "whitelist",
            r#"[{"Resource":"pods.1.","Events":["ADDED"]}]"#,
            "spec.watch-list.data.whitelist[0].Resource",
            "is not an API version",
        ),
        (
            "whitelist",
            r#"[{"Resource":"widgets.v1.apps","Events":["ADDED"]}]"#,
            "spec.watch-list.data.whitelist[0].Resource",
            "the apps group has no resource \"widgets\"",
        ),
        (
            "whitelist",
            r#"[{"Resource":"things.v1.nodots","Events":["ADDED"]}]"#,
            "spec.watch-list.data.whitelist[0].Resource",
            "is not an API group",
        ),
        (
            "whitelist",
            r#"[{"Resource":"pods.v1.","Events":["ADDED"]},{"Resource":"pods.v1.","Events":["DELETED"]}]"#,
            "spec.watch-list.data.whitelist[1].Resource",
            "listed twice",
        ),
        (
            "whitelist",
            r#"[{"Resource":"pods.v1.","Events":["ADDED"],"Extra":1}]"#,
            "spec.watch-list.data.whitelist[0].Extra",
            "unknown key",
        ),
        (
            "blacklist",
            r#"["secrets.v1.", 7]"#,
            "spec.watch-list.data.blacklist[1]",
            "must be a string",
        ),
        (
            "blacklist",
            r#"["secret.v1."]"#,
            "spec.watch-list.data.blacklist[0]",
            "use \"secrets.v1.\"",
        ),
        (
            "blacklist",
            "[nope",
            "spec.watch-list.data.blacklist",
            "not a JSON array of strings",
        ),
    ];
    for (key, json, path, fragment) in cases {
        assert_one(
            &meshsync_errors(&with_watch_list(key, json)),
            path,
            fragment,
        );
    }
}

#[test]
fn the_issue_example_message() {
    let whitelist = r#"[{"Resource":"pods.v1.","Events":["ADDED"]},{"Resource":"services.v1.","Events":["ADDED"]},{"Resource":"deployments.v1.apps","Events":["ADDED"]},{"Resource":"job.v1.batch","Events":["ADDED"]}]"#;
    assert_eq!(
        meshsync_errors(&with_watch_list("whitelist", whitelist)),
        [
            r#"spec.watch-list.data.whitelist[3].Resource: "job.v1.batch" is not <plural>.<version>.<group>: "job" is singular, use "jobs.v1.batch""#
        ]
    );
}

#[test]
fn whitelist_and_blacklist_together_are_rejected() {
    let spec = format!("{{{NATIVE}, watch-list: {{data: {{whitelist: '[]', blacklist: '[]'}}}}}}");
    assert_one(&meshsync_errors(&spec), "spec.watch-list.data", "keep one");
}

#[test]
fn custom_resource_groups_are_accepted_in_whitelists() {
    let spec = with_watch_list(
        "whitelist",
        r#"[{"Resource":"virtualservices.v1beta1.networking.istio.io","Events":["ADDED"]}]"#,
    );
    assert!(meshsync_errors(&spec).is_empty());
}

/// Pod options are checked with field paths: the operator's own pod labels and checksum cannot be
/// overridden, tolerations and spread constraints must be well-formed.
#[test]
fn bad_pod_options_are_named_by_field_path() {
    let pod = serde_json::json!({
        "nodeSelector": {"bad key!": "x"},
        "labels": {"app": "mine", "team": "not a label value"},
        "annotations": {"meshery.io/config-checksum": "0"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "value": "meshery"},
                        {"operator": "Equal", "value": "x"},
                        {"key": "k", "effect": "Sometimes"}],
        "topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "", "whenUnsatisfiable": "Maybe"}],
        "priorityClassName": "Not_A_Name",
        "imagePullSecrets": [{"name": ""}],
    });
    let errors = validate_broker(&broker(&format!("{{size: 1, pod: {pod}}}")));
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        r#"spec.pod.nodeSelector["bad key!"]"#,
        r#"spec.pod.labels["app"]"#,
        r#"spec.pod.labels["team"]"#,
        r#"spec.pod.annotations["meshery.io/config-checksum"]"#,
        "spec.pod.tolerations[0].value",
        "spec.pod.tolerations[1].operator",
        "spec.pod.tolerations[2].effect",
        "spec.pod.topologySpreadConstraints[0].maxSkew",
        "spec.pod.topologySpreadConstraints[0].topologyKey",
        "spec.pod.topologySpreadConstraints[0].whenUnsatisfiable",
        "spec.pod.priorityClassName",
        "spec.pod.imagePullSecrets[0].name",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {errors:#?}"
        );
    }
    let reserved = errors
        .iter()
        .find(|e| e.path == r#"spec.pod.labels["app"]"#)
        .unwrap();
    assert!(
        reserved.message.contains("the operator sets this key"),
        "{reserved:?}"
    );
}
