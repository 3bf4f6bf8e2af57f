//! Outlier detection (passive health checking) with Envoy's semantics, as Istio's
//! DestinationRule `outlierDetection` configures it.
//!
//! * Consecutive-error detectors (`consecutive5xxErrors`, `consecutiveGatewayErrors`,
//!   local-origin failures) eject an endpoint *at the moment* of the N-th error.
//! * An ejection lasts `baseEjectionTime × backoff`, capped at 300 s; the backoff grows
//!   by one per ejection and decays by one per sweep while the endpoint is healthy.
//!   Endpoints return only at a sweep (every `interval`), so an ejection lasts up to one
//!   interval longer than its ejection time.
//! * `maxEjectionPercent` caps the ejected share, counting the endpoint about to be
//!   ejected (Envoy ≥ 1.27). A refused ejection is reported as
//!   [`OutlierEvent::EjectionSuppressed`].
//! * The panic threshold (`minHealthPercent`): when fewer endpoints than that are
//!   healthy, Envoy load-balances across *all* endpoints — which is why "everything is
//!   ejected but traffic still flows". Transitions are reported as
//!   [`OutlierEvent::PanicModeEntered`] / [`OutlierEvent::PanicModeExited`], and
//!   [`OutlierDetector::panic_state`] shows the arithmetic.
//!
//! Not modelled: Envoy's success-rate and failure-percentage detectors (Istio exposes
//! neither).
//!
//! Driving it: [`OutlierDetector::on_response`] after every request to the cluster;
//! a timer at [`OutlierDetector::poll_timeout`] calling
//! [`OutlierDetector::handle_timeout`]; the load balancer asks
//! [`OutlierDetector::is_ejected`].

pub mod detector;
pub mod event;
pub mod policy;

pub use detector::{Outcome, OutlierDetector, OutlierStats};
pub use event::{EjectionReason, OutlierEvent, PanicState};
pub use policy::OutlierDetectionPolicy;

use std::time::Duration;

/// Serializes a duration as integer nanoseconds (fields are renamed `*_ns`).
fn ser_ns<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
