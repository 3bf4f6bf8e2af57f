//! `mesh-proxy` — the real-network sidecar: a tokio + hyper driver of mesh-core.
//!
//! The proxy holds no policy logic of its own. Every decision — which route, which
//! destination of a split, whether to inject a fault, which endpoint, whether to
//! retry and after what backoff, whether to eject an endpoint, whether a request is
//! authorized — is mesh-core's, driven with `now` from a monotonic clock
//! ([`clock::Clock`]) and a seeded [`rand::rngs::SmallRng`]. This crate only moves
//! bytes, keeps per-cluster state and counts.
//!
//! Listeners (each optional; downstream HTTP/1.1 and h2c, upstream as the downstream
//! spoke; inbound → app HTTP/1.1):
//! * **outbound** ([`outbound`]): the `Host` header names the destination service;
//!   routes with [`mesh_core::route::decide`], then runs the try loop (load balancer,
//!   outlier detector, retry state and budget) against pooled upstream connections.
//! * **inbound** ([`inbound`]): authorizes with [`mesh_core::security::evaluate`] over
//!   the snapshot's `inbound_authz`, then forwards to the local application.
//! * **admin** ([`admin`]): `/ready`, `/config_dump`, `/metrics` (Prometheus text).
//!
//! mTLS ([`tls`]): inbound per the port's PeerAuthentication mode, outbound per the
//! DestinationRule's TLS mode or auto mTLS, with SPIFFE peer validation; the
//! workload certificate comes from files or from the CA through the identity agent
//! ([`agent`], a driver of mesh-core's certificate lifecycle).
//!
//! Configuration is static (files read once) or streamed from a control plane
//! ([`mesh_control::client`]); [`Mesh::update`] swaps it without failing a request
//! in flight and keeps the state of clusters the change does not touch.
//!
//! What it is not (yet): no header operations or authority rewrites.

pub mod access_log;
pub mod admin;
pub mod agent;
pub mod body;
pub mod clock;
pub mod inbound;
pub mod mesh;
pub mod metrics;
pub mod mirror;
pub mod outbound;
pub mod pool;
pub mod registry;
pub mod server;
pub mod tls;
pub mod trace;
pub mod upstream;

pub use mesh::{Config, Mesh, UpdateStats};
pub use registry::{RegistryFile, RegistryFileError};
pub use server::{Listeners, Proxy};

/// Envoy-like response flags, in the `x-meshrig-flags` header of responses the proxy
/// answers itself (and of delayed ones) and in the `response_flags` metric label.
pub mod flags {
    /// No healthy upstream: every endpoint ejected, or none at all.
    pub const NO_HEALTHY_UPSTREAM: &str = "UH";
    /// Upstream connection failure (refused, reset before a response).
    pub const UPSTREAM_FAILURE: &str = "UF";
    /// Upstream retry limit exceeded: the last try's failure is returned.
    pub const RETRY_LIMIT_EXCEEDED: &str = "URX";
    /// Upstream overflow: the retry budget was exhausted.
    pub const UPSTREAM_OVERFLOW: &str = "UO";
    /// Upstream request timeout (route or per-try).
    pub const UPSTREAM_TIMEOUT: &str = "UT";
    /// The request was delayed by fault injection.
    pub const DELAY_INJECTED: &str = "DI";
    /// The request was aborted by fault injection.
    pub const FAULT_INJECTED: &str = "FI";
    /// No route: a VirtualService claims the host but no rule matched.
    pub const NO_ROUTE: &str = "NR";
    /// No cluster: the destination host is not a service this proxy knows.
    pub const NO_CLUSTER: &str = "NC";
    /// The header carrying the flags.
    pub const HEADER: &str = "x-meshrig-flags";
    /// On outbound responses that took more than one try: how many.
    pub const ATTEMPTS_HEADER: &str = "x-meshrig-attempts";
}
