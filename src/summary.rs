//! The human summary of a load result: what was asked and achieved, a percentile
//! table (corrected beside uncorrected), status codes and errors, and a compact text
//! histogram of the corrected latency.

use std::fmt::Write as _;

use results::{LoadMode, LoadResult, Recorder};

/// Renders the summary printed at the end of `meshrig load`.
pub fn render(r: &LoadResult) -> String {
    let mut out = String::new();
    let t = &r.target;
    let mode = match (r.mode, r.rps_target) {
        (LoadMode::Open, Some(target)) => format!("open loop, {target} rps target"),
        _ => "closed loop (max rate)".to_owned(),
    };
    let _ = writeln!(
        out,
        "{} {} — {mode}, {} connection{} ({}{}){}",
        t.method,
        t.url,
        t.connections,
        if t.connections == 1 { "" } else { "s" },
        t.http_version,
        if t.streams_per_connection > 1 {
            format!(", {} streams each", t.streams_per_connection)
        } else {
            String::new()
        },
        if r.interrupted {
            " — INTERRUPTED"
        } else {
            ""
        },
    );
    let secs = r.duration_ns as f64 / 1e9;
    let _ = writeln!(
        out,
        "  requests  {} in {:.3}s: {} responses ({} ok), {} errors",
        r.requests_total, secs, r.responses_total, r.success_total, r.errors_total
    );
    match r.rps_target {
        Some(target) => {
            let verdict = if r.schedule.target_met {
                "target met"
            } else {
                "TARGET NOT MET"
            };
            let _ = writeln!(
                out,
                "  rate      {:.1} rps achieved of {target} requested ({verdict}); sends behind schedule: p99 {} max {} at end {}",
                r.rps_actual,
                fmt_us(r.send_lag_us.p99),
                fmt_us(r.schedule.behind_max_us),
                fmt_us(r.schedule.behind_at_end_us),
            );
            let _ = writeln!(
                out,
                "  scheduler {:.1}% of a core for precise timing",
                r.schedule.scheduler_cpu_percent
            );
        }
        None => {
            let _ = writeln!(out, "  rate      {:.1} rps achieved", r.rps_actual);
        }
    }
    let codes: Vec<_> = r
        .status_codes
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    if !codes.is_empty() {
        let _ = writeln!(out, "  status    {}", codes.join(", "));
    }
    let errors: Vec<_> = r.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "  errors    {}", errors.join(", "));
    }
    for (header, values) in &r.groups {
        let total: u64 = values.values().sum();
        let parts: Vec<_> = values
            .iter()
            .map(|(v, n)| {
                let name = if v.is_empty() { "(absent)" } else { v };
                format!(
                    "{name}: {n} ({:.1}%)",
                    100.0 * *n as f64 / total.max(1) as f64
                )
            })
            .collect();
        let _ = writeln!(out, "  by {header}  {}", parts.join(", "));
    }

    let c = &r.latency_us;
    let u = &r.latency_uncorrected_us;
    let _ = writeln!(out, "\n  latency      corrected   uncorrected");
    for (name, a, b) in [
        ("p50", c.p50, u.p50),
        ("p75", c.p75, u.p75),
        ("p90", c.p90, u.p90),
        ("p99", c.p99, u.p99),
        ("p99.9", c.p999, u.p999),
        ("p99.99", c.p9999, u.p9999),
        ("max", c.max, u.max),
    ] {
        let _ = writeln!(out, "  {name:<10} {:>11}  {:>11}", fmt_us(a), fmt_us(b));
    }
    let _ = writeln!(
        out,
        "  {:<10} {:>11}  {:>11}",
        "mean",
        fmt_us(c.mean.round() as u64),
        fmt_us(u.mean.round() as u64)
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>11}  {:>11}",
        "stdev",
        fmt_us(c.stdev.round() as u64),
        fmt_us(u.stdev.round() as u64)
    );
    if let Ok(rec) = c.recorder()
        && !rec.is_empty()
    {
        let _ = writeln!(out, "\n  corrected latency histogram");
        out.push_str(&text_histogram(&rec, 10, 40));
    }
    out
}

/// Log-spaced buckets between min and max, one line each: upper bound, bar, count, %.
pub fn text_histogram(rec: &Recorder, rows: usize, width: usize) -> String {
    let h = rec.hdr();
    let (lo, hi) = (h.min().max(1) as f64, h.max().max(1) as f64);
    let total = h.len().max(1) as f64;
    let ratio = if hi > lo {
        (hi / lo).powf(1.0 / rows as f64)
    } else {
        1.0
    };
    let mut bounds: Vec<u64> = (1..=rows)
        .map(|i| (lo * ratio.powi(i as i32)).ceil() as u64)
        .collect();
    bounds.dedup();
    if let Some(last) = bounds.last_mut() {
        *last = (*last).max(h.max());
    }
    let mut counts = vec![0u64; bounds.len()];
    for v in h.iter_recorded() {
        let value = v.value_iterated_to();
        let idx = bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(bounds.len() - 1);
        counts[idx] += v.count_at_value();
    }
    let peak = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut out = String::new();
    for (bound, count) in bounds.iter().zip(&counts) {
        let bar = "█".repeat(((*count as f64 / peak as f64) * width as f64).round() as usize);
        let _ = writeln!(
            out,
            "  ≤ {:>9} │{bar:<width$} {count} ({:.1}%)",
            fmt_us(*bound),
            100.0 * *count as f64 / total,
        );
    }
    out
}

fn fmt_us(us: u64) -> String {
    loadgen::report::fmt_us(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_rows_cover_every_value() {
        let mut rec = Recorder::latency();
        for v in [100, 200, 400, 800, 1600, 3200, 6400, 12_800] {
            for _ in 0..10 {
                rec.record(v);
            }
        }
        let text = text_histogram(&rec, 8, 20);
        let total: u64 = text
            .lines()
            .map(|l| {
                let after_bar = l.rsplit_once(' ').unwrap().0;
                after_bar
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(total, 80, "{text}");
        assert!(text.lines().count() <= 8);
    }
}
