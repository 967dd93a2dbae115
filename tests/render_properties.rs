//! Properties of the renderer (and of validation, whose strategies it shares) over generated CRs.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;

use meshery_operator::api::watch_list::WatchList;
use meshery_operator::api::{validate_broker, validate_meshsync};
use meshery_operator::object::Object;
use meshery_operator::render::nats_conf::replica_host;
use meshery_operator::render::rbac::WATCH_VERBS;
use meshery_operator::render::{desired_broker, desired_meshsync, meshsync_cluster_rbac_name};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;
use support::strategies::{
    BrokerCase, broker_case, broker_name, invalid_broker, invalid_meshsync, meshsync_case,
};
use support::{find, nats_conf, strings};

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/render_properties.txt",
        ))),
        ..ProptestConfig::with_cases(96)
    }
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// The three ownership labels, and for namespaced objects a controller reference to the CR.
fn assert_owned(
    objects: &[Object],
    kind: &str,
    app_name: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    let name = meta.name.as_deref().unwrap();
    let uid = meta.uid.as_deref().unwrap_or_default();
    for object in objects {
        let key = object.key();
        assert_eq!(
            object.label("app.kubernetes.io/managed-by"),
            Some("meshery-operator"),
            "{key}"
        );
        assert_eq!(
            object.label("app.kubernetes.io/instance"),
            Some(name),
            "{key}"
        );
        assert_eq!(
            object.label("app.kubernetes.io/name"),
            Some(app_name),
            "{key}"
        );
        match object.namespace() {
            Some(namespace) => {
                assert_eq!(namespace, namespace_of(meta), "{key}");
                let references = object
                    .get(&["metadata", "ownerReferences"])
                    .and_then(Value::as_array)
                    .expect("ownerReferences");
                let controllers: Vec<&Value> = references
                    .iter()
                    .filter(|r| r["controller"] == true)
                    .collect();
                assert_eq!(controllers.len(), 1, "{key}");
                assert_eq!(controllers[0]["apiVersion"], "meshery.io/v1alpha1", "{key}");
                assert_eq!(controllers[0]["kind"], kind, "{key}");
                assert_eq!(controllers[0]["name"], name, "{key}");
                assert_eq!(controllers[0]["uid"], uid, "{key}");
                assert!(
                    object.name().starts_with(name),
                    "{key} is not derived from {name}"
                );
            }
            None => {
                assert_eq!(object.label("meshery.io/owner-uid"), Some(uid), "{key}");
                assert_eq!(object.controller_uid(), None, "{key}");
            }
        }
    }
}

fn keys(objects: &[Object]) -> BTreeSet<meshery_operator::object::ObjectKey> {
    objects.iter().map(Object::key).collect()
}

/// Whether any non-Secret object mentions one of the secret values.
fn leaks(objects: &[Object], secrets: &[String]) -> Option<String> {
    objects
        .iter()
        .filter(|o| !o.is_secret())
        .find_map(|object| {
            strings(&object.0)
                .into_iter()
                .find(|text| secrets.iter().any(|secret| text.contains(secret.as_str())))
                .map(|text| format!("{} contains a secret value in {text:?}", object.key()))
        })
}

/// `broker` renamed, for rendering a second CR beside it.
fn renamed(case: &BrokerCase, name: &str) -> BrokerCase {
    let mut other = case.clone();
    other.broker.metadata.name = Some(name.to_string());
    other
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_brokers_pass_validation(case in broker_case()) {
        let errors = validate_broker(&case.broker);
        prop_assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn invalid_brokers_are_rejected_with_field_paths((broker, rule) in invalid_broker()) {
        let errors = validate_broker(&broker);
        prop_assert!(!errors.is_empty(), "{rule} was accepted");
        prop_assert!(errors.iter().all(|e| !e.path.is_empty() && !e.message.is_empty()), "{errors:?}");
    }

    #[test]
    fn valid_meshsyncs_pass_validation(case in meshsync_case()) {
        let errors = validate_meshsync(&case.meshsync);
        prop_assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn invalid_meshsyncs_are_rejected_with_field_paths((meshsync, rule) in invalid_meshsync()) {
        let errors = validate_meshsync(&meshsync);
        prop_assert!(!errors.is_empty(), "{rule} was accepted");
        prop_assert!(errors.iter().all(|e| !e.path.is_empty() && !e.message.is_empty()), "{errors:?}");
    }

    #[test]
    fn broker_rendering_is_deterministic_and_owned(case in broker_case()) {
        let first = desired_broker(&case.broker, &case.inputs);
        let second = desired_broker(&case.broker, &case.inputs);
        prop_assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&second).unwrap());
        assert_owned(&first, "Broker", "meshery-broker", &case.broker.metadata);
        prop_assert_eq!(keys(&first).len(), first.len(), "object keys are unique");
    }

    #[test]
    fn brokers_with_different_names_never_collide(case in broker_case(), other in broker_name(), suffix in any::<bool>()) {
        let name = case.broker.metadata.name.clone().unwrap();
        // A name that extends the first with a suffix the renderer uses is the adversarial case.
        let other_name = if suffix { format!("{name}-headless") } else { other };
        prop_assume!(other_name != name);
        let other = renamed(&case, &other_name);
        prop_assume!(validate_broker(&other.broker).is_empty());
        let first = keys(&desired_broker(&case.broker, &case.inputs));
        let second = keys(&desired_broker(&other.broker, &other.inputs));
        prop_assert!(first.is_disjoint(&second), "{:?}", first.intersection(&second).collect::<Vec<_>>());
    }

    #[test]
    fn the_stateful_set_runs_size_replicas_and_routes_to_each_iff_clustered(case in broker_case()) {
        let objects = desired_broker(&case.broker, &case.inputs);
        let name = case.broker.metadata.name.as_deref().unwrap();
        let stateful_set = find(&objects, "StatefulSet", name);
        let size = case.broker.spec.size;
        prop_assert_eq!(stateful_set.get(&["spec", "replicas"]), Some(&Value::from(size)));
        let conf = nats_conf(&objects);
        let env = stateful_set.get(&["spec", "template", "spec", "containers"]).unwrap()[0]["env"].clone();
        let route_env: Vec<(String, String)> = env
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"].as_str().unwrap().starts_with("NATS_ROUTE_"))
            .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
            .collect();
        if case.broker.spec.clustered() {
            prop_assert!(conf.contains("cluster {"), "{}", conf);
            prop_assert_eq!(route_env.len(), size as usize);
            for ordinal in 0..size {
                let host = format!("{}:6222", replica_host(&case.broker, ordinal));
                let variable = format!("NATS_ROUTE_{ordinal}");
                prop_assert!(conf.contains(&format!("${variable} # {host}")), "{}", conf);
                let (_, url) = route_env.iter().find(|(n, _)| *n == variable).expect("route env");
                prop_assert!(url.starts_with("nats://") && url.ends_with(&format!("@{host}")) || url == &format!("nats://{host}"), "{}", url);
            }
        } else {
            prop_assert!(!conf.contains("cluster {") && !conf.contains("NATS_ROUTE"), "{}", conf);
            prop_assert!(route_env.is_empty());
        }
    }

    #[test]
    fn broker_secrets_stay_in_secrets(case in broker_case()) {
        let objects = desired_broker(&case.broker, &case.inputs);
        prop_assert_eq!(leaks(&objects, &case.secrets), None);
    }

    #[test]
    fn meshsync_rendering_is_deterministic_and_owned(case in meshsync_case()) {
        let first = desired_meshsync(&case.meshsync, &case.inputs);
        let second = desired_meshsync(&case.meshsync, &case.inputs);
        prop_assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&second).unwrap());
        assert_owned(&first, "MeshSync", "meshery-meshsync", &case.meshsync.metadata);
        prop_assert_eq!(keys(&first).len(), first.len(), "object keys are unique");
        let rbac_name = meshsync_cluster_rbac_name(&case.meshsync);
        let cluster_scoped: Vec<&str> = first.iter().filter(|o| o.namespace().is_none()).map(Object::name).collect();
        prop_assert_eq!(cluster_scoped, vec![rbac_name.as_str(), rbac_name.as_str()]);
    }

    #[test]
    fn meshsyncs_with_different_names_never_collide(case in meshsync_case(), other in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?") {
        prop_assume!(Some(&other) != case.meshsync.metadata.name.as_ref());
        let mut renamed = case.meshsync.clone();
        renamed.metadata.name = Some(other);
        let first = keys(&desired_meshsync(&case.meshsync, &case.inputs));
        let second = keys(&desired_meshsync(&renamed, &case.inputs));
        prop_assert!(first.is_disjoint(&second), "{:?}", first.intersection(&second).collect::<Vec<_>>());
    }

    #[test]
    fn the_watch_list_config_map_parses_back_to_the_same_list(case in meshsync_case()) {
        let objects = desired_meshsync(&case.meshsync, &case.inputs);
        let name = case.meshsync.metadata.name.as_deref().unwrap();
        let data = find(&objects, "ConfigMap", &format!("{name}-watch-list")).get(&["data"]).cloned().unwrap();
        let rendered = WatchList::parse(data["whitelist"].as_str(), data["blacklist"].as_str()).expect("the rendered list parses");
        let (whitelist, blacklist) = case.meshsync.spec.watch_list_data();
        let specified = WatchList::parse(whitelist, blacklist).expect("valid specs parse");
        prop_assert_eq!(rendered, specified);
    }

    #[test]
    fn the_cluster_role_grants_exactly_what_meshsync_needs(case in meshsync_case()) {
        let objects = desired_meshsync(&case.meshsync, &case.inputs);
        let name = case.meshsync.metadata.name.as_deref().unwrap();
        let role = find(&objects, "ClusterRole", &meshsync_cluster_rbac_name(&case.meshsync));
        // Every grant as (group, resource, verb, resource name).
        let mut granted = BTreeSet::new();
        for rule in role.get(&["rules"]).and_then(Value::as_array).unwrap() {
            prop_assert!(rule.get("nonResourceURLs").is_none(), "{}", rule);
            let names: Vec<Option<String>> = match rule["resourceNames"].as_array() {
                Some(names) => names.iter().map(|n| Some(n.as_str().unwrap().to_string())).collect(),
                None => vec![None],
            };
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        for resource_name in &names {
                            granted.insert((group.as_str().unwrap().to_string(), resource.as_str().unwrap().to_string(), verb.as_str().unwrap().to_string(), resource_name.clone()));
                        }
                    }
                }
            }
        }
        let (whitelist, blacklist) = case.meshsync.spec.watch_list_data();
        let watched = WatchList::parse(whitelist, blacklist).unwrap().watched_resources();
        let mut expected: BTreeSet<(String, String, String, Option<String>)> = watched
            .iter()
            .flat_map(|r| WATCH_VERBS.iter().map(move |verb| (r.group.clone(), r.plural.clone(), verb.to_string(), None)))
            .collect();
        for verb in ["list", "watch"] {
            expected.insert(("apiextensions.k8s.io".into(), "customresourcedefinitions".into(), verb.into(), None));
        }
        expected.insert(("meshery.io".into(), "meshsyncs".into(), "get".into(), Some(name.to_string())));
        // Meshery UI's log streaming and terminal, as spec.podAccess allows (both by default).
        let access = case.meshsync.spec.pod_access_grants();
        if access.logs {
            expected.insert(("".into(), "pods/log".into(), "get".into(), None));
        }
        if access.exec {
            for verb in ["create", "get"] {
                expected.insert(("".into(), "pods/exec".into(), verb.into(), None));
            }
        }
        prop_assert!(granted.iter().all(|(_, resource, verb, _)| resource != "*" && verb != "*"));
        prop_assert_eq!(granted, expected);
    }

    #[test]
    fn meshsync_secrets_stay_in_secrets(case in meshsync_case()) {
        let objects = desired_meshsync(&case.meshsync, &case.inputs);
        prop_assert_eq!(leaks(&objects, &case.secrets), None);
        let copies = objects.iter().filter(|o| o.is_secret()).count();
        let copied = matches!(case.inputs.broker.credential, meshery_operator::render::BrokerCredential::Copy { .. });
        prop_assert_eq!(copies, usize::from(copied));
    }
}
