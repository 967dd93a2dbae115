//! The pure decisions of adopting CRs from the Go Meshery Operator (`meshery_operator::migrate`),
//! as tables and one property: no API server needed.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use meshery_operator::migrate::{
    Adoption, GO_BROKER_FINALIZER, GO_CONDITION_TYPES, GO_MESHSYNC_FINALIZER, GoChild, GoOperator,
    broker_adoption, carries_go_finalizer, go_broker_child_keys, go_children,
    go_conditions_removal, go_finalizers_removal, go_operator_state, go_token, meshsync_adoption,
};
use meshery_operator::object::Object;
use proptest::prelude::*;
use serde_json::{Value, json};

const BROKER_UID: &str = "broker-uid";

/// An object as the API server returns it, controlled by `owner` when given.
fn object(kind: &str, name: &str, owner: Option<&str>, labels: Value) -> Object {
    let api_version = if kind == "StatefulSet" || kind == "Deployment" {
        "apps/v1"
    } else {
        "v1"
    };
    let mut metadata = json!({"name": name, "namespace": "meshery", "uid": format!("{name}-uid"), "labels": labels});
    if let Some(owner) = owner {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "meshery.io/v1alpha1", "kind": "Broker", "name": "meshery-broker",
            "uid": owner, "controller": true,
        }]);
    }
    Object(json!({"apiVersion": api_version, "kind": kind, "metadata": metadata}))
}

fn go_made(kind: &str, name: &str) -> Object {
    object(
        kind,
        name,
        Some(BROKER_UID),
        json!({"app.kubernetes.io/name": "nats"}),
    )
}

fn child(kind: &str, name: &str) -> GoChild {
    let group = if kind == "StatefulSet" || kind == "Deployment" {
        "apps"
    } else {
        ""
    };
    GoChild {
        key: meshery_operator::object::ObjectKey {
            group: group.into(),
            kind: kind.into(),
            namespace: Some("meshery".into()),
            name: name.into(),
        },
        uid: format!("{name}-uid"),
    }
}

#[test]
fn a_cr_is_being_adopted_while_it_carries_a_go_finalizer() {
    for (finalizers, adopting) in [
        (vec![], false),
        (vec!["example.com/other"], false),
        (vec![GO_BROKER_FINALIZER], true),
        (vec!["example.com/other", GO_MESHSYNC_FINALIZER], true),
    ] {
        let finalizers: Vec<String> = finalizers.into_iter().map(String::from).collect();
        assert_eq!(
            carries_go_finalizer(&finalizers),
            adopting,
            "{finalizers:?}"
        );
    }
}

#[test]
fn only_objects_the_go_operator_made_for_this_cr_are_its_children() {
    let ours = object(
        "Deployment",
        "meshery-meshsync",
        Some(BROKER_UID),
        json!({"app.kubernetes.io/managed-by": "meshery-operator"}),
    );
    let found = [
        go_made("StatefulSet", "meshery-nats"),
        object("ConfigMap", "meshery-nats-config", None, json!({})),
        object("Service", "meshery-nats", Some("another-broker"), json!({})),
        ours,
    ];
    assert_eq!(
        go_children(&found, BROKER_UID),
        [child("StatefulSet", "meshery-nats")],
        "a look-alike owned by nobody, one owned by another CR and our own object are not the Go operator's"
    );
}

#[test]
fn the_go_nats_server_goes_only_once_ours_is_ready() {
    let found = [
        go_made("StatefulSet", "meshery-nats"),
        go_made("Service", "meshery-nats"),
    ];
    let both = vec![
        child("StatefulSet", "meshery-nats"),
        child("Service", "meshery-nats"),
    ];
    for (found, ours_ready, expected) in [
        (
            &found[..],
            false,
            Adoption::Waiting {
                children: both.clone(),
            },
        ),
        (
            &found[..],
            true,
            Adoption::Delete {
                children: both.clone(),
            },
        ),
        (&[][..], false, Adoption::Finish),
        (&[][..], true, Adoption::Finish),
    ] {
        assert_eq!(broker_adoption(found, BROKER_UID, ours_ready), expected);
    }
}

#[test]
fn the_go_meshsync_deployment_goes_at_once() {
    let found = [go_made("Deployment", "meshery-meshsync")];
    assert_eq!(
        meshsync_adoption(&found, BROKER_UID),
        Adoption::Delete {
            children: vec![child("Deployment", "meshery-meshsync")]
        }
    );
    assert_eq!(meshsync_adoption(&[], BROKER_UID), Adoption::Finish);
}

#[test]
fn the_go_children_are_looked_for_under_their_fixed_names_workload_first() {
    let keys: Vec<String> = go_broker_child_keys("meshery")
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "StatefulSet.apps meshery/meshery-nats",
            "Service meshery/meshery-nats",
            "Service meshery/meshery-nats-headless",
            "ConfigMap meshery/meshery-nats-config",
            "Secret meshery/meshery-nats-auth",
        ]
    );
}

#[test]
fn the_go_token_is_kept_only_from_this_brokers_secret() {
    let token = "t0123456789abcdef";
    let secret = |owner: Option<&str>, data: Value| {
        let mut s = object("Secret", "meshery-nats-auth", owner, json!({}));
        s.0["data"] = data;
        s
    };
    let encoded = json!({"token": "dDAxMjM0NTY3ODlhYmNkZWY="});
    assert_eq!(
        go_token(&secret(Some(BROKER_UID), encoded.clone()), BROKER_UID).as_deref(),
        Some(token)
    );
    assert_eq!(
        go_token(&secret(Some("other"), encoded.clone()), BROKER_UID),
        None
    );
    assert_eq!(go_token(&secret(None, encoded), BROKER_UID), None);
    assert_eq!(
        go_token(&secret(Some(BROKER_UID), json!({"token": ""})), BROKER_UID),
        None
    );
    assert_eq!(
        go_token(&secret(Some(BROKER_UID), json!({})), BROKER_UID),
        None
    );
}

fn condition(type_: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: "Reason".into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
    }
}

fn types(document: &Value) -> Vec<String> {
    document["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap().to_string())
        .collect()
}

fn applied(mut document: Value, patch: Value) -> Result<Value, json_patch::PatchError> {
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    json_patch::patch(&mut document, &patch)?;
    Ok(document)
}

#[test]
fn the_go_conditions_go_and_ours_stay_in_order() {
    let conditions = vec![
        condition("Processing"),
        condition("Ready"),
        condition("Failed"),
        condition("Degraded"),
    ];
    let document = json!({"status": {"conditions": conditions}});
    let patch = go_conditions_removal(&conditions).expect("Go conditions to remove");
    assert_eq!(
        types(&applied(document, patch.clone()).unwrap()),
        ["Ready", "Degraded"]
    );

    // Applied to a status that changed in between (an entry inserted before), the guard fails
    // instead of removing one of ours.
    let shifted = json!({"status": {"conditions": [condition("Stalled"), condition("Processing"), condition("Ready"), condition("Failed"), condition("Degraded")]}});
    assert!(applied(shifted, patch).is_err());

    assert_eq!(go_conditions_removal(&[condition("Ready")]), None);
}

#[test]
fn the_go_finalizer_goes_and_other_finalizers_stay() {
    let finalizers = vec![
        GO_BROKER_FINALIZER.to_string(),
        "example.com/keep".to_string(),
    ];
    let document = json!({"metadata": {"finalizers": finalizers}});
    let patch = go_finalizers_removal(&finalizers).unwrap();
    assert_eq!(
        applied(document, patch.clone()).unwrap()["metadata"]["finalizers"],
        json!(["example.com/keep"])
    );
    // Another client added a finalizer in between: the patch fails rather than dropping it.
    let changed = json!({"metadata": {"finalizers": [GO_BROKER_FINALIZER, "example.com/keep", "example.com/new"]}});
    assert!(applied(changed, patch).is_err());
    assert_eq!(
        go_finalizers_removal(&["example.com/keep".to_string()]),
        None
    );
}

fn lease(holder: Option<&str>, renewed_seconds_ago: i64, duration: i32) -> Lease {
    let now = jiff::Timestamp::from_second(1_000_000).unwrap();
    Lease {
        spec: Some(LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: Some(MicroTime(
                now - jiff::SignedDuration::from_secs(renewed_seconds_ago),
            )),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }),
        ..Lease::default()
    }
}

#[test]
fn the_go_operator_runs_while_a_holder_renews_its_lease_within_its_duration() {
    let now = jiff::Timestamp::from_second(1_000_000).unwrap();
    let running = GoOperator::Running {
        holder: "pod_1".into(),
    };
    for (lease, expected) in [
        (None, GoOperator::NotRunning),
        (Some(lease(Some("pod_1"), 3, 15)), running),
        (Some(lease(Some("pod_1"), 16, 15)), GoOperator::NotRunning),
        (Some(lease(None, 1, 15)), GoOperator::NotRunning),
        (Some(lease(Some(""), 1, 15)), GoOperator::NotRunning),
        (Some(Lease::default()), GoOperator::NotRunning),
    ] {
        assert_eq!(
            go_operator_state(lease.as_ref(), now),
            expected,
            "{lease:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever mix of conditions a CR carries, the patch removes exactly the Go operator's and
    /// keeps the others in their order.
    #[test]
    fn go_conditions_removal_keeps_exactly_the_others(
        picked in proptest::collection::vec(
            prop_oneof![
                Just("Ready"), Just("Degraded"), Just("Progressing"),
                Just("Processing"), Just("Failed"), Just("Cleanup"),
            ],
            0..8,
        )
    ) {
        let conditions: Vec<Condition> = picked.iter().map(|t| condition(t)).collect();
        let document = json!({"status": {"conditions": conditions}});
        let kept: Vec<String> = picked
            .iter()
            .filter(|t| !GO_CONDITION_TYPES.contains(t))
            .map(|t| t.to_string())
            .collect();
        match go_conditions_removal(&conditions) {
            None => prop_assert_eq!(kept.len(), picked.len()),
            Some(patch) => prop_assert_eq!(types(&applied(document, patch).unwrap()), kept),
        }
    }
}
