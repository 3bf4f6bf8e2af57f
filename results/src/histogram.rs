//! HDR histograms as meshrig records and ships them.
//!
//! Every latency is recorded in microseconds into an HDR histogram covering 1 µs to one
//! hour at 3 significant digits (so any reported percentile is within 0.1% of the true
//! value). Histograms serialize to the standard HdrHistogram V2 + DEFLATE encoding,
//! base64 — the same `HISTFAAA…` strings HdrHistogram's own tools read — so results
//! from separate runs, processes or machines can be merged and re-percentiled exactly.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Largest latency a histogram records: one hour, in microseconds. Larger values are
/// clamped to it (and counted), never dropped.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Largest size a byte-count histogram records: 1 GiB. Larger values are clamped.
pub const MAX_SIZE_BYTES: u64 = 1 << 30;

/// Significant digits kept by every histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Why a serialized histogram could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("histogram is not valid base64: {0}")]
    Base64(String),
    #[error("histogram is not a valid HdrHistogram V2 encoding: {0}")]
    Decode(String),
    #[error("histograms have different ranges and cannot be merged: {0}")]
    Merge(String),
}

/// A bounded HDR histogram of non-negative integer values (µs, or bytes).
///
/// Memory is fixed at construction (about 100 KiB for the latency range), whatever the
/// number of values recorded: there is no per-value storage.
#[derive(Debug, Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
    clamped: u64,
}

impl Recorder {
    /// A histogram for latencies in microseconds, 1 µs ..= 1 h.
    pub fn latency() -> Self {
        Self::with_max(MAX_LATENCY_US)
    }

    /// A histogram for sizes in bytes, 1 B ..= 1 GiB.
    pub fn size() -> Self {
        Self::with_max(MAX_SIZE_BYTES)
    }

    fn with_max(max: u64) -> Self {
        let hist = Histogram::new_with_bounds(1, max, SIGNIFICANT_DIGITS)
            .expect("static histogram bounds are valid");
        Self { hist, clamped: 0 }
    }

    /// Records one value. Values above the range are clamped to its top and counted in
    /// [`Recorder::clamped`]; zero is recorded as zero.
    #[inline]
    pub fn record(&mut self, value: u64) {
        let high = self.hist.high();
        let v = if value > high {
            self.clamped += 1;
            high
        } else {
            value
        };
        // Cannot fail: v is within [0, high] and auto-resize is off.
        let _ = self.hist.record(v);
    }

    /// Number of values that were above the range and recorded as its maximum.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Adds every value recorded in `other`. Both must cover the same range (all
    /// latency recorders do).
    pub fn merge(&mut self, other: &Recorder) -> Result<(), HistogramError> {
        self.hist
            .add(&other.hist)
            .map_err(|e| HistogramError::Merge(format!("{e:?}")))?;
        self.clamped += other.clamped;
        Ok(())
    }

    /// Forgets every recorded value, keeping the allocation.
    pub fn reset(&mut self) {
        self.hist.reset();
        self.clamped = 0;
    }

    /// The value at `percentile` (0..=100), 0 when empty.
    pub fn value_at_percentile(&self, percentile: f64) -> u64 {
        if self.hist.is_empty() {
            return 0;
        }
        self.hist.value_at_quantile(percentile / 100.0)
    }

    /// The underlying HDR histogram, for callers that need bucket iteration.
    pub fn hdr(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// The summary written to results, including the serialized histogram.
    pub fn summary(&self) -> Summary {
        let h = &self.hist;
        let empty = h.is_empty();
        let pick = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        Summary {
            count: h.len(),
            min: if empty { 0 } else { h.min() },
            mean: if empty { 0.0 } else { round3(h.mean()) },
            stdev: if empty { 0.0 } else { round3(h.stdev()) },
            p50: pick(0.50),
            p75: pick(0.75),
            p90: pick(0.90),
            p99: pick(0.99),
            p999: pick(0.999),
            p9999: pick(0.9999),
            max: if empty { 0 } else { h.max() },
            histogram: self.encode(),
        }
    }

    /// Serializes to base64 HdrHistogram V2 + DEFLATE.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut bytes)
            .expect("serializing into a Vec cannot fail");
        base64_encode(&bytes)
    }

    /// Reads back a histogram written by [`Recorder::encode`] (or any HdrHistogram V2
    /// encoder, compressed or not).
    pub fn decode(text: &str) -> Result<Self, HistogramError> {
        let bytes = base64_decode(text)?;
        let hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| HistogramError::Decode(format!("{e:?}")))?;
        Ok(Self { hist, clamped: 0 })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Percentiles, moments and the serialized histogram of one distribution. The unit is
/// given by the field that holds it (`latency_us`, `response_size_bytes`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    /// Base64 HdrHistogram V2 + DEFLATE (`HISTFAAA…`); decode with [`Recorder::decode`].
    pub histogram: String,
}

impl Summary {
    /// The full histogram behind this summary.
    pub fn recorder(&self) -> Result<Recorder, HistogramError> {
        Recorder::decode(&self.histogram)
    }
}

// === base64 (standard alphabet, padded) ===
// hdrhistogram's `base64` feature only covers its interval log; a few lines here avoid
// another dependency.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Result<Vec<u8>, HistogramError> {
    let text = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, c) in text.bytes().enumerate() {
        let v = B64
            .iter()
            .position(|&b| b == c)
            .ok_or_else(|| HistogramError::Base64(format!("invalid character at {i}")))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::latency();
        for v in 1..=10_000u64 {
            r.record(v);
        }
        let s = r.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min, 1);
        assert!((s.p50 as f64 - 5_000.0).abs() <= 5.0, "p50 {}", s.p50);
        assert!((s.p99 as f64 - 9_900.0).abs() <= 10.0, "p99 {}", s.p99);
        assert!((s.max as f64 - 10_000.0).abs() <= 10.0, "max {}", s.max);
        assert!((s.mean - 5_000.5).abs() < 5.0);
    }

    #[test]
    fn empty_summary_is_all_zero_and_decodes() {
        let s = Recorder::latency().summary();
        assert_eq!((s.count, s.p50, s.max), (0, 0, 0));
        assert!(s.recorder().unwrap().is_empty());
    }

    #[test]
    fn values_above_range_are_clamped_not_lost() {
        let mut r = Recorder::latency();
        r.record(MAX_LATENCY_US * 10);
        assert_eq!(r.len(), 1);
        assert_eq!(r.clamped(), 1);
        assert!(r.summary().max >= MAX_LATENCY_US - MAX_LATENCY_US / 1000);
    }

    #[test]
    fn base64_round_trip_all_lengths() {
        for len in 0..50usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert!(base64_decode("@@@").is_err());
    }

    #[test]
    fn encoding_uses_the_standard_v2_deflate_cookie() {
        let mut r = Recorder::latency();
        r.record(42);
        // 0x1c849304 is HdrHistogram's V2 compressed cookie: "HISTFAAA" in base64.
        assert!(r.encode().starts_with("HISTFAAA"), "{}", r.encode());
    }

    proptest! {
        /// Merging histograms equals recording everything into one: runs can be
        /// combined after the fact without losing precision.
        #[test]
        fn merge_is_exact(a in proptest::collection::vec(1u64..10_000_000, 0..200),
                          b in proptest::collection::vec(1u64..10_000_000, 0..200)) {
            let mut ra = Recorder::latency();
            let mut rb = Recorder::latency();
            let mut all = Recorder::latency();
            for &v in &a { ra.record(v); all.record(v); }
            for &v in &b { rb.record(v); all.record(v); }
            ra.merge(&rb).unwrap();
            prop_assert_eq!(ra.summary(), all.summary());
        }

        /// Encoding then decoding gives back the same histogram.
        #[test]
        fn encode_decode_round_trip(values in proptest::collection::vec(0u64..MAX_LATENCY_US, 0..300)) {
            let mut r = Recorder::latency();
            for &v in &values { r.record(v); }
            let back = Recorder::decode(&r.encode()).unwrap();
            prop_assert_eq!(back.summary(), r.summary());
        }
    }
}
