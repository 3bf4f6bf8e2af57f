//! What a decision costs: the work descriptor the simulator charges to a node's CPU.
//!
//! Core state machines describe the work they did (what kind, how many bytes); the
//! simulator turns it into CPU time with a calibrated cost table, and the real driver
//! ignores it (or measures it, to calibrate that table).

/// The side of a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsRole {
    Client,
    Server,
}

/// The kind of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CostKind {
    /// Matching a request against the route table.
    RouteMatch,
    /// One load-balancer pick.
    LbPick,
    /// One retry decision.
    RetryDecision,
    /// One outlier-detection update (a response recorded, or a sweep).
    OutlierUpdate,
    /// One TLS handshake.
    TlsHandshake { role: TlsRole },
    /// Proxying one request (parse, forward, copy the body).
    ProxyRequest,
    /// Evaluating AuthorizationPolicies for one request.
    AuthzCheck,
    /// Admitting a request to a connection pool (circuit-breaker accounting).
    PoolAdmission,
}

/// The work one decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cost {
    pub kind: CostKind,
    /// Bytes handled (headers and body for a request; 0 for pure decisions).
    pub bytes: u64,
}

impl Cost {
    /// A cost of `kind` handling no bytes.
    pub const fn of(kind: CostKind) -> Self {
        Cost { kind, bytes: 0 }
    }

    /// A cost of `kind` handling `bytes`.
    pub const fn with_bytes(kind: CostKind, bytes: u64) -> Self {
        Cost { kind, bytes }
    }
}

// === Costed: every decision says what it cost ===

/// A decision that can say what it cost, so the simulator charges it to the deciding
/// node's CPU. Implemented by every decision type the policy modules return.
pub trait Costed {
    /// The work this decision represents.
    fn cost(&self) -> Cost;
}

impl Costed for crate::route::RouteDecision {
    fn cost(&self) -> Cost {
        self.cost
    }
}

impl Costed for crate::lb::Pick {
    fn cost(&self) -> Cost {
        Cost::of(CostKind::LbPick)
    }
}

impl Costed for crate::retry::RetryDecision {
    fn cost(&self) -> Cost {
        Cost::of(CostKind::RetryDecision)
    }
}

impl Costed for crate::outlier::OutlierEvent {
    fn cost(&self) -> Cost {
        Cost::of(CostKind::OutlierUpdate)
    }
}

impl Costed for crate::security::AuthzDecision {
    fn cost(&self) -> Cost {
        Cost::of(CostKind::AuthzCheck)
    }
}

impl Costed for crate::pool::Permit {
    fn cost(&self) -> Cost {
        Cost::of(CostKind::PoolAdmission)
    }
}

#[cfg(test)]
mod costed_tests {
    use super::*;

    #[test]
    fn kinds_serialize_with_stable_names() {
        let json = serde_json::to_string(&Cost::with_bytes(CostKind::RouteMatch, 42)).unwrap();
        assert_eq!(json, r#"{"kind":{"kind":"route_match"},"bytes":42}"#);
        let json = serde_json::to_string(&Cost::of(CostKind::AuthzCheck)).unwrap();
        assert!(json.contains("authz_check"), "{json}");
    }
}
