//! Durations and sizes as users write them: `250us`, `1.5s`, `2m30s`, `1h`; `64KiB`.
//!
//! The duration syntax is Go's (`time.ParseDuration`), which Fortio, Istio and Kubernetes
//! users already type every day: a sequence of decimal numbers, each with a unit
//! (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`). A bare `0` is accepted.

use std::time::Duration;

/// Why a duration or size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value (expected a duration such as 100ms, 1.5s or 2m)")]
    Empty,
    #[error(
        "'{0}' is not a duration (expected a number with a unit: ns, us, ms, s, m, h — e.g. 100ms, 1.5s, 2m30s)"
    )]
    BadDuration(String),
    #[error("'{0}' is negative (a duration must be zero or more)")]
    Negative(String),
    #[error("'{0}' is too large (the maximum is about 584 years)")]
    Overflow(String),
    #[error("'{0}' is not a size (expected bytes, optionally with a unit: 512, 64KiB, 1MiB, 10kB)")]
    BadSize(String),
}

/// Parses a Go-style duration: `300ms`, `1.5s`, `2m30s`, `1h`, `0`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(UnitError::Empty);
    }
    if s.starts_with('-') {
        return Err(UnitError::Negative(s.to_owned()));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || UnitError::BadDuration(text.trim().to_owned());
    let mut total_ns: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        total_ns += decimal_times(num, unit_ns).ok_or_else(bad)?;
        if total_ns > u128::from(u64::MAX) {
            return Err(UnitError::Overflow(text.trim().to_owned()));
        }
        rest = next;
    }
    Ok(Duration::from_nanos(total_ns as u64))
}

/// `num` (digits with at most one '.') times `unit_ns`, exactly, truncating below 1 ns.
fn decimal_times(num: &str, unit_ns: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = int_val.checked_mul(unit_ns)?;
    let mut scale = unit_ns;
    for digit in frac.bytes().take(18) {
        scale /= 10;
        total += u128::from(digit - b'0') * scale;
    }
    Some(total)
}

/// Formats a duration the way [`parse_duration`] reads it, choosing a readable unit:
/// `1.5s`, `250ms`, `42us`, `2m30s`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns >= 60_000_000_000 && ns.is_multiple_of(1_000_000_000) {
        let secs = ns / 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 {
            out.push_str(&format!("{s}s"));
        }
        return out;
    }
    let (unit, div) = if ns >= 1_000_000_000 {
        ("s", 1e9)
    } else if ns >= 1_000_000 {
        ("ms", 1e6)
    } else if ns >= 1_000 {
        ("us", 1e3)
    } else {
        ("ns", 1.0)
    };
    let value = ns as f64 / div;
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// Parses a byte size: `512`, `64KiB`, `1MiB`, `10kB` (SI), `2GiB`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let s = text.trim();
    let bad = || UnitError::BadSize(s.to_owned());
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "k" | "kB" | "KB" => 1_000,
        "KiB" | "Ki" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" | "Mi" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" | "Gi" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("100ms"), Ok(ms(100)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("2m30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "10", "1.5", "ms", "1x", "1.2.3s", "1 s", "s1", "1e3ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            parse_duration("-1s"),
            Err(UnitError::Negative("-1s".to_owned()))
        );
        assert!(matches!(
            parse_duration("9999999999h"),
            Err(UnitError::Overflow(_))
        ));
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::from_millis(1500),
            Duration::from_millis(250),
            Duration::from_micros(42),
            Duration::from_secs(150),
            Duration::from_secs(3600 + 5),
            Duration::from_nanos(3),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
