//! Evaluating assertions against a [`ScenarioResult`].
//!
//! Traffic functions read the target's [`TrafficStats`] (`client` → `totals`, a
//! service → `services`, `service:version` → `versions`, `caller->callee` → `edges`;
//! with a window, the matching entry of `windows`, which the driver records for every
//! `(target, from, to)` in [`windows_needed`]). A latency, success-rate or
//! retry-amplification assertion on a target that saw no request fails: there is
//! nothing to measure, and passing would hide a broken scenario.

use results::scenario::{AssertionVerdict, ScenarioResult, TrafficStats};

use super::grammar::{AssertExpr, Func, Target, Window};
use crate::model::Assertion;

/// The verdict of every assertion, in order. `advisory` is left `false`: the real
/// driver sets it for [`is_timing`] assertions.
pub fn evaluate(assertions: &[Assertion], result: &ScenarioResult) -> Vec<AssertionVerdict> {
    assertions.iter().map(|a| verdict(a, result)).collect()
}

/// True for latency assertions (`p50` … `max`, `mean`), which real mode reports as
/// advisory: wall-clock latency depends on the machine.
pub fn is_timing(assertion: &Assertion) -> bool {
    assertion.expr.func.is_latency()
}

/// The `(target, from_ns, to_ns)` windows the assertions read, deduplicated and
/// sorted. The driver records a `WindowStats` for each, with `target` as given here.
pub fn windows_needed(assertions: &[Assertion]) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for a in assertions {
        let e = &a.expr;
        let Some(w) = e.window else { continue };
        if e.func.is_traffic() {
            out.push((e.target.key(), w.from_ns, w.to_ns));
        } else if let (Func::Share, Target::Version { service, .. }) = (e.func, &e.target) {
            out.push((e.target.key(), w.from_ns, w.to_ns));
            // The denominator: every version of the service (`service:*`).
            out.push((format!("{service}:*"), w.from_ns, w.to_ns));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn verdict(a: &Assertion, result: &ScenarioResult) -> AssertionVerdict {
    let e = &a.expr;
    match measure(e, result) {
        Ok(actual) => {
            let passed = e.cmp.holds(actual, e.value, e.tolerance);
            let shown = e.unit.format(actual);
            let wanted = wanted(e);
            let detail = if passed {
                format!("{} = {shown} ({wanted} holds)", e.metric)
            } else {
                format!("{} = {shown}, wanted {wanted}", e.metric)
            };
            AssertionVerdict {
                expr: a.text.clone(),
                passed,
                actual: Some(e.unit.from_canonical(actual)),
                detail,
                advisory: false,
            }
        }
        Err(why) => AssertionVerdict {
            expr: a.text.clone(),
            passed: false,
            actual: None,
            detail: format!("{}: {why}", e.metric),
            advisory: false,
        },
    }
}

fn wanted(e: &AssertExpr) -> String {
    let mut s = format!("{} {}", e.cmp.symbol(), e.unit.format(e.value));
    if let Some(t) = e.tolerance {
        s.push_str(&format!(" ± {}", e.unit.format(t)));
    }
    s
}

fn window_label(w: Option<Window>) -> String {
    match w {
        Some(w) => format!(
            " in [{}..{}]",
            results::units::format_duration(std::time::Duration::from_nanos(w.from_ns)),
            results::units::format_duration(std::time::Duration::from_nanos(w.to_ns))
        ),
        None => String::new(),
    }
}

/// The stats of `target` (over `window` when given). `Ok(None)`: the target saw no
/// traffic (it is missing from the result). `Err`: a window was not recorded.
/// The recorded window of `key` over `window`, if the driver recorded it.
fn window_stats<'r>(
    result: &'r ScenarioResult,
    key: &str,
    window: Option<Window>,
) -> Option<&'r TrafficStats> {
    let w = window?;
    result
        .windows
        .iter()
        .find(|s| s.target == key && s.from_ns == w.from_ns && s.to_ns == w.to_ns)
        .map(|s| &s.stats)
}

fn stats<'r>(
    result: &'r ScenarioResult,
    target: &Target,
    window: Option<Window>,
) -> Result<Option<&'r TrafficStats>, String> {
    let key = target.key();
    if let Some(w) = window {
        return result
            .windows
            .iter()
            .find(|s| s.target == key && s.from_ns == w.from_ns && s.to_ns == w.to_ns)
            .map(|s| Some(&s.stats))
            .ok_or_else(|| format!("no statistics recorded for `{key}`{} (the driver records the windows listed by windows_needed)", window_label(window)));
    }
    Ok(match target {
        Target::Client => Some(&result.totals),
        Target::Service(s) => result.services.get(s),
        Target::Version { .. } => result.versions.get(&key),
        Target::Edge { .. } => result.edges.get(&key),
        Target::All | Target::EventKind(_) => None,
    })
}

/// The measured value in the canonical unit, or why there is none.
fn measure(e: &AssertExpr, result: &ScenarioResult) -> Result<f64, String> {
    let key = e.target.key();
    let within = window_label(e.window);
    if e.func.is_traffic() {
        let s = stats(result, &e.target, e.window)?;
        let requests = s.map_or(0, |s| s.requests_total);
        let no_traffic = || format!("no requests to `{key}`{within}: nothing to measure");
        return match e.func {
            Func::Requests => Ok(requests as f64),
            Func::Errors => Ok(s.map_or(0, |s| s.errors_total) as f64),
            Func::Retries => Ok(s.map_or(0, |s| s.retries_total) as f64),
            Func::Rps => Ok(s.map_or(0.0, |s| s.rps_actual)),
            _ if requests == 0 => Err(no_traffic()),
            Func::SuccessRate => Ok(s.map_or(0, |s| s.success_total) as f64 / requests as f64),
            Func::ErrorRate => Ok(s.map_or(0, |s| s.errors_total) as f64 / requests as f64),
            Func::RetryAmplification => {
                Ok(s.map_or(0, |s| s.attempts_total) as f64 / requests as f64)
            }
            _ => {
                let Some(l) = s.map(|s| &s.latency_us).filter(|l| l.count > 0) else {
                    return Err(format!(
                        "no completed requests to `{key}`{within}: no latency to measure"
                    ));
                };
                let us = match e.func {
                    Func::P50 => l.p50 as f64,
                    Func::P90 => l.p90 as f64,
                    Func::P99 => l.p99 as f64,
                    Func::P999 => l.p999 as f64,
                    Func::Max => l.max as f64,
                    _ => l.mean,
                };
                Ok(us * 1_000.0)
            }
        };
    }
    match (&e.func, &e.target) {
        (Func::Share, Target::Version { service, .. }) => {
            let (part, whole) = match e.window {
                Some(_) => {
                    let part = stats(result, &e.target, e.window)?.map_or(0, |s| s.attempts_total);
                    let key = format!("{service}:*");
                    let whole =
                        window_stats(result, &key, e.window).map_or(0, |s| s.attempts_total);
                    (part, whole)
                }
                None => {
                    let prefix = format!("{service}:");
                    let whole = result
                        .versions
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .map(|(_, s)| s.attempts_total)
                        .sum();
                    (
                        result.versions.get(&key).map_or(0, |s| s.attempts_total),
                        whole,
                    )
                }
            };
            if whole == 0 {
                return Err(format!(
                    "no requests to `{service}`{within}: no share to measure"
                ));
            }
            Ok(part as f64 / whole as f64)
        }
        (Func::Ejections | Func::CertExpiries, target) => {
            let total: u64 = result
                .instances
                .iter()
                .filter(|i| match target {
                    Target::Service(s) => &i.service == s,
                    Target::Version { service, version } => {
                        &i.service == service && &i.version == version
                    }
                    _ => true,
                })
                .map(|i| {
                    if e.func == Func::Ejections {
                        i.ejections
                    } else {
                        i.cert_expiries
                    }
                })
                .sum();
            Ok(total as f64)
        }
        (Func::Events, Target::EventKind(kind)) => match e.window {
            None => Ok(result.events_total.get(kind).copied().unwrap_or(0) as f64),
            Some(_) if result.events_unlogged.get(kind).is_some_and(|&n| n > 0) => Err(format!(
                "`{kind}` events are not all in the log ({} only counted: the kind is counted \
                 without logging, or its log was capped), so they cannot be counted in a window",
                result.events_unlogged[kind]
            )),
            Some(w) => Ok(result
                .events
                .iter()
                .filter(|ev| &ev.kind == kind && ev.t_ns >= w.from_ns && ev.t_ns < w.to_ns)
                .count() as f64),
        },
        _ => Err("this function does not apply to this target".to_owned()),
    }
}
