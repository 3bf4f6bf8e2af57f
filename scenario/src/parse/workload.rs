//! `spec.workload`: open-loop rates (constant, ramp, steps, sine) and closed-loop users.

use crate::dist::Dist;
use crate::model::{Load, RateProfile, Workload};

use super::dist::dist;
use super::values::{boolean, duration, name, rate, size, string, string_map, uint};
use super::yaml::{self, At, Ctx};

const FIELDS: [&str; 14] = [
    "target",
    "fromZone",
    "path",
    "method",
    "headers",
    "requestBytes",
    "rate",
    "users",
    "thinkTime",
    "start",
    "duration",
    "timeout",
    "newConnectionPerRequest",
    "arrivals",
];

/// Default client timeout.
pub const DEFAULT_TIMEOUT_NS: u64 = 30_000_000_000;

/// One workload entry; `first_zone` is the default `fromZone`.
pub(crate) fn workload(cx: &mut Ctx<'_>, at: &At<'_>, first_zone: &str) -> Option<Workload> {
    let m = at.map(cx, &FIELDS)?;
    let target = m.get(cx, "target").and_then(|f| name(cx, &f));
    if !m.has("target") {
        m.missing(cx, "target", "the service to send requests to");
    }
    let from_zone = m.get(cx, "fromZone").and_then(|f| name(cx, &f));
    let path = m.get(cx, "path").and_then(|f| string(cx, &f));
    let method = m.get(cx, "method").and_then(|f| name(cx, &f));
    let headers = m
        .get(cx, "headers")
        .map(|f| string_map(cx, &f))
        .unwrap_or_default();
    let request_bytes = m.get(cx, "requestBytes").and_then(|f| size(cx, &f));
    let start = m.get(cx, "start").and_then(|f| duration(cx, &f));
    let dur = m.get(cx, "duration").and_then(|f| duration(cx, &f));
    let timeout = match m.get(cx, "timeout") {
        Some(f) => match duration(cx, &f) {
            Some(0) => {
                cx.error(&f, "a timeout of 0 fails every request (e.g. 10s)");
                None
            }
            t => t,
        },
        None => None,
    };
    let churn = m
        .get(cx, "newConnectionPerRequest")
        .and_then(|f| boolean(cx, &f));
    let poisson = match m.get(cx, "arrivals") {
        Some(f) => match string(cx, &f).as_deref() {
            Some("uniform") => Some(false),
            Some("poisson") => Some(true),
            Some(other) => {
                cx.error(
                    &f,
                    format!("unknown arrival process `{other}` (expected `uniform` or `poisson`)"),
                );
                None
            }
            None => None,
        },
        None => Some(false),
    };
    let load = match (m.get(cx, "rate"), m.get(cx, "users")) {
        (Some(r), None) => {
            if let Some(t) = m.get(cx, "thinkTime") {
                cx.error(
                    &t,
                    "thinkTime applies to closed-loop `users`, not to an open-loop `rate`",
                );
            }
            rate_profile(cx, &r).map(Load::Open)
        }
        (None, Some(u)) => {
            let users = uint(cx, &u, 1_000_000).and_then(|n| u32::try_from(n).ok());
            if users == Some(0) {
                cx.error(&u, "0 users send nothing (give 1 or more)");
            }
            let think = match m.get(cx, "thinkTime") {
                Some(t) => dist(cx, &t),
                None => Some(Dist::Fixed { ns: 0 }),
            };
            match (users, think) {
                (Some(users), Some(think_time)) if users > 0 => {
                    Some(Load::Closed { users, think_time })
                }
                _ => None,
            }
        }
        (Some(_), Some(u)) => {
            cx.error(
                &u,
                "give either `rate` (open loop) or `users` (closed loop), not both",
            );
            None
        }
        (None, None) if m.had_unknown() => None,
        (None, None) => {
            m.missing(
                cx,
                "rate",
                "e.g. rate: { constant: 100/s }, or closed-loop users: 10",
            );
            None
        }
    };
    Some(Workload {
        target: target?,
        from_zone: from_zone.unwrap_or_else(|| first_zone.to_owned()),
        method: method.unwrap_or_else(|| "GET".to_owned()),
        path: path.unwrap_or_else(|| "/".to_owned()),
        headers,
        request_bytes: request_bytes.unwrap_or(0),
        load: load?,
        start_ns: start.unwrap_or(0),
        duration_ns: dur,
        timeout_ns: timeout.unwrap_or(DEFAULT_TIMEOUT_NS),
        new_connection_per_request: churn.unwrap_or(false),
        poisson_arrivals: poisson?,
    })
}

const PROFILES: [&str; 4] = ["constant", "ramp", "steps", "sine"];

/// `rate:` — a bare rate (constant) or exactly one profile.
pub(crate) fn rate_profile(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<RateProfile> {
    if !yaml::is_map(at.node) {
        return rate(cx, at).map(|rps| RateProfile::Constant { rps });
    }
    let m = at.map(cx, &PROFILES)?;
    let given = m.present(&PROFILES);
    let [one] = given.as_slice() else {
        if given.is_empty() && !m.had_unknown() {
            cx.error(
                at,
                format!("missing rate profile (give one of {})", PROFILES.join(", ")),
            );
        } else {
            cx.error(
                at,
                format!(
                    "several rate profiles given ({}): give exactly one",
                    given.join(", ")
                ),
            );
        }
        return None;
    };
    let f = m.get(cx, one)?;
    match *one {
        "constant" => rate(cx, &f).map(|rps| RateProfile::Constant { rps }),
        "ramp" => {
            let r = f.map(cx, &["from", "to"])?;
            let from = r.get(cx, "from").and_then(|f| rate(cx, &f));
            let to = r.get(cx, "to").and_then(|f| rate(cx, &f));
            for n in ["from", "to"] {
                if !r.has(n) {
                    r.missing(cx, n, "a rate such as 100/s");
                }
            }
            Some(RateProfile::Ramp {
                from_rps: from?,
                to_rps: to?,
            })
        }
        "steps" => steps(cx, &f),
        _ => {
            let s = f.map(cx, &["mean", "amplitude", "period"])?;
            let mean = s.get(cx, "mean").and_then(|f| rate(cx, &f));
            let amp = s.get(cx, "amplitude").and_then(|f| rate(cx, &f));
            let period = s.get(cx, "period").and_then(|f| duration(cx, &f));
            for (n, hint) in [
                ("mean", "a rate such as 500/s"),
                ("amplitude", "a rate such as 200/s"),
                ("period", "a duration such as 10s"),
            ] {
                if !s.has(n) {
                    s.missing(cx, n, hint);
                }
            }
            if period == Some(0) {
                if let Some(p) = s.get(cx, "period") {
                    cx.error(&p, "a period of 0 has no shape (e.g. 10s)");
                }
                return None;
            }
            if let (Some(m), Some(a)) = (mean, amp)
                && a > m
            {
                cx.warning(&f, format!("amplitude {a}/s is above the mean {m}/s: the rate is cut at 0 for part of each period"));
            }
            Some(RateProfile::Sine {
                mean_rps: mean?,
                amplitude_rps: amp?,
                period_ns: period?,
            })
        }
    }
}

fn steps(cx: &mut Ctx<'_>, at: &At<'_>) -> Option<RateProfile> {
    let mut out: Vec<(u64, f64)> = Vec::new();
    let mut ok = true;
    for item in at.items(cx) {
        let Some(m) = item.map(cx, &["at", "rate"]) else {
            ok = false;
            continue;
        };
        let t = m.get(cx, "at").and_then(|f| duration(cx, &f));
        let r = m.get(cx, "rate").and_then(|f| rate(cx, &f));
        for n in ["at", "rate"] {
            if !m.has(n) {
                m.missing(cx, n, "e.g. { at: 10s, rate: 500/s }");
            }
        }
        match (t, r) {
            (Some(t), Some(r)) => {
                if let Some((prev, _)) = out.last()
                    && t <= *prev
                {
                    cx.error(&item, "steps must be in increasing `at` order");
                    ok = false;
                }
                out.push((t, r));
            }
            _ => ok = false,
        }
    }
    if ok && out.is_empty() {
        cx.error(
            at,
            "no steps (e.g. steps: [{ at: 0s, rate: 100/s }, { at: 10s, rate: 500/s }])",
        );
        return None;
    }
    ok.then_some(RateProfile::Steps { steps: out })
}
