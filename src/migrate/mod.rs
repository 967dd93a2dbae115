//! Taking over from the Go Meshery Operator (v1.0.5): what it leaves in a cluster, and the pure
//! decisions of adopting a CR it managed. The I/O is `controller::adopt`; the facts are in
//! `meshery-compat.md` and were checked against the real Go operator (tests/migration.rs).
//!
//! The rules: a CR that still carries a Go finalizer is being adopted. Its Go children — only
//! those whose controller ownerReference is that CR — go once ours can take their place: the
//! Broker's NATS objects when our StatefulSet is Ready (so two NATS servers run side by side for no
//! longer than a rollout), the MeshSync Deployment (whose selector cannot change) at once. Then
//! the Go operator's status conditions and its finalizer go, in that order, and the CR is ours.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::{Value, json};

use crate::object::{Object, ObjectKey};
use crate::render::labels::{MANAGED_BY, MANAGED_BY_LABEL};

pub const GO_BROKER_FINALIZER: &str = "broker.meshery.io/finalizer";
pub const GO_MESHSYNC_FINALIZER: &str = "meshsync.meshery.io/finalizer";
pub const GO_FINALIZERS: [&str; 2] = [GO_BROKER_FINALIZER, GO_MESHSYNC_FINALIZER];

/// The Go operator's leader-election Lease, in the namespace of its `--namespace` flag.
pub const GO_LEASE_NAME: &str = "meshery-operator-leader.meshery.io";

/// The Go operator's Broker token Secret (key `token`), also mirrored into a MeshSync's namespace.
pub const GO_TOKEN_SECRET: &str = "meshery-nats-auth";

/// The Go operator's fixed-name Broker children (kind, name), the workload first: once it is gone
/// nothing serves behind the Services, and the Secret goes last.
pub const GO_BROKER_CHILDREN: [(&str, &str, &str); 5] = [
    ("apps", "StatefulSet", "meshery-nats"),
    ("", "Service", "meshery-nats"),
    ("", "Service", "meshery-nats-headless"),
    ("", "ConfigMap", "meshery-nats-config"),
    ("", "Secret", GO_TOKEN_SECRET),
];

/// Condition types only the Go operator writes (`Processing` is never cleared, `Failed` lingers
/// beside `Ready`): left on an adopted CR they would tell a false story.
pub const GO_CONDITION_TYPES: [&str; 3] = ["Processing", "Failed", "Cleanup"];

/// Whether a CR was managed by the Go operator and is not adopted yet.
pub fn carries_go_finalizer(finalizers: &[String]) -> bool {
    finalizers
        .iter()
        .any(|f| GO_FINALIZERS.contains(&f.as_str()))
}

/// The keys of the Go operator's Broker children in `namespace`.
pub fn go_broker_child_keys(namespace: &str) -> Vec<ObjectKey> {
    GO_BROKER_CHILDREN
        .iter()
        .map(|(group, kind, name)| key(group, kind, namespace, name))
        .collect()
}

/// The keys that may hold a MeshSync's Go children: its Deployment (named after the CR) and the
/// token Secret the Go operator mirrors into its namespace.
pub fn go_meshsync_child_keys(namespace: &str, name: &str) -> Vec<ObjectKey> {
    vec![
        key("apps", "Deployment", namespace, name),
        key("", "Secret", namespace, GO_TOKEN_SECRET),
    ]
}

fn key(group: &str, kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        group: group.into(),
        kind: kind.into(),
        namespace: Some(namespace.into()),
        name: name.into(),
    }
}

/// A Go child to delete, with the UID the delete is conditioned on (so a same-named object made
/// in between is never hit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoChild {
    pub key: ObjectKey,
    pub uid: String,
}

/// The next step of adopting one CR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// The Go children keep serving until ours are Ready.
    Waiting { children: Vec<GoChild> },
    /// Delete these Go children now.
    Delete { children: Vec<GoChild> },
    /// No Go child is left: clear the Go conditions and the finalizer.
    Finish,
}

/// The objects among `found` that the Go operator made for the CR with `owner_uid`: its
/// controller ownerReference names that CR and they do not carry our managed-by label (our
/// MeshSync Deployment has the Go one's name). Objects with look-alike names and another owner
/// (or none) are not the Go operator's and are never touched.
pub fn go_children(found: &[Object], owner_uid: &str) -> Vec<GoChild> {
    found
        .iter()
        .filter(|o| o.controller_uid() == Some(owner_uid))
        .filter(|o| o.label(MANAGED_BY_LABEL) != Some(MANAGED_BY))
        .filter_map(|o| {
            let uid = o.get(&["metadata", "uid"])?.as_str()?;
            Some(GoChild {
                key: o.key(),
                uid: uid.into(),
            })
        })
        .collect()
}

/// A Broker's next step: its Go NATS objects go once `ours_ready` (our StatefulSet and Services
/// are current), never before, so clients always have a server.
pub fn broker_adoption(found: &[Object], owner_uid: &str, ours_ready: bool) -> Adoption {
    let children = go_children(found, owner_uid);
    match (children.is_empty(), ours_ready) {
        (true, _) => Adoption::Finish,
        (false, true) => Adoption::Delete { children },
        (false, false) => Adoption::Waiting { children },
    }
}

/// A MeshSync's next step, before ours is applied: the Go Deployment blocks ours (a Deployment's
/// selector is immutable, and ours differs) and the mirrored token Secret is not ours, so both go
/// at once; MeshSync is stateless and re-lists the cluster when it starts.
pub fn meshsync_adoption(found: &[Object], owner_uid: &str) -> Adoption {
    let children = go_children(found, owner_uid);
    if children.is_empty() {
        Adoption::Finish
    } else {
        Adoption::Delete { children }
    }
}

/// The token a Broker adopted from the Go operator keeps, so MeshSync and every connected client
/// stay authorized: the `token` of its `meshery-nats-auth` Secret, when that Secret is the Broker's.
pub fn go_token(secret: &Object, owner_uid: &str) -> Option<String> {
    if !secret.is_secret() || secret.controller_uid() != Some(owner_uid) {
        return None;
    }
    let encoded = secret.get(&["data", "token"])?.as_str()?;
    let bytes = crate::diff::decode_base64(encoded)?;
    let token = String::from_utf8(bytes).ok()?;
    (!token.is_empty()).then_some(token)
}

/// A JSON patch (RFC 6902, as a JSON array) removing the Go operator's conditions from a CR's
/// status, each guarded by a test of its type so a concurrent change makes the patch fail instead
/// of removing the wrong one.
pub fn go_conditions_removal(conditions: &[Condition]) -> Option<Value> {
    let operations: Vec<Value> = conditions
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, c)| GO_CONDITION_TYPES.contains(&c.type_.as_str()))
        .flat_map(|(index, condition)| {
            let path = format!("/status/conditions/{index}");
            [
                json!({"op": "test", "path": format!("{path}/type"), "value": condition.type_}),
                json!({"op": "remove", "path": path}),
            ]
        })
        .collect();
    (!operations.is_empty()).then_some(Value::Array(operations))
}

/// A JSON patch taking the Go finalizers off a CR, guarded by a test of the whole list so another
/// client's finalizer added in between is never lost.
pub fn go_finalizers_removal(finalizers: &[String]) -> Option<Value> {
    if !carries_go_finalizer(finalizers) {
        return None;
    }
    let kept: Vec<&String> = finalizers
        .iter()
        .filter(|f| !GO_FINALIZERS.contains(&f.as_str()))
        .collect();
    Some(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]))
}

/// Whether the Go operator is running, as its Lease tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoOperator {
    /// No Lease, or one nobody holds or renews any more: reconciling is safe.
    NotRunning,
    /// A holder renewed the Lease within its duration: two operators would fight over the CRs.
    Running { holder: String },
}

/// The Go operator's state at `now`. Its Lease is not released when it stops, so a stopped one
/// counts as running until the Lease expires (15 s after its last renewal with the defaults).
pub fn go_operator_state(lease: Option<&Lease>, now: jiff::Timestamp) -> GoOperator {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return GoOperator::NotRunning;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    match renewed {
        Some(renewed)
            if !holder.is_empty() && renewed + jiff::SignedDuration::from_secs(duration) > now =>
        {
            GoOperator::Running { holder }
        }
        _ => GoOperator::NotRunning,
    }
}
