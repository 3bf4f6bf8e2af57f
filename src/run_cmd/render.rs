//! The human summary of a scenario result: what ran, one table per kind of target
//! (workload, services, edges, versions), failures by cause, event counts, what could
//! not be applied, warnings, and every assertion with PASS/FAIL. Units are in the
//! column headers; latencies are in milliseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use results::scenario::{ScenarioResult, TrafficStats};
use results::units::format_duration;

/// Renders the summary printed at the end of `meshrig run`.
pub fn summary(r: &ScenarioResult) -> String {
    let mut out = String::new();
    header(&mut out, r);
    workload_table(&mut out, r);
    service_table(&mut out, r);
    edge_table(&mut out, r);
    version_table(&mut out, r);
    failures(&mut out, r);
    events(&mut out, r);
    list(&mut out, "not applied", &r.not_applied);
    list(&mut out, "warnings", &r.warnings);
    assertions(&mut out, r);
    out
}

fn header(out: &mut String, r: &ScenarioResult) {
    let s = &r.scenario;
    let dur = |ns: u64| format_duration(Duration::from_nanos(ns));
    let _ = write!(
        out,
        "scenario {} ({}) — {}, seed {}, {} of {} time",
        s.name,
        s.file,
        s.mode,
        s.seed,
        dur(r.duration_ns),
        if s.mode == "sim" { "virtual" } else { "wall" },
    );
    if let Some(t) = s.truncated_to_ns {
        let _ = write!(
            out,
            " (truncated by --duration {}; spec.duration is {})",
            dur(t),
            dur(s.duration_requested_ns)
        );
    }
    if r.interrupted {
        let at = r.sim.as_ref().map_or(r.duration_ns, |m| m.end_time_ns);
        let _ = write!(out, " — INTERRUPTED at {}", dur(at.min(r.duration_ns)));
    }
    out.push('\n');
    let _ = write!(out, "  hash {}", s.hash);
    if let Some(m) = &r.sim {
        let _ = write!(
            out,
            ", cost table {}, {} instances, {} events processed",
            m.cost_table,
            m.instances,
            thousands(m.events_processed)
        );
    }
    out.push('\n');
}

fn workload_table(out: &mut String, r: &ScenarioResult) {
    let mut t = Table::new(&[
        "workload",
        "target rps",
        "requests",
        "success",
        "rps",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
    ]);
    let row = |name: String, target: Option<f64>, s: &TrafficStats| {
        let l = &s.latency_us;
        vec![
            name,
            target.map_or_else(|| "closed".to_owned(), |v| format!("{v:.1}")),
            s.requests_total.to_string(),
            percent(s.success_total, s.requests_total),
            format!("{:.1}", s.rps_actual),
            ms(l.count, l.p50),
            ms(l.count, l.p90),
            ms(l.count, l.p99),
            ms(l.count, l.max),
            s.errors_total.to_string(),
        ]
    };
    for w in &r.workloads {
        t.push(row(format!("→ {}", w.target), w.rps_target, &w.stats));
    }
    if r.workloads.len() != 1 {
        let target = r
            .workloads
            .iter()
            .map(|w| w.rps_target)
            .sum::<Option<f64>>();
        t.push(row("all workloads".to_owned(), target, &r.totals));
    }
    t.render(out);
}

fn service_table(out: &mut String, r: &ScenarioResult) {
    if r.services.is_empty() {
        return;
    }
    let mut t = Table::new(&[
        "service",
        "requests",
        "success",
        "rps",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "retries",
        "retry amp",
    ]);
    for (name, s) in &r.services {
        let l = &s.latency_us;
        t.push(vec![
            name.clone(),
            s.requests_total.to_string(),
            percent(s.success_total, s.requests_total),
            format!("{:.1}", s.rps_actual),
            ms(l.count, l.p50),
            ms(l.count, l.p90),
            ms(l.count, l.p99),
            ms(l.count, l.max),
            s.retries_total.to_string(),
            format!("{:.2}x", s.retry_amplification),
        ]);
    }
    t.render(out);
}

fn edge_table(out: &mut String, r: &ScenarioResult) {
    if r.edges.is_empty() {
        return;
    }
    let mut t = Table::new(&[
        "edge", "requests", "success", "rps", "p50 ms", "p99 ms", "max ms", "retries",
    ]);
    for (name, s) in &r.edges {
        let l = &s.latency_us;
        t.push(vec![
            name.replace("->", " → "),
            s.requests_total.to_string(),
            percent(s.success_total, s.requests_total),
            format!("{:.1}", s.rps_actual),
            ms(l.count, l.p50),
            ms(l.count, l.p99),
            ms(l.count, l.max),
            s.retries_total.to_string(),
        ]);
    }
    t.render(out);
}

/// Per `service:version`: its attempts and their share of the service's attempts.
fn version_table(out: &mut String, r: &ScenarioResult) {
    if r.versions.is_empty() {
        return;
    }
    let mut per_service: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, s) in &r.versions {
        *per_service.entry(service_of(key)).or_default() += s.attempts_total;
    }
    let mut t = Table::new(&[
        "version", "attempts", "share", "success", "p50 ms", "p99 ms", "max ms",
    ]);
    for (key, s) in &r.versions {
        let l = &s.latency_us;
        let all = per_service.get(service_of(key)).copied().unwrap_or(0);
        t.push(vec![
            key.clone(),
            s.attempts_total.to_string(),
            percent(s.attempts_total, all),
            percent(s.success_total, s.requests_total),
            ms(l.count, l.p50),
            ms(l.count, l.p99),
            ms(l.count, l.max),
        ]);
    }
    t.render(out);
}

fn service_of(version_key: &str) -> &str {
    version_key.split_once(':').map_or(version_key, |(s, _)| s)
}

/// Failed requests by status and by cause, for the workload and each service.
fn failures(out: &mut String, r: &ScenarioResult) {
    let mut lines = Vec::new();
    let targets = std::iter::once(("client", &r.totals))
        .chain(r.services.iter().map(|(n, s)| (n.as_str(), s)));
    for (name, s) in targets {
        let mut parts: Vec<String> = s
            .status_codes
            .iter()
            .filter(|(code, _)| code.parse::<u16>().is_ok_and(|c| c >= 400))
            .map(|(code, n)| format!("{code} ×{n}"))
            .collect();
        parts.extend(s.errors.iter().map(|(cause, n)| format!("{cause} ×{n}")));
        if !parts.is_empty() {
            lines.push(format!("{name}: {}", parts.join(", ")));
        }
    }
    list(out, "failures (final status or cause, per request)", &lines);
}

fn events(out: &mut String, r: &ScenarioResult) {
    let logged = r.events.len();
    let _ = write!(out, "\nevents");
    if r.events_total.is_empty() {
        let _ = writeln!(out, ": none");
        return;
    }
    let total: u64 = r.events_total.values().sum();
    let _ = write!(out, " ({total} in all, {logged} in the log");
    if r.events_dropped > 0 {
        let _ = write!(out, ", {} counted but not logged", r.events_dropped);
    }
    let _ = writeln!(out, ")");
    let width = r
        .events_total
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0);
    for (kind, n) in &r.events_total {
        let _ = writeln!(out, "  {kind:<width$}  {n:>8}");
    }
}

fn list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    for item in items {
        let _ = writeln!(out, "  - {item}");
    }
}

fn assertions(out: &mut String, r: &ScenarioResult) {
    if r.assertions.is_empty() {
        let _ = writeln!(out, "\nassertions: none");
        return;
    }
    let _ = writeln!(out, "\nassertions");
    let width = r
        .assertions
        .iter()
        .map(|a| a.expr.chars().count())
        .max()
        .unwrap_or(0);
    let mut failed = 0;
    for a in &r.assertions {
        let verdict = match (a.passed, a.advisory) {
            (true, _) => "PASS",
            (false, false) => {
                failed += 1;
                "FAIL"
            }
            (false, true) => "FAIL (advisory)",
        };
        let _ = writeln!(out, "  {verdict:<4}  {:<width$}  {}", a.expr, a.detail);
    }
    let n = r.assertions.len();
    if failed == 0 {
        let _ = writeln!(
            out,
            "{}",
            if n == 1 {
                "the assertion holds".to_owned()
            } else {
                format!("all {n} assertions hold")
            }
        );
    } else {
        let _ = writeln!(out, "{failed} of {n} assertions FAILED");
    }
}

// === formatting helpers ===

/// Microseconds as milliseconds with 3 decimals; `-` when nothing was measured.
fn ms(count: u64, us: u64) -> String {
    if count == 0 {
        "-".to_owned()
    } else {
        format!("{:.3}", us as f64 / 1000.0)
    }
}

/// `n / of` as a percentage with 2 decimals, rounded down so that anything short of
/// all never reads `100.00%`; `-` when `of` is 0.
fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        return "-".to_owned();
    }
    let hundredths = (u128::from(n) * 10_000) / u128::from(of);
    format!("{}.{:02}%", hundredths / 100, hundredths % 100)
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A text table: the first column left-aligned, the others right-aligned, two spaces
/// between columns, preceded by a blank line.
struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        out.push('\n');
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i == 0 {
                    let _ = write!(line, "{cell:<w$}");
                } else {
                    let _ = write!(line, "  {cell:>w$}");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_never_rounds_up_to_all() {
        assert_eq!(percent(99_999, 100_000), "99.99%");
        assert_eq!(percent(5, 5), "100.00%");
        assert_eq!(percent(1, 3), "33.33%");
        assert_eq!(percent(0, 0), "-");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["name", "n"]);
        t.push(vec!["a".to_owned(), "100".to_owned()]);
        t.push(vec!["longer".to_owned(), "2".to_owned()]);
        let mut out = String::new();
        t.render(&mut out);
        assert_eq!(out, "\nname      n\na       100\nlonger    2\n");
    }

    #[test]
    fn latency_in_ms_or_dash() {
        assert_eq!(ms(0, 0), "-");
        assert_eq!(ms(3, 1_234), "1.234");
    }
}
