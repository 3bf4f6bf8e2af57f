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

/// What is wrong with a Go-style duration, without the wording: each caller says it
/// in its own terms (a CLI flag, an Istio field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoDurationError {
    Empty,
    /// Not `<decimal><unit>` terms (spaces, a stray `.`, no digits).
    Syntax,
    /// A bare number such as `5`.
    MissingUnit,
    /// A unit other than `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`.
    UnknownUnit(String),
    /// Below zero.
    Negative,
    /// Too large to count in nanoseconds.
    Overflow,
}

/// Reads Go's `time.ParseDuration` syntax — an optional sign, then one or more
/// `<decimal><unit>` terms; a bare `0` — into nanoseconds, exactly as written (no
/// trimming). Fraction digits beyond 18 are ignored. `-0` is zero; anything else
/// negative is refused. The caller applies its own upper bound.
pub fn parse_go_duration_ns(text: &str) -> Result<u128, GoDurationError> {
    use GoDurationError as E;
    let (negative, body) = match text.as_bytes().first() {
        None => return Err(E::Empty),
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        Some(_) => (false, text),
    };
    if body == "0" {
        return Ok(0);
    }
    if body.is_empty() || body.contains(char::is_whitespace) {
        return Err(E::Syntax);
    }
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => f.split_at(f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len())),
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(E::Syntax);
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "" if after.is_empty() && rest.len() == body.len() => return Err(E::MissingUnit),
            "" => return Err(E::Syntax),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(E::UnknownUnit(other.to_owned())),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| E::Overflow)?
        };
        let (mut frac, mut scale) = (0u128, 1u128);
        for digit in frac_part.bytes().take(18) {
            frac = frac * 10 + u128::from(digit - b'0');
            scale *= 10;
        }
        let term = int
            .checked_mul(unit_ns)
            .and_then(|v| v.checked_add(frac * unit_ns / scale))
            .ok_or(E::Overflow)?;
        total = total.checked_add(term).ok_or(E::Overflow)?;
        rest = after;
    }
    if negative && total > 0 {
        return Err(E::Negative);
    }
    Ok(total)
}

/// Parses a Go-style duration: `300ms`, `1.5s`, `2m30s`, `1h`, `0` (surrounding
/// spaces ignored).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let s = text.trim();
    let ns = parse_go_duration_ns(s).map_err(|e| match e {
        GoDurationError::Empty => UnitError::Empty,
        GoDurationError::Negative => UnitError::Negative(s.to_owned()),
        GoDurationError::Overflow => UnitError::Overflow(s.to_owned()),
        _ => UnitError::BadDuration(s.to_owned()),
    })?;
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| UnitError::Overflow(s.to_owned()))
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

    /// Long fractions of large units stay exact enough and never overflow (30 fraction
    /// digits of an hour once overflowed a u128 in an earlier copy of this parser).
    #[test]
    fn long_fractions_do_not_overflow() {
        let d = parse_duration("0.999999999999999999999999999999h").unwrap();
        assert!(d < Duration::from_secs(3600) && d > Duration::from_secs(3599));
        assert_eq!(
            parse_go_duration_ns("-0"),
            Ok(0),
            "negative zero is zero, as Go"
        );
        assert_eq!(parse_go_duration_ns("5"), Err(GoDurationError::MissingUnit));
        assert_eq!(
            parse_go_duration_ns("5d"),
            Err(GoDurationError::UnknownUnit("d".into()))
        );
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
