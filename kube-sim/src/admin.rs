//! The admin HTTP API under `/_sim/` (documented in README.md). Admin requests are neither counted
//! nor subject to fault injection.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Response};
use serde_json::{Value, json};

use crate::api::{Req, json_response};
use crate::faults::{ActiveFault, Fault, RequestStats};
use crate::sim::{LoadBalancerMode, Readiness, Shared, lock_shared as lock};

fn bad(msg: impl Into<String>) -> Response<Body> {
    json_response(400, &json!({"error": msg.into()}))
}

#[allow(clippy::result_large_err)]
fn body<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, Response<Body>> {
    serde_json::from_slice(&req.body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

pub(crate) async fn handle(shared: &Arc<Shared>, req: &Req) -> Response<Body> {
    let path = req.path.trim_end_matches('/');
    match (req.method.clone(), path) {
        (Method::GET, "/_sim/healthz") => json_response(200, &json!({"ok": true})),
        (Method::GET, "/_sim/requests") => json_response(
            200,
            &serde_json::to_value(lock(&shared.stats).clone()).unwrap_or_default(),
        ),
        (Method::DELETE, "/_sim/requests") => {
            *lock(&shared.stats) = RequestStats::default();
            json_response(200, &json!({"reset": true}))
        }
        (Method::GET, "/_sim/faults") => {
            let f = lock(&shared.faults);
            let rules: Vec<Value> = f
                .rules
                .iter()
                .map(|r| json!({"id": r.id, "fault": r.fault, "seen": r.seen}))
                .collect();
            json_response(200, &json!({"faults": rules}))
        }
        (Method::POST, "/_sim/faults") => {
            let fault: Fault = match body(req) {
                Ok(f) => f,
                Err(r) => return r,
            };
            let mut f = lock(&shared.faults);
            f.next_id += 1;
            let id = f.next_id;
            f.rules.push(ActiveFault { id, fault, seen: 0 });
            json_response(201, &json!({"id": id}))
        }
        (Method::DELETE, "/_sim/faults") => {
            lock(&shared.faults).rules.clear();
            json_response(200, &json!({"cleared": true}))
        }
        (Method::POST, "/_sim/watches/drop") => {
            shared.watch_epoch.send_modify(|e| *e += 1);
            json_response(200, &json!({"dropped": true}))
        }
        (Method::POST, "/_sim/compact") => {
            lock(&shared.store).compact();
            json_response(200, &json!({"compacted": true}))
        }
        (Method::POST, "/_sim/down") => {
            #[derive(serde::Deserialize)]
            struct Down {
                seconds: f64,
            }
            let d: Down = match body(req) {
                Ok(d) => d,
                Err(r) => return r,
            };
            let secs = d.seconds.max(0.0);
            // Answer first, then go down.
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                crate::sim::down_for(&shared, Duration::from_secs_f64(secs));
            });
            json_response(202, &json!({"downForSeconds": secs}))
        }
        (Method::POST, "/_sim/readiness") => {
            #[derive(serde::Deserialize)]
            struct R {
                resource: String,
                namespace: String,
                name: String,
                readiness: Readiness,
            }
            let r: R = match body(req) {
                Ok(r) => r,
                Err(r) => return r,
            };
            if r.resource != "deployments" && r.resource != "statefulsets" {
                return bad("resource must be deployments or statefulsets");
            }
            lock(&shared.readiness).insert(
                (format!("apps/{}", r.resource), r.namespace, r.name),
                r.readiness,
            );
            json_response(200, &json!({"ok": true}))
        }
        (Method::PUT, "/_sim/settings") => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct S {
                ready_after_seconds: Option<f64>,
                load_balancer: Option<LoadBalancerMode>,
            }
            let s: S = match body(req) {
                Ok(s) => s,
                Err(r) => return r,
            };
            if let Some(r) = s.ready_after_seconds {
                *lock(&shared.ready_after) = Duration::from_secs_f64(r.max(0.0));
            }
            if let Some(m) = s.load_balancer {
                *lock(&shared.lb_mode) = m;
            }
            json_response(200, &json!({"ok": true}))
        }
        _ => json_response(
            404,
            &json!({"error": format!("unknown admin endpoint {} {}", req.method, req.path)}),
        ),
    }
}
