//! Hiding Secret values from everything a plan prints: values become `***`, and a changed value
//! shows as `*** (before)` / `*** (after)` so a reader sees that it changed and nothing more.

use serde_json::Value;

/// What a Secret value is replaced with.
pub const MASK: &str = "***";
const MASK_BEFORE: &str = "*** (before)";
const MASK_AFTER: &str = "*** (after)";
/// Holds the whole last applied object, Secret values included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn is_secret(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("Secret")
        && object.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

/// A copy of `object` with every Secret value masked; other kinds are returned unchanged.
pub fn mask_object(object: &Value) -> Value {
    mask_pair(Some(object), None).0.unwrap_or_default()
}

/// Masks a before/after pair of the same Secret consistently: equal values both read `***`,
/// differing ones `*** (before)` and `*** (after)`. Non-Secrets are returned unchanged.
pub fn mask_pair(before: Option<&Value>, after: Option<&Value>) -> (Option<Value>, Option<Value>) {
    let secret = before.or(after).is_some_and(is_secret);
    let mut before = before.cloned();
    let mut after = after.cloned();
    if !secret {
        return (before, after);
    }
    for field in ["data", "stringData"] {
        let old = before.as_ref().and_then(|b| b.get(field)).cloned();
        let new = after.as_ref().and_then(|a| a.get(field)).cloned();
        let unchanged = |name: &str, value: &Value, other: &Option<Value>| {
            other.as_ref().and_then(|o| o.get(name)) == Some(value)
        };
        if let Some(Value::Object(map)) = before.as_mut().and_then(|b| b.get_mut(field)) {
            for (name, value) in map.iter_mut() {
                let mask = if after.is_none() || unchanged(name, value, &new) {
                    MASK
                } else {
                    MASK_BEFORE
                };
                *value = Value::String(mask.into());
            }
        }
        if let Some(Value::Object(map)) = after.as_mut().and_then(|a| a.get_mut(field)) {
            for (name, value) in map.iter_mut() {
                let mask = if old.is_none() || unchanged(name, value, &old) {
                    MASK
                } else {
                    MASK_AFTER
                };
                *value = Value::String(mask.into());
            }
        }
    }
    for object in [before.as_mut(), after.as_mut()].into_iter().flatten() {
        if let Some(value) = object
            .pointer_mut("/metadata/annotations")
            .and_then(|a| a.get_mut(LAST_APPLIED))
        {
            *value = Value::String(MASK.into());
        }
    }
    (before, after)
}

/// A copy of a JSON patch on a Secret with every value that could carry Secret bytes masked.
pub fn mask_patch(patch: &json_patch::Patch) -> Value {
    let mut operations = serde_json::to_value(patch).unwrap_or_default();
    for operation in operations.as_array_mut().into_iter().flatten() {
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let sensitive = path.starts_with("/data")
            || path.starts_with("/stringData")
            || path.starts_with("/metadata/annotations")
            || path == "/metadata"
            || path.is_empty();
        if let (true, Some(value)) = (sensitive, operation.get_mut("value")) {
            *value = mask_values(value);
        }
    }
    operations
}

/// Replaces every string or number inside `value` with the mask, keeping its shape.
fn mask_values(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mask_values(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_values).collect()),
        Value::Null => Value::Null,
        _ => Value::String(MASK.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_values_show_only_that_they_changed() {
        let before =
            json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "MQ==", "b": "Mg=="}});
        let after =
            json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "MQ==", "b": "Mw=="}});
        let (before, after) = mask_pair(Some(&before), Some(&after));
        assert_eq!(
            before.unwrap()["data"],
            json!({"a": "***", "b": "*** (before)"})
        );
        assert_eq!(
            after.unwrap()["data"],
            json!({"a": "***", "b": "*** (after)"})
        );
    }

    #[test]
    fn other_kinds_are_untouched() {
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}});
        assert_eq!(mask_object(&config), config);
    }
}
