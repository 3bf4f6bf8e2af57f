//! Pooled HTTP/1.1 client connections to upstream endpoints (`IP:PORT`).
//!
//! A connection is reused once its previous response has been read to the end; idle
//! connections per endpoint are capped ([`MAX_IDLE_PER_ENDPOINT`]). Errors say whether
//! the connection could not be made (mesh-core's `ConnectFailure`) or broke before a
//! response (`Reset`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ProxyBody;

/// Idle connections kept per endpoint.
pub const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// Longest wait for a TCP connection to an endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a try got no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("upstream {address} reset: {reason}")]
    Reset { address: String, reason: String },
}

/// The connection pool of one proxy (all endpoints).
#[derive(Debug, Default)]
pub struct Upstreams {
    idle: Mutex<BTreeMap<String, Vec<SendRequest<ProxyBody>>>>,
}

impl Upstreams {
    /// Sends `request` (origin-form URI) to `address`, on an idle connection or a new
    /// one; resolves when response headers arrive.
    pub async fn send(
        &self,
        address: &str,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = match self.take_idle(address) {
            Some(s) => s,
            None => self.connect(address).await?,
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| UpstreamError::Reset {
                address: address.to_owned(),
                reason: e.to_string(),
            })?;
        self.put_idle(address, sender);
        Ok(response)
    }

    fn take_idle(&self, address: &str) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(address)?;
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(s) = list.pop() {
            if s.is_closed() {
                continue;
            }
            if s.is_ready() {
                found = Some(s);
                break;
            }
            busy.push(s);
        }
        list.extend(busy);
        found
    }

    fn put_idle(&self, address: &str, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(address.to_owned()).or_default();
        list.retain(|s| !s.is_closed());
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(sender);
        }
    }

    async fn connect(&self, address: &str) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let failed = |reason: String| UpstreamError::Connect {
            address: address.to_owned(),
            reason,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| failed(format!("timed out after {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| failed(e.to_string()))?;
        tokio::spawn(async move {
            // A broken connection shows up as the next try's error.
            let _ = conn.await;
        });
        Ok(sender)
    }
}
