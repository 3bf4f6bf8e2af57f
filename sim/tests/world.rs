//! The simulated mesh, run end to end from scenario text.

mod common;

use common::run_text;

const BASIC: &str = r#"
apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: basic }
spec:
  duration: 2s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
        app: { serviceTime: { fixed: 1ms }, calls: [{ service: db }] }
      - name: db
        instances: [{ zone: a, count: 2 }]
  workload:
    - { target: web, rate: { constant: 100/s } }
  assertions:
    - "success_rate(web) > 99%"
"#;

#[test]
fn basic_two_tier_run() {
    let r = run_text(BASIC, None);
    assert_eq!(r.totals.requests_total, 200);
    // web waits for db: its latency includes db's 1 ms and both hops' sidecars.
    let (web, db) = (&r.services["web"].latency_us, &r.services["db"].latency_us);
    assert!(
        db.p50 >= 1_000,
        "db p50 {} µs below its 1 ms service time",
        db.p50
    );
    assert!(
        web.p50 >= db.p50 + 1_000,
        "web p50 {} µs, db p50 {} µs",
        web.p50,
        db.p50
    );
    assert_eq!(r.edges["client->web"].requests_total, 200);
    assert_eq!(r.edges["web->db"].requests_total, 200);
    assert_eq!(r.totals.success_total, 200);
    assert_eq!(r.services["db"].requests_total, 200);
    assert!(r.assertions.iter().all(|a| a.passed), "{:?}", r.assertions);
}

const OUTLIER: &str = r#"
apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: outlier }
spec:
  duration: 20s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
        app: { serviceTime: { fixed: 1ms }, calls: [{ service: reviews }] }
      - name: reviews
        instances: [{ zone: a, count: 4 }]
  mesh:
    mtls: STRICT
    config:
      - inline: |
          apiVersion: networking.istio.io/v1
          kind: DestinationRule
          metadata: { name: reviews }
          spec:
            host: reviews
            trafficPolicy:
              outlierDetection:
                consecutive5xxErrors: 5
                interval: 1s
                baseEjectionTime: 30s
                maxEjectionPercent: 50
  workload:
    - { target: web, rate: { constant: 200/s } }
  faults:
    - { at: 5s, app: { service: reviews, count: 1, errorRate: 50% } }
  assertions:
    - "ejections(reviews) >= 1"
    - "success_rate(web)[10s..20s] > 99.9%"
"#;

#[test]
fn outlier_detection_ejects_the_failing_instance() {
    let r = run_text(OUTLIER, None);
    assert!(r.assertions.iter().all(|a| a.passed), "{:?}", r.assertions);
    // Exactly the instance that fails is ejected (by each caller's sidecar), and it
    // then serves less than its healthy peers.
    let failing: Vec<_> = r
        .instances
        .iter()
        .filter(|i| i.service == "reviews" && i.errors_served > 0)
        .collect();
    assert_eq!(failing.len(), 1, "{:?}", r.instances);
    assert!(failing[0].ejections >= 1);
    for i in r
        .instances
        .iter()
        .filter(|i| i.service == "reviews" && i.errors_served == 0)
    {
        assert_eq!(i.ejections, 0, "{} was ejected", i.name);
        assert!(
            i.requests_served > failing[0].requests_served,
            "{:?}",
            r.instances
        );
    }
}

/// Crashing a caller mid-flight: the requests it served reset at its callers, the
/// calls it was making are dropped, and the run carries on once the mesh has moved
/// its traffic elsewhere.
const CALLER_CRASH: &str = r#"
apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: caller-crash }
spec:
  duration: 12s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 3 }]
        app: { serviceTime: { fixed: 2ms }, calls: [{ service: db }, { service: db }] }
      - name: db
        cores: 8
        instances: [{ zone: a, count: 2 }]
        app: { serviceTime: { lognormal: { p50: 5ms, p99: 50ms } } }
  mesh: { mtls: STRICT }
  workload:
    - { target: web, rate: { constant: 400/s } }
  faults:
    - { at: 3s, kill: { service: web, count: 1 }, for: 4s }
    - { at: 5s, kill: { service: db, count: 1 } }
  assertions:
    - "success_rate(web)[9s..12s] == 100%"
"#;

#[test]
fn crashing_a_caller_mid_flight_drops_its_work_and_recovers() {
    let r = run_text(CALLER_CRASH, None);
    assert!(r.assertions.iter().all(|a| a.passed), "{:?}", r.assertions);
    assert_eq!(r.events_total.get("instance_down"), Some(&2));
    assert_eq!(r.events_total.get("instance_up"), Some(&1));
    // Requests in flight at the crashed web instance failed; nothing hung.
    assert!(r.totals.errors_total > 0, "{:?}", r.totals);
    assert_eq!(
        r.totals.success_total + r.totals.errors_total,
        r.totals.requests_total
    );
}

/// Clock skew matters for certificates: a sidecar whose clock runs an hour ahead sees
/// every peer certificate (1 h TTL) as expired, so new mTLS connections to and from it
/// fail, visibly, until the skew is undone (retries are off: Istio's default retry on
/// connect-failure would move the request to the other instance and hide it).
const CLOCK_SKEW: &str = r#"
apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: clock-skew }
spec:
  duration: 9s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
  mesh:
    mtls: STRICT
    ca: { certTtl: 1h }
    config:
      - inline: |
          apiVersion: networking.istio.io/v1
          kind: VirtualService
          metadata: { name: web }
          spec:
            hosts: [web]
            http: [{ route: [{ destination: { host: web } }], retries: { attempts: 0 } }]
  workload:
    - { target: web, rate: { constant: 100/s }, newConnectionPerRequest: true }
  faults:
    - { at: 3s, clockSkew: { service: web, count: 1, offset: 2h }, for: 3s }
  assertions:
    - "success_rate(web)[0s..3s] == 100%"
    - "success_rate(web)[3s..6s] < 100%"
    - "success_rate(web)[6500ms..9s] == 100%"
"#;

#[test]
fn clock_skew_makes_certificates_fail_validation() {
    let r = run_text(CLOCK_SKEW, None);
    assert!(r.assertions.iter().all(|a| a.passed), "{:#?}", r.assertions);
    let failed = r
        .events
        .iter()
        .find(|e| e.kind == "mtls_handshake_failed")
        .expect("a failed handshake is logged");
    assert!(failed.detail.contains("expired"), "{failed:?}");
}

/// Every event kind the simulator records is one assertions may name (and that
/// `meshrig validate` accepts): the list in the scenario crate is complete.
#[test]
fn every_recorded_event_kind_is_a_known_kind() {
    let text = include_str!("../../tests/data/scenarios/rich.yaml");
    let r = run_text(text, None);
    assert!(r.events_total.len() > 10, "{:?}", r.events_total);
    for kind in r.events_total.keys() {
        assert!(
            scenario::EVENT_KINDS.contains(&kind.as_str()),
            "`{kind}` is recorded but not in scenario::EVENT_KINDS"
        );
    }
}

// === root rotation ===

/// STRICT mTLS, 10 s certificates, a new connection per request and no retries; two
/// `ca: rotate` faults (at 20 s and 60 s) with overlap 30 s.
const ROTATION: &str = include_str!("../../tests/data/scenarios/ca-rotation.yaml");

const S: u64 = 1_000_000_000;

/// ROTATION with both overlaps set to `overlap` and `assertions` added.
fn rotation(overlap: &str, assertions: &[&str]) -> String {
    let text = ROTATION.replace("overlap: 30s", &format!("overlap: {overlap}"));
    let extra: String = assertions
        .iter()
        .map(|a| format!("    - {a:?}\n"))
        .collect();
    text.replace("  assertions:\n", &format!("  assertions:\n{extra}"))
}

/// When each event of `kind` happened, in seconds.
fn event_times_s(r: &results::scenario::ScenarioResult, kind: &str) -> Vec<f64> {
    r.events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.t_ns as f64 / S as f64)
        .collect()
}

/// With an overlap of three certificate lifetimes, every sidecar renews (and learns
/// the new root) before the new root signs, and every certificate the old root signed
/// is replaced before the old root is dropped: no handshake fails.
#[test]
fn a_rotation_with_a_long_enough_overlap_fails_nothing() {
    let r = run_text(ROTATION, None);
    assert!(r.assertions.iter().all(|a| a.passed), "{:#?}", r.assertions);
    assert!(r.warnings.is_empty() && r.not_applied.is_empty(), "{r:?}");
    assert_eq!(r.totals.requests_total, 10_000);
    assert_eq!(r.totals.success_total, 10_000);
    assert_eq!(r.events_total.get("mtls_handshake_failed"), None);
    // Each phase at its instant: at, at + overlap/2, at + overlap.
    assert_eq!(event_times_s(&r, "root_rotation_started"), [20.0, 60.0]);
    assert_eq!(event_times_s(&r, "root_signing_switched"), [35.0, 75.0]);
    assert_eq!(event_times_s(&r, "root_retired"), [50.0, 90.0]);
    let details: Vec<&str> = r
        .events
        .iter()
        .filter(|e| e.kind.starts_with("root_"))
        .map(|e| e.detail.as_str())
        .collect();
    assert!(details[0].starts_with("root #1 generated: bundle [#0, #1], root #0 still signs"));
    assert_eq!(details[2], "root #0 dropped from the bundle: bundle [#1]");
    assert!(details[3].starts_with("root #2 generated: bundle [#1, #2]"));
    for kind in [
        "root_rotation_started",
        "root_signing_switched",
        "root_retired",
    ] {
        assert!(scenario::EVENT_KINDS.contains(&kind), "{kind}");
    }
}

/// With a 2 s overlap (validation warns: under twice the 10 s TTL), the new root
/// signs and the old one is dropped before most sidecars have renewed: a sidecar that
/// still trusts only the old root refuses a certificate from the new one, and one
/// that already trusts only the new root refuses a certificate from the old one.
/// Handshakes fail until every sidecar has renewed after the drop (within about
/// 60 % of the TTL), then everything succeeds again.
#[test]
fn a_rotation_with_a_short_overlap_fails_handshakes_until_renewals_catch_up() {
    let text = rotation(
        "2s",
        &[
            "success_rate(client)[0s..20s] == 100%",
            "success_rate(client)[20s..30s] < 100%",
            "success_rate(client)[30s..60s] == 100%",
            "success_rate(client)[60s..70s] < 100%",
            "success_rate(client)[70s..100s] == 100%",
        ],
    );
    let loaded = common::load(&text);
    let warnings: Vec<String> = loaded.findings.iter().map(|f| f.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("shorter than twice ca.certTtl"));

    let r = run_text(&text, None);
    let verdict = |expr: &str| {
        r.assertions
            .iter()
            .find(|a| a.expr == expr)
            .unwrap_or_else(|| panic!("{expr}: no verdict"))
            .passed
    };
    for expr in [
        "success_rate(client)[0s..20s] == 100%",
        "success_rate(client)[20s..30s] < 100%",
        "success_rate(client)[30s..60s] == 100%",
        "success_rate(client)[60s..70s] < 100%",
        "success_rate(client)[70s..100s] == 100%",
        "events(root_rotation_started) == 2",
        "events(root_signing_switched) == 2",
        "events(root_retired) == 2",
        "cert_expiries() == 0",
    ] {
        assert!(verdict(expr), "{expr}: {:#?}", r.assertions);
    }
    assert!(!verdict("success_rate(client) == 100%"));
    assert_eq!(event_times_s(&r, "root_signing_switched"), [21.0, 61.0]);
    assert_eq!(event_times_s(&r, "root_retired"), [22.0, 62.0]);

    // Every failed request is a failed handshake, for an untrusted root, and none
    // comes before a signing switch or long after a drop.
    let failed = r.events_total["mtls_handshake_failed"];
    assert!(failed > 10, "{failed}");
    assert_eq!(r.totals.errors_total, failed);
    for e in r
        .events
        .iter()
        .filter(|e| e.kind == "mtls_handshake_failed")
    {
        assert!(e.detail.contains("not trusted by"), "{e:?}");
        let t = e.t_ns as f64 / S as f64;
        assert!(
            (21.0..30.0).contains(&t) || (61.0..70.0).contains(&t),
            "a failure at {t} s: {e:?}"
        );
    }
}

/// Same seed, same result, byte for byte, with rotations too; odd overlaps (a
/// nanosecond, longer than the run) run to the end.
#[test]
fn rotations_are_deterministic_and_odd_overlaps_run() {
    let text = rotation("2s", &[]);
    let a = serde_json::to_string(&run_text(&text, None)).expect("json");
    let b = serde_json::to_string(&run_text(&text, None)).expect("json");
    assert!(a == b, "two runs with one seed differ");

    let tiny = run_text(&rotation("1ns", &[]), None);
    assert_eq!(tiny.events_total.get("root_retired"), Some(&2));
    let long = run_text(
        &ROTATION
            .replace("    - { at: 60s, ca: rotate, overlap: 30s }\n", "")
            .replace("overlap: 30s", "overlap: 9999h"),
        None,
    );
    // Nothing after the end of the run happens; the new root is trusted at once,
    // so nothing fails.
    assert_eq!(long.events_total.get("root_rotation_started"), Some(&1));
    assert_eq!(long.events_total.get("root_signing_switched"), None);
    assert_eq!(long.totals.errors_total, 0);
}
