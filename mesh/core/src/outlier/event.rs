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
