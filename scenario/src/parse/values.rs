//! Scalar values as scenario files write them: names, integers, durations, rates,
//! fractions and percentages, bandwidths, sizes, string maps.
//!
//! Each reader reports what was wrong and what would be right, and returns `None`
//! after reporting; callers then use the default and carry on, so one pass finds
//! every problem.

use std::collections::BTreeMap;

use results::units::{GoDurationError, parse_go_duration_ns, parse_size};

use super::yaml::{self, At, Ctx};

/// A string (numbers and booleans are taken as written).
pub(crate) fn string(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<String> {
    if let Some(s) = yaml::scalar_text(at.node) {
        return Some(s);
    }
    let found = yaml::describe(at.node);
    cx.error(at, format!("expected a string, found {found}"));
    None
}

/// A non-empty name.
pub(crate) fn name(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<String> {
    let s = string(cx, at)?;
    if s.trim().is_empty() {
        cx.error(at, "empty name (give a name such as `reviews`)");
        return None;
    }
    Some(s)
}

/// A service name: a DNS-1123 label (lower-case letters, digits and `-`, starting
/// and ending with a letter or digit, at most 63 characters), as a Kubernetes Service
/// name must be. `client` is taken: it names the load generators in results.
pub(crate) fn service_name(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<String> {
    let s = name(cx, at)?;
    if s == "client" {
        cx.error(
            at,
            "`client` is reserved: it names the load generators in results and assertions (choose another name)",
        );
        return None;
    }
    if !is_dns_label(&s) {
        cx.error(
            at,
            format!(
                "`{s}` is not a valid service name: use lower-case letters, digits and `-`, \
                 starting and ending with a letter or digit, at most 63 characters (e.g. `reviews`)"
            ),
        );
        return None;
    }
    Some(s)
}

/// A version name: a Kubernetes label value (letters, digits, `-`, `_`, `.`, starting
/// and ending with a letter or digit, at most 63 characters). Returns whether it is.
pub(crate) fn is_label_value(s: &str) -> bool {
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !s.is_empty()
        && s.len() <= 63
        && ends(s.chars().next())
        && ends(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_dns_label(s: &str) -> bool {
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.is_empty()
        && s.len() <= 63
        && ends(s.chars().next())
        && ends(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Open-loop rates above this are refused: the simulator would need years of wall time.
pub const MAX_RATE_PER_S: f64 = 10_000_000.0;

/// An integer in `0..=max`.
pub(crate) fn uint(cx: &mut Ctx<'_>, at: &At<'_>, max: u64) -> Option<u64> {
    match yaml::as_int(at.node) {
        Some(i) if i >= 0 && (i as u64) <= max => Some(i as u64),
        Some(i) => {
            cx.error(at, format!("{i} is out of range (0..={max})"));
            None
        }
        None => {
            let found = yaml::describe(at.node);
            cx.error(at, format!("expected a whole number, found {found}"));
            None
        }
    }
}

/// A finite number.
pub(crate) fn number(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<f64> {
    match yaml::as_number(at.node) {
        Some(v) if v.is_finite() => Some(v),
        _ => {
            let found = yaml::describe(at.node);
            cx.error(at, format!("expected a number, found {found}"));
            None
        }
    }
}

/// `true` or `false`.
pub(crate) fn boolean(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<bool> {
    match yaml::scalar_text(at.node).as_deref() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => {
            let found = yaml::describe(at.node);
            cx.error(at, format!("expected true or false, found {found}"));
            None
        }
    }
}

const DURATION_HINT: &str = "write a number and a unit: ns, us, ms, s, m, h — e.g. 250ms, 1.5s, 5m";

/// A Go-style duration (`250ms`, `1.5s`, `2m30s`; a bare `0`), in nanoseconds.
pub(crate) fn duration(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<u64> {
    let (negative, ns) = signed_ns(cx, at)?;
    if negative && ns > 0 {
        let text = yaml::scalar_text(at.node).unwrap_or_default();
        cx.error(
            at,
            format!("negative duration {text:?} (durations are zero or more, e.g. 1s)"),
        );
        return None;
    }
    Some(ns)
}

/// A duration that may be negative (`-2h`), in nanoseconds.
pub(crate) fn signed_duration(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<i64> {
    let (negative, ns) = signed_ns(cx, at)?;
    let ns = i64::try_from(ns).ok()?;
    Some(if negative { -ns } else { ns })
}

fn signed_ns(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<(bool, u64)> {
    match yaml::as_int(at.node) {
        Some(0) => return Some((false, 0)),
        Some(n) => {
            cx.error(at, format!("duration {n} has no unit ({DURATION_HINT})"));
            return None;
        }
        None => {}
    }
    let Some(text) = yaml::as_str(at.node) else {
        let found = yaml::describe(at.node);
        cx.error(
            at,
            format!("expected a duration, found {found} ({DURATION_HINT})"),
        );
        return None;
    };
    let t = text.trim();
    let (negative, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    match parse_go_duration_ns(body) {
        Ok(ns) => match u64::try_from(ns) {
            Ok(ns) if ns <= i64::MAX as u64 => Some((negative, ns)),
            _ => {
                cx.error(
                    at,
                    format!("duration {text:?} is too large (at most about 292 years)"),
                );
                None
            }
        },
        Err(GoDurationError::MissingUnit) => {
            cx.error(
                at,
                format!("duration {text:?} has no unit ({DURATION_HINT})"),
            );
            None
        }
        Err(GoDurationError::Overflow) => {
            cx.error(
                at,
                format!("duration {text:?} is too large (at most about 292 years)"),
            );
            None
        }
        Err(_) => {
            cx.error(at, format!("invalid duration {text:?} ({DURATION_HINT})"));
            None
        }
    }
}

/// A fraction in 0..=1: a number (`0.05`) or a percentage (`5%`).
pub(crate) fn fraction(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<f64> {
    let value = if let Some(v) = yaml::as_number(at.node) {
        v
    } else if let Some(pct) = yaml::as_str(at.node).and_then(|s| s.trim().strip_suffix('%')) {
        match pct.trim().parse::<f64>() {
            Ok(p) => p / 100.0,
            Err(_) => {
                cx.error(
                    at,
                    format!(
                        "invalid percentage {:?} (e.g. 5% or 0.05)",
                        pct.to_owned() + "%"
                    ),
                );
                return None;
            }
        }
    } else {
        let found = yaml::describe(at.node);
        cx.error(
            at,
            format!("expected a fraction or a percentage, found {found} (e.g. 0.05 or 5%)"),
        );
        return None;
    };
    if !(0.0..=1.0).contains(&value) {
        let text = yaml::scalar_text(at.node).unwrap_or_default();
        cx.error(
            at,
            format!("{text} is out of range (a fraction 0..1 or a percentage 0%..100%)"),
        );
        return None;
    }
    Some(value)
}

const RATE_HINT: &str = "write requests per second as 1000/s or 1000, or per minute as 60/m";

/// A request rate: `1000/s`, `1000` (per second), `60/m`, `3600/h`, in per second.
pub(crate) fn rate(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<f64> {
    let value = if let Some(v) = yaml::as_number(at.node) {
        Some(v)
    } else if let Some(text) = yaml::as_str(at.node) {
        parse_rate(text)
    } else {
        None
    };
    match value {
        Some(v) if v > MAX_RATE_PER_S => {
            cx.error(
                at,
                format!("{v}/s is above the largest rate meshrig simulates ({MAX_RATE_PER_S}/s)"),
            );
            None
        }
        Some(v) if v.is_finite() && v >= 0.0 => Some(v),
        _ => {
            let found = yaml::describe(at.node);
            cx.error(at, format!("invalid rate: {found} ({RATE_HINT})"));
            None
        }
    }
}

/// `1000/s`, `60/m`, `2/h`, `1000` → per second.
pub(crate) fn parse_rate(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, per_s) = match t.split_once('/') {
        Some((n, "s")) => (n, 1.0),
        Some((n, "m")) => (n, 1.0 / 60.0),
        Some((n, "h")) => (n, 1.0 / 3600.0),
        Some(_) => return None,
        None => (t, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * per_s)
}

/// A bandwidth in bits per second: `100Mbps`, `1Gbps`, `64kbps`, `1000bps` or a
/// number of bits per second.
pub(crate) fn bandwidth(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<u64> {
    let parsed = if let Some(i) = yaml::as_int(at.node) {
        u64::try_from(i).ok()
    } else {
        yaml::as_str(at.node).and_then(parse_bandwidth)
    };
    match parsed {
        Some(0) => {
            cx.error(
                at,
                "bandwidth 0 would deliver nothing (leave it out for unlimited)",
            );
            None
        }
        Some(v) => Some(v),
        None => {
            let found = yaml::describe(at.node);
            cx.error(
                at,
                format!(
                    "invalid bandwidth: {found} (bits per second, e.g. 100Mbps, 1Gbps, 64kbps)"
                ),
            );
            None
        }
    }
}

fn parse_bandwidth(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult = match unit.trim() {
        "" | "bps" => 1.0,
        "kbps" | "Kbps" => 1e3,
        "Mbps" => 1e6,
        "Gbps" => 1e9,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    let bps = v * mult;
    (bps.is_finite() && (0.0..1e19).contains(&bps)).then_some(bps.round() as u64)
}

/// A byte size: `512`, `64KiB`, `1MiB`, `10kB`.
pub(crate) fn size(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<u64> {
    if let Some(i) = yaml::as_int(at.node)
        && let Ok(v) = u64::try_from(i)
    {
        return Some(v);
    }
    match yaml::as_str(at.node).map(parse_size) {
        Some(Ok(v)) => Some(v),
        _ => {
            let found = yaml::describe(at.node);
            cx.error(
                at,
                format!("invalid size: {found} (bytes, e.g. 512, 64KiB, 1MiB)"),
            );
            None
        }
    }
}

/// A map of string keys to string values (labels, headers).
pub(crate) fn string_map(cx: &mut Ctx<'_>, at: &At<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in at.user_map(cx) {
        if let Some(s) = string(cx, &v) {
            out.insert(k, s);
        }
    }
    out
}

/// One of the fixed spellings in `allowed`.
pub(crate) fn enumerated<T: Copy>(
    cx: &mut Ctx<'_>,
    at: &At<'_>,
    allowed: &[(&'static str, T)],
) -> Option<T> {
    let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
    let text = yaml::as_str(at.node);
    if let Some(v) = allowed
        .iter()
        .find(|(n, _)| Some(*n) == text)
        .map(|(_, v)| *v)
    {
        return Some(v);
    }
    let found = yaml::describe(at.node);
    let hint = match text.and_then(|t| yaml::closest(t, names.iter().copied())) {
        Some(best) => format!("did you mean `{best}`? one of {}", names.join(", ")),
        None => format!("one of {}", names.join(", ")),
    };
    cx.error(at, format!("unknown value {found} ({hint})"));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_per_second_minute_and_hour() {
        assert_eq!(parse_rate("1000/s"), Some(1000.0));
        assert_eq!(parse_rate("1000"), Some(1000.0));
        assert_eq!(parse_rate("60/m"), Some(1.0));
        assert_eq!(parse_rate("7200/h"), Some(2.0));
        assert_eq!(parse_rate("2.5/s"), Some(2.5));
        assert_eq!(parse_rate("10/d"), None);
        assert_eq!(parse_rate("-1/s"), None);
        assert_eq!(parse_rate("fast"), None);
    }

    #[test]
    fn bandwidths_are_bits_per_second() {
        assert_eq!(parse_bandwidth("1Gbps"), Some(1_000_000_000));
        assert_eq!(parse_bandwidth("100Mbps"), Some(100_000_000));
        assert_eq!(parse_bandwidth("1.5kbps"), Some(1_500));
        assert_eq!(parse_bandwidth("800"), Some(800));
        assert_eq!(parse_bandwidth("1GB"), None);
    }

    proptest! {
        #[test]
        fn rate_per_minute_is_a_sixtieth_of_per_second(n in 0u32..1_000_000) {
            let per_min = parse_rate(&format!("{n}/m")).expect("rate");
            let per_s = parse_rate(&format!("{n}/s")).expect("rate");
            prop_assert!((per_min * 60.0 - per_s).abs() <= per_s * 1e-12);
        }

        #[test]
        fn integer_bandwidths_round_trip(n in 1u64..1_000_000_000_000) {
            prop_assert_eq!(parse_bandwidth(&format!("{n}bps")), Some(n));
        }
    }
}
