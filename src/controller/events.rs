//! Publishing Events (`events.k8s.io/v1`), a repeat folded into the first Event's `series` as
//! `kubectl describe` expects.
//!
//! kube-runtime's `Recorder` does the same, but to recognise a repeat it keeps every Event it
//! published, typed and inline in its map, for six minutes: at a thousand Broker and MeshSync
//! pairs that map was the operator's largest allocation (about 12 MiB, and both old and new
//! tables while it grew). This recorder keeps a 64-bit hash of what makes an Event a repeat and the
//! name to patch: well under a hundred bytes per Event.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;

/// How long a published Event is remembered to fold repeats into it (as kube-runtime and client-go).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// How often the remembered Events are swept for ones past the window.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_secs(30);

/// What this operator says about an object, with repeats counted on one Event.
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<Published>,
}

#[derive(Default)]
struct Published {
    by_key: HashMap<u64, Series>,
    swept: Option<Timestamp>,
}

/// A published Event, by the name to patch when it repeats.
struct Series {
    namespace: Box<str>,
    name: Box<str>,
    count: i32,
    last: Timestamp,
}

impl EventRecorder {
    /// `controller` is the reporting controller; `instance` the reporting instance (the pod), the
    /// controller's name when unknown, since the API server requires one.
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> EventRecorder {
        EventRecorder {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            published: Mutex::default(),
        }
    }

    /// Creates an Event about `regarding`, or, when the same Event (type, reason, action, note and
    /// object) was published within six minutes, counts it on that one's series.
    pub async fn publish(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = series_key(type_, reason, action, note, regarding);
        let repeat = {
            let mut published = self.lock();
            published.sweep(now);
            published
                .by_key
                .get(&key)
                .map(|s| (s.namespace.clone(), s.name.clone(), s.count + 1))
        };
        if let Some((namespace, name, count)) = repeat {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(now)}
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Some(series) = self.lock().by_key.get_mut(&key) {
                        series.count = count;
                        series.last = now;
                    }
                    return Ok(());
                }
                // Deleted (or expired) since: a new Event starts a new series.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            reason: Some(reason.to_string()),
            action: Some(action.to_string()),
            note: Some(note.to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await?;
        self.lock().by_key.insert(
            key,
            Series {
                namespace: namespace.into(),
                name: name.into(),
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Published> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Published {
    /// Forgets Events last seen longer ago than the window, at most every [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Timestamp) {
        if self
            .swept
            .is_some_and(|at| now.duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        self.by_key
            .retain(|_, series| now.duration_since(series.last) < SERIES_WINDOW);
    }
}

/// What makes two Events the same one, repeated.
fn series_key(
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
    regarding: &ObjectReference,
) -> u64 {
    let mut hasher = DefaultHasher::new();
    matches!(type_, EventType::Warning).hash(&mut hasher);
    (reason, action, note).hash(&mut hasher);
    (
        &regarding.api_version,
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
        &regarding.field_path,
    )
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("meshery.io/v1alpha1".into()),
            kind: Some("Broker".into()),
            namespace: Some("meshery".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn an_event_repeats_only_with_the_same_type_reason_action_note_and_object() {
        let broker = reference("broker", "u1");
        let key = |type_, reason, note, regarding: &ObjectReference| {
            series_key(type_, reason, "Reconcile", note, regarding)
        };
        let first = key(EventType::Normal, "Ready", "all children current", &broker);
        assert_eq!(
            first,
            key(EventType::Normal, "Ready", "all children current", &broker)
        );
        for other in [
            key(EventType::Warning, "Ready", "all children current", &broker),
            key(
                EventType::Normal,
                "Degraded",
                "all children current",
                &broker,
            ),
            key(EventType::Normal, "Ready", "another note", &broker),
            key(
                EventType::Normal,
                "Ready",
                "all children current",
                &reference("broker", "u2"),
            ),
        ] {
            assert_ne!(first, other);
        }
    }

    #[test]
    fn remembered_events_are_forgotten_after_the_window() {
        let at = |seconds: i64| Timestamp::from_second(1_800_000_000 + seconds).unwrap();
        let series = |last| Series {
            namespace: "meshery".into(),
            name: "broker.1".into(),
            count: 1,
            last,
        };
        let mut published = Published::default();
        published.by_key.insert(1, series(at(0)));
        published.by_key.insert(2, series(at(300)));
        published.sweep(at(360));
        assert_eq!(published.by_key.len(), 1, "the first is six minutes old");
        assert!(published.by_key.contains_key(&2));
        published.by_key.insert(3, series(at(0)));
        published.sweep(at(370));
        assert!(
            published.by_key.contains_key(&3),
            "swept at most every 30 s"
        );
        published.sweep(at(400));
        assert!(!published.by_key.contains_key(&3));
    }
}
