//! The diff engine on what the real renderer produces for random valid CRs: applied objects plan as
//! unchanged, a drifted leaf is reported exactly, and no Secret value reaches any plan output.

mod diff_support;
#[allow(dead_code)]
mod support;

use diff_support::{MANAGER, base64, mutate, owned_leaves, simulate_apply};
use meshery_operator::cli::plan::{OutputFormat, OwnerPlan, format_plans};
use meshery_operator::diff::{Action, Owner, compare, plan};
use meshery_operator::object::Object;
use meshery_operator::render::{desired_broker, desired_meshsync};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use serde_json::json;
use support::strategies::{broker_case, meshsync_case};

/// 64 cases per property (rendering is the slow part); failures kept in `proptest-regressions/`.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/diff_render.txt",
        ))),
        ..ProptestConfig::default()
    }
}

fn owner(
    kind: &str,
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Owner {
    Owner {
        kind: kind.into(),
        name: metadata.name.clone().unwrap_or_default(),
        namespace: metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        uid: metadata.uid.clone().unwrap_or_default(),
    }
}

fn rendered(broker: bool) -> BoxedStrategy<(Owner, Vec<Object>, Vec<String>)> {
    let brokers = broker_case().prop_map(|case| {
        (
            owner("Broker", &case.broker.metadata),
            desired_broker(&case.broker, &case.inputs),
            case.secrets,
        )
    });
    let meshsyncs = meshsync_case().prop_map(|case| {
        (
            owner("MeshSync", &case.meshsync.metadata),
            desired_meshsync(&case.meshsync, &case.inputs),
            case.secrets,
        )
    });
    if broker {
        brokers.boxed()
    } else {
        meshsyncs.boxed()
    }
}

fn either() -> impl Strategy<Value = (Owner, Vec<Object>, Vec<String>)> {
    prop_oneof![rendered(true), rendered(false)]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rendered_children_once_applied_plan_as_unchanged((owner, desired, _) in either()) {
        let observed: Vec<Object> = desired.iter().map(|d| simulate_apply(d).object).collect();
        let plan = plan(&desired, &observed, &owner, MANAGER);
        for entry in &plan.entries {
            prop_assert!(matches!(entry.action, Action::Unchanged { .. }), "{}: {:?}", entry.key, entry.action);
        }
    }

    #[test]
    fn a_drifted_leaf_of_a_rendered_object_is_the_only_change((_, desired, _) in either(), object in any::<Index>(), leaf in any::<Index>()) {
        let target = object.get(&desired);
        let leaves = owned_leaves(target);
        let leaf = leaf.get(&leaves);
        let mut observed = simulate_apply(target).object;
        let slot = observed.0.pointer_mut(&leaf.pointer).unwrap();
        *slot = mutate(slot);
        let Action::Update { changed_paths, json_patch, .. } = compare(target, &observed, MANAGER) else {
            return Err(TestCaseError::fail(format!("{} at {} drifted but not an Update", target.key(), leaf.pointer)));
        };
        let reported: Vec<String> = changed_paths.iter().map(ToString::to_string).collect();
        prop_assert_eq!(reported, vec![leaf.reported.clone()]);
        let mut repaired = observed.0.clone();
        json_patch::patch(&mut repaired, &json_patch).unwrap();
        let action = compare(target, &Object(repaired), MANAGER);
        prop_assert!(matches!(action, Action::Unchanged { .. }), "{:?}", action);
    }

    #[test]
    fn no_secret_value_reaches_any_output((owner, desired, secrets) in either(), old in "t[0-9a-f]{64}") {
        let mut observed: Vec<Object> = desired.iter().map(|d| simulate_apply(d).object).collect();
        for object in observed.iter_mut().filter(|o| o.is_secret()) {
            for value in object.0["data"].as_object_mut().into_iter().flat_map(|d| d.values_mut()) {
                *value = json!(base64(old.as_bytes()));
            }
        }
        let mut forbidden: Vec<String> = secrets.iter().filter(|s| s.len() >= 8).cloned().collect();
        forbidden.extend(secrets.iter().map(|s| base64(s.as_bytes())).filter(|s| s.len() >= 8));
        forbidden.push(old.clone());
        forbidden.push(base64(old.as_bytes()));
        let plans = [
            OwnerPlan { owner: owner.clone(), plan: plan(&desired, &observed, &owner, MANAGER) },
            OwnerPlan { owner: owner.clone(), plan: plan(&desired, &[], &owner, MANAGER) },
        ];
        for format in [OutputFormat::Diff, OutputFormat::Patch, OutputFormat::Json] {
            let text = format_plans(&plans, &observed, format, true, false);
            for secret in &forbidden {
                prop_assert!(!text.contains(secret.as_str()), "{:?} output leaks {}", format, secret);
            }
        }
    }
}
