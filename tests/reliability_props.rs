//! Property tests for reliability: arbitrary JSON and YAML through parse → validate → render →
//! plan never panic, and prune deletes only what is provably this CR's.
//!
//! Case counts are explicit; failures persist to `proptest-regressions/reliability_props.txt`.

use std::collections::BTreeSet;

use meshery_operator::api::watch_list::WatchList;
use meshery_operator::api::{validate_broker, validate_meshsync};
use meshery_operator::cli::{CustomResource, parse_documents};
use meshery_operator::diff::{Action, Owner, plan};
use meshery_operator::object::Object;
use meshery_operator::render::{
    BrokerAuthInput, BrokerCredential, BrokerInputs, MeshSyncInputs, ResolvedBroker,
    desired_broker, desired_meshsync,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/reliability_props.txt",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzzing parse → validate → render → plan.

/// Field names of both specs (and some of their values' shapes), so generated objects reach deep.
const KEYS: &[&str] = &[
    "size",
    "version",
    "image",
    "service",
    "type",
    "annotations",
    "loadBalancerClass",
    "loadBalancerSourceRanges",
    "externalEndpointOverride",
    "auth",
    "secretRef",
    "name",
    "tls",
    "enabled",
    "secretName",
    "clustering",
    "jetstream",
    "storageClass",
    "storageSize",
    "resources",
    "requests",
    "limits",
    "cpu",
    "memory",
    "config",
    "maxPayload",
    "maxConnections",
    "debug",
    "trace",
    "networkPolicy",
    "allowedCIDRs",
    "recreateOnImmutableChange",
    "broker",
    "native",
    "namespace",
    "custom",
    "url",
    "watch-list",
    "data",
    "whitelist",
    "blacklist",
    "apiVersion",
    "kind",
    "metadata",
    "Resource",
    "Events",
];

/// Strings that mean something somewhere in the specs, and some that are hostile anywhere.
const STRINGS: &[&str] = &[
    "",
    "LoadBalancer",
    "ClusterIP",
    "NodePort",
    "nats",
    "2.10.24-alpine",
    "1Gi",
    "0",
    "-1",
    "64Mi",
    "1Ti",
    "100m",
    "10.0.0.0/8",
    "::/0",
    "10.0.0.0/99",
    "nats://n:4222",
    "tls://u:p@n:4222",
    "http://x",
    "nats://",
    "meshery-broker",
    "Meshery",
    "a_b",
    "host:4222",
    "[::1]:4222",
    ":0",
    "[{\"Resource\":\"pods.v1.\",\"Events\":[\"ADDED\"]}]",
    "[\"secrets.v1.\"]",
    "[{\"Resource\":",
    "[{\"Resource\":\"pod.v1.\",\"Events\":[\"ADDED\"]}]",
    "[null]",
    "{}",
    "[]",
    "\u{1f600}",
    "n\u{e4}ts",
    "\0",
    "${ENV}",
    "{{ x }}",
    "\n---\n",
    "'\"",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(3),
            Just(10),
            Just(11),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::sample::select(STRINGS).prop_map(|s| Value::String(s.into())),
        ".{0,40}".prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(String::from),
        1 => ".{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn cr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("meshery-broker".to_string()),
        "[a-z][a-z0-9-]{0,70}",
        ".{0,20}",
    ]
}

fn document() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("Broker"), Just("MeshSync")],
        cr_name(),
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(kind, name, spec, spec_is_object)| {
            // Half the time force the spec to be an object so validation and render are reached.
            let spec = match spec {
                Value::Object(_) => spec,
                other if spec_is_object => json!({"size": 1, "extra": other}),
                other => other,
            };
            json!({"apiVersion": "meshery.io/v1alpha1", "kind": kind,
                   "metadata": {"name": name, "namespace": "meshery", "uid": "uid-1", "generation": 1},
                   "spec": spec})
        })
}

fn broker_inputs() -> BrokerInputs {
    BrokerInputs {
        default_version: "2.10.24-alpine".into(),
        auth: BrokerAuthInput::Generated {
            token: format!("t{}", "a".repeat(64)),
        },
    }
}

fn meshsync_inputs() -> MeshSyncInputs {
    MeshSyncInputs {
        default_version: "v1.0.3".into(),
        broker: ResolvedBroker {
            scheme: "nats".into(),
            address: "meshery-broker.meshery.svc.cluster.local:4222".into(),
            credential: BrokerCredential::SecretKey {
                secret: "meshery-broker-auth".into(),
                key: "token".into(),
            },
            credential_revision: "r1".into(),
            tls_ca: None,
        },
        crd_uid: Some("crd-uid".into()),
    }
}

/// Parse → validate → render → plan; returns how far the document got.
fn pipeline(source: &str, text: &str) -> &'static str {
    let Ok(documents) = parse_documents(source, text) else {
        return "parse error";
    };
    let mut stage = "not a CR";
    for document in documents {
        let Ok(cr) = document.custom_resource() else {
            stage = "shape error";
            continue;
        };
        let (errors, desired, owner) = match cr {
            CustomResource::Broker(broker) => {
                let errors = validate_broker(&broker);
                let desired = errors
                    .is_empty()
                    .then(|| desired_broker(&broker, &broker_inputs()));
                (errors, desired, owner("Broker", &broker.metadata))
            }
            CustomResource::MeshSync(meshsync) => {
                let errors = validate_meshsync(&meshsync);
                let desired = errors
                    .is_empty()
                    .then(|| desired_meshsync(&meshsync, &meshsync_inputs()));
                (errors, desired, owner("MeshSync", &meshsync.metadata))
            }
        };
        for error in &errors {
            assert!(
                !error.path.is_empty(),
                "an error without a field path: {error}"
            );
        }
        let Some(desired) = desired else {
            stage = "invalid";
            continue;
        };
        // Every derived name is a valid object name.
        for object in &desired {
            assert!(
                !object.name().is_empty() && object.name().len() <= 253,
                "derived name {:?}",
                object.name()
            );
        }
        // Auth is always on: every rendered server config requires a credential.
        for object in desired.iter().filter(|o| o.kind() == "ConfigMap") {
            if let Some(conf) = object.get(&["data", "nats.conf"]).and_then(Value::as_str) {
                assert!(
                    conf.contains("authorization {"),
                    "a config without auth:\n{conf}"
                );
            }
        }
        let fresh = plan(&desired, &[], &owner, "meshery-operator");
        assert_eq!(fresh.counts().create, desired_keys(&desired).len());
        let again = plan(&desired, &desired, &owner, "meshery-operator");
        assert_eq!(again.counts().create, 0);
        assert_eq!(again.counts().prune, 0);
        stage = "rendered";
    }
    stage
}

fn desired_keys(desired: &[Object]) -> BTreeSet<String> {
    desired.iter().map(|o| o.key().to_string()).collect()
}

fn owner(kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Owner {
    Owner {
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary JSON objects shaped like CRs, sent as JSON text.
    #[test]
    fn arbitrary_json_crs_never_panic(document in document()) {
        let text = serde_json::to_string(&document).unwrap();
        pipeline("fuzz.json", &text);
    }

    /// The same objects as YAML text.
    #[test]
    fn arbitrary_yaml_crs_never_panic(document in document()) {
        let text = serde_norway::to_string(&document).unwrap();
        pipeline("fuzz.yaml", &text);
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary text (YAML-ish characters, multi-document separators, anchors, tags).
    #[test]
    fn arbitrary_text_never_panics(text in "([a-z:{}\\[\\],\"'\n -]|---|&a|\\*a|!!str|: |\t){0,80}") {
        pipeline("fuzz.yaml", &text);
    }

    /// Arbitrary watch-list strings straight into the watch-list parser.
    #[test]
    fn arbitrary_watch_lists_never_panic(
        whitelist in proptest::option::of(prop_oneof![".{0,60}", proptest::sample::select(STRINGS).prop_map(String::from)]),
        blacklist in proptest::option::of(prop_oneof![".{0,60}", proptest::sample::select(STRINGS).prop_map(String::from)]),
    ) {
        let _ = WatchList::parse(whitelist.as_deref(), blacklist.as_deref());
    }
}

/// The fuzzers reach every stage: generated documents are not all rejected at the door.
#[test]
fn the_fuzzed_documents_reach_render() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut stages = std::collections::BTreeMap::new();
    let strategy = document().prop_map(|mut d| {
        // Keep some documents close to valid: a plain spec for the first kind.
        if d["spec"].get("size").is_some() {
            d["spec"]["size"] = json!(1);
        }
        d
    });
    for i in 0..400 {
        let mut document = strategy.new_tree(&mut runner).unwrap().current();
        if i % 4 == 0 {
            document["metadata"]["name"] = json!("meshery-broker");
            document["spec"] = if document["kind"] == "Broker" {
                json!({"size": 1})
            } else {
                json!({"broker": {"native": {"name": "meshery-broker"}}})
            };
        }
        let stage = pipeline("f.json", &serde_json::to_string(&document).unwrap());
        *stages.entry(stage).or_insert(0) += 1;
    }
    println!("FUZZ| stages reached by 400 documents: {stages:?}");
    for stage in ["shape error", "invalid", "rendered"] {
        assert!(stages.contains_key(stage), "{stages:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Prune safety over random clusters.

const OUR_UID: &str = "uid-current";
/// The UID of a Broker of the same name that was deleted and recreated.
const STALE_UID: &str = "uid-deleted-and-recreated";
const FOREIGN_UID: &str = "uid-foreign";

#[derive(Clone, Debug)]
struct Generated {
    kind: &'static str,
    api_version: &'static str,
    namespaced: bool,
    name: &'static str,
    namespace: &'static str,
    managed_by: Option<&'static str>,
    instance: Option<&'static str>,
    owner_uid_label: Option<&'static str>,
    /// (uid, controller)
    owner_reference: Option<(&'static str, bool)>,
    desired: bool,
}

fn generated() -> impl Strategy<Value = Generated> {
    let kinds = proptest::sample::select(vec![
        ("ConfigMap", "v1", true),
        ("Secret", "v1", true),
        ("Service", "v1", true),
        ("StatefulSet", "apps/v1", true),
        ("PodDisruptionBudget", "policy/v1", true),
        ("ClusterRole", "rbac.authorization.k8s.io/v1", false),
        ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", false),
    ]);
    let uid = || proptest::sample::select(vec![OUR_UID, STALE_UID, FOREIGN_UID]);
    (
        kinds,
        proptest::sample::select(vec![
            "b",
            "b-config",
            "b-auth",
            "b-headless",
            "x",
            "meshery-meshsync-ns-b",
        ]),
        proptest::sample::select(vec!["ns", "other-ns"]),
        proptest::option::of(proptest::sample::select(vec![
            "meshery-operator",
            "helm",
            "Meshery-Operator",
        ])),
        proptest::option::of(proptest::sample::select(vec!["b", "c", "B"])),
        proptest::option::of(uid()),
        proptest::option::of((uid(), any::<bool>())),
        proptest::bool::weighted(0.3),
    )
        .prop_map(
            |(
                (kind, api_version, namespaced),
                name,
                namespace,
                managed_by,
                instance,
                owner_uid_label,
                owner_reference,
                desired,
            )| Generated {
                kind,
                api_version,
                namespaced,
                name,
                namespace,
                managed_by,
                instance,
                owner_uid_label,
                owner_reference,
                desired,
            },
        )
}

impl Generated {
    fn object(&self) -> Object {
        let mut labels = Map::new();
        if let Some(v) = self.managed_by {
            labels.insert("app.kubernetes.io/managed-by".into(), json!(v));
        }
        if let Some(v) = self.instance {
            labels.insert("app.kubernetes.io/instance".into(), json!(v));
        }
        if let Some(v) = self.owner_uid_label {
            labels.insert("meshery.io/owner-uid".into(), json!(v));
        }
        let mut metadata = json!({"name": self.name, "labels": labels});
        if self.namespaced {
            metadata["namespace"] = json!(self.namespace);
        }
        if let Some((uid, controller)) = self.owner_reference {
            metadata["ownerReferences"] = json!([{"apiVersion": "meshery.io/v1alpha1", "kind": "Broker",
                "name": "b", "uid": uid, "controller": controller}]);
        }
        Object(json!({"apiVersion": self.api_version, "kind": self.kind, "metadata": metadata}))
    }

    /// Provably this CR's: our labels, and our UID as controller (namespaced, same namespace) or
    /// as the owner-UID label (cluster-scoped).
    fn ours(&self) -> bool {
        self.managed_by == Some("meshery-operator")
            && self.instance == Some("b")
            && if self.namespaced {
                self.namespace == "ns" && self.owner_reference == Some((OUR_UID, true))
            } else {
                self.owner_uid_label == Some(OUR_UID)
            }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn prune_deletes_only_objects_that_are_ours_for_this_uid(
        cluster in prop::collection::vec(generated(), 0..24),
    ) {
        let owner = Owner { kind: "Broker".into(), name: "b".into(), namespace: "ns".into(), uid: OUR_UID.into() };
        // Observed: the first object of each key counts (as in the diff engine).
        let mut seen = BTreeSet::new();
        let cluster: Vec<Generated> = cluster.into_iter().filter(|g| seen.insert(g.object().key())).collect();
        let observed: Vec<Object> = cluster.iter().map(Generated::object).collect();
        let desired: Vec<Object> = cluster.iter().filter(|g| g.desired).map(Generated::object).collect();
        let result = plan(&desired, &observed, &owner, "meshery-operator");
        let pruned: BTreeSet<_> = result
            .entries
            .iter()
            .filter(|e| matches!(e.action, Action::Prune))
            .map(|e| e.key.clone())
            .collect();
        for g in &cluster {
            let key = g.object().key();
            let should = g.ours() && !g.desired;
            prop_assert_eq!(pruned.contains(&key), should, "{:?}", g);
        }
        // The same cluster planned for the CR's previous incarnation prunes none of the new one's.
        let stale_owner = Owner { uid: STALE_UID.into(), ..owner.clone() };
        let stale = plan(&[], &observed, &stale_owner, "meshery-operator");
        for entry in stale.entries.iter().filter(|e| matches!(e.action, Action::Prune)) {
            let g = cluster.iter().find(|g| g.object().key() == entry.key).unwrap();
            prop_assert!(!g.ours(), "the recreated CR's object pruned for the old UID: {:?}", g);
        }
        // And an owner without a UID (not read from the API server) prunes nothing.
        let no_uid = Owner { uid: String::new(), ..owner };
        prop_assert_eq!(plan(&[], &observed, &no_uid, "meshery-operator").counts().prune, 0);
    }
}
