//! `mesh-ca` — meshrig's certificate authority: a root it generates itself (or a root
//! or intermediate loaded from PEM, to plug into an existing PKI) that issues SPIFFE
//! X.509-SVIDs to workloads.
//!
//! An SVID here has exactly one URI SAN, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`,
//! `cA=false`, key usage digitalSignature + keyEncipherment, extended key usage
//! server and client auth, an ECDSA P-256 key, and a configurable lifetime; it chains
//! to the CA's certificate, which is the trust bundle.
//!
//! Two ways to get one: [`Ca::issue`] makes the key too (for `meshrig ca issue`, offline
//! use and tests); [`Ca::sign_csr`] signs a workload's CSR — the key never leaves the
//! workload — and refuses a CSR that asks for any identity but the one the caller was
//! authenticated as. Keys and certificates are made with rcgen (on ring, the
//! workspace's one crypto provider).

use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// Default SVID lifetime (Istio's).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Root certificate lifetime for a generated root.
pub const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "trust domain '{0}' is not valid (lowercase letters, digits, '.', '-', '_'; e.g. cluster.local)"
    )]
    TrustDomain(String),
    #[error("{field} '{value}' is not valid in a SPIFFE ID (letters, digits, '.', '-', '_')")]
    Segment { field: &'static str, value: String },
    #[error("the TTL must be between 1 s and 10 years")]
    Ttl,
    #[error("the CSR asks for {asked}, but the requester is {allowed}: refused")]
    WrongIdentity { asked: String, allowed: String },
    #[error("the CSR must ask for exactly one URI SAN (a spiffe:// ID), it asks for {0}")]
    SanCount(usize),
    #[error("not a CA certificate: {0}")]
    NotCa(String),
    #[error("{0}")]
    Crypto(#[from] rcgen::Error),
}

/// `spiffe://<td>/ns/<ns>/sa/<sa>`, after checking each part.
pub fn spiffe_id(trust_domain: &str, ns: &str, sa: &str) -> Result<String, CaError> {
    let td_ok = !trust_domain.is_empty()
        && trust_domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !td_ok {
        return Err(CaError::TrustDomain(trust_domain.to_owned()));
    }
    for (field, value) in [("namespace", ns), ("service account", sa)] {
        let ok = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(CaError::Segment {
                field,
                value: value.to_owned(),
            });
        }
    }
    Ok(format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}"))
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The certificate authority.
pub struct Ca {
    trust_domain: String,
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate as given (loaded) or made (generated): the trust bundle.
    bundle_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed root for `trust_domain`.
    pub fn generate(trust_domain: &str) -> Result<Ca, CaError> {
        spiffe_id(trust_domain, "x", "x")?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        dn.push(
            DnType::CommonName,
            format!("meshrig root CA ({trust_domain})"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + ROOT_TTL;
        let cert = params.self_signed(&key)?;
        let bundle_pem = cert.pem();
        Ok(Ca {
            trust_domain: trust_domain.to_owned(),
            cert,
            key,
            bundle_pem,
        })
    }

    /// A root or intermediate from PEM (plugging into an existing PKI): its
    /// certificate, which must be a CA, and its private key.
    pub fn load(trust_domain: &str, cert_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        spiffe_id(trust_domain, "x", "x")?;
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            return Err(CaError::NotCa(
                "its basicConstraints do not say cA=true".to_owned(),
            ));
        }
        // rcgen signs with an issuer `Certificate`; rebuilt from the same subject and
        // key, what it signs chains to the certificate as loaded.
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            trust_domain: trust_domain.to_owned(),
            cert,
            key,
            bundle_pem: cert_pem.to_owned(),
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The trust bundle: the CA certificate, PEM.
    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
    }

    /// The CA's private key, PEM (to save a generated root).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// An SVID for `ns`/`sa` with a new P-256 key, valid for `ttl`.
    pub fn issue(&self, ns: &str, sa: &str, ttl: Duration) -> Result<Issued, CaError> {
        let id = spiffe_id(&self.trust_domain, ns, sa)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = self.leaf_params(&id, ttl)?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a workload's CSR (PEM) for the identity `ns`/`sa` it was authenticated as;
    /// the CSR must ask for exactly that SPIFFE ID and nothing else. The certificate's
    /// other fields are the CA's, whatever the CSR asked.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        ns: &str,
        sa: &str,
        ttl: Duration,
    ) -> Result<String, CaError> {
        let allowed = spiffe_id(&self.trust_domain, ns, sa)?;
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let uris: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|s| match s {
                SanType::URI(u) => u.as_str().to_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        if uris.len() != 1 {
            return Err(CaError::SanCount(uris.len()));
        }
        if uris[0] != allowed {
            return Err(CaError::WrongIdentity {
                asked: uris[0].clone(),
                allowed,
            });
        }
        csr.params = self.leaf_params(&allowed, ttl)?;
        Ok(csr.signed_by(&self.cert, &self.key)?.pem())
    }

    fn leaf_params(&self, id: &str, ttl: Duration) -> Result<CertificateParams, CaError> {
        if ttl < Duration::from_secs(1) || ttl > ROOT_TTL {
            return Err(CaError::Ttl);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        // A little slack for clocks that disagree by seconds.
        params.not_before = now - time::Duration::seconds(60);
        params.not_after = now + ttl;
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem: &str) -> Vec<u8> {
        let (_, p) = parse_x509_pem(pem.as_bytes()).expect("PEM");
        p.contents
    }

    #[test]
    fn an_svid_has_one_spiffe_uri_and_is_no_ca() {
        let ca = Ca::generate("cluster.local").unwrap();
        let svid = ca
            .issue("default", "reviews", Duration::from_secs(60))
            .unwrap();
        let der = parse(&svid.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let uris: Vec<_> = sans
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect();
        assert_eq!(uris, ["spiffe://cluster.local/ns/default/sa/reviews"]);
        assert_eq!(sans.value.general_names.len(), 1);
        let bc = cert.basic_constraints().unwrap().map(|b| b.value.ca);
        assert_ne!(bc, Some(true));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(life, 120, "60 s TTL plus 60 s of back-dating");
        // Signed by the root.
        let root_der = parse(ca.bundle_pem());
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert!(cert.verify_signature(Some(root.public_key())).is_ok());
        assert_eq!(cert.issuer(), root.subject());
    }

    #[test]
    fn a_csr_for_another_identity_is_refused_and_the_right_one_signed() {
        let ca = Ca::generate("cluster.local").unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr_for = |id: &str| {
            let mut p = CertificateParams::default();
            p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
            p.serialize_request(&key).unwrap().pem().unwrap()
        };
        let ttl = Duration::from_secs(60);
        let good = csr_for("spiffe://cluster.local/ns/default/sa/reviews");
        let pem = ca.sign_csr(&good, "default", "reviews", ttl).unwrap();
        let der = parse(&pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        // The workload's key, not a new one.
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        let other = csr_for("spiffe://cluster.local/ns/default/sa/ratings");
        let err = ca.sign_csr(&other, "default", "reviews", ttl).unwrap_err();
        assert!(
            err.to_string().contains("sa/ratings") && err.to_string().contains("refused"),
            "{err}"
        );
        let foreign = csr_for("spiffe://evil.example/ns/default/sa/reviews");
        assert!(ca.sign_csr(&foreign, "default", "reviews", ttl).is_err());
    }

    #[test]
    fn bad_names_and_ttls_are_refused_with_the_reason() {
        assert!(matches!(
            spiffe_id("Cluster Local", "a", "b"),
            Err(CaError::TrustDomain(_))
        ));
        assert!(matches!(
            spiffe_id("cluster.local", "a/b", "c"),
            Err(CaError::Segment {
                field: "namespace",
                ..
            })
        ));
        let ca = Ca::generate("cluster.local").unwrap();
        assert!(matches!(
            ca.issue("default", "a", Duration::ZERO),
            Err(CaError::Ttl)
        ));
    }

    #[test]
    fn a_loaded_root_signs_certificates_that_chain_to_it() {
        let original = Ca::generate("cluster.local").unwrap();
        let loaded = Ca::load("cluster.local", original.bundle_pem(), &original.key_pem()).unwrap();
        assert_eq!(loaded.bundle_pem(), original.bundle_pem());
        let svid = loaded.issue("default", "web", DEFAULT_TTL).unwrap();
        let der = parse(&svid.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let root_der = parse(original.bundle_pem());
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert!(cert.verify_signature(Some(root.public_key())).is_ok());
        // A leaf is not a CA to load.
        assert!(matches!(
            Ca::load("cluster.local", &svid.cert_pem, &svid.key_pem),
            Err(CaError::NotCa(_))
        ));
    }
}
