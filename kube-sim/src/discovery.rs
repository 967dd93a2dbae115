//! Discovery documents (legacy, unaggregated: clients asking for aggregated discovery fall back)
//! and a minimal OpenAPI.

use axum::body::Body;
use http::Response;
use serde_json::{Value, json};

use crate::api::json_response;
use crate::resources::{ResourceInfo, version_priority_key};
use crate::sim::{Shared, lock_shared as lock};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn api_versions(shared: &Shared) -> Response<Body> {
    json_response(
        200,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
        }),
    )
}

fn groups(shared: &Shared) -> Vec<(String, Vec<String>)> {
    let all = lock(&shared.store).all_resources();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in all.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version.clone())
                }
            }
            None => out.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    for (_, vs) in out.iter_mut() {
        vs.sort_by_key(|v| version_priority_key(v));
    }
    out
}

fn group_json(g: &str, vs: &[String]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
}

pub fn api_groups(shared: &Shared) -> Response<Body> {
    let gs: Vec<Value> = groups(shared)
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json_response(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}),
    )
}

pub fn api_group(shared: &Shared, group: &str) -> Response<Body> {
    match groups(shared).into_iter().find(|(g, _)| g == group) {
        Some((g, vs)) => {
            let mut j = group_json(&g, &vs);
            j["kind"] = json!("APIGroup");
            j["apiVersion"] = json!("v1");
            json_response(200, &j)
        }
        None => page_not_found(),
    }
}

/// What the real server's mux answers for a path no API serves.
pub fn page_not_found() -> Response<Body> {
    let mut r = Response::new(Body::from("404 page not found\n"));
    *r.status_mut() = http::StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found() -> Response<Body> {
    json_response(
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "the server could not find the requested resource", "reason": "NotFound", "details": {}, "code": 404}),
    )
}

fn resource_json(r: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    if r.group == "apps"
        && matches!(
            r.plural.as_str(),
            "deployments" | "statefulsets" | "replicasets"
        )
    {
        out.push(json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    if r.status {
        out.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
    }
    out
}

pub fn group_version(shared: &Shared, group: &str, version: &str) -> Response<Body> {
    let all = lock(&shared.store).all_resources();
    let rs: Vec<&ResourceInfo> = all
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return not_found();
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = rs.iter().flat_map(|r| resource_json(r)).collect();
    json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// OpenAPI v3, reduced to what clients need to discover server capabilities: per group-version,
/// the resource paths with their operations' `x-kubernetes-group-version-kind` and query parameters
/// (kubectl checks `fieldValidation` support there). Component schemas are not served (kube-sim has
/// no built-in OpenAPI models); `kubectl explain` and client-side schema validation therefore do not
/// work against kube-sim. `/openapi/v2` is 404, as on servers that disabled it.
pub fn openapi(shared: &Shared, path: &str) -> Response<Body> {
    let all = lock(&shared.store).all_resources();
    let mut gvs: Vec<(String, String)> = Vec::new();
    for r in &all {
        let gv = (r.group.clone(), r.version.clone());
        if !gvs.contains(&gv) {
            gvs.push(gv);
        }
    }
    let gv_path = |g: &str, v: &str| {
        if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        }
    };
    if path == "/openapi/v3" {
        let mut paths = serde_json::Map::new();
        for (g, v) in &gvs {
            let doc = gv_doc(&all, g, v);
            let hash = crate::util::short_hash(&doc);
            let p = gv_path(g, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
        return json_response(200, &json!({"paths": paths}));
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3/") {
        for (g, v) in &gvs {
            if gv_path(g, v) == rest {
                return json_response(200, &gv_doc(&all, g, v));
            }
        }
    }
    not_found()
}

fn gv_doc(all: &[ResourceInfo], group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let param = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let write_params = json!([
        param("dryRun"),
        param("fieldManager"),
        param("fieldValidation")
    ]);
    let mut patch_params = write_params.as_array().cloned().unwrap_or_default();
    patch_params.push(param("force"));
    for r in all
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let coll = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": r.kind});
        let op = |id: &str, params: &Value| {
            json!({
                "operationId": format!("{id}{}", r.kind),
                "x-kubernetes-action": id,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(
            coll.clone(),
            json!({"get": op("list", &json!([])), "post": op("post", &write_params)}),
        );
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({
                "get": op("get", &json!([])),
                "put": op("put", &write_params),
                "patch": op("patch", &Value::Array(patch_params.clone())),
                "delete": op("delete", &json!([param("dryRun")])),
            }),
        );
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": {}}})
}

/// The aggregated-discovery version the client prefers (`v2` or `v2beta1`), if its Accept header
/// asks for `APIGroupDiscoveryList` before plain JSON.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p = part.trim();
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if p.contains("v=v2") {
                return Some("v2");
            }
        } else if p.starts_with("application/json") || p.starts_with("*/*") {
            return None;
        }
    }
    None
}

fn resource_discovery(r: &ResourceInfo) -> Value {
    let mut j = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        j["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        j["categories"] = json!(r.categories);
    }
    let mut subs = Vec::new();
    if r.status {
        subs.push(json!({"subresource": "status", "responseKind": {"group": r.group, "version": r.version, "kind": r.kind}, "verbs": ["get", "patch", "update"]}));
    }
    if r.group == "apps"
        && matches!(
            r.plural.as_str(),
            "deployments" | "statefulsets" | "replicasets"
        )
    {
        subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]}));
    }
    if !subs.is_empty() {
        j["subresources"] = Value::Array(subs);
    }
    j
}

/// Aggregated discovery (`apidiscovery.k8s.io` `APIGroupDiscoveryList`) for `/api` (core) or `/apis`.
pub fn aggregated(shared: &Shared, core: bool, version: &str) -> Response<Body> {
    let all = lock(&shared.store).all_resources();
    let mut items = Vec::new();
    let group_names: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        groups(shared)
    };
    for (g, vs) in group_names {
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| {
                let resources: Vec<Value> = all
                    .iter()
                    .filter(|r| r.group == g && r.version == *v)
                    .map(resource_discovery)
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}),
        );
    }
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let mut r = json_response(200, &body);
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    if let Ok(v) = http::HeaderValue::from_str(&ct) {
        r.headers_mut().insert("content-type", v);
    }
    r
}
