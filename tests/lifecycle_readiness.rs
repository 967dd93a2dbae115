//! Table tests for child readiness: one row per kstatus rule, each with the verdict and the message a
//! person reads in the CR's conditions.

use meshery_operator::lifecycle::{Readiness, child_readiness, readiness_reasons as r};
use meshery_operator::object::Object;
use serde_json::{Value, json};

/// What a row expects: `Current`, `LoadBalancerPending`, or a reason with (part of) its message.
#[derive(Debug)]
enum Want {
    Current,
    LoadBalancerPending,
    InProgress(&'static str, &'static str),
    Failed(&'static str, &'static str),
}

fn check(name: &str, object: Value, want: Want) {
    let got = child_readiness(&Object(object));
    let ok = match (&want, &got) {
        (Want::Current, Readiness::Current) => true,
        (Want::LoadBalancerPending, Readiness::LoadBalancerPending { message }) => {
            message.contains("no ingress")
        }
        (
            Want::InProgress(reason, text),
            Readiness::InProgress {
                reason: got_reason,
                message,
            },
        )
        | (
            Want::Failed(reason, text),
            Readiness::Failed {
                reason: got_reason,
                message,
            },
        ) => reason == got_reason && message.contains(text),
        _ => false,
    };
    assert!(ok, "{name}: wanted {want:?}, got {got:?}");
}

/// A Deployment whose controller has caught up completely (kstatus: Current).
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "meshery-meshsync", "namespace": "meshery", "generation": 2},
        "spec": {"replicas": 3, "progressDeadlineSeconds": 600},
        "status": {
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ]
        }
    })
}

/// A StatefulSet fully rolled out to its update revision.
fn stateful_set() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "meshery-broker", "namespace": "meshery", "generation": 4},
        "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
        "status": {
            "observedGeneration": 4, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3,
            "availableReplicas": 3, "currentRevision": "meshery-broker-7d9", "updateRevision": "meshery-broker-7d9"
        }
    })
}

fn service(service_type: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "meshery-broker", "namespace": "meshery"},
        "spec": {"type": service_type, "clusterIP": "10.96.0.12"}
    })
}

/// Applies `edit` to a copy of `base`.
fn with(mut base: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut base);
    base
}

#[test]
fn generic_rules() {
    let rows = [
        (
            "deleting",
            with(deployment(), |d| {
                d["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")
            }),
            Want::InProgress(r::TERMINATING, "being deleted"),
        ),
        (
            "observedGeneration lags",
            with(deployment(), |d| {
                d["status"]["observedGeneration"] = json!(1)
            }),
            Want::InProgress(
                r::LATEST_GENERATION_NOT_OBSERVED,
                "generation 2 not yet observed (its controller is at 1)",
            ),
        ),
        (
            "Deployment never observed",
            with(deployment(), |d| d["status"] = json!({})),
            Want::InProgress(r::LATEST_GENERATION_NOT_OBSERVED, "not yet observed"),
        ),
        (
            "StatefulSet never observed",
            with(stateful_set(), |s| {
                s.as_object_mut().unwrap().remove("status");
            }),
            Want::InProgress(r::LATEST_GENERATION_NOT_OBSERVED, "not yet observed"),
        ),
        (
            "PDB generation lags",
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b", "generation": 3}, "status": {"observedGeneration": 2}}),
            Want::InProgress(r::LATEST_GENERATION_NOT_OBSERVED, "generation 3"),
        ),
        (
            "PDB observed",
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b", "generation": 3}, "status": {"observedGeneration": 3}}),
            Want::Current,
        ),
        (
            "ConfigMap exists",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            Want::Current,
        ),
        (
            "Secret exists",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
            Want::Current,
        ),
        (
            "ServiceAccount exists",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}),
            Want::Current,
        ),
        (
            "ClusterRole exists",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cr"}}),
            Want::Current,
        ),
        (
            "ClusterRoleBinding exists",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "crb"}}),
            Want::Current,
        ),
        (
            "NetworkPolicy exists",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np", "generation": 1}}),
            Want::Current,
        ),
    ];
    for (name, object, want) in rows {
        check(name, object, want);
    }
}

#[test]
fn deployment_rules() {
    let rows = [
        ("rolled out", deployment(), Want::Current),
        (
            "progress deadline exceeded",
            with(
                deployment(),
                |d| d["status"]["conditions"][1] = json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"m-5c\" has timed out progressing."}),
            ),
            Want::Failed(
                r::PROGRESS_DEADLINE_EXCEEDED,
                "progress deadline exceeded: ReplicaSet \"m-5c\" has timed out progressing.",
            ),
        ),
        (
            "deadline loses to a generation lag",
            with(deployment(), |d| {
                d["status"]["observedGeneration"] = json!(1);
                d["status"]["conditions"][1] = json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"});
            }),
            Want::InProgress(r::LATEST_GENERATION_NOT_OBSERVED, "generation 2"),
        ),
        (
            "too few replicas",
            with(deployment(), |d| d["status"]["replicas"] = json!(2)),
            Want::InProgress(r::LESS_REPLICAS, "2/3 replicas created"),
        ),
        (
            "too few updated",
            with(deployment(), |d| d["status"]["updatedReplicas"] = json!(1)),
            Want::InProgress(r::LESS_UPDATED, "1/3 replicas updated"),
        ),
        (
            "old replicas terminating",
            with(deployment(), |d| d["status"]["replicas"] = json!(4)),
            Want::InProgress(
                r::EXTRA_PODS,
                "4/3 replicas exist, old ones still terminating",
            ),
        ),
        (
            "too few available",
            with(deployment(), |d| {
                d["status"]["availableReplicas"] = json!(2)
            }),
            Want::InProgress(r::LESS_AVAILABLE, "2/3 replicas available"),
        ),
        (
            "too few ready",
            with(deployment(), |d| d["status"]["readyReplicas"] = json!(2)),
            Want::InProgress(r::LESS_READY, "2/3 replicas ready"),
        ),
        (
            "zero counts omitted",
            with(deployment(), |d| {
                d["status"].as_object_mut().unwrap().remove("readyReplicas");
            }),
            Want::InProgress(r::LESS_READY, "0/3 replicas ready"),
        ),
        (
            "spec.replicas defaults to 1",
            with(deployment(), |d| {
                d["spec"].as_object_mut().unwrap().remove("replicas");
                d["status"]["replicas"] = json!(1);
                d["status"]["updatedReplicas"] = json!(1);
                d["status"]["readyReplicas"] = json!(1);
                d["status"]["availableReplicas"] = json!(1);
            }),
            Want::Current,
        ),
        (
            "new ReplicaSet not available",
            with(deployment(), |d| {
                d["status"]["conditions"][1]["reason"] = json!("ReplicaSetUpdated")
            }),
            Want::InProgress(r::REPLICA_SET_NOT_AVAILABLE, "new ReplicaSet"),
        ),
        (
            "no progress deadline: no Progressing needed",
            with(deployment(), |d| {
                d["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("progressDeadlineSeconds");
                d["status"]["conditions"] = json!([{"type": "Available", "status": "True"}]);
            }),
            Want::Current,
        ),
        (
            "not Available",
            with(deployment(), |d| {
                d["status"]["conditions"][0]["status"] = json!("False")
            }),
            Want::InProgress(r::DEPLOYMENT_NOT_AVAILABLE, "not yet Available"),
        ),
    ];
    for (name, object, want) in rows {
        check(name, object, want);
    }
}

#[test]
fn stateful_set_rules() {
    let rows = [
        ("rolled out", stateful_set(), Want::Current),
        (
            "too few replicas",
            with(stateful_set(), |s| s["status"]["replicas"] = json!(1)),
            Want::InProgress(r::LESS_REPLICAS, "1/3 replicas created"),
        ),
        (
            "too few ready",
            with(stateful_set(), |s| s["status"]["readyReplicas"] = json!(2)),
            Want::InProgress(r::LESS_READY, "2/3 replicas ready"),
        ),
        (
            "extra replicas",
            with(stateful_set(), |s| s["status"]["replicas"] = json!(5)),
            Want::InProgress(r::EXTRA_PODS, "5/3 replicas exist"),
        ),
        (
            "too few available",
            with(stateful_set(), |s| {
                s["status"]["availableReplicas"] = json!(0)
            }),
            Want::InProgress(r::LESS_AVAILABLE, "0/3 replicas available"),
        ),
        (
            "availableReplicas not reported",
            with(stateful_set(), |s| {
                s["status"]
                    .as_object_mut()
                    .unwrap()
                    .remove("availableReplicas");
            }),
            Want::Current,
        ),
        (
            "too few updated",
            with(stateful_set(), |s| {
                s["status"]["updatedReplicas"] = json!(2)
            }),
            Want::InProgress(r::LESS_UPDATED, "2/3 replicas updated"),
        ),
        (
            "too few at current revision",
            with(stateful_set(), |s| {
                s["status"]["currentReplicas"] = json!(2)
            }),
            Want::InProgress(r::LESS_CURRENT, "2/3 replicas at the current revision"),
        ),
        (
            "revisions differ (partition 0 defaulted in)",
            with(stateful_set(), |s| {
                s["status"]["updateRevision"] = json!("meshery-broker-8a1")
            }),
            Want::InProgress(
                r::REVISION_MISMATCH,
                "rolling out revision meshery-broker-8a1 (current revision meshery-broker-7d9)",
            ),
        ),
        (
            "revisions differ (no rollingUpdate)",
            with(stateful_set(), |s| {
                s["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
                s["status"]["updateRevision"] = json!("x");
            }),
            Want::InProgress(r::REVISION_MISMATCH, "rolling out revision x"),
        ),
        (
            "partition not rolled out",
            with(stateful_set(), |s| {
                s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(1);
                s["status"]["updatedReplicas"] = json!(1);
                s["status"]["updateRevision"] = json!("x");
            }),
            Want::InProgress(
                r::PARTITION_ROLLOUT,
                "1/2 replicas above partition 1 updated",
            ),
        ),
        (
            "partition rolled out",
            with(stateful_set(), |s| {
                s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(1);
                s["status"]["updatedReplicas"] = json!(2);
                s["status"]["updateRevision"] = json!("x");
            }),
            Want::Current,
        ),
        (
            "OnDelete",
            with(stateful_set(), |s| {
                s["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
                s["status"]["updateRevision"] = json!("x");
                s["status"]["updatedReplicas"] = json!(0);
            }),
            Want::Current,
        ),
    ];
    for (name, object, want) in rows {
        check(name, object, want);
    }
}

#[test]
fn service_rules() {
    let rows = [
        ("ClusterIP", service("ClusterIP"), Want::Current),
        ("NodePort", service("NodePort"), Want::Current),
        (
            "headless",
            with(service("ClusterIP"), |s| {
                s["spec"]["clusterIP"] = json!("None")
            }),
            Want::Current,
        ),
        (
            "type defaults to ClusterIP",
            with(service("ClusterIP"), |s| {
                s["spec"].as_object_mut().unwrap().remove("type");
            }),
            Want::Current,
        ),
        (
            "LoadBalancer without cluster IP",
            with(service("LoadBalancer"), |s| {
                s["spec"].as_object_mut().unwrap().remove("clusterIP");
            }),
            Want::InProgress(r::NO_IP_ASSIGNED, "cluster IP"),
        ),
        (
            "LoadBalancer without ingress",
            service("LoadBalancer"),
            Want::LoadBalancerPending,
        ),
        (
            "LoadBalancer with empty ingress entry",
            with(service("LoadBalancer"), |s| {
                s["status"] = json!({"loadBalancer": {"ingress": [{}]}})
            }),
            Want::LoadBalancerPending,
        ),
        (
            "LoadBalancer with ingress ip",
            with(service("LoadBalancer"), |s| {
                s["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}})
            }),
            Want::Current,
        ),
        (
            "LoadBalancer with ingress hostname",
            with(
                service("LoadBalancer"),
                |s| {
                    s["status"] =
                        json!({"loadBalancer": {"ingress": [{"hostname": "nats.example.com"}]}})
                },
            ),
            Want::Current,
        ),
    ];
    for (name, object, want) in rows {
        check(name, object, want);
    }
}

#[test]
fn persistent_volume_claim_rules() {
    let pvc = |phase: Option<&str>| {
        let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-meshery-broker-0"}});
        if let Some(phase) = phase {
            pvc["status"] = json!({"phase": phase});
        }
        pvc
    };
    check("Bound", pvc(Some("Bound")), Want::Current);
    check(
        "Pending",
        pvc(Some("Pending")),
        Want::InProgress(r::NOT_BOUND, "not bound to a volume (phase Pending)"),
    );
    check(
        "no status",
        pvc(None),
        Want::InProgress(r::NOT_BOUND, "phase unknown"),
    );
}

#[test]
fn load_balancer_pending_counts_as_current() {
    assert!(child_readiness(&Object(service("LoadBalancer"))).is_current());
    assert!(
        !child_readiness(&Object(with(
            stateful_set(),
            |s| s["status"]["readyReplicas"] = json!(2)
        )))
        .is_current()
    );
}
