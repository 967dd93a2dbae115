//! Property tests of the diff engine against `simulate_apply`, a model of what the API server does
//! to an applied object (defaults, canonical quantities, status, managedFields, other managers).

mod diff_support;

use diff_support::*;
use meshery_operator::diff::{Action, compare, plan};
use meshery_operator::object::Object;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;

fn applied(desired: &[Object]) -> Vec<Object> {
    desired.iter().map(|d| simulate_apply(d).object).collect()
}

fn instance(desired: &[Object]) -> String {
    desired[0]
        .label("app.kubernetes.io/instance")
        .unwrap()
        .to_string()
}

fn paths(changed: &[meshery_operator::diff::FieldPath]) -> Vec<String> {
    changed.iter().map(ToString::to_string).collect()
}

fn patched(observed: &Object, patch: &json_patch::Patch) -> Object {
    let mut value = observed.0.clone();
    json_patch::patch(&mut value, patch).expect("the plan's patch applies to the observed object");
    Object(value)
}

/// 128 cases per property; failures are kept in `proptest-regressions/` and replayed first.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/diff_props.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Steady state: whatever the server added, nothing is planned.
    #[test]
    fn applied_objects_are_unchanged(desired in desired_set()) {
        let plan = plan(&desired, &applied(&desired), &owner(&instance(&desired)), MANAGER);
        prop_assert_eq!(plan.entries.len(), desired.len());
        for entry in &plan.entries {
            prop_assert!(matches!(entry.action, Action::Unchanged { .. }), "{}: {:?}", entry.key, entry.action);
        }
        prop_assert!(!plan.has_changes());
    }

    /// One owned leaf drifted: exactly that leaf is reported, and the patch repairs exactly it.
    #[test]
    fn a_mutated_owned_leaf_is_the_only_change(desired in desired_set(), object in any::<Index>(), leaf in any::<Index>()) {
        let target = object.get(&desired);
        let leaves = owned_leaves(target);
        let leaf = leaf.get(&leaves);
        let mut observed = simulate_apply(target).object;
        let slot = observed.0.pointer_mut(&leaf.pointer).expect("owned leaves exist on the applied object");
        *slot = mutate(slot);
        let Action::Update { changed_paths, json_patch, apply_body, .. } = compare(target, &observed, MANAGER) else {
            return Err(TestCaseError::fail(format!("{} at {} mutated but not an Update", target.key(), leaf.pointer)));
        };
        prop_assert_eq!(paths(&changed_paths), vec![leaf.reported.clone()]);
        prop_assert_eq!(&apply_body, target);
        for operation in json_patch.iter() {
            let path = operation.path().to_string();
            prop_assert!(path.starts_with(&leaf.scope), "{} outside {}", path, leaf.scope);
        }
        let repaired = patched(&observed, &json_patch);
        let action = compare(target, &repaired, MANAGER);
        prop_assert!(matches!(action, Action::Unchanged { .. }), "{:?}", action);
    }

    /// Several owned leaves drifted at once: applying the JSON patch gives an object whose owned
    /// fields equal the desired ones again.
    #[test]
    fn the_patch_restores_every_owned_field(desired in desired_set(), object in any::<Index>(), picks in prop::collection::vec(any::<Index>(), 1..5)) {
        let target = object.get(&desired);
        let leaves = owned_leaves(target);
        let mut observed = simulate_apply(target).object;
        for pick in &picks {
            if let Some(slot) = observed.0.pointer_mut(&pick.get(&leaves).pointer) {
                *slot = mutate(slot);
            }
        }
        if let Action::Update { json_patch, .. } = compare(target, &observed, MANAGER) {
            let repaired = patched(&observed, &json_patch);
            let action = compare(target, &repaired, MANAGER);
            prop_assert!(matches!(action, Action::Unchanged { .. }), "{:?}", action);
        }
    }

    /// Fields only the server or other managers own may change freely.
    #[test]
    fn foreign_fields_are_never_drift(desired in desired_set(), object in any::<Index>(), field in any::<Index>()) {
        let target = object.get(&desired);
        let applied = simulate_apply(target);
        let pointer = field.get(&applied.foreign);
        let mut observed = applied.object;
        let slot = observed.0.pointer_mut(pointer).expect("foreign fields exist on the applied object");
        *slot = mutate(slot);
        let action = compare(target, &observed, MANAGER);
        prop_assert!(matches!(action, Action::Unchanged { .. }), "{} changed: {:?}", pointer, action);
    }

    /// A field we applied before and no longer desire is planned for removal, and nothing else.
    #[test]
    fn a_field_no_longer_desired_is_removed(desired in desired_set(), object in any::<Index>(), leaf in any::<Index>()) {
        let target = object.get(&desired);
        let removable: Vec<OwnedLeaf> = owned_leaves(target).into_iter().filter(|l| l.removable).collect();
        prop_assume!(!removable.is_empty());
        let leaf = leaf.get(&removable);
        let observed = simulate_apply(target).object;
        let mut reduced = target.clone();
        let (parent, name) = leaf.pointer.rsplit_once('/').unwrap();
        reduced.0.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(&name.replace("~1", "/").replace("~0", "~"));
        let Action::Update { changed_paths, json_patch, .. } = compare(&reduced, &observed, MANAGER) else {
            return Err(TestCaseError::fail(format!("{} dropped but not an Update", leaf.pointer)));
        };
        prop_assert_eq!(paths(&changed_paths), vec![leaf.reported.clone()]);
        let operations: Vec<String> = json_patch.iter().map(|op| format!("{op}")).collect();
        prop_assert_eq!(operations.len(), 1);
        prop_assert!(patched(&observed, &json_patch).0.pointer(&leaf.pointer).is_none());
    }

    /// Dropping an object prunes it only when it carries our labels and this owner's UID.
    #[test]
    fn prune_requires_labels_and_owner(desired in desired_set(), object in any::<Index>(), tamper in 0u8..5) {
        let at = object.index(desired.len());
        let mut observed = applied(&desired);
        let dropped = &mut observed[at];
        let cluster_scoped = dropped.namespace().is_none();
        let metadata = dropped.0["metadata"].as_object_mut().unwrap();
        match tamper {
            1 => { metadata["labels"]["app.kubernetes.io/instance"] = Value::from("someone-else"); }
            2 => { metadata["labels"].as_object_mut().unwrap().remove("app.kubernetes.io/managed-by"); }
            3 if cluster_scoped => { metadata["labels"]["meshery.io/owner-uid"] = Value::from("another-uid"); }
            3 => { metadata["ownerReferences"][0]["uid"] = Value::from("another-uid"); }
            4 if !cluster_scoped => { metadata["ownerReferences"][0]["controller"] = Value::from(false); }
            _ => {}
        }
        let key = dropped.key();
        let mut remaining = desired.clone();
        remaining.remove(at);
        let plan = plan(&remaining, &observed, &owner(&instance(&desired)), MANAGER);
        let prunes: Vec<_> = plan.entries.iter().filter(|e| e.action == Action::Prune).map(|e| e.key.clone()).collect();
        let pruneable = tamper == 0 || (tamper == 4 && cluster_scoped);
        prop_assert_eq!(prunes, if pruneable { vec![key] } else { vec![] });
    }

    /// The plan depends only on the sets of objects, not on their order, and is ordered for apply.
    #[test]
    fn plans_are_deterministic_and_ordered(desired in desired_set(), rotate in any::<Index>(), leaf in any::<Index>()) {
        let mut observed = applied(&desired);
        let first = &mut observed[0];
        let leaves = owned_leaves(&desired[0]);
        let slot = first.0.pointer_mut(&leaf.get(&leaves).pointer).unwrap();
        *slot = mutate(slot);
        let owner = owner(&instance(&desired));
        let expected = plan(&desired, &observed, &owner, MANAGER);
        let mut shuffled_desired = desired.clone();
        shuffled_desired.reverse();
        let mut shuffled_observed = observed.clone();
        shuffled_observed.rotate_left(rotate.index(observed.len()));
        prop_assert_eq!(&plan(&shuffled_desired, &shuffled_observed, &owner, MANAGER), &expected);
        let kinds: Vec<&str> = expected.entries.iter().map(|e| e.key.kind.as_str()).collect();
        let order = [&["Secret"][..], &["ConfigMap"], &["ServiceAccount"], &["ClusterRole"], &["ClusterRoleBinding"], &["Service"], &["Deployment", "StatefulSet"], &["PodDisruptionBudget"]];
        let ranks: Vec<usize> = kinds.iter().map(|k| order.iter().position(|group| group.contains(k)).unwrap()).collect();
        prop_assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{:?}", kinds);
    }
}
