use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::table::{HashTable, Slot};
use super::*;
use crate::{Endpoint, EndpointId, Locality};

fn ep(id: u32, weight: u32, locality: &str) -> Endpoint {
    Endpoint {
        id: EndpointId(id),
        address: format!("10.0.0.{id}:8080"),
        labels: BTreeMap::from([("version".to_owned(), format!("v{}", id % 2 + 1))]),
        locality: Locality::parse(locality),
        weight,
        namespace: "default".into(),
        service_account: "reviews".into(),
    }
}

fn eps(weights: &[u32]) -> Vec<Endpoint> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| ep(i as u32, w, "r/z/"))
        .collect()
}

fn all_healthy(_: EndpointId) -> bool {
    true
}

fn counts(lb: &mut LoadBalancer, n: usize, seed: u64) -> BTreeMap<EndpointId, usize> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let p = lb
            .pick(&PickContext::default(), all_healthy, &mut rng)
            .unwrap();
        *out.entry(p.endpoint).or_default() += 1;
    }
    out
}

fn header_ctx<'a>(headers: &'a [(&'a str, &'a str)]) -> PickContext<'a> {
    PickContext {
        keys: RequestKeys {
            headers,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn subsets_select_by_every_label() {
    let all = eps(&[1, 1, 1, 1]);
    let v1 = BTreeMap::from([("version".to_owned(), "v1".to_owned())]);
    let ids: Vec<_> = select_subset(&all, &v1).iter().map(|e| e.id.0).collect();
    assert_eq!(ids, [0, 2]);
    assert_eq!(select_subset(&all, &BTreeMap::new()).len(), 4);
    let none = BTreeMap::from([
        ("version".to_owned(), "v1".to_owned()),
        ("x".to_owned(), "y".to_owned()),
    ]);
    assert!(select_subset(&all, &none).is_empty());
}

#[test]
fn defaults_are_istios_and_envoys() {
    let p = LbPolicy::default();
    assert_eq!(p.algorithm, LbAlgorithm::LeastRequest { choice_count: 2 });
    assert_eq!((p.locality_failover, p.panic_threshold_percent), (None, 50));
    let LbAlgorithm::Maglev { table_size, .. } = LbAlgorithm::maglev(HashPolicy::SourceIp) else {
        unreachable!()
    };
    assert_eq!(table_size, 65537);
    let LbAlgorithm::RingHash {
        minimum_ring_size,
        maximum_ring_size,
        ..
    } = LbAlgorithm::ring_hash(HashPolicy::SourceIp)
    else {
        unreachable!()
    };
    assert_eq!(
        (minimum_ring_size, maximum_ring_size),
        (1024, 8 * 1024 * 1024)
    );
}

#[test]
fn smooth_round_robin_interleaves_by_weight() {
    let mut lb = LoadBalancer::new(LbPolicy::new(LbAlgorithm::RoundRobin), &eps(&[5, 1, 1]));
    let mut rng = SmallRng::seed_from_u64(0);
    let seq: Vec<u32> = (0..7)
        .map(|_| {
            lb.pick(&PickContext::default(), all_healthy, &mut rng)
                .unwrap()
                .endpoint
                .0
        })
        .collect();
    // nginx's smooth WRR: a a b a c a a — never all the heavy ones in a row.
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn unhealthy_endpoints_are_skipped_and_panic_mode_says_so() {
    let mut lb = LoadBalancer::new(LbPolicy::new(LbAlgorithm::RoundRobin), &eps(&[1, 1, 1, 1]));
    let mut rng = SmallRng::seed_from_u64(0);
    let healthy = |id: EndpointId| id.0 != 3;
    for _ in 0..8 {
        let p = lb.pick(&PickContext::default(), healthy, &mut rng).unwrap();
        assert_ne!(p.endpoint, EndpointId(3));
        assert!(!p.trace.panic);
    }
    // 1 of 4 healthy (25%) is under Envoy's 50%: everything is a candidate again.
    let p = lb
        .pick(&PickContext::default(), |id| id.0 == 0, &mut rng)
        .unwrap();
    assert!(p.trace.panic);
    assert_eq!(
        (p.trace.healthy, p.trace.total, p.trace.candidates),
        (1, 4, 4)
    );
    // Istio's minHealthPercent 0: no panic, and nothing healthy is a 503.
    let mut lb = LoadBalancer::new(
        LbPolicy {
            panic_threshold_percent: 0,
            ..LbPolicy::new(LbAlgorithm::Random)
        },
        &eps(&[1, 1]),
    );
    let err = lb
        .pick(&PickContext::default(), |_| false, &mut rng)
        .unwrap_err();
    assert_eq!(
        err,
        PickError::NoHealthyEndpoints {
            priority: 0,
            total: 2,
            panic_threshold_percent: 0
        }
    );
    let mut empty = LoadBalancer::new(LbPolicy::default(), &[]);
    assert_eq!(
        empty.pick(&PickContext::default(), all_healthy, &mut rng),
        Err(PickError::NoEndpoints)
    );
}

#[test]
fn retries_avoid_tried_endpoints_unless_nothing_else_is_left() {
    let mut lb = LoadBalancer::new(LbPolicy::new(LbAlgorithm::Random), &eps(&[1, 1, 1]));
    let mut rng = SmallRng::seed_from_u64(3);
    let tried = BTreeSet::from([EndpointId(0), EndpointId(1)]);
    let ctx = PickContext {
        exclude: &tried,
        ..Default::default()
    };
    for _ in 0..20 {
        let p = lb.pick(&ctx, all_healthy, &mut rng).unwrap();
        assert_eq!(p.endpoint, EndpointId(2));
        assert_eq!(p.trace.exclusion, Exclusion::Applied { count: 2 });
    }
    let p = lb.pick(&ctx, |id| id.0 != 2, &mut rng).unwrap();
    assert_eq!(p.trace.exclusion, Exclusion::AllExcludedIgnored);
}

#[test]
fn least_request_prefers_the_idle_endpoint() {
    let mut lb = LoadBalancer::new(LbPolicy::default(), &eps(&[1, 1]));
    for _ in 0..10 {
        lb.on_request_start(EndpointId(1));
    }
    let c = counts(&mut lb, 4000, 9);
    // Busy one only when both samples hit it: 1/4.
    let busy = c.get(&EndpointId(1)).copied().unwrap_or(0) as f64 / 4000.0;
    assert!((0.21..0.29).contains(&busy), "busy share {busy}");
    let mut rng = SmallRng::seed_from_u64(1);
    let p = lb
        .pick(&PickContext::default(), all_healthy, &mut rng)
        .unwrap();
    let PickDetail::LeastRequest { choices } = &p.trace.detail else {
        panic!("{p:?}")
    };
    assert_eq!(choices.len(), 2);
    lb.update_endpoints(&eps(&[1, 1, 1]));
    assert_eq!(
        lb.active_requests(EndpointId(1)),
        10,
        "counts survive an endpoint update"
    );
    lb.on_request_end(EndpointId(1));
    assert_eq!(lb.active_requests(EndpointId(1)), 9);
}

fn key_owner(lb: &mut LoadBalancer, key: &str, healthy: impl Fn(EndpointId) -> bool) -> EndpointId {
    let headers = [("x-user", key)];
    let mut rng = SmallRng::seed_from_u64(0);
    lb.pick(&header_ctx(&headers), healthy, &mut rng)
        .unwrap()
        .endpoint
}

#[test]
fn consistent_hash_is_sticky_and_moves_only_the_lost_keys() {
    let hp = HashPolicy::Header {
        name: "X-User".into(),
    };
    for algorithm in [
        LbAlgorithm::ring_hash(hp.clone()),
        LbAlgorithm::maglev(hp.clone()),
    ] {
        let name = format!("{algorithm:?}");
        let mut lb = LoadBalancer::new(LbPolicy::new(algorithm), &eps(&[1, 1, 1, 1, 1]));
        let keys: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
        let before: Vec<EndpointId> = keys
            .iter()
            .map(|k| key_owner(&mut lb, k, all_healthy))
            .collect();
        let again: Vec<EndpointId> = keys
            .iter()
            .map(|k| key_owner(&mut lb, k, all_healthy))
            .collect();
        assert_eq!(before, again, "{name}: sticky");
        let spread: BTreeSet<_> = before.iter().collect();
        assert_eq!(spread.len(), 5, "{name}: every endpoint owns keys");
        // Eject endpoint 2: only its keys move.
        let without_2 = |id: EndpointId| id.0 != 2;
        let after: Vec<EndpointId> = keys
            .iter()
            .map(|k| key_owner(&mut lb, k, without_2))
            .collect();
        let mut moved_others = 0;
        for (b, a) in before.iter().zip(&after) {
            assert_ne!(a.0, 2);
            if b.0 != 2 && a != b {
                moved_others += 1;
            }
        }
        // Near, not exactly, zero: as Envoy, the table is rebuilt over the healthy
        // endpoints, and the ring rescales (205 → 256 points per endpoint here).
        assert!(
            moved_others <= keys.len() * 15 / 100,
            "{name}: {moved_others} keys moved needlessly"
        );
    }
}

#[test]
fn hash_key_missing_falls_back_to_random_and_hashing_ignores_exclusions() {
    let hp = HashPolicy::Cookie {
        name: "session".into(),
    };
    let mut lb = LoadBalancer::new(
        LbPolicy::new(LbAlgorithm::ring_hash(hp.clone())),
        &eps(&[1, 1, 1]),
    );
    let mut rng = SmallRng::seed_from_u64(0);
    let p = lb
        .pick(&PickContext::default(), all_healthy, &mut rng)
        .unwrap();
    assert_eq!(
        p.trace.detail,
        PickDetail::HashKeyMissing { source: hp.clone() }
    );
    let headers = [("cookie", "session=abc")];
    let first = lb
        .pick(&header_ctx(&headers), all_healthy, &mut rng)
        .unwrap();
    let tried = BTreeSet::from([first.endpoint]);
    let ctx = PickContext {
        exclude: &tried,
        ..header_ctx(&headers)
    };
    let retry = lb.pick(&ctx, all_healthy, &mut rng).unwrap();
    assert_eq!(retry.endpoint, first.endpoint);
    assert_eq!(retry.trace.exclusion, Exclusion::None);
    let PickDetail::Hash { key, .. } = &retry.trace.detail else {
        panic!()
    };
    assert_eq!(key, "abc");
}

#[test]
fn locality_failover_spills_by_overprovisioning_only_with_outlier_detection() {
    let endpoints = vec![
        ep(0, 1, "r/a/"),
        ep(1, 1, "r/a/"),
        ep(2, 1, "r/b/"),
        ep(3, 1, "eu/c/"),
    ];
    let client = Locality::parse("r/a/");
    let policy =
        LbPolicy::new(LbAlgorithm::RoundRobin).with_locality_failover(client.clone(), true);
    let mut lb = LoadBalancer::new(policy, &endpoints);
    let mut rng = SmallRng::seed_from_u64(5);
    for _ in 0..20 {
        let p = lb
            .pick(&PickContext::default(), all_healthy, &mut rng)
            .unwrap();
        assert!(p.endpoint.0 < 2, "local zone only while healthy");
        assert_eq!(p.trace.priority_loads, [100, 0, 0, 0]);
    }
    // One of two local endpoints ejected: 50% × 1.4 = 70% stays, 30% spills to zone b.
    let mut spilled = 0;
    for _ in 0..2000 {
        let p = lb
            .pick(&PickContext::default(), |id| id.0 != 0, &mut rng)
            .unwrap();
        assert_eq!(p.trace.priority_loads, [70, 0, 30, 0]);
        if p.endpoint.0 == 2 {
            spilled += 1;
        }
        assert_ne!(p.endpoint.0, 3, "other region gets nothing");
    }
    assert!((500..700).contains(&spilled), "spilled {spilled} of 2000");
    // Without outlier detection Istio does not engage it: one priority, all endpoints.
    let policy = LbPolicy::new(LbAlgorithm::RoundRobin).with_locality_failover(client, false);
    let mut lb = LoadBalancer::new(policy, &endpoints);
    let c = counts(&mut lb, 8, 0);
    assert_eq!(c.len(), 4);
    let p = lb
        .pick(&PickContext::default(), all_healthy, &mut rng)
        .unwrap();
    assert!(!p.trace.locality_failover);
    assert_eq!(p.trace.priority_loads, [100]);
}

#[test]
fn trace_serializes_with_stable_names() {
    let mut lb = LoadBalancer::new(LbPolicy::default(), &eps(&[1, 1]));
    let mut rng = SmallRng::seed_from_u64(0);
    let p = lb
        .pick(&PickContext::default(), all_healthy, &mut rng)
        .unwrap();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["trace"]["detail"]["kind"], "least_request");
    assert_eq!(json["trace"]["exclusion"]["kind"], "none");
    assert_eq!(json["trace"]["panic"], false);
    assert!(json["endpoint"].is_u64());
    let err = serde_json::to_value(PickError::NoEndpoints).unwrap();
    assert_eq!(err["kind"], "no_endpoints");
}

fn table_shares(table: &HashTable, n: usize) -> Vec<f64> {
    let HashTable::Maglev(t) = table else {
        unreachable!()
    };
    let mut c = vec![0usize; n];
    for &i in t {
        c[i] += 1;
    }
    c.iter().map(|&x| x as f64 / t.len() as f64).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Round robin is exact: over k full cycles each endpoint gets k × its weight.
    #[test]
    fn round_robin_is_exact_per_cycle(weights in proptest::collection::vec(1u32..8, 1..6), k in 1usize..4) {
        let mut lb = LoadBalancer::new(LbPolicy::new(LbAlgorithm::RoundRobin), &eps(&weights));
        let total: u32 = weights.iter().sum();
        let c = counts(&mut lb, total as usize * k, 0);
        for (i, w) in weights.iter().enumerate() {
            prop_assert_eq!(c.get(&EndpointId(i as u32)).copied().unwrap_or(0), *w as usize * k);
        }
    }

    /// Random and least-request (idle endpoints) converge to the weights: each share
    /// within 5 standard deviations of its expectation.
    #[test]
    fn random_picks_converge_to_weights(
        weights in proptest::collection::vec(1u32..6, 1..6),
        seed in any::<u64>(),
        least in any::<bool>(),
    ) {
        let algorithm = if least { LbAlgorithm::least_request() } else { LbAlgorithm::Random };
        let mut lb = LoadBalancer::new(LbPolicy::new(algorithm), &eps(&weights));
        let n = 20_000usize;
        let c = counts(&mut lb, n, seed);
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        for (i, w) in weights.iter().enumerate() {
            let p = f64::from(*w) / total;
            let got = c.get(&EndpointId(i as u32)).copied().unwrap_or(0) as f64;
            let sigma = (n as f64 * p * (1.0 - p)).sqrt().max(1.0);
            prop_assert!((got - n as f64 * p).abs() <= 5.0 * sigma,
                "endpoint {} weight {} got {} expected {}", i, w, got, n as f64 * p);
        }
    }

    /// A Maglev table gives each endpoint its weight's share, within 1%.
    #[test]
    fn maglev_table_matches_weights(weights in proptest::collection::vec(1u32..5, 1..7)) {
        let addrs: Vec<String> = (0..weights.len()).map(|i| format!("10.1.0.{i}:80")).collect();
        let slots: Vec<Slot<'_>> = weights.iter().enumerate()
            .map(|(i, &w)| Slot { index: i, address: &addrs[i], weight: w }).collect();
        let shares = table_shares(&HashTable::maglev(&slots, 65537), weights.len());
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        for (i, w) in weights.iter().enumerate() {
            prop_assert!((shares[i] - f64::from(*w) / total).abs() < 0.01, "{:?}", shares);
        }
    }

    /// Same seed, same health, same exclusions → the same pick sequence, for every
    /// algorithm.
    #[test]
    fn same_seed_same_picks(
        seed in any::<u64>(),
        weights in proptest::collection::vec(1u32..4, 1..6),
        unhealthy in any::<u8>(),
        algo in 0usize..5,
    ) {
        let algorithm = match algo {
            0 => LbAlgorithm::RoundRobin,
            1 => LbAlgorithm::Random,
            2 => LbAlgorithm::least_request(),
            3 => LbAlgorithm::ring_hash(HashPolicy::Header { name: "k".into() }),
            _ => LbAlgorithm::maglev(HashPolicy::Header { name: "k".into() }),
        };
        let endpoints = eps(&weights);
        let run = || {
            let mut lb = LoadBalancer::new(LbPolicy::new(algorithm.clone()), &endpoints);
            let mut rng = SmallRng::seed_from_u64(seed);
            let healthy = |id: EndpointId| unhealthy & (1 << (id.0 % 8)) == 0;
            (0..50).map(|i| {
                let key = format!("key-{}", i % 7);
                let headers = [("k", key.as_str())];
                let r = lb.pick(&header_ctx(&headers), healthy, &mut rng);
                if let Ok(p) = &r { lb.on_request_start(p.endpoint); }
                r
            }).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }
}

/// The fast path for an all-healthy cluster decides exactly as `pick` does.
#[test]
fn pick_all_healthy_matches_pick_with_everything_healthy() {
    let policies = [
        LbPolicy::new(LbAlgorithm::RoundRobin),
        LbPolicy::new(LbAlgorithm::Random),
        LbPolicy::new(LbAlgorithm::least_request()),
    ];
    for policy in policies {
        let endpoints = eps(&[1, 2, 3, 1, 1]);
        let (mut a, mut b) = (
            LoadBalancer::new(policy.clone(), &endpoints),
            LoadBalancer::new(policy, &endpoints),
        );
        let (mut ra, mut rb) = (SmallRng::seed_from_u64(9), SmallRng::seed_from_u64(9));
        let tried: BTreeSet<EndpointId> = [EndpointId(1)].into();
        for i in 0..500 {
            let ctx = if i % 3 == 0 {
                PickContext {
                    exclude: &tried,
                    ..PickContext::default()
                }
            } else {
                PickContext::default()
            };
            let pa = a.pick(&ctx, all_healthy, &mut ra).unwrap();
            let pb = b.pick_all_healthy(&ctx, &mut rb).unwrap();
            assert_eq!(pa, pb);
            a.on_request_start(pa.endpoint);
            b.on_request_start(pb.endpoint);
            if i % 2 == 0 {
                a.on_request_end(pa.endpoint);
                b.on_request_end(pb.endpoint);
            }
        }
    }
}

/// Request counting finds endpoints whether their ids are dense (the usual case) or
/// sparse.
#[test]
fn active_requests_are_kept_for_dense_and_sparse_ids() {
    for ids in [[0u32, 1, 2], [7, 1_000_000, 3]] {
        let endpoints: Vec<Endpoint> = ids
            .iter()
            .map(|&id| Endpoint {
                id: EndpointId(id),
                ..ep(0, 1, "")
            })
            .collect();
        let mut lb = LoadBalancer::new(LbPolicy::default(), &endpoints);
        lb.on_request_start(EndpointId(ids[1]));
        lb.on_request_start(EndpointId(ids[1]));
        lb.on_request_end(EndpointId(ids[1]));
        lb.on_request_start(EndpointId(99));
        assert_eq!(lb.active_requests(EndpointId(ids[1])), 1);
        assert_eq!(lb.active_requests(EndpointId(ids[0])), 0);
        assert_eq!(lb.active_requests(EndpointId(99)), 0);
    }
}
