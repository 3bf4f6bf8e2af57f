//! The per-request retry state machine.
//!
//! One [`RetryState`] per downstream request. The driver's loop:
//!
//! 1. [`RetryState::start`] when the route is decided.
//! 2. Pick an endpoint (excluding [`RetryState::excluded_endpoints`]), acquire a pool
//!    permit, then [`RetryState::on_attempt_start`] as the try is sent.
//! 3. Arm a timer for [`RetryState::poll_timeout`]; when it fires call
//!    [`RetryState::handle_timeout`].
//! 4. When the try ends call [`RetryState::on_attempt_result`]. On
//!    [`RetryDecision::Retry`] wait until `retry_at` and go to 2; otherwise the request
//!    is over: answer the caller.
//!
//! The retry budget slot taken for a retry is released when that retry's result
//! arrives, when the route timeout fires, or on [`RetryState::cancel`].

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;

use super::backoff::Backoff;
use super::budget::{RetryBudget, RetryOverflow};
use super::policy::{AttemptResult, RetryOn, RetryPolicy, RetryPolicySource};
use crate::{EndpointId, Time};

/// Why a try is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetryReason {
    /// The policy condition that matched.
    pub condition: RetryOn,
    /// What happened to the try.
    pub result: AttemptResult,
    /// Whether the policy is Istio's silent default.
    pub policy_source: RetryPolicySource,
}

/// Why the request stops being tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GiveUpReason {
    /// The try failed retriably but `attempts` retries were already made.
    AttemptsExhausted { retries: u32 },
    /// The cluster's retries are at their limit (`maxRetries` or the retry budget). The
    /// caller gets the last try's response, not a 503.
    BudgetExhausted(RetryOverflow),
    /// The route timeout bounding all tries expired (Envoy answers 504, flag `UT`).
    Timeout {
        #[serde(rename = "route_timeout_ns", serialize_with = "super::ser_ns")]
        route_timeout: Duration,
    },
    /// The try failed, but not in a way the policy retries.
    NotRetriable { result: AttemptResult },
}

/// What to do after a try (or a timeout).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum RetryDecision {
    /// The try succeeded: its response goes to the caller.
    Complete { attempts: u32 },
    /// Try again: wait `backoff`, pick an endpoint outside `endpoints_excluded`, and
    /// start try number `attempt`.
    Retry {
        attempt: u32,
        #[serde(rename = "backoff_ns", serialize_with = "super::ser_ns")]
        backoff: Duration,
        #[serde(rename = "retry_at_ns")]
        retry_at: Time,
        reason: RetryReason,
        /// Endpoints already tried, to avoid (empty when the policy keeps retries on the
        /// same endpoint, as with consistent hashing).
        endpoints_excluded: Vec<EndpointId>,
    },
    /// Stop: the last try's outcome (or a timeout) goes to the caller.
    GiveUp { attempts: u32, reason: GiveUpReason },
}

impl RetryDecision {
    /// Whether the request is over.
    pub fn is_final(&self) -> bool {
        !matches!(self, RetryDecision::Retry { .. })
    }
}

/// A try the state machine has accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AttemptStart {
    /// 1 for the first try, 2 for the first retry...
    pub attempt: u32,
    pub endpoint: EndpointId,
    /// When this try times out (per-try timeout or route timeout, whichever is first).
    #[serde(rename = "deadline_ns")]
    pub deadline: Option<Time>,
}

/// A driver called the state machine out of order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetryStateError {
    #[error("a try is already in flight")]
    AttemptInFlight,
    #[error("the request is over; no more tries")]
    Finished,
    #[error("no retry was granted: try {attempt} would exceed attempts + 1")]
    NoRetryGranted { attempt: u32 },
    #[error("no try is in flight")]
    NoAttemptInFlight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first try, or for a granted retry.
    Ready,
    InFlight {
        deadline: Option<Time>,
    },
    Done,
}

/// The retry state of one request.
#[derive(Debug, Clone)]
pub struct RetryState {
    policy: RetryPolicy,
    deadline: Option<Time>,
    route_timeout: Option<Duration>,
    backoff: Backoff,
    /// Tries started.
    attempts: u32,
    /// Tries allowed so far (1, then +1 per granted retry).
    granted: u32,
    phase: Phase,
    tried: BTreeSet<EndpointId>,
    holding_retry: bool,
}

// === impl RetryState ===

impl RetryState {
    /// Call when the route is decided, before the first try. `route_timeout` is the
    /// route's overall timeout (Istio `timeout`; none by default), bounding every try
    /// and backoff.
    pub fn start(policy: RetryPolicy, now: Time, route_timeout: Option<Duration>) -> Self {
        let backoff = Backoff::new(policy.backoff_base, policy.backoff_max);
        RetryState {
            policy,
            deadline: route_timeout.map(|t| now + t),
            route_timeout,
            backoff,
            attempts: 0,
            granted: 1,
            phase: Phase::Ready,
            tried: BTreeSet::new(),
            holding_retry: false,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Tries started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether the request is over.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Endpoints the next pick should avoid (Envoy's `previous_hosts` predicate).
    /// Empty when the policy does not avoid previous endpoints.
    pub fn excluded_endpoints(&self) -> &BTreeSet<EndpointId> {
        static NONE: BTreeSet<EndpointId> = BTreeSet::new();
        if self.policy.avoid_previous_endpoints {
            &self.tried
        } else {
            &NONE
        }
    }

    /// Call as a try is sent to `endpoint` (the first try, or after a
    /// [`RetryDecision::Retry`]'s backoff).
    pub fn on_attempt_start(
        &mut self,
        now: Time,
        endpoint: EndpointId,
    ) -> Result<AttemptStart, RetryStateError> {
        match self.phase {
            Phase::InFlight { .. } => return Err(RetryStateError::AttemptInFlight),
            Phase::Done => return Err(RetryStateError::Finished),
            Phase::Ready => {}
        }
        if self.attempts >= self.granted {
            return Err(RetryStateError::NoRetryGranted {
                attempt: self.attempts + 1,
            });
        }
        self.attempts += 1;
        self.tried.insert(endpoint);
        let per_try = self.policy.per_try_timeout.map(|t| now + t);
        let deadline = match (per_try, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.phase = Phase::InFlight { deadline };
        Ok(AttemptStart {
            attempt: self.attempts,
            endpoint,
            deadline,
        })
    }

    /// The next time [`RetryState::handle_timeout`] must be called: the in-flight try's
    /// deadline, or the route deadline while waiting. `None` when nothing can time out.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.phase {
            Phase::InFlight { deadline } => deadline,
            Phase::Ready => self.deadline,
            Phase::Done => None,
        }
    }

    /// Call when the timer from [`RetryState::poll_timeout`] fires. A route timeout
    /// ends the request (cancel the try in flight); a per-try timeout is handled as the
    /// try's result ([`AttemptResult::PerTryTimeout`]). `None` if nothing expired.
    pub fn handle_timeout(
        &mut self,
        now: Time,
        budget: &mut RetryBudget,
        rng: &mut impl Rng,
    ) -> Option<RetryDecision> {
        if self.phase == Phase::Done {
            return None;
        }
        if let Some(decision) = self.route_timeout_expired(now, budget) {
            return Some(decision);
        }
        match self.phase {
            Phase::InFlight { deadline: Some(d) } if now >= d => self
                .on_attempt_result(now, AttemptResult::PerTryTimeout, budget, rng)
                .ok(),
            _ => None,
        }
    }

    /// Call when the in-flight try ends with `result`. Decides, takes a retry slot from
    /// `budget` for a retry, and draws the backoff from `rng`.
    pub fn on_attempt_result(
        &mut self,
        now: Time,
        result: AttemptResult,
        budget: &mut RetryBudget,
        rng: &mut impl Rng,
    ) -> Result<RetryDecision, RetryStateError> {
        if !matches!(self.phase, Phase::InFlight { .. }) {
            return Err(RetryStateError::NoAttemptInFlight);
        }
        self.release(budget);
        self.phase = Phase::Done;
        let attempts = self.attempts;
        let Some(condition) = self.policy.retriable_by(&result) else {
            return Ok(if result.is_failure() {
                RetryDecision::GiveUp {
                    attempts,
                    reason: GiveUpReason::NotRetriable { result },
                }
            } else {
                RetryDecision::Complete { attempts }
            });
        };
        if attempts > self.policy.attempts {
            let reason = GiveUpReason::AttemptsExhausted {
                retries: self.policy.attempts,
            };
            return Ok(RetryDecision::GiveUp { attempts, reason });
        }
        if let Some(decision) = self.route_timeout_expired(now, budget) {
            return Ok(decision);
        }
        if let Err(overflow) = budget.try_acquire_retry() {
            let reason = GiveUpReason::BudgetExhausted(overflow);
            return Ok(RetryDecision::GiveUp { attempts, reason });
        }
        self.holding_retry = true;
        self.granted += 1;
        self.phase = Phase::Ready;
        let backoff = self.backoff.next_backoff(rng);
        Ok(RetryDecision::Retry {
            attempt: attempts + 1,
            backoff,
            retry_at: now + backoff,
            reason: RetryReason {
                condition,
                result,
                policy_source: self.policy.source,
            },
            endpoints_excluded: self.excluded_endpoints().iter().copied().collect(),
        })
    }

    /// Call when the request is abandoned (the caller went away): releases any retry
    /// slot. The state machine accepts nothing afterwards.
    pub fn cancel(&mut self, budget: &mut RetryBudget) {
        self.release(budget);
        self.phase = Phase::Done;
    }

    fn route_timeout_expired(
        &mut self,
        now: Time,
        budget: &mut RetryBudget,
    ) -> Option<RetryDecision> {
        let (deadline, route_timeout) = (self.deadline?, self.route_timeout?);
        if now < deadline {
            return None;
        }
        self.release(budget);
        self.phase = Phase::Done;
        Some(RetryDecision::GiveUp {
            attempts: self.attempts,
            reason: GiveUpReason::Timeout { route_timeout },
        })
    }

    fn release(&mut self, budget: &mut RetryBudget) {
        if std::mem::take(&mut self.holding_retry) {
            budget.release_retry();
        }
    }
}
