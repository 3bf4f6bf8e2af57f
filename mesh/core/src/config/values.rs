//! Bounded value types of Istio configuration: durations, percentages, weights,
//! regular expressions.
//!
//! # Durations
//!
//! Istio fields of type `google.protobuf.Duration` are written as strings. Istio's
//! CRD schema checks them with CEL `duration()` and its YAML→proto conversion parses
//! them with Go's `time.ParseDuration`, so what it accepts is Go duration syntax: an
//! optional sign and one or more `<decimal><unit>` terms, units `h`, `m`, `s`, `ms`,
//! `us` (or `µs`), `ns`: `1.5s`, `10ms`, `1m`, `1h30m`, `0.001s`, `300s`. The
//! protobuf JSON form (`"1.5s"`) is a subset. A bare `0` is also accepted (it means
//! "unset" where Istio allows that). [`parse_duration`] rejects what Istio rejects:
//! a missing or unknown unit (`5`, `5sec`, `1d`), negative durations, and durations
//! with sub-millisecond precision (Istio's validation works in whole milliseconds).
//!
//! # Percentages
//!
//! Istio has three spellings, all 0..=100: the `Percent` message `{value: 12.5}`
//! ([`Percent`]), a bare integer (`percent`, `mirrorPercent`, `maxEjectionPercent`:
//! [`IntPercent`]) and a bare number (`retryBudget.percent`: [`PercentValue`]).

use std::time::Duration;

use super::decode::{Decode, Decoder};
use super::yaml::{self, Node};
use saphyr::{Scalar, YamlData};

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (write e.g. 5s, 500ms, 1m)")]
    Empty,
    #[error("invalid duration {0:?} (write a number and a unit, e.g. 5s, 500ms, 1.5s, 1m)")]
    Syntax(String),
    #[error("missing unit in duration {0:?} (write e.g. {0}s or {0}ms)")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {text:?} (units: h, m, s, ms, us, ns; e.g. 5s)")]
    UnknownUnit { text: String, unit: String },
    #[error("negative duration {0:?} (durations must be zero or positive, e.g. 1s)")]
    Negative(String),
    #[error("duration {0:?} is out of range (at most about 292 years)")]
    Overflow(String),
    #[error(
        "duration {0:?} has sub-millisecond precision (Istio supports whole milliseconds, e.g. 1ms)"
    )]
    SubMillisecond(String),
}

/// Parses a duration as Istio accepts it (see the module docs): Go's syntax
/// ([`results::units::parse_go_duration_ns`]), at most `i64::MAX` nanoseconds, in
/// whole milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    use results::units::{GoDurationError as Go, parse_go_duration_ns};
    let owned = || text.to_owned();
    let total = parse_go_duration_ns(text).map_err(|e| match e {
        Go::Empty => DurationError::Empty,
        Go::Syntax => DurationError::Syntax(owned()),
        Go::MissingUnit => DurationError::MissingUnit(owned()),
        Go::UnknownUnit(unit) => DurationError::UnknownUnit {
            text: owned(),
            unit,
        },
        Go::Negative => DurationError::Negative(owned()),
        Go::Overflow => DurationError::Overflow(owned()),
    })?;
    if total > u128::from(i64::MAX.unsigned_abs()) {
        return Err(DurationError::Overflow(owned()));
    }
    if !total.is_multiple_of(1_000_000) {
        return Err(DurationError::SubMillisecond(owned()));
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow(owned()))?;
    Ok(Duration::from_nanos(nanos))
}

impl Decode for Duration {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        let line = yaml::line(node);
        let Some(text) = yaml::as_str(node) else {
            let found = yaml::describe(node);
            d.error(
                line,
                format!("expected a duration such as \"5s\" or \"100ms\", found {found}"),
            );
            return None;
        };
        match parse_duration(text) {
            Ok(v) => Some(v),
            Err(e) => {
                d.error(line, e.to_string());
                None
            }
        }
    }
}

fn out_of_range(d: &mut Decoder<'_>, line: u32, what: &str, shown: &str) {
    d.error(line, format!("{what} {shown} is out of range (0..=100)"));
}

/// Istio's `Percent` message, `{value: 12.5}`: a fraction of traffic, 0..=100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl Decode for Percent {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        d.object(node, |o| {
            let v: Option<f64> = o.field("value");
            if let Some(v) = v.filter(|v| !(0.0..=100.0).contains(v)) {
                let full = o.join("value");
                let line = o.d.line_of(&full).unwrap_or(o.line());
                o.d.error_at(
                    &full,
                    line,
                    format!("percentage {v} is out of range (0..=100)"),
                );
                return None;
            }
            Some(Percent(v.unwrap_or(0.0)))
        })?
    }
}

/// A bare integer percentage, 0..=100 (`fault.delay.percent`, `mirrorPercent`,
/// `maxEjectionPercent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct IntPercent(pub u32);

impl Decode for IntPercent {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        let line = yaml::line(node);
        match &yaml::untagged(node).data {
            YamlData::Value(Scalar::Integer(i)) => match u32::try_from(*i) {
                Ok(v) if v <= 100 => Some(IntPercent(v)),
                _ => {
                    out_of_range(d, line, "percentage", &i.to_string());
                    None
                }
            },
            _ => {
                let found = yaml::describe(node);
                d.error(
                    line,
                    format!("expected an integer percentage 0..=100, found {found}"),
                );
                None
            }
        }
    }
}

/// A bare number percentage, 0..=100 (`retryBudget.percent`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct PercentValue(pub f64);

impl Decode for PercentValue {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        let v = f64::decode(d, node)?;
        if !(0.0..=100.0).contains(&v) {
            out_of_range(d, yaml::line(node), "percentage", &v.to_string());
            return None;
        }
        Some(PercentValue(v))
    }
}

/// A route weight: an integer share of traffic, 0..=100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Weight(pub u32);

impl Decode for Weight {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        let line = yaml::line(node);
        match &yaml::untagged(node).data {
            YamlData::Value(Scalar::Integer(i)) => match u32::try_from(*i) {
                Ok(v) if v <= 100 => Some(Weight(v)),
                _ => {
                    out_of_range(d, line, "weight", &i.to_string());
                    None
                }
            },
            _ => {
                let found = yaml::describe(node);
                d.error(
                    line,
                    format!("expected an integer weight 0..=100, found {found}"),
                );
                None
            }
        }
    }
}

/// A regular expression in RE2 syntax, checked when loaded. Kept as written: Istio
/// (Envoy) matches it against the whole value, so users of it anchor it themselves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct RegexPattern(pub String);

impl RegexPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The one-line reason from a `regex` error (its Display spans several lines).
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.lines().next().unwrap_or("").to_owned())
}

impl Decode for RegexPattern {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        let text = String::decode(d, node)?;
        match regex::Regex::new(&text) {
            Ok(_) => Some(RegexPattern(text)),
            Err(e) => {
                let reason = regex_reason(&e);
                d.error(
                    yaml::line(node),
                    format!(
                        "invalid regex {text:?}: {reason} (RE2 syntax, e.g. \"^/api/v[0-9]+$\")"
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn go_and_proto_durations_parse() {
        assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_duration("10ms"), Ok(ms(10)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("0.001s"), Ok(ms(1)));
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("300s"), Ok(ms(300_000)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1000us"), Ok(ms(1)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+2s"), Ok(ms(2_000)));
    }

    #[test]
    fn bad_durations_say_why() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("5"),
            Err(DurationError::MissingUnit("5".into()))
        );
        assert!(matches!(
            parse_duration("5sec"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse_duration("-1s"),
            Err(DurationError::Negative("-1s".into()))
        );
        assert_eq!(parse_duration("s"), Err(DurationError::Syntax("s".into())));
        assert_eq!(
            parse_duration("1.s5"),
            Err(DurationError::Syntax("1.s5".into()))
        );
        assert_eq!(
            parse_duration("5s3"),
            Err(DurationError::Syntax("5s3".into()))
        );
        assert_eq!(
            parse_duration("1.5ms"),
            Err(DurationError::SubMillisecond("1.5ms".into()))
        );
        assert!(matches!(
            parse_duration("9999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn regex_reason_is_one_line() {
        let pattern = String::from("a(b");
        let err = regex::Regex::new(&pattern).expect_err("invalid");
        let reason = regex_reason(&err);
        assert!(!reason.contains('\n'));
        assert!(reason.contains("unclosed"), "{reason}");
    }
}
