//! Mirroring and network faults between services, simulated end to end.

use results::scenario::ScenarioResult;

mod common;

/// Runs `text`; everything in it must be simulated (nothing in `not_applied`).
fn run_text(text: &str) -> ScenarioResult {
    let r = common::run_text(text, None);
    assert!(r.not_applied.is_empty(), "{:?}", r.not_applied);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    r
}

fn served(r: &ScenarioResult, service: &str, version: &str) -> u64 {
    r.instances
        .iter()
        .filter(|i| i.service == service && i.version == version)
        .map(|i| i.requests_served)
        .sum()
}

fn assertions_pass(r: &ScenarioResult) {
    assert!(r.assertions.iter().all(|a| a.passed), "{:#?}", r.assertions);
}

// === mirroring ===

/// Every request goes to `reviews` v1; half of them are copied to v2.
const MIRROR: &str = r#"
apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: mirror }
spec:
  duration: 10s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
        app: { serviceTime: { fixed: 1ms }, calls: [{ service: reviews }] }
      - name: reviews
        cores: 32
        versions:
          v1: { instances: [{ zone: a, count: 2 }] }
          v2: { instances: [{ zone: a, count: 2 }], app: { serviceTime: { fixed: V2_TIME } } }
  mesh:
    config:
      - inline: |
          apiVersion: networking.istio.io/v1
          kind: DestinationRule
          metadata: { name: reviews }
          spec:
            host: reviews
            subsets:
              - { name: v1, labels: { version: v1 } }
              - { name: v2, labels: { version: v2 } }
      - inline: |
          apiVersion: networking.istio.io/v1
          kind: VirtualService
          metadata: { name: reviews }
          spec:
            hosts: [reviews]
            http:
              - route: [{ destination: { host: reviews, subset: v1 } }]
                mirror: { host: reviews, subset: v2 }
                mirrorPercentage: { value: 50 }
  workload:
    - { target: web, rate: { constant: 100/s } }
"#;

#[test]
fn mirroring_copies_requests_without_touching_the_original() {
    let fast = run_text(&MIRROR.replace("V2_TIME", "1ms"));
    let slow = run_text(&MIRROR.replace("V2_TIME", "500ms"));
    for r in [&fast, &slow] {
        let (v1, v2) = (served(r, "reviews", "v1"), served(r, "reviews", "v2"));
        let mirrors = r.events_total.get("mirror").copied().unwrap_or(0);
        eprintln!(
            "v1 {v1}, v2 {v2}, mirror events {mirrors}, client p50 {} p99 {} us",
            r.totals.latency_us.p50, r.totals.latency_us.p99
        );
        assert_eq!(v1, 1000);
        assert!((v2 as f64 / v1 as f64 - 0.5).abs() < 0.06, "v2 {v2}");
        assert!(mirrors.abs_diff(500) < 60, "{mirrors}");
        // The shadows reached v2 (its instances count them on arrival).
        assert_eq!(v2, mirrors);
        // Nothing in the client's numbers: its requests, all answered by v1.
        assert_eq!(r.totals.requests_total, 1000);
        assert_eq!(r.totals.success_total, 1000);
        // The mirror target's stats count the traffic it receives.
        assert_eq!(r.versions["reviews:v1"].attempts_total, 1000);
        assert_eq!(r.versions["reviews:v2"].requests_total, mirrors);
        assert_eq!(r.services["reviews"].requests_total, 1000 + mirrors);
        assert_eq!(r.edges["web->reviews"].requests_total, 1000 + mirrors);
    }
    // Same draws in both runs: the same requests are mirrored.
    assert_eq!(fast.events_total["mirror"], slow.events_total["mirror"]);
    // A 500x slower mirror does not slow the original requests down.
    let (p99_fast, p99_slow) = (fast.totals.latency_us.p99, slow.totals.latency_us.p99);
    assert!(
        p99_fast.abs_diff(p99_slow) * 100 <= p99_fast * 2,
        "client p99 {p99_fast} us vs {p99_slow} us"
    );
    // ... while v2 really was slow.
    assert!(slow.versions["reviews:v2"].latency_us.p50 >= 500_000);
}

// === network faults between services ===

/// `web` calls `db` then `cache`, all in one zone; `db` calls time out after 500 ms.
const TWO_TIER: &str = r#"
apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: service-faults }
spec:
  duration: DURATION
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
        app: { serviceTime: { fixed: 1ms }, calls: [{ service: db }, { service: cache }] }
      - name: db
        instances: [{ zone: a, count: 2 }]
      - name: cache
        instances: [{ zone: a, count: 2 }]
  mesh:
    config:
      - inline: |
          apiVersion: networking.istio.io/v1
          kind: VirtualService
          metadata: { name: db }
          spec:
            hosts: [db]
            http: [{ route: [{ destination: { host: db } }], timeout: 500ms }]
  workload:
    - WORKLOAD
  faults: [FAULT]
  assertions: [ASSERTIONS]
"#;

fn two_tier(duration: &str, workload: &str, fault: &str, assertions: &[&str]) -> ScenarioResult {
    let assertions = assertions
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = TWO_TIER
        .replace("DURATION", duration)
        .replace("WORKLOAD", workload)
        .replace("FAULT", fault)
        .replace("ASSERTIONS", &assertions);
    run_text(&text)
}

const OPEN_LOAD: &str = "{ target: web, rate: { constant: 200/s } }";

#[test]
fn a_partition_between_services_fails_their_calls_until_healed() {
    let r = two_tier(
        "10s",
        OPEN_LOAD,
        "{ at: 2s, partition: { between: [web, db] }, for: 3s }",
        &[
            "success_rate(web->db)[0s..2s] == 100%",
            "success_rate(web->db)[3s..4400ms] == 0%",
            "success_rate(web->db)[6s..10s] == 100%",
            // Only the web–db link is cut: cache keeps answering web.
            "success_rate(web->cache) == 100%",
        ],
    );
    for a in &r.assertions {
        eprintln!("{}", a.detail);
    }
    assertions_pass(&r);
}

#[test]
fn a_one_way_partition_blocks_one_direction_only() {
    // A closed loop keeps many connections open, so requests are in flight at once
    // when the fault starts, until the end of the run.
    let users = "{ target: web, users: 40 }";
    let run = |between: &str, one_way: bool| {
        let fault =
            format!("{{ at: 1s, partition: {{ between: [{between}], oneWay: {one_way} }} }}");
        two_tier(
            "3s",
            users,
            &fault,
            &["success_rate(web->db)[2s..3s] == 0%"],
        )
    };
    let both = run("web, db", false);
    let web_to_db = run("web, db", true);
    let db_to_web = run("db, web", true);
    let (b, w, d) = (
        served(&both, "db", "v1"),
        served(&web_to_db, "db", "v1"),
        served(&db_to_web, "db", "v1"),
    );
    eprintln!("db served: both ways {b}, web->db blocked {w}, db->web blocked {d}");
    for r in [&both, &web_to_db, &db_to_web] {
        assertions_pass(r);
    }
    // Requests from web to db are lost alike whether or not db->web is cut too ...
    assert_eq!(w, b);
    // ... while with only db->web cut, requests still reach db (its answers are lost).
    assert!(d >= w + 20, "db served {d} vs {w}");
}

#[test]
fn link_latency_between_services_adds_to_their_messages_only() {
    let base = two_tier("5s", OPEN_LOAD, "", &[]);
    let slow = two_tier(
        "5s",
        OPEN_LOAD,
        "{ at: 0s, linkLatency: { between: [web, db], latency: { fixed: 10ms } } }",
        &[],
    );
    let p50 = |r: &ScenarioResult, edge: &str| r.edges[edge].latency_us.p50 as i64;
    let (db0, db1) = (p50(&base, "web->db"), p50(&slow, "web->db"));
    let (c0, c1) = (p50(&base, "web->cache"), p50(&slow, "web->cache"));
    eprintln!("web->db p50 {db0} -> {db1} us; web->cache p50 {c0} -> {c1} us");
    // 10 ms each way: the request and its response.
    assert!((db1 - db0 - 20_000).abs() < 300, "{db0} -> {db1}");
    assert!((c1 - c0).abs() < 100, "{c0} -> {c1}");
    assert_eq!(slow.totals.success_total, slow.totals.requests_total);
}

#[test]
fn link_loss_between_services_retransmits() {
    let r = two_tier(
        "5s",
        OPEN_LOAD,
        "{ at: 0s, linkLoss: { between: [web, db], loss: 20% } }",
        &[],
    );
    let (db, cache) = (&r.edges["web->db"], &r.edges["web->cache"]);
    eprintln!(
        "web->db p50 {} p99 {} us, errors {:?}; web->cache p99 {} us",
        db.latency_us.p50, db.latency_us.p99, db.status_codes, cache.latency_us.p99
    );
    // A lost packet costs a 200 ms retransmission timeout.
    assert!(db.latency_us.p99 >= 200_000);
    assert!(db.latency_us.p50 < 10_000);
    assert!(cache.latency_us.p99 < 10_000);
}

#[test]
fn a_hold_between_services_delays_then_delivers() {
    let r = two_tier(
        "5s",
        OPEN_LOAD,
        "{ at: 2s, hold: { between: [web, db] }, for: 300ms }",
        &["success_rate(client) == 100%", "max(web->db) >= 250ms"],
    );
    for a in &r.assertions {
        eprintln!("{}", a.detail);
    }
    assertions_pass(&r);
    assert!(r.edges["web->db"].latency_us.max < 500_000);
    assert!(r.edges["web->cache"].latency_us.max < 10_000);
}
