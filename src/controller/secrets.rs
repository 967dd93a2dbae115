//! Reading the Secrets a reconcile depends on: the operator's own (from the cache, confirmed with a
//! GET before anything is generated) and the user's (always a GET: they are not labelled for the cache).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::context::Context;
use super::error::Error;
use crate::api::Broker;
use crate::object::ObjectKey;
use crate::render::TLS_CA_KEY;

/// A Secret's decoded data and the revision that changes whenever the data does.
#[derive(Debug)]
pub struct SecretData {
    pub data: BTreeMap<String, Vec<u8>>,
    /// `uid/resourceVersion`.
    pub revision: String,
}

/// A Secret's decoded data, or `None` when the Secret does not exist.
pub async fn read_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<SecretData>, Error> {
    let key = ObjectKey {
        group: String::new(),
        kind: "Secret".into(),
        namespace: Some(namespace.into()),
        name: name.into(),
    };
    if let Some(cached) = ctx.children.get(&key) {
        let secret: Secret = serde_json::from_value(cached.0).map_err(|e| Error::Decode {
            object: key.to_string(),
            message: e.to_string(),
        })?;
        return Ok(Some(decode(secret)));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(found) => Ok(found.map(decode)),
        Err(source) => Err(Error::Read {
            what: key.to_string(),
            source,
        }),
    }
}

fn decode(secret: Secret) -> SecretData {
    let revision = format!(
        "{}/{}",
        secret.metadata.uid.unwrap_or_default(),
        secret.metadata.resource_version.unwrap_or_default()
    );
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    SecretData { data, revision }
}

/// The CA certificate in `broker`'s TLS Secret, which the broker's clients (the operator's probe,
/// MeshSync) trust: `None` when TLS is off, or the Secret is missing or holds no `ca.crt`.
pub async fn broker_tls_ca(ctx: &Context, broker: &Broker) -> Result<Option<Vec<u8>>, Error> {
    let Some(secret) = broker.spec.tls_secret_name() else {
        return Ok(None);
    };
    let namespace = broker.namespace().unwrap_or_default();
    Ok(read_secret(ctx, &namespace, secret)
        .await?
        .and_then(|secret| secret.data.get(TLS_CA_KEY).cloned()))
}
