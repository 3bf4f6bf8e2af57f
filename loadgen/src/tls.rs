//! TLS client configuration for load targets: server verification against given or
//! system roots (or none, with `--insecure`), an optional client certificate for mTLS,
//! and ALPN matching the HTTP version asked for.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::pem::{self, PemError};

/// TLS settings of a target. Defaults: system roots, no client certificate,
/// verification on.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the system roots (`--cacert`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (`--cert`); needs `key`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (`--key`).
    pub key_file: Option<PathBuf>,
    /// Skip server certificate verification (`--insecure`). Default is `false`.
    pub insecure: bool,
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The CA file (`--cacert`) could not be read.
    #[error("CA certificates: {0}")]
    Ca(PemError),
    /// The client certificate (`--cert`) could not be read.
    #[error("client certificate: {0}")]
    ClientCert(PemError),
    /// The client key (`--key`) could not be read.
    #[error("client key: {0}")]
    ClientKey(PemError),
    #[error("{path}: not a usable CA certificate: {detail}")]
    BadCa { path: PathBuf, detail: String },
    #[error("--cert and --key must be given together")]
    CertWithoutKey,
    #[error("client certificate and key do not work together: {0}")]
    BadClientCert(String),
    #[error(
        "no trusted root certificates: none in the system store; pass --cacert FILE or --insecure"
    )]
    NoRoots,
}

/// Builds a client config offering `alpn` protocols (e.g. `[b"h2"]`).
pub fn client_config(
    opts: &TlsOptions,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = pem::crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
    } else {
        builder.with_root_certificates(roots(opts)?)
    };
    let mut config = match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => {
            let chain = pem::load_certs(cert).map_err(TlsConfigError::ClientCert)?;
            let key = pem::load_key(key).map_err(TlsConfigError::ClientKey)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsConfigError::BadClientCert(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsConfigError::CertWithoutKey),
    };
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

fn roots(opts: &TlsOptions) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    if let Some(path) = &opts.ca_file {
        for cert in pem::load_certs(path).map_err(TlsConfigError::Ca)? {
            store.add(cert).map_err(|e| TlsConfigError::BadCa {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        }
        return Ok(store);
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsConfigError::NoRoots);
    }
    Ok(store)
}

/// `--insecure`: accepts any server certificate, but still checks that the server
/// holds the key for it (the handshake signature), so the TLS work is real.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
