//! Storage: objects, the global resourceVersion, the bounded watch history, and the write pipeline
//! (metadata, generation, defaulting, schema, managedFields, no-op detection, finalizers).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::crd;
use crate::defaults::{Allocator, before_strategy, default_builtin};
use crate::errors::{ApiError, ApiResult, Cause};
use crate::list_keys::{self, Schema};
use crate::resources::{ResourceInfo, builtins, crd_established, crd_resources};
use crate::ssa;
use crate::util::{is_dns1123_label, is_dns1123_subdomain, meta_mut, now_rfc3339, random_suffix};

pub type Key = (String, String, String);

/// etcd's default request size limit (the real server fails larger objects with this error).
const MAX_OBJECT_BYTES: usize = 1_572_864;

#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub gr: String,
    pub ns: String,
    pub typ: &'static str,
    pub obj: Value,
    pub prev: Option<Value>,
}

pub struct Store {
    pub rv: u64,
    /// Every object by (group/plural, namespace, name). Only `commit` and `remove` change it, which
    /// keep the indexes below in step.
    pub objects: BTreeMap<Key, Value>,
    /// uid → key of every stored object.
    pub uids: HashMap<String, Key>,
    /// Objects with at least one ownerReference (the garbage collector's dependents).
    pub owned: BTreeSet<Key>,
    /// Owner uid → the stored objects whose ownerReferences name it.
    pub dependents: HashMap<String, BTreeSet<Key>>,
    /// Objects with a deletionTimestamp.
    pub deleting: BTreeSet<Key>,
    /// Work for the simulated controllers, marked by every write so that a controller pass looks
    /// only at what changed: objects whose garbage-collection state may have changed (as
    /// dependents or as owners) …
    pub gc_dirty: BTreeSet<Key>,
    /// … namespaces whose `default` ServiceAccount / `kube-root-ca.crt` ConfigMap may be missing …
    pub ns_defaults_dirty: BTreeSet<String>,
    /// … and namespaces whose PodDisruptionBudgets' status may have changed.
    pub pdb_dirty: BTreeSet<String>,
    pub history: VecDeque<Arc<WatchEvent>>,
    pub history_cap: usize,
    /// Events with `rv > oldest_rv` are all in `history`.
    pub oldest_rv: u64,
    pub tx: broadcast::Sender<Arc<WatchEvent>>,
    pub alloc: Allocator,
    builtins: Vec<ResourceInfo>,
    /// Warnings (HTTP `Warning` headers) produced by the last write; drained by the handler.
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Update,
    Apply,
}

pub struct WriteCtx<'a> {
    pub manager: &'a str,
    pub op: Op,
    pub subresource: Option<&'a str>,
    pub dry_run: bool,
    /// `fieldValidation`: Strict, Warn (the default) or Ignore.
    pub field_validation: &'a str,
}

/// `a == b` with the `time` of every managedFields entry ignored (no copies).
fn eq_ignoring_times(a: &Value, b: &Value) -> bool {
    let (Some(ao), Some(bo)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    ao.len() == bo.len()
        && ao.iter().all(|(k, av)| {
            let Some(bv) = bo.get(k) else { return false };
            if k != "metadata" {
                return av == bv;
            }
            let (Some(am), Some(bm)) = (av.as_object(), bv.as_object()) else {
                return av == bv;
            };
            am.len() == bm.len()
                && am.iter().all(|(mk, amv)| {
                    let Some(bmv) = bm.get(mk) else { return false };
                    match (mk.as_str(), amv.as_array(), bmv.as_array()) {
                        ("managedFields", Some(ae), Some(be)) => {
                            ae.len() == be.len()
                                && ae.iter().zip(be).all(|(x, y)| eq_without(x, y, &["time"]))
                        }
                        _ => amv == bmv,
                    }
                })
        })
}

/// `a == b` with the top-level `keys` of objects ignored (no copies).
fn eq_without(a: &Value, b: &Value, keys: &[&str]) -> bool {
    let (Some(ao), Some(bo)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept = |m: &'_ serde_json::Map<String, Value>| {
        m.keys().filter(|k| !keys.contains(&k.as_str())).count()
    };
    kept(ao) == kept(bo)
        && ao
            .iter()
            .filter(|(k, _)| !keys.contains(&k.as_str()))
            .all(|(k, av)| bo.get(k) == Some(av))
}

pub fn schema_for(ri: &ResourceInfo) -> Arc<dyn Schema> {
    match &ri.crd {
        Some(c) => list_keys::crd_schema(c.schema.as_ref().unwrap_or(&json!({"type": "object"}))),
        None => list_keys::builtin_schema(&ri.group, &ri.kind),
    }
}

impl Store {
    pub fn new(history_cap: usize) -> Store {
        let (tx, _) = broadcast::channel(16384);
        let mut s = Store {
            rv: 1,
            objects: BTreeMap::new(),
            uids: HashMap::new(),
            owned: BTreeSet::new(),
            dependents: HashMap::new(),
            deleting: BTreeSet::new(),
            gc_dirty: BTreeSet::new(),
            ns_defaults_dirty: BTreeSet::new(),
            pdb_dirty: BTreeSet::new(),
            history: VecDeque::new(),
            history_cap,
            oldest_rv: 1,
            tx,
            alloc: Allocator::default(),
            builtins: builtins(),
            warnings: Vec::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ri = s.builtin("", "namespaces").expect("namespaces");
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let ctx = WriteCtx {
                manager: "kube-apiserver",
                op: Op::Update,
                subresource: None,
                dry_run: false,
                field_validation: "Ignore",
            };
            s.create(&ri, "", obj, &ctx).expect("seed namespace");
        }
        s
    }

    pub fn builtin(&self, group: &str, plural: &str) -> Option<ResourceInfo> {
        self.builtins
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .cloned()
    }

    /// Every served resource (built-ins and Established CRDs), all versions.
    pub fn all_resources(&self) -> Vec<ResourceInfo> {
        let mut out = self.builtins.clone();
        for crd in self.crds() {
            if crd_established(crd) {
                out.extend(crd_resources(crd));
            }
        }
        out
    }

    /// Whether any version of `group` is served (the real server's mux answers paths of other
    /// groups with a plain-text 404).
    pub fn serves_group(&self, group: &str) -> bool {
        self.builtins.iter().any(|r| r.group == group)
            || self
                .crds()
                .any(|crd| crd["spec"]["group"] == group && crd_established(crd))
    }

    pub fn crds(&self) -> impl Iterator<Item = &Value> {
        let start = (
            "apiextensions.k8s.io/customresourcedefinitions".to_string(),
            String::new(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(|(k, _)| k.0 == "apiextensions.k8s.io/customresourcedefinitions")
            .map(|(_, v)| v)
    }

    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceInfo> {
        if let Some(r) = self
            .builtins
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
        {
            return Some(r.clone());
        }
        let name = format!("{plural}.{group}");
        let crd = self.objects.get(&(
            "apiextensions.k8s.io/customresourcedefinitions".into(),
            String::new(),
            name,
        ))?;
        if !crd_established(crd) {
            return None;
        }
        crd_resources(crd)
            .into_iter()
            .find(|r| r.version == version)
    }

    /// The objects of one resource (`group/plural`), in key order.
    pub fn range_gr<'a>(&'a self, gr: &'a str) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects
            .range((gr.to_string(), String::new(), String::new())..)
            .take_while(move |(k, _)| k.0 == gr)
    }

    /// The objects of one resource in one namespace, in name order.
    pub fn range_ns<'a>(
        &'a self,
        gr: &'a str,
        ns: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects
            .range((gr.to_string(), ns.to_string(), String::new())..)
            .take_while(move |(k, _)| k.0 == gr && k.1 == ns)
    }

    fn unindex(&mut self, key: &Key, obj: &Value) {
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str)
            && self.uids.get(uid) == Some(key)
        {
            self.uids.remove(uid);
        }
        if let Some(refs) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        {
            for r in refs {
                let uid = r["uid"].as_str().unwrap_or("");
                if let Some(set) = self.dependents.get_mut(uid) {
                    set.remove(key);
                    if set.is_empty() {
                        self.dependents.remove(uid);
                        // an owner waiting for its dependents may be released now
                        if let Some(k) = self.uids.get(uid) {
                            self.gc_dirty.insert(k.clone());
                        }
                    }
                }
            }
        }
        self.owned.remove(key);
        self.deleting.remove(key);
    }

    fn index(&mut self, key: &Key, obj: &Value) {
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
            self.uids.insert(uid.to_string(), key.clone());
        }
        if let Some(refs) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            && !refs.is_empty()
        {
            for r in refs {
                let uid = r["uid"].as_str().unwrap_or("");
                self.dependents
                    .entry(uid.to_string())
                    .or_default()
                    .insert(key.clone());
            }
            self.owned.insert(key.clone());
        }
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            self.deleting.insert(key.clone());
        }
    }

    /// Mark the controllers' work after `key` was written (`obj`, its latest state) or removed.
    fn mark_dirty(&mut self, key: &Key, obj: &Value) {
        self.gc_dirty.insert(key.clone());
        // as an owner: its dependents see its new state (or its absence)
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str)
            && let Some(deps) = self.dependents.get(uid)
        {
            self.gc_dirty.extend(deps.iter().cloned());
        }
        match (key.0.as_str(), key.2.as_str()) {
            ("/namespaces", _) => {
                self.ns_defaults_dirty.insert(key.2.clone());
            }
            ("/serviceaccounts", "default") | ("/configmaps", "kube-root-ca.crt") => {
                self.ns_defaults_dirty.insert(key.1.clone());
            }
            ("policy/poddisruptionbudgets" | "apps/deployments" | "apps/statefulsets", _) => {
                self.pdb_dirty.insert(key.1.clone());
            }
            _ => {}
        }
    }

    pub fn get(&self, ri: &ResourceInfo, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(ri.gr(), ns.to_string(), name.to_string()))
    }

    fn push_event(
        &mut self,
        gr: &str,
        ns: &str,
        typ: &'static str,
        obj: Value,
        prev: Option<Value>,
    ) {
        let ev = Arc::new(WatchEvent {
            rv: self.rv,
            gr: gr.into(),
            ns: ns.into(),
            typ,
            obj,
            prev,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_cap {
            if let Some(e) = self.history.pop_front() {
                self.oldest_rv = e.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    /// Drop the watch history (like an etcd compaction past every revision issued so far): resuming a
    /// watch (or a list continue token) from any RV handed out before gets 410 Gone. The global RV
    /// moves by one so that a fresh list yields a watchable RV.
    pub fn compact(&mut self) {
        self.history.clear();
        self.rv += 1;
        self.oldest_rv = self.rv;
    }

    /// Store an object (bumping the RV) and emit the event.
    fn commit(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        mut obj: Value,
        prev: Option<Value>,
    ) -> Value {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let key: Key = (ri.gr(), ns.into(), name.into());
        if let Some(old) = self.objects.insert(key.clone(), obj.clone()) {
            self.unindex(&key, &old);
        }
        self.index(&key, &obj);
        self.mark_dirty(&key, &obj);
        let typ = if prev.is_some() { "MODIFIED" } else { "ADDED" };
        self.push_event(&ri.gr(), ns, typ, obj.clone(), prev);
        obj
    }

    /// Remove an object for good (the DELETED event carries a new RV).
    pub fn remove(&mut self, gr: &str, ns: &str, name: &str) -> Option<Value> {
        let key: Key = (gr.into(), ns.into(), name.into());
        let mut obj = self.objects.remove(&key)?;
        self.unindex(&key, &obj);
        self.mark_dirty(&key, &obj);
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        if gr == "/services" {
            self.alloc.release(&obj);
        }
        self.push_event(gr, ns, "DELETED", obj.clone(), None);
        Some(obj)
    }

    fn check_namespace(&self, ri: &ResourceInfo, ns: &str, creating: bool) -> ApiResult<()> {
        if !ri.namespaced {
            return Ok(());
        }
        let nsri = self.builtin("", "namespaces").expect("namespaces");
        match self.get(&nsri, "", ns) {
            None => Err(ApiError::not_found(&nsri, ns)),
            Some(n) if creating && n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                        ri.qualified(),
                        "",
                        ns
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Schema processing: for custom resources prune, default, validate; for built-ins default and validate.
    fn process(
        &mut self,
        ri: &ResourceInfo,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
        validation: &str,
    ) -> ApiResult<()> {
        let mut causes: Vec<Cause> = Vec::new();
        // metadata checks common to every kind
        if let Some(l) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
            for (k, v) in l {
                if !v.is_string() {
                    return Err(ApiError::bad_request(format!(
                        "json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.labels of type string (label {k})",
                        crate::errors::value_repr(v)
                    )));
                }
            }
        }
        validate_object_meta(obj, &mut causes);
        self.strip_unknown(ri, obj, validation)?;
        if let Some(crd) = &ri.crd {
            if let Some(schema) = &crd.schema {
                crd::apply_defaults(obj, schema);
                crd::validate(obj, schema, "", &mut causes);
            }
        } else {
            causes.extend(default_builtin(
                &ri.group,
                &ri.kind,
                obj,
                old,
                &mut self.alloc,
            ));
            if ri.kind == "CustomResourceDefinition" {
                causes.extend(crd::validate_crd(obj));
                if let Some(o) = old {
                    for f in ["group", "scope"] {
                        if o["spec"][f] != obj["spec"][f] {
                            causes.push(Cause::invalid(
                                &format!("spec.{f}"),
                                &obj["spec"][f],
                                "field is immutable",
                            ));
                        }
                    }
                }
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(ri, name, causes));
        }
        Ok(())
    }

    /// Remove the fields the kind's schema does not declare from `obj`, returning their paths
    /// (`spec.a[0].b`); a value of the wrong type for a built-in is a 400, as a failed decode is.
    pub fn remove_undeclared(ri: &ResourceInfo, obj: &mut Value) -> ApiResult<Vec<String>> {
        Ok(match &ri.crd {
            Some(crd) => match &crd.schema {
                Some(schema) => crd::prune(obj, schema, true),
                None => Vec::new(),
            },
            None => crate::typed::check_builtin(&ri.group, &ri.kind, obj).map_err(|e| {
                ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: {e}",
                    ri.kind, ri.version, ri.kind
                ))
            })?,
        })
    }

    /// Decode-time handling of unknown fields (CRD pruning; built-ins via their typed model):
    /// `Strict` → 400, `Warn` → warnings, `Ignore` → dropped silently. Type errors → 400.
    pub fn strip_unknown(
        &mut self,
        ri: &ResourceInfo,
        obj: &mut Value,
        validation: &str,
    ) -> ApiResult<()> {
        let removed = Self::remove_undeclared(ri, obj)?;
        if !removed.is_empty() {
            match validation {
                "Strict" => {
                    let list: Vec<String> = removed
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        ri.kind,
                        ri.version,
                        ri.kind,
                        list.join(", ")
                    )));
                }
                "Ignore" => {}
                _ => self
                    .warnings
                    .extend(removed.iter().map(|f| format!("unknown field \"{f}\""))),
            }
        }
        Ok(())
    }

    fn check_name(ri: &ResourceInfo, name: &str) -> ApiResult<()> {
        let ok = match ri.kind.as_str() {
            "Namespace" | "Service" => is_dns1123_label(name),
            "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => {
                !name.is_empty()
                    && !name.contains('/')
                    && !name.contains('%')
                    && name != "."
                    && name != ".."
            }
            _ => is_dns1123_subdomain(name),
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::invalid(
                ri,
                name,
                vec![Cause::invalid(
                    "metadata.name",
                    &json!(name),
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                )],
            ))
        }
    }

    fn set_type_meta(ri: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
        if let Some(k) = obj.get("kind").and_then(Value::as_str)
            && k != ri.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({k}) does not match the kind of the URL ({})",
                ri.kind
            )));
        }
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
            let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            if group != ri.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    ri.api_version()
                )));
            }
        }
        obj["apiVersion"] = json!(ri.api_version());
        obj["kind"] = json!(ri.kind);
        Ok(())
    }

    /// CREATE. Allocations (cluster IPs, node ports) are rolled back on errors and dry runs.
    pub fn create(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        obj: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        let saved = self.alloc.clone();
        let r = self.create_inner(ri, ns, obj, ctx);
        if r.is_err() || ctx.dry_run {
            self.alloc = saved;
        }
        r
    }

    fn create_inner(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        mut obj: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        Self::set_type_meta(ri, &mut obj)?;
        let m = meta_mut(&mut obj);
        if let Some(Value::String(bns)) = m.get("namespace")
            && ri.namespaced
            && !bns.is_empty()
            && bns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if m.get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match m.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => {
                    name = format!("{g}{}", random_suffix());
                    m.insert("name".into(), json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        ri,
                        "",
                        vec![Cause::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            }
        }
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            m.remove(k);
        }
        if ri.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        Self::check_name(ri, &name)?;
        self.check_namespace(ri, ns, true)?;
        if self.get(ri, ns, &name).is_some() {
            return Err(ApiError::already_exists(ri, &name));
        }
        if ri.status
            && ri.kind != "Namespace"
            && ctx.subresource.is_none()
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        let schema = schema_for(ri);
        let now = now_rfc3339();
        if ctx.op == Op::Apply {
            // managedFields already computed by ssa::apply on the applied configuration
            self.process(ri, &name, &mut obj, None, ctx.field_validation)?;
        } else {
            if let Some(o) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                o.remove("managedFields");
            }
            let requested = obj.clone();
            self.process(ri, &name, &mut obj, None, ctx.field_validation)?;
            let recorded = ssa::record_update(
                None,
                &before_strategy(&ri.group, &ri.kind, &obj, &requested),
                ctx.manager,
                schema.as_ref(),
                ctx.subresource,
                &now,
            );
            if let Some(entries) = recorded.pointer("/metadata/managedFields") {
                meta_mut(&mut obj).insert("managedFields".into(), entries.clone());
            }
        }
        if ri.kind == "CustomResourceDefinition" {
            let fins = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !fins
                .iter()
                .any(|f| f == "customresourcecleanup.apiextensions.k8s.io")
            {
                let mut f2 = fins.clone();
                f2.push(json!("customresourcecleanup.apiextensions.k8s.io"));
                meta_mut(&mut obj).insert("finalizers".into(), Value::Array(f2));
            }
            let storage = obj["spec"]["versions"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["storage"] == json!(true)))
                .map(|v| v["name"].clone())
                .unwrap_or(Value::Null);
            obj["status"] = json!({
                "acceptedNames": {"kind": "", "plural": ""},
                "conditions": null,
                "storedVersions": [storage],
            });
        }
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now));
        if ri.generation {
            m.insert("generation".into(), json!(1));
        }
        if serde_json::to_vec(&obj).map(|b| b.len()).unwrap_or(0) > MAX_OBJECT_BYTES {
            return Err(ApiError::internal("etcdserver: request is too large"));
        }
        if ctx.dry_run {
            return Ok(obj);
        }
        let stored = self.commit(ri, ns, &name, obj, None);
        if ri.kind == "CustomResourceDefinition" {
            return Ok(self.establish_crd(ri, &name).unwrap_or(stored));
        }
        Ok(stored)
    }

    /// What the apiextensions controllers do right after a CRD is created: accept the names and
    /// establish it (a status write of its own, so clients see the conditions appear).
    fn establish_crd(&mut self, ri: &ResourceInfo, name: &str) -> Option<Value> {
        let old = self.get(ri, "", name)?.clone();
        let mut new = old.clone();
        let now = now_rfc3339();
        new["status"]["acceptedNames"] = old["spec"]["names"].clone();
        new["status"]["conditions"] = json!([
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ]);
        let schema = schema_for(ri);
        let new = ssa::record_update(
            Some(&old),
            &new,
            "kube-apiserver",
            schema.as_ref(),
            Some("status"),
            &now,
        );
        Some(self.commit(ri, "", name, new, Some(old)))
    }

    /// The shared update pipeline: `candidate` is the object the verb produced from `old`.
    /// Allocations are rolled back on errors and dry runs.
    pub fn update(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        old: &Value,
        candidate: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        let saved = self.alloc.clone();
        // The stored object as read (custom resources are defaulted on read), so that defaults a CRD
        // gained later neither look like a change nor bump the generation.
        let defaulted;
        let old = match ri.crd.as_ref().and_then(|c| c.schema.as_ref()) {
            Some(schema) => {
                let mut o = old.clone();
                crd::apply_defaults(&mut o, schema);
                defaulted = o;
                &defaulted
            }
            None => old,
        };
        let r = self.update_inner(ri, ns, name, old, candidate, ctx);
        if r.is_err() || ctx.dry_run {
            self.alloc = saved;
        }
        r
    }

    fn update_inner(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        old: &Value,
        candidate: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        let mut new = candidate;
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        Self::set_type_meta(ri, &mut new)?;
        if let Some(n) = new.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(bns) = new.pointer("/metadata/namespace").and_then(Value::as_str)
            && ri.namespaced
            && !bns.is_empty()
            && bns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        check_resource_version(ri, name, &new, old)?;
        if let Some(uid) = new.pointer("/metadata/uid").and_then(Value::as_str)
            && !uid.is_empty()
            && Some(uid) != old.pointer("/metadata/uid").and_then(Value::as_str)
        {
            let actual = old.pointer("/metadata/uid").and_then(Value::as_str);
            return Err(
                ApiError::uid_precondition_failed(ri, name, uid, actual.unwrap_or(""))
                    .with_details(json!({"name": name, "kind": ri.plural})),
            );
        }
        // Subresource isolation.
        if ctx.subresource == Some("status") {
            let mut s = old.clone();
            match new.get("status") {
                Some(st) => s["status"] = st.clone(),
                None => {
                    if let Some(o) = s.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            if let Some(mf) = new.pointer("/metadata/managedFields") {
                meta_mut(&mut s).insert("managedFields".into(), mf.clone());
            }
            new = s;
        } else if ri.status {
            match old.get("status") {
                Some(st) => new["status"] = st.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        // Server-owned metadata is kept from the stored object.
        let om = old["metadata"].clone();
        let m = meta_mut(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match om.get(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
        m.insert("name".into(), json!(name));
        if ri.namespaced {
            m.insert("namespace".into(), json!(ns));
        }
        m.remove("selfLink");
        if om.get("deletionTimestamp").is_some() {
            let old_f: Vec<Value> = om["finalizers"].as_array().cloned().unwrap_or_default();
            let new_f: Vec<Value> = m
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if new_f.iter().any(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    ri,
                    name,
                    vec![Cause::forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        let schema = schema_for(ri);
        let now = now_rfc3339();
        self.process(ri, name, &mut new, Some(old), ctx.field_validation)?;
        if ctx.op == Op::Update {
            new = ssa::record_update(
                Some(old),
                &new,
                ctx.manager,
                schema.as_ref(),
                ctx.subresource,
                &now,
            );
        }
        // generation
        if ri.generation {
            let skip: &[&str] = if ri.status {
                &["metadata", "status"]
            } else {
                &["metadata"]
            };
            // Deployments also bump on annotation changes (they are copied to ReplicaSets).
            let annotations_changed = ri.kind == "Deployment"
                && old.pointer("/metadata/annotations") != new.pointer("/metadata/annotations");
            if !eq_without(old, &new, skip) || annotations_changed {
                let g = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                meta_mut(&mut new).insert("generation".into(), json!(g + 1));
            }
        }
        // CRD: storedVersions tracks every storage version used.
        if ri.kind == "CustomResourceDefinition"
            && ctx.subresource.is_none()
            && let Some(sv) = new["spec"]["versions"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["storage"] == json!(true)))
                .map(|v| v["name"].clone())
        {
            let stored = new["status"]["storedVersions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !stored.contains(&sv) {
                let mut s2 = stored;
                s2.push(sv);
                new["status"]["storedVersions"] = Value::Array(s2);
            }
        }
        // No-op: nothing changed (managedFields timestamps aside) → no RV bump, no event.
        if eq_ignoring_times(old, &new) {
            return Ok(old.clone());
        }
        if serde_json::to_vec(&new).map(|b| b.len()).unwrap_or(0) > MAX_OBJECT_BYTES {
            return Err(ApiError::internal("etcdserver: request is too large"));
        }
        if ctx.dry_run {
            return Ok(new);
        }
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
        let empty_fins = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        // A pod in its grace period stays until its kubelet confirms the deletion
        // (`ShouldDeleteDuringUpdate`).
        let grace_over = old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_none_or(|seconds| seconds == 0);
        let stored = self.commit(ri, ns, name, new, Some(old.clone()));
        if deleting && empty_fins && grace_over {
            self.remove(&ri.gr(), ns, name);
        }
        Ok(stored)
    }

    /// DELETE: with finalizers, mark for deletion; without, remove.
    pub fn delete(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &Value,
        dry_run: bool,
    ) -> ApiResult<(Value, bool)> {
        let old = self
            .get(ri, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(ri, name))?;
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
            && Some(uid) != old.pointer("/metadata/uid").and_then(Value::as_str)
        {
            let actual = old.pointer("/metadata/uid").and_then(Value::as_str);
            return Err(ApiError::uid_precondition_failed(
                ri,
                name,
                uid,
                actual.unwrap_or(""),
            ));
        }
        if let Some(rv) = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta: {}",
                    ri.qualified(),
                    name,
                    rv,
                    old.pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            ));
        }
        let policy = opts
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(
                || match opts.get("orphanDependents").and_then(Value::as_bool) {
                    Some(true) => Some("Orphan".into()),
                    _ => None,
                },
            )
            .unwrap_or_else(|| "Background".into());
        if !["Background", "Foreground", "Orphan"].contains(&policy.as_str()) {
            return Err(ApiError::invalid(
                ri,
                name,
                vec![Cause {
                    field: "propagationPolicy".into(),
                    reason: "FieldValueNotSupported",
                    message: format!(
                        "Unsupported value: {policy:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                }],
            ));
        }
        let mut fins: Vec<Value> = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let is_ns = ri.kind == "Namespace";
        if policy == "Foreground" && !fins.contains(&json!("foregroundDeletion")) {
            fins.push(json!("foregroundDeletion"));
        }
        if policy == "Orphan" && !fins.contains(&json!("orphan")) {
            fins.push(json!("orphan"));
        }
        let has_spec_fins = is_ns
            && old
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        if ri.group.is_empty() && ri.kind == "Pod" {
            match pod_deletion(&old, opts, &fins) {
                PodDeletion::Mark(marked) if dry_run => return Ok((marked, false)),
                PodDeletion::Mark(marked) => {
                    let stored = self.commit(ri, ns, name, marked, Some(old));
                    return Ok((stored, false));
                }
                PodDeletion::Pending => return Ok((old, false)),
                PodDeletion::Now => {}
            }
        }
        if fins.is_empty() && !has_spec_fins {
            if dry_run {
                return Ok((old, true));
            }
            let removed = self.remove(&ri.gr(), ns, name).expect("exists");
            return Ok((removed, true));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok((old, false));
        }
        let mut new = old.clone();
        let m = meta_mut(&mut new);
        m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        m.insert("finalizers".into(), Value::Array(fins));
        if let Some(g) = m.get("generation").and_then(Value::as_i64) {
            m.insert("generation".into(), json!(g + 1));
        }
        if is_ns {
            new["status"]["phase"] = json!("Terminating");
        }
        if dry_run {
            return Ok((new, false));
        }
        let stored = self.commit(ri, ns, name, new, Some(old));
        Ok((stored, false))
    }

    /// Internal status write by a simulated controller (manager `manager`, Update on `/status`).
    pub fn controller_status(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        status: Value,
        manager: &str,
    ) {
        let Some(old) = self.get(ri, ns, name).cloned() else {
            return;
        };
        let mut cand = old.clone();
        cand["status"] = status;
        let ctx = WriteCtx {
            manager,
            op: Op::Update,
            subresource: Some("status"),
            dry_run: false,
            field_validation: "Ignore",
        };
        if let Err(e) = self.update(ri, ns, name, &old, cand, &ctx) {
            tracing::warn!("simulated controller status write failed: {}", e.message);
        }
    }

    /// Internal metadata/spec write by a simulated controller.
    pub fn controller_update(
        &mut self,
        ri: &ResourceInfo,
        ns: &str,
        name: &str,
        new: Value,
        manager: &str,
    ) {
        let Some(old) = self.get(ri, ns, name).cloned() else {
            return;
        };
        let ctx = WriteCtx {
            manager,
            op: Op::Update,
            subresource: None,
            dry_run: false,
            field_validation: "Ignore",
        };
        if let Err(e) = self.update(ri, ns, name, &old, new, &ctx) {
            tracing::warn!("simulated controller write failed: {}", e.message);
        }
    }

    /// Create or update an object in a fresh, empty namespace check etc. (used by `install_crds`).
    pub fn put_object(&mut self, ri: &ResourceInfo, obj: Value, manager: &str) -> ApiResult<Value> {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ctx = WriteCtx {
            manager,
            op: Op::Update,
            subresource: None,
            dry_run: false,
            field_validation: "Ignore",
        };
        match self.get(ri, &ns, &name).cloned() {
            None => self.create(ri, &ns, obj, &ctx),
            Some(old) => {
                let mut cand = obj;
                if let Some(m) = cand.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                self.update(ri, &ns, &name, &old, cand, &ctx)
            }
        }
    }
}

/// What a DELETE does to a pod, as the pod registry's graceful deletion decides it.
enum PodDeletion {
    /// Marked for deletion, or its grace period shortened: the pod as it is to be stored.
    Mark(Value),
    /// Already being deleted, and no shorter grace period asked for: nothing changes.
    Pending,
    /// No grace period: deleted as any object is.
    Now,
}

/// A pod that a node may still run is not removed by DELETE but marked (`deletionTimestamp` =
/// now + its grace period) for its kubelet, which stops the containers and then confirms with a
/// grace period of 0; a later DELETE may only shorten the grace period (`BeforeDelete` and the pod
/// strategy's `CheckGracefulDelete`).
fn pod_deletion(old: &Value, opts: &Value, finalizers: &[Value]) -> PodDeletion {
    // A negative grace period counts as 1 s.
    let requested = opts
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .map(|seconds| if seconds < 0 { 1 } else { seconds });
    let marked_at = old
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(crate::util::parse_time);
    let (grace, deadline) = match marked_at {
        Some(marked_at) => {
            let current = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            match requested {
                // A pod marked with no grace period left is removed (a confirmation that failed
                // half-way is completed).
                _ if current == 0 => return PodDeletion::Now,
                Some(shorter) if shorter < current => (
                    shorter,
                    marked_at + jiff::SignedDuration::from_secs(shorter - current),
                ),
                _ => return PodDeletion::Pending,
            }
        }
        None => {
            let unscheduled = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            let finished = matches!(
                old.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            let grace = if unscheduled || finished {
                0
            } else {
                requested
                    .or_else(|| {
                        old.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(0)
            };
            (
                grace,
                jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace),
            )
        }
    };
    if grace == 0 && finalizers.is_empty() {
        return PodDeletion::Now;
    }
    let mut marked = old.clone();
    let m = meta_mut(&mut marked);
    if marked_at.is_none()
        && let Some(g) = m.get("generation").and_then(Value::as_i64)
    {
        m.insert("generation".into(), json!(g + 1));
    }
    m.insert(
        "deletionTimestamp".into(),
        json!(deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
    m.insert("finalizers".into(), Value::Array(finalizers.to_vec()));
    PodDeletion::Mark(marked)
}

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn is_qualified_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(k),
    }
}

/// ObjectMeta validation shared by every kind: label/annotation keys and values, owner references.
fn validate_object_meta(obj: &Value, causes: &mut Vec<Cause>) {
    const KEY_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
    if let Some(l) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in l {
            if !is_qualified_key(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), KEY_MSG));
            }
            let v = v.as_str().unwrap_or("");
            if !v.is_empty() && !is_qualified_name_part(v) {
                causes.push(Cause::invalid(
                    "metadata.labels",
                    &json!(v),
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ));
            }
        }
    }
    if let Some(a) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in a {
            if !is_qualified_key(&k.to_ascii_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), KEY_MSG));
            }
            if !v.is_string() && !v.is_null() {
                causes.push(Cause::invalid(
                    "metadata.annotations",
                    v,
                    "annotation values must be strings",
                ));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            causes.push(Cause {
                field: "metadata.annotations".into(),
                reason: "FieldValueTooLong",
                message: "Too long: must have at most 262144 bytes".into(),
            });
        }
    }
    if let Some(refs) = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    {
        let mut controllers = 0;
        for (i, r) in refs.iter().enumerate() {
            for f in ["apiVersion", "kind", "name", "uid"] {
                if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    causes.push(Cause::invalid(
                        &format!("metadata.ownerReferences[{i}].{f}"),
                        &json!(""),
                        &format!("{f} must not be empty"),
                    ));
                }
            }
            if r.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            causes.push(Cause::invalid(
                "metadata.ownerReferences",
                &Value::Array(refs.clone()),
                "Only one reference can have Controller set to true",
            ));
        }
    }
}

/// Optimistic concurrency: a write that names a resourceVersion must name the stored one.
pub(crate) fn check_resource_version(
    ri: &ResourceInfo,
    name: &str,
    new: &Value,
    old: &Value,
) -> Result<(), ApiError> {
    let stored = old
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    match new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv) if !rv.is_empty() && Some(rv) != stored => Err(ApiError::conflict(ri, name)),
        _ => Ok(()),
    }
}
