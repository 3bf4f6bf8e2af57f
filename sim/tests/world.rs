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
