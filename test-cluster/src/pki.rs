//! The control plane's certificates: one CA, the API server's serving certificate, a client
//! certificate per component identity, and the service-account token signing key.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// A certificate and its private key, PEM-encoded.
pub struct Credential {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything the control plane's components authenticate with.
pub struct Pki {
    pub ca_pem: String,
    pub serving: Credential,
    pub service_account_key_pem: String,
    pub service_account_public_key_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

fn pki_error(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |source| Error::Certificates {
        what: what.to_string(),
        source,
    }
}

impl Pki {
    /// A fresh CA with a serving certificate for `127.0.0.1`, `localhost`, the in-cluster
    /// names of the `kubernetes` Service and `addresses` (its ClusterIP, the address pods reach
    /// it at).
    pub fn generate(addresses: &[std::net::IpAddr]) -> Result<Pki, Error> {
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "meshery-operator test cluster CA");
        let ca_key = KeyPair::generate().map_err(pki_error("the CA key"))?;
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(pki_error("the CA"))?;

        let mut serving_params = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])
        .map_err(pki_error("the serving certificate's names"))?;
        serving_params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        serving_params
            .subject_alt_names
            .extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving = sign(&ca, serving_params, "the serving certificate")?;

        let service_account_key =
            KeyPair::generate().map_err(pki_error("the service-account signing key"))?;
        Ok(Pki {
            ca_pem: ca.pem(),
            serving,
            service_account_key_pem: service_account_key.serialize_pem(),
            service_account_public_key_pem: service_account_key.public_key_pem(),
            ca,
        })
    }

    /// The node's serving certificate for its kubelet API at `127.0.0.1`, where the Node's
    /// `InternalIP` says it is.
    pub fn kubelet_serving(&self, node: &str) -> Result<Credential, Error> {
        let mut params = CertificateParams::new(vec![node.to_string()])
            .map_err(pki_error("the kubelet's serving certificate's names"))?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("system:node:{node}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sign(&self.ca, params, "the kubelet's serving certificate")
    }

    /// A client certificate for user `user` in `groups`: how each component (and the admin)
    /// authenticates, so that the real authorizer sees the identities a kubeadm cluster has.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<Credential, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        sign(&self.ca, params, "a client certificate")
    }
}

fn sign(
    ca: &CertifiedIssuer<'static, KeyPair>,
    params: CertificateParams,
    what: &'static str,
) -> Result<Credential, Error> {
    let key = KeyPair::generate().map_err(pki_error(what))?;
    let cert = params.signed_by(&key, ca).map_err(pki_error(what))?;
    Ok(Credential {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
