//! MeshSync's least-privilege ClusterRole, derived from its watch-list.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::api::watch_list::WatchList;
use crate::api::{GROUP, PodAccessGrants};

/// What MeshSync may do with each resource it watches.
pub const WATCH_VERBS: [&str; 3] = ["get", "list", "watch"];
const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_RESOURCE: &str = "customresourcedefinitions";
const MESHSYNC_RESOURCE: &str = "meshsyncs";

/// The rules MeshSync `name` needs: get/list/watch on each watched resource (one rule per API group,
/// groups and resources sorted), list/watch on CustomResourceDefinitions (MeshSync discovers custom
/// resources through them) unless already watched, get on its own MeshSync (its configuration),
/// and the pod subresources Meshery UI reaches through it (`pods/log`, `pods/exec`) as `access` allows.
pub fn meshsync_rules(
    watch_list: &WatchList,
    name: &str,
    access: PodAccessGrants,
) -> Vec<PolicyRule> {
    let mut by_group: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for resource in watch_list.watched_resources() {
        by_group
            .entry(resource.group)
            .or_default()
            .insert(resource.plural);
    }
    let crds_watched = by_group
        .get(CRD_GROUP)
        .is_some_and(|r| r.contains(CRD_RESOURCE));
    let mut rules: Vec<PolicyRule> = by_group
        .into_iter()
        .map(|(group, resources)| rule(&group, resources.into_iter().collect(), &WATCH_VERBS, None))
        .collect();
    if !crds_watched {
        rules.push(rule(
            CRD_GROUP,
            vec![CRD_RESOURCE.to_string()],
            &["list", "watch"],
            None,
        ));
    }
    rules.push(rule(
        GROUP,
        vec![MESHSYNC_RESOURCE.to_string()],
        &["get"],
        Some(name),
    ));
    if access.logs {
        rules.push(rule("", vec!["pods/log".to_string()], &["get"], None));
    }
    if access.exec {
        // An exec over WebSockets (kubectl ≥ 1.30, client-go's fallback) is a GET.
        rules.push(rule(
            "",
            vec!["pods/exec".to_string()],
            &["create", "get"],
            None,
        ));
    }
    rules
}

fn rule(
    group: &str,
    resources: Vec<String>,
    verbs: &[&str],
    resource_name: Option<&str>,
) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        resource_names: resource_name.map(|n| vec![n.to_string()]),
        ..PolicyRule::default()
    }
}
