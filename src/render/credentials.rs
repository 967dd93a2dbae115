//! How MeshSync authenticates to its broker, decided from the broker's credential Secret: the same
//! rules for the controller (which reads the Secret from the cluster) and `plan` (which reads it
//! from observed files).

use kube::ResourceExt;

use super::meta::checksum;
use super::nats_conf::USERS_FILE_NAME;
use super::{
    BrokerCredential, MeshSyncRelease, ResolvedBroker, TOKEN_KEY, broker_auth_secret_name,
    broker_internal_endpoint,
};
use crate::api::{Broker, BrokerUrl};

/// The values of a Broker's credential Secret that decide MeshSync's credential.
#[derive(Clone, Copy, Debug, Default)]
pub struct BrokerSecretData<'a> {
    pub token: Option<&'a [u8]>,
    pub users_json: Option<&'a [u8]>,
    /// The Secret's `uid/resourceVersion`, which changes whenever its data does.
    pub revision: &'a str,
}

impl<'a> BrokerSecretData<'a> {
    /// Picks the two keys out of a Secret's decoded data.
    pub fn from_map(
        data: &'a std::collections::BTreeMap<String, Vec<u8>>,
        revision: &'a str,
    ) -> Self {
        BrokerSecretData {
            token: data.get(TOKEN_KEY).map(Vec::as_slice),
            users_json: data.get(USERS_FILE_NAME).map(Vec::as_slice),
            revision,
        }
    }
}

/// MeshSync's view of a native Broker: its internal endpoint, and the Broker's token Secret referenced
/// directly when in MeshSync's namespace, else a copy (Secrets cannot be referenced across namespaces).
/// A users.json credential is always copied as the first user's `user:password`.
pub fn resolve_native_broker(
    broker: &Broker,
    meshsync_namespace: &str,
    secret: BrokerSecretData,
    tls_ca: Option<&[u8]>,
) -> Result<ResolvedBroker, String> {
    let broker_namespace = broker.namespace().unwrap_or_default();
    let secret_name = broker_auth_secret_name(broker);
    let credential = if let Some(token) = secret.token {
        if broker_namespace == meshsync_namespace {
            BrokerCredential::SecretKey {
                secret: secret_name,
                key: TOKEN_KEY.into(),
            }
        } else {
            BrokerCredential::Copy {
                userinfo: String::from_utf8_lossy(token).into_owned(),
            }
        }
    } else if let Some((user, password)) = secret.users_json.and_then(first_user) {
        BrokerCredential::Copy {
            userinfo: userinfo(&user, &password),
        }
    } else {
        return Err(format!(
            "the broker's auth Secret {broker_namespace}/{secret_name} has neither {TOKEN_KEY} nor a {USERS_FILE_NAME} with a user"
        ));
    };
    Ok(ResolvedBroker {
        scheme: if broker.spec.tls_enabled() {
            "tls"
        } else {
            "nats"
        }
        .into(),
        address: broker_internal_endpoint(broker),
        credential,
        credential_revision: secret.revision.to_string(),
        tls_ca: tls_ca
            .filter(|_| broker.spec.tls_enabled())
            .map(|pem| String::from_utf8_lossy(pem).into_owned()),
    })
}

/// Whether MeshSync release `version` can use `broker`'s credential. Releases before v1.0.1 take
/// the broker's host from `BROKER_URL` up to its first `:`, so with a `user:password` credential
/// (a users.json Broker, or a URL with a password) their start-up check polls the user name as a
/// host, and they never connect: an error that says what to change instead.
pub fn credential_readable_by(version: &str, broker: &ResolvedBroker) -> Result<(), String> {
    let user_and_password = matches!(
        &broker.credential,
        BrokerCredential::Copy { userinfo } if userinfo.contains(':')
    );
    if user_and_password && !MeshSyncRelease::of(version).reads_url_scheme {
        return Err(format!(
            "MeshSync {version} reads the broker's host from BROKER_URL up to its first ':', so \
             with the broker's user:password credential it looks for the user name as a host and \
             never connects: use MeshSync v1.0.1 or later (spec.version), or a token-authenticated \
             broker"
        ));
    }
    Ok(())
}

/// MeshSync's view of a custom broker URL: the address, and any userinfo moved into a Secret.
pub fn resolve_custom_broker(url: &BrokerUrl) -> ResolvedBroker {
    ResolvedBroker {
        scheme: url.scheme.clone(),
        address: format!("{}:{}", url.host, url.port),
        credential: url
            .userinfo
            .clone()
            .map_or(BrokerCredential::None, |userinfo| BrokerCredential::Copy {
                userinfo,
            }),
        credential_revision: url
            .userinfo
            .as_deref()
            .map(|userinfo| checksum(&[userinfo]))
            .unwrap_or_default(),
        tls_ca: None,
    }
}

/// The first user of a users.json credential (`{"users":[{"user":…,"password":…}]}`).
pub fn first_user(users_json: &[u8]) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_slice(users_json).ok()?;
    let first = value.get("users")?.as_array()?.first()?;
    Some((
        first.get("user")?.as_str()?.to_string(),
        first.get("password")?.as_str()?.to_string(),
    ))
}

/// `user:password` as URL userinfo, percent-encoded so any character survives `nats://…@host`.
pub fn userinfo(user: &str, password: &str) -> String {
    format!("{}:{}", percent_encode(user), percent_encode(password))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(namespace: &str, tls: bool) -> Broker {
        let mut broker = Broker::new(
            "b",
            crate::api::BrokerSpec {
                size: 1,
                ..Default::default()
            },
        );
        broker.metadata.namespace = Some(namespace.into());
        if tls {
            broker.spec.tls = Some(crate::api::BrokerTls {
                enabled: true,
                secret_name: Some("tls".into()),
            });
        }
        broker
    }

    #[test]
    fn same_namespace_token_is_referenced_other_namespace_is_copied() {
        let token = b"t00".as_slice();
        let secret = BrokerSecretData {
            token: Some(token),
            users_json: None,
            revision: "uid/1",
        };
        let same = resolve_native_broker(&broker("ns", false), "ns", secret, None).unwrap();
        assert_eq!(
            same.credential,
            BrokerCredential::SecretKey {
                secret: "b-auth".into(),
                key: "token".into()
            }
        );
        assert_eq!(
            (same.scheme.as_str(), same.address.as_str()),
            ("nats", "b.ns.svc.cluster.local:4222")
        );
        let other = resolve_native_broker(&broker("ns", true), "elsewhere", secret, None).unwrap();
        assert_eq!(
            other.credential,
            BrokerCredential::Copy {
                userinfo: "t00".into()
            }
        );
        assert_eq!(other.scheme, "tls");
    }

    #[test]
    fn releases_before_1_0_1_cannot_use_a_user_and_password() {
        let with = |credential: BrokerCredential| ResolvedBroker {
            scheme: "nats".into(),
            address: "b.ns.svc.cluster.local:4222".into(),
            credential,
            credential_revision: String::new(),
            tls_ca: None,
        };
        let user_and_password = with(BrokerCredential::Copy {
            userinfo: "me:pw".into(),
        });
        let copied_token = with(BrokerCredential::Copy {
            userinfo: "t00".into(),
        });
        let referenced_token = with(BrokerCredential::SecretKey {
            secret: "b-auth".into(),
            key: "token".into(),
        });
        let none = with(BrokerCredential::None);
        for (version, broker, usable) in [
            ("v1.0.0", &user_and_password, false),
            ("v0.8.9", &user_and_password, false),
            ("v1.0.1", &user_and_password, true),
            ("v1.0.3", &user_and_password, true),
            ("edge-latest", &user_and_password, true),
            ("v1.0.0", &copied_token, true),
            ("v1.0.0", &referenced_token, true),
            ("v1.0.0", &none, true),
        ] {
            let outcome = credential_readable_by(version, broker);
            assert_eq!(outcome.is_ok(), usable, "{version} {:?}", broker.credential);
            if let Err(message) = outcome {
                assert!(
                    message.contains(version) && message.contains("v1.0.1"),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn a_tls_brokers_ca_is_passed_on_and_ignored_without_tls() {
        let secret = BrokerSecretData {
            token: Some(b"t00".as_slice()),
            users_json: None,
            revision: "uid/1",
        };
        let ca = b"-----BEGIN CERTIFICATE-----\n".as_slice();
        let tls = resolve_native_broker(&broker("ns", true), "ns", secret, Some(ca)).unwrap();
        assert_eq!(tls.tls_ca.as_deref(), Some("-----BEGIN CERTIFICATE-----\n"));
        let without_ca = resolve_native_broker(&broker("ns", true), "ns", secret, None).unwrap();
        assert_eq!(without_ca.tls_ca, None);
        let plain = resolve_native_broker(&broker("ns", false), "ns", secret, Some(ca)).unwrap();
        assert_eq!(plain.tls_ca, None);
    }

    #[test]
    fn users_json_is_copied_percent_encoded_and_a_useless_secret_is_an_error() {
        let users = br#"{"users":[{"user":"me@x","password":"p:w/d"}]}"#.as_slice();
        let secret = BrokerSecretData {
            token: None,
            users_json: Some(users),
            revision: "uid/2",
        };
        let resolved = resolve_native_broker(&broker("ns", false), "ns", secret, None).unwrap();
        assert_eq!(
            resolved.credential,
            BrokerCredential::Copy {
                userinfo: "me%40x:p%3Aw%2Fd".into()
            }
        );
        let error = resolve_native_broker(
            &broker("ns", false),
            "ns",
            BrokerSecretData::default(),
            None,
        )
        .unwrap_err();
        assert!(
            error.contains("ns/b-auth has neither token nor a users.json"),
            "{error}"
        );
    }

    #[test]
    fn custom_url_credentials_move_to_a_secret() {
        let url = crate::api::parse_broker_url("nats://u:pw@nats.example:4223").unwrap();
        let resolved = resolve_custom_broker(&url);
        assert_eq!(resolved.address, "nats.example:4223");
        assert_eq!(
            resolved.credential,
            BrokerCredential::Copy {
                userinfo: "u:pw".into()
            }
        );
    }
}
