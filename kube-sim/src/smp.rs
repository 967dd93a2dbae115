//! Strategic merge patch, reduced: maps merge recursively (null deletes); lists whose SSA list type
//! is `map` merge element-wise by their first list-map key (the patch merge key for every kind the
//! operator renders); `set` lists of scalars are unioned; every other list is replaced. Directives
//! `$patch: replace|delete` on maps and list elements, and `$retainKeys`, `$deleteFromPrimitiveList/…`,
//! `$setElementOrder/…` are handled as follows: `$patch` is honoured, `$setElementOrder` is ignored
//! (order is kept from the live object, new elements appended), anything else is rejected loudly.

use serde_json::{Map, Value};

use crate::errors::{ApiError, ApiResult};
use crate::list_keys::{ListType, Schema};

pub fn apply(live: &Value, patch: &Value, schema: &dyn Schema) -> ApiResult<Value> {
    let mut path = Vec::new();
    merge(live, patch, schema, &mut path)
}

fn merge(
    live: &Value,
    patch: &Value,
    schema: &dyn Schema,
    path: &mut Vec<String>,
) -> ApiResult<Value> {
    let Some(pm) = patch.as_object() else {
        return Ok(patch.clone());
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut p = pm.clone();
            p.remove("$patch");
            return Ok(Value::Object(p));
        }
        Some("delete") => return Ok(Value::Null),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other}"
            )));
        }
        None => {}
    }
    let mut out: Map<String, Value> = live.as_object().cloned().unwrap_or_default();
    for (k, pv) in pm {
        if k.starts_with("$setElementOrder/") {
            continue;
        }
        if k.starts_with('$') {
            return Err(ApiError::unsupported(format!(
                "strategic merge patch directive {k:?} (kube-sim implements $patch and ignores $setElementOrder)"
            )));
        }
        if pv.is_null() {
            out.remove(k);
            continue;
        }
        path.push(k.clone());
        let merged = match (out.get(k), pv) {
            (Some(lv @ Value::Object(_)), Value::Object(_)) => merge(lv, pv, schema, path)?,
            (Some(Value::Array(la)), Value::Array(pa)) => merge_list(la, pa, schema, path)?,
            (_, Value::Object(_)) => merge(&Value::Object(Map::new()), pv, schema, path)?,
            (_, Value::Array(pa)) => merge_list(&[], pa, schema, path)?,
            _ => pv.clone(),
        };
        path.pop();
        if merged.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), merged);
        }
    }
    Ok(Value::Object(out))
}

fn merge_list(
    live: &[Value],
    patch: &[Value],
    schema: &dyn Schema,
    path: &mut Vec<String>,
) -> ApiResult<Value> {
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    match schema.list_type(&refs) {
        ListType::Map(keys) if !keys.is_empty() => {
            let key = &keys[0];
            let mut out: Vec<Value> = live.to_vec();
            for pe in patch {
                let directive = pe.get("$patch").and_then(Value::as_str);
                let kv = pe.get(key).cloned();
                let pos = kv
                    .as_ref()
                    .and_then(|kv| out.iter().position(|e| e.get(key) == Some(kv)));
                match (directive, pos) {
                    (Some("delete"), Some(i)) => {
                        out.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (Some("replace"), _) => {
                        return Ok(Value::Array(
                            patch
                                .iter()
                                .filter(|e| e.get("$patch").is_none())
                                .cloned()
                                .collect(),
                        ));
                    }
                    (_, Some(i)) => {
                        let m = merge(&out[i], pe, schema, path)?;
                        out[i] = m;
                    }
                    (_, None) => {
                        let m = merge(&Value::Object(Map::new()), pe, schema, path)?;
                        out.push(m);
                    }
                }
            }
            Ok(Value::Array(out))
        }
        ListType::Set if patch.iter().all(|v| !v.is_object()) => {
            let mut out = live.to_vec();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }
        _ => Ok(Value::Array(patch.to_vec())),
    }
}
