//! Mutual TLS: the sidecar's side of the mesh's identity promise.
//!
//! * **Inbound** ([`accept`]): the PeerAuthentication mode of the port decides.
//!   `STRICT` refuses plaintext (and logs why) and requires a client certificate;
//!   `PERMISSIVE` looks at the first byte (a TLS handshake record is `0x16`; HTTP/1
//!   and the HTTP/2 preface are ASCII) and serves mTLS or plaintext on the same port;
//!   `DISABLE` serves plaintext. TLS 1.3 only.
//! * **Outbound** ([`Tls::upstream`]): the DestinationRule's `tls.mode` decides, or
//!   auto mTLS when it sets none (mesh-core's
//!   [`decide_client_tls`](mesh_core::security::decide_client_tls)): `ISTIO_MUTUAL` with
//!   the workload's certificate and SPIFFE validation of the server, `MUTUAL` and
//!   `SIMPLE` with the rule's files (`clientCertificate`, `privateKey`,
//!   `caCertificates`, `sni`, `subjectAltNames`), `DISABLE` plaintext.
//! * **Validation** ([`verify`]): both directions check the peer's chain, that the
//!   leaf is not a CA, that it has exactly one SPIFFE URI SAN, and its trust domain.
//!   The peer identity reaches AuthorizationPolicy `principals`, the
//!   `source_principal` metric label and `connection_security_policy="mutual_tls"`.
//!
//! Session resumption is off in both directions: every connection is a full
//! handshake, so every peer certificate is validated against the bundle and clock of
//! the moment (an expired or rotated-out certificate cannot ride a session ticket),
//! and the "handshakes per second" benchmark measures full handshakes.

pub mod identity;
pub mod verify;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_core::Endpoint;
use mesh_core::compile::{ClientTlsFiles, ClusterPolicy};
use mesh_core::security::client_tls::AutoMtls;
use mesh_core::security::{ClientTlsMode, MtlsMode, SpiffeId, decide_client_tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use identity::{CertInfo, Identity, IdentityError, Roots};
pub use verify::{PeerRejection, PeerRole, PeerVerifier};

/// Longest wait for a TLS handshake, either direction.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A connection, plaintext or TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Server($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::Client($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Server(s) => s.is_write_vectored(),
            Stream::Client(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// Who is on the other end of an inbound connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The authenticated SPIFFE ID (mTLS only).
    pub principal: Option<Arc<SpiffeId>>,
}

impl Peer {
    pub fn plaintext(addr: SocketAddr) -> Self {
        Peer {
            addr,
            principal: None,
        }
    }

    /// Istio's `connection_security_policy` label: `mutual_tls` or `none`.
    pub fn security_policy(&self) -> &'static str {
        if self.principal.is_some() {
            "mutual_tls"
        } else {
            "none"
        }
    }
}

/// Writes a handshake failure as a JSON line on stderr (the `mtls_handshake_failed`
/// event `meshrig run --mode real` reads).
pub fn log_failure(side: &str, peer: &str, kind: &str, reason: &str) {
    use std::io::Write as _;
    let unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let line = serde_json::json!({
        "event": "mtls_handshake_failed",
        "unix_ns": unix_ns,
        "side": side,
        "peer": peer,
        "kind": kind,
        "message": reason,
    });
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// The stable kind and the message of a handshake error.
fn describe(error: &io::Error) -> (&'static str, String) {
    let tls = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match tls {
        Some(e) => match PeerRejection::from_tls(e) {
            Some(r) => (r.kind(), r.to_string()),
            None => ("tls", e.to_string()),
        },
        None => ("io", error.to_string()),
    }
}

/// The sidecar's TLS: its identity (when it has one) and the configurations built
/// from it.
#[derive(Debug)]
pub struct Tls {
    identity: Option<Arc<Identity>>,
    server: Option<Arc<ServerConfig>>,
    clients: Mutex<HashMap<ClientKey, Arc<Upstream>>>,
}

/// What makes one outbound client configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    mode: ClientTlsMode,
    files: FilesKey,
    host: String,
    /// The SPIFFE IDs the server must have one of (ISTIO_MUTUAL).
    expected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FilesKey {
    client_certificate: Option<String>,
    private_key: Option<String>,
    ca_certificates: Option<String>,
    sni: Option<String>,
    subject_alt_names: Vec<String>,
    insecure_skip_verify: bool,
}

impl From<&ClientTlsFiles> for FilesKey {
    fn from(f: &ClientTlsFiles) -> Self {
        FilesKey {
            client_certificate: f.client_certificate.clone(),
            private_key: f.private_key.clone(),
            ca_certificates: f.ca_certificates.clone(),
            sni: f.sni.clone(),
            subject_alt_names: f.subject_alt_names.clone(),
            insecure_skip_verify: f.insecure_skip_verify,
        }
    }
}

/// How the sidecar connects to one upstream cluster.
#[derive(Debug)]
pub enum Upstream {
    Plain,
    Tls {
        mode: ClientTlsMode,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    },
    /// The configuration cannot be used (a missing file, ...): every connection
    /// fails with this message.
    Broken {
        mode: ClientTlsMode,
        reason: String,
    },
}

impl Upstream {
    /// Whether connections are (meant to be) mutual TLS with the mesh identity.
    pub fn mode(&self) -> ClientTlsMode {
        match self {
            Upstream::Plain => ClientTlsMode::Disable,
            Upstream::Tls { mode, .. } | Upstream::Broken { mode, .. } => *mode,
        }
    }

    /// Opens a connection over `tcp`: a TLS handshake unless plaintext. Failures are
    /// logged (`mtls_handshake_failed`, side `outbound`) and returned.
    pub async fn connect(&self, tcp: TcpStream, address: &str) -> io::Result<Stream> {
        match self {
            Upstream::Plain => Ok(Stream::Plain(tcp)),
            Upstream::Broken { reason, .. } => {
                log_failure("outbound", address, "config", reason);
                Err(io::Error::other(reason.clone()))
            }
            Upstream::Tls {
                config,
                server_name,
                ..
            } => {
                let handshake =
                    TlsConnector::from(config.clone()).connect(server_name.clone(), tcp);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(s)) => Ok(Stream::Client(Box::new(s))),
                    Ok(Err(e)) => {
                        let (kind, message) = describe(&e);
                        log_failure("outbound", address, kind, &message);
                        Err(e)
                    }
                    Err(_) => {
                        let message =
                            format!("TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                        log_failure("outbound", address, "timeout", &message);
                        Err(io::Error::new(io::ErrorKind::TimedOut, message))
                    }
                }
            }
        }
    }
}

/// ring, with AES-128-GCM/SHA-256 preferred (as Envoy orders its TLS 1.3 suites):
/// its SHA-256 runs on the CPU's SHA extensions where AES-256's SHA-384 does not.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

fn tls13_server() -> rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier> {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
}

fn tls13_client() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
}

fn read_file(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {path}: cannot read: {e}"))
}

impl Tls {
    /// No identity: plaintext everywhere unless a DestinationRule asks for SIMPLE or
    /// MUTUAL with its own files.
    pub fn none() -> Self {
        Tls {
            identity: None,
            server: None,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Mesh mTLS with `identity` (whose certificate may come later).
    pub fn with_identity(identity: Arc<Identity>) -> Self {
        let verifier = Arc::new(PeerVerifier::new(
            identity.clone(),
            PeerRole::Client,
            Vec::new(),
        ));
        let mut server = tls13_server()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(identity::ServerCert(identity.clone())));
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        Tls {
            identity: Some(identity),
            server: Some(Arc::new(server)),
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }

    /// How to connect to `endpoint` of the cluster with `policy`, whose inbound mTLS
    /// mode is `destination_mtls` when known. Auto mTLS is on when this sidecar has
    /// an identity. With ISTIO_MUTUAL the server must be the endpoint's own workload
    /// identity (its namespace and service account), as Istio programs it, unless the
    /// DestinationRule lists `subjectAltNames`.
    pub fn upstream(
        &self,
        policy: &ClusterPolicy,
        destination_mtls: Option<MtlsMode>,
        endpoint: Option<&Endpoint>,
    ) -> Arc<Upstream> {
        let decision = decide_client_tls(
            policy.client_tls,
            AutoMtls {
                enabled: self.identity.is_some(),
                destination_has_sidecar: true,
                destination_mtls,
            },
        );
        let files = &policy.client_tls_files;
        let expected = match (&self.identity, endpoint) {
            _ if !files.subject_alt_names.is_empty() => files.subject_alt_names.clone(),
            (Some(identity), Some(e)) if decision.mode == ClientTlsMode::IstioMutual => {
                SpiffeId::workload(identity.trust_domain(), &e.namespace, &e.service_account)
                    .map(|id| vec![id.as_str().to_owned()])
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let key = ClientKey {
            mode: decision.mode,
            files: FilesKey::from(files),
            host: policy.host.clone(),
            expected,
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = clients.get(&key) {
            return u.clone();
        }
        let built = Arc::new(self.build(&key));
        clients.insert(key, built.clone());
        built
    }

    fn build(&self, key: &ClientKey) -> Upstream {
        let mode = key.mode;
        let files = &key.files;
        let result = match mode {
            ClientTlsMode::Disable => return Upstream::Plain,
            ClientTlsMode::IstioMutual => self.istio_mutual(&key.expected),
            ClientTlsMode::Simple | ClientTlsMode::Mutual => Self::with_files(mode, files),
        };
        let sni = files.sni.clone().unwrap_or_else(|| key.host.clone());
        let server_name = match ServerName::try_from(sni.clone()) {
            Ok(n) => n,
            Err(e) => {
                return Upstream::Broken {
                    mode,
                    reason: format!("DestinationRule tls sni {sni:?} is not a valid name: {e}"),
                };
            }
        };
        match result {
            Ok(config) => Upstream::Tls {
                mode,
                config: Arc::new(config),
                server_name,
            },
            Err(reason) => Upstream::Broken { mode, reason },
        }
    }

    fn istio_mutual(&self, expected: &[String]) -> Result<ClientConfig, String> {
        let Some(identity) = &self.identity else {
            return Err(
                "ISTIO_MUTUAL needs the mesh identity, and this sidecar has none \
                 (start it with --ca or --cert/--key/--bundle)"
                    .to_owned(),
            );
        };
        let verifier = PeerVerifier::new(identity.clone(), PeerRole::Server, expected.to_vec());
        let mut config = tls13_client()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(identity::ClientCert(identity.clone())));
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    fn with_files(mode: ClientTlsMode, files: &FilesKey) -> Result<ClientConfig, String> {
        let name = if mode == ClientTlsMode::Mutual {
            "MUTUAL"
        } else {
            "SIMPLE"
        };
        if files.insecure_skip_verify {
            return Err(format!(
                "DestinationRule tls insecureSkipVerify is not supported by meshrig's sidecar \
                 ({name} always verifies the server against caCertificates)"
            ));
        }
        let Some(ca) = &files.ca_certificates else {
            return Err(format!(
                "DestinationRule tls mode {name} needs caCertificates (a PEM file of the roots \
                 that sign the upstream's certificate)"
            ));
        };
        let pem = read_file("caCertificates", ca)?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("caCertificates {ca}: malformed PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("caCertificates {ca}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("caCertificates {ca}: no PEM certificate found"));
        }
        let builder = tls13_client().with_root_certificates(roots);
        let mut config = if mode == ClientTlsMode::Mutual {
            let (Some(cert), Some(key)) = (&files.client_certificate, &files.private_key) else {
                return Err(
                    "DestinationRule tls mode MUTUAL needs clientCertificate and privateKey"
                        .to_owned(),
                );
            };
            let chain = CertificateDer::pem_slice_iter(&read_file("clientCertificate", cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("clientCertificate {cert}: malformed PEM: {e}"))?;
            let key_der = PrivateKeyDer::from_pem_slice(&read_file("privateKey", key)?)
                .map_err(|e| format!("privateKey {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("clientCertificate/privateKey: {e}"))?
        } else {
            builder.with_no_client_auth()
        };
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    /// Accepts one inbound connection under `mode`: the stream to serve HTTP on and
    /// the authenticated peer, or `None` when the connection is refused (logged).
    pub async fn accept(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        mode: MtlsMode,
    ) -> Option<(Stream, Peer)> {
        if mode == MtlsMode::Disable {
            return Some((Stream::Plain(tcp), Peer::plaintext(addr)));
        }
        let mut first = [0u8; 1];
        let is_tls = match tcp.peek(&mut first).await {
            Ok(1) => first[0] == TLS_HANDSHAKE_RECORD,
            _ => return None,
        };
        if !is_tls {
            if mode == MtlsMode::Strict {
                log_failure(
                    "inbound",
                    &addr.to_string(),
                    "plaintext_to_strict",
                    "plaintext connection refused: PeerAuthentication mode STRICT requires mutual TLS",
                );
                return None;
            }
            return Some((Stream::Plain(tcp), Peer::plaintext(addr)));
        }
        let Some(server) = &self.server else {
            log_failure(
                "inbound",
                &addr.to_string(),
                "no_identity",
                "TLS connection refused: this sidecar has no mesh identity (no --ca, no --cert)",
            );
            return None;
        };
        let acceptor = TlsAcceptor::from(server.clone());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                let principal = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|leaf| {
                        let td = self.identity.as_ref()?.trust_domain();
                        verify::check_leaf(leaf, td, &[]).ok()
                    })
                    .map(Arc::new);
                Some((Stream::Server(Box::new(tls)), Peer { addr, principal }))
            }
            Ok(Err(e)) => {
                let (kind, message) = describe(&e);
                let message = if kind == "tls"
                    && self.identity.as_ref().is_some_and(|i| i.info().is_none())
                {
                    format!("{message} (this sidecar has no workload certificate yet)")
                } else {
                    message
                };
                log_failure("inbound", &addr.to_string(), kind, &message);
                None
            }
            Err(_) => {
                log_failure(
                    "inbound",
                    &addr.to_string(),
                    "timeout",
                    &format!("TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}"),
                );
                None
            }
        }
    }
}
