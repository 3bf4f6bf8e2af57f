//! Security policy: who a workload is, how it talks TLS, and who may call it.
//!
//! * [`spiffe`] — [`SpiffeId`]: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`, parsed and
//!   validated per the SPIFFE spec.
//! * [`pattern`] — Istio's value matching (`prefix*`, `*suffix`, `*`, URI templates,
//!   IP blocks).
//! * [`peer_authn`] — PeerAuthentication: the inbound mTLS mode of a workload port
//!   (mesh → namespace → workload → port).
//! * [`client_tls`] — DestinationRule client TLS modes and Istio's auto mTLS; what a
//!   server makes of each.
//! * [`authz`] — AuthorizationPolicy evaluation (CUSTOM, DENY, ALLOW, AUDIT).
//!
//! Everything here is a pure function of its inputs, and every decision comes with a
//! trace (`serde::Serialize`, snake_case names) saying which policy decided and why.
//! The policy types are mesh-core's own, normalized from the Istio resources by the
//! config layer; this module does not read YAML.

pub mod authz;
pub mod client_tls;
pub mod pattern;
pub mod peer_authn;
pub mod spiffe;

pub use authz::{AuthorizationPolicy, AuthzDecision, RequestAttributes, Verdict, evaluate};
pub use client_tls::{ClientTlsDecision, ClientTlsMode, decide_client_tls, handshake_outcome};
pub use peer_authn::{MtlsMode, MtlsResolution, PeerAuthentication, resolve_mtls_mode};
pub use spiffe::{SpiffeId, SpiffeIdError};

/// Names a policy in traces: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl PolicyRef {
    /// The reference to the policy `name` in `namespace`.
    pub fn of(namespace: &str, name: &str) -> Self {
        PolicyRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
