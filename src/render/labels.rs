//! The labels and annotations that mark what the operator owns.

/// The one field manager the operator applies with.
pub const FIELD_MANAGER: &str = "meshery-operator";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "meshery-operator";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Value of `NAME_LABEL` on a Broker's children.
pub const BROKER_APP_NAME: &str = "meshery-broker";
/// Value of `NAME_LABEL` on a MeshSync's children.
pub const MESHSYNC_APP_NAME: &str = "meshery-meshsync";
/// The label selecting a CR's pods, `app: <cr name>`, as the Go operator's troubleshooting docs use it.
pub const APP_LABEL: &str = "app";
/// On cluster-scoped children, which cannot carry an ownerReference to a namespaced CR: the owner's UID.
pub const OWNER_UID_LABEL: &str = "meshery.io/owner-uid";
/// Pod-template annotation holding a checksum of the rendered config, so a config change rolls the pods.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "meshery.io/config-checksum";
