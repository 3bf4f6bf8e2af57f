//! Turning an engine [`TargetReport`] into the `results` schema: rates, whether the
//! schedule was kept, warnings a user must see, and provenance.

use std::time::Duration;

use results::{
    LoadMode, LoadResult, Machine, ProcessStats, Provenance, SCHEMA, ScheduleReport, TargetInfo,
};

use crate::engine::TargetReport;
use crate::schedule::RateProfile;

/// What the caller knows that the engine does not.
#[derive(Debug, Clone, Default)]
pub struct ResultMeta {
    /// `--labels`.
    pub labels: String,
    /// The command line, for provenance.
    pub command: Vec<String>,
}

impl TargetReport {
    /// The result of this target in the meshrig schema.
    pub fn to_result(&self, meta: &ResultMeta) -> LoadResult {
        let s = &self.stats;
        let c = &self.config;
        let open = !c.rate.is_closed_loop();
        let duration = match (s.first_intended, s.last_done) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        let secs = duration.as_secs_f64();
        let rps_actual = if secs > 0.0 {
            round2(s.responses as f64 / secs)
        } else {
            0.0
        };
        let scheduled_span = match (c.duration, self.last_intended_offset) {
            (Some(d), _) if !self.interrupted && c.max_requests.is_none() => d,
            (_, Some(last)) => last,
            (Some(d), None) => d,
            (None, None) => Duration::ZERO,
        };
        let rps_target = if open {
            c.rate.mean_rps(scheduled_span).map(round2)
        } else {
            None
        };

        let behind_at_end_us = s.latest.map_or(0, |(_, lag)| lag);
        let behind_max_us = s.lag.summary().max;
        let allowed_us = (scheduled_span.as_micros() as u64 / 100).max(1_000);
        let target_met = !open || (self.unsent == 0 && behind_at_end_us <= allowed_us);
        let cpu_percent = if secs > 0.0 {
            round2(100.0 * self.scheduler_cpu.as_secs_f64() / secs)
        } else {
            0.0
        };

        let mut warnings = Vec::new();
        if open && !target_met {
            warnings.push(format!(
                "target rate not met: asked for {:.1} rps, got {:.1} rps; sends ran up to {} \
                 behind schedule ({} at the end){}. All {} concurrent request slots were \
                 busy: the server is too slow for this rate, or more connections (-c) are \
                 needed. Latency is still measured from the intended send times.",
                rps_target.unwrap_or(0.0),
                rps_actual,
                fmt_us(behind_max_us),
                fmt_us(behind_at_end_us),
                if self.unsent > 0 {
                    format!(
                        ", and {} scheduled requests could not be sent before the duration ended",
                        self.unsent
                    )
                } else {
                    String::new()
                },
                c.concurrency(),
            ));
        }
        if open && cpu_percent > 50.0 {
            warnings.push(format!(
                "the scheduler thread used {cpu_percent:.0}% of a core to keep precise time; \
                 on a machine with few cores this competes with the workers"
            ));
        }
        let clamped = s.corrected.clamped() + s.uncorrected.clamped();
        if clamped > 0 {
            warnings.push(format!(
                "{clamped} latencies were above the histogram's range (1 h) and were recorded as 1 h"
            ));
        }
        if self.interrupted {
            warnings.push("interrupted: the result covers only the part that ran".to_owned());
        }

        let usage = crate::sys::process_usage();
        LoadResult {
            schema: SCHEMA.to_owned(),
            kind: "load".to_owned(),
            labels: meta.labels.clone(),
            started_at: humantime::format_rfc3339_millis(self.started_at).to_string(),
            interrupted: self.interrupted,
            target: TargetInfo {
                url: c.url.to_string(),
                method: c.method.to_string(),
                http_version: c.version.as_str().to_owned(),
                connections: c.connections,
                streams_per_connection: c.concurrency() / c.connections.max(1),
                tls: c.url.scheme_str() == Some("https"),
                body_bytes: c.body.len() as u64,
                timeout_ns: c.timeout.as_nanos() as u64,
            },
            mode: if open {
                LoadMode::Open
            } else {
                LoadMode::Closed
            },
            rps_target,
            rps_actual,
            duration_ns: duration.as_nanos() as u64,
            duration_requested_ns: c.duration.map(|d| d.as_nanos() as u64),
            requests_requested: c.max_requests,
            requests_total: s.responses + s.errors_total(),
            responses_total: s.responses,
            success_total: s.success,
            errors_total: s.errors_total(),
            stale_connection_retries: self.stale_retries,
            status_codes: s.status_codes(),
            errors: s.error_kinds(),
            latency_us: s.corrected.summary(),
            latency_uncorrected_us: s.uncorrected.summary(),
            send_lag_us: s.lag.summary(),
            error_latency_us: s.error_latency.summary(),
            response_size_bytes: s.sizes.summary(),
            response_header_size_bytes: s.header_sizes.summary(),
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            schedule: ScheduleReport {
                target_met,
                unsent_total: self.unsent,
                behind_max_us,
                behind_at_end_us,
                scheduler_cpu_ns: self.scheduler_cpu.as_nanos() as u64,
                scheduler_cpu_percent: cpu_percent,
            },
            groups: match &c.group_by_header {
                Some(name) => [(name.as_str().to_owned(), s.groups.clone())].into(),
                None => Default::default(),
            },
            timeseries: self.timeseries.clone(),
            process: ProcessStats {
                cpu_user_ns: usage.user.as_nanos() as u64,
                cpu_system_ns: usage.system.as_nanos() as u64,
                max_rss_bytes: usage.max_rss_bytes,
            },
            warnings,
            provenance: Provenance {
                meshrig_version: env!("CARGO_PKG_VERSION").to_owned(),
                command: meta.command.clone(),
                machine: machine(),
            },
        }
    }
}

/// The machine this process runs on.
pub fn machine() -> Machine {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    Machine {
        hostname,
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `1234` µs → `1.23ms`.
pub fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

impl RateProfile {
    /// A short human description: `1000 rps`, `ramp 0→500 rps over 30s`, `max`.
    pub fn describe(&self) -> String {
        match self {
            RateProfile::Max => "max (closed loop)".to_owned(),
            RateProfile::Constant { rps } => format!("{rps} rps"),
            RateProfile::Ramp {
                from_rps,
                to_rps,
                over,
            } => format!(
                "ramp {from_rps}→{to_rps} rps over {}",
                results::units::format_duration(*over)
            ),
            RateProfile::Steps(steps) => {
                let parts: Vec<_> = steps
                    .iter()
                    .map(|s| {
                        format!(
                            "{} rps for {}",
                            s.rps,
                            results::units::format_duration(s.hold)
                        )
                    })
                    .collect();
                format!("steps: {}", parts.join(", "))
            }
        }
    }
}
