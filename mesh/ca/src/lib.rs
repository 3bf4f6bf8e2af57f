//! `mesh-ca` — meshrig's certificate authority: a root it generates itself (or a root
//! or intermediate loaded from PEM, to plug into an existing PKI) that issues SPIFFE
//! X.509-SVIDs to workloads, over an HTTPS CSR-signing API or offline.
//!
//! An SVID here has exactly one URI SAN, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`,
//! `cA=false`, key usage digitalSignature + keyEncipherment, extended key usage
//! server and client auth, an ECDSA P-256 key, and a configurable lifetime; it chains
//! to the roots of the trust bundle.
//!
//! The rooms:
//!
//! - [`authority`]: the [`Ca`] — a signing certificate and key. [`Ca::issue`] makes the
//!   key too (for `meshrig ca issue`, offline use and tests); [`Ca::sign_csr`] signs a
//!   workload's CSR — the key never leaves the workload — and refuses a CSR that asks
//!   for any identity but the one the caller was authenticated as.
//! - [`csr`]: the workload side — [`generate_csr`] makes a P-256 key and a CSR with one
//!   URI SAN — and the CA side's parsing and checking of a CSR ([`VerifiedCsr`]).
//! - [`tokens`]: bootstrap tokens, each bound to one namespace/service account.
//! - [`roots`]: the trust bundle and root rotation with an overlap period, a
//!   clock-injected state machine ([`TrustRoots`]).
//! - [`server`]: the HTTPS API ([`CaServer`]); [`client`]: its client ([`CaClient`]).
//!
//! What this crate is not: the certificate *lifecycle* of a workload (when to renew,
//! how to back off, what happens at expiry) is mesh-core's; this crate only mints and
//! serves. Keys and certificates are made with rcgen and checked with x509-parser, on
//! ring, the workspace's one crypto provider; TLS is rustls (TLS 1.3 only) with ring
//! passed explicitly, so nothing here depends on a process-wide default provider.

pub mod authority;
pub mod client;
pub mod csr;
pub mod roots;
pub mod server;
pub mod tokens;

mod metrics;
mod pem_util;

use std::time::Duration;

pub use authority::{Ca, Issued, Leaf, Origin};
pub use client::{CaClient, ClientError, Signed};
pub use csr::{Csr, VerifiedCsr, generate_csr};
pub use roots::{Phase, Rotation, Timeline, TrustRoots};
pub use server::{CaServer, ServerConfig, ServerError, SignOn};
pub use tokens::{Identity, TokenError, Tokens};

/// Default SVID lifetime (Istio's).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Root certificate lifetime for a generated root.
pub const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What went wrong while minting or checking a certificate.
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
    #[error("the CSR's SAN must be a spiffe:// URI, it is {0}")]
    SanNotSpiffe(String),
    #[error("the CSR is not PEM: {0}")]
    CsrPem(String),
    #[error("the CSR does not parse as PKCS#10: {0}")]
    CsrParse(String),
    #[error("the CSR's signature does not verify with the key it carries")]
    CsrSignature,
    #[error("the CSR's key is {0}; this CA signs ECDSA P-256 keys only")]
    CsrKey(String),
    #[error("the CSR asks for extensions this CA does not grant ({0}); ask for the URI SAN only")]
    CsrExtension(String),
    #[error("not a CA certificate: {0}")]
    NotCa(String),
    #[error("the CA certificate chain is not usable: {0}")]
    Chain(String),
    #[error("the CA key is not usable: {0}")]
    Key(String),
    #[error("the CA key does not belong to the CA certificate (the first one in the file)")]
    KeyMismatch,
    #[error("{0}")]
    Crypto(#[from] rcgen::Error),
}

/// `spiffe://<td>/ns/<ns>/sa/<sa>`, after checking each part.
pub fn spiffe_id(trust_domain: &str, ns: &str, sa: &str) -> Result<String, CaError> {
    check_trust_domain(trust_domain)?;
    check_segment("namespace", ns)?;
    check_segment("service account", sa)?;
    Ok(format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}"))
}

/// A namespace or service account name: letters, digits, '.', '-', '_'.
pub(crate) fn check_segment(field: &'static str, value: &str) -> Result<(), CaError> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CaError::Segment {
            field,
            value: value.to_owned(),
        })
    }
}

fn check_trust_domain(trust_domain: &str) -> Result<(), CaError> {
    let ok = !trust_domain.is_empty()
        && trust_domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CaError::TrustDomain(trust_domain.to_owned()))
    }
}
