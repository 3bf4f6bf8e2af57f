//! Tests of [`cluster_policy`]: Istio's samples and inline rules compile to the expected
//! policies, and the compiled policies drive the pool, outlier detector and load
//! balancer as configured.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::config::Severity;
use crate::lb::{LoadBalancer, PickContext, PickDetail, RequestKeys, select_subset};
use crate::outlier::{EjectionReason, Outcome, OutlierDetector, OutlierEvent};
use crate::pool::{CloseReason, ConnectionPool, Overflow, OverflowReason, PoolAction, Protocol};
use crate::security::client_tls::{AutoMtls, ClientTlsReason, decide_client_tls};
use crate::security::{MtlsMode, handshake_outcome};
use crate::{Endpoint, EndpointId, Time};

const T0: Time = Time::ZERO;
/// The host of the inline rules (`host: r` in namespace `default`).
const R: &str = "r.default.svc.cluster.local";

use crate::test_support::istio_sample as sample;

fn load(sources: &[(String, String)]) -> ConfigSet {
    let (set, findings) = ConfigSet::load(sources);
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn samples(names: &[&str]) -> ConfigSet {
    load(&names.iter().map(|n| sample(n)).collect::<Vec<_>>())
}

/// A DestinationRule `default/r` for host `r` with `spec` (indented by two) after `host`.
fn inline(spec: &str) -> ConfigSet {
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r, \
         namespace: default}}\nspec:\n  host: r\n{spec}"
    );
    load(&[("inline.yaml".to_owned(), text)])
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn has(p: &ClusterPolicy, needle: &str) -> bool {
    p.applied.iter().any(|l| l.contains(needle))
}

/// Endpoints `0..n`, `version` v1 for even ids and v2 for odd ones, zone `r1/z{id % 3}`.
fn endpoints(n: u32) -> Vec<Endpoint> {
    (0..n)
        .map(|id| Endpoint {
            id: EndpointId(id),
            address: format!("10.0.0.{id}:8080"),
            labels: labels(&[("version", if id % 2 == 0 { "v1" } else { "v2" })]),
            locality: Locality::parse(&format!("r1/z{}/", id % 3)),
            weight: 1,
            namespace: "default".into(),
            service_account: "r".into(),
        })
        .collect()
}

/// The endpoints `n` picks land on, in order.
fn picks(lb: &mut LoadBalancer, headers: &[(&str, &str)], n: usize) -> Vec<EndpointId> {
    let mut rng = SmallRng::seed_from_u64(7);
    let ctx = PickContext {
        keys: RequestKeys {
            headers,
            ..Default::default()
        },
        ..Default::default()
    };
    (0..n)
        .map(|_| lb.pick(&ctx, |_| true, &mut rng).expect("pick").endpoint)
        .collect()
}

#[test]
fn no_destination_rule_gives_istio_defaults() {
    let set = samples(&["bookinfo-destination-rule-all.yaml"]);
    let host = "httpbin.default.svc.cluster.local";
    let p = cluster_policy(&set, host, None, None);
    let want = ClusterPolicy {
        applied: p.applied.clone(),
        ..ClusterPolicy::istio_default(host, None)
    };
    assert_eq!(p, want);
    assert_eq!(
        p.lb.algorithm,
        LbAlgorithm::LeastRequest { choice_count: 2 }
    );
    assert_eq!(
        (p.lb.panic_threshold_percent, p.pool.max_connections),
        (50, u32::MAX)
    );
    assert_eq!(p.retry_limit, RetryLimit::MaxRetries(u32::MAX));
    assert_eq!(p.applied.len(), 1, "{:?}", p.applied);
    assert!(p.applied[0].starts_with(
        "no DestinationRule for httpbin.default.svc.cluster.local: Istio defaults \
         (LEAST_REQUEST, no outlier detection"
    ));
}

/// bookinfo's rules only define subsets: the subset's labels, every default.
#[test]
fn bookinfo_subset_has_labels_and_defaults() {
    let set = samples(&["bookinfo-destination-rule-all.yaml"]);
    let host = "reviews.default.svc.cluster.local";
    let p = cluster_policy(&set, host, Some("v2"), None);
    assert_eq!(p.subset_labels, labels(&[("version", "v2")]));
    assert_eq!(
        (p.lb.clone(), p.outlier.clone()),
        (LbPolicy::default(), None)
    );
    assert_eq!(p.pool, ConnectionPoolLimits::default());
    assert_eq!(p.client_tls, None);
    assert_eq!(
        p.origin.as_deref(),
        Some("bookinfo-destination-rule-all.yaml:12")
    );
    assert!(
        has(&p, "loadBalancer: not set: Istio default LEAST_REQUEST"),
        "{:?}",
        p.applied
    );
    assert!(has(&p, "outlierDetection: not set"));
    let missing = cluster_policy(&set, host, Some("v9"), None);
    assert!(missing.subset_labels.is_empty() && has(&missing, "defines subset v9"));
}

/// Istio's "subset load balancers" sample: v2 overrides RANDOM with ROUND_ROBIN.
#[test]
fn subset_load_balancer_overrides_the_top_level_one() {
    let set = samples(&["concepts-dr-subset-loadbalancers.yaml"]);
    let host = "my-svc.default.svc.cluster.local";
    let algorithm = |subset| cluster_policy(&set, host, subset, None).lb.algorithm;
    assert_eq!(algorithm(None), LbAlgorithm::Random);
    assert_eq!(algorithm(Some("v1")), LbAlgorithm::Random);
    assert_eq!(algorithm(Some("v2")), LbAlgorithm::RoundRobin);
    assert_eq!(algorithm(Some("v3")), LbAlgorithm::Random);
    let v2 = cluster_policy(&set, host, Some("v2"), None);
    let file = "concepts-dr-subset-loadbalancers.yaml";
    let line =
        format!("loadBalancer: the subset's ({file}:18) replaces the top-level one ({file}:8)");
    assert!(has(&v2, &line), "{:?}", v2.applied);
    assert!(has(
        &v2,
        &format!("loadBalancer.simple = ROUND_ROBIN: smooth weighted round robin ({file}:19)")
    ));
}

/// A subset's sub-message replaces the top-level one whole; the others are inherited.
#[test]
fn subset_replaces_per_sub_message_not_per_field() {
    let set = inline(
        "  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 10}\n      http: \
         {http2MaxRequests: 50}\n    outlierDetection: {consecutive5xxErrors: 3}\n    tls: \
         {mode: ISTIO_MUTUAL}\n  subsets:\n  - name: canary\n    labels: {track: canary}\n    \
         trafficPolicy:\n      connectionPool:\n        http: {http2MaxRequests: 5}\n",
    );
    let host = cluster_policy(&set, R, None, None);
    assert_eq!(
        (host.pool.max_connections, host.pool.max_requests),
        (10, 50)
    );
    let canary = cluster_policy(&set, R, Some("canary"), None);
    assert_eq!(canary.subset_labels, labels(&[("track", "canary")]));
    // The subset's connectionPool has no tcp: maxConnections is back to the default.
    assert_eq!(
        (canary.pool.max_connections, canary.pool.max_requests),
        (u32::MAX, 5)
    );
    assert_eq!(canary.outlier.and_then(|o| o.consecutive_5xx), Some(3));
    assert_eq!(canary.client_tls, Some(ClientTlsMode::IstioMutual));
}

/// Istio's circuit-breaking task: the sample's limits and ejection settings.
#[test]
fn circuit_breaking_sample_compiles() {
    let set = samples(&["docs-circuit-breaking-dr.yaml"]);
    let p = cluster_policy(&set, "httpbin.default.svc.cluster.local", None, None);
    let pool = p.pool;
    assert_eq!((pool.max_connections, pool.max_pending_requests), (1, 1));
    assert_eq!(
        (pool.max_requests_per_connection, pool.max_requests),
        (1, u32::MAX)
    );
    assert_eq!(pool.retry_limit, RetryLimit::MaxRetries(u32::MAX));
    let od = p.outlier.clone().expect("outlier detection");
    assert_eq!(
        (od.consecutive_5xx, od.consecutive_gateway_errors),
        (Some(1), None)
    );
    assert_eq!(
        (od.interval, od.base_ejection_time),
        (Duration::from_secs(1), Duration::from_secs(180))
    );
    assert_eq!((od.max_ejection_percent, od.min_health_percent), (100, 0));
    assert_eq!(p.lb.panic_threshold_percent, 0);
    let at = "docs-circuit-breaking-dr.yaml:10";
    assert!(
        has(&p, &format!("connectionPool.tcp.maxConnections = 1 ({at})")),
        "{:?}",
        p.applied
    );
    assert!(has(
        &p,
        "outlierDetection.baseEjectionTime = 180s (docs-circuit-breaking-dr.yaml:17)"
    ));
}

/// Istio's "all fields" test rule: every top-level group, the deprecated
/// `consecutiveErrors`, and a subset with a cookie hash and the deprecated ring size.
#[test]
fn all_fields_sample_maps_every_group() {
    let set = samples(&["tests-destination-rule-all.yaml"]);
    let host = "destall.default.svc.cluster.local";
    let p = cluster_policy(&set, host, None, None);
    assert_eq!(p.lb.algorithm, LbAlgorithm::RoundRobin);
    let l = p.pool;
    assert_eq!(
        (l.max_connections, l.max_pending_requests, l.max_requests),
        (99, 14, 33)
    );
    assert_eq!(l.max_requests_per_connection, 65);
    assert_eq!(
        (p.retry_limit, l.retry_limit),
        (RetryLimit::MaxRetries(4), RetryLimit::MaxRetries(4))
    );
    let od = p.outlier.clone().expect("outlier detection");
    // consecutiveErrors is gateway errors, with the 5xx detector off, as Istio.
    assert_eq!(
        (od.consecutive_gateway_errors, od.consecutive_5xx),
        (Some(7), None)
    );
    assert_eq!(
        (od.interval, od.base_ejection_time),
        (Duration::from_millis(8), Duration::from_secs(60))
    );
    assert_eq!(od.max_ejection_percent, 11);
    assert_eq!(p.client_tls, Some(ClientTlsMode::Disable));
    assert!(has(&p, "note: connectionPool timeouts"), "{:?}", p.applied);
    let v2 = cluster_policy(&set, host, Some("v2"), None);
    let cookie = HashPolicy::Cookie {
        name: "Cookie".into(),
    };
    let ring = LbAlgorithm::RingHash {
        hash: cookie,
        minimum_ring_size: 42,
        maximum_ring_size: DEFAULT_MAXIMUM_RING_SIZE,
    };
    assert_eq!(v2.lb.algorithm, ring);
    assert!(
        has(&v2, "note: httpCookie generation (ttl 30s"),
        "{:?}",
        v2.applied
    );
    assert_eq!(v2.pool.max_connections, 99, "connectionPool is inherited");
}

#[test]
fn consistent_hash_keys_and_tables() {
    let set = inline(
        "  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x-user, \
         ringHash: {minimumRingSize: 2048}}\n  subsets:\n  - name: m\n    trafficPolicy:\n      \
         loadBalancer:\n        consistentHash: {useSourceIp: true, maglev: {tableSize: 251}}\n  \
         - name: q\n    trafficPolicy:\n      loadBalancer:\n        consistentHash: \
         {httpQueryParameterName: id}\n",
    );
    let algorithm = |subset| cluster_policy(&set, R, subset, None).lb.algorithm;
    let header = HashPolicy::Header {
        name: "x-user".into(),
    };
    let max = DEFAULT_MAXIMUM_RING_SIZE;
    let ring = |hash, minimum_ring_size| LbAlgorithm::RingHash {
        hash,
        minimum_ring_size,
        maximum_ring_size: max,
    };
    assert_eq!(algorithm(None), ring(header, 2048));
    let maglev = LbAlgorithm::Maglev {
        hash: HashPolicy::SourceIp,
        table_size: 251,
    };
    assert_eq!(algorithm(Some("m")), maglev);
    let query = HashPolicy::QueryParameter { name: "id".into() };
    assert_eq!(algorithm(Some("q")), ring(query, DEFAULT_MINIMUM_RING_SIZE));
    let p = cluster_policy(&set, R, None, None);
    assert!(
        has(
            &p,
            "loadBalancer.consistentHash.httpHeaderName = Header { name: \"x-user\" }"
        ),
        "{:?}",
        p.applied
    );
}

/// Failover needs outlier detection (and the client's locality), as Istio.
#[test]
fn locality_failover_engages_only_with_outlier_detection() {
    let client = Locality::parse("r1/z0/");
    let host = "helloworld.sample.svc.cluster.local";
    let set = samples(&["docs-locality-failover-dr.yaml"]);
    let p = cluster_policy(&set, host, None, Some(&client));
    let failover = p.lb.locality_failover.clone().expect("engaged");
    assert_eq!(failover.client, client);
    assert!(
        has(&p, "note: localityLbSetting failover/failoverPriority"),
        "{:?}",
        p.applied
    );
    assert_eq!(
        cluster_policy(&set, host, None, None).lb.locality_failover,
        None
    );
    let without =
        inline("  trafficPolicy:\n    loadBalancer:\n      localityLbSetting: {enabled: true}\n");
    let p = cluster_policy(&without, R, None, Some(&client));
    assert_eq!(p.lb.locality_failover, None);
    assert!(has(
        &p,
        "Istio engages it only with outlierDetection configured"
    ));
    let disabled = inline(
        "  trafficPolicy:\n    loadBalancer:\n      localityLbSetting: {enabled: false}\n    \
         outlierDetection: {consecutive5xxErrors: 1}\n",
    );
    assert_eq!(
        cluster_policy(&disabled, R, None, Some(&client))
            .lb
            .locality_failover,
        None
    );
    let distribute = samples(&["docs-locality-distribute-dr.yaml"]);
    assert_eq!(
        cluster_policy(&distribute, host, None, Some(&client))
            .lb
            .locality_failover,
        None
    );
    // Locality load balancing is on by default: outlier detection alone engages it.
    let default = inline("  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n");
    let engaged = cluster_policy(&default, R, None, Some(&client));
    assert!(engaged.lb.locality_failover.is_some());
    // Behaviour: with failover, every pick stays in the client's zone.
    let eps = endpoints(6);
    let mut lb = LoadBalancer::new(engaged.lb, &eps);
    assert!(picks(&mut lb, &[], 60).iter().all(|id| id.0 % 3 == 0));
    let mut spread = LoadBalancer::new(p.lb, &eps);
    assert!(picks(&mut spread, &[], 60).iter().any(|id| id.0 % 3 != 0));
}

#[test]
fn retry_budget_replaces_max_retries() {
    let set = inline(
        "  trafficPolicy:\n    connectionPool:\n      http: {maxRetries: 4}\n    retryBudget: \
         {percent: 25, minRetryConcurrency: 5}\n  subsets:\n  - name: d\n    trafficPolicy:\n      \
         retryBudget: {}\n",
    );
    let p = cluster_policy(&set, R, None, None);
    let budget = RetryLimit::Budget(RetryBudgetPolicy {
        percent: 25.0,
        min_retry_concurrency: 5,
    });
    assert_eq!((p.retry_limit, p.pool.retry_limit), (budget, budget));
    assert!(
        has(&p, "maxRetries = 4 (inline.yaml:8) ignored"),
        "{:?}",
        p.applied
    );
    let d = cluster_policy(&set, R, Some("d"), None);
    assert_eq!(
        d.retry_limit,
        RetryLimit::Budget(RetryBudgetPolicy::default())
    );
    // Behaviour: with no active requests, minRetryConcurrency retries may run.
    let mut pool = ConnectionPool::new(p.pool, Protocol::Http1);
    let budget = pool.retry_budget_mut();
    assert!((0..5).all(|_| budget.try_acquire_retry().is_ok()));
    assert!(budget.try_acquire_retry().is_err());
}

/// bookinfo's mTLS rules: ISTIO_MUTUAL, which wins over auto mTLS.
#[test]
fn istio_mutual_sample() {
    let set = samples(&["bookinfo-destination-rule-all-mtls.yaml"]);
    let p = cluster_policy(&set, "reviews.default.svc.cluster.local", Some("v1"), None);
    assert_eq!(p.client_tls, Some(ClientTlsMode::IstioMutual));
    let auto_off = AutoMtls {
        enabled: false,
        ..AutoMtls::default()
    };
    let decision = decide_client_tls(p.client_tls, auto_off);
    assert_eq!(
        (decision.mode, decision.reason),
        (ClientTlsMode::IstioMutual, ClientTlsReason::DestinationRule)
    );
    assert_eq!(
        handshake_outcome(decision.mode, MtlsMode::Strict),
        crate::security::client_tls::HandshakeOutcome::Mtls
    );
}

/// Behaviour: the circuit-breaking sample's pool refuses the second pending request
/// with a 503 UO, and closes a connection after one request.
#[test]
fn circuit_breaking_sample_overflows_the_second_pending_request() {
    let set = samples(&["docs-circuit-breaking-dr.yaml"]);
    let p = cluster_policy(&set, "httpbin.default.svc.cluster.local", None, None);
    let mut pool = ConnectionPool::new(p.pool, Protocol::Http1);
    let e = EndpointId(0);
    let first = pool
        .try_acquire_request(T0, e)
        .expect("first request is admitted");
    let overflow = pool
        .try_acquire_request(T0, e)
        .expect_err("second overflows");
    assert_eq!(
        (overflow.reason, overflow.limit),
        (OverflowReason::MaxPendingRequests, 1)
    );
    assert_eq!((Overflow::STATUS, Overflow::RESPONSE_FLAG), (503, "UO"));
    let Some(PoolAction::Connect { connection, .. }) = pool.poll_action() else {
        panic!("expected a connect")
    };
    pool.on_connected(T0, connection);
    assert!(matches!(
        pool.poll_action(),
        Some(PoolAction::Dispatch { .. })
    ));
    pool.on_request_end(T0, first.request);
    let close = PoolAction::Close {
        connection,
        reason: CloseReason::MaxRequestsPerConnection,
    };
    assert_eq!(pool.poll_action(), Some(close));
}

/// Behaviour: the compiled outlier policy ejects at the configured count — one 5xx for
/// the circuit-breaking sample, the third for an inline rule, the seventh 503 (and no
/// number of 500s) for the deprecated `consecutiveErrors: 7`, the second 503 with
/// `consecutiveGatewayErrors: 2`, the second connect failure with split local-origin
/// errors.
#[test]
fn compiled_outlier_policy_ejects_after_the_configured_count() {
    let ejected_after = |set: &ConfigSet, host: &str, outcome: Outcome| {
        let policy = cluster_policy(set, host, None, None)
            .outlier
            .expect("outlier detection");
        let mut d = OutlierDetector::new(policy, (0..10).map(EndpointId), T0);
        (1..=20).find(|_| {
            let events = d.on_response(T0, EndpointId(0), outcome);
            events
                .iter()
                .any(|e| matches!(e, OutlierEvent::Ejected { .. }))
        })
    };
    let http = |status| Outcome::Http { status };
    let cb = samples(&["docs-circuit-breaking-dr.yaml"]);
    let httpbin = "httpbin.default.svc.cluster.local";
    assert_eq!(ejected_after(&cb, httpbin, http(500)), Some(1));
    let od = |fields: &str| {
        inline(&format!(
            "  trafficPolicy:\n    outlierDetection: {{{fields}}}\n"
        ))
    };
    let three = od("consecutive5xxErrors: 3, maxEjectionPercent: 50");
    assert_eq!(ejected_after(&three, R, http(500)), Some(3));
    let legacy = samples(&["tests-destination-rule-all.yaml"]);
    let destall = "destall.default.svc.cluster.local";
    assert_eq!(ejected_after(&legacy, destall, http(503)), Some(7));
    assert_eq!(ejected_after(&legacy, destall, http(500)), None);
    let gateway = od("consecutiveGatewayErrors: 2, consecutive5xxErrors: 0, minHealthPercent: 30");
    assert_eq!(ejected_after(&gateway, R, http(503)), Some(2));
    assert_eq!(ejected_after(&gateway, R, http(500)), None);
    assert_eq!(
        cluster_policy(&gateway, R, None, None)
            .lb
            .panic_threshold_percent,
        30
    );
    let split = od("splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2");
    assert_eq!(ejected_after(&split, R, Outcome::ConnectFailure), Some(2));
    // The event carries the sample's base ejection time.
    let policy = cluster_policy(&cb, httpbin, None, None)
        .outlier
        .expect("outlier");
    let mut d = OutlierDetector::new(policy, [EndpointId(0)], T0);
    let events = d.on_response(T0, EndpointId(0), Outcome::Http { status: 502 });
    let Some(OutlierEvent::Ejected {
        reason,
        ejection_time,
        ..
    }) = events.first()
    else {
        panic!("{events:?}")
    };
    assert_eq!(*reason, EjectionReason::Consecutive5xx { count: 1 });
    assert_eq!(*ejection_time, Duration::from_secs(180));
    assert!(d.is_ejected(EndpointId(0)));
}

/// Behaviour: the subset's algorithm drives the load balancer — the consistent-hash
/// subset sticks to one endpoint per user; the host's RANDOM does not; the sample's
/// ROUND_ROBIN subset alternates.
#[test]
fn subset_algorithm_drives_the_load_balancer() {
    let set = inline(
        "  trafficPolicy:\n    loadBalancer: {simple: RANDOM}\n  subsets:\n  - name: v2\n    \
         labels: {version: v2}\n    trafficPolicy:\n      loadBalancer:\n        consistentHash: \
         {httpHeaderName: x-user}\n",
    );
    let eps = endpoints(8);
    let sticky = cluster_policy(&set, R, Some("v2"), None);
    let members = select_subset(&eps, &sticky.subset_labels);
    assert_eq!(members.len(), 4);
    let mut lb = LoadBalancer::new(sticky.lb, &members);
    let alice = picks(&mut lb, &[("x-user", "alice")], 50);
    assert!(
        alice.iter().all(|&id| id == alice[0] && id.0 % 2 == 1),
        "{alice:?}"
    );
    let mut rng = SmallRng::seed_from_u64(1);
    let headers = [("x-user", "alice")];
    let ctx = PickContext {
        keys: RequestKeys {
            headers: &headers,
            ..Default::default()
        },
        ..Default::default()
    };
    let trace = lb.pick(&ctx, |_| true, &mut rng).expect("pick").trace;
    assert!(matches!(trace.detail, PickDetail::Hash { .. }), "{trace:?}");
    let host = cluster_policy(&set, R, None, None);
    let mut random = LoadBalancer::new(host.lb, &eps);
    let spread = picks(&mut random, &[("x-user", "alice")], 50);
    assert!(spread.iter().any(|&id| id != spread[0]));
    let rr_set = samples(&["concepts-dr-subset-loadbalancers.yaml"]);
    let rr = cluster_policy(
        &rr_set,
        "my-svc.default.svc.cluster.local",
        Some("v2"),
        None,
    );
    let mut rr_lb = LoadBalancer::new(rr.lb, &select_subset(&eps, &rr.subset_labels));
    let order = picks(&mut rr_lb, &[], 8);
    assert!(order.windows(2).all(|w| w[0] != w[1]), "{order:?}");
}
