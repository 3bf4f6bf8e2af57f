use std::collections::BTreeMap;

use results::histogram::Recorder;
use results::scenario::*;

use super::*;
use crate::model::Assertion;

fn ok(text: &str) -> AssertExpr {
    parse_assertion(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> String {
    parse_assertion(text).expect_err(text).to_string()
}

#[test]
fn every_function_parses_with_its_unit() {
    for (name, func) in Func::ALL {
        let text = match func {
            f if f.is_latency() => format!("{name}(frontend) < 50ms"),
            Func::SuccessRate | Func::ErrorRate => format!("{name}(frontend) >= 99.9%"),
            Func::Share => format!("{name}(reviews:v3) == 0.1"),
            Func::Events => format!("{name}(ejection) >= 1"),
            _ => format!("{name}(frontend) <= 3"),
        };
        assert_eq!(ok(&text).func, func, "{text}");
    }
    let e = ok("p99(frontend) < 50ms");
    assert_eq!(
        (e.value, e.unit, e.cmp, e.target.clone()),
        (
            50e6,
            Unit::Millis,
            Cmp::Lt,
            Target::Service("frontend".into())
        )
    );
    assert_eq!(e.metric, "p99(frontend)");
    let e = ok("mean() <= 1.5s");
    assert_eq!(
        (e.value, e.unit, e.target),
        (1.5e9, Unit::Seconds, Target::Client)
    );
    assert_eq!(ok("p50(x) > 250us").unit, Unit::Micros);
    assert_eq!(ok("max(x) > 7ns").value, 7.0);
    let e = ok("success_rate(reviews:v2) > 99.9%");
    assert!((e.value - 0.999).abs() < 1e-12 && e.unit == Unit::Percent);
    assert_eq!(ok("error_rate(client) < 0.01").unit, Unit::Fraction);
    assert_eq!(ok("rps(frontend) >= 950/s").unit, Unit::PerSecond);
    assert_eq!(ok("ejections() == 0").target, Target::All);
    assert_eq!(
        ok("events(cert_expired) == 0").target,
        Target::EventKind("cert_expired".into())
    );
    assert_eq!(
        ok("requests(client->frontend) > 0").target,
        Target::Edge {
            caller: "client".into(),
            callee: "frontend".into()
        }
    );
}

#[test]
fn windows_tolerances_and_spacing() {
    let e = ok("  p99( frontend )[ 40s .. 1m ]<=50ms ");
    assert_eq!(
        e.window,
        Some(Window {
            from_ns: 40_000_000_000,
            to_ns: 60_000_000_000
        })
    );
    assert_eq!(e.cmp, Cmp::Le);
    let e = ok("p99(frontend)[1.5s..2.5s] < 5ms");
    assert_eq!(
        e.window,
        Some(Window {
            from_ns: 1_500_000_000,
            to_ns: 2_500_000_000
        })
    );
    let e = ok("share(reviews:v3) == 10% ± 2%");
    assert_eq!((e.cmp, e.value, e.tolerance), (Cmp::Eq, 0.1, Some(0.02)));
    assert_eq!(ok("share(reviews:v3) != 0.5 +- 0.1").tolerance, Some(0.1));
    assert_eq!(
        ok("share(reviews:v3)[0s..10s] > 0").window.map(|w| w.to_ns),
        Some(10_000_000_000)
    );
}

#[test]
fn rejections_say_where_and_what_would_be_right() {
    assert!(
        err("p95(x) < 5ms")
            .starts_with("at column 1: unknown function `p95` (expected one of p50, p90, p99,")
    );
    assert_eq!(
        err("p99 x < 5ms"),
        "at column 5: expected `(` after `p99` (e.g. p99(frontend))"
    );
    assert_eq!(err("p99(x < 5ms"), "at column 12: missing `)`");
    assert_eq!(
        err("p99(x) = 5ms"),
        "at column 8: expected a comparison: <, <=, >, >=, == or != (write == for equality)"
    );
    assert_eq!(
        err("p99(x) < 5"),
        "at column 10: `5` is not a latency (p99 needs a time unit: e.g. 50ms, 250us, 1.5s)"
    );
    assert_eq!(
        err("success_rate(x) > 99.9"),
        "at column 19: 99.9 is above 1 (write 99.9% for a percentage, or a fraction such as 0.999)"
    );
    assert_eq!(
        err("p99(x) < 5ms ± 1ms"),
        "at column 14: a tolerance (±) goes with == or != only"
    );
    assert_eq!(
        err("p99(x)[50s..40s] < 5ms"),
        "at column 7: empty window: the start must be before the end (e.g. [40s..60s])"
    );
    assert_eq!(
        err("p99(x)[soon..40s] < 5ms"),
        "at column 8: invalid window bound `soon` (a duration such as 40s, e.g. [40s..60s])"
    );
    assert_eq!(
        err("share(reviews) > 1%"),
        "at column 7: share needs service:version, e.g. share(reviews:v3)"
    );
    assert_eq!(
        err("ejections(a->b) == 0"),
        "at column 11: ejections counts instances: give a service, service:version or nothing"
    );
    assert_eq!(
        err("ejections(x)[0s..1s] == 0"),
        "at column 13: ejections takes no window (count events in a window with events(ejection)[a..b])"
    );
    assert_eq!(
        err("events() > 0"),
        "at column 8: events needs an event kind, e.g. events(ejection) or events(cert_expired)"
    );
    assert_eq!(
        err("p99(x) < 5ms and more"),
        "at column 14: unexpected `and more` after the value"
    );
    assert_eq!(
        err("p99(a b) < 5ms"),
        "at column 5: invalid target `a b` (a service, service:version, caller->callee or client)"
    );
    assert_eq!(
        err(""),
        "at column 1: expected a function such as p99(frontend) (one of p50, p90, p99, p999, max, mean, success_rate, error_rate, rps, requests, errors, retries, retry_amplification, share, ejections, cert_expiries, events)"
    );
}

// === evaluation ===

fn traffic(requests: u64, ok: u64, attempts: u64, latencies_us: &[u64]) -> TrafficStats {
    let mut c = TrafficCounts {
        requests_total: requests,
        attempts_total: attempts,
        retries_total: attempts - requests,
        ..TrafficCounts::default()
    };
    for i in 0..requests {
        c.complete(Some(if i < ok { 200 } else { 503 }), None);
    }
    let mut r = Recorder::latency();
    for v in latencies_us {
        r.record(*v);
    }
    TrafficStats::from_counts(&c, &r, 10_000_000_000)
}

fn instance(service: &str, version: &str, ejections: u64) -> InstanceStats {
    InstanceStats {
        name: format!("{service}-{version}-a-0"),
        service: service.into(),
        version: version.into(),
        zone: "a".into(),
        requests_served: 0,
        errors_served: 0,
        ejections,
        cpu_utilization: 0.0,
        certs_issued: 0,
        cert_expiries: 0,
    }
}

fn result() -> ScenarioResult {
    let lat: Vec<u64> = (1..=100).map(|i| i * 1_000).collect(); // 1ms..100ms
    ScenarioResult {
        schema: results::SCHEMA.into(),
        kind: SCENARIO_KIND.into(),
        scenario: ScenarioInfo {
            name: "t".into(),
            file: "t.yaml".into(),
            hash: "0".into(),
            seed: 1,
            mode: "sim".into(),
            duration_requested_ns: 10_000_000_000,
            truncated_to_ns: None,
        },
        interrupted: false,
        duration_ns: 10_000_000_000,
        totals: traffic(100, 99, 100, &lat),
        workloads: Vec::new(),
        services: BTreeMap::from([
            ("frontend".into(), traffic(100, 99, 100, &lat)),
            ("reviews".into(), traffic(100, 90, 120, &lat[..50])),
        ]),
        versions: BTreeMap::from([
            ("reviews:v1".into(), traffic(90, 90, 90, &[])),
            ("reviews:v2".into(), traffic(30, 0, 30, &[])),
        ]),
        edges: BTreeMap::new(),
        windows: vec![WindowStats {
            target: "frontend".into(),
            from_ns: 5_000_000_000,
            to_ns: 10_000_000_000,
            stats: traffic(10, 10, 10, &[200_000]),
        }],
        timeseries: BTreeMap::new(),
        events_total: BTreeMap::from([("ejection".into(), 3)]),
        events: Vec::new(),
        events_dropped: 0,
        events_unlogged: BTreeMap::new(),
        instances: vec![
            instance("reviews", "v1", 0),
            instance("reviews", "v2", 2),
            instance("frontend", "v1", 0),
        ],
        assertions: Vec::new(),
        not_applied: Vec::new(),
        warnings: Vec::new(),
        sim: None,
        provenance: ScenarioProvenance {
            meshrig_version: "0".into(),
            command: Vec::new(),
        },
    }
}

fn assertion(text: &str) -> Assertion {
    Assertion {
        text: text.into(),
        line: 1,
        expr: ok(text),
    }
}

fn run(text: &str) -> AssertionVerdict {
    evaluate(&[assertion(text)], &result()).remove(0)
}

#[test]
fn passing_and_failing_verdicts_report_the_value_in_the_assertions_unit() {
    let v = run("p99(frontend) < 50ms");
    assert!(!v.passed);
    assert!(
        v.actual.is_some_and(|a| (a - 99.0).abs() < 0.1),
        "{v:?} (HDR precision)"
    );
    assert_eq!(v.detail, "p99(frontend) = 99.007ms, wanted < 50ms");
    let v = run("p50(reviews) <= 30ms");
    assert!(v.passed, "{v:?}");
    assert!(
        v.detail.starts_with("p50(reviews) = 25") && v.detail.ends_with("ms (<= 30ms holds)"),
        "{v:?}"
    );
    let v = run("success_rate(frontend) >= 99%");
    assert!(v.passed && v.actual == Some(99.0), "{v:?}");
    let v = run("error_rate(reviews) < 0.05");
    assert!(!v.passed && v.actual == Some(0.1), "{v:?}");
    assert!(run("retry_amplification(reviews) == 1.2").passed);
    assert!(run("retries(reviews) == 20").passed);
    assert!(run("requests() == 100").passed);
    assert!(run("rps(frontend) == 10/s").passed);
    assert!(run("events(ejection) == 3").passed);
    assert!(
        run("events(cert_expired) == 0").passed,
        "an absent kind counts 0"
    );
}

#[test]
fn no_traffic_fails_instead_of_passing_vacuously() {
    let v = run("p99(ratings) < 1s");
    assert!(!v.passed && v.actual.is_none());
    assert_eq!(
        v.detail,
        "p99(ratings): no requests to `ratings`: nothing to measure"
    );
    let v = run("success_rate(reviews:v3) > 99%");
    assert!(!v.passed);
    assert!(
        run("requests(ratings) == 0").passed,
        "counts of an idle target are 0"
    );
    let v = run("p99(reviews:v1) < 1s");
    assert_eq!(
        v.detail,
        "p99(reviews:v1): no completed requests to `reviews:v1`: no latency to measure"
    );
}

#[test]
fn windows_are_read_from_the_recorded_window_stats() {
    let v = run("p99(frontend)[5s..10s] < 250ms");
    assert!(v.passed, "{v:?}");
    assert!(v.actual.is_some_and(|a| (a - 200.0).abs() < 0.2), "{v:?}");
    let v = run("p99(frontend)[0s..5s] < 250ms");
    assert!(!v.passed);
    assert_eq!(
        v.detail,
        "p99(frontend)[0s..5s]: no statistics recorded for `frontend` in [0s..5s] (the driver records the windows listed by windows_needed)"
    );
}

#[test]
fn share_is_per_attempt_over_the_services_versions() {
    let v = run("share(reviews:v2) == 25% ± 1%");
    assert!(v.passed, "{v:?}");
    assert_eq!(v.actual, Some(25.0));
    assert!(!run("share(reviews:v2) == 50% ± 1%").passed);
    assert!(
        !run("share(ratings:v1) > 0").passed,
        "no traffic to the service"
    );
}

#[test]
fn ejections_sum_instances_by_scope() {
    assert!(run("ejections() == 2").passed);
    assert!(run("ejections(reviews) == 2").passed);
    assert!(run("ejections(reviews:v1) == 0").passed);
    assert!(run("ejections(frontend) == 0").passed);
}

#[test]
fn windows_needed_is_deduplicated_and_sorted_and_timing_is_latency() {
    let list = [
        assertion("p99(frontend)[5s..10s] < 1s"),
        assertion("success_rate(frontend)[5s..10s] > 99%"),
        assertion("share(reviews:v2)[0s..5s] > 1%"),
        assertion("p99(client) < 1s"),
        assertion("events(ejection)[0s..5s] == 0"),
    ];
    let s = 1_000_000_000;
    assert_eq!(
        windows_needed(&list),
        [
            ("frontend".to_owned(), 5 * s, 10 * s),
            ("reviews:*".to_owned(), 0, 5 * s),
            ("reviews:v2".to_owned(), 0, 5 * s),
        ]
    );
    assert!(is_timing(&list[0]) && !is_timing(&list[1]));
}
