//! Fixtures and proptest strategies shared by the test crates. Each crate uses part of them, hence the
//! `dead_code` allowance where the module is declared.

pub mod strategies;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshery_operator::api::{
    Broker, BrokerSpec, CustomBroker, MeshSync, MeshSyncBroker, MeshSyncSpec, NativeBroker,
    WatchListConfigMap,
};
use meshery_operator::object::Object;
use meshery_operator::render::{
    BrokerAuthInput, BrokerCredential, BrokerInputs, MeshSyncInputs, ResolvedBroker,
};

/// A generated token of the shape the I/O layer produces: `t` and 64 hex digits.
pub const TOKEN: &str = "t0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const NATS_VERSION: &str = "2.10.22";
pub const MESHSYNC_VERSION: &str = "v1.0.3";

pub fn meta(name: &str, namespace: Option<&str>, uid: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        uid: uid.map(str::to_string),
        ..ObjectMeta::default()
    }
}

pub fn broker(name: &str, namespace: &str, spec: BrokerSpec) -> Broker {
    Broker {
        metadata: meta(name, Some(namespace), Some("uid-broker")),
        spec,
        status: None,
    }
}

pub fn broker_spec(size: i32) -> BrokerSpec {
    BrokerSpec {
        size,
        ..BrokerSpec::default()
    }
}

pub fn generated_inputs() -> BrokerInputs {
    BrokerInputs {
        default_version: NATS_VERSION.to_string(),
        auth: BrokerAuthInput::Generated {
            token: TOKEN.to_string(),
        },
    }
}

pub fn meshsync(name: &str, namespace: &str, spec: MeshSyncSpec) -> MeshSync {
    MeshSync {
        metadata: meta(name, Some(namespace), Some("uid-meshsync")),
        spec,
        status: None,
    }
}

pub fn native_spec(broker: &str) -> MeshSyncSpec {
    MeshSyncSpec {
        size: 1,
        broker: Some(MeshSyncBroker {
            native: Some(NativeBroker {
                name: broker.to_string(),
                namespace: None,
            }),
            custom: None,
        }),
        ..MeshSyncSpec::default()
    }
}

pub fn custom_spec(url: &str) -> MeshSyncSpec {
    MeshSyncSpec {
        size: 1,
        broker: Some(MeshSyncBroker {
            native: None,
            custom: Some(CustomBroker {
                url: Some(url.to_string()),
            }),
        }),
        ..MeshSyncSpec::default()
    }
}

pub fn watch_list(key: &str, value: &str) -> WatchListConfigMap {
    WatchListConfigMap {
        data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..WatchListConfigMap::default()
    }
}

/// Inputs for a MeshSync publishing to a same-namespace Broker `broker` with a generated token.
pub fn same_namespace_inputs(broker: &str, namespace: &str) -> MeshSyncInputs {
    MeshSyncInputs {
        default_version: MESHSYNC_VERSION.to_string(),
        broker: ResolvedBroker {
            scheme: "nats".to_string(),
            address: format!("{broker}.{namespace}.svc.cluster.local:4222"),
            credential: BrokerCredential::SecretKey {
                secret: format!("{broker}-auth"),
                key: "token".to_string(),
            },
            credential_revision: "secret-uid/1".to_string(),
            tls_ca: None,
        },
        crd_uid: Some("uid-crd".to_string()),
    }
}

/// The rendered object of `kind` named `name`; panics with the rendered keys when absent.
pub fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| {
            let keys: Vec<String> = objects.iter().map(|o| o.key().to_string()).collect();
            panic!("no {kind} {name} among {keys:?}")
        })
}

pub fn has(objects: &[Object], kind: &str, name: &str) -> bool {
    objects.iter().any(|o| o.kind() == kind && o.name() == name)
}

/// The rendered `nats.conf` of a Broker's objects.
pub fn nats_conf(objects: &[Object]) -> String {
    objects
        .iter()
        .find(|o| o.kind() == "ConfigMap" && o.name().ends_with("-config"))
        .and_then(|o| o.get(&["data", "nats.conf"]))
        .and_then(|v| v.as_str())
        .expect("a Broker renders a ConfigMap with nats.conf")
        .to_string()
}

/// Every string in a JSON value, for "does this value leak" checks.
pub fn strings(value: &serde_json::Value) -> Vec<&str> {
    match value {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items.iter().flat_map(strings).collect(),
        serde_json::Value::Object(map) => map
            .keys()
            .map(String::as_str)
            .chain(map.values().flat_map(strings))
            .collect(),
        _ => Vec::new(),
    }
}
