use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::{EndpointId, Time};

const MS: u64 = 1_000_000;

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(42)
}

/// Runs one request to completion: try `results` in order on endpoints 0, 1, 2...
fn run(
    policy: RetryPolicy,
    results: &[AttemptResult],
    budget: &mut RetryBudget,
) -> Vec<RetryDecision> {
    let mut rng = rng();
    let mut now = Time::ZERO;
    let mut state = RetryState::start(policy, now, None);
    let mut decisions = Vec::new();
    for (i, result) in results.iter().enumerate() {
        state.on_attempt_start(now, EndpointId(i as u32)).unwrap();
        let decision = state
            .on_attempt_result(now, *result, budget, &mut rng)
            .unwrap();
        let done = decision.is_final();
        if let RetryDecision::Retry { retry_at, .. } = decision {
            now = retry_at;
        }
        decisions.push(decision);
        if done {
            break;
        }
    }
    // Out of scripted results with a retry granted: the caller went away.
    state.cancel(budget);
    decisions
}

#[test]
fn istio_default_matches_pilot() {
    let p = RetryPolicy::default();
    assert_eq!(p.attempts, 2);
    let on: Vec<_> = p.retry_on.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        on,
        [
            "connect-failure",
            "refused-stream",
            "retriable-status-codes",
            "cancelled",
            "unavailable"
        ]
    );
    assert_eq!(
        p.retriable_status_codes.iter().copied().collect::<Vec<_>>(),
        [503]
    );
    assert_eq!(
        (p.backoff_base, p.backoff_max),
        (Duration::from_millis(25), Duration::from_millis(250))
    );
    assert_eq!(p.source, RetryPolicySource::IstioDefault);
    assert!(p.avoid_previous_endpoints);
}

#[test]
fn parse_retry_on_like_istio() {
    let (on, codes) = RetryPolicy::parse_retry_on("5xx, gateway-error,429,").unwrap();
    assert!(on.contains(&RetryOn::FiveXx) && on.contains(&RetryOn::GatewayError));
    assert!(
        on.contains(&RetryOn::RetriableStatusCodes),
        "codes imply retriable-status-codes"
    );
    assert_eq!(codes.into_iter().collect::<Vec<_>>(), [429]);

    let err = RetryPolicy::parse_retry_on("5xx,bogus,999,reset").unwrap_err();
    assert_eq!(err.unknown, ["bogus", "999"]);
    assert!(err.to_string().contains("gateway-error"), "{err}");

    let p = RetryPolicy::configured(3, Some("gateway-error")).unwrap();
    assert_eq!((p.attempts, p.source), (3, RetryPolicySource::Configured));
    assert!(p.retriable_status_codes.is_empty());
}

#[test]
fn default_policy_tries_a_503_three_times() {
    let mut budget = RetryBudget::default();
    let r503 = AttemptResult::http(503);
    let d = run(
        RetryPolicy::default(),
        &[r503, r503, r503, r503],
        &mut budget,
    );
    assert_eq!(d.len(), 3);
    match &d[0] {
        RetryDecision::Retry {
            attempt,
            reason,
            endpoints_excluded,
            ..
        } => {
            assert_eq!(*attempt, 2);
            assert_eq!(reason.condition, RetryOn::RetriableStatusCodes);
            assert_eq!(reason.policy_source, RetryPolicySource::IstioDefault);
            assert_eq!(endpoints_excluded, &[EndpointId(0)]);
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    assert!(
        matches!(&d[1], RetryDecision::Retry { attempt: 3, endpoints_excluded, .. }
        if endpoints_excluded == &[EndpointId(0), EndpointId(1)])
    );
    assert_eq!(
        d[2],
        RetryDecision::GiveUp {
            attempts: 3,
            reason: GiveUpReason::AttemptsExhausted { retries: 2 }
        }
    );
    assert_eq!(budget.active_retries(), 0, "slots released");
}

#[test]
fn classification_of_results() {
    let mut budget = RetryBudget::default();
    let d = run(
        RetryPolicy::default(),
        &[AttemptResult::http(500)],
        &mut budget,
    );
    assert!(matches!(
        d[0],
        RetryDecision::GiveUp {
            reason: GiveUpReason::NotRetriable { .. },
            ..
        }
    ));
    let d = run(
        RetryPolicy::default(),
        &[AttemptResult::http(404)],
        &mut budget,
    );
    assert_eq!(d[0], RetryDecision::Complete { attempts: 1 });
    let grpc = AttemptResult::Response {
        status: 200,
        grpc_status: Some(14),
    };
    let d = run(
        RetryPolicy::default(),
        &[grpc, AttemptResult::http(200)],
        &mut budget,
    );
    assert!(
        matches!(&d[0], RetryDecision::Retry { reason, .. } if reason.condition == RetryOn::Unavailable)
    );
    assert_eq!(d[1], RetryDecision::Complete { attempts: 2 });

    let five = RetryPolicy::configured(1, Some("5xx")).unwrap();
    for r in [
        AttemptResult::Reset,
        AttemptResult::ConnectFailure,
        AttemptResult::PerTryTimeout,
    ] {
        assert_eq!(five.retriable_by(&r), Some(RetryOn::FiveXx), "{r:?}");
    }
    let conn = RetryPolicy::configured(1, Some("connect-failure")).unwrap();
    assert_eq!(conn.retriable_by(&AttemptResult::Reset), None);
    let gw = RetryPolicy::configured(1, Some("gateway-error")).unwrap();
    assert_eq!(gw.retriable_by(&AttemptResult::http(500)), None);
    assert_eq!(
        gw.retriable_by(&AttemptResult::http(504)),
        Some(RetryOn::GatewayError)
    );
    let r4 = RetryPolicy::configured(1, Some("retriable-4xx")).unwrap();
    assert_eq!(
        r4.retriable_by(&AttemptResult::http(409)),
        Some(RetryOn::Retriable4xx)
    );
}

#[test]
fn disabled_policy_never_retries() {
    let mut budget = RetryBudget::default();
    let d = run(
        RetryPolicy::disabled(),
        &[AttemptResult::ConnectFailure],
        &mut budget,
    );
    assert_eq!(
        d,
        [RetryDecision::GiveUp {
            attempts: 1,
            reason: GiveUpReason::AttemptsExhausted { retries: 0 }
        }]
    );
}

#[test]
fn per_try_timeout_fires_and_is_not_retried_by_istio_default() {
    // Istio's default retryOn has no 5xx/gateway-error/reset: a per-try timeout ends it.
    let policy = RetryPolicy {
        per_try_timeout: Some(Duration::from_millis(100)),
        ..RetryPolicy::default()
    };
    let (mut budget, mut rng) = (RetryBudget::default(), rng());
    let mut s = RetryState::start(policy, Time::ZERO, Some(Duration::from_secs(1)));
    let start = s.on_attempt_start(Time::ZERO, EndpointId(1)).unwrap();
    assert_eq!(start.deadline, Some(Time(100 * MS)));
    assert_eq!(s.poll_timeout(), Some(Time(100 * MS)));
    assert_eq!(s.handle_timeout(Time(99 * MS), &mut budget, &mut rng), None);
    let d = s
        .handle_timeout(Time(100 * MS), &mut budget, &mut rng)
        .unwrap();
    assert!(matches!(
        d,
        RetryDecision::GiveUp {
            reason: GiveUpReason::NotRetriable {
                result: AttemptResult::PerTryTimeout
            },
            ..
        }
    ));
    assert!(s.is_done());
}

#[test]
fn route_timeout_bounds_all_tries() {
    let policy = RetryPolicy {
        per_try_timeout: Some(Duration::from_millis(400)),
        ..RetryPolicy::configured(5, Some("reset")).unwrap()
    };
    let (mut budget, mut rng) = (RetryBudget::default(), rng());
    let mut s = RetryState::start(policy, Time::ZERO, Some(Duration::from_millis(500)));
    s.on_attempt_start(Time::ZERO, EndpointId(0)).unwrap();
    let d = s
        .handle_timeout(Time(400 * MS), &mut budget, &mut rng)
        .unwrap();
    let RetryDecision::Retry { retry_at, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(budget.active_retries(), 1);
    let second = s.on_attempt_start(retry_at, EndpointId(1)).unwrap();
    assert_eq!(
        second.deadline,
        Some(Time(500 * MS)),
        "capped by the route timeout"
    );
    let d = s
        .handle_timeout(Time(500 * MS), &mut budget, &mut rng)
        .unwrap();
    assert_eq!(
        d,
        RetryDecision::GiveUp {
            attempts: 2,
            reason: GiveUpReason::Timeout {
                route_timeout: Duration::from_millis(500)
            }
        }
    );
    assert_eq!(
        budget.active_retries(),
        0,
        "timeout released the retry slot"
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn budget_exhaustion_gives_up_with_the_limit() {
    let mut budget = RetryBudget::new(RetryLimit::MaxRetries(0));
    let d = run(
        RetryPolicy::default(),
        &[AttemptResult::ConnectFailure],
        &mut budget,
    );
    let RetryDecision::GiveUp {
        reason: GiveUpReason::BudgetExhausted(o),
        ..
    } = d[0]
    else {
        panic!("{d:?}")
    };
    assert_eq!((o.limiter, o.limit), (RetryLimiterKind::MaxRetries, 0));
}

#[test]
fn consistent_hash_policy_keeps_the_endpoint() {
    let mut budget = RetryBudget::default();
    let p = RetryPolicy::default().for_consistent_hash();
    let d = run(
        p,
        &[AttemptResult::ConnectFailure, AttemptResult::http(200)],
        &mut budget,
    );
    assert!(
        matches!(&d[0], RetryDecision::Retry { endpoints_excluded, .. } if endpoints_excluded.is_empty())
    );
}

#[test]
fn out_of_order_calls_are_refused() {
    let (mut budget, mut rng) = (RetryBudget::default(), rng());
    let mut s = RetryState::start(RetryPolicy::default(), Time::ZERO, None);
    assert_eq!(
        s.on_attempt_result(Time::ZERO, AttemptResult::http(200), &mut budget, &mut rng),
        Err(RetryStateError::NoAttemptInFlight)
    );
    s.on_attempt_start(Time::ZERO, EndpointId(0)).unwrap();
    assert_eq!(
        s.on_attempt_start(Time::ZERO, EndpointId(0)),
        Err(RetryStateError::AttemptInFlight)
    );
    s.on_attempt_result(Time::ZERO, AttemptResult::http(200), &mut budget, &mut rng)
        .unwrap();
    assert_eq!(
        s.on_attempt_start(Time::ZERO, EndpointId(0)),
        Err(RetryStateError::Finished)
    );
}

#[test]
fn decisions_serialize_with_stable_names() {
    let mut budget = RetryBudget::default();
    let d = run(
        RetryPolicy::default(),
        &[AttemptResult::ConnectFailure, AttemptResult::http(200)],
        &mut budget,
    );
    let json = serde_json::to_value(&d[0]).unwrap();
    assert_eq!(json["decision"], "retry");
    assert_eq!(json["attempt"], 2);
    assert_eq!(json["reason"]["condition"], "connect_failure");
    assert_eq!(json["reason"]["result"]["kind"], "connect_failure");
    assert_eq!(json["reason"]["policy_source"], "istio_default");
    assert!(json["backoff_ns"].as_u64().unwrap() < 25 * MS);
    let give_up = RetryDecision::GiveUp {
        attempts: 1,
        reason: GiveUpReason::Timeout {
            route_timeout: Duration::from_secs(1),
        },
    };
    let json = serde_json::to_value(&give_up).unwrap();
    assert_eq!(json["decision"], "give_up");
    assert_eq!(json["reason"]["kind"], "timeout");
    assert_eq!(json["reason"]["route_timeout_ns"], 1_000_000_000u64);
}

fn arb_result() -> impl Strategy<Value = AttemptResult> {
    prop_oneof![
        (200u16..600).prop_map(AttemptResult::http),
        Just(AttemptResult::ConnectFailure),
        Just(AttemptResult::Reset),
        Just(AttemptResult::RefusedStream),
        Just(AttemptResult::PerTryTimeout),
        (0u32..17).prop_map(|g| AttemptResult::Response {
            status: 200,
            grpc_status: Some(g)
        }),
    ]
}

proptest! {
    #[test]
    fn tries_never_exceed_attempts_plus_one(
        attempts in 0u32..6,
        retry_on in "(5xx|gateway-error|reset|connect-failure|503|unavailable)(,(5xx|reset|409|retriable-4xx))?",
        results in proptest::collection::vec(arb_result(), 1..12),
    ) {
        let policy = RetryPolicy::configured(attempts, Some(&retry_on)).unwrap();
        let mut budget = RetryBudget::default();
        let d = run(policy, &results, &mut budget);
        let tries = d.len() as u32;
        prop_assert!(tries <= attempts + 1);
        if (tries as usize) < results.len() {
            prop_assert!(d.last().unwrap().is_final());
        }
        prop_assert_eq!(budget.active_retries(), 0);
    }

    /// Many requests share one cluster budget; retries in flight never exceed the
    /// limit, and every slot comes back.
    #[test]
    fn concurrent_retries_never_exceed_the_budget(
        seed in any::<u64>(),
        requests in 1usize..40,
        percent in 0.0f64..100.0,
        min_conc in 0u32..5,
    ) {
        let mut budget = RetryBudget::new(RetryLimit::Budget(RetryBudgetPolicy {
            percent, min_retry_concurrency: min_conc,
        }));
        let mut rng = SmallRng::seed_from_u64(seed);
        let policy = RetryPolicy::configured(3, Some("5xx")).unwrap();
        let mut states: Vec<RetryState> = (0..requests)
            .map(|_| RetryState::start(policy.clone(), Time::ZERO, None))
            .collect();
        for s in &mut states {
            budget.on_request_start();
            s.on_attempt_start(Time::ZERO, EndpointId(0)).unwrap();
        }
        let mut live: Vec<usize> = (0..requests).collect();
        let mut steps = 0;
        while !live.is_empty() {
            steps += 1;
            prop_assert!(steps < 10_000, "stuck");
            let i = live[rng.random_range(0..live.len())];
            let result = if rng.random_bool(0.7) { AttemptResult::http(503) } else { AttemptResult::http(200) };
            budget.on_request_end();
            let d = states[i].on_attempt_result(Time::ZERO, result, &mut budget, &mut rng).unwrap();
            if let RetryDecision::Retry { .. } = d {
                // Checked at acquisition, as Envoy: the limit may later shrink with load.
                prop_assert!(budget.active_retries() <= budget.max_active_retries());
                budget.on_request_start();
                states[i].on_attempt_start(Time::ZERO, EndpointId(1)).unwrap();
            } else {
                live.retain(|&j| j != i);
            }
        }
        prop_assert_eq!(budget.active_retries(), 0);
        prop_assert_eq!(budget.active_requests(), 0);
    }

    #[test]
    fn same_seed_same_decisions(seed in any::<u64>(), results in proptest::collection::vec(arb_result(), 1..8)) {
        let go = || {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut budget = RetryBudget::default();
            let mut s = RetryState::start(RetryPolicy::configured(5, Some("5xx")).unwrap(), Time::ZERO, None);
            let mut out = Vec::new();
            let mut now = Time::ZERO;
            for (i, r) in results.iter().enumerate() {
                s.on_attempt_start(now, EndpointId(i as u32)).unwrap();
                let d = s.on_attempt_result(now, *r, &mut budget, &mut rng).unwrap();
                if let RetryDecision::Retry { retry_at, .. } = d { now = retry_at; }
                let fin = d.is_final();
                out.push(d);
                if fin { break; }
            }
            out
        };
        prop_assert_eq!(go(), go());
    }
}

/// A route's `retries` become the policy both drivers run: Istio's default when the
/// route says nothing, else exactly what it configures.
#[test]
fn route_retries_become_the_policy() {
    let default = RetryPolicy::from_route(&crate::route::RouteRetries::istio_default());
    assert_eq!(default, RetryPolicy::istio_default());
    let configured = RetryPolicy::from_route(&crate::route::RouteRetries {
        attempts: 3,
        per_try_timeout: Some(Duration::from_millis(250)),
        retry_on: std::sync::Arc::from("5xx,reset"),
        istio_default: false,
    });
    assert_eq!(configured.attempts, 3);
    assert_eq!(configured.per_try_timeout, Some(Duration::from_millis(250)));
    assert!(configured.retry_on.contains(&RetryOn::FiveXx));
    assert!(configured.retry_on.contains(&RetryOn::Reset));
    assert!(!configured.retry_on.contains(&RetryOn::ConnectFailure));
}
