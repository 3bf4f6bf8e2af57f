//! Reading PEM certificate and key files for TLS clients and servers.
//!
//! Every error names the file and says what was expected, so `--cert`, `--key` and
//! `--cacert` problems reach the user as one clear line.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but holds no PEM `CERTIFICATE` block.
    #[error("{path}: no PEM certificate found (expected a '-----BEGIN CERTIFICATE-----' block)")]
    NoCertificate { path: PathBuf },
    /// The file was read but holds no usable private key.
    #[error(
        "{path}: no PEM private key found (expected a PKCS#8, PKCS#1 or SEC1 '-----BEGIN ... PRIVATE KEY-----' block)"
    )]
    NoKey { path: PathBuf },
    /// A PEM block was present but its contents did not parse.
    #[error("{path}: malformed PEM: {detail}")]
    Malformed { path: PathBuf, detail: String },
}

/// Reads every certificate in a PEM file, in file order. Fails if there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => PemError::NoKey {
            path: path.to_owned(),
        },
        other => PemError::Malformed {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The process-wide rustls crypto provider (ring). Installing it explicitly means no
/// other provider can be picked up by accident.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process's default rustls provider, once, at start-up (the
/// workspace builds rustls with ring only; `cargo tree -d` shows no second stack).
/// A second call is a no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
