//! CustomResourceDefinitions: CRD validation, and structural-schema pruning, defaulting and
//! validation of custom resources.

use serde_json::{Map, Value, json};

use crate::errors::{Cause, value_repr};

/// Validate a CRD object as the apiextensions server would (the parts kube-sim relies on).
/// Returns causes for a 422.
pub fn validate_crd(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec
        .pointer("/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = spec
        .pointer("/names/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        Some(other) => causes.push(Cause {
            field: "spec.scope".into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                other
            ),
        }),
        None => causes.push(Cause::required("spec.scope", "")),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!(null),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    if let Some(strategy) = spec.pointer("/conversion/strategy").and_then(Value::as_str)
        && strategy != "None"
    {
        causes.push(Cause::forbidden(
            "spec.conversion.strategy",
            &format!(
                "kube-sim does not implement conversion webhooks (strategy {strategy:?}); only \"None\" is supported"
            ),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        match v.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause::required(
                &format!("{base}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(s) => {
                let mut cel = Vec::new();
                find_cel(s, &format!("{base}.schema.openAPIV3Schema"), &mut cel);
                for p in cel {
                    causes.push(Cause::forbidden(
                        &p,
                        "kube-sim does not evaluate CEL validation rules (x-kubernetes-validations); \
                         it rejects CRDs that carry them rather than silently accepting objects the real API server would reject",
                    ));
                }
                if s["type"].as_str() != Some("object") {
                    causes.push(Cause::invalid(
                        &format!("{base}.schema.openAPIV3Schema.type"),
                        &s["type"],
                        "must be object at the root",
                    ));
                }
                check_structural(
                    s,
                    &format!("{base}.schema.openAPIV3Schema"),
                    true,
                    &mut causes,
                );
            }
        }
        if let Some(cols) = v["additionalPrinterColumns"].as_array() {
            for (j, c) in cols.iter().enumerate() {
                let jp = c["jsonPath"].as_str().unwrap_or("");
                if crate::table::JsonPath::parse(jp).is_none() {
                    causes.push(Cause::invalid(
                        &format!("{base}.additionalPrinterColumns[{j}].jsonPath"),
                        &json!(jp),
                        "kube-sim could not parse this JSONPath (supported: .a.b, ['x'], [n], [*], [?(@.f==\"v\")])",
                    ));
                }
            }
        }
    }
    causes
}

fn find_cel(s: &Value, path: &str, out: &mut Vec<String>) {
    match s {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{path}.{k}");
                if k == "x-kubernetes-validations" {
                    out.push(p);
                } else {
                    find_cel(v, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                find_cel(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The structural-schema rules kube-sim can check cheaply: every node has a type (unless
/// int-or-string / preserve-unknown-fields), and object nodes have properties or additionalProperties
/// or preserve-unknown-fields.
fn check_structural(s: &Value, path: &str, _root: bool, causes: &mut Vec<Cause>) {
    let int_or_string = s["x-kubernetes-int-or-string"].as_bool() == Some(true);
    let preserve = s["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    if s.get("type").is_none()
        && !int_or_string
        && !preserve
        && s.get("anyOf").is_none()
        && s.get("allOf").is_none()
    {
        causes.push(Cause::required(
            &format!("{path}.type"),
            "must not be empty for specified object fields",
        ));
    }
    if let Some(props) = s["properties"].as_object() {
        for (k, v) in props {
            check_structural(v, &format!("{path}.properties[{k}]"), false, causes);
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        check_structural(items, &format!("{path}.items"), false, causes);
    }
    if let Some(ap) = s.get("additionalProperties").filter(|i| i.is_object()) {
        check_structural(ap, &format!("{path}.additionalProperties"), false, causes);
    }
}

const META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Prune unknown fields (structural schema semantics). Pruned field paths are appended to `removed`.
pub fn prune(obj: &mut Value, schema: &Value, root: bool) -> Vec<String> {
    let mut removed = Vec::new();
    prune_at(obj, schema, root, "", &mut removed);
    removed
}

fn prune_at(obj: &mut Value, schema: &Value, root: bool, path: &str, removed: &mut Vec<String>) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    let embedded = schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
    match obj {
        Value::Object(m) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if (root || embedded) && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if (root || embedded) && k == "metadata" {
                    if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut)
                        && root
                    {
                        md.retain(|k, _| META_FIELDS.contains(&k.as_str()));
                    }
                    continue;
                }
                let sub = join(path, &k);
                if let Some(ps) = props.and_then(|p| p.get(&k)) {
                    if let Some(v) = m.get_mut(&k) {
                        prune_at(v, ps, false, &sub, removed);
                    }
                } else if let Some(ap) = additional {
                    if ap.is_object()
                        && let Some(v) = m.get_mut(&k)
                    {
                        prune_at(v, ap, false, &sub, removed);
                    }
                } else if !preserve {
                    m.remove(&k);
                    removed.push(sub);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, v) in a.iter_mut().enumerate() {
                    prune_at(v, items, false, &format!("{path}[{i}]"), removed);
                }
            }
        }
        _ => {}
    }
}

/// Apply `default`s (for absent fields, and for nulls of non-nullable fields).
pub fn apply_defaults(obj: &mut Value, schema: &Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, ps) in props {
                    let nullable = ps["nullable"].as_bool() == Some(true);
                    match m.get(k) {
                        None => {
                            if let Some(d) = ps.get("default") {
                                m.insert(k.clone(), d.clone());
                            }
                        }
                        Some(Value::Null) if !nullable => {
                            if let Some(d) = ps.get("default") {
                                m.insert(k.clone(), d.clone());
                            } else {
                                // A null for a non-nullable field is pruned, like the real server.
                                m.remove(k);
                            }
                        }
                        _ => {}
                    }
                    if let Some(v) = m.get_mut(k) {
                        apply_defaults(v, ps);
                    }
                }
            }
            if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let known: Vec<String> = schema["properties"]
                    .as_object()
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for (k, v) in m.iter_mut() {
                    if !known.contains(k) {
                        apply_defaults(v, ap);
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for v in a.iter_mut() {
                    apply_defaults(v, items);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Validate a custom resource against its structural schema. `path` is the field path prefix ("" at the root).
pub fn validate(obj: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let in_body = |p: &str| {
        if p.is_empty() {
            "body".to_string()
        } else {
            format!("{p} in body")
        }
    };
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if obj.is_null() {
        if schema["nullable"].as_bool() != Some(true) && schema.get("type").is_some() {
            causes.push(Cause {
                field: path.into(),
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: \"null\": {} must be of type {}: \"null\"",
                    in_body(path),
                    schema["type"].as_str().unwrap_or("")
                ),
            });
        }
        return;
    }
    if int_or_string {
        if !(obj.is_string() || type_name(obj) == "integer") {
            causes.push(Cause {
                field: path.into(),
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: {}: {} must be of type integer or string",
                    value_repr(obj),
                    in_body(path)
                ),
            });
            return;
        }
    } else if let Some(t) = schema["type"].as_str() {
        let actual = type_name(obj);
        let ok = actual == t || (t == "number" && actual == "integer");
        // An integral float (e.g. 3.0) is accepted for integer types.
        let ok = ok || (t == "integer" && obj.as_f64().is_some_and(|f| f.fract() == 0.0));
        if !ok {
            causes.push(Cause {
                field: path.into(),
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: \"{}\": {} must be of type {}: \"{}\"",
                    actual,
                    in_body(path),
                    t,
                    actual
                ),
            });
            return;
        }
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(obj)
    {
        let supported: Vec<String> = e.iter().map(value_repr).collect();
        causes.push(Cause {
            field: path.into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                value_repr(obj),
                supported.join(", ")
            ),
        });
    }
    if let Some(n) = obj.as_f64() {
        if let Some(max) = schema["maximum"].as_f64() {
            let excl = schema["exclusiveMaximum"].as_bool() == Some(true);
            if n > max || (excl && n == max) {
                causes.push(Cause::invalid(
                    path,
                    obj,
                    &format!(
                        "{} should be less than {}{}",
                        in_body(path),
                        if excl { "" } else { "or equal to " },
                        schema["maximum"]
                    ),
                ));
            }
        }
        if let Some(min) = schema["minimum"].as_f64() {
            let excl = schema["exclusiveMinimum"].as_bool() == Some(true);
            if n < min || (excl && n == min) {
                causes.push(Cause::invalid(
                    path,
                    obj,
                    &format!(
                        "{} should be greater than {}{}",
                        in_body(path),
                        if excl { "" } else { "or equal to " },
                        schema["minimum"]
                    ),
                ));
            }
        }
        if let Some(m) = schema["multipleOf"].as_f64()
            && m != 0.0
            && (n / m).fract() != 0.0
        {
            causes.push(Cause::invalid(
                path,
                obj,
                &format!(
                    "{} should be a multiple of {}",
                    in_body(path),
                    schema["multipleOf"]
                ),
            ));
        }
    }
    if let Some(s) = obj.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema["maxLength"].as_u64()
            && len > max
        {
            causes.push(Cause {
                field: path.into(),
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {max} bytes"),
            });
        }
        if let Some(min) = schema["minLength"].as_u64()
            && len < min
        {
            causes.push(Cause::invalid(
                path,
                obj,
                &format!("{} should be at least {} chars long", in_body(path), min),
            ));
        }
        if let Some(p) = schema["pattern"].as_str() {
            match compiled_pattern(p) {
                Ok(re) if !re.is_match(s) => causes.push(Cause::invalid(
                    path,
                    obj,
                    &format!("{} should match '{}'", in_body(path), p),
                )),
                Ok(_) => {}
                Err(_) => causes.push(Cause::invalid(
                    path,
                    obj,
                    &format!("kube-sim cannot compile the schema pattern '{p}' (ECMA-262 features outside the Rust regex syntax)"),
                )),
            }
        }
        if let Some(f) = schema["format"].as_str()
            && !format_ok(f, s)
        {
            // A format is a type to the validator: a mismatch is a type error.
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                ..Cause::invalid(
                    path,
                    obj,
                    &format!("{} must be of type {}: {:?}", in_body(path), f, s),
                )
            });
        }
    }
    if let Some(a) = obj.as_array() {
        let n = a.len() as u64;
        if let Some(max) = schema["maxItems"].as_u64()
            && n > max
        {
            causes.push(Cause {
                field: path.into(),
                reason: "FieldValueTooMany",
                message: format!("Too many: {n}: must have at most {max} items"),
            });
        }
        if let Some(min) = schema["minItems"].as_u64()
            && n < min
        {
            causes.push(Cause::invalid(
                path,
                obj,
                &format!("{} should have at least {} items", in_body(path), min),
            ));
        }
        let list_type = schema["x-kubernetes-list-type"].as_str();
        if schema["uniqueItems"].as_bool() == Some(true) || list_type == Some("set") {
            for (i, v) in a.iter().enumerate() {
                if a[..i].contains(v) {
                    causes.push(Cause {
                        field: format!("{path}[{i}]"),
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: {}", v),
                    });
                }
            }
        }
        if list_type == Some("map")
            && let Some(keys) = schema["x-kubernetes-list-map-keys"].as_array()
        {
            let key_of = |v: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| {
                        v.get(k.as_str().unwrap_or(""))
                            .cloned()
                            .unwrap_or(Value::Null)
                    })
                    .collect()
            };
            for (i, v) in a.iter().enumerate() {
                let k = key_of(v);
                if a[..i].iter().any(|o| key_of(o) == k) {
                    let mut km = Map::new();
                    for (kn, kv) in keys.iter().zip(k.iter()) {
                        km.insert(kn.as_str().unwrap_or("").to_string(), kv.clone());
                    }
                    causes.push(Cause {
                        field: format!("{path}[{i}]"),
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: {}", Value::Object(km)),
                    });
                }
            }
        }
        if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
            for (i, v) in a.iter().enumerate() {
                validate(v, items, &format!("{path}[{i}]"), causes);
            }
        }
    }
    if let Some(m) = obj.as_object() {
        if let Some(req) = schema["required"].as_array() {
            for r in req.iter().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    causes.push(Cause::required(&join(path, r), ""));
                }
            }
        }
        if let Some(max) = schema["maxProperties"].as_u64()
            && m.len() as u64 > max
        {
            causes.push(Cause {
                field: path.into(),
                reason: "FieldValueTooMany",
                message: format!("Too many: {}: must have at most {max} items", m.len()),
            });
        }
        if let Some(min) = schema["minProperties"].as_u64()
            && (m.len() as u64) < min
        {
            causes.push(Cause::invalid(
                path,
                obj,
                &format!("{} should have at least {} properties", in_body(path), min),
            ));
        }
        let props = schema["properties"].as_object();
        for (k, v) in m {
            if path.is_empty() && (k == "metadata" || k == "apiVersion" || k == "kind") {
                continue;
            }
            if let Some(ps) = props.and_then(|p| p.get(k)) {
                validate(v, ps, &join(path, k), causes);
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                validate(v, ap, &join(path, k), causes);
            }
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(subs) = schema[key].as_array() {
            let results: Vec<Vec<Cause>> = subs
                .iter()
                .map(|s| {
                    let mut c = Vec::new();
                    validate(obj, s, path, &mut c);
                    c
                })
                .collect();
            let passing = results.iter().filter(|c| c.is_empty()).count();
            match key {
                "allOf" => {
                    for c in results {
                        causes.extend(c);
                    }
                }
                "anyOf" if passing == 0 => causes.push(Cause::invalid(
                    path,
                    obj,
                    &format!(
                        "{} must validate at least one schema (anyOf)",
                        in_body(path)
                    ),
                )),
                "oneOf" if passing != 1 => causes.push(Cause::invalid(
                    path,
                    obj,
                    &format!(
                        "{} must validate one and only one schema (oneOf)",
                        in_body(path)
                    ),
                )),
                _ => {}
            }
        }
    }
    if let Some(not) = schema.get("not") {
        let mut c = Vec::new();
        validate(obj, not, path, &mut c);
        if c.is_empty() {
            causes.push(Cause::invalid(
                path,
                obj,
                &format!("{} must not validate the schema (not)", in_body(path)),
            ));
        }
    }
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            let b: Option<u8> = bits.parse().ok();
            match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => b.is_some_and(|b| b <= 32),
                Ok(std::net::IpAddr::V6(_)) => b.is_some_and(|b| b <= 128),
                Err(_) => false,
            }
        }),
        "uuid" => uuid::Uuid::parse_str(s).is_ok(),
        "date-time" | "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "hostname" => crate::util::is_dns1123_subdomain(s),
        "int32" | "int64" | "float" | "double" | "password" | "" => true,
        // Formats kube-openapi does not check are accepted by the real server too.
        _ => true,
    }
}

/// Schema `pattern`s compiled once per distinct pattern (validation runs on every write).
fn compiled_pattern(p: &str) -> Result<regex::Regex, ()> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<HashMap<String, Result<regex::Regex, ()>>>> =
        LazyLock::new(Mutex::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = cache.get(p) {
        return r.clone();
    }
    let r = regex::Regex::new(p).map_err(|_| ());
    cache.insert(p.to_string(), r.clone());
    r
}
