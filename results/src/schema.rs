//! The meshrig result schema (`meshrig.dev/result/v1`) for load runs.
//!
//! Field names carry units (`latency_us`, `duration_ns`, `rps_actual`); maps are
//! `BTreeMap`s so the JSON is byte-for-byte stable for the same data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::histogram::Summary;

/// The schema identifier written in every result's `schema` field.
pub const SCHEMA: &str = "meshrig.dev/result/v1";

/// The result of one load run against one target (`meshrig load`, or one workload
/// entry of a scenario).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadResult {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// What produced it: `"load"` for `meshrig load`.
    pub kind: String,
    /// Free-form labels given with `--labels`.
    pub labels: String,
    /// Wall-clock start of the run, RFC 3339 (UTC).
    pub started_at: String,
    /// True when the run was stopped early (Ctrl-C): everything below covers the part
    /// that ran.
    pub interrupted: bool,
    /// What was asked for.
    pub target: TargetInfo,
    /// `"open"` (a schedule of intended send times) or `"closed"` (back-to-back).
    pub mode: LoadMode,
    /// Requested rate in requests per second; `null` in closed loop (as fast as
    /// possible). For a rate profile this is its mean over the run.
    pub rps_target: Option<f64>,
    /// Completed responses ÷ (first intended send → last completion).
    pub rps_actual: f64,
    /// First intended send → last completion, in nanoseconds.
    pub duration_ns: u64,
    /// The requested duration (`-t`), if any.
    pub duration_requested_ns: Option<u64>,
    /// The requested exact count (`-n`), if any.
    pub requests_requested: Option<u64>,
    /// Requests that finished, with a response or with an error.
    pub requests_total: u64,
    /// Requests that got an HTTP response (any status).
    pub responses_total: u64,
    /// Responses with a 2xx or 3xx status.
    pub success_total: u64,
    /// Requests that got no HTTP response (see `errors` for the kinds).
    pub errors_total: u64,
    /// Requests sent a second time on a fresh connection because the idle (kept-alive
    /// or warmed-up) connection they first went out on had been closed by the server
    /// before any byte of a response. Idempotent methods only; a high count means the
    /// server closes idle connections sooner than the load generator reuses them.
    pub stale_connection_retries: u64,
    /// HTTP status code → count.
    pub status_codes: BTreeMap<String, u64>,
    /// Error kind → count. Kinds: `connect_refused`, `connect_timeout`, `timeout`,
    /// `reset`, `tls`, `protocol`, `other`.
    pub errors: BTreeMap<String, u64>,
    /// Latency from the *intended* send time to the end of the response
    /// (coordinated-omission corrected). In closed loop intended = actual.
    pub latency_us: Summary,
    /// Latency from the actual send time to the end of the response.
    pub latency_uncorrected_us: Summary,
    /// Actual minus intended send time: how late the load generator sent.
    pub send_lag_us: Summary,
    /// Corrected latency of the requests that failed (error, or status ≥ 400).
    pub error_latency_us: Summary,
    /// Response body sizes.
    pub response_size_bytes: Summary,
    /// Response header sizes (status line and header lines as they would appear on
    /// HTTP/1.1 — an estimate for HTTP/2).
    pub response_header_size_bytes: Summary,
    /// Request bytes written (bodies and an HTTP/1.1-equivalent header estimate).
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// How well the schedule was kept (open loop).
    pub schedule: ScheduleReport,
    /// `--group-by-header NAME`: header name → header value → responses. Responses
    /// without the header count under `""`.
    pub groups: BTreeMap<String, BTreeMap<String, u64>>,
    /// One row per second of the run.
    pub timeseries: Vec<SecondSample>,
    /// Resource use of the load generator process.
    pub process: ProcessStats,
    /// Human-readable warnings (target rate not met, values clamped, ...).
    pub warnings: Vec<String>,
    /// What is needed to reproduce and compare the run.
    pub provenance: Provenance,
}

/// The request being sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetInfo {
    pub url: String,
    pub method: String,
    /// `"http/1.1"` or `"h2"`.
    pub http_version: String,
    pub connections: u32,
    /// Concurrent requests per connection (1 for HTTP/1.1).
    pub streams_per_connection: u32,
    pub tls: bool,
    /// Request body length in bytes.
    pub body_bytes: u64,
    /// Per-request timeout, ns.
    pub timeout_ns: u64,
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    Open,
    Closed,
}

/// How well the open-loop schedule was kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleReport {
    /// True when every scheduled request was sent and the last one no later than 1%
    /// of the scheduled span (at least 1 ms) after its intended time. Always true in
    /// closed loop, where there is no target.
    pub target_met: bool,
    /// Requests scheduled within the duration that could not be sent before it ended
    /// (every connection was busy). They are not in `requests_total`.
    pub unsent_total: u64,
    /// The largest lag of a send behind its intended time, µs.
    pub behind_max_us: u64,
    /// The lag of the last send behind its intended time, µs.
    pub behind_at_end_us: u64,
    /// CPU time the precise-timing scheduler thread used, ns.
    pub scheduler_cpu_ns: u64,
    /// That CPU time as a percentage of one core over the run.
    pub scheduler_cpu_percent: f64,
}

/// One second of the run. `t_s` counts from the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondSample {
    pub t_s: u64,
    /// Responses completed in this second ÷ its length.
    pub rps: f64,
    pub responses: u64,
    pub errors: u64,
    /// Corrected latency percentiles of the requests completed in this second.
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Resource use of the process that produced the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessStats {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Peak resident set size.
    pub max_rss_bytes: u64,
}

/// Enough to reproduce and compare the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub meshrig_version: String,
    /// The command line, as given.
    pub command: Vec<String>,
    pub machine: Machine,
}

/// The machine a result was produced on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    /// CPUs this process may run on.
    pub cpus: u32,
}
