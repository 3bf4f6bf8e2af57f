//! How many retries may be in flight at once, per cluster: Envoy's `retries` circuit
//! breaker resource, either a fixed `max_retries` or a retry budget.
//!
//! Envoy (`CircuitBreakers.Thresholds.retry_budget`): when a budget is configured it
//! replaces `max_retries`; the limit is `max(min_retry_concurrency, budget_percent % ×
//! (active + pending requests))`. Istio configures it from DestinationRule
//! `trafficPolicy.retryBudget` (`percent`, `minRetryConcurrency`) and `max_retries` from
//! `connectionPool.http.maxRetries` (default 2^32 − 1). A retry counts as active from
//! the moment it is decided until its try ends.
//!
//! A refused retry does not turn into a 503: the caller gets the last try's response,
//! and Envoy counts `upstream_rq_retry_overflow`.

use std::fmt;

/// Istio's DestinationRule `trafficPolicy.retryBudget`, normalized.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RetryBudgetPolicy {
    /// Share of active requests that may be retries, in percent (0–100). Default is
    /// 20.0, as Envoy and Istio.
    pub percent: f64,
    /// Retries always allowed in flight, whatever the request load. Default is 3, as
    /// Envoy and Istio.
    pub min_retry_concurrency: u32,
}

impl Default for RetryBudgetPolicy {
    fn default() -> Self {
        RetryBudgetPolicy {
            percent: 20.0,
            min_retry_concurrency: 3,
        }
    }
}

/// What bounds concurrent retries in one cluster.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryLimit {
    /// A fixed cap: `connectionPool.http.maxRetries`.
    MaxRetries(u32),
    /// A retry budget: replaces `max_retries` when configured.
    Budget(RetryBudgetPolicy),
}

impl Default for RetryLimit {
    /// Istio's default: `MaxRetries(2^32 - 1)`, i.e. unlimited (Envoy's own default is
    /// 3; Istio raises it because pod churn tripped it).
    fn default() -> Self {
        RetryLimit::MaxRetries(u32::MAX)
    }
}

/// Which limiter refused a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryLimiterKind {
    MaxRetries,
    RetryBudget,
}

impl fmt::Display for RetryLimiterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryLimiterKind::MaxRetries => "max_retries",
            RetryLimiterKind::RetryBudget => "retry_budget",
        })
    }
}

/// A retry refused because the cluster's retries are at their limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("retry overflow: {active_retries} retries active, {limiter} allows {limit}")]
pub struct RetryOverflow {
    pub limiter: RetryLimiterKind,
    pub limit: u64,
    pub active_retries: u64,
    pub active_requests: u64,
}

/// The retries resource of one cluster. Shared by every request to the cluster (the
/// [`ConnectionPool`](crate::pool::ConnectionPool) owns one and keeps its request count).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudget {
    limit: RetryLimit,
    active_requests: u64,
    active_retries: u64,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// A budget with nothing in flight.
    pub fn new(limit: RetryLimit) -> Self {
        RetryBudget {
            limit,
            active_requests: 0,
            active_retries: 0,
        }
    }

    /// A new limit (config change); the counts of active requests and retries stay.
    pub fn set_limit(&mut self, limit: RetryLimit) {
        self.limit = limit;
    }

    /// The configured limit.
    pub fn limit(&self) -> RetryLimit {
        self.limit
    }

    /// Call when a request (any try, pending or dispatched) to the cluster starts.
    pub fn on_request_start(&mut self) {
        self.active_requests += 1;
    }

    /// Call when a request to the cluster ends (answered, failed or cancelled).
    pub fn on_request_end(&mut self) {
        debug_assert!(self.active_requests > 0, "request end without start");
        self.active_requests = self.active_requests.saturating_sub(1);
    }

    /// Requests currently active (dispatched or pending).
    pub fn active_requests(&self) -> u64 {
        self.active_requests
    }

    /// Retries currently active.
    pub fn active_retries(&self) -> u64 {
        self.active_retries
    }

    /// How many retries may be active now.
    pub fn max_active_retries(&self) -> u64 {
        match self.limit {
            RetryLimit::MaxRetries(n) => u64::from(n),
            RetryLimit::Budget(b) => {
                let share = (b.percent.clamp(0.0, 100.0) / 100.0 * self.active_requests as f64)
                    .floor() as u64;
                share.max(u64::from(b.min_retry_concurrency))
            }
        }
    }

    /// Call when a retry is about to be scheduled: takes a slot, or says why not.
    pub fn try_acquire_retry(&mut self) -> Result<(), RetryOverflow> {
        let limit = self.max_active_retries();
        if self.active_retries < limit {
            self.active_retries += 1;
            Ok(())
        } else {
            Err(RetryOverflow {
                limiter: match self.limit {
                    RetryLimit::MaxRetries(_) => RetryLimiterKind::MaxRetries,
                    RetryLimit::Budget(_) => RetryLimiterKind::RetryBudget,
                },
                limit,
                active_retries: self.active_retries,
                active_requests: self.active_requests,
            })
        }
    }

    /// Call when the try a retry slot was taken for has ended (or was abandoned).
    pub fn release_retry(&mut self) {
        debug_assert!(self.active_retries > 0, "retry release without acquire");
        self.active_retries = self.active_retries.saturating_sub(1);
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(RetryLimit::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_percent_of_active_with_a_floor() {
        let mut b = RetryBudget::new(RetryLimit::Budget(RetryBudgetPolicy::default()));
        assert_eq!(
            b.max_active_retries(),
            3,
            "min_retry_concurrency with no load"
        );
        for _ in 0..100 {
            b.on_request_start();
        }
        assert_eq!(b.max_active_retries(), 20);
        for _ in 0..20 {
            b.try_acquire_retry().unwrap();
        }
        let err = b.try_acquire_retry().unwrap_err();
        assert_eq!(err.limiter, RetryLimiterKind::RetryBudget);
        assert_eq!((err.limit, err.active_retries), (20, 20));
        b.release_retry();
        assert!(b.try_acquire_retry().is_ok());
    }

    #[test]
    fn max_retries_is_a_fixed_cap() {
        let mut b = RetryBudget::new(RetryLimit::MaxRetries(1));
        b.try_acquire_retry().unwrap();
        assert_eq!(
            b.try_acquire_retry().unwrap_err().limiter,
            RetryLimiterKind::MaxRetries
        );
    }

    #[test]
    fn istio_default_is_unlimited() {
        assert_eq!(
            RetryBudget::default().max_active_retries(),
            u64::from(u32::MAX)
        );
    }
}
