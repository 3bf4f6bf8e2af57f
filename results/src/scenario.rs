//! The result of a scenario run (`meshrig run`, sim or real mode).
//!
//! It is the same schema as `meshrig load` writes (`schema` = [`SCHEMA`]), with
//! `kind: "scenario"`: the shared pieces ([`Summary`], [`SecondSample`]) are the same
//! types, and every traffic breakdown ([`TrafficStats`]) — the whole workload, each
//! service, each service version, each caller → callee edge — carries the same counts
//! and a serialized HDR histogram, so runs can be merged and re-percentiled.
//!
//! A sim result carries no wall-clock time, host name or process statistics: the same
//! scenario, seed and binary give byte-identical JSON. Every timestamp in it is virtual
//! time since the start of the run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::histogram::{Recorder, Summary};
use crate::schema::SecondSample;

/// Value of [`ScenarioResult::kind`].
pub const SCENARIO_KIND: &str = "scenario";

/// What one scenario run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioResult {
    /// Always [`crate::SCHEMA`].
    pub schema: String,
    /// Always [`SCENARIO_KIND`].
    pub kind: String,
    pub scenario: ScenarioInfo,
    /// True when the run was stopped early (Ctrl-C): the result covers what ran.
    pub interrupted: bool,
    /// Virtual (sim) or wall (real) time the run covered.
    pub duration_ns: u64,
    /// The workload as its clients saw it: every request the load generators sent.
    pub totals: TrafficStats,
    /// Per workload entry, in scenario order: what it asked for and got.
    pub workloads: Vec<WorkloadStats>,
    /// Per destination service (keyed by service name), measured at the caller's side:
    /// the latency a caller of the service sees, including its sidecars and retries.
    pub services: BTreeMap<String, TrafficStats>,
    /// Per destination service version (`service:version`), measured per attempt at
    /// the caller's side.
    pub versions: BTreeMap<String, TrafficStats>,
    /// Per edge (`caller->callee`; the load generator is `client`), per request.
    pub edges: BTreeMap<String, TrafficStats>,
    /// Statistics over a time window, recorded because an assertion asked for it.
    pub windows: Vec<WindowStats>,
    /// Per second of the run, per target (`client`, service names).
    pub timeseries: BTreeMap<String, Vec<SecondSample>>,
    /// Number of logged events of each kind (exact, even when the log was capped).
    pub events_total: BTreeMap<String, u64>,
    /// The event log, in time order (capped; see `events_dropped`).
    pub events: Vec<Event>,
    /// Events counted in `events_total` but not kept in `events`.
    pub events_dropped: u64,
    /// The same, per kind: kinds logged only up to a cap, and kinds only counted.
    /// A windowed `events(kind)[a..b]` assertion needs this to be 0 for its kind.
    #[serde(default)]
    pub events_unlogged: BTreeMap<String, u64>,
    /// Per instance: where it ran and what its inbound side served.
    pub instances: Vec<InstanceStats>,
    /// The verdict of every assertion, in scenario order.
    pub assertions: Vec<AssertionVerdict>,
    /// Faults or features the mode could not apply, each saying what and why.
    pub not_applied: Vec<String>,
    pub warnings: Vec<String>,
    /// Engine figures (sim mode): events processed, peak queue, final virtual time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimStats>,
    pub provenance: ScenarioProvenance,
}

/// Which scenario ran, how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioInfo {
    /// `metadata.name`.
    pub name: String,
    /// The scenario file as given on the command line.
    pub file: String,
    /// FNV-1a 64 of the scenario file and every config file it references, hex.
    pub hash: String,
    pub seed: u64,
    /// `sim` or `real`.
    pub mode: String,
    /// `spec.duration`.
    pub duration_requested_ns: u64,
    /// Set when `--duration` cut the timeline short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_to_ns: Option<u64>,
}

/// Traffic through one target: counts, outcomes, latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficStats {
    /// Requests started (each counted once, however many attempts it took).
    pub requests_total: u64,
    /// Requests that completed with a 2xx/3xx response.
    pub success_total: u64,
    /// Requests that failed: a 4xx/5xx response or no response.
    pub errors_total: u64,
    /// Attempts sent upstream (first tries and retries).
    pub attempts_total: u64,
    /// Retries (attempts beyond the first).
    pub retries_total: u64,
    /// Final response status → count.
    pub status_codes: BTreeMap<String, u64>,
    /// Failures without a response, by cause (`reset`, `timeout`, `no_healthy_upstream`,
    /// `overflow`, `tls_handshake`, `connect_failure`, ...).
    pub errors: BTreeMap<String, u64>,
    /// `success_total / requests_total` (1 when no request ran).
    pub success_rate: f64,
    /// `attempts_total / requests_total` (1 when no request ran).
    pub retry_amplification: f64,
    /// Completed requests per second over the run.
    pub rps_actual: f64,
    /// Latency of every completed request (successes and failures).
    pub latency_us: Summary,
}

impl TrafficStats {
    /// Statistics from counts and a latency histogram over `duration_ns`.
    pub fn from_counts(counts: &TrafficCounts, latency: &Recorder, duration_ns: u64) -> Self {
        let requests = counts.requests_total;
        let ratio = |n: u64| {
            if requests == 0 {
                1.0
            } else {
                n as f64 / requests as f64
            }
        };
        let completed = counts.success_total + counts.errors_total;
        TrafficStats {
            requests_total: requests,
            success_total: counts.success_total,
            errors_total: counts.errors_total,
            attempts_total: counts.attempts_total,
            retries_total: counts.retries_total,
            status_codes: counts.status_codes.clone(),
            errors: counts.errors.clone(),
            success_rate: ratio(counts.success_total),
            retry_amplification: ratio(counts.attempts_total),
            rps_actual: if duration_ns == 0 {
                0.0
            } else {
                completed as f64 * 1e9 / duration_ns as f64
            },
            latency_us: latency.summary(),
        }
    }
}

/// The counters behind a [`TrafficStats`], as a driver accumulates them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficCounts {
    pub requests_total: u64,
    pub success_total: u64,
    pub errors_total: u64,
    pub attempts_total: u64,
    pub retries_total: u64,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

impl TrafficCounts {
    /// Counts a completed request: `status` when a response came, else `error`.
    pub fn complete(&mut self, status: Option<u16>, error: Option<&str>) {
        match status {
            Some(code) => {
                *self.status_codes.entry(code.to_string()).or_default() += 1;
                if code < 400 {
                    self.success_total += 1;
                } else {
                    self.errors_total += 1;
                }
            }
            None => {
                self.errors_total += 1;
                *self
                    .errors
                    .entry(error.unwrap_or("unknown").to_owned())
                    .or_default() += 1;
            }
        }
    }
}

/// One workload entry's rate: asked for and achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadStats {
    /// The target service.
    pub target: String,
    /// Mean requested rate over the run (open loop); `None` for closed-loop users.
    pub rps_target: Option<f64>,
    pub stats: TrafficStats,
}

/// Statistics of one target over `[from_ns, to_ns)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowStats {
    /// The target as assertions name it (`frontend`, `reviews:v2`, `client->frontend`).
    pub target: String,
    pub from_ns: u64,
    pub to_ns: u64,
    pub stats: TrafficStats,
}

/// One entry of the event log, at virtual (sim) or run-relative (real) time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Time since the start of the run.
    pub t_ns: u64,
    /// `ejection`, `unejection`, `retry`, `retry_overflow`, `breaker_overflow`,
    /// `config_push`, `config_applied`, `cert_issued`, `cert_renewal_failed`,
    /// `cert_expired`, `fault`, `fault_end`, `instance_down`, `instance_up`, ...
    pub kind: String,
    /// The node the event happened on (an instance name), or `mesh` for global ones.
    pub at: String,
    /// What happened, in words.
    pub detail: String,
}

/// One instance: where it ran and what its inbound side served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceStats {
    /// `service-version-zone-N`.
    pub name: String,
    pub service: String,
    pub version: String,
    pub zone: String,
    /// Requests that reached its application.
    pub requests_served: u64,
    /// Responses with status ≥ 500 from its application.
    pub errors_served: u64,
    /// Times outlier detection ejected it (summed over every caller).
    pub ejections: u64,
    /// CPU busy time over the run ÷ (cores × duration).
    pub cpu_utilization: f64,
    /// Certificates issued to its sidecar.
    pub certs_issued: u64,
    /// Times its certificate expired before renewal.
    pub cert_expiries: u64,
}

/// An assertion and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionVerdict {
    /// The assertion as written.
    pub expr: String,
    pub passed: bool,
    /// The measured value of the left-hand side, in the unit of the comparison.
    pub actual: Option<f64>,
    /// Why it failed or could not be evaluated, or how it held.
    pub detail: String,
    /// Set when the verdict was reported but not gated (timing assertions in real mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub advisory: bool,
}

/// Engine figures of a sim run. No wall-clock values: they would break determinism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimStats {
    pub events_processed: u64,
    pub peak_queue_len: u64,
    pub instances: u64,
    pub end_time_ns: u64,
    /// The cost table used (`name@version`).
    pub cost_table: String,
}

/// Enough to reproduce the run: no clock, no host name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioProvenance {
    pub meshrig_version: String,
    /// The command line, as given.
    pub command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_successes_errors_and_causes() {
        let mut c = TrafficCounts {
            requests_total: 4,
            attempts_total: 6,
            ..TrafficCounts::default()
        };
        c.complete(Some(200), None);
        c.complete(Some(302), None);
        c.complete(Some(503), None);
        c.complete(None, Some("reset"));
        let mut lat = Recorder::latency();
        for v in [100, 200, 300, 400] {
            lat.record(v);
        }
        let s = TrafficStats::from_counts(&c, &lat, 2_000_000_000);
        assert_eq!((s.success_total, s.errors_total), (2, 2));
        assert_eq!(s.errors.get("reset"), Some(&1));
        assert_eq!(s.status_codes.get("503"), Some(&1));
        assert!((s.success_rate - 0.5).abs() < 1e-12);
        assert!((s.retry_amplification - 1.5).abs() < 1e-12);
        assert!((s.rps_actual - 2.0).abs() < 1e-12);
    }

    #[test]
    fn empty_target_has_neutral_ratios() {
        let s = TrafficStats::from_counts(&TrafficCounts::default(), &Recorder::latency(), 0);
        assert_eq!(
            (s.success_rate, s.retry_amplification, s.rps_actual),
            (1.0, 1.0, 0.0)
        );
    }
}
