//! What an operator asked of the API server during one window, from either substrate's record of
//! it (kube-sim's request counters, the real API server's audit log), and what its writes were.

use std::collections::{BTreeMap, HashSet};

use kube_sim::RequestStats;
use serde::{Deserialize, Serialize};

/// Requests by `"verb resource"` (resource: `plural` for the core group, else `plural.group`,
/// with `/subresource`; dry-run writes under verb `patch (dry-run)` and the like), and the
/// successful writes among them by what they changed.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub requests: BTreeMap<String, u64>,
    pub writes: Writes,
}

/// Successful writes by what they changed. Reviews and TokenRequests are creates that store
/// nothing, so they are requests but not writes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writes {
    /// Creates, applies, updates and deletes of the CRs' children.
    pub children: u64,
    pub status_broker: u64,
    pub status_meshsync: u64,
    /// Writes to the CRs themselves (the Go operator's finalizers).
    pub custom_resources: u64,
    pub events: u64,
    pub leases: u64,
    /// Server-side dry-run applies: requests, but nothing stored.
    pub dry_runs: u64,
}

impl Writes {
    /// Every write that reached storage.
    pub fn stored(&self) -> u64 {
        self.children + self.status() + self.custom_resources + self.events + self.leases
    }

    pub fn status(&self) -> u64 {
        self.status_broker + self.status_meshsync
    }

    fn add(&mut self, resource: &str, dry_run: bool) {
        if stores_nothing(resource) {
            return;
        }
        let counter = if dry_run {
            &mut self.dry_runs
        } else if resource == "brokers.meshery.io/status" {
            &mut self.status_broker
        } else if resource == "meshsyncs.meshery.io/status" {
            &mut self.status_meshsync
        } else if resource.starts_with("brokers.meshery.io")
            || resource.starts_with("meshsyncs.meshery.io")
        {
            &mut self.custom_resources
        } else if resource == "events" || resource == "events.events.k8s.io" {
            &mut self.events
        } else if resource == "leases.coordination.k8s.io" {
            &mut self.leases
        } else {
            &mut self.children
        };
        *counter += 1;
    }
}

/// Reviews (SubjectAccessReview, TokenReview, …) and TokenRequests answer a question; nothing is stored.
fn stores_nothing(resource: &str) -> bool {
    resource.contains("reviews.") || resource.ends_with("/token")
}

const WRITE_VERBS: [&str; 6] = [
    "create",
    "update",
    "patch",
    "apply",
    "delete",
    "deletecollection",
];

impl Traffic {
    fn add_request(&mut self, verb: &str, resource: &str, dry_run: bool) {
        let key = if dry_run {
            format!("{verb} (dry-run) {resource}")
        } else {
            format!("{verb} {resource}")
        };
        *self.requests.entry(key).or_default() += 1;
    }

    /// Requests by verb, over every resource.
    pub fn by_verb(&self) -> BTreeMap<String, u64> {
        let mut verbs = BTreeMap::new();
        for (key, count) in &self.requests {
            let verb = match key.rsplit_once(' ') {
                Some((verb, _)) => verb,
                None => key.as_str(),
            };
            *verbs.entry(verb.to_string()).or_default() += count;
        }
        verbs
    }

    /// Requests by resource, over every verb.
    pub fn by_resource(&self) -> BTreeMap<String, u64> {
        let mut resources = BTreeMap::new();
        for (key, count) in &self.requests {
            let resource = key.rsplit(' ').next().unwrap_or_default();
            *resources.entry(resource.to_string()).or_default() += count;
        }
        resources
    }

    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// The requests one user sent whose `requestReceivedTimestamp` is in `[from, to)`, from the
    /// real API server's audit log (JSON lines, Metadata level). A watch is logged once when its
    /// response starts and again when it ends: each request (audit ID) counts once. Discovery
    /// (non-resource URLs under `/api`, `/apis`, `/openapi`) counts as verb `discovery`.
    pub fn from_audit_log(
        log: &str,
        user: &str,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Traffic {
        let mut traffic = Traffic::default();
        let mut seen = HashSet::new();
        for line in log.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if event["user"]["username"] != user {
                continue;
            }
            let received = event["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if !received.is_some_and(|t| t >= from && t < to) {
                continue;
            }
            let audit_id = event["auditID"].as_str().unwrap_or_default().to_string();
            let complete = event["stage"] == "ResponseComplete";
            let first = seen.insert(audit_id);
            let verb = event["verb"].as_str().unwrap_or_default();
            let uri = event["requestURI"].as_str().unwrap_or_default();
            let dry_run = uri.contains("dryRun=All");
            let object = &event["objectRef"];
            let Some(plural) = object["resource"].as_str() else {
                let discovery = ["/api", "/apis", "/openapi"].iter().any(|prefix| {
                    uri == *prefix
                        || uri.starts_with(&format!("{prefix}/"))
                        || uri.starts_with(&format!("{prefix}?"))
                });
                if first && discovery {
                    traffic.add_request("discovery", "-", false);
                }
                continue;
            };
            let mut resource = plural.to_string();
            if let Some(group) = object["apiGroup"].as_str().filter(|g| !g.is_empty()) {
                resource = format!("{resource}.{group}");
            }
            if let Some(sub) = object["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            if first {
                traffic.add_request(verb, &resource, dry_run);
            }
            let succeeded = event["responseStatus"]["code"]
                .as_i64()
                .is_some_and(|code| (200..300).contains(&code));
            if complete && succeeded && WRITE_VERBS.contains(&verb) {
                traffic.writes.add(&resource, dry_run);
            }
        }
        traffic
    }

    /// The requests kube-sim counted since its counters were reset, minus the bench's own: its
    /// reads (`own`, by kube-sim's `"verb resource"` key) and its writes (field manager
    /// `own_manager`). kube-sim counts a dry-run apply as a `patch`; it is moved to `patch (dry-run)`.
    pub fn from_sim(
        stats: &RequestStats,
        own: &BTreeMap<String, u64>,
        own_manager: &str,
    ) -> Traffic {
        let mut traffic = Traffic::default();
        for (key, count) in &stats.counts {
            let count = count.saturating_sub(own.get(key).copied().unwrap_or(0));
            if count > 0 {
                traffic.requests.insert(key.clone(), count);
            }
        }
        for write in &stats.writes {
            let own_write = write.field_manager.as_deref() == Some(own_manager);
            let counted_as = format!(
                "{} {}",
                if write.verb == "apply" {
                    "patch"
                } else {
                    &write.verb
                },
                write.resource
            );
            if own_write {
                decrement(&mut traffic.requests, &counted_as);
                continue;
            }
            if write.dry_run {
                decrement(&mut traffic.requests, &counted_as);
                traffic.add_request("patch", &write.resource, true);
            }
            traffic.writes.add(&write.resource, write.dry_run);
        }
        traffic
    }
}

/// Successful writes by anyone to objects in benchmark namespaces (`<namespace_prefix><number>`)
/// in `[from, to)`, by `"user verb resource"`: who caused the etcd writes on the benchmark's
/// objects that the operator did not.
pub fn writers_in_benchmark_namespaces(
    log: &str,
    namespace_prefix: &str,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> BTreeMap<String, u64> {
    let mut writers = BTreeMap::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let verb = event["verb"].as_str().unwrap_or_default();
        let in_benchmark = event["objectRef"]["namespace"]
            .as_str()
            .and_then(|ns| ns.strip_prefix(namespace_prefix))
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
        let succeeded = event["responseStatus"]["code"]
            .as_i64()
            .is_some_and(|code| (200..300).contains(&code));
        let received = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if event["stage"] != "ResponseComplete"
            || !WRITE_VERBS.contains(&verb)
            || !in_benchmark
            || !succeeded
            || !received.is_some_and(|t| t >= from && t < to)
            || event["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("dryRun=All"))
        {
            continue;
        }
        let mut resource = event["objectRef"]["resource"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(sub) = event["objectRef"]["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let user = event["user"]["username"].as_str().unwrap_or_default();
        *writers
            .entry(format!("{user} {verb} {resource}"))
            .or_default() += 1;
    }
    writers
}

fn decrement(requests: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(count) = requests.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            requests.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_sim::WriteRecord;

    fn ts(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    /// One audit log line: a request `(verb, uri)` by `user`, at one stage, with its answer.
    fn audit(
        id: &str,
        user: &str,
        stage: &str,
        (verb, uri): (&str, &str),
        object: serde_json::Value,
        code: i64,
        at: &str,
    ) -> String {
        serde_json::json!({
            "auditID": id, "stage": stage, "verb": verb, "requestURI": uri,
            "user": {"username": user}, "objectRef": object,
            "responseStatus": {"code": code}, "requestReceivedTimestamp": at,
        })
        .to_string()
    }

    const OPERATOR: &str = "system:serviceaccount:bench-operator:operator";

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_audit_log_counts_one_users_requests_in_the_window_once_each_and_classifies_its_writes() {
        let status = serde_json::json!({"resource": "brokers", "apiGroup": "meshery.io", "subresource": "status", "namespace": "bench-0", "name": "broker"});
        let sts = serde_json::json!({"resource": "statefulsets", "apiGroup": "apps", "namespace": "bench-0", "name": "broker"});
        let events = serde_json::json!({"resource": "events", "namespace": "bench-0"});
        let review = serde_json::json!({"resource": "subjectaccessreviews", "apiGroup": "authorization.k8s.io"});
        let log = [
            // A watch: logged when it starts and when it ends; one request.
            audit(
                "w",
                OPERATOR,
                "ResponseStarted",
                ("watch", "/apis/apps/v1/statefulsets?watch=true"),
                sts.clone(),
                200,
                "2026-12-04T10:00:01Z",
            ),
            audit(
                "w",
                OPERATOR,
                "ResponseComplete",
                ("watch", "/apis/apps/v1/statefulsets?watch=true"),
                sts.clone(),
                200,
                "2026-12-04T10:00:01Z",
            ),
            audit(
                "a",
                OPERATOR,
                "ResponseComplete",
                (
                    "patch",
                    "/apis/apps/v1/namespaces/bench-0/statefulsets/broker?fieldManager=x",
                ),
                sts.clone(),
                200,
                "2026-12-04T10:00:02Z",
            ),
            audit(
                "d",
                OPERATOR,
                "ResponseComplete",
                (
                    "patch",
                    "/apis/apps/v1/namespaces/bench-0/statefulsets/broker?dryRun=All",
                ),
                sts.clone(),
                200,
                "2026-12-04T10:00:02Z",
            ),
            audit(
                "c",
                OPERATOR,
                "ResponseComplete",
                (
                    "patch",
                    "/apis/meshery.io/v1alpha1/namespaces/bench-0/brokers/broker/status",
                ),
                status.clone(),
                409,
                "2026-12-04T10:00:03Z",
            ),
            audit(
                "s",
                OPERATOR,
                "ResponseComplete",
                (
                    "patch",
                    "/apis/meshery.io/v1alpha1/namespaces/bench-0/brokers/broker/status",
                ),
                status,
                200,
                "2026-12-04T10:00:03Z",
            ),
            audit(
                "e",
                OPERATOR,
                "ResponseComplete",
                ("create", "/api/v1/namespaces/bench-0/events"),
                events,
                201,
                "2026-12-04T10:00:04Z",
            ),
            audit(
                "r",
                OPERATOR,
                "ResponseComplete",
                (
                    "create",
                    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                ),
                review,
                201,
                "2026-12-04T10:00:04Z",
            ),
            audit(
                "x",
                OPERATOR,
                "ResponseComplete",
                ("get", "/apis"),
                serde_json::Value::Null,
                200,
                "2026-12-04T10:00:04Z",
            ),
            // Someone else, and the operator outside the window.
            audit(
                "o",
                "admin",
                "ResponseComplete",
                (
                    "patch",
                    "/apis/apps/v1/namespaces/bench-0/statefulsets/broker",
                ),
                sts.clone(),
                200,
                "2026-12-04T10:00:02Z",
            ),
            audit(
                "l",
                OPERATOR,
                "ResponseComplete",
                (
                    "patch",
                    "/apis/apps/v1/namespaces/bench-0/statefulsets/broker",
                ),
                sts,
                200,
                "2026-12-04T10:00:09Z",
            ),
        ]
        .join("\n");
        let traffic = Traffic::from_audit_log(
            &log,
            OPERATOR,
            ts("2026-12-04T10:00:00Z"),
            ts("2026-12-04T10:00:05Z"),
        );
        let expected = counts(&[
            ("watch statefulsets.apps", 1),
            ("patch statefulsets.apps", 1),
            ("patch (dry-run) statefulsets.apps", 1),
            ("patch brokers.meshery.io/status", 2),
            ("create events", 1),
            ("create subjectaccessreviews.authorization.k8s.io", 1),
            ("discovery -", 1),
        ]);
        assert_eq!(traffic.requests, expected);
        assert_eq!(
            traffic.writes,
            Writes {
                children: 1,
                status_broker: 1,
                events: 1,
                dry_runs: 1,
                ..Writes::default()
            }
        );
        assert_eq!(traffic.writes.stored(), 3);
        assert_eq!(traffic.by_verb()["patch"], 3);
        assert_eq!(traffic.by_verb()["patch (dry-run)"], 1);
        assert_eq!(traffic.by_resource()["statefulsets.apps"], 3);
    }

    #[test]
    fn writers_in_benchmark_namespaces_are_named_by_user_verb_and_resource() {
        let pod = serde_json::json!({"resource": "pods", "subresource": "status", "namespace": "bench-1", "name": "broker-0"});
        let elsewhere = serde_json::json!({"resource": "leases", "apiGroup": "coordination.k8s.io", "namespace": "kube-node-lease", "name": "test-node"});
        let log = [
            audit(
                "1",
                "system:node:test-node",
                "ResponseComplete",
                ("patch", "/api/v1/namespaces/bench-1/pods/broker-0/status"),
                pod.clone(),
                200,
                "2026-12-04T10:00:01Z",
            ),
            audit(
                "2",
                "system:node:test-node",
                "ResponseComplete",
                ("patch", "/api/v1/namespaces/bench-1/pods/broker-0/status"),
                pod.clone(),
                409,
                "2026-12-04T10:00:01Z",
            ),
            audit(
                "3",
                "system:node:test-node",
                "ResponseComplete",
                ("get", "/api/v1/namespaces/bench-1/pods/broker-0"),
                pod,
                200,
                "2026-12-04T10:00:01Z",
            ),
            audit(
                "4",
                "system:node:test-node",
                "ResponseComplete",
                (
                    "update",
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/test-node",
                ),
                elsewhere,
                200,
                "2026-12-04T10:00:01Z",
            ),
        ]
        .join("\n");
        let writers = writers_in_benchmark_namespaces(
            &log,
            "bench-",
            ts("2026-12-04T10:00:00Z"),
            ts("2026-12-04T10:00:05Z"),
        );
        assert_eq!(
            writers,
            counts(&[("system:node:test-node patch pods/status", 1)])
        );
    }

    fn write(verb: &str, resource: &str, manager: &str, dry_run: bool) -> WriteRecord {
        WriteRecord {
            verb: verb.into(),
            resource: resource.into(),
            namespace: Some("bench-0".into()),
            name: Some("broker".into()),
            field_manager: Some(manager.into()),
            dry_run,
        }
    }

    #[test]
    fn kube_sims_counts_lose_the_benchs_own_requests_and_split_out_dry_runs() {
        let stats = RequestStats {
            counts: counts(&[
                ("patch statefulsets.apps", 3),
                ("create brokers.meshery.io", 1),
                ("list brokers.meshery.io", 2),
                ("get secrets", 1),
            ]),
            writes: vec![
                write("apply", "statefulsets.apps", "meshery-operator", false),
                write("apply", "statefulsets.apps", "meshery-operator", true),
                write("patch", "statefulsets.apps", "operator-bench", false),
                write("create", "brokers.meshery.io", "operator-bench", false),
            ],
        };
        let own = counts(&[("list brokers.meshery.io", 2)]);
        let traffic = Traffic::from_sim(&stats, &own, "operator-bench");
        let expected = counts(&[
            ("patch statefulsets.apps", 1),
            ("patch (dry-run) statefulsets.apps", 1),
            ("get secrets", 1),
        ]);
        assert_eq!(traffic.requests, expected);
        assert_eq!(
            traffic.writes,
            Writes {
                children: 1,
                dry_runs: 1,
                ..Writes::default()
            }
        );
    }
}
