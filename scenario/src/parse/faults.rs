//! `spec.faults`: each entry has `at`, an optional `for`, and exactly one kind
//! (`ca: rotate` takes `overlap` instead of `for`).

use crate::model::{Fault, FaultKind, Selector};

use super::dist::dist;
use super::spec::{config_sources, pair};
use super::values::{boolean, duration, fraction, name, number, signed_duration, uint};
use super::yaml::{self, At, Ctx, Map};

const KINDS: [&str; 12] = [
    "kill",
    "restart",
    "zoneOutage",
    "partition",
    "linkLatency",
    "linkLoss",
    "hold",
    "ca",
    "controlPlane",
    "config",
    "clockSkew",
    "app",
];

pub(crate) fn fault(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<Fault> {
    let mut fields: Vec<&'static str> = vec!["at", "for", "overlap"];
    fields.extend_from_slice(&KINDS);
    let m = at.map(cx, &fields)?;
    let at_ns = m.get(cx, "at").and_then(|f| duration(cx, &f));
    if !m.has("at") {
        m.missing(cx, "at", "when it happens, e.g. at: 20s");
    }
    // `ca: rotate` refuses any `for` (reported with the kind).
    let rotate = m
        .get(cx, "ca")
        .is_some_and(|f| yaml::as_str(f.node) == Some("rotate"));
    let for_ns = match m.get(cx, "for") {
        Some(_) if rotate => Some(None),
        Some(f) => match duration(cx, &f) {
            Some(0) => {
                cx.error(
                    &f,
                    "`for: 0` undoes the fault at once (leave `for` out to keep it)",
                );
                None
            }
            d => Some(d),
        },
        None => Some(None),
    };
    let given = m.present(&KINDS);
    let kind = match given.as_slice() {
        [one] => {
            let f = m.get(cx, one)?;
            kind(cx, one, &f, &m)
        }
        [] if m.had_unknown() => None,
        [] => {
            cx.error(
                at,
                format!("missing fault kind (give one of {})", KINDS.join(", ")),
            );
            None
        }
        many => {
            cx.error(
                at,
                format!(
                    "several fault kinds in one entry ({}): give one per entry",
                    many.join(", ")
                ),
            );
            None
        }
    };
    if given != ["ca"]
        && let Some(f) = m.get(cx, "overlap")
    {
        cx.error(
            &f,
            "`overlap` belongs to `ca: rotate` only (remove it, or write `ca: rotate`)",
        );
        return None;
    }
    Some(Fault {
        at_ns: at_ns?,
        for_ns: for_ns?,
        kind: kind?,
        line: at.line,
    })
}

/// The kind `kind` at `at`; `entry` is the whole fault entry (for `ca: rotate`'s
/// `overlap`).
fn kind(cx: &mut Ctx<'_>, kind: &str, at: &At<'_>, entry: &Map<'_>) -> Option<FaultKind> {
    match kind {
        "kill" => selector(cx, at, &[]).map(|(s, _)| FaultKind::Kill(s)),
        "restart" => selector(cx, at, &[]).map(|(s, _)| FaultKind::Restart(s)),
        "zoneOutage" => name(cx, at).map(|zone| FaultKind::ZoneOutage { zone }),
        "partition" => {
            let m = at.map(cx, &["between", "oneWay"])?;
            let one_way = m.get(cx, "oneWay").and_then(|f| boolean(cx, &f));
            let (a, b) = between(cx, &m)?;
            Some(FaultKind::Partition {
                a,
                b,
                one_way: one_way.unwrap_or(false),
            })
        }
        "linkLatency" => {
            let m = at.map(cx, &["between", "latency"])?;
            let latency = m.get(cx, "latency").and_then(|f| dist(cx, &f));
            if !m.has("latency") {
                m.missing(cx, "latency", "e.g. latency: { fixed: 50ms }");
            }
            let (a, b) = between(cx, &m)?;
            Some(FaultKind::LinkLatency {
                a,
                b,
                latency: latency?,
            })
        }
        "linkLoss" => {
            let m = at.map(cx, &["between", "loss"])?;
            let loss = m.get(cx, "loss").and_then(|f| fraction(cx, &f));
            if !m.has("loss") {
                m.missing(cx, "loss", "e.g. loss: 5%");
            }
            let (a, b) = between(cx, &m)?;
            Some(FaultKind::LinkLoss { a, b, loss: loss? })
        }
        "hold" => {
            let m = at.map(cx, &["between"])?;
            let (a, b) = between(cx, &m)?;
            Some(FaultKind::Hold { a, b })
        }
        "ca" => ca(cx, at, entry),
        "controlPlane" => outage(cx, at, "controlPlane").then_some(FaultKind::ControlPlaneOutage),
        "config" => {
            let sources = config_sources(cx, at);
            if sources.is_empty() && yaml::is_list(at.node) {
                cx.error(
                    at,
                    "no config sources (give [{ file: canary.yaml }] or [{ inline: \"...\" }])",
                );
                return None;
            }
            Some(FaultKind::Config(sources))
        }
        "clockSkew" => {
            let (selector, m) = selector(cx, at, &["offset", "driftPpm"])?;
            let offset = m.get(cx, "offset").map(|f| signed_duration(cx, &f));
            let drift = m.get(cx, "driftPpm").map(|f| number(cx, &f));
            if offset.is_none() && drift.is_none() {
                cx.error(
                    at,
                    "clockSkew changes nothing (give `offset`, e.g. 2h or -30s, and/or `driftPpm`)",
                );
                return None;
            }
            Some(FaultKind::ClockSkew {
                selector,
                offset_ns: offset.unwrap_or(Some(0))?,
                drift_ppm: drift.unwrap_or(Some(0.0))?,
            })
        }
        _ => {
            let (selector, m) = selector(cx, at, &["errorRate", "serviceTime"])?;
            let error_rate = m.get(cx, "errorRate").map(|f| fraction(cx, &f));
            let service_time = m.get(cx, "serviceTime").map(|f| dist(cx, &f));
            if error_rate.is_none() && service_time.is_none() {
                cx.error(
                    at,
                    "app changes nothing (give `errorRate` and/or `serviceTime`)",
                );
                return None;
            }
            Some(FaultKind::App {
                selector,
                error_rate: error_rate.map_or(Some(None), |v| v.map(Some))?,
                service_time: service_time.map_or(Some(None), |v| v.map(Some))?,
            })
        }
    }
}

/// `ca: outage` (with an optional `for`) or `ca: rotate` (with a required `overlap`
/// and no `for`: a rotation ends by itself, when the old root leaves the bundle).
fn ca(cx: &mut Ctx<'_>, at: &At<'_>, entry: &Map<'_>) -> Option<FaultKind> {
    match yaml::as_str(at.node) {
        Some("outage") => {
            if let Some(f) = entry.get(cx, "overlap") {
                cx.error(
                    &f,
                    "`overlap` belongs to `ca: rotate`; a CA outage lasts `for` (remove `overlap`)",
                );
                return None;
            }
            Some(FaultKind::CaOutage)
        }
        Some("rotate") => {
            let no_for = match entry.get(cx, "for") {
                Some(f) => {
                    cx.error(
                        &f,
                        "`for` is not allowed with `ca: rotate`: a rotation ends by itself when \
                         the old root leaves the bundle, `overlap` after `at` (remove `for`)",
                    );
                    false
                }
                None => true,
            };
            let overlap_ns = match entry.get(cx, "overlap") {
                Some(f) => match duration(cx, &f) {
                    Some(0) => {
                        cx.error(
                            &f,
                            "`overlap: 0` drops the old root the moment the new one exists, so \
                             every certificate it signed stops being trusted (give at least twice \
                             ca.certTtl, e.g. overlap: 48h)",
                        );
                        None
                    }
                    d => d,
                },
                None => {
                    entry.missing(
                        cx,
                        "overlap",
                        "how long the old and new roots are both trusted, e.g. overlap: 48h \
                         (at least twice ca.certTtl)",
                    );
                    None
                }
            };
            let overlap_ns = overlap_ns?;
            no_for.then_some(FaultKind::CaRotate { overlap_ns })
        }
        _ => {
            let found = yaml::describe(at.node);
            cx.error(
                at,
                format!(
                    "expected `outage` or `rotate`, found {found} (write `ca: outage` with an \
                     optional `for`, or `ca: rotate` with `overlap`)"
                ),
            );
            None
        }
    }
}

fn outage(cx: &mut Ctx<'_>, at: &At<'_>, field: &str) -> bool {
    if yaml::as_str(at.node) == Some("outage") {
        return true;
    }
    let found = yaml::describe(at.node);
    cx.error(
        at,
        format!("expected `outage`, found {found} (write `{field}: outage`)"),
    );
    false
}

fn between(cx: &mut Ctx<'_>, m: &Map<'_>) -> Option<(String, String)> {
    match m.get(cx, "between") {
        Some(f) => pair(cx, &f),
        None => {
            m.missing(
                cx,
                "between",
                "two zones or two services, e.g. between: [a, b]",
            );
            None
        }
    }
}

/// `{ service, version, zone, count }` plus the kind's own `extra` fields.
fn selector<'a>(
    cx: &mut Ctx<'_>,
    at: &At<'a>,
    extra: &[&'static str],
) -> Option<(Selector, Map<'a>)> {
    let mut fields = vec!["service", "version", "zone", "count"];
    fields.extend_from_slice(extra);
    let m = at.map(cx, &fields)?;
    let service = m.get(cx, "service").and_then(|f| name(cx, &f));
    if !m.has("service") {
        m.missing(cx, "service", "the service whose instances are affected");
    }
    let version = m.get(cx, "version").map(|f| name(cx, &f));
    let zone = m.get(cx, "zone").map(|f| name(cx, &f));
    let count = match m.get(cx, "count") {
        Some(f) => match uint(cx, &f, 100_000) {
            Some(0) => {
                cx.error(
                    &f,
                    "count 0 selects nothing (leave it out for every instance)",
                );
                return None;
            }
            c => Some(c.and_then(|c| u32::try_from(c).ok())),
        },
        None => None,
    };
    let selector = Selector {
        service: service?,
        version: version.map_or(Some(None), |v| v.map(Some))?,
        zone: zone.map_or(Some(None), |v| v.map(Some))?,
        count: count.map_or(Some(None), |v| v.map(Some))?,
    };
    Some((selector, m))
}
