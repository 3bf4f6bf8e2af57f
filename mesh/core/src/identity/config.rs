//! [`LifecycleConfig`]: when a workload renews its certificate and how it backs off.

use std::time::Duration;

use serde::Serialize;

/// How one workload certificate is kept fresh. Every field documents its default;
/// [`LifecycleConfig::validate`] reports every bad value at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecycleConfig {
    /// The lifetime asked of the CA in each request (the CA may grant less; the
    /// schedule follows the certificate actually issued). Default 24 h, Istio's
    /// `SECRET_TTL`.
    pub ttl: Duration,
    /// Renew once this fraction of the certificate's lifetime has passed. Default
    /// 0.5 (Istio's `SECRET_GRACE_PERIOD_RATIO`, 0.5).
    pub renew_fraction: f64,
    /// Jitter on the renewal point, as a fraction **of the renewal offset**: the
    /// renewal happens at `not_before + lifetime × renew_fraction × U[1 − j, 1 + j]`.
    /// Default 0.1, so with the default fraction a certificate renews between 45 % and
    /// 55 % of its life — enough to keep a fleet issued together from renewing in
    /// lockstep. (Istio's own jitter, `SECRET_GRACE_PERIOD_RATIO_JITTER`, is ±0.01 of
    /// the lifetime.) Must keep the latest renewal point before expiry.
    pub jitter_fraction: f64,
    /// Backoff after the first failed request. Default 1 s.
    pub backoff_base: Duration,
    /// The backoff doubles per consecutive failure up to this cap. Default 60 s: a
    /// workload notices a recovered CA within a minute, and a down CA sees at most
    /// about one request per minute per workload.
    pub backoff_max: Duration,
    /// Jitter on each backoff, as a fraction: `delay × U[1 − j, 1 + j]`, still capped
    /// at `backoff_max`. Default 0.1. Set 0 for exact doubling.
    pub backoff_jitter_fraction: f64,
    /// A request with no answer after this long counts as failed. Default 10 s.
    pub request_timeout: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            ttl: Duration::from_secs(24 * 60 * 60),
            renew_fraction: 0.5,
            jitter_fraction: 0.1,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_jitter_fraction: 0.1,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// One bad value in a [`LifecycleConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("{field} must be greater than zero")]
    ZeroDuration { field: &'static str },
    #[error("renew_fraction is {value}; it must be in (0, 1), e.g. 0.5")]
    RenewFraction { value: f64 },
    #[error("{field} is {value}; it must be in [0, 1)")]
    JitterFraction { field: &'static str, value: f64 },
    #[error(
        "renew_fraction × (1 + jitter_fraction) is {latest}; the latest renewal must come before expiry (< 1)"
    )]
    RenewalAfterExpiry { latest: f64 },
    #[error("backoff_max ({max:?}) is below backoff_base ({base:?})")]
    BackoffMaxBelowBase { base: Duration, max: Duration },
}

/// Errors of the identity module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid certificate lifecycle config: {}", list(.problems))]
    InvalidConfig { problems: Vec<ConfigProblem> },
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl LifecycleConfig {
    /// Checks every field; returns all problems, not just the first.
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("ttl", self.ttl),
            ("backoff_base", self.backoff_base),
            ("backoff_max", self.backoff_max),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                problems.push(ConfigProblem::ZeroDuration { field });
            }
        }
        let fraction_ok = self.renew_fraction > 0.0 && self.renew_fraction < 1.0;
        if !fraction_ok {
            problems.push(ConfigProblem::RenewFraction {
                value: self.renew_fraction,
            });
        }
        let mut jitters_ok = true;
        for (field, value) in [
            ("jitter_fraction", self.jitter_fraction),
            ("backoff_jitter_fraction", self.backoff_jitter_fraction),
        ] {
            if !(0.0..1.0).contains(&value) {
                jitters_ok = false;
                problems.push(ConfigProblem::JitterFraction { field, value });
            }
        }
        let latest = self.renew_fraction * (1.0 + self.jitter_fraction);
        if fraction_ok && jitters_ok && latest >= 1.0 {
            problems.push(ConfigProblem::RenewalAfterExpiry { latest });
        }
        if self.backoff_max < self.backoff_base {
            problems.push(ConfigProblem::BackoffMaxBelowBase {
                base: self.backoff_base,
                max: self.backoff_max,
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(IdentityError::InvalidConfig { problems })
        }
    }
}
