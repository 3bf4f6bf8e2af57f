//! Per-request costs of the proxy's own request path (not mesh-core's decisions):
//! trace-header propagation, recording a request's metrics, and rendering
//! `/metrics` with many series.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use mesh_proxy::metrics::{Metrics, Reporter, RequestLabels, RequestSample};
use mesh_proxy::trace;
use rand::SeedableRng;
use rand::rngs::SmallRng;

fn trace_propagation(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut incoming = HeaderMap::new();
    incoming.insert(
        trace::TRACEPARENT,
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    incoming.insert(trace::REQUEST_ID, HeaderValue::from_static("abc-123"));
    c.bench_function("trace::propagate (continue a W3C trace)", |b| {
        b.iter(|| {
            let mut h = incoming.clone();
            trace::propagate(&mut h, &mut rng)
        })
    });
    c.bench_function("trace::propagate (new trace and request id)", |b| {
        b.iter(|| trace::propagate(&mut HeaderMap::new(), &mut rng))
    });
}

fn metrics(c: &mut Criterion) {
    let m = Metrics::default();
    let mut labels = RequestLabels::unknown(Reporter::Source);
    labels.destination_service("reviews.default.svc.cluster.local");
    labels.response_code = 200;
    let sample = RequestSample {
        duration: Duration::from_micros(1500),
        request_bytes: 0,
        response_bytes: 1024,
    };
    c.bench_function("Metrics::record (existing series)", |b| {
        b.iter(|| m.record(&labels, sample))
    });
    for i in 0..200 {
        let mut l = labels.clone();
        l.destination_service(&format!("s{i}.default.svc.cluster.local"));
        m.record(&l, sample);
    }
    c.bench_function("Metrics::render (201 series)", |b| b.iter(|| m.render()));
}

criterion_group!(benches, trace_propagation, metrics);
criterion_main!(benches);
