//! Checks the CRD schema cannot express (cross-field rules, JSON inside strings, derived-name lengths).
//! Every problem is reported at once, each with the field path a user edits.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::ResourceExt;

use super::watch_list::WatchList;
use super::{Broker, BrokerSelection, MeshSync, PodOptions, Quantity, ServiceType};
use crate::render::labels::{
    APP_LABEL, CONFIG_CHECKSUM_ANNOTATION, INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL,
};

/// One problem with a CR, as `<field path>: <what is wrong and what to do>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Longest Broker name: StatefulSet pods add `-<ordinal>` and the revision label `-<10-char hash>`, within 63.
pub const MAX_BROKER_NAME: usize = 52;
/// Longest MeshSync name: the name is a label value (`app.kubernetes.io/instance`), at most 63.
pub const MAX_MESHSYNC_NAME: usize = 63;
/// The suffix of a Broker's headless Service, `<name>-headless`; a Broker with such a name would share
/// its client Service's name with the headless Service of the Broker named by the prefix.
const HEADLESS_SUFFIX: &str = "-headless";
/// NATS refuses a `max_payload` above 64 MiB.
const MAX_NATS_PAYLOAD: i128 = 64 << 20;

/// Every problem with a Broker; empty when it can be rendered.
pub fn validate_broker(broker: &Broker) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &broker.spec;
    check_name(
        &broker.name_any(),
        MAX_BROKER_NAME,
        "Broker",
        true,
        &mut errors,
    );
    if broker.name_any().ends_with(HEADLESS_SUFFIX) {
        errors.push(FieldError::new(
            "metadata.name",
            format!(
                "a Broker name must not end in {HEADLESS_SUFFIX:?}: Broker <name> owns the Service <name>{HEADLESS_SUFFIX}, so this Broker's Service would collide with it; choose another name"
            ),
        ));
    }
    check_size(spec.size, &mut errors);
    check_image(spec.image.as_deref(), spec.version.as_deref(), &mut errors);
    if spec.size > 1 && spec.clustering.as_ref().and_then(|c| c.enabled) == Some(false) {
        errors.push(FieldError::new(
            "spec.clustering.enabled",
            format!(
                "false with size {}: unclustered replicas would not share messages; remove the field or set size 1",
                spec.size
            ),
        ));
    }
    if let Some(service) = &spec.service {
        let service_type = spec.service_type();
        if service_type != ServiceType::LoadBalancer {
            if service.load_balancer_class.is_some() {
                errors.push(FieldError::new(
                    "spec.service.loadBalancerClass",
                    format!(
                        "only valid with type LoadBalancer, not {}",
                        service_type.as_str()
                    ),
                ));
            }
            if service.load_balancer_source_ranges.is_some() {
                errors.push(FieldError::new(
                    "spec.service.loadBalancerSourceRanges",
                    format!(
                        "only valid with type LoadBalancer, not {}",
                        service_type.as_str()
                    ),
                ));
            }
        }
        for (i, cidr) in service
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .enumerate()
        {
            check_cidr(
                &format!("spec.service.loadBalancerSourceRanges[{i}]"),
                cidr,
                &mut errors,
            );
        }
        if let Some(endpoint) = &service.external_endpoint_override
            && let Err(message) = parse_host_port(endpoint)
        {
            errors.push(FieldError::new(
                "spec.service.externalEndpointOverride",
                message,
            ));
        }
        for key in service.annotations.iter().flat_map(|a| a.keys()) {
            if !is_qualified_key(key) {
                errors.push(FieldError::new(
                    format!("spec.service.annotations[{key:?}]"),
                    "not a valid annotation key ([prefix/]name, name at most 63 characters)",
                ));
            }
        }
    }
    if let Some(name) = spec.auth_secret_name() {
        check_subdomain("spec.auth.secretRef.name", name, &mut errors);
    }
    if let Some(tls) = &spec.tls {
        match tls.secret_name.as_deref() {
            Some(name) => check_subdomain("spec.tls.secretName", name, &mut errors),
            None if tls.enabled => errors.push(FieldError::new(
                "spec.tls.secretName",
                "required when tls.enabled is true: name a Secret with tls.crt and tls.key (and optionally ca.crt)",
            )),
            None => {}
        }
    }
    if let Some(jetstream) = &spec.jetstream {
        if let Some(class) = &jetstream.storage_class {
            check_subdomain("spec.jetstream.storageClass", class, &mut errors);
        }
        if let Some(size) = &jetstream.storage_size {
            check_positive_quantity("spec.jetstream.storageSize", size, None, &mut errors);
        }
    }
    if let Some(config) = &spec.config {
        if let Some(payload) = &config.max_payload {
            check_positive_quantity(
                "spec.config.maxPayload",
                payload,
                Some(MAX_NATS_PAYLOAD),
                &mut errors,
            );
        }
        if let Some(connections) = config.max_connections
            && connections < 1
        {
            errors.push(FieldError::new(
                "spec.config.maxConnections",
                "must be at least 1",
            ));
        }
    }
    if let Some(policy) = &spec.network_policy {
        for (i, cidr) in policy.allowed_cidrs.iter().flatten().enumerate() {
            check_cidr(
                &format!("spec.networkPolicy.allowedCIDRs[{i}]"),
                cidr,
                &mut errors,
            );
        }
    }
    check_resources(spec.resources.as_ref(), &mut errors);
    check_pod_options(spec.pod.as_ref(), &mut errors);
    errors
}

/// Every problem with a MeshSync; empty when it can be rendered.
pub fn validate_meshsync(meshsync: &MeshSync) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &meshsync.spec;
    check_name(
        &meshsync.name_any(),
        MAX_MESHSYNC_NAME,
        "MeshSync",
        false,
        &mut errors,
    );
    check_size(spec.size, &mut errors);
    check_image(spec.image.as_deref(), spec.version.as_deref(), &mut errors);
    match spec.broker_selections().as_slice() {
        [] => errors.push(FieldError::new(
            "spec.broker",
            "no broker: set broker.native.name (a Broker CR) or broker.custom.url (nats://host:port)",
        )),
        [BrokerSelection::Native { name, namespace }] => {
            check_name_at("spec.broker.native.name", name, MAX_BROKER_NAME, "Broker", true, &mut errors);
            if let Some(namespace) = namespace
                && !is_dns_label(namespace) {
                    errors.push(FieldError::new(
                        "spec.broker.native.namespace",
                        format!("{namespace:?} is not a namespace name (lowercase letters, digits, '-', at most 63)"),
                    ));
                }
        }
        [BrokerSelection::Custom { url }] => {
            if let Err(message) = parse_broker_url(url) {
                errors.push(FieldError::new("spec.broker.custom.url", message));
            }
        }
        _ => errors.push(FieldError::new(
            "spec.broker",
            "both native and custom are set: keep exactly one",
        )),
    }
    let (whitelist, blacklist) = spec.watch_list_data();
    if let Err(watch_errors) = WatchList::parse(whitelist, blacklist) {
        errors.extend(watch_errors);
    }
    check_resources(spec.resources.as_ref(), &mut errors);
    check_pod_options(spec.pod.as_ref(), &mut errors);
    errors
}

/// A custom broker URL split into what MeshSync needs: the address and any credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// `user[:password]` or a token, percent-encoded as in the URL.
    pub userinfo: Option<String>,
}

/// Parses `nats://[userinfo@]host[:port]` (port defaults to 4222).
pub fn parse_broker_url(raw: &str) -> Result<BrokerUrl, String> {
    let url = url::Url::parse(raw)
        .map_err(|e| format!("{raw:?} is not a URL ({e}); expected nats://host:port"))?;
    if !matches!(url.scheme(), "nats" | "tls") {
        return Err(format!(
            "scheme {:?} is not supported: use nats:// (or tls:// for TLS)",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{raw:?} has no host; expected nats://host:port"))?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{raw:?} has a path, query or fragment; expected nats://host:port"
        ));
    }
    let userinfo = match (url.username(), url.password()) {
        ("", None) => None,
        (user, None) => Some(user.to_string()),
        (user, Some(password)) => Some(format!("{user}:{password}")),
    };
    Ok(BrokerUrl {
        scheme: url.scheme().to_string(),
        host: host.to_string(),
        port: url.port().unwrap_or(super::NATS_CLIENT_PORT),
        userinfo,
    })
}

/// Parses `host:port`, the shape of Broker endpoints.
pub fn parse_host_port(raw: &str) -> Result<(String, u16), String> {
    let (host, port) = raw
        .rsplit_once(':')
        .ok_or_else(|| format!("{raw:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{raw:?}: port must be 1-65535"))?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let valid_host = match bare {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || is_subdomain(host),
    };
    if !valid_host {
        return Err(format!("{raw:?}: {host:?} is not a DNS name or IP address"));
    }
    Ok((host.to_string(), port))
}

fn check_name(name: &str, max: usize, kind: &str, dns1035: bool, errors: &mut Vec<FieldError>) {
    check_name_at("metadata.name", name, max, kind, dns1035, errors);
}

fn check_name_at(
    path: &str,
    name: &str,
    max: usize,
    kind: &str,
    dns1035: bool,
    errors: &mut Vec<FieldError>,
) {
    if name.len() > max {
        errors.push(FieldError::new(
            path,
            format!(
                "{name:?} is {} characters; {kind} names are at most {max} so the names derived from them fit Kubernetes' 63-character limit: choose a shorter name",
                name.len()
            ),
        ));
    } else if !is_dns_label(name)
        || (dns1035 && !name.starts_with(|c: char| c.is_ascii_lowercase()))
    {
        errors.push(FieldError::new(
            path,
            format!(
                "{name:?} must be lowercase letters, digits and '-'{} (it names Services and pods)",
                if dns1035 {
                    ", starting with a letter"
                } else {
                    ""
                }
            ),
        ));
    }
}

fn check_size(size: i32, errors: &mut Vec<FieldError>) {
    if !(1..=10).contains(&size) {
        errors.push(FieldError::new(
            "spec.size",
            format!("{size} is out of range: use 1 to 10"),
        ));
    }
}

fn check_image(image: Option<&str>, version: Option<&str>, errors: &mut Vec<FieldError>) {
    if let Some(image) = image {
        let path_ok = !image.is_empty()
            && image.split('/').enumerate().all(|(i, part)| {
                let registry =
                    i == 0 && image.contains('/') && (part.contains('.') || part.contains(':'));
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || b"._-".contains(&b)
                            || (registry && b == b':')
                    })
            });
        if image.contains('@')
            || image
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
        {
            errors.push(FieldError::new(
                "spec.image",
                format!("{image:?} includes a tag or digest: put the repository here and the tag in spec.version"),
            ));
        } else if !path_ok {
            errors.push(FieldError::new(
                "spec.image",
                format!("{image:?} is not an image repository like \"nats\" or \"registry.example.com/team/nats\""),
            ));
        }
    }
    if let Some(version) = version {
        let tag_ok = !version.is_empty()
            && version.len() <= 128
            && (version.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && version
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                || version
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())));
        if !tag_ok {
            errors.push(FieldError::new(
                "spec.version",
                format!("{version:?} is not an image tag (letters, digits, '.', '_', '-', at most 128) or sha256 digest"),
            ));
        }
    }
}

fn check_cidr(path: &str, cidr: &str, errors: &mut Vec<FieldError>) {
    if cidr.parse::<ipnet::IpNet>().is_err() {
        errors.push(FieldError::new(
            path,
            format!("{cidr:?} is not a CIDR like 10.0.0.0/8 or 2001:db8::/32"),
        ));
    }
}

fn check_subdomain(path: &str, name: &str, errors: &mut Vec<FieldError>) {
    if !is_subdomain(name) {
        errors.push(FieldError::new(
            path,
            format!("{name:?} is not a valid object name (lowercase letters, digits, '-' and '.', at most 253)"),
        ));
    }
}

fn check_positive_quantity(
    path: &str,
    value: &str,
    max_units: Option<i128>,
    errors: &mut Vec<FieldError>,
) {
    match Quantity::parse(value) {
        Err(e) => errors.push(FieldError::new(path, e.to_string())),
        Ok(q) if q <= Quantity::parse("0").expect("zero parses") => {
            errors.push(FieldError::new(
                path,
                format!("{value:?} must be greater than zero"),
            ));
        }
        Ok(q) => {
            if let Some(max) = max_units.filter(|max| q.ceil_units() > *max) {
                errors.push(FieldError::new(
                    path,
                    format!("{value:?} is more than the allowed {max} bytes"),
                ));
            }
        }
    }
}

fn check_resources(resources: Option<&ResourceRequirements>, errors: &mut Vec<FieldError>) {
    let Some(resources) = resources else { return };
    let mut parsed = |section: &str,
                      map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >| {
        let mut values = std::collections::BTreeMap::new();
        for (name, quantity) in map.into_iter().flatten() {
            match Quantity::parse(&quantity.0) {
                Ok(q) => {
                    values.insert(name.clone(), q);
                }
                Err(e) => errors.push(FieldError::new(
                    format!("spec.resources.{section}.{name}"),
                    e.to_string(),
                )),
            }
        }
        values
    };
    let requests = parsed("requests", resources.requests.as_ref());
    let limits = parsed("limits", resources.limits.as_ref());
    for (name, request) in &requests {
        if let Some(limit) = limits.get(name).filter(|limit| request > limit) {
            errors.push(FieldError::new(
                format!("spec.resources.requests.{name}"),
                format!("request {request} is above the limit {limit}: lower the request or raise the limit"),
            ));
        }
    }
}

/// Pod-template labels and annotations the operator sets itself: selectors, ownership and the
/// checksum that rolls the pods depend on them.
const RESERVED_POD_LABELS: [&str; 4] = [APP_LABEL, MANAGED_BY_LABEL, INSTANCE_LABEL, NAME_LABEL];
const RESERVED_POD_ANNOTATIONS: [&str; 1] = [CONFIG_CHECKSUM_ANNOTATION];

fn check_pod_options(options: Option<&PodOptions>, errors: &mut Vec<FieldError>) {
    let Some(options) = options else {
        return;
    };
    let mut check_keys = |field: &str,
                          map: Option<&BTreeMap<String, String>>,
                          reserved: &[&str]| {
        for (key, value) in map.into_iter().flatten() {
            let path = format!("spec.pod.{field}[{key:?}]");
            if !is_qualified_key(key) {
                errors.push(FieldError::new(
                    &path,
                    "not a valid key ([prefix/]name, name: letters, digits, '-', '_', '.', at most 63)",
                ));
            } else if reserved.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    &path,
                    "the operator sets this key itself; choose another",
                ));
            }
            if field != "annotations" && !is_label_value(value) {
                errors.push(FieldError::new(
                    &path,
                    format!("{value:?} is not a valid label value (letters, digits, '-', '_', '.', at most 63)"),
                ));
            }
        }
    };
    check_keys("nodeSelector", options.node_selector.as_ref(), &[]);
    check_keys("labels", options.labels.as_ref(), &RESERVED_POD_LABELS);
    check_keys(
        "annotations",
        options.annotations.as_ref(),
        &RESERVED_POD_ANNOTATIONS,
    );
    if let Some(name) = &options.priority_class_name {
        check_subdomain("spec.pod.priorityClassName", name, errors);
    }
    for (i, secret) in options.image_pull_secrets.iter().flatten().enumerate() {
        check_subdomain(
            &format!("spec.pod.imagePullSecrets[{i}].name"),
            &secret.name,
            errors,
        );
    }
    for (i, toleration) in options.tolerations.iter().flatten().enumerate() {
        let path = format!("spec.pod.tolerations[{i}]");
        match toleration.operator.as_deref() {
            None | Some("Equal") => {}
            Some("Exists") if toleration.value.as_deref().is_none_or(str::is_empty) => {}
            Some("Exists") => errors.push(FieldError::new(
                format!("{path}.value"),
                "must be empty when operator is Exists",
            )),
            Some(other) => errors.push(FieldError::new(
                format!("{path}.operator"),
                format!("{other:?}: use Equal or Exists"),
            )),
        }
        if let Some(effect) = toleration.effect.as_deref()
            && !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errors.push(FieldError::new(
                format!("{path}.effect"),
                format!("{effect:?}: use NoSchedule, PreferNoSchedule or NoExecute"),
            ));
        }
        if toleration.key.as_deref().is_none_or(str::is_empty)
            && toleration.operator.as_deref() != Some("Exists")
        {
            errors.push(FieldError::new(
                format!("{path}.operator"),
                "a toleration without key must use operator Exists",
            ));
        }
    }
    for (i, constraint) in options
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
    {
        let path = format!("spec.pod.topologySpreadConstraints[{i}]");
        if constraint.max_skew < 1 {
            errors.push(FieldError::new(
                format!("{path}.maxSkew"),
                "must be at least 1",
            ));
        }
        if constraint.topology_key.is_empty() {
            errors.push(FieldError::new(
                format!("{path}.topologyKey"),
                "required (e.g. topology.kubernetes.io/zone)",
            ));
        }
        if !matches!(
            constraint.when_unsatisfiable.as_str(),
            "DoNotSchedule" | "ScheduleAnyway"
        ) {
            errors.push(FieldError::new(
                format!("{path}.whenUnsatisfiable"),
                format!(
                    "{:?}: use DoNotSchedule or ScheduleAnyway",
                    constraint.when_unsatisfiable
                ),
            ));
        }
    }
}

fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(crate) fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_qualified_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(is_subdomain)
        && !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
