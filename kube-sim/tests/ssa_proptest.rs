//! Properties of server-side apply over random small Deployment configurations:
//! re-applying the same configuration is a no-op, and field sets round-trip through fieldsV1.

use std::collections::{BTreeMap, BTreeSet};

use kube_sim::list_keys::builtin_schema;
use kube_sim::ssa::{FieldSet, apply, field_set_of};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
struct Container {
    image: Option<String>,
    args: Vec<String>,
    env: BTreeMap<String, Option<String>>,
    ports: BTreeMap<u16, Option<&'static str>>,
}

fn container() -> impl Strategy<Value = Container> {
    (
        proptest::option::of("[a-z]{1,3}:[0-9]"),
        proptest::collection::vec("--[a-z]{1,4}", 0..3),
        proptest::collection::btree_map("[A-D]", proptest::option::of("[a-z0-9]{0,3}"), 0..3),
        proptest::collection::btree_map(
            1u16..5,
            proptest::option::of(prop_oneof![Just("TCP"), Just("UDP")]),
            0..3,
        ),
    )
        .prop_map(|(image, args, env, ports)| Container {
            image,
            args,
            env,
            ports,
        })
}

#[derive(Clone, Debug)]
struct Config {
    labels: BTreeMap<String, String>,
    annotations: Option<BTreeMap<String, String>>,
    finalizers: BTreeSet<String>,
    replicas: Option<u8>,
    containers: BTreeMap<String, Container>,
    tolerations: Option<Vec<String>>,
}

fn config() -> impl Strategy<Value = Config> {
    (
        proptest::collection::btree_map("[a-c]", "[a-z]{0,3}", 0..3),
        proptest::option::of(proptest::collection::btree_map(
            "[a-c]/[x-z]",
            "[a-z]{0,3}",
            0..3,
        )),
        proptest::collection::btree_set("meshery.io/[a-c]", 0..3),
        proptest::option::of(0u8..4),
        proptest::collection::btree_map("[a-c]", container(), 0..3),
        proptest::option::of(proptest::collection::vec("[a-c]", 0..3)),
    )
        .prop_map(
            |(labels, annotations, finalizers, replicas, containers, tolerations)| Config {
                labels,
                annotations,
                finalizers,
                replicas,
                containers,
                tolerations,
            },
        )
}

fn to_json(c: &Config) -> Value {
    let mut meta = json!({"name": "d", "namespace": "meshery"});
    if !c.labels.is_empty() {
        meta["labels"] = json!(c.labels);
    }
    if let Some(a) = &c.annotations {
        meta["annotations"] = json!(a);
    }
    if !c.finalizers.is_empty() {
        meta["finalizers"] = json!(c.finalizers);
    }
    let mut spec = json!({});
    if let Some(r) = c.replicas {
        spec["replicas"] = json!(r);
    }
    let mut pod = json!({});
    if !c.containers.is_empty() {
        let cs: Vec<Value> = c
            .containers
            .iter()
            .map(|(name, k)| {
                let mut v = json!({"name": name});
                if let Some(i) = &k.image {
                    v["image"] = json!(i);
                }
                if !k.args.is_empty() {
                    v["args"] = json!(k.args);
                }
                if !k.env.is_empty() {
                    v["env"] = Value::Array(
                        k.env
                            .iter()
                            .map(|(n, val)| match val {
                                Some(val) => json!({"name": n, "value": val}),
                                None => json!({"name": n}),
                            })
                            .collect(),
                    );
                }
                if !k.ports.is_empty() {
                    v["ports"] = Value::Array(
                        k.ports
                            .iter()
                            .map(|(p, proto)| match proto {
                                Some(proto) => json!({"containerPort": p, "protocol": proto}),
                                None => json!({"containerPort": p}),
                            })
                            .collect(),
                    );
                }
                v
            })
            .collect();
        pod["containers"] = Value::Array(cs);
    }
    if let Some(t) = &c.tolerations {
        pod["tolerations"] = Value::Array(t.iter().map(|k| json!({"key": k})).collect());
    }
    if pod.as_object().is_some_and(|p| !p.is_empty()) {
        spec["template"] = json!({"spec": pod});
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})
}

fn round_trips(obj: &Value) {
    if let Some(mf) = obj["metadata"]["managedFields"].as_array() {
        for e in mf {
            let fs = FieldSet::from_fields_v1(&e["fieldsV1"]);
            assert_eq!(fs.to_fields_v1(), e["fieldsV1"]);
            assert_eq!(FieldSet::try_from_fields_v1(&e["fieldsV1"]).unwrap(), fs);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Regressions live with the workspace's others, committed under proptest-regressions/.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../proptest-regressions/kube_sim_ssa_proptest.txt"),
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn reapplying_is_a_noop_and_field_sets_round_trip(c in config(), c2 in config()) {
        let s = builtin_schema("apps", "Deployment");
        let cfg = to_json(&c);
        let r = apply(None, &cfg, "meshery-operator", false, &*s, None, "2026-01-01T00:00:00Z").unwrap();
        round_trips(&r);
        let r2 = apply(Some(&r), &cfg, "meshery-operator", false, &*s, None, "2026-01-01T00:05:00Z").unwrap();
        prop_assert_eq!(serde_json::to_string(&r2).unwrap(), serde_json::to_string(&r).unwrap());

        // The applied configuration's own field set round-trips too.
        let fs = field_set_of(&cfg, &*s).unwrap();
        prop_assert_eq!(FieldSet::from_fields_v1(&fs.to_fields_v1()), fs);

        // A second manager forcing its configuration, then re-applying it, is a no-op as well,
        // and the first manager re-applying with force restores a stable state.
        let cfg2 = to_json(&c2);
        let r3 = apply(Some(&r), &cfg2, "meshery-server", true, &*s, None, "2026-01-01T00:10:00Z").unwrap();
        round_trips(&r3);
        let r4 = apply(Some(&r3), &cfg2, "meshery-server", false, &*s, None, "2026-01-01T00:15:00Z").unwrap();
        prop_assert_eq!(&r4, &r3);
        let r5 = apply(Some(&r4), &cfg, "meshery-operator", true, &*s, None, "2026-01-01T00:20:00Z").unwrap();
        let r6 = apply(Some(&r5), &cfg, "meshery-operator", false, &*s, None, "2026-01-01T00:25:00Z").unwrap();
        prop_assert_eq!(&r6, &r5);
        round_trips(&r6);
    }
}
