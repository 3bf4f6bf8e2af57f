//! [`CertLifecycle`]: the state machine of one workload certificate.

use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use super::config::{IdentityError, LifecycleConfig};
use super::events::{FailureCause, IdentityEvent, IgnoredAnswer, RequestReason};
use crate::Time;

/// The most transitions one `handle_timeout` call makes (renewal due → expired →
/// retry is the longest chain, 3); a bound so a bug cannot spin.
const MAX_STEPS_PER_CALL: usize = 8;

/// A certificate's validity window, on the CA's clock as written in the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IssuedCert {
    pub not_before: Time,
    pub not_after: Time,
}

/// Where a request attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum AttemptPhase {
    /// Sent; it fails by itself at `deadline` (the request timeout).
    InFlight { deadline: Time },
    /// Failed; the next attempt goes out at `retry_at`.
    BackingOff { retry_at: Time },
}

/// The current request attempt. `number` is 1-based within a streak of failures;
/// while backing off, it is the attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub number: u32,
    #[serde(flatten)]
    pub phase: AttemptPhase,
}

/// The lifecycle's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CertState {
    /// Never had a certificate; nothing sent yet.
    Unissued,
    /// No certificate yet; requesting one.
    Requesting { attempt: Attempt },
    /// A certificate is held; renewal is scheduled at `renew_at`.
    Valid { cert: IssuedCert, renew_at: Time },
    /// Renewing; the current certificate is still good until its `not_after`.
    Renewing { cert: IssuedCert, attempt: Attempt },
    /// The certificate lapsed before a new one arrived; still requesting.
    Expired { cert: IssuedCert, attempt: Attempt },
}

/// One workload certificate: when to request, renew, retry, and when it expires.
///
/// Sans-IO, in the quinn-proto style. The driver:
///
/// 1. asks [`poll_timeout`](Self::poll_timeout) when to wake up next;
/// 2. at that time calls [`handle_timeout`](Self::handle_timeout) and acts on the
///    events (a [`IdentityEvent::RequestCertificate`] means "send a CSR now");
/// 3. reports the CA's answer with [`on_issued`](Self::on_issued) or
///    [`on_request_failed`](Self::on_request_failed);
/// 4. asks [`is_usable`](Self::is_usable) before using the certificate for a handshake.
///
/// `now` is always the **workload's** clock: a simulator modelling clock skew passes
/// the skewed time, and `not_before`/`not_after` as written by the CA, so skew shows
/// up as not-yet-valid or expired-on-arrival certificates, as it would in real life.
#[derive(Debug, Clone)]
pub struct CertLifecycle {
    config: LifecycleConfig,
    state: CertState,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A uniform factor in `[1 − j, 1 + j]`; exactly 1 (and no RNG draw) when `j` is 0.
fn jitter_factor(j: f64, rng: &mut impl Rng) -> f64 {
    if j > 0.0 {
        rng.random_range((1.0 - j)..=(1.0 + j))
    } else {
        1.0
    }
}

// === impl CertLifecycle ===

impl CertLifecycle {
    /// A lifecycle in [`CertState::Unissued`]; fails if the config is invalid
    /// (every problem is listed).
    pub fn new(config: LifecycleConfig) -> Result<Self, IdentityError> {
        config.validate()?;
        Ok(CertLifecycle {
            config,
            state: CertState::Unissued,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> &CertState {
        &self.state
    }

    /// The certificate held, valid or not.
    pub fn certificate(&self) -> Option<IssuedCert> {
        match self.state {
            CertState::Unissued | CertState::Requesting { .. } => None,
            CertState::Valid { cert, .. }
            | CertState::Renewing { cert, .. }
            | CertState::Expired { cert, .. } => Some(cert),
        }
    }

    /// Whether the certificate can be used at `now` (workload clock):
    /// `not_before <= now < not_after`. Call it before each handshake.
    pub fn is_usable(&self, now: Time) -> bool {
        self.certificate()
            .is_some_and(|c| c.not_before <= now && now < c.not_after)
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called next. An
    /// unissued lifecycle wants to start at once and returns `Time::ZERO`. Call it
    /// after every method that changes the state.
    pub fn poll_timeout(&self) -> Option<Time> {
        let wake = |a: Attempt| match a.phase {
            AttemptPhase::InFlight { deadline } => deadline,
            AttemptPhase::BackingOff { retry_at } => retry_at,
        };
        Some(match self.state {
            CertState::Unissued => Time::ZERO,
            CertState::Requesting { attempt } | CertState::Expired { attempt, .. } => wake(attempt),
            CertState::Valid { renew_at, .. } => renew_at,
            CertState::Renewing { cert, attempt } => wake(attempt).min(cert.not_after),
        })
    }

    /// Advances to `now`: sends the first request, starts a renewal, notices an
    /// expiry or a request timeout, retries after a backoff. Call it when
    /// [`poll_timeout`](Self::poll_timeout) has passed; early calls do nothing.
    pub fn handle_timeout(&mut self, now: Time, rng: &mut impl Rng) -> Vec<IdentityEvent> {
        let mut events = Vec::new();
        for _ in 0..MAX_STEPS_PER_CALL {
            if !self.step(now, rng, &mut events) {
                break;
            }
        }
        events
    }

    /// The CA issued a certificate valid over `[not_before, not_after)`. Call it when
    /// the answer to a [`IdentityEvent::RequestCertificate`] arrives. Accepted while a
    /// request is outstanding or backing off (a late answer is still a certificate);
    /// ignored otherwise. A certificate that is malformed or already expired by the
    /// workload's clock counts as a failed attempt.
    pub fn on_issued(
        &mut self,
        now: Time,
        not_before: Time,
        not_after: Time,
        rng: &mut impl Rng,
    ) -> Vec<IdentityEvent> {
        let Some(attempt) = self.attempt() else {
            return vec![self.ignored(now, IgnoredAnswer::Issued)];
        };
        let cause = if not_after <= not_before {
            Some(FailureCause::InvalidCertificate {
                not_before,
                not_after,
            })
        } else if now >= not_after {
            Some(FailureCause::ExpiredOnArrival { not_after })
        } else {
            None
        };
        if let Some(cause) = cause {
            return match attempt.phase {
                AttemptPhase::InFlight { .. } => vec![self.fail(now, cause, rng)],
                AttemptPhase::BackingOff { .. } => vec![self.ignored(now, IgnoredAnswer::Issued)],
            };
        }

        let cfg = &self.config;
        let lifetime = not_after - not_before;
        // Renew strictly before expiry, whatever the float rounding.
        let latest_ok = Time(not_after.as_nanos() - 1);
        let point = |factor: f64| {
            (not_before + lifetime.mul_f64(cfg.renew_fraction * factor)).min(latest_ok)
        };
        let window_start = point(1.0 - cfg.jitter_fraction);
        let window_end = point(1.0 + cfg.jitter_fraction);
        let scheduled = point(jitter_factor(cfg.jitter_fraction, rng));
        let renew_at = scheduled.max(now);
        let cert = IssuedCert {
            not_before,
            not_after,
        };
        self.state = CertState::Valid { cert, renew_at };
        vec![IdentityEvent::Issued {
            at: now,
            not_before,
            not_after,
            renew_at,
            renew_window_start: window_start,
            renew_window_end: window_end,
            renew_at_clamped_to_now: scheduled < now,
            not_yet_valid: now < not_before,
        }]
    }

    /// The request failed (CA unreachable, refused, ...): back off exponentially.
    /// Call it when the driver learns the outstanding request failed; ignored when no
    /// request is in flight (e.g. it already timed out).
    pub fn on_request_failed(
        &mut self,
        now: Time,
        reason: impl Into<String>,
        rng: &mut impl Rng,
    ) -> Vec<IdentityEvent> {
        match self.attempt() {
            Some(Attempt {
                phase: AttemptPhase::InFlight { .. },
                ..
            }) => {
                let cause = FailureCause::CaError {
                    message: reason.into(),
                };
                vec![self.fail(now, cause, rng)]
            }
            _ => vec![self.ignored(now, IgnoredAnswer::Failed)],
        }
    }

    // --- internals ---

    fn attempt(&self) -> Option<Attempt> {
        match self.state {
            CertState::Requesting { attempt }
            | CertState::Renewing { attempt, .. }
            | CertState::Expired { attempt, .. } => Some(attempt),
            CertState::Unissued | CertState::Valid { .. } => None,
        }
    }

    fn set_attempt(&mut self, new: Attempt) {
        match &mut self.state {
            CertState::Requesting { attempt }
            | CertState::Renewing { attempt, .. }
            | CertState::Expired { attempt, .. } => *attempt = new,
            CertState::Unissued | CertState::Valid { .. } => {
                unreachable!("set_attempt without an attempt")
            }
        }
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            CertState::Unissued => "unissued",
            CertState::Requesting { .. } => "requesting",
            CertState::Valid { .. } => "valid",
            CertState::Renewing { .. } => "renewing",
            CertState::Expired { .. } => "expired",
        }
    }

    fn ignored(&self, now: Time, answer: IgnoredAnswer) -> IdentityEvent {
        IdentityEvent::AnswerIgnored {
            at: now,
            answer,
            state: self.state_name(),
        }
    }

    fn send(&self, now: Time, number: u32, reason: RequestReason) -> (Attempt, IdentityEvent) {
        let attempt = Attempt {
            number,
            phase: AttemptPhase::InFlight {
                deadline: now + self.config.request_timeout,
            },
        };
        let event = IdentityEvent::RequestCertificate {
            at: now,
            attempt: number,
            reason,
            ttl_requested_ns: nanos(self.config.ttl),
        };
        (attempt, event)
    }

    /// Fails the in-flight attempt and schedules the next one.
    fn fail(&mut self, now: Time, cause: FailureCause, rng: &mut impl Rng) -> IdentityEvent {
        let number = self.attempt().map_or(1, |a| a.number);
        let cfg = &self.config;
        let doublings = number.saturating_sub(1).min(30);
        let raw = cfg.backoff_base.checked_mul(1 << doublings);
        let capped = raw.is_none_or(|d| d >= cfg.backoff_max);
        let base_delay = raw.map_or(cfg.backoff_max, |d| d.min(cfg.backoff_max));
        let delay = base_delay
            .mul_f64(jitter_factor(cfg.backoff_jitter_fraction, rng))
            .min(cfg.backoff_max);
        let retry_at = now + delay;
        self.set_attempt(Attempt {
            number,
            phase: AttemptPhase::BackingOff { retry_at },
        });
        IdentityEvent::RequestFailed {
            at: now,
            attempt: number,
            cause,
            backoff_ns: nanos(delay),
            retry_at,
            backoff_capped: capped,
        }
    }

    /// One transition due at `now`, if any.
    fn step(&mut self, now: Time, rng: &mut impl Rng, events: &mut Vec<IdentityEvent>) -> bool {
        match self.state {
            CertState::Unissued => {
                let (attempt, event) = self.send(now, 1, RequestReason::Initial);
                self.state = CertState::Requesting { attempt };
                events.push(event);
            }
            CertState::Valid { cert, renew_at } if now >= renew_at => {
                let reason = RequestReason::RenewalDue {
                    renew_at,
                    not_after: cert.not_after,
                };
                let (attempt, event) = self.send(now, 1, reason);
                self.state = CertState::Renewing { cert, attempt };
                events.push(event);
            }
            CertState::Renewing { cert, attempt } if now >= cert.not_after => {
                self.state = CertState::Expired { cert, attempt };
                events.push(IdentityEvent::Expired {
                    at: now,
                    not_after: cert.not_after,
                });
            }
            CertState::Requesting { attempt }
            | CertState::Renewing { attempt, .. }
            | CertState::Expired { attempt, .. } => match attempt.phase {
                AttemptPhase::InFlight { deadline } if now >= deadline => {
                    let cause = FailureCause::TimedOut {
                        timeout_ns: nanos(self.config.request_timeout),
                    };
                    let event = self.fail(now, cause, rng);
                    events.push(event);
                }
                AttemptPhase::BackingOff { retry_at } if now >= retry_at => {
                    let reason = RequestReason::Retry {
                        consecutive_failures: attempt.number,
                    };
                    let (next, event) = self.send(now, attempt.number.saturating_add(1), reason);
                    self.set_attempt(next);
                    events.push(event);
                }
                _ => return false,
            },
            CertState::Valid { .. } => return false,
        }
        true
    }
}
