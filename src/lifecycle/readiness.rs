//! Whether one observed child has caught up with what was applied, by the kstatus rules
//! (`sigs.k8s.io/cli-utils/pkg/kstatus`), so our verdicts agree with Flux, Argo CD and `kubectl wait`.
//!
//! Rules, in the order they are checked:
//! 1. any kind: a `deletionTimestamp` → in progress (`Terminating`); `status.observedGeneration` present and
//!    behind `metadata.generation` → in progress (`LatestGenerationNotObserved`);
//! 2. Deployment and StatefulSet additionally need `status.observedGeneration` at all: a workload its
//!    controller has not looked at yet says nothing about its pods;
//! 3. the kind's own rule (below); every other kind (ConfigMap, Secret, ServiceAccount, RBAC,
//!    PodDisruptionBudget, NetworkPolicy) is current once it exists.

use serde_json::Value;

use crate::object::Object;

/// A child's readiness reasons, as kstatus names them (they appear in our messages, not as condition reasons).
pub mod reasons {
    pub const TERMINATING: &str = "Terminating";
    pub const LATEST_GENERATION_NOT_OBSERVED: &str = "LatestGenerationNotObserved";
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    pub const LESS_REPLICAS: &str = "LessReplicas";
    pub const LESS_UPDATED: &str = "LessUpdated";
    pub const LESS_AVAILABLE: &str = "LessAvailable";
    pub const LESS_READY: &str = "LessReady";
    pub const LESS_CURRENT: &str = "LessCurrent";
    pub const EXTRA_PODS: &str = "ExtraPods";
    pub const REPLICA_SET_NOT_AVAILABLE: &str = "ReplicaSetNotAvailable";
    pub const DEPLOYMENT_NOT_AVAILABLE: &str = "DeploymentNotAvailable";
    pub const PARTITION_ROLLOUT: &str = "PartitionRollout";
    pub const REVISION_MISMATCH: &str = "RevisionMismatch";
    pub const NO_IP_ASSIGNED: &str = "NoIPAssigned";
    pub const NOT_BOUND: &str = "NotBound";
}

/// One child's readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Caught up with what was applied.
    Current,
    /// A LoadBalancer Service that works in-cluster but has no ingress yet. Counts as current — in-cluster
    /// clients (MeshSync, Meshery Server in the cluster) reach NATS through the cluster IP — but the
    /// external endpoint stays empty, so the CR says why instead of leaving `External` blank unexplained.
    LoadBalancerPending { message: String },
    /// Still converging; the lifecycle keeps waiting.
    InProgress {
        reason: &'static str,
        message: String,
    },
    /// Will not converge without a change (a Deployment past its progress deadline).
    Failed {
        reason: &'static str,
        message: String,
    },
}

impl Readiness {
    /// Whether the child counts as caught up for the CR's readiness.
    pub fn is_current(&self) -> bool {
        matches!(
            self,
            Readiness::Current | Readiness::LoadBalancerPending { .. }
        )
    }

    fn in_progress(reason: &'static str, message: impl Into<String>) -> Readiness {
        Readiness::InProgress {
            reason,
            message: message.into(),
        }
    }
}

/// The readiness of an observed child (as read from the API server or the watch cache).
pub fn child_readiness(obj: &Object) -> Readiness {
    if obj
        .get(&["metadata", "deletionTimestamp"])
        .is_some_and(|v| !v.is_null())
    {
        return Readiness::in_progress(reasons::TERMINATING, "being deleted");
    }
    let generation = int(obj, &["metadata", "generation"]);
    let observed = int(obj, &["status", "observedGeneration"]);
    if let (Some(generation), Some(observed)) = (generation, observed)
        && observed != generation
    {
        return Readiness::in_progress(
            reasons::LATEST_GENERATION_NOT_OBSERVED,
            format!("generation {generation} not yet observed (its controller is at {observed})"),
        );
    }
    match (obj.group(), obj.kind()) {
        ("apps", "Deployment") | ("apps", "StatefulSet") if observed.is_none() => {
            Readiness::in_progress(
                reasons::LATEST_GENERATION_NOT_OBSERVED,
                "not yet observed by its controller",
            )
        }
        ("apps", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("", "Service") => service(obj),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(obj),
        _ => Readiness::Current,
    }
}

/// kstatus' Deployment rule: a progress deadline exceeded is a failure; otherwise every replica must be
/// created, updated, available and ready, no old replica may linger, and the Deployment controller's own
/// `Progressing` (`NewReplicaSetAvailable`) and `Available` conditions must agree.
fn deployment(obj: &Object) -> Readiness {
    let conditions = status_conditions(obj);
    if let Some(progressing) = conditions
        .iter()
        .find(|c| field(c, "type") == "Progressing")
        && field(progressing, "reason") == reasons::PROGRESS_DEADLINE_EXCEEDED
    {
        let detail = field(progressing, "message");
        let message = if detail.is_empty() {
            "progress deadline exceeded".to_string()
        } else {
            format!("progress deadline exceeded: {detail}")
        };
        return Readiness::Failed {
            reason: reasons::PROGRESS_DEADLINE_EXCEEDED,
            message,
        };
    }
    let spec = int(obj, &["spec", "replicas"]).unwrap_or(1);
    let replicas = status_int(obj, "replicas");
    let updated = status_int(obj, "updatedReplicas");
    let ready = status_int(obj, "readyReplicas");
    let available = status_int(obj, "availableReplicas");
    if let Some(lagging) = replica_counts(spec, replicas, updated, available, ready) {
        return lagging;
    }
    // Without a progress deadline the Deployment controller never sets `Progressing` (kstatus: Go's
    // MaxInt32 sentinel); the API server defaults it to 600s, so observed Deployments normally have one.
    let has_deadline =
        int(obj, &["spec", "progressDeadlineSeconds"]).is_some_and(|s| s != i64::from(i32::MAX));
    let new_replica_set_available = conditions.iter().any(|c| {
        field(c, "type") == "Progressing"
            && field(c, "status") == "True"
            && field(c, "reason") == "NewReplicaSetAvailable"
    });
    if has_deadline && !new_replica_set_available {
        return Readiness::in_progress(
            reasons::REPLICA_SET_NOT_AVAILABLE,
            "new ReplicaSet not yet available",
        );
    }
    if !conditions
        .iter()
        .any(|c| field(c, "type") == "Available" && field(c, "status") == "True")
    {
        return Readiness::in_progress(
            reasons::DEPLOYMENT_NOT_AVAILABLE,
            "Deployment not yet Available",
        );
    }
    Readiness::Current
}

fn replica_counts(
    spec: i64,
    replicas: i64,
    updated: i64,
    available: i64,
    ready: i64,
) -> Option<Readiness> {
    let lagging = if spec > replicas {
        Readiness::in_progress(
            reasons::LESS_REPLICAS,
            format!("{replicas}/{spec} replicas created"),
        )
    } else if spec > updated {
        Readiness::in_progress(
            reasons::LESS_UPDATED,
            format!("{updated}/{spec} replicas updated"),
        )
    } else if replicas > spec {
        Readiness::in_progress(
            reasons::EXTRA_PODS,
            format!("{replicas}/{spec} replicas exist, old ones still terminating"),
        )
    } else if updated > available {
        Readiness::in_progress(
            reasons::LESS_AVAILABLE,
            format!("{available}/{spec} replicas available"),
        )
    } else if spec > ready {
        Readiness::in_progress(
            reasons::LESS_READY,
            format!("{ready}/{spec} replicas ready"),
        )
    } else {
        return None;
    };
    Some(lagging)
}

/// kstatus' StatefulSet rule (the StatefulSet controller sets no conditions, so only counts and revisions
/// say anything): every replica created and ready, none extra; then either the partition is rolled out, or
/// — for a plain RollingUpdate — every replica is updated and the current revision is the update revision.
/// `OnDelete` StatefulSets are rolled by whoever deletes their pods, so they count as current.
///
/// Unlike kstatus, an explicit `partition: 0` (which the API server defaults in) is treated as no
/// partition: otherwise the revision check would never run on a real cluster.
fn stateful_set(obj: &Object) -> Readiness {
    if str_at(obj, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        return Readiness::Current;
    }
    let spec = int(obj, &["spec", "replicas"]).unwrap_or(1);
    let replicas = status_int(obj, "replicas");
    let ready = status_int(obj, "readyReplicas");
    let updated = status_int(obj, "updatedReplicas");
    let current = status_int(obj, "currentReplicas");
    let partition = int(
        obj,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    )
    .unwrap_or(0);
    if spec > replicas {
        return Readiness::in_progress(
            reasons::LESS_REPLICAS,
            format!("{replicas}/{spec} replicas created"),
        );
    }
    if spec > ready {
        return Readiness::in_progress(
            reasons::LESS_READY,
            format!("{ready}/{spec} replicas ready"),
        );
    }
    if replicas > spec {
        return Readiness::in_progress(
            reasons::EXTRA_PODS,
            format!("{replicas}/{spec} replicas exist, old ones still terminating"),
        );
    }
    // `availableReplicas` (minReadySeconds) is only reported by newer API servers; absent means "not tracked".
    if let Some(available) = int(obj, &["status", "availableReplicas"])
        && spec > available
    {
        return Readiness::in_progress(
            reasons::LESS_AVAILABLE,
            format!("{available}/{spec} replicas available"),
        );
    }
    if partition > 0 {
        let target = (spec - partition).max(0);
        if updated < target {
            return Readiness::in_progress(
                reasons::PARTITION_ROLLOUT,
                format!("{updated}/{target} replicas above partition {partition} updated"),
            );
        }
        return Readiness::Current;
    }
    if spec > updated {
        return Readiness::in_progress(
            reasons::LESS_UPDATED,
            format!("{updated}/{spec} replicas updated"),
        );
    }
    if spec > current {
        return Readiness::in_progress(
            reasons::LESS_CURRENT,
            format!("{current}/{spec} replicas at the current revision"),
        );
    }
    let current_revision = str_at(obj, &["status", "currentRevision"]).unwrap_or_default();
    let update_revision = str_at(obj, &["status", "updateRevision"]).unwrap_or_default();
    if current_revision != update_revision {
        return Readiness::in_progress(
            reasons::REVISION_MISMATCH,
            format!("rolling out revision {update_revision} (current revision {current_revision})"),
        );
    }
    Readiness::Current
}

/// kstatus: a Service is current once it exists, except a LoadBalancer without a cluster IP yet. We add
/// the ingress check as a separate, non-blocking observation (see [`Readiness::LoadBalancerPending`]).
fn service(obj: &Object) -> Readiness {
    if str_at(obj, &["spec", "type"]) != Some("LoadBalancer") {
        return Readiness::Current;
    }
    if str_at(obj, &["spec", "clusterIP"]).is_none_or(str::is_empty) {
        return Readiness::in_progress(reasons::NO_IP_ASSIGNED, "cluster IP not yet assigned");
    }
    let has_ingress = obj
        .get(&["status", "loadBalancer", "ingress"])
        .and_then(Value::as_array)
        .is_some_and(|ingress| {
            ingress.iter().any(|i| {
                ["ip", "hostname"].iter().any(|k| {
                    i.get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
                })
            })
        });
    if has_ingress {
        Readiness::Current
    } else {
        Readiness::LoadBalancerPending {
            message: "LoadBalancer has no ingress yet, so the external endpoint is empty \
                      (on kind or minikube install a load-balancer such as MetalLB, or set \
                      spec.service.externalEndpointOverride)"
                .to_string(),
        }
    }
}

/// kstatus: a claim is current once `Bound`.
fn persistent_volume_claim(obj: &Object) -> Readiness {
    match str_at(obj, &["status", "phase"]) {
        Some("Bound") => Readiness::Current,
        phase => Readiness::in_progress(
            reasons::NOT_BOUND,
            format!(
                "not bound to a volume (phase {})",
                phase.unwrap_or("unknown")
            ),
        ),
    }
}

fn int(obj: &Object, path: &[&str]) -> Option<i64> {
    obj.get(path).and_then(Value::as_i64)
}

/// A replica count from `status`: the controllers omit zero counts, so absent means 0.
fn status_int(obj: &Object, key: &str) -> i64 {
    int(obj, &["status", key]).unwrap_or(0)
}

fn str_at<'a>(obj: &'a Object, path: &[&str]) -> Option<&'a str> {
    obj.get(path).and_then(Value::as_str)
}

fn status_conditions(obj: &Object) -> &[Value] {
    obj.get(&["status", "conditions"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn field<'a>(condition: &'a Value, key: &str) -> &'a str {
    condition
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
}
