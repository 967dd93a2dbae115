//! `meta.k8s.io/v1` Table output (server-side printing) and the JSONPath subset printer columns use.

use serde_json::{Value, json};

use crate::resources::ResourceInfo;
use crate::util::{age_of, human_duration, parse_time};

#[derive(Debug, Clone)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(String, String),
}

#[derive(Debug, Clone)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    /// Parse `.a.b`, `.a['x-y']`, `.a[0]`, `.a[*]`, `.a[?(@.type=="Ready")].status`, optionally wrapped in `{}`.
    pub fn parse(s: &str) -> Option<JsonPath> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(s);
        let s = s.strip_prefix('$').unwrap_or(s);
        let b = s.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        while i < b.len() {
            match b[i] {
                b'.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                        j += 1;
                    }
                    if j == start {
                        return None;
                    }
                    steps.push(Step::Field(s[start..j].to_string()));
                    i = j;
                }
                b'[' => {
                    let end = s[i..].find(']')? + i;
                    let inner = s[i + 1..end].trim();
                    if inner == "*" {
                        steps.push(Step::All);
                    } else if let Ok(n) = inner.parse::<usize>() {
                        steps.push(Step::Index(n));
                    } else if inner.len() >= 2
                        && ((inner.starts_with('\'') && inner.ends_with('\''))
                            || (inner.starts_with('"') && inner.ends_with('"')))
                    {
                        steps.push(Step::Field(inner[1..inner.len() - 1].to_string()));
                    } else if let Some(f) =
                        inner.strip_prefix("?(@.").and_then(|x| x.strip_suffix(')'))
                    {
                        let (k, v) = f.split_once("==")?;
                        let v = v.trim().trim_matches('"').trim_matches('\'');
                        steps.push(Step::Filter(k.trim().to_string(), v.to_string()));
                    } else {
                        return None;
                    }
                    i = end + 1;
                }
                _ => return None,
            }
        }
        if steps.is_empty() {
            return None;
        }
        Some(JsonPath(steps))
    }

    pub fn eval<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![v];
        for step in &self.0 {
            let mut next = Vec::new();
            for c in cur {
                match step {
                    Step::Field(f) => {
                        if let Some(x) = c.get(f) {
                            next.push(x)
                        }
                    }
                    Step::Index(n) => {
                        if let Some(x) = c.get(*n) {
                            next.push(x)
                        }
                    }
                    Step::All => match c {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter(k, val) => {
                        if let Some(a) = c.as_array() {
                            next.extend(a.iter().filter(|e| {
                                e.get(k).is_some_and(|x| match x {
                                    Value::String(s) => s == val,
                                    other => val.as_str() == other.to_string().as_str(),
                                })
                            }))
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }
}

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

pub struct Columns {
    pub defs: Vec<Value>,
    cells: Vec<Cell>,
}

enum Cell {
    Name,
    Age,
    Path(Option<JsonPath>, String),
    Builtin(fn(&Value) -> Value),
}

fn col(name: &str, typ: &str, format: &str, desc: &str, priority: i64) -> Value {
    json!({"name": name, "type": typ, "format": format, "description": desc, "priority": priority})
}

fn ports_str(o: &Value) -> Value {
    let ports = o.pointer("/spec/ports").and_then(Value::as_array);
    let s: Vec<String> = ports
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let port = p["port"].as_i64().unwrap_or(0);
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{port}:{np}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    json!(if s.is_empty() {
        "<none>".to_string()
    } else {
        s.join(",")
    })
}

fn external_ip(o: &Value) -> Value {
    let typ = o
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let ing: Vec<String> = o
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    i["ip"]
                        .as_str()
                        .or(i["hostname"].as_str())
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    json!(match typ {
        "LoadBalancer" if ing.is_empty() => "<pending>".to_string(),
        "LoadBalancer" => ing.join(","),
        "ExternalName" => o
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => "<none>".to_string(),
    })
}

/// `metav1.FormatLabelSelector`: requirements sorted by key, `<none>` for an empty selector.
fn label_selector_str(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("").to_string();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            _ => format!("!{key}"),
        };
        reqs.push((key, text));
    }
    reqs.sort();
    if reqs.is_empty() {
        "<none>".into()
    } else {
        reqs.into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `labels.FormatLabels` of a Service selector: `k=v` pairs sorted by key, `<none>` when empty.
fn service_selector_str(o: &Value) -> Value {
    let pairs: Vec<String> = o
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    json!(if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    })
}

/// One field of every container of a pod template, comma-separated (the wide Containers/Images columns).
fn template_containers(o: &Value, field: &str) -> Value {
    let values: Vec<&str> = o
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c[field].as_str())
        .collect();
    json!(values.join(","))
}

/// A PodDisruptionBudget bound (`IntOrString.String()`), `N/A` when unset.
fn pdb_bound(o: &Value, field: &str) -> Value {
    json!(match o.pointer(&format!("/spec/{field}")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    })
}

/// The subjects of a (Cluster)RoleBinding of one kind, as `rbac.SubjectsStrings` lists them.
fn subjects_of(o: &Value, kind: &str) -> Value {
    let names: Vec<String> = o["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == kind)
        .map(|s| {
            let name = s["name"].as_str().unwrap_or("");
            if kind == "ServiceAccount" {
                format!("{}/{name}", s["namespace"].as_str().unwrap_or(""))
            } else {
                name.to_string()
            }
        })
        .collect();
    json!(names.join(", "))
}

impl Columns {
    pub fn for_resource(ri: &ResourceInfo) -> Columns {
        let name_def = col(
            "Name",
            "string",
            "name",
            "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
            0,
        );
        let age_def = col(
            "Age",
            "string",
            "",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
            0,
        );
        if let Some(crd) = &ri.crd {
            if crd.printer_columns.is_empty() {
                return Columns {
                    defs: vec![name_def, age_def],
                    cells: vec![Cell::Name, Cell::Age],
                };
            }
            let mut defs = vec![name_def];
            let mut cells = vec![Cell::Name];
            for c in &crd.printer_columns {
                let typ = c["type"].as_str().unwrap_or("string").to_string();
                defs.push(json!({
                    "name": c["name"],
                    "type": typ,
                    "format": c["format"].as_str().unwrap_or(""),
                    "description": c["description"].as_str().unwrap_or(""),
                    "priority": c["priority"].as_i64().unwrap_or(0),
                }));
                cells.push(Cell::Path(
                    JsonPath::parse(c["jsonPath"].as_str().unwrap_or("")),
                    typ,
                ));
            }
            return Columns { defs, cells };
        }
        let mut defs = vec![name_def];
        let mut cells = vec![Cell::Name];
        // Columns after Age: the wide ones (priority 1), which kubectl shows with `-o wide`.
        let mut wide: Vec<(Value, Cell)> = Vec::new();
        let mut add = |d: Value, c: Cell| {
            defs.push(d);
            cells.push(c);
        };
        match (ri.group.as_str(), ri.plural.as_str()) {
            ("", "configmaps") => add(
                col("Data", "string", "", "", 0),
                Cell::Builtin(|o| {
                    json!(
                        o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                            + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0)
                    )
                }),
            ),
            ("", "secrets") => {
                add(
                    col("Type", "string", "", "", 0),
                    Cell::Builtin(|o| o["type"].clone()),
                );
                add(
                    col("Data", "string", "", "", 0),
                    Cell::Builtin(|o| json!(o["data"].as_object().map(|m| m.len()).unwrap_or(0))),
                );
            }
            // v1.33 still counts the secrets (the column went in v1.35).
            ("", "serviceaccounts") => add(
                col("Secrets", "string", "", "", 0),
                Cell::Builtin(|o| json!(o["secrets"].as_array().map(|a| a.len()).unwrap_or(0))),
            ),
            ("", "namespaces") => add(
                col("Status", "string", "", "", 0),
                Cell::Builtin(|o| o.pointer("/status/phase").cloned().unwrap_or(json!(""))),
            ),
            ("", "services") => {
                add(
                    col("Type", "string", "", "", 0),
                    Cell::Builtin(|o| {
                        o.pointer("/spec/type")
                            .cloned()
                            .unwrap_or(json!("ClusterIP"))
                    }),
                );
                add(
                    col("Cluster-IP", "string", "", "", 0),
                    Cell::Builtin(|o| {
                        o.pointer("/spec/clusterIP")
                            .cloned()
                            .unwrap_or(json!("<none>"))
                    }),
                );
                add(
                    col("External-IP", "string", "", "", 0),
                    Cell::Builtin(external_ip),
                );
                add(
                    col("Port(s)", "string", "", "", 0),
                    Cell::Builtin(ports_str),
                );
                wide.push((
                    col("Selector", "string", "", "", 1),
                    Cell::Builtin(service_selector_str),
                ));
            }
            ("apps", "deployments") => {
                add(
                    col("Ready", "string", "", "", 0),
                    Cell::Builtin(|o| {
                        json!(format!(
                            "{}/{}",
                            o.pointer("/status/readyReplicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(0),
                            o.pointer("/spec/replicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(0)
                        ))
                    }),
                );
                add(
                    col("Up-to-date", "integer", "", "", 0),
                    Cell::Builtin(|o| {
                        json!(
                            o.pointer("/status/updatedReplicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(0)
                        )
                    }),
                );
                add(
                    col("Available", "integer", "", "", 0),
                    Cell::Builtin(|o| {
                        json!(
                            o.pointer("/status/availableReplicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(0)
                        )
                    }),
                );
                wide.push((
                    col("Containers", "string", "", "", 1),
                    Cell::Builtin(|o| template_containers(o, "name")),
                ));
                wide.push((
                    col("Images", "string", "", "", 1),
                    Cell::Builtin(|o| template_containers(o, "image")),
                ));
                wide.push((
                    col("Selector", "string", "", "", 1),
                    Cell::Builtin(|o| json!(label_selector_str(&o["spec"]["selector"]))),
                ));
            }
            ("apps", "statefulsets") => {
                add(
                    col("Ready", "string", "", "", 0),
                    Cell::Builtin(|o| {
                        json!(format!(
                            "{}/{}",
                            o.pointer("/status/readyReplicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(0),
                            o.pointer("/spec/replicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(0)
                        ))
                    }),
                );
                wide.push((
                    col("Containers", "string", "", "", 1),
                    Cell::Builtin(|o| template_containers(o, "name")),
                ));
                wide.push((
                    col("Images", "string", "", "", 1),
                    Cell::Builtin(|o| template_containers(o, "image")),
                ));
            }
            ("policy", "poddisruptionbudgets") => {
                add(
                    col("Min Available", "string", "", "", 0),
                    Cell::Builtin(|o| pdb_bound(o, "minAvailable")),
                );
                add(
                    col("Max Unavailable", "string", "", "", 0),
                    Cell::Builtin(|o| pdb_bound(o, "maxUnavailable")),
                );
                add(
                    col("Allowed Disruptions", "integer", "", "", 0),
                    Cell::Builtin(|o| {
                        json!(
                            o.pointer("/status/disruptionsAllowed")
                                .and_then(Value::as_i64)
                                .unwrap_or(0)
                        )
                    }),
                );
            }
            ("networking.k8s.io", "networkpolicies") => add(
                col("Pod-Selector", "string", "", "", 0),
                Cell::Builtin(|o| json!(label_selector_str(&o["spec"]["podSelector"]))),
            ),
            ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
                add(
                    col("Role", "string", "", "", 0),
                    Cell::Builtin(|o| {
                        json!(format!(
                            "{}/{}",
                            o["roleRef"]["kind"].as_str().unwrap_or(""),
                            o["roleRef"]["name"].as_str().unwrap_or("")
                        ))
                    }),
                );
                wide.push((
                    col("Users", "string", "", "", 1),
                    Cell::Builtin(|o| subjects_of(o, "User")),
                ));
                wide.push((
                    col("Groups", "string", "", "", 1),
                    Cell::Builtin(|o| subjects_of(o, "Group")),
                ));
                wide.push((
                    col("ServiceAccounts", "string", "", "", 1),
                    Cell::Builtin(|o| subjects_of(o, "ServiceAccount")),
                ));
            }
            ("coordination.k8s.io", "leases") => add(
                col("Holder", "string", "", "", 0),
                Cell::Builtin(|o| {
                    o.pointer("/spec/holderIdentity")
                        .cloned()
                        .unwrap_or(json!(""))
                }),
            ),
            // Kinds without a printer of their own get the default table: name and creation time.
            ("apiextensions.k8s.io", "customresourcedefinitions")
            | ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
                defs.push(col("Created At", "date", "", "", 0));
                cells.push(Cell::Builtin(|o| {
                    o.pointer("/metadata/creationTimestamp")
                        .cloned()
                        .unwrap_or(Value::Null)
                }));
                return Columns { defs, cells };
            }
            _ => {}
        }
        defs.push(age_def);
        cells.push(Cell::Age);
        for (d, c) in wide {
            defs.push(d);
            cells.push(c);
        }
        Columns { defs, cells }
    }

    pub fn row(&self, obj: &Value, include_object: &str) -> Value {
        let cells: Vec<Value> = self
            .cells
            .iter()
            .map(|c| match c {
                Cell::Name => obj.pointer("/metadata/name").cloned().unwrap_or(json!("")),
                Cell::Age => json!(age_of(obj)),
                Cell::Builtin(f) => f(obj),
                Cell::Path(None, _) => Value::Null,
                Cell::Path(Some(p), typ) => {
                    let vals = p.eval(obj);
                    match vals.first() {
                        None => Value::Null,
                        Some(v) if typ == "date" => v
                            .as_str()
                            .and_then(parse_time)
                            .map(|t| {
                                json!(human_duration(
                                    jiff::Timestamp::now().as_second() - t.as_second()
                                ))
                            })
                            .unwrap_or(Value::Null),
                        Some(v) if vals.len() == 1 => match (typ.as_str(), v) {
                            ("string", Value::Object(_) | Value::Array(_)) => json!(v.to_string()),
                            _ => (*v).clone(),
                        },
                        Some(_) => json!(
                            vals.iter()
                                .map(|v| match v {
                                    Value::String(s) => s.clone(),
                                    o => o.to_string(),
                                })
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                    }
                }
            })
            .collect();
        let object = match include_object {
            "None" => Value::Null,
            "Object" => obj.clone(),
            _ => {
                let mut md = obj["metadata"].clone();
                if let Some(m) = md.as_object_mut() {
                    m.remove("managedFields");
                }
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md})
            }
        };
        let mut row = json!({"cells": cells});
        if !object.is_null() {
            row["object"] = object;
        }
        row
    }

    pub fn table(
        &self,
        objs: &[Value],
        list_meta: Value,
        include_object: &str,
        headers: bool,
    ) -> Value {
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "columnDefinitions": if headers { Value::Array(self.defs.clone()) } else { Value::Null },
            "rows": objs.iter().map(|o| self.row(o, include_object)).collect::<Vec<_>>(),
        })
    }
}
