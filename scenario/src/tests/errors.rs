use super::{BASE, findings};

/// BASE with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

fn expect(text: &str, want: &[&str]) {
    let got = findings(text);
    assert_eq!(got, want, "{text}");
    let (s, _) = crate::parse("s.yaml", text);
    if want.iter().any(|w| w.contains(": error: ")) {
        assert!(s.is_none(), "an error must fail the parse");
    }
}

#[test]
fn unknown_field_suggests_the_closest() {
    expect(
        &edit("  duration: 60s", "  duration: 60s\n  sed: 3"),
        &["s.yaml:6: spec.sed: error: unknown field (did you mean `seed`?)"],
    );
    expect(
        &edit("{ target: frontend,", "{ target: frontend, tmeout: 1s,"),
        &["s.yaml:18: spec.workload[0].tmeout: error: unknown field (did you mean `timeout`?)"],
    );
}

#[test]
fn bad_values_name_the_field_and_the_fix() {
    expect(
        &edit("duration: 60s", "duration: 60 seconds"),
        &[
            "s.yaml:5: spec.duration: error: invalid duration \"60 seconds\" (write a number and a unit: ns, us, ms, s, m, h — e.g. 250ms, 1.5s, 5m)",
        ],
    );
    expect(
        &edit("constant: 100/s", "constant: 100/d"),
        &[
            "s.yaml:18: spec.workload[0].rate.constant: error: invalid rate: the string \"100/d\" (write requests per second as 1000/s or 1000, or per minute as 60/m)",
        ],
    );
    expect(
        &edit(
            "calls: [",
            "serviceTime: { lognormal: { p50: 5ms, p99: 1ms } }\n          calls: [",
        ),
        &[
            "s.yaml:12: spec.topology.services[0].app.serviceTime.lognormal: error: lognormal: p99 is below p50 (give p50 ≤ p99)",
        ],
    );
}

#[test]
fn missing_duration_is_reported_at_spec() {
    expect(
        &edit("  duration: 60s\n", ""),
        &[
            "s.yaml:4: spec.duration: error: missing required field `duration` (how long the run lasts, e.g. duration: 60s)",
        ],
    );
}

#[test]
fn instances_and_versions_together_are_an_error() {
    expect(
        &edit(
            "        instances: [{ zone: a, count: 2 }]\n",
            "        instances: [{ zone: a, count: 2 }]\n        versions: { v2: { instances: [{ zone: a }] } }\n",
        ),
        &[
            "s.yaml:11: spec.topology.services[0].versions: error: give either `instances` (one version, v1) or `versions`, not both",
        ],
    );
}

#[test]
fn unknown_references_point_at_the_referencing_line() {
    expect(
        &edit("{ target: frontend,", "{ target: frontnd,"),
        &[
            "s.yaml:18: spec.workload[0].target: error: unknown service `frontnd` (did you mean `frontend`? known: frontend, reviews)",
        ],
    );
    expect(
        &edit("service: reviews, path", "service: ratings, path"),
        &[
            "s.yaml:12: spec.topology.services[0].app.calls[0].service: error: unknown service `ratings` (known: frontend, reviews)",
        ],
    );
    expect(
        &edit("v2: { instances: [{ zone: b", "v2: { instances: [{ zone: c"),
        &[
            "s.yaml:16: spec.topology.services[1].versions.v2.instances[0].zone: error: unknown zone `c` (did you mean `a`? known: a, b)",
        ],
    );
    let faults = "  faults:\n    - { at: 1s, kill: { service: reviews, version: v3, zone: c } }\n    - { at: 2s, partition: { between: [a, x] } }\n    - { at: 3s, zoneOutage: z }\n";
    expect(
        &format!("{BASE}{faults}"),
        &[
            "s.yaml:20: spec.faults[0].kill.version: error: unknown version of reviews `v3` (did you mean `v1`? known: v1, v2)",
            "s.yaml:20: spec.faults[0].kill.zone: error: unknown zone `c` (did you mean `a`? known: a, b)",
            "s.yaml:21: spec.faults[1].partition.between[1]: error: unknown zone or service `x` (did you mean `a`? known: a, b, frontend, reviews)",
            "s.yaml:22: spec.faults[2].zoneOutage: error: unknown zone `z` (did you mean `a`? known: a, b)",
        ],
    );
    let asserts =
        "  assertions:\n    - \"p99(ratings) < 50ms\"\n    - \"share(reviews:v9) > 1%\"\n";
    expect(
        &format!("{BASE}{asserts}"),
        &[
            "s.yaml:20: spec.assertions[0]: error: in \"p99(ratings) < 50ms\": unknown service `ratings` (known: frontend, reviews)",
            "s.yaml:21: spec.assertions[1]: error: in \"share(reviews:v9) > 1%\": unknown version of reviews `v9` (did you mean `v1`? known: v1, v2)",
        ],
    );
}

#[test]
fn every_error_is_collected_in_one_pass() {
    let text = edit("  duration: 60s\n", "  duration: soon\n  sed: 1\n")
        .replacen(
            "zone: a, count: 2 }]\n        app",
            "zone: q, count: 2 }]\n        app",
            1,
        )
        .replacen("{ target: frontend,", "{ target: nobody,", 1);
    let got = findings(&text);
    let lines: Vec<&str> = got
        .iter()
        .map(|f| f.split(": error").next().unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        [
            "s.yaml:5: spec.duration",
            "s.yaml:6: spec.sed",
            "s.yaml:11: spec.topology.services[0].instances[0].zone",
            "s.yaml:19: spec.workload[0].target",
        ],
        "{got:#?}"
    );
}

#[test]
fn call_cycles_are_an_error() {
    let text = edit(
        "v1: { instances: [{ zone: a, count: 2 }] }",
        "v1: { instances: [{ zone: a, count: 2 }], app: { calls: [{ service: frontend }] } }",
    );
    expect(
        &text,
        &[
            "s.yaml:9: spec.topology.services[0].name: error: calls form a cycle: frontend → reviews → frontend (a request would never finish)",
        ],
    );
}

#[test]
fn assertion_syntax_errors_give_the_column() {
    let text = format!(
        "{BASE}  assertions:\n    - \"p95(frontend) < 5ms\"\n    - \"p99(frontend) < 5\"\n"
    );
    expect(
        &text,
        &[
            "s.yaml:20: spec.assertions[0]: error: invalid assertion \"p95(frontend) < 5ms\": at column 1: unknown function `p95` (expected one of p50, p90, p99, p999, max, mean, success_rate, error_rate, rps, requests, errors, retries, retry_amplification, share, ejections, cert_expiries, events)",
            "s.yaml:21: spec.assertions[1]: error: invalid assertion \"p99(frontend) < 5\": at column 17: `5` is not a latency (p99 needs a time unit: e.g. 50ms, 250us, 1.5s)",
        ],
    );
}

#[test]
fn wrong_document_kind_and_version() {
    let text = BASE
        .replace("meshrig.dev/v1", "meshrig.dev/v2")
        .replace("kind: Scenario", "kind: Senario");
    expect(
        &text,
        &[
            "s.yaml:1: apiVersion: error: expected meshrig.dev/v1, found the string \"meshrig.dev/v2\"",
            "s.yaml:2: kind: error: expected Scenario, found the string \"Senario\"",
        ],
    );
}

#[test]
fn names_that_would_collide_in_results_are_refused() {
    let got = findings(&edit("name: frontend", "name: client"));
    assert!(
        got.iter().any(|f| f.contains("`client` is reserved")),
        "{got:?}"
    );
    let got = findings(&edit("name: frontend", "name: Front:End"));
    assert!(
        got.iter().any(|f| f.contains("not a valid service name")),
        "{got:?}"
    );
}

#[test]
fn cores_and_rates_are_bounded() {
    let got = findings(&edit("constant: 100/s", "constant: 1e12/s"));
    assert!(
        got.iter().any(|f| f.contains("above the largest rate")),
        "{got:?}"
    );
}

#[test]
fn unknown_event_kinds_are_refused_with_a_suggestion() {
    let text = format!("{BASE}  assertions:\n    - \"events(ejections) == 0\"\n");
    let got = findings(&text);
    assert!(
        got.iter()
            .any(|f| f.contains("unknown event kind `ejections` (did you mean `ejection`?")),
        "{got:?}"
    );
}
