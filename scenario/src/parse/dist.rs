//! Distributions: `{ fixed: 5ms }`, `{ uniform: { min, max } }`, `{ normal: { mean,
//! stdev } }`, `{ lognormal: { p50, p99 } }`, `{ exponential: { mean } }`,
//! `{ empirical: [{ p, value }, ...] }`, each with an optional `tail`; a bare duration
//! (`5ms`) is shorthand for `fixed`.

use crate::dist::Dist;

use super::values::{duration, fraction, number};
use super::yaml::{self, At, Ctx};

const KINDS: [&str; 6] = [
    "fixed",
    "uniform",
    "normal",
    "lognormal",
    "exponential",
    "empirical",
];

/// A distribution of durations.
pub(crate) fn dist(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<Dist> {
    if yaml::as_str(at.node).is_some() || yaml::as_int(at.node).is_some() {
        return duration(cx, at).map(|ns| Dist::Fixed { ns });
    }
    let mut fields: Vec<&'static str> = KINDS.to_vec();
    fields.push("tail");
    let m = at.map(cx, &fields)?;
    let given = m.present(&KINDS);
    let base = match given.as_slice() {
        [one] => {
            let field = m.get(cx, one)?;
            kind(cx, one, &field)
        }
        [] if m.had_unknown() => None,
        [] => {
            cx.error(
                at,
                format!("missing distribution (give one of {})", KINDS.join(", ")),
            );
            None
        }
        many => {
            cx.error(
                at,
                format!(
                    "several distributions given ({}): give exactly one",
                    many.join(", ")
                ),
            );
            None
        }
    };
    let tail = m.get(cx, "tail").map(|t| tail(cx, &t));
    match (base, tail) {
        (Some(base), None) => Some(base),
        (Some(base), Some(Some((probability, tail)))) => Some(Dist::WithTail {
            base: Box::new(base),
            probability,
            tail: Box::new(tail),
        }),
        _ => None,
    }
}

fn kind(cx: &mut Ctx<'_>, kind: &str, at: &At<'_>) -> Option<Dist> {
    match kind {
        "fixed" => duration(cx, at).map(|ns| Dist::Fixed { ns }),
        "uniform" => {
            let [min, max] = required(cx, at, ["min", "max"])?;
            if min > max {
                cx.error(at, "uniform: min is above max (give min ≤ max)");
                return None;
            }
            Some(Dist::Uniform {
                min_ns: min,
                max_ns: max,
            })
        }
        "normal" => {
            let [mean, stdev] = required(cx, at, ["mean", "stdev"])?;
            Some(Dist::Normal {
                mean_ns: mean,
                stdev_ns: stdev,
            })
        }
        "lognormal" => {
            let [p50, p99] = required(cx, at, ["p50", "p99"])?;
            if p50 == 0 {
                cx.error(at, "lognormal: p50 must be above 0");
                return None;
            }
            if p99 < p50 {
                cx.error(at, "lognormal: p99 is below p50 (give p50 ≤ p99)");
                return None;
            }
            Some(Dist::LogNormal {
                p50_ns: p50,
                p99_ns: p99,
            })
        }
        "exponential" => {
            let [mean] = required(cx, at, ["mean"])?;
            Some(Dist::Exponential { mean_ns: mean })
        }
        _ => empirical(cx, at),
    }
}

/// The duration fields `names` of a mapping, all required.
fn required<const N: usize>(
    cx: &mut Ctx<'_>,
    at: &At<'_>,
    names: [&'static str; N],
) -> Option<[u64; N]> {
    let m = at.map(cx, &names)?;
    let mut out = [0u64; N];
    let mut ok = true;
    for (slot, name) in out.iter_mut().zip(names) {
        match m.get(cx, name) {
            Some(f) => match duration(cx, &f) {
                Some(v) => *slot = v,
                None => ok = false,
            },
            None => {
                m.missing(cx, name, "a duration such as 5ms");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn empirical(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<Dist> {
    let mut points = Vec::new();
    let mut ok = true;
    for item in at.items(cx) {
        let Some(m) = item.map(cx, &["p", "value"]) else {
            ok = false;
            continue;
        };
        let p = m.get(cx, "p").and_then(|f| number(cx, &f));
        let v = m.get(cx, "value").and_then(|f| duration(cx, &f));
        if !m.has("p") {
            m.missing(cx, "p", "a quantile in (0, 1]");
        }
        if !m.has("value") {
            m.missing(cx, "value", "a duration such as 5ms");
        }
        match (p, v) {
            (Some(p), Some(v)) => {
                if !(p > 0.0 && p <= 1.0) {
                    cx.error(
                        &item,
                        format!("p = {p} is out of range (a quantile in (0, 1])"),
                    );
                    ok = false;
                } else if let Some((lp, lv)) = points.last().copied() {
                    if p <= lp {
                        cx.error(
                            &item,
                            format!("p = {p} does not increase (the previous point has p = {lp})"),
                        );
                        ok = false;
                    } else if v < lv {
                        cx.error(
                            &item,
                            "value decreases (quantile values must not decrease as p grows)",
                        );
                        ok = false;
                    }
                }
                points.push((p, v));
            }
            _ => ok = false,
        }
    }
    if !ok {
        return None;
    }
    match points.last() {
        None => {
            cx.error(at, "empirical: no points (give [{ p: 0.5, value: 1ms }, ..., { p: 1.0, value: 50ms }])");
            None
        }
        Some((p, _)) if *p != 1.0 => {
            cx.error(
                at,
                format!("empirical: the last point has p = {p} (the table must end at p: 1.0)"),
            );
            None
        }
        Some(_) => Some(Dist::Empirical { points }),
    }
}

fn tail(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<(f64, Dist)> {
    let m = at.map(cx, &["probability", "latency"])?;
    let p = m.get(cx, "probability").and_then(|f| fraction(cx, &f));
    let d = m.get(cx, "latency").and_then(|f| dist(cx, &f));
    if !m.has("probability") {
        m.missing(cx, "probability", "e.g. 0.001 or 0.1%");
    }
    if !m.has("latency") {
        m.missing(cx, "latency", "a distribution such as { fixed: 1s }");
    }
    Some((p?, d?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::yaml::load_stream;

    fn parse(text: &str) -> (Option<Dist>, Vec<String>) {
        let docs = load_stream("f", text).expect("yaml");
        let mut cx = Ctx::new("f");
        let root = At::root(&docs[0]).map(&mut cx, &["d"]).expect("map");
        let at = root.get(&mut cx, "d").expect("d");
        let d = dist(&mut cx, &at);
        (d, cx.findings.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_kind_parses() {
        let ms = 1_000_000;
        assert_eq!(parse("d: 5ms").0, Some(Dist::Fixed { ns: 5 * ms }));
        assert_eq!(
            parse("d: { fixed: 100us }").0,
            Some(Dist::Fixed { ns: 100_000 })
        );
        assert_eq!(
            parse("d: { uniform: { min: 1ms, max: 2ms } }").0,
            Some(Dist::Uniform {
                min_ns: ms,
                max_ns: 2 * ms
            })
        );
        assert_eq!(
            parse("d: { normal: { mean: 2ms, stdev: 200us } }").0,
            Some(Dist::Normal {
                mean_ns: 2 * ms,
                stdev_ns: 200_000
            })
        );
        assert_eq!(
            parse("d: { lognormal: { p50: 2ms, p99: 20ms } }").0,
            Some(Dist::LogNormal {
                p50_ns: 2 * ms,
                p99_ns: 20 * ms
            })
        );
        assert_eq!(
            parse("d: { exponential: { mean: 1s } }").0,
            Some(Dist::Exponential { mean_ns: 1000 * ms })
        );
        assert_eq!(
            parse("d: { empirical: [{p: 0.5, value: 1ms}, {p: 1.0, value: 5ms}] }").0,
            Some(Dist::Empirical {
                points: vec![(0.5, ms), (1.0, 5 * ms)]
            })
        );
        assert_eq!(
            parse("d: { fixed: 1ms, tail: { probability: 0.1%, latency: { fixed: 1s } } }").0,
            Some(Dist::WithTail {
                base: Box::new(Dist::Fixed { ns: ms }),
                probability: 0.001,
                tail: Box::new(Dist::Fixed { ns: 1000 * ms }),
            })
        );
    }

    #[test]
    fn insane_parameters_are_reported_at_their_line_and_path() {
        let cases = [
            (
                "d:\n  uniform: { min: 2ms, max: 1ms }",
                "f:2: d.uniform: uniform: min is above max (give min ≤ max)",
            ),
            (
                "d:\n  lognormal: { p50: 20ms, p99: 2ms }",
                "f:2: d.lognormal: lognormal: p99 is below p50 (give p50 ≤ p99)",
            ),
            (
                "d: { normal: { mean: 2ms } }",
                "f:1: d.normal.stdev: missing required field `stdev` (a duration such as 5ms)",
            ),
            (
                "d: {}",
                "f:1: d: missing distribution (give one of fixed, uniform, normal, lognormal, exponential, empirical)",
            ),
            (
                "d: { fixed: 1ms, exponential: { mean: 1ms } }",
                "f:1: d: several distributions given (fixed, exponential): give exactly one",
            ),
            (
                "d: { fixd: 1ms }",
                "f:1: d.fixd: unknown field (did you mean `fixed`?)",
            ),
            (
                "d: { fixed: 5 }",
                "f:1: d.fixed: duration 5 has no unit (write a number and a unit: ns, us, ms, s, m, h — e.g. 250ms, 1.5s, 5m)",
            ),
            (
                "d:\n  empirical:\n  - {p: 0.9, value: 1ms}\n  - {p: 0.5, value: 2ms}",
                "f:4: d.empirical[1]: p = 0.5 does not increase (the previous point has p = 0.9)",
            ),
            (
                "d: { empirical: [{p: 0.5, value: 1ms}] }",
                "f:1: d.empirical: empirical: the last point has p = 0.5 (the table must end at p: 1.0)",
            ),
            (
                "d: { fixed: 1ms, tail: { probability: 2, latency: 1s } }",
                "f:1: d.tail.probability: 2 is out of range (a fraction 0..1 or a percentage 0%..100%)",
            ),
        ];
        for (text, want) in cases {
            let (d, findings) = parse(text);
            assert_eq!(d, None, "{text}");
            assert_eq!(findings, [want], "{text}");
        }
    }
}
