//! What the workers record, and how it is merged.
//!
//! Workers record into a few shards (`Mutex<Stats>`), chosen by worker index, so memory
//! is bounded by the shard count — not by connections or requests — and locks are
//! rarely contended. Nothing is stored per request: each request updates histograms and
//! counters and is forgotten. A collector task takes the per-interval part once a
//! second for the time series and the progress line.

use std::collections::BTreeMap;
use std::time::Instant;

use results::Recorder;

/// Distinct values kept per `--group-by-header`; further values count as
/// [`OTHER_GROUP`], so a header with unbounded values cannot exhaust memory.
pub const MAX_GROUPS: usize = 1000;
/// Longest group value kept, in characters; longer values are cut.
pub const MAX_GROUP_VALUE_CHARS: usize = 256;
/// The group that collects values beyond [`MAX_GROUPS`].
pub const OTHER_GROUP: &str = "(other)";

/// Why a request got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection was refused.
    ConnectRefused,
    /// The request timed out while connecting.
    ConnectTimeout,
    /// The request timed out after the connection was up.
    Timeout,
    /// The peer reset or closed the connection (or HTTP/2 stream) mid-request.
    Reset,
    /// The TLS handshake failed.
    Tls,
    /// The peer broke HTTP (malformed response, protocol violation, no h2 via ALPN).
    Protocol,
    /// Anything else (for example, no route to host).
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Tls,
        ErrorKind::Protocol,
        ErrorKind::Other,
    ];

    /// The name used in results (`errors` map keys).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Tls => "tls",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    Response {
        status: u16,
        body_bytes: u64,
        header_bytes: u64,
        /// The value of the `--group-by-header` header, if asked for.
        group: Option<&'a str>,
        /// True when the header was asked for but absent.
        group_missing: bool,
    },
    Error(ErrorKind),
}

/// Per-interval counters for the time series and progress.
#[derive(Debug, Clone)]
pub struct Interval {
    pub latency: Recorder,
    pub responses: u64,
    pub errors: u64,
}

impl Interval {
    /// Empty counters.
    pub fn new() -> Self {
        Self {
            latency: Recorder::latency(),
            responses: 0,
            errors: 0,
        }
    }
}

impl Default for Interval {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything recorded about one target, by one shard (or merged).
#[derive(Debug, Clone)]
pub struct Stats {
    pub corrected: Recorder,
    pub uncorrected: Recorder,
    pub lag: Recorder,
    pub error_latency: Recorder,
    pub sizes: Recorder,
    pub header_sizes: Recorder,
    /// Indexed by status code (0..=999).
    pub status: Vec<u64>,
    pub errors: [u64; 7],
    pub groups: BTreeMap<String, u64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub responses: u64,
    pub success: u64,
    pub first_intended: Option<Instant>,
    pub last_done: Option<Instant>,
    /// Intended time and lag (µs) of the latest-scheduled request seen.
    pub latest: Option<(Instant, u64)>,
    pub interval: Interval,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            corrected: Recorder::latency(),
            uncorrected: Recorder::latency(),
            lag: Recorder::latency(),
            error_latency: Recorder::latency(),
            sizes: Recorder::size(),
            header_sizes: Recorder::size(),
            status: vec![0; 1000],
            errors: [0; 7],
            groups: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            responses: 0,
            success: 0,
            first_intended: None,
            last_done: None,
            latest: None,
            interval: Interval::new(),
        }
    }

    /// Records one finished request: intended and actual send time, completion time,
    /// how it ended and how many request bytes were written.
    pub fn record(
        &mut self,
        intended: Instant,
        actual: Instant,
        done: Instant,
        request_bytes: u64,
        outcome: &Outcome<'_>,
    ) {
        let corrected_us = done.saturating_duration_since(intended).as_micros() as u64;
        let uncorrected_us = done.saturating_duration_since(actual).as_micros() as u64;
        let lag_us = actual.saturating_duration_since(intended).as_micros() as u64;
        self.corrected.record(corrected_us);
        self.uncorrected.record(uncorrected_us);
        self.lag.record(lag_us);
        self.interval.latency.record(corrected_us);
        self.bytes_sent += request_bytes;
        if self.first_intended.is_none_or(|t| intended < t) {
            self.first_intended = Some(intended);
        }
        if self.last_done.is_none_or(|t| done > t) {
            self.last_done = Some(done);
        }
        if self.latest.is_none_or(|(t, _)| intended >= t) {
            self.latest = Some((intended, lag_us));
        }
        match outcome {
            Outcome::Response {
                status,
                body_bytes,
                header_bytes,
                group,
                group_missing,
            } => {
                self.responses += 1;
                self.interval.responses += 1;
                if let Some(slot) = self.status.get_mut(usize::from(*status)) {
                    *slot += 1;
                }
                if (200..400).contains(status) {
                    self.success += 1;
                } else {
                    self.error_latency.record(corrected_us);
                }
                self.bytes_received += body_bytes;
                self.sizes.record(*body_bytes);
                self.header_sizes.record(*header_bytes);
                if let Some(value) = group {
                    self.count_group(value);
                } else if *group_missing {
                    self.count_group("");
                }
            }
            Outcome::Error(kind) => {
                self.errors[kind.index()] += 1;
                self.interval.errors += 1;
                self.error_latency.record(corrected_us);
            }
        }
    }

    fn count_group(&mut self, value: &str) {
        // Long values are cut (at a character boundary), so a hostile header cannot
        // make each group key large.
        let value = match value.char_indices().nth(MAX_GROUP_VALUE_CHARS) {
            Some((cut, _)) => &value[..cut],
            None => value,
        };
        if let Some(n) = self.groups.get_mut(value) {
            *n += 1;
        } else if self.groups.len() < MAX_GROUPS {
            self.groups.insert(value.to_owned(), 1);
        } else {
            *self.groups.entry(OTHER_GROUP.to_owned()).or_insert(0) += 1;
        }
    }

    /// Takes the interval counters, leaving fresh ones.
    pub fn take_interval(&mut self, into: &mut Interval) {
        into.latency
            .merge(&self.interval.latency)
            .expect("latency recorders share one range");
        into.responses += self.interval.responses;
        into.errors += self.interval.errors;
        self.interval.latency.reset();
        self.interval.responses = 0;
        self.interval.errors = 0;
    }

    /// Adds another shard's records into this one.
    pub fn merge(&mut self, other: &Stats) {
        let merge = |a: &mut Recorder, b: &Recorder| {
            a.merge(b).expect("recorders of one kind share one range")
        };
        merge(&mut self.corrected, &other.corrected);
        merge(&mut self.uncorrected, &other.uncorrected);
        merge(&mut self.lag, &other.lag);
        merge(&mut self.error_latency, &other.error_latency);
        merge(&mut self.sizes, &other.sizes);
        merge(&mut self.header_sizes, &other.header_sizes);
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        for (k, v) in &other.groups {
            if let Some(n) = self.groups.get_mut(k) {
                *n += v;
            } else if self.groups.len() < MAX_GROUPS {
                self.groups.insert(k.clone(), *v);
            } else {
                *self.groups.entry(OTHER_GROUP.to_owned()).or_insert(0) += v;
            }
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.responses += other.responses;
        self.success += other.success;
        self.first_intended = min_opt(self.first_intended, other.first_intended);
        self.last_done = max_opt(self.last_done, other.last_done);
        self.latest = match (self.latest, other.latest) {
            (Some(a), Some(b)) => Some(if b.0 >= a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        merge(&mut self.interval.latency, &other.interval.latency);
        self.interval.responses += other.interval.responses;
        self.interval.errors += other.interval.errors;
    }

    /// Total errors (no HTTP response).
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Status code → count, for codes seen.
    pub fn status_codes(&self) -> BTreeMap<String, u64> {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code.to_string(), *n))
            .collect()
    }

    /// Error kind → count, for kinds seen.
    pub fn error_kinds(&self) -> BTreeMap<String, u64> {
        ErrorKind::ALL
            .iter()
            .filter(|k| self.errors[k.index()] > 0)
            .map(|k| (k.as_str().to_owned(), self.errors[k.index()]))
            .collect()
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ok(status: u16) -> Outcome<'static> {
        Outcome::Response {
            status,
            body_bytes: 10,
            header_bytes: 50,
            group: None,
            group_missing: false,
        }
    }

    #[test]
    fn corrected_uncorrected_and_lag_are_measured_from_the_right_instants() {
        let t0 = Instant::now();
        let mut s = Stats::new();
        let ms = Duration::from_millis;
        // Intended at 0, sent at 30 ms (late), done at 40 ms.
        s.record(t0, t0 + ms(30), t0 + ms(40), 100, &ok(200));
        let near = |v: u64, want: u64| v.abs_diff(want) <= want / 500 + 1;
        assert!(near(s.corrected.summary().max, 40_000));
        assert!(near(s.uncorrected.summary().max, 10_000));
        assert!(near(s.lag.summary().max, 30_000));
        assert_eq!(s.latest.unwrap().1, 30_000);
    }

    #[test]
    fn statuses_errors_and_success() {
        let t = Instant::now();
        let mut s = Stats::new();
        s.record(t, t, t, 0, &ok(200));
        s.record(t, t, t, 0, &ok(302));
        s.record(t, t, t, 0, &ok(503));
        s.record(t, t, t, 0, &Outcome::Error(ErrorKind::Reset));
        assert_eq!((s.responses, s.success, s.errors_total()), (3, 2, 1));
        assert_eq!(s.status_codes().get("503"), Some(&1));
        assert_eq!(s.error_kinds().get("reset"), Some(&1));
        assert_eq!(s.error_latency.len(), 2, "503 and the reset");
    }

    #[test]
    fn groups_are_bounded() {
        let t = Instant::now();
        let mut s = Stats::new();
        for i in 0..(MAX_GROUPS + 10) {
            let v = format!("backend-{i}");
            let o = Outcome::Response {
                status: 200,
                body_bytes: 0,
                header_bytes: 0,
                group: Some(&v),
                group_missing: false,
            };
            s.record(t, t, t, 0, &o);
        }
        assert_eq!(s.groups.len(), MAX_GROUPS + 1);
        assert_eq!(s.groups.get(OTHER_GROUP), Some(&10));
    }

    #[test]
    fn merge_adds_everything() {
        let t = Instant::now();
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.record(t, t, t + Duration::from_millis(1), 7, &ok(200));
        b.record(t, t, t + Duration::from_millis(2), 8, &ok(500));
        b.record(t, t, t, 0, &Outcome::Error(ErrorKind::Timeout));
        a.merge(&b);
        assert_eq!(a.responses, 2);
        assert_eq!(a.errors_total(), 1);
        assert_eq!(a.bytes_sent, 15);
        assert_eq!(a.corrected.len(), 3);
        assert_eq!(a.interval.responses, 2);
        assert_eq!(a.interval.errors, 1);
        assert_eq!(a.last_done, Some(t + Duration::from_millis(2)));
    }
}
