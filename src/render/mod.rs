//! Pure rendering: a CR plus the inputs the I/O layer gathered → every object the operator wants to exist.
//! No client, clock or randomness: the same CR and inputs always give byte-identical objects.

mod broker;
pub mod credentials;
pub mod labels;
mod meshsync;
mod meta;
pub mod nats_conf;
mod pod;
pub mod rbac;

pub use broker::{
    DEFAULT_NATS_IMAGE, DEFAULT_NATS_VERSION, TLS_CA_KEY, TOKEN_KEY, broker_auth_secret_name,
    broker_internal_endpoint, desired_broker, generated_auth_secret_name,
};
pub use meshsync::{
    BROKER_AUTH_KEY, BROKER_CA_DIR, BROKER_TOKEN_ENV, BROKER_URL_ENV, DEFAULT_MESHSYNC_IMAGE,
    DEFAULT_MESHSYNC_VERSION, MESHSYNC_CRD_NAME, MESHSYNC_HEALTH_PORT, MeshSyncRelease,
    SSL_CERT_FILE_ENV, WATCH_LIST_DIR, desired_meshsync, meshsync_cluster_rbac_name,
};

/// What a Broker's rendering needs beyond its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInputs {
    /// The NATS image tag used when `spec.version` is unset.
    pub default_version: String,
    pub auth: BrokerAuthInput,
}

/// Where the broker's credentials come from, as the I/O layer found them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerAuthInput {
    /// No `spec.auth.secretRef`: the operator's `<name>-auth` Secret holds this token (read back from the
    /// cluster, or generated once by the I/O layer when the Secret does not exist yet).
    Generated { token: String },
    /// `spec.auth.secretRef` names a Secret holding this kind of credential.
    Referenced { kind: AuthKind },
}

/// The credential format of a user-supplied auth Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// Key `token`.
    Token,
    /// Key `users.json`: `{"users":[{"user":…,"password":…}]}`.
    Users,
}

/// What a MeshSync's rendering needs beyond its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshSyncInputs {
    /// The MeshSync image tag used when `spec.version` is unset.
    pub default_version: String,
    pub broker: ResolvedBroker,
    /// UID of the `meshsyncs.meshery.io` CRD, owner of the cluster-scoped RBAC (so uninstalling the CRDs
    /// removes it); `None` when unknown (offline rendering), and then no ownerReference is rendered.
    pub crd_uid: Option<String>,
}

/// The broker a MeshSync publishes to, resolved by the I/O layer (a native Broker through its status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedBroker {
    /// `nats` or `tls`.
    pub scheme: String,
    /// `host:port` MeshSync connects to.
    pub address: String,
    pub credential: BrokerCredential,
    /// Changes whenever the credential does, without revealing it (the source Secret's
    /// `uid/resourceVersion`; a digest of a custom URL's userinfo, which the CR spec already shows).
    /// Folded into the pod-template checksum: MeshSync reads the credential from its environment
    /// only at start-up, so a new credential must restart it.
    pub credential_revision: String,
    /// PEM of the CA that signed a TLS broker's certificate (`ca.crt` of a Broker's TLS Secret).
    /// MeshSync's Go TLS client trusts only the system roots, which a private CA is not among, so
    /// it is given this one too; `None` when the broker has no TLS or its Secret names no CA.
    pub tls_ca: Option<String>,
}

/// How MeshSync gets the credential that goes into `BROKER_URL` as `nats://$(NATS_TOKEN)@host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerCredential {
    /// The broker needs none.
    None,
    /// A Secret in the MeshSync's namespace whose key holds the URL userinfo (a same-namespace Broker's token Secret).
    SecretKey { secret: String, key: String },
    /// The userinfo value itself, rendered into the MeshSync's own `<name>-broker-auth` Secret (key `token`):
    /// for a Broker in another namespace, a users.json credential (`user:password`, percent-encoded), or a
    /// custom URL's userinfo.
    Copy { userinfo: String },
}
