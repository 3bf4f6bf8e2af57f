//! The proxy's side: subscribe to a control plane, verify each version, hand it to
//! the proxy, ACK or NACK it.
//!
//! [`run`] long-polls `GET /v1/config`; for each new version it recompiles the
//! snapshot with mesh-core from the sources and registry it was sent and checks the
//! hash against the server's, then calls the callback. The version is ACKed when the
//! callback returns `Ok`, NACKed (and the proxy keeps its last good configuration)
//! when anything fails: YAML errors, a bad registry, a hash mismatch, or the
//! callback's `Err`. When the control plane is unreachable it retries with capped
//! exponential backoff; the proxy keeps serving what it has.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use mesh_core::compile::{Registry, Snapshot, snapshot};
use mesh_core::config::ConfigSet;
use tokio::net::TcpStream;

use crate::registry::RegistryFile;
use crate::state::load;
use crate::wire::{Ack, ConfigResponse, ProxyIdentity, hash_hex};

/// Largest config response read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// ACK attempts per version before giving up on telling the control plane.
const ACK_ATTEMPTS: u32 = 3;

/// One verified version, for the proxy to apply.
#[derive(Debug)]
pub struct Update {
    pub version: u64,
    pub set: ConfigSet,
    /// The registry as this proxy sees it (`via` resolved).
    pub registry: Registry,
    /// The proxy's snapshot, compiled here and checked against the server's hash.
    pub snapshot: Snapshot,
    /// The snapshot's digest.
    pub hash: u64,
}

/// How to reach the control plane and who we are.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` of the control plane.
    authority: String,
    pub identity: ProxyIdentity,
    /// First retry delay after a failure. Default 100 ms.
    pub backoff_initial: Duration,
    /// Longest retry delay. Default 2 s.
    pub backoff_max: Duration,
    /// Longest one request may take, long poll included. Default 45 s (above the
    /// server's default 30 s long poll).
    pub request_timeout: Duration,
}

/// The control plane URL is not usable.
#[derive(Debug, thiserror::Error)]
#[error(
    "'{url}' is not a control plane URL: {reason} (expected http://HOST:PORT, e.g. http://127.0.0.1:15010)"
)]
pub struct UrlError {
    url: String,
    reason: &'static str,
}

impl ClientOptions {
    /// Options for `url` (`http://HOST:PORT`, an optional trailing `/`).
    pub fn new(url: &str, identity: ProxyIdentity) -> Result<Self, UrlError> {
        let err = |reason| UrlError {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url.parse().map_err(|_| err("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(err("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| err("no host"))?;
        if authority.port_u16().is_none() {
            return Err(err("no port"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(err("no path or query expected"));
        }
        Ok(ClientOptions {
            authority: authority.as_str().to_owned(),
            identity,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            request_timeout: Duration::from_secs(45),
        })
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// Subscribes forever (abort the task to stop): each verified new version goes to
/// `on_update`, whose `Ok` ACKs it and `Err(reason)` NACKs it.
pub async fn run<F>(options: ClientOptions, mut on_update: F)
where
    F: FnMut(Update) -> Result<(), String> + Send,
{
    let mut known = 0u64;
    let mut backoff = options.backoff_initial;
    let mut failing = false;
    loop {
        let path = format!("/v1/config?{}", options.identity.query(known));
        match request(&options, Method::GET, &path, Bytes::new()).await {
            Ok((StatusCode::OK, body)) => {
                if failing {
                    eprintln!("mesh-control client: {} reachable again", options.url());
                    failing = false;
                }
                backoff = options.backoff_initial;
                let (version, outcome) = match serde_json::from_slice::<ConfigResponse>(&body) {
                    Ok(response) => {
                        let version = response.version;
                        (
                            version,
                            verify(&options.identity, response).and_then(&mut on_update),
                        )
                    }
                    Err(e) => {
                        // No version to NACK: retry after a pause.
                        eprintln!("mesh-control client: unreadable config response: {e}");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                };
                if let Err(e) = &outcome {
                    eprintln!("mesh-control client: rejected version {version}: {e}");
                }
                // A NACKed version is not asked for again; the next one may be good.
                known = known.max(version);
                send_ack(&options, version, outcome).await;
            }
            Ok((StatusCode::NOT_MODIFIED, _)) => {
                backoff = options.backoff_initial;
            }
            Ok((status, body)) => {
                eprintln!(
                    "mesh-control client: {} answered {status}: {}",
                    options.url(),
                    String::from_utf8_lossy(&body).trim()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.backoff_max);
            }
            Err(e) => {
                if !failing {
                    eprintln!(
                        "mesh-control client: control plane {} unreachable ({e}); keeping version {known}, retrying",
                        options.url()
                    );
                    failing = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.backoff_max);
            }
        }
    }
}

/// Recompiles the proxy's snapshot from what the server sent and checks its hash.
pub fn verify(identity: &ProxyIdentity, response: ConfigResponse) -> Result<Update, String> {
    let (set, errors) = load(&response.sources);
    if let Some(first) = errors.first() {
        return Err(format!(
            "configuration error: {first}{}",
            if errors.len() > 1 {
                format!(" (and {} more)", errors.len() - 1)
            } else {
                String::new()
            }
        ));
    }
    let file: RegistryFile = response.registry;
    file.validate().map_err(|e| format!("registry: {e}"))?;
    let registry = file.to_registry();
    let snap = snapshot(&set, &registry, &identity.proxy_id(), response.version);
    let hash = hash_hex(snap.digest);
    if hash != response.snapshot_hash {
        return Err(format!(
            "snapshot hash mismatch: compiled {hash}, control plane says {}",
            response.snapshot_hash
        ));
    }
    Ok(Update {
        version: response.version,
        set,
        registry,
        hash: snap.digest,
        snapshot: snap,
    })
}

async fn send_ack(options: &ClientOptions, version: u64, outcome: Result<(), String>) {
    let ack = Ack {
        proxy: options.identity.id.clone(),
        version,
        ok: outcome.is_ok(),
        error: outcome.err(),
    };
    let body = Bytes::from(serde_json::to_vec(&ack).unwrap_or_default());
    let mut delay = options.backoff_initial;
    for _ in 0..ACK_ATTEMPTS {
        match request(options, Method::POST, "/v1/ack", body.clone()).await {
            Ok((s, _)) if s.is_success() => return,
            _ => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(options.backoff_max);
            }
        }
    }
    eprintln!("mesh-control client: could not report version {version} to the control plane");
}

/// One request on a fresh connection: (status, body).
async fn request(
    options: &ClientOptions,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let exchange = async {
        let stream = TcpStream::connect(&options.authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &options.authority);
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        conn.abort();
        Ok((status, body))
    };
    tokio::time::timeout(options.request_timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {:?}", options.request_timeout))?
}
