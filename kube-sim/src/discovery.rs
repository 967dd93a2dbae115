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

/// OpenAPI v3, reduced to what clients need: per group-version, the resource paths with their
/// operations' `x-kubernetes-group-version-kind` and query parameters (kubectl checks
/// `fieldValidation` support there), and for custom resources the component schemas the real
/// server builds from the CRD's `openAPIV3Schema` (`com.example.v1.Widget`, `...WidgetList`, and a
/// reduced `ObjectMeta`/`ListMeta`), which is what `kubectl explain` reads. Built-in kinds have no
/// schemas (kube-sim has no built-in OpenAPI models). `/openapi/v2` is 404, as on servers that
/// disabled it.
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
    let mut schemas = serde_json::Map::new();
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
        if let Some(crd) = &r.crd {
            let name = schema_name(group, version, &r.kind);
            let list_name = format!("{name}List");
            let with_body = |op: &mut Value, schema: &str| {
                let content = json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}});
                op["responses"]["200"]["content"] =
                    json!({"application/json": content, "application/yaml": content});
            };
            if let Some(ops) = paths.get_mut(&coll) {
                with_body(&mut ops["get"], &list_name);
                with_body(&mut ops["post"], &name);
            }
            if let Some(ops) = paths.get_mut(&format!("{coll}/{{name}}")) {
                for verb in ["get", "put", "patch"] {
                    with_body(&mut ops[verb], &name);
                }
            }
            schemas.insert(
                name,
                crd_schema(crd.schema.as_ref(), group, version, &r.kind),
            );
            schemas.insert(list_name, crd_list_schema(group, version, r));
        }
    }
    let has_crds = !schemas.is_empty();
    if has_crds {
        schemas.extend(meta_schemas());
    }
    // The real server serves a CRD group-version from the apiextensions builder, which titles it so.
    let info = if has_crds {
        json!({"title": "Kubernetes CRD Swagger", "version": "v0.1.0"})
    } else {
        json!({"title": "Kubernetes", "version": "v1.33.0"})
    };
    json!({"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": schemas}})
}

/// The component name of a kind: the group reversed (`meshery.io` → `io.meshery`), then version
/// and kind, as kube-openapi's `ToRESTFriendlyName`/canonical naming produces it.
fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

fn meta_ref(schema: &str, description: &str) -> Value {
    json!({"description": description, "allOf": [{"$ref": format!("#/components/schemas/{META}.{schema}")}]})
}

fn type_meta_properties() -> serde_json::Map<String, Value> {
    let mut props = serde_json::Map::new();
    props.insert("apiVersion".into(), json!({"description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources", "type": "string"}));
    props.insert("kind".into(), json!({"description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds", "type": "string"}));
    props
}

/// The CRD version's `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` set (as the real
/// server's CRD OpenAPI builder does) and the kind's `x-kubernetes-group-version-kind`.
fn crd_schema(schema: Option<&Value>, group: &str, version: &str, kind: &str) -> Value {
    let mut s = match schema {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        _ => json!({"type": "object"}),
    };
    let mut props = match s.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => serde_json::Map::new(),
    };
    props.extend(type_meta_properties());
    props.insert(
        "metadata".into(),
        meta_ref("ObjectMeta", "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"),
    );
    s["properties"] = Value::Object(props);
    s["x-kubernetes-group-version-kind"] =
        json!([{"group": group, "kind": kind, "version": version}]);
    s
}

fn crd_list_schema(group: &str, version: &str, r: &ResourceInfo) -> Value {
    let mut props = type_meta_properties();
    props.insert(
        "items".into(),
        json!({"description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", r.plural), "type": "array",
            "items": {"$ref": format!("#/components/schemas/{}", schema_name(group, version, &r.kind))}}),
    );
    props.insert(
        "metadata".into(),
        meta_ref("ListMeta", "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"),
    );
    json!({
        "description": format!("{}List is a list of {}", r.kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": props,
        "x-kubernetes-group-version-kind": [{"group": group, "kind": format!("{}List", r.kind), "version": version}],
    })
}

/// The `meta.k8s.io/v1` schemas the CRD schemas refer to, reduced to field names and types.
fn meta_schemas() -> serde_json::Map<String, Value> {
    let time = json!({"$ref": format!("#/components/schemas/{META}.Time")});
    let string_map =
        json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}});
    let strings = json!({"type": "array", "items": {"type": "string", "default": ""}});
    let int64 = json!({"type": "integer", "format": "int64"});
    let string = json!({"type": "string"});
    let array_of = |s: &str| json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{META}.{s}")}});
    let mut out = serde_json::Map::new();
    out.insert(format!("{META}.ObjectMeta"), json!({
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "type": "object",
        "properties": {
            "annotations": string_map, "creationTimestamp": time, "deletionGracePeriodSeconds": int64,
            "deletionTimestamp": time, "finalizers": strings, "generateName": string, "generation": int64,
            "labels": string_map, "managedFields": array_of("ManagedFieldsEntry"), "name": string,
            "namespace": string, "ownerReferences": array_of("OwnerReference"), "resourceVersion": string,
            "selfLink": string, "uid": string,
        },
    }));
    out.insert(format!("{META}.ListMeta"), json!({
        "description": "ListMeta describes metadata that synthetic resources must have, including lists and various status objects. A resource may have only one of {ObjectMeta, ListMeta}.",
        "type": "object",
        "properties": {"continue": string, "remainingItemCount": int64, "resourceVersion": string, "selfLink": string},
    }));
    out.insert(format!("{META}.OwnerReference"), json!({
        "description": "OwnerReference contains enough information to let you identify an owning object. An owning object must be in the same namespace as the dependent, or be cluster-scoped, so there is no namespace field.",
        "type": "object",
        "required": ["apiVersion", "kind", "name", "uid"],
        "properties": {"apiVersion": string, "blockOwnerDeletion": {"type": "boolean"}, "controller": {"type": "boolean"}, "kind": string, "name": string, "uid": string},
    }));
    out.insert(format!("{META}.ManagedFieldsEntry"), json!({
        "description": "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.",
        "type": "object",
        "properties": {"apiVersion": string, "fieldsType": string, "fieldsV1": {"type": "object"}, "manager": string, "operation": string, "subresource": string, "time": time},
    }));
    out.insert(format!("{META}.Time"), json!({
        "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.  Wrappers are provided for many of the factory methods that the time package offers.",
        "type": "string",
        "format": "date-time",
    }));
    out
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
