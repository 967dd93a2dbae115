//! One Event, two faces: the real server stores `events.k8s.io/v1` and core `v1` Events as the same
//! objects, so an Event written through either group is read through both (`kubectl get events`
//! and `kubectl describe` show what a controller recorded with `events.k8s.io`). kube-sim keeps each
//! where it was written and converts on read (get, list and watch).

use serde_json::{Map, Value, json};

/// Storage key of core `v1` Events.
pub const CORE_EVENTS: &str = "/events";
/// Storage key of `events.k8s.io/v1` Events.
pub const EVENTS_API_EVENTS: &str = "events.k8s.io/events";

/// Field renames between the two faces: (`events.k8s.io/v1`, core `v1`).
const RENAMES: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The other group's storage key for Events stored under `gr`, if `gr` holds Events.
pub fn twin(gr: &str) -> Option<&'static str> {
    match gr {
        CORE_EVENTS => Some(EVENTS_API_EVENTS),
        EVENTS_API_EVENTS => Some(CORE_EVENTS),
        _ => None,
    }
}

/// `event`, stored under `from`, as the other group serves it.
pub fn convert(from: &str, event: &Value) -> Value {
    let Some(fields) = event.as_object() else {
        return event.clone();
    };
    let to_core = from == EVENTS_API_EVENTS;
    let mut out = Map::new();
    for (name, value) in fields {
        let renamed = RENAMES.iter().find_map(|(api, core)| {
            if to_core && name == api {
                Some(*core)
            } else if !to_core && name == core {
                Some(*api)
            } else {
                None
            }
        });
        out.insert(renamed.unwrap_or(name).to_string(), value.clone());
    }
    if to_core {
        out.insert("apiVersion".into(), json!("v1"));
        // Core Events always show these (Go structs without omitempty).
        for field in ["firstTimestamp", "lastTimestamp"] {
            out.entry(field).or_insert(Value::Null);
        }
        out.entry("source").or_insert_with(|| json!({}));
        out.entry("involvedObject").or_insert_with(|| json!({}));
        out.entry("reportingComponent").or_insert_with(|| json!(""));
        out.entry("reportingInstance").or_insert_with(|| json!(""));
    } else {
        out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
        if out.get("deprecatedSource") == Some(&json!({})) {
            out.remove("deprecatedSource");
        }
        for field in ["deprecatedFirstTimestamp", "deprecatedLastTimestamp"] {
            if out.get(field) == Some(&Value::Null) {
                out.remove(field);
            }
        }
        if out.get("deprecatedCount") == Some(&json!(0)) {
            out.remove("deprecatedCount");
        }
    }
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}
