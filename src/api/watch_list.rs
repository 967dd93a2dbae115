//! MeshSync's watch-list: which resources it watches and for which events.
//! Parsed strictly, because the operator derives MeshSync's RBAC from it.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::FieldError;
use super::validate::is_dns_label;

/// Where the watch-list lives in a MeshSync spec, for error paths.
pub const WATCH_LIST_DATA_PATH: &str = "spec.watch-list.data";

/// A resource as MeshSync names it: `<plural>.<version>.<group>`, the core group empty (`pods.v1.`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub plural: String,
    pub version: String,
    pub group: String,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.plural, self.version, self.group)
    }
}

/// The resource events MeshSync can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WatchEvent {
    Added,
    Modified,
    Deleted,
}

impl WatchEvent {
    pub const ALL: [WatchEvent; 3] = [WatchEvent::Added, WatchEvent::Modified, WatchEvent::Deleted];

    fn parse(s: &str) -> Option<WatchEvent> {
        WatchEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WatchEvent::Added => "ADDED",
            WatchEvent::Modified => "MODIFIED",
            WatchEvent::Deleted => "DELETED",
        }
    }
}

/// One whitelist entry: a resource and the events (a non-empty set, kept in canonical order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEntry {
    pub resource: ResourceId,
    pub events: BTreeSet<WatchEvent>,
}

/// A parsed watch-list. `Default` is the built-in whitelist the Helm chart ships.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchList {
    Whitelist(Vec<WatchEntry>),
    Blacklist(Vec<ResourceId>),
}

/// Built-in resources MeshSync knows, as (plural, version, group). The default whitelist is the
/// first block (the resources the Meshery chart ships); a blacklist removes entries from all of them.
const BUILTIN_RESOURCES: &[(&str, &str, &str)] = &[
    ("namespaces", "v1", ""),
    ("configmaps", "v1", ""),
    ("nodes", "v1", ""),
    ("secrets", "v1", ""),
    ("persistentvolumes", "v1", ""),
    ("persistentvolumeclaims", "v1", ""),
    ("replicasets", "v1", "apps"),
    ("pods", "v1", ""),
    ("services", "v1", ""),
    ("deployments", "v1", "apps"),
    ("statefulsets", "v1", "apps"),
    ("daemonsets", "v1", "apps"),
    ("ingresses", "v1", "networking.k8s.io"),
    ("endpoints", "v1", ""),
    ("endpointslices", "v1", "discovery.k8s.io"),
    ("cronjobs", "v1", "batch"),
    ("replicationcontrollers", "v1", ""),
    ("storageclasses", "v1", "storage.k8s.io"),
    ("clusterroles", "v1", "rbac.authorization.k8s.io"),
    ("volumeattachments", "v1", "storage.k8s.io"),
    ("apiservices", "v1", "apiregistration.k8s.io"),
    // Beyond the default whitelist.
    ("jobs", "v1", "batch"),
    ("serviceaccounts", "v1", ""),
    ("events", "v1", ""),
    ("limitranges", "v1", ""),
    ("resourcequotas", "v1", ""),
    ("controllerrevisions", "v1", "apps"),
    ("horizontalpodautoscalers", "v2", "autoscaling"),
    ("poddisruptionbudgets", "v1", "policy"),
    ("networkpolicies", "v1", "networking.k8s.io"),
    ("ingressclasses", "v1", "networking.k8s.io"),
    ("roles", "v1", "rbac.authorization.k8s.io"),
    ("rolebindings", "v1", "rbac.authorization.k8s.io"),
    ("clusterrolebindings", "v1", "rbac.authorization.k8s.io"),
    ("csidrivers", "v1", "storage.k8s.io"),
    ("csinodes", "v1", "storage.k8s.io"),
    ("customresourcedefinitions", "v1", "apiextensions.k8s.io"),
    ("priorityclasses", "v1", "scheduling.k8s.io"),
    ("runtimeclasses", "v1", "node.k8s.io"),
    ("leases", "v1", "coordination.k8s.io"),
    (
        "mutatingwebhookconfigurations",
        "v1",
        "admissionregistration.k8s.io",
    ),
    (
        "validatingwebhookconfigurations",
        "v1",
        "admissionregistration.k8s.io",
    ),
];

/// How many of `BUILTIN_RESOURCES` make up the default whitelist.
const DEFAULT_WHITELIST_LEN: usize = 21;

fn builtin(entry: &(&str, &str, &str)) -> ResourceId {
    ResourceId {
        plural: entry.0.to_string(),
        version: entry.1.to_string(),
        group: entry.2.to_string(),
    }
}

/// Every built-in resource MeshSync can watch.
pub fn builtin_resources() -> Vec<ResourceId> {
    BUILTIN_RESOURCES.iter().map(builtin).collect()
}

impl Default for WatchList {
    fn default() -> Self {
        WatchList::Whitelist(
            BUILTIN_RESOURCES[..DEFAULT_WHITELIST_LEN]
                .iter()
                .map(|entry| WatchEntry {
                    resource: builtin(entry),
                    events: WatchEvent::ALL.into_iter().collect(),
                })
                .collect(),
        )
    }
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    #[serde(rename = "Resource")]
    resource: String,
    #[serde(rename = "Events")]
    events: Vec<String>,
}

impl WatchList {
    /// Parses the ConfigMap's `whitelist` / `blacklist` values, reporting every problem at once.
    pub fn parse(
        whitelist: Option<&str>,
        blacklist: Option<&str>,
    ) -> Result<WatchList, Vec<FieldError>> {
        let whitelist = whitelist.filter(|s| !s.trim().is_empty());
        let blacklist = blacklist.filter(|s| !s.trim().is_empty());
        match (whitelist, blacklist) {
            (Some(_), Some(_)) => Err(vec![FieldError::new(
                WATCH_LIST_DATA_PATH,
                "both whitelist and blacklist are set: keep one (a whitelist names what to watch, a blacklist what to skip)",
            )]),
            (Some(text), None) => parse_whitelist(text).map(WatchList::Whitelist),
            (None, Some(text)) => parse_blacklist(text).map(WatchList::Blacklist),
            (None, None) => Ok(WatchList::default()),
        }
    }

    /// The resources MeshSync will watch, in a stable order.
    pub fn watched_resources(&self) -> Vec<ResourceId> {
        match self {
            WatchList::Whitelist(entries) => entries.iter().map(|e| e.resource.clone()).collect(),
            WatchList::Blacklist(skipped) => builtin_resources()
                .into_iter()
                .filter(|r| {
                    !skipped
                        .iter()
                        .any(|s| s.plural == r.plural && s.group == r.group)
                })
                .collect(),
        }
    }

    /// The normalised ConfigMap data: one key, `whitelist` or `blacklist`, as compact JSON.
    pub fn to_data(&self) -> (&'static str, String) {
        match self {
            WatchList::Whitelist(entries) => {
                let wire: Vec<WireEntry> = entries
                    .iter()
                    .map(|e| WireEntry {
                        resource: e.resource.to_string(),
                        events: e.events.iter().map(|ev| ev.as_str().to_string()).collect(),
                    })
                    .collect();
                (
                    "whitelist",
                    serde_json::to_string(&wire).expect("plain strings serialise"),
                )
            }
            WatchList::Blacklist(resources) => {
                let wire: Vec<String> = resources.iter().map(ToString::to_string).collect();
                (
                    "blacklist",
                    serde_json::to_string(&wire).expect("plain strings serialise"),
                )
            }
        }
    }
}

fn parse_whitelist(text: &str) -> Result<Vec<WatchEntry>, Vec<FieldError>> {
    let base = format!("{WATCH_LIST_DATA_PATH}.whitelist");
    let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        vec![FieldError::new(
            &base,
            format!(
                "not a JSON array ({e}); expected [{{\"Resource\":\"pods.v1.\",\"Events\":[\"ADDED\",\"MODIFIED\",\"DELETED\"]}}]"
            ),
        )]
    })?;
    let mut errors = Vec::new();
    let mut entries: Vec<WatchEntry> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("{base}[{index}]");
        let Some(object) = item.as_object() else {
            errors.push(FieldError::new(
                &path,
                "expected an object with keys \"Resource\" and \"Events\"",
            ));
            continue;
        };
        const KEYS: [&str; 2] = ["Resource", "Events"];
        for key in object.keys().filter(|k| !KEYS.contains(&k.as_str())) {
            let message = match KEYS.iter().find(|known| known.eq_ignore_ascii_case(key)) {
                Some(known) => format!("keys are case-sensitive: use {known:?}"),
                None => "unknown key: entries have exactly \"Resource\" and \"Events\"".to_string(),
            };
            errors.push(FieldError::new(format!("{path}.{key}"), message));
        }
        let miscased = |known: &str| {
            object
                .keys()
                .any(|k| k != known && k.eq_ignore_ascii_case(known))
        };
        let resource = match object.get("Resource") {
            Some(serde_json::Value::String(s)) => match parse_resource(s) {
                Ok(r) => Some(r),
                Err(message) => {
                    errors.push(FieldError::new(format!("{path}.Resource"), message));
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new(
                    format!("{path}.Resource"),
                    "must be a string like \"pods.v1.\"",
                ));
                None
            }
            None => {
                if !miscased("Resource") {
                    errors.push(FieldError::new(format!("{path}.Resource"), "missing"));
                }
                None
            }
        };
        let events = if object.get("Events").is_none() && miscased("Events") {
            None
        } else {
            parse_events(object.get("Events"), &format!("{path}.Events"), &mut errors)
        };
        if let (Some(resource), Some(events)) = (resource, events) {
            if entries.iter().any(|e| e.resource == resource) {
                errors.push(FieldError::new(
                    format!("{path}.Resource"),
                    format!(
                        "{resource:?} is listed twice: merge the two entries' events",
                        resource = resource.to_string()
                    ),
                ));
            } else {
                entries.push(WatchEntry { resource, events });
            }
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

fn parse_events(
    value: Option<&serde_json::Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<BTreeSet<WatchEvent>> {
    let Some(serde_json::Value::Array(items)) = value else {
        errors.push(FieldError::new(
            path,
            "must be a non-empty array of ADDED, MODIFIED, DELETED",
        ));
        return None;
    };
    let mut events = BTreeSet::new();
    let before = errors.len();
    for (index, item) in items.iter().enumerate() {
        match item.as_str().and_then(WatchEvent::parse) {
            Some(event) => {
                events.insert(event);
            }
            None => errors.push(FieldError::new(
                format!("{path}[{index}]"),
                format!("{item} is not an event: use ADDED, MODIFIED or DELETED"),
            )),
        }
    }
    if items.is_empty() {
        errors.push(FieldError::new(
            path,
            "is empty: list at least one of ADDED, MODIFIED, DELETED",
        ));
    }
    (errors.len() == before && !events.is_empty()).then_some(events)
}

fn parse_blacklist(text: &str) -> Result<Vec<ResourceId>, Vec<FieldError>> {
    let base = format!("{WATCH_LIST_DATA_PATH}.blacklist");
    let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        vec![FieldError::new(
            &base,
            format!("not a JSON array of strings ({e}); expected [\"pods.v1.\", …]"),
        )]
    })?;
    let mut errors = Vec::new();
    let mut resources: Vec<ResourceId> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("{base}[{index}]");
        match item.as_str().map(parse_resource) {
            Some(Ok(resource)) if !resources.contains(&resource) => resources.push(resource),
            Some(Ok(_)) => {}
            Some(Err(message)) => errors.push(FieldError::new(path, message)),
            None => errors.push(FieldError::new(path, "must be a string like \"pods.v1.\"")),
        }
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(errors)
    }
}

fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let major_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, stage) = rest.split_at(major_end);
    if major.is_empty() || major.starts_with('0') {
        return false;
    }
    match stage
        .strip_prefix("alpha")
        .or_else(|| stage.strip_prefix("beta"))
    {
        Some(n) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'),
        None => stage.is_empty(),
    }
}

fn is_group(s: &str) -> bool {
    s.is_empty() || (s.len() <= 253 && s.contains('.') && s.split('.').all(is_dns_label))
}

/// Parses `<plural>.<version>.<group>`; the message says what is wrong and, where it can, what to write instead.
/// Resources of built-in groups must be ones Kubernetes serves; other groups (CRDs) only need the right shape.
pub fn parse_resource(s: &str) -> Result<ResourceId, String> {
    let shape = format!("{s:?} is not <plural>.<version>.<group>");
    let mut parts = s.splitn(3, '.');
    let (plural, version, group) = match (parts.next(), parts.next(), parts.next()) {
        (Some(p), Some(v), Some(g)) => (p, v, g),
        (Some(p), Some(v), None) if is_version(v) => {
            return Err(format!(
                "{shape}: a core resource keeps the trailing dot, use \"{p}.{v}.\""
            ));
        }
        _ => {
            return Err(format!(
                "{shape}: expected three dot-separated parts, e.g. \"pods.v1.\" or \"deployments.v1.apps\""
            ));
        }
    };
    if !is_dns_label(plural) {
        return Err(format!(
            "{shape}: the resource must be lowercase letters, digits and '-'"
        ));
    }
    if !is_version(version) {
        return Err(format!(
            "{shape}: {version:?} is not an API version like v1, v1beta1 or v2alpha1"
        ));
    }
    let known_in_group: Vec<&str> = BUILTIN_RESOURCES
        .iter()
        .filter(|(_, _, g)| *g == group)
        .map(|(p, _, _)| *p)
        .collect();
    if known_in_group.is_empty() {
        if !group.contains('.') || !is_group(group) {
            return Err(format!(
                "{shape}: {group:?} is not an API group (empty for core, a built-in group like \"apps\", or a DNS name like \"networking.istio.io\")"
            ));
        }
    } else if !known_in_group.contains(&plural) {
        let suggestion = ["s", "es"]
            .iter()
            .map(|end| format!("{plural}{end}"))
            .chain(plural.strip_suffix('y').map(|stem| format!("{stem}ies")))
            .find(|candidate| known_in_group.contains(&candidate.as_str()));
        return Err(match suggestion {
            Some(candidate) => {
                format!("{shape}: {plural:?} is singular, use \"{candidate}.{version}.{group}\"")
            }
            None => format!(
                "{shape}: the {} group has no resource {plural:?}; it has {}",
                if group.is_empty() { "core" } else { group },
                known_in_group.join(", ")
            ),
        });
    }
    Ok(ResourceId {
        plural: plural.to_string(),
        version: version.to_string(),
        group: group.to_string(),
    })
}
