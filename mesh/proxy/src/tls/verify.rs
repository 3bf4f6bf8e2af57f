//! Peer validation for mesh mTLS: the checks a sidecar makes of the certificate the
//! other side presents, in both directions.
//!
//! A peer certificate is accepted when, in this order:
//! 1. it parses as X.509;
//! 2. it is not a CA certificate (`basicConstraints cA=true` on a leaf is refused);
//! 3. it carries exactly one URI SAN, and that URI is a valid SPIFFE ID;
//! 4. the SPIFFE ID's trust domain is the mesh's;
//! 5. if the caller names the identities it expects (a DestinationRule's
//!    `subjectAltNames`), the ID is one of them;
//! 6. it chains to a root of the current trust bundle, every certificate of the chain
//!    is within its validity period now, and extended key usage allows the direction
//!    (client auth for an inbound peer, server auth for an upstream).
//!
//! Each failure is a [`PeerRejection`] whose message says which check failed and
//! with which values; the listener logs it (`mtls_handshake_failed`). The verifier is
//! handed to rustls as its client- or server-certificate verifier; it reads the trust
//! bundle from [`super::Identity`] on every handshake, so a bundle change (a root
//! rotation) applies to the next handshake.

use std::sync::Arc;

use mesh_core::security::SpiffeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::identity::Identity;

/// Why a peer certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRejection {
    #[error("peer certificate is not valid X.509: {0}")]
    Malformed(String),
    #[error("peer certificate is a CA certificate (basicConstraints cA=true) used as a leaf")]
    LeafIsCa,
    #[error(
        "peer certificate has {count} URI SANs ({list}); a workload certificate has exactly one spiffe:// URI SAN"
    )]
    UriSanCount { count: usize, list: String },
    #[error("peer certificate's URI SAN {uri:?} is not a SPIFFE ID: {reason}")]
    NotSpiffe { uri: String, reason: String },
    #[error(
        "peer identity {id} is from trust domain {got:?}; this mesh's trust domain is {expected:?}"
    )]
    ForeignTrustDomain {
        id: String,
        got: String,
        expected: String,
    },
    #[error("peer identity {id} is not one of the expected identities ({expected})")]
    UnexpectedIdentity { id: String, expected: String },
    #[error("peer certificate {id} expired at {not_after} (unix s); now is {now}")]
    Expired {
        id: String,
        not_after: u64,
        now: u64,
    },
    #[error("peer certificate {id} is not valid before {not_before} (unix s); now is {now}")]
    NotYetValid {
        id: String,
        not_before: u64,
        now: u64,
    },
    #[error("peer certificate {id} does not chain to a trusted root of the mesh's trust bundle")]
    UntrustedIssuer { id: String },
    #[error("this sidecar has no trust bundle yet: cannot validate peer {id}")]
    NoTrustBundle { id: String },
    #[error("peer certificate {id} failed chain validation: {reason}")]
    Chain { id: String, reason: String },
}

impl PeerRejection {
    /// This rejection as the rustls error a verifier returns; [`PeerRejection::from_tls`]
    /// gets it back.
    pub fn into_tls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }

    /// The rejection inside a rustls handshake error, if a [`PeerVerifier`] made it.
    pub fn from_tls(error: &rustls::Error) -> Option<&PeerRejection> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(e))) => {
                e.downcast_ref::<PeerRejection>()
            }
            _ => None,
        }
    }

    /// A short stable name for the metric/event label.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerRejection::Malformed(_) => "malformed",
            PeerRejection::LeafIsCa => "leaf_is_ca",
            PeerRejection::UriSanCount { .. } => "uri_san_count",
            PeerRejection::NotSpiffe { .. } => "not_spiffe",
            PeerRejection::ForeignTrustDomain { .. } => "foreign_trust_domain",
            PeerRejection::UnexpectedIdentity { .. } => "unexpected_identity",
            PeerRejection::Expired { .. } => "expired",
            PeerRejection::NotYetValid { .. } => "not_yet_valid",
            PeerRejection::UntrustedIssuer { .. } => "untrusted_issuer",
            PeerRejection::NoTrustBundle { .. } => "no_trust_bundle",
            PeerRejection::Chain { .. } => "chain",
        }
    }
}

/// Which side of the handshake the peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// A downstream client (inbound listener): client-auth EKU.
    Client,
    /// An upstream server (outbound connection): server-auth EKU.
    Server,
}

/// Checks 1–5 of the module docs on a DER certificate: the peer's SPIFFE ID, or why
/// it is refused. No chain or time checks.
pub fn check_leaf(
    der: &[u8],
    trust_domain: &str,
    expected: &[String],
) -> Result<SpiffeId, PeerRejection> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PeerRejection::Malformed(e.to_string()))?;
    let mut uris = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(PeerRejection::LeafIsCa),
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::URI(uri) = name {
                        uris.push((*uri).to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    if uris.len() != 1 {
        return Err(PeerRejection::UriSanCount {
            count: uris.len(),
            list: if uris.is_empty() {
                "none".to_owned()
            } else {
                uris.join(", ")
            },
        });
    }
    let uri = uris.remove(0);
    let id: SpiffeId = uri.parse().map_err(|e| PeerRejection::NotSpiffe {
        uri: uri.clone(),
        reason: format!("{e}"),
    })?;
    if id.trust_domain() != trust_domain {
        return Err(PeerRejection::ForeignTrustDomain {
            got: id.trust_domain().to_owned(),
            expected: trust_domain.to_owned(),
            id: uri,
        });
    }
    if !expected.is_empty() && !expected.iter().any(|e| e == id.as_str()) {
        return Err(PeerRejection::UnexpectedIdentity {
            id: uri,
            expected: expected.join(", "),
        });
    }
    Ok(id)
}

/// Validates peer certificates against an [`Identity`]'s trust domain and bundle.
#[derive(Debug)]
pub struct PeerVerifier {
    identity: Arc<Identity>,
    role: PeerRole,
    /// Full SPIFFE IDs the peer must have one of; empty: any of the trust domain.
    expected: Vec<String>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    pub fn new(identity: Arc<Identity>, role: PeerRole, expected: Vec<String>) -> Self {
        PeerVerifier {
            identity,
            role,
            expected,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    /// Every check of the module docs; the peer's SPIFFE ID.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<SpiffeId, PeerRejection> {
        let id = check_leaf(end_entity, self.identity.trust_domain(), &self.expected)?;
        let roots = self.identity.roots();
        if roots.is_empty() {
            return Err(PeerRejection::NoTrustBundle {
                id: id.as_str().to_owned(),
            });
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| PeerRejection::Malformed(format!("{e:?}")))?;
        let usage = match self.role {
            PeerRole::Client => webpki::KeyUsage::client_auth(),
            PeerRole::Server => webpki::KeyUsage::server_auth(),
        };
        let verified = cert.verify_for_usage(
            self.algorithms.all,
            roots.anchors(),
            intermediates,
            now,
            usage,
            None,
            None,
        );
        let id_text = || id.as_str().to_owned();
        match verified {
            Ok(_) => Ok(id),
            Err(webpki::Error::CertExpired { time, not_after }) => Err(PeerRejection::Expired {
                id: id_text(),
                not_after: not_after.as_secs(),
                now: time.as_secs(),
            }),
            Err(webpki::Error::CertNotValidYet { time, not_before }) => {
                Err(PeerRejection::NotYetValid {
                    id: id_text(),
                    not_before: not_before.as_secs(),
                    now: time.as_secs(),
                })
            }
            // No root of that name, or one of that name with another key (a rotated-out
            // or foreign root that happens to share the subject).
            Err(webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey) => {
                Err(PeerRejection::UntrustedIssuer { id: id_text() })
            }
            Err(webpki::Error::CaUsedAsEndEntity) => Err(PeerRejection::LeafIsCa),
            Err(e) => Err(PeerRejection::Chain {
                id: id_text(),
                reason: format!("{e:?}"),
            }),
        }
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if tls13 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        } else {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)
            .map(|_| ClientCertVerified::assertion())
            .map_err(PeerRejection::into_tls)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Mesh identity is the SPIFFE ID, not a DNS name: the name is not checked.
        self.verify(end_entity, intermediates, now)
            .map(|_| ServerCertVerified::assertion())
            .map_err(PeerRejection::into_tls)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::pki_types::pem::PemObject;

    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
    }

    #[test]
    fn a_workload_certificate_passes_and_names_its_identity() {
        let ca = mesh_ca::Ca::generate("cluster.local").unwrap();
        let leaf = ca
            .issue("default", "reviews", Duration::from_secs(60))
            .unwrap();
        let id = check_leaf(&der(&leaf.cert_pem), "cluster.local", &[]).unwrap();
        assert_eq!(id.as_str(), "spiffe://cluster.local/ns/default/sa/reviews");
        // Expected identities narrow it.
        let other = ["spiffe://cluster.local/ns/default/sa/ratings".to_owned()];
        let err = check_leaf(&der(&leaf.cert_pem), "cluster.local", &other).unwrap_err();
        assert_eq!(err.kind(), "unexpected_identity");
        assert!(err.to_string().contains("sa/ratings"), "{err}");
    }

    #[test]
    fn the_root_itself_is_refused_as_a_leaf_and_another_domain_is_foreign() {
        let ca = mesh_ca::Ca::generate("cluster.local").unwrap();
        let err = check_leaf(&der(ca.cert_pem()), "cluster.local", &[]).unwrap_err();
        assert_eq!(err, PeerRejection::LeafIsCa);
        let leaf = ca
            .issue("default", "reviews", Duration::from_secs(60))
            .unwrap();
        let err = check_leaf(&der(&leaf.cert_pem), "example.org", &[]).unwrap_err();
        assert_eq!(err.kind(), "foreign_trust_domain");
        assert!(err.to_string().contains("\"example.org\""), "{err}");
    }

    #[test]
    fn the_verifier_checks_the_chain_against_the_identity_bundle() {
        let ca = mesh_ca::Ca::generate("cluster.local").unwrap();
        let other = mesh_ca::Ca::generate("cluster.local").unwrap();
        let identity = Arc::new(Identity::new("cluster.local", "default", "sleep").unwrap());
        let verifier = PeerVerifier::new(identity.clone(), PeerRole::Client, Vec::new());
        let leaf = der(&ca
            .issue("default", "reviews", Duration::from_secs(60))
            .unwrap()
            .cert_pem);
        let now = UnixTime::now();
        assert_eq!(
            verifier.verify(&leaf, &[], now).unwrap_err().kind(),
            "no_trust_bundle"
        );
        identity.set_bundle(other.bundle_pem()).unwrap();
        let err = verifier.verify(&leaf, &[], now).unwrap_err();
        assert_eq!(err.kind(), "untrusted_issuer", "{err}");
        // Both roots trusted (a rotation's overlap): accepted.
        identity
            .set_bundle(&format!("{}{}", other.bundle_pem(), ca.bundle_pem()))
            .unwrap();
        assert!(verifier.verify(&leaf, &[], now).is_ok());
        // Two minutes on, the one-minute certificate has expired.
        let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 120));
        let err = verifier.verify(&leaf, &[], later).unwrap_err();
        assert_eq!(err.kind(), "expired");
    }
}
