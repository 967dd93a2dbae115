//! Strategic merge patch, reduced: maps merge recursively (null deletes); lists whose SSA list type
//! is `map` merge element-wise by their first list-map key (the patch merge key for every kind the
//! operator renders); `set` lists of scalars are unioned; every other list is replaced. Merged lists
//! are ordered as the real server orders them (`normalizeElementOrder`), by `$setElementOrder/…`
//! when the patch has one. Directives: `$patch: replace|delete` on maps and list elements and
//! `$setElementOrder/…` are honoured; `$retainKeys`, `$deleteFromPrimitiveList/…` and any other
//! directive are rejected loudly.

use serde_json::{Map, Value};

use crate::errors::{ApiError, ApiResult};
use crate::list_keys::{ListType, Schema};

const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

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
        if let Some(list) = k.strip_prefix(SET_ELEMENT_ORDER) {
            // An order for a merging list the patch does not change reorders the live list.
            if !pm.contains_key(list)
                && let (Some(Value::Array(la)), Value::Array(order)) = (out.get(list), pv)
            {
                path.push(list.to_string());
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                if !matches!(schema.list_type(&refs), ListType::Atomic) {
                    let reordered = merge_list(la, &[], Some(order), schema, path)?;
                    out.insert(list.to_string(), reordered);
                }
                path.pop();
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(ApiError::unsupported(format!(
                "strategic merge patch directive {k:?} (kube-sim implements $patch and $setElementOrder)"
            )));
        }
        if pv.is_null() {
            out.remove(k);
            continue;
        }
        let order = pm
            .get(&format!("{SET_ELEMENT_ORDER}{k}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice);
        path.push(k.clone());
        let merged = match (out.get(k), pv) {
            (Some(lv @ Value::Object(_)), Value::Object(_)) => merge(lv, pv, schema, path)?,
            (Some(Value::Array(la)), Value::Array(pa)) => merge_list(la, pa, order, schema, path)?,
            (_, Value::Object(_)) => merge(&Value::Object(Map::new()), pv, schema, path)?,
            (_, Value::Array(pa)) => merge_list(&[], pa, order, schema, path)?,
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

/// Merge a patch list into a live one; `order` is the patch's `$setElementOrder` for it.
fn merge_list(
    live: &[Value],
    patch: &[Value],
    order: Option<&[Value]>,
    schema: &dyn Schema,
    path: &mut Vec<String>,
) -> ApiResult<Value> {
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    match schema.list_type(&refs) {
        ListType::Map(keys) if !keys.is_empty() => {
            let key = &keys[0];
            let identity = |e: &Value| e.get(key).cloned();
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
            let kept: Vec<&Value> = patch.iter().filter(|e| e.get("$patch").is_none()).collect();
            let order = order_of_patch(&kept, order, &identity)?;
            Ok(Value::Array(order_like_the_server(
                out, live, &order, &identity,
            )))
        }
        ListType::Set if patch.iter().all(|v| !v.is_object()) => {
            let identity = |e: &Value| Some(e.clone());
            let mut out = live.to_vec();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            let order = order_of_patch(&patch.iter().collect::<Vec<_>>(), order, &identity)?;
            Ok(Value::Array(order_like_the_server(
                out, live, &order, &identity,
            )))
        }
        _ => Ok(Value::Array(patch.to_vec())),
    }
}

/// The identities of the elements the patch orders: its `$setElementOrder` when given, else the
/// patch list itself. A `$setElementOrder` must list the patch's elements in the same relative
/// order; the real server answers a 500 without a reason when it does not.
fn order_of_patch(
    patch: &[&Value],
    set_element_order: Option<&[Value]>,
    identity: &dyn Fn(&Value) -> Option<Value>,
) -> ApiResult<Vec<Value>> {
    let patch_ids: Vec<Value> = patch.iter().filter_map(|e| identity(e)).collect();
    let Some(order) = set_element_order else {
        return Ok(patch_ids);
    };
    let order_ids: Vec<Value> = order.iter().filter_map(identity).collect();
    let mut positions = patch_ids
        .iter()
        .map(|id| order_ids.iter().position(|o| o == id));
    let mut last = None;
    let in_order = positions.all(|p| match p {
        Some(p) if last.is_none_or(|l| l < p) => {
            last = Some(p);
            true
        }
        _ => false,
    });
    if !in_order {
        return Err(ApiError::unclassified(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            Value::Array(patch.iter().map(|e| (*e).clone()).collect()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(order_ids)
}

/// Order a merged list as kube-apiserver's strategic merge does: the elements named by the patch
/// (`order`) in that order, the others in their live order, interleaved so that a live-only element
/// goes before a patch element it preceded in the live list, and after any new element.
fn order_like_the_server(
    merged: Vec<Value>,
    live: &[Value],
    order: &[Value],
    identity: &dyn Fn(&Value) -> Option<Value>,
) -> Vec<Value> {
    let position_in = |list: &[Value], e: &Value| {
        let id = identity(e)?;
        list.iter().position(|x| *x == id)
    };
    let live_ids: Vec<Value> = live.iter().filter_map(identity).collect();
    let (mut named, live_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|e| position_in(order, e).is_some());
    named.sort_by_key(|e| position_in(order, e));
    let mut out = Vec::with_capacity(named.len() + live_only.len());
    let mut live_only = live_only.into_iter().peekable();
    let mut named = named.into_iter().peekable();
    loop {
        let take_live_only = match (live_only.peek(), named.peek()) {
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
            (Some(l), Some(n)) => {
                matches!((position_in(&live_ids, l), position_in(&live_ids, n)), (Some(l), Some(n)) if l < n)
            }
        };
        out.extend(if take_live_only {
            live_only.next()
        } else {
            named.next()
        });
    }
    out
}
