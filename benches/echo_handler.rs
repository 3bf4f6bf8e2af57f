//! The echo server's request handler, called directly with in-memory requests (no
//! socket, no runtime): what one request costs the server beyond hyper's own parsing
//! and writing. Each iteration handles a request built beforehand (outside the
//! measurement) and drains the response body, as hyper would.
//!
//! Run: `cargo bench --bench echo_handler`.

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use http_body_util::Full;
use hyper::body::Body;
use loadgen::echo::{ConnectionState, EchoConfig, EchoService};

/// Handles `req` and drains the response body, without a runtime: none of the
/// benchmarked requests waits (no delay; bodies are already in memory).
fn handle(svc: &EchoService, conn: &ConnectionState, req: Request<Full<Bytes>>) -> usize {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut fut = pin!(svc.handle(req, conn));
    let Poll::Ready(response) = fut.as_mut().poll(&mut cx) else {
        panic!("the handler waited")
    };
    let status = response.status().as_u16() as usize;
    let mut body = pin!(response.into_body());
    let mut bytes = 0;
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        bytes += frame.unwrap().data_ref().map_or(0, Bytes::len);
    }
    status + bytes
}

fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &Bytes,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.clone())).unwrap()
}

/// The headers wrk sends, and a more typical client's.
const WRK_HEADERS: &[(&str, &str)] = &[("host", "127.0.0.1:8080")];
const CLIENT_HEADERS: &[(&str, &str)] = &[
    ("host", "127.0.0.1:8080"),
    ("user-agent", "meshrig/0.1"),
    ("accept", "*/*"),
    ("content-type", "application/octet-stream"),
    ("x-request-id", "6f1c1d7e-4b2a-4a8e-9d0b-2f4c7a1e3b55"),
];

/// One benchmarked request shape.
struct Case<'a> {
    name: &'a str,
    svc: &'a EchoService,
    method: &'a str,
    uri: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a Bytes,
}

fn bench_echo(c: &mut Criterion) {
    let plain = EchoService::new(EchoConfig {
        seed: Some(1),
        ..EchoConfig::default()
    })
    .unwrap();
    let named = EchoService::new(EchoConfig {
        name: Some("reviews-v2".into()),
        seed: Some(1),
        ..EchoConfig::default()
    })
    .unwrap();
    let empty = Bytes::new();
    let kib = Bytes::from(vec![b'x'; 1024]);
    let case = |name, svc, method, uri, headers, body| Case {
        name,
        svc,
        method,
        uri,
        headers,
        body,
    };
    let cases = [
        case("get_no_query", &plain, "GET", "/", WRK_HEADERS, &empty),
        case(
            "get_no_query_named",
            &named,
            "GET",
            "/",
            WRK_HEADERS,
            &empty,
        ),
        case(
            "post_1KiB_5_headers",
            &plain,
            "POST",
            "/echo",
            CLIENT_HEADERS,
            &kib,
        ),
        case(
            "weighted_status_and_header",
            &plain,
            "GET",
            "/?status=503:20,429:5&header=X-A:1",
            WRK_HEADERS,
            &empty,
        ),
        case(
            "size_16KiB",
            &plain,
            "GET",
            "/?size=16KiB",
            WRK_HEADERS,
            &empty,
        ),
        case(
            "bad_param_400",
            &plain,
            "GET",
            "/?status=5x3",
            WRK_HEADERS,
            &empty,
        ),
        case("healthz", &plain, "GET", "/healthz", WRK_HEADERS, &empty),
    ];

    let mut group = c.benchmark_group("echo_handler");
    group.throughput(Throughput::Elements(1));
    for case in cases {
        let conn = case.svc.connection(None);
        group.bench_function(case.name, |b| {
            b.iter_batched(
                || request(case.method, case.uri, case.headers, case.body),
                |req| handle(case.svc, &conn, black_box(req)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_echo);
criterion_main!(benches);
