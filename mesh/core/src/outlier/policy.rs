//! Istio's DestinationRule `trafficPolicy.outlierDetection`, normalized.

use std::time::Duration;

/// When and for how long endpoints are ejected. [`Default`] is exactly what Istio
/// programs for an `outlierDetection: {}` block (Envoy's defaults where Istio sets
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutlierDetectionPolicy {
    /// Eject an endpoint after this many consecutive 5xx responses (Istio
    /// `consecutive5xxErrors`; local-origin failures count too unless
    /// `split_external_local_origin_errors`). `None` disables it (Istio's `0`). Default
    /// is `Some(5)`, as Istio and Envoy.
    pub consecutive_5xx: Option<u32>,
    /// Eject after this many consecutive 502/503/504 responses (Istio
    /// `consecutiveGatewayErrors`). Default is `None` (disabled), as Istio.
    pub consecutive_gateway_errors: Option<u32>,
    /// Count connect failures, resets and timeouts separately from HTTP statuses
    /// (Istio `splitExternalLocalOriginErrors`). Default is `false`: they count as
    /// 503/504, as Envoy.
    pub split_external_local_origin_errors: bool,
    /// With `split_external_local_origin_errors`, eject after this many consecutive
    /// local-origin failures (Istio `consecutiveLocalOriginFailures`). Default is
    /// `Some(5)`, as Istio and Envoy.
    pub consecutive_local_origin_failures: Option<u32>,
    /// Time between ejection sweeps, when ejected endpoints come back (Istio
    /// `interval`). Default is 10s, as Istio and Envoy.
    #[serde(rename = "interval_ns", serialize_with = "super::ser_ns")]
    pub interval: Duration,
    /// Minimum ejection time; the real time is `base_ejection_time × times ejected`
    /// (decaying while healthy), capped at `max_ejection_time` (Istio
    /// `baseEjectionTime`). Default is 30s, as Istio and Envoy.
    #[serde(rename = "base_ejection_time_ns", serialize_with = "super::ser_ns")]
    pub base_ejection_time: Duration,
    /// Cap on one ejection's time. Istio cannot set it. Default is 300s, as Envoy.
    #[serde(rename = "max_ejection_time_ns", serialize_with = "super::ser_ns")]
    pub max_ejection_time: Duration,
    /// At most this share of the cluster's endpoints may be ejected at once, *counting
    /// the one about to be* (Envoy ≥ 1.27: with 3 endpoints and 10% none is ejected).
    /// Istio `maxEjectionPercent`. Default is 10, as Istio and Envoy.
    pub max_ejection_percent: u32,
    /// Eject one endpoint even when `max_ejection_percent` would forbid it, when none is
    /// ejected (Envoy `always_eject_one_host`; Envoy before 1.27 always did). Istio
    /// cannot set it. Default is `false`, as Envoy.
    pub always_eject_one_host: bool,
    /// The panic threshold (Istio `minHealthPercent`, Envoy
    /// `healthy_panic_threshold`): below this share of healthy endpoints, the load
    /// balancer ignores ejections and spreads traffic over *all* endpoints. Default is
    /// 0 (panic mode never engages), as Istio sets it whenever outlier detection is
    /// configured; Envoy's own default is 50.
    pub min_health_percent: u32,
}

impl Default for OutlierDetectionPolicy {
    fn default() -> Self {
        OutlierDetectionPolicy {
            consecutive_5xx: Some(5),
            consecutive_gateway_errors: None,
            split_external_local_origin_errors: false,
            consecutive_local_origin_failures: Some(5),
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            always_eject_one_host: false,
            min_health_percent: 0,
        }
    }
}
