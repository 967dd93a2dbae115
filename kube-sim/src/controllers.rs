//! Simulated cluster behaviour: what kubelet and the built-in controllers would do — workload
//! rollout status, LoadBalancer ingress, garbage collection, namespace and CRD cleanup.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::resources::ResourceInfo;
use crate::sim::{LoadBalancerMode, Readiness, Shared, lock_shared as lock};
use crate::store::{Key, Store};
use crate::util::{now_rfc3339, short_hash};

const TICK: Duration = Duration::from_millis(50);

pub(crate) fn spawn(shared: Arc<Shared>) {
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(TICK);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shared.stopped.cancelled() => return,
                _ = iv.tick() => tick(&shared),
            }
        }
    });
}

pub(crate) fn tick(shared: &Shared) {
    let ready_after = *lock(&shared.ready_after);
    let lb_mode = *lock(&shared.lb_mode);
    let overrides = lock(&shared.readiness).clone();
    let mut st = lock(&shared.store);
    workloads(shared, &mut st, ready_after, &overrides);
    services(shared, &mut st, lb_mode);
    // The rest reacts to writes only: skip it while nothing changed.
    let mut last = lock(&shared.last_tick_rv);
    if *last == st.rv {
        return;
    }
    // Remember the RV seen before this pass: if the pass writes, the next tick runs again, until a
    // pass changes nothing.
    *last = st.rv;
    namespace_defaults(&mut st);
    disruption_budgets(&mut st);
    garbage_collect(&mut st);
    namespaces(&mut st);
    crd_cleanup(&mut st);
}

/// Conditions keep their transition times while type/status/reason are unchanged.
fn keep_times(new: &mut [Value], old: Option<&Value>) {
    let old: Vec<Value> = old.and_then(Value::as_array).cloned().unwrap_or_default();
    for c in new.iter_mut() {
        if let Some(o) = old.iter().find(|o| o["type"] == c["type"])
            && o["status"] == c["status"]
        {
            c["lastTransitionTime"] = o["lastTransitionTime"].clone();
            if o["reason"] == c["reason"]
                && o["message"] == c["message"]
                && c.get("lastUpdateTime").is_some()
            {
                c["lastUpdateTime"] = o["lastUpdateTime"].clone();
            }
        }
    }
}

fn cond(
    typ: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
    update_time: bool,
) -> Value {
    let mut c = json!({"type": typ, "status": status, "lastTransitionTime": now, "reason": reason, "message": message});
    if update_time {
        c["lastUpdateTime"] = json!(now);
    }
    c
}

fn workloads(
    shared: &Shared,
    st: &mut Store,
    ready_after: Duration,
    overrides: &HashMap<(String, String, String), Readiness>,
) {
    let now_i = Instant::now();
    let now = now_rfc3339();
    for plural in ["deployments", "statefulsets"] {
        let ri = st.builtin("apps", plural).expect("apps");
        let gr = ri.gr();
        let mut writes: Vec<(String, String, Value)> = Vec::new();
        let mut settled = lock(&shared.settled);
        for ((_, ns, name), o) in st.range_gr(&gr) {
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let uid = o["metadata"]["uid"].as_str().unwrap_or("");
            let rv = o["metadata"]["resourceVersion"].as_str().unwrap_or("");
            let mode = if overrides.is_empty() {
                Readiness::default()
            } else {
                overrides
                    .get(&(gr.clone(), ns.clone(), name.clone()))
                    .copied()
                    .unwrap_or_default()
            };
            // Settled workloads (status final for this RV and readiness mode) cost nothing per tick.
            if settled
                .get(uid)
                .is_some_and(|(srv, smode)| srv == rv && *smode == mode)
            {
                continue;
            }
            let uid = uid.to_string();
            let ns = ns.clone();
            let name = name.clone();
            let generation = o["metadata"]["generation"].as_i64().unwrap_or(1);
            // (generation, first seen at it, pod-template hash), so the hash is computed once per generation
            let (first_seen, hash) = {
                let mut r = lock(&shared.rollouts);
                let e = r
                    .entry(uid.clone())
                    .or_insert_with(|| (generation, now_i, short_hash(&o["spec"]["template"])));
                if e.0 != generation {
                    *e = (generation, now_i, short_hash(&o["spec"]["template"]));
                }
                (e.1, e.2.clone())
            };
            let rolled = now_i.duration_since(first_seen) >= ready_after;
            let replicas = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let empty = json!({});
            let old_status = o.get("status").unwrap_or(&empty);
            let mut status = if plural == "deployments" {
                deployment_status(
                    &name,
                    generation,
                    replicas,
                    &hash,
                    rolled,
                    mode,
                    &now,
                    was_available(old_status),
                )
            } else {
                statefulset_status(&name, generation, replicas, &hash, rolled, mode, old_status)
            };
            if let Some(cs) = status.get_mut("conditions").and_then(Value::as_array_mut) {
                keep_times(cs, old_status.get("conditions"));
            }
            if status != *old_status {
                writes.push((ns, name, status));
            } else if rolled || mode != Readiness::Normal || replicas == 0 {
                settled.insert(uid, (rv.to_string(), mode));
            }
        }
        drop(settled);
        for (ns, name, status) in writes {
            st.controller_status(&ri, &ns, &name, status, "kube-controller-manager");
        }
    }
}

fn was_available(status: &Value) -> bool {
    status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True")
    })
}

#[allow(clippy::too_many_arguments)]
fn deployment_status(
    name: &str,
    generation: i64,
    replicas: i64,
    hash: &str,
    rolled: bool,
    mode: Readiness,
    now: &str,
    was_available: bool,
) -> Value {
    let rs = format!("{name}-{hash}");
    let mut s = json!({"observedGeneration": generation});
    let put = |s: &mut Value, k: &str, v: i64| {
        if v != 0 {
            s[k] = json!(v);
        }
    };
    put(&mut s, "replicas", replicas);
    if mode == Readiness::Normal && !rolled && replicas > 0 && was_available {
        // A rolling update of an available Deployment: the old pods keep it available while the
        // new ReplicaSet progresses.
        put(&mut s, "readyReplicas", replicas);
        put(&mut s, "availableReplicas", replicas);
        s["conditions"] = json!([
            cond(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
                true
            ),
            cond(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs}\" is progressing."),
                now,
                true
            ),
        ]);
        return s;
    }
    put(&mut s, "updatedReplicas", replicas);
    let (ready, available_cond, progressing) = match mode {
        Readiness::Normal if rolled || replicas == 0 => (
            true,
            cond(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
                true,
            ),
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                now,
                true,
            ),
        ),
        Readiness::LoseReadiness => (
            false,
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
                true,
            ),
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                now,
                true,
            ),
        ),
        Readiness::ProgressDeadlineExceeded => (
            false,
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
                true,
            ),
            cond(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{rs}\" has timed out progressing."),
                now,
                true,
            ),
        ),
        _ => (
            false,
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
                true,
            ),
            cond(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs}\" is progressing."),
                now,
                true,
            ),
        ),
    };
    if ready {
        put(&mut s, "readyReplicas", replicas);
        put(&mut s, "availableReplicas", replicas);
    } else {
        put(&mut s, "unavailableReplicas", replicas);
    }
    s["conditions"] = json!([available_cond, progressing]);
    s
}

fn statefulset_status(
    name: &str,
    generation: i64,
    replicas: i64,
    hash: &str,
    rolled: bool,
    mode: Readiness,
    old: &Value,
) -> Value {
    let update_rev = format!("{name}-{hash}");
    let ready = matches!(mode, Readiness::Normal) && (rolled || replicas == 0);
    let mut s = json!({"observedGeneration": generation, "replicas": replicas, "collisionCount": 0, "updateRevision": update_rev});
    if ready {
        s["readyReplicas"] = json!(replicas);
        s["currentReplicas"] = json!(replicas);
        s["updatedReplicas"] = json!(replicas);
        s["availableReplicas"] = json!(replicas);
        s["currentRevision"] = json!(update_rev);
    } else {
        s["availableReplicas"] = json!(0);
        let prev = old["currentRevision"]
            .as_str()
            .unwrap_or(&update_rev)
            .to_string();
        s["currentRevision"] = json!(prev);
        if mode == Readiness::LoseReadiness {
            // rolled out, but pods no longer ready
            s["currentRevision"] = json!(update_rev);
            s["currentReplicas"] = json!(replicas);
            s["updatedReplicas"] = json!(replicas);
        } else if prev != update_rev && replicas > 0 {
            s["currentReplicas"] = json!(replicas);
            if mode == Readiness::Normal && old["readyReplicas"].as_i64() == Some(replicas) {
                // rolling update: the old-revision pods are still ready
                s["readyReplicas"] = json!(replicas);
                s["availableReplicas"] = json!(replicas);
            }
        }
    }
    for k in [
        "replicas",
        "readyReplicas",
        "currentReplicas",
        "updatedReplicas",
    ] {
        if s[k] == json!(0) && k != "replicas" {
            s.as_object_mut().expect("obj").remove(k);
        }
    }
    s
}

fn services(shared: &Shared, st: &mut Store, mode: LoadBalancerMode) {
    let ri = st.builtin("", "services").expect("services");
    let gr = ri.gr();
    let mut writes: Vec<(String, String, Value)> = Vec::new();
    for ((_, ns, name), o) in st.range_gr(&gr) {
        let is_lb = o.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
        let ingress = o.pointer("/status/loadBalancer/ingress");
        if !is_lb && ingress.is_none() {
            continue;
        }
        let desired = if is_lb && mode == LoadBalancerMode::Loopback {
            let uid = o["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let mut ips = lock(&shared.lb_ips);
            let (map, next) = &mut *ips;
            let octet = *map.entry(uid).or_insert_with(|| {
                *next = if *next >= 254 { 1 } else { *next + 1 };
                *next
            });
            Some(json!([{"ip": format!("127.0.1.{octet}"), "ipMode": "VIP"}]))
        } else if is_lb {
            ingress.cloned()
        } else {
            None
        };
        if desired.as_ref() != ingress {
            let status = match desired {
                Some(i) => json!({"loadBalancer": {"ingress": i}}),
                None => json!({"loadBalancer": {}}),
            };
            writes.push((ns.clone(), name.clone(), status));
        }
    }
    for (ns, name, status) in writes {
        st.controller_status(&ri, &ns, &name, status, "service-controller");
    }
}

fn resource_for(st: &Store, gr: &str) -> Option<ResourceInfo> {
    let (group, plural) = gr.split_once('/')?;
    if let Some(r) = st.builtin(group, plural) {
        return Some(r);
    }
    st.all_resources()
        .into_iter()
        .find(|r| r.group == group && r.plural == plural)
}

fn has_finalizer(o: &Value, f: &str) -> bool {
    o.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == f))
}

fn remove_finalizer(st: &mut Store, gr: &str, ns: &str, name: &str, f: &str) {
    let Some(ri) = resource_for(st, gr) else {
        return;
    };
    let Some(o) = st.get(&ri, ns, name).cloned() else {
        return;
    };
    let mut new = o.clone();
    if let Some(a) = new
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        a.retain(|x| x != f);
    }
    st.controller_update(&ri, ns, name, new, "kube-controller-manager");
}

/// Background garbage collection by ownerReference uid; foreground and orphan finalizers.
///
/// Driven by the store's indexes (uid → key, the objects that have owners, the objects being
/// deleted, reference counts per owner uid), so a pass costs O(dependents), not O(objects).
fn garbage_collect(st: &mut Store) {
    // (namespace, waits on foreground deletion, being orphaned) of a live owner
    let owner = |st: &Store, uid: &str| -> Option<(String, bool, bool)> {
        let k = st.uids.get(uid)?;
        let v = st.objects.get(k)?;
        let deleting = v.pointer("/metadata/deletionTimestamp").is_some();
        Some((
            k.1.clone(),
            deleting && has_finalizer(v, "foregroundDeletion"),
            deleting && has_finalizer(v, "orphan"),
        ))
    };
    let dirty = std::mem::take(&mut st.gc_dirty);
    // Owners waiting on foreground deletion / orphaning whose dependents are all handled, as seen
    // before this pass's deletions (released on a later pass otherwise).
    let mut release: Vec<(Key, bool, bool)> = Vec::new();
    for k in &dirty {
        let Some(v) = st.objects.get(k) else { continue };
        if v.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let Some(uid) = v.pointer("/metadata/uid").and_then(Value::as_str) else {
            continue;
        };
        let (fg, orphan) = (
            has_finalizer(v, "foregroundDeletion"),
            has_finalizer(v, "orphan"),
        );
        if (fg || orphan) && !st.dependents.contains_key(uid) {
            release.push((k.clone(), fg, orphan));
        }
    }
    let mut to_delete = Vec::new();
    let mut to_strip: Vec<(Key, HashSet<String>)> = Vec::new();
    for k in dirty.iter().filter(|k| st.owned.contains(*k)) {
        let Some(v) = st.objects.get(k) else { continue };
        if v.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let Some(refs) = v
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        else {
            continue;
        };
        if refs.is_empty() {
            continue;
        }
        let mut absent = HashSet::new();
        let mut foreground = false;
        let mut orphaned = HashSet::new();
        for r in refs {
            let uid = r["uid"].as_str().unwrap_or("");
            match owner(st, uid) {
                None => {
                    absent.insert(uid.to_string());
                }
                Some(o) => {
                    // a namespaced owner must live in the dependent's namespace
                    if !o.0.is_empty() && o.0 != k.1 {
                        absent.insert(uid.to_string());
                    }
                    if o.1 {
                        foreground = true;
                    }
                    if o.2 {
                        orphaned.insert(uid.to_string());
                    }
                }
            }
        }
        if absent.len() == refs.len() || foreground {
            to_delete.push(k.clone());
        } else if !absent.is_empty() || !orphaned.is_empty() {
            to_strip.push((k.clone(), absent.union(&orphaned).cloned().collect()));
        }
    }
    // Work that changes nothing (a failed write) is tried again on the next pass, as before.
    let retry = |st: &mut Store, rv: u64, k: Key| {
        if st.rv == rv {
            st.gc_dirty.insert(k);
        }
    };
    for k in to_delete {
        let rv = st.rv;
        if let Some(ri) = resource_for(st, &k.0) {
            let _ = st.delete(
                &ri,
                &k.1,
                &k.2,
                &json!({"propagationPolicy": "Background"}),
                false,
            );
        }
        retry(st, rv, k);
    }
    for (k, uids) in to_strip {
        let rv = st.rv;
        strip_owners(st, &k, &uids);
        retry(st, rv, k);
    }
    for (k, fg, orphan) in release {
        let rv = st.rv;
        let (gr, ns, name) = &k;
        if fg {
            remove_finalizer(st, gr, ns, name, "foregroundDeletion");
        }
        if orphan {
            remove_finalizer(st, gr, ns, name, "orphan");
        }
        retry(st, rv, k);
    }
}

fn strip_owners(st: &mut Store, (gr, ns, name): &Key, uids: &HashSet<String>) {
    {
        let Some(ri) = resource_for(st, gr) else {
            return;
        };
        let Some(o) = st.get(&ri, ns, name).cloned() else {
            return;
        };
        let mut new = o.clone();
        if let Some(a) = new
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            a.retain(|r| !uids.contains(r["uid"].as_str().unwrap_or("")));
        }
        st.controller_update(&ri, ns, name, new, "generic-garbage-collector");
    }
}

/// The namespace controller: delete a terminating namespace's content, then the namespace.
fn namespaces(st: &mut Store) {
    let nsri = st.builtin("", "namespaces").expect("ns");
    let terminating: Vec<String> = st
        .deleting
        .iter()
        .filter(|k| k.0 == "/namespaces")
        .map(|k| k.2.clone())
        .collect();
    for ns in terminating {
        let content: Vec<(String, String)> = st
            .objects
            .keys()
            .filter(|k| k.1 == ns && k.0 != "/namespaces")
            .map(|k| (k.0.clone(), k.2.clone()))
            .collect();
        if content.is_empty() {
            let Some(o) = st.get(&nsri, "", &ns).cloned() else {
                continue;
            };
            let meta_fins = o
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !meta_fins {
                st.remove("/namespaces", "", &ns);
            }
            continue;
        }
        for (gr, name) in content {
            if let Some(ri) = resource_for(st, &gr) {
                let _ = st.delete(&ri, &ns, &name, &json!({}), false);
            }
        }
    }
}

/// The CRD finalizer: delete every custom resource of a deleted CRD, then release it.
fn crd_cleanup(st: &mut Store) {
    let deleting: Vec<Value> = st
        .crds()
        .filter(|c| c.pointer("/metadata/deletionTimestamp").is_some())
        .cloned()
        .collect();
    for crd in deleting {
        let group = crd["spec"]["group"].as_str().unwrap_or("").to_string();
        let plural = crd["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let gr = format!("{group}/{plural}");
        let items: Vec<(String, String, bool)> = st
            .range_gr(&gr)
            .map(|(k, v)| {
                (
                    k.1.clone(),
                    k.2.clone(),
                    v.pointer("/metadata/deletionTimestamp").is_some(),
                )
            })
            .collect();
        let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
        if items.is_empty() {
            if has_finalizer(&crd, "customresourcecleanup.apiextensions.k8s.io") {
                remove_finalizer(
                    st,
                    "apiextensions.k8s.io/customresourcedefinitions",
                    "",
                    &name,
                    "customresourcecleanup.apiextensions.k8s.io",
                );
            }
            continue;
        }
        let ri = crate::resources::crd_resources(&crd).into_iter().next();
        if let Some(ri) = ri {
            for (ns, n, deleting) in items {
                if !deleting {
                    let _ = st.delete(&ri, &ns, &n, &json!({}), false);
                }
            }
        }
    }
}

/// What the service-account and root-CA publisher controllers create in every namespace.
fn namespace_defaults(st: &mut Store) {
    let dirty = std::mem::take(&mut st.ns_defaults_dirty);
    let nsri = st.builtin("", "namespaces").expect("ns");
    let active: Vec<String> = dirty
        .into_iter()
        .filter(|ns| {
            st.get(&nsri, "", ns)
                .is_some_and(|v| v.pointer("/metadata/deletionTimestamp").is_none())
        })
        .collect();
    let sa = st.builtin("", "serviceaccounts").expect("sa");
    let cm = st.builtin("", "configmaps").expect("cm");
    for ns in active {
        if st.get(&sa, &ns, "default").is_none() {
            let _ = st.put_object(&sa, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}), "kube-controller-manager");
        }
        if st.get(&cm, &ns, "kube-root-ca.crt").is_none() {
            let _ = st.put_object(
                &cm,
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "kube-root-ca.crt", "namespace": ns, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                       "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nkube-sim has no CA; this placeholder is not a certificate\n-----END CERTIFICATE-----\n"}}),
                "kube-controller-manager",
            );
        }
        // a failed create is tried again on the next pass, as before
        if st.get(&sa, &ns, "default").is_none() || st.get(&cm, &ns, "kube-root-ca.crt").is_none() {
            st.ns_defaults_dirty.insert(ns);
        }
    }
}

fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((pct * total + 99) / 100)
        }
        _ => None,
    }
}

/// The disruption controller, from the workloads (not pods) the budget's selector matches.
fn disruption_budgets(st: &mut Store) {
    let Some(ri) = st.builtin("policy", "poddisruptionbudgets") else {
        return;
    };
    let now = now_rfc3339();
    let dirty = std::mem::take(&mut st.pdb_dirty);
    let mut writes: Vec<(String, String, Value)> = Vec::new();
    for ((_, ns, name), pdb) in dirty
        .iter()
        .flat_map(|ns| st.range_ns("policy/poddisruptionbudgets", ns))
    {
        let empty = serde_json::Map::new();
        let sel = pdb
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let (mut expected, mut healthy) = (0i64, 0i64);
        if !sel.is_empty() {
            for gr in ["apps/deployments", "apps/statefulsets"] {
                for (_, w) in st.range_ns(gr, ns) {
                    let labels = w
                        .pointer("/spec/template/metadata/labels")
                        .and_then(Value::as_object);
                    if !sel
                        .iter()
                        .all(|(lk, lv)| labels.and_then(|l| l.get(lk)) == Some(lv))
                    {
                        continue;
                    }
                    expected += w
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    healthy += w
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                }
            }
        }
        let desired = if let Some(m) = pdb.pointer("/spec/minAvailable") {
            scaled(m, expected).unwrap_or(0)
        } else if let Some(m) = pdb.pointer("/spec/maxUnavailable") {
            (expected - scaled(m, expected).unwrap_or(0)).max(0)
        } else {
            0
        };
        let allowed = (healthy - desired).max(0);
        let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(1);
        let mut c = if allowed > 0 {
            json!({"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "", "observedGeneration": generation, "lastTransitionTime": now})
        } else {
            json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "", "observedGeneration": generation, "lastTransitionTime": now})
        };
        let empty_status = json!({});
        let old_status = pdb.get("status").unwrap_or(&empty_status);
        if let Some(o) = old_status["conditions"].as_array().and_then(|a| a.first())
            && o["status"] == c["status"]
        {
            c["lastTransitionTime"] = o["lastTransitionTime"].clone();
        }
        let status = json!({"observedGeneration": generation, "disruptionsAllowed": allowed, "currentHealthy": healthy,
                            "desiredHealthy": desired, "expectedPods": expected, "conditions": [c]});
        if status != *old_status {
            writes.push((ns.clone(), name.clone(), status));
        }
    }
    for (ns, name, status) in writes {
        let rv = st.rv;
        st.controller_status(&ri, &ns, &name, status, "kube-controller-manager");
        if st.rv == rv {
            // a failed write is tried again on the next pass, as before
            st.pdb_dirty.insert(ns);
        }
    }
}
