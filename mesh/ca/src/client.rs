//! The client of the CA's HTTPS API ([`crate::server`]).
//!
//! HTTP/1.1 with keep-alive over TLS 1.3 (hyper + tokio-rustls, ring). A [`CaClient`]
//! is cheap to clone; clones share a small pool of idle connections, so requests from
//! several tasks run on several connections and a connection is reused by the next
//! request once it is idle. A request that fails on a reused connection (the server
//! closed it while idle) is retried once on a new one. Every request, connecting
//! included, has a [`REQUEST_TIMEOUT`].
//!
//! The client trusts the roots it was given; after each successful
//! [`CaClient::sign`] it trusts the bundle the CA returned instead, so it can still
//! reach the CA after a root rotation.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;

/// How long one request may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept for reuse, at most.
const MAX_IDLE: usize = 64;
/// The largest response body read, in bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What went wrong talking to the CA.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No TCP connection (refused, unreachable, reset), or it broke mid-request.
    #[error("cannot reach the CA: {0}")]
    Connect(String),
    /// The TLS handshake failed (for example the CA's certificate does not chain to
    /// the roots this client trusts).
    #[error("TLS with the CA failed: {0}")]
    Tls(String),
    /// The CA answered with an error; `message` is its reason.
    #[error("the CA refused ({status}): {message}")]
    Http { status: u16, message: String },
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("the CA did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    /// Bad input (an address, roots, a token) or an answer that is not what the API
    /// promises.
    #[error("{0}")]
    Bad(String),
}

impl ClientError {
    /// Whether the CA could not be reached at all (connect, TLS or timeout): the kind
    /// of failure to back off from and retry.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect(_) | ClientError::Tls(_) | ClientError::Timeout
        )
    }
}

/// A certificate the CA signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The leaf, then the intermediates it chains through.
    pub cert_chain_pem: String,
    /// Every root the CA trusts now.
    pub bundle_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// What `POST /v1/rotate` answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rotated {
    pub phase: String,
    pub overlap_s: u64,
    /// Unix seconds: both roots trusted from here, the old one signing.
    pub started: u64,
    /// Unix seconds: the new root signs from here.
    pub switch_at: u64,
    /// Unix seconds: the old root leaves the bundle here.
    pub drop_old_at: u64,
    /// The CA's warning (a short overlap), if any.
    pub note: Option<String>,
    /// The bundle now (both roots).
    pub bundle: String,
}

#[derive(Deserialize)]
struct SignResponse {
    cert_chain: String,
    bundle: String,
    not_before: u64,
    not_after: u64,
}

/// The CA's API client. Clone it freely: clones share the connections and roots.
#[derive(Clone)]
pub struct CaClient {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    server_name: ServerName<'static>,
    authorization: HeaderValue,
    tls: RwLock<Tls>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

struct Tls {
    roots_pem: String,
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for CaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("CaClient")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

// === impl CaClient ===

impl CaClient {
    /// `addr` is host:port; `roots_pem` is the trust bundle used to verify the CA's
    /// server cert; `token` is sent as `Authorization: Bearer <token>`.
    pub fn new(addr: &str, token: &str, roots_pem: &str) -> Result<CaClient, ClientError> {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| ClientError::Bad(format!("'{addr}' is not host:port")))?;
        port.parse::<u16>()
            .map_err(|_| ClientError::Bad(format!("'{addr}': the port is not a number")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| ClientError::Bad(format!("'{addr}': {host} is not a host name: {e}")))?;
        let authorization = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ClientError::Bad("the token has characters a header cannot carry".into())
        })?;
        Ok(CaClient {
            inner: Arc::new(Inner {
                addr: addr.to_owned(),
                server_name,
                authorization,
                tls: RwLock::new(Tls::new(roots_pem)?),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Sends the CSR; on success also replaces the client's trusted roots with the
    /// returned bundle (so it can still reach the CA after a root rotation). `ttl` is
    /// asked for in whole seconds; the CA may cap it.
    pub async fn sign(&self, csr_pem: &str, ttl: Duration) -> Result<Signed, ClientError> {
        let body = serde_json::json!({ "csr": csr_pem, "ttl_s": ttl.as_secs().max(1) });
        let bytes = self.call(Method::POST, "/v1/sign", Some(body)).await?;
        let r: SignResponse = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Bad(format!("the CA's answer is not the sign JSON: {e}")))?;
        self.trust(&r.bundle)?;
        Ok(Signed {
            cert_chain_pem: r.cert_chain,
            bundle_pem: r.bundle,
            not_before: UNIX_EPOCH + Duration::from_secs(r.not_before),
            not_after: UNIX_EPOCH + Duration::from_secs(r.not_after),
        })
    }

    /// The CA's trust bundle now (every root it trusts), PEM.
    pub async fn bundle(&self) -> Result<String, ClientError> {
        let bytes = self.call(Method::GET, "/v1/bundle", None).await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ClientError::Bad("the bundle is not UTF-8".to_owned()))
    }

    /// Starts a root rotation with both roots trusted for `overlap`. Needs a client
    /// made with the admin token.
    pub async fn rotate(&self, overlap: Duration) -> Result<Rotated, ClientError> {
        let body = serde_json::json!({ "overlap_s": overlap.as_secs() });
        let bytes = self.call(Method::POST, "/v1/rotate", Some(body)).await?;
        let r: Rotated = serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Bad(format!("the CA's answer is not the rotate JSON: {e}"))
        })?;
        self.trust(&r.bundle)?;
        Ok(r)
    }

    /// Trusts `roots_pem` for new connections (kept ones stay as they are).
    fn trust(&self, roots_pem: &str) -> Result<(), ClientError> {
        if self.inner.tls().roots_pem == roots_pem {
            return Ok(());
        }
        let tls = Tls::new(roots_pem)?;
        *self.inner.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
        Ok(())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Bytes, ClientError> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let attempt = async {
            // A kept connection may have been closed by the server while idle: one
            // retry on a new connection.
            let (mut sender, reused) = match self.inner.take_idle() {
                Some(s) => (s, true),
                None => (self.inner.connect().await?, false),
            };
            let result = match self.send(&mut sender, &method, path, body.clone()).await {
                Err(ClientError::Connect(_)) if reused => {
                    sender = self.inner.connect().await?;
                    self.send(&mut sender, &method, path, body).await
                }
                other => other,
            };
            if result.is_ok() {
                self.inner.put_idle(sender);
            }
            result
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, attempt)
            .await
            .map_err(|_| ClientError::Timeout)??;
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(ClientError::Http {
            status: status.as_u16(),
            message,
        })
    }

    async fn send(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        method: &Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let broken = |e: hyper::Error| ClientError::Connect(format!("{}: {e}", self.inner.addr));
        sender.ready().await.map_err(broken)?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.inner.addr.as_str())
            .header(header::AUTHORIZATION, self.inner.authorization.clone());
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Bad(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(broken)?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                ClientError::Connect(format!("{}: reading the answer: {e}", self.inner.addr))
            })?
            .to_bytes();
        Ok((status, body))
    }
}

// === impl Inner ===

impl Inner {
    fn tls(&self) -> std::sync::RwLockReadGuard<'_, Tls> {
        self.tls.read().unwrap_or_else(|e| e.into_inner())
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let connector = self.tls().connector.clone();
        let tcp = tokio::net::TcpStream::connect(self.addr.as_str())
            .await
            .map_err(|e| ClientError::Connect(format!("{}: {e}", self.addr)))?;
        let _ = tcp.set_nodelay(true);
        let tls = connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| {
                let is_tls = e
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
                if is_tls {
                    ClientError::Tls(format!("{}: {e}", self.addr))
                } else {
                    ClientError::Connect(format!("{}: {e}", self.addr))
                }
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Connect(format!("{}: {e}", self.addr)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

// === impl Tls ===

impl Tls {
    fn new(roots_pem: &str) -> Result<Tls, ClientError> {
        let certs = CertificateDer::pem_slice_iter(roots_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Bad(format!("the CA roots are not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Bad(
                "the CA roots hold no '-----BEGIN CERTIFICATE-----' block".to_owned(),
            ));
        }
        let mut store = RootCertStore::empty();
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| ClientError::Bad(format!("a CA root is not usable: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Bad(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            roots_pem: roots_pem.to_owned(),
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}
