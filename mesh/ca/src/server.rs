//! The CA's HTTPS API (HTTP/1.1 with keep-alive over TLS 1.3; hyper + tokio-rustls).
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/sign` `{"csr": PEM, "ttl_s": N}` + `Authorization: Bearer <token>` | 200 `{"cert_chain", "bundle", "not_before", "not_after"}` |
//! | `GET /v1/bundle` | 200, every root trusted now (PEM) |
//! | `POST /v1/rotate` `{"overlap_s": N}` + the admin token | 200, the rotation's timeline |
//! | `GET /ready` | 200 `ready` |
//! | `GET /metrics` | Prometheus text |
//!
//! Every refusal is a 4xx whose body is `{"error": "<why>"}`, and one JSON line on
//! stderr (`"event": "rejected"`). The TTL asked for (`ttl_s`, default
//! [`ServerConfig::default_ttl`]) is capped at [`ServerConfig::max_ttl`].
//!
//! The server's own certificate is issued from the root that signs now, with the SANs
//! DNS `localhost`, the bind IP (127.0.0.1 and ::1 for an unspecified bind) and any
//! [`ServerConfig::extra_names`], and URI
//! `spiffe://<td>/ns/meshrig-system/sa/meshrig-ca`; it is re-issued when signing
//! switches roots, and at half its lifetime.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use crate::DEFAULT_TTL;
use crate::authority::{Ca, Issued};
use crate::metrics::{Gauges, Metrics};
use crate::pem_util::count_certificates;
use crate::roots::{Change, Phase, TrustRoots};
use crate::tokens::Tokens;

mod handlers;

use handlers::handle;

/// The largest request body read, in bytes (a CSR is under 1 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Lifetime of the API's own certificate.
pub const SERVER_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The identity in the API's own certificate.
pub const SERVER_NAMESPACE: &str = "meshrig-system";
pub const SERVER_SERVICE_ACCOUNT: &str = "meshrig-ca";
/// How long a TLS handshake or a request's headers may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(2);
/// The longest the rotation timer sleeps before looking again.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(60);

/// Where signing runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOn {
    /// On the connection's task (measured faster: see docs/benchmarks.md).
    Inline,
    /// On tokio's blocking pool.
    Blocking,
}

/// How the server runs. Build with [`ServerConfig::new`] and set fields.
#[derive(Debug)]
pub struct ServerConfig {
    /// The CA that signs at start.
    pub ca: Ca,
    /// Bootstrap tokens: who may ask for which identity.
    pub tokens: Tokens,
    /// The token `POST /v1/rotate` needs. Default `None`: rotation is refused.
    pub admin_token: Option<String>,
    /// TTL when a request names none. Default [`DEFAULT_TTL`] (24 h).
    pub default_ttl: Duration,
    /// The longest TTL handed out; longer requests are capped. Default 24 h.
    pub max_ttl: Duration,
    /// A file rewritten (atomically) with the trust bundle whenever it changes, and at
    /// start. Default `None`.
    pub bundle_file: Option<PathBuf>,
    /// A directory where the signing root's certificate and key are kept
    /// (`signing-cert.pem`, `signing-key.pem` 0600), rewritten when signing switches
    /// roots, so a restarted CA ([`crate::Ca::restore`]) signs with the same root.
    /// Default `None`.
    pub signing_dir: Option<PathBuf>,
    /// More SANs for the API's certificate: IP addresses or DNS names. Default none.
    pub extra_names: Vec<String>,
    /// Where signing runs. Default [`SignOn::Inline`].
    pub sign_on: SignOn,
    /// Connections served at once; more wait in the kernel's backlog. Default 1024.
    pub max_connections: usize,
}

impl ServerConfig {
    /// A configuration with every default (see each field).
    pub fn new(ca: Ca, tokens: Tokens) -> ServerConfig {
        ServerConfig {
            ca,
            tokens,
            admin_token: None,
            default_ttl: DEFAULT_TTL,
            max_ttl: DEFAULT_TTL,
            signing_dir: None,
            bundle_file: None,
            extra_names: Vec::new(),
            sign_on: SignOn::Inline,
            max_connections: 1024,
        }
    }
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot issue the API's own certificate: {0}")]
    Cert(String),
    #[error("cannot write the trust bundle to {path}: {source}")]
    BundleFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// What handlers read on every request: swapped whole when the roots change.
#[derive(Debug)]
struct Snapshot {
    signer: Arc<Ca>,
    bundle_pem: Arc<str>,
}

/// What changes only on rotation and timers, under one lock.
#[derive(Debug)]
struct Control {
    roots: TrustRoots,
    /// The signer the API's certificate was issued from.
    cert_issuer: Arc<Ca>,
    cert_renew_at: SystemTime,
    bundle_pem: String,
}

#[derive(Debug)]
struct Shared {
    trust_domain: String,
    tokens: Tokens,
    admin_token: Option<String>,
    default_ttl: Duration,
    max_ttl: Duration,
    bundle_file: Option<PathBuf>,
    signing_dir: Option<PathBuf>,
    sign_on: SignOn,
    dns_names: Vec<String>,
    ips: Vec<IpAddr>,
    control: Mutex<Control>,
    snapshot: RwLock<Arc<Snapshot>>,
    cert: Arc<CertResolver>,
    metrics: Metrics,
    wake: Notify,
}

/// The running CA: bound, not yet serving.
#[derive(Debug)]
pub struct CaServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    max_connections: usize,
}

// === impl CaServer ===

impl CaServer {
    /// Binds `addr`, issues the API's certificate and writes the bundle file (if
    /// configured). Call inside a tokio runtime.
    pub async fn bind(addr: SocketAddr, config: ServerConfig) -> Result<CaServer, ServerError> {
        if config.default_ttl > config.max_ttl {
            return Err(ServerError::Config(format!(
                "the default TTL ({} s) is longer than the maximum TTL ({} s)",
                config.default_ttl.as_secs(),
                config.max_ttl.as_secs()
            )));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let mut ips = Vec::new();
        let mut dns_names = vec!["localhost".to_owned()];
        if local_addr.ip().is_unspecified() {
            ips.extend([
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]);
        } else {
            ips.push(local_addr.ip());
        }
        for name in &config.extra_names {
            match name.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => dns_names.push(name.clone()),
            }
        }
        let trust_domain = config.ca.trust_domain().to_owned();
        let roots = TrustRoots::new(config.ca, config.default_ttl);
        let signer = Arc::clone(roots.signer());
        let now = SystemTime::now();
        let dns: Vec<&str> = dns_names.iter().map(String::as_str).collect();
        let certified =
            server_cert(&signer, &dns, &ips, now).map_err(|e| ServerError::Cert(e.to_string()))?;
        let bundle_pem = roots.bundle_pem();
        if let Some(path) = &config.bundle_file {
            write_atomically(path, &bundle_pem).map_err(|source| ServerError::BundleFile {
                path: path.clone(),
                source,
            })?;
        }
        let cert = Arc::new(CertResolver(RwLock::new(certified)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ServerError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let shared = Arc::new(Shared {
            trust_domain,
            tokens: config.tokens,
            admin_token: config.admin_token,
            default_ttl: config.default_ttl,
            max_ttl: config.max_ttl,
            bundle_file: config.bundle_file,
            signing_dir: config.signing_dir,
            sign_on: config.sign_on,
            dns_names,
            ips,
            snapshot: RwLock::new(Arc::new(Snapshot {
                signer: Arc::clone(&signer),
                bundle_pem: bundle_pem.clone().into(),
            })),
            control: Mutex::new(Control {
                roots,
                cert_issuer: signer,
                cert_renew_at: now + SERVER_CERT_TTL / 2,
                bundle_pem,
            }),
            cert,
            metrics: Metrics::default(),
            wake: Notify::new(),
        });
        Ok(CaServer {
            listener,
            local_addr,
            shared,
            tls: Arc::new(tls),
            max_connections: config.max_connections.max(1),
        })
    }

    /// The address bound (with the port picked, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every root trusted now, PEM.
    pub fn bundle_pem(&self) -> String {
        self.shared.snapshot().bundle_pem.to_string()
    }

    /// Serves until `shutdown` resolves, then stops accepting and gives open
    /// connections [`DRAIN`] to finish. Also drives the rotation timeline.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let CaServer {
            listener,
            shared,
            tls,
            max_connections,
            ..
        } = self;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let timer = tokio::spawn(run_timer(Arc::clone(&shared), stop_rx.clone()));
        let slots = Arc::new(Semaphore::new(max_connections));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and the like: back off rather than spin.
                        log_event(&serde_json::json!({"event": "accept_failed", "error": e.to_string()}));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (shared, acceptor, mut stop_rx) =
                (Arc::clone(&shared), acceptor.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        shared.metrics.tls_failure();
                        log_event(&serde_json::json!({
                            "event": "tls_handshake_failed", "peer": peer.to_string(), "error": e.to_string(),
                        }));
                        return;
                    }
                    Err(_) => {
                        shared.metrics.tls_failure();
                        return;
                    }
                };
                let svc_shared = Arc::clone(&shared);
                let service = service_fn(move |req| {
                    let shared = Arc::clone(&svc_shared);
                    async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(IO_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = async { let _ = stop_rx.wait_for(|s| *s).await; } => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(DRAIN, conn).await;
                    }
                }
            });
        }
        let _ = stop_tx.send(true);
        drop(listener);
        let total = u32::try_from(max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            DRAIN + Duration::from_millis(200),
            slots.acquire_many(total),
        )
        .await;
        timer.abort();
    }
}

// === impl Shared ===

impl Shared {
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a change of the roots (or a timer): publish the new signer and bundle,
    /// re-issue the API's certificate when the signer changed or it is half-way
    /// through its life, rewrite the bundle file when the bundle changed.
    fn publish(&self, control: &mut Control, now: SystemTime) {
        let signer = Arc::clone(control.roots.signer());
        let bundle_pem = control.roots.bundle_pem();
        let signer_changed = !Arc::ptr_eq(&signer, &control.cert_issuer);
        if signer_changed && let Some(dir) = &self.signing_dir {
            let key = signer.key_pem();
            let written = write_atomically(&dir.join("signing-cert.pem"), signer.cert_pem())
                .and_then(|()| write_secret(&dir.join("signing-key.pem"), &key));
            if let Err(e) = written {
                log_event(&serde_json::json!({
                    "event": "signing_root_write_failed", "dir": dir.display().to_string(), "error": e.to_string(),
                }));
            }
        }
        if signer_changed || now >= control.cert_renew_at {
            let dns: Vec<&str> = self.dns_names.iter().map(String::as_str).collect();
            match server_cert(&signer, &dns, &self.ips, now) {
                Ok(certified) => {
                    *self.cert.0.write().unwrap_or_else(|e| e.into_inner()) = certified;
                    control.cert_issuer = Arc::clone(&signer);
                    control.cert_renew_at = now + SERVER_CERT_TTL / 2;
                }
                Err(e) => {
                    // Keep serving with the old certificate; try again in a minute.
                    control.cert_renew_at = now + Duration::from_secs(60);
                    log_event(&serde_json::json!({"event": "server_cert_failed", "error": e}));
                }
            }
        }
        let bundle_changed = bundle_pem != control.bundle_pem;
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot {
            signer,
            bundle_pem: bundle_pem.clone().into(),
        });
        if bundle_changed {
            if let Some(path) = &self.bundle_file
                && let Err(e) = write_atomically(path, &bundle_pem)
            {
                log_event(&serde_json::json!({
                    "event": "bundle_write_failed", "path": path.display().to_string(), "error": e.to_string(),
                }));
            }
            control.bundle_pem = bundle_pem;
        }
    }

    fn gauges(&self) -> Gauges {
        let control = self.control();
        Gauges {
            phase: control.roots.phase(),
            rotations: control.roots.rotations(),
            trusted_roots: count_certificates(&control.bundle_pem),
        }
    }
}

/// Applies the rotation timeline and renews the API's certificate, waking at each
/// phase change (or when a rotation starts), until `stop`.
async fn run_timer(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let next = {
            let control = shared.control();
            control
                .roots
                .poll_timeout()
                .map_or(control.cert_renew_at, |t| t.min(control.cert_renew_at))
        };
        let sleep = next
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_TIMER_SLEEP);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shared.wake.notified() => continue,
            () = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        let now = SystemTime::now();
        let mut control = shared.control();
        let changes = control.roots.handle_timeout(now);
        for change in &changes {
            // The simulator's event names, so one scenario's assertions hold in both.
            let (event, phase, message) = match change {
                Change::SigningSwitched => (
                    "root_signing_switched",
                    control.roots.phase(),
                    "the new root signs from now on; both roots are still trusted",
                ),
                Change::OldRootDropped => (
                    "root_retired",
                    Phase::Steady,
                    "the old root is no longer in the trust bundle",
                ),
            };
            log_event(&serde_json::json!({
                "event": event, "phase": phase.as_str(), "unix_ns": unix_ns(now), "message": message,
            }));
        }
        shared.publish(&mut control, now);
    }
}

/// The API's certificate, issued by `signer`.
fn server_cert(
    signer: &Ca,
    dns: &[&str],
    ips: &[IpAddr],
    now: SystemTime,
) -> Result<Arc<CertifiedKey>, String> {
    let Issued { cert_pem, key_pem } = signer
        .issue_server(
            SERVER_NAMESPACE,
            SERVER_SERVICE_ACCOUNT,
            dns,
            ips,
            SERVER_CERT_TTL,
            now,
        )
        .map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(certs, key)))
}

/// Hands rustls the API's current certificate.
#[derive(Debug)]
struct CertResolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// One JSON line on stderr, with the time.
pub(crate) fn log_event(event: &serde_json::Value) {
    let mut line = serde_json::json!({ "ts_unix_ms": unix_ms(), "component": "meshrig-ca" });
    if let (Some(line), Some(event)) = (line.as_object_mut(), event.as_object()) {
        line.extend(event.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    eprintln!("{line}");
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Nanoseconds since the Unix epoch, for event lines.
pub(crate) fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// [`write_atomically`] for a private key: readable by its owner only.
fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Writes `text` to `path` through a temporary file and a rename, so a reader never
/// sees half a bundle.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
