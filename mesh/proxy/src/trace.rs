//! Trace headers: `x-request-id`, B3 (`x-b3-*`) and W3C Trace Context
//! (`traceparent`, `tracestate`), as an Envoy sidecar propagates them.
//!
//! Each hop through the proxy is one span. [`propagate`] rewrites a request's headers
//! in place:
//!
//! * `x-request-id` is kept when present and a visible ASCII string of at most
//!   [`MAX_REQUEST_ID_LEN`] bytes, otherwise replaced by a new UUID v4;
//! * the trace id is the incoming `traceparent`'s, else a valid `x-b3-traceid`, else a
//!   new one; the upstream request gets a **new span id** whose parent is the incoming
//!   span (the `traceparent` parent-id, else `x-b3-spanid`);
//! * both formats go upstream with the same ids; `tracestate` is forwarded only with
//!   a valid `traceparent` (the spec says to discard it otherwise).
//!
//! Ids come from the caller's RNG (the proxy's seeded one): reproducible, not secret.

use http::{HeaderMap, HeaderValue};
use rand::Rng;

/// Longest `x-request-id` kept; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

pub const REQUEST_ID: &str = "x-request-id";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
pub const B3_TRACE_ID: &str = "x-b3-traceid";
pub const B3_SPAN_ID: &str = "x-b3-spanid";
pub const B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
pub const B3_SAMPLED: &str = "x-b3-sampled";

/// A parsed W3C `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub version: u8,
    pub trace_id: u128,
    pub parent_id: u64,
    pub flags: u8,
}

impl TraceParent {
    /// Whether the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The version-00 header value.
    pub fn to_header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// Lowercase hex of exactly `len` digits (the W3C spec rejects uppercase).
fn lower_hex(s: &str, len: usize) -> Option<u128> {
    if s.len() != len
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

/// Parses a `traceparent` per W3C Trace Context level 1: `VV-TTTT…(32)-PPPP…(16)-FF`,
/// lowercase hex; version `ff`, an all-zero trace or parent id, or wrong lengths are
/// invalid. Version 00 must be exactly 55 characters; a later version may carry more
/// after a `-` (read as version 00).
pub fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let value = value.trim_matches([' ', '\t']);
    if value.len() < 55 || !value.is_ascii() {
        return None;
    }
    let version = u8::try_from(lower_hex(&value[0..2], 2)?).ok()?;
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    if value.len() > 55 && value.as_bytes()[55] != b'-' {
        return None;
    }
    let bytes = value.as_bytes();
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = lower_hex(&value[3..35], 32)?;
    let parent_id = u64::try_from(lower_hex(&value[36..52], 16)?).ok()?;
    let flags = u8::try_from(lower_hex(&value[53..55], 2)?).ok()?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some(TraceParent {
        version,
        trace_id,
        parent_id,
        flags,
    })
}

/// A B3 trace id: 16 or 32 hex digits (either case), not zero. Returns the value and
/// its width in digits.
pub fn parse_b3_trace_id(value: &str) -> Option<(u128, usize)> {
    let v = value.trim();
    if !(v.len() == 16 || v.len() == 32) || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = u128::from_str_radix(v, 16).ok().filter(|&id| id != 0)?;
    Some((id, v.len()))
}

/// A B3 span id: 16 hex digits (either case), not zero.
pub fn parse_b3_span_id(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.len() != 16 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(v, 16).ok().filter(|&id| id != 0)
}

/// `x-b3-sampled`: `1`/`true` or `0`/`false`.
pub fn parse_b3_sampled(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Whether an incoming `x-request-id` is kept.
pub fn valid_request_id(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
}

/// A UUID v4 (`xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx`, N one of 8, 9, a, b).
pub fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut n: u128 = rng.random();
    n &= !(0xf << 76);
    n |= 0x4 << 76;
    n &= !(0x3 << 62);
    n |= 0x2 << 62;
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The ids of the span a request was sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceIds {
    pub request_id: String,
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Rewrites `headers` for the upstream request: a request id, and a new span of the
/// incoming trace (or a new trace). See the module docs.
pub fn propagate(headers: &mut HeaderMap, rng: &mut impl Rng) -> TraceIds {
    let request_id = match headers.get(REQUEST_ID) {
        Some(v) if valid_request_id(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        _ => {
            let id = uuid_v4(rng);
            set(headers, REQUEST_ID, &id);
            id
        }
    };
    let parent = header(headers, TRACEPARENT).and_then(parse_traceparent);
    let b3_trace = header(headers, B3_TRACE_ID).and_then(parse_b3_trace_id);
    let b3_span = header(headers, B3_SPAN_ID).and_then(parse_b3_span_id);
    let b3_sampled = header(headers, B3_SAMPLED).and_then(parse_b3_sampled);
    let span_id = loop {
        let id: u64 = rng.random();
        if id != 0 {
            break id;
        }
    };
    let (trace_id, b3_width, parent_span_id, sampled) = match (parent, b3_trace) {
        (Some(p), _) => (p.trace_id, 32, Some(p.parent_id), p.sampled()),
        (None, Some((id, width))) => (id, width, b3_span, b3_sampled.unwrap_or(true)),
        (None, None) => {
            let id = loop {
                let id: u128 = rng.random();
                if id != 0 {
                    break id;
                }
            };
            (id, 32, None, b3_sampled.unwrap_or(true))
        }
    };
    if parent.is_none() {
        headers.remove(TRACESTATE);
    }
    let flags = parent.map_or(u8::from(sampled), |p| p.flags);
    let tp = TraceParent {
        version: 0,
        trace_id,
        parent_id: span_id,
        flags,
    };
    set(headers, TRACEPARENT, &tp.to_header());
    // The B3 trace id keeps its incoming width (64-bit ids stay 64-bit).
    let b3 = if b3_width == 16 {
        format!("{:016x}", trace_id as u64)
    } else {
        format!("{trace_id:032x}")
    };
    set(headers, B3_TRACE_ID, &b3);
    set(headers, B3_SPAN_ID, &format!("{span_id:016x}"));
    match parent_span_id {
        Some(p) => set(headers, B3_PARENT_SPAN_ID, &format!("{p:016x}")),
        None => {
            headers.remove(B3_PARENT_SPAN_ID);
        }
    }
    set(headers, B3_SAMPLED, if sampled { "1" } else { "0" });
    TraceIds {
        request_id,
        trace_id,
        span_id,
        parent_span_id,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let p = parse_traceparent(VALID).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.parent_id, 0x00f067aa0ba902b7);
        assert!(p.sampled());
        assert_eq!(p.to_header(), VALID);
    }

    #[test]
    fn rejects_malformed_traceparents() {
        for bad in [
            "",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é1",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
        // A later version may append fields after a dash.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(parse_traceparent(future).unwrap().version, 1);
    }

    #[test]
    fn b3_ids() {
        assert_eq!(
            parse_b3_trace_id("463ac35c9f6413ad"),
            Some((0x463ac35c9f6413ad, 16))
        );
        assert_eq!(
            parse_b3_trace_id("463AC35C9F6413AD48485A3953BB6124")
                .unwrap()
                .1,
            32
        );
        assert_eq!(parse_b3_trace_id("0000000000000000"), None);
        assert_eq!(parse_b3_trace_id("463ac35c9f6413a"), None);
        assert_eq!(
            parse_b3_span_id("a2fb4a1d1a96d312"),
            Some(0xa2fb4a1d1a96d312)
        );
        assert_eq!(parse_b3_span_id("xyz"), None);
        assert_eq!(parse_b3_sampled("1"), Some(true));
        assert_eq!(parse_b3_sampled("d"), None);
    }

    #[test]
    fn uuid_v4_has_version_and_variant() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            let u = uuid_v4(&mut rng);
            assert_eq!(u.len(), 36, "{u}");
            assert_eq!(&u[14..15], "4", "{u}");
            assert!("89ab".contains(&u[19..20]), "{u}");
            assert_eq!(u.matches('-').count(), 4, "{u}");
        }
    }

    #[test]
    fn continues_an_incoming_w3c_trace_with_a_new_span() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        h.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        let ids = propagate(&mut h, &mut rng);
        assert_eq!(ids.request_id, "abc-123");
        assert_eq!(h[REQUEST_ID], "abc-123");
        let out = parse_traceparent(h[TRACEPARENT].to_str().unwrap()).unwrap();
        assert_eq!(out.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_ne!(out.parent_id, 0x00f067aa0ba902b7, "a new span");
        assert_eq!(out.parent_id, ids.span_id);
        assert_eq!(ids.parent_span_id, Some(0x00f067aa0ba902b7));
        assert_eq!(h[TRACESTATE], "congo=t61rcWkgMzE");
        assert_eq!(h[B3_TRACE_ID], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(h[B3_PARENT_SPAN_ID], "00f067aa0ba902b7");
        assert_eq!(h[B3_SAMPLED], "1");
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace_and_drops_tracestate() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut h = HeaderMap::new();
        let bad = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, HeaderValue::from_static(bad));
        h.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let ids = propagate(&mut h, &mut rng);
        let out = parse_traceparent(h[TRACEPARENT].to_str().unwrap()).unwrap();
        assert_ne!(out.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ids.parent_span_id, None);
        assert!(h.get(TRACESTATE).is_none());
        assert!(h.get(B3_PARENT_SPAN_ID).is_none());
        assert_eq!(h[REQUEST_ID].len(), 36, "a UUID was generated");
    }

    #[test]
    fn continues_a_b3_trace_keeping_its_width() {
        let mut rng = SmallRng::seed_from_u64(4);
        let mut h = HeaderMap::new();
        h.insert(B3_TRACE_ID, HeaderValue::from_static("463ac35c9f6413ad"));
        h.insert(B3_SPAN_ID, HeaderValue::from_static("a2fb4a1d1a96d312"));
        h.insert(B3_SAMPLED, HeaderValue::from_static("0"));
        let ids = propagate(&mut h, &mut rng);
        assert_eq!(h[B3_TRACE_ID], "463ac35c9f6413ad");
        assert_eq!(h[B3_PARENT_SPAN_ID], "a2fb4a1d1a96d312");
        assert_eq!(h[B3_SAMPLED], "0");
        assert_eq!(ids.parent_span_id, Some(0xa2fb4a1d1a96d312));
        let tp = parse_traceparent(h[TRACEPARENT].to_str().unwrap()).unwrap();
        assert_eq!(tp.trace_id, 0x463ac35c9f6413ad);
        assert!(!tp.sampled());
    }
}
