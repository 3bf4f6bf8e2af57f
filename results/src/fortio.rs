//! Fortio-compatible JSON for `meshrig load --fortio-json FILE`.
//!
//! [`FortioResult`] has the shape of the JSON Fortio writes for an HTTP load test
//! (`fortio load -json FILE` / `-a`): Go's `fhttp.HTTPRunnerResults`, which embeds
//! `periodic.RunnerResults` and `fhttp.HTTPOptions` (itself embedding `TLSOptions`).
//! Every exported, JSON-marshalled field is present, under Fortio's exact name and in
//! Fortio's order, so `fortio report` and tools that read Fortio result files read ours.
//!
//! Histograms are exported the way Fortio's `stats.Histogram.Export()` does: Fortio's
//! fixed bucket boundaries (`0, 1, 2, … 11, 12, 14, … 100000` times a divider — 1 ms for
//! durations, 100 B for body sizes, 5 B for header sizes), intervals open on the left
//! and closed on the right (`]prev, cur]`), empty buckets left out, the first bucket
//! starting at `Min`, the last ending at `Max`, `Percent` cumulative. Our input is an
//! HDR histogram, so each HDR bucket is placed by its median-equivalent value.
//!
//! Percentiles are read from the HDR histogram (within 0.1% of the true value) rather
//! than interpolated inside Fortio's coarse buckets. See `docs/fortio-json.md` for the
//! field mapping and the known differences.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::histogram::{HistogramError, Recorder, Summary};
use crate::schema::LoadResult;

/// Percentiles emitted for the duration histograms: Fortio's default `-p` list.
pub const FORTIO_PERCENTILES: [f64; 5] = [50.0, 75.0, 90.0, 99.0, 99.9];

/// Fortio's default `-r` resolution: the duration histogram's divider, in seconds.
pub const FORTIO_RESOLUTION_S: f64 = 0.001;

/// `RunType` of an HTTP run.
pub const FORTIO_RUN_TYPE_HTTP: &str = "HTTP";

/// Fortio's histogram bucket boundaries, in units of the histogram's divider.
const BUCKET_VALUES: [u64; 56] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, // by 1
    12, 14, 16, 18, 20, // by 2
    25, 30, 35, 40, 45, 50, // by 5
    60, 70, 80, 90, 100, // by 10
    120, 140, 160, 180, 200, // by 20
    250, 300, 350, 400, 450, 500, // by 50
    600, 700, 800, 900, 1000, // by 100
    2000, 3000, 4000, 5000, 7500, 10000, // coarser
    20000, 30000, 40000, 50000, 75000, 100000, // coarser still
];

/// One bucket per boundary (the first holds values ≤ 0) plus one for values above the
/// last boundary.
const NUM_BUCKETS: usize = BUCKET_VALUES.len() + 1;

/// How one of our histograms maps onto Fortio's: `unit` is the divider expressed in
/// our recorded unit, `per_fortio_unit` converts our unit to Fortio's.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Fortio's divider in our unit (1 ms = 1000 µs; 100 B; 5 B).
    unit: u64,
    /// Our values ÷ this = Fortio's values (µs → s: 1e6; bytes → bytes: 1).
    per_fortio_unit: f64,
}

/// Durations: recorded in µs, written in seconds, Fortio divider 1 ms.
const DURATION_SCALE: Scale = Scale {
    unit: 1_000,
    per_fortio_unit: 1e6,
};
/// Body sizes: Fortio's `stats.NewHistogram(0, 100)`.
const SIZE_SCALE: Scale = Scale {
    unit: 100,
    per_fortio_unit: 1.0,
};
/// Header sizes: Fortio's `stats.NewHistogram(0, 5)`.
const HEADER_SIZE_SCALE: Scale = Scale {
    unit: 5,
    per_fortio_unit: 1.0,
};

/// Why a [`LoadResult`] could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum FortioError {
    /// One of the result's serialized HDR histograms could not be decoded.
    #[error("cannot convert {field} to Fortio JSON: {source}")]
    Histogram {
        /// The `LoadResult` field holding the histogram (`latency_us`, ...).
        field: &'static str,
        #[source]
        source: HistogramError,
    },
}

/// A Fortio HTTP load-test result (`fhttp.HTTPRunnerResults` as Fortio marshals it).
///
/// Field order follows Fortio's struct embedding, so the file reads like Fortio's own.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FortioResult {
    // --- periodic.RunnerResults ---
    /// Always `"HTTP"` for meshrig runs.
    #[serde(rename = "RunType")]
    pub run_type: String,
    #[serde(rename = "Labels")]
    pub labels: String,
    /// RFC 3339 start of the run.
    #[serde(rename = "StartTime")]
    pub start_time: String,
    /// Target rate formatted like Go's `%.9g`, or `"max"` for as fast as possible.
    #[serde(rename = "RequestedQPS")]
    pub requested_qps: String,
    /// Go `time.Duration` string (`"5s"`, `"1m0s"`), `"exactly N calls"` or
    /// `"until stop"`.
    #[serde(rename = "RequestedDuration")]
    pub requested_duration: String,
    /// Calls (responses and socket errors) per second over `ActualDuration`.
    #[serde(rename = "ActualQPS")]
    pub actual_qps: f64,
    /// Nanoseconds (a Go `time.Duration`).
    #[serde(rename = "ActualDuration")]
    pub actual_duration: u64,
    #[serde(rename = "NumThreads")]
    pub num_threads: u64,
    #[serde(rename = "Version")]
    pub version: String,
    /// All calls, seconds.
    #[serde(rename = "DurationHistogram")]
    pub duration_histogram: FortioHistogram,
    /// The failed calls, seconds (a subset of `DurationHistogram`).
    #[serde(rename = "ErrorsDurationHistogram")]
    pub errors_duration_histogram: FortioHistogram,
    /// The requested exact number of calls, 0 for a duration run.
    #[serde(rename = "Exactly")]
    pub exactly: u64,
    #[serde(rename = "Jitter")]
    pub jitter: bool,
    #[serde(rename = "Uniform")]
    pub uniform: bool,
    #[serde(rename = "NoCatchUp")]
    pub no_catch_up: bool,
    #[serde(rename = "RunID")]
    pub run_id: i64,
    #[serde(rename = "AccessLoggerInfo")]
    pub access_logger_info: String,
    /// `YYYY-MM-DD-HHMMSS[_RunID][_labels]`, the name Fortio gives the saved file.
    #[serde(rename = "ID")]
    pub id: String,

    // --- fhttp.HTTPRunnerResults ---
    /// HTTP status → count; `-1` counts socket-level errors.
    #[serde(rename = "RetCodes")]
    pub ret_codes: BTreeMap<i32, u64>,
    /// `ip:port` → connections; meshrig does not record it, so it is empty.
    #[serde(rename = "IPCountMap")]
    pub ip_count_map: BTreeMap<String, u64>,

    // --- fhttp.HTTPOptions (with TLSOptions embedded first) ---
    #[serde(rename = "Insecure")]
    pub insecure: bool,
    #[serde(rename = "MTLS")]
    pub mtls: bool,
    #[serde(rename = "CACert")]
    pub ca_cert: String,
    #[serde(rename = "Cert")]
    pub cert: String,
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "UnixDomainSocket")]
    pub unix_domain_socket: String,
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "NumConnections")]
    pub num_connections: u64,
    #[serde(rename = "Compression")]
    pub compression: bool,
    #[serde(rename = "DisableFastClient")]
    pub disable_fast_client: bool,
    #[serde(rename = "HTTP10")]
    pub http10: bool,
    #[serde(rename = "H2")]
    pub h2: bool,
    #[serde(rename = "DisableKeepAlive")]
    pub disable_keep_alive: bool,
    #[serde(rename = "AllowHalfClose")]
    pub allow_half_close: bool,
    #[serde(rename = "FollowRedirects")]
    pub follow_redirects: bool,
    #[serde(rename = "Resolve")]
    pub resolve: String,
    /// Per-request timeout, nanoseconds.
    #[serde(rename = "HTTPReqTimeOut")]
    pub http_req_timeout: u64,
    #[serde(rename = "UserCredentials")]
    pub user_credentials: String,
    #[serde(rename = "ContentType")]
    pub content_type: String,
    /// The request body, base64 (Go `[]byte`); `null` — meshrig keeps only its length.
    #[serde(rename = "Payload")]
    pub payload: Option<String>,
    /// The method when it is not the one Fortio infers (GET, or POST with a payload).
    #[serde(rename = "MethodOverride")]
    pub method_override: String,
    #[serde(rename = "LogErrors")]
    pub log_errors: bool,
    #[serde(rename = "SequentialWarmup")]
    pub sequential_warmup: bool,
    #[serde(rename = "ConnReuseRange")]
    pub conn_reuse_range: [u64; 2],
    #[serde(rename = "NoResolveEachConn")]
    pub no_resolve_each_conn: bool,
    /// Histogram offset, nanoseconds.
    #[serde(rename = "Offset")]
    pub offset: i64,
    /// Histogram divider for durations, seconds.
    #[serde(rename = "Resolution")]
    pub resolution: f64,

    // --- fhttp.HTTPRunnerResults, continued ---
    /// Response body sizes, bytes.
    #[serde(rename = "Sizes")]
    pub sizes: FortioHistogram,
    /// Response header sizes, bytes.
    #[serde(rename = "HeaderSizes")]
    pub header_sizes: FortioHistogram,
    /// Sockets opened per connection.
    #[serde(rename = "Sockets")]
    pub sockets: Vec<u64>,
    #[serde(rename = "SocketCount")]
    pub socket_count: u64,
    /// Connection-establishment times; meshrig does not record them, so it is empty.
    #[serde(rename = "ConnectionStats")]
    pub connection_stats: FortioHistogram,
    #[serde(rename = "AbortOn")]
    pub abort_on: i32,
}

/// Fortio's `stats.HistogramData`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct FortioHistogram {
    #[serde(rename = "Count")]
    pub count: u64,
    #[serde(rename = "Min")]
    pub min: f64,
    #[serde(rename = "Max")]
    pub max: f64,
    #[serde(rename = "Sum")]
    pub sum: f64,
    #[serde(rename = "Avg")]
    pub avg: f64,
    #[serde(rename = "StdDev")]
    pub std_dev: f64,
    /// Non-empty buckets in increasing order; `null` in JSON when there is no data.
    #[serde(rename = "Data", with = "empty_as_null", default)]
    pub data: Vec<FortioBucket>,
    /// Omitted from JSON when empty (Fortio's `omitempty`).
    #[serde(rename = "Percentiles", default, skip_serializing_if = "Vec::is_empty")]
    pub percentiles: Vec<FortioPercentile>,
}

/// Fortio's `stats.Bucket`: the interval `]Start, End]` (the first one includes
/// `Start`), the cumulative percentage of values ≤ `End`, and the bucket's count.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FortioBucket {
    #[serde(rename = "Start")]
    pub start: f64,
    #[serde(rename = "End")]
    pub end: f64,
    #[serde(rename = "Percent")]
    pub percent: f64,
    #[serde(rename = "Count")]
    pub count: u64,
}

/// Fortio's `stats.Percentile`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FortioPercentile {
    #[serde(rename = "Percentile")]
    pub percentile: f64,
    #[serde(rename = "Value")]
    pub value: f64,
}

/// Go marshals a nil slice as `null`; Fortio's empty histograms have `"Data": null`.
mod empty_as_null {
    use super::*;

    pub fn serialize<S: Serializer>(data: &[FortioBucket], s: S) -> Result<S::Ok, S::Error> {
        if data.is_empty() {
            s.serialize_none()
        } else {
            s.collect_seq(data)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FortioBucket>, D::Error> {
        Ok(Option::<Vec<FortioBucket>>::deserialize(d)?.unwrap_or_default())
    }
}

impl FortioResult {
    /// Converts a meshrig load result into Fortio's HTTP result format.
    ///
    /// Fails only when one of the result's serialized histograms cannot be decoded.
    pub fn from_load(result: &LoadResult) -> Result<Self, FortioError> {
        let decode = |field: &'static str, summary: &Summary| {
            summary
                .recorder()
                .map_err(|source| FortioError::Histogram { field, source })
        };
        let latency = decode("latency_us", &result.latency_us)?;
        let error_latency = decode("error_latency_us", &result.error_latency_us)?;
        let sizes = decode("response_size_bytes", &result.response_size_bytes)?;
        let header_sizes = decode(
            "response_header_size_bytes",
            &result.response_header_size_bytes,
        )?;

        let duration_histogram = fortio_histogram(&latency, DURATION_SCALE, &FORTIO_PERCENTILES);
        let errors_duration_histogram =
            fortio_histogram(&error_latency, DURATION_SCALE, &FORTIO_PERCENTILES);

        // Fortio: ActualQPS = calls recorded in DurationHistogram ÷ elapsed seconds.
        let elapsed_s = result.duration_ns as f64 / 1e9;
        let actual_qps = if elapsed_s > 0.0 {
            round15(duration_histogram.count as f64 / elapsed_s)
        } else {
            0.0
        };

        let exactly = result.requests_requested.unwrap_or(0);
        let requested_duration = match (result.requests_requested, result.duration_requested_ns) {
            (Some(n), _) if duration_histogram.count != n => {
                // Fortio's wording for an exact-count run that stopped short.
                format!(
                    "exactly {n} calls, interrupted after {}",
                    duration_histogram.count
                )
            }
            (Some(n), _) => format!("exactly {n} calls"),
            (None, Some(ns)) if ns > 0 => go_duration_string(ns),
            (None, _) => "until stop".to_owned(),
        };

        let target = &result.target;
        let connections = u64::from(target.connections);
        let h2 = target.http_version.eq_ignore_ascii_case("h2");
        let method_override = if target.method.eq_ignore_ascii_case("GET") {
            String::new()
        } else {
            target.method.clone()
        };

        Ok(Self {
            run_type: FORTIO_RUN_TYPE_HTTP.to_owned(),
            labels: result.labels.clone(),
            start_time: result.started_at.clone(),
            requested_qps: requested_qps(result.rps_target),
            requested_duration,
            actual_qps,
            actual_duration: result.duration_ns,
            num_threads: connections * u64::from(target.streams_per_connection),
            version: format!("meshrig-{}", result.provenance.meshrig_version),
            duration_histogram,
            errors_duration_histogram,
            exactly,
            jitter: false,
            uniform: false,
            // meshrig's open loop sends late requests as soon as it can (catches up).
            no_catch_up: false,
            run_id: 0,
            access_logger_info: String::new(),
            id: fortio_id(&result.started_at, 0, &result.labels),
            ret_codes: ret_codes(result),
            ip_count_map: BTreeMap::new(),
            insecure: false,
            mtls: false,
            ca_cert: String::new(),
            cert: String::new(),
            key: String::new(),
            unix_domain_socket: String::new(),
            url: target.url.clone(),
            num_connections: connections,
            compression: false,
            // Fortio's fast client is HTTP/1.x only; it uses the Go client for h2.
            disable_fast_client: h2,
            http10: false,
            h2,
            disable_keep_alive: false,
            allow_half_close: false,
            follow_redirects: false,
            resolve: String::new(),
            http_req_timeout: target.timeout_ns,
            user_credentials: String::new(),
            content_type: String::new(),
            payload: None,
            method_override,
            log_errors: false,
            sequential_warmup: false,
            conn_reuse_range: [0, 0],
            no_resolve_each_conn: false,
            offset: 0,
            resolution: FORTIO_RESOLUTION_S,
            sizes: fortio_histogram(&sizes, SIZE_SCALE, &[]),
            header_sizes: fortio_histogram(&header_sizes, HEADER_SIZE_SCALE, &[]),
            sockets: vec![1; target.connections as usize],
            socket_count: connections,
            connection_stats: FortioHistogram::default(),
            abort_on: 0,
        })
    }

    /// The JSON text Fortio would write: two-space indentation and a final newline
    /// (Go's `json.MarshalIndent(res, "", "  ")` + `"\n"`).
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .expect("FortioResult has only string/integer map keys and finite numbers");
        text.push('\n');
        text
    }
}

/// Status codes with integer keys, plus `-1` for requests that got no HTTP response.
fn ret_codes(result: &LoadResult) -> BTreeMap<i32, u64> {
    let mut codes = BTreeMap::new();
    for (code, &count) in &result.status_codes {
        // Status codes are always numeric in meshrig results; anything else is skipped.
        if let Ok(code) = code.trim().parse::<i32>() {
            *codes.entry(code).or_insert(0) += count;
        }
    }
    if result.errors_total > 0 {
        *codes.entry(-1).or_insert(0) += result.errors_total;
    }
    codes
}

/// `"max"` when there is no (usable) target rate, else Go's `%.9g` of it.
fn requested_qps(rps_target: Option<f64>) -> String {
    match rps_target {
        Some(qps) if qps.is_finite() && qps > 0.0 => go_format_g9(qps),
        _ => "max".to_owned(),
    }
}

/// Builds Fortio's exported histogram from an HDR histogram.
fn fortio_histogram(rec: &Recorder, scale: Scale, percentiles: &[f64]) -> FortioHistogram {
    let hdr = rec.hdr();
    if hdr.is_empty() {
        return FortioHistogram::default();
    }
    let to_fortio = |v: u64| v as f64 / scale.per_fortio_unit;
    let count = hdr.len();
    let (min_raw, max_raw) = (hdr.min(), hdr.max());
    let mean = hdr.mean() / scale.per_fortio_unit;

    // Place every HDR bucket, by its median-equivalent value, into Fortio's buckets.
    let mut counts = [0u64; NUM_BUCKETS];
    for v in hdr.iter_recorded() {
        let value = hdr
            .median_equivalent(v.value_iterated_to())
            .clamp(min_raw, max_raw);
        counts[bucket_index(value, scale.unit)] += v.count_at_value();
    }

    let mut data: Vec<FortioBucket> = Vec::new();
    let mut cumulative = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        cumulative += n;
        // Fortio starts the first bucket at Min; the others at the previous boundary
        // (i > 0 there, since bucket 0 can only come first).
        let start = if data.is_empty() {
            to_fortio(min_raw)
        } else {
            to_fortio(BUCKET_VALUES[i - 1] * scale.unit)
        };
        let end = match BUCKET_VALUES.get(i) {
            Some(&b) => to_fortio(b * scale.unit),
            None => to_fortio(max_raw),
        };
        data.push(FortioBucket {
            start,
            end,
            percent: round15(100.0 * cumulative as f64 / count as f64),
            count: n,
        });
    }
    if let Some(last) = data.last_mut() {
        last.end = to_fortio(max_raw);
    }

    FortioHistogram {
        count,
        min: to_fortio(min_raw),
        max: to_fortio(max_raw),
        sum: round15(mean * count as f64),
        avg: round15(mean),
        std_dev: round15(hdr.stdev() / scale.per_fortio_unit),
        data,
        percentiles: percentiles
            .iter()
            .map(|&p| FortioPercentile {
                percentile: p,
                value: to_fortio(rec.value_at_percentile(p)),
            })
            .collect(),
    }
}

/// Index of Fortio's bucket holding `value` (in our unit), for a divider of `unit`.
///
/// Bucket 0 holds values ≤ 0; bucket `i` holds `]B[i-1]·unit, B[i]·unit]`; the extra
/// last bucket holds values above the last boundary.
fn bucket_index(value: u64, unit: u64) -> usize {
    BUCKET_VALUES.partition_point(|&b| b * unit < value)
}

/// Rounds to 15 significant digits. Such a number is written by serde_json with at
/// most 15 digits and read back bit-exactly, whatever float parser the reader uses.
fn round15(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return 0.0;
    }
    format!("{x:.14e}").parse().unwrap_or(x)
}

/// Go's `fmt.Sprintf("%.9g", x)` for a finite `x`: 9 significant digits, trailing
/// zeros removed, exponent form when the exponent is < -4 or ≥ 9.
fn go_format_g9(x: f64) -> String {
    if x == 0.0 {
        return "0".to_owned();
    }
    let sci = format!("{x:.8e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} output has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if !(-4..9).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_fraction_zeros(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(8 - exp).unwrap_or(0);
        trim_fraction_zeros(&format!("{x:.decimals$}")).to_owned()
    }
}

fn trim_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Go's `time.Duration.String()`: `"0s"`, `"1.5µs"`, `"100ms"`, `"5s"`, `"1m0s"`,
/// `"1h2m3.5s"`.
fn go_duration_string(ns: u64) -> String {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < S {
        let (unit, per) = match ns {
            n if n < US => ("ns", 1),
            n if n < MS => ("µs", US),
            _ => ("ms", MS),
        };
        return format!("{}{}{unit}", ns / per, fraction(ns % per, per));
    }
    let secs = ns / S;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let seconds = format!("{s}{}s", fraction(ns % S, S));
    match (h, secs / 60) {
        (0, 0) => seconds,
        (0, _) => format!("{m}m{seconds}"),
        _ => format!("{h}h{m}m{seconds}"),
    }
}

/// `.ddd` for `rem / per` (per a power of ten), trailing zeros removed; `""` for 0.
fn fraction(rem: u64, per: u64) -> String {
    if rem == 0 {
        return String::new();
    }
    let width = per.ilog10() as usize;
    format!(".{:0width$}", rem).trim_end_matches('0').to_owned()
}

/// Fortio's result ID: `YYYY-MM-DD-HHMMSS`, then `_RunID` when non-zero, then `_` and
/// the labels with every run of non-alphanumeric characters turned into one `_`
/// (none at either end), truncated to 96 bytes.
fn fortio_id(start_time: &str, run_id: i64, labels: &str) -> String {
    let mut id = id_timestamp(start_time).unwrap_or_else(|| "0000-00-00-000000".to_owned());
    if run_id != 0 {
        id.push_str(&format!("_{run_id}"));
    }
    let mut sanitized = String::new();
    let mut last_was_sep = true; // no leading separator
    for c in labels.chars() {
        if c.is_ascii_alphanumeric() {
            sanitized.push(c);
            last_was_sep = false;
        } else if !last_was_sep {
            sanitized.push('_');
            last_was_sep = true;
        }
    }
    let sanitized = sanitized.trim_end_matches('_');
    if !sanitized.is_empty() {
        id.push('_');
        id.push_str(sanitized);
    }
    id.truncate(96); // ASCII only, so any byte index is a char boundary
    id
}

/// `YYYY-MM-DD-HHMMSS` from the date and time written in an RFC 3339 timestamp.
fn id_timestamp(rfc3339: &str) -> Option<String> {
    let b = rfc3339.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let digits_at = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = digits_at(0..4)
        && b[4] == b'-'
        && digits_at(5..7)
        && b[7] == b'-'
        && digits_at(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits_at(11..13)
        && b[13] == b':'
        && digits_at(14..16)
        && b[16] == b':'
        && digits_at(17..19);
    ok.then(|| {
        format!(
            "{}-{}-{}-{}{}{}",
            &rfc3339[0..4],
            &rfc3339[5..7],
            &rfc3339[8..10],
            &rfc3339[11..13],
            &rfc3339[14..16],
            &rfc3339[17..19]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{
        LoadMode, Machine, ProcessStats, Provenance, SCHEMA, ScheduleReport, TargetInfo,
    };
    use serde_json::Value;

    /// Latencies (µs, count) recorded into `latency_us`: 100 calls spread over
    /// several Fortio buckets, including an exact bucket boundary (1000 µs = 1 ms)
    /// and two calls above Fortio's last boundary (100 s).
    const LATENCIES: [(u64, u64); 9] = [
        (500, 10),
        (1_000, 5),
        (1_500, 20),
        (2_500, 30),
        (9_500, 10),
        (12_345, 15),
        (25_500, 5),
        (150_000, 3),
        (120_000_000, 2),
    ];

    fn recorder_of(values: &[(u64, u64)], mut rec: Recorder) -> Recorder {
        for &(v, n) in values {
            for _ in 0..n {
                rec.record(v);
            }
        }
        rec
    }

    fn latency_recorder() -> Recorder {
        recorder_of(&LATENCIES, Recorder::latency())
    }

    /// 90 × 200, 6 × 503, 4 socket errors = 100 calls.
    fn load_result(
        rps_target: Option<f64>,
        requests_requested: Option<u64>,
        duration_requested_ns: Option<u64>,
    ) -> LoadResult {
        let errors = recorder_of(
            &[(9_500, 6), (150_000, 2), (120_000_000, 2)],
            Recorder::latency(),
        );
        let sizes = recorder_of(&[(413, 90), (0, 6)], Recorder::size());
        let header_sizes = recorder_of(&[(230, 90), (150, 6)], Recorder::size());
        let empty = Recorder::latency().summary();
        LoadResult {
            schema: SCHEMA.to_owned(),
            kind: "load".to_owned(),
            labels: "mesh / baseline v2".to_owned(),
            started_at: "2024-01-02T15:04:05.123456789Z".to_owned(),
            interrupted: false,
            target: TargetInfo {
                url: "http://echo.local:8080/echo".to_owned(),
                method: "GET".to_owned(),
                http_version: "http/1.1".to_owned(),
                connections: 4,
                streams_per_connection: 1,
                tls: false,
                body_bytes: 0,
                timeout_ns: 3_000_000_000,
            },
            mode: if rps_target.is_some() {
                LoadMode::Open
            } else {
                LoadMode::Closed
            },
            rps_target,
            rps_actual: 19.2,
            duration_ns: 5_000_000_000,
            duration_requested_ns,
            requests_requested,
            requests_total: 100,
            responses_total: 96,
            success_total: 90,
            errors_total: 4,
            stale_connection_retries: 0,
            status_codes: [("200".to_owned(), 90), ("503".to_owned(), 6)].into(),
            errors: [("connect_refused".to_owned(), 4)].into(),
            latency_us: latency_recorder().summary(),
            latency_uncorrected_us: latency_recorder().summary(),
            send_lag_us: empty.clone(),
            error_latency_us: errors.summary(),
            response_size_bytes: sizes.summary(),
            response_header_size_bytes: header_sizes.summary(),
            bytes_sent: 0,
            bytes_received: 413 * 90,
            schedule: ScheduleReport {
                target_met: true,
                unsent_total: 0,
                behind_max_us: 0,
                behind_at_end_us: 0,
                scheduler_cpu_ns: 0,
                scheduler_cpu_percent: 0.0,
            },
            groups: BTreeMap::new(),
            timeseries: Vec::new(),
            process: ProcessStats {
                cpu_user_ns: 0,
                cpu_system_ns: 0,
                max_rss_bytes: 0,
            },
            warnings: Vec::new(),
            provenance: Provenance {
                meshrig_version: "0.1.0".to_owned(),
                command: vec!["meshrig".to_owned(), "load".to_owned()],
                machine: Machine {
                    hostname: "lab".to_owned(),
                    os: "linux".to_owned(),
                    arch: "x86_64".to_owned(),
                    cpus: 2,
                },
            },
        }
    }

    fn convert(result: &LoadResult) -> (FortioResult, Value) {
        let fortio = FortioResult::from_load(result).expect("histograms decode");
        let json: Value = serde_json::from_str(&fortio.to_json_pretty()).expect("valid JSON");
        (fortio, json)
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
    }

    /// The top-level keys of a real Fortio 1.57.3 HTTP result: the
    /// `EndpointResults["http://httpbin.default/get"]` object of `fortioResultJSON` in
    /// iter8-tools/iter8 `metrics/server_test.go` (output of Fortio's
    /// `fhttp.HTTPRunnerResults`, "Version": "1.57.3"). The key list only, not the file.
    const FORTIO_1_57_3_TOP_LEVEL_KEYS: [&str; 53] = [
        "RunType",
        "Labels",
        "StartTime",
        "RequestedQPS",
        "RequestedDuration",
        "ActualQPS",
        "ActualDuration",
        "NumThreads",
        "Version",
        "DurationHistogram",
        "ErrorsDurationHistogram",
        "Exactly",
        "Jitter",
        "Uniform",
        "NoCatchUp",
        "RunID",
        "AccessLoggerInfo",
        "ID",
        "RetCodes",
        "IPCountMap",
        "Insecure",
        "MTLS",
        "CACert",
        "Cert",
        "Key",
        "UnixDomainSocket",
        "URL",
        "NumConnections",
        "Compression",
        "DisableFastClient",
        "HTTP10",
        "H2",
        "DisableKeepAlive",
        "AllowHalfClose",
        "FollowRedirects",
        "Resolve",
        "HTTPReqTimeOut",
        "UserCredentials",
        "ContentType",
        "Payload",
        "MethodOverride",
        "LogErrors",
        "SequentialWarmup",
        "ConnReuseRange",
        "NoResolveEachConn",
        "Offset",
        "Resolution",
        "Sizes",
        "HeaderSizes",
        "Sockets",
        "SocketCount",
        "ConnectionStats",
        "AbortOn",
    ];

    #[test]
    fn top_level_keys_are_exactly_fortios_in_fortios_order() {
        let (fortio, json) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut ours = keys.clone();
        let mut theirs = FORTIO_1_57_3_TOP_LEVEL_KEYS.to_vec();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(ours, theirs, "same set of keys as Fortio 1.57.3");
        // And in Fortio's (Go struct) order, checked on the pretty text, since
        // serde_json::Value sorts keys.
        let text = fortio.to_json_pretty();
        let positions: Vec<usize> = FORTIO_1_57_3_TOP_LEVEL_KEYS
            .iter()
            .map(|k| {
                text.find(&format!("\n  \"{k}\":"))
                    .unwrap_or_else(|| panic!("{k}"))
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn required_keys_have_fortios_json_types() {
        let (_, json) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        for key in [
            "RunType",
            "Labels",
            "StartTime",
            "RequestedQPS",
            "RequestedDuration",
            "Version",
            "URL",
            "ID",
        ] {
            assert!(json[key].is_string(), "{key} is a string");
        }
        for key in [
            "ActualDuration",
            "NumThreads",
            "NumConnections",
            "Exactly",
            "SocketCount",
        ] {
            assert!(json[key].is_u64(), "{key} is an integer: {}", json[key]);
        }
        assert!(json["RunID"].is_i64() && json["AbortOn"].is_i64() && json["Offset"].is_i64());
        assert!(json["ActualQPS"].is_f64() && json["Resolution"].is_f64());
        for key in [
            "Jitter",
            "Uniform",
            "NoCatchUp",
            "H2",
            "HTTP10",
            "DisableFastClient",
        ] {
            assert!(json[key].is_boolean(), "{key} is a bool");
        }
        assert!(json["RetCodes"].is_object() && json["IPCountMap"].is_object());
        assert!(json["Sockets"].is_array() && json["ConnReuseRange"].is_array());
        assert!(json["Payload"].is_null());

        assert_eq!(json["RunType"], "HTTP");
        assert_eq!(json["StartTime"], "2024-01-02T15:04:05.123456789Z");
        assert_eq!(json["ActualDuration"], 5_000_000_000u64);
        assert_eq!(json["NumThreads"], 4);
        assert_eq!(json["URL"], "http://echo.local:8080/echo");
        assert_eq!(json["HTTPReqTimeOut"], 3_000_000_000u64);
        assert_eq!(json["Resolution"], 0.001);
        assert_eq!(json["ID"], "2024-01-02-150405_mesh_baseline_v2");
        // 100 calls (including socket errors) over 5 s, as Fortio counts them.
        assert_eq!(json["ActualQPS"], 20.0);

        for key in [
            "DurationHistogram",
            "ErrorsDurationHistogram",
            "Sizes",
            "HeaderSizes",
        ] {
            let h = &json[key];
            assert!(h["Count"].is_u64(), "{key}.Count");
            for f in ["Min", "Max", "Sum", "Avg", "StdDev"] {
                assert!(h[f].is_number(), "{key}.{f}");
            }
            for b in h["Data"].as_array().unwrap_or_else(|| panic!("{key}.Data")) {
                assert!(b["Start"].is_number() && b["End"].is_number());
                assert!(b["Percent"].is_number() && b["Count"].is_u64());
            }
        }
        for key in ["DurationHistogram", "ErrorsDurationHistogram"] {
            for p in json[key]["Percentiles"].as_array().unwrap() {
                assert!(p["Percentile"].is_number() && p["Value"].is_number());
            }
        }
        // Fortio calculates no percentiles for sizes (omitempty drops the key).
        assert!(json["Sizes"].get("Percentiles").is_none());
        assert!(json["HeaderSizes"].get("Percentiles").is_none());
    }

    #[test]
    fn requested_qps_is_max_or_go_g9() {
        let (_, json) = convert(&load_result(None, None, Some(5_000_000_000)));
        assert_eq!(json["RequestedQPS"], "max");
        let (_, json) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        assert_eq!(json["RequestedQPS"], "1000");
        assert_eq!(requested_qps(Some(0.0)), "max");
        assert_eq!(requested_qps(Some(f64::NAN)), "max");
        assert_eq!(requested_qps(Some(f64::INFINITY)), "max");
        assert_eq!(go_format_g9(8.0), "8");
        assert_eq!(go_format_g9(0.5), "0.5");
        assert_eq!(go_format_g9(1234.5678), "1234.5678");
        assert_eq!(go_format_g9(100.0 / 3.0), "33.3333333");
        assert_eq!(go_format_g9(123_456_789.0), "123456789");
        assert_eq!(go_format_g9(1e9), "1e+09");
        assert_eq!(go_format_g9(0.0001), "0.0001");
        assert_eq!(go_format_g9(0.00001234), "1.234e-05");
    }

    #[test]
    fn requested_duration_is_exact_count_or_go_duration() {
        let (fortio, json) = convert(&load_result(Some(1000.0), Some(100), None));
        assert_eq!(json["RequestedDuration"], "exactly 100 calls");
        assert_eq!(fortio.exactly, 100);
        assert_eq!(json["Exactly"], 100);

        let (fortio, json) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        assert_eq!(json["RequestedDuration"], "5s");
        assert_eq!(fortio.exactly, 0);

        let (_, json) = convert(&load_result(None, Some(150), None));
        assert_eq!(
            json["RequestedDuration"],
            "exactly 150 calls, interrupted after 100"
        );
        let (_, json) = convert(&load_result(None, None, None));
        assert_eq!(json["RequestedDuration"], "until stop");

        let s = 1_000_000_000u64;
        for (ns, go) in [
            (0, "0s"),
            (5, "5ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (1_234_567, "1.234567ms"),
            (s, "1s"),
            (s + s / 2, "1.5s"),
            (60 * s, "1m0s"),
            (90 * s + s / 2, "1m30.5s"),
            (3_600 * s, "1h0m0s"),
            (3_661 * s + 1_000_000, "1h1m1.001s"),
            (s + 1, "1.000000001s"),
        ] {
            assert_eq!(go_duration_string(ns), go, "{ns} ns");
        }
    }

    #[test]
    fn ret_codes_have_integer_keys_and_minus_one_for_socket_errors() {
        let (fortio, json) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        let codes = json["RetCodes"].as_object().unwrap();
        assert_eq!(codes.len(), 3);
        assert_eq!(codes["200"], 90);
        assert_eq!(codes["503"], 6);
        assert_eq!(codes["-1"], 4);
        // Every call has exactly one code, as in Fortio.
        let total: u64 = fortio.ret_codes.values().sum();
        assert_eq!(total, fortio.duration_histogram.count);

        let mut no_errors = load_result(None, None, Some(5_000_000_000));
        no_errors.errors_total = 0;
        let (fortio, _) = convert(&no_errors);
        assert!(
            !fortio.ret_codes.contains_key(&-1),
            "no -1 without socket errors"
        );
    }

    /// Fortio's invariants for an exported histogram.
    fn assert_fortio_histogram(h: &FortioHistogram) {
        assert!(!h.data.is_empty());
        let total: u64 = h.data.iter().map(|b| b.count).sum();
        assert_eq!(total, h.count, "bucket counts sum to Count");
        let mut cumulative = 0u64;
        let mut prev_percent = 0.0;
        let mut prev_end = f64::NEG_INFINITY;
        for b in &h.data {
            cumulative += b.count;
            assert!(b.count > 0, "empty buckets are left out");
            assert!(b.start <= b.end, "{b:?}");
            assert!(b.start >= prev_end, "buckets are ordered: {b:?}");
            assert!(b.percent >= prev_percent, "Percent is non-decreasing");
            assert!(close(
                b.percent,
                100.0 * cumulative as f64 / h.count as f64,
                1e-12
            ));
            prev_percent = b.percent;
            prev_end = b.end;
        }
        assert_eq!(h.data.last().unwrap().percent, 100.0);
        assert_eq!(h.data[0].start, h.min, "first Start is Min");
        assert_eq!(h.data.last().unwrap().end, h.max, "last End is Max");
        assert!(close(h.sum, h.avg * h.count as f64, 1e-12));
    }

    #[test]
    fn duration_buckets_use_fortios_boundaries() {
        let (fortio, _) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        let h = &fortio.duration_histogram;
        assert_fortio_histogram(h);
        assert_eq!(h.count, 100);
        assert_eq!(h.min, 0.0005);
        assert!(close(h.max, 120.0, 1e-3), "max {}", h.max);
        // (Start, End, cumulative Percent, Count); Start of the first bucket is Min and
        // End of the last is Max. 1000 µs is exactly 1 ms, so it falls in ]0, 1 ms]
        // with 500 µs (Fortio's intervals are closed on the right).
        let expected = [
            (0.0005, 0.001, 15.0, 15),
            (0.001, 0.002, 35.0, 20),
            (0.002, 0.003, 65.0, 30),
            (0.009, 0.010, 75.0, 10),
            (0.012, 0.014, 90.0, 15),
            (0.025, 0.030, 95.0, 5),
            (0.140, 0.160, 98.0, 3),
            (100.0, h.max, 100.0, 2), // above Fortio's last boundary (100 s)
        ];
        let got: Vec<(f64, f64, f64, u64)> = h
            .data
            .iter()
            .map(|b| (b.start, b.end, b.percent, b.count))
            .collect();
        assert_eq!(got, expected);
        // Moments come from the HDR histogram.
        let hdr = latency_recorder();
        assert!(close(h.avg, hdr.hdr().mean() / 1e6, 1e-12));
        assert!(close(h.std_dev, hdr.hdr().stdev() / 1e6, 1e-12));
        assert!(close(h.sum, hdr.hdr().mean() * 100.0 / 1e6, 1e-12));
    }

    #[test]
    fn percentiles_are_the_hdr_percentiles_in_seconds() {
        let (fortio, _) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        let rec = latency_recorder();
        let got: Vec<(f64, f64)> = fortio
            .duration_histogram
            .percentiles
            .iter()
            .map(|p| (p.percentile, p.value))
            .collect();
        let want: Vec<(f64, f64)> = FORTIO_PERCENTILES
            .iter()
            .map(|&p| (p, rec.value_at_percentile(p) as f64 / 1e6))
            .collect();
        assert_eq!(got, want);
        // The 50th call is one of the 30 at 2.5 ms (HDR reports its bucket's top, 2501 µs).
        assert_eq!(got[0].0, 50.0);
        assert!(close(got[0].1, 0.0025, 1e-3), "p50 {}", got[0].1);
        // Within the histogram's range.
        for (_, v) in &got {
            assert!(*v >= fortio.duration_histogram.min && *v <= fortio.duration_histogram.max);
        }
    }

    #[test]
    fn error_histogram_is_the_failed_calls() {
        let (fortio, _) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        let e = &fortio.errors_duration_histogram;
        assert_fortio_histogram(e);
        assert_eq!(e.count, 10);
        assert_eq!(e.percentiles.len(), FORTIO_PERCENTILES.len());
        let counts: Vec<u64> = e.data.iter().map(|b| b.count).collect();
        assert_eq!(counts, [6, 2, 2]);
    }

    #[test]
    fn empty_histograms_look_like_fortios() {
        let mut result = load_result(None, None, Some(5_000_000_000));
        result.error_latency_us = Recorder::latency().summary();
        let (_, json) = convert(&result);
        // As in Fortio's output for a run without errors: zeros, "Data": null, no
        // "Percentiles" key.
        for key in ["ErrorsDurationHistogram", "ConnectionStats"] {
            let h = json[key].as_object().unwrap();
            assert_eq!(h["Count"], 0);
            assert_eq!(h["Min"], 0.0);
            assert_eq!(h["Max"], 0.0);
            assert!(h["Data"].is_null(), "{key}.Data is null");
            assert!(!h.contains_key("Percentiles"));
        }
    }

    #[test]
    fn size_histograms_use_fortios_size_dividers() {
        let (fortio, _) = convert(&load_result(Some(1000.0), None, Some(5_000_000_000)));
        let s = &fortio.sizes;
        assert_fortio_histogram(s);
        assert_eq!((s.count, s.min, s.max), (96, 0.0, 413.0));
        let got: Vec<(f64, f64, u64)> = s.data.iter().map(|b| (b.start, b.end, b.count)).collect();
        // Divider 100 B: 0 B in the "≤ 0" bucket, 413 B in ]400, 500] ending at Max.
        assert_eq!(got, [(0.0, 0.0, 6), (400.0, 413.0, 90)]);
        let h = &fortio.header_sizes;
        assert_fortio_histogram(h);
        let got: Vec<(f64, f64, u64)> = h.data.iter().map(|b| (b.start, b.end, b.count)).collect();
        // Divider 5 B: 150 B in ]125, 150] (first bucket, so it starts at Min), 230 B
        // in ]225, 250] (last bucket, so it ends at Max).
        assert_eq!(got, [(150.0, 150.0, 6), (225.0, 230.0, 90)]);
        assert!(s.percentiles.is_empty() && h.percentiles.is_empty());
    }

    #[test]
    fn json_round_trip_is_exact() {
        for (rps, n, d) in [
            (Some(1000.0), None, Some(5_000_000_000)),
            (None, Some(100), None),
            (Some(333.333), Some(100), None),
        ] {
            let (fortio, _) = convert(&load_result(rps, n, d));
            let back: FortioResult = serde_json::from_str(&fortio.to_json_pretty()).unwrap();
            assert_eq!(back, fortio);
            let compact: FortioResult =
                serde_json::from_str(&serde_json::to_string(&fortio).unwrap()).unwrap();
            assert_eq!(compact, fortio);
        }
    }

    #[test]
    fn id_follows_fortios_rules() {
        let t = "2024-01-02T15:04:05Z";
        assert_eq!(fortio_id(t, 0, ""), "2024-01-02-150405");
        assert_eq!(fortio_id(t, 0, "a b"), "2024-01-02-150405_a_b");
        assert_eq!(fortio_id(t, 0, "  --x--  y!! "), "2024-01-02-150405_x_y");
        assert_eq!(fortio_id(t, 0, "!!!"), "2024-01-02-150405");
        assert_eq!(fortio_id(t, 7, "été"), "2024-01-02-150405_7_t");
        assert_eq!(
            fortio_id("2024-01-02 15:04:05+02:00", 0, ""),
            "2024-01-02-150405"
        );
        let long = fortio_id(t, 0, &"x".repeat(200));
        assert_eq!(long.len(), 96);
        assert!(long.starts_with("2024-01-02-150405_xxx"));
        assert_eq!(fortio_id("yesterday", 0, "l"), "0000-00-00-000000_l");
    }

    #[test]
    fn http_options_reflect_the_target() {
        let mut result = load_result(Some(50.0), None, Some(60_000_000_000));
        result.target.http_version = "h2".to_owned();
        result.target.connections = 2;
        result.target.streams_per_connection = 8;
        result.target.method = "POST".to_owned();
        let (fortio, json) = convert(&result);
        assert_eq!(json["RequestedDuration"], "1m0s");
        assert_eq!(json["RequestedQPS"], "50");
        assert!(fortio.h2 && fortio.disable_fast_client);
        assert_eq!((fortio.num_threads, fortio.num_connections), (16, 2));
        assert_eq!(
            (fortio.sockets.clone(), fortio.socket_count),
            (vec![1, 1], 2)
        );
        assert_eq!(fortio.method_override, "POST");
        assert_eq!(fortio.version, "meshrig-0.1.0");

        let (fortio, _) = convert(&load_result(None, None, None));
        assert!(!fortio.h2 && !fortio.disable_fast_client);
        assert_eq!(fortio.method_override, "");
    }

    #[test]
    fn undecodable_histogram_is_the_error() {
        let mut result = load_result(None, None, None);
        result.error_latency_us.histogram = "not base64 @@".to_owned();
        match FortioResult::from_load(&result) {
            Err(FortioError::Histogram { field, .. }) => assert_eq!(field, "error_latency_us"),
            other => panic!("expected a histogram error, got {other:?}"),
        }
    }

    #[test]
    fn bucket_index_is_closed_on_the_right() {
        let ms = DURATION_SCALE.unit;
        assert_eq!(bucket_index(0, ms), 0);
        assert_eq!(bucket_index(1, ms), 1);
        assert_eq!(bucket_index(1_000, ms), 1);
        assert_eq!(bucket_index(1_001, ms), 2);
        assert_eq!(
            bucket_index(13_000, ms),
            BUCKET_VALUES.iter().position(|&b| b == 14).unwrap()
        );
        assert_eq!(bucket_index(100_000_000, ms), BUCKET_VALUES.len() - 1);
        assert_eq!(bucket_index(100_000_001, ms), BUCKET_VALUES.len());
    }

    #[test]
    fn round15_survives_json() {
        for x in [
            1.0 / 3.0,
            0.015977100850000002,
            12345.678901234567,
            1e-7 / 3.0,
            2.0f64.sqrt(),
        ] {
            let r = round15(x);
            assert!(close(r, x, 1e-14));
            let back: f64 = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back.to_bits(), r.to_bits());
        }
        assert_eq!(round15(f64::NAN), 0.0);
    }
}
