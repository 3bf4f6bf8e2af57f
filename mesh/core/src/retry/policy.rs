//! What to retry: Istio's `HTTPRetry` (VirtualService `retries`), normalized to Envoy's
//! retry policy, and the classification of one attempt's result against it.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// One `retryOn` condition, named as Envoy's `x-envoy-retry-on` / `x-envoy-retry-grpc-on`
/// tokens that Istio passes through.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// `5xx`: any 5xx response, or no response at all (connect failure, reset, refused
    /// stream, per-try timeout).
    #[serde(rename = "5xx")]
    FiveXx,
    /// `gateway-error`: a 502, 503 or 504 response, or no response at all.
    GatewayError,
    /// `reset`: no response at all (disconnect, reset, per-try timeout).
    Reset,
    /// `connect-failure`: the connection to the endpoint could not be established.
    ConnectFailure,
    /// `refused-stream`: the endpoint refused the HTTP/2 stream (`REFUSED_STREAM`).
    RefusedStream,
    /// `retriable-4xx`: a 409 response.
    Retriable4xx,
    /// `retriable-status-codes`: a status in [`RetryPolicy::retriable_status_codes`].
    RetriableStatusCodes,
    /// gRPC `cancelled` (status 1).
    Cancelled,
    /// gRPC `deadline-exceeded` (status 4).
    DeadlineExceeded,
    /// gRPC `resource-exhausted` (status 8).
    ResourceExhausted,
    /// gRPC `internal` (status 13).
    Internal,
    /// gRPC `unavailable` (status 14).
    Unavailable,
}

impl RetryOn {
    /// Every condition, in declaration order.
    pub const ALL: [RetryOn; 12] = [
        RetryOn::FiveXx,
        RetryOn::GatewayError,
        RetryOn::Reset,
        RetryOn::ConnectFailure,
        RetryOn::RefusedStream,
        RetryOn::Retriable4xx,
        RetryOn::RetriableStatusCodes,
        RetryOn::Cancelled,
        RetryOn::DeadlineExceeded,
        RetryOn::ResourceExhausted,
        RetryOn::Internal,
        RetryOn::Unavailable,
    ];

    /// The token as written in Istio's `retryOn` (`"gateway-error"`).
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::FiveXx => "5xx",
            RetryOn::GatewayError => "gateway-error",
            RetryOn::Reset => "reset",
            RetryOn::ConnectFailure => "connect-failure",
            RetryOn::RefusedStream => "refused-stream",
            RetryOn::Retriable4xx => "retriable-4xx",
            RetryOn::RetriableStatusCodes => "retriable-status-codes",
            RetryOn::Cancelled => "cancelled",
            RetryOn::DeadlineExceeded => "deadline-exceeded",
            RetryOn::ResourceExhausted => "resource-exhausted",
            RetryOn::Internal => "internal",
            RetryOn::Unavailable => "unavailable",
        }
    }

    /// The condition a `retryOn` token names, if meshrig models it.
    pub fn from_token(token: &str) -> Option<RetryOn> {
        RetryOn::ALL.into_iter().find(|c| c.as_str() == token)
    }

    /// The gRPC status code this condition retries, for the gRPC conditions.
    pub fn grpc_status(self) -> Option<u32> {
        match self {
            RetryOn::Cancelled => Some(1),
            RetryOn::DeadlineExceeded => Some(4),
            RetryOn::ResourceExhausted => Some(8),
            RetryOn::Internal => Some(13),
            RetryOn::Unavailable => Some(14),
            _ => None,
        }
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `retryOn` string that names conditions meshrig does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "retryOn: unknown condition(s) {}; expected a comma-separated list of {} or HTTP status codes (100-599)",
    .unknown.join(", "),
    RetryOn::ALL.map(RetryOn::as_str).join(", ")
)]
pub struct RetryOnError {
    /// Every token that was not understood, in order.
    pub unknown: Vec<String>,
}

/// Where a [`RetryPolicy`] came from: Istio silently retries when a route says nothing,
/// and that must be visible in every decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryPolicySource {
    /// The route has no `retries` block: Istio's default (2 retries) applies.
    IstioDefault,
    /// The route configures `retries`.
    Configured,
}

/// A route's retry policy, normalized.
///
/// [`Default`] is [`RetryPolicy::istio_default`]: what Istio applies when a route has no
/// `retries` block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetryPolicy {
    /// The number of *retries* (Istio `attempts`): a request is tried at most
    /// `attempts + 1` times. `0` disables retries. Default is 2, as Istio.
    pub attempts: u32,
    /// The timeout of each try (Istio `perTryTimeout`). Default is none: a try is bounded
    /// only by the route timeout, as Istio.
    #[serde(rename = "per_try_timeout_ns", serialize_with = "super::ser_opt_ns")]
    pub per_try_timeout: Option<Duration>,
    /// The conditions that make a try retriable. Default is Istio's
    /// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`.
    pub retry_on: BTreeSet<RetryOn>,
    /// Statuses retried under `retriable-status-codes`. Default is `{503}`, as Istio
    /// (unless pilot runs with `EXCLUDE_503_FROM_DEFAULT_RETRY`).
    pub retriable_status_codes: BTreeSet<u16>,
    /// Base interval of the jittered exponential backoff (Istio `retries.backoff`).
    /// Default is 25 ms, as Envoy.
    #[serde(rename = "backoff_base_ns", serialize_with = "super::ser_ns")]
    pub backoff_base: Duration,
    /// Cap of the backoff. Default is 10 × `backoff_base` (250 ms), as Envoy; Istio
    /// cannot set it.
    #[serde(rename = "backoff_max_ns", serialize_with = "super::ser_ns")]
    pub backoff_max: Duration,
    /// Prefer an endpoint not tried yet for each retry (Envoy's `previous_hosts` retry
    /// predicate). Default is `true`, as Istio — except for consistent-hash load
    /// balancing, where Istio leaves it off (see [`RetryPolicy::for_consistent_hash`]).
    pub avoid_previous_endpoints: bool,
    /// Where the policy came from. Default is [`RetryPolicySource::IstioDefault`].
    pub source: RetryPolicySource,
}

/// Envoy's default base backoff interval.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

// === impl RetryPolicy ===

impl RetryPolicy {
    /// The policy Istio gives a route without a `retries` block
    /// (`pilot/pkg/networking/core/route/retry`: `NumRetries: 2`,
    /// `RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"`,
    /// `RetriableStatusCodes: [503]`, the `previous_hosts` predicate).
    pub fn istio_default() -> Self {
        RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            retry_on: [
                RetryOn::ConnectFailure,
                RetryOn::RefusedStream,
                RetryOn::Unavailable,
                RetryOn::Cancelled,
                RetryOn::RetriableStatusCodes,
            ]
            .into_iter()
            .collect(),
            retriable_status_codes: [503].into_iter().collect(),
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_BASE * 10,
            avoid_previous_endpoints: true,
            source: RetryPolicySource::IstioDefault,
        }
    }

    /// Istio's `attempts: 0`: no retries at all.
    pub fn disabled() -> Self {
        RetryPolicy {
            attempts: 0,
            source: RetryPolicySource::Configured,
            ..RetryPolicy::istio_default()
        }
    }

    /// The policy a route's `retries` stand for: Istio's default when the route says
    /// nothing, else the configured attempts, `retryOn` and `perTryTimeout`. The route
    /// table has already checked `retryOn`; an unparsable one (not reachable from
    /// validated config) falls back to the default. Both drivers call this.
    pub fn from_route(r: &crate::route::RouteRetries) -> Self {
        if r.istio_default {
            return RetryPolicy::istio_default();
        }
        let mut p = RetryPolicy::configured(r.attempts, Some(&r.retry_on))
            .unwrap_or_else(|_| RetryPolicy::istio_default());
        p.per_try_timeout = r.per_try_timeout;
        p
    }

    /// A configured policy, built as Istio's `ConvertPolicy` does: the default with
    /// `attempts` overridden and, when `retry_on` is given, the conditions and status
    /// codes replaced by its parse ([`RetryPolicy::parse_retry_on`]).
    pub fn configured(attempts: u32, retry_on: Option<&str>) -> Result<Self, RetryOnError> {
        let mut policy = RetryPolicy {
            attempts,
            source: RetryPolicySource::Configured,
            ..RetryPolicy::istio_default()
        };
        if let Some(text) = retry_on.filter(|t| !t.trim().is_empty()) {
            let (conditions, codes) = RetryPolicy::parse_retry_on(text)?;
            policy.retry_on = conditions;
            policy.retriable_status_codes = codes;
        }
        Ok(policy)
    }

    /// The same policy with Istio's consistent-hash variant: retries stay on the hashed
    /// endpoint (no `previous_hosts` predicate).
    pub fn for_consistent_hash(mut self) -> Self {
        self.avoid_previous_endpoints = false;
        self
    }

    /// Sets the backoff base (Istio `retries.backoff`) and, as Envoy, the cap to 10× it.
    pub fn with_backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = base.saturating_mul(10);
        self
    }

    /// Parses Istio's `retryOn`: comma-separated condition tokens; integers are status
    /// codes, and naming any adds `retriable-status-codes` (as Istio's `parseRetryOn`).
    /// Every unknown token is reported at once.
    pub fn parse_retry_on(text: &str) -> Result<(BTreeSet<RetryOn>, BTreeSet<u16>), RetryOnError> {
        let mut conditions = BTreeSet::new();
        let mut codes = BTreeSet::new();
        let mut unknown = Vec::new();
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(condition) = RetryOn::from_token(token) {
                conditions.insert(condition);
            } else if let Some(code) = token
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
            {
                codes.insert(code);
            } else {
                unknown.push(token.to_owned());
            }
        }
        if !unknown.is_empty() {
            return Err(RetryOnError { unknown });
        }
        if !codes.is_empty() {
            conditions.insert(RetryOn::RetriableStatusCodes);
        }
        Ok((conditions, codes))
    }

    /// Which condition of this policy makes `result` retriable, if any (Envoy's
    /// `RetryStateImpl::wouldRetryFromHeaders` / `wouldRetryFromReset`). A success is
    /// never retriable.
    pub fn retriable_by(&self, result: &AttemptResult) -> Option<RetryOn> {
        let has = |c: RetryOn| self.retry_on.contains(&c).then_some(c);
        match *result {
            AttemptResult::Response {
                status,
                grpc_status,
            } => {
                let is_5xx = (500..600).contains(&status);
                let by_status = [
                    (is_5xx, RetryOn::FiveXx),
                    (matches!(status, 502..=504), RetryOn::GatewayError),
                    (status == 409, RetryOn::Retriable4xx),
                    (
                        self.retriable_status_codes.contains(&status),
                        RetryOn::RetriableStatusCodes,
                    ),
                ];
                if let Some(c) = by_status
                    .into_iter()
                    .find_map(|(hit, c)| hit.then(|| has(c)).flatten())
                {
                    return Some(c);
                }
                let grpc = grpc_status?;
                self.retry_on
                    .iter()
                    .copied()
                    .find(|c| c.grpc_status() == Some(grpc))
            }
            AttemptResult::ConnectFailure
            | AttemptResult::Reset
            | AttemptResult::RefusedStream
            | AttemptResult::PerTryTimeout => {
                let specific = match result {
                    AttemptResult::ConnectFailure => has(RetryOn::ConnectFailure),
                    AttemptResult::RefusedStream => has(RetryOn::RefusedStream),
                    _ => None,
                };
                specific
                    .or_else(|| has(RetryOn::FiveXx))
                    .or_else(|| has(RetryOn::GatewayError))
                    .or_else(|| has(RetryOn::Reset))
            }
        }
    }
}

impl Default for RetryPolicy {
    /// [`RetryPolicy::istio_default`].
    fn default() -> Self {
        RetryPolicy::istio_default()
    }
}

/// How one try ended, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AttemptResult {
    /// Response headers arrived. `grpc_status` is the `grpc-status` (header or
    /// trailer) when the request is gRPC.
    Response {
        status: u16,
        grpc_status: Option<u32>,
    },
    /// The connection could not be established (refused, unreachable, connect timeout).
    ConnectFailure,
    /// The connection or stream was reset before response headers arrived.
    Reset,
    /// The endpoint refused the HTTP/2 stream.
    RefusedStream,
    /// The per-try timeout fired before response headers arrived.
    PerTryTimeout,
}

impl AttemptResult {
    /// A plain HTTP response.
    pub fn http(status: u16) -> Self {
        AttemptResult::Response {
            status,
            grpc_status: None,
        }
    }

    /// Whether this result is a failure at all: a 5xx, no response, or a gRPC status
    /// other than OK. (A 4xx is an answer, not a failure, unless a policy says so.)
    pub fn is_failure(&self) -> bool {
        match *self {
            AttemptResult::Response {
                status,
                grpc_status,
            } => status >= 500 || grpc_status.is_some_and(|g| g != 0),
            _ => true,
        }
    }
}
