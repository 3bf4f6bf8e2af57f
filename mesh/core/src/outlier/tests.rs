use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::{EndpointId, Time};

const SEC: u64 = 1_000_000_000;

fn ids(n: u32) -> Vec<EndpointId> {
    (0..n).map(EndpointId).collect()
}

fn policy(max_ejection_percent: u32) -> OutlierDetectionPolicy {
    OutlierDetectionPolicy {
        max_ejection_percent,
        ..OutlierDetectionPolicy::default()
    }
}

fn fail(d: &mut OutlierDetector, at: Time, ep: u32, n: u32) -> Vec<OutlierEvent> {
    (0..n)
        .flat_map(|_| d.on_response(at, EndpointId(ep), Outcome::Http { status: 500 }))
        .collect()
}

/// Fires every sweep up to and including `until`, collecting events.
fn sweep_until(d: &mut OutlierDetector, until: Time) -> Vec<OutlierEvent> {
    let mut events = Vec::new();
    for _ in 0..10_000 {
        match d.poll_timeout() {
            Some(t) if t <= until => events.extend(d.handle_timeout(t)),
            _ => return events,
        }
    }
    panic!("sweep loop did not settle");
}

#[test]
fn default_policy_is_istios() {
    let p = OutlierDetectionPolicy::default();
    assert_eq!(p.consecutive_5xx, Some(5));
    assert_eq!(p.consecutive_gateway_errors, None);
    assert_eq!(p.interval, Duration::from_secs(10));
    assert_eq!(p.base_ejection_time, Duration::from_secs(30));
    assert_eq!(p.max_ejection_time, Duration::from_secs(300));
    assert_eq!((p.max_ejection_percent, p.min_health_percent), (10, 0));
    assert!(!p.always_eject_one_host && !p.split_external_local_origin_errors);
}

#[test]
fn ejects_at_the_fifth_consecutive_5xx() {
    let mut d = OutlierDetector::new(policy(100), ids(4), Time::ZERO);
    assert!(fail(&mut d, Time(SEC), 1, 4).is_empty());
    // A success restarts the count.
    assert!(
        d.on_response(Time(SEC), EndpointId(1), Outcome::SUCCESS)
            .is_empty()
    );
    assert!(fail(&mut d, Time(SEC), 1, 4).is_empty());
    let events = fail(&mut d, Time(2 * SEC), 1, 1);
    assert_eq!(
        events,
        [OutlierEvent::Ejected {
            endpoint: EndpointId(1),
            reason: EjectionReason::Consecutive5xx { count: 5 },
            ejection_time: Duration::from_secs(30),
            times_ejected: 1,
            ejected: 1,
            total: 4,
            at: Time(2 * SEC),
        }]
    );
    assert!(d.is_ejected(EndpointId(1)));
    assert_eq!(d.healthy_set().len(), 3);
}

#[test]
fn max_ejection_percent_counts_the_endpoint_about_to_go() {
    // Istio's default 10% with 3 endpoints: 1/3 > 10%, so nothing is ejected.
    let mut d = OutlierDetector::new(OutlierDetectionPolicy::default(), ids(3), Time::ZERO);
    let events = fail(&mut d, Time::ZERO, 0, 5);
    assert_eq!(
        events,
        [OutlierEvent::EjectionSuppressed {
            endpoint: EndpointId(0),
            reason: EjectionReason::Consecutive5xx { count: 5 },
            ejected: 0,
            total: 3,
            max_ejection_percent: 10,
            at: Time::ZERO,
        }]
    );
    assert_eq!(d.stats().ejections_overflow, 1);
    // ...unless always_eject_one_host.
    let p = OutlierDetectionPolicy {
        always_eject_one_host: true,
        ..Default::default()
    };
    let mut d = OutlierDetector::new(p, ids(3), Time::ZERO);
    assert!(matches!(
        fail(&mut d, Time::ZERO, 0, 5)[0],
        OutlierEvent::Ejected { .. }
    ));
    assert!(matches!(
        fail(&mut d, Time::ZERO, 1, 5)[0],
        OutlierEvent::EjectionSuppressed { .. }
    ));
}

#[test]
fn gateway_errors_and_local_origin_failures() {
    let p = OutlierDetectionPolicy {
        consecutive_5xx: None,
        consecutive_gateway_errors: Some(2),
        max_ejection_percent: 100,
        ..Default::default()
    };
    let mut d = OutlierDetector::new(p, ids(2), Time::ZERO);
    assert!(
        d.on_response(Time::ZERO, EndpointId(0), Outcome::Http { status: 502 })
            .is_empty()
    );
    // A 500 is not a gateway error: restarts the gateway count.
    assert!(
        d.on_response(Time::ZERO, EndpointId(0), Outcome::Http { status: 500 })
            .is_empty()
    );
    assert!(
        d.on_response(Time::ZERO, EndpointId(0), Outcome::Timeout)
            .is_empty()
    );
    let ev = d.on_response(Time::ZERO, EndpointId(0), Outcome::ConnectFailure);
    assert!(matches!(
        ev[0],
        OutlierEvent::Ejected {
            reason: EjectionReason::ConsecutiveGatewayErrors { count: 2 },
            ..
        }
    ));

    // Split: local-origin failures have their own counter and do not count as 5xx.
    let p = OutlierDetectionPolicy {
        split_external_local_origin_errors: true,
        consecutive_local_origin_failures: Some(3),
        max_ejection_percent: 100,
        ..Default::default()
    };
    let mut d = OutlierDetector::new(p, ids(2), Time::ZERO);
    for _ in 0..2 {
        assert!(
            d.on_response(Time::ZERO, EndpointId(0), Outcome::Reset)
                .is_empty()
        );
    }
    assert!(
        fail(&mut d, Time::ZERO, 0, 4).is_empty(),
        "4 × 5xx, local count untouched by them"
    );
    let ev = d.on_response(Time::ZERO, EndpointId(0), Outcome::ConnectFailure);
    assert!(
        ev.is_empty(),
        "the 5xx answers reset the local-origin count"
    );
}

#[test]
fn unejection_waits_for_a_sweep_and_backoff_grows_then_decays() {
    let mut d = OutlierDetector::new(policy(100), ids(2), Time::ZERO);
    assert_eq!(d.poll_timeout(), Some(Time(10 * SEC)));
    fail(&mut d, Time(SEC), 0, 5);
    // Ejection time 30 s from t=1 s; sweeps at 10, 20, 30, 40: back at 40.
    assert!(sweep_until(&mut d, Time(30 * SEC)).is_empty());
    let ev = sweep_until(&mut d, Time(40 * SEC));
    assert_eq!(
        ev,
        [OutlierEvent::Unejected {
            endpoint: EndpointId(0),
            ejected_for: Duration::from_secs(39),
            at: Time(40 * SEC)
        }]
    );
    // Ejected again right away: 60 s this time.
    let ev = fail(&mut d, Time(41 * SEC), 0, 5);
    assert!(
        matches!(ev[0], OutlierEvent::Ejected { ejection_time, times_ejected: 2, .. }
        if ejection_time == Duration::from_secs(60))
    );
    let ev = sweep_until(&mut d, Time(110 * SEC));
    assert!(matches!(ev[..], [OutlierEvent::Unejected { at: Time(t), .. }] if t == 110 * SEC));
    // Healthy for many sweeps: the backoff decays back to the base.
    sweep_until(&mut d, Time(200 * SEC));
    let ev = fail(&mut d, Time(201 * SEC), 0, 5);
    assert!(
        matches!(ev[0], OutlierEvent::Ejected { ejection_time, times_ejected: 3, .. }
        if ejection_time == Duration::from_secs(30))
    );
}

#[test]
fn ejection_time_is_capped_at_max() {
    let p = OutlierDetectionPolicy {
        max_ejection_percent: 100,
        interval: Duration::from_secs(1),
        base_ejection_time: Duration::from_secs(100),
        ..Default::default()
    };
    let mut d = OutlierDetector::new(p, ids(1), Time::ZERO);
    let mut times = Vec::new();
    let mut now = Time::ZERO;
    for _ in 0..6 {
        for ev in fail(&mut d, now, 0, 5) {
            if let OutlierEvent::Ejected { ejection_time, .. } = ev {
                times.push(ejection_time.as_secs());
            }
        }
        // Step sweep by sweep until it is back, then fail again at once.
        while d.is_ejected(EndpointId(0)) {
            now = d.poll_timeout().unwrap();
            d.handle_timeout(now);
        }
    }
    assert_eq!(times, [100, 200, 300, 300, 300, 300]);
}

#[test]
fn panic_mode_is_announced_both_ways() {
    let p = OutlierDetectionPolicy {
        min_health_percent: 50,
        ..policy(100)
    };
    let mut d = OutlierDetector::new(p, ids(2), Time::ZERO);
    assert!(
        fail(&mut d, Time::ZERO, 0, 5).len() == 1,
        "50% healthy is not below 50%"
    );
    let ev = fail(&mut d, Time::ZERO, 1, 5);
    assert_eq!(ev.len(), 2);
    let OutlierEvent::PanicModeEntered { state, .. } = ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        state,
        PanicState {
            healthy: 0,
            total: 2,
            healthy_percent: 0,
            min_health_percent: 50,
            in_panic: true
        }
    );
    let json = serde_json::to_value(&ev[1]).unwrap();
    assert_eq!(json["event"], "panic_mode_entered");
    assert_eq!(json["healthy_percent"], 0);
    let ev = sweep_until(&mut d, Time(30 * SEC));
    assert!(
        matches!(ev.last(), Some(OutlierEvent::PanicModeExited { .. })),
        "{ev:?}"
    );
}

#[test]
fn removed_endpoints_free_their_ejection() {
    let mut d = OutlierDetector::new(policy(50), ids(2), Time::ZERO);
    fail(&mut d, Time::ZERO, 0, 5);
    assert_eq!(d.ejected_count(), 1);
    d.update_endpoints(Time::ZERO, [EndpointId(1), EndpointId(2)]);
    assert_eq!(d.ejected_count(), 0);
    assert_eq!(
        d.healthy_set().into_iter().collect::<Vec<_>>(),
        [EndpointId(1), EndpointId(2)]
    );
    // Unknown endpoints are ignored.
    assert!(fail(&mut d, Time::ZERO, 9, 10).is_empty());
}

#[test]
fn events_serialize_with_stable_names() {
    let mut d = OutlierDetector::new(policy(100), ids(2), Time::ZERO);
    let ev = fail(&mut d, Time(7), 1, 5);
    let json = serde_json::to_value(&ev[0]).unwrap();
    assert_eq!(json["event"], "ejected");
    assert_eq!(json["endpoint"], 1);
    assert_eq!(json["reason"]["kind"], "consecutive5xx");
    assert_eq!(json["reason"]["count"], 5);
    assert_eq!(json["ejection_time_ns"], 30 * SEC);
    assert_eq!(json["at_ns"], 7);
}

#[derive(Debug, Clone)]
enum Step {
    Response(u32, Outcome),
    Advance(u64),
}

fn arb_step(n: u32) -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..n, prop_oneof![
            Just(Outcome::SUCCESS),
            Just(Outcome::Http { status: 500 }),
            Just(Outcome::Http { status: 503 }),
            Just(Outcome::ConnectFailure),
            Just(Outcome::Timeout),
        ]).prop_map(|(e, o)| Step::Response(e, o)),
        1 => (1u64..40).prop_map(|s| Step::Advance(s * SEC)),
    ]
}

proptest! {
    /// Never more ejected than maxEjectionPercent allows, and every panic-mode change is
    /// announced by an event.
    #[test]
    fn ejection_cap_and_panic_are_never_silent(
        n in 1u32..12,
        max_pct in 0u32..=100,
        min_health in 0u32..=100,
        threshold in 1u32..4,
        steps in proptest::collection::vec(arb_step(12), 1..300),
    ) {
        let p = OutlierDetectionPolicy {
            consecutive_5xx: Some(threshold),
            consecutive_gateway_errors: Some(threshold),
            max_ejection_percent: max_pct,
            min_health_percent: min_health,
            ..Default::default()
        };
        let mut d = OutlierDetector::new(p, ids(n), Time::ZERO);
        let mut announced_panic = d.panic_state().in_panic;
        let mut now = Time::ZERO;
        for step in steps {
            let events = match step {
                Step::Response(e, o) => d.on_response(now, EndpointId(e % n), o),
                Step::Advance(dt) => {
                    now = now + Duration::from_nanos(dt);
                    sweep_until(&mut d, now)
                }
            };
            for ev in &events {
                match ev {
                    OutlierEvent::Ejected { ejected, total, .. } => {
                        prop_assert!(100 * ejected <= max_pct * total);
                    }
                    OutlierEvent::PanicModeEntered { .. } => announced_panic = true,
                    OutlierEvent::PanicModeExited { .. } => announced_panic = false,
                    _ => {}
                }
            }
            prop_assert!(100 * d.ejected_count() <= max_pct * n);
            // The kept count agrees with the endpoints' own state.
            prop_assert_eq!(d.ejected_count() as usize, n as usize - d.healthy_set().len());
            let state = d.panic_state();
            prop_assert_eq!(state.in_panic, announced_panic);
            prop_assert_eq!(state.in_panic, state.healthy_percent < min_health);
        }
    }

    /// Same inputs, same events.
    #[test]
    fn deterministic(steps in proptest::collection::vec(arb_step(5), 1..100)) {
        let run = || {
            let mut d = OutlierDetector::new(policy(60), ids(5), Time::ZERO);
            let mut now = Time::ZERO;
            let mut out = Vec::new();
            for step in &steps {
                match *step {
                    Step::Response(e, o) => out.extend(d.on_response(now, EndpointId(e), o)),
                    Step::Advance(dt) => {
                        now = now + Duration::from_nanos(dt);
                        out.extend(sweep_until(&mut d, now));
                    }
                }
            }
            out
        };
        prop_assert_eq!(run(), run());
    }
}
