//! Istio's standard request metrics, in Prometheus text format.
//!
//! `istio_requests_total` (counter) and `istio_request_duration_milliseconds`
//! (histogram, [`BUCKETS_MS`]) with the labels `reporter`, `source_workload`,
//! `destination_service`, `response_code`, `response_flags` (`-` when none). The
//! duration is measured to the response headers. At most [`MAX_SERIES`] label sets
//! are kept; requests beyond that are counted with `destination_service="other"`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket upper bounds, in milliseconds (plus `+Inf`).
pub const BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The most label sets kept.
pub const MAX_SERIES: usize = 1024;

/// Which side of the request recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reporter {
    /// The outbound (client-side) proxy.
    Source,
    /// The inbound (server-side) proxy.
    Destination,
}

impl Reporter {
    fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    reporter: Reporter,
    source_workload: String,
    destination_service: String,
    response_code: u16,
    response_flags: String,
}

#[derive(Debug, Clone, Default)]
struct Series {
    count: u64,
    /// Per bucket (not cumulative).
    buckets: [u64; BUCKETS_MS.len()],
    sum_ms: f64,
}

/// The proxy's request metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<Key, Series>>,
}

impl Metrics {
    /// Counts one request. `flags` is empty or Envoy-style `UH,URX`.
    pub fn record(
        &self,
        reporter: Reporter,
        source_workload: &str,
        destination_service: &str,
        response_code: u16,
        flags: &str,
        duration: Duration,
    ) {
        let mut key = Key {
            reporter,
            source_workload: source_workload.to_owned(),
            destination_service: destination_service.to_owned(),
            response_code,
            response_flags: if flags.is_empty() { "-" } else { flags }.to_owned(),
        };
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if !series.contains_key(&key) && series.len() >= MAX_SERIES {
            key.destination_service = "other".to_owned();
        }
        let s = series.entry(key).or_default();
        let ms = duration.as_secs_f64() * 1000.0;
        s.count += 1;
        s.sum_ms += ms;
        if let Some(b) = BUCKETS_MS.iter().position(|&le| ms <= le) {
            s.buckets[b] += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP istio_requests_total Requests handled by the proxy.\n");
        out.push_str("# TYPE istio_requests_total counter\n");
        for (key, s) in series.iter() {
            let _ = writeln!(out, "istio_requests_total{{{}}} {}", labels(key), s.count);
        }
        out.push_str("# HELP istio_request_duration_milliseconds Time to the response headers.\n");
        out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
        for (key, s) in series.iter() {
            let labels = labels(key);
            let mut cumulative = 0;
            for (le, n) in BUCKETS_MS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "istio_request_duration_milliseconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_sum{{{labels}}} {}",
                s.sum_ms
            );
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

fn labels(key: &Key) -> String {
    format!(
        "reporter=\"{}\",source_workload=\"{}\",destination_service=\"{}\",response_code=\"{}\",response_flags=\"{}\"",
        key.reporter.as_str(),
        escape(&key.source_workload),
        escape(&key.destination_service),
        key.response_code,
        escape(&key.response_flags),
    )
}

/// Prometheus label-value escaping.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cumulative_buckets() {
        let m = Metrics::default();
        for ms in [0, 3, 3, 20_000] {
            m.record(
                Reporter::Source,
                "client",
                "reviews.default.svc.cluster.local",
                200,
                "",
                Duration::from_millis(ms),
            );
        }
        m.record(
            Reporter::Destination,
            "unknown",
            "a\"b",
            503,
            "UF",
            Duration::ZERO,
        );
        let text = m.render();
        let base = "reporter=\"source\",source_workload=\"client\",destination_service=\"reviews.default.svc.cluster.local\",response_code=\"200\",response_flags=\"-\"";
        assert!(
            text.contains(&format!("istio_requests_total{{{base}}} 4\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("_bucket{{{base},le=\"1\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("_bucket{{{base},le=\"5\"}} 3\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("_bucket{{{base},le=\"10000\"}} 3\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("_bucket{{{base},le=\"+Inf\"}} 4\n")),
            "{text}"
        );
        assert!(text.contains("destination_service=\"a\\\"b\""), "{text}");
        assert!(text.contains("response_flags=\"UF\"} 1\n"), "{text}");
    }

    #[test]
    fn label_sets_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 10 {
            m.record(
                Reporter::Source,
                "c",
                &format!("s{i}"),
                200,
                "",
                Duration::ZERO,
            );
        }
        let text = m.render();
        assert!(text.contains("destination_service=\"other\""));
        assert_eq!(
            text.matches("istio_requests_total{").count(),
            MAX_SERIES + 1
        );
    }
}
