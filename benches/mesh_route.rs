//! Route resolution on a large mesh: 1,000 VirtualServices (3 rules each: a header
//! match, a prefix match, and a 90/10 split), requests to a host in the middle of the
//! table that fall through to the last rule — the worst case of the three.
//!
//! Then route resolution plus endpoint pick: 10,000 endpoints (10 per service), one
//! load balancer per service (Istio's default, LEAST_REQUEST with two choices, and
//! ROUND_ROBIN), the pick made on the service the decision chose.
//!
//! Goal (issue 3): route resolution plus endpoint pick under 1 µs per request.
//! Run with `cargo bench --bench mesh_route`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::lb::{LbAlgorithm, LbPolicy, LoadBalancer, PickContext};
use mesh_core::route::RouteOutcome;
use mesh_core::route::{
    HttpMatch, HttpRoute, RouteRequest, RouteTable, StringMatch, ValueMatch, VirtualServiceRoutes,
    WeightedDestination, decide,
};
use mesh_core::{Endpoint, EndpointId, Locality};
use rand::SeedableRng;
use rand::rngs::SmallRng;

const SERVICES: usize = 1_000;
const ENDPOINTS_PER_SERVICE: usize = 10;

/// One load balancer per service host, 10 endpoints each (10,000 in all).
fn balancers(algorithm: LbAlgorithm) -> BTreeMap<String, LoadBalancer> {
    (0..SERVICES)
        .map(|i| {
            let host = format!("svc-{i}.default.svc.cluster.local");
            let endpoints: Vec<Endpoint> = (0..ENDPOINTS_PER_SERVICE)
                .map(|e| Endpoint {
                    id: EndpointId((i * ENDPOINTS_PER_SERVICE + e) as u32),
                    address: format!("10.{}.{}.{e}:9080", i / 256, i % 256),
                    labels: [("app".to_owned(), format!("svc-{i}"))].into(),
                    locality: Locality::default(),
                    weight: 1,
                    namespace: "default".into(),
                    service_account: format!("svc-{i}"),
                })
                .collect();
            (
                host,
                LoadBalancer::new(LbPolicy::new(algorithm.clone()), &endpoints),
            )
        })
        .collect()
}

fn dest(host: &str, subset: &str, weight: u32) -> WeightedDestination {
    WeightedDestination::to(host, Some(subset), weight)
}

fn rule(matches: Vec<HttpMatch>, to: Vec<WeightedDestination>) -> HttpRoute {
    HttpRoute::forward(matches, to)
}

fn table() -> RouteTable {
    let services = (0..SERVICES)
        .map(|i| {
            let host = format!("svc-{i}.default.svc.cluster.local");
            let mut by_header = HttpMatch::default();
            by_header.headers.insert(
                "end-user".into(),
                ValueMatch::Is(StringMatch::Exact("jason".into())),
            );
            let by_prefix = HttpMatch {
                uri: Some(StringMatch::Prefix("/admin".into())),
                ..HttpMatch::default()
            };
            VirtualServiceRoutes {
                name: format!("svc-{i}"),
                namespace: "default".into(),
                hosts: vec![host.clone()],
                gateways: vec![],
                http: vec![
                    rule(vec![by_header], vec![dest(&host, "v2", 100)]),
                    rule(vec![by_prefix], vec![dest(&host, "v3", 100)]),
                    rule(vec![], vec![dest(&host, "v1", 90), dest(&host, "v2", 10)]),
                ],
                origin: None,
            }
        })
        .collect();
    RouteTable::new(services)
}

fn bench(c: &mut Criterion) {
    let table = table();
    let headers: BTreeMap<String, String> = [
        ("end-user".to_owned(), "alice".to_owned()),
        ("user-agent".to_owned(), "bench".to_owned()),
    ]
    .into();
    let labels = BTreeMap::new();
    let req = RouteRequest {
        authority: "svc-500:9080",
        method: "GET",
        path: "/products/7?x=1",
        scheme: "http",
        headers: &headers,
        source_labels: &labels,
        source_namespace: "default",
        gateway: "mesh",
    };
    let mut rng = SmallRng::seed_from_u64(1);
    c.bench_function("route/decide/1000_virtual_services", |b| {
        b.iter(|| black_box(decide(&table, black_box(&req), &mut rng, false)))
    });
    let fqdn = RouteRequest {
        authority: "svc-500.default.svc.cluster.local",
        ..req.clone()
    };
    c.bench_function("route/decide/1000_virtual_services/fqdn", |b| {
        b.iter(|| black_box(decide(&table, black_box(&fqdn), &mut rng, false)))
    });
}

fn bench_with_pick(c: &mut Criterion) {
    let table = table();
    let headers: BTreeMap<String, String> = [("end-user".to_owned(), "alice".to_owned())].into();
    let labels = BTreeMap::new();
    let req = RouteRequest {
        authority: "svc-500:9080",
        method: "GET",
        path: "/products/7",
        scheme: "http",
        headers: &headers,
        source_labels: &labels,
        source_namespace: "default",
        gateway: "mesh",
    };
    for (name, algorithm) in [
        ("least_request", LbAlgorithm::default()),
        ("round_robin", LbAlgorithm::RoundRobin),
    ] {
        let mut lbs = balancers(algorithm);
        let mut rng = SmallRng::seed_from_u64(2);
        c.bench_function(
            &format!("route/decide_and_pick/1000_vs_10000_endpoints/{name}"),
            |b| {
                b.iter(|| {
                    let d = decide(&table, black_box(&req), &mut rng, false);
                    let host = match &d.outcome {
                        RouteOutcome::Forward(f) => f.destination().host.as_str(),
                        _ => unreachable!("the bench table always forwards"),
                    };
                    let lb = lbs.get_mut(host).expect("a balancer per host");
                    black_box(lb.pick(&PickContext::default(), |_| true, &mut rng).ok())
                })
            },
        );
    }
}

criterion_group!(benches, bench, bench_with_pick);
criterion_main!(benches);
