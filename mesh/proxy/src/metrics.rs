//! Istio's standard metrics, in Prometheus text format.
//!
//! Requests: `istio_requests_total` (counter), `istio_request_duration_milliseconds`
//! ([`DURATION_BUCKETS_MS`]), `istio_request_bytes` and `istio_response_bytes`
//! ([`BYTES_BUCKETS`]) histograms, labelled with [`RequestLabels`]. The duration runs
//! from the request's arrival to the response's last byte, as Envoy measures it.
//!
//! Connections: `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
//! `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`, per downstream
//! connection of a listener, labelled with [`ConnectionLabels`].
//!
//! At most [`MAX_SERIES`] request label sets (and as many connection ones) are kept;
//! requests beyond that are counted under `destination_service="other"`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Duration histogram bucket upper bounds, in milliseconds (plus `+Inf`).
pub const DURATION_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Size histogram bucket upper bounds, in bytes (plus `+Inf`), as Istio's defaults.
pub const BYTES_BUCKETS: [f64; 9] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];

/// The most label sets kept per family.
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
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// Istio's request labels. `source_principal` is `unknown` and
/// `connection_security_policy` `none` until the proxy speaks mTLS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    pub reporter: Reporter,
    pub source_workload: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub destination_workload: String,
    /// The destination FQDN, e.g. `reviews.default.svc.cluster.local`.
    pub destination_service: String,
    /// Its short name, e.g. `reviews`.
    pub destination_service_name: String,
    pub destination_version: String,
    pub response_code: u16,
    /// Envoy-style `UH,URX`; `-` when none.
    pub response_flags: String,
    pub connection_security_policy: String,
    /// `http` (both HTTP/1.1 and HTTP/2, as Istio labels them).
    pub request_protocol: String,
}

impl RequestLabels {
    /// Labels with `unknown` everywhere but the reporter (to be filled in).
    pub fn unknown(reporter: Reporter) -> Self {
        let u = || "unknown".to_owned();
        RequestLabels {
            reporter,
            source_workload: u(),
            source_workload_namespace: u(),
            source_principal: u(),
            destination_workload: u(),
            destination_service: u(),
            destination_service_name: u(),
            destination_version: u(),
            response_code: 0,
            response_flags: "-".to_owned(),
            connection_security_policy: "none".to_owned(),
            request_protocol: "http".to_owned(),
        }
    }

    /// Sets `destination_service` and its short name.
    pub fn destination_service(&mut self, fqdn: &str) {
        self.destination_service = fqdn.to_owned();
        self.destination_service_name = fqdn.split('.').next().unwrap_or(fqdn).to_owned();
    }

    fn render(&self) -> String {
        let pairs = [
            ("reporter", self.reporter.as_str()),
            ("source_workload", &self.source_workload),
            ("source_workload_namespace", &self.source_workload_namespace),
            ("source_principal", &self.source_principal),
            ("destination_workload", &self.destination_workload),
            ("destination_service", &self.destination_service),
            ("destination_service_name", &self.destination_service_name),
            ("destination_version", &self.destination_version),
            ("response_code", &self.response_code.to_string()),
            ("response_flags", &self.response_flags),
            (
                "connection_security_policy",
                &self.connection_security_policy,
            ),
            ("request_protocol", &self.request_protocol),
        ];
        render_pairs(&pairs)
    }
}

/// The labels of a downstream connection's TCP metrics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnectionLabels {
    pub reporter: Reporter,
    pub source_workload: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub destination_workload: String,
    pub destination_service: String,
    pub connection_security_policy: String,
}

impl ConnectionLabels {
    fn render(&self) -> String {
        render_pairs(&[
            ("reporter", self.reporter.as_str()),
            ("source_workload", &self.source_workload),
            ("source_workload_namespace", &self.source_workload_namespace),
            ("source_principal", &self.source_principal),
            ("destination_workload", &self.destination_workload),
            ("destination_service", &self.destination_service),
            (
                "connection_security_policy",
                &self.connection_security_policy,
            ),
        ])
    }
}

fn render_pairs(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    out
}

/// A histogram with fixed buckets.
#[derive(Debug, Clone)]
struct Histogram<const N: usize> {
    /// Per bucket (not cumulative).
    buckets: [u64; N],
    count: u64,
    sum: f64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            buckets: [0; N],
            count: 0,
            sum: 0.0,
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn record(&mut self, bounds: &[f64; N], value: f64) {
        self.count += 1;
        self.sum += value;
        if let Some(b) = bounds.iter().position(|&le| value <= le) {
            self.buckets[b] += 1;
        }
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64; N]) {
        let mut cumulative = 0;
        for (le, n) in bounds.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

#[derive(Debug, Clone, Default)]
struct Series {
    duration_ms: Histogram<13>,
    request_bytes: Histogram<9>,
    response_bytes: Histogram<9>,
}

/// One connection label set's counters, updated without a lock.
#[derive(Debug, Default)]
pub struct TcpSeries {
    opened: AtomicU64,
    closed: AtomicU64,
    sent_bytes: AtomicU64,
    received_bytes: AtomicU64,
}

impl TcpSeries {
    pub fn on_open(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }
    pub fn on_close(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn on_sent(&self, bytes: u64) {
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn on_received(&self, bytes: u64) {
        self.received_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// What one request is recorded with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestSample {
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// The proxy's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<RequestLabels, Series>>,
    tcp: Mutex<BTreeMap<ConnectionLabels, Arc<TcpSeries>>>,
}

impl Metrics {
    /// Counts one request.
    pub fn record(&self, labels: &RequestLabels, sample: RequestSample) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = if let Some(s) = series.get_mut(labels) {
            s
        } else if series.len() < MAX_SERIES {
            series.entry(labels.clone()).or_default()
        } else {
            let mut other = labels.clone();
            other.destination_service("other");
            series.entry(other).or_default()
        };
        s.duration_ms
            .record(&DURATION_BUCKETS_MS, sample.duration.as_secs_f64() * 1000.0);
        s.request_bytes
            .record(&BYTES_BUCKETS, sample.request_bytes as f64);
        s.response_bytes
            .record(&BYTES_BUCKETS, sample.response_bytes as f64);
    }

    /// The counters of a connection label set, for the connection's lifetime.
    pub fn tcp(&self, labels: &ConnectionLabels) -> Arc<TcpSeries> {
        let mut tcp = self.tcp.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = tcp.get(labels) {
            return s.clone();
        }
        let key = if tcp.len() < MAX_SERIES {
            labels.clone()
        } else {
            ConnectionLabels {
                destination_service: "other".to_owned(),
                ..labels.clone()
            }
        };
        tcp.entry(key).or_default().clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        {
            let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
            let rendered: Vec<(String, &Series)> =
                series.iter().map(|(k, s)| (k.render(), s)).collect();
            header(
                &mut out,
                "istio_requests_total",
                "counter",
                "Requests handled.",
            );
            for (labels, s) in &rendered {
                let _ = writeln!(
                    out,
                    "istio_requests_total{{{labels}}} {}",
                    s.duration_ms.count
                );
            }
            header(
                &mut out,
                "istio_request_duration_milliseconds",
                "histogram",
                "Time from the request's arrival to the response's last byte.",
            );
            for (labels, s) in &rendered {
                s.duration_ms.render(
                    &mut out,
                    "istio_request_duration_milliseconds",
                    labels,
                    &DURATION_BUCKETS_MS,
                );
            }
            header(
                &mut out,
                "istio_request_bytes",
                "histogram",
                "Request body sizes.",
            );
            for (labels, s) in &rendered {
                s.request_bytes
                    .render(&mut out, "istio_request_bytes", labels, &BYTES_BUCKETS);
            }
            header(
                &mut out,
                "istio_response_bytes",
                "histogram",
                "Response body sizes.",
            );
            for (labels, s) in &rendered {
                s.response_bytes
                    .render(&mut out, "istio_response_bytes", labels, &BYTES_BUCKETS);
            }
        }
        let tcp = self.tcp.lock().unwrap_or_else(|e| e.into_inner());
        let rendered: Vec<(String, &TcpSeries)> =
            tcp.iter().map(|(k, s)| (k.render(), &**s)).collect();
        let families: [(&str, &str, TcpField); 4] = [
            (
                "istio_tcp_connections_opened_total",
                "Downstream connections opened.",
                |s| &s.opened,
            ),
            (
                "istio_tcp_connections_closed_total",
                "Downstream connections closed.",
                |s| &s.closed,
            ),
            (
                "istio_tcp_sent_bytes_total",
                "Bytes sent to downstream peers.",
                |s| &s.sent_bytes,
            ),
            (
                "istio_tcp_received_bytes_total",
                "Bytes received from downstream peers.",
                |s| &s.received_bytes,
            ),
        ];
        for (name, help, field) in families {
            header(&mut out, name, "counter", help);
            for (labels, s) in &rendered {
                let _ = writeln!(
                    out,
                    "{name}{{{labels}}} {}",
                    field(s).load(Ordering::Relaxed)
                );
            }
        }
        out
    }
}

/// One counter of a [`TcpSeries`].
type TcpField = fn(&TcpSeries) -> &AtomicU64;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
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

    fn labels(service: &str, code: u16, flags: &str) -> RequestLabels {
        let mut l = RequestLabels::unknown(Reporter::Source);
        l.source_workload = "client".into();
        l.destination_service(service);
        l.response_code = code;
        l.response_flags = flags.into();
        l
    }

    fn sample(ms: u64, bytes: u64) -> RequestSample {
        RequestSample {
            duration: Duration::from_millis(ms),
            request_bytes: bytes,
            response_bytes: bytes,
        }
    }

    #[test]
    fn counts_and_cumulative_buckets() {
        let m = Metrics::default();
        let l = labels("reviews.default.svc.cluster.local", 200, "-");
        for ms in [0, 3, 3, 20_000] {
            m.record(&l, sample(ms, 50));
        }
        m.record(&labels("a\"b", 503, "UF"), sample(0, 0));
        let text = m.render();
        let base = l.render();
        assert!(
            base.contains("destination_service_name=\"reviews\""),
            "{base}"
        );
        assert!(
            text.contains(&format!("istio_requests_total{{{base}}} 4\n")),
            "{text}"
        );
        let d = "istio_request_duration_milliseconds_bucket";
        for (le, n) in [("1", 1), ("5", 3), ("10000", 3), ("+Inf", 4)] {
            assert!(
                text.contains(&format!("{d}{{{base},le=\"{le}\"}} {n}\n")),
                "{le}: {text}"
            );
        }
        assert!(
            text.contains(&format!(
                "istio_request_bytes_bucket{{{base},le=\"10\"}} 0\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "istio_response_bytes_bucket{{{base},le=\"100\"}} 4\n"
            )),
            "{text}"
        );
        assert!(text.contains("destination_service=\"a\\\"b\""), "{text}");
    }

    #[test]
    fn tcp_counters() {
        let m = Metrics::default();
        let l = ConnectionLabels {
            reporter: Reporter::Destination,
            source_workload: "unknown".into(),
            source_workload_namespace: "unknown".into(),
            source_principal: "unknown".into(),
            destination_workload: "productpage".into(),
            destination_service: "productpage.default.svc.cluster.local".into(),
            connection_security_policy: "none".into(),
        };
        let s = m.tcp(&l);
        s.on_open();
        s.on_received(10);
        s.on_sent(20);
        s.on_close();
        let text = m.render();
        let base = l.render();
        for (name, n) in [
            ("istio_tcp_connections_opened_total", 1),
            ("istio_tcp_connections_closed_total", 1),
            ("istio_tcp_sent_bytes_total", 20),
            ("istio_tcp_received_bytes_total", 10),
        ] {
            assert!(text.contains(&format!("{name}{{{base}}} {n}\n")), "{text}");
        }
    }

    #[test]
    fn label_sets_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 10 {
            m.record(&labels(&format!("s{i}"), 200, "-"), sample(0, 0));
        }
        let text = m.render();
        assert!(text.contains("destination_service=\"other\""));
        assert_eq!(
            text.matches("istio_requests_total{").count(),
            MAX_SERIES + 1
        );
    }
}
