//! HTTP dispatch: resource verbs, watch, discovery, admin API, fault injection and accounting.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::faults::{FaultAction, WriteRecord};
use crate::resources::ResourceInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::sim::{Shared, lock_shared as lock};
use crate::ssa;
use crate::store::{Op, Store, WatchEvent, WriteCtx, schema_for};
use crate::table::{Columns, wants_table};
use crate::util::{meta_mut, now_rfc3339};

pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub content_type: String,
    pub accept: String,
    pub user_agent: String,
    pub body: Bytes,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("1") | Some("true"))
    }
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// A parsed resource request.
struct Target {
    ri: ResourceInfo,
    /// Namespace from the URL (None for cluster-scoped paths).
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    /// `/api/v1` or `/apis/g/v` discovery
    GroupVersion(String, String),
    Resource(Box<Target>),
}

fn parse_route(shared: &Shared, path: &str) -> Option<ApiResult<Route>> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if !lock(&shared.store).serves_group(group) {
        return None;
    }
    if rest.is_empty() {
        return Some(Ok(Route::GroupVersion(group.into(), version.into())));
    }
    let (ns, plural, name, sub) = match rest {
        ["namespaces", n, sub] if group.is_empty() && (*sub == "status" || *sub == "finalize") => {
            (None, "namespaces", Some(*n), Some(*sub))
        }
        ["namespaces", ns, plural, tail @ ..] => (
            Some(*ns),
            *plural,
            tail.first().copied(),
            tail.get(1).copied(),
        ),
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => unreachable!(),
    };
    if rest.len() > 5 {
        return Some(Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )));
    }
    let st = lock(&shared.store);
    let Some(ri) = st.resolve(group, version, plural) else {
        return Some(Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))));
    };
    if ns.is_some() && !ri.namespaced {
        return Some(Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )));
    }
    if ns.is_none() && ri.namespaced && name.is_some() {
        return Some(Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )));
    }
    if let Some(s) = sub {
        let ok = (s == "status" && ri.status)
            || (s == "finalize" && ri.kind == "Namespace")
            || (s == "scale"
                && ri.group == "apps"
                && matches!(
                    ri.plural.as_str(),
                    "deployments" | "statefulsets" | "replicasets"
                ));
        if !ok {
            if s == "scale"
                || s == "exec"
                || s == "log"
                || s == "eviction"
                || s == "proxy"
                || s == "portforward"
                || s == "attach"
            {
                return Some(Err(ApiError::unsupported(format!(
                    "the {s} subresource of {}",
                    ri.qualified()
                ))));
            }
            return Some(Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )));
        }
    }
    Some(Ok(Route::Resource(Box::new(Target {
        ri,
        ns: ns.map(String::from),
        name: name.map(String::from),
        sub: sub.map(String::from),
    }))))
}

fn verb_of(req: &Req, t: &Target) -> &'static str {
    match (req.method.clone(), t.name.is_some()) {
        // the deprecated watch of one named object
        (Method::GET, true) if req.flag("watch") && t.sub.is_none() => "watch",
        (Method::GET, true) => "get",
        (Method::GET, false) if req.flag("watch") => "watch",
        (Method::GET, false) => "list",
        (Method::POST, _) => "create",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        (Method::DELETE, true) => "delete",
        (Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // The real server refuses request bodies over 3 MiB.
    let body = match axum::body::to_bytes(body, 3 << 20).await {
        Ok(b) => b,
        Err(_) => {
            return json_response(
                413,
                &ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    "Request entity too large: limit is 3145728",
                )
                .to_status(),
            );
        }
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let h = |k: &str| {
        parts
            .headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let req = Req {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query,
        content_type: h("content-type"),
        accept: h("accept"),
        user_agent: h("user-agent"),
        body,
    };
    if req.path.starts_with("/_sim/") || req.path == "/_sim" {
        return crate::admin::handle(&shared, &req).await;
    }
    let route = parse_route(&shared, &req.path);
    let (verb, resource) = match &route {
        Some(Ok(Route::Resource(t))) => {
            let mut r = t.ri.qualified();
            if let Some(s) = &t.sub {
                r = format!("{r}/{s}");
            }
            (verb_of(&req, t), r)
        }
        _ => ("discovery", req.path.clone()),
    };
    // accounting
    {
        let mut stats = lock(&shared.stats);
        *stats
            .counts
            .entry(format!("{verb} {resource}"))
            .or_insert(0) += 1;
        if let Some(Ok(Route::Resource(t))) = &route
            && matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
        {
            let is_apply = req.content_type.starts_with("application/apply-patch");
            stats.writes.push(WriteRecord {
                verb: if is_apply {
                    "apply".into()
                } else {
                    verb.into()
                },
                resource: resource.clone(),
                namespace: t.ns.clone(),
                name: t.name.clone().or_else(|| {
                    serde_json::from_slice::<Value>(&req.body)
                        .ok()
                        .and_then(|v| {
                            v.pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .map(String::from)
                        })
                }),
                field_manager: req.q("fieldManager").map(String::from),
                dry_run: req.q("dryRun").is_some()
                    || (req.method == Method::DELETE
                        && serde_json::from_slice::<Value>(&req.body)
                            .ok()
                            .is_some_and(|b| {
                                b["dryRun"]
                                    .as_array()
                                    .is_some_and(|a| a.iter().any(|v| v == "All"))
                            })),
            });
        }
    }
    // faults
    let fault = lock(&shared.faults).check(verb, &req.path);
    match fault {
        Some(FaultAction::Status(code)) => {
            let (reason, msg): (&'static str, String) = match code {
                429 => ("TooManyRequests", "Too many requests, please try again later. (injected by kube-sim)".into()),
                409 => ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected by kube-sim)".into()),
                503 => ("ServiceUnavailable", "the server is currently unable to handle the request (injected by kube-sim)".into()),
                404 => ("NotFound", "the server could not find the requested resource (injected by kube-sim)".into()),
                410 => ("Expired", "too old resource version (injected by kube-sim)".into()),
                403 => ("Forbidden", "forbidden (injected by kube-sim)".into()),
                _ => ("InternalError", format!("Internal error occurred: injected by kube-sim (HTTP {code})")),
            };
            let mut resp = error_response(&ApiError::new(code, reason, msg));
            if code == 429 || code == 503 {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
            }
            return resp;
        }
        Some(FaultAction::DelayMs(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
        None => {}
    }
    match route {
        None => non_resource(&shared, &req),
        Some(Err(e)) => error_response(&e),
        Some(Ok(Route::GroupVersion(g, v))) => crate::discovery::group_version(&shared, &g, &v),
        Some(Ok(Route::Resource(t))) => match resource_request(&shared, &req, *t, verb).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
    }
}

/// The sim has no authorizer: it serves every request, so every SubjectAccessReview is allowed. As
/// on the real server the review is not stored, and create is its only verb.
fn subject_access_review(req: &Req, verb: &str) -> ApiResult<Response<Body>> {
    if verb != "create" {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({verb})"),
        ));
    }
    let mut review: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("the review is not JSON: {e}")))?;
    let user = review
        .pointer("/spec/user")
        .and_then(Value::as_str)
        .unwrap_or("");
    let groups = review
        .pointer("/spec/groups")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty());
    if user.is_empty() && !groups {
        return Err(ApiError::new(
            422,
            "Invalid",
            "SubjectAccessReview.authorization.k8s.io is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    if review.pointer("/spec/resourceAttributes").is_none()
        && review.pointer("/spec/nonResourceAttributes").is_none()
    {
        return Err(ApiError::new(
            422,
            "Invalid",
            "SubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    review["status"] = json!({
        "allowed": true,
        "reason": "kube-sim serves every request (it has no authorizer)",
    });
    Ok(json_response(201, &review))
}

fn non_resource(shared: &Shared, req: &Req) -> Response<Body> {
    match req.path.trim_end_matches('/') {
        "/version" => json_response(
            200,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0+kube-sim", "gitCommit": "kube-sim",
                "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
                "compiler": "gc", "platform": "linux/amd64"
            }),
        ),
        "/healthz" | "/readyz" | "/livez" => {
            let mut r = Response::new(Body::from("ok"));
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        "/api" | "/apis" if crate::discovery::wants_aggregated(&req.accept).is_some() => {
            let v = crate::discovery::wants_aggregated(&req.accept).unwrap_or("v2");
            crate::discovery::aggregated(shared, req.path.trim_end_matches('/') == "/api", v)
        }
        "/api" => crate::discovery::api_versions(shared),
        "/apis" => crate::discovery::api_groups(shared),
        p if p.starts_with("/apis/") && p.matches('/').count() == 2 => {
            crate::discovery::api_group(shared, &p["/apis/".len()..])
        }
        p if p.starts_with("/openapi") => crate::discovery::openapi(shared, p),
        _ => crate::discovery::page_not_found(),
    }
}

/// A create or update whose `MicroTime` does not decode is refused as the real server's decoder
/// refuses it (400).
fn refuse_bad_micro_time(ri: &ResourceInfo, body: &Value) -> ApiResult<()> {
    match crate::typed::micro_time_error(&ri.group, &ri.kind, body) {
        Some(problem) => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {problem}",
            kind = ri.kind,
            version = ri.version
        ))),
        None => Ok(()),
    }
}

fn parse_body(req: &Req) -> ApiResult<Value> {
    if req.content_type.contains("protobuf") || req.content_type.contains("cbor") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "kube-sim does not implement this: {} request bodies (only JSON and, for apply, YAML); the real server accepts them",
                req.content_type
            ),
        ));
    }
    if req.body.is_empty() {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    let mut body: Value = if req.content_type.contains("yaml") {
        serde_norway::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{}': {e}",
                String::from_utf8_lossy(&req.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?
    };
    crate::util::normalise_numbers(&mut body);
    Ok(body)
}

fn dry_run(req: &Req) -> ApiResult<bool> {
    match req.q("dryRun") {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other:?}: supported values: \"All\""
        ))),
    }
}

fn field_manager(req: &Req) -> ApiResult<String> {
    let m = match req.q("fieldManager") {
        Some(m) => m.to_string(),
        None => req.user_agent.split('/').next().unwrap_or("").to_string(),
    };
    if m.len() > 128 {
        return Err(ApiError::new(
            422,
            "Invalid",
            "fieldManager: Too long: may not be more than 128 bytes".to_string(),
        ));
    }
    Ok(m)
}

fn field_validation(req: &Req) -> ApiResult<&'static str> {
    match req.q("fieldValidation") {
        None | Some("Warn") => Ok("Warn"),
        Some("Strict") => Ok("Strict"),
        Some("Ignore") => Ok("Ignore"),
        Some(o) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {o:?}, supported values: Ignore, Warn, Strict"
        ))),
    }
}

/// The object as served at the requested version (conversion strategy None: only apiVersion
/// changes). Custom resources are defaulted on read with that version's schema, as the real server
/// does when reading from storage (so defaults added to a CRD later show on older objects).
fn at_version(ri: &ResourceInfo, mut obj: Value) -> Value {
    obj["apiVersion"] = json!(ri.api_version());
    if let Some(schema) = ri.crd.as_ref().and_then(|c| c.schema.as_ref()) {
        crate::crd::apply_defaults(&mut obj, schema);
    }
    obj
}

fn with_warnings(mut r: Response<Body>, warnings: Vec<String>) -> Response<Body> {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {:?}", w)) {
            r.headers_mut().append("warning", v);
        }
    }
    r
}

async fn resource_request(
    shared: &Arc<Shared>,
    req: &Req,
    t: Target,
    verb: &str,
) -> ApiResult<Response<Body>> {
    let ns = t.ns.clone().unwrap_or_default();
    let ri = t.ri.clone();
    let sub = t.sub.as_deref();
    if sub == Some("scale") {
        return scale(shared, req, &ri, &ns, t.name.as_deref().unwrap_or(""), verb);
    }
    if ri.gr() == "authorization.k8s.io/subjectaccessreviews" {
        return subject_access_review(req, verb);
    }
    match verb {
        "get" => {
            let name = t.name.as_deref().unwrap_or("");
            let st = lock(&shared.store);
            let obj = st
                .get(&ri, &ns, name)
                .cloned()
                .or_else(|| {
                    let twin = crate::events::twin(&ri.gr())?;
                    let key = (twin.to_string(), ns.clone(), name.to_string());
                    st.objects
                        .get(&key)
                        .map(|event| crate::events::convert(twin, event))
                })
                .ok_or_else(|| ApiError::not_found(&ri, name))?;
            drop(st);
            let obj = at_version(&ri, obj);
            if wants_table(&req.accept) {
                let cols = Columns::for_resource(&ri);
                let rv = obj["metadata"]["resourceVersion"].clone();
                return Ok(json_response(
                    200,
                    &cols.table(
                        &[obj],
                        json!({"resourceVersion": rv}),
                        req.q("includeObject").unwrap_or("Metadata"),
                        true,
                    ),
                ));
            }
            Ok(json_response(200, &obj))
        }
        "list" => list(shared, req, &ri, t.ns.as_deref()),
        "watch" => watch(shared, req, &ri, t.ns.clone(), t.name.as_deref()),
        "create" if t.name.is_some() => Err(method_not_allowed()),
        "update" | "patch" if t.name.is_none() => Err(method_not_allowed()),
        "create" => {
            let body = parse_body(req)?;
            refuse_bad_micro_time(&ri, &body)?;
            let manager = field_manager(req)?;
            let ctx = WriteCtx {
                manager: &manager,
                op: Op::Update,
                subresource: None,
                dry_run: dry_run(req)?,
                field_validation: field_validation(req)?,
            };
            let ns_for = if ri.namespaced {
                ns.clone()
            } else {
                String::new()
            };
            if ri.namespaced && t.ns.is_none() {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ));
            }
            let mut st = lock(&shared.store);
            st.warnings.clear();
            let out = st.create(&ri, &ns_for, body, &ctx)?;
            let w = std::mem::take(&mut st.warnings);
            Ok(with_warnings(json_response(201, &at_version(&ri, out)), w))
        }
        "update" => {
            let name = t.name.as_deref().unwrap_or("");
            let body = parse_body(req)?;
            refuse_bad_micro_time(&ri, &body)?;
            let manager = field_manager(req)?;
            let ctx = WriteCtx {
                manager: &manager,
                op: Op::Update,
                subresource: sub,
                dry_run: dry_run(req)?,
                field_validation: field_validation(req)?,
            };
            let mut st = lock(&shared.store);
            st.warnings.clear();
            let old = st
                .get(&ri, &ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&ri, name))?;
            let out = st.update(&ri, &ns, name, &old, body, &ctx)?;
            let w = std::mem::take(&mut st.warnings);
            Ok(with_warnings(json_response(200, &at_version(&ri, out)), w))
        }
        "patch" => patch(shared, req, &ri, &ns, t.name.as_deref().unwrap_or(""), sub),
        "delete" => {
            let name = t.name.as_deref().unwrap_or("");
            let mut opts: Value = if req.body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&req.body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            };
            if let Some(p) = req.q("propagationPolicy") {
                opts["propagationPolicy"] = json!(p);
            }
            if let Some(seconds) = req.q("gracePeriodSeconds") {
                let seconds: i64 = seconds.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "gracePeriodSeconds: invalid value {seconds:?}: not an integer"
                    ))
                })?;
                opts["gracePeriodSeconds"] = json!(seconds);
            }
            let dry = dry_run(req)?
                || opts["dryRun"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == "All"));
            let mut st = lock(&shared.store);
            let (obj, removed) = st.delete(&ri, &ns, name, &opts, dry)?;
            // Registries with ReturnDeletedObject answer with the object; the rest (custom resources
            // included) with a Success Status.
            let return_object = !ri.is_custom()
                && matches!(
                    ri.kind.as_str(),
                    "Namespace" | "Pod" | "Service" | "ServiceAccount" | "CustomResourceDefinition"
                );
            if removed && !return_object {
                let mut d = json!({"name": name, "kind": ri.plural, "uid": obj["metadata"]["uid"]});
                if !ri.group.is_empty() {
                    d["group"] = json!(ri.group);
                }
                return Ok(json_response(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}),
                ));
            }
            Ok(json_response(200, &at_version(&ri, obj)))
        }
        "deletecollection" => {
            let dry = dry_run(req)?;
            let sel = req
                .q("labelSelector")
                .map(LabelSelector::parse)
                .transpose()?
                .unwrap_or_default();
            let fsel = req
                .q("fieldSelector")
                .map(|s| FieldSelector::parse(s, &ri.kind, ri.is_custom()))
                .transpose()?
                .unwrap_or_default();
            let mut st = lock(&shared.store);
            let gr = ri.gr();
            let keys: Vec<(String, String)> = st
                .objects
                .iter()
                .filter(|(k, v)| {
                    k.0 == gr
                        && t.ns.as_deref().is_none_or(|n| n == k.1)
                        && sel.matches(v)
                        && fsel.matches(v)
                })
                .map(|(k, _)| (k.1.clone(), k.2.clone()))
                .collect();
            let mut items = Vec::new();
            for (ns, name) in keys {
                let (obj, _) = st.delete(&ri, &ns, &name, &json!({}), dry)?;
                items.push(list_item(&ri, obj));
            }
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", ri.kind), "apiVersion": ri.api_version(), "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            ))
        }
        _ => Err(method_not_allowed()),
    }
}

/// A collection takes no PUT or PATCH, a named object no POST.
fn method_not_allowed() -> ApiError {
    ApiError::new(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

/// Apply a JSON patch as the real server (evanphx/json-patch) does: a `replace` of a missing
/// member of an object adds it. All or nothing.
fn apply_json_patch(
    doc: &mut Value,
    patch: json_patch::Patch,
) -> Result<(), json_patch::PatchError> {
    use json_patch::{AddOperation, PatchOperation};
    let mut patched = doc.clone();
    for op in patch.0 {
        let op = match op {
            PatchOperation::Replace(r)
                if patched.pointer(r.path.as_str()).is_none()
                    && r.path
                        .parent()
                        .and_then(|parent| patched.pointer(parent.as_str()))
                        .is_some_and(Value::is_object) =>
            {
                PatchOperation::Add(AddOperation {
                    path: r.path,
                    value: r.value,
                })
            }
            other => other,
        };
        json_patch::patch(&mut patched, std::slice::from_ref(&op))?;
    }
    *doc = patched;
    Ok(())
}

/// An object as a list's item: typed lists from the real server carry no apiVersion/kind on items.
fn list_item(ri: &ResourceInfo, obj: Value) -> Value {
    let mut o = at_version(ri, obj);
    if !ri.is_custom()
        && let Some(m) = o.as_object_mut()
    {
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

fn patch(
    shared: &Arc<Shared>,
    req: &Req,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    sub: Option<&str>,
) -> ApiResult<Response<Body>> {
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let dry = dry_run(req)?;
    let validation = field_validation(req)?;
    let force = req.flag("force");
    let supported =
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";
    let schema = schema_for(ri);
    let now = now_rfc3339();
    if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor" {
        if ct.ends_with("cbor") {
            return Err(ApiError::unsupported("CBOR apply patches"));
        }
        let manager = match req.q("fieldManager") {
            Some(m) => m.to_string(),
            None => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                )
                .with_details(json!({"kind": "PatchOptions", "group": "meta.k8s.io", "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})));
            }
        };
        let config = parse_body(req)?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "error decoding YAML: the apply patch must be an object",
            ));
        }
        if config
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(
                "apiVersion must be set in the apply patch",
            ));
        }
        if config
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request("kind must be set in the apply patch"));
        }
        if let Some(n) = config.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let mut st = lock(&shared.store);
        st.warnings.clear();
        let old = st.get(ri, ns, name).cloned();
        if old.is_none() && sub.is_some() {
            return Err(ApiError::not_found(ri, name));
        }
        if let (Some(o), Some(rv)) = (
            &old,
            config
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str),
        ) && Some(rv)
            != o.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
        {
            return Err(ApiError::conflict(ri, name));
        }
        // The real server converts an apply patch to a typed object first; a field the schema
        // does not declare fails that conversion, whatever fieldValidation says.
        let mut config = config;
        let undeclared = Store::remove_undeclared(ri, &mut config)?;
        if !undeclared.is_empty() {
            return Err(undeclared_in_apply_error(
                &config,
                &undeclared,
                schema.as_ref(),
            ));
        }
        let live_for_apply = old.as_ref().map(|o| at_version(ri, o.clone()));
        let merged = match ssa::apply(
            live_for_apply.as_ref(),
            &config,
            &manager,
            force,
            schema.as_ref(),
            sub,
            &now,
        ) {
            Ok(v) => v,
            Err(e @ ssa::ApplyError::Invalid(_)) if e.http_status() == 500 => {
                return Err(ApiError::unclassified(e.to_string()));
            }
            Err(ssa::ApplyError::Invalid(m)) => return Err(ApiError::bad_request(m)),
            Err(ssa::ApplyError::Conflicts(cs)) => return Err(conflict_error(ri, name, &cs)),
        };
        if let Some(problem) = crate::typed::micro_time_error(&ri.group, &ri.kind, &merged) {
            let gvk = format!("{}, Kind={}", ri.api_version(), ri.kind);
            return Err(ApiError::unclassified(format!(
                "failed to convert new object ({ns}/{name}; {gvk}) to proper version: unable to convert unstructured object to {gvk}: {problem}"
            )));
        }
        let ctx = WriteCtx {
            manager: &manager,
            op: Op::Apply,
            subresource: sub,
            dry_run: dry,
            field_validation: validation,
        };
        let (code, out) = match old {
            None => {
                let mut obj = merged;
                if let Some(m) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                if ri.namespaced {
                    meta_mut(&mut obj).insert("namespace".into(), json!(ns));
                }
                (201, st.create(ri, ns, obj, &ctx)?)
            }
            Some(old) => (200, st.update(ri, ns, name, &old, merged, &ctx)?),
        };
        let w = std::mem::take(&mut st.warnings);
        return Ok(with_warnings(json_response(code, &at_version(ri, out)), w));
    }
    if req.content_type.contains("protobuf") || req.content_type.contains("cbor") {
        return Err(ApiError::unsupported(format!(
            "{} patch bodies",
            req.content_type
        )));
    }
    // The media type is checked before anything else, the object's existence included.
    match ct.as_str() {
        "application/merge-patch+json" | "application/json-patch+json" => {}
        "application/strategic-merge-patch+json" if !ri.is_custom() => {}
        "application/strategic-merge-patch+json" => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: {supported}"
                ),
            ));
        }
        _ => {
            return Err(
                ApiError::new(415, "UnsupportedMediaType", "415: Unsupported Media Type")
                    .with_details(json!({})),
            );
        }
    }
    let patch_body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let manager = field_manager(req)?;
    let mut st = lock(&shared.store);
    st.warnings.clear();
    let old = st
        .get(ri, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(ri, name))?;
    let mut cand = at_version(ri, old.clone());
    match ct.as_str() {
        "application/merge-patch+json" => {
            if !patch_body.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            json_patch::merge(&mut cand, &patch_body);
        }
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(patch_body)
                .map_err(|e| ApiError::bad_request(format!("error decoding json patch: {e}")))?;
            // The real server names no cause for a JSON patch that does not apply.
            apply_json_patch(&mut cand, p).map_err(|_| {
                ApiError::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                )
                .with_details(json!({}))
            })?;
        }
        _ => cand = crate::smp::apply(&cand, &patch_body, schema.as_ref())?,
    }
    let ctx = WriteCtx {
        manager: &manager,
        op: Op::Update,
        subresource: sub,
        dry_run: dry,
        field_validation: validation,
    };
    let out = st.update(ri, ns, name, &old, cand, &ctx)?;
    let w = std::mem::take(&mut st.warnings);
    Ok(with_warnings(json_response(200, &at_version(ri, out)), w))
}

/// The real server's error for an apply patch with fields its schema does not declare: a 500
/// without a reason, naming the fields as structured-merge-diff paths (`.spec.ports[name="a"].x`).
fn undeclared_in_apply_error(
    config: &Value,
    undeclared: &[String],
    schema: &dyn crate::list_keys::Schema,
) -> ApiError {
    let mut errors: Vec<String> = undeclared
        .iter()
        .map(|p| {
            format!(
                "{}: field not declared in schema",
                structured_merge_path(config, p, schema)
            )
        })
        .collect();
    errors.sort();
    let detail = match errors.as_slice() {
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    };
    ApiError::unclassified(format!(
        "{} ({}): {detail}",
        ssa::TYPED_PATCH_ERROR_PREFIX,
        ssa::object_label(config)
    ))
}

/// `spec.ports[0].x` as structured-merge-diff prints it: list elements by their keys
/// (`[name="a"]`), set elements by value (`[="v"]`), atomic list elements by index.
fn structured_merge_path(obj: &Value, path: &str, schema: &dyn crate::list_keys::Schema) -> String {
    use crate::list_keys::ListType;
    let mut out = String::new();
    let mut fields: Vec<&str> = Vec::new();
    let mut cur = Some(obj);
    for part in path.split('.') {
        let (key, indices) = part.split_at(part.find('[').unwrap_or(part.len()));
        out.push('.');
        out.push_str(key);
        fields.push(key);
        cur = cur.and_then(|v| v.get(key));
        for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            let element = index.parse::<usize>().ok().and_then(|i| cur?.get(i));
            match (schema.list_type(&fields), element) {
                (ListType::Map(keys), Some(e)) => {
                    let parts: Vec<String> = keys
                        .iter()
                        .filter_map(|k| Some(format!("{k}={}", e.get(k)?)))
                        .collect();
                    out.push_str(&format!("[{}]", parts.join(",")));
                }
                (ListType::Set, Some(e)) => out.push_str(&format!("[={e}]")),
                _ => out.push_str(&format!("[{index}]")),
            }
            cur = element;
        }
    }
    out
}

fn conflict_error(ri: &ResourceInfo, name: &str, cs: &[ssa::Conflict]) -> ApiError {
    let mut d = json!({
        "name": name,
        "kind": ri.plural,
        "causes": cs.iter().map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager_label()), "field": c.field})).collect::<Vec<_>>(),
    });
    if !ri.group.is_empty() {
        d["group"] = json!(ri.group);
    }
    ApiError::new(409, "Conflict", ssa::conflicts_message(cs)).with_details(d)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

/// The objects stored under `gr`, as (namespace, name, object).
fn stored_under<'s>(
    objects: &'s std::collections::BTreeMap<crate::store::Key, Value>,
    gr: &'s str,
) -> impl Iterator<Item = (&'s String, &'s String, &'s Value)> + 's {
    objects
        .range((gr.to_string(), String::new(), String::new())..)
        .take_while(move |((g, _, _), _)| g == gr)
        .map(|((_, ons, oname), obj)| (ons, oname, obj))
}

fn list(
    shared: &Arc<Shared>,
    req: &Req,
    ri: &ResourceInfo,
    ns: Option<&str>,
) -> ApiResult<Response<Body>> {
    let sel = req
        .q("labelSelector")
        .map(LabelSelector::parse)
        .transpose()?
        .unwrap_or_default();
    let fsel = req
        .q("fieldSelector")
        .map(|s| FieldSelector::parse(s, &ri.kind, ri.is_custom()))
        .transpose()?
        .unwrap_or_default();
    let limit: usize = req
        .q("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let st = lock(&shared.store);
    let after = match req.q("continue") {
        None => None,
        Some(c) => {
            let tok: ContinueToken = base64::engine::general_purpose::STANDARD
                .decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("continue key is not valid: illegal base64 data")
                })?;
            if tok.rv < st.oldest_rv {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            Some(tok)
        }
    };
    let gr = ri.gr();
    let mut items = Vec::new();
    let mut more = 0usize;
    let mut last_key: Option<(String, String)> = None;
    let mut candidates: Vec<_> = stored_under(&st.objects, &gr)
        .map(|(ons, oname, obj)| (ons, oname, std::borrow::Cow::Borrowed(obj)))
        .collect();
    if let Some(twin) = crate::events::twin(&gr) {
        candidates.extend(stored_under(&st.objects, twin).map(|(ons, oname, obj)| {
            (
                ons,
                oname,
                std::borrow::Cow::Owned(crate::events::convert(twin, obj)),
            )
        }));
        candidates.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    }
    for (ons, oname, obj) in candidates {
        let obj = obj.as_ref();
        if ns.is_some_and(|n| n != ons) {
            continue;
        }
        if let Some(a) = &after
            && (ons.as_str(), oname.as_str()) <= (a.ns.as_str(), a.name.as_str())
        {
            continue;
        }
        if !sel.matches(obj) || !fsel.matches(obj) {
            continue;
        }
        if items.len() >= limit {
            more += 1;
            continue;
        }
        last_key = Some((ons.clone(), oname.clone()));
        items.push(obj.clone());
    }
    let rv = after.as_ref().map(|a| a.rv).unwrap_or(st.rv);
    drop(st);
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if more > 0
        && let Some((ns, name)) = last_key
    {
        let tok = ContinueToken { rv, ns, name };
        list_meta["continue"] = json!(
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&tok).unwrap_or_default())
        );
        list_meta["remainingItemCount"] = json!(more);
    }
    let items: Vec<Value> = items.into_iter().map(|o| list_item(ri, o)).collect();
    if wants_table(&req.accept) {
        let cols = Columns::for_resource(ri);
        let full: Vec<Value> = items
            .into_iter()
            .map(|mut o| {
                o["apiVersion"] = json!(ri.api_version());
                o["kind"] = json!(ri.kind);
                o
            })
            .collect();
        return Ok(json_response(
            200,
            &cols.table(
                &full,
                list_meta,
                req.q("includeObject").unwrap_or("Metadata"),
                true,
            ),
        ));
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", ri.kind), "apiVersion": ri.api_version(), "metadata": list_meta, "items": items}),
    ))
}

struct WatchState {
    backlog: VecDeque<Value>,
    rx: tokio::sync::broadcast::Receiver<Arc<WatchEvent>>,
    epoch: tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
    next_bookmark: Option<tokio::time::Instant>,
    bookmark_every: Duration,
    last_rv: u64,
    done: bool,
}

fn watch(
    shared: &Arc<Shared>,
    req: &Req,
    ri: &ResourceInfo,
    ns: Option<String>,
    name: Option<&str>,
) -> ApiResult<Response<Body>> {
    let sel = req
        .q("labelSelector")
        .map(LabelSelector::parse)
        .transpose()?
        .unwrap_or_default();
    let field_selector = match (req.q("fieldSelector"), name) {
        (Some(f), Some(n)) => Some(format!("{f},metadata.name={n}")),
        (None, Some(n)) => Some(format!("metadata.name={n}")),
        (f, None) => f.map(String::from),
    };
    let fsel = field_selector
        .as_deref()
        .map(|s| FieldSelector::parse(s, &ri.kind, ri.is_custom()))
        .transpose()?
        .unwrap_or_default();
    let timeout = req
        .q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let bookmarks = req.flag("allowWatchBookmarks");
    let send_initial = req.flag("sendInitialEvents");
    let table = wants_table(&req.accept);
    let cols = Arc::new(Columns::for_resource(ri));
    let include = req.q("includeObject").unwrap_or("Metadata").to_string();
    let ri2 = ri.clone();
    let encode = {
        let cols = cols.clone();
        move |typ: &str, obj: &Value| -> Value {
            if typ == "ERROR" || typ == "BOOKMARK" {
                return json!({"type": typ, "object": obj});
            }
            let mut o = at_version(&ri2, obj.clone());
            if table {
                o = cols.table(
                    &[o],
                    json!({"resourceVersion": obj["metadata"]["resourceVersion"]}),
                    &include,
                    true,
                );
            }
            json!({"type": typ, "object": o})
        }
    };
    let st = lock(&shared.store);
    let rx = st.tx.subscribe();
    let gr = ri.gr();
    let matches = |obj: &Value| sel.matches(obj) && fsel.matches(obj);
    let in_scope = |ons: &str| ns.as_deref().is_none_or(|n| n == ons);
    let mut backlog = VecDeque::new();
    let rv_param = req.q("resourceVersion");
    let start_rv;
    let mut gone = None;
    if rv_param.is_none() || rv_param == Some("0") || send_initial {
        // Synthetic ADDED events for the current state (with the other Events group's, converted).
        for (ons, _, obj) in stored_under(&st.objects, &gr) {
            if in_scope(ons) && matches(obj) {
                backlog.push_back(encode("ADDED", obj));
            }
        }
        if let Some(twin) = crate::events::twin(&gr) {
            for (ons, _, obj) in stored_under(&st.objects, twin) {
                let obj = crate::events::convert(twin, obj);
                if in_scope(ons) && matches(&obj) {
                    backlog.push_back(encode("ADDED", &obj));
                }
            }
        }
        start_rv = st.rv;
        if send_initial && bookmarks {
            backlog.push_back(encode(
                "BOOKMARK",
                &json!({"kind": ri.kind, "apiVersion": ri.api_version(), "metadata": {"resourceVersion": st.rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}),
            ));
        }
    } else {
        let rv: u64 = rv_param.and_then(|r| r.parse().ok()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid resource version: {:?}",
                rv_param.unwrap_or("")
            ))
        })?;
        if rv < st.oldest_rv {
            gone = Some(rv);
            start_rv = st.rv;
        } else {
            for ev in st.history.iter().filter(|e| e.rv > rv) {
                if let Some((typ, obj)) = filter_event(ev, &gr, &in_scope, &matches) {
                    backlog.push_back(encode(typ, &obj));
                }
            }
            start_rv = st.rv.max(rv);
        }
    }
    let oldest = st.oldest_rv;
    drop(st);
    if let Some(rv) = gone {
        backlog.clear();
        let e = ApiError::gone(format!("too old resource version: {rv} ({oldest})"));
        backlog.push_back(json!({"type": "ERROR", "object": e.to_status()}));
    }
    let now = tokio::time::Instant::now();
    let state = WatchState {
        backlog,
        rx,
        epoch: shared.watch_epoch.subscribe(),
        deadline: now + Duration::from_secs(timeout),
        next_bookmark: if bookmarks {
            Some(now + shared.bookmark_interval)
        } else {
            None
        },
        bookmark_every: shared.bookmark_interval,
        last_rv: start_rv,
        done: gone.is_some(),
    };
    let kind = ri.kind.clone();
    let api_version = ri.api_version();
    let stream = futures::stream::unfold(state, move |mut s| {
        let gr = gr.clone();
        let sel = sel.clone();
        let fsel = fsel.clone();
        let ns = ns.clone();
        let encode = encode.clone();
        let kind = kind.clone();
        let api_version = api_version.clone();
        async move {
            loop {
                if let Some(v) = s.backlog.pop_front() {
                    let mut line = serde_json::to_vec(&v).unwrap_or_default();
                    line.push(b'\n');
                    return Some((Ok::<Bytes, Infallible>(Bytes::from(line)), s));
                }
                if s.done {
                    return None;
                }
                let bookmark_at = s
                    .next_bookmark
                    .unwrap_or(s.deadline + Duration::from_secs(3600));
                tokio::select! {
                    _ = tokio::time::sleep_until(s.deadline) => return None,
                    _ = s.epoch.changed() => return None,
                    _ = tokio::time::sleep_until(bookmark_at) => {
                        s.next_bookmark = Some(tokio::time::Instant::now() + s.bookmark_every);
                        s.backlog.push_back(encode("BOOKMARK", &json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": s.last_rv.to_string()}})));
                    }
                    r = s.rx.recv() => match r {
                        Ok(ev) => {
                            if ev.rv <= s.last_rv { continue; }
                            s.last_rv = ev.rv;
                            let in_scope = |ons: &str| ns.as_deref().is_none_or(|n| n == ons);
                            let matches = |obj: &Value| sel.matches(obj) && fsel.matches(obj);
                            if let Some((typ, obj)) = filter_event(&ev, &gr, &in_scope, &matches) {
                                s.backlog.push_back(encode(typ, &obj));
                            }
                        }
                        // Lagged or closed: end the stream; the client re-watches from its last RV.
                        Err(_) => return None,
                    }
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert("transfer-encoding", HeaderValue::from_static("chunked"));
    Ok(r)
}

/// Selector-aware event translation: leaving the selector is DELETED, entering it is ADDED. An
/// Event written through the other Events group is seen too, converted (see `events`).
fn filter_event<'e>(
    ev: &'e WatchEvent,
    gr: &str,
    in_scope: &dyn Fn(&str) -> bool,
    matches: &dyn Fn(&Value) -> bool,
) -> Option<(&'static str, std::borrow::Cow<'e, Value>)> {
    use std::borrow::Cow;
    if !in_scope(&ev.ns) {
        return None;
    }
    let (obj, prev): (Cow<'e, Value>, Option<Cow<'e, Value>>) = if ev.gr == gr {
        (Cow::Borrowed(&ev.obj), ev.prev.as_ref().map(Cow::Borrowed))
    } else if crate::events::twin(gr) == Some(ev.gr.as_str()) {
        (
            Cow::Owned(crate::events::convert(&ev.gr, &ev.obj)),
            ev.prev
                .as_ref()
                .map(|p| Cow::Owned(crate::events::convert(&ev.gr, p))),
        )
    } else {
        return None;
    };
    match ev.typ {
        "MODIFIED" => {
            let now = matches(&obj);
            let before = prev.as_deref().is_some_and(matches);
            match (before, now) {
                (true, true) => Some(("MODIFIED", obj)),
                (false, true) => Some(("ADDED", obj)),
                (true, false) => Some(("DELETED", obj)),
                (false, false) => None,
            }
        }
        t => matches(&obj).then_some((t, obj)),
    }
}

/// The `autoscaling/v1` Scale view of a workload.
fn scale_of(obj: &Value) -> Value {
    let sel = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let md = &obj["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
                     "resourceVersion": md["resourceVersion"], "creationTimestamp": md["creationTimestamp"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": sel},
    })
}

fn scale(
    shared: &Arc<Shared>,
    req: &Req,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    verb: &str,
) -> ApiResult<Response<Body>> {
    let mut st = lock(&shared.store);
    let old = st
        .get(ri, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(ri, name))?;
    let current = scale_of(&old);
    let desired = match verb {
        "get" => return Ok(json_response(200, &current)),
        "update" => parse_body(req)?,
        "patch" => {
            let ct = req.content_type.split(';').next().unwrap_or("").trim();
            let p: Value = serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut s = current.clone();
            match ct {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    json_patch::merge(&mut s, &p)
                }
                "application/json-patch+json" => {
                    let jp: json_patch::Patch = serde_json::from_value(p)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?;
                    json_patch::patch(&mut s, &jp)
                        .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
                }
                other => {
                    return Err(ApiError::unsupported(format!(
                        "{other} patches of the scale subresource"
                    )));
                }
            }
            s
        }
        _ => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    crate::store::check_resource_version(ri, name, &desired, &old)?;
    let replicas = desired
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            ),
        ));
    }
    let mut cand = old.clone();
    cand["spec"]["replicas"] = json!(replicas);
    if let Some(m) = cand.pointer_mut("/metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let manager = field_manager(req)?;
    let ctx = WriteCtx {
        manager: &manager,
        op: Op::Update,
        subresource: Some("scale"),
        dry_run: dry_run(req)?,
        field_validation: "Ignore",
    };
    let out = st.update(ri, ns, name, &old, cand, &ctx)?;
    Ok(json_response(200, &scale_of(&out)))
}
