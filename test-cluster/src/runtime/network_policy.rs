//! NetworkPolicy enforcement, the part a CNI plugin does: each pod that an Ingress policy selects
//! gets an nftables table in its own network namespace that drops what no rule of those policies
//! admits. Peers are pods (by their IPs, from `podSelector` / `namespaceSelector`) and `ipBlock`s;
//! ports are numbers, ranges (`endPort`) or the pod's named container ports. As Kubernetes
//! specifies, the node itself (the bridge's address: probes, the machine's own processes) is
//! always admitted, and replies to the pod's own connections pass. Egress rules are not enforced:
//! the operator renders none.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::io::AsyncWriteExt;

/// The nftables table the enforcer owns in each pod's namespace.
const TABLE: &str = "inet mo_network_policy";
/// How often the rules of every pod are brought up to date with policies, pods and namespaces.
const RESYNC: Duration = Duration::from_millis(250);
/// How long the node waits for its first lists of policies, pods and namespaces.
const STORES_READY_WITHIN: Duration = Duration::from_secs(30);

/// Whether `labels` satisfy `selector` (an empty selector selects everything), as the API server
/// reads `matchLabels` and `matchExpressions`.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// What the cluster holds that decides a pod's rules.
pub struct ClusterView<'a> {
    pub policies: &'a [NetworkPolicy],
    pub pods: &'a [Pod],
    pub namespaces: &'a [Namespace],
}

impl ClusterView<'_> {
    fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        self.namespaces
            .iter()
            .find(|n| n.name_any() == name)
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    }

    /// The policies that isolate `pod` for ingress.
    fn isolating(&self, pod: &Pod) -> Vec<&NetworkPolicy> {
        let namespace = pod.namespace().unwrap_or_default();
        self.policies
            .iter()
            .filter(|p| p.namespace().unwrap_or_default() == namespace)
            .filter(|p| {
                let spec = p.spec.as_ref();
                let types = spec.and_then(|s| s.policy_types.as_ref());
                // Without policyTypes, every policy is an Ingress policy.
                types.is_none_or(|t| t.iter().any(|t| t == "Ingress"))
                    && spec
                        .and_then(|s| s.pod_selector.as_ref())
                        .is_none_or(|s| selects(s, pod.labels()))
            })
            .collect()
    }

    /// The source addresses one peer admits, in nftables' syntax.
    fn peer_sources(&self, policy_namespace: &str, peer: &NetworkPolicyPeer) -> Vec<String> {
        if let Some(block) = &peer.ip_block {
            if block.cidr.contains(':') {
                return Vec::new();
            }
            let except: Vec<&str> = block
                .except
                .iter()
                .flatten()
                .map(String::as_str)
                .filter(|c| !c.contains(':'))
                .collect();
            return vec![if except.is_empty() {
                format!("ip saddr {}", block.cidr)
            } else {
                format!(
                    "ip saddr {} ip saddr != {{ {} }}",
                    block.cidr,
                    except.join(", ")
                )
            }];
        }
        let addresses: BTreeSet<Ipv4Addr> = self
            .pods
            .iter()
            .filter(|p| {
                let namespace = p.namespace().unwrap_or_default();
                let namespace_admitted = match &peer.namespace_selector {
                    Some(selector) => selects(selector, &self.namespace_labels(&namespace)),
                    None => namespace == policy_namespace,
                };
                namespace_admitted
                    && peer
                        .pod_selector
                        .as_ref()
                        .is_none_or(|s| selects(s, p.labels()))
            })
            .filter_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse().ok())
            .collect();
        if addresses.is_empty() {
            return Vec::new();
        }
        let list: Vec<String> = addresses.iter().map(Ipv4Addr::to_string).collect();
        vec![format!("ip saddr {{ {} }}", list.join(", "))]
    }
}

/// The destination ports one policy port admits on `pod`, in nftables' syntax; `None` when it
/// names a port the pod does not have (it admits nothing).
fn port_match(pod: &Pod, port: &NetworkPolicyPort) -> Option<String> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP").to_lowercase();
    let number = match &port.port {
        None => return Some(format!("meta l4proto {protocol}")),
        Some(IntOrString::Int(number)) => *number,
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)?,
    };
    Some(match port.end_port {
        Some(end) => format!("{protocol} dport {number}-{end}"),
        None => format!("{protocol} dport {number}"),
    })
}

/// The nftables script that brings `pod`'s namespace to the policies in `view`: its table
/// replaced in one transaction, or removed when no policy isolates the pod. `node` is the node's
/// own address, which is always admitted.
pub fn ruleset(pod: &Pod, view: &ClusterView, node: Ipv4Addr) -> String {
    // Declaring the table first makes deleting it valid whether or not it exists.
    let mut script = format!("table {TABLE}\ndelete table {TABLE}\n");
    let policies = view.isolating(pod);
    if policies.is_empty() {
        return script;
    }
    let mut rules = vec![
        "ct state established,related accept".to_string(),
        "iif \"lo\" accept".to_string(),
        format!("ip saddr {node} accept"),
    ];
    for policy in policies {
        let namespace = policy.namespace().unwrap_or_default();
        let ingress = policy.spec.iter().flat_map(|s| s.ingress.iter().flatten());
        for rule in ingress {
            // An absent or empty list admits every source, or every port.
            let sources: Vec<String> = match rule.from.as_deref() {
                None | Some([]) => vec![String::new()],
                Some(peers) => peers
                    .iter()
                    .flat_map(|peer| view.peer_sources(&namespace, peer))
                    .collect(),
            };
            let ports: Vec<String> = match rule.ports.as_deref() {
                None | Some([]) => vec![String::new()],
                Some(ports) => ports.iter().filter_map(|p| port_match(pod, p)).collect(),
            };
            for source in &sources {
                for port in &ports {
                    let matches = [source.as_str(), port.as_str()]
                        .into_iter()
                        .filter(|m| !m.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ");
                    rules.push(format!("{matches} accept").trim_start().to_string());
                }
            }
        }
    }
    script.push_str(&format!(
        "table {TABLE} {{\n  chain ingress {{\n    type filter hook input priority 0; policy drop;\n"
    ));
    for rule in rules {
        script.push_str(&format!("    {rule}\n"));
    }
    script.push_str("  }\n}\n");
    script
}

/// A pod running here: its network namespace, and the script last applied in it.
struct Enforced {
    pod: Pod,
    network_namespace: String,
    applied: Option<String>,
}

/// Keeps every running pod's rules up to date with the cluster's NetworkPolicies, Pods and
/// Namespaces (each watched into a store).
pub struct Enforcer {
    node: Ipv4Addr,
    policies: Store<NetworkPolicy>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    enforced: tokio::sync::Mutex<HashMap<String, Enforced>>,
}

fn watched<K>(client: &Client) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let api: Api<K> = Api::all(client.clone());
    let task = tokio::spawn(
        reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {}),
    );
    (store, task)
}

impl Enforcer {
    /// Starts watching; the returned tasks (the watches and the resync loop) end when aborted.
    pub async fn start(
        client: &Client,
        node: Ipv4Addr,
    ) -> Result<(std::sync::Arc<Enforcer>, Vec<tokio::task::JoinHandle<()>>), crate::Error> {
        let (policies, watch_policies) = watched::<NetworkPolicy>(client);
        let (pods, watch_pods) = watched::<Pod>(client);
        let (namespaces, watch_namespaces) = watched::<Namespace>(client);
        let mut tasks = vec![watch_policies, watch_pods, watch_namespaces];
        // Pods must not start before their rules can be known.
        let ready = tokio::time::timeout(STORES_READY_WITHIN, async {
            policies.wait_until_ready().await.is_ok()
                && pods.wait_until_ready().await.is_ok()
                && namespaces.wait_until_ready().await.is_ok()
        })
        .await;
        if ready != Ok(true) {
            for task in &tasks {
                task.abort();
            }
            return Err(crate::Error::Network(format!(
                "the NetworkPolicy enforcer could not list NetworkPolicies, Pods and Namespaces within {STORES_READY_WITHIN:?} (may its client list them cluster-wide?)"
            )));
        }
        let enforcer = std::sync::Arc::new(Enforcer {
            node,
            policies,
            pods,
            namespaces,
            enforced: tokio::sync::Mutex::new(HashMap::new()),
        });
        let resync = tokio::spawn({
            let enforcer = enforcer.clone();
            async move {
                loop {
                    tokio::time::sleep(RESYNC).await;
                    enforcer.enforce_all().await;
                }
            }
        });
        tasks.push(resync);
        Ok((enforcer, tasks))
    }

    /// A pod's namespace is set up: its rules are applied before its containers start.
    pub async fn admit(&self, pod: &Pod, network_namespace: &str) {
        self.enforced.lock().await.insert(
            pod.uid().unwrap_or_default(),
            Enforced {
                pod: pod.clone(),
                network_namespace: network_namespace.to_string(),
                applied: None,
            },
        );
        self.enforce_all().await;
    }

    /// The pod's namespace is about to go: nothing more to enforce there.
    pub async fn release(&self, pod: &Pod) {
        self.enforced
            .lock()
            .await
            .remove(&pod.uid().unwrap_or_default());
    }

    async fn enforce_all(&self) {
        let policies: Vec<NetworkPolicy> = self
            .policies
            .state()
            .iter()
            .map(|p| (**p).clone())
            .collect();
        let pods: Vec<Pod> = self.pods.state().iter().map(|p| (**p).clone()).collect();
        let namespaces: Vec<Namespace> = self
            .namespaces
            .state()
            .iter()
            .map(|n| (**n).clone())
            .collect();
        let view = ClusterView {
            policies: &policies,
            pods: &pods,
            namespaces: &namespaces,
        };
        let mut enforced = self.enforced.lock().await;
        for (uid, entry) in enforced.iter_mut() {
            let current = pods
                .iter()
                .find(|p| p.uid().as_deref() == Some(uid.as_str()))
                .unwrap_or(&entry.pod);
            let script = ruleset(current, &view, self.node);
            if entry.applied.as_ref() == Some(&script) {
                continue;
            }
            match apply(&entry.network_namespace, &script).await {
                Ok(()) => entry.applied = Some(script),
                Err(e) => eprintln!(
                    "test-cluster node: NetworkPolicy rules for pod {}/{}: {e}",
                    current.namespace().unwrap_or_default(),
                    current.name_any()
                ),
            }
        }
    }
}

/// Runs `script` with `nft` inside the network namespace.
async fn apply(network_namespace: &str, script: &str) -> Result<(), String> {
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", network_namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running nft (Debian package nftables): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f: {}\n{script}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, labels: serde_json::Value, ip: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "nats", "ports": [
                {"name": "client", "containerPort": 4222},
                {"name": "monitoring", "containerPort": 8222}
            ]}]},
            "status": {"podIP": ip}
        }))
        .unwrap()
    }

    fn namespace(name: &str, labels: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn policy(namespace: &str, spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": namespace},
            "spec": spec
        }))
        .unwrap()
    }

    const NODE: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);

    fn rules(script: &str) -> Vec<&str> {
        script
            .lines()
            .map(str::trim)
            .filter(|l| l.ends_with("accept"))
            .collect()
    }

    #[test]
    fn selectors_read_labels_and_expressions_as_the_api_server_does() {
        let labels = BTreeMap::from([("app".to_string(), "nats".to_string())]);
        let selector =
            |value: serde_json::Value| -> LabelSelector { serde_json::from_value(value).unwrap() };
        assert!(selects(&selector(json!({})), &labels));
        assert!(selects(
            &selector(json!({"matchLabels": {"app": "nats"}})),
            &labels
        ));
        assert!(!selects(
            &selector(json!({"matchLabels": {"app": "x"}})),
            &labels
        ));
        let expression = |operator: &str, values: serde_json::Value| {
            selector(
                json!({"matchExpressions": [{"key": "app", "operator": operator, "values": values}]}),
            )
        };
        assert!(selects(&expression("In", json!(["nats", "x"])), &labels));
        assert!(!selects(&expression("NotIn", json!(["nats"])), &labels));
        assert!(selects(&expression("Exists", json!(null)), &labels));
        assert!(!selects(&expression("DoesNotExist", json!(null)), &labels));
        assert!(selects(
            &expression("NotIn", json!(["nats"])),
            &BTreeMap::new()
        ));
    }

    #[test]
    fn a_pod_no_policy_selects_is_not_isolated() {
        let broker = pod("meshery", "b-0", json!({"app": "broker"}), "10.244.0.2");
        let policies = [policy(
            "meshery",
            json!({"podSelector": {"matchLabels": {"app": "other"}}, "ingress": []}),
        )];
        let view = ClusterView {
            policies: &policies,
            pods: &[],
            namespaces: &[],
        };
        assert_eq!(
            ruleset(&broker, &view, NODE),
            "table inet mo_network_policy\ndelete table inet mo_network_policy\n"
        );
    }

    #[test]
    fn peers_are_the_selected_pods_of_the_selected_namespaces_and_the_node_is_always_admitted() {
        let broker = pod("meshery", "b-0", json!({"app": "broker"}), "10.244.0.2");
        let pods = [
            broker.clone(),
            pod(
                "tools",
                "meshsync",
                json!({"app": "meshsync"}),
                "10.244.0.3",
            ),
            pod(
                "meshery",
                "meshsync",
                json!({"app": "meshsync"}),
                "10.244.0.4",
            ),
            pod(
                "labelled",
                "meshsync",
                json!({"app": "meshsync"}),
                "10.244.0.5",
            ),
            pod("tools", "other", json!({"app": "other"}), "10.244.0.6"),
        ];
        let namespaces = [
            namespace("meshery", json!({})),
            namespace("tools", json!({})),
            namespace("labelled", json!({"team": "a"})),
        ];
        let policies = [policy(
            "meshery",
            json!({
                "podSelector": {"matchLabels": {"app": "broker"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"app": "meshsync"}}, "namespaceSelector": {}}],
                     "ports": [{"port": 4222, "protocol": "TCP"}]},
                    {"from": [{"podSelector": {}}], "ports": [{"port": "monitoring"}]},
                    {"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]},
                    {"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                     "ports": [{"port": 6222, "endPort": 6223}, {"port": "absent"}]},
                    {"ports": [{"protocol": "UDP"}]}
                ]
            }),
        )];
        let view = ClusterView {
            policies: &policies,
            pods: &pods,
            namespaces: &namespaces,
        };
        let script = ruleset(&broker, &view, NODE);
        assert!(script.contains("policy drop;"), "{script}");
        assert_eq!(
            rules(&script),
            [
                "ct state established,related accept",
                "iif \"lo\" accept",
                "ip saddr 10.244.0.1 accept",
                "ip saddr { 10.244.0.3, 10.244.0.4, 10.244.0.5 } tcp dport 4222 accept",
                "ip saddr { 10.244.0.2, 10.244.0.4 } tcp dport 8222 accept",
                "ip saddr { 10.244.0.5 } accept",
                "ip saddr 192.168.0.0/16 ip saddr != { 192.168.1.0/24 } tcp dport 6222-6223 accept",
                "meta l4proto udp accept",
            ]
        );
    }

    #[test]
    fn a_rule_whose_peers_match_no_pod_admits_nothing() {
        let broker = pod("meshery", "b-0", json!({"app": "broker"}), "10.244.0.2");
        let policies = [policy(
            "meshery",
            json!({"podSelector": {}, "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "meshsync"}}}], "ports": [{"port": 4222}]}
            ]}),
        )];
        let view = ClusterView {
            policies: &policies,
            pods: std::slice::from_ref(&broker),
            namespaces: &[],
        };
        let script = ruleset(&broker, &view, NODE);
        assert_eq!(
            rules(&script),
            [
                "ct state established,related accept",
                "iif \"lo\" accept",
                "ip saddr 10.244.0.1 accept"
            ]
        );
    }

    #[test]
    fn egress_only_policies_do_not_isolate_for_ingress() {
        let broker = pod("meshery", "b-0", json!({}), "10.244.0.2");
        let policies = [policy(
            "meshery",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        )];
        let view = ClusterView {
            policies: &policies,
            pods: &[],
            namespaces: &[],
        };
        assert!(!ruleset(&broker, &view, NODE).contains("chain"));
    }
}
