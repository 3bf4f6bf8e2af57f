//! From a validated Istio configuration set to the structures the policy engine runs:
//! the route table, and (as the policy modules land) per-destination traffic policies
//! and security policies.
//!
//! Compilation is pure and deterministic: the same set gives the same tables. The
//! real control plane and the simulator's control plane both call it, so both push the
//! same view to their proxies.

pub mod routes;
pub mod security;
pub mod snapshot;
pub mod traffic;

pub use routes::route_table;
pub use security::{authorization_policies, peer_authentications};
pub use snapshot::{Instance, ProxyId, Registry, RegistryService, Snapshot, snapshot};
pub use traffic::{ClientTlsFiles, ClusterPolicy, cluster_policy};
