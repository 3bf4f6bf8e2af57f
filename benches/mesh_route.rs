//! Route resolution on a large mesh: 1,000 VirtualServices (3 rules each: a header
//! match, a prefix match, and a 90/10 split), requests to a host in the middle of the
//! table that fall through to the last rule — the worst case of the three.
//!
//! Goal (issue 3): route resolution plus endpoint pick under 1 µs per request.
//! Run with `cargo bench --bench mesh_route`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::route::{
    Destination, HeaderOps, HttpMatch, HttpRoute, RouteAction, RouteRequest, RouteTable,
    StringMatch, ValueMatch, VirtualServiceRoutes, WeightedDestination, decide,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;

const SERVICES: usize = 1_000;

fn dest(host: &str, subset: &str, weight: u32) -> WeightedDestination {
    WeightedDestination {
        destination: Destination {
            host: host.to_owned(),
            subset: Some(subset.to_owned()),
            port: None,
        },
        weight,
        headers: HeaderOps::default(),
    }
}

fn rule(matches: Vec<HttpMatch>, to: Vec<WeightedDestination>) -> HttpRoute {
    HttpRoute {
        name: None,
        matches,
        action: RouteAction::Forward(to.into()),
        rewrite: None,
        timeout: None,
        retries: None,
        fault: None,
        mirrors: vec![],
        headers: Default::default(),
        origin: None,
    }
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

criterion_group!(benches, bench);
criterion_main!(benches);
