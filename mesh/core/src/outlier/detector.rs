//! The outlier detector of one cluster: Envoy's `DetectorImpl`, consecutive-error
//! detectors only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::event::{EjectionReason, OutlierEvent, PanicState};
use super::policy::OutlierDetectionPolicy;
use crate::{EndpointId, Time};

/// How one request to an endpoint ended, as outlier detection classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// The endpoint answered with this status.
    Http { status: u16 },
    /// The connection could not be established. Counts as a 503 unless split.
    ConnectFailure,
    /// No answer in time. Counts as a 504 unless split.
    Timeout,
    /// The connection was reset before an answer. Counts as a 503 unless split.
    Reset,
}

impl Outcome {
    /// A successful answer.
    pub const SUCCESS: Outcome = Outcome::Http { status: 200 };

    /// The status Envoy maps the outcome to when local-origin errors are not split.
    pub fn as_status(self) -> u16 {
        match self {
            Outcome::Http { status } => status,
            Outcome::ConnectFailure | Outcome::Reset => 503,
            Outcome::Timeout => 504,
        }
    }

    fn is_local_origin(self) -> bool {
        !matches!(self, Outcome::Http { .. })
    }
}

#[derive(Debug, Clone, Default)]
struct EndpointState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    /// Set while ejected.
    ejected_at: Option<Time>,
    /// Envoy's `ejectTimeBackoff`: +1 per ejection, −1 per sweep while healthy.
    backoff: u32,
    times_ejected: u32,
}

/// Counters, as Envoy's `outlier_detection.*` stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutlierStats {
    pub ejections_enforced_total: u64,
    pub ejections_overflow: u64,
    pub unejections_total: u64,
}

/// Outlier detection for one cluster.
#[derive(Debug, Clone)]
pub struct OutlierDetector {
    policy: OutlierDetectionPolicy,
    endpoints: BTreeMap<EndpointId, EndpointState>,
    next_sweep: Time,
    in_panic: bool,
    stats: OutlierStats,
    /// Endpoints ejected now (kept with every change, so health queries are O(1)).
    ejected: u32,
}

// === impl OutlierDetector ===

impl OutlierDetector {
    /// A detector over `endpoints` with no history. The first sweep is at
    /// `now + interval`. A zero interval is taken as 1 ms (Istio's minimum).
    pub fn new(
        mut policy: OutlierDetectionPolicy,
        endpoints: impl IntoIterator<Item = EndpointId>,
        now: Time,
    ) -> Self {
        if policy.interval.is_zero() {
            policy.interval = Duration::from_millis(1);
        }
        let mut detector = OutlierDetector {
            next_sweep: now + policy.interval,
            policy,
            endpoints: endpoints
                .into_iter()
                .map(|id| (id, EndpointState::default()))
                .collect(),
            in_panic: false,
            stats: OutlierStats::default(),
            ejected: 0,
        };
        detector.in_panic = detector.panic_state().in_panic;
        detector
    }

    /// The policy in force.
    pub fn policy(&self) -> &OutlierDetectionPolicy {
        &self.policy
    }

    /// Counters so far.
    pub fn stats(&self) -> OutlierStats {
        self.stats
    }

    /// Call when the cluster's endpoints change (EDS update, scale up/down): new ones
    /// start clean, removed ones are forgotten (an ejected one frees its ejection).
    pub fn update_endpoints(
        &mut self,
        now: Time,
        endpoints: impl IntoIterator<Item = EndpointId>,
    ) -> Vec<OutlierEvent> {
        let wanted: BTreeSet<EndpointId> = endpoints.into_iter().collect();
        self.endpoints.retain(|id, _| wanted.contains(id));
        for id in wanted {
            self.endpoints.entry(id).or_default();
        }
        self.ejected = self
            .endpoints
            .values()
            .filter(|s| s.ejected_at.is_some())
            .count() as u32;
        let mut events = Vec::new();
        self.check_panic(now, &mut events);
        events
    }

    /// Call when a request to `endpoint` ends. On the N-th consecutive error the
    /// endpoint is ejected at once (as Envoy), unless `max_ejection_percent` forbids
    /// it. Returns what happened (usually nothing).
    pub fn on_response(
        &mut self,
        now: Time,
        endpoint: EndpointId,
        outcome: Outcome,
    ) -> Vec<OutlierEvent> {
        let mut events = Vec::new();
        let policy = &self.policy;
        let Some(state) = self.endpoints.get_mut(&endpoint) else {
            return events;
        };
        let mut triggered = Vec::new();
        if policy.split_external_local_origin_errors && outcome.is_local_origin() {
            state.consecutive_local += 1;
            if Some(state.consecutive_local) == policy.consecutive_local_origin_failures {
                let count = state.consecutive_local;
                triggered.push(EjectionReason::ConsecutiveLocalOriginFailures { count });
            }
        } else {
            if policy.split_external_local_origin_errors {
                // An answer from the endpoint: the connection works.
                state.consecutive_local = 0;
            }
            let status = outcome.as_status();
            if (500..600).contains(&status) {
                if matches!(status, 502..=504) {
                    state.consecutive_gateway += 1;
                    if Some(state.consecutive_gateway) == policy.consecutive_gateway_errors {
                        let count = state.consecutive_gateway;
                        triggered.push(EjectionReason::ConsecutiveGatewayErrors { count });
                    }
                } else {
                    state.consecutive_gateway = 0;
                }
                state.consecutive_5xx += 1;
                if Some(state.consecutive_5xx) == policy.consecutive_5xx {
                    let count = state.consecutive_5xx;
                    triggered.push(EjectionReason::Consecutive5xx { count });
                }
            } else {
                state.consecutive_5xx = 0;
                state.consecutive_gateway = 0;
            }
        }
        for reason in triggered {
            self.on_consecutive_errors(now, endpoint, reason, &mut events);
        }
        self.check_panic(now, &mut events);
        events
    }

    /// When [`OutlierDetector::handle_timeout`] must next be called: the next sweep.
    pub fn poll_timeout(&self) -> Option<Time> {
        Some(self.next_sweep)
    }

    /// Call when the timer from [`OutlierDetector::poll_timeout`] fires: runs the
    /// sweep if due, returning endpoints whose ejection time has passed (Envoy's
    /// interval timer), and re-arms it `interval` later.
    pub fn handle_timeout(&mut self, now: Time) -> Vec<OutlierEvent> {
        let mut events = Vec::new();
        if now < self.next_sweep {
            return events;
        }
        let (base, max) = (
            self.policy.base_ejection_time,
            self.policy.max_ejection_time,
        );
        for (&endpoint, state) in &mut self.endpoints {
            let Some(ejected_at) = state.ejected_at else {
                state.backoff = state.backoff.saturating_sub(1);
                continue;
            };
            if ejection_time(base, max, state.backoff) <= now - ejected_at {
                state.ejected_at = None;
                self.ejected -= 1;
                state.consecutive_5xx = 0;
                state.consecutive_gateway = 0;
                state.consecutive_local = 0;
                self.stats.unejections_total += 1;
                events.push(OutlierEvent::Unejected {
                    endpoint,
                    ejected_for: now - ejected_at,
                    at: now,
                });
            }
        }
        self.next_sweep = now + self.policy.interval;
        self.check_panic(now, &mut events);
        events
    }

    /// Whether `endpoint` is ejected now.
    pub fn is_ejected(&self, endpoint: EndpointId) -> bool {
        self.endpoints
            .get(&endpoint)
            .is_some_and(|s| s.ejected_at.is_some())
    }

    /// How many endpoints are ejected now.
    pub fn ejected_count(&self) -> u32 {
        self.ejected
    }

    /// The endpoints not ejected. Note: in panic mode the load balancer uses all
    /// endpoints anyway; see [`OutlierDetector::panic_state`].
    pub fn healthy_set(&self) -> BTreeSet<EndpointId> {
        self.endpoints
            .iter()
            .filter(|(_, s)| s.ejected_at.is_none())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The panic-threshold arithmetic now: when `in_panic`, Envoy load-balances over all
    /// endpoints, ejected or not.
    pub fn panic_state(&self) -> PanicState {
        let total = self.endpoints.len() as u32;
        let healthy = total - self.ejected_count();
        let healthy_percent = (healthy * 100).checked_div(total).unwrap_or(0);
        let min_health_percent = self.policy.min_health_percent;
        PanicState {
            healthy,
            total,
            healthy_percent,
            min_health_percent,
            in_panic: healthy_percent < min_health_percent,
        }
    }

    fn on_consecutive_errors(
        &mut self,
        now: Time,
        endpoint: EndpointId,
        reason: EjectionReason,
        events: &mut Vec<OutlierEvent>,
    ) {
        let total = self.endpoints.len() as u32;
        let ejected = self.ejected_count();
        let state = self.endpoints.get_mut(&endpoint).expect("caller checked");
        if state.ejected_at.is_some() {
            // Already out: Envoy ignores the notification (and keeps the counter).
            return;
        }
        // The counter restarts whether or not the ejection is allowed.
        match reason {
            EjectionReason::Consecutive5xx { .. } => state.consecutive_5xx = 0,
            EjectionReason::ConsecutiveGatewayErrors { .. } => state.consecutive_gateway = 0,
            EjectionReason::ConsecutiveLocalOriginFailures { .. } => state.consecutive_local = 0,
        }
        let max = u64::from(self.policy.max_ejection_percent.min(100));
        let allowed = 100 * u64::from(ejected + 1) <= max * u64::from(total)
            || (self.policy.always_eject_one_host && ejected == 0);
        if !allowed {
            self.stats.ejections_overflow += 1;
            events.push(OutlierEvent::EjectionSuppressed {
                endpoint,
                reason,
                ejected,
                total,
                max_ejection_percent: self.policy.max_ejection_percent,
                at: now,
            });
            return;
        }
        let (base, max_time) = (
            self.policy.base_ejection_time,
            self.policy.max_ejection_time,
        );
        // Envoy grows the backoff only while base × backoff < max + base.
        if base.saturating_mul(state.backoff) < max_time.saturating_add(base) {
            state.backoff += 1;
        }
        state.ejected_at = Some(now);
        self.ejected += 1;
        state.times_ejected += 1;
        self.stats.ejections_enforced_total += 1;
        events.push(OutlierEvent::Ejected {
            endpoint,
            reason,
            ejection_time: ejection_time(base, max_time, state.backoff),
            times_ejected: state.times_ejected,
            ejected: ejected + 1,
            total,
            at: now,
        });
    }

    fn check_panic(&mut self, now: Time, events: &mut Vec<OutlierEvent>) {
        let state = self.panic_state();
        if state.in_panic != self.in_panic {
            self.in_panic = state.in_panic;
            events.push(if state.in_panic {
                OutlierEvent::PanicModeEntered { state, at: now }
            } else {
                OutlierEvent::PanicModeExited { state, at: now }
            });
        }
    }
}

/// `min(base × backoff, max)`: how long an ejection lasts (at least; the return waits
/// for the next sweep).
fn ejection_time(base: Duration, max: Duration, backoff: u32) -> Duration {
    base.saturating_mul(backoff).min(max)
}
