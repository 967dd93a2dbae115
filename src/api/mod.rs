//! The `meshery.io` custom resources: types, CRD generation, and the validation the schema cannot express.

mod broker;
mod meshsync;
mod pod;
mod quantity;
mod status;
mod validate;
pub mod watch_list;

pub use broker::*;
pub use meshsync::*;
pub use pod::PodOptions;
pub use quantity::{Quantity, QuantityError};
pub use status::*;
pub use validate::{
    BrokerUrl, FieldError, parse_broker_url, parse_host_port, validate_broker, validate_meshsync,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group both custom resources belong to.
pub const GROUP: &str = "meshery.io";
/// The version the operator reads and the cluster stores.
pub const STORAGE_VERSION: &str = "v1alpha1";

/// The Lease the chart's operator replicas elect their leader with (`doctor` looks for it too).
pub const LEASE_NAME: &str = "meshery-operator";
/// The version the Go operator stored; served with the identical schema so clusters that hold it keep working.
pub const COMPAT_VERSION: &str = "v1alpha2";

/// Both CRDs as the cluster should have them: `v1alpha1` served and stored, `v1alpha2` served with the same schema.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [Broker::crd(), MeshSync::crd()]
        .into_iter()
        .map(with_compat_version)
        .collect()
}

fn with_compat_version(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut compat = crd.spec.versions[0].clone();
    compat.name = COMPAT_VERSION.to_string();
    compat.storage = false;
    compat.served = true;
    crd.spec.versions.push(compat);
    crd
}

/// The CRDs as one multi-document YAML stream, exactly as committed under `crds/`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| serde_norway::to_string(crd).expect("a CRD always serialises to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}
