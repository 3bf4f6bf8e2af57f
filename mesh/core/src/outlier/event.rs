//! What outlier detection did and why: the events it returns, for traces, the event log
//! and the UI.

use std::time::Duration;

use crate::{EndpointId, Time};

/// Why an endpoint was (or would have been) ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EjectionReason {
    /// `count` consecutive 5xx (including local-origin failures unless split).
    Consecutive5xx { count: u32 },
    /// `count` consecutive 502/503/504.
    ConsecutiveGatewayErrors { count: u32 },
    /// `count` consecutive connect failures, resets or timeouts (split mode only).
    ConsecutiveLocalOriginFailures { count: u32 },
}

/// The panic-threshold arithmetic, shown whole so users see why traffic still flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PanicState {
    /// Endpoints not ejected.
    pub healthy: u32,
    /// All endpoints.
    pub total: u32,
    /// `100 × healthy / total` (rounded down; 0 for an empty cluster).
    pub healthy_percent: u32,
    /// The configured threshold (`minHealthPercent`).
    pub min_health_percent: u32,
    /// `healthy_percent < min_health_percent`: the load balancer spreads traffic over
    /// all endpoints, ejected or not.
    pub in_panic: bool,
}

/// Something outlier detection did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum OutlierEvent {
    /// `endpoint` is ejected: load balancers skip it until a sweep at or after
    /// `at + ejection_time` returns it.
    Ejected {
        endpoint: EndpointId,
        reason: EjectionReason,
        #[serde(rename = "ejection_time_ns", serialize_with = "super::ser_ns")]
        ejection_time: Duration,
        /// Ejections of this endpoint so far, this one included.
        times_ejected: u32,
        /// Ejected endpoints after this one, and the cluster size.
        ejected: u32,
        total: u32,
        #[serde(rename = "at_ns")]
        at: Time,
    },
    /// `endpoint` met an ejection threshold but stays: ejecting it would take the
    /// ejected share past `max_ejection_percent` (Envoy's `ejections_overflow`).
    EjectionSuppressed {
        endpoint: EndpointId,
        reason: EjectionReason,
        ejected: u32,
        total: u32,
        max_ejection_percent: u32,
        #[serde(rename = "at_ns")]
        at: Time,
    },
    /// `endpoint` is back in the load-balancing set after a sweep.
    Unejected {
        endpoint: EndpointId,
        #[serde(rename = "ejected_for_ns", serialize_with = "super::ser_ns")]
        ejected_for: Duration,
        #[serde(rename = "at_ns")]
        at: Time,
    },
    /// Healthy endpoints fell below `min_health_percent`: traffic now goes to all
    /// endpoints, ejected ones included.
    PanicModeEntered {
        #[serde(flatten)]
        state: PanicState,
        #[serde(rename = "at_ns")]
        at: Time,
    },
    /// Healthy endpoints are back at or above `min_health_percent`: ejections apply
    /// again.
    PanicModeExited {
        #[serde(flatten)]
        state: PanicState,
        #[serde(rename = "at_ns")]
        at: Time,
    },
}

impl std::fmt::Display for EjectionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EjectionReason::Consecutive5xx { count } => write!(f, "{count} consecutive 5xx"),
            EjectionReason::ConsecutiveGatewayErrors { count } => {
                write!(f, "{count} consecutive gateway errors")
            }
            EjectionReason::ConsecutiveLocalOriginFailures { count } => {
                write!(f, "{count} consecutive local-origin failures")
            }
        }
    }
}

impl OutlierEvent {
    /// The event-log kind (`ejection`, `ejection_suppressed`, `unejection`,
    /// `outlier_panic`) and a one-line description for cluster `host`, naming each
    /// endpoint with `name`. Both drivers log outlier events with it, so the simulator's
    /// and the real sidecar's event logs read the same.
    pub fn describe(
        &self,
        host: &str,
        name: impl Fn(EndpointId) -> String,
    ) -> (&'static str, String) {
        match self {
            OutlierEvent::Ejected {
                endpoint,
                reason,
                ejection_time,
                times_ejected,
                ejected,
                total,
                ..
            } => (
                "ejection",
                format!(
                    "{host}: {} ejected after {reason} for {} ms (ejection #{times_ejected}; {ejected}/{total} ejected)",
                    name(*endpoint),
                    ejection_time.as_millis()
                ),
            ),
            OutlierEvent::EjectionSuppressed {
                endpoint,
                reason,
                max_ejection_percent,
                ..
            } => (
                "ejection_suppressed",
                format!(
                    "{host}: {} not ejected after {reason}: maxEjectionPercent {max_ejection_percent}% reached",
                    name(*endpoint)
                ),
            ),
            OutlierEvent::Unejected {
                endpoint,
                ejected_for,
                ..
            } => (
                "unejection",
                format!(
                    "{host}: {} back after {} ms",
                    name(*endpoint),
                    ejected_for.as_millis()
                ),
            ),
            other => (
                "outlier_panic",
                format!(
                    "{host}: {}",
                    serde_json::to_string(other).unwrap_or_default()
                ),
            ),
        }
    }

    /// The endpoint the event is about (none for panic-mode changes).
    pub fn endpoint(&self) -> Option<EndpointId> {
        match self {
            OutlierEvent::Ejected { endpoint, .. }
            | OutlierEvent::EjectionSuppressed { endpoint, .. }
            | OutlierEvent::Unejected { endpoint, .. } => Some(*endpoint),
            _ => None,
        }
    }
}
