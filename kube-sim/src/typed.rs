//! Decoding built-in objects the way the real server does: through their Go types. kube-sim uses the
//! k8s-openapi types (generated from the same OpenAPI) to find unknown fields (for
//! `fieldValidation`) and values of the wrong type (400 BadRequest, as a failed decode is).

use serde_json::Value;

/// Round-trip `obj` through the typed model of `group`/`kind`. `None` when kube-sim has no typed
/// model for the kind.
fn roundtrip(group: &str, kind: &str, obj: &Value) -> Option<Result<Value, String>> {
    use k8s_openapi::api::{
        apps::v1 as apps, coordination::v1 as coord, core::v1 as core, events::v1 as ev,
        networking::v1 as net, policy::v1 as policy, rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    fn rt<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Value, String> {
        let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(t).map_err(|e| e.to_string())
    }
    Some(match (group, kind) {
        ("", "Namespace") => rt::<core::Namespace>(obj),
        ("", "ConfigMap") => rt::<core::ConfigMap>(obj),
        ("", "Secret") => rt::<core::Secret>(obj),
        ("", "ServiceAccount") => rt::<core::ServiceAccount>(obj),
        ("", "Service") => rt::<core::Service>(obj),
        ("", "Event") => rt::<core::Event>(obj),
        ("", "Pod") => rt::<core::Pod>(obj),
        ("", "Endpoints") => rt::<core::Endpoints>(obj),
        ("", "PersistentVolumeClaim") => rt::<core::PersistentVolumeClaim>(obj),
        ("", "Node") => rt::<core::Node>(obj),
        ("apps", "Deployment") => rt::<apps::Deployment>(obj),
        ("apps", "StatefulSet") => rt::<apps::StatefulSet>(obj),
        ("apps", "ReplicaSet") => rt::<apps::ReplicaSet>(obj),
        ("apps", "DaemonSet") => rt::<apps::DaemonSet>(obj),
        ("apps", "ControllerRevision") => rt::<apps::ControllerRevision>(obj),
        ("policy", "PodDisruptionBudget") => rt::<policy::PodDisruptionBudget>(obj),
        ("networking.k8s.io", "NetworkPolicy") => rt::<net::NetworkPolicy>(obj),
        ("rbac.authorization.k8s.io", "ClusterRole") => rt::<rbac::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rt::<rbac::ClusterRoleBinding>(obj),
        ("rbac.authorization.k8s.io", "Role") => rt::<rbac::Role>(obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => rt::<rbac::RoleBinding>(obj),
        ("coordination.k8s.io", "Lease") => rt::<coord::Lease>(obj),
        ("events.k8s.io", "Event") => rt::<ev::Event>(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            rt::<apiext::CustomResourceDefinition>(obj)
        }
        _ => return None,
    })
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Keys with non-null values in `orig` that the typed model dropped.
fn dropped(orig: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                match t.get(k) {
                    None => out.push(join(path, k)),
                    Some(tv) => dropped(v, tv, &join(path, k), out),
                }
            }
        }
        (Value::Object(o), _) => {
            // a struct that serialised to nothing: every non-null key of it is unknown
            for (k, v) in o {
                if !v.is_null() {
                    out.push(join(path, k));
                }
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            for (i, (ov, tv)) in o.iter().zip(t.iter()).enumerate() {
                dropped(ov, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn remove_path(obj: &mut Value, path: &str) {
    // paths are `a.b[0].c`; keys containing dots cannot be unknown struct fields, so split is safe
    let mut cur = obj;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (key, idxs) = match part.find('[') {
            Some(p) => (&part[..p], &part[p..]),
            None => (*part, ""),
        };
        let last = i == parts.len() - 1 && idxs.is_empty();
        if last {
            if let Some(m) = cur.as_object_mut() {
                m.remove(key);
            }
            return;
        }
        let Some(next) = cur.get_mut(key) else { return };
        cur = next;
        for idx in idxs.split(['[', ']']).filter(|s| !s.is_empty()) {
            let Ok(n) = idx.parse::<usize>() else { return };
            let Some(next) = cur.get_mut(n) else { return };
            cur = next;
        }
    }
}

/// Decode check for a built-in object: Err(message) for a value of the wrong type; Ok(unknown field
/// paths) otherwise, with those fields removed from `obj` (the real decoder drops them).
pub fn check_builtin(group: &str, kind: &str, obj: &mut Value) -> Result<Vec<String>, String> {
    let Some(r) = roundtrip(group, kind, obj) else {
        return Ok(Vec::new());
    };
    let typed = match r {
        Ok(t) => t,
        // Go decodes a missing field as its zero value; validation (not decoding) rejects it.
        Err(e) if e.contains("missing field") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    dropped(obj, &typed, "", &mut out);
    for p in &out {
        remove_path(obj, p);
    }
    Ok(out)
}

/// The `MicroTime` fields of the built-in kinds that have them.
fn micro_time_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("coordination.k8s.io", "Lease") => &["/spec/acquireTime", "/spec/renewTime"],
        ("events.k8s.io" | "", "Event") => &["/eventTime", "/series/lastObservedTime"],
        _ => &[],
    }
}

/// Go's error for a `MicroTime` that is not `2006-01-02T15:04:05.000000Z07:00` — exactly six
/// fractional digits — as the real server's decoder reports it; `None` when every one parses.
pub fn micro_time_error(group: &str, kind: &str, obj: &Value) -> Option<String> {
    const LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";
    micro_time_fields(group, kind).iter().find_map(|pointer| {
        let text = obj.pointer(pointer)?.as_str()?;
        let rest = text.get(19..).unwrap_or_default();
        let digits = rest
            .strip_prefix('.')
            .map_or(0, |f| f.bytes().take_while(u8::is_ascii_digit).count());
        let zone = rest.get(1 + digits..).unwrap_or_default();
        let zone_ok = zone == "Z"
            || (zone.len() == 6 && zone.starts_with(['+', '-']) && zone.as_bytes()[3] == b':');
        let problem = if !rest.starts_with('.') || digits < 6 {
            format!("cannot parse {rest:?} as \".000000\"")
        } else if digits > 6 || !zone_ok {
            format!("cannot parse {:?} as \"Z07:00\"", &rest[7..])
        } else {
            return None;
        };
        Some(format!("parsing time {text:?} as {LAYOUT:?}: {problem}"))
    })
}
