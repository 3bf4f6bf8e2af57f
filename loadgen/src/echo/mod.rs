//! The echo server behind `meshrig echo`: the test backend that load runs and
//! scenarios point at.
//!
//! It answers every path by echoing the request — body, and the request headers
//! reflected back as response headers (except hop-by-hop headers, `content-length`,
//! `host` and `transfer-encoding`) — shaped by Fortio-compatible query parameters
//! (`delay`, `status`, `size`, `header`, `close`; see [`params`]). Three paths are
//! reserved:
//!
//! * `/healthz`: 200 `ok`.
//! * `/debug`: a plain-text dump of the request (method, URI, version, peer address,
//!   headers, body).
//! * `/stats`: JSON counters, `{"requests_total":…,"in_flight":…,"max_in_flight":…,
//!   "connections_total":…}` ([`EchoStats`]). Requests to the reserved paths, and
//!   connections that carried nothing else, are not counted, so polling `/stats` or
//!   `/healthz` does not disturb what it measures.
//!
//! The request body is read whole (up to [`EchoConfig::max_size`], else 413) before
//! it is sent back, rather than streamed: a client that writes its whole request
//! before reading would otherwise deadlock against a large echo.
//!
//! Randomness (weighted lists) comes from one [`rand::rngs::SmallRng`] per connection,
//! seeded from [`EchoConfig::seed`] plus the connection's index (see
//! [`EchoService::connection`]), so a seeded server given the same connections in the
//! same order answers the same way.
//!
//! The pieces:
//! * [`EchoService`]: the handler, usable without a socket (tests, benches).
//! * [`serve`] / [`serve_service`]: HTTP/1.1 and h2c prior knowledge on one plaintext
//!   port, or TLS with ALPN `h2` / `http/1.1`; graceful shutdown.
//! * [`tls_server_config`]: a rustls server config from PEM files (ring provider).

mod body;
mod handler;
mod param_error;
pub mod params;
mod server;

use std::time::Duration;

pub use body::EchoBody;
pub use handler::{ConnectionState, DELAY_CAPPED_HEADER, EchoService, SERVER_HEADER};
pub use params::ParamError;
pub use server::{ServeSummary, TlsConfigError, serve, serve_service, tls_server_config};

/// The TLS configuration [`serve`] takes, re-exported so callers need no direct
/// `rustls` dependency to name it.
pub use rustls::ServerConfig as TlsServerConfig;

/// How an echo server behaves. Every field has a documented default
/// ([`EchoConfig::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    /// Sent as `x-meshrig-server: NAME` on every response, so a client can tell
    /// backends apart (`meshrig load --group-by-header x-meshrig-server`). Must be a
    /// valid header value. Default: `None` (no header).
    pub name: Option<String>,
    /// The longest delay `delay=` may ask for. A longer one is capped to this, not
    /// refused, and the response carries `x-meshrig-delay-capped: true`. Default:
    /// 1.5 s (Fortio's default).
    pub max_delay: Duration,
    /// The largest body, in bytes: `size=` above it is a 400, a request body above it
    /// a 413. Bounds the memory one request can hold. Default: 10 MiB.
    pub max_size: u64,
    /// Seed of the per-connection random number generators (the k-th connection to
    /// carry an echo request uses `seed + k`). Default: `None`, a seed drawn from OS entropy at start-up.
    pub seed: Option<u64>,
    /// How long shutdown waits for in-flight requests before closing their
    /// connections anyway. Default: 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            name: None,
            max_delay: Duration::from_millis(1500),
            max_size: 10 << 20,
            seed: None,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// An [`EchoConfig`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EchoConfigError {
    /// The name cannot be sent as a header value.
    #[error(
        "name '{name}' cannot be sent as the x-meshrig-server header (expected visible characters and spaces, no control characters)"
    )]
    Name { name: String },
}

/// The counters behind `/stats`. Only echo requests (not `/healthz`, `/debug`,
/// `/stats`) are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EchoStats {
    /// Echo requests received, including those answered 400.
    pub requests_total: u64,
    /// Echo requests received whose response body has not been fully sent yet.
    pub in_flight: u64,
    /// The highest `in_flight` seen.
    pub max_in_flight: u64,
    /// Connections that carried at least one echo request.
    pub connections_total: u64,
}

impl EchoStats {
    /// The `/stats` body: one line of JSON with the four counters.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"requests_total\":{},\"in_flight\":{},\"max_in_flight\":{},\"connections_total\":{}}}\n",
            self.requests_total, self.in_flight, self.max_in_flight, self.connections_total
        )
    }
}
