//! [`Identity`]: the sidecar's workload certificate, its key, and the trust bundle —
//! swapped in place while the proxy serves.
//!
//! rustls asks the identity for a certificate on every handshake (it is the server's
//! and the client's certificate resolver), and the [`PeerVerifier`](super::PeerVerifier)
//! reads the bundle on every handshake. Installing a renewed certificate or a new
//! bundle therefore changes what the *next* handshake uses; connections already
//! established keep the certificate they were made with until they close.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use mesh_core::security::SpiffeId;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::verify::check_leaf;

/// A certificate or bundle that could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: &'static str },
    #[error("{what}: malformed PEM: {detail}")]
    Pem { what: &'static str, detail: String },
    #[error("private key: {0}")]
    Key(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("trust bundle certificate {index} is not usable as a root: {detail}")]
    Anchor { index: usize, detail: String },
    #[error("SPIFFE identity: {0}")]
    Spiffe(String),
}

/// The trusted roots: the trust bundle.
pub struct Roots {
    anchors: Vec<TrustAnchor<'static>>,
    /// The bundle as PEM, as installed.
    pem: String,
}

impl fmt::Debug for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Roots")
            .field("count", &self.anchors.len())
            .finish()
    }
}

impl Roots {
    /// Parses a PEM bundle (one or more root certificates).
    pub fn from_pem(pem: &str) -> Result<Roots, IdentityError> {
        let what = "trust bundle";
        let ders = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Pem {
                what,
                detail: e.to_string(),
            })?;
        if ders.is_empty() {
            return Err(IdentityError::NoCertificate { what });
        }
        let anchors = ders
            .iter()
            .enumerate()
            .map(|(index, der)| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|e| IdentityError::Anchor {
                        index,
                        detail: format!("{e:?}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Roots {
            anchors,
            pem: pem.to_owned(),
        })
    }

    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }
}

/// What is known of the installed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Hex serial number.
    pub serial: String,
}

/// The workload's identity: who it is, its current certificate and key, and the roots
/// it trusts.
pub struct Identity {
    id: SpiffeId,
    current: RwLock<Option<(Arc<CertifiedKey>, CertInfo)>>,
    roots: RwLock<Arc<Roots>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("id", &self.id.as_str())
            .field("certificate", &self.info())
            .field("roots", &self.roots().len())
            .finish()
    }
}

fn unix(t: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0))
}

impl Identity {
    /// The identity `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`,
    /// with no certificate and no trusted roots yet.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdentityError> {
        let id = SpiffeId::workload(trust_domain, namespace, service_account)
            .map_err(|e| IdentityError::Spiffe(e.to_string()))?;
        Ok(Identity {
            id,
            current: RwLock::new(None),
            roots: RwLock::new(Arc::new(Roots {
                anchors: Vec::new(),
                pem: String::new(),
            })),
        })
    }

    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    pub fn trust_domain(&self) -> &str {
        self.id.trust_domain()
    }

    /// The trust bundle in force.
    pub fn roots(&self) -> Arc<Roots> {
        self.roots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the trust bundle; returns how many roots it holds.
    pub fn set_bundle(&self, pem: &str) -> Result<usize, IdentityError> {
        let roots = Roots::from_pem(pem)?;
        let n = roots.len();
        *self.roots.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(roots);
        Ok(n)
    }

    /// The installed certificate's validity and serial, if any.
    pub fn info(&self) -> Option<CertInfo> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|(_, info)| info.clone())
    }

    fn certified(&self) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|(ck, _)| ck.clone())
    }

    /// Installs a certificate chain (leaf first) and its private key, both PEM. The
    /// leaf must be this workload's identity (one URI SAN, this SPIFFE ID, not a CA)
    /// and match the key. New handshakes use it from now on.
    pub fn install(&self, chain_pem: &str, key_pem: &str) -> Result<CertInfo, IdentityError> {
        let what = "certificate chain";
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Pem {
                what,
                detail: e.to_string(),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(IdentityError::NoCertificate { what });
        };
        check_leaf(leaf, self.trust_domain(), &[self.id.as_str().to_owned()])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let validity = parsed.validity();
        let info = CertInfo {
            not_before: unix(validity.not_before.timestamp()),
            not_after: unix(validity.not_after.timestamp()),
            serial: parsed.raw_serial_as_string().replace(':', ""),
        };
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signer);
        certified
            .keys_match()
            .map_err(|e| IdentityError::Key(format!("does not match the certificate: {e}")))?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Arc::new(certified), info.clone()));
        Ok(info)
    }

    /// Whether a certificate is installed and within its validity now.
    pub fn is_usable(&self, now: SystemTime) -> bool {
        self.info()
            .is_some_and(|i| i.not_before <= now && now < i.not_after)
    }
}

/// The server side: the certificate shown to downstream mTLS clients.
#[derive(Debug)]
pub struct ServerCert(pub Arc<Identity>);

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.certified()
    }
}

/// The client side: the certificate shown to upstream mTLS servers.
#[derive(Debug)]
pub struct ClientCert(pub Arc<Identity>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let ck = self.0.certified()?;
        ck.key.choose_scheme(sigschemes).is_some().then_some(ck)
    }

    fn has_certs(&self) -> bool {
        true
    }
}
