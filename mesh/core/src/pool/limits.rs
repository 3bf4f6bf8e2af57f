//! Istio's DestinationRule `trafficPolicy.connectionPool`, normalized, and what
//! overflowing it looks like.

use std::fmt;

use crate::Time;
use crate::retry::RetryLimit;

/// Circuit-breaking limits of one cluster. [`Default`] is what Istio programs when the
/// DestinationRule sets nothing: every limit 2^32 − 1 (unlimited), not Envoy's own
/// defaults ([`ConnectionPoolLimits::envoy_defaults`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ConnectionPoolLimits {
    /// Connections to all endpoints of the cluster (Istio `tcp.maxConnections`). Past
    /// it, HTTP requests wait for a busy connection; TCP connections are refused.
    /// Default is 2^32 − 1, as Istio (Envoy: 1024).
    pub max_connections: u32,
    /// Requests waiting for a connection (Istio `http.http1MaxPendingRequests`).
    /// Default is 2^32 − 1, as Istio (Envoy: 1024).
    pub max_pending_requests: u32,
    /// Requests in flight to the cluster (Istio `http.http2MaxRequests`; despite the
    /// name it bounds HTTP/1 too). Default is 2^32 − 1, as Istio (Envoy: 1024).
    pub max_requests: u32,
    /// Requests per connection before it is closed (Istio
    /// `http.maxRequestsPerConnection`); 0 is unlimited. Default is 0, as Istio and
    /// Envoy.
    pub max_requests_per_connection: u32,
    /// What bounds concurrent retries: `http.maxRetries`, replaced by
    /// `trafficPolicy.retryBudget` when set. Default is `MaxRetries(2^32 − 1)`, as Istio
    /// (Envoy: 3).
    pub retry_limit: RetryLimit,
}

impl Default for ConnectionPoolLimits {
    fn default() -> Self {
        ConnectionPoolLimits {
            max_connections: u32::MAX,
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            max_requests_per_connection: 0,
            retry_limit: RetryLimit::MaxRetries(u32::MAX),
        }
    }
}

impl ConnectionPoolLimits {
    /// Envoy's own circuit-breaker defaults (what a cluster without Istio gets): 1024
    /// connections, pending and requests, 3 retries.
    pub fn envoy_defaults() -> Self {
        ConnectionPoolLimits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_requests_per_connection: 0,
            retry_limit: RetryLimit::MaxRetries(3),
        }
    }
}

/// The limit a refused request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowReason {
    /// `http1MaxPendingRequests`: too many requests waiting for a connection.
    MaxPendingRequests,
    /// `http2MaxRequests`: too many requests in flight.
    MaxRequests,
    /// `maxConnections`, for TCP: too many connections.
    MaxConnections,
}

impl fmt::Display for OverflowReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverflowReason::MaxPendingRequests => "max_pending_requests",
            OverflowReason::MaxRequests => "max_requests",
            OverflowReason::MaxConnections => "max_connections",
        })
    }
}

/// A request refused by the circuit breaker. Fails fast: the caller gets a 503 with
/// Envoy's response flag `UO` (upstream overflow). Retry overflow is different: see
/// [`RetryOverflow`](crate::retry::RetryOverflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("upstream overflow: {reason} limit of {limit} reached (503, response flag UO)")]
pub struct Overflow {
    pub reason: OverflowReason,
    pub limit: u32,
    #[serde(rename = "at_ns")]
    pub at: Time,
}

impl Overflow {
    /// The status the caller gets.
    pub const STATUS: u16 = 503;
    /// Envoy's access-log response flag.
    pub const RESPONSE_FLAG: &'static str = "UO";
}
