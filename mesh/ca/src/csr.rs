//! Certificate signing requests, both sides.
//!
//! The workload side: [`generate_csr`] makes an ECDSA P-256 key locally and a PKCS#10
//! CSR for it that asks for exactly one URI SAN, the workload's SPIFFE ID. The key
//! stays with the workload; only the CSR goes to the CA.
//!
//! The CA side: [`VerifiedCsr`] parses a CSR once (x509-parser), checks its signature
//! against the key it carries (ring), and keeps only what the CA uses — the SPIFFE ID
//! asked for and the public key. Everything else a CSR may ask (subject, key usages,
//! basic constraints) is ignored: the CA decides those.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PublicKeyData, SanType};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

use crate::{CaError, spiffe_id};

/// A workload's key and its CSR, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Csr {
    /// PKCS#8 `PRIVATE KEY`; never sent anywhere.
    pub key_pem: String,
    /// `CERTIFICATE REQUEST`.
    pub csr_pem: String,
}

impl std::fmt::Debug for Csr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Csr")
            .field("csr_pem", &self.csr_pem)
            .finish_non_exhaustive()
    }
}

/// A new ECDSA P-256 key and a CSR asking for `spiffe://<td>/ns/<ns>/sa/<sa>` (one URI
/// SAN, an empty subject).
pub fn generate_csr(trust_domain: &str, ns: &str, sa: &str) -> Result<Csr, CaError> {
    let id = spiffe_id(trust_domain, ns, sa)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.try_into()?)];
    let csr_pem = params.serialize_request(&key)?.pem()?;
    Ok(Csr {
        key_pem: key.serialize_pem(),
        csr_pem,
    })
}

/// A CSR whose signature verified, reduced to what the CA uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    spiffe_id: String,
    /// The uncompressed EC point (the SPKI's BIT STRING).
    public_key: Vec<u8>,
}

impl VerifiedCsr {
    /// Parses a PEM `CERTIFICATE REQUEST` and checks it: the signature verifies with
    /// the key it carries, the key is ECDSA P-256, it asks for exactly one SAN, a
    /// `spiffe://` URI, and no extension but that one (and key usages, ignored).
    pub fn from_pem(pem_text: &str) -> Result<VerifiedCsr, CaError> {
        let block = pem::parse(pem_text).map_err(|_| {
            CaError::CsrPem("no '-----BEGIN CERTIFICATE REQUEST-----' block found".to_owned())
        })?;
        if !matches!(
            block.tag(),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"
        ) {
            return Err(CaError::CsrPem(format!(
                "the PEM block is '{}', expected 'CERTIFICATE REQUEST'",
                block.tag()
            )));
        }
        VerifiedCsr::from_der(block.contents())
    }

    /// [`VerifiedCsr::from_pem`] on DER.
    pub fn from_der(der: &[u8]) -> Result<VerifiedCsr, CaError> {
        let (_, csr) = X509CertificationRequest::from_der(der)
            .map_err(|e| CaError::CsrParse(e.to_string()))?;
        let spki = &csr.certification_request_info.subject_pki;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
            let what = match curve {
                Some(c) if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY => {
                    format!("an EC key on curve {c}")
                }
                _ => format!("of algorithm {}", spki.algorithm.algorithm),
            };
            return Err(CaError::CsrKey(what));
        }
        csr.verify_signature().map_err(|_| CaError::CsrSignature)?;
        let mut sans: Vec<String> = Vec::new();
        if let Some(extensions) = csr.requested_extensions() {
            for ext in extensions {
                match ext {
                    ParsedExtension::SubjectAlternativeName(san) => {
                        sans.extend(san.general_names.iter().map(|n| match n {
                            GeneralName::URI(u) => (*u).to_owned(),
                            other => format!("{other}"),
                        }));
                    }
                    // Asked-for key usages are harmless: the CA sets its own.
                    ParsedExtension::KeyUsage(_) | ParsedExtension::ExtendedKeyUsage(_) => {}
                    ParsedExtension::BasicConstraints(_) => {
                        return Err(CaError::CsrExtension("basicConstraints".to_owned()));
                    }
                    other => return Err(CaError::CsrExtension(format!("{other:?}"))),
                }
            }
        }
        if sans.len() != 1 {
            return Err(CaError::SanCount(sans.len()));
        }
        let id = sans.pop().expect("one SAN");
        if !id.starts_with("spiffe://") {
            return Err(CaError::SanNotSpiffe(id));
        }
        Ok(VerifiedCsr {
            spiffe_id: id,
            public_key: spki.subject_public_key.data.to_vec(),
        })
    }

    /// The SPIFFE ID the CSR asks for (not yet checked against anyone's identity).
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }
}

impl PublicKeyData for VerifiedCsr {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use x509_parser::prelude::*;

    use super::*;
    use crate::Ca;

    #[test]
    fn a_generated_csr_asks_for_one_uri_and_signs_and_verifies() {
        let csr = generate_csr("cluster.local", "default", "reviews").unwrap();
        assert!(csr.key_pem.contains("BEGIN PRIVATE KEY"));
        assert!(
            !format!("{csr:?}").contains("PRIVATE"),
            "Debug hides the key"
        );
        let parsed = VerifiedCsr::from_pem(&csr.csr_pem).unwrap();
        assert_eq!(
            parsed.spiffe_id(),
            "spiffe://cluster.local/ns/default/sa/reviews"
        );
        let ca = Ca::generate("cluster.local").unwrap();
        let leaf = ca
            .sign(
                &parsed,
                "default",
                "reviews",
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .unwrap();
        let (_, der) = parse_x509_pem(leaf.cert_chain_pem.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&der.contents).unwrap();
        let (_, root) = parse_x509_pem(ca.bundle_pem().as_bytes()).unwrap();
        let (_, root) = X509Certificate::from_der(&root.contents).unwrap();
        assert!(cert.verify_signature(Some(root.public_key())).is_ok());
        // The certificate carries the workload's key.
        let key = KeyPair::from_pem(&csr.key_pem).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
    }

    #[test]
    fn bad_csrs_are_refused_with_the_reason() {
        assert!(matches!(
            VerifiedCsr::from_pem("hello"),
            Err(CaError::CsrPem(_))
        ));
        let ca = Ca::generate("cluster.local").unwrap();
        let err = VerifiedCsr::from_pem(ca.cert_pem()).unwrap_err();
        assert!(err.to_string().contains("'CERTIFICATE'"), "{err}");

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr_with = |sans: Vec<SanType>| {
            let mut p = CertificateParams::default();
            p.subject_alt_names = sans;
            p.serialize_request(&key).unwrap().pem().unwrap()
        };
        let uri = |s: &str| SanType::URI(s.try_into().unwrap());
        let two = csr_with(vec![
            uri("spiffe://cluster.local/ns/a/sa/b"),
            uri("spiffe://cluster.local/ns/a/sa/c"),
        ]);
        assert!(matches!(
            VerifiedCsr::from_pem(&two),
            Err(CaError::SanCount(2))
        ));
        assert!(matches!(
            VerifiedCsr::from_pem(&csr_with(vec![])),
            Err(CaError::SanCount(0))
        ));
        let dns = csr_with(vec![SanType::DnsName("reviews".try_into().unwrap())]);
        assert!(matches!(
            VerifiedCsr::from_pem(&dns),
            Err(CaError::SanNotSpiffe(_))
        ));
        let https = csr_with(vec![uri("https://example.com/")]);
        assert!(matches!(
            VerifiedCsr::from_pem(&https),
            Err(CaError::SanNotSpiffe(_))
        ));

        // A P-384 key is not what an SVID carries.
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![uri("spiffe://cluster.local/ns/a/sa/b")];
        let pem = p.serialize_request(&p384).unwrap().pem().unwrap();
        let err = VerifiedCsr::from_pem(&pem).unwrap_err();
        assert!(matches!(err, CaError::CsrKey(_)), "{err}");

        // A tampered CSR: its signature no longer verifies.
        let good = generate_csr("cluster.local", "default", "reviews").unwrap();
        let mut der = ::pem::parse(&good.csr_pem).unwrap().into_contents();
        let at = der
            .windows(7)
            .position(|w| w == b"reviews")
            .expect("the SAN in the DER");
        der[at] = b'R';
        assert!(matches!(
            VerifiedCsr::from_der(&der),
            Err(CaError::CsrSignature)
        ));
    }
}
