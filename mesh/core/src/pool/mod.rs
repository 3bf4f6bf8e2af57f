//! Connection-pool limits (circuit breaking), as Istio's DestinationRule
//! `connectionPool` configures Envoy's circuit breakers.
//!
//! One [`ConnectionPool`] per cluster. For each try the driver calls
//! [`ConnectionPool::try_acquire_request`] with the endpoint the load balancer picked:
//!
//! * a free connection to that endpoint → dispatched now, unless `http2MaxRequests`
//!   requests are already in flight (→ [`Overflow`]);
//! * otherwise the request waits (pending) unless `http1MaxPendingRequests` are already
//!   waiting (→ [`Overflow`]); a connection is opened for it unless `maxConnections` is
//!   reached, in which case it waits for a busy one (Envoy's `upstream_cx_overflow`,
//!   not an error for HTTP; for [`Protocol::Tcp`] it is refused);
//! * an [`Overflow`] fails fast: 503 with response flag `UO` and the limit that was hit.
//!
//! The driver then drains [`ConnectionPool::poll_action`] (open, dispatch, close, fail)
//! and reports back with `on_connected`, `on_connect_failed`, `on_connection_closed`
//! and `on_request_end`. Connections close after `maxRequestsPerConnection` requests.
//!
//! The pool owns the cluster's [`RetryBudget`](crate::retry::RetryBudget)
//! (`maxRetries` or `retryBudget`) and keeps its active-request count.
//!
//! Not modelled: idle timeouts, connect timeouts (the driver's timers), per-priority
//! thresholds, HTTP/2 `max_concurrent_streams` (unlimited, as Envoy's default).

pub mod connection_pool;
pub mod limits;

pub use connection_pool::{
    CloseReason, ConnectionId, ConnectionPool, Disposition, FailReason, PendingCause, Permit,
    PoolAction, PoolStats, Protocol, RequestId,
};
pub use limits::{ConnectionPoolLimits, Overflow, OverflowReason};

#[cfg(test)]
mod tests;
