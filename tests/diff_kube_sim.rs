//! The diff engine's predictions checked against an independent model of server-side apply: the
//! kube-sim crate's `ssa::apply` / `ssa::record_update` (field ownership, merge by list keys, removal
//! of fields an applier stopped applying). What the plan says an apply will do is what it does.

mod diff_support;
#[allow(dead_code)]
mod support;

use diff_support::{MANAGER, mutate, owned_leaves};
use kube_sim::defaults;
use kube_sim::list_keys::builtin_schema;
use kube_sim::ssa;
use meshery_operator::diff::{Action, compare};
use meshery_operator::object::Object;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};
use support::strategies::{broker_case, meshsync_case};

const NOW: &str = "2026-11-23T12:00:00Z";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/diff_kube_sim.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// A forced server-side apply by `manager`, followed by the server's defaulting (a `fieldRef`'s
/// `apiVersion`, pod-template defaults, allocated IPs) and what the Secret strategy does on the
/// real server (fold `stringData` into base64 `data`).
fn server_apply(live: Option<&Object>, body: &Object, manager: &str) -> Object {
    let schema = builtin_schema(body.group(), body.kind());
    let mut result = ssa::apply(
        live.map(|o| &o.0),
        &body.0,
        manager,
        true,
        schema.as_ref(),
        None,
        NOW,
    )
    .unwrap_or_else(|e| panic!("apply of {} failed: {e:?}", body.key()));
    // Only the defaulting matters here: a repair may touch an immutable field such as `roleRef`,
    // which the operator handles by recreating (tested in the controller suites).
    defaults::default_builtin(
        body.group(),
        body.kind(),
        &mut result,
        live.map(|o| &o.0),
        &mut defaults::Allocator::default(),
    );
    if let Some(Value::Object(strings)) =
        result.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        let data = result
            .as_object_mut()
            .unwrap()
            .entry("data")
            .or_insert_with(|| json!({}));
        for (key, text) in strings {
            data[key] = json!(diff_support::base64(
                text.as_str().unwrap_or_default().as_bytes()
            ));
        }
    }
    Object(result)
}

/// A write by `manager` that is not an apply (kubectl edit, an HPA through /scale).
fn server_update(old: &Object, new: Value, manager: &str, subresource: Option<&str>) -> Object {
    let schema = builtin_schema(old.group(), old.kind());
    Object(ssa::record_update(
        Some(&old.0),
        &new,
        manager,
        schema.as_ref(),
        subresource,
        NOW,
    ))
}

fn content(object: &Object) -> Value {
    let mut value = object.0.clone();
    value["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    value
}

/// The plan's prediction, as the server would store it: a dropped field the server defaults (a
/// Service's `type`) comes back.
fn predicted(observed: &Object, patch: &json_patch::Patch) -> Object {
    let mut value = observed.0.clone();
    json_patch::patch(&mut value, patch).unwrap();
    defaults::default_builtin(
        observed.group(),
        observed.kind(),
        &mut value,
        Some(&observed.0),
        &mut defaults::Allocator::default(),
    );
    Object(value)
}

fn is_unchanged(action: &Action) -> bool {
    matches!(action, Action::Unchanged { .. })
}

/// Everything the real renderer produces for a random valid Broker or MeshSync.
fn rendered() -> impl Strategy<Value = Vec<Object>> {
    prop_oneof![
        broker_case().prop_map(|c| meshery_operator::render::desired_broker(&c.broker, &c.inputs)),
        meshsync_case()
            .prop_map(|c| meshery_operator::render::desired_meshsync(&c.meshsync, &c.inputs)),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rendered_objects_the_simulator_applied_plan_as_unchanged(desired in rendered()) {
        for object in &desired {
            let live = server_apply(None, object, MANAGER);
            let action = compare(object, &live, MANAGER);
            prop_assert!(is_unchanged(&action), "{}: {:?}", object.key(), action);
        }
    }

    #[test]
    fn a_repair_of_a_rendered_object_produces_the_predicted_object(desired in rendered(), object in any::<Index>(), leaf in any::<Index>()) {
        let target = object.get(&desired);
        let leaves = owned_leaves(target);
        let leaf = leaf.get(&leaves);
        let live = server_apply(None, target, MANAGER);
        let mut edited = live.0.clone();
        let Some(slot) = edited.pointer_mut(&leaf.pointer) else {
            return Ok(());
        };
        *slot = mutate(slot);
        let edited = server_update(&live, edited, "kubectl-edit", None);
        let Action::Update { apply_body, json_patch, .. } = compare(target, &edited, MANAGER) else {
            return Err(TestCaseError::fail(format!("{} edited at {} but not an Update", target.key(), leaf.pointer)));
        };
        let applied = server_apply(Some(&edited), &apply_body, MANAGER);
        prop_assert!(is_unchanged(&compare(target, &applied, MANAGER)));
        if leaf.removable {
            prop_assert_eq!(content(&predicted(&edited, &json_patch)), content(&applied));
        }
    }

    #[test]
    fn what_the_simulator_applied_plans_as_unchanged(desired in diff_support::desired_set()) {
        for object in &desired {
            let live = server_apply(None, object, MANAGER);
            let action = compare(object, &live, MANAGER);
            prop_assert!(is_unchanged(&action), "{}: {:?}", object.key(), action);
        }
    }

    /// Someone edits an owned field; applying the plan's body gives exactly the predicted object.
    #[test]
    fn a_repair_apply_produces_the_predicted_object(desired in diff_support::desired_set(), object in any::<Index>(), leaf in any::<Index>()) {
        let target = object.get(&desired);
        let leaves = owned_leaves(target);
        let leaf = leaf.get(&leaves);
        let live = server_apply(None, target, MANAGER);
        let mut edited = live.0.clone();
        let Some(slot) = edited.pointer_mut(&leaf.pointer) else {
            return Ok(());
        };
        *slot = mutate(slot);
        let edited = server_update(&live, edited, "kubectl-edit", None);
        let Action::Update { apply_body, json_patch, .. } = compare(target, &edited, MANAGER) else {
            return Err(TestCaseError::fail(format!("{} edited at {} but not an Update", target.key(), leaf.pointer)));
        };
        let applied = server_apply(Some(&edited), &apply_body, MANAGER);
        prop_assert!(is_unchanged(&compare(target, &applied, MANAGER)));
        if leaf.removable {
            prop_assert_eq!(content(&predicted(&edited, &json_patch)), content(&applied));
        }
    }

    /// A field dropped from desired: the apply removes exactly what the plan predicts.
    #[test]
    fn a_pruning_apply_produces_the_predicted_object(desired in diff_support::desired_set(), object in any::<Index>(), leaf in any::<Index>()) {
        let target = object.get(&desired);
        let removable: Vec<_> = owned_leaves(target).into_iter().filter(|l| l.removable).collect();
        prop_assume!(!removable.is_empty());
        let leaf = leaf.get(&removable);
        let live = server_apply(None, target, MANAGER);
        let mut reduced = target.clone();
        let (parent, name) = leaf.pointer.rsplit_once('/').unwrap();
        reduced.0.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(&name.replace("~1", "/").replace("~0", "~"));
        let Action::Update { apply_body, json_patch, .. } = compare(&reduced, &live, MANAGER) else {
            return Err(TestCaseError::fail(format!("{} dropped but not an Update", leaf.pointer)));
        };
        let applied = server_apply(Some(&live), &apply_body, MANAGER);
        prop_assert_eq!(content(&predicted(&live, &json_patch)), content(&applied));
        prop_assert!(is_unchanged(&compare(&reduced, &applied, MANAGER)));
    }

    /// Meshery Server's apply and an HPA's scaling of a workload rendered without replicas (an
    /// `autoscaled` MeshSync) are not drift, and the operator's next apply (for an unrelated
    /// change) leaves them in place; with replicas rendered, the scaling is drift and one apply
    /// restores them.
    #[test]
    fn other_managers_keep_their_fields_through_our_apply(desired in diff_support::desired_set(), tag in "v[0-9]\\.[0-9]\\.[0-9]") {
        let Some(rendered) = desired.iter().find(|o| o.kind() == "Deployment" || o.kind() == "StatefulSet") else {
            return Ok(());
        };
        let mut autoscaled = rendered.clone();
        autoscaled.0["spec"].as_object_mut().unwrap().remove("replicas");
        let deployment = &autoscaled;
        let live = server_apply(None, deployment, MANAGER);
        let container = deployment.0["spec"]["template"]["spec"]["containers"][0]["name"].clone();
        let meshery_server = Object(json!({
            "apiVersion": deployment.api_version(), "kind": deployment.kind(),
            "metadata": {"name": deployment.name(), "namespace": deployment.namespace()},
            "spec": {"template": {
                "metadata": {"annotations": {"meshery.io/restarted-at": "2026-11-23T11:00:00Z"}},
                "spec": {"containers": [{"name": container, "env": [{"name": "MESHSYNC_REDACT_SECRETS", "value": "true"}]}]}
            }}
        }));
        let live = server_apply(Some(&live), &meshery_server, "meshery-server");
        let mut scaled = live.0.clone();
        scaled["spec"]["replicas"] = json!(7);
        let live = server_update(&live, scaled, "kube-controller-manager", Some("scale"));
        let action = compare(deployment, &live, MANAGER);
        prop_assert!(is_unchanged(&action), "{:?}", action);
        if let Some(replicas) = rendered.0["spec"].get("replicas") {
            let Action::Update { apply_body, changed_paths, .. } = compare(rendered, &live, MANAGER) else {
                return Err(TestCaseError::fail("scaled replicas of a rendered workload are drift"));
            };
            prop_assert_eq!(changed_paths.len(), 1);
            let restored = server_apply(Some(&live), &apply_body, MANAGER);
            prop_assert_eq!(&restored.0["spec"]["replicas"], replicas);
        }

        let mut bumped = deployment.clone();
        bumped.0["spec"]["template"]["spec"]["containers"][0]["image"] = json!(format!("example/bumped:{tag}"));
        let Action::Update { apply_body, json_patch, changed_paths, .. } = compare(&bumped, &live, MANAGER) else {
            return Err(TestCaseError::fail("an image bump is an Update"));
        };
        prop_assert_eq!(changed_paths.len(), 1);
        let applied = server_apply(Some(&live), &apply_body, MANAGER);
        prop_assert_eq!(content(&predicted(&live, &json_patch)), content(&applied));
        prop_assert_eq!(&applied.0["spec"]["replicas"], &json!(7));
        let annotations = &applied.0["spec"]["template"]["metadata"]["annotations"];
        prop_assert_eq!(&annotations["meshery.io/restarted-at"], &json!("2026-11-23T11:00:00Z"));
        let env = applied.0["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
        prop_assert!(env.iter().any(|e| e["name"] == "MESHSYNC_REDACT_SECRETS"));
    }
}
