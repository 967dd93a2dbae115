//! Server defaulting and the validation kube-sim performs for the built-in kinds the operator
//! renders. Defaults follow the Kubernetes v1.33 `SetDefaults_*` functions for these kinds.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{Value, json};

use crate::errors::Cause;
use crate::util::{default_field, is_dns1123_label};

/// Allocators for Service cluster IPs and node ports.
#[derive(Debug, Default, Clone)]
pub struct Allocator {
    pub next_ip: u32,
    pub used_ips: BTreeSet<String>,
    pub used_node_ports: BTreeSet<i64>,
    pub next_node_port: i64,
}

impl Allocator {
    pub fn cluster_ip(&mut self) -> String {
        loop {
            self.next_ip += 1;
            // 10.96.0.0/12; .0.1 is the kubernetes Service in a real cluster.
            let n = self.next_ip + 1;
            let ip = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
            if n & 0xff != 0 && n & 0xff != 255 && self.used_ips.insert(ip.clone()) {
                return ip;
            }
        }
    }
    pub fn node_port(&mut self) -> Option<i64> {
        for _ in 0..2768 {
            let p = 30000 + (self.next_node_port % 2768);
            self.next_node_port += 1;
            if self.used_node_ports.insert(p) {
                return Some(p);
            }
        }
        None
    }
    pub fn release(&mut self, svc: &Value) {
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            self.used_ips.remove(ip);
        }
        for p in svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(np) = p["nodePort"].as_i64() {
                self.used_node_ports.remove(&np);
            }
        }
    }
}

/// Canonical form of a resource quantity, as `resource.Quantity` serialises it.
/// Returns None when `s` is not a valid quantity.
pub fn canonical_quantity(s: &str) -> Option<String> {
    let s = s.trim();
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^([+-]?)(\d*)(?:\.(\d*))?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$",
        )
        .expect("regex")
    });
    let c = RE.captures(s)?;
    let neg = &c[1] == "-";
    let int = c.get(2).map(|m| m.as_str()).unwrap_or("");
    let frac = c.get(3).map(|m| m.as_str()).unwrap_or("");
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let suffix = c.get(4).map(|m| m.as_str()).unwrap_or("");
    // value in nano-units, rounded up (away from zero) to nano precision like ParseQuantity.
    let (mult_num, binary, dec_exp): (i128, bool, bool) = match suffix {
        "Ki" => (1 << 10, true, false),
        "Mi" => (1 << 20, true, false),
        "Gi" => (1 << 30, true, false),
        "Ti" => (1 << 40, true, false),
        "Pi" => (1 << 50, true, false),
        "Ei" => (1 << 60, true, false),
        _ => (1, false, suffix.starts_with(['e', 'E'])),
    };
    let exp10: i32 = match suffix {
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        x if x.starts_with(['e', 'E']) => x[1..].parse().ok()?,
        _ => 0,
    };
    // digits as integer with `frac.len()` decimals
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    // nano = mantissa * mult_num * 10^(exp10 + 9 - frac.len())
    let scale = exp10 + 9 - frac.len() as i32;
    let mut nano = mantissa.checked_mul(mult_num)?;
    if scale >= 0 {
        nano = nano.checked_mul(10i128.checked_pow(scale as u32)?)?;
    } else {
        let d = 10i128.checked_pow((-scale) as u32)?;
        nano = nano / d + if nano % d != 0 { 1 } else { 0 };
    }
    let sign = if neg && nano != 0 { "-" } else { "" };
    if nano == 0 {
        return Some("0".into());
    }
    let bytes_exact = nano % 1_000_000_000 == 0;
    if binary && bytes_exact && nano.abs() >= 1024 * 1_000_000_000 {
        let mut v = nano / 1_000_000_000;
        let mut k = 0;
        while k < 6 && v % 1024 == 0 {
            v /= 1024;
            k += 1;
        }
        let suf = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
        return Some(format!("{sign}{v}{suf}"));
    }
    // decimal: largest exponent e (multiple of 3, -9..=18) dividing nano.
    let mut e = -9;
    let mut v = nano;
    while e < 18 && v % 1000 == 0 {
        v /= 1000;
        e += 3;
    }
    if dec_exp {
        return Some(if e == 0 {
            format!("{sign}{v}")
        } else {
            format!("{sign}{v}e{e}")
        });
    }
    let suf = match e {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    Some(format!("{sign}{v}{suf}"))
}

fn canon_quantities(map: Option<&mut Value>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(Value::Object(m)) = map {
        for (k, v) in m.iter_mut() {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            match canonical_quantity(&s) {
                Some(c) => *v = json!(c),
                None => causes.push(Cause::invalid(
                    &format!("{path}[{k}]"),
                    v,
                    "must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
            }
        }
    }
}

fn default_probe(p: Option<&mut Value>) {
    if let Some(p) = p.filter(|p| p.is_object()) {
        default_field(p, "timeoutSeconds", json!(1));
        default_field(p, "periodSeconds", json!(10));
        default_field(p, "successThreshold", json!(1));
        default_field(p, "failureThreshold", json!(3));
        if let Some(h) = p.get_mut("httpGet").filter(|h| h.is_object()) {
            default_field(h, "scheme", json!("HTTP"));
        }
    }
}

fn default_container(c: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    if !c.is_object() {
        return;
    }
    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(c, "terminationMessagePolicy", json!("File"));
    let image = c["image"].as_str().unwrap_or("").to_string();
    let last = image.rsplit('/').next().unwrap_or("");
    let tag = if image.contains('@') {
        Some("digest")
    } else {
        last.split_once(':').map(|(_, t)| t)
    };
    default_field(
        c,
        "imagePullPolicy",
        json!(if tag.is_none() || tag == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        }),
    );
    default_field(c, "resources", json!({}));
    canon_quantities(
        c.pointer_mut("/resources/requests"),
        &format!("{path}.resources.requests"),
        causes,
    );
    canon_quantities(
        c.pointer_mut("/resources/limits"),
        &format!("{path}.resources.limits"),
        causes,
    );
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_field(p, "protocol", json!("TCP"));
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(fr) = e.pointer_mut("/valueFrom/fieldRef") {
                default_field(fr, "apiVersion", json!("v1"));
            }
            // A zero Quantity is serialised, not omitted.
            if let Some(rf) = e.pointer_mut("/valueFrom/resourceFieldRef") {
                default_field(rf, "divisor", json!("0"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        default_probe(c.get_mut(probe));
    }
    if c["name"].as_str().is_none_or(|n| !is_dns1123_label(n)) {
        causes.push(Cause::required(&format!("{path}.name"), ""));
    }
    if c["image"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required(&format!("{path}.image"), ""));
    }
}

/// PodSpec defaults (`SetDefaults_PodSpec` and friends).
fn default_pod_spec(spec: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    if !spec.is_object() {
        return;
    }
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    if let Some(sa) = spec.get("serviceAccountName").cloned() {
        default_field(spec, "serviceAccount", sa);
    }
    for kind in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(kind).and_then(Value::as_array_mut) {
            for (i, c) in cs.iter_mut().enumerate() {
                default_container(c, &format!("{path}.{kind}[{i}]"), causes);
            }
        }
    }
    if spec["containers"].as_array().is_none_or(|a| a.is_empty()) {
        causes.push(Cause::required(&format!("{path}.containers"), ""));
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            for src in ["configMap", "secret"] {
                if let Some(s) = v.get_mut(src).filter(|s| s.is_object()) {
                    default_field(s, "defaultMode", json!(420));
                }
            }
            if let Some(p) = v.get_mut("projected").filter(|s| s.is_object()) {
                default_field(p, "defaultMode", json!(420));
            }
            if let Some(sl) = v.pointer_mut("/emptyDir/sizeLimit")
                && let Some(c) = sl.as_str().and_then(canonical_quantity)
            {
                *sl = json!(c);
            }
            let has_source = v.as_object().is_some_and(|m| m.keys().any(|k| k != "name"));
            if !has_source {
                // A volume with no source is an emptyDir in the real defaulting.
                v["emptyDir"] = json!({});
            }
        }
    }
}

fn default_template(obj: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    // The typed ObjectMeta of a pod template serialises its zero creationTimestamp as null.
    if let Some(t) = obj.pointer_mut("/spec/template").filter(|t| t.is_object()) {
        default_field(t, "metadata", json!({}));
        if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
            m.entry("creationTimestamp").or_insert(Value::Null);
        }
    }
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec, &format!("{path}.template.spec"), causes);
    } else {
        causes.push(Cause::required(
            &format!("{path}.template.spec.containers"),
            "",
        ));
    }
}

fn check_selector_matches(obj: &Value, causes: &mut Vec<Cause>) {
    let sel = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object);
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    match sel {
        None if obj.pointer("/spec/selector/matchExpressions").is_none() => {
            causes.push(Cause::required("spec.selector", ""))
        }
        Some(sel) => {
            let ok = sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if !ok {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    &Value::Object(labels.cloned().unwrap_or_default()),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        _ => {}
    }
}

/// `created` as the real server's field manager sees a create: after defaulting, but before the
/// registry strategy and the REST allocators (a Service's cluster IPs, IP families and node
/// ports, a Namespace's finalizers) add what the request left out. The create's Update entry owns
/// only what this view sets.
pub fn before_strategy(group: &str, kind: &str, created: &Value, requested: &Value) -> Value {
    let mut view = created.clone();
    let mut restore = |path: &[&str]| {
        let pointer = format!("/{}", path.join("/"));
        if requested.pointer(&pointer).is_none()
            && let Some((field, parent)) = path.split_last()
            && let Some(parent) = view
                .pointer_mut(&format!("/{}", parent.join("/")))
                .and_then(Value::as_object_mut)
        {
            parent.remove(*field);
        }
    };
    match (group, kind) {
        ("", "Service") => {
            for field in [
                "clusterIP",
                "clusterIPs",
                "ipFamilies",
                "ipFamilyPolicy",
                "healthCheckNodePort",
            ] {
                restore(&["spec", field]);
            }
            let ports = created
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            for i in 0..ports {
                restore(&["spec", "ports", &i.to_string(), "nodePort"]);
            }
        }
        ("", "Namespace") => restore(&["spec", "finalizers"]),
        _ => {}
    }
    view
}

/// The status a created workload starts with: its Go status struct at zero, whose fields without
/// omitempty show (the registry strategies reset status on create).
fn initial_status(group: &str, kind: &str) -> Option<Value> {
    Some(match (group, kind) {
        ("apps", "Deployment") => json!({}),
        ("apps", "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "ReplicaSet") => json!({"replicas": 0}),
        ("apps", "DaemonSet") => json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0}),
        ("policy", "PodDisruptionBudget") => json!({"disruptionsAllowed": 0, "currentHealthy": 0,
            "desiredHealthy": 0, "expectedPods": 0}),
        _ => return None,
    })
}

/// Default and validate a built-in object in place. `old` is the stored object on update.
pub fn default_builtin(
    group: &str,
    kind: &str,
    obj: &mut Value,
    old: Option<&Value>,
    alloc: &mut Allocator,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    if old.is_none()
        && let Some(status) = initial_status(group, kind)
    {
        obj["status"] = status;
    }
    match (group, kind) {
        ("", "Secret") => {
            default_field(obj, "type", json!("Opaque"));
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                for (k, v) in sd {
                    let enc = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default());
                    crate::util::set_path(obj, &["data", &k], json!(enc));
                }
            }
            if let Some(Value::Object(d)) = obj.get("data") {
                for (k, v) in d {
                    let ok = v.as_str().is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    });
                    if !ok {
                        causes.push(Cause::invalid(
                            &format!("data[{k}]"),
                            v,
                            "illegal base64 data (the real server rejects this while decoding)",
                        ));
                    }
                }
            }
            if let (Some(o), true) = (old, obj.get("immutable") == Some(&json!(true)))
                && o.get("immutable") == Some(&json!(true))
                && o.get("data") != obj.get("data")
            {
                causes.push(Cause::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        ("", "ConfigMap") => {
            if let (Some(o), true) = (old, obj.get("immutable") == Some(&json!(true)))
                && o.get("immutable") == Some(&json!(true))
                && o.get("data") != obj.get("data")
            {
                causes.push(Cause::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        ("", "Namespace") => {
            let name = obj
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null);
            crate::util::set_path(
                obj,
                &["metadata", "labels", "kubernetes.io/metadata.name"],
                name,
            );
            default_field(obj, "spec", json!({}));
            if let Some(spec) = obj.get_mut("spec") {
                default_field(spec, "finalizers", json!(["kubernetes"]));
            }
            if old.is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        ("", "Service") => default_service(obj, old, alloc, &mut causes),
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_field(spec, "volumeMode", json!("Filesystem"));
                canon_quantities(
                    spec.pointer_mut("/resources/requests"),
                    "spec.resources.requests",
                    &mut causes,
                );
            }
            if old.is_none() {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                default_field(spec, "replicas", json!(1));
                default_field(spec, "revisionHistoryLimit", json!(10));
                default_field(spec, "progressDeadlineSeconds", json!(600));
                default_field(spec, "strategy", json!({}));
                let strategy = &mut spec["strategy"];
                default_field(strategy, "type", json!("RollingUpdate"));
                if strategy["type"] == "RollingUpdate" {
                    default_field(strategy, "rollingUpdate", json!({}));
                    let ru = &mut strategy["rollingUpdate"];
                    default_field(ru, "maxUnavailable", json!("25%"));
                    default_field(ru, "maxSurge", json!("25%"));
                }
            }
            check_selector_matches(obj, &mut causes);
            default_template(obj, "spec", &mut causes);
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                default_field(spec, "replicas", json!(1));
                default_field(spec, "revisionHistoryLimit", json!(10));
                default_field(spec, "podManagementPolicy", json!("OrderedReady"));
                default_field(spec, "updateStrategy", json!({}));
                let us = &mut spec["updateStrategy"];
                default_field(us, "type", json!("RollingUpdate"));
                if us["type"] == "RollingUpdate" {
                    default_field(us, "rollingUpdate", json!({}));
                    default_field(&mut us["rollingUpdate"], "partition", json!(0));
                }
                default_field(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                if let Some(vcts) = spec
                    .get_mut("volumeClaimTemplates")
                    .and_then(Value::as_array_mut)
                {
                    for (i, t) in vcts.iter_mut().enumerate() {
                        default_field(t, "apiVersion", json!("v1"));
                        default_field(t, "kind", json!("PersistentVolumeClaim"));
                        if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                            m.entry("creationTimestamp").or_insert(Value::Null);
                        }
                        if let Some(s) = t.get_mut("spec") {
                            default_field(s, "volumeMode", json!("Filesystem"));
                            canon_quantities(
                                s.pointer_mut("/resources/requests"),
                                &format!("spec.volumeClaimTemplates[{i}].spec.resources.requests"),
                                &mut causes,
                            );
                        }
                        default_field(t, "status", json!({"phase": "Pending"}));
                    }
                }
            }
            if obj.pointer("/spec/serviceName").is_none() {
                // serviceName became optional in v1.33; nothing to default.
            }
            check_selector_matches(obj, &mut causes);
            default_template(obj, "spec", &mut causes);
            if let Some(o) = old {
                for f in [
                    "selector",
                    "volumeClaimTemplates",
                    "serviceName",
                    "podManagementPolicy",
                ] {
                    if o["spec"].get(f) != obj["spec"].get(f) {
                        causes.push(Cause::forbidden(
                            "spec",
                            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                        ));
                        break;
                    }
                }
            }
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                default_field(spec, "replicas", json!(1));
            }
            default_template(obj, "spec", &mut causes);
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                default_field(spec, "revisionHistoryLimit", json!(10));
                default_field(spec, "updateStrategy", json!({}));
                let us = &mut spec["updateStrategy"];
                default_field(us, "type", json!("RollingUpdate"));
                if us["type"] == "RollingUpdate" {
                    default_field(us, "rollingUpdate", json!({}));
                    default_field(&mut us["rollingUpdate"], "maxUnavailable", json!(1));
                    default_field(&mut us["rollingUpdate"], "maxSurge", json!(0));
                }
            }
            // The v1 face of the internal templateGeneration, 1 on create.
            if old.is_none() {
                crate::util::set_path(
                    obj,
                    &[
                        "metadata",
                        "annotations",
                        "deprecated.daemonset.template.generation",
                    ],
                    json!("1"),
                );
            }
            default_template(obj, "spec", &mut causes);
        }
        ("policy", "PodDisruptionBudget")
            if obj.pointer("/spec/minAvailable").is_some()
                && obj.pointer("/spec/maxUnavailable").is_some() =>
        {
            causes.push(Cause::invalid(
                "spec",
                &obj["spec"],
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        ("events.k8s.io", "Event") => {
            for (f, max) in [
                ("reportingController", 128usize),
                ("reportingInstance", 128),
                ("action", 128),
                ("reason", 128),
            ] {
                match obj.get(f).and_then(Value::as_str) {
                    None | Some("") => causes.push(Cause::required(f, "")),
                    Some(v) if v.len() > max => causes.push(Cause {
                        field: f.into(),
                        reason: "FieldValueTooLong",
                        message: format!("Too long: may not be more than {max} bytes"),
                    }),
                    _ => {}
                }
            }
            if obj.get("eventTime").is_none_or(Value::is_null) {
                causes.push(Cause::required("eventTime", ""));
            }
            match obj.get("type").and_then(Value::as_str) {
                Some("Normal") | Some("Warning") => {}
                other => causes.push(Cause {
                    field: "type".into(),
                    reason: "FieldValueNotSupported",
                    message: format!(
                        "Unsupported value: {:?}: supported values: \"Normal\", \"Warning\"",
                        other.unwrap_or("")
                    ),
                }),
            }
            if obj
                .get("note")
                .and_then(Value::as_str)
                .is_some_and(|n| n.len() > 1024)
            {
                causes.push(Cause {
                    field: "note".into(),
                    reason: "FieldValueTooLong",
                    message: "Too long: may not be more than 1024 bytes".into(),
                });
            }
        }
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                // SetDefaults_Pod (pods only, not templates): requests default to limits.
                for kind in ["initContainers", "containers"] {
                    if let Some(cs) = spec.get_mut(kind).and_then(Value::as_array_mut) {
                        for c in cs {
                            if let Some(limits) = c.pointer("/resources/limits").cloned()
                                && let Some(lm) = limits.as_object()
                            {
                                for (k, v) in lm {
                                    if c.pointer(&format!("/resources/requests/{k}")).is_none() {
                                        crate::util::set_path(
                                            c,
                                            &["resources", "requests", k],
                                            v.clone(),
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                default_field(spec, "enableServiceLinks", json!(true));
                default_pod_spec(spec, "spec", &mut causes);
            }
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                for dir in ["ingress", "egress"] {
                    if let Some(rules) = spec.get_mut(dir).and_then(Value::as_array_mut) {
                        for r in rules {
                            if let Some(ports) = r.get_mut("ports").and_then(Value::as_array_mut) {
                                for p in ports {
                                    default_field(p, "protocol", json!("TCP"));
                                }
                            }
                        }
                    }
                }
                if spec
                    .get("policyTypes")
                    .is_none_or(|p| p.as_array().is_none_or(|a| a.is_empty()))
                {
                    let mut types = vec![json!("Ingress")];
                    if spec.get("egress").is_some_and(|e| !e.is_null()) {
                        types.push(json!("Egress"));
                    }
                    spec["policyTypes"] = Value::Array(types);
                }
            }
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding")
        | ("rbac.authorization.k8s.io", "RoleBinding") => {
            if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
                // SetDefaults_Subject: User and Group subjects get the RBAC group (a ServiceAccount's
                // empty group is omitted on the wire).
                for sub in subjects.iter_mut() {
                    if matches!(sub["kind"].as_str(), Some("User") | Some("Group"))
                        && sub
                            .get("apiGroup")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                    {
                        sub["apiGroup"] = json!("rbac.authorization.k8s.io");
                    }
                }
            }
            if obj.pointer("/roleRef/name").is_none() {
                causes.push(Cause::required("roleRef.name", ""));
            }
            if let Some(o) = old
                && o.get("roleRef") != obj.get("roleRef")
            {
                causes.push(Cause::invalid(
                    "roleRef",
                    &obj["roleRef"],
                    "cannot change roleRef",
                ));
            }
        }
        _ => {}
    }
    causes
}

fn default_service(
    obj: &mut Value,
    old: Option<&Value>,
    alloc: &mut Allocator,
    causes: &mut Vec<Cause>,
) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let old_spec = old.map(|o| o["spec"].clone());
    let spec = &mut obj["spec"];
    default_field(spec, "type", json!("ClusterIP"));
    let typ = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    // dropTypeDependentFields: fields the server allocated for the old type go when the type changes
    // (if the client left them as they were).
    if let Some(os) = &old_spec {
        let old_typ = os["type"].as_str().unwrap_or("ClusterIP");
        let had_np = old_typ == "NodePort" || old_typ == "LoadBalancer";
        let needs_np = typ == "NodePort" || typ == "LoadBalancer";
        if had_np && !needs_np {
            let old_ports = os["ports"].as_array().cloned().unwrap_or_default();
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    let np = p["nodePort"].as_i64();
                    if np.is_some() && old_ports.iter().any(|op| op["nodePort"].as_i64() == np) {
                        if let Some(m) = p.as_object_mut() {
                            m.remove("nodePort");
                        }
                        if let Some(n) = np {
                            alloc.used_node_ports.remove(&n);
                        }
                    }
                }
            }
            if let Some(m) = spec.as_object_mut()
                && m.get("externalTrafficPolicy") == os.get("externalTrafficPolicy")
            {
                m.remove("externalTrafficPolicy");
            }
        }
        if old_typ == "LoadBalancer"
            && typ != "LoadBalancer"
            && let Some(m) = spec.as_object_mut()
            && m.get("allocateLoadBalancerNodePorts") == os.get("allocateLoadBalancerNodePorts")
        {
            m.remove("allocateLoadBalancerNodePorts");
        }
    }
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&typ.as_str()) {
        causes.push(Cause {
            field: "spec.type".into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {typ:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ),
        });
        return;
    }
    default_field(spec, "sessionAffinity", json!("None"));
    if typ != "ExternalName" {
        default_field(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if typ == "NodePort" || typ == "LoadBalancer" {
        default_field(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if typ == "LoadBalancer" {
        default_field(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // Cluster IPs are immutable; keep the allocated one across updates.
    if let Some(os) = &old_spec {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec.get(f).is_none()
                && let Some(v) = os.get(f)
            {
                spec[f] = v.clone();
            }
        }
        if let (Some(new_ip), Some(old_ip)) = (spec["clusterIP"].as_str(), os["clusterIP"].as_str())
            && new_ip != old_ip
            && !new_ip.is_empty()
        {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                &json!(new_ip),
                "may not change once set",
            ));
        }
    }
    if typ != "ExternalName" {
        let headless = spec["clusterIP"].as_str() == Some("None");
        if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
            let ip = alloc.cluster_ip();
            spec["clusterIP"] = json!(ip);
        } else if let Some(ip) = spec["clusterIP"].as_str().filter(|ip| *ip != "None") {
            let was_ours = old_spec.as_ref().and_then(|o| o["clusterIP"].as_str()) == Some(ip);
            let in_range = ip
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.octets()[0] == 10 && (a.octets()[1] & 0xf0) == 96);
            if !in_range {
                causes.push(Cause::invalid(
                    "spec.clusterIPs",
                    &json!([ip]),
                    "failed to allocate IP: the provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12",
                ));
            } else if !was_ours && !alloc.used_ips.insert(ip.to_string()) {
                causes.push(Cause::invalid(
                    "spec.clusterIPs",
                    &json!([ip]),
                    "failed to allocate IP: provided IP is already allocated",
                ));
            }
        }
        let ip = spec["clusterIP"].clone();
        default_field(spec, "clusterIPs", json!([ip]));
        default_field(spec, "ipFamilies", json!(["IPv4"]));
        default_field(spec, "ipFamilyPolicy", json!("SingleStack"));
        if headless && (typ == "NodePort" || typ == "LoadBalancer") {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                &json!("None"),
                "may not be set to 'None' for LoadBalancer services or NodePort services",
            ));
        }
    }
    let alloc_node_ports = typ == "NodePort"
        || (typ == "LoadBalancer"
            && spec["allocateLoadBalancerNodePorts"].as_bool() != Some(false));
    let old_ports: Vec<Value> = old_spec
        .as_ref()
        .and_then(|s| s["ports"].as_array().cloned())
        .unwrap_or_default();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        let multi = ports.len() > 1;
        for (i, p) in ports.iter_mut().enumerate() {
            default_field(p, "protocol", json!("TCP"));
            let port = p["port"].clone();
            if port.as_i64().is_none_or(|n| !(1..=65535).contains(&n)) {
                causes.push(Cause::invalid(
                    &format!("spec.ports[{i}].port"),
                    &port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            default_field(p, "targetPort", port);
            if multi && p["name"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(&format!("spec.ports[{i}].name"), ""));
            }
            if alloc_node_ports {
                if p["nodePort"].as_i64().is_none() {
                    let keep = old_ports
                        .iter()
                        .find(|op| op["port"] == p["port"] && op["protocol"] == p["protocol"]);
                    match keep.and_then(|op| op["nodePort"].as_i64()) {
                        Some(np) => p["nodePort"] = json!(np),
                        None => match alloc.node_port() {
                            Some(np) => p["nodePort"] = json!(np),
                            None => causes.push(Cause::invalid(
                                &format!("spec.ports[{i}].nodePort"),
                                &Value::Null,
                                "range is full",
                            )),
                        },
                    }
                } else if let Some(np) = p["nodePort"].as_i64() {
                    let was_ours = old_ports
                        .iter()
                        .any(|op| op["nodePort"].as_i64() == Some(np));
                    if !(30000..=32767).contains(&np) {
                        causes.push(Cause::invalid(&format!("spec.ports[{i}].nodePort"), &json!(np), "provided port is not in the valid range. The range of valid ports is 30000-32767"));
                    } else if !was_ours && !alloc.used_node_ports.insert(np) {
                        causes.push(Cause::invalid(
                            &format!("spec.ports[{i}].nodePort"),
                            &json!(np),
                            "provided port is already allocated",
                        ));
                    }
                }
            }
        }
    }
    if typ == "ClusterIP"
        && let Some(ports) = spec["ports"].as_array()
    {
        for (i, p) in ports.iter().enumerate() {
            if p.get("nodePort")
                .is_some_and(|n| !n.is_null() && n != &json!(0))
            {
                causes.push(Cause::forbidden(
                    &format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    if typ != "ExternalName"
        && spec["ports"].as_array().is_none_or(|a| a.is_empty())
        && spec["clusterIP"].as_str() != Some("None")
    {
        causes.push(Cause::required("spec.ports", ""));
    }
    default_field(obj, "status", json!({"loadBalancer": {}}));
}

#[cfg(test)]
mod tests {
    use super::canonical_quantity as q;

    #[test]
    fn quantities_are_canonicalised_like_resource_quantity() {
        assert_eq!(q("1000m").as_deref(), Some("1"));
        assert_eq!(q("0.5").as_deref(), Some("500m"));
        assert_eq!(q("100m").as_deref(), Some("100m"));
        assert_eq!(q("1024Mi").as_deref(), Some("1Gi"));
        assert_eq!(q("1536Mi").as_deref(), Some("1536Mi"));
        assert_eq!(q("64Mi").as_deref(), Some("64Mi"));
        assert_eq!(q("2000").as_deref(), Some("2k"));
        assert_eq!(q("1G").as_deref(), Some("1G"));
        assert_eq!(q("10Gi").as_deref(), Some("10Gi"));
        assert_eq!(q("0").as_deref(), Some("0"));
        assert_eq!(q("1e3").as_deref(), Some("1e3"));
        assert_eq!(q("abc"), None);
    }
}
