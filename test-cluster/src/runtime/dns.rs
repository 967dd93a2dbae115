//! The cluster DNS the pods use (their `resolv.conf` names it): Service names
//! (`<svc>.<ns>.svc.cluster.local`) and the StatefulSet pods' names
//! (`<hostname>.<svc>.<ns>.svc.cluster.local`) answer with the ready endpoints' pod IPs, read
//! from the EndpointSlices the API server's controllers keep. There is no kube-proxy, so a
//! ClusterIP Service's name gives its endpoints directly, as a headless Service's would. Every
//! other name is NXDOMAIN: the pods have no way out of the machine.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::StreamExt;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

/// The cluster's domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
const TTL: u32 = 5;

/// Names to addresses, from the EndpointSlices: each Service's ready endpoints, and each
/// endpoint that has a hostname under its Service.
pub fn records<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<String, Vec<Ipv4Addr>> {
    let mut records: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(service) = slice.labels().get("kubernetes.io/service-name") else {
            continue;
        };
        let namespace = slice.namespace().unwrap_or_default();
        let service_name = format!("{service}.{namespace}.svc.{CLUSTER_DOMAIN}");
        for endpoint in &slice.endpoints {
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let addresses: Vec<Ipv4Addr> = endpoint
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            records
                .entry(service_name.clone())
                .or_default()
                .extend(&addresses);
            if let Some(hostname) = &endpoint.hostname {
                records
                    .entry(format!("{hostname}.{service_name}"))
                    .or_default()
                    .extend(&addresses);
            }
        }
    }
    for addresses in records.values_mut() {
        addresses.sort();
        addresses.dedup();
    }
    records
}

/// The answer to one query packet; `None` for a packet that is no query.
pub fn answer(packet: &[u8], records: &BTreeMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    let Some(query) = request.queries.first().cloned() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    let name = query.name().to_lowercase().to_ascii();
    let name = name.trim_end_matches('.');
    response.add_query(query.clone());
    match records.get(name) {
        Some(addresses) if !addresses.is_empty() => {
            if query.query_type() == RecordType::A {
                for address in addresses {
                    response.add_answer(Record::from_rdata(
                        query.name().clone(),
                        TTL,
                        RData::A(A(*address)),
                    ));
                }
            }
        }
        _ => response.metadata.response_code = ResponseCode::NXDomain,
    }
    response.to_vec().ok()
}

/// The `resolv.conf` of a pod in `namespace`, as a kubelet writes it for `ClusterFirst`.
pub fn resolv_conf(nameserver: Ipv4Addr, namespace: &str) -> String {
    format!(
        "nameserver {nameserver}\nsearch {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\noptions ndots:5\n"
    )
}

/// Serves the cluster's names on `address`:53 (UDP); the socket is closed once the returned tasks
/// are aborted.
pub async fn serve(
    client: Client,
    address: Ipv4Addr,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let socket = tokio::net::UdpSocket::bind((address, 53)).await?;
    let (store, writer) = reflector::store::<EndpointSlice>();
    let slices: Api<EndpointSlice> = Api::all(client);
    let reflect = tokio::spawn(
        reflector::reflector(writer, watcher(slices, watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {}),
    );
    Ok(vec![reflect, tokio::spawn(answer_queries(socket, store))])
}

async fn answer_queries(socket: tokio::net::UdpSocket, store: Store<EndpointSlice>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let state = store.state();
        let records = records(state.iter().map(|s| s.as_ref()));
        if let Some(reply) = answer(&buffer[..length], &records) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use serde_json::json;

    fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).unwrap()
    }

    fn broker_slices() -> Vec<EndpointSlice> {
        vec![
            slice(json!({
                "metadata": {"name": "b-headless-x", "namespace": "meshery",
                             "labels": {"kubernetes.io/service-name": "b-headless"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.244.0.3"], "hostname": "b-1", "conditions": {"ready": true}},
                    {"addresses": ["10.244.0.2"], "hostname": "b-0", "conditions": {"ready": true}},
                    {"addresses": ["10.244.0.4"], "hostname": "b-2", "conditions": {"ready": false}},
                ],
            })),
            slice(json!({
                "metadata": {"name": "b-y", "namespace": "meshery",
                             "labels": {"kubernetes.io/service-name": "b"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.2"]}],
            })),
            slice(json!({
                "metadata": {"name": "v6", "namespace": "meshery",
                             "labels": {"kubernetes.io/service-name": "b"}},
                "addressType": "IPv6",
                "endpoints": [{"addresses": ["fd00::1"]}],
            })),
        ]
    }

    #[test]
    fn services_and_statefulset_pods_resolve_to_ready_endpoints() {
        let records = records(&broker_slices());
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            records["b-headless.meshery.svc.cluster.local"],
            [ip("10.244.0.2"), ip("10.244.0.3")]
        );
        assert_eq!(
            records["b-0.b-headless.meshery.svc.cluster.local"],
            [ip("10.244.0.2")]
        );
        assert_eq!(records["b.meshery.svc.cluster.local"], [ip("10.244.0.2")]);
        assert!(!records.contains_key("b-2.b-headless.meshery.svc.cluster.local"));
    }

    fn ask(name: &str, record_type: RecordType) -> Message {
        let mut query = Message::new(7, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        let packet = query.to_vec().unwrap();
        Message::from_vec(&answer(&packet, &records(&broker_slices())).unwrap()).unwrap()
    }

    #[test]
    fn queries_are_answered_as_a_cluster_dns_would() {
        let found = ask("B-0.b-headless.meshery.svc.cluster.local.", RecordType::A);
        assert_eq!(found.metadata.id, 7);
        assert_eq!(found.metadata.response_code, ResponseCode::NoError);
        let addresses: Vec<String> = found.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(addresses, ["10.244.0.2"]);

        let no_ipv6 = ask("b.meshery.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(no_ipv6.metadata.response_code, ResponseCode::NoError);
        assert!(no_ipv6.answers.is_empty());

        for unknown in [
            "b.meshery.svc.cluster.local.meshery.svc.cluster.local.",
            "example.com.",
        ] {
            assert_eq!(
                ask(unknown, RecordType::A).metadata.response_code,
                ResponseCode::NXDomain,
                "{unknown}"
            );
        }
    }

    #[test]
    fn resolv_conf_searches_the_pods_namespace_first() {
        assert_eq!(
            resolv_conf(Ipv4Addr::new(10, 244, 0, 1), "meshery"),
            "nameserver 10.244.0.1\nsearch meshery.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }
}
